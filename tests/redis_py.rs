//! redis-py (the most used Redis client) against a real cluster's RESP
//! gateway: `tests/redis_py/test_*.py`, each run with `SYNOD_RESP_ADDR`.
//! redis-py comes from `tools/install-test-deps.sh` (which .ci/run runs
//! before `cargo test`). Without python3 or redis-py the test says so and
//! passes, except under CI (`CI` set), where that is a failure: CI must
//! run the suite.

mod common;

use std::process::Command;

use common::Cluster;
use synod_wire::GroupInfo;

fn redis_py_available() -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import redis; print(redis.__version__)"])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "redis-py is not installed ({}); run tools/install-test-deps.sh",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("python3 cannot be run: {e}")),
    }
}

#[test]
fn redis_py_suite_runs_green_against_the_gateway() {
    if let Err(why) = redis_py_available() {
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        eprintln!("SKIPPED redis_py_suite: {why}");
        return;
    }
    let cluster = Cluster::new_with_resp(3);
    let addr = cluster.nodes[0]
        .resp_addr
        .clone()
        .expect("started with RESP");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redis_py");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/redis_py")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("test_") && n.ends_with(".py"))
        })
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no test_*.py in {}", dir.display());
    for script in scripts {
        let out = Command::new("python3")
            .arg(&script)
            .env("SYNOD_RESP_ADDR", &addr)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "{} failed:\n{}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// `tests/redis_py/keyspace_moves.py`: SCAN, KEYS, DBSIZE and FLUSHDB over
/// two groups, with shards moved between them while a scan runs (the
/// script moves them with `synod admin move`). The nodes run with
/// `--resp-allow-flushdb`; the default refusal is covered by
/// `test_keyspace.py` in the suite above.
#[test]
fn redis_py_scan_across_groups_survives_shard_moves() {
    if let Err(why) = redis_py_available() {
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        eprintln!("SKIPPED redis_py_scan_across_groups: {why}");
        return;
    }
    let cluster = two_group_cluster(&["--resp-allow-flushdb"]);
    run_script(&cluster, "keyspace_moves.py");
}

/// Six nodes with RESP gateways: the three masters are KV group 1, the
/// other three group 2, both serving every shard they own.
fn two_group_cluster(args: &[&str]) -> Cluster {
    let cluster = Cluster::with_resp_nodes(3, 3, args);
    let mut admin = cluster.client();
    for (gid, servers) in [(1, &cluster.masters[..]), (2, &[])] {
        let servers = if gid == 1 {
            servers.to_vec()
        } else {
            cluster.nodes[3..].iter().map(|n| n.addr.clone()).collect()
        };
        admin
            .join(vec![GroupInfo::new(gid, servers)])
            .expect("join a group");
    }
    cluster.wait_for(std::time::Duration::from_secs(60), |c| {
        let mut client = c.client();
        (0..64).all(|i| {
            client
                .put(format!("ready{i}").into_bytes(), &b"1"[..])
                .is_ok()
        })
    });
    cluster
}

/// Runs `tests/redis_py/NAME` against node 0's gateway (with the synod
/// CLI, the masters and the cluster key in its environment); fails with
/// its output unless it exits 0.
fn run_script(cluster: &Cluster, name: &str) {
    let addr = cluster.nodes[0]
        .resp_addr
        .clone()
        .expect("started with RESP");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/redis_py")
        .join(name);
    let out = Command::new("python3")
        .arg(&script)
        .env("SYNOD_RESP_ADDR", &addr)
        .env("SYNOD_BIN", env!("CARGO_BIN_EXE_synod"))
        .env("SYNOD_MASTERS", cluster.masters.join(","))
        .env("SYNOD_CLUSTER_KEY_FILE", cluster.dir.join("cluster.key"))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
}

/// `tests/redis_py/cross_group_txn.py`: MULTI/EXEC, WATCH, MSET and MGET
/// over keys of two groups (two-phase commit underneath): no MGET sees a
/// torn MSET, transfers inside MULTI keep the total, WATCH aborts EXEC on
/// a change in either group.
#[test]
fn redis_py_transactions_across_groups_are_atomic() {
    if let Err(why) = redis_py_available() {
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        eprintln!("SKIPPED redis_py_transactions_across_groups: {why}");
        return;
    }
    let cluster = two_group_cluster(&[]);
    run_script(&cluster, "cross_group_txn.py");
}
