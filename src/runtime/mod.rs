//! The production driver of the sans-IO cores: thread per core, each core a
//! mio event loop that owns its replica groups outright (see `core.rs`).
//!
//! Placement is deterministic: group `gid` lives on core `gid % cores` on
//! every node (the master group, gid 0, on core 0). The node's one listening
//! socket is polled by core 0. A connection belongs to the group its first
//! frame names: core 0 reads that frame and, if another core owns the group,
//! hands the socket over once through a crossbeam channel and a mio `Waker`.
//! The project's client opens one connection per (server, core) (the groups
//! of one core share it once the client learned they may, `client/lanes.rs`;
//! a frame for another core's group is answered `WrongCore`), so after that
//! single handoff every request and reply on it stays on the owning core with
//! no cross-core hop and no lock.

pub mod alloc;
mod conn;
mod core;
mod datadir;
pub mod limits;

pub use self::core::{Control, CoreHandle};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};
use synod_wire::GroupId;

use crate::storage::{FsyncPolicy, Wal, WalOptions};

/// Everything a node is told at start.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub listen: SocketAddr,
    /// The address other nodes and clients use for this node, as it appears
    /// in configurations (`host:port`).
    pub advertise: String,
    pub data_dir: PathBuf,
    pub masters: Vec<String>,
    pub cores: usize,
    pub shards: u32,
    pub tick: Duration,
    pub fsync: FsyncPolicy,
    pub frame_bytes_max: u32,
    pub connections_max: usize,
    /// Per connection: replies buffered beyond this stop reading its requests.
    pub conn_write_buf_max: usize,
    /// Per connection: requests in flight beyond this stop reading more.
    pub conn_in_flight_max: usize,
    pub idle_timeout: Duration,
    pub first_frame_timeout: Duration,
    pub snapshot_log_slots: usize,
    /// ... or once the batches applied since the last one hold more than
    /// this many bytes (`replica::ReplicaConfig::snapshot_log_bytes`).
    pub snapshot_log_bytes: u64,
    /// The slot trigger waits until the log weighs this percent of the last
    /// snapshot (`replica::ReplicaConfig::snapshot_log_percent`).
    pub snapshot_log_percent: u64,
    /// Snapshot bytes serialized per loop turn
    /// (`replica::ReplicaConfig::snapshot_step_bytes`).
    pub snapshot_step_bytes: usize,
    /// A core's WAL moves on to a new segment at this size; only whole
    /// closed segments are ever deleted, so this is the WAL's granularity
    /// of reclaiming disk (`storage::WalOptions::segment_bytes`).
    pub wal_segment_bytes: u64,
    /// Dead segments a core's WAL keeps to write its next segments over
    /// instead of creating files (`storage::WalOptions::recycle_segments`):
    /// each costs up to a segment of disk.
    pub wal_recycle_segments: usize,
    /// KV Gets by read-index (a quorum round shared by a turn's reads, no
    /// log slot); `false` sends them through the log like writes.
    pub read_index: bool,
    /// With `read_index`: a leader holding a lease answers Gets at once
    /// (`paxos::Config::lease_us`, derived from `tick` and the election
    /// timeout by `paxos::lease_for`).
    pub read_lease: bool,
    /// With `read_lease`: a core's `fdatasync` runs on its syncer thread
    /// while the loop answers leased reads (`Core::in_sync`); `false`
    /// syncs on the loop's thread.
    pub reads_during_sync: bool,
    /// A core's replication messages to another server share one
    /// connection (a link, `Role::Link`) among all its groups; `false`
    /// dials one connection per group and peer (what a server without
    /// links, before 2026-12-02, accepts).
    pub peer_links: bool,
    /// SO_SNDBUF/SO_RCVBUF for every connection; `None` keeps the kernel's
    /// (auto-tuned) sizes.
    pub socket_buf_bytes: Option<usize>,
    /// Bytes of records per chunk when another group pulls a shard from
    /// this node (see `shardkv`); well below `frame_bytes_max`.
    pub migrate_chunk_bytes: usize,
    /// How long a prepared part of a cross-group transaction waits for its
    /// client before this node's leader asks the coordinator for the
    /// outcome (presumed abort; `shardkv::migrator::DEFAULT_RESOLVE_AFTER`).
    /// Local: nodes may differ.
    pub txn_resolve_after: Duration,
    /// The cluster key (peer, migration, admin traffic) and the client key
    /// (KV requests); see `crate::auth`. None: that traffic is open.
    pub keys: crate::auth::Keys,
    /// A client's dedup session in a shard expires after this long without
    /// a write there, in log time. Part of the replicated state machine's
    /// rules: every node of a cluster must use the same value.
    pub session_ttl: Duration,
    /// Dedup sessions per shard at most (the least recently active is
    /// evicted beyond it). Same on every node, like `session_ttl`.
    pub sessions_per_shard_max: usize,
    // ----- bounded memory and start checks (issue 8) -----
    /// Per connection: replies buffered past this close the connection
    /// (the soft cap, `conn_write_buf_max`, only stops reading it).
    pub conn_reply_hard_max: usize,
    /// A partially received frame must complete within this long.
    pub frame_timeout: Duration,
    /// A frame that has been partial for [`MIN_RATE_GRACE`] must be
    /// arriving at least this fast (bytes per second).
    pub min_recv_bytes_per_sec: u64,
    /// Per core: bytes held in partially received frames, all connections
    /// together; past it the largest partial frame's connection is closed.
    pub partial_frames_budget: usize,
    /// Per core: unread reply bytes of accepted connections, all together;
    /// past it the connection holding the most is closed.
    pub reply_bytes_budget: usize,
    /// Start even though the data directory records another address or
    /// cluster (and record this one).
    pub allow_identity_change: bool,
    /// Write a Lamport/vector-clock trace of every frame sent and received
    /// here (`crate::trace::NodeTracer`); off by default.
    pub trace: Option<PathBuf>,
}

/// How long a partial frame may arrive slower than
/// `RuntimeConfig::min_recv_bytes_per_sec` before its connection is closed.
pub const MIN_RATE_GRACE: Duration = Duration::from_secs(5);

/// Default [`RuntimeConfig::snapshot_log_percent`]: a snapshot once the
/// log since the last one weighs a tenth of it (at most about 10 bytes of
/// snapshot written per byte of log; the log in memory and on disk at most
/// about a tenth of the state on top of it). 25 wrote fewer snapshots but
/// one restarted replica of a million keys read 1.87x redis-server's
/// memory (the replayed log tail), see ARCHITECTURE.md "Snapshots off the
/// loop".
pub const SNAPSHOT_LOG_PERCENT_DEFAULT: u64 = 10;

/// Default [`RuntimeConfig::tick`]: how often a core ticks its replicas
/// (their election, heartbeat and retry timers count in ticks).
pub const DEFAULT_TICK: Duration = Duration::from_millis(10);
/// Default [`RuntimeConfig::idle_timeout`]: a client connection silent
/// this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`RuntimeConfig::first_frame_timeout`]: a new connection must
/// complete its first frame within this long.
pub const DEFAULT_FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`RuntimeConfig::frame_timeout`]: a frame, once begun, must
/// complete within this long.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the configuration watcher asks the master for a newer
/// configuration.
const CONFIG_POLL_EVERY: Duration = Duration::from_millis(100);
/// The watcher's client: a whole query's deadline, and one attempt's.
const CONFIG_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const CONFIG_QUERY_RPC_TIMEOUT: Duration = Duration::from_millis(500);

impl RuntimeConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf, masters: Vec<String>) -> RuntimeConfig {
        RuntimeConfig {
            advertise: listen.to_string(),
            listen,
            data_dir,
            masters,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shards: synod_wire::DEFAULT_SHARDS,
            tick: DEFAULT_TICK,
            fsync: FsyncPolicy::Always,
            frame_bytes_max: synod_wire::DEFAULT_FRAME_BYTES_MAX,
            connections_max: 10_000,
            conn_write_buf_max: 8 << 20,
            conn_in_flight_max: 4096,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            first_frame_timeout: DEFAULT_FIRST_FRAME_TIMEOUT,
            snapshot_log_slots: 4096,
            snapshot_log_bytes: crate::replica::SNAPSHOT_LOG_BYTES_DEFAULT,
            snapshot_log_percent: SNAPSHOT_LOG_PERCENT_DEFAULT,
            snapshot_step_bytes: crate::replica::SNAPSHOT_STEP_BYTES_DEFAULT,
            wal_segment_bytes: crate::storage::SEGMENT_BYTES_DEFAULT,
            wal_recycle_segments: crate::storage::RECYCLE_SEGMENTS_DEFAULT,
            read_index: true,
            read_lease: true,
            reads_during_sync: true,
            peer_links: true,
            socket_buf_bytes: None,
            migrate_chunk_bytes: crate::shardkv::DEFAULT_MIGRATE_CHUNK_BYTES,
            txn_resolve_after: crate::shardkv::migrator::DEFAULT_RESOLVE_AFTER,
            keys: crate::auth::Keys::default(),
            session_ttl: Duration::from_millis(crate::kv::DEFAULT_SESSION_TTL_MS),
            sessions_per_shard_max: crate::kv::DEFAULT_SESSIONS_PER_SHARD_MAX,
            conn_reply_hard_max: 32 << 20,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            min_recv_bytes_per_sec: 64 << 10,
            partial_frames_budget: 64 << 20,
            reply_bytes_budget: 256 << 20,
            allow_identity_change: false,
            trace: None,
        }
    }
}

/// The core that owns group `gid`.
pub fn owner_core(gid: GroupId, cores: usize) -> usize {
    gid as usize % cores
}

/// Why a node could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A running node: its cores' handles and threads.
pub struct Node {
    /// Held for the life of the node (see `datadir`).
    _lock: datadir::DirLock,
    pub handles: Arc<Vec<CoreHandle>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub local_addr: SocketAddr,
    /// What the cores publish for `--metrics-listen` and status requests.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Tell every core about a configuration (control traffic: a channel
/// message and a wake-up per core).
fn publish(handles: &[CoreHandle], config: &synod_wire::Config) {
    for h in handles {
        if h.tx.send(Control::Config(config.clone())).is_ok() {
            let _ = h.waker.wake();
        }
    }
}

impl Node {
    pub fn shutdown(self) {
        for h in self.handles.iter() {
            let _ = h.tx.send(Control::Shutdown);
            let _ = h.waker.wake();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }

    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Check (or record) that the data directory is used with the same core
/// count: each core has its own WAL, and groups are placed by core.
fn check_layout(cfg: &RuntimeConfig) -> Result<(), StartError> {
    crate::storage::create_dir_durable(&cfg.data_dir)
        .map_err(|e| StartError(format!("cannot create {}: {e}", cfg.data_dir.display())))?;
    let meta = cfg.data_dir.join("LAYOUT");
    let want = format!("cores={}\nshards={}\n", cfg.cores, cfg.shards);
    match std::fs::read_to_string(&meta) {
        Ok(have) if have == want => Ok(()),
        Ok(have) => Err(StartError(format!(
            "{} was written with a different layout ({}); start with the same --cores and --shards",
            cfg.data_dir.display(),
            have.trim().replace('\n', ", ")
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::storage::write_durable(&meta, want.as_bytes())
                .map_err(|e| StartError(format!("cannot write {}: {e}", meta.display())))
        }
        Err(e) => Err(StartError(format!("cannot read {}: {e}", meta.display()))),
    }
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .map_err(|e| StartError(format!("socket: {e}")))?;
    // Restart quickly after a crash without waiting out TIME_WAIT.
    s.set_reuse_address(true)
        .map_err(|e| StartError(format!("SO_REUSEADDR: {e}")))?;
    s.bind(&addr.into())
        .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
    s.listen(1024)
        .map_err(|e| StartError(format!("listen on {addr}: {e}")))?;
    s.set_nonblocking(true)
        .map_err(|e| StartError(format!("nonblocking: {e}")))?;
    Ok(s.into())
}

/// Every recovered snapshot must restore before anything runs: a snapshot
/// that does not would fail (and, before, panicked) each time its group
/// starts, so refuse to start with the group and the reason instead.
fn check_recovered_snapshots(
    cfg: &RuntimeConfig,
    dir: &std::path::Path,
    groups: &BTreeMap<GroupId, crate::paxos::Durable>,
) -> Result<(), StartError> {
    use crate::replica::StateMachine;
    for (gid, durable) in groups {
        let Some((index, data)) = &durable.snapshot else {
            continue;
        };
        let data = crate::paxos::split_snapshot(data).1;
        let checked = if *gid == 0 {
            crate::master::MasterMachine::new(crate::master::MasterOptions { shards: cfg.shards })
                .check_snapshot(data)
        } else {
            crate::shardkv::ShardKv::new(
                *gid,
                crate::kv::KvOptions {
                    shards: cfg.shards,
                    ..crate::kv::KvOptions::default()
                },
            )
            .check_snapshot(data)
        };
        checked.map_err(|e| {
            StartError(format!(
                "refusing to start: the snapshot of group {gid} at slot {index} in {} does not restore: {e}",
                dir.display()
            ))
        })?;
    }
    // Each check restored a whole scratch store on this thread and freed
    // it: for 1M keys about 220 MB of small chunks in this thread's malloc
    // arena, which the cores (other threads, other arenas) never reuse and
    // glibc does not hand back by itself (the restarted replica measured
    // 566 B/key against 334 after the fill; issue 15). Give those pages
    // back now.
    if !groups.is_empty() {
        // SAFETY: malloc_trim only returns free memory to the kernel.
        unsafe { libc::malloc_trim(0) };
    }
    Ok(())
}

/// The same check for primary/backup groups' snapshots (`PbReplica::new`
/// would panic on one that does not restore, at every start).
fn check_recovered_pb_snapshots(
    cfg: &RuntimeConfig,
    dir: &std::path::Path,
    groups: &BTreeMap<GroupId, crate::pb::PbDurable>,
) -> Result<(), StartError> {
    use crate::replica::StateMachine;
    for (gid, durable) in groups {
        let Some((index, _, data)) = &durable.snapshot else {
            continue;
        };
        let kv = crate::shardkv::ShardKv::new(
            *gid,
            crate::kv::KvOptions {
                shards: cfg.shards,
                ..crate::kv::KvOptions::default()
            },
        );
        kv.check_snapshot(data).map_err(|e| {
            StartError(format!(
                "refusing to start: the snapshot of primary/backup group {gid} at position \
                 {index} in {} does not restore: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

/// Recover every core's WAL, bind the listener and start the cores.
pub fn start(cfg: RuntimeConfig) -> Result<Node, StartError> {
    limits::validate(&cfg)?;
    let lock = datadir::lock(&cfg.data_dir)?;
    datadir::check_identity(&cfg)?;
    check_layout(&cfg)?;
    let listener = bind(cfg.listen)?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| StartError(format!("local_addr: {e}")))?;
    let cfg = Arc::new(cfg);
    let metrics = Arc::new(crate::metrics::Metrics::new(
        cfg.advertise.clone(),
        cfg.cores,
    ));

    let tracer = match &cfg.trace {
        Some(path) => Some(Arc::new(
            crate::trace::NodeTracer::create(path, &cfg.advertise).map_err(|e| {
                StartError(format!("cannot write the trace {}: {e}", path.display()))
            })?,
        )),
        None => None,
    };

    let mut polls = Vec::new();
    let mut handles = Vec::new();
    let mut receivers = Vec::new();
    let rewind = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    for _ in 0..cfg.cores {
        let poll = Poll::new().map_err(|e| StartError(format!("epoll: {e}")))?;
        let waker = Waker::new(poll.registry(), mio::Token(1))
            .map_err(|e| StartError(format!("waker: {e}")))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        handles.push(CoreHandle {
            tx,
            waker: Arc::new(waker),
            rewind: rewind.clone(),
        });
        polls.push(poll);
        receivers.push(rx);
    }
    let handles = Arc::new(handles);

    let mut cores = Vec::new();
    for (id, (poll, rx)) in polls.into_iter().zip(receivers).enumerate() {
        let dir = cfg.data_dir.join(format!("core-{id}"));
        let opts = WalOptions {
            fsync: cfg.fsync,
            segment_bytes: cfg.wal_segment_bytes,
            recycle_segments: cfg.wal_recycle_segments,
            ..WalOptions::default()
        };
        let (mut wal, recovered) = Wal::open(&dir, opts).map_err(|e| {
            StartError(format!(
                "refusing to start: the log in {} cannot be trusted: {e}",
                dir.display()
            ))
        })?;
        // The snapshot writer wakes this core's loop when a write is durable.
        let waker = handles[id].waker.clone();
        wal.set_snapshot_notify(Arc::new(move || {
            let _ = waker.wake();
        }));
        let groups: BTreeMap<GroupId, crate::paxos::Durable> = recovered.groups;
        check_recovered_snapshots(&cfg, &dir, &groups)?;
        check_recovered_pb_snapshots(&cfg, &dir, &recovered.pb)?;
        let listener = if id == 0 {
            let mut l = TcpListener::from_std(
                listener
                    .try_clone()
                    .map_err(|e| StartError(format!("listener: {e}")))?,
            );
            poll.registry()
                .register(&mut l, mio::Token(0), Interest::READABLE)
                .map_err(|e| StartError(format!("register listener: {e}")))?;
            Some(l)
        } else {
            None
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((std::process::id() as u64) << 32)
            ^ id as u64;
        let mut core = self::core::Core::new(
            id,
            cfg.clone(),
            poll,
            rx,
            handles.clone(),
            listener,
            wal,
            groups,
            recovered.pb,
            seed,
            metrics.clone(),
            tracer.clone(),
        );
        if owner_core(0, cfg.cores) == id {
            if let Some(me) = cfg.masters.iter().position(|m| *m == cfg.advertise) {
                core.host_master(cfg.masters.clone(), me as u32);
            }
        }
        cores.push(core);
    }
    let threads = cores
        .into_iter()
        .enumerate()
        .map(|(id, core)| {
            std::thread::Builder::new()
                .name(format!("core-{id}"))
                .spawn(move || core.run())
                .expect("spawn core thread")
        })
        .collect();
    Ok(Node {
        _lock: lock,
        handles,
        threads,
        local_addr,
        metrics,
    })
}

/// Follow the shard master's latest configuration and hand every new one to
/// the cores (which start replicas of the groups that list this node). Runs
/// on its own thread: a blocking client is fine for control traffic.
pub fn watch_configs(node: &Node, masters: Vec<String>, keys: crate::auth::Keys) {
    let handles = node.handles.clone();
    let spawned = std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            let mut opts = crate::client::ClientOptions::new(masters);
            opts.timeout = CONFIG_QUERY_TIMEOUT;
            opts.rpc_timeout = CONFIG_QUERY_RPC_TIMEOUT;
            opts.cluster_key = keys.cluster;
            opts.client_key = keys.client;
            let mut client = match crate::client::Client::new(opts) {
                Ok(c) => c,
                Err(e) => {
                    log::error!("cannot watch configurations: {e}");
                    return;
                }
            };
            // Groups take configurations one at a time, in order, so the
            // cores get every one, not just the latest: a configuration
            // created and superseded between two polls would otherwise
            // never reach them, and a group waiting for it would stall.
            let mut last = 0;
            loop {
                // A core pruned a configuration a group there still needs
                // (one hosted after the pruning): publish from it again.
                let rewind = handles[0]
                    .rewind
                    .swap(u64::MAX, std::sync::atomic::Ordering::Relaxed);
                if rewind != u64::MAX && rewind <= last {
                    last = rewind.saturating_sub(1);
                }
                match client.query(None) {
                    Ok(latest) if latest.num > last => {
                        log::info!(
                            "configuration {} ({} groups)",
                            latest.num,
                            latest.groups.len()
                        );
                        while last < latest.num {
                            let n = last + 1;
                            let config = if n == latest.num {
                                latest.clone()
                            } else {
                                match client.query(Some(n)) {
                                    Ok(c) if c.num == n => c,
                                    Ok(c) => {
                                        log::warn!("asked for configuration {n}, got {}", c.num);
                                        break;
                                    }
                                    Err(e) => {
                                        log::debug!("configuration {n} query failed: {e}");
                                        break;
                                    }
                                }
                            };
                            publish(&handles, &config);
                            last = n;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("configuration query failed: {e}"),
                }
                std::thread::sleep(CONFIG_POLL_EVERY);
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the configuration watcher: {e}");
    }
}

#[cfg(test)]
mod snapshot_check_tests {
    use super::*;
    use crate::paxos::Record;
    use bytes::Bytes;

    /// Issue 8, finding 2 after the fact: a snapshot that does not restore
    /// (a forged chunk persisted by an older version) refuses start-up with
    /// the group and the reason, rather than panicking on every restart.
    #[test]
    fn a_recovered_snapshot_that_does_not_restore_refuses_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RuntimeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path().to_path_buf(),
            Vec::new(),
        );
        cfg.cores = 1;
        {
            let (mut wal, _) =
                Wal::open(&dir.path().join("core-0"), WalOptions::default()).unwrap();
            wal.append(
                0,
                &[Record::Snapshot {
                    index: 7,
                    data: Bytes::from(vec![0x42; 68]),
                }],
            );
            wal.sync().unwrap();
        }
        let err = match start(cfg) {
            Ok(_) => panic!("started on a garbage snapshot"),
            Err(e) => e.0,
        };
        assert!(
            err.contains("snapshot of group 0 at slot 7") && err.contains("does not restore"),
            "{err}"
        );
    }
}
