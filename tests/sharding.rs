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
        .join(vec![GroupInfo {
            gid: 2,
            servers: c.masters.clone(),
        }])
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
        .join(vec![GroupInfo {
            gid: GID,
            servers: c.masters.clone(),
        }])
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
            .join(vec![GroupInfo {
                gid,
                servers: c.masters.clone(),
            }])
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
