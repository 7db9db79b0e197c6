//! The pipelined load driver, closed-loop or open-loop.
//!
//! Each benchmark client is one session core
//! (`synod::client::session::Session`), the same one every client of the
//! cluster drives: one at-most-once identity with its seqs and `ack_seq`,
//! routing by the configuration with leader hints, retries with the same
//! seq, backoff, non-blocking configuration refresh on `WrongGroup` and a
//! deadline per request. Its window is `pipeline` requests. Closed-loop
//! (the default), a completion (or a give-up) frees a slot and the next
//! operation is issued at once. Open-loop (`RunSpec::rate`), each worker
//! issues its share of the rate on a fixed schedule ([`crate::pace`]) to
//! its sessions in turn, skipping full ones; a request that finds every
//! slot taken waits, and its latency runs from its *intended* send time, so
//! waiting for the pipeline (or for a late worker) counts. Sessions are
//! spread over a few worker threads, each running one mio `Poll` over its
//! sessions' sockets, so 64 sessions do not need 128 blocking threads
//! fighting the servers for the same cores.
//!
//! This file is only I/O and scheduling: which operation to issue when,
//! the connections (`synod::client::mio_conn`, which also runs the
//! authentication handshake): by default one per destination a worker's
//! sessions name, shared by all of them as an application process's
//! sessions would share them, each send under a worker-wide wire id
//! (`synod::client::wire_ids`, as the RESP gateway's upstream);
//! `RunSpec::conn_per_client` gives each session its own, as separate
//! client processes would have; and turning completions into latencies,
//! counters and the history. A transfer (`Workload::Transfer`) is one `Txn` request the
//! session runs like any other (one log entry in one group, or its
//! two-phase commit across groups, with its retries after no-wait
//! aborts); its answer is checked (`synod::check::bank::check_transfer`)
//! and its session's 2PC figures are summed. `Error` replies and requests past `request_timeout` are
//! counted as errors and recorded as `Unknown` in the history. Nothing a
//! server does can panic the driver or keep it running past the end of
//! the run plus `drain_timeout`.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Poll};
use synod::auth::Key;
use synod::check::{KvInput, KvOp, KvOutput};
use synod::client::mio_conn::Conns;
use synod::client::session::{Answer, Dest, Req, Session, SessionOptions, Time};
use synod::client::wire_ids::{Answered, WireIds};
use synod::client::{ClientError, DEFAULT_RPC_TIMEOUT};
use synod::rng::Rng;
use synod_wire::{ClientId, Config, Op};

use crate::pace::{next_free, worker_rate, Pacer, Slot};
use crate::workload::{next_op, next_transfer, GroupMap, Workload};
use crate::zipf::KeyDist;

/// Highest latency the histograms hold (60 s, in µs); larger values are
/// clamped, which only a request stuck for a minute could produce.
pub const LATENCY_US_MAX: u64 = 60_000_000;
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
/// How often a worker publishes its interval histogram for the progress line.
const PROGRESS_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Longest retry delay: a benchmark would rather see errors than idle.
const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// Error reasons printed (the rest are only counted).
const ERROR_REASONS_SHOWN: u64 = 5;
/// Shared connections: how often wire ids whose send no session waits for
/// any more (given up, or resent elsewhere) are forgotten.
const WIRE_ID_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

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
    /// Masters, for the sessions' configuration refreshes on `WrongGroup`.
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
    /// Let the groups a server runs on one core share a connection
    /// (`SessionOptions::share_connections`).
    pub share_connections: bool,
    /// Every session its own connections, as separate client processes
    /// would have; else a worker's sessions share one connection per
    /// destination, as the RESP gateway's do (`synod::client::wire_ids`).
    pub conn_per_client: bool,
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
    /// Transactions across groups attempted (two-phase commits, retries
    /// included), of them aborted and retried, and of those the ones
    /// whose decision lost to a presumed abort (`SessionStats`).
    pub two_pc: u64,
    pub two_pc_aborts: u64,
    pub two_pc_presumed_aborts: u64,
    /// Transfers whose accounts could not be placed as `--txn-one-group`
    /// or `--txn-cross-group` asked (bounded draws; any two were taken).
    pub off_span: u64,
    /// Transfers answered with a refused half (`check_transfer`): the
    /// bank is broken.
    pub txn_broken: u64,
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
        self.two_pc += o.two_pc;
        self.two_pc_aborts += o.two_pc_aborts;
        self.two_pc_presumed_aborts += o.two_pc_presumed_aborts;
        self.off_span += o.off_span;
        self.txn_broken += o.txn_broken;
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
    let id_base = Rng::new(synod::client::random_client_id()).next_u64();
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

/// One operation a client has issued and not yet seen finish.
struct Pending {
    op_kind: OpKind,
    /// Where its latency runs from, through every retry: when it was
    /// issued, or open-loop, when it was intended to be.
    latency_from: Instant,
    /// Counted toward `--ops` (issued after the warmup); open-loop:
    /// intended inside the measured window.
    measured: bool,
    /// Its entry in the history, when one is recorded.
    history: Option<usize>,
}

/// What a result means depends on the operation's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Get,
    Delete,
    Write,
    /// A bank transfer (`Op::Txn`), never in the KV history.
    Transfer,
}

/// One benchmark client: a session core, its operations in flight (by the
/// session's handle) and, with `--conn-per-client`, its connections (a
/// token of `Worker::conns` per destination).
struct Client {
    session: Session,
    pending: HashMap<u64, Pending>,
    conns: HashMap<Dest, usize>,
    /// Operations issued: the values it writes carry the number, so every
    /// written value is unique (what `--check` needs).
    issued: u64,
    rng: Rng,
    /// When the session wants to be polled again.
    wake: Option<Time>,
    /// Listed in `Worker::touched` for this turn.
    touched: bool,
}

/// How an operation ended.
enum Outcome {
    Done(KvOutput),
    /// An `Error` reply, an expired session, a refusal.
    Refused,
    /// No answer by its deadline, or by the end of the drain.
    TimedOut,
}

struct Worker<'a> {
    spec: &'a RunSpec,
    shared: &'a Shared,
    index: usize,
    poll: Poll,
    /// The sessions' clock starts here.
    epoch: Instant,
    clients: Vec<Client>,
    /// Every connection, each with its destination and, with
    /// `--conn-per-client`, its client (else every client shares it).
    conns: Conns<(Option<usize>, Dest)>,
    /// Shared connections (no `--conn-per-client`): one per destination.
    shared_conns: HashMap<Dest, usize>,
    /// Shared connections: which client each send on the wire is for.
    wire_ids: WireIds,
    last_sweep: Instant,
    /// Clients whose session has news to poll this turn.
    touched: Vec<usize>,
    /// Fresh client ids after a `SessionExpired`.
    id_rng: Rng,
    /// Open-loop: this worker's schedule.
    pacer: Option<Pacer>,
    /// Where the run's first configuration puts each account (transfers'
    /// `--txn-one-group` and `--txn-cross-group`).
    groups: GroupMap,
    /// Open-loop: the session the next free-slot search starts from.
    cursor: usize,
    measure_start: Instant,
    end: Option<Instant>,
    issuing: bool,
    issue_stopped: Option<Instant>,
    hist: Histogram<u64>,
    lag: Histogram<u64>,
    interval: Histogram<u64>,
    ops: u64,
    counters: Counters,
    history: Vec<KvOp>,
    last_completion: Option<Instant>,
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
        let mut opts =
            SessionOptions::new(spec.request_timeout, DEFAULT_RPC_TIMEOUT, spec.pipeline);
        opts.backoff_max = BACKOFF_MAX;
        opts.share_connections = spec.share_connections;
        let epoch = Instant::now();
        let clients = sessions
            .into_iter()
            .map(|(client_id, seed)| {
                let mut rng = Rng::new(seed);
                let mut session = Session::with_masters(
                    opts.clone(),
                    spec.masters.clone(),
                    client_id,
                    rng.next_u64(),
                    Time::ZERO,
                );
                session.install_config(config.clone());
                Client {
                    session,
                    pending: HashMap::new(),
                    conns: HashMap::new(),
                    issued: 0,
                    rng,
                    wake: None,
                    touched: false,
                }
            })
            .collect();
        Worker {
            spec,
            shared,
            index,
            poll: Poll::new().expect("create a mio Poll"),
            epoch,
            clients,
            conns: Conns::new(
                0,
                synod::auth::stream::client_identity(
                    spec.cluster_key.as_ref(),
                    spec.client_key.as_ref(),
                ),
            ),
            shared_conns: HashMap::new(),
            wire_ids: WireIds::default(),
            last_sweep: epoch,
            touched: Vec::new(),
            id_rng: Rng::new(synod::client::random_client_id()),
            pacer,
            groups: GroupMap::new(&config),
            cursor: 0,
            measure_start,
            end,
            issuing: true,
            issue_stopped: None,
            hist: new_histogram(),
            lag: new_histogram(),
            interval: new_histogram(),
            ops: 0,
            counters: Counters::default(),
            history: Vec::new(),
            last_completion: None,
        }
    }

    /// The sessions' time for `t`.
    fn time(&self, t: Instant) -> Time {
        t.saturating_duration_since(self.epoch)
    }

    fn run(mut self) -> WorkerResult {
        let mut events = Events::with_capacity(1024);
        let mut last_flush = Instant::now();
        loop {
            let now = Instant::now();
            for token in self.conns.take_unread() {
                self.on_readable(token, now);
            }
            if self.issuing {
                self.maybe_stop_issuing(now);
            }
            if self.issuing {
                match self.pacer {
                    None => self.refill(now),
                    Some(_) => self.pace(now),
                }
            }
            // What was just issued (and what the sessions resend) goes
            // out in this turn; completions were taken as replies arrived.
            self.step_sessions(now);
            self.flush_writes(now);
            if now.duration_since(self.last_sweep) >= WIRE_ID_SWEEP_INTERVAL {
                self.last_sweep = now;
                let clients = &self.clients;
                self.wire_ids.retain_waiting(|c, request_id| {
                    clients[c].session.dest_of(request_id).is_some()
                });
            }
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
            if self.conns.has_unread() || !self.touched.is_empty() {
                timeout = Duration::ZERO;
            }
            let now_t = self.time(now);
            if let Some(wake) = self.clients.iter().filter_map(|c| c.wake).min() {
                // Rounded up to whole milliseconds (what `poll` waits):
                // waking early would find nothing due.
                let wait = wake.saturating_sub(now_t);
                timeout =
                    timeout.min(Duration::from_millis(wait.as_micros().div_ceil(1000) as u64));
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
                let closed = event.is_read_closed() || event.is_error();
                if closed {
                    self.conns.note_read_closed(token);
                }
                if closed || event.is_readable() {
                    self.on_readable(token, now);
                }
            }
        }
        self.publish_interval();
        self.collect_stats();
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
        self.clients.iter().map(|c| c.pending.len()).sum()
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
        for c in 0..self.clients.len() {
            while self.issuing && self.clients[c].pending.len() < self.spec.pipeline {
                self.issue(c, now, None);
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
            let clients = &self.clients;
            let free = next_free(clients.len(), self.cursor, |c| {
                clients[c].pending.len() < pipeline
            });
            let pacer = self.pacer.as_mut().expect("open-loop");
            let Some(c) = free else {
                pacer.full(now);
                break;
            };
            pacer.slot_free(now);
            if !self.issuing || !pacer.is_due(now) {
                break;
            }
            let slot = pacer.take(now);
            self.cursor = c;
            used = Some(c);
            self.issue(c, now, Some(slot));
        }
        if let Some(c) = used {
            self.cursor = (c + 1) % self.clients.len();
        }
    }

    /// Open-loop: when the next request is due, if a slot is free for it
    /// (a full pipeline wakes the worker with a reply instead).
    fn next_send(&self) -> Option<Instant> {
        let pacer = self.pacer.as_ref()?;
        if !self.issuing || self.outstanding() >= self.clients.len() * self.spec.pipeline {
            return None;
        }
        pacer.next_intended()
    }

    /// Issues one new operation on client `c`, unless the op budget is
    /// spent (then issuing stops). Open-loop, `slot` is its place in the
    /// schedule.
    fn issue(&mut self, c: usize, now: Instant, slot: Option<Slot>) {
        let budgeted =
            self.spec.ops.is_some() || matches!(self.spec.workload, Workload::Prefill { .. });
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
        let client = &mut self.clients[c];
        client.issued += 1;
        let client_id = client.session.client_id();
        let op = match self.spec.workload {
            Workload::Transfer { span } => {
                let (op, in_span) =
                    next_transfer(span, &self.spec.keys, &mut client.rng, &self.groups);
                self.counters.off_span += u64::from(!in_span);
                op
            }
            workload => next_op(
                workload,
                &self.spec.keys,
                &mut client.rng,
                index,
                client_id,
                client.issued,
                self.spec.value_size,
            ),
        };
        let op_kind = match &op {
            Op::Get { .. } => OpKind::Get,
            Op::Delete { .. } => OpKind::Delete,
            Op::Txn(_) => OpKind::Transfer,
            _ => OpKind::Write,
        };
        // Transactions are checked by the bank's audit, not the per-key
        // linearizability checker.
        let record = self.spec.record_history && op_kind != OpKind::Transfer;
        let history = record.then(|| {
            let (input, key) = match &op {
                Op::Get { key } => (KvInput::Get, key.clone()),
                Op::Put { key, value } => (KvInput::Put(value.clone()), key.clone()),
                Op::Append { key, value } => (KvInput::Append(value.clone()), key.clone()),
                Op::Delete { key } => (KvInput::Delete, key.clone()),
                other => unreachable!("next_op issues Get, Put, Append and Delete only: {other:?}"),
            };
            self.history.push(KvOp {
                client: client_id,
                key,
                input,
                output: KvOutput::Unknown,
                call: nanos_since(self.spec.epoch, now),
                ret: 0,
            });
            self.history.len() - 1
        });
        let handle = client.session.submit(Req::Kv(op));
        client.pending.insert(
            handle,
            Pending {
                op_kind,
                latency_from,
                // Closed-loop and unbudgeted, the completion time decides
                // (see `finish`); open-loop, the intended time does.
                measured: measured || (slot.is_none() && !budgeted),
                history,
            },
        );
        self.touch(c);
    }

    fn touch(&mut self, c: usize) {
        let client = &mut self.clients[c];
        if !client.touched {
            client.touched = true;
            self.touched.push(c);
        }
    }

    /// Polls every session with news or a wake-up due and carries out what
    /// it asks: connections to drop, frames to send, completions.
    fn step_sessions(&mut self, now: Instant) {
        let now_t = self.time(now);
        for (c, client) in self.clients.iter_mut().enumerate() {
            if !client.touched && client.wake.is_some_and(|w| w <= now_t) {
                client.touched = true;
                self.touched.push(c);
            }
        }
        // Stepping may touch a client again (a connection it could not
        // open): those wait for the next turn.
        let touched = std::mem::take(&mut self.touched);
        for c in touched {
            self.clients[c].touched = false;
            self.step(c, now);
        }
    }

    fn step(&mut self, c: usize, now: Instant) {
        let now_t = self.time(now);
        let client = &mut self.clients[c];
        if client.session.needs_new_id(now_t) {
            let id = synod_wire::client_id_at(synod_wire::unix_now_ms(), self.id_rng.next_u64());
            client.session.set_client_id(id, now_t);
        }
        client.session.poll(now_t);
        while let Some((dest, why)) = self.clients[c].session.poll_close() {
            if let Some(token) = self.conn_for(c, &dest) {
                if self.spec.conn_per_client {
                    self.note_conn_failure(&dest, &why);
                    self.drop_conn(token);
                } else {
                    // Other clients' sends on it are resent elsewhere too.
                    self.fail_conn(token, &why, now);
                }
            }
        }
        while let Some(mut t) = self.clients[c].session.poll_transmit() {
            let token = match self.conn_for(c, &t.dest) {
                Some(token) => token,
                None => match self.open(c, &t.dest) {
                    Ok(token) => token,
                    Err(why) => {
                        self.note_conn_failure(&t.dest, &why);
                        // Its frames never left: the session resends them
                        // elsewhere after a backoff.
                        self.clients[c]
                            .session
                            .on_conn_failed(&t.dest, &why, false, now_t);
                        continue;
                    }
                },
            };
            if !self.spec.conn_per_client {
                self.wire_ids.stamp(c, token, &mut t.frame);
            }
            self.conns.queue(token, &t.frame);
        }
        self.drain(c, now);
        let client = &mut self.clients[c];
        client.wake = client.session.next_wake(now_t);
    }

    /// Takes client `c`'s finished operations.
    fn drain(&mut self, c: usize, now: Instant) {
        while let Some(done) = self.clients[c].session.poll_completion() {
            let Some(p) = self.clients[c].pending.remove(&done.handle) else {
                continue;
            };
            let outcome = match done.result {
                Ok(Answer::Kv(Some(v))) if p.op_kind == OpKind::Transfer => {
                    let checked = synod_wire::decode_txn_result(v)
                        .map_err(|e| format!("undecodable transaction result: {e}"))
                        .and_then(|r| synod::check::bank::check_transfer(&r));
                    if let Err(why) = checked {
                        if self.counters.txn_broken < ERROR_REASONS_SHOWN {
                            eprintln!("synod-bench: BROKEN transfer: {why}");
                        }
                        self.counters.txn_broken += 1;
                    }
                    Outcome::Done(KvOutput::Ok)
                }
                Ok(Answer::Kv(Some(v))) => Outcome::Done(match p.op_kind {
                    OpKind::Get => KvOutput::Value(Some(v)),
                    OpKind::Delete => KvOutput::Deleted(v.as_ref() == b"1"),
                    OpKind::Write | OpKind::Transfer => KvOutput::Ok,
                }),
                Ok(Answer::Kv(None)) => {
                    self.counters.get_misses += 1;
                    Outcome::Done(KvOutput::Value(None))
                }
                Ok(Answer::Config(_)) => unreachable!("benchmark clients submit KV requests only"),
                Err(ClientError::Timeout | ClientError::Unreachable(_)) => Outcome::TimedOut,
                Err(e) => {
                    // Final, outcome unknown for a write (an earlier copy
                    // may have applied). A run shorter than the servers'
                    // session TTL sees `SessionExpired` only under the
                    // session cap.
                    if self.counters.errors < ERROR_REASONS_SHOWN {
                        eprintln!("synod-bench: request refused: {e}");
                    }
                    Outcome::Refused
                }
            };
            self.finish(p, outcome, now);
        }
    }

    /// Records an operation's end: its latency, counters, history entry.
    fn finish(&mut self, p: Pending, outcome: Outcome, now: Instant) {
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

    /// The drain deadline passed: everything still outstanding is an error.
    fn abandon_all(&mut self, now: Instant) {
        for c in 0..self.clients.len() {
            let pending: Vec<Pending> = self.clients[c].pending.drain().map(|(_, p)| p).collect();
            for p in pending {
                self.finish(p, Outcome::TimedOut, now);
            }
        }
    }

    /// Adds the sessions' counts of non-final answers to the counters.
    fn collect_stats(&mut self) {
        for c in &mut self.clients {
            let s = c.session.stats();
            self.counters.busy += s.busy;
            self.counters.redirects += s.not_leader + s.wrong_group;
            self.counters.two_pc += s.two_pc;
            self.counters.two_pc_aborts += s.two_pc_aborts;
            self.counters.two_pc_presumed_aborts += s.two_pc_presumed_aborts;
        }
    }

    /// The open connection client `c` sends to `dest` on, if any.
    fn conn_for(&self, c: usize, dest: &Dest) -> Option<usize> {
        if self.spec.conn_per_client {
            self.clients[c].conns.get(dest).copied()
        } else {
            self.shared_conns.get(dest).copied()
        }
    }

    /// Connects client `c` (or with shared connections, every client) to
    /// `dest` (no connection is open).
    fn open(&mut self, c: usize, dest: &Dest) -> Result<usize, String> {
        let sa: SocketAddr = match dest.addr.parse() {
            Ok(sa) => sa,
            Err(_) => dest
                .addr
                .to_socket_addrs()
                .map_err(|e| format!("{}: cannot resolve: {e}", dest.addr))?
                .next()
                .ok_or_else(|| format!("{}: address resolves to nothing", dest.addr))?,
        };
        let owner = self.spec.conn_per_client.then_some(c);
        let token = self
            .conns
            .open(sa, dest.gid, self.poll.registry(), (owner, dest.clone()))?;
        match owner {
            Some(c) => self.clients[c].conns.insert(dest.clone(), token),
            None => self.shared_conns.insert(dest.clone(), token),
        };
        Ok(token)
    }

    fn note_conn_failure(&mut self, dest: &Dest, why: &str) {
        self.counters.reconnects += 1;
        if self.counters.reconnects <= ERROR_REASONS_SHOWN {
            eprintln!(
                "synod-bench: connection to {} (group {}) failed: {why}",
                dest.addr, dest.gid
            );
        }
    }

    /// Closes connection `token` (the session has been told, or told us).
    fn drop_conn(&mut self, token: usize) {
        let Some((owner, dest)) = self.conns.close(token, self.poll.registry()) else {
            return;
        };
        let conns = match owner {
            Some(c) => &mut self.clients[c].conns,
            None => &mut self.shared_conns,
        };
        if conns.get(&dest) == Some(&token) {
            conns.remove(&dest);
        }
    }

    /// A connection failed: count it, drop it, and let its sessions resend
    /// what was on it.
    fn fail_conn(&mut self, token: usize, why: &str, now: Instant) {
        let Some((owner, dest)) = self.conns.meta(token).cloned() else {
            return;
        };
        self.note_conn_failure(&dest, why);
        self.drop_conn(token);
        let now_t = self.time(now);
        let affected = match owner {
            Some(c) => vec![c],
            None => self.wire_ids.forget_conn(token),
        };
        for c in affected {
            self.clients[c]
                .session
                .on_conn_failed(&dest, why, true, now_t);
            self.touch(c);
        }
    }

    fn on_writable(&mut self, token: usize, now: Instant) {
        if let Err(why) = self.conns.on_writable(token) {
            self.fail_conn(token, &why, now);
        }
    }

    fn flush_writes(&mut self, now: Instant) {
        for (token, why) in self.conns.flush() {
            self.fail_conn(token, &why, now);
        }
    }

    fn on_readable(&mut self, token: usize, now: Instant) {
        let mut frames = Vec::new();
        let failure = self.conns.on_readable(token, &mut frames);
        if !frames.is_empty() {
            let now_t = self.time(now);
            let Some((owner, dest)) = self.conns.meta(token).cloned() else {
                return;
            };
            let mut answered = Vec::new();
            for mut frame in frames {
                let c = match owner {
                    Some(c) => c,
                    None => match self.wire_ids.answer(token, &mut frame) {
                        Answered::Owner(c) => c,
                        // Nobody waits for it (answered already, or swept).
                        Answered::Unknown => continue,
                        Answered::Confused => {
                            self.fail_conn(token, "reply to a request sent elsewhere", now);
                            return;
                        }
                    },
                };
                self.clients[c].session.on_frame(&dest, frame, now_t);
                answered.push(c);
            }
            answered.sort_unstable();
            answered.dedup();
            // Finished operations free their slots for this turn's refill.
            for c in answered {
                self.touch(c);
                self.drain(c, now);
            }
        }
        if let Some(why) = failure {
            self.fail_conn(token, &why, now);
        }
    }
}

/// Nanoseconds from `epoch` to `t` (history timestamps).
fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(epoch).as_nanos() as u64
}
