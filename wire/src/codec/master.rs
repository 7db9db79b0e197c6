//! Shard master requests as log commands (`[kind u8][body]`), both ways,
//! and the group lists they and `Config` replies carry.

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{GroupInfo, MasterOp, MasterRequest};

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
        }
}

fn groups_len(groups: &[GroupInfo]) -> usize {
    4 + groups
        .iter()
        .map(|g| 4 + 4 + g.servers.iter().map(|s| 4 + s.len()).sum::<usize>())
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
    }
}

pub(super) fn put_groups(out: &mut BytesMut, groups: &[GroupInfo]) {
    put_count(out, groups.len());
    for g in groups {
        out.put_u32_le(g.gid);
        put_count(out, g.servers.len());
        for s in &g.servers {
            put_byte_string(out, s.as_bytes());
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
        |k| (KIND_MASTER_JOIN..=KIND_MASTER_QUERY).contains(&k),
        "command is not a master request",
        read_master_request,
    )
}
