//! Issue 13: `synod-server --metrics-listen` on real processes. Scrape
//! every node of a running cluster before and after writes, check every
//! line against the text format's grammar, and that the counters moved.

mod common;

use std::time::Duration;

use common::*;
use synod::metrics::{check_line, sample_value};

/// Every line well-formed, every sample after a TYPE line of its family.
fn check_text(text: &str) {
    let mut typed: Vec<String> = Vec::new();
    for line in text.lines() {
        check_line(line).unwrap_or_else(|e| panic!("{e}"));
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| typed.iter().any(|t| t == f))
                })
                .unwrap_or(name);
            assert!(
                typed.last().is_some_and(|t| t == family),
                "sample {name} outside its family"
            );
        }
    }
}

/// Sum of one sample over every node's scrape (0 where absent).
fn total(texts: &[String], name: &str, labels: &[(&str, &str)]) -> f64 {
    texts
        .iter()
        .map(|t| sample_value(t, name, labels).unwrap_or(0.0))
        .sum()
}

#[test]
fn scraping_a_cluster_before_and_after_writes_shows_the_counters_move() {
    let c = Cluster::new_with_metrics(3);
    let addrs: Vec<String> = c
        .nodes
        .iter()
        .map(|n| n.metrics_addr.clone().unwrap())
        .collect();
    let scrape_all = || -> Vec<String> {
        addrs
            .iter()
            .map(|a| scrape_metrics(a).unwrap_or_else(|e| panic!("scrape {a}: {e}")))
            .collect()
    };
    // Group gauges are stored once per tick: wait until one leader shows.
    c.wait_for(Duration::from_secs(10), |_| {
        let b = scrape_all();
        total(&b, "synod_group_leader", &[("gid", "1"), ("replica", "0")])
            + total(&b, "synod_group_leader", &[("gid", "1"), ("replica", "1")])
            + total(&b, "synod_group_leader", &[("gid", "1"), ("replica", "2")])
            == 1.0
    });
    let before = scrape_all();
    for t in &before {
        check_text(t);
    }

    let mut client = c.client();
    const WRITES: usize = 40;
    for i in 0..WRITES {
        client
            .put(format!("k{i}").into_bytes(), &b"v"[..])
            .expect("put");
    }
    assert_eq!(client.get(&b"k1"[..]).unwrap().as_deref(), Some(&b"v"[..]));

    // Followers learn the commit point with the next message and publish
    // it at the next tick: wait for every replica's applied point to pass
    // the writes.
    let commit = |texts: &[String], r: &str| {
        total(
            texts,
            "synod_group_applied_index",
            &[("gid", "1"), ("replica", r)],
        )
    };
    let before_applied: Vec<f64> = ["0", "1", "2"].iter().map(|r| commit(&before, r)).collect();
    let mut after = Vec::new();
    c.wait_for(Duration::from_secs(10), |_| {
        after = scrape_all();
        ["0", "1", "2"]
            .iter()
            .zip(&before_applied)
            .all(|(r, b)| commit(&after, r) > *b)
    });
    for t in &after {
        check_text(t);
    }

    let moved = |name: &str, labels: &[(&str, &str)]| {
        (total(&before, name, labels), total(&after, name, labels))
    };
    let (b, a) = moved("synod_requests_total", &[("kind", "put")]);
    assert!(a - b >= WRITES as f64, "put requests {b} -> {a}");
    let (b, a) = moved("synod_replies_total", &[("kind", "put"), ("result", "ok")]);
    assert!(a - b >= WRITES as f64, "put ok replies {b} -> {a}");
    let (b, a) = moved("synod_request_duration_seconds_count", &[("kind", "put")]);
    assert!(a - b >= WRITES as f64, "put latencies {b} -> {a}");
    let (b, a) = moved("synod_requests_total", &[("kind", "get")]);
    assert!(a - b >= 1.0, "get requests {b} -> {a}");
    for name in [
        "synod_wal_bytes_total",
        "synod_wal_sync_duration_seconds_count",
        "synod_paxos_slots_proposed_total",
        "synod_paxos_batch_commands_count",
    ] {
        let (b, a) = moved(name, &[]);
        assert!(a > b, "{name} {b} -> {a}");
    }
    // Every node has a WAL segment per core, and clients connected.
    for t in &after {
        assert!(sample_value(t, "synod_wal_segments", &[]).unwrap() >= 1.0);
        assert!(sample_value(t, "synod_connections_accepted_total", &[]).unwrap() >= 1.0);
        assert!(sample_value(t, "synod_connections", &[("role", "peer")]).unwrap() >= 1.0);
    }
    // Exactly one replica leads group 1 and the master group, and every
    // replica knows a leader change happened (the first election).
    for gid in ["0", "1"] {
        let leaders: f64 = ["0", "1", "2"]
            .iter()
            .map(|r| {
                total(
                    &after,
                    "synod_group_leader",
                    &[("gid", gid), ("replica", r)],
                )
            })
            .sum();
        assert_eq!(leaders, 1.0, "leaders of group {gid}");
    }
    let elections: f64 = ["0", "1", "2"]
        .iter()
        .map(|r| {
            total(
                &after,
                "synod_group_elections_total",
                &[("gid", "1"), ("replica", r)],
            )
        })
        .sum();
    assert!(elections >= 1.0);
    let shards: f64 = ["0", "1", "2"]
        .iter()
        .map(|r| {
            total(
                &after,
                "synod_group_shards",
                &[("gid", "1"), ("replica", r)],
            )
        })
        .sum();
    assert_eq!(
        shards,
        3.0 * 64.0,
        "each replica of the only group serves all 64 shards"
    );
}
