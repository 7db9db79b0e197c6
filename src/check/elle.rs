//! An Elle-style checker for list-append transaction histories (Kingsbury
//! and Alvaro, "Elle: Inferring Isolation Anomalies from Experimental
//! Observations", VLDB 2020), for issue 10's strict serializability.
//!
//! Every key holds a list; transactions append unique elements to keys and
//! read whole lists. Because a read returns every element appended before
//! it, in order, the reads reveal each key's *version order*: the longest
//! read of a key is its order so far, and every other read must be a
//! prefix of it. From that order the checker infers, without guessing, who
//! wrote before whom (ww), who read whose write (wr) and who read a state
//! that another transaction then overwrote (rw, an anti-dependency), adds
//! real-time edges (a transaction that completed before another was
//! invoked must come first), and looks for cycles: a strictly serializable
//! history has none.
//!
//! What it reports ([`AnomalyKind`]): a read that is not a prefix of the
//! longest (an incompatible order), an element read twice or read without
//! anyone appending it, a transaction whose reads disagree with its own
//! earlier reads and appends (internal), G1a (an aborted transaction's
//! element read), G1b (a read ending inside another transaction's appends
//! to the key), a transaction's appends to one key not contiguous in the
//! order, an acknowledged append missing from a read invoked after it
//! completed, and dependency cycles: G0 (ww edges only), G1c (ww and wr),
//! G-single and G2 (with one, or more, rw edges), and real-time cycles
//! (the data edges alone are acyclic, the real-time order closes the
//! cycle). Each cycle is reported as the weakest kind found in its
//! strongly connected component, with every transaction and key on it.
//!
//! Transactions of unknown outcome (a client that died, an answer that
//! never came): their appends may have committed, so a transaction of
//! unknown outcome joins the graph if some read observed one of its
//! elements (then it committed), and is left out otherwise; it never
//! completes, so it has no outgoing real-time edge. Aborted transactions'
//! elements must never be read (G1a); reads of aborted and unknown
//! transactions are not used.
//!
//! Cost: linear in the history (hash maps keyed by key and element; each
//! key's order walked once; reads compared to it once; the real-time
//! order encoded with one virtual node per completion, so it adds a
//! linear number of edges instead of a quadratic one; Tarjan's strongly
//! connected components, iterative). A pure module: it only reads the
//! history.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;

/// An appended element: unique per key across the whole history.
pub type Element = u64;

/// A transaction's outcome as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Committed,
    /// Known not to have taken effect.
    Aborted,
    /// The client never learnt (died, or the answer was lost): it may have
    /// committed.
    Unknown,
}

/// One operation inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MicroOp {
    Append {
        key: Bytes,
        element: Element,
    },
    /// `list`: what the read saw (an absent key reads as empty); `None`
    /// when the transaction's outcome is not known.
    Read {
        key: Bytes,
        list: Option<Vec<Element>>,
    },
}

/// One transaction of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    pub client: u64,
    /// Virtual time the client invoked it.
    pub invoke: u64,
    /// Virtual time its outcome reached the client ([`NEVER`] if it did
    /// not).
    pub complete: u64,
    pub status: Status,
    pub ops: Vec<MicroOp>,
}

/// The completion time of a transaction that never completed.
pub const NEVER: u64 = u64::MAX;

/// A client id the messages name "final read" (a read of the store's final
/// state that a driver adds after every transaction completed).
pub const FINAL_READER: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// The history breaks the workload's promise (an element appended twice
    /// to one key): the checker cannot trust it.
    InvalidHistory,
    /// A transaction's read disagrees with its own earlier reads and
    /// appends of that key.
    Internal,
    /// Two reads of a key, neither a prefix of the other.
    IncompatibleOrder,
    /// An element appears twice in a read.
    Duplicate,
    /// A read holds an element no transaction appended.
    GarbageRead,
    /// A committed transaction read an element of an aborted one.
    G1a,
    /// A committed transaction read a state between another one's appends.
    G1b,
    /// A transaction's appends to one key are not contiguous, in order, in
    /// the key's version order (another write between them, or only some
    /// of them visible).
    NonAtomicAppends,
    /// A committed append is missing from a read invoked after it
    /// completed.
    LostAppend,
    /// A cycle of write-write dependencies.
    G0,
    /// A cycle of write-write and write-read dependencies.
    G1c,
    /// A cycle with exactly one anti-dependency (read-write) edge.
    GSingle,
    /// A cycle with two or more anti-dependency edges.
    G2,
    /// Acyclic on data dependencies alone, but cyclic with real time: not
    /// strictly serializable.
    RealTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub message: String,
}

/// What [`check`] found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub txns: usize,
    /// Transactions in the dependency graph (committed, and unknown ones
    /// that some read observed).
    pub in_graph: usize,
    /// Data dependency edges (ww, wr, rw) and real-time edges (counting
    /// the virtual nodes' links).
    pub dependency_edges: usize,
    pub realtime_edges: usize,
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    pub fn has(&self, kind: AnomalyKind) -> bool {
        self.anomalies.iter().any(|a| a.kind == kind)
    }

    /// The anomalies, one paragraph each (at most `max`).
    pub fn describe(&self, max: usize) -> String {
        let mut s = String::new();
        for a in self.anomalies.iter().take(max) {
            let _ = writeln!(s, "{:?}: {}", a.kind, a.message);
        }
        if self.anomalies.len() > max {
            let _ = writeln!(s, "... and {} more", self.anomalies.len() - max);
        }
        s.trim_end().to_string()
    }
}

/// Most cycles described (each strongly connected component gives one).
const CYCLES_REPORTED_MAX: usize = 8;
/// Most anomalies of one non-cycle kind described.
const PER_KIND_MAX: usize = 8;
/// Elements shown of a list in a message.
const SHOWN_MAX: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EdgeKind {
    Ww = 1,
    Wr = 2,
    Rw = 4,
    Rt = 8,
}

#[derive(Clone, Copy, Debug)]
struct Edge {
    to: u32,
    kind: EdgeKind,
    /// The key (data edges), and the two elements that explain it: ww the
    /// first writer's element and the next; wr the element read last; rw
    /// the last element read (`None`: the read was empty) and the next.
    key: u32,
    a: Option<Element>,
    b: Element,
}

/// Who appended an element: the transaction, the element's position among
/// that transaction's appends to the key, and how many it made.
#[derive(Clone, Copy)]
struct Writer {
    txn: u32,
    pos: u32,
    count: u32,
}

struct Checker<'h> {
    history: &'h [Txn],
    key_names: Vec<&'h Bytes>,
    anomalies: Vec<Anomaly>,
    per_kind: HashMap<AnomalyKind, usize>,
}

/// Checks a list-append history (see the module docs).
pub fn check(history: &[Txn]) -> Report {
    assert!(history.len() < u32::MAX as usize / 2, "history too long");
    let mut c = Checker {
        history,
        key_names: Vec::new(),
        anomalies: Vec::new(),
        per_kind: HashMap::new(),
    };
    c.run()
}

/// A read of one key by a committed transaction: the first of its reads of
/// the key (later ones are checked against it by the internal check), with
/// the length of its external part (before the transaction's own appends).
struct ExtRead {
    txn: u32,
    key: u32,
    op: u32,
    external_len: usize,
}

impl<'h> Checker<'h> {
    fn report(&mut self, kind: AnomalyKind, message: impl FnOnce() -> String) {
        let n = self.per_kind.entry(kind).or_default();
        *n += 1;
        let max = match kind {
            AnomalyKind::G0
            | AnomalyKind::G1c
            | AnomalyKind::GSingle
            | AnomalyKind::G2
            | AnomalyKind::RealTime => CYCLES_REPORTED_MAX,
            _ => PER_KIND_MAX,
        };
        if *n <= max {
            self.anomalies.push(Anomaly {
                kind,
                message: message(),
            });
        }
    }

    fn key(&self, k: u32) -> String {
        String::from_utf8_lossy(self.key_names[k as usize]).into_owned()
    }

    fn txn(&self, t: u32) -> String {
        let x = &self.history[t as usize];
        let done = if x.complete == NEVER {
            "never completed".to_string()
        } else {
            format!("completed {}", ms(x.complete))
        };
        let client = if x.client == FINAL_READER {
            "the final read".to_string()
        } else {
            format!("client {}", x.client)
        };
        format!(
            "T{t} ({client}, {:?}, invoked {}, {done})",
            x.status,
            ms(x.invoke)
        )
    }

    fn list(&self, t: u32, op: u32) -> &'h [Element] {
        match &self.history[t as usize].ops[op as usize] {
            MicroOp::Read {
                list: Some(list), ..
            } => list,
            _ => unreachable!("a read with a value"),
        }
    }

    fn run(&mut self) -> Report {
        let history = self.history;
        // Keys to dense ids.
        let mut key_ids: HashMap<&'h Bytes, u32> = HashMap::new();
        let mut intern = |k: &'h Bytes, names: &mut Vec<&'h Bytes>| -> u32 {
            *key_ids.entry(k).or_insert_with(|| {
                names.push(k);
                names.len() as u32 - 1
            })
        };
        let mut names = Vec::new();
        // Per transaction: its ops' key ids.
        let mut op_keys: Vec<Vec<u32>> = Vec::with_capacity(history.len());
        for t in history {
            op_keys.push(
                t.ops
                    .iter()
                    .map(|op| match op {
                        MicroOp::Append { key, .. } | MicroOp::Read { key, .. } => {
                            intern(key, &mut names)
                        }
                    })
                    .collect(),
            );
        }
        self.key_names = names;
        let keys = self.key_names.len();

        // Who appended what.
        let mut writers: HashMap<(u32, Element), Writer> = HashMap::new();
        for (t, txn) in history.iter().enumerate() {
            let ks = &op_keys[t];
            for (i, op) in txn.ops.iter().enumerate() {
                let MicroOp::Append { element, .. } = op else {
                    continue;
                };
                let key = ks[i];
                let pos = (0..i)
                    .filter(|&j| ks[j] == key && matches!(txn.ops[j], MicroOp::Append { .. }))
                    .count() as u32;
                let count = (0..txn.ops.len())
                    .filter(|&j| ks[j] == key && matches!(txn.ops[j], MicroOp::Append { .. }))
                    .count() as u32;
                let w = Writer {
                    txn: t as u32,
                    pos,
                    count,
                };
                if let Some(old) = writers.insert((key, *element), w) {
                    writers.insert((key, *element), old);
                    let (a, b) = (self.txn(old.txn), self.txn(t as u32));
                    let k = self.key(key);
                    self.report(AnomalyKind::InvalidHistory, || {
                        format!("element {element} appended to key {k} twice, by {a} and by {b}")
                    });
                }
            }
        }

        // Internal consistency, and each committed transaction's external
        // reads.
        let mut ext_reads: Vec<ExtRead> = Vec::new();
        for (t, txn) in history.iter().enumerate() {
            let ks = &op_keys[t];
            // Per key touched: (first read op, appends after it) or the
            // appends so far with no read yet.
            let mut state: Vec<(u32, Option<u32>, Vec<Element>)> = Vec::new();
            for (i, op) in txn.ops.iter().enumerate() {
                let key = ks[i];
                let at = match state.iter().position(|s| s.0 == key) {
                    Some(at) => at,
                    None => {
                        state.push((key, None, Vec::new()));
                        state.len() - 1
                    }
                };
                match op {
                    MicroOp::Append { element, .. } => state[at].2.push(*element),
                    MicroOp::Read { list: None, .. } => {}
                    MicroOp::Read {
                        list: Some(list), ..
                    } => {
                        let (_, first, appended) = &state[at];
                        let ok = match first {
                            Some(f) => {
                                let before = self.list(t as u32, *f);
                                list.len() == before.len() + appended.len()
                                    && list[..before.len()] == *before
                                    && list[before.len()..] == appended[..]
                            }
                            None => list.ends_with(appended),
                        };
                        if !ok {
                            let (x, k) = (self.txn(t as u32), self.key(key));
                            let expect = match first {
                                Some(f) => {
                                    let mut e = self.list(t as u32, *f).to_vec();
                                    e.extend_from_slice(appended);
                                    show(&e)
                                }
                                None => format!("a list ending in {}", show(appended)),
                            };
                            self.report(AnomalyKind::Internal, || {
                                format!(
                                    "{x} read {} from key {k}, but its own earlier reads and \
                                     appends say {expect}",
                                    show(list)
                                )
                            });
                        }
                        if first.is_none() {
                            if ok && txn.status == Status::Committed {
                                ext_reads.push(ExtRead {
                                    txn: t as u32,
                                    key,
                                    op: i as u32,
                                    external_len: list.len() - appended.len(),
                                });
                            }
                            state[at] = (key, Some(i as u32), Vec::new());
                        }
                    }
                }
            }
        }

        // Version orders: the longest committed read of each key, which
        // every other read must be a prefix of.
        let mut longest: Vec<Option<(u32, u32)>> = vec![None; keys];
        for r in &ext_reads {
            let len = self.list(r.txn, r.op).len();
            let l = &mut longest[r.key as usize];
            if l.is_none_or(|(t, op)| self.list(t, op).len() < len) {
                *l = Some((r.txn, r.op));
            }
        }
        let order: Vec<&'h [Element]> = longest
            .iter()
            .map(|l| l.map_or(&[][..], |(t, op)| self.list(t, op)))
            .collect();
        // Reads that are not prefixes give no edges (one report per key).
        let mut prefix_ok = vec![true; ext_reads.len()];
        let mut incompatible = vec![false; keys];
        for (ri, r) in ext_reads.iter().enumerate() {
            let list = self.list(r.txn, r.op);
            let o = order[r.key as usize];
            if o.starts_with(list) {
                continue;
            }
            prefix_ok[ri] = false;
            if !std::mem::replace(&mut incompatible[r.key as usize], true) {
                let at = list.iter().zip(o).take_while(|(a, b)| a == b).count();
                let (lt, lop) = longest[r.key as usize].expect("a longer read");
                let (x, y, k) = (self.txn(r.txn), self.txn(lt), self.key(r.key));
                let (shown_a, shown_b) = (show(list), show(self.list(lt, lop)));
                self.report(AnomalyKind::IncompatibleOrder, || {
                    format!(
                        "key {k}: {x} read {shown_a} and {y} read {shown_b}; neither is a \
                         prefix of the other (they differ at index {at})"
                    )
                });
            }
        }

        // The elements of each order: appended by someone, once, not by an
        // aborted transaction, each transaction's appends contiguous.
        let mut in_graph: Vec<bool> = history
            .iter()
            .map(|t| t.status == Status::Committed)
            .collect();
        let mut observed: HashMap<(u32, Element), usize> = HashMap::new();
        for (k, o) in order.iter().enumerate() {
            let k = k as u32;
            let reader = longest[k as usize].map_or(0, |(t, _)| t);
            for (i, e) in o.iter().enumerate() {
                if let Some(first) = observed.insert((k, *e), i) {
                    let (x, kn) = (self.txn(reader), self.key(k));
                    self.report(AnomalyKind::Duplicate, || {
                        format!(
                            "{x} read element {e} twice in key {kn} (at index {first} and {i}) \
                             of {}",
                            show(o)
                        )
                    });
                    continue;
                }
                let Some(w) = writers.get(&(k, *e)).copied() else {
                    let (x, kn) = (self.txn(reader), self.key(k));
                    self.report(AnomalyKind::GarbageRead, || {
                        format!("{x} read element {e} in key {kn}, which no transaction appended")
                    });
                    continue;
                };
                match history[w.txn as usize].status {
                    Status::Aborted => {
                        let (x, y, kn) = (self.txn(reader), self.txn(w.txn), self.key(k));
                        self.report(AnomalyKind::G1a, || {
                            format!(
                                "{x} read element {e} of key {kn}, appended by the aborted \
                                 {y}"
                            )
                        });
                        continue;
                    }
                    Status::Unknown => in_graph[w.txn as usize] = true,
                    Status::Committed => {}
                }
                // The element before must be this transaction's previous
                // append to the key (and none before its first).
                let prev = if i > 0 {
                    writers.get(&(k, o[i - 1])).copied()
                } else {
                    None
                };
                let fits = match prev {
                    Some(p) if p.txn == w.txn => p.pos + 1 == w.pos,
                    _ => w.pos == 0,
                };
                if !fits {
                    let (y, kn) = (self.txn(w.txn), self.key(k));
                    self.report(AnomalyKind::NonAtomicAppends, || {
                        format!(
                            "{y} appended {} elements to key {kn}, and its element {e} (append \
                             #{} of them) sits at index {i} of the order {} without its \
                             predecessor right before it",
                            w.count,
                            w.pos + 1,
                            show(o)
                        )
                    });
                }
            }
        }
        // G1b: a read ending on a transaction's non-final append.
        for (ri, r) in ext_reads.iter().enumerate() {
            if !prefix_ok[ri] || r.external_len == 0 {
                continue;
            }
            let last = self.list(r.txn, r.op)[r.external_len - 1];
            let Some(w) = writers.get(&(r.key, last)).copied() else {
                continue;
            };
            if w.txn != r.txn && w.pos + 1 < w.count {
                let (x, y, k) = (self.txn(r.txn), self.txn(w.txn), self.key(r.key));
                self.report(AnomalyKind::G1b, || {
                    format!(
                        "{x} read key {k} ending in {last}, append #{} of the {} that {y} made \
                         to it: an intermediate state",
                        w.pos + 1,
                        w.count
                    )
                });
            }
        }
        // Lost appends: committed, never read, though a committed read of
        // the key was invoked after the append completed.
        let mut last_read_invoke: Vec<Option<(u64, u32)>> = vec![None; keys];
        for r in &ext_reads {
            let inv = history[r.txn as usize].invoke;
            let l = &mut last_read_invoke[r.key as usize];
            if l.is_none_or(|(i, _)| i < inv) {
                *l = Some((inv, r.txn));
            }
        }
        let mut lost: Vec<(u32, u32, Element)> = writers
            .iter()
            .filter(|((k, e), w)| {
                history[w.txn as usize].status == Status::Committed
                    && !observed.contains_key(&(*k, *e))
                    && last_read_invoke[*k as usize]
                        .is_some_and(|(inv, _)| inv > history[w.txn as usize].complete)
            })
            .map(|((k, e), w)| (w.txn, *k, *e))
            .collect();
        lost.sort_unstable();
        for (t, k, e) in lost {
            let (_, reader) = last_read_invoke[k as usize].expect("filtered");
            let (x, y, kn) = (self.txn(t), self.txn(reader), self.key(k));
            self.report(AnomalyKind::LostAppend, || {
                format!(
                    "{x} appended {e} to key {kn} and committed, but {y}, invoked after that, \
                     read the key without it (and no read ever saw it)"
                )
            });
        }

        // The dependency graph: transactions 0..n, then one virtual node
        // per completion (real time).
        let n = history.len();
        let mut adj: Vec<Vec<Edge>> = vec![Vec::new(); n];
        let mut dependency_edges = 0;
        let mut add = |adj: &mut Vec<Vec<Edge>>, from: u32, e: Edge| {
            if from != e.to {
                adj[from as usize].push(e);
                dependency_edges += 1;
            }
        };
        for (k, o) in order.iter().enumerate() {
            if incompatible[k] {
                // The order itself is in doubt.
                continue;
            }
            for pair in o.windows(2) {
                let (Some(a), Some(b)) = (
                    writers.get(&(k as u32, pair[0])),
                    writers.get(&(k as u32, pair[1])),
                ) else {
                    continue;
                };
                if in_graph[a.txn as usize] && in_graph[b.txn as usize] {
                    let e = Edge {
                        to: b.txn,
                        kind: EdgeKind::Ww,
                        key: k as u32,
                        a: Some(pair[0]),
                        b: pair[1],
                    };
                    add(&mut adj, a.txn, e);
                }
            }
        }
        for (ri, r) in ext_reads.iter().enumerate() {
            if !prefix_ok[ri] || incompatible[r.key as usize] {
                continue;
            }
            let o = order[r.key as usize];
            let n_read = r.external_len;
            let last = n_read.checked_sub(1).map(|i| o[i]);
            if let Some(last) = last {
                if let Some(w) = writers.get(&(r.key, last)) {
                    if in_graph[w.txn as usize] {
                        let e = Edge {
                            to: r.txn,
                            kind: EdgeKind::Wr,
                            key: r.key,
                            a: None,
                            b: last,
                        };
                        add(&mut adj, w.txn, e);
                    }
                }
            }
            if let Some(next) = o.get(n_read) {
                if let Some(w) = writers.get(&(r.key, *next)) {
                    if in_graph[w.txn as usize] {
                        let e = Edge {
                            to: w.txn,
                            kind: EdgeKind::Rw,
                            key: r.key,
                            a: last,
                            b: *next,
                        };
                        add(&mut adj, r.txn, e);
                    }
                }
            }
        }
        // Real time: virtual node V(i) for the i-th completion in time
        // order; T -> V(its rank), V(i) -> V(i+1), and V(j) -> T2 for the
        // last completion j strictly before T2's invocation. T1 reaches T2
        // through them exactly when T1 completed before T2 was invoked.
        let mut done: Vec<u32> = (0..n as u32)
            .filter(|&t| in_graph[t as usize] && history[t as usize].complete != NEVER)
            .collect();
        done.sort_unstable_by_key(|&t| history[t as usize].complete);
        let completions: Vec<u64> = done.iter().map(|&t| history[t as usize].complete).collect();
        let mut realtime_edges = 0;
        adj.resize(n + done.len(), Vec::new());
        let rt = |to: usize| Edge {
            to: to as u32,
            kind: EdgeKind::Rt,
            key: u32::MAX,
            a: None,
            b: 0,
        };
        for (i, &t) in done.iter().enumerate() {
            adj[t as usize].push(rt(n + i));
            if i + 1 < done.len() {
                adj[n + i].push(rt(n + i + 1));
            }
            realtime_edges += 2;
        }
        for t in 0..n {
            if !in_graph[t] {
                continue;
            }
            let before = completions.partition_point(|&c| c < history[t].invoke);
            if before > 0 {
                adj[n + before - 1].push(rt(t));
                realtime_edges += 1;
            }
        }

        let graph_txns = in_graph.iter().filter(|g| **g).count();
        for scc in tarjan(adj.len(), |v| adj[v].iter().map(|e| e.to as usize), None) {
            if scc.len() < 2 {
                continue;
            }
            self.explain_component(&adj, n, &scc);
        }
        Report {
            txns: n,
            in_graph: graph_txns,
            dependency_edges,
            realtime_edges,
            anomalies: std::mem::take(&mut self.anomalies),
        }
    }

    /// Finds the weakest cycle in one strongly connected component and
    /// reports it: first with ww edges only, then adding wr, then rw, then
    /// real time.
    fn explain_component(&mut self, adj: &[Vec<Edge>], n: usize, scc: &[usize]) {
        let local: HashMap<usize, usize> = scc.iter().enumerate().map(|(i, &v)| (v, i)).collect();
        for mask in [
            EdgeKind::Ww as u8,
            EdgeKind::Ww as u8 | EdgeKind::Wr as u8,
            EdgeKind::Ww as u8 | EdgeKind::Wr as u8 | EdgeKind::Rw as u8,
            0xFF,
        ] {
            let ok = |e: &Edge| e.kind as u8 & mask != 0 && local.contains_key(&(e.to as usize));
            let sub = tarjan(
                scc.len(),
                |v| {
                    adj[scc[v]]
                        .iter()
                        .filter(|e| ok(e))
                        .map(|e| local[&(e.to as usize)])
                },
                Some(&|v: usize| mask == 0xFF || scc[v] < n),
            );
            let Some(comp) = sub.into_iter().find(|c| c.len() > 1) else {
                continue;
            };
            let comp: HashMap<usize, ()> = comp.into_iter().map(|v| (scc[v], ())).collect();
            let cycle = shortest_cycle(adj, &comp, |e| ok(e));
            self.report_cycle(n, &cycle);
            return;
        }
        unreachable!("a strongly connected component has a cycle");
    }

    fn report_cycle(&mut self, n: usize, cycle: &[(usize, Edge)]) {
        // Merge each run of real-time edges through virtual nodes into one
        // edge between transactions.
        let start = cycle
            .iter()
            .position(|(v, _)| *v < n)
            .expect("a cycle has a transaction");
        let mut steps: Vec<(u32, Edge)> = Vec::new();
        let len = cycle.len();
        let mut i = start;
        loop {
            let (v, e) = cycle[i];
            if v < n {
                steps.push((v as u32, e));
            }
            i = (i + 1) % len;
            if i == start {
                break;
            }
        }
        let rw = steps.iter().filter(|(_, e)| e.kind == EdgeKind::Rw).count();
        let has = |k: EdgeKind| steps.iter().any(|(_, e)| e.kind == k);
        let kind = if has(EdgeKind::Rt) {
            AnomalyKind::RealTime
        } else if rw == 1 {
            AnomalyKind::GSingle
        } else if rw > 1 {
            AnomalyKind::G2
        } else if has(EdgeKind::Wr) {
            AnomalyKind::G1c
        } else {
            AnomalyKind::G0
        };
        let mut s = format!("a cycle of {} transactions:", steps.len());
        for (i, (v, e)) in steps.iter().enumerate() {
            let next = steps[(i + 1) % steps.len()].0;
            let _ = write!(s, "\n  {} ", self.txn(*v));
            let _ = match e.kind {
                EdgeKind::Ww => write!(
                    s,
                    "-ww-> (appended {} to key {}, and T{next} appended {} right after it)",
                    e.a.expect("ww has both"),
                    self.key(e.key),
                    e.b
                ),
                EdgeKind::Wr => write!(
                    s,
                    "-wr-> (appended {} to key {}, and T{next} read the key ending in it)",
                    e.b,
                    self.key(e.key)
                ),
                EdgeKind::Rw => write!(
                    s,
                    "-rw-> (read key {} {}, and T{next} appended the next element, {})",
                    self.key(e.key),
                    e.a.map_or("empty".to_string(), |a| format!("ending in {a}")),
                    e.b
                ),
                EdgeKind::Rt => write!(
                    s,
                    "-realtime-> (completed before T{next} was invoked, at {})",
                    ms(self.history[next as usize].invoke)
                ),
            };
        }
        self.report(kind, || s);
    }
}

/// The shortest cycle through the first node of `comp` (a strongly
/// connected set), over edges that `ok` allows: `(node, edge to the next
/// node)` in order.
fn shortest_cycle(
    adj: &[Vec<Edge>],
    comp: &HashMap<usize, ()>,
    ok: impl Fn(&Edge) -> bool,
) -> Vec<(usize, Edge)> {
    let start = *comp.keys().min().expect("not empty");
    let mut parent: HashMap<usize, (usize, Edge)> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for e in adj[v].iter().filter(|e| ok(e)) {
            let to = e.to as usize;
            if !comp.contains_key(&to) {
                continue;
            }
            if to == start {
                let mut path = vec![(v, *e)];
                let mut at = v;
                while at != start {
                    let (p, pe) = parent[&at];
                    path.push((p, pe));
                    at = p;
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = parent.entry(to) {
                slot.insert((v, *e));
                queue.push_back(to);
            }
        }
    }
    unreachable!("a strongly connected set has a cycle through each node");
}

/// Tarjan's strongly connected components, iterative (histories have
/// hundreds of thousands of transactions). `keep`: only these nodes.
fn tarjan<I: Iterator<Item = usize>>(
    nodes: usize,
    succ: impl Fn(usize) -> I,
    keep: Option<&dyn Fn(usize) -> bool>,
) -> Vec<Vec<usize>> {
    const UNSEEN: u32 = u32::MAX;
    let mut index = vec![UNSEEN; nodes];
    let mut low = vec![0u32; nodes];
    let mut on_stack = vec![false; nodes];
    let mut stack: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    let mut next = 0u32;
    let kept = |v: usize| keep.is_none_or(|k| k(v));
    for root in 0..nodes {
        if index[root] != UNSEEN || !kept(root) {
            continue;
        }
        // (node, its successors not yet looked at)
        let mut call: Vec<(usize, std::vec::IntoIter<usize>)> = Vec::new();
        let visit = |v: usize,
                     index: &mut Vec<u32>,
                     low: &mut Vec<u32>,
                     on_stack: &mut Vec<bool>,
                     stack: &mut Vec<usize>,
                     next: &mut u32| {
            index[v] = *next;
            low[v] = *next;
            *next += 1;
            on_stack[v] = true;
            stack.push(v);
            succ(v).filter(|&w| kept(w)).collect::<Vec<_>>().into_iter()
        };
        let it = visit(
            root,
            &mut index,
            &mut low,
            &mut on_stack,
            &mut stack,
            &mut next,
        );
        call.push((root, it));
        while let Some((v, it)) = call.last_mut() {
            let v = *v;
            if let Some(w) = it.next() {
                if index[w] == UNSEEN {
                    let it = visit(
                        w,
                        &mut index,
                        &mut low,
                        &mut on_stack,
                        &mut stack,
                        &mut next,
                    );
                    call.push((w, it));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some((parent, _)) = call.last() {
                low[*parent] = low[*parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = stack.pop().expect("v is on the stack");
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(comp);
            }
        }
    }
    out
}

fn ms(us: u64) -> String {
    format!("{}.{:03}ms", us / 1000, us % 1000)
}

/// A list for a message: its length and its last few elements.
fn show(list: &[Element]) -> String {
    if list.len() <= SHOWN_MAX {
        format!("{list:?}")
    } else {
        format!(
            "[... {} elements ..., {}]",
            list.len() - SHOWN_MAX,
            list[list.len() - SHOWN_MAX..]
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

#[cfg(test)]
#[path = "elle_tests.rs"]
mod tests;
