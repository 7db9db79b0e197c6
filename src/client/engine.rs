//! Runs a batch of requests to completion: routing, sending, matching
//! replies, retrying.
//!
//! Every request is a [`Task`] with one seq for its whole life (a resend
//! after `NotLeader`, `WrongGroup`, `Busy`, a lost connection or a missed
//! attempt deadline reuses it, as PROTOCOL.md section 7 requires). Each turn
//! of the loop admits new tasks up to the pipelining window, expires what is
//! overdue, sends what is ready (all frames for one connection in one
//! write), then waits on the event channel until the next reply or the next
//! timer.
//!
//! When a task cannot be routed (no configuration yet, `WrongGroup`, a shard
//! without a group, a group missing from the configuration) it parks in
//! [`State::AwaitConfig`] and the engine runs one internal `Query` of the
//! latest configuration as a task of its own, so a refresh never blocks the
//! replies of other tasks in flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use synod_wire::{
    encode_frame, encode_message_body, ClientReply, ClientRequest, Config, Frame, GroupId,
    MasterOp, MasterRequest, Message, Op, Seq, DEFAULT_MAX_FRAME_BYTES,
};

use super::conn::{Conn, Event, MAX_FORGOTTEN_PER_CONN};
use super::logic::{backoff, Route};
use super::{Client, ClientError};

/// A request as the engine runs it.
#[derive(Clone, Debug)]
pub(crate) enum Req {
    Kv(Op),
    Master(MasterOp),
}

/// A successful result: a KV answer (`None` = no such key) or the
/// configuration a master request returned.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    Kv(Option<Bytes>),
    Config(Config),
}

/// How servers before issue 8's fix began the `Error` a replica with a
/// failed WAL answered; retried elsewhere, never final.
const STOPPED_REPLICA: &str = "replica stopped";

/// Fixed bytes of a KV request body before the key: client id, seq, ack seq,
/// key length (PROTOCOL.md 5.1).
const KV_FIXED_BYTES: u64 = 8 + 8 + 8 + 4;
/// The value's length prefix, for Put and Append.
const VALUE_LEN_BYTES: u64 = 4;

/// Refuses, before it costs a seq, a request whose body would exceed what a
/// server's decoder accepts: the server would close the connection on it and
/// every resend would fail the same way.
pub(crate) fn check_size(req: &Req) -> Result<(), ClientError> {
    let body_len = match req {
        Req::Kv(op) => {
            let value = match op {
                Op::Get { .. } | Op::Delete { .. } | Op::GetDel { .. } => 0,
                Op::Put { value, .. } | Op::Append { value, .. } => {
                    VALUE_LEN_BYTES + value.len() as u64
                }
                Op::Incr { .. } => 8,
                // The value, then the condition and get_old bytes.
                Op::PutIf { value, .. } => VALUE_LEN_BYTES + value.len() as u64 + 2,
            };
            KV_FIXED_BYTES + op.key().len() as u64 + value
        }
        Req::Master(op) => {
            // Master requests are small unless a caller passes huge lists;
            // measuring the real encoding avoids duplicating its layout.
            let mut scratch = BytesMut::new();
            encode_message_body(
                &Message::Master(MasterRequest {
                    client_id: 0,
                    seq: 1,
                    ack_seq: 0,
                    op: op.clone(),
                }),
                &mut scratch,
            );
            scratch.len() as u64
        }
    };
    if body_len > u64::from(DEFAULT_MAX_FRAME_BYTES) {
        return Err(ClientError::TooLarge);
    }
    Ok(())
}

/// Who is waiting for a task's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// The caller's op at this index of the batch.
    User(usize),
    /// The engine's own Query of the latest configuration.
    Refresh,
}

#[derive(Clone, Debug)]
enum State {
    /// To be sent at `at` or later.
    Ready { at: Instant },
    /// Cannot be routed until a newer configuration arrives.
    AwaitConfig,
    /// On the wire; `gid`/`index` say which member it went to, for hints.
    Sent {
        conn: u64,
        request_id: u64,
        gid: GroupId,
        index: usize,
        rpc_deadline: Instant,
    },
}

struct Task {
    purpose: Purpose,
    req: Req,
    deadline: Instant,
    /// Retries so far; drives the backoff.
    attempt: u32,
    state: State,
    /// Delivered at least once: a deadline now means "maybe executed"
    /// (`Timeout`), not "never reached anyone" (`Unreachable`).
    sent_once: bool,
    /// The last connection failure, for `Unreachable`.
    last_failure: Option<String>,
}

/// One batch's bookkeeping.
struct Run {
    tasks: BTreeMap<Seq, Task>,
    /// Request id → seq, for tasks in [`State::Sent`].
    by_request: HashMap<u64, Seq>,
    results: Vec<Option<Result<Answer, ClientError>>>,
    /// Seq of the refresh task, while one runs.
    refresh: Option<Seq>,
    /// Why the masters could not be reached while refreshing; reported by
    /// tasks that never got a route.
    refresh_failure: Option<String>,
    /// User tasks started and not finished (the pipelining window).
    user_active: usize,
}

impl Client {
    /// Runs `reqs` and returns one result per request, in order.
    pub(crate) fn run(&mut self, reqs: Vec<Req>) -> Vec<Result<Answer, ClientError>> {
        let mut run = Run {
            tasks: BTreeMap::new(),
            by_request: HashMap::new(),
            results: (0..reqs.len()).map(|_| None).collect(),
            refresh: None,
            refresh_failure: None,
            user_active: 0,
        };
        let mut queue = reqs.into_iter().enumerate().peekable();
        loop {
            let now = Instant::now();
            while run.user_active < self.opts.max_in_flight {
                let Some((index, req)) = queue.next() else {
                    break;
                };
                if let Err(e) = check_size(&req) {
                    run.results[index] = Some(Err(e));
                    continue;
                }
                let seq = self.issue_seq();
                run.tasks.insert(
                    seq,
                    Task {
                        purpose: Purpose::User(index),
                        req,
                        deadline: now + self.opts.timeout,
                        attempt: 0,
                        state: State::Ready { at: now },
                        sent_once: false,
                        last_failure: None,
                    },
                );
                run.user_active += 1;
            }
            if run.tasks.is_empty() && queue.peek().is_none() {
                break;
            }
            self.expire(&mut run, now);
            self.send_ready(&mut run, now);
            // Sending may have parked tasks that need a configuration; the
            // Query for it goes out in the same turn.
            if self.start_refresh_if_needed(&mut run, now) {
                self.send_ready(&mut run, now);
            }
            if run.user_active == 0 && run.refresh.is_none() {
                // Everything finished this turn; admit more (or stop)
                // without waiting.
                continue;
            }
            self.wait(&mut run);
        }
        if self.renew_id || self.id_born.elapsed() >= super::logic::CLIENT_ID_RENEW_AFTER {
            // Nothing of this run is in flight any more (a timed-out
            // request may still be, but under the old id, which is never
            // used again), so the fresh id cannot resend anything.
            self.renew_id = false;
            self.id_born = Instant::now();
            self.client_id = super::logic::fresh_client_id();
            self.next_seq = 1;
            self.acks = Default::default();
        }
        run.results
            .into_iter()
            .map(|r| r.expect("every request finishes before run returns"))
            .collect()
    }

    fn issue_seq(&mut self) -> Seq {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn jitter(&mut self, attempt: u32) -> Duration {
        backoff(attempt, self.rng.next_u64())
    }

    /// Finishes tasks past their deadline, and resets connections whose
    /// replies are overdue (the server is treated as failed: its requests go
    /// to the next member).
    fn expire(&mut self, run: &mut Run, now: Instant) {
        let overdue: Vec<Seq> = run
            .tasks
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in overdue {
            let task = &run.tasks[&seq];
            let error = if task.sent_once {
                ClientError::Timeout
            } else if let Some(why) = &task.last_failure {
                ClientError::Unreachable(why.clone())
            } else if let Some(why) = &run.refresh_failure {
                ClientError::Unreachable(why.clone())
            } else {
                ClientError::Timeout
            };
            if let State::Sent {
                conn, request_id, ..
            } = task.state
            {
                run.by_request.remove(&request_id);
                // The connection may be fine; its late reply is expected.
                if let Some(c) = self.conn_mut(conn) {
                    c.forgotten.insert(request_id);
                    if c.forgotten.len() > MAX_FORGOTTEN_PER_CONN {
                        self.close_conn(run, conn, "too many abandoned requests", now);
                    }
                }
            }
            self.finish(run, seq, Err(error), now);
        }
        let mut slow: Vec<u64> = run
            .tasks
            .values()
            .filter_map(|t| match t.state {
                State::Sent {
                    conn, rpc_deadline, ..
                } if rpc_deadline <= now => Some(conn),
                _ => None,
            })
            .collect();
        slow.sort_unstable();
        slow.dedup();
        for conn in slow {
            self.close_conn(run, conn, "no reply within the rpc timeout", now);
        }
    }

    /// Starts a Query of the latest configuration when some task waits for
    /// one and none is running. Returns whether it started one.
    fn start_refresh_if_needed(&mut self, run: &mut Run, now: Instant) -> bool {
        if run.refresh.is_some() {
            return false;
        }
        let Some(deadline) = run
            .tasks
            .values()
            .filter(|t| matches!(t.state, State::AwaitConfig))
            .map(|t| t.deadline)
            .max()
        else {
            return false;
        };
        let seq = self.issue_seq();
        run.tasks.insert(
            seq,
            Task {
                purpose: Purpose::Refresh,
                req: Req::Master(MasterOp::Query { num: None }),
                deadline,
                attempt: 0,
                state: State::Ready { at: now },
                sent_once: false,
                last_failure: None,
            },
        );
        run.refresh = Some(seq);
        true
    }

    /// Routes and sends every task whose time has come; one write per
    /// connection carries all of its frames.
    fn send_ready(&mut self, run: &mut Run, now: Instant) {
        let ready: Vec<Seq> = run
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.state, State::Ready { at } if at <= now))
            .map(|(&seq, _)| seq)
            .collect();
        let mut out: Vec<(u64, BytesMut)> = Vec::new();
        for seq in ready {
            let route = match &run.tasks[&seq].req {
                Req::Kv(op) => self.router.route_key(op.key()),
                Req::Master(_) => self.router.route_master(),
            };
            let Route::To { gid, index, addr } = route else {
                let task = run.tasks.get_mut(&seq).expect("ready task");
                task.state = State::AwaitConfig;
                if let Some(config) = self.router.config() {
                    // The configuration we have does not route this key (no
                    // group has joined yet, or the shard is between groups):
                    // back off between refreshes instead of spinning on the
                    // master, and say why if the deadline comes first.
                    task.attempt += 1;
                    task.last_failure = Some(format!(
                        "no group serves this key's shard in configuration {} \
                         (has a group joined?)",
                        config.num
                    ));
                }
                continue;
            };
            let deadline = run.tasks[&seq].deadline;
            let connect_timeout = self
                .opts
                .rpc_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let conn = match self.conn_for(&addr, gid, connect_timeout) {
                Ok(conn) => conn,
                Err(why) => {
                    self.router.on_failure(gid, index);
                    if run.tasks[&seq].purpose == Purpose::Refresh {
                        run.refresh_failure = Some(why.clone());
                    }
                    let task = run.tasks.get_mut(&seq).expect("ready task");
                    task.last_failure = Some(why);
                    task.attempt += 1;
                    let delay = backoff(task.attempt, self.rng.next_u64());
                    task.state = State::Ready {
                        at: Instant::now() + delay,
                    };
                    continue;
                }
            };
            let request_id = self.next_request_id;
            self.next_request_id += 1;
            let task = run.tasks.get_mut(&seq).expect("ready task");
            let message = match &task.req {
                Req::Kv(op) => Message::Request(ClientRequest {
                    client_id: self.client_id,
                    seq,
                    ack_seq: self.acks.ack_seq(),
                    op: op.clone(),
                }),
                Req::Master(op) => Message::Master(MasterRequest {
                    client_id: self.client_id,
                    seq,
                    ack_seq: self.acks.ack_seq(),
                    op: op.clone(),
                }),
            };
            let buf = match out.iter().position(|(c, _)| *c == conn) {
                Some(i) => &mut out[i].1,
                None => {
                    out.push((conn, BytesMut::new()));
                    &mut out.last_mut().expect("just pushed").1
                }
            };
            encode_frame(
                &Frame {
                    request_id,
                    group: gid,
                    message,
                },
                buf,
            );
            task.state = State::Sent {
                conn,
                request_id,
                gid,
                index,
                rpc_deadline: Instant::now() + self.opts.rpc_timeout,
            };
            task.sent_once = true;
            run.by_request.insert(request_id, seq);
        }
        for (conn, bytes) in out {
            let result = match self.conn_mut(conn) {
                Some(c) => c.write_all(&bytes),
                None => continue,
            };
            if let Err(e) = result {
                self.close_conn(run, conn, &format!("write failed: {e}"), Instant::now());
            }
        }
    }

    /// Blocks until the next event or the next timer, then handles every
    /// event already queued.
    fn wait(&mut self, run: &mut Run) {
        let now = Instant::now();
        let wake = run
            .tasks
            .values()
            .map(|t| match t.state {
                State::Ready { at } => at.min(t.deadline),
                State::Sent { rpc_deadline, .. } => rpc_deadline.min(t.deadline),
                State::AwaitConfig => t.deadline,
            })
            .min()
            .unwrap_or(now);
        let event = match self
            .events_rx
            .recv_timeout(wake.saturating_duration_since(now))
        {
            Ok(event) => event,
            // The client holds a sender, so the channel never disconnects.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
        };
        self.handle_event(run, event);
        while let Ok(event) = self.events_rx.try_recv() {
            self.handle_event(run, event);
        }
    }

    fn handle_event(&mut self, run: &mut Run, event: Event) {
        let now = Instant::now();
        match event {
            Event::Closed { conn, reason } => {
                if self.conn_mut(conn).is_some() {
                    self.close_conn(run, conn, &reason, now);
                }
            }
            Event::Frame { conn, frame } => {
                // Leftovers from a connection already dropped.
                let Some(c) = self.conn_mut(conn) else {
                    return;
                };
                let request_id = frame.request_id;
                let mine = run.by_request.get(&request_id).copied().filter(
                    |seq| matches!(run.tasks[seq].state, State::Sent { conn: c, .. } if c == conn),
                );
                match mine {
                    Some(seq) => {
                        run.by_request.remove(&request_id);
                        self.handle_reply(run, seq, conn, frame.message, now);
                    }
                    None => {
                        if !c.forgotten.remove(&request_id) {
                            let why = format!("reply with unknown request id {request_id}");
                            self.close_conn(run, conn, &why, now);
                        }
                    }
                }
            }
        }
    }

    /// Acts on the reply to task `seq`, which was sent on `conn`.
    fn handle_reply(&mut self, run: &mut Run, seq: Seq, conn: u64, message: Message, now: Instant) {
        let task = run.tasks.get_mut(&seq).expect("replied task exists");
        let State::Sent { gid, index, .. } = task.state else {
            unreachable!("only sent tasks are matched to replies");
        };
        if gid == 0 {
            // Some master answered: the masters are reachable after all.
            run.refresh_failure = None;
        }
        let is_get = matches!(task.req, Req::Kv(Op::Get { .. }));
        match (&task.req, message) {
            (Req::Kv(_), Message::Reply(ClientReply::Ok(value))) => {
                self.finish(run, seq, Ok(Answer::Kv(Some(value))), now);
            }
            (Req::Kv(_), Message::Reply(ClientReply::NoKey)) if is_get => {
                self.finish(run, seq, Ok(Answer::Kv(None)), now);
            }
            (Req::Master(_), Message::Config(config)) => {
                self.finish(run, seq, Ok(Answer::Config(config)), now);
            }
            // A server from before stopped replicas answered NotLeader said
            // "replica stopped: <disk error>": not a refusal of the request
            // but a member that cannot serve; the others may.
            (_, Message::Reply(ClientReply::Error { reason }))
                if reason.starts_with(STOPPED_REPLICA) =>
            {
                task.attempt += 1;
                task.last_failure = Some(reason);
                self.router.on_failure(gid, index);
                let delay = backoff(task.attempt, self.rng.next_u64());
                task.state = State::Ready { at: now + delay };
            }
            (_, Message::Reply(ClientReply::Error { reason })) => {
                self.finish(run, seq, Err(ClientError::Refused(reason)), now);
            }
            (Req::Kv(_), Message::Reply(ClientReply::SessionExpired)) => {
                self.renew_id = true;
                self.finish(run, seq, Err(ClientError::SessionExpired), now);
            }
            (Req::Kv(op), Message::Reply(ClientReply::WrongGroup)) => {
                self.router.invalidate_key(op.key());
                task.attempt += 1;
                task.state = State::AwaitConfig;
            }
            (_, Message::Reply(ClientReply::NotLeader { leader })) => {
                self.router.on_not_leader(gid, index, leader);
                task.attempt += 1;
                let delay = backoff(task.attempt, self.rng.next_u64());
                task.state = State::Ready { at: now + delay };
            }
            (_, Message::Reply(ClientReply::Busy)) => {
                // Same replica: it is the leader, just overloaded.
                task.attempt += 1;
                let delay = backoff(task.attempt, self.rng.next_u64());
                task.state = State::Ready { at: now + delay };
            }
            (_, other) => {
                // A server that answers nonsense cannot be trusted on this
                // connection: drop it and resend elsewhere.
                let why = format!("unexpected reply {}", describe(&other));
                task.attempt += 1;
                let delay = backoff(task.attempt, self.rng.next_u64());
                task.state = State::Ready { at: now + delay };
                task.last_failure = Some(why.clone());
                self.router.on_failure(gid, index);
                self.close_conn(run, conn, &why, now);
            }
        }
    }

    /// Records a task's final result and retires its seq.
    fn finish(
        &mut self,
        run: &mut Run,
        seq: Seq,
        result: Result<Answer, ClientError>,
        now: Instant,
    ) {
        let task = run.tasks.remove(&seq).expect("finished task exists");
        self.acks.retire(seq);
        if let Ok(Answer::Config(config)) = &result {
            self.router.install(config.clone());
        }
        match task.purpose {
            Purpose::User(index) => {
                debug_assert!(run.results[index].is_none());
                run.results[index] = Some(result);
                run.user_active -= 1;
            }
            Purpose::Refresh => {
                run.refresh = None;
                match result {
                    Ok(_) => {
                        // Parked tasks try again with the new routes, backing
                        // off in case the groups have not caught up yet.
                        let parked: Vec<Seq> = run
                            .tasks
                            .iter()
                            .filter(|(_, t)| matches!(t.state, State::AwaitConfig))
                            .map(|(&s, _)| s)
                            .collect();
                        for s in parked {
                            let delay = self.jitter(run.tasks[&s].attempt);
                            run.tasks.get_mut(&s).expect("parked").state =
                                State::Ready { at: now + delay };
                        }
                    }
                    Err(ClientError::Unreachable(why)) => run.refresh_failure = Some(why),
                    Err(ClientError::Refused(why)) | Err(ClientError::Protocol(why)) => {
                        // A master refusing to answer a Query will refuse
                        // every retry: fail the tasks that need it now.
                        let parked: Vec<Seq> = run
                            .tasks
                            .iter()
                            .filter(|(_, t)| matches!(t.state, State::AwaitConfig))
                            .map(|(&s, _)| s)
                            .collect();
                        for s in parked {
                            let e = ClientError::Protocol(format!(
                                "cannot fetch the configuration: {why}"
                            ));
                            self.finish(run, s, Err(e), now);
                        }
                    }
                    Err(_) => {}
                }
            }
        }
    }

    fn conn_mut(&mut self, id: u64) -> Option<&mut Conn> {
        self.conns.values_mut().find(|c| c.id == id)
    }

    /// The open connection to `addr` for group `gid`, connecting if there
    /// is none. One connection per (server, group): the server binds a
    /// connection to the core that owns the group of its first frame, so
    /// keeping groups apart keeps every request on its owner core with no
    /// cross-core hop.
    fn conn_for(
        &mut self,
        addr: &str,
        gid: GroupId,
        connect_timeout: Duration,
    ) -> Result<u64, String> {
        if let Some(c) = self.conns.get(&(addr.to_string(), gid)) {
            return Ok(c.id);
        }
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        let auth = crate::auth::stream::client_identity(
            self.opts.cluster_key.as_ref(),
            self.opts.client_key.as_ref(),
        );
        let conn = Conn::open(
            id,
            addr,
            gid,
            auth.as_ref(),
            connect_timeout,
            self.opts.rpc_timeout,
            self.events_tx.clone(),
        )?;
        self.conns.insert((addr.to_string(), gid), conn);
        Ok(id)
    }

    /// Drops connection `id` and schedules a resend of every request that
    /// was waiting on it, moving the leader hint past that server.
    fn close_conn(&mut self, run: &mut Run, id: u64, reason: &str, now: Instant) {
        let Some(addr) = self
            .conns
            .iter()
            .find(|(_, c)| c.id == id)
            .map(|(a, _)| a.clone())
        else {
            return;
        };
        self.conns.remove(&addr);
        log::debug!(
            "client {:016x}: dropping connection to {} (group {}): {reason}",
            self.client_id,
            addr.0,
            addr.1
        );
        let victims: Vec<(u64, Seq)> = run
            .by_request
            .iter()
            .filter(
                |(_, seq)| matches!(run.tasks[seq].state, State::Sent { conn, .. } if conn == id),
            )
            .map(|(&rid, &seq)| (rid, seq))
            .collect();
        for (rid, seq) in victims {
            run.by_request.remove(&rid);
            let delay = self.jitter(run.tasks[&seq].attempt + 1);
            let task = run.tasks.get_mut(&seq).expect("victim task");
            if let State::Sent { gid, index, .. } = task.state {
                self.router.on_failure(gid, index);
            }
            task.attempt += 1;
            task.last_failure = Some(format!("{}: {reason}", addr.0));
            task.state = State::Ready { at: now + delay };
        }
    }
}

fn describe(message: &Message) -> &'static str {
    match message {
        Message::Request(_) => "Request",
        Message::Reply(ClientReply::Ok(_)) => "Ok",
        Message::Reply(ClientReply::NoKey) => "NoKey",
        Message::Reply(ClientReply::WrongGroup) => "WrongGroup",
        Message::Reply(ClientReply::NotLeader { .. }) => "NotLeader",
        Message::Reply(ClientReply::Busy) => "Busy",
        Message::Reply(ClientReply::Error { .. }) => "Error",
        Message::Reply(ClientReply::SessionExpired) => "SessionExpired",
        Message::Paxos(_) => "Paxos",
        Message::Master(_) => "Master",
        Message::Config(_) => "Config",
        Message::ShardPull(_) => "ShardPull",
        Message::ShardDelete(_) => "ShardDelete",
        Message::ShardData(_) => "ShardData",
        Message::Auth(_) => "Auth",
    }
}
