//! tools/deploy/README.md, "Backup and restore": a whole cluster restored
//! from copies of its per-group snapshot files (`snap-g<gid>.bin`, master
//! group included) into fresh data directories serves the data those
//! snapshots hold.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// `core-<i>/snap-g<gid>.bin` under `dir`, if written yet.
fn snapshot_file(dir: &Path, gid: u32, cores: u32) -> std::path::PathBuf {
    dir.join(format!("core-{}", gid % cores))
        .join(format!("snap-g{gid}.bin"))
}

#[test]
fn a_cluster_restored_from_snapshot_files_serves_their_data() {
    // Snapshots every 16 slots, two cores per node (test clusters' default).
    let mut c = Cluster::new_with_resp_args(3, &["--snapshot-log-slots", "16"], Auth::ClusterKey);
    let cores = 2;
    let mut client = c.client();
    for i in 0..60 {
        client
            .put(format!("k{i}").into_bytes(), format!("v{i}").into_bytes())
            .unwrap();
    }
    // Enough later slots that every replica snapshots past the last key.
    for i in 0..40 {
        client
            .put(&b"filler"[..], format!("{i}").into_bytes())
            .unwrap();
    }
    drop(client);
    // The master's log grows only by admin requests (configuration
    // queries take no slot): enough of them that the master group
    // snapshots too. Each takes a slot whether or not it changes the
    // configuration.
    for _ in 0..20 {
        let out = c.admin(&["move", "0", "1"]);
        assert!(
            out.status.success(),
            "admin move: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Followers apply with the next heartbeat; every replica then writes
    // its snapshot of both groups.
    let start = Instant::now();
    loop {
        let all = c.nodes.iter().all(|n| {
            [0, 1]
                .iter()
                .all(|&g| snapshot_file(&n.data_dir, g, cores).exists())
        });
        if all {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no snapshot files"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    // Back up: the snapshot files and LAYOUT of every node.
    let backup = c.dir.join("backup");
    for (i, n) in c.nodes.iter().enumerate() {
        let to = backup.join(format!("node-{i}"));
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(n.data_dir.join("LAYOUT"), to.join("LAYOUT")).unwrap();
        for g in [0, 1] {
            std::fs::copy(
                snapshot_file(&n.data_dir, g, cores),
                to.join(format!("snap-g{g}.bin")),
            )
            .unwrap();
        }
    }

    // Every replica lost: fresh data directories holding only the backup.
    for i in 0..c.nodes.len() {
        c.kill(i);
    }
    for i in 0..c.nodes.len() {
        let dir = c.nodes[i].data_dir.clone();
        std::fs::remove_dir_all(&dir).unwrap();
        let from = backup.join(format!("node-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(from.join("LAYOUT"), dir.join("LAYOUT")).unwrap();
        for g in [0, 1] {
            let to = snapshot_file(&dir, g, cores);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from.join(format!("snap-g{g}.bin")), to).unwrap();
        }
    }
    for i in 0..c.nodes.len() {
        c.start_node(i);
    }

    let mut client = c.client();
    for i in 0..60 {
        let v = client.get(format!("k{i}").into_bytes()).unwrap();
        assert_eq!(v.as_deref(), Some(format!("v{i}").as_bytes()), "k{i}");
    }
    // And the restored cluster takes writes.
    client.put(&b"after"[..], &b"restore"[..]).unwrap();
    assert_eq!(
        client.get(&b"after"[..]).unwrap().as_deref(),
        Some(&b"restore"[..])
    );
}
