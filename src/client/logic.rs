//! The client's pure decisions: which seqs may be acknowledged, how long to
//! back off, and where a request goes (configuration cache plus leader
//! hints).
//!
//! Nothing here touches a socket or a clock, so every rule the engine relies
//! on is unit-tested on its own (see `tests.rs`). The engine asks these
//! types what to do and does the I/O.

use std::collections::VecDeque;
use std::time::Duration;

use synod_wire::{shard_of, Config, GroupId, Seq};

use super::idmap::IdMap;

/// Tracks which of this client's seqs are finished, to compute `ack_seq`.
///
/// `ack_seq` must be a *contiguous* low-water mark (PROTOCOL.md section 7):
/// with a pipeline, seq 5 may finish before seq 3, and acknowledging 5 then
/// would let a server forget the cached reply of 3, which may still be
/// resent. So finished seqs above the first gap wait until the gap closes.
/// A ring of flags, not a set: the session core retires one seq per
/// operation on every driver's hot path.
#[derive(Debug, Default)]
pub struct AckWindow {
    /// Every seq `<= upto` is finished.
    upto: Seq,
    /// `done[i]` says whether seq `upto + 1 + i` is finished. Never starts
    /// with `true` (that seq would have been folded into `upto`).
    done: VecDeque<bool>,
}

impl AckWindow {
    /// Marks `seq` finished: it will never be sent again. Retiring a seq
    /// twice, or one at or below the mark, is a no-op.
    ///
    /// "Finished" includes a request the client gave up on at its deadline.
    /// Acknowledging it is safe because the client never resends it and a
    /// server's session refuses any seq at or below the acknowledged mark
    /// (so a delayed copy cannot execute twice); not acknowledging it would
    /// freeze the mark for the rest of the client's life and pin every later
    /// cached reply on the servers.
    pub fn retire(&mut self, seq: Seq) {
        assert!(seq > 0, "seq 0 is never issued");
        if seq <= self.upto {
            return;
        }
        let index = (seq - self.upto - 1) as usize;
        if index >= self.done.len() {
            self.done.resize(index + 1, false);
        }
        self.done[index] = true;
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.upto += 1;
        }
    }

    /// The `ack_seq` to piggyback on the next request.
    pub fn ack_seq(&self) -> Seq {
        self.upto
    }

    /// Seqs tracked above the mark (finished or not): the window's size.
    pub fn window(&self) -> usize {
        self.done.len()
    }

    /// Finished seqs still waiting for a gap below them to close.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.done.iter().filter(|&&d| d).count()
    }
}

/// First retry delay; doubles per attempt.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(1);
/// Longest retry delay (PROTOCOL.md suggests 1 ms doubling to 1 s).
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long to wait before retry number `attempt` (0 = the first retry).
///
/// Exponential from [`BACKOFF_BASE`] to [`BACKOFF_MAX`], with "equal jitter":
/// the delay is uniform in `[d/2, d]`. Half fixed so a retry never collapses
/// to zero and hammers a busy server; half random so many clients (or many
/// pipelined requests of one client) that failed together spread out.
/// `random` is any 64-bit random number (the caller owns the RNG).
#[cfg(test)]
pub(crate) fn backoff(attempt: u32, random: u64) -> Duration {
    backoff_capped(attempt, random, BACKOFF_MAX)
}

/// `backoff` with another ceiling than [`BACKOFF_MAX`] (the session's
/// [`super::session::SessionOptions::backoff_max`]: the simulator's
/// clients, whose faults last virtual seconds, and `synod-bench` use lower
/// ones).
pub(crate) fn backoff_capped(attempt: u32, random: u64, max: Duration) -> Duration {
    let base_ns = BACKOFF_BASE.as_nanos() as u64;
    let ceiling_ns = (max.as_nanos() as u64).max(base_ns);
    let full_ns = base_ns
        .checked_shl(attempt.min(32))
        .unwrap_or(ceiling_ns)
        .min(ceiling_ns);
    let half_ns = full_ns / 2;
    Duration::from_nanos(half_ns + random % (full_ns - half_ns + 1))
}

/// Where to send a request (the tests' view of [`Router::route_key_ref`]
/// and [`Router::route_master_ref`], which the session uses: they copy no
/// address).
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Send to `addr`, member `index` of group `gid`.
    To {
        gid: GroupId,
        index: usize,
        addr: String,
    },
    /// No usable configuration for this key: fetch the latest first.
    NeedConfig,
}

/// The configuration cache and the leader hint per group.
///
/// Group 0 is the shard master; its "members" are the `--masters` list the
/// client was given, which never changes.
#[derive(Debug)]
pub(crate) struct Router {
    masters: Vec<String>,
    config: Option<Config>,
    /// Index of the member believed to lead each group (group ids are the
    /// masters' numbering, not client input: the cheap hash is fine).
    hints: IdMap<GroupId, usize>,
    /// Members of groups the cached configuration may no longer list, kept
    /// while a two-phase commit still has to reach them (a group holding
    /// a prepared transaction keeps serving until its outcome arrives,
    /// even after it left the latest configuration).
    remembered: IdMap<GroupId, Vec<String>>,
}

impl Router {
    pub(crate) fn new(masters: Vec<String>) -> Router {
        assert!(!masters.is_empty(), "a client needs at least one master");
        Router {
            masters,
            config: None,
            hints: IdMap::default(),
            remembered: IdMap::default(),
        }
    }

    /// A router with no masters and a configuration that never changes
    /// (the simulator's single-group world: one group serves every shard).
    pub(crate) fn fixed(config: Config) -> Router {
        Router {
            masters: Vec::new(),
            config: Some(config),
            hints: IdMap::default(),
            remembered: IdMap::default(),
        }
    }

    /// Whether there are masters to refresh the configuration from.
    pub(crate) fn has_masters(&self) -> bool {
        !self.masters.is_empty()
    }

    pub(crate) fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    /// Caches `config` if it is at least as new as the cached one. Returns
    /// whether it was taken. A configuration never replaces a newer one:
    /// replies may arrive out of order and an old answer (or an explicit
    /// Query of an old number) must not roll routing back.
    pub(crate) fn install(&mut self, config: Config) -> bool {
        let newer = match &self.config {
            Some(c) => config.num >= c.num,
            None => true,
        };
        if newer {
            self.config = Some(config);
        }
        newer
    }

    /// The group we routed `key` to says it does not serve the key's shard:
    /// forget that shard's owner, so every request for the shard waits for
    /// the refreshed configuration instead of hitting the wrong group again.
    /// The rest of the cache stays in use (it is probably right for the
    /// other shards). Installing any configuration of at least the same
    /// number restores the entry.
    pub(crate) fn invalidate_key(&mut self, key: &[u8]) {
        if let Some(config) = &mut self.config {
            if !config.shards.is_empty() {
                let shard = shard_of(key, config.shards.len() as u32) as usize;
                config.shards[shard] = 0;
            }
        }
    }

    /// The master replica to try next.
    #[cfg(test)]
    pub(crate) fn route_master(&self) -> Route {
        match self.route_master_ref() {
            Some((gid, index, addr)) => Route::To {
                gid,
                index,
                addr: addr.to_string(),
            },
            None => Route::NeedConfig,
        }
    }

    /// [`Router::route_master`] as `(0, member index, address)` without
    /// copying the address; `None` is [`Route::NeedConfig`].
    pub(crate) fn route_master_ref(&self) -> Option<(GroupId, usize, &str)> {
        if self.masters.is_empty() {
            return None;
        }
        let index = self.hint(0, self.masters.len());
        Some((0, index, self.masters[index].as_str()))
    }

    /// The member of the group serving `key`'s shard to try next, by the
    /// cached configuration.
    #[cfg(test)]
    pub(crate) fn route_key(&self, key: &[u8]) -> Route {
        match self.route_key_ref(key) {
            Some((gid, index, addr)) => Route::To {
                gid,
                index,
                addr: addr.to_string(),
            },
            None => Route::NeedConfig,
        }
    }

    /// [`Router::route_key`] as `(gid, member index, address)` without
    /// copying the address; `None` is [`Route::NeedConfig`].
    pub(crate) fn route_key_ref(&self, key: &[u8]) -> Option<(GroupId, usize, &str)> {
        let config = self.config.as_ref()?;
        if config.shards.is_empty() {
            return None;
        }
        let shard = shard_of(key, config.shards.len() as u32) as usize;
        let gid = config.shards[shard];
        // gid 0: the shard is not assigned yet (no group has joined).
        if gid == 0 {
            return None;
        }
        let group = config.groups.iter().find(|g| g.gid == gid)?;
        if group.servers.is_empty() {
            return None;
        }
        let index = self.hint(gid, group.servers.len());
        Some((gid, index, group.servers[index].as_str()))
    }

    /// The members of group `gid` (not the masters), from the cached
    /// configuration or else as remembered.
    fn servers(&self, gid: GroupId) -> Option<&[String]> {
        self.config
            .as_ref()
            .and_then(|c| c.groups.iter().find(|g| g.gid == gid))
            .map(|g| &g.servers[..])
            .or_else(|| self.remembered.get(&gid).map(|s| &s[..]))
    }

    /// Keeps `gid`'s members reachable by [`Router::route_gid_ref`] even
    /// once a configuration without the group is installed; `forget` ends
    /// that.
    pub(crate) fn remember(&mut self, gid: GroupId) {
        if let Some(servers) = self.servers(gid).map(<[String]>::to_vec) {
            self.remembered.insert(gid, servers);
        }
    }

    /// Drops what [`Router::remember`] kept.
    pub(crate) fn forget(&mut self, gid: GroupId) {
        self.remembered.remove(&gid);
    }

    /// The member of group `gid` to try next, whatever shards it serves.
    pub(crate) fn route_gid_ref(&self, gid: GroupId) -> Option<(GroupId, usize, &str)> {
        let servers = self.servers(gid).filter(|s| !s.is_empty())?;
        let index = self.hint(gid, servers.len());
        Some((gid, index, servers[index].as_str()))
    }

    /// Number of members of group `gid` (the masters for gid 0), 0 if unknown.
    pub(crate) fn member_count(&self, gid: GroupId) -> usize {
        if gid == 0 {
            return self.masters.len();
        }
        self.servers(gid).map_or(0, <[String]>::len)
    }

    fn hint(&self, gid: GroupId, members: usize) -> usize {
        // A hint learned under an older member list may be out of range.
        let hint = self.hints.get(&gid).copied().unwrap_or(0) % members.max(1);
        self.skip_removed(gid, hint)
    }

    /// The first index from `i` on (cyclically) that the cached
    /// configuration does not mark removed from `gid` (a replaced server
    /// keeps its position in the list, and is most likely dead).
    fn skip_removed(&self, gid: GroupId, i: usize) -> usize {
        let Some(g) = self
            .config
            .as_ref()
            .and_then(|c| c.groups.iter().find(|g| g.gid == gid))
            .filter(|g| g.members() != 0)
        else {
            return i;
        };
        let n = g.servers.len();
        (0..n)
            .map(|k| (i + k) % n)
            .find(|&j| g.is_member(j))
            .unwrap_or(i)
    }

    /// Member `asked` of `gid` answered `NotLeader { leader }`.
    pub(crate) fn on_not_leader(&mut self, gid: GroupId, asked: usize, leader: Option<u32>) {
        let members = self.member_count(gid);
        if members == 0 {
            return;
        }
        match leader {
            // A replica naming itself, or a member that does not exist, is
            // no information: move on rather than loop on it.
            Some(l) if (l as usize) < members && l as usize != asked => {
                self.hints.insert(gid, l as usize);
            }
            _ => self.on_failure(gid, asked),
        }
    }

    /// Member `asked` of `gid` failed (unreachable, connection lost, no
    /// answer in time): try the next member in turn.
    ///
    /// Only moves the hint if it still points at `asked`, so a burst of
    /// pipelined requests that all fail on one replica advances the hint
    /// once instead of skipping past healthy members.
    pub(crate) fn on_failure(&mut self, gid: GroupId, asked: usize) {
        let members = self.member_count(gid);
        if members == 0 {
            return;
        }
        if self.hint(gid, members) == asked % members {
            let next = self.skip_removed(gid, (asked + 1) % members);
            self.hints.insert(gid, next);
        }
    }
}

/// A client id older than this is replaced when nothing is in flight under
/// it: well below the servers' session TTL (10 minutes by default), so the
/// id stays newer than those of sessions dropped for inactivity, which a
/// shard refuses to reopen (PROTOCOL.md 7), and its own sessions do not
/// expire while it is used.
pub(crate) const CLIENT_ID_RENEW_AFTER: Duration = Duration::from_secs(120);

/// A fresh client id: time-ordered (the current Unix second above 32 random
/// bits, PROTOCOL.md 7), so it is newer than any id whose session a server
/// dropped before now.
pub(crate) fn fresh_client_id() -> u64 {
    synod_wire::client_id_at(synod_wire::unix_now_ms(), random_client_id())
}

/// 64 random bits: 8 bytes of `/dev/urandom`, or (where that is missing)
/// the clock, the process id and a stack address run through SplitMix64,
/// so two clients started together still differ.
pub fn random_client_id() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let addr = &local as *const u8 as u64;
    splitmix64(nanos ^ u64::from(std::process::id()).rotate_left(32) ^ addr)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
