//! Golden bytes: one pinned frame per kind (header and body), so any change
//! to a layout, a kind code or a checksum fails here, plus PROTOCOL.md's
//! worked example, checked against the document itself so it cannot drift.

mod common;

use bytes::BytesMut;
use common::*;
use synod_wire::*;

/// `(kind, header hex, body hex)` for `common::samples()`, in the same order.
/// These were produced by the codec and cross-checked against an independent
/// Python encoder; regenerate them only together with a version bump (or,
/// for a replica-to-replica kind, as PROTOCOL.md section 10 allows: the
/// Promise gained its `more` byte within version 1 for issue 8's paging).
/// Incr, PutIf and GetDel (0x05-0x07) were added within version 1 too: new
/// kinds, so an old server refuses them as unknown rather than misreading
/// them, and no existing layout changed. StatusRequest and Status
/// (0x60-0x61, operator tools, issue 13) likewise.
/// Txn (0x08, issue 10) likewise: a new kind, no existing layout changed.
/// PutEx, Expire, Ttl and GetEx (0x09-0x0C, key expiry, issue 11) likewise.
/// SetRange, IncrByFloat, Scan (0x0D-0x0F), Count and Flush (0x18-0x19)
/// likewise (issue 11's keyspace commands); their bodies were checked by
/// hand against PROTOCOL.md 5.1's layouts. TxnPrepare, TxnDecide and
/// TxnFinish (0x1A-0x1C, two-phase commit, issue 10) likewise, checked by
/// hand against PROTOCOL.md 5.1's two-phase commit layouts.
/// MasterReplace, MasterAddMember and MasterRemoveMember (0x34-0x36,
/// replica replacement, issue 13) likewise, checked by hand against
/// PROTOCOL.md 5.5; a `group_info` whose membership never changed encodes
/// as before (the Join and Config rows are unchanged), one that changed is
/// pinned in `config_with_membership_golden_bytes`. Presumed-abort
/// recovery (issue 10) appended the coordinator's `gid u32` to TxnPrepare
/// (a prepare without it, as logged before, still decodes: coordinator 0,
/// `txn_prepare_without_coordinator_still_decodes`) and added TxnResolve
/// (0x43, between groups like 0x40-0x42); both checked by hand against
/// PROTOCOL.md 5.1 and 5.6. MasterPbPing (0x37) and PbView (0x1E)
/// (primary/backup view service, issue 12) likewise: new kinds, checked by
/// hand against PROTOCOL.md 5.10; a Paxos-mode `group_info` encodes as
/// before, a primary/backup one is pinned in
/// `config_with_primary_backup_group_golden_bytes`. PbAppend, PbAck and
/// PbTransfer (0x2D-0x2F, between a primary/backup group's replicas, issue
/// 12) likewise: new kinds, no existing layout changed; cross-checked
/// against an independent Python encoder of PROTOCOL.md 5.11's layouts.
/// Chunked state transfer then changed two of them within version 1 (they
/// pass only between a group's servers, like 0x40-0x42): PbAck appended
/// `received u64`, PbTransfer gained `total u64` and `offset u64` before
/// `data`; both rows re-derived with the same Python encoder (which still
/// reproduces the old rows from the old layouts).
const GOLDEN: [(u8, &str, &str); 63] = [
    (KIND_GET, "53594e44010100001e000000060000000000000001000000e0c46c74290e978e", "080706050403020102000000000000000100000000000000020000006b31"),
    (KIND_PUT, "53594e44010200002700000007000000000000000100000087d2a475030a784b", "080706050403020101000000000000000000000000000000020000006b310500000068656c6c6f"),
    (KIND_APPEND, "53594e440103000023000000080000000000000001000000fbdc288eb53b660c", "080706050403020103000000000000000200000000000000020000006b310100000021"),
    (KIND_DELETE, "53594e44010400001e0000000e0000000000000001000000257ff211537b3753", "080706050403020104000000000000000300000000000000020000006b31"),
    (KIND_INCR, "53594e4401050000260000000f00000000000000010000004e4570537080fc97", "080706050403020105000000000000000400000000000000020000006b31feffffffffffffff"),
    (KIND_PUT_IF, "53594e44010600002500000010000000000000000100000028b5369160aa7fcb", "080706050403020106000000000000000500000000000000020000006b3101000000760201"),
    (KIND_GET_DEL, "53594e44010700001e000000110000000000000001000000563a3af40d2642c3", "080706050403020107000000000000000600000000000000020000006b31"),
    (KIND_TXN, "53594e44010800005e000000120000000000000001000000f936078d9f341394", "0807060504030201080000000000000007000000000000000200000001000000610001030000000000000001000000620000010000007802000000050100000061fbffffffffffffff020100000062010000007901000000010100000061"),
    (KIND_PUT_EX, "53594e44010900002e000000280000000000000001000000a7feca6afab7a627", "080706050403020109000000000000000800000000000000020000006b310100000076010001dc05000000000000"),
    (KIND_EXPIRE, "53594e44010a0000280000002900000000000000010000001ba71d51051210db", "08070605040302010a000000000000000900000000000000020000006b31020068e5cf8b01000003"),
    (KIND_TTL, "53594e44010b00001e0000002a00000000000000010000000e0ae5949be3f389", "08070605040302010b000000000000000a00000000000000020000006b31"),
    (KIND_GET_EX, "53594e44010c0000270000002b00000000000000010000000406fff33b7ab0ee", "08070605040302010c000000000000000b00000000000000020000006b31030000000000000000"),
    (KIND_SET_RANGE, "53594e44010d00002c0000002c0000000000000001000000136e231af4c5b135", "08070605040302010d000000000000000c00000000000000020000006b310600000000000000020000006162"),
    (KIND_INCR_BY_FLOAT, "53594e44010e0000250000002d000000000000000100000029f380c35a889e45", "08070605040302010e000000000000000d00000000000000020000006b3103000000302e35"),
    (KIND_SCAN, "53594e44010f00002d0000002e0000000000000001000000d978d46e3fc66291", "08070605040302010f000000000000000e00000000000000020000006b310101000000610a0000000000000000"),
    (KIND_COUNT, "53594e44011800001e0000002f00000000000000010000004a9159499c6ca39a", "080706050403020110000000000000000f00000000000000020000006b31"),
    (KIND_FLUSH, "53594e44011900001e0000003000000000000000010000005a1d7e4512ee2629", "080706050403020111000000000000001000000000000000020000006b31"),
    (KIND_TXN_PREPARE, "53594e44011a000049000000320000000000000001000000665da9300873f234", "08070605040302011200000000000000110000000000000008070605040302010900000000000000000000000100000002010000006101000000310100000001010000006102000000"),
    (KIND_TXN_DECIDE, "53594e44011b00002e0000003300000000000000010000009e8a2af738d2428f", "08070605040302011300000000000000120000000000000008070605040302010900000000000000010000006101"),
    (KIND_TXN_FINISH, "53594e44011c00002e0000003400000000000000010000001cf65febccebceb4", "08070605040302011400000000000000130000000000000008070605040302010900000000000000010000006200"),
    (KIND_OK, "53594e440110000004000000070000000000000001000000c74b6748f6187d3b", "00000000"),
    (KIND_NO_KEY, "53594e44011100000000000009000000000000000100000000000000b621fbf9", ""),
    (KIND_WRONG_GROUP, "53594e4401120000000000000a0000000000000001000000000000000d517774", ""),
    (KIND_NOT_LEADER, "53594e4401130000040000000b0000000000000001000000466800f73c719078", "02000000"),
    (KIND_BUSY, "53594e4401140000000000000c0000000000000001000000000000008ac6836a", ""),
    (KIND_ERROR, "53594e4401150000100000000d000000000000000100000027b1bbe9e0e40e6f", "0c0000007368617264206d6f76696e67"),
    (KIND_CONFIG, "53594e4401160000450000001500000000000000000000003838e221c811264d", "0200000000000000040000000100000001000000020000000200000002000000010000000200000003000000613a3103000000623a31020000000100000003000000633a32"),
    (KIND_SESSION_EXPIRED, "53594e4401170000000000000f00000000000000010000000000000031b60fe7", ""),
    (KIND_WRONG_CORE, "53594e44011d0000000000001000000000000000010000000000000012873ce6", ""),
    (KIND_PB_VIEW, "53594e44011e000019000000160000000000000000000000b93d93a44c5dc7a4", "03000000070000000000000001000000050000000000000001"),
    (KIND_PREPARE, "53594e4401200000180000000000000000000000010000008d2dca35554d69a4", "010000000500000000000000010000000a00000000000000"),
    (KIND_PROMISE, "53594e44012100005e000000000000000000000001000000fb32a0f09352e12e", "0200000005000000000000000100000003000000000000000800000000000000020000000800000000000000040000000000000000000000020000000100000061000000000900000000000000ffffffffffffffffffffffff0000000001"),
    (KIND_ACCEPT, "53594e44012200002e00000000000000000000000100000091d4ecdf6bb17ac8", "01000000050000000000000001000000080000000000000001000000090000000000000001000000020000007879"),
    (KIND_ACCEPTED, "53594e44012300003400000000000000000000000100000067a1a01980316db1", "02000000050000000000000001000000090000000000000003000000000000000200000009000000000000000a00000000000000"),
    (KIND_REJECT, "53594e4401240000100000000000000000000000010000004a6254e563bcf541", "00000000060000000000000000000000"),
    (KIND_COMMIT, "53594e4401250000180000000000000000000000010000008d2dca357c0b1903", "010000000500000000000000010000000a00000000000000"),
    (KIND_HEARTBEAT, "53594e4401260000200000000000000000000000010000009d9be3e82a525013", "010000000500000000000000010000000a000000000000000400000000000000"),
    (KIND_CATCHUP_REQUEST, "53594e44012700000c000000000000000000000001000000509f9e68fa69003a", "020000000400000000000000"),
    (KIND_CATCHUP_RESPONSE, "53594e440128000021000000000000000000000001000000802eab45c59bc55a", "010000000a00000000000000010000000400000000000000010000000100000063"),
    (KIND_SNAPSHOT_REQUEST, "53594e4401290000140000000000000000000000010000002de69260395c4731", "0200000064000000000000000000000000000000"),
    (KIND_SNAPSHOT_CHUNK, "53594e44012a000025000000000000000000000001000000146107af780d4bf8", "0100000064000000000000000500000000000000000000000000000005000000736e617021"),
    (KIND_PRE_VOTE, "53594e44012b0000180000000000000000000000010000007978a0f4f3fda0a1", "020000000600000000000000020000000a00000000000000"),
    (KIND_PRE_VOTE_REPLY, "53594e44012c00001d000000000000000000000001000000c00e77fe650b77ed", "0100000006000000000000000200000001050000000000000001000000"),
    (KIND_PB_APPEND, "53594e44012d000055000000000000000000000003000000a3ac57d6eb16aeb6", "07000000000000000100000005000000000000000400000000000000060000000000000002000000070000000000000001000000010000006107000000000000000000000003000000000000000200000000000000"),
    (KIND_PB_ACK, "53594e44012e000025000000000000000000000003000000f1f0a3495df74361", "07000000000000000200000001060000000000000002000000000000000500000000000000"),
    (KIND_PB_TRANSFER, "53594e44012f00003c00000000000000000000000300000035b6b2f117497066", "0700000000000000010000000500000000000000090000000000000006000000000000000a00000000000000040000000000000004000000736e6170"),
    (KIND_MASTER_JOIN, "53594e440130000041000000150000000000000000000000b3da42065e91c974", "08070605040302010100000000000000000000000000000002000000010000000200000003000000613a3103000000623a31020000000100000003000000633a32"),
    (KIND_MASTER_LEAVE, "53594e440131000024000000160000000000000000000000e037faf7dfb8ce48", "080706050403020102000000000000000100000000000000020000000200000003000000"),
    (KIND_MASTER_MOVE, "53594e44013200002000000017000000000000000000000008d5c0dc9b009c80", "0807060504030201030000000000000002000000000000000500000001000000"),
    (KIND_MASTER_QUERY, "53594e440133000020000000180000000000000000000000f3a10b20099f2021", "0807060504030201040000000000000003000000000000000200000000000000"),
    (KIND_MASTER_REPLACE, "53594e44013400002a000000190000000000000000000000db2092a2a599f568", "0807060504030201050000000000000004000000000000000100000003000000623a3103000000643a31"),
    (KIND_MASTER_ADD_MEMBER, "53594e4401350000230000001a0000000000000000000000f9cc23f34cbdc4ee", "0807060504030201060000000000000005000000000000000200000003000000653a32"),
    (KIND_MASTER_REMOVE_MEMBER, "53594e4401360000230000001b0000000000000000000000960b0db27e4c8911", "0807060504030201070000000000000006000000000000000200000003000000633a32"),
    (KIND_MASTER_PB_PING, "53594e4401370000280000001c00000000000000000000001e4bbdda57aa8264", "08070605040302010800000000000000070000000000000003000000010000000700000000000000"),
    (KIND_SHARD_PULL, "53594e440140000014000000090000000000000001000000239d751be109795e", "0300000000000000070000000500000000000000"),
    (KIND_SHARD_DELETE, "53594e44014100000c0000000a0000000000000001000000c771f26188d8f638", "030000000000000007000000"),
    (KIND_SHARD_DATA, "53594e44014200001b0000000900000000000000020000000c1af314b0280b5e", "030000000000000007000000050000000000000001020000006b76"),
    (KIND_TXN_RESOLVE, "53594e4401430000100000000b0000000000000001000000d37074e3dc326cff", "08070605040302010900000000000000"),
    (KIND_AUTH_HELLO, "53594e440150000029000000000000000000000001000000d96923f1f8eb5856", "010100000002000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
    (KIND_AUTH_CHALLENGE, "53594e440151000040000000000000000000000001000000d23018849b918aa1", "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"),
    (KIND_AUTH_PROOF, "53594e440152000020000000000000000000000001000000066d6b1e7dfe978b", "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"),
    (KIND_STATUS_REQUEST, "53594e4401600000000000001f000000000000000000000000000000a4fb092e", ""),
    (KIND_STATUS, "53594e4401610000620000001f0000000000000000000000b5e41445361612d0", "03000000613a310100000001000000000000000200000003000000613a3103000000623a3101000000000300000000000000000000000a00000000000000090000000000000004000000000000000200000000000000020000000000000002000000"),
];

#[test]
fn golden_frames_cover_every_kind() {
    let kinds: Vec<u8> = GOLDEN.iter().map(|g| g.0).collect();
    assert_eq!(kinds, ALL_KINDS);
}

#[test]
fn every_kind_encodes_to_its_golden_bytes() {
    for ((kind, header, body), frame) in GOLDEN.iter().zip(samples()) {
        assert_eq!(kind_of(&frame.message), *kind);
        let wire = encode(&frame);
        assert_eq!(
            hex(&wire[..HEADER_LEN]),
            *header,
            "header of kind {kind:#04x}"
        );
        assert_eq!(hex(&wire[HEADER_LEN..]), *body, "body of kind {kind:#04x}");
    }
}

#[test]
fn every_golden_frame_decodes_to_its_message() {
    for ((kind, header, body), frame) in GOLDEN.iter().zip(samples()) {
        let mut buf = BytesMut::from(&unhex(&format!("{header}{body}"))[..]);
        let got = Decoder::default().decode(&mut buf);
        assert_eq!(got, Ok(Some(frame)), "kind {kind:#04x}");
        assert!(buf.is_empty());
    }
}

#[test]
fn golden_extra_cases() {
    // Ok carrying a value, and NotLeader without a hint (u32::MAX).
    let ok = Frame {
        request_id: 6,
        group: 1,
        message: Message::Reply(ClientReply::Ok(b("hello"))),
    };
    let no_hint = Frame {
        request_id: 11,
        group: 1,
        message: Message::Reply(ClientReply::NotLeader { leader: None }),
    };
    assert_eq!(hex(&encode(&ok)[HEADER_LEN..]), "0500000068656c6c6f");
    assert_eq!(hex(&encode(&no_hint)[HEADER_LEN..]), "ffffffff");
    for f in [ok, no_hint] {
        assert_eq!(Decoder::default().decode(&mut encode(&f)), Ok(Some(f)));
    }
}

#[test]
fn command_is_kind_byte_then_request_body() {
    let Message::Request(req) = example_put().message else {
        unreachable!()
    };
    let cmd = encode_command(&req);
    assert_eq!(
        hex(&cmd),
        "02080706050403020101000000000000000000000000000000020000006b310500000068656c6c6f"
    );
    assert_eq!(decode_command(cmd), Ok(req));
}

/// Delete (kind 0x04) stored in the log: kind byte, then the Get-shaped
/// body. Cross-checked against an independent Python encoder.
#[test]
fn delete_command_is_kind_byte_then_get_shaped_body() {
    let req = ClientRequest {
        client_id: EXAMPLE_CLIENT,
        seq: 4,
        ack_seq: 3,
        op: Op::Delete { key: b("k1") },
    };
    let cmd = encode_command(&req);
    assert_eq!(
        hex(&cmd),
        "04080706050403020104000000000000000300000000000000020000006b31"
    );
    assert_eq!(decode_command(cmd), Ok(req));
}

#[test]
fn master_command_is_kind_byte_then_master_body() {
    for frame in samples() {
        let Message::Master(req) = frame.message else {
            continue;
        };
        let cmd = encode_master_command(&req);
        let mut body = BytesMut::new();
        encode_message_body(&Message::Master(req.clone()), &mut body);
        assert_eq!(cmd[0], kind_of(&Message::Master(req.clone())));
        assert_eq!(&cmd[1..], &body[..]);
        assert_eq!(decode_master_command(cmd), Ok(req));
    }
}

/// `None` travels as `u64::MAX`; `Some(u64::MAX)` (a number past any real
/// configuration, which means "latest" anyway) shares that encoding and
/// reads back as `None` instead of panicking the sender.
#[test]
fn query_latest_is_u64_max() {
    let query = |num| {
        Message::Master(MasterRequest {
            client_id: EXAMPLE_CLIENT,
            seq: 4,
            ack_seq: 3,
            op: MasterOp::Query { num },
        })
    };
    let body = |m: &Message| {
        let mut out = BytesMut::new();
        encode_message_body(m, &mut out);
        hex(&out)
    };
    let latest = "080706050403020104000000000000000300000000000000ffffffffffffffff";
    assert_eq!(body(&query(None)), latest);
    assert_eq!(body(&query(Some(u64::MAX))), latest);
    assert_eq!(
        decode_body(KIND_MASTER_QUERY, bytes::Bytes::from(unhex(latest))),
        Ok(query(None))
    );
    assert_eq!(LATEST_CONFIG, u64::MAX);
}

/// Formats bytes the way PROTOCOL.md's dumps do: 16 per line, lowercase,
/// space-separated.
fn dump_lines(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn protocol_md_worked_example_matches_the_codec() {
    let doc = include_str!("../PROTOCOL.md");
    let put = encode(&example_put());
    let ok = encode(&example_ok());
    assert_eq!(
        hex(&put),
        "53594e44010200002700000007000000000000000100000087d2a475030a784b\
         080706050403020101000000000000000000000000000000020000006b310500000068656c6c6f"
    );
    assert_eq!(
        hex(&ok),
        "53594e440110000004000000070000000000000001000000c74b6748f6187d3b00000000"
    );
    for (name, bytes) in [("put", &put), ("ok", &ok)] {
        let block: String = dump_lines(bytes).join("\n");
        assert!(
            doc.contains(&block),
            "PROTOCOL.md must contain the {name} dump:\n{block}"
        );
    }
    // The header and body CRCs quoted in the walkthrough tables.
    for crc in ["0x75a4d287", "0x4b780a03", "0x48674bc7", "0x3b7d18f6"] {
        assert!(doc.contains(crc), "PROTOCOL.md must quote CRC {crc}");
    }
}

#[test]
fn protocol_md_quotes_the_check_values() {
    let doc = include_str!("../PROTOCOL.md");
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    assert!(doc.contains("0xe3069283"));
    assert_eq!(fnv1a64(b"k1"), 0x08be_0f07_b562_24c1);
    assert!(doc.contains("0x08be0f07b56224c1"));
    assert_eq!(shard_of(b"k1", DEFAULT_SHARDS), 1);
    assert_eq!(shard_of(b"user:42", DEFAULT_SHARDS), 2);
    assert!(doc.contains("0x6c151ea4dcd221c2"));
}

/// PROTOCOL.md's annotated Join body (section 5.5) is the codec's bytes: the
/// two-hex-digit tokens of the block, in order, are the sample Join's body.
#[test]
fn protocol_md_join_example_matches_the_codec() {
    let doc = include_str!("../PROTOCOL.md");
    let start = doc
        .find("Example: a Join")
        .expect("PROTOCOL.md has the Join example");
    let block = doc[start..]
        .split("```")
        .nth(1)
        .expect("the Join example has a code block");
    let tokens: String = block
        .split_whitespace()
        .filter(|t| t.len() == 2 && t.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    let join = samples()
        .into_iter()
        .find(|f| kind_of(&f.message) == KIND_MASTER_JOIN)
        .expect("a Join sample");
    let wire = encode(&join);
    assert_eq!(tokens, hex(&wire[HEADER_LEN..]));
    assert!(doc.contains(&format!("{}-byte body", wire.len() - HEADER_LEN)));
}

/// The value of the `Ok` that answers a transaction (PROTOCOL.md 5.1),
/// checked against bytes written by hand from the document.
#[test]
fn txn_result_golden_bytes() {
    let result = TxnResult {
        succeeded: true,
        results: vec![
            TxnOpResult::Ok {
                value: bytes::Bytes::from_static(b"95"),
                version: 7,
            },
            TxnOpResult::NoKey,
            TxnOpResult::Error {
                reason: "no".into(),
            },
        ],
    };
    let golden = "01030000000002000000393507000000000000000102020000006e6f";
    let encoded = encode_txn_result(&result);
    assert_eq!(hex(&encoded), golden);
    assert_eq!(decode_txn_result(encoded), Ok(result));
    // Bad bytes are an error, never a panic.
    for len in 0..golden.len() / 2 {
        let cut = bytes::Bytes::copy_from_slice(&encoded_prefix(golden, len));
        assert!(decode_txn_result(cut).is_err(), "prefix of {len} bytes");
    }
    assert!(decode_txn_result(bytes::Bytes::from_static(&[2, 0, 0, 0, 0])).is_err());
}

fn encoded_prefix(hex_str: &str, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::from_str_radix(&hex_str[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The value of the `Ok` that answers a scan (PROTOCOL.md 5.1), checked
/// against bytes written by hand from the document; bad pages, and scans
/// with a count outside 1..=SCAN_COUNT_MAX or a bad flag, are refused.
#[test]
fn scan_page_golden_bytes_and_hostile_scans() {
    let page = ScanPage {
        keys: vec![
            bytes::Bytes::from_static(b"a"),
            bytes::Bytes::from_static(b"bc"),
        ],
        resume_after: Some(bytes::Bytes::from_static(b"bc")),
    };
    let golden = "000200000062630200000001000000610200000062 63".replace(' ', "");
    let encoded = encode_scan_page(&page);
    assert_eq!(hex(&encoded), golden);
    assert_eq!(decode_scan_page(encoded), Ok(page));
    let done = ScanPage::default();
    assert_eq!(hex(&encode_scan_page(&done)), "010000000000000000");
    for len in 0..golden.len() / 2 {
        let cut = bytes::Bytes::copy_from_slice(&encoded_prefix(&golden, len));
        assert!(decode_scan_page(cut).is_err(), "prefix of {len} bytes");
    }
    // Done with a resume key, a bad flag, a huge key count.
    for bad in [
        "0100000000610000000000",
        "020000000000000000",
        "0000000000ffffffff",
    ] {
        let bad = bytes::Bytes::copy_from_slice(&encoded_prefix(bad, bad.len() / 2));
        assert!(decode_scan_page(bad).is_err());
    }
    // A Scan body: key "k", after flag 1 "a", count, pattern flag 0.
    let body = |count: u32, after_flag: u8| {
        let mut v = vec![0u8; 24];
        v.extend_from_slice(&[1, 0, 0, 0, b'k', after_flag, 1, 0, 0, 0, b'a']);
        v.extend_from_slice(&count.to_le_bytes());
        v.extend_from_slice(&[0, 0, 0, 0, 0]);
        bytes::Bytes::from(v)
    };
    assert!(decode_body(KIND_SCAN, body(10, 1)).is_ok());
    assert!(decode_body(KIND_SCAN, body(0, 1)).is_err(), "count 0");
    assert!(
        decode_body(KIND_SCAN, body(SCAN_COUNT_MAX + 1, 1)).is_err(),
        "count too large"
    );
    assert!(decode_body(KIND_SCAN, body(10, 2)).is_err(), "bad flag");
    assert!(
        decode_body(KIND_SCAN, body(10, 0)).is_err(),
        "absent after with bytes"
    );
}

/// The vote answering a `TxnPrepare` (PROTOCOL.md 5.1, two-phase commit).
#[test]
fn txn_vote_golden_bytes() {
    let vote = TxnVote {
        yes: true,
        holds: false,
        success: vec![TxnOpResult::NoKey],
        failure: vec![TxnOpResult::Ok {
            value: b("7"),
            version: 3,
        }],
    };
    let encoded = encode_txn_vote(&vote);
    assert_eq!(
        hex(&encoded),
        "0100010000000101000000000100000037".to_string() + "0300000000000000"
    );
    assert_eq!(decode_txn_vote(encoded.clone()), Ok(vote));
    for len in 0..encoded.len() {
        assert!(
            decode_txn_vote(encoded.slice(..len)).is_err(),
            "prefix of {len} bytes"
        );
    }
    assert!(decode_txn_vote(bytes::Bytes::from_static(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0])).is_err());
}

/// A `TxnPrepare` logged before presumed-abort recovery ends after its
/// part: it still decodes, with coordinator 0 (unknown), and a trailer
/// shorter than a `u32`, or an explicit 0, is refused.
#[test]
fn txn_prepare_without_coordinator_still_decodes() {
    let prepare = samples()
        .into_iter()
        .find(|f| kind_of(&f.message) == KIND_TXN_PREPARE)
        .unwrap();
    let Message::Request(req) = &prepare.message else {
        unreachable!()
    };
    let cmd = encode_command(req);
    let old = cmd.slice(..cmd.len() - 4);
    let got = decode_command(old).expect("an old prepare decodes");
    let Op::TxnPrepare(p) = &got.op else {
        panic!("{got:?}")
    };
    assert_eq!(p.coordinator, 0);
    assert_eq!(decode_command(cmd.clone()).unwrap(), *req);
    assert!(decode_command(cmd.slice(..cmd.len() - 1)).is_err());
    // Unknown is written as no trailer, so an explicit 0 is refused: one
    // encoding per prepare (decode, then encode, gives the same bytes).
    assert_eq!(encode_command(&got), cmd.slice(..cmd.len() - 4));
    let mut zero = cmd.to_vec();
    let n = zero.len();
    zero[n - 4..].copy_from_slice(&[0; 4]);
    assert!(decode_command(bytes::Bytes::from(zero)).is_err());
}

/// PROTOCOL.md 5.6's `TxnResolve` frame is the codec's golden frame.
#[test]
fn protocol_md_txn_resolve_example_matches_the_codec() {
    let doc = include_str!("../PROTOCOL.md");
    let start = doc
        .find("asking about\ntransaction")
        .expect("PROTOCOL.md has the TxnResolve example");
    let block = doc[start..]
        .split("```")
        .nth(1)
        .expect("the TxnResolve example has a code block");
    let tokens: String = block
        .split_whitespace()
        .filter(|t| t != &"header" && t != &"body")
        .collect();
    let frame = samples()
        .into_iter()
        .find(|f| kind_of(&f.message) == KIND_TXN_RESOLVE)
        .expect("a TxnResolve sample");
    assert_eq!(tokens, hex(&encode(&frame)));
}

/// A configuration after `Replace 1 b:1 d:1`: group 1 lists `a:1 b:1 d:1`,
/// id 2 added, id 1 removed. The server count carries the top bit
/// (`03 00 00 80`) and the masks follow the servers (PROTOCOL.md 5.5).
#[test]
fn config_with_membership_golden_bytes() {
    let mut c = example_config();
    c.groups[0].servers.push("d:1".into());
    c.groups[0].added = 0b100;
    c.groups[0].removed = 0b010;
    let frame = Frame {
        request_id: 21,
        group: 0,
        message: Message::Config(c),
    };
    let body = "0200000000000000040000000100000001000000020000000200000002000000\
                010000000300008003000000613a3103000000623a3103000000643a3104000000\
                000000000200000000000000020000000100000003000000633a32";
    let wire = encode(&frame);
    assert_eq!(hex(&wire[HEADER_LEN..]), body);
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(Decoder::default().decode(&mut buf), Ok(Some(frame)));
}

/// A primary/backup group (issue 12) sets the server count's second bit
/// and a mode byte (1) follows its servers; the Paxos group beside it
/// encodes exactly as before.
#[test]
fn config_with_primary_backup_group_golden_bytes() {
    let mut c = example_config();
    c.groups[1].mode = ReplicationMode::PrimaryBackup;
    let frame = Frame {
        request_id: 21,
        group: 0,
        message: Message::Config(c),
    };
    let body = "0200000000000000040000000100000001000000020000000200000002000000\
                010000000200000003000000613a3103000000623a31\
                020000000100004003000000633a3201";
    let wire = encode(&frame);
    assert_eq!(hex(&wire[HEADER_LEN..]), body);
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(Decoder::default().decode(&mut buf), Ok(Some(frame)));
    // The mode flag is canonical: with a Paxos mode byte it is refused.
    let paxos_byte = format!("{}00", &body[..body.len() - 2]);
    assert_eq!(
        decode_body(KIND_CONFIG, bytes::Bytes::from(unhex(&paxos_byte))),
        Err(DecodeError::Invalid("mode flag with no other mode"))
    );
}

/// The membership flag is canonical: set with both masks zero, or with a
/// mask naming an id the group does not list, the body is refused.
#[test]
fn config_membership_flag_must_be_canonical() {
    let good = "0200000000000000040000000100000001000000020000000200000002000000\
                010000000300008003000000613a3103000000623a3103000000643a3104000000\
                000000000200000000000000020000000100000003000000633a32";
    assert!(decode_body(KIND_CONFIG, bytes::Bytes::from(unhex(good))).is_ok());
    let no_change = good.replacen(
        "0400000000000000020000000000000002",
        "0000000000000000000000000000000002",
        1,
    );
    assert_eq!(
        decode_body(KIND_CONFIG, bytes::Bytes::from(unhex(&no_change))),
        Err(DecodeError::Invalid("membership flag with no change"))
    );
    let unlisted = good.replacen(
        "0400000000000000020000000000000002",
        "0800000000000000020000000000000002",
        1,
    );
    assert_eq!(
        decode_body(KIND_CONFIG, bytes::Bytes::from(unhex(&unlisted))),
        Err(DecodeError::Invalid("membership names an unlisted id"))
    );
}

/// PROTOCOL.md 5.11's validity rules for the primary/backup peer kinds:
/// every refusal is an error for the connection, never a panic, and a
/// count is checked against the bytes present before anything is reserved.
#[test]
fn pb_peer_messages_refuse_malformed_bodies() {
    let body = |kind: u8| {
        let frame = samples()
            .into_iter()
            .find(|f| kind_of(&f.message) == kind)
            .expect("a sample of the kind");
        encode(&frame)[HEADER_LEN..].to_vec()
    };
    let refuse = |kind: u8, b: &[u8], want: DecodeError| {
        let got = Decoder::default().decode(&mut seal(kind, 0, 3, b));
        assert_eq!(got, Err(want), "kind {kind:#04x} body {}", hex(b));
    };
    // A view whose primary is also a backup (primary 1, backups 0b111).
    let mut b = body(KIND_PB_APPEND);
    b[12] = 0b111;
    refuse(
        KIND_PB_APPEND,
        &b,
        DecodeError::Invalid("PbAppend primary out of range or a backup"),
    );
    // A primary of 64.
    let mut b = body(KIND_PB_TRANSFER);
    b[8] = 64;
    refuse(
        KIND_PB_TRANSFER,
        &b,
        DecodeError::Invalid("PbTransfer primary out of range or a backup"),
    );
    // An entry count the body cannot hold.
    let mut b = body(KIND_PB_APPEND);
    b[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
    refuse(KIND_PB_APPEND, &b, DecodeError::Truncated);
    // Ack: `ok` other than 0 or 1, `from` of 64 or more.
    let mut b = body(KIND_PB_ACK);
    b[12] = 2;
    refuse(
        KIND_PB_ACK,
        &b,
        DecodeError::Invalid("PbAck ok flag is not 0 or 1"),
    );
    let mut b = body(KIND_PB_ACK);
    b[8] = 64;
    refuse(
        KIND_PB_ACK,
        &b,
        DecodeError::Invalid("PbAck from is 64 or more"),
    );
    // A transfer whose data length runs past the body, and a body with a
    // byte left over.
    let mut b = body(KIND_PB_TRANSFER);
    let n = b.len();
    b[n - 8..n - 4].copy_from_slice(&1000u32.to_le_bytes());
    refuse(KIND_PB_TRANSFER, &b, DecodeError::Truncated);
    let mut b = body(KIND_PB_ACK);
    b.push(0);
    refuse(KIND_PB_ACK, &b, DecodeError::TrailingBytes);
    // A transfer declaring a total above the limit, and a chunk running
    // past its total (offset 4 + 4 bytes > total 7; and an offset whose
    // sum with the length overflows).
    let mut b = body(KIND_PB_TRANSFER);
    b[36..44].copy_from_slice(&(PB_TRANSFER_BYTES_MAX + 1).to_le_bytes());
    refuse(
        KIND_PB_TRANSFER,
        &b,
        DecodeError::Invalid("PbTransfer total above the limit"),
    );
    let mut b = body(KIND_PB_TRANSFER);
    b[36..44].copy_from_slice(&7u64.to_le_bytes());
    refuse(
        KIND_PB_TRANSFER,
        &b,
        DecodeError::Invalid("PbTransfer chunk runs past its total"),
    );
    let mut b = body(KIND_PB_TRANSFER);
    b[44..52].copy_from_slice(&u64::MAX.to_le_bytes());
    refuse(
        KIND_PB_TRANSFER,
        &b,
        DecodeError::Invalid("PbTransfer chunk runs past its total"),
    );
}
