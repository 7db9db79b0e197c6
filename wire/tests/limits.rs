//! The size limits derived from the frame limit (issue 8, finding 8): a
//! command of the largest size a server takes fits, alone, in every message
//! that carries log entries, and the largest value fits a `Get` reply, all
//! within one default frame. If a layout grows, this fails before a cluster
//! wedges on an Accept 45 bytes over the limit.

use bytes::{Bytes, BytesMut};
use synod_wire::*;

fn body_len(message: Message) -> usize {
    let mut buf = BytesMut::new();
    encode_frame(
        &Frame {
            request_id: u64::MAX,
            group: u32::MAX,
            message,
        },
        &mut buf,
    );
    buf.len() - HEADER_LEN
}

#[test]
fn the_largest_command_fits_every_message_that_carries_it() {
    let frame = DEFAULT_FRAME_BYTES_MAX;
    let max = command_bytes_max(frame);
    assert_eq!(max, frame as usize - COMMAND_OVERHEAD_BYTES as usize);
    // The largest Put a server takes, encoded as a log command.
    let key = Bytes::from(vec![b'k'; 1024]);
    let req = ClientRequest {
        client_id: u64::MAX,
        seq: u64::MAX,
        ack_seq: u64::MAX,
        op: Op::Put {
            key: key.clone(),
            value: Bytes::new(),
        },
    };
    let overhead = encode_command(&req).len();
    let value = Bytes::from(vec![b'v'; max - overhead]);
    let cmd = encode_command(&ClientRequest {
        op: Op::Put { key, value },
        ..req
    });
    assert_eq!(cmd.len(), max);
    let batch = Batch {
        commands: vec![cmd],
    };
    let ballot = Ballot::new(u64::MAX >> 1, u32::MAX);
    let carriers = [
        Message::Paxos(PaxosMsg::Accept(Accept {
            from: u32::MAX,
            ballot,
            chosen_upto: u64::MAX,
            entries: vec![Proposal {
                slot: u64::MAX,
                batch: batch.clone(),
            }],
        })),
        Message::Paxos(PaxosMsg::Promise(Promise {
            from: u32::MAX,
            ballot,
            log_start: u64::MAX,
            chosen_upto: u64::MAX,
            entries: vec![LogEntry {
                slot: u64::MAX,
                ballot: Ballot::CHOSEN,
                batch: batch.clone(),
            }],
            more: true,
        })),
        Message::Paxos(PaxosMsg::CatchupResponse(CatchupResponse {
            from: u32::MAX,
            chosen_upto: u64::MAX,
            entries: vec![Proposal {
                slot: u64::MAX,
                batch,
            }],
        })),
    ];
    for m in carriers {
        let kind = kind_of_message(&m);
        let len = body_len(m);
        assert!(
            len <= frame as usize,
            "kind {kind:#04x}: {len} bytes over the {frame}-byte frame"
        );
    }
}

#[test]
fn the_largest_value_fits_a_get_reply() {
    let value = Bytes::from(vec![b'v'; VALUE_BYTES_MAX]);
    let len = body_len(Message::Reply(ClientReply::Ok(value)));
    assert!(len <= DEFAULT_FRAME_BYTES_MAX as usize, "{len}");
    assert_eq!(VALUE_BYTES_MAX, command_bytes_max(DEFAULT_FRAME_BYTES_MAX));
}

fn kind_of_message(m: &Message) -> u8 {
    match m {
        Message::Paxos(PaxosMsg::Accept(_)) => KIND_ACCEPT,
        Message::Paxos(PaxosMsg::Promise(_)) => KIND_PROMISE,
        _ => KIND_CATCHUP_RESPONSE,
    }
}
