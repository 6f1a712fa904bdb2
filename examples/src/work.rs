//! The work the scenarios and `compare` run: sha256 hashing (CPU-bound) and primality
//! checks (too small to be worth a process).

use sha2::{Digest, Sha256};

/// The data `hash_one` hashes: 64 KiB of a repeating pattern.
pub fn data() -> &'static [u8] {
    static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DATA.get_or_init(|| (0..64 * 1024).map(|i| (i % 251) as u8).collect())
}

/// sha256 of `data()` with `n` mixed in, repeated `rounds` times: a few milliseconds of CPU
/// per call at the default of the scenarios. Returns the hex digest (Python tutorial:
/// `hash_one`).
pub fn hash_one(n: u64, rounds: u32) -> String {
    let mut digest = [0u8; 32];
    for _ in 0..rounds.max(1) {
        let mut h = Sha256::new();
        h.update(n.to_le_bytes());
        h.update(digest);
        h.update(data());
        digest = h.finalize().into();
    }
    hex(&digest)
}

/// sha256 over `mib` MiB (a 1 MiB buffer hashed `mib` times): the CPU-bound task of W6.
pub fn sha256_mib(mib: u32) -> String {
    static MIB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let buf = MIB.get_or_init(|| (0..1 << 20).map(|i| (i % 251) as u8).collect());
    let mut h = Sha256::new();
    for _ in 0..mib {
        h.update(buf);
    }
    hex(&h.finalize())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Trial division: is `n` prime? A microsecond or so for numbers near a million.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        let small: Vec<u64> = (0..30).filter(|n| is_prime(*n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(1_000_003));
        assert!(!is_prime(1_000_001));
    }

    #[test]
    fn hashes_are_sha256() {
        // sha256 of the empty input.
        assert_eq!(
            hex(&Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(hash_one(1, 2), hash_one(1, 2));
        assert_ne!(hash_one(1, 2), hash_one(2, 2));
        assert_eq!(sha256_mib(0), hex(&Sha256::digest(b"")));
    }
}
