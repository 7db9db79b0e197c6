//! A KV group's replicated state machine when shards move between groups.
//!
//! Wraps the [`KvStore`] with the group's view of the configuration, applied
//! through the log like every client request, so all replicas agree on where
//! each Put falls relative to a reconfiguration: before it (the Put moves with
//! the shard) or after it (WrongGroup; the client retries at the new owner).
//!
//! Per shard the group is in one of five states (for its current config `n`):
//! - `Serving`: owned in `n`, data here.
//! - `Pulling`: owned in `n`, waiting for the data (and dedup state) as of the
//!   end of `n-1` from the previous owner. The data arrives in bounded chunks,
//!   each its own log entry ([`GroupCommand::InstallChunk`]), in the frozen
//!   shard's key order; the count of records applied so far (the cursor of
//!   the next chunk) is part of the state and of the snapshot, so a restart
//!   or a leader change resumes the transfer where the log left it.
//! - `Installed`: the data arrived; served, but the previous owner has not yet
//!   confirmed it deleted its copy (we keep telling it).
//! - `Offering`: owned in `n-1`, not in `n`: frozen data kept for the new
//!   owner to pull, deleted when the new owner says it installed it.
//! - `NotOwned`: nothing here.
//!
//! The group moves to configuration `n+1` once no shard is `Pulling`, and
//! no shard it still offers (or still has to confirm) would change hands
//! again in `n+1` ([`ShardKv::may_advance`]). A handoff that is not finished
//! (the other group is down, say) therefore holds back only a later move of
//! that same shard, not the group's next configurations: an `Offering` or
//! `Installed` shard carries the configuration its move belongs to
//! ([`Handoff`]) and keeps that state across configurations until the other
//! side answers. Installing, deleting and confirming are log entries too. This module owns those rules and nothing else: it never does
//! I/O; the driver (runtime or simulator) asks it what work is pending and
//! hands it to the one [`Migrator`] (`migrator.rs`), which says what to
//! send and propose.

use std::cell::RefCell;
use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use synod_wire::{
    decode_body, encode_message_body, ByteReader, ClientId, ClientReply, ClientRequest, Config,
    GroupId, Message, Op, ReadError, Seq, Slot, TxnId, TxnOutcome, KIND_CONFIG,
};

use crate::kv::{KeyOrder, KvOptions, KvStore};

pub mod migrator;
use crate::replica::StateMachine;
pub use migrator::{Action, Migrator};

/// Internal log command tags. Client commands start with a wire request
/// kind (0x01..), so these never collide.
const TAG_RECONFIGURE: u8 = 0xE1;
const TAG_INSTALL: u8 = 0xE2;
const TAG_DELETE: u8 = 0xE3;
const TAG_INSTALLED_ACK: u8 = 0xE4;
const TAG_INSTALL_CHUNK: u8 = 0xE5;
const TAG_TXN_PRESUME_ABORT: u8 = 0xE6;
const TAG_TXN_RESOLVED: u8 = 0xE7;

/// Version 2 added each shard's migration cursor; version 3 each offered or
/// installed shard's [`Handoff`]; version 4 the members of groups that left
/// the configuration (a transaction's coordinator may have).
const SNAPSHOT_VERSION: u8 = 4;
const SNAPSHOT_VERSION_HANDOFFS: u8 = 3;
const SNAPSHOT_VERSION_CURSORS: u8 = 2;
/// Snapshots written before chunked migration: no cursors (all 0). Still
/// read, so a data directory from before keeps working.
const SNAPSHOT_VERSION_WHOLE_SHARDS: u8 = 1;

/// Bytes of key/value records a group sends per chunk when another group
/// pulls a shard from it (`synod-server --migrate-chunk-bytes`). Well below
/// the default frame limit (16 MiB), and about the Paxos batch cap, so each
/// chunk is one bounded message and one bounded log entry.
pub const DEFAULT_MIGRATE_CHUNK_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardState {
    Serving = 0,
    Pulling = 1,
    Installed = 2,
    Offering = 3,
    NotOwned = 4,
}

impl ShardState {
    fn from_u8(v: u8) -> Option<ShardState> {
        Some(match v {
            0 => ShardState::Serving,
            1 => ShardState::Pulling,
            2 => ShardState::Installed,
            3 => ShardState::Offering,
            4 => ShardState::NotOwned,
            _ => return None,
        })
    }
}

/// The move an `Offering` or `Installed` shard is part of: the
/// configuration in which the shard changed owner, and the other group
/// (the new owner we offer it to, or the previous owner we must tell to
/// delete its copy) with its members as of that move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    pub config_num: u64,
    pub peer: GroupId,
    pub servers: Vec<String>,
}

/// An internal command of a KV group's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupCommand {
    /// Move to this configuration (its number must be current + 1).
    Reconfigure(Config),
    /// A whole shard (data and dedup sessions) as of the end of
    /// `config_num - 1`. Written by versions before chunked migration; no
    /// driver proposes it now, but logs that hold it still replay.
    Install {
        config_num: u64,
        shard: u32,
        data: Bytes,
    },
    /// The new owner installed `shard` of `config_num`: drop our copy.
    Delete { config_num: u64, shard: u32 },
    /// The previous owner confirmed it dropped `shard`: stop telling it.
    InstalledAck { config_num: u64, shard: u32 },
    /// Records `[cursor, cursor + n)` of `shard` as of the end of
    /// `config_num - 1`, in the previous owner's chunk format. Applied only
    /// if `cursor` is exactly the count applied so far (anything else is a
    /// duplicate, a retry or a stale leader's proposal). `done`: the last
    /// chunk, carrying the dedup sessions; the shard is then Installed.
    InstallChunk {
        config_num: u64,
        shard: u32,
        cursor: u64,
        done: bool,
        data: Bytes,
    },
    /// Presumed abort, at the coordinator of `txn`: a participant asked
    /// for the outcome (or the coordinator's own prepared part grew old),
    /// so log Abort unless a decision is in the log already; the first
    /// decision wins (`KvStore::presume_abort`).
    TxnPresumeAbort { txn: TxnId },
    /// At a participant: the coordinator answered `outcome` for `txn`;
    /// apply it to the prepared part if still held (`KvStore::resolve`).
    TxnResolved { txn: TxnId, outcome: TxnOutcome },
}

impl GroupCommand {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            GroupCommand::Reconfigure(c) => {
                b.put_u8(TAG_RECONFIGURE);
                encode_message_body(&Message::Config(c.clone()), &mut b);
            }
            GroupCommand::Install {
                config_num,
                shard,
                data,
            } => {
                b.put_u8(TAG_INSTALL);
                b.put_u64_le(*config_num);
                b.put_u32_le(*shard);
                b.put_slice(data);
            }
            GroupCommand::Delete { config_num, shard } => {
                b.put_u8(TAG_DELETE);
                b.put_u64_le(*config_num);
                b.put_u32_le(*shard);
            }
            GroupCommand::InstalledAck { config_num, shard } => {
                b.put_u8(TAG_INSTALLED_ACK);
                b.put_u64_le(*config_num);
                b.put_u32_le(*shard);
            }
            GroupCommand::InstallChunk {
                config_num,
                shard,
                cursor,
                done,
                data,
            } => {
                b.reserve(1 + 8 + 4 + 8 + 1 + data.len());
                b.put_u8(TAG_INSTALL_CHUNK);
                b.put_u64_le(*config_num);
                b.put_u32_le(*shard);
                b.put_u64_le(*cursor);
                b.put_u8(u8::from(*done));
                b.put_slice(data);
            }
            GroupCommand::TxnPresumeAbort { txn } => {
                b.put_u8(TAG_TXN_PRESUME_ABORT);
                b.put_u64_le(txn.client);
                b.put_u64_le(txn.seq);
            }
            GroupCommand::TxnResolved { txn, outcome } => {
                b.put_u8(TAG_TXN_RESOLVED);
                b.put_u64_le(txn.client);
                b.put_u64_le(txn.seq);
                b.put_u8(*outcome as u8);
            }
        }
        b.freeze()
    }

    /// `None` if `cmd` is not an internal command (or is malformed).
    pub fn decode(cmd: &Bytes) -> Option<GroupCommand> {
        let tag = *cmd.first()?;
        let body = cmd.slice(1..);
        if tag == TAG_RECONFIGURE {
            return match decode_body(KIND_CONFIG, body) {
                Ok(Message::Config(c)) => Some(GroupCommand::Reconfigure(c)),
                _ => None,
            };
        }
        let mut r = ByteReader::new(&body);
        match tag {
            TAG_INSTALL => Some(GroupCommand::Install {
                config_num: r.u64().ok()?,
                shard: r.u32().ok()?,
                data: body.slice_ref(r.rest()),
            }),
            TAG_DELETE => {
                let (config_num, shard) = (r.u64().ok()?, r.u32().ok()?);
                r.finish().ok()?;
                Some(GroupCommand::Delete { config_num, shard })
            }
            TAG_INSTALLED_ACK => {
                let (config_num, shard) = (r.u64().ok()?, r.u32().ok()?);
                r.finish().ok()?;
                Some(GroupCommand::InstalledAck { config_num, shard })
            }
            TAG_INSTALL_CHUNK => Some(GroupCommand::InstallChunk {
                config_num: r.u64().ok()?,
                shard: r.u32().ok()?,
                cursor: r.u64().ok()?,
                done: match r.u8().ok()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
                data: body.slice_ref(r.rest()),
            }),
            TAG_TXN_PRESUME_ABORT => {
                let txn = TxnId {
                    client: r.u64().ok()?,
                    seq: r.u64().ok()?,
                };
                r.finish().ok()?;
                Some(GroupCommand::TxnPresumeAbort { txn })
            }
            TAG_TXN_RESOLVED => {
                let txn = TxnId {
                    client: r.u64().ok()?,
                    seq: r.u64().ok()?,
                };
                let outcome = TxnOutcome::from_code(r.u8().ok()?)?;
                r.finish().ok()?;
                Some(GroupCommand::TxnResolved { txn, outcome })
            }
            _ => None,
        }
    }
}

/// Identifies a piece of [`Work`] across retries: kind, configuration,
/// shard, and a pull's cursor.
pub type RetryKey = (u8, u64, u32, u64);

/// What the group's leader should do next (see [`ShardKv::work`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Propose this command.
    Propose(GroupCommand),
    /// Fetch the chunk of `shard` of configuration `config_num` that starts
    /// at record `cursor` from group `from` (members `servers`), then propose
    /// it as [`GroupCommand::InstallChunk`].
    Pull {
        config_num: u64,
        shard: u32,
        cursor: u64,
        from: GroupId,
        servers: Vec<String>,
    },
    /// Tell group `to` (members `servers`) that we installed `shard` of
    /// `config_num`; when it confirms, propose [`GroupCommand::InstalledAck`].
    Delete {
        config_num: u64,
        shard: u32,
        to: GroupId,
        servers: Vec<String>,
    },
    /// We hold a prepared part of `txn` whose coordinator is group
    /// `coordinator` (members `servers`; maybe us). Once it is older than
    /// the driver's recovery timeout, ask the coordinator for the outcome
    /// (`TxnResolve`) and propose [`GroupCommand::TxnResolved`] with the
    /// answer; if we are the coordinator, propose
    /// [`GroupCommand::TxnPresumeAbort`] instead. The age is the driver's
    /// to measure (`Migrator`), in its own time.
    Resolve {
        txn: TxnId,
        coordinator: GroupId,
        servers: Vec<String>,
    },
}

impl Work {
    /// What identifies this piece of work across retries: drivers attempt
    /// each key at most once per retry interval. A pull's cursor is part of
    /// it, so the next chunk is asked for as soon as the last one applied.
    pub fn retry_key(&self) -> RetryKey {
        match self {
            Work::Propose(GroupCommand::Reconfigure(c)) => (0, c.num, 0, 0),
            Work::Propose(_) => (1, 0, 0, 0),
            Work::Pull {
                config_num,
                shard,
                cursor,
                ..
            } => (2, *config_num, *shard, *cursor),
            Work::Delete {
                config_num, shard, ..
            } => (3, *config_num, *shard, 0),
            Work::Resolve { txn, .. } => (4, txn.client, 0, txn.seq),
        }
    }
}

/// The answer to another group's pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullAnswer {
    /// The chunk of the frozen shard asked for; `done`: the last one (it
    /// carries the dedup state).
    Chunk { data: Bytes, done: bool },
    /// We have not reached that configuration yet (or cannot serve it).
    NotReady,
}

/// The answer to another group's "delete your copy".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteAnswer {
    /// Our copy is gone (or we are past that configuration).
    Done,
    /// Propose [`GroupCommand::Delete`] (if leader) and ask again.
    Propose(GroupCommand),
    NotReady,
}

/// Deliberate bugs for tests that prove the sharded simulator's checkers
/// catch them. All off in every real configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardBugs {
    /// Apply requests for shards this group does not serve.
    pub serve_unowned: bool,
    /// Take over a shard without pulling its data from the previous owner.
    pub skip_pull: bool,
    /// Apply a migration chunk whatever its cursor, so a duplicate or a
    /// retried chunk applies again.
    pub ignore_chunk_cursor: bool,
    /// Presumed abort without the log: a coordinator asked for the outcome
    /// of a transaction it has no decision for answers Abort at once and
    /// logs nothing, so the client's late commit can still win there while
    /// the participant aborted (`serve_resolve`).
    pub resolve_unlogged: bool,
}

pub struct ShardKv {
    /// Planted bugs (tests only).
    pub bugs: ShardBugs,
    gid: GroupId,
    store: KvStore,
    opts: KvOptions,
    config: Config,
    prev: Config,
    state: Vec<ShardState>,
    /// Per shard: records of the incoming transfer applied so far, i.e. the
    /// cursor of the next chunk. 0 unless Pulling.
    pulled: Vec<u64>,
    /// Per shard: the unfinished move of an Offering or Installed shard
    /// (`None` in every other state).
    handoff: Vec<Option<Handoff>>,
    /// The members of every group that left a configuration this group
    /// applied (removed again if it rejoins): a participant still asks a
    /// transaction's coordinator for the outcome after it left
    /// ([`ShardKv::group_servers`]). One entry per group ever joined, at
    /// most. Part of the snapshot (version 4).
    departed: BTreeMap<GroupId, Vec<String>>,
    /// Bytes of records per chunk this replica sends when another group
    /// pulls a shard from it. Local (not replicated) and free to differ
    /// between replicas: a chunk names its own start, and its size does not
    /// change what the receiver ends up with.
    pub migrate_chunk_bytes: usize,
    /// The key order of each frozen (Offering) shard someone pulls from
    /// this replica, with the configuration it was taken in: sorted once,
    /// then every chunk is a slice of it. A cache derived from the state,
    /// never snapshotted, dropped when the shard is; interior mutability
    /// because answering a pull does not change the replicated state.
    key_orders: RefCell<BTreeMap<u32, (u64, KeyOrder)>>,
    /// Internal commands that did not decode (never, unless corrupt).
    pub undecodable: u64,
    /// Records (keys and sessions) dropped by applied Deletes while this
    /// instance lives ([`StateMachine::shed_records`]).
    shed: u64,
}

/// Log level of a transfer's start and end: a join hands over many empty
/// shards at once, which are not worth an info line each.
fn quiet_if_empty(records: u64) -> log::Level {
    if records == 0 {
        log::Level::Debug
    } else {
        log::Level::Info
    }
}

fn empty_config(shards: u32) -> Config {
    Config {
        num: 0,
        shards: vec![0; shards as usize],
        groups: Vec::new(),
    }
}

impl ShardKv {
    /// Everything of the snapshot before the store's bytes, after `b`.
    fn snapshot_head(&self, mut b: BytesMut) -> BytesMut {
        b.put_u8(SNAPSHOT_VERSION);
        b.put_u32_le(self.gid);
        for c in [&self.config, &self.prev] {
            let mut cb = BytesMut::new();
            encode_message_body(&Message::Config(c.clone()), &mut cb);
            b.put_u32_le(cb.len() as u32);
            b.put_slice(&cb);
        }
        b.put_u32_le(self.state.len() as u32);
        for s in &self.state {
            b.put_u8(*s as u8);
        }
        for p in &self.pulled {
            b.put_u64_le(*p);
        }
        for h in &self.handoff {
            match h {
                None => b.put_u8(0),
                Some(h) => {
                    b.put_u8(1);
                    b.put_u64_le(h.config_num);
                    b.put_u32_le(h.peer);
                    b.put_u32_le(h.servers.len() as u32);
                    for s in &h.servers {
                        b.put_u32_le(s.len() as u32);
                        b.put_slice(s.as_bytes());
                    }
                }
            }
        }
        b.put_u32_le(self.departed.len() as u32);
        for (gid, servers) in &self.departed {
            b.put_u32_le(*gid);
            b.put_u32_le(servers.len() as u32);
            for s in servers {
                b.put_u32_le(s.len() as u32);
                b.put_slice(s.as_bytes());
            }
        }
        b
    }

    pub fn new(gid: GroupId, opts: KvOptions) -> ShardKv {
        assert!(gid != 0, "gid 0 is the master group");
        ShardKv {
            bugs: ShardBugs::default(),
            gid,
            store: KvStore::new(opts),
            config: empty_config(opts.shards),
            prev: empty_config(opts.shards),
            state: vec![ShardState::NotOwned; opts.shards as usize],
            pulled: vec![0; opts.shards as usize],
            handoff: vec![None; opts.shards as usize],
            departed: BTreeMap::new(),
            migrate_chunk_bytes: DEFAULT_MIGRATE_CHUNK_BYTES,
            key_orders: RefCell::new(BTreeMap::new()),
            opts,
            undecodable: 0,
            shed: 0,
        }
    }

    /// A group that owns every shard in a fixed configuration 1, as if it
    /// had applied `Reconfigure(1)` from the empty configuration: every
    /// shard Serving, nothing to migrate ever. What the single-group
    /// simulator runs, so it checks the state machine the server runs.
    pub fn owning_every_shard(gid: GroupId, opts: KvOptions) -> ShardKv {
        let mut kv = ShardKv::new(gid, opts);
        kv.config = Config {
            num: 1,
            shards: vec![gid; opts.shards as usize],
            groups: vec![synod_wire::GroupInfo::new(gid, Vec::new())],
        };
        kv.state = vec![ShardState::Serving; opts.shards as usize];
        kv
    }

    pub fn gid(&self) -> GroupId {
        self.gid
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The configuration before the current one (previous owners).
    pub fn prev_config(&self) -> &Config {
        &self.prev
    }
    pub fn store(&self) -> &KvStore {
        &self.store
    }
    pub fn shard_state(&self, shard: u32) -> ShardState {
        self.state[shard as usize]
    }
    /// Records of `shard` received so far while it is Pulling (0 otherwise).
    pub fn pulled(&self, shard: u32) -> u64 {
        self.pulled[shard as usize]
    }

    /// Every shard settled: no transfer or handoff of any shard is pending.
    pub fn settled(&self) -> bool {
        self.state
            .iter()
            .all(|s| matches!(s, ShardState::Serving | ShardState::NotOwned))
    }

    /// The unfinished move of `shard`, if it is Offering or Installed.
    pub fn handoff(&self, shard: u32) -> Option<&Handoff> {
        self.handoff.get(shard as usize).and_then(|h| h.as_ref())
    }

    /// May the group take configuration `next` (the one after its current)?
    /// Not while a shard is still arriving; and a shard whose handoff is
    /// unfinished must stay where it is in `next` (an offered shard away, an
    /// installed one here), because one shard slot holds one copy. Every
    /// other shard, and so the group, moves on.
    ///
    /// Nor while a shard that would leave holds a lock of a prepared
    /// cross-group transaction: its outcome must apply where it was
    /// prepared (the locks and staged writes do not travel with the
    /// shard), so the group waits for the outcome (the client drives it)
    /// before it hands the shard over.
    pub fn may_advance(&self, next: &Config) -> bool {
        next.num == self.config.num + 1
            && next.shards.len() == self.state.len()
            && self.state.iter().enumerate().all(|(s, st)| match st {
                ShardState::Serving => {
                    next.shards[s] == self.gid || !self.store.shard_locked(s as u32)
                }
                ShardState::NotOwned => true,
                ShardState::Pulling => false,
                ShardState::Offering => next.shards[s] != self.gid,
                ShardState::Installed => next.shards[s] == self.gid,
            })
    }

    /// The members of `gid` in the previous configuration.
    fn prev_servers(&self, gid: GroupId) -> Vec<String> {
        self.prev
            .groups
            .iter()
            .find(|g| g.gid == gid)
            .map(|g| g.servers.clone())
            .unwrap_or_default()
    }

    /// `shard` arrived whole: serve it, and tell its previous owner.
    fn installed(&mut self, shard: usize) {
        let peer = self.prev.shards[shard];
        self.pulled[shard] = 0;
        self.state[shard] = ShardState::Installed;
        self.handoff[shard] = Some(Handoff {
            config_num: self.config.num,
            peer,
            servers: self.prev_servers(peer),
        });
    }

    /// The handoff of `shard` in `config_num`, if it is in `state`.
    fn handing_off(&self, shard: usize, state: ShardState, config_num: u64) -> bool {
        shard < self.state.len()
            && self.state[shard] == state
            && self.handoff[shard]
                .as_ref()
                .is_some_and(|h| h.config_num == config_num)
    }

    fn serves(&self, shard: u32) -> bool {
        if self.bugs.serve_unowned {
            return true;
        }
        self.config.shards.get(shard as usize) == Some(&self.gid)
            && matches!(
                self.state[shard as usize],
                ShardState::Serving | ShardState::Installed
            )
    }

    /// The members of group `gid` as this group last knew them (current
    /// configuration, else the previous one, else as it left; empty if
    /// this group never saw it).
    pub fn group_servers(&self, gid: GroupId) -> Vec<String> {
        self.config
            .groups
            .iter()
            .chain(&self.prev.groups)
            .find(|g| g.gid == gid)
            .map(|g| g.servers.clone())
            .or_else(|| self.departed.get(&gid).cloned())
            .unwrap_or_default()
    }

    /// What the leader should do now, given the next configuration if the
    /// driver knows it.
    pub fn work(&self, next: Option<&Config>) -> Vec<Work> {
        let mut out = Vec::new();
        for (txn, coordinator, _) in self.store.prepared_parts() {
            if coordinator == 0 {
                continue; // logged before recovery existed: its client decides
            }
            let servers = if coordinator == self.gid {
                Vec::new()
            } else {
                self.group_servers(coordinator)
            };
            out.push(Work::Resolve {
                txn,
                coordinator,
                servers,
            });
        }
        if let Some(c) = next.filter(|c| self.may_advance(c)) {
            out.push(Work::Propose(GroupCommand::Reconfigure(c.clone())));
        }
        for (s, st) in self.state.iter().enumerate() {
            match (st, &self.handoff[s]) {
                (ShardState::Pulling, _) => {
                    let from = self.prev.shards[s];
                    out.push(Work::Pull {
                        config_num: self.config.num,
                        shard: s as u32,
                        cursor: self.pulled[s],
                        from,
                        servers: self.prev_servers(from),
                    })
                }
                (ShardState::Installed, Some(h)) => out.push(Work::Delete {
                    config_num: h.config_num,
                    shard: s as u32,
                    to: h.peer,
                    servers: h.servers.clone(),
                }),
                _ => {}
            }
        }
        out
    }

    /// Another group (the owner of `shard` in `config_num`) pulls the chunk
    /// of it that starts at record `cursor`. Any replica that has applied
    /// `config_num` answers alike: the shard is frozen here since then.
    pub fn answer_pull(&self, config_num: u64, shard: u32, cursor: u64) -> PullAnswer {
        if !self.handing_off(shard as usize, ShardState::Offering, config_num) {
            return PullAnswer::NotReady;
        }
        let mut orders = self.key_orders.borrow_mut();
        if !matches!(orders.get(&shard), Some((n, _)) if *n == config_num) {
            let order = self.store.key_order(shard);
            log::log!(
                quiet_if_empty(order.len()),
                "group {}: sending shard {shard} of configuration {config_num}: {} records \
                 in chunks of about {} bytes (key order: {} bytes)",
                self.gid,
                order.len(),
                self.migrate_chunk_bytes,
                order.heap_bytes()
            );
            orders.insert(shard, (config_num, order));
        }
        let (_, order) = &orders[&shard];
        if cursor > order.len() {
            // Only a confused peer asks past the end: nothing to send.
            return PullAnswer::NotReady;
        }
        let chunk = self
            .store
            .export_chunk(order, cursor, self.migrate_chunk_bytes);
        PullAnswer::Chunk {
            data: chunk.data,
            done: chunk.done,
        }
    }

    /// The new owner of `shard` in `config_num` installed it.
    pub fn answer_delete(&self, config_num: u64, shard: u32) -> DeleteAnswer {
        if (shard as usize) >= self.state.len() || self.config.num < config_num {
            return DeleteAnswer::NotReady;
        }
        if self.handing_off(shard as usize, ShardState::Offering, config_num) {
            return DeleteAnswer::Propose(GroupCommand::Delete { config_num, shard });
        }
        // We reached `config_num` and do not offer the shard of that move:
        // the copy is gone already (an offered shard cannot leave Offering
        // but by this delete, nor come back before it).
        DeleteAnswer::Done
    }

    fn apply_group(&mut self, cmd: GroupCommand) {
        match cmd {
            // Group-wide, like TxnDecide and TxnFinish: whatever shards
            // the group serves now.
            GroupCommand::TxnPresumeAbort { txn } => self.store.presume_abort(txn),
            GroupCommand::TxnResolved { txn, outcome } => self.store.resolve(txn, outcome),
            GroupCommand::Reconfigure(c) => {
                if !self.may_advance(&c) {
                    return; // a duplicate or a proposal from a stale leader
                }
                for s in 0..self.state.len() {
                    if matches!(self.state[s], ShardState::Offering | ShardState::Installed) {
                        // An unfinished handoff: the shard stays where it is
                        // (`may_advance`) and keeps its state until the
                        // other group answers.
                        continue;
                    }
                    let old = self.config.shards[s];
                    let new = c.shards[s];
                    self.state[s] = match (old == self.gid, new == self.gid) {
                        (true, true) => ShardState::Serving,
                        (true, false) => ShardState::Offering,
                        (false, true) if old == 0 || self.bugs.skip_pull => ShardState::Serving,
                        (false, true) => ShardState::Pulling,
                        (false, false) => ShardState::NotOwned,
                    };
                    if self.state[s] == ShardState::Offering {
                        self.handoff[s] = Some(Handoff {
                            config_num: c.num,
                            peer: new,
                            servers: c
                                .groups
                                .iter()
                                .find(|g| g.gid == new)
                                .map(|g| g.servers.clone())
                                .unwrap_or_default(),
                        });
                    }
                }
                // Nothing was Pulling, so no transfer was in progress; key
                // orders are kept only for shards still offered.
                assert!(self.pulled.iter().all(|p| *p == 0));
                let state = &self.state;
                self.key_orders
                    .get_mut()
                    .retain(|s, _| state[*s as usize] == ShardState::Offering);
                log::info!(
                    "group {} enters configuration {} (pulling {}, offering {})",
                    self.gid,
                    c.num,
                    self.state
                        .iter()
                        .filter(|s| **s == ShardState::Pulling)
                        .count(),
                    self.state
                        .iter()
                        .filter(|s| **s == ShardState::Offering)
                        .count()
                );
                for g in &self.config.groups {
                    if !c.groups.iter().any(|n| n.gid == g.gid) {
                        self.departed.insert(g.gid, g.servers.clone());
                    }
                }
                for g in &c.groups {
                    self.departed.remove(&g.gid);
                }
                self.prev = std::mem::replace(&mut self.config, c);
            }
            GroupCommand::Install {
                config_num,
                shard,
                data,
            } => {
                let s = shard as usize;
                if config_num == self.config.num
                    && s < self.state.len()
                    && self.state[s] == ShardState::Pulling
                {
                    match self.store.import_shard(shard, &data) {
                        Ok(()) => {
                            log::debug!(
                                "group {} installed shard {shard} of configuration {config_num}",
                                self.gid
                            );
                            self.installed(s);
                        }
                        // The bytes came from a peer group under checksums
                        // and through our own log: every replica refuses
                        // alike and the leader pulls again.
                        Err(e) => {
                            log::error!("group {}: shard {shard} did not import: {e}", self.gid)
                        }
                    }
                }
            }
            GroupCommand::Delete { config_num, shard } => {
                let s = shard as usize;
                if self.handing_off(s, ShardState::Offering, config_num) {
                    self.shed += self.store.drop_shard(shard);
                    self.key_orders.get_mut().remove(&shard);
                    self.state[s] = ShardState::NotOwned;
                    self.handoff[s] = None;
                }
            }
            GroupCommand::InstalledAck { config_num, shard } => {
                let s = shard as usize;
                if self.handing_off(s, ShardState::Installed, config_num) {
                    self.state[s] = ShardState::Serving;
                    self.handoff[s] = None;
                }
            }
            GroupCommand::InstallChunk {
                config_num,
                shard,
                cursor,
                done,
                data,
            } => {
                let s = shard as usize;
                if config_num != self.config.num
                    || s >= self.state.len()
                    || self.state[s] != ShardState::Pulling
                {
                    return; // stale: the shard arrived or the config moved on
                }
                if cursor != self.pulled[s] && !self.bugs.ignore_chunk_cursor {
                    // A duplicate, a retry, or a chunk proposed by a leader
                    // that did not know the last one applied: the expected
                    // chunk is pulled again.
                    return;
                }
                match self.store.import_chunk(shard, &data, cursor == 0, done) {
                    Ok(records) if done => {
                        log::log!(
                            quiet_if_empty(self.pulled[s] + records),
                            "group {} installed shard {shard} of configuration {config_num} \
                             ({} records)",
                            self.gid,
                            self.pulled[s] + records
                        );
                        self.installed(s);
                    }
                    Ok(records) => {
                        log::debug!(
                            "group {}: shard {shard} of configuration {config_num}: \
                             chunk at record {cursor} ({records} records)",
                            self.gid
                        );
                        self.pulled[s] += records;
                    }
                    // As for a whole shard: every replica refuses alike and
                    // the leader pulls the same chunk again.
                    Err(e) => log::error!(
                        "group {}: chunk at record {cursor} of shard {shard} did not import: {e}",
                        self.gid
                    ),
                }
            }
        }
    }
}

impl StateMachine for ShardKv {
    type Request = ClientRequest;

    fn request_id(req: &ClientRequest) -> (ClientId, Seq) {
        (req.client_id, req.seq)
    }

    /// `[kind][request body]`, the request as the wire carries it.
    fn command(req: &ClientRequest) -> Bytes {
        synod_wire::encode_command(req)
    }

    fn apply(&mut self, _slot: Slot, cmd: &Bytes) -> Option<(ClientId, Seq, Message)> {
        if let Some(ms) = crate::kv::decode_clock(cmd) {
            // Only served shards expire sessions: an offered one is frozen
            // (its chunks are positions in it), an arriving one incomplete.
            let (config, state) = (&self.config, &self.state);
            let gid = self.gid;
            self.store.advance_clock(ms, |s| {
                config.shards.get(s as usize) == Some(&gid)
                    && matches!(
                        state[s as usize],
                        ShardState::Serving | ShardState::Installed
                    )
            });
            return None;
        }
        if cmd.first().is_some_and(|t| *t >= 0xE0) {
            match GroupCommand::decode(cmd) {
                Some(g) => self.apply_group(g),
                None => self.undecodable += 1,
            }
            return None;
        }
        let req = match synod_wire::decode_command(cmd.clone()) {
            Ok(r) => r,
            Err(e) => {
                log::error!("undecodable command in the log: {e}");
                self.undecodable += 1;
                return None;
            }
        };
        let shard = self.store.shard_of_key(req.op.key());
        // A transaction (or a group's part of a cross-group one) runs here
        // only if this group serves every shard it touches.
        let serves_all = match &req.op {
            Op::Txn(txn) => txn.keys().all(|k| self.serves(self.store.shard_of_key(k))),
            Op::TxnPrepare(p) => p
                .part
                .keys()
                .all(|k| self.serves(self.store.shard_of_key(k))),
            _ => true,
        };
        // The outcome of a prepared part applies where it was prepared,
        // whatever shards the group serves now (it keeps those it holds
        // locks on until then: `may_advance`).
        let outcome = matches!(req.op, Op::TxnDecide(_) | Op::TxnFinish(_));
        // Only what enters a session is printed (reads and outcomes don't).
        let print = if req.op.is_read() || outcome {
            0
        } else {
            synod_wire::request_print(cmd)
        };
        // Decided in log order: the same answer on every replica.
        let reply = if outcome || (self.serves(shard) && serves_all) {
            self.store.apply_printed(&req, print)
        } else if self.serves(shard) && matches!(req.op, Op::Txn(_)) {
            // Its session is here: answer a copy that applied from it, or
            // refuse for good (not WrongGroup, which a client may resend
            // and which would leave a copy in flight free to apply later
            // beside the two-phase commit the client turns to).
            self.store.refuse_spanning_txn(&req, print)
        } else {
            ClientReply::WrongGroup
        };
        Some((req.client_id, req.seq, Message::Reply(reply)))
    }

    fn shed_records(&self) -> u64 {
        self.shed
    }

    fn held_records(&self) -> u64 {
        self.store.records()
    }

    fn snapshot(&self) -> Bytes {
        let mut b = self.snapshot_head(BytesMut::new());
        b.put_slice(&self.store.snapshot());
        b.freeze()
    }

    /// The configuration and shard states are small: encoded at once. The
    /// store's data is serialized a slice at a time after them.
    fn begin_snapshot(&mut self, prefix: Vec<u8>) -> Option<Bytes> {
        let head = self.snapshot_head(BytesMut::from(&prefix[..]));
        self.store.begin_snapshot(Vec::from(&head[..]));
        None
    }

    fn snapshot_step(&mut self, budget: usize) -> Option<Bytes> {
        self.store.snapshot_step(budget)
    }

    fn abort_snapshot(&mut self) {
        self.store.abort_snapshot();
    }

    fn check_snapshot(&self, data: &[u8]) -> Result<(), String> {
        ShardKv::new(self.gid, self.opts).restore(data)
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let mut r = ByteReader::new(data);
        let rd = |e: ReadError| format!("shardkv snapshot {e}");
        let version = r.u8().map_err(rd)?;
        if ![
            SNAPSHOT_VERSION,
            SNAPSHOT_VERSION_HANDOFFS,
            SNAPSHOT_VERSION_CURSORS,
            SNAPSHOT_VERSION_WHOLE_SHARDS,
        ]
        .contains(&version)
        {
            return Err("unknown shardkv snapshot version".into());
        }
        if r.u32().map_err(rd)? != self.gid {
            return Err("snapshot of another group".into());
        }
        let mut configs = Vec::new();
        for _ in 0..2 {
            let body = Bytes::copy_from_slice(r.bytes().map_err(rd)?);
            match decode_body(KIND_CONFIG, body) {
                Ok(Message::Config(c)) if c.shards.len() == self.state.len() => configs.push(c),
                _ => return Err("bad configuration in snapshot".into()),
            }
        }
        let n = r.u32().map_err(rd)? as usize;
        if n != self.state.len() {
            return Err("shard count mismatch".into());
        }
        let mut state = Vec::with_capacity(n);
        for b in r.take(n).map_err(rd)? {
            state.push(ShardState::from_u8(*b).ok_or("bad shard state")?);
        }
        let mut pulled = vec![0; n];
        if version >= SNAPSHOT_VERSION_CURSORS {
            for (s, p) in pulled.iter_mut().enumerate() {
                *p = r.u64().map_err(rd)?;
                if *p != 0 && state[s] != ShardState::Pulling {
                    return Err("migration cursor on a shard that is not pulling".into());
                }
            }
        }
        let prev = configs.pop().expect("two configs");
        let config = configs.pop().expect("two configs");
        let mut handoff = vec![None; n];
        if version >= SNAPSHOT_VERSION_HANDOFFS {
            for (s, h) in handoff.iter_mut().enumerate() {
                if r.u8().map_err(rd)? == 0 {
                    continue;
                }
                let config_num = r.u64().map_err(rd)?;
                let peer = r.u32().map_err(rd)?;
                let count = r.u32().map_err(rd)? as usize;
                let mut servers = Vec::new();
                for _ in 0..count {
                    servers.push(r.str().map_err(rd)?.to_string());
                }
                if !matches!(state[s], ShardState::Offering | ShardState::Installed) {
                    return Err("handoff on a shard that is neither offered nor installed".into());
                }
                *h = Some(Handoff {
                    config_num,
                    peer,
                    servers,
                });
            }
        } else {
            // Older snapshots: every handoff belonged to the current move.
            for (s, h) in handoff.iter_mut().enumerate() {
                let peer = match state[s] {
                    ShardState::Offering => config.shards[s],
                    ShardState::Installed => prev.shards[s],
                    _ => continue,
                };
                let of = if state[s] == ShardState::Offering {
                    &config
                } else {
                    &prev
                };
                *h = Some(Handoff {
                    config_num: config.num,
                    peer,
                    servers: of
                        .groups
                        .iter()
                        .find(|g| g.gid == peer)
                        .map(|g| g.servers.clone())
                        .unwrap_or_default(),
                });
            }
        }
        if state.iter().zip(&handoff).any(|(st, h)| {
            matches!(st, ShardState::Offering | ShardState::Installed) && h.is_none()
        }) {
            return Err("offered or installed shard without its handoff".into());
        }
        let mut departed = BTreeMap::new();
        if version >= SNAPSHOT_VERSION {
            let count = r.count(4 + 4).map_err(rd)?;
            for _ in 0..count {
                let gid = r.u32().map_err(rd)?;
                let n = r.count(4).map_err(rd)?;
                let mut servers = Vec::with_capacity(n);
                for _ in 0..n {
                    servers.push(r.str().map_err(rd)?.to_string());
                }
                if departed.keys().next_back().is_some_and(|g| *g >= gid) {
                    return Err("departed groups not strictly increasing".into());
                }
                departed.insert(gid, servers);
            }
        }
        let store = KvStore::restore(r.rest(), self.opts).map_err(|e| e.to_string())?;
        self.departed = departed;
        self.prev = prev;
        self.config = config;
        self.state = state;
        self.pulled = pulled;
        self.handoff = handoff;
        self.store = store;
        self.key_orders.get_mut().clear();
        Ok(())
    }

    fn is_read(req: &ClientRequest) -> bool {
        req.op.is_read()
    }

    fn clock_command(ms: u64) -> Option<Bytes> {
        Some(crate::kv::clock_command(ms))
    }

    /// Only a read of a shard holding a key with an expiry: every read op
    /// (Get, Ttl, Scan, Count) stays within its key's shard, and log time
    /// changes nothing else a read sees.
    fn read_needs_time(&self, req: &ClientRequest) -> bool {
        req.op.is_read()
            && self
                .store
                .has_deadlines(self.store.shard_of_key(req.op.key()))
    }

    /// A Get answered from the applied state: refused like a logged one
    /// would be if this group does not serve the key's shard at this point.
    fn read_local(&self, req: &ClientRequest) -> Option<Message> {
        if !req.op.is_read() {
            return None;
        }
        Some(Message::Reply(
            if self.serves(self.store.shard_of_key(req.op.key())) {
                // At the applied log time: an expired key reads as absent,
                // as it would to a logged read at this point.
                self.store.read_op(&req.op)
            } else {
                ClientReply::WrongGroup
            },
        ))
    }
}

#[cfg(test)]
mod tests;
