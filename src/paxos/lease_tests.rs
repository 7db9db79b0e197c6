//! Read leases (`Config::lease_us`): a leader answers reads without a
//! round while a quorum acknowledged a recent heartbeat, and no rival is
//! elected before that lease has lapsed by the leader's own clock. The
//! simulator runs them under every fault with drifting clocks
//! (`synod-sim --lease`); these pin the rules.

use super::tests::Net;
use super::*;

/// A tick of the tests' clock, as the runtime's default (µs).
const TICK: u64 = 10_000;

/// `n` replicas with leases on, node 0 elected, every clock at `TICK`.
fn leased(n: u32) -> Net {
    let mut net = Net::new(n);
    for p in &mut net.nodes {
        p.cfg.lease_us = lease_for(TICK, p.cfg.election_ticks_min);
        // Started long ago: the boot rule has its own test.
        p.boot_ticks = u32::MAX;
        p.set_clock(TICK);
    }
    net.elect(0);
    net
}

/// Every node in `live` at clock `now`, ticked once, then the network
/// settles (nodes not in `live` neither tick nor hear anything).
fn tick_at(net: &mut Net, live: u64, now: u64) {
    for (i, p) in net.nodes.iter_mut().enumerate() {
        p.set_clock(now);
        if live & (1 << i) != 0 {
            p.tick(&mut net.rng);
        }
    }
    net.down = !live;
    net.deliver_all();
}

/// Heartbeats sent at `now` and acknowledged: the leader's lease runs
/// from `now`.
fn renew(net: &mut Net, now: u64) {
    let every = u64::MAX >> 1;
    for _ in 0..net.nodes[0].cfg.heartbeat_ticks {
        tick_at(net, every, now);
    }
}

#[test]
fn a_leased_leader_answers_a_read_at_once_and_asks_no_round() {
    let mut net = leased(3);
    assert!(!net.nodes[0].lease_valid(), "no heartbeat acknowledged yet");
    renew(&mut net, 2 * TICK);
    assert!(net.nodes[0].lease_valid());
    let t = net.nodes[0].read_index().unwrap();
    assert_eq!(net.nodes[0].read_status(&t), ReadStatus::Ready);
    // Nothing goes out for it.
    net.nodes[0].flush();
    let ready = net.nodes[0].ready();
    assert!(ready.gated.messages.is_empty() && ready.before_sync.is_empty());
}

#[test]
fn the_lease_runs_out_by_the_leaders_clock_and_reads_fall_back_to_a_round() {
    let mut net = leased(3);
    renew(&mut net, 2 * TICK);
    let lease = net.nodes[0].cfg.lease_us;
    net.nodes[0].set_clock(2 * TICK + lease - 1);
    assert!(net.nodes[0].lease_valid());
    let early = net.nodes[0].read_index().unwrap();
    net.nodes[0].set_clock(2 * TICK + lease);
    assert!(!net.nodes[0].lease_valid());
    // A read registered under the lease and served after it lapsed waits
    // for a round like any other.
    assert_eq!(net.nodes[0].read_status(&early), ReadStatus::Wait);
    let late = net.nodes[0].read_index().unwrap();
    assert_eq!(net.nodes[0].read_status(&late), ReadStatus::Wait);
    // This one asks for the round, which confirms both.
    net.deliver_all();
    assert_eq!(net.nodes[0].read_status(&early), ReadStatus::Ready);
    assert_eq!(net.nodes[0].read_status(&late), ReadStatus::Ready);
    // And renews the lease from when it was announced.
    assert!(net.nodes[0].lease_valid());
}

/// Node 0 leads with a lease renewed at `start`, then is cut off and
/// stops ticking (a paused process) while its clock runs on; the others
/// tick and elect a new leader. Returns the first clock at which a rival
/// led, with whether node 0 still believed its lease then.
fn rival_elected(bugs: PlantedBugs) -> (u64, bool) {
    let mut net = leased(3);
    for p in &mut net.nodes {
        p.cfg.bugs = bugs;
    }
    let start = 2 * TICK;
    renew(&mut net, start);
    assert!(net.nodes[0].lease_valid());
    for k in 1..200 {
        let now = start + k * TICK;
        tick_at(&mut net, 0b110, now);
        if net.nodes[1].is_leader() || net.nodes[2].is_leader() {
            return (now, net.nodes[0].lease_valid());
        }
    }
    panic!("no rival was elected");
}

#[test]
fn no_rival_is_elected_while_a_cut_off_leaders_lease_runs() {
    let (at, leased) = rival_elected(PlantedBugs::default());
    assert!(!leased, "a rival led at clock {at} under node 0's lease");
}

#[test]
fn a_lease_longer_than_the_followers_keep_is_caught() {
    let (at, leased) = rival_elected(PlantedBugs {
        lease_outlives_guard: true,
        ..PlantedBugs::default()
    });
    assert!(
        leased,
        "the planted lease had lapsed when a rival led at {at}"
    );
}

#[test]
fn a_restarted_replica_refuses_candidates_while_a_lease_may_count_on_it() {
    let mut net = leased(3);
    renew(&mut net, 2 * TICK);
    // Node 2 restarts from what it had made durable (nothing here: the
    // guard does not depend on it) and node 1 asks it for a promise.
    let mut cfg = net.nodes[2].cfg.clone();
    cfg.bugs = PlantedBugs::default();
    net.nodes[2] = Paxos::new(cfg, Durable::default(), &mut net.rng);
    let ballot = Ballot::new(net.nodes[0].promised().round + 1, 1);
    let prepare = PaxosMsg::Prepare(Prepare {
        from: 1,
        ballot,
        from_slot: 0,
    });
    for k in 0..net.nodes[2].cfg.election_ticks_min {
        net.nodes[2].step(prepare.clone(), &mut net.rng);
        assert!(
            net.nodes[2].promised() < ballot,
            "promised {k} ticks after a restart"
        );
        net.nodes[2].tick(&mut net.rng);
    }
    net.nodes[2].step(prepare, &mut net.rng);
    assert_eq!(net.nodes[2].promised(), ballot);
}

#[test]
fn a_membership_change_takes_a_new_lease() {
    let mut net = leased(3);
    // An entry of this ballot chosen: a change may go in the next slot.
    net.nodes[0].propose(super::tests::cmd("w")).unwrap();
    net.deliver_all();
    renew(&mut net, 2 * TICK);
    assert!(net.nodes[0].lease_valid());
    net.nodes[0].propose_members(0b011).unwrap();
    net.down = 0b110;
    net.deliver_all();
    assert!(!net.nodes[0].lease_valid(), "a change is in flight");
    net.down = 0;
    // Resent without a tick (a tick's heartbeat would renew the lease).
    for _ in 0..net.nodes[0].cfg.retransmit_ticks {
        net.nodes[0].retransmit_accepts();
    }
    net.deliver_all();
    assert_eq!(net.nodes[0].members(), 0b011, "the change is chosen");
    // Chosen: the old membership's acknowledgements no longer count.
    assert!(!net.nodes[0].lease_valid());
    renew(&mut net, 3 * TICK);
    assert!(net.nodes[0].lease_valid());
}

#[test]
fn the_lease_is_the_followers_guard_shrunk_by_the_drift_bound() {
    // 10 ticks of 10 ms: at least 9 ticks (90 ms) of a follower's clock,
    // which may run 5% faster than the leader's.
    assert_eq!(lease_for(10_000, 10), 90_000 * 95 / 105);
    assert_eq!(lease_for(10_000, 1), 0);
}

/// `read_ready_now`, what a driver asks while its replica waits for a
/// sync: only a leader under a valid lease that has handed out every slot
/// chosen, never a follower.
#[test]
fn a_read_is_ready_now_only_under_a_lease_with_every_chosen_slot_handed_out() {
    let mut net = leased(3);
    assert!(
        !net.nodes[0].read_ready_now(),
        "no heartbeat acknowledged yet"
    );
    renew(&mut net, 2 * TICK);
    assert!(net.nodes[0].read_ready_now());
    assert!(!net.nodes[1].read_ready_now(), "a follower");
    // A batch chosen by the followers' answers, not yet handed out.
    net.nodes[0].propose(super::tests::cmd("x")).unwrap();
    net.nodes[0].flush();
    net.drain(0);
    for (_, to, m) in std::mem::take(&mut net.wire) {
        net.nodes[to as usize].step(m, &mut net.rng);
    }
    net.drain(1);
    net.drain(2);
    for (_, to, m) in std::mem::take(&mut net.wire) {
        if to == 0 {
            net.nodes[0].step(m, &mut net.rng);
        }
    }
    assert!(net.nodes[0].lease_valid());
    assert!(
        !net.nodes[0].read_ready_now(),
        "chosen, not handed out to the state machine"
    );
    net.drain(0);
    assert!(net.nodes[0].read_ready_now());
    // The lease lapses by the leader's clock.
    net.nodes[0].set_clock(1_000 * TICK);
    assert!(!net.nodes[0].read_ready_now());
}
