//! Key expiry in log time: replies against an independent model, reads of
//! expired keys, bounded background removal, snapshots and migration
//! chunks carrying expiry, and older formats still restoring.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use synod_wire::{ClientReply, ClientRequest, ExpireCond, Expiry, Op, PutCond};

use super::*;

fn opts(shards: u32) -> KvOptions {
    KvOptions {
        shards,
        ..KvOptions::default()
    }
}

/// A client id plausible at log time 0 (its time part is 0).
const CLIENT: u64 = 7;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn ok(s: &str) -> ClientReply {
    ClientReply::Ok(b(s))
}

struct Driver {
    kv: KvStore,
    seq: u64,
}

impl Driver {
    fn new(shards: u32) -> Driver {
        Driver {
            kv: KvStore::new(opts(shards)),
            seq: 0,
        }
    }

    fn run(&mut self, op: Op) -> ClientReply {
        self.seq += 1;
        self.kv.apply(&ClientRequest {
            client_id: CLIENT,
            seq: self.seq,
            ack_seq: self.seq - 1,
            op,
        })
    }

    fn clock(&mut self, ms: u64) -> usize {
        self.kv.advance_clock(ms, |_| true);
        self.kv.expire_keys(|_| true)
    }

    fn get(&self, key: &str) -> ClientReply {
        self.kv.read_op(&Op::Get { key: b(key) })
    }

    fn ttl(&self, key: &str) -> ClientReply {
        self.kv.read_op(&Op::Ttl { key: b(key) })
    }
}

fn put_ex(key: &str, value: &str, cond: PutCond, get_old: bool, expiry: Expiry) -> Op {
    Op::PutEx {
        key: b(key),
        value: b(value),
        cond,
        get_old,
        expiry,
    }
}

fn expire(key: &str, expiry: Expiry, cond: ExpireCond) -> Op {
    Op::Expire {
        key: b(key),
        expiry,
        cond,
    }
}

#[test]
fn a_key_reads_absent_once_log_time_reaches_its_deadline() {
    let mut d = Driver::new(4);
    d.clock(1_000);
    assert_eq!(
        d.run(put_ex("k", "v", PutCond::Any, false, Expiry::In(500))),
        ok("1")
    );
    assert_eq!(d.get("k"), ok("v"));
    assert_eq!(d.ttl("k"), ok("500"));
    d.kv.advance_clock(1_499, |_| false);
    assert_eq!(d.ttl("k"), ok("1"));
    // Log time reaches the deadline: absent at once, before any removal
    // (no shard is live for the background pass here).
    d.kv.advance_clock(1_500, |_| false);
    assert_eq!(d.get("k"), ClientReply::NoKey);
    assert_eq!(d.ttl("k"), ClientReply::NoKey);
    assert_eq!(d.kv.version(b"k"), 0);
    assert_eq!(d.kv.stats().keys, 1, "not removed yet");
    // A write sees it absent too: SET NX succeeds.
    assert_eq!(
        d.run(put_ex("k", "w", PutCond::NotExists, true, Expiry::Persist)),
        ok("10")
    );
    assert_eq!(d.ttl("k"), ok("-1"));
    d.kv.assert_invariants();
}

#[test]
fn background_removal_is_bounded_per_stamp_and_resumes() {
    let mut d = Driver::new(4);
    d.clock(10);
    let keys = KEY_EXPIRE_BUDGET * 2 + 5;
    for i in 0..keys {
        d.run(put_ex(
            &format!("k{i}"),
            "v",
            PutCond::Any,
            false,
            Expiry::At(100),
        ));
    }
    assert_eq!(d.kv.stats().keys, keys as u64);
    d.kv.advance_clock(100, |_| false);
    assert_eq!(d.kv.expire_keys(|_| true), KEY_EXPIRE_BUDGET);
    assert_eq!(d.kv.expire_keys(|_| true), KEY_EXPIRE_BUDGET);
    assert_eq!(d.kv.expire_keys(|_| true), 5);
    assert_eq!(d.kv.expire_keys(|_| true), 0);
    assert_eq!(d.kv.stats().keys, 0);
    d.kv.assert_invariants();
}

#[test]
fn frozen_shards_keep_their_expired_keys_until_live() {
    let mut d = Driver::new(2);
    d.clock(10);
    d.run(put_ex("a", "v", PutCond::Any, false, Expiry::At(50)));
    d.kv.advance_clock(60, |_| false);
    assert_eq!(d.kv.stats().keys, 1);
    assert_eq!(d.get("a"), ClientReply::NoKey);
    d.kv.advance_clock(70, |_| true);
    assert_eq!(d.kv.stats().keys, 0);
}

#[test]
fn set_clears_expiry_keepttl_keeps_it_append_and_incr_keep_it() {
    let mut d = Driver::new(4);
    d.clock(1_000);
    d.run(put_ex("k", "1", PutCond::Any, false, Expiry::In(100)));
    d.run(put_ex("k", "2", PutCond::Any, false, Expiry::Keep));
    assert_eq!(d.ttl("k"), ok("100"));
    d.run(Op::Incr {
        key: b("k"),
        delta: 5,
    });
    assert_eq!(d.get("k"), ok("7"));
    assert_eq!(d.ttl("k"), ok("100"));
    d.run(Op::Append {
        key: b("k"),
        value: b("x"),
    });
    assert_eq!(d.ttl("k"), ok("100"));
    d.run(Op::Put {
        key: b("k"),
        value: b("p"),
    });
    assert_eq!(d.ttl("k"), ok("-1"));
    d.run(put_ex("k", "q", PutCond::Any, false, Expiry::In(100)));
    d.run(Op::PutIf {
        key: b("k"),
        value: b("r"),
        cond: PutCond::Any,
        get_old: false,
    });
    assert_eq!(d.ttl("k"), ok("-1"), "SET without KEEPTTL clears");
    // KEEPTTL on an absent key: no expiry.
    d.run(put_ex("n", "v", PutCond::Any, false, Expiry::Keep));
    assert_eq!(d.ttl("n"), ok("-1"));
    d.kv.assert_invariants();
}

#[test]
fn a_deadline_already_past_deletes_the_key() {
    let mut d = Driver::new(4);
    d.clock(1_000);
    d.run(put_ex("k", "v", PutCond::Any, false, Expiry::Persist));
    assert_eq!(
        d.run(put_ex("k", "w", PutCond::Any, true, Expiry::At(5))),
        ok("11v")
    );
    assert_eq!(d.get("k"), ClientReply::NoKey);
    d.run(put_ex("k", "v", PutCond::Any, false, Expiry::Persist));
    assert_eq!(
        d.run(expire("k", Expiry::In(0), ExpireCond::Always)),
        ok("1")
    );
    assert_eq!(d.get("k"), ClientReply::NoKey);
    assert_eq!(d.kv.stats().keys, 0);
    d.kv.assert_invariants();
}

#[test]
fn expire_conditions_follow_redis_7() {
    let mut d = Driver::new(4);
    d.clock(1_000);
    assert_eq!(
        d.run(expire("k", Expiry::In(10), ExpireCond::Always)),
        ok("0")
    );
    d.run(put_ex("k", "v", PutCond::Any, false, Expiry::Persist));
    // No expiry: XX and GT fail, NX and LT hold.
    assert_eq!(d.run(expire("k", Expiry::In(50), ExpireCond::Xx)), ok("0"));
    assert_eq!(d.run(expire("k", Expiry::In(50), ExpireCond::Gt)), ok("0"));
    assert_eq!(d.run(expire("k", Expiry::In(50), ExpireCond::Lt)), ok("1"));
    assert_eq!(d.ttl("k"), ok("50"));
    assert_eq!(d.run(expire("k", Expiry::In(10), ExpireCond::Nx)), ok("0"));
    assert_eq!(d.run(expire("k", Expiry::In(80), ExpireCond::Lt)), ok("0"));
    assert_eq!(d.run(expire("k", Expiry::In(80), ExpireCond::Gt)), ok("1"));
    assert_eq!(d.ttl("k"), ok("80"));
    assert_eq!(
        d.run(expire("k", Expiry::At(1_020), ExpireCond::Xx)),
        ok("1")
    );
    assert_eq!(d.ttl("k"), ok("20"));
    // PERSIST: 1 once, then 0.
    assert_eq!(
        d.run(expire("k", Expiry::Persist, ExpireCond::Always)),
        ok("1")
    );
    assert_eq!(
        d.run(expire("k", Expiry::Persist, ExpireCond::Always)),
        ok("0")
    );
    assert_eq!(d.ttl("k"), ok("-1"));
    d.kv.assert_invariants();
}

#[test]
fn getex_reads_and_sets_expiry_in_one_write() {
    let mut d = Driver::new(4);
    d.clock(1_000);
    assert_eq!(
        d.run(Op::GetEx {
            key: b("k"),
            expiry: Expiry::In(5)
        }),
        ok("0")
    );
    d.run(put_ex("k", "v", PutCond::Any, false, Expiry::Persist));
    let v1 = d.kv.version(b"k");
    assert_eq!(
        d.run(Op::GetEx {
            key: b("k"),
            expiry: Expiry::In(5)
        }),
        ok("1v")
    );
    assert_eq!(d.ttl("k"), ok("5"));
    assert!(d.kv.version(b"k") > v1, "an expiry change is a write");
    assert_eq!(
        d.run(Op::GetEx {
            key: b("k"),
            expiry: Expiry::Persist
        }),
        ok("1v")
    );
    assert_eq!(d.ttl("k"), ok("-1"));
}

#[test]
fn a_duplicate_expiry_write_is_answered_from_its_session() {
    let mut d = Driver::new(4);
    d.clock(1_000);
    d.run(put_ex("k", "v", PutCond::Any, false, Expiry::Persist));
    let r = ClientRequest {
        client_id: CLIENT,
        seq: 50,
        ack_seq: d.seq,
        op: expire("k", Expiry::Persist, ExpireCond::Always),
    };
    d.run(expire("k", Expiry::In(100), ExpireCond::Always));
    let first = d.kv.apply(&r);
    assert_eq!(first, ok("1"));
    // The resend is not run again (it would answer 0).
    assert_eq!(d.kv.apply(&r), first);
}

#[test]
fn expiry_survives_snapshot_restore_and_a_chunked_move() {
    let mut d = Driver::new(4);
    d.clock(1_000);
    for i in 0..40 {
        let expiry = match i % 3 {
            0 => Expiry::Persist,
            1 => Expiry::In(100 + i),
            _ => Expiry::At(5_000 + i),
        };
        d.run(put_ex(&format!("k{i}"), "v", PutCond::Any, false, expiry));
    }
    let snap = d.kv.snapshot();
    assert_eq!(snap[0], 6, "snapshot format 6");
    let v4 = super::snapshot::as_format_4(&snap);
    assert_eq!(
        KvStore::restore(&v4, opts(4)).expect("format 4 restores"),
        d.kv
    );
    let restored = KvStore::restore(&snap, opts(4)).expect("restores");
    assert_eq!(restored, d.kv);
    assert_eq!(restored.snapshot(), snap);
    // Move every shard in small chunks to a fresh store.
    let mut to = KvStore::new(opts(4));
    to.advance_clock(1_000, |_| true);
    for shard in 0..4 {
        let order = d.kv.key_order(shard);
        let mut cursor = 0;
        loop {
            let chunk = d.kv.export_chunk(&order, cursor, 16);
            to.import_chunk(shard, &chunk.data, cursor == 0, chunk.done)
                .expect("imports");
            cursor += chunk.records;
            if chunk.done {
                break;
            }
        }
        let whole = d.kv.export_shard(shard);
        let mut other = KvStore::new(opts(4));
        other.import_shard(shard, &whole).expect("imports");
        for i in 0..40 {
            let key = format!("k{i}");
            if d.kv.shard_of_key(key.as_bytes()) == shard {
                let op = Op::Ttl { key: b(&key) };
                assert_eq!(
                    other.shards[shard as usize].expiry_of(key.as_bytes()),
                    d.kv.shards[shard as usize].expiry_of(key.as_bytes())
                );
                assert_eq!(to.read_op(&op), d.kv.read_op(&op), "{key}");
            }
        }
        other.assert_invariants();
    }
    to.assert_invariants();
    // And they expire at the new owner by its log time.
    to.advance_clock(1_120, |_| true);
    assert_eq!(to.read_op(&Op::Get { key: b("k1") }), ClientReply::NoKey);
    assert_eq!(to.read_op(&Op::Get { key: b("k0") }), ok("v"));
}

#[test]
fn snapshot_format_3_still_restores_without_expiry() {
    let mut d = Driver::new(2);
    d.clock(1_000);
    d.run(Op::Put {
        key: b("a"),
        value: b("1"),
    });
    d.run(Op::Put {
        key: b("b"),
        value: b("2"),
    });
    let v4 = super::snapshot::as_format_4(&d.kv.snapshot());
    // Rewrite as format 3: drop each entry's trailing expires_ms (all 0).
    let mut v3 = vec![3u8];
    let mut at = 1;
    v3.extend_from_slice(&v4[at..at + 4 + 8 + 4 + 8]);
    at += 4 + 8 + 4 + 8;
    for _ in 0..2 {
        let n = u32::from_le_bytes(v4[at..at + 4].try_into().unwrap());
        v3.extend_from_slice(&v4[at..at + 4]);
        at += 4;
        for _ in 0..n {
            let klen = u32::from_le_bytes(v4[at..at + 4].try_into().unwrap()) as usize;
            let vlen_at = at + 4 + klen;
            let vlen = u32::from_le_bytes(v4[vlen_at..vlen_at + 4].try_into().unwrap()) as usize;
            let end = vlen_at + 4 + vlen + 8;
            v3.extend_from_slice(&v4[at..end]);
            assert_eq!(&v4[end..end + 8], &[0; 8]);
            at = end + 8;
        }
        // floor, then sessions: copy up to the next shard by re-encoding
        // length is not needed: take the floor and the sessions as is.
        let floor_end = at + 8;
        let sessions = u32::from_le_bytes(v4[floor_end..floor_end + 4].try_into().unwrap());
        let mut end = floor_end + 4;
        for _ in 0..sessions {
            end += 8 + 8 + 8;
            let replies = u32::from_le_bytes(v4[end..end + 4].try_into().unwrap());
            end += 4;
            for _ in 0..replies {
                end += 8;
                if v4[end] == 8 {
                    end += 1 + 4; // the request's print
                }
                let tag = v4[end];
                end += 1;
                assert_eq!(tag, 0, "only Ok replies here");
                let len = u32::from_le_bytes(v4[end..end + 4].try_into().unwrap()) as usize;
                end += 4 + len;
            }
        }
        v3.extend_from_slice(&v4[at..end]);
        at = end;
    }
    assert_eq!(at, v4.len());
    let restored = KvStore::restore(&v3, opts(2)).expect("format 3 restores");
    assert_eq!(restored, d.kv);
}

/// An independent model: value and absolute deadline (0 none) per key.
#[derive(Default)]
struct Model {
    keys: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
}

impl Model {
    fn live(&mut self, key: &[u8], now: u64) -> Option<&mut (Vec<u8>, u64)> {
        if self
            .keys
            .get(key)
            .is_some_and(|(_, t)| *t != 0 && *t <= now)
        {
            self.keys.remove(key);
        }
        self.keys.get_mut(key)
    }

    fn at(e: Expiry, now: u64, keep: u64) -> u64 {
        match e {
            Expiry::Keep => keep,
            Expiry::Persist => 0,
            Expiry::In(ms) => (now + ms).max(1),
            Expiry::At(ms) => ms.max(1),
        }
    }

    fn apply(&mut self, op: &Op, now: u64) -> ClientReply {
        let key = op.key().to_vec();
        let present = |x: Option<&Vec<u8>>| match x {
            Some(v) => [&b"1"[..], v].concat(),
            None => b"0".to_vec(),
        };
        match op {
            Op::Get { .. } => match self.live(&key, now) {
                Some((v, _)) => ClientReply::Ok(Bytes::from(v.clone())),
                None => ClientReply::NoKey,
            },
            Op::Ttl { .. } => match self.live(&key, now) {
                Some((_, 0)) => ok("-1"),
                Some((_, t)) => ClientReply::Ok(Bytes::from((*t - now).to_string())),
                None => ClientReply::NoKey,
            },
            Op::PutEx {
                value,
                cond,
                get_old,
                expiry,
                ..
            } => {
                let old = self.live(&key, now).cloned();
                let holds = match cond {
                    PutCond::Any => true,
                    PutCond::Exists => old.is_some(),
                    PutCond::NotExists => old.is_none(),
                };
                if holds {
                    let t = Self::at(*expiry, now, old.as_ref().map_or(0, |o| o.1));
                    if t != 0 && t <= now {
                        self.keys.remove(&key);
                    } else {
                        self.keys.insert(key, (value.to_vec(), t));
                    }
                }
                let mut out = vec![if holds { b'1' } else { b'0' }];
                if *get_old {
                    out.extend(present(old.as_ref().map(|o| &o.0)));
                }
                ClientReply::Ok(Bytes::from(out))
            }
            Op::Expire { expiry, cond, .. } => {
                let Some((_, cur)) = self.live(&key, now).cloned() else {
                    return ok("0");
                };
                let new = Self::at(*expiry, now, cur);
                let inf = |t: u64| if t == 0 { u64::MAX } else { t };
                let holds = match cond {
                    ExpireCond::Always => true,
                    ExpireCond::Nx => cur == 0,
                    ExpireCond::Xx => cur != 0,
                    ExpireCond::Gt => cur != 0 && inf(new) > cur,
                    ExpireCond::Lt => inf(new) < inf(cur),
                };
                if !holds || (new == 0 && cur == 0) {
                    return ok("0");
                }
                if new != 0 && new <= now {
                    self.keys.remove(&key);
                } else {
                    self.keys.get_mut(&key).unwrap().1 = new;
                }
                ok("1")
            }
            Op::GetEx { expiry, .. } => {
                let Some((v, cur)) = self.live(&key, now).cloned() else {
                    return ok("0");
                };
                let new = Self::at(*expiry, now, cur);
                if new != 0 && new <= now {
                    self.keys.remove(&key);
                } else {
                    self.keys.get_mut(&key).unwrap().1 = new;
                }
                ClientReply::Ok(Bytes::from(present(Some(&v))))
            }
            Op::Put { value, .. } => {
                self.keys.insert(key, (value.to_vec(), 0));
                ClientReply::Ok(Bytes::new())
            }
            other => unreachable!("not generated: {other:?}"),
        }
    }
}

fn arb_expiry(keep: bool) -> impl Strategy<Value = Expiry> {
    prop_oneof![
        (0u64..300).prop_map(Expiry::In),
        (0u64..1_500).prop_map(Expiry::At),
        Just(Expiry::Persist),
        Just(if keep { Expiry::Keep } else { Expiry::Persist }),
    ]
}

fn arb_step() -> impl Strategy<Value = Option<Op>> {
    let key = prop_oneof![Just(b("a")), Just(b("b")), Just(b("c"))];
    let value = prop_oneof![Just(b("x")), Just(b("y"))];
    prop_oneof![
        // None: advance log time.
        1 => Just(None),
        2 => key.clone().prop_map(|key| Some(Op::Get { key })),
        2 => key.clone().prop_map(|key| Some(Op::Ttl { key })),
        1 => (key.clone(), value.clone()).prop_map(|(key, value)| Some(Op::Put { key, value })),
        3 => (key.clone(), value, 0u8..3, any::<bool>(), arb_expiry(true)).prop_map(
            |(key, value, c, get_old, expiry)| Some(Op::PutEx {
                key,
                value,
                cond: PutCond::from_code(c).unwrap(),
                get_old,
                expiry
            })
        ),
        3 => (key.clone(), arb_expiry(false), 0u8..5).prop_map(|(key, expiry, c)| Some(
            Op::Expire {
                key,
                expiry,
                cond: ExpireCond::from_code(c).unwrap()
            }
        )),
        1 => (key, arb_expiry(false)).prop_map(|(key, expiry)| Some(Op::GetEx { key, expiry })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
    /// Every reply matches the model; a snapshot taken at any point
    /// restores to an equal store; the deadline index stays exact.
    #[test]
    fn expiry_matches_a_model(steps in proptest::collection::vec((arb_step(), 0u64..120), 1..150)) {
        let mut d = Driver::new(2);
        let mut model = Model::default();
        let mut now = 1u64;
        d.clock(now);
        for (step, dt) in steps {
            match step {
                None => {
                    now += dt;
                    d.clock(now);
                }
                Some(op) => {
                    let want = model.apply(&op, now);
                    let got = if op.is_read() { d.kv.read_op(&op) } else { d.run(op.clone()) };
                    prop_assert_eq!(got, want, "{:?} at {}", op, now);
                }
            }
            d.kv.assert_invariants();
        }
        let restored = KvStore::restore(&d.kv.snapshot(), opts(2)).expect("restores");
        prop_assert_eq!(restored, d.kv);
    }
}
