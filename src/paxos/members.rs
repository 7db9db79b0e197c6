//! Group membership change: which replicas' votes count, per slot.
//!
//! The membership is a set of replica ids (a bitmask: ids are below 64).
//! It changes through the log itself: a **membership entry** is a slot
//! whose batch is one [`members_command`]; it governs every slot after it,
//! and only once it is chosen. So the membership of slot `s` is a function
//! of the chosen prefix below `s`: the initial one ([`Config::members`],
//! or the one a snapshot carries, [`wrap_snapshot`]) changed by each
//! membership entry chosen below `s`.
//!
//! Why no two disjoint quorums can decide (ARCHITECTURE.md, "Membership
//! change", has the long form):
//! - A leader counts a slot chosen only with a majority of the membership
//!   at its commit point AND of every membership entry it has in flight
//!   (joint, for the few slots a change is in flight), and proposes no
//!   fresh slot beyond an unchosen membership entry (α = 1).
//! - A candidate leads only with promises from a majority of the
//!   membership at its commit point AND of every membership entry among
//!   the highest-ballot values reported above it, re-checked as promises
//!   and catch-up arrive. The first membership entry chosen above its
//!   commit point was accepted by a majority of the membership it knows,
//!   so a promiser reports it; then it asks a majority of that one too,
//!   and so on: it sees every value any quorum of the true membership of
//!   any open slot accepted.
//! - One change at a time (add or remove one replica; a replace is an add
//!   then a remove), proposed only once an entry of the leader's own
//!   ballot is chosen and no other change is in flight: any two
//!   consecutive memberships' majorities intersect even where the joint
//!   rule does not apply (Ongaro 2015's single-server change).
//!
//! `PlantedBugs::membership_switches_at_once` drops all three rules: any
//! change at once, counted by the newest membership alone, and candidates
//! that ask only the membership at their commit point. The simulator's
//! checkers catch it (`tests/sim.rs`).

use bytes::{BufMut, Bytes, BytesMut};
use synod_wire::{Batch, ReplicaId, Slot};

use super::{Paxos, Role};

/// First bytes of a membership command. 0xEF is outside every state
/// machine's command tags (client ops are wire kinds below 0x40, the
/// master's 0x30..=0x33; the KV group's own commands are 0xE1..=0xE6).
const MEMBERS_MAGIC: &[u8; 8] = b"\xEFMEMBERS";
/// First bytes of a snapshot that carries its membership.
const SNAPSHOT_MAGIC: &[u8; 8] = b"\xEFSNAPMEM";

/// Is `acks` a majority of `members`? (Never of an empty membership.)
pub fn majority(acks: u64, members: u64) -> bool {
    (acks & members).count_ones() > members.count_ones() / 2
}

/// The replica ids of a membership mask, ascending.
pub fn member_ids(members: u64) -> impl Iterator<Item = ReplicaId> {
    (0..64u32).filter(move |i| members & (1u64 << i) != 0)
}

/// Every id below `replicas` (the default membership).
pub fn all_members(replicas: u32) -> u64 {
    if replicas >= 64 {
        u64::MAX
    } else {
        (1u64 << replicas) - 1
    }
}

/// The log command of a membership entry: `members` governs every slot
/// after the one it is chosen in.
pub fn members_command(members: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(16);
    b.put_slice(MEMBERS_MAGIC);
    b.put_u64_le(members);
    b.freeze()
}

/// The membership a command sets, if it is a membership command.
pub fn command_members(cmd: &[u8]) -> Option<u64> {
    if cmd.len() == 16 && cmd[..8] == MEMBERS_MAGIC[..] {
        Some(u64::from_le_bytes(cmd[8..16].try_into().ok()?))
    } else {
        None
    }
}

/// The membership a batch sets: a membership entry is a slot of its own.
pub fn batch_members(batch: &Batch) -> Option<u64> {
    match batch.commands.as_slice() {
        [cmd] => command_members(cmd),
        _ => None,
    }
}

/// A snapshot's bytes as Paxos keeps, serves and installs them: the state
/// machine's bytes, prefixed with the membership in effect at its index
/// when that is not `default` (so a group that never changed membership
/// writes exactly the bytes it always did).
/// The bytes [`wrap_snapshot`] puts in front of the state machine's:
/// nothing when `members == default`. A state machine serializing a slice
/// at a time writes its bytes after these, so nothing is copied again.
pub fn snapshot_header(members: u64, default: u64) -> Vec<u8> {
    if members == default {
        return Vec::new();
    }
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(SNAPSHOT_MAGIC);
    b.extend_from_slice(&members.to_le_bytes());
    b
}

pub fn wrap_snapshot(members: u64, default: u64, sm: Bytes) -> Bytes {
    if members == default {
        return sm;
    }
    let mut b = BytesMut::with_capacity(16 + sm.len());
    b.put_slice(SNAPSHOT_MAGIC);
    b.put_u64_le(members);
    b.put_slice(&sm);
    b.freeze()
}

/// [`wrap_snapshot`] undone: the membership it carries (`None`: the
/// default) and the state machine's bytes.
pub fn split_snapshot(data: &[u8]) -> (Option<u64>, &[u8]) {
    if data.len() >= 16 && data[..8] == SNAPSHOT_MAGIC[..] {
        let mask = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
        (Some(mask), &data[16..])
    } else {
        (None, data)
    }
}

/// Why a membership change was refused (state unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembersError {
    /// Not the leader; the best guess of who is.
    NotLeader(Option<ReplicaId>),
    /// A change is in flight or queued already: one at a time.
    Pending,
    /// Empty, naming an id outside the group's id space, or equal to the
    /// current membership.
    Invalid,
    /// More than one replica added or removed at once.
    NotOneStep,
}

impl Paxos {
    /// The membership in effect for slot `applied_upto`.
    pub fn members_applied(&self) -> u64 {
        self.members_applied
    }

    /// The membership in effect for slot `chosen_upto` (every membership
    /// entry chosen below it applied).
    pub fn members(&self) -> u64 {
        let mut m = self.members_applied;
        for s in self.applied_upto..self.chosen_upto {
            if let Some(next) = self.log.get(s).and_then(|e| batch_members(&e.batch)) {
                m = next;
            }
        }
        m
    }

    /// The membership a leader is moving to (a change queued or in flight),
    /// if any.
    pub fn members_pending(&self) -> Option<u64> {
        match &self.role {
            Role::Leader(l) => l.changes.last().map(|(_, m)| *m).or(l.change_wanted),
            _ => None,
        }
    }

    /// Is this replica a member at its commit point?
    pub(super) fn is_member(&self) -> bool {
        self.members() & (1u64 << self.cfg.id) != 0
    }

    /// Ask the leader to change the membership to `members`: one replica
    /// added or removed. Queued; the next [`Paxos::flush`] proposes it in a
    /// slot of its own once an entry of this ballot is chosen and nothing
    /// else is in flight behind it. The caller watches [`Paxos::members`]
    /// and asks again if leadership was lost meanwhile.
    pub fn propose_members(&mut self, members: u64) -> Result<(), MembersError> {
        let current = self.members();
        let universe = all_members(self.cfg.replicas);
        let at_once = self.cfg.bugs.membership_switches_at_once;
        let hint = self.leader_hint();
        let Role::Leader(l) = &mut self.role else {
            return Err(MembersError::NotLeader(hint));
        };
        if !l.changes.is_empty() || l.change_wanted.is_some() {
            return Err(MembersError::Pending);
        }
        if members == 0 || members & !universe != 0 || members == current {
            return Err(MembersError::Invalid);
        }
        if !at_once && (members ^ current).count_ones() != 1 {
            return Err(MembersError::NotOneStep);
        }
        ::log::info!(
            "r{} queues a membership change {current:#x} -> {members:#x}",
            self.cfg.id
        );
        l.change_wanted = Some(members);
        Ok(())
    }

    /// The memberships a candidate needs a majority of promises from: the
    /// one at its commit point and every one set by a highest-ballot value
    /// reported at or above it (only the first with the planted bug).
    pub(super) fn candidate_quorums(&self) -> Vec<u64> {
        let mut needs = vec![self.members()];
        if self.cfg.bugs.membership_switches_at_once {
            return needs;
        }
        if let Role::Candidate(c) = &self.role {
            for (_, (_, batch)) in c.reported.range(self.chosen_upto..) {
                if let Some(m) = batch_members(batch) {
                    needs.push(m);
                }
            }
        }
        needs
    }

    /// Has the candidate promises from a majority of every membership it must ask?
    pub(super) fn candidate_has_quorum(&self) -> bool {
        let Role::Candidate(c) = &self.role else {
            return false;
        };
        self.candidate_quorums()
            .iter()
            .all(|m| majority(c.promised_by, *m))
    }
}

/// The memberships a leader counts a vote set against: the one at its
/// commit point and every change in flight (only the newest with the
/// planted bug).
pub(super) fn leader_quorum(conf: u64, changes: &[(Slot, u64)], bug: bool, acks: u64) -> bool {
    if bug {
        let newest = changes.last().map_or(conf, |(_, m)| *m);
        return majority(acks, newest);
    }
    majority(acks, conf) && changes.iter().all(|(_, m)| majority(acks, *m))
}

/// The highest value a majority of `members` has reached, given each
/// replica's value (`vals[id]`).
pub(super) fn majority_value(vals: &[u64], members: u64) -> u64 {
    let mut v: Vec<u64> = member_ids(members)
        .filter_map(|i| vals.get(i as usize).copied())
        .collect();
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable_by(|a, b| b.cmp(a));
    let need = members.count_ones() as usize / 2 + 1;
    if v.len() < need {
        return 0;
    }
    v[need - 1]
}
