//! Membership change (`members.rs`), rule by rule, on the loss-free test
//! network of `tests.rs` with replicas cut off by hand. The simulator's
//! membership world (`synod-sim --membership`) covers faults.

use super::tests::{cmd, Net};
use super::*;

/// Tick the leader past the retransmit interval, then deliver everything.
fn retransmit(net: &mut Net, leader: usize) {
    for _ in 0..4 {
        net.nodes[leader].tick(&mut net.rng);
    }
    net.deliver_all();
}

#[test]
fn a_replace_adds_one_replica_then_removes_one_and_the_new_member_counts() {
    let mut net = Net::with_members(4, 0b0111);
    net.elect(0);
    net.nodes[0].propose(cmd("a")).unwrap();
    net.deliver_all();
    // One replica at a time, through the leader, one change in flight.
    assert_eq!(
        net.nodes[0].propose_members(0b1110),
        Err(MembersError::NotOneStep)
    );
    assert_eq!(
        net.nodes[1].propose_members(0b1111),
        Err(MembersError::NotLeader(Some(0)))
    );
    net.nodes[0].propose_members(0b1111).unwrap();
    assert_eq!(
        net.nodes[0].propose_members(0b1011),
        Err(MembersError::Pending)
    );
    net.deliver_all();
    for (i, n) in net.nodes.iter().enumerate() {
        assert_eq!(n.members(), 0b1111, "replica {i}");
    }
    // 3 counts now: {0, 3} is no majority of four, {0, 1, 3} is.
    net.down = 0b0110;
    net.nodes[0].propose(cmd("b")).unwrap();
    net.deliver_all();
    assert_eq!(net.nodes[0].chosen_upto(), 2, "two of four chose nothing");
    net.down = 0b0100;
    retransmit(&mut net, 0);
    assert_eq!(net.nodes[0].chosen_upto(), 3);
    net.down = 0;
    // Remove the leader itself: it finishes, tells the new majority the
    // change is chosen, and steps down; it never campaigns again.
    net.nodes[0].propose_members(0b1110).unwrap();
    net.deliver_all();
    assert_eq!(net.nodes[0].members(), 0b1110);
    for _ in 0..6 {
        retransmit(&mut net, 0);
    }
    assert!(!net.nodes[0].is_leader(), "a removed leader hands over");
    assert!(net.nodes[0].propose(cmd("c")).is_err());
    for _ in 0..100 {
        net.nodes[0].tick(&mut net.rng);
    }
    assert_eq!(net.nodes[0].stats().elections_started, 1, "only its first");
    // {1, 2, 3} carries on without 0.
    net.down = 0b0001;
    net.leader_lease_lapses();
    net.elect(3);
    net.nodes[3].propose(cmd("d")).unwrap();
    net.deliver_all();
    let last = net.applied[3].last().unwrap();
    assert_eq!(last.1.commands, vec![cmd("d")]);
    assert_eq!(net.applied[1].last(), Some(last));
}

#[test]
fn a_change_waits_for_an_entry_of_the_leaders_own_ballot_and_nothing_passes_it() {
    let mut net = Net::with_members(4, 0b0111);
    net.elect(0);
    // Nothing of this ballot is chosen yet: a no-op goes first.
    net.nodes[0].propose_members(0b1111).unwrap();
    net.nodes[0].flush();
    let first = net.nodes[0].log().get(0).unwrap();
    assert!(first.batch.commands.is_empty(), "a no-op, not the change");
    net.deliver_all();
    assert_eq!(
        batch_members(&net.nodes[0].log().get(1).unwrap().batch),
        Some(0b1111)
    );
    assert_eq!(net.nodes[0].members(), 0b1111);
    // alpha = 1: while a change is unchosen no slot is proposed after it.
    net.down = 0b1110;
    net.nodes[0].propose_members(0b1101).unwrap();
    net.nodes[0].propose(cmd("x")).unwrap();
    net.nodes[0].flush();
    assert_eq!(
        batch_members(&net.nodes[0].log().get(2).unwrap().batch),
        Some(0b1101)
    );
    assert!(
        net.nodes[0].log().get(3).is_none(),
        "x waits behind the change"
    );
    net.down = 0;
    retransmit(&mut net, 0);
    assert_eq!(net.nodes[0].members(), 0b1101);
    assert_eq!(
        net.nodes[0].log().get(3).unwrap().batch.commands,
        vec![cmd("x")]
    );
}

/// A change accepted by 0 and 1 only, then 0 fails: candidate 1's own log
/// reports the change, so it needs a majority of {0,1,2,3} as well as of
/// {0,1,2}. With the planted bug it leads on {1, 2} alone.
fn candidate_after_a_half_accepted_change(bug: bool) -> Net {
    let mut net = Net::with_members(4, 0b0111);
    for n in &mut net.nodes {
        n.cfg.bugs.membership_switches_at_once = bug;
    }
    net.elect(0);
    net.nodes[0].propose(cmd("a")).unwrap();
    net.deliver_all();
    net.down = 0b1100;
    net.nodes[0].propose_members(0b1111).unwrap();
    net.deliver_all();
    assert_eq!(net.nodes[0].chosen_upto(), 1, "the change is not chosen");
    assert_eq!(
        batch_members(&net.nodes[1].log().get(1).unwrap().batch),
        Some(0b1111)
    );
    net.down = 0b1001;
    net.leader_lease_lapses();
    net.nodes[1].start_election(&mut net.rng);
    net.deliver_all();
    net
}

#[test]
fn a_candidate_needs_a_majority_of_every_membership_reported_to_it() {
    let mut net = candidate_after_a_half_accepted_change(false);
    assert!(!net.nodes[1].is_leader(), "{{1, 2}} is no majority of four");
    // With 3 answering too it leads and finishes the change.
    net.down = 0b0001;
    net.nodes[1].start_election(&mut net.rng);
    net.deliver_all();
    assert!(net.nodes[1].is_leader());
    assert_eq!(net.nodes[1].members(), 0b1111);
    assert_eq!(net.nodes[3].members(), 0b1111);
}

#[test]
fn planted_switch_at_once_lets_a_candidate_skip_the_reported_membership() {
    let net = candidate_after_a_half_accepted_change(true);
    assert!(net.nodes[1].is_leader());
}

#[test]
fn a_snapshot_carries_the_membership_at_its_index() {
    let sm = Bytes::from_static(b"state");
    assert_eq!(wrap_snapshot(0b0111, 0b0111, sm.clone()), sm, "unchanged");
    let data = wrap_snapshot(0b1110, 0b0111, sm.clone());
    assert_eq!(split_snapshot(&data), (Some(0b1110), &b"state"[..]));
    assert_eq!(split_snapshot(b"state"), (None, &b"state"[..]));
    let mut cfg = Config::new(1, 4);
    cfg.members = 0b0111;
    let durable = Durable {
        snapshot: Some((5, data)),
        ..Durable::default()
    };
    let p = Paxos::new(cfg, durable, &mut Rng::new(1));
    assert_eq!(p.members(), 0b1110);
    assert_eq!(p.members_applied(), 0b1110);
}

#[test]
fn membership_commands_are_recognised_only_whole() {
    let c = members_command(0b1011);
    assert_eq!(command_members(&c), Some(0b1011));
    assert_eq!(command_members(&c[..15]), None);
    let two = Batch {
        commands: vec![c.clone(), c.clone()],
    };
    assert_eq!(batch_members(&two), None, "a change is a slot of its own");
    assert!(majority(0b0011, 0b0111));
    assert!(!majority(0b0011, 0b1111));
    assert!(!majority(0b1111, 0));
}
