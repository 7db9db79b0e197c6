//! The sans-IO shard migrator: what a group's leader sends to other groups,
//! and what it proposes to its own log, to carry out [`ShardKv::work`].
//!
//! Inputs are the leader's state machine (and the next configuration, if
//! known), answers from the other groups, failed sends, and `now` (any
//! monotonic time the driver counts from a start of its choosing). Outputs
//! are [`Action`]s: an RPC to one member of another group, or an internal
//! command to propose. It never does I/O and never reads a clock, so the
//! runtime (`runtime::core`) and the sharded simulator (`sim::sharded`)
//! drive this one copy.
//!
//! What it decides:
//! - **Retry timing.** Each piece of work (its [`RetryKey`]) is attempted at
//!   most once per [`RETRY`]; a pull's cursor is part of its key, so the
//!   next chunk is asked for as soon as the last one applied.
//! - **Which source member.** Per asked group, a cursor over its members:
//!   a `NotLeader` hint moves it to the hinted member; any other refusal,
//!   a failed send, or a member that leaves our RPCs unanswered for
//!   [`ANSWER_TIMEOUT`] (a crashed, partitioned or hung process) moves it
//!   to the next member.
//! - **Answers into log commands.** A chunk that matches what was asked
//!   becomes [`GroupCommand::InstallChunk`]; a delete answered Ok becomes
//!   [`GroupCommand::InstalledAck`].
//!
//! - **Presumed-abort recovery** of two-phase commit (issue 10): a
//!   prepared part this leader has seen for [`Migrator::resolve_after`]
//!   (its client died, or is stuck) is asked about at the coordinator
//!   group (`TxnResolve`, same member rotation and retries as a pull);
//!   the answer becomes [`GroupCommand::TxnResolved`]. If we are the
//!   coordinator, after twice that we propose
//!   [`GroupCommand::TxnPresumeAbort`] to our own log (later than a
//!   participant would ask, so that usually a participant's question
//!   resolves the coordinator's part too, with one entry).
//!
//! It also answers the other side ([`serve_pull`], [`serve_delete`],
//! [`serve_resolve`]), the same way for every driver.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use synod_wire::{
    ClientReply, Config, GroupId, Message, ShardData, ShardPull, ShardRef, TxnId, TxnOutcome,
};

use super::{DeleteAnswer, GroupCommand, PullAnswer, RetryKey, ShardKv, Work};
use crate::replica::Replica;

/// Migration work is attempted at most this often while it is pending.
pub const RETRY: Duration = Duration::from_millis(300);

/// A member of another group that leaves our migration RPCs unanswered this
/// long is passed over for the next member.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a prepared part of a cross-group transaction waits for its
/// client's outcome before the group's leader asks the coordinator
/// (`synod-server --txn-resolve-after-ms`). A client that is alive
/// normally finishes in a few round trips; one slower than this has its
/// transaction aborted (if undecided) and retries it under a new id.
pub const DEFAULT_RESOLVE_AFTER: Duration = Duration::from_secs(5);

/// RPCs and attempts older than this are forgotten (the work is long done,
/// or the answer is never coming).
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// What an RPC asked, to check its answer against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    Pull {
        config_num: u64,
        shard: u32,
        cursor: u64,
    },
    Delete {
        config_num: u64,
        shard: u32,
    },
    Resolve {
        txn: TxnId,
    },
}

#[derive(Clone, Copy, Debug)]
struct Outstanding {
    /// Our group (whose log the answer goes into).
    gid: GroupId,
    /// The group asked.
    target: GroupId,
    asked: Asked,
    sent: Duration,
}

/// One thing for the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Propose this command to group `gid`'s log (if its replica still
    /// leads).
    Propose { gid: GroupId, cmd: GroupCommand },
    /// Send `message` as request `request_id` to member `member` (index
    /// into the group's member list; address `server`) of group `target`.
    /// The answer goes to [`Migrator::on_answer`], a send that could not
    /// be made to [`Migrator::on_send_failed`].
    Send {
        request_id: u64,
        target: GroupId,
        member: usize,
        server: String,
        message: Message,
    },
}

/// Counters a driver may report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigratorStats {
    /// Times the migrator moved on to another member of an asked group
    /// because the one it asked did not answer, refused or was unreachable.
    pub rotations: u64,
    /// Chunks turned into `InstallChunk` proposals, and of them the last
    /// chunk of a shard.
    pub chunks: u64,
    pub last_chunks: u64,
    /// Outcomes of prepared parts learned from their coordinator
    /// (`TxnResolved` proposals), and presumed aborts proposed to our own
    /// log as a coordinator.
    pub resolved: u64,
    pub presumed_aborts: u64,
}

/// The migration driver state of one node (every KV group it hosts).
#[derive(Debug, Default)]
pub struct Migrator {
    outstanding: HashMap<u64, Outstanding>,
    next_id: u64,
    /// When each piece of work of each of our groups was last attempted.
    attempts: HashMap<(GroupId, RetryKey), Duration>,
    /// Per asked group: since when it has left our RPCs unanswered
    /// (cleared by any answer from it).
    unanswered: HashMap<GroupId, Duration>,
    /// Per asked group: which member to ask next.
    member: HashMap<GroupId, usize>,
    /// The earliest time a retry held back by [`RETRY`] (or a prepared
    /// part's recovery timeout) falls due.
    due: Option<Duration>,
    /// Per (our group, transaction): since when this migrator has seen the
    /// group hold that prepared part while leading it. Driver time, so a
    /// new leader gives the client a whole timeout again (never less).
    prepared_seen: HashMap<(GroupId, TxnId), Duration>,
    /// How long a prepared part may wait for its client before it is
    /// resolved at the coordinator ([`DEFAULT_RESOLVE_AFTER`]).
    pub resolve_after: Duration,
    pub stats: MigratorStats,
}

impl Migrator {
    pub fn new() -> Migrator {
        Migrator::with_first_request_id(1)
    }

    /// Request ids start at `first` (a driver that restarts a node can keep
    /// a late answer to the previous incarnation from matching).
    pub fn with_first_request_id(first: u64) -> Migrator {
        Migrator {
            next_id: first,
            resolve_after: DEFAULT_RESOLVE_AFTER,
            ..Migrator::default()
        }
    }

    /// The same, with prepared parts resolved after `after`
    /// ([`Migrator::resolve_after`]).
    pub fn resolving_after(mut self, after: Duration) -> Migrator {
        self.resolve_after = after;
        self
    }

    /// The work of group `gid`, whose replica leads and has state `kv`
    /// (`next`: the configuration after its current one, if the driver
    /// knows it): what to send and propose now.
    pub fn poll(
        &mut self,
        gid: GroupId,
        kv: &ShardKv,
        next: Option<&Config>,
        now: Duration,
    ) -> Vec<Action> {
        if self.due.is_some_and(|d| d <= now) {
            self.due = None; // passed: this poll sets the next one
        }
        let work = kv.work(next);
        if !work.is_empty() {
            log::debug!("group {gid}: migration work {work:?}");
        }
        let mut out = Vec::new();
        let mut held: HashSet<TxnId> = HashSet::new();
        for w in work {
            if let Work::Resolve {
                txn, coordinator, ..
            } = &w
            {
                held.insert(*txn);
                let first = *self.prepared_seen.entry((gid, *txn)).or_insert(now);
                let wait = if *coordinator == gid {
                    2 * self.resolve_after
                } else {
                    self.resolve_after
                };
                let at = first + wait;
                if now < at {
                    self.due = Some(self.due.map_or(at, |d| d.min(at)));
                    continue;
                }
            }
            let key = (gid, w.retry_key());
            if let Some(t) = self.attempts.get(&key) {
                let at = *t + RETRY;
                if now < at {
                    self.due = Some(self.due.map_or(at, |d| d.min(at)));
                    continue;
                }
            }
            self.attempts.insert(key, now);
            let (target, servers, asked, message) = match w {
                Work::Propose(cmd) => {
                    out.push(Action::Propose { gid, cmd });
                    continue;
                }
                Work::Pull {
                    config_num,
                    shard,
                    cursor,
                    from,
                    servers,
                } => (
                    from,
                    servers,
                    Asked::Pull {
                        config_num,
                        shard,
                        cursor,
                    },
                    Message::ShardPull(ShardPull {
                        config_num,
                        shard,
                        cursor,
                    }),
                ),
                Work::Delete {
                    config_num,
                    shard,
                    to,
                    servers,
                } => (
                    to,
                    servers,
                    Asked::Delete { config_num, shard },
                    Message::ShardDelete(ShardRef { config_num, shard }),
                ),
                Work::Resolve {
                    txn, coordinator, ..
                } if coordinator == gid => {
                    log::info!("group {gid}: presuming transaction {txn:?} aborted");
                    self.stats.presumed_aborts += 1;
                    let cmd = GroupCommand::TxnPresumeAbort { txn };
                    out.push(Action::Propose { gid, cmd });
                    continue;
                }
                Work::Resolve {
                    txn,
                    coordinator,
                    servers,
                } => {
                    log::info!(
                        "group {gid}: asking group {coordinator} for the outcome of \
                         transaction {txn:?}"
                    );
                    (
                        coordinator,
                        servers,
                        Asked::Resolve { txn },
                        Message::TxnResolve(txn),
                    )
                }
            };
            if let Some(a) = self.send(gid, target, &servers, asked, message, now) {
                out.push(a);
            }
        }
        // Parts no longer held (finished, or we stopped leading and came
        // back) start their wait afresh if seen again.
        self.prepared_seen
            .retain(|(g, txn), _| *g != gid || held.contains(txn));
        self.forget(now);
        out
    }

    fn send(
        &mut self,
        gid: GroupId,
        target: GroupId,
        servers: &[String],
        asked: Asked,
        message: Message,
        now: Duration,
    ) -> Option<Action> {
        if servers.is_empty() {
            return None;
        }
        // A member that accepts our requests but never answers would
        // otherwise be asked forever, and the shard never move.
        let since = *self.unanswered.entry(target).or_insert(now);
        if now.saturating_sub(since) > ANSWER_TIMEOUT {
            self.rotate(target);
            self.unanswered.insert(target, now);
        }
        let member = self.member.get(&target).copied().unwrap_or(0) % servers.len();
        let request_id = self.next_id;
        self.next_id += 1;
        self.outstanding.insert(
            request_id,
            Outstanding {
                gid,
                target,
                asked,
                sent: now,
            },
        );
        Some(Action::Send {
            request_id,
            target,
            member,
            server: servers[member].clone(),
            message,
        })
    }

    fn rotate(&mut self, target: GroupId) {
        *self.member.entry(target).or_default() += 1;
        self.stats.rotations += 1;
    }

    fn forget(&mut self, now: Duration) {
        self.attempts
            .retain(|_, t| now.saturating_sub(*t) < FORGET_AFTER);
        self.outstanding
            .retain(|_, o| now.saturating_sub(o.sent) < FORGET_AFTER);
    }

    /// The send of `request_id` could not be made (no connection to the
    /// member, or it closed): ask the next member from now on.
    pub fn on_send_failed(&mut self, request_id: u64) {
        if let Some(o) = self.outstanding.remove(&request_id) {
            self.rotate(o.target);
        }
    }

    /// Every connection to group `target`'s current member is gone: ask
    /// the next member from now on.
    pub fn on_unreachable(&mut self, target: GroupId) {
        self.rotate(target);
    }

    /// The answer to request `request_id`: the command to propose to our
    /// group's log, if it is one that moves the transfer on.
    pub fn on_answer(
        &mut self,
        request_id: u64,
        message: Message,
    ) -> Option<(GroupId, GroupCommand)> {
        let o = self.outstanding.remove(&request_id)?;
        self.unanswered.remove(&o.target);
        match (o.asked, message) {
            // The chunk goes straight into the log: the driver holds at most
            // the one chunk of each pull it has in flight. The next pull
            // starts from the cursor this chunk moves once it is applied.
            (
                Asked::Pull {
                    config_num,
                    shard,
                    cursor,
                },
                Message::ShardData(d),
            ) if d.config_num == config_num && d.shard == shard && d.cursor == cursor => {
                self.stats.chunks += 1;
                self.stats.last_chunks += u64::from(d.done);
                Some((
                    o.gid,
                    GroupCommand::InstallChunk {
                        config_num,
                        shard,
                        cursor,
                        done: d.done,
                        data: d.data,
                    },
                ))
            }
            (Asked::Delete { config_num, shard }, Message::Reply(ClientReply::Ok(_))) => {
                Some((o.gid, GroupCommand::InstalledAck { config_num, shard }))
            }
            // The outcome in the coordinator's log: apply it in ours.
            (Asked::Resolve { txn }, Message::Reply(ClientReply::Ok(v)))
                if v.len() == 1 && TxnOutcome::from_code(v[0]).is_some() =>
            {
                let outcome = TxnOutcome::from_code(v[0]).expect("checked");
                log::info!(
                    "group {}: transaction {txn:?} resolved by group {}: {outcome:?}",
                    o.gid,
                    o.target
                );
                self.stats.resolved += 1;
                Some((o.gid, GroupCommand::TxnResolved { txn, outcome }))
            }
            // Not ready yet: retried on the timer, same member.
            (_, Message::Reply(ClientReply::Busy)) => None,
            (_, Message::Reply(ClientReply::NotLeader { leader: Some(l) })) => {
                self.member.insert(o.target, l as usize);
                None
            }
            (_, other) => {
                // WrongGroup, errors, a hint-less NotLeader, a chunk that
                // is not the one asked: ask another member next time.
                log::debug!(
                    "group {}: migration answer from group {}: {other:?}",
                    o.gid,
                    o.target
                );
                self.rotate(o.target);
                None
            }
        }
    }

    /// When the driver should call [`Migrator::poll`] again at the latest
    /// for a retry held back by [`RETRY`] to go out. New work (a chunk
    /// applied, a configuration learned) is there at once: the driver
    /// polls after it too.
    pub fn next_wake(&self) -> Option<Duration> {
        self.due
    }

    /// RPCs sent and not answered yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
}

/// Another group pulls a chunk of a shard from us: the message to answer.
/// Any replica that has applied the configuration holds the same frozen
/// copy, so a follower answers too.
pub fn serve_pull(kv: &ShardKv, r: &ShardPull) -> Message {
    match kv.answer_pull(r.config_num, r.shard, r.cursor) {
        PullAnswer::Chunk { data, done } => Message::ShardData(ShardData {
            config_num: r.config_num,
            shard: r.shard,
            cursor: r.cursor,
            done,
            data,
        }),
        PullAnswer::NotReady => Message::Reply(ClientReply::Busy),
    }
}

/// What answering another group's delete or resolve needs of a replica of
/// ours, whichever way the group replicates (Paxos or primary/backup).
pub trait GroupLog {
    fn kv(&self) -> &ShardKv;
    /// Does this replica take proposals (the Paxos leader, the serving
    /// primary)?
    fn leads(&self) -> bool;
    fn propose_cmd(&mut self, cmd: Bytes);
    fn hint(&self) -> Option<synod_wire::ReplicaId>;
}

impl GroupLog for Replica<ShardKv> {
    fn kv(&self) -> &ShardKv {
        self.state()
    }
    fn leads(&self) -> bool {
        self.is_leader()
    }
    fn propose_cmd(&mut self, cmd: Bytes) {
        let _ = self.propose(cmd);
    }
    fn hint(&self) -> Option<synod_wire::ReplicaId> {
        self.paxos().leader_hint()
    }
}

impl GroupLog for crate::pb::PbReplica<ShardKv> {
    fn kv(&self) -> &ShardKv {
        self.state()
    }
    fn leads(&self) -> bool {
        self.serving()
    }
    fn propose_cmd(&mut self, cmd: Bytes) {
        let _ = self.propose(cmd);
    }
    fn hint(&self) -> Option<synod_wire::ReplicaId> {
        self.leader_hint()
    }
}

/// The new owner of a shard installed it: drop our copy through our log
/// (proposed here if this replica leads) and answer Ok once it is gone.
pub fn serve_delete(replica: &mut impl GroupLog, r: &ShardRef) -> ClientReply {
    match replica.kv().answer_delete(r.config_num, r.shard) {
        DeleteAnswer::Done => ClientReply::Ok(Bytes::new()),
        DeleteAnswer::NotReady => ClientReply::Busy,
        DeleteAnswer::Propose(cmd) => {
            if replica.leads() {
                replica.propose_cmd(cmd.encode());
                ClientReply::Busy
            } else {
                ClientReply::NotLeader {
                    leader: replica.hint(),
                }
            }
        }
    }
}

/// A participant asks us, the coordinator of `txn`, for its outcome: the
/// decision in our log if there is one (any replica that applied it may
/// say so: a logged decision never changes). Otherwise Abort must get into
/// our log first (presumed abort, ordered against the client's own
/// `TxnDecide` there, so exactly one of them wins): proposed here if this
/// replica leads, and the asker asks again.
pub fn serve_resolve(replica: &mut impl GroupLog, txn: TxnId) -> ClientReply {
    let kv = replica.kv();
    if let Some(outcome) = kv.store().decision(txn) {
        return ClientReply::Ok(Bytes::copy_from_slice(&[outcome as u8]));
    }
    if kv.bugs.resolve_unlogged {
        // Planted bug: Abort answered, nothing logged; the client's
        // commit can still win in our log afterwards.
        return ClientReply::Ok(Bytes::copy_from_slice(&[TxnOutcome::Abort as u8]));
    }
    if replica.leads() {
        replica.propose_cmd(GroupCommand::TxnPresumeAbort { txn }.encode());
        ClientReply::Busy
    } else {
        ClientReply::NotLeader {
            leader: replica.hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvOptions;
    use crate::replica::StateMachine;
    use synod_wire::GroupInfo;

    const MS: Duration = Duration::from_millis(1);

    fn config(num: u64, owners: &[GroupId]) -> Config {
        Config {
            num,
            shards: owners.to_vec(),
            groups: [1, 2]
                .into_iter()
                .map(|gid| GroupInfo::new(gid, (0..3).map(|i| format!("g{gid}r{i}")).collect()))
                .collect(),
        }
    }

    /// Group 2, pulling shard 0 of configuration 2 from group 1.
    fn pulling() -> ShardKv {
        let mut kv = ShardKv::new(
            2,
            KvOptions {
                shards: 2,
                ..KvOptions::default()
            },
        );
        for c in [config(1, &[1, 1]), config(2, &[2, 1])] {
            kv.apply(0, &GroupCommand::Reconfigure(c).encode());
        }
        kv
    }

    fn sends(actions: &[Action]) -> Vec<(u64, usize)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    request_id, member, ..
                } => Some((*request_id, *member)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn retries_once_per_interval_and_reports_when() {
        let kv = pulling();
        let mut m = Migrator::new();
        assert_eq!(sends(&m.poll(2, &kv, None, Duration::ZERO)), vec![(1, 0)]);
        assert!(m.poll(2, &kv, None, 100 * MS).is_empty());
        assert_eq!(m.next_wake(), Some(RETRY));
        assert_eq!(sends(&m.poll(2, &kv, None, RETRY)), vec![(2, 0)]);
        assert_eq!(m.outstanding(), 2);
        // The wake-up moves on with the attempt.
        assert!(m.poll(2, &kv, None, RETRY + 10 * MS).is_empty());
        assert_eq!(m.next_wake(), Some(2 * RETRY));
    }

    #[test]
    fn moves_on_from_a_member_that_does_not_answer() {
        let kv = pulling();
        let mut m = Migrator::new();
        let mut now = Duration::ZERO;
        let mut asked = Vec::new();
        while now < 3 * ANSWER_TIMEOUT {
            asked.extend(sends(&m.poll(2, &kv, None, now)).into_iter().map(|s| s.1));
            now += RETRY;
        }
        assert_eq!(asked[0], 0);
        assert!(asked.contains(&1) && asked.contains(&2), "{asked:?}");
        assert!(m.stats.rotations >= 2);
    }

    #[test]
    fn follows_hints_and_turns_answers_into_commands() {
        let kv = pulling();
        let mut m = Migrator::new();
        let (id, _) = sends(&m.poll(2, &kv, None, Duration::ZERO))[0];
        let hint = Message::Reply(ClientReply::NotLeader { leader: Some(2) });
        assert_eq!(m.on_answer(id, hint), None);
        let (id, member) = sends(&m.poll(2, &kv, None, RETRY))[0];
        assert_eq!(member, 2);
        // Not the chunk asked for: ignored, and the next member is asked.
        let wrong = Message::ShardData(ShardData {
            config_num: 2,
            shard: 0,
            cursor: 5,
            done: true,
            data: Bytes::new(),
        });
        assert_eq!(m.on_answer(id, wrong), None);
        let (id, member) = sends(&m.poll(2, &kv, None, 2 * RETRY))[0];
        assert_eq!(member, 0);
        let chunk = Message::ShardData(ShardData {
            config_num: 2,
            shard: 0,
            cursor: 0,
            done: true,
            data: Bytes::from_static(b"x"),
        });
        assert_eq!(
            m.on_answer(id, chunk.clone()),
            Some((
                2,
                GroupCommand::InstallChunk {
                    config_num: 2,
                    shard: 0,
                    cursor: 0,
                    done: true,
                    data: Bytes::from_static(b"x"),
                }
            ))
        );
        // A duplicate answer matches nothing outstanding.
        assert_eq!(m.on_answer(id, chunk), None);
        assert_eq!(m.stats.chunks, 1);
    }

    #[test]
    fn a_failed_send_moves_on() {
        let kv = pulling();
        let mut m = Migrator::new();
        let (id, member) = sends(&m.poll(2, &kv, None, Duration::ZERO))[0];
        assert_eq!(member, 0);
        m.on_send_failed(id);
        assert_eq!(m.outstanding(), 0);
        assert_eq!(sends(&m.poll(2, &kv, None, RETRY))[0].1, 1);
    }

    /// Group 2 holding a prepared part of a transaction coordinated by
    /// group 1 (every shard served, configuration 1).
    fn participant(coordinator: GroupId) -> (ShardKv, TxnId) {
        let mut kv = ShardKv::new(
            2,
            KvOptions {
                shards: 2,
                ..KvOptions::default()
            },
        );
        kv.apply(0, &GroupCommand::Reconfigure(config(1, &[2, 2])).encode());
        let txn = TxnId { client: 9, seq: 4 };
        let req = synod_wire::ClientRequest {
            client_id: 9,
            seq: 5,
            ack_seq: 0,
            op: synod_wire::Op::TxnPrepare(Box::new(synod_wire::TxnPrepare {
                txn,
                part: synod_wire::Txn {
                    compares: vec![],
                    success: vec![synod_wire::Op::Put {
                        key: Bytes::from_static(b"k"),
                        value: Bytes::from_static(b"v"),
                    }],
                    failure: vec![],
                },
                coordinator,
            })),
        };
        kv.apply(1, &synod_wire::encode_command(&req));
        assert_eq!(kv.store().prepared_count(), 1);
        (kv, txn)
    }

    #[test]
    fn an_old_prepared_part_is_resolved_at_its_coordinator() {
        let (mut kv, txn) = participant(1);
        let mut m = Migrator::new().resolving_after(1000 * MS);
        // Young: nothing asked, but a wake-up when it comes of age.
        assert!(m.poll(2, &kv, None, Duration::ZERO).is_empty());
        assert_eq!(m.next_wake(), Some(1000 * MS));
        assert!(m.poll(2, &kv, None, 999 * MS).is_empty());
        let out = m.poll(2, &kv, None, 1000 * MS);
        let [Action::Send {
            request_id,
            target: 1,
            server,
            message: Message::TxnResolve(asked),
            ..
        }] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!((server.as_str(), *asked), ("g1r0", txn));
        // Busy (the abort is on its way through the coordinator's log):
        // asked again on the timer; then the answer becomes a command.
        assert_eq!(
            m.on_answer(*request_id, Message::Reply(ClientReply::Busy)),
            None
        );
        let out = m.poll(2, &kv, None, 1000 * MS + RETRY);
        let (id, _) = sends(&out)[0];
        let abort = Message::Reply(ClientReply::Ok(Bytes::from_static(&[0])));
        let cmd = m.on_answer(id, abort).expect("a command");
        assert_eq!(
            cmd,
            (
                2,
                GroupCommand::TxnResolved {
                    txn,
                    outcome: TxnOutcome::Abort
                }
            )
        );
        // A nonsense answer byte is not an outcome.
        let out = m.poll(2, &kv, None, 1000 * MS + 2 * RETRY);
        let (id, _) = sends(&out)[0];
        let junk = Message::Reply(ClientReply::Ok(Bytes::from_static(&[7])));
        assert_eq!(m.on_answer(id, junk), None);
        // Applied: released, and nothing more to ask.
        kv.apply(2, &cmd.1.encode());
        assert_eq!(kv.store().prepared_count(), 0);
        assert!(m.poll(2, &kv, None, 1000 * MS + 3 * RETRY).is_empty());
        assert_eq!(m.stats.resolved, 1);
    }

    #[test]
    fn a_coordinator_presumes_its_own_old_part_aborted_later() {
        let (kv, txn) = participant(2);
        let mut m = Migrator::new().resolving_after(1000 * MS);
        assert!(m.poll(2, &kv, None, Duration::ZERO).is_empty());
        assert!(m.poll(2, &kv, None, 1500 * MS).is_empty());
        let out = m.poll(2, &kv, None, 2000 * MS);
        assert_eq!(
            out,
            vec![Action::Propose {
                gid: 2,
                cmd: GroupCommand::TxnPresumeAbort { txn }
            }]
        );
        assert_eq!(m.stats.presumed_aborts, 1);
    }

    /// A prepare logged before recovery existed names no coordinator:
    /// nobody is asked (its client decides).
    #[test]
    fn a_part_without_a_coordinator_is_left_to_its_client() {
        let (kv, _) = participant(0);
        let mut m = Migrator::new().resolving_after(MS);
        assert!(m.poll(2, &kv, None, Duration::from_secs(60)).is_empty());
    }

    /// A coordinator answers only what its log holds: a replica with no
    /// decision and no leadership refers the asker on (a leader would
    /// propose Abort and answer Busy: the sharded simulator drives that),
    /// one that applied a decision answers it; the planted bug answers
    /// Abort with nothing logged.
    #[test]
    fn serve_resolve_answers_only_what_the_log_holds() {
        use crate::replica::ReplicaConfig;
        use crate::rng::Rng;
        let mut rng = Rng::new(1);
        let opts = KvOptions {
            shards: 2,
            ..KvOptions::default()
        };
        let txn = TxnId { client: 9, seq: 4 };
        let mut replica = |sm: ShardKv| {
            Replica::new(
                ReplicaConfig::new(0, 3),
                crate::paxos::Durable::default(),
                sm,
                &mut rng,
            )
        };
        let mut r = replica(ShardKv::new(1, opts));
        assert!(!r.is_leader());
        assert!(matches!(
            serve_resolve(&mut r, txn),
            ClientReply::NotLeader { .. }
        ));
        let mut decided = ShardKv::new(1, opts);
        decided.apply(0, &GroupCommand::TxnPresumeAbort { txn }.encode());
        let mut r = replica(decided);
        let abort = ClientReply::Ok(Bytes::from_static(&[0]));
        assert_eq!(serve_resolve(&mut r, txn), abort);
        let mut buggy = ShardKv::new(1, opts);
        buggy.bugs.resolve_unlogged = true;
        let mut r = replica(buggy);
        assert_eq!(serve_resolve(&mut r, txn), abort);
        assert_eq!(r.state().store().decision(txn), None, "nothing logged");
    }
}
