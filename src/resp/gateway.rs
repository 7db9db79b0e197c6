//! The RESP front door's sockets: an accept thread and a few event-loop
//! threads (`GatewayOptions::threads`, one per core by default), each a mio
//! `Poll` owning many RESP connections and its own non-blocking connections
//! to the cluster (`upstream`).
//!
//! Why not a thread per connection: with a blocking client each RESP
//! connection cost a thread plus reader threads, and on a small machine the
//! gateway spent more time switching between them than parsing or encoding
//! (see `perf/results/resp-*.md`). Here one loop turn reads every ready
//! connection, parses every complete command, queues their operations
//! (per-key order, `batch`), sends all of them to the group leaders with
//! one write per upstream connection, and writes each connection's replies
//! that are complete, in command order (`pipeline`), with one write.
//!
//! Limits and back-pressure, per connection: at most
//! [`UNANSWERED_COMMANDS_MAX`] commands parsed and not yet answered, and at
//! most [`UNSENT_REPLY_BYTES_MAX`] of replies waiting for the client to read
//! them; past either, the loop stops parsing and reading that connection
//! (its bytes stay in the kernel, so TCP pushes back on the client) until
//! replies drain, and past the second it also sends none of its queued
//! operations. At most `ClientOptions::in_flight_max` of its operations are
//! in flight. A slow client therefore costs its own bounded buffers and
//! never stalls the loop's other connections. `connections_max` (a silent
//! connection makes room for a newcomer), `idle_timeout` (whole commands
//! only), `command_timeout` and `partial_budget` (unfinished commands),
//! `command_args_max` and `read_buf_max` bound the rest (issue 8).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use super::command::Session;
use super::parse::{Parser, BULK_BYTES_MAX};
use super::pipeline::{Pipeline, Pushed};
use super::reply::Reply;
use super::upstream::Upstream;
use crate::client::idmap::IdMap;
use crate::client::mio_conn::write_out;
use crate::client::ClientOptions;

/// How long the accept thread pauses after a failed accept (typically out
/// of file descriptors) before it tries again, so it does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Default [`GatewayOptions::connections_max`].
pub const DEFAULT_CONNECTIONS_MAX: usize = 1000;
/// Default [`GatewayOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`GatewayOptions::read_buf_max`]: room for one command carrying
/// two maximal values (an MSET of two 16 MiB values) plus headers.
pub const DEFAULT_READ_BUF_MAX: usize = 2 * BULK_BYTES_MAX + (1 << 20);
/// Most commands of one connection parsed and not yet answered; past it the
/// connection is not read until replies go out. Bounds the memory one
/// pipelining client holds in the gateway (and its in-flight operations).
pub const UNANSWERED_COMMANDS_MAX: usize = 1024;
/// Most reply bytes of one connection waiting for the client to read them
/// before the gateway stops taking its commands.
pub const UNSENT_REPLY_BYTES_MAX: usize = 4 << 20;
/// Default [`GatewayOptions::command_args_max`]: an MGET of 65,536 keys
/// is about 8 MiB of operations in flight; one of a million cost 129 MiB.
pub const DEFAULT_COMMAND_ARGS_MAX: usize = 1 << 16;
/// Default [`GatewayOptions::command_timeout`].
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`GatewayOptions::partial_budget`]: four maximal values.
pub const DEFAULT_PARTIAL_BUDGET: usize = 4 * BULK_BYTES_MAX;
/// A connection silent (no whole command) this long may be closed to make
/// room for a new one when the gateway is at `connections_max`.
const EVICTABLE_AFTER: Duration = Duration::from_secs(1);
/// A connection whose input buffer reaches this has its loop's partial
/// budget checked.
const PARTIAL_CHECK_BYTES: usize = 256 << 10;
/// Most event loops a gateway runs.
pub const THREADS_MAX: usize = 64;
/// Bytes asked of a socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Most bytes read from one RESP connection per loop turn, for fairness
/// between connections; the rest is read on the next turn.
const READ_BUDGET_BYTES: usize = 256 << 10;
/// How often connections are checked against the idle timeout.
const IDLE_SCAN_INTERVAL: Duration = Duration::from_millis(500);
/// Longest a loop sleeps in `poll` when nothing is due.
const POLL_INTERVAL_MAX: Duration = Duration::from_millis(500);
const WAKER: Token = Token(0);
/// RESP connections get tokens from 1 up, upstream connections from here.
const FIRST_UPSTREAM_TOKEN: usize = usize::MAX / 2;

/// Limits of one gateway.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Open RESP connections at most; one more is answered
    /// `-ERR max number of clients reached` and closed.
    pub connections_max: usize,
    /// A connection silent this long (or not reading its replies this long)
    /// is closed.
    pub idle_timeout: Duration,
    /// Largest partial command buffered; a larger one is refused and the
    /// connection closed.
    pub read_buf_max: usize,
    /// Event-loop threads (at least 1, at most [`THREADS_MAX`]).
    pub threads: usize,
    /// Most arguments of one command; a longer one is refused from its
    /// count (`-ERR Protocol error: invalid multibulk length`) and the
    /// connection closed.
    pub command_args_max: usize,
    /// A command whose first bytes arrived must be complete within this
    /// long, or the connection is closed.
    pub command_timeout: Duration,
    /// Bytes of unfinished commands the whole gateway holds (split evenly
    /// between its loops, each getting at least `read_buf_max`); past a
    /// loop's share, the connection holding the most is closed.
    pub partial_budget: usize,
    /// How the gateway reaches the cluster: masters, per-operation and
    /// per-attempt deadlines, and `in_flight_max`, the most operations of
    /// one RESP connection in flight at once (so one huge MGET or pipeline
    /// cannot fill the upstream connections every client of its loop
    /// shares).
    pub client: ClientOptions,
    /// `synod-server --resp-password-file`: every connection must AUTH
    /// with it before any command but PING, AUTH, HELLO and QUIT.
    pub password: Option<std::sync::Arc<[u8]>>,
    /// The cluster's shard count, which SCAN, KEYS, DBSIZE and FLUSHDB walk
    /// (`synod-server --shards`; every server of a cluster has the same).
    pub shards: u32,
    /// `synod-server --resp-allow-flushdb`: FLUSHDB and FLUSHALL remove
    /// every key; without it they are refused.
    pub allow_flushdb: bool,
}

/// The default [`GatewayOptions::threads`]: one loop per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl GatewayOptions {
    /// Defaults for everything but the cluster's masters.
    pub fn new(masters: Vec<String>) -> GatewayOptions {
        GatewayOptions {
            connections_max: DEFAULT_CONNECTIONS_MAX,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            read_buf_max: DEFAULT_READ_BUF_MAX,
            threads: default_threads(),
            command_args_max: DEFAULT_COMMAND_ARGS_MAX,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            partial_budget: DEFAULT_PARTIAL_BUDGET,
            client: ClientOptions::new(masters),
            password: None,
            shards: synod_wire::DEFAULT_SHARDS,
            allow_flushdb: false,
        }
    }
}

/// Binds `listen` and serves RESP on it for the cluster whose shard masters
/// are `masters`, with default limits. Returns the accept thread's handle;
/// it runs for the life of the process.
pub fn serve(listen: SocketAddr, masters: Vec<String>) -> io::Result<JoinHandle<()>> {
    serve_with(TcpListener::bind(listen)?, GatewayOptions::new(masters))
}

/// [`serve`] on an already bound listener with explicit limits.
pub fn serve_with(listener: TcpListener, mut opts: GatewayOptions) -> io::Result<JoinHandle<()>> {
    opts.client.masters = opts
        .client
        .masters
        .iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    if opts.client.masters.is_empty() {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "the RESP gateway needs at least one shard master address",
        ));
    }
    opts.threads = opts.threads.clamp(1, THREADS_MAX);
    opts.client.in_flight_max = opts.client.in_flight_max.max(1);
    let local = listener.local_addr()?;
    let seed = crate::client::logic::random_client_id();
    let mut loops = Vec::new();
    for i in 0..opts.threads {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let registry = poll.registry().try_clone()?;
        let opts = opts.clone();
        std::thread::Builder::new()
            .name(format!("resp-loop-{i}"))
            .spawn(move || {
                let now = Instant::now();
                let upstream = Upstream::new(
                    registry,
                    &opts.client,
                    seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    FIRST_UPSTREAM_TOKEN,
                    now,
                );
                Loop {
                    poll,
                    rx,
                    opts,
                    conns: IdMap::default(),
                    next_token: 1,
                    upstream,
                    touched: Vec::new(),
                    scratch: vec![0; READ_CHUNK_BYTES],
                    last_idle_scan: now,
                }
                .run()
            })?;
        loops.push((tx, waker));
    }
    log::info!(
        "RESP gateway listening on {local} ({} event loops)",
        opts.threads
    );
    std::thread::Builder::new()
        .name("resp-accept".into())
        .spawn(move || accept_loop(listener, opts.connections_max, loops))
}

/// Decrements the open-connection count when a connection ends, however
/// it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A new connection for a loop.
struct Handoff {
    stream: std::net::TcpStream,
    id: u64,
    slot: Slot,
    /// Accepted over the limit: the loop must close a silent connection
    /// for it, or refuse it.
    evict: bool,
}

fn refuse(mut stream: std::net::TcpStream) {
    let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
    let _ = stream.shutdown(Shutdown::Both);
}

fn accept_loop(
    listener: TcpListener,
    connections_max: usize,
    loops: Vec<(Sender<Handoff>, Arc<Waker>)>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let next_id = AtomicU64::new(1);
    let mut next_loop = 0;
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Typically out of file descriptors: back off instead of
                // spinning on the error.
                log::warn!("RESP accept failed: {e}");
                std::thread::sleep(ACCEPT_RETRY_PAUSE);
                continue;
            }
        };
        // At the limit the loop closes a silent connection to make room, or
        // refuses this one (idle sockets must not lock everyone out). Twice
        // the limit bounds what waits in the loops' queues meanwhile.
        let was = open.fetch_add(1, Ordering::AcqRel);
        if was >= 2 * connections_max {
            open.fetch_sub(1, Ordering::AcqRel);
            refuse(stream);
            continue;
        }
        let handoff = Handoff {
            stream,
            id: next_id.fetch_add(1, Ordering::Relaxed),
            slot: Slot(open.clone()),
            evict: was >= connections_max,
        };
        // Round robin: connections of one benchmark or application spread
        // evenly over the loops.
        let (tx, waker) = &loops[next_loop];
        next_loop = (next_loop + 1) % loops.len();
        if tx.send(handoff).is_err() {
            log::error!("RESP event loop {next_loop} is gone; dropping a connection");
            continue;
        }
        if let Err(e) = waker.wake() {
            log::error!("RESP: cannot wake an event loop: {e}");
        }
    }
}

/// One RESP connection.
struct RespConn {
    stream: TcpStream,
    _slot: Slot,
    id: u64,
    pipeline: Pipeline,
    parser: Parser,
    inbuf: BytesMut,
    out: BytesMut,
    /// The socket may have bytes to read: set by a readable event, cleared
    /// when a read returns WouldBlock. Stays set while back-pressure stops
    /// reading (mio is edge-triggered: no new event would come).
    readable: bool,
    /// An event said the client closed its side (or the socket failed):
    /// a short read no longer proves the socket drained (the end of the
    /// stream raised no edge of its own), so reads go on to see it.
    read_closed: bool,
    /// QUIT or a protocol error: read nothing more; close once every reply
    /// is written.
    closing: bool,
    /// Listed in `Loop::touched` for this turn.
    touched: bool,
    /// Last time reply bytes went out (or the connection was accepted).
    last_active: Instant,
    /// Last time a whole command was parsed (or the connection was
    /// accepted): a byte at a time does not keep a connection alive.
    last_command: Instant,
    /// Whole commands parsed so far.
    commands: u64,
    /// Since when an unfinished command has been waiting in `inbuf`.
    partial_since: Option<Instant>,
}

impl RespConn {
    /// Why the idle scan should close this connection, if it should.
    fn overdue(&self, now: Instant, opts: &GatewayOptions) -> Option<&'static str> {
        let since = |t: Instant| now.saturating_duration_since(t);
        if let Some(t) = self.partial_since {
            if !self.backpressured() && since(t) >= opts.command_timeout {
                return Some("an unfinished command missed its deadline");
            }
        }
        if !self.out.is_empty() {
            return (since(self.last_active) >= opts.idle_timeout)
                .then_some("replies not read within the idle timeout");
        }
        (self.pipeline.unanswered() == 0
            && since(self.last_command.max(self.last_active)) >= opts.idle_timeout)
            .then_some("idle timeout")
    }

    /// Silent long enough to be closed for a newcomer at the limit.
    fn evictable(&self, now: Instant) -> bool {
        self.pipeline.unanswered() == 0
            && self.out.is_empty()
            && now.saturating_duration_since(self.last_command.max(self.last_active))
                >= EVICTABLE_AFTER
    }

    fn backpressured(&self) -> bool {
        self.pipeline.unanswered() >= UNANSWERED_COMMANDS_MAX
            || self.out.len() >= UNSENT_REPLY_BYTES_MAX
    }
}

/// What [`Loop::service`] decided about a connection.
enum Verdict {
    Keep,
    Close(String),
}

struct Loop {
    poll: Poll,
    rx: Receiver<Handoff>,
    opts: GatewayOptions,
    conns: IdMap<usize, RespConn>,
    next_token: usize,
    upstream: Upstream,
    /// RESP connections to service this turn.
    touched: Vec<usize>,
    scratch: Vec<u8>,
    last_idle_scan: Instant,
}

impl Loop {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = if !self.touched.is_empty() || !self.upstream.completions.is_empty() {
                Duration::ZERO
            } else {
                let mut t = POLL_INTERVAL_MAX;
                if let Some(wake) = self.upstream.next_wake(now) {
                    t = t.min(wake.saturating_duration_since(now));
                }
                t
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!("RESP event loop: poll failed: {e}; stopping");
                    return;
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                let token = event.token().0;
                if event.token() == WAKER {
                    self.accept(now);
                } else if self.upstream.owns(token) {
                    if event.is_writable() || event.is_error() {
                        self.upstream.on_writable(token, now);
                    }
                    let closed = event.is_read_closed() || event.is_error();
                    if closed {
                        self.upstream.note_read_closed(token);
                    }
                    if closed || event.is_readable() {
                        self.upstream.on_readable(token, now);
                    }
                } else if let Some(c) = self.conns.get_mut(&token) {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        c.readable = true;
                    }
                    if event.is_read_closed() || event.is_error() {
                        c.read_closed = true;
                    }
                    // Writable: the service below writes what is queued.
                    if !c.touched {
                        c.touched = true;
                        self.touched.push(token);
                    }
                }
            }
            self.deliver_completions();
            self.service_touched(now);
            // Everything this turn's commands asked for goes out now, one
            // write per upstream connection.
            self.upstream.pump(now);
            self.deliver_completions();
            if now.saturating_duration_since(self.last_idle_scan) >= IDLE_SCAN_INTERVAL {
                self.last_idle_scan = now;
                self.close_idle(now);
            }
        }
    }

    /// Close the connection silent longest (one that never sent a whole
    /// command first) to make room; false if every one is active.
    fn evict_one(&mut self, now: Instant) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| c.evictable(now))
            .min_by_key(|(_, c)| (c.commands > 0, c.last_command.max(c.last_active)))
            .map(|(&t, _)| t);
        match victim {
            Some(t) => {
                self.close(t, "evicted (silent) to make room at connections_max");
                true
            }
            None => false,
        }
    }

    /// Keep this loop's bytes of unfinished commands within its share of
    /// the budget: close the connection holding the most until they fit.
    fn enforce_partial_budget(&mut self) {
        let share = (self.opts.partial_budget / self.opts.threads).max(self.opts.read_buf_max);
        loop {
            let total: usize = self.conns.values().map(|c| c.inbuf.len()).sum();
            if total <= share {
                return;
            }
            let Some(t) = self
                .conns
                .iter()
                .max_by_key(|(_, c)| c.inbuf.len())
                .map(|(&t, _)| t)
            else {
                return;
            };
            log::warn!(
                "RESP: unfinished commands over the budget ({total} bytes); closing the largest"
            );
            self.close(t, "unfinished commands over the partial budget");
        }
    }

    fn accept(&mut self, now: Instant) {
        while let Ok(h) = self.rx.try_recv() {
            if h.evict && !self.evict_one(now) {
                refuse(h.stream);
                continue;
            }
            if let Err(e) = h.stream.set_nonblocking(true) {
                log::warn!("RESP connection {}: {e}", h.id);
                continue;
            }
            let mut stream = TcpStream::from_std(h.stream);
            let _ = stream.set_nodelay(true);
            let token = self.next_token;
            self.next_token += 1;
            assert!(token < FIRST_UPSTREAM_TOKEN, "token space exhausted");
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("RESP connection {}: cannot register: {e}", h.id);
                continue;
            }
            self.upstream.open_session(token, Instant::now());
            self.conns.insert(
                token,
                RespConn {
                    stream,
                    _slot: h.slot,
                    id: h.id,
                    pipeline: Pipeline::new(Session {
                        id: h.id,
                        name: None,
                        password: self.opts.password.clone(),
                        shards: self.opts.shards,
                        allow_flushdb: self.opts.allow_flushdb,
                        ..Session::default()
                    }),
                    parser: Parser::with_args_max(self.opts.command_args_max),
                    inbuf: BytesMut::new(),
                    out: BytesMut::new(),
                    // Bytes may have arrived before registration.
                    readable: true,
                    read_closed: false,
                    closing: false,
                    touched: true,
                    last_active: now,
                    last_command: now,
                    commands: 0,
                    partial_since: None,
                },
            );
            self.touched.push(token);
        }
    }

    /// Hands finished operations to their connections.
    fn deliver_completions(&mut self) {
        for (session, key, result) in self.upstream.completions.drain(..) {
            let Some(c) = self.conns.get_mut(&session) else {
                continue;
            };
            c.pipeline.complete(&key, result);
            if !c.touched {
                c.touched = true;
                self.touched.push(session);
            }
        }
    }

    fn service_touched(&mut self, now: Instant) {
        let touched = std::mem::take(&mut self.touched);
        // Commands parsed this turn, published with one shared add: a
        // relaxed add per command on a counter both loops write made its
        // cache line bounce between the cores.
        let mut parsed = 0;
        for token in touched {
            let verdict = match self.conns.get_mut(&token) {
                Some(c) => {
                    c.touched = false;
                    let before = c.commands;
                    let verdict = service(
                        c,
                        token,
                        &self.opts,
                        &mut self.upstream,
                        &mut self.scratch,
                        now,
                    );
                    parsed += c.commands - before;
                    verdict
                }
                None => continue,
            };
            match verdict {
                Verdict::Keep => {
                    if self.conns.get(&token).expect("serviced").inbuf.len() >= PARTIAL_CHECK_BYTES
                    {
                        self.enforce_partial_budget();
                    }
                    let Some(c) = self.conns.get_mut(&token) else {
                        continue; // closed for the budget
                    };
                    // Read budget spent with more to read and room to take
                    // it: come back next turn without waiting for an event.
                    if c.readable && !c.closing && !c.backpressured() && !c.touched {
                        c.touched = true;
                        self.touched.push(token);
                    }
                }
                Verdict::Close(why) => self.close(token, &why),
            }
        }
        if parsed > 0 {
            crate::metrics::RESP.commands.add(parsed);
        }
    }

    fn close(&mut self, token: usize, why: &str) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        log::debug!("RESP connection {} closed: {why}", c.id);
        let _ = self.poll.registry().deregister(&mut c.stream);
        let _ = c.stream.shutdown(Shutdown::Both);
        self.upstream.close_session(token, Instant::now());
    }

    /// Closes connections silent for the idle timeout: nothing read and
    /// nothing to answer, or replies the client has not read.
    fn close_idle(&mut self, now: Instant) {
        let idle: Vec<(usize, &'static str)> = self
            .conns
            .iter()
            .filter_map(|(&t, c)| c.overdue(now, &self.opts).map(|why| (t, why)))
            .collect();
        for (token, why) in idle {
            self.close(token, why);
        }
    }
}

/// Moves one connection forward as far as it can go this turn: parse what
/// is buffered, read more (within budget and back-pressure), hand new
/// operations to the upstream, write the replies that are complete.
fn service(
    c: &mut RespConn,
    token: usize,
    opts: &GatewayOptions,
    upstream: &mut Upstream,
    scratch: &mut [u8],
    now: Instant,
) -> Verdict {
    let mut budget = READ_BUDGET_BYTES;
    loop {
        let was_full = c.backpressured();
        loop {
            parse_buffered(c, opts, now);
            if c.closing || c.backpressured() || !c.readable || budget == 0 {
                break;
            }
            let want = budget.min(scratch.len());
            match c.stream.read(&mut scratch[..want]) {
                Ok(0) => return Verdict::Close("closed by the client".into()),
                Ok(n) => {
                    c.inbuf.extend_from_slice(&scratch[..n]);
                    budget -= n;
                    // A short read emptied the socket: skip the read that
                    // would only say WouldBlock (half of all reads under
                    // redis-benchmark). Safe with epoll's edge trigger, which
                    // fires again on every arrival, not only on empty ->
                    // non-empty.
                    if n < want && !c.read_closed {
                        c.readable = false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Verdict::Close(format!("read failed: {e}")),
            }
        }
        // Results wait in memory until their replies are written, so a
        // client that does not read its replies gets no new operations
        // sent: what it can pin is its reply buffer plus the results of the
        // operations already in flight (at most `in_flight_max`).
        if c.out.len() < UNSENT_REPLY_BYTES_MAX {
            c.pipeline.take_sendable(opts.client.in_flight_max, |op| {
                upstream.submit(token, op.clone(), now)
            });
        }
        // Encode what fits, write what the socket takes; when the socket
        // took everything, there may be room for more replies.
        loop {
            c.pipeline.write_replies(&mut c.out, UNSENT_REPLY_BYTES_MAX);
            if c.out.is_empty() {
                break;
            }
            let before = c.out.len();
            if let Err(e) = write_out(&mut c.stream, &mut c.out) {
                return Verdict::Close(format!("write failed: {e}"));
            }
            if c.out.len() < before {
                c.last_active = now;
            }
            if !c.out.is_empty() {
                break; // the socket is full: its writable event resumes
            }
        }
        // Writing made room: commands already buffered (or waiting in the
        // socket) may be taken now; no event would come for them.
        if was_full && !c.backpressured() {
            continue;
        }
        break;
    }
    if c.closing && c.pipeline.unanswered() == 0 && c.out.is_empty() {
        return Verdict::Close("QUIT or protocol error".into());
    }
    Verdict::Keep
}

/// Parses and queues every complete buffered command the limits allow.
fn parse_buffered(c: &mut RespConn, opts: &GatewayOptions, now: Instant) {
    parse_commands(c, opts, now);
    if c.inbuf.is_empty() {
        c.partial_since = None;
    } else if c.partial_since.is_none() {
        c.partial_since = Some(now);
    }
}

fn parse_commands(c: &mut RespConn, opts: &GatewayOptions, now: Instant) {
    while !c.closing && !c.backpressured() {
        match c.parser.next_command(&mut c.inbuf) {
            Ok(Some(args)) => {
                c.commands += 1;
                c.last_command = now;
                c.partial_since = None;
                if c.pipeline.push(&args) == Pushed::Quit {
                    c.closing = true;
                }
            }
            Ok(None) => {
                if c.inbuf.len() >= opts.read_buf_max {
                    log::warn!(
                        "RESP connection {}: request over {} bytes; closing it",
                        c.id,
                        opts.read_buf_max
                    );
                    c.pipeline.push_reply(Reply::error(format!(
                        "ERR Protocol error: request larger than {} bytes",
                        opts.read_buf_max
                    )));
                    c.closing = true;
                }
                return;
            }
            Err(e) => {
                crate::metrics::RESP.protocol_errors.inc();
                log::warn!("RESP connection {}: {e}; closing it", c.id);
                c.pipeline.push_reply(Reply::error(format!("ERR {e}")));
                c.closing = true;
            }
        }
    }
}
