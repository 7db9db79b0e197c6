//! Shards moving between KV groups on a real cluster: data and dedup state
//! follow the shard, clients keep seeing one linearizable store.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, Workload, GID};
use synod_wire::GroupInfo;

fn check_values(c: &Cluster, n: usize) {
    let mut client = c.client();
    for i in 0..n {
        assert_eq!(
            client.get(Bytes::from(format!("key{i}"))).expect("get"),
            Some(Bytes::from(format!("value{i}"))),
            "key{i}"
        );
    }
}

#[test]
fn shards_move_with_their_data_on_join_and_leave() {
    let c = Cluster::new(3);
    let mut admin = c.client();
    for i in 0..100 {
        admin
            .put(
                Bytes::from(format!("key{i}")),
                Bytes::from(format!("value{i}")),
            )
            .expect("put");
    }
    let w = Workload::start(&c, 3, 20);
    c.wait_for(Duration::from_secs(20), |_| w.completed() > 50);

    // A second group (on the same three nodes) takes half the shards.
    let config = admin
        .join(vec![GroupInfo::new(2, c.masters.clone())])
        .expect("join group 2");
    let on_2 = config.shards.iter().filter(|g| **g == 2).count();
    assert_eq!(on_2, config.shards.len() / 2, "balanced split");
    let before = w.completed();
    c.wait_for(Duration::from_secs(30), |_| w.completed() > before + 100);
    check_values(&c, 100);

    // The first group leaves: everything moves to group 2.
    let config = admin.leave(vec![GID]).expect("leave group 1");
    assert!(config.shards.iter().all(|g| *g == 2));
    let before = w.completed();
    c.wait_for(Duration::from_secs(30), |_| w.completed() > before + 100);
    check_values(&c, 100);

    // Move one shard back to a rejoined group 1 while writes continue.
    admin
        .join(vec![GroupInfo::new(GID, c.masters.clone())])
        .expect("rejoin group 1");
    let before = w.completed();
    c.wait_for(Duration::from_secs(30), |_| w.completed() > before + 100);
    check_values(&c, 100);
    w.finish();
}

/// Regression: the node's configuration watcher handed its cores only the
/// latest configuration, so configurations created between two polls never
/// reached them and groups waiting for one stalled for good. Joins issued
/// back to back (faster than the poll) must all take effect.
#[test]
fn groups_joined_back_to_back_all_serve() {
    let c = Cluster::start_masters(3);
    let mut admin = c.client();
    for gid in 1..=3 {
        admin
            .join(vec![GroupInfo::new(gid, c.masters.clone())])
            .expect("join");
    }
    let mut client = c.client();
    for i in 0..40 {
        client
            .put(
                Bytes::from(format!("key{i}")),
                Bytes::from(format!("value{i}")),
            )
            .expect("put on every group");
    }
    check_values(&c, 40);
}

/// 6.5840 "shards really move": a group that is entirely dead makes only its
/// own shards unavailable; keys on the other group keep working.
#[test]
fn a_dead_group_makes_only_its_own_shards_unavailable() {
    // Nodes 0-2: masters and group 1; nodes 3-5: group 2 only.
    let mut c = Cluster::with_extra_nodes(3, 3);
    let mut admin = c.client();
    let g1: Vec<String> = c.nodes[0..3].iter().map(|n| n.addr.clone()).collect();
    let g2: Vec<String> = c.nodes[3..6].iter().map(|n| n.addr.clone()).collect();
    admin.join(vec![GroupInfo::new(1, g1)]).expect("join 1");
    let config = admin.join(vec![GroupInfo::new(2, g2)]).expect("join 2");
    // Keys on each group.
    let shards = config.shards.len() as u32;
    let on = |gid: u32| -> Vec<String> {
        (0..)
            .map(|i| format!("key{i}"))
            .filter(|k| config.shards[synod_wire::shard_of(k.as_bytes(), shards) as usize] == gid)
            .take(5)
            .collect()
    };
    let (keys1, keys2) = (on(1), on(2));
    let mut client = c.client();
    for k in keys1.iter().chain(&keys2) {
        client
            .put(Bytes::from(k.clone()), Bytes::from("v"))
            .expect("put");
    }
    for i in 3..6 {
        c.kill(i);
    }
    let mut quick = synod::client::Client::new(synod::client::ClientOptions {
        masters: c.masters.clone(),
        timeout: Duration::from_secs(2),
        ..synod::client::ClientOptions::default()
    })
    .expect("client");
    for k in &keys1 {
        assert_eq!(
            quick
                .get(Bytes::from(k.clone()))
                .expect("group 1 still serves"),
            Some(Bytes::from("v"))
        );
    }
    assert!(
        quick.get(Bytes::from(keys2[0].clone())).is_err(),
        "a key of the dead group answered"
    );
    // Group 2 comes back with its data.
    for i in 3..6 {
        c.start_node(i);
    }
    let mut client = c.client();
    for k in &keys2 {
        assert_eq!(
            client.get(Bytes::from(k.clone())).expect("get"),
            Some(Bytes::from("v"))
        );
    }
}

/// 6.5840 shardctrler: historical queries are answered while each master
/// replica is down in turn, and the masters agree after one is killed.
#[test]
fn historical_queries_survive_each_master_down_in_turn() {
    let mut c = Cluster::start_masters(3);
    let mut admin = c.client();
    let mut history = Vec::new();
    for gid in 1..=3 {
        history.push(
            admin
                .join(vec![GroupInfo::new(gid, c.masters.clone())])
                .expect("join"),
        );
    }
    for down in 0..3 {
        c.kill(down);
        let mut q = c.client();
        for cfg in &history {
            assert_eq!(
                &q.query(Some(cfg.num)).expect("query"),
                cfg,
                "config {}",
                cfg.num
            );
        }
        assert_eq!(
            q.query(None).expect("latest").num,
            history.last().unwrap().num
        );
        c.start_node(down);
        c.wait_for(Duration::from_secs(20), |c| c.client().query(None).is_ok());
    }
}

/// A shard 2.5 times the frame limit moves between groups: in chunks of its
/// owner's `--migrate-chunk-bytes`, each one frame and one log entry, while
/// clients keep writing to it. (Before chunked migration a shard had to fit
/// in one frame; here it cannot.)
#[test]
fn a_shard_larger_than_a_frame_moves_in_chunks() {
    const FRAME: usize = 2 << 20;
    const CHUNK: usize = 64 << 10;
    const VALUE: usize = 60 << 10;
    const KEYS: usize = 85; // about 5 MiB
    let frame = FRAME.to_string();
    let chunk = CHUNK.to_string();
    let c = Cluster::with_args(
        3,
        0,
        &["--frame-bytes-max", &frame, "--migrate-chunk-bytes", &chunk],
    );
    let mut admin = c.client();
    for gid in [1, 2] {
        admin
            .join(vec![GroupInfo::new(gid, c.masters.clone())])
            .expect("join");
    }
    let config = admin.query(None).expect("query");
    let shards = config.shards.len() as u32;
    // The shard of the workload's "k0", so writes to it run during the move.
    let shard = synod_wire::shard_of(b"k0", shards);
    let from = config.shards[shard as usize];
    let to = if from == 1 { 2 } else { 1 };
    let keys: Vec<String> = (0..)
        .map(|i| format!("bulk{i}"))
        .filter(|k| synod_wire::shard_of(k.as_bytes(), shards) == shard)
        .take(KEYS)
        .collect();
    let value = |k: &str| Bytes::from(format!("{k};").repeat(VALUE / (k.len() + 1)));
    let mut client = c.client();
    for k in &keys {
        client
            .put(Bytes::from(k.clone()), value(k))
            .expect("put a bulk value");
    }
    let total: usize = keys.iter().map(|k| value(k).len()).sum();
    assert!(
        total > 2 * FRAME,
        "the shard ({total} bytes) fits in a frame"
    );

    let w = Workload::start(&c, 2, 10);
    c.wait_for(Duration::from_secs(10), |_| w.completed() > 20);
    let num = admin.move_shard(shard, to).expect("move the shard").num;
    // The new owner logs the install when the last chunk applies; the old
    // one logged the transfer's size and its chunk budget when first asked.
    let installed = format!("group {to} installed shard {shard} of configuration {num} (");
    c.wait_for(Duration::from_secs(20), |c| {
        (0..3).any(|i| c.log(i).contains(&installed))
    });
    let logs: String = (0..3).map(|i| c.log(i)).collect();
    let records: usize = logs
        .split(&installed)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a record count in the install line");
    assert!(records >= KEYS, "only {records} records arrived");
    let sent = format!(
        "group {from}: sending shard {shard} of configuration {num}: {records} records \
         in chunks of about {CHUNK} bytes"
    );
    assert!(logs.contains(&sent), "no line {sent:?} in the logs");
    // Every value, read from the new owner (the old one answers WrongGroup
    // now, and the client follows the newer configuration).
    for k in &keys {
        assert_eq!(
            client
                .get(Bytes::from(k.clone()))
                .expect("get after the move"),
            Some(value(k)),
            "{k}"
        );
    }
    let before = w.completed();
    c.wait_for(Duration::from_secs(15), |_| w.completed() > before + 30);
    w.finish();
}

/// Issue 15: a client shares a connection between the groups a server
/// runs on one core. One node with `--cores 2` (the harness's default)
/// runs groups 1 and 3 on core 1 and group 2 on core 0: puts and gets in
/// every group succeed over 2 KV connections (one per core) instead of 3,
/// the group that tried the other core's connection having been answered
/// `WrongCore` and moved to its own. With sharing off, 3 as before.
#[test]
fn a_client_needs_one_connection_per_core_not_per_group() {
    let c = Cluster::start_masters(1);
    let mut admin = c.client();
    for gid in 1..=3 {
        admin
            .join(vec![GroupInfo::new(gid, c.masters.clone())])
            .expect("join");
    }
    let kv_conns =
        |client: &synod::client::Client| client.connections().iter().filter(|d| d.gid != 0).count();
    for share in [true, false] {
        let mut client = synod::client::Client::new(synod::client::ClientOptions {
            cluster_key: c.key.clone(),
            share_connections: share,
            ..synod::client::ClientOptions::new(c.masters.clone())
        })
        .expect("client options");
        let config = client.query(None).expect("query");
        let mut groups_written = std::collections::BTreeSet::new();
        for i in 0..30 {
            let key = Bytes::from(format!("conn{share}-{i}"));
            let shard = synod_wire::shard_of(&key, config.shards.len() as u32);
            groups_written.insert(config.shards[shard as usize]);
            client
                .put(key.clone(), Bytes::from(format!("v{i}")))
                .expect("put");
            assert_eq!(
                client.get(key).expect("get"),
                Some(Bytes::from(format!("v{i}")))
            );
        }
        assert_eq!(groups_written.len(), 3, "keys in every group");
        let conns = client.connections();
        if share {
            assert_eq!(kv_conns(&client), 2, "one per core: {conns:?}");
            assert!(client.stats().wrong_core >= 1, "{:?}", client.stats());
        } else {
            assert_eq!(kv_conns(&client), 3, "one per group: {conns:?}");
            assert_eq!(client.stats().wrong_core, 0);
        }
    }
}

/// Links (`--peer-conns shared`, the default): a core sends every group's
/// replication messages to a server on one connection, and a group the
/// other server places on another core (it runs another `--cores`) falls
/// back to a connection of its own after that server's `WrongCore`.
///
/// Nodes 0 and 1 run 2 cores, node 2 runs 3; groups 1, 2 and 3 on all
/// three. Node 0 hosts the master and group 2 on core 0, groups 1 and 3 on
/// core 1; node 2 has the master and group 3 on core 0, group 1 on core 1,
/// group 2 on core 2. So each of node 0's cores needs one link to node 1
/// and, to node 2, a link plus, once the other group sent node 2 a
/// message, that group's own connection: 4 to 6 peer connections where
/// one per group and peer would be 8 (a follower sends only to its
/// leader, so which groups fall back depends on who leads). Then node 0 dies
/// and every group must still serve on nodes 1 and 2, whose cores disagree
/// about every group but group 1: only the fallback lets them talk.
#[test]
fn links_share_a_core_s_peer_connections_and_fall_back_across_core_counts() {
    let mut c = Cluster::with_node_args(&[&[], &[], &["--cores", "3"]]);
    let mut admin = c.client();
    admin
        .join(vec![
            GroupInfo::new(2, c.masters.clone()),
            GroupInfo::new(3, c.masters.clone()),
        ])
        .expect("join groups 2 and 3");
    let keys = 200;
    for i in 0..keys {
        let (k, v) = (format!("key{i}"), format!("value{i}"));
        admin.put(Bytes::from(k), Bytes::from(v)).expect("put");
    }
    check_values(&c, keys);
    let peer_conns = |c: &Cluster, i: usize| {
        let body = common::scrape_metrics(c.nodes[i].metrics_addr.as_ref().unwrap()).ok()?;
        synod::metrics::sample_value(&body, "synod_connections", &[("role", "peer")])
    };
    let shared = |n: Option<f64>| n.is_some_and(|n| (4.0..=6.0).contains(&n));
    let waited = std::time::Instant::now();
    while !(0..2).all(|i| shared(peer_conns(&c, i))) {
        let seen: Vec<_> = (0..3).map(|i| peer_conns(&c, i)).collect();
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "peer connections of nodes 0, 1, 2: {seen:?}, not 4 to 6 on nodes 0 and 1"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    c.kill(0);
    let mut client = c.client();
    for i in 0..keys {
        let (k, v) = (format!("key{i}"), format!("after{i}"));
        client
            .put(Bytes::from(k), Bytes::from(v))
            .expect("put without node 0");
    }
    for i in 0..keys {
        assert_eq!(
            client.get(Bytes::from(format!("key{i}"))).expect("get"),
            Some(Bytes::from(format!("after{i}"))),
            "key{i}"
        );
    }
}
