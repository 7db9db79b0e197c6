//! Unit and property tests of the KV state machine.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use synod_wire::{
    ClientId, ClientReply, ClientRequest, Compare, CompareOp, CompareTarget, Op, PutCond, Seq, Txn,
    TxnOpResult, TxnResult,
};

use super::shard::{REUSED_SEQ_REASON, STALE_REASON, TOO_LARGE_REASON};
use super::*;

fn opts(shards: u32) -> KvOptions {
    KvOptions {
        shards,
        ..KvOptions::default()
    }
}

fn req(client_id: ClientId, seq: Seq, ack_seq: Seq, op: Op) -> ClientRequest {
    ClientRequest {
        client_id,
        seq,
        ack_seq,
        op,
    }
}

fn get(key: &str) -> Op {
    Op::Get {
        key: Bytes::copy_from_slice(key.as_bytes()),
    }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn append(key: &str, value: &str) -> Op {
    Op::Append {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn delete(key: &str) -> Op {
    Op::Delete {
        key: Bytes::copy_from_slice(key.as_bytes()),
    }
}

fn ok(value: &str) -> ClientReply {
    ClientReply::Ok(Bytes::copy_from_slice(value.as_bytes()))
}

fn ok_empty() -> ClientReply {
    ClientReply::Ok(Bytes::new())
}

fn stale() -> ClientReply {
    ClientReply::Error {
        reason: STALE_REASON.to_string(),
    }
}

/// The `nth` key of the form `key<i>` that lands in `shard`.
fn key_in_shard(shards: u32, shard: u32, nth: usize) -> String {
    (0..)
        .map(|i| format!("key{i}"))
        .filter(|k| shard_of(k.as_bytes(), shards) == shard)
        .nth(nth)
        .unwrap()
}

// ---- hashing -------------------------------------------------------------

#[test]
fn shard_of_is_fnv1a_64_mod_shards() {
    // Published FNV-1a 64 test vectors.
    let empty = 0xcbf2_9ce4_8422_2325_u64;
    let a = 0xaf63_dc4c_8601_ec8c_u64;
    let foobar = 0x8594_4171_f739_67e8_u64;
    for shards in [1, 7, 64, 1000] {
        assert_eq!(shard_of(b"", shards) as u64, empty % shards as u64);
        assert_eq!(shard_of(b"a", shards) as u64, a % shards as u64);
        assert_eq!(shard_of(b"foobar", shards) as u64, foobar % shards as u64);
    }
    assert_eq!(shard_of(b"a", 64), 12);
}

// ---- basic operations ----------------------------------------------------

#[test]
fn get_of_missing_key_is_no_key() {
    let mut kv = KvStore::new(KvOptions::default());
    assert_eq!(kv.apply(&req(1, 1, 0, get("nope"))), ClientReply::NoKey);
    assert_eq!(kv.read(b"nope"), ClientReply::NoKey);
}

#[test]
fn put_sets_and_get_returns_the_value() {
    let mut kv = KvStore::new(KvOptions::default());
    assert_eq!(kv.apply(&req(1, 1, 0, put("k", "v1"))), ok_empty());
    assert_eq!(kv.apply(&req(1, 2, 1, get("k"))), ok("v1"));
    assert_eq!(kv.apply(&req(1, 3, 2, put("k", "v2"))), ok_empty());
    assert_eq!(kv.apply(&req(1, 4, 3, get("k"))), ok("v2"));
    assert_eq!(kv.read(b"k"), ok("v2"));
    let stats = kv.stats();
    assert_eq!((stats.keys, stats.key_bytes, stats.value_bytes), (1, 1, 2));
}

#[test]
fn append_creates_a_missing_key_then_extends_it() {
    let mut kv = KvStore::new(KvOptions::default());
    assert_eq!(kv.apply(&req(1, 1, 0, append("k", "ab"))), ok_empty());
    assert_eq!(kv.apply(&req(1, 2, 1, append("k", "cd"))), ok_empty());
    assert_eq!(kv.apply(&req(1, 3, 2, append("k", ""))), ok_empty());
    assert_eq!(kv.read(b"k"), ok("abcd"));
}

#[test]
fn put_copies_the_value_out_of_the_callers_buffer() {
    let mut kv = KvStore::new(KvOptions::default());
    let frame = Bytes::from_static(b"kkvvvv");
    let op = Op::Put {
        key: frame.slice(0..2),
        value: frame.slice(2..6),
    };
    kv.apply(&req(1, 1, 0, op));
    let ClientReply::Ok(value) = kv.read(b"kk") else {
        panic!("key missing");
    };
    // A slice of `frame` would point into it; an owned copy does not.
    let frame_range = frame.as_ptr_range();
    assert!(!frame_range.contains(&value.as_ptr()));
    assert_eq!(&value[..], b"vvvv");
}

#[test]
fn write_that_would_exceed_value_bytes_max_is_refused_and_cached() {
    let mut kv = KvStore::new(KvOptions::default());
    let half = "x".repeat(VALUE_BYTES_MAX / 2 + 1);
    kv.apply(&req(1, 1, 0, put("k", &half)));
    let refused = ClientReply::Error {
        reason: TOO_LARGE_REASON.to_string(),
    };
    assert_eq!(kv.apply(&req(1, 2, 1, append("k", &half))), refused);
    assert_eq!(kv.stats().value_bytes, half.len() as u64);
    // A duplicate gets the same refusal even if it would now fit.
    kv.apply(&req(1, 3, 1, put("k", "small")));
    assert_eq!(kv.apply(&req(1, 2, 1, append("k", &half))), refused);
    assert_eq!(kv.read(b"k"), ok("small"));
}

#[test]
fn delete_removes_the_key_and_answers_the_count_removed() {
    let mut kv = KvStore::new(KvOptions::default());
    assert_eq!(kv.apply(&req(1, 1, 0, delete("k"))), ok("0"));
    kv.apply(&req(1, 2, 1, put("k", "v")));
    assert_eq!(kv.apply(&req(1, 3, 2, delete("k"))), ok("1"));
    assert_eq!(kv.read(b"k"), ClientReply::NoKey);
    // An empty value is a value: deleting it counts.
    kv.apply(&req(1, 4, 3, put("k", "")));
    assert_eq!(kv.apply(&req(1, 5, 4, delete("k"))), ok("1"));
    assert_eq!(kv.stats().keys, 0);
}

#[test]
fn retried_delete_gets_its_original_count_not_a_fresh_zero() {
    let mut kv = KvStore::new(KvOptions::default());
    kv.apply(&req(1, 1, 0, put("k", "v")));
    let r = req(1, 2, 1, delete("k"));
    assert_eq!(kv.apply(&r), ok("1"));
    assert_eq!(kv.apply(&r), ok("1"));
    // The cached "1" survives a snapshot round trip.
    let mut restored = KvStore::restore(&kv.snapshot(), kv.options()).unwrap();
    assert_eq!(restored.apply(&r), ok("1"));
    assert_eq!(restored.read(b"k"), ClientReply::NoKey);
}

// ---- at-most-once ----------------------------------------------------------

#[test]
fn duplicate_write_is_applied_once_and_gets_the_same_reply() {
    let mut kv = KvStore::new(KvOptions::default());
    let r = req(7, 1, 0, append("k", "x"));
    let first = kv.apply(&r);
    let second = kv.apply(&r);
    assert_eq!(first, second);
    assert_eq!(kv.read(b"k"), ok("x"));
    assert_eq!(kv.stats().cached_replies, 1);
}

#[test]
fn pipelined_requests_applied_out_of_order_are_all_applied_once() {
    let mut kv = KvStore::new(KvOptions::default());
    // Requests 5, 6, 7 in flight; 7 is ordered first, then 5, then 6, then
    // duplicates of all three.
    assert_eq!(kv.apply(&req(1, 7, 4, append("k", "7"))), ok_empty());
    assert_eq!(kv.apply(&req(1, 5, 4, append("k", "5"))), ok_empty());
    assert_eq!(kv.apply(&req(1, 6, 4, append("k", "6"))), ok_empty());
    for seq in [5, 6, 7] {
        let dup = req(1, seq, 4, append("k", &seq.to_string()));
        assert_eq!(kv.apply(&dup), ok_empty());
    }
    assert_eq!(kv.read(b"k"), ok("756"));
    assert_eq!(kv.stats().cached_replies, 3);
}

fn reused() -> ClientReply {
    ClientReply::Error {
        reason: REUSED_SEQ_REASON.to_string(),
    }
}

/// A seq reused for a different request is refused (not answered with the
/// other request's cached reply), here, after a restore and after the
/// shard moved; a true resend with a newer `ack_seq` still gets its reply.
#[test]
fn a_seq_reused_for_a_different_request_is_refused_wherever_its_session_went() {
    let mut kv = KvStore::new(KvOptions::default());
    assert_eq!(kv.apply(&req(1, 1, 0, put("k", "v"))), ok_empty());
    assert_eq!(kv.apply(&req(1, 2, 0, append("k", "w"))), ok_empty());
    let shard = kv.shard_of_key(b"k");
    let mut restored = KvStore::restore(&kv.snapshot(), kv.options()).unwrap();
    let mut moved = KvStore::new(KvOptions::default());
    moved.import_shard(shard, &kv.export_shard(shard)).unwrap();
    // Sessions are per shard: reuse is seen within the shard of its key.
    let other = (0..)
        .map(|i| format!("j{i}"))
        .find(|j| kv.shard_of_key(j.as_bytes()) == shard)
        .unwrap();
    for store in [&mut kv, &mut restored, &mut moved] {
        // The same value under another op, another value, another key.
        assert_eq!(store.apply(&req(1, 2, 0, put("k", "w"))), reused());
        assert_eq!(store.apply(&req(1, 2, 0, append("k", "x"))), reused());
        assert_eq!(store.apply(&req(1, 2, 0, append(&other, "w"))), reused());
        // A read with a write's seq gets no write's reply either.
        assert_eq!(store.apply(&req(1, 2, 0, get("k"))), reused());
        // The resend itself, acknowledging seq 1 on the way.
        assert_eq!(store.apply(&req(1, 2, 1, append("k", "w"))), ok_empty());
        assert_eq!(store.read(b"k"), ok("vw"));
    }
}

#[test]
fn request_at_or_below_the_ack_watermark_is_not_applied() {
    let mut kv = KvStore::new(KvOptions::default());
    kv.apply(&req(1, 1, 0, append("k", "a")));
    kv.apply(&req(1, 2, 1, append("k", "b")));
    // A delayed copy of seq 1 arrives after the client acknowledged it.
    assert_eq!(kv.apply(&req(1, 1, 0, append("k", "a"))), stale());
    // A request that acknowledges itself is stale too (ack is applied first).
    assert_eq!(kv.apply(&req(1, 3, 3, append("k", "c"))), stale());
    assert_eq!(kv.read(b"k"), ok("ab"));
}

#[test]
fn ack_frees_cached_replies_but_keeps_the_session() {
    let mut kv = KvStore::new(KvOptions::default());
    for seq in 1..=5 {
        kv.apply(&req(1, seq, 0, put("k", "v")));
    }
    assert_eq!(kv.stats().cached_replies, 5);
    kv.apply(&req(1, 6, 3, put("k", "v")));
    assert_eq!(kv.stats().cached_replies, 3); // 4, 5, 6
                                              // A Get carries acks too.
    kv.apply(&req(1, 7, 6, get("k")));
    let stats = kv.stats();
    assert_eq!((stats.sessions, stats.cached_replies), (1, 0));
    // An ack lower than the watermark does not lower it.
    assert_eq!(kv.apply(&req(1, 5, 2, put("k", "w"))), stale());
    assert_eq!(kv.read(b"k"), ok("v"));
}

#[test]
fn gets_create_no_session_and_are_not_cached() {
    let mut kv = KvStore::new(KvOptions::default());
    kv.apply(&req(1, 1, 0, get("k")));
    assert_eq!(kv.stats(), KvStats::default());
    kv.apply(&req(2, 1, 0, put("k", "v")));
    // Re-executing client 1's Get sees the new value, as a fresh read would.
    assert_eq!(kv.apply(&req(1, 1, 0, get("k"))), ok("v"));
    assert_eq!(kv.stats().sessions, 1);
}

#[test]
fn sessions_are_per_shard() {
    let mut kv = KvStore::new(opts(4));
    let in0 = key_in_shard(4, 0, 0);
    let in1 = key_in_shard(4, 1, 0);
    kv.apply(&req(1, 1, 0, put(&in0, "a")));
    kv.apply(&req(1, 2, 0, put(&in1, "b")));
    assert_eq!(kv.shard_stats(0).sessions, 1);
    assert_eq!(kv.shard_stats(1).sessions, 1);
    assert_eq!(kv.shard_stats(0).cached_replies, 1);
    assert_eq!(kv.stats().sessions, 2);
}

#[test]
fn planted_skip_dedup_reapplies_a_duplicate_append() {
    // The same scenario with and without the bug, so the bug's test cannot
    // pass by accident.
    for (planted, expected) in [(false, "x"), (true, "xx")] {
        let mut kv = KvStore::new(KvOptions {
            planted_skip_dedup: planted,
            ..KvOptions::default()
        });
        let r = req(1, 1, 0, append("k", "x"));
        kv.apply(&r);
        kv.apply(&r);
        assert_eq!(kv.read(b"k"), ok(expected), "planted={planted}");
        kv.assert_invariants();
    }
}

// ---- snapshots -------------------------------------------------------------

/// Writes of three clients over 200 keys. The keys are first created and
/// deleted in the given order (so each store's hash tables grew in another
/// order), then written in one fixed order (so versions, which number the
/// writes, agree).
fn build(order: impl Iterator<Item = usize>) -> KvStore {
    let mut kv = KvStore::new(KvOptions::default());
    let order: Vec<usize> = order.collect();
    for &i in &order {
        let seq = 10_000 + i as u64;
        kv.apply(&req(4, seq, 0, put(&format!("k{i}"), "warm-up")));
    }
    for &i in &order {
        let seq = 20_000 + i as u64;
        kv.apply(&req(4, seq, 0, delete(&format!("k{i}"))));
    }
    for i in 0..200 {
        let client = (i % 3) as u64 + 1;
        let seq = i as u64 + 1;
        kv.apply(&req(
            client,
            seq,
            0,
            put(&format!("k{i}"), &format!("v{i}")),
        ));
        kv.apply(&req(client, seq + 1000, 0, append(&format!("k{i}"), "+")));
    }
    kv
}

#[test]
fn snapshot_bytes_do_not_depend_on_insertion_order() {
    let forward = build(0..200);
    let backward = build((0..200).rev());
    let interleaved = build((0..200).step_by(2).chain((1..200).step_by(2)));
    assert_eq!(forward.snapshot(), backward.snapshot());
    assert_eq!(forward.snapshot(), interleaved.snapshot());
    // And the snapshot does see the state: one more write changes it.
    let mut changed = build(0..200);
    changed.apply(&req(9, 1, 0, put("k0", "other")));
    assert_ne!(forward.snapshot(), changed.snapshot());
}

/// A store whose sessions cache every kind of reply, to cover the reply
/// encoding even though `apply` only caches `Ok` and `Error` today.
fn store_with_every_reply_kind() -> KvStore {
    let mut kv = KvStore::new(opts(4));
    kv.apply(&req(1, 1, 0, put("alpha", "one")));
    kv.apply(&req(1, 2, 1, append("beta", "two")));
    kv.apply(&req(2, 9, 4, put("gamma", "")));
    let shard = kv.shard_of_key(b"gamma") as usize;
    let replies = [
        ok("cached"),
        ClientReply::NoKey,
        ClientReply::WrongGroup,
        ClientReply::NotLeader { leader: None },
        ClientReply::NotLeader { leader: Some(2) },
        ClientReply::Busy,
        ClientReply::Error {
            reason: "wrong — group".to_string(),
        },
        ClientReply::SessionExpired,
        ClientReply::WrongCore,
    ];
    let session = kv.shards[shard].sessions.get_mut(&2).unwrap();
    for (i, reply) in replies.into_iter().enumerate() {
        // Every other one without a print, as restored from before prints.
        let print = (i % 2 == 0).then_some(0xC0DE_0000 + i as u32);
        session
            .replies
            .insert(10 + i as u64, super::shard::Cached { reply, print });
    }
    kv.assert_invariants();
    kv
}

#[test]
fn restore_of_a_snapshot_gives_the_same_state_and_bytes() {
    for kv in [build(0..200), store_with_every_reply_kind()] {
        let bytes = kv.snapshot();
        let restored = KvStore::restore(&bytes, kv.options()).unwrap();
        assert_eq!(restored, kv);
        assert_eq!(restored.snapshot(), bytes);
        assert_eq!(restored.stats(), kv.stats());
    }
}

#[test]
fn restored_store_answers_and_deduplicates_like_the_original() {
    let mut kv = KvStore::new(KvOptions::default());
    kv.apply(&req(1, 1, 0, put("k", "v")));
    kv.apply(&req(1, 2, 1, append("k", "w")));
    let mut restored = KvStore::restore(&kv.snapshot(), kv.options()).unwrap();
    for store in [&mut kv, &mut restored] {
        assert_eq!(store.read(b"k"), ok("vw"));
        // Seq 2 is cached (duplicate), seq 1 is acknowledged (stale).
        assert_eq!(store.apply(&req(1, 2, 1, append("k", "w"))), ok_empty());
        assert_eq!(store.apply(&req(1, 1, 0, put("k", "v"))), stale());
        assert_eq!(store.read(b"k"), ok("vw"));
    }
}

#[test]
fn restore_refuses_malformed_snapshots() {
    let kv = build(0..10);
    let bytes = kv.snapshot().to_vec();
    let o = kv.options();
    assert_eq!(KvStore::restore(&[], o), Err(SnapshotError::Truncated));
    let mut wrong_format = bytes.clone();
    wrong_format[0] = 99;
    assert_eq!(
        KvStore::restore(&wrong_format, o),
        Err(SnapshotError::UnsupportedFormat(99))
    );
    assert_eq!(
        KvStore::restore(&bytes, opts(63)),
        Err(SnapshotError::ShardCountMismatch {
            expected: 63,
            found: 64
        })
    );
    assert_eq!(
        KvStore::restore(&bytes, opts(0)),
        Err(SnapshotError::ShardOutOfRange(0))
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        KvStore::restore(&trailing, o),
        Err(SnapshotError::TrailingBytes(1))
    );
    // A shard export is not a snapshot.
    assert!(matches!(
        KvStore::restore(&kv.export_shard(0), o),
        Err(SnapshotError::UnsupportedFormat(_))
    ));
}

/// Hand-built one-shard snapshot with the given entries and no sessions.
fn one_shard_snapshot(shards: u32, entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&shards.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (k, v) in entries {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    for _ in 1..shards {
        out.extend_from_slice(&[0; 8]);
    }
    out
}

#[test]
fn restore_refuses_non_canonical_or_misplaced_entries() {
    let sorted = one_shard_snapshot(1, &[(b"a", b"1"), (b"b", b"2")]);
    assert!(KvStore::restore(&sorted, opts(1)).is_ok());
    let unsorted = one_shard_snapshot(1, &[(b"b", b"2"), (b"a", b"1")]);
    assert!(matches!(
        KvStore::restore(&unsorted, opts(1)),
        Err(SnapshotError::NotCanonical(_))
    ));
    let repeated = one_shard_snapshot(1, &[(b"a", b"1"), (b"a", b"1")]);
    assert!(matches!(
        KvStore::restore(&repeated, opts(1)),
        Err(SnapshotError::NotCanonical(_))
    ));
    let misplaced = key_in_shard(2, 1, 0);
    let in_shard_0 = one_shard_snapshot(2, &[(misplaced.as_bytes(), b"v")]);
    assert_eq!(
        KvStore::restore(&in_shard_0, opts(2)),
        Err(SnapshotError::KeyInWrongShard)
    );
    // A count larger than the input could hold is refused before allocating.
    let mut huge_count = one_shard_snapshot(1, &[]);
    huge_count[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        KvStore::restore(&huge_count, opts(1)),
        Err(SnapshotError::Truncated)
    );
}

#[test]
fn every_truncation_and_bit_flip_of_a_snapshot_is_handled() {
    let kv = store_with_every_reply_kind();
    let bytes = kv.snapshot().to_vec();
    for len in 0..bytes.len() {
        assert!(KvStore::restore(&bytes[..len], kv.options()).is_err());
    }
    let mut accepted = 0;
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        // Anything accepted must be canonical: it re-encodes to itself.
        if let Ok(store) = KvStore::restore(&flipped, kv.options()) {
            assert_eq!(store.snapshot(), flipped);
            accepted += 1;
        }
    }
    // Value bytes can flip harmlessly; most other flips must be caught.
    assert!(accepted < bytes.len() * 8 / 2, "accepted {accepted}");
}

// ---- shard migration -------------------------------------------------------

#[test]
fn exported_shard_carries_data_and_dedup_state_to_another_store() {
    let shards = 8;
    let mut source = KvStore::new(opts(shards));
    let moving = key_in_shard(shards, 3, 0);
    let staying = key_in_shard(shards, 5, 0);
    source.apply(&req(1, 1, 0, append(&moving, "a")));
    source.apply(&req(1, 2, 1, append(&moving, "b")));
    source.apply(&req(1, 3, 1, put(&staying, "s")));

    let mut target = KvStore::new(opts(shards));
    target.import_shard(3, &source.export_shard(3)).unwrap();
    assert_eq!(target.read(moving.as_bytes()), ok("ab"));
    assert_eq!(target.read(staying.as_bytes()), ClientReply::NoKey);
    assert_eq!(target.shard_stats(3), source.shard_stats(3));
    // The new owner still refuses to re-apply the moved writes.
    assert_eq!(
        target.apply(&req(1, 2, 1, append(&moving, "b"))),
        ok_empty()
    );
    assert_eq!(target.apply(&req(1, 1, 0, append(&moving, "a"))), stale());
    assert_eq!(target.read(moving.as_bytes()), ok("ab"));

    source.drop_shard(3);
    assert_eq!(source.read(moving.as_bytes()), ClientReply::NoKey);
    assert_eq!(source.shard_stats(3), KvStats::default());
    assert_eq!(source.read(staying.as_bytes()), ok("s"));
    source.assert_invariants();
    target.assert_invariants();
}

#[test]
fn import_replaces_data_and_merges_sessions() {
    let shards = 4;
    let key = key_in_shard(shards, 2, 0);
    let stale_key = key_in_shard(shards, 2, 1);
    let mut exporter = KvStore::new(opts(shards));
    // Client 1: acked 5 here, replies 7 and 11 cached.
    exporter.apply(&req(1, 7, 5, put(&key, "new")));
    exporter.apply(&req(1, 11, 5, append(&key, "!")));
    // Client 2 only wrote here.
    exporter.apply(&req(2, 1, 0, append(&key, "?")));
    exporter.apply(&req(2, 2, 0, append(&key, "?")));

    let mut importer = KvStore::new(opts(shards));
    // Client 1: acked 10 here, reply 12 cached. Client 3 only wrote here.
    importer.apply(&req(1, 12, 10, put(&stale_key, "old")));
    importer.apply(&req(3, 1, 0, put(&stale_key, "old")));

    importer.import_shard(2, &exporter.export_shard(2)).unwrap();
    assert_eq!(importer.read(key.as_bytes()), ok("new!??"));
    assert_eq!(importer.read(stale_key.as_bytes()), ClientReply::NoKey);
    let sessions = &importer.shards[2].sessions;
    assert_eq!(sessions.len(), 3);
    let client1 = &sessions[&1];
    assert_eq!(client1.acked, 10);
    // 7 is below the merged watermark and freed; 11 and 12 survive.
    assert_eq!(
        client1.replies.keys().copied().collect::<Vec<_>>(),
        [11, 12]
    );
    assert_eq!(sessions[&2].replies.len(), 2);
    assert_eq!(sessions[&3].replies.len(), 1);
    importer.assert_invariants();
}

#[test]
fn import_refuses_bad_input_and_leaves_the_store_unchanged() {
    let mut source = KvStore::new(opts(4));
    source.apply(&req(1, 1, 0, put(&key_in_shard(4, 1, 0), "v")));
    let mut target = KvStore::new(opts(4));
    target.apply(&req(2, 1, 0, put(&key_in_shard(4, 1, 1), "w")));
    let before = target.clone();
    let export = source.export_shard(1).to_vec();

    assert_eq!(
        target.import_shard(2, &export),
        Err(SnapshotError::ShardMismatch {
            expected: 2,
            found: 1
        })
    );
    assert_eq!(
        target.import_shard(4, &export),
        Err(SnapshotError::ShardOutOfRange(4))
    );
    assert!(matches!(
        target.import_shard(0, &source.snapshot()),
        Err(SnapshotError::UnsupportedFormat(_))
    ));
    for len in 0..export.len() {
        assert!(target.import_shard(1, &export[..len]).is_err());
    }
    let mut other_count = KvStore::new(opts(8));
    assert!(matches!(
        other_count.import_shard(1, &export),
        Err(SnapshotError::ShardCountMismatch { .. })
    ));
    assert_eq!(target, before);
}

// ---- chunked shard migration ----------------------------------------------

/// A store whose shard 3 (of 8) holds `keys` keys of varied sizes and the
/// sessions of three clients (one with a cached reply).
fn store_with_a_big_shard(keys: usize) -> KvStore {
    let mut kv = KvStore::new(opts(8));
    for i in 0..keys {
        let key = key_in_shard(8, 3, i);
        let value = "v".repeat(1 + (i * 37) % 90);
        kv.apply(&req(
            1 + (i % 3) as u64,
            1 + i as u64,
            i as u64,
            put(&key, &value),
        ));
    }
    // Something in another shard, which must not move.
    kv.apply(&req(9, 1, 0, put(&key_in_shard(8, 5, 0), "stays")));
    kv
}

/// Moves shard 3 from `source` into `target` chunk by chunk, as the new
/// owner's log would apply them. Returns the chunks' sizes in bytes.
fn move_in_chunks(source: &KvStore, target: &mut KvStore, budget: usize) -> Vec<usize> {
    let order = source.key_order(3);
    let mut from = 0;
    let mut sizes = Vec::new();
    loop {
        let chunk = source.export_chunk(&order, from, budget);
        assert!(
            chunk.records > 0 || chunk.done,
            "a chunk that moves nothing"
        );
        let added = target
            .import_chunk(3, &chunk.data, from == 0, chunk.done)
            .expect("a chunk imports");
        assert_eq!(added, chunk.records);
        sizes.push(chunk.data.len());
        from += chunk.records;
        if chunk.done {
            assert_eq!(from, order.len(), "done before the last record");
            return sizes;
        }
    }
}

#[test]
fn chunks_reassemble_exactly_the_exported_shard() {
    let source = store_with_a_big_shard(60);
    let whole = source.export_shard(3);
    let largest_entry = 4 + 8 + 4 + 90 + 8 + 8;
    for budget in [1, 50, 300, 1 << 20] {
        let mut target = KvStore::new(opts(8));
        let sizes = move_in_chunks(&source, &mut target, budget);
        // Same data and sessions as a whole-shard move, byte for byte.
        assert_eq!(target.export_shard(3), whole, "budget {budget}");
        assert_eq!(target.shard_stats(5), KvStats::default());
        target.assert_invariants();
        // Bounded: header, counts and floor, then at most the budget of
        // items (or one item larger than it), sessions included.
        let largest_session = source.shards[3]
            .sessions
            .values()
            .map(super::snapshot::session_len)
            .max()
            .unwrap();
        for size in &sizes {
            assert!(
                *size <= 1 + 4 + 4 + 4 + 8 + 4 + budget.max(largest_entry.max(largest_session))
            );
        }
        if budget == 1 {
            // One record per chunk, then one session per chunk.
            assert_eq!(sizes.len(), 60 + 3);
        }
        if budget == 1 << 20 {
            assert_eq!(sizes.len(), 1, "everything fits in one chunk");
        }
    }
}

#[test]
fn key_order_and_chunks_do_not_depend_on_insertion_order() {
    let keys: Vec<String> = (0..40).map(|i| key_in_shard(8, 3, i)).collect();
    let mut a = KvStore::new(opts(8));
    let mut b = KvStore::new(opts(8));
    // b's table grows in the other order; both then number their writes
    // alike (versions count writes), and client 2's session is the same.
    for (i, k) in keys.iter().enumerate() {
        a.apply(&req(2, 1 + i as u64, 0, put(k, "warm-up")));
    }
    for (i, k) in keys.iter().enumerate() {
        a.apply(&req(1, 1 + i as u64, i as u64, put(k, k)));
    }
    for (i, k) in keys.iter().enumerate().rev() {
        b.apply(&req(2, 1 + i as u64, 0, put(k, "warm-up")));
    }
    for (i, k) in keys.iter().enumerate() {
        b.apply(&req(1, 1 + i as u64, 0, put(k, k)));
    }
    // The same watermark on both, so the sessions match too.
    a.apply(&req(1, 41, 40, get(&keys[0])));
    b.apply(&req(1, 41, 40, get(&keys[0])));
    let (oa, ob) = (a.key_order(3), b.key_order(3));
    assert_eq!(oa, ob);
    assert_eq!(oa.len(), 40 + 2, "40 keys and two sessions");
    for from in [0, 7, 39, 40, 41, 42] {
        assert_eq!(
            a.export_chunk(&oa, from, 100),
            b.export_chunk(&ob, from, 100)
        );
    }
}

#[test]
fn a_shard_without_keys_still_moves_its_sessions() {
    let mut source = KvStore::new(opts(8));
    let key = key_in_shard(8, 3, 0);
    source.apply(&req(1, 1, 0, put(&key, "x")));
    source.apply(&req(1, 2, 1, delete(&key)));
    let order = source.key_order(3);
    assert_eq!((order.len(), order.sessions()), (1, 1));
    let chunk = source.export_chunk(&order, 0, 1);
    assert!(chunk.done);
    assert_eq!(chunk.records, 1);
    let mut target = KvStore::new(opts(8));
    assert_eq!(target.import_chunk(3, &chunk.data, true, true), Ok(1));
    // The session came along: the delete is answered from its cache.
    assert_eq!(target.apply(&req(1, 2, 1, delete(&key))), ok("1"));
}

#[test]
fn first_chunk_drops_stale_data_and_last_merges_sessions() {
    let source = store_with_a_big_shard(5);
    let mut target = KvStore::new(opts(8));
    let stale = key_in_shard(8, 3, 100);
    // Client 7 wrote here only; client 1 has a higher watermark here.
    target.apply(&req(7, 1, 0, put(&stale, "old")));
    target.apply(&req(1, 50, 40, put(&stale, "old")));
    move_in_chunks(&source, &mut target, 10);
    assert_eq!(target.read(stale.as_bytes()), ClientReply::NoKey);
    assert_eq!(target.shard_stats(3).keys, 5);
    let sessions = &target.shards[3].sessions;
    assert!(sessions.contains_key(&7), "a local session was dropped");
    assert_eq!(sessions[&1].acked, 40);
    target.assert_invariants();
}

#[test]
fn import_chunk_refuses_bad_input_and_leaves_the_store_unchanged() {
    let source = store_with_a_big_shard(10);
    let order = source.key_order(3);
    let middle = source.export_chunk(&order, 2, 40);
    assert!(!middle.done && middle.records > 0);
    let last = source.export_chunk(&order, order.len(), 1 << 20);
    assert!(last.done && last.records == 0);
    let mut target = KvStore::new(opts(8));
    target.apply(&req(2, 1, 0, put(&key_in_shard(8, 3, 99), "w")));
    let before = target.clone();

    // A chunk in the format before session expiry (0x82) carried the
    // sessions whole in its last chunk only: one elsewhere is refused.
    let mut old = vec![0x82];
    old.extend_from_slice(&8u32.to_le_bytes());
    old.extend_from_slice(&3u32.to_le_bytes());
    old.extend_from_slice(&0u32.to_le_bytes()); // no entries
    old.extend_from_slice(&1u32.to_le_bytes()); // one session:
    old.extend_from_slice(&5u64.to_le_bytes()); // client 5
    old.extend_from_slice(&2u64.to_le_bytes()); // acked 2
    old.extend_from_slice(&0u32.to_le_bytes()); // no cached replies
    assert_eq!(
        target.import_chunk(3, &old, false, false),
        Err(SnapshotError::NotCanonical(
            "sessions in a chunk that is not the last"
        ))
    );
    assert_eq!(
        target.import_chunk(2, &middle.data, false, false),
        Err(SnapshotError::ShardMismatch {
            expected: 2,
            found: 3
        })
    );
    assert_eq!(
        target.import_chunk(8, &middle.data, false, false),
        Err(SnapshotError::ShardOutOfRange(8))
    );
    assert_eq!(
        target.import_chunk(3, &source.export_shard(3), true, true),
        Err(SnapshotError::UnsupportedFormat(0x87)),
        "a whole-shard export is not a chunk"
    );
    for len in 0..middle.data.len() {
        assert!(target
            .import_chunk(3, &middle.data[..len], true, false)
            .is_err());
    }
    assert_eq!(target, before);
}

#[test]
#[should_panic(expected = "changed after its key order was taken")]
fn exporting_from_a_stale_key_order_is_a_broken_invariant() {
    let mut source = store_with_a_big_shard(3);
    let order = source.key_order(3);
    source.apply(&req(5, 1, 0, put(&key_in_shard(8, 3, 50), "late")));
    source.export_chunk(&order, 0, 100);
}

// ---- property tests --------------------------------------------------------

#[derive(Clone, Debug)]
enum Action {
    /// A client issues its next request; it is in flight until delivered.
    Send {
        client: ClientId,
        kind: u8,
        key: u8,
        value: u8,
    },
    /// Some in-flight request is ordered in the log (any order: pipelining).
    Deliver(usize),
    /// An already-delivered request is ordered again (a retry or a network
    /// duplicate).
    Redeliver(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (1..4u64, 0..8u8, 0..6u8, any::<u8>()).prop_map(|(client, kind, key, value)| {
            Action::Send {
                client,
                kind,
                key,
                value,
            }
        }),
        any::<usize>().prop_map(Action::Deliver),
        any::<usize>().prop_map(Action::Redeliver),
    ]
}

#[derive(Default)]
struct ClientModel {
    next_seq: Seq,
    replied: BTreeSet<Seq>,
}

impl ClientModel {
    /// The contiguous low-water mark of replied requests.
    fn ack(&self) -> Seq {
        let mut ack = 0;
        while self.replied.contains(&(ack + 1)) {
            ack += 1;
        }
        ack
    }
}

/// What a plain map says the reply to a first execution is.
fn model_apply(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, op: &Op) -> ClientReply {
    match op {
        Op::Get { key } => match model.get(&key[..]) {
            Some(v) => ClientReply::Ok(Bytes::copy_from_slice(v)),
            None => ClientReply::NoKey,
        },
        Op::Put { key, value } => {
            model.insert(key.to_vec(), value.to_vec());
            ok_empty()
        }
        Op::Append { key, value } => {
            model
                .entry(key.to_vec())
                .or_default()
                .extend_from_slice(value);
            ok_empty()
        }
        Op::Delete { key } => match model.remove(&key[..]) {
            Some(_) => ok("1"),
            None => ok("0"),
        },
        Op::Incr { key, delta } => {
            // Redis' integers are exactly the canonical decimal texts.
            let current = match model.get(&key[..]) {
                None => Some(0),
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .filter(|n| n.to_string().as_bytes() == &v[..]),
            };
            match current.map(|n| n.checked_add(*delta)) {
                None => ClientReply::Error {
                    reason: "value is not an integer or out of range".into(),
                },
                Some(None) => ClientReply::Error {
                    reason: "increment or decrement would overflow".into(),
                },
                Some(Some(n)) => {
                    model.insert(key.to_vec(), n.to_string().into_bytes());
                    ok(&n.to_string())
                }
            }
        }
        Op::PutIf {
            key,
            value,
            cond,
            get_old,
        } => {
            let old = model.get(&key[..]).cloned();
            let write = match cond {
                PutCond::Any => true,
                PutCond::Exists => old.is_some(),
                PutCond::NotExists => old.is_none(),
            };
            if write {
                model.insert(key.to_vec(), value.to_vec());
            }
            let mut out = vec![if write { b'1' } else { b'0' }];
            if *get_old {
                match old {
                    Some(v) => {
                        out.push(b'1');
                        out.extend_from_slice(&v);
                    }
                    None => out.push(b'0'),
                }
            }
            ClientReply::Ok(Bytes::from(out))
        }
        Op::GetDel { key } => match model.remove(&key[..]) {
            Some(v) => ClientReply::Ok(Bytes::from([&b"1"[..], &v].concat())),
            None => ok("0"),
        },
        Op::Txn(_) => unreachable!("the generator makes no transactions (see txn tests)"),
        Op::PutEx { .. } | Op::Expire { .. } | Op::Ttl { .. } | Op::GetEx { .. } => {
            unreachable!("the generator makes no expiry operations (see expiry_tests)")
        }
        Op::SetRange { .. }
        | Op::IncrByFloat { .. }
        | Op::Scan { .. }
        | Op::Count { .. }
        | Op::Flush { .. }
        | Op::TxnPrepare(_)
        | Op::TxnDecide(_)
        | Op::TxnFinish(_) => unreachable!("the generator makes none of these (see scan_tests)"),
    }
}

/// Every property here saves its failing cases beside this file
/// (`src/kv/tests.proptest-regressions`), not in a `proptest-regressions/`
/// directory at the top level, which the layout does not allow.
fn persisted_beside_source() -> proptest::prelude::ProptestConfig {
    proptest::prelude::ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..proptest::prelude::ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(persisted_beside_source())]
    #[test]
    fn store_matches_a_map_under_pipelining_and_duplicates(
        actions in proptest::collection::vec(action(), 1..200)
    ) {
        let mut kv = KvStore::new(opts(4));
        let mut model = BTreeMap::new();
        let mut clients: BTreeMap<ClientId, ClientModel> = BTreeMap::new();
        let mut in_flight: Vec<ClientRequest> = Vec::new();
        let mut delivered: Vec<(ClientRequest, ClientReply)> = Vec::new();
        for action in actions {
            match action {
                Action::Send { client, kind, key, value } => {
                    let c = clients.entry(client).or_default();
                    c.next_seq += 1;
                    let key = Bytes::from(vec![b'k', key]);
                    let byte = value;
                    let value = Bytes::from(vec![value]);
                    let op = match kind {
                        0 => Op::Get { key },
                        1 => Op::Put { key, value },
                        2 => Op::Append { key, value },
                        3 => Op::Delete { key },
                        // Integers often, so Incr's arithmetic is exercised
                        // as well as its refusal.
                        4 => Op::Put {
                            key,
                            value: Bytes::from((byte % 21).to_string()),
                        },
                        5 => Op::Incr {
                            key,
                            delta: match byte {
                                0 => i64::MAX,
                                1 => i64::MIN,
                                v => i64::from(v as i8),
                            },
                        },
                        6 => Op::PutIf {
                            key,
                            value,
                            cond: PutCond::from_code(byte % 3).expect("0..3"),
                            get_old: byte % 2 == 0,
                        },
                        _ => Op::GetDel { key },
                    };
                    in_flight.push(req(client, c.next_seq, c.ack(), op));
                }
                Action::Deliver(i) => {
                    if in_flight.is_empty() {
                        continue;
                    }
                    let r = in_flight.remove(i % in_flight.len());
                    let expected = model_apply(&mut model, &r.op);
                    let reply = kv.apply(&r);
                    prop_assert_eq!(&reply, &expected);
                    clients.get_mut(&r.client_id).unwrap().replied.insert(r.seq);
                    delivered.push((r, reply));
                }
                Action::Redeliver(i) => {
                    if delivered.is_empty() {
                        continue;
                    }
                    let (r, first) = delivered[i % delivered.len()].clone();
                    let reply = kv.apply(&r);
                    let allowed = match r.op {
                        // A re-executed Get reads the current value.
                        Op::Get { .. } => model_apply(&mut model, &r.op),
                        _ => first,
                    };
                    prop_assert!(reply == allowed || reply == stale(), "{:?}", reply);
                }
            }
            kv.assert_invariants();
        }
        prop_assert_eq!(kv.stats().keys, model.len() as u64);
        for (key, value) in &model {
            prop_assert_eq!(kv.read(key), ClientReply::Ok(Bytes::copy_from_slice(value)));
        }
        let bytes = kv.snapshot();
        let restored = KvStore::restore(&bytes, kv.options()).unwrap();
        prop_assert_eq!(restored.snapshot(), bytes);
        prop_assert_eq!(restored, kv);
    }

    #[test]
    fn restore_and_import_never_panic_on_arbitrary_bytes(
        junk in proptest::collection::vec(any::<u8>(), 0..512),
        shards in 1..5u32,
        shard in 0..6u32,
    ) {
        let o = opts(shards);
        let _ = KvStore::restore(&junk, o);
        // Behind a valid header, so the fuzzing reaches the shard bodies.
        let mut framed = vec![1];
        framed.extend_from_slice(&shards.to_le_bytes());
        framed.extend_from_slice(&junk);
        if let Ok(store) = KvStore::restore(&framed, o) {
            prop_assert_eq!(store.snapshot().to_vec(), framed);
        }
        let mut kv = KvStore::new(o);
        let _ = kv.import_shard(shard, &junk);
        kv.assert_invariants();
        let mut kv = KvStore::new(o);
        let mut framed = vec![0x81];
        framed.extend_from_slice(&shards.to_le_bytes());
        framed.extend_from_slice(&shard.to_le_bytes());
        framed.extend_from_slice(&junk);
        if kv.import_shard(shard, &framed).is_ok() {
            prop_assert_eq!(kv.export_shard(shard).to_vec(), framed.clone());
        }
        kv.assert_invariants();
        let mut kv = KvStore::new(o);
        framed[0] = 0x82; // the same header as a chunk
        for (first, last) in [(true, true), (false, false)] {
            let _ = kv.import_chunk(shard, &framed, first, last);
            kv.assert_invariants();
        }
    }
}

// ---- session expiry, the cap, and bounded session chunks -------------------

fn opts_sessions(shards: u32, ttl_ms: u64, cap: usize) -> KvOptions {
    KvOptions {
        shards,
        session_ttl_ms: ttl_ms,
        sessions_per_shard_max: cap,
        ..KvOptions::default()
    }
}

/// One step of a replicated history: a client request or a clock stamp,
/// applied in log order.
#[derive(Clone, Debug)]
enum Step {
    Req(ClientRequest),
    Clock(u64),
}

fn apply_steps(kv: &mut KvStore, steps: &[Step]) -> Vec<Option<ClientReply>> {
    steps
        .iter()
        .map(|s| match s {
            Step::Req(r) => Some(kv.apply(r)),
            Step::Clock(ms) => {
                kv.advance_clock(*ms, |_| true);
                None
            }
        })
        .collect()
}

/// Clients 1..=20 write in turn; the clock advances 100 ms per round, and
/// clients 11..=20 go quiet after round 5, so their sessions expire.
fn expiry_history() -> Vec<Step> {
    let mut steps = Vec::new();
    let mut seq = [0u64; 21];
    for round in 0..30u64 {
        steps.push(Step::Clock(1_000 + round * 100));
        for client in 1..=20u64 {
            if client > 10 && round > 5 {
                continue;
            }
            let c = client as usize;
            seq[c] += 1;
            let key = format!("k{}", (client * 7 + round) % 13);
            steps.push(Step::Req(req(
                client,
                seq[c],
                seq[c] - 1,
                append(&key, "x"),
            )));
        }
    }
    steps
}

#[test]
fn expiry_is_the_same_on_every_replica_and_across_snapshot_restore() {
    let o = opts_sessions(8, 1_000, 1 << 20);
    let steps = expiry_history();
    let mut a = KvStore::new(o);
    let replies_a = apply_steps(&mut a, &steps);
    // A second replica, restored from a snapshot taken mid-way (between
    // the stamps that start and finish the expiry), then the same rest.
    for cut in [1, steps.len() / 3, steps.len() / 2, steps.len() - 1] {
        let mut b = KvStore::new(o);
        let mut replies_b = apply_steps(&mut b, &steps[..cut]);
        let mut b = KvStore::restore(&b.snapshot(), o).expect("restores");
        replies_b.extend(apply_steps(&mut b, &steps[cut..]));
        assert_eq!(replies_a, replies_b, "cut at {cut}");
        assert_eq!(a.snapshot(), b.snapshot(), "cut at {cut}");
        assert_eq!(a, b);
    }
    // The quiet clients' sessions are gone everywhere, the others' kept.
    assert_eq!(a.log_time_ms(), 1_000 + 29 * 100);
    let alive: BTreeSet<ClientId> = a
        .shards
        .iter()
        .flat_map(|s| s.sessions.keys().copied())
        .collect();
    assert_eq!(alive, (1..=10).collect());
    assert!(a.shards.iter().any(|s| s.floor == 20));
    a.assert_invariants();
}

#[test]
fn a_delayed_duplicate_after_expiry_is_refused_not_applied_again() {
    let mut kv = KvStore::new(opts_sessions(8, 1_000, 1 << 20));
    kv.advance_clock(10_000, |_| true);
    let write = req(5, 1, 0, append("k", "x"));
    assert_eq!(kv.apply(&write), ok_empty());
    // Within the TTL a duplicate is answered from the cache.
    kv.advance_clock(10_900, |_| true);
    assert_eq!(kv.apply(&write), ok_empty());
    assert_eq!(kv.read(b"k"), ok("x"));
    // Idle for more than the TTL: the session is dropped...
    assert_eq!(kv.advance_clock(12_000, |_| true), 1);
    assert_eq!(kv.stats().sessions, 0);
    // ...and the delayed duplicate gets SessionExpired, not a second "x".
    assert_eq!(kv.apply(&write), ClientReply::SessionExpired);
    assert_eq!(
        kv.apply(&req(5, 2, 1, append("k", "y"))),
        ClientReply::SessionExpired
    );
    assert_eq!(kv.read(b"k"), ok("x"));
    assert_eq!(kv.stats().sessions, 0, "a refused request opens no session");
    // Reads need no session and are never refused.
    assert_eq!(kv.apply(&req(5, 3, 2, get("k"))), ok("x"));
    // A client with an id above the floor (a newer one) is served; one at
    // or below it without a session is refused, even if it never wrote:
    // the price of a one-number memory.
    assert_eq!(kv.apply(&req(6, 1, 0, append("k", "z"))), ok_empty());
    assert_eq!(
        kv.apply(&req(4, 1, 0, append("k", "w"))),
        ClientReply::SessionExpired
    );
    assert_eq!(kv.read(b"k"), ok("xz"));
    kv.assert_invariants();
}

#[test]
fn an_id_claiming_a_time_far_ahead_of_the_log_opens_no_session() {
    let mut kv = KvStore::new(opts_sessions(8, 1_000, 1 << 20));
    let now = 1_800_000_000_000; // ms since 1970
    kv.advance_clock(now, |_| true);
    let ahead = synod_wire::client_id_at(now + CLIENT_AHEAD_MS_MAX + 1_000, 7);
    assert_eq!(
        kv.apply(&req(ahead, 1, 0, put("k", "v"))),
        ClientReply::SessionExpired
    );
    let fine = synod_wire::client_id_at(now + CLIENT_AHEAD_MS_MAX / 2, 7);
    assert_eq!(kv.apply(&req(fine, 1, 0, put("k", "v"))), ok_empty());
    // Nor can such an id, once evicted, push the floor out of reach.
    assert!(kv.shards.iter().all(|s| s.floor < ahead));
}

#[test]
fn the_cap_evicts_the_least_recently_active_session_and_treats_it_as_expired() {
    let mut kv = KvStore::new(opts_sessions(1, 1 << 40, 3));
    let mut t = 1_000;
    for client in [10, 20, 30] {
        t += 10;
        kv.advance_clock(t, |_| true);
        assert_eq!(kv.apply(&req(client, 1, 0, append("k", "a"))), ok_empty());
    }
    // Client 10 writes again: now 20 is the least recently active.
    t += 10;
    kv.advance_clock(t, |_| true);
    assert_eq!(kv.apply(&req(10, 2, 1, append("k", "b"))), ok_empty());
    t += 10;
    kv.advance_clock(t, |_| true);
    assert_eq!(kv.apply(&req(40, 1, 0, append("k", "c"))), ok_empty());
    let alive: BTreeSet<ClientId> = kv.shards[0].sessions.keys().copied().collect();
    assert_eq!(alive, [10, 30, 40].into_iter().collect());
    assert_eq!(kv.shards[0].floor, 20);
    // Client 20's delayed duplicate is refused, not applied twice.
    assert_eq!(
        kv.apply(&req(20, 1, 0, append("k", "a"))),
        ClientReply::SessionExpired
    );
    assert_eq!(kv.read(b"k"), ok("aaabc"));
    // Ties in activity are broken by client id, so every replica evicts
    // the same session whatever its insertion order.
    let mut x = KvStore::new(opts_sessions(1, 1 << 40, 2));
    let mut y = KvStore::new(opts_sessions(1, 1 << 40, 2));
    x.advance_clock(5, |_| true);
    y.advance_clock(5, |_| true);
    for c in [50, 60] {
        x.apply(&req(c, 1, 0, put("k", "v")));
    }
    for c in [60, 50] {
        y.apply(&req(c, 1, 0, put("k", "v")));
    }
    x.apply(&req(70, 1, 0, put("k", "v")));
    y.apply(&req(70, 1, 0, put("k", "v")));
    assert_eq!(x.snapshot(), y.snapshot());
    assert!(!x.shards[0].sessions.contains_key(&50));
    kv.assert_invariants();
}

#[test]
fn expiry_does_bounded_work_per_stamp() {
    let mut kv = KvStore::new(opts_sessions(4, 100, 1 << 20));
    kv.advance_clock(1_000, |_| true);
    let n = EXPIRE_BUDGET as u64 + 500;
    for client in 1..=n {
        kv.apply(&req(client, 1, 0, put(&format!("k{}", client % 50), "v")));
    }
    assert_eq!(kv.advance_clock(2_000, |_| true), EXPIRE_BUDGET);
    assert_eq!(kv.stats().sessions, 500);
    assert_eq!(kv.advance_clock(2_001, |_| true), 500);
    assert_eq!(kv.stats().sessions, 0);
    // A shard that is not live (frozen for a handoff) keeps its sessions.
    kv.apply(&req(n + 1, 1, 0, put("k1", "v")));
    let shard = kv.shard_of_key(b"k1");
    assert_eq!(kv.advance_clock(9_000, |s| s != shard), 0);
    assert_eq!(kv.stats().sessions, 1);
    kv.assert_invariants();
}

#[test]
fn a_shard_with_100k_sessions_moves_in_chunks_each_within_budget() {
    let o = opts_sessions(4, DEFAULT_SESSION_TTL_MS, 200_000);
    let mut source = KvStore::new(o);
    source.advance_clock(1_000, |_| true);
    let key = key_in_shard(4, 2, 0);
    for client in 1..=100_000u64 {
        source.apply(&req(client, 1, 0, append(&key, "")));
    }
    assert_eq!(source.shard_stats(2).sessions, 100_000);
    let budget = 64 << 10;
    let order = source.key_order(2);
    assert_eq!(order.len(), 1 + 100_000);
    let mut target = KvStore::new(o);
    let (mut from, mut chunks, mut largest) = (0, 0, 0);
    loop {
        let chunk = source.export_chunk(&order, from, budget);
        largest = largest.max(chunk.data.len());
        target
            .import_chunk(2, &chunk.data, from == 0, chunk.done)
            .expect("a chunk imports");
        from += chunk.records;
        chunks += 1;
        if chunk.done {
            break;
        }
    }
    // Header, counts and floor (25 bytes), then at most the budget.
    assert!(largest <= 25 + budget, "a chunk of {largest} bytes");
    assert!(chunks >= 50, "only {chunks} chunks");
    assert_eq!(target.export_shard(2), source.export_shard(2));
    target.assert_invariants();
}

#[test]
fn snapshots_and_exports_from_before_expiry_still_restore() {
    // Format 1: no log time, floors or session times. One shard holding
    // key "k" = "v" and client 9's session (acked 3, no cached replies).
    let key = b"k";
    let shards = 1u32;
    let mut v1 = vec![1u8];
    v1.extend_from_slice(&shards.to_le_bytes());
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&(key.len() as u32).to_le_bytes());
    v1.extend_from_slice(key);
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(b"v");
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&9u64.to_le_bytes());
    v1.extend_from_slice(&3u64.to_le_bytes());
    v1.extend_from_slice(&0u32.to_le_bytes());
    let o = opts_sessions(1, 1_000, 100);
    let mut kv = KvStore::restore(&v1, o).expect("format 1 restores");
    assert_eq!(kv.read(b"k"), ok("v"));
    assert_eq!(kv.apply(&req(9, 3, 3, put("k", "again"))), stale());
    // The first stamp counts the restored session as active now, so it
    // lives a TTL more instead of expiring at once.
    assert_eq!(kv.advance_clock(1_700_000_000_000, |_| true), 0);
    assert_eq!(kv.stats().sessions, 1);
    assert_eq!(kv.advance_clock(1_700_000_002_000, |_| true), 1);
    // A whole-shard export of format 0x81 imports too.
    let mut export = vec![0x81u8];
    export.extend_from_slice(&shards.to_le_bytes());
    export.extend_from_slice(&0u32.to_le_bytes());
    export.extend_from_slice(&v1[5..]);
    let mut other = KvStore::new(o);
    other.advance_clock(50_000, |_| true);
    other.import_shard(0, &export).expect("format 0x81 imports");
    assert_eq!(other.read(b"k"), ok("v"));
    assert_eq!(other.shards[0].sessions[&9].last_ms, 50_000);
    other.assert_invariants();
}

/// Memory per session, behind the cap's documented worst case (about 350
/// bytes for a session holding one cached reply; 660 while the replies
/// were a map, most of it a B-tree leaf): `cargo test --release --lib session_memory --
/// --ignored --nocapture`. Ignored by default: RSS is process-wide, so
/// other tests running beside it would skew it.
#[test]
#[ignore]
fn session_memory() {
    fn rss() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 4096
    }
    let mut kv = KvStore::new(opts_sessions(64, DEFAULT_SESSION_TTL_MS, 1 << 20));
    kv.advance_clock(1_000, |_| true);
    let n = 200_000u64;
    let before = rss();
    for client in 1..=n {
        kv.apply(&req(client, 1, 0, put("k", "")));
    }
    let per_session = (rss() - before) / n;
    println!("per session with one cached reply: {per_session} bytes");
    assert_eq!(kv.stats().sessions, n);
    assert!(per_session < 1024, "{per_session} bytes per session");
}

#[test]
fn a_session_evicted_by_a_group_with_a_stale_clock_still_raises_the_floor() {
    let now = 1_800_000_000_000;
    let (first, second) = (
        synod_wire::client_id_at(now, 3),
        synod_wire::client_id_at(now, 4),
    );
    let mut source = KvStore::new(opts_sessions(1, DEFAULT_SESSION_TTL_MS, 100));
    source.advance_clock(now, |_| true);
    assert_eq!(
        source.apply(&req(first, 1, 0, append("k", "x"))),
        ok_empty()
    );
    source.advance_clock(now + 10, |_| true);
    assert_eq!(
        source.apply(&req(second, 1, 0, append("k", "y"))),
        ok_empty()
    );
    // The new owner saw no write for a long time: its log time is stale
    // when the shard arrives, and its cap of 1 evicts the imported session
    // of `first` (the less recently active) at once.
    let mut target = KvStore::new(opts_sessions(1, DEFAULT_SESSION_TTL_MS, 1));
    target.advance_clock(1_000, |_| true);
    target.import_shard(0, &source.export_shard(0)).unwrap();
    assert!(!target.shards[0].sessions.contains_key(&first));
    assert!(target.shards[0].floor >= first);
    // The next write brings a fresh stamp first; the delayed duplicate of
    // `first`'s write is still refused.
    target.advance_clock(now + 20, |_| true);
    assert_eq!(
        target.apply(&req(first, 1, 0, append("k", "x"))),
        ClientReply::SessionExpired
    );
    assert_eq!(target.read(b"k"), ok("xy"));
}

/// The atomic writes decide from the state alone: a replica restored from a
/// snapshot taken midway answers the rest exactly as the one that applied
/// everything, a resent Incr gets its cached answer instead of adding
/// twice, and refusals change nothing.
#[test]
fn atomic_writes_are_deterministic_across_a_snapshot_and_applied_once() {
    let k = || Bytes::from_static(b"n");
    let first = [
        Op::Incr { key: k(), delta: 5 },
        Op::PutIf {
            key: k(),
            value: Bytes::from_static(b"x"),
            cond: PutCond::NotExists,
            get_old: true,
        },
    ];
    let second = [
        Op::Incr {
            key: k(),
            delta: -7,
        },
        Op::PutIf {
            key: k(),
            value: Bytes::from_static(b"9223372036854775807"),
            cond: PutCond::Exists,
            get_old: false,
        },
        Op::Incr { key: k(), delta: 1 },
        Op::GetDel { key: k() },
        Op::GetDel { key: k() },
    ];
    let mut a = KvStore::new(opts(4));
    let mut seq = 0;
    let mut replies = Vec::new();
    for op in first {
        seq += 1;
        replies.push(a.apply(&req(1, seq, 0, op)));
    }
    let mut b = KvStore::restore(&a.snapshot(), opts(4)).expect("restores");
    for op in second {
        seq += 1;
        let r = req(1, seq, 0, op);
        let reply = a.apply(&r);
        assert_eq!(b.apply(&r), reply, "{r:?}");
        replies.push(reply);
    }
    assert_eq!(a, b);
    let err = |reason: &str| ClientReply::Error {
        reason: reason.into(),
    };
    assert_eq!(
        replies,
        vec![
            ok("5"),
            ok("015"),
            ok("-2"),
            ok("1"),
            err("increment or decrement would overflow"),
            ok("19223372036854775807"),
            ok("0"),
        ]
    );
    // A resend of the first Incr (seq 1, not yet acknowledged) is answered
    // from the cache: nothing is added again.
    assert_eq!(
        a.apply(&req(1, 1, 0, Op::Incr { key: k(), delta: 5 })),
        ok("5")
    );
    assert_eq!(a.read(b"n"), ClientReply::NoKey);
}

// ---- per-key versions ------------------------------------------------------

#[test]
fn a_write_gives_its_key_the_next_revision_and_a_duplicate_does_not() {
    let mut kv = KvStore::new(opts(8));
    assert_eq!(kv.version(b"a"), 0, "an absent key is at version 0");
    kv.apply(&req(1, 1, 0, put("a", "x")));
    assert_eq!((kv.version(b"a"), kv.revision()), (1, 1));
    kv.apply(&req(1, 2, 0, put("b", "y")));
    kv.apply(&req(1, 3, 0, append("a", "z")));
    assert_eq!((kv.version(b"a"), kv.version(b"b")), (3, 2));
    // A resent write is answered from the cache and writes nothing.
    kv.apply(&req(1, 3, 0, append("a", "z")));
    assert_eq!((kv.version(b"a"), kv.revision()), (3, 3));
    // A Get changes no version; a Delete makes the key absent again.
    kv.apply(&req(1, 4, 0, get("a")));
    assert_eq!(kv.revision(), 3);
    kv.apply(&req(1, 5, 0, delete("a")));
    assert_eq!(kv.version(b"a"), 0);
    kv.apply(&req(1, 6, 0, put("a", "again")));
    assert_eq!(
        kv.version(b"a"),
        5,
        "a recreated key never gets an old version back"
    );
}

#[test]
fn versions_survive_snapshots_and_move_with_a_shard() {
    let mut source = KvStore::new(opts(8));
    let keys: Vec<String> = (0..5).map(|i| key_in_shard(8, 3, i)).collect();
    for (i, k) in keys.iter().enumerate() {
        source.apply(&req(1, 1 + i as u64, 0, put(k, k)));
    }
    let restored = KvStore::restore(&source.snapshot(), opts(8)).unwrap();
    assert_eq!(restored, source);
    assert_eq!(restored.version(keys[4].as_bytes()), 5);
    // The new owner's revision rises to the shard's highest version, so its
    // next write to a moved key gives a version the key never had.
    let mut whole = KvStore::new(opts(8));
    whole.import_shard(3, &source.export_shard(3)).unwrap();
    assert_eq!(whole.version(keys[2].as_bytes()), 3);
    assert_eq!(whole.revision(), 5);
    whole.apply(&req(2, 1, 0, put(&keys[0], "new")));
    assert_eq!(whole.version(keys[0].as_bytes()), 6);
    let mut chunked = KvStore::new(opts(8));
    move_in_chunks(&source, &mut chunked, 30);
    assert_eq!(chunked.version(keys[4].as_bytes()), 5);
    assert_eq!(chunked.revision(), 5);
}

#[test]
fn a_snapshot_of_format_2_restores_every_key_at_version_1() {
    let mut kv = KvStore::new(opts(1));
    kv.apply(&req(1, 1, 0, put("a", "x")));
    kv.apply(&req(1, 2, 0, put("a", "y")));
    // Format 2 is format 4 without the revision, the per-key versions
    // and the expiry times.
    let v3 = super::snapshot::as_format_4(&kv.snapshot());
    let mut v2 = vec![2u8];
    v2.extend_from_slice(&v3[1..1 + 4 + 8 + 4]);
    let body = &v3[1 + 4 + 8 + 4 + 8..];
    // One entry: count, key, value, version and expiry (dropped), then
    // the rest.
    let (count_key_value, rest) = body.split_at(4 + 4 + 1 + 4 + 1);
    v2.extend_from_slice(count_key_value);
    v2.extend_from_slice(&rest[16..]);
    let old = KvStore::restore(&v2, opts(1)).unwrap();
    assert_eq!(old.read(b"a"), ok("y"));
    assert_eq!((old.version(b"a"), old.revision()), (1, 1));
}

// ---- transactions ----------------------------------------------------------

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn txn(compares: Vec<Compare>, success: Vec<Op>, failure: Vec<Op>) -> Op {
    Op::Txn(Box::new(Txn {
        compares,
        success,
        failure,
    }))
}

fn version_is(key: &str, op: CompareOp, v: u64) -> Compare {
    Compare {
        key: b(key),
        op,
        target: CompareTarget::Version(v),
    }
}

fn txn_result(reply: ClientReply) -> TxnResult {
    match reply {
        ClientReply::Ok(v) => synod_wire::decode_txn_result(v).expect("a transaction result"),
        other => panic!("not a transaction result: {other:?}"),
    }
}

#[test]
fn a_transaction_runs_one_branch_atomically_at_one_version() {
    let mut kv = KvStore::new(opts(8));
    kv.apply(&req(1, 1, 0, put("a", "10")));
    kv.apply(&req(1, 2, 0, put("b", "x")));
    let transfer = txn(
        vec![
            version_is("a", CompareOp::Eq, 1),
            Compare {
                key: b("b"),
                op: CompareOp::Eq,
                target: CompareTarget::Value(b("x")),
            },
        ],
        vec![incr("a", -4), append("b", "y"), get("b"), get("nothing")],
        vec![get("a")],
    );
    let result = txn_result(kv.apply(&req(1, 3, 0, transfer.clone())));
    assert!(result.succeeded);
    assert_eq!(
        result.results,
        vec![
            TxnOpResult::Ok {
                value: b("6"),
                version: 3
            },
            TxnOpResult::Ok {
                value: b(""),
                version: 3
            },
            TxnOpResult::Ok {
                value: b("xy"),
                version: 3
            },
            TxnOpResult::NoKey,
        ],
        "reads see the transaction's own earlier writes"
    );
    assert_eq!(
        (kv.version(b"a"), kv.version(b"b"), kv.revision()),
        (3, 3, 3)
    );
    // A resend is answered from the session, not run again.
    assert!(txn_result(kv.apply(&req(1, 3, 0, transfer.clone()))).succeeded);
    assert_eq!(kv.read(b"a"), ok("6"));
    // The same compares now fail (a's version moved): the other branch.
    let result = txn_result(kv.apply(&req(1, 4, 0, transfer)));
    assert!(!result.succeeded);
    assert_eq!(
        result.results,
        vec![TxnOpResult::Ok {
            value: b("6"),
            version: 3
        }]
    );
    assert_eq!(kv.read(b"b"), ok("xy"));
}

#[test]
fn compares_on_absent_keys_and_refused_operations() {
    let mut kv = KvStore::new(opts(8));
    // Version 0 is "absent"; a value compare on an absent key never holds.
    let create = txn(
        vec![version_is("k", CompareOp::Eq, 0)],
        vec![put("k", "v")],
        vec![],
    );
    assert!(txn_result(kv.apply(&req(1, 1, 0, create.clone()))).succeeded);
    assert!(!txn_result(kv.apply(&req(1, 2, 0, create))).succeeded);
    let ne_absent = txn(
        vec![Compare {
            key: b("absent"),
            op: CompareOp::Ne,
            target: CompareTarget::Value(b("v")),
        }],
        vec![],
        vec![],
    );
    assert!(!txn_result(kv.apply(&req(1, 3, 0, ne_absent))).succeeded);
    // An Incr of a non-integer is refused inside; the rest still runs.
    let mixed = txn(vec![], vec![incr("k", 1), put("j", "w")], vec![]);
    let result = txn_result(kv.apply(&req(1, 4, 0, mixed)));
    assert!(matches!(result.results[0], TxnOpResult::Error { .. }));
    assert_eq!(kv.read(b"j"), ok("w"));
    // Empty and malformed transactions are refused without a session.
    let sessions = kv.stats().sessions;
    let empty = req(9, 1, 0, txn(vec![], vec![], vec![]));
    assert!(matches!(kv.apply(&empty), ClientReply::Error { .. }));
    let nested = req(
        9,
        1,
        0,
        txn(vec![], vec![Op::GetDel { key: b("k") }], vec![]),
    );
    assert!(matches!(kv.apply(&nested), ClientReply::Error { .. }));
    assert_eq!(kv.stats().sessions, sessions, "client 9 opened none");
}

#[test]
fn the_planted_bug_ignores_compares() {
    let mut kv = KvStore::new(KvOptions {
        planted_txn_ignore_compares: true,
        ..opts(8)
    });
    let never = txn(
        vec![version_is("k", CompareOp::Eq, 99)],
        vec![put("k", "v")],
        vec![],
    );
    assert!(txn_result(kv.apply(&req(1, 1, 0, never))).succeeded);
}

fn incr(key: &str, delta: i64) -> Op {
    Op::Incr { key: b(key), delta }
}

/// A transaction of up to 3 compares and 4 operations per branch on keys
/// `t0`..`t3`, with targets near the values and versions they will meet.
fn arb_txn() -> impl Strategy<Value = Txn> {
    let key = (0u8..4).prop_map(|k| b(&format!("t{k}")));
    let op = prop_oneof![
        key.clone().prop_map(|key| Op::Get { key }),
        (key.clone(), 0u8..3).prop_map(|(key, v)| Op::Put {
            key,
            value: b(&v.to_string())
        }),
        (key.clone(), 0u8..3).prop_map(|(key, v)| Op::Append {
            key,
            value: b(&v.to_string())
        }),
        key.clone().prop_map(|key| Op::Delete { key }),
        (key.clone(), -2i64..3).prop_map(|(key, delta)| Op::Incr { key, delta }),
    ];
    let compare = (
        key,
        0u8..4,
        prop_oneof![
            (0u8..3).prop_map(|v| CompareTarget::Value(b(&v.to_string()))),
            (0u64..8).prop_map(CompareTarget::Version),
        ],
    )
        .prop_map(|(key, op, target)| Compare {
            key,
            op: CompareOp::from_code(op).unwrap(),
            target,
        });
    (
        proptest::collection::vec(compare, 0..3),
        proptest::collection::vec(op.clone(), 0..4),
        proptest::collection::vec(op, 0..4),
    )
        .prop_map(|(compares, success, failure)| Txn {
            compares,
            success,
            failure,
        })
        .prop_filter("a transaction needs a key", |t| t.invalid().is_none())
}

/// What a map of `(value, version)` and a revision counter say a
/// transaction answers, written independently of `kv::txn`.
fn model_txn(
    model: &mut BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    revision: &mut u64,
    txn: &Txn,
) -> TxnResult {
    *revision += 1;
    let holds = |m: &BTreeMap<Vec<u8>, (Vec<u8>, u64)>, c: &Compare| {
        let entry = m.get(&c.key[..]);
        match &c.target {
            CompareTarget::Version(v) => c.op.holds(entry.map_or(0, |e| e.1).cmp(v)),
            CompareTarget::Value(v) => entry.is_some_and(|e| c.op.holds(e.0[..].cmp(&v[..]))),
        }
    };
    let succeeded = txn.compares.iter().all(|c| holds(model, c));
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let mut results = Vec::new();
    for op in ops {
        // The single-op model, on values only; versions follow writes.
        let mut values: BTreeMap<Vec<u8>, Vec<u8>> = model
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        let before = values.get(&op.key()[..]).cloned();
        let reply = model_apply(&mut values, op);
        let after = values.get(&op.key()[..]).cloned();
        let key = op.key().to_vec();
        let wrote = !matches!(op, Op::Get { .. }) && !matches!(reply, ClientReply::Error { .. });
        match after {
            Some(v) if wrote => {
                model.insert(key.clone(), (v, *revision));
            }
            None => {
                model.remove(&key);
            }
            Some(_) => assert_eq!(before.is_some(), model.contains_key(&key)),
        }
        let version = model.get(&key).map_or(0, |e| e.1);
        results.push(match reply {
            ClientReply::Ok(value) => TxnOpResult::Ok { value, version },
            ClientReply::NoKey => TxnOpResult::NoKey,
            ClientReply::Error { reason } => TxnOpResult::Error { reason },
            other => panic!("model answered {other:?}"),
        });
    }
    TxnResult { succeeded, results }
}

proptest! {
    #![proptest_config(persisted_beside_source())]
    #[test]
    fn transactions_match_a_versioned_map(txns in proptest::collection::vec(arb_txn(), 1..40)) {
        let mut kv = KvStore::new(opts(4));
        let mut model = BTreeMap::new();
        let mut revision = 0;
        for (i, t) in txns.iter().enumerate() {
            let reply = kv.apply(&req(1, 1 + i as u64, i as u64, Op::Txn(Box::new(t.clone()))));
            let expected = model_txn(&mut model, &mut revision, t);
            prop_assert_eq!(txn_result(reply), expected);
            for (k, (v, version)) in &model {
                prop_assert_eq!(kv.read(k), ClientReply::Ok(Bytes::copy_from_slice(v)));
                prop_assert_eq!(kv.version(k), *version);
            }
        }
        kv.assert_invariants();
    }
}

/// Memory per key of the store (issue 15): 1M keys `k<i>` of 64-byte
/// values, as `perf/memory.sh` loads them, measured as the growth of the
/// heap in use (glibc's `mallinfo2`, so chunk headers and rounding count,
/// pages not yet returned do not), after the fill, and after a snapshot and
/// a restore from it (the recovery path). `cargo test --release --lib
/// key_memory -- --ignored --nocapture`. Ignored by default: the heap is
/// process-wide, so other tests running beside it would skew it.
#[test]
#[ignore]
fn key_memory() {
    fn heap() -> u64 {
        // SAFETY: mallinfo2 only reads the allocator's counters.
        unsafe { libc::mallinfo2() }.uordblks as u64
    }
    let n = 1_000_000u64;
    let value = "x".repeat(64);
    let base = heap();
    let mut kv = KvStore::new(opts(DEFAULT_SHARDS));
    kv.advance_clock(1_000, |_| true);
    // 100 clients, each acknowledging its previous write, like the bench.
    for i in 0..n {
        let client = 1 + i % 100;
        let seq = 1 + i / 100;
        kv.apply(&req(client, seq, seq - 1, put(&format!("k{i}"), &value)));
    }
    let filled = heap() - base;
    let snap = kv.snapshot();
    drop(kv);
    let before_restore = heap();
    let restored = KvStore::restore(&snap, opts(DEFAULT_SHARDS)).unwrap();
    let restored_bytes = heap() - before_restore;
    println!(
        "per key: filled {} B, snapshot {} B, restored {} B",
        filled / n,
        snap.len() as u64 / n,
        restored_bytes / n
    );
    assert_eq!(restored.stats().keys, n);
    // Measured 176 and 136 (221 and 225 before issue 15's layout); the
    // margin is for allocator differences, not for a regression.
    assert!(filled / n <= 190, "{} B/key after the fill", filled / n);
    assert!(
        restored_bytes / n <= 150,
        "{} B/key restored",
        restored_bytes / n
    );
}

/// Client ids that differ only in their high bits, or only in their low
/// bits (a client can choose them so), spread over hashbrown's buckets
/// (the hash's low bits) and tags (its top 7) under every seed tried:
/// with a plain multiplication the first kind would all share one bucket,
/// and with one folded multiply they filled under half for some seeds.
#[test]
fn client_ids_sharing_low_bits_spread_over_buckets() {
    use std::hash::BuildHasher;
    let mut rng = crate::rng::Rng::new(15);
    for _ in 0..64 {
        let hash = super::shard::ClientIdHash::with_seed(rng.next_u64());
        for shift in [0, 20, 32, 54] {
            let ids = (0u64..1024).map(|i| i << shift);
            let hashes: Vec<u64> = ids.map(|id| hash.hash_one(id)).collect();
            let buckets: BTreeSet<u64> = hashes.iter().map(|h| h & 1023).collect();
            // A random function fills about 1 - 1/e of them (647).
            assert!(
                buckets.len() > 580,
                "shift {shift}: {} of 1024 buckets",
                buckets.len()
            );
            let tags: BTreeSet<u64> = hashes.iter().map(|h| h >> 57).collect();
            assert!(
                tags.len() > 115,
                "shift {shift}: {} of 128 tags",
                tags.len()
            );
        }
    }
}

/// CPU per put of the apply path alone, in the load generator's shape
/// (64 clients with 16 writes in flight each, 10,000 keys over 64 shards,
/// 64-byte values, log time advancing a millisecond per 100 writes):
/// `cargo test --release --lib apply_cost -- --ignored --nocapture`.
/// Every replica runs this for every write. Ignored by default: it prints
/// a timing, asserts only that the writes applied.
#[test]
#[ignore]
fn apply_cost() {
    let clients = 64u64;
    let window = 16u64;
    let keys: Vec<Bytes> = (0..10_000)
        .map(|i| Bytes::from(format!("key:{i:08}")))
        .collect();
    let value = Bytes::from(vec![b'v'; 64]);
    let now = 1_800_000_000_000;
    let ids: Vec<ClientId> = (0..clients)
        .map(|c| synod_wire::client_id_at(now, c))
        .collect();
    let mut kv = KvStore::new(opts(64));
    let mut rng = crate::rng::Rng::new(7);
    let writes = 2_000_000u64;
    let mut reqs = Vec::with_capacity(writes as usize);
    for i in 0..writes {
        let c = i % clients;
        let seq = i / clients + 1;
        let key = keys[rng.range(0, keys.len() as u64) as usize].clone();
        let op = Op::Put {
            key,
            value: value.clone(),
        };
        reqs.push(req(ids[c as usize], seq, seq.saturating_sub(window), op));
    }
    let mut clock = now;
    kv.advance_clock(clock, |_| true);
    let started = std::time::Instant::now();
    for (i, r) in reqs.iter().enumerate() {
        if i % 100 == 0 {
            clock += 1;
            kv.advance_clock(clock, |_| true);
        }
        assert_eq!(kv.apply_printed(r, 1), ClientReply::Ok(Bytes::new()));
    }
    let took = started.elapsed();
    println!(
        "apply_cost: {} puts in {:?}: {:.0} ns per put",
        writes,
        took,
        took.as_nanos() as f64 / writes as f64
    );
}

proptest! {
    #![proptest_config(persisted_beside_source())]
    /// The activity order is filed lazily (a write does not re-file its
    /// session), yet the cap and expiry drop exactly the sessions an
    /// eagerly kept order would: checked against a model that keeps every
    /// session's last activity and drops the least `(last_ms, client)`,
    /// and against a replica restored from a snapshot midway (whose order
    /// is filed afresh).
    #[test]
    fn the_lazy_activity_order_drops_what_an_exact_one_would(
        steps in proptest::collection::vec((0u64..8, 0u64..400), 1..120),
        cut in 0usize..120,
    ) {
        let (cap, ttl) = (3, 500);
        let o = opts_sessions(1, ttl, cap);
        let mut kv = KvStore::new(o);
        let mut restored: Option<KvStore> = None;
        let mut model: BTreeMap<ClientId, u64> = BTreeMap::new();
        let mut floor: ClientId = 0;
        let mut seqs = [0u64; 8];
        let mut now = 1_000u64;
        for (i, &(c, dt)) in steps.iter().enumerate() {
            if i == cut.min(steps.len() - 1) {
                restored = Some(KvStore::restore(&kv.snapshot(), o).expect("restores"));
            }
            now += dt;
            let client = 100 + c;
            // Model: expiry at the stamp, oldest first.
            let mut idle: Vec<(u64, ClientId)> = model
                .iter()
                .filter(|(_, &last)| now - last > ttl)
                .map(|(&c, &l)| (l, c))
                .collect();
            idle.sort_unstable();
            for (_, gone) in idle {
                model.remove(&gone);
                floor = floor.max(gone);
            }
            seqs[c as usize] += 1;
            let seq = seqs[c as usize];
            let expected = if let Some(last) = model.get_mut(&client) {
                *last = now;
                ok_empty()
            } else if client <= floor {
                ClientReply::SessionExpired
            } else {
                model.insert(client, now);
                while model.len() > cap {
                    let (_, victim) = model
                        .iter()
                        .filter(|(&c, _)| c != client)
                        .map(|(&c, &l)| (l, c))
                        .min()
                        .expect("more than one");
                    model.remove(&victim);
                    floor = floor.max(victim);
                }
                ok_empty()
            };
            let r = req(client, seq, seq - 1, append("k", "x"));
            for store in std::iter::once(&mut kv).chain(restored.as_mut()) {
                store.advance_clock(now, |_| true);
                prop_assert_eq!(store.apply(&r), expected.clone());
                let live: BTreeMap<ClientId, u64> = store.shards[0]
                    .sessions
                    .iter()
                    .map(|(&c, s)| (c, s.last_ms))
                    .collect();
                prop_assert_eq!(&live, &model);
                prop_assert_eq!(store.shards[0].floor, floor);
                store.assert_invariants();
            }
        }
        if let Some(b) = restored {
            prop_assert_eq!(kv.snapshot(), b.snapshot());
        }
    }
}
