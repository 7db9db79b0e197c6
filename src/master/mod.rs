//! The shard master's replicated state machine.
//!
//! This module owns the numbered history of [`Config`]urations (which group
//! serves each shard, and each group's servers and members), the rules that
//! turn a Join, Leave, Move, Replace, AddMember or RemoveMember into the
//! next configuration, the master clients'
//! at-most-once sessions, and the byte layout of the master's snapshots. The
//! master group's replicas apply [`MasterRequest`]s in Paxos log order
//! through [`MasterMachine`].
//!
//! Every replica must compute the same configurations, so nothing here
//! depends on `HashMap` iteration order, time or randomness: maps are
//! `BTreeMap`s and every tie is broken by gid. It never does I/O; the
//! replica layer persists snapshots and sends replies.
//!
//! Errors follow the project's three kinds: corrupt snapshot bytes are a
//! [`RestoreError`] (never a panic), a broken internal invariant is an
//! `assert!`, and a refused request is an `Err(reason)` from
//! [`Master::apply`] that creates no configuration.

mod balance;
mod machine;
mod snapshot;
#[cfg(test)]
mod tests;
mod views;

use std::collections::{BTreeMap, BTreeSet};

use synod_wire::{
    ClientId, Config, GroupId, GroupInfo, MasterOp, MasterRequest, PbViewReply, ReplicationMode,
    Seq,
};

pub use machine::MasterMachine;
pub use snapshot::RestoreError;
pub use views::{PbGroup, DEAD_PINGS};

/// What [`Master::execute`] answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A configuration (Join, Leave, Move, Query, membership ops).
    Config(Config),
    /// A primary/backup group's view (PbPing).
    View(PbViewReply),
}

/// Upper bound on the shard count; the same bound as the KV store's, since
/// every KV group of the cluster uses the master's count.
pub const SHARDS_MAX: u32 = crate::kv::SHARDS_MAX;

/// Most groups one configuration may hold. Every configuration keeps a copy
/// of its group list forever (history stays queryable), so this bounds what
/// one Join can cost every later configuration.
pub const GROUPS_MAX: usize = 1024;

/// Most servers one group may list over its life. Groups are 3 or 5
/// replicas; the slack is for replacing members (a removed server keeps
/// its position, since a replica id is a position in the list and is never
/// reused), not for growth. Below 64, the Paxos id space's bound.
pub const SERVERS_PER_GROUP_MAX: usize = 15;

/// Longest server address accepted (`host:port`; a DNS name is at most 253).
pub const ADDRESS_BYTES_MAX: usize = 260;

/// Most bytes of server addresses one configuration may list, over all its
/// groups. The per-group and per-address caps alone let one Join list 1,024
/// groups of 15 addresses of 260 bytes (4 MB) that every later configuration
/// copies: one such Join and 40 Moves took a node from 45 to 395 MiB
/// (issue 8, finding 10). 256 KiB still fits 1,024 groups of 5 IPv6
/// addresses; each configuration in the history then costs at most this
/// plus its shard map. Checked at apply, so every replica refuses alike.
pub const CONFIG_ADDRESS_BYTES_MAX: usize = 256 << 10;

/// Reply to a request whose `seq` the client already acknowledged (same rule
/// and wording as the KV store's).
pub const STALE_REASON: &str = "stale request: already acknowledged";

/// Configuration of a [`Master`]. Every replica of the master group must use
/// the same options, or their configurations diverge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MasterOptions {
    /// Number of shards; fixed at bootstrap (`--shards`), default
    /// [`synod_wire::DEFAULT_SHARDS`].
    pub shards: u32,
}

impl Default for MasterOptions {
    fn default() -> MasterOptions {
        MasterOptions {
            shards: synod_wire::DEFAULT_SHARDS,
        }
    }
}

/// The outcome of a request that changes the configuration as cached for a retry: the number of
/// the configuration it created (configurations never change, so the number
/// is enough to answer with the whole configuration again), or the refusal.
type Outcome = Result<u64, String>;

/// At-most-once state of one master client; see `kv::shard::Session` for
/// why a watermark plus cached replies (and not a single last seq). As
/// there, sessions are bounded only by the number of distinct admin clients
/// (few: operators and tools); expiring idle ones is future work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Session {
    /// Requests with `seq <= acked` were answered and acknowledged.
    acked: Seq,
    /// Outcomes of applied configuration-changing requests with `seq > acked`.
    replies: BTreeMap<Seq, Outcome>,
}

impl Session {
    /// Raises the watermark (never lowers it) and frees the outcomes at or
    /// below it.
    fn acknowledge(&mut self, ack_seq: Seq) {
        self.acked = self.acked.max(ack_seq);
        while let Some(entry) = self.replies.first_entry() {
            if *entry.key() > self.acked {
                break;
            }
            // The removed outcome is what is being freed.
            let _freed = entry.remove();
        }
    }
}

/// The shard master state: every configuration so far, and the sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Master {
    opts: MasterOptions,
    /// `configs[n].num == n`; never empty (configuration 0 always exists).
    configs: Vec<Config>,
    sessions: BTreeMap<ClientId, Session>,
    /// The view service's state of every primary/backup group of the
    /// latest configuration (`views.rs`).
    pb: BTreeMap<GroupId, PbGroup>,
    /// Planted bug for the simulator (never set otherwise, never in a
    /// snapshot): a dead primary is replaced by any live replica, not only
    /// by one holding every acknowledged write.
    planted_promote_any: bool,
}

impl Master {
    /// A master holding only configuration 0. Panics if `opts.shards` is 0
    /// or above [`SHARDS_MAX`]: options come from configuration, not from
    /// the network.
    pub fn new(opts: MasterOptions) -> Master {
        assert!(
            opts.shards > 0 && opts.shards <= SHARDS_MAX,
            "shard count {} outside 1..={SHARDS_MAX}",
            opts.shards
        );
        Master {
            opts,
            configs: vec![Config {
                num: 0,
                shards: vec![0; opts.shards as usize],
                groups: Vec::new(),
            }],
            sessions: BTreeMap::new(),
            pb: BTreeMap::new(),
            planted_promote_any: false,
        }
    }

    /// Plant the bug "a backup promoted without the latest writes" (the
    /// simulator's checkers must catch it).
    pub fn plant_promote_any(&mut self) {
        self.planted_promote_any = true;
    }

    /// The view-service state of primary/backup group `gid`.
    pub fn pb_group(&self, gid: GroupId) -> Option<&PbGroup> {
        self.pb.get(&gid)
    }

    /// [`Master::apply`] for configuration requests, and the view
    /// service's answer to a `PbPing`. A ping keeps no session (answering
    /// one twice is harmless: it only counts as one more sign of life).
    pub fn execute(&mut self, req: &MasterRequest) -> Result<Answer, String> {
        if let MasterOp::PbPing { gid, replica, view } = req.op {
            // Its members now (every listed server if it is no longer in
            // the configuration).
            let members = self
                .latest()
                .groups
                .iter()
                .find(|g| g.gid == gid)
                .map_or(u64::MAX, GroupInfo::members);
            let Some(g) = self.pb.get_mut(&gid) else {
                return Err(format!("ping: group {gid} is not a primary/backup group"));
            };
            if replica as usize >= g.servers() {
                return Err(format!("ping: group {gid} has no replica {replica}"));
            }
            return Ok(Answer::View(g.ping(
                gid,
                replica,
                view,
                self.planted_promote_any,
                members,
            )));
        }
        self.apply(req).map(Answer::Config)
    }

    pub fn options(&self) -> MasterOptions {
        self.opts
    }

    /// The newest configuration.
    pub fn latest(&self) -> &Config {
        self.configs.last().expect("configuration 0 always exists")
    }

    /// Configuration `num`; `None` or a number past the latest gives the
    /// latest (the classic shard master's `Query(-1)`).
    pub fn config(&self, num: Option<u64>) -> &Config {
        match num {
            Some(n) if n < self.configs.len() as u64 => &self.configs[n as usize],
            _ => self.latest(),
        }
    }

    /// Applies one request at most once per `(client_id, seq)` and returns
    /// the configuration to answer with, or the reason it was refused.
    ///
    /// Order of checks, as in the KV store: the request's `ack_seq` first
    /// frees cached outcomes; then a `seq` at or below the watermark is
    /// refused as stale, a `seq` with a cached outcome gets that outcome
    /// again (a retried Join never creates a second configuration), and
    /// anything else is applied and its outcome cached. Queries are neither
    /// cached nor create a session (re-reading is harmless, and caching
    /// configurations would cost memory); they still carry an ack.
    pub fn apply(&mut self, req: &MasterRequest) -> Result<Config, String> {
        if let MasterOp::PbPing { .. } = req.op {
            return Err("ping: answered by Master::execute with a view".to_string());
        }
        if let MasterOp::Query { num } = req.op {
            if let Some(session) = self.sessions.get_mut(&req.client_id) {
                session.acknowledge(req.ack_seq);
                if req.seq <= session.acked {
                    return Err(STALE_REASON.to_string());
                }
            }
            return Ok(self.config(num).clone());
        }
        let session = self.sessions.entry(req.client_id).or_default();
        session.acknowledge(req.ack_seq);
        if req.seq <= session.acked {
            return Err(STALE_REASON.to_string());
        }
        if let Some(cached) = session.replies.get(&req.seq).cloned() {
            return self.answer(cached);
        }
        let outcome = self.change(&req.op);
        self.sessions
            .get_mut(&req.client_id)
            .expect("session created above")
            .replies
            .insert(req.seq, outcome.clone());
        // Only the newest configuration can have changed; checking the whole
        // history on every request would make a long-lived master quadratic.
        if let Err(e) = check_config(self.latest(), self.configs.len() - 1, self.opts) {
            panic!("master created an invalid configuration: {e}");
        }
        self.answer(outcome)
    }

    fn answer(&self, outcome: Outcome) -> Result<Config, String> {
        outcome.map(|num| self.configs[num as usize].clone())
    }

    /// Validates a configuration-changing request against the latest configuration and,
    /// if it is acceptable, appends the configuration it creates and returns
    /// its number. A refusal changes nothing.
    fn change(&mut self, op: &MasterOp) -> Outcome {
        let latest = self.latest();
        let (groups, shards) = match op {
            MasterOp::Join { groups } => {
                check_join(latest, groups)?;
                let mut all = latest.groups.clone();
                all.extend(groups.iter().cloned());
                all.sort_by_key(|g| g.gid);
                let shards = balance::rebalance(&latest.shards, &gids(&all));
                (all, shards)
            }
            MasterOp::Leave { gids: leaving } => {
                check_leave(latest, leaving)?;
                let leaving: BTreeSet<GroupId> = leaving.iter().copied().collect();
                let rest: Vec<GroupInfo> = latest
                    .groups
                    .iter()
                    .filter(|g| !leaving.contains(&g.gid))
                    .cloned()
                    .collect();
                let shards = balance::rebalance(&latest.shards, &gids(&rest));
                (rest, shards)
            }
            &MasterOp::Move { shard, gid } => {
                if shard >= self.opts.shards {
                    return Err(format!(
                        "move: shard {shard} out of range (there are {} shards)",
                        self.opts.shards
                    ));
                }
                if !latest.groups.iter().any(|g| g.gid == gid) {
                    return Err(format!("move: group {gid} is not in the configuration"));
                }
                let mut shards = latest.shards.clone();
                shards[shard as usize] = gid;
                (latest.groups.clone(), shards)
            }
            MasterOp::Replace { gid, old, new } => {
                let mut groups = latest.groups.clone();
                let g = member_change(&mut groups, *gid, "replace")?;
                let old_id = member_id(g, old, "replace")?;
                self.check_pb_removal(g, old_id, "replace")?;
                append_server(g, new, "replace")?;
                g.removed |= 1u64 << old_id;
                check_address_bytes(&groups, "replace")?;
                (groups, latest.shards.clone())
            }
            MasterOp::AddMember { gid, addr } => {
                let mut groups = latest.groups.clone();
                let g = member_change(&mut groups, *gid, "add-member")?;
                append_server(g, addr, "add-member")?;
                check_address_bytes(&groups, "add-member")?;
                (groups, latest.shards.clone())
            }
            MasterOp::RemoveMember { gid, addr } => {
                let mut groups = latest.groups.clone();
                let g = member_change(&mut groups, *gid, "remove-member")?;
                let id = member_id(g, addr, "remove-member")?;
                self.check_pb_removal(g, id, "remove-member")?;
                if g.members() == 1u64 << id {
                    return Err(format!(
                        "remove-member: {addr} is the last member of group {gid}; \
                         a group needs at least one (use leave to retire the group)"
                    ));
                }
                g.removed |= 1u64 << id;
                (groups, latest.shards.clone())
            }
            MasterOp::Query { .. } | MasterOp::PbPing { .. } => {
                unreachable!("queries and pings create no configuration")
            }
        };
        // A primary/backup group's server list grows by membership changes
        // (never otherwise, while it stays joined): its view-service state
        // grows with it.
        let stayed: BTreeSet<GroupId> = latest.groups.iter().map(|g| g.gid).collect();
        for g in &groups {
            if let Some(pb) = self.pb.get_mut(&g.gid) {
                // (A retained state of a group that left and came back
                // under Paxos is not this group's.)
                if stayed.contains(&g.gid) && g.mode == ReplicationMode::PrimaryBackup {
                    pb.grow(g.servers.len());
                }
            }
        }
        // The view service follows every primary/backup group that ever
        // joined: a joining one starts at view 1. One that leaves keeps its
        // views: it still hands its shards off and deletes them through its
        // log after the configuration that drops it, and with its views
        // gone a failed replica would stall it there forever (the simulator's
        // mixed world, seed 0). One that joins again continues from its
        // views, since its replicas never go back to a lower view (starting
        // over at view 1 left them ignoring every answer); with another
        // server list it starts afresh above its old view number.
        for g in &groups {
            if g.mode != ReplicationMode::PrimaryBackup {
                continue;
            }
            match self.pb.get(&g.gid) {
                Some(old) if old.servers() == g.servers.len() => {}
                old => {
                    let mut fresh = PbGroup::joined(g);
                    fresh.view.num += old.map_or(0, |o| o.view.num);
                    self.pb.insert(g.gid, fresh);
                }
            }
        }
        let num = self.configs.len() as u64;
        self.configs.push(Config {
            num,
            shards,
            groups,
        });
        Ok(num)
    }

    /// Checks every internal invariant; `assert!`s on a broken one.
    pub fn assert_invariants(&self) {
        if let Err(e) = self.check() {
            panic!("master invariant broken: {e}");
        }
    }

    /// The invariants, as a value: [`Master::restore`] refuses a snapshot
    /// that breaks them instead of panicking.
    fn check(&self) -> Result<(), &'static str> {
        let Some(zero) = self.configs.first() else {
            return Err("no configuration 0");
        };
        if !zero.groups.is_empty() || zero.shards.iter().any(|&g| g != 0) {
            return Err("configuration 0 is not empty");
        }
        for (n, config) in self.configs.iter().enumerate() {
            check_config(config, n, self.opts)?;
        }
        let latest = self.latest();
        let pb_groups: Vec<GroupId> = latest
            .groups
            .iter()
            .filter(|g| g.mode == ReplicationMode::PrimaryBackup)
            .map(|g| g.gid)
            .collect();
        if pb_groups.iter().any(|gid| !self.pb.contains_key(gid)) {
            return Err("a primary/backup group has no view-service state");
        }
        for (gid, state) in &self.pb {
            let ever_pb = self.configs.iter().any(|c| {
                c.groups
                    .iter()
                    .any(|g| g.gid == *gid && g.mode == ReplicationMode::PrimaryBackup)
            });
            if !ever_pb {
                return Err("view-service state of a group that never was primary/backup");
            }
            if let Ok(i) = latest.groups.binary_search_by_key(gid, |g| g.gid) {
                let g = &latest.groups[i];
                if g.mode == ReplicationMode::PrimaryBackup && state.servers() != g.servers.len() {
                    return Err("view-service state has the wrong server count");
                }
            }
            state.check()?;
        }
        for session in self.sessions.values() {
            for (&seq, outcome) in &session.replies {
                if seq <= session.acked {
                    return Err("cached outcome at or below the acknowledged seq");
                }
                if let Ok(num) = outcome {
                    if *num == 0 || *num >= self.configs.len() as u64 {
                        return Err("cached outcome names no created configuration");
                    }
                }
            }
        }
        Ok(())
    }
}

/// The invariants of configuration number `n`: numbered in sequence, one
/// owner per shard, groups valid and sorted by gid, and every shard on a
/// live group once any group exists (gid 0 only while none does).
fn check_config(config: &Config, n: usize, opts: MasterOptions) -> Result<(), &'static str> {
    if config.num != n as u64 {
        return Err("configuration numbers are not consecutive");
    }
    if config.shards.len() != opts.shards as usize {
        return Err("configuration has the wrong shard count");
    }
    if config.groups.len() > GROUPS_MAX {
        return Err("configuration has too many groups");
    }
    if !config.groups.windows(2).all(|w| w[0].gid < w[1].gid) {
        return Err("groups not sorted by gid");
    }
    for g in &config.groups {
        check_group(g).map_err(|_| "configuration holds an invalid group")?;
    }
    let live = |gid: GroupId| config.groups.binary_search_by_key(&gid, |g| g.gid).is_ok();
    let placed = if config.groups.is_empty() {
        config.shards.iter().all(|&g| g == 0)
    } else {
        config.shards.iter().all(|&g| live(g))
    };
    if !placed {
        return Err("a shard is not on a live group (or on one with no groups)");
    }
    Ok(())
}

fn gids(groups: &[GroupInfo]) -> Vec<GroupId> {
    groups.iter().map(|g| g.gid).collect()
}

/// A group as a configuration may hold it. Refusal reasons are returned
/// rather than asserted because the group came from a client.
fn check_group(g: &GroupInfo) -> Result<(), String> {
    if g.gid == 0 {
        return Err("gid 0 is reserved (it means \"no group\")".to_string());
    }
    if g.servers.is_empty() {
        return Err(format!("group {} has no servers", g.gid));
    }
    if g.servers.len() > SERVERS_PER_GROUP_MAX {
        return Err(format!(
            "group {} has {} servers (at most {SERVERS_PER_GROUP_MAX})",
            g.gid,
            g.servers.len()
        ));
    }
    for s in &g.servers {
        if s.is_empty() || s.len() > ADDRESS_BYTES_MAX {
            return Err(format!(
                "group {} has an empty or over-long server address",
                g.gid
            ));
        }
    }
    if (g.added | g.removed) & !g.all_ids() != 0 {
        return Err(format!("group {} marks an id it does not list", g.gid));
    }
    if g.members() == 0 || g.founders() == 0 {
        return Err(format!("group {} has no members or no founders", g.gid));
    }
    Ok(())
}

/// The group `gid` of `groups`, for a membership change named `op`.
fn member_change<'a>(
    groups: &'a mut [GroupInfo],
    gid: GroupId,
    op: &str,
) -> Result<&'a mut GroupInfo, String> {
    let g = groups
        .iter_mut()
        .find(|g| g.gid == gid)
        .ok_or_else(|| format!("{op}: group {gid} is not in the configuration"))?;
    Ok(g)
}

impl Master {
    /// A primary/backup group may lose replica `id` only if another member
    /// is known to hold every acknowledged write (else those writes would
    /// be lost with it, or the group could never serve again).
    fn check_pb_removal(&self, g: &GroupInfo, id: usize, op: &str) -> Result<(), String> {
        match self.pb.get(&g.gid) {
            Some(pb) if !pb.may_remove(id, g.members()) => Err(format!(
                "{op}: {} (replica {id}) is the only member of primary/backup group {} known \
                 to hold every acknowledged write; wait until another member is in its view \
                 (synod admin status: backup)",
                g.servers[id], g.gid
            )),
            _ => Ok(()),
        }
    }
}

/// The replica id of `addr` in `g`, which must be a member now.
fn member_id(g: &GroupInfo, addr: &str, op: &str) -> Result<usize, String> {
    match g.servers.iter().position(|s| s == addr) {
        Some(id) if g.is_member(id) => Ok(id),
        Some(id) => Err(format!(
            "{op}: {addr} (replica {id}) was already removed from group {}",
            g.gid
        )),
        None => Err(format!(
            "{op}: {addr} is not a member of group {} (members: {})",
            g.gid,
            g.member_servers()
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Appends `addr` to `g` with the next replica id, marked added. A listed
/// address is refused even if it was removed: its old id's votes may still
/// be on that server's disk, and an id must name one acceptor only.
fn append_server(g: &mut GroupInfo, addr: &str, op: &str) -> Result<(), String> {
    if addr.is_empty() || addr.len() > ADDRESS_BYTES_MAX {
        return Err(format!(
            "{op}: the new address is empty or longer than {ADDRESS_BYTES_MAX} bytes"
        ));
    }
    if let Some(id) = g.servers.iter().position(|s| s == addr) {
        let state = if g.is_member(id) { "is" } else { "was" };
        return Err(format!(
            "{op}: {addr} {state} already replica {id} of group {}; replica ids are never \
             reused, so a new member needs an address (host:port) the group never listed",
            g.gid
        ));
    }
    if g.servers.len() >= SERVERS_PER_GROUP_MAX {
        return Err(format!(
            "{op}: group {} has listed {SERVERS_PER_GROUP_MAX} servers over its life (the \
             most a group may; removed ones keep their ids)",
            g.gid
        ));
    }
    g.added |= 1u64 << g.servers.len();
    g.servers.push(addr.to_string());
    Ok(())
}

fn check_address_bytes(groups: &[GroupInfo], op: &str) -> Result<(), String> {
    let address_bytes: usize = groups
        .iter()
        .flat_map(|g| &g.servers)
        .map(String::len)
        .sum();
    if address_bytes > CONFIG_ADDRESS_BYTES_MAX {
        return Err(format!(
            "{op}: the configuration would list {address_bytes} bytes of server \
             addresses (at most {CONFIG_ADDRESS_BYTES_MAX})"
        ));
    }
    Ok(())
}

fn check_join(latest: &Config, groups: &[GroupInfo]) -> Result<(), String> {
    if groups.is_empty() {
        return Err("join: no groups given".to_string());
    }
    let mut seen = BTreeSet::new();
    for g in groups {
        check_group(g).map_err(|e| format!("join: {e}"))?;
        if g.changed() {
            return Err(format!(
                "join: group {} names added or removed members; a group joins with \
                 every listed server a member",
                g.gid
            ));
        }
        if !seen.insert(g.gid) {
            return Err(format!("join: group {} listed twice", g.gid));
        }
        if latest.groups.iter().any(|old| old.gid == g.gid) {
            return Err(format!("join: group {} already joined", g.gid));
        }
    }
    if latest.groups.len() + groups.len() > GROUPS_MAX {
        return Err(format!("join: more than {GROUPS_MAX} groups"));
    }
    let address_bytes: usize = latest
        .groups
        .iter()
        .chain(groups)
        .flat_map(|g| &g.servers)
        .map(String::len)
        .sum();
    if address_bytes > CONFIG_ADDRESS_BYTES_MAX {
        return Err(format!(
            "join: the configuration would list {address_bytes} bytes of server \
             addresses (at most {CONFIG_ADDRESS_BYTES_MAX})"
        ));
    }
    Ok(())
}

fn check_leave(latest: &Config, leaving: &[GroupId]) -> Result<(), String> {
    if leaving.is_empty() {
        return Err("leave: no groups given".to_string());
    }
    let mut seen = BTreeSet::new();
    for &gid in leaving {
        if !seen.insert(gid) {
            return Err(format!("leave: group {gid} listed twice"));
        }
        if !latest.groups.iter().any(|g| g.gid == gid) {
            return Err(format!("leave: group {gid} is not in the configuration"));
        }
    }
    Ok(())
}
