//! Per-key order for one connection's pipelined operations. Sans-IO: the
//! caller takes the operations that may go out now, sends them however it
//! likes, and reports each one's final result (after its own retries).
//!
//! Operations on different keys run concurrently, so the cluster may apply
//! them in any order, while a Redis client expects `SET k a` then `GET k` on
//! one connection to read `a`. So each key has a queue: at most one
//! operation per key is in flight, and the next one leaves only when it has
//! its final answer. Two shortcuts keep common pipelines to one round trip
//! without breaking per-key order; both apply only to operations that have
//! **not been sent yet** (both invocations then precede the one execution):
//! - repeated Gets of a key (no write between) share one Get: they may all
//!   be linearized at the same instant;
//! - repeated Puts of a key (nothing else between) collapse into the last
//!   one, and every one of them reports its outcome: the earlier Puts are
//!   linearized immediately before it and overwritten at once, so nobody
//!   can observe them (this keeps `redis-benchmark -P 16` against its one
//!   fixed key pipelined).
//!
//! Joining a Get that is already in flight would *not* be safe: the later
//! command may have been sent by the Redis client after the earlier Get
//! executed and after another client's write completed, and would then read
//! a stale value.
//!
//! What this does *not* keep is order across different keys within one
//! pipeline: each command is linearizable on its own, but another client
//! may see a later pipelined write to `b` before an earlier one to `a`.
//! Per-key order is what Synod's shards can give without a round trip per
//! command; a client that needs cross-key order waits for a reply first.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use synod_wire::Op;

/// Who takes an operation's result: (command number, index of the op
/// within that command).
pub type Taker = (u64, usize);

/// One queued operation and everyone waiting for its result. The first
/// taker is inline: most operations have exactly one, and a pipeline of
/// thousands should not cost thousands of small allocations.
#[derive(Debug)]
struct Queued {
    op: Op,
    first: Taker,
    more: Vec<Taker>,
}

impl Queued {
    fn new(op: Op, taker: Taker) -> Queued {
        Queued {
            op,
            first: taker,
            more: Vec::new(),
        }
    }
}

/// The operations of one key, oldest first: `head`, then `rest`.
#[derive(Debug)]
struct KeyQueue {
    /// `head` has been sent and has no final answer yet.
    in_flight: bool,
    head: Queued,
    rest: VecDeque<Queued>,
}

/// Every key's queue for one connection.
#[derive(Debug, Default)]
pub struct KeyQueues {
    keys: HashMap<Bytes, KeyQueue>,
    /// Keys whose head may be sent now, oldest first. Each key is listed at
    /// most once, exactly while its queue exists and is not in flight.
    sendable: VecDeque<Bytes>,
    /// Operations in flight.
    in_flight: usize,
}

impl KeyQueues {
    /// Queues `op` behind every earlier operation on its key, merging it
    /// into the last unsent one when a shortcut (module doc) allows.
    pub fn push(&mut self, op: Op, taker: Taker) {
        let Some(q) = self.keys.get_mut(op.key()) else {
            let key = op.key().clone();
            self.sendable.push_back(key.clone());
            self.keys.insert(
                key,
                KeyQueue {
                    in_flight: false,
                    head: Queued::new(op, taker),
                    rest: VecDeque::new(),
                },
            );
            return;
        };
        let last_unsent = match q.rest.back_mut() {
            Some(last) => Some(last),
            None if !q.in_flight => Some(&mut q.head),
            None => None,
        };
        if let Some(last) = last_unsent {
            match (&last.op, &op) {
                (Op::Get { .. }, Op::Get { .. }) => {
                    last.more.push(taker);
                    return;
                }
                (Op::Put { .. }, Op::Put { .. }) => {
                    last.op = op;
                    last.more.push(taker);
                    return;
                }
                _ => {}
            }
        }
        // Behind an operation in flight, or after a different kind: waits.
        // (If nothing is in flight the key is already listed as sendable.)
        q.rest.push_back(Queued::new(op, taker));
    }

    /// Marks the operations that may go out now as in flight, oldest first,
    /// while fewer than `in_flight_max` are, and hands each to `send`. Its
    /// result comes back through [`KeyQueues::complete`] with its key: one
    /// operation per key is in flight, so the key names it.
    pub fn take_sendable(&mut self, in_flight_max: usize, mut send: impl FnMut(&Op)) {
        while self.in_flight < in_flight_max {
            let Some(key) = self.sendable.pop_front() else {
                break;
            };
            let q = self.keys.get_mut(&key).expect("sendable keys have a queue");
            assert!(!q.in_flight, "a key is listed as sendable while in flight");
            q.in_flight = true;
            self.in_flight += 1;
            send(&q.head.op);
        }
    }

    /// The operation in flight on `key` has its final result: returns who
    /// takes it (first, then the rest), and lets the key's next operation
    /// go. `None` if nothing is in flight on `key`.
    pub fn complete(&mut self, key: &[u8]) -> Option<(Taker, Vec<Taker>)> {
        let q = self.keys.get_mut(key).filter(|q| q.in_flight)?;
        self.in_flight -= 1;
        let done = match q.rest.pop_front() {
            Some(next) => {
                q.in_flight = false;
                let done = std::mem::replace(&mut q.head, next);
                self.sendable.push_back(done.op.key().clone());
                done
            }
            None => self.keys.remove(key).expect("looked up above").head,
        };
        Some((done.first, done.more))
    }

    /// Operations sent and not completed.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        debug_assert_eq!(
            self.in_flight,
            self.keys.values().filter(|q| q.in_flight).count()
        );
        self.in_flight
    }

    /// True when nothing is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }
    fn get(k: &str) -> Op {
        Op::Get { key: b(k) }
    }
    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: b(k),
            value: b(v),
        }
    }

    fn sendable(q: &mut KeyQueues) -> Vec<Op> {
        let mut out = Vec::new();
        q.take_sendable(usize::MAX, |op| out.push(op.clone()));
        out
    }

    #[test]
    fn distinct_keys_go_out_together() {
        let mut q = KeyQueues::default();
        q.push(put("a", "1"), (0, 0));
        q.push(put("b", "2"), (1, 0));
        q.push(get("c"), (2, 0));
        assert_eq!(sendable(&mut q).len(), 3);
        assert_eq!(q.in_flight(), 3);
    }

    #[test]
    fn a_read_after_a_write_of_its_key_waits_for_the_write() {
        let mut q = KeyQueues::default();
        q.push(put("a", "1"), (0, 0));
        q.push(get("a"), (1, 0));
        assert_eq!(sendable(&mut q), vec![put("a", "1")]);
        assert!(sendable(&mut q).is_empty(), "the Get waits");
        assert_eq!(q.complete(b"a"), Some(((0, 0), vec![])));
        assert_eq!(sendable(&mut q), vec![get("a")]);
        assert_eq!(q.complete(b"a"), Some(((1, 0), vec![])));
        assert!(q.is_empty());
    }

    #[test]
    fn repeated_unsent_gets_share_one_and_repeated_puts_collapse_into_the_last() {
        let mut q = KeyQueues::default();
        q.push(get("a"), (0, 0));
        q.push(get("a"), (1, 0));
        q.push(put("b", "1"), (2, 0));
        q.push(put("b", "2"), (3, 0));
        assert_eq!(sendable(&mut q), vec![get("a"), put("b", "2")]);
        assert_eq!(q.complete(b"a"), Some(((0, 0), vec![(1, 0)])));
        assert_eq!(q.complete(b"b"), Some(((2, 0), vec![(3, 0)])));
        assert_eq!(q.complete(b"b"), None, "completes once");
    }

    #[test]
    fn at_most_in_flight_max_operations_leave_and_the_rest_follow_in_order() {
        let mut q = KeyQueues::default();
        for k in ["a", "b", "c"] {
            q.push(get(k), (0, 0));
        }
        let mut out = Vec::new();
        q.take_sendable(2, |op| out.push(op.clone()));
        assert_eq!(out, vec![get("a"), get("b")]);
        q.take_sendable(2, |op| out.push(op.clone()));
        assert_eq!(out.len(), 2, "window full");
        q.complete(b"b");
        q.take_sendable(2, |op| out.push(op.clone()));
        assert_eq!(out, vec![get("a"), get("b"), get("c")]);
    }

    #[test]
    fn regression_a_get_never_joins_a_get_already_in_flight() {
        let mut q = KeyQueues::default();
        q.push(get("a"), (0, 0));
        assert_eq!(sendable(&mut q).len(), 1);
        q.push(get("a"), (1, 0));
        assert!(sendable(&mut q).is_empty(), "waits for the first Get");
        assert_eq!(q.complete(b"a"), Some(((0, 0), vec![])));
        assert_eq!(sendable(&mut q), vec![get("a")], "then runs its own Get");
    }
}
