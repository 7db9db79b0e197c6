//! Kind codes: one byte per message kind in the header, and which
//! [`Message`] (or request [`Op`]) each stands for.

use crate::types::{AuthMsg, ClientReply, MasterOp, Message, Op, PaxosMsg, PbMsg};

/// Client request: read a key.
pub const KIND_GET: u8 = 0x01;
/// Client request: overwrite a key.
pub const KIND_PUT: u8 = 0x02;
/// Client request: append to a key's value.
pub const KIND_APPEND: u8 = 0x03;
/// Client request: remove a key.
pub const KIND_DELETE: u8 = 0x04;
/// Client request: add to a key's decimal integer value.
pub const KIND_INCR: u8 = 0x05;
/// Client request: write a key if a condition on it holds.
pub const KIND_PUT_IF: u8 = 0x06;
/// Client request: remove a key, answering its value.
pub const KIND_GET_DEL: u8 = 0x07;
/// Client request: a transaction (compares, then one of two lists of
/// operations, atomically).
pub const KIND_TXN: u8 = 0x08;
/// A PutIf that also sets the key's expiry (PROTOCOL.md 5.1).
pub const KIND_PUT_EX: u8 = 0x09;
/// Set or clear a key's expiry.
pub const KIND_EXPIRE: u8 = 0x0A;
/// A key's remaining time to live (a read).
pub const KIND_TTL: u8 = 0x0B;
/// Read a value and set or clear its expiry.
pub const KIND_GET_EX: u8 = 0x0C;
/// [`Op::SetRange`](crate::types::Op::SetRange).
pub const KIND_SET_RANGE: u8 = 0x0D;
/// [`Op::IncrByFloat`](crate::types::Op::IncrByFloat).
pub const KIND_INCR_BY_FLOAT: u8 = 0x0E;
/// [`Op::Scan`](crate::types::Op::Scan).
pub const KIND_SCAN: u8 = 0x0F;
/// [`Op::Count`](crate::types::Op::Count) (0x10-0x17 were taken by replies).
pub const KIND_COUNT: u8 = 0x18;
/// [`Op::Flush`](crate::types::Op::Flush).
pub const KIND_FLUSH: u8 = 0x19;
/// Two-phase commit: one group's part of a cross-group transaction.
pub const KIND_TXN_PREPARE: u8 = 0x1A;
/// Two-phase commit: the decision, to the coordinator group.
pub const KIND_TXN_DECIDE: u8 = 0x1B;
/// Two-phase commit: the outcome, to a participant group.
pub const KIND_TXN_FINISH: u8 = 0x1C;
/// Reply: the frame's group lives on another core of this node than the
/// one the connection is bound to (by its first frame); not executed.
pub const KIND_WRONG_CORE: u8 = 0x1D;
/// The view service's answer to a primary/backup ping: the group's view.
pub const KIND_PB_VIEW: u8 = 0x1E;
/// Reply: success (Get carries the value).
pub const KIND_OK: u8 = 0x10;
/// Reply: Get of an absent key.
pub const KIND_NO_KEY: u8 = 0x11;
/// Reply: the group does not serve the key's shard.
pub const KIND_WRONG_GROUP: u8 = 0x12;
/// Reply: not the leader, with an optional hint.
pub const KIND_NOT_LEADER: u8 = 0x13;
/// Reply: overloaded, back off.
pub const KIND_BUSY: u8 = 0x14;
/// Reply: any other failure, with a reason.
pub const KIND_ERROR: u8 = 0x15;
/// Reply of the shard master: a configuration.
pub const KIND_CONFIG: u8 = 0x16;
/// Reply: the client's at-most-once session in the shard is gone.
pub const KIND_SESSION_EXPIRED: u8 = 0x17;
/// Paxos phase 1a.
pub const KIND_PREPARE: u8 = 0x20;
/// Paxos phase 1b.
pub const KIND_PROMISE: u8 = 0x21;
/// Paxos phase 2a.
pub const KIND_ACCEPT: u8 = 0x22;
/// Paxos phase 2b.
pub const KIND_ACCEPTED: u8 = 0x23;
/// Paxos: refused, a higher ballot was promised.
pub const KIND_REJECT: u8 = 0x24;
/// Paxos: the commit point moved.
pub const KIND_COMMIT: u8 = 0x25;
/// Paxos: the leader is alive.
pub const KIND_HEARTBEAT: u8 = 0x26;
/// Paxos: a laggard asks for chosen values.
pub const KIND_CATCHUP_REQUEST: u8 = 0x27;
/// Paxos: chosen values for a laggard.
pub const KIND_CATCHUP_RESPONSE: u8 = 0x28;
/// Paxos: ask for a piece of a snapshot.
pub const KIND_SNAPSHOT_REQUEST: u8 = 0x29;
/// Paxos: a piece of a snapshot.
pub const KIND_SNAPSHOT_CHUNK: u8 = 0x2A;
/// Paxos: would you promise this ballot? (pre-vote, no state changes)
pub const KIND_PRE_VOTE: u8 = 0x2B;
/// Paxos: the answer to a pre-vote.
pub const KIND_PRE_VOTE_REPLY: u8 = 0x2C;
/// Primary/backup: the primary's log entries (or heartbeat) to a backup.
pub const KIND_PB_APPEND: u8 = 0x2D;
/// Primary/backup: a backup's answer to an Append or a Transfer.
pub const KIND_PB_ACK: u8 = 0x2E;
/// Primary/backup: the primary's state, to a backup behind its log.
pub const KIND_PB_TRANSFER: u8 = 0x2F;
/// Shard master request: add groups and rebalance.
pub const KIND_MASTER_JOIN: u8 = 0x30;
/// Shard master request: remove groups and rebalance.
pub const KIND_MASTER_LEAVE: u8 = 0x31;
/// Shard master request: assign one shard to one group.
pub const KIND_MASTER_MOVE: u8 = 0x32;
/// Shard master request: read a configuration.
pub const KIND_MASTER_QUERY: u8 = 0x33;
/// Shard master request: swap one member of a group for a new server.
pub const KIND_MASTER_REPLACE: u8 = 0x34;
/// Shard master request: add a member to a group.
pub const KIND_MASTER_ADD_MEMBER: u8 = 0x35;
/// Shard master request: remove a member from a group.
pub const KIND_MASTER_REMOVE_MEMBER: u8 = 0x36;
/// Shard master request: a primary/backup replica's liveness report.
pub const KIND_MASTER_PB_PING: u8 = 0x37;

/// Between KV groups: pull a shard from its previous owner.
pub const KIND_SHARD_PULL: u8 = 0x40;
/// Between KV groups: the new owner installed a shard; delete the old copy.
pub const KIND_SHARD_DELETE: u8 = 0x41;
/// Between KV groups: a shard's data, answering a pull.
pub const KIND_SHARD_DATA: u8 = 0x42;
/// Between KV groups: a participant asks a transaction's coordinator for
/// its outcome (presumed abort).
pub const KIND_TXN_RESOLVE: u8 = 0x43;

/// Authentication: the dialer's role, claimed identity and nonce.
pub const KIND_AUTH_HELLO: u8 = 0x50;
/// Authentication: the server's nonce and proof of the key.
pub const KIND_AUTH_CHALLENGE: u8 = 0x51;
/// Authentication: the dialer's proof of the key.
pub const KIND_AUTH_PROOF: u8 = 0x52;

/// Operator: a node's view of every group it hosts (empty body).
pub const KIND_STATUS_REQUEST: u8 = 0x60;
/// The answer to a status request.
pub const KIND_STATUS: u8 = 0x61;

/// Not a message: the sender's clocks for the frame after it, sent only
/// while tracing (`stamp.rs`; the decoder absorbs it).
pub const KIND_TRACE_STAMP: u8 = 0x70;

/// The `num` a Query carries on the wire to ask for the latest configuration
/// (`MasterOp::Query { num: None }`).
pub const LATEST_CONFIG: u64 = u64::MAX;

/// Every message kind code this version defines, in ascending order (the
/// trace stamp, [`KIND_TRACE_STAMP`], is a frame kind but not a message).
pub const ALL_KINDS: [u8; 63] = [
    KIND_GET,
    KIND_PUT,
    KIND_APPEND,
    KIND_DELETE,
    KIND_INCR,
    KIND_PUT_IF,
    KIND_GET_DEL,
    KIND_TXN,
    KIND_PUT_EX,
    KIND_EXPIRE,
    KIND_TTL,
    KIND_GET_EX,
    KIND_SET_RANGE,
    KIND_INCR_BY_FLOAT,
    KIND_SCAN,
    KIND_COUNT,
    KIND_FLUSH,
    KIND_TXN_PREPARE,
    KIND_TXN_DECIDE,
    KIND_TXN_FINISH,
    KIND_OK,
    KIND_NO_KEY,
    KIND_WRONG_GROUP,
    KIND_NOT_LEADER,
    KIND_BUSY,
    KIND_ERROR,
    KIND_CONFIG,
    KIND_SESSION_EXPIRED,
    KIND_WRONG_CORE,
    KIND_PB_VIEW,
    KIND_PREPARE,
    KIND_PROMISE,
    KIND_ACCEPT,
    KIND_ACCEPTED,
    KIND_REJECT,
    KIND_COMMIT,
    KIND_HEARTBEAT,
    KIND_CATCHUP_REQUEST,
    KIND_CATCHUP_RESPONSE,
    KIND_SNAPSHOT_REQUEST,
    KIND_SNAPSHOT_CHUNK,
    KIND_PRE_VOTE,
    KIND_PRE_VOTE_REPLY,
    KIND_PB_APPEND,
    KIND_PB_ACK,
    KIND_PB_TRANSFER,
    KIND_MASTER_JOIN,
    KIND_MASTER_LEAVE,
    KIND_MASTER_MOVE,
    KIND_MASTER_QUERY,
    KIND_MASTER_REPLACE,
    KIND_MASTER_ADD_MEMBER,
    KIND_MASTER_REMOVE_MEMBER,
    KIND_MASTER_PB_PING,
    KIND_SHARD_PULL,
    KIND_SHARD_DELETE,
    KIND_SHARD_DATA,
    KIND_TXN_RESOLVE,
    KIND_AUTH_HELLO,
    KIND_AUTH_CHALLENGE,
    KIND_AUTH_PROOF,
    KIND_STATUS_REQUEST,
    KIND_STATUS,
];

/// A kind's name for logs and traces (`MasterJoin`, `Accept`, `Ok`, ...);
/// `"?"` for a code this version does not define.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_GET => "Get",
        KIND_PUT => "Put",
        KIND_APPEND => "Append",
        KIND_DELETE => "Delete",
        KIND_INCR => "Incr",
        KIND_PUT_IF => "PutIf",
        KIND_GET_DEL => "GetDel",
        KIND_TXN => "Txn",
        KIND_PUT_EX => "PutEx",
        KIND_EXPIRE => "Expire",
        KIND_TTL => "Ttl",
        KIND_GET_EX => "GetEx",
        KIND_SET_RANGE => "SetRange",
        KIND_INCR_BY_FLOAT => "IncrByFloat",
        KIND_SCAN => "Scan",
        KIND_COUNT => "Count",
        KIND_FLUSH => "Flush",
        KIND_TXN_PREPARE => "TxnPrepare",
        KIND_TXN_DECIDE => "TxnDecide",
        KIND_TXN_FINISH => "TxnFinish",
        KIND_OK => "Ok",
        KIND_NO_KEY => "NoKey",
        KIND_WRONG_GROUP => "WrongGroup",
        KIND_NOT_LEADER => "NotLeader",
        KIND_BUSY => "Busy",
        KIND_ERROR => "Error",
        KIND_CONFIG => "Config",
        KIND_SESSION_EXPIRED => "SessionExpired",
        KIND_WRONG_CORE => "WrongCore",
        KIND_PREPARE => "Prepare",
        KIND_PROMISE => "Promise",
        KIND_ACCEPT => "Accept",
        KIND_ACCEPTED => "Accepted",
        KIND_REJECT => "Reject",
        KIND_COMMIT => "Commit",
        KIND_HEARTBEAT => "Heartbeat",
        KIND_CATCHUP_REQUEST => "CatchupRequest",
        KIND_CATCHUP_RESPONSE => "CatchupResponse",
        KIND_SNAPSHOT_REQUEST => "SnapshotRequest",
        KIND_SNAPSHOT_CHUNK => "SnapshotChunk",
        KIND_PRE_VOTE => "PreVote",
        KIND_PRE_VOTE_REPLY => "PreVoteReply",
        KIND_PB_APPEND => "PbAppend",
        KIND_PB_ACK => "PbAck",
        KIND_PB_TRANSFER => "PbTransfer",
        KIND_MASTER_JOIN => "MasterJoin",
        KIND_MASTER_LEAVE => "MasterLeave",
        KIND_MASTER_MOVE => "MasterMove",
        KIND_MASTER_QUERY => "MasterQuery",
        KIND_MASTER_REPLACE => "MasterReplace",
        KIND_MASTER_ADD_MEMBER => "MasterAddMember",
        KIND_MASTER_REMOVE_MEMBER => "MasterRemoveMember",
        KIND_MASTER_PB_PING => "MasterPbPing",
        KIND_PB_VIEW => "PbView",
        KIND_SHARD_PULL => "ShardPull",
        KIND_SHARD_DELETE => "ShardDelete",
        KIND_SHARD_DATA => "ShardData",
        KIND_TXN_RESOLVE => "TxnResolve",
        KIND_AUTH_HELLO => "AuthHello",
        KIND_AUTH_CHALLENGE => "AuthChallenge",
        KIND_AUTH_PROOF => "AuthProof",
        KIND_STATUS_REQUEST => "StatusRequest",
        KIND_STATUS => "Status",
        KIND_TRACE_STAMP => "TraceStamp",
        _ => "?",
    }
}

/// Whether `kind` is a client request's code (0x01-0x0F, 0x18-0x1C).
pub fn is_request_kind(kind: u8) -> bool {
    matches!(kind, KIND_GET..=KIND_SCAN | KIND_COUNT..=KIND_TXN_FINISH)
}

/// Whether `kind` is a code this version defines.
pub fn is_known_kind(kind: u8) -> bool {
    is_request_kind(kind)
        || matches!(
            kind,
            KIND_OK..=KIND_SESSION_EXPIRED
                | KIND_WRONG_CORE
                | KIND_PB_VIEW
                | KIND_PREPARE..=KIND_PB_TRANSFER
                | KIND_MASTER_JOIN..=KIND_MASTER_PB_PING
                | KIND_SHARD_PULL..=KIND_TXN_RESOLVE
                | KIND_AUTH_HELLO..=KIND_AUTH_PROOF
                | KIND_STATUS_REQUEST..=KIND_STATUS
                | KIND_TRACE_STAMP
        )
}

/// The kind code a message travels under. For a client request the
/// operation decides it, so the body needs no separate op tag.
pub fn kind_of(msg: &Message) -> u8 {
    match msg {
        Message::Request(req) => op_kind(&req.op),
        Message::Reply(reply) => match reply {
            ClientReply::Ok(_) => KIND_OK,
            ClientReply::NoKey => KIND_NO_KEY,
            ClientReply::WrongGroup => KIND_WRONG_GROUP,
            ClientReply::NotLeader { .. } => KIND_NOT_LEADER,
            ClientReply::Busy => KIND_BUSY,
            ClientReply::Error { .. } => KIND_ERROR,
            ClientReply::SessionExpired => KIND_SESSION_EXPIRED,
            ClientReply::WrongCore => KIND_WRONG_CORE,
        },
        Message::Paxos(p) => match p {
            PaxosMsg::Prepare(_) => KIND_PREPARE,
            PaxosMsg::Promise(_) => KIND_PROMISE,
            PaxosMsg::Accept(_) => KIND_ACCEPT,
            PaxosMsg::Accepted(_) => KIND_ACCEPTED,
            PaxosMsg::Reject(_) => KIND_REJECT,
            PaxosMsg::Commit(_) => KIND_COMMIT,
            PaxosMsg::Heartbeat(_) => KIND_HEARTBEAT,
            PaxosMsg::CatchupRequest(_) => KIND_CATCHUP_REQUEST,
            PaxosMsg::CatchupResponse(_) => KIND_CATCHUP_RESPONSE,
            PaxosMsg::SnapshotRequest(_) => KIND_SNAPSHOT_REQUEST,
            PaxosMsg::SnapshotChunk(_) => KIND_SNAPSHOT_CHUNK,
            PaxosMsg::PreVote(_) => KIND_PRE_VOTE,
            PaxosMsg::PreVoteReply(_) => KIND_PRE_VOTE_REPLY,
        },
        Message::Master(req) => master_op_kind(&req.op),
        Message::Config(_) => KIND_CONFIG,
        Message::PbView(_) => KIND_PB_VIEW,
        Message::Pb(PbMsg::Append(_)) => KIND_PB_APPEND,
        Message::Pb(PbMsg::Ack(_)) => KIND_PB_ACK,
        Message::Pb(PbMsg::Transfer(_)) => KIND_PB_TRANSFER,
        Message::ShardPull(_) => KIND_SHARD_PULL,
        Message::ShardDelete(_) => KIND_SHARD_DELETE,
        Message::ShardData(_) => KIND_SHARD_DATA,
        Message::TxnResolve(_) => KIND_TXN_RESOLVE,
        Message::Auth(AuthMsg::Hello(_)) => KIND_AUTH_HELLO,
        Message::Auth(AuthMsg::Challenge(_)) => KIND_AUTH_CHALLENGE,
        Message::Auth(AuthMsg::Proof(_)) => KIND_AUTH_PROOF,
        Message::StatusRequest => KIND_STATUS_REQUEST,
        Message::Status(_) => KIND_STATUS,
    }
}

pub(super) fn op_kind(op: &Op) -> u8 {
    match op {
        Op::Get { .. } => KIND_GET,
        Op::Put { .. } => KIND_PUT,
        Op::Append { .. } => KIND_APPEND,
        Op::Delete { .. } => KIND_DELETE,
        Op::Incr { .. } => KIND_INCR,
        Op::PutIf { .. } => KIND_PUT_IF,
        Op::GetDel { .. } => KIND_GET_DEL,
        Op::PutEx { .. } => KIND_PUT_EX,
        Op::Expire { .. } => KIND_EXPIRE,
        Op::Ttl { .. } => KIND_TTL,
        Op::GetEx { .. } => KIND_GET_EX,
        Op::SetRange { .. } => KIND_SET_RANGE,
        Op::IncrByFloat { .. } => KIND_INCR_BY_FLOAT,
        Op::Scan { .. } => KIND_SCAN,
        Op::Count { .. } => KIND_COUNT,
        Op::Flush { .. } => KIND_FLUSH,
        Op::Txn(_) => KIND_TXN,
        Op::TxnPrepare(_) => KIND_TXN_PREPARE,
        Op::TxnDecide(_) => KIND_TXN_DECIDE,
        Op::TxnFinish(_) => KIND_TXN_FINISH,
    }
}

/// Like [`op_kind`]: the operation decides the kind, so the body has no tag.
pub(super) fn master_op_kind(op: &MasterOp) -> u8 {
    match op {
        MasterOp::Join { .. } => KIND_MASTER_JOIN,
        MasterOp::Leave { .. } => KIND_MASTER_LEAVE,
        MasterOp::Move { .. } => KIND_MASTER_MOVE,
        MasterOp::Query { .. } => KIND_MASTER_QUERY,
        MasterOp::Replace { .. } => KIND_MASTER_REPLACE,
        MasterOp::AddMember { .. } => KIND_MASTER_ADD_MEMBER,
        MasterOp::RemoveMember { .. } => KIND_MASTER_REMOVE_MEMBER,
        MasterOp::PbPing { .. } => KIND_MASTER_PB_PING,
    }
}
