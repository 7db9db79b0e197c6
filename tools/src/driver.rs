//! The pipelined load driver, closed-loop or open-loop.
//!
//! Each client *session* is one at-most-once identity (random client id,
//! seqs from 1, its own `ack_seq` watermark) that keeps up to `pipeline`
//! requests outstanding. Closed-loop (the default), a reply (or a give-up)
//! frees a slot and the next operation is issued at once. Open-loop
//! (`RunSpec::rate`), each worker issues its share of the rate on a fixed
//! schedule ([`crate::pace`]) to its sessions in turn, skipping full ones;
//! a request that finds every slot taken waits, and its latency runs from
//! its *intended* send time, so waiting for the pipeline (or for a late
//! worker) counts. Sessions are spread over a few
//! worker threads, each running one mio `Poll` over its sessions' sockets,
//! so 64 sessions do not need 128 blocking threads fighting the servers for
//! the same cores.
//!
//! A session opens one connection per (server, group) it talks to, because
//! the server binds a connection to the core owning the group of its first
//! frame. Replies on a connection may come back in any order; they are
//! matched by `request_id = attempt << 48 | seq`, so a late reply to an
//! earlier attempt (after a redirect or a reconnect) is recognised and
//! dropped rather than mistaken for the current one.
//!
//! Failure handling follows PROTOCOL.md section 5.2: `NotLeader` moves the
//! thread's leader hint for the group and resends (same seq) on a connection
//! to the new leader; `Busy` resends after an exponential backoff;
//! `WrongGroup` refreshes the configuration from the masters; a lost
//! connection resends everything that was on it. `Error` replies and
//! requests past `request_timeout` are counted as errors and recorded as
//! `Unknown` in the history. Nothing a server does can panic the driver or
//! keep it running past the end of the run plus `drain_timeout`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use synod::auth::{Dialer, Key};
use synod::check::{KvInput, KvOp, KvOutput};
use synod::client::{AckWindow, Client, ClientOptions};
use synod::rng::Rng;
use synod_wire::{
    encode_frame, shard_of, AuthMsg, ClientId, ClientReply, ClientRequest, Config, Decoder, Frame,
    GroupId, Message, Op, Seq,
};

use crate::pace::{next_free, worker_rate, Pacer, Slot};
use crate::workload::{next_op, Workload};
use crate::zipf::KeyDist;

/// Highest latency the histograms hold (60 s, in µs); larger values are
/// clamped, which only a request stuck for a minute could produce.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Request ids carry the attempt number above this many bits of seq.
const SEQ_BITS: u32 = 48;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// Bytes asked of a socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Longest a worker sleeps in `poll`: bounds how late timeouts, the end of
/// the run and progress figures are noticed.
const POLL_INTERVAL_MAX: Duration = Duration::from_millis(50);
/// Open-loop: longest a worker sleeps blind (not watching its sockets) to
/// wait for a send time less than a millisecond away, which `poll` cannot
/// wait for (it rounds timeouts up to whole milliseconds). A reply that
/// lands during the sleep is noticed at most this late (plus the kernel's
/// timer slack, 50 µs by default), so this bounds what the load generator
/// adds to a measured latency; shorter would wake the worker more often
/// on a machine whose cores the servers need.
const PACE_SLEEP_MAX: Duration = Duration::from_micros(100);
/// How often requests are checked against their deadline.
const TIMEOUT_SCAN_INTERVAL: Duration = Duration::from_millis(100);
/// How often a worker publishes its interval histogram for the progress line.
const PROGRESS_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Least time between two configuration refreshes of one worker.
const CONFIG_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// First retry delay after Busy or a failed connection; doubles per failure.
const BACKOFF_BASE: Duration = Duration::from_millis(1);
/// Longest retry delay: a benchmark would rather see errors than idle.
const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// Redirects with a leader hint that are followed at once; past this a
/// request backs off (an election in progress can bounce it around).
const FREE_REDIRECTS: u32 = 3;
/// Error reasons printed (the rest are only counted).
const ERROR_REASONS_SHOWN: u64 = 5;

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub workload: Workload,
    pub clients: usize,
    pub pipeline: usize,
    pub threads: usize,
    /// Operations before this point are not measured.
    pub warmup: Duration,
    /// Measured time after the warmup; `None` with `ops` set means "until
    /// `ops` operations are done".
    pub duration: Option<Duration>,
    /// Operations to issue after the warmup (for [`Workload::Prefill`]: the
    /// number of keys to write).
    pub ops: Option<u64>,
    pub keys: KeyDist,
    pub value_size: usize,
    /// A request unanswered for this long is given up (an error).
    pub request_timeout: Duration,
    /// After issuing stops, how long outstanding requests may take to finish.
    pub drain_timeout: Duration,
    /// Record every operation for the linearizability checker.
    pub record_history: bool,
    /// Seeds the key and operation choices (not the client ids, which must
    /// differ on every run: the servers remember sessions).
    pub seed: u64,
    /// Masters, for configuration refreshes on `WrongGroup`.
    pub masters: Vec<String>,
    /// Origin of history timestamps (ns). Shared by every run of a process
    /// so that the prefill's history and the workload's can be merged.
    pub epoch: Instant,
    /// Print a progress line every second (stderr).
    pub progress: bool,
    /// Open-loop: operations per second across all sessions, issued on a
    /// schedule; `None`: closed-loop.
    pub rate: Option<f64>,
    /// Keys to authenticate with (`synod::auth`): the cluster key makes
    /// every connection an admin's, else the client key a client's.
    pub cluster_key: Option<Key>,
    pub client_key: Option<Key>,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunResult {
    /// Latencies (µs) of measured successful operations. Open-loop: every
    /// successful request intended inside the measured window, from its
    /// intended send time, including those that finished after the window.
    pub hist: Histogram<u64>,
    /// Open-loop: how long after its intended time each measured request
    /// was first sent (µs; 1 for "on time"). Empty when closed-loop.
    pub lag: Histogram<u64>,
    pub ops: u64,
    pub secs: f64,
    pub counters: Counters,
    pub history: Vec<KvOp>,
}

/// Event counts of a run (see `report::Summary` for their meaning).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub errors: u64,
    pub timeouts: u64,
    pub busy: u64,
    pub redirects: u64,
    pub reconnects: u64,
    pub get_misses: u64,
    /// Open-loop: measured requests that fell due while every pipeline
    /// slot of their worker was taken.
    pub delayed: u64,
    /// Open-loop: requests intended inside the measured window that were
    /// never sent, because the backlog was still there at the end of the
    /// run plus `drain_timeout`.
    pub unsent: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.busy += o.busy;
        self.redirects += o.redirects;
        self.reconnects += o.reconnects;
        self.get_misses += o.get_misses;
        self.delayed += o.delayed;
        self.unsent += o.unsent;
    }
}

/// A fresh latency histogram (3 significant digits, 1 µs to 60 s).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static histogram bounds are valid")
}

/// State the workers share with the progress printer.
struct Shared {
    /// Operations claimed against `RunSpec::ops`.
    claimed: AtomicU64,
    /// Successful operations so far, any phase.
    completed: AtomicU64,
    errors: AtomicU64,
    /// Latencies since the progress printer last looked, one per worker.
    interval: Vec<Mutex<Histogram<u64>>>,
    done: AtomicBool,
}

/// 64 random bits for client ids: `/dev/urandom`, or the clock and pid.
fn entropy() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// Runs `spec` against the cluster described by `config` and waits for it.
pub fn run(spec: &RunSpec, config: &Config) -> RunResult {
    assert!(spec.clients > 0 && spec.pipeline > 0 && spec.threads > 0);
    let threads = spec.threads.min(spec.clients);
    let shared = Arc::new(Shared {
        claimed: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        interval: (0..threads).map(|_| Mutex::new(new_histogram())).collect(),
        done: AtomicBool::new(false),
    });
    let start = Instant::now();
    let id_base = Rng::new(entropy()).next_u64();
    let mut seed_rng = Rng::new(spec.seed);
    let mut plans: Vec<Vec<(ClientId, u64)>> = vec![Vec::new(); threads];
    for i in 0..spec.clients {
        // Time-ordered ids (PROTOCOL.md 7); the low bits count up from a
        // random start, so this run's clients never collide with each other.
        let id =
            synod_wire::client_id_at(synod_wire::unix_now_ms(), id_base.wrapping_add(i as u64));
        plans[i % threads].push((id, seed_rng.next_u64()));
    }
    let handles: Vec<_> = plans
        .into_iter()
        .enumerate()
        .map(|(t, sessions)| {
            let spec = spec.clone();
            let config = config.clone();
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("bench-worker-{t}"))
                .spawn(move || Worker::new(&spec, config, &shared, t, sessions, start).run())
                .expect("spawn a benchmark worker thread")
        })
        .collect();
    let printer = spec.progress.then(|| {
        let shared = Arc::clone(&shared);
        let warmup = spec.warmup;
        std::thread::spawn(move || print_progress(&shared, start, warmup))
    });

    let mut result = RunResult {
        hist: new_histogram(),
        lag: new_histogram(),
        ops: 0,
        secs: 0.0,
        counters: Counters::default(),
        history: Vec::new(),
    };
    let mut last_completion: Option<Instant> = None;
    for h in handles {
        // A worker that panicked is a bug in this driver; surface it.
        let w = h.join().expect("benchmark worker panicked");
        result.hist.add(&w.hist).expect("same histogram bounds");
        result.lag.add(&w.lag).expect("same histogram bounds");
        result.ops += w.ops;
        result.counters.add(&w.counters);
        result.history.extend(w.history);
        last_completion = last_completion.max(w.last_completion);
    }
    shared.done.store(true, Ordering::SeqCst);
    if let Some(p) = printer {
        let _ = p.join();
    }
    let measure_start = start + spec.warmup;
    result.secs = match (spec.duration, last_completion) {
        (Some(d), _) => d.as_secs_f64(),
        (None, Some(t)) => t.saturating_duration_since(measure_start).as_secs_f64(),
        (None, None) => 0.0,
    };
    result
}

/// One progress line per second on stderr until the run is done.
fn print_progress(shared: &Shared, start: Instant, warmup: Duration) {
    let mut last_completed = 0u64;
    let mut last = Instant::now();
    let mut interval = new_histogram();
    loop {
        // Sleep in short steps so the printer ends promptly with the run.
        let next = last + Duration::from_secs(1);
        while Instant::now() < next {
            if shared.done.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let now = Instant::now();
        let completed = shared.completed.load(Ordering::Relaxed);
        interval.reset();
        for h in &shared.interval {
            let mut h = h.lock().unwrap_or_else(|p| p.into_inner());
            let _ = interval.add(&*h);
            h.reset();
        }
        let rate = (completed - last_completed) as f64 / (now - last).as_secs_f64();
        let elapsed = now - start;
        eprintln!(
            "[{:>5.1}s{}] {:>9.0} ops/s  p50 {:>7} us  p99 {:>7} us  errors {}",
            elapsed.as_secs_f64(),
            if elapsed < warmup { " warmup" } else { "" },
            rate,
            interval.value_at_quantile(0.5),
            interval.value_at_quantile(0.99),
            shared.errors.load(Ordering::Relaxed)
        );
        last_completed = completed;
        last = now;
    }
}

/// What a worker hands back.
struct WorkerResult {
    hist: Histogram<u64>,
    lag: Histogram<u64>,
    ops: u64,
    counters: Counters,
    history: Vec<KvOp>,
    last_completion: Option<Instant>,
}

/// One request a session has issued and not yet finished.
struct Pending {
    op: Op,
    /// Where its latency runs from, through every retry: when it was first
    /// sent, or open-loop, when it was intended to be.
    latency_from: Instant,
    deadline: Instant,
    /// Sends so far; the current one's number is in its request id.
    attempt: u64,
    /// Busy replies and failed connections so far (drives the backoff).
    failures: u32,
    /// Redirects so far.
    redirects: u32,
    /// The connection it is outstanding on; `None` while it waits for a
    /// retry (backoff, a new connection, a configuration).
    sent_on: Option<usize>,
    /// Counted toward `--ops` (issued after the warmup); open-loop:
    /// intended inside the measured window.
    measured: bool,
    /// Its entry in the history, when one is recorded.
    history: Option<usize>,
}

/// One at-most-once identity with its pipeline.
struct Session {
    client_id: ClientId,
    next_seq: Seq,
    acks: AckWindow,
    pending: HashMap<Seq, Pending>,
    /// Its connection (a token of `Worker::conns`) per group.
    conns: HashMap<GroupId, usize>,
    rng: Rng,
}

/// One socket.
struct Conn {
    stream: TcpStream,
    session: usize,
    gid: GroupId,
    /// Index of the server in the group's member list.
    server: usize,
    connected: bool,
    out: BytesMut,
    inbuf: BytesMut,
    decoder: Decoder,
    /// The handshake in progress; requests wait in `held` until the
    /// server proved the key.
    dialer: Option<Dialer>,
    held: BytesMut,
}

/// How an operation ended.
enum Outcome {
    Done(KvOutput),
    /// An `Error` reply.
    Refused,
    /// No answer by its deadline, or by the end of the drain.
    TimedOut,
}

struct Worker<'a> {
    spec: &'a RunSpec,
    shared: &'a Shared,
    index: usize,
    poll: Poll,
    config: Config,
    /// Leader hint per group, shared by the worker's sessions so one
    /// redirect teaches them all.
    leaders: HashMap<GroupId, usize>,
    sessions: Vec<Session>,
    conns: HashMap<usize, Conn>,
    next_token: usize,
    /// Connections with bytes to write.
    dirty: Vec<usize>,
    retries: BinaryHeap<Reverse<(Instant, usize, Seq)>>,
    /// Open-loop: this worker's schedule.
    pacer: Option<Pacer>,
    /// Open-loop: the session the next free-slot search starts from.
    cursor: usize,
    measure_start: Instant,
    end: Option<Instant>,
    issuing: bool,
    issue_stopped: Option<Instant>,
    need_config: bool,
    last_refresh: Option<Instant>,
    master: Option<Client>,
    hist: Histogram<u64>,
    lag: Histogram<u64>,
    interval: Histogram<u64>,
    ops: u64,
    counters: Counters,
    history: Vec<KvOp>,
    last_completion: Option<Instant>,
    scratch: Vec<u8>,
}

impl<'a> Worker<'a> {
    fn new(
        spec: &'a RunSpec,
        config: Config,
        shared: &'a Shared,
        index: usize,
        sessions: Vec<(ClientId, u64)>,
        start: Instant,
    ) -> Worker<'a> {
        let measure_start = start + spec.warmup;
        let end = spec.duration.map(|d| measure_start + d);
        let pacer = spec.rate.map(|rate| {
            // Workers start a request interval of the whole run apart, so
            // their schedules interleave instead of landing together.
            let phase = Duration::from_secs_f64(index as f64 / rate);
            Pacer::new(
                start,
                phase,
                worker_rate(rate, sessions.len(), spec.clients),
                end,
            )
        });
        Worker {
            spec,
            shared,
            index,
            poll: Poll::new().expect("create a mio Poll"),
            config,
            leaders: HashMap::new(),
            sessions: sessions
                .into_iter()
                .map(|(client_id, seed)| Session {
                    client_id,
                    next_seq: 1,
                    acks: AckWindow::default(),
                    pending: HashMap::new(),
                    conns: HashMap::new(),
                    rng: Rng::new(seed),
                })
                .collect(),
            conns: HashMap::new(),
            next_token: 0,
            dirty: Vec::new(),
            retries: BinaryHeap::new(),
            pacer,
            cursor: 0,
            measure_start,
            end,
            issuing: true,
            issue_stopped: None,
            need_config: false,
            last_refresh: None,
            master: None,
            hist: new_histogram(),
            lag: new_histogram(),
            interval: new_histogram(),
            ops: 0,
            counters: Counters::default(),
            history: Vec::new(),
            last_completion: None,
            scratch: vec![0; READ_CHUNK_BYTES],
        }
    }

    fn run(mut self) -> WorkerResult {
        let mut events = Events::with_capacity(1024);
        let mut last_scan = Instant::now();
        let mut last_flush = Instant::now();
        loop {
            let now = Instant::now();
            if self.issuing {
                self.maybe_stop_issuing(now);
            }
            if self.issuing {
                match self.pacer {
                    None => self.refill(now),
                    Some(_) => self.pace(now),
                }
            }
            self.run_due_retries(now);
            if now.duration_since(last_scan) >= TIMEOUT_SCAN_INTERVAL {
                last_scan = now;
                self.expire(now);
            }
            if self.need_config {
                self.refresh_config(now);
            }
            self.flush_writes(now);
            if now.duration_since(last_flush) >= PROGRESS_FLUSH_INTERVAL {
                last_flush = now;
                self.publish_interval();
            }
            if let Some(stopped) = self.issue_stopped {
                if self.outstanding() == 0 {
                    break;
                }
                if now >= stopped + self.spec.drain_timeout {
                    self.abandon_all(now);
                    break;
                }
            }

            let mut timeout = POLL_INTERVAL_MAX;
            if let Some(Reverse((due, _, _))) = self.retries.peek() {
                timeout = timeout.min(due.saturating_duration_since(now));
            }
            if let (true, Some(end)) = (self.issuing, self.end) {
                timeout = timeout.min(end.saturating_duration_since(now));
            }
            // Open-loop: a send due in under a millisecond, which `poll`
            // cannot wait for (it rounds up to whole milliseconds).
            let mut pace_sleep = None;
            if let Some(due) = self.next_send() {
                let wait = due.saturating_duration_since(now);
                if wait < Duration::from_millis(1) {
                    timeout = Duration::ZERO;
                    pace_sleep = Some(wait.min(PACE_SLEEP_MAX));
                } else {
                    // Whole milliseconds, which `poll` keeps as they are.
                    let whole_ms = Duration::from_millis(wait.as_millis() as u64);
                    timeout = timeout.min(whole_ms);
                }
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("synod-bench: poll failed: {e}");
                    self.abandon_all(Instant::now());
                    break;
                }
            }
            if let (Some(sleep), true) = (pace_sleep, events.is_empty()) {
                // Nothing to read or write: sleep blind until the send is due
                // (at most PACE_SLEEP_MAX); with work waiting, never sleep.
                std::thread::sleep(sleep);
                continue;
            }
            let now = Instant::now();
            for event in events.iter() {
                let token = event.token().0;
                if event.is_writable() || event.is_error() {
                    self.on_writable(token, now);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(token, now);
                }
            }
        }
        self.publish_interval();
        WorkerResult {
            hist: self.hist,
            lag: self.lag,
            ops: self.ops,
            counters: self.counters,
            history: self.history,
            last_completion: self.last_completion,
        }
    }

    fn outstanding(&self) -> usize {
        self.sessions.iter().map(|s| s.pending.len()).sum()
    }

    /// Ends issuing when the run is over. Closed-loop that is the end of
    /// the window. Open-loop the requests intended inside the window must
    /// all be sent first (dropping a backlog would drop exactly the slowest
    /// requests), unless that is still not done by the end of the window
    /// plus `drain_timeout`: then the rest are counted as unsent.
    fn maybe_stop_issuing(&mut self, now: Instant) {
        let Some(end) = self.end else {
            return;
        };
        match &self.pacer {
            None if now >= end => self.stop_issuing(now),
            None => {}
            Some(p) if p.exhausted() => self.stop_issuing(now),
            Some(p) if now >= end + self.spec.drain_timeout => {
                self.counters.unsent += p.left();
                self.stop_issuing(now);
            }
            Some(_) => {}
        }
    }

    fn stop_issuing(&mut self, now: Instant) {
        if self.issuing {
            self.issuing = false;
            self.issue_stopped = Some(now);
        }
    }

    fn publish_interval(&mut self) {
        let mut shared = self.shared.interval[self.index]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let _ = shared.add(&self.interval);
        self.interval.reset();
    }

    /// Tops every session's pipeline up to `pipeline` requests.
    fn refill(&mut self, now: Instant) {
        for s in 0..self.sessions.len() {
            while self.issuing && self.sessions[s].pending.len() < self.spec.pipeline {
                self.issue(s, now, None);
            }
        }
    }

    /// Open-loop: sends every request due by `now` while a session has a
    /// free slot, and tells the schedule when the slots ran out.
    ///
    /// The requests due at one wake-up (a burst) go to one session while it
    /// has room, and the next burst starts at the next session: over a run
    /// every session gets its share, and a burst costs one write and one
    /// server read instead of one per request (a request per connection
    /// made the generator several times costlier per operation than the
    /// closed loop, on cores the servers need).
    fn pace(&mut self, now: Instant) {
        let pipeline = self.spec.pipeline;
        let mut used = None;
        loop {
            let sessions = &self.sessions;
            let free = next_free(sessions.len(), self.cursor, |s| {
                sessions[s].pending.len() < pipeline
            });
            let pacer = self.pacer.as_mut().expect("open-loop");
            let Some(s) = free else {
                pacer.full(now);
                break;
            };
            pacer.slot_free(now);
            if !self.issuing || !pacer.is_due(now) {
                break;
            }
            let slot = pacer.take(now);
            self.cursor = s;
            used = Some(s);
            self.issue(s, now, Some(slot));
        }
        if let Some(s) = used {
            self.cursor = (s + 1) % self.sessions.len();
        }
    }

    /// Open-loop: when the next request is due, if a slot is free for it
    /// (a full pipeline wakes the worker with a reply instead).
    fn next_send(&self) -> Option<Instant> {
        let pacer = self.pacer.as_ref()?;
        if !self.issuing || self.outstanding() >= self.sessions.len() * self.spec.pipeline {
            return None;
        }
        pacer.next_intended()
    }

    /// Issues one new operation on session `s`, unless the op budget is
    /// spent (then issuing stops). Open-loop, `slot` is its place in the
    /// schedule.
    fn issue(&mut self, s: usize, now: Instant, slot: Option<Slot>) {
        let budgeted = self.spec.ops.is_some() || self.spec.workload == Workload::Prefill;
        let latency_from = slot.map_or(now, |slot| slot.intended);
        let measured = latency_from >= self.measure_start;
        let mut index = 0;
        if budgeted && measured {
            let limit = self.spec.ops.unwrap_or(self.spec.keys.n());
            index = self.shared.claimed.fetch_add(1, Ordering::Relaxed);
            if index >= limit {
                self.stop_issuing(now);
                return;
            }
        }
        if let (Some(slot), true) = (slot, measured) {
            let lag_us = now.duration_since(slot.intended).as_micros() as u64;
            self.lag.saturating_record(lag_us.max(1));
            self.counters.delayed += u64::from(slot.delayed);
        }
        let session = &mut self.sessions[s];
        let seq = session.next_seq;
        session.next_seq += 1;
        let op = next_op(
            self.spec.workload,
            &self.spec.keys,
            &mut session.rng,
            index,
            session.client_id,
            seq,
            self.spec.value_size,
        );
        let history = self.spec.record_history.then(|| {
            let (input, key) = match &op {
                Op::Get { key } => (KvInput::Get, key.clone()),
                Op::Put { key, value } => (KvInput::Put(value.clone()), key.clone()),
                Op::Append { key, value } => (KvInput::Append(value.clone()), key.clone()),
                Op::Delete { key } => (KvInput::Delete, key.clone()),
                other => unreachable!("next_op issues Get, Put, Append and Delete only: {other:?}"),
            };
            self.history.push(KvOp {
                client: session.client_id,
                key,
                input,
                output: KvOutput::Unknown,
                call: nanos_since(self.spec.epoch, now),
                ret: 0,
            });
            self.history.len() - 1
        });
        session.pending.insert(
            seq,
            Pending {
                op,
                latency_from,
                deadline: now + self.spec.request_timeout,
                attempt: 0,
                failures: 0,
                redirects: 0,
                sent_on: None,
                // Closed-loop and unbudgeted, the completion time decides
                // (see `finish`); open-loop, the intended time does.
                measured: measured || (slot.is_none() && !budgeted),
                history,
            },
        );
        self.send(s, seq, now);
    }

    /// The group serving `key` and the member to send to, by the cached
    /// configuration; `None` if no group serves its shard there.
    fn route(&self, key: &[u8]) -> Option<(GroupId, usize, String)> {
        let shards = self.config.shards.len() as u32;
        if shards == 0 {
            return None;
        }
        let gid = self.config.shards[shard_of(key, shards) as usize];
        let group = self.config.groups.iter().find(|g| g.gid == gid)?;
        if gid == 0 || group.servers.is_empty() {
            return None;
        }
        let server = self.leaders.get(&gid).copied().unwrap_or(0) % group.servers.len();
        Some((gid, server, group.servers[server].clone()))
    }

    /// Sends (or resends) request `seq` of session `s` to its group's
    /// current leader, opening the connection if needed.
    fn send(&mut self, s: usize, seq: Seq, now: Instant) {
        let Some(p) = self.sessions[s].pending.get(&seq) else {
            return;
        };
        let Some((gid, server, addr)) = self.route(p.op.key()) else {
            self.need_config = true;
            self.schedule(s, seq, now + CONFIG_REFRESH_INTERVAL);
            return;
        };
        let token = match self.sessions[s].conns.get(&gid) {
            Some(&t) if self.conns.get(&t).is_some_and(|c| c.server == server) => t,
            existing => {
                // The leader moved since this connection was opened: move
                // everything on it to the new leader.
                if let Some(&old) = existing {
                    self.drop_conn(old, false, now);
                }
                match self.open(s, gid, server, &addr) {
                    Ok(t) => t,
                    Err(e) => {
                        self.note_conn_failure(gid, server, &addr, &e);
                        let p = self.sessions[s].pending.get_mut(&seq).expect("checked");
                        p.failures += 1;
                        let delay = backoff(p.failures, &mut self.sessions[s].rng);
                        self.schedule(s, seq, now + delay);
                        return;
                    }
                }
            }
        };
        let session = &mut self.sessions[s];
        let ack_seq = session.acks.ack_seq();
        let client_id = session.client_id;
        let p = session.pending.get_mut(&seq).expect("checked");
        p.attempt += 1;
        p.sent_on = Some(token);
        debug_assert!(seq > ack_seq, "a pending seq is never acknowledged");
        let frame = Frame {
            request_id: (p.attempt << SEQ_BITS) | seq,
            group: gid,
            message: Message::Request(ClientRequest {
                client_id,
                seq,
                ack_seq,
                op: p.op.clone(),
            }),
        };
        let conn = self.conns.get_mut(&token).expect("just looked up");
        if conn.out.is_empty() {
            self.dirty.push(token);
        }
        if conn.dialer.is_some() {
            encode_frame(&frame, &mut conn.held);
        } else {
            encode_frame(&frame, &mut conn.out);
        }
    }

    fn schedule(&mut self, s: usize, seq: Seq, due: Instant) {
        if let Some(p) = self.sessions[s].pending.get_mut(&seq) {
            p.sent_on = None;
            self.retries.push(Reverse((due, s, seq)));
        }
    }

    fn run_due_retries(&mut self, now: Instant) {
        while let Some(&Reverse((due, s, seq))) = self.retries.peek() {
            if due > now {
                break;
            }
            self.retries.pop();
            // Skip entries for requests finished or already resent since.
            if self.sessions[s]
                .pending
                .get(&seq)
                .is_some_and(|p| p.sent_on.is_none())
            {
                self.send(s, seq, now);
            }
        }
    }

    fn open(&mut self, s: usize, gid: GroupId, server: usize, addr: &str) -> io::Result<usize> {
        let sa: SocketAddr = match addr.parse() {
            Ok(sa) => sa,
            Err(_) => addr.to_socket_addrs()?.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing")
            })?,
        };
        let mut stream = TcpStream::connect(sa)?;
        let token = self.next_token;
        self.next_token += 1;
        self.poll.registry().register(
            &mut stream,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut out = BytesMut::new();
        let mut dialer = None;
        let auth = synod::auth::stream::client_identity(
            self.spec.cluster_key.as_ref(),
            self.spec.client_key.as_ref(),
        );
        if let Some((key, identity)) = auth {
            let nonce = synod::auth::random_nonce().map_err(io::Error::other)?;
            let (d, hello) = Dialer::new(&key, identity, nonce);
            encode_frame(
                &Frame {
                    request_id: 0,
                    group: gid,
                    message: Message::Auth(AuthMsg::Hello(hello)),
                },
                &mut out,
            );
            dialer = Some(d);
        }
        self.conns.insert(
            token,
            Conn {
                stream,
                session: s,
                gid,
                server,
                connected: false,
                out,
                inbuf: BytesMut::new(),
                decoder: Decoder::default(),
                dialer,
                held: BytesMut::new(),
            },
        );
        self.sessions[s].conns.insert(gid, token);
        Ok(token)
    }

    fn note_conn_failure(&mut self, gid: GroupId, server: usize, addr: &str, e: &io::Error) {
        self.counters.reconnects += 1;
        if self.counters.reconnects <= ERROR_REASONS_SHOWN {
            eprintln!("synod-bench: connection to {addr} (group {gid}) failed: {e}");
        }
        // Try the next member, unless another session already moved on.
        let members = self.members(gid);
        if members > 0 && self.leaders.get(&gid).copied().unwrap_or(0) % members == server {
            self.leaders.insert(gid, (server + 1) % members);
        }
    }

    fn members(&self, gid: GroupId) -> usize {
        self.config
            .groups
            .iter()
            .find(|g| g.gid == gid)
            .map_or(0, |g| g.servers.len())
    }

    /// Closes connection `token` and resends what was outstanding on it:
    /// at once after a redirect, after a backoff if it failed.
    fn drop_conn(&mut self, token: usize, failed: bool, now: Instant) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let s = conn.session;
        if self.sessions[s].conns.get(&conn.gid) == Some(&token) {
            self.sessions[s].conns.remove(&conn.gid);
        }
        let stranded: Vec<Seq> = self.sessions[s]
            .pending
            .iter()
            .filter(|(_, p)| p.sent_on == Some(token))
            .map(|(&seq, _)| seq)
            .collect();
        for seq in stranded {
            let session = &mut self.sessions[s];
            let p = session.pending.get_mut(&seq).expect("just listed");
            let due = if failed {
                p.failures += 1;
                now + backoff(p.failures, &mut session.rng)
            } else {
                now
            };
            self.schedule(s, seq, due);
        }
    }

    /// A connection failed: count it, move the hint off that server, resend.
    fn fail_conn(&mut self, token: usize, why: &io::Error, now: Instant) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        let (gid, server) = (conn.gid, conn.server);
        let addr = self
            .config
            .groups
            .iter()
            .find(|g| g.gid == gid)
            .and_then(|g| g.servers.get(server).cloned())
            .unwrap_or_default();
        self.note_conn_failure(gid, server, &addr, why);
        self.drop_conn(token, true, now);
    }

    fn on_writable(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if !conn.connected {
            // mio's connect protocol: a writable event, then take_error and
            // peer_addr tell whether the connection is up.
            let err = match conn.stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => match conn.stream.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = err {
                self.fail_conn(token, &e, now);
                return;
            }
            conn.connected = true;
            // Requests are small and latency-bound: never wait for Nagle.
            let _ = conn.stream.set_nodelay(true);
        }
        if let Err(e) = write_out(conn) {
            self.fail_conn(token, &e, now);
        }
    }

    fn flush_writes(&mut self, now: Instant) {
        let dirty = std::mem::take(&mut self.dirty);
        for token in dirty {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            // Not connected yet: the connect's writable event flushes it.
            if !conn.connected {
                continue;
            }
            if let Err(e) = write_out(conn) {
                self.fail_conn(token, &e, now);
            }
        }
    }

    fn on_readable(&mut self, token: usize, now: Instant) {
        let mut frames = Vec::new();
        let failure = {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            let mut failure = None;
            loop {
                match conn.stream.read(&mut self.scratch) {
                    Ok(0) => {
                        failure = Some(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "closed by the server",
                        ));
                        break;
                    }
                    Ok(n) => conn.inbuf.extend_from_slice(&self.scratch[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            // Frames that arrived before a close are still answers.
            loop {
                match conn.decoder.decode(&mut conn.inbuf) {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => {
                        failure = Some(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("undecodable reply: {e}"),
                        ));
                        break;
                    }
                }
            }
            failure
        };
        for frame in frames {
            self.on_frame(token, frame, now);
        }
        if let Some(e) = failure {
            self.fail_conn(token, &e, now);
        }
    }

    fn on_frame(&mut self, token: usize, frame: Frame, now: Instant) {
        // Until the server proved the key, only its challenge is expected.
        if let Some(conn) = self.conns.get_mut(&token) {
            if let Some(dialer) = conn.dialer.take() {
                let proof = match frame.message {
                    Message::Auth(AuthMsg::Challenge(ch)) => {
                        dialer.on_challenge(&ch).map_err(|e| e.to_string())
                    }
                    other => Err(format!("{other:?} before the server's challenge")),
                };
                match proof {
                    Ok(proof) => {
                        encode_frame(
                            &Frame {
                                request_id: 0,
                                group: conn.gid,
                                message: Message::Auth(AuthMsg::Proof(proof)),
                            },
                            &mut conn.out,
                        );
                        let held = std::mem::take(&mut conn.held);
                        conn.out.extend_from_slice(&held);
                        self.dirty.push(token);
                    }
                    Err(why) => {
                        let e = io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!("authentication: {why}"),
                        );
                        self.fail_conn(token, &e, now);
                    }
                }
                return;
            }
        }
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        let (s, gid, server) = (conn.session, conn.gid, conn.server);
        let seq = frame.request_id & SEQ_MASK;
        let attempt = frame.request_id >> SEQ_BITS;
        let current = self.sessions[s]
            .pending
            .get(&seq)
            .is_some_and(|p| p.attempt == attempt && p.sent_on == Some(token));
        if !current {
            // A reply to an attempt given up on (timeout, redirect): ignore.
            return;
        }
        let reply = match frame.message {
            Message::Reply(r) => r,
            other => {
                let e = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected message {other:?}"),
                );
                self.fail_conn(token, &e, now);
                return;
            }
        };
        match reply {
            ClientReply::Ok(v) => {
                let out = match self.sessions[s].pending[&seq].op {
                    Op::Get { .. } => KvOutput::Value(Some(v)),
                    Op::Delete { .. } => KvOutput::Deleted(v.as_ref() == b"1"),
                    _ => KvOutput::Ok,
                };
                self.finish(s, seq, Outcome::Done(out), now);
            }
            ClientReply::NoKey => {
                self.counters.get_misses += 1;
                self.finish(s, seq, Outcome::Done(KvOutput::Value(None)), now);
            }
            ClientReply::Error { reason } => {
                if self.counters.errors < ERROR_REASONS_SHOWN {
                    eprintln!("synod-bench: request refused: {reason}");
                }
                self.finish(s, seq, Outcome::Refused, now);
            }
            // Final, outcome unknown (an earlier copy may have applied):
            // never resent under the same id. A run shorter than the
            // servers' session TTL sees it only under the session cap.
            ClientReply::SessionExpired => {
                if self.counters.errors < ERROR_REASONS_SHOWN {
                    eprintln!("synod-bench: request refused: session expired");
                }
                self.finish(s, seq, Outcome::Refused, now);
            }
            ClientReply::Busy => {
                self.counters.busy += 1;
                let session = &mut self.sessions[s];
                let p = session.pending.get_mut(&seq).expect("checked");
                p.failures += 1;
                let delay = backoff(p.failures, &mut session.rng);
                self.schedule(s, seq, now + delay);
            }
            ClientReply::NotLeader { leader } => {
                self.counters.redirects += 1;
                let members = self.members(gid).max(1);
                let hinted = leader
                    .map(|l| l as usize)
                    .filter(|&l| l < members && l != server);
                self.leaders
                    .insert(gid, hinted.unwrap_or((server + 1) % members));
                let session = &mut self.sessions[s];
                let p = session.pending.get_mut(&seq).expect("checked");
                p.redirects += 1;
                let delay = if hinted.is_some() && p.redirects <= FREE_REDIRECTS {
                    Duration::ZERO
                } else {
                    backoff(p.redirects, &mut session.rng)
                };
                self.schedule(s, seq, now + delay);
                // Everything else on this connection is headed for the same
                // answer: move it to the new leader now.
                self.drop_conn(token, false, now);
            }
            ClientReply::WrongGroup => {
                self.counters.redirects += 1;
                self.need_config = true;
                self.schedule(s, seq, now + CONFIG_REFRESH_INTERVAL);
            }
        }
    }

    /// Ends request `seq` of session `s`: frees its pipeline slot, moves the
    /// ack watermark, records its latency and history entry.
    fn finish(&mut self, s: usize, seq: Seq, outcome: Outcome, now: Instant) {
        let session = &mut self.sessions[s];
        let Some(p) = session.pending.remove(&seq) else {
            return;
        };
        session.acks.retire(seq);
        let output = match outcome {
            Outcome::Done(out) => {
                let latency_us = now.duration_since(p.latency_from).as_micros() as u64;
                self.interval.saturating_record(latency_us.max(1));
                self.shared.completed.fetch_add(1, Ordering::Relaxed);
                let in_window = now >= self.measure_start && self.end.is_none_or(|e| now <= e);
                if p.measured && in_window {
                    self.ops += 1;
                    self.last_completion = Some(now);
                }
                // Open-loop, a request intended in the window counts even if
                // it finished after it: leaving those out would cut off the
                // tail that the schedule is there to expose.
                if p.measured && (in_window || self.pacer.is_some()) {
                    self.hist.saturating_record(latency_us.max(1));
                }
                out
            }
            Outcome::Refused => {
                self.counters.errors += 1;
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                KvOutput::Unknown
            }
            Outcome::TimedOut => {
                self.counters.errors += 1;
                self.counters.timeouts += 1;
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                KvOutput::Unknown
            }
        };
        if let Some(i) = p.history {
            let h = &mut self.history[i];
            h.output = output;
            h.ret = nanos_since(self.spec.epoch, now).max(h.call);
        }
    }

    /// Gives up on requests past their deadline.
    fn expire(&mut self, now: Instant) {
        let mut late = Vec::new();
        for (s, session) in self.sessions.iter().enumerate() {
            for (&seq, p) in &session.pending {
                if now >= p.deadline {
                    late.push((s, seq));
                }
            }
        }
        for (s, seq) in late {
            self.finish(s, seq, Outcome::TimedOut, now);
        }
    }

    /// The drain deadline passed: everything still outstanding is an error.
    fn abandon_all(&mut self, now: Instant) {
        for s in 0..self.sessions.len() {
            let seqs: Vec<Seq> = self.sessions[s].pending.keys().copied().collect();
            for seq in seqs {
                self.finish(s, seq, Outcome::TimedOut, now);
            }
        }
    }

    /// Fetches the latest configuration (blocking, bounded by the client's
    /// timeout), at most once per [`CONFIG_REFRESH_INTERVAL`].
    fn refresh_config(&mut self, now: Instant) {
        if self
            .last_refresh
            .is_some_and(|t| now.duration_since(t) < CONFIG_REFRESH_INTERVAL)
        {
            return;
        }
        self.last_refresh = Some(now);
        if self.master.is_none() {
            let mut opts = ClientOptions::new(self.spec.masters.clone());
            opts.timeout = Duration::from_secs(2);
            opts.rpc_timeout = Duration::from_millis(500);
            opts.cluster_key = self.spec.cluster_key.clone();
            opts.client_key = self.spec.client_key.clone();
            match Client::new(opts) {
                Ok(c) => self.master = Some(c),
                Err(e) => {
                    eprintln!("synod-bench: cannot refresh the configuration: {e}");
                    return;
                }
            }
        }
        let master = self.master.as_mut().expect("just set");
        match master.query(None) {
            Ok(c) => {
                if c.num >= self.config.num {
                    self.config = c;
                }
                self.need_config = false;
            }
            Err(e) => eprintln!("synod-bench: configuration refresh failed: {e}"),
        }
    }
}

/// Writes as much of `conn.out` as the socket takes.
fn write_out(conn: &mut Conn) -> io::Result<()> {
    while !conn.out.is_empty() {
        match conn.stream.write(&conn.out) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => conn.out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Exponential backoff with equal jitter, from [`BACKOFF_BASE`] to
/// [`BACKOFF_MAX`]: half fixed so a retry never hammers, half random so
/// requests that failed together spread out.
fn backoff(failures: u32, rng: &mut Rng) -> Duration {
    let full = BACKOFF_BASE
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    let half = full / 2;
    half + Duration::from_nanos(rng.range(0, half.as_nanos() as u64 + 1))
}

/// Nanoseconds from `epoch` to `t` (history timestamps).
fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(epoch).as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds() {
        let mut rng = Rng::new(1);
        for failures in 1..40 {
            let d = backoff(failures, &mut rng);
            let full = BACKOFF_BASE
                .saturating_mul(1 << (failures - 1).min(16))
                .min(BACKOFF_MAX);
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?}");
        }
    }

    #[test]
    fn request_ids_carry_seq_and_attempt() {
        let rid = (3u64 << SEQ_BITS) | 12345;
        assert_eq!(rid & SEQ_MASK, 12345);
        assert_eq!(rid >> SEQ_BITS, 3);
    }
}
