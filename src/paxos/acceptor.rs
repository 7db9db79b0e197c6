//! The acceptor's role: answering Prepare with a (paged) Promise, accepting
//! a leader's slots, following the leader whose Commits and Heartbeats it
//! hears, and making every promise durable (a [`Record::Promised`]) before
//! the message that states it leaves. Leader stickiness lives here too: a
//! follower that heard its leader lately ignores anyone else's Prepare.

use synod_wire::{Accept, Accepted, Ballot, LogEntry, PaxosMsg, Prepare, Promise, ReplicaId, Slot};

use super::{accept_into, entry_bytes, Paxos, Record, Role};
use crate::rng::Rng;

impl Paxos {
    pub(super) fn on_prepare(&mut self, m: Prepare, rng: &mut Rng) {
        self.seen = self.seen.max(m.ballot);
        if m.ballot < self.promised {
            self.reject(m.from);
            return;
        }
        if m.ballot > self.promised && self.leader_recent(Some(m.from)) {
            // Leader stickiness (check-quorum's other half): while the
            // leader we follow is alive, a higher ballot from someone else
            // comes from a replica that did not see it (an isolated one
            // rejoining, or one that skipped pre-vote). Not promising it
            // keeps that leader; a leader that really lost its quorum steps
            // down by itself, and then nobody hears it and this lapses.
            ::log::debug!(
                "r{} ignores a Prepare {:?} from r{}: its leader is alive",
                self.cfg.id,
                m.ballot,
                m.from
            );
            return;
        }
        if m.ballot > self.promised {
            self.promise(m.ballot);
            if !matches!(self.role, Role::Follower) {
                self.become_follower(None, rng);
            }
            // Give the candidate time to finish before we compete.
            self.reset_election_timer(rng);
        } else if m.from == m.ballot.node && matches!(self.role, Role::Follower) {
            // The candidate we promised asks for the next page of a long
            // log: it is making progress, so neither compete with it nor
            // help a rival do so (see `leader_recent`) until it goes quiet.
            self.election_elapsed = 0;
            self.heard_candidate = 0;
        }
        // Paged by bytes: a restarted acceptor may hold thousands of
        // accepted slots above its commit point.
        let from_slot = m.from_slot.max(self.chosen_upto);
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for (slot, e) in self.log.iter_from(from_slot) {
            let n = entry_bytes(&e.batch);
            if !entries.is_empty() && bytes + n > self.cfg.catchup_bytes_max {
                more = true;
                ::log::debug!(
                    "r{} pages its Promise to r{} at slot {slot}",
                    self.cfg.id,
                    m.from
                );
                break;
            }
            bytes += n;
            entries.push(LogEntry {
                slot,
                ballot: e.ballot,
                batch: e.batch.clone(),
            });
        }
        self.send(
            m.from,
            PaxosMsg::Promise(Promise {
                from: self.cfg.id,
                ballot: m.ballot,
                log_start: self.log.start(),
                chosen_upto: self.chosen_upto,
                entries,
                more,
            }),
        );
    }

    pub(super) fn on_accept(&mut self, m: Accept, rng: &mut Rng) {
        self.seen = self.seen.max(m.ballot);
        if m.ballot < self.promised && !self.cfg.bugs.accept_ignores_promise {
            self.reject(m.from);
            return;
        }
        self.follow(m.from, m.ballot, rng);
        let mut slots = Vec::with_capacity(m.entries.len());
        let horizon = self.chosen_upto.saturating_add(self.cfg.slot_horizon);
        for p in m.entries {
            if p.slot >= horizon {
                // Too far ahead to hold (each slot up to it would be
                // allocated): not acknowledged; the leader resends it once
                // catch-up brings this replica closer.
                ::log::debug!(
                    "r{} skips an Accept for slot {} beyond its horizon {horizon}",
                    self.cfg.id,
                    p.slot
                );
                continue;
            }
            // Held already in this ballot (a retransmission or a network
            // duplicate): a leader proposes one value per slot per ballot,
            // and the record was handed to storage when the entry was first
            // accepted, so it is durable (neither driver takes an event
            // while a sync is in flight) or in this round's records (then
            // this ack is released by the same sync). Writing it again only
            // costs a sync per resend; with slow disks that made acks late,
            // late acks made the leader resend more, each resend queued one
            // more sync, and a group stopped (simulator seed 6000016).
            let held = self.log.get(p.slot).is_some_and(|e| e.ballot == m.ballot);
            if p.slot >= self.chosen_upto && !held {
                accept_into(&mut self.log, &mut self.out, p.slot, m.ballot, p.batch);
            }
            // Below chosen_upto we hold the chosen value already; acking is
            // still truthful (a proposal at ballot >= the chosen one carries
            // the chosen value) and keeps the leader's slot from stalling.
            slots.push(p.slot);
        }
        self.learn(m.from, m.ballot, m.chosen_upto);
        self.send_accepted(m.from, m.ballot, slots);
        if self.cfg.bugs.accepted_before_sync {
            if let Some((to, msg)) = self.out.gated.messages.pop() {
                self.out.before_sync.push((to, msg));
            }
        }
    }

    pub(super) fn on_commit(
        &mut self,
        from: ReplicaId,
        ballot: Ballot,
        chosen_upto: Slot,
        read_round: u64,
        rng: &mut Rng,
    ) {
        self.seen = self.seen.max(ballot);
        if ballot < self.promised {
            self.reject(from);
            return;
        }
        self.follow(from, ballot, rng);
        self.learn(from, ballot, chosen_upto);
        if self.read_round_heard.0 != ballot {
            self.read_round_heard = (ballot, 0);
        }
        self.read_round_heard.1 = self.read_round_heard.1.max(read_round);
        self.send_accepted(from, ballot, Vec::new());
    }

    /// Acknowledge `ballot`'s leader (an empty `slots` acknowledges a
    /// heartbeat). Sent only while `ballot` is our promise, so the read
    /// round it echoes confirms that leader to the read-index protocol.
    fn send_accepted(&mut self, to: ReplicaId, ballot: Ballot, slots: Vec<Slot>) {
        let read_round = if self.read_round_heard.0 == ballot {
            self.read_round_heard.1
        } else {
            0
        };
        self.send(
            to,
            PaxosMsg::Accepted(Accepted {
                from: self.cfg.id,
                ballot,
                chosen_upto: self.chosen_upto,
                read_round,
                slots,
            }),
        );
    }

    /// A message from the leader of `ballot >= promised`: follow it.
    fn follow(&mut self, leader: ReplicaId, ballot: Ballot, rng: &mut Rng) {
        if ballot > self.promised {
            self.promise(ballot);
        }
        if !matches!(self.role, Role::Follower) {
            self.become_follower(Some(leader), rng);
        }
        self.leader_hint = Some(leader);
        self.election_elapsed = 0;
        self.heard_leader = 0;
        self.prevote = None;
    }

    /// Has a live leader other than `except` been heard within the minimum
    /// election timeout (or is this replica that leader)? Never with the
    /// `disruptive_rejoin` bug, which restores the old eager behaviour.
    pub(super) fn leader_recent(&self, except: Option<ReplicaId>) -> bool {
        if self.cfg.bugs.disruptive_rejoin {
            return false;
        }
        // Just started: a leader's read lease may count on a heartbeat
        // this replica acknowledged before it crashed.
        if self.cfg.lease_us > 0 && self.boot_ticks < self.cfg.election_ticks_min {
            return true;
        }
        match self.role {
            // A leader that lost its quorum steps down in `tick`.
            Role::Leader(_) => true,
            // A candidate still pulling Promise pages (each page resets its
            // timer) is about to lead: a rival would only cut it off.
            Role::Candidate(_) => self.election_elapsed < self.cfg.election_ticks_min,
            Role::Follower => {
                (self.leader_hint.is_some()
                    && self.leader_hint != except
                    && self.heard_leader < self.cfg.election_ticks_min)
                    || (Some(self.promised.node) != except
                        && self.heard_candidate < self.cfg.election_ticks_min)
            }
        }
    }

    pub(super) fn promise(&mut self, ballot: Ballot) {
        assert!(ballot > self.promised);
        self.promised = ballot;
        self.out.records.push(Record::Promised(ballot));
    }
}
