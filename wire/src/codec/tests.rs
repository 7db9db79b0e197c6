use bytes::{Bytes, BytesMut};

use super::*;
use crate::types::{ClientReply, ClientRequest, Frame, Message, Op};

#[test]
fn crc32c_check_value() {
    // The standard CRC-32C (Castagnoli) check value, quoted in PROTOCOL.md.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn magic_is_synd_on_the_wire() {
    let h = Header {
        kind: KIND_BUSY,
        flags: 0,
        body_len: 0,
        request_id: 0,
        group: 0,
        body_crc: 0,
    };
    assert_eq!(&h.to_bytes()[..4], b"SYND");
}

#[test]
fn all_kinds_are_known_and_nothing_else_is() {
    for k in 0..=u8::MAX {
        let known = ALL_KINDS.contains(&k) || k == KIND_TRACE_STAMP;
        assert_eq!(is_known_kind(k), known, "kind {k:#04x}");
    }
}

#[test]
fn nonzero_flags_are_refused() {
    let mut h = Header {
        kind: KIND_BUSY,
        flags: 0,
        body_len: 0,
        request_id: 0,
        group: 0,
        body_crc: crc32c::crc32c(b""),
    };
    h.flags = 1;
    assert_eq!(
        Header::parse(&h.to_bytes()),
        Err(DecodeError::UnknownFlags(1))
    );
}

#[test]
fn a_request_arrives_as_its_command() {
    let req = ClientRequest {
        client_id: 7,
        seq: 3,
        ack_seq: 2,
        op: Op::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"value"),
        },
    };
    let mut buf = BytesMut::new();
    let frame = Frame {
        request_id: 9,
        group: 1,
        message: Message::Request(req.clone()),
    };
    encode_frame(&frame, &mut buf);
    let (got, raw) = Decoder::default().decode_raw(&mut buf).unwrap().unwrap();
    assert_eq!(got, frame);
    assert_eq!(raw, encode_command(&req));
    assert!(buf.is_empty());
}

#[test]
fn decoder_error_is_sticky() {
    let mut d = Decoder::default();
    let mut buf = BytesMut::from(&[0u8; HEADER_LEN][..]);
    assert_eq!(d.decode(&mut buf), Err(DecodeError::HeaderChecksum));
    let mut good = BytesMut::new();
    encode_frame(
        &Frame {
            request_id: 1,
            group: 0,
            message: Message::Reply(ClientReply::Busy),
        },
        &mut good,
    );
    assert_eq!(d.decode(&mut good), Err(DecodeError::HeaderChecksum));
    assert_eq!(d.error(), Some(&DecodeError::HeaderChecksum));
}
