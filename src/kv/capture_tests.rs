//! Snapshots serialized a slice at a time while writes go on
//! ([`KvStore::begin_snapshot`]): whatever the store does in between, the
//! bytes are exactly those of [`KvStore::snapshot`] at the instant the
//! capture began.

use bytes::Bytes;
use proptest::prelude::*;
use synod_wire::{ClientRequest, Op};

use super::*;

const SHARDS: u32 = 4;

fn opts() -> KvOptions {
    KvOptions {
        shards: SHARDS,
        ..KvOptions::default()
    }
}

fn key(k: u8) -> Bytes {
    Bytes::from(format!("key-{k}"))
}

/// What happens to the store while a capture runs.
#[derive(Clone, Debug)]
enum Action {
    Put(u8, u8),
    Append(u8, u8),
    Delete(u8),
    /// Flush the shard of this key.
    Flush(u8),
    /// Hand a shard away (its data dropped).
    Drop(u32),
    /// Take a shard in from another group (its data replaced).
    Import(u32),
    /// Serialize about this many more bytes.
    Step(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0u8..40, any::<u8>()).prop_map(|(k, v)| Action::Put(k, v)),
        3 => (0u8..40, any::<u8>()).prop_map(|(k, v)| Action::Append(k, v)),
        3 => (0u8..40).prop_map(Action::Delete),
        1 => (0u8..40).prop_map(Action::Flush),
        1 => (0..SHARDS).prop_map(Action::Drop),
        1 => (0..SHARDS).prop_map(Action::Import),
        6 => (1usize..200).prop_map(Action::Step),
    ]
}

struct Writer {
    seq: u64,
}

impl Writer {
    fn run(&mut self, kv: &mut KvStore, op: Op) {
        self.seq += 1;
        kv.apply(&ClientRequest {
            client_id: 7,
            seq: self.seq,
            ack_seq: self.seq - 1,
            op,
        });
    }
}

/// A store of another group, whose shards are imported.
fn donor() -> KvStore {
    let mut kv = KvStore::new(opts());
    let mut w = Writer { seq: 0 };
    for k in 20..60 {
        w.run(
            &mut kv,
            Op::Put {
                key: key(k),
                value: Bytes::from(vec![k; 3]),
            },
        );
    }
    kv
}

fn fill(kv: &mut KvStore, w: &mut Writer, keys: &[(u8, u8)]) {
    for &(k, v) in keys {
        w.run(
            kv,
            Op::Put {
                key: key(k),
                value: Bytes::from(vec![v; (v % 7) as usize]),
            },
        );
    }
}

proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..proptest::prelude::ProptestConfig::default() })]
    #[test]
    fn a_sliced_snapshot_is_the_state_at_its_start(
        before in proptest::collection::vec((0u8..40, any::<u8>()), 0..40),
        during in proptest::collection::vec(action(), 0..80),
        prefix in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let donor = donor();
        let mut kv = KvStore::new(opts());
        let mut w = Writer { seq: 0 };
        fill(&mut kv, &mut w, &before);
        let mut expected = prefix.clone();
        expected.extend_from_slice(&kv.snapshot());
        kv.begin_snapshot(prefix);
        let mut got = None;
        for a in during {
            match a {
                Action::Put(k, v) => w.run(&mut kv, Op::Put { key: key(k), value: Bytes::from(vec![v; 2]) }),
                Action::Append(k, v) => w.run(&mut kv, Op::Append { key: key(k), value: Bytes::from(vec![v]) }),
                Action::Delete(k) => w.run(&mut kv, Op::Delete { key: key(k) }),
                Action::Flush(k) => w.run(&mut kv, Op::Flush { key: key(k) }),
                Action::Drop(s) => {
                    kv.drop_shard(s);
                }
                Action::Import(s) => kv.import_shard(s, &donor.export_shard(s)).expect("import"),
                Action::Step(budget) => {
                    if got.is_none() {
                        got = kv.snapshot_step(budget);
                    }
                }
            }
            kv.assert_invariants();
        }
        let got = match got {
            Some(bytes) => bytes,
            None => kv.snapshot_step(usize::MAX).expect("a whole-budget step completes"),
        };
        prop_assert_eq!(&got[..], &expected[..]);
        prop_assert!(!kv.snapshot_in_progress());
        // No capture left behind: writes no longer save anything, and the
        // next snapshot is of the state as it is now.
        let now = kv.snapshot();
        kv.begin_snapshot(Vec::new());
        prop_assert_eq!(kv.snapshot_step(usize::MAX), Some(now));
    }
}

/// The budget bounds each slice: a large shard takes many steps, each of
/// about the budget (one entry may overshoot it).
#[test]
fn each_step_serializes_about_its_budget() {
    let mut kv = KvStore::new(opts());
    let mut w = Writer { seq: 0 };
    for i in 0..2_000u32 {
        w.seq += 1;
        kv.apply(&ClientRequest {
            client_id: 7,
            seq: w.seq,
            ack_seq: w.seq - 1,
            op: Op::Put {
                key: Bytes::from(format!("k{i:05}")),
                value: Bytes::from(vec![b'v'; 100]),
            },
        });
    }
    let whole = kv.snapshot();
    kv.begin_snapshot(Vec::new());
    let mut steps = 0;
    let bytes = loop {
        steps += 1;
        // Writes between the slices, all to keys some of which are
        // serialized already and some not.
        w.run(
            &mut kv,
            Op::Put {
                key: Bytes::from(format!("k{:05}", (steps * 37) % 2_000)),
                value: Bytes::from_static(b"changed"),
            },
        );
        if let Some(b) = kv.snapshot_step(4_096) {
            break b;
        }
    };
    assert_eq!(bytes, whole);
    let per_entry = 4 + 6 + 4 + 100 + 8 + 8;
    assert!(
        steps >= whole.len() / (4_096 + per_entry),
        "{steps} steps for {} bytes",
        whole.len()
    );
}
