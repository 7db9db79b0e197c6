//! Real `synod-server` processes on loopback: kills, pauses and restarts,
//! with every history checked for linearizability.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, Workload};

#[test]
fn clients_keep_going_when_the_leader_is_killed() {
    let mut c = Cluster::new(3);
    let w = Workload::start(&c, 4, 5);
    c.wait_for(Duration::from_secs(20), |_| w.completed() > 200);
    let leader = c.kv_leader().expect("a KV leader");
    c.kill(leader);
    let before = w.completed();
    c.wait_for(Duration::from_secs(30), |_| w.completed() > before + 200);
    let history = w.finish();
    assert!(history.len() > 400);
}

#[test]
fn acknowledged_writes_survive_killing_every_replica() {
    let mut c = Cluster::new(3);
    let mut client = c.client();
    for i in 0..200 {
        client
            .put(
                Bytes::from(format!("key{i}")),
                Bytes::from(format!("value{i}")),
            )
            .expect("put");
        client
            .append(Bytes::from("log"), Bytes::from(format!("{i},")))
            .expect("append");
    }
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.start_node(i);
    }
    let mut client = c.client();
    for i in 0..200 {
        assert_eq!(
            client.get(Bytes::from(format!("key{i}"))).expect("get"),
            Some(Bytes::from(format!("value{i}"))),
            "key{i} lost"
        );
    }
    let want: String = (0..200).map(|i| format!("{i},")).collect();
    assert_eq!(
        client.get(Bytes::from("log")).expect("get"),
        Some(Bytes::from(want))
    );
}

#[test]
fn a_paused_leader_serves_no_stale_reads() {
    let mut c = Cluster::new(3);
    let mut client = c.client();
    client
        .put(Bytes::from("x"), Bytes::from("old"))
        .expect("put");
    let leader = c.kv_leader().expect("leader");
    c.signal(leader, "STOP");
    // A new leader takes over; write through it.
    let mut fresh = c.client();
    fresh
        .put(Bytes::from("x"), Bytes::from("new"))
        .expect("put through new leader");
    c.signal(leader, "CONT");
    // Every read from now on, through any node, sees "new".
    let w = Workload::start(&c, 2, 3);
    for _ in 0..20 {
        let mut r = c.client();
        assert_eq!(
            r.get(Bytes::from("x")).expect("get"),
            Some(Bytes::from("new"))
        );
    }
    c.wait_for(Duration::from_secs(20), |_| w.completed() > 100);
    w.finish();
    let _ = &mut c;
}
