//! The messages Synod speaks, as plain Rust values.
//!
//! This module owns the *shape* of every message; `codec` owns their bytes.
//! Nothing here does I/O or allocation beyond holding its fields. The Paxos
//! core and the KV state machine use these types directly, so a decoded frame
//! reaches the protocol without a second translation.

use bytes::Bytes;

/// Index of a replica in its group's member list (0-based).
pub type ReplicaId = u32;
/// Replica group id. Group 0 is the shard master group.
pub type GroupId = u32;
/// Paxos log position, 0-based.
pub type Slot = u64;
/// Client identity, chosen at random by the client (64 random bits).
pub type ClientId = u64;
/// Per-client request sequence number, starting at 1.
pub type Seq = u64;

/// A Paxos ballot: ordered by `round`, ties broken by `node`.
///
/// Field order matters: the derived `Ord` compares `round` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    pub round: u64,
    pub node: ReplicaId,
}

impl Ballot {
    /// The ballot every acceptor starts having promised; no leader uses it.
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };
    /// Marks a log entry whose value is known to be chosen (learned, not
    /// merely accepted). It compares above every real ballot, so a new
    /// leader that sees it in a Promise always re-proposes that value.
    pub const CHOSEN: Ballot = Ballot {
        round: u64::MAX,
        node: u32::MAX,
    };

    pub fn new(round: u64, node: ReplicaId) -> Ballot {
        Ballot { round, node }
    }
}

/// The value of one log slot: a batch of encoded commands, applied in order.
/// An empty batch is a no-op (used by a new leader to fill holes).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Batch {
    pub commands: Vec<Bytes>,
}

impl Batch {
    pub fn noop() -> Batch {
        Batch::default()
    }
    /// Bytes the batch's commands occupy (without framing overhead).
    pub fn payload_bytes(&self) -> usize {
        self.commands.iter().map(|c| c.len()).sum()
    }
}

/// A value proposed for a slot (the ballot is the enclosing message's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub slot: Slot,
    pub batch: Batch,
}

/// An acceptor's accepted value for a slot, as reported in a Promise.
/// `ballot == Ballot::CHOSEN` means the acceptor knows the value is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub slot: Slot,
    pub ballot: Ballot,
    pub batch: Batch,
}

/// A key/value operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Get {
        key: Bytes,
    },
    Put {
        key: Bytes,
        value: Bytes,
    },
    Append {
        key: Bytes,
        value: Bytes,
    },
    /// Removes the key. A write (deduplicated like Put), answered with
    /// `Ok("1")` if the key had a value and `Ok("0")` if it had none: the
    /// decimal count of keys removed, which is what Redis' DEL returns and
    /// costs nothing to compute at apply time.
    Delete {
        key: Bytes,
    },
    /// Adds `delta` to the key's value read as a decimal `i64` (an absent
    /// key reads as 0), as one write. Answered `Ok(new value in decimal)`,
    /// or `Error` ("value is not an integer or out of range" /
    /// "increment or decrement would overflow") without changing anything.
    Incr {
        key: Bytes,
        delta: i64,
    },
    /// Writes `value` if `cond` holds for the key's current value, as one
    /// write. Answered `Ok` with a decimal digit `1` (written) or `0`
    /// (not), then, only if `get_old`, `1` and the previous value, or `0`
    /// when the key had none.
    PutIf {
        key: Bytes,
        value: Bytes,
        cond: PutCond,
        get_old: bool,
    },
    /// Removes the key and answers its previous value, as one write:
    /// `Ok` with `1` then the value, or `Ok("0")` if it had none (not
    /// `NoKey`, which answers only Gets).
    GetDel {
        key: Bytes,
    },
    /// A PutIf that also sets the key's expiry (wire kind 0x09; Redis' SET
    /// with EX/PX/EXAT/PXAT/KEEPTTL, SETEX, PSETEX). Answered like
    /// [`Op::PutIf`]. `expiry` is what the key's expiry becomes when the
    /// value is written: [`Expiry::Keep`] keeps the current one (KEEPTTL),
    /// [`Expiry::Persist`] clears it (what a plain PutIf does).
    PutEx {
        key: Bytes,
        value: Bytes,
        cond: PutCond,
        get_old: bool,
        expiry: Expiry,
    },
    /// Sets or clears the expiry of an existing key (wire kind 0x0A;
    /// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST). `expiry` is never
    /// `Keep`. Answered `Ok("1")` if the expiry changed (for `Persist`: the
    /// key had one and lost it; a time already past deletes the key and
    /// counts as changed), `Ok("0")` if the key is absent or `cond` does
    /// not hold.
    Expire {
        key: Bytes,
        expiry: Expiry,
        cond: ExpireCond,
    },
    /// The key's remaining time to live, read only (wire kind 0x0B; TTL,
    /// PTTL): `Ok` with the decimal milliseconds left (log time), `Ok("-1")`
    /// for a key without expiry, `NoKey` for an absent (or expired) key.
    Ttl {
        key: Bytes,
    },
    /// Reads the value and sets or clears its expiry, as one write (wire
    /// kind 0x0C; GETEX with EX/PX/EXAT/PXAT/PERSIST). `expiry` is never
    /// `Keep`. Answered like [`Op::GetDel`]: `Ok` with `1` then the value,
    /// or `Ok("0")` without one.
    GetEx {
        key: Bytes,
        expiry: Expiry,
    },
    /// Overwrites part of the value at byte `offset` with `value`, padding
    /// with zero bytes (wire kind 0x0D; Redis' SETRANGE). An empty `value`
    /// changes nothing and creates no key. Answered `Ok` with the value's
    /// length after the write, in decimal; `Error("value too large")` if
    /// `offset + value.len()` exceeds the value limit. Keeps the expiry.
    SetRange {
        key: Bytes,
        offset: u64,
        value: Bytes,
    },
    /// Adds the decimal float `delta` (the text the client sent) to the
    /// key's value read as a float (absent: 0), as one write (wire kind
    /// 0x0E; Redis' INCRBYFLOAT). The result is stored and answered as
    /// decimal text without exponent ([`format_float`]). `Error` ("value is
    /// not a valid float" / "increment would produce NaN or Infinity")
    /// changes nothing. Keeps the expiry.
    IncrByFloat {
        key: Bytes,
        delta: Bytes,
    },
    /// One page of the keys of the shard `key` belongs to (wire kind 0x0F;
    /// a read, served through read-index like a Get). `key` names the shard
    /// only: any key of it will do, so the request routes, and is refused
    /// with `WrongGroup`, exactly like a single-key request. Keys come in
    /// bytewise order, starting after `after` (`None`: from the first),
    /// at most `count` of them matching `pattern` (Redis glob; `None`: all),
    /// examining at most [`scan_examine_limit`]`(count)` keys and stopping
    /// once the keys returned reach [`SCAN_PAGE_BYTES_MAX`]. Answered `Ok`
    /// with an encoded [`ScanPage`]. Expired keys are never returned.
    Scan {
        key: Bytes,
        after: Option<Bytes>,
        count: u32,
        pattern: Option<Bytes>,
    },
    /// The number of live keys of the shard `key` belongs to (wire kind
    /// 0x18; a read). Answered `Ok` with the count in decimal.
    Count {
        key: Bytes,
    },
    /// Removes every key of the shard `key` belongs to, as one write (wire
    /// kind 0x19; Redis' FLUSHDB, one per shard). Sessions stay. Answered
    /// `Ok` with the number of keys removed, in decimal.
    Flush {
        key: Bytes,
    },
    /// A transaction (wire kind 0x08, PROTOCOL.md 5.1): if every compare
    /// holds, run `success`, else `failure`, atomically. Answered `Ok` with
    /// an encoded [`TxnResult`] ([`encode_txn_result`]). Boxed: a request
    /// is mostly single-key, and the enum stays small.
    Txn(Box<Txn>),
    /// Two-phase commit, phase one (wire kind 0x1A, PROTOCOL.md 5.2): one
    /// group's part of a cross-group transaction. The group locks the
    /// part's keys, evaluates its compares and both branches' operations,
    /// and votes. Answered `Ok` with an encoded [`TxnVote`]
    /// ([`encode_txn_vote`]), or `WrongGroup` if the group does not serve
    /// every shard of the part. Routed by the part's first key.
    TxnPrepare(Box<TxnPrepare>),
    /// Two-phase commit, the decision (wire kind 0x1B): sent to the
    /// coordinator group (the group of the transaction's first key), whose
    /// log entry makes the outcome durable and finishes the coordinator's
    /// own part. Answered `Ok` with one byte: the outcome that stands
    /// ([`TxnOutcome`] code), or `0xFF` if this group held no prepared part
    /// of the transaction (nothing was applied).
    TxnDecide(Box<TxnFinish>),
    /// Two-phase commit, phase two (wire kind 0x1C): a participant applies
    /// the outcome to its prepared part and releases its locks. Answered
    /// like [`Op::TxnDecide`].
    TxnFinish(Box<TxnFinish>),
}

/// A cross-group transaction's identity: the client session's id and the
/// seq it gave the attempt. A retried attempt (after a lock conflict or a
/// `WrongGroup`) gets a new seq, so a new identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxnId {
    pub client: ClientId,
    pub seq: Seq,
}

/// The body of [`Op::TxnPrepare`]: the transaction's identity and the part
/// of it whose keys the receiving group serves (its compares, and its
/// operations of both branches, in the transaction's order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnPrepare {
    pub txn: TxnId,
    pub part: Txn,
    /// The coordinator group (the group of the transaction's first key),
    /// which a participant asks for the outcome if the client goes quiet
    /// (`TxnResolve`). 0 (never a KV group): unknown, as in prepares
    /// logged before recovery existed; such a part waits for its client.
    pub coordinator: GroupId,
}

/// The body of [`Op::TxnDecide`] and [`Op::TxnFinish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnFinish {
    pub txn: TxnId,
    /// A key of the part, which routes the request to its group.
    pub key: Bytes,
    pub outcome: TxnOutcome,
}

/// How a cross-group transaction ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Nothing applies anywhere (a No vote, a `WrongGroup`, or a client
    /// that gave up); locks are released.
    Abort = 0,
    /// Every compare held in every group: the `success` operations apply.
    Success = 1,
    /// Some compare failed: the `failure` operations apply.
    Failure = 2,
}

impl TxnOutcome {
    pub fn from_code(code: u8) -> Option<TxnOutcome> {
        match code {
            0 => Some(TxnOutcome::Abort),
            1 => Some(TxnOutcome::Success),
            2 => Some(TxnOutcome::Failure),
            _ => None,
        }
    }
}

/// The answer of a `Decide` or `Finish` whose group held no prepared part
/// of the transaction (it never prepared there, or finished already).
pub const TXN_NOT_HELD: u8 = 0xFF;

/// A group's vote on a [`TxnPrepare`], carried as the value of an `Ok`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TxnVote {
    /// Yes: the part's keys are locked until the outcome arrives. No: a
    /// key was locked by another transaction; nothing was locked.
    pub yes: bool,
    /// Whether every compare of the part held (meaningful with `yes`).
    pub holds: bool,
    /// The results of the part's `success` operations, as they will be if
    /// that branch applies (empty with No).
    pub success: Vec<TxnOpResult>,
    /// Likewise for the `failure` operations.
    pub failure: Vec<TxnOpResult>,
}

/// The body of [`Op::Txn`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Txn {
    pub compares: Vec<Compare>,
    /// Run, in order, when every compare holds (also when there are none).
    pub success: Vec<Op>,
    /// Run, in order, when some compare does not hold.
    pub failure: Vec<Op>,
}

/// Operations a transaction may hold, at most this many compares plus
/// operations in all: a bound on one log entry's work.
pub const TXN_PARTS_MAX: usize = 1024;

impl Txn {
    /// Every key the transaction touches (compares first, then the
    /// operations of both branches), in order, with repeats.
    pub fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.compares
            .iter()
            .map(|c| &c.key)
            .chain(self.success.iter().map(Op::key))
            .chain(self.failure.iter().map(Op::key))
    }

    /// Why this transaction cannot run, if it cannot: empty, too large,
    /// or holding an operation a transaction does not take (only Get, Put,
    /// Append, Delete and Incr).
    pub fn invalid(&self) -> Option<&'static str> {
        let parts = self.compares.len() + self.success.len() + self.failure.len();
        if parts == 0 {
            return Some("empty transaction");
        }
        if parts > TXN_PARTS_MAX {
            return Some("transaction has too many compares and operations");
        }
        let allowed = |op: &Op| {
            matches!(
                op,
                Op::Get { .. }
                    | Op::Put { .. }
                    | Op::Append { .. }
                    | Op::Delete { .. }
                    | Op::Incr { .. }
            )
        };
        if !self.success.iter().chain(&self.failure).all(allowed) {
            return Some("a transaction holds only Get, Put, Append, Delete and Incr");
        }
        None
    }
}

/// One condition of a transaction, on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Bytes,
    pub op: CompareOp,
    pub target: CompareTarget,
}

/// How a [`Compare`] relates the key's current value or version to its
/// target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq = 0,
    Ne = 1,
    Lt = 2,
    Gt = 3,
}

impl CompareOp {
    pub fn from_code(code: u8) -> Option<CompareOp> {
        match code {
            0 => Some(CompareOp::Eq),
            1 => Some(CompareOp::Ne),
            2 => Some(CompareOp::Lt),
            3 => Some(CompareOp::Gt),
            _ => None,
        }
    }

    /// Does `ordering` (current compared with target) satisfy this op?
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CompareOp::Eq => ordering == Equal,
            CompareOp::Ne => ordering != Equal,
            CompareOp::Lt => ordering == Less,
            CompareOp::Gt => ordering == Greater,
        }
    }
}

/// What a [`Compare`] looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's value, bytewise. A key without a value fails every value
    /// compare (test existence with a version compare).
    Value(Bytes),
    /// The key's version: the store's revision at its last write; 0 when
    /// the key has no value (so `Version Eq 0` is "absent", `Gt 0`
    /// "present").
    Version(u64),
}

/// The answer to a transaction, carried as the value of an `Ok` reply.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TxnResult {
    /// Whether every compare held (so `success` ran).
    pub succeeded: bool,
    /// One per operation of the branch that ran, in order.
    pub results: Vec<TxnOpResult>,
}

/// The result of one operation inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResult {
    /// As the single operation's `Ok`, with the key's version after the
    /// operation (0 if it has no value).
    Ok { value: Bytes, version: u64 },
    /// A Get of a key without a value.
    NoKey,
    /// The operation was refused (as the single operation would be); the
    /// others still ran.
    Error { reason: String },
}

/// When a [`Op::PutIf`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutCond {
    /// Always (a Put that may also return the old value).
    Any = 0,
    /// Only if the key has a value.
    Exists = 1,
    /// Only if the key has no value.
    NotExists = 2,
}

impl PutCond {
    /// The condition of wire code `code`, if it is one.
    pub fn from_code(code: u8) -> Option<PutCond> {
        match code {
            0 => Some(PutCond::Any),
            1 => Some(PutCond::Exists),
            2 => Some(PutCond::NotExists),
            _ => None,
        }
    }
}

/// What a key's expiry becomes (PROTOCOL.md 5.1: a code byte, then a u64
/// of milliseconds, 0 unless `In` or `At`). Times are log time (the
/// leader's clock stamped into the log, never a replica's own clock), so
/// every replica decides alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Unchanged (Redis' KEEPTTL); only a [`Op::PutEx`] takes it.
    Keep,
    /// This many milliseconds after the log time at which the write applies.
    In(u64),
    /// At this absolute log time (Unix milliseconds).
    At(u64),
    /// No expiry.
    Persist,
}

impl Expiry {
    /// The wire code (0 Keep, 1 In, 2 At, 3 Persist) and milliseconds.
    pub fn to_code(self) -> (u8, u64) {
        match self {
            Expiry::Keep => (0, 0),
            Expiry::In(ms) => (1, ms),
            Expiry::At(ms) => (2, ms),
            Expiry::Persist => (3, 0),
        }
    }

    /// The expiry of wire code `code` with `ms`, if it is one; Keep and
    /// Persist must carry 0.
    pub fn from_code(code: u8, ms: u64) -> Option<Expiry> {
        match (code, ms) {
            (0, 0) => Some(Expiry::Keep),
            (1, ms) => Some(Expiry::In(ms)),
            (2, ms) => Some(Expiry::At(ms)),
            (3, 0) => Some(Expiry::Persist),
            _ => None,
        }
    }
}

/// When an [`Op::Expire`] applies (Redis 7's EXPIRE options). A key
/// without expiry counts as expiring never (infinitely late) for Gt/Lt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireCond {
    Always = 0,
    /// Only if the key has no expiry.
    Nx = 1,
    /// Only if the key has an expiry.
    Xx = 2,
    /// Only if the new expiry is later than the current one.
    Gt = 3,
    /// Only if the new expiry is earlier than the current one.
    Lt = 4,
}

impl ExpireCond {
    pub fn from_code(code: u8) -> Option<ExpireCond> {
        match code {
            0 => Some(ExpireCond::Always),
            1 => Some(ExpireCond::Nx),
            2 => Some(ExpireCond::Xx),
            3 => Some(ExpireCond::Gt),
            4 => Some(ExpireCond::Lt),
            _ => None,
        }
    }
}

/// The key of a transaction with no key at all (which is refused).
static NO_KEY: Bytes = Bytes::new();

impl Op {
    /// The key the request is routed and deduplicated by: for a
    /// transaction, its first key.
    pub fn key(&self) -> &Bytes {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Append { key, .. }
            | Op::Delete { key }
            | Op::Incr { key, .. }
            | Op::PutIf { key, .. }
            | Op::GetDel { key }
            | Op::PutEx { key, .. }
            | Op::Expire { key, .. }
            | Op::Ttl { key }
            | Op::GetEx { key, .. }
            | Op::SetRange { key, .. }
            | Op::IncrByFloat { key, .. }
            | Op::Scan { key, .. }
            | Op::Count { key }
            | Op::Flush { key } => key,
            Op::Txn(txn) => txn.keys().next().unwrap_or(&NO_KEY),
            Op::TxnPrepare(p) => p.part.keys().next().unwrap_or(&NO_KEY),
            Op::TxnDecide(f) | Op::TxnFinish(f) => &f.key,
        }
    }

    /// True for an operation that only reads (never needs a session).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Op::Get { .. } | Op::Ttl { .. } | Op::Scan { .. } | Op::Count { .. }
        )
    }
}

/// Most keys one [`Op::Scan`] may ask for.
pub const SCAN_COUNT_MAX: u32 = 100_000;

/// Keys one [`Op::Scan`] asking for `count` examines at most (matching or
/// not, expired or not): ten per key asked for, as Redis' SCAN visits
/// about ten buckets per COUNT, so a rare pattern cannot make one request
/// walk a whole shard.
pub fn scan_examine_limit(count: u32) -> usize {
    (count.max(1) as usize).saturating_mul(10)
}

/// Bytes of keys one scan page carries at most (the page stops after the
/// key that reaches it), so a page of long keys stays far below a frame.
pub const SCAN_PAGE_BYTES_MAX: usize = 1 << 20;

/// The answer to an [`Op::Scan`], carried as the value of an `Ok` reply.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScanPage {
    /// The matching live keys, in bytewise order.
    pub keys: Vec<Bytes>,
    /// Where the next page starts (after this key: the last one examined,
    /// returned or not), or `None` when the shard has no key after the
    /// page.
    pub resume_after: Option<Bytes>,
}

/// A float as INCRBYFLOAT stores and answers it: positional decimal (never
/// an exponent), rounded to 15 significant digits, trailing zeros and a
/// trailing point trimmed, `-0` written `0`. Redis computes in a long
/// double and prints 17 digits, whose last ones are noise-free there; a
/// `f64` holds 15 decimal digits exactly (`DBL_DIG`), so rounding to 15
/// gives the answers Redis gives (`10.5 + 0.1` is `10.6`, `0.1 + 0.2` is
/// `0.3`) instead of binary noise (`0.30000000000000004`).
pub fn format_float(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".to_string();
    }
    // The decimal exponent of the leading digit, from the rounded value.
    let sci = format!("{:.14e}", x);
    let exp: i32 = sci
        .rsplit_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let decimals = (14 - exp).max(0) as usize;
    let mut s = format!("{:.*}", decimals, x);
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".to_string();
    }
    s
}

/// A client's request. `(client_id, seq)` identifies it for at-most-once
/// execution; `ack_seq` tells the server that every request of this client
/// with a sequence number `<= ack_seq` has received its reply, so the server
/// may forget their cached replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    pub client_id: ClientId,
    pub seq: Seq,
    pub ack_seq: Seq,
    pub op: Op,
}

/// Client ids are time-ordered (PROTOCOL.md section 7): the client's
/// creation time in Unix seconds above [`CLIENT_ID_TIME_SHIFT`] random
/// bits. Servers refuse to open a session for an id at or below a shard's
/// expiry watermark, so a fresh id must be newer than every dropped one.
pub const CLIENT_ID_TIME_SHIFT: u32 = 32;

/// A time-ordered client id made at `unix_ms` (whole seconds count) with
/// the low [`CLIENT_ID_TIME_SHIFT`] bits of `random`.
pub fn client_id_at(unix_ms: u64, random: u64) -> ClientId {
    let secs = (unix_ms / 1000).min(u64::MAX >> CLIENT_ID_TIME_SHIFT);
    (secs << CLIENT_ID_TIME_SHIFT) | (random & ((1 << CLIENT_ID_TIME_SHIFT) - 1))
}

/// The creation time (Unix ms, whole seconds) a time-ordered client id
/// claims.
pub fn client_id_time_ms(id: ClientId) -> u64 {
    (id >> CLIENT_ID_TIME_SHIFT) * 1000
}

/// The current Unix time in ms (0 if the clock is before 1970).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A server's answer to a client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientReply {
    /// Success. Get: the value. Put/Append: empty. Delete: `"1"` if the key
    /// existed, `"0"` if not.
    Ok(Bytes),
    /// Get of a key that has no value.
    NoKey,
    /// The group does not serve the key's shard in its current configuration.
    WrongGroup,
    /// This replica is not the leader; `leader` is its best guess (a replica
    /// index in the group's member list), if it has one.
    NotLeader { leader: Option<ReplicaId> },
    /// Overloaded; retry later (back-pressure).
    Busy,
    /// Any other failure, with a human-readable reason.
    Error { reason: String },
    /// The request's at-most-once session in the key's shard is gone
    /// (expired after `session_ttl` of inactivity, evicted by the per-shard
    /// session cap, or never allowed: see PROTOCOL.md 7). The request was
    /// not applied by this reply, but an earlier copy of it may have been,
    /// so a write's outcome is unknown; the client must not resend it under
    /// the same id and should continue under a fresh client id.
    SessionExpired,
    /// The frame's group is served by another core of this node than the
    /// one this connection is bound to (a connection serves the groups of
    /// the core its first frame's group lives on: PROTOCOL.md 1). Not
    /// executed; resend on a connection whose first frame is for that group.
    WrongCore,
}

/// Phase 1a: a candidate asks acceptors to promise `ballot` and report what
/// they accepted at slots `>= from_slot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepare {
    pub from: ReplicaId,
    pub ballot: Ballot,
    pub from_slot: Slot,
}

/// Phase 1b: the acceptor promised `ballot`. `entries` are its accepted
/// values at slots `>= max(from_slot, log_start)`. Slots below `log_start`
/// were compacted into its snapshot; slots below `chosen_upto` are known
/// chosen by it.
///
/// Paged by bytes: `more` means the entries stopped at the sender's byte
/// budget and the candidate must ask for the rest with another `Prepare`
/// (same ballot, `from_slot` one past the last entry) before counting this
/// acceptor's promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promise {
    pub from: ReplicaId,
    pub ballot: Ballot,
    pub log_start: Slot,
    pub chosen_upto: Slot,
    pub entries: Vec<LogEntry>,
    pub more: bool,
}

/// Phase 2a: the leader of `ballot` asks acceptors to accept `entries`.
/// Every slot below `chosen_upto` is chosen (the commit point rides along).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept {
    pub from: ReplicaId,
    pub ballot: Ballot,
    pub chosen_upto: Slot,
    pub entries: Vec<Proposal>,
}

/// Phase 2b: the acceptor accepted `slots` in `ballot` (durably). An empty
/// `slots` is a heartbeat acknowledgement. `chosen_upto` is how far the
/// acceptor has learned, so the leader can spot laggards. `read_round` is
/// the highest [`Heartbeat::read_round`] this acceptor has received from the
/// leader of `ballot`: it confirms, for the read-index protocol, that the
/// acceptor still accepted `ballot` after that round was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub from: ReplicaId,
    pub ballot: Ballot,
    pub chosen_upto: Slot,
    pub read_round: u64,
    pub slots: Vec<Slot>,
}

/// A Prepare or Accept was refused because the acceptor promised a higher
/// ballot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub from: ReplicaId,
    pub promised: Ballot,
}

/// The leader's commit point moved: slots `< chosen_upto` are chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub from: ReplicaId,
    pub ballot: Ballot,
    pub chosen_upto: Slot,
}

/// The leader is alive; same meaning as Commit, sent on a timer and whenever
/// linearizable reads wait for a leadership check. `read_round` numbers
/// those checks within `ballot` (0: none); acceptors echo the highest one
/// in [`Accepted::read_round`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub from: ReplicaId,
    pub ballot: Ballot,
    pub chosen_upto: Slot,
    pub read_round: u64,
}

/// A lagging replica asks for chosen values from `from_slot` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchupRequest {
    pub from: ReplicaId,
    pub from_slot: Slot,
}

/// Chosen values (contiguous from the requested slot) and the sender's
/// commit point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchupResponse {
    pub from: ReplicaId,
    pub chosen_upto: Slot,
    pub entries: Vec<Proposal>,
}

/// Ask for the bytes of snapshot `index` from `offset` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub from: ReplicaId,
    pub index: Slot,
    pub offset: u64,
}

/// A bounded piece of the snapshot covering slots `< index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub from: ReplicaId,
    pub index: Slot,
    pub total_len: u64,
    pub offset: u64,
    pub data: Bytes,
}

/// Pre-vote (Raft's §9.6): a replica whose election timer ran out asks
/// whether the others would promise `ballot` before it runs phase 1 with
/// it. Changes no state anywhere: the asker does not raise its promise, the
/// others do not promise, so an isolated replica that keeps timing out
/// cannot come back with a ballot that deposes a leader a majority follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreVote {
    pub from: ReplicaId,
    /// The ballot the asker would prepare with.
    pub ballot: Ballot,
    /// The asker's commit point (how up to date its log is).
    pub chosen_upto: Slot,
}

/// The answer to a [`PreVote`] for `ballot`: `granted` when this replica
/// has not heard from a live leader within the minimum election timeout,
/// is not leading itself, its commit point is not above the asker's, and
/// `ballot` is above its promise. `promised` lets a refused asker go above
/// a promise it did not know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreVoteReply {
    pub from: ReplicaId,
    pub ballot: Ballot,
    pub granted: bool,
    pub promised: Ballot,
}

/// Every Paxos message between replicas of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaxosMsg {
    Prepare(Prepare),
    Promise(Promise),
    Accept(Accept),
    Accepted(Accepted),
    Reject(Reject),
    Commit(Commit),
    Heartbeat(Heartbeat),
    CatchupRequest(CatchupRequest),
    CatchupResponse(CatchupResponse),
    SnapshotRequest(SnapshotRequest),
    SnapshotChunk(SnapshotChunk),
    PreVote(PreVote),
    PreVoteReply(PreVoteReply),
}

impl PaxosMsg {
    /// The sending replica.
    pub fn from(&self) -> ReplicaId {
        match self {
            PaxosMsg::Prepare(m) => m.from,
            PaxosMsg::Promise(m) => m.from,
            PaxosMsg::Accept(m) => m.from,
            PaxosMsg::Accepted(m) => m.from,
            PaxosMsg::Reject(m) => m.from,
            PaxosMsg::Commit(m) => m.from,
            PaxosMsg::Heartbeat(m) => m.from,
            PaxosMsg::CatchupRequest(m) => m.from,
            PaxosMsg::CatchupResponse(m) => m.from,
            PaxosMsg::SnapshotRequest(m) => m.from,
            PaxosMsg::SnapshotChunk(m) => m.from,
            PaxosMsg::PreVote(m) => m.from,
            PaxosMsg::PreVoteReply(m) => m.from,
        }
    }
}

/// Any message body, as carried by one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(ClientRequest),
    Reply(ClientReply),
    Paxos(PaxosMsg),
    /// A request to the shard master group (header group 0).
    Master(MasterRequest),
    /// Between KV groups: the new owner of a shard asks the previous owner
    /// for its next chunk (header group = the previous owner).
    ShardPull(ShardPull),
    /// Between KV groups: the new owner installed the shard; the previous
    /// owner may delete its copy (header group = the previous owner).
    ShardDelete(ShardRef),
    /// The answer to a `ShardPull`: one bounded chunk of the shard (its
    /// dedup state rides on the last one).
    ShardData(ShardData),
    /// Between KV groups (issue 10, presumed abort): a participant's leader
    /// holding a prepared part of `txn` for too long asks the transaction's
    /// coordinator group (header group) for the outcome. Answered `Ok` with
    /// one byte (the [`TxnOutcome`] in the coordinator's log: if none was
    /// there, the coordinator logs `Abort` first), `Busy` while that abort
    /// is on its way through its log, or `NotLeader`.
    TxnResolve(TxnId),
    /// The shard master's answer to every successful [`MasterRequest`]: for
    /// Join/Leave/Move the configuration it created, for Query the one asked
    /// for. Refusals and redirects are `Reply(Error/NotLeader/Busy)`, so a
    /// client handles them with the same code as for KV requests.
    Config(Config),
    /// The view service's answer to a `PbPing` (kind 0x1E).
    PbView(PbViewReply),
    /// Between the replicas of a primary/backup group (kinds 0x2D-0x2F).
    Pb(PbMsg),
    /// The authentication handshake (kinds 0x50-0x52), the first frames of
    /// a connection to a cluster that has a key (see `src/auth.rs`).
    Auth(AuthMsg),
    /// An operator asks one node for its view of every group it hosts
    /// (kind 0x60, empty body; an admin request: cluster key).
    StatusRequest,
    /// A node's answer to [`Message::StatusRequest`] (kind 0x61).
    Status(NodeStatus),
}

/// One node's view of the replica groups it hosts (`synod admin status`
/// asks every node and puts the views together).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node's advertised address.
    pub node: String,
    /// Sorted by gid; the master group is gid 0.
    pub groups: Vec<GroupStatus>,
}

/// One replica's view of its group, as its core last stored it (at most a
/// tick old).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub gid: GroupId,
    /// This replica's index in `members`.
    pub replica: ReplicaId,
    pub members: Vec<String>,
    /// Whether this replica leads.
    pub leading: bool,
    /// The replica it believes leads (itself when leading), if any.
    pub leader: Option<ReplicaId>,
    /// The highest ballot it promised.
    pub ballot: Ballot,
    /// Every slot below this is chosen (commit point).
    pub commit: u64,
    /// Every slot below this is applied to the state machine.
    pub applied: u64,
    /// Slots held in the log above the snapshot.
    pub log_slots: u64,
    /// The configuration a KV group has applied (0 for the master group).
    pub config_num: u64,
    /// The shards the group serves in that configuration.
    pub shards: Vec<u32>,
}

/// Bytes of a handshake nonce.
pub const AUTH_NONCE_LEN: usize = 32;
/// Bytes of a handshake MAC (HMAC-SHA256).
pub const AUTH_MAC_LEN: usize = 32;

/// What the dialer of a connection claims to be; each role is checked
/// against one key (the cluster key, or the client key for `Client`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthRole {
    /// Replica `replica` of group `gid` sending its Paxos messages.
    Peer = 1,
    /// A server of the cluster sending migration RPCs.
    Node = 2,
    /// An operator tool (or a server's configuration watcher) holding the
    /// cluster key: may do everything a client may, and admin operations.
    Admin = 3,
    /// A KV client holding the client key.
    Client = 4,
    /// A server's link to another server: the replication messages (Paxos
    /// and primary/backup) of every group the dialing core hosts, sharing
    /// one connection per (server, core) instead of one per group.
    Link = 5,
}

impl AuthRole {
    pub fn from_u8(b: u8) -> Option<AuthRole> {
        match b {
            1 => Some(AuthRole::Peer),
            2 => Some(AuthRole::Node),
            3 => Some(AuthRole::Admin),
            4 => Some(AuthRole::Client),
            5 => Some(AuthRole::Link),
            _ => None,
        }
    }
}

/// Dialer → server, the connection's first frame: who it claims to be and
/// its nonce. `gid`/`replica` name the replica for `Peer` and are 0
/// otherwise (the server refuses anything else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthHello {
    pub role: AuthRole,
    pub gid: GroupId,
    pub replica: ReplicaId,
    pub nonce: [u8; AUTH_NONCE_LEN],
}

/// Server → dialer: the server's nonce and its proof that it holds the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthChallenge {
    pub nonce: [u8; AUTH_NONCE_LEN],
    pub mac: [u8; AUTH_MAC_LEN],
}

/// Dialer → server: the dialer's proof that it holds the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthProof {
    pub mac: [u8; AUTH_MAC_LEN],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMsg {
    Hello(AuthHello),
    Challenge(AuthChallenge),
    Proof(AuthProof),
}

/// Lets code that answers both KV and master requests (the replica layer's
/// `NotLeader`/`Busy` refusals) produce a [`Message`] from a [`ClientReply`].
impl From<ClientReply> for Message {
    fn from(reply: ClientReply) -> Message {
        Message::Reply(reply)
    }
}

/// One frame: the header fields that are not derived from the body, plus the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Chosen by the sender of a request; echoed in its reply. 0 for Paxos traffic.
    pub request_id: u64,
    /// The replica group the frame is addressed to (or answered from).
    pub group: GroupId,
    pub message: Message,
}

/// One replica group as the shard master knows it: its id and its
/// servers' advertised addresses (`host:port`); a server's index in
/// `servers` is its [`ReplicaId`] inside the group, for the group's whole
/// life. Ids are never reused: a server removed from the group keeps its
/// position (marked in `removed`), and a server added is appended (marked
/// in `added`). A group as joined has both masks 0: every listed server is
/// a member, and was one from the group's first log slot.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GroupInfo {
    pub gid: GroupId,
    pub servers: Vec<String>,
    /// Ids appended after the group was created (`Replace`, `AddMember`):
    /// not members of the log's first slot, so a fresh node must not take
    /// them for founders. Bit `i` is id `i`.
    pub added: u64,
    /// Ids removed from the group (`Replace`, `RemoveMember`): not in the
    /// membership the group's leader drives its Paxos log toward. Their
    /// addresses stay so the ids are never given out again.
    pub removed: u64,
    /// How the group replicates its log, chosen at join and never changed.
    pub mode: ReplicationMode,
}

/// How a replica group replicates (issue 12). Chosen when the group joins
/// (`synod admin join --mode pb`); a group's mode never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum ReplicationMode {
    /// Multi-Paxos among 2f+1 replicas (the default).
    #[default]
    Paxos = 0,
    /// Primary/backup among f+1 replicas, with the shard master as the
    /// view service (`src/pb/`).
    PrimaryBackup = 1,
}

impl ReplicationMode {
    pub fn from_u8(b: u8) -> Option<ReplicationMode> {
        match b {
            0 => Some(ReplicationMode::Paxos),
            1 => Some(ReplicationMode::PrimaryBackup),
            _ => None,
        }
    }
}

/// A primary/backup group's view as the master's view service holds it:
/// number `num` (0: no view yet), the primary, and the backups (bit `i` is
/// replica id `i`; never contains the primary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct View {
    pub num: u64,
    pub primary: ReplicaId,
    pub backups: u64,
}

impl View {
    /// The primary and the backups, as a mask.
    pub fn members(&self) -> u64 {
        self.backups | 1u64 << self.primary
    }
    /// Is `id` the primary or a backup?
    pub fn has(&self, id: ReplicaId) -> bool {
        id < 64 && self.members() & (1u64 << id) != 0
    }
}

/// The `view` of a [`MasterOp::PbPing`] from a replica that restarted and
/// was told it is the primary of a view it may have led before its crash
/// (PROTOCOL.md 5.10): it will not act in that view, because it may have
/// sent entries it never made durable; the view service moves the group to
/// a newer view.
pub const PB_PING_REFUSED: u64 = u64::MAX;

/// The view service's answer to a [`MasterOp::PbPing`]: group `gid`'s
/// current view, and whether its primary has acknowledged it (only then
/// may the primary serve in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PbViewReply {
    pub gid: GroupId,
    pub view: View,
    pub acked: bool,
}

/// Primary → backup of a primary/backup group (kind 0x2D, PROTOCOL.md
/// 5.11): log entries from `start`, checked against the tag of the entry
/// before `start` (`prev_tag`; 0 before position 0), the primary's commit
/// point and its latest read round. No entries: a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbAppend {
    pub view: View,
    pub start: u64,
    pub prev_tag: u64,
    /// `(tag, batch)`: the view that created the entry, and the entry.
    pub entries: Vec<(u64, Batch)>,
    pub commit: u64,
    pub read_round: u64,
}

/// Backup → primary (kind 0x2E). `ok`: the backup's log matches the
/// primary's through `end` (durably). Not ok: it does not match at the
/// Append's start; try from `end`. `view` above the primary's tells it a
/// newer view exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbAck {
    pub view: u64,
    pub from: ReplicaId,
    pub ok: bool,
    pub end: u64,
    /// The highest read round heard from this view's primary.
    pub read_round: u64,
    /// Progress through a chunked state transfer: nonzero (with `ok`
    /// false) when the backup holds the first `received` bytes of the
    /// state at `end` and waits for the rest; 0 in every other ack.
    pub received: u64,
}

/// The largest state a [`PbTransfer`] may declare (its `total`): a bound
/// on what a backup may be asked to buffer, as
/// `PaxosConfig::snapshot_bytes_max` is for Paxos snapshots.
pub const PB_TRANSFER_BYTES_MAX: u64 = 8 << 30;

/// Primary → backup (kind 0x2F): one chunk of a state transfer. The state
/// as of `index` (every position below it applied), `total` bytes long,
/// the tag of the entry before `index`; `data` is its bytes `[offset,
/// offset + data.len())` (decoding checks they lie within `total`, and
/// `total` within [`PB_TRANSFER_BYTES_MAX`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbTransfer {
    pub view: View,
    pub index: u64,
    pub last_tag: u64,
    pub total: u64,
    pub offset: u64,
    pub data: Bytes,
}

/// Every message between the replicas of one primary/backup group
/// (`src/pb/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PbMsg {
    Append(PbAppend),
    Ack(PbAck),
    Transfer(PbTransfer),
}

impl PbMsg {
    pub fn kind(&self) -> &'static str {
        match self {
            PbMsg::Append(_) => "Append",
            PbMsg::Ack(_) => "Ack",
            PbMsg::Transfer(_) => "Transfer",
        }
    }
    /// The sending replica: the view's primary for an Append or a
    /// Transfer, the backup for an Ack.
    pub fn from(&self) -> ReplicaId {
        match self {
            PbMsg::Append(m) => m.view.primary,
            PbMsg::Ack(m) => m.from,
            PbMsg::Transfer(m) => m.view.primary,
        }
    }
}

impl GroupInfo {
    /// A group as joined: every listed server a member from slot 0.
    pub fn new(gid: GroupId, servers: Vec<String>) -> GroupInfo {
        GroupInfo {
            gid,
            servers,
            added: 0,
            removed: 0,
            mode: ReplicationMode::Paxos,
        }
    }

    /// Every id the list holds (bit `i` for `servers[i]`).
    pub fn all_ids(&self) -> u64 {
        match self.servers.len() {
            n if n >= 64 => u64::MAX,
            n => (1u64 << n) - 1,
        }
    }

    /// The membership the group's log started with: every id not added later.
    pub fn founders(&self) -> u64 {
        self.all_ids() & !self.added
    }

    /// The membership the master asks for: every id not removed.
    pub fn members(&self) -> u64 {
        self.all_ids() & !self.removed
    }

    /// Is id `i` in [`GroupInfo::members`]?
    pub fn is_member(&self, i: usize) -> bool {
        i < 64 && self.members() & (1u64 << i) != 0
    }

    /// The addresses of the members, in id order (where a client or a
    /// migration should look for the group).
    pub fn member_servers(&self) -> impl Iterator<Item = (ReplicaId, &str)> + '_ {
        self.servers
            .iter()
            .enumerate()
            .filter(|(i, _)| self.is_member(*i))
            .map(|(i, s)| (i as ReplicaId, s.as_str()))
    }

    /// Has the membership ever changed (is either mask set)?
    pub fn changed(&self) -> bool {
        self.added != 0 || self.removed != 0
    }
}

/// A numbered configuration: which group serves each shard. Configuration 0
/// has no groups and every shard on gid 0 (no group).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Config {
    pub num: u64,
    /// `shards[s]` is the gid serving shard `s` (0: none).
    pub shards: Vec<GroupId>,
    /// The groups of this configuration, sorted by gid.
    pub groups: Vec<GroupInfo>,
}

/// An operation on the shard master group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterOp {
    /// Add one or more groups (each with its members) and rebalance.
    Join { groups: Vec<GroupInfo> },
    /// Remove groups and rebalance their shards onto the others.
    Leave { gids: Vec<GroupId> },
    /// Assign one shard to one group (no rebalancing).
    Move { shard: u32, gid: GroupId },
    /// Configuration `num`; `None` (or a number past the latest) = the latest.
    Query { num: Option<u64> },
    /// Swap member `old` of group `gid` for a new server `new`: `old`'s id
    /// is marked removed, `new` is appended with the next id. The group's
    /// leader then adds `new` to its Paxos membership, and removes `old`.
    Replace {
        gid: GroupId,
        old: String,
        new: String,
    },
    /// Append server `addr` to group `gid` as a member (a fresh id).
    AddMember { gid: GroupId, addr: String },
    /// Mark member `addr` of group `gid` removed (its id stays reserved).
    RemoveMember { gid: GroupId, addr: String },
    /// Primary/backup liveness report (issue 12): replica `replica` of
    /// primary/backup group `gid` is alive and ready in view `view` (0:
    /// none; a primary reports a view only once every backup of it holds
    /// the primary's whole log as of adopting it). Answered with
    /// [`Message::PbView`]. Creates no configuration.
    PbPing {
        gid: GroupId,
        replica: ReplicaId,
        view: u64,
    },
}

/// A request to the shard master group; at-most-once like [`ClientRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterRequest {
    pub client_id: ClientId,
    pub seq: Seq,
    pub ack_seq: Seq,
    pub op: MasterOp,
}

/// One shard as of one configuration, named between groups during migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRef {
    pub config_num: u64,
    pub shard: u32,
}

/// The new owner of `shard` in `config_num` asks the previous owner for the
/// records from position `cursor` of the frozen shard's key order (sorted
/// keys), so a shard of any size moves in bounded messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPull {
    pub config_num: u64,
    pub shard: u32,
    /// Records already received: the index of the first record wanted.
    pub cursor: u64,
}

/// One chunk of a shard's frozen data: the records from position `cursor`
/// of its key order, at most about a configured budget of bytes (always at
/// least one record unless `done`). `done` marks the last chunk, which also
/// carries the shard's dedup sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardData {
    pub config_num: u64,
    pub shard: u32,
    /// Echoes the pull's cursor.
    pub cursor: u64,
    pub done: bool,
    /// In the KV store's shard-chunk format.
    pub data: Bytes,
}
