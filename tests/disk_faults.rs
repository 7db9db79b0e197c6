//! Damaged write-ahead logs on a real cluster: a torn tail is truncated and
//! the node rejoins; a flipped bit mid-log makes that node refuse to start
//! (it never votes from a log it cannot trust) while the group serves on.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, GID};

/// The newest WAL segment of the core that owns the KV group on node `i`.
fn kv_segment(c: &Cluster, i: usize) -> PathBuf {
    // Tests run nodes with --cores 2: group 1 lives on core 1.
    let dir = c.nodes[i]
        .data_dir
        .join(format!("core-{}", GID as usize % 2));
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("core dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a WAL segment")
}

fn write_some(c: &Cluster, n: usize) {
    let mut client = c.client();
    for i in 0..n {
        client
            .put(Bytes::from(format!("k{i}")), Bytes::from(format!("v{i}")))
            .expect("put");
    }
}

fn check_some(c: &Cluster, n: usize) {
    let mut client = c.client();
    for i in 0..n {
        assert_eq!(
            client.get(Bytes::from(format!("k{i}"))).expect("get"),
            Some(Bytes::from(format!("v{i}")))
        );
    }
}

#[test]
fn a_torn_wal_tail_is_truncated_and_the_node_rejoins() {
    let mut c = Cluster::new(3);
    write_some(&c, 100);
    let victim = 2;
    c.kill(victim);
    let seg = kv_segment(&c, victim);
    let len = std::fs::metadata(&seg).unwrap().len();
    assert!(len > 64, "segment too short to tear");
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap(); // a partial last record
    drop(f);
    c.start_node(victim);
    // It starts, logs the truncation, and serves again.
    c.wait_for(Duration::from_secs(20), |c| {
        c.log(victim).contains("truncat")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        c.exited_none(),
        "the node with a torn tail did not come back"
    );
    // Kill another node: the group now needs the repaired one for a quorum.
    c.kill(0);
    write_some(&c, 10);
    check_some(&c, 100);
}

#[test]
fn a_flipped_bit_mid_log_makes_the_node_refuse_and_the_group_serves_on() {
    let mut c = Cluster::new(3);
    write_some(&c, 300);
    let victim = 1;
    c.kill(victim);
    let seg = kv_segment(&c, victim);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    c.start_node(victim);
    c.wait_for(Duration::from_secs(20), |c| {
        c.log(victim).contains("cannot be trusted")
    });
    let log = c.log(victim);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        c.exited(victim).is_some(),
        "the node kept running on a corrupt log"
    );
    assert!(
        log.contains("cannot be trusted") && log.contains("corrupt"),
        "no clear refusal in the log:\n{log}"
    );
    // The other two still form a quorum.
    write_some(&c, 20);
    check_some(&c, 20);
}
