//! The primary/backup world (issue 12): one primary/backup group of 2 or 3
//! replicas ([`PbReplica`] over [`ShardKv`], owning every shard: the state
//! machine the server runs), the shard master's view service, and a few
//! clients (the same session core every real client drives), on virtual
//! time, every random choice from one seed.
//!
//! The view service is the master's own state machine ([`Master`], the
//! code a master replica applies its log with) with the group joined in
//! primary/backup mode; the world applies each ping to it in arrival
//! order, as the master group's log would. It runs on one simulated node
//! that is never crashed (the master's own fault tolerance is Paxos's,
//! which the other worlds check), but whose links are cut, delayed and
//! lossy like every other's.
//!
//! Faults through the fault phase: message drop, duplication, delay and
//! reordering; partitions (random halves over the replicas and the master,
//! the primary isolated, the master isolated, swizzle-clog); replica
//! crashes (volatile state lost, the simulated disk kept; with slow disks
//! a crash loses the sync in flight) and restarts; pauses (a replica takes
//! no event for a while, then handles what arrived). Then everything heals
//! and the checkers run: safety (positions applied in order with no hole,
//! one batch per position across replicas, equal states at equal applied
//! points, no backup asked to overwrite an applied entry), linearizability,
//! liveness and exactly-once appends.

use std::collections::{BTreeMap, VecDeque};

use synod_wire::{
    Batch, ClientReply, ClientRequest, GroupInfo, MasterOp, MasterRequest, Message, PbViewReply,
    ReplicaId, ReplicationMode,
};

use super::client::{self, Client};
use super::timeline::{self, Simulated, Timeline};
use super::{checks, clock_ms, Micros, SimReport, MS, SIM_GID};
use crate::check::KvOp;
use crate::kv::KvOptions;
use crate::master::{Answer, Master, MasterOptions};
use crate::paxos::Synced;
use crate::pb::{Output, PbBugs, PbConfig, PbDurable, PbMsg, PbReplica, Pos, Ready, SnapshotWrite};
use crate::rng::Rng;
use crate::shardkv::ShardKv;

/// Every planted bug of the primary/backup world (all off by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PbWorldBugs {
    pub pb: PbBugs,
    /// The view service promotes any live replica when the primary dies.
    pub promote_any: bool,
}

/// What one primary/backup world looks like.
#[derive(Clone, Debug)]
pub struct PbSimConfig {
    pub seed: u64,
    /// 2 or 3 (f + 1 for f = 1 or 2).
    pub replicas: u32,
    pub clients: usize,
    pub mixed_keys: usize,
    pub append_keys: usize,
    pub fault_phase: Micros,
    pub workload_after_heal: Micros,
    pub liveness_bound: Micros,
    pub faults: bool,
    pub tick: Micros,
    pub turn: Micros,
    /// A sync takes a random time up to this (0: instant).
    pub disk_latency_max: Micros,
    pub session_ttl_ms: u64,
    pub sessions_per_shard_max: usize,
    /// State-transfer chunk bytes: tiny on most seeds, so a transfer spans
    /// many chunks that faults can drop, duplicate and reorder.
    pub transfer_chunk_bytes: usize,
    /// Membership changes through the fault phase: the operator replaces,
    /// adds and removes replicas (`MasterOp::Replace`, `AddMember`,
    /// `RemoveMember`) with [`PB_SPARES`] spare nodes to add; a replaced
    /// or removed node is either killed for good (its disk lost) or left
    /// running, removed.
    pub membership: bool,
    pub bugs: PbWorldBugs,
}

/// 64, 256, 1024 or 4096 bytes (a sim state is a few KiB: tens of chunks
/// down to one), or the default 1 MiB (always one chunk), by seed.
pub(super) fn transfer_chunk_bytes_for_seed(seed: u64) -> usize {
    match (seed / 7) % 5 {
        0 => 64,
        1 => 256,
        2 => 1024,
        3 => 4096,
        _ => PbConfig::new(0, 1).transfer_chunk_bytes,
    }
}

impl PbSimConfig {
    pub fn new(seed: u64, replicas: u32) -> PbSimConfig {
        let (ttl, cap) = super::session_limits_for_seed(seed);
        PbSimConfig {
            seed,
            replicas,
            clients: 5,
            mixed_keys: 3,
            append_keys: 2,
            fault_phase: 4_000 * MS,
            workload_after_heal: 1_000 * MS,
            liveness_bound: 10_000 * MS,
            faults: true,
            tick: 10 * MS,
            turn: 200,
            // Slow disks on half the seeds.
            disk_latency_max: if seed % 4 < 2 { 0 } else { 3 * MS },
            session_ttl_ms: ttl,
            sessions_per_shard_max: cap,
            transfer_chunk_bytes: transfer_chunk_bytes_for_seed(seed),
            membership: false,
            bugs: PbWorldBugs::default(),
        }
    }

    /// Node slots: the group's first servers, and the spares of a
    /// membership world (replica ids are slot numbers).
    pub fn slots(&self) -> u32 {
        self.replicas + if self.membership { PB_SPARES } else { 0 }
    }

    /// The world `synod-sim --world pb` and the tests run for a seed: 2
    /// replicas on even seeds, 3 on odd ones unless `replicas` says.
    pub fn for_seed(seed: u64, replicas: Option<u32>) -> PbSimConfig {
        PbSimConfig::new(
            seed,
            replicas.unwrap_or(if seed.is_multiple_of(2) { 2 } else { 3 }),
        )
    }
}

#[derive(Debug)]
enum Event {
    Peer {
        to: ReplicaId,
        msg: PbMsg,
    },
    Request {
        to: ReplicaId,
        reply_to: u64,
        req: ClientRequest,
    },
    Reply {
        client: usize,
        reply_to: u64,
        reply: ClientReply,
    },
    /// A replica's ping reaches the master.
    Ping {
        from: ReplicaId,
        view: u64,
    },
    /// The master's answer reaches a replica.
    ViewReply {
        to: ReplicaId,
        reply: PbViewReply,
    },
    Tick {
        node: ReplicaId,
        epoch: u64,
    },
    Flush {
        node: ReplicaId,
        epoch: u64,
    },
    SyncDone {
        node: ReplicaId,
        epoch: u64,
    },
    /// A local snapshot's file write is durable (written off the loop, so
    /// it lands between turns), unless the node crashed since.
    SnapshotDone {
        node: ReplicaId,
        epoch: u64,
        write: SnapshotWrite,
    },
    ClientWake {
        client: usize,
        token: u64,
    },
    Chaos,
    /// Crash a primary whose new view is not acknowledged yet (a dead
    /// primary during state transfer), unless it restarted since.
    CrashTransferring {
        node: ReplicaId,
        epoch: u64,
    },
    Cut(usize, usize),
    Restore(usize, usize),
    Heal,
}

struct Node {
    replica: Option<PbReplica<ShardKv>>,
    disk: PbDurable,
    epoch: u64,
    flush_scheduled: bool,
    next_apply: Pos,
    syncing: Option<Ready>,
    deferred: VecDeque<Event>,
    /// Takes no event before this time (a pause).
    paused_until: Micros,
    /// The last view this replica started as primary (for
    /// [`Event::CrashTransferring`]).
    primary_of: u64,
    /// Membership worlds: a spare not yet added (never started), or a
    /// replica the group no longer has (never restarted).
    spare: bool,
    retired: bool,
}

/// Spare nodes of a membership world, beyond the group's first servers.
pub const PB_SPARES: u32 = 2;

struct World {
    cfg: PbSimConfig,
    rng: Rng,
    time: Timeline<Event>,
    nodes: Vec<Node>,
    master: Master,
    /// Drop and duplication probabilities, delays; `cut[a][b]` over the
    /// replicas and the master (index `replicas`).
    drop_p: f64,
    dup_p: f64,
    delay_max: Micros,
    cut: Vec<Vec<bool>>,
    clients: Vec<Client>,
    next_client_id: u64,
    history: Vec<KvOp>,
    chosen: BTreeMap<Pos, Batch>,
    healed: bool,
    ping_seq: u64,
    /// The operator's last master request (the join was 1).
    admin_seq: u64,
    views_seen: u64,
    report: SimReport,
}

/// Run one seed's primary/backup world to the end and check it.
pub fn run(cfg: &PbSimConfig) -> SimReport {
    let mut w = World::new(cfg.clone());
    let end = cfg.fault_phase + cfg.liveness_bound;
    timeline::run(&mut w, end);
    w.finish()
}

impl Simulated for World {
    type Event = Event;
    fn timeline(&mut self) -> &mut Timeline<Event> {
        &mut self.time
    }
    fn handle(&mut self, ev: Event) {
        let target = match &ev {
            Event::Peer { to, .. } | Event::Request { to, .. } | Event::ViewReply { to, .. } => {
                Some(*to)
            }
            Event::Tick { node, .. }
            | Event::Flush { node, .. }
            | Event::SnapshotDone { node, .. } => Some(*node),
            _ => None,
        };
        if let Some(id) = target {
            let node = &mut self.nodes[id as usize];
            if node.paused_until > self.time.now {
                let at = node.paused_until;
                self.time.schedule(at, ev);
                return;
            }
            if node.syncing.is_some() {
                node.deferred.push_back(ev);
                return;
            }
        }
        match ev {
            Event::Peer { to, msg } => {
                if let Some(r) = self.nodes[to as usize].replica.as_mut() {
                    r.step(msg);
                    self.after_node_event(to);
                }
            }
            Event::Request { to, reply_to, req } => {
                if let Some(r) = self.nodes[to as usize].replica.as_mut() {
                    r.set_now_ms(clock_ms(self.time.now));
                    r.on_request(reply_to, &req);
                    self.after_node_event(to);
                }
            }
            Event::ViewReply { to, reply } => {
                if let Some(r) = self.nodes[to as usize].replica.as_mut() {
                    r.on_view(&reply);
                    self.after_node_event(to);
                }
            }
            Event::Reply {
                client,
                reply_to,
                reply,
            } => {
                let now = self.time.now;
                let actions = self.clients[client].on_reply(now, reply_to, Message::Reply(reply));
                self.client_actions(client, actions);
            }
            Event::Ping { from, view } => self.ping(from, view),
            Event::Tick { node, epoch } => {
                let n = &mut self.nodes[node as usize];
                if n.epoch != epoch {
                    return;
                }
                if let Some(r) = n.replica.as_mut() {
                    r.tick();
                    let at = self.time.now + self.cfg.tick;
                    self.time.schedule(at, Event::Tick { node, epoch });
                    self.after_node_event(node);
                }
            }
            Event::Flush { node, epoch } => {
                let n = &mut self.nodes[node as usize];
                if n.epoch != epoch {
                    return;
                }
                n.flush_scheduled = false;
                if let Some(r) = n.replica.as_mut() {
                    r.flush();
                    self.drive(node);
                }
            }
            Event::SnapshotDone { node, epoch, write } => {
                let n = &mut self.nodes[node as usize];
                if n.epoch != epoch {
                    return;
                }
                snapshot_written(&mut n.disk, n.replica.as_mut(), &write);
            }
            Event::SyncDone { node, epoch } => {
                if self.nodes[node as usize].epoch != epoch {
                    return;
                }
                if let Some(ready) = self.nodes[node as usize].syncing.take() {
                    self.synced(node, ready);
                }
                self.drive(node);
                loop {
                    let n = &mut self.nodes[node as usize];
                    if n.syncing.is_some() {
                        break;
                    }
                    let Some(ev) = n.deferred.pop_front() else {
                        break;
                    };
                    self.handle(ev);
                }
            }
            Event::ClientWake { client, token } => {
                let now = self.time.now;
                let stop_new =
                    self.healed && now > self.cfg.fault_phase + self.cfg.workload_after_heal;
                let actions = self.clients[client].on_wake(now, token, stop_new);
                self.client_actions(client, actions);
            }
            Event::Chaos => self.chaos(),
            Event::CrashTransferring { node, epoch } => {
                if !self.healed && self.nodes[node as usize].epoch == epoch {
                    self.crash(node as usize);
                }
            }
            Event::Cut(a, b) => {
                if !self.healed {
                    self.cut[a][b] = true;
                    self.cut[b][a] = true;
                }
            }
            Event::Restore(a, b) => {
                self.cut[a][b] = false;
                self.cut[b][a] = false;
            }
            Event::Heal => self.heal(),
        }
    }
    fn finished(&self) -> bool {
        self.healed
            && self.clients.iter().all(|c| c.idle())
            && self.time.now > self.cfg.fault_phase + self.cfg.workload_after_heal + 500 * MS
    }
}

impl World {
    fn new(cfg: PbSimConfig) -> World {
        assert!((1..=8).contains(&cfg.replicas), "replicas out of range");
        let mut rng = Rng::new(cfg.seed ^ 0x5042_5042);
        let n = cfg.slots() as usize;
        let (drop_p, dup_p, delay_max) = if cfg.faults {
            (
                rng.range(0, 15) as f64 / 100.0,
                rng.range(0, 8) as f64 / 100.0,
                rng.range(500, 20_000),
            )
        } else {
            (0.0, 0.0, 500)
        };
        let mut master = Master::new(MasterOptions { shards: 1 });
        if cfg.bugs.promote_any {
            master.plant_promote_any();
        }
        let mut group = GroupInfo::new(SIM_GID, (0..cfg.replicas).map(|r| r.to_string()).collect());
        group.mode = ReplicationMode::PrimaryBackup;
        let joined = master.apply(&MasterRequest {
            client_id: 1,
            seq: 1,
            ack_seq: 0,
            op: MasterOp::Join {
                groups: vec![group],
            },
        });
        assert!(joined.is_ok(), "the world's join is refused: {joined:?}");
        let mut w = World {
            rng,
            time: Timeline::new(),
            nodes: Vec::new(),
            master,
            drop_p,
            dup_p,
            delay_max,
            cut: vec![vec![false; n + 1]; n + 1],
            clients: Vec::new(),
            next_client_id: 1 << 20,
            history: Vec::new(),
            chosen: BTreeMap::new(),
            healed: !cfg.faults,
            ping_seq: 0,
            admin_seq: 1,
            views_seen: 0,
            report: SimReport {
                seed: cfg.seed,
                ..SimReport::default()
            },
            cfg,
        };
        for id in 0..w.cfg.slots() {
            let spare = id >= w.cfg.replicas;
            w.nodes.push(Node {
                replica: None,
                disk: PbDurable::default(),
                epoch: 0,
                flush_scheduled: false,
                next_apply: 0,
                syncing: None,
                deferred: VecDeque::new(),
                paused_until: 0,
                primary_of: 0,
                spare,
                retired: false,
            });
            if !spare {
                w.start_node(id);
            }
        }
        let keys = client::KeySpace::new(w.cfg.mixed_keys, w.cfg.append_keys);
        for c in 0..w.cfg.clients {
            let crng = w.rng.fork();
            w.clients
                .push(Client::new(c, w.cfg.slots(), keys.clone(), crng));
            let at = w.rng.range(0, 50 * MS);
            w.time.schedule(
                at,
                Event::ClientWake {
                    client: c,
                    token: 0,
                },
            );
        }
        if w.cfg.faults {
            let at = w.rng.range(100 * MS, 600 * MS);
            w.time.schedule(at, Event::Chaos);
            w.time.schedule(w.cfg.fault_phase, Event::Heal);
        }
        w
    }

    fn master_index(&self) -> usize {
        self.cfg.slots() as usize
    }

    fn start_node(&mut self, id: ReplicaId) {
        let mut pc = pb_config(id, self.cfg.slots(), self.cfg.bugs.pb, self.cfg.seed);
        pc.transfer_chunk_bytes = self.cfg.transfer_chunk_bytes;
        let opts = KvOptions {
            session_ttl_ms: self.cfg.session_ttl_ms,
            sessions_per_shard_max: self.cfg.sessions_per_shard_max,
            ..KvOptions::default()
        };
        let sm = ShardKv::owning_every_shard(SIM_GID, opts);
        let node = &mut self.nodes[id as usize];
        let disk = node.disk.clone();
        node.next_apply = disk.snapshot.as_ref().map_or(0, |(i, _, _)| *i);
        node.replica = Some(PbReplica::new(pc, disk, sm));
        node.flush_scheduled = false;
        node.paused_until = 0;
        let epoch = node.epoch;
        let first = self.rng.range(1, self.cfg.tick);
        self.time
            .schedule(self.time.now + first, Event::Tick { node: id, epoch });
        self.drive(id);
    }

    fn after_node_event(&mut self, id: ReplicaId) {
        let now = self.time.now;
        let n = &mut self.nodes[id as usize];
        if !n.flush_scheduled {
            n.flush_scheduled = true;
            let epoch = n.epoch;
            let at = now + self.cfg.turn;
            self.time.schedule(at, Event::Flush { node: id, epoch });
        }
        self.drive(id);
    }

    /// Persist, then release.
    fn drive(&mut self, id: ReplicaId) {
        loop {
            let node = &mut self.nodes[id as usize];
            let Some(r) = node.replica.as_mut() else {
                return;
            };
            if node.syncing.is_some() {
                return;
            }
            let mut ready = r.ready();
            if ready.is_empty() {
                return;
            }
            // The primary's Appends leave before its own sync (a crash
            // with the sync in flight loses entries its backups may have).
            for (to, msg) in std::mem::take(&mut ready.before_sync) {
                self.send(id as usize, to as usize, Event::Peer { to, msg });
            }
            if self.cfg.disk_latency_max > 0 && !ready.records.is_empty() {
                let took = self.rng.range(1, self.cfg.disk_latency_max + 1);
                let node = &mut self.nodes[id as usize];
                node.syncing = Some(ready);
                let epoch = node.epoch;
                self.time
                    .schedule(self.time.now + took, Event::SyncDone { node: id, epoch });
                return;
            }
            self.synced(id, ready);
        }
    }

    fn synced(&mut self, id: ReplicaId, ready: Ready) {
        let node = &mut self.nodes[id as usize];
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        let out = persist_and_advance(&mut node.disk, r, ready);
        // A primary starting a view with backups to bring up to date:
        // sometimes it dies while doing so (the lab's "dead primary during
        // state transfer"), the moment a view service that promotes too
        // eagerly would hand the group to a backup without every write.
        let starting = r
            .view()
            .filter(|v| v.primary == id && v.backups != 0 && !r.serving())
            .map(|v| v.num);
        if let Some(num) = starting {
            if num > node.primary_of && !self.healed {
                node.primary_of = num;
                let epoch = node.epoch;
                if self.rng.chance(0.25) {
                    let at = self.time.now + self.rng.range(0, 4 * MS);
                    self.time
                        .schedule(at, Event::CrashTransferring { node: id, epoch });
                }
            }
        }
        if let Some(write) = out.snapshot_write {
            // Written off the loop: durable some time later, or lost in a
            // crash before.
            let took = self.rng.range(1, self.cfg.disk_latency_max.max(MS) * 4);
            let epoch = node.epoch;
            self.time.schedule(
                self.time.now + took,
                Event::SnapshotDone {
                    node: id,
                    epoch,
                    write,
                },
            );
        }
        self.check_applied(id, out.installed_snapshot, &out.committed);
        for (to, msg) in out.messages {
            self.send(id as usize, to as usize, Event::Peer { to, msg });
        }
        if let Some(view) = out.ping {
            let m = self.master_index();
            self.send(id as usize, m, Event::Ping { from: id, view });
        }
        for (reply_to, reply) in out.replies {
            let Message::Reply(reply) = reply else {
                unreachable!("a KV group answers with replies: {reply:?}");
            };
            let client = (reply_to >> 40) as usize;
            if self.rng.chance(self.drop_p) {
                continue;
            }
            let d = self.delay();
            self.time.schedule(
                self.time.now + d,
                Event::Reply {
                    client,
                    reply_to,
                    reply,
                },
            );
        }
    }

    /// The master applies a ping in arrival order (its log's order) and
    /// answers with the view.
    fn ping(&mut self, from: ReplicaId, view: u64) {
        self.ping_seq += 1;
        let req = MasterRequest {
            client_id: (1 << 32) + u64::from(from),
            seq: self.ping_seq,
            ack_seq: 0,
            op: MasterOp::PbPing {
                gid: SIM_GID,
                replica: from,
                view,
            },
        };
        match self.master.execute(&req) {
            Ok(Answer::View(reply)) => {
                if reply.view.num > self.views_seen {
                    self.views_seen = reply.view.num;
                }
                let m = self.master_index();
                self.send(m, from as usize, Event::ViewReply { to: from, reply });
            }
            other => self
                .report
                .failures
                .push(format!("view service: a ping was answered {other:?}")),
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

    /// Send between replicas or a replica and the master (by index).
    fn send(&mut self, from: usize, to: usize, ev: Event) {
        self.report.messages += 1;

        if self.cut[from][to] || self.rng.chance(self.drop_p) {
            return;
        }
        if self.rng.chance(self.dup_p) {
            let copy = match &ev {
                Event::Peer { to, msg } => Some(Event::Peer {
                    to: *to,
                    msg: msg.clone(),
                }),
                Event::Ping { from, view } => Some(Event::Ping {
                    from: *from,
                    view: *view,
                }),
                Event::ViewReply { to, reply } => Some(Event::ViewReply {
                    to: *to,
                    reply: *reply,
                }),
                _ => None,
            };
            if let Some(copy) = copy {
                let d = self.delay();
                self.time.schedule(self.time.now + d, copy);
            }
        }
        let d = self.delay();
        self.time.schedule(self.time.now + d, ev);
    }

    fn client_actions(&mut self, client: usize, actions: client::Actions) {
        for (dest, reply_to, msg) in actions.send {
            let (Ok(to), Message::Request(req)) = (dest.addr.parse::<ReplicaId>(), msg) else {
                continue;
            };
            if self.rng.chance(self.drop_p) {
                continue;
            }
            let d = self.delay();
            self.time
                .schedule(self.time.now + d, Event::Request { to, reply_to, req });
        }
        if let Some((after, token)) = actions.wake {
            self.time
                .schedule(self.time.now + after, Event::ClientWake { client, token });
        }
        for op in actions.completed {
            self.report.ops_completed += 1;
            self.history.push(op);
        }
        self.report.failures.extend(actions.failures);
        if actions.renew_id {
            self.report.session_expired += 1;
            self.next_client_id += 1;
            let more = self.clients[client].set_client_id(self.next_client_id, self.time.now);
            self.client_actions(client, more);
        }
    }

    // ----- faults -----------------------------------------------------------

    fn chaos(&mut self) {
        if self.healed {
            return;
        }
        let n = self.cfg.slots() as usize;
        let kinds = if self.cfg.membership { 18 } else { 12 };
        match self.rng.range(0, kinds) {
            0 => {
                // Random halves over the replicas and the master.
                let side: Vec<bool> = (0..=n).map(|_| self.rng.chance(0.5)).collect();
                self.set_partition(&side);
            }
            1 => {
                // Isolate the primary (from its backups and the master).
                let primary = (0..n)
                    .find(|i| {
                        self.nodes[*i]
                            .replica
                            .as_ref()
                            .is_some_and(|r| r.is_primary())
                    })
                    .unwrap_or_else(|| self.rng.range(0, n as u64) as usize);
                let side: Vec<bool> = (0..=n).map(|i| i == primary).collect();
                self.set_partition(&side);
            }
            2 => {
                // Isolate the master: views stand still.
                let side: Vec<bool> = (0..=n).map(|i| i == n).collect();
                self.set_partition(&side);
            }
            3 => self.swizzle(),
            4 | 5 => {
                let live: Vec<usize> = (0..n)
                    .filter(|i| self.nodes[*i].replica.is_some())
                    .collect();
                if !live.is_empty() {
                    let i = live[self.rng.range(0, live.len() as u64) as usize];
                    self.crash(i);
                }
            }
            6 | 7 => {
                let dead: Vec<usize> = (0..n)
                    .filter(|i| {
                        let node = &self.nodes[*i];
                        node.replica.is_none() && !node.spare && !node.retired
                    })
                    .collect();
                if !dead.is_empty() {
                    let i = dead[self.rng.range(0, dead.len() as u64) as usize];
                    self.start_node(i as ReplicaId);
                }
            }
            8 => {
                // Pause a replica (a long GC or a stopped VM).
                let i = self.rng.range(0, n as u64) as usize;
                let until = self.time.now + self.rng.range(50 * MS, 1_200 * MS);
                self.nodes[i].paused_until = until;
            }
            9 => self.clear_cuts(),
            12..=17 => self.change_membership(),
            _ => {
                self.drop_p = self.rng.range(0, 25) as f64 / 100.0;
                self.dup_p = self.rng.range(0, 10) as f64 / 100.0;
            }
        }
        let at = self.time.now + self.rng.range(100 * MS, 1_200 * MS);
        self.time.schedule(at, Event::Chaos);
    }

    /// The operator changes the group's servers through the master's log
    /// (applied here in order, as the master group would): replace a
    /// member by a spare, add a spare, or remove a member. The master may
    /// refuse (the last member, or the only one known to hold every
    /// acknowledged write). A replica that goes is killed for good (its
    /// disk lost) or, on other changes, left running, removed; an added
    /// spare starts empty.
    fn change_membership(&mut self) {
        let group = self
            .master
            .latest()
            .groups
            .iter()
            .find(|g| g.gid == SIM_GID)
            .expect("the world's group")
            .clone();
        let members: Vec<usize> = group.member_servers().map(|(id, _)| id as usize).collect();
        let spare = (0..self.nodes.len()).find(|&i| self.nodes[i].spare);
        let member = members[self.rng.range(0, members.len() as u64) as usize];
        let addr = |i: usize| i.to_string();
        let (op, gone, added) = match (spare, self.rng.range(0, 3)) {
            (Some(s), 0) => (
                MasterOp::Replace {
                    gid: SIM_GID,
                    old: addr(member),
                    new: addr(s),
                },
                Some(member),
                Some(s),
            ),
            (Some(s), 1) if members.len() < 3 => (
                MasterOp::AddMember {
                    gid: SIM_GID,
                    addr: addr(s),
                },
                None,
                Some(s),
            ),
            _ => (
                MasterOp::RemoveMember {
                    gid: SIM_GID,
                    addr: addr(member),
                },
                Some(member),
                None,
            ),
        };
        self.admin_seq += 1;
        let req = MasterRequest {
            client_id: 1,
            seq: self.admin_seq,
            ack_seq: self.admin_seq - 1,
            op,
        };
        self.report.membership_asked += 1;
        if self.master.execute(&req).is_err() {
            return;
        }
        self.report.membership_chosen += 1;
        if let Some(g) = gone {
            self.nodes[g].retired = true;
            if self.rng.chance(0.5) {
                self.crash(g);
            }
        }
        if let Some(s) = added {
            self.nodes[s].spare = false;
            self.start_node(s as ReplicaId);
        }
    }

    fn set_partition(&mut self, side: &[bool]) {
        for a in 0..side.len() {
            for b in 0..side.len() {
                self.cut[a][b] = side[a] != side[b];
            }
        }
    }

    fn clear_cuts(&mut self) {
        for row in self.cut.iter_mut() {
            row.iter_mut().for_each(|c| *c = false);
        }
    }

    fn swizzle(&mut self) {
        let n = self.cfg.slots() as usize + 1;
        let mut links = Vec::new();
        for a in 0..n {
            if !self.rng.chance(0.5) {
                continue;
            }
            for b in 0..n {
                if a != b {
                    links.push((a, b));
                }
            }
        }
        let mut t = self.time.now;
        for &(a, b) in &links {
            t += self.rng.range(10 * MS, 200 * MS);
            self.time.schedule(t, Event::Cut(a, b));
        }
        for i in (1..links.len()).rev() {
            let j = self.rng.range(0, i as u64 + 1) as usize;
            links.swap(i, j);
        }
        for &(a, b) in &links {
            t += self.rng.range(10 * MS, 300 * MS);
            self.time.schedule(t, Event::Restore(a, b));
        }
    }

    fn crash(&mut self, id: usize) {
        let node = &mut self.nodes[id];
        // A sync in flight never reached the disk.
        node.syncing = None;
        node.deferred.clear();
        if node.replica.take().is_some() {
            node.epoch += 1;
            self.report.crashes += 1;
        }
    }

    fn heal(&mut self) {
        self.healed = true;
        self.clear_cuts();
        self.drop_p = 0.0;
        self.dup_p = 0.0;
        self.delay_max = self.delay_max.min(2_000);
        for id in 0..self.cfg.slots() {
            let node = &mut self.nodes[id as usize];
            node.paused_until = node.paused_until.min(self.time.now);
            if node.replica.is_none() && !node.spare && !node.retired {
                self.start_node(id);
            }
        }
    }

    // ----- checks -----------------------------------------------------------

    fn check_applied(&mut self, id: ReplicaId, snapshot: Option<Pos>, committed: &[(Pos, Batch)]) {
        let (failures, slots, commands) = checks::applied(
            &mut self.nodes[id as usize].next_apply,
            &mut self.chosen,
            |pos| pos,
            (snapshot, committed),
            || (format!("replica {id}"), String::new()),
        );
        self.report.failures.extend(failures);
        self.report.slots_chosen += slots;
        self.report.commands_chosen += commands;
    }

    fn finish(mut self) -> SimReport {
        let now = self.time.now;
        let pending: Vec<KvOp> = self.clients.iter().flat_map(|c| c.pending_ops()).collect();
        let deadline = self.cfg.fault_phase + self.cfg.liveness_bound;
        checks::liveness(&mut self.report, &self.clients, deadline, now);
        let mut history = std::mem::take(&mut self.history);
        history.extend(pending);
        checks::linearizable(&mut self.report, &history);
        let replicas = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((format!("replica {i}"), n.replica.as_ref()?)));
        let (transfers, chunks) = check_states(replicas, &mut self.report.failures);
        self.report.pb_transfers += transfers;
        self.report.pb_transfer_chunks += chunks;
        self.report.pb_views = self.views_seen;
        if self.cfg.membership {
            self.report.members_final = self
                .master
                .latest()
                .groups
                .iter()
                .find(|g| g.gid == SIM_GID)
                .map_or(0, |g| g.members());
        }
        let final_store = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .max_by_key(|r| r.applied());
        if let Some(r) = final_store {
            checks::appends_exactly_once(&mut self.report, &self.clients, r.state().store());
        }
        self.report
    }
}

/// A primary/backup replica's configuration in the simulated worlds (this
/// one and the mixed sharded one) for `seed`: small limits so batching,
/// windows, compaction and state transfer happen often.
pub(super) fn pb_config(id: ReplicaId, servers: u32, bugs: PbBugs, seed: u64) -> PbConfig {
    let mut pc = PbConfig::new(id, servers);
    pc.batch_commands_max = 8;
    pc.append_entries_max = 6;
    pc.window_entries_max = 12;
    pc.snapshot_log_entries = 24;
    // Some seeds serialize a snapshot over many rounds (while writes go on
    // applying), some at once.
    pc.snapshot_step_bytes = [usize::MAX, 64, 1024][(seed / 7 % 3) as usize];
    pc.bugs = bugs;
    pc
}

/// The records of `ready` reach the node's simulated disk (the durable
/// image a restart recovers from), then the replica releases what they
/// gate. The caller sent `ready.before_sync` already.
pub(super) fn persist_and_advance(
    disk: &mut PbDurable,
    r: &mut PbReplica<ShardKv>,
    ready: Ready,
) -> Output {
    for rec in &ready.records {
        disk.apply(rec);
    }
    r.advance(ready, Synced::after_sync())
}

/// The end-of-run safety checks of one primary/backup group's live
/// replicas (named for the failures): none was asked to overwrite an entry
/// it applied, and replicas at equal applied points hold equal states.
/// Returns the state transfers they installed and the transfer chunks
/// they sent.
pub(super) fn check_states<'a>(
    replicas: impl Iterator<Item = (String, &'a PbReplica<ShardKv>)>,
    failures: &mut Vec<String>,
) -> (u64, u64) {
    let (mut transfers, mut chunks) = (0, 0);
    let mut by_point: BTreeMap<Pos, (String, bytes::Bytes)> = BTreeMap::new();
    for (name, r) in replicas {
        let stats = r.stats();
        transfers += stats.transfers_installed;
        chunks += stats.transfer_chunks_sent;
        if stats.overwrite_applied_refused > 0 {
            failures.push(format!(
                "safety: {name} was asked {} times to overwrite an entry it applied",
                stats.overwrite_applied_refused
            ));
        }
        let snap = r.state().store().snapshot();
        match by_point.get(&r.applied()) {
            Some((other_name, other)) if *other != snap => failures.push(format!(
                "safety: {other_name} and {name} applied up to position {} but their states differ",
                r.applied()
            )),
            Some(_) => {}
            None => {
                by_point.insert(r.applied(), (name, snap));
            }
        }
    }
    (transfers, chunks)
}

/// A local snapshot's file write (`Output::snapshot_write`, written off the
/// loop) is durable: the durable image folds it in, and the replica, if it
/// is still the incarnation that asked (the caller checked), moves its
/// log's start.
pub(super) fn snapshot_written(
    disk: &mut PbDurable,
    r: Option<&mut PbReplica<ShardKv>>,
    write: &SnapshotWrite,
) {
    disk.apply(&write.record());
    if let Some(r) = r {
        r.snapshot_durable(write.index);
    }
}
