//! Encoding: frames, message bodies, client requests as log commands, and
//! the primitives every body is written with (counts, byte strings,
//! ballots, batches).

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{
    AuthMsg, Ballot, Batch, ClientReply, ClientRequest, Expiry, Frame, Message, Op, PaxosMsg,
    PbMsg, Proposal, ReplicaId, View,
};

use super::*;

/// Appends `frame` (header then body) to `out`.
///
/// The body is encoded in place after a placeholder header, then the header
/// is filled in with the body's length and CRC, so no temporary buffer is
/// used. Frames are appended, so one write buffer can carry a whole loop
/// turn's frames for a peer.
///
/// This does not enforce the receiver's [`DEFAULT_FRAME_BYTES_MAX`]; senders
/// bound their batches and snapshot chunks well below it.
///
/// # Panics
/// If the body, or any byte string or vector in it, is longer than
/// `u32::MAX` (the format cannot express it; a caller bug), or if a
/// `NotLeader` hint is `Some(u32::MAX)` (that value means "no hint").
///
/// A `Query { num: Some(u64::MAX) }` does *not* panic: it is encoded as
/// [`LATEST_CONFIG`] and decodes as `None`, which means the same thing
/// (a number past the latest configuration asks for the latest), so a
/// client passing a user's number through cannot crash on it.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    let start = out.len();
    out.put_bytes(0, HEADER_LEN);
    encode_message_body(&frame.message, out);
    let body = &out[start + HEADER_LEN..];
    let body_len =
        u32::try_from(body.len()).expect("frame body longer than u32::MAX bytes (caller bug)");
    let header = Header {
        kind: kind_of(&frame.message),
        flags: 0,
        body_len,
        request_id: frame.request_id,
        group: frame.group,
        body_crc: crc32c::crc32c(body),
    };
    out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
}

/// Appends the body of `msg` (no header) to `out`. The kind code that goes
/// with it is [`kind_of`]`(msg)`. Panics as [`encode_frame`] does.
pub fn encode_message_body(msg: &Message, out: &mut BytesMut) {
    match msg {
        Message::Request(req) => put_request_body(req, out),
        Message::Reply(reply) => match reply {
            ClientReply::Ok(value) => put_byte_string(out, value),
            ClientReply::NoKey
            | ClientReply::WrongGroup
            | ClientReply::Busy
            | ClientReply::SessionExpired
            | ClientReply::WrongCore => {}
            ClientReply::NotLeader { leader } => put_replica_hint(out, *leader),
            ClientReply::Error { reason } => put_byte_string(out, reason.as_bytes()),
        },
        Message::Paxos(p) => match p {
            PaxosMsg::Prepare(m) => {
                out.put_u32_le(m.from);
                put_ballot(out, &m.ballot);
                out.put_u64_le(m.from_slot);
            }
            PaxosMsg::Promise(m) => {
                out.put_u32_le(m.from);
                put_ballot(out, &m.ballot);
                out.put_u64_le(m.log_start);
                out.put_u64_le(m.chosen_upto);
                put_count(out, m.entries.len());
                for e in &m.entries {
                    out.put_u64_le(e.slot);
                    put_ballot(out, &e.ballot);
                    put_batch(out, &e.batch);
                }
                out.put_u8(u8::from(m.more));
            }
            PaxosMsg::Accept(m) => {
                out.put_u32_le(m.from);
                put_ballot(out, &m.ballot);
                out.put_u64_le(m.chosen_upto);
                put_proposals(out, &m.entries);
            }
            PaxosMsg::Accepted(m) => {
                out.put_u32_le(m.from);
                put_ballot(out, &m.ballot);
                out.put_u64_le(m.chosen_upto);
                out.put_u64_le(m.read_round);
                put_count(out, m.slots.len());
                for &s in &m.slots {
                    out.put_u64_le(s);
                }
            }
            PaxosMsg::Reject(m) => {
                out.put_u32_le(m.from);
                put_ballot(out, &m.promised);
            }
            PaxosMsg::Commit(m) => {
                out.put_u32_le(m.from);
                put_ballot(out, &m.ballot);
                out.put_u64_le(m.chosen_upto);
            }
            PaxosMsg::Heartbeat(m) => {
                out.put_u32_le(m.from);
                put_ballot(out, &m.ballot);
                out.put_u64_le(m.chosen_upto);
                out.put_u64_le(m.read_round);
            }
            PaxosMsg::CatchupRequest(m) => {
                out.put_u32_le(m.from);
                out.put_u64_le(m.from_slot);
            }
            PaxosMsg::CatchupResponse(m) => {
                out.put_u32_le(m.from);
                out.put_u64_le(m.chosen_upto);
                put_proposals(out, &m.entries);
            }
            PaxosMsg::SnapshotRequest(m) => {
                out.put_u32_le(m.from);
                out.put_u64_le(m.index);
                out.put_u64_le(m.offset);
            }
            PaxosMsg::SnapshotChunk(m) => {
                out.put_u32_le(m.from);
                out.put_u64_le(m.index);
                out.put_u64_le(m.total_len);
                out.put_u64_le(m.offset);
                put_byte_string(out, &m.data);
            }
            PaxosMsg::PreVote(m) => {
                out.put_u32_le(m.from);
                put_ballot(out, &m.ballot);
                out.put_u64_le(m.chosen_upto);
            }
            PaxosMsg::PreVoteReply(m) => {
                out.put_u32_le(m.from);
                put_ballot(out, &m.ballot);
                out.put_u8(u8::from(m.granted));
                put_ballot(out, &m.promised);
            }
        },
        Message::Master(req) => put_master_body(req, out),
        Message::Config(config) => {
            out.put_u64_le(config.num);
            put_count(out, config.shards.len());
            for &gid in &config.shards {
                out.put_u32_le(gid);
            }
            put_groups(out, &config.groups);
        }
        Message::PbView(v) => {
            out.put_u32_le(v.gid);
            put_view(out, &v.view);
            out.put_u8(u8::from(v.acked));
        }
        Message::Pb(PbMsg::Append(m)) => {
            put_view(out, &m.view);
            out.put_u64_le(m.start);
            out.put_u64_le(m.prev_tag);
            put_count(out, m.entries.len());
            for (tag, batch) in &m.entries {
                out.put_u64_le(*tag);
                put_batch(out, batch);
            }
            out.put_u64_le(m.commit);
            out.put_u64_le(m.read_round);
        }
        Message::Pb(PbMsg::Ack(m)) => {
            out.put_u64_le(m.view);
            out.put_u32_le(m.from);
            out.put_u8(u8::from(m.ok));
            out.put_u64_le(m.end);
            out.put_u64_le(m.read_round);
            out.put_u64_le(m.received);
        }
        Message::Pb(PbMsg::Transfer(m)) => {
            put_view(out, &m.view);
            out.put_u64_le(m.index);
            out.put_u64_le(m.last_tag);
            out.put_u64_le(m.total);
            out.put_u64_le(m.offset);
            put_byte_string(out, &m.data);
        }
        Message::ShardPull(p) => {
            out.put_u64_le(p.config_num);
            out.put_u32_le(p.shard);
            out.put_u64_le(p.cursor);
        }
        Message::ShardDelete(r) => {
            out.put_u64_le(r.config_num);
            out.put_u32_le(r.shard);
        }
        Message::TxnResolve(txn) => put_txn_id(out, *txn),
        Message::ShardData(d) => {
            out.put_u64_le(d.config_num);
            out.put_u32_le(d.shard);
            out.put_u64_le(d.cursor);
            out.put_u8(u8::from(d.done));
            put_byte_string(out, &d.data);
        }
        Message::Auth(AuthMsg::Hello(h)) => {
            out.put_u8(h.role as u8);
            out.put_u32_le(h.gid);
            out.put_u32_le(h.replica);
            out.put_slice(&h.nonce);
        }
        Message::Auth(AuthMsg::Challenge(c)) => {
            out.put_slice(&c.nonce);
            out.put_slice(&c.mac);
        }
        Message::Auth(AuthMsg::Proof(p)) => out.put_slice(&p.mac),
        Message::StatusRequest => {}
        Message::Status(st) => {
            put_byte_string(out, st.node.as_bytes());
            put_count(out, st.groups.len());
            for g in &st.groups {
                out.put_u32_le(g.gid);
                out.put_u32_le(g.replica);
                put_count(out, g.members.len());
                for m in &g.members {
                    put_byte_string(out, m.as_bytes());
                }
                out.put_u8(u8::from(g.leading));
                put_replica_hint(out, g.leader);
                put_ballot(out, &g.ballot);
                out.put_u64_le(g.commit);
                out.put_u64_le(g.applied);
                out.put_u64_le(g.log_slots);
                out.put_u64_le(g.config_num);
                put_count(out, g.shards.len());
                for &s in &g.shards {
                    out.put_u32_le(s);
                }
            }
        }
    }
}

/// A client request as a self-describing command: `[kind u8][request body]`.
///
/// This is what a leader puts into a Paxos [`Batch`]: the log stores the
/// request exactly as the wire carried it, and [`decode_command`] reads it
/// back without copying the key or value. Panics as [`encode_frame`] does.
pub fn encode_command(req: &ClientRequest) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + request_body_len(req));
    out.put_u8(op_kind(&req.op));
    put_request_body(req, &mut out);
    debug_assert_eq!(out.len(), 1 + request_body_len(req));
    out.freeze()
}

/// Bytes of a request command (`[kind][client_id][seq][ack_seq][op..]`)
/// before its operation's fields.
const COMMAND_HEADER_LEN: usize = 1 + 8 + 8 + 8;

/// A request's print: CRC-32C of its command's kind and operation fields,
/// leaving out `client_id`, `seq` and `ack_seq` (a resend may carry a newer
/// `ack_seq`). Encoding is canonical, so two requests have the same print
/// exactly when they ask for the same operation (up to CRC collisions).
/// Servers keep it beside a cached reply to refuse a `seq` reused for a
/// different request (PROTOCOL.md 7). `cmd` shorter than the header (never
/// a decoded command) prints its kind alone.
pub fn request_print(cmd: &[u8]) -> u32 {
    let kind = crc32c::crc32c(&cmd[..cmd.len().min(1)]);
    crc32c::crc32c_append(kind, cmd.get(COMMAND_HEADER_LEN..).unwrap_or(&[]))
}

fn request_body_len(req: &ClientRequest) -> usize {
    match &req.op {
        Op::Txn(txn) => return 8 + 8 + 8 + txn_body_len(txn),
        Op::TxnPrepare(p) => {
            let coordinator = if p.coordinator == 0 { 0 } else { 4 };
            return 8 + 8 + 8 + 16 + txn_body_len(&p.part) + coordinator;
        }
        Op::TxnDecide(f) | Op::TxnFinish(f) => return 8 + 8 + 8 + 16 + 4 + f.key.len() + 1,
        _ => {}
    }
    let fixed = 8 + 8 + 8 + 4 + req.op.key().len();
    match &req.op {
        Op::Get { .. }
        | Op::Delete { .. }
        | Op::GetDel { .. }
        | Op::Ttl { .. }
        | Op::Count { .. }
        | Op::Flush { .. } => fixed,
        Op::SetRange { value, .. } => fixed + 8 + 4 + value.len(),
        Op::IncrByFloat { delta, .. } => fixed + 4 + delta.len(),
        Op::Scan { after, pattern, .. } => {
            fixed
                + 1
                + 4
                + after.as_ref().map_or(0, |a| a.len())
                + 4
                + 1
                + 4
                + pattern.as_ref().map_or(0, |p| p.len())
        }
        Op::Put { value, .. } | Op::Append { value, .. } => fixed + 4 + value.len(),
        Op::PutEx { value, .. } => fixed + 4 + value.len() + 2 + 9,
        Op::Expire { .. } => fixed + 9 + 1,
        Op::GetEx { .. } => fixed + 9,
        Op::Incr { .. } => fixed + 8,
        Op::PutIf { value, .. } => fixed + 4 + value.len() + 2,
        Op::Txn(_) | Op::TxnPrepare(_) | Op::TxnDecide(_) | Op::TxnFinish(_) => {
            unreachable!("returned above")
        }
    }
}

/// `present u8` (0 or 1), then a byte string (empty when absent).
fn put_optional(out: &mut BytesMut, b: Option<&[u8]>) {
    out.put_u8(u8::from(b.is_some()));
    put_byte_string(out, b.unwrap_or_default());
}

fn put_expiry(out: &mut BytesMut, expiry: Expiry) {
    let (code, ms) = expiry.to_code();
    out.put_u8(code);
    out.put_u64_le(ms);
}

fn put_request_body(req: &ClientRequest, out: &mut BytesMut) {
    out.put_u64_le(req.client_id);
    out.put_u64_le(req.seq);
    out.put_u64_le(req.ack_seq);
    match &req.op {
        Op::Get { key }
        | Op::Delete { key }
        | Op::GetDel { key }
        | Op::Ttl { key }
        | Op::Count { key }
        | Op::Flush { key } => put_byte_string(out, key),
        Op::SetRange { key, offset, value } => {
            put_byte_string(out, key);
            out.put_u64_le(*offset);
            put_byte_string(out, value);
        }
        Op::IncrByFloat { key, delta } => {
            put_byte_string(out, key);
            put_byte_string(out, delta);
        }
        Op::Scan {
            key,
            after,
            count,
            pattern,
        } => {
            put_byte_string(out, key);
            put_optional(out, after.as_deref());
            out.put_u32_le(*count);
            put_optional(out, pattern.as_deref());
        }
        Op::PutEx {
            key,
            value,
            cond,
            get_old,
            expiry,
        } => {
            put_byte_string(out, key);
            put_byte_string(out, value);
            out.put_u8(*cond as u8);
            out.put_u8(u8::from(*get_old));
            put_expiry(out, *expiry);
        }
        Op::Expire { key, expiry, cond } => {
            put_byte_string(out, key);
            put_expiry(out, *expiry);
            out.put_u8(*cond as u8);
        }
        Op::GetEx { key, expiry } => {
            put_byte_string(out, key);
            put_expiry(out, *expiry);
        }
        Op::Put { key, value } | Op::Append { key, value } => {
            put_byte_string(out, key);
            put_byte_string(out, value);
        }
        Op::Incr { key, delta } => {
            put_byte_string(out, key);
            out.put_i64_le(*delta);
        }
        Op::PutIf {
            key,
            value,
            cond,
            get_old,
        } => {
            put_byte_string(out, key);
            put_byte_string(out, value);
            out.put_u8(*cond as u8);
            out.put_u8(u8::from(*get_old));
        }
        Op::Txn(txn) => put_txn_body(out, txn),
        Op::TxnPrepare(p) => {
            put_txn_id(out, p.txn);
            put_txn_body(out, &p.part);
            // Unknown (0) is the absent trailer: one encoding per prepare.
            if p.coordinator != 0 {
                out.put_u32_le(p.coordinator);
            }
        }
        Op::TxnDecide(f) | Op::TxnFinish(f) => {
            put_txn_id(out, f.txn);
            put_byte_string(out, &f.key);
            out.put_u8(f.outcome as u8);
        }
    }
}

/// Writes a count or length prefix. A value over `u32::MAX` cannot be
/// expressed; silently truncating it would corrupt the stream, so it panics.
pub(super) fn put_count(out: &mut BytesMut, n: usize) {
    let n = u32::try_from(n).expect("count or length over u32::MAX in a frame (caller bug)");
    out.put_u32_le(n);
}

pub(super) fn put_byte_string(out: &mut BytesMut, b: &[u8]) {
    put_count(out, b.len());
    out.put_slice(b);
}

/// `num u64 | primary u32 | backups u64` (20 bytes).
fn put_view(out: &mut BytesMut, v: &View) {
    out.put_u64_le(v.num);
    out.put_u32_le(v.primary);
    out.put_u64_le(v.backups);
}

fn put_ballot(out: &mut BytesMut, b: &Ballot) {
    out.put_u64_le(b.round);
    out.put_u32_le(b.node);
}

/// `u32::MAX` stands for "no hint", so `Some(u32::MAX)` would decode as
/// `None`; no real group has 4 billion members, so it is a caller bug.
fn put_replica_hint(out: &mut BytesMut, leader: Option<ReplicaId>) {
    let v = match leader {
        Some(id) => {
            assert!(
                id != NO_REPLICA,
                "NotLeader hint u32::MAX is reserved for None"
            );
            id
        }
        None => NO_REPLICA,
    };
    out.put_u32_le(v);
}

pub(super) const NO_REPLICA: u32 = u32::MAX;

fn put_batch(out: &mut BytesMut, batch: &Batch) {
    put_count(out, batch.commands.len());
    for c in &batch.commands {
        put_byte_string(out, c);
    }
}

fn put_proposals(out: &mut BytesMut, entries: &[Proposal]) {
    put_count(out, entries.len());
    for p in entries {
        out.put_u64_le(p.slot);
        put_batch(out, &p.batch);
    }
}
