//! Transactions on a real cluster (issue 10): one group's transactions run
//! as one log entry through the client library and the `synod txn` CLI; a
//! transaction whose keys span groups runs two-phase commit.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Cluster;
use synod::client::TxnBuilder;
use synod_wire::{shard_of, CompareOp, GroupInfo, TxnOpResult};

#[test]
fn transfers_commit_atomically_and_compares_pick_the_branch() {
    let c = Cluster::new(3);
    let mut client = c.client();
    client.put("acct:a", "100").expect("put a");
    client.put("acct:b", "0").expect("put b");
    let read = client
        .txn(TxnBuilder::new().then_get("acct:a").build())
        .expect("read a");
    let TxnOpResult::Ok { version, .. } = read.results[0] else {
        panic!("a has a value: {read:?}");
    };
    let transfer = TxnBuilder::new()
        .when_version("acct:a", CompareOp::Eq, version)
        .then_incr("acct:a", -30)
        .then_incr("acct:b", 30)
        .else_get("acct:a")
        .build();
    let done = client.txn(transfer.clone()).expect("transfer");
    assert!(done.succeeded, "{done:?}");
    assert_eq!(client.get("acct:a").unwrap(), Some(Bytes::from("70")));
    assert_eq!(client.get("acct:b").unwrap(), Some(Bytes::from("30")));
    // The same compare is stale now: the other branch runs, nothing moves.
    let again = client.txn(transfer).expect("stale transfer");
    assert!(!again.succeeded);
    assert_eq!(
        again.results,
        vec![TxnOpResult::Ok {
            value: Bytes::from("70"),
            version: match done.results[0] {
                TxnOpResult::Ok { version, .. } => version,
                _ => unreachable!(),
            }
        }]
    );
    assert_eq!(client.get("acct:b").unwrap(), Some(Bytes::from("30")));

    // The CLI, as the README shows it; `synod` exits 0 or the test shows
    // its stderr.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_synod"))
            .args(["--masters", &c.masters.join(","), "--timeout", "20"])
            .args(args)
            .output()
            .expect("run synod")
    };
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let line = ok(cli(&[
        "txn", "if", "acct:b", "value", "=", "30", "then", "incr", "acct:b", "5", "get", "acct:a",
        "else", "get", "acct:b",
    ]));
    assert!(
        line.starts_with(r#"{"succeeded":true,"results":[{"value":"35","version":"#),
        "{line}"
    );
    assert!(line.contains(r#"{"value":"70","version":"#), "{line}");

    // `synod get --json` shows the version the transaction left; `synod
    // del` counts the keys that had a value.
    let line = ok(cli(&["get", "--json", "acct:b"]));
    assert!(
        line.starts_with(r#"{"key":"acct:b","value":"35","version":"#),
        "{line}"
    );
    assert_eq!(ok(cli(&["del", "acct:b", "never-written"])), "1\n");
    let out = cli(&["get", "--json", "acct:b"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"key\":\"acct:b\",\"value\":null,\"version\":0}\n"
    );
    client.put("acct:b", "35").unwrap();

    // With a second group, a transaction on keys in both groups' shards
    // runs two-phase commit: atomic, compares across both groups.
    let config = client
        .join(vec![GroupInfo::new(2, c.masters.clone())])
        .expect("join group 2");
    let shards = config.shards.len() as u32;
    let key_in = |gid: u32| {
        (0..)
            .map(|i| format!("k{i}"))
            .find(|k| config.shards[shard_of(k.as_bytes(), shards) as usize] == gid)
            .unwrap()
    };
    let (k1, k2) = (key_in(1), key_in(2));
    c.wait_for(Duration::from_secs(30), |_| {
        c.client().put(k2.clone(), "x").is_ok()
    });
    let spanning = TxnBuilder::new()
        .when_absent(k1.clone())
        .then_put(k1.clone(), "1")
        .then_put(k2.clone(), "2")
        .then_get(k1.clone())
        .else_get(k2.clone());
    let r = client
        .txn(spanning.clone().build())
        .expect("cross-group txn");
    assert!(r.succeeded, "{r:?}");
    assert!(matches!(&r.results[2], TxnOpResult::Ok { value, .. } if value == "1"));
    assert_eq!(client.get(k2.clone()).unwrap().as_deref(), Some(&b"2"[..]));
    // The compare on group 1's key now fails: the failure branch runs,
    // reading group 2's key, and nothing is written.
    let r = client.txn(spanning.build()).expect("cross-group txn again");
    assert!(!r.succeeded, "{r:?}");
    assert!(matches!(&r.results[0], TxnOpResult::Ok { value, .. } if value == "2"));
    // Both groups' keys are unlocked afterwards: single-key writes go on.
    client.put(k1, "3").expect("put k1 after the transactions");
    client
        .put(k2.clone(), "x")
        .expect("put k2 after the transactions");
    let local = client
        .txn(
            TxnBuilder::new()
                .then_append(k2.clone(), "y")
                .then_get(k2)
                .build(),
        )
        .expect("a transaction inside group 2");
    assert!(matches!(&local.results[1], TxnOpResult::Ok { value, .. } if value == "xy"));
}
