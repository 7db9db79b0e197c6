//! Round trips: every message kind through `encode_frame` + `Decoder`, every
//! client request through `encode_command` + `decode_command`, and the
//! decoder fed frames split across reads and packed many to a read.

mod common;

use bytes::BytesMut;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use synod_wire::*;

fn range_of(buf: &[u8]) -> std::ops::Range<usize> {
    let start = buf.as_ptr() as usize;
    start..start + buf.len()
}

/// Encodes `frame`, decodes it back, and checks equality, full consumption
/// and that no payload was copied.
fn check_frame_round_trip(frame: &Frame) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf);
    let range = range_of(&buf);
    let mut decoder = Decoder::default();
    let decoded = decoder.decode(&mut buf);
    prop_assert!(matches!(decoded, Ok(Some(_))), "got {:?}", decoded);
    let decoded = decoded.ok().flatten().unwrap_or_else(|| unreachable!());
    prop_assert_eq!(&decoded, frame);
    prop_assert!(buf.is_empty(), "frame not fully consumed");
    prop_assert!(
        all_within(&payload_slices(&decoded.message), range),
        "payload copied"
    );
    prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
    Ok(())
}

#[test]
fn every_kind_round_trips_through_frame_and_decoder() {
    for kind in ALL_KINDS {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            ..Config::default()
        });
        let strategy = arb_frame_of(arb_message_of_kind(kind));
        runner
            .run(&strategy, |frame| {
                prop_assert_eq!(kind_of(&frame.message), kind);
                check_frame_round_trip(&frame)
            })
            .unwrap_or_else(|e| panic!("kind {kind:#04x}: {e}"));
    }
}

#[test]
fn every_request_kind_round_trips_as_command() {
    for kind in [
        KIND_GET,
        KIND_PUT,
        KIND_APPEND,
        KIND_DELETE,
        KIND_INCR,
        KIND_PUT_IF,
        KIND_GET_DEL,
        KIND_PUT_EX,
        KIND_EXPIRE,
        KIND_TTL,
        KIND_GET_EX,
        KIND_SET_RANGE,
        KIND_INCR_BY_FLOAT,
        KIND_SCAN,
        KIND_COUNT,
        KIND_FLUSH,
    ] {
        let mut runner = TestRunner::new(Config {
            cases: 512,
            ..Config::default()
        });
        runner
            .run(&arb_request_of_kind(kind), |req| {
                let cmd = encode_command(&req);
                prop_assert_eq!(cmd[0], kind);
                let range = range_of(&cmd);
                let decoded = decode_command(cmd.clone());
                prop_assert_eq!(decoded.as_ref(), Ok(&req));
                if let Ok(d) = &decoded {
                    prop_assert!(all_within(&request_slices(d), range), "command copied");
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("kind {kind:#04x}: {e}"));
    }
}

#[test]
fn every_master_kind_round_trips_as_command() {
    for kind in [
        KIND_MASTER_JOIN,
        KIND_MASTER_LEAVE,
        KIND_MASTER_MOVE,
        KIND_MASTER_QUERY,
    ] {
        let mut runner = TestRunner::new(Config {
            cases: 512,
            ..Config::default()
        });
        runner
            .run(&arb_master_request_of_kind(kind), |req| {
                let cmd = encode_master_command(&req);
                prop_assert_eq!(cmd[0], kind);
                prop_assert_eq!(decode_master_command(cmd), Ok(req));
                Ok(())
            })
            .unwrap_or_else(|e| panic!("kind {kind:#04x}: {e}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

    /// A batch of encoded commands survives a Paxos round trip and each
    /// command still decodes: the path a client request takes into the log.
    #[test]
    fn commands_inside_an_accept_survive(reqs in proptest::collection::vec(arb_request(), 0..20)) {
        let frame = Frame {
            request_id: 0,
            group: 3,
            message: Message::Paxos(PaxosMsg::Accept(Accept {
                from: 0,
                ballot: Ballot::new(1, 0),
                chosen_upto: 0,
                entries: vec![Proposal {
                    slot: 0,
                    batch: Batch { commands: reqs.iter().map(encode_command).collect() },
                }],
            })),
        };
        let mut buf = encode(&frame);
        let decoded = Decoder::default().decode(&mut buf);
        let Ok(Some(Frame { message: Message::Paxos(PaxosMsg::Accept(a)), .. })) = decoded else {
            return Err(TestCaseError::fail(format!("unexpected {decoded:?}")));
        };
        let got: Result<Vec<_>, _> =
            a.entries[0].batch.commands.iter().cloned().map(decode_command).collect();
        prop_assert_eq!(got, Ok(reqs));
    }

    /// Many frames in one buffer, delivered in arbitrary pieces: the decoder
    /// yields exactly the frames sent, in order, whatever the read sizes.
    #[test]
    fn frames_survive_arbitrary_read_boundaries(
        frames in proptest::collection::vec(arb_frame(), 1..8),
        cuts in proptest::collection::vec(1usize..200, 1..50),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            encode_frame(f, &mut wire);
        }
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut cuts = cuts.into_iter().cycle();
        while !wire.is_empty() {
            let n = cuts.next().unwrap_or(1).min(wire.len());
            buf.extend_from_slice(&wire.split_to(n));
            while let Some(f) = decoder.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                got.push(f);
            }
            prop_assert!(buf.len() < decoder.bytes_wanted());
        }
        prop_assert_eq!(got, frames);
        prop_assert!(buf.is_empty());
    }
}

#[test]
fn many_frames_in_one_buffer_drain_in_order() {
    let frames = samples();
    let mut buf = BytesMut::new();
    for _ in 0..50 {
        for f in &frames {
            encode_frame(f, &mut buf);
        }
    }
    let mut decoder = Decoder::default();
    let mut got = Vec::new();
    while let Some(f) = decoder.decode(&mut buf).expect("valid stream") {
        got.push(f);
    }
    assert_eq!(got.len(), 50 * frames.len());
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f, &frames[i % frames.len()]);
    }
    assert!(buf.is_empty());
}

#[test]
fn frame_split_at_every_byte_boundary() {
    for frame in samples() {
        let wire = encode(&frame);
        for cut in 0..=wire.len() {
            let mut decoder = Decoder::default();
            let mut buf = BytesMut::from(&wire[..cut]);
            if cut < wire.len() {
                assert_eq!(decoder.decode(&mut buf), Ok(None), "cut {cut}");
                assert_eq!(buf.len(), cut, "nothing consumed before a whole frame");
                let wanted = if cut < HEADER_LEN {
                    HEADER_LEN
                } else {
                    wire.len()
                };
                assert_eq!(decoder.bytes_wanted(), wanted, "cut {cut}");
                buf.extend_from_slice(&wire[cut..]);
            }
            assert_eq!(
                decoder.decode(&mut buf),
                Ok(Some(frame.clone())),
                "cut {cut}"
            );
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn frame_fed_one_byte_at_a_time() {
    let mut wire = BytesMut::new();
    for f in samples() {
        encode_frame(&f, &mut wire);
    }
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &byte in wire.iter() {
        buf.extend_from_slice(&[byte]);
        while let Some(f) = decoder.decode(&mut buf).expect("valid stream") {
            got.push(f);
        }
    }
    assert_eq!(got, samples());
}

#[test]
fn encode_frame_appends_to_existing_bytes() {
    let mut buf = BytesMut::from(&b"prefix"[..]);
    let frame = example_put();
    encode_frame(&frame, &mut buf);
    assert_eq!(&buf[..6], b"prefix");
    assert_eq!(&buf[6..], &encode(&frame)[..]);
}
