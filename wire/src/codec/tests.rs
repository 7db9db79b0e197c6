use bytes::BytesMut;

use super::*;
use crate::types::{ClientReply, Frame, Message};

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
        assert_eq!(is_known_kind(k), ALL_KINDS.contains(&k), "kind {k:#04x}");
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
