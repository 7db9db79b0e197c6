//! The primary/backup world (issue 12): one primary/backup group of 2 or 3
//! replicas with the master's view service, under every fault the world
//! has, with the safety, linearizability, liveness and exactly-once
//! checkers; and the three planted bugs those checkers must catch.
//! `SYNOD_SIM_SEEDS` sets the seeds per replica count of the clean sweep
//! (default 150: 300 in all, a few seconds).

use synod::pb::PbBugs;
use synod::sim::pb::{run, PbSimConfig, PbWorldBugs};
use synod::sim::SimReport;

fn seeds() -> u64 {
    std::env::var("SYNOD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150)
}

fn sweep(replicas: u32) {
    let mut failed = Vec::new();
    for seed in 0..seeds() {
        let report = run(&PbSimConfig::new(seed, replicas));
        if !report.passed() {
            failed.push(format!(
                "seed {seed} (replay: synod-sim --world pb --start-seed {seed} --seeds 1 \
                 --replicas {replicas}): {}",
                report.failures.join(" | ")
            ));
        }
    }
    synod::sim::assert_seeds_passed(&failed);
}

#[test]
fn two_replicas_stay_safe_linearizable_and_live_under_faults() {
    sweep(2);
}

#[test]
fn three_replicas_stay_safe_linearizable_and_live_under_faults() {
    sweep(3);
}

/// Membership changes under every fault: the operator replaces, adds and
/// removes replicas through the master (two spare nodes; a replica that
/// goes is killed for good or left running, removed). The same checkers
/// hold, changes really happen, and some seeds end with none of the
/// group's first servers. (Without the master's refusal to remove the
/// last member known to hold every acknowledged write, 69 of the first
/// 300 seeds of `synod-sim --world pb --membership` stall for good: a
/// mutation checked by hand, ARCHITECTURE.md.)
#[test]
fn membership_changes_stay_safe_linearizable_and_live_under_faults() {
    let (mut made, mut moved) = (0, 0);
    let mut failed = Vec::new();
    for seed in 0..seeds() {
        let mut cfg = PbSimConfig::for_seed(seed, None);
        cfg.membership = true;
        let report = run(&cfg);
        if !report.passed() {
            failed.push(format!(
                "seed {seed} (replay: synod-sim --world pb --membership --start-seed {seed} \
                 --seeds 1): {}",
                report.failures.join(" | ")
            ));
        }
        made += report.membership_chosen;
        let first = (1u64 << cfg.replicas) - 1;
        if report.members_final & first == 0 {
            moved += 1;
        }
    }
    synod::sim::assert_seeds_passed(&failed);
    assert!(
        made > seeds() && moved > 0,
        "{made} changes, {moved} seeds ended on new servers only"
    );
}

/// Regression: a removed primary's late acknowledgement of its view made
/// it alone `safe` and stranded the group (fixed in the view service:
/// a removed replica's ping acknowledges nothing).
#[test]
fn regression_a_removed_primary_cannot_acknowledge_seeds_382_and_1316() {
    for seed in [382, 1316] {
        let mut cfg = PbSimConfig::for_seed(seed, None);
        cfg.membership = true;
        let report = run(&cfg);
        assert!(report.passed(), "seed {seed}: {:?}", report.failures);
        assert!(report.membership_chosen > 0, "seed {seed}: no change made");
    }
}

#[test]
fn a_clean_run_serves_every_request_in_the_first_view() {
    for replicas in [2, 3] {
        let mut cfg = PbSimConfig::new(0, replicas);
        cfg.faults = false;
        let report = run(&cfg);
        assert!(report.passed(), "{:?}", report.failures);
        assert_eq!(report.pb_views, 1, "no fault, no view change");
        assert!(report.ops_completed > 1000, "{report:?}");
    }
}

#[test]
fn faults_change_views_and_transfer_state() {
    // Across a few seeds the faults must exercise what the protocol is
    // about: view changes and state transfers (else the sweeps prove
    // little).
    // Transfers of many chunks too (tiny chunks on most seeds).
    let (mut views, mut transfers, mut chunks, mut crashes) = (0, 0, 0, 0);
    for seed in 0..10 {
        let r = run(&PbSimConfig::for_seed(seed, None));
        assert!(r.passed(), "seed {seed}: {:?}", r.failures);
        views += r.pb_views;
        transfers += r.pb_transfers;
        chunks += r.pb_transfer_chunks;
        crashes += r.crashes;
    }
    assert!(
        views > 20 && transfers > 10 && chunks > 5 * transfers && crashes > 5,
        "{views} {transfers} {chunks} {crashes}"
    );
}

/// Runs `seed` with `bugs` and asserts a checker caught it, with a failure
/// from one of `kinds` (the checker's prefix).
fn caught(seed: u64, bugs: PbWorldBugs, kinds: &[&str]) -> SimReport {
    let mut cfg = PbSimConfig::for_seed(seed, None);
    cfg.bugs = bugs;
    let report = run(&cfg);
    assert!(
        report
            .failures
            .iter()
            .any(|f| kinds.iter().any(|k| f.starts_with(k))),
        "seed {seed}: the planted bug {bugs:?} was not caught: {:?}",
        report.failures
    );
    // The same seed without the bug passes: the failure is the bug's.
    cfg.bugs = PbWorldBugs::default();
    let clean = run(&cfg);
    assert!(
        clean.passed(),
        "seed {seed} fails without the bug: {:?}",
        clean.failures
    );
    report
}

#[test]
fn planted_ack_before_every_backup_has_the_write_is_caught() {
    let bugs = PbWorldBugs {
        pb: PbBugs {
            ack_before_backups: true,
            ..PbBugs::default()
        },
        ..PbWorldBugs::default()
    };
    for seed in ACK_BEFORE_BACKUPS_SEEDS {
        caught(seed, bugs, &["safety", "linearizability", "appends"]);
    }
}

#[test]
fn planted_primary_serving_after_a_newer_view_is_caught() {
    let bugs = PbWorldBugs {
        pb: PbBugs {
            serve_after_newer_view: true,
            ..PbBugs::default()
        },
        ..PbWorldBugs::default()
    };
    for seed in SERVE_AFTER_NEWER_VIEW_SEEDS {
        caught(seed, bugs, &["linearizability"]);
    }
}

#[test]
fn planted_promotion_without_the_latest_writes_is_caught() {
    let bugs = PbWorldBugs {
        promote_any: true,
        ..PbWorldBugs::default()
    };
    for seed in PROMOTE_WITHOUT_LATEST_SEEDS {
        caught(seed, bugs, &["safety", "linearizability", "appends"]);
    }
}

/// The primary's Appends leave before its own sync; a primary that crashed
/// with some out and restarts must not lead the same view again (it asks
/// the view service for a newer one). Planted: it does, and a new entry
/// takes a lost one's (position, view) tag at a backup.
#[test]
fn planted_primary_leading_its_view_again_after_a_restart_is_caught() {
    let bugs = PbWorldBugs {
        pb: PbBugs {
            lead_after_restart: true,
            ..PbBugs::default()
        },
        ..PbWorldBugs::default()
    };
    for seed in LEAD_AFTER_RESTART_SEEDS {
        caught(seed, bugs, &["safety"]);
    }
}

/// Pinned seeds, one with 2 replicas (even) and one with 3 (odd), found
/// by `synod-sim --world pb --bug ...` sweeps; a change to the world's
/// randomness moves them (re-find them with the same sweep). Re-found
/// when state transfer became chunked (the chunk size is drawn per seed,
/// and chunks change every transfer's messages).
const ACK_BEFORE_BACKUPS_SEEDS: [u64; 2] = [2, 1];
const SERVE_AFTER_NEWER_VIEW_SEEDS: [u64; 2] = [2, 11];
const PROMOTE_WITHOUT_LATEST_SEEDS: [u64; 2] = [0, 1];
/// Rarer: 7 of 3,000 seeds (`--bug pb-lead-after-restart`).
const LEAD_AFTER_RESTART_SEEDS: [u64; 2] = [258, 2359];
