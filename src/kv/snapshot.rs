//! Byte layout of KV snapshots and shard exports.
//!
//! All integers are little-endian. Lengths and counts are `u32`.
//!
//! ```text
//! snapshot     = SNAPSHOT_FORMAT:u8  shards:u32  log_time_ms:u64  expire_from:u32
//!                revision:u64  shard_body * shards
//! shard export = SHARD_FORMAT:u8     shards:u32  shard:u32  shard_body
//! shard chunk  = (see `chunk.rs`: the same shape, a range of the entries
//!                and then of the sessions)
//! shard_body   = entries:u32   (key_len:u32 key  value_len:u32 value
//!                               version:u64 expires_ms:u64) * entries
//!                floor:u64
//!                sessions:u32  (client:u64 acked:u64 last_ms:u64
//!                               replies:u32 (seq:u64 cached) * replies) * sessions
//! cached       = 8 print:u32 reply    the reply and its request's print
//!              | reply                (from before prints: unchecked)
//! reply        = 0 len:u32 bytes      Ok
//!              | 1                    NoKey
//!              | 2                    WrongGroup
//!              | 3 0 | 3 1 leader:u32 NotLeader (no leader | leader)
//!              | 4                    Busy
//!              | 5 len:u32 utf8       Error
//!              | 6                    SessionExpired
//!              | 7                    WrongCore (never cached: the runtime's)
//! ```
//!
//! `expires_ms` is the key's absolute expiry in log time, 0 for none.
//! Older formats are still read: snapshot format 3, shard export 0x85 and
//! chunk 0x86 have no `expires_ms` (no key expires). Snapshot format 2, shard export 0x83 and
//! chunk 0x84 have no `revision` and no per-key `version` (every key reads
//! as version 1 and the revision as at least 1, so a later write still
//! gives a key a version it never had). Snapshot format 1 and shard export 0x81
//! (and chunk 0x82) have no `log_time_ms`, `expire_from`, `floor` or
//! `last_ms` (all read as 0: a session restored so counts as active at the
//! first clock stamp, see [`KvStore::advance_clock`]).
//!
//! Entries are sorted by key, sessions by client id and replies by seq, so
//! equal states give equal bytes whatever the insertion or `HashMap` order.
//! Decoding accepts exactly that canonical form (strictly increasing keys,
//! clients and seqs; replies above `acked`; every key in its shard), so a
//! successful restore re-encodes to the very same bytes. There is no checksum:
//! that is the storage layer's job. Decoding never panics and validates every
//! length and count against the remaining input before allocating.

use std::collections::BTreeMap;
use std::fmt;

use byteorder::{ByteOrder, LittleEndian};
use bytes::Bytes;
use synod_wire::{ByteReader, ClientId, ClientReply, ReadError, TxnId, TxnOutcome};

use super::twopc::{Decisions, Prepared, Staged};

use super::compact::{Key, Value};
use super::shard::{Cached, Data, Entry, Session, Sessions, Shard};
use super::{shard_of, KvOptions, KvStore, SHARDS_MAX, VALUE_BYTES_MAX};

/// Format/version byte of a whole-store snapshot (4: per-key expiry).
/// Format 5: format 4 and then the prepared cross-group transactions.
/// Format 6: each prepared transaction also names its coordinator group,
/// and the decisions the group logged as coordinator follow (presumed
/// abort). Format 5 still restores: coordinators unknown (0), no decisions.
const SNAPSHOT_FORMAT: u8 = 6;
const SNAPSHOT_FORMAT_V5: u8 = 5;
const SNAPSHOT_FORMAT_V4: u8 = 4;
/// Per-key versions and the store's revision, no expiry; still restored.
const SNAPSHOT_FORMAT_V3: u8 = 3;
/// Session times, floors and log time, no versions; still restored.
const SNAPSHOT_FORMAT_V2: u8 = 2;
/// The snapshot format before session expiry; still restored.
const SNAPSHOT_FORMAT_V1: u8 = 1;
/// Format/version byte of a single-shard export; distinct from
/// [`SNAPSHOT_FORMAT`] so one can never be mistaken for the other.
const SHARD_FORMAT: u8 = 0x87;
/// The shard export before key expiry; still imported.
const SHARD_FORMAT_V3: u8 = 0x85;
/// The shard export before per-key versions; still imported.
const SHARD_FORMAT_V2: u8 = 0x83;
/// The shard export before session expiry; still imported (a log may hold
/// an `Install` of one).
const SHARD_FORMAT_V1: u8 = 0x81;

/// Which generation of the layout a body is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// Before session expiry: no floor, no session times.
    V1,
    /// With each shard's floor and each session's `last_ms`.
    V2,
    /// With per-key versions (and, in a snapshot, the store's revision).
    V3,
    /// With each key's expiry.
    V4,
}

impl Layout {
    /// The version a key read from a body of this layout gets, when the
    /// layout has none.
    pub(super) const UNVERSIONED: u64 = 1;
}

/// Smallest encodings, used to bound counts by the remaining input.
const MIN_ENTRY_BYTES: usize = 4 + 4;
const MIN_VERSIONED_ENTRY_BYTES: usize = 4 + 4 + 8;
const MIN_EXPIRING_ENTRY_BYTES: usize = 4 + 4 + 8 + 8;
const MIN_SESSION_BYTES: usize = 8 + 8 + 4;
const MIN_CACHED_REPLY_BYTES: usize = 8 + 1;

const TAG_OK: u8 = 0;
const TAG_NO_KEY: u8 = 1;
const TAG_WRONG_GROUP: u8 = 2;
const TAG_NOT_LEADER: u8 = 3;
const TAG_BUSY: u8 = 4;
const TAG_ERROR: u8 = 5;
const TAG_SESSION_EXPIRED: u8 = 6;
const TAG_WRONG_CORE: u8 = 7;
/// Not a reply: the print of the cached reply's request comes next, then
/// the reply itself.
const TAG_PRINTED: u8 = 8;

/// Why snapshot or shard-export bytes were refused. The store is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The first byte is not a format this code understands.
    UnsupportedFormat(u8),
    /// The input ends before a field or a counted item that it announces.
    Truncated,
    /// Bytes are left over after the last field.
    TrailingBytes(usize),
    /// The snapshot was taken with a different shard count.
    ShardCountMismatch { expected: u32, found: u32 },
    /// A shard export is for a different shard than the one importing it.
    ShardMismatch { expected: u32, found: u32 },
    /// The requested shard (or the configured count) is out of range.
    ShardOutOfRange(u32),
    /// A key does not hash to the shard it is stored in.
    KeyInWrongShard,
    /// A value is larger than [`VALUE_BYTES_MAX`].
    ValueTooLarge,
    /// Keys, clients or seqs are not strictly increasing, or a cached reply
    /// is at or below its session's watermark.
    NotCanonical(&'static str),
    /// A cached reply has an unknown tag.
    UnknownReplyTag(u8),
    /// An `Error` reply's reason is not UTF-8.
    InvalidUtf8,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::UnsupportedFormat(b) => write!(f, "unsupported snapshot format {b}"),
            SnapshotError::Truncated => write!(f, "snapshot truncated"),
            SnapshotError::TrailingBytes(n) => write!(f, "{n} trailing bytes after snapshot"),
            SnapshotError::ShardCountMismatch { expected, found } => {
                write!(f, "snapshot has {found} shards, expected {expected}")
            }
            SnapshotError::ShardMismatch { expected, found } => {
                write!(f, "export is of shard {found}, expected {expected}")
            }
            SnapshotError::ShardOutOfRange(s) => write!(f, "shard {s} out of range"),
            SnapshotError::KeyInWrongShard => write!(f, "key stored in the wrong shard"),
            SnapshotError::ValueTooLarge => write!(f, "value larger than {VALUE_BYTES_MAX} bytes"),
            SnapshotError::NotCanonical(what) => write!(f, "snapshot not canonical: {what}"),
            SnapshotError::UnknownReplyTag(t) => write!(f, "unknown reply tag {t}"),
            SnapshotError::InvalidUtf8 => write!(f, "error reason is not UTF-8"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// The reader's errors in the snapshot's terms (what the store reports).
impl From<ReadError> for SnapshotError {
    fn from(e: ReadError) -> SnapshotError {
        match e {
            ReadError::Truncated { .. } | ReadError::CountTooLarge { .. } => {
                SnapshotError::Truncated
            }
            ReadError::TrailingBytes(n) => SnapshotError::TrailingBytes(n),
            ReadError::BadUtf8 => SnapshotError::InvalidUtf8,
        }
    }
}

impl KvStore {
    /// The whole state (data and dedup tables) as deterministic bytes: equal
    /// states give equal bytes regardless of insertion order or `HashMap`
    /// iteration order.
    pub fn snapshot(&self) -> Bytes {
        let none = BTreeMap::new();
        // The planted bug "forget prepared": the section is written empty.
        let prepared = if self.opts.planted_txn_forget_prepared {
            &none
        } else {
            &self.prepared
        };
        let len = 1
            + 4
            + 8
            + 4
            + 8
            + self.shards.iter().map(shard_body_len).sum::<usize>()
            + prepared_len(prepared)
            + decisions_len(&self.decisions);
        let mut out = Vec::with_capacity(len);
        out.push(SNAPSHOT_FORMAT);
        put_u32(&mut out, self.opts.shards);
        put_u64(&mut out, self.log_time_ms);
        put_u32(&mut out, self.expire_from);
        put_u64(&mut out, self.revision);
        for shard in &self.shards {
            encode_shard_body(&mut out, shard);
        }
        encode_prepared(&mut out, prepared);
        encode_decisions(&mut out, &self.decisions);
        // Checked from two sides: the size computation and the encoder agree.
        assert_eq!(out.len(), len);
        Bytes::from(out)
    }

    /// Starts a snapshot of the state as it is now, to be serialized a
    /// slice at a time by [`KvStore::snapshot_step`] while the store keeps
    /// applying writes: the bytes it ends with are exactly
    /// `prefix` + what [`KvStore::snapshot`] would return now. What is small
    /// (the header, every shard's sessions and floor, the prepared
    /// transactions: bounded by the session cap and the lock limits; the
    /// coordinator's decisions, at most `TXN_DECISIONS_MAX` of 25 bytes) is
    /// encoded here; the data, the large part, is captured copy-on-write
    /// (see [`super::shard::Data`]) in O(shards). A capture already in
    /// progress is dropped.
    pub fn begin_snapshot(&mut self, prefix: Vec<u8>) {
        self.abort_snapshot();
        let none = BTreeMap::new();
        let prepared = if self.opts.planted_txn_forget_prepared {
            &none
        } else {
            &self.prepared
        };
        let mut out = prefix;
        out.push(SNAPSHOT_FORMAT);
        put_u32(&mut out, self.opts.shards);
        put_u64(&mut out, self.log_time_ms);
        put_u32(&mut out, self.expire_from);
        put_u64(&mut out, self.revision);
        let mut trailer =
            Vec::with_capacity(prepared_len(prepared) + decisions_len(&self.decisions));
        encode_prepared(&mut trailer, prepared);
        encode_decisions(&mut trailer, &self.decisions);
        let mut job = SnapshotJob {
            out,
            shard: 0,
            started: false,
            written: 0,
            counts: Vec::with_capacity(self.shards.len()),
            tails: Vec::with_capacity(self.shards.len()),
            trailer,
        };
        for shard in &mut self.shards {
            job.counts.push(shard.data.len());
            let mut tail = Vec::with_capacity(8 + sessions_len(shard));
            put_u64(&mut tail, shard.floor);
            encode_sessions(&mut tail, shard);
            job.tails.push(tail);
            shard.data.begin_capture();
        }
        self.job.0 = Some(Box::new(job));
    }

    /// Serializes about `budget` more bytes of the snapshot begun by
    /// [`KvStore::begin_snapshot`]; returns the whole snapshot once it is
    /// complete, `None` before (or if none was begun).
    pub fn snapshot_step(&mut self, budget: usize) -> Option<Bytes> {
        let mut job = self.job.0.take()?;
        let from = job.out.len();
        while job.shard < self.shards.len() {
            let used = job.out.len() - from;
            if used >= budget {
                self.job.0 = Some(job);
                return None;
            }
            let index = job.shard;
            if !job.started {
                put_len(&mut job.out, job.counts[index]);
                job.started = true;
            }
            let data = &mut self.shards[index].data;
            let (n, complete) = data.capture_next(&mut job.out, budget - used, encode_entry);
            job.written += n;
            if !complete {
                self.job.0 = Some(job);
                return None;
            }
            // Checked from two sides: the count taken at the capture and
            // the entries the copy-on-write walk produced agree.
            assert_eq!(job.written, job.counts[index], "shard {index} capture");
            let tail = std::mem::take(&mut job.tails[index]);
            job.out.extend_from_slice(&tail);
            job.shard += 1;
            job.started = false;
            job.written = 0;
        }
        job.out.extend_from_slice(&job.trailer);
        Some(Bytes::from(job.out))
    }

    /// Drops a snapshot in progress (writes stop saving entries for it).
    pub fn abort_snapshot(&mut self) {
        if self.job.0.take().is_some() {
            for shard in &mut self.shards {
                shard.data.end_capture();
            }
        }
    }

    /// Is a snapshot being serialized?
    pub fn snapshot_in_progress(&self) -> bool {
        self.job.0.is_some()
    }

    /// Rebuilds a store from [`KvStore::snapshot`] bytes. Never panics on
    /// corrupt input. `opts.shards` must match the snapshot's shard count
    /// (keys are placed by hash, so it cannot change on restore).
    pub fn restore(bytes: &[u8], opts: KvOptions) -> Result<KvStore, SnapshotError> {
        if opts.shards == 0 || opts.shards > SHARDS_MAX {
            return Err(SnapshotError::ShardOutOfRange(opts.shards));
        }
        let mut input = ByteReader::new(bytes);
        let format = input.u8()?;
        let layout = match format {
            SNAPSHOT_FORMAT | SNAPSHOT_FORMAT_V5 | SNAPSHOT_FORMAT_V4 => Layout::V4,
            SNAPSHOT_FORMAT_V3 => Layout::V3,
            SNAPSHOT_FORMAT_V2 => Layout::V2,
            SNAPSHOT_FORMAT_V1 => Layout::V1,
            _ => return Err(SnapshotError::UnsupportedFormat(format)),
        };
        let found = input.u32()?;
        if found != opts.shards {
            return Err(SnapshotError::ShardCountMismatch {
                expected: opts.shards,
                found,
            });
        }
        let (log_time_ms, expire_from) = match layout {
            Layout::V2 | Layout::V3 | Layout::V4 => (input.u64()?, input.u32()?),
            Layout::V1 => (0, 0),
        };
        let mut revision = match layout {
            Layout::V3 | Layout::V4 => input.u64()?,
            Layout::V1 | Layout::V2 => Layout::UNVERSIONED,
        };
        if expire_from >= opts.shards {
            return Err(SnapshotError::ShardOutOfRange(expire_from));
        }
        let mut shards = Vec::with_capacity(opts.shards as usize);
        for index in 0..opts.shards {
            shards.push(decode_shard_body(&mut input, index, opts.shards, layout)?);
        }
        let prepared = match format {
            SNAPSHOT_FORMAT => decode_prepared(&mut input, opts.shards, true)?,
            SNAPSHOT_FORMAT_V5 => decode_prepared(&mut input, opts.shards, false)?,
            _ => BTreeMap::new(),
        };
        let decisions = if format == SNAPSHOT_FORMAT {
            decode_decisions(&mut input)?
        } else {
            Decisions::default()
        };
        input.finish()?;
        let highest = shards.iter().map(Shard::highest_version).max().unwrap_or(0);
        if matches!(layout, Layout::V3 | Layout::V4) && highest > revision {
            return Err(SnapshotError::NotCanonical(
                "a key's version above the revision",
            ));
        }
        let staged = prepared
            .values()
            .flat_map(|p| p.writes.iter().flatten())
            .filter_map(|(_, e)| e.as_ref().map(|e| e.version))
            .max()
            .unwrap_or(0);
        if staged > revision {
            return Err(SnapshotError::NotCanonical(
                "a prepared write's version above the revision",
            ));
        }
        revision = revision.max(highest);
        let mut store = KvStore {
            opts,
            shards,
            log_time_ms,
            expire_from,
            revision,
            prepared,
            decisions,
            job: Job::default(),
        };
        let locks: usize = store.prepared.values().map(|p| p.keys.len()).sum();
        store.rebuild_locks();
        if store.shards.iter().map(|s| s.locks.len()).sum::<usize>() != locks {
            return Err(SnapshotError::NotCanonical(
                "a key locked by two prepared transactions",
            ));
        }
        store.assert_invariants();
        Ok(store)
    }

    /// One shard's data and sessions as deterministic bytes, to hand the
    /// shard to another group. Panics if `shard` is out of range.
    pub fn export_shard(&self, shard: u32) -> Bytes {
        let body = self.shard(shard);
        let len = 1 + 4 + 4 + shard_body_len(body);
        let mut out = Vec::with_capacity(len);
        out.push(SHARD_FORMAT);
        put_u32(&mut out, self.opts.shards);
        put_u32(&mut out, shard);
        encode_shard_body(&mut out, body);
        assert_eq!(out.len(), len);
        Bytes::from(out)
    }

    /// Takes over a shard exported by [`KvStore::export_shard`]: its data
    /// replaces ours (the exporter owned the shard, so any local data is
    /// stale) and its sessions are merged with ours (per client: the max
    /// watermark, the union of cached replies above it). The input is fully
    /// validated first; on error the store is unchanged.
    pub fn import_shard(&mut self, shard: u32, bytes: &[u8]) -> Result<(), SnapshotError> {
        if shard >= self.opts.shards {
            return Err(SnapshotError::ShardOutOfRange(shard));
        }
        let mut input = ByteReader::new(bytes);
        let layout = match bytes.first() {
            Some(&SHARD_FORMAT_V1) => Layout::V1,
            Some(&SHARD_FORMAT_V2) => Layout::V2,
            Some(&SHARD_FORMAT_V3) => Layout::V3,
            _ => Layout::V4,
        };
        let format = match layout {
            Layout::V1 => SHARD_FORMAT_V1,
            Layout::V2 => SHARD_FORMAT_V2,
            Layout::V3 => SHARD_FORMAT_V3,
            Layout::V4 => SHARD_FORMAT,
        };
        read_shard_header(&mut input, format, self.opts.shards, shard)?;
        let mut incoming = decode_shard_body(&mut input, shard, self.opts.shards, layout)?;
        input.finish()?;
        stamp_untimed(&mut incoming.sessions, self.log_time_ms);
        self.revision = self.revision.max(incoming.highest_version());
        let rules = self.rules();
        let target = &mut self.shards[shard as usize];
        target.merge_from(incoming, &rules);
        Ok(())
    }
}

pub(super) fn put_u32(out: &mut Vec<u8>, value: u32) {
    let mut buf = [0; 4];
    LittleEndian::write_u32(&mut buf, value);
    out.extend_from_slice(&buf);
}

/// Sessions that arrived without activity times (an older format) count as
/// active at the importer's log time.
pub(super) fn stamp_untimed(sessions: &mut Sessions, now: u64) {
    for session in sessions.values_mut() {
        if session.last_ms == 0 {
            session.last_ms = now;
        }
    }
}

pub(super) fn put_u64(out: &mut Vec<u8>, value: u64) {
    let mut buf = [0; 8];
    LittleEndian::write_u64(&mut buf, value);
    out.extend_from_slice(&buf);
}

/// A length or count as `u32`. Values are capped by [`VALUE_BYTES_MAX`] and
/// keys by the frame size, so overflow is a broken invariant.
pub(super) fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("length exceeds u32 in snapshot");
    put_u32(out, len);
}

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn shard_body_len(shard: &Shard) -> usize {
    let data: usize = shard.data.iter().map(|(k, e)| entry_len(k, &e.value)).sum();
    4 + data + 8 + sessions_len(shard)
}

/// A snapshot being serialized a slice at a time; see
/// [`KvStore::begin_snapshot`].
#[derive(Debug)]
pub(super) struct SnapshotJob {
    /// The bytes so far.
    out: Vec<u8>,
    /// The shard being serialized, whether its entry count is written and
    /// how many of its entries are.
    shard: usize,
    started: bool,
    written: usize,
    /// Per shard, at the capture: its entry count, and its floor and
    /// sessions encoded.
    counts: Vec<usize>,
    tails: Vec<Vec<u8>>,
    /// The prepared transactions at the capture, encoded.
    trailer: Vec<u8>,
}

/// The store's snapshot in progress, if any. Not part of the state: a
/// clone has none, and two stores compare equal whatever theirs are.
#[derive(Debug, Default)]
pub(super) struct Job(Option<Box<SnapshotJob>>);

impl Clone for Job {
    fn clone(&self) -> Job {
        Job(None)
    }
}

impl PartialEq for Job {
    fn eq(&self, _: &Job) -> bool {
        true
    }
}

impl Eq for Job {}

/// Encoded size of one key/value entry (with its version).
pub(super) fn entry_len(key: &[u8], value: &[u8]) -> usize {
    4 + key.len() + 4 + value.len() + 8 + 8
}

/// One entry: key, value, version.
pub(super) fn encode_entry(out: &mut Vec<u8>, key: &[u8], entry: &Entry) {
    put_bytes(out, key);
    put_bytes(out, &entry.value);
    put_u64(out, entry.version);
    put_u64(out, entry.expires_ms);
}

/// Encoded size of a shard's sessions section, count included.
pub(super) fn sessions_len(shard: &Shard) -> usize {
    4 + shard.sessions.values().map(session_len).sum::<usize>()
}

/// Encoded size of one session (client id included).
pub(super) fn session_len(s: &Session) -> usize {
    8 + 8 + 8 + 4 + s.replies.values().map(|c| 8 + cached_len(c)).sum::<usize>()
}

fn cached_len(cached: &Cached) -> usize {
    cached.print.map_or(0, |_| 1 + 4) + reply_len(&cached.reply)
}

fn reply_len(reply: &ClientReply) -> usize {
    match reply {
        ClientReply::Ok(value) => 1 + 4 + value.len(),
        ClientReply::NoKey
        | ClientReply::WrongGroup
        | ClientReply::Busy
        | ClientReply::SessionExpired
        | ClientReply::WrongCore => 1,
        ClientReply::NotLeader { leader: None } => 2,
        ClientReply::NotLeader { leader: Some(_) } => 2 + 4,
        ClientReply::Error { reason } => 1 + 4 + reason.len(),
    }
}

fn encode_shard_body(out: &mut Vec<u8>, shard: &Shard) {
    // Keys are unique, so an unstable sort is still deterministic.
    let mut entries: Vec<_> = shard.data.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    put_len(out, entries.len());
    for (key, entry) in entries {
        encode_entry(out, key, entry);
    }
    put_u64(out, shard.floor);
    encode_sessions(out, shard);
}

/// A shard's sessions section: count, then each session sorted by client.
pub(super) fn encode_sessions(out: &mut Vec<u8>, shard: &Shard) {
    let mut sessions: Vec<_> = shard.sessions.iter().collect();
    sessions.sort_unstable_by_key(|(client, _)| **client);
    put_len(out, sessions.len());
    for (client, session) in sessions {
        encode_session(out, *client, session);
    }
}

/// One session: client, watermark, last activity, cached replies.
pub(super) fn encode_session(out: &mut Vec<u8>, client: ClientId, session: &Session) {
    put_u64(out, client);
    put_u64(out, session.acked);
    put_u64(out, session.last_ms);
    put_len(out, session.replies.len());
    for (seq, cached) in &session.replies {
        put_u64(out, *seq);
        if let Some(print) = cached.print {
            out.push(TAG_PRINTED);
            put_u32(out, print);
        }
        encode_reply(out, &cached.reply);
    }
}

fn encode_reply(out: &mut Vec<u8>, reply: &ClientReply) {
    match reply {
        ClientReply::Ok(value) => {
            out.push(TAG_OK);
            put_bytes(out, value);
        }
        ClientReply::NoKey => out.push(TAG_NO_KEY),
        ClientReply::WrongGroup => out.push(TAG_WRONG_GROUP),
        ClientReply::NotLeader { leader } => {
            out.push(TAG_NOT_LEADER);
            match leader {
                None => out.push(0),
                Some(leader) => {
                    out.push(1);
                    put_u32(out, *leader);
                }
            }
        }
        ClientReply::Busy => out.push(TAG_BUSY),
        ClientReply::SessionExpired => out.push(TAG_SESSION_EXPIRED),
        ClientReply::WrongCore => out.push(TAG_WRONG_CORE),
        ClientReply::Error { reason } => {
            out.push(TAG_ERROR);
            put_bytes(out, reason.as_bytes());
        }
    }
}

/// The header of a whole-shard export or a migration chunk: its format
/// byte, the store's shard count and the shard, each as the reader expects.
pub(super) fn read_shard_header(
    input: &mut ByteReader,
    format: u8,
    shards: u32,
    shard: u32,
) -> Result<(), SnapshotError> {
    let found = input.u8()?;
    if found != format {
        return Err(SnapshotError::UnsupportedFormat(found));
    }
    let found = input.u32()?;
    if found != shards {
        return Err(SnapshotError::ShardCountMismatch {
            expected: shards,
            found,
        });
    }
    let found = input.u32()?;
    if found != shard {
        return Err(SnapshotError::ShardMismatch {
            expected: shard,
            found,
        });
    }
    Ok(())
}

fn decode_shard_body(
    input: &mut ByteReader,
    index: u32,
    shards: u32,
    layout: Layout,
) -> Result<Shard, SnapshotError> {
    let data = decode_entries(input, index, shards, layout)?;
    let floor = match layout {
        Layout::V2 | Layout::V3 | Layout::V4 => input.u64()?,
        Layout::V1 => 0,
    };
    let mut sessions = decode_sessions(input, layout)?;
    let lru = super::shard::file_sessions(&mut sessions);
    let deadlines = super::shard::deadlines_of(&data);
    Ok(Shard {
        data,
        sessions,
        lru,
        floor,
        deadlines,
        locks: Default::default(),
    })
}

/// An entries section: strictly increasing keys, each in shard `index`.
pub(super) fn decode_entries(
    input: &mut ByteReader,
    index: u32,
    shards: u32,
    layout: Layout,
) -> Result<Data, SnapshotError> {
    let entries = input.count(match layout {
        Layout::V4 => MIN_EXPIRING_ENTRY_BYTES,
        Layout::V3 => MIN_VERSIONED_ENTRY_BYTES,
        Layout::V1 | Layout::V2 => MIN_ENTRY_BYTES,
    })?;
    // Collected first and built in one go: `BTreeMap`'s bulk build from
    // sorted entries fills every node, where inserting them one by one
    // splits each full node in half (measured: 225 bytes per 64-byte key
    // restored one by one, against 221 after a fill in random order).
    let mut data = Vec::with_capacity(entries);
    let mut previous: Option<&[u8]> = None;
    for _ in 0..entries {
        let key = input.bytes()?;
        let value = input.bytes()?;
        if previous.is_some_and(|p| p >= key) {
            return Err(SnapshotError::NotCanonical("keys not strictly increasing"));
        }
        previous = Some(key);
        if shard_of(key, shards) != index {
            return Err(SnapshotError::KeyInWrongShard);
        }
        if value.len() > VALUE_BYTES_MAX {
            return Err(SnapshotError::ValueTooLarge);
        }
        let version = match layout {
            Layout::V3 | Layout::V4 => input.u64()?,
            Layout::V1 | Layout::V2 => Layout::UNVERSIONED,
        };
        if version == 0 {
            return Err(SnapshotError::NotCanonical("a key with version 0"));
        }
        let expires_ms = match layout {
            Layout::V4 => input.u64()?,
            Layout::V1 | Layout::V2 | Layout::V3 => 0,
        };
        data.push((
            Key::from(key),
            Entry {
                value: Value::from_slice(value),
                version,
                expires_ms,
            },
        ));
    }
    Ok(data.into_iter().collect())
}

/// A sessions section: strictly increasing clients, canonical replies.
pub(super) fn decode_sessions(
    input: &mut ByteReader,
    layout: Layout,
) -> Result<Sessions, SnapshotError> {
    let count = input.count(MIN_SESSION_BYTES)?;
    let mut sessions = Sessions::with_capacity_and_hasher(count, Default::default());
    let mut previous: Option<ClientId> = None;
    for _ in 0..count {
        let client = input.u64()?;
        if previous.is_some_and(|p| p >= client) {
            return Err(SnapshotError::NotCanonical(
                "clients not strictly increasing",
            ));
        }
        previous = Some(client);
        let acked = input.u64()?;
        let last_ms = match layout {
            Layout::V2 | Layout::V3 | Layout::V4 => input.u64()?,
            Layout::V1 => 0,
        };
        let mut session = Session {
            acked,
            replies: Default::default(),
            last_ms,
            lru_ms: last_ms,
        };
        let replies = input.count(MIN_CACHED_REPLY_BYTES)?;
        for _ in 0..replies {
            let seq = input.u64()?;
            // Strictly increasing from `acked` covers both canonical rules.
            let floor = session.replies.last_seq().unwrap_or(acked);
            if seq <= floor {
                return Err(SnapshotError::NotCanonical(
                    "cached replies not strictly increasing above acked",
                ));
            }
            session.replies.insert(seq, decode_cached(input)?);
        }
        sessions.insert(client, session);
    }
    Ok(sessions)
}

/// A cached reply, with the print of its request when one is kept.
fn decode_cached(input: &mut ByteReader) -> Result<Cached, SnapshotError> {
    let print = if input.rest().first() == Some(&TAG_PRINTED) {
        input.u8()?;
        Some(input.u32()?)
    } else {
        None
    };
    Ok(Cached {
        reply: decode_reply(input)?,
        print,
    })
}

fn decode_reply(input: &mut ByteReader) -> Result<ClientReply, SnapshotError> {
    Ok(match input.u8()? {
        TAG_OK => ClientReply::Ok(Bytes::copy_from_slice(input.bytes()?)),
        TAG_NO_KEY => ClientReply::NoKey,
        TAG_WRONG_GROUP => ClientReply::WrongGroup,
        TAG_NOT_LEADER => match input.u8()? {
            0 => ClientReply::NotLeader { leader: None },
            1 => ClientReply::NotLeader {
                leader: Some(input.u32()?),
            },
            _ => return Err(SnapshotError::NotCanonical("NotLeader flag not 0 or 1")),
        },
        TAG_BUSY => ClientReply::Busy,
        TAG_SESSION_EXPIRED => ClientReply::SessionExpired,
        TAG_WRONG_CORE => ClientReply::WrongCore,
        TAG_ERROR => ClientReply::Error {
            reason: input.str()?.to_string(),
        },
        tag => return Err(SnapshotError::UnknownReplyTag(tag)),
    })
}

/// Encoded size of the prepared transactions section, count included.
fn prepared_len(prepared: &BTreeMap<TxnId, Prepared>) -> usize {
    4 + prepared
        .values()
        .map(|p| {
            16 + 8
                + 4
                + 4
                + p.keys.iter().map(|k| 4 + k.len()).sum::<usize>()
                + p.writes
                    .iter()
                    .map(|w| {
                        4 + w
                            .iter()
                            .map(|(k, e)| {
                                4 + k.len()
                                    + 1
                                    + e.as_ref().map_or(0, |e| 4 + e.value.len() + 8 + 8)
                            })
                            .sum::<usize>()
                    })
                    .sum::<usize>()
        })
        .sum::<usize>()
}

/// The prepared transactions: count, then each (sorted by id) as `client
/// u64, seq u64, prepared_ms u64, coordinator u32` (format 6; absent in
/// format 5), `keys vec<bytes>`, then per branch
/// (success, failure) `vec<key bytes, present u8, [value bytes, version
/// u64, expires_ms u64]>`.
fn encode_prepared(out: &mut Vec<u8>, prepared: &BTreeMap<TxnId, Prepared>) {
    put_len(out, prepared.len());
    for (id, p) in prepared {
        put_u64(out, id.client);
        put_u64(out, id.seq);
        put_u64(out, p.prepared_ms);
        put_u32(out, p.coordinator);
        put_len(out, p.keys.len());
        for k in &p.keys {
            put_bytes(out, k);
        }
        for w in &p.writes {
            put_len(out, w.len());
            for (k, e) in w {
                put_bytes(out, k);
                match e {
                    None => out.push(0),
                    Some(e) => {
                        out.push(1);
                        put_bytes(out, &e.value);
                        put_u64(out, e.version);
                        put_u64(out, e.expires_ms);
                    }
                }
            }
        }
    }
}

fn decode_prepared(
    input: &mut ByteReader,
    shards: u32,
    with_coordinator: bool,
) -> Result<BTreeMap<TxnId, Prepared>, SnapshotError> {
    let n = input.count(16 + 8 + 4 + 4 + 4)?;
    let mut out = BTreeMap::new();
    let mut previous: Option<TxnId> = None;
    for _ in 0..n {
        let id = TxnId {
            client: input.u64()?,
            seq: input.u64()?,
        };
        if previous.is_some_and(|p| p >= id) {
            return Err(SnapshotError::NotCanonical(
                "prepared transactions not strictly increasing",
            ));
        }
        previous = Some(id);
        let prepared_ms = input.u64()?;
        let coordinator = if with_coordinator { input.u32()? } else { 0 };
        let count = input.count(4)?;
        let mut keys: Vec<Box<[u8]>> = Vec::with_capacity(count);
        for _ in 0..count {
            let key = input.bytes()?;
            if keys.last().is_some_and(|p| &p[..] >= key) {
                return Err(SnapshotError::NotCanonical(
                    "locked keys not strictly increasing",
                ));
            }
            keys.push(Box::from(key));
        }
        let mut writes: [Staged; 2] = [Vec::new(), Vec::new()];
        for w in &mut writes {
            let count = input.count(4 + 1)?;
            for _ in 0..count {
                let key = input.bytes()?;
                if shard_of(key, shards) >= shards {
                    return Err(SnapshotError::KeyInWrongShard);
                }
                let entry = match input.u8()? {
                    0 => None,
                    1 => {
                        let value = input.bytes()?;
                        if value.len() > VALUE_BYTES_MAX {
                            return Err(SnapshotError::ValueTooLarge);
                        }
                        let version = input.u64()?;
                        if version == 0 {
                            return Err(SnapshotError::NotCanonical("a key with version 0"));
                        }
                        Some(Entry {
                            value: Value::from_slice(value),
                            version,
                            expires_ms: input.u64()?,
                        })
                    }
                    _ => return Err(SnapshotError::NotCanonical("prepared write flag")),
                };
                w.push((Box::from(key), entry));
            }
        }
        out.insert(
            id,
            Prepared {
                keys,
                prepared_ms,
                coordinator,
                writes,
            },
        );
    }
    Ok(out)
}

/// One decision: `client u64, seq u64, decided_ms u64, outcome u8`.
const DECISION_BYTES: usize = 8 + 8 + 8 + 1;

fn decisions_len(d: &Decisions) -> usize {
    4 + d.len() * DECISION_BYTES
}

/// The decisions: count, then each in log order (oldest first).
fn encode_decisions(out: &mut Vec<u8>, d: &Decisions) {
    put_len(out, d.len());
    for (at, id) in &d.order {
        put_u64(out, id.client);
        put_u64(out, id.seq);
        put_u64(out, *at);
        out.push(d.by_id[id] as u8);
    }
}

fn decode_decisions(input: &mut ByteReader) -> Result<Decisions, SnapshotError> {
    let n = input.count(DECISION_BYTES)?;
    let mut d = Decisions::default();
    for _ in 0..n {
        let id = TxnId {
            client: input.u64()?,
            seq: input.u64()?,
        };
        let at = input.u64()?;
        let outcome = TxnOutcome::from_code(input.u8()?)
            .ok_or(SnapshotError::NotCanonical("decision outcome"))?;
        if d.order.back().is_some_and(|&(last, _)| last > at) {
            return Err(SnapshotError::NotCanonical("decisions out of log order"));
        }
        if d.by_id.insert(id, outcome).is_some() {
            return Err(SnapshotError::NotCanonical("a transaction decided twice"));
        }
        d.order.push_back((at, id));
    }
    Ok(d)
}

/// Format 4 bytes of a format 6 snapshot that holds no prepared
/// transaction and no decision (tests that derive older formats start
/// from format 4).
#[cfg(test)]
pub(super) fn as_format_4(snapshot: &[u8]) -> Vec<u8> {
    assert_eq!(snapshot[0], SNAPSHOT_FORMAT);
    assert!(
        snapshot.ends_with(&[0; 8]),
        "prepared transactions or decisions held"
    );
    let mut v4 = vec![SNAPSHOT_FORMAT_V4];
    v4.extend_from_slice(&snapshot[1..snapshot.len() - 8]);
    v4
}

/// Format 5 bytes of a format 6 snapshot that holds no decision: its
/// prepared transactions without their coordinators (what a server from
/// before presumed abort wrote).
#[cfg(test)]
pub(super) fn as_format_5(store: &KvStore) -> Vec<u8> {
    assert_eq!(store.decisions.len(), 0, "decisions held");
    let mut v5 = store.snapshot().to_vec();
    v5.truncate(v5.len() - prepared_len(&store.prepared) - decisions_len(&store.decisions));
    v5[0] = SNAPSHOT_FORMAT_V5;
    put_len(&mut v5, store.prepared.len());
    for (id, p) in &store.prepared {
        let mut one = BTreeMap::new();
        one.insert(*id, p.clone());
        let mut rec = Vec::new();
        encode_prepared(&mut rec, &one);
        // count(4), then client, seq, prepared_ms (24), coordinator (4), rest
        v5.extend_from_slice(&rec[4..4 + 24]);
        v5.extend_from_slice(&rec[4 + 24 + 4..]);
    }
    v5
}
