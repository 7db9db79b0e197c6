//! The Synod client library: a synchronous, blocking client that speaks the
//! wire protocol (`wire/PROTOCOL.md`) to the shard master and the KV groups.
//!
//! This module owns everything a client needs to be a good citizen of the
//! protocol:
//! - identity and at-most-once bookkeeping: a random 64-bit client id, one
//!   `seq` per request (the same on every resend), and the contiguous
//!   `ack_seq` watermark piggybacked on later requests;
//! - routing: the cached configuration (key → shard → group → member), the
//!   leader hint per group, refreshed on `WrongGroup` or an unknown group;
//! - transport: one TCP connection per server address, pipelining up to
//!   [`ClientOptions::in_flight_max`] requests and matching replies by
//!   `request_id`;
//! - failure handling: redirects, exponential backoff with jitter, a per
//!   attempt and a whole-operation deadline.
//!
//! What it must never do: panic or hang on anything a server sends (garbage,
//! a closed connection, an unknown request id, silence). Such a connection
//! is dropped and its requests are resent on a new one; every call returns
//! by its deadline.
//!
//! Layout: `logic` holds the pure rules (ack window, backoff, routing);
//! `session` is the sans-IO session core built on them (every driver's
//! protocol behaviour, unit-tested on virtual time); `conn` owns sockets
//! and reader threads; `engine` drives the session over them.

mod conn;
mod engine;
// Shared with the RESP gateway's event loops, which route and retry the
// same way without the blocking transport.
pub(crate) mod idmap;
mod lanes;
pub(crate) mod logic;
pub mod mio_conn;
pub mod session;
#[cfg(test)]
mod session_tests;
pub mod status;
#[cfg(test)]
mod tests;
mod twopc;
mod txn;
pub mod wire_ids;

use std::collections::HashMap;
use std::fmt;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use synod_wire::{ClientId, Config, GroupId, GroupInfo, MasterOp, Op, Seq};

use conn::{Conn, Event};
pub use logic::{random_client_id, AckWindow};
pub(crate) use session::Req;
use session::{Answer, Dest, Session, SessionOptions};
pub use txn::{parse_txn_words, TxnBuilder, TxnResultJson};

/// How a [`Client`] reaches the cluster and how patient it is.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Shard master addresses (`host:port`), in the cluster's `--masters`
    /// order: a master's `NotLeader` hint is an index into this list.
    pub masters: Vec<String>,
    /// Deadline for one whole operation, retries included.
    pub timeout: Duration,
    /// Deadline for one attempt (connect, or send and wait for the reply);
    /// past it the server is treated as failed and another is tried.
    pub rpc_timeout: Duration,
    /// Most requests outstanding at once in [`Client::execute_many`].
    pub in_flight_max: usize,
    /// The cluster key: every connection authenticates as an admin (needed
    /// for Join/Leave/Move on a cluster with a key; enough for everything).
    pub cluster_key: Option<crate::auth::Key>,
    /// The client key (`synod-server --client-key-file`): used when there
    /// is no cluster key.
    pub client_key: Option<crate::auth::Key>,
    /// Let the groups a server runs on one core share a connection
    /// ([`SessionOptions::share_connections`]).
    pub share_connections: bool,
}

/// Default [`ClientOptions::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ClientOptions::rpc_timeout`].
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(1);
/// Default [`ClientOptions::in_flight_max`].
pub const DEFAULT_IN_FLIGHT_MAX: usize = 128;

impl ClientOptions {
    /// Defaults for everything but the master list.
    pub fn new(masters: Vec<String>) -> ClientOptions {
        ClientOptions {
            masters,
            timeout: DEFAULT_TIMEOUT,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
            in_flight_max: DEFAULT_IN_FLIGHT_MAX,
            cluster_key: None,
            client_key: None,
            share_connections: true,
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions::new(Vec::new())
    }
}

/// Why an operation did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// No server of the group (or no master) could be connected to before
    /// the deadline; the text names the last address and error. The request
    /// was never delivered.
    Unreachable(String),
    /// The deadline passed after the request was delivered at least once:
    /// it may or may not have executed.
    Timeout,
    /// The server refused the request with an `Error` reply; the text is its
    /// reason. Not retried: resending would get the same answer.
    Refused(String),
    /// This client's at-most-once session in the key's shard expired (idle
    /// longer than the servers' session TTL) or was evicted (the per-shard
    /// session cap). A write's outcome is unknown: an earlier attempt may
    /// have applied. Never retried under the same id; the client takes a
    /// fresh id before its next operation (PROTOCOL.md 7).
    SessionExpired,
    /// The request does not fit in one frame
    /// ([`synod_wire::DEFAULT_FRAME_BYTES_MAX`] of body); refused locally.
    TooLarge,
    /// The servers keep answering with something this client cannot use.
    Protocol(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable(why) => write!(f, "cluster unreachable: {why}"),
            ClientError::Timeout => f.write_str("timed out waiting for the cluster"),
            ClientError::Refused(reason) => write!(f, "refused by the server: {reason}"),
            ClientError::SessionExpired => f.write_str(
                "the client's session expired on the server; the write may or may not have \
                 been applied",
            ),
            ClientError::TooLarge => write!(
                f,
                "request too large: key and value must fit in one {} byte frame",
                synod_wire::DEFAULT_FRAME_BYTES_MAX
            ),
            ClientError::Protocol(why) => write!(f, "protocol error: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The result of one KV operation: `Some(value)` for `Ok` (empty for Put and
/// Append), `None` for a Get of an absent key.
pub type OpResult = Result<Option<Bytes>, ClientError>;

/// A connection to a Synod cluster. Not thread-safe by design (`&mut self`
/// everywhere): one client is one at-most-once session with one seq
/// counter; run one client per thread for parallelism.
pub struct Client {
    opts: ClientOptions,
    /// The protocol: routing, seqs, acknowledgements, retries.
    session: Session,
    /// Time zero of the session's clock.
    epoch: Instant,
    /// Open connections, as the session names them (server address, and
    /// the group the server bound it for: see [`Dest`]).
    conns: HashMap<Dest, Conn>,
    next_conn_id: u64,
    events_tx: Sender<Event>,
    events_rx: Receiver<Event>,
}

impl Client {
    /// A client for the cluster whose masters are `opts.masters`.
    ///
    /// Does no I/O: the configuration is fetched by the first KV operation
    /// (or [`Client::connect`]), so admin tools can build a client before
    /// the cluster is up. Fails only on unusable options.
    pub fn new(opts: ClientOptions) -> Result<Client, ClientError> {
        let masters: Vec<String> = opts
            .masters
            .iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        if masters.is_empty() {
            return Err(ClientError::Unreachable(
                "no shard master address given".to_string(),
            ));
        }
        let client_id = logic::fresh_client_id();
        let (events_tx, events_rx) = mpsc::channel();
        let mut session_opts =
            SessionOptions::new(opts.timeout, opts.rpc_timeout, opts.in_flight_max);
        session_opts.share_connections = opts.share_connections;
        Ok(Client {
            opts: ClientOptions {
                masters: masters.clone(),
                timeout: session_opts.timeout,
                rpc_timeout: session_opts.rpc_timeout,
                in_flight_max: session_opts.in_flight_max,
                cluster_key: opts.cluster_key,
                client_key: opts.client_key,
                share_connections: opts.share_connections,
            },
            session: Session::with_masters(
                session_opts,
                masters,
                client_id,
                client_id,
                Duration::ZERO,
            ),
            epoch: Instant::now(),
            conns: HashMap::new(),
            next_conn_id: 1,
            events_tx,
            events_rx,
        })
    }

    /// [`Client::new`], then fetches the latest configuration, so an
    /// unreachable cluster is reported here rather than on the first get.
    pub fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        let mut client = Client::new(opts)?;
        client.query(None)?;
        Ok(client)
    }

    /// This client's random id (its at-most-once session on the servers).
    pub fn client_id(&self) -> ClientId {
        self.session.client_id()
    }

    /// The watermark piggybacked on the next request: every seq at or below
    /// it is finished.
    pub fn ack_seq(&self) -> Seq {
        self.session.ack_seq()
    }

    /// The configuration requests are currently routed with, if any.
    pub fn cached_config(&self) -> Option<&Config> {
        self.session.config()
    }

    /// The connections open now, sorted (how many a workload needs: tests
    /// and diagnostics).
    pub fn connections(&self) -> Vec<Dest> {
        let mut open: Vec<Dest> = self.conns.keys().cloned().collect();
        open.sort();
        open
    }

    /// Counts of the non-final answers so far (`WrongCore` among them).
    pub fn stats(&self) -> session::SessionStats {
        self.session.stats()
    }

    /// The options in force (normalised: see [`Client::new`]).
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The value of `key`, or `None` if it has none.
    pub fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>, ClientError> {
        self.kv(Op::Get { key: key.into() })
    }

    /// Sets `key` to `value`.
    pub fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.kv(Op::Put {
            key: key.into(),
            value: value.into(),
        })
        .map(drop)
    }

    /// Appends `value` to `key`'s value (an absent key counts as empty).
    pub fn append(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.kv(Op::Append {
            key: key.into(),
            value: value.into(),
        })
        .map(drop)
    }

    /// Runs a transaction (build one with [`TxnBuilder`]): its compares,
    /// then one of its branches, atomically, at most once. Keys in one
    /// group's shards: one log entry; keys in several groups: two-phase
    /// commit driven by the session (ARCHITECTURE.md, Transactions).
    pub fn txn(&mut self, txn: synod_wire::Txn) -> Result<synod_wire::TxnResult, ClientError> {
        match self.kv(Op::Txn(Box::new(txn)))? {
            Some(value) => synod_wire::decode_txn_result(value)
                .map_err(|e| ClientError::Protocol(format!("bad transaction result: {e}"))),
            None => Err(ClientError::Protocol(
                "NoKey answer to a transaction".to_string(),
            )),
        }
    }

    /// Configuration `num`, or the latest for `None` (or a number past the
    /// latest). A configuration newer than the cached one also becomes the
    /// routing cache.
    pub fn query(&mut self, num: Option<u64>) -> Result<Config, ClientError> {
        self.master(MasterOp::Query { num })
    }

    /// Adds groups (with their members) and rebalances; returns the new
    /// configuration.
    pub fn join(&mut self, groups: Vec<GroupInfo>) -> Result<Config, ClientError> {
        self.master(MasterOp::Join { groups })
    }

    /// Removes groups, moving their shards to the others; returns the new
    /// configuration.
    pub fn leave(&mut self, gids: Vec<GroupId>) -> Result<Config, ClientError> {
        self.master(MasterOp::Leave { gids })
    }

    /// Assigns `shard` to group `gid`; returns the new configuration.
    pub fn move_shard(&mut self, shard: u32, gid: GroupId) -> Result<Config, ClientError> {
        self.master(MasterOp::Move { shard, gid })
    }

    /// Swaps member `old` of group `gid` for a new server `new` (fresh
    /// replica id; `old`'s id marked removed); returns the new configuration.
    pub fn replace(
        &mut self,
        gid: GroupId,
        old: String,
        new: String,
    ) -> Result<Config, ClientError> {
        self.master(MasterOp::Replace { gid, old, new })
    }

    /// Adds server `addr` to group `gid` as a member; returns the new configuration.
    pub fn add_member(&mut self, gid: GroupId, addr: String) -> Result<Config, ClientError> {
        self.master(MasterOp::AddMember { gid, addr })
    }

    /// Removes member `addr` from group `gid`; returns the new configuration.
    pub fn remove_member(&mut self, gid: GroupId, addr: String) -> Result<Config, ClientError> {
        self.master(MasterOp::RemoveMember { gid, addr })
    }

    /// Runs every op, keeping up to [`ClientOptions::in_flight_max`] of them
    /// outstanding at once, and returns their results in the order given.
    ///
    /// Ops run concurrently, so their relative order is not defined: two
    /// writes to one key in the same batch may apply in either order. Each op
    /// has its own [`ClientOptions::timeout`] counted from when it is
    /// started.
    pub fn execute_many(&mut self, ops: Vec<Op>) -> Vec<OpResult> {
        let reqs = ops.into_iter().map(Req::Kv).collect();
        self.run(reqs)
            .into_iter()
            .map(|r| match r {
                Ok(Answer::Kv(v)) => Ok(v),
                Ok(Answer::Config(_)) => Err(ClientError::Protocol(
                    "configuration answer to a KV request".to_string(),
                )),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Every key matching `pattern` (Redis glob; `None`: all), handed to
    /// `each` shard by shard in key order, one `Scan` page of up to `count`
    /// keys per request; returns how many. A key that exists for the whole
    /// walk is handed over even if shards move meanwhile (PROTOCOL.md 5.1).
    pub fn scan_keys(
        &mut self,
        pattern: Option<Bytes>,
        count: u32,
        mut each: impl FnMut(&Bytes),
    ) -> Result<u64, ClientError> {
        let shards = self.query(None)?.shards.len() as u32;
        let mut total = 0;
        for key in synod_wire::shard_keys(shards) {
            let mut after = None;
            loop {
                let page = self.kv(Op::Scan {
                    key: key.clone(),
                    after,
                    count,
                    pattern: pattern.clone(),
                })?;
                let page = synod_wire::decode_scan_page(page.unwrap_or_default())
                    .map_err(|e| ClientError::Protocol(format!("scan page: {e}")))?;
                page.keys.iter().for_each(&mut each);
                total += page.keys.len() as u64;
                match page.resume_after {
                    Some(a) => after = Some(a),
                    None => break,
                }
            }
        }
        Ok(total)
    }

    fn kv(&mut self, op: Op) -> OpResult {
        self.execute_many(vec![op])
            .pop()
            .expect("one result per op")
    }

    fn master(&mut self, op: MasterOp) -> Result<Config, ClientError> {
        match self
            .run(vec![Req::Master(op)])
            .pop()
            .expect("one result per op")
        {
            Ok(Answer::Config(c)) => Ok(c),
            Ok(Answer::Kv(_)) => Err(ClientError::Protocol(
                "KV answer to a shard master request".to_string(),
            )),
            Err(e) => Err(e),
        }
    }
}
