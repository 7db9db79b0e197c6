//! A group's side of two-phase commit across groups (issue 10): prepared
//! transactions, the locks they hold, and their outcome.
//!
//! Every step is a client request applied from the group's Paxos log, so
//! every replica (and one restored from a snapshot or replaying its log)
//! holds the same prepared transactions and locks:
//! - `TxnPrepare` (the group's part): refused as a duplicate by the session
//!   of the part's first key like any write; then, if some key of the part
//!   is locked by another transaction, the vote is No and nothing is
//!   locked (no-wait locking: the client aborts and retries, so no
//!   deadlock). Otherwise the compares are evaluated, both branches'
//!   operations are run on a scratch copy of the keys (each seeing the
//!   ones before it), the keys are locked, and the vote is Yes with both
//!   branches' results. What each branch leaves in its keys is kept in the
//!   prepared record, so applying the outcome later needs no re-run and
//!   sees exactly what the vote reported; every key the branch writes gets
//!   the version the prepare took (the store's next revision).
//! - `TxnDecide` / `TxnFinish` (the outcome): the prepared record's entries
//!   of the chosen branch replace the keys (Success, Failure) or nothing
//!   changes (Abort); the locks go. A group holding no record for the
//!   transaction answers [`TXN_NOT_HELD`] and changes nothing.
//!
//! - Presumed abort (recovery when the client goes quiet): the
//!   coordinator group remembers every decision it logged ([`Decisions`],
//!   by transaction id, for [`TXN_DECISION_RETENTION_MS`] of log time).
//!   The first decision in its log wins: a `TxnDecide` that finds one
//!   already there changes nothing and answers the one that stands, and
//!   [`KvStore::presume_abort`] (a participant asked, `TxnResolve`, and
//!   nothing was decided) logs `Abort` unless something else was. A
//!   prepare of a transaction this group already aborted so votes No and
//!   locks nothing. A participant applies what the coordinator answered
//!   through its own log ([`KvStore::resolve`]).
//!
//! While a key is locked, every other request on it (a single-key read or
//! write, a single-group transaction, a whole-shard Scan, Count or Flush
//! of its shard) is answered `Busy`, so a reader never sees the state
//! before a transaction that may already have been decided, and the
//! client retries with backoff. Prepared records are part of the snapshot
//! (and the shardkv layer does not hand a shard with locks to another
//! group), so neither a crash nor a reconfiguration loses one.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;
use synod_wire::{
    encode_txn_vote, ClientReply, ClientRequest, GroupId, Op, TxnFinish, TxnId, TxnOpResult,
    TxnOutcome, TxnPrepare, TxnVote, TXN_NOT_HELD,
};

use super::compact::Key;
use super::shard::{apply_op, Data, Entry};
use super::KvStore;

/// What one branch of a prepared part leaves in each key it writes
/// (`None`: no value).
pub(crate) type Staged = Vec<(Box<[u8]>, Option<Entry>)>;

/// One prepared part of a cross-group transaction, held until its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// The keys locked, sorted and distinct.
    pub(crate) keys: Vec<Box<[u8]>>,
    /// Log time of the prepare.
    pub(crate) prepared_ms: u64,
    /// The coordinator group, asked for the outcome if the client goes
    /// quiet (0: unknown, a prepare logged before recovery existed).
    pub(crate) coordinator: GroupId,
    /// Per branch (0: success, 1: failure), each key the branch writes and
    /// what it leaves there (`None`: no value).
    pub(crate) writes: [Staged; 2],
}

/// How long (log time) a coordinator remembers a decision. It must outlast
/// (1) every resend of the client's `TxnDecide` (the session retries 2PC
/// messages for 8x its request timeout), so a resent commit is answered
/// from the record and never presumed aborted, and (2) every participant's
/// `TxnResolve`, which comes [`crate::shardkv::migrator::DEFAULT_RESOLVE_AFTER`]
/// after the prepare and is retried until answered. A participant cut off
/// from its coordinator for longer than this would be answered Abort for
/// a transaction that may have committed: the one timing assumption of
/// recovery (ARCHITECTURE.md, Transactions).
pub const TXN_DECISION_RETENTION_MS: u64 = 10 * 60 * 1000;

/// Decisions a group keeps at most. A prepare at a group that holds this
/// many votes No (back-pressure: the client retries later) instead of
/// making the table grow; a decision is always recorded, so the table can
/// exceed this by the transactions already prepared. About 80 bytes each.
pub const TXN_DECISIONS_MAX: usize = 1 << 20;

/// The decisions this group logged as coordinator, for presumed abort.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Decisions {
    pub(crate) by_id: HashMap<TxnId, TxnOutcome>,
    /// `(log time, id)` in log order, so oldest first (log time never goes
    /// back): what expires next, and the snapshot's order.
    pub(crate) order: VecDeque<(u64, TxnId)>,
}

impl Decisions {
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    fn record(&mut self, txn: TxnId, outcome: TxnOutcome, now: u64) {
        let old = self.by_id.insert(txn, outcome);
        assert!(old.is_none(), "a second decision for {txn:?}");
        self.order.push_back((now, txn));
    }

    /// Forgets decisions older than the retention at log time `now`.
    pub(crate) fn expire(&mut self, now: u64) {
        while let Some(&(at, txn)) = self.order.front() {
            if now.saturating_sub(at) <= TXN_DECISION_RETENTION_MS {
                break;
            }
            self.order.pop_front();
            self.by_id.remove(&txn);
        }
    }
}

impl KvStore {
    /// The decision this group logged for `txn` as its coordinator, if it
    /// still remembers one.
    pub fn decision(&self, txn: TxnId) -> Option<TxnOutcome> {
        self.decisions.by_id.get(&txn).copied()
    }

    /// Decisions remembered.
    pub fn decision_count(&self) -> usize {
        self.decisions.len()
    }

    /// Every prepared part held: its id, coordinator and log time of the
    /// prepare (what the leader's recovery looks at).
    pub fn prepared_parts(&self) -> impl Iterator<Item = (TxnId, GroupId, u64)> + '_ {
        self.prepared
            .iter()
            .map(|(id, p)| (*id, p.coordinator, p.prepared_ms))
    }

    /// Is `key` locked by a prepared transaction?
    pub(crate) fn locked(&self, key: &[u8]) -> bool {
        self.shards[self.shard_of_key(key) as usize]
            .locks
            .contains_key(key)
    }

    /// Does shard `shard` hold a lock (so it must not change hands)?
    pub fn shard_locked(&self, shard: u32) -> bool {
        !self.shard(shard).locks.is_empty()
    }

    /// Prepared transactions held.
    pub fn prepared_count(&self) -> usize {
        self.prepared.len()
    }

    /// Is a request on these keys (or whole shard) to wait for a lock?
    pub(crate) fn blocked_by_lock(&self, op: &Op) -> bool {
        if self.prepared.is_empty() {
            return false; // the common case: one map lookup, not one per key
        }
        match op {
            Op::Txn(txn) => txn.keys().any(|k| self.locked(k)),
            Op::Scan { key, .. } | Op::Count { key } | Op::Flush { key } => {
                self.shard_locked(self.shard_of_key(key))
            }
            Op::TxnPrepare(_) | Op::TxnDecide(_) | Op::TxnFinish(_) => false,
            other => self.locked(other.key()),
        }
    }

    /// Applies a `TxnPrepare` at most once (see the module docs).
    pub(super) fn apply_prepare(
        &mut self,
        req: &ClientRequest,
        print: u32,
        p: &TxnPrepare,
    ) -> ClientReply {
        if let Some(why) = p.part.invalid() {
            return ClientReply::Error {
                reason: why.to_string(),
            };
        }
        self.in_home_session(req, print, |kv, rules| {
            kv.prepare(p, rules.version, rules.log_time_ms)
        })
    }

    fn prepare(&mut self, p: &TxnPrepare, version: u64, now: u64) -> ClientReply {
        if self.prepared.contains_key(&p.txn) {
            // One prepare per transaction and group: a client bug.
            return ClientReply::Error {
                reason: "transaction already prepared here".to_string(),
            };
        }
        if self.decision(p.txn) == Some(TxnOutcome::Abort)
            || self.decisions.len() >= TXN_DECISIONS_MAX
        {
            // Presumed aborted here already (this group is its
            // coordinator, and a participant asked before this prepare
            // arrived): locking now would hold keys for a transaction
            // that can never commit. Or the decision table is full:
            // back-pressure. Either way No, nothing locked.
            return ClientReply::Ok(encode_txn_vote(&TxnVote::default()));
        }
        let written: BTreeSet<&[u8]> = p
            .part
            .success
            .iter()
            .chain(&p.part.failure)
            .filter(|op| !matches!(op, Op::Get { .. }))
            .map(|op| &op.key()[..])
            .collect();
        let all: BTreeSet<&[u8]> = p.part.keys().map(|k| &k[..]).collect();
        if all.iter().any(|k| self.locked(k)) {
            let vote = TxnVote::default(); // No: another transaction holds a key
            return ClientReply::Ok(encode_txn_vote(&vote));
        }
        // Keys expired by now are absent for the compares and operations.
        for key in &all {
            let shard = self.shard_of_key(key) as usize;
            self.shards[shard].purge_if_expired(key, now);
        }
        let holds = p.part.compares.iter().all(|c| self.holds(c));
        let mut results: [Vec<TxnOpResult>; 2] = [Vec::new(), Vec::new()];
        let mut writes: [Staged; 2] = [Vec::new(), Vec::new()];
        for (b, ops) in [&p.part.success, &p.part.failure].into_iter().enumerate() {
            let mut scratch = Data::new();
            for key in &all {
                if let Some(e) = self.shards[self.shard_of_key(key) as usize].data.get(*key) {
                    scratch.insert(Key::from(*key), e.clone());
                }
            }
            for op in ops {
                let reply = apply_op(&mut scratch, op, version, now);
                let v = scratch.get(&op.key()[..]).map_or(0, |e| e.version);
                results[b].push(match reply {
                    ClientReply::Ok(value) => TxnOpResult::Ok { value, version: v },
                    ClientReply::NoKey => TxnOpResult::NoKey,
                    ClientReply::Error { reason } => TxnOpResult::Error { reason },
                    other => unreachable!("a data operation answered {other:?}"),
                });
            }
            let touched: BTreeSet<&[u8]> = ops
                .iter()
                .filter(|op| !matches!(op, Op::Get { .. }))
                .map(|op| &op.key()[..])
                .collect();
            writes[b] = touched
                .into_iter()
                .map(|k| (Box::from(k), scratch.get(k).cloned()))
                .collect();
        }
        self.revision = version;
        let vote = TxnVote {
            yes: true,
            holds,
            success: std::mem::take(&mut results[0]),
            failure: std::mem::take(&mut results[1]),
        };
        if self.opts.planted_txn_early_release {
            // Planted bug: apply this group's branch at once, as if the
            // decision were already known, and lock nothing.
            let branch = if holds { 0 } else { 1 };
            let w = std::mem::take(&mut writes[branch]);
            self.install(&w, now);
            return ClientReply::Ok(encode_txn_vote(&vote));
        }
        let keys: Vec<Box<[u8]>> = if self.opts.planted_txn_unlocked_reads {
            // Planted bug: keys the part only reads are not locked.
            written.iter().map(|k| Box::from(*k)).collect()
        } else {
            all.iter().map(|k| Box::from(*k)).collect()
        };
        for key in &keys {
            let shard = self.shard_of_key(key) as usize;
            self.shards[shard].locks.insert(key.clone(), p.txn);
        }
        self.prepared.insert(
            p.txn,
            Prepared {
                keys,
                prepared_ms: now,
                coordinator: p.coordinator,
                writes,
            },
        );
        ClientReply::Ok(encode_txn_vote(&vote))
    }

    /// Applies a `TxnDecide` at the coordinator: the first decision in
    /// the log wins. If one is recorded (a resend, or a presumed abort
    /// that came first) nothing changes and the answer is the outcome
    /// that stands, so a client whose commit lost to a presumed abort
    /// hears Abort. Otherwise `f.outcome` is recorded and applied to the
    /// coordinator's own prepared part. With neither a record nor a part
    /// (a decision older than the retention) nothing is recorded and the
    /// answer is [`TXN_NOT_HELD`]: the outcome is unknown here.
    pub(super) fn apply_decide(&mut self, f: &TxnFinish) -> ClientReply {
        let now = self.log_time_ms;
        self.decisions.expire(now);
        let code = if let Some(stands) = self.decision(f.txn) {
            stands as u8
        } else if self.prepared.contains_key(&f.txn) {
            self.decisions.record(f.txn, f.outcome, now);
            assert!(self.finish_prepared(f.txn, f.outcome, now));
            f.outcome as u8
        } else {
            TXN_NOT_HELD
        };
        ClientReply::Ok(Bytes::copy_from_slice(&[code]))
    }

    /// A participant asked this group (the coordinator of `txn`) for the
    /// outcome and none was logged: log Abort, unless a decision got into
    /// the log first, and abort the coordinator's own prepared part if it
    /// holds one. Applied from the log (`GroupCommand::TxnPresumeAbort`),
    /// so it is ordered against the client's `TxnDecide` like any entry.
    pub fn presume_abort(&mut self, txn: TxnId) {
        let now = self.log_time_ms;
        self.decisions.expire(now);
        if self.decision(txn).is_some() {
            return;
        }
        self.decisions.record(txn, TxnOutcome::Abort, now);
        self.finish_prepared(txn, TxnOutcome::Abort, now);
    }

    /// The coordinator answered `outcome` for `txn`: apply it to this
    /// group's prepared part, if still held (a `TxnFinish` from the client
    /// may have come first). Applied from the log
    /// (`GroupCommand::TxnResolved`).
    pub fn resolve(&mut self, txn: TxnId, outcome: TxnOutcome) {
        let now = self.log_time_ms;
        self.finish_prepared(txn, outcome, now);
    }

    /// Applies a `TxnFinish`: the outcome of the prepared part, if this
    /// group holds one. Idempotent by the transaction's id (a second copy
    /// finds nothing held), so it needs no session: it touches none, and
    /// so cannot be refused `SessionExpired` (which would leave the locks
    /// with nobody able to release them), and it is answered wherever the
    /// group's shards went since (the record is the group's, not a
    /// shard's).
    pub(super) fn apply_finish(&mut self, f: &TxnFinish) -> ClientReply {
        let now = self.log_time_ms;
        let code = match self.finish_prepared(f.txn, f.outcome, now) {
            true => f.outcome as u8,
            false => TXN_NOT_HELD,
        };
        ClientReply::Ok(Bytes::copy_from_slice(&[code]))
    }

    /// Applies `outcome` to the prepared part of `txn` and releases its
    /// locks; false if no such part is held.
    fn finish_prepared(&mut self, txn: TxnId, outcome: TxnOutcome, now: u64) -> bool {
        let Some(mut p) = self.prepared.remove(&txn) else {
            return false;
        };
        for key in &p.keys {
            let shard = self.shard_of_key(key) as usize;
            let holder = self.shards[shard].locks.remove(key);
            assert_eq!(holder, Some(txn), "lock of a prepared key held by another");
        }
        let branch = match outcome {
            TxnOutcome::Abort => return true,
            TxnOutcome::Success => 0,
            TxnOutcome::Failure => 1,
        };
        let writes = std::mem::take(&mut p.writes[branch]);
        self.install(&writes, now);
        true
    }

    /// Puts what a branch left into the data (a key whose entry expired
    /// meanwhile is removed instead).
    fn install(&mut self, writes: &[(Box<[u8]>, Option<Entry>)], now: u64) {
        for (key, entry) in writes {
            let shard = &mut self.shards[shard_of_store(self.opts.shards, key)];
            let before = shard.expiry_of(key);
            match entry {
                Some(e) if !e.expired(now) => {
                    let after = e.expires_ms;
                    shard.data.insert(Key::from(&key[..]), e.clone());
                    shard.reindex(key, before, after);
                }
                _ => {
                    shard.data.remove(key);
                    shard.reindex(key, before, 0);
                }
            }
        }
    }

    /// Rebuilds every shard's lock index from the prepared records (after
    /// a restore: the index is derived, never encoded).
    pub(super) fn rebuild_locks(&mut self) {
        for shard in &mut self.shards {
            shard.locks.clear();
        }
        let shards = self.opts.shards;
        for (txn, p) in &self.prepared {
            for key in &p.keys {
                self.shards[shard_of_store(shards, key)]
                    .locks
                    .insert(key.clone(), *txn);
            }
        }
    }

    /// The locks agree with the prepared records.
    pub(super) fn assert_lock_invariants(&self) {
        let mut count = 0;
        for (txn, p) in &self.prepared {
            for key in &p.keys {
                let shard = &self.shards[self.shard_of_key(key) as usize];
                assert_eq!(shard.locks.get(key), Some(txn), "lock index out of date");
                count += 1;
            }
        }
        let indexed: usize = self.shards.iter().map(|s| s.locks.len()).sum();
        assert_eq!(indexed, count, "a lock without a prepared record");
    }
}

fn shard_of_store(shards: u32, key: &[u8]) -> usize {
    super::shard_of(key, shards) as usize
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use synod_wire::{
        decode_txn_vote, ClientReply, ClientRequest, Compare, CompareOp, CompareTarget, Op, Txn,
        TxnFinish, TxnId, TxnOpResult, TxnOutcome, TxnPrepare, TXN_NOT_HELD,
    };

    use crate::kv::{KvOptions, KvStore};

    const CLIENT: u64 = 7 << 32;

    fn req(seq: u64, op: Op) -> ClientRequest {
        ClientRequest {
            client_id: CLIENT,
            seq,
            ack_seq: 0,
            op,
        }
    }

    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
        }
    }

    fn get(k: &str) -> Op {
        Op::Get {
            key: Bytes::copy_from_slice(k.as_bytes()),
        }
    }

    fn prepare(txn: u64, part: Txn) -> Op {
        Op::TxnPrepare(Box::new(TxnPrepare {
            txn: TxnId {
                client: CLIENT,
                seq: txn,
            },
            part,
            coordinator: 1,
        }))
    }

    fn decide(txn: u64, key: &str, outcome: TxnOutcome) -> Op {
        let Op::TxnFinish(f) = finish(txn, key, outcome) else {
            unreachable!()
        };
        Op::TxnDecide(f)
    }

    fn id(txn: u64) -> TxnId {
        TxnId {
            client: CLIENT,
            seq: txn,
        }
    }

    fn finish(txn: u64, key: &str, outcome: TxnOutcome) -> Op {
        Op::TxnFinish(Box::new(TxnFinish {
            txn: TxnId {
                client: CLIENT,
                seq: txn,
            },
            key: Bytes::copy_from_slice(key.as_bytes()),
            outcome,
        }))
    }

    fn transfer() -> Txn {
        Txn {
            compares: vec![Compare {
                key: Bytes::from_static(b"a"),
                op: CompareOp::Eq,
                target: CompareTarget::Value(Bytes::from_static(b"10")),
            }],
            success: vec![put("a", "5"), get("a")],
            failure: vec![get("a")],
        }
    }

    fn vote(reply: ClientReply) -> synod_wire::TxnVote {
        match reply {
            ClientReply::Ok(v) => decode_txn_vote(v).expect("a vote"),
            other => panic!("not a vote: {other:?}"),
        }
    }

    #[test]
    fn prepare_locks_and_the_outcome_applies_what_the_vote_reported() {
        let mut kv = KvStore::new(KvOptions::default());
        kv.apply(&req(1, put("a", "10")));
        let v = vote(kv.apply(&req(2, prepare(2, transfer()))));
        assert!(v.yes && v.holds);
        let version = match &v.success[1] {
            TxnOpResult::Ok { value, version } => {
                assert_eq!(&value[..], b"5");
                *version
            }
            other => panic!("{other:?}"),
        };
        // Locked: single-key requests wait, a second prepare votes No.
        assert_eq!(kv.apply(&req(3, put("a", "1"))), ClientReply::Busy);
        assert_eq!(kv.read(b"a"), ClientReply::Busy);
        assert!(!vote(kv.apply(&req(4, prepare(4, transfer())))).yes);
        // Survives a snapshot.
        let mut kv = KvStore::restore(&kv.snapshot(), KvOptions::default()).unwrap();
        assert_eq!(kv.prepared_count(), 1);
        let done = kv.apply(&req(5, finish(2, "a", TxnOutcome::Success)));
        assert_eq!(done, ClientReply::Ok(Bytes::from_static(&[1])));
        assert_eq!(kv.read(b"a"), ClientReply::Ok(Bytes::from_static(b"5")));
        assert_eq!(kv.version(b"a"), version);
        // Finished: a second finish holds nothing.
        let again = kv.apply(&req(6, finish(2, "a", TxnOutcome::Success)));
        assert_eq!(again, ClientReply::Ok(Bytes::from_static(&[TXN_NOT_HELD])));
        kv.assert_invariants();
    }

    #[test]
    fn abort_releases_the_locks_and_changes_nothing() {
        let mut kv = KvStore::new(KvOptions::default());
        kv.apply(&req(1, put("a", "10")));
        assert!(vote(kv.apply(&req(2, prepare(2, transfer())))).yes);
        kv.apply(&req(3, finish(2, "a", TxnOutcome::Abort)));
        assert_eq!(kv.read(b"a"), ClientReply::Ok(Bytes::from_static(b"10")));
        assert_eq!(kv.prepared_count(), 0);
        assert_eq!(
            kv.apply(&req(4, put("a", "1"))),
            ClientReply::Ok(Bytes::new())
        );
        kv.assert_invariants();
    }

    /// The first decision in the coordinator's log wins: a commit that
    /// arrives after a presumed abort is answered Abort and applies
    /// nothing; a resent commit is answered from the record.
    #[test]
    fn the_first_decision_in_the_log_wins() {
        let mut kv = KvStore::new(KvOptions::default());
        kv.apply(&req(1, put("a", "10")));
        assert!(vote(kv.apply(&req(2, prepare(2, transfer())))).yes);
        kv.presume_abort(id(2));
        assert_eq!(kv.prepared_count(), 0, "the coordinator's part aborted");
        assert_eq!(kv.decision(id(2)), Some(TxnOutcome::Abort));
        let late = kv.apply(&req(3, decide(2, "a", TxnOutcome::Success)));
        assert_eq!(late, ClientReply::Ok(Bytes::from_static(&[0])));
        assert_eq!(kv.read(b"a"), ClientReply::Ok(Bytes::from_static(b"10")));
        // A prepare of the aborted transaction (late, or resent with a
        // seq of its own) votes No and locks nothing.
        let Op::TxnPrepare(p) = prepare(2, transfer()) else {
            unreachable!()
        };
        let again = kv.apply(&req(4, Op::TxnPrepare(p)));
        assert!(!vote(again).yes);
        assert!(!kv.locked(b"a"));

        // Committed first: a presumed abort after it changes nothing, and
        // a resend of the decision is answered from the record.
        assert!(vote(kv.apply(&req(5, prepare(5, transfer())))).yes);
        let ok = kv.apply(&req(6, decide(5, "a", TxnOutcome::Success)));
        assert_eq!(ok, ClientReply::Ok(Bytes::from_static(&[1])));
        kv.presume_abort(id(5));
        assert_eq!(kv.decision(id(5)), Some(TxnOutcome::Success));
        assert_eq!(kv.read(b"a"), ClientReply::Ok(Bytes::from_static(b"5")));
        let resent = kv.apply(&req(7, decide(5, "a", TxnOutcome::Success)));
        assert_eq!(resent, ClientReply::Ok(Bytes::from_static(&[1])));
        // Nothing prepared, nothing recorded: the outcome is unknown here.
        let unknown = kv.apply(&req(8, decide(99, "a", TxnOutcome::Success)));
        assert_eq!(
            unknown,
            ClientReply::Ok(Bytes::from_static(&[TXN_NOT_HELD]))
        );
        assert_eq!(kv.decision(id(99)), None);
        kv.assert_invariants();
    }

    /// A participant applies the coordinator's answer through its log;
    /// the client's own finish may come first (then nothing is held).
    #[test]
    fn a_participant_applies_the_resolved_outcome() {
        let mut kv = KvStore::new(KvOptions::default());
        kv.apply(&req(1, put("a", "10")));
        assert!(vote(kv.apply(&req(2, prepare(2, transfer())))).yes);
        let parts: Vec<_> = kv.prepared_parts().collect();
        assert_eq!(parts, vec![(id(2), 1, 0)]);
        kv.resolve(id(2), TxnOutcome::Success);
        assert_eq!(kv.read(b"a"), ClientReply::Ok(Bytes::from_static(b"5")));
        kv.resolve(id(2), TxnOutcome::Abort); // held no more: nothing
        assert_eq!(kv.read(b"a"), ClientReply::Ok(Bytes::from_static(b"5")));
        assert_eq!(kv.decision(id(2)), None, "a participant records nothing");
    }

    /// Decisions survive a snapshot (format 6), expire after the
    /// retention by log time, and a format 5 snapshot (no coordinators,
    /// no decisions) still restores.
    #[test]
    fn decisions_are_snapshotted_and_expire_by_log_time() {
        let mut kv = KvStore::new(KvOptions::default());
        kv.advance_clock(1_000, |_| true);
        assert!(vote(kv.apply(&req(1, prepare(1, transfer())))).yes);
        kv.presume_abort(id(1));
        assert!(vote(kv.apply(&req(2, prepare(2, transfer())))).yes);
        let mut back = KvStore::restore(&kv.snapshot(), KvOptions::default()).unwrap();
        assert_eq!(back, kv);
        assert_eq!(back.decision(id(1)), Some(TxnOutcome::Abort));
        assert_eq!(back.prepared_parts().next().unwrap().1, 1);
        back.advance_clock(1_000 + crate::kv::TXN_DECISION_RETENTION_MS, |_| true);
        assert_eq!(back.decision(id(1)), Some(TxnOutcome::Abort), "not yet");
        back.advance_clock(1_001 + crate::kv::TXN_DECISION_RETENTION_MS, |_| true);
        assert_eq!(back.decision(id(1)), None);
        assert_eq!(back.decision_count(), 0);
        assert_eq!(back.prepared_count(), 1, "prepared parts never expire");

        let v5 = crate::kv::snapshot::as_format_5(&back);
        let old = KvStore::restore(&v5, KvOptions::default()).unwrap();
        assert_eq!(old.prepared_count(), 1);
        assert_eq!(
            old.prepared_parts().next().unwrap().1,
            0,
            "coordinator unknown"
        );
        // Re-snapshotted, it is format 6 and restores to itself.
        let again = KvStore::restore(&old.snapshot(), KvOptions::default()).unwrap();
        assert_eq!(again, old);
    }

    #[test]
    fn a_resent_prepare_is_answered_from_the_session() {
        let mut kv = KvStore::new(KvOptions::default());
        let first = kv.apply(&req(1, prepare(1, transfer())));
        assert_eq!(kv.apply(&req(1, prepare(1, transfer()))), first);
        assert_eq!(kv.prepared_count(), 1);
    }

    #[test]
    fn the_planted_forget_bug_loses_the_prepared_part_in_a_snapshot() {
        let opts = KvOptions {
            planted_txn_forget_prepared: true,
            ..KvOptions::default()
        };
        let mut kv = KvStore::new(opts);
        assert!(vote(kv.apply(&req(1, prepare(1, transfer())))).yes);
        let kv = KvStore::restore(&kv.snapshot(), opts).unwrap();
        assert_eq!(kv.prepared_count(), 0);
    }

    #[test]
    fn corrupt_prepared_sections_are_errors_not_panics() {
        let mut kv = KvStore::new(KvOptions::default());
        kv.apply(&req(1, put("a", "10")));
        kv.apply(&req(2, prepare(2, transfer())));
        kv.apply(&req(3, prepare(3, transfer())));
        kv.presume_abort(id(3));
        let snap = kv.snapshot();
        for len in 0..snap.len() {
            assert!(KvStore::restore(&snap[..len], KvOptions::default()).is_err());
        }
        for i in 0..snap.len() {
            let mut bad = snap.to_vec();
            bad[i] ^= 0x40;
            let _ = KvStore::restore(&bad, KvOptions::default());
        }
    }
}
