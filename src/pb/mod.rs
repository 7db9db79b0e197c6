//! Primary/backup replication for one replica of one group (issue 12).
//!
//! Sans-IO like the Paxos core and shaped like [`crate::replica::Replica`]
//! so a driver runs either the same way: requests, peer messages, ticks and
//! the view service's answers in ([`PbReplica::on_request`],
//! [`PbReplica::step`], [`PbReplica::tick`], [`PbReplica::on_view`]);
//! [`PbReplica::flush`] at the end of a loop turn; [`PbReplica::ready`]
//! gives records to make durable, and [`PbReplica::advance`] with the
//! [`Synced`] proof releases what may leave (messages to peers, the ping to
//! the master, client replies) and applies what is committed to the same
//! [`StateMachine`] a Paxos group runs (`ShardKv`), so sharding, sessions
//! and deduplication are unchanged.
//!
//! The protocol (ARCHITECTURE.md, "Primary/backup groups", says why it is
//! safe):
//! - The master's view service decides views (`master/views.rs`). A replica
//!   adopts a view from the master's answer to its ping or from its
//!   primary's Append, never goes back to a lower one (the highest view
//!   adopted is a durable record), and acts only in the view it adopted.
//! - The primary orders writes into log positions, each entry tagged with
//!   the view that created it, and sends them to every backup of the view
//!   (`Append`, Raft-style prefix check on the previous entry's tag) while
//!   it makes them durable itself ([`Ready::before_sync`]). A backup logs
//!   them durably, then acknowledges. An entry is committed once it is
//!   durable on the primary and every backup of the view acknowledged it;
//!   only then is it applied and its client answered. A restarted replica
//!   never leads a view it may have led before (it may have sent entries it
//!   lost): it pings `PB_PING_REFUSED` and the view service moves on.
//! - A primary reports a view to the master as ready only once every backup
//!   of it holds the primary's whole log as of adopting it (a new backup
//!   gets the state first, by state transfer, when it is behind the log's
//!   start), and serves only after the master says it recorded that.
//! - State transfer is chunked like the Paxos snapshot catch-up
//!   (`paxos/learner.rs`): one chunk of the primary's snapshot in flight
//!   per backup; only an in-order chunk advances the backup's buffer and
//!   is answered with its progress, which sends the next; a stalled
//!   transfer resumes from the acknowledged offset; a snapshot that changed
//!   restarts it from 0. The backup installs only once the last chunk is
//!   in.
//! - Reads: the primary confirms its view with every backup per batch of
//!   reads (a read round carried on the next Append, echoed in acks), then
//!   answers once it has applied its whole log as of the read's arrival. A
//!   backup that adopted a newer view no longer echoes, so a deposed
//!   primary cannot answer a read after a newer view exists.
//!
//! Never reads a clock, does I/O or draws randomness.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use synod_wire::{
    Batch, ClientId, ClientReply, Message, PbViewReply, ReplicaId, Seq, View, PB_PING_REFUSED,
};

use crate::paxos::{member_ids, ProposeError, Synced};
use crate::replica::{ReplyTo, StateMachine, SHARE_COMMAND_MIN_BYTES};

/// A log position.
pub type Pos = u64;

// The messages between the replicas of a group: on the wire as
// `PbAppend`, `PbAck` and `PbTransfer` (PROTOCOL.md 5.11).
pub use synod_wire::{PbAck as Ack, PbAppend as Append, PbMsg, PbTransfer as Transfer};

/// A change to durable state, made durable in order before the gated part
/// of the [`Ready`] it came in is released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PbRecord {
    /// The highest view this replica adopted (it never acts in a lower one).
    View(u64),
    /// The entry at `pos`; every entry at or above `pos` held before is
    /// discarded (a new primary's log overrides an unacknowledged suffix).
    Entry { pos: Pos, tag: u64, batch: Batch },
    /// The state as of `index`. `install`: received by state transfer, so
    /// every entry held is discarded; otherwise a local snapshot, entries
    /// at or above `index` kept.
    Snapshot {
        index: Pos,
        last_tag: u64,
        data: Bytes,
        install: bool,
    },
}

/// What a replica finds on disk when it restarts.
#[derive(Clone, Debug, Default)]
pub struct PbDurable {
    pub view: u64,
    /// `(index, tag of the entry before it, state bytes)`.
    pub snapshot: Option<(Pos, u64, Bytes)>,
    pub entries: BTreeMap<Pos, (u64, Batch)>,
}

impl PbDurable {
    /// Fold one record into the durable image (what any storage must do).
    pub fn apply(&mut self, rec: &PbRecord) {
        match rec {
            PbRecord::View(v) => {
                assert!(*v >= self.view, "adopted view went backwards");
                self.view = *v;
            }
            PbRecord::Entry { pos, tag, batch } => {
                drop(self.entries.split_off(pos));
                if self.snapshot.as_ref().is_none_or(|(i, _, _)| pos >= i) {
                    self.entries.insert(*pos, (*tag, batch.clone()));
                }
            }
            PbRecord::Snapshot {
                index,
                last_tag,
                data,
                install,
            } => {
                if *install {
                    self.entries.clear();
                } else {
                    self.entries = self.entries.split_off(index);
                }
                self.snapshot = Some((*index, *last_tag, data.clone()));
            }
        }
    }
}

/// Deliberate bugs the simulator's checkers must catch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PbBugs {
    /// The primary commits (applies and answers) an entry once it is
    /// durable on the primary alone, before every backup has it.
    pub ack_before_backups: bool,
    /// The primary answers reads at once from its state, without
    /// confirming its view with the backups, and ignores word of a newer
    /// view: a deposed primary keeps serving reads.
    pub serve_after_newer_view: bool,
    /// A restarted replica acts as the primary of a view it may have led
    /// before its crash, with Appends of entries it lost still out: a new
    /// entry can then take a lost one's (position, view) tag.
    pub lead_after_restart: bool,
}

/// The most entries a primary/backup log holds above its snapshot whatever
/// their weight against the state ([`PbConfig::snapshot_log_percent`]), as
/// half the Paxos slot horizon bounds a Paxos replica's.
pub const PB_LOG_ENTRIES_MAX: u64 = 1 << 15;

#[derive(Clone, Debug)]
pub struct PbConfig {
    pub id: ReplicaId,
    /// The group's server count (replica ids are `0..servers`).
    pub servers: u32,
    /// Commands per log entry at most.
    pub batch_commands_max: usize,
    /// Command bytes per log entry: an entry is closed once it holds this
    /// many (it always takes at least one command).
    pub batch_bytes_max: usize,
    /// Entries per Append at most.
    pub append_entries_max: usize,
    /// Command bytes per Append: no more entries are added once this many
    /// are in (always at least one), so an Append fits a frame.
    pub append_bytes_max: usize,
    /// The longest request taken; a longer one is refused (`Error`), as
    /// `ReplicaConfig::command_bytes_max` is for Paxos groups, so an entry
    /// always fits the Append that carries it.
    pub command_bytes_max: usize,
    /// Entries sent to a backup and not yet acknowledged, at most.
    pub window_entries_max: u64,
    /// Commands queued before the primary answers Busy.
    pub pending_max: usize,
    /// Reads waiting for their round, at most (beyond: Busy).
    pub reads_pending_max: usize,
    /// Ping the master every this many ticks.
    pub ping_ticks: u64,
    /// The primary sends every backup an Append (a heartbeat when it has no
    /// entries for it) every this many ticks.
    pub heartbeat_ticks: u64,
    /// Resend a backup's unacknowledged entries after this many ticks
    /// without progress.
    pub retransmit_ticks: u64,
    /// Snapshot and compact once this many positions were applied above
    /// the log's start.
    pub snapshot_log_entries: u64,
    /// ... but waits until the log weighs this percent of the last
    /// snapshot, up to [`PB_LOG_ENTRIES_MAX`] entries (a Paxos replica's
    /// `ReplicaConfig::snapshot_log_percent`; 0: the entries alone).
    pub snapshot_log_percent: u64,
    /// ... or once the commands applied since the last snapshot was taken
    /// hold more than this many bytes, so a log of large values is bounded
    /// in bytes too (`ReplicaConfig::snapshot_log_bytes`).
    pub snapshot_log_bytes: u64,
    /// Bytes of state per state-transfer chunk (one `Transfer`): the
    /// driver keeps it well below its frame limit.
    pub transfer_chunk_bytes: usize,
    /// Bytes of a snapshot serialized per round: a large state is captured
    /// at once (copy-on-write) and serialized a slice per `advance`, as a
    /// Paxos replica's is (`ReplicaConfig::snapshot_step_bytes`).
    pub snapshot_step_bytes: usize,
    /// The primary stamps the log with its clock
    /// ([`PbReplica::set_now_ms`]) ahead of a write when the last stamp is
    /// at least this old, so log time (session expiry) advances.
    pub clock_interval_ms: u64,
    pub bugs: PbBugs,
}

impl PbConfig {
    pub fn new(id: ReplicaId, servers: u32) -> PbConfig {
        PbConfig {
            id,
            servers,
            batch_commands_max: 256,
            batch_bytes_max: usize::MAX,
            append_entries_max: 64,
            append_bytes_max: usize::MAX,
            command_bytes_max: synod_wire::command_bytes_max(synod_wire::DEFAULT_FRAME_BYTES_MAX),
            window_entries_max: 256,
            pending_max: 1 << 16,
            reads_pending_max: 1 << 16,
            ping_ticks: 5,
            heartbeat_ticks: 2,
            retransmit_ticks: 10,
            snapshot_log_entries: 1024,
            snapshot_log_percent: 0,
            snapshot_log_bytes: crate::replica::SNAPSHOT_LOG_BYTES_DEFAULT,
            transfer_chunk_bytes: 1 << 20,
            snapshot_step_bytes: crate::replica::SNAPSHOT_STEP_BYTES_DEFAULT,
            clock_interval_ms: 100,
            bugs: PbBugs::default(),
        }
    }
}

/// The output of one round of events. `records` first, durably; then
/// [`PbReplica::advance`] with the proof.
#[derive(Debug, Default)]
pub struct Ready {
    pub records: Vec<PbRecord>,
    /// The primary's Appends: they may leave before `records` are durable
    /// (the backups' syncs then overlap the primary's), because they
    /// promise nothing: an entry counts as committed only once it is
    /// durable here too, and a primary that crashed before its sync never
    /// acts again in that view (see `restart_view`), so no entry it lost can
    /// be confused with a later one under the same tag.
    pub before_sync: Vec<(ReplicaId, PbMsg)>,
    messages: Vec<(ReplicaId, PbMsg)>,
    ping: Option<u64>,
    /// The log's end when this round's records were taken: durable on this
    /// replica once they are.
    log_end: Pos,
    wake: bool,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.before_sync.is_empty()
            && self.messages.is_empty()
            && self.ping.is_none()
            && !self.wake
    }
}

/// What may leave once the records are durable.
#[derive(Debug, Default)]
pub struct Output {
    pub messages: Vec<(ReplicaId, PbMsg)>,
    /// Ping the master: this replica is alive and ready in this view (0:
    /// none). The driver sends it as a `MasterOp::PbPing`.
    pub ping: Option<u64>,
    pub replies: Vec<(ReplyTo, Message)>,
    /// A snapshot installed by state transfer since the last round (for
    /// checkers).
    pub installed_snapshot: Option<Pos>,
    /// The entries applied in this round, in position order (for checkers).
    pub committed: Vec<(Pos, Batch)>,
    /// A local snapshot serialized: the driver writes it durably (off the
    /// loop) and then calls [`PbReplica::snapshot_durable`]; only then does
    /// it become the log's start. Until then the entries below it stay.
    pub snapshot_write: Option<SnapshotWrite>,
}

/// A local snapshot for the driver to write (see
/// [`Output::snapshot_write`]).
#[derive(Clone, Debug)]
pub struct SnapshotWrite {
    pub index: Pos,
    pub last_tag: u64,
    /// The snapshot file's bytes: `last_tag` (8 bytes, little-endian) and
    /// then the state, as the storage reads a primary/backup snapshot
    /// file back.
    pub file: Bytes,
}

impl SnapshotWrite {
    /// The state bytes (the file after its tag; no copy).
    pub fn data(&self) -> Bytes {
        self.file.slice(8..)
    }

    /// The record a durable image folds in once the file is durable.
    pub fn record(&self) -> PbRecord {
        PbRecord::Snapshot {
            index: self.index,
            last_tag: self.last_tag,
            data: self.data(),
            install: false,
        }
    }
}

/// Counters for tests and reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct PbStats {
    pub views_adopted: u64,
    /// State transfers started (first chunks sent, resends included).
    pub transfers_sent: u64,
    /// Transfer chunks sent, resends included.
    pub transfer_chunks_sent: u64,
    pub transfers_installed: u64,
    /// A primary asked this backup to overwrite an entry it had applied.
    /// Impossible while the protocol holds; the simulator reports it as a
    /// safety failure.
    pub overwrite_applied_refused: u64,
}

/// Primary: a state transfer to one backup, of the snapshot at `index`.
#[derive(Clone, Copy, Debug)]
struct Sending {
    index: Pos,
    /// The bytes the backup last said it holds: a resend starts here.
    acked: u64,
    /// The end of the last chunk sent: a chunk is in flight while it is
    /// above `acked`, and only an acknowledgement of exactly this much
    /// sends the next one.
    sent: u64,
}

/// Backup: a state transfer under way, of the primary's snapshot at
/// `index` (the tag before it `last_tag`), `total` bytes long.
struct Receiving {
    index: Pos,
    last_tag: u64,
    total: u64,
    /// The bytes `[0, len)` received in order; grown as chunks arrive (the
    /// declared total is only a claim).
    buf: BytesMut,
}

struct Read<R> {
    to: ReplyTo,
    req: R,
    /// The log's end when the read arrived: every write acknowledged
    /// before it lies below.
    index: Pos,
    round: u64,
}

pub struct PbReplica<S: StateMachine> {
    cfg: PbConfig,
    sm: S,
    /// The highest view adopted (durable).
    highest_view: u64,
    /// The highest view adopted before this start (from disk). This
    /// replica never acts as the primary of a view up to it: it may have
    /// led it and sent entries it never made durable (Appends leave before
    /// the primary's sync), so new entries of its own in that view could
    /// collide with lost ones under the same (position, view) tag.
    restart_view: u64,
    /// The view it was told it leads and refused for that reason; it pings
    /// `PB_PING_REFUSED` until it adopts another view.
    refused: bool,
    /// The view adopted, once known (after a restart only `highest_view` is).
    view: Option<View>,
    /// Primary: the master recorded our acknowledgement of `view`.
    active: bool,
    /// Primary: a backup answered from a newer view.
    deposed: bool,
    // The log: positions below `log_start` are in the snapshot.
    log_start: Pos,
    start_tag: u64,
    entries: VecDeque<(u64, Batch)>,
    /// The state at `log_start`, for state transfer.
    snapshot: Bytes,
    /// Command bytes of the entries applied since the last snapshot was
    /// taken (the byte trigger).
    log_bytes: u64,
    commit: Pos,
    applied: Pos,
    /// Primary: the log is durable on this replica up to here.
    durable_end: Pos,
    // Primary bookkeeping, per backup of the view.
    matched: BTreeMap<ReplicaId, Pos>,
    next: BTreeMap<ReplicaId, Pos>,
    progress_tick: BTreeMap<ReplicaId, u64>,
    echoed: BTreeMap<ReplicaId, u64>,
    /// The hint of the last refusal from each backup since its last ok.
    nacked: BTreeMap<ReplicaId, Pos>,
    /// State transfers under way, per backup behind the log's start.
    sending: BTreeMap<ReplicaId, Sending>,
    /// The log's end when this replica adopted the view as primary.
    adopt_end: Pos,
    read_round: u64,
    reads: VecDeque<Read<S::Request>>,
    queue: Vec<Bytes>,
    waiting: BTreeMap<(ClientId, Seq), Vec<ReplyTo>>,
    // Backup: the highest read round heard from this view's primary.
    echo_round: u64,
    /// Backup: the one state transfer being received, if any (volatile: a
    /// restart or a view change drops it).
    receiving: Option<Receiving>,
    /// The driver's clock (ms) and the last stamp proposed while primary.
    now_ms: u64,
    last_stamp_ms: Option<u64>,
    ticks: u64,
    last_ping: u64,
    last_heartbeat: u64,
    // Output of the current round.
    records: Vec<PbRecord>,
    messages: Vec<(ReplicaId, PbMsg)>,
    ping_due: bool,
    early: Vec<(ReplyTo, Message)>,
    installed: Option<Pos>,
    /// A snapshot being serialized, a slice per round: (index, tag of the
    /// entry before it).
    capturing: Option<(Pos, u64)>,
    /// A tick came since the last `advance`: an idle replica's capture
    /// still gets its slice.
    capture_tick: bool,
    /// The snapshot handed to the driver and not yet durable (one at a
    /// time).
    snapshot_in_flight: Option<SnapshotWrite>,
    stats: PbStats,
}

fn refusal(reply: ClientReply) -> Message {
    Message::Reply(reply)
}

impl<S: StateMachine> PbReplica<S> {
    /// Start (or restart) from what the disk holds; `sm` is the empty state.
    pub fn new(cfg: PbConfig, durable: PbDurable, mut sm: S) -> PbReplica<S> {
        assert!(
            cfg.id < cfg.servers && cfg.servers <= 64,
            "replica id out of range"
        );
        assert!(cfg.transfer_chunk_bytes > 0, "empty transfer chunks");
        let (log_start, start_tag, snapshot) = match durable.snapshot {
            Some((index, tag, data)) => {
                if let Err(e) = sm.restore(&data) {
                    panic!("primary/backup snapshot at {index} does not restore: {e}");
                }
                (index, tag, data)
            }
            None => (0, 0, sm.snapshot()),
        };
        let mut entries = VecDeque::new();
        for (pos, e) in durable.entries.range(log_start..) {
            if *pos != log_start + entries.len() as u64 {
                break;
            }
            entries.push_back(e.clone());
        }
        let end = log_start + entries.len() as u64;
        let r = PbReplica {
            cfg,
            sm,
            highest_view: durable.view,
            restart_view: durable.view,
            refused: false,
            view: None,
            active: false,
            deposed: false,
            log_start,
            start_tag,
            entries,
            snapshot,
            log_bytes: 0,
            commit: log_start,
            applied: log_start,
            durable_end: end,
            matched: BTreeMap::new(),
            next: BTreeMap::new(),
            progress_tick: BTreeMap::new(),
            echoed: BTreeMap::new(),
            nacked: BTreeMap::new(),
            sending: BTreeMap::new(),
            adopt_end: 0,
            read_round: 0,
            reads: VecDeque::new(),
            queue: Vec::new(),
            waiting: BTreeMap::new(),
            echo_round: 0,
            receiving: None,
            now_ms: 0,
            last_stamp_ms: None,
            ticks: 0,
            last_ping: 0,
            last_heartbeat: 0,
            records: Vec::new(),
            messages: Vec::new(),
            // Ask for the view at once.
            ping_due: true,
            early: Vec::new(),
            installed: None,
            capturing: None,
            capture_tick: false,
            snapshot_in_flight: None,
            stats: PbStats::default(),
        };
        r.assert_invariants();
        r
    }

    // ----- queries --------------------------------------------------------

    pub fn state(&self) -> &S {
        &self.sm
    }
    pub fn view(&self) -> Option<View> {
        self.view
    }
    pub fn highest_view(&self) -> u64 {
        self.highest_view
    }
    pub fn applied(&self) -> Pos {
        self.applied
    }
    pub fn commit(&self) -> Pos {
        self.commit
    }
    /// The first position held in the log (every one below is in the
    /// snapshot).
    pub fn log_start(&self) -> Pos {
        self.log_start
    }
    pub fn log_end(&self) -> Pos {
        self.log_start + self.entries.len() as u64
    }
    pub fn stats(&self) -> PbStats {
        self.stats
    }
    /// Is this replica the primary of the view it adopted?
    pub fn is_primary(&self) -> bool {
        self.view.is_some_and(|v| v.primary == self.cfg.id)
    }
    /// Does it serve clients now (primary, view acknowledged, not deposed)?
    pub fn serving(&self) -> bool {
        self.is_primary() && self.active && (!self.deposed || self.cfg.bugs.serve_after_newer_view)
    }

    fn tag_at(&self, pos: Pos) -> Option<u64> {
        if pos + 1 == self.log_start {
            return Some(self.start_tag);
        }
        if pos < self.log_start {
            return None;
        }
        self.entries
            .get((pos - self.log_start) as usize)
            .map(|e| e.0)
    }

    /// The tag of the entry before `pos` (0 before position 0).
    fn prev_tag(&self, pos: Pos) -> Option<u64> {
        if pos == 0 {
            Some(0)
        } else {
            self.tag_at(pos - 1)
        }
    }

    /// This replica's id in its group.
    pub fn id(&self) -> ReplicaId {
        self.cfg.id
    }

    /// The primary of the view adopted, if it is another replica.
    pub fn leader_hint(&self) -> Option<ReplicaId> {
        self.view
            .filter(|v| v.primary != self.cfg.id)
            .map(|v| v.primary)
    }

    // ----- inputs ---------------------------------------------------------

    /// The driver's current time in ms, before it hands in requests.
    pub fn set_now_ms(&mut self, ms: u64) {
        self.now_ms = ms;
    }

    /// A client request (typed).
    pub fn on_request(&mut self, to: ReplyTo, req: &S::Request) {
        self.request(to, req, None);
    }

    /// [`PbReplica::on_request`] with the request's bytes as they arrived,
    /// which are its command: logged as they are instead of encoded again
    /// (copied when small, as `Replica::on_request_encoded` does, so a
    /// logged entry never pins a large receive buffer).
    pub fn on_request_encoded(&mut self, to: ReplyTo, req: &S::Request, cmd: Bytes) {
        debug_assert_eq!(cmd, S::command(req), "a request's bytes are its command");
        self.request(to, req, Some(cmd));
    }

    fn request(&mut self, to: ReplyTo, req: &S::Request, cmd: Option<Bytes>) {
        let cmd = cmd.unwrap_or_else(|| S::command(req));
        if cmd.len() > self.cfg.command_bytes_max {
            let reason = format!(
                "value too large: request of {} bytes, limit {}",
                cmd.len(),
                self.cfg.command_bytes_max
            );
            self.early
                .push((to, refusal(ClientReply::Error { reason })));
            return;
        }
        if !self.serving() {
            let reply = if self.is_primary() && !self.deposed {
                // The view is not acknowledged yet: come back shortly.
                ClientReply::Busy
            } else {
                ClientReply::NotLeader {
                    leader: self.leader_hint(),
                }
            };
            self.early.push((to, refusal(reply)));
            return;
        }
        if S::is_read(req) {
            if self.cfg.bugs.serve_after_newer_view {
                if let Some(reply) = self.sm.read_local(req) {
                    self.early.push((to, reply));
                    return;
                }
            }
            if self.reads.len() >= self.cfg.reads_pending_max {
                self.early.push((to, refusal(ClientReply::Busy)));
                return;
            }
            self.reads.push_back(Read {
                to,
                req: req.clone(),
                index: self.log_end(),
                round: self.read_round + 1,
            });
            return;
        }
        if self.queue.len() >= self.cfg.pending_max {
            self.early.push((to, refusal(ClientReply::Busy)));
            return;
        }
        let due = self
            .last_stamp_ms
            .is_none_or(|last| self.now_ms >= last.saturating_add(self.cfg.clock_interval_ms));
        if due {
            // Never backwards from this primary's last stamp (the state
            // machine keeps the maximum across primaries).
            let ms = self.now_ms.max(self.last_stamp_ms.unwrap_or(0));
            if let Some(cmd) = S::clock_command(ms) {
                self.queue.push(cmd);
                self.last_stamp_ms = Some(ms);
            }
        }
        // A small command is copied out of the receive buffer it may share.
        let cmd = if cmd.len() < SHARE_COMMAND_MIN_BYTES {
            Bytes::copy_from_slice(&cmd)
        } else {
            cmd
        };
        self.queue.push(cmd);
        self.waiting.entry(S::request_id(req)).or_default().push(to);
    }

    /// A command no client waits for (the driver's own: a configuration
    /// step, a shard installation), logged like a write while serving.
    pub fn propose(&mut self, cmd: Bytes) -> Result<(), ProposeError> {
        if !self.serving() {
            return Err(if self.is_primary() && !self.deposed {
                ProposeError::Busy
            } else {
                ProposeError::NotLeader(self.leader_hint())
            });
        }
        if self.queue.len() >= self.cfg.pending_max {
            return Err(ProposeError::Busy);
        }
        self.queue.push(cmd);
        Ok(())
    }

    /// The view service's answer to a ping.
    pub fn on_view(&mut self, reply: &PbViewReply) {
        if reply.view.num < self.highest_view || !reply.view.has(reply.view.primary) {
            return;
        }
        self.adopt(reply.view);
        if reply.acked && self.view == Some(reply.view) && self.is_primary() && !self.active {
            self.active = true;
        }
        self.assert_invariants();
    }

    /// A message from a peer of the group.
    pub fn step(&mut self, msg: PbMsg) {
        match msg {
            PbMsg::Append(a) => self.on_append(a),
            PbMsg::Ack(a) => self.on_ack(a),
            PbMsg::Transfer(t) => self.on_transfer(t),
        }
        self.assert_invariants();
    }

    pub fn tick(&mut self) {
        self.ticks += 1;
        self.capture_tick = true;
        if self.ticks - self.last_ping >= self.cfg.ping_ticks {
            self.ping_due = true;
        }
        if self.is_primary() && self.ticks - self.last_heartbeat >= self.cfg.heartbeat_ticks {
            self.last_heartbeat = self.ticks;
            for b in member_ids(self.backups()) {
                let stalled = self.ticks - self.progress_tick.get(&b).copied().unwrap_or(0)
                    >= self.cfg.retransmit_ticks;
                if stalled && self.matched[&b] < self.next[&b] {
                    // Lost or stale: resend from what it acknowledged.
                    self.next.insert(b, self.matched[&b]);
                    self.progress_tick.insert(b, self.ticks);
                }
                if let Some(s) = self.sending.get_mut(&b).filter(|_| stalled) {
                    // A chunk or its acknowledgement was lost: resend
                    // from what the backup last said it holds.
                    s.sent = s.acked;
                    self.progress_tick.insert(b, self.ticks);
                }
                self.send_append(b, true);
            }
        }
    }

    /// End of a loop turn: the queued writes become log entries, sent to
    /// the backups with the turn's read round.
    pub fn flush(&mut self) {
        if !self.is_primary() {
            return;
        }
        let new_round = self.reads.back().is_some_and(|r| r.round > self.read_round);
        if new_round {
            self.read_round += 1;
        }
        if self.serving() {
            let tag = self.view.expect("primary has a view").num;
            let queue = std::mem::take(&mut self.queue);
            let mut rest = &queue[..];
            while !rest.is_empty() {
                // At least one command, then up to the count and byte caps.
                let mut n = 1;
                let mut bytes = rest[0].len();
                while n < rest.len()
                    && n < self.cfg.batch_commands_max
                    && bytes + rest[n].len() <= self.cfg.batch_bytes_max
                {
                    bytes += rest[n].len();
                    n += 1;
                }
                let batch = Batch {
                    commands: rest[..n].to_vec(),
                };
                rest = &rest[n..];
                let pos = self.log_end();
                self.records.push(PbRecord::Entry {
                    pos,
                    tag,
                    batch: batch.clone(),
                });
                self.entries.push_back((tag, batch));
            }
        }
        for b in member_ids(self.backups()) {
            self.send_append(b, new_round);
        }
    }

    /// Records to make durable; pass the result to [`PbReplica::advance`]
    /// with the proof that they are.
    pub fn ready(&mut self) -> Ready {
        let ping = if self.ping_due {
            self.ping_due = false;
            self.last_ping = self.ticks;
            Some(self.ready_view())
        } else {
            None
        };
        let (before_sync, messages) = std::mem::take(&mut self.messages)
            .into_iter()
            .partition(|(_, m)| matches!(m, PbMsg::Append(_)));
        Ready {
            records: std::mem::take(&mut self.records),
            before_sync,
            messages,
            ping,
            log_end: self.log_end(),
            wake: self.has_work() || (self.capture_tick && self.capturing.is_some()),
        }
    }

    /// Is there something `advance` would do with no new records: replies
    /// to send, a snapshot installed, entries to apply, reads to answer?
    /// (A driver that skips an empty [`Ready`] must not sit on them, and
    /// one that loops while it is not empty must not spin.)
    fn has_work(&self) -> bool {
        let commit = if self.is_primary() {
            // What advance would compute, with the durable end it knows.
            self.commit_point()
        } else {
            self.commit
        };
        !self.early.is_empty()
            || self.installed.is_some()
            || commit.min(self.log_end()) > self.applied
            || self.reads.front().is_some_and(|r| {
                self.serving() && r.round <= self.confirmed_round() && r.index <= self.applied
            })
    }

    /// The highest read round every backup of the view confirmed.
    fn confirmed_round(&self) -> u64 {
        member_ids(self.backups())
            .map(|b| self.echoed[&b])
            .min()
            .unwrap_or(self.read_round)
    }

    /// Apply what is committed and release what may leave.
    pub fn advance(&mut self, ready: Ready, _proof: Synced) -> Output {
        let mut out = Output {
            messages: ready.messages,
            ping: ready.ping,
            replies: std::mem::take(&mut self.early),
            installed_snapshot: self.installed.take(),
            committed: Vec::new(),
            snapshot_write: None,
        };
        self.capture_tick = false;
        if self.is_primary() {
            // Entries may have been replaced since (a newer view's primary):
            // the durable end never exceeds the log.
            self.durable_end = ready
                .log_end
                .min(self.log_end())
                .max(self.durable_end.min(self.log_end()));
            let c = self.commit_point();
            if c > self.commit {
                self.commit = c;
            }
        }
        while self.applied < self.commit.min(self.log_end()) {
            let pos = self.applied;
            let batch = self.entries[(pos - self.log_start) as usize].1.clone();
            for cmd in &batch.commands {
                if let Some((client, seq, reply)) = self.sm.apply(pos, cmd) {
                    if let Some(waiters) = self.waiting.remove(&(client, seq)) {
                        for w in waiters {
                            out.replies.push((w, reply.clone()));
                        }
                    }
                }
            }
            self.applied += 1;
            self.log_bytes += batch.payload_bytes() as u64;
            out.committed.push((pos, batch));
        }
        self.serve_reads(&mut out.replies);
        self.maybe_snapshot(&mut out);
        self.assert_invariants();
        out
    }

    /// Give a snapshot being serialized its next slice at the next
    /// `advance` even if nothing else happens (the runtime's every loop
    /// turn); returns whether one is.
    pub fn nudge_capture(&mut self) -> bool {
        let capturing = self.capturing.is_some();
        self.capture_tick |= capturing;
        capturing
    }

    /// The snapshot at `index` that [`Output::snapshot_write`] handed out is
    /// durable: it becomes the log's start and the entries below it go.
    /// Anything else (a stale index, nothing in flight as after a restart,
    /// or a state transfer installed past it meanwhile) is ignored.
    pub fn snapshot_durable(&mut self, index: Pos) {
        match self.snapshot_in_flight.take() {
            Some(w) if w.index == index => {
                if index > self.log_start {
                    // Applied entries are never replaced, so the ones below
                    // `index` are still those the snapshot covers.
                    self.entries.drain(..(index - self.log_start) as usize);
                    self.log_start = index;
                    self.start_tag = w.last_tag;
                    self.snapshot = w.data();
                }
            }
            other => self.snapshot_in_flight = other,
        }
        self.assert_invariants();
    }

    // ----- view changes ---------------------------------------------------

    /// The view this replica reports as ready: a primary once every backup
    /// holds its log as of adopting the view, a backup the view it adopted.
    fn ready_view(&self) -> u64 {
        match self.view {
            Some(v) if v.primary == self.cfg.id => {
                let caught_up =
                    member_ids(self.backups()).all(|b| self.matched[&b] >= self.adopt_end);
                if caught_up && !self.deposed {
                    v.num
                } else {
                    0
                }
            }
            Some(v) => v.num,
            None if self.refused => PB_PING_REFUSED,
            None => 0,
        }
    }

    /// The backups of the view this replica leads, as a mask (none while
    /// it does not lead): iterated with `member_ids`, nothing allocated on
    /// the per-turn paths that walk them.
    fn backups(&self) -> u64 {
        match self.view {
            Some(v) if v.primary == self.cfg.id => v.backups,
            _ => 0,
        }
    }

    /// Adopt `view` if it is at least the highest adopted; returns whether
    /// this replica is now in it.
    fn adopt(&mut self, view: View) -> bool {
        if view.num < self.highest_view {
            return false;
        }
        if view.primary == self.cfg.id
            && view.num <= self.restart_view
            && !self.cfg.bugs.lead_after_restart
        {
            // See `restart_view`; the view service moves on when told.
            self.refused = true;
            self.ping_due = true;
            return false;
        }
        self.refused = false;
        if self.view.is_some_and(|v| v.num == view.num) {
            return true;
        }
        if view.num > self.highest_view {
            self.highest_view = view.num;
            self.records.push(PbRecord::View(view.num));
        }
        self.stats.views_adopted += 1;
        let was_primary = self.is_primary();
        self.view = Some(view);
        self.active = false;
        self.deposed = false;
        self.echo_round = 0;
        self.matched.clear();
        self.next.clear();
        self.progress_tick.clear();
        self.echoed.clear();
        self.nacked.clear();
        // A transfer belongs to its view: a newer primary's state may
        // differ, so a partial one is dropped on either side.
        self.sending.clear();
        self.receiving = None;
        if view.primary == self.cfg.id {
            let end = self.log_end();
            self.adopt_end = end;
            for b in member_ids(self.backups()) {
                self.matched.insert(b, 0);
                self.next.insert(b, end);
                self.progress_tick.insert(b, self.ticks);
                self.echoed.insert(b, 0);
            }
            self.durable_end = self.durable_end.min(end);
            // Announce the view at once.
            self.last_heartbeat = 0;
            self.ping_due = true;
        } else if was_primary {
            self.step_down();
        }
        view.has(self.cfg.id)
    }

    /// No longer the primary (or deposed): nobody here will answer the
    /// waiting clients; they retry elsewhere (deduplicated if the write is
    /// applied after all).
    fn step_down(&mut self) {
        let hint = self.leader_hint();
        for (_, waiters) in std::mem::take(&mut self.waiting) {
            for w in waiters {
                self.early
                    .push((w, refusal(ClientReply::NotLeader { leader: hint })));
            }
        }
        for r in std::mem::take(&mut self.reads) {
            self.early
                .push((r.to, refusal(ClientReply::NotLeader { leader: hint })));
        }
        self.queue.clear();
        self.last_stamp_ms = None;
    }

    // ----- primary --------------------------------------------------------

    /// The commit point the primary's acknowledgements allow: durable here
    /// and at every backup of the view, while it serves.
    fn commit_point(&self) -> Pos {
        if !self.serving() {
            return self.commit;
        }
        let mut c = self.durable_end;
        if !self.cfg.bugs.ack_before_backups {
            for b in member_ids(self.backups()) {
                c = c.min(self.matched[&b]);
            }
        }
        c.max(self.commit)
    }

    /// Send backup `b` its next entries from `next[b]` (a heartbeat if
    /// there are none and `heartbeat`), or the state if they were compacted.
    fn send_append(&mut self, b: ReplicaId, heartbeat: bool) {
        let view = self.view.expect("primary has a view");
        let from = self.next[&b];
        let end = self.log_end();
        if from < self.log_start {
            self.send_chunk(b);
            return;
        }
        // Caught up past any transfer (or its log matched after all).
        self.sending.remove(&b);
        let in_flight = from.saturating_sub(self.matched[&b]);
        let room = self.cfg.window_entries_max.saturating_sub(in_flight);
        let mut upto = end.min(from + room.min(self.cfg.append_entries_max as u64));
        if upto == from && !heartbeat {
            return;
        }
        let mut entries: Vec<(u64, Batch)> = Vec::with_capacity((upto - from) as usize);
        let mut bytes = 0;
        for p in from..upto {
            let e = &self.entries[(p - self.log_start) as usize];
            let size: usize = e.1.commands.iter().map(|c| c.len()).sum();
            if !entries.is_empty() && bytes + size > self.cfg.append_bytes_max {
                upto = p;
                break;
            }
            bytes += size;
            entries.push(e.clone());
        }
        let prev_tag = self
            .prev_tag(from)
            .expect("from is at or above the log start");
        self.next.insert(b, upto);
        self.messages.push((
            b,
            PbMsg::Append(Append {
                view,
                start: from,
                prev_tag,
                entries,
                commit: self.commit,
                read_round: self.read_round,
            }),
        ));
    }

    /// Send backup `b` the next chunk of the snapshot, unless one is in
    /// flight. `next[b]` stays below the log's start until the backup
    /// acknowledges the whole state, so heartbeats come here and resend
    /// only after a stall (`tick`).
    fn send_chunk(&mut self, b: ReplicaId) {
        let view = self.view.expect("primary has a view");
        let index = self.log_start;
        let s = self.sending.entry(b).or_insert(Sending {
            index,
            acked: 0,
            sent: 0,
        });
        if s.index != index {
            // Compacted since it began: the old snapshot is gone, start
            // over with the current one (the backup drops its partial
            // buffer when it sees a chunk of another state).
            *s = Sending {
                index,
                acked: 0,
                sent: 0,
            };
        }
        if s.sent > s.acked {
            return; // one chunk in flight at a time
        }
        let total = self.snapshot.len() as u64;
        let offset = s.acked.min(total);
        let end = (offset + self.cfg.transfer_chunk_bytes as u64).min(total);
        s.sent = end.max(offset + 1);
        if offset == 0 {
            self.stats.transfers_sent += 1;
        }
        self.stats.transfer_chunks_sent += 1;
        self.messages.push((
            b,
            PbMsg::Transfer(Transfer {
                view,
                index,
                last_tag: self.start_tag,
                total,
                offset,
                data: self.snapshot.slice(offset as usize..end as usize),
            }),
        ));
    }

    /// A backup's progress through the transfer of the state at `index`:
    /// it holds the first `received` bytes (0: none it can use).
    fn on_transfer_progress(&mut self, b: ReplicaId, index: Pos, received: u64) {
        let total = self.snapshot.len() as u64;
        let Some(s) = self.sending.get_mut(&b) else {
            return;
        };
        if index != s.index || s.index != self.log_start || received > total {
            return; // about another snapshot than the one being sent
        }
        if received == s.sent && received > s.acked {
            // The chunk in flight landed in order: send the next.
            s.acked = received;
            self.progress_tick.insert(b, self.ticks);
            self.send_chunk(b);
        } else {
            // A duplicate, reordered or lost chunk, or a backup that lost
            // its buffer: nothing is sent now (so duplicates cannot
            // multiply the traffic); the next stall resends from here.
            s.acked = received;
            s.sent = s.sent.max(received);
        }
    }

    fn on_ack(&mut self, a: Ack) {
        let Some(view) = self.view else { return };
        if view.primary != self.cfg.id {
            return;
        }
        if a.view > view.num {
            if !self.deposed && !self.cfg.bugs.serve_after_newer_view {
                self.deposed = true;
                self.step_down();
            }
            return;
        }
        if a.view < view.num || !self.matched.contains_key(&a.from) {
            return;
        }
        let b = a.from;
        let e = self.echoed.get_mut(&b).expect("a backup");
        *e = (*e).max(a.read_round);
        if !a.ok && (a.received > 0 || self.sending.contains_key(&b)) {
            // Progress through a transfer, or (received 0) a backup that
            // cannot use the chunk it got (it lost its buffer): a refusal
            // while a transfer is under way restarts it, from 0, at the
            // next stall.
            let index = if a.received > 0 {
                a.end
            } else {
                self.log_start
            };
            self.on_transfer_progress(b, index, a.received);
            return;
        }
        if a.ok {
            if a.end > self.log_end() {
                return; // not what this primary sent: ignore
            }
            self.nacked.remove(&b);
            if self.sending.get(&b).is_some_and(|s| a.end >= s.index) {
                self.sending.remove(&b); // it holds the state
            }
            if a.end > self.matched[&b] {
                self.matched.insert(b, a.end);
                self.progress_tick.insert(b, self.ticks);
            }
            if self.next[&b] < a.end {
                self.next.insert(b, a.end);
            }
        } else {
            // Back up to where it says its log may match. Only a hint that
            // moves `next` back resends at once: a repeated or duplicated
            // refusal waits for the next heartbeat, so refusals cannot
            // multiply into a storm.
            let hint = a.end.min(self.log_end());
            if hint >= self.next[&b] {
                return;
            }
            self.next.insert(b, hint);
            // Only a hint below the last one resends at once (the backup
            // is walking back to where its log matches); the same hint
            // again waits for the heartbeat.
            let last = self.nacked.insert(b, hint);
            if last.is_some_and(|l| hint >= l) {
                return;
            }
        }
        if self.next[&b] < self.log_end() {
            self.send_append(b, false);
        }
    }

    /// Answer, in arrival order, every read whose round every backup
    /// confirmed and whose index is applied.
    fn serve_reads(&mut self, replies: &mut Vec<(ReplyTo, Message)>) {
        if !self.serving() {
            return;
        }
        let confirmed = self.confirmed_round();
        while let Some(r) = self.reads.front() {
            if r.round > confirmed || r.index > self.applied {
                break;
            }
            let r = self.reads.pop_front().expect("front exists");
            let reply = self.sm.read_local(&r.req).unwrap_or_else(|| {
                refusal(ClientReply::Error {
                    reason: "request is not a read".to_string(),
                })
            });
            replies.push((r.to, reply));
        }
    }

    // ----- backup ---------------------------------------------------------

    fn ack(&mut self, to: ReplicaId, ok: bool, end: Pos) {
        self.ack_received(to, ok, end, 0);
    }

    fn ack_received(&mut self, to: ReplicaId, ok: bool, end: Pos, received: u64) {
        self.messages.push((
            to,
            PbMsg::Ack(Ack {
                view: self.highest_view,
                from: self.cfg.id,
                ok,
                end,
                read_round: self.echo_round,
                received,
            }),
        ));
    }

    /// Is a message of `view` one this replica takes as a backup? Answers
    /// one from an older view with the newer view's number.
    fn accept_as_backup(&mut self, view: View) -> bool {
        if view.num < self.highest_view {
            if view.primary != self.cfg.id {
                self.ack(view.primary, false, 0);
            }
            return false;
        }
        if !view.has(view.primary) || view.primary == self.cfg.id {
            return false;
        }
        self.adopt(view) && view.backups & (1u64 << self.cfg.id) != 0
    }

    fn on_append(&mut self, a: Append) {
        if !self.accept_as_backup(a.view) {
            return;
        }
        let primary = a.view.primary;
        self.echo_round = self.echo_round.max(a.read_round);
        let end = self.log_end();
        if a.start > end {
            self.ack(primary, false, end);
            return;
        }
        let mut start = a.start;
        let mut entries = a.entries;
        if start < self.log_start {
            // Below our snapshot: applied, so identical to the primary's.
            let skip = (self.log_start - start) as usize;
            if skip >= entries.len() {
                let matched = start + entries.len() as u64;
                self.ack(primary, true, matched);
                return;
            }
            entries.drain(..skip);
            start = self.log_start;
        } else if self.prev_tag(start) != Some(a.prev_tag) {
            let hint = self.commit.min(start.saturating_sub(1)).max(self.log_start);
            self.ack(primary, false, hint);
            return;
        }
        let matched = start + entries.len() as u64;
        for (i, (tag, batch)) in entries.into_iter().enumerate() {
            let pos = start + i as u64;
            if pos < self.log_end() {
                if self.tag_at(pos) == Some(tag) {
                    continue;
                }
                if pos < self.applied {
                    // A primary missing a write this backup applied: never
                    // while the protocol holds (planted bugs aside).
                    self.stats.overwrite_applied_refused += 1;
                    self.ack(primary, false, self.applied);
                    return;
                }
                self.entries.truncate((pos - self.log_start) as usize);
                self.commit = self.commit.min(pos);
            }
            self.records.push(PbRecord::Entry {
                pos,
                tag,
                batch: batch.clone(),
            });
            self.entries.push_back((tag, batch));
        }
        // Everything through `matched` now equals the primary's log, so its
        // commit point applies up to there.
        self.commit = self.commit.max(a.commit.min(matched));
        self.ack(primary, true, matched);
    }

    fn on_transfer(&mut self, t: Transfer) {
        if !self.accept_as_backup(t.view) {
            return;
        }
        let primary = t.view.primary;
        if self
            .receiving
            .as_ref()
            .is_some_and(|r| r.index <= self.applied)
        {
            self.receiving = None; // covered by what we hold since
        }
        if t.index <= self.applied {
            self.ack(primary, true, t.index.min(self.log_end()));
            return;
        }
        if self.tag_at(t.index - 1) == Some(t.last_tag) {
            // Our log already matches the primary's through the snapshot
            // (log matching: same tag at the same position, same prefix),
            // and what lies below it is applied there, so committed. Keep
            // our entries: the ones above may be writes the primary
            // already counted as acknowledged by us, which installing
            // would throw away.
            self.commit = self.commit.max(t.index);
            self.ack(primary, true, t.index);
            return;
        }
        let same = self
            .receiving
            .as_ref()
            .is_some_and(|r| (r.index, r.last_tag, r.total) == (t.index, t.last_tag, t.total));
        if !same {
            if t.offset != 0 {
                // A piece of a transfer we hold no start of (we restarted,
                // or it is of a snapshot we dropped): say we hold nothing,
                // so the primary starts over at its next stall.
                self.ack_received(primary, false, self.log_start, 0);
                return;
            }
            // At most one partial transfer: a chunk of another state
            // replaces it.
            self.receiving = Some(Receiving {
                index: t.index,
                last_tag: t.last_tag,
                total: t.total,
                buf: BytesMut::with_capacity(
                    t.total.min(2 * self.cfg.transfer_chunk_bytes as u64) as usize
                ),
            });
        }
        let r = self.receiving.as_mut().expect("set above");
        let held = r.buf.len() as u64;
        if t.offset != held || (t.data.is_empty() && held < r.total) {
            // Out of order or a duplicate: not taken. Answered with what
            // we hold (one answer per chunk, never more), so a lost
            // acknowledgement is repaired, but only an answer to the chunk
            // in flight makes the primary send another.
            if held > 0 {
                self.ack_received(primary, false, t.index, held);
            }
            return;
        }
        r.buf.extend_from_slice(&t.data);
        let held = r.buf.len() as u64;
        if held < r.total {
            self.ack_received(primary, false, t.index, held);
            return;
        }
        let r = self.receiving.take().expect("present");
        let data = r.buf.freeze();
        if let Err(e) = self.sm.check_snapshot(&data) {
            log::error!(
                "primary/backup: state transfer at {} does not restore: {e}",
                r.index
            );
            return;
        }
        self.install(r.index, r.last_tag, data);
        self.ack(primary, true, r.index);
    }

    /// Replace the state and log with a transferred snapshot, checked.
    fn install(&mut self, index: Pos, last_tag: u64, data: Bytes) {
        // Rare and worth an operator's eye: a backup too far behind to
        // catch up from the primary's log.
        log::info!(
            "primary/backup replica {}: installing a state transfer at position {index} \
             ({} bytes)",
            self.cfg.id,
            data.len()
        );
        if self.capturing.take().is_some() {
            // Superseded by the installed state.
            self.sm.abort_snapshot();
        }
        self.sm
            .restore(&data)
            .expect("checked by check_snapshot just before");
        self.records.push(PbRecord::Snapshot {
            index,
            last_tag,
            data: data.clone(),
            install: true,
        });
        self.log_start = index;
        self.start_tag = last_tag;
        self.entries.clear();
        self.snapshot = data;
        self.log_bytes = 0;
        self.commit = index;
        self.applied = index;
        self.installed = Some(index);
        self.stats.transfers_installed += 1;
    }

    // ----- log compaction -------------------------------------------------

    /// Start a snapshot once enough is applied above the log's start, or
    /// serialize the next slice of the one being taken. One at a time: a
    /// trigger while one is in flight waits for it (the log grows
    /// meanwhile, as a Paxos replica's does).
    fn maybe_snapshot(&mut self, out: &mut Output) {
        if let Some((index, last_tag)) = self.capturing {
            if let Some(file) = self.sm.snapshot_step(self.cfg.snapshot_step_bytes) {
                self.capturing = None;
                self.snapshot_taken(out, index, last_tag, file);
            }
            return;
        }
        let entries = self.applied - self.log_start;
        let bounds =
            self.cfg.snapshot_log_entries..=PB_LOG_ENTRIES_MAX.max(self.cfg.snapshot_log_entries);
        let weighs = crate::replica::log_outweighs_state(
            entries,
            self.log_bytes,
            self.snapshot.len() as u64,
            bounds,
            self.cfg.snapshot_log_percent,
        );
        if self.snapshot_in_flight.is_some()
            || entries == 0
            || !(weighs || self.log_bytes > self.cfg.snapshot_log_bytes)
        {
            return;
        }
        self.log_bytes = 0;
        let index = self.applied;
        let last_tag = self.tag_at(index - 1).expect("applied entries are held");
        // The file's tag goes first, so the state machine serializes
        // straight into the file's bytes.
        let head = last_tag.to_le_bytes().to_vec();
        let done = self
            .sm
            .begin_snapshot(head)
            .or_else(|| self.sm.snapshot_step(self.cfg.snapshot_step_bytes));
        match done {
            Some(file) => self.snapshot_taken(out, index, last_tag, file),
            None => self.capturing = Some((index, last_tag)),
        }
    }

    fn snapshot_taken(&mut self, out: &mut Output, index: Pos, last_tag: u64, file: Bytes) {
        let w = SnapshotWrite {
            index,
            last_tag,
            file,
        };
        self.snapshot_in_flight = Some(w.clone());
        out.snapshot_write = Some(w);
    }

    // ----- invariants -----------------------------------------------------

    fn assert_invariants(&self) {
        assert!(
            self.applied >= self.log_start,
            "applied below the log start"
        );
        assert!(self.applied <= self.log_end(), "applied past the log");
        if let Some(v) = self.view {
            assert_eq!(
                v.num, self.highest_view,
                "acting in a view that is not the highest adopted"
            );
            assert!(
                v.backups & (1u64 << v.primary) == 0,
                "primary is its own backup"
            );
        }
        if self.is_primary() {
            for (b, m) in &self.matched {
                assert!(
                    *m <= self.log_end(),
                    "backup {b} matched past the primary's log"
                );
            }
        }
    }
}
