//! The leader's role: sending Accepts, counting Accepted into a quorum per
//! slot, advancing the commit point and telling followers (Commit,
//! Heartbeat), retransmitting unacknowledged slots, confirming read-index
//! rounds, and stepping down on a Reject from a higher ballot.

use synod_wire::{
    Accept, Accepted, Ballot, Commit, Heartbeat, PaxosMsg, Proposal, Reject, ReplicaId,
};

use super::members::{leader_quorum, majority_value, member_ids};
use super::{paginate, Paxos, Role};
use crate::rng::Rng;

impl Paxos {
    /// One Accept per peer; the last peer's takes `entries` itself, so a
    /// group of three clones the proposal list once, not twice.
    pub(super) fn send_accepts(&mut self, ballot: Ballot, entries: Vec<Proposal>) {
        let peers: Vec<ReplicaId> = member_ids(self.leader_targets())
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
        let pc = &mut l.peer_chosen[m.from as usize];
        *pc = (*pc).max(m.chosen_upto);
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
        let lease = self.lease_len();
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        // Confirmed by a majority of every membership the leader counts
        // votes against (the newest alone with the planted bug).
        let confirmed = if self.cfg.bugs.membership_switches_at_once {
            let newest = l.changes.last().map_or(l.conf, |(_, m)| *m);
            majority_value(&l.read_acked, newest)
        } else {
            l.changes
                .iter()
                .map(|(_, m)| majority_value(&l.read_acked, *m))
                .fold(majority_value(&l.read_acked, l.conf), u64::min)
        };
        if confirmed > l.read_confirmed {
            l.read_confirmed = confirmed;
            // The lease runs from the newest confirmed round's announcement.
            while let Some(&(round, at)) = l.lease_rounds.front() {
                if round > confirmed {
                    break;
                }
                l.lease_rounds.pop_front();
                if lease > 0 {
                    l.lease_until = at.saturating_add(lease);
                }
            }
            self.out.wake();
        }
    }

    pub(super) fn advance_leader_commit(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let bug = self.cfg.bugs.membership_switches_at_once;
        while let Some(f) = l.inflight.front() {
            if !leader_quorum(l.conf, &l.changes, bug, f.acks) {
                break;
            }
            l.inflight.pop_front();
            if l.changes
                .first()
                .is_some_and(|(s, _)| *s == self.chosen_upto)
            {
                // The change is chosen: it governs every slot after it.
                let (_, m) = l.changes.remove(0);
                ::log::info!(
                    "r{} membership {:#x} -> {m:#x} chosen at slot {}",
                    self.cfg.id,
                    l.conf,
                    self.chosen_upto
                );
                l.conf = m;
                // A lease is a quorum of one membership: take a new one
                // from rounds announced under the new membership.
                l.lease_rounds.clear();
                l.lease_until = 0;
            }
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
        let id = self.cfg.id as usize;
        let targets = l.conf | l.changes.iter().fold(0, |a, (_, m)| a | m);
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
                if f.acks & (1 << peer) == 0 && targets & (1 << peer) != 0 && peer != id {
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

    /// Who a leader sends to: every member of the membership at its
    /// commit point and of every change in flight.
    pub(super) fn leader_targets(&self) -> u64 {
        match &self.role {
            Role::Leader(l) => l.conf | l.changes.iter().fold(0, |a, (_, m)| a | m),
            _ => 0,
        }
    }

    pub(super) fn broadcast_commit(&mut self, ballot: Ballot, commit: bool) {
        let targets = self.leader_targets();
        for peer in member_ids(targets) {
            if peer == self.cfg.id || peer >= self.cfg.replicas {
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
