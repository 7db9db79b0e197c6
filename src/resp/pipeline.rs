//! One RESP connection's commands between parsing and replying. Sans-IO:
//! commands go in, the KV operations that may be sent now come out, their
//! results come back in any order, and the replies come out in command
//! order.
//!
//! Commands are numbered in arrival order. A command answered locally
//! (PING, CLIENT ...) is complete at once; a KV command is complete when
//! every one of its operations has its final result. Replies leave strictly
//! from the front: a fast GET behind a slow SET waits for it, as Redis
//! clients require. Operations go through [`KeyQueues`], which keeps
//! per-key program order (see `batch`).
//!
//! Transaction work (`multi::Work`: WATCH, EXEC, UNWATCH, DISCARD and the
//! atomic multi-key commands) runs as a barrier: it starts only when every
//! earlier command's operations have finished, and commands pushed after it
//! are held (their operations not queued) until it has finished, so it
//! keeps connection order with everything on every key it touches. A
//! pipeline without transaction work never holds anything.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use synod_wire::Op;

use super::batch::KeyQueues;
use super::command::{plan, KvCommand, Plan, Session};
use super::multi::{Finished, Intercept, Multi, Start, Work};
use super::reply::Reply;
use crate::client::OpResult;

/// One command that has not been replied to yet.
#[derive(Debug)]
/// Each slot keeps the protocol (2 or 3) its reply is encoded in: the one in
/// force when its command arrived, so a HELLO 3 switches the replies of the
/// commands after it (and its own), never earlier ones.
enum Slot {
    Done(Reply, u8),
    Kv {
        proto: u8,
        cmd: KvCommand,
        results: Vec<Option<OpResult>>,
        left: usize,
    },
    /// Transaction work not finished; `None` once started (it is then in
    /// [`Pipeline::active`]).
    Work(u8, Option<Work>),
}

/// The front barrier's operations once started.
#[derive(Debug)]
struct Active {
    number: u64,
    work: Work,
    ops: Vec<Op>,
    sent: bool,
    results: Vec<Option<OpResult>>,
    left: usize,
}

/// What [`Pipeline::push`] means for reading further.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Keep reading commands.
    More,
    /// QUIT: answer what came before and this one, then close.
    Quit,
}

/// One connection's unanswered commands and their operations.
#[derive(Debug)]
pub struct Pipeline {
    session: Session,
    slots: VecDeque<Slot>,
    /// Number of `slots[0]`.
    first: u64,
    keys: KeyQueues,
    multi: Multi,
    /// Numbers of the `Work` slots not finished, oldest first.
    barriers: VecDeque<u64>,
    /// Numbers of KV commands pushed behind a barrier, their operations
    /// not yet in `keys`, oldest first.
    held: VecDeque<u64>,
    /// The front barrier, once started.
    active: Option<Active>,
}

impl Pipeline {
    pub fn new(session: Session) -> Pipeline {
        Pipeline {
            session,
            slots: VecDeque::new(),
            first: 0,
            keys: KeyQueues::default(),
            multi: Multi::default(),
            barriers: VecDeque::new(),
            held: VecDeque::new(),
            active: None,
        }
    }

    /// Takes the command `args` (in arrival order).
    pub fn push(&mut self, args: &[Bytes]) -> Pushed {
        let number = self.first + self.slots.len() as u64;
        match self.multi.intercept(args, &mut self.session) {
            Intercept::Pass => {}
            Intercept::Reply(r) => {
                self.slots.push_back(Slot::Done(r, self.session.proto));
                return Pushed::More;
            }
            Intercept::Work(work) => {
                self.slots
                    .push_back(Slot::Work(self.session.proto, Some(work)));
                self.barriers.push_back(number);
                self.advance();
                return Pushed::More;
            }
        }
        let plan = plan(args, &mut self.session);
        let proto = self.session.proto;
        match plan {
            Plan::Reply(r) => self.slots.push_back(Slot::Done(r, proto)),
            Plan::Quit => {
                self.slots.push_back(Slot::Done(Reply::OK, proto));
                return Pushed::Quit;
            }
            Plan::Kv(cmd) => {
                if self.barriers.is_empty() {
                    for (i, op) in cmd.ops.iter().enumerate() {
                        self.keys.push(op.clone(), (number, i));
                    }
                } else {
                    self.held.push_back(number);
                }
                let left = cmd.ops.len();
                self.slots.push_back(Slot::Kv {
                    proto,
                    results: vec![None; left],
                    left,
                    cmd,
                });
            }
        }
        Pushed::More
    }

    /// Queues a reply that needs no operation (a protocol error before the
    /// connection closes), in order after everything pushed so far.
    pub fn push_reply(&mut self, reply: Reply) {
        self.slots.push_back(Slot::Done(reply, self.session.proto));
    }

    /// Hands the operations that may be sent now to `send`, keeping at most
    /// `in_flight_max` in flight; each result must come back through
    /// [`Pipeline::complete`] with its key.
    pub fn take_sendable(&mut self, in_flight_max: usize, mut send: impl FnMut(&Op)) {
        self.advance();
        self.keys.take_sendable(in_flight_max, &mut send);
        // A barrier's few operations (one transaction, or one per watched
        // key) go together: nothing else of this connection is in flight.
        if let Some(a) = self.active.as_mut().filter(|a| !a.sent) {
            a.sent = true;
            a.ops.iter().for_each(&mut send);
        }
    }

    /// The final result of the operation in flight on `key`. Ignored if
    /// none is.
    pub fn complete(&mut self, key: &[u8], result: OpResult) {
        if let Some((first, more)) = self.keys.complete(key) {
            for (number, i) in more {
                self.take(number, i, result.clone());
            }
            self.take(first.0, first.1, result);
        } else {
            // While a barrier runs nothing else is in flight, so the key
            // names one of its operations.
            let Some(a) = self.active.as_mut().filter(|a| a.sent) else {
                return;
            };
            let Some(i) =
                (0..a.ops.len()).find(|&i| a.results[i].is_none() && a.ops[i].key()[..] == *key)
            else {
                return;
            };
            a.results[i] = Some(result);
            a.left -= 1;
            if a.left == 0 {
                self.finish_active();
            }
        }
        self.advance();
    }

    /// Every operation of the started barrier has its result.
    fn finish_active(&mut self) {
        let a = self.active.take().expect("a barrier is active");
        let index = self.index(a.number);
        let Slot::Work(proto, None) = self.slots[index] else {
            unreachable!("the active barrier's slot is started work");
        };
        let results = a
            .results
            .into_iter()
            .map(|r| r.expect("complete"))
            .collect();
        match self.multi.finish(a.work, results) {
            Finished::Done(reply) => {
                self.slots[index] = Slot::Done(reply, proto);
                self.finish_barrier();
            }
            Finished::Next(work) => self.slots[index] = Slot::Work(proto, Some(work)),
            Finished::PerKey(cmd) => {
                // Nothing else of this connection is queued (the barrier
                // waited for it; later commands are held), so these run
                // next, with per-key order among themselves.
                for (i, op) in cmd.ops.iter().enumerate() {
                    self.keys.push(op.clone(), (a.number, i));
                }
                let left = cmd.ops.len();
                self.slots[index] = Slot::Kv {
                    proto,
                    results: vec![None; left],
                    left,
                    cmd,
                };
            }
        }
    }

    /// Index in `slots` of command `number` (unanswered).
    fn index(&self, number: u64) -> usize {
        number
            .checked_sub(self.first)
            .expect("an unanswered command") as usize
    }

    /// Starts or retires the front barriers whose turn has come.
    fn advance(&mut self) {
        while let Some(&number) = self.barriers.front() {
            if self.active.is_some() {
                return;
            }
            if number < self.first {
                // Ran per key and already answered.
                self.finish_barrier();
                continue;
            }
            let index = self.index(number);
            match &mut self.slots[index] {
                Slot::Done(..) => self.finish_barrier(),
                Slot::Kv { left, .. } if *left == 0 => self.finish_barrier(),
                Slot::Kv { .. } => return,
                Slot::Work(proto, work) => {
                    if !self.keys.is_empty() {
                        return; // earlier operations still run
                    }
                    let proto = *proto;
                    let work = work.take().expect("work not started");
                    match self.multi.start(&work) {
                        Start::Done(reply) => {
                            self.slots[index] = Slot::Done(reply, proto);
                            self.finish_barrier();
                        }
                        Start::Send(ops) => {
                            let left = ops.len();
                            assert!(left > 0, "started work sends something");
                            self.active = Some(Active {
                                number,
                                work,
                                results: vec![None; left],
                                left,
                                ops,
                                sent: false,
                            });
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The front barrier finished: the commands held behind it, up to the
    /// next barrier, queue their operations.
    fn finish_barrier(&mut self) {
        self.barriers.pop_front();
        let next = self.barriers.front().copied().unwrap_or(u64::MAX);
        while let Some(&number) = self.held.front() {
            if number > next {
                break;
            }
            self.held.pop_front();
            let index = self.index(number);
            let Slot::Kv { cmd, .. } = &self.slots[index] else {
                unreachable!("held commands are KV commands");
            };
            for (i, op) in cmd.ops.iter().enumerate() {
                self.keys.push(op.clone(), (number, i));
            }
        }
    }

    /// Op `i` of command `number` has `result`.
    fn take(&mut self, number: u64, i: usize, result: OpResult) {
        let index = number
            .checked_sub(self.first)
            .expect("a taken result belongs to an unanswered command") as usize;
        let Some(Slot::Kv { results, left, .. }) = self.slots.get_mut(index) else {
            unreachable!("operations belong to KV commands");
        };
        assert!(results[i].is_none(), "an operation completes once");
        results[i] = Some(result);
        *left -= 1;
    }

    /// Appends the replies of the complete commands at the front, in
    /// order, while `out` holds fewer than `limit` bytes; returns how many.
    /// (Results not yet encoded stay as they are: values shared by several
    /// commands, as the Gets of one key are, are not copied until written.)
    pub fn write_replies(&mut self, out: &mut BytesMut, limit: usize) -> usize {
        let mut n = 0;
        while let Some(front) = self.slots.front() {
            if out.len() >= limit {
                break;
            }
            if matches!(front, Slot::Kv { left, .. } if *left > 0)
                || matches!(front, Slot::Work(..))
            {
                break;
            }
            match self.slots.pop_front().expect("front exists") {
                Slot::Done(r, proto) => r.encode_proto(out, proto),
                Slot::Kv {
                    cmd,
                    results,
                    proto,
                    ..
                } => cmd
                    .finish_in(
                        results.into_iter().map(|r| r.expect("complete")).collect(),
                        &mut self.session,
                    )
                    .encode_proto(out, proto),
                Slot::Work(..) => unreachable!("unfinished work stops the loop"),
            }
            self.first += 1;
            n += 1;
        }
        n
    }

    /// Commands pushed and not yet replied to.
    pub fn unanswered(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientError;
    use crate::rng::Rng;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn apply(map: &mut BTreeMap<Bytes, Bytes>, op: &Op) -> OpResult {
        Ok(match op {
            Op::Get { key } => map.get(key).cloned(),
            Op::Put { key, value } => {
                map.insert(key.clone(), value.clone());
                Some(Bytes::new())
            }
            Op::Append { key, value } => {
                let mut v = map.get(key).map(|v| v.to_vec()).unwrap_or_default();
                v.extend_from_slice(value);
                map.insert(key.clone(), Bytes::from(v));
                Some(Bytes::new())
            }
            Op::Delete { key } => Some(Bytes::from_static(if map.remove(key).is_some() {
                b"1"
            } else {
                b"0"
            })),
            // MSET, MGET and DEL of several keys are one transaction
            // (without compares): its operations in order.
            Op::Txn(txn) if txn.compares.is_empty() => {
                let results = txn
                    .success
                    .iter()
                    .map(|op| match apply(map, op).expect("model ops succeed") {
                        Some(value) => synod_wire::TxnOpResult::Ok { value, version: 0 },
                        None => synod_wire::TxnOpResult::NoKey,
                    })
                    .collect();
                Some(synod_wire::encode_txn_result(&synod_wire::TxnResult {
                    succeeded: true,
                    results,
                }))
            }
            other => unreachable!("the generated commands issue no {other:?}"),
        })
    }

    /// Runs `cmds` through a pipeline whose sent operations execute (and
    /// complete) in an order chosen by `seed`, with new commands arriving in
    /// between; returns the reply bytes and the final store.
    fn run_shuffled(cmds: &[Vec<Bytes>], seed: u64) -> (Vec<u8>, BTreeMap<Bytes, Bytes>) {
        let mut rng = Rng::new(seed);
        // A window from 1 (one op at a time) to more than any key count.
        let window = rng.range(1, 5) as usize;
        let mut p = Pipeline::new(Session::default());
        let mut map = BTreeMap::new();
        let mut out = BytesMut::new();
        let mut sent: Vec<Op> = Vec::new();
        let mut next = 0;
        while next < cmds.len() || !sent.is_empty() || p.unanswered() > 0 {
            // Some commands arrive, then some sent operations execute.
            if next < cmds.len() && (sent.is_empty() || rng.range(0, 3) == 0) {
                let k = rng.range(1, 4) as usize;
                for c in &cmds[next..(next + k).min(cmds.len())] {
                    p.push(c);
                }
                next = (next + k).min(cmds.len());
            }
            p.take_sendable(window, |op| sent.push(op.clone()));
            assert!(sent.len() <= window);
            if !sent.is_empty() {
                let i = rng.range(0, sent.len() as u64) as usize;
                let op = sent.swap_remove(i);
                let r = apply(&mut map, &op);
                p.complete(op.key(), r);
            }
            p.write_replies(&mut out, usize::MAX);
        }
        (out.to_vec(), map)
    }

    fn serial(cmds: &[Vec<Bytes>]) -> (Vec<u8>, BTreeMap<Bytes, Bytes>) {
        let mut map = BTreeMap::new();
        let mut out = BytesMut::new();
        let mut s = Session::default();
        for c in cmds {
            match plan(c, &mut s) {
                Plan::Reply(r) => r.encode(&mut out),
                Plan::Quit => Reply::OK.encode(&mut out),
                Plan::Kv(k) => {
                    let results = k.ops.iter().map(|op| apply(&mut map, op)).collect();
                    k.finish(results).encode(&mut out);
                }
            }
        }
        (out.to_vec(), map)
    }

    #[test]
    fn replies_leave_in_command_order_when_results_arrive_out_of_order() {
        let mut p = Pipeline::new(Session::default());
        p.push(&args(&["SET", "a", "1"]));
        p.push(&args(&["PING"]));
        p.push(&args(&["GET", "b"]));
        let mut sent = Vec::new();
        p.take_sendable(usize::MAX, |op| sent.push(op.clone()));
        assert_eq!(sent.len(), 2);
        let mut out = BytesMut::new();
        // GET b answers first: nothing may be written before SET's reply.
        p.complete(b"b", Ok(Some(Bytes::from_static(b"x"))));
        assert_eq!(p.write_replies(&mut out, usize::MAX), 0);
        p.complete(b"a", Ok(Some(Bytes::new())));
        assert_eq!(p.write_replies(&mut out, usize::MAX), 3);
        assert_eq!(&out[..], b"+OK\r\n+PONG\r\n$1\r\nx\r\n");
        assert_eq!(p.unanswered(), 0);
    }

    #[test]
    fn hello_3_switches_the_encoding_of_its_own_reply_and_later_ones_only() {
        let mut p = Pipeline::new(Session::default());
        p.push(&args(&["GET", "k"]));
        p.push(&args(&["HELLO", "3"]));
        p.push(&args(&["GET", "k"]));
        let mut sent = Vec::new();
        p.take_sendable(usize::MAX, |op| sent.push(op.clone()));
        assert_eq!(sent.len(), 1, "the two unsent Gets of k share one");
        p.complete(b"k", Ok(None));
        let mut out = BytesMut::new();
        assert_eq!(p.write_replies(&mut out, usize::MAX), 3);
        assert!(out.starts_with(b"$-1\r\n%7\r\n"), "{out:?}");
        assert!(out.ends_with(b"*0\r\n_\r\n"), "{out:?}");
    }

    #[test]
    fn replies_are_encoded_only_while_the_output_has_room() {
        let mut p = Pipeline::new(Session::default());
        for _ in 0..3 {
            p.push(&args(&["GET", "big"]));
        }
        p.take_sendable(usize::MAX, |_| {});
        p.complete(b"big", Ok(Some(Bytes::from(vec![b'x'; 100]))));
        let mut out = BytesMut::new();
        assert_eq!(
            p.write_replies(&mut out, 150),
            2,
            "stops once over 150 bytes"
        );
        assert_eq!(p.unanswered(), 1);
        out.clear();
        assert_eq!(p.write_replies(&mut out, 150), 1);
    }

    #[test]
    fn a_failed_operation_answers_its_command_with_an_error_in_place() {
        let mut p = Pipeline::new(Session::default());
        p.push(&args(&["GET", "a"]));
        p.push(&args(&["GET", "b"]));
        let mut sent = 0;
        p.take_sendable(usize::MAX, |_| sent += 1);
        assert_eq!(sent, 2);
        p.complete(b"a", Err(ClientError::Timeout));
        p.complete(b"b", Ok(None));
        let mut out = BytesMut::new();
        p.write_replies(&mut out, usize::MAX);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("-TIMEOUT"), "{text}");
        assert!(text.ends_with("$-1\r\n"), "{text}");
    }

    #[test]
    fn redis_benchmark_style_pipelines_of_one_key_take_one_round_trip() {
        let mut p = Pipeline::new(Session::default());
        for i in 0..16 {
            p.push(&args(&["SET", "key:__rand_int__", &format!("v{i}")]));
        }
        let mut sent = Vec::new();
        p.take_sendable(usize::MAX, |op| sent.push(op.clone()));
        assert_eq!(sent.len(), 1);
        p.complete(b"key:__rand_int__", Ok(Some(Bytes::new())));
        let mut out = BytesMut::new();
        assert_eq!(p.write_replies(&mut out, usize::MAX), 16);
    }

    fn arb_cmd() -> impl Strategy<Value = Vec<Bytes>> {
        let key = (0..3u8).prop_map(|k| format!("k{k}"));
        let val = (0..4u8).prop_map(|v| format!("{v}"));
        prop_oneof![
            key.clone().prop_map(|k| args(&["GET", &k])),
            (key.clone(), val.clone()).prop_map(|(k, v)| args(&["SET", &k, &v])),
            (key.clone(), val.clone()).prop_map(|(k, v)| args(&["APPEND", &k, &v])),
            (key.clone(), key.clone()).prop_map(|(a, b)| args(&["DEL", &a, &b])),
            (key.clone(), key.clone()).prop_map(|(a, b)| args(&["MGET", &a, &b])),
            (key.clone(), val.clone(), key.clone(), val)
                .prop_map(|(a, x, b, y)| args(&["MSET", &a, &x, &b, &y])),
            key.prop_map(|k| args(&["EXISTS", &k])),
            Just(args(&["PING"])),
        ]
    }

    proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..proptest::prelude::ProptestConfig::default() })]
        /// Whatever order the sent operations execute and complete in, and
        /// however the commands arrive, every reply is what running the
        /// commands one at a time would have answered, in order, and the
        /// final store is the same.
        #[test]
        fn out_of_order_completion_keeps_per_key_program_order(
            cmds in proptest::collection::vec(arb_cmd(), 0..40),
            seed in any::<u64>(),
        ) {
            let (want_out, want_map) = serial(&cmds);
            let (got_out, got_map) = run_shuffled(&cmds, seed);
            prop_assert_eq!(String::from_utf8_lossy(&got_out), String::from_utf8_lossy(&want_out));
            prop_assert_eq!(got_map, want_map);
        }
    }
}
