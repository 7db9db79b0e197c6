//! A simulated client: a workload generator around the same session core
//! every real client drives (`client::session::Session`), so the simulator
//! checks the retry, redirect, window, acknowledgement and refresh rules
//! the binaries run. Each client keeps up to its depth (1 to 4) requests in
//! flight at once, so acknowledgements and completions come out of order
//! under every fault; at most one per key, so its appends to one key apply
//! in the order it issued them (what the exactly-once checker asserts).
//!
//! This file is only scheduling: what to issue and when, turning the
//! session's frames into world messages (a destination address names a
//! simulated node) and its completions into history entries.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use synod_wire::{CompareOp, Config, Frame, GroupInfo, Message, Op};

use super::{token, Micros, MS};
use crate::check::elle::{
    Element as ElleElement, MicroOp as ElleOp, Status as ElleStatus, Txn as ElleTxn,
};
use crate::check::{KvInput, KvOp, KvOutput};
use crate::client::session::{Answer, Dest, Req, Session, SessionOptions, Time};
use crate::client::ClientError;
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub(crate) struct KeySpace {
    pub mixed: Vec<Bytes>,
    pub append: Vec<Bytes>,
    /// Bank accounts (all in one shard, so one group): transfers and audits
    /// as transactions, checked by `check::bank` (empty: no bank).
    pub bank: Vec<Bytes>,
    /// List-append keys: transactions of appends and reads on them,
    /// checked by `check::elle` (empty: no such workload).
    pub elle: Vec<Bytes>,
}

impl KeySpace {
    pub fn new(mixed: usize, append: usize) -> KeySpace {
        KeySpace {
            mixed: (0..mixed).map(|i| Bytes::from(format!("m{i}"))).collect(),
            append: (0..append).map(|i| Bytes::from(format!("a{i}"))).collect(),
            bank: Vec::new(),
            elle: Vec::new(),
        }
    }

    /// The sharded world's keys: `k0..k{n}`, appended to and read.
    pub fn append_only(n: u64) -> KeySpace {
        KeySpace {
            mixed: Vec::new(),
            append: (0..n).map(|i| Bytes::from(format!("k{i}"))).collect(),
            bank: Vec::new(),
            elle: Vec::new(),
        }
    }
}

/// What the world must do for a client after an event.
#[derive(Default)]
pub(crate) struct Actions {
    /// Messages to deliver: (destination: a member's address and the
    /// request's own group, reply-to tag, message).
    pub send: Vec<(Dest, u64, Message)>,
    pub wake: Option<(Micros, u64)>,
    pub completed: Vec<KvOp>,
    pub failures: Vec<String>,
    /// The session needs a fresh id (a `SessionExpired` came back and
    /// nothing is in flight any more): the world calls
    /// [`Client::set_client_id`] with one newer than every id so far.
    pub renew_id: bool,
}

/// One append this client issued: `(key, op number, acknowledged)`.
pub(crate) struct Appended {
    pub key: Bytes,
    pub seq: u64,
    pub acked: bool,
}

/// A bank transaction in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BankOp {
    Audit,
    Transfer,
}

/// Every audit must see this total: accounts start absent (0) and
/// transfers move amounts between them.
const BANK_TOTAL: i64 = 0;

struct Pending {
    /// `Some` for a bank transaction (not part of the KV history).
    bank: Option<BankOp>,
    /// `Some` for a list-append transaction (not part of the KV history):
    /// its micro-ops, reads without their lists yet.
    elle: Option<Vec<ElleOp>>,
    key: Bytes,
    input: KvInput,
    call: Micros,
    /// The client's op number (the append tokens carry it).
    op: u64,
}

/// List-append transactions one client keeps in flight at most.
const ELLE_IN_FLIGHT_MAX: usize = 2;

/// A list-append element as a value: self-delimiting, so a key's value
/// parses back into its list.
fn elle_value(element: ElleElement) -> Bytes {
    Bytes::from(format!("{element},"))
}

/// A list-append key's value as its list of elements.
pub(crate) fn elle_list(value: &[u8]) -> Result<Vec<ElleElement>, String> {
    value
        .split(|b| *b == b',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            std::str::from_utf8(t)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("a list-append value holds {value:?}, not elements"))
        })
        .collect()
}

/// Per-attempt deadline: past it the member is treated as failed.
const RPC_TIMEOUT: Duration = Duration::from_millis(150);
/// Longest retry delay: faults last virtual seconds.
const BACKOFF_MAX: Duration = Duration::from_millis(50);
/// Most requests one client keeps in flight.
const DEPTH_MAX: u64 = 4;
/// Bits of a reply-to tag below the client index.
const TAG_BITS: u32 = 40;

pub(crate) struct Client {
    pub idx: usize,
    session: Session,
    /// Mixed keys get Gets, Puts and Appends; append keys only Appends and
    /// Gets (the sharded world has only those).
    keys: KeySpace,
    rng: Rng,
    /// Op numbers: the append tokens carry them.
    ops: u64,
    depth: usize,
    pending: BTreeMap<u64, Pending>,
    /// When to issue the next op (`None`: the window is full, or stopped).
    next_issue: Option<Micros>,
    /// Only the latest scheduled wake counts.
    token: u64,
    stopped: bool,
    pub appends: Vec<Appended>,
    /// `(balance, version)` of every account at this client's last audit.
    bank_seen: Option<Vec<(i64, u64)>>,
    /// Audits and committed transfers completed (for the report).
    pub bank_audits: u64,
    pub bank_transfers: u64,
    /// List-append transactions finished (committed, or of unknown
    /// outcome), for `check::elle`.
    elle_history: Vec<ElleTxn>,
    /// List-append elements issued (their ids).
    elle_elements: u64,
    /// The process died ([`Client::die`]): it sends and receives nothing
    /// more.
    pub dead: bool,
}

fn us(t: Micros) -> Time {
    Duration::from_micros(t)
}

fn options(depth: usize) -> SessionOptions {
    let mut opts = SessionOptions::new(Duration::from_secs(1 << 40), RPC_TIMEOUT, depth);
    opts.backoff_max = BACKOFF_MAX;
    // Ids change only after a SessionExpired, from the world's allocator.
    opts.renew_after = Duration::MAX;
    opts
}

impl Client {
    /// A client of the single-group world: `replicas` replicas named by
    /// their index serve every key, and there are no masters.
    pub fn new(idx: usize, replicas: u32, keys: KeySpace, mut rng: Rng) -> Client {
        let config = Config {
            num: 1,
            shards: vec![1],
            groups: vec![GroupInfo::new(
                1,
                (0..replicas).map(|r| r.to_string()).collect(),
            )],
        };
        let depth = 1 + rng.range(0, DEPTH_MAX) as usize;
        let seed = rng.next_u64();
        let session =
            Session::with_config(options(depth), config, idx as u64 + 1, seed, Time::ZERO);
        Client::with_session(idx, session, depth, keys, rng)
    }

    /// A client of the sharded world: it learns configurations from the
    /// masters at `masters` like a real client.
    pub fn sharded(
        idx: usize,
        masters: Vec<String>,
        client_id: u64,
        keys: KeySpace,
        mut rng: Rng,
    ) -> Client {
        let depth = 1 + rng.range(0, DEPTH_MAX) as usize;
        let seed = rng.next_u64();
        let session = Session::with_masters(options(depth), masters, client_id, seed, Time::ZERO);
        Client::with_session(idx, session, depth, keys, rng)
    }

    fn with_session(
        idx: usize,
        session: Session,
        depth: usize,
        keys: KeySpace,
        rng: Rng,
    ) -> Client {
        Client {
            idx,
            session,
            keys,
            rng,
            ops: 0,
            depth,
            pending: BTreeMap::new(),
            next_issue: Some(0),
            token: 0,
            stopped: false,
            appends: Vec::new(),
            bank_seen: None,
            bank_audits: 0,
            bank_transfers: 0,
            elle_history: Vec::new(),
            elle_elements: 0,
            dead: false,
        }
    }

    /// The keys this client works on (a client taking a dead one's place
    /// gets the same).
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// Commits that lost to a presumed abort in this client's session.
    pub fn presumed_aborts(&self) -> u64 {
        self.session.stats().two_pc_presumed_aborts
    }

    /// The process dies: its session and everything in flight are gone.
    /// Returns its KV ops in flight, of unknown outcome and never returned
    /// (a request already on the wire may still apply later).
    pub fn die(&mut self) -> Vec<KvOp> {
        let lost = self.pending_ops();
        let unknown = self.pending_elle();
        self.elle_history.extend(unknown);
        self.pending.clear();
        self.stopped = true;
        self.next_issue = None;
        self.dead = true;
        lost
    }

    /// The id the next requests go out under (only when the session asked
    /// for one: a request is never resent under another id).
    pub fn set_client_id(&mut self, id: u64, now: Micros) -> Actions {
        self.session.set_client_id(id, us(now));
        let mut a = Actions::default();
        self.step(now, &mut a);
        a
    }

    /// Done issuing and nothing outstanding.
    pub fn idle(&self) -> bool {
        self.stopped && self.pending.is_empty()
    }

    /// Two-phase commit attempts this client's session made, and how
    /// many of them aborted.
    pub fn two_pc(&self) -> (u64, u64) {
        let s = self.session.stats();
        (s.two_pc, s.two_pc_aborts)
    }

    /// The oldest op not answered: (op number, call time).
    pub fn outstanding(&self) -> Option<(u64, Micros)> {
        self.pending
            .values()
            .map(|p| (p.op, p.call))
            .min_by_key(|&(_, call)| call)
    }

    /// A bank transaction: an audit (read every account), or, once this
    /// client has audited, an optimistic transfer between two accounts
    /// from the balances it saw, guarded by their versions (so it fails,
    /// moving nothing, if either changed since).
    fn new_bank_op(&mut self) -> (Op, BankOp) {
        let accounts = &self.keys.bank;
        match &self.bank_seen {
            Some(seen) if self.rng.chance(0.6) && accounts.len() >= 2 => {
                let i = self.rng.range(0, accounts.len() as u64) as usize;
                let j = (i + 1 + self.rng.range(0, accounts.len() as u64 - 1) as usize)
                    % accounts.len();
                let amount = self.rng.range(1, 10) as i64;
                let txn = crate::client::TxnBuilder::new()
                    .when_version(accounts[i].clone(), CompareOp::Eq, seen[i].1)
                    .when_version(accounts[j].clone(), CompareOp::Eq, seen[j].1)
                    .then_put(accounts[i].clone(), (seen[i].0 - amount).to_string())
                    .then_put(accounts[j].clone(), (seen[j].0 + amount).to_string())
                    .build();
                (Op::Txn(Box::new(txn)), BankOp::Transfer)
            }
            _ => (
                Op::Txn(Box::new(crate::check::bank::audit_txn(accounts))),
                BankOp::Audit,
            ),
        }
    }

    /// A list-append transaction: 1-4 micro-ops on random list-append keys
    /// (so, mostly, on shards of different groups), each an Append of a
    /// fresh element or a Get.
    fn new_elle_txn(&mut self) -> (Op, Vec<ElleOp>) {
        let n = self.rng.range(1, 5);
        let mut b = crate::client::TxnBuilder::new();
        let mut ops = Vec::new();
        for _ in 0..n {
            let keys = &self.keys.elle;
            let key = keys[self.rng.range(0, keys.len() as u64) as usize].clone();
            if self.rng.chance(0.5) {
                self.elle_elements += 1;
                // Unique per key: the client index (unique in a run) and
                // its count, readable in a checker's message.
                let element = self.idx as u64 * 1_000_000 + self.elle_elements;
                b = b.then_append(key.clone(), elle_value(element));
                ops.push(ElleOp::Append { key, element });
            } else {
                b = b.then_get(key.clone());
                ops.push(ElleOp::Read { key, list: None });
            }
        }
        (Op::Txn(Box::new(b.build())), ops)
    }

    fn new_op(&mut self) -> Option<(Op, KvInput)> {
        self.ops += 1;
        let append_only =
            !self.keys.append.is_empty() && (self.keys.mixed.is_empty() || self.rng.chance(0.4));
        let pool = if append_only {
            &self.keys.append
        } else {
            &self.keys.mixed
        };
        let key = pool[self.rng.range(0, pool.len() as u64) as usize].clone();
        if self.pending.values().any(|p| p.key == key) {
            return None; // one op per key in flight: try again later
        }
        if append_only {
            if self.rng.chance(0.3) {
                return Some((Op::Get { key }, KvInput::Get));
            }
            let value = token(b'A', self.idx, self.ops);
            self.appends.push(Appended {
                key: key.clone(),
                seq: self.ops,
                acked: false,
            });
            return Some((
                Op::Append {
                    key,
                    value: value.clone(),
                },
                KvInput::Append(value),
            ));
        }
        Some(match self.rng.range(0, 10) {
            0..=3 => (Op::Get { key }, KvInput::Get),
            4..=6 => {
                let value = token(b'P', self.idx, self.ops);
                (
                    Op::Put {
                        key,
                        value: value.clone(),
                    },
                    KvInput::Put(value),
                )
            }
            _ => {
                let value = token(b'a', self.idx, self.ops);
                (
                    Op::Append {
                        key,
                        value: value.clone(),
                    },
                    KvInput::Append(value),
                )
            }
        })
    }

    pub fn on_wake(&mut self, now: Micros, token: u64, stop_new: bool) -> Actions {
        let mut a = Actions::default();
        if token != self.token {
            return a;
        }
        if self.next_issue.is_some_and(|at| at <= now) {
            self.next_issue = None;
            if stop_new {
                self.stopped = true;
            } else {
                let bank_busy = self.pending.values().any(|p| p.bank.is_some());
                if self.pending.len() < self.depth
                    && !self.keys.bank.is_empty()
                    && !bank_busy
                    && self.rng.chance(0.5)
                {
                    self.ops += 1;
                    let (op, kind) = self.new_bank_op();
                    self.submit(op, Some(kind), None, KvInput::Get, now);
                } else if self.pending.len() < self.depth
                    && !self.keys.elle.is_empty()
                    && self.pending.values().filter(|p| p.elle.is_some()).count()
                        < ELLE_IN_FLIGHT_MAX
                    && self.rng.chance(0.6)
                {
                    // Drawn only with the workload on: other runs replay
                    // as before.
                    self.ops += 1;
                    let (op, micro) = self.new_elle_txn();
                    self.submit(op, None, Some(micro), KvInput::Get, now);
                } else if self.pending.len() < self.depth {
                    if let Some((op, input)) = self.new_op() {
                        self.submit(op, None, None, input, now);
                    }
                }
                if self.pending.len() < self.depth {
                    self.next_issue = Some(now + self.rng.range(0, 3 * MS));
                }
            }
        }
        self.step(now, &mut a);
        a
    }

    pub fn on_reply(&mut self, now: Micros, reply_to: u64, message: Message) -> Actions {
        let request_id = reply_to & ((1 << TAG_BITS) - 1);
        // The network does not say who answered; the session knows where
        // the current attempt went (an answer to an older one is dropped).
        let (dest, group) = self
            .session
            .dest_of(request_id)
            .map(|(d, g)| (d.clone(), g))
            .unwrap_or_else(|| (Dest::new("", 0), 0));
        let frame = Frame {
            request_id,
            group,
            message,
        };
        self.session.on_frame(&dest, frame, us(now));
        let mut a = Actions::default();
        self.step(now, &mut a);
        a
    }

    /// Polls the session and carries out what it asks.
    fn step(&mut self, now: Micros, a: &mut Actions) {
        self.session.poll(us(now));
        // The simulated network has no connections to drop: a member the
        // session gave up on is simply not asked again for now.
        while self.session.poll_close().is_some() {}
        while let Some(t) = self.session.poll_transmit() {
            assert!(
                t.frame.request_id < 1 << TAG_BITS,
                "request ids fit below the client index"
            );
            let tag = ((self.idx as u64) << TAG_BITS) | t.frame.request_id;
            // The network has no connections (nor cores): a frame goes to
            // the member of its own group, whichever connection the
            // session chose for it.
            let to = Dest {
                addr: t.dest.addr,
                gid: t.frame.group,
            };
            a.send.push((to, tag, t.frame.message));
        }
        while let Some(done) = self.session.poll_completion() {
            let Some(p) = self.pending.remove(&done.handle) else {
                continue;
            };
            if let Some(kind) = p.bank {
                self.bank_done(kind, p.op, done.result, a);
                if !self.stopped && self.next_issue.is_none() {
                    self.next_issue = Some(now + self.rng.range(0, 3 * MS));
                }
                continue;
            }
            if let Some(ops) = p.elle {
                self.elle_done(ops, p.op, p.call, now, done.result, a);
                if !self.stopped && self.next_issue.is_none() {
                    self.next_issue = Some(now + self.rng.range(0, 3 * MS));
                }
                continue;
            }
            let output = match done.result {
                Ok(Answer::Kv(Some(v))) => match p.input {
                    KvInput::Get => KvOutput::Value(Some(v)),
                    _ => KvOutput::Ok,
                },
                Ok(Answer::Kv(None)) => KvOutput::Value(None),
                // The session expired (short TTLs on some seeds): an earlier
                // copy of this write may have applied, so its outcome is
                // unknown; the session carries on under a fresh, newer id.
                Err(ClientError::SessionExpired) => KvOutput::Unknown,
                other => {
                    a.failures.push(format!(
                        "client {} op {}: unexpected result {other:?}",
                        self.idx, p.op
                    ));
                    KvOutput::Unknown
                }
            };
            if matches!(p.input, KvInput::Append(_)) && output != KvOutput::Unknown {
                if let Some(ap) = self.appends.iter_mut().find(|x| x.seq == p.op) {
                    ap.acked = true;
                }
            }
            a.completed.push(KvOp {
                client: self.idx as u64,
                key: p.key,
                input: p.input,
                output,
                call: p.call,
                ret: now,
            });
            if !self.stopped && self.next_issue.is_none() {
                self.next_issue = Some(now + self.rng.range(0, 3 * MS));
            }
        }
        a.renew_id = self.session.needs_new_id(us(now));
        let wake = self
            .session
            .next_wake(us(now))
            // Rounded up: backoffs have nanoseconds, and waking a
            // microsecond early would find nothing due, forever.
            .map(|t| t.as_nanos().div_ceil(1000) as Micros);
        let wake = match (wake, self.next_issue) {
            (Some(w), Some(i)) => Some(w.min(i)),
            (w, i) => w.or(i),
        };
        if let Some(at) = wake {
            self.token += 1;
            a.wake = Some((at.max(now) - now, self.token));
        }
    }

    /// Hands `op` to the session core and remembers it until it completes
    /// (a KV op for the history, or a bank or list-append transaction).
    fn submit(
        &mut self,
        op: Op,
        bank: Option<BankOp>,
        elle: Option<Vec<ElleOp>>,
        input: KvInput,
        now: Micros,
    ) {
        let key = op.key().clone();
        let handle = self.session.submit(Req::Kv(op));
        let pending = Pending {
            bank,
            elle,
            key,
            input,
            call: now,
            op: self.ops,
        };
        self.pending.insert(handle, pending);
    }

    /// Checks a finished bank transaction (`check::bank`): every audit
    /// must see [`BANK_TOTAL`].
    fn bank_done(
        &mut self,
        kind: BankOp,
        op: u64,
        result: Result<Answer, ClientError>,
        a: &mut Actions,
    ) {
        let decoded = match result {
            Ok(Answer::Kv(Some(v))) => synod_wire::decode_txn_result(v).map_err(|e| e.to_string()),
            // Outcome unknown; a transfer is atomic either way.
            Err(ClientError::SessionExpired) => return,
            other => Err(format!("unexpected result {other:?}")),
        };
        let result = match decoded {
            Ok(r) => r,
            Err(why) => {
                a.failures
                    .push(format!("client {} bank op {op}: {why}", self.idx));
                return;
            }
        };
        match kind {
            BankOp::Audit => match crate::check::bank::check_audit(&result, BANK_TOTAL) {
                Ok(balances) => {
                    self.bank_audits += 1;
                    self.bank_seen = Some(balances);
                }
                Err(why) => a
                    .failures
                    .push(format!("client {} bank op {op}: {why}", self.idx)),
            },
            BankOp::Transfer => self.bank_transfers += u64::from(result.succeeded),
        }
    }

    /// Records a finished list-append transaction: committed with what
    /// its reads saw, or of unknown outcome.
    fn elle_done(
        &mut self,
        mut ops: Vec<ElleOp>,
        op: u64,
        call: Micros,
        now: Micros,
        result: Result<Answer, ClientError>,
        a: &mut Actions,
    ) {
        let decoded = match result {
            Ok(Answer::Kv(Some(v))) => synod_wire::decode_txn_result(v).map_err(|e| e.to_string()),
            // An earlier copy may have applied: unknown outcome.
            Err(ClientError::SessionExpired) => Err(String::new()),
            other => Err(format!("unexpected result {other:?}")),
        };
        let filled = decoded.and_then(|r| {
            if !r.succeeded || r.results.len() != ops.len() {
                return Err(format!(
                    "a transaction without compares answered {} with {} results for {} ops",
                    if r.succeeded { "success" } else { "failure" },
                    r.results.len(),
                    ops.len()
                ));
            }
            for (m, res) in ops.iter_mut().zip(&r.results) {
                match (m, res) {
                    (ElleOp::Read { list, .. }, synod_wire::TxnOpResult::Ok { value, .. }) => {
                        *list = Some(elle_list(value)?)
                    }
                    (ElleOp::Read { list, .. }, synod_wire::TxnOpResult::NoKey) => {
                        *list = Some(Vec::new())
                    }
                    (_, synod_wire::TxnOpResult::Error { reason }) => {
                        return Err(format!("a micro-op was refused: {reason}"))
                    }
                    _ => {}
                }
            }
            Ok(())
        });
        let status = match filled {
            Ok(()) => ElleStatus::Committed,
            Err(why) => {
                if !why.is_empty() {
                    a.failures
                        .push(format!("client {} list-append op {op}: {why}", self.idx));
                }
                ops.iter_mut().for_each(|m| {
                    if let ElleOp::Read { list, .. } = m {
                        *list = None
                    }
                });
                ElleStatus::Unknown
            }
        };
        self.elle_history.push(ElleTxn {
            client: self.idx as u64,
            invoke: call,
            complete: if status == ElleStatus::Committed {
                now
            } else {
                crate::check::elle::NEVER
            },
            status,
            ops,
        });
    }

    /// The list-append transactions in flight, of unknown outcome.
    fn pending_elle(&self) -> Vec<ElleTxn> {
        self.pending
            .values()
            .filter_map(|p| {
                Some(ElleTxn {
                    client: self.idx as u64,
                    invoke: p.call,
                    complete: crate::check::elle::NEVER,
                    status: ElleStatus::Unknown,
                    ops: p.elle.clone()?,
                })
            })
            .collect()
    }

    /// Every list-append transaction this client ran: finished ones, and
    /// those still in flight (of unknown outcome).
    pub fn elle_history(&self) -> Vec<ElleTxn> {
        let mut h = self.elle_history.clone();
        h.extend(self.pending_elle());
        h
    }

    /// The ops not answered at the end of the run, of unknown outcome.
    pub fn pending_ops(&self) -> Vec<KvOp> {
        self.pending
            .values()
            .filter(|p| p.bank.is_none() && p.elle.is_none())
            .map(|p| KvOp {
                client: self.idx as u64,
                key: p.key.clone(),
                input: p.input.clone(),
                output: KvOutput::Unknown,
                call: p.call,
                ret: u64::MAX,
            })
            .collect()
    }
}
