//! The view service for primary/backup groups (issue 12), as part of the
//! master's replicated state.
//!
//! For every primary/backup group of the latest configuration the master
//! holds the current [`View`] (number, primary, backups), whether its
//! primary has acknowledged it, the replicas known to hold every
//! acknowledged write (`safe`), and liveness counters fed by the replicas'
//! [`MasterOp::PbPing`](synod_wire::MasterOp::PbPing)s. Everything here is
//! applied in the master's log order, so every master replica computes the
//! same views. No clock: a replica is dead once some other replica of its
//! group has pinged [`DEAD_PINGS`] times since it last did (the lab's
//! "DeadPings" intervals, counted in the group's own pings instead of the
//! master's time, which a replicated state machine does not have).
//!
//! The rules, and why they keep every acknowledged write (ARCHITECTURE.md,
//! "Primary/backup groups"):
//! - A primary acknowledges view `v` (pings with `view = v`) only once every
//!   backup of `v` holds the primary's whole log as of adopting `v`, and
//!   serves in `v` only once a ping's answer says `v` is acknowledged. So
//!   no write is acknowledged to a client in a view the master has not
//!   recorded as acknowledged, and at the acknowledgement every member of
//!   `v` holds every write acknowledged so far: they become `safe`.
//! - From an acknowledged view: a dead primary is replaced by a live
//!   backup (all of them are safe); dead backups are dropped; live servers
//!   of the group outside the view are added as backups (the primary
//!   transfers state to them before it acknowledges the new view).
//! - From a view not acknowledged yet: only a dead primary (replaced by a
//!   live `safe` replica) or dead backups (dropped) move it on; nothing was
//!   acknowledged in it, so `safe` still names every holder of every
//!   acknowledged write.
//! - Membership changes (Replace, AddMember, RemoveMember): a removed
//!   replica counts as dead whether it pings or not, so it leaves the next
//!   view as a dead one would; an added one starts empty and outside
//!   `safe`, and joins a view as a backup once it pings, like a restarted
//!   server (the primary brings it up by state transfer before it
//!   acknowledges that view), and a removed replica's ping acknowledges
//!   (or refuses) nothing. The master refuses a removal that would leave
//!   no member in `safe`.

use synod_wire::{GroupInfo, PbViewReply, ReplicaId, View, PB_PING_REFUSED};

/// A replica is dead once another replica of its group has pinged this
/// many times since it last pinged. With the nodes' ping interval (the
/// simulator's: 50 ms), about a quarter second of silence.
pub const DEAD_PINGS: u64 = 5;

/// One primary/backup group's view-service state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbGroup {
    pub view: View,
    /// The primary of `view` acknowledged it.
    pub acked: bool,
    /// Replicas holding every acknowledged write: the members of the last
    /// acknowledged view (of the first view before any: all of it empty).
    pub safe: u64,
    /// Pings received from each replica id since the group joined.
    pub(super) pings: Vec<u64>,
    /// `marks[q][r]`: `pings[r]` when `q` last pinged.
    pub(super) marks: Vec<Vec<u64>>,
}

fn bit(id: ReplicaId) -> u64 {
    1u64 << id
}

fn lowest(mask: u64) -> Option<ReplicaId> {
    (mask != 0).then(|| mask.trailing_zeros())
}

impl PbGroup {
    /// A group as it joins: view 1 with replica 0 as primary and every
    /// other server a backup, not acknowledged; every replica is empty, so
    /// all are safe.
    pub fn joined(g: &GroupInfo) -> PbGroup {
        let n = g.servers.len();
        let all = g.all_ids();
        PbGroup {
            view: View {
                num: 1,
                primary: 0,
                backups: all & !1,
            },
            acked: false,
            safe: all,
            pings: vec![0; n],
            marks: vec![vec![0; n]; n],
        }
    }

    pub fn servers(&self) -> usize {
        self.pings.len()
    }

    /// Has `q` pinged recently, as judged by every other replica's pings?
    pub fn alive(&self, q: ReplicaId) -> bool {
        let q = q as usize;
        q < self.servers()
            && self
                .pings
                .iter()
                .zip(&self.marks[q])
                .all(|(now, then)| now - then < DEAD_PINGS)
    }

    /// The live replicas among `members` (the group's members now: a
    /// removed replica is never live).
    fn live(&self, members: u64) -> u64 {
        (0..self.servers() as ReplicaId)
            .filter(|&q| members & bit(q) != 0 && self.alive(q))
            .fold(0, |m, q| m | bit(q))
    }

    /// The group's server list grew to `n` (a Replace or AddMember): the
    /// new replicas have never pinged, hold nothing and are not `safe`.
    pub fn grow(&mut self, n: usize) {
        let old = self.servers();
        if n <= old {
            return;
        }
        self.pings.resize(n, 0);
        for m in &mut self.marks {
            m.resize(n, 0);
        }
        self.marks.resize(n, vec![0; n]);
    }

    /// May replica `id` leave the group? Not if no other member would be
    /// known to hold every acknowledged write.
    pub fn may_remove(&self, id: usize, members: u64) -> bool {
        self.safe & members & !(1u64 << id) != 0
    }

    /// Replica `replica` reports it is alive and ready in view `ready`;
    /// returns the answer. The caller checked `replica` is a server of the
    /// group.
    ///
    /// `promote_any` is the planted bug "a backup promoted without the
    /// latest writes": a dead primary is replaced by any live replica.
    /// `members`: the group's members now (bit `i` is replica `i`).
    pub fn ping(
        &mut self,
        gid: synod_wire::GroupId,
        replica: ReplicaId,
        ready: u64,
        promote_any: bool,
        members: u64,
    ) -> PbViewReply {
        let r = replica as usize;
        assert!(
            r < self.servers(),
            "ping from replica {replica} of a {}-server group",
            self.servers()
        );
        self.pings[r] += 1;
        self.marks[r] = self.pings.clone();
        // A removed replica still pinging (or its ping still in flight)
        // neither acknowledges nor refuses a view: were it the primary of
        // one not yet acknowledged, its acknowledgement would make it
        // alone `safe` and strand the group on a replica it no longer has
        // (the pb world with --membership, seeds 382 and 1316).
        let member = members & bit(replica) != 0;
        if member && replica == self.view.primary && ready == self.view.num && !self.acked {
            self.acked = true;
            self.safe = self.view.members();
        }
        if member && replica == self.view.primary && ready == PB_PING_REFUSED {
            self.primary_refused(promote_any, members);
        }
        self.next_view(promote_any, members);
        if !promote_any {
            self.assert_invariants();
        }
        PbViewReply {
            gid,
            view: self.view,
            acked: self.acked,
        }
    }

    /// The primary restarted and will not act in the current view (it may
    /// have sent entries of it it never made durable): a newer view, with
    /// another primary if the rules for a dead primary give one, else the
    /// same servers under a new number (its entries then carry the new
    /// number, so none can be mistaken for one it lost).
    fn primary_refused(&mut self, promote_any: bool, members: u64) {
        let old = self.view;
        let live = self.live(members);
        let candidate = if promote_any {
            lowest(live & !bit(old.primary))
        } else if self.acked {
            lowest(old.backups & live)
        } else {
            lowest(self.safe & live & !bit(old.primary))
        };
        // As for a dead primary (`next_view`), the refusing one staying a
        // backup; or, with nobody else fit, the same servers.
        let (primary, backups) = match candidate {
            Some(p) if self.acked => (p, live & !bit(p)),
            Some(p) => (p, (old.backups | self.safe) & live & !bit(p)),
            None => (old.primary, old.backups),
        };
        if promote_any {
            self.safe |= bit(primary);
        }
        self.view = View {
            num: old.num + 1,
            primary,
            backups,
        };
        self.acked = false;
    }

    /// Move to the next view if the rules say so.
    fn next_view(&mut self, promote_any: bool, members: u64) {
        let live = self.live(members);
        let old = self.view;
        let primary_alive = live & bit(old.primary) != 0;
        if promote_any && !primary_alive {
            if let Some(primary) = lowest(live & !bit(old.primary)) {
                self.view = View {
                    num: old.num + 1,
                    primary,
                    backups: live & !bit(primary),
                };
                self.acked = false;
                self.safe |= bit(primary);
            }
            return;
        }
        let (primary, backups) = if self.acked {
            let primary = if primary_alive {
                old.primary
            } else {
                match lowest(old.backups & live) {
                    Some(p) => p,
                    None => return, // nobody else holds every write: wait
                }
            };
            (primary, live & !bit(primary))
        } else if primary_alive {
            (old.primary, old.backups & live)
        } else {
            let Some(primary) = lowest(self.safe & live & !bit(old.primary)) else {
                return;
            };
            (primary, (old.backups | self.safe) & live & !bit(primary))
        };
        if (primary, backups) != (old.primary, old.backups) {
            self.view = View {
                num: old.num + 1,
                primary,
                backups,
            };
            self.acked = false;
        }
    }

    /// The invariants, as a value (restore refuses a state breaking them).
    pub(super) fn check(&self) -> Result<(), &'static str> {
        let n = self.servers();
        if n == 0 || n > 64 || self.marks.len() != n || self.marks.iter().any(|m| m.len() != n) {
            return Err("primary/backup counters do not match the group's servers");
        }
        let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let v = self.view;
        if v.num == 0 || v.primary as usize >= n || v.backups & !all != 0 {
            return Err("view names a replica the group does not list");
        }
        if v.backups & bit(v.primary) != 0 {
            return Err("view's primary is also a backup");
        }
        if self.safe & !all != 0 || self.safe & bit(v.primary) == 0 {
            return Err("view's primary is not known to hold every acknowledged write");
        }
        if self.acked && self.safe != v.members() {
            return Err("acknowledged view's members are not the safe set");
        }
        for m in &self.marks {
            if m.iter().zip(&self.pings).any(|(then, now)| then > now) {
                return Err("a ping mark is ahead of the ping count");
            }
        }
        Ok(())
    }

    pub fn assert_invariants(&self) {
        if let Err(e) = self.check() {
            panic!("view service invariant broken: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::{Answer, Master, MasterOptions};
    use synod_wire::{MasterOp, MasterRequest, ReplicationMode};

    fn master_with_pb_group(servers: u32) -> Master {
        let mut m = Master::new(MasterOptions { shards: 4 });
        let mut g = GroupInfo::new(7, (0..servers).map(|i| format!("s{i}:1")).collect());
        g.mode = ReplicationMode::PrimaryBackup;
        let joined = m.apply(&MasterRequest {
            client_id: 1,
            seq: 1,
            ack_seq: 0,
            op: MasterOp::Join { groups: vec![g] },
        });
        assert!(joined.is_ok(), "{joined:?}");
        m
    }

    fn ping(m: &mut Master, replica: ReplicaId, view: u64) -> PbViewReply {
        let req = MasterRequest {
            client_id: 9,
            seq: 1,
            ack_seq: 0,
            op: MasterOp::PbPing {
                gid: 7,
                replica,
                view,
            },
        };
        match m.execute(&req) {
            Ok(Answer::View(v)) => v,
            other => panic!("ping answered {other:?}"),
        }
    }

    #[test]
    fn a_joined_group_starts_in_view_one_unacknowledged() {
        let mut m = master_with_pb_group(3);
        let v = ping(&mut m, 1, 0);
        assert_eq!(
            v.view,
            View {
                num: 1,
                primary: 0,
                backups: 0b110
            }
        );
        assert!(!v.acked);
        // Only the primary's report of view 1 acknowledges it.
        assert!(!ping(&mut m, 1, 1).acked);
        assert!(ping(&mut m, 0, 1).acked);
        assert_eq!(m.pb_group(7).map(|g| g.safe), Some(0b111));
    }

    #[test]
    fn a_dead_primary_is_replaced_by_a_backup_of_the_acknowledged_view() {
        let mut m = master_with_pb_group(3);
        ping(&mut m, 0, 1);
        ping(&mut m, 1, 1);
        ping(&mut m, 2, 1);
        // Replica 0 goes quiet; 1 and 2 keep pinging.
        let mut v = ping(&mut m, 1, 1);
        for _ in 0..DEAD_PINGS {
            v = ping(&mut m, 1, 1);
            ping(&mut m, 2, 1);
        }
        assert_eq!(v.view.num, 2);
        assert_eq!(v.view.primary, 1);
        assert_eq!(v.view.backups, 0b100);
        assert!(!v.acked);
    }

    /// A primary that restarted refuses the view it may have led
    /// (`PB_PING_REFUSED`): a live backup takes over, the refusing one
    /// stays as a backup; with nobody else fit, the same servers get a new
    /// view number, which the restarted replica may lead.
    #[test]
    fn a_refusing_primary_moves_the_group_to_a_newer_view() {
        let mut m = master_with_pb_group(2);
        ping(&mut m, 0, 1);
        ping(&mut m, 1, 1);
        assert!(ping(&mut m, 0, 1).acked);
        let v = ping(&mut m, 0, PB_PING_REFUSED);
        assert_eq!((v.view.num, v.view.primary, v.view.backups), (2, 1, 0b01));
        assert!(!v.acked);

        // Alone: the backup is dead, so the refusing primary keeps its
        // servers under a new number.
        let mut m = master_with_pb_group(2);
        ping(&mut m, 0, 1);
        ping(&mut m, 1, 1);
        assert!(ping(&mut m, 0, 1).acked);
        for _ in 0..DEAD_PINGS {
            ping(&mut m, 0, 1);
        }
        let v = ping(&mut m, 0, 2);
        assert_eq!((v.view.num, v.view.primary, v.view.backups), (2, 0, 0));
        assert!(ping(&mut m, 0, 2).acked);
        let v = ping(&mut m, 0, PB_PING_REFUSED);
        assert_eq!((v.view.num, v.view.primary, v.view.backups), (3, 0, 0));
        assert!(ping(&mut m, 0, 3).acked);
        // A refusal from a replica that is not the primary changes nothing.
        let v = ping(&mut m, 1, PB_PING_REFUSED);
        assert_eq!(v.view.primary, 0);
    }

    #[test]
    fn no_view_change_while_the_view_is_unacknowledged_unless_its_primary_dies() {
        let mut m = master_with_pb_group(2);
        // Replica 0 never acknowledges view 1 but keeps pinging; 1 pings.
        for _ in 0..3 * DEAD_PINGS {
            ping(&mut m, 0, 0);
            assert_eq!(ping(&mut m, 1, 1).view.num, 1);
        }
    }

    #[test]
    fn a_lone_primary_is_not_replaced_by_a_replica_that_missed_writes() {
        let mut m = master_with_pb_group(2);
        ping(&mut m, 0, 1);
        ping(&mut m, 1, 1);
        // Backup 1 dies: view 2 = (0, []), acknowledged; writes go on
        // without 1.
        let mut v = ping(&mut m, 0, 1);
        for _ in 0..DEAD_PINGS {
            v = ping(&mut m, 0, 1);
        }
        assert_eq!(
            v.view,
            View {
                num: 2,
                primary: 0,
                backups: 0
            }
        );
        assert!(ping(&mut m, 0, 2).acked);
        // Now 0 dies and 1 comes back: 1 lacks view 2's writes, so it is
        // never made primary; the service waits for 0.
        for _ in 0..3 * DEAD_PINGS {
            v = ping(&mut m, 1, 0);
        }
        assert_eq!(v.view.primary, 0, "{v:?}");
        // With the planted bug it is.
        let mut m = master_with_pb_group(2);
        m.plant_promote_any();
        ping(&mut m, 0, 1);
        ping(&mut m, 1, 1);
        for _ in 0..DEAD_PINGS + 1 {
            ping(&mut m, 0, 1);
        }
        ping(&mut m, 0, 2);
        for _ in 0..3 * DEAD_PINGS {
            v = ping(&mut m, 1, 0);
        }
        assert_eq!(v.view.primary, 1);
    }

    #[test]
    fn a_returning_server_is_added_as_a_backup_of_an_acknowledged_view() {
        let mut m = master_with_pb_group(2);
        ping(&mut m, 0, 1);
        for _ in 0..DEAD_PINGS + 1 {
            ping(&mut m, 0, 1);
        }
        assert!(ping(&mut m, 0, 2).acked);
        let v = ping(&mut m, 1, 0);
        assert_eq!(
            v.view,
            View {
                num: 3,
                primary: 0,
                backups: 0b10
            }
        );
        assert!(!v.acked);
    }

    #[test]
    fn views_survive_a_snapshot_and_pings_to_other_groups_are_refused() {
        let mut m = master_with_pb_group(3);
        ping(&mut m, 0, 1);
        ping(&mut m, 2, 1);
        let snap = m.snapshot();
        assert_eq!(snap[0], 0x4F);
        let back = Master::restore(&snap, m.options()).expect("restores");
        assert_eq!(back, m);
        assert_eq!(back.snapshot(), snap);
        let req = MasterRequest {
            client_id: 9,
            seq: 1,
            ack_seq: 0,
            op: MasterOp::PbPing {
                gid: 8,
                replica: 0,
                view: 0,
            },
        };
        assert!(m.execute(&req).is_err());
        let mut bad = req.clone();
        bad.op = MasterOp::PbPing {
            gid: 7,
            replica: 3,
            view: 0,
        };
        assert!(m.execute(&bad).is_err());
    }

    /// Membership changes of a primary/backup group: a replaced replica
    /// leaves the view even while it still pings; the new one joins as a
    /// backup once it pings and is `safe` only once the primary
    /// acknowledged a view with it; until then the primary, the only
    /// holder of every acknowledged write, may not be removed. The state
    /// survives a snapshot.
    #[test]
    fn a_replaced_replica_leaves_the_view_and_the_new_one_joins_as_a_backup() {
        let mut m = master_with_pb_group(2);
        let mut seq = 1;
        let mut admin = |m: &mut Master, op: MasterOp| {
            seq += 1;
            m.apply(&MasterRequest {
                client_id: 1,
                seq,
                ack_seq: seq - 1,
                op,
            })
        };
        ping(&mut m, 1, 1);
        let mut v = ping(&mut m, 0, 1);
        assert!(v.acked && v.view.backups == 0b10, "{v:?}");
        // Running a while (a replica that never pinged then counts as
        // dead, as one added later does until it pings).
        for _ in 0..DEAD_PINGS {
            ping(&mut m, 1, 1);
            v = ping(&mut m, 0, 1);
        }
        assert_eq!(v.view.num, 1);
        let replaced = admin(
            &mut m,
            MasterOp::Replace {
                gid: 7,
                old: "s1:1".into(),
                new: "s2:1".into(),
            },
        );
        assert!(replaced.is_ok(), "{replaced:?}");
        // s1 still pings (a live node the operator replaced): not live.
        ping(&mut m, 1, 1);
        let v = ping(&mut m, 0, 1);
        assert_eq!((v.view.num, v.view.primary, v.view.backups), (2, 0, 0));
        let v = ping(&mut m, 0, 2);
        assert!(v.acked);
        // The primary is the only safe member: it may not go yet.
        let refused = admin(
            &mut m,
            MasterOp::RemoveMember {
                gid: 7,
                addr: "s0:1".into(),
            },
        );
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("acknowledged write")),
            "{refused:?}"
        );
        // The new replica pings: a backup of the next view, safe once the
        // primary acknowledges it (after bringing it up to date).
        let v = ping(&mut m, 2, 0);
        assert_eq!((v.view.num, v.view.primary, v.view.backups), (3, 0, 0b100));
        assert!(!v.acked);
        ping(&mut m, 2, 3);
        let v = ping(&mut m, 0, 3);
        assert!(v.acked);
        assert_eq!(m.pb_group(7).expect("pb").safe, 0b101);
        let snap = m.snapshot();
        assert_eq!(Master::restore(&snap, m.options()).expect("restores"), m);
        // Now the old primary may leave; the new replica takes over.
        let removed = admin(
            &mut m,
            MasterOp::RemoveMember {
                gid: 7,
                addr: "s0:1".into(),
            },
        );
        assert!(removed.is_ok(), "{removed:?}");
        let v = ping(&mut m, 2, 3);
        assert_eq!((v.view.num, v.view.primary, v.view.backups), (4, 2, 0));
    }

    /// Regression (the simulator's mixed world, seed 0): a primary/backup
    /// group that leaves still hands its shards off and deletes them
    /// through its log after the configuration that drops it, so its
    /// views go on (a dead replica is still replaced); and when it joins
    /// again its views continue above the old ones, since its replicas
    /// never adopt a lower view (starting over at view 1 left them
    /// ignoring every answer). The retained state survives a snapshot.
    #[test]
    fn a_group_that_left_keeps_its_views_and_continues_them_on_rejoining() {
        let mut m = master_with_pb_group(2);
        let admin = |m: &mut Master, seq, op| {
            let r = m.apply(&MasterRequest {
                client_id: 1,
                seq,
                ack_seq: seq - 1,
                op,
            });
            assert!(r.is_ok(), "{r:?}");
        };
        admin(
            &mut m,
            2,
            MasterOp::Join {
                groups: vec![GroupInfo::new(8, vec!["p:1".to_string()])],
            },
        );
        ping(&mut m, 0, 1);
        ping(&mut m, 1, 1);
        admin(&mut m, 3, MasterOp::Leave { gids: vec![7] });
        // Replica 0 dies after the leave: replica 1 takes over.
        let mut v = ping(&mut m, 1, 1);
        for _ in 0..DEAD_PINGS {
            v = ping(&mut m, 1, 1);
        }
        assert_eq!((v.view.num, v.view.primary, v.view.backups), (2, 1, 0));
        let snap = m.snapshot();
        let back = Master::restore(&snap, m.options()).expect("restores");
        assert_eq!(back, m);
        let mut g = GroupInfo::new(7, vec!["s0:1".to_string(), "s1:1".to_string()]);
        g.mode = ReplicationMode::PrimaryBackup;
        admin(&mut m, 4, MasterOp::Join { groups: vec![g] });
        let v = ping(&mut m, 1, 2);
        assert!(v.view.num >= 2, "views went back to {:?}", v.view);
        // With another server list it starts afresh, above the old views.
        admin(&mut m, 5, MasterOp::Leave { gids: vec![7] });
        let mut g = GroupInfo::new(7, vec!["t0:1".to_string(); 3]);
        g.servers[1] = "t1:1".to_string();
        g.servers[2] = "t2:1".to_string();
        g.mode = ReplicationMode::PrimaryBackup;
        admin(&mut m, 6, MasterOp::Join { groups: vec![g] });
        let fresh = m.pb_group(7).expect("joined");
        assert_eq!(fresh.servers(), 3);
        assert!(fresh.view.num > v.view.num, "{:?}", fresh.view);
        m.assert_invariants();
    }

    /// Regression (`synod-sim --world pb --membership`, seeds 382 and
    /// 1316): the primary of a view not yet acknowledged is removed, and
    /// its acknowledgement, sent before, arrives after. It must not count:
    /// the view would be acknowledged with the removed replica alone
    /// `safe`, and the group could never serve again. The next view is led
    /// by the remaining member.
    #[test]
    fn a_removed_primary_cannot_acknowledge_its_view() {
        let mut m = master_with_pb_group(2);
        ping(&mut m, 1, 1);
        ping(&mut m, 0, 1);
        for _ in 0..DEAD_PINGS {
            ping(&mut m, 0, 1);
            ping(&mut m, 1, 1);
        }
        // Replica 0 goes quiet: view 2 with replica 1 alone, unacknowledged.
        let mut v = ping(&mut m, 1, 1);
        for _ in 0..DEAD_PINGS {
            v = ping(&mut m, 1, 1);
        }
        assert_eq!((v.view.num, v.view.primary, v.acked), (2, 1, false));
        // Replica 0 is back; the operator removes replica 1 (allowed:
        // replica 0 held every write acknowledged in view 1).
        ping(&mut m, 0, 1);
        let removed = m.apply(&MasterRequest {
            client_id: 1,
            seq: 2,
            ack_seq: 1,
            op: MasterOp::RemoveMember {
                gid: 7,
                addr: "s1:1".into(),
            },
        });
        assert!(removed.is_ok(), "{removed:?}");
        // Replica 1's late acknowledgement of view 2.
        let v = ping(&mut m, 1, 2);
        assert!(!v.acked || v.view.primary != 1, "{v:?}");
        let v = ping(&mut m, 0, 0);
        assert_eq!((v.view.num, v.view.primary), (3, 0), "{v:?}");
        let v = ping(&mut m, 0, 3);
        assert!(v.acked);
        assert_eq!(m.pb_group(7).expect("pb").safe, 0b1);
    }
}
