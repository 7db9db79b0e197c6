//! The leader's role: sending Accepts, counting Accepted into a quorum per
//! slot, advancing the commit point and telling followers (Commit,
//! Heartbeat), retransmitting unacknowledged slots, confirming read-index
//! rounds, and stepping down on a Reject from a higher ballot.

use synod_wire::{
    Accept, Accepted, Ballot, Commit, Heartbeat, PaxosMsg, Proposal, Reject, ReplicaId,
};

use super::{paginate, Paxos, Role};
use crate::rng::Rng;

impl Paxos {
    /// One Accept per peer; the last peer's takes `entries` itself, so a
    /// group of three clones the proposal list once, not twice.
    pub(super) fn send_accepts(&mut self, ballot: Ballot, entries: Vec<Proposal>) {
        let peers: Vec<ReplicaId> = (0..self.cfg.replicas)
            .filter(|p| *p != self.cfg.id)
            .collect();
        let mut entries = Some(entries);
        for (i, peer) in peers.iter().enumerate() {
            let entries = if i + 1 == peers.len() {
                entries.take().unwrap_or_default()
            } else {
                entries.clone().unwrap_or_default()
            };
            self.send_early(
                *peer,
                PaxosMsg::Accept(Accept {
                    from: self.cfg.id,
                    ballot,
                    chosen_upto: self.chosen_upto,
                    entries,
                }),
            );
        }
    }

    pub(super) fn on_accepted(&mut self, m: Accepted) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if m.ballot != l.ballot {
            return;
        }
        l.silent_ticks[m.from as usize] = 0;
        let base = self.chosen_upto;
        for slot in m.slots {
            if slot >= base && slot < l.next_slot {
                l.inflight[(slot - base) as usize].acks |= 1 << m.from;
            }
        }
        // A round we never announced cannot be confirmed (a confused or
        // hostile peer); clamp rather than trust it.
        let round = m.read_round.min(l.read_round);
        if round > l.read_acked[m.from as usize] {
            l.read_acked[m.from as usize] = round;
            self.advance_read_confirmed();
        }
        self.advance_leader_commit();
    }

    /// The highest read round a quorum (this leader included) has confirmed.
    pub(super) fn advance_read_confirmed(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        // At most 64 replicas: sort a copy on the stack.
        let n = l.read_acked.len();
        let mut acked = [0u64; 64];
        acked[..n].copy_from_slice(&l.read_acked);
        acked[..n].sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = acked[self.cfg.quorum() as usize - 1];
        if confirmed > l.read_confirmed {
            l.read_confirmed = confirmed;
            self.out.wake();
        }
    }

    pub(super) fn advance_leader_commit(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        while let Some(f) = l.inflight.front() {
            if f.acks.count_ones() < self.cfg.quorum() {
                break;
            }
            l.inflight.pop_front();
            self.chosen_upto += 1;
        }
        self.commit_hint = self.commit_hint.max(self.chosen_upto);
    }

    pub(super) fn retransmit_accepts(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        let base = self.chosen_upto;
        let mut per_peer: Vec<Vec<Proposal>> = vec![Vec::new(); self.cfg.replicas as usize];
        for (i, f) in l.inflight.iter_mut().enumerate() {
            f.age += 1;
            if f.age < self.cfg.retransmit_ticks {
                continue;
            }
            f.age = 0;
            let slot = base + i as u64;
            let e = self.log.get(slot).expect("in-flight slot missing");
            for (peer, list) in per_peer.iter_mut().enumerate() {
                if f.acks & (1 << peer) == 0 {
                    list.push(Proposal {
                        slot,
                        batch: e.batch.clone(),
                    });
                }
            }
        }
        for (peer, entries) in per_peer.into_iter().enumerate() {
            if entries.is_empty() {
                continue;
            }
            for page in paginate(entries, self.cfg.catchup_bytes_max) {
                self.send_early(
                    peer as ReplicaId,
                    PaxosMsg::Accept(Accept {
                        from: self.cfg.id,
                        ballot,
                        chosen_upto: self.chosen_upto,
                        entries: page,
                    }),
                );
            }
        }
    }

    pub(super) fn broadcast_commit(&mut self, ballot: Ballot, commit: bool) {
        for peer in 0..self.cfg.replicas {
            if peer == self.cfg.id {
                continue;
            }
            let msg = if commit {
                PaxosMsg::Commit(Commit {
                    from: self.cfg.id,
                    ballot,
                    chosen_upto: self.chosen_upto,
                })
            } else {
                let read_round = match &self.role {
                    Role::Leader(l) => l.read_round,
                    _ => 0,
                };
                PaxosMsg::Heartbeat(Heartbeat {
                    from: self.cfg.id,
                    ballot,
                    chosen_upto: self.chosen_upto,
                    read_round,
                })
            };
            self.send_early(peer, msg);
        }
    }

    pub(super) fn on_reject(&mut self, m: Reject, rng: &mut Rng) {
        self.seen = self.seen.max(m.promised);
        let mine = match &self.role {
            Role::Leader(l) => l.ballot,
            Role::Candidate(c) => c.ballot,
            Role::Follower => return,
        };
        if m.promised > mine {
            self.become_follower(None, rng);
        }
    }
}
