//! The fixed 32-byte frame header: its layout (checked at compile time),
//! the frame and command size limits, and [`Header`]'s bytes, checksum
//! included.

use byteorder::{ByteOrder, LittleEndian};

use super::*;

/// Every frame starts with a header of exactly this many bytes.
pub const HEADER_LEN: usize = 32;
/// `"SYND"` when the little-endian `u32` is written to the wire.
pub const MAGIC: u32 = 0x444E_5953;
/// The only protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Default limit on a frame's body length. Bounds the memory one connection
/// can make the decoder hold; large snapshots travel as many chunks.
pub const DEFAULT_FRAME_BYTES_MAX: u32 = 16 << 20;

/// Bytes of a frame kept for everything around one log command when it
/// travels alone in a message: the header, an Accept's, Promise's or
/// catch-up response's fields, the entry's slot, ballot and lengths, and a
/// reply's framing.
pub const COMMAND_OVERHEAD_BYTES: u32 = 64 << 10;

/// The largest log command (an encoded client request: ids, key and value)
/// a server takes, given its frame limit: any message carrying it alone
/// fits one frame. Requests above it are answered `Error` ("value too
/// large"). PROTOCOL.md section 5.1.
pub const fn command_bytes_max(frame_bytes_max: u32) -> usize {
    frame_bytes_max.saturating_sub(COMMAND_OVERHEAD_BYTES) as usize
}

/// The largest value a key may hold, so a `Get` answer always fits a
/// default frame: an `Append` that would grow a value past it is refused
/// (`Error`, value unchanged). Fixed, not configurable, because it decides
/// what replicas apply and they must all decide alike.
pub const VALUE_BYTES_MAX: usize = command_bytes_max(DEFAULT_FRAME_BYTES_MAX);

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_KIND: usize = 5;
const OFF_FLAGS: usize = 6;
const OFF_BODY_LEN: usize = 8;
const OFF_REQUEST_ID: usize = 12;
const OFF_GROUP: usize = 20;
const OFF_BODY_CRC: usize = 24;
const OFF_HEADER_CRC: usize = 28;

// The header is a fixed-size record: its fields tile it exactly and its size
// never changes without a version bump.
const _: () = assert!(HEADER_LEN == 32);
const _: () = assert!(OFF_VERSION == OFF_MAGIC + 4);
const _: () = assert!(OFF_KIND == OFF_VERSION + 1);
const _: () = assert!(OFF_FLAGS == OFF_KIND + 1);
const _: () = assert!(OFF_BODY_LEN == OFF_FLAGS + 2);
const _: () = assert!(OFF_REQUEST_ID == OFF_BODY_LEN + 4);
const _: () = assert!(OFF_GROUP == OFF_REQUEST_ID + 8);
const _: () = assert!(OFF_BODY_CRC == OFF_GROUP + 4);
const _: () = assert!(OFF_HEADER_CRC == OFF_BODY_CRC + 4);
const _: () = assert!(OFF_HEADER_CRC + 4 == HEADER_LEN);

/// A frame header's variable fields. Magic, version and the header CRC are
/// implied: [`Header::to_bytes`] writes them and [`Header::parse`] checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    /// Always 0 in version 1.
    pub flags: u16,
    pub body_len: u32,
    pub request_id: u64,
    pub group: u32,
    /// CRC32C of the body's `body_len` bytes.
    pub body_crc: u32,
}

impl Header {
    /// The 32 header bytes, header CRC included.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        LittleEndian::write_u32(&mut b[OFF_MAGIC..], MAGIC);
        b[OFF_VERSION] = VERSION;
        b[OFF_KIND] = self.kind;
        LittleEndian::write_u16(&mut b[OFF_FLAGS..], self.flags);
        LittleEndian::write_u32(&mut b[OFF_BODY_LEN..], self.body_len);
        LittleEndian::write_u64(&mut b[OFF_REQUEST_ID..], self.request_id);
        LittleEndian::write_u32(&mut b[OFF_GROUP..], self.group);
        LittleEndian::write_u32(&mut b[OFF_BODY_CRC..], self.body_crc);
        let crc = crc32c::crc32c(&b[..OFF_HEADER_CRC]);
        LittleEndian::write_u32(&mut b[OFF_HEADER_CRC..], crc);
        b
    }

    /// Parses and validates the first [`HEADER_LEN`] bytes of `bytes`.
    ///
    /// The header CRC is checked first: until it matches, no other field
    /// means anything (it could be random bytes or a misaligned stream).
    /// Then magic, version, kind and flags. The body length is *not* checked
    /// against a limit here; that is the [`Decoder`]'s policy.
    pub fn parse(bytes: &[u8]) -> Result<Header, DecodeError> {
        let Some(b) = bytes.get(..HEADER_LEN) else {
            return Err(DecodeError::Truncated);
        };
        let header_crc = LittleEndian::read_u32(&b[OFF_HEADER_CRC..]);
        if crc32c::crc32c(&b[..OFF_HEADER_CRC]) != header_crc {
            return Err(DecodeError::HeaderChecksum);
        }
        let magic = LittleEndian::read_u32(&b[OFF_MAGIC..]);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        if b[OFF_VERSION] != VERSION {
            return Err(DecodeError::BadVersion(b[OFF_VERSION]));
        }
        let kind = b[OFF_KIND];
        if !is_known_kind(kind) {
            return Err(DecodeError::UnknownKind(kind));
        }
        let flags = LittleEndian::read_u16(&b[OFF_FLAGS..]);
        if flags != 0 {
            return Err(DecodeError::UnknownFlags(flags));
        }
        Ok(Header {
            kind,
            flags,
            body_len: LittleEndian::read_u32(&b[OFF_BODY_LEN..]),
            request_id: LittleEndian::read_u64(&b[OFF_REQUEST_ID..]),
            group: LittleEndian::read_u32(&b[OFF_GROUP..]),
            body_crc: LittleEndian::read_u32(&b[OFF_BODY_CRC..]),
        })
    }
}
