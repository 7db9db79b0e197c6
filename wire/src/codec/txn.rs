//! Transactions: a [`Txn`]'s body inside a request, both ways, and the
//! [`TxnResult`] carried by the `Ok` that answers one.

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{
    Compare, CompareOp, CompareTarget, Op, Txn, TxnFinish, TxnId, TxnOpResult, TxnOutcome,
    TxnPrepare, TxnResult, TxnVote, TXN_PARTS_MAX,
};

use super::*;

/// The `Error` reason a group gives a single-group `Txn` when it serves the
/// transaction's first key (its at-most-once session lives there) but not
/// all of its keys. The refusal is cached under the request's `seq` like a
/// reply, so no copy of that `seq` can apply anywhere later: a client may
/// then run the transaction again under a new `seq` (across groups by
/// two-phase commit) without it applying twice (PROTOCOL.md 5.1).
pub const TXN_SPANS_GROUPS: &str = "transaction keys lie in several groups";

const COMPARE_TARGET_VALUE: u8 = 0;
const COMPARE_TARGET_VERSION: u8 = 1;
const TXN_RESULT_OK: u8 = 0;
const TXN_RESULT_NO_KEY: u8 = 1;
const TXN_RESULT_ERROR: u8 = 2;
/// Smallest compare: empty key, op, target tag, empty value.
const MIN_COMPARE_LEN: usize = 4 + 1 + 1 + 4;
/// Smallest operation in a transaction: kind and empty key.
const MIN_TXN_OP_LEN: usize = 1 + 4;
/// Smallest operation result: the NoKey tag.
const MIN_TXN_OP_RESULT_LEN: usize = 1;

pub(super) fn txn_body_len(txn: &Txn) -> usize {
    let compares: usize = txn
        .compares
        .iter()
        .map(|c| {
            4 + c.key.len()
                + 2
                + match &c.target {
                    CompareTarget::Value(v) => 4 + v.len(),
                    CompareTarget::Version(_) => 8,
                }
        })
        .sum();
    let ops: usize = txn.success.iter().chain(&txn.failure).map(txn_op_len).sum();
    4 + compares + 4 + 4 + ops
}

fn txn_op_len(op: &Op) -> usize {
    1 + 4
        + op.key().len()
        + match op {
            Op::Put { value, .. } | Op::Append { value, .. } => 4 + value.len(),
            Op::Incr { .. } => 8,
            Op::Get { .. } | Op::Delete { .. } => 0,
            other => panic!("{other:?} cannot be part of a transaction (Txn::invalid)"),
        }
}

/// `compares vec<compare>, success vec<txn_op>, failure vec<txn_op>`
/// (PROTOCOL.md 5.1). Panics on an operation a transaction may not hold
/// (a caller bug: [`Txn::invalid`] says so first).
pub(super) fn put_txn_body(out: &mut BytesMut, txn: &Txn) {
    put_count(out, txn.compares.len());
    for c in &txn.compares {
        put_byte_string(out, &c.key);
        out.put_u8(c.op as u8);
        match &c.target {
            CompareTarget::Value(v) => {
                out.put_u8(COMPARE_TARGET_VALUE);
                put_byte_string(out, v);
            }
            CompareTarget::Version(v) => {
                out.put_u8(COMPARE_TARGET_VERSION);
                out.put_u64_le(*v);
            }
        }
    }
    for ops in [&txn.success, &txn.failure] {
        put_count(out, ops.len());
        for op in ops {
            out.put_u8(op_kind(op));
            put_byte_string(out, op.key());
            match op {
                Op::Put { value, .. } | Op::Append { value, .. } => put_byte_string(out, value),
                Op::Incr { delta, .. } => out.put_i64_le(*delta),
                Op::Get { .. } | Op::Delete { .. } => {}
                other => panic!("{other:?} cannot be part of a transaction (Txn::invalid)"),
            }
        }
    }
}

/// A transaction part count: proven to fit in the input (see
/// `Reader::count`) and refused above [`TXN_PARTS_MAX`] before anything is
/// reserved, so a lying count costs at most `TXN_PARTS_MAX` items.
fn txn_count(r: &mut Reader, min_item_len: usize) -> Result<usize, DecodeError> {
    let n = r.count(min_item_len)?;
    if n > TXN_PARTS_MAX {
        return Err(DecodeError::Invalid("transaction too large"));
    }
    Ok(n)
}

pub(super) fn read_txn_body(r: &mut Reader) -> Result<Txn, DecodeError> {
    let n = txn_count(r, MIN_COMPARE_LEN)?;
    let mut compares = Vec::with_capacity(n);
    for _ in 0..n {
        let key = r.byte_string()?;
        let op = CompareOp::from_code(r.u8()?).ok_or(DecodeError::Invalid("compare op"))?;
        let target = match r.u8()? {
            COMPARE_TARGET_VALUE => CompareTarget::Value(r.byte_string()?),
            COMPARE_TARGET_VERSION => CompareTarget::Version(r.u64()?),
            _ => return Err(DecodeError::Invalid("compare target")),
        };
        compares.push(Compare { key, op, target });
    }
    let mut branches = [Vec::new(), Vec::new()];
    for ops in &mut branches {
        let n = txn_count(r, MIN_TXN_OP_LEN)?;
        ops.reserve(n);
        for _ in 0..n {
            let kind = r.u8()?;
            let key = r.byte_string()?;
            ops.push(read_txn_op(
                kind,
                key,
                r,
                "operation kind in a transaction",
            )?);
        }
    }
    let [success, failure] = branches;
    if compares.len() + success.len() + failure.len() > TXN_PARTS_MAX {
        return Err(DecodeError::Invalid("transaction too large"));
    }
    Ok(Txn {
        compares,
        success,
        failure,
    })
}

/// The fields after the key of an operation a transaction may hold (Get,
/// Put, Append, Delete, Incr): the same layout inside a transaction and as
/// a request of its own. Any other kind is [`DecodeError::Invalid`] with
/// `other`.
pub(super) fn read_txn_op(
    kind: u8,
    key: Bytes,
    r: &mut Reader,
    other: &'static str,
) -> Result<Op, DecodeError> {
    Ok(match kind {
        KIND_GET => Op::Get { key },
        KIND_PUT => Op::Put {
            key,
            value: r.byte_string()?,
        },
        KIND_APPEND => Op::Append {
            key,
            value: r.byte_string()?,
        },
        KIND_DELETE => Op::Delete { key },
        KIND_INCR => Op::Incr {
            key,
            delta: r.u64()? as i64,
        },
        _ => return Err(DecodeError::Invalid(other)),
    })
}

/// `client u64, seq u64` (PROTOCOL.md 5.2).
pub(super) fn put_txn_id(out: &mut BytesMut, id: TxnId) {
    out.put_u64_le(id.client);
    out.put_u64_le(id.seq);
}

pub(super) fn read_txn_id(r: &mut Reader) -> Result<TxnId, DecodeError> {
    Ok(TxnId {
        client: r.u64()?,
        seq: r.u64()?,
    })
}

/// `txn_id`, then a transaction body (the group's part), then the
/// coordinator's `gid u32`. A prepare logged before recovery existed ends
/// after the part: its coordinator reads as 0 (unknown), which is also how
/// 0 is written, so an explicit 0 is refused (one encoding per prepare).
pub(super) fn read_txn_prepare(r: &mut Reader) -> Result<TxnPrepare, DecodeError> {
    let txn = read_txn_id(r)?;
    let part = read_txn_body(r)?;
    let coordinator = if r.remaining() == 0 {
        0
    } else {
        match r.u32()? {
            0 => return Err(DecodeError::Invalid("TxnPrepare coordinator 0 written out")),
            gid => gid,
        }
    };
    Ok(TxnPrepare {
        txn,
        part,
        coordinator,
    })
}

/// `txn_id, key bytes, outcome u8`.
pub(super) fn read_txn_finish(r: &mut Reader) -> Result<TxnFinish, DecodeError> {
    Ok(TxnFinish {
        txn: read_txn_id(r)?,
        key: r.byte_string()?,
        outcome: TxnOutcome::from_code(r.u8()?)
            .ok_or(DecodeError::Invalid("transaction outcome"))?,
    })
}

fn put_txn_op_results(out: &mut BytesMut, results: &[TxnOpResult]) {
    put_count(out, results.len());
    for r in results {
        match r {
            TxnOpResult::Ok { value, version } => {
                out.put_u8(TXN_RESULT_OK);
                put_byte_string(out, value);
                out.put_u64_le(*version);
            }
            TxnOpResult::NoKey => out.put_u8(TXN_RESULT_NO_KEY),
            TxnOpResult::Error { reason } => {
                out.put_u8(TXN_RESULT_ERROR);
                put_byte_string(out, reason.as_bytes());
            }
        }
    }
}

fn read_txn_op_results(r: &mut Reader) -> Result<Vec<TxnOpResult>, DecodeError> {
    let n = r.count(MIN_TXN_OP_RESULT_LEN)?;
    let mut results = Vec::with_capacity(n);
    for _ in 0..n {
        results.push(match r.u8()? {
            TXN_RESULT_OK => TxnOpResult::Ok {
                value: r.byte_string()?,
                version: r.u64()?,
            },
            TXN_RESULT_NO_KEY => TxnOpResult::NoKey,
            TXN_RESULT_ERROR => TxnOpResult::Error {
                reason: r.string()?,
            },
            _ => return Err(DecodeError::Invalid("transaction result tag")),
        });
    }
    Ok(results)
}

fn read_flag(r: &mut Reader, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid(what)),
    }
}

/// The value of the `Ok` answering a [`TxnPrepare`]: `yes u8, holds u8`,
/// then the `success` and the `failure` results, each `vec<result>` as in
/// [`encode_txn_result`]. PROTOCOL.md 5.2.
pub fn encode_txn_vote(vote: &TxnVote) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(u8::from(vote.yes));
    out.put_u8(u8::from(vote.holds));
    put_txn_op_results(&mut out, &vote.success);
    put_txn_op_results(&mut out, &vote.failure);
    out.freeze()
}

/// Reads [`encode_txn_vote`]'s bytes. Never panics on bad input.
pub fn decode_txn_vote(bytes: Bytes) -> Result<TxnVote, DecodeError> {
    let mut r = Reader::new(&bytes);
    let yes = read_flag(&mut r, "vote flag")?;
    let holds = read_flag(&mut r, "vote holds flag")?;
    let success = read_txn_op_results(&mut r)?;
    let failure = read_txn_op_results(&mut r)?;
    r.finish()?;
    Ok(TxnVote {
        yes,
        holds,
        success,
        failure,
    })
}

/// The value of the `Ok` answering a transaction: `succeeded u8`, then
/// `vec<result>`, each `0 bytes value, u64 version` (Ok), `1` (NoKey) or
/// `2 string reason` (Error). PROTOCOL.md 5.1.
pub fn encode_txn_result(result: &TxnResult) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(u8::from(result.succeeded));
    put_txn_op_results(&mut out, &result.results);
    out.freeze()
}

/// Reads [`encode_txn_result`]'s bytes (an `Ok` value answering a
/// transaction). Never panics on bad input.
pub fn decode_txn_result(bytes: Bytes) -> Result<TxnResult, DecodeError> {
    let mut r = Reader::new(&bytes);
    let succeeded = read_flag(&mut r, "transaction succeeded flag")?;
    let results = read_txn_op_results(&mut r)?;
    r.finish()?;
    Ok(TxnResult { succeeded, results })
}
