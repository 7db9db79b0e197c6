//! A frozen shard handed to another group in bounded chunks, so a shard of
//! any size moves in messages and log entries of about a configured budget
//! (a shard export in one piece is limited by the frame size).
//!
//! **The order.** A shard's records are sent in its keys' bytewise order. A
//! shard being handed away is frozen (no request changes it any more) and
//! every replica of the group holds the same contents, so "the record at
//! position `i`" names the same record on every replica: the new owner
//! resumes from a record count (its cursor) at whichever replica it asks.
//! Sorting a large shard is not cheap, so the sender sorts once per frozen
//! shard ([`KvStore::key_order`]) and keeps the result while it serves
//! chunks; the order holds only the keys, packed (key bytes plus one offset
//! each), never a copy of the values.
//!
//! **The bytes.** A chunk is laid out like a shard export (see `snapshot`):
//!
//! ```text
//! chunk = CHUNK_FORMAT:u8  shards:u32  shard:u32  shard_body
//! ```
//!
//! where `shard_body`'s entries are the records `[cursor, cursor + entries)`
//! of the order and its sessions section is empty except in the last chunk,
//! which carries the shard's at-most-once sessions whole.

use bytes::Bytes;

use super::snapshot::{
    decode_entries, decode_sessions, encode_sessions, entry_len, put_bytes, put_u32,
    read_shard_header, sessions_len, Reader,
};
use super::{KvStore, SnapshotError};

/// Format byte of a chunk; distinct from the snapshot (1) and the whole
/// shard export (0x81) so one can never be read as another.
const CHUNK_FORMAT: u8 = 0x82;

/// A frozen shard's keys in sending order (sorted), packed into one buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyOrder {
    shard: u32,
    /// Every key, concatenated in order.
    bytes: Vec<u8>,
    /// `ends[i]` is where key `i` ends in `bytes` (it starts at `ends[i-1]`).
    ends: Vec<usize>,
}

impl KeyOrder {
    /// The shard whose keys these are.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Records in the shard.
    pub fn len(&self) -> u64 {
        self.ends.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Heap bytes this order holds (for logs: it is the sender's cost of a
    /// transfer, proportional to the shard's key bytes).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * std::mem::size_of::<usize>()
    }

    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// One chunk of a frozen shard, from [`KvStore::export_chunk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The chunk's bytes (module docs).
    pub data: Bytes,
    /// Records in it: the next chunk starts at `from + records`.
    pub records: u64,
    /// The last chunk: every record was sent and the sessions are in it.
    pub done: bool,
}

impl KvStore {
    /// The sending order of `shard`'s keys. O(n log n) in the shard's keys;
    /// build it once per frozen shard. Panics if `shard` is out of range.
    pub fn key_order(&self, shard: u32) -> KeyOrder {
        let body = self.shard(shard);
        let mut keys: Vec<&[u8]> = body.data.keys().map(|k| &k[..]).collect();
        // Keys are unique, so an unstable sort is deterministic.
        keys.sort_unstable();
        let mut bytes = Vec::with_capacity(keys.iter().map(|k| k.len()).sum());
        let mut ends = Vec::with_capacity(keys.len());
        for key in keys {
            bytes.extend_from_slice(key);
            ends.push(bytes.len());
        }
        KeyOrder { shard, bytes, ends }
    }

    /// The records of `order.shard()` from position `from` on, as many as
    /// fit in `budget_bytes` of encoded entries (always at least one, so a
    /// record larger than the budget still moves, alone). When the records
    /// run out, the sessions are added if they fit too (or if the chunk has
    /// no record at all), and the chunk is the last one.
    ///
    /// `order` must be this store's current order of that shard (the shard
    /// frozen since), and `from <= order.len()`: both are asserted, since a
    /// caller that breaks them would send another replica's records.
    pub fn export_chunk(&self, order: &KeyOrder, from: u64, budget_bytes: usize) -> Chunk {
        let body = self.shard(order.shard);
        assert_eq!(
            order.len(),
            body.data.len() as u64,
            "shard {} changed after its key order was taken",
            order.shard
        );
        assert!(
            from <= order.len(),
            "chunk cursor {from} past the shard's end"
        );
        let mut out = Vec::with_capacity(budget_bytes.min(1 << 20) + 64);
        out.push(CHUNK_FORMAT);
        put_u32(&mut out, self.opts.shards);
        put_u32(&mut out, order.shard);
        let count_at = out.len();
        put_u32(&mut out, 0); // entry count, filled in below
        let mut at = from as usize;
        let mut bytes = 0usize;
        let mut records = 0u32;
        while at < order.ends.len() {
            let key = order.key(at);
            let value = body
                .data
                .get(key)
                .expect("a frozen shard lost a key of its order");
            let len = entry_len(key, value);
            if records > 0 && bytes + len > budget_bytes {
                break;
            }
            put_bytes(&mut out, key);
            put_bytes(&mut out, value);
            bytes += len;
            records += 1;
            at += 1;
        }
        out[count_at..count_at + 4].copy_from_slice(&records.to_le_bytes());
        let done =
            at == order.ends.len() && (records == 0 || bytes + sessions_len(body) <= budget_bytes);
        if done {
            encode_sessions(&mut out, body);
        } else {
            put_u32(&mut out, 0); // no sessions before the last chunk
        }
        Chunk {
            data: Bytes::from(out),
            records: u64::from(records),
            done,
        }
    }

    /// Adds a chunk from [`KvStore::export_chunk`] to `shard`: its records
    /// are inserted; with `first`, the shard's local data is dropped first
    /// (the exporter was the shard's only owner, so anything here is stale);
    /// with `last`, its sessions are merged with ours (per client: the max
    /// watermark, the union of cached replies above it), as a whole-shard
    /// import does. A chunk that is not `last` must carry no sessions.
    /// Returns the number of records added. The input is fully validated
    /// first; on error the store is unchanged.
    pub fn import_chunk(
        &mut self,
        shard: u32,
        bytes: &[u8],
        first: bool,
        last: bool,
    ) -> Result<u64, SnapshotError> {
        if shard >= self.opts.shards {
            return Err(SnapshotError::ShardOutOfRange(shard));
        }
        let mut input = Reader::new(bytes);
        read_shard_header(&mut input, CHUNK_FORMAT, self.opts.shards, shard)?;
        let data = decode_entries(&mut input, shard, self.opts.shards)?;
        let sessions = decode_sessions(&mut input)?;
        input.finish()?;
        if !last && !sessions.is_empty() {
            return Err(SnapshotError::NotCanonical(
                "sessions in a chunk that is not the last",
            ));
        }
        let records = data.len() as u64;
        let target = &mut self.shards[shard as usize];
        if first {
            target.data.clear();
            target.data.shrink_to_fit();
        }
        target.data.extend(data);
        for (client, session) in sessions {
            // `merge` asserts the merged session's invariants. (Not the
            // whole shard's: that would rescan every earlier chunk's records
            // on each chunk; the decoder checked these.)
            target.sessions.entry(client).or_default().merge(session);
        }
        Ok(records)
    }
}
