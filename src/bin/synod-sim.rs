//! `synod-sim`: run the deterministic simulator over many seeds.
//!
//! Exits 0 only when every seed passes. The last line is `seeds=N failures=F`
//! followed by other `key=value` figures. A failing seed prints itself with
//! the exact command that replays it. The command line is declared with
//! `clap`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use clap::builder::FalseyValueParser;
use clap::{Parser, ValueEnum};
use synod::sim::{self, Bugs, SimConfig, SimReport};

/// Run the deterministic simulator over many seeds.
///
/// Every option can also be set in the environment as
/// SYNOD_SIMULATOR_<OPTION> (--seeds: SYNOD_SIMULATOR_SEEDS; SYNOD_SIM_* are
/// the test suite's own knobs); the command line wins.
#[derive(Debug, Parser)]
#[command(name = "synod-sim", version, args_override_self = true, after_help = AFTER_HELP)]
struct Args {
    /// Seeds to run
    #[arg(
        long,
        env = "SYNOD_SIMULATOR_SEEDS",
        value_name = "N",
        default_value_t = 100
    )]
    seeds: u64,
    /// The first seed
    #[arg(
        long = "start-seed",
        env = "SYNOD_SIMULATOR_START_SEED",
        value_name = "S",
        default_value_t = 0
    )]
    start: u64,
    /// Replicas of the group (default: each seed picks 3 or 5 itself, even
    /// seeds 3, odd seeds 5; in the pb world 2 or 3, even seeds 2)
    #[arg(long, env = "SYNOD_SIMULATOR_REPLICAS", value_parser = ["2", "3", "5"])]
    replicas: Option<String>,
    /// No crashes, partitions or message loss
    #[arg(long, env = "SYNOD_SIMULATOR_NO_FAULTS", value_parser = FalseyValueParser::new())]
    no_faults: bool,
    /// Seeds run in parallel (default: the machine's cores)
    #[arg(long, env = "SYNOD_SIMULATOR_JOBS", value_name = "J")]
    jobs: Option<u64>,
    /// group: one replica group; sharded: the master group plus 3 KV groups
    /// of 3 replicas, with joins, leaves and moves while clients run
    /// (--replicas and --bug do not apply); pb: one primary/backup group of
    /// 2 or 3 replicas with the master's view service (--bug pb-* apply);
    /// mixed: the sharded world where 1 or 2 of the KV groups (each seed
    /// picks) are primary/backup groups of 2 or 3 replicas, pinging the
    /// master group for views, shards moving between both kinds (--bug
    /// pb-ack-before-backups, pb-serve-after-newer-view and
    /// pb-lead-after-restart apply, and the sharded world's options)
    #[arg(long, env = "SYNOD_SIMULATOR_WORLD", default_value = "group")]
    world: World,
    /// The sharded world's fault phase (default 8; admin changes come
    /// every 0.3-1.5 s)
    #[arg(long, env = "SYNOD_SIMULATOR_FAULT_SECS", value_name = "N")]
    fault_secs: Option<u64>,
    /// Sharded world: clients also run bank transactions on ACCOUNTS
    /// accounts, each in a shard of its own (so transactions span groups:
    /// two-phase commit), or all in one shard with --txn-one-group; audits
    /// and version-guarded transfers, and every audit must see the same
    /// total
    #[arg(
        long = "txn",
        env = "SYNOD_SIMULATOR_TXN",
        value_name = "ACCOUNTS",
        default_value_t = 0
    )]
    bank: usize,
    /// Sharded world: clients also run list-append transactions (1-4
    /// micro-ops, each an append of a unique element or a read of a whole
    /// list) on KEYS keys, each in a shard of its own (so most
    /// transactions span groups: two-phase commit), and the history is
    /// checked Elle-style: each key's version order is inferred from its
    /// longest read (every read must be a prefix of it), then the ww, wr
    /// and rw dependencies plus real-time order must have no cycle (G0,
    /// G1c, G-single/G2, real-time), and no read may see an aborted or
    /// intermediate state or miss an acknowledged append. Transactions
    /// whose outcome is unknown count only if some read saw their
    /// elements. Clients die and stall as with --txn
    #[arg(
        long = "txn-append",
        env = "SYNOD_SIMULATOR_TXN_APPEND",
        value_name = "KEYS",
        default_value_t = 0
    )]
    txn_append: usize,
    /// With --txn: every account in one shard (no two-phase commit)
    #[arg(long, env = "SYNOD_SIMULATOR_TXN_ONE_GROUP", value_parser = FalseyValueParser::new())]
    txn_one_group: bool,
    /// With --txn or --txn-append: no client dies or stalls mid-transaction (by default a
    /// few per seed do, during the fault phase, and their locks must be
    /// released by presumed-abort recovery)
    #[arg(long, env = "SYNOD_SIMULATOR_TXN_NO_CLIENT_DEATHS", value_parser = FalseyValueParser::new())]
    txn_no_client_deaths: bool,
    /// Plant a bug the checkers must catch (repeatable). With --txn or
    /// --txn-append:
    /// txn-ignore-compares (a lost update), txn-early-release (a
    /// participant applies its branch and keeps no locks before the
    /// decision), txn-unlocked-reads (keys a transaction only reads are not
    /// locked), txn-forget-prepared (snapshots leave out prepared
    /// transactions), txn-resolve-unlogged (a coordinator answers a
    /// participant's recovery query Abort without logging it, so a stalled
    /// client's late commit can win too). With --world pb:
    /// pb-ack-before-backups (the primary answers a write before every
    /// backup has it), pb-serve-after-newer-view (a deposed primary keeps
    /// answering reads), pb-promote-without-latest (the view service
    /// promotes a replica that may lack acknowledged writes),
    /// pb-lead-after-restart (a primary that crashed with Appends out
    /// before its sync leads the same view again after its restart)
    #[arg(long = "bug", env = "SYNOD_SIMULATOR_BUG", value_name = "BUG")]
    bugs: Vec<Bug>,
    /// Each sync takes up to N us of virtual time, during which the node's
    /// early messages (a leader's Accepts) are already out and a crash
    /// loses the records being synced (group world only; default 0, an
    /// instant disk)
    #[arg(
        long,
        env = "SYNOD_SIMULATOR_DISK_LATENCY_US",
        value_name = "N",
        default_value_t = 0
    )]
    disk_latency_us: u64,
    /// A crash mid-sync leaves a torn prefix of the sync's WAL bytes
    /// (sometimes garbage in its last record) that the WAL's own recovery
    /// reads back, and every restart checks that a bit flipped in the
    /// node's synced log is refused (group world; without
    /// --disk-latency-us it uses 20000)
    #[arg(long, env = "SYNOD_SIMULATOR_DISK_FAULTS", value_parser = FalseyValueParser::new())]
    disk_faults: bool,
    /// During the fault phase, forged messages (out-of-range ballots and
    /// slots, unsolicited catch-up answers and snapshot chunks, garbage
    /// snapshots, Promises for ballots never proposed) are stepped into the
    /// replicas; nothing may panic and every checker still runs (group
    /// world only)
    #[arg(long, env = "SYNOD_SIMULATOR_BYZANTINE", value_parser = FalseyValueParser::new())]
    byzantine: bool,
    /// A read reaching a leader whose clock stamp is due goes through the
    /// log behind a fresh stamp, as in the runtime (single-group world)
    #[arg(long, env = "SYNOD_SIMULATOR_STAMP_READS", value_parser = FalseyValueParser::new())]
    stamp_reads: bool,
    /// Read leases as the server runs them (its default), on clocks that
    /// drift: each replica's runs up to 2.4% fast or slow from its own
    /// offset, its ticks by it; --bug lease-outlives-guard plants a lease
    /// longer than the followers keep it (group world). In the sharded
    /// and mixed worlds every Paxos group (the master's too) runs them
    #[arg(long, env = "SYNOD_SIMULATOR_LEASE", value_parser = FalseyValueParser::new())]
    lease: bool,
    /// While a leader waits for its sync (--disk-latency-us), client reads
    /// it can answer by its lease alone are answered at once, as the
    /// server does; everything else waits (group world)
    #[arg(long, env = "SYNOD_SIMULATOR_READS_DURING_SYNC", value_parser = FalseyValueParser::new())]
    reads_during_sync: bool,
    /// The group world with membership changes: 6 replica ids, the group
    /// {0,1,2} to start, the others empty nodes; during the fault phase
    /// the leader is asked every 0.15-0.9 s to add or remove one replica
    /// (3 to 5 members), so replacements chain under every fault
    /// (--replicas does not apply); --bug membership-switches-at-once
    /// plants a change that switches to a disjoint membership in one step,
    /// counted by the new majority alone. With --world pb: the operator
    /// replaces, adds and removes replicas of the primary/backup group
    /// through the master (2 spare nodes; a replica that goes is killed
    /// for good or left running, removed)
    #[arg(long, env = "SYNOD_SIMULATOR_MEMBERSHIP", value_parser = FalseyValueParser::new())]
    membership: bool,
    /// Byte budget of each Promise page, Accept and catch-up response
    /// (default 4 MiB); a few hundred makes every election and catch-up
    /// page
    #[arg(long, env = "SYNOD_SIMULATOR_PAGE_BYTES", value_name = "N")]
    page_bytes: Option<usize>,
    /// Write every message send and receive of the one seed run (needs
    /// --seeds 1; group world) with each host's Lamport and vector clocks,
    /// in the log format ShiViz reads (the file's first line is its parser
    /// expression)
    #[arg(long, env = "SYNOD_SIMULATOR_TRACE", value_name = "FILE")]
    trace: Option<std::path::PathBuf>,
    /// Print every seed, and every failure of a failing one
    #[arg(short, long, env = "SYNOD_SIMULATOR_VERBOSE", value_parser = FalseyValueParser::new())]
    verbose: bool,
}

const AFTER_HELP: &str = "Exits 0 only when every seed passes. The last line is seeds=N failures=F
followed by other key=value figures; a failing seed prints the command that
replays it.";

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum World {
    Group,
    Sharded,
    Pb,
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Bug {
    SkipDedup,
    ForgetFloor,
    TxnIgnoreCompares,
    TxnEarlyRelease,
    TxnUnlockedReads,
    TxnForgetPrepared,
    TxnResolveUnlogged,
    FollowerReads,
    UnconfirmedLeaderReads,
    AcceptIgnoresPromise,
    ApplyPastHole,
    ReadIndexSkipsTakeover,
    AcceptedBeforeSync,
    MembershipSwitchesAtOnce,
    LeaseOutlivesGuard,
    PbAckBeforeBackups,
    PbServeAfterNewerView,
    PbPromoteWithoutLatest,
    PbLeadAfterRestart,
}

/// What the seeds run with, from the parsed command line.
struct Run {
    seeds: u64,
    start: u64,
    replicas: Option<u32>,
    faults: bool,
    jobs: usize,
    bugs: Bugs,
    verbose: bool,
    sharded: bool,
    /// `--world mixed`: the sharded world with primary/backup groups.
    mixed: bool,
    /// `--world pb`, and its planted bugs.
    pb: bool,
    pb_bugs: synod::sim::pb::PbWorldBugs,
    fault_secs: Option<u64>,
    disk_latency_us: u64,
    byzantine: bool,
    disk_faults: bool,
    stamp_reads: bool,
    lease: bool,
    reads_during_sync: bool,
    membership: bool,
    page_bytes: Option<usize>,
    trace: Option<std::path::PathBuf>,
    /// `--txn N`: bank accounts of the sharded world's transactions.
    bank: usize,
    /// `--txn-append N`: list-append keys (checked by `check::elle`).
    append_keys: usize,
    /// The planted bugs' names, for the replay command.
    bug_names: Vec<String>,
    txn_ignore_compares: bool,
    txn_early_release: bool,
    txn_unlocked_reads: bool,
    txn_forget_prepared: bool,
    /// `--txn-one-group`: every account in one shard (no two-phase commit).
    bank_one_group: bool,
    /// Clients die and stall mid-transaction (`--txn`, unless
    /// `--txn-no-client-deaths`).
    client_deaths: bool,
    txn_resolve_unlogged: bool,
}

fn configure(a: Args) -> Result<Run, String> {
    let mut bugs = Bugs::default();
    let mut txn_ignore_compares = false;
    let (mut txn_early_release, mut txn_unlocked_reads, mut txn_forget_prepared) =
        (false, false, false);
    let mut txn_resolve_unlogged = false;
    let mut pb_bugs = synod::sim::pb::PbWorldBugs::default();
    for bug in &a.bugs {
        match bug {
            Bug::SkipDedup => bugs.skip_dedup = true,
            Bug::ForgetFloor => bugs.forget_floor = true,
            Bug::TxnIgnoreCompares => txn_ignore_compares = true,
            Bug::TxnEarlyRelease => txn_early_release = true,
            Bug::TxnUnlockedReads => txn_unlocked_reads = true,
            Bug::TxnForgetPrepared => txn_forget_prepared = true,
            Bug::TxnResolveUnlogged => txn_resolve_unlogged = true,
            Bug::FollowerReads => bugs.replica.follower_reads = true,
            Bug::UnconfirmedLeaderReads => bugs.replica.unconfirmed_leader_reads = true,
            Bug::AcceptIgnoresPromise => bugs.paxos.accept_ignores_promise = true,
            Bug::ApplyPastHole => bugs.paxos.apply_past_hole = true,
            Bug::ReadIndexSkipsTakeover => bugs.paxos.read_index_skips_takeover = true,
            Bug::AcceptedBeforeSync => bugs.paxos.accepted_before_sync = true,
            Bug::MembershipSwitchesAtOnce => bugs.paxos.membership_switches_at_once = true,
            Bug::LeaseOutlivesGuard => bugs.paxos.lease_outlives_guard = true,
            Bug::PbAckBeforeBackups => pb_bugs.pb.ack_before_backups = true,
            Bug::PbServeAfterNewerView => pb_bugs.pb.serve_after_newer_view = true,
            Bug::PbPromoteWithoutLatest => pb_bugs.promote_any = true,
            Bug::PbLeadAfterRestart => pb_bugs.pb.lead_after_restart = true,
        }
    }
    let mixed = a.world == World::Mixed;
    let sharded = a.world == World::Sharded || mixed;
    let pb = a.world == World::Pb;
    if mixed && pb_bugs.promote_any {
        return Err("--bug pb-promote-without-latest is for --world pb".into());
    }
    let replicas: Option<u32> = a.replicas.as_deref().map(|r| r.parse().expect("2, 3 or 5"));
    match (pb, replicas) {
        (true, Some(5)) => return Err("--world pb runs 2 or 3 replicas".into()),
        (false, Some(2)) => return Err("--replicas 2 is for --world pb".into()),
        _ => {}
    }
    if a.lease && pb {
        return Err("--lease runs in the group, sharded and mixed worlds".into());
    }
    if a.reads_during_sync && (sharded || pb) {
        return Err("--reads-during-sync runs in the group world".into());
    }
    if a.trace.is_some() && (a.seeds != 1 || sharded || pb) {
        return Err("--trace traces one seed of the group world: add --seeds 1".into());
    }
    Ok(Run {
        seeds: a.seeds,
        start: a.start,
        replicas,
        faults: !a.no_faults,
        jobs: a.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |j| (j as usize).max(1),
        ),
        bugs,
        verbose: a.verbose,
        sharded,
        mixed,
        pb,
        pb_bugs,
        fault_secs: a.fault_secs,
        disk_latency_us: if a.disk_faults && a.disk_latency_us == 0 {
            20_000
        } else {
            a.disk_latency_us
        },
        byzantine: a.byzantine,
        disk_faults: a.disk_faults,
        stamp_reads: a.stamp_reads,
        lease: a.lease,
        reads_during_sync: a.reads_during_sync,
        membership: a.membership,
        page_bytes: a.page_bytes,
        trace: a.trace,
        bank: a.bank,
        append_keys: a.txn_append,
        bug_names: a
            .bugs
            .iter()
            .filter_map(|b| b.to_possible_value().map(|v| v.get_name().to_string()))
            .collect(),
        txn_ignore_compares,
        txn_early_release,
        txn_unlocked_reads,
        txn_forget_prepared,
        bank_one_group: a.txn_one_group,
        client_deaths: (a.bank > 0 || a.txn_append > 0) && !a.txn_no_client_deaths,
        txn_resolve_unlogged,
    })
}

fn config_for(seed: u64, args: &Run) -> SimConfig {
    let mut cfg = if args.membership {
        SimConfig::with_membership(seed)
    } else {
        SimConfig::for_seed(seed, args.replicas)
    };
    cfg.faults = args.faults;
    cfg.bugs = args.bugs;
    cfg.disk_latency_max = args.disk_latency_us;
    cfg.byzantine = args.byzantine;
    cfg.disk_faults = args.disk_faults;
    cfg.stamp_reads = args.stamp_reads;
    cfg.lease = args.lease;
    cfg.reads_during_sync = args.reads_during_sync;
    if let Some(p) = args.page_bytes {
        cfg.page_bytes = p;
    }
    cfg.trace = args.trace.clone();
    cfg
}

/// Runs seeds `args.start..args.start + args.seeds` on `args.jobs` threads,
/// each seed through `one` (which runs it and prints its line), and returns
/// the reports in completion order.
fn run_seeds<R: Send>(args: &Run, one: impl Fn(u64) -> R + Sync) -> Vec<R> {
    let next = AtomicU64::new(args.start);
    let end = args.start + args.seeds;
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let report = one(seed);
                reports.lock().expect("no panics hold it").push(report);
            });
        }
    });
    reports.into_inner().expect("no panics hold it")
}

/// The end of a failing seed's line in the sharded and primary/backup
/// worlds: the options they share (planted bugs, fault phase, faults off)
/// appended to the replay command `msg`, then the first failures (all of
/// them with --verbose).
fn replay_tail(mut msg: String, args: &Run, failures: &[String]) -> String {
    for b in &args.bug_names {
        msg.push_str(&format!(" --bug {b}"));
    }
    if let Some(secs) = args.fault_secs {
        msg.push_str(&format!(" --fault-secs {secs}"));
    }
    if !args.faults {
        msg.push_str(" --no-faults");
    }
    for f in failures
        .iter()
        .take(if args.verbose { usize::MAX } else { 3 })
    {
        msg.push_str("\n    ");
        msg.push_str(&f.replace('\n', "\n    "));
    }
    msg
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match configure(Args::parse()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("synod-sim: {e}");
            return ExitCode::from(2);
        }
    };
    if args.sharded {
        return run_sharded(&args);
    }
    if args.pb {
        return run_pb(&args);
    }
    let started = Instant::now();
    let reports: Vec<SimReport> = run_seeds(&args, |seed| {
        let cfg = config_for(seed, &args);
        let report = sim::run(&cfg);
        if !report.passed() {
            let mut msg = format!(
                        "FAIL seed={seed} replicas={} — replay: synod-sim --start-seed {seed} --seeds 1{}{}",
                        cfg.replicas,
                        if args.membership {
                            String::new()
                        } else {
                            format!(" --replicas {}", cfg.replicas)
                        },
                        if args.disk_latency_us > 0 {
                            format!(" --disk-latency-us {}", args.disk_latency_us)
                        } else {
                            String::new()
                        }
                    ) + if args.membership { " --membership" } else { "" }
                        + if args.byzantine { " --byzantine" } else { "" }
                        + if args.disk_faults { " --disk-faults" } else { "" }
                        + &args.bug_names.iter().map(|b| format!(" --bug {b}")).collect::<String>()
                        + if args.lease { " --lease" } else { "" }
                        + if args.reads_during_sync {
                            " --reads-during-sync"
                        } else {
                            ""
                        }
                        + if args.stamp_reads { " --stamp-reads" } else { "" }
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
        report
    });
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
        let sliced: u64 = reports.iter().map(|r| r.sliced_snapshots).sum();
        println!(
            "snapshot writes: durable={written} lost_in_crashes={lost} \
             serialized_over_several_turns={sliced}"
        );
    }
    if args.lease {
        let served: u64 = reports.iter().map(|r| r.reads_served).sum();
        let leased: u64 = reports.iter().map(|r| r.reads_leased).sum();
        println!("reads without a log slot: {served}, under a lease: {leased}");
    }
    if args.reads_during_sync {
        let during: u64 = reports.iter().map(|r| r.reads_during_sync).sum();
        println!("reads answered while their leader synced: {during}");
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
    if args.membership {
        let asked: u64 = reports.iter().map(|r| r.membership_asked).sum();
        let chosen: u64 = reports.iter().map(|r| r.membership_chosen).sum();
        let moved = reports
            .iter()
            .filter(|r| r.members_final & sim::MEMBERSHIP_INITIAL == 0)
            .count();
        println!(
            "membership: changes_asked={asked} changes_chosen={chosen} seeds_ending_with_no_initial_member={moved}"
        );
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `--world pb`: the primary/backup world, one seed per job at a time.
fn run_pb(args: &Run) -> ExitCode {
    use synod::sim::pb::{run, PbSimConfig};
    let started = Instant::now();
    let reports: Vec<SimReport> = run_seeds(args, |seed| {
        let mut cfg = PbSimConfig::for_seed(seed, args.replicas);
        cfg.faults = args.faults;
        cfg.membership = args.membership;
        cfg.bugs = args.pb_bugs;
        if args.disk_latency_us > 0 {
            cfg.disk_latency_max = args.disk_latency_us;
        }
        if let Some(secs) = args.fault_secs {
            cfg.fault_phase = secs * 1_000_000;
        }
        let report = run(&cfg);
        if !report.passed() {
            let mut msg = format!(
                        "FAIL seed={seed} world=pb replicas={} — replay: synod-sim --world pb --start-seed {seed} --seeds 1",
                        cfg.replicas
                    );
            if let Some(r) = args.replicas {
                msg.push_str(&format!(" --replicas {r}"));
            }
            if args.disk_latency_us > 0 {
                msg.push_str(&format!(" --disk-latency-us {}", args.disk_latency_us));
            }
            if args.membership {
                msg.push_str(" --membership");
            }
            println!("{}", replay_tail(msg, args, &report.failures));
        } else if args.verbose {
            println!(
                "ok seed={seed} replicas={} ops={} positions={} views={} transfers={} chunks={} chunk_bytes={} crashes={}",
                cfg.replicas,
                report.ops_completed,
                report.slots_chosen,
                report.pb_views,
                report.pb_transfers,
                report.pb_transfer_chunks,
                cfg.transfer_chunk_bytes,
                report.crashes
            );
        }
        report
    });
    let failures = reports.iter().filter(|r| !r.passed()).count();
    println!(
        "seeds={} failures={} world=pb ops_completed={} positions={} views={} transfers={} transfer_chunks={} crashes={} messages={} session_expired={} wall_secs={:.1}",
        reports.len(),
        failures,
        reports.iter().map(|r| r.ops_completed).sum::<u64>(),
        reports.iter().map(|r| r.slots_chosen).sum::<u64>(),
        reports.iter().map(|r| r.pb_views).sum::<u64>(),
        reports.iter().map(|r| r.pb_transfers).sum::<u64>(),
        reports.iter().map(|r| r.pb_transfer_chunks).sum::<u64>(),
        reports.iter().map(|r| r.crashes).sum::<u64>(),
        reports.iter().map(|r| r.messages).sum::<u64>(),
        reports.iter().map(|r| r.session_expired).sum::<u64>(),
        started.elapsed().as_secs_f64(),
    );
    if args.membership {
        // Seeds whose group ended without any of its first servers.
        let moved = reports
            .iter()
            .filter(|r| {
                let first = (1u64 << PbSimConfig::for_seed(r.seed, args.replicas).replicas) - 1;
                r.members_final & first == 0
            })
            .count();
        println!(
            "membership: changes_asked={} changes_made={} seeds_ending_with_no_initial_member={moved}",
            reports.iter().map(|r| r.membership_asked).sum::<u64>(),
            reports.iter().map(|r| r.membership_chosen).sum::<u64>(),
        );
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_sharded(args: &Run) -> ExitCode {
    use synod::sim::sharded::{run_sharded, ShardedConfig, ShardedReport};
    let world = if args.mixed { "mixed" } else { "sharded" };
    let started = Instant::now();
    let reports: Vec<ShardedReport> = run_seeds(args, |seed| {
        let mut cfg = if args.mixed {
            ShardedConfig::mixed(seed)
        } else {
            ShardedConfig::new(seed)
        };
        cfg.pb_bugs = args.pb_bugs.pb;
        cfg.faults = args.faults;
        cfg.bank_accounts = args.bank;
        cfg.append_keys = args.append_keys;
        cfg.txn_ignore_compares = args.txn_ignore_compares;
        cfg.txn_early_release = args.txn_early_release;
        cfg.txn_unlocked_reads = args.txn_unlocked_reads;
        cfg.txn_forget_prepared = args.txn_forget_prepared;
        cfg.bank_one_group = args.bank_one_group;
        cfg.client_deaths = args.client_deaths;
        cfg.bugs.resolve_unlogged = args.txn_resolve_unlogged;
        cfg.lease = args.lease;
        if let Some(secs) = args.fault_secs {
            cfg.fault_phase = secs * 1_000_000;
        }
        let report = run_sharded(&cfg);
        if !report.passed() {
            let mut msg = format!(
                "FAIL seed={seed} world={world} — replay: synod-sim --world {world} --start-seed {seed} --seeds 1"
            );
            if args.lease {
                msg.push_str(" --lease");
            }
            if args.bank > 0 {
                msg.push_str(&format!(" --txn {}", args.bank));
            }
            if args.append_keys > 0 {
                msg.push_str(&format!(" --txn-append {}", args.append_keys));
            }
            if args.bank_one_group {
                msg.push_str(" --txn-one-group");
            }
            if !args.client_deaths && (args.bank > 0 || args.append_keys > 0) {
                msg.push_str(" --txn-no-client-deaths");
            }
            println!("{}", replay_tail(msg, args, &report.failures));
        } else if args.verbose {
            println!(
                "ok seed={seed} ops={} configs={} shards_moved={} chunks={} crashes={}{}",
                report.ops_completed,
                report.configs,
                report.shards_moved,
                report.chunks_received,
                report.crashes,
                if args.mixed {
                    format!(
                        " pb_groups={:?} pb_servers={} pb_views={}",
                        cfg.pb_groups, cfg.pb_servers, report.pb_views
                    )
                } else {
                    String::new()
                }
            );
        }
        report
    });
    let secs = started.elapsed().as_secs_f64();
    let failures = reports.iter().filter(|r| !r.passed()).count();
    println!(
        "seeds={} failures={} world={world} ops_completed={} configs={} shards_moved={} chunks_received={} rotations={} crashes={} stored_value_bytes={} owned_value_bytes={} session_expired={} wall_secs={:.1}",
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
    if args.mixed {
        println!(
            "pb_views={} pb_transfers={} pb_transfer_chunks={} pb_view_replies={} shards_moved_paxos_to_pb={} shards_moved_pb_to_paxos={}",
            reports.iter().map(|r| r.pb_views).sum::<u64>(),
            reports.iter().map(|r| r.pb_transfers).sum::<u64>(),
            reports.iter().map(|r| r.pb_transfer_chunks).sum::<u64>(),
            reports.iter().map(|r| r.pb_view_replies).sum::<u64>(),
            reports.iter().map(|r| r.moved_paxos_to_pb).sum::<u64>(),
            reports.iter().map(|r| r.moved_pb_to_paxos).sum::<u64>(),
        );
    }
    if args.append_keys > 0 {
        println!(
            "elle_txns_committed={} elle_txns_unknown={} elle_dependency_edges={}",
            reports.iter().map(|r| r.elle_committed).sum::<u64>(),
            reports.iter().map(|r| r.elle_unknown).sum::<u64>(),
            reports.iter().map(|r| r.elle_edges).sum::<u64>(),
        );
    }
    if args.bank > 0 || args.append_keys > 0 {
        println!(
            "bank_audits={} bank_transfers_committed={} two_pc_attempts={} two_pc_aborts={} \
             client_deaths={} client_stalls={} txn_resolved_at_coordinator={} \
             coordinator_self_aborts={} commits_lost_to_presumed_abort={}",
            reports.iter().map(|r| r.bank_audits).sum::<u64>(),
            reports.iter().map(|r| r.bank_transfers).sum::<u64>(),
            reports.iter().map(|r| r.two_pc).sum::<u64>(),
            reports.iter().map(|r| r.two_pc_aborts).sum::<u64>(),
            reports.iter().map(|r| r.client_deaths).sum::<u64>(),
            reports.iter().map(|r| r.client_stalls).sum::<u64>(),
            reports.iter().map(|r| r.txn_resolved).sum::<u64>(),
            reports.iter().map(|r| r.txn_self_aborts).sum::<u64>(),
            reports.iter().map(|r| r.presumed_aborts_seen).sum::<u64>(),
        );
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option reads `SYNOD_SIMULATOR_<OPTION>`, never the test
    /// suite's `SYNOD_SIM_*` knobs (README, "Command lines").
    #[test]
    fn every_option_reads_its_synod_simulator_variable() {
        let cmd = Args::command();
        cmd.clone().debug_assert();
        for arg in cmd.get_arguments() {
            let long = arg.get_long().expect("options only");
            let want = format!("SYNOD_SIMULATOR_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(&want)), "--{long}");
        }
    }

    #[test]
    fn bugs_accumulate_and_disk_faults_imply_a_disk_latency() {
        let run = configure(
            Args::try_parse_from([
                "synod-sim",
                "--bug",
                "skip-dedup",
                "--bug=apply-past-hole",
                "--disk-faults",
                "-v",
            ])
            .unwrap(),
        )
        .unwrap();
        assert!(run.bugs.skip_dedup && run.bugs.paxos.apply_past_hole);
        assert_eq!(run.disk_latency_us, 20_000);
        assert!(run.verbose && run.faults && !run.sharded);
        assert!(Args::try_parse_from(["synod-sim", "--bug", "nope"]).is_err());
        let trace = Args::try_parse_from(["synod-sim", "--trace", "t.log"]).unwrap();
        assert!(configure(trace).is_err(), "--trace needs --seeds 1");
    }
}
