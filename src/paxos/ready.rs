//! The persist-before-send types: what a [`Paxos`](super::Paxos) hands its
//! driver ([`Ready`]: records, messages that may leave early, and the
//! [`Gated`] rest), the proof that records are durable ([`Synced`], which
//! only storage code can make) that releases the gated part, and the
//! durable image a restart rebuilds from ([`Durable`]).

use bytes::Bytes;
use synod_wire::{Ballot, Batch, PaxosMsg, ReplicaId, Slot};

/// A change to durable state. The driver must make every record of a
/// [`Ready`] durable, in order, before releasing the rest of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The acceptor promised `Ballot` (never to accept anything lower).
    Promised(Ballot),
    /// The acceptor accepted `batch` for `slot` in `ballot`
    /// (`Ballot::CHOSEN`: the value is known to be chosen).
    Accepted {
        slot: Slot,
        ballot: Ballot,
        batch: Batch,
    },
    /// State as of slot `index` (every slot below it applied). Log entries
    /// below `index` may be discarded once this is durable.
    Snapshot { index: Slot, data: Bytes },
}

/// What a replica finds on disk when it restarts.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    pub promised: Ballot,
    pub snapshot: Option<(Slot, Bytes)>,
    /// Accepted entries by slot; a later write to a slot replaces the earlier one.
    pub entries: std::collections::BTreeMap<Slot, (Ballot, Batch)>,
}

impl Durable {
    /// Fold one record into this durable image (what any storage must do).
    pub fn apply(&mut self, rec: &Record) {
        match rec {
            Record::Promised(b) => {
                assert!(*b >= self.promised, "promise went backwards");
                self.promised = *b;
            }
            Record::Accepted {
                slot,
                ballot,
                batch,
            } => {
                if self.snapshot.as_ref().is_none_or(|(i, _)| *slot >= *i) {
                    self.entries.insert(*slot, (*ballot, batch.clone()));
                }
            }
            Record::Snapshot { index, data } => {
                if self.snapshot.as_ref().is_none_or(|(i, _)| *i < *index) {
                    self.snapshot = Some((*index, data.clone()));
                    self.entries = self.entries.split_off(index);
                }
            }
        }
    }
}

/// Proof that the records of a [`Ready`] are durable. Only storage code in
/// this crate can make one, after its sync returns; this is how the
/// persist-before-send rule is carried by the types.
#[derive(Debug)]
pub struct Synced(());

impl Synced {
    /// Called by storage once everything it was handed is durable.
    pub(crate) fn after_sync() -> Synced {
        Synced(())
    }

    /// One sync covers every group on a core (group commit): each group's
    /// `Ready` of the same loop turn is released with a share of one proof.
    /// Never keep a proof past the turn that earned it.
    pub(crate) fn share(&self) -> Synced {
        Synced(())
    }
}

/// The output of one round of events.
#[derive(Debug, Default)]
pub struct Ready {
    /// Make these durable first, in order.
    pub records: Vec<Record>,
    /// Messages that may leave before `records` are durable: the leader's
    /// Accepts, Commits and Heartbeats. They state what the leader proposes
    /// and what a quorum already holds, nothing about this replica's own
    /// durable state, so the leader's disk write overlaps the followers'
    /// (the Raft paper's §10.2.1). The leader's own acceptance still counts
    /// only once durable: acknowledgements are handled in a later round,
    /// after the driver has synced this one's records (both drivers finish
    /// a round's sync before they take the next event).
    pub before_sync: Vec<(ReplicaId, PaxosMsg)>,
    pub(super) gated: Gated,
}

/// The part of a [`Ready`] that may happen only after its records are durable.
#[derive(Debug, Default)]
pub struct Gated {
    /// Messages to peers.
    pub messages: Vec<(ReplicaId, PaxosMsg)>,
    /// A snapshot to install into the state machine before `committed`.
    pub snapshot: Option<(Slot, Bytes)>,
    /// Chosen batches, contiguous and in slot order, to apply.
    pub committed: Vec<(Slot, Batch)>,
    /// Nothing to persist, send or apply, but the layer above has work:
    /// a read round was confirmed or replies are waiting. Keeps drivers
    /// that skip an empty `Ready` from sitting on them.
    pub wake: bool,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.before_sync.is_empty()
            && self.gated.messages.is_empty()
            && self.gated.snapshot.is_none()
            && self.gated.committed.is_empty()
            && !self.gated.wake
    }

    /// Does it hold anything the state machine must take before its state
    /// is current: chosen batches, or a snapshot to install? While a
    /// `Ready` that does is out for its sync, the state machine lags what
    /// the log says is chosen, and no read may be answered from it
    /// ([`crate::replica::Replica::read_now`]).
    pub fn holds_state(&self) -> bool {
        !self.gated.committed.is_empty() || self.gated.snapshot.is_some()
    }

    /// Mark this `Ready` as worth an `advance` even if it holds nothing else.
    pub(crate) fn wake(&mut self) {
        self.gated.wake = true;
    }

    /// Takes out the chosen batches that may be applied before this
    /// round's records are durable: those below the first slot this round
    /// accepted, and none if a snapshot to install comes first (the state
    /// machine takes that only once it is durable, and the batches follow
    /// it).
    ///
    /// Why these need no [`Synced`]: a batch is chosen once a quorum has
    /// accepted it, and every acceptance counted is durable, except the
    /// leader's own, which it counts from the moment it proposes. Counted
    /// with a follower's, that one is durable too: a follower's
    /// acknowledgement arrives in a later round, and both drivers finish a
    /// round's sync before they take the next event. Only a batch chosen in
    /// the round of its own record (a one-member group counts itself alone)
    /// may rest on an acceptance not yet on disk, and those slots are at or
    /// above the first slot of this round's records: they stay gated. For
    /// the rest, applying and answering promises nothing about this
    /// replica's disk: a crash before the sync loses only a local copy of a
    /// value that can no longer change, and recovery learns it again from
    /// the quorum. So a leader answers a write in the round its quorum
    /// forms, not after its own next sync (which holds later batches).
    ///
    /// What it takes leaves the `Ready` awake: the rest of the round (a
    /// snapshot the applied batches may trigger) still runs in `advance`.
    pub fn take_chosen(&mut self) -> Vec<(Slot, Batch)> {
        if self.gated.snapshot.is_some() || self.gated.committed.is_empty() {
            return Vec::new();
        }
        let first_record = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Accepted { slot, .. } => Some(*slot),
                _ => None,
            })
            .min();
        let early = match first_record {
            Some(first) => self.gated.committed.partition_point(|(s, _)| *s < first),
            None => self.gated.committed.len(),
        };
        if early == 0 {
            return Vec::new();
        }
        self.gated.wake = true;
        let rest = self.gated.committed.split_off(early);
        std::mem::replace(&mut self.gated.committed, rest)
    }

    /// Hand over the gated part, given proof the records are durable.
    pub fn release(self, _proof: Synced) -> Gated {
        self.gated
    }
}
