//! A scripted fault (issue 14): one replica of a healthy group is cut off
//! for several election timeouts while the others keep (or elect) a leader,
//! then rejoins. Counts how often the majority's leader changes after the
//! heal: with pre-vote and leader stickiness it must be zero; with
//! [`PlantedBugs::disruptive_rejoin`] the rejoining replica's inflated
//! ballot deposes it. The world is the ordinary one (clients, checkers)
//! with random faults off, so the run is also checked for safety,
//! linearizability, liveness and exactly-once appends.

use super::*;

/// Which replica the script cuts off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolate {
    /// A follower of the leader.
    Follower,
    /// The leader itself (the majority elects another).
    Leader,
}

/// What a scripted rejoin run saw.
#[derive(Clone, Debug)]
pub struct RejoinReport {
    pub report: SimReport,
    /// The replica cut off.
    pub isolated: ReplicaId,
    /// Leaderships (distinct leading ballots) that began while it was cut off.
    pub changes_while_isolated: u32,
    /// Leaderships that began after the heal, until the end of the watch.
    pub changes_after_heal: u32,
    /// The leader the majority followed at the heal, and at the end.
    pub leader_at_heal: Option<ReplicaId>,
    pub leader_at_end: Option<ReplicaId>,
    /// Elections (phase 1 runs) the cut-off replica started.
    pub elections_by_isolated: u64,
}

/// The leading replica with the highest ballot, if any.
fn top_leader(w: &World) -> Option<(synod_wire::Ballot, ReplicaId)> {
    w.nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let r = n.replica.as_ref()?;
            r.is_leader()
                .then(|| (r.paxos().promised(), i as ReplicaId))
        })
        .max()
}

/// Run events up to `until`, counting new leaderships in `changes`.
fn run_until(
    w: &mut World,
    until: Micros,
    last: &mut Option<synod_wire::Ballot>,
    changes: &mut u32,
) {
    while let Some(ev) = w.time.next(until) {
        w.handle(ev);
        if let Some((b, _)) = top_leader(w) {
            if *last != Some(b) {
                if last.is_some() {
                    *changes += 1;
                }
                *last = Some(b);
            }
        }
    }
    w.time.now = w.time.now.max(until);
}

/// Settle for one second, cut `who` off from every other replica for
/// `isolated_for`, heal, watch for two seconds, then let the clients
/// finish and run every checker.
pub fn rejoin(
    seed: u64,
    replicas: u32,
    who: Isolate,
    bugs: PlantedBugs,
    isolated_for: Micros,
) -> RejoinReport {
    let settle = 1_000 * MS;
    let heal_at = settle + isolated_for;
    let watch_end = heal_at + 2_000 * MS;
    let mut cfg = SimConfig::new(seed, replicas);
    cfg.faults = false;
    // Without faults the clients run flat out for the whole script; with
    // the usual six clients on five keys the appended values grow long and
    // the linearizability check of the history dominated the test's time
    // (memcmp in check_kv). Two clients keep every checker meaningful.
    cfg.clients = 2;
    cfg.fault_phase = watch_end;
    cfg.bugs.paxos = bugs;
    let mut w = World::new(cfg);
    let mut last = None;
    let mut ignored = 0;
    run_until(&mut w, settle, &mut last, &mut ignored);
    let Some((_, leader)) = top_leader(&w) else {
        let mut report = w.finish().0;
        report
            .failures
            .push("rejoin: no leader after settling".into());
        return RejoinReport {
            report,
            isolated: 0,
            changes_while_isolated: 0,
            changes_after_heal: 0,
            leader_at_heal: None,
            leader_at_end: None,
            elections_by_isolated: 0,
        };
    };
    let isolated = match who {
        Isolate::Leader => leader,
        Isolate::Follower => (leader + 1) % replicas,
    };
    let elections_before = w.nodes[isolated as usize]
        .replica
        .as_ref()
        .map_or(0, |r| r.paxos().stats().elections_started);
    for other in 0..replicas as usize {
        w.net.cut[isolated as usize][other] = other != isolated as usize;
        w.net.cut[other][isolated as usize] = other != isolated as usize;
    }
    let mut while_isolated = 0;
    run_until(&mut w, heal_at, &mut last, &mut while_isolated);
    let leader_at_heal = top_leader(&w).map(|(_, r)| r);
    for other in 0..replicas as usize {
        w.net.cut[isolated as usize][other] = false;
        w.net.cut[other][isolated as usize] = false;
    }
    let mut after_heal = 0;
    run_until(&mut w, watch_end, &mut last, &mut after_heal);
    let leader_at_end = top_leader(&w).map(|(_, r)| r);
    let elections_by_isolated = w.nodes[isolated as usize]
        .replica
        .as_ref()
        .map_or(0, |r| r.paxos().stats().elections_started)
        - elections_before;
    // The script did the faults: heal the world as the random schedule
    // would at the end of its fault phase, so the clients stop and the run
    // ends once they are idle rather than at the liveness deadline.
    w.heal();
    let end = w.run_end();
    timeline::run(&mut w, end);
    let report = w.finish().0;
    RejoinReport {
        report,
        isolated,
        changes_while_isolated: while_isolated,
        changes_after_heal: after_heal,
        leader_at_heal,
        leader_at_end,
        elections_by_isolated,
    }
}
