//! Running one connection's pipelined operations as few pipelined batches as
//! program order allows. Sans-IO: the batch executor is a closure (the
//! gateway passes `Client::execute_many`; tests pass a model).
//!
//! `execute_many` runs its ops concurrently, so two ops on one key in the
//! same batch could apply in either order, while a Redis client expects
//! `SET k a` then `GET k` on one connection to read `a`. The ops are
//! therefore cut into **waves**: a wave holds at most one operation per
//! key, and waves run one after another. Two shortcuts keep common
//! pipelines in one wave without breaking per-key order:
//! - repeated Gets of a key (no write between) share one Get: they may all
//!   be linearized at the same instant;
//! - repeated Puts of a key (nothing else between) collapse into the last
//!   one, and every one of them reports its outcome: the earlier Puts are
//!   linearized immediately before it and overwritten at once, so nobody
//!   can observe them (this is what keeps `redis-benchmark -P 16` against
//!   its one fixed key pipelined).
//!
//! What this does *not* keep is order across different keys within one
//! pipeline: each command is linearizable on its own, but another client
//! may see a later pipelined write to `b` before an earlier one to `a`.
//! Per-key order is what Synod's shards can give without a round trip per
//! command; a client that needs cross-key order waits for a reply first.

use std::collections::HashMap;

use bytes::Bytes;
use synod_wire::Op;

use crate::client::OpResult;

/// One wave: ops to run together, and for each, the caller's op indices
/// that take its result.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wave {
    pub ops: Vec<Op>,
    pub takers: Vec<Vec<usize>>,
}

/// Cuts `ops` (in program order) into waves; see the module doc.
pub fn plan_waves(ops: Vec<Op>) -> Vec<Wave> {
    let mut waves = Vec::new();
    let mut cur = Wave::default();
    let mut slot_of: HashMap<Bytes, usize> = HashMap::new();
    for (i, op) in ops.into_iter().enumerate() {
        if let Some(&slot) = slot_of.get(op.key()) {
            match (&cur.ops[slot], &op) {
                (Op::Get { .. }, Op::Get { .. }) => {
                    cur.takers[slot].push(i);
                    continue;
                }
                (Op::Put { .. }, Op::Put { .. }) => {
                    cur.ops[slot] = op;
                    cur.takers[slot].push(i);
                    continue;
                }
                _ => {
                    waves.push(std::mem::take(&mut cur));
                    slot_of.clear();
                }
            }
        }
        slot_of.insert(op.key().clone(), cur.ops.len());
        cur.ops.push(op);
        cur.takers.push(vec![i]);
    }
    if !cur.ops.is_empty() {
        waves.push(cur);
    }
    waves
}

/// Runs `ops` wave by wave through `execute` (which must return one result
/// per op, in order) and returns one result per op of `ops`, in order.
pub fn run(ops: Vec<Op>, mut execute: impl FnMut(Vec<Op>) -> Vec<OpResult>) -> Vec<OpResult> {
    let n = ops.len();
    let mut results: Vec<Option<OpResult>> = vec![None; n];
    for wave in plan_waves(ops) {
        let sent = wave.ops.len();
        let got = execute(wave.ops);
        assert_eq!(got.len(), sent, "the executor answers every op");
        for (result, takers) in got.into_iter().zip(wave.takers) {
            for t in takers {
                results[t] = Some(result.clone());
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every op belongs to exactly one wave"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }
    fn get(k: &str) -> Op {
        Op::Get { key: b(k) }
    }
    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: b(k),
            value: b(v),
        }
    }

    #[test]
    fn distinct_keys_share_one_wave() {
        let waves = plan_waves(vec![put("a", "1"), put("b", "2"), get("c")]);
        assert_eq!(waves.len(), 1);
        assert_eq!(waves[0].ops.len(), 3);
    }

    #[test]
    fn a_read_after_a_write_of_its_key_waits_for_the_next_wave() {
        let waves = plan_waves(vec![put("a", "1"), get("a")]);
        assert_eq!(waves.len(), 2);
    }

    #[test]
    fn repeated_gets_share_one_and_repeated_puts_collapse_into_the_last() {
        let waves = plan_waves(vec![get("a"), get("a"), put("b", "1"), put("b", "2")]);
        assert_eq!(waves.len(), 1);
        assert_eq!(waves[0].ops, vec![get("a"), put("b", "2")]);
        assert_eq!(waves[0].takers, vec![vec![0, 1], vec![2, 3]]);
    }

    /// A map executing each wave's ops in *reverse* order: the harshest
    /// order `execute_many` may pick. Program order must still hold per key.
    fn reverse_executor(
        map: &mut BTreeMap<Bytes, Bytes>,
    ) -> impl FnMut(Vec<Op>) -> Vec<OpResult> + '_ {
        move |ops: Vec<Op>| {
            let mut out: Vec<OpResult> = ops
                .iter()
                .rev()
                .map(|op| apply(map, op))
                .collect::<Vec<_>>();
            out.reverse();
            out
        }
    }

    fn apply(map: &mut BTreeMap<Bytes, Bytes>, op: &Op) -> OpResult {
        Ok(match op {
            Op::Get { key } => map.get(key).cloned(),
            Op::Put { key, value } => {
                map.insert(key.clone(), value.clone());
                Some(Bytes::new())
            }
            Op::Append { key, value } => {
                let mut v = map.get(key).map(|v| v.to_vec()).unwrap_or_default();
                v.extend_from_slice(value);
                map.insert(key.clone(), Bytes::from(v));
                Some(Bytes::new())
            }
            Op::Delete { key } => Some(b(if map.remove(key).is_some() { "1" } else { "0" })),
        })
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        (0..4u8, 0..3u8, 0..4u8).prop_map(|(kind, key, v)| {
            let key = Bytes::from(vec![b'k', b'0' + key]);
            let value = Bytes::from(vec![b'0' + v]);
            match kind {
                0 => Op::Get { key },
                1 => Op::Put { key, value },
                2 => Op::Append { key, value },
                _ => Op::Delete { key },
            }
        })
    }

    proptest! {
        /// Whatever order a wave runs in, every op answers what running the
        /// pipeline one op at a time would have answered, and the final
        /// state is the same.
        #[test]
        fn waves_preserve_per_key_program_order(ops in proptest::collection::vec(arb_op(), 0..40)) {
            let mut serial = BTreeMap::new();
            let want: Vec<OpResult> = ops.iter().map(|op| apply(&mut serial, op)).collect();
            let mut map = BTreeMap::new();
            let got = run(ops, reverse_executor(&mut map));
            prop_assert_eq!(got, want);
            prop_assert_eq!(map, serial);
        }
    }
}
