//! Shared test fixtures: one sample frame per kind, proptest strategies for
//! every message variant, a seeded RNG, and helpers to build frames by hand.
//!
//! Each integration-test binary uses a different subset of this module.
#![allow(dead_code)] // every binary compiles all of it but uses only a part

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use synod_wire::*;

// ---------------------------------------------------------------------------
// Fixed samples (golden bytes, split tests)
// ---------------------------------------------------------------------------

pub const EXAMPLE_CLIENT: u64 = 0x0102_0304_0506_0708;

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn client(request_id: u64, message: Message) -> Frame {
    Frame {
        request_id,
        group: 1,
        message,
    }
}

/// Master traffic travels under header group 0.
fn master(request_id: u64, message: Message) -> Frame {
    Frame {
        request_id,
        group: 0,
        message,
    }
}

fn master_req(seq: u64, op: MasterOp) -> Frame {
    master(
        20 + seq,
        Message::Master(MasterRequest {
            client_id: EXAMPLE_CLIENT,
            seq,
            ack_seq: seq - 1,
            op,
        }),
    )
}

fn group(gid: u32, servers: &[&str]) -> GroupInfo {
    GroupInfo::new(gid, servers.iter().map(|s| s.to_string()).collect())
}

/// The configuration of the master samples: 4 shards over groups 1 and 2.
pub fn example_config() -> Config {
    Config {
        num: 2,
        shards: vec![1, 1, 2, 2],
        groups: vec![group(1, &["a:1", "b:1"]), group(2, &["c:2"])],
    }
}

fn paxos(m: PaxosMsg) -> Frame {
    Frame {
        request_id: 0,
        group: 1,
        message: Message::Paxos(m),
    }
}

/// Primary/backup peer messages travel under their group's id, like Paxos.
fn pb(m: PbMsg) -> Frame {
    Frame {
        request_id: 0,
        group: 3,
        message: Message::Pb(m),
    }
}

/// The view of the primary/backup samples: view 7, primary 1, backups 0 and 2.
fn pb_view() -> View {
    View {
        num: 7,
        primary: 1,
        backups: 0b101,
    }
}

/// The Put request of PROTOCOL.md's worked example.
pub fn example_put() -> Frame {
    client(
        7,
        Message::Request(ClientRequest {
            client_id: EXAMPLE_CLIENT,
            seq: 1,
            ack_seq: 0,
            op: Op::Put {
                key: b("k1"),
                value: b("hello"),
            },
        }),
    )
}

/// The Ok reply of PROTOCOL.md's worked example.
pub fn example_ok() -> Frame {
    client(7, Message::Reply(ClientReply::Ok(Bytes::new())))
}

/// One small, fixed frame of every kind, in kind order.
pub fn samples() -> Vec<Frame> {
    let ballot = Ballot::new(5, 1);
    vec![
        client(
            6,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 2,
                ack_seq: 1,
                op: Op::Get { key: b("k1") },
            }),
        ),
        example_put(),
        client(
            8,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 3,
                ack_seq: 2,
                op: Op::Append {
                    key: b("k1"),
                    value: b("!"),
                },
            }),
        ),
        client(
            14,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 4,
                ack_seq: 3,
                op: Op::Delete { key: b("k1") },
            }),
        ),
        client(
            15,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 5,
                ack_seq: 4,
                op: Op::Incr {
                    key: b("k1"),
                    delta: -2,
                },
            }),
        ),
        client(
            16,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 6,
                ack_seq: 5,
                op: Op::PutIf {
                    key: b("k1"),
                    value: b("v"),
                    cond: PutCond::NotExists,
                    get_old: true,
                },
            }),
        ),
        client(
            17,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 7,
                ack_seq: 6,
                op: Op::GetDel { key: b("k1") },
            }),
        ),
        client(
            18,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 8,
                ack_seq: 7,
                op: Op::Txn(Box::new(sample_txn())),
            }),
        ),
        client(
            40,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 9,
                ack_seq: 8,
                op: Op::PutEx {
                    key: b("k1"),
                    value: b("v"),
                    cond: PutCond::Exists,
                    get_old: false,
                    expiry: Expiry::In(1500),
                },
            }),
        ),
        client(
            41,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 10,
                ack_seq: 9,
                op: Op::Expire {
                    key: b("k1"),
                    expiry: Expiry::At(1_700_000_000_000),
                    cond: ExpireCond::Gt,
                },
            }),
        ),
        client(
            42,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 11,
                ack_seq: 10,
                op: Op::Ttl { key: b("k1") },
            }),
        ),
        client(
            43,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 12,
                ack_seq: 11,
                op: Op::GetEx {
                    key: b("k1"),
                    expiry: Expiry::Persist,
                },
            }),
        ),
        client(
            44,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 13,
                ack_seq: 12,
                op: Op::SetRange {
                    key: b("k1"),
                    offset: 6,
                    value: b("ab"),
                },
            }),
        ),
        client(
            45,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 14,
                ack_seq: 13,
                op: Op::IncrByFloat {
                    key: b("k1"),
                    delta: b("0.5"),
                },
            }),
        ),
        client(
            46,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 15,
                ack_seq: 14,
                op: Op::Scan {
                    key: b("k1"),
                    after: Some(b("a")),
                    count: 10,
                    pattern: None,
                },
            }),
        ),
        client(
            47,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 16,
                ack_seq: 15,
                op: Op::Count { key: b("k1") },
            }),
        ),
        client(
            48,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 17,
                ack_seq: 16,
                op: Op::Flush { key: b("k1") },
            }),
        ),
        client(
            0x32,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 18,
                ack_seq: 17,
                op: Op::TxnPrepare(Box::new(TxnPrepare {
                    txn: TxnId {
                        client: EXAMPLE_CLIENT,
                        seq: 9,
                    },
                    part: Txn {
                        compares: vec![],
                        success: vec![Op::Put {
                            key: b("a"),
                            value: b("1"),
                        }],
                        failure: vec![Op::Get { key: b("a") }],
                    },
                    coordinator: 2,
                })),
            }),
        ),
        client(
            0x33,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 19,
                ack_seq: 18,
                op: Op::TxnDecide(Box::new(TxnFinish {
                    txn: TxnId {
                        client: EXAMPLE_CLIENT,
                        seq: 9,
                    },
                    key: b("a"),
                    outcome: TxnOutcome::Success,
                })),
            }),
        ),
        client(
            0x34,
            Message::Request(ClientRequest {
                client_id: EXAMPLE_CLIENT,
                seq: 20,
                ack_seq: 19,
                op: Op::TxnFinish(Box::new(TxnFinish {
                    txn: TxnId {
                        client: EXAMPLE_CLIENT,
                        seq: 9,
                    },
                    key: b("b"),
                    outcome: TxnOutcome::Abort,
                })),
            }),
        ),
        example_ok(),
        client(9, Message::Reply(ClientReply::NoKey)),
        client(10, Message::Reply(ClientReply::WrongGroup)),
        client(
            11,
            Message::Reply(ClientReply::NotLeader { leader: Some(2) }),
        ),
        client(12, Message::Reply(ClientReply::Busy)),
        client(
            13,
            Message::Reply(ClientReply::Error {
                reason: "shard moving".to_string(),
            }),
        ),
        master(21, Message::Config(example_config())),
        client(15, Message::Reply(ClientReply::SessionExpired)),
        client(16, Message::Reply(ClientReply::WrongCore)),
        master(
            22,
            Message::PbView(PbViewReply {
                gid: 3,
                view: View {
                    num: 7,
                    primary: 1,
                    backups: 0b101,
                },
                acked: true,
            }),
        ),
        paxos(PaxosMsg::Prepare(Prepare {
            from: 1,
            ballot,
            from_slot: 10,
        })),
        paxos(PaxosMsg::Promise(Promise {
            from: 2,
            ballot,
            log_start: 3,
            chosen_upto: 8,
            entries: vec![
                LogEntry {
                    slot: 8,
                    ballot: Ballot::new(4, 0),
                    batch: Batch {
                        commands: vec![b("a"), Bytes::new()],
                    },
                },
                LogEntry {
                    slot: 9,
                    ballot: Ballot::CHOSEN,
                    batch: Batch::noop(),
                },
            ],
            more: true,
        })),
        paxos(PaxosMsg::Accept(Accept {
            from: 1,
            ballot,
            chosen_upto: 8,
            entries: vec![Proposal {
                slot: 9,
                batch: Batch {
                    commands: vec![b("xy")],
                },
            }],
        })),
        paxos(PaxosMsg::Accepted(Accepted {
            from: 2,
            ballot,
            chosen_upto: 9,
            read_round: 3,
            slots: vec![9, 10],
        })),
        paxos(PaxosMsg::Reject(Reject {
            from: 0,
            promised: Ballot::new(6, 0),
        })),
        paxos(PaxosMsg::Commit(Commit {
            from: 1,
            ballot,
            chosen_upto: 10,
        })),
        paxos(PaxosMsg::Heartbeat(Heartbeat {
            from: 1,
            ballot,
            chosen_upto: 10,
            read_round: 4,
        })),
        paxos(PaxosMsg::CatchupRequest(CatchupRequest {
            from: 2,
            from_slot: 4,
        })),
        paxos(PaxosMsg::CatchupResponse(CatchupResponse {
            from: 1,
            chosen_upto: 10,
            entries: vec![Proposal {
                slot: 4,
                batch: Batch {
                    commands: vec![b("c")],
                },
            }],
        })),
        paxos(PaxosMsg::SnapshotRequest(SnapshotRequest {
            from: 2,
            index: 100,
            offset: 0,
        })),
        paxos(PaxosMsg::SnapshotChunk(SnapshotChunk {
            from: 1,
            index: 100,
            total_len: 5,
            offset: 0,
            data: b("snap!"),
        })),
        paxos(PaxosMsg::PreVote(PreVote {
            from: 2,
            ballot: Ballot::new(6, 2),
            chosen_upto: 10,
        })),
        paxos(PaxosMsg::PreVoteReply(PreVoteReply {
            from: 1,
            ballot: Ballot::new(6, 2),
            granted: true,
            promised: ballot,
        })),
        pb(PbMsg::Append(PbAppend {
            view: pb_view(),
            start: 4,
            prev_tag: 6,
            entries: vec![
                (
                    7,
                    Batch {
                        commands: vec![b("a")],
                    },
                ),
                (7, Batch { commands: vec![] }),
            ],
            commit: 3,
            read_round: 2,
        })),
        pb(PbMsg::Ack(PbAck {
            view: 7,
            from: 2,
            ok: true,
            end: 6,
            read_round: 2,
            received: 5,
        })),
        pb(PbMsg::Transfer(PbTransfer {
            view: pb_view(),
            index: 9,
            last_tag: 6,
            total: 10,
            offset: 4,
            data: b("snap"),
        })),
        master_req(
            1,
            MasterOp::Join {
                groups: vec![group(1, &["a:1", "b:1"]), group(2, &["c:2"])],
            },
        ),
        master_req(2, MasterOp::Leave { gids: vec![2, 3] }),
        master_req(3, MasterOp::Move { shard: 5, gid: 1 }),
        master_req(4, MasterOp::Query { num: Some(2) }),
        master_req(
            5,
            MasterOp::Replace {
                gid: 1,
                old: "b:1".into(),
                new: "d:1".into(),
            },
        ),
        master_req(
            6,
            MasterOp::AddMember {
                gid: 2,
                addr: "e:2".into(),
            },
        ),
        master_req(
            7,
            MasterOp::RemoveMember {
                gid: 2,
                addr: "c:2".into(),
            },
        ),
        master_req(
            8,
            MasterOp::PbPing {
                gid: 3,
                replica: 1,
                view: 7,
            },
        ),
        Frame {
            request_id: 9,
            group: 1,
            message: Message::ShardPull(ShardPull {
                config_num: 3,
                shard: 7,
                cursor: 5,
            }),
        },
        Frame {
            request_id: 10,
            group: 1,
            message: Message::ShardDelete(ShardRef {
                config_num: 3,
                shard: 7,
            }),
        },
        Frame {
            request_id: 9,
            group: 2,
            message: Message::ShardData(ShardData {
                config_num: 3,
                shard: 7,
                cursor: 5,
                done: true,
                data: b("kv"),
            }),
        },
        Frame {
            request_id: 11,
            group: 1,
            message: Message::TxnResolve(TxnId {
                client: EXAMPLE_CLIENT,
                seq: 9,
            }),
        },
        Frame {
            request_id: 0,
            group: 1,
            message: Message::Auth(AuthMsg::Hello(AuthHello {
                role: AuthRole::Peer,
                gid: 1,
                replica: 2,
                nonce: seq_bytes(0x00),
            })),
        },
        Frame {
            request_id: 0,
            group: 1,
            message: Message::Auth(AuthMsg::Challenge(AuthChallenge {
                nonce: seq_bytes(0x20),
                mac: seq_bytes(0xa0),
            })),
        },
        Frame {
            request_id: 0,
            group: 1,
            message: Message::Auth(AuthMsg::Proof(AuthProof {
                mac: seq_bytes(0xc0),
            })),
        },
        Frame {
            request_id: 31,
            group: 0,
            message: Message::StatusRequest,
        },
        Frame {
            request_id: 31,
            group: 0,
            message: Message::Status(NodeStatus {
                node: "a:1".into(),
                groups: vec![GroupStatus {
                    gid: 1,
                    replica: 0,
                    members: vec!["a:1".into(), "b:1".into()],
                    leading: true,
                    leader: Some(0),
                    ballot: Ballot::new(3, 0),
                    commit: 10,
                    applied: 9,
                    log_slots: 4,
                    config_num: 2,
                    shards: vec![0, 2],
                }],
            }),
        },
    ]
}

/// 32 bytes counting up from `start` (a recognisable nonce or MAC).
pub fn seq_bytes(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

pub fn encode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    encode_frame(frame, &mut out);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len() & 1 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// A frame with correct checksums around an arbitrary (possibly invalid)
/// body, so tests reach the body decoder instead of stopping at a CRC.
pub fn seal(kind: u8, request_id: u64, group: u32, body: &[u8]) -> BytesMut {
    let header = Header {
        kind,
        flags: 0,
        body_len: body.len() as u32,
        request_id,
        group,
        body_crc: crc32c::crc32c(body),
    };
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(body);
    out
}

/// Every byte string a message carries that decoding must not copy.
pub fn payload_slices(msg: &Message) -> Vec<&Bytes> {
    fn batch(b: &Batch) -> impl Iterator<Item = &Bytes> {
        b.commands.iter()
    }
    match msg {
        Message::Request(r) => request_slices(r),
        Message::Reply(ClientReply::Ok(v)) => vec![v],
        Message::Reply(_) => vec![],
        Message::Paxos(PaxosMsg::Promise(m)) => {
            m.entries.iter().flat_map(|e| batch(&e.batch)).collect()
        }
        Message::Paxos(PaxosMsg::Accept(m)) => {
            m.entries.iter().flat_map(|e| batch(&e.batch)).collect()
        }
        Message::Paxos(PaxosMsg::CatchupResponse(m)) => {
            m.entries.iter().flat_map(|e| batch(&e.batch)).collect()
        }
        Message::Paxos(PaxosMsg::SnapshotChunk(m)) => vec![&m.data],
        Message::Paxos(_) => vec![],
        // Master messages carry only integers and (copied) strings.
        Message::Master(_) | Message::Config(_) | Message::PbView(_) => vec![],
        Message::Pb(PbMsg::Append(m)) => m.entries.iter().flat_map(|e| batch(&e.1)).collect(),
        Message::Pb(PbMsg::Transfer(m)) => vec![&m.data],
        Message::Pb(PbMsg::Ack(_)) => vec![],
        Message::ShardPull(_) | Message::ShardDelete(_) | Message::TxnResolve(_) => vec![],
        Message::ShardData(d) => vec![&d.data],
        // Fixed-size arrays, copied.
        Message::Auth(_) => vec![],
        // Integers and (copied) strings.
        Message::StatusRequest | Message::Status(_) => vec![],
    }
}

/// The transaction of the golden `Txn` frame (PROTOCOL.md 5.1): if `a`'s
/// version is 3 and `b` holds `x`, move 5 from `a` to `b` and read `a`;
/// otherwise read `a`.
pub fn sample_txn() -> Txn {
    Txn {
        compares: vec![
            Compare {
                key: b("a"),
                op: CompareOp::Eq,
                target: CompareTarget::Version(3),
            },
            Compare {
                key: b("b"),
                op: CompareOp::Eq,
                target: CompareTarget::Value(b("x")),
            },
        ],
        success: vec![
            Op::Incr {
                key: b("a"),
                delta: -5,
            },
            Op::Put {
                key: b("b"),
                value: b("y"),
            },
        ],
        failure: vec![Op::Get { key: b("a") }],
    }
}

pub fn request_slices(r: &ClientRequest) -> Vec<&Bytes> {
    match &r.op {
        Op::Txn(txn) => {
            let mut slices: Vec<&Bytes> = Vec::new();
            for c in &txn.compares {
                slices.push(&c.key);
                if let CompareTarget::Value(v) = &c.target {
                    slices.push(v);
                }
            }
            for op in txn.success.iter().chain(&txn.failure) {
                slices.push(op.key());
                if let Op::Put { value, .. } | Op::Append { value, .. } = op {
                    slices.push(value);
                }
            }
            slices
        }
        Op::TxnPrepare(p) => {
            let mut slices: Vec<&Bytes> = Vec::new();
            for c in &p.part.compares {
                slices.push(&c.key);
                if let CompareTarget::Value(v) = &c.target {
                    slices.push(v);
                }
            }
            for op in p.part.success.iter().chain(&p.part.failure) {
                slices.push(op.key());
                if let Op::Put { value, .. } | Op::Append { value, .. } = op {
                    slices.push(value);
                }
            }
            slices
        }
        Op::TxnDecide(f) | Op::TxnFinish(f) => vec![&f.key],
        Op::Get { key }
        | Op::Delete { key }
        | Op::GetDel { key }
        | Op::Incr { key, .. }
        | Op::Ttl { key }
        | Op::Expire { key, .. }
        | Op::GetEx { key, .. }
        | Op::Count { key }
        | Op::Flush { key } => {
            vec![key]
        }
        Op::Put { key, value }
        | Op::Append { key, value }
        | Op::PutIf { key, value, .. }
        | Op::PutEx { key, value, .. }
        | Op::SetRange { key, value, .. }
        | Op::IncrByFloat {
            key, delta: value, ..
        } => {
            vec![key, value]
        }
        Op::Scan {
            key,
            after,
            pattern,
            ..
        } => {
            let mut slices = vec![key];
            slices.extend(after.iter());
            slices.extend(pattern.iter());
            slices
        }
    }
}

/// Whether every non-empty slice points into `range` (i.e. was not copied).
pub fn all_within(slices: &[&Bytes], range: std::ops::Range<usize>) -> bool {
    slices.iter().all(|s| {
        let p = s.as_ptr() as usize;
        s.is_empty() || (range.contains(&p) && p + s.len() <= range.end)
    })
}

// ---------------------------------------------------------------------------
// Seeded RNG (SplitMix64): reproducible loops without pulling in `rand`
// ---------------------------------------------------------------------------

pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

pub fn arb_bytes(len_max: usize) -> BoxedStrategy<Bytes> {
    vec(any::<u8>(), 0..=len_max).prop_map(Bytes::from).boxed()
}

pub fn arb_ballot() -> BoxedStrategy<Ballot> {
    prop_oneof![
        Just(Ballot::ZERO),
        Just(Ballot::CHOSEN),
        (any::<u64>(), any::<u32>()).prop_map(|(r, n)| Ballot::new(r, n)),
    ]
    .boxed()
}

/// Mostly small batches, sometimes empty (a no-op), sometimes many commands.
pub fn arb_batch() -> BoxedStrategy<Batch> {
    prop_oneof![
        4 => vec(arb_bytes(24), 0..5),
        1 => Just(Vec::new()),
        1 => vec(arb_bytes(3), 100..300),
    ]
    .prop_map(|commands| Batch { commands })
    .boxed()
}

fn small_or_large<T: std::fmt::Debug + Clone + 'static>(
    item: BoxedStrategy<T>,
    large: std::ops::Range<usize>,
) -> BoxedStrategy<Vec<T>> {
    prop_oneof![
        4 => vec(item.clone(), 0..4),
        1 => Just(Vec::new()),
        1 => vec(item, large),
    ]
    .boxed()
}

/// Small batches only, for vectors of entries that may be long.
fn arb_small_batch() -> BoxedStrategy<Batch> {
    vec(arb_bytes(8), 0..3)
        .prop_map(|commands| Batch { commands })
        .boxed()
}

pub fn arb_proposals() -> BoxedStrategy<Vec<Proposal>> {
    prop_oneof![
        4 => vec((any::<u64>(), arb_batch()), 0..4),
        1 => vec((any::<u64>(), arb_small_batch()), 50..150),
    ]
    .prop_map(|v| {
        v.into_iter()
            .map(|(slot, batch)| Proposal { slot, batch })
            .collect()
    })
    .boxed()
}

pub fn arb_log_entries() -> BoxedStrategy<Vec<LogEntry>> {
    prop_oneof![
        4 => vec((any::<u64>(), arb_ballot(), arb_batch()), 0..4),
        1 => vec((any::<u64>(), arb_ballot(), arb_small_batch()), 50..150),
    ]
    .prop_map(|v| {
        v.into_iter()
            .map(|(slot, ballot, batch)| LogEntry {
                slot,
                ballot,
                batch,
            })
            .collect()
    })
    .boxed()
}

/// Values up to a few KiB, and occasionally empty.
fn arb_value() -> BoxedStrategy<Bytes> {
    prop_oneof![4 => arb_bytes(32), 1 => arb_bytes(4096)].boxed()
}

/// An expiry; `Keep` only when `keep` (only PutEx takes it).
fn arb_expiry(keep: bool) -> BoxedStrategy<Expiry> {
    let set = prop_oneof![
        any::<u64>().prop_map(Expiry::In),
        any::<u64>().prop_map(Expiry::At),
        Just(Expiry::Persist),
    ];
    if keep {
        prop_oneof![Just(Expiry::Keep), set].boxed()
    } else {
        set.boxed()
    }
}

pub fn arb_request_of_kind(kind: u8) -> BoxedStrategy<ClientRequest> {
    let op: BoxedStrategy<Op> = match kind {
        KIND_GET => arb_bytes(64).prop_map(|key| Op::Get { key }).boxed(),
        KIND_PUT => (arb_bytes(64), arb_value())
            .prop_map(|(key, value)| Op::Put { key, value })
            .boxed(),
        KIND_APPEND => (arb_bytes(64), arb_value())
            .prop_map(|(key, value)| Op::Append { key, value })
            .boxed(),
        KIND_DELETE => arb_bytes(64).prop_map(|key| Op::Delete { key }).boxed(),
        KIND_INCR => (arb_bytes(64), any::<i64>())
            .prop_map(|(key, delta)| Op::Incr { key, delta })
            .boxed(),
        KIND_PUT_IF => (arb_bytes(64), arb_value(), 0u8..3, any::<bool>())
            .prop_map(|(key, value, cond, get_old)| Op::PutIf {
                key,
                value,
                cond: PutCond::from_code(cond).expect("0..3 are conditions"),
                get_old,
            })
            .boxed(),
        KIND_GET_DEL => arb_bytes(64).prop_map(|key| Op::GetDel { key }).boxed(),
        KIND_TXN => arb_txn().prop_map(|t| Op::Txn(Box::new(t))).boxed(),
        KIND_PUT_EX => (
            arb_bytes(64),
            arb_value(),
            0u8..3,
            any::<bool>(),
            arb_expiry(true),
        )
            .prop_map(|(key, value, cond, get_old, expiry)| Op::PutEx {
                key,
                value,
                cond: PutCond::from_code(cond).expect("0..3 are conditions"),
                get_old,
                expiry,
            })
            .boxed(),
        KIND_EXPIRE => (arb_bytes(64), arb_expiry(false), 0u8..5)
            .prop_map(|(key, expiry, cond)| Op::Expire {
                key,
                expiry,
                cond: ExpireCond::from_code(cond).expect("0..5 are conditions"),
            })
            .boxed(),
        KIND_TTL => arb_bytes(64).prop_map(|key| Op::Ttl { key }).boxed(),
        KIND_GET_EX => (arb_bytes(64), arb_expiry(false))
            .prop_map(|(key, expiry)| Op::GetEx { key, expiry })
            .boxed(),
        KIND_SET_RANGE => (arb_bytes(64), any::<u64>(), arb_value())
            .prop_map(|(key, offset, value)| Op::SetRange { key, offset, value })
            .boxed(),
        KIND_INCR_BY_FLOAT => (arb_bytes(64), arb_bytes(24))
            .prop_map(|(key, delta)| Op::IncrByFloat { key, delta })
            .boxed(),
        KIND_SCAN => (
            arb_bytes(64),
            proptest::option::of(arb_bytes(64)),
            1..=SCAN_COUNT_MAX,
            proptest::option::of(arb_bytes(16)),
        )
            .prop_map(|(key, after, count, pattern)| Op::Scan {
                key,
                after,
                count,
                pattern,
            })
            .boxed(),
        KIND_COUNT => arb_bytes(64).prop_map(|key| Op::Count { key }).boxed(),
        KIND_FLUSH => arb_bytes(64).prop_map(|key| Op::Flush { key }).boxed(),
        KIND_TXN_PREPARE => (any::<u64>(), any::<u64>(), arb_txn(), any::<u32>())
            .prop_map(|(client, seq, part, coordinator)| {
                Op::TxnPrepare(Box::new(TxnPrepare {
                    txn: TxnId { client, seq },
                    part,
                    coordinator,
                }))
            })
            .boxed(),
        KIND_TXN_DECIDE | KIND_TXN_FINISH => (any::<u64>(), any::<u64>(), arb_bytes(64), 0u8..3)
            .prop_map(move |(client, seq, key, outcome)| {
                let f = Box::new(TxnFinish {
                    txn: TxnId { client, seq },
                    key,
                    outcome: TxnOutcome::from_code(outcome).expect("0..3 are outcomes"),
                });
                if kind == KIND_TXN_DECIDE {
                    Op::TxnDecide(f)
                } else {
                    Op::TxnFinish(f)
                }
            })
            .boxed(),
        _ => unreachable!("not a request kind"),
    };
    (any::<u64>(), any::<u64>(), any::<u64>(), op)
        .prop_map(|(client_id, seq, ack_seq, op)| ClientRequest {
            client_id,
            seq,
            ack_seq,
            op,
        })
        .boxed()
}

fn arb_txn_op() -> BoxedStrategy<Op> {
    prop_oneof![
        arb_bytes(16).prop_map(|key| Op::Get { key }),
        (arb_bytes(16), arb_bytes(32)).prop_map(|(key, value)| Op::Put { key, value }),
        (arb_bytes(16), arb_bytes(32)).prop_map(|(key, value)| Op::Append { key, value }),
        arb_bytes(16).prop_map(|key| Op::Delete { key }),
        (arb_bytes(16), any::<i64>()).prop_map(|(key, delta)| Op::Incr { key, delta }),
    ]
    .boxed()
}

fn arb_compare() -> BoxedStrategy<Compare> {
    (
        arb_bytes(16),
        0u8..4,
        prop_oneof![
            arb_bytes(32).prop_map(CompareTarget::Value),
            any::<u64>().prop_map(CompareTarget::Version),
        ],
    )
        .prop_map(|(key, op, target)| Compare {
            key,
            op: CompareOp::from_code(op).expect("0..4 are compare ops"),
            target,
        })
        .boxed()
}

pub fn arb_txn() -> BoxedStrategy<Txn> {
    (
        prop::collection::vec(arb_compare(), 0..4),
        prop::collection::vec(arb_txn_op(), 0..4),
        prop::collection::vec(arb_txn_op(), 0..4),
    )
        .prop_map(|(compares, success, failure)| Txn {
            compares,
            success,
            failure,
        })
        .boxed()
}

pub fn arb_request() -> BoxedStrategy<ClientRequest> {
    prop_oneof![
        arb_request_of_kind(KIND_GET),
        arb_request_of_kind(KIND_PUT),
        arb_request_of_kind(KIND_APPEND),
        arb_request_of_kind(KIND_DELETE),
        arb_request_of_kind(KIND_INCR),
        arb_request_of_kind(KIND_PUT_IF),
        arb_request_of_kind(KIND_GET_DEL),
        arb_request_of_kind(KIND_TXN),
        arb_request_of_kind(KIND_PUT_EX),
        arb_request_of_kind(KIND_EXPIRE),
        arb_request_of_kind(KIND_TTL),
        arb_request_of_kind(KIND_GET_EX),
        arb_request_of_kind(KIND_SET_RANGE),
        arb_request_of_kind(KIND_INCR_BY_FLOAT),
        arb_request_of_kind(KIND_SCAN),
        arb_request_of_kind(KIND_COUNT),
        arb_request_of_kind(KIND_FLUSH),
    ]
    .boxed()
}

/// Server addresses: usually `host:port`-like, sometimes any UTF-8 (the
/// codec does not care), sometimes empty.
fn arb_server() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9.]{1,12}:[0-9]{1,5}",
        1 => ".{0,16}",
        1 => Just(String::new()),
    ]
    .boxed()
}

/// A group, a third of them with membership masks (any bits of the
/// listed ids, at least one set: the codec's canonical form).
pub fn arb_group_info() -> BoxedStrategy<GroupInfo> {
    (
        any::<u32>(),
        small_or_large(arb_server(), 20..60),
        any::<(u64, u64)>(),
        0..3u8,
        any::<bool>(),
    )
        .prop_map(|(gid, servers, (added, removed), masks, pb)| {
            let mut g = GroupInfo::new(gid, servers);
            if masks == 0 {
                g.added = added & g.all_ids();
                g.removed = removed & g.all_ids();
            }
            if pb {
                g.mode = ReplicationMode::PrimaryBackup;
            }
            g
        })
        .boxed()
}

fn arb_groups() -> BoxedStrategy<Vec<GroupInfo>> {
    small_or_large(arb_group_info(), 20..60)
}

pub fn arb_config() -> BoxedStrategy<Config> {
    (
        any::<u64>(),
        small_or_large(any::<u32>().boxed(), 64..1100),
        arb_groups(),
    )
        .prop_map(|(num, shards, groups)| Config {
            num,
            shards,
            groups,
        })
        .boxed()
}

/// `Some(u64::MAX)` is excluded: it encodes as `None` by design, so it is
/// the one value that does not round-trip as itself (pinned separately).
pub fn arb_master_request_of_kind(kind: u8) -> BoxedStrategy<MasterRequest> {
    let op: BoxedStrategy<MasterOp> = match kind {
        KIND_MASTER_JOIN => arb_groups()
            .prop_map(|groups| MasterOp::Join { groups })
            .boxed(),
        KIND_MASTER_LEAVE => small_or_large(any::<u32>().boxed(), 100..600)
            .prop_map(|gids| MasterOp::Leave { gids })
            .boxed(),
        KIND_MASTER_MOVE => (any::<u32>(), any::<u32>())
            .prop_map(|(shard, gid)| MasterOp::Move { shard, gid })
            .boxed(),
        KIND_MASTER_QUERY => prop_oneof![Just(None), Just(Some(0)), (0..u64::MAX).prop_map(Some),]
            .prop_map(|num| MasterOp::Query { num })
            .boxed(),
        KIND_MASTER_REPLACE => (any::<u32>(), arb_server(), arb_server())
            .prop_map(|(gid, old, new)| MasterOp::Replace { gid, old, new })
            .boxed(),
        KIND_MASTER_ADD_MEMBER => (any::<u32>(), arb_server())
            .prop_map(|(gid, addr)| MasterOp::AddMember { gid, addr })
            .boxed(),
        KIND_MASTER_REMOVE_MEMBER => (any::<u32>(), arb_server())
            .prop_map(|(gid, addr)| MasterOp::RemoveMember { gid, addr })
            .boxed(),
        KIND_MASTER_PB_PING => (any::<u32>(), any::<u32>(), any::<u64>())
            .prop_map(|(gid, replica, view)| MasterOp::PbPing { gid, replica, view })
            .boxed(),
        _ => unreachable!("not a master request kind"),
    };
    (any::<u64>(), any::<u64>(), any::<u64>(), op)
        .prop_map(|(client_id, seq, ack_seq, op)| MasterRequest {
            client_id,
            seq,
            ack_seq,
            op,
        })
        .boxed()
}

pub fn arb_master_request() -> BoxedStrategy<MasterRequest> {
    prop_oneof![
        arb_master_request_of_kind(KIND_MASTER_JOIN),
        arb_master_request_of_kind(KIND_MASTER_LEAVE),
        arb_master_request_of_kind(KIND_MASTER_MOVE),
        arb_master_request_of_kind(KIND_MASTER_QUERY),
        arb_master_request_of_kind(KIND_MASTER_REPLACE),
        arb_master_request_of_kind(KIND_MASTER_ADD_MEMBER),
        arb_master_request_of_kind(KIND_MASTER_REMOVE_MEMBER),
        arb_master_request_of_kind(KIND_MASTER_PB_PING),
    ]
    .boxed()
}

/// Arbitrary messages of exactly one kind.
pub fn arb_message_of_kind(kind: u8) -> BoxedStrategy<Message> {
    use PaxosMsg as P;
    let p = |s: BoxedStrategy<PaxosMsg>| s.prop_map(Message::Paxos).boxed();
    let r = |s: BoxedStrategy<ClientReply>| s.prop_map(Message::Reply).boxed();
    match kind {
        KIND_GET..=KIND_SCAN | KIND_COUNT..=KIND_TXN_FINISH => {
            arb_request_of_kind(kind).prop_map(Message::Request).boxed()
        }
        KIND_OK => r(arb_value().prop_map(ClientReply::Ok).boxed()),
        KIND_NO_KEY => r(Just(ClientReply::NoKey).boxed()),
        KIND_WRONG_GROUP => r(Just(ClientReply::WrongGroup).boxed()),
        KIND_NOT_LEADER => r(
            prop_oneof![Just(None), Just(Some(0)), (0..u32::MAX).prop_map(Some),]
                .prop_map(|leader| ClientReply::NotLeader { leader })
                .boxed(),
        ),
        KIND_BUSY => r(Just(ClientReply::Busy).boxed()),
        KIND_SESSION_EXPIRED => r(Just(ClientReply::SessionExpired).boxed()),
        KIND_WRONG_CORE => r(Just(ClientReply::WrongCore).boxed()),
        KIND_CONFIG => arb_config().prop_map(Message::Config).boxed(),
        KIND_SHARD_PULL => (any::<u64>(), any::<u32>(), any::<u64>())
            .prop_map(|(config_num, shard, cursor)| {
                Message::ShardPull(ShardPull {
                    config_num,
                    shard,
                    cursor,
                })
            })
            .boxed(),
        KIND_SHARD_DELETE => (any::<u64>(), any::<u32>())
            .prop_map(|(config_num, shard)| Message::ShardDelete(ShardRef { config_num, shard }))
            .boxed(),
        KIND_TXN_RESOLVE => (any::<u64>(), any::<u64>())
            .prop_map(|(client, seq)| Message::TxnResolve(TxnId { client, seq }))
            .boxed(),
        KIND_SHARD_DATA => (
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<bool>(),
            arb_value(),
        )
            .prop_map(|(config_num, shard, cursor, done, data)| {
                Message::ShardData(ShardData {
                    config_num,
                    shard,
                    cursor,
                    done,
                    data,
                })
            })
            .boxed(),
        KIND_AUTH_HELLO => (
            prop_oneof![
                Just(AuthRole::Peer),
                Just(AuthRole::Node),
                Just(AuthRole::Admin),
                Just(AuthRole::Client),
                Just(AuthRole::Link)
            ],
            any::<u32>(),
            any::<u32>(),
            any::<[u8; 32]>(),
        )
            .prop_map(|(role, gid, replica, nonce)| {
                Message::Auth(AuthMsg::Hello(AuthHello {
                    role,
                    gid,
                    replica,
                    nonce,
                }))
            })
            .boxed(),
        KIND_AUTH_CHALLENGE => (any::<[u8; 32]>(), any::<[u8; 32]>())
            .prop_map(|(nonce, mac)| {
                Message::Auth(AuthMsg::Challenge(AuthChallenge { nonce, mac }))
            })
            .boxed(),
        KIND_AUTH_PROOF => any::<[u8; 32]>()
            .prop_map(|mac| Message::Auth(AuthMsg::Proof(AuthProof { mac })))
            .boxed(),
        KIND_STATUS_REQUEST => Just(Message::StatusRequest).boxed(),
        KIND_STATUS => (
            "[a-z0-9.:]{0,12}",
            vec(
                (
                    (
                        any::<u32>(),
                        any::<u32>(),
                        vec("[a-z0-9.:]{0,12}", 0..4),
                        any::<bool>(),
                        prop_oneof![Just(None), (0..u32::MAX).prop_map(Some)],
                        arb_ballot(),
                    ),
                    (
                        any::<u64>(),
                        any::<u64>(),
                        any::<u64>(),
                        any::<u64>(),
                        vec(any::<u32>(), 0..8),
                    ),
                )
                    .prop_map(
                        |(
                            (gid, replica, members, leading, leader, ballot),
                            (commit, applied, log_slots, config_num, shards),
                        )| GroupStatus {
                            gid,
                            replica,
                            members,
                            leading,
                            leader,
                            ballot,
                            commit,
                            applied,
                            log_slots,
                            config_num,
                            shards,
                        },
                    ),
                0..4,
            ),
        )
            .prop_map(|(node, groups)| Message::Status(NodeStatus { node, groups }))
            .boxed(),
        KIND_PB_VIEW => (
            any::<u32>(),
            any::<u64>(),
            0..64u32,
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(|(gid, num, primary, backups, acked)| {
                Message::PbView(PbViewReply {
                    gid,
                    view: View {
                        num,
                        primary,
                        backups: backups & !(1u64 << primary),
                    },
                    acked,
                })
            })
            .boxed(),
        KIND_MASTER_JOIN..=KIND_MASTER_PB_PING => arb_master_request_of_kind(kind)
            .prop_map(Message::Master)
            .boxed(),
        KIND_ERROR => r(prop_oneof![".{0,40}", Just(String::new())]
            .prop_map(|reason| ClientReply::Error { reason })
            .boxed()),
        KIND_PREPARE => p((any::<u32>(), arb_ballot(), any::<u64>())
            .prop_map(|(from, ballot, from_slot)| {
                P::Prepare(Prepare {
                    from,
                    ballot,
                    from_slot,
                })
            })
            .boxed()),
        KIND_PROMISE => p((
            any::<u32>(),
            arb_ballot(),
            any::<u64>(),
            any::<u64>(),
            arb_log_entries(),
            any::<bool>(),
        )
            .prop_map(|(from, ballot, log_start, chosen_upto, entries, more)| {
                P::Promise(Promise {
                    from,
                    ballot,
                    log_start,
                    chosen_upto,
                    entries,
                    more,
                })
            })
            .boxed()),
        KIND_ACCEPT => p((any::<u32>(), arb_ballot(), any::<u64>(), arb_proposals())
            .prop_map(|(from, ballot, chosen_upto, entries)| {
                P::Accept(Accept {
                    from,
                    ballot,
                    chosen_upto,
                    entries,
                })
            })
            .boxed()),
        KIND_ACCEPTED => p((
            any::<u32>(),
            arb_ballot(),
            any::<u64>(),
            any::<u64>(),
            small_or_large(any::<u64>().boxed(), 500..2000),
        )
            .prop_map(|(from, ballot, chosen_upto, read_round, slots)| {
                P::Accepted(Accepted {
                    from,
                    ballot,
                    chosen_upto,
                    read_round,
                    slots,
                })
            })
            .boxed()),
        KIND_REJECT => p((any::<u32>(), arb_ballot())
            .prop_map(|(from, promised)| P::Reject(Reject { from, promised }))
            .boxed()),
        KIND_COMMIT => p((any::<u32>(), arb_ballot(), any::<u64>())
            .prop_map(|(from, ballot, chosen_upto)| {
                P::Commit(Commit {
                    from,
                    ballot,
                    chosen_upto,
                })
            })
            .boxed()),
        KIND_HEARTBEAT => p((any::<u32>(), arb_ballot(), any::<u64>(), any::<u64>())
            .prop_map(|(from, ballot, chosen_upto, read_round)| {
                P::Heartbeat(Heartbeat {
                    from,
                    ballot,
                    chosen_upto,
                    read_round,
                })
            })
            .boxed()),
        KIND_CATCHUP_REQUEST => p((any::<u32>(), any::<u64>())
            .prop_map(|(from, from_slot)| P::CatchupRequest(CatchupRequest { from, from_slot }))
            .boxed()),
        KIND_CATCHUP_RESPONSE => p((any::<u32>(), any::<u64>(), arb_proposals())
            .prop_map(|(from, chosen_upto, entries)| {
                P::CatchupResponse(CatchupResponse {
                    from,
                    chosen_upto,
                    entries,
                })
            })
            .boxed()),
        KIND_SNAPSHOT_REQUEST => p((any::<u32>(), any::<u64>(), any::<u64>())
            .prop_map(|(from, index, offset)| {
                P::SnapshotRequest(SnapshotRequest {
                    from,
                    index,
                    offset,
                })
            })
            .boxed()),
        KIND_SNAPSHOT_CHUNK => p((
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            prop_oneof![3 => arb_bytes(64), 1 => arb_bytes(20_000)],
        )
            .prop_map(|(from, index, total_len, offset, data)| {
                P::SnapshotChunk(SnapshotChunk {
                    from,
                    index,
                    total_len,
                    offset,
                    data,
                })
            })
            .boxed()),
        KIND_PRE_VOTE => p((any::<u32>(), arb_ballot(), any::<u64>())
            .prop_map(|(from, ballot, chosen_upto)| {
                P::PreVote(PreVote {
                    from,
                    ballot,
                    chosen_upto,
                })
            })
            .boxed()),
        KIND_PRE_VOTE_REPLY => p((any::<u32>(), arb_ballot(), any::<bool>(), arb_ballot())
            .prop_map(|(from, ballot, granted, promised)| {
                P::PreVoteReply(PreVoteReply {
                    from,
                    ballot,
                    granted,
                    promised,
                })
            })
            .boxed()),
        KIND_PB_APPEND => (
            arb_view(),
            any::<u64>(),
            any::<u64>(),
            vec((any::<u64>(), arb_batch()), 0..4),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(view, start, prev_tag, entries, commit, read_round)| {
                Message::Pb(PbMsg::Append(PbAppend {
                    view,
                    start,
                    prev_tag,
                    entries,
                    commit,
                    read_round,
                }))
            })
            .boxed(),
        KIND_PB_ACK => (
            any::<u64>(),
            0..64u32,
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(view, from, ok, end, read_round, received)| {
                Message::Pb(PbMsg::Ack(PbAck {
                    view,
                    from,
                    ok,
                    end,
                    read_round,
                    received,
                }))
            })
            .boxed(),
        KIND_PB_TRANSFER => (
            arb_view(),
            any::<u64>(),
            any::<u64>(),
            0..=PB_TRANSFER_BYTES_MAX,
            any::<u64>(),
            arb_bytes(64),
        )
            .prop_map(|(view, index, last_tag, total, offset, data)| {
                // A chunk within its total, as decoding requires.
                let total = total.max(data.len() as u64);
                let offset = offset % (total - data.len() as u64 + 1);
                Message::Pb(PbMsg::Transfer(PbTransfer {
                    view,
                    index,
                    last_tag,
                    total,
                    offset,
                    data,
                }))
            })
            .boxed(),
        _ => unreachable!("unknown kind {kind:#04x}"),
    }
}

/// A view the decoder accepts: primary below 64 and not a backup.
fn arb_view() -> BoxedStrategy<View> {
    (any::<u64>(), 0..64u32, any::<u64>())
        .prop_map(|(num, primary, backups)| View {
            num,
            primary,
            backups: backups & !(1u64 << primary),
        })
        .boxed()
}

/// Arbitrary messages of every kind, each kind equally likely.
pub fn arb_message() -> BoxedStrategy<Message> {
    Union::new(ALL_KINDS.iter().map(|&k| arb_message_of_kind(k))).boxed()
}

pub fn arb_frame_of(message: BoxedStrategy<Message>) -> BoxedStrategy<Frame> {
    (any::<u64>(), any::<u32>(), message)
        .prop_map(|(request_id, group, message)| Frame {
            request_id,
            group,
            message,
        })
        .boxed()
}

pub fn arb_frame() -> BoxedStrategy<Frame> {
    arb_frame_of(arb_message())
}
