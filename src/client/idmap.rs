//! Hash maps keyed by an event loop's own sequential ids (mio tokens, the
//! RESP gateway's wire ids, a server core's reply handles), with a
//! multiplicative hash instead of SipHash.
//!
//! The RESP gateway does several lookups per operation by such ids;
//! SipHash, which is there to resist keys chosen by an attacker, showed up
//! in its profile. These ids are counters the loop assigns itself, so
//! nothing from the network chooses them. Never key one of these maps by anything
//! a client sends (Redis keys use the standard hasher).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from a gateway-assigned id.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of one integer: the multiplication spreads sequential
/// ids over the high bits (hashbrown's tag) and keeps the low bits (its
/// bucket index) a bijection of the id's low bits.
#[derive(Default)]
pub struct IdHasher(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by integer keys; correct (if slow) for anything else.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(GOLDEN);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_tags_and_buckets() {
        let mut tags = std::collections::HashSet::new();
        let mut buckets = std::collections::HashSet::new();
        for id in 0u64..1024 {
            let mut h = IdHasher::default();
            h.write_u64(id);
            let x = h.finish();
            tags.insert(x >> 57);
            buckets.insert(x & 1023);
        }
        assert_eq!(tags.len(), 128, "every 7-bit tag used");
        assert_eq!(buckets.len(), 1024, "low bits a bijection");
    }
}
