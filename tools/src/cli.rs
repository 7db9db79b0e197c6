//! `synod-bench`'s command line, declared with `clap`.
//!
//! Every flag takes `--flag VALUE` or `--flag=VALUE`, and can also be set
//! in the environment as `SYNOD_BENCH_<FLAG>` (`--clients`:
//! `SYNOD_BENCH_CLIENTS`), except the three every Synod program shares:
//! `SYNOD_MASTERS`, `SYNOD_CLUSTER_KEY_FILE`, `SYNOD_CLIENT_KEY_FILE`.

use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::Parser;

use crate::pace::RATE_MAX;
use crate::workload::{TxnSpan, Workload};
use crate::zipf::{KeyDist, Zipfian};

/// Pipelined load against a Synod cluster: closed-loop (each reply lets the
/// next request go), or open-loop at a fixed rate with --rate.
///
/// Progress goes to stderr every second; stdout gets a summary and, last,
/// one line of key=value pairs.
#[derive(Debug, Parser)]
#[command(name = "synod-bench", version, args_override_self = true)]
pub struct Args {
    /// Shard masters
    #[arg(long, env = "SYNOD_MASTERS", value_name = "A,B,C")]
    masters: Option<String>,
    /// Client sessions, each its own connection(s) and at-most-once
    /// identity
    #[arg(
        long,
        env = "SYNOD_BENCH_CLIENTS",
        value_name = "N",
        default_value_t = 16
    )]
    clients: usize,
    /// Requests each session keeps in flight; with --rate, the most it may
    /// have in flight
    #[arg(
        long,
        env = "SYNOD_BENCH_PIPELINE",
        value_name = "P",
        default_value_t = 8
    )]
    pipeline: usize,
    /// Open loop: send OPS requests per second in total on a fixed schedule
    ///
    /// Split over the threads in proportion to their sessions, instead of
    /// one per reply; each goes to a session with a free pipeline slot, and
    /// waits for one if all are taken. Latency runs from each request's
    /// INTENDED send time, so time spent waiting for a slot, a stalled
    /// server or a late load generator all count (no coordinated
    /// omission); the percentiles cover every request intended in the
    /// measured window, even if it finished after it. Requests due at the
    /// end are still sent (for up to --drain-timeout). Adds to the last
    /// line: target_rate; delayed (measured requests that fell due while
    /// every slot was taken); unsent (intended in the window but never
    /// sent); lag_p50_us, lag_p99_us, lag_max_us (send minus intended
    /// time). The achieved rate is ops_per_sec (completions inside the
    /// window).
    #[arg(long, env = "SYNOD_BENCH_RATE", value_name = "OPS")]
    rate: Option<f64>,
    /// Worker threads sharing the sessions (default: min(clients, max(1,
    /// cores/2)))
    #[arg(long, env = "SYNOD_BENCH_THREADS", value_name = "T")]
    threads: Option<usize>,
    /// Measured time after the warmup (default 10 unless --ops)
    #[arg(long, env = "SYNOD_BENCH_DURATION", value_name = "SECS", value_parser = secs)]
    duration: Option<Duration>,
    /// Stop after N measured operations instead
    #[arg(long, env = "SYNOD_BENCH_OPS", value_name = "N")]
    ops: Option<u64>,
    /// Unmeasured time first (default 1, or 0 with --ops)
    #[arg(long, env = "SYNOD_BENCH_WARMUP", value_name = "SECS", value_parser = secs)]
    warmup: Option<Duration>,
    /// put | get | append | mixed | transfer
    ///
    /// transfer: each operation is one transaction moving 1-100 between
    /// two distinct accounts (keys, prefilled with 1000000 each) by two
    /// Incrs; accounts in two groups commit by two-phase commit. With
    /// --check, audits at the end must find the initial total.
    #[arg(
        long,
        env = "SYNOD_BENCH_WORKLOAD",
        value_name = "W",
        default_value = "put"
    )]
    workload: String,
    /// transfer: both accounts of every transfer in one group (by the
    /// starting configuration): one log entry each, no two-phase commit
    #[arg(long, env = "SYNOD_BENCH_TXN_ONE_GROUP", value_parser = FalseyValueParser::new(),
          conflicts_with = "txn_cross_group")]
    txn_one_group: bool,
    /// transfer: the two accounts of every transfer in two different
    /// groups (by the starting configuration): two-phase commit each
    #[arg(long, env = "SYNOD_BENCH_TXN_CROSS_GROUP", value_parser = FalseyValueParser::new())]
    txn_cross_group: bool,
    /// Share of gets in mixed
    #[arg(
        long,
        env = "SYNOD_BENCH_READ_RATIO",
        value_name = "R",
        default_value_t = 0.5
    )]
    read_ratio: f64,
    /// Distinct keys
    #[arg(
        long,
        env = "SYNOD_BENCH_KEYS",
        value_name = "K",
        default_value_t = 10_000
    )]
    keys: u64,
    /// uniform | zipfian
    #[arg(
        long,
        env = "SYNOD_BENCH_DIST",
        value_name = "D",
        default_value = "uniform"
    )]
    dist: String,
    /// Zipfian skew, in (0, 1)
    #[arg(
        long,
        env = "SYNOD_BENCH_ZIPF_THETA",
        value_name = "T",
        default_value_t = 0.99
    )]
    zipf_theta: f64,
    /// Value size
    #[arg(
        long,
        env = "SYNOD_BENCH_VALUE_SIZE",
        value_name = "BYTES",
        default_value_t = 64
    )]
    value_size: usize,
    /// Put every key once first (auto: for get and mixed)
    #[arg(long, env = "SYNOD_BENCH_PREFILL", value_parser = ["auto", "yes", "no"],
          default_value = "auto")]
    prefill: String,
    /// Give up on one request after this
    #[arg(long, env = "SYNOD_BENCH_TIMEOUT", value_name = "SECS", default_value = "10",
          value_parser = secs)]
    timeout: Duration,
    /// Wait for outstanding requests at the end
    #[arg(long, env = "SYNOD_BENCH_DRAIN_TIMEOUT", value_name = "SECS", default_value = "10",
          value_parser = secs)]
    drain_timeout: Duration,
    /// Seed of the key and op choices (default: random)
    #[arg(long, env = "SYNOD_BENCH_SEED", value_name = "N")]
    seed: Option<u64>,
    /// Also write the figures as JSON
    #[arg(long, env = "SYNOD_BENCH_JSON", value_name = "FILE")]
    json: Option<String>,
    /// Record the history and check linearizability (keep it small: e.g.
    /// --ops 2000 --keys 100); transfer: audit the accounts at the end
    /// (their total must be the initial one) and check every transfer's
    /// answer
    #[arg(long, env = "SYNOD_BENCH_CHECK", value_parser = FalseyValueParser::new())]
    check: bool,
    /// No progress lines
    #[arg(long, env = "SYNOD_BENCH_QUIET", value_parser = FalseyValueParser::new())]
    quiet: bool,
    /// The cluster's key
    #[arg(long, env = "SYNOD_CLUSTER_KEY_FILE", value_name = "F")]
    cluster_key_file: Option<String>,
    /// The client key, for a cluster started with --client-key-file
    #[arg(long, env = "SYNOD_CLIENT_KEY_FILE", value_name = "F")]
    client_key_file: Option<String>,
    /// One connection per (server, group), as before issue 15
    ///
    /// By default the groups a server runs on one core share one
    /// connection per session (wire/PROTOCOL.md section 1); this flag
    /// turns that off, to measure both ways with the same binary.
    #[arg(long, env = "SYNOD_BENCH_CONN_PER_GROUP", value_parser = FalseyValueParser::new())]
    conn_per_group: bool,
    /// Every client session its own connections, as before the twentieth
    /// session
    ///
    /// By default the sessions of one load-generator thread share one
    /// connection per destination, as an application process's sessions
    /// (and the RESP gateway's) do; this flag makes each session connect
    /// on its own, as separate client processes would.
    #[arg(long, env = "SYNOD_BENCH_CONN_PER_CLIENT", value_parser = FalseyValueParser::new())]
    conn_per_client: bool,
}

/// Parsed options.
#[derive(Clone, Debug)]
pub struct Options {
    pub masters: Vec<String>,
    pub clients: usize,
    pub pipeline: usize,
    /// Open-loop rate (ops/s across all sessions); `None`: closed-loop.
    pub rate: Option<f64>,
    pub threads: usize,
    pub duration: Option<Duration>,
    pub ops: Option<u64>,
    pub warmup: Duration,
    pub workload: Workload,
    pub keys: u64,
    pub dist: KeyDist,
    pub dist_name: String,
    pub value_size: usize,
    pub prefill: bool,
    pub timeout: Duration,
    pub drain_timeout: Duration,
    pub seed: Option<u64>,
    pub json: Option<String>,
    pub check: bool,
    pub quiet: bool,
    /// `--cluster-key-file` (the caller falls back to the environment).
    pub cluster_key_file: Option<String>,
    /// `--client-key-file` (likewise).
    pub client_key_file: Option<String>,
    /// `--conn-per-group`: no connection shared between groups.
    pub conn_per_group: bool,
    /// `--conn-per-client`: no connection shared between sessions.
    pub conn_per_client: bool,
}

/// Default `--threads` for `clients` sessions on `cores` cores: half the
/// cores, because the servers being measured usually share the machine.
pub fn default_threads(clients: usize, cores: usize) -> usize {
    clients.clamp(1, (cores / 2).max(1))
}

fn secs(v: &str) -> Result<Duration, String> {
    let x: f64 = v
        .parse()
        .map_err(|_| "needs a number of seconds".to_string())?;
    if !(x >= 0.0 && x.is_finite()) {
        return Err("must be a non-negative number".to_string());
    }
    Ok(Duration::from_secs_f64(x))
}

/// Parses the arguments after the program name (tests; `synod-bench`
/// itself uses `Args::parse` and [`Options::new`]).
pub fn parse(args: &[&str], cores: usize) -> Result<Options, String> {
    let args = Args::try_parse_from(std::iter::once("synod-bench").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    Options::new(args, cores)
}

impl Options {
    /// Checks what one flag cannot check alone and fills in the defaults
    /// that depend on other flags; `cores` is the machine's core count.
    pub fn new(a: Args, cores: usize) -> Result<Options, String> {
        let Args {
            masters,
            clients,
            pipeline,
            rate,
            threads,
            mut duration,
            ops,
            warmup,
            workload,
            txn_one_group,
            txn_cross_group,
            read_ratio,
            keys,
            dist,
            zipf_theta: theta,
            value_size,
            prefill,
            timeout,
            drain_timeout,
            seed,
            json,
            check,
            quiet,
            cluster_key_file,
            client_key_file,
            conn_per_group,
            conn_per_client,
        } = a;
        let masters: Vec<String> = masters
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if masters.is_empty() {
            return Err("no masters: pass --masters A,B,C or set SYNOD_MASTERS".into());
        }
        if clients == 0 || pipeline == 0 {
            return Err("--clients and --pipeline must be at least 1".into());
        }
        if let Some(r) = rate {
            // `!(..)` so NaN is refused too.
            if !(r > 0.0 && r <= RATE_MAX) {
                return Err(format!(
                    "--rate must be more than 0 and at most {RATE_MAX}, not {r}"
                ));
            }
        }
        if keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if ops == Some(0) {
            return Err("--ops must be at least 1".into());
        }
        if duration.is_none() && ops.is_none() {
            duration = Some(Duration::from_secs(10));
        }
        // A timed run warms up by default; a counted one (typically a small
        // --check run) does not, so its history is just the ops asked for.
        let warmup = warmup.unwrap_or(if ops.is_some() {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        });
        if timeout.is_zero() {
            return Err("--timeout must be positive".into());
        }
        let mut workload = Workload::parse(&workload, read_ratio)?;
        if let Workload::Transfer { span } = &mut workload {
            if keys < 2 {
                return Err("--workload transfer needs --keys 2 or more".into());
            }
            if txn_one_group {
                *span = TxnSpan::OneGroup;
            } else if txn_cross_group {
                *span = TxnSpan::CrossGroup;
            }
        } else if txn_one_group || txn_cross_group {
            return Err("--txn-one-group and --txn-cross-group are for --workload transfer".into());
        }
        let dist_kind = match dist.as_str() {
            "uniform" => KeyDist::Uniform { n: keys },
            "zipfian" | "zipf" => KeyDist::Zipfian(Zipfian::new(keys, theta)?),
            other => return Err(format!("--dist must be uniform or zipfian, not {other:?}")),
        };
        let dist_name = match &dist_kind {
            KeyDist::Uniform { .. } => "uniform".to_string(),
            KeyDist::Zipfian(z) => format!("zipfian{}", z.theta()),
        };
        let prefill = match prefill.as_str() {
            "auto" => workload.reads() || workload.is_bank(),
            "yes" => true,
            "no" => false,
            _ => unreachable!("clap accepts only auto, yes and no"),
        };
        if workload.is_bank() && check && !prefill {
            // The audit needs the initial total, which only the prefill
            // makes known.
            return Err("--workload transfer --check needs the prefill".into());
        }
        let threads = threads.unwrap_or_else(|| default_threads(clients, cores));
        if threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        Ok(Options {
            masters,
            clients,
            pipeline,
            rate,
            threads: threads.min(clients),
            duration,
            ops,
            warmup,
            workload,
            keys,
            dist: dist_kind,
            dist_name,
            value_size,
            prefill,
            timeout,
            drain_timeout,
            seed,
            json,
            check,
            quiet,
            cluster_key_file,
            client_key_file,
            conn_per_group,
            conn_per_client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn defaults() {
        let o = parse(&args("--masters a:1,b:2"), 8).unwrap();
        assert_eq!(o.masters, vec!["a:1", "b:2"]);
        assert_eq!((o.clients, o.pipeline, o.threads), (16, 8, 4));
        assert_eq!(o.duration, Some(Duration::from_secs(10)));
        assert_eq!(o.timeout, Duration::from_secs(10));
        assert_eq!(o.workload, Workload::Put);
        assert!(!o.prefill && !o.check);
        assert_eq!(o.rate, None, "closed-loop unless --rate");
        assert!(!o.conn_per_group, "groups of a core share a connection");
        let o = parse(&args("--masters a:1 --conn-per-group"), 8).unwrap();
        assert!(o.conn_per_group);
        assert!(!o.conn_per_client, "a thread's sessions share connections");
        let o = parse(&args("--masters a:1 --conn-per-client"), 8).unwrap();
        assert!(o.conn_per_client);
    }

    #[test]
    fn rate_selects_open_loop() {
        let o = parse(&args("--masters a:1 --rate 2500.5 --clients 8"), 2).unwrap();
        assert_eq!(o.rate, Some(2500.5));
        assert_eq!(o.pipeline, 8, "the pipeline cap keeps its default");
        assert_eq!(
            parse(&args("--masters a:1 --rate=100"), 2).unwrap().rate,
            Some(100.0)
        );
        for bad in ["0", "-5", "NaN", "inf", "fast", "2e9"] {
            assert!(
                parse(&[&["--masters", "a:1", "--rate"][..], &[bad]].concat(), 2).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn flags_take_both_spellings() {
        let o = parse(
            &args("--masters x:1 --clients=4 --pipeline 2 --workload get --ops 100 --dist zipfian"),
            2,
        )
        .unwrap();
        assert_eq!(o.masters, vec!["x:1"]);
        assert_eq!((o.clients, o.pipeline, o.threads), (4, 2, 1));
        assert_eq!(o.ops, Some(100));
        assert_eq!(o.duration, None, "--ops alone runs until the ops are done");
        assert_eq!(o.warmup, Duration::ZERO, "counted runs do not warm up");
        assert!(o.prefill, "get workloads prefill by default");
        assert_eq!(o.dist_name, "zipfian0.99");
        let o = parse(
            &args("--masters x:1 --clients 2 --clients 3 --quiet --quiet"),
            2,
        )
        .unwrap();
        assert_eq!(o.clients, 3, "the last one wins");
    }

    #[test]
    fn transfer_prefills_and_takes_a_span() {
        let o = parse(&args("--masters a:1 --workload transfer --keys 100"), 2).unwrap();
        assert_eq!(o.workload, Workload::Transfer { span: TxnSpan::Any });
        assert!(o.prefill, "accounts start at a known balance");
        let o = parse(
            &args("--masters a:1 --workload=transfer --txn-one-group --check"),
            2,
        )
        .unwrap();
        assert_eq!(
            o.workload,
            Workload::Transfer {
                span: TxnSpan::OneGroup
            }
        );
        assert!(o.check);
        assert_eq!(o.workload.label(), "transfer-one-group");
        let o = parse(
            &args("--masters a:1 --workload transfer --txn-cross-group"),
            2,
        )
        .unwrap();
        assert_eq!(
            o.workload,
            Workload::Transfer {
                span: TxnSpan::CrossGroup
            }
        );
        for bad in [
            "--workload transfer --keys 1",
            "--workload transfer --txn-one-group --txn-cross-group",
            "--workload put --txn-one-group",
            "--workload get --txn-cross-group",
            "--workload transfer --check --prefill no",
        ] {
            assert!(
                parse(&args(&format!("--masters a:1 {bad}")), 2).is_err(),
                "{bad}"
            );
        }
        // Without --check, a run may transfer between accounts left by an
        // earlier one.
        let o = parse(&args("--masters a:1 --workload transfer --prefill no"), 2).unwrap();
        assert!(!o.prefill);
    }

    #[test]
    fn nonsense_is_refused() {
        if std::env::var_os("SYNOD_MASTERS").is_none() {
            assert!(parse(&[], 2).is_err(), "no masters");
        }
        for bad in [
            "--clients 0",
            "--workload scan",
            "--bogus 1",
            "--duration",
            "--duration -1",
            "--prefill maybe",
            "--zipf-theta 1 --dist zipfian",
        ] {
            assert!(
                parse(&args(&format!("--masters a:1 {bad}")), 2).is_err(),
                "{bad}"
            );
        }
        let help = Args::try_parse_from(["synod-bench", "--help"]).unwrap_err();
        assert_eq!(help.exit_code(), 0);
    }

    /// Every option reads `SYNOD_BENCH_<OPTION>`, but the three that name
    /// the cluster keep the names every program shares (README, "Command
    /// lines").
    #[test]
    fn every_option_reads_its_synod_variable() {
        let shared = ["masters", "cluster-key-file", "client-key-file"];
        for arg in <Args as clap::CommandFactory>::command().get_arguments() {
            let long = arg.get_long().expect("options only");
            let prefix = if shared.contains(&long) {
                "SYNOD_"
            } else {
                "SYNOD_BENCH_"
            };
            let want = format!("{prefix}{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(&want)), "--{long}");
        }
        <Args as clap::CommandFactory>::command().debug_assert();
    }
}
