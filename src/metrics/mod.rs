//! Operational metrics: what the cores publish and how a scrape reads them.
//!
//! Owns the counters, gauges and histograms of one node and their text in
//! the Prometheus exposition format (`render`); `http.rs` serves that text
//! on `synod-server --metrics-listen`. Must never take a lock or make a
//! system call on the request path: each core owns its own `CoreMetrics`
//! and only does relaxed atomic adds and stores on it (a histogram
//! observation is three of them), and a scrape sums the cores' values.
//! Per-group values (`GroupMetrics`) are stored by the group's core once
//! per tick; the group table's mutex is taken only when a group starts
//! and at a scrape or status request, never per request.
//!
//! Why not the `prometheus-client` crate: its histogram takes a lock per
//! observation and its registry wants `Arc`-wrapped metrics handed around,
//! while what is needed here is per-core arrays of atomics merged at
//! scrape; the text format itself is a few lines (`Text`), tested below.

pub mod http;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use synod_wire::{ClientReply, GroupId, MasterOp, Message, Op};

/// A monotonic count (relaxed: a scrape needs no ordering with anything).
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    /// For counters mirrored from a count kept elsewhere (the WAL's).
    pub fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
pub type Gauge = Counter;

/// Bucket upper bounds for durations, in microseconds (50 µs .. 10 s).
pub const DURATION_BUCKETS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Bucket upper bounds for commands per Paxos slot.
pub const BATCH_BUCKETS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// A fixed-bucket histogram of integer observations (microseconds or
/// counts). The last bucket is +Inf.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
    }

    /// `n` observations of `v` (a mean over `n` events counted together).
    pub fn observe_n(&self, v: u64, n: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.buckets[i].fetch_add(n, Relaxed);
        self.sum.fetch_add(v.saturating_mul(n), Relaxed);
    }

    /// The sum of the observations.
    pub fn sum(&self) -> u64 {
        self.sum.load(Relaxed)
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_micros().min(u64::MAX as u128) as u64);
    }

    /// Per-bucket counts (not cumulative) and the sum.
    fn snapshot(&self) -> (Vec<u64>, u64) {
        (
            self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            self.sum.load(Relaxed),
        )
    }
}

/// Request kinds, as a label and an index into per-kind arrays.
pub const REQUEST_KINDS: [&str; 29] = [
    "get",
    "put",
    "append",
    "delete",
    "incr",
    "put_if",
    "get_del",
    "master_join",
    "master_leave",
    "master_move",
    "master_query",
    "status",
    "txn",
    "put_ex",
    "expire",
    "ttl",
    "get_ex",
    "set_range",
    "incr_by_float",
    "scan",
    "count",
    "flush",
    "txn_prepare",
    "txn_decide",
    "txn_finish",
    "master_replace",
    "master_add_member",
    "master_remove_member",
    "master_pb_ping",
];
pub const KIND_STATUS: usize = 11;

/// Reply results, as a label and an index.
pub const RESULTS: [&str; 10] = [
    "ok",
    "no_key",
    "wrong_group",
    "not_leader",
    "busy",
    "error",
    "session_expired",
    "config",
    "status",
    "wrong_core",
];

pub const RESULT_WRONG_GROUP: usize = 2;
pub const RESULT_NOT_LEADER: usize = 3;
pub const RESULT_ERROR: usize = 5;
pub const RESULT_STATUS: usize = 8;
pub const RESULT_WRONG_CORE: usize = 9;

/// The kind index of a request message (`None`: not a request).
pub fn request_kind(m: &Message) -> Option<usize> {
    Some(match m {
        Message::Request(r) => match r.op {
            Op::Get { .. } => 0,
            Op::Put { .. } => 1,
            Op::Append { .. } => 2,
            Op::Delete { .. } => 3,
            Op::Incr { .. } => 4,
            Op::PutIf { .. } => 5,
            Op::GetDel { .. } => 6,
            Op::Txn(_) => 12,
            Op::PutEx { .. } => 13,
            Op::Expire { .. } => 14,
            Op::Ttl { .. } => 15,
            Op::GetEx { .. } => 16,
            Op::SetRange { .. } => 17,
            Op::IncrByFloat { .. } => 18,
            Op::Scan { .. } => 19,
            Op::Count { .. } => 20,
            Op::Flush { .. } => 21,
            Op::TxnPrepare(_) => 22,
            Op::TxnDecide(_) => 23,
            Op::TxnFinish(_) => 24,
        },
        Message::Master(r) => match r.op {
            MasterOp::Join { .. } => 7,
            MasterOp::Leave { .. } => 8,
            MasterOp::Move { .. } => 9,
            MasterOp::Query { .. } => 10,
            MasterOp::Replace { .. } => 25,
            MasterOp::AddMember { .. } => 26,
            MasterOp::RemoveMember { .. } => 27,
            MasterOp::PbPing { .. } => 28,
        },
        Message::StatusRequest => KIND_STATUS,
        _ => return None,
    })
}

/// The result index of a reply message.
pub fn result_of(m: &Message) -> usize {
    match m {
        Message::Reply(r) => match r {
            ClientReply::Ok(_) => 0,
            ClientReply::NoKey => 1,
            ClientReply::WrongGroup => 2,
            ClientReply::NotLeader { .. } => 3,
            ClientReply::Busy => 4,
            ClientReply::Error { .. } => 5,
            ClientReply::SessionExpired => 6,
            ClientReply::WrongCore => RESULT_WRONG_CORE,
        },
        Message::Config(_) => 7,
        _ => 8,
    }
}

fn histograms(n: usize, bounds: &'static [u64]) -> Box<[Histogram]> {
    (0..n).map(|_| Histogram::new(bounds)).collect()
}

fn counters(n: usize) -> Box<[Counter]> {
    (0..n).map(|_| Counter::default()).collect()
}

/// What one core counts. Only that core writes it.
#[derive(Debug)]
pub struct CoreMetrics {
    /// Requests received, by kind.
    pub requests: Box<[Counter]>,
    /// Replies sent to requests, by kind × result (`kind * RESULTS.len() + result`).
    pub replies: Box<[Counter]>,
    /// From the loop turn a request was read in to the turn its reply was
    /// queued, by kind.
    pub latency: Box<[Histogram]>,
    /// One WAL write + fdatasync (a group commit).
    pub fsync: Histogram,
    /// Commands per Paxos slot proposed by leaders on this core.
    pub batch: Histogram,
    pub slots_proposed: Counter,
    pub commands_proposed: Counter,
    pub wal_bytes: Counter,
    pub wal_writes: Counter,
    pub wal_syncs: Counter,
    pub wal_segments: Gauge,
    pub wal_segments_created: Counter,
    pub wal_segments_deleted: Counter,
    pub wal_segments_recycled: Counter,
    pub wal_failed: Gauge,
    pub snapshots: Counter,
    pub snapshot_bytes: Counter,
    /// Writing one snapshot file (temp file, fsync, rename).
    pub snapshot_write: Histogram,
    pub conns_incoming: Gauge,
    pub conns_peer: Gauge,
    pub conns_rpc: Gauge,
    pub conns_accepted: Counter,
    pub conns_closed: Counter,
    pub migrate_chunks_in: Counter,
    pub migrate_bytes_in: Counter,
    pub migrate_chunks_out: Counter,
    pub migrate_bytes_out: Counter,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        let k = REQUEST_KINDS.len();
        CoreMetrics {
            requests: counters(k),
            replies: counters(k * RESULTS.len()),
            latency: histograms(k, DURATION_BUCKETS_US),
            fsync: Histogram::new(DURATION_BUCKETS_US),
            batch: Histogram::new(BATCH_BUCKETS),
            slots_proposed: Counter::default(),
            commands_proposed: Counter::default(),
            wal_bytes: Counter::default(),
            wal_writes: Counter::default(),
            wal_syncs: Counter::default(),
            wal_segments: Counter::default(),
            wal_segments_created: Counter::default(),
            wal_segments_deleted: Counter::default(),
            wal_segments_recycled: Counter::default(),
            wal_failed: Counter::default(),
            snapshots: Counter::default(),
            snapshot_bytes: Counter::default(),
            snapshot_write: Histogram::new(DURATION_BUCKETS_US),
            conns_incoming: Counter::default(),
            conns_peer: Counter::default(),
            conns_rpc: Counter::default(),
            conns_accepted: Counter::default(),
            conns_closed: Counter::default(),
            migrate_chunks_in: Counter::default(),
            migrate_bytes_in: Counter::default(),
            migrate_chunks_out: Counter::default(),
            migrate_bytes_out: Counter::default(),
        }
    }
}

impl CoreMetrics {
    pub fn reply(&self, kind: usize, result: usize) {
        self.replies[kind * RESULTS.len() + result].inc();
    }
}

/// One hosted replica's state, stored by its core once per tick.
#[derive(Debug)]
pub struct GroupMetrics {
    pub gid: GroupId,
    pub replica: u32,
    pub members: Vec<String>,
    pub leading: Gauge,
    /// The replica this one believes leads; `u64::MAX`: none known.
    pub leader_hint: Gauge,
    pub ballot_round: Gauge,
    pub ballot_node: Gauge,
    pub commit: Gauge,
    pub applied: Gauge,
    pub log_slots: Gauge,
    /// The Paxos membership at the commit point (bit `i`: replica `i`).
    pub membership: Gauge,
    pub in_flight: Gauge,
    pub pending: Gauge,
    pub elections: Counter,
    pub prevotes: Counter,
    pub leader_changes: Counter,
    pub snapshots_installed: Counter,
    /// Reads answered without a log slot, and those of them answered
    /// under a read lease (no quorum round).
    pub reads_served: Counter,
    pub reads_leased: Counter,
    pub config_num: Gauge,
    /// Shards the group serves in its current configuration (rewritten
    /// only when that configuration changes).
    pub shards: Mutex<Vec<u32>>,
}

/// What a core reads off a replica to publish.
pub struct ReplicaView<'a> {
    pub paxos: &'a crate::paxos::Paxos,
    /// `(configuration number, its shard → gid table)` for a KV group.
    pub config: Option<(u64, &'a [GroupId])>,
    /// `Replica::read_counts`: reads answered, and under a lease.
    pub reads: (u64, u64),
}

/// A primary/backup replica's state, for the same gauges as a Paxos
/// replica's ([`GroupMetrics::publish_pb`]).
pub struct PbView<'a> {
    /// The primary of its view, serving.
    pub serving: bool,
    /// The primary of the view it adopted.
    pub primary: Option<u32>,
    /// The view it adopted (or the highest, after a restart).
    pub view: u64,
    pub commit: u64,
    pub applied: u64,
    pub log_entries: u64,
    pub config: (u64, &'a [GroupId]),
}

impl GroupMetrics {
    /// A primary/backup replica's state in the gauges a Paxos replica
    /// fills: leading = serving primary, the leader hint = the primary,
    /// the ballot = (view number, primary), slots = log positions.
    pub fn publish_pb(&self, v: PbView) {
        let hint = v.primary.map_or(u64::MAX, u64::from);
        let old = self.leader_hint.get();
        if hint != old && hint != u64::MAX {
            self.leader_changes.inc();
        }
        self.leader_hint.set(hint);
        self.leading.set(u64::from(v.serving));
        self.ballot_round.set(v.view);
        self.ballot_node.set(v.primary.map_or(0, u64::from));
        self.commit.set(v.commit);
        self.applied.set(v.applied);
        self.log_slots.set(v.log_entries);
        let (num, table) = v.config;
        if num != self.config_num.get() {
            let mine = (0..table.len() as u32)
                .filter(|&s| table[s as usize] == self.gid)
                .collect();
            *self.shards.lock().unwrap_or_else(|e| e.into_inner()) = mine;
            self.config_num.set(num);
        }
    }

    pub fn new(gid: GroupId, replica: u32, members: Vec<String>) -> GroupMetrics {
        GroupMetrics {
            gid,
            replica,
            members,
            leading: Gauge::default(),
            leader_hint: Gauge::default(),
            ballot_round: Gauge::default(),
            ballot_node: Gauge::default(),
            commit: Gauge::default(),
            applied: Gauge::default(),
            log_slots: Gauge::default(),
            membership: Gauge::default(),
            in_flight: Gauge::default(),
            pending: Gauge::default(),
            elections: Counter::default(),
            prevotes: Counter::default(),
            leader_changes: Counter::default(),
            snapshots_installed: Counter::default(),
            reads_served: Counter::default(),
            reads_leased: Counter::default(),
            config_num: Gauge::default(),
            shards: Mutex::new(Vec::new()),
        }
    }

    /// Store the replica's state (a few relaxed stores; once per tick).
    pub fn publish(&self, v: ReplicaView) {
        let p = v.paxos;
        let hint = p.leader_hint().map_or(u64::MAX, u64::from);
        let old = self.leader_hint.get();
        if hint != old && hint != u64::MAX {
            self.leader_changes.inc();
        }
        self.leader_hint.set(hint);
        let leading = p.is_leader();
        self.leading.set(u64::from(leading));
        let b = p.promised();
        self.ballot_round.set(b.round);
        self.ballot_node.set(u64::from(b.node));
        self.commit.set(p.chosen_upto());
        self.applied.set(p.applied_upto());
        self.log_slots.set(p.log().len() as u64);
        self.membership.set(p.members());
        // Slots the leader has handed out and not yet seen chosen.
        let in_flight = if leading {
            p.log().end().saturating_sub(p.chosen_upto())
        } else {
            0
        };
        self.in_flight.set(in_flight);
        self.pending.set(p.pending_len() as u64);
        let s = p.stats();
        self.elections.set(s.elections_started);
        self.prevotes.set(s.prevotes_started);
        self.snapshots_installed.set(s.snapshots_installed);
        self.reads_served.set(v.reads.0);
        self.reads_leased.set(v.reads.1);
        if let Some((num, table)) = v.config {
            if num != self.config_num.get() {
                let mine = (0..table.len() as u32)
                    .filter(|&s| table[s as usize] == self.gid)
                    .collect();
                *self.shards.lock().unwrap_or_else(|e| e.into_inner()) = mine;
                self.config_num.set(num);
            }
        }
    }

    /// This replica's view, as the status request answers it.
    pub fn status(&self) -> synod_wire::GroupStatus {
        let hint = self.leader_hint.get();
        synod_wire::GroupStatus {
            gid: self.gid,
            replica: self.replica,
            members: self.members.clone(),
            leading: self.leading.get() == 1,
            leader: (hint != u64::MAX).then_some(hint as u32),
            ballot: synod_wire::Ballot {
                round: self.ballot_round.get(),
                node: self.ballot_node.get() as u32,
            },
            commit: self.commit.get(),
            applied: self.applied.get(),
            log_slots: self.log_slots.get(),
            config_num: self.config_num.get(),
            shards: self
                .shards
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// The RESP gateway's counters (it runs in the server's process, at most
/// once, so one static set).
#[derive(Debug, Default)]
pub struct RespMetrics {
    pub commands: Counter,
    pub protocol_errors: Counter,
}

pub static RESP: RespMetrics = RespMetrics {
    commands: Counter(AtomicU64::new(0)),
    protocol_errors: Counter(AtomicU64::new(0)),
};

/// Every metric of one node.
#[derive(Debug)]
pub struct Metrics {
    pub node: String,
    started: Instant,
    pub cores: Vec<Arc<CoreMetrics>>,
    groups: Mutex<BTreeMap<GroupId, Arc<GroupMetrics>>>,
}

impl Metrics {
    pub fn new(node: String, cores: usize) -> Metrics {
        Metrics {
            node,
            started: Instant::now(),
            cores: (0..cores).map(|_| Arc::default()).collect(),
            groups: Mutex::new(BTreeMap::new()),
        }
    }

    /// A group started on some core: its gauges (control path only).
    pub fn register_group(&self, g: GroupMetrics) -> Arc<GroupMetrics> {
        let g = Arc::new(g);
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(g.gid, g.clone());
        g
    }

    /// A group no longer hosted here (its replica was removed from it).
    pub fn unregister_group(&self, gid: GroupId) {
        let _gone = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&gid);
    }

    pub fn groups(&self) -> Vec<Arc<GroupMetrics>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// What this node answers a status request with.
    pub fn node_status(&self) -> synod_wire::NodeStatus {
        synod_wire::NodeStatus {
            node: self.node.clone(),
            groups: self.groups().iter().map(|g| g.status()).collect(),
        }
    }

    /// Every metric in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut t = Text::default();
        let sum = |f: &dyn Fn(&CoreMetrics) -> u64| self.cores.iter().map(|c| f(c)).sum::<u64>();
        let node = [("node", self.node.as_str())];

        t.family(
            "synod_up_seconds",
            "Seconds since this node started.",
            "gauge",
        );
        t.sample(
            "synod_up_seconds",
            &node,
            self.started.elapsed().as_secs_f64(),
        );

        t.family(
            "synod_requests_total",
            "Requests received, by kind.",
            "counter",
        );
        for (k, kind) in REQUEST_KINDS.iter().enumerate() {
            t.sample(
                "synod_requests_total",
                &[("kind", kind)],
                sum(&|c| c.requests[k].get()),
            );
        }
        t.family(
            "synod_replies_total",
            "Replies sent, by request kind and result.",
            "counter",
        );
        for (k, kind) in REQUEST_KINDS.iter().enumerate() {
            for (r, result) in RESULTS.iter().enumerate() {
                let v = sum(&|c| c.replies[k * RESULTS.len() + r].get());
                if v > 0 {
                    t.sample(
                        "synod_replies_total",
                        &[("kind", kind), ("result", result)],
                        v,
                    );
                }
            }
        }
        t.family(
            "synod_request_duration_seconds",
            "From the loop turn that read a request to the turn that queued its reply, by kind.",
            "histogram",
        );
        for (k, kind) in REQUEST_KINDS.iter().enumerate() {
            if k == KIND_STATUS {
                continue; // answered at once, never waits on a replica
            }
            let hs: Vec<&Histogram> = self.cores.iter().map(|c| &c.latency[k]).collect();
            t.histogram(
                "synod_request_duration_seconds",
                &[("kind", kind)],
                &hs,
                1e6,
            );
        }
        let hist = |t: &mut Text,
                    name: &str,
                    help: &str,
                    f: &dyn Fn(&CoreMetrics) -> &Histogram,
                    scale| {
            t.family(name, help, "histogram");
            let hs: Vec<&Histogram> = self.cores.iter().map(|c| f(c)).collect();
            t.histogram(name, &[], &hs, scale);
        };
        hist(
            &mut t,
            "synod_wal_sync_duration_seconds",
            "One group commit: the WAL write and fdatasync of a loop turn.",
            &|c| &c.fsync,
            1e6,
        );
        hist(
            &mut t,
            "synod_paxos_batch_commands",
            "Commands per Paxos slot proposed by leaders on this node.",
            &|c| &c.batch,
            1.0,
        );
        hist(
            &mut t,
            "synod_snapshot_write_duration_seconds",
            "Writing one snapshot file (temp file, fsync, rename).",
            &|c| &c.snapshot_write,
            1e6,
        );
        let counter =
            |t: &mut Text, name: &str, help: &str, ty: &str, f: &dyn Fn(&CoreMetrics) -> u64| {
                t.family(name, help, ty);
                t.sample(name, &[], sum(f));
            };
        counter(
            &mut t,
            "synod_paxos_slots_proposed_total",
            "Paxos slots proposed by leaders on this node.",
            "counter",
            &|c| c.slots_proposed.get(),
        );
        counter(
            &mut t,
            "synod_paxos_commands_proposed_total",
            "Commands proposed in those slots.",
            "counter",
            &|c| c.commands_proposed.get(),
        );
        counter(
            &mut t,
            "synod_wal_bytes_total",
            "Bytes written to WAL segments.",
            "counter",
            &|c| c.wal_bytes.get(),
        );
        counter(
            &mut t,
            "synod_wal_writes_total",
            "write(2) calls on WAL segments.",
            "counter",
            &|c| c.wal_writes.get(),
        );
        counter(
            &mut t,
            "synod_wal_fsyncs_total",
            "fdatasync/fsync calls of WAL segments, snapshot files and directories.",
            "counter",
            &|c| c.wal_syncs.get(),
        );
        counter(
            &mut t,
            "synod_wal_segments",
            "WAL segment files on disk.",
            "gauge",
            &|c| c.wal_segments.get(),
        );
        counter(
            &mut t,
            "synod_wal_segments_created_total",
            "WAL segments created.",
            "counter",
            &|c| c.wal_segments_created.get(),
        );
        counter(
            &mut t,
            "synod_wal_segments_recycled_total",
            "WAL segments started in a dead segment's file instead of a new one (counted in created too).",
            "counter",
            &|c| c.wal_segments_recycled.get(),
        );
        counter(
            &mut t,
            "synod_wal_segments_deleted_total",
            "WAL segments deleted (all their slots below a snapshot).",
            "counter",
            &|c| c.wal_segments_deleted.get(),
        );
        counter(
            &mut t,
            "synod_wal_failed",
            "Cores whose WAL failed (their replicas stopped).",
            "gauge",
            &|c| c.wal_failed.get(),
        );
        counter(
            &mut t,
            "synod_snapshots_total",
            "Snapshot files written.",
            "counter",
            &|c| c.snapshots.get(),
        );
        counter(
            &mut t,
            "synod_snapshot_bytes_total",
            "Bytes of snapshot files written.",
            "counter",
            &|c| c.snapshot_bytes.get(),
        );
        counter(
            &mut t,
            "synod_connections_accepted_total",
            "Connections accepted.",
            "counter",
            &|c| c.conns_accepted.get(),
        );
        counter(
            &mut t,
            "synod_connections_closed_total",
            "Connections closed (any role, any reason).",
            "counter",
            &|c| c.conns_closed.get(),
        );
        t.family("synod_connections", "Open connections, by role: incoming (clients, peers' outgoing), peer (dialed for replication: a link to a server's core, or one group's own to a replica), rpc (dialed for migration).", "gauge");
        t.sample(
            "synod_connections",
            &[("role", "incoming")],
            sum(&|c| c.conns_incoming.get()),
        );
        t.sample(
            "synod_connections",
            &[("role", "peer")],
            sum(&|c| c.conns_peer.get()),
        );
        t.sample(
            "synod_connections",
            &[("role", "rpc")],
            sum(&|c| c.conns_rpc.get()),
        );
        t.family(
            "synod_migration_chunks_total",
            "Shard chunks received (in, by the new owner) and served (out, by the previous owner).",
            "counter",
        );
        t.sample(
            "synod_migration_chunks_total",
            &[("direction", "in")],
            sum(&|c| c.migrate_chunks_in.get()),
        );
        t.sample(
            "synod_migration_chunks_total",
            &[("direction", "out")],
            sum(&|c| c.migrate_chunks_out.get()),
        );
        t.family(
            "synod_migration_bytes_total",
            "Bytes of shard chunk data received and served.",
            "counter",
        );
        t.sample(
            "synod_migration_bytes_total",
            &[("direction", "in")],
            sum(&|c| c.migrate_bytes_in.get()),
        );
        t.sample(
            "synod_migration_bytes_total",
            &[("direction", "out")],
            sum(&|c| c.migrate_bytes_out.get()),
        );
        t.family(
            "synod_resp_commands_total",
            "Commands parsed by the RESP gateway.",
            "counter",
        );
        t.sample("synod_resp_commands_total", &[], RESP.commands.get());
        t.family(
            "synod_resp_protocol_errors_total",
            "RESP connections closed for a protocol error.",
            "counter",
        );
        t.sample(
            "synod_resp_protocol_errors_total",
            &[],
            RESP.protocol_errors.get(),
        );

        let groups = self.groups();
        type G = dyn Fn(&GroupMetrics) -> u64;
        let per_group: [(&str, &str, &str, &G); 16] = [
            (
                "synod_group_leader",
                "1 if this replica leads its group.",
                "gauge",
                &|g| g.leading.get(),
            ),
            (
                "synod_group_ballot_round",
                "The round of the highest ballot this replica promised.",
                "gauge",
                &|g| g.ballot_round.get(),
            ),
            (
                "synod_group_commit_index",
                "Commit point: every slot below it is chosen.",
                "gauge",
                &|g| g.commit.get(),
            ),
            (
                "synod_group_applied_index",
                "Applied point: every slot below it is applied to the state machine.",
                "gauge",
                &|g| g.applied.get(),
            ),
            (
                "synod_group_log_slots",
                "Slots held in the log above the snapshot (log length).",
                "gauge",
                &|g| g.log_slots.get(),
            ),
            (
                "synod_group_membership",
                "The group's membership at this replica's commit point, as a bitmask of replica ids (bit i: replica i votes).",
                "gauge",
                &|g| g.membership.get(),
            ),
            (
                "synod_group_slots_in_flight",
                "On a leader, slots proposed and not yet chosen.",
                "gauge",
                &|g| g.in_flight.get(),
            ),
            (
                "synod_group_pending_commands",
                "On a leader, commands queued for the next batch.",
                "gauge",
                &|g| g.pending.get(),
            ),
            (
                "synod_group_elections_total",
                "Elections (phase 1) this replica started.",
                "counter",
                &|g| g.elections.get(),
            ),
            (
                "synod_group_prevotes_total",
                "Pre-votes this replica started.",
                "counter",
                &|g| g.prevotes.get(),
            ),
            (
                "synod_group_leader_changes_total",
                "Times the leader this replica knows of changed.",
                "counter",
                &|g| g.leader_changes.get(),
            ),
            (
                "synod_group_snapshots_installed_total",
                "Snapshots received from a peer and installed.",
                "counter",
                &|g| g.snapshots_installed.get(),
            ),
            (
                "synod_group_reads_total",
                "Reads this replica answered as leader without a log slot (read-index or lease).",
                "counter",
                &|g| g.reads_served.get(),
            ),
            (
                "synod_group_reads_leased_total",
                "Of those, reads answered under a read lease (no quorum round).",
                "counter",
                &|g| g.reads_leased.get(),
            ),
            (
                "synod_group_config_num",
                "The configuration a KV group has applied (0 for the master group).",
                "gauge",
                &|g| g.config_num.get(),
            ),
            (
                "synod_group_shards",
                "Shards the KV group serves in that configuration.",
                "gauge",
                &|g| g.shards.lock().unwrap_or_else(|e| e.into_inner()).len() as u64,
            ),
        ];
        for (name, help, ty, f) in per_group {
            t.family(name, help, ty);
            for g in &groups {
                let gid = g.gid.to_string();
                let replica = g.replica.to_string();
                t.sample(name, &[("gid", &gid), ("replica", &replica)], f(g));
            }
        }
        t.out
    }
}

/// A sample's value: counts print exactly, whatever their size.
enum Val {
    Int(u64),
    Float(f64),
}

impl From<u64> for Val {
    fn from(n: u64) -> Val {
        Val::Int(n)
    }
}

impl From<f64> for Val {
    fn from(f: f64) -> Val {
        Val::Float(f)
    }
}

/// The text exposition format, written by hand (see the module doc).
#[derive(Default)]
struct Text {
    out: String,
}

impl Text {
    fn family(&mut self, name: &str, help: &str, ty: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {ty}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl Into<Val>) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = match v.into() {
            Val::Int(n) => writeln!(self.out, " {n}"),
            Val::Float(f) => writeln!(self.out, " {}", fmt_value(f)),
        };
    }

    /// Sums per-core histograms and writes cumulative buckets, sum, count;
    /// `scale` turns observations into the exposed unit (µs → s: 1e6).
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], hs: &[&Histogram], scale: f64) {
        let Some(first) = hs.first() else { return };
        let bounds = first.bounds;
        let mut counts = vec![0u64; bounds.len() + 1];
        let mut total = 0u64;
        for h in hs {
            let (b, s) = h.snapshot();
            for (c, x) in counts.iter_mut().zip(b) {
                *c += x;
            }
            total += s;
        }
        let mut cum = 0;
        for (i, c) in counts.iter().enumerate() {
            cum += c;
            let le = match bounds.get(i) {
                Some(&b) => fmt_value(b as f64 / scale),
                None => "+Inf".to_string(),
            };
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {cum}");
        }
        let _ = write!(self.out, "{name}_sum");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", fmt_value(total as f64 / scale));
        let _ = write!(self.out, "{name}_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {cum}");
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|l| ("le", l))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Integers without a fraction (exact up to 2^53), others as Rust prints
/// them (always parseable by Prometheus).
fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The text exposition format's grammar for one line, for tests (here and
/// in `tests/metrics.rs`): a comment (`# HELP name text`, `# TYPE name
/// type`) or a sample `name{labels} value`.
pub fn check_line(line: &str) -> Result<(), String> {
    fn is_name(s: &str) -> bool {
        let mut c = s.chars();
        matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    }
    if let Some(rest) = line.strip_prefix("# ") {
        let mut w = rest.splitn(3, ' ');
        return match (w.next(), w.next(), w.next()) {
            (Some("HELP"), Some(n), Some(_)) if is_name(n) => Ok(()),
            (Some("TYPE"), Some(n), Some(t))
                if is_name(n)
                    && ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) =>
            {
                Ok(())
            }
            _ => Err(format!("bad comment line {line:?}")),
        };
    }
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value: {line:?}"))?;
    if !is_name(&line[..name_end]) {
        return Err(format!("bad metric name: {line:?}"));
    }
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        // label="value" pairs, values with \\ \" \n escapes
        let mut s = body;
        loop {
            if let Some(r) = s.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = s.find('=').ok_or_else(|| format!("bad labels: {line:?}"))?;
            if !is_name(&s[..eq]) {
                return Err(format!("bad label name: {line:?}"));
            }
            s = s[eq + 1..]
                .strip_prefix('"')
                .ok_or_else(|| format!("unquoted label: {line:?}"))?;
            let mut end = None;
            let mut esc = false;
            for (i, ch) in s.char_indices() {
                match (esc, ch) {
                    (true, '\\' | '"' | 'n') => esc = false,
                    (true, _) => return Err(format!("bad escape: {line:?}")),
                    (false, '\\') => esc = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| format!("unterminated label: {line:?}"))?;
            s = &s[end + 1..];
            s = s.strip_prefix(',').unwrap_or(s);
        }
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value: {line:?}"))?;
    let value = value.split(' ').next().unwrap_or("");
    match value {
        "+Inf" | "-Inf" | "NaN" => Ok(()),
        v => v
            .parse::<f64>()
            .map(|_| ())
            .map_err(|_| format!("bad value {v:?}: {line:?}")),
    }
}

/// The value of the sample `name` with exactly these labels in `text`.
pub fn sample_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut key = name.to_string();
    write_labels(&mut key, labels, None);
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str())?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[10, 100]);
        for v in [1, 10, 11, 100, 1000] {
            h.observe(v);
        }
        let mut t = Text::default();
        t.histogram("x", &[("k", "a")], &[&h, &h], 1.0);
        assert_eq!(
            t.out,
            "x_bucket{k=\"a\",le=\"10\"} 4\nx_bucket{k=\"a\",le=\"100\"} 8\n\
             x_bucket{k=\"a\",le=\"+Inf\"} 10\nx_sum{k=\"a\"} 2244\nx_count{k=\"a\"} 10\n"
        );
    }

    #[test]
    fn label_values_are_escaped_and_lines_parse() {
        let mut t = Text::default();
        t.family("a_b", "help with \\ and\nnewline", "gauge");
        t.sample("a_b", &[("node", "x\"y\\z\nw")], 1.5);
        for l in t.out.lines() {
            check_line(l).unwrap();
        }
        assert!(t.out.contains(r#"a_b{node="x\"y\\z\nw"} 1.5"#), "{}", t.out);
        assert_eq!(
            sample_value(&t.out, "a_b", &[("node", "x\"y\\z\nw")]),
            Some(1.5)
        );
    }

    #[test]
    fn check_line_refuses_malformed_lines() {
        for bad in [
            "x",
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "1x 2",
            "x 1.2.3",
            "# TYPE x bogus",
            "x{a=\"\\q\"} 1",
        ] {
            assert!(check_line(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn a_rendered_node_parses_line_by_line() {
        let m = Metrics::new("127.0.0.1:1".into(), 2);
        m.cores[0].requests[1].inc();
        m.cores[1].requests[1].add(2);
        m.cores[0].reply(1, 0);
        m.cores[0].latency[1].observe(700);
        m.cores[1].fsync.observe(2_500);
        m.register_group(GroupMetrics::new(1, 0, vec!["a:1".into()]));
        let text = m.render();
        for l in text.lines() {
            check_line(l).unwrap();
        }
        assert_eq!(
            sample_value(&text, "synod_requests_total", &[("kind", "put")]),
            Some(3.0)
        );
        assert_eq!(
            sample_value(
                &text,
                "synod_replies_total",
                &[("kind", "put"), ("result", "ok")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample_value(&text, "synod_wal_sync_duration_seconds_sum", &[]),
            Some(0.0025)
        );
        assert!(text.contains("synod_request_duration_seconds_bucket{kind=\"put\",le=\"0.001\"} 1"));
        assert_eq!(
            sample_value(
                &text,
                "synod_group_commit_index",
                &[("gid", "1"), ("replica", "0")]
            ),
            Some(0.0)
        );
    }
}
