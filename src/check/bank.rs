//! The bank checker for transactions (issue 10): accounts hold decimal
//! balances (an absent account holds 0), transfers move an amount between
//! two accounts in one transaction, and every read-only audit transaction
//! (a Get of every account) must see the same total, the initial one. A
//! lost update (a transfer whose compares were not honoured), a torn
//! transaction (one half applied) or a read between a transaction's writes
//! all change some audit's total.

use bytes::Bytes;
use synod_wire::{Op, Txn, TxnOpResult, TxnResult, TXN_PARTS_MAX};

/// `n` account keys (`acct0`, ...). With `one_group`, all in one shard (so
/// one group holds them at a time, and transactions on them never span
/// groups); otherwise each in a shard of its own while there are shards
/// left, so transactions on them span groups (two-phase commit) whenever
/// the configuration puts those shards in different groups, and moving
/// one account's shard moves only that account.
pub fn accounts(n: usize, shards: u32, one_group: bool) -> Vec<Bytes> {
    spread_keys("acct", n, shards, one_group)
}

/// `n` keys named `{prefix}0`, `{prefix}1`, ... picked as [`accounts`]
/// picks them (the simulator's list-append keys, `check::elle`, too).
pub fn spread_keys(prefix: &str, n: usize, shards: u32, one_group: bool) -> Vec<Bytes> {
    let home = synod_wire::shard_of(format!("{prefix}0").as_bytes(), shards);
    let mut taken: Vec<u32> = Vec::new();
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| {
            let s = synod_wire::shard_of(k.as_bytes(), shards);
            if one_group {
                return s == home;
            }
            if taken.contains(&s) && (taken.len() as u32) < shards {
                return false;
            }
            taken.push(s);
            true
        })
        .take(n)
        .map(Bytes::from)
        .collect()
}

/// An audit: one transaction that Gets every account in `accounts`, in
/// order, with no compares (so its success branch always runs). All the
/// reads happen at one point of the serialization order, so the total
/// they add up to is one the bank held at that point. At most
/// [`TXN_PARTS_MAX`] accounts fit one transaction (a longer one is refused
/// by the session, `Txn::invalid`); see [`audit_chunks`].
pub fn audit_txn(accounts: &[Bytes]) -> Txn {
    Txn {
        compares: Vec::new(),
        success: accounts
            .iter()
            .map(|a| Op::Get { key: a.clone() })
            .collect(),
        failure: Vec::new(),
    }
}

/// Audits of `accounts`, [`TXN_PARTS_MAX`] accounts each. One chunk is a
/// snapshot; several are not: their totals add up to the bank's total
/// only when no transfer can commit between the first chunk's reads and
/// the last one's (the caller has stopped every transferring client).
/// A transfer decided before the audit but not yet finished everywhere
/// still holds its locks, so a read of its keys waits (`Busy`) until its
/// outcome is applied: such a quiescent chunked audit sees every
/// committed transfer whole.
pub fn audit_chunks(accounts: &[Bytes]) -> Vec<Txn> {
    accounts.chunks(TXN_PARTS_MAX).map(audit_txn).collect()
}

/// A transfer of `amount` from account `from` to account `to`: one
/// transaction of two `Incr`s and no compares.
///
/// Why `Incr` and not the simulator's optimistic Puts (compares on the
/// versions a previous read saw): both are strictly correct, since a
/// transaction's keys are locked from its prepare to its finish and every
/// `Incr` computes from the locked key's current value, so two transfers
/// can never both start from the same balance (a lost update), and the
/// two halves commit or abort together. But the optimistic form needs a
/// read before every transfer and fails (moving nothing) whenever another
/// transfer touched either account in between, so under load most of its
/// work is retries of the read; `Incr` needs no read, and a transfer
/// fails only if a refused `Incr` (a balance that is not an integer, or
/// an overflow) made its half a no-op, which [`check_transfer`] reports
/// as a broken bank (the other half still ran). Balances may go
/// negative: the invariant checked is conservation of the total, not
/// solvency (a compare on a value compares bytes, not numbers).
pub fn transfer_txn(from: Bytes, to: Bytes, amount: i64) -> Txn {
    assert_ne!(from, to, "a transfer moves money between two accounts");
    Txn {
        compares: Vec::new(),
        success: vec![
            Op::Incr {
                key: from,
                delta: -amount,
            },
            Op::Incr {
                key: to,
                delta: amount,
            },
        ],
        failure: Vec::new(),
    }
}

/// Checks the answer to a [`transfer_txn`]: both `Incr`s ran. An error in
/// either means one half moved money and the other did not.
pub fn check_transfer(result: &TxnResult) -> Result<(), String> {
    if !result.succeeded || result.results.len() != 2 {
        return Err(format!(
            "a transfer (two Incrs, no compares) answered {result:?}"
        ));
    }
    for r in &result.results {
        if let TxnOpResult::Error { reason } = r {
            return Err(format!("a transfer's Incr was refused: {reason}"));
        }
    }
    Ok(())
}

/// The balances an audit saw, in account order: `(balance, version)`.
pub fn audit_balances(result: &TxnResult) -> Result<Vec<(i64, u64)>, String> {
    if !result.succeeded {
        return Err("an audit (no compares) took the failure branch".to_string());
    }
    result
        .results
        .iter()
        .map(|r| match r {
            TxnOpResult::NoKey => Ok((0, 0)),
            TxnOpResult::Ok { value, version } => std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .map(|b| (b, *version))
                .ok_or_else(|| format!("an account holds {value:?}, not a balance")),
            TxnOpResult::Error { reason } => Err(format!("an audit's Get failed: {reason}")),
        })
        .collect()
}

/// Checks one audit against the total every audit must see.
pub fn check_audit(result: &TxnResult, total: i64) -> Result<Vec<(i64, u64)>, String> {
    let balances = audit_balances(result)?;
    let seen: i64 = balances.iter().map(|(b, _)| b).sum();
    if seen != total {
        return Err(format!(
            "bank audit saw a total of {seen}, not {total}: balances {:?}",
            balances.iter().map(|(b, _)| *b).collect::<Vec<_>>()
        ));
    }
    Ok(balances)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: &str, version: u64) -> TxnOpResult {
        TxnOpResult::Ok {
            value: Bytes::copy_from_slice(v.as_bytes()),
            version,
        }
    }

    #[test]
    fn audits_must_see_the_initial_total() {
        let good = TxnResult {
            succeeded: true,
            results: vec![ok("5", 3), TxnOpResult::NoKey, ok("-5", 3)],
        };
        assert_eq!(check_audit(&good, 0), Ok(vec![(5, 3), (0, 0), (-5, 3)]));
        let torn = TxnResult {
            succeeded: true,
            results: vec![ok("5", 3), TxnOpResult::NoKey, ok("0", 1)],
        };
        assert!(check_audit(&torn, 0).is_err());
        let garbage = TxnResult {
            succeeded: true,
            results: vec![ok("x", 1)],
        };
        assert!(check_audit(&garbage, 0).is_err());
    }

    #[test]
    fn transfers_are_two_incrs_and_a_refused_half_is_reported() {
        let t = transfer_txn(Bytes::from("k1"), Bytes::from("k2"), 7);
        assert!(t.compares.is_empty() && t.failure.is_empty());
        assert_eq!(
            t.success,
            vec![
                Op::Incr {
                    key: Bytes::from("k1"),
                    delta: -7
                },
                Op::Incr {
                    key: Bytes::from("k2"),
                    delta: 7
                }
            ]
        );
        let done = TxnResult {
            succeeded: true,
            results: vec![ok("93", 4), ok("107", 4)],
        };
        assert_eq!(check_transfer(&done), Ok(()));
        let half = TxnResult {
            succeeded: true,
            results: vec![
                TxnOpResult::Error {
                    reason: "value is not an integer".into(),
                },
                ok("107", 4),
            ],
        };
        assert!(check_transfer(&half).is_err());
    }

    #[test]
    fn audits_are_chunked_at_the_transaction_bound() {
        let accounts: Vec<Bytes> = (0..TXN_PARTS_MAX * 2 + 1)
            .map(|i| Bytes::from(format!("k{i}")))
            .collect();
        let chunks = audit_chunks(&accounts);
        assert_eq!(
            chunks.iter().map(|t| t.success.len()).collect::<Vec<_>>(),
            vec![TXN_PARTS_MAX, TXN_PARTS_MAX, 1]
        );
        assert!(chunks.iter().all(|t| t.invalid().is_none()));
        assert_eq!(chunks[2].success[0].key().as_ref(), b"k2048");
        assert_eq!(audit_chunks(&accounts[..3]).len(), 1);
    }

    #[test]
    fn accounts_take_a_shard_each_or_share_one() {
        let spread = accounts(8, 64, false);
        let mut shards: Vec<u32> = spread.iter().map(|a| synod_wire::shard_of(a, 64)).collect();
        shards.sort();
        shards.dedup();
        assert_eq!(shards.len(), 8, "{spread:?}");
        let one = accounts(4, 64, true);
        assert_eq!(one.len(), 4);
        assert!(one
            .iter()
            .all(|a| synod_wire::shard_of(a, 64) == synod_wire::shard_of(&one[0], 64)));
    }
}
