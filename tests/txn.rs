//! Transactions on a real cluster (issue 10): one group's transactions run
//! as one log entry through the client library and the `synod txn` CLI; a
//! transaction whose keys span groups runs two-phase commit; a client that
//! dies mid-commit leaves no lock behind (presumed-abort recovery).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{raw_call, Cluster};
use synod::client::TxnBuilder;
use synod_wire::{
    decode_txn_vote, shard_of, ClientReply, ClientRequest, CompareOp, GroupInfo, Message, Op, Txn,
    TxnFinish, TxnId, TxnOpResult, TxnOutcome, TxnPrepare,
};

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

/// A `TxnPrepare`/`TxnDecide` request by hand, as a client dying mid-commit
/// would have sent it (raw frames: nothing of the client library runs).
fn request(client_id: u64, seq: u64, op: Op) -> Message {
    Message::Request(ClientRequest {
        client_id,
        seq,
        ack_seq: 0,
        op,
    })
}

/// Sends `msg` to group `gid` until a member other than a follower answers
/// (the same seq each time, so a resend is deduplicated), for up to 20 s.
fn call_group(c: &Cluster, gid: u32, msg: Message) -> ClientReply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for addr in &c.masters {
            match raw_call(addr, gid, msg.clone(), Duration::from_secs(2)) {
                Some(Message::Reply(ClientReply::NotLeader { .. })) | None => {}
                Some(Message::Reply(r)) => return r,
                Some(other) => panic!("group {gid} answered {other:?}"),
            }
        }
        assert!(Instant::now() < deadline, "group {gid} has no leader");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

/// Prepares a transfer of 30 from `from` (group 1, the coordinator) to
/// `to` (group 2), both balances known, by raw frames; both parts vote Yes.
fn prepare_transfer(c: &Cluster, dead: u64, txn: TxnId, from: &str, to: &str) {
    for (gid, seq, key, value) in [(1, 1, from, "70"), (2, 2, to, "30")] {
        let op = Op::TxnPrepare(Box::new(TxnPrepare {
            txn,
            part: Txn {
                compares: vec![],
                success: vec![put(key, value)],
                failure: vec![],
            },
            coordinator: 1,
        }));
        match call_group(c, gid, request(dead, txn.seq * 10 + seq, op)) {
            ClientReply::Ok(v) => assert!(decode_txn_vote(v).unwrap().yes, "group {gid}"),
            other => panic!("prepare at group {gid}: {other:?}"),
        }
    }
}

/// Presumed-abort recovery on real processes (issue 10): a client prepares
/// a cross-group transfer and dies before deciding, another dies right
/// after its decision reached the coordinator; within the servers'
/// recovery timeout (`--txn-resolve-after-ms 1000`) the participants ask
/// the coordinator, the first transfer is aborted everywhere and the
/// second committed everywhere, other clients write the keys again, the
/// total holds, and the first client's late commit is refused.
#[test]
fn a_client_dying_mid_commit_leaves_no_lock_behind() {
    let c = Cluster::new_with_args(3, &["--txn-resolve-after-ms", "1000"]);
    let mut client = c.client();
    let config = client
        .join(vec![GroupInfo::new(2, c.masters.clone())])
        .expect("join group 2");
    let shards = config.shards.len() as u32;
    let keys_in = |gid: u32| -> Vec<String> {
        (0..)
            .map(|i| format!("acct{i}"))
            .filter(|k| config.shards[shard_of(k.as_bytes(), shards) as usize] == gid)
            .take(2)
            .collect()
    };
    let (g1, g2) = (keys_in(1), keys_in(2));
    c.wait_for(Duration::from_secs(30), |_| {
        c.client().put(g2[0].clone(), "0").is_ok()
    });
    for (a, b) in [(&g1[0], &g2[0]), (&g1[1], &g2[1])] {
        client.put(a.clone(), "100").unwrap();
        client.put(b.clone(), "0").unwrap();
    }
    let balance = |client: &mut synod::client::Client, k: &str| -> i64 {
        let v = client.get(k.to_string()).unwrap().expect("a balance");
        std::str::from_utf8(&v).unwrap().parse().unwrap()
    };

    // Dies after its prepares: both parts hold locks.
    // A client id as a real client makes one (PROTOCOL.md 7): time-ordered,
    // so the servers open a session for it.
    let dead = synod_wire::client_id_at(synod_wire::unix_now_ms(), 0xDEAD);
    let first = TxnId {
        client: dead,
        seq: 100,
    };
    prepare_transfer(&c, dead, first, &g1[0], &g2[0]);
    let get = |key: &str| Op::Get {
        key: Bytes::copy_from_slice(key.as_bytes()),
    };
    let locked = call_group(&c, 2, request(dead + 1, 1, get(&g2[0])));
    assert_eq!(locked, ClientReply::Busy, "the prepared key is locked");

    // Dies right after its decision was logged at the coordinator: the
    // coordinator's part is applied, the participant's still locked.
    let second = TxnId {
        client: dead,
        seq: 200,
    };
    prepare_transfer(&c, dead, second, &g1[1], &g2[1]);
    let decide = |txn: TxnId, key: &str, seq: u64, outcome: TxnOutcome| {
        let op = Op::TxnDecide(Box::new(TxnFinish {
            txn,
            key: Bytes::copy_from_slice(key.as_bytes()),
            outcome,
        }));
        call_group(&c, 1, request(dead, seq, op))
    };
    let committed = decide(second, &g1[1], 2003, TxnOutcome::Success);
    assert_eq!(committed, ClientReply::Ok(Bytes::from_static(&[1])));
    let died = Instant::now();

    // Other clients' writes to those keys go through once the servers
    // resolved both (the client library retries Busy on its own).
    let mut other = c.client();
    other
        .put(g2[0].clone(), "0")
        .expect("the aborted transfer's key");
    let freed = died.elapsed();
    c.wait_for(Duration::from_secs(20), |_| {
        c.client().get(g2[1].clone()).is_ok()
    });
    eprintln!("locks of the dead client released {freed:?} after it died");
    assert_eq!(balance(&mut other, &g1[0]), 100, "aborted: nothing moved");
    assert_eq!(balance(&mut other, &g2[0]), 0);
    assert_eq!(
        balance(&mut other, &g1[1]),
        70,
        "committed at the coordinator"
    );
    assert_eq!(balance(&mut other, &g2[1]), 30, "and at the participant");

    // The first client comes back and tries to commit: the coordinator
    // logged Abort first (presumed abort), and says so.
    let late = decide(first, &g1[0], 1003, TxnOutcome::Success);
    assert_eq!(late, ClientReply::Ok(Bytes::from_static(&[0])));
    assert_eq!(balance(&mut other, &g1[0]), 100);

    // The keys take cross-group transfers again, and the bank's total holds.
    let transfer = TxnBuilder::new()
        .then_incr(g1[0].clone(), -10)
        .then_incr(g2[0].clone(), 10)
        .build();
    assert!(other.txn(transfer).expect("a transfer").succeeded);
    let total: i64 = g1.iter().chain(&g2).map(|k| balance(&mut other, k)).sum();
    assert_eq!(total, 200);
}
