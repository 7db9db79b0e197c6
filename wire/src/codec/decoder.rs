//! The incremental [`Decoder`] that turns a connection's read buffer into
//! frames.

use bytes::{Bytes, BytesMut};

use crate::types::Frame;

use super::*;

/// Turns one connection's read buffer into frames, one at a time.
///
/// The runtime appends whatever the socket delivered to a `BytesMut` and
/// calls [`Decoder::decode`] until it returns `Ok(None)`. A frame's body is
/// split off the buffer and frozen, so keys and values in the decoded
/// message point into the bytes that were read: no copy.
///
/// Limits: a header that declares a body over `frame_bytes_max` is refused as
/// soon as its 32 bytes are present, before any body byte is waited for or
/// any memory reserved for it. The decoder itself never grows `buf`.
///
/// Errors are terminal: after the first error the stream's framing cannot be
/// trusted, so every later call returns the same error without looking at
/// `buf`. The runtime should close the connection (and may log the error).
#[derive(Debug)]
pub struct Decoder {
    frame_bytes_max: u32,
    /// The validated header of the frame at the front of the buffer, kept so
    /// a frame whose body arrives in many reads is parsed and checked once.
    pending: Option<Header>,
    failed: Option<DecodeError>,
    /// A trace stamp read and waiting for the frame it belongs to.
    stamp_next: Option<TraceStamp>,
    /// The stamp that came with the frame returned last.
    stamp_last: Option<TraceStamp>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_FRAME_BYTES_MAX)
    }
}

impl Decoder {
    /// A decoder refusing bodies longer than `frame_bytes_max`.
    pub fn new(frame_bytes_max: u32) -> Decoder {
        Decoder {
            frame_bytes_max,
            pending: None,
            failed: None,
            stamp_next: None,
            stamp_last: None,
        }
    }

    /// The trace stamp that came right before the frame the last `decode`
    /// returned, if its sender traces (`stamp.rs`). A stamp not taken is
    /// dropped when the next frame is returned.
    pub fn take_stamp(&mut self) -> Option<TraceStamp> {
        self.stamp_last.take()
    }

    /// The body-length limit this decoder enforces.
    pub fn frame_bytes_max(&self) -> u32 {
        self.frame_bytes_max
    }

    /// The error that ended this decoder, if any.
    pub fn error(&self) -> Option<&DecodeError> {
        self.failed.as_ref()
    }

    /// How long `buf` must be before the next [`decode`](Self::decode) can
    /// make progress: [`HEADER_LEN`] while no header has been validated, then
    /// the whole frame's length. Lets the runtime reserve exactly once per
    /// frame; never more than `HEADER_LEN + frame_bytes_max`.
    pub fn bytes_wanted(&self) -> usize {
        match &self.pending {
            Some(h) => frame_len(h),
            None => HEADER_LEN,
        }
    }

    /// Removes one whole frame from the front of `buf` and decodes it.
    ///
    /// `Ok(None)`: more bytes are needed (nothing was consumed). Call again
    /// after each `Ok(Some(_))` to drain every frame a read delivered. The
    /// same `buf` must be passed on every call, since a validated header is
    /// remembered between calls.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        Ok(self.decode_raw(buf)?.map(|(frame, _)| frame))
    }

    /// [`decode`](Self::decode), plus the frame's kind byte and body as
    /// they arrived, `[kind u8][body]`, as one slice of `buf` (no copy: the
    /// spent header's last byte is overwritten with the kind). For a client
    /// request that is its log command, byte for byte what
    /// [`encode_command`] (or [`encode_master_command`] for a master
    /// request) makes of the decoded request, since decoding is canonical
    /// (`tests/robustness.rs`), so a server proposes it without encoding
    /// the request again.
    pub fn decode_raw(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<(Frame, Bytes)>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        // Trace stamps are taken out of the stream here: each is kept for
        // the frame after it, and the loop goes on to that frame.
        let result = loop {
            match self.decode_inner(buf) {
                Ok(Some(Inner::Stamp(s))) => self.stamp_next = Some(s),
                Ok(Some(Inner::Frame(frame, raw))) => {
                    self.stamp_last = self.stamp_next.take();
                    break Ok(Some((frame, raw)));
                }
                Ok(None) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = &result {
            self.pending = None;
            self.failed = Some(e.clone());
        }
        result
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Inner>, DecodeError> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                if buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                let h = Header::parse(&buf[..])?;
                if h.body_len > self.frame_bytes_max {
                    return Err(DecodeError::FrameTooLarge {
                        len: h.body_len,
                        max: self.frame_bytes_max,
                    });
                }
                h
            }
        };
        let frame_len = frame_len(&header);
        if buf.len() < frame_len {
            self.pending = Some(header);
            return Ok(None);
        }
        self.pending = None;
        // Check before splitting, so a corrupt body costs no buffer surgery.
        if crc32c::crc32c(&buf[HEADER_LEN..frame_len]) != header.body_crc {
            return Err(DecodeError::BodyChecksum);
        }
        let mut whole = buf.split_to(frame_len);
        if header.kind == KIND_TRACE_STAMP {
            return Ok(Some(Inner::Stamp(decode_trace_stamp(
                &whole[HEADER_LEN..],
            )?)));
        }
        // The header is checked and spent: its last byte becomes the kind,
        // so the kind and the body are one contiguous slice.
        whole[HEADER_LEN - 1] = header.kind;
        let raw = whole.freeze().slice(HEADER_LEN - 1..);
        let message = decode_body(header.kind, raw.slice(1..))?;
        let frame = Frame {
            request_id: header.request_id,
            group: header.group,
            message,
        };
        Ok(Some(Inner::Frame(frame, raw)))
    }
}

/// What one frame of the stream was.
enum Inner {
    Frame(Frame, Bytes),
    Stamp(TraceStamp),
}

/// Header plus body length. Saturates instead of overflowing where `usize`
/// is 32 bits; such a frame can never be buffered, let alone pass the limit.
fn frame_len(h: &Header) -> usize {
    HEADER_LEN.saturating_add(h.body_len as usize)
}
