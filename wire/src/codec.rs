//! Frames and bodies as bytes.
//!
//! This module owns the byte layout of every [`Message`]: the fixed 32-byte
//! frame [`Header`], the body encoding of each message kind, the encoding of
//! a client (or shard master) request stored as a command inside a Paxos
//! [`Batch`], and the incremental [`Decoder`] that turns a connection's read
//! buffer into frames.
//! `PROTOCOL.md` beside this crate is the normative description of the same
//! bytes; the golden tests pin both together.
//!
//! What it must never do, because its input comes from the network:
//! - panic on any input (errors are [`DecodeError`] values);
//! - allocate more than the input can justify: every count and length is
//!   checked against the bytes actually present before anything is reserved,
//!   and a frame whose header declares a body over the limit is refused as
//!   soon as the header is complete;
//! - copy keys, values, commands or snapshot data: they are decoded as
//!   [`Bytes::slice`]-style views of the read buffer (the exceptions are
//!   strings, which the shared types hold as `String`: an `Error` reply's
//!   reason and the server addresses of the shard master's messages; they
//!   are small and rare, so the copy does not matter).
//!
//! Encoding trusts its caller: it panics only when a length does not fit the
//! format's `u32` (a caller bug, never network input).

use std::fmt;

use byteorder::{ByteOrder, LittleEndian};
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::types::{
    Accept, Accepted, AuthChallenge, AuthHello, AuthMsg, AuthProof, AuthRole, Ballot, Batch,
    CatchupRequest, CatchupResponse, ClientReply, ClientRequest, Commit, Compare, CompareOp,
    CompareTarget, Config, ExpireCond, Expiry, Frame, GroupId, GroupInfo, GroupStatus, Heartbeat,
    LogEntry, MasterOp, MasterRequest, Message, NodeStatus, Op, PaxosMsg, PreVote, PreVoteReply,
    Prepare, Promise, Proposal, PutCond, Reject, ReplicaId, ScanPage, ShardData, ShardPull,
    ShardRef, SnapshotChunk, SnapshotRequest, Txn, TxnOpResult, TxnResult, MAX_SCAN_COUNT,
    MAX_TXN_PARTS,
};

// ---------------------------------------------------------------------------
// Header layout
// ---------------------------------------------------------------------------

/// Every frame starts with a header of exactly this many bytes.
pub const HEADER_LEN: usize = 32;
/// `"SYND"` when the little-endian `u32` is written to the wire.
pub const MAGIC: u32 = 0x444E_5953;
/// The only protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Default limit on a frame's body length. Bounds the memory one connection
/// can make the decoder hold; large snapshots travel as many chunks.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 16 << 20;

/// Bytes of a frame kept for everything around one log command when it
/// travels alone in a message: the header, an Accept's, Promise's or
/// catch-up response's fields, the entry's slot, ballot and lengths, and a
/// reply's framing.
pub const COMMAND_OVERHEAD_BYTES: u32 = 64 << 10;

/// The largest log command (an encoded client request: ids, key and value)
/// a server takes, given its frame limit: any message carrying it alone
/// fits one frame. Requests above it are answered `Error` ("value too
/// large"). PROTOCOL.md section 5.1.
pub const fn max_command_bytes(max_frame_bytes: u32) -> usize {
    max_frame_bytes.saturating_sub(COMMAND_OVERHEAD_BYTES) as usize
}

/// The largest value a key may hold, so a `Get` answer always fits a
/// default frame: an `Append` that would grow a value past it is refused
/// (`Error`, value unchanged). Fixed, not configurable, because it decides
/// what replicas apply and they must all decide alike.
pub const MAX_VALUE_BYTES: usize = max_command_bytes(DEFAULT_MAX_FRAME_BYTES);

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_KIND: usize = 5;
const OFF_FLAGS: usize = 6;
const OFF_BODY_LEN: usize = 8;
const OFF_REQUEST_ID: usize = 12;
const OFF_GROUP: usize = 20;
const OFF_BODY_CRC: usize = 24;
const OFF_HEADER_CRC: usize = 28;

// The header is a fixed-size record: its fields tile it exactly and its size
// never changes without a version bump.
const _: () = assert!(HEADER_LEN == 32);
const _: () = assert!(OFF_VERSION == OFF_MAGIC + 4);
const _: () = assert!(OFF_KIND == OFF_VERSION + 1);
const _: () = assert!(OFF_FLAGS == OFF_KIND + 1);
const _: () = assert!(OFF_BODY_LEN == OFF_FLAGS + 2);
const _: () = assert!(OFF_REQUEST_ID == OFF_BODY_LEN + 4);
const _: () = assert!(OFF_GROUP == OFF_REQUEST_ID + 8);
const _: () = assert!(OFF_BODY_CRC == OFF_GROUP + 4);
const _: () = assert!(OFF_HEADER_CRC == OFF_BODY_CRC + 4);
const _: () = assert!(OFF_HEADER_CRC + 4 == HEADER_LEN);

// ---------------------------------------------------------------------------
// Kind codes
// ---------------------------------------------------------------------------

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
/// [`Op::SetRange`].
pub const KIND_SET_RANGE: u8 = 0x0D;
/// [`Op::IncrByFloat`].
pub const KIND_INCR_BY_FLOAT: u8 = 0x0E;
/// [`Op::Scan`].
pub const KIND_SCAN: u8 = 0x0F;
/// [`Op::Count`] (0x10-0x17 were taken by replies).
pub const KIND_COUNT: u8 = 0x18;
/// [`Op::Flush`].
pub const KIND_FLUSH: u8 = 0x19;
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
/// Shard master request: add groups and rebalance.
pub const KIND_MASTER_JOIN: u8 = 0x30;
/// Shard master request: remove groups and rebalance.
pub const KIND_MASTER_LEAVE: u8 = 0x31;
/// Shard master request: assign one shard to one group.
pub const KIND_MASTER_MOVE: u8 = 0x32;
/// Shard master request: read a configuration.
pub const KIND_MASTER_QUERY: u8 = 0x33;

/// Between KV groups: pull a shard from its previous owner.
pub const KIND_SHARD_PULL: u8 = 0x40;
/// Between KV groups: the new owner installed a shard; delete the old copy.
pub const KIND_SHARD_DELETE: u8 = 0x41;
/// Between KV groups: a shard's data, answering a pull.
pub const KIND_SHARD_DATA: u8 = 0x42;

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

/// The `num` a Query carries on the wire to ask for the latest configuration
/// (`MasterOp::Query { num: None }`).
pub const LATEST_CONFIG: u64 = u64::MAX;

/// Every kind code this version defines, in ascending order.
pub const ALL_KINDS: [u8; 50] = [
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
    KIND_OK,
    KIND_NO_KEY,
    KIND_WRONG_GROUP,
    KIND_NOT_LEADER,
    KIND_BUSY,
    KIND_ERROR,
    KIND_CONFIG,
    KIND_SESSION_EXPIRED,
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
    KIND_MASTER_JOIN,
    KIND_MASTER_LEAVE,
    KIND_MASTER_MOVE,
    KIND_MASTER_QUERY,
    KIND_SHARD_PULL,
    KIND_SHARD_DELETE,
    KIND_SHARD_DATA,
    KIND_AUTH_HELLO,
    KIND_AUTH_CHALLENGE,
    KIND_AUTH_PROOF,
    KIND_STATUS_REQUEST,
    KIND_STATUS,
];

/// Whether `kind` is a code this version defines.
pub fn is_known_kind(kind: u8) -> bool {
    matches!(
        kind,
        KIND_GET..=KIND_SCAN
            | KIND_COUNT..=KIND_FLUSH
            | KIND_OK..=KIND_SESSION_EXPIRED
            | KIND_PREPARE..=KIND_PRE_VOTE_REPLY
            | KIND_MASTER_JOIN..=KIND_MASTER_QUERY
            | KIND_SHARD_PULL..=KIND_SHARD_DATA
            | KIND_AUTH_HELLO..=KIND_AUTH_PROOF
            | KIND_STATUS_REQUEST..=KIND_STATUS
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
        Message::ShardPull(_) => KIND_SHARD_PULL,
        Message::ShardDelete(_) => KIND_SHARD_DELETE,
        Message::ShardData(_) => KIND_SHARD_DATA,
        Message::Auth(AuthMsg::Hello(_)) => KIND_AUTH_HELLO,
        Message::Auth(AuthMsg::Challenge(_)) => KIND_AUTH_CHALLENGE,
        Message::Auth(AuthMsg::Proof(_)) => KIND_AUTH_PROOF,
        Message::StatusRequest => KIND_STATUS_REQUEST,
        Message::Status(_) => KIND_STATUS,
    }
}

fn op_kind(op: &Op) -> u8 {
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
    }
}

/// Like [`op_kind`]: the operation decides the kind, so the body has no tag.
fn master_op_kind(op: &MasterOp) -> u8 {
    match op {
        MasterOp::Join { .. } => KIND_MASTER_JOIN,
        MasterOp::Leave { .. } => KIND_MASTER_LEAVE,
        MasterOp::Move { .. } => KIND_MASTER_MOVE,
        MasterOp::Query { .. } => KIND_MASTER_QUERY,
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why bytes could not be decoded. Every variant means the peer sent
/// something this version cannot read; for a connection's [`Decoder`] any of
/// them is terminal (the byte stream can no longer be trusted to be in
/// frame alignment), so the runtime logs it and closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The header's magic is not [`MAGIC`]: not a Synod peer.
    BadMagic(u32),
    /// The header's version is not [`VERSION`].
    BadVersion(u8),
    /// A kind code this version does not define.
    UnknownKind(u8),
    /// Header flags must be 0 in version 1; a set bit would change how the
    /// frame must be read, so it is refused rather than ignored.
    UnknownFlags(u16),
    /// The header CRC does not match: the header cannot be trusted at all.
    HeaderChecksum,
    /// The body CRC does not match.
    BodyChecksum,
    /// The header declares a body longer than the decoder's limit.
    FrameTooLarge { len: u32, max: u32 },
    /// The body ends before the fields it declares (a count or length larger
    /// than the bytes that remain).
    Truncated,
    /// The body has bytes left after its last field.
    TrailingBytes,
    /// A string field (an `Error` reply's reason, a server address) is not
    /// UTF-8.
    BadUtf8,
    /// Structurally readable but not acceptable; the text says why.
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadMagic(m) => write!(f, "bad magic {m:#010x}, expected {MAGIC:#010x}"),
            DecodeError::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            DecodeError::UnknownKind(k) => write!(f, "unknown message kind {k:#04x}"),
            DecodeError::UnknownFlags(fl) => write!(f, "unknown header flags {fl:#06x}"),
            DecodeError::HeaderChecksum => f.write_str("header checksum mismatch"),
            DecodeError::BodyChecksum => f.write_str("body checksum mismatch"),
            DecodeError::FrameTooLarge { len, max } => {
                write!(f, "frame body of {len} bytes exceeds the limit of {max}")
            }
            DecodeError::Truncated => f.write_str("body shorter than its fields declare"),
            DecodeError::TrailingBytes => f.write_str("trailing bytes after the body"),
            DecodeError::BadUtf8 => f.write_str("string field is not valid UTF-8"),
            DecodeError::Invalid(why) => write!(f, "invalid message: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------

/// A frame header's variable fields. Magic, version and the header CRC are
/// implied: [`Header::to_bytes`] writes them and [`Header::parse`] checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    /// Always 0 in version 1.
    pub flags: u16,
    pub body_len: u32,
    pub request_id: u64,
    pub group: u32,
    /// CRC32C of the body's `body_len` bytes.
    pub body_crc: u32,
}

impl Header {
    /// The 32 header bytes, header CRC included.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        LittleEndian::write_u32(&mut b[OFF_MAGIC..], MAGIC);
        b[OFF_VERSION] = VERSION;
        b[OFF_KIND] = self.kind;
        LittleEndian::write_u16(&mut b[OFF_FLAGS..], self.flags);
        LittleEndian::write_u32(&mut b[OFF_BODY_LEN..], self.body_len);
        LittleEndian::write_u64(&mut b[OFF_REQUEST_ID..], self.request_id);
        LittleEndian::write_u32(&mut b[OFF_GROUP..], self.group);
        LittleEndian::write_u32(&mut b[OFF_BODY_CRC..], self.body_crc);
        let crc = crc32c::crc32c(&b[..OFF_HEADER_CRC]);
        LittleEndian::write_u32(&mut b[OFF_HEADER_CRC..], crc);
        b
    }

    /// Parses and validates the first [`HEADER_LEN`] bytes of `bytes`.
    ///
    /// The header CRC is checked first: until it matches, no other field
    /// means anything (it could be random bytes or a misaligned stream).
    /// Then magic, version, kind and flags. The body length is *not* checked
    /// against a limit here; that is the [`Decoder`]'s policy.
    pub fn parse(bytes: &[u8]) -> Result<Header, DecodeError> {
        let Some(b) = bytes.get(..HEADER_LEN) else {
            return Err(DecodeError::Truncated);
        };
        let header_crc = LittleEndian::read_u32(&b[OFF_HEADER_CRC..]);
        if crc32c::crc32c(&b[..OFF_HEADER_CRC]) != header_crc {
            return Err(DecodeError::HeaderChecksum);
        }
        let magic = LittleEndian::read_u32(&b[OFF_MAGIC..]);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        if b[OFF_VERSION] != VERSION {
            return Err(DecodeError::BadVersion(b[OFF_VERSION]));
        }
        let kind = b[OFF_KIND];
        if !is_known_kind(kind) {
            return Err(DecodeError::UnknownKind(kind));
        }
        let flags = LittleEndian::read_u16(&b[OFF_FLAGS..]);
        if flags != 0 {
            return Err(DecodeError::UnknownFlags(flags));
        }
        Ok(Header {
            kind,
            flags,
            body_len: LittleEndian::read_u32(&b[OFF_BODY_LEN..]),
            request_id: LittleEndian::read_u64(&b[OFF_REQUEST_ID..]),
            group: LittleEndian::read_u32(&b[OFF_GROUP..]),
            body_crc: LittleEndian::read_u32(&b[OFF_BODY_CRC..]),
        })
    }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Appends `frame` (header then body) to `out`.
///
/// The body is encoded in place after a placeholder header, then the header
/// is filled in with the body's length and CRC, so no temporary buffer is
/// used. Frames are appended, so one write buffer can carry a whole loop
/// turn's frames for a peer.
///
/// This does not enforce the receiver's [`DEFAULT_MAX_FRAME_BYTES`]; senders
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
            | ClientReply::SessionExpired => {}
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
        Message::ShardPull(p) => {
            out.put_u64_le(p.config_num);
            out.put_u32_le(p.shard);
            out.put_u64_le(p.cursor);
        }
        Message::ShardDelete(r) => {
            out.put_u64_le(r.config_num);
            out.put_u32_le(r.shard);
        }
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

fn request_body_len(req: &ClientRequest) -> usize {
    if let Op::Txn(txn) = &req.op {
        return 8 + 8 + 8 + txn_body_len(txn);
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
        Op::Txn(_) => unreachable!("returned above"),
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
    }
}

const COMPARE_TARGET_VALUE: u8 = 0;
const COMPARE_TARGET_VERSION: u8 = 1;
const TXN_RESULT_OK: u8 = 0;
const TXN_RESULT_NO_KEY: u8 = 1;
const TXN_RESULT_ERROR: u8 = 2;
/// Smallest compare: empty key, op, target tag, empty value.
const MIN_COMPARE_LEN: usize = 4 + 1 + 1 + 4;
/// Smallest operation in a transaction: kind and empty key.
const MIN_TXN_OP_LEN: usize = 1 + 4;
/// Smallest operation result: the NoKey tag.
const MIN_TXN_OP_RESULT_LEN: usize = 1;

fn txn_body_len(txn: &Txn) -> usize {
    let compares: usize = txn
        .compares
        .iter()
        .map(|c| {
            4 + c.key.len()
                + 2
                + match &c.target {
                    CompareTarget::Value(v) => 4 + v.len(),
                    CompareTarget::Version(_) => 8,
                }
        })
        .sum();
    let ops: usize = txn.success.iter().chain(&txn.failure).map(txn_op_len).sum();
    4 + compares + 4 + 4 + ops
}

fn txn_op_len(op: &Op) -> usize {
    1 + 4
        + op.key().len()
        + match op {
            Op::Put { value, .. } | Op::Append { value, .. } => 4 + value.len(),
            Op::Incr { .. } => 8,
            Op::Get { .. } | Op::Delete { .. } => 0,
            other => panic!("{other:?} cannot be part of a transaction (Txn::invalid)"),
        }
}

/// `compares vec<compare>, success vec<txn_op>, failure vec<txn_op>`
/// (PROTOCOL.md 5.1). Panics on an operation a transaction may not hold
/// (a caller bug: [`Txn::invalid`] says so first).
fn put_txn_body(out: &mut BytesMut, txn: &Txn) {
    put_count(out, txn.compares.len());
    for c in &txn.compares {
        put_byte_string(out, &c.key);
        out.put_u8(c.op as u8);
        match &c.target {
            CompareTarget::Value(v) => {
                out.put_u8(COMPARE_TARGET_VALUE);
                put_byte_string(out, v);
            }
            CompareTarget::Version(v) => {
                out.put_u8(COMPARE_TARGET_VERSION);
                out.put_u64_le(*v);
            }
        }
    }
    for ops in [&txn.success, &txn.failure] {
        put_count(out, ops.len());
        for op in ops {
            out.put_u8(op_kind(op));
            put_byte_string(out, op.key());
            match op {
                Op::Put { value, .. } | Op::Append { value, .. } => put_byte_string(out, value),
                Op::Incr { delta, .. } => out.put_i64_le(*delta),
                Op::Get { .. } | Op::Delete { .. } => {}
                other => panic!("{other:?} cannot be part of a transaction (Txn::invalid)"),
            }
        }
    }
}

/// A transaction part count: proven to fit in the input (see
/// `Reader::count`) and refused above [`MAX_TXN_PARTS`] before anything is
/// reserved, so a lying count costs at most `MAX_TXN_PARTS` items.
fn txn_count(r: &mut Reader, min_item_len: usize) -> Result<usize, DecodeError> {
    let n = r.count(min_item_len)?;
    if n > MAX_TXN_PARTS {
        return Err(DecodeError::Invalid("transaction too large"));
    }
    Ok(n)
}

fn read_txn_body(r: &mut Reader) -> Result<Txn, DecodeError> {
    let n = txn_count(r, MIN_COMPARE_LEN)?;
    let mut compares = Vec::with_capacity(n);
    for _ in 0..n {
        let key = r.byte_string()?;
        let op = CompareOp::from_code(r.u8()?).ok_or(DecodeError::Invalid("compare op"))?;
        let target = match r.u8()? {
            COMPARE_TARGET_VALUE => CompareTarget::Value(r.byte_string()?),
            COMPARE_TARGET_VERSION => CompareTarget::Version(r.u64()?),
            _ => return Err(DecodeError::Invalid("compare target")),
        };
        compares.push(Compare { key, op, target });
    }
    let mut branches = [Vec::new(), Vec::new()];
    for ops in &mut branches {
        let n = txn_count(r, MIN_TXN_OP_LEN)?;
        ops.reserve(n);
        for _ in 0..n {
            let kind = r.u8()?;
            let key = r.byte_string()?;
            ops.push(match kind {
                KIND_GET => Op::Get { key },
                KIND_PUT => Op::Put {
                    key,
                    value: r.byte_string()?,
                },
                KIND_APPEND => Op::Append {
                    key,
                    value: r.byte_string()?,
                },
                KIND_DELETE => Op::Delete { key },
                KIND_INCR => Op::Incr {
                    key,
                    delta: r.u64()? as i64,
                },
                _ => return Err(DecodeError::Invalid("operation kind in a transaction")),
            });
        }
    }
    let [success, failure] = branches;
    if compares.len() + success.len() + failure.len() > MAX_TXN_PARTS {
        return Err(DecodeError::Invalid("transaction too large"));
    }
    Ok(Txn {
        compares,
        success,
        failure,
    })
}

/// The value of the `Ok` answering a transaction: `succeeded u8`, then
/// `vec<result>`, each `0 bytes value, u64 version` (Ok), `1` (NoKey) or
/// `2 string reason` (Error). PROTOCOL.md 5.1.
pub fn encode_txn_result(result: &TxnResult) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(u8::from(result.succeeded));
    put_count(&mut out, result.results.len());
    for r in &result.results {
        match r {
            TxnOpResult::Ok { value, version } => {
                out.put_u8(TXN_RESULT_OK);
                put_byte_string(&mut out, value);
                out.put_u64_le(*version);
            }
            TxnOpResult::NoKey => out.put_u8(TXN_RESULT_NO_KEY),
            TxnOpResult::Error { reason } => {
                out.put_u8(TXN_RESULT_ERROR);
                put_byte_string(&mut out, reason.as_bytes());
            }
        }
    }
    out.freeze()
}

/// Reads [`encode_txn_result`]'s bytes (an `Ok` value answering a
/// transaction). Never panics on bad input.
pub fn decode_txn_result(bytes: Bytes) -> Result<TxnResult, DecodeError> {
    let mut r = Reader { buf: bytes };
    let succeeded = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::Invalid("transaction succeeded flag")),
    };
    let n = r.count(MIN_TXN_OP_RESULT_LEN)?;
    let mut results = Vec::with_capacity(n);
    for _ in 0..n {
        results.push(match r.u8()? {
            TXN_RESULT_OK => TxnOpResult::Ok {
                value: r.byte_string()?,
                version: r.u64()?,
            },
            TXN_RESULT_NO_KEY => TxnOpResult::NoKey,
            TXN_RESULT_ERROR => TxnOpResult::Error {
                reason: r.string()?,
            },
            _ => return Err(DecodeError::Invalid("transaction result tag")),
        });
    }
    r.finish()?;
    Ok(TxnResult { succeeded, results })
}

/// The value of the `Ok` answering a scan: `done u8` (1: the shard has no
/// key after this page), `resume_after string` (empty when done), then
/// `vec<string>` keys. PROTOCOL.md 5.1.
pub fn encode_scan_page(page: &ScanPage) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(u8::from(page.resume_after.is_none()));
    put_byte_string(&mut out, page.resume_after.as_deref().unwrap_or_default());
    put_count(&mut out, page.keys.len());
    for k in &page.keys {
        put_byte_string(&mut out, k);
    }
    out.freeze()
}

/// Reads [`encode_scan_page`]'s bytes. Never panics on bad input.
pub fn decode_scan_page(bytes: Bytes) -> Result<ScanPage, DecodeError> {
    let mut r = Reader { buf: bytes };
    let done = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::Invalid("scan page done flag")),
    };
    let resume = r.byte_string()?;
    if done && !resume.is_empty() {
        return Err(DecodeError::Invalid("scan page done with a resume key"));
    }
    // Smallest key: its u32 length.
    let n = r.count(4)?;
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push(r.byte_string()?);
    }
    r.finish()?;
    Ok(ScanPage {
        keys,
        resume_after: (!done).then_some(resume),
    })
}

/// A shard master request as a self-describing command:
/// `[kind u8][master request body]`, the way [`encode_command`] stores a
/// client request. This is what the master group's leader puts into a Paxos
/// [`Batch`]; [`decode_master_command`] reads it back. Panics as
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

fn put_master_body(req: &MasterRequest, out: &mut BytesMut) {
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

fn put_groups(out: &mut BytesMut, groups: &[GroupInfo]) {
    put_count(out, groups.len());
    for g in groups {
        out.put_u32_le(g.gid);
        put_count(out, g.servers.len());
        for s in &g.servers {
            put_byte_string(out, s.as_bytes());
        }
    }
}

/// Writes a count or length prefix. A value over `u32::MAX` cannot be
/// expressed; silently truncating it would corrupt the stream, so it panics.
fn put_count(out: &mut BytesMut, n: usize) {
    let n = u32::try_from(n).expect("count or length over u32::MAX in a frame (caller bug)");
    out.put_u32_le(n);
}

fn put_byte_string(out: &mut BytesMut, b: &[u8]) {
    put_count(out, b.len());
    out.put_slice(b);
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

const NO_REPLICA: u32 = u32::MAX;

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

// ---------------------------------------------------------------------------
// Body decoding
// ---------------------------------------------------------------------------

/// Smallest encoding of one item of each vector, used to refuse a count the
/// remaining bytes cannot possibly hold before reserving any memory.
const MIN_COMMAND_LEN: usize = 4; // length prefix
const MIN_PROPOSAL_LEN: usize = 8 + 4; // slot + empty batch
const MIN_LOG_ENTRY_LEN: usize = 8 + 12 + 4; // slot + ballot + empty batch
const SLOT_LEN: usize = 8;
const GID_LEN: usize = 4;
const MIN_GROUP_INFO_LEN: usize = 4 + 4; // gid + empty server list
const MIN_STRING_LEN: usize = 4; // length prefix
/// gid, replica, empty members, leading, leader, ballot, four u64s, empty shards.
const MIN_GROUP_STATUS_LEN: usize = 4 + 4 + 4 + 1 + 4 + 12 + 4 * 8 + 4;

/// A cursor over a body. Every read checks the remaining length first and
/// returns [`DecodeError::Truncated`] instead of panicking; byte strings are
/// split off the underlying [`Bytes`] (a reference-count bump, no copy).
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated)
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        let v = self.buf[0];
        self.buf.advance(1);
        Ok(v)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        let v = LittleEndian::read_u32(&self.buf[..4]);
        self.buf.advance(4);
        Ok(v)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        let v = LittleEndian::read_u64(&self.buf[..8]);
        self.buf.advance(8);
        Ok(v)
    }

    /// Exactly `N` raw bytes (nonces, MACs).
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.need(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[..N]);
        self.buf.advance(N);
        Ok(a)
    }

    fn ballot(&mut self) -> Result<Ballot, DecodeError> {
        Ok(Ballot {
            round: self.u64()?,
            node: self.u32()?,
        })
    }

    fn byte_string(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        self.need(len)?;
        Ok(self.buf.split_to(len))
    }

    /// Reads a vector count and proves that many items of at least
    /// `min_item_len` bytes each fit in what remains, so the caller may
    /// `Vec::with_capacity(count)`: the reservation is then bounded by the
    /// input's size, never by a number the peer chose.
    fn count(&mut self, min_item_len: usize) -> Result<usize, DecodeError> {
        debug_assert!(min_item_len > 0);
        let n = self.u32()? as usize;
        if n > self.buf.len() / min_item_len {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    fn batch(&mut self) -> Result<Batch, DecodeError> {
        let n = self.count(MIN_COMMAND_LEN)?;
        let mut commands = Vec::with_capacity(n);
        for _ in 0..n {
            commands.push(self.byte_string()?);
        }
        Ok(Batch { commands })
    }

    fn proposals(&mut self) -> Result<Vec<Proposal>, DecodeError> {
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

    fn log_entries(&mut self) -> Result<Vec<LogEntry>, DecodeError> {
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

    fn slots(&mut self) -> Result<Vec<u64>, DecodeError> {
        let n = self.count(SLOT_LEN)?;
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            slots.push(self.u64()?);
        }
        Ok(slots)
    }

    /// A `string`: copied into a `String` after checking it is UTF-8.
    fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.byte_string()?;
        let s = std::str::from_utf8(&raw).map_err(|_| DecodeError::BadUtf8)?;
        Ok(s.to_owned())
    }

    fn gids(&mut self) -> Result<Vec<GroupId>, DecodeError> {
        let n = self.count(GID_LEN)?;
        let mut gids = Vec::with_capacity(n);
        for _ in 0..n {
            gids.push(self.u32()?);
        }
        Ok(gids)
    }

    fn groups(&mut self) -> Result<Vec<GroupInfo>, DecodeError> {
        let n = self.count(MIN_GROUP_INFO_LEN)?;
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            let gid = self.u32()?;
            let m = self.count(MIN_STRING_LEN)?;
            let mut servers = Vec::with_capacity(m);
            for _ in 0..m {
                servers.push(self.string()?);
            }
            groups.push(GroupInfo { gid, servers });
        }
        Ok(groups)
    }

    fn node_status(&mut self) -> Result<NodeStatus, DecodeError> {
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

    /// [`put_optional`]'s bytes: an absent value must carry an empty string.
    fn optional(&mut self, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        let present = self.u8()?;
        let b = self.byte_string()?;
        match present {
            0 if b.is_empty() => Ok(None),
            1 => Ok(Some(b)),
            _ => Err(DecodeError::Invalid(what)),
        }
    }

    fn expiry(&mut self) -> Result<Expiry, DecodeError> {
        let code = self.u8()?;
        let ms = self.u64()?;
        Expiry::from_code(code, ms).ok_or(DecodeError::Invalid("expiry"))
    }

    fn replica_hint(&mut self) -> Result<Option<ReplicaId>, DecodeError> {
        let v = self.u32()?;
        Ok((v != NO_REPLICA).then_some(v))
    }

    /// A body must be consumed exactly: leftover bytes mean the sender and
    /// receiver disagree about the layout, which must not pass silently.
    fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

fn read_request(kind: u8, r: &mut Reader) -> Result<ClientRequest, DecodeError> {
    let client_id = r.u64()?;
    let seq = r.u64()?;
    let ack_seq = r.u64()?;
    if kind == KIND_TXN {
        return Ok(ClientRequest {
            client_id,
            seq,
            ack_seq,
            op: Op::Txn(Box::new(read_txn_body(r)?)),
        });
    }
    let key = r.byte_string()?;
    let op = match kind {
        KIND_GET => Op::Get { key },
        KIND_PUT => Op::Put {
            key,
            value: r.byte_string()?,
        },
        KIND_APPEND => Op::Append {
            key,
            value: r.byte_string()?,
        },
        KIND_DELETE => Op::Delete { key },
        KIND_INCR => Op::Incr {
            key,
            delta: r.u64()? as i64,
        },
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
            if count == 0 || count > MAX_SCAN_COUNT {
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
        _ => return Err(DecodeError::Invalid("not a client request kind")),
    };
    Ok(ClientRequest {
        client_id,
        seq,
        ack_seq,
        op,
    })
}

fn read_master_request(kind: u8, r: &mut Reader) -> Result<MasterRequest, DecodeError> {
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

/// Decodes the body of a frame of kind `kind`.
///
/// Keys, values, commands and snapshot data in the result are slices of
/// `body` (no copy). The whole body must be consumed.
pub fn decode_body(kind: u8, body: Bytes) -> Result<Message, DecodeError> {
    let mut r = Reader { buf: body };
    let msg = match kind {
        KIND_GET..=KIND_SCAN | KIND_COUNT..=KIND_FLUSH => {
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
        KIND_MASTER_JOIN..=KIND_MASTER_QUERY => Message::Master(read_master_request(kind, &mut r)?),
        KIND_SHARD_PULL => Message::ShardPull(ShardPull {
            config_num: r.u64()?,
            shard: r.u32()?,
            cursor: r.u64()?,
        }),
        KIND_SHARD_DELETE => Message::ShardDelete(ShardRef {
            config_num: r.u64()?,
            shard: r.u32()?,
        }),
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
    let Some(&kind) = cmd.first() else {
        return Err(DecodeError::Truncated);
    };
    match kind {
        KIND_GET..=KIND_SCAN | KIND_COUNT..=KIND_FLUSH => {}
        k if is_known_kind(k) => {
            return Err(DecodeError::Invalid("command is not a client request"))
        }
        k => return Err(DecodeError::UnknownKind(k)),
    }
    let mut r = Reader {
        buf: cmd.slice(1..),
    };
    let req = read_request(kind, &mut r)?;
    r.finish()?;
    Ok(req)
}

/// Decodes a command written by [`encode_master_command`]: how the master
/// group reads its Paxos log. Same scrutiny as [`decode_command`]; a KV
/// request's kind is refused as [`DecodeError::Invalid`], so a command that
/// strayed into the wrong group's log is never misread.
pub fn decode_master_command(cmd: Bytes) -> Result<MasterRequest, DecodeError> {
    let Some(&kind) = cmd.first() else {
        return Err(DecodeError::Truncated);
    };
    match kind {
        KIND_MASTER_JOIN..=KIND_MASTER_QUERY => {}
        k if is_known_kind(k) => {
            return Err(DecodeError::Invalid("command is not a master request"))
        }
        k => return Err(DecodeError::UnknownKind(k)),
    }
    let mut r = Reader {
        buf: cmd.slice(1..),
    };
    let req = read_master_request(kind, &mut r)?;
    r.finish()?;
    Ok(req)
}

// ---------------------------------------------------------------------------
// Incremental decoder
// ---------------------------------------------------------------------------

/// Turns one connection's read buffer into frames, one at a time.
///
/// The runtime appends whatever the socket delivered to a `BytesMut` and
/// calls [`Decoder::decode`] until it returns `Ok(None)`. A frame's body is
/// split off the buffer and frozen, so keys and values in the decoded
/// message point into the bytes that were read: no copy.
///
/// Limits: a header that declares a body over `max_frame_bytes` is refused as
/// soon as its 32 bytes are present, before any body byte is waited for or
/// any memory reserved for it. The decoder itself never grows `buf`.
///
/// Errors are terminal: after the first error the stream's framing cannot be
/// trusted, so every later call returns the same error without looking at
/// `buf`. The runtime should close the connection (and may log the error).
#[derive(Debug)]
pub struct Decoder {
    max_frame_bytes: u32,
    /// The validated header of the frame at the front of the buffer, kept so
    /// a frame whose body arrives in many reads is parsed and checked once.
    pending: Option<Header>,
    failed: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl Decoder {
    /// A decoder refusing bodies longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: u32) -> Decoder {
        Decoder {
            max_frame_bytes,
            pending: None,
            failed: None,
        }
    }

    /// The body-length limit this decoder enforces.
    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// The error that ended this decoder, if any.
    pub fn error(&self) -> Option<&DecodeError> {
        self.failed.as_ref()
    }

    /// How long `buf` must be before the next [`decode`](Self::decode) can
    /// make progress: [`HEADER_LEN`] while no header has been validated, then
    /// the whole frame's length. Lets the runtime reserve exactly once per
    /// frame; never more than `HEADER_LEN + max_frame_bytes`.
    pub fn bytes_wanted(&self) -> usize {
        match &self.pending {
            Some(h) => frame_len(h),
            None => HEADER_LEN,
        }
    }

    /// Removes one whole frame from the front of `buf` and decodes it.
    ///
    /// `Ok(None)`: more bytes are needed (nothing was consumed). Call again
    /// after each `Ok(Some(_))` to drain every frame a read delivered. The
    /// same `buf` must be passed on every call, since a validated header is
    /// remembered between calls.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        Ok(self.decode_raw(buf)?.map(|(frame, _)| frame))
    }

    /// [`decode`](Self::decode), plus the frame's kind byte and body as
    /// they arrived, `[kind u8][body]`, as one slice of `buf` (no copy: the
    /// spent header's last byte is overwritten with the kind). For a client
    /// request that is its log command, byte for byte what
    /// [`encode_command`] (or [`encode_master_command`] for a master
    /// request) makes of the decoded request, since decoding is canonical
    /// (`tests/robustness.rs`), so a server proposes it without encoding
    /// the request again.
    pub fn decode_raw(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<(Frame, Bytes)>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode_inner(buf);
        if let Err(e) = &result {
            self.pending = None;
            self.failed = Some(e.clone());
        }
        result
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<(Frame, Bytes)>, DecodeError> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                if buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                let h = Header::parse(&buf[..])?;
                if h.body_len > self.max_frame_bytes {
                    return Err(DecodeError::FrameTooLarge {
                        len: h.body_len,
                        max: self.max_frame_bytes,
                    });
                }
                h
            }
        };
        let frame_len = frame_len(&header);
        if buf.len() < frame_len {
            self.pending = Some(header);
            return Ok(None);
        }
        self.pending = None;
        // Check before splitting, so a corrupt body costs no buffer surgery.
        if crc32c::crc32c(&buf[HEADER_LEN..frame_len]) != header.body_crc {
            return Err(DecodeError::BodyChecksum);
        }
        let mut whole = buf.split_to(frame_len);
        // The header is checked and spent: its last byte becomes the kind,
        // so the kind and the body are one contiguous slice.
        whole[HEADER_LEN - 1] = header.kind;
        let raw = whole.freeze().slice(HEADER_LEN - 1..);
        let message = decode_body(header.kind, raw.slice(1..))?;
        let frame = Frame {
            request_id: header.request_id,
            group: header.group,
            message,
        };
        Ok(Some((frame, raw)))
    }
}

/// Header plus body length. Saturates instead of overflowing where `usize`
/// is 32 bits; such a frame can never be buffered, let alone pass the limit.
fn frame_len(h: &Header) -> usize {
    HEADER_LEN.saturating_add(h.body_len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard CRC-32C (Castagnoli) check value, quoted in PROTOCOL.md.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn magic_is_synd_on_the_wire() {
        let h = Header {
            kind: KIND_BUSY,
            flags: 0,
            body_len: 0,
            request_id: 0,
            group: 0,
            body_crc: 0,
        };
        assert_eq!(&h.to_bytes()[..4], b"SYND");
    }

    #[test]
    fn all_kinds_are_known_and_nothing_else_is() {
        for k in 0..=u8::MAX {
            assert_eq!(is_known_kind(k), ALL_KINDS.contains(&k), "kind {k:#04x}");
        }
    }

    #[test]
    fn nonzero_flags_are_refused() {
        let mut h = Header {
            kind: KIND_BUSY,
            flags: 0,
            body_len: 0,
            request_id: 0,
            group: 0,
            body_crc: crc32c::crc32c(b""),
        };
        h.flags = 1;
        assert_eq!(
            Header::parse(&h.to_bytes()),
            Err(DecodeError::UnknownFlags(1))
        );
    }

    #[test]
    fn a_request_arrives_as_its_command() {
        let req = ClientRequest {
            client_id: 7,
            seq: 3,
            ack_seq: 2,
            op: Op::Put {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"value"),
            },
        };
        let mut buf = BytesMut::new();
        let frame = Frame {
            request_id: 9,
            group: 1,
            message: Message::Request(req.clone()),
        };
        encode_frame(&frame, &mut buf);
        let (got, raw) = Decoder::default().decode_raw(&mut buf).unwrap().unwrap();
        assert_eq!(got, frame);
        assert_eq!(raw, encode_command(&req));
        assert!(buf.is_empty());
    }

    #[test]
    fn decoder_error_is_sticky() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&[0u8; HEADER_LEN][..]);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::HeaderChecksum));
        let mut good = BytesMut::new();
        encode_frame(
            &Frame {
                request_id: 1,
                group: 0,
                message: Message::Reply(ClientReply::Busy),
            },
            &mut good,
        );
        assert_eq!(d.decode(&mut good), Err(DecodeError::HeaderChecksum));
        assert_eq!(d.error(), Some(&DecodeError::HeaderChecksum));
    }
}
