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
