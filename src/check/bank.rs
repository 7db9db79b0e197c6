//! The bank checker for transactions (issue 10): accounts hold decimal
//! balances (an absent account holds 0), transfers move an amount between
//! two accounts in one transaction, and every read-only audit transaction
//! (a Get of every account) must see the same total, the initial one. A
//! lost update (a transfer whose compares were not honoured), a torn
//! transaction (one half applied) or a read between a transaction's writes
//! all change some audit's total.

use synod_wire::{TxnOpResult, TxnResult};

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
    use bytes::Bytes;

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
}
