//! Which connection a group's frames travel on (PROTOCOL.md section 1).
//!
//! A server binds a connection to the core of its first frame's group and
//! executes on it the frames of every group that core serves. A client
//! cannot know how groups map to cores, so it learns: a connection named
//! by group `g` is *confirmed* once a reply other than `WrongCore` came on
//! it for a frame of `g` itself (it is bound to `g`'s core). Another group
//! may then try it; one answered `WrongCore` there never tries it again and
//! falls back to a connection of its own. Fewer connections carry the same
//! requests in fewer, larger writes (issue 15: per-group connections cost
//! 0.45x the puts/s with 6 groups, all of it kernel socket time).
//!
//! Owns only this knowledge; the session decides when to record it, and
//! the drivers own the sockets. The master group (0) never shares: master
//! requests keep a connection of their own, bound to core 0.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use synod_wire::GroupId;

use super::session::Dest;

/// Addresses remembered at most before starting over (as the session's
/// interned addresses: they change only with configurations).
const ADDRS_MAX: usize = 256;

/// What is known of the connections to one server address.
#[derive(Debug, Default)]
struct AtAddr {
    /// Connections (named by their group) known bound to that group's core.
    confirmed: BTreeSet<GroupId>,
    /// Group → the confirmed connection of another group it uses. A group
    /// on its own connection has no entry: it moves to a lower confirmed
    /// one as soon as one appears.
    lane: BTreeMap<GroupId, GroupId>,
    /// `(group, connection)`: the connection answered `WrongCore` to a
    /// frame of the group.
    rejected: BTreeSet<(GroupId, GroupId)>,
}

/// The connection choice of one session: see the module documentation.
#[derive(Debug)]
pub(crate) struct Lanes {
    /// Off: every group on its own connection, as before issue 15.
    share: bool,
    /// Per address, in a vector: a session talks to a handful of servers,
    /// and its addresses are interned (one `Arc` each), so a pointer
    /// comparison usually finds one; this is on every send and reply, where
    /// hashing the address showed in the load generator's CPU per request.
    at: Vec<(Arc<str>, AtAddr)>,
}

impl Lanes {
    pub(crate) fn new(share: bool) -> Lanes {
        Lanes {
            share,
            at: Vec::new(),
        }
    }

    fn at_mut(&mut self, addr: &Arc<str>) -> Option<&mut AtAddr> {
        let i = match self.at.iter().position(|(a, _)| Arc::ptr_eq(a, addr)) {
            Some(i) => i,
            None => self.at.iter().position(|(a, _)| **a == **addr)?,
        };
        Some(&mut self.at[i].1)
    }

    /// The connection (named by its group) a frame of `gid` to `addr`
    /// goes on: its lane if it has one; else the lowest confirmed
    /// connection there that never refused it (lowest, so the groups of one
    /// core gather on one connection whatever order they started in); else
    /// its own.
    pub(crate) fn conn_for(&mut self, addr: &Arc<str>, gid: GroupId) -> GroupId {
        if !self.share || gid == 0 {
            return gid;
        }
        let Some(at) = self.at_mut(addr) else {
            return gid;
        };
        if let Some(&conn) = at.lane.get(&gid) {
            return conn;
        }
        let rejected = &at.rejected;
        let pick = at
            .confirmed
            .iter()
            .copied()
            .find(|&c| c == gid || !rejected.contains(&(gid, c)));
        match pick {
            Some(conn) if conn != gid => {
                at.lane.insert(gid, conn);
                conn
            }
            _ => gid,
        }
    }

    /// A reply other than `WrongCore` came on `conn` for a frame of its own
    /// group: it is bound to that group's core.
    pub(crate) fn confirm(&mut self, conn: &Dest) {
        if !self.share || conn.gid == 0 {
            return;
        }
        if let Some(at) = self.at_mut(&conn.addr) {
            if !at.confirmed.contains(&conn.gid) {
                at.confirmed.insert(conn.gid);
            }
            return;
        }
        if self.at.len() >= ADDRS_MAX {
            self.at.clear();
        }
        let mut at = AtAddr::default();
        at.confirmed.insert(conn.gid);
        self.at.push((conn.addr.clone(), at));
    }

    /// `conn` answered `WrongCore` to a frame of `gid`: `gid` never tries
    /// it again (its own connection is never rejected: the session closes
    /// and reopens that one instead).
    pub(crate) fn reject(&mut self, conn: &Dest, gid: GroupId) {
        if conn.gid == gid {
            return;
        }
        let Some(at) = self.at_mut(&conn.addr) else {
            return;
        };
        at.rejected.insert((gid, conn.gid));
        if at.lane.get(&gid) == Some(&conn.gid) {
            at.lane.remove(&gid);
        }
    }

    /// `conn` closed: a new one under its name may be bound elsewhere until
    /// its group confirms it again, so no group uses it meanwhile.
    /// Rejections stay (cores do not change while a server runs).
    pub(crate) fn forget(&mut self, conn: &Dest) {
        let Some(at) = self.at_mut(&conn.addr) else {
            return;
        };
        at.confirmed.remove(&conn.gid);
        at.lane.retain(|_, c| *c != conn.gid);
    }

    /// Is `conn` known bound to its group's core (tests)?
    #[cfg(test)]
    pub(crate) fn is_confirmed(&self, conn: &Dest) -> bool {
        self.at
            .iter()
            .any(|(a, at)| **a == *conn.addr && at.confirmed.contains(&conn.gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(gid: GroupId) -> Dest {
        Dest::new("a:1", gid)
    }

    /// Groups start alone; once a connection is confirmed, the others
    /// gather on the lowest confirmed one that never refused them.
    #[test]
    fn groups_gather_on_the_lowest_confirmed_connection_they_were_not_refused() {
        let mut l = Lanes::new(true);
        assert_eq!(
            l.conn_for(&Arc::from("a:1"), 3),
            3,
            "nothing confirmed: its own"
        );
        l.confirm(&dest(3));
        l.confirm(&dest(2));
        assert_eq!(l.conn_for(&Arc::from("a:1"), 1), 2);
        assert_eq!(
            l.conn_for(&Arc::from("a:1"), 3),
            2,
            "from its own to the lowest"
        );
        l.reject(&dest(2), 1);
        assert_eq!(
            l.conn_for(&Arc::from("a:1"), 1),
            3,
            "refused by 2: the next one"
        );
        l.reject(&dest(3), 1);
        assert_eq!(
            l.conn_for(&Arc::from("a:1"), 1),
            1,
            "refused by all: its own"
        );
        assert_eq!(
            l.conn_for(&Arc::from("b:1"), 1),
            1,
            "another address knows nothing"
        );
        l.forget(&dest(2));
        assert!(!l.is_confirmed(&dest(2)));
        assert_eq!(
            l.conn_for(&Arc::from("a:1"), 4),
            3,
            "a closed connection is not offered"
        );
    }

    #[test]
    fn the_master_group_and_a_session_without_sharing_keep_their_own() {
        let mut l = Lanes::new(true);
        l.confirm(&dest(0));
        l.confirm(&dest(1));
        assert!(!l.is_confirmed(&dest(0)));
        assert_eq!(l.conn_for(&Arc::from("a:1"), 0), 0);
        let mut off = Lanes::new(false);
        off.confirm(&dest(1));
        assert_eq!(off.conn_for(&Arc::from("a:1"), 2), 2);
    }
}
