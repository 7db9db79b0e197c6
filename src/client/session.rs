//! One client session with the cluster, sans-IO (in the spirit of
//! quinn-proto's `Connection`): the driver feeds it requests, the frames
//! that arrive and the time; it hands back frames to send (each for one
//! connection: a member address and the group that names the connection),
//! finished requests, the connections to drop, and when it wants to be
//! polled again.
//!
//! Every rule of PROTOCOL.md section 7 lives here, once, for every driver
//! (the blocking [`super::Client`], the simulator's clients):
//! - identity and at-most-once bookkeeping: one `seq` per request, the same
//!   on every resend; `ack_seq` = the contiguous low-water mark of finished
//!   seqs ([`AckWindow`]); a `SessionExpired` stops admitting new requests
//!   until nothing is in flight and the driver gives a fresh id
//!   ([`Session::needs_new_id`], [`Session::set_client_id`]): a request is
//!   never resent under another id;
//! - routing: the configuration cache, key → shard → group → member, the
//!   leader hint per group ([`Router`]); then member → connection: the
//!   groups a server runs on one core share a connection once it is known
//!   bound to that core (`lanes.rs`); a `WrongCore` is resent at once on
//!   another connection, never counted against the member;
//! - pipelining: at most [`SessionOptions::in_flight_max`] requests of the
//!   caller outstanding, oldest first; replies in any order, matched by a
//!   request id that is fresh for every send (`handle << 16 | sends`), so a
//!   late answer to an attempt already retried is dropped, and an id never
//!   issued marks the connection as confused (it is dropped);
//! - retries: `NotLeader` follows the hint at once for the first
//!   [`FREE_REDIRECTS`] redirects, then backs off; `Busy` backs off on the
//!   same member; `WrongGroup` forgets the shard's owner and parks the
//!   request until a configuration refresh, which runs as a request of its
//!   own (never blocking other replies), at most one at a time and at
//!   least [`REFRESH_SPACING`] apart; a lost or silent connection resends
//!   everything that was on it to the next member after a backoff;
//! - transactions across groups: a `Txn` whose keys the cached
//!   configuration puts in several groups runs two-phase commit as
//!   internal requests (a prepare per group in parallel, the decision to
//!   the first key's group, the outcome to the others), answered once the
//!   decision is applied; aborted attempts (no-wait lock conflicts,
//!   `WrongGroup`) are retried with a new transaction id (`twopc.rs`,
//!   ARCHITECTURE.md "Transactions");
//! - deadlines: every request ends by its deadline, `Timeout` if it was
//!   ever delivered (it may have executed), `Unreachable` if not.
//!
//! Time is a [`Duration`] since an epoch the driver picks (an `Instant`
//! for real drivers, virtual microseconds in the simulator): nothing here
//! reads a clock, touches a socket or uses a global RNG. Connections,
//! authentication and encoding frames into bytes are the driver's.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use synod_wire::{
    decode_txn_vote, encode_message_body, encode_txn_result, ClientId, ClientReply, ClientRequest,
    Config, Frame, GroupId, MasterOp, MasterRequest, Message, Op, Seq, TxnId, TxnOutcome,
    TxnPrepare, TxnVote, DEFAULT_FRAME_BYTES_MAX,
};

use super::idmap::IdMap;
use super::lanes::Lanes;
use super::logic::{backoff_capped, AckWindow, Router, BACKOFF_MAX, CLIENT_ID_RENEW_AFTER};
use super::twopc;
use super::ClientError;
use crate::rng::Rng;

/// Time since the driver's epoch.
pub type Time = Duration;

/// Redirects with a usable leader hint that are followed at once; past
/// this a request backs off (an election in progress can bounce it).
pub const FREE_REDIRECTS: u32 = 3;
/// Least time between two configuration queries, so requests parked on a
/// shard no group serves yet cannot make the session spin on the masters.
pub const REFRESH_SPACING: Duration = Duration::from_millis(20);
/// Request ids are `handle << SEND_BITS | sends`: the request is found from
/// the reply without a map, and each send of it has its own id.
const SEND_BITS: u32 = 16;
/// Interned member addresses a session keeps at most before starting over
/// (addresses change only with configurations).
const ADDRS_MAX: usize = 256;
/// How servers before issue 8's fix began the `Error` a replica with a
/// failed WAL answered; retried elsewhere, never final.
const STOPPED_REPLICA: &str = "replica stopped";

/// A request as the session runs it.
#[derive(Clone, Debug)]
pub enum Req {
    Kv(Op),
    Master(MasterOp),
}

/// A successful result: a KV answer (`None` = no such key) or the
/// configuration a master request returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Kv(Option<Bytes>),
    Config(Config),
}

/// A connection: to member `addr`, named by group `gid` (0: the masters),
/// the group of the first frame the session sends on it, so the server
/// binds it to that group's core. Frames of other groups the same core
/// serves may travel on it too (each frame's header names its own group):
/// drivers keep one connection per `Dest` and never look inside. The
/// address is shared (`Arc`): the session hands one out with every send
/// and keeps one per request on the wire, and copying a `String` each time
/// showed in the RESP gateway's profile.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dest {
    pub addr: Arc<str>,
    pub gid: GroupId,
}

impl Dest {
    pub fn new(addr: &str, gid: GroupId) -> Dest {
        Dest {
            addr: Arc::from(addr),
            gid,
        }
    }
}

/// A frame for the driver to send.
#[derive(Clone, Debug)]
pub struct Transmit {
    /// The connection to send it on (`frame.group` is the request's group,
    /// which may differ: see [`Dest`]).
    pub dest: Dest,
    pub frame: Frame,
}

/// A request that finished.
#[derive(Clone, Debug)]
pub struct Completion {
    /// What [`Session::submit`] returned for it.
    pub handle: u64,
    /// Its seq, if it got one (a request refused before admission has none).
    pub seq: Option<Seq>,
    pub result: Result<Answer, ClientError>,
    /// The request, given back (so a driver need not keep a copy to know
    /// what finished).
    pub req: Req,
}

/// What the servers answered besides results, for drivers that report it
/// (`synod-bench`'s summary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// `NotLeader` replies (each followed to the hinted or next member).
    pub not_leader: u64,
    /// `WrongGroup` replies (each parks its request for a configuration).
    pub wrong_group: u64,
    /// `Busy` replies (each backs off on the same member).
    pub busy: u64,
    /// `WrongCore` replies (a group tried a connection bound to another
    /// core; each resent at once on another connection).
    pub wrong_core: u64,
    /// Attempts of transactions across groups (two-phase commits).
    pub two_pc: u64,
    /// Of those, the ones aborted (a key locked by another transaction, a
    /// `WrongGroup`, or a part without an answer) and retried.
    pub two_pc_aborts: u64,
    /// Of the aborted, those whose decision lost to a presumed abort (a
    /// participant found the prepare too old and asked the coordinator
    /// before this session's `TxnDecide` got into its log).
    pub two_pc_presumed_aborts: u64,
}

/// How patient a session is.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Deadline for one request, retries included, from its admission.
    pub timeout: Duration,
    /// Deadline for one attempt; past it the connection is treated as
    /// failed and everything on it goes to the next member.
    pub rpc_timeout: Duration,
    /// Most of the caller's requests outstanding at once.
    pub in_flight_max: usize,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// An id older than this is replaced when nothing is in flight.
    pub renew_after: Duration,
    /// Let the groups a server runs on one core share a connection (see
    /// [`Dest`]); off, every (server, group) has its own, as before issue
    /// 15 (to compare the two, and for servers older than `WrongCore`,
    /// which answered a frame of another core's group `WrongGroup` or
    /// `Error`).
    pub share_connections: bool,
}

impl SessionOptions {
    pub fn new(timeout: Duration, rpc_timeout: Duration, in_flight_max: usize) -> SessionOptions {
        SessionOptions {
            timeout,
            // An attempt never outlives the request, and a zero would make
            // every attempt fail at once.
            rpc_timeout: rpc_timeout.min(timeout).max(Duration::from_millis(1)),
            in_flight_max: in_flight_max.max(1),
            backoff_max: BACKOFF_MAX,
            renew_after: CLIENT_ID_RENEW_AFTER,
            share_connections: true,
        }
    }
}

/// The words a refusal of a transaction whose keys span groups carried
/// (`ClientError::Refused`) before two-phase commit, so a caller with a
/// non-atomic fallback (the RESP gateway's MSET, DEL, MGET) can tell it
/// from other refusals. This session no longer refuses such a transaction.
pub const CROSS_GROUP_REFUSAL: &str = "cross-group transactions are not built yet";

/// Refuses, before it costs a seq, a request whose body would exceed what a
/// server's decoder accepts: the server would close the connection on it and
/// every resend would fail the same way.
pub(crate) fn check_size(req: &Req) -> Result<(), ClientError> {
    /// Client id, seq, ack seq, key length (PROTOCOL.md 5.1).
    const KV_FIXED_BYTES: u64 = 8 + 8 + 8 + 4;
    /// The value's length prefix, for Put and Append.
    const VALUE_LEN_BYTES: u64 = 4;
    let body_len = match req {
        Req::Kv(op) => {
            let value = match op {
                Op::Get { .. }
                | Op::Delete { .. }
                | Op::GetDel { .. }
                | Op::Ttl { .. }
                | Op::Count { .. }
                | Op::Flush { .. } => 0,
                Op::SetRange { value, .. } => 8 + VALUE_LEN_BYTES + value.len() as u64,
                Op::IncrByFloat { delta, .. } => VALUE_LEN_BYTES + delta.len() as u64,
                // Two optional strings (flag and length each) and the count.
                Op::Scan { after, pattern, .. } => {
                    2 * (1 + VALUE_LEN_BYTES)
                        + 4
                        + after.as_ref().map_or(0, |a| a.len() as u64)
                        + pattern.as_ref().map_or(0, |p| p.len() as u64)
                }
                // Then a condition byte and the expiry (code, ms).
                Op::Expire { .. } => 1 + 9,
                Op::GetEx { .. } => 9,
                Op::PutEx { value, .. } => VALUE_LEN_BYTES + value.len() as u64 + 2 + 9,
                Op::Put { value, .. } | Op::Append { value, .. } => {
                    VALUE_LEN_BYTES + value.len() as u64
                }
                Op::Incr { .. } => 8,
                // The value, then the condition and get_old bytes.
                Op::PutIf { value, .. } => VALUE_LEN_BYTES + value.len() as u64 + 2,
                Op::Txn(_) | Op::TxnPrepare(_) | Op::TxnDecide(_) | Op::TxnFinish(_) => {
                    if let Op::Txn(txn) = op {
                        if let Some(why) = txn.invalid() {
                            return Err(ClientError::Refused(why.to_string()));
                        }
                    }
                    // Measured on the real encoding (its layout is not
                    // key-then-value); the kind byte is not body.
                    let command = synod_wire::encode_command(&ClientRequest {
                        client_id: 0,
                        seq: 1,
                        ack_seq: 0,
                        op: op.clone(),
                    });
                    (command.len() as u64 - 1)
                        .saturating_sub(KV_FIXED_BYTES + op.key().len() as u64)
                }
            };
            KV_FIXED_BYTES + op.key().len() as u64 + value
        }
        Req::Master(op) => {
            // Master requests are small unless a caller passes huge lists;
            // measuring the real encoding avoids duplicating its layout.
            let mut scratch = BytesMut::new();
            encode_message_body(
                &Message::Master(MasterRequest {
                    client_id: 0,
                    seq: 1,
                    ack_seq: 0,
                    op: op.clone(),
                }),
                &mut scratch,
            );
            scratch.len() as u64
        }
    };
    if body_len > u64::from(DEFAULT_FRAME_BYTES_MAX) {
        return Err(ClientError::TooLarge);
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// To be sent at `at` or later.
    Ready { at: Time },
    /// No route until a newer configuration arrives.
    AwaitConfig,
    /// A transaction across groups whose two-phase commit (`TwoPc` of
    /// this key) runs as internal requests of their own.
    TwoPc(u64),
    /// On the wire on connection `dest`, to member `index` of group `gid`
    /// (not always `dest.gid`: the connection may be another group's).
    Sent {
        dest: Dest,
        gid: GroupId,
        request_id: u64,
        index: usize,
        rpc_deadline: Time,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    User,
    Refresh,
    /// One message of the two-phase commit `TwoPc` `txn`, for group
    /// `gid`, always sent to that group (never re-routed by key after a
    /// configuration change): so every group that may hold the prepared
    /// part is the one its outcome goes to. A group holding locks keeps
    /// their shards until the outcome arrives; a prepare answered
    /// `WrongGroup` was applied nowhere and aborts the attempt.
    Part {
        txn: u64,
        role: Role,
        gid: GroupId,
    },
}

/// What a two-phase commit message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The prepare of part `i`.
    Prepare(usize),
    /// The decision, to the coordinator (part 0).
    Decide,
    /// The outcome, to part `i`.
    Finish(usize),
}

/// Whom a lost connection is blamed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The member (it failed, or is silent): its requests go to the next
    /// member after a backoff.
    Member,
    /// As `Member`, but what was handed to the connection never left.
    NeverSent,
    /// Nobody: the session dropped it for being bound to the wrong core;
    /// its requests are resent at once to the same member.
    None,
}

/// Internal marker: a prepare was answered `WrongGroup`.
const PART_WRONG_GROUP: &str = "part answered WrongGroup";

/// How long two-phase commit messages are retried, in multiples of the
/// session's request timeout: past the caller's deadline, so the outcome
/// usually reaches every group from here. If it does not (this process
/// died, or gave up), each participant asks the coordinator after its
/// recovery timeout (presumed abort, ARCHITECTURE.md, Transactions). The
/// coordinator remembers a decision for `kv::TXN_DECISION_RETENTION_MS`,
/// which must exceed this patience: a resent `TxnDecide` is then always
/// answered from the record.
const PART_PATIENCE: u32 = 8;

/// A part's vote, once known.
#[derive(Clone, Debug)]
enum Vote {
    Yes(TxnVote),
    No,
    WrongGroup,
    /// No usable answer (timed out, session expired, refused): maybe
    /// prepared. The caller gets this error rather than another attempt
    /// (an attempt under this id would meet the same).
    Failed(ClientError),
}

/// One attempt of a transaction across groups (see [`Session`]'s
/// two-phase commit).
struct TwoPc {
    /// The caller's handle while it waits for this attempt's answer.
    user: Option<u64>,
    txn: synod_wire::Txn,
    id: TxnId,
    parts: Vec<twopc::Part>,
    votes: Vec<Option<Vote>>,
    outcome: Option<TxnOutcome>,
    /// Internal messages not answered yet.
    outstanding: usize,
}

struct Task {
    purpose: Purpose,
    req: Req,
    seq: Seq,
    deadline: Time,
    /// Failed attempts so far; drives the backoff.
    attempt: u32,
    redirects: u32,
    /// Sends so far (the low bits of the request id).
    sends: u64,
    /// `WrongCore` answers on its group's own connection (each closes it
    /// to reopen bound right): the first is resent at once, later ones
    /// back off.
    rebinds: u32,
    /// Sends that reached a connection (a failed connect takes one back):
    /// a deadline then means "maybe executed".
    delivered: u32,
    state: State,
    last_failure: Option<String>,
}

impl Task {
    /// Is the send with `request_id` this task's current attempt?
    fn sent_as(&self, request_id: u64) -> bool {
        matches!(self.state, State::Sent { request_id: current, .. } if current == request_id)
    }
}

/// Times of a session's tasks, earliest first. Entries mostly come in
/// order (a deadline or an rpc deadline is the time of admission or of the
/// send plus a constant, and the driver's time does not go back): those
/// go to a queue, in O(1); the rest (backoffs, a refresh's deadline, or a
/// clock that went back) to a heap. The earliest is the smaller front.
#[derive(Debug)]
struct Timers<T: Ord + Copy> {
    fifo: VecDeque<T>,
    heap: BinaryHeap<Reverse<T>>,
}

impl<T: Ord + Copy> Default for Timers<T> {
    fn default() -> Timers<T> {
        Timers {
            fifo: VecDeque::new(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<T: Ord + Copy> Timers<T> {
    fn push(&mut self, entry: T) {
        if self.fifo.back().is_none_or(|b| *b <= entry) {
            self.fifo.push_back(entry);
        } else {
            self.heap.push(Reverse(entry));
        }
    }

    fn peek(&self) -> Option<&T> {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(a), Some(Reverse(b))) => Some(a.min(b)),
            (a, None) => a,
            (None, Some(Reverse(b))) => Some(b),
        }
    }

    fn pop(&mut self) -> Option<T> {
        let from_fifo = match (self.fifo.front(), self.heap.peek()) {
            (Some(a), Some(Reverse(b))) => a <= b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if from_fifo {
            self.fifo.pop_front()
        } else {
            self.heap.pop().map(|Reverse(e)| e)
        }
    }

    fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }
}

impl<T: Ord + Copy> FromIterator<T> for Timers<T> {
    fn from_iter<I: IntoIterator<Item = T>>(entries: I) -> Timers<T> {
        let mut sorted: Vec<T> = entries.into_iter().collect();
        sorted.sort_unstable();
        Timers {
            fifo: sorted.into(),
            heap: BinaryHeap::new(),
        }
    }
}

/// The shared copy of `addr` among `addrs` (a handful: the masters and the
/// members of the groups in use), added if new.
fn intern(addrs: &mut Vec<Arc<str>>, addr: &str) -> Arc<str> {
    if let Some(a) = addrs.iter().find(|a| ***a == *addr) {
        return a.clone();
    }
    if addrs.len() >= ADDRS_MAX {
        addrs.clear();
    }
    let a: Arc<str> = Arc::from(addr);
    addrs.push(a.clone());
    a
}

/// One at-most-once session: see the module documentation.
pub struct Session {
    opts: SessionOptions,
    router: Router,
    client_id: ClientId,
    next_seq: Seq,
    acks: AckWindow,
    /// A `SessionExpired` came back: admit nothing until a fresh id.
    renew: bool,
    born: Time,
    rng: Rng,
    /// Submitted, not admitted yet (the window is full).
    queue: VecDeque<(u64, Req)>,
    /// Admitted requests by handle. Unordered: where order is observable
    /// (which request is sent, retried or failed first, and so which
    /// frame leaves first and which backoff draws which random number)
    /// handles are sorted first, so every driver (the simulator's too)
    /// sees the order of handles.
    tasks: IdMap<u64, Task>,
    /// `(deadline, handle)` of every task; `(at, handle)` of every task
    /// in `State::Ready`; `(rpc_deadline, handle, request_id)` of every
    /// task in `State::Sent`. Entries whose task finished or moved on are
    /// stale: skipped when they come up, dropped from the top after every
    /// poll and every change that may have made a top stale (so the tops
    /// are always live, for [`Session::next_wake`]), and the timers rebuilt
    /// from the tasks past twice their number. So a poll costs what is
    /// due, not a scan of every request in flight.
    deadlines: Timers<(Time, u64)>,
    ready: Timers<(Time, u64)>,
    rpc: Timers<(Time, u64, u64)>,
    /// Tasks in `State::AwaitConfig`.
    parked: usize,
    /// Member addresses handed out in `Dest`s, one `Arc` per address.
    addrs: Vec<Arc<str>>,
    /// Which connection each group's frames take.
    lanes: Lanes,
    /// Reused between polls: handles due.
    scratch: Vec<u64>,
    next_handle: u64,
    /// The caller's admitted requests not finished.
    active: usize,
    refresh: Option<u64>,
    last_refresh: Option<Time>,
    refresh_failure: Option<String>,
    transmits: VecDeque<Transmit>,
    completions: VecDeque<Completion>,
    closes: VecDeque<(Dest, String)>,
    stats: SessionStats,
    /// Two-phase commits in progress (their messages still out).
    txns: BTreeMap<u64, TwoPc>,
    next_txn: u64,
    /// Internal 2PC messages were queued during this poll's sends.
    parts_added: bool,
}

impl Session {
    /// A session under `client_id` that fetches configurations from the
    /// shard masters at `masters` (`--masters` order: a master's
    /// `NotLeader` hint indexes it); `seed` drives the backoff jitter only.
    pub fn with_masters(
        opts: SessionOptions,
        masters: Vec<String>,
        client_id: ClientId,
        seed: u64,
        now: Time,
    ) -> Session {
        Session::new(opts, Router::new(masters), client_id, seed, now)
    }

    /// A session routing by `config`, which never changes (no masters: a
    /// request its shard map cannot route waits for its deadline).
    pub fn with_config(
        opts: SessionOptions,
        config: Config,
        client_id: ClientId,
        seed: u64,
        now: Time,
    ) -> Session {
        Session::new(opts, Router::fixed(config), client_id, seed, now)
    }

    pub(crate) fn new(
        opts: SessionOptions,
        router: Router,
        client_id: ClientId,
        seed: u64,
        now: Time,
    ) -> Session {
        Session {
            lanes: Lanes::new(opts.share_connections),
            opts,
            router,
            client_id,
            next_seq: 1,
            acks: AckWindow::default(),
            renew: false,
            born: now,
            rng: Rng::new(seed),
            queue: VecDeque::new(),
            tasks: IdMap::default(),
            deadlines: Timers::default(),
            ready: Timers::default(),
            rpc: Timers::default(),
            parked: 0,
            addrs: Vec::new(),
            scratch: Vec::new(),
            next_handle: 1,
            active: 0,
            refresh: None,
            last_refresh: None,
            refresh_failure: None,
            transmits: VecDeque::new(),
            completions: VecDeque::new(),
            closes: VecDeque::new(),
            stats: SessionStats::default(),
            txns: BTreeMap::new(),
            next_txn: 1,
            parts_added: false,
        }
    }

    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// The `ack_seq` piggybacked on the next request.
    pub fn ack_seq(&self) -> Seq {
        self.acks.ack_seq()
    }

    pub fn config(&self) -> Option<&Config> {
        self.router.config()
    }

    pub fn options(&self) -> &SessionOptions {
        &self.opts
    }

    /// Requests submitted and not finished (queued ones included).
    pub fn pending(&self) -> usize {
        self.queue.len() + self.active
    }

    /// Two-phase commits whose messages are still out after their caller
    /// was answered (the outcome to the other participants, or the abort
    /// of an attempt). A driver about to stop (a CLI exiting) keeps polling
    /// until this is 0, or the groups keep those locks.
    pub fn background(&self) -> usize {
        self.txns.len()
    }

    /// Starts `req`; its result comes out of [`Session::poll_completion`]
    /// with the returned handle. Admitted (given a seq and a deadline) on
    /// the next [`Session::poll`] with room in the window.
    pub fn submit(&mut self, req: Req) -> u64 {
        let handle = self.next_handle;
        self.next_handle += 1;
        if let Err(e) = check_size(&req) {
            self.completions.push_back(Completion {
                handle,
                seq: None,
                result: Err(e),
                req,
            });
        } else {
            self.queue.push_back((handle, req));
        }
        handle
    }

    /// Nothing of the current id is in flight and it must (a
    /// `SessionExpired`) or should (it is old) be replaced: the driver
    /// calls [`Session::set_client_id`] with a fresh one.
    pub fn needs_new_id(&self, now: Time) -> bool {
        self.tasks.is_empty()
            && (self.renew || now.saturating_sub(self.born) >= self.opts.renew_after)
    }

    /// Continues under `id` with a fresh seq space. Panics with anything in
    /// flight: a request is never resent under another id.
    pub fn set_client_id(&mut self, id: ClientId, now: Time) {
        assert!(self.tasks.is_empty(), "renewing the id with requests out");
        self.client_id = id;
        self.next_seq = 1;
        self.acks = AckWindow::default();
        self.renew = false;
        self.born = now;
    }

    /// Caches `config` for routing if it is at least as new as the one
    /// held (a driver that fetched it already, as `synod-bench` does before
    /// its workers start, saves every session a first query). Returns
    /// whether it was taken.
    pub fn install_config(&mut self, config: Config) -> bool {
        self.router.install(config)
    }

    /// Gives up on every request without completing any (their caller is
    /// gone: the RESP gateway's connection closed). Queued ones are
    /// dropped; the seqs of admitted ones (a refresh's too) are retired, so
    /// the next request acknowledges every seq used so far and a copy
    /// still on its way is refused by the servers as stale, never applied.
    /// Late answers are dropped. The session stays usable, for another
    /// caller (its id, routes and leader hints are kept).
    pub fn abandon_all(&mut self) {
        self.queue.clear();
        self.completions.clear();
        // Two-phase commit messages go on (locks in the groups are released
        // only by them); the caller no longer waits for their answer.
        let mut kept = Vec::new();
        for (h, task) in self.tasks.drain() {
            if matches!(task.purpose, Purpose::Part { .. }) {
                kept.push((h, task));
            } else {
                self.acks.retire(task.seq);
            }
        }
        // Not handed out yet: nobody waits for these any more, except the
        // frames of the messages kept.
        let kept_ids: Vec<u64> = kept
            .iter()
            .filter_map(|(_, t)| match &t.state {
                State::Sent { request_id, .. } => Some(*request_id),
                _ => None,
            })
            .collect();
        self.transmits
            .retain(|t| kept_ids.contains(&t.frame.request_id));
        for t in self.txns.values_mut() {
            t.user = None;
        }
        self.deadlines = kept.iter().map(|(h, t)| (t.deadline, *h)).collect();
        self.ready = kept
            .iter()
            .filter_map(|(h, t)| match t.state {
                State::Ready { at } => Some((at, *h)),
                _ => None,
            })
            .collect();
        self.rpc = kept
            .iter()
            .filter_map(|(h, t)| match &t.state {
                State::Sent {
                    rpc_deadline,
                    request_id,
                    ..
                } => Some((*rpc_deadline, *h, *request_id)),
                _ => None,
            })
            .collect();
        self.parked = kept
            .iter()
            .filter(|(_, t)| t.state == State::AwaitConfig)
            .count();
        self.tasks.extend(kept);
        self.active = 0;
        self.refresh = None;
        debug_assert!(!self.tasks.is_empty() || self.acks.ack_seq() + 1 == self.next_seq);
    }

    /// Counts of the non-final answers so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }

    /// A connection the driver must drop (silent past the rpc timeout, or
    /// answering what was never asked): its requests are already
    /// rescheduled. Reporting it back through [`Session::on_conn_failed`]
    /// is harmless.
    pub fn poll_close(&mut self) -> Option<(Dest, String)> {
        self.closes.pop_front()
    }

    /// Does the work due at `now`: ends overdue requests, drops silent
    /// connections, admits requests into the window, routes and sends what
    /// is ready, starts a configuration refresh if one is wanted.
    pub fn poll(&mut self, now: Time) {
        self.expire(now);
        while !self.renew && self.active < self.opts.in_flight_max {
            let Some((handle, req)) = self.queue.pop_front() else {
                break;
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            self.active += 1;
            let deadline = now.saturating_add(self.opts.timeout);
            self.add_task(handle, Purpose::User, req, seq, deadline, now);
        }
        self.send_ready(now);
        if std::mem::take(&mut self.parts_added) {
            // Transactions that just started two-phase commit: their
            // prepares go out in this poll too.
            self.send_ready(now);
        }
        if self.start_refresh(now) {
            self.send_ready(now);
        }
        self.tidy();
    }

    /// Entries in the task timers, live and stale (tests bound them).
    #[cfg(test)]
    pub(crate) fn timer_entries(&self) -> usize {
        self.deadlines.len() + self.ready.len() + self.rpc.len()
    }

    /// When [`Session::poll`] must run again if nothing arrives before.
    pub fn next_wake(&self, now: Time) -> Option<Time> {
        let mut wake: Option<Time> = None;
        let mut at = |t: Time| wake = Some(wake.map_or(t, |w: Time| w.min(t)));
        if !self.queue.is_empty() && !self.renew && self.active < self.opts.in_flight_max {
            at(now);
        }
        // The heaps' tops are live (`tidy`): their minimum over every task.
        if let Some((t, _)) = self.deadlines.peek() {
            at(*t);
        }
        if let Some((t, _)) = self.ready.peek() {
            at(*t);
        }
        if let Some((t, _, _)) = self.rpc.peek() {
            at(*t);
        }
        if self.parked > 0 && self.refresh.is_none() && self.router.has_masters() {
            at(self
                .last_refresh
                .map_or(now, |l| (l + REFRESH_SPACING).max(now)));
        }
        wake
    }

    /// Where the send with `request_id` went (the connection, and the
    /// request's group), while it is the current attempt of a request: for
    /// drivers whose replies do not say which connection they came on (the
    /// simulator's network).
    pub fn dest_of(&self, request_id: u64) -> Option<(&Dest, GroupId)> {
        match &self.tasks.get(&(request_id >> SEND_BITS))?.state {
            State::Sent {
                dest,
                gid,
                request_id: current,
                ..
            } if *current == request_id => Some((dest, *gid)),
            _ => None,
        }
    }

    /// A frame arrived from `dest`.
    pub fn on_frame(&mut self, dest: &Dest, frame: Frame, now: Time) {
        let handle = frame.request_id >> SEND_BITS;
        let closes = self.closes.len();
        let refresh = self.refresh;
        self.take_frame(dest, frame, now);
        // Only this request changed, unless a connection was dropped or a
        // refresh finished (which move others): the timers' tops can only
        // have gone stale if one of them is this request's.
        if self.closes.len() != closes || refresh == Some(handle) || self.at_a_top(handle) {
            self.tidy();
        }
    }

    /// Is one of the timers' first entries `handle`'s?
    fn at_a_top(&self, handle: u64) -> bool {
        self.deadlines.peek().is_some_and(|&(_, h)| h == handle)
            || self.ready.peek().is_some_and(|&(_, h)| h == handle)
            || self.rpc.peek().is_some_and(|&(_, h, _)| h == handle)
    }

    fn take_frame(&mut self, dest: &Dest, frame: Frame, now: Time) {
        let handle = frame.request_id >> SEND_BITS;
        let sends = frame.request_id & ((1 << SEND_BITS) - 1);
        let Some(task) = self.tasks.get(&handle) else {
            if handle == 0 || handle >= self.next_handle {
                self.close(dest, "reply with a request id never sent", now);
            }
            // Otherwise: the request finished already; a late answer.
            return;
        };
        let State::Sent {
            dest: sent_to,
            gid,
            request_id,
            index,
            ..
        } = &task.state
        else {
            if sends > task.sends {
                self.close(dest, "reply with a request id never sent", now);
            }
            return; // an earlier send's answer, after a resend was scheduled
        };
        if *request_id != frame.request_id {
            if sends > task.sends {
                self.close(dest, "reply with a request id never sent", now);
            }
            return; // an earlier send's answer
        }
        if sent_to != dest {
            // Request ids are unique per session: a reply on another
            // connection is a confused server.
            self.close(dest, "reply to a request sent elsewhere", now);
            return;
        }
        let (gid, index) = (*gid, *index);
        if matches!(frame.message, Message::Reply(ClientReply::WrongCore)) {
            self.on_wrong_core(handle, dest, gid, now);
            return;
        }
        if dest.gid == gid {
            // Served on its own connection: bound to this group's core.
            self.lanes.confirm(dest);
        }
        if gid == 0 {
            // Some master answered: the masters are reachable after all.
            self.refresh_failure = None;
        }
        // Reads (Get, Ttl) answer NoKey for an absent key.
        let is_get = matches!(&task.req, Req::Kv(op) if op.is_read());
        let is_kv = matches!(task.req, Req::Kv(_));
        match frame.message {
            Message::Reply(ClientReply::Ok(v)) if is_kv => {
                self.finish(handle, Ok(Answer::Kv(Some(v))), now)
            }
            Message::Reply(ClientReply::NoKey) if is_get => {
                self.finish(handle, Ok(Answer::Kv(None)), now)
            }
            Message::Config(config) if !is_kv => {
                self.finish(handle, Ok(Answer::Config(config)), now)
            }
            // A server from before stopped replicas answered NotLeader said
            // "replica stopped: <disk error>": not a refusal of the request
            // but a member that cannot serve; the others may.
            Message::Reply(ClientReply::Error { reason })
                if reason.starts_with(STOPPED_REPLICA) =>
            {
                self.router.on_failure(gid, index);
                self.retry(handle, Some(reason), now);
            }
            Message::Reply(ClientReply::Error { reason })
                if reason == synod_wire::TXN_SPANS_GROUPS
                    && matches!(
                        self.tasks.get(&handle).map(|t| &t.req),
                        Some(Req::Kv(Op::Txn(_)))
                    ) =>
            {
                // The group of the first key refused it for good under this
                // seq (the refusal is cached in the session there, so no
                // copy of it can apply later): its keys now lie in several
                // groups. Run it again under a new seq, planned from a newer
                // configuration (two-phase commit, or one group again).
                self.stats.wrong_group += 1;
                let task = self.tasks.get_mut(&handle).expect("looked up");
                self.acks.retire(task.seq);
                task.seq = self.next_seq;
                self.next_seq += 1;
                task.delivered = 0;
                task.attempt += 1;
                if let Req::Kv(op) = &task.req {
                    self.router.invalidate_key(op.key());
                }
                task.state = State::AwaitConfig;
                self.parked += 1;
            }
            Message::Reply(ClientReply::Error { reason }) => {
                self.finish(handle, Err(ClientError::Refused(reason)), now)
            }
            Message::Reply(ClientReply::SessionExpired) if is_kv => {
                self.renew = true;
                self.finish(handle, Err(ClientError::SessionExpired), now)
            }
            Message::Reply(ClientReply::WrongGroup) if is_kv => {
                self.stats.wrong_group += 1;
                let task = self.tasks.get_mut(&handle).expect("looked up");
                if let Req::Kv(op) = &task.req {
                    self.router.invalidate_key(op.key());
                }
                if matches!(
                    task.purpose,
                    Purpose::Part {
                        role: Role::Prepare(_),
                        ..
                    }
                ) {
                    // The part's keys may now lie in other groups: the
                    // attempt aborts and the transaction is planned again.
                    let e = ClientError::Protocol(PART_WRONG_GROUP.to_string());
                    self.finish(handle, Err(e), now);
                    return;
                }
                let task = self.tasks.get_mut(&handle).expect("looked up");
                task.attempt += 1;
                task.state = State::AwaitConfig;
                self.parked += 1;
            }
            Message::Reply(ClientReply::NotLeader { leader }) => {
                self.stats.not_leader += 1;
                // A KV leader past the server list this session knows: the
                // group gained a member (replace, add-member) since its
                // configuration, which may well list dead servers by now.
                // Fetch the latest, as on WrongGroup, instead of cycling
                // through the old list until the deadline.
                let grown = is_kv
                    && gid != 0
                    && leader.is_some_and(|l| l as usize >= self.router.member_count(gid));
                self.router.on_not_leader(gid, index, leader);
                let task = self.tasks.get_mut(&handle).expect("looked up");
                if grown {
                    task.attempt += 1;
                    task.state = State::AwaitConfig;
                    self.parked += 1;
                    return;
                }
                task.attempt += 1;
                task.redirects += 1;
                let hinted = leader.is_some_and(|l| l as usize != index);
                let at = if hinted && task.redirects <= FREE_REDIRECTS {
                    now
                } else {
                    now + backoff_capped(task.redirects, self.rng.next_u64(), self.opts.backoff_max)
                };
                task.state = State::Ready { at };
                self.ready.push((at, handle));
            }
            Message::Reply(ClientReply::Busy) => {
                self.stats.busy += 1;
                // Same member: it leads, it is only overloaded.
                self.retry(handle, None, now);
            }
            other => {
                // A server that answers nonsense cannot be trusted on this
                // connection: drop it and resend elsewhere.
                let why = format!("unexpected reply kind {}", synod_wire::kind_of(&other));
                self.close(dest, &why, now);
            }
        }
    }

    /// `WrongCore` for `handle`, a request of group `gid`, on connection
    /// `dest`: not executed, and not the member's fault. Resent at once,
    /// on another connection: `dest` is never tried again for `gid`; if it
    /// was `gid`'s own, it got bound to another core (another group's frame
    /// went first, after a reconnect), so it is closed to reopen right.
    fn on_wrong_core(&mut self, handle: u64, dest: &Dest, gid: GroupId, now: Time) {
        self.stats.wrong_core += 1;
        self.lanes.reject(dest, gid);
        let task = self.tasks.get_mut(&handle).expect("answered task exists");
        task.delivered = task.delivered.saturating_sub(1);
        if dest.gid != gid {
            // Another group's connection: the next is tried, or its own.
            self.resend_now(handle, now);
            return;
        }
        // Its own connection again and again would be a server (or driver)
        // that binds wrongly: back off rather than spin until the deadline.
        task.rebinds += 1;
        if task.rebinds == 1 {
            self.resend_now(handle, now);
        } else {
            let delay = backoff_capped(task.rebinds, self.rng.next_u64(), self.opts.backoff_max);
            task.state = State::Ready { at: now + delay };
            self.ready.push((now + delay, handle));
        }
        self.closes
            .push_back((dest.clone(), "bound to another core".to_string()));
        self.conn_failed(dest, "bound to another core", Fault::None, now);
    }

    /// Sends `handle` again as soon as the session is polled, with no
    /// backoff and nothing counted against its member: its last send was
    /// not executed (`WrongCore`), or was lost with a connection the
    /// session dropped for reasons of its own.
    fn resend_now(&mut self, handle: u64, now: Time) {
        let task = self.tasks.get_mut(&handle).expect("resent task exists");
        task.state = State::Ready { at: now };
        self.ready.push((now, handle));
    }

    /// The connection to `dest` failed, closed, or could not be opened
    /// (`delivered == false`: what was handed to it never left): every
    /// request on it goes to the next member after a backoff.
    pub fn on_conn_failed(&mut self, dest: &Dest, reason: &str, delivered: bool, now: Time) {
        let fault = if delivered {
            Fault::Member
        } else {
            Fault::NeverSent
        };
        self.conn_failed(dest, reason, fault, now);
        self.tidy();
    }

    fn conn_failed(&mut self, dest: &Dest, reason: &str, fault: Fault, now: Time) {
        self.lanes.forget(dest);
        // Frames for it not handed out yet would reopen it, possibly bound
        // to the wrong core (another group's frame first): their requests
        // are among those rescheduled below.
        let mut unsent: Vec<u64> = Vec::new();
        self.transmits.retain(|t| {
            let keep = t.dest != *dest;
            if !keep {
                unsent.push(t.frame.request_id);
            }
            keep
        });
        // A scan, but only when a connection fails; oldest request first.
        let mut victims: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(&t.state, State::Sent { dest: d, .. } if d == dest))
            .map(|(&h, _)| h)
            .collect();
        victims.sort_unstable();
        for handle in victims {
            let task = self.tasks.get_mut(&handle).expect("listed");
            let State::Sent {
                gid,
                index,
                request_id,
                ..
            } = task.state
            else {
                unreachable!("filtered on Sent")
            };
            if fault == Fault::NeverSent || unsent.contains(&request_id) {
                task.delivered = task.delivered.saturating_sub(1);
            }
            if fault == Fault::None {
                self.resend_now(handle, now);
                continue;
            }
            let why = format!("{}: {reason}", dest.addr);
            if task.purpose == Purpose::Refresh {
                self.refresh_failure = Some(why.clone());
            }
            self.router.on_failure(gid, index);
            self.retry(handle, Some(why), now);
        }
    }

    fn close(&mut self, dest: &Dest, reason: &str, now: Time) {
        self.closes.push_back((dest.clone(), reason.to_string()));
        self.conn_failed(dest, reason, Fault::Member, now);
    }

    /// Another attempt of `handle` after a backoff.
    fn retry(&mut self, handle: u64, why: Option<String>, now: Time) {
        let task = self.tasks.get_mut(&handle).expect("retried task exists");
        task.attempt += 1;
        if why.is_some() {
            task.last_failure = why;
        }
        let delay = backoff_capped(task.attempt, self.rng.next_u64(), self.opts.backoff_max);
        task.state = State::Ready { at: now + delay };
        self.ready.push((now + delay, handle));
    }

    fn add_task(
        &mut self,
        handle: u64,
        purpose: Purpose,
        req: Req,
        seq: Seq,
        deadline: Time,
        now: Time,
    ) {
        self.tasks.insert(
            handle,
            Task {
                purpose,
                req,
                seq,
                deadline,
                attempt: 0,
                redirects: 0,
                sends: 0,
                rebinds: 0,
                delivered: 0,
                state: State::Ready { at: now },
                last_failure: None,
            },
        );
        self.deadlines.push((deadline, handle));
        self.ready.push((now, handle));
    }

    /// Drops stale entries from the heaps' tops, so each top is a live
    /// task's, and rebuilds a heap that holds more than twice the tasks
    /// (stale entries below a live top), so they stay bounded.
    fn tidy(&mut self) {
        let tasks = &self.tasks;
        while let Some(&(at, h)) = self.deadlines.peek() {
            if tasks.get(&h).is_some_and(|t| t.deadline == at) {
                break;
            }
            self.deadlines.pop();
        }
        while let Some(&(at, h)) = self.ready.peek() {
            if tasks
                .get(&h)
                .is_some_and(|t| t.state == State::Ready { at })
            {
                break;
            }
            self.ready.pop();
        }
        while let Some(&(_, h, id)) = self.rpc.peek() {
            if tasks.get(&h).is_some_and(|t| t.sent_as(id)) {
                break;
            }
            self.rpc.pop();
        }
        let limit = 2 * tasks.len() + 64;
        if self.deadlines.len() > limit {
            self.deadlines = tasks.iter().map(|(&h, t)| (t.deadline, h)).collect();
        }
        if self.ready.len() > limit {
            self.ready = tasks
                .iter()
                .filter_map(|(&h, t)| match t.state {
                    State::Ready { at } => Some((at, h)),
                    _ => None,
                })
                .collect();
        }
        if self.rpc.len() > limit {
            self.rpc = tasks
                .iter()
                .filter_map(|(&h, t)| match &t.state {
                    State::Sent {
                        rpc_deadline,
                        request_id,
                        ..
                    } => Some((*rpc_deadline, h, *request_id)),
                    _ => None,
                })
                .collect();
        }
    }

    fn expire(&mut self, now: Time) {
        let mut overdue = Vec::new();
        while let Some(&(at, h)) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self.tasks.get(&h).is_some_and(|t| t.deadline == at) {
                overdue.push(h);
            }
        }
        let mut late = Vec::new();
        while let Some(&(at, h, id)) = self.rpc.peek() {
            if at > now {
                break;
            }
            self.rpc.pop();
            // An overdue request fails below rather than being resent.
            if self
                .tasks
                .get(&h)
                .is_some_and(|t| t.sent_as(id) && t.deadline > now)
            {
                late.push(h);
            }
        }
        if overdue.is_empty() && late.is_empty() {
            return;
        }
        // Oldest request first, as a scan of the tasks in handle order.
        overdue.sort_unstable();
        late.sort_unstable();
        let mut slow: Vec<Dest> = Vec::new();
        for h in late {
            if let Some(State::Sent { dest, .. }) = self.tasks.get(&h).map(|t| &t.state) {
                if !slow.contains(dest) {
                    slow.push(dest.clone());
                }
            }
        }
        for h in overdue {
            let Some(t) = self.tasks.get(&h) else {
                continue; // a refresh failure finished it already
            };
            let error = if t.delivered > 0 {
                ClientError::Timeout
            } else if let Some(why) = t.last_failure.as_ref().or(self.refresh_failure.as_ref()) {
                ClientError::Unreachable(why.clone())
            } else {
                ClientError::Timeout
            };
            self.finish(h, Err(error), now);
        }
        for dest in slow {
            self.close(&dest, "no reply within the rpc timeout", now);
        }
    }

    /// Starts a Query of the latest configuration when some request waits
    /// for one, none runs, and the last began long enough ago.
    fn start_refresh(&mut self, now: Time) -> bool {
        if self.parked == 0
            || self.refresh.is_some()
            || !self.router.has_masters()
            || self.last_refresh.is_some_and(|l| now < l + REFRESH_SPACING)
        {
            return false;
        }
        let Some(deadline) = self
            .tasks
            .values()
            .filter(|t| t.state == State::AwaitConfig)
            .map(|t| t.deadline)
            .max()
        else {
            unreachable!("{} tasks parked", self.parked);
        };
        let handle = self.next_handle;
        self.next_handle += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let req = Req::Master(MasterOp::Query { num: None });
        self.add_task(handle, Purpose::Refresh, req, seq, deadline, now);
        self.refresh = Some(handle);
        self.last_refresh = Some(now);
        true
    }

    fn send_ready(&mut self, now: Time) {
        let mut due = std::mem::take(&mut self.scratch);
        while let Some(&(at, h)) = self.ready.peek() {
            if at > now {
                break;
            }
            self.ready.pop();
            if self
                .tasks
                .get(&h)
                .is_some_and(|t| t.state == State::Ready { at })
            {
                due.push(h);
            }
        }
        // Oldest request first, as a scan of the tasks in handle order
        // (one task may have been made ready twice for the same time).
        due.sort_unstable();
        due.dedup();
        for &handle in &due {
            let task = self.tasks.get(&handle).expect("listed");
            // A transaction already sent as one group's request may have
            // applied there: it goes on under the same seq, to its first
            // key's group (which answers a copy that applied, or refuses it
            // for good: `TXN_SPANS_GROUPS`), never beside it as two-phase
            // commit under a new id, which could apply it twice.
            if matches!(task.req, Req::Kv(Op::Txn(_))) && task.delivered == 0 {
                if let Some(parts) = self.cross_group_plan(handle) {
                    self.start_two_pc(handle, parts, now);
                    continue;
                }
            }
            let task = self.tasks.get_mut(&handle).expect("listed");
            let route = match (&task.req, task.purpose) {
                (Req::Kv(_), Purpose::Part { gid, .. }) => self.router.route_gid_ref(gid),
                (Req::Kv(op), _) => self.router.route_key_ref(op.key()),
                (Req::Master(_), _) => self.router.route_master_ref(),
            };
            let Some((gid, index, addr)) = route else {
                task.state = State::AwaitConfig;
                self.parked += 1;
                if let Some(config) = self.router.config() {
                    // The configuration does not route this key (no group
                    // has joined yet, or the shard is between groups):
                    // say why if the deadline comes first.
                    task.attempt += 1;
                    task.last_failure = Some(format!(
                        "no group serves this key's shard in configuration {} \
                         (has a group joined?)",
                        config.num
                    ));
                }
                continue;
            };
            let addr = intern(&mut self.addrs, addr);
            task.sends = (task.sends + 1) & ((1 << SEND_BITS) - 1);
            let request_id = handle << SEND_BITS | task.sends;
            let (client_id, seq, ack_seq) = (self.client_id, task.seq, self.acks.ack_seq());
            let message = match &task.req {
                Req::Kv(op) => Message::Request(ClientRequest {
                    client_id,
                    seq,
                    ack_seq,
                    op: op.clone(),
                }),
                Req::Master(op) => Message::Master(MasterRequest {
                    client_id,
                    seq,
                    ack_seq,
                    op: op.clone(),
                }),
            };
            let conn = self.lanes.conn_for(&addr, gid);
            let dest = Dest { addr, gid: conn };
            let rpc_deadline = now + self.opts.rpc_timeout;
            task.delivered += 1;
            task.state = State::Sent {
                dest: dest.clone(),
                gid,
                request_id,
                index,
                rpc_deadline,
            };
            self.rpc.push((rpc_deadline, handle, request_id));
            self.transmits.push_back(Transmit {
                dest,
                frame: Frame {
                    request_id,
                    group: gid,
                    message,
                },
            });
        }
        due.clear();
        self.scratch = due;
    }

    /// The parts of a transaction whose keys lie in several groups under
    /// the cached configuration, one per group. `None` for anything else,
    /// or when some key is not routable yet (the request then waits for a
    /// configuration like any other).
    fn cross_group_plan(&self, handle: u64) -> Option<Vec<twopc::Part>> {
        let Req::Kv(Op::Txn(txn)) = &self.tasks.get(&handle)?.req else {
            return None;
        };
        let parts = twopc::plan(txn, |key| {
            self.router.route_key_ref(key).map(|(gid, _, _)| gid)
        })?;
        (parts.len() > 1).then_some(parts)
    }

    /// Starts one attempt of two-phase commit for the caller's transaction
    /// `handle`: a fresh transaction id (this session's id and a seq of its
    /// own, retired at once: it names the attempt, it is never sent as a
    /// request), and a prepare to every part's group, in parallel.
    fn start_two_pc(&mut self, handle: u64, parts: Vec<twopc::Part>, now: Time) {
        let key = self.next_txn;
        self.next_txn += 1;
        let id_seq = self.next_seq;
        self.next_seq += 1;
        self.acks.retire(id_seq);
        let id = TxnId {
            client: self.client_id,
            seq: id_seq,
        };
        let task = self.tasks.get_mut(&handle).expect("listed");
        task.state = State::TwoPc(key);
        let Req::Kv(Op::Txn(txn)) = &task.req else {
            unreachable!("planned from a transaction")
        };
        let txn = (**txn).clone();
        self.stats.two_pc += 1;
        let coordinator = parts[0].gid;
        for (i, part) in parts.iter().enumerate() {
            let op = Op::TxnPrepare(Box::new(TxnPrepare {
                txn: id,
                part: part.txn.clone(),
                coordinator,
            }));
            self.router.remember(part.gid);
            self.add_part(key, Role::Prepare(i), part.gid, op, now);
        }
        self.txns.insert(
            key,
            TwoPc {
                user: Some(handle),
                txn,
                id,
                votes: vec![None; parts.len()],
                outstanding: parts.len(),
                parts,
                outcome: None,
            },
        );
    }

    /// Queues one internal message of two-phase commit `txn`, with a seq
    /// of its own (so it is deduplicated like every request).
    fn add_part(&mut self, txn: u64, role: Role, gid: GroupId, op: Op, now: Time) {
        let handle = self.next_handle;
        self.next_handle += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let deadline = now.saturating_add(self.opts.timeout.saturating_mul(PART_PATIENCE));
        self.parts_added = true;
        self.add_task(
            handle,
            Purpose::Part { txn, role, gid },
            Req::Kv(op),
            seq,
            deadline,
            now,
        );
    }

    /// An internal message of two-phase commit `key` finished.
    fn on_part(&mut self, key: u64, role: Role, result: Result<Answer, ClientError>, now: Time) {
        let Some(t) = self.txns.get_mut(&key) else {
            return;
        };
        t.outstanding -= 1;
        match role {
            Role::Prepare(i) => {
                t.votes[i] = Some(match result {
                    Ok(Answer::Kv(Some(v))) => match decode_txn_vote(v) {
                        Ok(v) if v.yes => Vote::Yes(v),
                        Ok(_) => Vote::No,
                        Err(e) => Vote::Failed(ClientError::Protocol(format!("bad vote: {e}"))),
                    },
                    Err(ClientError::Protocol(why)) if why == PART_WRONG_GROUP => Vote::WrongGroup,
                    Err(e) => Vote::Failed(e),
                    Ok(other) => Vote::Failed(ClientError::Protocol(format!(
                        "unexpected answer to a prepare: {other:?}"
                    ))),
                });
                if t.votes.iter().any(Option::is_none) {
                    return;
                }
                let yes: Vec<&TxnVote> = t
                    .votes
                    .iter()
                    .filter_map(|v| match v {
                        Some(Vote::Yes(v)) => Some(v),
                        _ => None,
                    })
                    .collect();
                if yes.len() == t.parts.len() {
                    // Every group voted Yes: the decision goes to the
                    // coordinator's log; the caller hears once it is there.
                    let outcome = twopc::outcome(&yes);
                    t.outcome = Some(outcome);
                    t.outstanding += 1;
                    let op = twopc::finish_op(true, t.id, &t.parts[0], outcome);
                    let gid = t.parts[0].gid;
                    self.add_part(key, Role::Decide, gid, op, now);
                    return;
                }
                // Abort: release what may have been prepared, and try
                // again as a new attempt (after a refresh on WrongGroup).
                t.outcome = Some(TxnOutcome::Abort);
                let wrong = t.votes.iter().any(|v| matches!(v, Some(Vote::WrongGroup)));
                let failed = t.votes.iter().find_map(|v| match v {
                    Some(Vote::Failed(e)) => Some(e.clone()),
                    _ => None,
                });
                // Every part but a definite No may hold a prepared copy (a
                // reply lost, then a WrongGroup from a resend): all of them
                // get the abort; one holding nothing answers so.
                let held: Vec<usize> = (0..t.parts.len())
                    .filter(|&i| !matches!(t.votes[i], Some(Vote::No)))
                    .collect();
                let ops: Vec<(GroupId, Op)> = held
                    .iter()
                    .map(|&i| {
                        let op = twopc::finish_op(false, t.id, &t.parts[i], TxnOutcome::Abort);
                        (t.parts[i].gid, op)
                    })
                    .collect();
                t.outstanding += held.len();
                let user = t.user.take();
                self.stats.two_pc_aborts += 1;
                for (i, (gid, op)) in held.into_iter().zip(ops) {
                    self.add_part(key, Role::Finish(i), gid, op, now);
                }
                match (user, failed) {
                    (Some(h), Some(e)) if self.tasks.contains_key(&h) => {
                        self.finish(h, Err(e), now)
                    }
                    (Some(h), _) => self.retry_txn(h, wrong, now),
                    (None, _) => {}
                }
            }
            Role::Decide => {
                let outcome = t.outcome.expect("decided before the decision was sent");
                // The coordinator answers the outcome that stands in its
                // log: ours, or Abort if a participant that found our
                // prepare too old asked it first (presumed abort).
                let stands = match &result {
                    Ok(Answer::Kv(Some(v))) if v.len() == 1 => Some(v[0]),
                    _ => None,
                };
                let user = t.user.take();
                if stands == Some(TxnOutcome::Abort as u8) && outcome != TxnOutcome::Abort {
                    // Lost to a presumed abort: nothing applied anywhere
                    // (the participants learn Abort from the coordinator,
                    // or from these finishes, whichever first). Retried
                    // under a new id, as after a No vote.
                    t.outcome = Some(TxnOutcome::Abort);
                    let ops: Vec<(usize, GroupId, Op)> = (1..t.parts.len())
                        .map(|i| {
                            let op = twopc::finish_op(false, t.id, &t.parts[i], TxnOutcome::Abort);
                            (i, t.parts[i].gid, op)
                        })
                        .collect();
                    t.outstanding += ops.len();
                    self.stats.two_pc_aborts += 1;
                    self.stats.two_pc_presumed_aborts += 1;
                    for (i, gid, op) in ops {
                        self.add_part(key, Role::Finish(i), gid, op, now);
                    }
                    if let Some(h) = user {
                        self.retry_txn(h, false, now);
                    }
                } else {
                    let durable = stands == Some(outcome as u8);
                    let answer = if durable {
                        let votes: Vec<&TxnVote> = t
                            .votes
                            .iter()
                            .filter_map(|v| match v {
                                Some(Vote::Yes(v)) => Some(v),
                                _ => None,
                            })
                            .collect();
                        let merged = twopc::merge(&t.txn, &t.parts, &votes, outcome);
                        let ops: Vec<(usize, GroupId, Op)> = (1..t.parts.len())
                            .map(|i| {
                                let op = twopc::finish_op(false, t.id, &t.parts[i], outcome);
                                (i, t.parts[i].gid, op)
                            })
                            .collect();
                        t.outstanding += ops.len();
                        for (i, gid, op) in ops {
                            self.add_part(key, Role::Finish(i), gid, op, now);
                        }
                        match merged {
                            Some(r) => Ok(Answer::Kv(Some(encode_txn_result(&r)))),
                            None => Err(ClientError::Protocol(
                                "a transaction vote without its results".to_string(),
                            )),
                        }
                    } else {
                        // The decision's fate is unknown (no answer, or
                        // `0xFF`: the coordinator remembers no decision and
                        // holds no part, i.e. one older than its
                        // retention): the participants keep their locks
                        // until they ask the coordinator themselves.
                        log::warn!("transaction {:?}: decision not confirmed: {result:?}", t.id);
                        Err(match result {
                            Err(e) => e,
                            Ok(_) => ClientError::Protocol(
                                "the coordinator knows no decision of this transaction".to_string(),
                            ),
                        })
                    };
                    if let Some(h) = user.filter(|h| self.tasks.contains_key(h)) {
                        self.finish(h, answer, now);
                    }
                }
            }
            Role::Finish(_) => {}
        }
        if self.txns.get(&key).is_some_and(|t| t.outstanding == 0) {
            let t = self.txns.remove(&key).expect("looked up");
            for p in &t.parts {
                if !self
                    .txns
                    .values()
                    .any(|o| o.parts.iter().any(|q| q.gid == p.gid))
                {
                    self.router.forget(p.gid);
                }
            }
        }
    }

    /// The caller's transaction `handle` aborted; another attempt after a
    /// backoff (no-wait locking: a conflict is retried, never waited for),
    /// or after a configuration refresh if a group answered `WrongGroup`.
    fn retry_txn(&mut self, handle: u64, wrong_group: bool, now: Time) {
        let Some(task) = self.tasks.get_mut(&handle) else {
            return; // the caller's deadline passed meanwhile
        };
        task.attempt += 1;
        if wrong_group {
            task.state = State::AwaitConfig;
            self.parked += 1;
        } else {
            let at = now + backoff_capped(task.attempt, self.rng.next_u64(), self.opts.backoff_max);
            task.state = State::Ready { at };
            self.ready.push((at, handle));
        }
    }

    /// Records a request's final result and retires its seq.
    fn finish(&mut self, handle: u64, result: Result<Answer, ClientError>, now: Time) {
        let task = self.tasks.remove(&handle).expect("finished task exists");
        if task.state == State::AwaitConfig {
            self.parked -= 1;
        }
        self.acks.retire(task.seq);
        if let Ok(Answer::Config(config)) = &result {
            self.router.install(config.clone());
        }
        match task.purpose {
            Purpose::User => {
                self.active -= 1;
                self.completions.push_back(Completion {
                    handle,
                    seq: Some(task.seq),
                    result,
                    req: task.req,
                });
            }
            Purpose::Part { txn, role, .. } => self.on_part(txn, role, result, now),
            Purpose::Refresh => {
                self.refresh = None;
                let mut parked: Vec<u64> = if self.parked == 0 {
                    Vec::new()
                } else {
                    self.tasks
                        .iter()
                        .filter(|(_, t)| t.state == State::AwaitConfig)
                        .map(|(&h, _)| h)
                        .collect()
                };
                parked.sort_unstable();
                match result {
                    Ok(_) => {
                        // Parked requests try again with the new routes,
                        // backing off in case the groups have not caught up.
                        for h in parked {
                            let t = self.tasks.get_mut(&h).expect("listed");
                            let delay = backoff_capped(
                                t.attempt,
                                self.rng.next_u64(),
                                self.opts.backoff_max,
                            );
                            t.state = State::Ready { at: now + delay };
                            self.ready.push((now + delay, h));
                            self.parked -= 1;
                        }
                    }
                    Err(ClientError::Unreachable(why)) => self.refresh_failure = Some(why),
                    Err(ClientError::Refused(why)) | Err(ClientError::Protocol(why)) => {
                        // A master refusing a Query refuses every retry:
                        // fail the requests that need it now.
                        for h in parked {
                            let e = ClientError::Protocol(format!(
                                "cannot fetch the configuration: {why}"
                            ));
                            self.finish(h, Err(e), now);
                        }
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod timer_tests {
    use super::Timers;
    use crate::rng::Rng;

    /// In order or not, entries come out earliest first, and `peek` names
    /// what `pop` takes.
    #[test]
    fn timers_pop_in_order_whatever_the_push_order() {
        let mut rng = Rng::new(3);
        let mut t: Timers<(u64, u64)> = Timers::default();
        let mut all = Vec::new();
        let mut clock = 0;
        for h in 0..500 {
            // Mostly later than the last, sometimes earlier (a backoff, a
            // clock that went back).
            clock += rng.next_u64() % 10;
            let at = if rng.next_u64().is_multiple_of(4) {
                clock.saturating_sub(rng.next_u64() % 50)
            } else {
                clock
            };
            t.push((at, h));
            all.push((at, h));
            if h.is_multiple_of(7) {
                let first = *t.peek().unwrap();
                assert_eq!(t.pop(), Some(first));
                all.sort_unstable();
                assert_eq!(all.remove(0), first);
            }
        }
        all.sort_unstable();
        let out: Vec<_> = std::iter::from_fn(|| t.pop()).collect();
        assert_eq!(out, all);
        assert_eq!(t.len(), 0);
    }
}
