//! The scan page: the value of the `Ok` answering an
//! [`Op::Scan`](crate::types::Op::Scan), both ways (PROTOCOL.md 5.1).

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::ScanPage;

use super::*;

/// The value of the `Ok` answering a scan: `done u8` (1: the shard has no
/// key after this page), `resume_after string` (empty when done), then
/// `vec<string>` keys. PROTOCOL.md 5.1.
pub fn encode_scan_page(page: &ScanPage) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(u8::from(page.resume_after.is_none()));
    put_byte_string(&mut out, page.resume_after.as_deref().unwrap_or_default());
    put_count(&mut out, page.keys.len());
    for k in &page.keys {
        put_byte_string(&mut out, k);
    }
    out.freeze()
}

/// Reads [`encode_scan_page`]'s bytes. Never panics on bad input.
pub fn decode_scan_page(bytes: Bytes) -> Result<ScanPage, DecodeError> {
    let mut r = Reader::new(&bytes);
    let done = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::Invalid("scan page done flag")),
    };
    let resume = r.byte_string()?;
    if done && !resume.is_empty() {
        return Err(DecodeError::Invalid("scan page done with a resume key"));
    }
    // Smallest key: its u32 length.
    let n = r.count(4)?;
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push(r.byte_string()?);
    }
    r.finish()?;
    Ok(ScanPage {
        keys,
        resume_after: (!done).then_some(resume),
    })
}
