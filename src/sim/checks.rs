//! The simulator's end-of-run checkers. Each pushes a human-readable failure
//! onto the report; a run passes only with none.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use synod_wire::{Batch, Slot};

use super::client::Client;
use super::{Micros, Node, SimReport};
use crate::check::{check_kv, CheckOptions, CheckResult, KvOp};
use crate::kv::KvStore;

/// What one replica just applied, checked alike in both worlds: slots in
/// order with no hole (an installed `snapshot` moves the next slot: a
/// restart rewinds to its own, a laggard jumps to a newer one), and every
/// replica of a group applying the same batch at a slot. `chosen` holds
/// each slot's batch as its first applier applied it, keyed by `key(slot)`;
/// `names` (called only to word a failure) gives the replica's name and
/// the slot's scope ("" in the one-group world, "group G " in the sharded
/// one). Returns the failures, and the slots newly recorded in `chosen`
/// with their commands.
pub(super) fn applied<K: Ord>(
    next_apply: &mut Slot,
    chosen: &mut BTreeMap<K, Batch>,
    key: impl Fn(Slot) -> K,
    (snapshot, committed): (Option<Slot>, &[(Slot, Batch)]),
    names: impl Fn() -> (String, String),
) -> (Vec<String>, u64, u64) {
    let mut failures = Vec::new();
    let (mut slots, mut commands) = (0, 0);
    if let Some(index) = snapshot {
        *next_apply = index;
    }
    for (slot, batch) in committed {
        if *slot != *next_apply {
            let (who, _) = names();
            failures.push(format!(
                "safety: {who} applied slot {slot}, expected {next_apply} (out of order or past a hole)"
            ));
        }
        *next_apply = slot + 1;
        match chosen.get(&key(*slot)) {
            Some(b) if b != batch => {
                let (who, scope) = names();
                failures.push(format!(
                    "safety: {scope}slot {slot} decided twice: {} commands vs {} commands ({who})",
                    b.commands.len(),
                    batch.commands.len()
                ))
            }
            Some(_) => {}
            None => {
                slots += 1;
                commands += batch.commands.len() as u64;
                chosen.insert(key(*slot), batch.clone());
            }
        }
    }
    (failures, slots, commands)
}

/// Every request completes within the bound after the faults heal.
pub(super) fn liveness(report: &mut SimReport, clients: &[Client], deadline: Micros, now: Micros) {
    for c in clients {
        if let Some((seq, call)) = c.outstanding() {
            report.failures.push(format!(
                "liveness: client {} seq {seq} called at {}ms still pending at {}ms (deadline {}ms)",
                c.idx,
                call / 1000,
                now / 1000,
                deadline / 1000
            ));
        }
    }
}

/// The client history is linearizable (an inconclusive check fails too).
pub(super) fn linearizable(report: &mut SimReport, history: &[KvOp]) {
    match check_kv(history, &CheckOptions::default()) {
        CheckResult::Linearizable => {}
        CheckResult::NotLinearizable { key, detail } => report.failures.push(format!(
            "linearizability: key {:?} is not linearizable:\n{detail}",
            String::from_utf8_lossy(&key)
        )),
        CheckResult::InvalidHistory { key, detail } => report.failures.push(format!(
            "linearizability: the simulator recorded an invalid history on key {:?}: {detail}",
            String::from_utf8_lossy(&key)
        )),
        CheckResult::Inconclusive { key, steps } => report.failures.push(format!(
            "linearizability: inconclusive on key {:?} after {steps} steps",
            String::from_utf8_lossy(&key)
        )),
    }
}

/// Replicas that applied the same prefix hold byte-identical state.
pub(super) fn replicas_agree(report: &mut SimReport, nodes: &[Node]) {
    let mut by_point: HashMap<u64, (usize, Bytes)> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let Some(r) = &n.replica else { continue };
        let point = r.paxos().applied_upto();
        let snap = r.state().store().snapshot();
        match by_point.get(&point) {
            Some((j, other)) if *other != snap => report.failures.push(format!(
                "safety: replicas {j} and {i} applied up to slot {point} but their states differ"
            )),
            Some(_) => {}
            None => {
                by_point.insert(point, (i, snap));
            }
        }
    }
}

/// Every acknowledged append is in its key's final value exactly once, no
/// append is there twice, and each client's appends are in its order.
pub(super) fn appends_exactly_once(report: &mut SimReport, clients: &[Client], store: &KvStore) {
    // token -> (client, seq, key, acked)
    let mut issued: HashMap<(usize, u64), (Bytes, bool)> = HashMap::new();
    let mut keys: Vec<Bytes> = Vec::new();
    for c in clients {
        for a in &c.appends {
            issued.insert((c.idx, a.seq), (a.key.clone(), a.acked));
            if !keys.contains(&a.key) {
                keys.push(a.key.clone());
            }
        }
    }
    let mut seen: HashMap<(usize, u64), usize> = HashMap::new();
    for key in &keys {
        let value = match store.read(key) {
            synod_wire::ClientReply::Ok(v) => v,
            _ => Bytes::new(),
        };
        let mut last_seq: HashMap<usize, u64> = HashMap::new();
        for tok in value.split(|b| *b == b';').filter(|t| !t.is_empty()) {
            let Some((client, seq)) = parse_token(tok) else {
                report.failures.push(format!(
                    "appends: key {key:?} holds a foreign token {tok:?}"
                ));
                continue;
            };
            *seen.entry((client, seq)).or_default() += 1;
            match issued.get(&(client, seq)) {
                Some((k, _)) if k == key => {}
                _ => report.failures.push(format!(
                    "appends: key {key:?} holds client {client} seq {seq}, which was never appended there"
                )),
            }
            if let Some(prev) = last_seq.insert(client, seq) {
                if prev >= seq {
                    report.failures.push(format!(
                        "appends: key {key:?} has client {client} seq {seq} after seq {prev}"
                    ));
                }
            }
        }
    }
    for ((client, seq), (key, acked)) in &issued {
        let n = seen.get(&(*client, *seq)).copied().unwrap_or(0);
        if n > 1 {
            report.failures.push(format!(
                "appends: client {client} seq {seq} appears {n} times in key {key:?}"
            ));
        }
        if *acked && n == 0 {
            report.failures.push(format!(
                "appends: acknowledged append client {client} seq {seq} missing from key {key:?}"
            ));
        }
    }
}

fn parse_token(tok: &[u8]) -> Option<(usize, u64)> {
    let s = std::str::from_utf8(tok).ok()?;
    let rest = s.strip_prefix('A')?;
    let (c, q) = rest.split_once('.')?;
    Some((c.parse().ok()?, q.parse().ok()?))
}
