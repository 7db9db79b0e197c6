//! Byzantine-input mode (`SimConfig::byzantine`, `synod-sim --byzantine`):
//! forged messages that the core's validation rules must neutralize
//! (ARCHITECTURE.md, "Validating peer input"). Each forgery is built against
//! the target's state at the moment it is delivered (it is stepped at once,
//! never queued), and only from the classes the rules refuse or make
//! harmless: out-of-range ballots and slots, catch-up answers and snapshot
//! chunks the target did not ask that peer for, a garbage snapshot from the
//! peer it did ask (refused by the state machine's check), Promises for
//! ballots the target never proposed, messages whose ballot is another
//! proposer's. A forgery the rules *should* accept (a well-formed value
//! under a real ballot) would be a Byzantine peer, which Paxos does not
//! tolerate, so none is sent: the checkers then prove nothing forged got in.

use bytes::Bytes;
use synod_wire::{
    Accept, Accepted, Ballot, Batch, CatchupRequest, CatchupResponse, Commit, Heartbeat, LogEntry,
    PaxosMsg, Prepare, Promise, Proposal, Reject, ReplicaId, Slot, SnapshotChunk, SnapshotRequest,
};

use crate::paxos::{Paxos, ROUND_LIMIT, SLOT_LIMIT};
use crate::rng::Rng;

/// Ballot rounds no real proposer may use.
fn bad_round(rng: &mut Rng) -> u64 {
    match rng.range(0, 5) {
        0 => u64::MAX,
        1 => u64::MAX - 1,
        2 => ROUND_LIMIT,
        3 => ROUND_LIMIT + rng.range(0, 1 << 20),
        _ => u64::MAX - rng.range(0, 1 << 20),
    }
}

/// Slots no real log reaches: near 2^64, at the limit, or 2^40 (in range
/// for arithmetic, far beyond any horizon).
fn far_slot(rng: &mut Rng, base: Slot) -> Slot {
    match rng.range(0, 6) {
        0 => u64::MAX,
        1 => u64::MAX - rng.range(0, 1 << 10),
        2 => SLOT_LIMIT,
        3 => 1 << 63,
        4 => 1 << 40,
        _ => base + (1 << 28) + rng.range(0, 1 << 20),
    }
}

fn garbage(rng: &mut Rng, max: u64) -> Bytes {
    let n = rng.range(0, max + 1) as usize;
    let mut v: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
    if let Some(b) = v.first_mut() {
        // Never a KV snapshot's format byte (1): garbage must stay garbage.
        *b |= 0x80;
    }
    Bytes::from(v)
}

fn garbage_batch(rng: &mut Rng) -> Batch {
    Batch {
        commands: (0..rng.range(1, 4)).map(|_| garbage(rng, 40)).collect(),
    }
}

/// One forged message for `target` (replica `to` of a group of `replicas`),
/// claiming to come from another member; `None` when no forgery of the
/// drawn kind applies right now.
pub(crate) fn forge(
    rng: &mut Rng,
    target: &Paxos,
    to: ReplicaId,
    replicas: u32,
) -> Option<PaxosMsg> {
    let others: Vec<ReplicaId> = (0..replicas).filter(|i| *i != to).collect();
    let from = others[rng.range(0, others.len() as u64) as usize];
    let chosen = target.chosen_upto();
    let promised = target.promised();
    let msg = match rng.range(0, 12) {
        0 => PaxosMsg::Prepare(Prepare {
            from,
            ballot: Ballot::new(bad_round(rng), from),
            from_slot: rng.range(0, 1 << 20),
        }),
        1 => PaxosMsg::Accept(Accept {
            from,
            ballot: Ballot::new(bad_round(rng), from),
            chosen_upto: far_slot(rng, chosen),
            entries: vec![Proposal {
                slot: chosen,
                batch: garbage_batch(rng),
            }],
        }),
        2 => {
            // The target's own promise, claimed by its owner, with slots no
            // log may hold and no commit point: only the horizon and slot
            // limit stand between this and a huge allocation.
            if promised.node == to || promised == Ballot::ZERO {
                return None;
            }
            PaxosMsg::Accept(Accept {
                from: promised.node,
                ballot: promised,
                chosen_upto: 0,
                entries: (0..rng.range(1, 4))
                    .map(|_| Proposal {
                        slot: far_slot(rng, chosen),
                        batch: garbage_batch(rng),
                    })
                    .collect(),
            })
        }
        3 => match rng.range(0, 3) {
            0 => PaxosMsg::Commit(Commit {
                from,
                ballot: Ballot::new(bad_round(rng), from),
                chosen_upto: far_slot(rng, chosen),
            }),
            1 => PaxosMsg::Heartbeat(Heartbeat {
                from,
                ballot: Ballot::CHOSEN,
                chosen_upto: far_slot(rng, chosen),
                read_round: u64::MAX,
            }),
            _ => PaxosMsg::Reject(Reject {
                from,
                promised: Ballot::new(bad_round(rng), from),
            }),
        },
        4 => {
            // A ballot that is not its sender's own.
            let owner = others[rng.range(0, others.len() as u64) as usize];
            if owner == from {
                return None;
            }
            PaxosMsg::Prepare(Prepare {
                from,
                ballot: Ballot::new(promised.round.saturating_add(1), owner),
                from_slot: 0,
            })
        }
        5 | 6 => {
            // Garbage values as chosen, from a peer the target did not ask.
            if target.catchup_peer() == Some(from) {
                return None;
            }
            PaxosMsg::CatchupResponse(CatchupResponse {
                from,
                chosen_upto: chosen + rng.range(1, 1 << 20),
                entries: (0..rng.range(1, 5))
                    .map(|i| Proposal {
                        slot: chosen + i,
                        batch: garbage_batch(rng),
                    })
                    .collect(),
            })
        }
        7 => {
            // A garbage snapshot from a peer not asked.
            if target.catchup_peer() == Some(from) {
                return None;
            }
            let data = garbage(rng, 200);
            PaxosMsg::SnapshotChunk(SnapshotChunk {
                from,
                index: chosen + rng.range(1, 1000),
                total_len: data.len() as u64,
                offset: 0,
                data,
            })
        }
        8 => {
            // A whole garbage snapshot from the peer the target did ask: the
            // state machine's check must refuse it.
            let asked = target.catchup_peer()?;
            let data = garbage(rng, 200);
            if data.is_empty() {
                return None;
            }
            PaxosMsg::SnapshotChunk(SnapshotChunk {
                from: asked,
                index: chosen + rng.range(1, 1000),
                total_len: data.len() as u64,
                offset: 0,
                data,
            })
        }
        9 => {
            // A Promise for a ballot the target never proposed (rounds above
            // its promise are not its candidacy), or for its own candidacy
            // with entries beyond the horizon.
            let ballot = if rng.chance(0.5) {
                Ballot::new(promised.round + rng.range(1, 1000), to)
            } else {
                if promised.node != to {
                    return None;
                }
                promised
            };
            let horizon_break = ballot == promised;
            PaxosMsg::Promise(Promise {
                from,
                ballot,
                log_start: 0,
                chosen_upto: chosen,
                entries: vec![LogEntry {
                    slot: if horizon_break {
                        chosen + 4 * target.config().slot_horizon + rng.range(0, 1 << 30)
                    } else {
                        chosen + rng.range(0, 10)
                    },
                    ballot: if rng.chance(0.5) {
                        Ballot::CHOSEN
                    } else {
                        Ballot::new(bad_round(rng), from)
                    },
                    batch: garbage_batch(rng),
                }],
                more: rng.chance(0.5),
            })
        }
        10 => {
            // Votes for slots that do not exist, or under a bad ballot.
            let ballot = if rng.chance(0.5) {
                promised
            } else {
                Ballot::new(bad_round(rng), to)
            };
            PaxosMsg::Accepted(Accepted {
                from,
                ballot,
                chosen_upto: far_slot(rng, chosen),
                read_round: 0,
                slots: (0..rng.range(1, 4))
                    .map(|_| far_slot(rng, chosen))
                    .collect(),
            })
        }
        _ => match rng.range(0, 2) {
            0 => PaxosMsg::CatchupRequest(CatchupRequest {
                from,
                from_slot: far_slot(rng, chosen),
            }),
            _ => PaxosMsg::SnapshotRequest(SnapshotRequest {
                from,
                index: far_slot(rng, chosen),
                offset: u64::MAX - rng.range(0, 1 << 10),
            }),
        },
    };
    Some(msg)
}
