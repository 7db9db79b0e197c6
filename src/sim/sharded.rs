//! The sharded world: the master group plus several KV groups of replicas,
//! admin joins, leaves and moves through the master's log, shards migrating
//! between groups over the simulated network — under drops, duplicates,
//! delays, partitions and crashes, with every checker on.
//!
//! Node `i` is replica `i % 3` of group `i / 3`; group 0 is the master group.
//! Groups learn configurations the way the runtime does, minus the query
//! round trip: from the committed state of the most advanced master replica
//! (what a successful Query returns). Everything else — client requests,
//! admin requests, Paxos traffic, shard pulls and deletes — crosses the
//! faulty network.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use std::time::Duration;

use synod_wire::{
    Batch, ClientReply, Config, GroupId, GroupInfo, MasterOp, MasterRequest, Message, PaxosMsg,
    PbMsg, ReplicaId, ReplicationMode, Slot,
};

use super::client::{Actions as ClientActions, Client, KeySpace};
use super::timeline::{self, Simulated, Timeline};
use super::{Micros, MS};
use crate::check::{check_kv, CheckOptions, CheckResult, KvOp};
use crate::kv::KvOptions;
use crate::master::{MasterMachine, MasterOptions};
use crate::paxos::{Durable, Ready, Record, Synced};
use crate::pb::{PbBugs, PbDurable, PbReplica, SnapshotWrite};
use crate::replica::{Replica, ReplicaConfig};
use crate::rng::Rng;
use crate::shardkv::migrator::{serve_delete, serve_pull, serve_resolve, Action, Migrator};
use crate::shardkv::{GroupCommand, ShardKv};

const REPLICAS: u32 = 3;

/// How long `ShardedConfig::crash_pulled_member` keeps the member down:
/// well past the migrator's answer timeout and retry interval.
pub const PULLED_MEMBER_DOWN: Micros = 5_000 * MS;

/// What one sharded world looks like.
#[derive(Clone, Debug)]
pub struct ShardedConfig {
    pub seed: u64,
    pub kv_groups: u32,
    pub shards: u32,
    pub clients: usize,
    pub keys: usize,
    pub fault_phase: Micros,
    pub liveness_bound: Micros,
    pub faults: bool,
    pub bugs: crate::shardkv::ShardBugs,
    /// Every KV replica's migration chunk budget: tiny, so a shard of a
    /// few short keys moves in several chunks (and its sessions, when they
    /// do not fit beside the last records, in a chunk of their own).
    pub migrate_chunk_bytes: usize,
    /// Session TTL (virtual ms of log time) and per-shard cap of every KV
    /// replica: see `sim::session_limits_for_seed`.
    pub session_ttl_ms: u64,
    pub sessions_per_shard_max: usize,
    /// Crash the member of the source group that the first shard pull is
    /// sent to, while the pull is outstanding, and restart it only
    /// [`PULLED_MEMBER_DOWN`] later: the shard arrives before that only if
    /// the puller moves on to another member
    /// (`ShardedReport::moved_past_crashed_member`).
    pub crash_pulled_member: bool,
    /// Bank accounts (issue 10; 0: none): besides their KV ops, clients run
    /// audit and transfer transactions on accounts that share one shard,
    /// checked by `check::bank` (every audit sees the same total).
    pub bank_accounts: usize,
    /// Keep every account in one shard (so one group, no two-phase
    /// commit); otherwise the accounts lie in different shards, and so
    /// mostly in different groups (two-phase commit across them).
    pub bank_one_group: bool,
    /// Planted bug `KvOptions::planted_txn_ignore_compares`.
    pub txn_ignore_compares: bool,
    /// Planted bug `KvOptions::planted_txn_early_release`.
    pub txn_early_release: bool,
    /// Planted bug `KvOptions::planted_txn_unlocked_reads`.
    pub txn_unlocked_reads: bool,
    /// Planted bug `KvOptions::planted_txn_forget_prepared`.
    pub txn_forget_prepared: bool,
    /// Clients that die or stall mid-transaction (during the fault phase):
    /// right after sending its prepares a client may die (its session is
    /// gone; a fresh client with a new id takes its place) or stall for
    /// 1-2.5x [`ShardedConfig::txn_resolve_after`] (nothing received or
    /// sent: a GC pause, a SIGSTOP; only transfers, whose prepares write),
    /// and right after sending a decision
    /// it may die. Their locks must still go (presumed abort), and a
    /// stalled client's late commit must not win over an abort.
    pub client_deaths: bool,
    /// Every KV node's recovery timeout (`Migrator::resolve_after`).
    pub txn_resolve_after: Duration,
    /// List-append keys (0: none): besides their other work, clients run
    /// transactions of 1-4 appends and reads on these keys, each key in a
    /// shard of its own while shards last (so most transactions span
    /// groups), and the whole history is checked by `check::elle` at the
    /// end (dependency cycles, real-time order, aborted and intermediate
    /// reads).
    pub append_keys: usize,
    /// The KV groups replicated by primary/backup (issue 12; empty: all
    /// Paxos), under the same master as the Paxos ones: the admin joins
    /// them with `ReplicationMode::PrimaryBackup`, their replicas ping the
    /// master group for views (master requests through its log, as the
    /// runtime's do), and shards move between them and Paxos groups
    /// through the same migrator. See [`ShardedConfig::mixed`].
    pub pb_groups: Vec<GroupId>,
    /// Servers of each primary/backup group: 2 (f + 1 for f = 1; the
    /// group's third node slot stays empty) or 3.
    pub pb_servers: u32,
    /// Planted bugs of every primary/backup replica.
    pub pb_bugs: PbBugs,
    /// Read leases in every Paxos group (the master's and the KV
    /// groups'), on drifting clocks (`SimConfig::lease`). Own RNG; off by
    /// default, so the pinned seeds keep their trajectories.
    pub lease: bool,
}

impl ShardedConfig {
    pub fn new(seed: u64) -> ShardedConfig {
        ShardedConfig {
            seed,
            kv_groups: 3,
            shards: 8,
            clients: 5,
            keys: 12,
            fault_phase: 8_000 * MS,
            liveness_bound: 20_000 * MS,
            faults: true,
            bugs: crate::shardkv::ShardBugs::default(),
            // 1 byte: one record per chunk; 64: a few; 512: often the whole
            // shard in one chunk with its sessions.
            migrate_chunk_bytes: [1, 64, 512][(seed % 3) as usize],
            session_ttl_ms: super::session_limits_for_seed(seed / 3).0,
            sessions_per_shard_max: super::session_limits_for_seed(seed / 3).1,
            crash_pulled_member: false,
            bank_accounts: 0,
            bank_one_group: false,
            txn_ignore_compares: false,
            txn_early_release: false,
            txn_unlocked_reads: false,
            txn_forget_prepared: false,
            client_deaths: false,
            txn_resolve_after: Duration::from_millis(1_000),
            append_keys: 0,
            pb_groups: Vec::new(),
            pb_servers: 3,
            pb_bugs: PbBugs::default(),
            lease: false,
        }
    }

    /// The mixed world `synod-sim --world mixed` and the tests run for a
    /// seed: the sharded world where one or two of the three KV groups
    /// (which, from the seed) are primary/backup groups, of 2 servers on
    /// half the seeds and 3 on the others.
    pub fn mixed(seed: u64) -> ShardedConfig {
        let mut cfg = ShardedConfig::new(seed);
        let mut rng = Rng::new(seed ^ 0x000B_1CED);
        let mut gids: Vec<GroupId> = (1..=cfg.kv_groups).collect();
        for i in (1..gids.len()).rev() {
            let j = rng.range(0, i as u64 + 1) as usize;
            gids.swap(i, j);
        }
        let n = 1 + rng.range(0, 2) as usize;
        cfg.pb_groups = gids[..n].to_vec();
        cfg.pb_groups.sort_unstable();
        cfg.pb_servers = if rng.chance(0.5) { 2 } else { 3 };
        cfg
    }

    fn is_pb(&self, gid: GroupId) -> bool {
        self.pb_groups.contains(&gid)
    }

    /// Servers of group `gid` (the master group's, a Paxos group's, a
    /// primary/backup group's).
    fn group_size(&self, gid: GroupId) -> u32 {
        if self.is_pb(gid) {
            self.pb_servers
        } else {
            REPLICAS
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ShardedReport {
    pub seed: u64,
    pub failures: Vec<String>,
    pub ops_completed: u64,
    pub configs: u64,
    /// Shard transfers whose last chunk reached the new owner's leader.
    pub shards_moved: u64,
    /// Chunks that reached a new owner's leader (every transfer has one
    /// or more; retries count again).
    pub chunks_received: u64,
    /// Times a puller or deleter moved on to another member of the group
    /// it asked (no answer, a refusal, a leader hint).
    pub rotations: u64,
    /// With `crash_pulled_member`: the shard whose pull was outstanding at
    /// the crashed member arrived whole while that member was still down.
    pub moved_past_crashed_member: bool,
    pub crashes: u64,
    /// Value bytes held at the end by every group (each group's most
    /// advanced replica), and by the owners of the shards only: equal when
    /// garbage collection left nothing behind.
    pub stored_value_bytes: u64,
    pub owned_value_bytes: u64,
    /// Writes answered `SessionExpired` (their outcome unknown; the client
    /// went on under a fresh id).
    pub session_expired: u64,
    /// Bank audits that passed and transfers that committed.
    pub bank_audits: u64,
    pub bank_transfers: u64,
    /// Two-phase commit attempts (transactions across groups), and the
    /// aborted ones among them (lock conflicts, WrongGroup), all retried.
    pub two_pc: u64,
    pub two_pc_aborts: u64,
    /// With `client_deaths`: clients that died mid-transaction, and clients
    /// that stalled.
    pub client_deaths: u64,
    pub client_stalls: u64,
    /// Prepared parts resolved at their coordinator by a participant's
    /// leader, and presumed aborts a coordinator's leader proposed for its
    /// own part; commits that lost to a presumed abort (the client then
    /// retried).
    pub txn_resolved: u64,
    pub txn_self_aborts: u64,
    pub presumed_aborts_seen: u64,
    /// List-append transactions checked by `check::elle`: committed, of
    /// unknown outcome, and the dependency edges inferred among them.
    pub elle_committed: u64,
    pub elle_unknown: u64,
    pub elle_edges: u64,
    /// Primary/backup groups: the highest view number any of their
    /// replicas adopted, summed over the groups, and the state transfers
    /// their live replicas installed.
    pub pb_views: u64,
    pub pb_transfers: u64,
    /// State-transfer chunks their live replicas sent.
    pub pb_transfer_chunks: u64,
    /// Pings of primary/backup replicas the master group answered with a
    /// view.
    pub pb_view_replies: u64,
    /// Shard transfers whose last chunk reached a primary/backup group's
    /// primary from a Paxos group, and a Paxos group's leader from a
    /// primary/backup group.
    pub moved_paxos_to_pb: u64,
    pub moved_pb_to_paxos: u64,
}

impl ShardedReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[allow(clippy::large_enum_variant)] // one per simulated node
enum Hosted {
    Master(Replica<MasterMachine>),
    Kv(Replica<ShardKv>),
    /// A replica of a primary/backup KV group: the same `ShardKv`, driven
    /// by `PbReplica` (the runtime's `Hosted::Pb`).
    Pb(PbReplica<ShardKv>),
}

impl Hosted {
    /// A Paxos replica's ready (`None` for a primary/backup one, which
    /// `ShardedWorld::drive_pb` drives).
    fn ready(&mut self) -> Option<Ready> {
        match self {
            Hosted::Master(r) => Some(r.ready()),
            Hosted::Kv(r) => Some(r.ready()),
            Hosted::Pb(_) => None,
        }
    }

    /// The KV state of a KV replica (either kind), with how far it applied.
    fn kv(&self) -> Option<(Slot, &ShardKv)> {
        match self {
            Hosted::Kv(r) => Some((r.paxos().applied_upto(), r.state())),
            Hosted::Pb(r) => Some((r.applied(), r.state())),
            Hosted::Master(_) => None,
        }
    }

    /// Does it take proposals: the Paxos leader, the serving primary?
    fn leads(&self) -> bool {
        match self {
            Hosted::Kv(r) => r.is_leader(),
            Hosted::Pb(r) => r.serving(),
            Hosted::Master(_) => false,
        }
    }

    /// Propose a migration step (if it leads; a refusal is what a lost
    /// proposal is: the migrator retries).
    fn propose(&mut self, cmd: Bytes) {
        let _ = match self {
            Hosted::Kv(r) if r.is_leader() => r.propose(cmd),
            Hosted::Pb(r) if r.serving() => r.propose(cmd),
            _ => return,
        };
    }
}

struct Node {
    replica: Option<Hosted>,
    disk: Durable,
    rng: Rng,
    epoch: u64,
    flush_scheduled: bool,
    next_apply: Slot,
    /// The node's shard migrator (the runtime's, one per node here); a
    /// crash loses it.
    migrator: Migrator,
    /// Restart this node only by `Event::Restart` (see
    /// `ShardedConfig::crash_pulled_member`).
    held_down: bool,
    /// A primary/backup replica's durable image (what `disk` is to a
    /// Paxos one): a restart recovers from it.
    pb_disk: PbDurable,
    /// Pings to the view service: the master server they go to (moved
    /// on by `NotLeader` hints, refusals and silence, as the runtime's),
    /// and how many went unanswered since the last answer.
    ping_master: usize,
    pings_unanswered: u32,
    /// This node's clock (`ShardedConfig::lease`).
    clock: super::DriftClock,
}

#[derive(Debug)]
pub(crate) enum Event {
    Paxos {
        to: usize,
        msg: PaxosMsg,
    },
    /// Between the replicas of a primary/backup group.
    Pb {
        to: usize,
        msg: PbMsg,
    },
    /// A client, admin or migration request to node `to`.
    Request {
        to: usize,
        reply_to: u64,
        msg: Message,
    },
    /// An answer to client `client` (or, for `client == MIGRATION`, to
    /// node `reply_to >> 48`'s migrator, request `reply_to & ID_MASK`).
    Reply {
        client: usize,
        reply_to: u64,
        msg: Message,
    },
    Tick {
        node: usize,
        epoch: u64,
    },
    Flush {
        node: usize,
        epoch: u64,
    },
    /// A snapshot write a replica asked for is durable, unless the node
    /// crashed since (`epoch`): then it was lost.
    SnapshotDone {
        node: usize,
        epoch: u64,
        index: Slot,
        data: Bytes,
    },
    /// A primary/backup replica's local snapshot file is durable, unless
    /// the node crashed since (`epoch`): then it was lost.
    PbSnapshotDone {
        node: usize,
        epoch: u64,
        write: SnapshotWrite,
    },
    ClientWake {
        client: usize,
        token: u64,
    },
    Admin,
    /// A migration step proposed (again) late by node `node`'s replica,
    /// if it is still that incarnation and still leads.
    LatePropose {
        node: usize,
        epoch: u64,
        cmd: Bytes,
    },
    Chaos,
    Heal,
    /// The end of `ShardedConfig::crash_pulled_member`'s outage.
    Restart {
        node: usize,
    },
}

/// Client deaths, and stalls, per run at most (`client_deaths`).
const CLIENT_DEATHS_MAX: u64 = 5;
const CLIENT_STALLS_MAX: u64 = 10;

/// Reply routing tag for answers to migration requests.
const MIGRATION: usize = usize::MAX;
/// Reply routing tags for answers to the admin's master requests, and to
/// primary/backup replicas' pings (`reply_to`'s low bits: the node), in
/// `Event::Reply::client`; above bit 40 of `reply_to` in the request.
const ADMIN: usize = usize::MAX - 1;
const PING: usize = usize::MAX - 2;
const ADMIN_TAG: u64 = 0xFFFF;
const PING_TAG: u64 = 0xFFFE;
/// Unanswered pings after which a primary/backup replica's pings go to
/// the next master server (the runtime's `PING_ANSWER_TIMEOUT`, in pings).
const PINGS_UNANSWERED_MAX: u32 = 3;

/// A migration reply's `reply_to`: the asking node above bit 48, the
/// migrator's request id below (which starts at the node's epoch << 32, so
/// an answer to an earlier incarnation matches nothing).
const ID_MASK: u64 = (1 << 48) - 1;

/// The admin: one master request at a time.
struct Admin {
    seq: u64,
    current: Option<(MasterRequest, usize, Micros)>,
}

pub struct ShardedWorld {
    cfg: ShardedConfig,
    rng: Rng,
    time: Timeline<Event>,
    nodes: Vec<Node>,
    cut: Vec<Vec<bool>>,
    drop_p: f64,
    dup_p: f64,
    delay_max: Micros,
    healed: bool,
    clients: Vec<Client>,
    admin: Admin,
    history: Vec<KvOp>,
    chosen: BTreeMap<(GroupId, Slot), Batch>,
    /// `crash_pulled_member` has crashed this node, with a pull of this
    /// shard of this configuration outstanding at it.
    pulled_member_crashed: Option<(usize, u32, u64)>,
    report: ShardedReport,
    /// The last client id handed out on a renewal.
    next_client_id: u64,
    /// Per client: stalled (receives and sends nothing) until then.
    stalled_until: Vec<Micros>,
    /// The last ping sequence number (pings keep no session at the
    /// master; unique numbers keep them from looking like retries).
    ping_seq: u64,
}

pub fn run_sharded(cfg: &ShardedConfig) -> ShardedReport {
    let mut w = ShardedWorld::new(cfg.clone());
    let end = w.run_end();
    timeline::run(&mut w, end);
    w.finish()
}

fn gid_of(node: usize) -> GroupId {
    (node / REPLICAS as usize) as GroupId
}
fn node_of(gid: GroupId, idx: u32) -> usize {
    gid as usize * REPLICAS as usize + idx as usize
}
fn servers(gid: GroupId, size: u32) -> Vec<String> {
    (0..size).map(|i| format!("g{gid}r{i}")).collect()
}

impl Simulated for ShardedWorld {
    type Event = Event;
    fn timeline(&mut self) -> &mut Timeline<Event> {
        &mut self.time
    }
    fn handle(&mut self, ev: Event) {
        if let Event::Paxos { to: i, .. }
        | Event::Request { to: i, .. }
        | Event::Tick { node: i, .. }
        | Event::Flush { node: i, .. }
        | Event::SnapshotDone { node: i, .. }
        | Event::LatePropose { node: i, .. } = &ev
        {
            // Whatever a node does now it does at its clock's time.
            let n = &mut self.nodes[*i];
            let clock = n.clock.read(self.time.now);
            match n.replica.as_mut() {
                Some(Hosted::Master(r)) => r.set_clock(clock),
                Some(Hosted::Kv(r)) => r.set_clock(clock),
                _ => {}
            }
        }
        match ev {
            Event::Paxos { to, msg } => {
                let node = &mut self.nodes[to];
                match node.replica.as_mut() {
                    Some(Hosted::Master(r)) => r.step(msg, &mut node.rng),
                    Some(Hosted::Kv(r)) => r.step(msg, &mut node.rng),
                    Some(Hosted::Pb(_)) | None => return,
                }
                self.after_node_event(to);
            }
            Event::Pb { to, msg } => {
                let Some(Hosted::Pb(r)) = self.nodes[to].replica.as_mut() else {
                    return;
                };
                r.step(msg);
                self.after_node_event(to);
            }
            Event::Request { to, reply_to, msg } => self.on_request(to, reply_to, msg),
            Event::Reply {
                client,
                reply_to,
                msg,
            } => {
                if client == MIGRATION {
                    self.on_migration_reply((reply_to >> 48) as usize, reply_to & ID_MASK, msg);
                } else if client == ADMIN {
                    self.on_admin_reply(reply_to & ((1 << 40) - 1), msg);
                } else if client == PING {
                    self.on_ping_answer((reply_to & ((1 << 40) - 1)) as usize, msg);
                } else if !self.clients[client].dead && self.stalled_until[client] <= self.time.now
                {
                    // A dead or stalled process receives nothing.
                    self.on_client_reply(client, reply_to, msg);
                }
            }
            Event::Tick { node, epoch } => {
                let n = &mut self.nodes[node];
                if n.epoch != epoch {
                    return;
                }
                match n.replica.as_mut() {
                    Some(Hosted::Master(r)) => r.tick(&mut n.rng),
                    Some(Hosted::Kv(r)) => r.tick(&mut n.rng),
                    Some(Hosted::Pb(r)) => r.tick(),
                    None => return,
                }
                let at = self.time.now + n.clock.tick_after(10 * MS);
                self.schedule(at, Event::Tick { node, epoch });
                if (self.time.now / (10 * MS)).is_multiple_of(5) {
                    self.migrate(node);
                }
                self.after_node_event(node);
            }
            Event::Flush { node, epoch } => {
                let n = &mut self.nodes[node];
                if n.epoch != epoch {
                    return;
                }
                n.flush_scheduled = false;
                match n.replica.as_mut() {
                    Some(Hosted::Master(r)) => r.flush(),
                    Some(Hosted::Kv(r)) => r.flush(),
                    Some(Hosted::Pb(r)) => r.flush(),
                    None => return,
                }
                self.drive(node);
            }
            Event::SnapshotDone {
                node,
                epoch,
                index,
                data,
            } => {
                let n = &mut self.nodes[node];
                if n.epoch != epoch {
                    return;
                }
                n.disk.apply(&Record::Snapshot { index, data });
                match n.replica.as_mut() {
                    Some(Hosted::Master(r)) => drop(r.snapshot_durable(index)),
                    Some(Hosted::Kv(r)) => drop(r.snapshot_durable(index)),
                    // A Paxos snapshot's event; a primary/backup replica's
                    // comes as `PbSnapshotDone`.
                    Some(Hosted::Pb(_)) | None => return,
                }
                self.drive(node);
            }
            Event::PbSnapshotDone { node, epoch, write } => {
                let n = &mut self.nodes[node];
                if n.epoch != epoch {
                    return;
                }
                let r = match n.replica.as_mut() {
                    Some(Hosted::Pb(r)) => Some(r),
                    _ => None,
                };
                super::pb::snapshot_written(&mut n.pb_disk, r, &write);
                self.drive(node);
            }
            Event::ClientWake { client, token } => self.client_wake(client, token),
            Event::Admin => self.admin_step(),
            Event::LatePropose { node, epoch, cmd } => {
                if self.nodes[node].epoch != epoch {
                    return;
                }
                if let Some(h) = self.nodes[node].replica.as_mut() {
                    h.propose(cmd);
                }
                self.after_node_event(node);
            }
            Event::Chaos => self.chaos(),
            Event::Restart { node } => {
                self.nodes[node].held_down = false;
                if self.nodes[node].replica.is_none() {
                    self.start_node(node);
                }
            }
            Event::Heal => {
                self.healed = true;
                for row in self.cut.iter_mut() {
                    row.iter_mut().for_each(|c| *c = false);
                }
                self.drop_p = 0.0;
                self.dup_p = 0.0;
                self.delay_max = self.delay_max.min(2_000);
                for i in 0..self.nodes.len() {
                    if self.nodes[i].replica.is_none()
                        && !self.nodes[i].held_down
                        && self.slot_used(i)
                    {
                        self.start_node(i);
                    }
                }
            }
        }
    }
    fn finished(&self) -> bool {
        self.healed
            && self.time.now > self.cfg.fault_phase + 2_000 * MS
            && self.clients.iter().all(|c| c.idle())
            && self.admin.current.is_none()
            && self.converged()
            && self.locks_held().is_empty()
    }
}

impl ShardedWorld {
    fn new(cfg: ShardedConfig) -> ShardedWorld {
        let mut rng = Rng::new(cfg.seed ^ 0x5AD_DED);
        let n = (cfg.kv_groups as usize + 1) * REPLICAS as usize;
        let (drop_p, dup_p) = if cfg.faults {
            (
                rng.range(0, 10) as f64 / 100.0,
                rng.range(0, 5) as f64 / 100.0,
            )
        } else {
            (0.0, 0.0)
        };
        let mut w = ShardedWorld {
            nodes: Vec::new(),
            cut: vec![vec![false; n]; n],
            drop_p,
            dup_p,
            delay_max: if cfg.faults {
                rng.range(500, 10_000)
            } else {
                500
            },
            healed: !cfg.faults,
            clients: Vec::new(),
            admin: Admin {
                seq: 0,
                current: None,
            },
            history: Vec::new(),
            chosen: BTreeMap::new(),
            pulled_member_crashed: None,
            report: ShardedReport {
                seed: cfg.seed,
                ..ShardedReport::default()
            },
            next_client_id: 1 << 20,
            stalled_until: Vec::new(),
            ping_seq: 0,
            time: Timeline::new(),
            rng,
            cfg,
        };
        let cfg_resolve_after = w.cfg.txn_resolve_after;
        let mut clock_rng = super::DriftClock::rng(w.cfg.seed);
        for _ in 0..n {
            let node_rng = w.rng.fork();
            w.nodes.push(Node {
                replica: None,
                disk: Durable::default(),
                rng: node_rng,
                epoch: 0,
                flush_scheduled: false,
                next_apply: 0,
                migrator: Migrator::new().resolving_after(cfg_resolve_after),
                held_down: false,
                pb_disk: PbDurable::default(),
                ping_master: 0,
                pings_unanswered: 0,
                clock: super::DriftClock::draw(&mut clock_rng, w.cfg.lease),
            });
        }
        for i in 0..n {
            if w.slot_used(i) {
                w.start_node(i);
            }
        }
        let bank =
            crate::check::bank::accounts(w.cfg.bank_accounts, w.cfg.shards, w.cfg.bank_one_group);
        let elle = crate::check::bank::spread_keys("list", w.cfg.append_keys, w.cfg.shards, false);
        for c in 0..w.cfg.clients {
            let crng = w.rng.fork();
            let mut keys = KeySpace::append_only(w.cfg.keys as u64);
            keys.bank = bank.clone();
            keys.elle = elle.clone();
            w.clients.push(Client::sharded(
                c,
                servers(0, REPLICAS),
                1000 + c as u64,
                keys,
                crng,
            ));
            w.stalled_until.push(0);
            let at = w.rng.range(500 * MS, 1_000 * MS);
            w.schedule(
                at,
                Event::ClientWake {
                    client: c,
                    token: 0,
                },
            );
        }
        w.schedule(100 * MS, Event::Admin);
        if w.cfg.faults {
            let at = w.rng.range(300 * MS, 1_000 * MS);
            w.schedule(at, Event::Chaos);
            w.schedule(w.cfg.fault_phase, Event::Heal);
        }
        w
    }

    /// Does node slot `i` host a replica (a 2-server primary/backup
    /// group leaves its third slot empty)?
    fn slot_used(&self, i: usize) -> bool {
        (i % REPLICAS as usize) < self.cfg.group_size(gid_of(i)) as usize
    }

    /// A fresh state machine for KV group `gid` (either kind).
    fn new_store(&self, gid: GroupId) -> ShardKv {
        let mut sm = ShardKv::new(
            gid,
            KvOptions {
                shards: self.cfg.shards,
                session_ttl_ms: self.cfg.session_ttl_ms,
                sessions_per_shard_max: self.cfg.sessions_per_shard_max,
                planted_txn_ignore_compares: self.cfg.txn_ignore_compares,
                planted_txn_early_release: self.cfg.txn_early_release,
                planted_txn_unlocked_reads: self.cfg.txn_unlocked_reads,
                planted_txn_forget_prepared: self.cfg.txn_forget_prepared,
                ..KvOptions::default()
            },
        );
        sm.bugs = self.cfg.bugs;
        sm.migrate_chunk_bytes = self.cfg.migrate_chunk_bytes;
        sm
    }

    fn start_node(&mut self, i: usize) {
        assert!(self.slot_used(i), "node {i} hosts nothing");
        let gid = gid_of(i);
        let mut rc = ReplicaConfig::new((i % REPLICAS as usize) as u32, REPLICAS);
        rc.snapshot_log_slots = 30;
        // Snapshots serialized in slices over several turns.
        rc.snapshot_step_bytes = 128;
        rc.paxos.snapshot_chunk_bytes = 1024;
        rc.paxos.window_slots_max = 4;
        rc.clock_interval_ms = 20;
        rc.stamp_reads = crate::replica::StampReads::Off;
        if self.cfg.lease {
            rc.paxos.lease_us = crate::paxos::lease_for(10 * MS, rc.paxos.election_ticks_min);
        }
        let shards = self.cfg.shards;
        let sm = (gid != 0).then(|| self.new_store(gid));
        let pb = self.cfg.is_pb(gid).then(|| {
            let id = (i % REPLICAS as usize) as ReplicaId;
            let mut pc =
                super::pb::pb_config(id, self.cfg.pb_servers, self.cfg.pb_bugs, self.cfg.seed);
            pc.transfer_chunk_bytes = super::pb::transfer_chunk_bytes_for_seed(self.cfg.seed);
            pc
        });
        let node = &mut self.nodes[i];
        let disk = node.disk.clone();
        node.next_apply = disk.snapshot.as_ref().map_or(0, |(s, _)| *s);
        node.replica = Some(match (sm, pb) {
            (None, _) => Hosted::Master(Replica::new(
                rc,
                disk,
                MasterMachine::new(MasterOptions { shards }),
                &mut node.rng,
            )),
            (Some(sm), Some(pc)) => {
                // Recovers from its durable image, as the pb world's
                // replicas and the runtime's do.
                let disk = node.pb_disk.clone();
                node.next_apply = disk.snapshot.as_ref().map_or(0, |(p, _, _)| *p);
                Hosted::Pb(PbReplica::new(pc, disk, sm))
            }
            (Some(sm), None) => Hosted::Kv(Replica::new(rc, disk, sm, &mut node.rng)),
        });
        node.flush_scheduled = false;
        let old = std::mem::replace(
            &mut node.migrator,
            Migrator::with_first_request_id((node.epoch << 32) + 1)
                .resolving_after(self.cfg.txn_resolve_after),
        );
        self.report.rotations += old.stats.rotations;
        self.report.txn_resolved += old.stats.resolved;
        self.report.txn_self_aborts += old.stats.presumed_aborts;
        let epoch = node.epoch;
        let first = self.rng.range(1, 10 * MS);
        self.schedule(self.time.now + first, Event::Tick { node: i, epoch });
        self.drive(i);
    }

    fn schedule(&mut self, at: Micros, ev: Event) {
        self.time.schedule(at, ev);
    }

    fn run_end(&self) -> Micros {
        self.cfg.fault_phase + self.cfg.liveness_bound
    }

    /// The latest configuration committed by the master group.
    fn latest_config(&self) -> Config {
        self.master_state()
            .map(|m| m.master().latest().clone())
            .unwrap_or_default()
    }

    fn master_state(&self) -> Option<&MasterMachine> {
        self.nodes[0..REPLICAS as usize]
            .iter()
            .filter_map(|n| match &n.replica {
                Some(Hosted::Master(r)) => Some(r),
                _ => None,
            })
            .max_by_key(|r| r.paxos().applied_upto())
            .map(|r| r.state())
    }

    fn config_num(&self, num: u64) -> Option<Config> {
        let m = self.master_state()?;
        (m.master().latest().num >= num).then(|| m.master().config(Some(num)).clone())
    }

    /// Every KV group's most advanced replica is at the latest config,
    /// settled. (A primary/backup group that never joined has no views, so
    /// it cannot move: the runtime would not even host it.)
    fn converged(&self) -> bool {
        let latest = self.latest_config().num;
        (1..=self.cfg.kv_groups).all(|gid| {
            self.never_joined_pb(gid)
                || self
                    .kv_state(gid)
                    .is_some_and(|s| s.config().num == latest && s.settled())
        })
    }

    fn never_joined_pb(&self, gid: GroupId) -> bool {
        self.cfg.is_pb(gid)
            && self
                .master_state()
                .is_none_or(|m| m.master().pb_group(gid).is_none())
    }

    /// Prepared (locked, unfinished) transactions per KV group, at each
    /// group's most advanced replica: `(gid, count)` for every group
    /// holding some.
    fn locks_held(&self) -> Vec<(GroupId, usize)> {
        (1..=self.cfg.kv_groups)
            .filter_map(|g| {
                let n = self.kv_state(g)?.store().prepared_count();
                (n > 0).then_some((g, n))
            })
            .collect()
    }

    fn kv_state(&self, gid: GroupId) -> Option<&ShardKv> {
        (0..REPLICAS)
            .filter_map(|i| self.nodes[node_of(gid, i)].replica.as_ref()?.kv())
            .max_by_key(|(applied, _)| *applied)
            .map(|(_, s)| s)
    }

    fn after_node_event(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if !n.flush_scheduled {
            n.flush_scheduled = true;
            let epoch = n.epoch;
            self.schedule(self.time.now + 200, Event::Flush { node: i, epoch });
        }
        self.drive(i);
    }

    fn drive(&mut self, i: usize) {
        if let Some(Hosted::Pb(_)) = self.nodes[i].replica {
            self.drive_pb(i);
            return;
        }
        let gid = gid_of(i);
        loop {
            let node = &mut self.nodes[i];
            let Some(h) = node.replica.as_mut() else {
                return;
            };
            let Some(mut ready) = h.ready() else {
                return;
            };
            if ready.is_empty() {
                return;
            }
            // Chosen batches are applied and answered before the sync, as
            // the runtime does (`Ready::take_chosen`).
            let chosen = match h {
                Hosted::Master(r) => r.advance_chosen(&mut ready),
                Hosted::Kv(r) => r.advance_chosen(&mut ready),
                Hosted::Pb(_) => unreachable!("driven by drive_pb"),
            };
            let early = std::mem::take(&mut ready.before_sync);
            for rec in &ready.records {
                node.disk.apply(rec);
            }
            let out = match h {
                Hosted::Master(r) => r.advance(ready, Synced::after_sync()),
                Hosted::Kv(r) => r.advance(ready, Synced::after_sync()),
                Hosted::Pb(_) => unreachable!("driven by drive_pb"),
            };
            let (messages, replies, snapshot, committed, write) = (
                out.messages,
                out.replies,
                out.installed_snapshot,
                out.committed,
                out.snapshot_write,
            );
            if let Some((index, data)) = write {
                // Written off the loop: durable later, or lost in a crash.
                let epoch = node.epoch;
                let took = self.rng.range(100, 5 * MS + 1);
                self.schedule(
                    self.time.now + took,
                    Event::SnapshotDone {
                        node: i,
                        epoch,
                        index,
                        data,
                    },
                );
            }
            self.check_applied(i, gid, None, &chosen.committed);
            self.check_applied(i, gid, snapshot, &committed);
            for (to, msg) in early.into_iter().chain(messages) {
                let dest = node_of(gid, to);
                self.send(i, dest, Event::Paxos { to: dest, msg });
            }
            self.send_replies(i, chosen.replies);
            self.send_replies(i, replies);
        }
    }

    /// A primary/backup replica's turn: its Appends leave before its
    /// sync (as the runtime's), its records reach its simulated disk, then
    /// what they gate is released: messages to peers, its ping to the
    /// view service, replies.
    fn drive_pb(&mut self, i: usize) {
        let gid = gid_of(i);
        loop {
            let node = &mut self.nodes[i];
            let Some(Hosted::Pb(r)) = node.replica.as_mut() else {
                return;
            };
            let mut ready = r.ready();
            if ready.is_empty() {
                return;
            }
            let early = std::mem::take(&mut ready.before_sync);
            for (to, msg) in early {
                let dest = node_of(gid, to);
                self.send(i, dest, Event::Pb { to: dest, msg });
            }
            let node = &mut self.nodes[i];
            let Some(Hosted::Pb(r)) = node.replica.as_mut() else {
                return;
            };
            let out = super::pb::persist_and_advance(&mut node.pb_disk, r, ready);
            if let Some(write) = out.snapshot_write {
                // Written off the loop: durable later, or lost in a crash.
                let epoch = node.epoch;
                let took = self.rng.range(100, 5 * MS + 1);
                self.schedule(
                    self.time.now + took,
                    Event::PbSnapshotDone {
                        node: i,
                        epoch,
                        write,
                    },
                );
            }
            self.check_applied(i, gid, out.installed_snapshot, &out.committed);
            for (to, msg) in out.messages {
                let dest = node_of(gid, to);
                self.send(i, dest, Event::Pb { to: dest, msg });
            }
            if let Some(view) = out.ping {
                self.send_ping(i, view);
            }
            self.send_replies(i, out.replies);
        }
    }

    /// Replica `i`'s replies go to their clients (or the admin, or a
    /// primary/backup replica's ping: by the tag above bit 40).
    fn send_replies(&mut self, i: usize, replies: Vec<(u64, Message)>) {
        for (reply_to, msg) in replies {
            let client = match reply_to >> 40 {
                ADMIN_TAG => ADMIN,
                PING_TAG => PING,
                c => c as usize,
            };
            self.send(
                i,
                usize::MAX,
                Event::Reply {
                    client,
                    reply_to,
                    msg,
                },
            );
        }
    }

    /// Primary/backup replica `i` pings the view service that it is alive
    /// and ready in `view`: a master request to one master server, which
    /// orders it through the master group's log and answers with the view
    /// (what the runtime's `send_ping` does).
    fn send_ping(&mut self, i: usize, view: u64) {
        let node = &mut self.nodes[i];
        if node.pings_unanswered >= PINGS_UNANSWERED_MAX {
            // Silent: try the next master server.
            node.pings_unanswered = 0;
            node.ping_master += 1;
        }
        node.pings_unanswered += 1;
        let to = node_of(0, (node.ping_master % REPLICAS as usize) as u32);
        self.ping_seq += 1;
        let req = MasterRequest {
            client_id: (1 << 32) + i as u64,
            seq: self.ping_seq,
            ack_seq: 0,
            op: MasterOp::PbPing {
                gid: gid_of(i),
                replica: (i % REPLICAS as usize) as ReplicaId,
                view,
            },
        };
        let reply_to = (PING_TAG << 40) | i as u64;
        self.send(
            i,
            to,
            Event::Request {
                to,
                reply_to,
                msg: Message::Master(req),
            },
        );
    }

    /// The view service answered a ping of replica `i`: the view to the
    /// replica, or a redirect for its next ping (the runtime's
    /// `on_ping_answer`).
    fn on_ping_answer(&mut self, i: usize, msg: Message) {
        let gid = gid_of(i);
        let node = &mut self.nodes[i];
        let Some(Hosted::Pb(r)) = node.replica.as_mut() else {
            return;
        };
        node.pings_unanswered = 0;
        match msg {
            Message::PbView(v) if v.gid == gid => {
                self.report.pb_view_replies += 1;
                r.on_view(&v);
                self.after_node_event(i);
            }
            Message::Reply(ClientReply::NotLeader { leader: Some(l) }) => {
                node.ping_master = l as usize;
            }
            _ => node.ping_master += 1,
        }
    }

    fn delay(&mut self) -> Micros {
        let d = self.rng.range(50, self.delay_max + 1);
        if !self.healed && self.rng.chance(0.02) {
            d * 10
        } else {
            d
        }
    }

    /// Send over the network from node `from` to node `to` (`usize::MAX`:
    /// a client, whose links only suffer drops).
    fn send(&mut self, from: usize, to: usize, ev: Event) {
        if from != usize::MAX && to != usize::MAX && self.cut[from][to] {
            return;
        }
        if self.rng.chance(self.drop_p) {
            return;
        }
        let d = self.delay();
        if self.rng.chance(self.dup_p) {
            let copy = match &ev {
                Event::Paxos { to, msg } => Some(Event::Paxos {
                    to: *to,
                    msg: msg.clone(),
                }),
                Event::Pb { to, msg } => Some(Event::Pb {
                    to: *to,
                    msg: msg.clone(),
                }),
                Event::Request { to, reply_to, msg } => Some(Event::Request {
                    to: *to,
                    reply_to: *reply_to,
                    msg: msg.clone(),
                }),
                _ => None,
            };
            if let Some(c) = copy {
                let d2 = self.delay();
                self.schedule(self.time.now + d2, c);
            }
        }
        self.schedule(self.time.now + d, ev);
    }

    fn on_request(&mut self, to: usize, reply_to: u64, msg: Message) {
        let node = &mut self.nodes[to];
        let Some(h) = node.replica.as_mut() else {
            return;
        };
        match (h, msg) {
            (Hosted::Kv(r), Message::Request(req)) => {
                r.set_now_ms(super::clock_ms(self.time.now));
                r.on_request(reply_to, &req);
                self.after_node_event(to);
            }
            (Hosted::Master(r), Message::Master(req)) => {
                r.on_request(reply_to, &req);
                self.after_node_event(to);
            }
            (Hosted::Kv(r), Message::ShardPull(s)) => {
                let answer = serve_pull(r.state(), &s);
                self.migration_answer(to, reply_to, answer);
            }
            (Hosted::Kv(r), Message::ShardDelete(s)) => {
                let answer = serve_delete(r, &s);
                self.after_node_event(to);
                self.migration_answer(to, reply_to, Message::Reply(answer));
            }
            (Hosted::Kv(r), Message::TxnResolve(txn)) => {
                let answer = serve_resolve(r, txn);
                self.after_node_event(to);
                self.migration_answer(to, reply_to, Message::Reply(answer));
            }
            (Hosted::Pb(r), Message::Request(req)) => {
                r.set_now_ms(super::clock_ms(self.time.now));
                r.on_request(reply_to, &req);
                self.after_node_event(to);
            }
            (Hosted::Pb(r), Message::ShardPull(s)) => {
                let answer = serve_pull(r.state(), &s);
                self.migration_answer(to, reply_to, answer);
            }
            (Hosted::Pb(r), Message::ShardDelete(s)) => {
                let answer = serve_delete(r, &s);
                self.after_node_event(to);
                self.migration_answer(to, reply_to, Message::Reply(answer));
            }
            (Hosted::Pb(r), Message::TxnResolve(txn)) => {
                let answer = serve_resolve(r, txn);
                self.after_node_event(to);
                self.migration_answer(to, reply_to, Message::Reply(answer));
            }
            _ => {}
        }
    }

    // ----- migration: the I/O of the node's `Migrator` -----------------------

    fn migration_answer(&mut self, from: usize, reply_to: u64, msg: Message) {
        self.send(
            from,
            usize::MAX,
            Event::Reply {
                client: MIGRATION,
                reply_to,
                msg,
            },
        );
    }

    fn migrate(&mut self, i: usize) {
        let gid = gid_of(i);
        let now = Duration::from_micros(self.time.now);
        // A primary/backup group moves through configurations and shards
        // the same way, from its serving primary (as in the runtime).
        let next = match &self.nodes[i].replica {
            Some(h) if h.leads() => match h.kv() {
                Some((_, kv)) => self.config_num(kv.config().num + 1),
                None => return,
            },
            _ => return,
        };
        let node = &mut self.nodes[i];
        let Some((_, kv)) = node.replica.as_ref().and_then(|h| h.kv()) else {
            return;
        };
        let actions = node.migrator.poll(gid, kv, next.as_ref(), now);
        for a in actions {
            match a {
                Action::Propose { cmd, .. } => self.propose_migration(i, cmd.encode()),
                Action::Send {
                    request_id,
                    target,
                    member,
                    message,
                    ..
                } => {
                    let to = node_of(target, member as u32);
                    let pull = match &message {
                        Message::ShardPull(p) => Some((p.shard, p.config_num)),
                        _ => None,
                    };
                    self.send(
                        i,
                        to,
                        Event::Request {
                            to,
                            reply_to: ((i as u64) << 48) | request_id,
                            msg: message,
                        },
                    );
                    if let (Some((shard, num)), true, None) = (
                        pull,
                        self.cfg.crash_pulled_member,
                        self.pulled_member_crashed,
                    ) {
                        // The pull is outstanding: its member goes down.
                        self.pulled_member_crashed = Some((to, shard, num));
                        let node = &mut self.nodes[to];
                        node.held_down = true;
                        if node.replica.take().is_some() {
                            node.epoch += 1;
                            self.report.crashes += 1;
                        }
                        self.schedule(
                            self.time.now + PULLED_MEMBER_DOWN,
                            Event::Restart { node: to },
                        );
                    }
                }
            }
        }
    }

    fn propose_migration(&mut self, i: usize, cmd: Bytes) {
        if let Some(h) = self.nodes[i].replica.as_mut() {
            h.propose(cmd);
        }
        self.after_node_event(i);
    }

    fn on_migration_reply(&mut self, node: usize, id: u64, msg: Message) {
        if self.nodes[node].replica.is_none() {
            return;
        }
        let Some((_, cmd)) = self.nodes[node].migrator.on_answer(id, msg) else {
            return;
        };
        if let GroupCommand::InstallChunk {
            done,
            shard,
            config_num,
            ..
        } = &cmd
        {
            self.report.chunks_received += 1;
            self.report.shards_moved += u64::from(*done);
            let from = config_num
                .checked_sub(1)
                .and_then(|n| self.config_num(n))
                .map(|c| c.shards[*shard as usize]);
            if let (true, Some(from)) = (*done, from) {
                match (self.cfg.is_pb(from), self.cfg.is_pb(gid_of(node))) {
                    (false, true) if from != 0 => self.report.moved_paxos_to_pb += 1,
                    (true, false) => self.report.moved_pb_to_paxos += 1,
                    _ => {}
                }
            }
            if let Some((down, s, n)) = self.pulled_member_crashed {
                if *done && (*shard, *config_num) == (s, n) && self.nodes[down].replica.is_none() {
                    self.report.moved_past_crashed_member = true;
                }
            }
        }
        let cmd = cmd.encode();
        // A migration step proposed again later: what the driver's retry does when a
        // pull is answered twice (the first answer slow to commit, or its
        // proposal lost with a leader). The receiver must apply it once.
        if self.cfg.faults && !self.healed && self.rng.chance(0.2) {
            let at = self.time.now + self.rng.range(MS, 500 * MS);
            let epoch = self.nodes[node].epoch;
            self.schedule(
                at,
                Event::LatePropose {
                    node,
                    epoch,
                    cmd: cmd.clone(),
                },
            );
        }
        self.propose_migration(node, cmd);
    }

    // ----- clients ----------------------------------------------------------

    fn client_wake(&mut self, c: usize, token: u64) {
        if self.clients[c].dead {
            return;
        }
        if self.stalled_until[c] > self.time.now {
            // Its timers fire when it runs again.
            let at = self.stalled_until[c];
            self.schedule(at, Event::ClientWake { client: c, token });
            return;
        }
        let stop_new = self.healed && self.time.now > self.cfg.fault_phase + 1_000 * MS;
        let actions = self.clients[c].on_wake(self.time.now, token, stop_new);
        self.client_actions(c, actions);
    }

    fn on_client_reply(&mut self, c: usize, reply_to: u64, msg: Message) {
        let actions = self.clients[c].on_reply(self.time.now, reply_to, msg);
        self.client_actions(c, actions);
    }

    /// Carries out what client `c`'s session asked for.
    fn client_actions(&mut self, c: usize, actions: ClientActions) {
        let is = |m: &Message, prepare: bool| match m {
            Message::Request(r) => {
                matches!(&r.op, synod_wire::Op::TxnPrepare(_)) && prepare
                    || matches!(&r.op, synod_wire::Op::TxnDecide(_)) && !prepare
            }
            _ => false,
        };
        let prepares = actions.send.iter().any(|(_, _, m)| is(m, true));
        let decides = actions.send.iter().any(|(_, _, m)| is(m, false));
        // A transfer (its prepares write): the stall that matters, since a
        // late commit that wins where an abort was presumed tears it.
        let writes = actions.send.iter().any(|(_, _, m)| match m {
            Message::Request(r) => match &r.op {
                synod_wire::Op::TxnPrepare(p) => p
                    .part
                    .success
                    .iter()
                    .any(|op| !matches!(op, synod_wire::Op::Get { .. })),
                _ => false,
            },
            _ => false,
        });
        for (dest, reply_to, msg) in actions.send {
            // Addresses are `servers(gid)`: `g{gid}r{index}`.
            let node = dest
                .addr
                .strip_prefix('g')
                .and_then(|r| r.split_once('r'))
                .and_then(|(g, i)| Some(node_of(g.parse().ok()?, i.parse().ok()?)));
            let Some(to) = node.filter(|&n| n < self.nodes.len()) else {
                self.report.failures.push(format!(
                    "client {c}: request to unknown address {:?}",
                    dest.addr
                ));
                continue;
            };
            self.send(usize::MAX, to, Event::Request { to, reply_to, msg });
        }
        if let Some((after, token)) = actions.wake {
            self.schedule(
                self.time.now + after,
                Event::ClientWake { client: c, token },
            );
        }
        for op in actions.completed {
            self.report.ops_completed += 1;
            self.history.push(op);
        }
        self.report.failures.extend(actions.failures);
        if (prepares || decides) && self.may_fail_client() {
            // Its frames are on the wire; now the process dies or stalls.
            let deaths_left = self.report.client_deaths < CLIENT_DEATHS_MAX;
            if deaths_left
                && ((decides && self.rng.chance(0.03)) || (prepares && self.rng.chance(0.015)))
            {
                self.kill_client(c);
                return;
            }
            if writes && self.report.client_stalls < CLIENT_STALLS_MAX && self.rng.chance(0.1) {
                // Long enough for a participant to ask the coordinator
                // (after `txn_resolve_after`), mostly short enough to come
                // back before the coordinator resolves its own part (2x).
                let wait = self.cfg.txn_resolve_after.as_micros() as Micros;
                let stall = self.rng.range(wait, 5 * wait / 2);
                self.stalled_until[c] = self.time.now + stall;
                self.report.client_stalls += 1;
            }
        }
        if actions.renew_id {
            // Newer than every id handed out so far, so above every
            // shard's expiry floor (which only covers ids already used).
            self.report.session_expired += 1;
            self.next_client_id += 1;
            let more = self.clients[c].set_client_id(self.next_client_id, self.time.now);
            self.client_actions(c, more);
        }
    }

    /// May a client die or stall now? Only with `client_deaths`, during the
    /// fault phase (and a few times per run: the callers count).
    fn may_fail_client(&self) -> bool {
        self.cfg.client_deaths && !self.healed && self.time.now < self.cfg.fault_phase
    }

    /// Client `c`'s process dies; a new one (new client id, new index)
    /// takes its place on the same keys.
    fn kill_client(&mut self, c: usize) {
        let lost = self.clients[c].die();
        self.history.extend(lost);
        self.report.client_deaths += 1;
        self.next_client_id += 1;
        let idx = self.clients.len();
        let keys = self.clients[c].keys().clone();
        let crng = self.rng.fork();
        self.clients.push(Client::sharded(
            idx,
            servers(0, REPLICAS),
            self.next_client_id,
            keys,
            crng,
        ));
        self.stalled_until.push(0);
        let at = self.time.now + self.rng.range(MS, 50 * MS);
        self.schedule(
            at,
            Event::ClientWake {
                client: idx,
                token: 0,
            },
        );
    }

    // ----- the admin ------------------------------------------------------------

    fn admin_step(&mut self) {
        let stop = self.healed && self.time.now > self.cfg.fault_phase;
        if let Some((req, tries, _)) = self.admin.current.as_mut() {
            // Retry the same request (same seq) at the next master.
            *tries += 1;
            let to = node_of(0, (*tries % REPLICAS as usize) as u32);
            let msg = Message::Master(req.clone());
            let reply_to = (ADMIN_TAG << 40) | req.seq;
            self.send(usize::MAX, to, Event::Request { to, reply_to, msg });
        } else if !stop {
            let config = self.latest_config();
            let present: Vec<GroupId> = config.groups.iter().map(|g| g.gid).collect();
            let absent: Vec<GroupId> = (1..=self.cfg.kv_groups)
                .filter(|g| !present.contains(g))
                .collect();
            let op = match self.rng.range(0, 3) {
                _ if present.is_empty() => Some(MasterOp::Join {
                    groups: vec![self.group_info(1)],
                }),
                0 if !absent.is_empty() => {
                    let gid = absent[self.rng.range(0, absent.len() as u64) as usize];
                    Some(MasterOp::Join {
                        groups: vec![self.group_info(gid)],
                    })
                }
                1 if present.len() > 1 => {
                    let gid = present[self.rng.range(0, present.len() as u64) as usize];
                    Some(MasterOp::Leave { gids: vec![gid] })
                }
                _ => {
                    let shard = self.rng.range(0, self.cfg.shards as u64) as u32;
                    let gid = present[self.rng.range(0, present.len() as u64) as usize];
                    Some(MasterOp::Move { shard, gid })
                }
            };
            if let Some(op) = op {
                self.admin.seq += 1;
                let req = MasterRequest {
                    client_id: 1,
                    seq: self.admin.seq,
                    ack_seq: self.admin.seq - 1,
                    op,
                };
                self.admin.current = Some((req, 0, self.time.now));
                self.admin_step();
                return;
            }
        }
        let next = self.rng.range(300 * MS, 1_500 * MS);
        self.schedule(self.time.now + next, Event::Admin);
    }

    /// How the admin joins group `gid`: its servers, in primary/backup
    /// mode if it is one (what `admin join --mode pb` sends).
    fn group_info(&self, gid: GroupId) -> GroupInfo {
        let mut g = GroupInfo::new(gid, servers(gid, self.cfg.group_size(gid)));
        if self.cfg.is_pb(gid) {
            g.mode = ReplicationMode::PrimaryBackup;
        }
        g
    }

    fn on_admin_reply(&mut self, seq: u64, msg: Message) {
        if self.admin.current.as_ref().map(|c| c.0.seq) != Some(seq) {
            return; // an answer to an earlier request
        }
        match msg {
            Message::Config(_) | Message::Reply(ClientReply::Error { .. }) => {
                self.admin.current = None;
                self.report.configs += 1;
            }
            _ => {} // NotLeader, Busy: the retry timer resends
        }
    }

    // ----- faults ---------------------------------------------------------------

    fn chaos(&mut self) {
        if self.healed {
            return;
        }
        let n = self.nodes.len();
        match self.rng.range(0, 8) {
            0 | 1 => {
                let side: Vec<bool> = (0..n).map(|_| self.rng.chance(0.5)).collect();
                for a in 0..n {
                    for b in 0..n {
                        self.cut[a][b] = side[a] != side[b];
                    }
                }
            }
            2 | 3 => {
                let i = self.rng.range(0, n as u64) as usize;
                let node = &mut self.nodes[i];
                if node.replica.take().is_some() {
                    node.epoch += 1;
                    self.report.crashes += 1;
                }
            }
            4 | 5 => {
                let dead: Vec<usize> = (0..n)
                    .filter(|i| {
                        self.nodes[*i].replica.is_none()
                            && !self.nodes[*i].held_down
                            && self.slot_used(*i)
                    })
                    .collect();
                if !dead.is_empty() {
                    let i = dead[self.rng.range(0, dead.len() as u64) as usize];
                    self.start_node(i);
                }
            }
            _ => {
                for row in self.cut.iter_mut() {
                    row.iter_mut().for_each(|c| *c = false);
                }
            }
        }
        let at = self.time.now + self.rng.range(200 * MS, 1_500 * MS);
        self.schedule(at, Event::Chaos);
    }

    // ----- checks -----------------------------------------------------------------

    fn check_applied(
        &mut self,
        i: usize,
        gid: GroupId,
        snapshot: Option<Slot>,
        committed: &[(Slot, Batch)],
    ) {
        let (failures, _, _) = super::checks::applied(
            &mut self.nodes[i].next_apply,
            &mut self.chosen,
            |slot| (gid, slot),
            (snapshot, committed),
            || (format!("node {i} (group {gid})"), format!("group {gid} ")),
        );
        self.report.failures.extend(failures);
    }

    fn finish(mut self) -> ShardedReport {
        let now = self.time.now;
        self.report.rotations += self
            .nodes
            .iter()
            .map(|n| n.migrator.stats.rotations)
            .sum::<u64>();
        for (c, client) in self.clients.iter().enumerate() {
            if let Some((op, call)) = client.outstanding() {
                self.report.failures.push(format!(
                    "liveness: client {c} op {op} called at {}ms still pending at {}ms",
                    call / 1000,
                    now / 1000
                ));
            }
        }
        let pending: Vec<KvOp> = self.clients.iter().flat_map(|c| c.pending_ops()).collect();
        self.history.extend(pending);
        self.report.bank_audits = self.clients.iter().map(|c| c.bank_audits).sum();
        self.report.bank_transfers = self.clients.iter().map(|c| c.bank_transfers).sum();
        self.report.two_pc = self.clients.iter().map(|c| c.two_pc().0).sum();
        self.report.two_pc_aborts = self.clients.iter().map(|c| c.two_pc().1).sum();
        self.report.presumed_aborts_seen = self.clients.iter().map(|c| c.presumed_aborts()).sum();
        self.report.txn_resolved += self
            .nodes
            .iter()
            .map(|n| n.migrator.stats.resolved)
            .sum::<u64>();
        self.report.txn_self_aborts += self
            .nodes
            .iter()
            .map(|n| n.migrator.stats.presumed_aborts)
            .sum::<u64>();
        // Every prepared transaction is decided and finished within the
        // liveness bound after the faults end: no lock is held forever,
        // whether its client finished it, died or stalled.
        for (g, n) in self.locks_held() {
            let parts: Vec<String> = self
                .kv_state(g)
                .map(|s| {
                    s.store()
                        .prepared_parts()
                        .map(|(txn, coordinator, ms)| {
                            format!(
                                "{}.{} (coordinator g{coordinator}, prepared at log time {ms})",
                                txn.client, txn.seq
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            self.report.failures.push(format!(
                "liveness: group {g} still holds {n} prepared transaction(s) (locked keys) \
                 at {}ms, {}ms after the faults ended: {}",
                now / 1000,
                now.saturating_sub(self.cfg.fault_phase) / 1000,
                parts.join(", ")
            ));
        }
        if self.cfg.append_keys > 0 {
            self.check_elle();
        }
        if self.cfg.bank_accounts > 0 && self.report.bank_audits == 0 {
            // A bank run that checked nothing must not pass.
            self.report
                .failures
                .push("bank: no audit completed".to_string());
        }
        if self.admin.current.is_some() {
            self.report
                .failures
                .push("liveness: an admin request never completed".into());
        }
        if !self.converged() {
            let latest = self.latest_config().num;
            let states: Vec<String> = (1..=self.cfg.kv_groups)
                .map(|g| match self.kv_state(g) {
                    Some(s) => {
                        let open: Vec<String> = (0..self.cfg.shards)
                            .filter(|sh| {
                                !matches!(
                                    s.shard_state(*sh),
                                    crate::shardkv::ShardState::Serving
                                        | crate::shardkv::ShardState::NotOwned
                                )
                            })
                            .map(|sh| {
                                format!(
                                    "s{sh}:{:?}(prev owner g{})",
                                    s.shard_state(sh),
                                    s.prev_config().shards[sh as usize]
                                )
                            })
                            .collect();
                        let replicas: Vec<String> = (0..self.cfg.group_size(g))
                            .map(|i| match &self.nodes[node_of(g, i)].replica {
                                Some(Hosted::Pb(r)) => format!(
                                    "r{i}{}:{}/{} (view {:?} highest {} commit {} end {})",
                                    if r.serving() { "*" } else { "" },
                                    r.applied(),
                                    r.state().config().num,
                                    r.view(),
                                    r.highest_view(),
                                    r.commit(),
                                    r.log_end()
                                ),
                                Some(Hosted::Kv(r)) => format!(
                                    "r{i}{}:{}/{} (chosen {} end {} pending {} promised {:?})",
                                    if r.is_leader() { "*" } else { "" },
                                    r.paxos().applied_upto(),
                                    r.state().config().num,
                                    r.paxos().chosen_upto(),
                                    r.paxos().log().end(),
                                    r.paxos().pending_len(),
                                    r.paxos().promised()
                                ),
                                _ => format!("r{i}:down"),
                            })
                            .collect();
                        format!(
                            "g{g}@{} settled={} [{}] replicas {}",
                            s.config().num,
                            s.settled(),
                            open.join(" "),
                            replicas.join(",")
                        )
                    }
                    None => format!("g{g} down"),
                })
                .collect();
            self.report.failures.push(format!(
                "liveness: groups did not converge on configuration {latest}: {}",
                states.join(", ")
            ));
        }
        self.check_pb_groups();
        let history = std::mem::take(&mut self.history);
        match check_kv(&history, &CheckOptions::default()) {
            CheckResult::Linearizable => {}
            other => self
                .report
                .failures
                .push(format!("linearizability: {other:?}")),
        }
        self.check_final_state();
        self.report
    }

    /// The primary/backup world's end-of-run safety checks, per
    /// primary/backup group (`sim::pb::check_states`): no replica asked to
    /// overwrite an entry it applied, equal states at equal applied
    /// points. (Per-position agreement was checked as entries applied.)
    fn check_pb_groups(&mut self) {
        for &gid in &self.cfg.pb_groups {
            let replicas: Vec<(String, &PbReplica<ShardKv>)> = (0..self.cfg.pb_servers)
                .filter_map(|r| match &self.nodes[node_of(gid, r)].replica {
                    Some(Hosted::Pb(p)) => Some((format!("group {gid} replica {r}"), p)),
                    _ => None,
                })
                .collect();
            self.report.pb_views += replicas
                .iter()
                .map(|(_, r)| r.highest_view())
                .max()
                .unwrap_or(0);
            let (transfers, chunks) =
                super::pb::check_states(replicas.into_iter(), &mut self.report.failures);
            self.report.pb_transfers += transfers;
            self.report.pb_transfer_chunks += chunks;
        }
    }

    /// Checks every list-append transaction (`check::elle`), with one more
    /// committed read of every list-append key from its owner's final
    /// state once the groups converged (invoked after every transaction
    /// completed: it must hold every acknowledged append).
    fn check_elle(&mut self) {
        use crate::check::elle::{self, MicroOp, Status, Txn};
        let mut history: Vec<Txn> = self.clients.iter().flat_map(|c| c.elle_history()).collect();
        self.report.elle_committed = history
            .iter()
            .filter(|t| t.status == Status::Committed)
            .count() as u64;
        self.report.elle_unknown = history.len() as u64 - self.report.elle_committed;
        if self.converged() && self.locks_held().is_empty() {
            let config = self.latest_config();
            let now = self.time.now;
            let mut reads = Vec::new();
            for key in crate::check::bank::spread_keys(
                "list",
                self.cfg.append_keys,
                self.cfg.shards,
                false,
            ) {
                let shard = synod_wire::shard_of(&key, self.cfg.shards);
                let Some(state) = self.kv_state(config.shards[shard as usize]) else {
                    continue;
                };
                let list = match state.store().read(&key) {
                    ClientReply::Ok(v) => match super::client::elle_list(&v) {
                        Ok(l) => l,
                        Err(why) => {
                            self.report
                                .failures
                                .push(format!("elle: key {key:?}: {why}"));
                            continue;
                        }
                    },
                    _ => Vec::new(),
                };
                reads.push(MicroOp::Read {
                    key,
                    list: Some(list),
                });
            }
            history.push(Txn {
                client: elle::FINAL_READER,
                invoke: now,
                complete: now,
                status: Status::Committed,
                ops: reads,
            });
        }
        if self.report.elle_committed == 0 {
            // A run that checked nothing must not pass.
            self.report
                .failures
                .push("elle: no list-append transaction committed".to_string());
        }
        let r = elle::check(&history);
        self.report.elle_edges = r.dependency_edges as u64;
        for a in &r.anomalies {
            self.report
                .failures
                .push(format!("elle: {:?}: {}", a.kind, a.message));
        }
    }

    /// Exactly-once appends across moves, and no group keeps data for a
    /// shard it does not own once everything settled (garbage collection).
    fn check_final_state(&mut self) {
        if !self.converged() {
            return;
        }
        let config = self.latest_config();
        let mut seen: HashMap<(usize, u64), usize> = HashMap::new();
        for k in 0..self.cfg.keys {
            let key = format!("k{k}");
            let shard = synod_wire::shard_of(key.as_bytes(), self.cfg.shards);
            let owner = config.shards[shard as usize];
            let Some(state) = self.kv_state(owner) else {
                continue;
            };
            let value = match state.store().read(key.as_bytes()) {
                ClientReply::Ok(v) => v,
                _ => Bytes::new(),
            };
            for tok in value.split(|b| *b == b';').filter(|t| !t.is_empty()) {
                let s = String::from_utf8_lossy(tok);
                if let Some((c, q)) = s.strip_prefix('A').and_then(|r| r.split_once('.')) {
                    if let (Ok(c), Ok(q)) = (c.parse(), q.parse()) {
                        *seen.entry((c, q)).or_default() += 1;
                    }
                }
            }
        }
        for (c, client) in self.clients.iter().enumerate() {
            for super::client::Appended { key, seq, acked } in &client.appends {
                let n = seen.get(&(c, *seq)).copied().unwrap_or(0);
                if n > 1 {
                    self.report.failures.push(format!(
                        "appends: client {c} seq {seq} appears {n} times in {key:?}"
                    ));
                }
                if *acked && n == 0 {
                    self.report.failures.push(format!(
                        "appends: acknowledged append client {c} seq {seq} missing from {key:?}"
                    ));
                }
            }
        }
        let mut leaks = Vec::new();
        let (mut stored, mut owned) = (0, 0);
        for gid in 1..=self.cfg.kv_groups {
            let Some(state) = self.kv_state(gid) else {
                continue;
            };
            for shard in 0..self.cfg.shards {
                let bytes = state.store().shard_stats(shard).value_bytes;
                stored += bytes;
                if config.shards[shard as usize] == gid {
                    owned += bytes;
                }
                if config.shards[shard as usize] != gid && state.store().shard_stats(shard).keys > 0
                {
                    leaks.push(format!(
                        "gc: group {gid} still holds shard {shard}, owned by group {}",
                        config.shards[shard as usize]
                    ));
                }
            }
        }
        self.report.failures.extend(leaks);
        self.report.stored_value_bytes = stored;
        self.report.owned_value_bytes = owned;
    }
}
