use super::*;
use synod_wire::{encode_command, GroupInfo};

const SHARDS: u32 = 8;

fn opts() -> KvOptions {
    KvOptions {
        shards: SHARDS,
        ..KvOptions::default()
    }
}

fn config(num: u64, owners: &[GroupId]) -> Config {
    let mut gids: Vec<GroupId> = owners.iter().copied().filter(|g| *g != 0).collect();
    gids.sort();
    gids.dedup();
    Config {
        num,
        shards: owners.to_vec(),
        groups: gids
            .into_iter()
            .map(|gid| GroupInfo {
                gid,
                servers: vec![format!("10.0.0.{gid}:1")],
            })
            .collect(),
    }
}

fn run(kv: &mut ShardKv, cmd: GroupCommand) {
    assert_eq!(kv.apply(0, &cmd.encode()), None);
}

fn put(kv: &mut ShardKv, client: u64, seq: u64, key: &str, value: &str) -> ClientReply {
    let req = ClientRequest {
        client_id: client,
        seq,
        ack_seq: 0,
        op: Op::Append {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        },
    };
    kv.apply(0, &encode_command(&req))
        .expect("a client command")
        .2
}

fn get(kv: &mut ShardKv, key: &str) -> ClientReply {
    let req = ClientRequest {
        client_id: 99,
        seq: 1_000_000,
        ack_seq: 0,
        op: Op::Get {
            key: Bytes::copy_from_slice(key.as_bytes()),
        },
    };
    kv.apply(0, &encode_command(&req))
        .expect("a client command")
        .2
}

/// A key of each shard.
fn key_of(shard: u32) -> String {
    (0..)
        .map(|i| format!("key{i}"))
        .find(|k| synod_wire::shard_of(k.as_bytes(), SHARDS) == shard)
        .expect("some key hashes there")
}

#[test]
fn group_commands_round_trip_and_garbage_is_refused() {
    let cmds = [
        GroupCommand::Reconfigure(config(3, &[1, 2, 1, 2, 1, 2, 1, 2])),
        GroupCommand::Install {
            config_num: 4,
            shard: 5,
            data: Bytes::from_static(b"payload"),
        },
        GroupCommand::Delete {
            config_num: 9,
            shard: 1,
        },
        GroupCommand::InstalledAck {
            config_num: 9,
            shard: 1,
        },
    ];
    for c in cmds {
        assert_eq!(GroupCommand::decode(&c.encode()), Some(c));
    }
    for junk in [
        &b""[..],
        b"\xE1",
        b"\xE3\x01\x02",
        b"\xE4aaaaaaaaaaaaaaaa",
        b"\xEF",
    ] {
        assert_eq!(GroupCommand::decode(&Bytes::copy_from_slice(junk)), None);
    }
}

#[test]
fn first_join_serves_every_shard_at_once() {
    let mut g1 = ShardKv::new(1, opts());
    assert_eq!(
        get(&mut g1, "a"),
        ClientReply::WrongGroup,
        "config 0 serves nothing"
    );
    run(&mut g1, GroupCommand::Reconfigure(config(1, &[1; 8])));
    assert!(g1.settled());
    assert_eq!(put(&mut g1, 1, 1, "a", "x"), ClientReply::Ok(Bytes::new()));
    assert_eq!(get(&mut g1, "a"), ClientReply::Ok(Bytes::from_static(b"x")));
}

#[test]
fn a_moved_shard_carries_its_data_and_dedup_state_and_is_collected() {
    let mut g1 = ShardKv::new(1, opts());
    let mut g2 = ShardKv::new(2, opts());
    let c1 = config(1, &[1; 8]);
    let c2 = config(2, &[1, 1, 1, 1, 2, 2, 2, 2]);
    run(&mut g1, GroupCommand::Reconfigure(c1.clone()));
    run(&mut g2, GroupCommand::Reconfigure(c1));
    let moved = key_of(5);
    let stays = key_of(0);
    assert_eq!(
        put(&mut g1, 7, 1, &moved, "A;"),
        ClientReply::Ok(Bytes::new())
    );
    assert_eq!(
        put(&mut g1, 7, 2, &stays, "B;"),
        ClientReply::Ok(Bytes::new())
    );

    // Both groups take configuration 2 through their logs.
    assert_eq!(
        g1.work(Some(&c2)),
        vec![Work::Propose(GroupCommand::Reconfigure(c2.clone()))]
    );
    run(&mut g1, GroupCommand::Reconfigure(c2.clone()));
    run(&mut g2, GroupCommand::Reconfigure(c2.clone()));
    assert_eq!(g1.shard_state(5), ShardState::Offering);
    assert_eq!(g2.shard_state(5), ShardState::Pulling);
    // The old owner refuses the moved shard; the unaffected one keeps serving.
    assert_eq!(get(&mut g1, &moved), ClientReply::WrongGroup);
    assert_eq!(
        get(&mut g1, &stays),
        ClientReply::Ok(Bytes::from_static(b"B;"))
    );
    // The new owner cannot serve it before it arrives.
    assert_eq!(get(&mut g2, &moved), ClientReply::WrongGroup);
    // No further configuration while shards are in flight.
    let c3 = config(3, &[1; 8]);
    assert!(!g2
        .work(Some(&c3))
        .iter()
        .any(|w| matches!(w, Work::Propose(_))));

    // g2 pulls the four shards and installs them.
    for w in g2.work(None) {
        let Work::Pull {
            config_num,
            shard,
            from,
            ..
        } = w
        else {
            panic!("expected pulls, got {w:?}");
        };
        assert_eq!(from, 1);
        let PullAnswer::Data(data) = g1.answer_pull(config_num, shard) else {
            panic!("g1 has shard {shard} ready");
        };
        run(
            &mut g2,
            GroupCommand::Install {
                config_num,
                shard,
                data,
            },
        );
    }
    assert_eq!(g2.shard_state(5), ShardState::Installed);
    assert_eq!(
        get(&mut g2, &moved),
        ClientReply::Ok(Bytes::from_static(b"A;"))
    );
    // A retry of the append g1 applied is answered from the moved dedup
    // state, not applied again.
    assert_eq!(
        put(&mut g2, 7, 1, &moved, "A;"),
        ClientReply::Ok(Bytes::new())
    );
    assert_eq!(
        get(&mut g2, &moved),
        ClientReply::Ok(Bytes::from_static(b"A;"))
    );

    // Garbage collection: g2 tells g1, g1 drops its copy, g2 hears back.
    let before = g1.store().stats().keys;
    for w in g2.work(None) {
        let Work::Delete {
            config_num,
            shard,
            to,
            ..
        } = w
        else {
            panic!("expected deletes, got {w:?}");
        };
        assert_eq!(to, 1);
        let DeleteAnswer::Propose(cmd) = g1.answer_delete(config_num, shard) else {
            panic!("g1 should propose the delete");
        };
        run(&mut g1, cmd);
        assert_eq!(g1.answer_delete(config_num, shard), DeleteAnswer::Done);
        run(&mut g2, GroupCommand::InstalledAck { config_num, shard });
    }
    assert!(
        g1.store().stats().keys < before,
        "g1 still holds moved data"
    );
    assert_eq!(g1.shard_state(5), ShardState::NotOwned);
    assert!(g1.settled() && g2.settled());
    assert_eq!(
        get(&mut g2, &moved),
        ClientReply::Ok(Bytes::from_static(b"A;"))
    );
}

#[test]
fn reconfigurations_apply_once_and_in_order() {
    let mut g1 = ShardKv::new(1, opts());
    run(&mut g1, GroupCommand::Reconfigure(config(2, &[1; 8])));
    assert_eq!(g1.config().num, 0, "skipping a configuration is refused");
    run(&mut g1, GroupCommand::Reconfigure(config(1, &[1; 8])));
    run(&mut g1, GroupCommand::Reconfigure(config(1, &[1; 8])));
    assert_eq!(g1.config().num, 1);
    // Giving a shard away leaves it Offering: the next config must wait.
    run(
        &mut g1,
        GroupCommand::Reconfigure(config(2, &[2, 1, 1, 1, 1, 1, 1, 1])),
    );
    run(&mut g1, GroupCommand::Reconfigure(config(3, &[1; 8])));
    assert_eq!(g1.config().num, 2);
}

#[test]
fn snapshot_restores_configuration_states_and_data() {
    let mut g1 = ShardKv::new(1, opts());
    run(&mut g1, GroupCommand::Reconfigure(config(1, &[1; 8])));
    put(&mut g1, 3, 1, &key_of(2), "v;");
    run(
        &mut g1,
        GroupCommand::Reconfigure(config(2, &[1, 1, 2, 1, 1, 1, 1, 1])),
    );
    let snap = g1.snapshot();
    let mut copy = ShardKv::new(1, opts());
    copy.restore(&snap).expect("restore");
    assert_eq!(copy.snapshot(), snap);
    assert_eq!(copy.shard_state(2), ShardState::Offering);
    assert_eq!(copy.answer_pull(2, 2), g1.answer_pull(2, 2));
    // Corrupt input is refused, never a panic.
    for cut in 0..snap.len() {
        let _ = ShardKv::new(1, opts()).restore(&snap[..cut]);
    }
    assert!(
        ShardKv::new(2, opts()).restore(&snap).is_err(),
        "another group's snapshot"
    );
}
