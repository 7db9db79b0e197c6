//! The primary/backup engine driven by hand: replicas over `ShardKv`, the
//! master's view service (`Master::execute`), messages delivered at once.

use synod_wire::{
    ClientReply, ClientRequest, GroupInfo, MasterOp, MasterRequest, Message, Op, ReplicationMode,
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
        hold_snapshots: false,
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
    let mut g = new_group(2);
    let small = |c: &mut PbConfig| {
        c.snapshot_log_entries = 4;
        c.snapshot_step_bytes = 16;
    };
    for i in 0..2 {
        g.nodes[i] = Some(start_with(i as ReplicaId, 2, PbDurable::default(), small));
    }
    g.hold_snapshots = true;
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
