//! [`FutureHasher`]: a cheap, cache-friendly hasher for futures, which hash by identity.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for future handles, which hash by identity (an address, written as one
/// `usize`).
///
/// It keeps an address's low bits in the hash's low bits, so futures allocated one after
/// another land in neighbouring buckets: building or scanning a set of a million futures
/// then walks memory in order instead of at random, which on small virtual machines (where
/// every cache and TLB miss is expensive) is ten times faster than SipHash. The top seven
/// bits — hashbrown's per-entry tag — are scrambled so lookups stay cheap. Anything other
/// than a single integer is mixed FxHash-style.
///
/// It is not DoS-resistant; addresses are not chosen by an attacker. Use it for sets of
/// futures (see [`FutureSet`]), not for untrusted keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct FutureHasher {
    hash: u64,
    written: bool,
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;
const TAG: u64 = 0x7f << 57;

impl Hasher for FutureHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        if self.written {
            self.hash = (self.hash.rotate_left(5) ^ n).wrapping_mul(K);
        } else {
            self.written = true;
            // Heap blocks are 16-byte aligned: drop the always-zero bits.
            let a = n >> 4;
            self.hash = (a & !TAG) | (a.wrapping_mul(K) & TAG);
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Builds [`FutureHasher`]s.
pub type BuildFutureHasher = BuildHasherDefault<FutureHasher>;

/// A set of future handles ([`FutureHasher`]): what [`wait`](crate::wait) returns.
pub type FutureSet<F> = HashSet<F, BuildFutureHasher>;

pub(crate) type IdMap<K, V> = HashMap<K, V, BuildFutureHasher>;
