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

mod chunk;
mod shard;
mod snapshot;
#[cfg(test)]
mod tests;

use synod_wire::{ClientReply, ClientRequest};

pub use chunk::{Chunk, KeyOrder};
use shard::Shard;
pub use snapshot::SnapshotError;

/// Shards per store unless configured otherwise (`--shards` at master
/// bootstrap).
pub const DEFAULT_SHARDS: u32 = 64;

/// Upper bound on the shard count: one `Shard` is allocated per shard up
/// front, and `restore` trusts the configured count, so it must be sane.
pub const MAX_SHARDS: u32 = 1 << 16;

/// Largest value a Put or Append may produce. It keeps a Get reply within a
/// frame and the snapshot's `u32` lengths valid: the wire's
/// [`synod_wire::MAX_VALUE_BYTES`], derived from the default frame limit.
pub const MAX_VALUE_BYTES: usize = synod_wire::MAX_VALUE_BYTES;

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
}

impl Default for KvOptions {
    fn default() -> KvOptions {
        KvOptions {
            shards: DEFAULT_SHARDS,
            planted_skip_dedup: false,
        }
    }
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
    /// Client sessions (one per client per shard it wrote to).
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
}

impl KvStore {
    /// An empty store. Panics if `opts.shards` is 0 or above [`MAX_SHARDS`]:
    /// options come from configuration, not from the network.
    pub fn new(opts: KvOptions) -> KvStore {
        assert!(
            opts.shards > 0 && opts.shards <= MAX_SHARDS,
            "shard count {} outside 1..={MAX_SHARDS}",
            opts.shards
        );
        KvStore {
            opts,
            shards: vec![Shard::default(); opts.shards as usize],
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
    pub fn apply(&mut self, req: &ClientRequest) -> ClientReply {
        let shard = self.shard_of_key(req.op.key());
        self.shards[shard as usize].apply(req, self.opts.planted_skip_dedup)
    }

    /// Read without going through the log (only for the planted bug "answer
    /// Get from a follower's state" and, later, leases/read-index). Returns
    /// `Ok(value)` or `NoKey`.
    pub fn read(&self, key: &[u8]) -> ClientReply {
        self.shards[self.shard_of_key(key) as usize].read(key)
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
    /// another group. Panics if `shard` is out of range (a caller bug).
    pub fn drop_shard(&mut self, shard: u32) {
        self.shard(shard);
        self.shards[shard as usize] = Shard::default();
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
            value_bytes: self.data.values().map(|v| v.len() as u64).sum(),
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
