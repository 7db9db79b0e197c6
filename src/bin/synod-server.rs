//! `synod-server`: one Synod node.
//!
//! `synod-server --listen ADDR --data-dir DIR --masters A,B,C [--cores N]`
//! (options declared with `clap`, each also read from `SYNOD_<OPTION>`)
//! hosts a master replica when ADDR is in `--masters`, and a replica of every
//! KV group whose member list (in the master's latest configuration) names
//! ADDR. Logs go through env_logger (`RUST_LOG=info` by default).
//!
//! `--resp-listen ADDR` also serves the Redis protocol (RESP2) on ADDR: a
//! gateway that is a client of the cluster named by `--masters` (see
//! `synod::resp`), so `redis-cli -p PORT set k v` works against any node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::{Parser, ValueEnum};
use synod::auth::Key;
use synod::runtime::{self, RuntimeConfig};
use synod::storage::FsyncPolicy;

/// Blocks of 4 MiB and more are mappings of their own, returned to the
/// system when freed (`runtime::alloc`): a large frame's read buffer.
#[global_allocator]
static ALLOC: runtime::alloc::LargeMapped = runtime::alloc::LargeMapped;

/// One Synod node: a master replica when its address is in --masters, and
/// a replica of every KV group whose members (in the master's latest
/// configuration) name it.
///
/// Every option can also be set in the environment as SYNOD_<OPTION>
/// (--data-dir: SYNOD_DATA_DIR); the command line wins. Defaults that
/// cannot be shown below are the runtime's (`RuntimeConfig::new`).
///
/// Limits are named with -max last (--connections-max); the older names
/// (--max-connections, SYNOD_MAX_CONNECTIONS) are still accepted.
#[derive(Debug, Parser)]
#[command(name = "synod-server", version, args_override_self = true)]
struct Args {
    /// Listen here for peers and clients (an IP address and port)
    #[arg(long, env = "SYNOD_LISTEN", value_name = "HOST:PORT")]
    listen: String,
    /// The node's data directory (WAL segments, snapshots, LOCK, IDENTITY)
    #[arg(long, env = "SYNOD_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    /// The shard master group, the same list on every node and client
    #[arg(long, env = "SYNOD_MASTERS", value_name = "A,B,C")]
    masters: String,
    /// Event loops (default: the machine's cores); fixed per data dir
    #[arg(long, env = "SYNOD_CORES", value_name = "N")]
    cores: Option<u64>,
    /// Address others use for this node (default: --listen)
    #[arg(long, env = "SYNOD_ADVERTISE", value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Shard count (default 64); fixed per data dir
    #[arg(long, env = "SYNOD_SHARDS", value_name = "N")]
    shards: Option<u64>,
    /// 'never' is UNSAFE (acknowledged writes can be lost on power
    /// failure); for benchmarks only [default: always]
    #[arg(long, env = "SYNOD_FSYNC")]
    fsync: Option<Fsync>,
    /// Per core, accepted connections (default 10000; 1..=1048576). When
    /// full, the connection idle longest (one that never sent a valid frame
    /// first) is closed to make room, so idle sockets cannot lock out peers
    /// or admin commands; connections this node dials to its peers do not
    /// count
    #[arg(
        long,
        alias = "max-connections",
        env = "SYNOD_CONNECTIONS_MAX",
        value_name = "N"
    )]
    connections_max: Option<u64>,
    /// Largest frame (default 16777216; 65536..=1073741824)
    #[arg(
        long,
        alias = "max-frame-bytes",
        env = "SYNOD_FRAME_BYTES_MAX",
        value_name = "N"
    )]
    frame_bytes_max: Option<u64>,
    /// Close client connections idle this long (default 300)
    #[arg(long, env = "SYNOD_IDLE_TIMEOUT_SECS", value_name = "N")]
    idle_timeout_secs: Option<u64>,
    /// Close connections that send no frame this long (default 10)
    #[arg(long, env = "SYNOD_FIRST_FRAME_SECS", value_name = "N")]
    first_frame_secs: Option<u64>,
    /// A partially received frame must complete within this long (default
    /// 30)
    #[arg(long, env = "SYNOD_FRAME_TIMEOUT_SECS", value_name = "N")]
    frame_timeout_secs: Option<u64>,
    /// A frame still partial after 5 s must be arriving at least this fast
    /// (default 65536)
    #[arg(long, env = "SYNOD_MIN_RECV_BYTES_PER_SEC", value_name = "N")]
    min_recv_bytes_per_sec: Option<u64>,
    /// Per core, bytes held in partially received frames over all
    /// connections; past it the connection holding the largest partial
    /// frame is closed (default 67108864; at least --frame-bytes-max)
    #[arg(long, env = "SYNOD_PARTIAL_FRAMES_BUDGET", value_name = "N")]
    partial_frames_budget: Option<u64>,
    /// Snapshot a group's state and free its log once the log holds this
    /// many slots (default 4096)
    #[arg(long, env = "SYNOD_SNAPSHOT_LOG_SLOTS", value_name = "N")]
    snapshot_log_slots: Option<u64>,
    /// ... or once the commands applied since the last snapshot hold more
    /// than N bytes (default 67108864); snapshots are written and synced
    /// off the event loop
    #[arg(long, env = "SYNOD_SNAPSHOT_LOG_BYTES", value_name = "N")]
    snapshot_log_bytes: Option<u64>,
    /// ... but the slot trigger waits until the log since the last
    /// snapshot weighs P percent of that snapshot's size, so a large state
    /// is not rewritten every few thousand slots (0: slots alone; default
    /// 10)
    #[arg(long, env = "SYNOD_SNAPSHOT_LOG_PERCENT", value_name = "P")]
    snapshot_log_percent: Option<u64>,
    /// A snapshot is serialized about N bytes per event-loop turn while
    /// writes go on (copy-on-write capture), so no turn stalls on a large
    /// state (default 262144)
    #[arg(long, env = "SYNOD_SNAPSHOT_STEP_BYTES", value_name = "N")]
    snapshot_step_bytes: Option<u64>,
    /// Each core's write-ahead log starts a new segment file at this size;
    /// disk is reclaimed a whole closed segment at a time (default
    /// 16777216)
    #[arg(long, env = "SYNOD_WAL_SEGMENT_BYTES", value_name = "N")]
    wal_segment_bytes: Option<u64>,
    /// Dead WAL segments each core keeps to write its next segments over
    /// instead of creating new files: a sync that overwrites a file's blocks
    /// skips the journal commit of a growing file. Each costs up to a
    /// segment of disk; 0 deletes every dead segment (default 1)
    #[arg(long, env = "SYNOD_WAL_RECYCLE_SEGMENTS", value_name = "N")]
    wal_recycle_segments: Option<usize>,
    /// Per connection: stop reading it while this many reply bytes wait to
    /// be written (default 8388608)
    #[arg(long, env = "SYNOD_CONN_WRITE_BUF_MAX", value_name = "N")]
    conn_write_buf_max: Option<u64>,
    /// Per connection: stop reading it while this many of its requests are
    /// unanswered (default 4096). Also stops reading while the reply bytes
    /// queued plus the unanswered requests times the largest recent reply
    /// on the connection exceed --conn-write-buf-max
    #[arg(long, env = "SYNOD_CONN_IN_FLIGHT_MAX", value_name = "N")]
    conn_in_flight_max: Option<u64>,
    /// Per connection: close it once this many reply bytes wait for it to
    /// read them (default 33554432; at least --conn-write-buf-max +
    /// --frame-bytes-max)
    #[arg(long, env = "SYNOD_CONN_REPLY_HARD_MAX", value_name = "N")]
    conn_reply_hard_max: Option<u64>,
    /// Per core, unread reply bytes of all accepted connections; past it
    /// the connection holding the most is closed (default 268435456; at
    /// least --conn-reply-hard-max)
    #[arg(long, env = "SYNOD_REPLY_BYTES_BUDGET", value_name = "N")]
    reply_bytes_budget: Option<u64>,
    /// Start although the data directory records another --advertise
    /// address or --masters list, and record this one (only when the node
    /// moved for good)
    #[arg(long, env = "SYNOD_ALLOW_IDENTITY_CHANGE", value_parser = FalseyValueParser::new())]
    allow_identity_change: bool,
    /// SO_SNDBUF/SO_RCVBUF for every connection (default: the kernel's)
    #[arg(long, env = "SYNOD_SOCKET_BUF_BYTES", value_name = "N")]
    socket_buf_bytes: Option<u64>,
    /// Write a Lamport/vector-clock trace of every frame this node sends
    /// and receives to FILE (truncated at start), in ShiViz's format; stamps
    /// ride on the wire to the other servers. Merge the servers' files with
    /// `synod trace-merge`. Slow: for debugging (default: off)
    #[arg(long, env = "SYNOD_TRACE", value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Protocol tick (default 10)
    #[arg(long, env = "SYNOD_TICK_MS", value_name = "N")]
    tick_ms: Option<u64>,
    /// How Gets are made linearizable: 'lease' has the leader answer from
    /// its applied state at once while it holds a lease (a quorum
    /// acknowledged one of its heartbeats lately; assumes no two servers'
    /// monotonic clocks run more than 5% apart in rate), and by 'index'
    /// otherwise; 'index' has the leader confirm its leadership with one
    /// quorum round shared by all reads of a loop turn, trusting no clock;
    /// 'log' orders each Get through the Paxos log like a write (slower;
    /// for comparison) [default: lease]
    #[arg(long, env = "SYNOD_READS")]
    reads: Option<Reads>,
    /// With read leases: where a core's fdatasync runs. 'thread' (the
    /// default) runs it on the core's syncer thread while the core's loop
    /// answers leased Gets of groups whose pending writes hold nothing to
    /// apply, so a Get does not wait for another write's disk; 'loop' syncs
    /// on the loop's own thread, which then answers nothing until the disk
    /// does. A core that has read no Get for 100 ms syncs on its loop
    /// either way [default: thread]
    #[arg(long, env = "SYNOD_SYNC_ON", value_name = "thread|loop")]
    sync_on: Option<SyncOn>,
    /// How a core sends its groups' replication messages to another
    /// server. 'shared' (the default): one connection per (server, core)
    /// carries every group of the core, so more groups mean fuller writes,
    /// not more of them; a group the other server places on a different
    /// core falls back to its own connection. 'per-group': one connection
    /// per group and peer, as servers before links did (use it while a
    /// cluster still runs such servers, which refuse a link)
    /// [default: shared]
    #[arg(long, env = "SYNOD_PEER_CONNS", value_name = "shared|per-group")]
    peer_conns: Option<PeerConns>,
    /// When another group pulls a shard from this node, send it in chunks
    /// of about N bytes of records, each one message and one log entry at
    /// the receiver (default 1048576; at most half of --frame-bytes-max)
    #[arg(long, env = "SYNOD_MIGRATE_CHUNK_BYTES", value_name = "N")]
    migrate_chunk_bytes: Option<u64>,
    /// A prepared part of a cross-group transaction whose client has not
    /// sent the outcome after N ms (it died, or is stuck) is resolved by
    /// this node's group leader: it asks the coordinator group, which
    /// answers its logged decision or logs Abort (presumed abort). A
    /// coordinator resolves its own part after twice that (default 5000)
    #[arg(long, env = "SYNOD_TXN_RESOLVE_AFTER_MS", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=24 * 3600 * 1000))]
    txn_resolve_after_ms: Option<u64>,
    /// A client's at-most-once session in a shard expires after N seconds
    /// without a write there (log time; default 600). Its later writes get
    /// SessionExpired. Must be the same on every node
    #[arg(long, env = "SYNOD_SESSION_TTL_SECS", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    session_ttl_secs: Option<u64>,
    /// At most N sessions per shard; beyond it the least recently active
    /// is evicted, as if expired (default 4096; about 660 bytes each). Must
    /// be the same on every node
    #[arg(long, alias = "max-sessions-per-shard", env = "SYNOD_SESSIONS_PER_SHARD_MAX",
          value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    sessions_per_shard_max: Option<u64>,
    /// Serve Prometheus metrics on GET /metrics here (plain HTTP, no
    /// authentication: bind it to a private address; default: off)
    #[arg(long, env = "SYNOD_METRICS_LISTEN", value_name = "HOST:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// Also serve the Redis protocol (RESP2) here, as a client of the
    /// --masters cluster (default: off)
    #[arg(long, env = "SYNOD_RESP_LISTEN", value_name = "HOST:PORT")]
    resp_listen: Option<SocketAddr>,
    /// Event loops of the RESP gateway (default: the machine's cores)
    #[arg(long, env = "SYNOD_RESP_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=synod::resp::THREADS_MAX as u64))]
    resp_threads: Option<u64>,
    /// The cluster's secret: peer, migration and admin traffic must prove
    /// it (HMAC-SHA256 challenge-response). Make one with `head -c 32
    /// /dev/urandom > key; chmod 600 key`
    #[arg(long, env = "SYNOD_CLUSTER_KEY_FILE", value_name = "PATH")]
    cluster_key_file: Option<PathBuf>,
    /// KV clients must prove this key too (default: KV requests and
    /// queries are open)
    #[arg(long, env = "SYNOD_CLIENT_KEY_FILE", value_name = "PATH")]
    client_key_file: Option<PathBuf>,
    /// RESP clients must AUTH with this password (the file's content
    /// without a trailing newline)
    #[arg(long, env = "SYNOD_RESP_PASSWORD_FILE", value_name = "PATH")]
    resp_password_file: Option<PathBuf>,
    /// Open RESP connections (default 1000); when full, the one silent
    /// longest (at least 1 s) is closed for a newcomer
    #[arg(long, alias = "resp-max-connections", env = "SYNOD_RESP_CONNECTIONS_MAX",
          value_name = "N", value_parser = resp_limit())]
    resp_connections_max: Option<u64>,
    /// Close a RESP connection that sent no whole command this long
    /// (default 300)
    #[arg(long, env = "SYNOD_RESP_IDLE_TIMEOUT_SECS", value_name = "N",
          value_parser = resp_limit())]
    resp_idle_timeout_secs: Option<u64>,
    /// An unfinished RESP command must complete within this long (default
    /// 30)
    #[arg(long, env = "SYNOD_RESP_COMMAND_TIMEOUT_SECS", value_name = "N",
          value_parser = resp_limit())]
    resp_command_timeout_secs: Option<u64>,
    /// Arguments of one RESP command, at most (default 65536)
    #[arg(long, alias = "resp-max-command-args", env = "SYNOD_RESP_COMMAND_ARGS_MAX",
          value_name = "N", value_parser = resp_limit())]
    resp_command_args_max: Option<u64>,
    /// Bytes of unfinished RESP commands the gateway holds, over all
    /// connections (default 67108864)
    #[arg(long, env = "SYNOD_RESP_PARTIAL_BUDGET", value_name = "N",
          value_parser = resp_limit())]
    resp_partial_budget: Option<u64>,
    /// RESP FLUSHDB/FLUSHALL remove every key of the cluster (default:
    /// refused with an error)
    #[arg(long, env = "SYNOD_RESP_ALLOW_FLUSHDB", value_parser = FalseyValueParser::new())]
    resp_allow_flushdb: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Fsync {
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SyncOn {
    Thread,
    Loop,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PeerConns {
    Shared,
    PerGroup,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Reads {
    Lease,
    Index,
    Log,
}

/// Environment variables of the limits renamed to the `*_max` order (issue
/// 9), old name first. Their flags keep the old names as hidden clap
/// aliases; an old variable is read when the new one is unset, so an
/// existing `synod.env` keeps working (the new name wins if both are set).
const RENAMED_ENV: [(&str, &str); 5] = [
    ("SYNOD_MAX_CONNECTIONS", "SYNOD_CONNECTIONS_MAX"),
    ("SYNOD_MAX_FRAME_BYTES", "SYNOD_FRAME_BYTES_MAX"),
    (
        "SYNOD_MAX_SESSIONS_PER_SHARD",
        "SYNOD_SESSIONS_PER_SHARD_MAX",
    ),
    ("SYNOD_RESP_MAX_CONNECTIONS", "SYNOD_RESP_CONNECTIONS_MAX"),
    ("SYNOD_RESP_MAX_COMMAND_ARGS", "SYNOD_RESP_COMMAND_ARGS_MAX"),
];

/// Copies each old variable of [`RENAMED_ENV`] to its new name when only
/// the old one is set. Called first thing in `main`, before any other
/// thread exists (setting the environment is not thread-safe).
fn adopt_renamed_env() {
    for (old, new) in RENAMED_ENV {
        if std::env::var_os(new).is_none() {
            if let Some(v) = std::env::var_os(old) {
                std::env::set_var(new, v);
            }
        }
    }
}

/// The `--resp-*` limits: 1 to 2^40.
fn resp_limit() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(1..=1 << 40)
}

/// The RESP gateway's settings (and the metrics listener, kept with the
/// other side listeners).
struct RespArgs {
    metrics_listen: Option<SocketAddr>,
    listen: Option<SocketAddr>,
    threads: Option<usize>,
    /// `--resp-password-file`: RESP clients must AUTH first.
    password: Option<Vec<u8>>,
    connections_max: Option<u64>,
    idle_timeout_secs: Option<u64>,
    command_timeout_secs: Option<u64>,
    command_args_max: Option<u64>,
    partial_budget: Option<u64>,
    /// `--resp-allow-flushdb`: FLUSHDB and FLUSHALL may run.
    allow_flushdb: bool,
}

/// The node's runtime configuration and the RESP gateway's settings, from
/// the parsed command line; what one flag cannot check alone is checked
/// here.
fn configure(a: Args) -> Result<(RuntimeConfig, RespArgs), String> {
    let listen = a.listen.parse().map_err(|_| {
        format!(
            "--listen {:?} is not HOST:PORT (an IP address and port)",
            a.listen
        )
    })?;
    let masters: Vec<String> = a
        .masters
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if masters.is_empty() {
        return Err("--masters needs at least one address".into());
    }
    let mut cfg = RuntimeConfig::new(listen, a.data_dir, masters);
    cfg.advertise = a.advertise.unwrap_or(a.listen);
    // An empty path (`SYNOD_CLUSTER_KEY_FILE=`) means no key.
    let key = |path: Option<PathBuf>| {
        path.filter(|p| !p.as_os_str().is_empty())
            .map(|p| Key::load(&p))
            .transpose()
    };
    cfg.keys.cluster = key(a.cluster_key_file)?;
    cfg.keys.client = key(a.client_key_file)?;
    let password = match a.resp_password_file {
        Some(path) => {
            let mut pw = std::fs::read(&path)
                .map_err(|e| format!("cannot read --resp-password-file {}: {e}", path.display()))?;
            while pw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                pw.pop();
            }
            if pw.is_empty() {
                return Err(format!("--resp-password-file {} is empty", path.display()));
            }
            Some(pw)
        }
        None => None,
    };
    let secs = Duration::from_secs;
    let set = |slot: &mut usize, v: Option<u64>| {
        if let Some(v) = v {
            *slot = v as usize;
        }
    };
    set(&mut cfg.cores, a.cores);
    if let Some(n) = a.shards {
        cfg.shards = n.min(u32::MAX as u64) as u32;
    }
    if let Some(f) = a.fsync {
        cfg.fsync = match f {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Never => FsyncPolicy::Never,
        };
    }
    set(&mut cfg.connections_max, a.connections_max);
    if let Some(n) = a.frame_bytes_max {
        cfg.frame_bytes_max = n.min(u32::MAX as u64) as u32;
    }
    cfg.idle_timeout = a.idle_timeout_secs.map_or(cfg.idle_timeout, secs);
    cfg.first_frame_timeout = a.first_frame_secs.map_or(cfg.first_frame_timeout, secs);
    cfg.frame_timeout = a.frame_timeout_secs.map_or(cfg.frame_timeout, secs);
    cfg.min_recv_bytes_per_sec = a
        .min_recv_bytes_per_sec
        .unwrap_or(cfg.min_recv_bytes_per_sec);
    set(&mut cfg.partial_frames_budget, a.partial_frames_budget);
    set(&mut cfg.snapshot_log_slots, a.snapshot_log_slots);
    cfg.snapshot_log_bytes = a.snapshot_log_bytes.unwrap_or(cfg.snapshot_log_bytes);
    cfg.snapshot_log_percent = a.snapshot_log_percent.unwrap_or(cfg.snapshot_log_percent);
    set(&mut cfg.snapshot_step_bytes, a.snapshot_step_bytes);
    if let Some(n) = a.wal_segment_bytes {
        if n == 0 {
            return Err("--wal-segment-bytes must be positive".into());
        }
        cfg.wal_segment_bytes = n;
    }
    cfg.wal_recycle_segments = a.wal_recycle_segments.unwrap_or(cfg.wal_recycle_segments);
    set(&mut cfg.conn_write_buf_max, a.conn_write_buf_max);
    set(&mut cfg.conn_in_flight_max, a.conn_in_flight_max);
    set(&mut cfg.conn_reply_hard_max, a.conn_reply_hard_max);
    set(&mut cfg.reply_bytes_budget, a.reply_bytes_budget);
    cfg.allow_identity_change = a.allow_identity_change;
    if let Some(n) = a.socket_buf_bytes {
        cfg.socket_buf_bytes = Some(n as usize);
    }
    cfg.trace = a.trace;
    cfg.tick = a.tick_ms.map_or(cfg.tick, Duration::from_millis);
    if let Some(r) = a.reads {
        cfg.read_index = !matches!(r, Reads::Log);
        cfg.read_lease = matches!(r, Reads::Lease);
    }
    if let Some(on) = a.sync_on {
        cfg.reads_during_sync = matches!(on, SyncOn::Thread);
    }
    if let Some(p) = a.peer_conns {
        cfg.peer_links = matches!(p, PeerConns::Shared);
    }
    set(&mut cfg.migrate_chunk_bytes, a.migrate_chunk_bytes);
    if let Some(ms) = a.txn_resolve_after_ms {
        cfg.txn_resolve_after = Duration::from_millis(ms);
    }
    cfg.session_ttl = a.session_ttl_secs.map_or(cfg.session_ttl, secs);
    set(&mut cfg.sessions_per_shard_max, a.sessions_per_shard_max);
    synod::runtime::limits::validate(&cfg).map_err(|e| e.0)?;
    // Half the frame leaves room for the chunk's framing, a record that
    // overshoots the budget, and the dedup sessions on the last chunk.
    if cfg.migrate_chunk_bytes == 0 || cfg.migrate_chunk_bytes > cfg.frame_bytes_max as usize / 2 {
        return Err(format!(
            "--migrate-chunk-bytes must be between 1 and half of --frame-bytes-max ({})",
            cfg.frame_bytes_max / 2
        ));
    }
    Ok((
        cfg,
        RespArgs {
            metrics_listen: a.metrics_listen,
            listen: a.resp_listen,
            threads: a.resp_threads.map(|n| n as usize),
            password,
            connections_max: a.resp_connections_max,
            idle_timeout_secs: a.resp_idle_timeout_secs,
            command_timeout_secs: a.resp_command_timeout_secs,
            command_args_max: a.resp_command_args_max,
            partial_budget: a.resp_partial_budget,
            allow_flushdb: a.resp_allow_flushdb,
        },
    ))
}

fn main() -> ExitCode {
    adopt_renamed_env();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // A panic in any thread (a core, the watcher) takes the whole process
    // down with a non-zero status, so a supervisor restarts it; otherwise a
    // node whose core died kept running idle, or exited 0.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log::error!("fatal: {info}; aborting the process");
        default_hook(info);
        std::process::abort();
    }));
    // Help and usage errors exit here (0 and 2), before anything starts.
    let args = Args::parse();
    let (cfg, resp) = match configure(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("synod-server: {e}");
            eprintln!("run `synod-server --help` for usage");
            return ExitCode::from(2);
        }
    };
    let shards = cfg.shards;
    if cfg.fsync == FsyncPolicy::Never {
        log::warn!("--fsync never: UNSAFE, acknowledged writes can be lost on power failure");
    }
    if cfg.keys.cluster.is_none() && !cfg.listen.ip().is_loopback() {
        log::warn!(
            "listening on {} without --cluster-key-file: anyone who can reach this port can \
             send Paxos, migration and admin messages; give every node the cluster's key",
            cfg.listen
        );
    }
    let masters = cfg.masters.clone();
    let keys = cfg.keys.clone();
    let node = match runtime::start(cfg) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("synod-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("listening on {}", node.local_addr);
    if let Some(addr) = resp.metrics_listen {
        let started = std::net::TcpListener::bind(addr)
            .and_then(|l| synod::metrics::http::serve(l, node.metrics.clone()));
        if let Err(e) = started {
            eprintln!("synod-server: --metrics-listen {addr}: {e}");
            return ExitCode::FAILURE;
        }
        log::info!("metrics on http://{addr}/metrics");
    }
    // After the node is up, so a RESP client's first command finds this
    // node serving; the gateway retries through the masters anyway.
    if let Some(addr) = resp.listen {
        let mut opts = synod::resp::GatewayOptions::new(masters.clone());
        if let Some(n) = resp.threads {
            opts.threads = n;
        }
        opts.password = resp.password.map(std::sync::Arc::from);
        opts.allow_flushdb = resp.allow_flushdb;
        // Every server of a cluster runs with the cluster's shard count.
        opts.shards = shards;
        opts.client.cluster_key = keys.cluster.clone();
        opts.client.client_key = keys.client.clone();
        if let Some(n) = resp.connections_max {
            opts.connections_max = n as usize;
        }
        if let Some(n) = resp.idle_timeout_secs {
            opts.idle_timeout = Duration::from_secs(n);
        }
        if let Some(n) = resp.command_timeout_secs {
            opts.command_timeout = Duration::from_secs(n);
        }
        if let Some(n) = resp.command_args_max {
            opts.command_args_max = n as usize;
        }
        if let Some(n) = resp.partial_budget {
            opts.partial_budget = n as usize;
        }
        let started =
            std::net::TcpListener::bind(addr).and_then(|l| synod::resp::serve_with(l, opts));
        if let Err(e) = started {
            eprintln!("synod-server: --resp-listen {addr}: {e}");
            return ExitCode::FAILURE;
        }
    }
    runtime::watch_configs(&node, masters, keys);
    node.join();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option reads `SYNOD_<OPTION>` (README, "Command lines"; the
    /// deploy files' names rely on it).
    #[test]
    fn every_option_reads_its_synod_variable() {
        let cmd = Args::command();
        cmd.clone().debug_assert();
        for arg in cmd.get_arguments() {
            let long = arg.get_long().expect("options only");
            let want = format!("SYNOD_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(&want)), "--{long}");
        }
    }

    #[test]
    fn flags_parse_and_the_last_of_a_repeated_one_wins() {
        let a = Args::try_parse_from([
            "synod-server",
            "--listen",
            "127.0.0.1:7100",
            "--data-dir=/d",
            "--masters",
            "127.0.0.1:7100",
            "--cores",
            "2",
            "--cores",
            "3",
            "--fsync",
            "never",
            "--resp-allow-flushdb",
        ])
        .unwrap();
        let (cfg, resp) = configure(a).unwrap();
        assert_eq!(cfg.cores, 3);
        assert_eq!(cfg.fsync, FsyncPolicy::Never);
        assert_eq!(
            cfg.advertise, "127.0.0.1:7100",
            "--advertise defaults to --listen"
        );
        assert!(resp.allow_flushdb);
        let bad = |extra: &[&str]| {
            let base = [
                "synod-server",
                "--listen",
                "127.0.0.1:1",
                "--data-dir",
                "/d",
            ];
            let args = base.iter().chain(["--masters", "127.0.0.1:1"].iter());
            Args::try_parse_from(args.chain(extra)).map(configure)
        };
        assert!(bad(&["--fsync", "sometimes"]).is_err());
        assert!(bad(&["--session-ttl-secs", "0"]).is_err());
        assert!(bad(&["--resp-threads", "0"]).is_err());
        assert!(matches!(bad(&["--wal-segment-bytes", "0"]), Ok(Err(_))));
    }

    /// The limits renamed to `--*-max` (issue 9) still take their old
    /// names on the command line, hidden from --help; every renamed
    /// variable's new name is its flag's.
    #[test]
    fn old_limit_flag_names_still_work() {
        let a = Args::try_parse_from([
            "synod-server",
            "--listen",
            "127.0.0.1:7100",
            "--data-dir=/d",
            "--masters",
            "127.0.0.1:7100",
            "--max-connections",
            "7",
            "--max-frame-bytes=4194304",
            "--max-sessions-per-shard",
            "9",
            "--resp-max-connections",
            "11",
            "--resp-max-command-args",
            "13",
        ])
        .unwrap();
        let (cfg, resp) = configure(a).unwrap();
        assert_eq!(cfg.connections_max, 7);
        assert_eq!(cfg.frame_bytes_max, 4 << 20);
        assert_eq!(cfg.sessions_per_shard_max, 9);
        assert_eq!(resp.connections_max, Some(11));
        assert_eq!(resp.command_args_max, Some(13));
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("--connections-max"), "{help}");
        assert!(!help.contains("--max-connections <"), "{help}");
        let cmd = Args::command();
        for (old, new) in RENAMED_ENV {
            assert!(old.starts_with("SYNOD_") && old.contains("MAX_"), "{old}");
            let flag = new["SYNOD_".len()..].to_lowercase().replace('_', "-");
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(&flag));
            let arg = arg.unwrap_or_else(|| panic!("no --{flag}"));
            let alias = old["SYNOD_".len()..].to_lowercase().replace('_', "-");
            assert!(
                arg.get_all_aliases().unwrap_or_default().contains(&&*alias),
                "--{alias}"
            );
        }
    }
}
