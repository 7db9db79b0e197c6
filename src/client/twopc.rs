//! The pure parts of the client's side of two-phase commit (issue 10):
//! splitting a transaction whose keys lie in several groups into one part
//! per group, and putting the groups' votes back together into the one
//! [`TxnResult`] the caller sees. The session (`session.rs`) sends the
//! parts and drives the phases; nothing here does I/O.

use bytes::Bytes;
use synod_wire::{GroupId, Op, Txn, TxnOpResult, TxnOutcome, TxnResult, TxnVote};

/// One group's part of a transaction, and where its operations sit in the
/// whole one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub gid: GroupId,
    /// The part's first key: routes its prepare, decide and finish.
    pub key: Bytes,
    pub txn: Txn,
    /// For each of the part's `success` (`failure`) operations, its index
    /// in the whole transaction's `success` (`failure`) list.
    pub success_at: Vec<usize>,
    pub failure_at: Vec<usize>,
}

/// Splits `txn` by the group `route` gives each key. `None` if some key has
/// no route yet. The coordinator's part (the group of the transaction's
/// first key) comes first. Operations keep their order inside each part,
/// and every operation on a key lands in that key's part, so each still
/// sees the ones before it on its key.
pub fn plan(txn: &Txn, mut route: impl FnMut(&Bytes) -> Option<GroupId>) -> Option<Vec<Part>> {
    let mut parts: Vec<Part> = Vec::new();
    let part_of = |gid: GroupId, key: &Bytes, parts: &mut Vec<Part>| -> usize {
        match parts.iter().position(|p| p.gid == gid) {
            Some(i) => i,
            None => {
                parts.push(Part {
                    gid,
                    key: key.clone(),
                    txn: Txn::default(),
                    success_at: Vec::new(),
                    failure_at: Vec::new(),
                });
                parts.len() - 1
            }
        }
    };
    for c in &txn.compares {
        let i = part_of(route(&c.key)?, &c.key, &mut parts);
        parts[i].txn.compares.push(c.clone());
    }
    for (at, op) in txn.success.iter().enumerate() {
        let i = part_of(route(op.key())?, op.key(), &mut parts);
        parts[i].txn.success.push(op.clone());
        parts[i].success_at.push(at);
    }
    for (at, op) in txn.failure.iter().enumerate() {
        let i = part_of(route(op.key())?, op.key(), &mut parts);
        parts[i].txn.failure.push(op.clone());
        parts[i].failure_at.push(at);
    }
    // The routing key must be a key of the part as the server sees it
    // (its first key): compares first, then success, then failure.
    for p in &mut parts {
        p.key = p.txn.keys().next().cloned().unwrap_or_default();
    }
    Some(parts)
}

/// The outcome when every part voted Yes: Success if every compare held
/// in every group.
pub fn outcome(votes: &[&TxnVote]) -> TxnOutcome {
    if votes.iter().all(|v| v.holds) {
        TxnOutcome::Success
    } else {
        TxnOutcome::Failure
    }
}

/// The whole transaction's result from every part's Yes vote (in `parts`
/// order) under `outcome` (Success or Failure). `None` if a vote does not
/// carry one result per operation of its part (a confused server).
pub fn merge(
    txn: &Txn,
    parts: &[Part],
    votes: &[&TxnVote],
    outcome: TxnOutcome,
) -> Option<TxnResult> {
    let succeeded = outcome == TxnOutcome::Success;
    let len = if succeeded {
        txn.success.len()
    } else {
        txn.failure.len()
    };
    let mut results: Vec<Option<TxnOpResult>> = vec![None; len];
    for (part, vote) in parts.iter().zip(votes) {
        let (at, got) = if succeeded {
            (&part.success_at, &vote.success)
        } else {
            (&part.failure_at, &vote.failure)
        };
        if at.len() != got.len() {
            return None;
        }
        for (&i, r) in at.iter().zip(got) {
            results[i] = Some(r.clone());
        }
    }
    Some(TxnResult {
        succeeded,
        results: results.into_iter().collect::<Option<Vec<_>>>()?,
    })
}

/// A `TxnFinish`/`TxnDecide` body for `part`.
pub fn finish_op(decide: bool, txn: synod_wire::TxnId, part: &Part, outcome: TxnOutcome) -> Op {
    let f = Box::new(synod_wire::TxnFinish {
        txn,
        key: part.key.clone(),
        outcome,
    });
    if decide {
        Op::TxnDecide(f)
    } else {
        Op::TxnFinish(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_wire::{Compare, CompareOp, CompareTarget};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn plan_splits_by_group_and_merge_puts_results_back_in_order() {
        let txn = Txn {
            compares: vec![Compare {
                key: b("x1"),
                op: CompareOp::Gt,
                target: CompareTarget::Version(0),
            }],
            success: vec![
                Op::Get { key: b("y1") },
                Op::Put {
                    key: b("x2"),
                    value: b("v"),
                },
                Op::Get { key: b("y2") },
            ],
            failure: vec![Op::Get { key: b("y3") }],
        };
        let parts = plan(&txn, |k| Some(if k[0] == b'x' { 1 } else { 2 })).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].gid, &parts[0].key[..]), (1, &b"x1"[..]));
        assert_eq!(parts[1].success_at, vec![0, 2]);
        assert_eq!(parts[1].failure_at, vec![0]);
        let ok = |v: &str| TxnOpResult::Ok {
            value: b(v),
            version: 1,
        };
        let v1 = TxnVote {
            yes: true,
            holds: true,
            success: vec![ok("")],
            failure: vec![],
        };
        let v2 = TxnVote {
            yes: true,
            holds: true,
            success: vec![ok("a"), ok("b")],
            failure: vec![TxnOpResult::NoKey],
        };
        let votes = [&v1, &v2];
        assert_eq!(outcome(&votes), TxnOutcome::Success);
        let r = merge(&txn, &parts, &votes, TxnOutcome::Success).unwrap();
        assert_eq!(r.results, vec![ok("a"), ok(""), ok("b")]);
        let r = merge(&txn, &parts, &votes, TxnOutcome::Failure).unwrap();
        assert_eq!(r.results, vec![TxnOpResult::NoKey]);
        assert!(!r.succeeded);
        // A vote short of results is refused, not indexed past its end.
        let short = TxnVote {
            yes: true,
            holds: true,
            ..TxnVote::default()
        };
        assert!(merge(&txn, &parts, &[&v1, &short], TxnOutcome::Success).is_none());
        assert!(plan(&txn, |k| (k[0] == b'x').then_some(1)).is_none());
    }
}
