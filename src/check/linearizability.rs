//! A generic linearizability checker: Wing & Gong's backtracking search with
//! Lowe's memoization, in the style of Porcupine.
//!
//! This module owns the search and nothing else: it knows no concrete data
//! type (those are [`Model`]s, e.g. [`super::kv`]), never reads a clock and
//! never panics on a history, however malformed. Each history it is given is
//! one *partition* (for a key/value store: one key). Linearizability is
//! compositional (Herlihy & Wing's locality), so a history whose operations
//! touch disjoint objects is linearizable iff each object's sub-history is;
//! [`partition_by`] and [`check_partitioned`] split a history that way, which
//! turns one exponential search into many small ones.
//!
//! # Time
//!
//! `call` and `ret` are timestamps in any monotonic unit. Operation A
//! happens before B iff `A.ret < B.call` *strictly*; equal timestamps are
//! treated as concurrent. That is the conservative choice for histories whose
//! clocks have coarse resolution: it can accept a history a finer clock would
//! reject, but never rejects a correct one.
//!
//! # Operations without an answer
//!
//! An operation with `ret == None` never returned (timeout, crash, the
//! client gave up). It may have taken effect at any point after its call, or
//! not at all, so the search may linearize it or leave it out; the search
//! succeeds as soon as every *completed* operation is linearized. Its
//! `output` is still passed to [`Model::step`], so models give such
//! operations an output meaning "anything".
//!
//! # Search order and pruning
//!
//! The candidates in each configuration (calls before the first pending
//! return, as in Wing & Gong) are tried legal reads first, then by earliest
//! return (deadline) — Lowe's "just in time" order, which follows real time
//! far better than call order — with never-returning operations last. Two
//! prunings keep the search complete: a legal read is linearized at once
//! with no alternatives ([`Model::is_read_only`]), and a configuration in
//! which an open read can no longer be satisfied is abandoned
//! ([`Model::may_reach`]).
//!
//! # Cost
//!
//! The problem is NP-complete; memoization keeps the usual case near linear,
//! and [`CheckOptions::steps_per_key_max`] bounds the rest, in time, and
//! [`CheckOptions::memory_bytes_max`] in memory (the memo keeps a 16-byte
//! fingerprint per entry). A search that runs out of budget answers [`Verdict::Inconclusive`], which callers must treat
//! as failure: a checker that quietly passes what it could not check is
//! worse than none.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A sequential specification: the object's state and what each operation
/// does to it.
pub trait Model {
    /// The object's state. It is hashed twice on every step for the memo's
    /// fingerprint, so keep it small (intern large values).
    type State: Clone + Eq + Hash;
    type Input;
    type Output;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after applying `input` to `state`, if doing so can produce
    /// `output`; `None` if this output is impossible from this state.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// True if `input` never changes the state: `step` answers either
    /// `None` or the state it was given, in every state (a read). The search
    /// then linearizes such an operation as soon as it is legal and tries no
    /// alternative, which prunes most of the search on read-heavy histories.
    /// The default, `false`, is always sound.
    fn is_read_only(&self, _input: &Self::Input) -> bool {
        false
    }

    /// True if `input`'s resulting state does not depend on the state
    /// before it (a blind write, like a register's Put). Only used together
    /// with [`Model::may_reach`]; the default, `false`, is always sound.
    fn is_blind_write(&self, _input: &Self::Input) -> bool {
        false
    }

    /// Dead-state pruning for reads. Answer `false` only if no sequence of
    /// operations that are neither reads nor blind writes (e.g. Appends),
    /// applied to `state`, can reach a state in which the read
    /// `input`/`output` is legal. The search then abandons a state as soon
    /// as an open read can no longer be satisfied (when no blind write that
    /// could precede that read is left), instead of first trying every
    /// order of the writes still in flight, each of which gives a distinct
    /// state the memo cannot merge. The default, `true`, never prunes.
    fn may_reach(
        &self,
        _state: &Self::State,
        _input: &Self::Input,
        _output: &Self::Output,
    ) -> bool {
        true
    }

    /// Bytes the model holds beyond its states (tables that grow during
    /// the search, like interned values), counted against
    /// [`CheckOptions::memory_bytes_max`]. The default, 0, is for models
    /// whose states own everything.
    fn memory_bytes(&self) -> u64 {
        0
    }
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Who issued it; only used when describing a failure.
    pub client: u64,
    pub input: I,
    pub output: O,
    /// When the call was issued.
    pub call: u64,
    /// When the answer arrived; `None` if it never did (see the module docs).
    pub ret: Option<u64>,
}

/// Limits on the search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Search steps (events examined) allowed per partition before the
    /// search gives up with [`Verdict::Inconclusive`]. Memory grows with it
    /// too: at most one memo entry per step.
    pub steps_per_key_max: u64,
    /// Bytes the search of one partition may hold in its memo and in the
    /// model's own tables ([`Model::memory_bytes`]) before it gives up with
    /// [`Verdict::Inconclusive`], so a deep search cannot take a machine's
    /// memory whatever its step budget.
    pub memory_bytes_max: u64,
}

/// Default for [`CheckOptions::memory_bytes_max`]: 2 GiB.
pub const DEFAULT_MEMORY_BYTES_MAX: u64 = 2 << 30;

/// Default for [`CheckOptions::steps_per_key_max`]: on the order of a second
/// of search per partition. Correct histories of a few hundred operations
/// with ~10 overlapping ones need thousands of steps, not millions; one
/// that needs more is pathological, not merely large.
pub const DEFAULT_STEPS_PER_KEY_MAX: u64 = 1 << 21;

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions {
            steps_per_key_max: DEFAULT_STEPS_PER_KEY_MAX,
            memory_bytes_max: DEFAULT_MEMORY_BYTES_MAX,
        }
    }
}

/// A history the checker refuses to judge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryError {
    /// Index of the offending operation in the history given.
    pub op: usize,
    pub reason: String,
}

/// What the search concluded about one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No linearization exists. `longest_prefix` is the longest sequence of
    /// operations (indices into the history, in linearization order) the
    /// search managed to linearize: the failure is just after it.
    NotLinearizable {
        longest_prefix: Vec<usize>,
    },
    /// The step budget ran out. Callers must treat this as a failure.
    Inconclusive {
        steps: u64,
    },
    /// The history is malformed (e.g. an answer before its call).
    Invalid(HistoryError),
}

impl Verdict {
    /// True only for [`Verdict::Linearizable`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Checks one partition with the default options.
pub fn check<M: Model>(model: &M, history: Vec<Operation<M::Input, M::Output>>) -> Verdict {
    check_with(model, &history, &CheckOptions::default())
}

/// Checks one partition.
pub fn check_with<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    opts: &CheckOptions,
) -> Verdict {
    match Search::new(model, history) {
        Ok(search) => search.run(opts),
        Err(e) => Verdict::Invalid(e),
    }
}

/// Splits `items` by `key`, keeping each partition in history order and the
/// partitions in order of first appearance (so reports are deterministic).
pub fn partition_by<K, T>(
    items: impl IntoIterator<Item = T>,
    mut key: impl FnMut(&T) -> K,
) -> Vec<(K, Vec<T>)>
where
    K: Hash + Eq + Clone,
{
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut parts: Vec<(K, Vec<T>)> = Vec::new();
    for item in items {
        let k = key(&item);
        let i = *index.entry(k.clone()).or_insert_with(|| {
            parts.push((k, Vec::new()));
            parts.len() - 1
        });
        parts[i].1.push(item);
    }
    parts
}

/// Checks each partition; answers `None` if all are linearizable, else the
/// first failing partition's key and verdict. A definite failure
/// (`NotLinearizable`, `Invalid`) stops the check and wins over an
/// `Inconclusive` partition seen earlier, because it is the more useful
/// report.
pub fn check_partitioned<M: Model, K>(
    model: &M,
    partitions: impl IntoIterator<Item = (K, Vec<Operation<M::Input, M::Output>>)>,
    opts: &CheckOptions,
) -> Option<(K, Verdict)> {
    let mut inconclusive = None;
    for (key, history) in partitions {
        match check_with(model, &history, opts) {
            Verdict::Linearizable => {}
            v @ Verdict::Inconclusive { .. } => {
                if inconclusive.is_none() {
                    inconclusive = Some((key, v));
                }
            }
            v => return Some((key, v)),
        }
    }
    inconclusive
}

/// End of a list in [`Search`]'s `next`/`prev` arrays.
const NIL: u32 = u32::MAX;
/// The list's sentinel head node.
const HEAD: u32 = 0;

/// The state of one Wing & Gong search.
///
/// Events (calls and returns) live in a doubly-linked list sorted by time,
/// stored as index arrays (node 0 is the head sentinel). Linearizing an
/// operation unlinks its call and return ("lift"); backtracking relinks
/// them in reverse order, dancing-links style, which is O(1) because a
/// lifted node keeps its own pointers.
struct Search<'a, M: Model> {
    model: &'a M,
    history: &'a [Operation<M::Input, M::Output>],
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Per node: the operation it belongs to (unused for the head).
    op_of: Vec<u32>,
    /// Per node: for a call, its return node (`NIL` if the operation never
    /// returned); `NIL` for returns. Calls are told apart by `is_call`.
    matching: Vec<u32>,
    is_call: Vec<bool>,
    /// Number of operations that returned: the search is done once all are
    /// linearized.
    completed: usize,
    /// Per operation, for [`Model::may_reach`] pruning: the blind writes
    /// that could still be linearized before this read once it is a
    /// candidate, as a range of `resets`; `None` if the op is not a
    /// completed read or the list was too long to be worth keeping.
    reset_range: Vec<Option<(u32, u32)>>,
    resets: Vec<u32>,
    /// Completed reads by return time, for the future-read pruning in `run`.
    reads_by_ret: Vec<u32>,
    /// Blind writes in the partition (completed or pending).
    blind_total: usize,
}

/// How many not-yet-linearized reads the future-read pruning looks at per
/// step. Looking at fewer is still sound (it only prunes less); the earliest
/// returning reads are the ones most likely to expose a wrong order.
const FUTURE_READS_CHECKED: usize = 8;

/// Longest list of concurrent blind writes kept per read. A read concurrent
/// with more is simply never pruned: the pruning pays off when writes are
/// mostly non-blind, and the lists must stay linear in the history's size.
const RESETS_PER_READ_MAX: usize = 64;

impl<'a, M: Model> Search<'a, M> {
    fn new(
        model: &'a M,
        history: &'a [Operation<M::Input, M::Output>],
    ) -> Result<Search<'a, M>, HistoryError> {
        // u32 node indices keep the list arrays small; two nodes per op.
        if history.len() >= (u32::MAX / 2) as usize {
            return Err(HistoryError {
                op: u32::MAX as usize / 2,
                reason: format!("too many operations in one partition: {}", history.len()),
            });
        }
        // (time, kind, op): kind 0 = call sorts before kind 1 = return at
        // equal times, which makes equal timestamps concurrent.
        let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(history.len() * 2);
        let mut completed = 0;
        for (i, op) in history.iter().enumerate() {
            events.push((op.call, 0, i as u32));
            if let Some(ret) = op.ret {
                if ret < op.call {
                    return Err(HistoryError {
                        op: i,
                        reason: format!("returns at {ret}, before its call at {}", op.call),
                    });
                }
                events.push((ret, 1, i as u32));
                completed += 1;
            }
            // A pending operation gets no return node: its return would sort
            // after every real event, and the search ends successfully
            // before reaching it (see `run`).
        }
        events.sort_unstable();

        let nodes = events.len() + 1;
        let mut next = vec![NIL; nodes];
        let mut prev = vec![NIL; nodes];
        let mut op_of = vec![NIL; nodes];
        let mut matching = vec![NIL; nodes];
        let mut is_call = vec![false; nodes];
        let mut call_node = vec![NIL; history.len()];
        for (i, &(_, kind, op)) in events.iter().enumerate() {
            let node = i as u32 + 1;
            prev[node as usize] = node - 1;
            next[node as usize - 1] = node;
            op_of[node as usize] = op;
            if kind == 0 {
                is_call[node as usize] = true;
                call_node[op as usize] = node;
            } else {
                // The call sorts first, so it is already recorded.
                matching[call_node[op as usize] as usize] = node;
            }
        }
        let (reset_range, resets) = blind_writes_per_read(model, history);
        let mut reads_by_ret: Vec<u32> = (0..history.len() as u32)
            .filter(|&i| {
                let o = &history[i as usize];
                o.ret.is_some() && model.is_read_only(&o.input)
            })
            .collect();
        reads_by_ret.sort_unstable_by_key(|&i| (history[i as usize].ret, i));
        let blind_total = history
            .iter()
            .filter(|o| model.is_blind_write(&o.input))
            .count();
        Ok(Search {
            reads_by_ret,
            blind_total,
            model,
            history,
            next,
            prev,
            op_of,
            matching,
            is_call,
            completed,
            reset_range,
            resets,
        })
    }

    /// True if, in the current configuration, the open read in call `node`
    /// can never be linearized: no blind write that could precede it is
    /// left, and the model says the other writes cannot get there.
    fn read_is_dead(&self, node: u32, state: &M::State, linearized: &[u64]) -> bool {
        let op = self.op_of[node as usize] as usize;
        let Some((start, end)) = self.reset_range[op] else {
            return false;
        };
        let pending_reset = self.resets[start as usize..end as usize]
            .iter()
            .any(|&w| linearized[w as usize / 64] & (1u64 << (w % 64)) == 0);
        let o = &self.history[op];
        !pending_reset && !self.model.may_reach(state, &o.input, &o.output)
    }

    /// True if some completed read that is not linearized yet can never be:
    /// with no blind write left to linearize, every state change from here
    /// on is one the model's `may_reach` can see through, so a read whose
    /// value is unreachable from `state` dooms this configuration. This
    /// covers reads not yet called, which `read_is_dead` does not, and is
    /// what keeps append-only keys (every order of concurrent appends is a
    /// distinct state) from exploding.
    fn future_read_dead(&self, state: &M::State, linearized: &[u64]) -> bool {
        self.reads_by_ret
            .iter()
            .filter(|&&r| linearized[r as usize / 64] & (1u64 << (r % 64)) == 0)
            .take(FUTURE_READS_CHECKED)
            .any(|&r| {
                let o = &self.history[r as usize];
                !self.model.may_reach(state, &o.input, &o.output)
            })
    }

    fn unlink(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    fn relink(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = node;
        if n != NIL {
            self.prev[n as usize] = node;
        }
    }

    fn lift(&mut self, call: u32) {
        self.unlink(call);
        let ret = self.matching[call as usize];
        if ret != NIL {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, call: u32) {
        let ret = self.matching[call as usize];
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }

    /// Pushes the calls that may be linearized next (those before the first
    /// return in the list) onto `out`, in the order the search should try
    /// them: legal-looking reads first (see [`Model::is_read_only`]), then
    /// earliest deadline (return time) first, pending operations last.
    /// Earliest-deadline order follows real time more closely than call
    /// order, so on correct histories the first path usually succeeds.
    fn candidates(&self, out: &mut Vec<u32>) {
        let start = out.len();
        let mut node = self.next[HEAD as usize];
        while node != NIL && self.is_call[node as usize] {
            out.push(node);
            node = self.next[node as usize];
        }
        out[start..].sort_unstable_by_key(|&node| {
            let op = self.op_of[node as usize] as usize;
            let o = &self.history[op];
            let read = self.model.is_read_only(&o.input);
            (!read, o.ret.unwrap_or(u64::MAX), o.call, op)
        });
    }

    fn run(mut self, opts: &CheckOptions) -> Verdict {
        let steps_max = opts.steps_per_key_max;
        if self.completed == 0 {
            return Verdict::Linearizable;
        }
        let n_ops = self.history.len();
        // Two independent Zobrist tables: the linearized set's two hashes.
        let zobrist: Vec<[u64; 2]> = (0..n_ops as u64)
            .map(|i| {
                [
                    mix64((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    mix64((i + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x5851_F42D_4C95_7F2D),
                ]
            })
            .collect();
        // Lowe's memo: (set of linearized ops, state) pairs already reached.
        // Everything below a pair is explored before the search leaves it,
        // so meeting it again can only fail the same way. A pair is kept as
        // a 128-bit fingerprint, 16 bytes whatever the history's length (the
        // set itself is n/8 bytes, which made deep searches of long
        // histories take tens of GB). A false match would need two
        // independent 64-bit hashes to collide at once (odds about
        // entries^2 / 2^128), and could only prune an unexplored branch:
        // a history wrongly reported NotLinearizable, never a violation
        // passed.
        let mut cache: HashSet<Fingerprint, BuildHasherDefault<PassThrough>> = HashSet::default();
        let mut linearized = vec![0u64; n_ops.div_ceil(64)];
        let mut linearized_hash = [0u64; 2];
        let mut linearized_completed = 0usize;
        let mut blind_left = self.blind_total;
        let mut state = self.model.init();
        // Candidate lists of all frames, stacked, so frames allocate nothing.
        let mut candidates: Vec<u32> = Vec::new();
        self.candidates(&mut candidates);
        let mut frames: Vec<Frame<M::State>> = vec![Frame {
            start: 0,
            end: candidates.len(),
            next: 0,
            chosen: NIL,
            before: None,
        }];
        // Longest prefix seen; copied out lazily, only when the search backs
        // off a new maximum, so a long successful run copies nothing.
        let mut best: Vec<u32> = Vec::new();
        let mut best_len = 0usize;
        let mut best_dirty = false;

        let mut steps = 0u64;
        loop {
            let depth = frames.len() - 1;
            let Some(frame) = frames.last_mut() else {
                // Unreachable: the root frame is never popped below.
                return Verdict::Inconclusive { steps };
            };
            if frame.next == frame.end {
                // Every candidate here failed: undo the choice that led here.
                if best_dirty {
                    best.clear();
                    best.extend(frames[1..].iter().map(|f| self.op_of[f.chosen as usize]));
                    best_dirty = false;
                }
                if depth == 0 {
                    return Verdict::NotLinearizable {
                        longest_prefix: best.iter().map(|&op| op as usize).collect(),
                    };
                }
                let Some(Frame {
                    start,
                    chosen,
                    before: Some(before),
                    ..
                }) = frames.pop()
                else {
                    return Verdict::Inconclusive { steps };
                };
                candidates.truncate(start);
                let op = self.op_of[chosen as usize] as usize;
                linearized[op / 64] &= !(1u64 << (op % 64));
                linearized_hash[0] ^= zobrist[op][0];
                linearized_hash[1] ^= zobrist[op][1];
                if self.history[op].ret.is_some() {
                    linearized_completed -= 1;
                }
                if self.model.is_blind_write(&self.history[op].input) {
                    blind_left += 1;
                }
                state = before;
                self.unlift(chosen);
                continue;
            }
            if steps >= steps_max {
                return Verdict::Inconclusive { steps };
            }
            steps += 1;
            if steps.is_multiple_of(MEMORY_CHECK_STEPS) {
                let memo = cache.capacity() as u64 * MEMO_ENTRY_BYTES;
                if memo + self.model.memory_bytes() > opts.memory_bytes_max {
                    return Verdict::Inconclusive { steps };
                }
            }

            let node = candidates[frame.next];
            frame.next += 1;
            let op = self.op_of[node as usize] as usize;
            let o = &self.history[op];
            let Some(new_state) = self.model.step(&state, &o.input, &o.output) else {
                continue;
            };
            if new_state == state && self.model.is_read_only(&o.input) {
                // A read that is legal now may as well happen now: any
                // linearization placing it later stays valid with it moved
                // here (it changes no state, and everything that must
                // precede it already has). So if it fails, this frame fails.
                frame.next = frame.end;
            }
            let (word, bit) = (op / 64, 1u64 << (op % 64));
            linearized[word] |= bit;
            let new_hash = [
                linearized_hash[0] ^ zobrist[op][0],
                linearized_hash[1] ^ zobrist[op][1],
            ];
            let fingerprint = Fingerprint([
                mix64(new_hash[0] ^ fx_hash(&new_state)),
                mix64(new_hash[1] ^ sip_hash(&new_state)),
            ]);
            if !cache.insert(fingerprint) {
                linearized[word] &= !bit;
                continue;
            }
            linearized_hash = new_hash;
            if self.model.is_blind_write(&o.input) {
                blind_left -= 1;
            }
            if o.ret.is_some() {
                linearized_completed += 1;
                if linearized_completed == self.completed {
                    return Verdict::Linearizable;
                }
            }
            let before = std::mem::replace(&mut state, new_state);
            self.lift(node);
            let start = candidates.len();
            self.candidates(&mut candidates);
            let dead = candidates[start..]
                .iter()
                .any(|&c| self.read_is_dead(c, &state, &linearized))
                || (blind_left == 0 && self.future_read_dead(&state, &linearized));
            if dead {
                // Nothing to try: the frame backs off at once.
                candidates.truncate(start);
            }
            frames.push(Frame {
                start,
                end: candidates.len(),
                next: start,
                chosen: node,
                before: Some(before),
            });
            if depth + 1 > best_len {
                best_len = depth + 1;
                best_dirty = true;
            }
        }
    }
}

/// One level of the depth-first search: the candidates to try in one
/// configuration, and how to undo the choice that reached it.
struct Frame<S> {
    /// This frame's candidates are `candidates[start..end]`.
    start: usize,
    end: usize,
    /// Next candidate to try.
    next: usize,
    /// The call node linearized to reach this frame (`NIL` for the root).
    chosen: u32,
    /// The state before `chosen` (`None` for the root).
    before: Option<S>,
}

/// For each completed read, the blind writes that are not forced to precede
/// it by real time (`ret >= read.call`, or no return) and may be linearized
/// before it (`call <= read.ret`). Those forced before it are already
/// linearized whenever the read is a candidate, so once every write listed
/// here is linearized too, only non-blind writes can change the state
/// before the read.
#[allow(clippy::type_complexity)]
fn blind_writes_per_read<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
) -> (Vec<Option<(u32, u32)>>, Vec<u32>) {
    let mut ranges = vec![None; history.len()];
    let mut resets = Vec::new();
    // Completed blind writes by call time: those overlapping a read are
    // called at most `longest` before it, so a backwards scan from the last
    // one called before the read's return can stop there. Pending ones
    // overlap every read that returns after their call.
    let mut completed: Vec<(u64, u32)> = Vec::new();
    let mut pending: Vec<(u64, u32)> = Vec::new();
    let mut longest = 0u64;
    for (i, o) in history.iter().enumerate() {
        if model.is_blind_write(&o.input) {
            match o.ret {
                Some(ret) => {
                    longest = longest.max(ret.saturating_sub(o.call));
                    completed.push((o.call, i as u32));
                }
                None => pending.push((o.call, i as u32)),
            }
        }
    }
    completed.sort_unstable();
    pending.sort_unstable();
    for (r, read) in history.iter().enumerate() {
        let Some(read_ret) = read.ret else { continue };
        if !model.is_read_only(&read.input) {
            continue;
        }
        let start = resets.len();
        let mut complete = true;
        let mut scanned = 0;
        let upto = pending.partition_point(|&(call, _)| call <= read_ret);
        let pending_here = pending[..upto].iter().map(|&(_, w)| w);
        let upto = completed.partition_point(|&(call, _)| call <= read_ret);
        let oldest = read.call.saturating_sub(longest);
        let completed_here = completed[..upto]
            .iter()
            .rev()
            .take_while(|&&(call, _)| call >= oldest)
            .map(|&(_, w)| w);
        for w in pending_here.chain(completed_here) {
            scanned += 1;
            if scanned > RESETS_PER_READ_MAX * 4 || resets.len() - start == RESETS_PER_READ_MAX {
                complete = false;
                break;
            }
            if history[w as usize].ret.is_none_or(|ret| ret >= read.call) {
                resets.push(w);
            }
        }
        if complete {
            ranges[r] = Some((start as u32, resets.len() as u32));
        } else {
            resets.truncate(start);
        }
    }
    (ranges, resets)
}

/// How often (in steps) the search compares its memory with
/// [`CheckOptions::memory_bytes_max`].
const MEMORY_CHECK_STEPS: u64 = 1 << 16;
/// What one memo slot costs: the 16-byte fingerprint and the hash table's
/// control byte, rounded up.
const MEMO_ENTRY_BYTES: u64 = 17;

/// A memo entry: two independent hashes of (linearized set, state). The
/// table hashes it by its first word, already well mixed.
#[derive(PartialEq, Eq)]
struct Fingerprint([u64; 2]);

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.0[0]);
    }
}

/// A second state hash, independent of [`fx_hash`], for the memo's
/// fingerprints: SipHash (std's `DefaultHasher`, the same keys for every
/// instance; states are small: the KV model's are interned ids).
fn sip_hash<T: Hash>(v: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Hasher for already well-mixed `u64` hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is expected; fold anything else rather than panic.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(FX_SEED);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

const FX_SEED: u64 = 0x517c_c1b7_2722_0a95;

/// The rustc "Fx" hash: fast and good enough for memo keys (we mix the
/// result afterwards). SipHash would dominate the search's cost. Models'
/// own lookup tables may use it too, through [`FxBuildHasher`].
#[derive(Default)]
pub(crate) struct FxHasher(u64);

/// `BuildHasher` for [`FxHasher`], for models' hot-path tables.
pub(crate) type FxBuildHasher = BuildHasherDefault<FxHasher>;

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.add(v as u64);
    }
    fn write_u16(&mut self, v: u16) {
        self.add(v as u64);
    }
    fn write_u32(&mut self, v: u32) {
        self.add(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

fn fx_hash<T: Hash>(v: &T) -> u64 {
    let mut h = FxHasher::default();
    v.hash(&mut h);
    h.finish()
}

/// SplitMix64's finalizer: spreads entropy to every bit, which the hash
/// table's bucket (low bits) and tag (high bits) both need.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of small integers: `Some(v)` writes, `None` reads.
    struct Register;

    impl Model for Register {
        type State = u8;
        type Input = Option<u8>;
        type Output = u8;
        fn init(&self) -> u8 {
            0
        }
        fn step(&self, state: &u8, input: &Option<u8>, output: &u8) -> Option<u8> {
            match input {
                Some(v) => Some(*v),
                None => (state == output).then_some(*state),
            }
        }
        fn is_read_only(&self, input: &Option<u8>) -> bool {
            input.is_none()
        }
    }

    fn op(input: Option<u8>, output: u8, call: u64, ret: Option<u64>) -> Operation<Option<u8>, u8> {
        Operation {
            client: 0,
            input,
            output,
            call,
            ret,
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check(&Register, vec![]), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_write_may_be_seen_by_an_overlapping_read() {
        let h = vec![op(Some(1), 0, 0, Some(10)), op(None, 1, 5, Some(6))];
        assert_eq!(check(&Register, h), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_reports_longest_prefix() {
        let h = vec![
            op(Some(1), 0, 0, Some(10)),
            op(Some(2), 0, 20, Some(30)),
            op(None, 1, 40, Some(50)),
        ];
        assert_eq!(
            check(&Register, h),
            Verdict::NotLinearizable {
                longest_prefix: vec![0, 1]
            }
        );
    }

    #[test]
    fn equal_timestamps_are_concurrent() {
        // The read's call coincides with the write's return: either order.
        let h = vec![op(Some(1), 0, 0, Some(10)), op(None, 0, 10, Some(20))];
        assert!(check(&Register, h).is_ok());
        let h = vec![op(Some(1), 0, 0, Some(10)), op(None, 0, 11, Some(20))];
        assert!(!check(&Register, h).is_ok());
    }

    #[test]
    fn pending_operation_is_optional_but_not_before_its_call() {
        let read = |v| op(None, v, 100, Some(110));
        assert!(check(&Register, vec![op(Some(7), 0, 0, None), read(7)]).is_ok());
        assert!(check(&Register, vec![op(Some(7), 0, 0, None), read(0)]).is_ok());
        let late = vec![op(Some(7), 0, 200, None), read(7)];
        assert!(!check(&Register, late).is_ok());
    }

    #[test]
    fn return_before_call_is_rejected() {
        let h = vec![op(Some(1), 0, 0, Some(1)), op(None, 1, 10, Some(5))];
        match check(&Register, h) {
            Verdict::Invalid(e) => assert_eq!(e.op, 1, "{e:?}"),
            v => panic!("expected Invalid, got {v:?}"),
        }
    }

    #[test]
    fn partitioned_check_names_the_failing_partition() {
        let history: Vec<(u32, Operation<Option<u8>, u8>)> = (0..100u32)
            .flat_map(|k| {
                let v = if k == 42 { 9 } else { 3 };
                [
                    (k, op(Some(3), 0, 0, Some(10))),
                    (k, op(None, v, 20, Some(30))),
                ]
            })
            .collect();
        let parts = partition_by(history, |(k, _)| *k)
            .into_iter()
            .map(|(k, ops)| (k, ops.into_iter().map(|(_, o)| o).collect()));
        let failure = check_partitioned(&Register, parts, &CheckOptions::default());
        assert!(
            matches!(failure, Some((42, Verdict::NotLinearizable { .. }))),
            "{failure:?}"
        );
    }

    #[test]
    fn budget_exhaustion_is_inconclusive() {
        // Twenty overlapping writes and a read of a value never written: the
        // search must try every subset and order before giving up.
        let mut h: Vec<_> = (1..=20).map(|v| op(Some(v), 0, 0, Some(100))).collect();
        h.push(op(None, 99, 0, Some(100)));
        let opts = CheckOptions {
            steps_per_key_max: 1000,
            ..CheckOptions::default()
        };
        assert_eq!(
            check_with(&Register, &h, &opts),
            Verdict::Inconclusive { steps: 1000 }
        );
    }
}
