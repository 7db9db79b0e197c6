//! The deterministic simulator over many seeds, with every fault kind on and
//! every checker running. `SYNOD_SIM_SEEDS` sets the seeds per replica count
//! (default 250: 500 in all across 3 and 5 replicas).

use synod::sim::{self, Bugs, SimConfig, SimReport};

fn seeds() -> u64 {
    std::env::var("SYNOD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(250)
}

fn sweep(replicas: u32, start: u64, count: u64) {
    sweep_with(replicas, start, count, 0);
}

/// `disk_latency_us` > 0: slow disks (`SimConfig::disk_latency_max`).
fn sweep_with(replicas: u32, start: u64, count: u64, disk_latency_us: u64) {
    sweep_cfg(
        replicas,
        start,
        count,
        &format!("--disk-latency-us {disk_latency_us}"),
        |cfg| cfg.disk_latency_max = disk_latency_us,
    );
}

/// Runs `count` seeds from `start`, each `SimConfig::new(seed, replicas)`
/// changed by `tweak`; a failure names its replay command (`replay_flags`
/// are the synod-sim flags that make the same change).
fn sweep_cfg(
    replicas: u32,
    start: u64,
    count: u64,
    replay_flags: &str,
    tweak: impl Fn(&mut SimConfig),
) {
    let mut failed = Vec::new();
    for seed in start..start + count {
        let mut cfg = SimConfig::new(seed, replicas);
        tweak(&mut cfg);
        let report = sim::run(&cfg);
        if !report.passed() {
            failed.push(format!(
                "seed {seed} (replay: synod-sim --start-seed {seed} --seeds 1 --replicas {replicas} {replay_flags}): {}",
                report.failures.join(" | ")
            ));
        }
    }
    synod::sim::assert_seeds_passed(&failed);
}

#[test]
fn three_replicas_stay_safe_linearizable_and_live_under_faults() {
    sweep(3, 0, seeds());
}

#[test]
fn five_replicas_stay_safe_linearizable_and_live_under_faults() {
    sweep(5, 1_000_000, seeds());
}

/// Syncs that take up to 20 ms of virtual time: the leader's Accepts leave
/// before its own records are durable, and crashes land mid-sync (losing
/// those records), often on a syncing follower and the leader together.
#[test]
fn slow_disks_with_early_accepts_stay_safe_and_linearizable() {
    sweep_with(3, 2_000_000, seeds() / 2, 20_000);
    sweep_with(5, 3_000_000, seeds() / 4, 20_000);
}

/// Disk faults (`sim/disk.rs`) on slow disks: crashes mid-sync leave torn
/// prefixes of the sync's WAL bytes (sometimes garbage) that the WAL's own
/// recovery reads back, so restarted nodes remember some records they never
/// acknowledged; every restart checks that a flipped bit in the synced log
/// is refused. Checkers on; both faults must actually happen.
#[test]
fn torn_syncs_and_bit_flips_stay_safe_and_are_read_back_right() {
    let (mut torn, mut flips) = (0, 0);
    let mut failed = Vec::new();
    for (replicas, start, count) in [(3, 7_000_000, seeds() / 4), (5, 8_000_000, seeds() / 8)] {
        for seed in start..start + count {
            let mut cfg = SimConfig::new(seed, replicas);
            cfg.disk_latency_max = 20_000;
            cfg.disk_faults = true;
            let r = sim::run(&cfg);
            torn += r.torn_syncs;
            flips += r.flips_refused;
            if !r.passed() {
                failed.push(format!(
                    "seed {seed} (replay: synod-sim --start-seed {seed} --seeds 1 --replicas {replicas} --disk-faults): {}",
                    r.failures.join(" | ")
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(
        torn > 0 && flips > 0,
        "torn syncs {torn}, flips refused {flips}"
    );
}

/// What the slow-disk model is for: an acceptor that acknowledges before
/// its record is durable loses a counted vote in a crash, and a slot is
/// decided twice. Pinned seeds (re-picked whenever a change moves the
/// simulated trajectories: the session core's pipelining clients, the
/// single-group world on ShardKv, pre-vote, acceptors no longer rewriting
/// an entry they hold, per-key versions in the KV snapshot, snapshots
/// written off the loop and durable later (issue 15), request prints in
/// cached replies (issue 9), a replaced snapshot kept for the peer
/// downloading it, chosen batches answered before the leader's own sync
/// (issue 15); the first four of 0..1,500 that catch it): each fails
/// with the bug and passes without it.
#[test]
fn planted_accepted_before_sync_is_caught_on_slow_disks() {
    for seed in [30, 60, 257, 319] {
        let mut cfg = SimConfig::new(seed, 3);
        cfg.disk_latency_max = 20_000;
        assert!(sim::run(&cfg).passed(), "seed {seed} fails without the bug");
        cfg.bugs.paxos.accepted_before_sync = true;
        cfg.bugs.paxos.disruptive_rejoin = true;
        let r = sim::run(&cfg);
        assert!(
            r.failures
                .iter()
                .any(|f| f.contains("safety") || f.contains("linearizab")),
            "seed {seed}: the planted bug went unnoticed: {:?}",
            r.failures
        );
    }
}

#[test]
fn a_clean_network_batches_many_commands_per_slot() {
    let mut cfg = SimConfig::new(7, 3);
    cfg.faults = false;
    cfg.clients = 100;
    // Spread the load: 100 clients on 3 keys would overlap ~100 ops per key,
    // past what the linearizability search can settle in its budget.
    cfg.mixed_keys = 500;
    cfg.append_keys = 20;
    let r = sim::run(&cfg);
    assert!(r.passed(), "{:?}", r.failures);
    assert!(r.ops_completed > 1000, "only {} ops", r.ops_completed);
    let avg = r.commands_chosen as f64 / r.slots_chosen as f64;
    assert!(
        avg > 2.0,
        "average batch {avg:.2}: batching is not happening"
    );
}

#[test]
fn a_seed_replays_exactly() {
    let a = sim::run(&SimConfig::new(4242, 5));
    let b = sim::run(&SimConfig::new(4242, 5));
    let figures = |r: &SimReport| {
        (
            r.slots_chosen,
            r.commands_chosen,
            r.ops_completed,
            r.elections,
            r.crashes,
            r.messages,
            r.failures.clone(),
        )
    };
    assert_eq!(figures(&a), figures(&b));
}

/// Planted bugs that need competing proposers (a vote lost in a crash, a
/// takeover's read, an Accept below a promise) run with
/// `disruptive_rejoin` as well: without pre-vote every rejoin starts a
/// rival leadership, the eager churn these seeds were pinned under (the
/// schedule replays exactly as before issue 14). Pre-vote is a liveness
/// rule, so any interleaving it prevents is still one Paxos must survive.
///
/// Run seeds with a planted bug until a checker reports it.
fn caught(bugs: Bugs, what: &str) -> String {
    for seed in 0..300 {
        let mut cfg = SimConfig::for_seed(seed, None);
        cfg.bugs = bugs;
        let r = sim::run(&cfg);
        if !r.passed() {
            return r.failures.join("\n");
        }
    }
    panic!("the planted bug {what:?} went unnoticed for 300 seeds");
}

/// A third of the seeds run with a 200 ms session TTL (and a sixth with a
/// cap of 2 sessions per shard): sessions expire and are evicted while
/// clients retry through faults, and every checker (exactly-once appends,
/// linearizability with SessionExpired as an unknown outcome) still passes.
#[test]
fn sessions_expire_and_are_evicted_under_faults_without_a_double_apply() {
    let mut failed = Vec::new();
    let mut expired = 0;
    for seed in (0..seeds() / 3).map(|i| 3 * i + 2) {
        let cfg = SimConfig::for_seed(seed, None);
        assert_eq!(cfg.session_ttl_ms, 200);
        let r = sim::run(&cfg);
        expired += r.session_expired;
        if !r.passed() {
            failed.push(format!("seed {seed}: {}", r.failures.join(" | ")));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(
        expired > 10,
        "only {expired} SessionExpired: expiry is not exercised"
    );
}

/// Dropping a session without raising its shard's floor lets a delayed
/// duplicate open a new session and apply again: the checkers see it.
#[test]
fn planted_forget_floor_is_caught() {
    let f = caught(
        Bugs {
            forget_floor: true,
            ..Bugs::default()
        },
        "drop sessions without raising the floor",
    );
    assert!(
        f.contains("appears 2 times") || f.contains("linearizab"),
        "{f}"
    );
}

#[test]
fn planted_skip_dedup_is_caught() {
    let f = caught(
        Bugs {
            skip_dedup: true,
            ..Bugs::default()
        },
        "skip the dedup check",
    );
    assert!(f.contains("appends") || f.contains("linearizab"), "{f}");
}

#[test]
fn planted_follower_reads_are_caught() {
    let mut bugs = Bugs::default();
    bugs.replica.follower_reads = true;
    let f = caught(bugs, "answer Get from a follower's state");
    assert!(f.contains("linearizab"), "{f}");
}

/// Read-index without its quorum round: a leader that was deposed (and does
/// not know it yet) answers from stale state. Rare in random runs (8 of
/// 1,000 seeds; 5 of 1,000 once chosen batches were answered before the
/// leader's own sync, none of them below 300), so the seeds that caught it
/// are pinned: the first two of 0..1,000, each failing with the bug and
/// passing without it.
#[test]
fn planted_unconfirmed_leader_reads_are_caught() {
    for seed in [331, 418] {
        let mut cfg = SimConfig::for_seed(seed, None);
        assert!(sim::run(&cfg).passed(), "seed {seed} fails without the bug");
        cfg.bugs.replica.unconfirmed_leader_reads = true;
        let r = sim::run(&cfg);
        assert!(
            r.failures.iter().any(|f| f.contains("linearizab")),
            "seed {seed}: the planted bug went unnoticed: {:?}",
            r.failures
        );
    }
}

/// A new leader's commit point may lag what earlier leaders chose until its
/// re-proposals are chosen; read-index must wait for those slots. Rare in
/// random runs (29 of 3,000 seeds with the pipelining clients of issue 9; 5
/// of 2,000 before), so the seeds that caught it are pinned (re-picked when
/// snapshots became asynchronous, issue 15, when cached replies began
/// to carry request prints, issue 9, and when chosen batches were answered
/// before the leader's own sync, issue 15: the first two of 0..3,000):
/// each fails with the bug and passes without it.
#[test]
fn planted_read_index_skipping_takeover_is_caught() {
    for seed in [15, 202] {
        let mut cfg = SimConfig::new(seed, 3);
        assert!(sim::run(&cfg).passed(), "seed {seed} fails without the bug");
        cfg.bugs.paxos.read_index_skips_takeover = true;
        cfg.bugs.paxos.disruptive_rejoin = true;
        let r = sim::run(&cfg);
        assert!(
            r.failures.iter().any(|f| f.contains("linearizab")),
            "seed {seed}: the planted bug went unnoticed: {:?}",
            r.failures
        );
    }
}

#[test]
fn planted_accept_without_promise_check_is_caught() {
    let mut bugs = Bugs::default();
    bugs.paxos.accept_ignores_promise = true;
    bugs.paxos.disruptive_rejoin = true;
    caught(bugs, "accept without checking the promised ballot");
}

#[test]
fn planted_apply_past_hole_is_caught() {
    let mut bugs = Bugs::default();
    bugs.paxos.apply_past_hole = true;
    caught(bugs, "apply past a hole");
}

/// Regression: Byzantine input together with slow disks livelocked about
/// 3% of seeds (9 of 300 from 6,000,000; these three among them). The
/// leader resent Accepts for slots whose acks were late, every acceptor
/// wrote the same `Accepted` record again for every resend, and with one
/// sync per event on a 20 ms disk the resends arrived faster than the
/// disk took them: the acceptors' queues grew without bound (over 300
/// events), their acks described a commit point seconds old, so the leader
/// kept resending and the group stopped. Forged input only moved the
/// trajectories there. Fixed in the acceptor: an entry already held in the
/// Accept's ballot is acked again but not written again
/// (`paxos::tests::a_resent_accept_is_acked_without_a_second_record`).
#[test]
fn byzantine_input_on_slow_disks_does_not_livelock() {
    let mut failed = Vec::new();
    for seed in [6_000_016, 6_000_036, 6_000_047] {
        let mut cfg = SimConfig::new(seed, 3);
        cfg.byzantine = true;
        cfg.disk_latency_max = 20_000;
        cfg.page_bytes = 64;
        let report = sim::run(&cfg);
        if !report.passed() {
            failed.push(format!("seed {seed}: {}", report.failures.join(" | ")));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Byzantine-input mode (issue 8): forged out-of-range ballots and slots,
/// unsolicited catch-up answers and snapshot chunks, garbage snapshots and
/// Promises for ballots never proposed are stepped into the replicas through
/// the fault phase. Nothing panics, and safety, linearizability, liveness
/// and exactly-once still hold. A tenth of the usual seeds per
/// configuration (a few seconds), one of them on slow disks with tiny pages
/// (where the old livelock lived).
#[test]
fn byzantine_input_is_refused_and_checkers_hold() {
    let count = (seeds() / 10).max(4);
    let mut failed = Vec::new();
    let mut forged = 0;
    for (replicas, start, disk, pages) in [
        (3, 4_000_000, 0, 4 << 20),
        (5, 5_000_000, 0, 64),
        (3, 6_000_000, 20_000, 64),
    ] {
        for seed in start..start + count {
            let mut cfg = SimConfig::new(seed, replicas);
            cfg.byzantine = true;
            cfg.disk_latency_max = disk;
            cfg.page_bytes = pages;
            let report = sim::run(&cfg);
            forged += report.forged;
            if !report.passed() {
                failed.push(format!(
                    "seed {seed} (replay: synod-sim --byzantine --start-seed {seed} --seeds 1 --replicas {replicas} --disk-latency-us {disk} --page-bytes {pages}): {}",
                    report.failures.join(" | ")
                ));
            }
        }
    }
    synod::sim::assert_seeds_passed(&failed);
    assert!(forged > 300 * count, "only {forged} forged messages");
}

/// Pages of 64 bytes: nearly every Promise, Accept and catch-up response
/// with an entry is paged, under every fault (issue 8, finding 13: a
/// candidate must still collect every accepted entry of a quorum).
#[test]
fn tiny_pages_keep_every_checker_green() {
    let count = (seeds() / 10).max(4);
    let mut failed = Vec::new();
    for (replicas, start) in [(3, 7_000_000), (5, 8_000_000)] {
        for seed in start..start + count {
            let mut cfg = SimConfig::new(seed, replicas);
            cfg.page_bytes = 64;
            let report = sim::run(&cfg);
            if !report.passed() {
                failed.push(format!(
                    "seed {seed} (replay: synod-sim --page-bytes 64 --start-seed {seed} --seeds 1 --replicas {replicas}): {}",
                    report.failures.join(" | ")
                ));
            }
        }
    }
    synod::sim::assert_seeds_passed(&failed);
}

/// Reads sent through the log behind a fresh clock stamp when one is due
/// (`stamp_reads`, what the runtime does so expired keys read as absent in
/// an idle store) keep every checker green under faults.
#[test]
fn reads_behind_fresh_clock_stamps_keep_every_checker_green() {
    let count = (seeds() / 10).max(4);
    for (replicas, start) in [(3, 9_000_000), (5, 9_500_000)] {
        sweep_cfg(replicas, start, count, "--stamp-reads", |cfg| {
            cfg.stamp_reads = true
        });
    }
}

/// Read leases, the server's default read path, on drifting clocks
/// (`SimConfig::lease`: each replica's clock up to 2.4% fast or slow, its
/// ticks by it), under every fault with every checker on; a fifth of the
/// usual seeds per replica count, and as many on slow disks (a leader
/// stalled on its sync serves reads only by a lease still valid at its
/// clock when it resumes).
#[test]
fn read_leases_on_drifting_clocks_stay_linearizable_under_faults() {
    let count = (seeds() / 5).max(4);
    for (replicas, start) in [(3, 12_000_000), (5, 12_500_000)] {
        sweep_cfg(replicas, start, count, "--lease", |cfg| cfg.lease = true);
        sweep_cfg(
            replicas,
            start + 100_000,
            count,
            "--lease --disk-latency-us 20000",
            |cfg| {
                cfg.lease = true;
                cfg.disk_latency_max = 20_000;
            },
        );
    }
}

/// What the runtime does with read leases: while a node waits for its
/// sync, it answers the leased reads its leader can answer at once
/// (`Replica::read_now`, `SimConfig::reads_during_sync`) and holds every
/// other event until the sync is done; on slow disks, so syncs are long,
/// with every fault and checker on. The sweep must answer reads that way,
/// or it proves nothing about them.
#[test]
fn reads_answered_while_a_sync_is_out_stay_linearizable_under_faults() {
    let count = (seeds() / 5).max(4);
    let mut answered = 0;
    for (replicas, start) in [(3, 13_000_000), (5, 13_500_000)] {
        let mut failed = Vec::new();
        for seed in start..start + count {
            let mut cfg = SimConfig::new(seed, replicas);
            cfg.lease = true;
            cfg.disk_latency_max = 20_000;
            cfg.reads_during_sync = true;
            let report = sim::run(&cfg);
            answered += report.reads_during_sync;
            if !report.passed() {
                failed.push(format!(
                    "seed {seed} (replay: synod-sim --start-seed {seed} --seeds 1 --replicas {replicas} --lease --disk-latency-us 20000 --reads-during-sync): {}",
                    report.failures.join(" | ")
                ));
            }
        }
        synod::sim::assert_seeds_passed(&failed);
    }
    assert!(answered > 0, "no read was answered during a sync");
}

/// A lease that outlives the followers' guard (`lease_outlives_guard`)
/// lets a leader cut off from its followers answer reads after a rival
/// was elected and took writes. The window is narrow (the rival must win
/// before the old leader's check-quorum steps it down), so pinned seeds
/// (3 of the first 1,000 of `synod-sim --lease`): each fails with the bug
/// and passes without it.
#[test]
fn planted_lease_outliving_the_guard_is_caught() {
    for (seed, replicas) in [(598, 3), (229, 5)] {
        let mut cfg = SimConfig::new(seed, replicas);
        cfg.lease = true;
        assert!(sim::run(&cfg).passed(), "seed {seed} fails without the bug");
        cfg.bugs.paxos.lease_outlives_guard = true;
        let r = sim::run(&cfg);
        assert!(
            r.failures.iter().any(|f| f.contains("linearizab")),
            "seed {seed}: the planted bug went unnoticed: {:?}",
            r.failures
        );
    }
}

/// Membership changes (`paxos/members.rs`): the group starts as {0, 1, 2}
/// of six ids and the leader is asked every few hundred ms to add or
/// remove one replica, so replacements chain (sometimes until no first
/// member is left) under drops, duplicates, partitions, swizzle-clogs,
/// crashes and restarts, with every checker on. Half the usual seed count:
/// each seed is a six-node world.
#[test]
fn membership_changes_stay_safe_linearizable_and_live_under_faults() {
    let count = (seeds() / 2).max(1);
    let mut failed = Vec::new();
    let mut chosen = 0;
    for seed in 0..count {
        let report = sim::run(&SimConfig::with_membership(seed));
        chosen += report.membership_chosen;
        if !report.passed() {
            failed.push(format!(
                "seed {seed} (replay: synod-sim --membership --start-seed {seed} --seeds 1): {}",
                report.failures.join(" | ")
            ));
        }
    }
    synod::sim::assert_seeds_passed(&failed);
    assert!(
        chosen >= count,
        "only {chosen} membership changes chosen in {count} seeds"
    );
}

/// The planted unsafe change: the whole group switched to a disjoint set
/// at once, counted by the new majority alone, candidates asking only the
/// membership at their commit point. An old and a new majority decide
/// slot 91 of seed 5 apart, and the safety checker says so (re-picked
/// whenever a change moves the simulated trajectories: last, a replaced
/// snapshot kept for the peer downloading it).
#[test]
fn planted_membership_switch_at_once_is_caught() {
    let mut cfg = SimConfig::with_membership(5);
    cfg.bugs.paxos.membership_switches_at_once = true;
    let report = sim::run(&cfg);
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("safety: slot 91 decided twice")),
        "the planted switch went unnoticed: {:?}",
        report.failures
    );
}

/// Issue 13's replacement, in the simulator: member 0 crashes for good at
/// 1 s and the operator replaces it (a replica that was never a member is
/// added, catches up by snapshot and counts, then 0 is removed); member 1
/// crashes for good at 4 s and is replaced the same way. The group serves
/// throughout on what is left, with every checker on.
#[test]
fn a_crashed_member_is_replaced_by_a_fresh_replica_and_the_group_survives_another_crash() {
    for seed in 0..4 {
        let mut cfg = SimConfig::with_membership(seed);
        cfg.faults = false;
        cfg.replace_down_members = true;
        cfg.crashes_at = vec![(1_000_000, 0), (4_000_000, 1)];
        let r = sim::run(&cfg);
        assert!(r.passed(), "seed {seed}: {}", r.failures.join("\n"));
        assert_eq!(
            (r.members_final & 0b011, r.members_final.count_ones()),
            (0, 3),
            "seed {seed}: 0 and 1 replaced, three members: {:#x}",
            r.members_final
        );
        assert!(
            r.membership_chosen >= 4,
            "seed {seed}: two adds, two removes"
        );
        assert!(
            r.snapshots_installed > 0,
            "seed {seed}: new members caught up by snapshot"
        );
    }
}
