//! One replica of one group: the Paxos core plus the state machine it feeds,
//! plus the bookkeeping that routes each applied command's answer back to
//! the client connection that asked. Sans-IO like the core: the driver (the
//! simulator or the mio runtime) hands in requests, messages and ticks,
//! persists the records of [`Replica::ready`], and then calls
//! [`Replica::advance`] with the proof, which applies chosen commands and
//! returns the messages and client replies that may now leave.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use synod_wire::{ClientId, ClientReply, Message, PaxosMsg, ReplicaId, Seq, Slot};

use crate::paxos::{self, Durable, Paxos, ProposeError, ReadStatus, ReadTicket, Ready, Synced};
use crate::rng::Rng;

/// The driver's handle for where a reply goes (a connection and request id,
/// a simulated client, ...). Opaque to the replica.
pub type ReplyTo = u64;

/// A deterministic state machine replicated through the log.
///
/// Generic over what its clients send, because the KV groups take a
/// `ClientRequest` and the shard master a `MasterRequest`; both answer with
/// a whole [`Message`] (a KV group with `Message::Reply`, the master with
/// `Message::Config` or an error reply), which is also what the replica's
/// own `NotLeader`/`Busy` refusals are sent as. The replica itself only
/// needs each request's `(client_id, seq)` and its log command.
pub trait StateMachine {
    /// A decoded client request, as handed to [`Replica::on_request`]. Reads
    /// are kept (cloned) until their leadership check completes.
    type Request: Clone;
    /// The identity a request is deduplicated and answered under.
    fn request_id(req: &Self::Request) -> (ClientId, Seq);
    /// The log command a request is proposed as, which
    /// [`StateMachine::apply`] reads back. The state machine owns this
    /// encoding; a request that arrived as bytes already in it skips the
    /// call ([`Replica::on_request_encoded`]).
    fn command(req: &Self::Request) -> Bytes;
    /// Apply one chosen command. Returns the request identity and reply when
    /// the command came from a client, so the replica can answer it.
    fn apply(&mut self, slot: Slot, cmd: &Bytes) -> Option<(ClientId, Seq, Message)>;
    /// The whole state as deterministic bytes.
    fn snapshot(&self) -> Bytes;
    /// Start a snapshot of the state as it is now, serialized later by
    /// [`StateMachine::snapshot_step`] while [`StateMachine::apply`] goes
    /// on, after the bytes `prefix`; returns `prefix` + the state at once
    /// if it is done at once (the default: [`StateMachine::snapshot`], for
    /// states too small to slice).
    fn begin_snapshot(&mut self, prefix: Vec<u8>) -> Option<Bytes> {
        if prefix.is_empty() {
            return Some(self.snapshot());
        }
        let mut out = prefix;
        out.extend_from_slice(&self.snapshot());
        Some(Bytes::from(out))
    }
    /// Serialize about `budget` more bytes of the snapshot begun by
    /// [`StateMachine::begin_snapshot`]; once complete, the prefix and then
    /// exactly what `snapshot()` returned when it began.
    fn snapshot_step(&mut self, _budget: usize) -> Option<Bytes> {
        None
    }
    /// Drop a snapshot in progress (another state is being installed).
    fn abort_snapshot(&mut self) {}
    /// Replace the whole state from `snapshot()` bytes.
    fn restore(&mut self, data: &[u8]) -> Result<(), String>;
    /// Would `restore(data)` succeed? Decodes into a scratch state machine
    /// and leaves this one untouched: a snapshot received from a peer is
    /// checked with this before it is persisted or installed.
    fn check_snapshot(&self, data: &[u8]) -> Result<(), String>;
    /// Requests answered by [`StateMachine::read_local`] after a read-index
    /// check instead of through the log. They must not change state, and
    /// need no deduplication (answering one twice is harmless).
    fn is_read(_req: &Self::Request) -> bool {
        false
    }
    /// Answer a read from the current state (for the requests `is_read`
    /// accepts; `None` for anything else).
    fn read_local(&self, _req: &Self::Request) -> Option<Message> {
        None
    }
    /// The log command that stamps the log with the leader's clock (`ms`),
    /// for state machines that keep log time (session expiry); `None`
    /// (the default) proposes no stamps.
    fn clock_command(_ms: u64) -> Option<Bytes> {
        None
    }
    /// Could the answer to read `req` change with log time alone? A key
    /// with an expiry reads as absent once log time passes it; a read
    /// whose answer no clock can change needs no fresh stamp (see
    /// [`StampReads::Timed`]). Default: yes, whenever there are stamps.
    fn read_needs_time(&self, _req: &Self::Request) -> bool {
        Self::clock_command(0).is_some()
    }
    /// Records the state has shed because it no longer owns them (a shard
    /// handed to another group and deleted), counted up while this instance
    /// lives. Once the records shed since the replica's last snapshot are
    /// at least those still held ([`StateMachine::held_records`]), i.e. the
    /// last snapshot is at least half garbage, the replica snapshots at
    /// once, so that snapshot (in memory and on disk) and the log entries
    /// that carried the data stop holding it. Without this a group that
    /// gave its data away and went quiet kept it until `snapshot_log_slots`
    /// more slots, possibly forever. Halving keeps the snapshots a move
    /// costs logarithmic in the shards it moves, not one per shard.
    /// Default: never sheds.
    fn shed_records(&self) -> u64 {
        0
    }
    /// Records the state holds now, in the unit of
    /// [`StateMachine::shed_records`]; only compared with it.
    fn held_records(&self) -> u64 {
        0
    }
}

/// A command handed in as bytes ([`Replica::on_request_encoded`]) at least
/// this long goes into the log as the very slice it arrived in; a shorter
/// one is copied out first. Sharing saves copying a large value; the
/// slice keeps its whole read buffer alive until the log drops it (the next
/// compaction). A slice this large is at least half of a 64 KiB read
/// buffer, and a buffer the runtime grew past that was grown for a frame
/// at least half its size, itself shared if it was a logged write, so the
/// log pins about twice the command bytes it holds at most, which
/// `snapshot_log_bytes` bounds (a buffer grown for a frame that never
/// reached the log, e.g. a refused write, is the exception). A small
/// command would pin a whole read buffer (and stop the connection reusing
/// it) to save copying a few dozen bytes.
pub const SHARE_COMMAND_MIN_BYTES: usize = 32 << 10;

/// The slot trigger of both replication modes: `slots` applied above the
/// log's start, holding `log_bytes` of commands, call for a snapshot of a
/// state last snapshotted at `state_bytes` once they pass the end of
/// `bounds` whatever their weight, or pass its start and weigh (command
/// bytes plus [`LOG_SLOT_COST_BYTES`] a slot) at least `percent` of the
/// state ([`ReplicaConfig::snapshot_log_percent`]).
pub(crate) fn log_outweighs_state(
    slots: u64,
    log_bytes: u64,
    state_bytes: u64,
    bounds: std::ops::RangeInclusive<u64>,
    percent: u64,
) -> bool {
    if slots > *bounds.end() {
        return true;
    }
    if slots <= *bounds.start() {
        return false;
    }
    let log = log_bytes.saturating_add(slots.saturating_mul(LOG_SLOT_COST_BYTES));
    log.saturating_mul(100) >= state_bytes.saturating_mul(percent)
}

/// A refusal or error from the replica itself, as a KV reply.
fn refusal(reply: ClientReply) -> Message {
    Message::Reply(reply)
}

/// Deliberate bugs at this layer (see [`paxos::PlantedBugs`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaBugs {
    /// Answer Gets from this replica's local state, leader or not.
    pub follower_reads: bool,
    /// Answer Gets at once on a replica that believes it leads, skipping
    /// the quorum check (a deposed leader serves stale reads).
    pub unconfirmed_leader_reads: bool,
}

/// Default [`ReplicaConfig::snapshot_step_bytes`]: 256 KiB, well under a
/// millisecond of serialization per loop turn.
pub const SNAPSHOT_STEP_BYTES_DEFAULT: usize = 256 << 10;

/// Default [`ReplicaConfig::snapshot_log_bytes`]: 64 MiB.
pub const SNAPSHOT_LOG_BYTES_DEFAULT: u64 = 64 << 20;

/// What one log slot is counted as costing, on top of its command bytes,
/// when the log is weighed against the state
/// ([`ReplicaConfig::snapshot_log_percent`]): about a slot's entry, its
/// batch's vector and one command's `Bytes` in memory. An estimate that
/// keeps a log of tiny commands from counting as free.
pub const LOG_SLOT_COST_BYTES: u64 = 128;

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub paxos: paxos::Config,
    /// Snapshot and compact once this many slots were applied above the
    /// log's start.
    pub snapshot_log_slots: usize,
    /// ... or once the batches applied since the last snapshot was taken
    /// hold more than this many command bytes (whichever comes first), so
    /// a log of large values is bounded in bytes, not only in slots.
    pub snapshot_log_bytes: u64,
    /// The slot trigger (`snapshot_log_slots`) also waits until the log
    /// since the last snapshot costs at least this percent of that
    /// snapshot's size (its command bytes plus [`LOG_SLOT_COST_BYTES`] a
    /// slot), so a large state is rewritten once per a fraction of its own
    /// size in writes instead of every few thousand slots: each snapshot
    /// writes the whole state, and at a million keys the slot trigger alone
    /// wrote ~37 bytes of snapshot per byte of log (Redis's
    /// `auto-aof-rewrite-percentage` is the same rule, at 100). The log
    /// stays bounded in slots by half the Paxos `slot_horizon` whatever the
    /// state (recovery keeps entries only within four horizons of the
    /// snapshot) and in bytes by `snapshot_log_bytes`. 0: the slot trigger
    /// alone (the simulators and unit tests, whose pinned seeds were chosen
    /// on it).
    pub snapshot_log_percent: u64,
    /// Bytes of snapshot serialized per [`Replica::advance`] (and per tick
    /// when idle): a snapshot of a large state is taken in slices of about
    /// this size, one per loop turn, while writes go on, instead of in one
    /// stall (see [`StateMachine::begin_snapshot`]).
    pub snapshot_step_bytes: usize,
    /// Serve reads by read-index (one quorum round shared by the reads of a
    /// loop turn, no log slot). Off: reads go through the log like writes.
    pub read_index: bool,
    /// Reads waiting for their check at most; beyond this they get Busy.
    pub reads_pending_max: usize,
    /// The leader stamps the log with its clock ([`Replica::set_now_ms`])
    /// before a write when the last stamp is at least this old, so log
    /// time advances while there is write traffic.
    pub clock_interval_ms: u64,
    /// Which reads that reach the leader when a stamp is due (no write for
    /// `clock_interval_ms`) go through the log behind a fresh stamp
    /// instead of lease or read-index, so they see log time at most one
    /// interval old (key expiry: an idle store's log time would otherwise
    /// stand still and an expired key read as present). The simulators
    /// turn it off to keep the trajectories their pinned seeds were chosen
    /// on.
    pub stamp_reads: StampReads,
    /// Largest log command (encoded request) taken from a client; larger
    /// ones are answered `Error` at once. Derived from the frame limit
    /// ([`synod_wire::command_bytes_max`]) so any message carrying the
    /// command fits one frame.
    pub command_bytes_max: usize,
    pub bugs: ReplicaBugs,
}

impl ReplicaConfig {
    pub fn new(id: ReplicaId, replicas: u32) -> ReplicaConfig {
        ReplicaConfig {
            paxos: paxos::Config::new(id, replicas),
            snapshot_log_slots: 1024,
            snapshot_log_bytes: SNAPSHOT_LOG_BYTES_DEFAULT,
            snapshot_log_percent: 0,
            snapshot_step_bytes: SNAPSHOT_STEP_BYTES_DEFAULT,
            read_index: true,
            reads_pending_max: 1 << 16,
            clock_interval_ms: 100,
            stamp_reads: StampReads::Timed,
            command_bytes_max: synod_wire::command_bytes_max(synod_wire::DEFAULT_FRAME_BYTES_MAX),
            bugs: ReplicaBugs::default(),
        }
    }
}

/// When a read that reaches a leader whose last clock stamp is older than
/// `clock_interval_ms` goes through the log behind a fresh stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampReads {
    /// Never: reads see the applied log time, however old (the
    /// simulators' default, the trajectories their seeds were pinned on).
    Off,
    /// Only a read whose answer log time could change
    /// ([`StateMachine::read_needs_time`]: its shard holds a key with an
    /// expiry). The servers' default: a store without expiring keys serves
    /// every read by lease or read-index, however idle its log.
    Timed,
    /// Every read while a stamp is due (`synod-sim --stamp-reads`, which
    /// exercises the logged-read path on stores with no expiring keys).
    Always,
}

/// What may leave once the records are durable.
#[derive(Debug)]
pub struct Output {
    pub messages: Vec<(ReplicaId, PaxosMsg)>,
    pub replies: Vec<(ReplyTo, Message)>,
    /// The snapshot installed in this round, if any (for checkers).
    pub installed_snapshot: Option<Slot>,
    /// The chosen batches applied in this round, in slot order (for checkers).
    pub committed: Vec<(Slot, synod_wire::Batch)>,
    /// Log entries a snapshot made unnecessary. Dropping thousands of
    /// batches takes milliseconds, so the runtime frees them on another
    /// thread; the simulator just drops them.
    pub garbage: Vec<Option<paxos::Entry>>,
    /// A snapshot taken in this round, `(index, state bytes)`: the driver
    /// writes and syncs it wherever it likes (the runtime on a writer
    /// thread, off its loop) and calls [`Replica::snapshot_durable`] once
    /// it is durable; only then does it become the log's start. At most
    /// one is outstanding per replica: no other is taken until then.
    pub snapshot_write: Option<(Slot, Bytes)>,
}

pub struct Replica<S: StateMachine> {
    cfg: ReplicaConfig,
    paxos: Paxos,
    sm: S,
    /// Requests this replica proposed and still owes an answer. Ordered, so
    /// the refusals sent on a step-down come out in the same order every run.
    waiting: BTreeMap<(ClientId, Seq), Vec<ReplyTo>>,
    /// Replies produced outside `advance` (refusals), sent with the next
    /// round's chosen replies (`advance_chosen`), before its sync.
    early: Vec<(ReplyTo, Message)>,
    /// Reads waiting for their leadership check and commit point, in
    /// arrival order (their tickets are ordered the same way).
    reads: VecDeque<(ReplyTo, S::Request, ReadTicket)>,
    /// Reads answered, and how many of them under a lease.
    reads_served: u64,
    reads_leased: u64,
    was_leader: bool,
    /// The driver's clock (ms; wall clock in the runtime, virtual time in
    /// the simulator). The core never reads a clock itself.
    now_ms: u64,
    /// The last clock stamp this replica proposed while leading.
    last_stamp_ms: Option<u64>,
    /// [`StateMachine::shed_records`] at the last snapshot.
    shed_at_snapshot: u64,
    /// The snapshot handed to the driver to write and not yet durable.
    snapshot_in_flight: Option<(Slot, Bytes)>,
    /// The index of a snapshot being serialized a slice per turn.
    capturing: Option<Slot>,
    /// A tick came since the last `advance`: an idle replica's capture
    /// still moves on (its `ready` asks for an `advance`).
    capture_tick: bool,
    /// Command bytes of the batches applied since the last snapshot was
    /// taken (the byte trigger).
    log_bytes: u64,
}

impl<S: StateMachine> Replica<S> {
    /// Start (or restart) from what the disk holds; `sm` is the empty state.
    pub fn new(cfg: ReplicaConfig, durable: Durable, sm: S, rng: &mut Rng) -> Replica<S> {
        let paxos = Paxos::new(cfg.paxos.clone(), durable, rng);
        let was_leader = paxos.is_leader();
        Replica {
            cfg,
            paxos,
            sm,
            waiting: BTreeMap::new(),
            early: Vec::new(),
            reads: VecDeque::new(),
            reads_served: 0,
            reads_leased: 0,
            was_leader,
            now_ms: 0,
            last_stamp_ms: None,
            shed_at_snapshot: 0,
            snapshot_in_flight: None,
            capturing: None,
            capture_tick: false,
            log_bytes: 0,
        }
    }

    /// The driver's current time in ms, before it hands in requests.
    pub fn set_now_ms(&mut self, ms: u64) {
        self.now_ms = ms;
    }

    /// The driver's monotonic clock for read leases ([`Paxos::set_clock`]:
    /// set before ticks and flushes and before reads are served).
    pub fn set_clock(&mut self, now: u64) {
        self.paxos.set_clock(now);
    }

    /// Ahead of a write, the leader stamps the log with its clock if the
    /// last stamp is [`ReplicaConfig::clock_interval_ms`] old. The stamp
    /// never goes backwards from this leader's previous one (and the state
    /// machine keeps the maximum, so log time never goes back across
    /// leaders either).
    fn maybe_stamp(&mut self) {
        if !self.stamp_due() {
            return;
        }
        let ms = self.now_ms.max(self.last_stamp_ms.unwrap_or(0));
        if let Some(cmd) = S::clock_command(ms) {
            if self.paxos.propose(cmd).is_ok() {
                self.last_stamp_ms = Some(ms);
            }
        }
    }

    /// Is a clock stamp due (this replica leads, its state machine keeps
    /// log time, and the last stamp is an interval old)?
    fn stamp_due(&self) -> bool {
        self.paxos.is_leader()
            && self
                .last_stamp_ms
                .is_none_or(|last| self.now_ms >= last.saturating_add(self.cfg.clock_interval_ms))
            && S::clock_command(0).is_some()
    }

    pub fn paxos(&self) -> &Paxos {
        &self.paxos
    }
    /// Reads answered by read-index or lease, and how many of them while
    /// this leader held a lease.
    pub fn read_counts(&self) -> (u64, u64) {
        (self.reads_served, self.reads_leased)
    }
    pub fn state(&self) -> &S {
        &self.sm
    }
    pub fn is_leader(&self) -> bool {
        self.paxos.is_leader()
    }

    /// A client request arrived (typed: the simulator's clients, tests).
    /// If it goes through the log it is proposed as
    /// [`StateMachine::command`]; a read costs no encoding.
    pub fn on_request(&mut self, to: ReplyTo, req: &S::Request) {
        self.request(to, req, None);
    }

    /// A client request that arrived as bytes: `cmd` is the request in its
    /// log-command encoding as it came off the wire (what
    /// [`StateMachine::command`] would make of `req`), so it goes into the
    /// log as it is, not encoded again. `cmd` may be a slice of a larger
    /// buffer (a connection's read buffer): one shorter than
    /// [`SHARE_COMMAND_MIN_BYTES`] is copied before it goes into the log,
    /// so the log never pins a whole read buffer for a small command until
    /// the next compaction.
    pub fn on_request_encoded(&mut self, to: ReplyTo, req: &S::Request, cmd: Bytes) {
        debug_assert_eq!(cmd, S::command(req), "a request's bytes are its command");
        self.request(to, req, Some(cmd));
    }

    /// Does read `req` have to go through the log behind a fresh clock
    /// stamp (`ReplicaConfig::stamp_reads`)?
    fn stale_time(&self, req: &S::Request) -> bool {
        match self.cfg.stamp_reads {
            StampReads::Off => false,
            StampReads::Timed => self.stamp_due() && self.sm.read_needs_time(req),
            StampReads::Always => self.stamp_due(),
        }
    }

    /// Answers read `req` at once if that needs no message, no log slot
    /// and nothing more applied: this leader's lease is valid, everything
    /// chosen has been handed to the state machine, the read needs no fresh
    /// clock stamp and no earlier read is waiting. `None` otherwise (and
    /// for a request that is not a read): then it goes through
    /// [`Replica::on_request`] as usual.
    ///
    /// For a driver whose replica is waiting for a sync: it takes no other
    /// event then, and answers such reads meanwhile, but only while the
    /// `Ready` out for that sync holds no state for the state machine
    /// ([`crate::paxos::Ready::holds_state`]), so the state read is all
    /// that was handed out. That state changed last before the sync
    /// began, so the answer is the one the read would have had then,
    /// judged by a lease still valid now; and everything in it was chosen
    /// by a quorum's durable acceptances (`Ready::take_chosen`).
    pub fn read_now(&mut self, req: &S::Request) -> Option<Message> {
        if !self.cfg.read_index
            || !S::is_read(req)
            || !self.reads.is_empty()
            || self.stale_time(req)
            || !self.paxos.read_ready_now()
        {
            return None;
        }
        let reply = self.sm.read_local(req)?;
        self.reads_served += 1;
        self.reads_leased += 1;
        Some(reply)
    }

    fn request(&mut self, to: ReplyTo, req: &S::Request, cmd: Option<Bytes>) {
        if self.cfg.bugs.follower_reads
            || (self.cfg.bugs.unconfirmed_leader_reads && self.paxos.is_leader())
        {
            if let Some(reply) = self.sm.read_local(req) {
                self.early.push((to, reply));
                return;
            }
        }
        if self.cfg.read_index && S::is_read(req) && !self.stale_time(req) {
            if self.reads.len() >= self.cfg.reads_pending_max {
                self.early.push((to, refusal(ClientReply::Busy)));
                return;
            }
            match self.paxos.read_index() {
                Ok(ticket) => self.reads.push_back((to, req.clone(), ticket)),
                Err(ProposeError::NotLeader(leader)) => self
                    .early
                    .push((to, refusal(ClientReply::NotLeader { leader }))),
                Err(ProposeError::Busy) => self.early.push((to, refusal(ClientReply::Busy))),
            }
            return;
        }
        let cmd = match cmd {
            Some(c) if c.len() < SHARE_COMMAND_MIN_BYTES => Bytes::copy_from_slice(&c),
            Some(c) => c,
            None => S::command(req),
        };
        if cmd.len() > self.cfg.command_bytes_max {
            // It would not fit the Accept (or Promise, or catch-up) that
            // must carry it: taking it would wedge the group.
            self.early.push((
                to,
                refusal(ClientReply::Error {
                    reason: format!(
                        "value too large: request of {} bytes, limit {}",
                        cmd.len(),
                        self.cfg.command_bytes_max
                    ),
                }),
            ));
            return;
        }
        self.maybe_stamp();
        match self.paxos.propose(cmd) {
            Ok(()) => self.waiting.entry(S::request_id(req)).or_default().push(to),
            Err(ProposeError::NotLeader(leader)) => self
                .early
                .push((to, refusal(ClientReply::NotLeader { leader }))),
            Err(ProposeError::Busy) => self.early.push((to, refusal(ClientReply::Busy))),
        }
    }

    /// Propose a command no client waits for (the driver's own, e.g. a
    /// reconfiguration or a shard installation).
    pub fn propose(&mut self, cmd: Bytes) -> Result<(), ProposeError> {
        self.paxos.propose(cmd)
    }

    /// Ask the leader to change the group's membership (one replica
    /// added or removed; see `paxos/members.rs`).
    pub fn propose_members(&mut self, members: u64) -> Result<(), paxos::MembersError> {
        self.paxos.propose_members(members)
    }

    pub fn step(&mut self, msg: PaxosMsg, rng: &mut Rng) {
        let sm = &self.sm;
        self.paxos.step_checked(msg, rng, &mut |data| {
            sm.check_snapshot(paxos::split_snapshot(data).1)
        });
        self.after_event();
    }

    pub fn tick(&mut self, rng: &mut Rng) {
        self.capture_tick = true;
        self.paxos.tick(rng);
        self.after_event();
    }

    /// End of a loop turn: close the batch.
    pub fn flush(&mut self) {
        self.paxos.flush();
    }

    /// Records to persist; pass the result to [`Replica::advance`] with the
    /// proof that they are durable.
    pub fn ready(&mut self) -> Ready {
        let mut ready = self.paxos.ready();
        if !self.early.is_empty() || (self.capture_tick && self.capturing.is_some()) {
            ready.wake();
        }
        ready
    }

    /// Before the sync of `ready`'s records: apply the batches it holds
    /// that are chosen, and answer their clients and the reads they
    /// complete, with the refusals queued since the last round (see
    /// [`Ready::take_chosen`] for why none of it waits for this replica's
    /// disk). [`Replica::advance`] does the rest once the records are
    /// durable. Only `replies` and `committed` of the result are filled.
    pub fn advance_chosen(&mut self, ready: &mut Ready) -> Output {
        let committed = ready.take_chosen();
        let mut replies = std::mem::take(&mut self.early);
        self.apply_chosen(&committed, &mut replies);
        self.serve_reads(&mut replies);
        Output {
            messages: Vec::new(),
            replies,
            installed_snapshot: None,
            committed,
            garbage: Vec::new(),
            snapshot_write: None,
        }
    }

    /// Apply chosen batches in slot order; the replies of the commands
    /// someone waits for go to `replies`.
    fn apply_chosen(
        &mut self,
        committed: &[(Slot, synod_wire::Batch)],
        replies: &mut Vec<(ReplyTo, Message)>,
    ) {
        for (slot, batch) in committed {
            self.log_bytes += batch.payload_bytes() as u64;
            for cmd in &batch.commands {
                if paxos::command_members(cmd).is_some() {
                    // The group's own membership entry: Paxos reads it.
                    continue;
                }
                if let Some((client, seq, reply)) = self.sm.apply(*slot, cmd) {
                    if let Some(waiters) = self.waiting.remove(&(client, seq)) {
                        for w in waiters {
                            replies.push((w, reply.clone()));
                        }
                    }
                }
            }
        }
    }

    /// Apply what was chosen and release what may leave.
    pub fn advance(&mut self, ready: Ready, proof: Synced) -> Output {
        let gated = ready.release(proof);
        let mut out = Output {
            messages: Vec::new(),
            replies: std::mem::take(&mut self.early),
            installed_snapshot: gated.snapshot.as_ref().map(|(i, _)| *i),
            committed: Vec::new(),
            garbage: Vec::new(),
            snapshot_write: None,
        };
        self.capture_tick = false;
        if let Some((index, data)) = &gated.snapshot {
            if self.capturing.take().is_some() {
                // Superseded by the installed state.
                self.sm.abort_snapshot();
            }
            if let Err(e) = self.sm.restore(paxos::split_snapshot(data).1) {
                // A snapshot is only ever produced by our own state machine
                // and carried under checksums; failing to load it means
                // corruption we cannot serve from.
                panic!("snapshot at slot {index} does not restore: {e}");
            }
            // The installed snapshot is the new baseline of what was shed.
            self.shed_at_snapshot = self.sm.shed_records();
            self.log_bytes = 0;
        }
        self.apply_chosen(&gated.committed, &mut out.replies);
        self.serve_reads(&mut out.replies);
        out.messages = gated.messages;
        out.committed = gated.committed;
        // Counted up to the applied point (all a snapshot can cover), not the
        // log's end, which may lie ahead by up to the slot horizon.
        let base = self.paxos.snapshot_index();
        let applied = self.paxos.applied_upto();
        let shed = self.sm.shed_records();
        let shed_since = shed.saturating_sub(self.shed_at_snapshot);
        // One snapshot write at a time: a trigger while one is in flight
        // waits for it (the log keeps growing meanwhile; see ARCHITECTURE.md
        // "Snapshots off the loop" for the bound).
        if let Some(index) = self.capturing {
            if let Some(data) = self.sm.snapshot_step(self.cfg.snapshot_step_bytes) {
                self.capturing = None;
                self.snapshot_taken(&mut out, index, data);
            }
        } else if self.snapshot_in_flight.is_none()
            && applied > base
            && (self.log_outweighs_state(applied - base)
                || self.log_bytes > self.cfg.snapshot_log_bytes
                || (shed_since > 0 && shed_since >= self.sm.held_records()))
        {
            // The membership in effect at the snapshot's index travels
            // with it (the entries that set it are compacted away).
            let header =
                paxos::snapshot_header(self.paxos.members_applied(), self.paxos.config().members);
            self.shed_at_snapshot = shed;
            self.log_bytes = 0;
            match self.sm.begin_snapshot(header) {
                Some(data) => self.snapshot_taken(&mut out, applied, data),
                // The first slice now, the rest one per turn.
                None => match self.sm.snapshot_step(self.cfg.snapshot_step_bytes) {
                    Some(data) => self.snapshot_taken(&mut out, applied, data),
                    None => self.capturing = Some(applied),
                },
            }
        }
        out
    }

    /// The slot trigger: `slots` applied above the log's start are past
    /// `snapshot_log_slots` and the log weighs at least
    /// `snapshot_log_percent` of the state held in the last snapshot, or
    /// past half the slot horizon whatever the state.
    fn log_outweighs_state(&self, slots: u64) -> bool {
        let state = self
            .paxos
            .snapshot_held()
            .map_or(0, |(_, d)| d.len() as u64);
        log_outweighs_state(
            slots,
            self.log_bytes,
            state,
            self.cfg.snapshot_log_slots as u64..=self.cfg.paxos.slot_horizon / 2,
            self.cfg.snapshot_log_percent,
        )
    }

    /// The snapshot at `index` is serialized: hand it to the driver.
    fn snapshot_taken(&mut self, out: &mut Output, index: Slot, data: Bytes) {
        self.snapshot_in_flight = Some((index, data.clone()));
        out.snapshot_write = Some((index, data));
    }

    /// Give a snapshot being serialized its next slice at the next
    /// `advance` even if nothing else happens (the runtime's every loop
    /// turn; the simulator leaves it to ticks and traffic); returns whether
    /// one is.
    pub fn nudge_capture(&mut self) -> bool {
        let capturing = self.capturing.is_some();
        self.capture_tick |= capturing;
        capturing
    }

    /// Is a snapshot being serialized (a slice per turn)?
    pub fn snapshot_capturing(&self) -> bool {
        self.capturing.is_some()
    }

    /// The snapshot at `index` that [`Output::snapshot_write`] handed out is
    /// durable (file synced, renamed, directory synced): it becomes the log's
    /// start, and the log entries below it are returned for the driver to
    /// drop. Anything else (a stale index, or nothing in flight, as after a
    /// restart) is ignored.
    pub fn snapshot_durable(&mut self, index: Slot) -> paxos::Compacted {
        match self.snapshot_in_flight.take() {
            Some((i, data)) if i == index => self.paxos.compact(index, data),
            other => {
                self.snapshot_in_flight = other;
                paxos::Compacted::default()
            }
        }
    }

    /// The snapshot this replica serves to laggards is durable at `index`
    /// and `data` holds the same bytes (the runtime maps the file): hold
    /// that instead of the copy in memory, returned to be freed. See
    /// [`paxos::Paxos::hold_snapshot`].
    pub fn hold_snapshot(&mut self, index: Slot, data: Bytes) -> Option<Bytes> {
        self.paxos.hold_snapshot(index, data)
    }

    /// The index and length of the snapshot served to laggards, if any.
    pub fn snapshot_held(&self) -> Option<(Slot, usize)> {
        self.paxos.snapshot_held().map(|(i, d)| (i, d.len()))
    }

    /// The slot of the snapshot being written, if any.
    pub fn snapshot_in_flight(&self) -> Option<Slot> {
        self.snapshot_in_flight.as_ref().map(|(i, _)| *i)
    }

    /// Answer the reads whose check passed, from the state just applied.
    fn serve_reads(&mut self, replies: &mut Vec<(ReplyTo, Message)>) {
        while let Some((_, _, ticket)) = self.reads.front() {
            let status = self.paxos.read_status(ticket);
            if status == ReadStatus::Wait {
                // Tickets are ordered: nothing behind this one is ready.
                break;
            }
            let (to, req, _) = self.reads.pop_front().expect("front exists");
            if status == ReadStatus::Ready {
                self.reads_served += 1;
                self.reads_leased += u64::from(self.paxos.lease_valid());
            }
            let reply = match status {
                ReadStatus::Ready => self.sm.read_local(&req).unwrap_or_else(|| {
                    refusal(ClientReply::Error {
                        reason: "request is not a read".to_string(),
                    })
                }),
                _ => refusal(ClientReply::NotLeader {
                    leader: self.paxos.leader_hint(),
                }),
            };
            replies.push((to, reply));
        }
    }

    /// Leadership lost: nobody here will answer what we were waiting on, so
    /// tell those clients to look elsewhere (a retry is deduplicated if the
    /// command is chosen after all).
    fn after_event(&mut self) {
        let leader = self.paxos.is_leader();
        if self.was_leader && !leader {
            self.last_stamp_ms = None;
            let hint = self.paxos.leader_hint();
            for (_, waiters) in std::mem::take(&mut self.waiting) {
                for w in waiters {
                    self.early
                        .push((w, refusal(ClientReply::NotLeader { leader: hint })));
                }
            }
            for (w, _, _) in std::mem::take(&mut self.reads) {
                self.early
                    .push((w, refusal(ClientReply::NotLeader { leader: hint })));
            }
        }
        self.was_leader = leader;
    }
}
