//! Issue 8, findings 1-4 on real processes: forged Paxos frames (a Prepare
//! at round u64::MAX, Accepts near slot 2^64, an unsolicited catch-up
//! answer with values nobody wrote, a 68-byte garbage snapshot chunk) sent
//! to every node for the KV group and the master group. No node dies, a
//! checked workload keeps completing and stays linearizable, and the whole
//! cluster restarts from its disks and serves (the forged promise was never
//! made durable, so nothing panics on restart either).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Cluster, Workload, GID};
use synod::auth::{Identity, Key};
use synod_wire::{
    encode_frame, Accept, Ballot, Batch, CatchupResponse, Frame, Message, PaxosMsg, Prepare,
    Proposal, SnapshotChunk,
};

fn forged(from: u32) -> Vec<PaxosMsg> {
    let garbage = Batch {
        commands: vec![Bytes::from_static(b"\x02forged value nobody wrote")],
    };
    vec![
        PaxosMsg::Prepare(Prepare {
            from,
            ballot: Ballot::new(u64::MAX, from),
            from_slot: 0,
        }),
        PaxosMsg::Prepare(Prepare {
            from,
            ballot: Ballot::new(u64::MAX - 1, from),
            from_slot: 0,
        }),
        PaxosMsg::Accept(Accept {
            from,
            ballot: Ballot::new(u64::MAX, from),
            chosen_upto: 0,
            entries: vec![Proposal {
                slot: u64::MAX - 1,
                batch: garbage.clone(),
            }],
        }),
        PaxosMsg::Accept(Accept {
            from,
            ballot: Ballot::new(1, from),
            chosen_upto: 0,
            entries: vec![Proposal {
                slot: 1 << 63,
                batch: garbage.clone(),
            }],
        }),
        PaxosMsg::CatchupResponse(CatchupResponse {
            from,
            chosen_upto: 1 << 20,
            entries: (0..64)
                .map(|slot| Proposal {
                    slot,
                    batch: garbage.clone(),
                })
                .collect(),
        }),
        PaxosMsg::SnapshotChunk(SnapshotChunk {
            from,
            index: 1 << 20,
            total_len: 28,
            offset: 0,
            data: Bytes::from(vec![0xEEu8; 28]),
        }),
    ]
}

/// Sends the forged frames as an authenticated peer would (replica `from`
/// of `group`, holding the cluster key): defence in depth is about what a
/// buggy or compromised member sends, past the handshake. (A stranger's
/// frames never get this far: `tests/auth.rs`.)
fn send_forged(addr: &str, key: Option<&Key>, group: u32, from: u32) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    if let Some(key) = key {
        let id = Identity::Peer {
            gid: group,
            replica: from,
        };
        if synod::auth::stream::dial(&mut s, key, id, group, Duration::from_secs(5)).is_err() {
            return;
        }
    }
    let mut buf = BytesMut::new();
    for msg in forged(from) {
        encode_frame(
            &Frame {
                request_id: 0,
                group,
                message: Message::Paxos(msg),
            },
            &mut buf,
        );
    }
    let _ = s.write_all(&buf);
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn forged_paxos_frames_neither_kill_nor_corrupt_a_cluster() {
    let mut c = Cluster::new(3);
    let work = Workload::start(&c, 3, 4);
    c.wait_for(Duration::from_secs(10), |_| work.completed() > 30);
    for round in 0..3 {
        for (i, node) in c.nodes.iter().enumerate() {
            let from = ((i + 1 + round) % 3) as u32;
            for group in [0, GID] {
                send_forged(&node.addr, c.key.as_ref(), group, from);
            }
        }
    }
    let before = work.completed();
    c.wait_for(Duration::from_secs(20), |_| work.completed() > before + 100);
    assert!(c.exited_none(), "a node died on forged frames");
    work.finish();
    for i in 0..3 {
        // The frames did reach the replicas, and were refused.
        assert!(
            c.log(i).contains("refused a Prepare"),
            "node {i} never saw the forged Prepare:\n{}",
            common::tail(&c.log(i), 30)
        );
        assert!(
            !c.log(i).contains("panicked"),
            "node {i} panicked:\n{}",
            common::tail(&c.log(i), 30)
        );
    }

    // Every node restarts from its disk and the cluster serves again.
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.start_node(i);
    }
    c.wait_for(Duration::from_secs(30), |c| {
        c.client_with_timeout(Duration::from_secs(2))
            .put(&b"after-restart"[..], &b"1"[..])
            .is_ok()
    });
    let v = c
        .client()
        .get(&b"after-restart"[..])
        .expect("get after restart");
    assert_eq!(v.as_deref(), Some(&b"1"[..]));
    assert!(c.exited_none());
}

/// Issue 8, findings 13 and 8, scaled down: with a 256 KiB frame limit and
/// no snapshot, 300 slots of 8 KiB (2.4 MB, ten frames' worth) sit in every
/// WAL. After all three nodes restart, each acceptor reports them all to a
/// candidate: one Promise used to carry them, every receiver refused the
/// frame, and no leader was ever elected. Now Promises are paged and the
/// group serves. A request larger than the frame-derived limit is refused
/// with a reason instead of wedging the group.
#[test]
fn a_restart_with_a_log_larger_than_a_frame_elects_a_leader() {
    let mut c = Cluster::with_args(
        3,
        0,
        &[
            "--frame-bytes-max",
            "262144",
            "--migrate-chunk-bytes",
            "65536",
            "--snapshot-log-slots",
            "1000000",
        ],
    );
    c.client()
        .join(vec![synod_wire::GroupInfo::new(GID, c.masters.clone())])
        .expect("join group 1");
    c.wait_for(Duration::from_secs(30), |c| {
        c.client().put(&b"__ready"[..], &b"1"[..]).is_ok()
    });
    let mut client = c.client();
    let value = Bytes::from(vec![b'v'; 8 << 10]);
    for i in 0..300 {
        client
            .put(Bytes::from(format!("key-{i}")), value.clone())
            .expect("put");
    }
    // Finding 8: over the limit (frame - 64 KiB), refused with a reason.
    let err = client
        .put(&b"big"[..], Bytes::from(vec![b'x'; 200 << 10]))
        .expect_err("a command over the limit was taken");
    assert!(format!("{err:?}").contains("too large"), "{err:?}");
    drop(client);
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.start_node(i);
    }
    c.wait_for(Duration::from_secs(30), |c| {
        c.client_with_timeout(Duration::from_secs(2))
            .put(&b"after-restart"[..], &b"1"[..])
            .is_ok()
    });
    let got = c.client().get(&b"key-299"[..]).expect("get");
    assert_eq!(got.as_deref(), Some(&value[..]));
    assert!(c.exited_none());
}
