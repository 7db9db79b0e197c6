//! [`DecodeError`]: why bytes off the network could not be decoded.

use std::fmt;

use crate::cursor::ReadError;

use super::*;

/// Why bytes could not be decoded. Every variant means the peer sent
/// something this version cannot read; for a connection's [`Decoder`] any of
/// them is terminal (the byte stream can no longer be trusted to be in
/// frame alignment), so the runtime logs it and closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The header's magic is not [`MAGIC`]: not a Synod peer.
    BadMagic(u32),
    /// The header's version is not [`VERSION`].
    BadVersion(u8),
    /// A kind code this version does not define.
    UnknownKind(u8),
    /// Header flags must be 0 in version 1; a set bit would change how the
    /// frame must be read, so it is refused rather than ignored.
    UnknownFlags(u16),
    /// The header CRC does not match: the header cannot be trusted at all.
    HeaderChecksum,
    /// The body CRC does not match.
    BodyChecksum,
    /// The header declares a body longer than the decoder's limit.
    FrameTooLarge { len: u32, max: u32 },
    /// The body ends before the fields it declares (a count or length larger
    /// than the bytes that remain).
    Truncated,
    /// The body has bytes left after its last field.
    TrailingBytes,
    /// A string field (an `Error` reply's reason, a server address) is not
    /// UTF-8.
    BadUtf8,
    /// Structurally readable but not acceptable; the text says why.
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadMagic(m) => write!(f, "bad magic {m:#010x}, expected {MAGIC:#010x}"),
            DecodeError::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            DecodeError::UnknownKind(k) => write!(f, "unknown message kind {k:#04x}"),
            DecodeError::UnknownFlags(fl) => write!(f, "unknown header flags {fl:#06x}"),
            DecodeError::HeaderChecksum => f.write_str("header checksum mismatch"),
            DecodeError::BodyChecksum => f.write_str("body checksum mismatch"),
            DecodeError::FrameTooLarge { len, max } => {
                write!(f, "frame body of {len} bytes exceeds the limit of {max}")
            }
            DecodeError::Truncated => f.write_str("body shorter than its fields declare"),
            DecodeError::TrailingBytes => f.write_str("trailing bytes after the body"),
            DecodeError::BadUtf8 => f.write_str("string field is not valid UTF-8"),
            DecodeError::Invalid(why) => write!(f, "invalid message: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A body read past its end, a count it cannot hold, leftovers or a bad
/// string, in the codec's terms (the decoder reports which rule, not where).
impl From<ReadError> for DecodeError {
    fn from(e: ReadError) -> DecodeError {
        match e {
            ReadError::Truncated { .. } | ReadError::CountTooLarge { .. } => DecodeError::Truncated,
            ReadError::TrailingBytes(_) => DecodeError::TrailingBytes,
            ReadError::BadUtf8 => DecodeError::BadUtf8,
        }
    }
}
