//! Byte layout of master snapshots.
//!
//! All integers are little-endian; lengths and counts are `u32`.
//!
//! ```text
//! snapshot = FORMAT:u8  shards:u32  configs:u32 config * configs
//!            sessions:u32 session * sessions
//! config   = groups:u32 group * groups
//!            gid:u32 * shards                   (the number is the index)
//! group    = gid:u32 servers:u32 (len:u32 utf8) * servers
//!            [added:u64 removed:u64]            (format 0x4E only)
//! session  = client:u64 acked:u64 replies:u32 (seq:u64 outcome) * replies
//! outcome  = 0 num:u64                          created configuration `num`
//!          | 1 len:u32 utf8                     refused, with this reason
//!
//! format 0x4F only: each group also ends with mode:u8 (0 Paxos, 1
//! primary/backup), masks always present, and after the sessions:
//! views    = count:u32 pbgroup * count          sorted by gid
//! pbgroup  = gid:u32 num:u64 primary:u32 backups:u64 acked:u8 safe:u64
//!            servers:u32 (pings:u64 * servers) (mark:u64 * servers) * servers
//! ```
//!
//! Format 0x4F ('O') is written only once some configuration holds a
//! primary/backup group (issue 12), so a master without one writes the
//! bytes it always did.
//!
//! Format 0x4D ('M') is the first; 0x4E ('N') adds each group's membership
//! masks and is written only once some configuration holds a group whose
//! membership changed (Replace, AddMember, RemoveMember), so a master that
//! never changed one writes the very bytes it always did, and a 0x4D
//! snapshot still restores (every group unchanged).
//!
//! Sessions are sorted by client and outcomes by seq (they live in
//! `BTreeMap`s), so equal states give equal bytes. Decoding accepts exactly
//! that canonical form and every invariant of [`Master`] (checked with the
//! same code the master asserts with), so a successful restore re-encodes to
//! the very same bytes. No checksum: that is the storage layer's job.
//! Decoding never panics and checks every count against the remaining input
//! before allocating.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use synod_wire::{ByteReader, Config, GroupInfo, ReadError, ReplicationMode, View};

use super::{Master, MasterOptions, Outcome, PbGroup, Session, SHARDS_MAX};

/// Format/version byte of a master snapshot; distinct from the KV store's
/// formats (1 and 0x81) so one is never restored as the other.
const FORMAT: u8 = 0x4D; // 'M'
/// Format with membership masks per group.
const FORMAT_MEMBERS: u8 = 0x4E; // 'N'
/// Format with membership masks and a replication mode per group, and the
/// view service's state.
const FORMAT_PB: u8 = 0x4F; // 'O'

const TAG_CREATED: u8 = 0;
const TAG_REFUSED: u8 = 1;

/// Smallest encodings, used to bound counts by the remaining input.
const MIN_GROUP_BYTES: usize = 4 + 4;
const MIN_STRING_BYTES: usize = 4;
const MIN_SESSION_BYTES: usize = 8 + 8 + 4;
const MIN_OUTCOME_BYTES: usize = 8 + 1 + 4; // seq, tag, empty reason

/// Why snapshot bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// The first byte is not [`FORMAT`].
    UnsupportedFormat(u8),
    /// The input ends before a field or a counted item that it announces.
    Truncated,
    /// Bytes are left over after the last field.
    TrailingBytes(usize),
    /// The snapshot was taken with a different shard count.
    ShardCountMismatch { expected: u32, found: u32 },
    /// The configured shard count is 0 or above [`SHARDS_MAX`].
    BadShardCount(u32),
    /// A string is not UTF-8.
    InvalidUtf8,
    /// An outcome has an unknown tag.
    UnknownOutcomeTag(u8),
    /// Readable, but not a state the master can be in; the text says why.
    Invalid(&'static str),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::UnsupportedFormat(b) => {
                write!(f, "unsupported master snapshot format {b}")
            }
            RestoreError::Truncated => f.write_str("master snapshot truncated"),
            RestoreError::TrailingBytes(n) => write!(f, "{n} trailing bytes after master snapshot"),
            RestoreError::ShardCountMismatch { expected, found } => {
                write!(f, "master snapshot has {found} shards, expected {expected}")
            }
            RestoreError::BadShardCount(n) => write!(f, "shard count {n} out of range"),
            RestoreError::InvalidUtf8 => f.write_str("string in master snapshot is not UTF-8"),
            RestoreError::UnknownOutcomeTag(t) => write!(f, "unknown outcome tag {t}"),
            RestoreError::Invalid(why) => write!(f, "invalid master snapshot: {why}"),
        }
    }
}

impl std::error::Error for RestoreError {}

/// The reader's errors in the master snapshot's terms.
impl From<ReadError> for RestoreError {
    fn from(e: ReadError) -> RestoreError {
        match e {
            ReadError::Truncated { .. } | ReadError::CountTooLarge { .. } => {
                RestoreError::Truncated
            }
            ReadError::TrailingBytes(n) => RestoreError::TrailingBytes(n),
            ReadError::BadUtf8 => RestoreError::InvalidUtf8,
        }
    }
}

impl Master {
    /// The whole state (every configuration and every session) as
    /// deterministic bytes: equal states give equal bytes.
    pub fn snapshot(&self) -> Bytes {
        let mut out = Vec::new();
        let pb = self.has_pb();
        let members = pb
            || self
                .configs
                .iter()
                .any(|c| c.groups.iter().any(GroupInfo::changed));
        out.push(if pb {
            FORMAT_PB
        } else if members {
            FORMAT_MEMBERS
        } else {
            FORMAT
        });
        put_u32(&mut out, self.opts.shards);
        put_count(&mut out, self.configs.len());
        for config in &self.configs {
            put_count(&mut out, config.groups.len());
            for g in &config.groups {
                put_u32(&mut out, g.gid);
                put_count(&mut out, g.servers.len());
                for s in &g.servers {
                    put_string(&mut out, s);
                }
                if members {
                    out.extend_from_slice(&g.added.to_le_bytes());
                    out.extend_from_slice(&g.removed.to_le_bytes());
                }
                if pb {
                    out.push(g.mode as u8);
                }
            }
            // The count is the snapshot's shard count, so it is not repeated.
            assert_eq!(config.shards.len(), self.opts.shards as usize);
            for &gid in &config.shards {
                put_u32(&mut out, gid);
            }
        }
        put_count(&mut out, self.sessions.len());
        for (&client, session) in &self.sessions {
            out.extend_from_slice(&client.to_le_bytes());
            out.extend_from_slice(&session.acked.to_le_bytes());
            put_count(&mut out, session.replies.len());
            for (&seq, outcome) in &session.replies {
                out.extend_from_slice(&seq.to_le_bytes());
                match outcome {
                    Ok(num) => {
                        out.push(TAG_CREATED);
                        out.extend_from_slice(&num.to_le_bytes());
                    }
                    Err(reason) => {
                        out.push(TAG_REFUSED);
                        put_string(&mut out, reason);
                    }
                }
            }
        }
        if pb {
            put_count(&mut out, self.pb.len());
            for (&gid, g) in &self.pb {
                put_u32(&mut out, gid);
                out.extend_from_slice(&g.view.num.to_le_bytes());
                put_u32(&mut out, g.view.primary);
                out.extend_from_slice(&g.view.backups.to_le_bytes());
                out.push(u8::from(g.acked));
                out.extend_from_slice(&g.safe.to_le_bytes());
                put_count(&mut out, g.pings.len());
                for p in g.pings.iter().chain(g.marks.iter().flatten()) {
                    out.extend_from_slice(&p.to_le_bytes());
                }
            }
        }
        Bytes::from(out)
    }

    /// Does any configuration hold a primary/backup group?
    fn has_pb(&self) -> bool {
        self.configs.iter().any(|c| {
            c.groups
                .iter()
                .any(|g| g.mode == ReplicationMode::PrimaryBackup)
        })
    }

    /// Rebuilds a master from [`Master::snapshot`] bytes. Never panics on
    /// corrupt input; refuses anything that is not a canonical snapshot of a
    /// valid state. `opts.shards` must match the snapshot's.
    pub fn restore(bytes: &[u8], opts: MasterOptions) -> Result<Master, RestoreError> {
        if opts.shards == 0 || opts.shards > SHARDS_MAX {
            return Err(RestoreError::BadShardCount(opts.shards));
        }
        let mut r = ByteReader::new(bytes);
        let format = r.u8()?;
        if format != FORMAT && format != FORMAT_MEMBERS && format != FORMAT_PB {
            return Err(RestoreError::UnsupportedFormat(format));
        }
        let pb = format == FORMAT_PB;
        let members = format == FORMAT_MEMBERS || pb;
        let found = r.u32()?;
        if found != opts.shards {
            return Err(RestoreError::ShardCountMismatch {
                expected: opts.shards,
                found,
            });
        }
        let shards = opts.shards as usize;
        let n_configs = r.count(4 + 4 * shards)?;
        let mut configs = Vec::with_capacity(n_configs);
        for num in 0..n_configs {
            let n_groups = r.count(MIN_GROUP_BYTES)?;
            let mut groups = Vec::with_capacity(n_groups);
            for _ in 0..n_groups {
                let gid = r.u32()?;
                let n_servers = r.count(MIN_STRING_BYTES)?;
                let mut servers = Vec::with_capacity(n_servers);
                for _ in 0..n_servers {
                    servers.push(r.str()?.to_owned());
                }
                let mut g = GroupInfo::new(gid, servers);
                if members {
                    g.added = r.u64()?;
                    g.removed = r.u64()?;
                }
                if pb {
                    g.mode = ReplicationMode::from_u8(r.u8()?)
                        .ok_or(RestoreError::Invalid("unknown replication mode"))?;
                }
                groups.push(g);
            }
            if r.remaining() / 4 < shards {
                return Err(RestoreError::Truncated);
            }
            let mut owners = Vec::with_capacity(shards);
            for _ in 0..shards {
                owners.push(r.u32()?);
            }
            configs.push(Config {
                num: num as u64,
                shards: owners,
                groups,
            });
        }
        let n_sessions = r.count(MIN_SESSION_BYTES)?;
        let mut sessions = BTreeMap::new();
        let mut previous = None;
        for _ in 0..n_sessions {
            let client = r.u64()?;
            if previous.is_some_and(|p| p >= client) {
                return Err(RestoreError::Invalid("sessions not sorted by client"));
            }
            previous = Some(client);
            let acked = r.u64()?;
            let n_replies = r.count(MIN_OUTCOME_BYTES)?;
            let mut replies = BTreeMap::new();
            let mut previous_seq = None;
            for _ in 0..n_replies {
                let seq = r.u64()?;
                if previous_seq.is_some_and(|p| p >= seq) {
                    return Err(RestoreError::Invalid("outcomes not sorted by seq"));
                }
                previous_seq = Some(seq);
                let outcome: Outcome = match r.u8()? {
                    TAG_CREATED => Ok(r.u64()?),
                    TAG_REFUSED => Err(r.str()?.to_owned()),
                    tag => return Err(RestoreError::UnknownOutcomeTag(tag)),
                };
                replies.insert(seq, outcome);
            }
            sessions.insert(client, Session { acked, replies });
        }
        let mut views = BTreeMap::new();
        if pb {
            let n = r.count(4 + 8 + 4 + 8 + 1 + 8 + 4)?;
            let mut previous = None;
            for _ in 0..n {
                let gid = r.u32()?;
                if previous.is_some_and(|p| p >= gid) {
                    return Err(RestoreError::Invalid("views not sorted by gid"));
                }
                previous = Some(gid);
                let view = View {
                    num: r.u64()?,
                    primary: r.u32()?,
                    backups: r.u64()?,
                };
                let acked = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(RestoreError::Invalid("acked flag is not 0 or 1")),
                };
                let safe = r.u64()?;
                let servers = r.count(8)?;
                if servers > 64 || r.remaining() / 8 < servers * (servers + 1) {
                    return Err(RestoreError::Truncated);
                }
                let pings = (0..servers)
                    .map(|_| r.u64())
                    .collect::<Result<Vec<_>, _>>()?;
                let mut marks = Vec::with_capacity(servers);
                for _ in 0..servers {
                    marks.push(
                        (0..servers)
                            .map(|_| r.u64())
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
                views.insert(
                    gid,
                    PbGroup {
                        view,
                        acked,
                        safe,
                        pings,
                        marks,
                    },
                );
            }
        }
        r.finish()?;
        let master = Master {
            opts,
            configs,
            sessions,
            pb: views,
            planted_promote_any: false,
        };
        master.check().map_err(RestoreError::Invalid)?;
        let changed = master
            .configs
            .iter()
            .any(|c| c.groups.iter().any(GroupInfo::changed));
        if pb != master.has_pb() {
            return Err(RestoreError::Invalid(
                "format 0x4F exactly when a group is primary/backup",
            ));
        }
        if !pb && members != changed {
            // Canonical form: the format says whether any group changed.
            return Err(RestoreError::Invalid(
                "format 0x4E exactly when a group's membership changed",
            ));
        }
        Ok(master)
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Every count here is bounded far below `u32::MAX` by the master's limits
/// (or by the frame size a request arrived in), so overflow is a bug.
fn put_count(out: &mut Vec<u8>, n: usize) {
    put_u32(
        out,
        u32::try_from(n).expect("count over u32::MAX in a master snapshot"),
    );
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_count(out, s.len());
    out.extend_from_slice(s.as_bytes());
}
