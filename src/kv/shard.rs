//! One shard's state: its key/value data and its clients' at-most-once
//! sessions, kept together because a shard moves between groups as a unit
//! (a client whose shard moves must not see its write applied twice by the new
//! owner).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use synod_wire::{ClientId, ClientReply, ClientRequest, Op, Seq};

use super::MAX_VALUE_BYTES;

/// Reply to a request whose `seq` the client has already acknowledged: the
/// client no longer waits for it, so this only ever reaches a confused or
/// replaying client.
pub(crate) const STALE_REASON: &str = "stale request: already acknowledged";

/// Reply to a Put or Append whose resulting value would exceed
/// [`MAX_VALUE_BYTES`].
pub(crate) const TOO_LARGE_REASON: &str = "value too large";

/// At-most-once state of one client in one shard.
///
/// A single "last applied seq" is not enough: clients pipeline, so requests
/// 5, 6 and 7 may be in flight at once and 6 may be applied before 5. Instead
/// the client tells us a contiguous low-water mark (`ack_seq`: every request
/// up to it has its reply) and we cache the replies of the writes above it.
///
/// The session itself (client id + `acked`, about 16 bytes plus map overhead)
/// is kept even when `replies` is empty: forgetting `acked` would let a
/// delayed duplicate of an acknowledged write re-apply. Sessions are bounded
/// by the number of distinct clients that ever wrote to the shard; expiring
/// idle sessions (which needs a deterministic notion of time in the log) is
/// future work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Session {
    /// Every request of this client with `seq <= acked` has been answered and
    /// the client said so; such requests are never applied again.
    pub(crate) acked: Seq,
    /// Replies of applied writes with `seq > acked`, returned verbatim to a
    /// duplicate. Memory is O(outstanding unacknowledged writes), which the
    /// client's pipeline window bounds.
    pub(crate) replies: BTreeMap<Seq, ClientReply>,
}

impl Session {
    /// Raises the watermark to `ack_seq` (never lowers it: acks may arrive
    /// out of order) and frees every cached reply at or below it.
    pub(crate) fn acknowledge(&mut self, ack_seq: Seq) {
        self.acked = self.acked.max(ack_seq);
        // Pop from the front instead of `split_off(ack_seq + 1)`, which would
        // overflow at `Seq::MAX`; the cost is O(freed * log n).
        while let Some(entry) = self.replies.first_entry() {
            if *entry.key() > self.acked {
                break;
            }
            entry.remove();
        }
        self.assert_invariants();
    }

    /// The reply owed to a request that must not be applied, or `None` if
    /// `seq` is new.
    fn dedup(&self, seq: Seq) -> Option<ClientReply> {
        if seq <= self.acked {
            return Some(ClientReply::Error {
                reason: STALE_REASON.to_string(),
            });
        }
        self.replies.get(&seq).cloned()
    }

    /// Folds `other` (the same client's session from another replica group)
    /// into this one. Taking the max watermark is safe because each side's
    /// `acked` was told to it by the client itself; on a reply present on
    /// both sides the incoming one wins (they can only differ if the client
    /// reused a seq, which is its bug).
    pub(crate) fn merge(&mut self, other: Session) {
        self.replies.extend(other.replies);
        self.acknowledge(other.acked);
    }

    pub(crate) fn assert_invariants(&self) {
        if let Some((&lowest, _)) = self.replies.first_key_value() {
            assert!(
                lowest > self.acked,
                "cached reply {lowest} at or below acked {}",
                self.acked
            );
        }
    }
}

/// The data and sessions of one shard.
///
/// `HashMap`s for speed; their iteration order is never observed (snapshots
/// sort, statistics only sum), so the per-process random hash seed cannot
/// make replicas diverge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shard {
    /// Values are `Vec<u8>` rather than `Bytes` so an Append is amortized
    /// O(len appended) (a `Bytes` would have to be copied whole on every
    /// append); the price is a copy on every Get, which is bounded by
    /// [`MAX_VALUE_BYTES`] and is the cheaper side for append-heavy loads.
    /// Keys and values are owned copies, never slices of a frame buffer.
    pub(crate) data: HashMap<Box<[u8]>, Vec<u8>>,
    pub(crate) sessions: HashMap<ClientId, Session>,
}

impl Shard {
    /// Applies `req` at most once (unless `skip_dedup`, the planted bug) and
    /// returns the reply.
    pub(crate) fn apply(&mut self, req: &ClientRequest, skip_dedup: bool) -> ClientReply {
        if let Op::Get { key } = &req.op {
            return self.apply_get(req, key);
        }
        let session = self.sessions.entry(req.client_id).or_default();
        session.acknowledge(req.ack_seq);
        if !skip_dedup {
            if let Some(reply) = session.dedup(req.seq) {
                return reply;
            }
        }
        let reply = match &req.op {
            Op::Put { key, value } => write(&mut self.data, key, value, false),
            Op::Append { key, value } => write(&mut self.data, key, value, true),
            Op::Delete { key } => delete(&mut self.data, key),
            Op::Get { .. } => unreachable!("Gets returned above"),
        };
        // Under the planted bug a stale request is re-applied; still never
        // cache at or below `acked`, so the snapshot stays canonical and the
        // bug shows up as wrong data, not as a failed restore.
        if req.seq > session.acked {
            session.replies.insert(req.seq, reply.clone());
        }
        reply
    }

    /// Gets are not cached (re-executing a retried Get is still
    /// linearizable, and caching values would cost memory) and do not create
    /// a session; they do carry an ack, which frees an existing session's
    /// replies.
    fn apply_get(&mut self, req: &ClientRequest, key: &[u8]) -> ClientReply {
        if let Some(session) = self.sessions.get_mut(&req.client_id) {
            session.acknowledge(req.ack_seq);
            // A stale Get gets the same answer as a stale write, so the
            // client-visible rule is one rule. (`skip_dedup` cannot change a
            // Get's effect, so it is not consulted.)
            if let Some(reply) = session.dedup(req.seq) {
                return reply;
            }
        }
        self.read(key)
    }

    pub(crate) fn read(&self, key: &[u8]) -> ClientReply {
        match self.data.get(key) {
            Some(value) => ClientReply::Ok(Bytes::copy_from_slice(value)),
            None => ClientReply::NoKey,
        }
    }

    pub(crate) fn assert_invariants(&self) {
        for session in self.sessions.values() {
            session.assert_invariants();
        }
        for value in self.data.values() {
            assert!(value.len() <= MAX_VALUE_BYTES);
        }
    }

    /// Imports a shard exported by the group that owned it. The data is
    /// replaced, not merged: the exporter was the shard's only owner, so any
    /// local data for it is stale. Sessions are merged per client, so a
    /// client that talked to both groups keeps the stronger guarantee.
    pub(crate) fn merge_from(&mut self, incoming: Shard) {
        self.data = incoming.data;
        for (client, session) in incoming.sessions {
            self.sessions.entry(client).or_default().merge(session);
        }
        self.assert_invariants();
    }
}

/// Performs a Delete. The reply carries the decimal count of keys removed
/// (`"1"` or `"0"`, PROTOCOL.md 5.1) so a Redis-style DEL can answer without
/// a second read; it is cached like any write's reply, so a retried Delete
/// gets the original count rather than a misleading `"0"`.
fn delete(data: &mut HashMap<Box<[u8]>, Vec<u8>>, key: &[u8]) -> ClientReply {
    let removed: &'static [u8] = if data.remove(key).is_some() {
        b"1"
    } else {
        b"0"
    };
    ClientReply::Ok(Bytes::from_static(removed))
}

/// Performs a Put (`append == false`) or Append. A result larger than
/// [`MAX_VALUE_BYTES`] is refused without changing anything; the refusal is
/// itself a deterministic outcome, cached like any reply.
fn write(
    data: &mut HashMap<Box<[u8]>, Vec<u8>>,
    key: &[u8],
    value: &[u8],
    append: bool,
) -> ClientReply {
    let too_large = || ClientReply::Error {
        reason: TOO_LARGE_REASON.to_string(),
    };
    match data.get_mut(key) {
        Some(existing) if append => {
            if existing.len().saturating_add(value.len()) > MAX_VALUE_BYTES {
                return too_large();
            }
            existing.extend_from_slice(value);
        }
        Some(existing) => {
            if value.len() > MAX_VALUE_BYTES {
                return too_large();
            }
            // A fresh exact-size buffer, so a shrinking Put frees memory.
            *existing = value.to_vec();
        }
        None => {
            if value.len() > MAX_VALUE_BYTES {
                return too_large();
            }
            data.insert(Box::from(key), value.to_vec());
        }
    }
    ClientReply::Ok(Bytes::new())
}
