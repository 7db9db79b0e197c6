//! The primary/backup engine driven by hand: replicas over `ShardKv`, the
//! master's view service (`Master::execute`), messages delivered at once.

use synod_wire::{
    ClientReply, ClientRequest, GroupInfo, MasterOp, MasterRequest, Message, Op, PbViewReply,
    ReplicationMode, View,
};

use super::*;
use crate::kv::KvOptions;
use crate::master::{Answer, Master, MasterOptions};
use crate::shardkv::ShardKv;

struct Group {
    nodes: Vec<Option<PbReplica<ShardKv>>>,
    disks: Vec<PbDurable>,
    master: Master,
    /// Links cut: `cut[a]` drops everything to and from replica `a`.
    cut: Vec<bool>,
    replies: Vec<(ReplyTo, Message)>,
    /// Hold every state-transfer chunk in `held_transfers` instead of delivering it,
    /// for a test to deliver them as it likes.
    hold_transfers: bool,
    held_transfers: Vec<(ReplicaId, Transfer)>,
    /// Hold local snapshot writes here instead of landing them at once.
    hold_snapshots: bool,
    held: Vec<(usize, SnapshotWrite)>,
}

fn new_group(n: u32) -> Group {
    let mut master = Master::new(MasterOptions { shards: 1 });
    let mut g = GroupInfo::new(1, (0..n).map(|i| i.to_string()).collect());
    g.mode = ReplicationMode::PrimaryBackup;
    master
        .apply(&MasterRequest {
            client_id: 1,
            seq: 1,
            ack_seq: 0,
            op: MasterOp::Join { groups: vec![g] },
        })
        .expect("join");
    let mut grp = Group {
        nodes: Vec::new(),
        disks: vec![PbDurable::default(); n as usize],
        master,
        cut: vec![false; n as usize],
        replies: Vec::new(),
        hold_transfers: false,
        hold_snapshots: false,
        held_transfers: Vec::new(),
        held: Vec::new(),
    };
    for i in 0..n {
        grp.nodes.push(Some(start(i, n, PbDurable::default())));
    }
    grp
}

fn start(id: ReplicaId, n: u32, disk: PbDurable) -> PbReplica<ShardKv> {
    start_with(id, n, disk, |_| {})
}

/// A group of `n` fresh replicas configured by `edit`, holding their
/// snapshot writes (`Group::held`) until a test lands them.
fn new_group_holding_snapshots(n: u32, edit: impl Fn(&mut PbConfig) + Copy) -> Group {
    let mut g = new_group(n);
    for i in 0..n {
        g.nodes[i as usize] = Some(start_with(i, n, PbDurable::default(), edit));
    }
    g.hold_snapshots = true;
    g
}

fn start_with(
    id: ReplicaId,
    n: u32,
    disk: PbDurable,
    edit: impl Fn(&mut PbConfig),
) -> PbReplica<ShardKv> {
    let sm = ShardKv::owning_every_shard(1, KvOptions::default());
    let mut cfg = PbConfig::new(id, n);
    edit(&mut cfg);
    PbReplica::new(cfg, disk, sm)
}

impl Group {
    /// Flush, persist and deliver until nothing moves.
    fn settle(&mut self) {
        for _ in 0..200 {
            let mut moved = false;
            let mut mail: Vec<(ReplicaId, PbMsg)> = Vec::new();
            let mut pings: Vec<(ReplicaId, u64)> = Vec::new();
            for i in 0..self.nodes.len() {
                let Some(r) = self.nodes[i].as_mut() else {
                    continue;
                };
                r.flush();
                let ready = r.ready();
                if ready.is_empty() {
                    continue;
                }
                moved = true;
                let mut ready = ready;
                if !self.cut[i] {
                    mail.append(&mut ready.before_sync);
                }
                for rec in &ready.records {
                    self.disks[i].apply(rec);
                }
                let out = r.advance(ready, Synced::after_sync());
                if let Some(w) = out.snapshot_write {
                    if self.hold_snapshots {
                        self.held.push((i, w));
                    } else {
                        self.disks[i].apply(&w.record());
                        r.snapshot_durable(w.index);
                    }
                }
                if !self.cut[i] {
                    mail.extend(out.messages);
                    if let Some(v) = out.ping {
                        pings.push((i as ReplicaId, v));
                    }
                }
                self.replies.extend(out.replies);
            }
            for (from, view) in pings {
                let req = MasterRequest {
                    client_id: 2,
                    seq: 1,
                    ack_seq: 0,
                    op: MasterOp::PbPing {
                        gid: 1,
                        replica: from,
                        view,
                    },
                };
                let Ok(Answer::View(v)) = self.master.execute(&req) else {
                    panic!("ping refused")
                };
                if let Some(r) = self.nodes[from as usize].as_mut() {
                    r.on_view(&v);
                }
            }
            for (to, msg) in mail {
                if self.cut[to as usize] {
                    continue;
                }
                let msg = match msg {
                    PbMsg::Transfer(t) if self.hold_transfers => {
                        self.held_transfers.push((to, t));
                        continue;
                    }
                    m => m,
                };
                if let Some(r) = self.nodes[to as usize].as_mut() {
                    r.step(msg);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn tick(&mut self, n: usize) {
        for _ in 0..n {
            for r in self.nodes.iter_mut().flatten() {
                r.tick();
            }
            self.settle();
        }
    }

    fn primary(&self) -> usize {
        (0..self.nodes.len())
            .find(|i| self.nodes[*i].as_ref().is_some_and(|r| r.serving()))
            .expect("a serving primary")
    }

    fn request(&mut self, to: usize, tag: ReplyTo, seq: u64, op: Op) -> Option<Message> {
        let req = ClientRequest {
            client_id: 7,
            seq,
            ack_seq: seq - 1,
            op,
        };
        self.nodes[to].as_mut().expect("up").on_request(tag, &req);
        self.settle();
        let i = self.replies.iter().position(|(t, _)| *t == tag)?;
        Some(self.replies.remove(i).1)
    }
}

/// Land the held snapshot writes (their files are durable now).
impl Group {
    fn land_snapshots(&mut self) {
        for (i, w) in std::mem::take(&mut self.held) {
            self.disks[i].apply(&w.record());
            if let Some(r) = self.nodes[i].as_mut() {
                r.snapshot_durable(w.index);
            }
        }
    }
}

fn put(k: &str, v: &str) -> Op {
    Op::Put {
        key: Bytes::from(k.to_string()),
        value: Bytes::from(v.to_string()),
    }
}

fn get(k: &str) -> Op {
    Op::Get {
        key: Bytes::from(k.to_string()),
    }
}

#[test]
fn a_write_is_acknowledged_only_once_every_backup_holds_it_durably() {
    let mut g = new_group(3);
    g.tick(10);
    let p = g.primary();
    // Cut one backup off: the write is logged but not acknowledged.
    let b = (p + 1) % 3;
    g.cut[b] = true;
    assert_eq!(g.request(p, 1, 1, put("k", "v")), None);
    g.cut[b] = false;
    g.tick(30);
    let reply = g.replies.iter().find(|(t, _)| *t == 1).map(|r| r.1.clone());
    assert!(
        matches!(reply, Some(Message::Reply(ClientReply::Ok(_)))),
        "{reply:?}"
    );
    for d in &g.disks {
        assert!(
            d.entries
                .values()
                .any(|(_, batch)| !batch.commands.is_empty())
                || d.snapshot.is_some(),
            "every replica holds the write durably"
        );
    }
}

#[test]
fn a_dead_primary_is_replaced_and_no_acknowledged_write_is_lost() {
    let mut g = new_group(2);
    g.tick(10);
    let p = g.primary();
    assert!(matches!(
        g.request(p, 1, 1, put("k", "v1")),
        Some(Message::Reply(ClientReply::Ok(_)))
    ));
    g.nodes[p] = None;
    g.tick(40);
    let q = g.primary();
    assert_ne!(p, q);
    let read = g.request(q, 2, 2, get("k"));
    assert_eq!(
        read,
        Some(Message::Reply(ClientReply::Ok(Bytes::from("v1"))))
    );
}

#[test]
fn a_deposed_primary_answers_no_read_once_its_backup_moved_on() {
    let mut g = new_group(2);
    g.tick(10);
    let p = g.primary();
    let b = 1 - p;
    assert!(matches!(
        g.request(p, 1, 1, put("k", "v1")),
        Some(Message::Reply(ClientReply::Ok(_)))
    ));
    // The old primary loses the master (its pings stop) but still reaches
    // its backup; the master promotes the backup, which then refuses the
    // old primary's read round.
    let old = g.nodes[p].take();
    g.tick(40);
    assert_eq!(g.primary(), b);
    g.nodes[p] = old;
    g.cut[p] = false;
    let req = ClientRequest {
        client_id: 8,
        seq: 1,
        ack_seq: 0,
        op: get("k"),
    };
    g.nodes[p].as_mut().expect("up").on_request(9, &req);
    // It learns of the newer view from its backup's refusal of the read
    // round or from the master's answer to its ping; either way the read
    // must not be answered from its stale state.
    g.settle();
    let answer = g.replies.iter().find(|(t, _)| *t == 9).map(|r| r.1.clone());
    assert!(
        !matches!(answer, Some(Message::Reply(ClientReply::Ok(_)))),
        "a deposed primary served a read: {answer:?}"
    );
}

#[test]
fn a_restarted_replica_recovers_its_log_and_view_from_disk() {
    let mut g = new_group(2);
    g.tick(10);
    let p = g.primary();
    for s in 1..=5 {
        let r = g.request(p, s, s, put("k", &format!("v{s}")));
        assert!(
            matches!(r, Some(Message::Reply(ClientReply::Ok(_)))),
            "{r:?}"
        );
    }
    let b = 1 - p;
    let disk = g.disks[b].clone();
    let again = start(b as ReplicaId, 2, disk.clone());
    assert_eq!(again.highest_view(), disk.view);
    assert!(again.log_end() >= 5);
    assert_eq!(
        again.view(),
        None,
        "a restarted replica acts in no view until told"
    );
}

/// The runtime's byte caps (`batch_bytes_max`, `append_bytes_max`): an
/// entry closes at its byte cap (always taking one command), an Append
/// carries entries up to its cap (always one), and every write still
/// commits on every replica.
#[test]
fn byte_caps_split_entries_and_appends_and_writes_still_commit() {
    let mut g = new_group(2);
    for (i, node) in g.nodes.iter_mut().enumerate() {
        let mut cfg = PbConfig::new(i as ReplicaId, 2);
        cfg.batch_bytes_max = 120;
        cfg.append_bytes_max = 200;
        let sm = ShardKv::owning_every_shard(1, KvOptions::default());
        *node = Some(PbReplica::new(cfg, PbDurable::default(), sm));
    }
    g.tick(10);
    let p = g.primary();
    let value = "x".repeat(50);
    for s in 1..=12u64 {
        let req = ClientRequest {
            client_id: 7,
            seq: s,
            ack_seq: s - 1,
            op: put(&format!("k{s}"), &value),
        };
        g.nodes[p].as_mut().expect("up").on_request(s, &req);
    }
    // Appends leave with the turn's flush; look at them before delivery.
    let r = g.nodes[p].as_mut().expect("up");
    r.flush();
    let ready = r.ready();
    let entries: Vec<&Batch> = ready
        .records
        .iter()
        .filter_map(|rec| match rec {
            PbRecord::Entry { batch, .. } => Some(batch),
            _ => None,
        })
        .collect();
    assert!(entries.len() > 2, "12 writes of ~80 bytes in one entry");
    for b in &entries {
        let bytes: usize = b.commands.iter().map(|c| c.len()).sum();
        assert!(b.commands.len() == 1 || bytes <= 120, "{bytes} bytes");
    }
    for rec in &ready.records {
        g.disks[p].apply(rec);
    }
    let mut ready = ready;
    let early = std::mem::take(&mut ready.before_sync);
    let out = g.nodes[p]
        .as_mut()
        .expect("up")
        .advance(ready, Synced::after_sync());
    let appends: Vec<&Append> = early
        .iter()
        .chain(&out.messages)
        .filter_map(|(_, m)| match m {
            PbMsg::Append(a) => Some(a),
            _ => None,
        })
        .collect();
    assert!(!appends.is_empty());
    for a in &appends {
        let bytes: usize = a
            .entries
            .iter()
            .flat_map(|e| &e.1.commands)
            .map(|c| c.len())
            .sum();
        assert!(a.entries.len() <= 1 || bytes <= 200, "{bytes} bytes");
    }
    for (to, msg) in early.into_iter().chain(out.messages) {
        g.nodes[to as usize].as_mut().expect("up").step(msg);
    }
    g.tick(30);
    for s in 1..=12u64 {
        let reply = g.replies.iter().find(|(t, _)| *t == s).map(|r| &r.1);
        assert!(
            matches!(reply, Some(Message::Reply(ClientReply::Ok(_)))),
            "write {s}: {reply:?}"
        );
    }
    let b = 1 - p;
    assert_eq!(
        g.nodes[b].as_ref().expect("up").applied(),
        g.nodes[p].as_ref().expect("up").applied()
    );
    // A driver's own command: taken by the serving primary only.
    let cmd = Bytes::from_static(b"\x00");
    assert!(g.nodes[p]
        .as_mut()
        .expect("up")
        .propose(cmd.clone())
        .is_ok());
    assert!(matches!(
        g.nodes[b].as_mut().expect("up").propose(cmd),
        Err(ProposeError::NotLeader(Some(_)))
    ));
}

/// A request longer than `command_bytes_max` is refused with an error and
/// never logged (it could not travel in an Append), as a Paxos group
/// refuses it; a shorter one still commits.
#[test]
fn an_oversize_request_is_refused_and_not_logged() {
    let mut g = new_group(2);
    for (i, node) in g.nodes.iter_mut().enumerate() {
        let mut cfg = PbConfig::new(i as ReplicaId, 2);
        cfg.command_bytes_max = 200;
        let sm = ShardKv::owning_every_shard(1, KvOptions::default());
        *node = Some(PbReplica::new(cfg, PbDurable::default(), sm));
    }
    g.tick(10);
    let p = g.primary();
    let reply = g.request(p, 1, 1, put("k", &"x".repeat(300)));
    assert!(
        matches!(&reply, Some(Message::Reply(ClientReply::Error { reason }))
            if reason.starts_with("value too large")),
        "{reply:?}"
    );
    assert!(g.disks.iter().all(|d| d
        .entries
        .values()
        .all(|(_, b)| b.commands.iter().all(|c| c.len() <= 200))));
    g.tick(5);
    let reply = g.request(p, 2, 2, put("k", "small"));
    g.tick(10);
    let reply = reply.or_else(|| {
        let i = g.replies.iter().position(|(t, _)| *t == 2)?;
        Some(g.replies.remove(i).1)
    });
    assert!(
        matches!(reply, Some(Message::Reply(ClientReply::Ok(_)))),
        "{reply:?}"
    );
}

/// A local snapshot is serialized a slice per round and written off the
/// loop: until the driver reports the file durable, the log keeps every
/// entry below it (a crash then recovers from the log alone); once durable
/// it is the log's start, and a backup that missed the compacted entries
/// is brought up by a transfer of it.
#[test]
fn a_snapshot_becomes_the_log_start_only_once_durable() {
    let small = |c: &mut PbConfig| {
        c.snapshot_log_entries = 4;
        c.snapshot_step_bytes = 16;
    };
    let mut g = new_group_holding_snapshots(2, small);
    g.tick(10);
    let p = g.primary();
    let b = 1 - p;
    // The backup dies; the primary goes on alone in a newer view.
    let backup_disk = g.disks[b].clone();
    g.nodes[b] = None;
    g.tick(40);
    assert_eq!(g.primary(), p);
    for s in 1..=12 {
        let r = g.request(p, s, s, put(&format!("k{s}"), "v"));
        assert!(
            matches!(r, Some(Message::Reply(ClientReply::Ok(_)))),
            "{r:?}"
        );
    }
    // Slices need rounds: ticks give an idle replica its next ones.
    g.tick(200);
    assert!(!g.held.is_empty(), "a snapshot was serialized");
    let primary = g.nodes[p].as_ref().expect("up");
    assert_eq!(primary.log_start(), 0, "not the log start before durable");
    assert!(
        g.disks[p].entries.contains_key(&0) && g.disks[p].snapshot.is_none(),
        "the disk image still needs the whole log"
    );
    let index = g.held[0].1.index;
    g.land_snapshots();
    let primary = g.nodes[p].as_ref().expect("up");
    assert_eq!(primary.log_start(), index, "durable: the new log start");
    assert_eq!(g.disks[p].snapshot.as_ref().map(|s| s.0), Some(index));

    // The backup restarts from its old disk, below the log start: a state
    // transfer brings it up, and then it alone serves every write.
    g.hold_snapshots = false;
    g.nodes[b] = Some(start_with(b as ReplicaId, 2, backup_disk, small));
    g.tick(60);
    assert!(
        g.nodes[b].as_ref().expect("up").stats().transfers_installed >= 1,
        "brought up by a state transfer"
    );
    g.nodes[p] = None;
    g.tick(60);
    assert_eq!(g.primary(), b);
    for s in 1..=12 {
        let r = g.request(b, 100 + s, 100 + s, get(&format!("k{s}")));
        assert_eq!(
            r,
            Some(Message::Reply(ClientReply::Ok(Bytes::from("v")))),
            "k{s}"
        );
    }
}

/// A group of 2 whose backup `b` missed so many writes while cut off that
/// the primary `p` compacted past all it holds: it can only come back by a
/// state transfer, of `chunk`-byte chunks (the state is a few KiB).
fn group_with_a_lagging_backup(chunk: usize) -> (Group, usize, usize) {
    let mut g = new_group(2);
    for (i, node) in g.nodes.iter_mut().enumerate() {
        let mut cfg = PbConfig::new(i as ReplicaId, 2);
        cfg.snapshot_log_entries = 4;
        cfg.transfer_chunk_bytes = chunk;
        let sm = ShardKv::owning_every_shard(1, KvOptions::default());
        *node = Some(PbReplica::new(cfg, PbDurable::default(), sm));
    }
    g.tick(10);
    let p = g.primary();
    let b = 1 - p;
    let ok = |r: Option<Message>| matches!(r, Some(Message::Reply(ClientReply::Ok(_))));
    assert!(ok(g.request(p, 1, 1, put("k0", "v0"))));
    // The backup is cut off; the view service drops it and the primary
    // goes on alone.
    g.cut[b] = true;
    g.tick(40);
    assert_eq!(g.primary(), p);
    for s in 2..=40u64 {
        let r = g.request(
            p,
            s,
            s,
            put(&format!("key{s}"), &format!("value-{s}-{}", "x".repeat(40))),
        );
        assert!(ok(r), "write {s}");
    }
    // Entries applied above the last snapshot (a compaction to come).
    let mut s = 41;
    while node(&g, p).applied() == node(&g, p).log_start() {
        assert!(s < 50, "every write compacted at once");
        assert!(ok(g.request(p, s, s, put("extra", "1"))));
        s += 1;
    }
    let (pr, br) = (node(&g, p), node(&g, b));
    assert!(pr.log_start() > br.log_end(), "compacted past the backup");
    assert!(pr.snapshot.len() > 30 * chunk, "a state many chunks long");
    (g, p, b)
}

fn node(g: &Group, i: usize) -> &PbReplica<ShardKv> {
    g.nodes[i].as_ref().expect("up")
}

fn node_mut(g: &mut Group, i: usize) -> &mut PbReplica<ShardKv> {
    g.nodes[i].as_mut().expect("up")
}

/// Issue 12's "a new backup gets a state transfer (chunked, like snapshot
/// catch-up) before it counts": a state of many chunks arrives, is
/// installed once, and the backup then takes (and acknowledges) appends.
#[test]
fn a_state_many_chunks_long_is_transferred_and_the_backup_then_takes_appends() {
    let (mut g, p, b) = group_with_a_lagging_backup(16);
    g.cut[b] = false;
    for _ in 0..200 {
        g.tick(1);
        if node(&g, b).stats().transfers_installed > 0 && g.nodes[p].as_ref().unwrap().serving() {
            break;
        }
    }
    g.tick(20);
    let (pr, br) = (node(&g, p), node(&g, b));
    assert_eq!(br.stats().transfers_installed, 1, "installed once");
    let total = pr.snapshot.len() as u64;
    assert!(
        pr.stats().transfer_chunks_sent >= total / 16,
        "sent in chunks: {} for {total} bytes",
        pr.stats().transfer_chunks_sent
    );
    assert!(g.disks[b]
        .snapshot
        .as_ref()
        .is_some_and(|(i, _, _)| *i >= pr.log_start()));
    // Back in the view: a write now needs (and gets) its acknowledgement.
    assert_eq!(g.primary(), p);
    let reply = g.request(p, 100, 100, put("after", "transfer"));
    let reply = reply.or_else(|| {
        g.tick(10);
        let i = g.replies.iter().position(|(t, _)| *t == 100)?;
        Some(g.replies.remove(i).1)
    });
    assert!(
        matches!(reply, Some(Message::Reply(ClientReply::Ok(_)))),
        "{reply:?}"
    );
    g.tick(5);
    let (pr, br) = (node(&g, p), node(&g, b));
    assert_eq!(br.applied(), pr.applied());
    assert_eq!(br.state().store().snapshot(), pr.state().store().snapshot());
    assert!(br.receiving.is_none() && pr.sending.is_empty());
}

/// Chunks delivered twice and stale chunks replayed out of order: each is
/// ignored or answered once, and only the answer to the chunk in flight
/// sends another, so the primary sends one chunk per step however many
/// copies arrive (like the Paxos duplicated-chunk regression).
#[test]
fn duplicated_and_reordered_chunks_do_not_multiply_the_transfer() {
    let (mut g, p, b) = group_with_a_lagging_backup(16);
    g.hold_transfers = true;
    g.cut[b] = false;
    let mut seen: Vec<Transfer> = Vec::new();
    let mut rounds = 0;
    while node(&g, b).stats().transfers_installed == 0 {
        rounds += 1;
        assert!(rounds < 2000, "the transfer never completed");
        let held = std::mem::take(&mut g.held_transfers);
        if held.is_empty() {
            g.tick(1);
            continue;
        }
        let before = node(&g, p).stats().transfer_chunks_sent;
        for (to, t) in held {
            assert_eq!(to as usize, b);
            // The chunk twice, then every earlier one, newest first.
            node_mut(&mut g, b).step(PbMsg::Transfer(t.clone()));
            node_mut(&mut g, b).step(PbMsg::Transfer(t.clone()));
            for old in seen.iter().rev().take(5) {
                node_mut(&mut g, b).step(PbMsg::Transfer(old.clone()));
            }
            seen.push(t);
        }
        g.settle();
        let sent = node(&g, p).stats().transfer_chunks_sent - before;
        assert!(sent <= 1, "one chunk in flight, but {sent} sent in a step");
    }
    // Every chunk sent was needed: no resend (no stall happened while
    // chunks flowed), each byte range sent once per snapshot.
    let pr = node(&g, p);
    let mut ranges: Vec<(u64, u64)> = seen.iter().map(|t| (t.index, t.offset)).collect();
    let n = ranges.len();
    ranges.sort();
    ranges.dedup();
    assert_eq!(ranges.len(), n, "a chunk was sent twice");
    assert_eq!(pr.stats().transfer_chunks_sent, n as u64);
    assert_eq!(node(&g, b).stats().transfers_installed, 1);
}

/// The primary compacts mid-transfer: its old snapshot is gone, so the
/// transfer restarts from offset 0 of the new one, and the backup drops
/// its partial buffer of the old one and installs the new one.
#[test]
fn a_primary_compacting_mid_transfer_restarts_it_from_the_new_snapshot() {
    let (mut g, p, b) = group_with_a_lagging_backup(16);
    g.hold_transfers = true;
    g.cut[b] = false;
    // Deliver the first few chunks of the transfer.
    let mut delivered = 0;
    for _ in 0..200 {
        if delivered >= 3 {
            break;
        }
        let held = std::mem::take(&mut g.held_transfers);
        if held.is_empty() {
            g.tick(1);
        }
        for (_, t) in held {
            node_mut(&mut g, b).step(PbMsg::Transfer(t));
            delivered += 1;
        }
        g.settle();
    }
    let old_index = node(&g, p).log_start();
    let partial = node(&g, b).receiving.as_ref().expect("mid-transfer");
    assert_eq!(partial.index, old_index);
    assert!(!partial.buf.is_empty());
    // Writes were applied above the last snapshot; the primary compacts
    // them now (the rule forced by a lower threshold).
    assert!(node(&g, p).applied() > old_index);
    let pr = node_mut(&mut g, p);
    pr.cfg.snapshot_log_entries = 0;
    let mut out = Output::default();
    pr.maybe_snapshot(&mut out);
    let w = out.snapshot_write.expect("a small state is taken at once");
    g.disks[p].apply(&w.record());
    node_mut(&mut g, p).snapshot_durable(w.index);
    let new_index = node(&g, p).log_start();
    assert!(new_index > old_index);
    // The chunk in flight (of the old snapshot) lands; its answer makes
    // the primary start over with the new snapshot, at offset 0.
    for _ in 0..200 {
        let held = std::mem::take(&mut g.held_transfers);
        if held.is_empty() {
            g.tick(1);
        }
        let mut restarted = false;
        for (_, t) in held {
            if t.index == new_index {
                assert_eq!(t.offset, 0, "a new snapshot is sent from its start");
                restarted = true;
            }
            node_mut(&mut g, b).step(PbMsg::Transfer(t));
        }
        g.settle();
        if restarted {
            break;
        }
    }
    let partial = node(&g, b).receiving.as_ref().expect("the new transfer");
    assert_eq!(
        partial.index, new_index,
        "the old partial buffer was dropped"
    );
    g.hold_transfers = false;
    for (_, t) in std::mem::take(&mut g.held_transfers) {
        node_mut(&mut g, b).step(PbMsg::Transfer(t));
    }
    for _ in 0..200 {
        g.tick(1);
        if node(&g, b).stats().transfers_installed > 0 {
            break;
        }
    }
    assert_eq!(node(&g, b).stats().transfers_installed, 1);
    assert!(node(&g, b).log_start() >= new_index);
    assert!(g.disks[b]
        .snapshot
        .as_ref()
        .is_some_and(|(i, _, _)| *i >= new_index));
}

/// A partial transfer is volatile and belongs to its view: a newer view
/// drops it, nothing of it ever reached the disk, and a chunk from the
/// middle of a transfer the backup holds no start of is answered with
/// "none held" (so the primary starts over) and not taken.
#[test]
fn a_partial_transfer_is_dropped_on_a_newer_view() {
    let (mut g, p, b) = group_with_a_lagging_backup(16);
    g.hold_transfers = true;
    g.cut[b] = false;
    let mut last = None;
    for _ in 0..200 {
        if node(&g, b)
            .receiving
            .as_ref()
            .is_some_and(|r| r.buf.len() >= 32)
        {
            break;
        }
        let held = std::mem::take(&mut g.held_transfers);
        if held.is_empty() {
            g.tick(1);
        }
        for (_, t) in held {
            node_mut(&mut g, b).step(PbMsg::Transfer(t.clone()));
            last = Some(t);
        }
        g.settle();
    }
    assert!(node(&g, b).receiving.is_some(), "mid-transfer");
    let disk_before = g.disks[b].snapshot.clone();
    let view = node(&g, b).view().expect("in a view");
    let newer = View {
        num: view.num + 1,
        ..view
    };
    node_mut(&mut g, b).on_view(&PbViewReply {
        gid: 1,
        view: newer,
        acked: false,
    });
    assert!(node(&g, b).receiving.is_none(), "dropped with the view");
    // The next chunk of the same transfer, now in the newer view: not
    // taken (the backup holds no start of it), answered "none held".
    let mut next = last.expect("a chunk was delivered");
    next.view = newer;
    next.offset += next.data.len() as u64;
    next.data = node(&g, p)
        .snapshot
        .slice(next.offset as usize..next.offset as usize + 1);
    let br = node_mut(&mut g, b);
    br.step(PbMsg::Transfer(next));
    assert!(br.receiving.is_none());
    let ready = br.ready();
    let acks: Vec<&Ack> = ready
        .messages
        .iter()
        .filter_map(|(_, m)| match m {
            PbMsg::Ack(a) => Some(a),
            _ => None,
        })
        .collect();
    assert!(
        acks.len() == 1 && !acks[0].ok && acks[0].received == 0,
        "{acks:?}"
    );
    assert!(ready
        .records
        .iter()
        .all(|r| !matches!(r, PbRecord::Snapshot { .. })));
    assert_eq!(
        g.disks[b].snapshot, disk_before,
        "a partial never reaches the disk"
    );
}

/// Issue 15: a primary/backup replica also snapshots on its log's bytes (a
/// few large values, far below the entry trigger), and with
/// `snapshot_log_percent` its entry trigger waits until the log weighs that
/// share of the last snapshot, as a Paxos replica's does.
#[test]
fn the_byte_and_weight_triggers_hold_for_primary_backup_too() {
    let snapshots_of = |g: &Group, p: usize| g.held.iter().filter(|(i, _)| *i == p).count();
    // The byte trigger alone: 2 KiB of commands.
    let mut g = new_group_holding_snapshots(2, |c| {
        c.snapshot_log_entries = 1 << 20;
        c.snapshot_log_bytes = 2048;
    });
    g.tick(10);
    let p = g.primary();
    let big = "v".repeat(600);
    let mut puts = 0;
    while snapshots_of(&g, p) == 0 && puts < 20 {
        puts += 1;
        g.request(p, puts, puts, put(&format!("k{puts}"), &big));
        g.tick(5);
    }
    // ~620 bytes a put: past 2,048 at the fourth.
    assert!((4..=5).contains(&puts), "byte trigger after {puts} puts");

    // Past 4 entries: taken at once on the entries alone (percent 0), never
    // while 32 small entries weigh less than 1,000x the (initial) snapshot.
    for (percent, want_any) in [(0, true), (100_000, false)] {
        let mut g = new_group_holding_snapshots(2, move |c| {
            c.snapshot_log_entries = 4;
            c.snapshot_log_percent = percent;
        });
        g.tick(10);
        let p = g.primary();
        for s in 1..=32 {
            g.request(p, s, s, put(&format!("k{s}"), "v"));
        }
        g.tick(20);
        assert_eq!(
            snapshots_of(&g, p) > 0,
            want_any,
            "percent {percent}: {} snapshots",
            snapshots_of(&g, p)
        );
    }
}
