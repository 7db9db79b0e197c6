//! Disk and memory stay bounded after many reconfigurations (issue 14; MIT
//! 6.824 shardkv's Challenge1Delete): shards move to a second group and
//! back, again and again, on real `synod-server` processes with real disks,
//! and each node's data directory (WAL segments and snapshot files) and
//! resident memory must hold what its groups own plus a bound, not every
//! copy that ever passed through.
//!
//! `SYNOD_DISK_BOUND_CYCLES` sets the join/leave cycles (default 5: ten
//! reconfigurations that each move data).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use synod_wire::GroupInfo;

fn cycles() -> usize {
    std::env::var("SYNOD_DISK_BOUND_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            total += dir_bytes(&e.path());
        } else {
            total += meta.len();
        }
    }
    total
}

const KEYS: usize = 600;
const VALUE_BYTES: usize = 2048;
/// Cores per node (the test cluster's `--cores 2`).
const CORES: u64 = 2;
/// The WAL reclaims disk a closed segment at a time.
const SEGMENT_BYTES: u64 = 32 << 10;
/// A group snapshots (and frees its log) every this many slots.
const SNAPSHOT_SLOTS: u64 = 16;
const CHUNK_BYTES: u64 = 8 << 10;
/// A log entry's bytes beyond its payload, and the largest control entry
/// (Reconfigure with its configuration, Delete, clock stamps).
const ENTRY_SLACK: u64 = 4 << 10;

fn value(round: usize, i: usize) -> Bytes {
    let mut v = format!("r{round}k{i}:").into_bytes();
    v.resize(VALUE_BYTES, b'a' + (i % 26) as u8);
    Bytes::from(v)
}

/// Overwrite every key (so each owner's log and snapshot see new data) and
/// read them all back (a Get is answered only by a group serving the
/// shard, so this also waits for every move to finish).
fn write_and_check(c: &Cluster, round: usize) {
    let mut client = c.client();
    for i in 0..KEYS {
        client
            .put(Bytes::from(format!("key{i}")), value(round, i))
            .expect("put");
    }
    for i in 0..KEYS {
        let got = client.get(Bytes::from(format!("key{i}"))).expect("get");
        assert_eq!(got, Some(value(round, i)), "key{i} after round {round}");
    }
}

/// Each node's data directory in bytes.
fn disk(c: &Cluster) -> Vec<u64> {
    c.nodes.iter().map(|n| dir_bytes(&n.data_dir)).collect()
}

/// Wait (bounded) until `ok(disk)` holds; the last measurement either way.
fn settle(c: &Cluster, limit: Duration, ok: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let start = Instant::now();
    loop {
        let d = disk(c);
        if ok(&d) || start.elapsed() > limit {
            return d;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bound on one node's WAL plus snapshot bytes, for a node hosting
/// one KV group that owns `owned` bytes of keys and values:
///
/// `disk <= 2 * owned + S * E + K * 3 * (B + E) + C`
///
/// - `2 * owned`: the group's snapshot file holds what it owns (with its
///   sessions) plus at most as much again that it has since shed (a
///   replica snapshots once what it shed reaches what it holds);
/// - `S * E`: that log is at most `S` = `--snapshot-log-slots` slots of at
///   most `E` bytes each: a migration chunk (`--migrate-chunk-bytes`) plus
///   slack while the group takes data, only control entries (`ENTRY_SLACK`)
///   for a group that owns nothing (it takes no writes and no chunks after
///   the snapshot it took when it deleted its last shard);
/// - `K * 3 * (B + E)`: per core, the active segment, one closed one not
///   yet collected (a segment is dead once the snapshots covering its
///   records are durable), and one dead one kept for the next rotation to
///   write over (`--wal-recycle-segments`, default 1), each up to `B` =
///   `--wal-segment-bytes` plus the one turn's write that crossed it;
/// - `C` = 128 KiB: identity files, and the master group's state and log
///   on master nodes (its configurations, a few hundred bytes each).
///
/// Before a group snapshotted when it deleted a shard, a group that handed
/// all its shards away kept their data in its last snapshot (and in memory)
/// until `S` more slots, forever if it went quiet: with these figures that
/// is about half the live data on every node of group 2, over its bound.
fn bound(owned: u64) -> u64 {
    let entry = if owned > 0 {
        CHUNK_BYTES + ENTRY_SLACK
    } else {
        ENTRY_SLACK
    };
    2 * owned + SNAPSHOT_SLOTS * entry + CORES * 3 * (SEGMENT_BYTES + entry) + (128 << 10)
}

#[test]
fn disk_and_memory_stay_bounded_after_many_reconfigurations() {
    let slots = SNAPSHOT_SLOTS.to_string();
    let segment = SEGMENT_BYTES.to_string();
    let chunk = CHUNK_BYTES.to_string();
    let c = Cluster::with_args(
        3,
        3,
        &[
            "--snapshot-log-slots",
            &slots,
            "--wal-segment-bytes",
            &segment,
            "--migrate-chunk-bytes",
            &chunk,
        ],
    );
    let mut admin = c.client();
    let g1 = GroupInfo::new(1, c.masters.clone());
    let g2 = GroupInfo::new(2, c.nodes[3..].iter().map(|n| n.addr.clone()).collect());
    admin.join(vec![g1]).expect("join group 1");
    c.wait_for(Duration::from_secs(30), |c| {
        c.client().put(&b"__ready"[..], &b"1"[..]).is_ok()
    });
    let live = (KEYS * (VALUE_BYTES + 8)) as u64;
    write_and_check(&c, 0);
    let mut after_leave = Vec::new();
    let mut rss = Vec::new();
    let mut round = 0;
    for cycle in 0..cycles() {
        round += 1;
        let config = admin.join(vec![g2.clone()]).expect("join group 2");
        assert!(config.shards.contains(&2), "group 2 took no shard");
        write_and_check(&c, round);
        round += 1;
        let config = admin.leave(vec![2]).expect("leave group 2");
        assert!(config.shards.iter().all(|g| *g == 1));
        write_and_check(&c, round);
        // Group 1 (nodes 0-2) owns everything, group 2 (nodes 3-5) nothing.
        let d = settle(&c, Duration::from_secs(20), |d| {
            d[..3].iter().all(|b| *b <= bound(live)) && d[3..].iter().all(|b| *b <= bound(0))
        });
        eprintln!(
            "cycle {cycle}: disk per node {:?} KiB (live data {} KiB; bounds {} / {} KiB)",
            d.iter().map(|b| b / 1024).collect::<Vec<_>>(),
            live / 1024,
            bound(live) / 1024,
            bound(0) / 1024
        );
        after_leave.push(d);
        rss.push((0..c.nodes.len()).map(|i| c.rss_kib(i)).collect::<Vec<_>>());
    }
    eprintln!("rss per node after each cycle (KiB): {rss:?}");
    let last = after_leave.last().expect("at least one cycle");
    for (i, b) in last.iter().enumerate() {
        let (owned, who) = if i < 3 {
            (live, "group 1")
        } else {
            (0, "group 2")
        };
        assert!(
            *b <= bound(owned),
            "node {i} ({who}, owning {owned} bytes) holds {b} bytes on disk, over the bound {}: {after_leave:?}",
            bound(owned)
        );
    }
    // Memory: no growth with the number of moves. Past the first cycle
    // (allocator pools, connections, caches warm), a node may grow by the
    // live data once more plus slack, not by a copy per move.
    let first = &rss[0];
    let end = rss.last().expect("at least one cycle");
    for i in 0..c.nodes.len() {
        assert!(
            end[i] <= first[i] + 2 * live / 1024 + 16 * 1024,
            "node {i} resident memory grew from {} to {} KiB over {} cycles: {rss:?}",
            first[i],
            end[i],
            rss.len()
        );
    }
}
