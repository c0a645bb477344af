//! Patched in (see PATCHED.md): a fast hasher for the maps the send path touches on every
//! packet, keyed by SSRCs, sequence numbers and ids this endpoint assigns.
//!
//! The multiply-rotate hash of rustc's `FxHasher`, not SipHash: these keys are small
//! integers (or a short candidate-pair id), and the standard hasher cost a few percent of a
//! forwarding node's time. Not DoS-resistant; the keys are this endpoint's own or bounded by
//! what was negotiated.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap` with [`FastHasher`].
pub type FastHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The hasher of [`FastHashMap`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ (rest.len() as u64) << 56);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_keys_spread_over_the_buckets_and_stay_findable() {
        let mut map = FastHashMap::default();
        for id in 0..10_000u64 {
            map.insert(id, id * 2);
        }
        assert!((0..10_000u64).all(|id| map.get(&id) == Some(&(id * 2))));
        let mut low_bits = std::collections::HashSet::new();
        for id in 0..256u64 {
            let mut hasher = FastHasher::default();
            hasher.write_u64(id);
            low_bits.insert(hasher.finish() & 0xff);
        }
        assert_eq!(low_bits.len(), 256, "the bucket bits of 256 ids differ");
    }

    #[test]
    fn strings_that_differ_only_in_their_tail_or_length_hash_apart() {
        let hash = |s: &str| {
            let mut hasher = FastHasher::default();
            hasher.write(s.as_bytes());
            hasher.finish()
        };
        assert_ne!(hash("candidate-pair-1"), hash("candidate-pair-2"));
        assert_ne!(hash("abc"), hash("abc\0"));
    }
}
