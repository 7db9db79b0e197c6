//! `synod-sim`: run the deterministic simulator over many seeds.
//!
//! Exits 0 only when every seed passes. The last line is `seeds=N failures=F`
//! followed by other `key=value` figures. A failing seed prints itself with
//! the exact command that replays it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use synod::sim::{self, Bugs, SimConfig, SimReport};

struct Args {
    seeds: u64,
    start: u64,
    replicas: Option<u32>,
    faults: bool,
    jobs: usize,
    bugs: Bugs,
    verbose: bool,
    sharded: bool,
    fault_secs: Option<u64>,
    disk_latency_us: u64,
    byzantine: bool,
    disk_faults: bool,
    stamp_reads: bool,
    page_bytes: Option<usize>,
    trace: Option<std::path::PathBuf>,
    /// `--txn N`: bank accounts of the sharded world's transactions.
    bank: usize,
    txn_ignore_compares: bool,
    txn_early_release: bool,
    txn_unlocked_reads: bool,
    txn_forget_prepared: bool,
    /// `--txn-one-group`: every account in one shard (no two-phase commit).
    bank_one_group: bool,
}

const USAGE: &str =
    "usage: synod-sim [--seeds N] [--start-seed S] [--replicas 3|5] [--no-faults] [--jobs J]
                 [--world group|sharded] [--fault-secs N] [--txn ACCOUNTS]
                 [--txn-one-group]
                 [--bug skip-dedup|forget-floor|txn-ignore-compares|txn-early-release|txn-unlocked-reads|txn-forget-prepared|follower-reads|unconfirmed-leader-reads|accept-ignores-promise|apply-past-hole|read-index-skips-takeover|accepted-before-sync]
                 [--disk-latency-us N] [--disk-faults] [--byzantine] [--stamp-reads] [--page-bytes N] [--trace FILE] [-v]

Without --replicas, each seed picks 3 or 5 replicas itself (even seeds 3, odd seeds 5).
--world sharded: the master group plus 3 KV groups of 3 replicas, with joins,
leaves and moves while clients run (--replicas and --bug do not apply);
--fault-secs sets its fault phase (default 8; admin changes come every 0.3-1.5 s).
--txn ACCOUNTS (sharded world): clients also run bank transactions on ACCOUNTS
accounts, each in a shard of its own (so transactions span groups: two-phase
commit), or all in one shard with --txn-one-group; audits and version-guarded
transfers, and every audit must see the same total. Planted bugs:
txn-ignore-compares (a lost update), txn-early-release (a participant applies
its branch and keeps no locks before the decision), txn-unlocked-reads (keys a
transaction only reads are not locked), txn-forget-prepared (snapshots leave
out prepared transactions).
--disk-latency-us N: each sync takes up to N us of virtual time, during which the
node's early messages (a leader's Accepts) are already out and a crash loses the
records being synced (group world only; default 0, an instant disk).
--disk-faults: a crash mid-sync leaves a torn prefix of the sync's WAL bytes
(sometimes garbage in its last record) that the WAL's own recovery reads back,
and every restart checks that a bit flipped in the node's synced log is
refused (group world; without --disk-latency-us it uses 20000).
--stamp-reads: a read reaching a leader whose clock stamp is due goes through
the log behind a fresh stamp, as in the runtime (single-group world).
--byzantine: during the fault phase, forged messages (out-of-range ballots and
slots, unsolicited catch-up answers and snapshot chunks, garbage snapshots,
Promises for ballots never proposed) are stepped into the replicas; nothing may
panic and every checker still runs (group world only).
--page-bytes N: byte budget of each Promise page, Accept and catch-up response
(default 4 MiB); a few hundred makes every election and catch-up page.
--trace FILE: write every message send and receive of the one seed run (needs
--seeds 1; group world) with each host's Lamport and vector clocks, in the log
format ShiViz reads (the file's first line is its parser expression).";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seeds: 100,
        start: 0,
        replicas: None,
        faults: true,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        bugs: Bugs::default(),
        verbose: false,
        sharded: false,
        fault_secs: None,
        disk_latency_us: 0,
        byzantine: false,
        disk_faults: false,
        stamp_reads: false,
        page_bytes: None,
        trace: None,
        bank: 0,
        txn_ignore_compares: false,
        txn_early_release: false,
        txn_unlocked_reads: false,
        txn_forget_prepared: false,
        bank_one_group: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--seeds" => a.seeds = num(&value("--seeds")?)?,
            "--start-seed" => a.start = num(&value("--start-seed")?)?,
            "--replicas" => {
                let r = num(&value("--replicas")?)? as u32;
                if r != 3 && r != 5 {
                    return Err(format!("--replicas must be 3 or 5, not {r}"));
                }
                a.replicas = Some(r);
            }
            "--jobs" => a.jobs = (num(&value("--jobs")?)? as usize).max(1),
            "--no-faults" => a.faults = false,
            "--byzantine" => a.byzantine = true,
            "--disk-faults" => a.disk_faults = true,
            "--stamp-reads" => a.stamp_reads = true,
            "--page-bytes" => a.page_bytes = Some(num(&value("--page-bytes")?)? as usize),
            "--trace" => a.trace = Some(value("--trace")?.into()),
            "--txn" => a.bank = num(&value("--txn")?)? as usize,
            "--txn-one-group" => a.bank_one_group = true,
            "--fault-secs" => a.fault_secs = Some(num(&value("--fault-secs")?)?),
            "--disk-latency-us" => a.disk_latency_us = num(&value("--disk-latency-us")?)?,
            "--world" => match value("--world")?.as_str() {
                "group" => a.sharded = false,
                "sharded" => a.sharded = true,
                other => return Err(format!("--world must be group or sharded, not {other:?}")),
            },
            "--bug" => match value("--bug")?.as_str() {
                "skip-dedup" => a.bugs.skip_dedup = true,
                "forget-floor" => a.bugs.forget_floor = true,
                "txn-ignore-compares" => a.txn_ignore_compares = true,
                "txn-early-release" => a.txn_early_release = true,
                "txn-unlocked-reads" => a.txn_unlocked_reads = true,
                "txn-forget-prepared" => a.txn_forget_prepared = true,
                "follower-reads" => a.bugs.replica.follower_reads = true,
                "unconfirmed-leader-reads" => a.bugs.replica.unconfirmed_leader_reads = true,
                "accept-ignores-promise" => a.bugs.paxos.accept_ignores_promise = true,
                "apply-past-hole" => a.bugs.paxos.apply_past_hole = true,
                "read-index-skips-takeover" => a.bugs.paxos.read_index_skips_takeover = true,
                "accepted-before-sync" => a.bugs.paxos.accepted_before_sync = true,
                other => return Err(format!("unknown bug {other:?}")),
            },
            "-v" | "--verbose" => a.verbose = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.disk_faults && a.disk_latency_us == 0 {
        a.disk_latency_us = 20_000;
    }
    if a.trace.is_some() && (a.seeds != 1 || a.sharded) {
        return Err("--trace traces one seed of the group world: add --seeds 1".into());
    }
    Ok(a)
}

fn num(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

fn config_for(seed: u64, args: &Args) -> SimConfig {
    let mut cfg = SimConfig::for_seed(seed, args.replicas);
    cfg.faults = args.faults;
    cfg.bugs = args.bugs;
    cfg.disk_latency_max = args.disk_latency_us;
    cfg.byzantine = args.byzantine;
    cfg.disk_faults = args.disk_faults;
    cfg.stamp_reads = args.stamp_reads;
    if let Some(p) = args.page_bytes {
        cfg.page_bytes = p;
    }
    cfg.trace = args.trace.clone();
    cfg
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("synod-sim: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.sharded {
        return run_sharded(&args);
    }
    let started = Instant::now();
    let next = AtomicU64::new(args.start);
    let end = args.start + args.seeds;
    let reports: Mutex<Vec<SimReport>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let cfg = config_for(seed, &args);
                let report = sim::run(&cfg);
                if !report.passed() {
                    let mut msg = format!(
                        "FAIL seed={seed} replicas={} — replay: synod-sim --start-seed {seed} --seeds 1 --replicas {}{}",
                        cfg.replicas,
                        cfg.replicas,
                        if args.disk_latency_us > 0 {
                            format!(" --disk-latency-us {}", args.disk_latency_us)
                        } else {
                            String::new()
                        }
                    ) + if args.byzantine { " --byzantine" } else { "" }
                        + if args.disk_faults { " --disk-faults" } else { "" }
                        + &args
                            .page_bytes
                            .map_or(String::new(), |p| format!(" --page-bytes {p}"));
                    let shown = if args.verbose { usize::MAX } else { 3 };
                    for f in report.failures.iter().take(shown) {
                        msg.push_str("\n    ");
                        msg.push_str(&f.replace('\n', "\n    "));
                    }
                    if report.failures.len() > shown {
                        msg.push_str(&format!("\n    ... {} more", report.failures.len() - shown));
                    }
                    println!("{msg}");
                } else if args.verbose {
                    println!(
                        "ok seed={seed} replicas={} ops={} slots={} elections={} crashes={}",
                        cfg.replicas,
                        report.ops_completed,
                        report.slots_chosen,
                        report.elections,
                        report.crashes
                    );
                }
                reports.lock().expect("no panics hold it").push(report);
            });
        }
    });
    let reports = reports.into_inner().expect("no panics hold it");
    let secs = started.elapsed().as_secs_f64();
    let failures = reports.iter().filter(|r| !r.passed()).count();
    let commands: u64 = reports.iter().map(|r| r.commands_chosen).sum();
    let slots: u64 = reports.iter().map(|r| r.slots_chosen).sum();
    let ops: u64 = reports.iter().map(|r| r.ops_completed).sum();
    let elections: u64 = reports.iter().map(|r| r.elections).sum();
    let crashes: u64 = reports.iter().map(|r| r.crashes).sum();
    let snaps: u64 = reports.iter().map(|r| r.snapshots_installed).sum();
    let expired: u64 = reports.iter().map(|r| r.session_expired).sum();
    println!(
        "seeds={} failures={} committed_commands={} slots={} avg_batch={:.2} ops_completed={} elections={} crashes={} snapshots_installed={} session_expired={} wall_secs={:.1} sim_commands_per_wall_sec={:.0}",
        reports.len(),
        failures,
        commands,
        slots,
        commands as f64 / slots.max(1) as f64,
        ops,
        elections,
        crashes,
        snaps,
        expired,
        secs,
        commands as f64 / secs.max(1e-9)
    );
    if !args.sharded {
        let written: u64 = reports.iter().map(|r| r.snapshot_writes).sum();
        let lost: u64 = reports.iter().map(|r| r.snapshot_writes_lost).sum();
        println!("snapshot writes: durable={written} lost_in_crashes={lost}");
    }
    if args.disk_faults {
        let torn: u64 = reports.iter().map(|r| r.torn_syncs).sum();
        let flips: u64 = reports.iter().map(|r| r.flips_refused).sum();
        println!("disk faults: torn_syncs={torn} bit_flips_refused={flips}");
    }
    if args.byzantine {
        let forged: u64 = reports.iter().map(|r| r.forged).sum();
        println!("byzantine: forged_messages={forged}");
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_sharded(args: &Args) -> ExitCode {
    use synod::sim::sharded::{run_sharded, ShardedConfig, ShardedReport};
    let started = Instant::now();
    let next = AtomicU64::new(args.start);
    let end = args.start + args.seeds;
    let reports: Mutex<Vec<ShardedReport>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let mut cfg = ShardedConfig::new(seed);
                cfg.faults = args.faults;
                cfg.bank_accounts = args.bank;
                cfg.txn_ignore_compares = args.txn_ignore_compares;
                cfg.txn_early_release = args.txn_early_release;
                cfg.txn_unlocked_reads = args.txn_unlocked_reads;
                cfg.txn_forget_prepared = args.txn_forget_prepared;
                cfg.bank_one_group = args.bank_one_group;
                if let Some(secs) = args.fault_secs {
                    cfg.fault_phase = secs * 1_000_000;
                }
                let report = run_sharded(&cfg);
                if !report.passed() {
                    let mut msg = format!(
                        "FAIL seed={seed} world=sharded — replay: synod-sim --world sharded --start-seed {seed} --seeds 1"
                    );
                    for f in report.failures.iter().take(if args.verbose { usize::MAX } else { 3 }) {
                        msg.push_str("\n    ");
                        msg.push_str(&f.replace('\n', "\n    "));
                    }
                    println!("{msg}");
                } else if args.verbose {
                    println!(
                        "ok seed={seed} ops={} configs={} shards_moved={} chunks={} crashes={}",
                        report.ops_completed,
                        report.configs,
                        report.shards_moved,
                        report.chunks_received,
                        report.crashes
                    );
                }
                reports.lock().expect("no panics hold it").push(report);
            });
        }
    });
    let reports = reports.into_inner().expect("no panics hold it");
    let secs = started.elapsed().as_secs_f64();
    let failures = reports.iter().filter(|r| !r.passed()).count();
    println!(
        "seeds={} failures={} world=sharded ops_completed={} configs={} shards_moved={} chunks_received={} rotations={} crashes={} stored_value_bytes={} owned_value_bytes={} session_expired={} wall_secs={:.1}",
        reports.len(),
        failures,
        reports.iter().map(|r| r.ops_completed).sum::<u64>(),
        reports.iter().map(|r| r.configs).sum::<u64>(),
        reports.iter().map(|r| r.shards_moved).sum::<u64>(),
        reports.iter().map(|r| r.chunks_received).sum::<u64>(),
        reports.iter().map(|r| r.rotations).sum::<u64>(),
        reports.iter().map(|r| r.crashes).sum::<u64>(),
        reports.iter().map(|r| r.stored_value_bytes).sum::<u64>(),
        reports.iter().map(|r| r.owned_value_bytes).sum::<u64>(),
        reports.iter().map(|r| r.session_expired).sum::<u64>(),
        secs
    );
    if args.bank > 0 {
        println!(
            "bank_audits={} bank_transfers_committed={} two_pc_attempts={} two_pc_aborts={}",
            reports.iter().map(|r| r.bank_audits).sum::<u64>(),
            reports.iter().map(|r| r.bank_transfers).sum::<u64>(),
            reports.iter().map(|r| r.two_pc).sum::<u64>(),
            reports.iter().map(|r| r.two_pc_aborts).sum::<u64>(),
        );
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
