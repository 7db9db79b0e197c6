//! Decoding bodies: every message kind, and a client request stored as a
//! log command.

use bytes::Bytes;

use crate::types::{
    Accept, Accepted, AuthChallenge, AuthHello, AuthMsg, AuthProof, AuthRole, CatchupRequest,
    CatchupResponse, ClientReply, ClientRequest, Commit, Config, ExpireCond, Expiry, Heartbeat,
    Message, Op, PaxosMsg, PbAck, PbAppend, PbMsg, PbTransfer, PbViewReply, PreVote, PreVoteReply,
    Prepare, Promise, PutCond, Reject, ShardData, ShardPull, ShardRef, SnapshotChunk,
    SnapshotRequest, PB_TRANSFER_BYTES_MAX, SCAN_COUNT_MAX,
};

use super::*;

fn read_request(kind: u8, r: &mut Reader) -> Result<ClientRequest, DecodeError> {
    let client_id = r.u64()?;
    let seq = r.u64()?;
    let ack_seq = r.u64()?;
    let two_pc = match kind {
        KIND_TXN => Some(Op::Txn(Box::new(read_txn_body(r)?))),
        KIND_TXN_PREPARE => Some(Op::TxnPrepare(Box::new(read_txn_prepare(r)?))),
        KIND_TXN_DECIDE => Some(Op::TxnDecide(Box::new(read_txn_finish(r)?))),
        KIND_TXN_FINISH => Some(Op::TxnFinish(Box::new(read_txn_finish(r)?))),
        _ => None,
    };
    if let Some(op) = two_pc {
        return Ok(ClientRequest {
            client_id,
            seq,
            ack_seq,
            op,
        });
    }
    let key = r.byte_string()?;
    let op = match kind {
        KIND_PUT_IF => {
            let value = r.byte_string()?;
            let cond =
                PutCond::from_code(r.u8()?).ok_or(DecodeError::Invalid("PutIf condition"))?;
            let get_old = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Invalid("PutIf get_old flag")),
            };
            Op::PutIf {
                key,
                value,
                cond,
                get_old,
            }
        }
        KIND_GET_DEL => Op::GetDel { key },
        KIND_PUT_EX => {
            let value = r.byte_string()?;
            let cond =
                PutCond::from_code(r.u8()?).ok_or(DecodeError::Invalid("PutEx condition"))?;
            let get_old = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Invalid("PutEx get_old flag")),
            };
            let expiry = r.expiry()?;
            Op::PutEx {
                key,
                value,
                cond,
                get_old,
                expiry,
            }
        }
        KIND_EXPIRE => {
            let expiry = r.expiry()?;
            let cond =
                ExpireCond::from_code(r.u8()?).ok_or(DecodeError::Invalid("Expire condition"))?;
            if expiry == Expiry::Keep {
                return Err(DecodeError::Invalid("Expire with Keep"));
            }
            Op::Expire { key, expiry, cond }
        }
        KIND_TTL => Op::Ttl { key },
        KIND_COUNT => Op::Count { key },
        KIND_FLUSH => Op::Flush { key },
        KIND_SET_RANGE => Op::SetRange {
            key,
            offset: r.u64()?,
            value: r.byte_string()?,
        },
        KIND_INCR_BY_FLOAT => Op::IncrByFloat {
            key,
            delta: r.byte_string()?,
        },
        KIND_SCAN => {
            let after = r.optional("Scan after flag")?;
            let count = r.u32()?;
            if count == 0 || count > SCAN_COUNT_MAX {
                return Err(DecodeError::Invalid("Scan count"));
            }
            let pattern = r.optional("Scan pattern flag")?;
            Op::Scan {
                key,
                after,
                count,
                pattern,
            }
        }
        KIND_GET_EX => {
            let expiry = r.expiry()?;
            if expiry == Expiry::Keep {
                return Err(DecodeError::Invalid("GetEx with Keep"));
            }
            Op::GetEx { key, expiry }
        }
        _ => read_txn_op(kind, key, r, "not a client request kind")?,
    };
    Ok(ClientRequest {
        client_id,
        seq,
        ack_seq,
        op,
    })
}

/// Decodes the body of a frame of kind `kind`.
///
/// Keys, values, commands and snapshot data in the result are slices of
/// `body` (no copy). The whole body must be consumed.
pub fn decode_body(kind: u8, body: Bytes) -> Result<Message, DecodeError> {
    let mut r = Reader::new(&body);
    let msg = match kind {
        KIND_GET..=KIND_SCAN | KIND_COUNT..=KIND_TXN_FINISH => {
            Message::Request(read_request(kind, &mut r)?)
        }
        KIND_OK => Message::Reply(ClientReply::Ok(r.byte_string()?)),
        KIND_NO_KEY => Message::Reply(ClientReply::NoKey),
        KIND_WRONG_GROUP => Message::Reply(ClientReply::WrongGroup),
        KIND_NOT_LEADER => Message::Reply(ClientReply::NotLeader {
            leader: r.replica_hint()?,
        }),
        KIND_BUSY => Message::Reply(ClientReply::Busy),
        KIND_SESSION_EXPIRED => Message::Reply(ClientReply::SessionExpired),
        KIND_WRONG_CORE => Message::Reply(ClientReply::WrongCore),
        KIND_ERROR => Message::Reply(ClientReply::Error {
            reason: r.string()?,
        }),
        KIND_CONFIG => Message::Config(Config {
            num: r.u64()?,
            shards: r.gids()?,
            groups: r.groups()?,
        }),
        KIND_PREPARE => Message::Paxos(PaxosMsg::Prepare(Prepare {
            from: r.u32()?,
            ballot: r.ballot()?,
            from_slot: r.u64()?,
        })),
        KIND_PROMISE => Message::Paxos(PaxosMsg::Promise(Promise {
            from: r.u32()?,
            ballot: r.ballot()?,
            log_start: r.u64()?,
            chosen_upto: r.u64()?,
            entries: r.log_entries()?,
            more: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Invalid("Promise more flag is not 0 or 1")),
            },
        })),
        KIND_ACCEPT => Message::Paxos(PaxosMsg::Accept(Accept {
            from: r.u32()?,
            ballot: r.ballot()?,
            chosen_upto: r.u64()?,
            entries: r.proposals()?,
        })),
        KIND_ACCEPTED => Message::Paxos(PaxosMsg::Accepted(Accepted {
            from: r.u32()?,
            ballot: r.ballot()?,
            chosen_upto: r.u64()?,
            read_round: r.u64()?,
            slots: r.slots()?,
        })),
        KIND_REJECT => Message::Paxos(PaxosMsg::Reject(Reject {
            from: r.u32()?,
            promised: r.ballot()?,
        })),
        KIND_COMMIT => Message::Paxos(PaxosMsg::Commit(Commit {
            from: r.u32()?,
            ballot: r.ballot()?,
            chosen_upto: r.u64()?,
        })),
        KIND_HEARTBEAT => Message::Paxos(PaxosMsg::Heartbeat(Heartbeat {
            from: r.u32()?,
            ballot: r.ballot()?,
            chosen_upto: r.u64()?,
            read_round: r.u64()?,
        })),
        KIND_CATCHUP_REQUEST => Message::Paxos(PaxosMsg::CatchupRequest(CatchupRequest {
            from: r.u32()?,
            from_slot: r.u64()?,
        })),
        KIND_CATCHUP_RESPONSE => Message::Paxos(PaxosMsg::CatchupResponse(CatchupResponse {
            from: r.u32()?,
            chosen_upto: r.u64()?,
            entries: r.proposals()?,
        })),
        KIND_SNAPSHOT_REQUEST => Message::Paxos(PaxosMsg::SnapshotRequest(SnapshotRequest {
            from: r.u32()?,
            index: r.u64()?,
            offset: r.u64()?,
        })),
        KIND_SNAPSHOT_CHUNK => Message::Paxos(PaxosMsg::SnapshotChunk(SnapshotChunk {
            from: r.u32()?,
            index: r.u64()?,
            total_len: r.u64()?,
            offset: r.u64()?,
            data: r.byte_string()?,
        })),
        KIND_PRE_VOTE => Message::Paxos(PaxosMsg::PreVote(PreVote {
            from: r.u32()?,
            ballot: r.ballot()?,
            chosen_upto: r.u64()?,
        })),
        KIND_PRE_VOTE_REPLY => Message::Paxos(PaxosMsg::PreVoteReply(PreVoteReply {
            from: r.u32()?,
            ballot: r.ballot()?,
            granted: match r.u8()? {
                0 => false,
                1 => true,
                _ => {
                    return Err(DecodeError::Invalid(
                        "PreVoteReply granted flag is not 0 or 1",
                    ))
                }
            },
            promised: r.ballot()?,
        })),
        KIND_PB_VIEW => {
            let gid = r.u32()?;
            let view = r.view("PbView primary out of range or a backup")?;
            let acked = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Invalid("PbView acked flag is not 0 or 1")),
            };
            Message::PbView(PbViewReply { gid, view, acked })
        }
        KIND_PB_APPEND => Message::Pb(PbMsg::Append(PbAppend {
            view: r.view("PbAppend primary out of range or a backup")?,
            start: r.u64()?,
            prev_tag: r.u64()?,
            entries: r.pb_entries()?,
            commit: r.u64()?,
            read_round: r.u64()?,
        })),
        KIND_PB_ACK => Message::Pb(PbMsg::Ack(PbAck {
            view: r.u64()?,
            from: match r.u32()? {
                id if id < 64 => id,
                _ => return Err(DecodeError::Invalid("PbAck from is 64 or more")),
            },
            ok: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Invalid("PbAck ok flag is not 0 or 1")),
            },
            end: r.u64()?,
            read_round: r.u64()?,
            received: r.u64()?,
        })),
        KIND_PB_TRANSFER => {
            let view = r.view("PbTransfer primary out of range or a backup")?;
            let index = r.u64()?;
            let last_tag = r.u64()?;
            let total = r.u64()?;
            let offset = r.u64()?;
            if total > PB_TRANSFER_BYTES_MAX {
                return Err(DecodeError::Invalid("PbTransfer total above the limit"));
            }
            // A slice of the frame (nothing allocated), then checked to lie
            // within the declared total.
            let data = r.byte_string()?;
            if offset
                .checked_add(data.len() as u64)
                .is_none_or(|end| end > total)
            {
                return Err(DecodeError::Invalid("PbTransfer chunk runs past its total"));
            }
            Message::Pb(PbMsg::Transfer(PbTransfer {
                view,
                index,
                last_tag,
                total,
                offset,
                data,
            }))
        }
        KIND_MASTER_JOIN..=KIND_MASTER_PB_PING => {
            Message::Master(read_master_request(kind, &mut r)?)
        }
        KIND_SHARD_PULL => Message::ShardPull(ShardPull {
            config_num: r.u64()?,
            shard: r.u32()?,
            cursor: r.u64()?,
        }),
        KIND_SHARD_DELETE => Message::ShardDelete(ShardRef {
            config_num: r.u64()?,
            shard: r.u32()?,
        }),
        KIND_TXN_RESOLVE => Message::TxnResolve(read_txn_id(&mut r)?),
        KIND_SHARD_DATA => Message::ShardData(ShardData {
            config_num: r.u64()?,
            shard: r.u32()?,
            cursor: r.u64()?,
            done: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Invalid("ShardData done flag is not 0 or 1")),
            },
            data: r.byte_string()?,
        }),
        KIND_AUTH_HELLO => Message::Auth(AuthMsg::Hello(AuthHello {
            role: AuthRole::from_u8(r.u8()?)
                .ok_or(DecodeError::Invalid("AuthHello role is not 1-4"))?,
            gid: r.u32()?,
            replica: r.u32()?,
            nonce: r.array()?,
        })),
        KIND_AUTH_CHALLENGE => Message::Auth(AuthMsg::Challenge(AuthChallenge {
            nonce: r.array()?,
            mac: r.array()?,
        })),
        KIND_AUTH_PROOF => Message::Auth(AuthMsg::Proof(AuthProof { mac: r.array()? })),
        KIND_STATUS_REQUEST => Message::StatusRequest,
        KIND_STATUS => Message::Status(r.node_status()?),
        _ => return Err(DecodeError::UnknownKind(kind)),
    };
    r.finish()?;
    Ok(msg)
}

/// Decodes a command written by [`encode_command`], zero-copy: the key and
/// value are slices of `cmd`.
///
/// A command comes out of the replicated log, not straight off a socket, but
/// it was put there from network input, so it gets the same scrutiny.
pub fn decode_command(cmd: Bytes) -> Result<ClientRequest, DecodeError> {
    read_command(
        cmd,
        is_request_kind,
        "command is not a client request",
        read_request,
    )
}

/// A log command (`[kind u8][body]`): its kind must be one `ours` takes
/// (another known kind is [`DecodeError::Invalid`] with `not_ours`, so a
/// command that strayed into the wrong log is never misread), then `read`
/// must consume the body exactly.
pub(super) fn read_command<T>(
    cmd: Bytes,
    ours: impl Fn(u8) -> bool,
    not_ours: &'static str,
    read: impl FnOnce(u8, &mut Reader) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let Some(&kind) = cmd.first() else {
        return Err(DecodeError::Truncated);
    };
    if !ours(kind) {
        return Err(if is_known_kind(kind) {
            DecodeError::Invalid(not_ours)
        } else {
            DecodeError::UnknownKind(kind)
        });
    }
    let body = cmd.slice(1..);
    let mut r = Reader::new(&body);
    let value = read(kind, &mut r)?;
    r.finish()?;
    Ok(value)
}
