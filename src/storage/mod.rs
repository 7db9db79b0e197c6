//! Durable storage of one core: a write-ahead log shared by every replica
//! group on the core, plus one snapshot file per group.
//!
//! # What it owns
//!
//! A directory (e.g. `<data-dir>/core-<n>/`) and everything in it:
//! - `wal-<seq:016>.seg`: WAL segments, numbered in write order. Each holds a
//!   sequence of [`Record::Promised`] and [`Record::Accepted`] records of many
//!   groups, each tagged with its group. A dead segment's file may be renamed
//!   to a later number and written over from the start (recycled, see
//!   [`Wal`]), so the bytes after a segment's last record may be records of
//!   an earlier life; their checksums are seeded with that life's number.
//! - `wal-<seq:016>.log`: a segment of the first format (plain checksums,
//!   never recycled); read on open, never written again.
//! - `snap-g<gid>.bin`: the latest durable snapshot of group `gid`
//!   ([`Record::Snapshot`] never goes into the WAL body: it can be huge, and
//!   only the latest one matters). Never written in place after its rename,
//!   so [`Wal::map_snapshot`] can hand out a read-only mapping of it (the
//!   runtime serves laggards from that instead of a heap copy).
//! - `snap-g<gid>.bin.tmp`: a snapshot being written; a leftover one is a
//!   crash in the middle of writing and is deleted on open.
//!
//! The caller ([`Wal`]'s owner, the runtime of one core) makes sure only one
//! `Wal` uses a directory at a time.
//!
//! # How it is used
//!
//! Each loop turn the runtime hands the [`Record`]s of every group's `Ready`
//! to [`Wal::append`] (no system call), then calls [`Wal::sync`] once: one
//! `write(2)` of everything, one `fdatasync(2)` (group commit), and only then
//! a [`Synced`] proof that releases the messages that promise those records.
//! On restart, [`Wal::open`] gives back one [`Durable`] per group, exactly
//! what folding every synced record with [`Durable::apply`] in order gives.
//!
//! # What it must never do
//!
//! - Hand out [`Synced`] before everything appended is durable (under
//!   [`FsyncPolicy::Always`]): that is the whole persist-before-send rule.
//!   After any I/O error the `Wal` is poisoned and never returns `Synced`
//!   again (see [`Wal::sync`] for why it does not retry).
//! - Call back into Paxos or any protocol core: storage is a sink of
//!   records and a source of [`Durable`] images, nothing more.
//! - Panic on any file content: damage is a [`StorageError::Corrupt`] (or a
//!   torn tail, truncated with a warning), never an `unwrap`.
//! - Guess when in doubt: damage that is not provably a torn tail is
//!   `Corrupt`, and the caller must refuse to start that core's replicas
//!   rather than let them vote as if they had forgotten what they promised.
//!
//! # Byte layout (all integers little-endian)
//!
//! A segment is a sequence of records, nothing else:
//!
//! ```text
//! offset  size  field
//!  0      4     len    u32  bytes after this 8-byte prefix (= 5 + payload length)
//!  4      4     crc    u32  crc32c of the segment's number (u64 LE) followed
//!                            by bytes [8, 8 + len): group | tag | payload
//!                            (in a `.log` segment: of those bytes alone)
//!  8      4     group  u32  GroupId
//! 12      1     tag    u8   1 = Promised, 2 = Accepted; primary/backup
//!                            groups: 3 = PbView, 4 = PbEntry, 5 = PbInstall
//! 13      len-5 payload
//!
//! Promised payload (12 bytes): round u64 | node u32
//! Accepted payload:            slot u64 | round u64 | node u32 | count u32 |
//!                              count × (cmd_len u32 | cmd bytes)
//! PbView payload (8 bytes):    view u64
//! PbEntry payload:             pos u64 | tag u64 | count u32 |
//!                              count × (cmd_len u32 | cmd bytes)
//! PbInstall payload:           index u64 | last_tag u64 | len u32 | state
//! ```
//!
//! A primary/backup group (issue 12, [`Wal::append_pb`]) folds its records
//! with `pb::PbDurable::apply`: a `PbEntry` drops every entry at or above
//! its position, a `PbInstall` (a state received by transfer, inline so it
//! is atomic and ordered with the entries) drops them all. Its rotation
//! head is its `PbView`; its snapshot file's data starts with the tag of
//! the entry before the index (`u64`). A segment holding a `PbEntry` or
//! `PbInstall` counts as holding the highest position the group ever
//! wrote, so it is never deleted before a segment holding an entry it
//! dropped.
//!
//! A CRC-valid record whose payload does not parse exactly is `Corrupt`
//! wherever it is: a torn write cannot produce a valid CRC.
//!
//! The first records of every segment after the first are one `Promised`
//! per group the `Wal` has seen (its promise at rotation time), so a
//! segment can be deleted without losing promises; see [`Wal`] for when.
//!
//! A snapshot file is a 36-byte header, then the snapshot data:
//!
//! ```text
//!  0  4  magic       u32  SNAPSHOT_MAGIC ("SYNS")
//!  4  4  version     u32  SNAPSHOT_VERSION
//!  8  4  group       u32  must match the file name
//! 12  4  data_crc    u32  crc32c of the data
//! 16  8  index       u64  every slot below it is in the snapshot
//! 24  8  data_len    u64  must equal file length - 36
//! 32  4  header_crc  u32  crc32c of bytes [0, 32)
//! 36  data_len       data
//! ```

mod durable;
mod janitor;
mod record;
mod snapshot;
mod wal;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::PathBuf;

pub use durable::{create_dir_durable, sync_dir, write_durable};
pub use janitor::Janitor;
pub use snapshot::{SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
pub use wal::{Begun, Recovered, SyncJob, Wal, WalStats};
// The simulator's disk faults (`sim/disk.rs`) write and recover WAL bytes in
// memory with the very encoding and recovery rules the WAL uses.
pub use record::WalRecord;
pub(crate) use record::{encode as encode_record, segment_seed};
pub(crate) use wal::{scan_segment, Damage};

// Names the module docs link to.
#[cfg(doc)]
use crate::paxos::{Durable, Record, Synced};

/// Default size at which the WAL moves on to a new segment.
pub const SEGMENT_BYTES_DEFAULT: u64 = 16 << 20;
/// Default number of dead segments kept for recycling.
pub const RECYCLE_SEGMENTS_DEFAULT: usize = 1;
/// Default limit on one record's length when reading.
pub const RECORD_BYTES_MAX_DEFAULT: u32 = 64 << 20;

/// When the WAL forces its writes to stable storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` before every [`Synced`]: a record is durable when its
    /// promise leaves. The only safe choice.
    #[default]
    Always,
    /// UNSAFE, for benchmarks only: `write(2)` but never `fsync`. A power
    /// loss can forget promises and accepts that peers were already told
    /// about, which breaks Paxos safety.
    Never,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never (unsafe: no fsync, benchmarks only)"),
        }
    }
}

/// Tunables of one [`Wal`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    pub fsync: FsyncPolicy,
    /// After a sync leaves the current segment at or above this size, the
    /// next records go to a new segment (so old ones can be deleted).
    pub segment_bytes: u64,
    /// Reading refuses a record longer than this (bounds what a damaged
    /// length field can make recovery allocate); writing asserts it.
    pub record_bytes_max: u32,
    /// Delete segments that snapshots made unnecessary on the WAL's
    /// [`Janitor`] thread instead of inside `sync` (default). Off, `sync`
    /// returns only once they are gone (tests that look at the directory).
    pub background_delete: bool,
    /// Dead segments kept for later rotations to write over instead of
    /// creating new files (see [`Wal`]); each costs up to a segment of disk.
    pub recycle_segments: usize,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            fsync: FsyncPolicy::Always,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            background_delete: true,
            recycle_segments: RECYCLE_SEGMENTS_DEFAULT,
        }
    }
}

/// Why storage could not do what was asked.
#[derive(Debug)]
pub enum StorageError {
    /// A segment or snapshot file is damaged somewhere that is not a torn
    /// tail. The core's replicas must not start from this directory: they
    /// could vote as if they had never promised or accepted anything.
    Corrupt {
        /// The damaged WAL segment (or snapshot file).
        segment: PathBuf,
        /// Byte offset of the damaged record (or header field) in that file.
        offset: u64,
        reason: String,
    },
    /// The `Wal` is poisoned: an earlier (or this) I/O error left it unsure
    /// what is on disk, so it refuses everything from then on. The core must
    /// stop its replicas and recover by reopening the directory.
    Failed(String),
    /// An I/O error while opening or recovering, before any `Wal` existed.
    Io { path: PathBuf, source: io::Error },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        segment: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> StorageError {
        StorageError::Corrupt {
            segment: segment.into(),
            offset,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Corrupt {
                segment,
                offset,
                reason,
            } => write!(
                f,
                "corrupt storage: {} at offset {offset}: {reason}",
                segment.display()
            ),
            StorageError::Failed(why) => write!(f, "storage failed (poisoned): {why}"),
            StorageError::Io { path, source } => {
                write!(f, "storage I/O error on {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
