//! One gateway event loop's side toward the cluster: a session core
//! ([`Session`], the one every client drives) per RESP connection, and the
//! loop's non-blocking connections to group members over the native
//! binary protocol, which every session of the loop shares.
//!
//! Every protocol rule (routing with leader hints, the at-most-once
//! identity with a seq per operation kept across every resend, `ack_seq`,
//! retries and backoff, configuration refresh on `WrongGroup`, deadlines)
//! is the session's. This file is I/O and scheduling only:
//! - connections: one per `Dest` the sessions name (member address, and
//!   the group whose core the server binds it to; the groups of one core
//!   share it once a session knows they may, `client::session::Dest`), as
//!   the native client; all frames queued for one in a loop turn leave in one
//!   write (`client::mio_conn`, which also runs the authentication
//!   handshake);
//! - request ids: sessions number their sends independently, so each send
//!   gets a loop-wide id on the wire and the answer is handed back to its
//!   session under the session's own id ([`Upstream::wire_ids`]);
//! - scheduling: which sessions to poll this turn (news arrived, or their
//!   next wake-up is due);
//! - the session pool: a RESP connection borrows a session for its
//!   lifetime and gives it back when it closes (see
//!   [`Upstream::close_session`]), so the servers hold sessions for the
//!   gateway's concurrent connections, not for every connection it ever had.
//!
//! What it must never do: block (no DNS: addresses are `IP:port`; connects
//! are non-blocking), panic on anything a server sends, or keep an
//! operation past its deadline (the session's).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::Registry;
use synod_wire::{ClientId, Config, Frame, GroupId, Op};

use crate::client::idmap::IdMap;
use crate::client::mio_conn::Conns;
use crate::client::session::{Answer, Dest, Req, Session, SessionOptions, Time};
use crate::client::wire_ids::{Answered, WireIds};
use crate::client::{ClientOptions, OpResult};
use crate::rng::Rng;

/// How often wire ids whose send the session no longer waits for (it gave
/// up on the request, or its connection closed) are forgotten.
const WIRE_ID_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// A pooled session released longer ago than its session's renewal age
/// is not reused; the pool holds at most this many.
const SESSION_POOL_MAX: usize = 4096;
/// A session id older than this is replaced once nothing of it is in
/// flight, and a pooled one unused for longer is dropped. Well below the
/// servers' session TTL (10 minutes by default), so a connection's
/// sessions do not expire under it while it is in use, and a new
/// connection's id is newer than those of sessions the servers dropped for
/// inactivity (which they refuse to reopen, PROTOCOL.md 7).
const SESSION_RENEW_AFTER: Duration = Duration::from_secs(120);

/// A RESP connection's session and when it wants to be polled.
struct Lent {
    session: Session,
    wake: Option<Time>,
    /// Listed in `Upstream::touched` for this turn.
    touched: bool,
}

/// The cluster side of one event loop.
pub struct Upstream {
    /// The loop's registry (a clone), to register and deregister sockets.
    registry: Registry,
    opts: SessionOptions,
    masters: Vec<String>,
    rng: Rng,
    /// The loop's clock for its sessions starts here.
    epoch: Instant,
    sessions: IdMap<usize, Lent>,
    /// Sessions of closed connections, for the next ones (most recently
    /// released last), with when they were released.
    pool: Vec<(Session, Time)>,
    /// The newest configuration any session learned: a new session starts
    /// routing with it instead of querying the masters first.
    latest: Option<Config>,
    /// Sessions to poll this turn.
    touched: Vec<usize>,
    /// Sessions' next wake-ups (stale entries are skipped).
    wakes: BinaryHeap<Reverse<(Time, usize)>>,
    /// Connections to group members, each with where it goes.
    conns: Conns<Dest>,
    /// Open connections by the group that names them (`Dest::gid`), then
    /// member address (a handful per group: a scan beats hashing a `Dest`
    /// per send).
    conn_by_member: IdMap<GroupId, Vec<(Arc<str>, usize)>>,
    /// Sends on the wire by the loop-wide id they carry, each with its
    /// RESP connection's session.
    wire_ids: WireIds,
    last_sweep: Time,
    /// Reused by every read: the frames it decoded.
    frames: Vec<Frame>,
    /// Finished operations: (session, key, result), for the loop to hand
    /// to its RESP connections.
    pub completions: Vec<(usize, Bytes, OpResult)>,
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
        let mut session_opts =
            SessionOptions::new(opts.timeout, opts.rpc_timeout, opts.in_flight_max);
        session_opts.renew_after = SESSION_RENEW_AFTER;
        session_opts.share_connections = opts.share_connections;
        Upstream {
            registry,
            opts: session_opts,
            masters: opts.masters.clone(),
            rng: Rng::new(seed),
            epoch: now,
            sessions: IdMap::default(),
            pool: Vec::new(),
            latest: None,
            touched: Vec::new(),
            wakes: BinaryHeap::new(),
            conns: Conns::new(
                first_token,
                crate::auth::stream::client_identity(
                    opts.cluster_key.as_ref(),
                    opts.client_key.as_ref(),
                ),
            ),
            conn_by_member: IdMap::default(),
            wire_ids: WireIds::default(),
            last_sweep: Time::ZERO,
            frames: Vec::new(),
            completions: Vec::new(),
        }
    }

    fn time(&self, t: Instant) -> Time {
        t.saturating_duration_since(self.epoch)
    }

    fn fresh_id(&mut self) -> ClientId {
        synod_wire::client_id_at(synod_wire::unix_now_ms(), self.rng.next_u64())
    }

    /// Is `token` one of this side's connections?
    pub fn owns(&self, token: usize) -> bool {
        self.conns.contains(token)
    }

    /// Gives RESP connection `session` an at-most-once session: a pooled
    /// one released by a closed connection if a fresh one is there, else a
    /// new one under a new time-ordered client id. Returns its client id.
    pub fn open_session(&mut self, session: usize, now: Instant) -> ClientId {
        let now_t = self.time(now);
        let mut chosen = None;
        while let Some((pooled, released)) = self.pool.pop() {
            if !pooled.needs_new_id(now_t) {
                chosen = Some(pooled);
                break;
            }
            // The rest of the pool was released even earlier: too old too
            // (most recently released last, and ids only age).
            if now_t.saturating_sub(released) >= SESSION_RENEW_AFTER {
                self.pool.clear();
            }
        }
        let mut session_core = match chosen {
            Some(s) => s,
            None => {
                let id = self.fresh_id();
                let seed = self.rng.next_u64();
                Session::with_masters(self.opts.clone(), self.masters.clone(), id, seed, now_t)
            }
        };
        if let Some(latest) = &self.latest {
            if session_core.config().is_none_or(|c| c.num < latest.num) {
                session_core.install_config(latest.clone());
            }
        }
        let id = session_core.client_id();
        self.sessions.insert(
            session,
            Lent {
                session: session_core,
                wake: None,
                touched: false,
            },
        );
        id
    }

    /// Forgets RESP connection `session` and every operation it has in
    /// flight: their late replies are ignored. Its at-most-once session
    /// goes back to the pool with every seq it used acknowledged (the
    /// abandoned ones too: their callers are gone, and a copy still on its
    /// way is then refused as stale instead of applied), so the next
    /// connection's first request frees the servers' cached replies and no
    /// server session is opened per connection. Costs no message.
    pub fn close_session(&mut self, session: usize, now: Instant) {
        let Some(mut lent) = self.sessions.remove(&session) else {
            return;
        };
        lent.session.abandon_all();
        let now_t = self.time(now);
        if !lent.session.needs_new_id(now_t) && self.pool.len() < SESSION_POOL_MAX {
            self.pool.push((lent.session, now_t));
        }
    }

    /// Starts operation `op` for `session`; its result comes back in
    /// [`Upstream::completions`] with its key.
    pub fn submit(&mut self, session: usize, op: Op, now: Instant) {
        let now_t = self.time(now);
        if self
            .sessions
            .get(&session)
            .is_some_and(|l| l.session.needs_new_id(now_t))
        {
            let id = self.fresh_id();
            let lent = self.sessions.get_mut(&session).expect("checked");
            lent.session.set_client_id(id, now_t);
        }
        let lent = self
            .sessions
            .get_mut(&session)
            .expect("operations come from open sessions");
        lent.session.submit(Req::Kv(op));
        self.touch(session);
    }

    fn touch(&mut self, session: usize) {
        if let Some(lent) = self.sessions.get_mut(&session) {
            if !lent.touched {
                lent.touched = true;
                self.touched.push(session);
            }
        }
    }

    /// When the loop must run again even if no socket has news.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        if !self.touched.is_empty() || self.conns.has_unread() {
            return Some(now);
        }
        let mut wake = self.wakes.peek().map(|Reverse((at, _))| self.epoch + *at);
        if !self.wire_ids.is_empty() {
            let sweep = self.epoch + self.last_sweep + WIRE_ID_SWEEP_INTERVAL;
            wake = Some(wake.map_or(sweep, |w| w.min(sweep)));
        }
        wake
    }

    /// Does everything due: reads what a turn's budget left unread, polls
    /// every session with news or a wake-up due, sends what they produced
    /// and writes every connection with something to write.
    pub fn pump(&mut self, now: Instant) {
        for token in self.conns.take_unread() {
            self.on_readable(token, now);
        }
        let now_t = self.time(now);
        while let Some(&Reverse((at, session))) = self.wakes.peek() {
            if at > now_t {
                break;
            }
            self.wakes.pop();
            // Stale entries (the wake-up moved since) are skipped.
            if let Some(lent) = self.sessions.get_mut(&session) {
                if lent.wake == Some(at) {
                    lent.wake = None; // its entry is used up
                    self.touch(session);
                }
            }
        }
        // Polling one session can fail a connection others use, which
        // touches them again: they are polled in the same turn.
        while let Some(session) = self.touched.pop() {
            self.step(session, now_t);
        }
        if now_t.saturating_sub(self.last_sweep) >= WIRE_ID_SWEEP_INTERVAL {
            self.last_sweep = now_t;
            self.sweep_wire_ids();
        }
        self.flush(now_t);
    }

    /// Polls `session` and carries out what it asks: connections to drop,
    /// frames to send, finished operations.
    fn step(&mut self, session: usize, now: Time) {
        let Some(lent) = self.sessions.get_mut(&session) else {
            return;
        };
        lent.touched = false;
        // Twice at most: after a `SessionExpired`, the last request in
        // flight finishing lets a fresh id take the queued ones.
        for _ in 0..2 {
            let lent = self.sessions.get_mut(&session).expect("looked up");
            if lent.session.needs_new_id(now) {
                let id = synod_wire::client_id_at(synod_wire::unix_now_ms(), self.rng.next_u64());
                lent.session.set_client_id(id, now);
            }
            lent.session.poll(now);
            while let Some((dest, why)) = self.lent(session).poll_close() {
                if let Some(token) = self.lookup_conn(dest.gid, &dest.addr) {
                    self.close_conn(token, &why, now);
                }
            }
            while let Some(t) = self.lent(session).poll_transmit() {
                self.send(session, t.dest, t.frame, now);
            }
            self.drain_completions(session);
            if !self.lent(session).needs_new_id(now) {
                break;
            }
        }
        let lent = self.sessions.get_mut(&session).expect("looked up");
        if let Some(config) = lent.session.config() {
            if self.latest.as_ref().is_none_or(|l| l.num < config.num) {
                self.latest = Some(config.clone());
            }
        }
        let wake = lent.session.next_wake(now);
        if wake != lent.wake {
            lent.wake = wake;
            if let Some(at) = wake {
                self.wakes.push(Reverse((at, session)));
            }
            // Entries of wake-ups that moved stay until they come due: past
            // twice the sessions, keep only the current ones.
            if self.wakes.len() > 2 * self.sessions.len() + 64 {
                self.wakes = self
                    .sessions
                    .iter()
                    .filter_map(|(&s, l)| l.wake.map(|at| Reverse((at, s))))
                    .collect();
            }
        }
    }

    /// Hands `session`'s finished operations to the loop.
    fn drain_completions(&mut self, session: usize) {
        while let Some(done) = self.lent(session).poll_completion() {
            let Req::Kv(op) = done.req else {
                unreachable!("the gateway submits KV requests only")
            };
            let result = match done.result {
                Ok(Answer::Kv(v)) => Ok(v),
                Ok(Answer::Config(_)) => unreachable!("a KV request answers a KV result"),
                Err(e) => Err(e),
            };
            self.completions.push((session, op.key().clone(), result));
        }
    }

    fn lent(&mut self, session: usize) -> &mut Session {
        &mut self
            .sessions
            .get_mut(&session)
            .expect("stepped sessions are open")
            .session
    }

    /// Queues `frame` of `session` for `dest` under a loop-wide wire id,
    /// connecting if no connection is open.
    fn send(&mut self, session: usize, dest: Dest, mut frame: Frame, now: Time) {
        let token = match self.lookup_conn(dest.gid, &dest.addr) {
            Some(token) => token,
            None => match self.connect(&dest) {
                Ok(token) => token,
                Err(why) => {
                    // It never left: the session resends it elsewhere after
                    // a backoff.
                    self.lent(session).on_conn_failed(&dest, &why, false, now);
                    return;
                }
            },
        };
        self.wire_ids.stamp(session, token, &mut frame);
        self.conns.queue(token, &frame);
    }

    /// Forgets wire ids whose session no longer waits for that send (it
    /// finished the request, gave up on it, or its connection closed), so
    /// an answer that never comes costs nothing for long.
    fn sweep_wire_ids(&mut self) {
        let sessions = &self.sessions;
        self.wire_ids.retain_waiting(|session, request_id| {
            sessions
                .get(&session)
                .is_some_and(|l| l.session.dest_of(request_id).is_some())
        });
    }

    /// The open connection to member `addr` of group `gid`, if any.
    fn lookup_conn(&self, gid: GroupId, addr: &str) -> Option<usize> {
        self.conn_by_member
            .get(&gid)?
            .iter()
            .find(|(a, _)| **a == *addr)
            .map(|&(_, t)| t)
    }

    /// Connects to `dest` (no connection is open).
    fn connect(&mut self, dest: &Dest) -> Result<usize, String> {
        let sa: SocketAddr = dest
            .addr
            .parse()
            .map_err(|_| format!("{}: not an IP:port address", dest.addr))?;
        let token = self
            .conns
            .open(sa, dest.gid, &self.registry, dest.clone())?;
        self.conn_by_member
            .entry(dest.gid)
            .or_default()
            .push((dest.addr.clone(), token));
        Ok(token)
    }

    /// Writes what every dirty connection has queued, as far as the
    /// sockets take it.
    fn flush(&mut self, now: Time) {
        for (token, why) in self.conns.flush() {
            self.close_conn(token, &why, now);
        }
    }

    /// A writable (or error) event on upstream connection `token`.
    pub fn on_writable(&mut self, token: usize, now: Instant) {
        if let Err(why) = self.conns.on_writable(token) {
            let now = self.time(now);
            self.close_conn(token, &why, now);
        }
    }

    /// An event said upstream connection `token` was closed by the server
    /// or failed ([`Conns::note_read_closed`]).
    pub fn note_read_closed(&mut self, token: usize) {
        self.conns.note_read_closed(token);
    }

    /// A readable event on upstream connection `token`.
    pub fn on_readable(&mut self, token: usize, now: Instant) {
        let now = self.time(now);
        let mut frames = std::mem::take(&mut self.frames);
        let failure = self.conns.on_readable(token, &mut frames);
        let Some(dest) = self.conns.meta(token).cloned() else {
            frames.clear();
            self.frames = frames;
            return;
        };
        let mut confused = false;
        for mut frame in frames.drain(..) {
            if confused {
                continue; // dropped with the connection
            }
            let session = match self.wire_ids.answer(token, &mut frame) {
                Answered::Owner(session) => session,
                Answered::Unknown => continue,
                Answered::Confused => {
                    self.close_conn(token, "reply to a request sent elsewhere", now);
                    confused = true;
                    continue;
                }
            };
            let Some(lent) = self.sessions.get_mut(&session) else {
                continue; // its RESP connection closed
            };
            lent.session.on_frame(&dest, frame, now);
            // Results go to their RESP connections in this turn; what the
            // session does next (resends, admissions) waits for the pump.
            self.drain_completions(session);
            self.touch(session);
        }
        self.frames = frames;
        if confused {
            return;
        }
        if let Some(why) = failure {
            self.close_conn(token, &why, now);
        }
    }

    /// Drops connection `token`; every session with requests on it resends
    /// them elsewhere after a backoff (the session moves its leader hint
    /// past that server).
    fn close_conn(&mut self, token: usize, reason: &str, now: Time) {
        let Some(dest) = self.conns.close(token, &self.registry) else {
            return;
        };
        if let Some(members) = self.conn_by_member.get_mut(&dest.gid) {
            members.retain(|&(_, t)| t != token);
        }
        log::debug!(
            "RESP upstream: dropping connection to {} (group {}): {reason}",
            dest.addr,
            dest.gid
        );
        for session in self.wire_ids.forget_conn(token) {
            if let Some(lent) = self.sessions.get_mut(&session) {
                lent.session.on_conn_failed(&dest, reason, true, now);
                self.touch(session);
            }
        }
    }
}
