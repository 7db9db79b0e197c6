//! `synod-bench`'s command line.
//!
//! Hand-parsed (like the other Synod binaries) to keep the dependency list
//! short; every flag takes `--flag VALUE` or `--flag=VALUE`.

use std::time::Duration;

use crate::pace::RATE_MAX;
use crate::workload::Workload;
use crate::zipf::{KeyDist, Zipfian};

pub const USAGE: &str = "usage: synod-bench [options]

Pipelined load against a Synod cluster: closed-loop (each reply lets the
next request go), or open-loop at a fixed rate with --rate. Progress goes to
stderr every second; stdout gets a summary and, last, one line of key=value
pairs.

  --masters A,B,C        shard masters (default: $SYNOD_MASTERS)
  --clients N            client sessions, each its own connection(s) and
                         at-most-once identity (default 16)
  --pipeline P           requests each session keeps in flight (default 8);
                         with --rate, the most it may have in flight
  --rate OPS             open loop: send OPS requests per second in total on
                         a fixed schedule (split over the threads in
                         proportion to their sessions) instead of one per
                         reply; each goes to a session with a free pipeline
                         slot, and waits for one if all are taken. Latency
                         runs from each request's INTENDED send time, so time
                         spent waiting for a slot, a stalled server or a late
                         load generator all count (no coordinated omission);
                         the percentiles cover every request intended in the
                         measured window, even if it finished after it.
                         Requests due at the end are still sent (for up to
                         --drain-timeout). Adds to the last line: target_rate;
                         delayed (measured requests that fell due while every
                         slot was taken); unsent (intended in the window but
                         never sent); lag_p50_us, lag_p99_us, lag_max_us (send
                         minus intended time). The achieved rate is
                         ops_per_sec (completions inside the window).
  --threads T            worker threads sharing the sessions
                         (default: min(clients, max(1, cores/2)))
  --duration SECS        measured time after the warmup (default 10 unless --ops)
  --ops N                stop after N measured operations instead
  --warmup SECS          unmeasured time first (default 1, or 0 with --ops)
  --workload W           put | get | append | mixed (default put)
  --read-ratio R         share of gets in mixed (default 0.5)
  --keys K               distinct keys (default 10000)
  --dist D               uniform | zipfian (default uniform)
  --zipf-theta T         zipfian skew, in (0, 1) (default 0.99)
  --value-size BYTES     value size (default 64)
  --prefill auto|yes|no  put every key once first (auto: for get and mixed)
  --timeout SECS         give up on one request after this (default 10)
  --drain-timeout SECS   wait for outstanding requests at the end (default 10)
  --seed N               seed of the key and op choices (default: random)
  --json FILE            also write the figures as JSON
  --check                record the history and check linearizability
                         (keep it small: e.g. --ops 2000 --keys 100)
  --quiet                no progress lines
  --cluster-key-file F   the cluster's key (default: $SYNOD_CLUSTER_KEY_FILE)
  --client-key-file F    the client key, for a cluster started with
                         --client-key-file (default: $SYNOD_CLIENT_KEY_FILE)";

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
}

/// Default `--threads` for `clients` sessions on `cores` cores: half the
/// cores, because the servers being measured usually share the machine.
pub fn default_threads(clients: usize, cores: usize) -> usize {
    clients.clamp(1, (cores / 2).max(1))
}

fn secs(flag: &str, v: &str) -> Result<Duration, String> {
    let x: f64 = v
        .parse()
        .map_err(|_| format!("{flag} needs a number of seconds, not {v:?}"))?;
    if !(x >= 0.0 && x.is_finite()) {
        return Err(format!("{flag} must be a non-negative number, not {v:?}"));
    }
    Ok(Duration::from_secs_f64(x))
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag} needs a number, not {v:?}"))
}

/// Parses the arguments after the program name. `env_masters` is
/// `$SYNOD_MASTERS`, `cores` the machine's core count. `Err("")` means
/// help was asked for.
pub fn parse(args: &[String], env_masters: Option<&str>, cores: usize) -> Result<Options, String> {
    let mut masters: Option<String> = None;
    let mut clients = 16usize;
    let mut pipeline = 8usize;
    let mut rate: Option<f64> = None;
    let mut threads: Option<usize> = None;
    let mut duration: Option<Duration> = None;
    let mut ops: Option<u64> = None;
    let mut warmup: Option<Duration> = None;
    let mut workload = "put".to_string();
    let mut read_ratio = 0.5f64;
    let mut keys = 10_000u64;
    let mut dist = "uniform".to_string();
    let mut theta = 0.99f64;
    let mut value_size = 64usize;
    let mut prefill = "auto".to_string();
    let mut timeout = Duration::from_secs(10);
    let mut drain_timeout = Duration::from_secs(10);
    let mut seed = None;
    let mut json = None;
    let mut check = false;
    let mut quiet = false;
    let mut cluster_key_file = None;
    let mut client_key_file = None;

    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--check" => {
                check = true;
                continue;
            }
            "--quiet" => {
                quiet = true;
                continue;
            }
            _ => {}
        }
        let v = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?,
        };
        match flag.as_str() {
            "--masters" => masters = Some(v),
            "--clients" => clients = num(&flag, &v)?,
            "--pipeline" => pipeline = num(&flag, &v)?,
            "--rate" => rate = Some(num(&flag, &v)?),
            "--threads" => threads = Some(num(&flag, &v)?),
            "--duration" => duration = Some(secs(&flag, &v)?),
            "--ops" => ops = Some(num(&flag, &v)?),
            "--warmup" => warmup = Some(secs(&flag, &v)?),
            "--workload" => workload = v,
            "--read-ratio" => read_ratio = num(&flag, &v)?,
            "--keys" => keys = num(&flag, &v)?,
            "--dist" => dist = v,
            "--zipf-theta" => theta = num(&flag, &v)?,
            "--value-size" => value_size = num(&flag, &v)?,
            "--prefill" => prefill = v,
            "--timeout" => timeout = secs(&flag, &v)?,
            "--drain-timeout" => drain_timeout = secs(&flag, &v)?,
            "--seed" => seed = Some(num(&flag, &v)?),
            "--json" => json = Some(v),
            "--cluster-key-file" => cluster_key_file = Some(v),
            "--client-key-file" => client_key_file = Some(v),
            other => return Err(format!("unknown option {other:?}")),
        }
    }

    let masters: Vec<String> = masters
        .as_deref()
        .or(env_masters)
        .unwrap_or("")
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
    let workload = Workload::parse(&workload, read_ratio)?;
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
        "auto" => workload.reads(),
        "yes" => true,
        "no" => false,
        other => return Err(format!("--prefill must be auto, yes or no, not {other:?}")),
    };
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn defaults_and_environment_masters() {
        let o = parse(&[], Some("a:1,b:2"), 8).unwrap();
        assert_eq!(o.masters, vec!["a:1", "b:2"]);
        assert_eq!((o.clients, o.pipeline, o.threads), (16, 8, 4));
        assert_eq!(o.duration, Some(Duration::from_secs(10)));
        assert_eq!(o.workload, Workload::Put);
        assert!(!o.prefill && !o.check);
        assert_eq!(o.rate, None, "closed-loop unless --rate");
    }

    #[test]
    fn rate_selects_open_loop() {
        let o = parse(&args("--rate 2500.5 --clients 8"), Some("a:1"), 2).unwrap();
        assert_eq!(o.rate, Some(2500.5));
        assert_eq!(o.pipeline, 8, "the pipeline cap keeps its default");
        assert_eq!(
            parse(&args("--rate=100"), Some("a:1"), 2).unwrap().rate,
            Some(100.0)
        );
        for bad in ["0", "-5", "NaN", "inf", "fast", "2e9"] {
            assert!(
                parse(&args(&format!("--rate {bad}")), Some("a:1"), 2).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn flags_win_and_take_both_spellings() {
        let o = parse(
            &args("--masters x:1 --clients=4 --pipeline 2 --workload get --ops 100 --dist zipfian"),
            Some("a:1"),
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
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(parse(&[], None, 2).is_err());
        assert!(parse(&args("--clients 0"), Some("a:1"), 2).is_err());
        assert!(parse(&args("--workload scan"), Some("a:1"), 2).is_err());
        assert!(parse(&args("--bogus 1"), Some("a:1"), 2).is_err());
        assert!(parse(&args("--duration"), Some("a:1"), 2).is_err());
        assert!(parse(&args("--zipf-theta 1 --dist zipfian"), Some("a:1"), 2).is_err());
        assert_eq!(parse(&args("--help"), None, 2).unwrap_err(), "");
    }
}
