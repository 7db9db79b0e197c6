//! One core: a mio `Poll` that owns a set of replica groups outright, the
//! connections that talk to them, and one write-ahead log.
//!
//! A loop turn: poll (until the next tick at most) → read and decode every
//! ready connection, handing requests and Paxos messages to the replicas →
//! tick the replicas if a tick is due → flush every replica's batch → append
//! every replica's records to the WAL and sync once (group commit) → release
//! each replica's messages and replies with that one proof → write every
//! connection's buffered frames with one write call each.
//!
//! With read leases the sync's `fdatasync` runs on the core's syncer
//! thread, and until it is done the loop only reads frames, answers the
//! leased Gets a replica can answer at once, and queues the rest
//! (`Core::in_sync`).
//!
//! Nothing here blocks except `poll` and the WAL's sync. A dead or slow peer
//! costs a bounded buffer, never the loop.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use synod_wire::{
    AuthMsg, ClientReply, Config, Frame, GroupId, GroupInfo, MasterOp, MasterRequest, Message,
    PaxosMsg, PbMsg, ReplicaId, ReplicationMode, ShardPull, ShardRef, TxnId,
};

use super::conn::{AuthState, Close, Conn, Role};
use super::limits::WarnLimiter;
use super::{owner_core, RuntimeConfig, MIN_RATE_GRACE};
use crate::auth::{self, Accepting, Identity, Need};
use crate::client::idmap::IdMap;
use crate::kv::KvOptions;
use crate::master::{MasterMachine, MasterOptions};
use crate::metrics::{self, CoreMetrics, GroupMetrics, Metrics, ReplicaView};
use crate::paxos::{member_ids, Durable, Ready};
use crate::pb::{PbConfig, PbDurable, PbReplica};
use crate::replica::{Replica, ReplicaConfig, ReplyTo};
use crate::rng::Rng;
use crate::shardkv::migrator::{serve_delete, serve_pull, serve_resolve, Action, Migrator};
use crate::shardkv::{GroupCommand, ShardKv};
use crate::storage::Wal;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// Bytes one connection may read per loop turn (fairness between clients).
const READ_BUDGET: usize = 1 << 20;

/// Control traffic between cores and from the node's watcher thread. Never a
/// steady-state request of the project's own client.
pub enum Control {
    /// A connection whose first frame is for a group this core owns.
    Adopt {
        stream: std::net::TcpStream,
        first: Frame,
        /// `first`'s kind and body as they arrived (its log command).
        first_raw: Bytes,
        rest: bytes::BytesMut,
    },
    /// A newer configuration from the shard master.
    Config(Config),
    /// From this core's syncer thread: the `fdatasync` of the sync begun
    /// last turn is done (see `Core::in_sync`).
    Synced(std::io::Result<()>),
    Shutdown,
}

/// A turn's output waiting for its sync: on the loop's thread, or on the
/// core's syncer thread until its `Control::Synced` (`Core::in_sync`).
struct InSync {
    readies: Vec<(GroupId, Ready)>,
    pb_readies: Vec<(GroupId, crate::pb::Ready)>,
    began: Instant,
    /// Did the sync write a record (for the fsync histogram)?
    dirty: bool,
}

/// A frame read while the loop waited for its sync, handled after it.
struct Deferred {
    t: Token,
    frame: Frame,
    raw: Bytes,
    /// The turn it was read in (its latency counts from then).
    arrived: Instant,
}

/// How to reach a core from elsewhere.
#[derive(Clone)]
pub struct CoreHandle {
    pub tx: Sender<Control>,
    pub waker: Arc<Waker>,
    /// Shared by every core and the configuration watcher: the lowest
    /// configuration number a core needs again after pruning (`u64::MAX`:
    /// none), which the watcher then publishes anew.
    pub rewind: Arc<std::sync::atomic::AtomicU64>,
}

/// A KV group's Paxos id space here: ids are positions in the master's
/// server list for the group, which grows by appending (never past the
/// master's cap), so every replica uses the cap from the start and the
/// id space never has to grow under a running replica.
const KV_ID_SPACE: u32 = crate::master::SERVERS_PER_GROUP_MAX as u32;

/// How often a leader resends its commit point to replicas removed from
/// its group (a removed replica that already stopped hosting the group
/// drops them; one that has not learns its removal from the first).
const FAREWELL_EVERY: Duration = Duration::from_secs(1);

/// Configurations a core keeps below the oldest one its groups are in.
const CONFIGS_KEPT_BELOW: u64 = 2;

/// A replica of any kind of group a node hosts.
// One per hosted group, in a map: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Hosted {
    Kv(Replica<ShardKv>),
    Master(Replica<MasterMachine>),
    /// A KV group replicated by primary/backup (issue 12): the same
    /// `ShardKv`, driven by `pb::PbReplica` instead of Paxos.
    Pb(PbReplica<ShardKv>),
}

impl Hosted {
    fn tick(&mut self, rng: &mut Rng) {
        match self {
            Hosted::Kv(r) => r.tick(rng),
            Hosted::Master(r) => r.tick(rng),
            Hosted::Pb(r) => r.tick(),
        }
    }
    fn step(&mut self, msg: PaxosMsg, rng: &mut Rng) {
        match self {
            Hosted::Kv(r) => r.step(msg, rng),
            Hosted::Master(r) => r.step(msg, rng),
            // A Paxos message for a primary/backup group: a peer that
            // disagrees about the group's mode; nothing to do with it.
            Hosted::Pb(_) => {}
        }
    }
    /// The loop's monotonic clock for read leases (`Paxos::set_clock`).
    fn set_clock(&mut self, now_us: u64) {
        match self {
            Hosted::Kv(r) => r.set_clock(now_us),
            Hosted::Master(r) => r.set_clock(now_us),
            Hosted::Pb(_) => {}
        }
    }
    fn flush(&mut self) {
        match self {
            Hosted::Kv(r) => r.flush(),
            Hosted::Master(r) => r.flush(),
            Hosted::Pb(r) => r.flush(),
        }
    }
    /// Is a snapshot being serialized? Then it gets a slice this turn (and
    /// the loop does not sleep until it is done).
    fn nudge_capture(&mut self) -> bool {
        match self {
            Hosted::Kv(r) => r.nudge_capture(),
            Hosted::Master(r) => r.nudge_capture(),
            Hosted::Pb(r) => r.nudge_capture(),
        }
    }
    fn id(&self) -> ReplicaId {
        match self {
            Hosted::Kv(r) => r.paxos().id(),
            Hosted::Master(r) => r.paxos().id(),
            Hosted::Pb(r) => r.id(),
        }
    }
    /// The Paxos view the metrics and the status request read (`None`
    /// for a primary/backup group: see [`publish_metrics`]).
    fn view(&self) -> Option<ReplicaView<'_>> {
        match self {
            Hosted::Kv(r) => {
                let c = r.state().config();
                Some(ReplicaView {
                    paxos: r.paxos(),
                    config: Some((c.num, &c.shards)),
                    reads: r.read_counts(),
                })
            }
            Hosted::Master(r) => Some(ReplicaView {
                paxos: r.paxos(),
                config: None,
                reads: r.read_counts(),
            }),
            Hosted::Pb(_) => None,
        }
    }
    /// The snapshot it asked to write at `index` is durable.
    fn snapshot_durable(&mut self, index: synod_wire::Slot) -> crate::paxos::Compacted {
        match self {
            Hosted::Kv(r) => r.snapshot_durable(index),
            Hosted::Master(r) => r.snapshot_durable(index),
            // Its log entries are not WAL garbage of their own (the WAL's
            // segment accounting covers them).
            Hosted::Pb(r) => {
                r.snapshot_durable(index);
                crate::paxos::Compacted::default()
            }
        }
    }
    /// Serve laggards from the durable snapshot file mapped by `wal`
    /// rather than a copy on the heap, if the snapshot held is that one.
    fn map_snapshot(&mut self, gid: GroupId, wal: &Wal) {
        let held = match self {
            Hosted::Kv(r) => r.snapshot_held(),
            Hosted::Master(r) => r.snapshot_held(),
            Hosted::Pb(_) => None,
        };
        let Some((index, len)) = held else { return };
        if let Some(data) = wal.map_snapshot(gid, index, len) {
            let copy = match self {
                Hosted::Kv(r) => r.hold_snapshot(index, data),
                Hosted::Master(r) => r.hold_snapshot(index, data),
                Hosted::Pb(_) => None,
            };
            // Freeing a ~100 MB heap copy is an munmap: not in the loop.
            if let Some(copy) = copy {
                wal.janitor().drop_later(copy);
            }
        }
    }
}

/// A core's link to one server (`Core::links`).
struct Link {
    /// The connection, while there is one.
    token: Option<Token>,
    /// When it may be dialed again, and the current backoff.
    redial: (Instant, Duration),
}

struct Group {
    replica: Hosted,
    /// Every server's address by replica id (the master's list for the
    /// group, which only grows: a removed server keeps its id).
    servers: Vec<String>,
    /// Outgoing connection per replica id (`None`: self, or not connected).
    peers: Vec<Option<Token>>,
    /// When each peer may be dialed again, and the current backoff.
    redial: Vec<(Instant, Duration)>,
    /// Peers (bit = replica id) this group talks to on a connection of
    /// its own rather than the core's link to their server: the server
    /// answered `WrongCore` on the link (it places the group on another
    /// core than the link's), or links are off (`--peer-conns per-group`).
    own: u64,
    /// Its gauges, stored once per tick.
    metrics: Arc<GroupMetrics>,
    /// Paxos's proposal counters at the last publication (for the batch
    /// size histogram).
    proposed_seen: (u64, u64),
    /// When this replica, leading, last told removed replicas its commit
    /// point (`drive_membership`; at most once per [`FAREWELL_EVERY`]).
    farewell_at: Instant,
}

pub struct Core {
    id: usize,
    /// `--trace`: the node's Lamport/vector-clock trace, shared by its cores.
    tracer: Option<Arc<crate::trace::NodeTracer>>,
    /// Wall clock (Unix ms) read once per loop turn, after `poll`: the time
    /// the replicas stamp into the log before a write (session expiry).
    now_ms: u64,
    cfg: Arc<RuntimeConfig>,
    poll: Poll,
    rx: Receiver<Control>,
    cores: Arc<Vec<CoreHandle>>,
    listener: Option<TcpListener>,
    /// By token, the core's own counter: the own-id hash, not SipHash
    /// (several lookups per frame; 1.2% of a leader's samples).
    conns: IdMap<Token, Conn>,
    next_token: usize,
    groups: BTreeMap<GroupId, Group>,
    /// Durable images recovered from the WAL for groups not hosted yet
    /// (their members are learned from the master's configuration).
    recovered: BTreeMap<GroupId, Durable>,
    /// The same for primary/backup groups.
    recovered_pb: BTreeMap<GroupId, PbDurable>,
    /// Pings of this core's primary/backup replicas to the view service.
    pings: Pings,
    wal: Wal,
    rng: Rng,
    /// Reply handle → (connection, request id, group, and for the
    /// metrics the request's kind and the turn it was read in).
    /// Keyed by the core's own counter: the multiplicative hash, not
    /// SipHash (`client::idmap`; 1.4% of a leader's CPU per put).
    waiting: IdMap<ReplyTo, (Token, u64, GroupId, u8, Instant)>,
    /// When this loop turn's `poll` returned (the arrival time of the
    /// requests read in it, for the latency histogram).
    turn_at: Instant,
    /// This core's counters, and the node's (for registering groups).
    metrics: Arc<CoreMetrics>,
    node_metrics: Arc<Metrics>,
    next_reply: ReplyTo,
    /// Connections with unread input left after their read budget.
    read_again: Vec<Token>,
    /// A hosted group is serializing a snapshot: poll without sleeping.
    capturing: bool,
    /// Set once the WAL fails: this core stops acknowledging anything.
    failed: Option<String>,
    next_tick: Instant,
    last_sweep: Instant,
    /// Where every read lands before it is appended to a connection's buffer.
    scratch: Vec<u8>,
    /// Every configuration seen, by number: KV groups take them in order.
    configs: BTreeMap<u64, Config>,
    /// The shard migrator of every KV group this core leads.
    migrator: Migrator,
    /// Outgoing connections for migration RPCs, by (server, target group).
    rpc_conns: HashMap<(String, GroupId), Token>,
    /// This core's links to other servers (`Role::Link`): one connection
    /// per server carrying every group's replication messages, so more
    /// groups mean fuller socket writes rather than more of them.
    links: HashMap<SocketAddr, Link>,
    /// What the migrator counts time from.
    started: Instant,
    last_migration: Instant,
    /// Connection-close and refusal warnings, at most a few a second.
    warns: WarnLimiter,
    /// With `RuntimeConfig::reads_during_sync`: the thread that runs this
    /// core's `fdatasync`s while its loop answers leased reads.
    syncer: Option<crossbeam_channel::Sender<crate::storage::SyncJob>>,
    /// The turn whose sync is out on the syncer thread: until it is back,
    /// the loop answers leased reads and defers every other frame and
    /// control message (nothing touches the WAL or a replica but a read).
    in_sync: Option<InSync>,
    deferred: VecDeque<Deferred>,
    deferred_controls: Vec<Control>,
    /// The turn that last read a Get: syncs go to the syncer thread only
    /// within `GETS_RECENT` of it.
    last_get: Option<Instant>,
}

/// How long after the last Get a core still syncs on its syncer thread.
const GETS_RECENT: Duration = Duration::from_millis(100);

/// Request ids of pings to the view service: the top bit set, so they
/// never meet the migrator's (counted up from 1).
const PING_ID_BIT: u64 = 1 << 63;
/// Pings awaiting an answer, at most (beyond, the oldest are forgotten:
/// a lost ping costs nothing, the next one is 5 ticks away).
const PINGS_WAITING_MAX: usize = 1024;

/// The view service's side of this core: which master server its replicas'
/// pings go to (moved on by `NotLeader` hints and failures), and the
/// pings in flight by request id.
struct Pings {
    master: usize,
    client_id: u64,
    seq: u64,
    waiting: HashMap<u64, GroupId>,
    /// The last answer from the view service (or when the current master
    /// server was chosen): a master that stops answering without closing
    /// the connection (stopped, partitioned) is left after
    /// [`PING_ANSWER_TIMEOUT`].
    answered_at: Instant,
}

/// How long pings go unanswered before they go to the next master server.
const PING_ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

/// Connection warnings logged per second per core, at most.
const WARNINGS_PER_SEC: u32 = 10;

/// A connection whose read buffer reaches this after a read has the
/// core's partial-frame budget checked (smaller buffers cannot matter).
const PARTIAL_CHECK_BYTES: usize = 256 << 10;

/// What a replica whose WAL failed answers every request: "not the leader,
/// and I know of none", which clients take as "ask the next member". An
/// `Error` would be final for the client, and a client that tries this
/// member first would fail every operation while the other members serve
/// a healthy majority (issue 8, finding 11).
fn stopped_reply() -> ClientReply {
    ClientReply::NotLeader { leader: None }
}

/// How often the leader's migration work is looked at (new work: the
/// next chunk once the last applied, a configuration learned).
const MIGRATION_PASS: Duration = Duration::from_millis(50);

/// The first wait before redialing a peer; doubled (with jitter) after each
/// failed dial, up to [`REDIAL_MAX`].
const REDIAL_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between two dials of a dead peer.
const REDIAL_MAX: Duration = Duration::from_secs(1);
/// How often connection deadlines are checked (`Core::sweep`).
const SWEEP_EVERY: Duration = Duration::from_millis(100);

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        cfg: Arc<RuntimeConfig>,
        poll: Poll,
        rx: Receiver<Control>,
        cores: Arc<Vec<CoreHandle>>,
        listener: Option<TcpListener>,
        wal: Wal,
        recovered: BTreeMap<GroupId, Durable>,
        recovered_pb: BTreeMap<GroupId, PbDurable>,
        seed: u64,
        node_metrics: Arc<Metrics>,
        tracer: Option<Arc<crate::trace::NodeTracer>>,
    ) -> Core {
        let now = Instant::now();
        Core {
            turn_at: now,
            metrics: node_metrics.cores[id].clone(),
            node_metrics,
            now_ms: synod_wire::unix_now_ms(),
            id,
            poll,
            rx,
            cores,
            listener,
            conns: IdMap::default(),
            next_token: FIRST_CONN,
            groups: BTreeMap::new(),
            recovered,
            recovered_pb,
            pings: Pings {
                master: id,
                // Pings keep no session at the master; any id will do.
                client_id: seed | 1 << 62,
                seq: 0,
                waiting: HashMap::new(),
                answered_at: now,
            },
            wal,
            rng: Rng::new(seed),
            waiting: IdMap::default(),
            next_reply: 1,
            read_again: Vec::new(),
            capturing: false,
            failed: None,
            next_tick: now + cfg.tick,
            last_sweep: now,
            scratch: vec![0; 64 * 1024],
            configs: BTreeMap::new(),
            migrator: Migrator::new().resolving_after(cfg.txn_resolve_after),
            started: now,
            rpc_conns: HashMap::new(),
            links: HashMap::new(),
            last_migration: now,
            warns: WarnLimiter::new(WARNINGS_PER_SEC, now),
            tracer,
            syncer: None,
            in_sync: None,
            deferred: VecDeque::new(),
            deferred_controls: Vec::new(),
            last_get: None,
            cfg,
        }
    }

    /// The syncer thread, if reads may be answered while the loop waits for
    /// a sync: only leased reads are (`Replica::read_now`), so without
    /// leases the loop syncs on its own thread as it always did. It ends
    /// when the core drops its sender.
    fn start_syncer(&mut self) {
        let c = &self.cfg;
        if !(c.reads_during_sync && c.read_index && c.read_lease) {
            return;
        }
        let (tx, rx) = crossbeam_channel::bounded::<crate::storage::SyncJob>(1);
        let me = self.cores[self.id].clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sync-{}", self.id))
            .spawn(move || {
                for job in rx {
                    if me.tx.send(Control::Synced(job.run())).is_err() {
                        return;
                    }
                    let _ = me.waker.wake();
                }
            });
        match spawned {
            Ok(_) => self.syncer = Some(tx),
            Err(e) => log::warn!("core {}: no syncer thread, syncing inline: {e}", self.id),
        }
    }

    /// Host replica `me` of KV group `info`, from disk. The Paxos id space
    /// is [`KV_ID_SPACE`] whatever the list's length, so the list can grow
    /// without restarting the replica; the log starts with the group's
    /// founders as its membership on every replica alike (a snapshot omits
    /// the membership when it equals that, so all must agree on it).
    pub fn host(&mut self, info: &GroupInfo, me: ReplicaId) {
        let gid = info.gid;
        if self.groups.contains_key(&gid) {
            return;
        }
        if info.mode == ReplicationMode::PrimaryBackup {
            self.host_pb(info, me);
            return;
        }
        let members = info.servers.clone();
        let durable = self.recovered.remove(&gid).unwrap_or_default();
        let mut rc = self.replica_config(me, KV_ID_SPACE);
        rc.paxos.members = info.founders();
        let sm = self.new_store(gid);
        let replica = Hosted::Kv(Replica::new(rc, durable, sm, &mut self.rng));
        log::info!(
            "core {} hosts group {gid} as replica {me} of {:?}",
            self.id,
            members
        );
        self.insert_group(gid, replica, members);
    }

    /// The KV state machine of group `gid` with this node's settings, as
    /// either kind of group runs it.
    fn new_store(&self, gid: GroupId) -> ShardKv {
        let mut sm = ShardKv::new(
            gid,
            KvOptions {
                shards: self.cfg.shards,
                session_ttl_ms: self.cfg.session_ttl.as_millis() as u64,
                sessions_per_shard_max: self.cfg.sessions_per_shard_max,
                ..KvOptions::default()
            },
        );
        sm.migrate_chunk_bytes = self.cfg.migrate_chunk_bytes;
        sm
    }

    /// Host replica `me` of primary/backup group `info`, from disk (issue
    /// 12). Its id space is [`KV_ID_SPACE`], as a Paxos group's, so a
    /// membership change (a server appended to the list) needs no restart:
    /// the views the master hands out name the members.
    fn host_pb(&mut self, info: &GroupInfo, me: ReplicaId) {
        let gid = info.gid;
        let durable = self.recovered_pb.remove(&gid).unwrap_or_default();
        let mut pc = PbConfig::new(me, KV_ID_SPACE);
        // Bytes per entry and per Append: an Append always fits a frame
        // (a command alone is at most `command_bytes_max`, checked before
        // it is taken).
        let page = (self.cfg.frame_bytes_max / 4) as usize;
        pc.batch_bytes_max = page;
        pc.append_bytes_max = page;
        pc.command_bytes_max = synod_wire::command_bytes_max(self.cfg.frame_bytes_max);
        pc.snapshot_log_entries = self.cfg.snapshot_log_slots as u64;
        pc.snapshot_log_percent = self.cfg.snapshot_log_percent;
        pc.snapshot_log_bytes = self.cfg.snapshot_log_bytes;
        // State transfer chunks: a page too, like Paxos snapshot chunks.
        pc.transfer_chunk_bytes = pc.transfer_chunk_bytes.min(page);
        pc.snapshot_step_bytes = self.cfg.snapshot_step_bytes;
        let sm = self.new_store(gid);
        let replica = Hosted::Pb(PbReplica::new(pc, durable, sm));
        log::info!(
            "core {} hosts primary/backup group {gid} as replica {me} of {:?}",
            self.id,
            info.servers
        );
        self.insert_group(gid, replica, info.servers.clone());
    }

    /// A Paxos replica's configuration with this node's settings, as a KV
    /// group and the master group take them.
    fn replica_config(&self, me: ReplicaId, replicas: u32) -> ReplicaConfig {
        let mut rc = ReplicaConfig::new(me, replicas);
        rc.snapshot_log_slots = self.cfg.snapshot_log_slots;
        rc.snapshot_log_bytes = self.cfg.snapshot_log_bytes;
        rc.snapshot_log_percent = self.cfg.snapshot_log_percent;
        rc.snapshot_step_bytes = self.cfg.snapshot_step_bytes;
        rc.read_index = self.cfg.read_index;
        if self.cfg.read_index && self.cfg.read_lease {
            rc.paxos.lease_us = crate::paxos::lease_for(
                self.cfg.tick.as_micros() as u64,
                rc.paxos.election_ticks_min,
            );
        }
        frame_limits(&mut rc, self.cfg.frame_bytes_max);
        // A restarted acceptor reports the log it held above its snapshot.
        rc.paxos.slot_horizon = rc
            .paxos
            .slot_horizon
            .max(2 * self.cfg.snapshot_log_slots as u64);
        rc
    }

    /// Host replica `me` of the master group (gid 0), from disk.
    pub fn host_master(&mut self, members: Vec<String>, me: ReplicaId) {
        let durable = self.recovered.remove(&0).unwrap_or_default();
        let rc = self.replica_config(me, members.len() as u32);
        let sm = MasterMachine::new(MasterOptions {
            shards: self.cfg.shards,
        });
        let replica = Hosted::Master(Replica::new(rc, durable, sm, &mut self.rng));
        log::info!(
            "core {} hosts the master group as replica {me} of {:?}",
            self.id,
            members
        );
        self.insert_group(0, replica, members);
    }

    fn insert_group(&mut self, gid: GroupId, replica: Hosted, servers: Vec<String>) {
        let now = Instant::now();
        let n = servers.len();
        let metrics =
            self.node_metrics
                .register_group(GroupMetrics::new(gid, replica.id(), servers.clone()));
        publish_metrics(&replica, &metrics);
        self.groups.insert(
            gid,
            Group {
                replica,
                servers,
                peers: vec![None; n],
                redial: vec![(now, REDIAL_FIRST); n],
                own: if self.cfg.peer_links { 0 } else { u64::MAX },
                metrics,
                proposed_seen: (0, 0),
                farewell_at: now,
            },
        );
    }

    pub fn run(mut self) {
        self.start_syncer();
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = if !self.read_again.is_empty() {
                Some(Duration::ZERO)
            } else if self.in_sync.is_some() {
                None // the syncer's wake-up ends the wait
            } else if self.capturing {
                Some(Duration::ZERO)
            } else {
                Some(self.next_tick.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                panic!("core {}: poll failed: {e}", self.id);
            }
            self.now_ms = synod_wire::unix_now_ms();
            self.turn_at = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {
                        if !self.drain_control() {
                            return;
                        }
                    }
                    t => {
                        if ev.is_writable() {
                            self.on_writable(t);
                        }
                        let closed = ev.is_read_closed() || ev.is_error();
                        if closed {
                            if let Some(c) = self.conns.get_mut(&t) {
                                c.read_closed = true;
                            }
                        }
                        if closed || ev.is_readable() {
                            self.on_readable(t);
                        }
                    }
                }
            }
            for t in std::mem::take(&mut self.read_again) {
                self.on_readable(t);
            }
            if self.in_sync.is_some() {
                // Timers wait for the sync as they would have inline.
                self.flush_conns();
                continue;
            }
            let now = Instant::now();
            if now >= self.next_tick {
                self.next_tick = now + self.cfg.tick;
                // Before the tick's heartbeats: a lease round is stamped
                // no later than it leaves.
                let clock = micros_since(self.started, now);
                for g in self.groups.values_mut() {
                    g.replica.set_clock(clock);
                    g.replica.tick(&mut self.rng);
                    publish_group(g, &self.metrics);
                }
                if now.duration_since(self.last_sweep) >= SWEEP_EVERY {
                    self.last_sweep = now;
                    self.sweep(now);
                }
                self.redial(now);
                let retry_due = self
                    .migrator
                    .next_wake()
                    .is_some_and(|w| now >= self.started + w);
                if retry_due || now.duration_since(self.last_migration) >= MIGRATION_PASS {
                    self.last_migration = now;
                    self.migrate(now);
                    self.drive_membership();
                }
            }
            self.end_turn();
        }
    }

    /// Returns false on shutdown.
    fn drain_control(&mut self) -> bool {
        while let Ok(c) = self.rx.try_recv() {
            if !self.on_control(c) {
                return false;
            }
        }
        true
    }

    /// Returns false on shutdown.
    fn on_control(&mut self, c: Control) -> bool {
        match c {
            Control::Synced(result) => return self.on_synced(result),
            c if self.in_sync.is_some() => self.deferred_controls.push(c),
            Control::Adopt {
                stream,
                first,
                first_raw,
                rest,
            } => self.adopt(stream, first, first_raw, rest),
            Control::Config(config) => self.on_config(&config),
            Control::Shutdown => return false,
        }
        true
    }

    /// The syncer is done with the sync of `in_sync`'s turn: release that
    /// turn's output as the loop would have right after an inline sync,
    /// then handle what was deferred meanwhile, in arrival order. Returns
    /// false if a deferred shutdown was among it.
    fn on_synced(&mut self, result: std::io::Result<()>) -> bool {
        let Some(turn) = self.in_sync.take() else {
            log::error!("core {}: a sync result with no sync begun", self.id);
            return true;
        };
        let synced = self.wal.finish_sync(result);
        self.after_sync(turn, synced);
        let arrived_now = self.turn_at;
        while let Some(d) = self.deferred.pop_front() {
            self.release_slot(d.t);
            self.turn_at = d.arrived;
            self.handle_frame(d.t, d.frame, d.raw);
        }
        self.turn_at = arrived_now;
        for c in std::mem::take(&mut self.deferred_controls) {
            if !self.on_control(c) {
                return false;
            }
        }
        true
    }

    /// A new configuration: groups hosted here learn servers appended to
    /// their lists (their peer tables grow), and a group whose *members*
    /// list this node starts here (a fresh node added by a replace
    /// included: it catches up from the leader like any laggard). A server
    /// listed as removed is not started: it never was, or it was and must
    /// not vote again under its old id.
    fn on_config(&mut self, config: &Config) {
        self.configs.insert(config.num, config.clone());
        self.prune_configs();
        let now = Instant::now();
        for g in &config.groups {
            if owner_core(g.gid, self.cfg.cores) != self.id {
                continue;
            }
            if let Some(hosted) = self.groups.get_mut(&g.gid) {
                if matches!(hosted.replica, Hosted::Kv(_) | Hosted::Pb(_)) {
                    grow_servers(hosted, &g.servers, now);
                }
                continue;
            }
            if let Some(me) = g.servers.iter().position(|s| *s == self.cfg.advertise) {
                if g.is_member(me) && g.servers.len() <= KV_ID_SPACE as usize {
                    self.host(g, me as ReplicaId);
                }
            }
        }
    }

    /// Drive each KV group led here toward the membership the newest
    /// configuration asks for, one `propose_members` step at a time:
    /// first add a member the configuration lists and the Paxos membership
    /// lacks, once this node holds an open connection to it (an added
    /// replica that never comes up would make one more old member's loss
    /// stall the group, see ARCHITECTURE "Membership change"); only when
    /// none is left to add, remove one the configuration marks removed
    /// (others before the leader itself). The Paxos core enforces the
    /// one-at-a-time and own-ballot rules; this only picks the next step.
    ///
    /// A replica the configuration marks removed and whose own log shows
    /// its removal chosen stops being hosted here.
    fn drive_membership(&mut self) {
        let Some(latest) = self.configs.values().next_back() else {
            return;
        };
        let now = Instant::now();
        let mut retired = Vec::new();
        let mut farewells = Vec::new();
        for (&gid, g) in self.groups.iter_mut() {
            let Some(info) = latest.groups.iter().find(|i| i.gid == gid) else {
                continue;
            };
            let r = match &mut g.replica {
                Hosted::Kv(r) => r,
                // The master's views already leave a removed primary/backup
                // replica out (it counts as dead), so it goes at once.
                Hosted::Pb(r) => {
                    if !info.is_member(r.id() as usize) {
                        retired.push(gid);
                    }
                    continue;
                }
                Hosted::Master(_) => continue,
            };
            let p = r.paxos();
            let me = p.id();
            let current = p.members();
            let target = info.members();
            if !r.is_leader() {
                if current & (1u64 << me) == 0 && !info.is_member(me as usize) {
                    retired.push(gid);
                }
                continue;
            }
            // Replicas removed from the membership: tell them the commit
            // point (a truthful Commit of this ballot), since a leader's
            // own messages go only to members and a removed replica would
            // otherwise never learn its removal was chosen.
            let removed = info.removed & !current & !(1u64 << me);
            if removed != 0 && now.duration_since(g.farewell_at) >= FAREWELL_EVERY {
                g.farewell_at = now;
                farewells.push((gid, removed, p.promised(), p.chosen_upto()));
            }
            if p.members_pending().is_some() {
                continue;
            }
            let connected = |id: ReplicaId| {
                g.peers
                    .get(id as usize)
                    .copied()
                    .flatten()
                    .and_then(|t| self.conns.get(&t))
                    .is_some_and(|c| !c.connecting && !matches!(c.auth, AuthState::Dialing(_)))
            };
            let adds = target & !current;
            let removes = current & !target;
            let next = if adds != 0 {
                member_ids(adds)
                    .find(|&id| connected(id))
                    .map(|id| current | 1u64 << id)
            } else if removes != 0 {
                let id = member_ids(removes).find(|&id| id != me).unwrap_or(me);
                Some(current & !(1u64 << id))
            } else {
                None
            };
            if let Some(next) = next {
                match r.propose_members(next) {
                    Ok(()) => log::info!(
                        "core {}: group {gid} membership {current:#x} -> {next:#x} \
                         (configuration {} asks for {target:#x})",
                        self.id,
                        latest.num
                    ),
                    Err(e) => log::debug!("core {}: group {gid} membership step: {e:?}", self.id),
                }
            }
        }
        for (gid, removed, ballot, chosen_upto) in farewells {
            let from = self.groups[&gid].replica.id();
            for id in member_ids(removed) {
                let commit = PaxosMsg::Commit(synod_wire::Commit {
                    from,
                    ballot,
                    chosen_upto,
                });
                self.send_paxos(gid, id, commit);
            }
        }
        for gid in retired {
            self.retire(gid);
        }
    }

    /// Stop hosting KV group `gid`: this replica's removal is chosen (a
    /// primary/backup replica's: the configuration removed it). Its
    /// connections to the group's peers close; its records stay in the WAL
    /// until segment GC, and a restart does not host it again (the
    /// configuration lists it as removed).
    fn retire(&mut self, gid: GroupId) {
        let Some(g) = self.groups.remove(&gid) else {
            return;
        };
        log::info!(
            "core {}: group {gid}: replica {} was removed from the group; no longer hosted here",
            self.id,
            g.replica.id()
        );
        self.node_metrics.unregister_group(gid);
        // Its own connections; a link stays for the core's other groups.
        for t in g.peers.into_iter().flatten() {
            let own = self
                .conns
                .get(&t)
                .is_some_and(|c| matches!(c.role, Role::Peer { gid: g, .. } if g == gid));
            if own {
                self.close(t, Close::Eof);
            }
        }
    }

    /// Forget configurations no hosted group can need: groups take them in
    /// order, so only those from the oldest one a group is in onwards. Every
    /// core kept every configuration ever made (one 4 MB Join and 40 Moves:
    /// 45 -> 395 MiB). A group hosted later that needs an older one asks the
    /// watcher to publish again from there (`CoreHandle::rewind`).
    fn prune_configs(&mut self) {
        let Some(&latest) = self.configs.keys().next_back() else {
            return;
        };
        let oldest_in_use = self
            .groups
            .values()
            .filter_map(|g| match &g.replica {
                Hosted::Kv(r) => Some(r.state().config().num),
                Hosted::Pb(r) => Some(r.state().config().num),
                Hosted::Master(_) => None,
            })
            .min()
            .unwrap_or(latest);
        let floor = oldest_in_use.saturating_sub(CONFIGS_KEPT_BELOW);
        if self.configs.keys().next().is_some_and(|&n| n < floor) {
            self.configs = self.configs.split_off(&floor);
        }
    }

    /// A group led here needs configuration `num`, pruned or never seen
    /// although later ones were: have the watcher publish from `num` again.
    fn need_config(&self, num: u64) {
        let later_known = self.configs.keys().next_back().is_some_and(|&n| n > num);
        if later_known {
            self.cores[self.id]
                .rewind
                .fetch_min(num, std::sync::atomic::Ordering::Relaxed);
        }
    }

    // ----- connections ------------------------------------------------------

    /// Socket options every connection gets: no Nagle delay (frames are
    /// already batched per turn), and the configured buffer sizes.
    fn tune(&self, stream: &TcpStream) {
        let _ = stream.set_nodelay(true);
        if let Some(bytes) = self.cfg.socket_buf_bytes {
            let sock = socket2::SockRef::from(stream);
            let _ = sock.set_send_buffer_size(bytes);
            let _ = sock.set_recv_buffer_size(bytes);
        }
    }

    fn register(&mut self, mut conn: Conn) -> Option<Token> {
        self.tune(&conn.stream);
        if conn.role == Role::Incoming && !self.make_room() {
            self.warn(format!(
                "core {}: connection limit {} reached and every connection is busy; refusing",
                self.id, self.cfg.connections_max
            ));
            return None;
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        let interest = if conn.connecting {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut conn.stream, token, interest)
        {
            log::warn!("core {}: register failed: {e}", self.id);
            return None;
        }
        conn.want_write = conn.connecting;
        if let Some(t) = &self.tracer {
            conn.trace = Some(t.clone());
            conn.stamp_out = conn.role != Role::Incoming;
        }
        self.count_conn(&conn, true);
        self.conns.insert(token, conn);
        Some(token)
    }

    /// With a cluster key, a connection we dial starts with the handshake
    /// and holds its frames until the server has proved the key. False if
    /// no nonce could be drawn (the connection is dropped; redialed later).
    fn secure(&mut self, conn: &mut Conn, identity: Identity, group: GroupId) -> bool {
        let Some(key) = &self.cfg.keys.cluster else {
            return true;
        };
        match auth::random_nonce() {
            Ok(nonce) => {
                conn.start_dial(key, identity, group, nonce);
                true
            }
            Err(e) => {
                log::error!("core {}: cannot dial: {e}", self.id);
                false
            }
        }
    }

    /// Room for one more accepted connection: below the limit, or after
    /// closing the accepted connection that waits on nothing and has been
    /// quiet longest, preferring one that never sent a valid frame. Idle
    /// sockets thus cannot lock peers or an admin command out (63 of them
    /// did, issue 8 finding 9). Connections this core dialed (to its peers
    /// and for migration) are bounded by the configuration and never count.
    fn make_room(&mut self) -> bool {
        if self.conns.len() < self.cfg.connections_max {
            return true;
        }
        let mut incoming = 0;
        let mut victim: Option<(bool, Instant, Token)> = None;
        for (t, c) in &self.conns {
            if c.role != Role::Incoming {
                continue;
            }
            incoming += 1;
            if c.in_flight > 0 || !c.wbuf.is_empty() {
                continue;
            }
            let key = (c.frames_in > 0, c.last_frame, *t);
            if victim.is_none_or(|v| key < v) {
                victim = Some(key);
            }
        }
        if incoming < self.cfg.connections_max {
            return true;
        }
        match victim {
            Some((_, _, t)) => {
                self.close(
                    t,
                    Close::Limit("evicted (idle) to make room at the connection limit"),
                );
                true
            }
            None => false,
        }
    }

    /// Keep the open-connection gauges (by role) current.
    fn count_conn(&self, c: &Conn, opened: bool) {
        let g = match c.role {
            Role::Incoming => &self.metrics.conns_incoming,
            Role::Peer { .. } | Role::Link { .. } => &self.metrics.conns_peer,
            Role::Rpc { .. } => &self.metrics.conns_rpc,
        };
        if opened {
            g.inc();
        } else {
            g.set(g.get().saturating_sub(1));
        }
    }

    /// Mirror the WAL's counters after a sync (a few relaxed stores).
    fn publish_wal(&self) {
        let s = self.wal.stats();
        let m = &self.metrics;
        m.wal_bytes.set(s.bytes);
        m.wal_writes.set(s.writes);
        m.wal_syncs.set(s.syncs);
        m.wal_segments.set(self.wal.segment_count() as u64);
        m.wal_segments_created.set(s.segments_created);
        m.wal_segments_deleted.set(s.segments_deleted);
        m.wal_segments_recycled.set(s.segments_recycled);
        let new = s.snapshots_written.saturating_sub(m.snapshots.get());
        let spent = s.snapshot_write_us.saturating_sub(self.snapshot_us_seen());
        if let Some(mean) = spent.checked_div(new) {
            // Written this sync: their mean duration, once each.
            m.snapshot_write.observe_n(mean, new);
            m.snapshots.set(s.snapshots_written);
            m.snapshot_bytes.set(s.snapshot_bytes);
        }
    }

    /// Snapshot-writing time already in the histogram, in µs.
    fn snapshot_us_seen(&self) -> u64 {
        self.metrics.snapshot_write.sum()
    }

    /// Log a warning unless too many were logged this second.
    fn warn(&mut self, msg: String) {
        match self.warns.allow(Instant::now()) {
            Some(0) => log::warn!("{msg}"),
            Some(k) => log::warn!("{msg} ({k} similar warnings suppressed)"),
            None => {}
        }
    }

    /// Keep the bytes held in partially received frames on this core under
    /// the budget (20 connections each holding 15 MiB of an unfinished
    /// frame held 300 MiB).
    fn enforce_partial_budget(&mut self) {
        self.enforce_budget(
            |c| c.rbuf.len(),
            self.cfg.partial_frames_budget,
            "partial-frame budget exceeded (largest closed)",
        );
    }

    /// Keep the unread reply bytes of all accepted connections on this
    /// core under the budget (each one's hard cap alone lets many
    /// non-reading clients add up).
    fn enforce_reply_budget(&mut self) {
        self.enforce_budget(
            |c| c.wbuf.len(),
            self.cfg.reply_bytes_budget,
            "unread replies over the core's --reply-bytes-budget",
        );
    }

    /// Close accepted connections, the one holding the most `bytes` first,
    /// until the core's total is within `budget`. One pass over the
    /// connections and one sort, whatever the number closed.
    fn enforce_budget(&mut self, bytes: fn(&Conn) -> usize, budget: usize, why: &'static str) {
        let mut held: Vec<(usize, Token)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.role == Role::Incoming)
            .map(|(t, c)| (bytes(c), *t))
            .collect();
        let mut total: usize = held.iter().map(|(n, _)| n).sum();
        if total <= budget {
            return;
        }
        held.sort_unstable_by(|a, b| b.cmp(a));
        for (n, t) in held {
            if total <= budget {
                break;
            }
            self.close(t, Close::Limit(why));
            total -= n;
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    self.metrics.conns_accepted.inc();
                    let conn = Conn::new(
                        stream,
                        Role::Incoming,
                        self.cfg.frame_bytes_max,
                        Instant::now(),
                    );
                    if let Some(t) = self.register(conn) {
                        log::debug!("core {}: accepted {addr} as {t:?}", self.id);
                        // Data may already be waiting.
                        self.read_again.push(t);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and try again next event.
                    log::warn!("core {}: accept failed: {e}", self.id);
                    return;
                }
            }
        }
    }

    fn adopt(
        &mut self,
        stream: std::net::TcpStream,
        first: Frame,
        first_raw: Bytes,
        rest: bytes::BytesMut,
    ) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let stream = TcpStream::from_std(stream);
        let mut conn = Conn::new(
            stream,
            Role::Incoming,
            self.cfg.frame_bytes_max,
            Instant::now(),
        );
        conn.rbuf = rest;
        conn.frames_in = 1;
        if let Some(t) = self.register(conn) {
            self.handle_frame(t, first, first_raw);
            self.read_again.push(t);
        }
    }

    fn close(&mut self, t: Token, why: Close) {
        if let Some(mut c) = self.conns.remove(&t) {
            self.count_conn(&c, false);
            self.metrics.conns_closed.inc();
            let addr = c
                .stream
                .peer_addr()
                .map_or("?".to_string(), |a| a.to_string());
            match &why {
                Close::Eof => log::debug!("core {}: {addr} {why}", self.id),
                _ => self.warn(format!("core {}: closing {addr}: {why}", self.id)),
            }
            let _ = self.poll.registry().deregister(&mut c.stream);
            if let Role::Peer { gid, peer } = c.role {
                if let Some(g) = self.groups.get_mut(&gid) {
                    g.peers[peer as usize] = None;
                }
            }
            if let Role::Link { addr } = c.role {
                if let Some(l) = self.links.get_mut(&addr) {
                    l.token = None;
                }
                for g in self.groups.values_mut() {
                    for p in g.peers.iter_mut().filter(|p| **p == Some(t)) {
                        *p = None;
                    }
                }
            }
            if let Role::Rpc { target } = c.role {
                self.rpc_conns.retain(|_, tok| *tok != t);
                self.migrator.on_unreachable(target);
                if target == 0 {
                    // The master server our pings went to: try the next.
                    self.pings.master += 1;
                }
            }
        }
    }

    fn on_writable(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        c.connecting = false;
        match c.flush() {
            Ok(true) => {
                if c.want_write {
                    c.want_write = false;
                    let _ = self
                        .poll
                        .registry()
                        .reregister(&mut c.stream, t, Interest::READABLE);
                }
                if c.paused {
                    self.read_again.push(t);
                }
            }
            Ok(false) => {}
            Err(e) => self.close(t, e),
        }
    }

    fn on_readable(&mut self, t: Token) {
        let now = Instant::now();
        let (cap, in_flight_max) = (self.cfg.conn_write_buf_max, self.cfg.conn_in_flight_max);
        // The socket was drained, or the turn's budget for it spent.
        let mut done = false;
        loop {
            // Decode everything buffered.
            loop {
                let Some(c) = self.conns.get_mut(&t) else {
                    return;
                };
                // Back-pressure: while the replies to this connection pile
                // up, stop reading its requests (resumed as replies drain).
                if c.reply_debt() > cap || c.in_flight >= in_flight_max {
                    c.paused = true;
                    // Not reading is our choice: the frame clock restarts
                    // when reading does.
                    c.partial_since = None;
                    return;
                }
                c.paused = false;
                match c.next_frame(now) {
                    Ok(Some((frame, raw))) => {
                        if !self.dispatch(t, frame, raw) {
                            return;
                        }
                    }
                    Ok(None) => {
                        c.note_partial(now);
                        break;
                    }
                    Err(e) => {
                        self.close(t, e);
                        return;
                    }
                }
            }
            if done {
                return;
            }
            // Then read what the socket has.
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            let before = c.rbuf.len();
            let result = c.fill(READ_BUDGET, &mut self.scratch);
            let (held, is_incoming) = (c.rbuf.len(), c.role == Role::Incoming);
            match result {
                Ok(true) => {
                    // Budget spent: decode it now, read the rest next turn.
                    self.read_again.push(t);
                    done = true;
                }
                Ok(false) => {
                    if held == before {
                        return; // WouldBlock with nothing new
                    }
                    // Drained: decode it, and no read that would only
                    // say WouldBlock.
                    done = true;
                }
                Err(e) => {
                    self.close(t, e);
                    return;
                }
            }
            if is_incoming && held >= PARTIAL_CHECK_BYTES {
                self.enforce_partial_budget();
                if !self.conns.contains_key(&t) {
                    return;
                }
            }
        }
    }

    /// Route one frame; false when the connection left this core or closed.
    fn dispatch(&mut self, t: Token, frame: Frame, raw: Bytes) -> bool {
        let Some(c) = self.conns.get(&t) else {
            return false;
        };
        if c.frames_in == 1 && c.role == Role::Incoming {
            let owner = match &frame.message {
                Message::Master(_) => owner_core(0, self.cfg.cores),
                _ => owner_core(frame.group, self.cfg.cores),
            };
            if owner != self.id {
                self.hand_off(t, frame, raw, owner);
                return false;
            }
        }
        if let Message::Request(r) = &frame.message {
            if matches!(r.op, synod_wire::Op::Get { .. }) {
                self.last_get = Some(self.turn_at);
            }
        }
        if self.in_sync.is_some() {
            if !self.read_during_sync(t, &frame) {
                // Counted in flight, so a connection sending on and on
                // while the disk is slow is paused like any other.
                if let Some(c) = self.conns.get_mut(&t) {
                    c.in_flight += 1;
                }
                let arrived = self.turn_at;
                self.deferred.push_back(Deferred {
                    t,
                    frame,
                    raw,
                    arrived,
                });
            }
        } else {
            self.handle_frame(t, frame, raw);
        }
        self.conns.contains_key(&t)
    }

    /// While the loop waits for its sync: answers `frame` if it is a KV read
    /// that a leader holding a lease can answer at once
    /// (`Replica::read_now`), from a connection allowed to ask, for a group
    /// whose output waiting for the sync holds nothing for its state
    /// machine (`Ready::holds_state`). False (nothing done) otherwise: the
    /// frame waits for the sync with every other.
    fn read_during_sync(&mut self, t: Token, frame: &Frame) -> bool {
        let Message::Request(req) = &frame.message else {
            return false;
        };
        let Some(in_sync) = &self.in_sync else {
            return false;
        };
        if self.failed.is_some() {
            return false;
        }
        let Some(c) = self.conns.get(&t) else {
            return false;
        };
        let authed = !matches!(c.auth, AuthState::Accepting(_) | AuthState::Dialing(_))
            && auth::permit(&self.cfg.keys, c.identity(), Need::Client).is_ok();
        if !authed {
            return false;
        }
        let gid = frame.group;
        if in_sync
            .readies
            .iter()
            .any(|(g, ready)| *g == gid && ready.holds_state())
        {
            return false;
        }
        let Some(Group {
            replica: Hosted::Kv(r),
            ..
        }) = self.groups.get_mut(&gid)
        else {
            return false;
        };
        // A lease is judged by the time now, not the turn's.
        let now = Instant::now();
        r.set_clock(micros_since(self.started, now));
        r.set_now_ms(self.now_ms);
        let Some(reply) = r.read_now(req) else {
            return false;
        };
        let kind = metrics::request_kind(&frame.message).unwrap_or(0);
        self.metrics.requests[kind].inc();
        let took = now.saturating_duration_since(self.turn_at);
        self.answer(t, frame.request_id, gid, kind, reply, took);
        true
    }

    /// The first frame is for a group another core owns: give it the socket
    /// (once; every later frame on it goes straight to that core).
    fn hand_off(&mut self, t: Token, first: Frame, first_raw: Bytes, owner: usize) {
        let Some(mut c) = self.conns.remove(&t) else {
            return;
        };
        self.count_conn(&c, false);
        let _ = self.poll.registry().deregister(&mut c.stream);
        let rest = std::mem::take(&mut c.rbuf);
        let std_stream = std::net::TcpStream::from(c.stream);
        let h = &self.cores[owner];
        if h.tx
            .send(Control::Adopt {
                stream: std_stream,
                first,
                first_raw,
                rest,
            })
            .is_ok()
        {
            let _ = h.waker.wake();
        }
    }

    /// `raw` is the frame's kind and body as they arrived: for a request,
    /// its log command, proposed as it is.
    fn handle_frame(&mut self, t: Token, frame: Frame, raw: Bytes) {
        let gid = frame.group;
        let Some(c) = self.conns.get(&t) else {
            return;
        };
        // Mid-handshake, only the handshake's next frame is acceptable: a
        // dialer may pipeline requests only after its proof, and a server
        // sends nothing before its challenge.
        match (&c.auth, &frame.message) {
            (AuthState::Accepting(_), Message::Auth(AuthMsg::Proof(_)))
            | (AuthState::Dialing(_), Message::Auth(AuthMsg::Challenge(_))) => {}
            (AuthState::Accepting(_) | AuthState::Dialing(_), _) => {
                let why = "frame before the handshake finished".to_string();
                self.close(t, Close::Auth(why));
                return;
            }
            _ => {}
        }
        if let Message::Auth(m) = frame.message {
            self.on_auth(t, m);
            return;
        }
        // For the metrics: requests by kind, and below, the replies
        // answered at once (refusals) by kind and result.
        let kind = metrics::request_kind(&frame.message).unwrap_or(0);
        let is_request = matches!(
            frame.message,
            Message::Request(_) | Message::Master(_) | Message::StatusRequest
        );
        if is_request {
            self.metrics.requests[kind].inc();
        }
        let need = match &frame.message {
            Message::Request(_) => Some(Need::Client),
            Message::Master(m) if matches!(m.op, MasterOp::Query { .. }) => Some(Need::Client),
            Message::Master(_) | Message::StatusRequest => Some(Need::Admin),
            Message::Paxos(m) => Some(Need::Paxos {
                gid,
                from: m.from(),
            }),
            // The same peer connections and rule as Paxos messages.
            Message::Pb(m) => Some(Need::Paxos {
                gid,
                from: m.from(),
            }),
            Message::ShardPull(_) | Message::ShardDelete(_) | Message::TxnResolve(_) => {
                Some(Need::Migration)
            }
            // Answers on our own dialed connections: believed only once the
            // server proved the key (a dialed connection with a key is
            // `Done` only after its challenge checked out, above).
            _ => None,
        };
        if let Some(need) = need {
            let c = &self.conns[&t];
            if let Err(why) = auth::permit(&self.cfg.keys, c.identity(), need) {
                match need {
                    // A replica message from a stranger: nothing to answer.
                    Need::Paxos { .. } => self.close(t, Close::Auth(why.to_string())),
                    _ => {
                        let level = if c.refused == 0 {
                            log::Level::Warn
                        } else {
                            log::Level::Debug
                        };
                        log::log!(
                            level,
                            "core {}: refusing {:?} from {}: {why}",
                            self.id,
                            need,
                            peer_name(c)
                        );
                        if let Some(c) = self.conns.get_mut(&t) {
                            c.refused += 1;
                        }
                        let group =
                            if matches!(frame.message, Message::Master(_) | Message::StatusRequest)
                            {
                                0
                            } else {
                                gid
                            };
                        let reply = ClientReply::Error {
                            reason: why.to_string(),
                        };
                        if is_request {
                            self.metrics.reply(kind, metrics::RESULT_ERROR);
                        }
                        self.reply_now(t, frame.request_id, group, reply);
                    }
                }
                return;
            }
        }
        match frame.message {
            Message::Request(req) => {
                if self.failed.is_some() {
                    self.metrics.reply(kind, metrics::RESULT_NOT_LEADER);
                    self.reply_now(t, frame.request_id, gid, stopped_reply());
                    return;
                }
                let to = self.next_reply;
                match self.groups.get_mut(&gid).map(|g| &mut g.replica) {
                    Some(Hosted::Kv(r)) => {
                        r.set_now_ms(self.now_ms);
                        r.on_request_encoded(to, &req, raw);
                    }
                    Some(Hosted::Pb(r)) => {
                        r.set_now_ms(self.now_ms);
                        r.on_request_encoded(to, &req, raw);
                    }
                    _ => {
                        let (result, reply) = self.unserved(gid, false);
                        self.metrics.reply(kind, result);
                        self.reply_now(t, frame.request_id, gid, reply);
                        return;
                    }
                }
                self.await_reply(t, frame.request_id, gid, kind);
            }
            Message::Master(req) => {
                if self.failed.is_some() {
                    self.metrics.reply(kind, metrics::RESULT_NOT_LEADER);
                    self.reply_now(t, frame.request_id, 0, stopped_reply());
                    return;
                }
                let to = self.next_reply;
                let Some(Group {
                    replica: Hosted::Master(r),
                    ..
                }) = self.groups.get_mut(&0)
                else {
                    let (result, reply) = self.unserved(0, true);
                    self.metrics.reply(kind, result);
                    self.reply_now(t, frame.request_id, 0, reply);
                    return;
                };
                r.on_request_encoded(to, &req, raw);
                self.await_reply(t, frame.request_id, 0, kind);
            }
            Message::Paxos(msg) => {
                if self.failed.is_some() {
                    return;
                }
                if let Some(g) = self.groups.get_mut(&gid) {
                    g.replica.step(msg, &mut self.rng);
                } else {
                    self.misrouted(t, gid);
                }
            }
            Message::Pb(msg) => {
                if self.failed.is_some() {
                    return;
                }
                if let Some(Group {
                    replica: Hosted::Pb(r),
                    ..
                }) = self.groups.get_mut(&gid)
                {
                    r.step(msg);
                } else if !self.groups.contains_key(&gid) {
                    self.misrouted(t, gid);
                }
            }
            Message::ShardPull(r) => self.answer_pull(t, frame.request_id, gid, r),
            Message::ShardDelete(r) => self.answer_delete(t, frame.request_id, gid, r),
            Message::TxnResolve(txn) => self.answer_resolve(t, frame.request_id, gid, txn),
            Message::Auth(_) => {} // handled above
            Message::StatusRequest => {
                // Every core's replicas, from what they stored at their
                // last tick: no hop to the other cores.
                let status = self.node_metrics.node_status();
                self.metrics.reply(kind, metrics::RESULT_STATUS);
                self.send_reply(t, frame.request_id, 0, Message::Status(status));
            }
            Message::Reply(ClientReply::WrongCore) if matches!(self.conns.get(&t), Some(c) if matches!(c.role, Role::Link { .. })) => {
                self.unlink(t, gid)
            }
            Message::Reply(_)
            | Message::Config(_)
            | Message::PbView(_)
            | Message::ShardData(_)
            | Message::Status(_) => {
                let is_rpc = self.conns.get(&t).is_some_and(|c| {
                    matches!(c.role, Role::Rpc { .. })
                        && (self.cfg.keys.cluster.is_none() || c.identity().is_some())
                });
                if is_rpc {
                    self.on_rpc_reply(frame.request_id, frame.message);
                } else {
                    self.close(t, Close::Protocol("reply sent to a server"));
                }
            }
        }
    }

    /// One handshake frame (`crate::auth`): a hello or a proof on a
    /// connection we accepted, a challenge on one we dialed. Any failure
    /// closes the connection with the reason logged.
    fn on_auth(&mut self, t: Token, m: AuthMsg) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        let state = std::mem::replace(&mut c.auth, AuthState::None);
        let result: Result<(), String> = match (state, m) {
            (AuthState::None, AuthMsg::Hello(hello)) if c.role == Role::Incoming => {
                if !self.cfg.keys.any() {
                    Err("hello to a server without keys".into())
                } else {
                    auth::random_nonce().and_then(|nonce| {
                        let (acc, challenge) = Accepting::on_hello(&self.cfg.keys, &hello, nonce)
                            .map_err(|e| e.to_string())?;
                        log::debug!("core {}: hello from {:?}", self.id, acc.claimed());
                        c.auth = AuthState::Accepting(acc);
                        c.queue(&Frame {
                            request_id: 0,
                            group: 0,
                            message: Message::Auth(AuthMsg::Challenge(challenge)),
                        });
                        Ok(())
                    })
                }
            }
            (AuthState::Accepting(acc), AuthMsg::Proof(p)) => {
                let claimed = acc.claimed();
                match acc.on_proof(&p) {
                    Ok(id) => {
                        log::debug!("core {}: {} authenticated as {id:?}", self.id, peer_name(c));
                        c.auth = AuthState::Done(id);
                        Ok(())
                    }
                    Err(e) => Err(format!("{e} (claimed {claimed:?})")),
                }
            }
            (AuthState::Dialing(d), AuthMsg::Challenge(ch)) => {
                let id = d.identity();
                match d.on_challenge(&ch) {
                    Ok(proof) => {
                        c.auth = AuthState::Done(id);
                        c.queue(&Frame {
                            request_id: 0,
                            group: 0,
                            message: Message::Auth(AuthMsg::Proof(proof)),
                        });
                        let held = std::mem::take(&mut c.held);
                        c.wbuf.extend_from_slice(&held);
                        Ok(())
                    }
                    Err(e) => Err(format!("the server we dialed failed its proof: {e}")),
                }
            }
            (_, m) => Err(format!("unexpected handshake frame {m:?}")),
        };
        if let Err(why) = result {
            self.close(t, Close::Auth(why));
        }
    }

    // ----- shard migration ----------------------------------------------------

    /// For every KV group this core leads: move to the next configuration,
    /// pull the shards it now owns, and tell previous owners to drop what
    /// was installed (each step a log entry, see `shardkv`). What to send
    /// and when is the migrator's; this is only the I/O.
    fn migrate(&mut self, now: Instant) {
        let now = now.duration_since(self.started);
        let gids: Vec<GroupId> = self.groups.keys().copied().collect();
        for gid in gids {
            let kv = match self.groups.get(&gid).map(|g| &g.replica) {
                Some(Hosted::Kv(r)) if r.is_leader() => r.state(),
                // A primary/backup group moves through configurations and
                // shards the same way, from its serving primary.
                Some(Hosted::Pb(r)) if r.serving() => r.state(),
                _ => continue,
            };
            let num = kv.config().num + 1;
            let next = self.configs.get(&num);
            let actions = self.migrator.poll(gid, kv, next, now);
            let missing = next.is_none().then_some(num);
            if let Some(num) = missing {
                self.need_config(num);
            }
            for a in actions {
                match a {
                    Action::Propose { gid, cmd } => self.propose_internal(gid, cmd),
                    Action::Send {
                        request_id,
                        target,
                        server,
                        message,
                        ..
                    } => self.rpc(request_id, target, server, message),
                }
            }
        }
    }

    fn propose_internal(&mut self, gid: GroupId, cmd: GroupCommand) {
        let proposed = match self.groups.get_mut(&gid).map(|g| &mut g.replica) {
            Some(Hosted::Kv(r)) => r.propose(cmd.encode()),
            Some(Hosted::Pb(r)) => r.propose(cmd.encode()),
            _ => return,
        };
        if let Err(e) = proposed {
            log::debug!("group {gid}: could not propose a migration step: {e:?}");
        }
    }

    /// Send a migration request to member `addr` of `target` on a
    /// connection kept per (server, group).
    fn rpc(&mut self, request_id: u64, target: GroupId, addr: String, msg: Message) {
        let token = match self.rpc_conns.get(&(addr.clone(), target)) {
            Some(t) if self.conns.contains_key(t) => *t,
            _ => {
                let stream = addr
                    .parse::<SocketAddr>()
                    .ok()
                    .and_then(|sock| TcpStream::connect(sock).ok());
                let Some(stream) = stream else {
                    self.migrator.on_send_failed(request_id);
                    return;
                };
                let mut conn = Conn::new(
                    stream,
                    Role::Rpc { target },
                    self.cfg.frame_bytes_max,
                    Instant::now(),
                );
                if !self.secure(&mut conn, Identity::Node, target) {
                    return;
                }
                let Some(t) = self.register(conn) else { return };
                self.rpc_conns.insert((addr, target), t);
                t
            }
        };
        if let Some(c) = self.conns.get_mut(&token) {
            c.queue(&Frame {
                request_id,
                group: target,
                message: msg,
            });
        }
    }

    fn on_rpc_reply(&mut self, request_id: u64, message: Message) {
        if request_id & PING_ID_BIT != 0 {
            self.on_ping_answer(request_id, message);
            return;
        }
        if let Message::ShardData(d) = &message {
            self.metrics.migrate_chunks_in.inc();
            self.metrics.migrate_bytes_in.add(d.data.len() as u64);
        }
        if let Some((gid, cmd)) = self.migrator.on_answer(request_id, message) {
            self.propose_internal(gid, cmd);
        }
    }

    /// Replica `replica` of primary/backup group `gid` pings the view
    /// service (a master request like an operator's, on a connection of
    /// this core's to one master server) that it is alive and ready in
    /// `view`.
    fn send_ping(&mut self, gid: GroupId, replica: ReplicaId, view: u64) {
        if self.cfg.masters.is_empty() {
            return;
        }
        let mut addr = self.cfg.masters[self.pings.master % self.cfg.masters.len()].clone();
        let now = Instant::now();
        if now.duration_since(self.pings.answered_at) > PING_ANSWER_TIMEOUT {
            // Silent: drop that connection (its queued pings are stale)
            // and try the next server.
            self.pings.answered_at = now;
            match self.rpc_conns.get(&(addr.clone(), 0)).copied() {
                Some(t) => self.close(
                    t,
                    Close::Timeout("the view service stopped answering pings"),
                ),
                None => self.pings.master += 1,
            }
            self.pings.waiting.clear();
            addr = self.cfg.masters[self.pings.master % self.cfg.masters.len()].clone();
        }
        self.pings.seq += 1;
        let request_id = PING_ID_BIT | self.pings.seq;
        if self.pings.waiting.len() >= PINGS_WAITING_MAX {
            self.pings.waiting.clear();
        }
        self.pings.waiting.insert(request_id, gid);
        let req = MasterRequest {
            client_id: self.pings.client_id,
            seq: self.pings.seq,
            ack_seq: 0,
            op: MasterOp::PbPing { gid, replica, view },
        };
        self.rpc(request_id, 0, addr, Message::Master(req));
    }

    /// The view service answered a ping: the view to the replica, or a
    /// redirect to follow for the next ping.
    fn on_ping_answer(&mut self, request_id: u64, message: Message) {
        let Some(gid) = self.pings.waiting.remove(&request_id) else {
            return;
        };
        self.pings.answered_at = Instant::now();
        match message {
            Message::PbView(v) if v.gid == gid => {
                if let Some(Group {
                    replica: Hosted::Pb(r),
                    ..
                }) = self.groups.get_mut(&gid)
                {
                    let before = (r.view(), r.serving());
                    r.on_view(&v);
                    if (r.view(), r.serving()) != before {
                        log::info!(
                            "core {}: group {gid} replica {} in view {:?} (serving {})",
                            self.id,
                            r.id(),
                            r.view(),
                            r.serving()
                        );
                    }
                }
            }
            Message::Reply(ClientReply::NotLeader { leader: Some(i) }) => {
                self.pings.master = i as usize;
            }
            Message::Reply(ClientReply::Error { reason }) => {
                log::warn!(
                    "core {}: the view service refused a ping of group {gid}: {reason}",
                    self.id
                );
                self.pings.master += 1;
            }
            _ => self.pings.master += 1,
        }
    }

    /// Another group pulls a chunk of a shard from us.
    fn answer_pull(&mut self, t: Token, request_id: u64, gid: GroupId, r: ShardPull) {
        let message = match self.groups.get(&gid).map(|g| &g.replica) {
            Some(Hosted::Kv(rep)) => serve_pull(rep.state(), &r),
            Some(Hosted::Pb(rep)) => serve_pull(rep.state(), &r),
            _ => Message::Reply(ClientReply::Busy),
        };
        if let Message::ShardData(d) = &message {
            self.metrics.migrate_chunks_out.inc();
            self.metrics.migrate_bytes_out.add(d.data.len() as u64);
        }
        self.send_reply(t, request_id, gid, message);
    }

    /// The new owner installed a shard: drop our copy through our log.
    fn answer_delete(&mut self, t: Token, request_id: u64, gid: GroupId, r: ShardRef) {
        let reply = match self.groups.get_mut(&gid).map(|g| &mut g.replica) {
            Some(Hosted::Kv(rep)) => serve_delete(rep, &r),
            Some(Hosted::Pb(rep)) => serve_delete(rep, &r),
            _ => ClientReply::Busy,
        };
        self.reply_now(t, request_id, gid, reply);
    }

    /// A participant asks for the outcome of a transaction we coordinate:
    /// our logged decision, or Abort through our log first.
    fn answer_resolve(&mut self, t: Token, request_id: u64, gid: GroupId, txn: TxnId) {
        let reply = match self.groups.get_mut(&gid).map(|g| &mut g.replica) {
            Some(Hosted::Kv(rep)) => serve_resolve(rep, txn),
            Some(Hosted::Pb(rep)) => serve_resolve(rep, txn),
            _ => ClientReply::Busy,
        };
        self.reply_now(t, request_id, gid, reply);
    }

    /// Remember who gets the reply to the request just handed to a replica.
    fn await_reply(&mut self, t: Token, request_id: u64, gid: GroupId, kind: usize) {
        let to = self.next_reply;
        self.next_reply += 1;
        self.waiting
            .insert(to, (t, request_id, gid, kind as u8, self.turn_at));
        if let Some(c) = self.conns.get_mut(&t) {
            c.in_flight += 1;
        }
    }

    /// The answer to a KV request (or, with `master`, a master request)
    /// for a group this core hosts no replica of (PROTOCOL.md 5.2): the
    /// group lives on another core of this node than the one the connection
    /// was bound to by its first frame (`WrongCore`: only that core can
    /// tell whether the node hosts it), this node hosts no master replica,
    /// a KV request went to group 0 (a client bug), or the node does not
    /// serve the group.
    fn unserved(&self, gid: GroupId, master: bool) -> (usize, ClientReply) {
        let error = |reason: &str| {
            let reason = reason.to_string();
            (metrics::RESULT_ERROR, ClientReply::Error { reason })
        };
        if owner_core(gid, self.cfg.cores) != self.id {
            (metrics::RESULT_WRONG_CORE, ClientReply::WrongCore)
        } else if master {
            error("this node hosts no master replica")
        } else if gid == 0 {
            error("group 0 is the shard master: send KV requests to a KV group")
        } else {
            (metrics::RESULT_WRONG_GROUP, ClientReply::WrongGroup)
        }
    }

    /// A replication message of group `gid`, which this core does not
    /// host, came on `t`: if another core serves `gid`, the sender's link
    /// is bound to the wrong core for it; `WrongCore` tells it to use a
    /// connection of the group's own. (A group this core would serve but
    /// does not host yet, or no more, just loses the message.)
    fn misrouted(&mut self, t: Token, gid: GroupId) {
        if owner_core(gid, self.cfg.cores) != self.id {
            self.reply_now(t, 0, gid, ClientReply::WrongCore);
        }
    }

    fn reply_now(&mut self, t: Token, request_id: u64, gid: GroupId, reply: ClientReply) {
        self.send_reply(t, request_id, gid, Message::Reply(reply));
    }

    fn send_reply(&mut self, t: Token, request_id: u64, gid: GroupId, message: Message) {
        if let Some(c) = self.conns.get_mut(&t) {
            c.queue(&Frame {
                request_id,
                group: gid,
                message,
            });
            // The soft cap stops reading; requests already taken may still
            // owe more than that (their replies' sizes were not known).
            // Past the hard cap the client is not reading: drop it.
            if c.wbuf.len() > self.cfg.conn_reply_hard_max {
                self.close(t, Close::Limit("unread replies over --conn-reply-hard-max"));
            } else if c.wbuf.len() > self.cfg.conn_write_buf_max {
                // Only connections over the soft cap can tip the core over.
                self.enforce_reply_budget();
            }
        }
    }

    /// Close connections that broke their deadlines.
    fn sweep(&mut self, now: Instant) {
        let mut doomed = Vec::new();
        for (t, c) in &self.conns {
            if c.role != Role::Incoming {
                continue;
            }
            let partial = c
                .partial_since
                .filter(|_| !c.paused)
                .map(|s| now.saturating_duration_since(s));
            let late = now.duration_since(c.created) > self.cfg.first_frame_timeout;
            if c.frames_in == 0 && late {
                doomed.push((*t, "no frame before the first-frame deadline"));
            } else if matches!(c.auth, AuthState::Accepting(_)) && late {
                doomed.push((*t, "handshake not finished before the first-frame deadline"));
            } else if partial.is_some_and(|p| p > self.cfg.frame_timeout) {
                doomed.push((*t, "a partially received frame missed its deadline"));
            } else if partial.is_some_and(|p| {
                p > MIN_RATE_GRACE
                    && c.partial_bytes < self.cfg.min_recv_bytes_per_sec * p.as_secs()
            }) {
                doomed.push((*t, "a frame arriving slower than the minimum receive rate"));
            } else if c.in_flight == 0 && now.duration_since(c.last_frame) > self.cfg.idle_timeout {
                doomed.push((*t, "idle"));
            }
        }
        for (t, why) in doomed {
            self.close(t, Close::Timeout(why));
        }
    }

    /// Dial peers we have messages for and no connection to.
    fn redial(&mut self, now: Instant) {
        let gids: Vec<GroupId> = self.groups.keys().copied().collect();
        for gid in gids {
            let n = self.groups[&gid].servers.len();
            let me = self.groups[&gid].replica.id() as usize;
            let wanted = self.wanted_peers(gid);
            for peer in 0..n {
                if peer == me || self.groups[&gid].peers[peer].is_some() {
                    continue;
                }
                if wanted & (1u64 << peer) == 0 {
                    continue;
                }
                if self.groups[&gid].own & (1u64 << peer) == 0 {
                    self.attach_link(gid, peer, now);
                    continue;
                }
                if now < self.groups[&gid].redial[peer].0 {
                    continue;
                }
                self.dial(gid, peer as ReplicaId, now);
            }
        }
    }

    /// The replica ids of `gid` worth a connection: the members of its
    /// Paxos log and those the newest configuration lists. A server removed
    /// from both is not dialed again (the leader's Commit to it goes out
    /// on a connection still open, if any).
    fn wanted_peers(&self, gid: GroupId) -> u64 {
        let g = &self.groups[&gid];
        let Hosted::Kv(r) = &g.replica else {
            return u64::MAX; // the master group's list never changes
        };
        let p = r.paxos();
        let listed = self
            .configs
            .values()
            .next_back()
            .and_then(|c| c.groups.iter().find(|i| i.gid == gid))
            .map_or(0, GroupInfo::members);
        p.members() | p.members_pending().unwrap_or(0) | listed
    }

    /// The address of `gid`'s replica `peer`, if it is `host:port`.
    fn peer_addr(&self, gid: GroupId, peer: usize) -> Option<SocketAddr> {
        let server = &self.groups[&gid].servers[peer];
        match server.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                log::warn!("group {gid}: peer address {server:?} is not host:port");
                None
            }
        }
    }

    /// The next dial of a backoff `(at, backoff)`: exponential with
    /// jitter, capped, so a dead peer costs one failed connect per
    /// interval, never the loop.
    fn backoff(&mut self, redial: &mut (Instant, Duration), now: Instant) {
        let backoff = redial.1;
        let next = (backoff * 2).min(REDIAL_MAX);
        let jitter = Duration::from_millis(self.rng.range(0, 1 + next.as_millis() as u64 / 4));
        *redial = (now + backoff + jitter, next);
    }

    /// Dials `addr` as `role`, authenticating as `identity` for `group`'s
    /// core; the registered connection's token.
    fn connect(
        &mut self,
        addr: SocketAddr,
        role: Role,
        identity: Identity,
        group: GroupId,
        now: Instant,
    ) -> Option<Token> {
        let stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("core {}: dial {addr} failed: {e}", self.id);
                return None;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut conn = Conn::new(stream, role, self.cfg.frame_bytes_max, now);
        if !self.secure(&mut conn, identity, group) {
            return None;
        }
        self.register(conn)
    }

    /// A connection of `gid`'s own to its replica `peer`.
    fn dial(&mut self, gid: GroupId, peer: ReplicaId, now: Instant) {
        let mut redial = self.groups[&gid].redial[peer as usize];
        self.backoff(&mut redial, now);
        self.groups.get_mut(&gid).expect("hosted").redial[peer as usize] = redial;
        let Some(addr) = self.peer_addr(gid, peer as usize) else {
            return;
        };
        let me = self.groups[&gid].replica.id();
        let identity = Identity::Peer { gid, replica: me };
        if let Some(t) = self.connect(addr, Role::Peer { gid, peer }, identity, gid, now) {
            if let Some(g) = self.groups.get_mut(&gid) {
                g.peers[peer as usize] = Some(t);
            }
        }
    }

    /// Sends `gid`'s messages for its replica `peer` on the core's link to
    /// that server, dialing the link (bound to `gid`'s core there) if there
    /// is none and its backoff allows.
    fn attach_link(&mut self, gid: GroupId, peer: usize, now: Instant) {
        let Some(addr) = self.peer_addr(gid, peer) else {
            return;
        };
        let link = self.links.entry(addr).or_insert(Link {
            token: None,
            redial: (now, REDIAL_FIRST),
        });
        let token = match link.token {
            Some(t) => t,
            None if now < link.redial.0 => return,
            None => {
                let mut redial = link.redial;
                self.backoff(&mut redial, now);
                let role = Role::Link { addr };
                let t = self.connect(addr, role, Identity::Link, gid, now);
                let link = self.links.get_mut(&addr).expect("inserted above");
                link.redial = redial;
                link.token = t;
                let Some(t) = t else {
                    return;
                };
                log::debug!("core {}: link to {addr} dialed for group {gid}", self.id);
                t
            }
        };
        if let Some(g) = self.groups.get_mut(&gid) {
            g.peers[peer] = Some(token);
        }
    }

    /// `WrongCore` for group `gid` on the link `t`: the other server
    /// places `gid` on another core than the link is bound to. The group
    /// talks to that peer on a connection of its own from now on.
    fn unlink(&mut self, t: Token, gid: GroupId) {
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        for (i, p) in g.peers.iter_mut().enumerate() {
            if *p == Some(t) {
                *p = None;
                g.own |= 1u64 << i;
                log::info!(
                    "core {}: group {gid}: replica {i} ({}) is on another core of its server \
                     than this core's link; dialing it on its own connection",
                    self.id,
                    g.servers[i]
                );
            }
        }
    }

    // ----- the end of a turn --------------------------------------------------

    fn end_turn(&mut self) {
        if self.failed.is_some() {
            self.flush_conns();
            return;
        }
        // Snapshots the writer thread made durable since the last turn
        // become their groups' log start now (never before: see
        // `Wal::write_snapshot`).
        match self.wal.snapshots_durable() {
            Ok(done) => {
                for (gid, index) in done {
                    if let Some(g) = self.groups.get_mut(&gid) {
                        let garbage = g.replica.snapshot_durable(index);
                        if !garbage.is_empty() {
                            self.wal.janitor().drop_later(garbage);
                        }
                        g.replica.map_snapshot(gid, &self.wal);
                    }
                }
            }
            Err(e) => {
                self.wal_failed(e);
                self.flush_conns();
                return;
            }
        }
        let mut readies: Vec<(GroupId, Ready)> = Vec::with_capacity(self.groups.len());
        let mut pb_readies: Vec<(GroupId, crate::pb::Ready)> = Vec::new();
        let mut pb_early = Vec::new();
        let mut early = Vec::new();
        let mut chosen_replies = Vec::new();
        self.capturing = false;
        // Read now, after every read of this turn arrived and before the
        // flush's heartbeats leave: the reads served below (before and
        // after the sync) are judged by a time no earlier than their
        // arrival, and the heartbeats stamped no later than they leave.
        let clock = micros_since(self.started, Instant::now());
        for (gid, g) in self.groups.iter_mut() {
            // A snapshot being serialized gets one slice per turn, and the
            // loop polls without sleeping until it is done.
            self.capturing |= g.replica.nudge_capture();
            g.replica.set_clock(clock);
            g.replica.flush();
            // What is chosen is applied and answered before this turn's
            // sync: it waits for a quorum's disks, never for ours (see
            // `Ready::take_chosen`).
            let mut ready = match &mut g.replica {
                Hosted::Kv(r) => ready_chosen_first(r, &mut chosen_replies),
                Hosted::Master(r) => ready_chosen_first(r, &mut chosen_replies),
                Hosted::Pb(r) => {
                    // Same discipline, its own records: into the same WAL
                    // and the same sync, released by the same proof; the
                    // primary's Appends before the sync, like a Paxos
                    // leader's Accepts.
                    let mut ready = r.ready();
                    if !ready.before_sync.is_empty() {
                        pb_early.push((*gid, std::mem::take(&mut ready.before_sync)));
                    }
                    if !ready.is_empty() {
                        self.wal.append_pb(*gid, &ready.records);
                        pb_readies.push((*gid, ready));
                    }
                    continue;
                }
            };
            if !ready.before_sync.is_empty() {
                early.push((*gid, std::mem::take(&mut ready.before_sync)));
            }
            if !ready.is_empty() {
                self.wal.append(*gid, &ready.records);
                readies.push((*gid, ready));
            }
        }
        let answered = !chosen_replies.is_empty();
        if answered {
            // One clock read stamps these replies, as the one after the
            // sync stamps the rest.
            let now = Instant::now();
            for (to, reply) in chosen_replies {
                self.deliver_reply(to, reply, now);
            }
        }
        if !early.is_empty() || !pb_early.is_empty() || answered {
            // A leader's Accepts go out before its own disk write, so the
            // followers' fsyncs overlap ours (see `Ready::before_sync`);
            // the replies above leave before it too.
            for (gid, messages) in early {
                for (to, msg) in messages {
                    self.send_paxos(gid, to, msg);
                }
            }
            for (gid, messages) in pb_early {
                for (to, msg) in messages {
                    self.send_pb(gid, to, msg);
                }
            }
            self.flush_conns();
        }
        if !readies.is_empty() || !pb_readies.is_empty() {
            let began = Instant::now();
            // A turn whose output holds no record (messages to release
            // only) writes nothing: not a group commit for the histogram.
            let dirty = self.wal.dirty();
            let turn = InSync {
                readies,
                pb_readies,
                began,
                dirty,
            };
            // Off the loop only while Gets come: a write-only load would
            // pay a thread hand-off per turn and gain nothing.
            let gets = self
                .last_get
                .is_some_and(|at| self.turn_at.saturating_duration_since(at) < GETS_RECENT);
            let synced = match &self.syncer {
                Some(syncer) if gets => match self.wal.begin_sync() {
                    crate::storage::Begun::Done(synced) => synced,
                    crate::storage::Begun::Job(job) => match syncer.send(job) {
                        Ok(()) => {
                            self.in_sync = Some(turn);
                            self.flush_conns();
                            return;
                        }
                        Err(crossbeam_channel::SendError(job)) => self.wal.finish_sync(job.run()),
                    },
                },
                _ => self.wal.sync(),
            };
            self.after_sync(turn, synced);
        }
        self.flush_conns();
    }

    /// Release a turn's output once its sync is done: `synced` is the
    /// sync's result.
    fn after_sync(
        &mut self,
        turn: InSync,
        synced: Result<crate::paxos::Synced, crate::storage::StorageError>,
    ) {
        let InSync {
            readies,
            pb_readies,
            began,
            dirty,
        } = turn;
        // One clock read after the sync serves the fsync histogram and
        // every reply latency of this turn.
        let now = Instant::now();
        if dirty {
            self.metrics.fsync.observe_duration(now - began);
        }
        self.publish_wal();
        match synced {
            Ok(proof) => {
                for (gid, ready) in pb_readies {
                    let Some(Hosted::Pb(r)) = self.groups.get_mut(&gid).map(|g| &mut g.replica)
                    else {
                        unreachable!("group {gid} was primary/backup this turn");
                    };
                    let me = r.id();
                    let out = r.advance(ready, proof.share());
                    for (to, msg) in out.messages {
                        self.send_pb(gid, to, msg);
                    }
                    if let Some(view) = out.ping {
                        self.send_ping(gid, me, view);
                    }
                    for (to, reply) in out.replies {
                        self.deliver_reply(to, reply, now);
                    }
                    if let Some(w) = out.snapshot_write {
                        // Serialized a slice per turn; written, synced
                        // and renamed on the writer thread, as a Paxos
                        // group's.
                        self.wal.write_snapshot(gid, w.index, w.file);
                    }
                }
                for (gid, ready) in readies {
                    let out = {
                        let g = self.groups.get_mut(&gid).expect("hosted");
                        match &mut g.replica {
                            Hosted::Kv(r) => r.advance(ready, proof.share()),
                            Hosted::Master(r) => r.advance(ready, proof.share()),
                            Hosted::Pb(_) => unreachable!("a Paxos ready of group {gid}"),
                        }
                    };
                    for (to, msg) in out.messages {
                        self.send_paxos(gid, to, msg);
                    }
                    for (to, reply) in out.replies {
                        self.deliver_reply(to, reply, now);
                    }
                    if !out.garbage.is_empty() {
                        self.wal.janitor().drop_later(out.garbage);
                    }
                    if out.installed_snapshot.is_some() {
                        // Restored at start-up or installed from a
                        // peer (synced above): its file is durable.
                        let g = self.groups.get_mut(&gid).expect("hosted");
                        g.replica.map_snapshot(gid, &self.wal);
                    }
                    if let Some((index, data)) = out.snapshot_write {
                        // Serialized in this turn; written, synced and
                        // renamed on the WAL's writer thread.
                        self.wal.write_snapshot(gid, index, data);
                    }
                }
            }
            Err(e) => self.wal_failed(e),
        }
    }

    /// Never acknowledge what could not be persisted, and never retry a
    /// failed sync (or snapshot write) as if nothing happened: this core's
    /// replicas stop; their clients are told and go elsewhere.
    fn wal_failed(&mut self, e: crate::storage::StorageError) {
        log::error!("core {}: WAL failed, stopping its replicas: {e}", self.id);
        self.failed = Some(e.to_string());
        self.metrics.wal_failed.set(1);
        let waiting: Vec<_> = self.waiting.drain().collect();
        for (_, (t, rid, gid, kind, _)) in waiting {
            self.metrics
                .reply(kind as usize, metrics::RESULT_NOT_LEADER);
            self.reply_now(t, rid, gid, stopped_reply());
        }
    }

    fn send_paxos(&mut self, gid: GroupId, to: ReplicaId, msg: PaxosMsg) {
        self.send_peer(gid, to, Message::Paxos(msg));
    }

    fn send_pb(&mut self, gid: GroupId, to: ReplicaId, msg: PbMsg) {
        if let PbMsg::Transfer(tr) = &msg {
            // Chunks are at most a quarter frame (`host_pb`).
            assert!(
                tr.data.len() <= (self.cfg.frame_bytes_max / 4) as usize,
                "a state-transfer chunk larger than its page"
            );
        }
        self.send_peer(gid, to, Message::Pb(msg));
    }

    /// Queues a replication message of group `gid` for replica `to`.
    fn send_peer(&mut self, gid: GroupId, to: ReplicaId, message: Message) {
        let Some(g) = self.groups.get(&gid) else {
            return;
        };
        let Some(Some(t)) = g.peers.get(to as usize) else {
            return; // not connected: both protocols resend; redial is on the timer
        };
        let t = *t;
        let cap = self.cfg.conn_write_buf_max;
        if let Some(c) = self.conns.get_mut(&t) {
            if c.queued_bytes() > cap {
                return; // a slow peer loses messages, not our memory
            }
            c.queue(&Frame {
                request_id: 0,
                group: gid,
                message,
            });
        }
    }

    fn deliver_reply(&mut self, to: ReplyTo, reply: Message, now: Instant) {
        let Some((t, rid, gid, kind, arrived)) = self.waiting.remove(&to) else {
            return;
        };
        self.release_slot(t);
        let took = now.saturating_duration_since(arrived);
        self.answer(t, rid, gid, kind as usize, reply, took);
    }

    /// A request of connection `t` no longer counts in flight: a
    /// connection paused for too many is read again.
    fn release_slot(&mut self, t: Token) {
        if let Some(c) = self.conns.get_mut(&t) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if c.paused {
                self.read_again.push(t);
            }
        }
    }

    /// Count the reply to a request of `kind` answered `took` after it
    /// arrived, then queue it on connection `t`.
    fn answer(
        &mut self,
        t: Token,
        rid: u64,
        gid: GroupId,
        kind: usize,
        reply: Message,
        took: Duration,
    ) {
        self.metrics.reply(kind, metrics::result_of(&reply));
        self.metrics.latency[kind].observe_duration(took);
        self.send_reply(t, rid, gid, reply);
    }

    fn flush_conns(&mut self) {
        if let Some(t) = &self.tracer {
            t.flush();
        }
        let mut broken = Vec::new();
        for (t, c) in self.conns.iter_mut() {
            if c.wbuf.is_empty() || c.connecting {
                continue;
            }
            match c.flush() {
                Ok(true) => {}
                Ok(false) => {
                    if !c.want_write {
                        c.want_write = true;
                        let _ = self.poll.registry().reregister(
                            &mut c.stream,
                            *t,
                            Interest::READABLE | Interest::WRITABLE,
                        );
                    }
                }
                Err(e) => broken.push((*t, e)),
            }
        }
        for (t, e) in broken {
            self.close(t, e);
        }
    }
}

/// The loop's monotonic clock for read leases: µs from `start` to `now`.
fn micros_since(start: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(start).as_micros() as u64
}

/// A replica's `Ready` for this turn, with what is already chosen applied
/// and its replies added to `replies` (`Replica::advance_chosen`).
fn ready_chosen_first<S: crate::replica::StateMachine>(
    r: &mut Replica<S>,
    replies: &mut Vec<(ReplyTo, Message)>,
) -> Ready {
    let mut ready = r.ready();
    replies.extend(r.advance_chosen(&mut ready).replies);
    ready
}

/// Appends the servers a newer configuration lists past the group's
/// known ones (ids are positions and only ever appended, so the known
/// prefix never changes).
fn grow_servers(g: &mut Group, servers: &[String], now: Instant) {
    let known = g.servers.len();
    if servers.len() <= known || servers.len() > KV_ID_SPACE as usize {
        return;
    }
    debug_assert_eq!(&servers[..known], &g.servers[..], "a server changed id");
    for s in &servers[known..] {
        log::info!(
            "group {}: learns server {s} (replica {})",
            g.metrics.gid,
            g.servers.len()
        );
        g.servers.push(s.clone());
        g.peers.push(None);
        g.redial.push((now, REDIAL_FIRST));
    }
}

/// Store a group's state for the metrics and status (once per tick), and
/// the batch sizes its leader proposed since the last time.
fn publish_group(g: &mut Group, m: &CoreMetrics) {
    let Some(view) = g.replica.view() else {
        publish_metrics(&g.replica, &g.metrics);
        return;
    };
    let s = view.paxos.stats();
    let (slots, cmds) = (
        s.slots_proposed.saturating_sub(g.proposed_seen.0),
        s.commands_proposed.saturating_sub(g.proposed_seen.1),
    );
    if let Some(mean) = cmds.checked_div(slots) {
        m.batch.observe_n(mean, slots);
        m.slots_proposed.add(slots);
        m.commands_proposed.add(cmds);
    }
    g.proposed_seen = (s.slots_proposed, s.commands_proposed);
    g.metrics.publish(view);
}

/// Store a replica's state in its group's gauges: a Paxos replica's view,
/// or a primary/backup replica's in the same gauges (leading = serving
/// primary, ballot round = view number, ballot node = the primary).
fn publish_metrics(replica: &Hosted, metrics: &GroupMetrics) {
    match (replica.view(), replica) {
        (Some(view), _) => metrics.publish(view),
        (None, Hosted::Pb(r)) => {
            let c = r.state().config();
            metrics.publish_pb(crate::metrics::PbView {
                serving: r.serving(),
                primary: r.view().map(|v| v.primary),
                view: r.view().map_or(r.highest_view(), |v| v.num),
                commit: r.commit(),
                applied: r.applied(),
                log_entries: r.log_end() - r.log_start(),
                config: (c.num, &c.shards),
            });
        }
        (None, _) => {}
    }
}

/// The remote address of a connection, for logs.
fn peer_name(c: &Conn) -> String {
    c.stream
        .peer_addr()
        .map_or("?".to_string(), |a| a.to_string())
}

/// Sizes that must fit this node's frame limit: the largest client command
/// (so an Accept carrying it fits a frame), and the pages of Promise,
/// catch-up and Accept messages and snapshot chunks (a quarter frame).
fn frame_limits(rc: &mut ReplicaConfig, frame_bytes_max: u32) {
    let page = (frame_bytes_max / 4) as usize;
    rc.command_bytes_max = synod_wire::command_bytes_max(frame_bytes_max);
    rc.paxos.catchup_bytes_max = rc.paxos.catchup_bytes_max.min(page);
    rc.paxos.batch_bytes_max = rc.paxos.batch_bytes_max.min(page);
    rc.paxos.snapshot_chunk_bytes = rc.paxos.snapshot_chunk_bytes.min(page);
}
