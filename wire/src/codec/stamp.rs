//! The trace stamp: a frame that carries the sender's Lamport timestamp and
//! vector clock for the frame right after it, sent only by a server started
//! with `--trace` (PROTOCOL.md 5.9). It is not a [`Message`]: the
//! [`Decoder`] takes it out of the stream, keeps it, and hands it over with
//! the next frame ([`Decoder::take_stamp`]), so nothing above the decoder
//! sees an extra message kind and a receiver that does not trace drops it.
//!
//! [`Message`]: crate::types::Message

use bytes::{BufMut, BytesMut};

use crate::cursor::ByteReader;

use super::*;

/// The most hosts a stamp's vector clock may name. A trace of a cluster
/// names its nodes (and nothing else), so this is far above any real
/// cluster and bounds what a forged stamp can make a receiver hold.
pub const STAMP_HOSTS_MAX: usize = 1024;
/// The longest host name in a stamp (an advertised `host:port`).
pub const STAMP_HOST_BYTES_MAX: usize = 255;

/// A traced send's clocks, as they travel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceStamp {
    /// The send's message id, unique across the traced run (the receiver
    /// writes it beside its receive so the two can be matched).
    pub id: u64,
    /// The sender's Lamport timestamp at the send.
    pub lamport: u64,
    /// The sender's vector clock at the send: host → events seen from it.
    pub clock: Vec<(String, u64)>,
}

/// Appends a whole trace-stamp frame (header included; `request_id` and
/// `group` 0) to `out`. Panics if the stamp breaks the limits above (a
/// caller bug: a server only stamps with its own tracer's clocks).
pub fn encode_trace_stamp(stamp: &TraceStamp, out: &mut BytesMut) {
    assert!(
        stamp.clock.len() <= STAMP_HOSTS_MAX,
        "too many hosts in a trace stamp"
    );
    let start = out.len();
    out.put_bytes(0, HEADER_LEN);
    out.put_u64_le(stamp.id);
    out.put_u64_le(stamp.lamport);
    out.put_u32_le(stamp.clock.len() as u32);
    for (host, n) in &stamp.clock {
        assert!(
            host.len() <= STAMP_HOST_BYTES_MAX,
            "trace stamp host name too long"
        );
        out.put_u8(host.len() as u8);
        out.put_slice(host.as_bytes());
        out.put_u64_le(*n);
    }
    let body = &out[start + HEADER_LEN..];
    let header = Header {
        kind: KIND_TRACE_STAMP,
        flags: 0,
        body_len: body.len() as u32,
        request_id: 0,
        group: 0,
        body_crc: crc32c::crc32c(body),
    };
    out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
}

/// Parses a trace stamp's body.
pub fn decode_trace_stamp(body: &[u8]) -> Result<TraceStamp, DecodeError> {
    let mut r = ByteReader::new(body);
    let id = r.u64()?;
    let lamport = r.u64()?;
    // Each entry is at least a length byte and a u64.
    let count = r.count(9)?;
    if count > STAMP_HOSTS_MAX {
        return Err(DecodeError::Invalid("trace stamp names too many hosts"));
    }
    let mut clock = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u8()? as usize;
        let host = std::str::from_utf8(r.take(len)?).map_err(|_| DecodeError::BadUtf8)?;
        clock.push((host.to_string(), r.u64()?));
    }
    r.finish()?;
    Ok(TraceStamp { id, lamport, clock })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> TraceStamp {
        TraceStamp {
            id: 0x0102_0304_0000_0007,
            lamport: 12,
            clock: vec![("10.0.0.1:7100".into(), 7), ("10.0.0.2:7100".into(), 3)],
        }
    }

    #[test]
    fn a_stamp_is_absorbed_by_the_decoder_and_handed_over_with_the_next_frame() {
        let mut buf = BytesMut::new();
        encode_trace_stamp(&stamp(), &mut buf);
        let frame = crate::types::Frame {
            request_id: 9,
            group: 1,
            message: crate::types::Message::Reply(crate::types::ClientReply::NoKey),
        };
        encode_frame(&frame, &mut buf);
        encode_frame(&frame, &mut buf);
        let mut d = Decoder::default();
        assert_eq!(d.decode(&mut buf).unwrap(), Some(frame.clone()));
        assert_eq!(d.take_stamp(), Some(stamp()));
        // The next frame came without a stamp.
        assert_eq!(d.decode(&mut buf).unwrap(), Some(frame));
        assert_eq!(d.take_stamp(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_stamp_not_taken_does_not_stick_to_a_later_frame() {
        let mut buf = BytesMut::new();
        encode_trace_stamp(&stamp(), &mut buf);
        let frame = crate::types::Frame {
            request_id: 1,
            group: 0,
            message: crate::types::Message::Reply(crate::types::ClientReply::Busy),
        };
        encode_frame(&frame, &mut buf);
        encode_frame(&frame, &mut buf);
        let mut d = Decoder::default();
        d.decode(&mut buf).unwrap().unwrap();
        d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(d.take_stamp(), None);
    }

    #[test]
    fn golden_bytes() {
        let mut buf = BytesMut::new();
        encode_trace_stamp(
            &TraceStamp {
                id: 7,
                lamport: 12,
                clock: vec![("a:1".into(), 7), ("b:2".into(), 3)],
            },
            &mut buf,
        );
        let body = "07000000000000000c000000000000000200000003613a3107000000000000000362\
                    3a320300000000000000";
        assert_eq!(hex(&buf[HEADER_LEN..]), body);
        // PROTOCOL.md 5.9 shows the same frame.
        assert_eq!(
            hex(&buf[..HEADER_LEN]),
            "53594e44017000002c000000000000000000000000000000866a91f8e5cf8edf"
        );
    }

    #[test]
    fn forged_stamps_are_errors_not_panics() {
        let good = {
            let mut b = BytesMut::new();
            encode_trace_stamp(&stamp(), &mut b);
            b.split_off(HEADER_LEN)
        };
        for cut in 0..good.len() {
            assert!(decode_trace_stamp(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = Vec::new();
        huge.extend_from_slice(&[0; 16]);
        huge.extend_from_slice(&(u32::MAX).to_le_bytes());
        assert!(decode_trace_stamp(&huge).is_err());
        let mut bad_utf8 = vec![0u8; 16];
        bad_utf8.extend_from_slice(&1u32.to_le_bytes());
        bad_utf8.extend_from_slice(&[1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_trace_stamp(&bad_utf8), Err(DecodeError::BadUtf8));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
