//! `synod-server`: one Synod node.
//!
//! `synod-server --listen ADDR --data-dir DIR --masters A,B,C [--cores N]`
//! hosts a master replica when ADDR is in `--masters`, and a replica of every
//! KV group whose member list (in the master's latest configuration) names
//! ADDR. Logs go through env_logger (`RUST_LOG=info` by default).
//!
//! `--resp-listen ADDR` also serves the Redis protocol (RESP2) on ADDR: a
//! gateway that is a client of the cluster named by `--masters` (see
//! `synod::resp`), so `redis-cli -p PORT set k v` works against any node.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use synod::auth::Key;
use synod::runtime::{self, RuntimeConfig};
use synod::storage::FsyncPolicy;

const USAGE: &str =
    "usage: synod-server --listen HOST:PORT --data-dir DIR --masters A,B,C [options]

options:
  --cores N               event loops (default: the machine's cores); fixed per data dir
  --advertise HOST:PORT   address others use for this node (default: --listen)
  --shards N              shard count (default 64); fixed per data dir
  --fsync always|never    'never' is UNSAFE (acknowledged writes can be lost on
                          power failure); for benchmarks only. Default: always
  --max-connections N     per core, accepted connections (default 10000; 1..=1048576).
                          When full, the connection idle longest (one that never
                          sent a valid frame first) is closed to make room, so idle
                          sockets cannot lock out peers or admin commands;
                          connections this node dials to its peers do not count
  --max-frame-bytes N     default 16777216 (65536..=1073741824)
  --idle-timeout-secs N   close client connections idle this long (default 300)
  --first-frame-secs N    close connections that send no frame this long (default 10)
  --frame-timeout-secs N  a partially received frame must complete within this
                          long (default 30)
  --min-recv-bytes-per-sec N
                          a frame still partial after 5 s must be arriving at
                          least this fast (default 65536)
  --partial-frames-budget N
                          per core, bytes held in partially received frames over
                          all connections; past it the connection holding the
                          largest partial frame is closed (default 67108864; at
                          least --max-frame-bytes)
  --snapshot-log-slots N  snapshot a group's state and free its log once the log
                          holds this many slots (default 4096)
  --snapshot-log-bytes N  ... or once the commands applied since the last
                          snapshot hold more than N bytes (default 67108864);
                          snapshots are written and synced off the event loop
  --wal-segment-bytes N   each core's write-ahead log starts a new segment file
                          at this size; disk is reclaimed a whole closed segment
                          at a time (default 67108864)
  --conn-write-buf-max N  per connection: stop reading it while this many reply
                          bytes wait to be written (default 8388608)
  --conn-in-flight-max N  per connection: stop reading it while this many of its
                          requests are unanswered (default 4096)
                          Also stops reading while the reply bytes queued plus the
                          unanswered requests times the largest recent reply on the
                          connection exceed --conn-write-buf-max
  --conn-reply-hard-max N per connection: close it once this many reply bytes wait
                          for it to read them (default 33554432; at least
                          --conn-write-buf-max + --max-frame-bytes)
  --reply-bytes-budget N  per core, unread reply bytes of all accepted connections;
                          past it the connection holding the most is closed
                          (default 268435456; at least --conn-reply-hard-max)
  --allow-identity-change start although the data directory records another
                          --advertise address or --masters list, and record this
                          one (only when the node moved for good)
  --socket-buf-bytes N    SO_SNDBUF/SO_RCVBUF for every connection (default: the kernel's)
  --trace FILE            write a Lamport/vector-clock trace of every frame this
                          node sends and receives to FILE (truncated at start),
                          in ShiViz's format; stamps ride on the wire to the
                          other servers. Merge the servers' files with
                          `synod trace-merge`. Slow: for debugging (default: off)
  --tick-ms N             protocol tick (default 10)
  --reads index|log       how Gets are made linearizable: 'index' (default) has
                          the leader confirm its leadership with one quorum
                          round shared by all reads of a loop turn and answer
                          from its applied state; 'log' orders each Get through
                          the Paxos log like a write (slower; for comparison)
  --migrate-chunk-bytes N when another group pulls a shard from this node, send
                          it in chunks of about N bytes of records, each one
                          message and one log entry at the receiver (default
                          1048576; at most half of --max-frame-bytes)
  --session-ttl-secs N    a client's at-most-once session in a shard expires
                          after N seconds without a write there (log time;
                          default 600). Its later writes get SessionExpired.
                          Must be the same on every node
  --max-sessions-per-shard N
                          at most N sessions per shard; beyond it the least
                          recently active is evicted, as if expired (default
                          4096; about 660 bytes each). Must be the same on
                          every node
  --metrics-listen HOST:PORT
                          serve Prometheus metrics on GET /metrics here (plain
                          HTTP, no authentication: bind it to a private address;
                          default: off)
  --resp-listen HOST:PORT also serve the Redis protocol (RESP2) here, as a
                          client of the --masters cluster (default: off)
  --resp-threads N        event loops of the RESP gateway (default: the machine's cores)
  --cluster-key-file PATH the cluster's secret (also SYNOD_CLUSTER_KEY_FILE): peer,
                          migration and admin traffic must prove it (HMAC-SHA256
                          challenge-response). Make one with
                          `head -c 32 /dev/urandom > key; chmod 600 key`
  --client-key-file PATH  KV clients must prove this key too (default: KV
                          requests and queries are open)
  --resp-password-file PATH  RESP clients must AUTH with this password (the
                          file's content without a trailing newline)
  --resp-max-connections N
                          open RESP connections (default 1000); when full, the one
                          silent longest (at least 1 s) is closed for a newcomer
  --resp-idle-timeout-secs N
                          close a RESP connection that sent no whole command this
                          long (default 300)
  --resp-command-timeout-secs N
                          an unfinished RESP command must complete within this long
                          (default 30)
  --resp-max-command-args N
                          arguments of one RESP command, at most (default 65536)
  --resp-partial-budget N bytes of unfinished RESP commands the gateway holds, over
                          all connections (default 67108864)
  --resp-allow-flushdb    RESP FLUSHDB/FLUSHALL remove every key of the cluster
                          (default: refused with an error)";

/// The RESP gateway's address and event-loop count, when asked for.
struct RespArgs {
    /// `--metrics-listen` (kept here with the other side listeners).
    metrics_listen: Option<SocketAddr>,
    listen: Option<SocketAddr>,
    threads: Option<usize>,
    /// `--resp-password-file`: RESP clients must AUTH first.
    password: Option<Vec<u8>>,
    /// `--resp-*` limits, applied to the gateway's options in order.
    limits: Vec<(String, u64)>,
    /// `--resp-allow-flushdb`: FLUSHDB and FLUSHALL may run.
    allow_flushdb: bool,
}

/// The node's runtime configuration and the RESP gateway's settings.
fn parse() -> Result<(RuntimeConfig, RespArgs), String> {
    let mut listen = None;
    let mut data_dir = None;
    let mut masters = None;
    let mut resp_listen = None;
    let mut metrics_listen = None;
    let mut resp_threads = None;
    let mut cluster_key_file = std::env::var_os("SYNOD_CLUSTER_KEY_FILE");
    let mut client_key_file = None;
    let mut resp_password_file = None;
    let mut resp_limits = Vec::new();
    let mut resp_allow_flushdb = false;
    let mut rest: Vec<(String, String)> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        if flag == "--allow-identity-change" {
            rest.push((flag, String::new()));
            continue;
        }
        if flag == "--resp-allow-flushdb" {
            resp_allow_flushdb = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--data-dir" => data_dir = Some(value),
            "--masters" => masters = Some(value),
            "--cluster-key-file" => cluster_key_file = Some(value.into()),
            "--client-key-file" => client_key_file = Some(value),
            "--resp-password-file" => resp_password_file = Some(value),
            "--resp-listen" => {
                resp_listen = Some(value.parse::<SocketAddr>().map_err(|_| {
                    format!("--resp-listen {value:?} is not HOST:PORT (an IP address and port)")
                })?)
            }
            "--metrics-listen" => {
                metrics_listen = Some(value.parse::<SocketAddr>().map_err(|_| {
                    format!("--metrics-listen {value:?} is not HOST:PORT (an IP address and port)")
                })?)
            }
            "--resp-threads" => {
                let n = value
                    .parse::<usize>()
                    .map_err(|_| format!("not a number: {value:?}"))?;
                if !(1..=synod::resp::MAX_THREADS).contains(&n) {
                    return Err(format!(
                        "--resp-threads must be between 1 and {}",
                        synod::resp::MAX_THREADS
                    ));
                }
                resp_threads = Some(n);
            }
            "--resp-max-connections"
            | "--resp-idle-timeout-secs"
            | "--resp-command-timeout-secs"
            | "--resp-max-command-args"
            | "--resp-partial-budget" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| format!("not a number: {value:?}"))?;
                if n == 0 || n > 1 << 40 {
                    return Err(format!("{flag} must be between 1 and 2^40"));
                }
                resp_limits.push((flag, n));
            }
            _ => rest.push((flag, value)),
        }
    }
    let listen_s = listen.ok_or("--listen is required")?;
    let listen = listen_s
        .parse()
        .map_err(|_| format!("--listen {listen_s:?} is not HOST:PORT (an IP address and port)"))?;
    let data_dir = data_dir.ok_or("--data-dir is required")?;
    let masters: Vec<String> = masters
        .ok_or("--masters is required")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if masters.is_empty() {
        return Err("--masters needs at least one address".into());
    }
    let mut cfg = RuntimeConfig::new(listen, data_dir.into(), masters);
    cfg.advertise = listen_s;
    if let Some(path) = cluster_key_file.filter(|p| !p.is_empty()) {
        cfg.keys.cluster = Some(Key::load(std::path::Path::new(&path))?);
    }
    if let Some(path) = client_key_file {
        cfg.keys.client = Some(Key::load(std::path::Path::new(&path))?);
    }
    let password = match resp_password_file {
        Some(path) => {
            let mut pw = std::fs::read(&path)
                .map_err(|e| format!("cannot read --resp-password-file {path}: {e}"))?;
            while pw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                pw.pop();
            }
            if pw.is_empty() {
                return Err(format!("--resp-password-file {path} is empty"));
            }
            Some(pw)
        }
        None => None,
    };
    let num = |v: &str| v.parse::<u64>().map_err(|_| format!("not a number: {v:?}"));
    for (flag, v) in rest {
        match flag.as_str() {
            "--cores" => cfg.cores = num(&v)? as usize,
            "--advertise" => cfg.advertise = v,
            "--shards" => cfg.shards = num(&v)?.min(u32::MAX as u64) as u32,
            "--fsync" => {
                cfg.fsync = match v.as_str() {
                    "always" => FsyncPolicy::Always,
                    "never" => FsyncPolicy::Never,
                    _ => return Err(format!("--fsync must be always or never, not {v:?}")),
                }
            }
            "--max-connections" => cfg.max_connections = num(&v)? as usize,
            "--max-frame-bytes" => cfg.max_frame_bytes = num(&v)?.min(u32::MAX as u64) as u32,
            "--idle-timeout-secs" => cfg.idle_timeout = Duration::from_secs(num(&v)?),
            "--first-frame-secs" => cfg.first_frame_timeout = Duration::from_secs(num(&v)?),
            "--snapshot-log-slots" => cfg.snapshot_log_slots = num(&v)? as usize,
            "--snapshot-log-bytes" => cfg.snapshot_log_bytes = num(&v)?,
            "--wal-segment-bytes" => {
                cfg.wal_segment_bytes = num(&v)?;
                if cfg.wal_segment_bytes == 0 {
                    return Err("--wal-segment-bytes must be positive".into());
                }
            }
            "--tick-ms" => cfg.tick = Duration::from_millis(num(&v)?),
            "--conn-write-buf-max" => cfg.conn_write_buf_max = num(&v)? as usize,
            "--conn-in-flight-max" => cfg.conn_in_flight_max = num(&v)? as usize,
            "--conn-reply-hard-max" => cfg.conn_reply_hard_max = num(&v)? as usize,
            "--frame-timeout-secs" => cfg.frame_timeout = Duration::from_secs(num(&v)?),
            "--min-recv-bytes-per-sec" => cfg.min_recv_bytes_per_sec = num(&v)?,
            "--partial-frames-budget" => cfg.partial_frames_budget = num(&v)? as usize,
            "--reply-bytes-budget" => cfg.reply_bytes_budget = num(&v)? as usize,
            "--allow-identity-change" => cfg.allow_identity_change = true,
            "--socket-buf-bytes" => cfg.socket_buf_bytes = Some(num(&v)? as usize),
            "--trace" => cfg.trace = Some(std::path::PathBuf::from(v)),
            "--reads" => {
                cfg.read_index = match v.as_str() {
                    "index" => true,
                    "log" => false,
                    _ => return Err(format!("--reads must be index or log, not {v:?}")),
                }
            }
            "--migrate-chunk-bytes" => cfg.migrate_chunk_bytes = num(&v)? as usize,
            "--session-ttl-secs" => {
                let secs = num(&v)?;
                if secs == 0 || secs > 7 * 24 * 3600 {
                    return Err("--session-ttl-secs must be between 1 and 604800".into());
                }
                cfg.session_ttl = Duration::from_secs(secs);
            }
            "--max-sessions-per-shard" => {
                let n = num(&v)?;
                if n == 0 || n > 1 << 24 {
                    return Err("--max-sessions-per-shard must be between 1 and 16777216".into());
                }
                cfg.max_sessions_per_shard = n as usize;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    synod::runtime::limits::validate(&cfg).map_err(|e| e.0)?;
    // Half the frame leaves room for the chunk's framing, a record that
    // overshoots the budget, and the dedup sessions on the last chunk.
    if cfg.migrate_chunk_bytes == 0 || cfg.migrate_chunk_bytes > cfg.max_frame_bytes as usize / 2 {
        return Err(format!(
            "--migrate-chunk-bytes must be between 1 and half of --max-frame-bytes ({})",
            cfg.max_frame_bytes / 2
        ));
    }
    Ok((
        cfg,
        RespArgs {
            metrics_listen,
            listen: resp_listen,
            threads: resp_threads,
            password,
            limits: resp_limits,
            allow_flushdb: resp_allow_flushdb,
        },
    ))
}

fn main() -> ExitCode {
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
    let (cfg, resp) = match parse() {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("synod-server: {e}");
            }
            eprintln!("{USAGE}");
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
        for (flag, n) in &resp.limits {
            match flag.as_str() {
                "--resp-max-connections" => opts.max_connections = *n as usize,
                "--resp-idle-timeout-secs" => opts.idle_timeout = Duration::from_secs(*n),
                "--resp-command-timeout-secs" => opts.command_timeout = Duration::from_secs(*n),
                "--resp-max-command-args" => opts.max_command_args = *n as usize,
                "--resp-partial-budget" => opts.partial_budget = *n as usize,
                _ => unreachable!("only these are collected"),
            }
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
