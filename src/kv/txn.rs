//! Transactions inside one group's store (issue 10): compares on values and
//! versions, then one of two lists of operations, all in one log entry, so
//! no other request sees a state between them.
//!
//! A transaction is one write: it takes one revision (every key it changes
//! gets that version), runs at most once through the session of its first
//! key's shard, and is decided from the state alone, so every replica (and
//! one restored from a snapshot) decides alike. Its keys may lie in any
//! shards of this store; whether the group serves them all is the caller's
//! check (`ShardKv` answers `WrongGroup` otherwise).

use synod_wire::{
    encode_txn_result, ClientReply, ClientRequest, Compare, CompareTarget, Txn, TxnOpResult,
    TxnResult,
};

use super::{KvStore, SessionRules};

impl KvStore {
    /// Applies a transaction request at most once (see the module docs).
    pub(super) fn apply_txn(&mut self, req: &ClientRequest, print: u32, txn: &Txn) -> ClientReply {
        if let Some(why) = txn.invalid() {
            // Refused before any session is touched: nothing changes.
            return ClientReply::Error {
                reason: why.to_string(),
            };
        }
        self.in_home_session(req, print, |kv, rules| kv.run_txn(txn, rules))
    }

    /// Runs `txn` (already deduplicated) at `rules`' version and log time.
    fn run_txn(&mut self, txn: &Txn, rules: &SessionRules) -> ClientReply {
        // Keys expired by now are absent for the compares and operations.
        for key in txn.keys() {
            let shard = self.shard_of_key(key) as usize;
            self.shards[shard].purge_if_expired(key, rules.log_time_ms);
        }
        let succeeded =
            self.opts.planted_txn_ignore_compares || txn.compares.iter().all(|c| self.holds(c));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let shard = self.shard_of_key(op.key()) as usize;
            let reply = self.shards[shard].apply_data_op(op, rules);
            let version = self.shards[shard]
                .data
                .get(&op.key()[..])
                .map_or(0, |e| e.version);
            results.push(match reply {
                ClientReply::Ok(value) => TxnOpResult::Ok { value, version },
                ClientReply::NoKey => TxnOpResult::NoKey,
                ClientReply::Error { reason } => TxnOpResult::Error { reason },
                other => unreachable!("a data operation answered {other:?}"),
            });
        }
        self.revision = rules.version;
        ClientReply::Ok(encode_txn_result(&TxnResult { succeeded, results }))
    }

    /// A single-group transaction at the group that serves its first key's
    /// shard (where its session lives) but not every key: a copy of it
    /// that already applied is answered from the session, and otherwise the
    /// refusal [`synod_wire::TXN_SPANS_GROUPS`] is cached under its seq, so
    /// no later copy applies anywhere (the session moves with the shard).
    /// Nothing else changes.
    pub(crate) fn refuse_spanning_txn(&mut self, req: &ClientRequest, print: u32) -> ClientReply {
        self.in_home_session(req, print, |_, _| ClientReply::Error {
            reason: synod_wire::TXN_SPANS_GROUPS.to_string(),
        })
    }

    /// Does `c` hold in the current state?
    pub(super) fn holds(&self, c: &Compare) -> bool {
        let entry = self.shards[self.shard_of_key(&c.key) as usize]
            .data
            .get(&c.key[..]);
        match &c.target {
            CompareTarget::Version(v) => c.op.holds(entry.map_or(0, |e| e.version).cmp(v)),
            CompareTarget::Value(v) => {
                entry.is_some_and(|e| c.op.holds(e.value.as_slice().cmp(&v[..])))
            }
        }
    }
}
