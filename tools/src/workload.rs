//! What each benchmark operation is: the workload mix, key names and values.
//!
//! Keys are `k<index>` with the index drawn from a [`KeyDist`]; they are
//! formatted per operation rather than kept in a table, so a 10-million key
//! space costs no memory. Values carry the writer's client id and seq, so
//! in a `--check` run every written value is distinct and a Get's answer
//! names the write it saw (which is what makes the linearizability check
//! sharp); the rest is padding up to `--value-size`.
//!
//! `transfer` is the bank of `synod::check::bank`: the keys are accounts
//! prefilled with [`INITIAL_BALANCE`], and each operation is one
//! transaction ([`synod::check::bank::transfer_txn`], two `Incr`s) that
//! moves a random amount between two distinct accounts drawn from the same
//! key distribution, optionally both in one group or in two
//! ([`TxnSpan`], by the configuration's shard-to-group map).

use bytes::Bytes;
use synod::rng::Rng;
use synod_wire::{shard_of, ClientId, Config, GroupId, Op, Seq};

use crate::zipf::{unit_f64, KeyDist};

/// The operation mix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Workload {
    Put,
    Get,
    Append,
    /// Get with probability `read_ratio`, otherwise Put.
    Mixed {
        read_ratio: f64,
    },
    /// One transaction per operation moving an amount between two
    /// accounts (`synod::check::bank::transfer_txn`).
    Transfer {
        span: TxnSpan,
    },
    /// One Put of every key in order (`k0`, `k1`, ...), so later Gets hit:
    /// of `balance` in decimal if given (the bank's accounts), else of a
    /// value naming its writer.
    Prefill {
        balance: Option<i64>,
    },
}

/// Which groups a transfer's two accounts lie in, under the configuration
/// the run started with (a shard that moves mid-run can change it; the
/// session routes by the configuration it has then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnSpan {
    /// Any two distinct accounts: with G groups, about 1/G of the
    /// transfers are in one group.
    Any,
    /// Both in one group (`--txn-one-group`): one log entry, no 2PC.
    OneGroup,
    /// In two different groups (`--txn-cross-group`): two-phase commit.
    CrossGroup,
}

/// What every account holds after the prefill of a transfer run.
pub const INITIAL_BALANCE: i64 = 1_000_000;
/// A transfer moves 1..=this.
pub const TRANSFER_AMOUNT_MAX: i64 = 100;
/// Draws of a second account (and of a first one whose group holds no
/// other account within reach) before [`next_transfer`] gives up on the
/// requested span for this transfer: a bound, so a group with one
/// account cannot spin a worker.
const SPAN_DRAWS_MAX: u32 = 1_000;

impl Workload {
    /// Parses `put|get|append|mixed`; `read_ratio` is used by `mixed`.
    pub fn parse(name: &str, read_ratio: f64) -> Result<Workload, String> {
        if !(0.0..=1.0).contains(&read_ratio) {
            return Err(format!("--read-ratio must be in [0, 1], not {read_ratio}"));
        }
        match name {
            "put" => Ok(Workload::Put),
            "get" => Ok(Workload::Get),
            "append" => Ok(Workload::Append),
            "mixed" => Ok(Workload::Mixed { read_ratio }),
            "transfer" => Ok(Workload::Transfer { span: TxnSpan::Any }),
            other => Err(format!(
                "--workload must be put, get, append, mixed or transfer, not {other:?}"
            )),
        }
    }

    /// The name printed in results (`mixed` carries its read share).
    pub fn label(&self) -> String {
        match self {
            Workload::Put => "put".into(),
            Workload::Get => "get".into(),
            Workload::Append => "append".into(),
            Workload::Mixed { read_ratio } => format!("mixed{:.0}", read_ratio * 100.0),
            Workload::Transfer { span: TxnSpan::Any } => "transfer".into(),
            Workload::Transfer {
                span: TxnSpan::OneGroup,
            } => "transfer-one-group".into(),
            Workload::Transfer {
                span: TxnSpan::CrossGroup,
            } => "transfer-cross-group".into(),
            Workload::Prefill { .. } => "prefill".into(),
        }
    }

    /// Whether Gets of this workload expect the keys to exist.
    pub fn reads(&self) -> bool {
        matches!(self, Workload::Get | Workload::Mixed { .. })
    }

    /// Whether the keys must hold [`INITIAL_BALANCE`] before the run.
    pub fn is_bank(&self) -> bool {
        matches!(self, Workload::Transfer { .. })
    }
}

/// The configuration's shard-to-group map, to place accounts in groups.
#[derive(Clone, Debug)]
pub struct GroupMap {
    shards: Vec<GroupId>,
}

impl GroupMap {
    pub fn new(config: &Config) -> GroupMap {
        GroupMap {
            shards: config.shards.clone(),
        }
    }

    /// The group serving account `index` (0 if the configuration has no
    /// shards, which `synod-bench` refuses to run against).
    pub fn group_of(&self, index: u64) -> GroupId {
        if self.shards.is_empty() {
            return 0;
        }
        let shard = shard_of(&key_name(index), self.shards.len() as u32);
        self.shards[shard as usize]
    }
}

/// The next transfer: two distinct accounts drawn from `dist` (the second
/// redrawn until it is not the first and lies where `span` asks) and an
/// amount in 1..=[`TRANSFER_AMOUNT_MAX`]. Returns the transaction and
/// whether it has the requested span; after [`SPAN_DRAWS_MAX`] draws it
/// settles for any two distinct accounts (the caller counts those).
pub fn next_transfer(
    span: TxnSpan,
    dist: &KeyDist,
    rng: &mut Rng,
    groups: &GroupMap,
) -> (Op, bool) {
    assert!(dist.n() >= 2, "a transfer needs two accounts");
    let mut draws = 0;
    let (from, to, in_span) = 'pick: loop {
        let from = dist.sample(rng);
        let home = groups.group_of(from);
        // A few draws of the second account per first one, so a first
        // account alone in its group does not use up the whole budget.
        for _ in 0..16 {
            draws += 1;
            let to = dist.sample(rng);
            let fits = match span {
                TxnSpan::Any => true,
                TxnSpan::OneGroup => groups.group_of(to) == home,
                TxnSpan::CrossGroup => groups.group_of(to) != home,
            };
            if to != from && fits {
                break 'pick (from, to, true);
            }
            if draws >= SPAN_DRAWS_MAX {
                let to = loop {
                    let to = dist.sample(rng);
                    if to != from {
                        break to;
                    }
                };
                break 'pick (from, to, false);
            }
        }
    };
    let amount = rng.range(1, TRANSFER_AMOUNT_MAX as u64 + 1) as i64;
    let txn = synod::check::bank::transfer_txn(key_name(from), key_name(to), amount);
    (Op::Txn(Box::new(txn)), in_span)
}

/// The name of key `index`.
pub fn key_name(index: u64) -> Bytes {
    Bytes::from(format!("k{index}"))
}

/// A value of exactly `size` bytes naming its writer: `<client id hex>:<seq>`
/// then `.` padding (cut short if `size` is smaller than the name).
pub fn value_for(client_id: ClientId, seq: Seq, size: usize) -> Bytes {
    let mut v = format!("{client_id:016x}:{seq}").into_bytes();
    v.resize(size, b'.');
    Bytes::from(v)
}

/// The next operation of a session.
///
/// `index` is the claimed position for [`Workload::Prefill`] (ignored
/// otherwise). Not for [`Workload::Transfer`] (see [`next_transfer`]).
pub fn next_op(
    workload: Workload,
    dist: &KeyDist,
    rng: &mut Rng,
    index: u64,
    client_id: ClientId,
    seq: Seq,
    value_size: usize,
) -> Op {
    let key = match workload {
        Workload::Prefill { .. } => key_name(index),
        _ => key_name(dist.sample(rng)),
    };
    let value = || value_for(client_id, seq, value_size);
    match workload {
        Workload::Put | Workload::Prefill { balance: None } => Op::Put {
            key,
            value: value(),
        },
        Workload::Prefill {
            balance: Some(balance),
        } => Op::Put {
            key,
            value: Bytes::from(balance.to_string()),
        },
        Workload::Transfer { .. } => unreachable!("transfers come from next_transfer"),
        Workload::Get => Op::Get { key },
        Workload::Append => Op::Append {
            key,
            value: value(),
        },
        Workload::Mixed { read_ratio } => {
            if unit_f64(rng) < read_ratio {
                Op::Get { key }
            } else {
                Op::Put {
                    key,
                    value: value(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_requested_size_and_name_their_writer() {
        let v = value_for(0xab, 7, 64);
        assert_eq!(v.len(), 64);
        assert!(v.starts_with(b"00000000000000ab:7."));
        assert_eq!(value_for(0xab, 7, 4).len(), 4);
        assert_ne!(value_for(1, 1, 64), value_for(1, 2, 64));
    }

    #[test]
    fn mixed_reads_about_the_requested_share() {
        let dist = KeyDist::Uniform { n: 10 };
        let mut rng = Rng::new(5);
        let w = Workload::parse("mixed", 0.9).unwrap();
        let gets = (0..10_000)
            .filter(|s| matches!(next_op(w, &dist, &mut rng, 0, 1, *s, 8), Op::Get { .. }))
            .count();
        assert!((8_700..9_300).contains(&gets), "{gets}");
    }

    #[test]
    fn prefill_walks_the_keys_in_order() {
        let dist = KeyDist::Uniform { n: 10 };
        let mut rng = Rng::new(5);
        let prefill = Workload::Prefill { balance: None };
        let op = next_op(prefill, &dist, &mut rng, 3, 1, 1, 8);
        assert_eq!(op.key().as_ref(), b"k3");
        assert!(matches!(op, Op::Put { .. }));
        let bank = Workload::Prefill {
            balance: Some(INITIAL_BALANCE),
        };
        let Op::Put { key, value } = next_op(bank, &dist, &mut rng, 4, 1, 1, 8) else {
            panic!("a prefill puts");
        };
        assert_eq!(
            (key.as_ref(), value.as_ref()),
            (&b"k4"[..], &b"1000000"[..])
        );
    }

    /// A configuration of `groups` groups over 12 shards, round robin.
    fn config(groups: u32) -> Config {
        Config {
            shards: (0..12).map(|s| 1 + s % groups).collect(),
            ..Config::default()
        }
    }

    /// The two accounts and the amount of a transfer.
    fn parts(op: &Op) -> (u64, u64, i64) {
        let Op::Txn(txn) = op else {
            panic!("a transfer is a transaction: {op:?}");
        };
        let account = |op: &Op| -> (u64, i64) {
            let Op::Incr { key, delta } = op else {
                panic!("a transfer is two Incrs: {op:?}");
            };
            let index = std::str::from_utf8(&key[1..]).unwrap().parse().unwrap();
            (index, *delta)
        };
        assert!(txn.compares.is_empty() && txn.failure.is_empty());
        assert_eq!(txn.success.len(), 2);
        let (from, debit) = account(&txn.success[0]);
        let (to, credit) = account(&txn.success[1]);
        assert_eq!(
            debit, -credit,
            "a transfer moves money, it does not make it"
        );
        (from, to, credit)
    }

    #[test]
    fn transfers_move_an_amount_between_two_distinct_accounts() {
        let dist = KeyDist::Uniform { n: 50 };
        let groups = GroupMap::new(&config(3));
        let mut rng = Rng::new(9);
        let mut spans = [0u32; 2];
        for _ in 0..2_000 {
            let (op, in_span) = next_transfer(TxnSpan::Any, &dist, &mut rng, &groups);
            assert!(in_span);
            let (from, to, amount) = parts(&op);
            assert_ne!(from, to);
            assert!(from < 50 && to < 50);
            assert!((1..=TRANSFER_AMOUNT_MAX).contains(&amount), "{amount}");
            spans[usize::from(groups.group_of(from) != groups.group_of(to))] += 1;
        }
        // Unrestricted, about a third of them are in one group of three.
        assert!((500..850).contains(&spans[0]), "{spans:?}");
    }

    #[test]
    fn spans_put_both_accounts_where_asked_by_the_configuration() {
        let groups = GroupMap::new(&config(3));
        let mut rng = Rng::new(3);
        for dist in [
            KeyDist::Uniform { n: 200 },
            KeyDist::Zipfian(crate::zipf::Zipfian::new(200, 0.99).unwrap()),
        ] {
            for _ in 0..500 {
                let (op, in_span) = next_transfer(TxnSpan::OneGroup, &dist, &mut rng, &groups);
                let (from, to, _) = parts(&op);
                assert!(in_span && from != to);
                assert_eq!(groups.group_of(from), groups.group_of(to));
                let (op, in_span) = next_transfer(TxnSpan::CrossGroup, &dist, &mut rng, &groups);
                let (from, to, _) = parts(&op);
                assert!(in_span);
                assert_ne!(groups.group_of(from), groups.group_of(to));
            }
        }
        // One group: no transfer can span two, so each settles, boundedly.
        let one = GroupMap::new(&config(1));
        let (op, in_span) = next_transfer(
            TxnSpan::CrossGroup,
            &KeyDist::Uniform { n: 10 },
            &mut rng,
            &one,
        );
        let (from, to, _) = parts(&op);
        assert!(!in_span && from != to);
    }

    #[test]
    fn workload_names_parse() {
        assert_eq!(Workload::parse("put", 0.5), Ok(Workload::Put));
        assert!(Workload::parse("scan", 0.5).is_err());
        assert!(Workload::parse("mixed", 1.5).is_err());
        assert_eq!(Workload::parse("mixed", 0.5).unwrap().label(), "mixed50");
        let transfer = Workload::parse("transfer", 0.5).unwrap();
        assert_eq!(transfer, Workload::Transfer { span: TxnSpan::Any });
        assert!(transfer.is_bank() && !transfer.reads());
        assert_eq!(transfer.label(), "transfer");
    }
}
