//! One shard's state: its key/value data and its clients' at-most-once
//! sessions, kept together because a shard moves between groups as a unit
//! (a client whose shard moves must not see its write applied twice by the new
//! owner).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;

use bytes::Bytes;
use synod_wire::{
    client_id_time_ms, encode_scan_page, format_float, glob_match, scan_examine_limit, ClientId,
    ClientReply, ClientRequest, ExpireCond, Expiry, Op, PutCond, ScanPage, Seq,
    SCAN_PAGE_BYTES_MAX,
};

use super::compact::{Key, Value};
use super::{SessionRules, CLIENT_AHEAD_MS_MAX, VALUE_BYTES_MAX};

/// Reply to a request whose `seq` the client has already acknowledged: the
/// client no longer waits for it, so this only ever reaches a confused or
/// replaying client.
pub(crate) const STALE_REASON: &str = "stale request: already acknowledged";
/// The reply to a request whose `seq` this client already used for a
/// different request (PROTOCOL.md 7): refused, nothing applied.
pub(crate) const REUSED_SEQ_REASON: &str = "seq already used for a different request";

/// Reply to a Put or Append whose resulting value would exceed
/// [`VALUE_BYTES_MAX`].
pub(crate) const TOO_LARGE_REASON: &str = "value too large";

/// At-most-once state of one client in one shard.
///
/// A single "last applied seq" is not enough: clients pipeline, so requests
/// 5, 6 and 7 may be in flight at once and 6 may be applied before 5. Instead
/// the client tells us a contiguous low-water mark (`ack_seq`: every request
/// up to it has its reply) and we cache the replies of the writes above it.
///
/// The session itself (client id + `acked`) is kept even when `replies` is
/// empty: forgetting `acked` would let a delayed duplicate of an
/// acknowledged write re-apply. A session is dropped only by expiry (idle
/// for the TTL in log time), by the per-shard cap, or with its shard; then
/// the shard's `floor` is raised to cover its client id, which is what keeps
/// a delayed duplicate out (see [`may_open`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Session {
    /// Every request of this client with `seq <= acked` has been answered and
    /// the client said so; such requests are never applied again.
    pub(crate) acked: Seq,
    /// Replies of applied writes with `seq > acked`, returned verbatim to a
    /// duplicate. Memory is O(outstanding unacknowledged writes), which the
    /// client's pipeline window bounds.
    pub(crate) replies: Replies,
    /// Log time (ms) of the client's last write through the log in this
    /// shard: what expiry and the cap's least-recently-active order use.
    pub(crate) last_ms: u64,
    /// The time this session is filed under in its shard's activity order
    /// ([`Shard::lru`]): at or below `last_ms`, brought up to it only when
    /// the order is consulted (not on every write). Never encoded.
    pub(crate) lru_ms: u64,
}

impl PartialEq for Session {
    /// The replicated state only: where the session is filed in the
    /// activity order depends on when the order was last consulted, which
    /// a replica restored from a snapshot did not see.
    fn eq(&self, other: &Session) -> bool {
        (self.acked, &self.replies, self.last_ms) == (other.acked, &other.replies, other.last_ms)
    }
}

impl Eq for Session {}

/// A session's cached replies, by seq ascending. A short vector rather than
/// a map: a client has a handful of writes in flight per shard (usually
/// one), a write adds its reply at the end and a later ack removes it from
/// the front, and a vector keeps its buffer across that instead of
/// allocating and freeing a B-tree leaf for every write (which showed in
/// the put path's profile).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Replies(Vec<(Seq, Cached)>);

impl Replies {
    /// A buffer kept across acks up to this many replies; a larger one (a
    /// burst of pipelined writes) is freed once acknowledged.
    const KEEP: usize = 8;

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    fn position(&self, seq: Seq) -> Result<usize, usize> {
        self.0.binary_search_by_key(&seq, |(s, _)| *s)
    }

    pub(crate) fn get(&self, seq: &Seq) -> Option<&Cached> {
        self.position(*seq).ok().map(|i| &self.0[i].1)
    }

    /// Caches `cached` for `seq` (replacing one cached for it already).
    pub(crate) fn insert(&mut self, seq: Seq, cached: Cached) {
        match self.0.last() {
            Some((last, _)) if *last >= seq => match self.position(seq) {
                Ok(i) => self.0[i].1 = cached,
                Err(i) => self.0.insert(i, (seq, cached)),
            },
            _ => self.0.push((seq, cached)),
        }
    }

    pub(crate) fn first_seq(&self) -> Option<Seq> {
        self.0.first().map(|(s, _)| *s)
    }

    pub(crate) fn last_seq(&self) -> Option<Seq> {
        self.0.last().map(|(s, _)| *s)
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Seq> {
        self.0.iter().map(|(s, _)| s)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Cached> {
        self.0.iter().map(|(_, c)| c)
    }

    /// Frees every reply at or below `acked`.
    fn release_through(&mut self, acked: Seq) {
        let n = self.0.partition_point(|(s, _)| *s <= acked);
        if n > 0 {
            self.0.drain(..n);
            if self.0.is_empty() && self.0.capacity() > Self::KEEP {
                self.0 = Vec::new();
            }
        }
    }
}

impl<'a> IntoIterator for &'a Replies {
    type Item = &'a (Seq, Cached);
    type IntoIter = std::slice::Iter<'a, (Seq, Cached)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Extend<(Seq, Cached)> for Replies {
    fn extend<I: IntoIterator<Item = (Seq, Cached)>>(&mut self, iter: I) {
        for (seq, cached) in iter {
            self.insert(seq, cached);
        }
    }
}

impl IntoIterator for Replies {
    type Item = (Seq, Cached);
    type IntoIter = std::vec::IntoIter<(Seq, Cached)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A cached reply and the print of the request it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cached {
    pub(crate) reply: ClientReply,
    /// [`synod_wire::request_print`] of the request; `None` when restored
    /// from a snapshot or shard written before prints were kept (then a
    /// duplicate is answered without the check).
    pub(crate) print: Option<u32>,
}

impl Session {
    /// Raises the watermark to `ack_seq` (never lowers it: acks may arrive
    /// out of order) and frees every cached reply at or below it.
    pub(crate) fn acknowledge(&mut self, ack_seq: Seq) {
        self.acked = self.acked.max(ack_seq);
        self.replies.release_through(self.acked);
        self.assert_invariants();
    }

    /// The reply owed to a request that must not be applied, or `None` if
    /// `seq` is new: a stale seq is refused, a duplicate gets its cached
    /// reply, and a seq reused with a different request (`print`) is
    /// refused rather than answered with another request's result.
    fn dedup(&self, seq: Seq, print: u32) -> Option<ClientReply> {
        if seq <= self.acked {
            return Some(ClientReply::Error {
                reason: STALE_REASON.to_string(),
            });
        }
        let cached = self.replies.get(&seq)?;
        if cached.print.is_some_and(|p| p != print) {
            return Some(ClientReply::Error {
                reason: REUSED_SEQ_REASON.to_string(),
            });
        }
        Some(cached.reply.clone())
    }

    /// Folds `other` (the same client's session from another replica group)
    /// into this one. Taking the max watermark is safe because each side's
    /// `acked` was told to it by the client itself; on a reply present on
    /// both sides the incoming one wins (they can only differ if the client
    /// reused a seq, which is its bug).
    pub(crate) fn merge(&mut self, other: Session) {
        self.last_ms = self.last_ms.max(other.last_ms);
        self.replies.extend(other.replies);
        self.acknowledge(other.acked);
    }

    pub(crate) fn assert_invariants(&self) {
        if let Some(lowest) = self.replies.first_seq() {
            assert!(
                lowest > self.acked,
                "cached reply {lowest} at or below acked {}",
                self.acked
            );
        }
    }
}

/// One key's value and version: the store's revision at the write that
/// last changed it (like etcd's mod revision; never 0 for a present key,
/// and a key without an entry reads as version 0). Transactions compare on
/// it (`synod_wire::Compare`), so it moves with the shard and is in every
/// snapshot and migration chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    /// One word (see [`Value`]): with the version and expiry a B-tree slot
    /// is 40 bytes with the key, where a `Vec` made it 56 (issue 15).
    pub(crate) value: Value,
    pub(crate) version: u64,
    /// Absolute log time (ms) at which the key expires, 0 for never. A key
    /// whose time has come (`expires_ms <= log time`) reads as absent at
    /// once and is removed at its next write or by the background pass.
    pub(crate) expires_ms: u64,
}

impl Entry {
    /// A fresh entry without expiry.
    fn new(value: &[u8], version: u64) -> Entry {
        Entry {
            value: Value::from_slice(value),
            version,
            expires_ms: 0,
        }
    }

    /// Has the key expired at log time `now`?
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.expires_ms != 0 && self.expires_ms <= now
    }
}

/// One shard's keys and values, ordered bytewise by key: an ordered map so
/// that a scan resumes "after key k" in `O(log n)` and walks only the keys
/// it returns (see ARCHITECTURE.md, "SCAN across shards"), where a hash
/// map would have to sort or walk the whole shard on every page.
///
/// It also carries a snapshot capture in progress ([`Capture`]): while one
/// runs, every change to a key the capture has not serialized yet first
/// saves the key's entry as it was (copy-on-write at key granularity), so
/// the snapshot can be serialized a slice per loop turn and still be the
/// state of one instant. Mutation goes only through the methods below
/// (there is no `DerefMut`), so no write can skip that step.
#[derive(Debug, Default)]
pub(crate) struct Data {
    map: BTreeMap<Key, Entry>,
    capture: Option<Box<Capture>>,
}

/// A snapshot capture of one shard's data: every key up to `done` has been
/// serialized; `pre` holds, for each key after `done` changed since the
/// capture began, its entry at that instant (`None`: absent then).
#[derive(Debug, Default)]
struct Capture {
    done: Option<Key>,
    pre: BTreeMap<Key, Option<Entry>>,
}

impl Capture {
    /// Has `key` still to be serialized?
    fn pending(&self, key: &[u8]) -> bool {
        self.done.as_deref().is_none_or(|d| key > d)
    }
}

impl Clone for Data {
    /// A copy of the data; a capture in progress stays with the original.
    fn clone(&self) -> Data {
        Data {
            map: self.map.clone(),
            capture: None,
        }
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.map == other.map
    }
}

impl Eq for Data {}

impl std::ops::Deref for Data {
    type Target = BTreeMap<Key, Entry>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl FromIterator<(Key, Entry)> for Data {
    fn from_iter<I: IntoIterator<Item = (Key, Entry)>>(iter: I) -> Data {
        Data {
            map: iter.into_iter().collect(),
            capture: None,
        }
    }
}

impl Data {
    pub(crate) fn new() -> Data {
        Data::default()
    }

    /// Before `key` changes: if a capture still has to serialize it and has
    /// not saved it yet, save its entry as it is now.
    fn save(&mut self, key: &[u8]) {
        if let Some(c) = self.capture.as_deref_mut() {
            if c.pending(key) && !c.pre.contains_key(key) {
                c.pre.insert(Key::from(key), self.map.get(key).cloned());
            }
        }
    }

    pub(crate) fn insert(&mut self, key: Key, entry: Entry) -> Option<Entry> {
        self.save(&key);
        self.map.insert(key, entry)
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.save(key);
        self.map.remove(key)
    }

    /// The entry to change (saved first for a capture, even if the caller
    /// ends up not changing it).
    pub(crate) fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        // Only a capture costs the second lookup: without one (nearly
        // always) a write to an existing key is one map lookup, as before.
        if self.capture.is_some() && self.map.contains_key(key) {
            self.save(key);
        }
        self.map.get_mut(key)
    }

    /// The entry of `key`, inserted by `f` if absent.
    pub(crate) fn entry_or_insert_with(
        &mut self,
        key: &[u8],
        f: impl FnOnce() -> Entry,
    ) -> &mut Entry {
        self.save(key);
        self.map.entry(Key::from(key)).or_insert_with(f)
    }

    /// Removes every key. A capture in progress keeps what it still needs.
    pub(crate) fn clear(&mut self) {
        self.replace(BTreeMap::new());
    }

    /// Replaces every key with `map`'s. A capture in progress first takes
    /// the entries it has not serialized yet (moved, not copied: O(keys
    /// left), as the replacement is anyway) and notes the new keys as
    /// absent at its instant.
    pub(crate) fn replace(&mut self, map: BTreeMap<Key, Entry>) {
        let old = std::mem::replace(&mut self.map, map);
        if let Some(c) = self.capture.as_deref_mut() {
            for (key, entry) in old {
                if c.pending(&key) && !c.pre.contains_key(&key) {
                    c.pre.insert(key, Some(entry));
                }
            }
            for key in self.map.keys() {
                if c.pending(key) && !c.pre.contains_key(key) {
                    c.pre.insert(key.clone(), None);
                }
            }
        }
    }

    /// The whole map, for a shard being moved in.
    pub(crate) fn into_map(self) -> BTreeMap<Key, Entry> {
        self.map
    }

    /// Starts capturing the data as it is now (see [`Capture`]).
    pub(crate) fn begin_capture(&mut self) {
        self.capture = Some(Box::default());
    }

    /// Ends a capture in progress, if any.
    pub(crate) fn end_capture(&mut self) {
        self.capture = None;
    }

    /// Serializes the captured data's next entries in key order with
    /// `encode` until about `budget` bytes have been written to `out` or
    /// none is left; returns how many entries it wrote and whether the
    /// capture is complete (then it ends: no more saving on writes).
    pub(crate) fn capture_next(
        &mut self,
        out: &mut Vec<u8>,
        budget: usize,
        encode: impl Fn(&mut Vec<u8>, &[u8], &Entry),
    ) -> (usize, bool) {
        use std::ops::Bound::{Excluded, Unbounded};
        let Data { map, capture } = self;
        let c = capture.as_deref_mut().expect("a capture in progress");
        let from = out.len();
        let mut written = 0;
        let mut last: Option<&[u8]> = None;
        let mut complete = false;
        {
            let lo = match c.done.as_deref() {
                Some(d) => Excluded(d),
                None => Unbounded,
            };
            let mut now = map.range::<[u8], _>((lo, Unbounded)).peekable();
            let mut then = c.pre.range::<[u8], _>((lo, Unbounded)).peekable();
            loop {
                if out.len() - from >= budget {
                    break;
                }
                // The next key of the captured state: a saved one wins over
                // the live map (which may have changed it since).
                let (key, entry) = match (now.peek(), then.peek()) {
                    (None, None) => {
                        complete = true;
                        break;
                    }
                    (Some((k, _)), Some((p, _))) if p <= k => {
                        if p == k {
                            now.next();
                        }
                        let (p, e) = then.next().expect("peeked");
                        (&p[..], e.as_ref())
                    }
                    (None, Some(_)) => {
                        let (p, e) = then.next().expect("peeked");
                        (&p[..], e.as_ref())
                    }
                    (Some(_), _) => {
                        let (k, e) = now.next().expect("peeked");
                        (&k[..], Some(e))
                    }
                };
                last = Some(key);
                if let Some(entry) = entry {
                    encode(out, key, entry);
                    written += 1;
                }
            }
        }
        if complete {
            *capture = None;
            return (written, true);
        }
        if let Some(last) = last {
            c.done = Some(Key::from(last));
            // Saved entries behind the cursor are serialized: free them.
            while c
                .pre
                .first_key_value()
                .is_some_and(|(k, _)| c.done.as_deref().is_some_and(|d| &k[..] <= d))
            {
                c.pre.pop_first();
            }
        }
        (written, false)
    }
}

/// `(expires_ms, key)` of every entry of `data` that has an expiry.
pub(crate) fn deadlines_of(data: &Data) -> BTreeSet<(u64, Box<[u8]>)> {
    data.iter()
        .filter(|(_, e)| e.expires_ms != 0)
        .map(|(k, e)| (e.expires_ms, Box::from(k)))
        .collect()
}

/// One shard's at-most-once sessions, by client id.
pub(crate) type Sessions = HashMap<ClientId, Session, ClientIdHash>;

/// The hasher of [`Sessions`]: the id xored with a per-process random
/// seed, then MurmurHash3's 64-bit finalizer (shifts and two multiplies:
/// every input bit reaches every output bit). SipHash, the std default,
/// was 2.5-4% of a loaded leader's CPU for this one lookup per write
/// (`perf/results/encode-2026-11-29.md`,
/// `flame-2026-11-30-new-put-top.txt`). Client ids are chosen by clients,
/// so the loop's own-id hash (`client::idmap`, a plain multiplication)
/// will not do: a product's low bits, hashbrown's bucket index, depend only
/// on the operands' low bits, so ids sharing them would share a bucket
/// whatever the seed (one folded multiply was not enough either: ids that
/// differ only in their high half filled under half the buckets for some
/// seeds). With a secret seed in front of a full-avalanche mix, which ids
/// collide is unknown to a client. Iteration order, which the seed
/// changes, is never observed (see [`Shard`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientIdHash {
    seed: u64,
}

impl ClientIdHash {
    #[cfg(test)]
    pub(crate) fn with_seed(seed: u64) -> ClientIdHash {
        ClientIdHash { seed }
    }
}

impl Default for ClientIdHash {
    fn default() -> ClientIdHash {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        // std's per-process random keys, through SipHash, once.
        let seed =
            *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(1u64));
        ClientIdHash { seed }
    }
}

impl BuildHasher for ClientIdHash {
    type Hasher = ClientIdHasher;

    fn build_hasher(&self) -> ClientIdHasher {
        ClientIdHasher(self.seed)
    }
}

/// See [`ClientIdHash`].
pub(crate) struct ClientIdHasher(u64);

impl Hasher for ClientIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by the u64 ids; correct for anything else.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let mut k = self.0 ^ n;
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^= k >> 33;
        self.0 = k;
    }
}

/// The data and sessions of one shard.
///
/// Sessions are in a `HashMap` for speed; its iteration order is never
/// observed (snapshots sort, statistics only sum), so the per-process
/// random hash seed cannot make replicas diverge. The data is ordered
/// ([`Data`]) for scans.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shard {
    /// Values are owned growable buffers ([`Value`], a one-word `Vec<u8>`)
    /// rather than `Bytes` so an Append is amortized O(len appended) (a
    /// `Bytes` would have to be copied whole on every append); the price is
    /// a copy on every Get, which is bounded by [`VALUE_BYTES_MAX`] and is
    /// the cheaper side for append-heavy loads. Keys and values are owned
    /// copies, never slices of a frame buffer (a slice would keep the whole
    /// receive buffer or log batch it came from alive).
    pub(crate) data: Data,
    pub(crate) sessions: Sessions,
    /// `(lru_ms, client)` of every session: the order expiry and the cap
    /// drop sessions in, least recently active first. Filed lazily: a write
    /// only raises its session's `last_ms`, and the order moves a session
    /// up to it when the session comes first ([`Shard::least_active`]), so
    /// a write costs no re-filing. Whatever was re-filed, the session found
    /// least active is the one with the least `(last_ms, client)` (every
    /// session is filed at or below its `last_ms`), so every replica drops
    /// the same sessions. Derived from `sessions` (never encoded, not
    /// compared).
    pub(crate) lru: BTreeSet<(u64, ClientId)>,
    /// The expiry watermark: every client id whose session in this shard
    /// was dropped (expired or evicted) is at or below it, so a client id at
    /// or below it may not open a session here. Only raised.
    pub(crate) floor: ClientId,
    /// `(expires_ms, key)` of every key with an expiry, soonest first: the
    /// order the background pass removes expired keys in. Derived from
    /// `data` (never encoded) and ordered by value, so every replica
    /// removes the same keys.
    pub(crate) deadlines: BTreeSet<(u64, Box<[u8]>)>,
    /// Keys locked by a prepared cross-group transaction, and which.
    /// Derived from the store's prepared records (never encoded).
    pub(crate) locks: BTreeMap<Box<[u8]>, synod_wire::TxnId>,
}

/// May a session be opened here for `client` at log time `now_ms`? Not if
/// its id is at or below the floor (it may be a client whose session was
/// dropped: a delayed duplicate of its write must not apply again), nor if
/// the id claims a creation time more than [`CLIENT_AHEAD_MS_MAX`] ahead of
/// the log (so that no id can later push the floor far into the future and
/// lock every honest client out).
pub(crate) fn may_open(floor: ClientId, client: ClientId, now_ms: u64) -> bool {
    client > floor && plausible(client, now_ms)
}

fn plausible(client: ClientId, now_ms: u64) -> bool {
    client_id_time_ms(client) <= now_ms.saturating_add(CLIENT_AHEAD_MS_MAX)
}

impl PartialEq for Shard {
    /// The replicated state: the derived indexes follow from it (and the
    /// activity order's filing from when it was last consulted).
    fn eq(&self, other: &Shard) -> bool {
        self.data == other.data
            && self.sessions == other.sessions
            && self.floor == other.floor
            && self.deadlines == other.deadlines
            && self.locks == other.locks
    }
}

impl Eq for Shard {}

/// The activity order of `sessions`, each filed at its `last_ms`.
pub(crate) fn file_sessions(sessions: &mut Sessions) -> BTreeSet<(u64, ClientId)> {
    sessions
        .iter_mut()
        .map(|(c, s)| {
            s.lru_ms = s.last_ms;
            (s.last_ms, *c)
        })
        .collect()
}

impl Shard {
    /// Applies `req` at most once (unless `skip_dedup`, the planted bug) and
    /// returns the reply, and whether the operation ran (so used
    /// `rules.version`). A write of a client without a session here opens
    /// one only if [`may_open`] allows it, and is refused with
    /// `SessionExpired` (not applied, nothing cached) otherwise.
    pub(crate) fn apply(
        &mut self,
        req: &ClientRequest,
        print: u32,
        skip_dedup: bool,
        rules: &SessionRules,
    ) -> (ClientReply, bool) {
        if req.op.is_read() {
            return (self.apply_get(req, print, rules.log_time_ms), false);
        }
        if let Err(reply) = self.begin_write(req, print, skip_dedup, rules) {
            return (reply, false);
        }
        let reply = if let Op::Flush { .. } = req.op {
            self.flush(rules.log_time_ms)
        } else {
            self.apply_data_op(&req.op, rules)
        };
        self.record_reply(req, print, &reply);
        (reply, true)
    }

    /// Runs one data operation on this shard at `rules`' log time and
    /// version: an expired key is removed first (so the operation sees it
    /// absent), and the deadline index follows the key's new expiry.
    ///
    /// Every replica runs this for every write, so it looks the key up as
    /// few times as it can: once for the purge and the old expiry
    /// together, and afterwards only if the key had an expiry or the
    /// operation can give it one (a plain SET of a key without expiry
    /// costs one lookup here, as before expiry existed).
    pub(crate) fn apply_data_op(&mut self, op: &Op, rules: &SessionRules) -> ClientReply {
        let key = op.key();
        let now = rules.log_time_ms;
        // No deadline in the shard: no key of it has an expiry, so the
        // lookup (the put path's first walk of the shard's tree, a few
        // cache misses) can be skipped.
        let expiry = if self.deadlines.is_empty() {
            None
        } else {
            self.data.get(&key[..]).map(|e| e.expires_ms)
        };
        let before = match expiry {
            Some(at) if at != 0 && at <= now => {
                // Expired: the operation sees the key absent.
                self.data.remove(&key[..]);
                self.deadlines.remove(&(at, Box::from(&key[..])));
                0
            }
            Some(at) => at,
            None => 0,
        };
        let reply = apply_op(&mut self.data, op, rules.version, now);
        let after = if before == 0 && !may_set_expiry(op) {
            0
        } else {
            self.expiry_of(key)
        };
        self.reindex(key, before, after);
        reply
    }

    /// The expiry of `key` (0: none or absent).
    pub(crate) fn expiry_of(&self, key: &[u8]) -> u64 {
        self.data.get(key).map_or(0, |e| e.expires_ms)
    }

    /// Moves `key` in the deadline index from `before` to `after` (0: not
    /// in it).
    pub(crate) fn reindex(&mut self, key: &[u8], before: u64, after: u64) {
        if before == after {
            return;
        }
        if before != 0 {
            self.deadlines.remove(&(before, Box::from(key)));
        }
        if after != 0 {
            self.deadlines.insert((after, Box::from(key)));
        }
    }

    /// Removes `key` if it has expired at log time `now`.
    pub(crate) fn purge_if_expired(&mut self, key: &[u8], now: u64) {
        if self.data.get(key).is_some_and(|e| e.expired(now)) {
            let entry = self.data.remove(key).expect("present above");
            self.deadlines.remove(&(entry.expires_ms, Box::from(key)));
        }
    }

    /// Removes up to `budget` keys expired at log time `now`, soonest
    /// first. Returns how many were removed.
    pub(crate) fn expire_keys(&mut self, now: u64, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget {
            match self.deadlines.first() {
                Some((at, _)) if *at <= now => {
                    let (at, key) = self.deadlines.pop_first().expect("first above");
                    let entry = self.data.remove(&key).expect("indexed key present");
                    assert_eq!(entry.expires_ms, at, "deadline index out of date");
                    removed += 1;
                }
                _ => break,
            }
        }
        removed
    }

    /// The at-most-once half of a write, before it runs: opens or touches
    /// the client's session, takes its ack, and returns `Err(reply)` if the
    /// write must not run (a duplicate's cached reply, a stale seq, or
    /// `SessionExpired`). Shared by single writes and transactions (whose
    /// session is the one of their first key's shard).
    pub(crate) fn begin_write(
        &mut self,
        req: &ClientRequest,
        print: u32,
        skip_dedup: bool,
        rules: &SessionRules,
    ) -> Result<(), ClientReply> {
        let now = rules.log_time_ms;
        // A known client (nearly every write): one session lookup, not three.
        if let Some(session) = self.sessions.get_mut(&req.client_id) {
            // Filed in the activity order lazily (see `lru`).
            session.last_ms = session.last_ms.max(now);
            session.acknowledge(req.ack_seq);
            if skip_dedup {
                return Ok(());
            }
            return session.dedup(req.seq, print).map_or(Ok(()), Err);
        }
        if !skip_dedup && !may_open(self.floor, req.client_id, now) {
            return Err(ClientReply::SessionExpired);
        }
        self.sessions.insert(
            req.client_id,
            Session {
                last_ms: now,
                lru_ms: now,
                ..Session::default()
            },
        );
        self.lru.insert((now, req.client_id));
        self.enforce_cap(rules, Some(req.client_id));
        let session = self
            .sessions
            .get_mut(&req.client_id)
            .expect("opened above; the cap spares it");
        session.acknowledge(req.ack_seq);
        if !skip_dedup {
            if let Some(reply) = session.dedup(req.seq, print) {
                return Err(reply);
            }
        }
        Ok(())
    }

    /// Caches the reply of a write that ran, for its duplicates.
    pub(crate) fn record_reply(&mut self, req: &ClientRequest, print: u32, reply: &ClientReply) {
        let session = self
            .sessions
            .get_mut(&req.client_id)
            .expect("begin_write opened the session");
        // Under the planted bug a stale request is re-applied; still never
        // cache at or below `acked`, so the snapshot stays canonical and the
        // bug shows up as wrong data, not as a failed restore.
        if req.seq > session.acked {
            let cached = Cached {
                reply: reply.clone(),
                print: Some(print),
            };
            session.replies.insert(req.seq, cached);
        }
    }

    /// The highest version of a key here (0 with none).
    pub(crate) fn highest_version(&self) -> u64 {
        self.data.values().map(|e| e.version).max().unwrap_or(0)
    }

    /// Drops `client`'s session and raises the floor over its id.
    ///
    /// Except for an id that was never plausible: a session from before
    /// expiry (restored from an old snapshot, random id), which raising the
    /// floor to would lock out every client; [`may_open`] refuses such an id
    /// anyway. Plausibility is judged against the session's own last
    /// activity, not only this store's log time: a session opened
    /// elsewhere was plausible against its own log time, which its
    /// `last_ms` carries, even if this group's log time is stale (it saw no
    /// write for a while) when it evicts it.
    pub(crate) fn forget(&mut self, client: ClientId, rules: &SessionRules) {
        if let Some(session) = self.sessions.remove(&client) {
            self.lru.remove(&(session.lru_ms, client));
            let horizon = session.last_ms.max(rules.log_time_ms);
            if plausible(client, horizon) && !rules.forget_floor {
                self.floor = self.floor.max(client);
            }
        }
    }

    /// Evicts least-recently-active sessions (never `keep`) until at most
    /// `max` remain. Returns how many were evicted.
    pub(crate) fn enforce_cap(&mut self, rules: &SessionRules, keep: Option<ClientId>) -> usize {
        let mut evicted = 0;
        while self.sessions.len() > rules.sessions_max.max(1) {
            let (_, victim) = self.least_active(keep).expect("more sessions than one");
            self.forget(victim, rules);
            evicted += 1;
        }
        evicted
    }

    /// Drops up to `budget` sessions idle longer than `ttl_ms` at log time
    /// `now`, oldest first. Returns how many were dropped.
    pub(crate) fn expire(&mut self, rules: &SessionRules, ttl_ms: u64, budget: usize) -> usize {
        let now = rules.log_time_ms;
        let mut dropped = 0;
        while dropped < budget {
            match self.least_active(None) {
                Some((last, client)) if now.saturating_sub(last) > ttl_ms => {
                    self.forget(client, rules);
                    dropped += 1;
                }
                _ => break,
            }
        }
        dropped
    }

    /// `(last_ms, client)` of the least recently active session other
    /// than `keep`: the first of the activity order once the sessions
    /// ahead of it that were active since they were filed are filed again
    /// at their `last_ms` (each is, at most once per consultation).
    pub(crate) fn least_active(&mut self, keep: Option<ClientId>) -> Option<(u64, ClientId)> {
        loop {
            let &(filed, client) = self.lru.iter().find(|(_, c)| Some(*c) != keep)?;
            if self.sessions[&client].last_ms == filed {
                return Some((filed, client));
            }
            self.refile(client);
        }
    }

    /// Files `client`'s session in the activity order at its `last_ms`.
    pub(crate) fn refile(&mut self, client: ClientId) {
        let session = self
            .sessions
            .get_mut(&client)
            .expect("filed sessions exist");
        self.lru.remove(&(session.lru_ms, client));
        session.lru_ms = session.last_ms;
        self.lru.insert((session.last_ms, client));
    }

    /// Adds (or merges) one session arriving with a migrated shard.
    pub(crate) fn merge_session(&mut self, client: ClientId, mut incoming: Session) {
        match self.sessions.get_mut(&client) {
            Some(existing) => {
                existing.merge(incoming);
                self.refile(client);
            }
            None => {
                incoming.assert_invariants();
                incoming.lru_ms = incoming.last_ms;
                self.lru.insert((incoming.last_ms, client));
                self.sessions.insert(client, incoming);
            }
        }
    }

    /// Gets are not cached (re-executing a retried Get is still
    /// linearizable, and caching values would cost memory) and do not create
    /// a session; they do carry an ack, which frees an existing session's
    /// replies. A read's `print` is 0 (the log's apply path does not print
    /// reads): no write's cached reply is ever served to a read.
    fn apply_get(&mut self, req: &ClientRequest, print: u32, now: u64) -> ClientReply {
        if let Some(session) = self.sessions.get_mut(&req.client_id) {
            session.acknowledge(req.ack_seq);
            // A stale Get gets the same answer as a stale write, so the
            // client-visible rule is one rule. (`skip_dedup` cannot change a
            // Get's effect, so it is not consulted.)
            if let Some(reply) = session.dedup(req.seq, print) {
                return reply;
            }
        }
        self.read_op(&req.op, now)
    }

    /// Removes every key (a Flush); answers how many were live.
    fn flush(&mut self, now: u64) -> ClientReply {
        let live = self.live_keys(now);
        self.data.clear();
        self.deadlines.clear();
        ClientReply::Ok(Bytes::from(live.to_string().into_bytes()))
    }

    /// Keys that have not expired at log time `now`: all keys less the
    /// expired ones not yet removed (the front of the deadline index).
    pub(crate) fn live_keys(&self, now: u64) -> u64 {
        let expired = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .count();
        (self.data.len() - expired) as u64
    }

    /// One page of a scan (see [`Op::Scan`]): `O(log n)` to find the start,
    /// then one step per key examined, at most
    /// [`scan_examine_limit`]`(count)` of them, and at most about
    /// [`SCAN_PAGE_BYTES_MAX`] of keys.
    pub(crate) fn scan(
        &self,
        after: Option<&[u8]>,
        count: u32,
        pattern: Option<&[u8]>,
        now: u64,
    ) -> ScanPage {
        let from = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut page = ScanPage::default();
        let mut last = None;
        let mut examined = 0;
        let mut bytes = 0;
        let limit = scan_examine_limit(count);
        let mut range = self
            .data
            .range::<[u8], _>((from, Bound::Unbounded))
            .peekable();
        for (key, entry) in range.by_ref() {
            examined += 1;
            last = Some(key);
            if !entry.expired(now) && pattern.is_none_or(|p| glob_match(p, key)) {
                page.keys.push(Bytes::copy_from_slice(key));
                bytes += key.len();
            }
            if page.keys.len() >= count as usize
                || examined >= limit
                || bytes >= SCAN_PAGE_BYTES_MAX
            {
                break;
            }
        }
        if range.peek().is_some() {
            page.resume_after = last.map(|k| Bytes::copy_from_slice(k));
        }
        page
    }

    /// Answers a read-only operation (Get, Ttl, Scan, Count) at log time
    /// `now`, a key expired by then reading as absent.
    pub(crate) fn read_op(&self, op: &Op, now: u64) -> ClientReply {
        match op {
            Op::Scan {
                after,
                count,
                pattern,
                ..
            } => {
                let page = self.scan(after.as_deref(), *count, pattern.as_deref(), now);
                return ClientReply::Ok(encode_scan_page(&page));
            }
            Op::Count { .. } => {
                return ClientReply::Ok(Bytes::from(self.live_keys(now).to_string().into_bytes()))
            }
            _ => {}
        }
        let entry = self.data.get(&op.key()[..]).filter(|e| !e.expired(now));
        match (op, entry) {
            (_, None) => ClientReply::NoKey,
            (Op::Ttl { .. }, Some(e)) if e.expires_ms == 0 => {
                ClientReply::Ok(Bytes::from_static(b"-1"))
            }
            (Op::Ttl { .. }, Some(e)) => {
                ClientReply::Ok(Bytes::from((e.expires_ms - now).to_string().into_bytes()))
            }
            (_, Some(e)) => ClientReply::Ok(Bytes::copy_from_slice(&e.value)),
        }
    }

    pub(crate) fn assert_invariants(&self) {
        assert_eq!(self.lru.len(), self.sessions.len(), "lru index size");
        for (client, session) in &self.sessions {
            session.assert_invariants();
            assert!(
                session.lru_ms <= session.last_ms && self.lru.contains(&(session.lru_ms, *client)),
                "session of {client} missing from the lru index"
            );
        }
        for entry in self.data.values() {
            assert!(entry.value.len() <= VALUE_BYTES_MAX);
            assert!(entry.version > 0, "a present key with version 0");
        }
        assert_eq!(
            self.deadlines,
            deadlines_of(&self.data),
            "deadline index out of date"
        );
    }

    /// Imports a shard exported by the group that owned it. The data is
    /// replaced, not merged: the exporter was the shard's only owner, so any
    /// local data for it is stale. Sessions are merged per client, so a
    /// client that talked to both groups keeps the stronger guarantee.
    pub(crate) fn merge_from(&mut self, incoming: Shard, rules: &SessionRules) {
        assert!(self.locks.is_empty(), "importing over a shard with locks");
        self.data.replace(incoming.data.into_map());
        self.deadlines = incoming.deadlines;
        self.floor = self.floor.max(incoming.floor);
        for (client, session) in incoming.sessions {
            self.merge_session(client, session);
        }
        self.enforce_cap(rules, None);
        self.assert_invariants();
    }
}

/// Performs a Delete. The reply carries the decimal count of keys removed
/// (`"1"` or `"0"`, PROTOCOL.md 5.1) so a Redis-style DEL can answer without
/// a second read; it is cached like any write's reply, so a retried Delete
/// gets the original count rather than a misleading `"0"`.
fn delete(data: &mut Data, key: &[u8]) -> ClientReply {
    let removed: &'static [u8] = if data.remove(key).is_some() {
        b"1"
    } else {
        b"0"
    };
    ClientReply::Ok(Bytes::from_static(removed))
}

/// Reply reason of an Incr of a value that is not a decimal `i64`.
pub(crate) const NOT_INTEGER_REASON: &str = "value is not an integer or out of range";
/// Reply reason of an Incr whose result would not fit an `i64`.
pub(crate) const OVERFLOW_REASON: &str = "increment or decrement would overflow";

/// A value as Redis reads an integer: optional `-`, decimal digits, no
/// leading zero (but `0` itself), no sign on zero, within `i64`.
pub(crate) fn parse_i64(v: &[u8]) -> Option<i64> {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
        || v == b"-0"
    {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Performs an Incr: the new value in decimal, or a refusal that changes
/// nothing.
fn incr(data: &mut Data, key: &[u8], delta: i64, version: u64) -> ClientReply {
    let expires_ms = data.get(key).map_or(0, |e| e.expires_ms);
    let current = match data.get(key) {
        Some(e) => match parse_i64(&e.value) {
            Some(n) => n,
            None => {
                return ClientReply::Error {
                    reason: NOT_INTEGER_REASON.to_string(),
                }
            }
        },
        None => 0,
    };
    let Some(next) = current.checked_add(delta) else {
        return ClientReply::Error {
            reason: OVERFLOW_REASON.to_string(),
        };
    };
    store_number(data, key, next.to_string(), version, expires_ms)
}

/// Stores the text of an Incr's or IncrByFloat's result as `key`'s value,
/// keeping its expiry (as Redis' INCR does), and answers it.
fn store_number(
    data: &mut Data,
    key: &[u8],
    text: String,
    version: u64,
    expires_ms: u64,
) -> ClientReply {
    let text = text.into_bytes();
    let reply = ClientReply::Ok(Bytes::copy_from_slice(&text));
    data.insert(
        Key::from(key),
        Entry {
            value: Value::from(text),
            version,
            expires_ms,
        },
    );
    reply
}

/// Reply reason of an IncrByFloat of a value or increment that is not a
/// float.
pub(crate) const NOT_FLOAT_REASON: &str = "value is not a valid float";
/// Reply reason of an IncrByFloat whose result is not finite.
pub(crate) const NAN_REASON: &str = "increment would produce NaN or Infinity";

/// A float as Redis reads one (`string2ld`): the whole text, no spaces,
/// not NaN. Rust's parser takes what C's `strtold` does for decimal text
/// (`1.5`, `-3`, `.5`, `5.`, `1e3`, `inf`).
pub(crate) fn parse_float(v: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(v).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_whitespace()) {
        return None;
    }
    text.parse::<f64>().ok().filter(|x| !x.is_nan())
}

/// Performs an IncrByFloat (see [`Op::IncrByFloat`]).
fn incr_by_float(data: &mut Data, key: &[u8], delta: &[u8], version: u64) -> ClientReply {
    let not_float = || ClientReply::Error {
        reason: NOT_FLOAT_REASON.to_string(),
    };
    let current = match data.get(key) {
        Some(e) => match parse_float(&e.value) {
            Some(x) => x,
            None => return not_float(),
        },
        None => 0.0,
    };
    let Some(delta) = parse_float(delta) else {
        return not_float();
    };
    let next = current + delta;
    if !next.is_finite() {
        return ClientReply::Error {
            reason: NAN_REASON.to_string(),
        };
    }
    let expires_ms = data.get(key).map_or(0, |e| e.expires_ms);
    store_number(data, key, format_float(next), version, expires_ms)
}

/// Performs a SetRange (see [`Op::SetRange`]).
fn set_range(data: &mut Data, key: &[u8], offset: u64, value: &[u8], version: u64) -> ClientReply {
    let len_reply = |n: usize| ClientReply::Ok(Bytes::from(n.to_string().into_bytes()));
    if value.is_empty() {
        // Redis: nothing is written and no key is created.
        return len_reply(data.get(key).map_or(0, |e| e.value.len()));
    }
    let end = match usize::try_from(offset)
        .ok()
        .and_then(|o| o.checked_add(value.len()))
    {
        Some(end) if end <= VALUE_BYTES_MAX => end,
        _ => {
            return ClientReply::Error {
                reason: TOO_LARGE_REASON.to_string(),
            }
        }
    };
    let offset = end - value.len();
    let entry = data.entry_or_insert_with(key, || Entry::new(&[], version));
    if entry.value.len() < end {
        entry.value.resize(end, 0);
    }
    entry.value[offset..end].copy_from_slice(value);
    entry.version = version;
    len_reply(entry.value.len())
}

/// `head` then `1` and `value`, or `0` without one: how PutIf and GetDel
/// answer a previous value that may be absent.
fn with_presence(head: &[u8], value: Option<&[u8]>) -> Bytes {
    let mut out = Vec::with_capacity(head.len() + 1 + value.map_or(0, <[u8]>::len));
    out.extend_from_slice(head);
    match value {
        Some(v) => {
            out.push(b'1');
            out.extend_from_slice(v);
        }
        None => out.push(b'0'),
    }
    Bytes::from(out)
}

/// The absolute deadline `expiry` names at log time `now`: `Some(0)` for
/// none, `None` for Keep.
fn deadline(expiry: Expiry, now: u64) -> Option<u64> {
    match expiry {
        Expiry::Keep => None,
        Expiry::Persist => Some(0),
        // A deadline of 0 would read as "none": 1 ms is as past as 0.
        Expiry::In(ms) => Some(now.saturating_add(ms).max(1)),
        Expiry::At(ms) => Some(ms.max(1)),
    }
}

/// Performs a PutIf or PutEx (see [`Op::PutIf`] for the reply); the
/// written key's expiry becomes `expiry` (Persist for a PutIf: a plain SET
/// clears it). A deadline already past writes nothing but deletes the key,
/// as Redis' SET with a past EXAT does.
#[allow(clippy::too_many_arguments)]
fn put_if(
    data: &mut Data,
    key: &[u8],
    value: &[u8],
    cond: PutCond,
    get_old: bool,
    version: u64,
    expiry: Expiry,
    now: u64,
) -> ClientReply {
    let exists = data.contains_key(key);
    let holds = match cond {
        PutCond::Any => true,
        PutCond::Exists => exists,
        PutCond::NotExists => !exists,
    };
    if holds && value.len() > VALUE_BYTES_MAX {
        return ClientReply::Error {
            reason: TOO_LARGE_REASON.to_string(),
        };
    }
    let old = if holds {
        let keep = data.get(key).map_or(0, |e| e.expires_ms);
        let expires_ms = deadline(expiry, now).unwrap_or(keep);
        if expires_ms != 0 && expires_ms <= now {
            data.remove(key).map(|e| e.value)
        } else {
            data.insert(
                Key::from(key),
                Entry {
                    value: Value::from_slice(value),
                    version,
                    expires_ms,
                },
            )
            .map(|e| e.value)
        }
    } else {
        None
    };
    let written: &[u8] = if holds { b"1" } else { b"0" };
    if !get_old {
        return ClientReply::Ok(Bytes::copy_from_slice(written));
    }
    let old = if holds {
        old
    } else {
        data.get(key).map(|e| e.value.clone())
    };
    ClientReply::Ok(with_presence(written, old.as_deref()))
}

/// Performs a Put (`append == false`) or Append. A result larger than
/// [`VALUE_BYTES_MAX`] is refused without changing anything; the refusal is
/// itself a deterministic outcome, cached like any reply.
fn write(data: &mut Data, key: &[u8], value: &[u8], append: bool, version: u64) -> ClientReply {
    let too_large = || ClientReply::Error {
        reason: TOO_LARGE_REASON.to_string(),
    };
    match data.get_mut(key) {
        Some(existing) if append => {
            if existing.value.len().saturating_add(value.len()) > VALUE_BYTES_MAX {
                return too_large();
            }
            existing.value.extend_from_slice(value);
            existing.version = version;
        }
        Some(existing) => {
            if value.len() > VALUE_BYTES_MAX {
                return too_large();
            }
            // A fresh exact-size buffer, so a shrinking Put frees memory.
            existing.value = Value::from_slice(value);
            existing.version = version;
            // A Put (Redis' SET) clears the expiry; an Append keeps it.
            existing.expires_ms = 0;
        }
        None => {
            if value.len() > VALUE_BYTES_MAX {
                return too_large();
            }
            data.insert(Key::from(key), Entry::new(value, version));
        }
    }
    ClientReply::Ok(Bytes::new())
}

/// Performs one write operation on a shard's data; every key it changes
/// gets `version`. Refusals change nothing. Shared by single requests and
/// transactions (`kv::txn`), so both decide alike.
/// Performs an Expire (see [`Op::Expire`]).
fn expire(
    data: &mut Data,
    key: &[u8],
    expiry: Expiry,
    cond: ExpireCond,
    version: u64,
    now: u64,
) -> ClientReply {
    let no = || ClientReply::Ok(Bytes::from_static(b"0"));
    let Some(entry) = data.get_mut(key) else {
        return no();
    };
    // 0 (none) counts as infinitely late for Gt and Lt, as in Redis.
    let late = |t: u64| if t == 0 { u64::MAX } else { t };
    let new = deadline(expiry, now).unwrap_or(entry.expires_ms);
    let current = entry.expires_ms;
    let holds = match cond {
        ExpireCond::Always => true,
        ExpireCond::Nx => current == 0,
        ExpireCond::Xx => current != 0,
        ExpireCond::Gt => current != 0 && late(new) > current,
        ExpireCond::Lt => late(new) < late(current),
    };
    if !holds || (new == 0 && current == 0) {
        // Refused, or a Persist of a key without expiry: nothing changes.
        return no();
    }
    if new != 0 && new <= now {
        data.remove(key);
    } else {
        entry.expires_ms = new;
        entry.version = version;
    }
    ClientReply::Ok(Bytes::from_static(b"1"))
}

/// Performs a GetEx (see [`Op::GetEx`]).
fn get_ex(data: &mut Data, key: &[u8], expiry: Expiry, version: u64, now: u64) -> ClientReply {
    let Some(entry) = data.get_mut(key) else {
        return ClientReply::Ok(with_presence(b"", None));
    };
    let reply = ClientReply::Ok(with_presence(b"", Some(&entry.value)));
    let new = deadline(expiry, now).unwrap_or(entry.expires_ms);
    if new != 0 && new <= now {
        data.remove(key);
    } else if new != entry.expires_ms {
        entry.expires_ms = new;
        entry.version = version;
    }
    reply
}

/// Can `op` give a key without an expiry one? The others keep the expiry
/// (Append, Incr, SetRange, IncrByFloat), clear it (Put, PutIf), remove the
/// key (Delete, GetDel) or only read (Get, Ttl, Scan, Count).
fn may_set_expiry(op: &Op) -> bool {
    match op {
        Op::PutEx { .. } | Op::Expire { .. } | Op::GetEx { .. } => true,
        Op::Get { .. }
        | Op::Put { .. }
        | Op::Append { .. }
        | Op::Delete { .. }
        | Op::Incr { .. }
        | Op::PutIf { .. }
        | Op::GetDel { .. }
        | Op::Ttl { .. }
        | Op::SetRange { .. }
        | Op::IncrByFloat { .. }
        | Op::Scan { .. }
        | Op::Count { .. } => false,
        // Never applied as one operation (`apply_op` refuses them; a Flush
        // is run by `Shard::apply`); looking is always right.
        Op::Txn(_) | Op::TxnPrepare(_) | Op::TxnDecide(_) | Op::TxnFinish(_) | Op::Flush { .. } => {
            true
        }
    }
}

pub(crate) fn apply_op(data: &mut Data, op: &Op, version: u64, now: u64) -> ClientReply {
    match op {
        Op::Put { key, value } => write(data, key, value, false, version),
        Op::Append { key, value } => write(data, key, value, true, version),
        Op::Delete { key } => delete(data, key),
        Op::Incr { key, delta } => incr(data, key, *delta, version),
        Op::PutIf {
            key,
            value,
            cond,
            get_old,
        } => put_if(
            data,
            key,
            value,
            *cond,
            *get_old,
            version,
            Expiry::Persist,
            now,
        ),
        Op::PutEx {
            key,
            value,
            cond,
            get_old,
            expiry,
        } => put_if(data, key, value, *cond, *get_old, version, *expiry, now),
        Op::Expire { key, expiry, cond } => expire(data, key, *expiry, *cond, version, now),
        Op::GetEx { key, expiry } => get_ex(data, key, *expiry, version, now),
        Op::GetDel { key } => ClientReply::Ok(with_presence(
            b"",
            data.remove(&key[..]).map(|e| e.value).as_deref(),
        )),
        Op::Get { key } => match data.get(&key[..]).filter(|e| !e.expired(now)) {
            Some(entry) => ClientReply::Ok(Bytes::copy_from_slice(&entry.value)),
            None => ClientReply::NoKey,
        },
        Op::Ttl { key } => match data.get(&key[..]).filter(|e| !e.expired(now)) {
            Some(e) if e.expires_ms == 0 => ClientReply::Ok(Bytes::from_static(b"-1")),
            Some(e) => ClientReply::Ok(Bytes::from((e.expires_ms - now).to_string().into_bytes())),
            None => ClientReply::NoKey,
        },
        Op::SetRange { key, offset, value } => set_range(data, key, *offset, value, version),
        Op::IncrByFloat { key, delta } => incr_by_float(data, key, delta, version),
        // Reads of a whole shard and Flush are answered by `Shard` (they
        // are not key operations; a transaction cannot hold them).
        Op::Scan { .. } | Op::Count { .. } | Op::Flush { .. } => ClientReply::Error {
            reason: "not an operation on one key".to_string(),
        },
        // `KvStore::apply` runs transactions (`kv::txn`); one never nests.
        Op::Txn(_) | Op::TxnPrepare(_) | Op::TxnDecide(_) | Op::TxnFinish(_) => {
            ClientReply::Error {
                reason: "a transaction cannot hold a transaction".to_string(),
            }
        }
    }
}
