//! Shard master requests as log commands (`[kind u8][body]`), both ways,
//! and the group lists they and `Config` replies carry.

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{GroupInfo, MasterOp, MasterRequest, ReplicationMode};

/// Top bit of a `group_info`'s server count: the membership masks follow
/// the servers (see [`put_groups`]).
pub const MEMBERSHIP_FOLLOWS: u32 = 0x8000_0000;
/// Second bit of a `group_info`'s server count: a replication-mode byte
/// follows (after the masks, if any). Set only for a group that is not
/// Paxos, so every Paxos group encodes as it always did.
pub const MODE_FOLLOWS: u32 = 0x4000_0000;

use super::*;

/// A shard master request as a self-describing command:
/// `[kind u8][master request body]`, the way [`encode_command`] stores a
/// client request. This is what the master group's leader puts into a Paxos
/// [`Batch`](crate::types::Batch); [`decode_master_command`] reads it back. Panics as
/// [`encode_frame`] does.
pub fn encode_master_command(req: &MasterRequest) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + master_body_len(req));
    out.put_u8(master_op_kind(&req.op));
    put_master_body(req, &mut out);
    debug_assert_eq!(out.len(), 1 + master_body_len(req));
    out.freeze()
}

fn master_body_len(req: &MasterRequest) -> usize {
    let fixed = 8 + 8 + 8;
    fixed
        + match &req.op {
            MasterOp::Join { groups } => groups_len(groups),
            MasterOp::Leave { gids } => 4 + 4 * gids.len(),
            MasterOp::Move { .. } => 4 + 4,
            MasterOp::Query { .. } => 8,
            MasterOp::Replace { old, new, .. } => 4 + 4 + old.len() + 4 + new.len(),
            MasterOp::AddMember { addr, .. } | MasterOp::RemoveMember { addr, .. } => {
                4 + 4 + addr.len()
            }
            MasterOp::PbPing { .. } => 4 + 4 + 8,
        }
}

fn groups_len(groups: &[GroupInfo]) -> usize {
    4 + groups
        .iter()
        .map(|g| {
            let masks = if g.changed() { 16 } else { 0 };
            let mode = usize::from(g.mode != ReplicationMode::Paxos);
            4 + 4 + g.servers.iter().map(|s| 4 + s.len()).sum::<usize>() + masks + mode
        })
        .sum::<usize>()
}

pub(super) fn put_master_body(req: &MasterRequest, out: &mut BytesMut) {
    out.put_u64_le(req.client_id);
    out.put_u64_le(req.seq);
    out.put_u64_le(req.ack_seq);
    match &req.op {
        MasterOp::Join { groups } => put_groups(out, groups),
        MasterOp::Leave { gids } => {
            put_count(out, gids.len());
            for &gid in gids {
                out.put_u32_le(gid);
            }
        }
        MasterOp::Move { shard, gid } => {
            out.put_u32_le(*shard);
            out.put_u32_le(*gid);
        }
        // `Some(u64::MAX)` shares `None`'s encoding on purpose; see
        // `encode_frame`'s panics section.
        MasterOp::Query { num } => out.put_u64_le(num.unwrap_or(LATEST_CONFIG)),
        MasterOp::Replace { gid, old, new } => {
            out.put_u32_le(*gid);
            put_byte_string(out, old.as_bytes());
            put_byte_string(out, new.as_bytes());
        }
        MasterOp::AddMember { gid, addr } | MasterOp::RemoveMember { gid, addr } => {
            out.put_u32_le(*gid);
            put_byte_string(out, addr.as_bytes());
        }
        MasterOp::PbPing { gid, replica, view } => {
            out.put_u32_le(*gid);
            out.put_u32_le(*replica);
            out.put_u64_le(*view);
        }
    }
}

/// A `group_info`. The server count's top bit ([`MEMBERSHIP_FOLLOWS`]) is
/// set exactly when the group's membership changed since it joined; then
/// `added u64` and `removed u64` follow the servers. A group that never
/// changed encodes as it always did, so configurations already in KV
/// groups' logs and snapshots read back unchanged. Likewise the second bit
/// ([`MODE_FOLLOWS`]) is set only for a group that is not Paxos; then a
/// mode byte follows (after the masks).
pub(super) fn put_groups(out: &mut BytesMut, groups: &[GroupInfo]) {
    put_count(out, groups.len());
    for g in groups {
        out.put_u32_le(g.gid);
        assert!(
            g.servers.len() < MEMBERSHIP_FOLLOWS as usize,
            "server count over 2^31 (caller bug)"
        );
        assert!(
            g.servers.len() < MODE_FOLLOWS as usize,
            "server count over 2^30 (caller bug)"
        );
        let flag = if g.changed() { MEMBERSHIP_FOLLOWS } else { 0 };
        let mode = g.mode != ReplicationMode::Paxos;
        let mode_flag = if mode { MODE_FOLLOWS } else { 0 };
        out.put_u32_le(g.servers.len() as u32 | flag | mode_flag);
        for s in &g.servers {
            put_byte_string(out, s.as_bytes());
        }
        if g.changed() {
            out.put_u64_le(g.added);
            out.put_u64_le(g.removed);
        }
        if mode {
            out.put_u8(g.mode as u8);
        }
    }
}

pub(super) fn read_master_request(kind: u8, r: &mut Reader) -> Result<MasterRequest, DecodeError> {
    let client_id = r.u64()?;
    let seq = r.u64()?;
    let ack_seq = r.u64()?;
    let op = match kind {
        KIND_MASTER_JOIN => MasterOp::Join {
            groups: r.groups()?,
        },
        KIND_MASTER_LEAVE => MasterOp::Leave { gids: r.gids()? },
        KIND_MASTER_MOVE => MasterOp::Move {
            shard: r.u32()?,
            gid: r.u32()?,
        },
        KIND_MASTER_QUERY => {
            let num = r.u64()?;
            MasterOp::Query {
                num: (num != LATEST_CONFIG).then_some(num),
            }
        }
        KIND_MASTER_REPLACE => MasterOp::Replace {
            gid: r.u32()?,
            old: r.string()?,
            new: r.string()?,
        },
        KIND_MASTER_ADD_MEMBER => MasterOp::AddMember {
            gid: r.u32()?,
            addr: r.string()?,
        },
        KIND_MASTER_REMOVE_MEMBER => MasterOp::RemoveMember {
            gid: r.u32()?,
            addr: r.string()?,
        },
        KIND_MASTER_PB_PING => MasterOp::PbPing {
            gid: r.u32()?,
            replica: r.u32()?,
            view: r.u64()?,
        },
        _ => return Err(DecodeError::Invalid("not a master request kind")),
    };
    Ok(MasterRequest {
        client_id,
        seq,
        ack_seq,
        op,
    })
}

/// Decodes a command written by [`encode_master_command`]: how the master
/// group reads its Paxos log. Same scrutiny as [`decode_command`]; a KV
/// request's kind is refused as [`DecodeError::Invalid`], so a command that
/// strayed into the wrong group's log is never misread.
pub fn decode_master_command(cmd: Bytes) -> Result<MasterRequest, DecodeError> {
    read_command(
        cmd,
        |k| (KIND_MASTER_JOIN..=KIND_MASTER_PB_PING).contains(&k),
        "command is not a master request",
        read_master_request,
    )
}
