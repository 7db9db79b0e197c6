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
//!
//! Files split by role, each an `impl Paxos` block: this one holds the
//! types, [`Config`], the [`Paxos`] state, its public API (`propose`,
//! `flush`, `tick`, `step`, `ready`, reads, `compact`), message validation
//! and dispatch, the helpers every role shares, and the invariants;
//! `acceptor.rs`, `candidate.rs` (pre-vote and election), `learner.rs`
//! (catch-up and snapshots), `leader.rs` hold each role's handlers;
//! `ready.rs` the persist-before-send output types; `log.rs` the log.

mod acceptor;
mod candidate;
mod leader;
mod learner;
mod log;
mod members;
mod ready;

pub use log::{Entry, Log};
pub use members::{
    all_members, batch_members, command_members, majority, member_ids, members_command,
    snapshot_header, split_snapshot, wrap_snapshot, MembersError,
};
pub use ready::{Durable, Gated, Ready, Record, Synced};

use bytes::{Bytes, BytesMut};
use synod_wire::{
    Ballot, Batch, Commit, Heartbeat, PaxosMsg, Prepare, Proposal, Reject, ReplicaId, Slot,
    SnapshotRequest,
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
    /// A membership change of any size takes effect at once: the leader
    /// counts votes by the newest membership alone, a candidate asks only
    /// the membership at its commit point (no joint overlap, no re-check,
    /// no one-at-a-time rule), so an old and a new majority can decide
    /// apart.
    pub membership_switches_at_once: bool,
    /// A leader's read lease runs for `election_ticks_max` ticks' worth of
    /// `lease_us` beyond what the followers' leader stickiness guarantees
    /// (it trusts a lease the followers do not keep), so a leader cut off
    /// from its followers serves reads after a rival was elected.
    pub lease_outlives_guard: bool,
}

/// Tunables of one replica. Time is in ticks (the driver decides how long a tick is).
#[derive(Clone, Debug)]
pub struct Config {
    pub id: ReplicaId,
    /// The group's id space (replica ids are `0..replicas`). At most 64.
    pub replicas: u32,
    /// The membership before any membership entry (a bitmask of ids below
    /// `replicas`; every one of them by default). Membership entries in
    /// the log change it (`members.rs`).
    pub members: u64,
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
    /// Leader leases for reads, in the driver's clock units (see
    /// [`Paxos::set_clock`]); 0 turns them off. A leader serves a read at
    /// once while a quorum acknowledged one of its heartbeats less than
    /// this long ago (by its own clock, from when it was sent); the
    /// driver derives it with [`lease_for`] from how long a follower that
    /// acknowledged a heartbeat refuses any other candidate. Off, every
    /// read waits for a read-index round.
    pub lease_us: u64,
    pub bugs: PlantedBugs,
}

/// The worst relative rate difference between two replicas' clocks a
/// read lease tolerates, in percent. Monotonic clocks under NTP slew at
/// most 0.05%; 5% leaves room for a badly kept virtual machine's.
pub const LEASE_DRIFT_PERCENT: u64 = 5;

/// The read lease a leader may take, in clock units, when a tick is
/// `tick_us` of them and followers refuse rival candidates for
/// `election_ticks_min` ticks after they last heard their leader
/// ([`Paxos::leader_recent`]; on boot too): those ticks count from a
/// heartbeat's arrival, at least one of them may fire at once, and the
/// follower's clock may run up to [`LEASE_DRIFT_PERCENT`] faster than the
/// leader's, so the lease is `(min - 1)` ticks shrunk by that ratio.
pub fn lease_for(tick_us: u64, election_ticks_min: u32) -> u64 {
    let guard = tick_us.saturating_mul(u64::from(election_ticks_min.saturating_sub(1)));
    guard.saturating_mul(100 - LEASE_DRIFT_PERCENT) / (100 + LEASE_DRIFT_PERCENT)
}

impl Config {
    pub fn new(id: ReplicaId, replicas: u32) -> Config {
        assert!((1..=64).contains(&replicas), "group size {replicas}");
        assert!(id < replicas, "replica id {id} >= group size {replicas}");
        Config {
            id,
            replicas,
            members: all_members(replicas),
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
            lease_us: 0,
            bugs: PlantedBugs::default(),
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

/// Open read round `l.read_round + 1` (announced by the heartbeat about
/// to be sent), remembering when for the lease if leases are on.
fn open_read_round(l: &mut Leader, me: ReplicaId, now: u64, lease: bool) {
    l.read_round += 1;
    l.read_acked[me as usize] = l.read_round;
    if lease {
        if l.lease_rounds.len() >= LEASE_ROUNDS_MAX {
            l.lease_rounds.pop_front();
        }
        l.lease_rounds.push_back((l.read_round, now));
    }
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
    /// Read rounds announced and not yet confirmed, with the clock when
    /// each was announced (before its heartbeat left), oldest first, for
    /// the read lease (at most [`LEASE_ROUNDS_MAX`]).
    lease_rounds: std::collections::VecDeque<(u64, u64)>,
    /// The read lease runs until this clock (exclusive): `lease_len`
    /// after the newest confirmed round was announced; 0: no lease.
    lease_until: u64,
    /// The membership at the commit point.
    conf: u64,
    /// Membership entries in flight, `(slot, members)`, in slot order. At
    /// most one is proposed fresh (α = 1); a takeover may re-propose more.
    changes: Vec<(Slot, u64)>,
    /// A change asked for ([`Paxos::propose_members`]) and not yet in a slot.
    change_wanted: Option<u64>,
    /// The commit point when this ballot took over: once it is passed an
    /// entry of this ballot is chosen, and only then may a change be proposed.
    own_start: Slot,
    /// Each replica's commit point as its last Accepted stated it: a
    /// leader that removed itself hands over only once a majority of the
    /// new membership knows the change is chosen (else they could keep
    /// asking it, a non-member, for votes it refuses).
    peer_chosen: Vec<Slot>,
}

/// Unconfirmed read rounds a leader remembers the announcing time of
/// (a leader cut off from its quorum opens one per turn with reads until
/// it steps down); the oldest are forgotten first, which only shortens a
/// lease.
const LEASE_ROUNDS_MAX: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct InFlight {
    acks: u64,
    /// Ticks since this slot's Accept was last sent.
    age: u32,
}

/// Progress of a snapshot being received.
/// A replaced snapshot kept for the peer downloading it (`Paxos::pinned`).
#[derive(Debug)]
struct PinnedSnapshot {
    index: Slot,
    data: Bytes,
    /// Ticks since a chunk of it was last sent.
    idle: u32,
}

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

/// What [`Paxos::compact`] let go: the log entries below the new snapshot
/// and the snapshot it replaced (at a million keys a ~100 MB copy or file
/// mapping, whose unmapping measured 21 ms), for the caller to drop where
/// it is cheap.
#[derive(Debug, Default)]
pub struct Compacted {
    pub entries: Vec<Option<Entry>>,
    pub snapshot: Option<Bytes>,
}

impl Compacted {
    /// Nothing was let go.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.snapshot.is_none()
    }
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
    /// Ticks since this replica started (saturating). With read leases on
    /// it refuses every candidate for `election_ticks_min` ticks after a
    /// start: it may have acknowledged a leader's heartbeat just before a
    /// crash, and that leader's lease counts on it.
    boot_ticks: u32,
    /// The driver's clock ([`Paxos::set_clock`]; never goes back).
    clock_us: u64,
    catchup_wait: u32,
    /// The peer this replica last asked for chosen values (a catch-up or
    /// snapshot request). Catch-up responses and snapshot chunks are taken
    /// only from it: anything else is unsolicited and ignored.
    asked: Option<ReplicaId>,
    snap_recv: Option<SnapshotRecv>,
    /// A snapshot a peer was still downloading when a newer one replaced
    /// it: served until no peer asked for it for [`Paxos::pin_idle_ticks`],
    /// and the log is kept from its index on meanwhile, so the peer that
    /// installs it catches up from the log instead of starting over on the
    /// newer snapshot (ARCHITECTURE.md, "A snapshot outlives its transfer").
    pinned: Option<PinnedSnapshot>,
    /// Ticks since a chunk of the current snapshot was last sent
    /// (saturating): below [`Paxos::pin_idle_ticks`] it is being
    /// downloaded, and replacing it pins it.
    snapshot_idle: u32,
    /// As a follower: the highest read round heard from the leader of this
    /// ballot, echoed in every Accepted to it.
    read_round_heard: (Ballot, u64),
    out: Ready,
    stats: Stats,
    /// The membership in effect for slot `applied_upto`.
    members_applied: u64,
}

impl Paxos {
    /// A replica starting from `durable` (empty on first boot). It starts as a
    /// follower with a random election timeout.
    pub fn new(cfg: Config, durable: Durable, rng: &mut Rng) -> Paxos {
        let (start, snapshot) = match durable.snapshot {
            Some((i, d)) => (i, Some((i, d))),
            None => (0, None),
        };
        let members_applied = snapshot
            .as_ref()
            .and_then(|(_, d)| split_snapshot(d).0)
            .unwrap_or(cfg.members);
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
            boot_ticks: 0,
            clock_us: 0,
            catchup_wait: 0,
            asked: None,
            snap_recv: None,
            pinned: None,
            snapshot_idle: u32::MAX,
            read_round_heard: (Ballot::ZERO, 0),
            out: Ready::default(),
            stats: Stats::default(),
            members_applied,
            cfg,
        };
        // The state machine starts from the snapshot; chosen entries recorded
        // after it (learned by catch-up) are applied again on top.
        p.out.gated.snapshot = snapshot;
        p.advance_chosen_marked();
        p.reset_election_timer(rng);
        if p.members() == 1 << p.cfg.id {
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
    /// Who this replica believes leads (itself included). A replica
    /// outside the membership that has not heard a leader lately (one
    /// removed from the group: leaders stop talking to it) knows nothing:
    /// its last hint would send clients back and forth between removed
    /// replicas (simulator seed 429 of the membership world).
    pub fn leader_hint(&self) -> Option<ReplicaId> {
        if self.is_leader() {
            Some(self.cfg.id)
        } else if self.heard_leader >= self.cfg.election_ticks_max && !self.is_member() {
            None
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
        match &mut self.role {
            // Removed from the group: finish what is in flight, take no more.
            Role::Leader(l) if l.conf & (1 << self.cfg.id) == 0 => {
                Err(ProposeError::NotLeader(None))
            }
            Role::Leader(l) => {
                if l.pending_bytes + cmd.len() > self.cfg.pending_bytes_max {
                    return Err(ProposeError::Busy);
                }
                l.pending_bytes += cmd.len();
                l.pending.push(cmd);
                Ok(())
            }
            _ => Err(ProposeError::NotLeader(self.leader_hint())),
        }
    }

    /// The driver's monotonic clock, in the units of `Config::lease_us`
    /// (the runtime: µs since the core started; the simulator: each
    /// node's drifting clock). The driver sets it at least before every
    /// tick and every flush (what those send is stamped with it, so it
    /// must not be later than the send) and before it serves reads (each
    /// read's lease is judged by it, so it must not be earlier than the
    /// read's arrival). A value below the last is ignored.
    pub fn set_clock(&mut self, now: u64) {
        self.clock_us = self.clock_us.max(now);
    }

    /// Does this leader hold a read lease at the clock's time: a quorum of
    /// the membership (no change in flight) acknowledged a heartbeat of
    /// this ballot announced less than `lease_us` ago? Then no other
    /// replica can have been elected yet: each acknowledging follower
    /// refuses other candidates for longer than that.
    pub fn lease_valid(&self) -> bool {
        let Role::Leader(l) = &self.role else {
            return false;
        };
        l.changes.is_empty() && l.conf & (1 << self.cfg.id) != 0 && self.clock_us < l.lease_until
    }

    /// How long a lease runs from its round's announcement:
    /// `Config::lease_us` (0: leases off), or with the planted
    /// `lease_outlives_guard` bug `election_ticks_max` ticks longer.
    fn lease_len(&self) -> u64 {
        let lease = self.cfg.lease_us;
        if self.cfg.bugs.lease_outlives_guard {
            let tick = lease / u64::from(self.cfg.election_ticks_min.max(2) - 1);
            lease + tick * u64::from(self.cfg.election_ticks_max)
        } else {
            lease
        }
    }

    /// Register a linearizable read. Only the leader serves reads. Under a
    /// valid lease ([`Paxos::lease_valid`]) it is ready once applied up to
    /// its index; otherwise the reads registered in one loop turn share
    /// one leadership check (read-index), announced by the next
    /// [`Paxos::flush`].
    pub fn read_index(&mut self) -> Result<ReadTicket, ProposeError> {
        let leased = self.lease_valid();
        match (self.read_slot(), &mut self.role) {
            (Some(index), Role::Leader(l)) => {
                // Under a lease no round is asked for: the periodic
                // heartbeat's renews the lease, and a read whose lease ran
                // out before it was served waits for that round.
                l.read_wanted |= !leased;
                Ok(ReadTicket {
                    ballot: l.ballot,
                    index,
                    round: l.read_round + 1,
                })
            }
            _ => Err(ProposeError::NotLeader(self.leader_hint())),
        }
    }

    /// The slot a read registered now must see applied: everything chosen,
    /// and everything up to this leader's takeover. `None` unless leader.
    fn read_slot(&self) -> Option<Slot> {
        let Role::Leader(l) = &self.role else {
            return None;
        };
        Some(if self.cfg.bugs.read_index_skips_takeover {
            self.chosen_upto
        } else {
            self.chosen_upto.max(l.takeover_slot)
        })
    }

    /// Would a read registered now ([`Paxos::read_index`]) be ready at once
    /// ([`Paxos::read_status`]), asking for no round: this leader's lease
    /// is valid and every slot the ticket would name has been handed out.
    pub fn read_ready_now(&self) -> bool {
        self.read_slot()
            .is_some_and(|index| self.lease_valid() && self.applied_upto >= index)
    }

    /// May the read of `t` be answered from a state machine that has applied
    /// every slot below [`Paxos::applied_upto`]?
    pub fn read_status(&self, t: &ReadTicket) -> ReadStatus {
        match &self.role {
            Role::Leader(l) if l.ballot == t.ballot => {
                if (l.read_confirmed >= t.round || self.lease_valid())
                    && self.applied_upto >= t.index
                {
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
        self.flush_batch();
        self.check_invariants();
    }

    /// [`Paxos::flush`]'s work (a leader's only).
    fn flush_batch(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        let mut fresh: Vec<Proposal> = Vec::new();
        // A membership change goes in a slot of its own once an entry of
        // this ballot is chosen (before that, a no-op gets one chosen if
        // nothing else would) and no other change is in flight.
        if let Some(members) = l.change_wanted {
            let room = l.next_slot - self.chosen_upto < self.cfg.window_slots_max;
            let batch = if !l.changes.is_empty() || !room {
                None
            } else if self.chosen_upto > l.own_start {
                l.change_wanted = None;
                Some(Batch {
                    commands: vec![members_command(members)],
                })
            } else if l.next_slot == l.own_start && l.pending.is_empty() {
                Some(Batch::noop())
            } else {
                None
            };
            if let Some(batch) = batch {
                let slot = l.next_slot;
                l.next_slot += 1;
                if let Some(m) = batch_members(&batch) {
                    l.changes.push((slot, m));
                }
                self.stats.slots_proposed += 1;
                accept_into(&mut self.log, &mut self.out, slot, ballot, batch.clone());
                l.inflight.push_back(InFlight {
                    acks: 1 << self.cfg.id,
                    age: 0,
                });
                fresh.push(Proposal { slot, batch });
            }
        }
        // α = 1: nothing is proposed beyond an unchosen membership entry,
        // so every fresh slot's membership is known when it is proposed.
        while !l.pending.is_empty()
            && l.changes.is_empty()
            && l.next_slot - self.chosen_upto < self.cfg.window_slots_max
        {
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
            open_read_round(l, self.cfg.id, self.clock_us, self.cfg.lease_us > 0);
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
            if let Some(m) = batch_members(&entry.batch) {
                self.members_applied = m;
            }
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
    /// Returns the log entries it compacted away and the snapshot it
    /// replaced, for the caller to drop (the runtime does it off its event
    /// loop).
    pub fn compact(&mut self, index: Slot, data: Bytes) -> Compacted {
        assert!(
            index <= self.applied_upto,
            "snapshot at {index} beyond applied {}",
            self.applied_upto
        );
        if self.snapshot.as_ref().is_some_and(|(i, _)| *i >= index) || index <= self.log.start() {
            return Compacted::default();
        }
        if self.pinned.is_none() && self.snapshot_idle < self.pin_idle_ticks() {
            // A peer is downloading the snapshot this one replaces: keep
            // serving it, or a transfer slower than the snapshot interval
            // would restart on every new snapshot and never finish.
            if let Some((index, data)) = self.snapshot.take() {
                self.pinned = Some(PinnedSnapshot {
                    index,
                    data,
                    idle: 0,
                });
            }
        }
        let replaced = self.snapshot.replace((index, data)).map(|(_, d)| d);
        let keep_from = self.pinned.as_ref().map_or(index, |p| p.index.min(index));
        Compacted {
            entries: self.log.compact(keep_from),
            snapshot: replaced,
        }
    }

    /// The slot the current snapshot covers up to (the log's start if there
    /// is none). The log may start below it while a replaced snapshot is
    /// pinned for a peer; the snapshot trigger counts from here.
    pub fn snapshot_index(&self) -> Slot {
        self.snapshot
            .as_ref()
            .map_or(self.log.start(), |(i, _)| *i)
            .max(self.log.start())
    }

    /// How long a snapshot nobody asks chunks of counts as downloaded:
    /// four times a receiver's stall timeout (it asks again after
    /// `2 * retransmit_ticks` of silence).
    fn pin_idle_ticks(&self) -> u32 {
        self.cfg.retransmit_ticks.saturating_mul(8)
    }

    /// Hold `data` as the snapshot at `index` instead of the equal bytes
    /// held now (the driver's file-backed copy of the same snapshot, so the
    /// one on the heap can be freed: issue 15). Returns the bytes it
    /// replaced, for the caller to free where it is cheap; refused,
    /// returning `None`, unless the snapshot held is at `index` and of the
    /// same length.
    pub fn hold_snapshot(&mut self, index: Slot, data: Bytes) -> Option<Bytes> {
        match &mut self.snapshot {
            Some((i, held)) if *i == index && held.len() == data.len() => {
                Some(std::mem::replace(held, data))
            }
            _ => None,
        }
    }

    /// The snapshot served to laggards, if any.
    pub fn snapshot_held(&self) -> Option<(Slot, &Bytes)> {
        self.snapshot.as_ref().map(|(i, d)| (*i, d))
    }

    /// One unit of time passed.
    pub fn tick(&mut self, rng: &mut Rng) {
        self.tick_role(rng);
        self.check_invariants();
    }

    /// [`Paxos::tick`]'s work: timers of the snapshot transfer and the role.
    fn tick_role(&mut self, rng: &mut Rng) {
        self.boot_ticks = self.boot_ticks.saturating_add(1);
        self.snapshot_idle = self.snapshot_idle.saturating_add(1);
        let pin_idle = self.pin_idle_ticks();
        if let Some(p) = &mut self.pinned {
            p.idle += 1;
            if p.idle >= pin_idle {
                // Nobody downloads it any more; the next compaction frees
                // the log below the current snapshot.
                self.pinned = None;
            }
        }
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
                let mut heard = 1u64 << self.cfg.id;
                for (i, s) in l.silent_ticks.iter().enumerate() {
                    if *s < self.cfg.election_ticks_max {
                        heard |= 1 << i;
                    }
                }
                let bug = self.cfg.bugs.membership_switches_at_once;
                if !members::leader_quorum(l.conf, &l.changes, bug, heard) {
                    ::log::debug!("r{} leader {:?} lost quorum", self.cfg.id, l.ballot);
                    self.become_follower(None, rng);
                    return;
                }
                // Removed from the group and nothing left in flight: hand
                // over (a removed replica's votes no longer count, and it
                // must not keep clients waiting).
                if l.conf & (1 << self.cfg.id) == 0
                    && l.inflight.is_empty()
                    && members::majority_value(&l.peer_chosen, l.conf) >= self.chosen_upto
                {
                    ::log::info!("r{} steps down: no longer a member", self.cfg.id);
                    self.become_follower(None, rng);
                    return;
                }
                if l.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
                    l.heartbeat_elapsed = 0;
                    let b = l.ballot;
                    let lease = self.cfg.lease_us > 0;
                    if lease {
                        // Every heartbeat is a read round: its
                        // acknowledgements renew the lease.
                        open_read_round(l, self.cfg.id, self.clock_us, true);
                    }
                    self.broadcast_commit(b, false);
                    if lease {
                        self.advance_read_confirmed();
                    }
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
                let ready = c.catchup_wait >= self.cfg.retransmit_ticks;
                if ready && self.candidate_has_quorum() {
                    let Role::Candidate(c) = &mut self.role else {
                        unreachable!()
                    };
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

    /// Structural invariants, checked after every message, tick and flush
    /// (every event that changes state but `propose`, which only queues).
    /// Always on, in production too: a handful of comparisons, no walk
    /// over the log or the in-flight window, so it costs nothing next to
    /// the event it follows, and a broken invariant stops the replica at
    /// the event that broke it rather than wherever it shows next.
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
mod lease_tests;
#[cfg(test)]
mod members_tests;
#[cfg(test)]
mod tests;
