//! A builder for transactions ([`synod_wire::Txn`], PROTOCOL.md 5.1), run
//! with [`super::Client::txn`]:
//!
//! ```no_run
//! # use synod::client::{Client, TxnBuilder};
//! # fn f(client: &mut Client) -> Result<(), synod::client::ClientError> {
//! let result = client.txn(
//!     TxnBuilder::new()
//!         .when_version("acct:a", synod_wire::CompareOp::Eq, 7)
//!         .then_incr("acct:a", -5)
//!         .then_incr("acct:b", 5)
//!         .else_get("acct:a")
//!         .build(),
//! )?;
//! println!("committed the transfer: {}", result.succeeded);
//! # Ok(()) }
//! ```
//!
//! Keys in one group's shards: one log entry; keys across groups: the
//! session runs two-phase commit (ARCHITECTURE.md, Transactions).

use bytes::Bytes;
use synod_wire::{Compare, CompareOp, CompareTarget, Op, Txn};

use serde::Serialize;
use std::borrow::Cow;

/// Collects compares and the operations of both branches.
#[derive(Clone, Debug, Default)]
pub struct TxnBuilder {
    txn: Txn,
}

impl TxnBuilder {
    pub fn new() -> TxnBuilder {
        TxnBuilder::default()
    }

    /// Holds if `key`'s value compares to `value` by `op` (never for an
    /// absent key).
    pub fn when_value(
        mut self,
        key: impl Into<Bytes>,
        op: CompareOp,
        value: impl Into<Bytes>,
    ) -> TxnBuilder {
        self.txn.compares.push(Compare {
            key: key.into(),
            op,
            target: CompareTarget::Value(value.into()),
        });
        self
    }

    /// Holds if `key`'s version (0 when absent) compares to `version` by
    /// `op`.
    pub fn when_version(
        mut self,
        key: impl Into<Bytes>,
        op: CompareOp,
        version: u64,
    ) -> TxnBuilder {
        self.txn.compares.push(Compare {
            key: key.into(),
            op,
            target: CompareTarget::Version(version),
        });
        self
    }

    /// Holds if `key` has no value.
    pub fn when_absent(self, key: impl Into<Bytes>) -> TxnBuilder {
        self.when_version(key, CompareOp::Eq, 0)
    }

    /// Holds if `key` has a value.
    pub fn when_exists(self, key: impl Into<Bytes>) -> TxnBuilder {
        self.when_version(key, CompareOp::Gt, 0)
    }

    /// Adds `op` to the operations run when every compare holds.
    pub fn then(mut self, op: Op) -> TxnBuilder {
        self.txn.success.push(op);
        self
    }

    /// Adds `op` to the operations run when some compare does not hold.
    pub fn otherwise(mut self, op: Op) -> TxnBuilder {
        self.txn.failure.push(op);
        self
    }

    pub fn then_get(self, key: impl Into<Bytes>) -> TxnBuilder {
        self.then(Op::Get { key: key.into() })
    }

    pub fn then_put(self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> TxnBuilder {
        self.then(Op::Put {
            key: key.into(),
            value: value.into(),
        })
    }

    pub fn then_append(self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> TxnBuilder {
        self.then(Op::Append {
            key: key.into(),
            value: value.into(),
        })
    }

    pub fn then_delete(self, key: impl Into<Bytes>) -> TxnBuilder {
        self.then(Op::Delete { key: key.into() })
    }

    pub fn then_incr(self, key: impl Into<Bytes>, delta: i64) -> TxnBuilder {
        self.then(Op::Incr {
            key: key.into(),
            delta,
        })
    }

    pub fn else_get(self, key: impl Into<Bytes>) -> TxnBuilder {
        self.otherwise(Op::Get { key: key.into() })
    }

    pub fn else_put(self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> TxnBuilder {
        self.otherwise(Op::Put {
            key: key.into(),
            value: value.into(),
        })
    }

    /// The transaction.
    pub fn build(self) -> Txn {
        self.txn
    }
}

/// How `synod txn` reads a transaction from words (README: "Transactions"):
///
/// ```text
/// [if COMPARE [and COMPARE]...] then OP... [else OP...]
/// COMPARE = KEY value (=|!=|<|>) TEXT | KEY version (=|!=|<|>) N
///         | KEY exists | KEY absent
/// OP      = get KEY | put KEY VALUE | append KEY VALUE | delete KEY
///         | incr KEY DELTA
/// ```
///
/// `then` may be left out when there are no compares (`synod txn put a 1
/// put b 2`). Keys and values are taken as bytes of the words.
pub fn parse_txn_words(words: &[Vec<u8>]) -> Result<Txn, String> {
    let word = |i: usize| {
        words
            .get(i)
            .map(|w| String::from_utf8_lossy(w).into_owned())
    };
    let need = |i: usize, what: &str| -> Result<Vec<u8>, String> {
        words
            .get(i)
            .cloned()
            .ok_or_else(|| format!("transaction ends where {what} was expected"))
    };
    let mut b = TxnBuilder::new();
    let mut i = 0;
    if word(0).as_deref() == Some("if") {
        i = 1;
        loop {
            let key = need(i, "a key to compare")?;
            let what = word(i + 1).ok_or("a compare needs value, version, exists or absent")?;
            i += 2;
            b = match what.as_str() {
                "exists" => b.when_exists(key),
                "absent" => b.when_absent(key),
                "value" | "version" => {
                    let op = match word(i).as_deref() {
                        Some("=") | Some("==") => CompareOp::Eq,
                        Some("!=") => CompareOp::Ne,
                        Some("<") => CompareOp::Lt,
                        Some(">") => CompareOp::Gt,
                        other => return Err(format!("unknown compare operator {other:?}")),
                    };
                    let target = need(i + 1, "the compared value")?;
                    i += 2;
                    if what == "value" {
                        b.when_value(key, op, target)
                    } else {
                        let v = String::from_utf8_lossy(&target)
                            .parse::<u64>()
                            .map_err(|_| "a version is a non-negative integer".to_string())?;
                        b.when_version(key, op, v)
                    }
                }
                other => return Err(format!("unknown compare {other:?}")),
            };
            match word(i).as_deref() {
                Some("and") => i += 1,
                Some("then") => {
                    i += 1;
                    break;
                }
                _ => return Err("compares are followed by `and` or `then`".to_string()),
            }
        }
    } else if word(0).as_deref() == Some("then") {
        i = 1;
    }
    let mut otherwise = false;
    while i < words.len() {
        let name = word(i).expect("in range");
        if name == "else" {
            if otherwise {
                return Err("`else` given twice".to_string());
            }
            otherwise = true;
            i += 1;
            continue;
        }
        let key = need(i + 1, "a key")?;
        let (op, used) = match name.as_str() {
            "get" => (Op::Get { key: key.into() }, 2),
            "delete" => (Op::Delete { key: key.into() }, 2),
            "put" | "append" => {
                let value = Bytes::from(need(i + 2, "a value")?);
                let key = Bytes::from(key);
                let op = if name == "put" {
                    Op::Put { key, value }
                } else {
                    Op::Append { key, value }
                };
                (op, 3)
            }
            "incr" => {
                let delta = String::from_utf8_lossy(&need(i + 2, "a delta")?)
                    .parse::<i64>()
                    .map_err(|_| "incr takes an integer delta".to_string())?;
                (
                    Op::Incr {
                        key: key.into(),
                        delta,
                    },
                    3,
                )
            }
            other => return Err(format!("unknown transaction operation {other:?}")),
        };
        b = if otherwise {
            b.otherwise(op)
        } else {
            b.then(op)
        };
        i += used;
    }
    let txn = b.build();
    match txn.invalid() {
        Some(why) => Err(why.to_string()),
        None => Ok(txn),
    }
}

/// A transaction's result in the shape `synod txn` prints as one line of
/// JSON (with `serde_json`):
/// `{"succeeded":true,"results":[{"value":"6","version":3},{"nokey":true},
/// {"error":"..."}]}`. Values are shown as UTF-8 (invalid bytes replaced).
#[derive(Debug, Serialize)]
pub struct TxnResultJson<'a> {
    succeeded: bool,
    results: Vec<TxnOpJson<'a>>,
}

/// One operation's result: which fields appear tells the kind.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum TxnOpJson<'a> {
    Ok { value: Cow<'a, str>, version: u64 },
    NoKey { nokey: bool },
    Error { error: &'a str },
}

impl<'a> From<&'a synod_wire::TxnResult> for TxnResultJson<'a> {
    fn from(result: &'a synod_wire::TxnResult) -> TxnResultJson<'a> {
        use synod_wire::TxnOpResult;
        TxnResultJson {
            succeeded: result.succeeded,
            results: result
                .results
                .iter()
                .map(|r| match r {
                    TxnOpResult::Ok { value, version } => TxnOpJson::Ok {
                        value: String::from_utf8_lossy(value),
                        version: *version,
                    },
                    TxnOpResult::NoKey => TxnOpJson::NoKey { nokey: true },
                    TxnOpResult::Error { reason } => TxnOpJson::Error { error: reason },
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_wire::{TxnOpResult, TxnResult};

    fn words(s: &str) -> Vec<Vec<u8>> {
        s.split_whitespace()
            .map(|w| w.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn the_readable_syntax_builds_the_transaction() {
        let txn = parse_txn_words(&words(
            "if a version = 3 and b value != x and c absent then incr a -5 put b y else get a",
        ))
        .unwrap();
        let expected = TxnBuilder::new()
            .when_version("a", CompareOp::Eq, 3)
            .when_value("b", CompareOp::Ne, "x")
            .when_absent("c")
            .then_incr("a", -5)
            .then_put("b", "y")
            .else_get("a")
            .build();
        assert_eq!(txn, expected);
        let plain = parse_txn_words(&words("put a 1 append b 2 delete c")).unwrap();
        assert_eq!(plain.success.len(), 3);
        assert!(plain.compares.is_empty());
    }

    #[test]
    fn bad_transactions_are_clear_errors() {
        for bad in [
            "",
            "if a version = x then get a",
            "if a value ~ 1 then get a",
            "if a exists get a",
            "then frob a",
            "put a",
            "incr a 1.5",
            "get a else get b else get c",
        ] {
            assert!(parse_txn_words(&words(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn results_print_as_one_json_line() {
        let result = TxnResult {
            succeeded: false,
            results: vec![
                TxnOpResult::Ok {
                    value: Bytes::from_static(b"q\""),
                    version: 4,
                },
                TxnOpResult::NoKey,
                TxnOpResult::Error {
                    reason: "no".into(),
                },
            ],
        };
        assert_eq!(
            serde_json::to_string(&TxnResultJson::from(&result)).unwrap(),
            r#"{"succeeded":false,"results":[{"value":"q\"","version":4},{"nokey":true},{"error":"no"}]}"#
        );
    }
}
