//! One gateway event loop's side toward the cluster: non-blocking
//! connections to group members over the native binary protocol, with many
//! RESP connections' requests pipelined on each.
//!
//! It owns what `client::Client` owns, minus the blocking transport: the
//! configuration cache and key → shard → group routing with leader hints
//! (`client::logic::Router`, shared code), one at-most-once session per RESP
//! connection (random client id, a seq per operation kept across every
//! resend, `ack_seq` = the contiguous low-water mark of finished seqs,
//! `client::logic::AckWindow`), and the retry rules of PROTOCOL.md section
//! 7: `NotLeader` follows the hint (at once for the first few redirects,
//! then with backoff), `Busy` backs off on the same member, `WrongGroup`
//! forgets the shard's owner and refreshes the configuration from the
//! masters, a lost or silent connection resends everything that was on it
//! to the next member. Every operation ends by its deadline
//! (`ClientOptions::timeout`): `Timeout` if it was ever delivered (it may
//! have executed), `Unreachable` if not.
//!
//! One connection per (member address, group), as the native client, so
//! the server binds it to the core owning the group and every request stays
//! there. All frames queued for a connection in one loop turn leave in one
//! write. Replies are matched by request id, which is fresh for every send
//! (`task id << 16 | send count`), so a late reply to an attempt already
//! retried elsewhere is recognised and dropped.
//!
//! What it must never do: block (no DNS: addresses are `IP:port`; connects
//! are non-blocking), panic on anything a server sends, or keep an
//! operation past its deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Registry, Token};
use synod_wire::{
    ClientId, ClientReply, ClientRequest, Frame, GroupId, MasterOp, MasterRequest, Message, Op, Seq,
};

use super::idmap::IdMap;
use crate::client::logic::{backoff, AckWindow, Route, Router};
use crate::client::mio_conn::MioConn;
use crate::client::{check_size, ClientError, ClientOptions, OpResult, Req};
use crate::rng::Rng;

/// Redirects with a usable leader hint that are followed at once; past
/// this a request backs off (an election in progress can bounce it).
const FREE_REDIRECTS: u32 = 3;
/// Least time between two configuration queries of one loop, so tasks
/// parked on a shard no group serves yet cannot make it spin.
const REFRESH_SPACING: Duration = Duration::from_millis(20);
/// How often deadlines are checked.
const EXPIRE_SCAN_INTERVAL: Duration = Duration::from_millis(10);
/// Bytes asked of a socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Most bytes read from one upstream connection per loop turn (fairness
/// with the RESP side; mio is edge-triggered, so the rest is read on a
/// later turn without waiting for an event).
const READ_BUDGET_BYTES: usize = 4 << 20;
/// Request ids are `task id << SEND_BITS | sends`: the task is found from
/// the reply without a second map, and each send of it has its own id.
const SEND_BITS: u32 = 16;

/// Who waits for a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// An operation of the RESP connection `session` (its key names it:
    /// one operation per key and connection is in flight).
    Kv { session: usize },
    /// The loop's own query of the latest configuration.
    Refresh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// To be sent at `at` (in the timer heap) or now (in `ready`).
    Ready { at: Instant },
    /// No route until a newer configuration arrives.
    AwaitConfig,
    /// On the wire on connection `conn`.
    Sent {
        conn: usize,
        request_id: u64,
        gid: GroupId,
        index: usize,
        rpc_deadline: Instant,
    },
}

struct Task {
    purpose: Purpose,
    req: Req,
    client_id: ClientId,
    seq: Seq,
    deadline: Instant,
    /// Failed attempts so far; drives the backoff.
    attempt: u32,
    /// Sends so far (the low bits of the request id).
    sends: u64,
    redirects: u32,
    state: State,
    /// Delivered at least once: a deadline now means "maybe executed".
    sent_once: bool,
    last_failure: Option<String>,
}

/// One at-most-once session with the cluster.
///
/// A RESP connection borrows one for its lifetime and gives it back to the
/// loop's pool when it closes (see [`Upstream::close_session`]), so the
/// servers hold sessions for the gateway's concurrent connections, not for
/// every connection it ever had.
struct SessionState {
    client_id: ClientId,
    next_seq: Seq,
    acks: AckWindow,
    /// When the id was made: an id older than [`SESSION_RENEW_AFTER`] is
    /// replaced at the first chance when nothing of it is in flight.
    born: Instant,
    /// When it went back to the pool (unused while lent out).
    released: Instant,
    /// A `SessionExpired` came back: replace the id when nothing of it is
    /// in flight, and never pool it.
    renew: bool,
    /// Its operations not finished yet.
    in_flight: usize,
}

impl SessionState {
    fn new(client_id: ClientId, now: Instant) -> SessionState {
        SessionState {
            client_id,
            next_seq: 1,
            acks: AckWindow::default(),
            born: now,
            released: now,
            renew: false,
            in_flight: 0,
        }
    }

    /// Safe to lend to the next connection, or to keep using, as is.
    fn fresh(&self, now: Instant) -> bool {
        !self.renew && now.duration_since(self.born) < SESSION_RENEW_AFTER
    }
}

/// A session id older than this is replaced once nothing of it is in
/// flight, and a pooled one unused for longer is dropped. Well below the
/// servers' session TTL (10 minutes by default), so a connection's
/// sessions do not expire under it while it is in use, and a new
/// connection's id is newer than those of sessions the servers dropped for
/// inactivity (which they refuse to reopen, PROTOCOL.md 7).
const SESSION_RENEW_AFTER: Duration = Duration::from_secs(120);

/// Released sessions a loop keeps for reuse at most.
const SESSION_POOL_MAX: usize = 4096;

/// One connection to a group member.
struct UpConn {
    conn: MioConn,
    key: (String, GroupId),
}

/// The cluster side of one event loop.
pub struct Upstream {
    /// The loop's registry (a clone), to register and deregister sockets.
    registry: Registry,
    timeout: Duration,
    rpc_timeout: Duration,
    router: Router,
    rng: Rng,
    sessions: IdMap<usize, SessionState>,
    /// Sessions of closed connections, for the next ones (most recently
    /// released last).
    pool: Vec<SessionState>,
    /// The loop's own session, for master queries.
    master: SessionState,
    tasks: IdMap<u64, Task>,
    next_task: u64,
    conns: IdMap<usize, UpConn>,
    /// Open connections of each group by member address (a handful per
    /// group: a scan beats building a `(String, GroupId)` key per send).
    conn_by_member: IdMap<GroupId, Vec<(String, usize)>>,
    next_conn_token: usize,
    /// Tasks to send this turn.
    ready: Vec<u64>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Tasks parked in [`State::AwaitConfig`].
    awaiting: usize,
    refresh: Option<u64>,
    last_refresh: Option<Instant>,
    refresh_failure: Option<String>,
    /// Connections with bytes to write.
    dirty: Vec<usize>,
    /// Connections with more to read than one turn's budget.
    unread: Vec<usize>,
    last_scan: Instant,
    /// Finished operations: (session, key, result), for the loop to hand
    /// to its RESP connections.
    pub completions: Vec<(usize, Bytes, OpResult)>,
    scratch: Vec<u8>,
    /// The key and identity every connection authenticates with, if any.
    auth: Option<(crate::auth::Key, crate::auth::Identity)>,
}

impl Upstream {
    /// `first_token`: upstream connections get mio tokens from here up.
    pub fn new(
        registry: Registry,
        opts: &ClientOptions,
        seed: u64,
        first_token: usize,
        now: Instant,
    ) -> Upstream {
        let mut rng = Rng::new(seed);
        let master = SessionState::new(
            synod_wire::client_id_at(synod_wire::unix_now_ms(), rng.next_u64()),
            now,
        );
        Upstream {
            registry,
            timeout: opts.timeout,
            rpc_timeout: opts
                .rpc_timeout
                .min(opts.timeout)
                .max(Duration::from_millis(1)),
            router: Router::new(opts.masters.clone()),
            rng,
            sessions: IdMap::default(),
            pool: Vec::new(),
            master,
            tasks: IdMap::default(),
            next_task: 1,
            conns: IdMap::default(),
            conn_by_member: IdMap::default(),
            next_conn_token: first_token,
            ready: Vec::new(),
            timers: BinaryHeap::new(),
            awaiting: 0,
            refresh: None,
            last_refresh: None,
            refresh_failure: None,
            dirty: Vec::new(),
            unread: Vec::new(),
            last_scan: now,
            completions: Vec::new(),
            scratch: vec![0; READ_CHUNK_BYTES],
            auth: crate::auth::stream::client_identity(
                opts.cluster_key.as_ref(),
                opts.client_key.as_ref(),
            ),
        }
    }

    /// Is `token` one of this side's connections?
    pub fn owns(&self, token: usize) -> bool {
        self.conns.contains_key(&token)
    }

    /// Gives RESP connection `session` an at-most-once session: a pooled
    /// one released by a closed connection if a fresh one is there, else a
    /// new time-ordered client id. Returns its client id.
    pub fn open_session(&mut self, session: usize, now: Instant) -> ClientId {
        while let Some(pooled) = self.pool.pop() {
            if pooled.fresh(now) {
                let id = pooled.client_id;
                self.sessions.insert(session, pooled);
                return id;
            }
            // The rest of the pool was released even earlier: too old too
            // (most recently released last, and ids only age).
            if now.duration_since(pooled.released) >= SESSION_RENEW_AFTER {
                self.pool.clear();
            }
        }
        let state = self.new_session_state(now);
        let id = state.client_id;
        self.sessions.insert(session, state);
        id
    }

    fn new_session_state(&mut self, now: Instant) -> SessionState {
        let id = synod_wire::client_id_at(synod_wire::unix_now_ms(), self.rng.next_u64());
        SessionState::new(id, now)
    }

    /// Forgets RESP connection `session` and every operation it has in
    /// flight: their late replies are ignored. Its at-most-once session
    /// goes back to the pool with every seq it used acknowledged (the
    /// abandoned ones too: their callers are gone, and a copy still on its
    /// way is then refused as stale instead of applied), so the next
    /// connection's first request frees the servers' cached replies and no
    /// server session is opened per connection. Costs no message.
    pub fn close_session(&mut self, session: usize, now: Instant) {
        let Some(mut state) = self.sessions.remove(&session) else {
            return;
        };
        let mine: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.purpose == Purpose::Kv { session })
            .map(|(&id, _)| id)
            .collect();
        for id in mine {
            let task = self.tasks.remove(&id).expect("listed");
            if task.state == State::AwaitConfig {
                self.awaiting -= 1;
            }
            state.acks.retire(task.seq);
            state.in_flight -= 1;
        }
        if state.fresh(now) && self.pool.len() < SESSION_POOL_MAX {
            debug_assert_eq!(state.in_flight, 0);
            debug_assert_eq!(state.acks.ack_seq() + 1, state.next_seq);
            state.released = now;
            self.pool.push(state);
        }
    }

    /// Replaces `session`'s id if it must be (a `SessionExpired` came back)
    /// or should be (it is old), provided nothing of it is in flight: a
    /// request in flight must never be resent under another id.
    fn maybe_renew(&mut self, session: usize, now: Instant) {
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        if s.in_flight == 0 && !s.fresh(now) {
            let state = self.new_session_state(now);
            self.sessions.insert(session, state);
        }
    }

    /// Starts operation `op` for `session`; its result comes back in
    /// [`Upstream::completions`] with its key.
    pub fn submit(&mut self, session: usize, op: Op, now: Instant) {
        let req = Req::Kv(op);
        if let Err(e) = check_size(&req) {
            let Req::Kv(op) = req else { unreachable!() };
            self.completions.push((session, op.key().clone(), Err(e)));
            return;
        }
        self.maybe_renew(session, now);
        let s = self
            .sessions
            .get_mut(&session)
            .expect("operations come from open sessions");
        let seq = s.next_seq;
        s.next_seq += 1;
        s.in_flight += 1;
        let client_id = s.client_id;
        self.add_task(Purpose::Kv { session }, req, client_id, seq, now);
    }

    fn add_task(
        &mut self,
        purpose: Purpose,
        req: Req,
        client_id: ClientId,
        seq: Seq,
        now: Instant,
    ) {
        let id = self.next_task;
        self.next_task += 1;
        self.tasks.insert(
            id,
            Task {
                purpose,
                req,
                client_id,
                seq,
                deadline: now + self.timeout,
                attempt: 0,
                sends: 0,
                redirects: 0,
                state: State::Ready { at: now },
                sent_once: false,
                last_failure: None,
            },
        );
        self.ready.push(id);
    }

    /// When the loop must run again even if no socket has news.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut wake = self.timers.peek().map(|Reverse((at, _))| *at);
        if !self.tasks.is_empty() {
            let scan = self.last_scan + EXPIRE_SCAN_INTERVAL;
            wake = Some(wake.map_or(scan, |w| w.min(scan)));
        }
        if !self.ready.is_empty() || !self.unread.is_empty() || self.refresh_wanted(now) {
            return Some(now);
        }
        if self.awaiting > 0 && self.refresh.is_none() {
            if let Some(last) = self.last_refresh {
                let at = last + REFRESH_SPACING;
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        wake
    }

    fn refresh_wanted(&self, now: Instant) -> bool {
        self.awaiting > 0
            && self.refresh.is_none()
            && self
                .last_refresh
                .is_none_or(|t| now.saturating_duration_since(t) >= REFRESH_SPACING)
    }

    /// Does everything due: expires deadlines, moves due retries to ready,
    /// starts a configuration query if one is needed, sends every ready
    /// task and writes every connection with something to write.
    pub fn pump(&mut self, now: Instant) {
        let unread = std::mem::take(&mut self.unread);
        for token in unread {
            self.on_readable(token, now);
        }
        if now.saturating_duration_since(self.last_scan) >= EXPIRE_SCAN_INTERVAL {
            self.last_scan = now;
            self.expire(now);
        }
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            // Stale entries (the task finished or was rescheduled) are
            // skipped: a live one is Ready at exactly this instant.
            if self
                .tasks
                .get(&id)
                .is_some_and(|t| t.state == State::Ready { at })
            {
                self.ready.push(id);
            }
        }
        let ready = std::mem::take(&mut self.ready);
        for id in ready {
            self.send_task(id, now);
        }
        if self.refresh_wanted(now) {
            self.start_refresh(now);
            let ready = std::mem::take(&mut self.ready);
            for id in ready {
                self.send_task(id, now);
            }
        }
        self.flush(now);
    }

    fn start_refresh(&mut self, now: Instant) {
        let seq = self.master.next_seq;
        self.master.next_seq += 1;
        let client_id = self.master.client_id;
        self.add_task(
            Purpose::Refresh,
            Req::Master(MasterOp::Query { num: None }),
            client_id,
            seq,
            now,
        );
        self.refresh = Some(self.next_task - 1);
        self.last_refresh = Some(now);
    }

    fn schedule(&mut self, id: u64, at: Instant, now: Instant) {
        let task = self.tasks.get_mut(&id).expect("scheduled task exists");
        task.state = State::Ready { at };
        if at <= now {
            self.ready.push(id);
        } else {
            self.timers.push(Reverse((at, id)));
        }
    }

    fn park(&mut self, id: u64) {
        let task = self.tasks.get_mut(&id).expect("parked task exists");
        if task.state != State::AwaitConfig {
            task.state = State::AwaitConfig;
            self.awaiting += 1;
        }
    }

    fn send_task(&mut self, id: u64, now: Instant) {
        let Some(task) = self.tasks.get(&id) else {
            return;
        };
        if !matches!(task.state, State::Ready { .. }) {
            return; // listed twice; already sent
        }
        let (gid, index, conn) = match &task.req {
            Req::Kv(op) => match self.router.route_key_ref(op.key()) {
                Some((gid, index, addr)) => match self.lookup_conn(gid, addr) {
                    Some(c) => (gid, index, Ok(c)),
                    None => {
                        let addr = addr.to_string();
                        (gid, index, self.conn_for(&addr, gid))
                    }
                },
                None => {
                    if let Some(config) = self.router.config() {
                        // The configuration we have does not route this key
                        // (no group has joined yet, or the shard is between
                        // groups).
                        let why = format!(
                            "no group serves this key's shard in configuration {} \
                             (has a group joined?)",
                            config.num
                        );
                        let task = self.tasks.get_mut(&id).expect("checked");
                        task.attempt += 1;
                        task.last_failure = Some(why);
                    }
                    self.park(id);
                    return;
                }
            },
            Req::Master(_) => match self.router.route_master() {
                Route::To { gid, index, addr } => match self.lookup_conn(gid, &addr) {
                    Some(c) => (gid, index, Ok(c)),
                    None => (gid, index, self.conn_for(&addr, gid)),
                },
                Route::NeedConfig => unreachable!("the masters are always known"),
            },
        };
        let conn = match conn {
            Ok(c) => c,
            Err(why) => {
                self.router.on_failure(gid, index);
                if self.tasks[&id].purpose == Purpose::Refresh {
                    self.refresh_failure = Some(why.clone());
                }
                let attempt = {
                    let task = self.tasks.get_mut(&id).expect("checked");
                    task.attempt += 1;
                    task.last_failure = Some(why);
                    task.attempt
                };
                let at = now + backoff(attempt, self.rng.next_u64());
                self.schedule(id, at, now);
                return;
            }
        };
        let task = self.tasks.get_mut(&id).expect("checked");
        task.sends += 1;
        let request_id = (id << SEND_BITS) | (task.sends & ((1 << SEND_BITS) - 1));
        let ack_seq = match task.purpose {
            Purpose::Kv { session } => self.sessions.get(&session).map_or(0, |s| s.acks.ack_seq()),
            Purpose::Refresh => self.master.acks.ack_seq(),
        };
        let message = match &task.req {
            Req::Kv(op) => Message::Request(ClientRequest {
                client_id: task.client_id,
                seq: task.seq,
                ack_seq,
                op: op.clone(),
            }),
            Req::Master(op) => Message::Master(MasterRequest {
                client_id: task.client_id,
                seq: task.seq,
                ack_seq,
                op: op.clone(),
            }),
        };
        let c = self
            .conns
            .get_mut(&conn)
            .expect("connections found are open");
        if !c.conn.wants_write() {
            self.dirty.push(conn);
        }
        c.conn.queue(&Frame {
            request_id,
            group: gid,
            message,
        });
        task.state = State::Sent {
            conn,
            request_id,
            gid,
            index,
            rpc_deadline: now + self.rpc_timeout,
        };
        task.sent_once = true;
    }

    /// The open connection to member `addr` of group `gid`, if any.
    fn lookup_conn(&self, gid: GroupId, addr: &str) -> Option<usize> {
        self.conn_by_member
            .get(&gid)?
            .iter()
            .find(|(a, _)| a == addr)
            .map(|&(_, t)| t)
    }

    /// Connects to member `addr` of group `gid` (no connection is open).
    fn conn_for(&mut self, addr: &str, gid: GroupId) -> Result<usize, String> {
        debug_assert!(self.lookup_conn(gid, addr).is_none());
        let sa: SocketAddr = addr
            .parse()
            .map_err(|_| format!("{addr}: not an IP:port address"))?;
        let token = self.next_conn_token;
        self.next_conn_token += 1;
        let conn = MioConn::connect(sa, gid, self.auth.as_ref(), &self.registry, Token(token))?;
        self.conns.insert(
            token,
            UpConn {
                conn,
                key: (addr.to_string(), gid),
            },
        );
        self.conn_by_member
            .entry(gid)
            .or_default()
            .push((addr.to_string(), token));
        Ok(token)
    }

    /// Writes what every dirty connection has queued, as far as the
    /// sockets take it.
    fn flush(&mut self, now: Instant) {
        let dirty = std::mem::take(&mut self.dirty);
        for token in dirty {
            let Some(c) = self.conns.get_mut(&token) else {
                continue;
            };
            if let Err(why) = c.conn.flush() {
                self.close_conn(token, &why, now);
            }
        }
    }

    /// A writable (or error) event on upstream connection `token`.
    pub fn on_writable(&mut self, token: usize, now: Instant) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if let Err(why) = c.conn.on_writable() {
            self.close_conn(token, &why, now);
        }
    }

    /// A readable event on upstream connection `token`.
    pub fn on_readable(&mut self, token: usize, now: Instant) {
        let mut frames = Vec::new();
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        let outcome = c
            .conn
            .read(&mut self.scratch, READ_BUDGET_BYTES, &mut frames);
        if outcome.more {
            self.unread.push(token);
        }
        if c.conn.wants_write() {
            // The handshake's proof (and the requests held for it).
            self.dirty.push(token);
        }
        for frame in frames {
            self.on_frame(token, frame, now);
        }
        if let Some(why) = outcome.failure {
            self.close_conn(token, &why, now);
        }
    }

    fn on_frame(&mut self, conn: usize, frame: Frame, now: Instant) {
        let id = frame.request_id >> SEND_BITS;
        let Some(task) = self.tasks.get_mut(&id) else {
            // The task finished (or its connection closed) already.
            return;
        };
        let State::Sent {
            conn: sent_on,
            request_id,
            gid,
            index,
            ..
        } = task.state
        else {
            return; // an earlier send's reply, after a resend was scheduled
        };
        if request_id != frame.request_id {
            return; // an earlier send's reply
        }
        if sent_on != conn {
            // Request ids are unique per loop: a reply on another
            // connection is a confused server. Drop that connection.
            self.close_conn(conn, "reply to a request sent elsewhere", now);
            return;
        }
        if gid == 0 {
            self.refresh_failure = None;
        }
        let is_get = matches!(task.req, Req::Kv(Op::Get { .. }));
        match (&task.req, frame.message) {
            (Req::Kv(_), Message::Reply(ClientReply::Ok(v))) => self.finish(id, Ok(Some(v)), now),
            (Req::Kv(_), Message::Reply(ClientReply::NoKey)) if is_get => {
                self.finish(id, Ok(None), now)
            }
            (Req::Master(_), Message::Config(config)) => {
                self.router.install(config);
                self.finish(id, Ok(None), now);
            }
            (_, Message::Reply(ClientReply::Error { reason })) => {
                self.finish(id, Err(ClientError::Refused(reason)), now)
            }
            (Req::Kv(_), Message::Reply(ClientReply::SessionExpired)) => {
                if let Purpose::Kv { session } = task.purpose {
                    if let Some(s) = self.sessions.get_mut(&session) {
                        s.renew = true;
                    }
                }
                self.finish(id, Err(ClientError::SessionExpired), now)
            }
            (Req::Kv(op), Message::Reply(ClientReply::WrongGroup)) => {
                self.router.invalidate_key(op.key());
                task.attempt += 1;
                self.park(id);
            }
            (_, Message::Reply(ClientReply::NotLeader { leader })) => {
                self.router.on_not_leader(gid, index, leader);
                task.attempt += 1;
                task.redirects += 1;
                let hinted = leader.is_some_and(|l| l as usize != index);
                let at = if hinted && task.redirects <= FREE_REDIRECTS {
                    now
                } else {
                    now + backoff(task.redirects, self.rng.next_u64())
                };
                self.schedule(id, at, now);
            }
            (_, Message::Reply(ClientReply::Busy)) => {
                // Same member: it leads, it is only overloaded.
                task.attempt += 1;
                let at = now + backoff(task.attempt, self.rng.next_u64());
                self.schedule(id, at, now);
            }
            (_, other) => {
                // A server that answers nonsense cannot be trusted on this
                // connection: drop it and resend elsewhere.
                let why = format!("unexpected reply kind {}", synod_wire::kind_of(&other));
                task.attempt += 1;
                task.last_failure = Some(why.clone());
                let at = now + backoff(task.attempt, self.rng.next_u64());
                self.router.on_failure(gid, index);
                self.schedule(id, at, now);
                self.close_conn(conn, &why, now);
            }
        }
    }

    /// Tasks waiting for a newer configuration.
    fn parked(&self) -> Vec<u64> {
        self.tasks
            .iter()
            .filter(|(_, t)| t.state == State::AwaitConfig)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Records a task's final result, retires its seq and (for a KV task)
    /// hands the result to its RESP connection.
    fn finish(&mut self, id: u64, result: OpResult, now: Instant) {
        let task = self.tasks.remove(&id).expect("finished task exists");
        if task.state == State::AwaitConfig {
            self.awaiting -= 1;
        }
        match task.purpose {
            Purpose::Kv { session } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.acks.retire(task.seq);
                    s.in_flight -= 1;
                    let Req::Kv(op) = task.req else {
                        unreachable!("KV tasks carry an op")
                    };
                    let key = op.key().clone();
                    self.completions.push((session, key, result));
                }
            }
            Purpose::Refresh => {
                self.master.acks.retire(task.seq);
                self.refresh = None;
                match result {
                    Ok(_) => {
                        // Parked tasks try again with the new routes, backing
                        // off in case the groups have not caught up yet.
                        let parked = self.parked();
                        for p in parked {
                            self.awaiting -= 1;
                            let attempt = self.tasks[&p].attempt;
                            let at = now + backoff(attempt, self.rng.next_u64());
                            self.schedule(p, at, now);
                        }
                    }
                    Err(ClientError::Unreachable(why)) => self.refresh_failure = Some(why),
                    Err(ClientError::Refused(why)) | Err(ClientError::Protocol(why)) => {
                        // A master refusing a Query refuses every retry:
                        // fail the tasks that need it now.
                        let parked = self.parked();
                        for p in parked {
                            let e = ClientError::Protocol(format!(
                                "cannot fetch the configuration: {why}"
                            ));
                            self.finish(p, Err(e), now);
                        }
                    }
                    Err(_) => {}
                }
            }
        }
    }

    /// Ends tasks past their deadline and drops connections whose replies
    /// are overdue (their server is treated as failed).
    fn expire(&mut self, now: Instant) {
        let mut overdue = Vec::new();
        let mut slow = Vec::new();
        for (&id, t) in &self.tasks {
            if t.deadline <= now {
                overdue.push(id);
            } else if let State::Sent {
                conn, rpc_deadline, ..
            } = t.state
            {
                if rpc_deadline <= now {
                    slow.push(conn);
                }
            }
        }
        for id in overdue {
            let t = &self.tasks[&id];
            let error = if t.sent_once {
                ClientError::Timeout
            } else if let Some(why) = t.last_failure.as_ref().or(self.refresh_failure.as_ref()) {
                ClientError::Unreachable(why.clone())
            } else {
                ClientError::Timeout
            };
            self.finish(id, Err(error), now);
        }
        slow.sort_unstable();
        slow.dedup();
        for conn in slow {
            self.close_conn(conn, "no reply within the rpc timeout", now);
        }
    }

    /// Drops connection `token` and resends, after a backoff, every task
    /// that was waiting on it, moving the leader hint past that server.
    fn close_conn(&mut self, token: usize, reason: &str, now: Instant) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        if let Some(members) = self.conn_by_member.get_mut(&c.key.1) {
            members.retain(|&(_, t)| t != token);
        }
        c.conn.deregister(&self.registry);
        log::debug!(
            "RESP upstream: dropping connection to {} (group {}): {reason}",
            c.key.0,
            c.key.1
        );
        let victims: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.state, State::Sent { conn, .. } if conn == token))
            .map(|(&id, _)| id)
            .collect();
        for id in victims {
            let task = self.tasks.get_mut(&id).expect("listed");
            let State::Sent { gid, index, .. } = task.state else {
                unreachable!("filtered on Sent")
            };
            task.attempt += 1;
            task.last_failure = Some(format!("{}: {reason}", c.key.0));
            if task.purpose == Purpose::Refresh {
                self.refresh_failure = task.last_failure.clone();
            }
            let attempt = task.attempt;
            self.router.on_failure(gid, index);
            let at = now + backoff(attempt, self.rng.next_u64());
            self.schedule(id, at, now);
        }
    }
}
