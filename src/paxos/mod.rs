//! Multi-Paxos, sans-IO.
//!
//! One [`Paxos`] is one replica of one group: acceptor, learner and (when
//! elected) leader. It owns the protocol state and nothing else: events come
//! in through [`Paxos::step`], [`Paxos::tick`], [`Paxos::propose`] and
//! [`Paxos::flush`]; what must happen next comes out of [`Paxos::ready`] as a
//! [`Ready`]: records to make durable, then (only after they are durable)
//! messages to send, a snapshot to install and chosen batches to apply.
//! It never reads a clock (time is counted in ticks), never touches a file or
//! socket, and draws randomness only from the caller's [`Rng`].
//!
//! Protocol summary (see ARCHITECTURE.md for the long form):
//! - Ballots are `(round, replica)`. A candidate runs phase 1 once for every
//!   open slot at or above its commit point; acceptors report accepted values
//!   from `max(from_slot, own chosen_upto)`. The candidate proposes only from
//!   the highest commit point any promiser reported, catching up below it
//!   first, so it never needs values an acceptor compacted away.
//! - The leader packs every command proposed since its last flush into one
//!   slot (capped by bytes and count), keeps up to `window_slots_max` slots in
//!   flight, and piggybacks its commit point on every Accept and Heartbeat.
//! - A follower learns slot `s` as chosen when the leader of ballot `b` says
//!   `s < chosen_upto` and the follower's own entry at `s` was accepted in `b`
//!   (the leader proposes one value per slot per ballot). Anything else is
//!   fetched with a catch-up request; compacted slots come as a snapshot.
//! - Learners hand out chosen batches strictly in slot order, never past a hole.

mod log;

pub use log::{Entry, Log};

use bytes::{Bytes, BytesMut};
use synod_wire::{
    Accept, Accepted, Ballot, Batch, CatchupRequest, CatchupResponse, Commit, Heartbeat, LogEntry,
    PaxosMsg, PreVote, PreVoteReply, Prepare, Promise, Proposal, Reject, ReplicaId, Slot,
    SnapshotChunk, SnapshotRequest,
};

use crate::rng::Rng;

/// Ballot rounds at or above this are never used by a real proposer and are
/// refused in every message (they are reserved, with [`Ballot::CHOSEN`] at
/// the top): a new candidacy goes one round above any ballot seen, so this
/// keeps that `+ 1` far from overflowing whatever a peer sends.
pub const ROUND_LIMIT: u64 = 1 << 63;

/// Slots (and commit points, snapshot indexes) at or above this are refused
/// in every message: no real log gets near it, and it keeps every `slot + n`
/// in the core far from overflowing.
pub const SLOT_LIMIT: u64 = 1 << 62;

/// Is `b` a ballot a real proposer may use?
pub fn valid_ballot(b: Ballot) -> bool {
    b.round < ROUND_LIMIT
}

/// Deliberate bugs, switched on only by tests that prove the simulator's
/// checkers catch them. All `false` in every real configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// Accept a proposal without checking it against the promised ballot.
    pub accept_ignores_promise: bool,
    /// Learn and apply past a hole or a value from another ballot.
    pub apply_past_hole: bool,
    /// Read-index from the commit point alone, forgetting that a new
    /// leader's commit point may still be below what earlier leaders chose.
    pub read_index_skips_takeover: bool,
    /// An acceptor acknowledges an Accept before its record is durable (a
    /// crash in the window forgets a vote the leader counted).
    pub accepted_before_sync: bool,
    /// No pre-vote and no leader stickiness: a replica whose election timer
    /// runs out prepares a higher ballot at once, and followers promise it
    /// even while their leader is alive, so a replica rejoining after an
    /// isolation deposes the leader a majority still follows (the
    /// behaviour before issue 14).
    pub disruptive_rejoin: bool,
}

/// Tunables of one replica. Time is in ticks (the driver decides how long a tick is).
#[derive(Clone, Debug)]
pub struct Config {
    pub id: ReplicaId,
    /// Group size (replica ids are `0..replicas`). At most 64.
    pub replicas: u32,
    /// A follower that hears no leader for a random number of ticks in
    /// `[election_ticks_min, election_ticks_max)` starts an election.
    pub election_ticks_min: u32,
    pub election_ticks_max: u32,
    pub heartbeat_ticks: u32,
    /// Unacknowledged accepts and unanswered catch-up requests are resent after this.
    pub retransmit_ticks: u32,
    /// Caps on one slot's batch.
    pub batch_commands_max: usize,
    pub batch_bytes_max: usize,
    /// Slots in flight (proposed, not yet chosen) at once.
    pub window_slots_max: u64,
    /// Commands waiting for a slot; beyond this `propose` refuses (back-pressure).
    pub pending_bytes_max: usize,
    /// Caps on one catch-up response. `catchup_bytes_max` is also the page
    /// size of a Promise and of a retransmitted or re-proposed Accept: every
    /// message carrying log entries stops at this many payload bytes (after
    /// at least one entry), so it stays under the frame limit whatever the
    /// log holds.
    pub catchup_slots_max: u64,
    pub catchup_bytes_max: usize,
    /// How far above its own commit point an acceptor takes an Accept's slot
    /// (a Promise's entries may lie up to four horizons above their sender's
    /// commit point, and recovery keeps entries up to four horizons above
    /// the snapshot). Bounds the log memory one message can make this
    /// replica allocate. Must be at least `window_slots_max` and the log a
    /// replica holds between snapshots (the runtime raises it to that).
    pub slot_horizon: u64,
    /// Size of one snapshot chunk on the wire.
    pub snapshot_chunk_bytes: usize,
    /// A snapshot larger than this is refused (bounds the receive buffer).
    pub snapshot_bytes_max: u64,
    pub bugs: PlantedBugs,
}

impl Config {
    pub fn new(id: ReplicaId, replicas: u32) -> Config {
        assert!((1..=64).contains(&replicas), "group size {replicas}");
        assert!(id < replicas, "replica id {id} >= group size {replicas}");
        Config {
            id,
            replicas,
            election_ticks_min: 10,
            election_ticks_max: 20,
            heartbeat_ticks: 2,
            retransmit_ticks: 4,
            batch_commands_max: 4096,
            batch_bytes_max: 1 << 20,
            window_slots_max: 8,
            pending_bytes_max: 16 << 20,
            catchup_slots_max: 256,
            catchup_bytes_max: 4 << 20,
            slot_horizon: 1 << 16,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_bytes_max: 8 << 30,
            bugs: PlantedBugs::default(),
        }
    }

    fn quorum(&self) -> u32 {
        self.replicas / 2 + 1
    }
}

/// A change to durable state. The driver must make every record of a
/// [`Ready`] durable, in order, before releasing the rest of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The acceptor promised `Ballot` (never to accept anything lower).
    Promised(Ballot),
    /// The acceptor accepted `batch` for `slot` in `ballot`
    /// (`Ballot::CHOSEN`: the value is known to be chosen).
    Accepted {
        slot: Slot,
        ballot: Ballot,
        batch: Batch,
    },
    /// State as of slot `index` (every slot below it applied). Log entries
    /// below `index` may be discarded once this is durable.
    Snapshot { index: Slot, data: Bytes },
}

/// What a replica finds on disk when it restarts.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    pub promised: Ballot,
    pub snapshot: Option<(Slot, Bytes)>,
    /// Accepted entries by slot; a later write to a slot replaces the earlier one.
    pub entries: std::collections::BTreeMap<Slot, (Ballot, Batch)>,
}

impl Durable {
    /// Fold one record into this durable image (what any storage must do).
    pub fn apply(&mut self, rec: &Record) {
        match rec {
            Record::Promised(b) => {
                assert!(*b >= self.promised, "promise went backwards");
                self.promised = *b;
            }
            Record::Accepted {
                slot,
                ballot,
                batch,
            } => {
                if self.snapshot.as_ref().is_none_or(|(i, _)| *slot >= *i) {
                    self.entries.insert(*slot, (*ballot, batch.clone()));
                }
            }
            Record::Snapshot { index, data } => {
                if self.snapshot.as_ref().is_none_or(|(i, _)| *i < *index) {
                    self.snapshot = Some((*index, data.clone()));
                    self.entries = self.entries.split_off(index);
                }
            }
        }
    }
}

/// About the bytes one log entry takes in a message (slot, ballot, counts
/// and lengths around its commands): what paging counts.
fn entry_bytes(batch: &Batch) -> usize {
    32 + batch.payload_bytes() + 4 * batch.commands.len()
}

/// Split `entries` into pages of at most `budget` bytes each (a page always
/// takes at least one entry, so an entry larger than the budget travels
/// alone). Keeps every message carrying entries under the frame limit.
fn paginate(entries: Vec<Proposal>, budget: usize) -> Vec<Vec<Proposal>> {
    let mut pages = Vec::new();
    let mut page: Vec<Proposal> = Vec::new();
    let mut bytes = 0;
    for p in entries {
        let n = entry_bytes(&p.batch);
        if !page.is_empty() && bytes + n > budget {
            pages.push(std::mem::take(&mut page));
            bytes = 0;
        }
        bytes += n;
        page.push(p);
    }
    if !page.is_empty() || pages.is_empty() {
        pages.push(page);
    }
    pages
}

/// Store an accepted value in the log and record it for durability: the
/// two always go together (the log is what the records rebuild on restart).
fn accept_into(log: &mut Log, out: &mut Ready, slot: Slot, ballot: Ballot, batch: Batch) {
    log.set(
        slot,
        Entry {
            ballot,
            batch: batch.clone(),
        },
    );
    out.records.push(Record::Accepted {
        slot,
        ballot,
        batch,
    });
}

/// Proof that the records of a [`Ready`] are durable. Only storage code in
/// this crate can make one, after its sync returns; this is how the
/// persist-before-send rule is carried by the types.
#[derive(Debug)]
pub struct Synced(());

impl Synced {
    /// Called by storage once everything it was handed is durable.
    pub(crate) fn after_sync() -> Synced {
        Synced(())
    }

    /// One sync covers every group on a core (group commit): each group's
    /// `Ready` of the same loop turn is released with a share of one proof.
    /// Never keep a proof past the turn that earned it.
    pub(crate) fn share(&self) -> Synced {
        Synced(())
    }
}

/// The output of one round of events.
#[derive(Debug, Default)]
pub struct Ready {
    /// Make these durable first, in order.
    pub records: Vec<Record>,
    /// Messages that may leave before `records` are durable: the leader's
    /// Accepts, Commits and Heartbeats. They state what the leader proposes
    /// and what a quorum already holds, nothing about this replica's own
    /// durable state, so the leader's disk write overlaps the followers'
    /// (the Raft paper's §10.2.1). The leader's own acceptance still counts
    /// only once durable: acknowledgements are handled in a later round,
    /// after the driver has synced this one's records (both drivers finish
    /// a round's sync before they take the next event).
    pub before_sync: Vec<(ReplicaId, PaxosMsg)>,
    gated: Gated,
}

/// The part of a [`Ready`] that may happen only after its records are durable.
#[derive(Debug, Default)]
pub struct Gated {
    /// Messages to peers.
    pub messages: Vec<(ReplicaId, PaxosMsg)>,
    /// A snapshot to install into the state machine before `committed`.
    pub snapshot: Option<(Slot, Bytes)>,
    /// Chosen batches, contiguous and in slot order, to apply.
    pub committed: Vec<(Slot, Batch)>,
    /// Nothing to persist, send or apply, but the layer above has work:
    /// a read round was confirmed or replies are waiting. Keeps drivers
    /// that skip an empty `Ready` from sitting on them.
    pub wake: bool,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.before_sync.is_empty()
            && self.gated.messages.is_empty()
            && self.gated.snapshot.is_none()
            && self.gated.committed.is_empty()
            && !self.gated.wake
    }

    /// Mark this `Ready` as worth an `advance` even if it holds nothing else.
    pub(crate) fn wake(&mut self) {
        self.gated.wake = true;
    }

    /// Hand over the gated part, given proof the records are durable.
    pub fn release(self, _proof: Synced) -> Gated {
        self.gated
    }
}

/// A linearizable read waiting for its leadership check (read-index).
///
/// The leader hands one out per read ([`Paxos::read_index`]); the read may
/// be answered from the state machine once [`Paxos::read_status`] says
/// `Ready`, which needs both (a) a quorum confirmed this leader's ballot
/// after the read arrived (`round`), so no newer leader can have chosen
/// anything before it, and (b) the state machine has applied every slot
/// below `index`, the leader's commit point when the read arrived (at
/// least the first slot this ballot proposed, so everything an earlier
/// leader chose is included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadTicket {
    pub ballot: Ballot,
    pub index: Slot,
    pub round: u64,
}

/// See [`Paxos::read_status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    Wait,
    Ready,
    /// The ballot the ticket was issued under is no longer leading here.
    Lost,
}

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// Not the leader; the best guess of who is.
    NotLeader(Option<ReplicaId>),
    /// The leader's pending queue is full.
    Busy,
}

#[derive(Debug)]
enum Role {
    Follower,
    Candidate(Candidate),
    Leader(Leader),
}

#[derive(Debug)]
struct Candidate {
    ballot: Ballot,
    promised_by: u64,
    /// Highest-ballot value reported per slot (our own log included).
    reported: std::collections::BTreeMap<Slot, (Ballot, Batch)>,
    /// Highest commit point reported and who reported it.
    best_chosen: (Slot, ReplicaId),
    /// Ticks since we last asked `best_chosen.1` for catch-up.
    catchup_wait: u32,
    /// Acceptors whose Promise is paged and not complete: the slot the next
    /// page starts at (asked again every `retransmit_ticks`).
    pages: std::collections::BTreeMap<ReplicaId, Slot>,
    page_wait: u32,
}

/// A pre-vote in progress: the ballot we would prepare and who said yes.
#[derive(Debug)]
struct PreVoteRound {
    ballot: Ballot,
    granted: u64,
}

#[derive(Debug)]
struct Leader {
    ballot: Ballot,
    next_slot: Slot,
    /// Acks per in-flight slot, indexed from `inflight_base` (== chosen_upto).
    inflight: std::collections::VecDeque<InFlight>,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    heartbeat_elapsed: u32,
    /// Ticks since each peer was last heard (check-quorum).
    silent_ticks: Vec<u32>,
    /// The commit point last told to followers.
    commit_sent: Slot,
    /// Slots below this were open when this ballot took over (re-proposed or
    /// filled with no-ops): a read waits until they are applied.
    takeover_slot: Slot,
    /// The last read round announced to the followers (Heartbeat::read_round).
    read_round: u64,
    /// Reads were registered since the last announcement: the next flush
    /// opens round `read_round + 1`.
    read_wanted: bool,
    /// Highest read round each replica confirmed under this ballot (our own
    /// entry is `read_round`).
    read_acked: Vec<u64>,
    /// The highest round a quorum confirmed.
    read_confirmed: u64,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    acks: u64,
    /// Ticks since this slot's Accept was last sent.
    age: u32,
}

/// Progress of a snapshot being received.
#[derive(Debug)]
struct SnapshotRecv {
    index: Slot,
    total: u64,
    buf: BytesMut,
    wait: u32,
}

/// Counters for tests and the simulator's summary line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub slots_proposed: u64,
    pub commands_proposed: u64,
    pub elections_started: u64,
    /// Pre-votes asked for (each election timeout of a follower starts one).
    pub prevotes_started: u64,
    pub snapshots_installed: u64,
}

pub struct Paxos {
    cfg: Config,
    promised: Ballot,
    /// Highest ballot seen anywhere (volatile): a new candidacy goes above it.
    seen: Ballot,
    log: Log,
    /// Latest snapshot held, served to laggards.
    snapshot: Option<(Slot, Bytes)>,
    /// Every slot below this is chosen and its value is in `log` or `snapshot`.
    chosen_upto: Slot,
    /// Every slot below this has been handed out to apply.
    applied_upto: Slot,
    /// Highest commit point heard from a leader.
    commit_hint: Slot,
    role: Role,
    leader_hint: Option<ReplicaId>,
    election_elapsed: u32,
    election_timeout: u32,
    /// Ticks since the leader we follow last spoke to us (saturating; huge
    /// on boot). Below `election_ticks_min` this replica refuses pre-votes
    /// and ignores other replicas' Prepares (leader stickiness).
    heard_leader: u32,
    /// Ticks since the candidate this replica promised last asked it for a
    /// Promise page (saturating). A candidate pulling a long log is alive:
    /// below `election_ticks_min` this counts like a live leader.
    heard_candidate: u32,
    /// The pre-vote this replica is running, if any.
    prevote: Option<PreVoteRound>,
    catchup_wait: u32,
    /// The peer this replica last asked for chosen values (a catch-up or
    /// snapshot request). Catch-up responses and snapshot chunks are taken
    /// only from it: anything else is unsolicited and ignored.
    asked: Option<ReplicaId>,
    snap_recv: Option<SnapshotRecv>,
    /// As a follower: the highest read round heard from the leader of this
    /// ballot, echoed in every Accepted to it.
    read_round_heard: (Ballot, u64),
    out: Ready,
    stats: Stats,
}

impl Paxos {
    /// A replica starting from `durable` (empty on first boot). It starts as a
    /// follower with a random election timeout.
    pub fn new(cfg: Config, durable: Durable, rng: &mut Rng) -> Paxos {
        let (start, snapshot) = match durable.snapshot {
            Some((i, d)) => (i, Some((i, d))),
            None => (0, None),
        };
        let mut log = Log::new(start);
        // Accepts beyond the horizon are refused, so an entry far above the
        // snapshot can only have been written before that rule (a forged
        // Accept); holding it would allocate the log up to it.
        let far = start.saturating_add(cfg.slot_horizon.saturating_mul(4));
        for (slot, (ballot, batch)) in durable.entries {
            if slot >= far {
                ::log::error!(
                    "r{} ignores a recovered entry at slot {slot}, far above its snapshot at {start}",
                    cfg.id
                );
                continue;
            }
            if slot >= start {
                log.set(slot, Entry { ballot, batch });
            }
        }
        if !valid_ballot(durable.promised) {
            ::log::error!(
                "r{} recovered a promise of an invalid ballot {:?}: it will never lead",
                cfg.id,
                durable.promised
            );
        }
        let mut p = Paxos {
            promised: durable.promised,
            seen: durable.promised,
            log,
            snapshot: snapshot.clone(),
            chosen_upto: start,
            applied_upto: start,
            commit_hint: start,
            role: Role::Follower,
            leader_hint: None,
            election_elapsed: 0,
            election_timeout: 0,
            heard_leader: u32::MAX,
            heard_candidate: u32::MAX,
            prevote: None,
            catchup_wait: 0,
            asked: None,
            snap_recv: None,
            read_round_heard: (Ballot::ZERO, 0),
            out: Ready::default(),
            stats: Stats::default(),
            cfg,
        };
        // The state machine starts from the snapshot; chosen entries recorded
        // after it (learned by catch-up) are applied again on top.
        p.out.gated.snapshot = snapshot;
        p.advance_chosen_marked();
        p.reset_election_timer(rng);
        if p.cfg.replicas == 1 {
            p.start_election(rng);
        }
        p
    }

    pub fn id(&self) -> ReplicaId {
        self.cfg.id
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }
    /// Who this replica believes leads (itself included).
    pub fn leader_hint(&self) -> Option<ReplicaId> {
        if self.is_leader() {
            Some(self.cfg.id)
        } else {
            self.leader_hint
        }
    }
    pub fn promised(&self) -> Ballot {
        self.promised
    }
    pub fn chosen_upto(&self) -> Slot {
        self.chosen_upto
    }
    pub fn applied_upto(&self) -> Slot {
        self.applied_upto
    }
    pub fn log(&self) -> &Log {
        &self.log
    }
    /// The peer whose catch-up answers and snapshot chunks this replica
    /// takes now (the one it last asked), if any.
    pub fn catchup_peer(&self) -> Option<ReplicaId> {
        self.asked
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    /// Commands queued at the leader, waiting for a slot.
    pub fn pending_len(&self) -> usize {
        match &self.role {
            Role::Leader(l) => l.pending.len(),
            _ => 0,
        }
    }

    /// Queue a command for the next batch. Only the leader accepts.
    pub fn propose(&mut self, cmd: Bytes) -> Result<(), ProposeError> {
        let hint = self.leader_hint;
        match &mut self.role {
            Role::Leader(l) => {
                if l.pending_bytes + cmd.len() > self.cfg.pending_bytes_max {
                    return Err(ProposeError::Busy);
                }
                l.pending_bytes += cmd.len();
                l.pending.push(cmd);
                Ok(())
            }
            _ => Err(ProposeError::NotLeader(hint)),
        }
    }

    /// Register a linearizable read (read-index). Only the leader serves
    /// reads; the reads registered in one loop turn share one leadership
    /// check, announced by the next [`Paxos::flush`].
    pub fn read_index(&mut self) -> Result<ReadTicket, ProposeError> {
        let hint = self.leader_hint;
        match &mut self.role {
            Role::Leader(l) => {
                l.read_wanted = true;
                Ok(ReadTicket {
                    ballot: l.ballot,
                    index: if self.cfg.bugs.read_index_skips_takeover {
                        self.chosen_upto
                    } else {
                        self.chosen_upto.max(l.takeover_slot)
                    },
                    round: l.read_round + 1,
                })
            }
            _ => Err(ProposeError::NotLeader(hint)),
        }
    }

    /// May the read of `t` be answered from a state machine that has applied
    /// every slot below [`Paxos::applied_upto`]?
    pub fn read_status(&self, t: &ReadTicket) -> ReadStatus {
        match &self.role {
            Role::Leader(l) if l.ballot == t.ballot => {
                if l.read_confirmed >= t.round && self.applied_upto >= t.index {
                    ReadStatus::Ready
                } else {
                    ReadStatus::Wait
                }
            }
            _ => ReadStatus::Lost,
        }
    }

    /// Close the current batch: pack pending commands into new slots while
    /// the window allows, and tell followers about a moved commit point.
    /// The driver calls this once per loop turn.
    pub fn flush(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        let mut fresh: Vec<Proposal> = Vec::new();
        while !l.pending.is_empty() && l.next_slot - self.chosen_upto < self.cfg.window_slots_max {
            let mut bytes = 0;
            let mut n = 0;
            for c in &l.pending {
                if n > 0
                    && (n >= self.cfg.batch_commands_max
                        || bytes + c.len() > self.cfg.batch_bytes_max)
                {
                    break;
                }
                bytes += c.len();
                n += 1;
            }
            let commands: Vec<Bytes> = l.pending.drain(..n).collect();
            l.pending_bytes -= bytes;
            let slot = l.next_slot;
            l.next_slot += 1;
            let batch = Batch { commands };
            self.stats.slots_proposed += 1;
            self.stats.commands_proposed += n as u64;
            accept_into(&mut self.log, &mut self.out, slot, ballot, batch.clone());
            l.inflight.push_back(InFlight {
                acks: 1 << self.cfg.id,
                age: 0,
            });
            fresh.push(Proposal { slot, batch });
        }
        // New slots carry the commit point; without them, a moved commit
        // point goes out on its own.
        let commit_moved = l.commit_sent < self.chosen_upto;
        l.commit_sent = self.chosen_upto;
        let read_wanted = std::mem::take(&mut l.read_wanted);
        if read_wanted {
            l.read_round += 1;
            l.read_acked[self.cfg.id as usize] = l.read_round;
        }
        if !fresh.is_empty() {
            for page in paginate(fresh, self.cfg.catchup_bytes_max) {
                self.send_accepts(ballot, page);
            }
        } else if commit_moved && !read_wanted {
            self.broadcast_commit(ballot, true);
        }
        if read_wanted {
            // The heartbeat carries the commit point too.
            self.broadcast_commit(ballot, false);
            self.advance_read_confirmed();
        }
        self.advance_leader_commit();
    }

    /// Hand the driver everything produced since the last call.
    pub fn ready(&mut self) -> Ready {
        // Chosen entries not yet handed out.
        while self.applied_upto < self.chosen_upto {
            let slot = self.applied_upto;
            let entry = self
                .log
                .get(slot)
                .expect("chosen slot missing from the log: learner invariant broken");
            self.out.gated.committed.push((slot, entry.batch.clone()));
            self.applied_upto += 1;
        }
        std::mem::take(&mut self.out)
    }

    /// The state machine's state as of `index` (every slot below it
    /// applied), `data`, is durable now: make it the snapshot served to
    /// laggards and free the log below it.
    ///
    /// The caller has written and synced `data` itself, off its event loop
    /// (so this pushes no [`Record::Snapshot`]), and calls this only once
    /// it is durable: until then the log (in memory and on disk) keeps
    /// every entry above the previous snapshot, so a crash at any point
    /// finds the old snapshot and the whole log above it. A snapshot at or
    /// below the current one (one received from a peer overtook it while
    /// it was being written) changes nothing.
    ///
    /// Returns the log entries it compacted away, for the caller to drop
    /// (the runtime does it off its event loop).
    pub fn compact(&mut self, index: Slot, data: Bytes) -> Vec<Option<Entry>> {
        assert!(
            index <= self.applied_upto,
            "snapshot at {index} beyond applied {}",
            self.applied_upto
        );
        if self.snapshot.as_ref().is_some_and(|(i, _)| *i >= index) || index <= self.log.start() {
            return Vec::new();
        }
        self.snapshot = Some((index, data));
        self.log.compact(index)
    }

    /// One unit of time passed.
    pub fn tick(&mut self, rng: &mut Rng) {
        if let Some(r) = &mut self.snap_recv {
            r.wait += 1;
            if r.wait >= self.cfg.retransmit_ticks * 2 {
                // The sender went quiet: ask again from where we are.
                r.wait = 0;
                let (index, offset) = (r.index, r.buf.len() as u64);
                if let Some(to) = self.catchup_target() {
                    self.asked = Some(to);
                    self.send(
                        to,
                        PaxosMsg::SnapshotRequest(SnapshotRequest {
                            from: self.cfg.id,
                            index,
                            offset,
                        }),
                    );
                }
            }
        }
        match &mut self.role {
            Role::Leader(l) => {
                l.heartbeat_elapsed += 1;
                for s in l.silent_ticks.iter_mut() {
                    *s = s.saturating_add(1);
                }
                // Check quorum: a leader cut off from a majority steps down so
                // clients stop waiting on it.
                let heard = l
                    .silent_ticks
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| *i as u32 != self.cfg.id && **s < self.cfg.election_ticks_max)
                    .count() as u32;
                if heard + 1 < self.cfg.quorum() {
                    ::log::debug!("r{} leader {:?} lost quorum", self.cfg.id, l.ballot);
                    self.become_follower(None, rng);
                    return;
                }
                if l.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
                    l.heartbeat_elapsed = 0;
                    let b = l.ballot;
                    self.broadcast_commit(b, false);
                }
                self.retransmit_accepts();
            }
            Role::Candidate(c) => {
                // Pages of Promises not yet answered: ask again.
                c.page_wait += 1;
                if !c.pages.is_empty() && c.page_wait >= self.cfg.retransmit_ticks {
                    c.page_wait = 0;
                    let ballot = c.ballot;
                    let asks: Vec<(ReplicaId, Slot)> =
                        c.pages.iter().map(|(r, s)| (*r, *s)).collect();
                    for (to, from_slot) in asks {
                        self.send(
                            to,
                            PaxosMsg::Prepare(Prepare {
                                from: self.cfg.id,
                                ballot,
                                from_slot,
                            }),
                        );
                    }
                }
                let Role::Candidate(c) = &mut self.role else {
                    unreachable!()
                };
                // Waiting for a catch-up that lets us lead: nudge it.
                c.catchup_wait += 1;
                if c.promised_by.count_ones() >= self.cfg.quorum()
                    && c.catchup_wait >= self.cfg.retransmit_ticks
                {
                    c.catchup_wait = 0;
                    let to = c.best_chosen.1;
                    self.request_catchup(to);
                }
                self.election_elapsed += 1;
                if self.election_elapsed >= self.election_timeout {
                    self.campaign(rng);
                }
            }
            Role::Follower => {
                self.heard_leader = self.heard_leader.saturating_add(1);
                self.heard_candidate = self.heard_candidate.saturating_add(1);
                self.election_elapsed += 1;
                if self.election_elapsed >= self.election_timeout {
                    self.campaign(rng);
                    return;
                }
                if self.chosen_upto < self.commit_hint {
                    self.catchup_wait += 1;
                    if self.catchup_wait >= self.cfg.retransmit_ticks {
                        self.catchup_wait = 0;
                        if let Some(to) = self.catchup_target() {
                            self.request_catchup(to);
                        }
                    }
                }
            }
        }
    }

    /// Handle one message from a peer of this group. A snapshot received
    /// from a peer is installed unchecked; [`Paxos::step_checked`] lets the
    /// layer above refuse one that does not restore.
    pub fn step(&mut self, msg: PaxosMsg, rng: &mut Rng) {
        self.step_checked(msg, rng, &mut |_| Ok(()));
    }

    /// [`Paxos::step`], with `check` deciding whether a snapshot received
    /// whole from a peer may be installed (it decodes the bytes into a
    /// scratch state machine). A refused snapshot is dropped, logged, and
    /// never persisted.
    pub fn step_checked(
        &mut self,
        msg: PaxosMsg,
        rng: &mut Rng,
        check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) {
        let from = msg.from();
        if from >= self.cfg.replicas || from == self.cfg.id {
            ::log::warn!(
                "r{} dropped message from unknown replica {from}",
                self.cfg.id
            );
            return;
        }
        if let Err(why) = self.validate(&msg) {
            ::log::warn!(
                "r{} refused a {} from r{from}: {why}",
                self.cfg.id,
                msg_name(&msg)
            );
            return;
        }
        match msg {
            PaxosMsg::Prepare(m) => self.on_prepare(m, rng),
            PaxosMsg::Promise(m) => self.on_promise(m, rng),
            PaxosMsg::Accept(m) => self.on_accept(m, rng),
            PaxosMsg::Accepted(m) => self.on_accepted(m),
            PaxosMsg::Reject(m) => self.on_reject(m, rng),
            PaxosMsg::Commit(m) => self.on_commit(m.from, m.ballot, m.chosen_upto, 0, rng),
            PaxosMsg::Heartbeat(m) => {
                self.on_commit(m.from, m.ballot, m.chosen_upto, m.read_round, rng)
            }
            PaxosMsg::CatchupRequest(m) => self.on_catchup_request(m),
            PaxosMsg::CatchupResponse(m) => self.on_catchup_response(m, rng),
            PaxosMsg::SnapshotRequest(m) => self.send_snapshot_chunk(m.from, m.index, m.offset),
            PaxosMsg::SnapshotChunk(m) => self.on_snapshot_chunk(m, rng, check),
            PaxosMsg::PreVote(m) => self.on_pre_vote(m),
            PaxosMsg::PreVoteReply(m) => self.on_pre_vote_reply(m, rng),
        }
        self.check_invariants();
    }

    /// The rules every message must pass before it touches any state
    /// (ARCHITECTURE.md, "Validating peer input"): ballots below
    /// [`ROUND_LIMIT`] (a `Promise` entry may also carry [`Ballot::CHOSEN`]),
    /// a proposer's ballot is its own, slots below [`SLOT_LIMIT`], and a
    /// Promise's entries within `slot_horizon` of its sender's commit point.
    fn validate(&self, msg: &PaxosMsg) -> Result<(), &'static str> {
        let slot_ok = |s: Slot| s < SLOT_LIMIT;
        let slot = |s: Slot| {
            if slot_ok(s) {
                Ok(())
            } else {
                Err("slot out of range")
            }
        };
        let own_ballot = |b: Ballot, from: ReplicaId| {
            if !valid_ballot(b) {
                Err("ballot round out of range")
            } else if b.node != from {
                Err("ballot of another proposer")
            } else {
                Ok(())
            }
        };
        match msg {
            PaxosMsg::Prepare(m) => {
                own_ballot(m.ballot, m.from)?;
                slot(m.from_slot)?;
            }
            PaxosMsg::Promise(m) => {
                if !valid_ballot(m.ballot) {
                    return Err("ballot round out of range");
                }
                if !slot_ok(m.chosen_upto) || !slot_ok(m.log_start) {
                    return Err("slot out of range");
                }
                // An acceptor restarted from a snapshot reports the log it
                // held above it (up to a snapshot interval) plus what it
                // accepted ahead (up to a horizon): allow four horizons,
                // as recovery does.
                let horizon = m
                    .chosen_upto
                    .saturating_add(self.cfg.slot_horizon.saturating_mul(4));
                for e in &m.entries {
                    if !valid_ballot(e.ballot) && e.ballot != Ballot::CHOSEN {
                        return Err("entry ballot out of range");
                    }
                    if e.slot >= horizon {
                        return Err("entry slot beyond the horizon");
                    }
                }
            }
            PaxosMsg::Accept(m) => {
                own_ballot(m.ballot, m.from)?;
                if !slot_ok(m.chosen_upto) || m.entries.iter().any(|p| !slot_ok(p.slot)) {
                    return Err("slot out of range");
                }
            }
            PaxosMsg::Accepted(m) => {
                if !valid_ballot(m.ballot) {
                    return Err("ballot round out of range");
                }
            }
            PaxosMsg::Reject(m) => {
                if !valid_ballot(m.promised) {
                    return Err("ballot round out of range");
                }
            }
            PaxosMsg::Commit(Commit {
                from,
                ballot,
                chosen_upto,
            })
            | PaxosMsg::Heartbeat(Heartbeat {
                from,
                ballot,
                chosen_upto,
                ..
            }) => {
                own_ballot(*ballot, *from)?;
                slot(*chosen_upto)?;
            }
            PaxosMsg::CatchupRequest(m) => {
                slot(m.from_slot)?;
            }
            PaxosMsg::CatchupResponse(m) => {
                slot(m.chosen_upto)?;
            }
            PaxosMsg::SnapshotRequest(m) => {
                slot(m.index)?;
            }
            PaxosMsg::SnapshotChunk(m) => {
                slot(m.index)?;
            }
            PaxosMsg::PreVote(m) => {
                own_ballot(m.ballot, m.from)?;
                slot(m.chosen_upto)?;
            }
            PaxosMsg::PreVoteReply(m) => {
                if !valid_ballot(m.ballot) || !valid_ballot(m.promised) {
                    return Err("ballot round out of range");
                }
            }
        }
        Ok(())
    }

    // ----- acceptor -------------------------------------------------------

    fn on_prepare(&mut self, m: Prepare, rng: &mut Rng) {
        self.seen = self.seen.max(m.ballot);
        if m.ballot < self.promised {
            self.reject(m.from);
            return;
        }
        if m.ballot > self.promised && self.leader_recent(Some(m.from)) {
            // Leader stickiness (check-quorum's other half): while the
            // leader we follow is alive, a higher ballot from someone else
            // comes from a replica that did not see it (an isolated one
            // rejoining, or one that skipped pre-vote). Not promising it
            // keeps that leader; a leader that really lost its quorum steps
            // down by itself, and then nobody hears it and this lapses.
            ::log::debug!(
                "r{} ignores a Prepare {:?} from r{}: its leader is alive",
                self.cfg.id,
                m.ballot,
                m.from
            );
            return;
        }
        if m.ballot > self.promised {
            self.promise(m.ballot);
            if !matches!(self.role, Role::Follower) {
                self.become_follower(None, rng);
            }
            // Give the candidate time to finish before we compete.
            self.reset_election_timer(rng);
        } else if m.from == m.ballot.node && matches!(self.role, Role::Follower) {
            // The candidate we promised asks for the next page of a long
            // log: it is making progress, so neither compete with it nor
            // help a rival do so (see `leader_recent`) until it goes quiet.
            self.election_elapsed = 0;
            self.heard_candidate = 0;
        }
        // Paged by bytes: a restarted acceptor may hold thousands of
        // accepted slots above its commit point.
        let from_slot = m.from_slot.max(self.chosen_upto);
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for (slot, e) in self.log.iter_from(from_slot) {
            let n = entry_bytes(&e.batch);
            if !entries.is_empty() && bytes + n > self.cfg.catchup_bytes_max {
                more = true;
                ::log::debug!(
                    "r{} pages its Promise to r{} at slot {slot}",
                    self.cfg.id,
                    m.from
                );
                break;
            }
            bytes += n;
            entries.push(LogEntry {
                slot,
                ballot: e.ballot,
                batch: e.batch.clone(),
            });
        }
        self.send(
            m.from,
            PaxosMsg::Promise(Promise {
                from: self.cfg.id,
                ballot: m.ballot,
                log_start: self.log.start(),
                chosen_upto: self.chosen_upto,
                entries,
                more,
            }),
        );
    }

    fn on_accept(&mut self, m: Accept, rng: &mut Rng) {
        self.seen = self.seen.max(m.ballot);
        if m.ballot < self.promised && !self.cfg.bugs.accept_ignores_promise {
            self.reject(m.from);
            return;
        }
        self.follow(m.from, m.ballot, rng);
        let mut slots = Vec::with_capacity(m.entries.len());
        let horizon = self.chosen_upto.saturating_add(self.cfg.slot_horizon);
        for p in m.entries {
            if p.slot >= horizon {
                // Too far ahead to hold (each slot up to it would be
                // allocated): not acknowledged; the leader resends it once
                // catch-up brings this replica closer.
                ::log::debug!(
                    "r{} skips an Accept for slot {} beyond its horizon {horizon}",
                    self.cfg.id,
                    p.slot
                );
                continue;
            }
            // Held already in this ballot (a retransmission or a network
            // duplicate): a leader proposes one value per slot per ballot,
            // and the record was handed to storage when the entry was first
            // accepted, so it is durable (neither driver takes an event
            // while a sync is in flight) or in this round's records (then
            // this ack is released by the same sync). Writing it again only
            // costs a sync per resend; with slow disks that made acks late,
            // late acks made the leader resend more, each resend queued one
            // more sync, and a group stopped (simulator seed 6000016).
            let held = self.log.get(p.slot).is_some_and(|e| e.ballot == m.ballot);
            if p.slot >= self.chosen_upto && !held {
                accept_into(&mut self.log, &mut self.out, p.slot, m.ballot, p.batch);
            }
            // Below chosen_upto we hold the chosen value already; acking is
            // still truthful (a proposal at ballot >= the chosen one carries
            // the chosen value) and keeps the leader's slot from stalling.
            slots.push(p.slot);
        }
        self.learn(m.from, m.ballot, m.chosen_upto);
        self.send_accepted(m.from, m.ballot, slots);
        if self.cfg.bugs.accepted_before_sync {
            if let Some((to, msg)) = self.out.gated.messages.pop() {
                self.out.before_sync.push((to, msg));
            }
        }
    }

    fn on_commit(
        &mut self,
        from: ReplicaId,
        ballot: Ballot,
        chosen_upto: Slot,
        read_round: u64,
        rng: &mut Rng,
    ) {
        self.seen = self.seen.max(ballot);
        if ballot < self.promised {
            self.reject(from);
            return;
        }
        self.follow(from, ballot, rng);
        self.learn(from, ballot, chosen_upto);
        if self.read_round_heard.0 != ballot {
            self.read_round_heard = (ballot, 0);
        }
        self.read_round_heard.1 = self.read_round_heard.1.max(read_round);
        self.send_accepted(from, ballot, Vec::new());
    }

    /// Acknowledge `ballot`'s leader (an empty `slots` acknowledges a
    /// heartbeat). Sent only while `ballot` is our promise, so the read
    /// round it echoes confirms that leader to the read-index protocol.
    fn send_accepted(&mut self, to: ReplicaId, ballot: Ballot, slots: Vec<Slot>) {
        let read_round = if self.read_round_heard.0 == ballot {
            self.read_round_heard.1
        } else {
            0
        };
        self.send(
            to,
            PaxosMsg::Accepted(Accepted {
                from: self.cfg.id,
                ballot,
                chosen_upto: self.chosen_upto,
                read_round,
                slots,
            }),
        );
    }

    /// A message from the leader of `ballot >= promised`: follow it.
    fn follow(&mut self, leader: ReplicaId, ballot: Ballot, rng: &mut Rng) {
        if ballot > self.promised {
            self.promise(ballot);
        }
        if !matches!(self.role, Role::Follower) {
            self.become_follower(Some(leader), rng);
        }
        self.leader_hint = Some(leader);
        self.election_elapsed = 0;
        self.heard_leader = 0;
        self.prevote = None;
    }

    /// Has a live leader other than `except` been heard within the minimum
    /// election timeout (or is this replica that leader)? Never with the
    /// `disruptive_rejoin` bug, which restores the old eager behaviour.
    fn leader_recent(&self, except: Option<ReplicaId>) -> bool {
        if self.cfg.bugs.disruptive_rejoin {
            return false;
        }
        match self.role {
            // A leader that lost its quorum steps down in `tick`.
            Role::Leader(_) => true,
            // A candidate still pulling Promise pages (each page resets its
            // timer) is about to lead: a rival would only cut it off.
            Role::Candidate(_) => self.election_elapsed < self.cfg.election_ticks_min,
            Role::Follower => {
                (self.leader_hint.is_some()
                    && self.leader_hint != except
                    && self.heard_leader < self.cfg.election_ticks_min)
                    || (Some(self.promised.node) != except
                        && self.heard_candidate < self.cfg.election_ticks_min)
            }
        }
    }

    // ----- pre-vote -------------------------------------------------------

    /// The election timer ran out: ask a quorum whether it would promise
    /// before raising any ballot (pre-vote), or prepare at once with the
    /// `disruptive_rejoin` bug or alone in the group.
    fn campaign(&mut self, rng: &mut Rng) {
        if self.cfg.bugs.disruptive_rejoin || self.cfg.quorum() == 1 {
            self.start_election(rng);
            return;
        }
        let round = self.promised.round.max(self.seen.round).saturating_add(1);
        if round >= ROUND_LIMIT {
            ::log::error!(
                "r{} cannot start an election above its promise {:?}",
                self.cfg.id,
                self.promised
            );
            self.reset_election_timer(rng);
            return;
        }
        if !matches!(self.role, Role::Follower) {
            // A candidacy that timed out asks again, like any follower.
            self.role = Role::Follower;
        }
        self.leader_hint = None;
        let ballot = Ballot::new(round, self.cfg.id);
        ::log::debug!("r{} asks a pre-vote for {:?}", self.cfg.id, ballot);
        self.stats.prevotes_started += 1;
        self.prevote = Some(PreVoteRound {
            ballot,
            granted: 1 << self.cfg.id,
        });
        self.reset_election_timer(rng);
        for peer in 0..self.cfg.replicas {
            if peer != self.cfg.id {
                self.send(
                    peer,
                    PaxosMsg::PreVote(PreVote {
                        from: self.cfg.id,
                        ballot,
                        chosen_upto: self.chosen_upto,
                    }),
                );
            }
        }
    }

    /// Would we promise `m.ballot` now? Changes nothing but the answer.
    fn on_pre_vote(&mut self, m: PreVote) {
        let granted = !self.leader_recent(None)
            && m.chosen_upto >= self.chosen_upto
            && m.ballot > self.promised;
        ::log::debug!(
            "r{} {} r{}'s pre-vote for {:?}",
            self.cfg.id,
            if granted { "grants" } else { "refuses" },
            m.from,
            m.ballot
        );
        let promised = self.promised;
        self.send(
            m.from,
            PaxosMsg::PreVoteReply(PreVoteReply {
                from: self.cfg.id,
                ballot: m.ballot,
                granted,
                promised,
            }),
        );
    }

    fn on_pre_vote_reply(&mut self, m: PreVoteReply, rng: &mut Rng) {
        // A refusal for a low ballot: the next try goes above it.
        self.seen = self.seen.max(m.promised);
        let Some(pv) = &mut self.prevote else {
            return;
        };
        if m.ballot != pv.ballot || !m.granted || !matches!(self.role, Role::Follower) {
            return;
        }
        pv.granted |= 1 << m.from;
        if pv.granted.count_ones() >= self.cfg.quorum() {
            self.start_election(rng);
        }
    }

    fn promise(&mut self, ballot: Ballot) {
        assert!(ballot > self.promised);
        self.promised = ballot;
        self.out.records.push(Record::Promised(ballot));
    }

    // ----- learner --------------------------------------------------------

    /// The leader of `ballot` says every slot below `leader_chosen` is chosen.
    fn learn(&mut self, leader: ReplicaId, ballot: Ballot, leader_chosen: Slot) {
        self.commit_hint = self.commit_hint.max(leader_chosen);
        while self.chosen_upto < leader_chosen {
            match self.log.get(self.chosen_upto) {
                Some(e) if e.ballot == ballot || e.ballot == Ballot::CHOSEN => {
                    self.chosen_upto += 1
                }
                None if self.cfg.bugs.apply_past_hole => {
                    // Planted bug: fill the hole with a no-op and move on.
                    let slot = self.chosen_upto;
                    self.log.set(
                        slot,
                        Entry {
                            ballot: Ballot::CHOSEN,
                            batch: Batch::noop(),
                        },
                    );
                    self.chosen_upto += 1;
                }
                Some(_) if self.cfg.bugs.apply_past_hole => self.chosen_upto += 1,
                _ => break,
            }
        }
        if self.chosen_upto < self.commit_hint && self.catchup_wait == 0 {
            // First sign of lag: ask now; tick() repeats it while it lasts.
            self.catchup_wait = 1;
            self.request_catchup(leader);
        } else if self.chosen_upto >= self.commit_hint {
            self.catchup_wait = 0;
        }
    }

    /// After recovery or a snapshot: move over entries already known chosen.
    fn advance_chosen_marked(&mut self) {
        while let Some(e) = self.log.get(self.chosen_upto) {
            if e.ballot != Ballot::CHOSEN {
                break;
            }
            self.chosen_upto += 1;
        }
        self.commit_hint = self.commit_hint.max(self.chosen_upto);
    }

    fn catchup_target(&self) -> Option<ReplicaId> {
        self.leader_hint.filter(|l| *l != self.cfg.id)
    }

    fn request_catchup(&mut self, to: ReplicaId) {
        if to == self.cfg.id {
            return;
        }
        self.asked = Some(to);
        self.send(
            to,
            PaxosMsg::CatchupRequest(CatchupRequest {
                from: self.cfg.id,
                from_slot: self.chosen_upto,
            }),
        );
    }

    fn on_catchup_request(&mut self, m: CatchupRequest) {
        if m.from_slot < self.log.start() {
            if let Some((index, _)) = &self.snapshot {
                let index = *index;
                self.send_snapshot_chunk(m.from, index, 0);
            }
            return;
        }
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut slot = m.from_slot;
        while slot < self.chosen_upto && (entries.len() as u64) < self.cfg.catchup_slots_max {
            let e = self
                .log
                .get(slot)
                .expect("chosen slot missing from the log");
            let n = entry_bytes(&e.batch);
            if !entries.is_empty() && bytes + n > self.cfg.catchup_bytes_max {
                break;
            }
            bytes += n;
            entries.push(Proposal {
                slot,
                batch: e.batch.clone(),
            });
            slot += 1;
        }
        self.send(
            m.from,
            PaxosMsg::CatchupResponse(CatchupResponse {
                from: self.cfg.id,
                chosen_upto: self.chosen_upto,
                entries,
            }),
        );
    }

    fn on_catchup_response(&mut self, m: CatchupResponse, rng: &mut Rng) {
        if self.is_leader() {
            // A leader knows everything a quorum promised it; a late answer
            // to its candidacy's request would only shift its window.
            return;
        }
        if self.asked != Some(m.from) {
            // Not an answer to our own request: a value nobody vouched for
            // must never be marked chosen.
            ::log::debug!(
                "r{} ignored an unsolicited catch-up response from r{}",
                self.cfg.id,
                m.from
            );
            return;
        }
        let before = self.chosen_upto;
        for p in m.entries {
            if p.slot != self.chosen_upto || p.slot >= m.chosen_upto {
                // Only the contiguous run we asked for, and only slots its
                // sender says are chosen.
                continue;
            }
            accept_into(
                &mut self.log,
                &mut self.out,
                p.slot,
                Ballot::CHOSEN,
                p.batch,
            );
            self.chosen_upto += 1;
        }
        self.commit_hint = self.commit_hint.max(m.chosen_upto);
        if self.chosen_upto > before {
            self.catchup_wait = 0;
            if self.chosen_upto < self.commit_hint {
                // More to fetch: keep pulling while the sender has it.
                self.request_catchup(m.from);
            }
        }
        self.after_learning(rng);
    }

    fn send_snapshot_chunk(&mut self, to: ReplicaId, index: Slot, offset: u64) {
        let Some((snap_index, data)) = &self.snapshot else {
            return;
        };
        // A request for an older snapshot restarts the transfer of ours.
        let offset = if *snap_index == index { offset } else { 0 };
        let total = data.len() as u64;
        if offset > total {
            return;
        }
        let end = (offset + self.cfg.snapshot_chunk_bytes as u64).min(total);
        let chunk = data.slice(offset as usize..end as usize);
        let index = *snap_index;
        self.send(
            to,
            PaxosMsg::SnapshotChunk(SnapshotChunk {
                from: self.cfg.id,
                index,
                total_len: total,
                offset,
                data: chunk,
            }),
        );
    }

    fn on_snapshot_chunk(
        &mut self,
        m: SnapshotChunk,
        rng: &mut Rng,
        check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) {
        if m.index <= self.chosen_upto || self.is_leader() {
            return; // we already have everything it covers
        }
        if self.asked != Some(m.from) {
            ::log::debug!(
                "r{} ignored an unsolicited snapshot chunk from r{}",
                self.cfg.id,
                m.from
            );
            return;
        }
        if m.total_len > self.cfg.snapshot_bytes_max {
            ::log::warn!(
                "r{} refused a {}-byte snapshot (max {})",
                self.cfg.id,
                m.total_len,
                self.cfg.snapshot_bytes_max
            );
            return;
        }
        let restart = match &self.snap_recv {
            Some(r) => r.index != m.index || r.total != m.total_len,
            None => true,
        };
        if restart {
            if m.offset != 0 {
                // A piece of a transfer we are not in. Answering it would let
                // duplicated chunks multiply requests without end; a lagging
                // replica's catch-up timer asks again from the start.
                return;
            }
            self.snap_recv = Some(SnapshotRecv {
                index: m.index,
                total: m.total_len,
                // Grown as chunks arrive: a declared length is only a claim.
                buf: BytesMut::with_capacity(
                    m.total_len.min(self.cfg.snapshot_chunk_bytes as u64 * 2) as usize,
                ),
                wait: 0,
            });
        }
        let r = self.snap_recv.as_mut().expect("set above");
        if m.offset != r.buf.len() as u64 || r.buf.len() as u64 + m.data.len() as u64 > r.total {
            // Out of order or duplicate: ignore it. Only an in-order chunk
            // asks for the next one, so a duplicated chunk cannot double the
            // requests (and chunks) in flight; a stalled transfer is asked
            // again by `tick`.
            return;
        }
        r.buf.extend_from_slice(&m.data);
        r.wait = 0;
        if (r.buf.len() as u64) < r.total {
            let (index, offset) = (r.index, r.buf.len() as u64);
            self.send(
                m.from,
                PaxosMsg::SnapshotRequest(SnapshotRequest {
                    from: self.cfg.id,
                    index,
                    offset,
                }),
            );
            return;
        }
        let r = self.snap_recv.take().expect("present");
        let data = r.buf.freeze();
        if let Err(e) = check(&data) {
            // Never persisted: a bad snapshot on disk would fail every
            // restart. Catch-up asks again (from the leader) later.
            ::log::warn!(
                "r{} refused a snapshot at slot {} from r{}: {e}",
                self.cfg.id,
                r.index,
                m.from
            );
            return;
        }
        self.install_snapshot(r.index, data);
        self.request_catchup(m.from);
        self.after_learning(rng);
    }

    fn install_snapshot(&mut self, index: Slot, data: Bytes) {
        assert!(index > self.chosen_upto);
        ::log::debug!("r{} installs snapshot at {index}", self.cfg.id);
        self.out.records.push(Record::Snapshot {
            index,
            data: data.clone(),
        });
        self.log.compact(index);
        self.snapshot = Some((index, data.clone()));
        self.chosen_upto = index;
        self.applied_upto = index;
        self.commit_hint = self.commit_hint.max(index);
        // Batches queued for apply below the snapshot are covered by it.
        self.out.gated.committed.clear();
        self.out.gated.snapshot = Some((index, data));
        self.stats.snapshots_installed += 1;
        self.advance_chosen_marked();
    }

    /// Our commit point moved by catch-up: a waiting candidate may now lead.
    fn after_learning(&mut self, rng: &mut Rng) {
        if matches!(self.role, Role::Candidate(_)) {
            self.try_lead(rng);
        }
    }

    // ----- candidate ------------------------------------------------------

    fn start_election(&mut self, rng: &mut Rng) {
        let round = self.promised.round.max(self.seen.round).saturating_add(1);
        if round >= ROUND_LIMIT {
            // Only a promise recovered from before ballots were checked can
            // be this high: no valid ballot is above it, so never lead.
            ::log::error!(
                "r{} cannot start an election above its promise {:?}",
                self.cfg.id,
                self.promised
            );
            self.reset_election_timer(rng);
            return;
        }
        let ballot = Ballot::new(round, self.cfg.id);
        self.prevote = None;
        ::log::debug!("r{} starts election {:?}", self.cfg.id, ballot);
        self.stats.elections_started += 1;
        self.promise(ballot);
        self.seen = ballot;
        self.leader_hint = None;
        let mut reported = std::collections::BTreeMap::new();
        for (slot, e) in self.log.iter_from(self.chosen_upto) {
            reported.insert(slot, (e.ballot, e.batch.clone()));
        }
        self.role = Role::Candidate(Candidate {
            ballot,
            promised_by: 1 << self.cfg.id,
            reported,
            best_chosen: (self.chosen_upto, self.cfg.id),
            catchup_wait: 0,
            pages: std::collections::BTreeMap::new(),
            page_wait: 0,
        });
        self.reset_election_timer(rng);
        for peer in 0..self.cfg.replicas {
            if peer != self.cfg.id {
                self.send(
                    peer,
                    PaxosMsg::Prepare(Prepare {
                        from: self.cfg.id,
                        ballot,
                        from_slot: self.chosen_upto,
                    }),
                );
            }
        }
        self.try_lead(rng);
    }

    fn on_promise(&mut self, m: Promise, rng: &mut Rng) {
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if m.ballot != c.ballot {
            return;
        }
        // A page: ask for the rest before counting this promise (the
        // candidate needs every entry a promiser accepted above from_slot).
        let next_page = match (m.more, m.entries.last()) {
            (true, Some(e)) => Some(e.slot + 1),
            (true, None) => return, // malformed: `more` with no entries
            (false, _) => None,
        };
        match next_page {
            None => {
                c.promised_by |= 1 << m.from;
                c.pages.remove(&m.from);
            }
            Some(from_slot) => {
                if c.promised_by & (1 << m.from) != 0
                    || c.pages.get(&m.from).is_some_and(|s| *s >= from_slot)
                {
                    // A duplicate or stale page: already asked past it.
                    return;
                }
                c.pages.insert(m.from, from_slot);
                c.page_wait = 0;
            }
        }
        for e in m.entries {
            match c.reported.get(&e.slot) {
                Some((b, _)) if *b >= e.ballot => {}
                _ => {
                    c.reported.insert(e.slot, (e.ballot, e.batch));
                }
            }
        }
        if m.chosen_upto > c.best_chosen.0 {
            c.best_chosen = (m.chosen_upto, m.from);
        }
        if let Some(from_slot) = next_page {
            let ballot = c.ballot;
            // Progress: a long log takes several pages, not a new election.
            self.election_elapsed = 0;
            self.send(
                m.from,
                PaxosMsg::Prepare(Prepare {
                    from: self.cfg.id,
                    ballot,
                    from_slot,
                }),
            );
            return;
        }
        self.try_lead(rng);
    }

    /// Become leader once a quorum promised and we know every slot that any
    /// promiser knows is chosen.
    fn try_lead(&mut self, _rng: &mut Rng) {
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if c.promised_by.count_ones() < self.cfg.quorum() {
            return;
        }
        if self.chosen_upto < c.best_chosen.0 {
            // Slots [chosen_upto, best) are chosen but we lack their values;
            // fetch them first (tick() retries).
            if c.catchup_wait == 0 {
                c.catchup_wait = 1;
                let to = c.best_chosen.1;
                self.request_catchup(to);
            }
            return;
        }
        let Role::Candidate(c) = std::mem::replace(&mut self.role, Role::Follower) else {
            unreachable!()
        };
        let ballot = c.ballot;
        let start = self.chosen_upto;
        let next_slot = c
            .reported
            .keys()
            .next_back()
            .map_or(start, |s| (s + 1).max(start));
        ::log::debug!(
            "r{} leads {:?}: re-proposing {start}..{next_slot}",
            self.cfg.id,
            ballot
        );
        let mut reproposed = Vec::new();
        let mut inflight = std::collections::VecDeque::new();
        let mut reported = c.reported;
        for slot in start..next_slot {
            let batch = match reported.remove(&slot) {
                Some((_, b)) => b,
                None => Batch::noop(),
            };
            accept_into(&mut self.log, &mut self.out, slot, ballot, batch.clone());
            inflight.push_back(InFlight {
                acks: 1 << self.cfg.id,
                age: 0,
            });
            reproposed.push(Proposal { slot, batch });
        }
        self.role = Role::Leader(Leader {
            ballot,
            next_slot,
            inflight,
            pending: Vec::new(),
            pending_bytes: 0,
            heartbeat_elapsed: 0,
            silent_ticks: vec![0; self.cfg.replicas as usize],
            commit_sent: start,
            takeover_slot: next_slot,
            read_round: 0,
            read_wanted: false,
            read_acked: vec![0; self.cfg.replicas as usize],
            read_confirmed: 0,
        });
        self.leader_hint = Some(self.cfg.id);
        // A leader never installs a snapshot (it knows all a quorum knows).
        self.snap_recv = None;
        // Re-proposals go out in bounded messages; always at least one
        // (possibly empty) Accept: it announces the new leader.
        for page in paginate(reproposed, self.cfg.catchup_bytes_max) {
            self.send_accepts(ballot, page);
        }
        self.advance_leader_commit();
    }

    // ----- leader ---------------------------------------------------------

    /// One Accept per peer; the last peer's takes `entries` itself, so a
    /// group of three clones the proposal list once, not twice.
    fn send_accepts(&mut self, ballot: Ballot, entries: Vec<Proposal>) {
        let peers: Vec<ReplicaId> = (0..self.cfg.replicas)
            .filter(|p| *p != self.cfg.id)
            .collect();
        let mut entries = Some(entries);
        for (i, peer) in peers.iter().enumerate() {
            let entries = if i + 1 == peers.len() {
                entries.take().unwrap_or_default()
            } else {
                entries.clone().unwrap_or_default()
            };
            self.send_early(
                *peer,
                PaxosMsg::Accept(Accept {
                    from: self.cfg.id,
                    ballot,
                    chosen_upto: self.chosen_upto,
                    entries,
                }),
            );
        }
    }

    fn on_accepted(&mut self, m: Accepted) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if m.ballot != l.ballot {
            return;
        }
        l.silent_ticks[m.from as usize] = 0;
        let base = self.chosen_upto;
        for slot in m.slots {
            if slot >= base && slot < l.next_slot {
                l.inflight[(slot - base) as usize].acks |= 1 << m.from;
            }
        }
        // A round we never announced cannot be confirmed (a confused or
        // hostile peer); clamp rather than trust it.
        let round = m.read_round.min(l.read_round);
        if round > l.read_acked[m.from as usize] {
            l.read_acked[m.from as usize] = round;
            self.advance_read_confirmed();
        }
        self.advance_leader_commit();
    }

    /// The highest read round a quorum (this leader included) has confirmed.
    fn advance_read_confirmed(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        // At most 64 replicas: sort a copy on the stack.
        let n = l.read_acked.len();
        let mut acked = [0u64; 64];
        acked[..n].copy_from_slice(&l.read_acked);
        acked[..n].sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = acked[self.cfg.quorum() as usize - 1];
        if confirmed > l.read_confirmed {
            l.read_confirmed = confirmed;
            self.out.wake();
        }
    }

    fn advance_leader_commit(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        while let Some(f) = l.inflight.front() {
            if f.acks.count_ones() < self.cfg.quorum() {
                break;
            }
            l.inflight.pop_front();
            self.chosen_upto += 1;
        }
        self.commit_hint = self.commit_hint.max(self.chosen_upto);
    }

    fn retransmit_accepts(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        let base = self.chosen_upto;
        let mut per_peer: Vec<Vec<Proposal>> = vec![Vec::new(); self.cfg.replicas as usize];
        for (i, f) in l.inflight.iter_mut().enumerate() {
            f.age += 1;
            if f.age < self.cfg.retransmit_ticks {
                continue;
            }
            f.age = 0;
            let slot = base + i as u64;
            let e = self.log.get(slot).expect("in-flight slot missing");
            for (peer, list) in per_peer.iter_mut().enumerate() {
                if f.acks & (1 << peer) == 0 {
                    list.push(Proposal {
                        slot,
                        batch: e.batch.clone(),
                    });
                }
            }
        }
        for (peer, entries) in per_peer.into_iter().enumerate() {
            if entries.is_empty() {
                continue;
            }
            for page in paginate(entries, self.cfg.catchup_bytes_max) {
                self.send_early(
                    peer as ReplicaId,
                    PaxosMsg::Accept(Accept {
                        from: self.cfg.id,
                        ballot,
                        chosen_upto: self.chosen_upto,
                        entries: page,
                    }),
                );
            }
        }
    }

    fn broadcast_commit(&mut self, ballot: Ballot, commit: bool) {
        for peer in 0..self.cfg.replicas {
            if peer == self.cfg.id {
                continue;
            }
            let msg = if commit {
                PaxosMsg::Commit(Commit {
                    from: self.cfg.id,
                    ballot,
                    chosen_upto: self.chosen_upto,
                })
            } else {
                let read_round = match &self.role {
                    Role::Leader(l) => l.read_round,
                    _ => 0,
                };
                PaxosMsg::Heartbeat(Heartbeat {
                    from: self.cfg.id,
                    ballot,
                    chosen_upto: self.chosen_upto,
                    read_round,
                })
            };
            self.send_early(peer, msg);
        }
    }

    fn on_reject(&mut self, m: Reject, rng: &mut Rng) {
        self.seen = self.seen.max(m.promised);
        let mine = match &self.role {
            Role::Leader(l) => l.ballot,
            Role::Candidate(c) => c.ballot,
            Role::Follower => return,
        };
        if m.promised > mine {
            self.become_follower(None, rng);
        }
    }

    // ----- common ---------------------------------------------------------

    fn become_follower(&mut self, leader: Option<ReplicaId>, rng: &mut Rng) {
        if self.is_leader() {
            ::log::debug!("r{} steps down", self.cfg.id);
        }
        self.role = Role::Follower;
        self.leader_hint = leader;
        self.prevote = None;
        self.reset_election_timer(rng);
    }

    fn reset_election_timer(&mut self, rng: &mut Rng) {
        self.election_elapsed = 0;
        self.election_timeout = rng.range(
            self.cfg.election_ticks_min as u64,
            self.cfg.election_ticks_max as u64,
        ) as u32;
    }

    /// Tell `to` we promised a higher ballot than the one it used.
    fn reject(&mut self, to: ReplicaId) {
        let promised = self.promised;
        self.send(
            to,
            PaxosMsg::Reject(Reject {
                from: self.cfg.id,
                promised,
            }),
        );
    }

    fn send(&mut self, to: ReplicaId, msg: PaxosMsg) {
        debug_assert_ne!(to, self.cfg.id);
        self.out.gated.messages.push((to, msg));
    }

    /// A leader's message that may leave before this round's records are
    /// durable (see [`Ready::before_sync`]).
    fn send_early(&mut self, to: ReplicaId, msg: PaxosMsg) {
        debug_assert_ne!(to, self.cfg.id);
        debug_assert!(matches!(
            msg,
            PaxosMsg::Accept(_) | PaxosMsg::Commit(_) | PaxosMsg::Heartbeat(_)
        ));
        self.out.before_sync.push((to, msg));
    }

    /// Cheap structural invariants, checked after every message.
    fn check_invariants(&self) {
        assert!(self.applied_upto <= self.chosen_upto);
        assert!(self.log.start() <= self.chosen_upto);
        assert!(
            self.seen >= self.promised,
            "a promise is always a ballot seen"
        );
        if let Role::Leader(l) = &self.role {
            assert_eq!(l.ballot, self.promised, "leader's ballot is its promise");
            assert_eq!(
                self.chosen_upto + l.inflight.len() as u64,
                l.next_slot,
                "in-flight window misaligned"
            );
        }
    }
}

fn msg_name(m: &PaxosMsg) -> &'static str {
    match m {
        PaxosMsg::Prepare(_) => "Prepare",
        PaxosMsg::Promise(_) => "Promise",
        PaxosMsg::Accept(_) => "Accept",
        PaxosMsg::Accepted(_) => "Accepted",
        PaxosMsg::Reject(_) => "Reject",
        PaxosMsg::Commit(_) => "Commit",
        PaxosMsg::Heartbeat(_) => "Heartbeat",
        PaxosMsg::CatchupRequest(_) => "CatchupRequest",
        PaxosMsg::CatchupResponse(_) => "CatchupResponse",
        PaxosMsg::SnapshotRequest(_) => "SnapshotRequest",
        PaxosMsg::SnapshotChunk(_) => "SnapshotChunk",
        PaxosMsg::PreVote(_) => "PreVote",
        PaxosMsg::PreVoteReply(_) => "PreVoteReply",
    }
}

#[cfg(test)]
mod tests;
