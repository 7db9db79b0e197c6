//! A stored key's and value's bytes in few words (issue 15).
//!
//! Each key of the store is a slot in a std `BTreeMap` leaf (11 slots,
//! about half full after random inserts, full after a restore's bulk
//! build), so every word of a slot costs about two words per key. Before
//! this module a slot was 56 bytes (a `Box<[u8]>` key, a `Vec<u8>` value,
//! the version and the expiry) and the key and the value were two more
//! allocations (a 7-byte key took a 32-byte malloc chunk): 221 bytes per
//! 64-byte value in all, measured by `kv::tests::key_memory`.
//!
//! - [`Key`]: a key of up to [`Key::INLINE`] bytes is stored in the slot
//!   itself (24 bytes), a longer one in a `Box<[u8]>` as before.
//! - [`Value`] is one word: the length and capacity live in front of the
//!   bytes, in the same allocation. Appends stay amortized O(bytes
//!   appended) (the capacity doubles), and a value built from a slice is
//!   allocated at its exact size, as `to_vec` was.
//!
//! `Value` holds the store's only `unsafe`. What it relies on: a non-empty
//! value owns exactly one allocation of `Value::layout(cap)` bytes, whose
//! first `HEADER` bytes hold `len` and `cap` (`u32`, `len <= cap`) and
//! whose next `len` bytes are initialized; the empty value owns nothing.

use std::alloc::{self, Layout};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A key's bytes: inline up to [`Key::INLINE`] bytes, boxed beyond.
/// Compares, hashes and borrows as its bytes (`Borrow<[u8]>`), so maps
/// keyed by it are looked up with a `&[u8]`.
#[derive(Clone)]
pub(crate) enum Key {
    /// `len <= INLINE` bytes in `bytes[..len]`.
    Inline { len: u8, bytes: [u8; Key::INLINE] },
    /// Longer than `INLINE` bytes.
    Boxed(Box<[u8]>),
}

const _: () = assert!(std::mem::size_of::<Key>() == 24);

impl Key {
    /// The longest key stored without an allocation: what fits beside
    /// the length and the tag in the 24 bytes a boxed key takes anyway.
    pub(crate) const INLINE: usize = 22;

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Boxed(b) => b,
        }
    }
}

impl From<&[u8]> for Key {
    fn from(key: &[u8]) -> Key {
        if key.len() <= Key::INLINE {
            let mut bytes = [0; Key::INLINE];
            bytes[..key.len()].copy_from_slice(key);
            Key::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Key::Boxed(Box::from(key))
        }
    }
}

impl From<Box<[u8]>> for Key {
    fn from(key: Box<[u8]>) -> Key {
        if key.len() <= Key::INLINE {
            Key::from(&key[..])
        } else {
            Key::Boxed(key)
        }
    }
}

impl From<&Key> for Box<[u8]> {
    fn from(key: &Key) -> Box<[u8]> {
        Box::from(key.as_slice())
    }
}

impl Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// Bytewise, as `[u8]` (what `Borrow` requires).
    fn cmp(&self, other: &Key) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl Hash for Key {
    /// As `[u8]` (what `Borrow` requires).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

/// `len: u32, cap: u32` in front of the bytes.
const HEADER: usize = 8;

/// A value's bytes: `Vec<u8>`'s operations the store uses, in 8 bytes.
pub(crate) struct Value(Option<NonNull<u8>>);

// SAFETY: a `Value` owns its allocation alone (no sharing, no interior
// mutability), like a `Vec<u8>`.
unsafe impl Send for Value {}
// SAFETY: as above; `&Value` only reads.
unsafe impl Sync for Value {}

impl Value {
    /// The empty value; allocates nothing.
    pub(crate) const fn new() -> Value {
        Value(None)
    }

    /// A copy of `bytes`, allocated at exactly their size. Panics above
    /// `u32::MAX` bytes (values are bounded by `VALUE_BYTES_MAX`, far less).
    pub(crate) fn from_slice(bytes: &[u8]) -> Value {
        let mut v = Value::new();
        v.extend_exact(bytes, bytes.len());
        v
    }

    fn layout(cap: usize) -> Layout {
        Layout::from_size_align(HEADER + cap, 4).expect("value layout")
    }

    fn header(&self) -> (usize, usize) {
        match self.0 {
            None => (0, 0),
            // SAFETY: a non-empty value's allocation starts with its header
            // (module doc), 4-aligned.
            Some(p) => unsafe {
                let h = p.as_ptr() as *const u32;
                (*h as usize, *h.add(1) as usize)
            },
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self.0 {
            None => &[],
            // SAFETY: `len` initialized bytes follow the header (module doc)
            // and live as long as `self`.
            Some(p) => unsafe {
                std::slice::from_raw_parts(p.as_ptr().add(HEADER), self.header().0)
            },
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.header().0;
        match self.0 {
            None => &mut [],
            // SAFETY: as in `as_slice`; `&mut self` is the only access.
            Some(p) => unsafe { std::slice::from_raw_parts_mut(p.as_ptr().add(HEADER), len) },
        }
    }

    /// Makes room for `additional` more bytes, growing the capacity to at
    /// least `want_cap` (and at least the new length).
    fn reserve(&mut self, additional: usize, want_cap: usize) {
        let (len, cap) = self.header();
        let need = len.checked_add(additional).expect("value length overflow");
        if need <= cap {
            return;
        }
        let new_cap = want_cap.max(need);
        assert!(u32::try_from(new_cap).is_ok(), "value of {new_cap} bytes");
        let ptr = match self.0 {
            // SAFETY: a nonzero-size layout.
            None => unsafe { alloc::alloc(Value::layout(new_cap)) },
            // SAFETY: `p` was allocated with `layout(cap)`; the new size is
            // nonzero and does not overflow `isize` (checked by `layout`).
            Some(p) => unsafe { alloc::realloc(p.as_ptr(), Value::layout(cap), HEADER + new_cap) },
        };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(Value::layout(new_cap))
        };
        // SAFETY: the allocation holds at least the header; `len` bytes
        // after it were initialized before (realloc keeps them).
        unsafe {
            let h = ptr.as_ptr() as *mut u32;
            *h = len as u32;
            *h.add(1) = new_cap as u32;
        }
        self.0 = Some(ptr);
    }

    fn set_len(&mut self, len: usize) {
        if let Some(p) = self.0 {
            assert!(len <= self.header().1, "length above capacity");
            // SAFETY: header of an owned allocation; the caller initialized
            // the bytes up to `len`.
            unsafe { *(p.as_ptr() as *mut u32) = len as u32 };
        } else {
            assert_eq!(len, 0, "length of the empty value");
        }
    }

    fn extend_exact(&mut self, bytes: &[u8], want_cap: usize) {
        if bytes.is_empty() {
            return;
        }
        self.reserve(bytes.len(), want_cap);
        let len = self.header().0;
        let p = self.0.expect("reserved");
        // SAFETY: `reserve` made room for `bytes.len()` more bytes after
        // `len`; `bytes` cannot overlap an allocation `&mut self` owns.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                p.as_ptr().add(HEADER + len),
                bytes.len(),
            );
        }
        self.set_len(len + bytes.len());
    }

    /// Appends `bytes`, amortized O(`bytes.len()`): the capacity at least
    /// doubles when it grows (as `Vec`'s does).
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        let (_, cap) = self.header();
        self.extend_exact(bytes, cap.saturating_mul(2));
    }

    /// Grows to `new_len` bytes filled with `fill`, or cuts to it.
    pub(crate) fn resize(&mut self, new_len: usize, fill: u8) {
        let (len, cap) = self.header();
        if new_len <= len {
            self.set_len(new_len);
            return;
        }
        self.reserve(new_len - len, cap.saturating_mul(2));
        let p = self.0.expect("reserved");
        // SAFETY: `reserve` made room up to `new_len`.
        unsafe { std::ptr::write_bytes(p.as_ptr().add(HEADER + len), fill, new_len - len) };
        self.set_len(new_len);
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        let (_, cap) = self.header();
        if let Some(p) = self.0.take() {
            // SAFETY: `p` was allocated with `layout(cap)` and is freed once.
            unsafe { alloc::dealloc(p.as_ptr(), Value::layout(cap)) };
        }
    }
}

impl Default for Value {
    fn default() -> Value {
        Value::new()
    }
}

impl Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for Value {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl Clone for Value {
    /// A copy at the exact size (slack capacity is not copied).
    fn clone(&self) -> Value {
        Value::from_slice(self)
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Value {}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl From<&[u8]> for Value {
    fn from(bytes: &[u8]) -> Value {
        Value::from_slice(bytes)
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Value {
        Value::from_slice(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_value_is_one_word() {
        assert_eq!(std::mem::size_of::<Value>(), 8);
        assert_eq!(std::mem::size_of::<super::super::shard::Entry>(), 24);
        // One B-tree slot of the store: 48 bytes (56 with `Box<[u8]>` keys
        // and `Vec<u8>` values, and the key allocated apart).
        assert_eq!(std::mem::size_of::<(Key, super::super::shard::Entry)>(), 48);
    }

    #[test]
    fn short_keys_are_inline_and_order_as_bytes() {
        let short = Key::from(&b"k123"[..]);
        assert!(matches!(short, Key::Inline { len: 4, .. }));
        let edge = Key::from(&[7u8; Key::INLINE][..]);
        assert!(matches!(edge, Key::Inline { .. }));
        let long = Key::from(&[7u8; Key::INLINE + 1][..]);
        assert!(matches!(long, Key::Boxed(_)));
        assert!(matches!(
            Key::from(Box::<[u8]>::from(&b"k"[..])),
            Key::Inline { .. }
        ));
        let mut keys = [
            long.clone(),
            edge.clone(),
            short.clone(),
            Key::from(&b""[..]),
        ];
        keys.sort();
        let bytes: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let mut want = bytes.clone();
        want.sort();
        assert_eq!(bytes, want);
        let map: std::collections::BTreeMap<Key, u8> =
            [(long, 1), (short, 2)].into_iter().collect();
        assert_eq!(map.get(&b"k123"[..]), Some(&2));
        assert_eq!(map.get(&[7u8; Key::INLINE + 1][..]), Some(&1));
    }

    #[test]
    fn empty_values_allocate_nothing() {
        let mut v = Value::from_slice(b"");
        assert!(v.0.is_none());
        v.extend_from_slice(b"");
        v.resize(0, 1);
        assert!(v.0.is_none());
        assert_eq!(&v[..], b"");
    }

    #[test]
    fn appends_double_the_capacity() {
        let mut v = Value::from_slice(b"ab");
        assert_eq!(v.header(), (2, 2));
        v.extend_from_slice(b"c");
        assert_eq!(v.header(), (3, 4));
        v.extend_from_slice(b"d");
        assert_eq!(v.header(), (4, 4));
        assert_eq!(&v[..], b"abcd");
        // A clone is exact.
        assert_eq!(v.clone().header(), (4, 4));
    }

    #[derive(Clone, Debug)]
    enum Step {
        Extend(Vec<u8>),
        Resize(usize, u8),
        Set(Vec<u8>),
        Poke(usize, u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Step::Extend),
            (0usize..90, any::<u8>()).prop_map(|(n, b)| Step::Resize(n, b)),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Step::Set),
            (0usize..90, any::<u8>()).prop_map(|(i, b)| Step::Poke(i, b)),
        ]
    }

    proptest! {
        /// Every operation does to a `Value` what it does to a `Vec<u8>`.
        #[test]
        fn behaves_like_a_vec(steps in prop::collection::vec(step(), 0..30)) {
            let mut v = Value::new();
            let mut model: Vec<u8> = Vec::new();
            for s in steps {
                match s {
                    Step::Extend(b) => { v.extend_from_slice(&b); model.extend_from_slice(&b); }
                    Step::Resize(n, b) => { v.resize(n, b); model.resize(n, b); }
                    Step::Set(b) => { v = Value::from(&b[..]); model = b; }
                    Step::Poke(i, b) => {
                        if i < model.len() { v[i] = b; model[i] = b; }
                    }
                }
                prop_assert_eq!(&v[..], &model[..]);
                let (len, cap) = v.header();
                prop_assert!(len <= cap);
                prop_assert_eq!(v.clone(), Value::from(model.clone()));
            }
        }
    }
}
