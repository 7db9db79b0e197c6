//! The MIT 6.5840 shard controller scenarios (basic, historical queries,
//! move, concurrent joins/leaves, minimal transfers), made stricter: exact
//! sets of moved shards, refusals, at-most-once retries, snapshots, and a
//! property test over random operation sequences.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use synod_wire::{
    encode_command, encode_master_command, ClientReply, ClientRequest, Config, GroupId, GroupInfo,
    MasterOp, MasterRequest, Message, Op,
};

use super::*;
use crate::replica::StateMachine;
use crate::rng::Rng;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn group(gid: GroupId) -> GroupInfo {
    GroupInfo::new(
        gid,
        vec![format!("g{gid}-a:7000"), format!("g{gid}-b:7000")],
    )
}

/// One admin client: numbers its requests and acknowledges every earlier
/// one, as a client that waits for each reply does.
struct Admin {
    id: u64,
    seq: u64,
}

impl Admin {
    fn new(id: u64) -> Admin {
        Admin { id, seq: 0 }
    }

    fn request(&mut self, op: MasterOp) -> MasterRequest {
        self.seq += 1;
        MasterRequest {
            client_id: self.id,
            seq: self.seq,
            ack_seq: self.seq - 1,
            op,
        }
    }

    fn run(&mut self, m: &mut Master, op: MasterOp) -> Result<Config, String> {
        let req = self.request(op);
        let out = m.apply(&req);
        m.assert_invariants();
        out
    }

    fn join(&mut self, m: &mut Master, gids: &[GroupId]) -> Config {
        let groups = gids.iter().map(|&g| group(g)).collect();
        self.run(m, MasterOp::Join { groups })
            .unwrap_or_else(|e| panic!("join {gids:?} refused: {e}"))
    }

    fn leave(&mut self, m: &mut Master, gids: &[GroupId]) -> Config {
        self.run(
            m,
            MasterOp::Leave {
                gids: gids.to_vec(),
            },
        )
        .unwrap_or_else(|e| panic!("leave {gids:?} refused: {e}"))
    }

    fn mv(&mut self, m: &mut Master, shard: u32, gid: GroupId) -> Config {
        self.run(m, MasterOp::Move { shard, gid })
            .unwrap_or_else(|e| panic!("move {shard}->{gid} refused: {e}"))
    }

    fn query(&mut self, m: &mut Master, num: Option<u64>) -> Config {
        self.run(m, MasterOp::Query { num })
            .unwrap_or_else(|e| panic!("query refused: {e}"))
    }
}

fn master(shards: u32) -> Master {
    Master::new(MasterOptions { shards })
}

fn gids_of(config: &Config) -> Vec<GroupId> {
    config.groups.iter().map(|g| g.gid).collect()
}

/// Shards per live group (groups with none included).
fn counts(config: &Config) -> BTreeMap<GroupId, usize> {
    let mut counts: BTreeMap<GroupId, usize> = config.groups.iter().map(|g| (g.gid, 0)).collect();
    for gid in &config.shards {
        if let Some(c) = counts.get_mut(gid) {
            *c += 1;
        }
    }
    counts
}

/// Every shard on a live group (or all on 0 with no groups), and shard
/// counts differing by at most one.
fn assert_balanced(config: &Config) {
    if config.groups.is_empty() {
        assert!(config.shards.iter().all(|&g| g == 0), "{config:?}");
        return;
    }
    let live = gids_of(config);
    for (s, gid) in config.shards.iter().enumerate() {
        assert!(
            live.contains(gid),
            "shard {s} on dead group {gid}: {config:?}"
        );
    }
    let counts = counts(config);
    let min = counts.values().min().copied().unwrap_or(0);
    let max = counts.values().max().copied().unwrap_or(0);
    assert!(max - min <= 1, "unbalanced {counts:?}");
}

/// Shards whose owner differs between two configurations.
fn changed(before: &Config, after: &Config) -> Vec<u32> {
    (0..before.shards.len() as u32)
        .filter(|&s| before.shards[s as usize] != after.shards[s as usize])
        .collect()
}

fn owned_by(config: &Config, gids: &[GroupId]) -> Vec<u32> {
    (0..config.shards.len() as u32)
        .filter(|&s| gids.contains(&config.shards[s as usize]))
        .collect()
}

// ---------------------------------------------------------------------------
// 6.5840 scenarios
// ---------------------------------------------------------------------------

#[test]
fn config_zero_has_no_groups_and_every_shard_on_gid_zero() {
    let mut m = master(64);
    let zero = m.latest().clone();
    assert_eq!(zero.num, 0);
    assert!(zero.groups.is_empty());
    assert_eq!(zero.shards, vec![0; 64]);
    let mut a = Admin::new(1);
    assert_eq!(a.query(&mut m, None), zero);
    assert_eq!(a.query(&mut m, Some(0)), zero);
    assert_eq!(a.query(&mut m, Some(7)), zero, "past the latest = latest");
    assert_eq!(
        Master::new(MasterOptions::default()).latest().shards.len(),
        synod_wire::DEFAULT_SHARDS as usize
    );
}

#[test]
fn basic_join_leave_with_queries_of_history() {
    let mut m = master(64);
    let mut a = Admin::new(1);
    let c1 = a.join(&mut m, &[1]);
    assert_eq!(c1.num, 1);
    assert_eq!(c1.shards, vec![1; 64]);
    assert_eq!(c1.groups, vec![group(1)]);

    let c2 = a.join(&mut m, &[2]);
    assert_eq!(c2.num, 2);
    assert_eq!(gids_of(&c2), vec![1, 2]);
    assert_balanced(&c2);
    assert_eq!(counts(&c2), BTreeMap::from([(1, 32), (2, 32)]));

    assert_eq!(a.query(&mut m, Some(1)), c1);
    assert_eq!(a.query(&mut m, None), c2);

    let c3 = a.leave(&mut m, &[1]);
    assert_eq!(c3.num, 3);
    assert_eq!(c3.shards, vec![2; 64]);
    assert_eq!(gids_of(&c3), vec![2]);

    let c4 = a.leave(&mut m, &[2]);
    assert_eq!(c4.num, 4);
    assert_eq!(c4.shards, vec![0; 64], "no groups: every shard on gid 0");
    assert!(c4.groups.is_empty());

    for (n, want) in [(1, &c1), (2, &c2), (3, &c3), (4, &c4)] {
        assert_eq!(m.config(Some(n)), want);
    }
}

#[test]
fn historical_queries_stay_valid_after_more_changes() {
    let mut m = master(64);
    let mut a = Admin::new(1);
    let mut history = vec![m.latest().clone()];
    history.push(a.join(&mut m, &[10, 11, 12]));
    history.push(a.leave(&mut m, &[11]));
    history.push(a.mv(&mut m, 5, 12));
    history.push(a.join(&mut m, &[13]));
    let before: Vec<Config> = (0..history.len() as u64)
        .map(|n| a.query(&mut m, Some(n)))
        .collect();
    assert_eq!(before, history);
    // Many more changes, none of which may touch the old configurations.
    for gid in 20..40 {
        a.join(&mut m, &[gid]);
        a.mv(&mut m, gid % 64, gid);
    }
    a.leave(&mut m, &(20..30).collect::<Vec<_>>());
    for (n, want) in history.iter().enumerate() {
        assert_eq!(&a.query(&mut m, Some(n as u64)), want, "configuration {n}");
    }
    assert_eq!(m.latest().num, history.len() as u64 - 1 + 41);
}

#[test]
fn move_assigns_exactly_one_shard_and_join_rebalances_after() {
    let mut m = master(64);
    let mut a = Admin::new(1);
    a.join(&mut m, &[1]);
    a.join(&mut m, &[2]);
    // Move every shard of group 1 to group 2 and back, one at a time.
    for s in 0..64u32 {
        let before = m.latest().clone();
        let target = if before.shards[s as usize] == 1 { 2 } else { 1 };
        let after = a.mv(&mut m, s, target);
        assert_eq!(after.num, before.num + 1);
        assert_eq!(changed(&before, &after), vec![s]);
        assert_eq!(after.shards[s as usize], target);
        assert_eq!(after.groups, before.groups);
    }
    // A move to the current owner still creates a configuration, unchanged.
    let before = m.latest().clone();
    let after = a.mv(&mut m, 0, before.shards[0]);
    assert_eq!(after.num, before.num + 1);
    assert_eq!(after.shards, before.shards);
    // Unbalance on purpose, then a Join rebalances everything.
    for s in 0..64 {
        a.mv(&mut m, s, 1);
    }
    assert_eq!(counts(m.latest()), BTreeMap::from([(1, 64), (2, 0)]));
    let c = a.join(&mut m, &[3]);
    assert_balanced(&c);
}

#[test]
fn concurrent_joins_and_leaves_from_ten_clients_keep_balance() {
    for seed in 0..20 {
        let mut rng = Rng::new(seed);
        let mut m = master(64);
        // Client i joins gid 100+i, leaves it, joins it again, leaves it
        // again unless i is even: steps of the ten scripts interleave in
        // a random order, as concurrent requests reach the log.
        let mut admins: Vec<Admin> = (0..10).map(|i| Admin::new(1000 + i)).collect();
        let mut step = [0usize; 10];
        let script_len = |i: usize| 3 + i % 2;
        let mut expected_num = 0;
        while (0..10).any(|i| step[i] < script_len(i)) {
            let i = rng.range(0, 10) as usize;
            if step[i] >= script_len(i) {
                continue;
            }
            let gid = 100 + i as GroupId;
            let c = if step[i] % 2 == 0 {
                admins[i].join(&mut m, &[gid])
            } else {
                admins[i].leave(&mut m, &[gid])
            };
            step[i] += 1;
            expected_num += 1;
            assert_eq!(c.num, expected_num, "seed {seed}");
            assert_balanced(&c);
        }
        let last = m.latest();
        assert_eq!(
            gids_of(last),
            vec![100, 102, 104, 106, 108],
            "seed {seed}: even clients stay"
        );
        let mut loads: Vec<usize> = counts(last).values().copied().collect();
        loads.sort_unstable();
        assert_eq!(loads, vec![12, 13, 13, 13, 13], "seed {seed}");
    }
}

#[test]
fn minimal_transfers_after_joins() {
    let mut m = master(64);
    let mut a = Admin::new(1);
    a.join(&mut m, &[1]);
    for gid in 2..=12 {
        let before = m.latest().clone();
        let after = a.join(&mut m, &[gid]);
        assert_balanced(&after);
        let moved = changed(&before, &after);
        // Exactly the shards now on the new group moved, and nothing else.
        assert_eq!(moved, owned_by(&after, &[gid]), "join {gid}");
        assert_eq!(moved.len(), 64 / gid as usize, "join {gid}");
    }
    // Several groups at once: only shards handed to them move.
    let before = m.latest().clone();
    let after = a.join(&mut m, &[20, 21, 22]);
    assert_balanced(&after);
    assert_eq!(changed(&before, &after), owned_by(&after, &[20, 21, 22]));
    assert_eq!(changed(&before, &after).len(), 64 / 15 * 3);
}

#[test]
fn minimal_transfers_after_leaves() {
    let mut m = master(64);
    let mut a = Admin::new(1);
    a.join(&mut m, &(1..=12).collect::<Vec<_>>());
    for gid in 1..=6 {
        let before = m.latest().clone();
        let after = a.leave(&mut m, &[gid]);
        assert_balanced(&after);
        // Exactly the leaving group's shards moved.
        assert_eq!(
            changed(&before, &after),
            owned_by(&before, &[gid]),
            "leave {gid}"
        );
    }
    let before = m.latest().clone();
    let after = a.leave(&mut m, &[7, 9, 11]);
    assert_balanced(&after);
    assert_eq!(changed(&before, &after), owned_by(&before, &[7, 9, 11]));
    assert_eq!(gids_of(&after), vec![8, 10, 12]);
}

#[test]
fn multi_join_and_multi_leave_create_one_configuration_each() {
    let mut m = master(64);
    let mut a = Admin::new(1);
    let c = a.join(&mut m, &[5, 3, 9]);
    assert_eq!(c.num, 1);
    assert_eq!(gids_of(&c), vec![3, 5, 9], "groups sorted by gid");
    assert_balanced(&c);
    // The extra shard of 64 = 3 * 21 + 1 goes to the lowest gid.
    assert_eq!(counts(&c), BTreeMap::from([(3, 22), (5, 21), (9, 21)]));
    let c = a.join(&mut m, &[1, 2]);
    assert_eq!(c.num, 2);
    assert_balanced(&c);
    let c = a.leave(&mut m, &[9, 1, 5]);
    assert_eq!(c.num, 3);
    assert_eq!(gids_of(&c), vec![2, 3]);
    assert_balanced(&c);
    let c = a.leave(&mut m, &[2, 3]);
    assert_eq!(c.num, 4);
    assert_eq!(c.shards, vec![0; 64]);
}

#[test]
fn more_groups_than_shards_leaves_some_groups_without_shards() {
    let mut m = master(10);
    let mut a = Admin::new(1);
    for gid in 1..=5 {
        a.join(&mut m, &[gid]);
    }
    let before = m.latest().clone();
    let c = a.join(&mut m, &(6..=15).collect::<Vec<_>>());
    assert_balanced(&c);
    let counts = counts(&c);
    assert_eq!(counts.values().filter(|&&n| n == 1).count(), 10);
    assert_eq!(counts.values().filter(|&&n| n == 0).count(), 5);
    assert_eq!(
        changed(&before, &c),
        owned_by(&c, &(6..=15).collect::<Vec<_>>())
    );
    // The groups that serve a shard leave: their shards go to the idle ones.
    let serving: Vec<GroupId> = counts
        .iter()
        .filter(|(_, &n)| n == 1)
        .map(|(&g, _)| g)
        .collect();
    let before = c;
    let c = a.leave(&mut m, &serving[..5]);
    assert_balanced(&c);
    assert_eq!(changed(&before, &c), owned_by(&before, &serving[..5]));
}

// ---------------------------------------------------------------------------
// Refusals, at-most-once
// ---------------------------------------------------------------------------

#[test]
fn refusals_leave_the_configuration_number_unchanged() {
    let mut m = master(64);
    let mut a = Admin::new(1);
    a.join(&mut m, &[1, 2]);
    let latest = m.latest().clone();
    let no_servers = GroupInfo::new(7, vec![]);
    let too_many = GroupInfo::new(
        8,
        (0..=SERVERS_PER_GROUP_MAX)
            .map(|i| format!("h{i}:1"))
            .collect(),
    );
    let empty_address = GroupInfo::new(9, vec![String::new()]);
    let cases: Vec<(MasterOp, &str)> = vec![
        (
            MasterOp::Join {
                groups: vec![group(1)],
            },
            "already joined",
        ),
        (
            MasterOp::Join {
                groups: vec![group(3), group(3)],
            },
            "listed twice",
        ),
        (
            MasterOp::Join {
                groups: vec![group(0)],
            },
            "gid 0",
        ),
        (
            MasterOp::Join {
                groups: vec![no_servers],
            },
            "no servers",
        ),
        (
            MasterOp::Join {
                groups: vec![too_many],
            },
            "servers (at most",
        ),
        (
            MasterOp::Join {
                groups: vec![empty_address],
            },
            "server address",
        ),
        (MasterOp::Join { groups: vec![] }, "no groups"),
        // One bad group refuses the whole request, good ones included.
        (
            MasterOp::Join {
                groups: vec![group(4), group(2)],
            },
            "already joined",
        ),
        (
            MasterOp::Leave { gids: vec![3] },
            "not in the configuration",
        ),
        (MasterOp::Leave { gids: vec![1, 1] }, "listed twice"),
        (MasterOp::Leave { gids: vec![] }, "no groups"),
        (
            MasterOp::Leave { gids: vec![1, 3] },
            "not in the configuration",
        ),
        (
            MasterOp::Move { shard: 0, gid: 3 },
            "not in the configuration",
        ),
        (
            MasterOp::Move { shard: 0, gid: 0 },
            "not in the configuration",
        ),
        (MasterOp::Move { shard: 64, gid: 1 }, "out of range"),
        (
            MasterOp::Move {
                shard: u32::MAX,
                gid: 1,
            },
            "out of range",
        ),
    ];
    for (op, why) in cases {
        let err = a
            .run(&mut m, op.clone())
            .expect_err(&format!("{op:?} must be refused"));
        assert!(err.contains(why), "{op:?}: {err:?} should mention {why:?}");
        assert_eq!(m.latest(), &latest, "{op:?} changed the configuration");
    }
    assert_eq!(m.latest().num, 1);
}

#[test]
fn join_of_more_than_groups_max_is_refused() {
    let mut m = master(64);
    let mut a = Admin::new(1);
    let gids: Vec<GroupId> = (1..=GROUPS_MAX as GroupId + 1).collect();
    let err = a
        .run(
            &mut m,
            MasterOp::Join {
                groups: gids.iter().map(|&g| group(g)).collect(),
            },
        )
        .expect_err("too many groups");
    assert!(err.contains("more than"), "{err}");
    assert_eq!(m.latest().num, 0);
    a.join(&mut m, &gids[..GROUPS_MAX]);
}

#[test]
fn retried_join_returns_the_first_answer_and_creates_nothing() {
    let mut m = master(64);
    let join5 = MasterRequest {
        client_id: 7,
        seq: 1,
        ack_seq: 0,
        op: MasterOp::Join {
            groups: vec![group(5)],
        },
    };
    let first = m.apply(&join5).expect("join");
    assert_eq!(first.num, 1);
    assert_eq!(m.apply(&join5), Ok(first.clone()), "retry");
    assert_eq!(m.latest().num, 1, "no second configuration");

    // Another client's changes: the retry still answers with the
    // configuration it created, not the latest.
    let mut other = Admin::new(8);
    other.join(&mut m, &[6]);
    assert_eq!(m.apply(&join5), Ok(first.clone()));
    assert_eq!(m.latest().num, 2);

    // A refusal is cached too: a retry of a refused Join stays refused even
    // after the group it collided with has left.
    let dup = MasterRequest {
        client_id: 9,
        seq: 1,
        ack_seq: 0,
        op: MasterOp::Join {
            groups: vec![group(6)],
        },
    };
    let refused = m.apply(&dup).expect_err("6 already joined");
    other.leave(&mut m, &[6]);
    assert_eq!(m.apply(&dup), Err(refused));
    assert_eq!(m.latest().num, 3);

    // Acknowledging frees the cached answer; the old seq is then stale.
    let next = MasterRequest {
        client_id: 7,
        seq: 2,
        ack_seq: 1,
        op: MasterOp::Query { num: None },
    };
    assert_eq!(m.apply(&next).map(|c| c.num), Ok(3));
    assert!(m.sessions[&7].replies.is_empty(), "ack freed the cache");
    assert_eq!(m.apply(&join5), Err(STALE_REASON.to_string()));
    assert_eq!(m.latest().num, 3);
}

#[test]
fn queries_are_not_cached() {
    let mut m = master(64);
    let q = MasterRequest {
        client_id: 3,
        seq: 1,
        ack_seq: 0,
        op: MasterOp::Query { num: None },
    };
    assert_eq!(m.apply(&q).map(|c| c.num), Ok(0));
    assert!(m.sessions.is_empty(), "a query creates no session");
    Admin::new(4).join(&mut m, &[1]);
    assert_eq!(
        m.apply(&q).map(|c| c.num),
        Ok(1),
        "a retried query reads afresh"
    );
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

/// A master with history, sessions with cached successes and refusals.
fn busy_master() -> Master {
    let mut m = master(64);
    let mut a = Admin::new(11);
    let mut b = Admin::new(3);
    a.join(&mut m, &[1, 2, 3]);
    b.join(&mut m, &[4]);
    let _ = b.run(&mut m, MasterOp::Leave { gids: vec![99] });
    a.mv(&mut m, 3, 4);
    a.leave(&mut m, &[2]);
    b.query(&mut m, Some(1));
    let mut c = Admin::new(u64::MAX);
    c.join(&mut m, &[7]);
    m
}

#[test]
fn snapshot_is_deterministic_and_restores_to_the_same_bytes() {
    let m = busy_master();
    let bytes = m.snapshot();
    assert_eq!(busy_master().snapshot(), bytes, "same ops, same bytes");
    let restored = Master::restore(&bytes, m.options()).expect("restore");
    assert_eq!(restored, m);
    assert_eq!(restored.snapshot(), bytes);
    // The restored master goes on exactly like the original.
    let (mut m1, mut m2) = (m, restored);
    for m in [&mut m1, &mut m2] {
        let mut a = Admin::new(11);
        a.seq = 10;
        a.join(m, &[8, 9]);
        a.leave(m, &[1]);
    }
    assert_eq!(m1.snapshot(), m2.snapshot());
    // A fresh master's snapshot restores too.
    let fresh = master(3);
    assert_eq!(
        Master::restore(&fresh.snapshot(), fresh.options()),
        Ok(fresh)
    );
}

#[test]
fn restore_refuses_mismatched_options_and_bad_formats() {
    let bytes = busy_master().snapshot();
    assert_eq!(
        Master::restore(&bytes, MasterOptions { shards: 10 }),
        Err(RestoreError::ShardCountMismatch {
            expected: 10,
            found: 64
        })
    );
    assert_eq!(
        Master::restore(&bytes, MasterOptions { shards: 0 }),
        Err(RestoreError::BadShardCount(0))
    );
    let mut kv_like = bytes.to_vec();
    kv_like[0] = 1;
    assert_eq!(
        Master::restore(&kv_like, MasterOptions::default()),
        Err(RestoreError::UnsupportedFormat(1))
    );
    let mut trailing = bytes.to_vec();
    trailing.push(0);
    assert_eq!(
        Master::restore(&trailing, MasterOptions::default()),
        Err(RestoreError::TrailingBytes(1))
    );
    assert_eq!(
        Master::restore(&bytes[..bytes.len() - 1], MasterOptions::default()),
        Err(RestoreError::Truncated)
    );
    // Configuration 1 with shard 0 on gid 0 although groups exist: readable,
    // but not a state the master can be in. Config 0 is 4 + 64 * 4 bytes
    // after the 9-byte prefix; config 1's groups (1, 2, 3) follow.
    let mut m = master(64);
    Admin::new(1).join(&mut m, &[1]);
    let mut bad = m.snapshot().to_vec();
    let config1 = 1 + 4 + 4 + (4 + 64 * 4);
    let groups1 = 4 + 4 + 4 + 2 * (4 + "g1-a:7000".len());
    bad[config1 + groups1..config1 + groups1 + 4].copy_from_slice(&0u32.to_le_bytes());
    assert!(
        matches!(
            Master::restore(&bad, MasterOptions::default()),
            Err(RestoreError::Invalid(_))
        ),
        "{:?}",
        Master::restore(&bad, MasterOptions::default())
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

    /// Arbitrary bytes, and valid snapshots with a byte changed or cut off,
    /// never panic `restore`; whatever restores re-encodes to its input.
    #[test]
    fn restore_never_panics_on_corrupt_input(
        raw in proptest::collection::vec(any::<u8>(), 0..200),
        flip in any::<(usize, u8)>(),
        cut in any::<usize>(),
        mode in 0..3u8,
    ) {
        let input: Vec<u8> = match mode {
            0 => raw,
            1 => {
                let mut v = busy_master().snapshot().to_vec();
                let i = flip.0 % v.len();
                v[i] ^= flip.1.max(1);
                v
            }
            _ => {
                let v = busy_master().snapshot().to_vec();
                v[..cut % v.len()].to_vec()
            }
        };
        for shards in [64, 3] {
            if let Ok(m) = Master::restore(&input, MasterOptions { shards }) {
                prop_assert_eq!(&m.snapshot()[..], &input[..]);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Random operation sequences
// ---------------------------------------------------------------------------

fn arb_op(shards: u32) -> BoxedStrategy<MasterOp> {
    let gid = 0..12u32;
    prop_oneof![
        3 => proptest::collection::vec(gid.clone(), 1..4).prop_map(|gids| MasterOp::Join {
            groups: gids.into_iter().map(group).collect(),
        }),
        2 => proptest::collection::vec(gid.clone(), 1..3).prop_map(|gids| MasterOp::Leave { gids }),
        1 => (0..shards + 2, gid.clone()).prop_map(|(shard, gid)| MasterOp::Move { shard, gid }),
        1 => proptest::option::of(0..30u64).prop_map(|num| MasterOp::Query { num }),
        2 => (gid.clone(), addr(), addr()).prop_map(|(gid, old, new)| MasterOp::Replace { gid, old, new }),
        1 => (gid.clone(), addr()).prop_map(|(gid, addr)| MasterOp::AddMember { gid, addr }),
        1 => (gid, addr()).prop_map(|(gid, addr)| MasterOp::RemoveMember { gid, addr }),
    ]
    .boxed()
}

/// Addresses a membership op may name: the two every test group starts
/// with (for gids 0..3) and a few fresh ones.
fn addr() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..3u32, prop_oneof![Just("a"), Just("b")]).prop_map(|(g, c)| format!("g{g}-{c}:7000")),
        (0..6u32).prop_map(|n| format!("n{n}:7000")),
    ]
}

fn arb_case() -> impl Strategy<Value = (u32, Vec<(u64, MasterOp)>)> {
    prop_oneof![Just(1u32), Just(3), Just(10), Just(64)].prop_flat_map(|shards| {
        (
            Just(shards),
            proptest::collection::vec((0..3u64, arb_op(shards)), 1..40),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_invariants((shards, ops) in arb_case()) {
        let mut m = master(shards);
        let mut admins: Vec<Admin> = (0..3).map(Admin::new).collect();
        let mut history = vec![m.latest().clone()];
        for (client, op) in ops {
            let before = m.latest().clone();
            let result = admins[client as usize].run(&mut m, op.clone());
            let after = m.latest().clone();
            match (&op, &result) {
                (MasterOp::Query { num }, Ok(c)) => {
                    prop_assert_eq!(c, m.config(*num));
                    prop_assert_eq!(&after, &before);
                }
                (_, Ok(c)) => {
                    prop_assert_eq!(c, &after);
                    prop_assert_eq!(after.num, before.num + 1, "numbers consecutive");
                    history.push(after.clone());
                }
                (_, Err(_)) => prop_assert_eq!(&after, &before, "refusal changed state"),
            }
            if result.is_ok() {
                match &op {
                    MasterOp::Join { groups } => {
                        assert_balanced(&after);
                        let new: Vec<GroupId> = groups.iter().map(|g| g.gid).collect();
                        // From a balanced start only shards handed to the
                        // new groups move (a Move may have unbalanced it).
                        if is_balanced(&before) {
                            prop_assert_eq!(changed(&before, &after), owned_by(&after, &new));
                        }
                    }
                    MasterOp::Leave { gids } => {
                        assert_balanced(&after);
                        if is_balanced(&before) {
                            prop_assert_eq!(changed(&before, &after), owned_by(&before, gids));
                        }
                    }
                    MasterOp::Move { shard, gid } => {
                        prop_assert_eq!(after.shards[*shard as usize], *gid);
                        prop_assert!(changed(&before, &after).len() <= 1);
                    }
                    MasterOp::Query { .. } | MasterOp::PbPing { .. } => {}
                    MasterOp::Replace { gid, old, new } => {
                        prop_assert_eq!(&after.shards, &before.shards);
                        let (b, a) = (group_of(&before, *gid), group_of(&after, *gid));
                        let old_id = b.servers.iter().position(|s| s == old).unwrap();
                        prop_assert_eq!(a.servers.last(), Some(new));
                        prop_assert_eq!(&a.servers[..b.servers.len()], &b.servers[..]);
                        let new_bit = 1u64 << b.servers.len();
                        prop_assert_eq!(a.members(), (b.members() & !(1 << old_id)) | new_bit);
                        prop_assert_eq!(a.founders(), b.founders());
                    }
                    MasterOp::AddMember { gid, addr } => {
                        prop_assert_eq!(&after.shards, &before.shards);
                        let (b, a) = (group_of(&before, *gid), group_of(&after, *gid));
                        prop_assert_eq!(a.servers.last(), Some(addr));
                        prop_assert_eq!(a.members(), b.members() | 1 << b.servers.len());
                    }
                    MasterOp::RemoveMember { gid, addr } => {
                        prop_assert_eq!(&after.shards, &before.shards);
                        let (b, a) = (group_of(&before, *gid), group_of(&after, *gid));
                        prop_assert_eq!(&a.servers, &b.servers);
                        let id = b.servers.iter().position(|s| s == addr).unwrap();
                        prop_assert!(b.is_member(id) && !a.is_member(id));
                        prop_assert!(a.members() != 0);
                    }
                }
            }
            // Every shard on a live group once any group exists.
            let live = gids_of(&after);
            let placed = after
                .shards
                .iter()
                .all(|g| if live.is_empty() { *g == 0 } else { live.contains(g) });
            prop_assert!(placed, "shard off a live group: {:?}", after);
        }
        for (n, c) in history.iter().enumerate() {
            prop_assert_eq!(m.config(Some(n as u64)), c);
        }
        m.assert_invariants();
        prop_assert_eq!(Master::restore(&m.snapshot(), m.options()), Ok(m));
    }
}

fn group_of(config: &Config, gid: GroupId) -> &GroupInfo {
    config
        .groups
        .iter()
        .find(|g| g.gid == gid)
        .expect("group in the configuration")
}

fn is_balanced(config: &Config) -> bool {
    let counts = counts(config);
    let min = counts.values().min().copied().unwrap_or(0);
    let max = counts.values().max().copied().unwrap_or(0);
    config.groups.is_empty() || max - min <= 1
}

// ---------------------------------------------------------------------------
// The replicated state machine
// ---------------------------------------------------------------------------

#[test]
fn master_machine_applies_log_commands() {
    let mut sm = MasterMachine::new(MasterOptions { shards: 8 });
    let join = MasterRequest {
        client_id: 5,
        seq: 1,
        ack_seq: 0,
        op: MasterOp::Join {
            groups: vec![group(1)],
        },
    };
    let cmd = encode_master_command(&join);
    let Some((5, 1, Message::Config(c))) = sm.apply(0, &cmd) else {
        panic!("join must answer with a Config");
    };
    assert_eq!((c.num, c.shards), (1, vec![1; 8]));
    // A retry of the same command (re-proposed by a new leader) is deduplicated.
    assert!(matches!(sm.apply(1, &cmd), Some((5, 1, Message::Config(c))) if c.num == 1));
    assert_eq!(sm.master().latest().num, 1);

    let bad_leave = MasterRequest {
        client_id: 5,
        seq: 2,
        ack_seq: 1,
        op: MasterOp::Leave { gids: vec![2] },
    };
    let reply = sm.apply(2, &encode_master_command(&bad_leave));
    assert!(
        matches!(&reply, Some((5, 2, Message::Reply(ClientReply::Error { reason }))) if reason.contains("not in the configuration")),
        "{reply:?}"
    );

    // Garbage and KV commands are skipped (and counted), identically on
    // every replica.
    assert_eq!(sm.apply(3, &Bytes::from_static(&[0x30, 1, 2])), None);
    let kv = encode_command(&ClientRequest {
        client_id: 1,
        seq: 1,
        ack_seq: 0,
        op: Op::Get {
            key: Bytes::from_static(b"k"),
        },
    });
    assert_eq!(sm.apply(4, &kv), None);
    assert_eq!(sm.undecodable, 2);

    let snap = sm.snapshot();
    let mut other = MasterMachine::new(MasterOptions { shards: 8 });
    other.restore(&snap).expect("restore");
    assert_eq!(other.master(), sm.master());
    assert!(other.restore(b"junk").is_err());
    assert_eq!(MasterMachine::request_id(&join), (5, 1));
}

/// The master runs under the same [`Replica`](crate::replica::Replica) as the
/// KV groups: a one-member master group elects itself, takes a Join through
/// its log and answers the waiting client with the new configuration.
#[test]
fn replica_drives_the_master_end_to_end() {
    use crate::paxos::{Durable, Synced};
    use crate::replica::{Replica, ReplicaConfig};

    let mut rng = Rng::new(1);
    let sm = MasterMachine::new(MasterOptions { shards: 4 });
    let mut r = Replica::new(ReplicaConfig::new(0, 1), Durable::default(), sm, &mut rng);
    let drive = |r: &mut Replica<MasterMachine>| {
        let mut replies = Vec::new();
        loop {
            let ready = r.ready();
            if ready.is_empty() {
                return replies;
            }
            replies.extend(r.advance(ready, Synced::after_sync()).replies);
        }
    };
    for _ in 0..1000 {
        if r.is_leader() {
            break;
        }
        r.tick(&mut rng);
        drive(&mut r);
    }
    assert!(r.is_leader(), "a one-member group elects itself");
    let join = MasterRequest {
        client_id: 9,
        seq: 1,
        ack_seq: 0,
        op: MasterOp::Join {
            groups: vec![group(1)],
        },
    };
    r.on_request(77, &join);
    r.flush();
    let replies = drive(&mut r);
    assert_eq!(replies.len(), 1, "{replies:?}");
    let (to, Message::Config(c)) = &replies[0] else {
        panic!("expected a Config reply: {replies:?}");
    };
    assert_eq!((*to, c.num, c.shards.clone()), (77, 1, vec![1; 4]));
    assert_eq!(r.state().master().latest().num, 1);
}

/// Issue 8, finding 10: one Join listing 1,024 groups of 15 addresses of
/// 260 bytes (4 MB, within every older per-item cap) is refused as a whole,
/// changes nothing, and a Join within the byte cap is still accepted.
#[test]
fn a_join_over_the_configuration_address_budget_is_refused() {
    let mut m = master(16);
    let mut admin = Admin::new(1);
    let long = "a".repeat(ADDRESS_BYTES_MAX);
    let huge: Vec<GroupInfo> = (1..=GROUPS_MAX as GroupId)
        .map(|gid| GroupInfo::new(gid, vec![long.clone(); SERVERS_PER_GROUP_MAX]))
        .collect();
    let err = admin
        .run(&mut m, MasterOp::Join { groups: huge })
        .expect_err("a 4 MB join");
    assert!(err.contains("bytes of server addresses"), "{err}");
    assert_eq!(m.latest().num, 0, "a refusal changes nothing");
    // Groups up to the budget are fine; one address byte more is not.
    let per_group = SERVERS_PER_GROUP_MAX * ADDRESS_BYTES_MAX;
    let fit = CONFIG_ADDRESS_BYTES_MAX / per_group;
    let groups = |from: GroupId, n: usize| -> Vec<GroupInfo> {
        (from..from + n as GroupId)
            .map(|gid| GroupInfo::new(gid, vec![long.clone(); SERVERS_PER_GROUP_MAX]))
            .collect()
    };
    admin
        .run(
            &mut m,
            MasterOp::Join {
                groups: groups(1, fit),
            },
        )
        .expect("joins within the budget");
    let err = admin
        .run(
            &mut m,
            MasterOp::Join {
                groups: groups(5000, 1),
            },
        )
        .expect_err("one group over the budget");
    assert!(err.contains("at most"), "{err}");
}

// ---------------------------------------------------------------------------
// Membership changes (Replace, AddMember, RemoveMember)
// ---------------------------------------------------------------------------

fn three(gid: GroupId) -> GroupInfo {
    GroupInfo::new(
        gid,
        vec![
            "10.0.0.1:1".into(),
            "10.0.0.2:1".into(),
            "10.0.0.3:1".into(),
        ],
    )
}

fn replace(gid: GroupId, old: &str, new: &str) -> MasterOp {
    MasterOp::Replace {
        gid,
        old: old.into(),
        new: new.into(),
    }
}

#[test]
fn replace_keeps_ids_stable_and_appends_the_new_server() {
    let mut m = master(8);
    let mut a = Admin::new(1);
    a.run(
        &mut m,
        MasterOp::Join {
            groups: vec![three(1)],
        },
    )
    .unwrap();
    let before = m.latest().clone();
    let c = a
        .run(&mut m, replace(1, "10.0.0.2:1", "10.0.0.9:1"))
        .unwrap();
    assert_eq!(c.num, before.num + 1);
    assert_eq!(c.shards, before.shards, "no shard moves");
    let g = &c.groups[0];
    assert_eq!(
        g.servers,
        ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.9:1"]
    );
    assert_eq!(g.members(), 0b1101, "id 1 removed, id 3 added");
    assert_eq!(g.founders(), 0b0111, "the log started with ids 0-2");
    assert_eq!(g.added, 0b1000);
    assert_eq!(g.removed, 0b0010);
    // A second replace chains: ids are never reused.
    let c = a
        .run(&mut m, replace(1, "10.0.0.1:1", "10.0.0.8:1"))
        .unwrap();
    let g = &c.groups[0];
    assert_eq!(g.servers.len(), 5);
    assert_eq!(g.members(), 0b11100);
    assert_eq!(g.founders(), 0b00111);
}

#[test]
fn add_and_remove_member_grow_a_group_from_three_to_five_and_back() {
    let mut m = master(8);
    let mut a = Admin::new(1);
    a.run(
        &mut m,
        MasterOp::Join {
            groups: vec![three(1)],
        },
    )
    .unwrap();
    for addr in ["10.0.0.4:1", "10.0.0.5:1"] {
        let add = MasterOp::AddMember {
            gid: 1,
            addr: addr.into(),
        };
        a.run(&mut m, add).unwrap();
    }
    assert_eq!(m.latest().groups[0].members(), 0b11111);
    for addr in ["10.0.0.4:1", "10.0.0.1:1"] {
        let rm = MasterOp::RemoveMember {
            gid: 1,
            addr: addr.into(),
        };
        a.run(&mut m, rm).unwrap();
    }
    let g = &m.latest().groups[0];
    assert_eq!(g.members(), 0b10110);
    let members: Vec<_> = g.member_servers().collect();
    assert_eq!(
        members,
        [(1, "10.0.0.2:1"), (2, "10.0.0.3:1"), (4, "10.0.0.5:1")]
    );
}

#[test]
fn membership_changes_are_refused_with_reasons_and_change_nothing() {
    let mut m = master(8);
    let mut a = Admin::new(1);
    a.run(
        &mut m,
        MasterOp::Join {
            groups: vec![three(1)],
        },
    )
    .unwrap();
    a.run(&mut m, replace(1, "10.0.0.3:1", "10.0.0.4:1"))
        .unwrap();
    let before = m.latest().clone();
    let refused = |m: &mut Master, a: &mut Admin, op: MasterOp, want: &str| {
        let err = a.run(m, op).expect_err("refused");
        assert!(err.contains(want), "{err:?} lacks {want:?}");
    };
    refused(
        &mut m,
        &mut a,
        replace(7, "10.0.0.1:1", "10.0.0.9:1"),
        "group 7 is not in the configuration",
    );
    refused(
        &mut m,
        &mut a,
        replace(1, "10.0.0.8:1", "10.0.0.9:1"),
        "is not a member of group 1",
    );
    refused(
        &mut m,
        &mut a,
        replace(1, "10.0.0.3:1", "10.0.0.9:1"),
        "already removed",
    );
    refused(
        &mut m,
        &mut a,
        replace(1, "10.0.0.1:1", "10.0.0.2:1"),
        "is already replica 1",
    );
    refused(
        &mut m,
        &mut a,
        replace(1, "10.0.0.1:1", "10.0.0.3:1"),
        "was already replica 2",
    );
    refused(&mut m, &mut a, replace(1, "10.0.0.1:1", ""), "empty");
    let add = |addr: &str| MasterOp::AddMember {
        gid: 1,
        addr: addr.into(),
    };
    let rm = |addr: &str| MasterOp::RemoveMember {
        gid: 1,
        addr: addr.into(),
    };
    refused(&mut m, &mut a, add("10.0.0.4:1"), "is already replica 3");
    refused(&mut m, &mut a, rm("10.0.0.3:1"), "already removed");
    assert_eq!(m.latest(), &before, "refusals create no configuration");
    a.run(&mut m, rm("10.0.0.1:1")).unwrap();
    a.run(&mut m, rm("10.0.0.2:1")).unwrap();
    refused(&mut m, &mut a, rm("10.0.0.4:1"), "last member");
    // A Join may not arrive with masks set.
    let mut g = three(2);
    g.removed = 1;
    refused(
        &mut m,
        &mut a,
        MasterOp::Join { groups: vec![g] },
        "added or removed",
    );
    // A group lists at most SERVERS_PER_GROUP_MAX servers over its life.
    for i in 0..(SERVERS_PER_GROUP_MAX - 4) {
        a.run(&mut m, add(&format!("10.0.1.{i}:1"))).unwrap();
    }
    refused(&mut m, &mut a, add("10.0.2.1:1"), "listed 15 servers");
}

#[test]
fn snapshot_carries_membership_and_old_format_snapshots_still_load() {
    // A master that never changed a membership writes format 0x4D, as before.
    let old = busy_master();
    let old_bytes = old.snapshot();
    assert_eq!(old_bytes[0], 0x4D);
    assert_eq!(Master::restore(&old_bytes, old.options()), Ok(old.clone()));
    // After a replace, format 0x4E with the masks, restored exactly.
    let mut m = old;
    let mut a = Admin::new(50);
    let servers = m.latest().groups[0].servers.clone();
    let gid = m.latest().groups[0].gid;
    a.run(&mut m, replace(gid, &servers[0], "fresh:1")).unwrap();
    let bytes = m.snapshot();
    assert_eq!(bytes[0], 0x4E);
    let restored = Master::restore(&bytes, m.options()).expect("restore");
    assert_eq!(restored, m);
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.latest().groups[0].removed, 1);
    // Format byte and contents must agree (canonical form).
    let mut relabelled = old_bytes.to_vec();
    relabelled[0] = 0x4E;
    assert!(Master::restore(&relabelled, m.options()).is_err());
}
