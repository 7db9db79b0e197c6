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
//! (Entries carry their versions and expiry times; chunk format 0x86, from
//! before expiry, is still imported with no key expiring, and 0x84, from
//! before versions, with its keys at version 1.)
//!
//! ```text
//! ```
//!
//! **Sessions are items too.** The order lists the shard's keys and then
//! its sessions' client ids (sorted), and a cursor counts both: positions
//! `[0, keys)` are key/value records, `[keys, keys + sessions)` are
//! sessions. A chunk's `shard_body` holds the records and then the sessions
//! of its range, so no chunk exceeds the budget (beyond one item) however
//! many sessions the shard has; every chunk carries the shard's expiry
//! floor (merged as a maximum, so repeating it is harmless). Format 0x82,
//! from before session expiry, had every session in the last chunk and no
//! floor or session times; it is still imported, since logs may hold it.

use bytes::Bytes;
use synod_wire::{ByteReader, ClientId};

use super::snapshot::{
    decode_entries, decode_sessions, encode_entry, encode_session, entry_len, put_u32, put_u64,
    read_shard_header, session_len, stamp_untimed, Layout,
};
use super::{KvStore, SnapshotError};

/// Format byte of a chunk; distinct from the snapshot (1-4) and the whole
/// shard export (0x81, 0x83, 0x85, 0x87) so one can never be read as another.
const CHUNK_FORMAT: u8 = 0x88;
/// The chunk format before key expiry; still imported.
const CHUNK_FORMAT_V3: u8 = 0x86;
/// The chunk format before per-key versions; still imported.
const CHUNK_FORMAT_V2: u8 = 0x84;
/// The chunk format before session expiry (sessions whole in the last
/// chunk); still imported.
const CHUNK_FORMAT_V1: u8 = 0x82;

/// A frozen shard's keys in sending order (sorted), packed into one buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyOrder {
    shard: u32,
    /// Every key, concatenated in order.
    bytes: Vec<u8>,
    /// `ends[i]` is where key `i` ends in `bytes` (it starts at `ends[i-1]`).
    ends: Vec<usize>,
    /// The shard's sessions' clients, sorted: the items after the keys.
    clients: Vec<ClientId>,
}

impl KeyOrder {
    /// The shard whose keys these are.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Items to send: the shard's records, then its sessions.
    pub fn len(&self) -> u64 {
        (self.ends.len() + self.clients.len()) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions among the items.
    pub fn sessions(&self) -> u64 {
        self.clients.len() as u64
    }

    /// Heap bytes this order holds (for logs: it is the sender's cost of a
    /// transfer, proportional to the shard's key bytes).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
            + self.ends.capacity() * std::mem::size_of::<usize>()
            + self.clients.capacity() * std::mem::size_of::<ClientId>()
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
    /// Items (records and sessions) in it: the next chunk starts at
    /// `from + records`.
    pub records: u64,
    /// The last chunk: every record and session was sent.
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
        let mut clients: Vec<ClientId> = body.sessions.keys().copied().collect();
        clients.sort_unstable();
        KeyOrder {
            shard,
            bytes,
            ends,
            clients,
        }
    }

    /// The items of `order.shard()` from position `from` on (records, then
    /// sessions), as many as fit in `budget_bytes` of encoded items (always
    /// at least one, so an item larger than the budget still moves, alone).
    /// The chunk that reaches the end is the last one.
    ///
    /// `order` must be this store's current order of that shard (the shard
    /// frozen since), and `from <= order.len()`: both are asserted, since a
    /// caller that breaks them would send another replica's records.
    pub fn export_chunk(&self, order: &KeyOrder, from: u64, budget_bytes: usize) -> Chunk {
        let body = self.shard(order.shard);
        assert!(
            order.ends.len() == body.data.len() && order.clients.len() == body.sessions.len(),
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
        let mut items = 0u32;
        let mut entries = 0u32;
        while at < order.ends.len() {
            let key = order.key(at);
            let entry = body
                .data
                .get(key)
                .expect("a frozen shard lost a key of its order");
            let len = entry_len(key, &entry.value);
            if items > 0 && bytes + len > budget_bytes {
                break;
            }
            encode_entry(&mut out, key, entry);
            bytes += len;
            items += 1;
            entries += 1;
            at += 1;
        }
        out[count_at..count_at + 4].copy_from_slice(&entries.to_le_bytes());
        put_u64(&mut out, body.floor);
        let count_at = out.len();
        put_u32(&mut out, 0); // session count, filled in below
        let mut sessions = 0u32;
        let keys = order.ends.len();
        while at >= keys && at < order.len() as usize {
            let client = order.clients[at - keys];
            let session = body
                .sessions
                .get(&client)
                .expect("a frozen shard lost a session of its order");
            let len = session_len(session);
            if items > 0 && bytes + len > budget_bytes {
                break;
            }
            encode_session(&mut out, client, session);
            bytes += len;
            items += 1;
            sessions += 1;
            at += 1;
        }
        out[count_at..count_at + 4].copy_from_slice(&sessions.to_le_bytes());
        Chunk {
            data: Bytes::from(out),
            records: u64::from(items),
            done: at == order.len() as usize,
        }
    }

    /// Adds a chunk from [`KvStore::export_chunk`] to `shard`: its records
    /// are inserted; with `first`, the shard's local data is dropped first
    /// (the exporter was the shard's only owner, so anything here is stale);
    /// its sessions are merged with ours (per client: the max watermark, the
    /// union of cached replies above it, the latest activity) and its floor
    /// raises ours, as a whole-shard import does; with `last`, the session
    /// cap is enforced. An old-format chunk (0x82) that is not `last` must
    /// carry no sessions. Returns the number of items (records and
    /// sessions) added. The input is fully validated first; on error the
    /// store is unchanged.
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
        let layout = match bytes.first() {
            Some(&CHUNK_FORMAT_V1) => Layout::V1,
            Some(&CHUNK_FORMAT_V2) => Layout::V2,
            Some(&CHUNK_FORMAT_V3) => Layout::V3,
            _ => Layout::V4,
        };
        let format = match layout {
            Layout::V1 => CHUNK_FORMAT_V1,
            Layout::V2 => CHUNK_FORMAT_V2,
            Layout::V3 => CHUNK_FORMAT_V3,
            Layout::V4 => CHUNK_FORMAT,
        };
        let mut input = ByteReader::new(bytes);
        read_shard_header(&mut input, format, self.opts.shards, shard)?;
        let data = decode_entries(&mut input, shard, self.opts.shards, layout)?;
        let floor = match layout {
            Layout::V2 | Layout::V3 | Layout::V4 => input.u64()?,
            Layout::V1 => 0,
        };
        let mut sessions = decode_sessions(&mut input, layout)?;
        input.finish()?;
        if layout == Layout::V1 && !last && !sessions.is_empty() {
            return Err(SnapshotError::NotCanonical(
                "sessions in a chunk that is not the last",
            ));
        }
        stamp_untimed(&mut sessions, self.log_time_ms);
        let items = (data.len() + sessions.len()) as u64;
        // Versions keep their meaning across groups: a later write here
        // gives a key a version above any it had at its old owner.
        let highest = data.values().map(|e| e.version).max().unwrap_or(0);
        self.revision = self.revision.max(highest);
        let rules = self.rules();
        let target = &mut self.shards[shard as usize];
        if first {
            target.data.clear();
            target.deadlines.clear();
        }
        for (key, entry) in data.into_map() {
            let before = target.expiry_of(&key);
            let after = entry.expires_ms;
            target.data.insert(key.clone(), entry);
            target.reindex(&key, before, after);
        }
        target.floor = target.floor.max(floor);
        for (client, session) in sessions {
            // `merge_session` checks the session's invariants. (Not the
            // whole shard's: that would rescan every earlier chunk's records
            // on each chunk; the decoder checked these.)
            target.merge_session(client, session);
        }
        if last {
            target.enforce_cap(&rules, None);
        }
        Ok(items)
    }
}
