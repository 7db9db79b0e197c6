//! Which shard a key belongs to.
//!
//! This module owns the key→shard function. It is part of the protocol, not
//! a server detail: every client routes requests with it, so it is specified
//! byte-for-byte in `PROTOCOL.md` (with test vectors) and must never change
//! for a deployed cluster.

/// Shard count a shard master bootstraps with unless told otherwise.
pub const DEFAULT_SHARDS: u32 = 64;

/// 64-bit FNV-1a offset basis.
pub const FNV1A64_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// 64-bit FNV-1a prime.
pub const FNV1A64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`: for each byte, XOR it into the hash, then
/// multiply by the prime (wrapping). Chosen because it is a dozen lines in
/// any language, needs no seed, and spreads short keys well enough.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = FNV1A64_OFFSET_BASIS;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV1A64_PRIME);
    }
    hash
}

/// The shard of `key` among `shards` shards: `fnv1a64(key) % shards`.
///
/// # Panics
/// If `shards` is 0: a configuration always has at least one shard, so a
/// zero here is a caller bug, not network input.
pub fn shard_of(key: &[u8], shards: u32) -> u32 {
    assert!(shards > 0, "shard_of: shard count must be positive");
    // The remainder is < shards <= u32::MAX, so the cast is lossless.
    (fnv1a64(key) % u64::from(shards)) as u32
}

/// One key of each of `shards` shards, in shard order: for shard `s`, the
/// smallest decimal number (as text) whose shard is `s`. Whole-shard
/// requests (`Scan`, `Count`, `Flush`) name their shard by a key of it;
/// finding all costs about `shards * ln(shards)` hashes of short strings.
pub fn shard_keys(shards: u32) -> Vec<bytes::Bytes> {
    let mut keys = vec![bytes::Bytes::new(); shards as usize];
    let mut left = shards;
    let mut n: u64 = 0;
    while left > 0 {
        let text = n.to_string();
        let s = shard_of(text.as_bytes(), shards) as usize;
        if keys[s].is_empty() {
            keys[s] = bytes::Bytes::from(text.into_bytes());
            left -= 1;
        }
        n += 1;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shard_of_vectors_in_protocol_md() {
        assert_eq!(fnv1a64(b"k1"), 0x08be_0f07_b562_24c1);
        assert_eq!(shard_of(b"k1", DEFAULT_SHARDS), 1);
        assert_eq!(fnv1a64(b"user:42"), 0x6c15_1ea4_dcd2_21c2);
        assert_eq!(shard_of(b"user:42", DEFAULT_SHARDS), 2);
        assert_eq!(shard_of(b"", DEFAULT_SHARDS), 37);
        assert_eq!(shard_of(b"k1", 1), 0);
    }
}
