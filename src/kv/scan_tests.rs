//! Whole-shard operations (Scan, Count, Flush) and the Redis-style string
//! writes SetRange and IncrByFloat, against the store's replies.

use std::collections::BTreeSet;

use bytes::Bytes;
use synod_wire::{decode_scan_page, ClientReply, ClientRequest, Expiry, Op, PutCond, ScanPage};

use super::*;

const CLIENT: u64 = 7;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

struct Driver {
    kv: KvStore,
    seq: u64,
}

impl Driver {
    fn new(shards: u32) -> Driver {
        Driver {
            kv: KvStore::new(KvOptions {
                shards,
                ..KvOptions::default()
            }),
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

    fn put(&mut self, key: &str, value: &str) {
        let r = self.run(Op::Put {
            key: b(key),
            value: b(value),
        });
        assert_eq!(r, ClientReply::Ok(Bytes::new()));
    }

    fn scan(
        &self,
        key: &[u8],
        after: Option<Bytes>,
        count: u32,
        pattern: Option<&str>,
    ) -> ScanPage {
        match self.kv.read_op(&Op::Scan {
            key: Bytes::copy_from_slice(key),
            after,
            count,
            pattern: pattern.map(b),
        }) {
            ClientReply::Ok(v) => decode_scan_page(v).expect("a scan page"),
            other => panic!("scan answered {other:?}"),
        }
    }

    /// Every key of `key`'s shard, page by page.
    fn scan_all(&self, key: &[u8], count: u32, pattern: Option<&str>) -> (Vec<Bytes>, usize) {
        let mut keys = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = self.scan(key, after, count, pattern);
            pages += 1;
            assert!(page.keys.len() <= count as usize);
            keys.extend(page.keys);
            match page.resume_after {
                Some(a) => after = Some(a),
                None => return (keys, pages),
            }
        }
    }
}

#[test]
fn scan_walks_one_shard_in_key_order_in_bounded_pages() {
    let mut d = Driver::new(4);
    let mut want = BTreeSet::new();
    for i in 0..200 {
        let k = format!("key:{i}");
        d.put(&k, "v");
        if d.kv.shard_of_key(k.as_bytes()) == d.kv.shard_of_key(b"key:0") {
            want.insert(b(&k));
        }
    }
    let (keys, pages) = d.scan_all(b"key:0", 7, None);
    let got: Vec<Bytes> = want.iter().cloned().collect();
    assert_eq!(keys, got, "every key of the shard once, in order");
    assert!(pages >= want.len() / 7, "{pages} pages");
    // The same key names the shard whatever it is: any key of it will do.
    let other = want.iter().last().unwrap().clone();
    assert_eq!(d.scan_all(&other, 1000, None).0, got);
}

#[test]
fn scan_filters_by_pattern_and_bounds_the_keys_examined() {
    let mut d = Driver::new(1);
    for i in 0..1000 {
        d.put(&format!("k{i:04}"), "v");
    }
    d.put("needle", "v");
    // A rare match: each page examines at most ten keys per key asked for.
    let page = d.scan(b"x", None, 2, Some("needle"));
    assert!(page.keys.is_empty());
    assert_eq!(page.resume_after, Some(b("k0019")), "20 keys examined");
    let (keys, _) = d.scan_all(b"x", 2, Some("needle"));
    assert_eq!(keys, vec![b("needle")]);
    let (keys, _) = d.scan_all(b"x", 100, Some("k00[0-1]?"));
    assert_eq!(keys.len(), 20);
}

#[test]
fn expired_keys_are_neither_scanned_nor_counted() {
    let mut d = Driver::new(1);
    d.kv.advance_clock(1_000, |_| true);
    d.put("a", "1");
    d.put("b", "2");
    let r = d.run(Op::PutEx {
        key: b("c"),
        value: b("3"),
        cond: PutCond::Any,
        get_old: false,
        expiry: Expiry::In(10),
    });
    assert_eq!(r, ClientReply::Ok(b("1")));
    assert_eq!(
        d.kv.read_op(&Op::Count { key: b("a") }),
        ClientReply::Ok(b("3"))
    );
    // Expired, not yet removed (no clock stamp has run the pass).
    d.kv.log_time_ms = 2_000;
    assert_eq!(
        d.kv.read_op(&Op::Count { key: b("a") }),
        ClientReply::Ok(b("2"))
    );
    assert_eq!(d.scan_all(b"a", 10, None).0, vec![b("a"), b("b")]);
}

#[test]
fn flush_removes_every_key_of_the_shard_once() {
    let mut d = Driver::new(2);
    for i in 0..50 {
        d.put(&format!("k{i}"), "v");
    }
    let here = (0..50)
        .filter(|i| d.kv.shard_of_key(format!("k{i}").as_bytes()) == d.kv.shard_of_key(b"k0"))
        .count();
    let r = d.run(Op::Flush { key: b("k0") });
    assert_eq!(r, ClientReply::Ok(b(&here.to_string())));
    assert_eq!(
        d.kv.read_op(&Op::Count { key: b("k0") }),
        ClientReply::Ok(b("0"))
    );
    let left = d.kv.stats().keys as usize;
    assert_eq!(left, 50 - here, "the other shard is untouched");
    // A duplicate of the Flush (its seq not yet acknowledged) gets the
    // cached reply and removes nothing.
    let (flush_seq, flush_ack) = (d.seq, d.seq - 1);
    d.seq += 1;
    let put = d.kv.apply(&ClientRequest {
        client_id: CLIENT,
        seq: d.seq,
        ack_seq: flush_ack,
        op: Op::Put {
            key: b("k0"),
            value: b("again"),
        },
    });
    assert_eq!(put, ClientReply::Ok(Bytes::new()));
    let dup = d.kv.apply(&ClientRequest {
        client_id: CLIENT,
        seq: flush_seq,
        ack_seq: flush_ack,
        op: Op::Flush { key: b("k0") },
    });
    assert_eq!(dup, r);
    assert_eq!(d.kv.read(b"k0"), ClientReply::Ok(b("again")));
    d.kv.assert_invariants();
}

#[test]
fn set_range_pads_with_zero_bytes_and_answers_the_length() {
    let mut d = Driver::new(1);
    let sr = |d: &mut Driver, off: u64, v: &str| {
        d.run(Op::SetRange {
            key: b("k"),
            offset: off,
            value: b(v),
        })
    };
    assert_eq!(sr(&mut d, 0, ""), ClientReply::Ok(b("0")));
    assert_eq!(d.kv.read(b"k"), ClientReply::NoKey, "empty creates nothing");
    assert_eq!(sr(&mut d, 3, "ab"), ClientReply::Ok(b("5")));
    assert_eq!(
        d.kv.read(b"k"),
        ClientReply::Ok(Bytes::from_static(b"\0\0\0ab"))
    );
    assert_eq!(sr(&mut d, 1, "X"), ClientReply::Ok(b("5")));
    assert_eq!(
        d.kv.read(b"k"),
        ClientReply::Ok(Bytes::from_static(b"\0X\0ab"))
    );
    let too_far = sr(&mut d, VALUE_BYTES_MAX as u64, "x");
    assert!(matches!(too_far, ClientReply::Error { .. }), "{too_far:?}");
    assert_eq!(
        sr(&mut d, u64::MAX, "x"),
        too_far,
        "an offset past usize is refused, not wrapped"
    );
    assert_eq!(
        d.kv.read(b"k"),
        ClientReply::Ok(Bytes::from_static(b"\0X\0ab"))
    );
}

#[test]
fn incr_by_float_formats_as_redis_does() {
    let mut d = Driver::new(1);
    let inc = |d: &mut Driver, delta: &str| {
        d.run(Op::IncrByFloat {
            key: b("f"),
            delta: b(delta),
        })
    };
    d.put("f", "10.50");
    assert_eq!(inc(&mut d, "0.1"), ClientReply::Ok(b("10.6")));
    assert_eq!(inc(&mut d, "-5"), ClientReply::Ok(b("5.6")));
    d.put("f", "5.0e3");
    assert_eq!(inc(&mut d, "2.0e2"), ClientReply::Ok(b("5200")));
    d.put("f", "0.1");
    assert_eq!(inc(&mut d, "0.2"), ClientReply::Ok(b("0.3")));
    assert_eq!(
        inc(&mut d, "1e20"),
        ClientReply::Ok(b("100000000000000000000"))
    );
    d.put("f", "abc");
    let not_float = ClientReply::Error {
        reason: "value is not a valid float".to_string(),
    };
    assert_eq!(inc(&mut d, "1"), not_float);
    d.put("f", "1");
    assert_eq!(inc(&mut d, "x"), not_float);
    assert_eq!(inc(&mut d, " 1"), not_float);
    assert_eq!(inc(&mut d, "nan"), not_float);
    assert_eq!(
        inc(&mut d, "inf"),
        ClientReply::Error {
            reason: "increment would produce NaN or Infinity".to_string()
        }
    );
    assert_eq!(
        d.kv.read(b"f"),
        ClientReply::Ok(b("1")),
        "refusals change nothing"
    );
    assert_eq!(
        d.run(Op::IncrByFloat {
            key: b("new"),
            delta: b("-0.5")
        }),
        ClientReply::Ok(b("-0.5"))
    );
}

#[test]
fn scan_of_a_snapshot_restored_store_is_the_same() {
    let mut d = Driver::new(3);
    for i in 0..100 {
        d.put(&format!("s{i}"), "v");
    }
    let restored = KvStore::restore(&d.kv.snapshot(), d.kv.options()).expect("restores");
    let again = Driver {
        kv: restored,
        seq: 0,
    };
    for k in ["s0", "s1", "s2"] {
        assert_eq!(
            again.scan_all(k.as_bytes(), 9, None),
            d.scan_all(k.as_bytes(), 9, None)
        );
    }
}

/// What a scan page costs on a shard of 1M keys (run with `--ignored
/// --nocapture` in release; numbers in ARCHITECTURE.md).
#[test]
#[ignore]
fn scan_cost_on_a_million_keys() {
    let mut d = Driver::new(1);
    let start = std::time::Instant::now();
    for i in 0..1_000_000u32 {
        d.put(&format!("key:{i:08}"), "v");
    }
    println!("1M puts: {:?}", start.elapsed());
    let start = std::time::Instant::now();
    let mut reads = 0u64;
    for i in (0..1_000_000u32).step_by(7) {
        if d.kv.read(format!("key:{i:08}").as_bytes()) != ClientReply::NoKey {
            reads += 1;
        }
    }
    println!("{reads} gets: {:?} each", start.elapsed() / reads as u32);
    let start = std::time::Instant::now();
    let (keys, pages) = d.scan_all(b"x", 10, None);
    assert_eq!(keys.len(), 1_000_000);
    println!(
        "full scan, COUNT 10: {pages} pages, {:?} per page",
        start.elapsed() / pages as u32
    );
    let start = std::time::Instant::now();
    let (keys, pages) = d.scan_all(b"x", 1000, Some("key:0000000*"));
    assert_eq!(keys.len(), 10);
    println!(
        "full scan, COUNT 1000 MATCH rare: {pages} pages, {:?} per page",
        start.elapsed() / pages as u32
    );
}
