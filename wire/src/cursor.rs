//! [`ByteReader`]: the one bounds-checked cursor every byte format of Synod
//! reads untrusted input with: frame bodies (`codec`), and in the server
//! crate the KV, shard-export, migration-chunk, master and `ShardKv`
//! snapshots and the group commands in the log.
//!
//! Every read checks the bytes that remain first and returns a typed
//! [`ReadError`] instead of panicking; a count is proven to fit in what
//! remains before the caller reserves anything for it. Each format maps a
//! [`ReadError`] into its own error type (`From` impls beside that type),
//! so a format's errors keep saying which format failed. Little-endian, as
//! every Synod format is.

use std::fmt;

/// Why a [`ByteReader`] could not read a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// A field of `need` bytes where only `have` remain.
    Truncated { need: usize, have: usize },
    /// A count of `count` items of at least `item_len` bytes each, where
    /// only `have` bytes remain: refused before anything is reserved.
    CountTooLarge {
        count: usize,
        item_len: usize,
        have: usize,
    },
    /// `n` bytes left after the last field.
    TrailingBytes(usize),
    /// A string field is not UTF-8.
    BadUtf8,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Truncated { need, have } => {
                write!(f, "truncated: a field of {need} bytes, {have} left")
            }
            ReadError::CountTooLarge {
                count,
                item_len,
                have,
            } => write!(
                f,
                "truncated: {count} items of at least {item_len} bytes in {have} bytes"
            ),
            ReadError::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
            ReadError::BadUtf8 => f.write_str("string is not UTF-8"),
        }
    }
}

impl std::error::Error for ReadError {}

/// A cursor over untrusted bytes. Reads borrow from the input (no copy).
#[derive(Clone, Debug)]
pub struct ByteReader<'a> {
    rest: &'a [u8],
}

impl<'a> ByteReader<'a> {
    pub fn new(input: &'a [u8]) -> ByteReader<'a> {
        ByteReader { rest: input }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], ReadError> {
        if len > self.rest.len() {
            return Err(ReadError::Truncated {
                need: len,
                have: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    /// Exactly `N` raw bytes (nonces, MACs).
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A `u32` length, then that many bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], ReadError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// [`ByteReader::bytes`], checked to be UTF-8.
    pub fn str(&mut self) -> Result<&'a str, ReadError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| ReadError::BadUtf8)
    }

    /// A `u32` count of items at least `min_item_len` bytes each, refused
    /// unless that many could fit in what remains, so the caller may
    /// `Vec::with_capacity(count)`: the reservation is then bounded by the
    /// input's size, never by a number the sender chose.
    pub fn count(&mut self, min_item_len: usize) -> Result<usize, ReadError> {
        assert!(min_item_len > 0, "a count needs a nonzero item size");
        let count = self.u32()? as usize;
        if count > self.rest.len() / min_item_len {
            return Err(ReadError::CountTooLarge {
                count,
                item_len: min_item_len,
                have: self.rest.len(),
            });
        }
        Ok(count)
    }

    /// The input must be consumed exactly: leftover bytes mean writer and
    /// reader disagree about the layout, which must not pass silently.
    pub fn finish(self) -> Result<(), ReadError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(ReadError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_fields_in_order() {
        let mut input = vec![7u8];
        input.extend_from_slice(&0x0102u16.to_le_bytes());
        input.extend_from_slice(&0x0304_0506u32.to_le_bytes());
        input.extend_from_slice(&0x0708_090A_0B0C_0D0Eu64.to_le_bytes());
        input.extend_from_slice(&2u32.to_le_bytes());
        input.extend_from_slice(b"hi");
        let mut r = ByteReader::new(&input);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u32(), Ok(0x0304_0506));
        assert_eq!(r.u64(), Ok(0x0708_090A_0B0C_0D0E));
        assert_eq!(r.str(), Ok("hi"));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn short_input_is_truncated_not_a_panic() {
        let mut r = ByteReader::new(&[1, 2, 3]);
        assert_eq!(r.u32(), Err(ReadError::Truncated { need: 4, have: 3 }));
        let mut r = ByteReader::new(&[9, 0, 0, 0, 1]);
        assert_eq!(r.bytes(), Err(ReadError::Truncated { need: 9, have: 1 }));
    }

    #[test]
    fn a_count_the_input_cannot_hold_is_refused() {
        let input = [3u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            ByteReader::new(&input).count(4),
            Err(ReadError::CountTooLarge {
                count: 3,
                item_len: 4,
                have: 7
            })
        );
        assert_eq!(ByteReader::new(&input).count(2), Ok(3));
    }

    #[test]
    fn leftovers_and_bad_utf8_are_refused() {
        assert_eq!(
            ByteReader::new(&[0, 0]).finish(),
            Err(ReadError::TrailingBytes(2))
        );
        let mut r = ByteReader::new(&[1, 0, 0, 0, 0xFF]);
        assert_eq!(r.str(), Err(ReadError::BadUtf8));
    }
}
