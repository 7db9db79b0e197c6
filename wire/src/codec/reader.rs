//! The body cursor every decoder reads with: bounds-checked reads of the
//! primitives and of each composite field, no panics, no copies.

use bytes::Bytes;

use crate::cursor::ByteReader;

use crate::types::{
    Ballot, Batch, Expiry, GroupId, GroupInfo, GroupStatus, LogEntry, NodeStatus, Proposal,
    ReplicaId, ReplicationMode, View,
};

use super::*;

/// Smallest encoding of one item of each vector, used to refuse a count the
/// remaining bytes cannot possibly hold before reserving any memory.
const MIN_COMMAND_LEN: usize = 4; // length prefix
const MIN_PROPOSAL_LEN: usize = 8 + 4; // slot + empty batch
const MIN_LOG_ENTRY_LEN: usize = 8 + 12 + 4; // slot + ballot + empty batch
const MIN_PB_ENTRY_LEN: usize = 8 + 4; // tag + empty batch
const SLOT_LEN: usize = 8;
const GID_LEN: usize = 4;
const MIN_GROUP_INFO_LEN: usize = 4 + 4; // gid + empty server list
const MIN_STRING_LEN: usize = 4; // length prefix
/// gid, replica, empty members, leading, leader, ballot, four u64s, empty shards.
const MIN_GROUP_STATUS_LEN: usize = 4 + 4 + 4 + 1 + 4 + 12 + 4 * 8 + 4;

/// A cursor over a body: the crate's [`ByteReader`] (every read checked,
/// [`DecodeError::Truncated`] instead of a panic) plus the [`Bytes`] it
/// reads, so byte strings come out as slices of it (a reference-count
/// bump, no copy).
pub(super) struct Reader<'a> {
    whole: &'a Bytes,
    r: ByteReader<'a>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(body: &'a Bytes) -> Reader<'a> {
        Reader {
            whole: body,
            r: ByteReader::new(body),
        }
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.r.u8()?)
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(self.r.u32()?)
    }

    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(self.r.u64()?)
    }

    /// Exactly `N` raw bytes (nonces, MACs).
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.r.array()?)
    }

    pub(super) fn ballot(&mut self) -> Result<Ballot, DecodeError> {
        Ok(Ballot {
            round: self.u64()?,
            node: self.u32()?,
        })
    }

    pub(super) fn byte_string(&mut self) -> Result<Bytes, DecodeError> {
        Ok(self.whole.slice_ref(self.r.bytes()?))
    }

    /// A vector count, proven to fit in what remains
    /// ([`ByteReader::count`]): safe to reserve.
    pub(super) fn count(&mut self, min_item_len: usize) -> Result<usize, DecodeError> {
        Ok(self.r.count(min_item_len)?)
    }

    pub(super) fn batch(&mut self) -> Result<Batch, DecodeError> {
        let n = self.count(MIN_COMMAND_LEN)?;
        let mut commands = Vec::with_capacity(n);
        for _ in 0..n {
            commands.push(self.byte_string()?);
        }
        Ok(Batch { commands })
    }

    pub(super) fn proposals(&mut self) -> Result<Vec<Proposal>, DecodeError> {
        let n = self.count(MIN_PROPOSAL_LEN)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(Proposal {
                slot: self.u64()?,
                batch: self.batch()?,
            });
        }
        Ok(entries)
    }

    pub(super) fn log_entries(&mut self) -> Result<Vec<LogEntry>, DecodeError> {
        let n = self.count(MIN_LOG_ENTRY_LEN)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(LogEntry {
                slot: self.u64()?,
                ballot: self.ballot()?,
                batch: self.batch()?,
            });
        }
        Ok(entries)
    }

    /// A primary/backup Append's `vec<pb_entry>`: `tag u64`, `batch`.
    pub(super) fn pb_entries(&mut self) -> Result<Vec<(u64, Batch)>, DecodeError> {
        let n = self.count(MIN_PB_ENTRY_LEN)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push((self.u64()?, self.batch()?));
        }
        Ok(entries)
    }

    /// A `view`; refused as `Invalid` (`what`) when its primary is 64 or
    /// more or also a backup (what the replicas assume of every view).
    pub(super) fn view(&mut self, what: &'static str) -> Result<View, DecodeError> {
        let view = View {
            num: self.u64()?,
            primary: self.u32()?,
            backups: self.u64()?,
        };
        if view.primary >= 64 || view.backups & (1u64 << view.primary) != 0 {
            return Err(DecodeError::Invalid(what));
        }
        Ok(view)
    }

    pub(super) fn slots(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.count(SLOT_LEN)?;
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            slots.push(self.u64()?);
        }
        Ok(slots)
    }

    /// A `string`: copied into a `String` after checking it is UTF-8.
    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        Ok(self.r.str()?.to_owned())
    }

    pub(super) fn gids(&mut self) -> Result<Vec<GroupId>, DecodeError> {
        let n = self.count(GID_LEN)?;
        let mut gids = Vec::with_capacity(n);
        for _ in 0..n {
            gids.push(self.u32()?);
        }
        Ok(gids)
    }

    pub(super) fn groups(&mut self) -> Result<Vec<GroupInfo>, DecodeError> {
        let n = self.count(MIN_GROUP_INFO_LEN)?;
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            let gid = self.u32()?;
            let raw = self.u32()?;
            let m = (raw & !(MEMBERSHIP_FOLLOWS | MODE_FOLLOWS)) as usize;
            if m > self.r.remaining() / MIN_STRING_LEN {
                return Err(DecodeError::Truncated);
            }
            let mut servers = Vec::with_capacity(m);
            for _ in 0..m {
                servers.push(self.string()?);
            }
            let mut g = GroupInfo::new(gid, servers);
            if raw & MEMBERSHIP_FOLLOWS != 0 {
                g.added = self.u64()?;
                g.removed = self.u64()?;
                // Canonical: the flag only with a mask set, masks only over
                // listed ids.
                if !g.changed() {
                    return Err(DecodeError::Invalid("membership flag with no change"));
                }
                if (g.added | g.removed) & !g.all_ids() != 0 {
                    return Err(DecodeError::Invalid("membership names an unlisted id"));
                }
            }
            if raw & MODE_FOLLOWS != 0 {
                // Canonical: the flag only for a mode other than Paxos.
                g.mode = match ReplicationMode::from_u8(self.u8()?) {
                    Some(ReplicationMode::Paxos) | None => {
                        return Err(DecodeError::Invalid("mode flag with no other mode"))
                    }
                    Some(mode) => mode,
                };
            }
            groups.push(g);
        }
        Ok(groups)
    }

    pub(super) fn node_status(&mut self) -> Result<NodeStatus, DecodeError> {
        let node = self.string()?;
        let n = self.count(MIN_GROUP_STATUS_LEN)?;
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            let gid = self.u32()?;
            let replica = self.u32()?;
            let m = self.count(MIN_STRING_LEN)?;
            let mut members = Vec::with_capacity(m);
            for _ in 0..m {
                members.push(self.string()?);
            }
            let leading = match self.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Invalid("Status leading flag is not 0 or 1")),
            };
            groups.push(GroupStatus {
                gid,
                replica,
                members,
                leading,
                leader: self.replica_hint()?,
                ballot: self.ballot()?,
                commit: self.u64()?,
                applied: self.u64()?,
                log_slots: self.u64()?,
                config_num: self.u64()?,
                shards: self.gids()?,
            });
        }
        Ok(NodeStatus { node, groups })
    }

    /// `put_optional`'s bytes: an absent value must carry an empty string.
    pub(super) fn optional(&mut self, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        let present = self.u8()?;
        let b = self.byte_string()?;
        match present {
            0 if b.is_empty() => Ok(None),
            1 => Ok(Some(b)),
            _ => Err(DecodeError::Invalid(what)),
        }
    }

    pub(super) fn expiry(&mut self) -> Result<Expiry, DecodeError> {
        let code = self.u8()?;
        let ms = self.u64()?;
        Expiry::from_code(code, ms).ok_or(DecodeError::Invalid("expiry"))
    }

    pub(super) fn replica_hint(&mut self) -> Result<Option<ReplicaId>, DecodeError> {
        let v = self.u32()?;
        Ok((v != NO_REPLICA).then_some(v))
    }

    /// Bytes not read yet (an optional trailing field is present when
    /// this is not 0).
    pub(super) fn remaining(&self) -> usize {
        self.r.remaining()
    }

    /// A body must be consumed exactly: leftover bytes mean the sender and
    /// receiver disagree about the layout, which must not pass silently.
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        Ok(self.r.finish()?)
    }
}
