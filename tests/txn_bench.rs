//! `synod-bench --check` against a real two-group cluster. Transfers
//! (issue 10): across groups they run two-phase commit, `--txn-one-group`
//! ones never do, the final audit finds the initial total, and a balance
//! changed behind the bank's back fails the check. Puts and gets from
//! sessions that share connections (the default) stay linearizable when
//! a leader is killed under them.
//!
//! `synod-bench` belongs to the `synod-tools` package, which cargo builds
//! for a workspace `cargo test` (its own tests need it) but not for
//! `cargo test --test txn_bench` alone: then build it first with `cargo
//! build -p synod-tools --bin synod-bench`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::Cluster;
use synod_wire::{shard_of, GroupInfo};

/// `target/<profile>/synod-bench`, next to `target/<profile>/deps/<this test>`.
fn bench_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>")
        .join("synod-bench");
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build -p synod-tools --bin synod-bench` (a workspace \
         `cargo test` builds it)",
        bin.display()
    );
    bin
}

/// Three nodes hosting the masters, group 1 and group 2 (half the shards
/// each), both serving.
fn two_groups() -> Cluster {
    let c = Cluster::new(3);
    let mut client = c.client();
    let config = client
        .join(vec![GroupInfo::new(2, c.masters.clone())])
        .expect("join group 2");
    let shards = config.shards.len() as u32;
    assert!(config.shards.contains(&1) && config.shards.contains(&2));
    let in_group_2 = (0..)
        .map(|i| format!("probe{i}"))
        .find(|k| config.shards[shard_of(k.as_bytes(), shards) as usize] == 2)
        .unwrap();
    c.wait_for(Duration::from_secs(30), |c| {
        c.client().put(in_group_2.clone(), "x").is_ok()
    });
    c
}

fn bench(c: &Cluster, args: &[&str]) -> std::process::Child {
    let transfers = ["--workload", "transfer", "--keys", "40"];
    bench_with(c, &[&transfers[..], args].concat())
}

fn bench_with(c: &Cluster, args: &[&str]) -> std::process::Child {
    Command::new(bench_bin())
        .args(["--masters", &c.masters.join(",")])
        .arg("--cluster-key-file")
        .arg(c.dir.join("cluster.key"))
        .args(["--quiet", "--check"])
        .args(["--clients", "4", "--pipeline", "4", "--warmup", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run synod-bench")
}

/// The last line's `key=value` pairs, and the whole output for messages.
fn last_line(out: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (stdout.lines().last().unwrap_or_default().to_string(), all)
}

fn field(line: &str, name: &str) -> u64 {
    let v = line
        .split(' ')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    v.parse()
        .unwrap_or_else(|_| panic!("{name}={v} is not a count"))
}

#[test]
fn bench_transfers_across_and_within_groups_keep_the_bank_total() {
    let c = two_groups();

    let out = bench(&c, &["--duration", "3", "--txn-cross-group"])
        .wait_with_output()
        .expect("wait for synod-bench");
    let (line, all) = last_line(&out);
    assert!(out.status.success(), "cross-group run failed:\n{all}");
    assert!(line.ends_with(" bank=ok"), "{all}");
    assert!(line.contains(" workload=transfer-cross-group "), "{line}");
    let ops = field(&line, "ops");
    assert!(ops > 0, "no transfer committed: {all}");
    // Every transfer spans both groups: at least one 2PC attempt each.
    assert!(field(&line, "two_pc") >= ops, "{line}");
    assert_eq!(field(&line, "broken"), 0, "{line}");
    assert_eq!(field(&line, "off_span"), 0, "{line}");

    let out = bench(&c, &["--duration", "2", "--txn-one-group"])
        .wait_with_output()
        .expect("wait for synod-bench");
    let (line, all) = last_line(&out);
    assert!(out.status.success(), "one-group run failed:\n{all}");
    assert!(line.ends_with(" bank=ok"), "{all}");
    assert!(field(&line, "ops") > 0, "{all}");
    assert_eq!(
        field(&line, "two_pc"),
        0,
        "one-group transfers are single log entries: {line}"
    );
}

#[test]
fn bench_check_fails_when_a_balance_changes_behind_the_banks_back() {
    let c = two_groups();
    let mut child = bench(&c, &["--duration", "4"]);
    // Once the prefill is done (the transfers have started), one account
    // gains money no transfer moved; the audit at the end must see the
    // total off by it and the run must fail.
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut seen = String::new();
    while !seen.contains("prefill done") {
        let before = seen.len();
        stderr
            .read_line(&mut seen)
            .expect("read synod-bench's stderr");
        assert!(seen.len() > before, "synod-bench ended early:\n{seen}");
    }
    let mut client = c.client();
    let forged = client
        .txn(synod::client::TxnBuilder::new().then_incr("k7", 1).build())
        .expect("forge a deposit");
    assert!(forged.succeeded, "{forged:?}");
    stderr
        .read_to_string(&mut seen)
        .expect("read synod-bench's stderr");
    let out = child.wait_with_output().expect("wait for synod-bench");
    let (line, _) = last_line(&out);
    let all = format!("{}\n{seen}", String::from_utf8_lossy(&out.stdout));
    assert!(
        !out.status.success(),
        "a forged deposit went unnoticed:\n{all}"
    );
    assert!(line.ends_with(" bank=broken"), "{all}");
    assert!(all.contains("total of 40000001, not 40000000"), "{all}");
}

/// Eight sessions of one load-generator thread share one connection per
/// destination, their sends told apart by loop-wide wire ids. Killing a
/// node fails connections that carry several sessions' requests at once:
/// every one of them must be resent and answered to its own session (a
/// reply handed to the wrong session would break linearizability or leave
/// a request unanswered).
#[test]
fn bench_sessions_sharing_connections_stay_linearizable_when_a_node_dies() {
    let mut c = two_groups();
    let child = bench_with(
        &c,
        &[
            "--workload",
            "mixed",
            "--read-ratio",
            "0.5",
            "--keys",
            "200",
            "--clients",
            "8",
            "--threads",
            "1",
            "--duration",
            "5",
            "--timeout",
            "20",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    // Whichever node it is, it carried requests of several sessions: each
    // session sends to both groups' leaders, and each node leads or
    // follows both groups.
    c.kill(0);
    let out = child.wait_with_output().expect("wait for synod-bench");
    let (line, all) = last_line(&out);
    assert!(out.status.success(), "run failed:\n{all}");
    assert!(line.ends_with(" linearizable=yes"), "{all}");
    assert!(field(&line, "ops") > 0, "{all}");
    assert_eq!(field(&line, "errors"), 0, "{line}");
    assert!(
        field(&line, "reconnects") > 0,
        "the kill failed no connection: {line}"
    );
}
