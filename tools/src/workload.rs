//! What each benchmark operation is: the workload mix, key names and values.
//!
//! Keys are `k<index>` with the index drawn from a [`KeyDist`]; they are
//! formatted per operation rather than kept in a table, so a 10-million key
//! space costs no memory. Values carry the writer's client id and seq, so
//! in a `--check` run every written value is distinct and a Get's answer
//! names the write it saw (which is what makes the linearizability check
//! sharp); the rest is padding up to `--value-size`.

use bytes::Bytes;
use synod::rng::Rng;
use synod_wire::{ClientId, Op, Seq};

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
    /// One Put of every key in order (`k0`, `k1`, ...), so later Gets hit.
    Prefill,
}

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
            other => Err(format!(
                "--workload must be put, get, append or mixed, not {other:?}"
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
            Workload::Prefill => "prefill".into(),
        }
    }

    /// Whether Gets of this workload expect the keys to exist.
    pub fn reads(&self) -> bool {
        matches!(self, Workload::Get | Workload::Mixed { .. })
    }
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
/// otherwise).
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
        Workload::Prefill => key_name(index),
        _ => key_name(dist.sample(rng)),
    };
    let value = || value_for(client_id, seq, value_size);
    match workload {
        Workload::Put | Workload::Prefill => Op::Put {
            key,
            value: value(),
        },
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
        let op = next_op(Workload::Prefill, &dist, &mut rng, 3, 1, 1, 8);
        assert_eq!(op.key().as_ref(), b"k3");
        assert!(matches!(op, Op::Put { .. }));
    }

    #[test]
    fn workload_names_parse() {
        assert_eq!(Workload::parse("put", 0.5), Ok(Workload::Put));
        assert!(Workload::parse("scan", 0.5).is_err());
        assert!(Workload::parse("mixed", 1.5).is_err());
        assert_eq!(Workload::parse("mixed", 0.5).unwrap().label(), "mixed50");
    }
}
