//! Authentication on real processes (issue 8, findings 5 and 10's admin
//! part): with a cluster key, a stranger's Paxos messages, admin operations
//! and migration RPCs are refused while a checked workload keeps running and
//! the data stays readable; a wrong key is refused; with a client key, a
//! client without it is refused; without keys everything is open as before.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{raw_exchange, Auth, Cluster, Outcome, Workload, GID};
use synod::auth::{Identity, Key};
use synod::client::ClientError;
use synod_wire::{
    Accept, Ballot, Batch, ClientReply, GroupInfo, MasterOp, MasterRequest, Message, PaxosMsg,
    Prepare, Proposal, ShardPull, ShardRef,
};

const T: Duration = Duration::from_secs(2);

fn prepare(from: u32, round: u64) -> Message {
    Message::Paxos(PaxosMsg::Prepare(Prepare {
        from,
        ballot: Ballot::new(round, from),
        from_slot: 0,
    }))
}

fn accept(from: u32) -> Message {
    Message::Paxos(PaxosMsg::Accept(Accept {
        from,
        ballot: Ballot::new(1 << 40, from),
        chosen_upto: 0,
        entries: vec![Proposal {
            slot: 1,
            batch: Batch {
                commands: vec![Bytes::from_static(b"\x02forged")],
            },
        }],
    }))
}

fn master(op: MasterOp) -> Message {
    Message::Master(MasterRequest {
        client_id: 0x57A4_E6E4,
        seq: 1,
        ack_seq: 0,
        op,
    })
}

fn assert_closed(what: &str, o: Outcome) {
    assert!(
        matches!(o, Outcome::Closed),
        "{what}: expected the connection closed, got {o:?}"
    );
}

fn assert_auth_error(what: &str, o: Outcome) {
    match o {
        Outcome::Reply(Message::Reply(ClientReply::Error { reason }))
            if reason.contains("authentication required") => {}
        other => panic!("{what}: expected an authentication error, got {other:?}"),
    }
}

#[test]
fn strangers_are_refused_while_the_cluster_serves() {
    let c = Cluster::new_auth(3, Auth::ClusterKey);
    let key = c.key.clone().expect("cluster key");
    let mut client = c.client();
    client.put("victim", "precious").expect("put");
    let before = client.query(None).expect("query").num;
    let shard = synod_wire::shard_of(b"victim", synod_wire::DEFAULT_SHARDS);
    let w = Workload::start(&c, 3, 6);
    c.wait_for(Duration::from_secs(30), |_| w.completed() >= 20);

    for node in &c.nodes {
        let a = node.addr.as_str();
        // Forged Paxos with no handshake: the connection is closed, the
        // message never reaches a replica (old code took it silently, and a
        // round of u64::MAX killed the group).
        assert_closed(
            "Prepare",
            raw_exchange(a, GID, None, prepare(2, u64::MAX), T),
        );
        assert_closed(
            "Prepare",
            raw_exchange(a, GID, None, prepare(1, 1 << 40), T),
        );
        assert_closed("Accept", raw_exchange(a, GID, None, accept(0), T));
        assert_closed(
            "master Prepare",
            raw_exchange(a, 0, None, prepare(1, 1 << 40), T),
        );
        // Admin operations and migration RPCs: an error, nothing done.
        let mv = master(MasterOp::Move { shard, gid: GID });
        assert_auth_error("Move", raw_exchange(a, 0, None, mv, T));
        let join = master(MasterOp::Join {
            groups: vec![GroupInfo::new(66, vec!["127.0.0.1:9".into(); 1000])],
        });
        assert_auth_error("Join", raw_exchange(a, 0, None, join, T));
        let leave = master(MasterOp::Leave { gids: vec![GID] });
        assert_auth_error("Leave", raw_exchange(a, 0, None, leave, T));
        let pull = Message::ShardPull(ShardPull {
            config_num: before,
            shard,
            cursor: 0,
        });
        assert_auth_error("ShardPull", raw_exchange(a, GID, None, pull, T));
        let delete = Message::ShardDelete(ShardRef {
            config_num: before,
            shard,
        });
        assert_auth_error("ShardDelete", raw_exchange(a, GID, None, delete, T));

        // A holder of the key is bound to the identity it proved: an admin
        // connection may not speak Paxos, and replica 1 may not speak as
        // replica 2 or for another group.
        let admin = Some((&key, Identity::Admin));
        assert_closed(
            "admin Prepare",
            raw_exchange(a, GID, admin, prepare(1, 1), T),
        );
        let r1 = Some((
            &key,
            Identity::Peer {
                gid: GID,
                replica: 1,
            },
        ));
        assert_closed("impersonation", raw_exchange(a, GID, r1, prepare(2, 1), T));
        let m1 = Some((&key, Identity::Peer { gid: 0, replica: 1 }));
        assert_closed("other group", raw_exchange(a, GID, m1, prepare(1, 1), T));

        // The wrong key: the dialer finds out at once (the server cannot
        // prove a key the dialer does not share), and the server refuses
        // whatever the dialer does next.
        let wrong = Key::generate().expect("key");
        let o = raw_exchange(
            a,
            GID,
            Some((
                &wrong,
                Identity::Peer {
                    gid: GID,
                    replica: 1,
                },
            )),
            prepare(1, 1),
            T,
        );
        assert!(matches!(o, Outcome::AuthFailed(_)), "wrong key: {o:?}");
    }

    // A client with the wrong cluster key cannot even query.
    let wrong = Key::generate().expect("key");
    let mut stranger = c.client_with_keys(Some(wrong), None, Duration::from_secs(2));
    match stranger.query(None) {
        Err(ClientError::Unreachable(why)) => {
            assert!(why.contains("authentication"), "{why}")
        }
        other => panic!("wrong key: {other:?}"),
    }
    // An anonymous client may read and write (no client key), but not move
    // shards.
    let mut anon = c.client_with_keys(None, None, Duration::from_secs(5));
    assert_eq!(
        anon.get("victim").expect("get"),
        Some(Bytes::from("precious"))
    );
    match anon.move_shard(shard, GID) {
        Err(ClientError::Refused(why)) => assert!(why.contains("authentication"), "{why}"),
        other => panic!("anonymous Move: {other:?}"),
    }

    // The cluster kept serving, linearizably, and nothing changed.
    let n = w.completed();
    c.wait_for(Duration::from_secs(30), |_| w.completed() >= n + 20);
    let history = w.finish();
    assert!(history.len() >= 40, "{} operations", history.len());
    assert!(c.exited_none(), "a node exited");
    let mut client = c.client();
    assert_eq!(
        client.query(None).expect("query").num,
        before,
        "a configuration was created"
    );
    assert_eq!(
        client.get("victim").expect("get"),
        Some(Bytes::from("precious"))
    );
    // The refusals were logged with their reasons.
    let logs: String = (0..3).map(|i| c.log(i)).collect();
    assert!(logs.contains("authentication"), "no refusal logged");
}

#[test]
fn a_client_key_closes_the_front_door() {
    let c = Cluster::new_auth(3, Auth::ClientKey);
    let client_key = c.client_key.clone().expect("client key");
    let mut admin = c.client();
    admin.put("k", "v").expect("admin put");

    // Without a key: refused with a reason (its configuration query
    // already), not executed.
    let mut anon = c.client_with_keys(None, None, Duration::from_secs(3));
    match anon.put("k", "stranger") {
        Err(ClientError::Refused(why) | ClientError::Protocol(why)) => {
            assert!(why.contains("authentication required"), "{why}")
        }
        other => panic!("anonymous put: {other:?}"),
    }
    // Even with a configuration in hand (sent straight to the group).
    let req = synod_wire::ClientRequest {
        client_id: 7,
        seq: 1,
        ack_seq: 0,
        op: synod_wire::Op::Get {
            key: Bytes::from("k"),
        },
    };
    for node in &c.nodes {
        let o = raw_exchange(&node.addr, GID, None, Message::Request(req.clone()), T);
        match o {
            Outcome::Reply(Message::Reply(ClientReply::Error { reason }))
                if reason.contains("authentication required") => {}
            other => panic!("anonymous Get: {other:?}"),
        }
    }
    // With the wrong client key: the handshake fails.
    let mut wrong =
        c.client_with_keys(None, Some(Key::generate().unwrap()), Duration::from_secs(2));
    assert!(matches!(wrong.get("k"), Err(ClientError::Unreachable(_))));
    // With the client key: reads and writes, but no admin operations.
    let mut ok = c.client_with_keys(None, Some(client_key.clone()), Duration::from_secs(10));
    assert_eq!(ok.get("k").expect("get"), Some(Bytes::from("v")));
    ok.append("k", "w").expect("append");
    assert_eq!(ok.get("k").expect("get"), Some(Bytes::from("vw")));
    match ok.leave(vec![GID]) {
        Err(ClientError::Refused(why)) => assert!(why.contains("authentication"), "{why}"),
        other => panic!("client-key Leave: {other:?}"),
    }
    // A client connection is no replica: its Paxos messages close it.
    for node in &c.nodes {
        let id = Some((&client_key, Identity::Client));
        let o = raw_exchange(&node.addr, GID, id, prepare(1, 1), T);
        assert_closed("client Prepare", o);
    }
    assert_eq!(admin.get("k").expect("get"), Some(Bytes::from("vw")));
}

#[test]
fn without_keys_everything_is_open_as_before() {
    let c = Cluster::new_auth(3, Auth::Open);
    let mut anon = c.client_with_keys(None, None, Duration::from_secs(10));
    anon.put("a", "1").expect("put");
    let num = anon.query(None).expect("query").num;
    let shard = synod_wire::shard_of(b"a", synod_wire::DEFAULT_SHARDS);
    assert_eq!(anon.move_shard(shard, GID).expect("move").num, num + 1);
    assert_eq!(anon.get("a").expect("get"), Some(Bytes::from("1")));
    // Without a key a Paxos frame from anyone is taken as before: the
    // connection stays open (a round-0 Prepare is harmless: refused by
    // every promise). This is what the keyed test above tells apart.
    let o = raw_exchange(&c.nodes[0].addr, GID, None, prepare(1, 0), T);
    assert!(matches!(o, Outcome::Silent), "open cluster: {o:?}");
    // A client that insists on a key cannot talk to a server without one
    // (the server cannot prove a key it does not have).
    let mut keyed =
        c.client_with_keys(Some(Key::generate().unwrap()), None, Duration::from_secs(2));
    assert!(matches!(keyed.get("a"), Err(ClientError::Unreachable(_))));
}

/// A dialer that says hello and never proves anything is closed at the
/// first-frame deadline, like a silent connection (it would otherwise hold
/// a connection slot until the idle timeout).
#[test]
fn an_unfinished_handshake_is_closed_at_the_first_frame_deadline() {
    use std::io::{Read, Write};
    let c = Cluster::with_args(1, 0, &["--first-frame-secs", "1"]);
    let key = c.key.clone().expect("key");
    let mut s = std::net::TcpStream::connect(&c.nodes[0].addr).expect("connect");
    let (_, hello) = synod::auth::Dialer::new(&key, Identity::Admin, [9; 32]);
    let mut buf = bytes::BytesMut::new();
    synod_wire::encode_frame(
        &synod_wire::Frame {
            request_id: 0,
            group: 0,
            message: Message::Auth(synod_wire::AuthMsg::Hello(hello)),
        },
        &mut buf,
    );
    s.write_all(&buf).expect("hello");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    // The challenge came (32 + 64 bytes), then the close, well before the
    // 10 s read timeout (the sweep runs every 100 ms).
    assert_eq!(got.len(), 96, "expected exactly one AuthChallenge frame");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    assert!(c.log(0).contains("handshake not finished"), "not logged");
}
