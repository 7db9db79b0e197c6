//! `synod-bench`: pipelined load against a Synod cluster, closed-loop or at
//! a fixed rate (`--rate`, open-loop).
//!
//! Fetches the configuration from the masters, optionally writes every key
//! once (so Gets hit), runs the workload with `--clients` sessions of
//! `--pipeline` requests each, and prints a summary whose last line is
//! `key=value` pairs for scripts (`perf/bench.sh` takes its table from it).
//! With `--check` the whole history, prefill included, goes through the
//! project's linearizability checker; for `--workload transfer` (the bank:
//! each operation one transaction moving money between two accounts),
//! `--check` instead audits every account once the transfers have stopped
//! ([`audit`]) and checks every transfer's answer.
//!
//! Exit status: 0 after a run (errors are reported, not fatal: a benchmark
//! measures), 1 if the cluster cannot be reached, the history is not
//! linearizable or the bank's total changed, 2 on bad usage.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use synod::auth::Key;
use synod::check::bank::{audit_balances, audit_chunks, check_audit};
use synod::check::{check_kv, CheckOptions, CheckResult};
use synod::client::{Client, ClientOptions};
use synod_tools::cli::{Args, Options};
use synod_tools::driver::{self, RunSpec};
use synod_tools::report::{OpenLoop, Summary, Transfers};
use synod_tools::workload::{key_name, Workload, INITIAL_BALANCE};

/// How long to wait for the masters' first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one audit transaction may take, retries included: longer than
/// the servers' presumed-abort recovery (5 s by default), since a transfer
/// given up at the end of the run may still hold locks the audit waits
/// for until its coordinator's group aborts it.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    // Help and usage errors exit here (0 and 2).
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = match Options::new(args, cores) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("synod-bench: {e}\nrun `synod-bench --help` for usage");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("synod-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark; `Ok(false)` if the history failed its check.
fn run(opts: &Options) -> Result<bool, String> {
    let load = |flag: &Option<String>, var: &str| -> Result<Option<Key>, String> {
        let path = flag
            .clone()
            .or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()));
        path.map(|p| Key::load(std::path::Path::new(&p)))
            .transpose()
    };
    let cluster_key = load(&opts.cluster_key_file, "SYNOD_CLUSTER_KEY_FILE")?;
    let client_key = load(&opts.client_key_file, "SYNOD_CLIENT_KEY_FILE")?;
    let mut client_opts = ClientOptions::new(opts.masters.clone());
    client_opts.timeout = CONNECT_TIMEOUT;
    client_opts.cluster_key = cluster_key.clone();
    client_opts.client_key = client_key.clone();
    let mut client = Client::new(client_opts.clone()).map_err(|e| e.to_string())?;
    let config = client
        .query(None)
        .map_err(|e| format!("cannot fetch the configuration: {e}"))?;
    if config.shards.is_empty() || config.shards.contains(&0) {
        return Err(format!(
            "configuration {} leaves shards without a group; join a group first \
             (synod admin join 1 ADDR...)",
            config.num
        ));
    }
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let epoch = Instant::now();
    let base = RunSpec {
        workload: opts.workload,
        clients: opts.clients,
        pipeline: opts.pipeline,
        threads: opts.threads,
        warmup: opts.warmup,
        duration: opts.duration,
        ops: opts.ops,
        keys: opts.dist.clone(),
        value_size: opts.value_size,
        request_timeout: opts.timeout,
        drain_timeout: opts.drain_timeout,
        // The bank is checked by its audit, not by the per-key checker.
        record_history: opts.check && !opts.workload.is_bank(),
        seed,
        masters: opts.masters.clone(),
        epoch,
        progress: !opts.quiet,
        rate: opts.rate,
        cluster_key,
        client_key,
        share_connections: !opts.conn_per_group,
        conn_per_client: opts.conn_per_client,
    };

    let mut history = Vec::new();
    let mut prefill_errors = 0;
    if opts.prefill {
        eprintln!("synod-bench: prefilling {} keys", opts.keys);
        let started = Instant::now();
        let spec = RunSpec {
            workload: Workload::Prefill {
                balance: opts.workload.is_bank().then_some(INITIAL_BALANCE),
            },
            warmup: Duration::ZERO,
            duration: None,
            ops: Some(opts.keys),
            progress: false,
            // The prefill only has to be done, as fast as it goes.
            rate: None,
            ..base.clone()
        };
        let r = driver::run(&spec, &config);
        prefill_errors = r.counters.errors;
        eprintln!(
            "synod-bench: prefill done: {} keys in {:.2} s, {} errors",
            r.ops,
            started.elapsed().as_secs_f64(),
            r.counters.errors
        );
        history = r.history;
    }

    eprintln!(
        "synod-bench: seed {seed}; {} on configuration {} ({} groups, {} shards)",
        opts.workload.label(),
        config.num,
        config.groups.len(),
        config.shards.len()
    );
    let r = driver::run(&base, &config);
    history.extend(r.history);

    let mut summary = Summary {
        workload: opts.workload.label(),
        clients: opts.clients,
        pipeline: opts.pipeline,
        threads: opts.threads,
        keys: opts.keys,
        dist: opts.dist_name.clone(),
        value_size: opts.value_size,
        ops: r.ops,
        secs: r.secs,
        p50_us: r.hist.value_at_quantile(0.5),
        p90_us: r.hist.value_at_quantile(0.9),
        p99_us: r.hist.value_at_quantile(0.99),
        p999_us: r.hist.value_at_quantile(0.999),
        max_us: r.hist.max(),
        mean_us: r.hist.mean(),
        errors: r.counters.errors + prefill_errors,
        timeouts: r.counters.timeouts,
        busy: r.counters.busy,
        redirects: r.counters.redirects,
        reconnects: r.counters.reconnects,
        get_misses: r.counters.get_misses,
        open_loop: opts.rate.map(|target_rate| OpenLoop {
            target_rate,
            delayed: r.counters.delayed,
            unsent: r.counters.unsent,
            lag_p50_us: r.lag.value_at_quantile(0.5),
            lag_p99_us: r.lag.value_at_quantile(0.99),
            lag_max_us: r.lag.max(),
        }),
        transfers: opts.workload.is_bank().then_some(Transfers {
            two_pc: r.counters.two_pc,
            two_pc_aborts: r.counters.two_pc_aborts,
            two_pc_presumed_aborts: r.counters.two_pc_presumed_aborts,
            off_span: r.counters.off_span,
            broken: r.counters.txn_broken,
            bank_ok: None,
        }),
        linearizable: None,
    };

    let mut ok = true;
    if opts.check && opts.workload.is_bank() {
        let mut audit_opts = client_opts;
        audit_opts.timeout = AUDIT_TIMEOUT;
        let mut checked = audit(audit_opts, opts.keys);
        if checked.is_ok() && prefill_errors > 0 {
            checked = Err(format!(
                "{prefill_errors} prefill puts failed, so the initial total is unknown"
            ));
        }
        if checked.is_ok() && r.counters.txn_broken > 0 {
            checked = Err(format!(
                "{} transfers had a refused half",
                r.counters.txn_broken
            ));
        }
        if let Err(why) = &checked {
            eprintln!("synod-bench: BANK BROKEN: {why}");
        }
        ok = checked.is_ok();
        if let Some(t) = &mut summary.transfers {
            t.bank_ok = Some(ok);
        }
    } else if opts.check {
        eprintln!("synod-bench: checking {} operations", history.len());
        let started = Instant::now();
        let verdict = check_kv(&history, &CheckOptions::default());
        eprintln!(
            "synod-bench: check took {:.2} s",
            started.elapsed().as_secs_f64()
        );
        match &verdict {
            CheckResult::Linearizable => {}
            CheckResult::NotLinearizable { key, detail } => {
                eprintln!(
                    "synod-bench: NOT linearizable on key {:?}:\n{detail}",
                    String::from_utf8_lossy(key)
                );
            }
            CheckResult::Inconclusive { key, steps } => eprintln!(
                "synod-bench: check inconclusive on key {:?} after {steps} steps \
                 (use fewer ops or more keys)",
                String::from_utf8_lossy(key)
            ),
            CheckResult::InvalidHistory { key, detail } => eprintln!(
                "synod-bench: recorded history is invalid on key {:?}: {detail}",
                String::from_utf8_lossy(key)
            ),
        }
        ok = verdict.is_ok();
        summary.linearizable = Some(ok);
    }

    if let Some(path) = &opts.json {
        std::fs::write(path, summary.json()).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    print!("{}", summary.human());
    println!("{}", summary.kv_line());
    Ok(ok)
}

/// The bank's final audit, after every transfer of the run has finished
/// or been given up: reads accounts `k0`..`k<keys-1>` in transactions of
/// at most `TXN_PARTS_MAX` Gets and checks that they add up to `keys` x
/// [`INITIAL_BALANCE`].
///
/// What it proves: with one transaction (up to 1,024 accounts), that the
/// bank held the initial total at one point of the serialization order
/// after the run. With several, the chunks are read one after another,
/// which adds up to a total the bank held only because nothing transfers
/// any more: this process's sessions are gone, so no new transfer can be
/// decided, and one already decided but not finished everywhere holds its
/// keys' locks until its outcome is applied (a read of them is answered
/// `Busy` and retried), while one never decided is aborted by its
/// coordinator's presumed-abort recovery. Either way, every committed
/// transfer is seen whole, and a torn or lost one changes the total.
fn audit(client_opts: ClientOptions, keys: u64) -> Result<(), String> {
    let mut client = Client::new(client_opts).map_err(|e| e.to_string())?;
    let accounts: Vec<_> = (0..keys).map(key_name).collect();
    let chunks = audit_chunks(&accounts);
    let want = INITIAL_BALANCE * keys as i64;
    let started = Instant::now();
    let mut total: i64 = 0;
    for txn in &chunks {
        let result = client
            .txn(txn.clone())
            .map_err(|e| format!("audit transaction failed: {e}"))?;
        if result.results.len() != txn.success.len() {
            return Err(format!(
                "an audit of {} accounts answered {} results",
                txn.success.len(),
                result.results.len()
            ));
        }
        if chunks.len() == 1 {
            // One snapshot of every account: the bank's own check.
            check_audit(&result, want)?;
        }
        total += audit_balances(&result)?.iter().map(|(b, _)| b).sum::<i64>();
    }
    eprintln!(
        "synod-bench: audit of {keys} accounts in {} transaction{} ({}) took {:.2} s: \
         total {total}, initial {want}",
        chunks.len(),
        if chunks.len() == 1 { "" } else { "s" },
        if chunks.len() == 1 {
            "one snapshot"
        } else {
            "chunks read after every transfer stopped"
        },
        started.elapsed().as_secs_f64()
    );
    if total != want {
        return Err(format!("the accounts hold {total}, not the initial {want}"));
    }
    Ok(())
}
