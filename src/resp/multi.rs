//! Redis transactions and atomic multi-key commands for one RESP
//! connection, on Synod's single-group transactions (`Op::Txn`, one log
//! entry). Sans-IO: [`Multi::intercept`] decides what a command means for
//! the connection's transaction state; the work that needs the cluster
//! ([`Work`]) runs in connection order (`pipeline` runs each as a barrier:
//! after every earlier command finished, before any later one starts), and
//! [`Multi::start`] / [`Multi::finish`] turn it into transactions and their
//! results into replies.
//!
//! - `MULTI` starts queuing: each later command answers `+QUEUED` (or an
//!   error, which makes `EXEC` answer `-EXECABORT`, as Redis does for a
//!   command it cannot queue). Only commands whose operations a transaction
//!   can hold (Get, Put, Append, Delete, Incr: GET, SET without options,
//!   APPEND, DEL, INCR..., MGET, MSET, EXISTS, STRLEN, GETRANGE, TYPE) and
//!   PING/ECHO may be queued; anything else is refused at queue time.
//! - `WATCH k...` reads each key's version (a one-Get transaction per key:
//!   its result carries the version, 0 when absent).
//! - `EXEC` is one transaction: a compare `version == watched` per watched
//!   key, then every queued command's operations. The compares failing is
//!   exactly "a watched key changed", answered with the null array. Keys in
//!   more than one group: the session runs it as a two-phase commit.
//! - `MSET`, `MGET`, `DEL`/`UNLINK` of several keys are one transaction
//!   (across groups by two-phase commit); when the session refuses it as
//!   cross-group (no session does since two-phase commit; kept for the
//!   fallback) or too large for one request, or it would hold more
//!   than `TXN_PARTS_MAX` operations, they run as before, one operation
//!   per key (not atomic).
//!   `MSETNX` is one transaction (compares: every key absent); `RENAME`/
//!   `RENAMENX` read the source's value and version, then move it with a
//!   transaction guarded by that version, again on a conflict. Those three
//!   have no per-key form: refused as too large, they answer the refusal.
//!
//! What it must never do: run part of a transaction, or hold unbounded
//! state for a client (queued operations and watched keys are capped at
//! `TXN_PARTS_MAX`, what one transaction may hold).

use std::borrow::Cow;

use bytes::Bytes;
use synod_wire::{
    decode_txn_result, Compare, CompareOp, CompareTarget, Op, Txn, TxnOpResult, TXN_PARTS_MAX,
};

use super::command::{error_reply, is, plan, wrong_arity, KvCommand, Plan, Session};
use super::reply::Reply;
use crate::client::session::CROSS_GROUP_REFUSAL;
use crate::client::{ClientError, OpResult};

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
/// RENAME's tries when the source keeps changing between its read and its
/// move.
const RENAME_TRIES_MAX: u32 = 16;

/// One command queued between MULTI and EXEC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Queued {
    /// Its operations run inside EXEC's transaction.
    Kv(KvCommand),
    /// Its reply needs no cluster (PING, ECHO).
    Fixed(Reply),
}

/// Work that needs the cluster, run in connection order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// WATCH: read these (distinct) keys' versions.
    Watch(Vec<Bytes>),
    /// UNWATCH, DISCARD, an aborted EXEC, RESET: forget the watched keys
    /// (in order with the WATCHes before), then answer this.
    Unwatch(Reply),
    /// EXEC of these queued commands.
    Exec(Vec<Queued>),
    /// A multi-key command as one transaction, per key if cross-group.
    Atomic(KvCommand),
    /// MSETNX of these pairs.
    MsetNx(Vec<(Bytes, Bytes)>),
    /// RENAME / RENAMENX; `read` is the source's value and version once
    /// read (then the move is sent).
    Rename {
        src: Bytes,
        dst: Bytes,
        nx: bool,
        read: Option<(Bytes, u64)>,
        tries: u32,
    },
}

/// What [`Multi::intercept`] made of a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Intercept {
    /// Not a transaction matter: plan it as usual.
    Pass,
    /// Answered at once.
    Reply(Reply),
    /// Needs the cluster, in order.
    Work(Work),
}

/// How a piece of work begins.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    Done(Reply),
    /// Send these operations (distinct first keys); their results come
    /// back to [`Multi::finish`] in this order.
    Send(Vec<Op>),
}

/// How a piece of work ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    Done(Reply),
    /// Not done: start this next (RENAME's move after its read).
    Next(Work),
    /// The transaction was refused as cross-group: run the command's
    /// operations one key at a time (today's non-atomic behaviour).
    PerKey(KvCommand),
}

/// One connection's transaction state.
#[derive(Debug, Default)]
pub struct Multi {
    /// Between MULTI and EXEC/DISCARD: the queued commands.
    queue: Option<Vec<Queued>>,
    /// Operations queued (bounded by `TXN_PARTS_MAX`).
    queued_ops: usize,
    /// A command was refused while queuing: EXEC aborts.
    dirty: bool,
    /// Watched keys and the versions WATCH read, updated in connection
    /// order (only by work, which runs in order).
    watched: Vec<(Bytes, u64)>,
    /// A WATCH read failed: the next EXEC cannot know whether its keys
    /// changed, so it answers as if they had (nothing runs).
    watch_failed: bool,
}

/// Can a transaction hold `op`?
fn txn_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Get { .. } | Op::Put { .. } | Op::Append { .. } | Op::Delete { .. } | Op::Incr { .. }
    )
}

fn txn(compares: Vec<Compare>, success: Vec<Op>) -> Op {
    Op::Txn(Box::new(Txn {
        compares,
        success,
        failure: Vec::new(),
    }))
}

fn version_is(key: Bytes, version: u64) -> Compare {
    Compare {
        key,
        op: CompareOp::Eq,
        target: CompareTarget::Version(version),
    }
}

/// A transaction's operation result as the single operation's.
fn op_result(r: TxnOpResult) -> OpResult {
    match r {
        TxnOpResult::Ok { value, .. } => Ok(Some(value)),
        TxnOpResult::NoKey => Ok(None),
        TxnOpResult::Error { reason } => Err(ClientError::Refused(reason)),
    }
}

/// The decoded result of the one transaction a piece of work sent, or the
/// reply that says why there is none.
fn txn_result(mut results: Vec<OpResult>) -> Result<synod_wire::TxnResult, Reply> {
    let one = match results.pop() {
        Some(r) if results.is_empty() => r,
        _ => return Err(protocol("one result per transaction")),
    };
    match one {
        Ok(Some(bytes)) => decode_txn_result(bytes).map_err(|e| protocol(&e.to_string())),
        Ok(None) => Err(protocol("a transaction answered no value")),
        Err(e) => Err(error_reply(&e)),
    }
}

fn protocol(why: &str) -> Reply {
    error_reply(&ClientError::Protocol(format!("transaction result: {why}")))
}

/// Was the one transaction refused before it ran in a way the per-key form
/// avoids: keys across groups, or more bytes than one request may carry
/// (each key's operation may still fit)?
fn per_key_instead(results: &[OpResult]) -> bool {
    match results {
        [Err(ClientError::Refused(why))] => why.contains(CROSS_GROUP_REFUSAL),
        [Err(ClientError::TooLarge)] => true,
        _ => false,
    }
}

impl Multi {
    /// Between MULTI and EXEC/DISCARD?
    pub fn queuing(&self) -> bool {
        self.queue.is_some()
    }

    /// What `args` means for the transaction state (AUTH and QUIT are the
    /// caller's: a locked session and QUIT pass).
    pub fn intercept(&mut self, args: &[Bytes], session: &mut Session) -> Intercept {
        let Some((name, rest)) = args.split_first() else {
            return Intercept::Pass;
        };
        if session.locked() || is(name, "QUIT") {
            return Intercept::Pass;
        }
        if is(name, "RESET") {
            // RESET leaves MULTI and unwatches, as in Redis; its own reply
            // (and session changes) come from the usual plan.
            self.queue = None;
            self.dirty = false;
            self.queued_ops = 0;
            let reply = match plan(args, session) {
                Plan::Reply(r) => r,
                other => unreachable!("RESET is answered locally, not {other:?}"),
            };
            return Intercept::Work(Work::Unwatch(reply));
        }
        if self.queuing() {
            return self.while_queuing(name, rest, args, session);
        }
        if is(name, "MULTI") {
            if !rest.is_empty() {
                return Intercept::Reply(wrong_arity(name));
            }
            self.queue = Some(Vec::new());
            self.queued_ops = 0;
            self.dirty = false;
            Intercept::Reply(Reply::OK)
        } else if is(name, "EXEC") || is(name, "DISCARD") {
            Intercept::Reply(Reply::Error(Cow::Owned(format!(
                "ERR {} without MULTI",
                String::from_utf8_lossy(name).to_uppercase()
            ))))
        } else if is(name, "WATCH") {
            if rest.is_empty() {
                return Intercept::Reply(wrong_arity(name));
            }
            let mut keys: Vec<Bytes> = Vec::new();
            for k in rest {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
            if keys.len() + self.watched.len() > TXN_PARTS_MAX {
                return Intercept::Reply(Reply::Error(Cow::Owned(format!(
                    "ERR too many watched keys: a Synod transaction holds at most {TXN_PARTS_MAX} compares and operations"
                ))));
            }
            Intercept::Work(Work::Watch(keys))
        } else if is(name, "UNWATCH") {
            if !rest.is_empty() {
                return Intercept::Reply(wrong_arity(name));
            }
            Intercept::Work(Work::Unwatch(Reply::OK))
        } else if is(name, "MSETNX") {
            if rest.len() < 2 || rest.len() % 2 != 0 {
                return Intercept::Reply(wrong_arity(name));
            }
            let pairs = rest
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            Intercept::Work(Work::MsetNx(pairs))
        } else if is(name, "RENAME") || is(name, "RENAMENX") {
            let [src, dst] = rest else {
                return Intercept::Reply(wrong_arity(name));
            };
            Intercept::Work(Work::Rename {
                src: src.clone(),
                dst: dst.clone(),
                nx: is(name, "RENAMENX"),
                read: None,
                tries: 0,
            })
        } else if ["MSET", "MGET", "DEL", "UNLINK"]
            .iter()
            .any(|c| is(name, c))
        {
            match plan(args, session) {
                Plan::Kv(cmd) if cmd.ops.len() > 1 && cmd.ops.len() <= TXN_PARTS_MAX => {
                    Intercept::Work(Work::Atomic(cmd))
                }
                // One key: atomic on its own, no transaction needed. More
                // keys than one transaction holds: per key, as before.
                Plan::Kv(_) => Intercept::Pass,
                Plan::Reply(r) => Intercept::Reply(r),
                Plan::Quit => unreachable!("only QUIT quits"),
            }
        } else {
            Intercept::Pass
        }
    }

    fn while_queuing(
        &mut self,
        name: &[u8],
        rest: &[Bytes],
        args: &[Bytes],
        session: &mut Session,
    ) -> Intercept {
        if is(name, "EXEC") || is(name, "DISCARD") {
            let queued = self.queue.take().expect("queuing");
            self.queued_ops = 0;
            let dirty = std::mem::take(&mut self.dirty);
            if !rest.is_empty() {
                // As Redis: the arity error, still in MULTI, and the
                // transaction flagged so that EXEC aborts.
                self.queue = Some(queued);
                self.dirty = true;
                return Intercept::Reply(wrong_arity(name));
            }
            return Intercept::Work(if is(name, "DISCARD") {
                Work::Unwatch(Reply::OK)
            } else if dirty {
                Work::Unwatch(Reply::error(EXECABORT))
            } else {
                Work::Exec(queued)
            });
        }
        if is(name, "MULTI") {
            return Intercept::Reply(Reply::error("ERR MULTI calls can not be nested"));
        }
        if is(name, "WATCH") {
            return Intercept::Reply(Reply::error("ERR WATCH inside MULTI is not allowed"));
        }
        let queued = if is(name, "PING") || is(name, "ECHO") || is(name, "UNWATCH") {
            // Pure: answered at queue time, replied inside EXEC's array.
            // (UNWATCH inside MULTI is queued by Redis and does nothing.)
            match plan(args, &mut session.clone()) {
                Plan::Reply(Reply::Error(e)) => return self.refuse(Reply::Error(e)),
                Plan::Reply(r) => Queued::Fixed(r),
                _ if is(name, "UNWATCH") => Queued::Fixed(Reply::OK),
                other => unreachable!("PING and ECHO answer locally, not {other:?}"),
            }
        } else if ["MSETNX", "RENAME", "RENAMENX"].iter().any(|c| is(name, c)) {
            return self.refuse(not_queueable(name));
        } else {
            // Planned on a copy: a command refused here must not change the
            // connection (CLIENT SETNAME, HELLO would).
            match plan(args, &mut session.clone()) {
                Plan::Kv(cmd) if cmd.ops.iter().all(txn_op) => Queued::Kv(cmd),
                Plan::Reply(Reply::Error(e)) => return self.refuse(Reply::Error(e)),
                _ => return self.refuse(not_queueable(name)),
            }
        };
        let ops = match &queued {
            Queued::Kv(cmd) => cmd.ops.len(),
            Queued::Fixed(_) => 0,
        };
        if self.queued_ops + ops > TXN_PARTS_MAX {
            return self.refuse(Reply::Error(Cow::Owned(format!(
                "ERR transaction too large: a Synod transaction holds at most {TXN_PARTS_MAX} operations"
            ))));
        }
        self.queued_ops += ops;
        self.queue.as_mut().expect("queuing").push(queued);
        Intercept::Reply(Reply::Simple(Cow::Borrowed("QUEUED")))
    }

    /// A command that cannot be queued: answered `error`, and EXEC aborts.
    fn refuse(&mut self, error: Reply) -> Intercept {
        self.dirty = true;
        Intercept::Reply(error)
    }

    /// Begins `work` (its turn has come: everything before it finished).
    pub fn start(&mut self, work: &Work) -> Start {
        match work {
            Work::Watch(keys) => Start::Send(
                keys.iter()
                    .map(|k| txn(Vec::new(), vec![Op::Get { key: k.clone() }]))
                    .collect(),
            ),
            Work::Unwatch(reply) => {
                self.watched.clear();
                self.watch_failed = false;
                Start::Done(reply.clone())
            }
            Work::Exec(queued) => {
                // EXEC unwatches whatever happens next.
                let watched = std::mem::take(&mut self.watched);
                if std::mem::take(&mut self.watch_failed) {
                    return Start::Done(Reply::NilArray);
                }
                let compares: Vec<Compare> =
                    watched.into_iter().map(|(k, v)| version_is(k, v)).collect();
                let ops: Vec<Op> = queued
                    .iter()
                    .flat_map(|q| match q {
                        Queued::Kv(cmd) => cmd.ops.clone(),
                        Queued::Fixed(_) => Vec::new(),
                    })
                    .collect();
                if compares.is_empty() && ops.is_empty() {
                    return Start::Done(Reply::Array(
                        queued
                            .iter()
                            .map(|q| match q {
                                Queued::Fixed(r) => r.clone(),
                                Queued::Kv(_) => unreachable!("no operations"),
                            })
                            .collect(),
                    ));
                }
                Start::Send(vec![txn(compares, ops)])
            }
            Work::Atomic(cmd) => Start::Send(vec![txn(Vec::new(), cmd.ops.clone())]),
            Work::MsetNx(pairs) => Start::Send(vec![txn(
                pairs
                    .iter()
                    .map(|(k, _)| version_is(k.clone(), 0))
                    .collect(),
                pairs
                    .iter()
                    .map(|(key, value)| Op::Put {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            )]),
            Work::Rename {
                src, dst, nx, read, ..
            } => match read {
                None => {
                    let mut gets = vec![Op::Get { key: src.clone() }];
                    if *nx {
                        gets.push(Op::Get { key: dst.clone() });
                    }
                    Start::Send(vec![txn(Vec::new(), gets)])
                }
                Some((value, version)) => {
                    let mut compares = vec![version_is(src.clone(), *version)];
                    if *nx {
                        compares.push(version_is(dst.clone(), 0));
                    }
                    Start::Send(vec![txn(
                        compares,
                        vec![
                            Op::Put {
                                key: dst.clone(),
                                value: value.clone(),
                            },
                            Op::Delete { key: src.clone() },
                        ],
                    )])
                }
            },
        }
    }

    /// Ends `work` with one result per operation [`Multi::start`] sent.
    pub fn finish(&mut self, work: Work, results: Vec<OpResult>) -> Finished {
        match work {
            Work::Watch(keys) => {
                assert_eq!(keys.len(), results.len(), "one result per watched key");
                let mut failure = None;
                for (key, r) in keys.into_iter().zip(results) {
                    let version = match txn_result(vec![r]).map(|t| t.results) {
                        Ok(mut rs) if rs.len() == 1 => match rs.pop().expect("one") {
                            TxnOpResult::Ok { version, .. } => version,
                            TxnOpResult::NoKey => 0,
                            TxnOpResult::Error { reason } => {
                                failure = Some(error_reply(&ClientError::Refused(reason)));
                                continue;
                            }
                        },
                        Ok(_) => {
                            failure = Some(protocol("one result per Get"));
                            continue;
                        }
                        Err(reply) => {
                            failure = Some(reply);
                            continue;
                        }
                    };
                    self.watched.push((key, version));
                }
                match failure {
                    Some(reply) => {
                        self.watch_failed = true;
                        Finished::Done(reply)
                    }
                    None => Finished::Done(Reply::OK),
                }
            }
            Work::Unwatch(reply) => Finished::Done(reply),
            Work::Exec(queued) => {
                let t = match txn_result(results) {
                    Ok(t) => t,
                    Err(reply) => return Finished::Done(reply),
                };
                if !t.succeeded {
                    return Finished::Done(Reply::NilArray);
                }
                let mut rs = t.results.into_iter();
                let mut replies = Vec::with_capacity(queued.len());
                for q in queued {
                    match q {
                        Queued::Fixed(r) => replies.push(r),
                        Queued::Kv(cmd) => {
                            let mine: Vec<OpResult> =
                                rs.by_ref().take(cmd.ops.len()).map(op_result).collect();
                            if mine.len() != cmd.ops.len() {
                                return Finished::Done(protocol("fewer results than operations"));
                            }
                            replies.push(cmd.finish(mine));
                        }
                    }
                }
                Finished::Done(Reply::Array(replies))
            }
            Work::Atomic(cmd) => {
                if per_key_instead(&results) {
                    return Finished::PerKey(cmd);
                }
                match txn_result(results) {
                    Ok(t) if t.results.len() == cmd.ops.len() => {
                        Finished::Done(cmd.finish(t.results.into_iter().map(op_result).collect()))
                    }
                    Ok(_) => Finished::Done(protocol("one result per operation")),
                    Err(reply) => Finished::Done(reply),
                }
            }
            Work::MsetNx(_) => match txn_result(results) {
                Ok(t) => Finished::Done(Reply::Integer(t.succeeded.into())),
                Err(reply) => Finished::Done(reply),
            },
            Work::Rename {
                src,
                dst,
                nx,
                read,
                tries,
            } => {
                let t = match txn_result(results) {
                    Ok(t) => t,
                    Err(reply) => return Finished::Done(reply),
                };
                match read {
                    None => {
                        let mut rs = t.results.into_iter();
                        let (value, version) = match rs.next() {
                            Some(TxnOpResult::Ok { value, version }) => (value, version),
                            Some(TxnOpResult::NoKey) => {
                                return Finished::Done(Reply::error("ERR no such key"))
                            }
                            _ => return Finished::Done(protocol("RENAME's read")),
                        };
                        if nx && !matches!(rs.next(), Some(TxnOpResult::NoKey)) {
                            // The destination exists (or is the source).
                            return Finished::Done(Reply::Integer(0));
                        }
                        if src == dst {
                            return Finished::Done(Reply::OK);
                        }
                        Finished::Next(Work::Rename {
                            src,
                            dst,
                            nx,
                            read: Some((value, version)),
                            tries,
                        })
                    }
                    Some(_) if t.succeeded => {
                        Finished::Done(if nx { Reply::Integer(1) } else { Reply::OK })
                    }
                    Some(_) if tries + 1 >= RENAME_TRIES_MAX => {
                        Finished::Done(Reply::Error(Cow::Owned(format!(
                            "ERR RENAME gave up: the keys changed under it {RENAME_TRIES_MAX} times"
                        ))))
                    }
                    // The source (or, for NX, the destination) changed since
                    // the read: read again.
                    Some(_) => Finished::Next(Work::Rename {
                        src,
                        dst,
                        nx,
                        read: None,
                        tries: tries + 1,
                    }),
                }
            }
        }
    }
}

fn not_queueable(name: &[u8]) -> Reply {
    Reply::Error(Cow::Owned(format!(
        "ERR '{}' cannot be queued in MULTI on Synod: a transaction holds only GET, SET (without options), APPEND, DEL, UNLINK, EXISTS, MGET, MSET, STRLEN, GETRANGE, TYPE, INCR, DECR, INCRBY, DECRBY, PING and ECHO",
        String::from_utf8_lossy(name).to_lowercase()
    )))
}

#[cfg(test)]
mod tests {
    //! Connections' pipelines against the real KV state machine (one
    //! group's `KvStore`), each operation applied when the test says.
    use super::super::pipeline::Pipeline;
    use super::*;
    use crate::kv::{KvOptions, KvStore};
    use bytes::BytesMut;
    use synod_wire::{ClientReply, ClientRequest};

    /// One group's store and the client sessions of the connections.
    struct Group {
        store: KvStore,
        seqs: Vec<u64>,
    }

    impl Group {
        fn new() -> Group {
            Group {
                store: KvStore::new(KvOptions::default()),
                seqs: Vec::new(),
            }
        }

        /// Runs `op` for connection `conn` as the cluster would.
        fn apply(&mut self, conn: usize, op: &Op) -> OpResult {
            if self.seqs.len() <= conn {
                self.seqs.resize(conn + 1, 0);
            }
            let reply = if op.is_read() {
                self.store.read(op.key())
            } else {
                self.seqs[conn] += 1;
                self.store.apply(&ClientRequest {
                    client_id: conn as u64 + 1,
                    seq: self.seqs[conn],
                    ack_seq: self.seqs[conn] - 1,
                    op: op.clone(),
                })
            };
            match reply {
                ClientReply::Ok(v) => Ok(Some(v)),
                ClientReply::NoKey => Ok(None),
                ClientReply::Error { reason } => Err(ClientError::Refused(reason)),
                other => panic!("unexpected reply {other:?}"),
            }
        }
    }

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    /// Pushes every command of `lines` (one pipelined batch), then runs the
    /// connection's operations until every command is answered; returns
    /// the replies' RESP2 bytes and the operations sent, in order.
    fn run(g: &mut Group, conn: usize, p: &mut Pipeline, lines: &[&str]) -> (String, Vec<Op>) {
        for l in lines {
            p.push(&args(l));
        }
        let mut out = BytesMut::new();
        let mut sent_all = Vec::new();
        for _ in 0..1000 {
            let mut sent = Vec::new();
            p.take_sendable(usize::MAX, |op| sent.push(op.clone()));
            for op in &sent {
                let r = g.apply(conn, op);
                p.complete(op.key(), r);
            }
            sent_all.extend(sent);
            p.write_replies(&mut out, usize::MAX);
            if p.unanswered() == 0 {
                return (String::from_utf8_lossy(&out).into_owned(), sent_all);
            }
        }
        panic!("commands {lines:?} never finished");
    }

    fn reply(g: &mut Group, p: &mut Pipeline, lines: &[&str]) -> String {
        run(g, 0, p, lines).0
    }

    #[test]
    fn multi_set_set_exec_queues_then_answers_every_reply_in_one_array() {
        let mut g = Group::new();
        let mut p = Pipeline::new(Session::default());
        assert_eq!(reply(&mut g, &mut p, &["MULTI"]), "+OK\r\n");
        assert_eq!(reply(&mut g, &mut p, &["SET a 1"]), "+QUEUED\r\n");
        assert_eq!(reply(&mut g, &mut p, &["SET b 2"]), "+QUEUED\r\n");
        assert_eq!(reply(&mut g, &mut p, &["INCR n"]), "+QUEUED\r\n");
        assert_eq!(reply(&mut g, &mut p, &["APPEND b x"]), "+QUEUED\r\n");
        assert_eq!(reply(&mut g, &mut p, &["PING"]), "+QUEUED\r\n");
        assert_eq!(reply(&mut g, &mut p, &["MGET a b nokey"]), "+QUEUED\r\n");
        let (out, sent) = run(&mut g, 0, &mut p, &["EXEC"]);
        assert_eq!(
            out,
            "*6\r\n+OK\r\n+OK\r\n:1\r\n:2\r\n+PONG\r\n*3\r\n$1\r\n1\r\n$2\r\n2x\r\n$-1\r\n"
        );
        assert_eq!(sent.len(), 1, "EXEC is one transaction: {sent:?}");
        assert!(matches!(&sent[0], Op::Txn(t) if t.success.len() == 8));
        assert_eq!(reply(&mut g, &mut p, &["GET b"]), "$2\r\n2x\r\n");
    }

    #[test]
    fn discard_forgets_the_queued_commands() {
        let mut g = Group::new();
        let mut p = Pipeline::new(Session::default());
        let out = reply(&mut g, &mut p, &["MULTI", "SET a 1", "DISCARD", "GET a"]);
        assert_eq!(out, "+OK\r\n+QUEUED\r\n+OK\r\n$-1\r\n");
        let out = reply(&mut g, &mut p, &["EXEC", "DISCARD"]);
        assert_eq!(
            out,
            "-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n"
        );
    }

    #[test]
    fn a_command_refused_while_queuing_makes_exec_abort_and_nothing_runs() {
        let mut g = Group::new();
        let mut p = Pipeline::new(Session::default());
        let out = reply(
            &mut g,
            &mut p,
            &["MULTI", "SET b 1", "SET a", "NOSUCH x", "EXEC", "GET b"],
        );
        assert_eq!(
            out,
            "+OK\r\n+QUEUED\r\n-ERR wrong number of arguments for 'set' command\r\n\
             -ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n\
             -EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n"
        );
        // Commands a transaction cannot hold are refused at queue time.
        let out = reply(&mut g, &mut p, &["MULTI", "SETNX a 1", "CLIENT SETNAME x"]);
        assert!(
            out.contains("-ERR 'setnx' cannot be queued in MULTI"),
            "{out}"
        );
        assert!(
            out.contains("-ERR 'client' cannot be queued in MULTI"),
            "{out}"
        );
        let out = reply(&mut g, &mut p, &["MULTI", "WATCH a", "EXEC"]);
        assert_eq!(
            out,
            "-ERR MULTI calls can not be nested\r\n-ERR WATCH inside MULTI is not allowed\r\n\
             -EXECABORT Transaction discarded because of previous errors.\r\n"
        );
        // The refused CLIENT SETNAME changed nothing.
        assert_eq!(reply(&mut g, &mut p, &["CLIENT GETNAME"]), "$-1\r\n");
        // A runtime error (INCR of a non-integer) is in the array, as in
        // Redis, and the other commands ran.
        let out = reply(
            &mut g,
            &mut p,
            &["SET s text", "MULTI", "INCR s", "SET t 1", "EXEC"],
        );
        assert_eq!(
            out,
            "+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n-ERR value is not an integer or out of range\r\n+OK\r\n"
        );
    }

    #[test]
    fn exec_answers_the_null_array_exactly_when_a_watched_key_changed() {
        let mut g = Group::new();
        let mut a = Pipeline::new(Session::default());
        let mut b = Pipeline::new(Session::default());
        // Unchanged: EXEC runs.
        assert_eq!(run(&mut g, 0, &mut a, &["WATCH k absent"]).0, "+OK\r\n");
        let out = run(&mut g, 0, &mut a, &["MULTI", "SET k 1", "EXEC"]).0;
        assert_eq!(out, "+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
        // Another connection writes the watched key: EXEC does nothing.
        run(&mut g, 0, &mut a, &["WATCH k"]);
        assert_eq!(run(&mut g, 1, &mut b, &["SET k 2"]).0, "+OK\r\n");
        let out = run(&mut g, 0, &mut a, &["MULTI", "SET k 3", "EXEC", "GET k"]).0;
        assert_eq!(out, "+OK\r\n+QUEUED\r\n*-1\r\n$1\r\n2\r\n");
        // EXEC unwatched: the next transaction runs.
        let out = run(&mut g, 0, &mut a, &["MULTI", "SET k 4", "EXEC"]).0;
        assert_eq!(out, "+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
        // A watched absent key that is created, even with the value it
        // will have, aborts too (versions, not values, are compared).
        run(&mut g, 0, &mut a, &["WATCH fresh"]);
        run(&mut g, 1, &mut b, &["SET fresh x"]);
        let out = run(&mut g, 0, &mut a, &["MULTI", "GET fresh", "EXEC"]).0;
        assert_eq!(out, "+OK\r\n+QUEUED\r\n*-1\r\n");
        // UNWATCH forgets: the write no longer aborts.
        run(&mut g, 0, &mut a, &["WATCH k", "UNWATCH"]);
        run(&mut g, 1, &mut b, &["SET k 5"]);
        let out = run(&mut g, 0, &mut a, &["MULTI", "GET k", "EXEC"]).0;
        assert_eq!(out, "+OK\r\n+QUEUED\r\n*1\r\n$1\r\n5\r\n");
        // A write by the watching connection itself aborts too (Redis).
        let out = run(&mut g, 0, &mut a, &["WATCH k", "SET k 6", "MULTI", "EXEC"]).0;
        assert_eq!(out, "+OK\r\n+OK\r\n+OK\r\n*-1\r\n");
        // RESP3 sends the null as `_`.
        run(&mut g, 0, &mut a, &["HELLO 3", "WATCH k"]);
        run(&mut g, 1, &mut b, &["SET k 7"]);
        let out = run(&mut g, 0, &mut a, &["MULTI", "EXEC"]).0;
        assert_eq!(out, "+OK\r\n_\r\n");
    }

    #[test]
    fn watch_unwatch_and_exec_keep_connection_order_when_pipelined() {
        let mut g = Group::new();
        let mut a = Pipeline::new(Session::default());
        let mut b = Pipeline::new(Session::default());
        run(&mut g, 1, &mut b, &["SET k 0"]);
        // All in one batch: the WATCH reads before the MULTI's EXEC
        // compiles, and the UNWATCH after it is not applied early.
        for l in ["WATCH k", "MULTI", "INCR k", "EXEC", "UNWATCH", "GET k"] {
            a.push(&args(l));
        }
        // Only the WATCH's read may be in flight.
        let mut sent = Vec::new();
        a.take_sendable(usize::MAX, |op| sent.push(op.clone()));
        assert_eq!(sent.len(), 1);
        let r = g.apply(0, &sent[0]);
        // Another client writes after the WATCH read, before the EXEC.
        run(&mut g, 1, &mut b, &["SET k 10"]);
        a.complete(sent[0].key(), r);
        let out = run(&mut g, 0, &mut a, &[]).0;
        assert_eq!(out, "+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n+OK\r\n$2\r\n10\r\n");
    }

    #[test]
    fn later_commands_wait_for_a_transaction_and_it_waits_for_earlier_ones() {
        let mut g = Group::new();
        let mut p = Pipeline::new(Session::default());
        p.push(&args("SET a 1"));
        p.push(&args("MSET a 2 b 2"));
        p.push(&args("GET a"));
        p.push(&args("GET c"));
        let mut sent = Vec::new();
        p.take_sendable(usize::MAX, |op| sent.push(op.clone()));
        assert_eq!(sent.len(), 1, "only SET a goes: {sent:?}");
        let r = g.apply(0, &sent[0]);
        p.complete(b"a", r);
        let mut sent = Vec::new();
        p.take_sendable(usize::MAX, |op| sent.push(op.clone()));
        assert!(
            matches!(&sent[..], [Op::Txn(t)] if t.success.len() == 2),
            "then the MSET alone: {sent:?}"
        );
        let r = g.apply(0, &sent[0]);
        p.complete(sent[0].key(), r);
        let out = run(&mut g, 0, &mut p, &[]).0;
        assert_eq!(out, "+OK\r\n+OK\r\n$1\r\n2\r\n$-1\r\n");
    }

    #[test]
    fn multi_key_commands_are_one_transaction_and_per_key_when_refused_as_cross_group() {
        let mut g = Group::new();
        let mut p = Pipeline::new(Session::default());
        let (out, sent) = run(&mut g, 0, &mut p, &["MSET a 1 b 2 a 3"]);
        assert_eq!(out, "+OK\r\n");
        assert!(matches!(&sent[..], [Op::Txn(t)] if t.success.len() == 3));
        let (out, sent) = run(&mut g, 0, &mut p, &["MGET a b c"]);
        assert_eq!(out, "*3\r\n$1\r\n3\r\n$1\r\n2\r\n$-1\r\n");
        assert_eq!(sent.len(), 1);
        let (out, sent) = run(&mut g, 0, &mut p, &["DEL a a b c"]);
        assert_eq!(out, ":2\r\n");
        assert_eq!(sent.len(), 1);
        // More keys than one transaction holds: per key, as before.
        let many: Vec<String> = (0..=TXN_PARTS_MAX).map(|i| format!("m{i}")).collect();
        let (out, sent) = run(&mut g, 0, &mut p, &[&format!("MGET {}", many.join(" "))]);
        assert!(out.starts_with(&format!("*{}\r\n", TXN_PARTS_MAX + 1)));
        assert_eq!(sent.len(), TXN_PARTS_MAX + 1);
        // One key: the plain operation, no transaction.
        let (_, sent) = run(&mut g, 0, &mut p, &["MGET a"]);
        assert_eq!(
            sent,
            vec![Op::Get {
                key: Bytes::from("a")
            }]
        );

        // The session refuses the transaction as cross-group: the command
        // runs as before, one operation per key.
        p.push(&args("MSET x 1 y 2"));
        let mut sent = Vec::new();
        p.take_sendable(usize::MAX, |op| sent.push(op.clone()));
        assert_eq!(sent.len(), 1);
        let refusal =
            ClientError::Refused(format!("keys in groups [1, 2] ({CROSS_GROUP_REFUSAL})"));
        p.complete(sent[0].key(), Err(refusal.clone()));
        let (out, sent) = run(&mut g, 0, &mut p, &["GET x"]);
        assert_eq!(out, "+OK\r\n$1\r\n1\r\n");
        assert!(sent.iter().all(|op| !matches!(op, Op::Txn(_))), "{sent:?}");
        assert_eq!(sent.len(), 3, "two Puts, then the Get: {sent:?}");

        // Too large for one request: per key too.
        p.push(&args("DEL x2 y2"));
        let mut sent = Vec::new();
        p.take_sendable(usize::MAX, |op| sent.push(op.clone()));
        p.complete(sent[0].key(), Err(ClientError::TooLarge));
        let (out, sent) = run(&mut g, 0, &mut p, &[]);
        assert_eq!(out, ":0\r\n");
        assert_eq!(sent.len(), 2, "{sent:?}");
        // EXEC has no per-key form: it answers the refusal, nothing ran.
        for l in ["MULTI", "SET x 9", "SET y 9", "EXEC"] {
            p.push(&args(l));
        }
        let mut sent = Vec::new();
        p.take_sendable(usize::MAX, |op| sent.push(op.clone()));
        p.complete(sent[0].key(), Err(refusal));
        let out = run(&mut g, 0, &mut p, &["GET x"]).0;
        assert!(
            out.ends_with(&format!(
                "-ERR keys in groups [1, 2] ({CROSS_GROUP_REFUSAL})\r\n$1\r\n1\r\n"
            )),
            "{out}"
        );
    }

    #[test]
    fn msetnx_sets_all_or_none_and_rename_moves_the_value() {
        let mut g = Group::new();
        let mut p = Pipeline::new(Session::default());
        let out = reply(
            &mut g,
            &mut p,
            &["MSETNX a 1 b 2", "MSETNX b 3 c 3", "MGET a b c"],
        );
        assert_eq!(out, ":1\r\n:0\r\n*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n");
        assert!(reply(&mut g, &mut p, &["MSETNX a"]).starts_with("-ERR wrong number"));
        let out = reply(
            &mut g,
            &mut p,
            &["RENAME a z", "MGET a z", "RENAME nope z", "RENAME z z"],
        );
        assert_eq!(
            out,
            "+OK\r\n*2\r\n$-1\r\n$1\r\n1\r\n-ERR no such key\r\n+OK\r\n"
        );
        let out = reply(
            &mut g,
            &mut p,
            &["RENAMENX z b", "RENAMENX z w", "MGET z w", "RENAMENX w w"],
        );
        assert_eq!(out, ":0\r\n:1\r\n*2\r\n$-1\r\n$1\r\n1\r\n:0\r\n");
    }

    #[test]
    fn rename_reads_again_when_the_source_changes_between_read_and_move() {
        let mut g = Group::new();
        let mut p = Pipeline::new(Session::default());
        let mut other = Pipeline::new(Session::default());
        reply(&mut g, &mut p, &["SET src old"]);
        p.push(&args("RENAME src dst"));
        // The read runs; another client writes before the move.
        let mut sent = Vec::new();
        p.take_sendable(usize::MAX, |op| sent.push(op.clone()));
        let r = g.apply(0, &sent[0]);
        p.complete(sent[0].key(), r);
        run(&mut g, 1, &mut other, &["SET src new"]);
        let out = run(&mut g, 0, &mut p, &["MGET src dst"]).0;
        assert_eq!(out, "+OK\r\n*2\r\n$-1\r\n$3\r\nnew\r\n");
    }

    #[test]
    fn queued_operations_are_bounded_by_what_one_transaction_holds() {
        let mut g = Group::new();
        let mut p = Pipeline::new(Session::default());
        reply(&mut g, &mut p, &["MULTI"]);
        for i in 0..TXN_PARTS_MAX {
            assert_eq!(
                reply(&mut g, &mut p, &[&format!("SET k{i} v")]),
                "+QUEUED\r\n"
            );
        }
        let out = reply(&mut g, &mut p, &["SET one more", "EXEC"]);
        assert!(out.starts_with("-ERR transaction too large"), "{out}");
        assert!(out.ends_with("-EXECABORT Transaction discarded because of previous errors.\r\n"));
    }

    #[test]
    fn reset_leaves_multi_and_unwatches() {
        let mut g = Group::new();
        let mut a = Pipeline::new(Session::default());
        let mut b = Pipeline::new(Session::default());
        let out = run(&mut g, 0, &mut a, &["WATCH k", "MULTI", "SET k 1", "RESET"]).0;
        assert_eq!(out, "+OK\r\n+OK\r\n+QUEUED\r\n+RESET\r\n");
        run(&mut g, 1, &mut b, &["SET k 2"]);
        let out = run(&mut g, 0, &mut a, &["EXEC", "MULTI", "GET k", "EXEC"]).0;
        assert_eq!(
            out,
            "-ERR EXEC without MULTI\r\n+OK\r\n+QUEUED\r\n*1\r\n$1\r\n2\r\n"
        );
    }
}
