//! Hostile input: arbitrary bytes, mutated frames and lying lengths must
//! produce a `DecodeError` (or a wait for more bytes), never a panic, and
//! whatever does decode must re-encode to exactly the bytes it came from
//! (the format is canonical, so a decoder that accepts garbage shows up).

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use proptest::prelude::*;
use synod_wire::*;

/// Feeds `wire` to a fresh decoder in two reads split at `cut`, draining
/// after each; returns the frames and the terminal error, if any.
fn feed(wire: &[u8], cut: usize) -> (Vec<Frame>, Option<DecodeError>) {
    let cut = cut.min(wire.len());
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for part in [&wire[..cut], &wire[cut..]] {
        buf.extend_from_slice(part);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// Recomputes the header CRC after a test edited header bytes 0..28.
fn fix_header_crc(wire: &mut [u8]) {
    let crc = crc32c::crc32c(&wire[..28]);
    wire[28..32].copy_from_slice(&crc.to_le_bytes());
}

proptest! {
    // The CI budget for "arbitrary bytes never panic the decoder"; a fuzz
    // target (wire/fuzz) runs the same property for as long as you like.
    #![proptest_config(ProptestConfig { cases: 100_000, failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        wire in proptest::collection::vec(any::<u8>(), 0..300),
        cut in any::<usize>(),
    ) {
        let (frames, _) = feed(&wire, cut % (wire.len() + 1));
        // 32 random bytes pass the header CRC with probability 2^-32.
        prop_assert!(frames.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100_000, failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

    /// Arbitrary bodies under every kind code (and unknown ones), straight
    /// into `decode_body` and, sealed with valid checksums, through the
    /// decoder.
    #[test]
    fn arbitrary_bodies_never_panic_and_decode_canonically(
        kind in prop_oneof![4 => proptest::sample::select(ALL_KINDS.to_vec()), 1 => any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let sealed = seal(kind, 1, 2, &body);
        if kind == KIND_TRACE_STAMP {
            // Not a message: the decoder keeps it for the next frame.
            let (frames, err) = feed(&sealed, usize::MAX);
            prop_assert!(frames.is_empty());
            prop_assert_eq!(err, decode_trace_stamp(&body).err());
            return Ok(());
        }
        let direct = decode_body(kind, Bytes::from(body.clone()));
        if let Ok(msg) = &direct {
            prop_assert_eq!(kind_of(msg), kind);
            let mut again = BytesMut::new();
            encode_message_body(msg, &mut again);
            prop_assert_eq!(&again[..], &body[..]);
        }
        let (frames, err) = feed(&sealed, usize::MAX);
        match direct {
            Ok(msg) => {
                prop_assert_eq!(err, None);
                prop_assert_eq!(frames, vec![Frame { request_id: 1, group: 2, message: msg }]);
            }
            Err(e) => prop_assert_eq!(err, Some(e)),
        }
    }

    #[test]
    fn arbitrary_commands_never_panic_and_decode_canonically(
        cmd in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..96),
            arb_request().prop_map(|r| encode_command(&r).to_vec()),
        ],
        flip in any::<(usize, u8)>(),
    ) {
        let mut cmd = cmd;
        if !cmd.is_empty() && flip.1 != 0 {
            let i = flip.0 % cmd.len();
            cmd[i] ^= flip.1;
        }
        if let Ok(req) = decode_command(Bytes::from(cmd.clone())) {
            prop_assert_eq!(&encode_command(&req)[..], &cmd[..]);
        }
    }

    /// The master group's log commands get the same treatment as the KV
    /// groups': arbitrary or bit-flipped bytes never panic, and whatever
    /// decodes re-encodes to the same bytes.
    #[test]
    fn arbitrary_master_commands_never_panic_and_decode_canonically(
        cmd in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..96),
            (proptest::sample::select(vec![
                KIND_MASTER_JOIN, KIND_MASTER_LEAVE, KIND_MASTER_MOVE, KIND_MASTER_QUERY,
                KIND_MASTER_REPLACE, KIND_MASTER_ADD_MEMBER, KIND_MASTER_REMOVE_MEMBER,
                KIND_MASTER_PB_PING,
            ]), proptest::collection::vec(any::<u8>(), 0..96))
                .prop_map(|(k, rest)| [vec![k], rest].concat()),
            arb_master_request().prop_map(|r| encode_master_command(&r).to_vec()),
        ],
        flip in any::<(usize, u8)>(),
    ) {
        let mut cmd = cmd;
        if !cmd.is_empty() && flip.1 != 0 {
            let i = flip.0 % cmd.len();
            cmd[i] ^= flip.1;
        }
        if let Ok(req) = decode_master_command(Bytes::from(cmd.clone())) {
            prop_assert_eq!(&encode_master_command(&req)[..], &cmd[..]);
        }
    }
}

/// Mutations of valid frames: first raw (the checksums must catch them),
/// then with the checksums recomputed, so the body parser sees the damage.
#[test]
fn mutated_frames_are_refused_or_decode_canonically() {
    let mut rng = SplitMix(0x5eed_0001);
    let frames: Vec<BytesMut> = samples().iter().map(encode).collect();
    for _ in 0..60_000 {
        let original = &frames[rng.below(frames.len())];
        let kind = original[5];
        let mut wire = original.to_vec();
        let op = rng.below(6);
        match op {
            0 => {
                let bit = rng.below(wire.len() * 8);
                wire[bit / 8] ^= 1 << (bit % 8);
            }
            1 => {
                let i = rng.below(wire.len());
                wire[i] = rng.next_u64() as u8;
            }
            2 => wire.truncate(rng.below(wire.len())),
            3 => {
                let i = rng.below(wire.len() + 1);
                wire.insert(i, rng.next_u64() as u8);
            }
            4 => {
                wire.remove(rng.below(wire.len()));
            }
            _ => {
                // Overwrite an aligned-or-not u32 in the body with a large
                // value: this is how counts and lengths lie.
                if wire.len() >= HEADER_LEN + 4 {
                    let i = HEADER_LEN + rng.below(wire.len() - HEADER_LEN - 3);
                    let v =
                        [u32::MAX, 0x8000_0000, 4_000_000_000, rng.next_u64() as u32][rng.below(4)];
                    wire[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        // Raw: a single changed bit or byte is always caught by a CRC.
        let (got, err) = feed(&wire, rng.below(wire.len() + 1));
        if op <= 1 && wire != original[..] {
            assert!(err.is_some() && got.is_empty(), "op {op}: {got:?} {err:?}");
        }
        // Resealed: the body parser has to catch it (or it is still valid).
        let body = wire.get(HEADER_LEN..).unwrap_or(&[]);
        let sealed = seal(kind, 0, 1, body);
        let (got, _) = feed(&sealed, rng.below(sealed.len() + 1));
        for f in got {
            assert_eq!(
                &encode(&Frame {
                    request_id: 0,
                    group: 1,
                    ..f
                })[..],
                &sealed[..]
            );
        }
    }
}

#[test]
fn oversized_body_len_is_refused_as_soon_as_the_header_arrives() {
    let mut header = seal(KIND_OK, 1, 1, &[]);
    header[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_header_crc(&mut header);
    let capacity = header.capacity();
    let mut decoder = Decoder::default();
    assert_eq!(
        decoder.decode(&mut header),
        Err(DecodeError::FrameTooLarge {
            len: u32::MAX,
            max: DEFAULT_FRAME_BYTES_MAX
        })
    );
    assert_eq!(header.len(), HEADER_LEN, "nothing consumed");
    assert_eq!(header.capacity(), capacity, "buffer not grown");
}

#[test]
fn frame_bytes_max_is_inclusive() {
    let frame = |n: usize| Frame {
        request_id: 0,
        group: 0,
        message: Message::Reply(ClientReply::Ok(Bytes::from(vec![7u8; n]))),
    };
    // Body = 4-byte length + n bytes.
    let mut ok = encode(&frame(96));
    assert_eq!(Decoder::new(100).decode(&mut ok), Ok(Some(frame(96))));
    let mut big = encode(&frame(97));
    assert_eq!(
        Decoder::new(100).decode(&mut big),
        Err(DecodeError::FrameTooLarge { len: 101, max: 100 })
    );
}

#[test]
fn huge_counts_with_little_data_are_truncated() {
    let ballot = [0u8; 12];
    let huge = 4_000_000_000u32.to_le_bytes();
    let ten = [0u8; 10];
    let cat = |parts: &[&[u8]]| Bytes::from(parts.concat());
    let cases: Vec<(u8, Bytes)> = vec![
        // Promise: from, ballot, log_start, chosen_upto, entries count.
        (
            KIND_PROMISE,
            cat(&[&[0; 4], &ballot, &[0; 16], &huge, &ten]),
        ),
        // Accept: from, ballot, chosen_upto, entries count.
        (KIND_ACCEPT, cat(&[&[0; 4], &ballot, &[0; 8], &huge, &ten])),
        // Accept with one proposal whose batch claims 4e9 commands.
        (
            KIND_ACCEPT,
            cat(&[
                &[0; 4],
                &ballot,
                &[0; 8],
                &1u32.to_le_bytes(),
                &[0; 8],
                &huge,
                &ten,
            ]),
        ),
        (
            KIND_ACCEPTED,
            cat(&[&[0; 4], &ballot, &[0; 8], &[0; 8], &huge, &ten]),
        ),
        (KIND_CATCHUP_RESPONSE, cat(&[&[0; 4], &[0; 8], &huge, &ten])),
        // Byte strings that claim more than remains.
        (KIND_OK, cat(&[&huge, &ten])),
        (KIND_ERROR, cat(&[&huge, &ten])),
        (KIND_GET, cat(&[&[0; 24], &huge, &ten])),
        (KIND_SNAPSHOT_CHUNK, cat(&[&[0; 4], &[0; 24], &huge, &ten])),
        // Master requests: client_id, seq, ack_seq, then a lying count.
        (KIND_MASTER_JOIN, cat(&[&[0; 24], &huge, &ten])),
        (KIND_MASTER_LEAVE, cat(&[&[0; 24], &huge, &ten])),
        // Join with one group whose server list claims 4e9 entries, and one
        // whose single server address claims 4e9 bytes.
        (
            KIND_MASTER_JOIN,
            cat(&[&[0; 24], &1u32.to_le_bytes(), &[0; 4], &huge, &ten]),
        ),
        (
            KIND_MASTER_JOIN,
            cat(&[
                &[0; 24],
                &1u32.to_le_bytes(),
                &[0; 4],
                &1u32.to_le_bytes(),
                &huge,
                &ten,
            ]),
        ),
        // Config: num, then lying shard and group counts.
        (KIND_CONFIG, cat(&[&[0; 8], &huge, &ten])),
        (KIND_CONFIG, cat(&[&[0; 8], &[0; 4], &huge, &ten])),
    ];
    for (kind, body) in cases {
        assert_eq!(
            decode_body(kind, body),
            Err(DecodeError::Truncated),
            "kind {kind:#04x}"
        );
    }
}

#[test]
fn each_decode_error_is_reported() {
    let good = encode(&example_put());
    let check = |wire: &[u8], want: DecodeError| {
        let (_, err) = feed(wire, usize::MAX);
        assert_eq!(err, Some(want.clone()));
        assert!(!want.to_string().is_empty());
    };
    let mut w = good.to_vec();
    w[0] ^= 1;
    check(&w, DecodeError::HeaderChecksum);
    fix_header_crc(&mut w);
    check(&w, DecodeError::BadMagic(0x444E_5952));
    let mut w = good.to_vec();
    w[4] = 2;
    fix_header_crc(&mut w);
    check(&w, DecodeError::BadVersion(2));
    let mut w = good.to_vec();
    w[5] = 0x3f;
    fix_header_crc(&mut w);
    check(&w, DecodeError::UnknownKind(0x3f));
    let mut w = good.to_vec();
    w[6] = 0x80;
    fix_header_crc(&mut w);
    check(&w, DecodeError::UnknownFlags(0x80));
    let mut w = good.to_vec();
    *w.last_mut().unwrap() ^= 1;
    check(&w, DecodeError::BodyChecksum);
    check(&seal(KIND_BUSY, 0, 0, &[0]), DecodeError::TrailingBytes);
    check(
        &seal(KIND_PUT, 0, 0, &good[HEADER_LEN..60]),
        DecodeError::Truncated,
    );
    check(
        &seal(KIND_ERROR, 0, 0, &[2, 0, 0, 0, 0xff, 0xfe]),
        DecodeError::BadUtf8,
    );
    // A Join whose one group's one server address is not UTF-8.
    let bad_server = [
        &[0u8; 24][..],
        &1u32.to_le_bytes(),
        &7u32.to_le_bytes(),
        &1u32.to_le_bytes(),
        &[2, 0, 0, 0, 0xff, 0xfe],
    ]
    .concat();
    check(
        &seal(KIND_MASTER_JOIN, 0, 0, &bad_server),
        DecodeError::BadUtf8,
    );
    assert_eq!(
        decode_master_command(encode_command(&ClientRequest {
            client_id: 1,
            seq: 1,
            ack_seq: 0,
            op: Op::Get { key: b("k") },
        })),
        Err(DecodeError::Invalid("command is not a master request"))
    );
    assert_eq!(
        decode_command(encode_master_command(&MasterRequest {
            client_id: 1,
            seq: 1,
            ack_seq: 0,
            op: MasterOp::Query { num: None },
        })),
        Err(DecodeError::Invalid("command is not a client request"))
    );
    assert_eq!(
        decode_master_command(Bytes::from_static(&[0x7f])),
        Err(DecodeError::UnknownKind(0x7f))
    );
    assert_eq!(
        decode_master_command(Bytes::new()),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        decode_command(Bytes::from_static(&[KIND_OK, 0, 0, 0, 0])),
        Err(DecodeError::Invalid("command is not a client request"))
    );
    assert_eq!(
        decode_command(Bytes::from_static(&[0x7f])),
        Err(DecodeError::UnknownKind(0x7f))
    );
    assert_eq!(decode_command(Bytes::new()), Err(DecodeError::Truncated));
    assert_eq!(
        decode_body(0x00, Bytes::new()),
        Err(DecodeError::UnknownKind(0))
    );
    // A ShardData whose `done` flag (byte 20 of the body) is neither 0 nor
    // 1: refused rather than read as true, so one value has one meaning.
    let mut shard_data = unhex("030000000000000007000000050000000000000001020000006b76");
    assert!(decode_body(KIND_SHARD_DATA, Bytes::from(shard_data.clone())).is_ok());
    shard_data[20] = 2;
    assert_eq!(
        decode_body(KIND_SHARD_DATA, Bytes::from(shard_data)),
        Err(DecodeError::Invalid("ShardData done flag is not 0 or 1"))
    );
    let e: &dyn std::error::Error = &DecodeError::Invalid("x");
    assert_eq!(e.to_string(), "invalid message: x");
}

#[test]
fn decoder_never_reads_past_a_partial_header() {
    // A buffer holding a valid frame followed by 31 garbage bytes yields the
    // frame, then waits: 31 bytes are not yet a header to judge.
    let mut buf = encode(&example_put());
    buf.extend_from_slice(&[0xAA; 31]);
    let mut decoder = Decoder::default();
    assert_eq!(decoder.decode(&mut buf), Ok(Some(example_put())));
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&[0xAA]);
    assert_eq!(decoder.decode(&mut buf), Err(DecodeError::HeaderChecksum));
}
