//! `synod admin status`: ask every node for its view of the groups it
//! hosts (`StatusRequest`, wire kind 0x60, an admin request), and put the
//! views together per group: members, leader, ballot, commit and applied
//! points, each member's lag, shards, reachability and quorum.
//!
//! A primary/backup group (issue 12; its mode comes from the
//! configuration) reports in the same fields: its replicas publish the view
//! number as the ballot round and the primary as the ballot node, and
//! "leading" means serving as the view's primary. Its status reads them
//! back as a view: the leader is the serving primary of the highest view,
//! a member is primary, backup (in the primary's view) or waiting (no
//! serving primary, or an older view: not yet told, or a restarted replica
//! the master has yet to take back), and the group is
//! available ("quorum") when its primary is reachable and serving: f+1
//! replicas need only the primary (and the master, for a new view), not a
//! majority.
//!
//! Fetching is blocking (one thread per node, each bounded by a timeout);
//! `assemble` and the two renderings are pure, so they are unit-tested
//! without a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use synod_wire::{
    encode_frame, Ballot, Config, Decoder, Frame, GroupId, Message, NodeStatus, ReplicaId,
    ReplicationMode,
};

use crate::auth::{self, Identity, Key};
use serde::Serialize;

/// One node's status report: its answer, or why there is none.
pub fn fetch_node(addr: &str, key: Option<&Key>, timeout: Duration) -> Result<NodeStatus, String> {
    let deadline = Instant::now() + timeout;
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("bad address: {e}"))?
        .next()
        .ok_or("bad address: no socket address")?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| e.to_string())?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    if let Some(key) = key {
        auth::stream::dial(&mut s, key, Identity::Admin, 0, left())?;
    }
    let mut out = BytesMut::new();
    encode_frame(
        &Frame {
            request_id: 1,
            group: 0,
            message: Message::StatusRequest,
        },
        &mut out,
    );
    s.set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    s.write_all(&out).map_err(|e| e.to_string())?;
    let mut dec = Decoder::default();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(f)) => {
                return match f.message {
                    Message::Status(st) => Ok(st),
                    Message::Reply(r) => Err(format!("refused: {r:?}")),
                    other => Err(format!("unexpected answer {other:?}")),
                }
            }
            Ok(None) => {}
            Err(e) => return Err(format!("bad frame: {e}")),
        }
        s.set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => return Err("closed the connection".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if Instant::now() >= deadline => return Err(format!("no answer: {e}")),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Every node's report, fetched in parallel (one thread each).
pub fn fetch_all(
    addrs: &[String],
    key: Option<&Key>,
    timeout: Duration,
) -> BTreeMap<String, Result<NodeStatus, String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = addrs
            .iter()
            .map(|a| (a.clone(), scope.spawn(move || fetch_node(a, key, timeout))))
            .collect();
        handles
            .into_iter()
            .map(|(a, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err("status fetch panicked".into()));
                (a, r)
            })
            .collect()
    })
}

/// Every node the status covers: the masters and every configured member
/// (a server removed from its group is not asked).
pub fn nodes_of(masters: &[String], config: Option<&Config>) -> Vec<String> {
    let mut set: BTreeSet<String> = masters.iter().cloned().collect();
    for g in config.iter().flat_map(|c| &c.groups) {
        set.extend(g.member_servers().map(|(_, s)| s.to_string()));
    }
    set.into_iter().collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReach {
    pub addr: String,
    /// Why it did not answer (`None`: it did).
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Its replica id: its position in the group's server list, which
    /// keeps removed servers (so ids can skip numbers after a replace).
    pub replica: usize,
    pub addr: String,
    /// The node answered and hosts a replica of this group.
    pub reachable: bool,
    pub leading: bool,
    pub ballot: Option<Ballot>,
    pub commit: Option<u64>,
    pub applied: Option<u64>,
    /// Slots between the group's commit point and this member's applied point.
    pub lag: Option<u64>,
    pub log_slots: Option<u64>,
    pub config_num: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub gid: GroupId,
    /// From the configuration (Paxos when it could not be read).
    pub mode: ReplicationMode,
    pub members: Vec<MemberView>,
    /// Index into `members` of the leader (the reachable member that says
    /// it leads with the highest ballot).
    pub leader: Option<usize>,
    pub ballot: Option<Ballot>,
    pub commit: Option<u64>,
    pub shards: Vec<u32>,
    /// Paxos: a majority of the members is reachable. Primary/backup: the
    /// view's primary is reachable and serving.
    pub quorum: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The latest configuration's number, or why it could not be read.
    pub config: Result<u64, String>,
    pub nodes: Vec<NodeReach>,
    pub groups: Vec<GroupView>,
}

/// Put the reports together. Groups and members come from the
/// configuration when there is one (the master group from `masters`),
/// otherwise from what the reachable nodes report.
pub fn assemble(
    masters: &[String],
    config: Result<&Config, String>,
    reports: &BTreeMap<String, Result<NodeStatus, String>>,
) -> ClusterStatus {
    // gid -> ((replica id, address) of each member, shards)
    type Members = Vec<(usize, String)>;
    let by_position = |list: &[String]| -> Members { list.iter().cloned().enumerate().collect() };
    let mut groups: BTreeMap<GroupId, (Members, Vec<u32>, ReplicationMode)> = BTreeMap::new();
    groups.insert(
        0,
        (by_position(masters), Vec::new(), ReplicationMode::Paxos),
    );
    match &config {
        Ok(c) => {
            for g in &c.groups {
                let shards = (0..c.shards.len() as u32)
                    .filter(|&s| c.shards[s as usize] == g.gid)
                    .collect();
                // Members only: a removed server neither shows nor counts
                // toward the majority.
                let members = g
                    .member_servers()
                    .map(|(id, s)| (id as usize, s.to_string()))
                    .collect();
                groups.insert(g.gid, (members, shards, g.mode));
            }
        }
        Err(_) => {
            for st in reports.values().flatten() {
                for g in &st.groups {
                    groups.entry(g.gid).or_insert_with(|| {
                        (
                            by_position(&g.members),
                            g.shards.clone(),
                            ReplicationMode::Paxos,
                        )
                    });
                }
            }
        }
    }
    let views = groups
        .into_iter()
        .map(|(gid, (members, shards, mode))| {
            let mut mv: Vec<MemberView> = members
                .iter()
                .map(|(replica, addr)| {
                    let rep = reports
                        .get(addr)
                        .and_then(|r| r.as_ref().ok())
                        .and_then(|st| st.groups.iter().find(|g| g.gid == gid));
                    MemberView {
                        replica: *replica,
                        addr: addr.clone(),
                        reachable: rep.is_some(),
                        leading: rep.is_some_and(|g| g.leading),
                        ballot: rep.map(|g| g.ballot),
                        commit: rep.map(|g| g.commit),
                        applied: rep.map(|g| g.applied),
                        lag: None,
                        log_slots: rep.map(|g| g.log_slots),
                        config_num: rep.map(|g| g.config_num),
                    }
                })
                .collect();
            let leader = mv
                .iter()
                .enumerate()
                .filter(|(_, m)| m.leading)
                .max_by_key(|(_, m)| m.ballot)
                .map(|(i, _)| i);
            let commit = match leader {
                Some(i) => mv[i].commit,
                None => mv.iter().filter_map(|m| m.commit).max(),
            };
            let ballot = match leader {
                Some(i) => mv[i].ballot,
                None => mv.iter().filter_map(|m| m.ballot).max(),
            };
            for m in &mut mv {
                m.lag = m.applied.zip(commit).map(|(a, c)| c.saturating_sub(a));
            }
            let up = mv.iter().filter(|m| m.reachable).count();
            let quorum = match mode {
                ReplicationMode::Paxos => !mv.is_empty() && up > mv.len() / 2,
                ReplicationMode::PrimaryBackup => leader.is_some(),
            };
            GroupView {
                gid,
                mode,
                quorum,
                members: mv,
                leader,
                ballot,
                commit,
                shards,
            }
        })
        .collect();
    let mut addrs: BTreeSet<&String> = reports.keys().collect();
    addrs.extend(masters);
    ClusterStatus {
        config: config.map(|c| c.num),
        nodes: addrs
            .into_iter()
            .map(|a| NodeReach {
                addr: a.clone(),
                error: match reports.get(a) {
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(e.clone()),
                    None => Some("not asked".into()),
                },
            })
            .collect(),
        groups: views,
    }
}

impl ClusterStatus {
    /// Every group has a reachable majority.
    pub fn all_quorate(&self) -> bool {
        self.groups.iter().all(|g| g.quorum)
    }

    /// A table for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        match &self.config {
            Ok(n) => {
                let _ = writeln!(out, "configuration {n}");
            }
            Err(e) => {
                let _ = writeln!(out, "configuration unknown ({e})");
            }
        }
        let mut rows = vec![vec![
            "GROUP".to_string(),
            "MODE".into(),
            "QUORUM".into(),
            "LEADER".into(),
            "BALLOT".into(),
            "COMMIT".into(),
            "SHARDS".into(),
        ]];
        for g in &self.groups {
            rows.push(vec![
                g.gid.to_string(),
                mode_name(g.mode).into(),
                yes_no(g.quorum).into(),
                g.leader
                    .map_or("none".to_string(), |l| g.members[l].addr.clone()),
                g.ballot.map_or("-".into(), |b| match g.mode {
                    ReplicationMode::Paxos => format!("{}.{}", b.round, b.node),
                    ReplicationMode::PrimaryBackup => format!("view {}", b.round),
                }),
                opt(g.commit),
                if g.gid == 0 {
                    "(master)".into()
                } else {
                    shard_ranges(&g.shards)
                },
            ]);
        }
        table(&mut out, &rows);
        out.push('\n');
        let mut rows = vec![vec![
            "GROUP".to_string(),
            "REPLICA".into(),
            "MEMBER".into(),
            "STATE".into(),
            "APPLIED".into(),
            "LAG".into(),
            "LOG".into(),
        ]];
        for g in &self.groups {
            for (j, m) in g.members.iter().enumerate() {
                let pb = g.mode == ReplicationMode::PrimaryBackup;
                let state = if !m.reachable {
                    "unreachable"
                } else if Some(j) == g.leader {
                    if pb {
                        "primary"
                    } else {
                        "leader"
                    }
                } else if !pb {
                    "follower"
                } else if g.leader.is_some()
                    && m.ballot.map(|b| b.round) == g.ballot.map(|b| b.round)
                {
                    "backup"
                } else {
                    "waiting"
                };
                rows.push(vec![
                    g.gid.to_string(),
                    m.replica.to_string(),
                    m.addr.clone(),
                    state.into(),
                    opt(m.applied),
                    opt(m.lag),
                    opt(m.log_slots),
                ]);
            }
        }
        table(&mut out, &rows);
        out.push('\n');
        let mut rows = vec![vec!["NODE".to_string(), "REACHABLE".into()]];
        for n in &self.nodes {
            rows.push(vec![
                n.addr.clone(),
                match &n.error {
                    None => "yes".into(),
                    Some(e) => format!("no ({e})"),
                },
            ]);
        }
        table(&mut out, &rows);
        out
    }
}

fn mode_name(m: ReplicationMode) -> &'static str {
    match m {
        ReplicationMode::Paxos => "paxos",
        ReplicationMode::PrimaryBackup => "pb",
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// `0-3,7,9-10 (7)`.
pub fn shard_ranges(shards: &[u32]) -> String {
    if shards.is_empty() {
        return "none".into();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < shards.len() {
        let mut j = i;
        while j + 1 < shards.len() && shards[j + 1] == shards[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            shards[i].to_string()
        } else {
            format!("{}-{}", shards[i], shards[j])
        });
        i = j + 1;
    }
    format!("{} ({})", parts.join(","), shards.len())
}

fn table(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// `ClusterStatus` as `synod admin status` prints it: one line of JSON
/// (shape documented in tools/deploy/README.md), written by `serde_json`.
impl Serialize for ClusterStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A primary/backup replica's "ballot" is its view (number,
        // primary): printed as `view`, with `ballot` null.
        let pb = |mode| mode == ReplicationMode::PrimaryBackup;
        let ballot = |mode, b: Option<Ballot>| {
            b.filter(|_| !pb(mode)).map(|b| BallotJson {
                round: b.round,
                node: b.node,
            })
        };
        let view = |mode, b: Option<Ballot>| b.filter(|_| pb(mode)).map(|b| b.round);
        StatusJson {
            config: self.config.as_ref().ok().copied(),
            config_error: self.config.as_ref().err().map(String::as_str),
            quorum: self.all_quorate(),
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeJson {
                    addr: &n.addr,
                    reachable: n.error.is_none(),
                    error: n.error.as_deref(),
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|g| GroupJson {
                    gid: g.gid,
                    mode: mode_name(g.mode),
                    quorum: g.quorum,
                    leader: g.leader.map(|l| g.members[l].addr.as_str()),
                    ballot: ballot(g.mode, g.ballot),
                    view: view(g.mode, g.ballot),
                    commit: g.commit,
                    shards: &g.shards,
                    members: g
                        .members
                        .iter()
                        .enumerate()
                        .map(|(j, m)| MemberJson {
                            replica: m.replica,
                            addr: &m.addr,
                            reachable: m.reachable,
                            leader: Some(j) == g.leader,
                            ballot: ballot(g.mode, m.ballot),
                            view: view(g.mode, m.ballot),
                            commit: m.commit,
                            applied: m.applied,
                            lag: m.lag,
                            log_slots: m.log_slots,
                            config: m.config_num,
                        })
                        .collect(),
                })
                .collect(),
        }
        .serialize(serializer)
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    /// `null` (and `config_error` says why) when no master answered.
    config: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_error: Option<&'a str>,
    quorum: bool,
    nodes: Vec<NodeJson<'a>>,
    groups: Vec<GroupJson<'a>>,
}

#[derive(Serialize)]
struct NodeJson<'a> {
    addr: &'a str,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct GroupJson<'a> {
    gid: GroupId,
    /// "paxos" or "pb".
    mode: &'static str,
    quorum: bool,
    /// The leader's (a pb group's serving primary's) address.
    leader: Option<&'a str>,
    ballot: Option<BallotJson>,
    /// A primary/backup group's view number.
    #[serde(skip_serializing_if = "Option::is_none")]
    view: Option<u64>,
    commit: Option<u64>,
    shards: &'a [u32],
    members: Vec<MemberJson<'a>>,
}

#[derive(Serialize)]
struct MemberJson<'a> {
    replica: usize,
    addr: &'a str,
    reachable: bool,
    leader: bool,
    ballot: Option<BallotJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    view: Option<u64>,
    commit: Option<u64>,
    applied: Option<u64>,
    lag: Option<u64>,
    log_slots: Option<u64>,
    config: Option<u64>,
}

#[derive(Serialize)]
struct BallotJson {
    round: u64,
    node: ReplicaId,
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_wire::{GroupInfo, GroupStatus};

    fn gs(
        gid: GroupId,
        replica: u32,
        leading: bool,
        round: u64,
        commit: u64,
        applied: u64,
    ) -> GroupStatus {
        GroupStatus {
            gid,
            replica,
            members: vec!["a:1".into(), "b:1".into(), "c:1".into()],
            leading,
            leader: Some(0),
            ballot: Ballot::new(round, 0),
            commit,
            applied,
            log_slots: 3,
            config_num: 1,
            shards: vec![0, 1],
        }
    }

    fn config() -> Config {
        Config {
            num: 1,
            shards: vec![1, 1, 1, 1],
            groups: vec![GroupInfo::new(
                1,
                vec!["a:1".into(), "b:1".into(), "c:1".into()],
            )],
        }
    }

    fn masters() -> Vec<String> {
        vec!["a:1".into(), "b:1".into(), "c:1".into()]
    }

    #[test]
    fn one_node_down_keeps_quorum_and_shows_lag_and_the_leader() {
        let mut reports = BTreeMap::new();
        reports.insert(
            "a:1".to_string(),
            Ok(NodeStatus {
                node: "a:1".into(),
                groups: vec![gs(0, 0, true, 2, 50, 50), gs(1, 0, true, 4, 100, 100)],
            }),
        );
        reports.insert(
            "b:1".to_string(),
            Ok(NodeStatus {
                node: "b:1".into(),
                // A deposed leader that has not noticed yet: lower ballot.
                groups: vec![gs(0, 1, false, 2, 50, 48), gs(1, 1, true, 3, 90, 90)],
            }),
        );
        reports.insert("c:1".to_string(), Err("connection refused".into()));
        let st = assemble(&masters(), Ok(&config()), &reports);
        assert!(st.all_quorate());
        let g1 = &st.groups[1];
        assert_eq!(g1.leader, Some(0), "the higher ballot leads");
        assert_eq!(g1.commit, Some(100));
        assert_eq!(g1.members[1].lag, Some(10));
        assert!(!g1.members[2].reachable);
        assert_eq!(g1.shards, vec![0, 1, 2, 3]);
        assert_eq!(st.groups[0].members[1].lag, Some(2));
        let json = serde_json::to_string(&st).unwrap();
        assert!(json.starts_with("{\"config\":1,\"quorum\":true,"), "{json}");
        assert!(
            json.contains("\"addr\":\"c:1\",\"reachable\":false,\"error\":\"connection refused\"")
        );
        let table = st.to_table();
        assert!(table.contains("unreachable"), "{table}");
        assert!(table.contains("0-3 (4)"), "{table}");
    }

    #[test]
    fn two_of_three_down_is_no_quorum() {
        let mut reports = BTreeMap::new();
        reports.insert(
            "a:1".to_string(),
            Ok(NodeStatus {
                node: "a:1".into(),
                groups: vec![gs(0, 0, false, 2, 50, 50), gs(1, 0, false, 4, 100, 100)],
            }),
        );
        reports.insert("b:1".to_string(), Err("refused".into()));
        reports.insert("c:1".to_string(), Err("refused".into()));
        let st = assemble(&masters(), Err("no master answered".into()), &reports);
        assert!(!st.all_quorate());
        assert_eq!(
            st.groups.len(),
            2,
            "groups from the reports without a configuration"
        );
        assert_eq!(st.groups[1].leader, None);
        assert!(serde_json::to_string(&st)
            .unwrap()
            .contains("\"config\":null,\"config_error\":\"no master answered\""));
    }

    /// A 2-replica primary/backup group: one replica down still serves
    /// once the survivor is primary of a newer view, which a majority rule
    /// would call no quorum; a replica with no serving primary shows as waiting.
    #[test]
    fn a_pb_group_is_available_while_its_primary_serves() {
        let pb_config = |members: usize| Config {
            num: 1,
            shards: vec![1, 1],
            groups: vec![GroupInfo {
                mode: ReplicationMode::PrimaryBackup,
                ..GroupInfo::new(
                    1,
                    ["a:1", "b:1", "c:1"][..members]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                )
            }],
        };
        // Published as the runtime does: round = view, node = primary.
        let pb = |replica: u32, serving: bool, view: u64, applied: u64| GroupStatus {
            leader: Some(1),
            ballot: Ballot::new(view, 1),
            ..gs(1, replica, serving, view, 40, applied)
        };
        let mut reports = BTreeMap::new();
        reports.insert("a:1".to_string(), Err("refused".into()));
        reports.insert(
            "b:1".to_string(),
            Ok(NodeStatus {
                node: "b:1".into(),
                groups: vec![gs(0, 1, true, 2, 50, 50), pb(1, true, 7, 40)],
            }),
        );
        let st = assemble(&masters(), Ok(&pb_config(2)), &reports);
        let g = &st.groups[1];
        assert_eq!(g.mode, ReplicationMode::PrimaryBackup);
        assert!(g.quorum, "1 of 2 up, but its primary serves");
        assert_eq!(g.leader, Some(1));
        let table = st.to_table();
        assert!(table.contains("view 7"), "{table}");
        assert!(table.contains("primary"), "{table}");
        let json = serde_json::to_string(&st).unwrap();
        assert!(
            json.contains("\"gid\":1,\"mode\":\"pb\",\"quorum\":true,\"leader\":\"b:1\",\"ballot\":null,\"view\":7"),
            "{json}"
        );
        assert!(json.contains("\"gid\":0,\"mode\":\"paxos\""), "{json}");

        // The primary gone, the other replica still in an older view: not
        // available (a master's new view has not reached it yet), and it
        // shows as waiting, not as a backup.
        reports.insert(
            "a:1".to_string(),
            Ok(NodeStatus {
                node: "a:1".into(),
                groups: vec![gs(0, 0, false, 2, 50, 50), pb(0, false, 6, 30)],
            }),
        );
        reports.insert("b:1".to_string(), Err("refused".into()));
        let st = assemble(&masters(), Ok(&pb_config(2)), &reports);
        assert!(!st.groups[1].quorum);
        assert!(!st.all_quorate());
        let table = st.to_table();
        assert!(!table.contains("backup"), "{table}");
        assert!(table.contains("waiting"), "{table}");

        // Three replicas, all in view 7: one primary, two backups, one of
        // them lagging.
        for (addr, r, serving, applied) in [
            ("a:1", 0, false, 40),
            ("b:1", 1, true, 40),
            ("c:1", 2, false, 35),
        ] {
            reports.insert(
                addr.to_string(),
                Ok(NodeStatus {
                    node: addr.into(),
                    groups: vec![gs(0, r, r == 0, 2, 50, 50), pb(r, serving, 7, applied)],
                }),
            );
        }
        let st = assemble(&masters(), Ok(&pb_config(3)), &reports);
        assert!(st.groups[1].quorum);
        assert_eq!(st.groups[1].members[2].lag, Some(5));
        let table = st.to_table();
        assert_eq!(table.matches("backup").count(), 2, "{table}");
    }

    #[test]
    fn shard_ranges_compress() {
        assert_eq!(shard_ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8 (6)");
        assert_eq!(shard_ranges(&[]), "none");
    }
}
