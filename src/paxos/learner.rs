//! The learner's role: marking slots chosen from a leader's commit point,
//! catching up on chosen values it lacks (asking a peer, serving a peer's
//! ask), and snapshots: serving one in chunks, receiving one chunk by chunk,
//! installing it. Chosen batches leave strictly in slot order (`ready`).

use bytes::{Bytes, BytesMut};
use synod_wire::{
    Ballot, Batch, CatchupRequest, CatchupResponse, PaxosMsg, Proposal, ReplicaId, Slot,
    SnapshotChunk, SnapshotRequest,
};

use super::{accept_into, entry_bytes, Entry, Paxos, Record, Role, SnapshotRecv};
use crate::rng::Rng;

impl Paxos {
    /// The leader of `ballot` says every slot below `leader_chosen` is chosen.
    pub(super) fn learn(&mut self, leader: ReplicaId, ballot: Ballot, leader_chosen: Slot) {
        self.commit_hint = self.commit_hint.max(leader_chosen);
        while self.chosen_upto < leader_chosen {
            match self.log.get(self.chosen_upto) {
                Some(e) if e.ballot == ballot || e.ballot == Ballot::CHOSEN => {
                    self.chosen_upto += 1
                }
                None if self.cfg.bugs.apply_past_hole => {
                    // Planted bug: fill the hole with a no-op and move on.
                    let slot = self.chosen_upto;
                    self.log.set(
                        slot,
                        Entry {
                            ballot: Ballot::CHOSEN,
                            batch: Batch::noop(),
                        },
                    );
                    self.chosen_upto += 1;
                }
                Some(_) if self.cfg.bugs.apply_past_hole => self.chosen_upto += 1,
                _ => break,
            }
        }
        if self.chosen_upto < self.commit_hint && self.catchup_wait == 0 {
            // First sign of lag: ask now; tick() repeats it while it lasts.
            self.catchup_wait = 1;
            self.request_catchup(leader);
        } else if self.chosen_upto >= self.commit_hint {
            self.catchup_wait = 0;
        }
    }

    /// After recovery or a snapshot: move over entries already known chosen.
    pub(super) fn advance_chosen_marked(&mut self) {
        while let Some(e) = self.log.get(self.chosen_upto) {
            if e.ballot != Ballot::CHOSEN {
                break;
            }
            self.chosen_upto += 1;
        }
        self.commit_hint = self.commit_hint.max(self.chosen_upto);
    }

    pub(super) fn catchup_target(&self) -> Option<ReplicaId> {
        self.leader_hint.filter(|l| *l != self.cfg.id)
    }

    pub(super) fn request_catchup(&mut self, to: ReplicaId) {
        if to == self.cfg.id {
            return;
        }
        self.asked = Some(to);
        self.send(
            to,
            PaxosMsg::CatchupRequest(CatchupRequest {
                from: self.cfg.id,
                from_slot: self.chosen_upto,
            }),
        );
    }

    pub(super) fn on_catchup_request(&mut self, m: CatchupRequest) {
        if m.from_slot < self.log.start() {
            // The oldest snapshot served that covers what the peer lacks: a
            // pinned one, if a transfer of it is under way (the log is kept
            // above it), else the current one.
            let pinned = self.pinned.as_ref().map(|p| p.index);
            let current = self.snapshot.as_ref().map(|(i, _)| *i);
            if let Some(index) = pinned.filter(|i| *i > m.from_slot).or(current) {
                self.send_snapshot_chunk(m.from, index, 0);
            }
            return;
        }
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut slot = m.from_slot;
        while slot < self.chosen_upto && (entries.len() as u64) < self.cfg.catchup_slots_max {
            let e = self
                .log
                .get(slot)
                .expect("chosen slot missing from the log");
            let n = entry_bytes(&e.batch);
            if !entries.is_empty() && bytes + n > self.cfg.catchup_bytes_max {
                break;
            }
            bytes += n;
            entries.push(Proposal {
                slot,
                batch: e.batch.clone(),
            });
            slot += 1;
        }
        self.send(
            m.from,
            PaxosMsg::CatchupResponse(CatchupResponse {
                from: self.cfg.id,
                chosen_upto: self.chosen_upto,
                entries,
            }),
        );
    }

    pub(super) fn on_catchup_response(&mut self, m: CatchupResponse, rng: &mut Rng) {
        if self.is_leader() {
            // A leader knows everything a quorum promised it; a late answer
            // to its candidacy's request would only shift its window.
            return;
        }
        if self.asked != Some(m.from) {
            // Not an answer to our own request: a value nobody vouched for
            // must never be marked chosen.
            ::log::debug!(
                "r{} ignored an unsolicited catch-up response from r{}",
                self.cfg.id,
                m.from
            );
            return;
        }
        let before = self.chosen_upto;
        for p in m.entries {
            if p.slot != self.chosen_upto || p.slot >= m.chosen_upto {
                // Only the contiguous run we asked for, and only slots its
                // sender says are chosen.
                continue;
            }
            accept_into(
                &mut self.log,
                &mut self.out,
                p.slot,
                Ballot::CHOSEN,
                p.batch,
            );
            self.chosen_upto += 1;
        }
        self.commit_hint = self.commit_hint.max(m.chosen_upto);
        if self.chosen_upto > before {
            self.catchup_wait = 0;
            if self.chosen_upto < self.commit_hint {
                // More to fetch: keep pulling while the sender has it.
                self.request_catchup(m.from);
            }
        }
        self.after_learning(rng);
    }

    pub(super) fn send_snapshot_chunk(&mut self, to: ReplicaId, index: Slot, offset: u64) {
        let (snap_index, data, offset) = match &mut self.pinned {
            Some(p) if p.index == index => {
                p.idle = 0;
                (p.index, p.data.clone(), offset)
            }
            _ => {
                let Some((snap_index, data)) = &self.snapshot else {
                    return;
                };
                self.snapshot_idle = 0;
                // A request for an older snapshot restarts the transfer of
                // ours.
                let offset = if *snap_index == index { offset } else { 0 };
                (*snap_index, data.clone(), offset)
            }
        };
        let total = data.len() as u64;
        if offset > total {
            return;
        }
        let end = (offset + self.cfg.snapshot_chunk_bytes as u64).min(total);
        let chunk = data.slice(offset as usize..end as usize);
        let index = snap_index;
        self.send(
            to,
            PaxosMsg::SnapshotChunk(SnapshotChunk {
                from: self.cfg.id,
                index,
                total_len: total,
                offset,
                data: chunk,
            }),
        );
    }

    pub(super) fn on_snapshot_chunk(
        &mut self,
        m: SnapshotChunk,
        rng: &mut Rng,
        check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) {
        if m.index <= self.chosen_upto || self.is_leader() {
            return; // we already have everything it covers
        }
        if self.asked != Some(m.from) {
            ::log::debug!(
                "r{} ignored an unsolicited snapshot chunk from r{}",
                self.cfg.id,
                m.from
            );
            return;
        }
        if m.total_len > self.cfg.snapshot_bytes_max {
            ::log::warn!(
                "r{} refused a {}-byte snapshot (max {})",
                self.cfg.id,
                m.total_len,
                self.cfg.snapshot_bytes_max
            );
            return;
        }
        let restart = match &self.snap_recv {
            Some(r) => r.index != m.index || r.total != m.total_len,
            None => true,
        };
        if restart {
            if m.offset != 0 {
                // A piece of a transfer we are not in. Answering it would let
                // duplicated chunks multiply requests without end; a lagging
                // replica's catch-up timer asks again from the start.
                return;
            }
            self.snap_recv = Some(SnapshotRecv {
                index: m.index,
                total: m.total_len,
                // Grown as chunks arrive: a declared length is only a claim.
                buf: BytesMut::with_capacity(
                    m.total_len.min(self.cfg.snapshot_chunk_bytes as u64 * 2) as usize,
                ),
                wait: 0,
            });
        }
        let r = self.snap_recv.as_mut().expect("set above");
        if m.offset != r.buf.len() as u64 || r.buf.len() as u64 + m.data.len() as u64 > r.total {
            // Out of order or duplicate: ignore it. Only an in-order chunk
            // asks for the next one, so a duplicated chunk cannot double the
            // requests (and chunks) in flight; a stalled transfer is asked
            // again by `tick`.
            return;
        }
        r.buf.extend_from_slice(&m.data);
        r.wait = 0;
        if (r.buf.len() as u64) < r.total {
            let (index, offset) = (r.index, r.buf.len() as u64);
            self.send(
                m.from,
                PaxosMsg::SnapshotRequest(SnapshotRequest {
                    from: self.cfg.id,
                    index,
                    offset,
                }),
            );
            return;
        }
        let r = self.snap_recv.take().expect("present");
        let data = r.buf.freeze();
        if let Err(e) = check(&data) {
            // Never persisted: a bad snapshot on disk would fail every
            // restart. Catch-up asks again (from the leader) later.
            ::log::warn!(
                "r{} refused a snapshot at slot {} from r{}: {e}",
                self.cfg.id,
                r.index,
                m.from
            );
            return;
        }
        self.install_snapshot(r.index, data);
        self.request_catchup(m.from);
        self.after_learning(rng);
    }

    fn install_snapshot(&mut self, index: Slot, data: Bytes) {
        assert!(index > self.chosen_upto);
        ::log::debug!("r{} installs snapshot at {index}", self.cfg.id);
        self.out.records.push(Record::Snapshot {
            index,
            data: data.clone(),
        });
        self.log.compact(index);
        // Behind enough to need a snapshot: not the one to serve an old one.
        self.pinned = None;
        self.snapshot = Some((index, data.clone()));
        self.chosen_upto = index;
        self.applied_upto = index;
        self.members_applied = super::split_snapshot(&data).0.unwrap_or(self.cfg.members);
        self.commit_hint = self.commit_hint.max(index);
        // Batches queued for apply below the snapshot are covered by it.
        self.out.gated.committed.clear();
        self.out.gated.snapshot = Some((index, data));
        self.stats.snapshots_installed += 1;
        self.advance_chosen_marked();
    }

    /// Our commit point moved by catch-up: a waiting candidate may now lead.
    fn after_learning(&mut self, rng: &mut Rng) {
        if matches!(self.role, Role::Candidate(_)) {
            self.try_lead(rng);
        }
    }
}
