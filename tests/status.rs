//! Issue 13: `synod admin status` against real processes: every group's
//! leader named, a killed node shown unreachable while its groups keep a
//! majority (exit 0), and no majority once two of three are killed (exit
//! non-zero). The status request is an admin request: without the
//! cluster key every node refuses it.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

fn status(c: &Cluster, args: &[&str], with_key: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synod"));
    cmd.arg("--masters")
        .arg(c.masters.join(","))
        .arg("--timeout")
        .arg("2")
        .env_remove("SYNOD_CLUSTER_KEY_FILE")
        .env_remove("SYNOD_MASTERS");
    if with_key {
        cmd.arg("--cluster-key-file").arg(c.dir.join("cluster.key"));
    }
    // Bounded: the CLI's master query gives up after --timeout and every
    // node is asked with a 2 s deadline, in parallel.
    let out = cmd
        .args(["admin", "status"])
        .args(args)
        .output()
        .expect("run synod admin status");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run status until `ok` holds for its stdout (the gauges are stored once
/// per tick and elections take a few hundred ms), bounded in time.
fn status_until(c: &Cluster, args: &[&str], ok: impl Fn(&Output) -> bool) -> Output {
    let start = Instant::now();
    loop {
        let out = status(c, args, true);
        if ok(&out) {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "status never satisfied the condition; last: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn status_names_leaders_shows_a_killed_node_and_fails_without_a_majority() {
    let mut c = Cluster::new(3);
    c.client().put(&b"k"[..], &b"v"[..]).unwrap();

    // JSON: both groups led, everything reachable, exit 0.
    let out = status_until(&c, &[], |o| {
        let s = text(&o.stdout);
        o.status.success() && !s.contains("\"leader\":null") && s.contains("\"lag\":0")
    });
    let json = text(&out.stdout);
    assert!(
        json.starts_with('{') && json.trim_end().ends_with('}'),
        "{json}"
    );
    assert!(json.contains("\"quorum\":true"), "{json}");
    assert!(
        json.contains("\"gid\":0,") && json.contains("\"gid\":1,"),
        "{json}"
    );
    assert!(!json.contains("\"reachable\":false"), "{json}");
    for addr in &c.masters {
        assert!(json.contains(&format!("\"addr\":\"{addr}\"")), "{json}");
    }
    // Group 1 serves all 64 shards.
    assert!(json.contains("\"shards\":[0,1,2,"), "{json}");

    let out = status(&c, &["--table"], true);
    assert!(out.status.success());
    let table = text(&out.stdout);
    assert!(
        table.contains("GROUP") && table.contains("leader"),
        "{table}"
    );
    assert!(table.contains("0-63 (64)"), "{table}");

    // Without the key, every node refuses: nothing is reachable.
    let out = status(&c, &[], false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("authentication required"));

    // One node killed: shown unreachable, every group keeps a majority.
    c.kill(2);
    let dead = c.nodes[2].addr.clone();
    let out = status_until(&c, &["--table"], |o| {
        o.status.success() && text(&o.stdout).contains("unreachable")
    });
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&dead) && l.contains("no (")),
        "{table}"
    );
    let out = status(&c, &[], true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = text(&out.stdout);
    assert!(
        json.contains(&format!("\"addr\":\"{dead}\",\"reachable\":false")),
        "{json}"
    );

    // Two of three killed: no majority anywhere, non-zero exit.
    c.kill(1);
    let out = status(&c, &[], true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("no reachable majority"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("\"quorum\":false"));
}
