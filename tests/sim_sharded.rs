//! The sharded simulator world: the master group plus 3 KV groups of 3
//! replicas, joins, leaves and moves through the master's log while clients
//! run, under drops, duplicates, delays, partitions and crashes. Checked:
//! per-group safety, linearizability across shard moves (each shard sent in
//! several small chunks), exactly-once appends, liveness and convergence
//! after healing, and garbage collection.
//! `SYNOD_SIM_SEEDS` sets the seed count (default 150).

use synod::shardkv::ShardBugs;
use synod::sim::sharded::{run_sharded, ShardedConfig};

fn seeds() -> u64 {
    std::env::var("SYNOD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150)
}

#[test]
fn shards_move_safely_under_faults() {
    let mut failed = Vec::new();
    let mut moved = 0;
    let mut chunks = 0;
    let mut expired = 0;
    let mut rotations = 0;
    for seed in 0..seeds() {
        let r = run_sharded(&ShardedConfig::new(seed));
        moved += r.shards_moved;
        rotations += r.rotations;
        chunks += r.chunks_received;
        expired += r.session_expired;
        if !r.passed() {
            failed.push(format!(
                "seed {seed} (replay: synod-sim --world sharded --start-seed {seed} --seeds 1): {}",
                r.failures.join(" | ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} seeds failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(
        moved > seeds(),
        "only {moved} shard moves: migration is not exercised"
    );
    // Some seeds run with a 200 ms session TTL or a cap of 2 sessions per
    // shard: sessions expire and are evicted across shard moves too.
    assert!(
        expired > 0,
        "no SessionExpired: session expiry is not exercised"
    );
    // Crashed and partitioned source members: pullers move on to another.
    assert!(
        rotations > 0,
        "no puller moved on to another source member: rotation is not exercised"
    );
    // The world's chunk budgets are tiny: most shards take several chunks.
    assert!(
        chunks > 3 * moved / 2,
        "{chunks} chunks for {moved} moves: chunked transfer is not exercised"
    );
}

/// The member a shard is first pulled from crashes with the pull in flight
/// and stays down 5 s; no other fault. The shard arrives while it is down
/// only because the puller moves on to another member of the source group.
#[test]
fn a_pull_outstanding_at_a_crashed_source_member_moves_on() {
    let mut crashed = 0;
    for seed in 0..20 {
        let mut cfg = ShardedConfig::new(seed);
        cfg.faults = false;
        cfg.crash_pulled_member = true;
        let r = run_sharded(&cfg);
        assert!(r.passed(), "seed {seed}: {}", r.failures.join(" | "));
        if r.crashes == 0 {
            continue; // this seed's admin moved no shard between groups
        }
        crashed += 1;
        assert!(
            r.moved_past_crashed_member,
            "seed {seed}: the shard waited for the crashed member ({} rotations)",
            r.rotations
        );
    }
    assert!(crashed >= 10, "only {crashed} seeds pulled a shard");
}

fn caught(bugs: ShardBugs, what: &str) -> String {
    for seed in 0..100 {
        let mut cfg = ShardedConfig::new(seed);
        cfg.bugs = bugs;
        let r = run_sharded(&cfg);
        if !r.passed() {
            return r.failures.join("\n");
        }
    }
    panic!("the planted bug {what:?} went unnoticed for 100 seeds");
}

#[test]
fn planted_serving_unowned_shards_is_caught() {
    caught(
        ShardBugs {
            serve_unowned: true,
            ..ShardBugs::default()
        },
        "serve shards the group does not own",
    );
}

#[test]
fn planted_taking_a_shard_without_its_data_is_caught() {
    caught(
        ShardBugs {
            skip_pull: true,
            ..ShardBugs::default()
        },
        "take over a shard without pulling it",
    );
}

#[test]
fn planted_applying_a_chunk_whatever_its_cursor_is_caught() {
    caught(
        ShardBugs {
            ignore_chunk_cursor: true,
            ..ShardBugs::default()
        },
        "apply duplicate or retried migration chunks again",
    );
}

/// Issue 10: bank transactions (audits and version-guarded transfers on
/// accounts of one shard) run beside the KV workload under every fault and
/// reconfiguration, and every audit sees the initial total.
#[test]
fn bank_transactions_keep_the_total_under_faults_and_moves() {
    let mut failed = Vec::new();
    let (mut audits, mut transfers) = (0, 0);
    for seed in 0..(seeds() / 3).max(1) {
        let mut cfg = ShardedConfig::new(seed);
        cfg.bank_accounts = 4;
        let r = run_sharded(&cfg);
        audits += r.bank_audits;
        transfers += r.bank_transfers;
        if !r.passed() {
            failed.push(format!(
                "seed {seed} (replay: synod-sim --world sharded --txn 4 --start-seed {seed} \
                 --seeds 1): {}",
                r.failures.join(" | ")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(
        audits > 0 && transfers > 0,
        "{audits} audits, {transfers} transfers"
    );
}

/// The planted lost update (a transaction that ignores its compares) is
/// caught by the bank checker on a pinned seed.
#[test]
fn bank_checker_catches_transactions_that_ignore_compares() {
    let mut cfg = ShardedConfig::new(6);
    cfg.bank_accounts = 4;
    cfg.txn_ignore_compares = true;
    let r = run_sharded(&cfg);
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("bank audit saw a total")),
        "planted lost update not caught: {:?}",
        r.failures
    );
}
