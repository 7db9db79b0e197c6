//! Tests of the key/value checker: hand-written histories with known
//! answers, randomized histories from real sequential executions (valid,
//! then corrupted), a cross-check of the fast model against the reference
//! model, and scale and budget tests.

use std::time::Instant;

use super::*;
use crate::check::linearizability::check;
use crate::rng::Rng;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn op(client: u64, key: &str, input: KvInput, output: KvOutput, call: u64, ret: u64) -> KvOp {
    KvOp {
        client,
        key: b(key),
        input,
        output,
        call,
        ret,
    }
}

fn get(c: u64, k: &str, v: Option<&str>, call: u64, ret: u64) -> KvOp {
    op(c, k, KvInput::Get, KvOutput::Value(v.map(b)), call, ret)
}

fn put(c: u64, k: &str, v: &str, call: u64, ret: u64) -> KvOp {
    op(c, k, KvInput::Put(b(v)), KvOutput::Ok, call, ret)
}

fn append(c: u64, k: &str, v: &str, call: u64, ret: u64) -> KvOp {
    op(c, k, KvInput::Append(b(v)), KvOutput::Ok, call, ret)
}

fn unknown(mut o: KvOp) -> KvOp {
    o.output = KvOutput::Unknown;
    o.ret = u64::MAX;
    o
}

fn run(history: &[KvOp]) -> CheckResult {
    check_kv(history, &CheckOptions::default())
}

#[track_caller]
fn assert_ok(history: &[KvOp]) {
    let r = run(history);
    assert!(r.is_ok(), "expected linearizable, got {r:#?}");
}

#[track_caller]
fn assert_violation(history: &[KvOp]) -> String {
    match run(history) {
        CheckResult::NotLinearizable { detail, .. } => detail,
        r => panic!("expected NotLinearizable, got {r:#?}"),
    }
}

// --- sequential histories ---------------------------------------------------

#[test]
fn empty_history_is_linearizable() {
    assert_ok(&[]);
}

#[test]
fn sequential_put_get_append_is_linearizable() {
    assert_ok(&[
        get(1, "k", None, 0, 1),
        put(1, "k", "x", 2, 3),
        get(1, "k", Some("x"), 4, 5),
        append(1, "k", "y", 6, 7),
        get(1, "k", Some("xy"), 8, 9),
    ]);
}

#[test]
fn sequential_get_of_value_never_written_is_a_violation() {
    assert_violation(&[put(1, "k", "x", 0, 1), get(1, "k", Some("z"), 2, 3)]);
}

#[test]
fn sequential_stale_read_after_completed_put_is_a_violation() {
    let detail = assert_violation(&[
        put(1, "k", "x", 0, 10),
        put(2, "k", "y", 20, 30),
        get(3, "k", Some("x"), 40, 50),
    ]);
    // The report lists the ops and the prefix that did linearize.
    assert!(
        detail.contains("longest linearizable prefix 2 ops"),
        "{detail}"
    );
    assert!(detail.contains("Put(b\"y\")"), "{detail}");
}

#[test]
fn append_to_missing_key_creates_it() {
    assert_ok(&[append(1, "k", "a", 0, 1), get(1, "k", Some("a"), 2, 3)]);
    assert_violation(&[append(1, "k", "a", 0, 1), get(1, "k", None, 2, 3)]);
}

#[test]
fn empty_value_differs_from_no_key() {
    assert_ok(&[put(1, "k", "", 0, 1), get(1, "k", Some(""), 2, 3)]);
    assert_violation(&[put(1, "k", "", 0, 1), get(1, "k", None, 2, 3)]);
    // Appending nothing still creates the key.
    assert_ok(&[append(1, "k", "", 0, 1), get(1, "k", Some(""), 2, 3)]);
}

// --- concurrent histories ---------------------------------------------------

#[test]
fn reads_overlapping_a_put_may_see_old_or_new() {
    assert_ok(&[put(1, "k", "x", 0, 10), get(2, "k", None, 5, 15)]);
    assert_ok(&[put(1, "k", "x", 0, 10), get(2, "k", Some("x"), 5, 15)]);
}

#[test]
fn reads_seeing_concurrent_puts_in_inconsistent_orders_are_a_violation() {
    // After both Puts complete the value is fixed: x then y is impossible.
    assert_violation(&[
        put(1, "k", "x", 0, 10),
        put(2, "k", "y", 0, 10),
        get(3, "k", Some("x"), 11, 12),
        get(4, "k", Some("y"), 13, 14),
    ]);
    // During them, x, y, x would need x written twice.
    assert_violation(&[
        put(1, "k", "x", 0, 100),
        put(2, "k", "y", 0, 100),
        get(3, "k", Some("x"), 10, 20),
        get(3, "k", Some("y"), 30, 40),
        get(3, "k", Some("x"), 50, 60),
    ]);
    // x then y during them is fine.
    assert_ok(&[
        put(1, "k", "x", 0, 100),
        put(2, "k", "y", 0, 100),
        get(3, "k", Some("x"), 10, 20),
        get(4, "k", Some("y"), 30, 40),
        get(3, "k", Some("y"), 101, 102),
    ]);
}

#[test]
fn concurrent_reads_may_disagree_only_if_they_overlap_the_write() {
    // Two concurrent reads of one write: one sees it, one does not.
    assert_ok(&[
        put(1, "k", "x", 0, 100),
        get(2, "k", Some("x"), 10, 20),
        get(3, "k", None, 10, 20),
    ]);
    // A read that starts after another read saw x cannot miss it.
    assert_violation(&[
        put(1, "k", "x", 0, 100),
        get(2, "k", Some("x"), 10, 20),
        get(3, "k", None, 30, 40),
    ]);
}

#[test]
fn equal_timestamps_are_concurrent() {
    // The Get's call equals the Put's return: treated as concurrent.
    assert_ok(&[put(1, "k", "x", 0, 10), get(2, "k", None, 10, 20)]);
    assert_violation(&[put(1, "k", "x", 0, 10), get(2, "k", None, 11, 20)]);
}

// --- append semantics -------------------------------------------------------

#[test]
fn concurrent_appends_may_land_in_either_order() {
    let appends = [append(1, "k", "a", 0, 10), append(2, "k", "b", 0, 10)];
    for seen in ["ab", "ba"] {
        let mut h = appends.to_vec();
        h.push(get(3, "k", Some(seen), 20, 30));
        assert_ok(&h);
    }
}

#[test]
fn appends_in_real_time_order_must_land_in_that_order() {
    assert_violation(&[
        append(1, "k", "a", 0, 10),
        append(2, "k", "b", 20, 30),
        get(3, "k", Some("ba"), 40, 50),
    ]);
}

#[test]
fn an_append_applied_twice_is_a_violation() {
    assert_violation(&[append(1, "k", "a", 0, 10), get(2, "k", Some("aa"), 20, 30)]);
    assert_violation(&[
        append(1, "k", "a", 0, 10),
        append(2, "k", "b", 0, 10),
        get(3, "k", Some("aba"), 20, 30),
    ]);
}

#[test]
fn append_values_with_ambiguous_splits_compare_by_bytes() {
    // "ab"+"c" and "a"+"bc" are the same bytes; hash-consing must agree.
    assert_ok(&[
        put(1, "k", "ab", 0, 1),
        append(1, "k", "c", 2, 3),
        get(1, "k", Some("abc"), 4, 5),
        put(1, "k", "a", 6, 7),
        append(1, "k", "bc", 8, 9),
        get(1, "k", Some("abc"), 10, 11),
    ]);
}

// --- unknown outputs --------------------------------------------------------

#[test]
fn put_that_never_returned_may_or_may_not_take_effect() {
    assert_ok(&[
        unknown(put(1, "k", "x", 0, 0)),
        get(2, "k", Some("x"), 100, 110),
    ]);
    assert_ok(&[unknown(put(1, "k", "x", 0, 0)), get(2, "k", None, 100, 110)]);
    // But it cannot take effect twice, or flicker.
    assert_violation(&[
        unknown(put(1, "k", "x", 0, 0)),
        get(2, "k", Some("x"), 100, 110),
        get(2, "k", None, 120, 130),
    ]);
}

#[test]
fn operation_without_answer_cannot_take_effect_before_its_call() {
    assert_violation(&[
        get(2, "k", Some("x"), 0, 10),
        unknown(put(1, "k", "x", 20, 0)),
    ]);
}

#[test]
fn unknown_append_may_be_left_out() {
    assert_ok(&[
        append(1, "k", "a", 0, 10),
        unknown(append(2, "k", "b", 0, 0)),
        append(3, "k", "c", 20, 30),
        get(1, "k", Some("ac"), 40, 50),
    ]);
    assert_ok(&[
        append(1, "k", "a", 0, 10),
        unknown(append(2, "k", "b", 0, 0)),
        append(3, "k", "c", 20, 30),
        get(1, "k", Some("abc"), 40, 50),
    ]);
}

#[test]
fn get_without_answer_is_ignored_even_with_garbage_times() {
    let mut g = unknown(get(1, "k", None, 50, 0));
    g.ret = 3; // before its call, but the answer never came, so it is moot
    assert_ok(&[put(1, "k", "x", 0, 10), g]);
}

// --- malformed histories ----------------------------------------------------

#[test]
fn return_before_call_is_rejected_not_judged() {
    let r = run(&[put(1, "k", "x", 10, 5)]);
    assert!(
        matches!(&r, CheckResult::InvalidHistory { detail, .. } if detail.contains("before its call")),
        "{r:?}"
    );
    assert!(!r.is_ok());
}

#[test]
fn mismatched_outputs_are_rejected() {
    let r = run(&[op(1, "k", KvInput::Get, KvOutput::Ok, 0, 1)]);
    assert!(matches!(r, CheckResult::InvalidHistory { .. }), "{r:?}");
    let r = run(&[op(
        1,
        "k",
        KvInput::Put(b("x")),
        KvOutput::Value(None),
        0,
        1,
    )]);
    assert!(matches!(r, CheckResult::InvalidHistory { .. }), "{r:?}");
}

// --- partitioning -----------------------------------------------------------

#[test]
fn violation_on_one_key_among_a_thousand_is_found_and_named() {
    let mut h = Vec::new();
    for k in 0..1000 {
        let key = format!("key{k}");
        h.push(put(k, &key, "v1", 0, 10));
        h.push(put(k, &key, "v2", 20, 30));
        let seen = if k == 617 { "v1" } else { "v2" };
        h.push(get(k, &key, Some(seen), 40, 50));
    }
    match run(&h) {
        CheckResult::NotLinearizable { key, detail } => {
            assert_eq!(key, b("key617"), "{detail}");
        }
        r => panic!("expected NotLinearizable, got {r:?}"),
    }
}

// --- randomized -------------------------------------------------------------

/// Shape of a generated history.
struct Gen {
    keys: u64,
    ops: u64,
    /// Each op's interval extends up to this far on either side of its true
    /// linearization point; points are 10 apart, so the concurrency on one
    /// key is about `spread / (5 * keys)`.
    spread: u64,
    /// Chance that an op gets no answer.
    unknown: f64,
    /// Chance that an op is a Delete (checked before the usual mix, and
    /// only when nonzero, so histories without Deletes are unchanged).
    delete: f64,
}

/// A history of a real sequential execution: each op takes effect at its
/// own point in time, and its interval is drawn at random around it. It is
/// linearizable by construction. Returned in shuffled order, since the
/// checker must not depend on the order ops are recorded in.
fn generate(rng: &mut Rng, g: &Gen) -> Vec<KvOp> {
    let mut values: Vec<Option<Vec<u8>>> = vec![None; g.keys as usize];
    let mut h = Vec::with_capacity(g.ops as usize);
    for i in 0..g.ops {
        let point = g.spread + 10 + i * 10;
        let k = rng.range(0, g.keys);
        let call = point - rng.range(0, g.spread + 1);
        let ret = point + rng.range(0, g.spread + 1);
        let no_answer = rng.chance(g.unknown);
        // An unanswered op took effect or not, at random.
        let applied = !no_answer || rng.chance(0.5);
        let value = &mut values[k as usize];
        if g.delete > 0.0 && rng.chance(g.delete) {
            let existed = value.is_some();
            if applied {
                *value = None;
            }
            h.push(KvOp {
                client: i % 16,
                key: Bytes::from(format!("k{k}")),
                input: KvInput::Delete,
                output: if no_answer {
                    KvOutput::Unknown
                } else {
                    KvOutput::Deleted(existed)
                },
                call,
                ret: if no_answer { u64::MAX } else { ret },
            });
            continue;
        }
        let (input, output) = match rng.range(0, 10) {
            0..=3 => (
                KvInput::Get,
                KvOutput::Value(value.clone().map(Bytes::from)),
            ),
            4..=6 => {
                let v = format!("p{i}").into_bytes();
                if applied {
                    *value = Some(v.clone());
                }
                (KvInput::Put(Bytes::from(v)), KvOutput::Ok)
            }
            _ => {
                let a = format!("a{i},").into_bytes();
                if applied {
                    value.get_or_insert_with(Vec::new).extend_from_slice(&a);
                }
                (KvInput::Append(Bytes::from(a)), KvOutput::Ok)
            }
        };
        h.push(KvOp {
            client: i % 16,
            key: Bytes::from(format!("k{k}")),
            input,
            output: if no_answer { KvOutput::Unknown } else { output },
            call,
            ret: if no_answer { u64::MAX } else { ret },
        });
    }
    for i in (1..h.len()).rev() {
        h.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    h
}

/// Replaces one answered Get's value with another: a value never written,
/// NoKey, or another value written to that key. Returns false if the history
/// has no answered Get.
fn corrupt_one_get(rng: &mut Rng, h: &mut [KvOp]) -> bool {
    let gets: Vec<usize> = (0..h.len())
        .filter(|&i| h[i].input == KvInput::Get && h[i].output != KvOutput::Unknown)
        .collect();
    if gets.is_empty() {
        return false;
    }
    let g = gets[rng.range(0, gets.len() as u64) as usize];
    let old = h[g].output.clone();
    let written: Vec<Bytes> = h
        .iter()
        .filter(|o| o.key == h[g].key)
        .filter_map(|o| match &o.input {
            KvInput::Put(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    let candidates = [
        KvOutput::Value(Some(b("never-written"))),
        KvOutput::Value(None),
        KvOutput::Value(written.first().cloned()),
        KvOutput::Value(written.last().cloned()),
    ];
    let fresh: Vec<&KvOutput> = candidates.iter().filter(|c| **c != old).collect();
    h[g].output = fresh[rng.range(0, fresh.len() as u64) as usize].clone();
    true
}

#[test]
fn random_valid_histories_pass_and_most_corrupted_ones_fail() {
    let mut rng = Rng::new(0x5eed);
    let (mut corrupted, mut caught) = (0, 0);
    for seed in 0..300 {
        let g = Gen {
            keys: 1 + seed % 4,
            ops: 20 + seed % 80,
            spread: 10 + (seed % 5) * 10,
            unknown: 0.05,
            delete: 0.0,
        };
        let mut h = generate(&mut rng, &g);
        let r = run(&h);
        assert!(r.is_ok(), "seed {seed}: valid history rejected: {r:#?}");
        if corrupt_one_get(&mut rng, &mut h) {
            corrupted += 1;
            match run(&h) {
                CheckResult::Linearizable => {}
                CheckResult::NotLinearizable { .. } => caught += 1,
                r => panic!("seed {seed}: {r:?}"),
            }
        }
    }
    println!("corrupted {corrupted}, caught {caught}");
    // A corrupted read can still be explainable (e.g. NoKey while the key's
    // first write was concurrent), so not all are caught, but most must be.
    assert!(corrupted >= 250, "{corrupted}");
    assert!(
        caught * 10 >= corrupted * 7,
        "caught {caught} of {corrupted}"
    );
}

#[test]
fn fast_model_agrees_with_reference_model() {
    let mut rng = Rng::new(77);
    let mut verdicts = [0; 2];
    for seed in 0..300 {
        let g = Gen {
            keys: 1,
            ops: 5 + seed % 30,
            spread: 10 + (seed % 5) * 20,
            unknown: 0.1,
            delete: 0.0,
        };
        let mut h = generate(&mut rng, &g);
        if seed % 2 == 1 {
            corrupt_one_get(&mut rng, &mut h);
        }
        let fast = run(&h).is_ok();
        let ops: Vec<_> = h
            .iter()
            .filter(|o| !(o.input == KvInput::Get && o.output == KvOutput::Unknown))
            .map(KvOp::operation)
            .collect();
        let reference = check(&KvModel, ops).is_ok();
        assert_eq!(fast, reference, "seed {seed}: {h:#?}");
        verdicts[fast as usize] += 1;
    }
    // Both outcomes were exercised.
    assert!(verdicts[0] > 20 && verdicts[1] > 20, "{verdicts:?}");
}

// --- scale and budget -------------------------------------------------------

#[test]
fn fifty_thousand_ops_over_a_thousand_keys_check_quickly() {
    let mut rng = Rng::new(1);
    // ~8 overlapping ops per key: spread = 8 * 5 * keys.
    let g = Gen {
        keys: 1000,
        ops: 50_000,
        spread: 40_000,
        unknown: 0.01,
        delete: 0.0,
    };
    let h = generate(&mut rng, &g);
    let start = Instant::now();
    let r = run(&h);
    println!(
        "50k ops / 1k keys / concurrency ~8: {:?} in {:?}",
        r.is_ok(),
        start.elapsed()
    );
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn hot_key_with_high_concurrency_checks() {
    let mut rng = Rng::new(2);
    // Each op overlaps ~10 others on one key.
    let g = Gen {
        keys: 1,
        ops: 500,
        spread: 50,
        unknown: 0.02,
        delete: 0.0,
    };
    let h = generate(&mut rng, &g);
    let start = Instant::now();
    let r = run(&h);
    println!(
        "500 ops / 1 key / overlap ~10: {:?} in {:?}",
        r.is_ok(),
        start.elapsed()
    );
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn long_append_chain_checks() {
    // Values grow to ~60 KB; hash-consing keeps each step O(1).
    let mut h = Vec::new();
    let mut value = String::new();
    for i in 0..4000u64 {
        let a = format!("{i:015},");
        value.push_str(&a);
        h.push(append(i % 4, "k", &a, i * 10, i * 10 + 25));
        if i % 50 == 49 {
            h.push(get(9, "k", Some(&value), i * 10 + 26, i * 10 + 27));
        }
    }
    let start = Instant::now();
    let r = run(&h);
    println!("4000 appends, 80 reads of ~60 KB: {:?}", start.elapsed());
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn pathological_history_with_tiny_budget_is_inconclusive() {
    // Twenty concurrent Puts and a concurrent Get of a value never written:
    // proving the violation means trying every subset of Puts.
    let mut h: Vec<KvOp> = (0..20)
        .map(|i| put(i, "k", &format!("v{i}"), 0, 100))
        .collect();
    h.push(get(99, "k", Some("nope"), 0, 100));
    let tiny = CheckOptions {
        steps_per_key_max: 1000,
        ..CheckOptions::default()
    };
    let r = check_kv(&h, &tiny);
    assert_eq!(
        r,
        CheckResult::Inconclusive {
            key: b("k"),
            steps: 1000
        }
    );
    assert!(!r.is_ok());
    // With a few Puts the same shape is decided.
    let small: Vec<KvOp> = h[17..].to_vec();
    assert!(matches!(
        check_kv(&small, &tiny),
        CheckResult::NotLinearizable { .. }
    ));
}

#[test]
fn inconclusive_key_does_not_hide_a_violation_elsewhere() {
    let mut h: Vec<KvOp> = (0..20)
        .map(|i| put(i, "hard", &format!("v{i}"), 0, 100))
        .collect();
    h.push(get(99, "hard", Some("nope"), 0, 100));
    h.push(put(1, "easy", "x", 0, 1));
    h.push(get(1, "easy", Some("y"), 2, 3));
    let tiny = CheckOptions {
        steps_per_key_max: 1000,
        ..CheckOptions::default()
    };
    assert!(matches!(
        check_kv(&h, &tiny),
        CheckResult::NotLinearizable { key, .. } if key == b("easy")
    ));
}

#[test]
fn a_search_over_its_memory_bound_is_inconclusive_not_an_oom() {
    // The same pathological shape, half Puts and half Appends: the Puts
    // keep the dead-read pruning off, and every order of the Appends after
    // each Put is a new value the table interns and a new memo entry.
    let mut h: Vec<KvOp> = (0..20)
        .map(|i| match i % 2 {
            0 => put(i, "k", &format!("v{i}"), 0, 100),
            _ => append(i, "k", &format!("<{i}>"), 0, 100),
        })
        .collect();
    h.push(get(99, "k", Some("nope"), 0, 100));
    let capped = CheckOptions {
        steps_per_key_max: u64::MAX,
        memory_bytes_max: 4 << 20,
    };
    let r = check_kv(&h, &capped);
    let CheckResult::Inconclusive { steps, .. } = r else {
        panic!("expected Inconclusive, got {r:?}");
    };
    // Stopped by memory (checked every 65,536 steps), well before the
    // millions of steps the search would take.
    assert!((1 << 16..1 << 22).contains(&steps), "{steps}");
}

// --- Delete -----------------------------------------------------------------

fn delete(c: u64, k: &str, existed: bool, call: u64, ret: u64) -> KvOp {
    op(c, k, KvInput::Delete, KvOutput::Deleted(existed), call, ret)
}

#[test]
fn delete_leaves_no_key_and_reports_whether_the_key_existed() {
    assert_ok(&[
        delete(1, "k", false, 0, 1),
        put(1, "k", "v", 2, 3),
        delete(1, "k", true, 4, 5),
        get(1, "k", None, 6, 7),
        append(1, "k", "x", 8, 9),
        get(1, "k", Some("x"), 10, 11),
    ]);
}

#[test]
fn delete_with_the_wrong_count_is_a_violation() {
    // A Delete applied twice (broken dedup) would answer "0" the second time.
    assert_violation(&[put(1, "k", "v", 0, 1), delete(1, "k", false, 2, 3)]);
    assert_violation(&[delete(1, "k", true, 0, 1)]);
}

#[test]
fn read_of_a_deleted_value_after_the_delete_returned_is_a_violation() {
    assert_violation(&[
        put(1, "k", "v", 0, 1),
        delete(2, "k", true, 2, 3),
        get(1, "k", Some("v"), 4, 5),
    ]);
}

#[test]
fn unanswered_put_that_only_a_delete_observed_is_kept() {
    // No read sees "v", but the Delete's "1" needs the Put to have happened.
    assert_ok(&[unknown(put(1, "k", "v", 0, 1)), delete(2, "k", true, 5, 6)]);
}

#[test]
fn delete_answered_like_a_put_is_rejected_not_judged() {
    let h = [op(1, "k", KvInput::Delete, KvOutput::Ok, 0, 1)];
    assert!(matches!(run(&h), CheckResult::InvalidHistory { .. }));
}

#[test]
fn histories_with_deletes_pass_and_fast_model_agrees_with_reference() {
    let mut rng = Rng::new(0xde1e7e);
    let mut verdicts = [0; 2];
    for seed in 0..300 {
        let g = Gen {
            keys: 1,
            ops: 5 + seed % 30,
            // Less concurrency than the Delete-free cross-check: a pending
            // Delete (a blind write) switches the read pruning off, and the
            // reference model has no hash-consing to fall back on.
            spread: 10 + (seed % 4) * 10,
            unknown: 0.1,
            delete: 0.2,
        };
        let mut h = generate(&mut rng, &g);
        assert!(run(&h).is_ok(), "seed {seed}: valid history rejected");
        if seed % 2 == 1 {
            corrupt_one_get(&mut rng, &mut h);
        }
        let fast = run(&h).is_ok();
        let ops: Vec<_> = h
            .iter()
            .filter(|o| !(o.input == KvInput::Get && o.output == KvOutput::Unknown))
            .map(KvOp::operation)
            .collect();
        let reference = check(&KvModel, ops).is_ok();
        assert_eq!(fast, reference, "seed {seed}: {h:#?}");
        verdicts[fast as usize] += 1;
    }
    assert!(verdicts[0] > 20 && verdicts[1] > 20, "{verdicts:?}");
}
