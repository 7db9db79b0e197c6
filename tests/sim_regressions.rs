//! Seeds that once failed, replayed forever. Each names what broke.

use synod::sim::{self, SimConfig};

fn replay(seed: u64, replicas: u32) {
    let r = sim::run(&SimConfig::new(seed, replicas));
    assert!(
        r.passed(),
        "seed {seed} ({replicas} replicas) regressed:\n{}",
        r.failures.join("\n")
    );
}

/// The linearizability search ran out of budget on append-only keys: every
/// order of concurrent appends is a distinct state, so Lowe's memo alone
/// explored factorially many. Fixed by pruning on reads not yet called once
/// no Put is left to linearize.
#[test]
fn append_only_keys_check_within_budget() {
    for (seed, replicas) in [(2573, 5), (5179, 5), (9382, 3), (9368, 3), (9857, 5)] {
        replay(seed, replicas);
    }
}

/// Membership world (`synod-sim --membership`). Seed 36: a leader that
/// removed itself stepped down before the new members learned the change
/// was chosen; their view still counted it, it refused to grant, and no
/// leader was elected (fixed: it hands over once a majority of the new
/// membership acknowledged a commit point past the change, and a
/// non-member grants pre-votes without comparing commit points). Seeds
/// 429, 729, 1671, 1946, 2028, 2463: removed replicas' stale leader hints
/// sent clients back and forth between them until their deadlines (fixed:
/// a removed replica that has not heard a leader lately gives no hint).
#[test]
fn membership_changes_hand_over_and_stop_stale_hints() {
    for seed in [36, 429, 729, 1671, 1946, 2028, 2463] {
        let r = sim::run(&SimConfig::with_membership(seed));
        assert!(
            r.passed(),
            "membership seed {seed} regressed:\n{}",
            r.failures.join("\n")
        );
    }
}
