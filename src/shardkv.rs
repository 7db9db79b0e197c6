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
//!   end of `n-1` from the previous owner.
//! - `Installed`: the data arrived; served, but the previous owner has not yet
//!   confirmed it deleted its copy (we keep telling it).
//! - `Offering`: owned in `n-1`, not in `n`: frozen data kept for the new
//!   owner to pull, deleted when the new owner says it installed it.
//! - `NotOwned`: nothing here.
//!
//! The group moves to configuration `n+1` only when every shard is
//! `Serving` or `NotOwned`. Installing, deleting and confirming are log
//! entries too. This module owns those rules and nothing else: it never does
//! I/O; the driver (runtime or simulator) asks it what work is pending and
//! proposes the commands.

use bytes::{BufMut, Bytes, BytesMut};
use synod_wire::{
    decode_body, encode_message_body, ClientId, ClientReply, ClientRequest, Config, GroupId,
    Message, Op, Seq, Slot, KIND_CONFIG,
};

use crate::kv::{KvOptions, KvStore};
use crate::replica::StateMachine;

/// Internal log command tags. Client commands start with a wire request
/// kind (0x01..), so these never collide.
const TAG_RECONFIGURE: u8 = 0xE1;
const TAG_INSTALL: u8 = 0xE2;
const TAG_DELETE: u8 = 0xE3;
const TAG_INSTALLED_ACK: u8 = 0xE4;

const SNAPSHOT_VERSION: u8 = 1;

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

/// An internal command of a KV group's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupCommand {
    /// Move to this configuration (its number must be current + 1).
    Reconfigure(Config),
    /// Shard data (with its dedup sessions) as of the end of `config_num - 1`.
    Install {
        config_num: u64,
        shard: u32,
        data: Bytes,
    },
    /// The new owner installed `shard` of `config_num`: drop our copy.
    Delete { config_num: u64, shard: u32 },
    /// The previous owner confirmed it dropped `shard`: stop telling it.
    InstalledAck { config_num: u64, shard: u32 },
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
        }
        b.freeze()
    }

    /// `None` if `cmd` is not an internal command (or is malformed).
    pub fn decode(cmd: &Bytes) -> Option<GroupCommand> {
        let tag = *cmd.first()?;
        let body = cmd.slice(1..);
        let num_shard = |b: &Bytes| -> Option<(u64, u32)> {
            if b.len() < 12 {
                return None;
            }
            let n = u64::from_le_bytes(b[0..8].try_into().ok()?);
            let s = u32::from_le_bytes(b[8..12].try_into().ok()?);
            Some((n, s))
        };
        match tag {
            TAG_RECONFIGURE => match decode_body(KIND_CONFIG, body) {
                Ok(Message::Config(c)) => Some(GroupCommand::Reconfigure(c)),
                _ => None,
            },
            TAG_INSTALL => {
                let (config_num, shard) = num_shard(&body)?;
                Some(GroupCommand::Install {
                    config_num,
                    shard,
                    data: body.slice(12..),
                })
            }
            TAG_DELETE => {
                let (config_num, shard) = num_shard(&body)?;
                (body.len() == 12).then_some(GroupCommand::Delete { config_num, shard })
            }
            TAG_INSTALLED_ACK => {
                let (config_num, shard) = num_shard(&body)?;
                (body.len() == 12).then_some(GroupCommand::InstalledAck { config_num, shard })
            }
            _ => None,
        }
    }
}

/// What the group's leader should do next (see [`ShardKv::work`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Propose this command.
    Propose(GroupCommand),
    /// Fetch `shard` of configuration `config_num` from group `from`
    /// (members `servers`), then propose [`GroupCommand::Install`].
    Pull {
        config_num: u64,
        shard: u32,
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
}

impl Work {
    /// What identifies this piece of work across retries: drivers attempt
    /// each key at most once per retry interval.
    pub fn retry_key(&self) -> (u8, u64, u32) {
        match self {
            Work::Propose(GroupCommand::Reconfigure(c)) => (0, c.num, 0),
            Work::Propose(_) => (1, 0, 0),
            Work::Pull {
                config_num, shard, ..
            } => (2, *config_num, *shard),
            Work::Delete {
                config_num, shard, ..
            } => (3, *config_num, *shard),
        }
    }
}

/// The answer to another group's pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullAnswer {
    /// The frozen shard (data and dedup state).
    Data(Bytes),
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
    /// Internal commands that did not decode (never, unless corrupt).
    pub undecodable: u64,
}

fn empty_config(shards: u32) -> Config {
    Config {
        num: 0,
        shards: vec![0; shards as usize],
        groups: Vec::new(),
    }
}

impl ShardKv {
    pub fn new(gid: GroupId, opts: KvOptions) -> ShardKv {
        assert!(gid != 0, "gid 0 is the master group");
        ShardKv {
            bugs: ShardBugs::default(),
            gid,
            store: KvStore::new(opts),
            config: empty_config(opts.shards),
            prev: empty_config(opts.shards),
            state: vec![ShardState::NotOwned; opts.shards as usize],
            opts,
            undecodable: 0,
        }
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

    /// Every shard settled: the group may take the next configuration.
    pub fn settled(&self) -> bool {
        self.state
            .iter()
            .all(|s| matches!(s, ShardState::Serving | ShardState::NotOwned))
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

    /// What the leader should do now, given the next configuration if the
    /// driver knows it.
    pub fn work(&self, next: Option<&Config>) -> Vec<Work> {
        let mut out = Vec::new();
        if self.settled() {
            if let Some(c) = next {
                if c.num == self.config.num + 1 && c.shards.len() == self.state.len() {
                    out.push(Work::Propose(GroupCommand::Reconfigure(c.clone())));
                }
            }
            return out;
        }
        let servers_of = |gid: GroupId| -> Vec<String> {
            self.prev
                .groups
                .iter()
                .find(|g| g.gid == gid)
                .map(|g| g.servers.clone())
                .unwrap_or_default()
        };
        for (s, st) in self.state.iter().enumerate() {
            let from = self.prev.shards[s];
            match st {
                ShardState::Pulling => out.push(Work::Pull {
                    config_num: self.config.num,
                    shard: s as u32,
                    from,
                    servers: servers_of(from),
                }),
                ShardState::Installed => out.push(Work::Delete {
                    config_num: self.config.num,
                    shard: s as u32,
                    to: from,
                    servers: servers_of(from),
                }),
                _ => {}
            }
        }
        out
    }

    /// Another group (the owner of `shard` in `config_num`) pulls it.
    pub fn answer_pull(&self, config_num: u64, shard: u32) -> PullAnswer {
        if (shard as usize) < self.state.len()
            && self.config.num == config_num
            && self.state[shard as usize] == ShardState::Offering
        {
            PullAnswer::Data(self.store.export_shard(shard))
        } else {
            PullAnswer::NotReady
        }
    }

    /// The new owner of `shard` in `config_num` installed it.
    pub fn answer_delete(&self, config_num: u64, shard: u32) -> DeleteAnswer {
        if (shard as usize) >= self.state.len() {
            return DeleteAnswer::NotReady;
        }
        if self.config.num > config_num {
            // We could only move past `config_num` once our copy was gone.
            return DeleteAnswer::Done;
        }
        if self.config.num < config_num {
            return DeleteAnswer::NotReady;
        }
        match self.state[shard as usize] {
            ShardState::Offering => {
                DeleteAnswer::Propose(GroupCommand::Delete { config_num, shard })
            }
            _ => DeleteAnswer::Done,
        }
    }

    fn apply_group(&mut self, cmd: GroupCommand) {
        match cmd {
            GroupCommand::Reconfigure(c) => {
                if c.num != self.config.num + 1
                    || !self.settled()
                    || c.shards.len() != self.state.len()
                {
                    return; // a duplicate or a proposal from a stale leader
                }
                for s in 0..self.state.len() {
                    let old = self.config.shards[s];
                    let new = c.shards[s];
                    self.state[s] = match (old == self.gid, new == self.gid) {
                        (true, true) => ShardState::Serving,
                        (true, false) => ShardState::Offering,
                        (false, true) if old == 0 || self.bugs.skip_pull => ShardState::Serving,
                        (false, true) => ShardState::Pulling,
                        (false, false) => ShardState::NotOwned,
                    };
                }
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
                            self.state[s] = ShardState::Installed
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
                if config_num == self.config.num
                    && s < self.state.len()
                    && self.state[s] == ShardState::Offering
                {
                    self.store.drop_shard(shard);
                    self.state[s] = ShardState::NotOwned;
                }
            }
            GroupCommand::InstalledAck { config_num, shard } => {
                let s = shard as usize;
                if config_num == self.config.num
                    && s < self.state.len()
                    && self.state[s] == ShardState::Installed
                {
                    self.state[s] = ShardState::Serving;
                }
            }
        }
    }
}

impl StateMachine for ShardKv {
    type Request = ClientRequest;
    type Reply = ClientReply;

    fn request_id(req: &ClientRequest) -> (ClientId, Seq) {
        (req.client_id, req.seq)
    }

    fn apply(&mut self, _slot: Slot, cmd: &Bytes) -> Option<(ClientId, Seq, ClientReply)> {
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
        // Decided in log order: the same answer on every replica.
        let reply = if self.serves(shard) {
            self.store.apply(&req)
        } else {
            ClientReply::WrongGroup
        };
        Some((req.client_id, req.seq, reply))
    }

    fn snapshot(&self) -> Bytes {
        let mut b = BytesMut::new();
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
        b.put_slice(&self.store.snapshot());
        b.freeze()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        let mut at = 0usize;
        let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
            let end = at
                .checked_add(n)
                .filter(|e| *e <= data.len())
                .ok_or("truncated")?;
            let s = &data[*at..end];
            *at = end;
            Ok(s)
        };
        let u32_at = |at: &mut usize| -> Result<u32, String> {
            Ok(u32::from_le_bytes(
                take(at, 4)?.try_into().map_err(|_| "truncated")?,
            ))
        };
        if take(&mut at, 1)?[0] != SNAPSHOT_VERSION {
            return Err("unknown shardkv snapshot version".into());
        }
        if u32_at(&mut at)? != self.gid {
            return Err("snapshot of another group".into());
        }
        let mut configs = Vec::new();
        for _ in 0..2 {
            let n = u32_at(&mut at)? as usize;
            let body = Bytes::copy_from_slice(take(&mut at, n)?);
            match decode_body(KIND_CONFIG, body) {
                Ok(Message::Config(c)) if c.shards.len() == self.state.len() => configs.push(c),
                _ => return Err("bad configuration in snapshot".into()),
            }
        }
        let n = u32_at(&mut at)? as usize;
        if n != self.state.len() {
            return Err("shard count mismatch".into());
        }
        let mut state = Vec::with_capacity(n);
        for b in take(&mut at, n)? {
            state.push(ShardState::from_u8(*b).ok_or("bad shard state")?);
        }
        let store = KvStore::restore(&data[at..], self.opts).map_err(|e| e.to_string())?;
        self.prev = configs.pop().expect("two configs");
        self.config = configs.pop().expect("two configs");
        self.state = state;
        self.store = store;
        Ok(())
    }

    fn is_read(req: &ClientRequest) -> bool {
        matches!(req.op, Op::Get { .. })
    }

    /// A Get answered from the applied state: refused like a logged one
    /// would be if this group does not serve the key's shard at this point.
    fn read_local(&self, req: &ClientRequest) -> Option<ClientReply> {
        match &req.op {
            Op::Get { key } => Some(if self.serves(self.store.shard_of_key(key)) {
                self.store.read(key)
            } else {
                ClientReply::WrongGroup
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
