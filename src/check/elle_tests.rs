//! Hand-built histories for each anomaly the list-append checker names,
//! valid histories it must pass, and a property: serial executions of
//! random transactions always pass.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn key(k: &str) -> Bytes {
    Bytes::copy_from_slice(k.as_bytes())
}

fn ap(k: &str, e: Element) -> MicroOp {
    MicroOp::Append {
        key: key(k),
        element: e,
    }
}

fn rd(k: &str, list: &[Element]) -> MicroOp {
    MicroOp::Read {
        key: key(k),
        list: Some(list.to_vec()),
    }
}

fn txn(client: u64, invoke: u64, complete: u64, ops: Vec<MicroOp>) -> Txn {
    Txn {
        client,
        invoke,
        complete,
        status: Status::Committed,
        ops,
    }
}

fn with(status: Status, mut t: Txn) -> Txn {
    t.status = status;
    if status != Status::Committed {
        for op in &mut t.ops {
            if let MicroOp::Read { list, .. } = op {
                *list = None;
            }
        }
    }
    if status == Status::Unknown {
        t.complete = NEVER;
    }
    t
}

/// Asserts the history has an anomaly of `kind`, whose message mentions
/// every string of `names`.
fn assert_caught(history: &[Txn], kind: AnomalyKind, names: &[&str]) -> Report {
    let r = check(history);
    let found = r
        .anomalies
        .iter()
        .find(|a| a.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} in {:#?}", r.anomalies));
    for n in names {
        assert!(
            found.message.contains(n),
            "{kind:?} message does not name {n:?}: {}",
            found.message
        );
    }
    r
}

fn assert_valid(history: &[Txn]) -> Report {
    let r = check(history);
    assert!(r.valid(), "{}", r.describe(20));
    r
}

#[test]
fn a_serial_history_with_reads_of_own_appends_passes() {
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1), rd("x", &[1]), ap("y", 2)]),
        txn(2, 20, 30, vec![rd("x", &[1]), ap("x", 3), rd("x", &[1, 3])]),
        txn(
            1,
            40,
            50,
            vec![rd("y", &[2]), rd("x", &[1, 3]), rd("z", &[])],
        ),
        // Concurrent with nothing that contradicts it.
        txn(3, 5, 60, vec![ap("z", 4)]),
    ];
    let r = assert_valid(&h);
    assert_eq!(r.in_graph, 4);
    assert!(r.dependency_edges > 0 && r.realtime_edges > 0);
}

#[test]
fn concurrent_transactions_may_serialize_against_real_time_of_neither() {
    // T1 and T2 overlap in time; T2 is serialized first (T1 read y with
    // T2's element, T2 did not see x's): fine, they overlap.
    let h = vec![
        txn(1, 0, 100, vec![ap("x", 1), rd("y", &[2])]),
        txn(2, 10, 90, vec![rd("x", &[]), ap("y", 2)]),
        txn(3, 200, 210, vec![rd("x", &[1]), rd("y", &[2])]),
    ];
    assert_valid(&h);
}

#[test]
fn g0_write_cycle_is_caught() {
    // x's order puts T1 before T2, y's puts T2 before T1.
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1), ap("y", 1)]),
        txn(2, 0, 10, vec![ap("x", 2), ap("y", 2)]),
        txn(3, 20, 30, vec![rd("x", &[1, 2]), rd("y", &[2, 1])]),
    ];
    assert_caught(
        &h,
        AnomalyKind::G0,
        &["T0", "T1", "-ww->", "key x", "key y"],
    );
    assert!(!check(&h).has(AnomalyKind::G1c));
}

#[test]
fn g1a_aborted_read_is_caught() {
    let h = vec![
        with(Status::Aborted, txn(1, 0, 10, vec![ap("x", 1)])),
        txn(2, 20, 30, vec![rd("x", &[1])]),
    ];
    assert_caught(&h, AnomalyKind::G1a, &["T1", "aborted T0", "key x"]);
}

#[test]
fn g1b_intermediate_read_is_caught() {
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1), ap("x", 2)]),
        txn(2, 0, 10, vec![rd("x", &[1])]),
        txn(3, 20, 30, vec![rd("x", &[1, 2])]),
    ];
    assert_caught(&h, AnomalyKind::G1b, &["T1", "T0", "key x"]);
}

#[test]
fn g1c_circular_information_flow_is_caught() {
    // Each reads the other's write.
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1), rd("y", &[2])]),
        txn(2, 0, 10, vec![ap("y", 2), rd("x", &[1])]),
    ];
    let r = assert_caught(&h, AnomalyKind::G1c, &["T0", "T1", "-wr->"]);
    assert!(!r.has(AnomalyKind::G0) && !r.has(AnomalyKind::G2));
}

#[test]
fn g2_write_skew_is_caught() {
    // Both read both keys empty, each appends to one; a later read shows
    // both appends: each should have seen the other's.
    let h = vec![
        txn(1, 0, 10, vec![rd("x", &[]), rd("y", &[]), ap("x", 1)]),
        txn(2, 0, 10, vec![rd("x", &[]), rd("y", &[]), ap("y", 2)]),
        txn(3, 20, 30, vec![rd("x", &[1]), rd("y", &[2])]),
    ];
    assert_caught(&h, AnomalyKind::G2, &["T0", "T1", "-rw->", "empty"]);
}

#[test]
fn lost_update_is_caught_as_g_single() {
    // Both read x empty and append; the order has both.
    let h = vec![
        txn(1, 0, 10, vec![rd("x", &[]), ap("x", 1)]),
        txn(2, 0, 10, vec![rd("x", &[]), ap("x", 2)]),
        txn(3, 20, 30, vec![rd("x", &[1, 2])]),
    ];
    assert_caught(&h, AnomalyKind::GSingle, &["T0", "T1", "-rw->", "-ww->"]);
}

#[test]
fn a_stale_read_after_completion_is_a_real_time_violation() {
    // T1 appended and completed; T2, invoked later, read x empty, yet a
    // later read shows T1's element: serializable (T2 before T1), not
    // strictly serializable.
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1)]),
        txn(2, 20, 30, vec![rd("x", &[])]),
        txn(3, 40, 50, vec![rd("x", &[1])]),
    ];
    let r = assert_caught(
        &h,
        AnomalyKind::RealTime,
        &["T0", "T1", "-realtime->", "-rw->"],
    );
    assert!(!r.has(AnomalyKind::GSingle) && !r.has(AnomalyKind::G2));
    // The same with T2 invoked before T1 completed is fine.
    let mut ok = h.clone();
    ok[1].invoke = 5;
    assert_valid(&ok);
}

#[test]
fn a_real_time_cycle_through_several_transactions_is_caught() {
    // T0 -> T1 -> T2 in real time, but T2's append is read before T0's.
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1)]),
        txn(2, 20, 30, vec![ap("y", 5)]),
        txn(3, 40, 50, vec![ap("x", 2)]),
        txn(4, 60, 70, vec![rd("x", &[2, 1]), rd("y", &[5])]),
    ];
    assert_caught(&h, AnomalyKind::RealTime, &["T0", "T2", "-ww->"]);
}

#[test]
fn an_acknowledged_append_missing_from_a_later_read_is_lost() {
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1)]),
        txn(2, 20, 30, vec![rd("x", &[])]),
    ];
    assert_caught(&h, AnomalyKind::LostAppend, &["T0", "T1", "key x"]);
    // Not lost if the read overlapped the append.
    let mut ok = h.clone();
    ok[1].invoke = 5;
    assert_valid(&ok);
}

#[test]
fn incompatible_orders_are_caught() {
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1)]),
        txn(2, 0, 10, vec![ap("x", 2)]),
        txn(3, 20, 30, vec![rd("x", &[1, 2])]),
        txn(4, 20, 30, vec![rd("x", &[2, 1])]),
    ];
    assert_caught(&h, AnomalyKind::IncompatibleOrder, &["key x", "T2", "T3"]);
}

#[test]
fn duplicates_and_garbage_are_caught() {
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1)]),
        txn(2, 20, 30, vec![rd("x", &[1, 1])]),
    ];
    assert_caught(&h, AnomalyKind::Duplicate, &["element 1", "key x"]);
    let h = vec![txn(2, 20, 30, vec![rd("x", &[9])])];
    assert_caught(&h, AnomalyKind::GarbageRead, &["element 9", "key x"]);
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1)]),
        txn(2, 0, 10, vec![ap("x", 1)]),
    ];
    assert_caught(&h, AnomalyKind::InvalidHistory, &["element 1", "twice"]);
}

#[test]
fn internal_inconsistency_is_caught() {
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1)]),
        txn(2, 20, 30, vec![rd("x", &[1]), ap("x", 2), rd("x", &[1])]),
    ];
    assert_caught(&h, AnomalyKind::Internal, &["T1", "[1, 2]"]);
    // A read after an own append must end with it.
    let h = vec![txn(2, 20, 30, vec![ap("x", 2), rd("x", &[])])];
    assert_caught(&h, AnomalyKind::Internal, &["T0", "ending in [2]"]);
}

#[test]
fn torn_appends_are_caught() {
    // T0's two appends to x with T1's between them.
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1), ap("x", 3)]),
        txn(2, 0, 10, vec![ap("x", 2)]),
        txn(3, 20, 30, vec![rd("x", &[1, 2, 3])]),
    ];
    let r = assert_caught(&h, AnomalyKind::NonAtomicAppends, &["T0", "key x"]);
    assert!(r.has(AnomalyKind::G0), "{}", r.describe(9));
    // Only the second of T0's appends visible.
    let h = vec![
        txn(1, 0, 10, vec![ap("x", 1), ap("x", 3)]),
        txn(3, 20, 30, vec![rd("x", &[3])]),
    ];
    assert_caught(&h, AnomalyKind::NonAtomicAppends, &["T0"]);
}

#[test]
fn unknown_outcomes_join_the_graph_only_when_observed() {
    // Never observed: left out, nothing to check (its read saw nothing).
    let h = vec![
        with(
            Status::Unknown,
            txn(1, 0, 10, vec![ap("x", 1), rd("y", &[])]),
        ),
        txn(2, 20, 30, vec![rd("x", &[])]),
    ];
    let r = assert_valid(&h);
    assert_eq!(r.in_graph, 1);
    // Observed: it committed, and takes part in cycles (here it was
    // observed out of real-time order: T2 completed before it was
    // invoked, yet its element is before T2's).
    let h = vec![
        txn(2, 0, 10, vec![ap("x", 2)]),
        with(Status::Unknown, txn(1, 20, 30, vec![ap("x", 1)])),
        txn(3, 40, 50, vec![rd("x", &[1, 2])]),
    ];
    let r = assert_caught(&h, AnomalyKind::RealTime, &["T1 (client 1, Unknown"]);
    assert_eq!(r.in_graph, 3);
}

#[test]
fn an_unknown_outcome_has_no_outgoing_real_time_edge() {
    // Its element is read by a transaction invoked "after" its (absent)
    // completion; nothing orders it before anything in real time.
    let h = vec![
        with(Status::Unknown, txn(1, 0, 10, vec![ap("x", 1)])),
        txn(2, 20, 30, vec![rd("x", &[])]),
        txn(3, 40, 50, vec![rd("x", &[1])]),
    ];
    assert_valid(&h);
}

#[test]
fn a_long_serial_history_is_checked_in_linear_time() {
    // 100,000 transactions on 10 keys, each reading a key and appending
    // to another; serial, so valid.
    // Keys are renamed every 1,000 transactions so lists stay short (a
    // read returns the whole list, and the cost under test is the graph's).
    let mut lists: Vec<Vec<Element>> = vec![Vec::new(); 10];
    let mut h = Vec::new();
    for i in 0..100_000u64 {
        if i % 1000 == 0 {
            lists.iter_mut().for_each(Vec::clear);
        }
        let (r, w) = ((i % 10) as usize, ((i * 7 + 3) % 10) as usize);
        let chunk = i / 1000;
        let ops = vec![
            rd(&format!("k{r}-{chunk}"), &lists[r]),
            ap(&format!("k{w}-{chunk}"), i),
        ];
        lists[w].push(i);
        h.push(txn(i % 7, 10 * i, 10 * i + 5, ops));
    }
    let started = std::time::Instant::now();
    let r = assert_valid(&h);
    assert_eq!(r.in_graph, 100_000);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// A random transaction: 1-4 ops on 4 keys, appends with fresh elements.
fn random_txn() -> impl Strategy<Value = Vec<(bool, u8)>> {
    proptest::collection::vec((any::<bool>(), 0u8..4), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]
    /// Transactions run one after another on a model store (some
    /// aborted, some of unknown outcome whether or not they applied, some
    /// overlapping their neighbours in time without changing the serial
    /// order's consistency), in any order of the input: always valid.
    #[test]
    fn serial_executions_always_pass(
        txns in proptest::collection::vec((random_txn(), 0u8..10, any::<bool>()), 1..60),
        rotate in 0usize..60,
    ) {
        let mut store: Vec<Vec<Element>> = vec![Vec::new(); 4];
        let mut history = Vec::new();
        let mut next = 0;
        for (i, (ops, fate, applies)) in txns.iter().enumerate() {
            let (status, applies) = match fate {
                0 => (Status::Aborted, false),
                1 => (Status::Unknown, *applies),
                _ => (Status::Committed, true),
            };
            let mut scratch = store.clone();
            let mut recorded = Vec::new();
            for (append, k) in ops {
                let k = *k as usize;
                let name = format!("k{k}");
                if *append {
                    next += 1;
                    scratch[k].push(next);
                    recorded.push(ap(&name, next));
                } else {
                    recorded.push(rd(&name, &scratch[k]));
                }
            }
            if applies {
                store = scratch;
            }
            let t = 100 * i as u64;
            history.push(with(status, txn(i as u64 % 3, t, t + 50, recorded)));
        }
        let final_reads: Vec<MicroOp> = (0..4).map(|k| rd(&format!("k{k}"), &store[k])).collect();
        let end = 100 * txns.len() as u64;
        history.push(txn(9, end, end + 10, final_reads));
        let at = rotate % history.len();
        history.rotate_left(at);
        let r = check(&history);
        prop_assert!(r.valid(), "{}", r.describe(20));
    }
}
