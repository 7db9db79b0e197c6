//! Linearizability of key/value client histories.
//!
//! This module owns the sequential specification of one key (Get / Put /
//! Append / Delete, [`KvModel`]), the history record clients keep ([`KvOp`]), and
//! [`check_kv`], which splits a history by key and runs the generic search of
//! [`super::linearizability`] on each key. It is used for the deterministic
//! simulator's histories and for real-cluster and benchmark histories, so it
//! must stay fast on tens of thousands of operations and must never panic,
//! whatever the history.
//!
//! # Results
//!
//! Only [`CheckResult::Linearizable`] is a pass. [`CheckResult::Inconclusive`]
//! (search budget exhausted) and [`CheckResult::InvalidHistory`] (the
//! recorder produced nonsense, e.g. an answer before its call) are failures
//! too: use [`CheckResult::is_ok`].
//!
//! # Values
//!
//! An Append-heavy key's value grows with every operation; hashing and
//! comparing whole values at each search step would make the search
//! quadratic. [`check_kv`] therefore hash-conses values: a state is a small
//! id, appending is a memoized O(1) step on ids, and two values share an id
//! iff their bytes are equal (a rolling hash finds candidates, a byte
//! comparison confirms them, so the check stays exact). [`KvModel`] is the
//! plain reference model over `Option<Bytes>`, for generic use and to
//! cross-check the fast one.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;

use bytes::Bytes;

use super::linearizability::{
    check_with, partition_by, CheckOptions, FxBuildHasher, Model, Operation, Verdict,
};

/// What a client asked for (the key is in [`KvOp`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    Get,
    Put(Bytes),
    /// Appends to the value; on a missing key, creates it with this value.
    Append(Bytes),
    /// Removes the key; answered with [`KvOutput::Deleted`].
    Delete,
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A Get was answered: `Some(v)`, or `None` for NoKey.
    Value(Option<Bytes>),
    /// A Put or Append was acknowledged.
    Ok,
    /// A Delete was acknowledged: `true` if the key had a value (the server
    /// answered `"1"`), `false` if it had none (`"0"`). The checker holds the
    /// count to the model rather than leaving it unconstrained, because a
    /// wrong count is exactly what a broken dedup (a Delete applied twice)
    /// would show.
    Deleted(bool),
    /// No answer (timeout, crash, the client gave up): the operation may or
    /// may not have taken effect. `KvOp::ret` is ignored.
    Unknown,
}

/// One client operation as recorded by the simulator or a real client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOp {
    pub client: u64,
    pub key: Bytes,
    pub input: KvInput,
    pub output: KvOutput,
    /// When the request was issued, in any monotonic unit shared by the
    /// whole history.
    pub call: u64,
    /// When the answer arrived (same unit). Must be `>= call` unless the
    /// output is [`KvOutput::Unknown`], in which case it is ignored and the
    /// operation is treated as never returning.
    pub ret: u64,
}

impl KvOp {
    /// The operation as the generic checker sees it (without the key).
    pub fn operation(&self) -> Operation<KvInput, KvOutput> {
        Operation {
            client: self.client,
            input: self.input.clone(),
            output: self.output.clone(),
            call: self.call,
            ret: (self.output != KvOutput::Unknown).then_some(self.ret),
        }
    }
}

/// The sequential specification of a single key, over plain values.
///
/// A Get with [`KvOutput::Unknown`] leaves the state alone; a Put or Append
/// with `Unknown` takes effect (the search decides whether to linearize it
/// at all). Mismatched outputs (a Put answered with a value) are impossible.
/// A Delete leaves NoKey and must report whether the key had a value.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl Model for KvModel {
    type State = Option<Bytes>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Option<Bytes> {
        None
    }

    fn step(
        &self,
        state: &Option<Bytes>,
        input: &KvInput,
        output: &KvOutput,
    ) -> Option<Option<Bytes>> {
        match (input, output) {
            (KvInput::Get, KvOutput::Value(v)) => (v == state).then(|| state.clone()),
            (KvInput::Get, KvOutput::Unknown) => Some(state.clone()),
            (KvInput::Put(v), KvOutput::Ok | KvOutput::Unknown) => Some(Some(v.clone())),
            (KvInput::Append(a), KvOutput::Ok | KvOutput::Unknown) => Some(Some(match state {
                None => a.clone(),
                Some(s) => {
                    let mut v = Vec::with_capacity(s.len() + a.len());
                    v.extend_from_slice(s);
                    v.extend_from_slice(a);
                    Bytes::from(v)
                }
            })),
            (KvInput::Delete, KvOutput::Deleted(existed)) => {
                (*existed == state.is_some()).then_some(None)
            }
            (KvInput::Delete, KvOutput::Unknown) => Some(None),
            _ => None,
        }
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        *input == KvInput::Get
    }

    /// A Delete is blind too: its resulting state (NoKey) does not depend
    /// on the state before it. Its output may refuse a state, which only
    /// makes states less reachable, so the pruning stays sound.
    fn is_blind_write(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Put(_) | KvInput::Delete)
    }

    /// Appends only extend a value, and nothing but the initial state and
    /// Deletes (blind writes, which the search never prunes through) give
    /// NoKey.
    fn may_reach(&self, state: &Option<Bytes>, input: &KvInput, output: &KvOutput) -> bool {
        match (input, output, state) {
            (KvInput::Get, KvOutput::Value(Some(want)), Some(have)) => want.starts_with(have),
            (KvInput::Get, KvOutput::Value(None), Some(_)) => false,
            _ => true,
        }
    }
}

/// The verdict on a whole multi-key history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    Linearizable,
    /// The operations on `key` have no linearization. `detail` lists them
    /// and the longest linearizable prefix the search found.
    NotLinearizable {
        key: Bytes,
        detail: String,
    },
    /// The search on `key` ran out of budget after `steps` steps. This is a
    /// failure: nothing was proven about that key.
    Inconclusive {
        key: Bytes,
        steps: u64,
    },
    /// The history is malformed (an answer before its call, a Get answered
    /// with Ok, a Put answered with a value); the recorder is broken.
    InvalidHistory {
        key: Bytes,
        detail: String,
    },
}

impl CheckResult {
    /// True only for [`CheckResult::Linearizable`]; every other result is a
    /// failure.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }
}

/// Most operations listed in a failure's `detail`, so a hot key with
/// thousands of operations still gives a readable report.
pub const DETAIL_OPS_MAX: usize = 200;

/// Checks a multi-key history.
///
/// Each key is checked on its own (linearizability is compositional), keys
/// in order of first appearance. The first key found not linearizable is
/// reported; if none is but some key ran out of budget, the first such key
/// is reported as [`CheckResult::Inconclusive`]. Gets without an answer
/// constrain nothing and are dropped; Puts and Appends without one may be
/// linearized anywhere after their call, or not at all.
pub fn check_kv(history: &[KvOp], opts: &CheckOptions) -> CheckResult {
    for (i, op) in history.iter().enumerate() {
        if let Some(reason) = malformed(op) {
            return CheckResult::InvalidHistory {
                key: op.key.clone(),
                detail: format!("op #{i} {}: {reason}", describe_op(op)),
            };
        }
    }
    let relevant = history
        .iter()
        .enumerate()
        .filter(|(_, op)| !(op.input == KvInput::Get && op.output == KvOutput::Unknown));
    let mut inconclusive = None;
    for (key, mut ops) in partition_by(relevant, |(_, op)| op.key.clone()) {
        drop_unobservable_writes(&mut ops);
        let model = InternedKv::default();
        let interned: Vec<_> = ops.iter().map(|(_, op)| model.intern_op(op)).collect();
        match check_with(&model, &interned, opts) {
            Verdict::Linearizable => {}
            Verdict::Inconclusive { steps } => {
                if inconclusive.is_none() {
                    inconclusive = Some(CheckResult::Inconclusive { key, steps });
                }
            }
            Verdict::NotLinearizable { longest_prefix } => {
                let detail = describe_failure(&key, &ops, &longest_prefix);
                return CheckResult::NotLinearizable { key, detail };
            }
            // Validation above rules this out; report rather than panic.
            Verdict::Invalid(e) => {
                let detail = match ops.get(e.op) {
                    Some((i, op)) => format!("op #{i} {}: {}", describe_op(op), e.reason),
                    None => e.reason,
                };
                return CheckResult::InvalidHistory { key, detail };
            }
        }
    }
    inconclusive.unwrap_or(CheckResult::Linearizable)
}

/// Removes unanswered Puts and Appends that no Get of the key could have
/// observed, which keeps the search from trying each of them at every
/// point of the history (each is optional, so the search would otherwise
/// explore every place it could go, and the dead-read pruning stays off
/// while a Put is unplaced).
///
/// Dropping one loses no linearization: a read linearized after a Put of
/// `v` and before the next Put sees `v` followed by appends, and one after
/// an Append of `a` sees a value containing `a`. If no read's value starts
/// with `v` (contains `a`), no read sits in that stretch, so removing the
/// write changes no read's result.
///
/// A Delete's answer observes whether *any* write made the key exist, which
/// this argument does not cover, so a key with a Delete keeps every write
/// (slower to search, never wrong; Deletes are rare in checked histories).
fn drop_unobservable_writes(ops: &mut Vec<(usize, &KvOp)>) {
    if ops.iter().any(|(_, op)| op.input == KvInput::Delete) {
        ops.retain(|(_, op)| !(op.input == KvInput::Get && op.output == KvOutput::Unknown));
        return;
    }
    let seen: Vec<&Bytes> = ops
        .iter()
        .filter_map(|(_, op)| match &op.output {
            KvOutput::Value(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    ops.retain(|(_, op)| {
        if op.output != KvOutput::Unknown {
            return true;
        }
        match &op.input {
            KvInput::Get => false,
            KvInput::Put(v) => seen.iter().any(|w| w.starts_with(v)),
            KvInput::Append(a) => seen.iter().any(|w| contains(w, a)),
            KvInput::Delete => true,
        }
    });
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Why `op` cannot be judged, if it cannot.
fn malformed(op: &KvOp) -> Option<&'static str> {
    match (&op.input, &op.output) {
        (_, KvOutput::Unknown) => None,
        (KvInput::Get, KvOutput::Ok) => Some("a Get answered with Ok instead of a value"),
        (KvInput::Put(_) | KvInput::Append(_), KvOutput::Value(_) | KvOutput::Deleted(_)) => {
            Some("a Put/Append answered with a value instead of Ok")
        }
        (KvInput::Get, KvOutput::Deleted(_)) => Some("a Get answered with a Delete's count"),
        (KvInput::Delete, KvOutput::Ok | KvOutput::Value(_)) => {
            Some("a Delete answered without its count")
        }
        _ if op.ret < op.call => Some("returns before its call"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The fast model: hash-consed values.

/// Id of "no value" (NoKey); real values get ids from 1.
const NO_VALUE: u64 = 0;

/// One key's operation as [`InternedKv`] sees it: values replaced by ids.
#[derive(Clone, Copy, Debug)]
enum IdOp {
    /// A Get that must observe this value id.
    Get(u64),
    Put(u64),
    /// Append the value with this (leaf) id.
    Append(u64),
    /// Delete; `Some(existed)` when answered, `None` when not.
    Delete(Option<bool>),
    /// A Get without an answer: observes nothing, changes nothing.
    Nop,
}

/// [`KvModel`] with values hash-consed into a [`ValueTable`]. The table
/// grows during the search (new concatenations), hence the `RefCell`: the
/// search is single-threaded and the borrow never escapes `step`.
#[derive(Default)]
struct InternedKv {
    table: RefCell<ValueTable>,
}

impl InternedKv {
    fn intern_op(&self, op: &KvOp) -> Operation<IdOp, ()> {
        let mut t = self.table.borrow_mut();
        let input = match (&op.input, &op.output) {
            (KvInput::Get, KvOutput::Value(None)) => IdOp::Get(NO_VALUE),
            (KvInput::Get, KvOutput::Value(Some(v))) => IdOp::Get(t.intern(v)),
            // `check_kv` drops these, but they are harmless anyway.
            (KvInput::Get, _) => IdOp::Nop,
            (KvInput::Put(v), _) => IdOp::Put(t.intern(v)),
            (KvInput::Append(a), _) => IdOp::Append(t.intern(a)),
            (KvInput::Delete, KvOutput::Deleted(existed)) => IdOp::Delete(Some(*existed)),
            (KvInput::Delete, _) => IdOp::Delete(None),
        };
        Operation {
            client: op.client,
            input,
            output: (),
            call: op.call,
            ret: (op.output != KvOutput::Unknown).then_some(op.ret),
        }
    }
}

impl Model for InternedKv {
    type State = u64;
    type Input = IdOp;
    type Output = ();

    fn init(&self) -> u64 {
        NO_VALUE
    }

    fn step(&self, state: &u64, input: &IdOp, _: &()) -> Option<u64> {
        match *input {
            IdOp::Get(expected) => (expected == *state).then_some(*state),
            IdOp::Put(v) => Some(v),
            IdOp::Append(a) => Some(self.table.borrow_mut().append(*state, a)),
            IdOp::Nop => Some(*state),
            IdOp::Delete(None) => Some(NO_VALUE),
            IdOp::Delete(Some(existed)) => (existed == (*state != NO_VALUE)).then_some(NO_VALUE),
        }
    }

    fn is_read_only(&self, input: &IdOp) -> bool {
        matches!(input, IdOp::Get(_) | IdOp::Nop)
    }

    fn is_blind_write(&self, input: &IdOp) -> bool {
        matches!(input, IdOp::Put(_) | IdOp::Delete(_))
    }

    fn may_reach(&self, state: &u64, input: &IdOp, _: &()) -> bool {
        match *input {
            IdOp::Get(want) => self.table.borrow_mut().may_extend_to(*state, want),
            _ => true,
        }
    }

    /// The value table: its nodes and its three hash maps (by capacity,
    /// about 24 bytes a slot with the control byte). Leaf bytes are the
    /// history's own and not counted.
    fn memory_bytes(&self) -> u64 {
        let t = self.table.borrow();
        let maps = t.by_hash.capacity() + t.appended.capacity() + t.extends.capacity();
        (t.nodes.capacity() * std::mem::size_of::<Node>() + maps * 25) as u64
    }
}

/// Modulus of the rolling hash (a Mersenne prime, so reduction is cheap).
const HASH_P: u64 = (1 << 61) - 1;
/// Base of the rolling hash; any value in `2..HASH_P` works.
const HASH_BASE: u64 = 0x0123_4567_89ab_cdef % HASH_P;

fn mul_mod(a: u64, b: u64) -> u64 {
    let x = a as u128 * b as u128;
    let r = (x as u64 & HASH_P) + (x >> 61) as u64;
    if r >= HASH_P {
        r - HASH_P
    } else {
        r
    }
}

fn add_mod(a: u64, b: u64) -> u64 {
    let r = a + b;
    if r >= HASH_P {
        r - HASH_P
    } else {
        r
    }
}

/// A value known to the table. `hash` is the polynomial hash of its bytes
/// and `pow` is `HASH_BASE^len`, which together make the hash of a
/// concatenation O(1): `h(s ++ a) = h(s) * pow(a) + h(a)`.
struct Node {
    len: u64,
    hash: u64,
    pow: u64,
    body: Body,
    /// Next node with the same `(len, hash)` (a true collision), or 0.
    next_same: u64,
}

enum Body {
    /// Bytes that appear in the history (Put, Append and Get values).
    Leaf(Bytes),
    /// A value only the search produced: `prefix` with leaf `suffix`
    /// appended. Stored as a link, not bytes, so a long Append chain costs
    /// O(1) memory per state.
    Append { prefix: u64, suffix: u64 },
}

/// Hash-consed values of one key: equal bytes, equal id.
#[derive(Default)]
struct ValueTable {
    /// `nodes[id - 1]`.
    nodes: Vec<Node>,
    /// First node with a given `(len, hash)`.
    by_hash: HashMap<(u64, u64), u64, FxBuildHasher>,
    /// Memo of `append(state, leaf)`.
    appended: HashMap<(u64, u64), u64, FxBuildHasher>,
    /// Memo of `may_extend_to(have, want)`.
    extends: HashMap<(u64, u64), bool, FxBuildHasher>,
}

impl ValueTable {
    fn node(&self, id: u64) -> &Node {
        &self.nodes[id as usize - 1]
    }

    /// The bytes of value `id` (borrowed for leaves, assembled otherwise).
    fn bytes(&self, id: u64) -> Cow<'_, [u8]> {
        let mut suffixes = Vec::new();
        let mut cur = id;
        loop {
            match &self.node(cur).body {
                Body::Leaf(b) if suffixes.is_empty() => return Cow::Borrowed(b),
                Body::Leaf(b) => {
                    let mut out = Vec::with_capacity(self.node(id).len as usize);
                    out.extend_from_slice(b);
                    for &s in suffixes.iter().rev() {
                        out.extend_from_slice(&self.bytes(s));
                    }
                    return Cow::Owned(out);
                }
                Body::Append { prefix, suffix } => {
                    suffixes.push(*suffix);
                    cur = *prefix;
                }
            }
        }
    }

    /// Existing id whose bytes satisfy `same`, among those with this hash.
    fn find(&self, len: u64, hash: u64, same: impl Fn(&[u8]) -> bool) -> Option<u64> {
        let mut cur = self.by_hash.get(&(len, hash)).copied().unwrap_or(0);
        while cur != 0 {
            if same(&self.bytes(cur)) {
                return Some(cur);
            }
            cur = self.node(cur).next_same;
        }
        None
    }

    fn insert(&mut self, len: u64, hash: u64, pow: u64, body: Body) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let next_same = self.by_hash.insert((len, hash), id).unwrap_or(0);
        self.nodes.push(Node {
            len,
            hash,
            pow,
            body,
            next_same,
        });
        id
    }

    fn intern(&mut self, v: &Bytes) -> u64 {
        let (mut hash, mut pow) = (0, 1);
        for &b in v.iter() {
            // +1 so that leading zero bytes still change the hash.
            hash = add_mod(mul_mod(hash, HASH_BASE), b as u64 + 1);
            pow = mul_mod(pow, HASH_BASE);
        }
        let len = v.len() as u64;
        match self.find(len, hash, |b| b == &v[..]) {
            Some(id) => id,
            None => self.insert(len, hash, pow, Body::Leaf(v.clone())),
        }
    }

    /// Whether appends can turn value `have` into value `want`: `have` is
    /// NoKey, or a prefix of `want`.
    fn may_extend_to(&mut self, have: u64, want: u64) -> bool {
        if have == want || have == NO_VALUE {
            return true;
        }
        if want == NO_VALUE || self.node(have).len >= self.node(want).len {
            // Equal lengths with different ids mean different bytes.
            return false;
        }
        if let Some(&known) = self.extends.get(&(have, want)) {
            return known;
        }
        let yes = self.bytes(want).starts_with(&self.bytes(have));
        self.extends.insert((have, want), yes);
        yes
    }

    fn append(&mut self, state: u64, leaf: u64) -> u64 {
        if state == NO_VALUE {
            return leaf;
        }
        if let Some(&id) = self.appended.get(&(state, leaf)) {
            return id;
        }
        let (s, a) = (self.node(state), self.node(leaf));
        let len = s.len + a.len;
        let hash = add_mod(mul_mod(s.hash, a.pow), a.hash);
        let pow = mul_mod(s.pow, a.pow);
        let split = s.len as usize;
        let found = self.find(len, hash, |b| {
            b[split..] == *self.bytes(leaf) && b[..split] == *self.bytes(state)
        });
        let id = match found {
            Some(id) => id,
            None => self.insert(
                len,
                hash,
                pow,
                Body::Append {
                    prefix: state,
                    suffix: leaf,
                },
            ),
        };
        self.appended.insert((state, leaf), id);
        id
    }
}

// ---------------------------------------------------------------------------
// Failure reports.

/// Longest value shown in full in a report.
const DETAIL_VALUE_BYTES: usize = 48;

fn show_value(v: &[u8]) -> String {
    if v.len() <= DETAIL_VALUE_BYTES {
        format!("{:?}", Bytes::copy_from_slice(v))
    } else {
        let head = Bytes::copy_from_slice(&v[..DETAIL_VALUE_BYTES]);
        format!("{head:?}..({} bytes)", v.len())
    }
}

fn describe_op(op: &KvOp) -> String {
    let input = match &op.input {
        KvInput::Get => "Get".to_string(),
        KvInput::Put(v) => format!("Put({})", show_value(v)),
        KvInput::Append(v) => format!("Append({})", show_value(v)),
        KvInput::Delete => "Delete".to_string(),
    };
    let (output, ret) = match &op.output {
        KvOutput::Value(None) => ("NoKey".to_string(), op.ret.to_string()),
        KvOutput::Value(Some(v)) => (show_value(v), op.ret.to_string()),
        KvOutput::Ok => ("Ok".to_string(), op.ret.to_string()),
        KvOutput::Deleted(existed) => (
            format!("Deleted({})", u8::from(*existed)),
            op.ret.to_string(),
        ),
        KvOutput::Unknown => ("Unknown".to_string(), "never".to_string()),
    };
    format!(
        "client {} [{}, {}] {} -> {}",
        op.client, op.call, ret, input, output
    )
}

/// The report for a key without a linearization: its operations by call
/// time, then the longest linearizable prefix with the state after each
/// step, then what could not be placed. Ops are numbered by their index in
/// the caller's history so they can be found there.
fn describe_failure(key: &Bytes, ops: &[(usize, &KvOp)], longest_prefix: &[usize]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "key {} is not linearizable: {} ops, longest linearizable prefix {} ops",
        show_value(key),
        ops.len(),
        longest_prefix.len()
    );
    let mut by_call: Vec<&(usize, &KvOp)> = ops.iter().collect();
    by_call.sort_by_key(|(i, op)| (op.call, *i));
    let _ = writeln!(out, "ops by call time:");
    for (i, op) in by_call.iter().take(DETAIL_OPS_MAX) {
        let _ = writeln!(out, "  #{i} {}", describe_op(op));
    }
    if by_call.len() > DETAIL_OPS_MAX {
        let _ = writeln!(out, "  ... {} more", by_call.len() - DETAIL_OPS_MAX);
    }
    let _ = writeln!(out, "longest linearizable prefix:");
    // Replay the whole prefix with the reference model so the report shows
    // real bytes, but print only its end: the failure is right after it.
    let skip = longest_prefix.len().saturating_sub(DETAIL_OPS_MAX);
    if skip > 0 {
        let _ = writeln!(out, "  ... {skip} earlier ops");
    }
    let mut state: Option<Bytes> = None;
    for (n, &p) in longest_prefix.iter().enumerate() {
        let Some((i, op)) = ops.get(p) else { continue };
        state = KvModel
            .step(&state, &op.input, &op.output)
            .unwrap_or_else(|| state.clone());
        if n >= skip {
            let shown = state.as_deref().map_or("NoKey".to_string(), show_value);
            let _ = writeln!(out, "  #{i} {}  => {shown}", describe_op(op));
        }
    }
    let placed: std::collections::HashSet<usize> = longest_prefix.iter().copied().collect();
    let mut unplaced = Vec::new();
    for (p, (i, op)) in ops.iter().enumerate() {
        if !placed.contains(&p) && op.output != KvOutput::Unknown {
            unplaced.push(format!("#{i}"));
        }
    }
    let more = unplaced.len().saturating_sub(DETAIL_OPS_MAX);
    unplaced.truncate(DETAIL_OPS_MAX);
    let _ = write!(
        out,
        "completed ops not in that prefix: {}",
        unplaced.join(" ")
    );
    if more > 0 {
        let _ = write!(out, " ... {more} more");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests;
