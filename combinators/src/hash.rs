//! A fast hasher for future identities (addresses), for the crate's internal maps.
//!
//! [`FutureId`](cfutures_core::FutureId) hashes as one `usize` (an address). SipHash is
//! needlessly slow for that; a folded 128-bit multiply spreads the address's bits into both
//! the low bits (bucket index) and the high bits (hashbrown's control byte).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Not used for ids; a correct (if slower) fallback for anything else.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        let m = u128::from(self.0 ^ n).wrapping_mul(u128::from(K));
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type IdBuild = BuildHasherDefault<IdHasher>;
pub(crate) type IdMap<K, V> = HashMap<K, V, IdBuild>;
pub(crate) type IdSet<K> = HashSet<K, IdBuild>;
