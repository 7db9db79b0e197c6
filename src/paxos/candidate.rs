//! The candidate's role: pre-vote (asking whether a quorum would promise
//! before raising any ballot, and granting or refusing others' pre-votes),
//! the election itself (a new ballot, Prepare from the commit point),
//! collecting Promise pages from a quorum, and `try_lead`: catching up to
//! the highest commit point reported and re-proposing every open slot in
//! the new ballot.

use synod_wire::{Ballot, Batch, PaxosMsg, PreVote, PreVoteReply, Prepare, Promise, Proposal};

use super::members::{batch_members, majority};
use super::{
    accept_into, paginate, Candidate, InFlight, Leader, Paxos, PreVoteRound, Role, ROUND_LIMIT,
};
use crate::rng::Rng;

impl Paxos {
    /// The election timer ran out: ask a quorum whether it would promise
    /// before raising any ballot (pre-vote), or prepare at once with the
    /// `disruptive_rejoin` bug or alone in the group.
    pub(super) fn campaign(&mut self, rng: &mut Rng) {
        if !self.is_member() {
            // Not in the group at our commit point (removed, or added and
            // not caught up yet): our votes do not count, so do not lead.
            self.reset_election_timer(rng);
            return;
        }
        if self.cfg.bugs.disruptive_rejoin || self.members() == 1 << self.cfg.id {
            self.start_election(rng);
            return;
        }
        let Some(round) = self.next_round(rng) else {
            return;
        };
        if !matches!(self.role, Role::Follower) {
            // A candidacy that timed out asks again, like any follower.
            self.role = Role::Follower;
        }
        self.leader_hint = None;
        let ballot = Ballot::new(round, self.cfg.id);
        ::log::debug!("r{} asks a pre-vote for {:?}", self.cfg.id, ballot);
        self.stats.prevotes_started += 1;
        self.prevote = Some(PreVoteRound {
            ballot,
            granted: 1 << self.cfg.id,
        });
        self.reset_election_timer(rng);
        for peer in 0..self.cfg.replicas {
            if peer != self.cfg.id {
                self.send(
                    peer,
                    PaxosMsg::PreVote(PreVote {
                        from: self.cfg.id,
                        ballot,
                        chosen_upto: self.chosen_upto,
                    }),
                );
            }
        }
    }

    /// Would we promise `m.ballot` now? Changes nothing but the answer.
    pub(super) fn on_pre_vote(&mut self, m: PreVote) {
        // A replica outside the membership at its commit point (one just
        // removed, ahead of members that have not learned it yet) does not
        // compare commit points: it never campaigns, so refusing would
        // only keep the members' stale view from getting its majority.
        let granted = !self.leader_recent(None)
            && (m.chosen_upto >= self.chosen_upto || !self.is_member())
            && m.ballot > self.promised;
        ::log::debug!(
            "r{} {} r{}'s pre-vote for {:?}",
            self.cfg.id,
            if granted { "grants" } else { "refuses" },
            m.from,
            m.ballot
        );
        let promised = self.promised;
        self.send(
            m.from,
            PaxosMsg::PreVoteReply(PreVoteReply {
                from: self.cfg.id,
                ballot: m.ballot,
                granted,
                promised,
            }),
        );
    }

    pub(super) fn on_pre_vote_reply(&mut self, m: PreVoteReply, rng: &mut Rng) {
        // A refusal for a low ballot: the next try goes above it.
        self.seen = self.seen.max(m.promised);
        let Some(pv) = &mut self.prevote else {
            return;
        };
        if m.ballot != pv.ballot || !m.granted || !matches!(self.role, Role::Follower) {
            return;
        }
        pv.granted |= 1 << m.from;
        let granted = pv.granted;
        if majority(granted, self.members()) {
            self.start_election(rng);
        }
    }

    /// The round a new candidacy (or its pre-vote) uses: one above any
    /// seen. `None`, with the timer reset, if that would reach
    /// [`ROUND_LIMIT`]: only a promise recovered from before ballots were
    /// checked can be this high, and no valid ballot is above it, so never
    /// lead.
    fn next_round(&mut self, rng: &mut Rng) -> Option<u64> {
        let round = self.promised.round.max(self.seen.round).saturating_add(1);
        if round >= ROUND_LIMIT {
            ::log::error!(
                "r{} cannot start an election above its promise {:?}",
                self.cfg.id,
                self.promised
            );
            self.reset_election_timer(rng);
            return None;
        }
        Some(round)
    }

    pub(super) fn start_election(&mut self, rng: &mut Rng) {
        let Some(round) = self.next_round(rng) else {
            return;
        };
        let ballot = Ballot::new(round, self.cfg.id);
        self.prevote = None;
        ::log::debug!("r{} starts election {:?}", self.cfg.id, ballot);
        self.stats.elections_started += 1;
        self.promise(ballot);
        self.seen = ballot;
        self.leader_hint = None;
        let mut reported = std::collections::BTreeMap::new();
        for (slot, e) in self.log.iter_from(self.chosen_upto) {
            reported.insert(slot, (e.ballot, e.batch.clone()));
        }
        self.role = Role::Candidate(Candidate {
            ballot,
            promised_by: 1 << self.cfg.id,
            reported,
            best_chosen: (self.chosen_upto, self.cfg.id),
            catchup_wait: 0,
            pages: std::collections::BTreeMap::new(),
            page_wait: 0,
        });
        self.reset_election_timer(rng);
        for peer in 0..self.cfg.replicas {
            if peer != self.cfg.id {
                self.send(
                    peer,
                    PaxosMsg::Prepare(Prepare {
                        from: self.cfg.id,
                        ballot,
                        from_slot: self.chosen_upto,
                    }),
                );
            }
        }
        self.try_lead(rng);
    }

    pub(super) fn on_promise(&mut self, m: Promise, rng: &mut Rng) {
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if m.ballot != c.ballot {
            return;
        }
        // A page: ask for the rest before counting this promise (the
        // candidate needs every entry a promiser accepted above from_slot).
        let next_page = match (m.more, m.entries.last()) {
            (true, Some(e)) => Some(e.slot + 1),
            (true, None) => return, // malformed: `more` with no entries
            (false, _) => None,
        };
        match next_page {
            None => {
                c.promised_by |= 1 << m.from;
                c.pages.remove(&m.from);
            }
            Some(from_slot) => {
                if c.promised_by & (1 << m.from) != 0
                    || c.pages.get(&m.from).is_some_and(|s| *s >= from_slot)
                {
                    // A duplicate or stale page: already asked past it.
                    return;
                }
                c.pages.insert(m.from, from_slot);
                c.page_wait = 0;
            }
        }
        for e in m.entries {
            match c.reported.get(&e.slot) {
                Some((b, _)) if *b >= e.ballot => {}
                _ => {
                    c.reported.insert(e.slot, (e.ballot, e.batch));
                }
            }
        }
        if m.chosen_upto > c.best_chosen.0 {
            c.best_chosen = (m.chosen_upto, m.from);
        }
        if let Some(from_slot) = next_page {
            let ballot = c.ballot;
            // Progress: a long log takes several pages, not a new election.
            self.election_elapsed = 0;
            self.send(
                m.from,
                PaxosMsg::Prepare(Prepare {
                    from: self.cfg.id,
                    ballot,
                    from_slot,
                }),
            );
            return;
        }
        self.try_lead(rng);
    }

    /// Become leader once a quorum promised and we know every slot that any
    /// promiser knows is chosen.
    pub(super) fn try_lead(&mut self, _rng: &mut Rng) {
        // Promises from a majority of every membership that may govern an
        // open slot, re-checked as promises and catch-up arrive.
        if !self.candidate_has_quorum() {
            return;
        }
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if self.chosen_upto < c.best_chosen.0 {
            // Slots [chosen_upto, best) are chosen but we lack their values;
            // fetch them first (tick() retries).
            if c.catchup_wait == 0 {
                c.catchup_wait = 1;
                let to = c.best_chosen.1;
                self.request_catchup(to);
            }
            return;
        }
        let Role::Candidate(c) = std::mem::replace(&mut self.role, Role::Follower) else {
            unreachable!()
        };
        let ballot = c.ballot;
        let start = self.chosen_upto;
        let next_slot = c
            .reported
            .keys()
            .next_back()
            .map_or(start, |s| (s + 1).max(start));
        ::log::debug!(
            "r{} leads {:?}: re-proposing {start}..{next_slot}",
            self.cfg.id,
            ballot
        );
        let mut reproposed = Vec::new();
        let mut inflight = std::collections::VecDeque::new();
        let mut reported = c.reported;
        let mut changes = Vec::new();
        for slot in start..next_slot {
            let batch = match reported.remove(&slot) {
                Some((_, b)) => b,
                None => Batch::noop(),
            };
            if let Some(m) = batch_members(&batch) {
                changes.push((slot, m));
            }
            accept_into(&mut self.log, &mut self.out, slot, ballot, batch.clone());
            inflight.push_back(InFlight {
                acks: 1 << self.cfg.id,
                age: 0,
            });
            reproposed.push(Proposal { slot, batch });
        }
        self.role = Role::Leader(Leader {
            ballot,
            next_slot,
            inflight,
            pending: Vec::new(),
            pending_bytes: 0,
            heartbeat_elapsed: 0,
            silent_ticks: vec![0; self.cfg.replicas as usize],
            commit_sent: start,
            takeover_slot: next_slot,
            read_round: 0,
            read_wanted: false,
            read_acked: vec![0; self.cfg.replicas as usize],
            read_confirmed: 0,
            lease_rounds: std::collections::VecDeque::new(),
            lease_until: 0,
            conf: self.members(),
            changes,
            change_wanted: None,
            own_start: start,
            peer_chosen: vec![0; self.cfg.replicas as usize],
        });
        self.leader_hint = Some(self.cfg.id);
        // A leader never installs a snapshot (it knows all a quorum knows).
        self.snap_recv = None;
        // Re-proposals go out in bounded messages; always at least one
        // (possibly empty) Accept: it announces the new leader.
        for page in paginate(reproposed, self.cfg.catchup_bytes_max) {
            self.send_accepts(ballot, page);
        }
        self.advance_leader_commit();
    }
}
