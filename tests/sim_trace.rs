//! The simulator's Lamport/vector-clock trace (`synod-sim --trace`): a
//! faulty seed's trace parses as ShiViz input, every receive's clock
//! dominates its send's, clocks on one host only grow, and tracing does
//! not change the run.

use synod::sim::{self, SimConfig};
use synod::trace;

#[test]
fn a_traced_seed_has_consistent_clocks_and_runs_as_untraced() {
    let dir = std::env::temp_dir().join(format!("synod-sim-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for seed in [7u64, 8] {
        let path = dir.join(format!("seed-{seed}.log"));
        let mut cfg = SimConfig::for_seed(seed, None);
        let plain = sim::run(&cfg);
        cfg.trace = Some(path.clone());
        let traced = sim::run(&cfg);
        assert!(traced.passed(), "seed {seed}: {:?}", traced.failures);
        assert_eq!(
            (plain.ops_completed, plain.messages, plain.elections),
            (traced.ops_completed, traced.messages, traced.elections),
            "seed {seed}: tracing changed the run"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let events = trace::parse(&text).expect("the trace parses");
        let pairs = trace::check(&events).expect("the clocks are consistent");
        assert!(
            pairs > 1000,
            "seed {seed}: only {pairs} delivered messages traced"
        );
        let replicas = cfg.replicas as usize;
        for r in 0..replicas {
            assert!(
                events.iter().any(|e| e.host == format!("r{r}")),
                "seed {seed}: replica r{r} never appears"
            );
        }
        // Faults: some sends were never received (drops, cuts, crashes),
        // and some were received twice (duplication).
        let mut received = std::collections::BTreeMap::<u64, usize>::new();
        for e in &events {
            if let Some((false, id)) = e.msg {
                *received.entry(id).or_default() += 1;
            }
        }
        let lost = events
            .iter()
            .filter(|e| matches!(e.msg, Some((true, id)) if !received.contains_key(&id)))
            .count();
        assert!(lost > 0, "seed {seed}: no message was lost under faults");
        assert!(
            received.values().any(|&n| n > 1),
            "seed {seed}: no duplicate delivery under faults"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
