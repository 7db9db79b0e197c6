//! The replicated key/value state machine.
//!
//! This module owns one replica group's key/value data and its clients'
//! at-most-once (deduplication) state, both kept per shard so that a shard can
//! later be handed to another group together with its dedup state
//! ([`KvStore::export_shard`], [`KvStore::import_shard`],
//! [`KvStore::drop_shard`]), whole or in bounded chunks
//! ([`KvStore::key_order`], [`KvStore::export_chunk`],
//! [`KvStore::import_chunk`]). It also owns the byte layout of its snapshots.
//!
//! Every replica applies the same requests in Paxos log order, so everything
//! here is deterministic: the result depends only on the state and the
//! request, never on `HashMap` iteration order, time or randomness. It must
//! never do I/O (no sockets, files, clocks or logging that feeds back into
//! state); the replica layer persists snapshots and sends replies.
//!
//! Errors follow the project's three kinds: corrupt snapshot bytes are a
//! [`SnapshotError`] (never a panic), a broken internal invariant is an
//! `assert!`, and a refused client write is a deterministic reply.

#[cfg(test)]
mod capture_tests;
mod chunk;
mod compact;
#[cfg(test)]
mod expiry_tests;
#[cfg(test)]
mod scan_tests;
mod shard;
mod snapshot;
#[cfg(test)]
mod tests;
mod twopc;
mod txn;

use std::collections::BTreeMap;

use synod_wire::{ClientId, ClientReply, ClientRequest, TxnId};

pub use chunk::{Chunk, KeyOrder};
pub(crate) use shard::parse_float;
use shard::Shard;
pub use snapshot::SnapshotError;
pub use twopc::{TXN_DECISIONS_MAX, TXN_DECISION_RETENTION_MS};

/// Shards per store unless configured otherwise (`--shards` at master
/// bootstrap).
pub const DEFAULT_SHARDS: u32 = 64;

/// Upper bound on the shard count: one `Shard` is allocated per shard up
/// front, and `restore` trusts the configured count, so it must be sane.
pub const SHARDS_MAX: u32 = 1 << 16;

/// Largest value a Put or Append may produce. It keeps a Get reply within a
/// frame and the snapshot's `u32` lengths valid: the wire's
/// [`synod_wire::VALUE_BYTES_MAX`], derived from the default frame limit.
pub const VALUE_BYTES_MAX: usize = synod_wire::VALUE_BYTES_MAX;

/// How long a client's session in a shard lives without a write through the
/// log, in log time (`synod-server --session-ttl-secs`): 10 minutes.
pub const DEFAULT_SESSION_TTL_MS: u64 = 10 * 60 * 1000;

/// Sessions per shard at most (`synod-server --sessions-per-shard-max`);
/// beyond it the least recently active session is evicted. A session that
/// holds one cached reply costs about 350 bytes (measured:
/// `kv::tests::session_memory`), so the default bounds a 64-shard group's
/// sessions to about 90 MiB per replica even under a flood of client ids.
pub const DEFAULT_SESSIONS_PER_SHARD_MAX: usize = 4096;

/// How far ahead of the log's time a client id's creation time may be and
/// still open a session (see `shard::may_open`): client clocks may be this
/// far ahead of the leaders'.
pub const CLIENT_AHEAD_MS_MAX: u64 = 60_000;

/// Sessions dropped by expiry per clock stamp at most, so no single apply
/// does unbounded work; the rest go at the next stamps.
pub const EXPIRE_BUDGET: usize = 4096;

/// Expired keys removed per clock stamp at most (over all shards), so no
/// single apply does unbounded work; the rest go at the next stamps.
/// Until removed, an expired key already reads as absent.
pub const KEY_EXPIRE_BUDGET: usize = 1024;

/// Tag of the internal log command that stamps the log with the leader's
/// clock (see [`clock_command`]). Client commands start with a wire request
/// kind (0x01..) and shardkv's own commands use 0xE1..0xE5.
pub const TAG_CLOCK: u8 = 0xE6;

/// The log command "log time is now `ms`" (tag, then `ms` as u64 LE).
pub fn clock_command(ms: u64) -> bytes::Bytes {
    let mut b = Vec::with_capacity(9);
    b.push(TAG_CLOCK);
    b.extend_from_slice(&ms.to_le_bytes());
    bytes::Bytes::from(b)
}

/// The time of a [`clock_command`], or `None` if `cmd` is not one.
pub fn decode_clock(cmd: &[u8]) -> Option<u64> {
    match cmd {
        [TAG_CLOCK, rest @ ..] if rest.len() == 8 => {
            Some(u64::from_le_bytes(rest.try_into().ok()?))
        }
        _ => None,
    }
}

/// Configuration of a [`KvStore`]. Every replica of a group must use the same
/// options, or their states diverge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvOptions {
    /// Number of shards keys hash into; default [`DEFAULT_SHARDS`].
    pub shards: u32,
    /// A deliberately planted bug, so tests can prove the simulator's checkers
    /// bite: when true, skip the at-most-once check and re-apply duplicates.
    /// Default false. Never set it outside tests.
    pub planted_skip_dedup: bool,
    /// A planted bug: drop expired and evicted sessions without raising the
    /// shard's floor, so a delayed duplicate of a dropped client's write
    /// opens a new session and applies again. Default false; tests only.
    pub planted_forget_floor: bool,
    /// A planted bug: a transaction runs its `success` branch without
    /// evaluating its compares, so an optimistic read-compare-write loses
    /// updates. Default false; tests only (the bank checker catches it).
    pub planted_txn_ignore_compares: bool,
    /// A planted bug: a participant that votes Yes on a cross-group
    /// prepare applies its own branch at once and keeps no locks, before
    /// any decision is logged. Default false; tests only.
    pub planted_txn_early_release: bool,
    /// A planted bug: a prepare locks only the keys its part writes, so a
    /// read inside a cross-group transaction is served from an unlocked
    /// key. Default false; tests only.
    pub planted_txn_unlocked_reads: bool,
    /// A planted bug: snapshots leave out the prepared transactions, so a
    /// participant restored from one forgets what it prepared. Default
    /// false; tests only.
    pub planted_txn_forget_prepared: bool,
    /// Sessions idle longer than this (log time, ms) are dropped; default
    /// [`DEFAULT_SESSION_TTL_MS`].
    pub session_ttl_ms: u64,
    /// Sessions per shard at most; default [`DEFAULT_SESSIONS_PER_SHARD_MAX`].
    pub sessions_per_shard_max: usize,
}

impl Default for KvOptions {
    fn default() -> KvOptions {
        KvOptions {
            shards: DEFAULT_SHARDS,
            planted_skip_dedup: false,
            planted_forget_floor: false,
            planted_txn_ignore_compares: false,
            planted_txn_early_release: false,
            planted_txn_unlocked_reads: false,
            planted_txn_forget_prepared: false,
            session_ttl_ms: DEFAULT_SESSION_TTL_MS,
            sessions_per_shard_max: DEFAULT_SESSIONS_PER_SHARD_MAX,
        }
    }
}

/// What a shard needs to decide about sessions at one apply.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionRules {
    pub(crate) log_time_ms: u64,
    pub(crate) sessions_max: usize,
    pub(crate) forget_floor: bool,
    /// The version a write applied now gives the keys it changes.
    pub(crate) version: u64,
}

/// Sizes of a store (or of one shard), for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvStats {
    /// Keys that have a value.
    pub keys: u64,
    /// Sum of key lengths.
    pub key_bytes: u64,
    /// Sum of value lengths.
    pub value_bytes: u64,
    /// Client sessions (one per client per shard it wrote to, until expiry
    /// or eviction).
    pub sessions: u64,
    /// Cached replies of unacknowledged writes, over all sessions.
    pub cached_replies: u64,
}

impl KvStats {
    fn add(&mut self, other: KvStats) {
        self.keys += other.keys;
        self.key_bytes += other.key_bytes;
        self.value_bytes += other.value_bytes;
        self.sessions += other.sessions;
        self.cached_replies += other.cached_replies;
    }
}

/// The key/value state machine of one replica group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvStore {
    opts: KvOptions,
    /// Indexed by shard number; always `opts.shards` long.
    shards: Vec<Shard>,
    /// Log time (ms): the largest clock stamp applied so far (0 before the
    /// first). Only moves forward; part of the snapshot.
    log_time_ms: u64,
    /// Shard where the next expiry pass starts, so a pass cut short by
    /// [`EXPIRE_BUDGET`] resumes fairly. Part of the snapshot (it decides
    /// which sessions go first).
    expire_from: u32,
    /// The store's revision: bumped by every write request applied, and
    /// the version the keys it changes get (a key's version is the revision
    /// of its last write). Raised to the highest version a migrated shard
    /// brings, so a key's version never repeats, whichever group wrote it.
    /// Part of the snapshot.
    revision: u64,
    /// Cross-group transactions prepared here and not finished (see
    /// `twopc.rs`); their locks are indexed per shard. Part of the
    /// snapshot.
    prepared: BTreeMap<TxnId, twopc::Prepared>,
    /// Decisions this group logged as a transaction's coordinator, kept
    /// for [`TXN_DECISION_RETENTION_MS`] (presumed abort, `twopc.rs`).
    /// The group's, not a shard's: never moves with a shard. Part of the
    /// snapshot.
    decisions: twopc::Decisions,
    /// A snapshot being serialized a slice at a time
    /// ([`KvStore::begin_snapshot`]); not part of the state.
    job: snapshot::Job,
}

impl KvStore {
    /// An empty store. Panics if `opts.shards` is 0 or above [`SHARDS_MAX`]:
    /// options come from configuration, not from the network.
    pub fn new(opts: KvOptions) -> KvStore {
        assert!(
            opts.shards > 0 && opts.shards <= SHARDS_MAX,
            "shard count {} outside 1..={SHARDS_MAX}",
            opts.shards
        );
        KvStore {
            opts,
            shards: vec![Shard::default(); opts.shards as usize],
            log_time_ms: 0,
            expire_from: 0,
            revision: 0,
            prepared: BTreeMap::new(),
            decisions: twopc::Decisions::default(),
            job: snapshot::Job::default(),
        }
    }

    /// The store's revision (see the field): the version of its latest
    /// write.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The version of `key`: the revision of its last write, 0 if it has
    /// no value.
    pub fn version(&self, key: &[u8]) -> u64 {
        self.shards[self.shard_of_key(key) as usize]
            .data
            .get(key)
            .filter(|e| !e.expired(self.log_time_ms))
            .map_or(0, |e| e.version)
    }

    /// Log time (ms): the latest clock stamp applied.
    pub fn log_time_ms(&self) -> u64 {
        self.log_time_ms
    }

    /// Applies a clock stamp from the log: log time becomes
    /// `max(log time, ms)` and up to [`EXPIRE_BUDGET`] sessions idle longer
    /// than the TTL are dropped (their shards' floors raised). Returns how
    /// many were dropped. Deterministic: a function of the state and `ms`.
    /// Only shards for which `live` is true expire sessions: a shard being
    /// handed away is frozen (its chunks are positions in its contents) and
    /// one arriving is not served yet.
    pub fn advance_clock(&mut self, ms: u64, live: impl Fn(u32) -> bool) -> usize {
        if self.log_time_ms == 0 && ms > 0 {
            // The first stamp: sessions opened before any (or restored from a
            // snapshot that had no times) count as active now, rather than
            // as idle since 1970.
            for (index, shard) in self.shards.iter_mut().enumerate() {
                if !live(index as u32) {
                    // Frozen or incomplete; untimed sessions that move are
                    // stamped by their importer.
                    continue;
                }
                let stale: Vec<ClientId> = shard
                    .lru
                    .iter()
                    .take_while(|(t, _)| *t == 0)
                    .map(|(_, c)| *c)
                    .collect();
                for client in stale {
                    let session = shard.sessions.get_mut(&client).expect("indexed");
                    if session.last_ms == 0 {
                        session.last_ms = ms;
                    }
                    shard.refile(client);
                }
            }
        }
        self.log_time_ms = self.log_time_ms.max(ms);
        // Decisions expire by log time too, so an idle coordinator sheds
        // them without waiting for its next decision.
        self.decisions.expire(self.log_time_ms);
        let mut budget = EXPIRE_BUDGET;
        let shards = self.opts.shards;
        for i in 0..shards {
            if budget == 0 {
                break;
            }
            let index = (self.expire_from + i) % shards;
            if !live(index) {
                continue;
            }
            let rules = self.rules();
            let dropped =
                self.shards[index as usize].expire(&rules, self.opts.session_ttl_ms, budget);
            budget -= dropped;
            if budget == 0 {
                // Resume here next time: this shard may have more.
                self.expire_from = index;
            }
        }
        self.expire_keys(&live);
        EXPIRE_BUDGET - budget
    }

    /// Removes up to [`KEY_EXPIRE_BUDGET`] keys expired at log time from
    /// the shards `live` allows (a frozen shard's keys are positions of its
    /// chunks and must not move). The pass starts at shard `log_time_ms mod
    /// shards`, a function of the state, so every replica removes the same
    /// keys and no shard is always last. Returns how many were removed.
    pub fn expire_keys(&mut self, live: impl Fn(u32) -> bool) -> usize {
        let shards = self.opts.shards;
        let start = (self.log_time_ms % u64::from(shards)) as u32;
        let mut budget = KEY_EXPIRE_BUDGET;
        for i in 0..shards {
            if budget == 0 {
                break;
            }
            let index = (start + i) % shards;
            if live(index) {
                budget -= self.shards[index as usize].expire_keys(self.log_time_ms, budget);
            }
        }
        KEY_EXPIRE_BUDGET - budget
    }

    /// Runs `body` at most once for `req` in the session of its first
    /// key's shard (transactions and prepares, whose keys span shards):
    /// a duplicate, stale, reused or session-less request gets the session's
    /// answer instead; `body`'s reply is cached for duplicates.
    fn in_home_session(
        &mut self,
        req: &ClientRequest,
        print: u32,
        body: impl FnOnce(&mut KvStore, &SessionRules) -> ClientReply,
    ) -> ClientReply {
        let home = self.shard_of_key(req.op.key()) as usize;
        let rules = self.rules();
        let skip_dedup = self.opts.planted_skip_dedup;
        if let Err(reply) = self.shards[home].begin_write(req, print, skip_dedup, &rules) {
            return reply;
        }
        let reply = body(self, &rules);
        self.shards[home].record_reply(req, print, &reply);
        reply
    }

    fn rules(&self) -> SessionRules {
        SessionRules {
            log_time_ms: self.log_time_ms,
            sessions_max: self.opts.sessions_per_shard_max,
            forget_floor: self.opts.planted_forget_floor,
            version: self.revision + 1,
        }
    }

    pub fn options(&self) -> KvOptions {
        self.opts
    }

    /// The shard `key` belongs to under this store's shard count.
    pub fn shard_of_key(&self, key: &[u8]) -> u32 {
        shard_of(key, self.opts.shards)
    }

    /// Apply one client request (at most once per `(client_id, seq)`);
    /// returns the reply to send.
    ///
    /// Order of checks, per shard and client: first the request's `ack_seq`
    /// frees cached replies and raises the watermark; then a `seq` at or
    /// below the watermark is refused as stale, a `seq` with a cached reply
    /// gets that reply without re-applying, and anything else is applied.
    ///
    /// A request on a key locked by a prepared cross-group transaction is
    /// answered `Busy` (nothing applied, nothing cached: the client retries
    /// the same seq after a backoff).
    pub fn apply(&mut self, req: &ClientRequest) -> ClientReply {
        let print = match &req.op {
            // Refused before any session is touched (and not encodable).
            synod_wire::Op::Txn(t) if t.invalid().is_some() => 0,
            synod_wire::Op::TxnPrepare(p) if p.part.invalid().is_some() => 0,
            op if op.is_read() => 0,
            _ => synod_wire::request_print(&synod_wire::encode_command(req)),
        };
        self.apply_printed(req, print)
    }

    /// [`KvStore::apply`] of a request whose print
    /// ([`synod_wire::request_print`] of its command) the caller has: the
    /// log's apply path, which holds the command bytes.
    pub fn apply_printed(&mut self, req: &ClientRequest, print: u32) -> ClientReply {
        if self.blocked_by_lock(&req.op) {
            return ClientReply::Busy;
        }
        match &req.op {
            synod_wire::Op::Txn(txn) => return self.apply_txn(req, print, txn),
            synod_wire::Op::TxnPrepare(p) => return self.apply_prepare(req, print, p),
            synod_wire::Op::TxnDecide(f) => return self.apply_decide(f),
            synod_wire::Op::TxnFinish(f) => return self.apply_finish(f),
            _ => {}
        }
        let shard = self.shard_of_key(req.op.key());
        let rules = self.rules();
        let (reply, executed) =
            self.shards[shard as usize].apply(req, print, self.opts.planted_skip_dedup, &rules);
        if executed {
            // A write that ran (even one refused by its own rules) used
            // `rules.version`; a duplicate answered from the cache did not.
            self.revision = rules.version;
        }
        reply
    }

    /// Read without going through the log (only for the planted bug "answer
    /// Get from a follower's state" and, later, leases/read-index). Returns
    /// `Ok(value)` or `NoKey`.
    pub fn read(&self, key: &[u8]) -> ClientReply {
        self.read_op(&synod_wire::Op::Get {
            key: bytes::Bytes::copy_from_slice(key),
        })
    }

    /// Answers a read-only operation (Get, Ttl) from the applied state at
    /// the current log time: a key expired by then reads as absent.
    /// A locked key (or a shard with one, for Scan and Count) answers
    /// `Busy`.
    pub fn read_op(&self, op: &synod_wire::Op) -> ClientReply {
        if self.blocked_by_lock(op) {
            return ClientReply::Busy;
        }
        self.shards[self.shard_of_key(op.key()) as usize].read_op(op, self.log_time_ms)
    }

    /// Does any key of `shard` have an expiry (expired or not)? If none
    /// does, no read of the shard can answer differently at a later log
    /// time. Panics if `shard` is out of range (a caller bug).
    pub fn has_deadlines(&self, shard: u32) -> bool {
        !self.shard(shard).deadlines.is_empty()
    }

    /// Sizes of the whole store.
    pub fn stats(&self) -> KvStats {
        let mut total = KvStats::default();
        for shard in &self.shards {
            total.add(shard.stats());
        }
        total
    }

    /// Sizes of one shard. Panics if `shard` is out of range (a caller bug).
    pub fn shard_stats(&self, shard: u32) -> KvStats {
        self.shard(shard).stats()
    }

    /// Forgets a shard's data and sessions, after it has been handed to
    /// another group; returns how many records (keys and sessions) it held.
    /// Panics if `shard` is out of range (a caller bug).
    pub fn drop_shard(&mut self, shard: u32) -> u64 {
        let held = {
            let s = self.shard(shard);
            assert!(s.locks.is_empty(), "dropping shard {shard} with locks");
            (s.data.len() + s.sessions.len()) as u64
        };
        // The data keeps a snapshot capture in progress (it still needs
        // the keys being dropped); everything else starts over.
        let mut data = std::mem::take(&mut self.shards[shard as usize].data);
        data.clear();
        self.shards[shard as usize] = Shard {
            data,
            ..Shard::default()
        };
        held
    }

    /// Keys and sessions over every shard: a size in records, O(shards).
    pub fn records(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| (s.data.len() + s.sessions.len()) as u64)
            .sum()
    }

    /// Checks every internal invariant; `assert!`s on a broken one.
    pub fn assert_invariants(&self) {
        assert_eq!(self.shards.len(), self.opts.shards as usize);
        for (index, shard) in self.shards.iter().enumerate() {
            shard.assert_invariants();
            for key in shard.data.keys() {
                assert_eq!(shard_of(key, self.opts.shards) as usize, index);
            }
        }
        self.assert_lock_invariants();
    }

    fn shard(&self, shard: u32) -> &Shard {
        assert!(
            shard < self.opts.shards,
            "shard {shard} out of range (store has {})",
            self.opts.shards
        );
        &self.shards[shard as usize]
    }
}

impl Shard {
    fn stats(&self) -> KvStats {
        KvStats {
            keys: self.data.len() as u64,
            key_bytes: self.data.keys().map(|k| k.len() as u64).sum(),
            value_bytes: self.data.values().map(|e| e.value.len() as u64).sum(),
            sessions: self.sessions.len() as u64,
            cached_replies: self.sessions.values().map(|s| s.replies.len() as u64).sum(),
        }
    }
}

/// FNV-1a 64 of `key`, mod `shards`: the shard a key lives in. Clients route
/// with the same function, so it is part of the protocol and must never
/// change.
// mirrors synod_wire::shard_of
fn shard_of(key: &[u8], shards: u32) -> u32 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    (hash % u64::from(shards)) as u32
}
