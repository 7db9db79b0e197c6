//! The deterministic simulator: one seed decides a whole faulty world.
//!
//! A group of 3 or 5 replicas ([`Replica`] over [`ShardKv`], owning every
//! shard: the state machine the server runs) and a few
//! clients run on virtual time (microseconds) in one thread. The network
//! drops, duplicates, delays and reorders messages and applies partitions
//! (random halves, the leader isolated, a minority isolated, swizzle-clog);
//! replicas crash (volatile state lost, the simulated disk kept) and restart.
//! Every random choice comes from one [`Rng`] seeded by the seed, and events
//! are ordered by `(time, sequence number)`, so a seed replays exactly.
//!
//! After the fault phase everything heals and the checkers run:
//! safety (one value per slot, in-order application on every replica,
//! identical states at equal applied points), linearizability of the client
//! history, liveness (every request completes within a bound after healing),
//! and exactly-once appends.

mod byzantine;
mod checks;
mod client;
mod disk;
pub mod pb;
pub mod rejoin;
pub mod sharded;
mod timeline;

use timeline::{Simulated, Timeline};

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use synod_wire::{Batch, ClientReply, ClientRequest, Message, PaxosMsg, ReplicaId, Slot};

use crate::check::KvOp;
use crate::kv::KvOptions;
use crate::paxos::{Durable, PlantedBugs, Ready, Record, Synced};
use crate::replica::{Replica, ReplicaBugs, ReplicaConfig};
use crate::rng::Rng;
use crate::shardkv::ShardKv;
use crate::trace::{Stamp, Tracer};

use client::Client;

/// Virtual time in microseconds.
pub type Micros = u64;

const MS: Micros = 1_000;
/// A snapshot write takes up to this long (or up to the slow disk's
/// latency), so replicas run, crash and restart while one is in flight.
const SNAPSHOT_WRITE_MAX: Micros = 5 * MS;

/// The one KV group of the single-group world (it owns every shard).
const SIM_GID: synod_wire::GroupId = 1;

/// Every planted bug the simulator can switch on (all off by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    pub paxos: PlantedBugs,
    pub replica: ReplicaBugs,
    pub skip_dedup: bool,
    /// Drop expired and evicted sessions without raising the shard's floor
    /// (`KvOptions::planted_forget_floor`).
    pub forget_floor: bool,
}

/// What one simulated world looks like.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub replicas: u32,
    pub clients: usize,
    /// Keys that see Get, Put and Append.
    pub mixed_keys: usize,
    /// Keys that see only Get and Append (for the exactly-once check).
    pub append_keys: usize,
    /// Length of the fault phase; then everything heals.
    pub fault_phase: Micros,
    /// Clients stop starting new requests this long after healing.
    pub workload_after_heal: Micros,
    /// Every request must complete within this long after healing.
    pub liveness_bound: Micros,
    /// Turn faults off entirely (a clean run).
    pub faults: bool,
    pub tick: Micros,
    /// A loop turn: proposals arriving within one turn share a slot.
    pub turn: Micros,
    /// A sync takes a random time up to this (0: instant, the default).
    /// While a node's sync is in flight its `before_sync` messages are
    /// already out, it takes no other event (as the runtime's loop does not),
    /// and a crash loses the records being synced.
    pub disk_latency_max: Micros,
    /// Byzantine-input mode: during the fault phase, forged messages
    /// (out-of-range ballots and slots, unsolicited catch-up answers and
    /// snapshot chunks, garbage snapshots, Promises for ballots never
    /// proposed) are stepped into random replicas every few milliseconds
    /// (`sim/byzantine.rs`). The checkers stay on.
    pub byzantine: bool,
    /// Byte budget of every message carrying log entries (Promise pages,
    /// Accepts, catch-up responses; `paxos::Config::catchup_bytes_max`).
    /// Small values make every election and catch-up page.
    pub page_bytes: usize,
    pub bugs: Bugs,
    /// Every replica's session TTL (virtual ms of log time) and per-shard
    /// session cap. Short on a third of the seeds (and a tiny cap on a
    /// sixth), so sessions expire and are evicted under faults while every
    /// checker runs; the defaults otherwise.
    pub session_ttl_ms: u64,
    pub sessions_per_shard_max: usize,
    /// Write a Lamport/vector-clock trace of every message send and
    /// receive here, in ShiViz's format (`crate::trace`). Tracing draws
    /// no randomness, so a traced seed runs exactly as untraced.
    pub trace: Option<std::path::PathBuf>,
    /// `ReplicaConfig::stamp_reads` is `Always`: every read reaching a
    /// leader whose clock stamp is due goes through the log behind a fresh
    /// stamp (the runtime does so for reads of shards with expiring keys,
    /// which the simulated clients never write). Off by default: the
    /// pinned seeds' trajectories were chosen without it (`synod-sim
    /// --stamp-reads` turns it on).
    pub stamp_reads: bool,
    /// Disk faults (`sim/disk.rs`): a crash mid-sync leaves a torn prefix
    /// of the sync's WAL bytes, sometimes with garbage, read back by the
    /// WAL's own recovery rules; every restart checks that a bit flipped
    /// in the node's synced log is refused. Needs `disk_latency_max` > 0
    /// for syncs to be in flight. Own RNG: other seeds replay as before.
    pub disk_faults: bool,
    /// Membership changes (`paxos/members.rs`): the id space is
    /// `replicas` (6 in [`SimConfig::with_membership`]), the group starts
    /// as replicas {0, 1, 2}, every other node starts empty (a fresh data
    /// directory waiting to be added), and during the fault phase an
    /// operator asks the leader every few hundred ms to add or remove one
    /// replica (keeping 3 to 5 members), so replacements chain until the
    /// group may share no replica with the one it started as. Own RNG.
    pub membership: bool,
    /// Membership world: the operator replaces members that are down
    /// instead of changing at random (add a live replica that is not a
    /// member, then remove the down one; nothing while all are up).
    pub replace_down_members: bool,
    /// Crashes at fixed times, never restarted unless the fault phase's
    /// healing does (the replacement scenario runs without random faults).
    pub crashes_at: Vec<(Micros, ReplicaId)>,
    /// Read leases (`paxos::Config::lease_us`, as the runtime derives it)
    /// with drifting clocks: each node's clock runs at its own rate, up to
    /// half of [`crate::paxos::LEASE_DRIFT_PERCENT`] off true time either
    /// way (so two nodes differ by up to the whole bound), from its own
    /// offset, and its ticks come every `tick` of its own clock. Own RNG;
    /// off by default (it moves every tick, so the pinned seeds'
    /// trajectories would change).
    pub lease: bool,
    /// While a node waits for its sync (`disk_latency_max`), a client read
    /// that reaches it is answered at once if
    /// [`crate::replica::Replica::read_now`] can (a valid lease, and the
    /// `Ready` out for the sync holds no state for the state machine), as
    /// the runtime does; every other event still waits. Off by default
    /// (the pinned seeds' trajectories).
    pub reads_during_sync: bool,
}

/// Replicas {0, 1, 2}: the membership world's first group.
pub const MEMBERSHIP_INITIAL: u64 = 0b111;
/// The membership world's id space.
pub const MEMBERSHIP_IDS: u32 = 6;

/// Session TTL and cap of a seed's world: a 200 ms TTL on seeds 2 mod 3,
/// and also a cap of 2 sessions per shard on seeds 5 mod 6.
pub fn session_limits_for_seed(seed: u64) -> (u64, usize) {
    let ttl = if seed % 3 == 2 {
        200
    } else {
        crate::kv::DEFAULT_SESSION_TTL_MS
    };
    let cap = if seed % 6 == 5 {
        2
    } else {
        crate::kv::DEFAULT_SESSIONS_PER_SHARD_MAX
    };
    (ttl, cap)
}

/// Virtual µs to the ms the replicas' clocks read.
pub(crate) fn clock_ms(now: Micros) -> u64 {
    now / 1000
}

/// A node's monotonic clock for read leases (`paxos::Paxos::set_clock`):
/// it reads `offset + now * (1e6 + rate_ppm) / 1e6` at virtual time `now`,
/// and the node's ticks come every tick of it. The identity unless the
/// world runs leases.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DriftClock {
    offset: Micros,
    rate_ppm: i64,
}

impl DriftClock {
    /// Seeded apart from the world's RNG, so a world's other draws stay.
    pub(crate) fn rng(seed: u64) -> Rng {
        Rng::new(seed ^ 0x6c65_6173_6563_6c6b)
    }

    /// A clock up to 2.4% fast or slow (so two differ by less than
    /// `paxos::LEASE_DRIFT_PERCENT`) from a random offset; the identity
    /// when `lease` is off.
    pub(crate) fn draw(rng: &mut Rng, lease: bool) -> DriftClock {
        if !lease {
            return DriftClock::default();
        }
        let drift = crate::paxos::LEASE_DRIFT_PERCENT * 10_000 / 2 - 1_000;
        DriftClock {
            offset: rng.range(0, 1_000_000_000),
            rate_ppm: rng.range(0, 2 * drift + 1) as i64 - drift as i64,
        }
    }

    pub(crate) fn read(&self, now: Micros) -> Micros {
        let now = now as i128;
        (self.offset as i128 + now + now * self.rate_ppm as i128 / 1_000_000) as Micros
    }

    /// Virtual time until the next tick: `tick` of this clock.
    pub(crate) fn tick_after(&self, tick: Micros) -> Micros {
        (tick as i128 * 1_000_000 / (1_000_000 + self.rate_ppm) as i128).max(1) as Micros
    }
}

impl SimConfig {
    pub fn new(seed: u64, replicas: u32) -> SimConfig {
        SimConfig {
            seed,
            replicas,
            clients: 6,
            mixed_keys: 3,
            append_keys: 2,
            fault_phase: 6_000 * MS,
            workload_after_heal: 1_000 * MS,
            liveness_bound: 10_000 * MS,
            faults: true,
            tick: 10 * MS,
            turn: 200,
            disk_latency_max: 0,
            byzantine: false,
            page_bytes: 4 << 20,
            bugs: Bugs::default(),
            session_ttl_ms: session_limits_for_seed(seed).0,
            sessions_per_shard_max: session_limits_for_seed(seed).1,
            trace: None,
            stamp_reads: false,
            disk_faults: false,
            membership: false,
            replace_down_members: false,
            crashes_at: Vec::new(),
            lease: false,
            reads_during_sync: false,
        }
    }

    /// The membership world for a seed: 6 ids, the group {0, 1, 2} to
    /// start, membership changes through the fault phase.
    pub fn with_membership(seed: u64) -> SimConfig {
        SimConfig {
            membership: true,
            ..SimConfig::new(seed, MEMBERSHIP_IDS)
        }
    }

    /// The world `synod-sim` and the tests run for a seed: 3 replicas on even
    /// seeds and 5 on odd ones unless `replicas` says otherwise.
    pub fn for_seed(seed: u64, replicas: Option<u32>) -> SimConfig {
        SimConfig::new(
            seed,
            replicas.unwrap_or(if seed.is_multiple_of(2) { 3 } else { 5 }),
        )
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub seed: u64,
    pub failures: Vec<String>,
    pub slots_chosen: u64,
    pub commands_chosen: u64,
    pub ops_completed: u64,
    pub elections: u64,
    pub snapshots_installed: u64,
    /// Reads answered by read-index or lease by the replicas alive at the
    /// end, and how many of them under a lease.
    pub reads_served: u64,
    pub reads_leased: u64,
    /// Reads answered while their leader waited for its sync
    /// ([`SimConfig::reads_during_sync`]).
    pub reads_during_sync: u64,
    pub crashes: u64,
    pub messages: u64,
    /// Writes answered `SessionExpired` (outcome unknown; the client went
    /// on under a fresh id).
    pub session_expired: u64,
    /// Forged messages stepped into replicas (Byzantine-input mode).
    pub forged: u64,
    /// Snapshot writes that became durable, and those a crash lost.
    pub snapshot_writes: u64,
    pub snapshot_writes_lost: u64,
    /// Snapshots whose serialization spanned several turns (writes applied
    /// between its slices).
    pub sliced_snapshots: u64,
    /// Disk faults: crashes that cut a sync short (its whole records before
    /// the cut kept), and bit flips recovery refused.
    pub torn_syncs: u64,
    pub flips_refused: u64,
    /// Membership world: changes the operator asked a leader for, and
    /// membership entries chosen (distinct slots), and the membership the
    /// run ended with.
    pub membership_asked: u64,
    pub membership_chosen: u64,
    pub members_final: u64,
    /// Primary/backup world: the highest view the view service reached,
    /// and state transfers installed by the replicas alive at the end.
    pub pb_views: u64,
    pub pb_transfers: u64,
    /// State-transfer chunks those replicas sent.
    pub pb_transfer_chunks: u64,
}

/// Panics listing every failed seed (each entry names its replay
/// command), for the seed sweeps in `tests/`.
pub fn assert_seeds_passed(failed: &[String]) {
    assert!(
        failed.is_empty(),
        "{} seeds failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

impl SimReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Debug)]
pub(crate) enum Event {
    Paxos {
        to: ReplicaId,
        msg: PaxosMsg,
        stamp: Option<Box<Stamp>>,
    },
    Request {
        to: ReplicaId,
        reply_to: u64,
        req: ClientRequest,
        stamp: Option<Box<Stamp>>,
    },
    Reply {
        client: usize,
        reply_to: u64,
        reply: ClientReply,
        stamp: Option<Box<Stamp>>,
    },
    Tick {
        node: ReplicaId,
        epoch: u64,
    },
    Flush {
        node: ReplicaId,
        epoch: u64,
    },
    /// A node's sync in flight completed.
    SyncDone {
        node: ReplicaId,
        epoch: u64,
    },
    /// A snapshot write a replica asked for (`Output::snapshot_write`) is
    /// durable, unless the node crashed since (`epoch`): then it was lost.
    SnapshotDone {
        node: ReplicaId,
        epoch: u64,
        index: Slot,
        data: Bytes,
    },
    ClientWake {
        client: usize,
        token: u64,
    },
    Chaos,
    /// Byzantine-input mode: step one forged message into a replica.
    Forge,
    Cut(ReplicaId, ReplicaId),
    Restore(ReplicaId, ReplicaId),
    Heal,
    /// Membership world: the operator asks the leader for one change.
    Members,
    /// `SimConfig::crashes_at`.
    Crash(ReplicaId),
}

struct Node {
    replica: Option<Replica<ShardKv>>,
    disk: Durable,
    rng: Rng,
    /// Incremented on every crash so the dead incarnation's timers are ignored.
    epoch: u64,
    flush_scheduled: bool,
    /// Next slot this node must apply (checks in-order application).
    next_apply: Slot,
    /// A sync in flight (`SimConfig::disk_latency_max`): its records are not
    /// on `disk` yet.
    syncing: Option<Ready>,
    /// Events that arrived while syncing, replayed in order afterwards.
    deferred: VecDeque<Event>,
    /// This node's clock (`SimConfig::lease`).
    clock: DriftClock,
}

struct Net {
    drop_p: f64,
    dup_p: f64,
    delay_min: Micros,
    delay_max: Micros,
    /// cut[a][b]: messages from a to b are lost.
    cut: Vec<Vec<bool>>,
}

pub(crate) struct World {
    cfg: SimConfig,
    rng: Rng,
    time: Timeline<Event>,
    nodes: Vec<Node>,
    net: Net,
    clients: Vec<Client>,
    /// The last client id handed out on a renewal.
    next_client_id: u64,
    history: Vec<KvOp>,
    /// The first value seen chosen at each slot, by any replica.
    chosen: BTreeMap<Slot, Batch>,
    healed: bool,
    /// Byzantine-input mode's own randomness (forked only in that mode, so
    /// every other run's seeds replay as before).
    forge_rng: Option<Rng>,
    /// Disk-fault mode's own randomness (forked only in that mode).
    disk_rng: Option<Rng>,
    /// `SimConfig::trace`'s writer.
    tracer: Option<Tracer>,
    /// Membership world's own randomness (forked only in that mode).
    members_rng: Option<Rng>,
    report: SimReport,
}

/// Run one seed's world to the end and check it.
pub fn run(cfg: &SimConfig) -> SimReport {
    run_with_history(cfg).0
}

/// [`run`], also returning the client history the checkers saw.
pub fn run_with_history(cfg: &SimConfig) -> (SimReport, Vec<KvOp>) {
    let mut w = World::new(cfg.clone());
    let end = w.run_end();
    timeline::run(&mut w, end);
    w.finish()
}

impl Simulated for World {
    type Event = Event;
    fn timeline(&mut self) -> &mut Timeline<Event> {
        &mut self.time
    }
    fn handle(&mut self, ev: Event) {
        if let Event::Paxos { to: id, .. }
        | Event::Request { to: id, .. }
        | Event::Tick { node: id, .. }
        | Event::Flush { node: id, .. }
        | Event::SnapshotDone { node: id, .. }
        | Event::SyncDone { node: id, .. } = &ev
        {
            // Whatever a node does now it does at its clock's time.
            let clock = self.nodes[*id as usize].clock.read(self.time.now);
            if let Some(r) = self.nodes[*id as usize].replica.as_mut() {
                r.set_clock(clock);
            }
        }
        // A node waiting for its disk takes nothing else until it is done.
        let target = match &ev {
            Event::Paxos { to, .. } | Event::Request { to, .. } => Some(*to),
            Event::Tick { node, .. }
            | Event::Flush { node, .. }
            | Event::SnapshotDone { node, .. } => Some(*node),
            _ => None,
        };
        if let Some(id) = target {
            if self.nodes[id as usize].syncing.is_some() {
                if self.cfg.reads_during_sync && self.read_during_sync(id, &ev) {
                    return;
                }
                self.nodes[id as usize].deferred.push_back(ev);
                return;
            }
        }
        match ev {
            Event::Paxos { to, msg, stamp } => {
                if let Some(s) = &stamp {
                    self.trace_recv(&format!("r{to}"), s, || paxos_kind(&msg));
                }
                let node = &mut self.nodes[to as usize];
                if let Some(r) = node.replica.as_mut() {
                    r.step(msg, &mut node.rng);
                    self.after_node_event(to);
                }
            }
            Event::Request {
                to,
                reply_to,
                req,
                stamp,
            } => {
                if let Some(s) = &stamp {
                    self.trace_recv(&format!("r{to}"), s, || format!("request {reply_to}"));
                }
                let node = &mut self.nodes[to as usize];
                if let Some(r) = node.replica.as_mut() {
                    r.set_now_ms(clock_ms(self.time.now));
                    r.on_request(reply_to, &req);
                    self.after_node_event(to);
                }
            }
            Event::Reply {
                client,
                reply_to,
                reply,
                stamp,
            } => {
                if let Some(s) = &stamp {
                    self.trace_recv(&format!("c{client}"), s, || format!("reply {reply_to}"));
                }
                let now = self.time.now;
                let actions = self.clients[client].on_reply(now, reply_to, Message::Reply(reply));
                self.client_actions(client, actions);
            }
            Event::Tick { node, epoch } => {
                let n = &mut self.nodes[node as usize];
                if n.epoch != epoch {
                    return;
                }
                if let Some(r) = n.replica.as_mut() {
                    r.tick(&mut n.rng);
                    let at = self.time.now + n.clock.tick_after(self.cfg.tick);
                    self.schedule(at, Event::Tick { node, epoch });
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
            Event::SnapshotDone {
                node,
                epoch,
                index,
                data,
            } => {
                let n = &mut self.nodes[node as usize];
                if n.epoch != epoch {
                    self.report.snapshot_writes_lost += 1;
                    return;
                }
                self.report.snapshot_writes += 1;
                // The disk now holds the new snapshot and drops the log
                // below it (segment GC); only then does the replica make it
                // its log start.
                n.disk.apply(&Record::Snapshot { index, data });
                if let Some(r) = n.replica.as_mut() {
                    drop(r.snapshot_durable(index));
                }
                self.drive(node);
            }
            Event::ClientWake { client, token } => {
                let now = self.time.now;
                let stop_new =
                    self.healed && now > self.cfg.fault_phase + self.cfg.workload_after_heal;
                let actions = self.clients[client].on_wake(now, token, stop_new);
                self.client_actions(client, actions);
            }
            Event::Chaos => self.chaos(),
            Event::Forge => self.forge(),
            Event::Cut(a, b) => {
                if !self.healed {
                    self.net.cut[a as usize][b as usize] = true;
                    self.net.cut[b as usize][a as usize] = true;
                }
            }
            Event::Restore(a, b) => {
                self.net.cut[a as usize][b as usize] = false;
                self.net.cut[b as usize][a as usize] = false;
            }
            Event::Heal => self.heal(),
            Event::Members => self.change_members(),
            Event::Crash(id) => self.crash(id),
        }
    }
    fn finished(&self) -> bool {
        self.healed
            && self.clients.iter().all(|c| c.idle())
            // Let the last commit points reach every replica.
            && self.time.now > self.cfg.fault_phase + self.cfg.workload_after_heal + 500 * MS
    }
}

impl World {
    fn new(cfg: SimConfig) -> World {
        let mut rng = Rng::new(cfg.seed);
        let n = cfg.replicas as usize;
        let (drop_p, dup_p) = if cfg.faults {
            (
                rng.range(0, 15) as f64 / 100.0,
                rng.range(0, 8) as f64 / 100.0,
            )
        } else {
            (0.0, 0.0)
        };
        let mut w = World {
            net: Net {
                drop_p,
                dup_p,
                delay_min: 50,
                delay_max: if cfg.faults {
                    rng.range(500, 20_000)
                } else {
                    500
                },
                cut: vec![vec![false; n]; n],
            },
            nodes: Vec::new(),
            clients: Vec::new(),
            next_client_id: 1 << 20,
            history: Vec::new(),
            chosen: BTreeMap::new(),
            healed: !cfg.faults,
            forge_rng: None,
            disk_rng: None,
            tracer: None,
            members_rng: None,
            time: Timeline::new(),
            report: SimReport {
                seed: cfg.seed,
                ..SimReport::default()
            },
            rng,
            cfg,
        };
        // Drawn apart from the world's RNG (other settings' draws stay).
        let mut clock_rng = DriftClock::rng(w.cfg.seed);
        for id in 0..w.cfg.replicas {
            let node_rng = w.rng.fork();
            w.nodes.push(Node {
                clock: DriftClock::draw(&mut clock_rng, w.cfg.lease),
                replica: None,
                disk: Durable::default(),
                rng: node_rng,
                epoch: 0,
                flush_scheduled: false,
                next_apply: 0,
                syncing: None,
                deferred: VecDeque::new(),
            });
            w.start_node(id);
        }
        let keys = client::KeySpace::new(w.cfg.mixed_keys, w.cfg.append_keys);
        for c in 0..w.cfg.clients {
            let crng = w.rng.fork();
            w.clients
                .push(Client::new(c, w.cfg.replicas, keys.clone(), crng));
            let at = w.rng.range(0, 50 * MS);
            w.schedule(
                at,
                Event::ClientWake {
                    client: c,
                    token: 0,
                },
            );
        }
        if w.cfg.faults {
            let at = w.rng.range(100 * MS, 800 * MS);
            w.schedule(at, Event::Chaos);
            w.schedule(w.cfg.fault_phase, Event::Heal);
        }
        if w.cfg.byzantine {
            let mut frng = w.rng.fork();
            let at = frng.range(MS, 50 * MS);
            w.forge_rng = Some(frng);
            w.schedule(at, Event::Forge);
        }
        if w.cfg.disk_faults {
            w.disk_rng = Some(w.rng.fork());
        }
        for (at, id) in w.cfg.crashes_at.clone() {
            w.schedule(at, Event::Crash(id));
        }
        if w.cfg.membership {
            let mut mrng = w.rng.fork();
            let at = mrng.range(200 * MS, 600 * MS);
            w.members_rng = Some(mrng);
            w.schedule(at, Event::Members);
        }
        if let Some(path) = &w.cfg.trace {
            match std::fs::File::create(path) {
                Ok(f) => w.tracer = Some(Tracer::new(Box::new(std::io::BufWriter::new(f)))),
                Err(e) => w
                    .report
                    .failures
                    .push(format!("cannot write the trace {}: {e}", path.display())),
            }
        }
        w
    }

    /// Step one forged message into a random replica, at once (so it is
    /// built against the state it meets), and schedule the next.
    fn forge(&mut self) {
        if self.time.now >= self.cfg.fault_phase {
            return;
        }
        let Some(mut frng) = self.forge_rng.take() else {
            return;
        };
        let to = frng.range(0, self.cfg.replicas as u64) as ReplicaId;
        let next = self.time.now + frng.range(MS, 20 * MS);
        let node = &mut self.nodes[to as usize];
        if node.syncing.is_none() {
            if let Some(r) = node.replica.as_mut() {
                if let Some(msg) = byzantine::forge(&mut frng, r.paxos(), to, self.cfg.replicas) {
                    self.report.forged += 1;
                    r.step(msg, &mut node.rng);
                    self.after_node_event(to);
                }
            }
        }
        self.forge_rng = Some(frng);
        self.schedule(next, Event::Forge);
    }

    fn replica_config(&self, id: ReplicaId) -> ReplicaConfig {
        let mut rc = ReplicaConfig::new(id, self.cfg.replicas);
        // Small limits so snapshots, chunking and catch-up happen often.
        rc.snapshot_log_slots = 40;
        // Small enough that the byte trigger fires too, between slot ones.
        rc.snapshot_log_bytes = 2048;
        // Snapshots serialized in slices over several turns, with writes
        // applied between them (copy-on-write capture).
        rc.snapshot_step_bytes = 96;
        rc.paxos.snapshot_chunk_bytes = 512;
        rc.paxos.batch_commands_max = 64;
        rc.paxos.window_slots_max = 4;
        rc.paxos.catchup_slots_max = 16;
        rc.paxos.catchup_bytes_max = self.cfg.page_bytes;
        rc.paxos.bugs = self.cfg.bugs.paxos;
        rc.bugs = self.cfg.bugs.replica;
        rc.clock_interval_ms = 20;
        rc.stamp_reads = if self.cfg.stamp_reads {
            crate::replica::StampReads::Always
        } else {
            crate::replica::StampReads::Off
        };
        if self.cfg.lease {
            rc.paxos.lease_us = crate::paxos::lease_for(self.cfg.tick, rc.paxos.election_ticks_min);
        }
        if self.cfg.membership {
            rc.paxos.members = MEMBERSHIP_INITIAL;
        }
        rc
    }

    /// Membership world: ask the leader with the highest ballot to add or
    /// remove one replica (keeping 3 to 5 members; with the planted
    /// `membership_switches_at_once` bug, to switch to the ids it does not
    /// hold, all at once), and schedule the next ask. Stops at healing so
    /// liveness is judged on a settled group.
    fn change_members(&mut self) {
        if self.time.now >= self.cfg.fault_phase {
            return;
        }
        let Some(mut mrng) = self.members_rng.take() else {
            return;
        };
        let leader = (0..self.cfg.replicas)
            .filter(|i| {
                let n = &self.nodes[*i as usize];
                n.syncing.is_none() && n.replica.as_ref().is_some_and(|r| r.is_leader())
            })
            .max_by_key(|i| {
                self.nodes[*i as usize]
                    .replica
                    .as_ref()
                    .map(|r| r.paxos().promised())
            });
        if let Some(id) = leader {
            let universe = crate::paxos::all_members(self.cfg.replicas);
            let live = (0..self.cfg.replicas)
                .filter(|i| self.nodes[*i as usize].replica.is_some())
                .fold(0u64, |m, i| m | 1 << i);
            let r = self.nodes[id as usize].replica.as_mut().expect("live");
            if r.paxos().members_pending().is_none() {
                let cur = r.paxos().members();
                let down = crate::paxos::member_ids(cur).find(|i| live & (1 << i) == 0);
                let spare =
                    crate::paxos::member_ids(universe & !cur).find(|i| live & (1 << i) != 0);
                let next = if self.cfg.replace_down_members {
                    // Add a fresh replica first (the group never has fewer
                    // live members than before), then drop the down one.
                    match (down, spare) {
                        (Some(_), Some(add)) if cur.count_ones() <= 3 => cur | 1 << add,
                        (Some(gone), _) if cur.count_ones() > 3 => cur & !(1 << gone),
                        _ => 0,
                    }
                } else if self.cfg.bugs.paxos.membership_switches_at_once {
                    universe & !cur
                } else {
                    let size = cur.count_ones();
                    let add = size <= 3 || (size < 5 && mrng.chance(0.5));
                    let pool = if add { universe & !cur } else { cur };
                    let ids: Vec<u32> = crate::paxos::member_ids(pool).collect();
                    let pick = ids[mrng.range(0, ids.len() as u64) as usize];
                    cur ^ (1 << pick)
                };
                if next != 0 && r.propose_members(next).is_ok() {
                    self.report.membership_asked += 1;
                    self.after_node_event(id);
                }
            }
        }
        let at = self.time.now + mrng.range(150 * MS, 900 * MS);
        self.members_rng = Some(mrng);
        self.schedule(at, Event::Members);
    }

    fn kv_options(&self) -> KvOptions {
        KvOptions {
            planted_skip_dedup: self.cfg.bugs.skip_dedup,
            planted_forget_floor: self.cfg.bugs.forget_floor,
            session_ttl_ms: self.cfg.session_ttl_ms,
            sessions_per_shard_max: self.cfg.sessions_per_shard_max,
            ..KvOptions::default()
        }
    }

    fn start_node(&mut self, id: ReplicaId) {
        if let Some(drng) = self.disk_rng.as_mut() {
            match disk::flip_is_refused(SIM_GID, &self.nodes[id as usize].disk, drng) {
                Ok(true) => self.report.flips_refused += 1,
                Ok(false) => {}
                Err(e) => self.report.failures.push(e),
            }
        }
        let rc = self.replica_config(id);
        let sm = ShardKv::owning_every_shard(SIM_GID, self.kv_options());
        let node = &mut self.nodes[id as usize];
        let disk = node.disk.clone();
        node.next_apply = disk.snapshot.as_ref().map_or(0, |(i, _)| *i);
        let replica = Replica::new(rc, disk, sm, &mut node.rng);
        node.replica = Some(replica);
        node.flush_scheduled = false;
        let epoch = node.epoch;
        let first = self.rng.range(1, self.cfg.tick);
        self.schedule(self.time.now + first, Event::Tick { node: id, epoch });
        self.drive(id);
    }

    fn schedule(&mut self, at: Micros, ev: Event) {
        self.time.schedule(at, ev);
    }

    fn run_end(&self) -> Micros {
        self.cfg.fault_phase + self.cfg.liveness_bound
    }

    /// Any event at a node may have queued proposals or produced output.
    fn after_node_event(&mut self, id: ReplicaId) {
        let n = &mut self.nodes[id as usize];
        if !n.flush_scheduled {
            n.flush_scheduled = true;
            let epoch = n.epoch;
            let at = self.time.now + self.cfg.turn;
            self.schedule(at, Event::Flush { node: id, epoch });
        }
        self.drive(id);
    }

    /// Persist, then release: the simulated disk takes the records before
    /// anything they promise can leave.
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
            // Chosen batches are applied and answered before the sync, as
            // the runtime does (`Ready::take_chosen`).
            let chosen = r.advance_chosen(&mut ready);
            let early = std::mem::take(&mut ready.before_sync);
            for (to, msg) in early {
                self.send_paxos(id, to, msg);
            }
            self.check_applied(id, None, &chosen.committed);
            self.send_replies(id, chosen.replies);
            if self.cfg.disk_latency_max > 0 && !ready.records.is_empty() {
                let took = self.rng.range(1, self.cfg.disk_latency_max + 1);
                let node = &mut self.nodes[id as usize];
                node.syncing = Some(ready);
                let epoch = node.epoch;
                self.schedule(self.time.now + took, Event::SyncDone { node: id, epoch });
                return;
            }
            self.synced(id, ready);
        }
    }

    /// `ready`'s records are durable now: persist them, apply, release.
    fn synced(&mut self, id: ReplicaId, ready: Ready) {
        let node = &mut self.nodes[id as usize];
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        for rec in &ready.records {
            node.disk.apply(rec);
        }
        let capturing = r.snapshot_capturing();
        let out = r.advance(ready, Synced::after_sync());
        if !capturing && r.snapshot_capturing() {
            self.report.sliced_snapshots += 1;
        }
        if let Some((index, data)) = out.snapshot_write {
            // Written off the loop: durable some time later, or never if the
            // node crashes first.
            let took = self
                .rng
                .range(100, SNAPSHOT_WRITE_MAX.max(self.cfg.disk_latency_max) + 1);
            let epoch = self.nodes[id as usize].epoch;
            self.schedule(
                self.time.now + took,
                Event::SnapshotDone {
                    node: id,
                    epoch,
                    index,
                    data,
                },
            );
        }
        self.check_applied(id, out.installed_snapshot, &out.committed);
        for (to, msg) in out.messages {
            self.send_paxos(id, to, msg);
        }
        self.send_replies(id, out.replies);
    }

    /// A client read reaching node `id` while it waits for its sync,
    /// answered at once if [`crate::replica::Replica::read_now`] can and
    /// the `Ready` being synced holds no state (see
    /// [`SimConfig::reads_during_sync`]). True if answered.
    fn read_during_sync(&mut self, id: ReplicaId, ev: &Event) -> bool {
        let Event::Request { reply_to, req, .. } = ev else {
            return false;
        };
        let now_ms = clock_ms(self.time.now);
        let node = &mut self.nodes[id as usize];
        if node.syncing.as_ref().is_none_or(Ready::holds_state) {
            return false;
        }
        let Some(r) = node.replica.as_mut() else {
            return false;
        };
        r.set_now_ms(now_ms);
        let Some(reply) = r.read_now(req) else {
            return false;
        };
        self.report.reads_during_sync += 1;
        self.send_replies(id, vec![(*reply_to, reply)]);
        true
    }

    fn send_replies(
        &mut self,
        id: ReplicaId,
        replies: Vec<(crate::replica::ReplyTo, synod_wire::Message)>,
    ) {
        for (reply_to, reply) in replies {
            let synod_wire::Message::Reply(reply) = reply else {
                unreachable!("a KV group answers with replies: {reply:?}");
            };
            let client = (reply_to >> 40) as usize;
            self.send_to_client(id, client, reply_to, reply);
        }
    }

    fn delay(&mut self) -> Micros {
        let d = self.rng.range(self.net.delay_min, self.net.delay_max + 1);
        // Occasionally much later: reordering well past a round trip.
        if !self.healed && self.rng.chance(0.02) {
            d * 10
        } else {
            d
        }
    }

    fn send_paxos(&mut self, from: ReplicaId, to: ReplicaId, msg: PaxosMsg) {
        self.report.messages += 1;
        let stamp = self.trace_send(&format!("r{from}"), || {
            format!("{} to r{to}", paxos_kind(&msg))
        });
        if self.net.cut[from as usize][to as usize] || self.rng.chance(self.net.drop_p) {
            return;
        }
        if self.rng.chance(self.net.dup_p) {
            let d = self.delay();
            self.schedule(
                self.time.now + d,
                Event::Paxos {
                    to,
                    msg: msg.clone(),
                    stamp: stamp.clone(),
                },
            );
        }
        let d = self.delay();
        self.schedule(self.time.now + d, Event::Paxos { to, msg, stamp });
    }

    fn send_to_client(
        &mut self,
        from: ReplicaId,
        client: usize,
        reply_to: u64,
        reply: ClientReply,
    ) {
        let stamp = self.trace_send(&format!("r{from}"), || {
            format!("reply {reply_to} to c{client}")
        });
        if self.rng.chance(self.net.drop_p) {
            return;
        }
        if self.rng.chance(self.net.dup_p) {
            let d = self.delay();
            self.schedule(
                self.time.now + d,
                Event::Reply {
                    client,
                    reply_to,
                    reply: reply.clone(),
                    stamp: stamp.clone(),
                },
            );
        }
        let d = self.delay();
        self.schedule(
            self.time.now + d,
            Event::Reply {
                client,
                reply_to,
                reply,
                stamp,
            },
        );
    }

    /// A traced send's stamp (`None`, and nothing formatted, untraced).
    fn trace_send(&mut self, host: &str, what: impl FnOnce() -> String) -> Option<Box<Stamp>> {
        let t = self.tracer.as_mut()?;
        Some(Box::new(t.send(host, &what())))
    }

    fn trace_recv(&mut self, host: &str, stamp: &Stamp, what: impl FnOnce() -> String) {
        if let Some(t) = self.tracer.as_mut() {
            t.recv(host, stamp, &what());
        }
    }

    fn client_actions(&mut self, client: usize, actions: client::Actions) {
        for (dest, reply_to, msg) in actions.send {
            // Single-group clients know the replicas by index and send
            // nothing but KV requests.
            let (Ok(to), Message::Request(req)) = (dest.addr.parse::<ReplicaId>(), msg) else {
                continue;
            };
            let stamp = self.trace_send(&format!("c{client}"), || {
                format!("request {reply_to} to r{to}")
            });
            if self.rng.chance(self.net.drop_p) {
                continue;
            }
            let d = self.delay();
            self.schedule(
                self.time.now + d,
                Event::Request {
                    to,
                    reply_to,
                    req,
                    stamp,
                },
            );
        }
        if let Some((after, token)) = actions.wake {
            self.schedule(self.time.now + after, Event::ClientWake { client, token });
        }
        for op in actions.completed {
            self.report.ops_completed += 1;
            self.history.push(op);
        }
        for f in actions.failures {
            self.report.failures.push(f);
        }
        if actions.renew_id {
            // Newer than every id handed out so far, so above every
            // shard's expiry floor (which only covers ids already used).
            self.report.session_expired += 1;
            self.next_client_id += 1;
            let more = self.clients[client].set_client_id(self.next_client_id, self.time.now);
            self.client_actions(client, more);
        }
    }

    // ----- faults -------------------------------------------------------------

    fn chaos(&mut self) {
        if self.healed {
            return;
        }
        let n = self.cfg.replicas;
        match self.rng.range(0, 10) {
            0 => {
                // Random halves.
                let side: Vec<bool> = (0..n).map(|_| self.rng.chance(0.5)).collect();
                self.set_partition(&side);
            }
            1 => {
                // Isolate the leader (or a random node if there is none).
                let leader = (0..n)
                    .find(|i| {
                        self.nodes[*i as usize]
                            .replica
                            .as_ref()
                            .is_some_and(|r| r.is_leader())
                    })
                    .unwrap_or_else(|| self.rng.range(0, n as u64) as u32);
                let side: Vec<bool> = (0..n).map(|i| i == leader).collect();
                self.set_partition(&side);
            }
            2 => {
                // Isolate a minority.
                let k = self.rng.range(1, (n / 2 + 1) as u64) as usize;
                let mut side = vec![false; n as usize];
                for _ in 0..k {
                    let i = self.rng.range(0, n as u64) as usize;
                    side[i] = true;
                }
                self.set_partition(&side);
            }
            3 => self.swizzle(),
            4 | 5 if self.cfg.disk_latency_max > 0 && self.crash_mid_sync() => {}
            4 | 5 => {
                // Crash a live node.
                let live: Vec<u32> = (0..n)
                    .filter(|i| self.nodes[*i as usize].replica.is_some())
                    .collect();
                if !live.is_empty() {
                    let i = live[self.rng.range(0, live.len() as u64) as usize];
                    self.crash(i);
                }
            }
            6 | 7 => {
                // Restart a crashed node.
                let dead: Vec<u32> = (0..n)
                    .filter(|i| self.nodes[*i as usize].replica.is_none())
                    .collect();
                if !dead.is_empty() {
                    let i = dead[self.rng.range(0, dead.len() as u64) as usize];
                    self.start_node(i);
                }
            }
            8 => self.clear_cuts(),
            _ => {
                self.net.drop_p = self.rng.range(0, 25) as f64 / 100.0;
                self.net.dup_p = self.rng.range(0, 10) as f64 / 100.0;
            }
        }
        let at = self.time.now + self.rng.range(100 * MS, 1_500 * MS);
        self.schedule(at, Event::Chaos);
    }

    fn set_partition(&mut self, side: &[bool]) {
        let n = side.len();
        for a in 0..n {
            for b in 0..n {
                self.net.cut[a][b] = side[a] != side[b];
            }
        }
    }

    fn clear_cuts(&mut self) {
        for row in self.net.cut.iter_mut() {
            row.iter_mut().for_each(|c| *c = false);
        }
    }

    /// FoundationDB's swizzle-clog: cut a random subset's links one by one,
    /// then restore them in random order.
    fn swizzle(&mut self) {
        let n = self.cfg.replicas;
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
            self.schedule(t, Event::Cut(a, b));
        }
        // Fisher–Yates for the restore order.
        for i in (1..links.len()).rev() {
            let j = self.rng.range(0, i as u64 + 1) as usize;
            links.swap(i, j);
        }
        for &(a, b) in &links {
            t += self.rng.range(10 * MS, 300 * MS);
            self.schedule(t, Event::Restore(a, b));
        }
    }

    /// With a slow disk: crash a follower whose sync is in flight (its
    /// unsynced records are lost), and half the time the leader with it, the
    /// pairing that turns a vote acknowledged too early into a lost write.
    /// False if no follower is syncing.
    fn crash_mid_sync(&mut self) -> bool {
        let n = self.cfg.replicas;
        let leading = |w: &World, i: u32| {
            w.nodes[i as usize]
                .replica
                .as_ref()
                .is_some_and(|r| r.is_leader())
        };
        let busy = |w: &World, i: u32| {
            let node = &w.nodes[i as usize];
            node.syncing.is_some()
                || node
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.snapshot_in_flight().is_some())
        };
        let syncing: Vec<u32> = (0..n)
            .filter(|i| busy(self, *i) && !leading(self, *i))
            .collect();
        if syncing.is_empty() {
            return false;
        }
        let victim = syncing[self.rng.range(0, syncing.len() as u64) as usize];
        self.crash(victim);
        if self.rng.chance(0.5) {
            if let Some(leader) = (0..n).find(|i| leading(self, *i)) {
                self.crash(leader);
            }
        }
        true
    }

    fn crash(&mut self, id: ReplicaId) {
        if let Some(t) = self.tracer.as_mut() {
            t.local(&format!("r{id}"), "crash");
        }
        let node = &mut self.nodes[id as usize];
        // Whatever was being synced never reached the disk, or with disk
        // faults on, a torn prefix of it did.
        let syncing = node.syncing.take();
        if let (Some(drng), Some(ready)) = (self.disk_rng.as_mut(), syncing) {
            match disk::torn_write(SIM_GID, &ready.records, drng) {
                Ok(kept) => {
                    for rec in &kept {
                        node.disk.apply(rec);
                    }
                    self.report.torn_syncs += 1;
                }
                Err(e) => self.report.failures.push(e),
            }
        }
        node.deferred.clear();
        if node.replica.take().is_some() {
            node.epoch += 1;
            self.report.crashes += 1;
        }
    }

    fn heal(&mut self) {
        self.healed = true;
        self.clear_cuts();
        self.net.drop_p = 0.0;
        self.net.dup_p = 0.0;
        self.net.delay_max = self.net.delay_max.min(2_000);
        for id in 0..self.cfg.replicas {
            if self.nodes[id as usize].replica.is_none() {
                self.start_node(id);
            }
        }
    }

    // ----- checks ---------------------------------------------------------------

    fn check_applied(
        &mut self,
        id: ReplicaId,
        snapshot: Option<Slot>,
        committed: &[(Slot, Batch)],
    ) {
        let (failures, slots, commands) = checks::applied(
            &mut self.nodes[id as usize].next_apply,
            &mut self.chosen,
            |slot| slot,
            (snapshot, committed),
            || (format!("replica {id}"), String::new()),
        );
        self.report.failures.extend(failures);
        self.report.slots_chosen += slots;
        self.report.commands_chosen += commands;
    }

    fn finish(mut self) -> (SimReport, Vec<KvOp>) {
        if let Some(t) = self.tracer.take() {
            if let Err(e) = t.finish() {
                self.report.failures.push(format!("writing the trace: {e}"));
            }
        }
        for node in &self.nodes {
            if let Some(r) = &node.replica {
                let s = r.paxos().stats();
                self.report.elections += s.elections_started;
                self.report.snapshots_installed += s.snapshots_installed;
                let (served, leased) = r.read_counts();
                self.report.reads_served += served;
                self.report.reads_leased += leased;
            }
        }
        if self.cfg.membership {
            self.report.membership_chosen = self
                .chosen
                .values()
                .filter(|b| crate::paxos::batch_members(b).is_some())
                .count() as u64;
            if let Some(r) = self
                .nodes
                .iter()
                .filter_map(|n| n.replica.as_ref())
                .max_by_key(|r| r.paxos().chosen_upto())
            {
                self.report.members_final = r.paxos().members();
            }
        }
        let now = self.time.now;
        let pending: Vec<KvOp> = self.clients.iter().flat_map(|c| c.pending_ops()).collect();
        let deadline = self.run_end();
        checks::liveness(&mut self.report, &self.clients, deadline, now);
        let mut history = std::mem::take(&mut self.history);
        history.extend(pending);
        checks::linearizable(&mut self.report, &history);
        checks::replicas_agree(&mut self.report, &self.nodes);
        let final_store = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .max_by_key(|r| r.paxos().applied_upto());
        if let Some(r) = final_store {
            checks::appends_exactly_once(&mut self.report, &self.clients, r.state().store());
        }
        (self.report, history)
    }
}

/// Encode a value that names its writer, so checkers can attribute it.
pub(crate) fn token(kind: u8, client: usize, seq: u64) -> Bytes {
    Bytes::from(format!("{}{}.{};", kind as char, client, seq))
}

/// A Paxos message's kind, for traces (its variant name).
fn paxos_kind(msg: &PaxosMsg) -> String {
    let dbg = format!("{msg:?}");
    dbg.split([' ', '{', '(']).next().unwrap_or("").to_string()
}
