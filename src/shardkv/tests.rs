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
            .map(|gid| GroupInfo::new(gid, vec![format!("10.0.0.{gid}:1")]))
            .collect(),
    }
}

fn run(kv: &mut ShardKv, cmd: GroupCommand) {
    assert_eq!(kv.apply(0, &cmd.encode()), None);
}

/// A KV group's answer is always a `Message::Reply`.
fn kv_reply(m: Message) -> ClientReply {
    match m {
        Message::Reply(r) => r,
        other => panic!("a KV group answered {other:?}"),
    }
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
        .map(|(_, _, reply)| kv_reply(reply))
        .expect("a client command")
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
        .map(|(_, _, reply)| kv_reply(reply))
        .expect("a client command")
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
        GroupCommand::InstallChunk {
            config_num: 4,
            shard: 5,
            cursor: 1 << 40,
            done: false,
            data: Bytes::from_static(b"records"),
        },
        GroupCommand::InstallChunk {
            config_num: 4,
            shard: 5,
            cursor: 0,
            done: true,
            data: Bytes::new(),
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
        // InstallChunk: too short for its fixed fields; a done flag of 2.
        b"\xE5aaaaaaaaaaaabbbbbbbb",
        b"\xE5aaaaaaaaaaaabbbbbbbb\x02data",
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
            shard,
            from,
            cursor,
            ..
        } = w
        else {
            panic!("expected pulls, got {w:?}");
        };
        assert_eq!((from, cursor), (1, 0));
        pull_chunks(&g1, &mut g2, shard);
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
    assert_eq!(g1.shed_records(), 0);
    let held = g1.held_records();
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
    // Of the four shards deleted only shard 5 held anything: a key and a
    // session shed, half of what g1 held (shard 0 keeps the other two), so
    // g1's replica snapshots, dropping the copy its last snapshot held.
    assert_eq!((held, g1.shed_records(), g1.held_records()), (4, 2, 2));
    assert_eq!(g2.shed_records(), 0);
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
    assert_eq!(copy.answer_pull(2, 2, 0), g1.answer_pull(2, 2, 0));
    // Corrupt input is refused, never a panic.
    for cut in 0..snap.len() {
        let _ = ShardKv::new(1, opts()).restore(&snap[..cut]);
    }
    assert!(
        ShardKv::new(2, opts()).restore(&snap).is_err(),
        "another group's snapshot"
    );
}

// ---- chunked migration -------------------------------------------------------

/// The first `n` keys of the form `key<i>` that hash to `shard`.
fn keys_of(shard: u32, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("key{i}"))
        .filter(|k| synod_wire::shard_of(k.as_bytes(), SHARDS) == shard)
        .take(n)
        .collect()
}

fn value_of(key: &str) -> String {
    format!("{key}={};", "x".repeat(key.len() * 3))
}

/// g1 served everything in configuration 1 and holds `keys` keys in shard
/// 5 (written by client 7 with seqs 1..=keys, none acknowledged); both
/// groups are in configuration 2, where shard 5 is g2's: g1 Offering it
/// (chunks of `chunk_bytes`), g2 Pulling it.
fn mid_move(keys: usize, chunk_bytes: usize) -> (ShardKv, ShardKv) {
    let mut g1 = ShardKv::new(1, opts());
    let mut g2 = ShardKv::new(2, opts());
    g1.migrate_chunk_bytes = chunk_bytes;
    let c1 = config(1, &[1; 8]);
    let c2 = config(2, &[1, 1, 1, 1, 1, 2, 1, 1]);
    run(&mut g1, GroupCommand::Reconfigure(c1.clone()));
    run(&mut g2, GroupCommand::Reconfigure(c1));
    for (i, key) in keys_of(5, keys).iter().enumerate() {
        assert_eq!(
            put(&mut g1, 7, 1 + i as u64, key, &value_of(key)),
            ClientReply::Ok(Bytes::new())
        );
    }
    put(&mut g1, 7, 1000, &key_of(0), "stays;");
    run(&mut g1, GroupCommand::Reconfigure(c2.clone()));
    run(&mut g2, GroupCommand::Reconfigure(c2));
    assert_eq!(g1.shard_state(5), ShardState::Offering);
    assert_eq!(g2.shard_state(5), ShardState::Pulling);
    (g1, g2)
}

/// The cursor `kv`'s pending pull of `shard` names.
fn pull_cursor(kv: &ShardKv, shard: u32) -> u64 {
    kv.work(None)
        .into_iter()
        .find_map(|w| match w {
            Work::Pull {
                shard: s, cursor, ..
            } if s == shard => Some(cursor),
            _ => None,
        })
        .expect("a pending pull")
}

/// What a driver proposes after asking `from` for the chunk at `cursor`.
fn chunk_from(from: &ShardKv, config_num: u64, shard: u32, cursor: u64) -> GroupCommand {
    let PullAnswer::Chunk { data, done } = from.answer_pull(config_num, shard, cursor) else {
        panic!(
            "group {} has no chunk at {cursor} of shard {shard}",
            from.gid()
        );
    };
    GroupCommand::InstallChunk {
        config_num,
        shard,
        cursor,
        done,
        data,
    }
}

/// Pulls `shard` from `from` into `to` chunk by chunk, the way a driver
/// does: ask for the cursor `to`'s work names, apply what comes back.
/// Returns the number of chunks and the largest log command among them.
fn pull_chunks(from: &ShardKv, to: &mut ShardKv, shard: u32) -> (usize, usize) {
    let (mut chunks, mut largest) = (0, 0);
    while to.shard_state(shard) == ShardState::Pulling {
        let cmd = chunk_from(from, to.config().num, shard, pull_cursor(to, shard));
        largest = largest.max(cmd.encode().len());
        run(to, cmd);
        chunks += 1;
        assert!(chunks < 10_000, "the transfer makes no progress");
    }
    (chunks, largest)
}

fn assert_has_every_value(kv: &mut ShardKv, keys: usize) {
    for key in keys_of(5, keys) {
        let want = Bytes::from(value_of(&key));
        assert_eq!(get(kv, &key), ClientReply::Ok(want), "{key}");
    }
}

#[test]
fn a_large_shard_moves_in_bounded_chunks() {
    let (g1, mut g2) = mid_move(200, 256);
    let (chunks, largest) = pull_chunks(&g1, &mut g2, 5);
    assert!(chunks > 20, "only {chunks} chunks for 200 keys");
    // Each log entry: its fixed fields, the chunk header, counts and floor,
    // and at most the budget of items (these records are all below it).
    // Client 7's session, with its 200 cached replies, is one item larger
    // than the budget: it goes alone in the last chunk.
    // Each reply: seq, the request's print (tag and u32), Ok and its length.
    let session_bytes = 8 + 8 + 8 + 4 + 200 * (8 + 5 + 1 + 4);
    assert!(
        largest <= 22 + 13 + 8 + 4 + 256.max(session_bytes),
        "{largest} {session_bytes}"
    );
    assert_eq!(g2.shard_state(5), ShardState::Installed);
    assert_has_every_value(&mut g2, 200);
    // The dedup state came with the last chunk: a retry of a write g1
    // applied is answered from it, not applied again.
    let first = &keys_of(5, 1)[0];
    assert_eq!(
        put(&mut g2, 7, 1, first, &value_of(first)),
        ClientReply::Ok(Bytes::new())
    );
    assert_has_every_value(&mut g2, 200);

    // The same state as moving the shard in one piece.
    let (g1_whole, mut g2_whole) = mid_move(200, usize::MAX);
    assert_eq!(pull_chunks(&g1_whole, &mut g2_whole, 5).0, 1);
    assert_eq!(g2.snapshot(), g2_whole.snapshot());
}

#[test]
fn chunks_apply_only_in_order_and_once() {
    let (g1, mut g2) = mid_move(20, 100);
    let c0 = chunk_from(&g1, 2, 5, 0);
    run(&mut g2, c0.clone());
    let n0 = g2.pulled(5);
    assert!(n0 > 0 && n0 < 20);
    // Part of the shard is here, but it is not served until all of it is.
    assert_eq!(get(&mut g2, &keys_of(5, 1)[0]), ClientReply::WrongGroup);
    assert_eq!(pull_cursor(&g2, 5), n0);

    let c1 = chunk_from(&g1, 2, 5, n0);
    let before = g2.snapshot();
    // A duplicate of the applied chunk, a chunk from past the expected
    // cursor, and one of another configuration: all ignored.
    run(&mut g2, c0.clone());
    run(&mut g2, chunk_from(&g1, 2, 5, n0 + 1));
    let GroupCommand::InstallChunk {
        shard,
        cursor,
        done,
        data,
        ..
    } = c1.clone()
    else {
        unreachable!()
    };
    run(
        &mut g2,
        GroupCommand::InstallChunk {
            config_num: 3,
            shard,
            cursor,
            done,
            data,
        },
    );
    assert_eq!(g2.snapshot(), before, "an out-of-order chunk changed state");

    run(&mut g2, c1.clone());
    let n1 = g2.pulled(5);
    assert!(n1 > n0);
    run(&mut g2, c1);
    assert_eq!(g2.pulled(5), n1, "a chunk applied twice");

    pull_chunks(&g1, &mut g2, 5);
    assert_eq!(g2.shard_state(5), ShardState::Installed);
    assert_eq!(g2.pulled(5), 0);
    // Late copies of any chunk, the last included, change nothing.
    let installed = g2.snapshot();
    run(&mut g2, c0);
    run(&mut g2, chunk_from(&g1, 2, 5, 20));
    assert_eq!(g2.snapshot(), installed);
    assert_has_every_value(&mut g2, 20);
}

#[test]
fn planted_ignoring_the_chunk_cursor_loses_data() {
    // The ordering rule is what keeps a duplicate from costing data: with
    // it off, the same delivery as above (a late copy of the first chunk)
    // drops records.
    let (g1, mut g2) = mid_move(20, 100);
    g2.bugs.ignore_chunk_cursor = true;
    let c0 = chunk_from(&g1, 2, 5, 0);
    run(&mut g2, c0.clone());
    let c1 = chunk_from(&g1, 2, 5, g2.pulled(5));
    run(&mut g2, c1);
    run(&mut g2, c0);
    pull_chunks(&g1, &mut g2, 5);
    let missing = keys_of(5, 20)
        .iter()
        .filter(|k| get(&mut g2, k) == ClientReply::NoKey)
        .count();
    assert!(missing > 0, "the planted bug lost nothing");
}

#[test]
fn a_snapshot_taken_mid_transfer_resumes_it() {
    let (g1, mut g2) = mid_move(30, 80);
    for _ in 0..3 {
        let cmd = chunk_from(&g1, 2, 5, pull_cursor(&g2, 5));
        run(&mut g2, cmd);
    }
    let snap = g2.snapshot();
    let mut resumed = ShardKv::new(2, opts());
    resumed.restore(&snap).expect("restore");
    assert_eq!(resumed.snapshot(), snap, "snapshot bytes are canonical");
    assert_eq!(resumed.shard_state(5), ShardState::Pulling);
    assert_eq!(resumed.pulled(5), g2.pulled(5));
    assert!(resumed.pulled(5) > 0);
    // A restored sender answers the same chunks as the original.
    let mut sender = ShardKv::new(1, opts());
    sender.restore(&g1.snapshot()).expect("restore the sender");
    sender.migrate_chunk_bytes = g1.migrate_chunk_bytes;
    let cursor = resumed.pulled(5);
    assert_eq!(
        sender.answer_pull(2, 5, cursor),
        g1.answer_pull(2, 5, cursor)
    );
    pull_chunks(&sender, &mut resumed, 5);
    pull_chunks(&g1, &mut g2, 5);
    assert_eq!(resumed.snapshot(), g2.snapshot());
    assert_has_every_value(&mut resumed, 30);

    // A cursor on a shard that is not Pulling is refused.
    let offset = cursors_offset(&snap);
    let mut bad = snap.to_vec();
    bad[offset] = 1; // shard 0's cursor; shard 0 is NotOwned by g2
    assert!(ShardKv::new(2, opts()).restore(&bad).is_err());
}

/// Where the per-shard cursors start in a version-2 snapshot.
fn cursors_offset(snap: &[u8]) -> usize {
    let u32_at = |at: usize| u32::from_le_bytes(snap[at..at + 4].try_into().unwrap()) as usize;
    let mut at = 1 + 4;
    for _ in 0..2 {
        at += 4 + u32_at(at);
    }
    at + 4 + SHARDS as usize
}

#[test]
fn replicas_with_different_chunk_sizes_serve_one_transfer() {
    // Chunk boundaries are the sender's business: the cursor names a record,
    // so a transfer may hop between replicas configured differently.
    let (g1, mut g2) = mid_move(40, 60);
    let mut other = ShardKv::new(1, opts());
    other.restore(&g1.snapshot()).expect("restore");
    other.migrate_chunk_bytes = 700;
    let mut turn = 0;
    while g2.shard_state(5) == ShardState::Pulling {
        let from = if turn % 2 == 0 { &g1 } else { &other };
        let cmd = chunk_from(from, 2, 5, pull_cursor(&g2, 5));
        run(&mut g2, cmd);
        turn += 1;
    }
    let (g1_whole, mut g2_whole) = mid_move(40, usize::MAX);
    pull_chunks(&g1_whole, &mut g2_whole, 5);
    assert_eq!(g2.snapshot(), g2_whole.snapshot());
}

#[test]
fn pulls_are_refused_until_ready_and_past_the_end() {
    let (g1, _g2) = mid_move(5, 100);
    assert_eq!(g1.answer_pull(1, 5, 0), PullAnswer::NotReady, "old config");
    assert_eq!(
        g1.answer_pull(3, 5, 0),
        PullAnswer::NotReady,
        "future config"
    );
    assert_eq!(g1.answer_pull(2, 0, 0), PullAnswer::NotReady, "not offered");
    assert_eq!(
        g1.answer_pull(2, 99, 0),
        PullAnswer::NotReady,
        "no such shard"
    );
    // 5 records and client 7's session: 6 items.
    assert_eq!(
        g1.answer_pull(2, 5, 7),
        PullAnswer::NotReady,
        "past the end"
    );
    assert!(matches!(
        g1.answer_pull(2, 5, 6),
        PullAnswer::Chunk { done: true, .. }
    ));
}

#[test]
fn the_next_chunk_is_new_work_for_the_retry_limiter() {
    let (g1, mut g2) = mid_move(10, 50);
    let before: Vec<_> = g2.work(None).iter().map(Work::retry_key).collect();
    let cmd = chunk_from(&g1, 2, 5, 0);
    run(&mut g2, cmd);
    let after: Vec<_> = g2.work(None).iter().map(Work::retry_key).collect();
    assert_eq!(before.len(), after.len());
    assert_ne!(
        before, after,
        "the driver would wait out its retry interval"
    );
}

#[test]
fn a_whole_shard_install_from_an_older_log_still_applies() {
    let (g1, mut g2) = mid_move(10, 100);
    run(
        &mut g2,
        GroupCommand::Install {
            config_num: 2,
            shard: 5,
            data: g1.store().export_shard(5),
        },
    );
    assert_eq!(g2.shard_state(5), ShardState::Installed);
    assert_has_every_value(&mut g2, 10);
}

#[test]
fn version_1_2_and_3_snapshots_still_restore() {
    // Version 3 is version 4 without the departed groups (an empty list
    // here: a u32 0 after the handoffs); version 2 is version 3 without
    // the handoffs (one 0 byte per shard here: nothing offered or
    // installed yet); version 1 is version 2 without the cursors (there
    // were no chunks).
    let (_g1, g2) = mid_move(3, 100);
    let v4 = g2.snapshot();
    let at = cursors_offset(&v4);
    let handoffs = at + 8 * SHARDS as usize;
    let departed = handoffs + SHARDS as usize;
    assert_eq!(v4[departed..departed + 4], [0, 0, 0, 0]);
    let mut v3 = v4.to_vec();
    v3.drain(departed..departed + 4);
    v3[0] = 3;
    assert!(v3[handoffs..handoffs + SHARDS as usize]
        .iter()
        .all(|b| *b == 0));
    let mut v2 = v3.to_vec();
    v2.drain(handoffs..handoffs + SHARDS as usize);
    v2[0] = 2;
    let mut v1 = v2.clone();
    v1.drain(at..at + 8 * SHARDS as usize);
    v1[0] = 1;
    for (version, old) in [(3, &v3), (2, &v2), (1, &v1)] {
        let mut restored = ShardKv::new(2, opts());
        restored
            .restore(old)
            .unwrap_or_else(|e| panic!("a version {version} snapshot: {e}"));
        assert_eq!(restored.snapshot(), v4);
    }
    v1[0] = 5;
    assert!(ShardKv::new(2, opts()).restore(&v1).is_err());
}

/// An unfinished handoff holds back only a later move of that same shard:
/// the old owner takes configurations that leave the offered shard away,
/// still answers the pull and the delete of the earlier move, and refuses a
/// configuration that would bring the shard back before the delete. The
/// new owner likewise moves on while its confirmation is pending.
#[test]
fn an_unfinished_handoff_holds_back_only_that_shard() {
    let (mut g1, mut g2) = mid_move(10, 100);
    assert_eq!(g1.shard_state(5), ShardState::Offering);
    let two = g1.config().clone();
    // Configuration 3 moves another shard (1 -> 2) and leaves shard 5 with
    // group 2: group 1 takes it although shard 5 is not yet pulled.
    let mut shards = two.shards.clone();
    let moved = (0..SHARDS as usize)
        .find(|s| shards[*s] == 1 && *s != 5)
        .expect("group 1 owns another shard");
    shards[moved] = 2;
    let three = Config {
        num: 3,
        shards: shards.clone(),
        groups: two.groups.clone(),
    };
    assert!(g1.may_advance(&three));
    assert!(matches!(
        g1.work(Some(&three)).first(),
        Some(Work::Propose(GroupCommand::Reconfigure(c))) if c.num == 3
    ));
    run(&mut g1, GroupCommand::Reconfigure(three.clone()));
    assert_eq!(g1.config().num, 3);
    assert_eq!(g1.shard_state(5), ShardState::Offering);
    assert_eq!(g1.handoff(5).map(|h| h.config_num), Some(2));
    // The pull of configuration 2 is still answered, from the frozen copy.
    assert!(matches!(g1.answer_pull(2, 5, 0), PullAnswer::Chunk { .. }));
    assert_eq!(g1.answer_pull(3, 5, 0), PullAnswer::NotReady);
    // A configuration 4 that gives shard 5 back to group 1 must wait.
    let mut back = shards.clone();
    back[5] = 1;
    let four = Config {
        num: 4,
        shards: back,
        groups: two.groups.clone(),
    };
    assert!(!g1.may_advance(&four));
    run(&mut g1, GroupCommand::Reconfigure(four.clone()));
    assert_eq!(g1.config().num, 3);
    // Group 2 finishes pulling shard 5 of configuration 2.
    for w in g2.work(None) {
        if let Work::Pull {
            config_num,
            shard: 5,
            cursor,
            ..
        } = w
        {
            let PullAnswer::Chunk { data, done } = g1.answer_pull(config_num, 5, cursor) else {
                panic!("pull refused");
            };
            run(
                &mut g2,
                GroupCommand::InstallChunk {
                    config_num,
                    shard: 5,
                    cursor,
                    done,
                    data,
                },
            );
        }
    }
    while g2.shard_state(5) == ShardState::Pulling {
        let cursor = g2.pulled(5);
        let PullAnswer::Chunk { data, done } = g1.answer_pull(2, 5, cursor) else {
            panic!("pull refused");
        };
        run(
            &mut g2,
            GroupCommand::InstallChunk {
                config_num: 2,
                shard: 5,
                cursor,
                done,
                data,
            },
        );
    }
    assert_eq!(g2.shard_state(5), ShardState::Installed);
    assert_has_every_value(&mut g2, 10);
    // Group 2 moves to configuration 3 (it keeps shard 5 and receives
    // `moved`) before group 1 confirmed the delete.
    assert!(g2.may_advance(&three));
    run(&mut g2, GroupCommand::Reconfigure(three));
    assert_eq!(g2.config().num, 3);
    assert_eq!(g2.shard_state(5), ShardState::Installed);
    assert!(g2.work(None).iter().any(|w| matches!(
        w,
        Work::Delete {
            config_num: 2,
            shard: 5,
            to: 1,
            ..
        }
    )));
    // The delete of the configuration-2 move goes through on both sides.
    let DeleteAnswer::Propose(cmd) = g1.answer_delete(2, 5) else {
        panic!("group 1 should propose the delete");
    };
    run(&mut g1, cmd);
    assert_eq!(g1.shard_state(5), ShardState::NotOwned);
    assert_eq!(g1.answer_delete(2, 5), DeleteAnswer::Done);
    run(
        &mut g2,
        GroupCommand::InstalledAck {
            config_num: 2,
            shard: 5,
        },
    );
    assert_eq!(g2.shard_state(5), ShardState::Serving);
    // Now group 1 may take shard 5 back.
    assert!(g1.may_advance(&four));
    // A snapshot keeps handoffs of earlier configurations.
    let snap = g1.snapshot();
    let mut copy = ShardKv::new(1, opts());
    copy.restore(&snap).expect("restore");
    assert_eq!(copy.snapshot(), snap);
}

fn clock(kv: &mut ShardKv, ms: u64) {
    assert_eq!(kv.apply(0, &crate::kv::clock_command(ms)), None);
}

/// Expiry runs on log time in served shards only: a shard being handed
/// away stays frozen (its chunks are positions in it) and its sessions
/// reach the new owner; the state, log time included, survives a snapshot.
#[test]
fn clock_stamps_expire_served_shards_only_and_survive_snapshots() {
    let (mut g1, mut g2) = mid_move(5, 40);
    let ttl = crate::kv::DEFAULT_SESSION_TTL_MS;
    clock(&mut g1, 1_000);
    clock(&mut g2, 1_000);
    // Client 7 wrote shard 0 (still served by g1) and shard 5 (offered).
    assert_eq!(g1.store().shard_stats(0).sessions, 1);
    assert_eq!(g1.store().shard_stats(5).sessions, 1);
    let order_before = g1.store().key_order(5);
    clock(&mut g1, 1_000 + ttl + 1);
    assert_eq!(g1.store().log_time_ms(), 1_000 + ttl + 1);
    assert_eq!(g1.store().shard_stats(0).sessions, 0, "served: expired");
    assert_eq!(g1.store().shard_stats(5).sessions, 1, "offered: frozen");
    assert_eq!(g1.store().key_order(5), order_before);
    // A replica restored from g1's snapshot is the same state machine.
    let mut copy = ShardKv::new(1, opts());
    copy.restore(&g1.snapshot()).expect("restores");
    assert_eq!(copy.snapshot(), g1.snapshot());
    assert_eq!(copy.store().log_time_ms(), 1_000 + ttl + 1);
    // Client 7's expired session in shard 0 refuses its delayed duplicate.
    assert_eq!(
        put(&mut g1, 7, 1000, &key_of(0), "stays;"),
        ClientReply::SessionExpired
    );
    // The offered shard moves with its session: a duplicate of client 7's
    // first write is answered from the cache at the new owner.
    pull_chunks(&g1, &mut g2, 5);
    assert_eq!(g2.shard_state(5), ShardState::Installed);
    let first = &keys_of(5, 1)[0];
    assert_eq!(
        put(&mut g2, 7, 1, first, &value_of(first)),
        ClientReply::Ok(Bytes::new())
    );
    assert_has_every_value(&mut g2, 5);
}

mod replica_clock {
    use super::*;
    use crate::paxos::{Durable, Synced};
    use crate::replica::{Replica, ReplicaConfig};
    use crate::rng::Rng;

    /// Runs the replica until it has nothing more to persist; returns the
    /// replies and the clock stamps applied.
    /// Tick a lone replica until it leads.
    fn elect(r: &mut Replica<ShardKv>, rng: &mut Rng) {
        for _ in 0..1_000 {
            if r.is_leader() {
                break;
            }
            r.tick(rng);
            drive(r);
        }
        assert!(r.is_leader());
    }

    fn drive(r: &mut Replica<ShardKv>) -> (Vec<ClientReply>, Vec<u64>) {
        let (mut replies, mut stamps) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            r.flush();
            let ready = r.ready();
            if ready.is_empty() {
                break;
            }
            let out = r.advance(ready, Synced::after_sync());
            replies.extend(out.replies.into_iter().map(|(_, reply)| kv_reply(reply)));
            for (_, batch) in &out.committed {
                stamps.extend(
                    batch
                        .commands
                        .iter()
                        .filter_map(|c| crate::kv::decode_clock(c)),
                );
            }
        }
        (replies, stamps)
    }

    fn write(
        r: &mut Replica<ShardKv>,
        now_ms: u64,
        client: u64,
        seq: u64,
    ) -> (ClientReply, Vec<u64>) {
        r.set_now_ms(now_ms);
        let req = ClientRequest {
            client_id: client,
            seq,
            ack_seq: seq - 1,
            op: Op::Append {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"x"),
            },
        };
        r.on_request(0, &req);
        let (replies, stamps) = drive(r);
        assert_eq!(replies.len(), 1);
        (replies[0].clone(), stamps)
    }

    /// The leader stamps the log with the driver's time before a write, at
    /// most every `clock_interval_ms`, never backwards; the state machine
    /// expires by those stamps alone.
    #[test]
    fn the_leader_stamps_the_log_and_sessions_expire_by_the_stamps() {
        let mut rng = Rng::new(7);
        let mut cfg = ReplicaConfig::new(0, 1);
        cfg.clock_interval_ms = 100;
        let sm = ShardKv::owning_every_shard(
            1,
            KvOptions {
                session_ttl_ms: 1_000,
                ..KvOptions::default()
            },
        );
        let mut r = Replica::new(cfg, Durable::default(), sm, &mut rng);
        elect(&mut r, &mut rng);
        let ok = ClientReply::Ok(Bytes::new());
        assert_eq!(write(&mut r, 10_000, 5, 1), (ok.clone(), vec![10_000]));
        assert_eq!(
            write(&mut r, 10_050, 5, 2),
            (ok.clone(), vec![]),
            "too soon"
        );
        assert_eq!(write(&mut r, 10_200, 6, 1), (ok.clone(), vec![10_200]));
        // The driver's clock going back does not move the stamps back.
        assert_eq!(write(&mut r, 9_000, 6, 2), (ok.clone(), vec![]));
        assert_eq!(write(&mut r, 10_350, 6, 3), (ok.clone(), vec![10_350]));
        assert_eq!(r.state().store().log_time_ms(), 10_350);
        // Client 5 has been idle for more than the TTL at the next stamp,
        // client 6 not.
        assert_eq!(write(&mut r, 11_200, 6, 4), (ok, vec![11_200]));
        assert_eq!(r.state().store().stats().sessions, 1);
        assert_eq!(write(&mut r, 11_210, 5, 2).0, ClientReply::SessionExpired);
        assert_eq!(
            r.state().store().read(b"k"),
            ClientReply::Ok(Bytes::from_static(b"xxxxxx"))
        );
    }

    /// Under `StampReads::Timed`, the servers' default, a read that reaches
    /// a leader whose stamp is due waits for a fresh stamp in the log only
    /// if its shard holds a key with an expiry: no other read can answer
    /// differently at a later log time, so an idle store without expiring
    /// keys serves every read with no log slot and no fsync.
    #[test]
    fn only_reads_of_shards_with_expiring_keys_wait_for_a_fresh_stamp() {
        let mut rng = Rng::new(7);
        let mut cfg = ReplicaConfig::new(0, 1);
        cfg.clock_interval_ms = 100;
        assert_eq!(cfg.stamp_reads, crate::replica::StampReads::Timed);
        let sm = ShardKv::owning_every_shard(1, opts());
        let mut r = Replica::new(cfg, Durable::default(), sm, &mut rng);
        elect(&mut r, &mut rng);
        let request = |client: u64, op: Op| ClientRequest {
            client_id: client,
            seq: 1,
            ack_seq: 0,
            op,
        };
        let get = |r: &mut Replica<ShardKv>, now_ms: u64, key: &str| {
            r.set_now_ms(now_ms);
            r.on_request(
                0,
                &request(
                    9,
                    Op::Get {
                        key: Bytes::from(key.to_string()),
                    },
                ),
            );
            let (replies, stamps) = drive(r);
            assert_eq!(replies.len(), 1, "one answer to the Get of {key}");
            (replies[0].clone(), stamps)
        };
        let ok = ClientReply::Ok(Bytes::from_static(b"x"));
        let appended = ClientReply::Ok(Bytes::new());
        assert_eq!(write(&mut r, 10_000, 5, 1), (appended, vec![10_000]));
        // Idle for ten intervals, no key with an expiry: no stamp.
        assert_eq!(get(&mut r, 11_000, "k"), (ok.clone(), vec![]));
        // A key with an expiry in the shard of "k", written behind a stamp.
        let shard = synod_wire::shard_of(b"k", SHARDS);
        let timed = (0..)
            .map(|i| format!("timed{i}"))
            .find(|k| synod_wire::shard_of(k.as_bytes(), SHARDS) == shard)
            .expect("some key hashes there");
        r.set_now_ms(12_000);
        r.on_request(
            0,
            &request(
                6,
                Op::PutEx {
                    key: Bytes::from(timed.clone()),
                    value: Bytes::from_static(b"v"),
                    cond: synod_wire::PutCond::Any,
                    get_old: false,
                    expiry: synod_wire::Expiry::In(5_000),
                },
            ),
        );
        assert_eq!(drive(&mut r).1, vec![12_000]);
        // Now a read of that shard waits for a fresh stamp, and sees the
        // key expired by it; a read of a shard without one still does not.
        assert_eq!(get(&mut r, 13_000, "k"), (ok.clone(), vec![13_000]));
        let v = ClientReply::Ok(Bytes::from_static(b"v"));
        assert_eq!(get(&mut r, 14_000, &timed), (v, vec![14_000]));
        let elsewhere = key_of((shard + 1) % SHARDS);
        assert_eq!(
            get(&mut r, 15_000, &elsewhere),
            (ClientReply::NoKey, vec![])
        );
        assert_eq!(
            get(&mut r, 18_000, &timed),
            (ClientReply::NoKey, vec![18_000])
        );
        // Removed by that stamp, the key leaves no expiry behind.
        assert_eq!(get(&mut r, 19_000, "k"), (ok, vec![]));
    }
}

/// A transaction runs only if the group serves every shard it touches at
/// that point of the log; otherwise none of it applies (issue 10).
#[test]
fn a_transaction_runs_only_where_every_key_is_served() {
    let mut g1 = ShardKv::new(1, opts());
    // Group 1 serves even shards only.
    run(
        &mut g1,
        GroupCommand::Reconfigure(config(1, &[1, 2, 1, 2, 1, 2, 1, 2])),
    );
    let (even, even2, odd) = (key_of(0), key_of(2), key_of(1));
    let spanning = [even.clone(), odd.clone()];
    // The first key's shard is served here (its session lives here): the
    // refusal is final and cached, so a later copy of seq 1 cannot apply.
    let spans = ClientReply::Error {
        reason: synod_wire::TXN_SPANS_GROUPS.to_string(),
    };
    assert_eq!(put_all(&mut g1, 1, &spanning), spans);
    assert_eq!(put_all(&mut g1, 1, &spanning), spans, "the cached refusal");
    // Not its first key's group: WrongGroup, nothing recorded.
    assert_eq!(
        put_all(&mut g1, 2, &[odd, even.clone()]),
        ClientReply::WrongGroup
    );
    assert_eq!(get(&mut g1, &even), ClientReply::NoKey, "nothing applied");
    let local = [even.clone(), even2.clone()];
    let applied = put_all(&mut g1, 3, &local);
    assert!(matches!(applied, ClientReply::Ok(_)));
    assert_eq!(
        get(&mut g1, &even2),
        ClientReply::Ok(Bytes::from_static(b"v"))
    );
    // Its answer lost, then the second key's shard leaves: a resend is
    // answered from the session (it applied), not WrongGroup, which let the
    // client run it again by two-phase commit under a new id.
    run(
        &mut g1,
        GroupCommand::Reconfigure(config(2, &[1, 2, 2, 2, 1, 2, 1, 2])),
    );
    assert_eq!(get(&mut g1, &even2), ClientReply::WrongGroup);
    assert_eq!(put_all(&mut g1, 3, &local), applied);
}

/// A transaction of client 5 putting "v" in every key of `keys`.
fn put_all(kv: &mut ShardKv, seq: u64, keys: &[String]) -> ClientReply {
    let mut b = crate::client::TxnBuilder::new();
    for k in keys {
        b = b.then_put(k.clone(), "v");
    }
    let req = ClientRequest {
        client_id: 5,
        seq,
        ack_seq: 0,
        op: Op::Txn(Box::new(b.build())),
    };
    kv.apply(0, &encode_command(&req))
        .map(|(_, _, reply)| kv_reply(reply))
        .expect("a client command")
}

/// A group that left the configuration is still reachable for the
/// transactions it coordinated: its members are remembered (also across
/// a snapshot), and forgotten again only if it rejoins.
#[test]
fn members_of_a_departed_group_are_remembered() {
    let mut g2 = ShardKv::new(2, opts());
    let only2 = vec![2; SHARDS as usize];
    // Group 1 is a member serving no shard (so nothing to pull from it).
    let mut with1 = config(1, &only2);
    with1
        .groups
        .insert(0, GroupInfo::new(1, vec!["10.0.0.1:1".to_string()]));
    run(&mut g2, GroupCommand::Reconfigure(with1));
    run(&mut g2, GroupCommand::Reconfigure(config(2, &only2)));
    assert_eq!(g2.group_servers(1), vec!["10.0.0.1:1".to_string()]);
    // Two configurations later group 1 is in neither the current nor the
    // previous one.
    run(&mut g2, GroupCommand::Reconfigure(config(3, &only2)));
    assert!(!g2.prev_config().groups.iter().any(|g| g.gid == 1));
    assert_eq!(g2.group_servers(1), vec!["10.0.0.1:1".to_string()]);
    let mut restored = ShardKv::new(2, opts());
    restored.restore(&g2.snapshot()).unwrap();
    assert_eq!(restored.group_servers(1), vec!["10.0.0.1:1".to_string()]);
    assert_eq!(restored.snapshot(), g2.snapshot());
    assert!(g2.group_servers(7).is_empty());
}
