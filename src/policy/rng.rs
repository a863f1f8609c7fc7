//! Random numbers for password generation: the OS CSPRNG, read in blocks, and integer
//! ranges drawn without modulo bias.
//!
//! Reading the OS source a block at a time keeps a batch of passwords from paying one
//! system call per character; every byte is still the kernel's and is used once. The
//! buffer holds future password material, so it is wiped when dropped.

use num_bigint::BigUint;
use num_traits::Zero;
use rand::rngs::OsRng;
use rand::TryRngCore;
use zeroize::Zeroize;

const BLOCK: usize = 512;

/// Rejection draws before giving up: each succeeds with probability above one half, so
/// running out means the OS source is broken (odds 2^-256 otherwise), never bad luck.
const MAX_DRAWS: usize = 256;

pub struct Rng {
    buf: [u8; BLOCK],
    pos: usize,
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

impl Rng {
    pub fn new() -> Rng {
        Rng {
            buf: [0; BLOCK],
            pos: BLOCK,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for b in out.iter_mut() {
            if self.pos == BLOCK {
                OsRng
                    .try_fill_bytes(&mut self.buf)
                    .expect("the OS random source works");
                self.pos = 0;
            }
            *b = self.buf[self.pos];
            self.buf[self.pos] = 0;
            self.pos += 1;
        }
    }

    /// Uniform in [0, n): draw as many bits as n - 1 has, keep the draw if below n.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "empty range");
        if n == 1 {
            return 0;
        }
        let bits = 64 - (n - 1).leading_zeros();
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let mut bytes = [0u8; 8];
        for _ in 0..MAX_DRAWS {
            self.fill(&mut bytes[..(bits as usize).div_ceil(8)]);
            let x = u64::from_le_bytes(bytes) & mask;
            if x < n {
                bytes.zeroize();
                return x;
            }
        }
        panic!("the OS random source returned {MAX_DRAWS} out-of-range draws in a row");
    }

    /// Uniform in [0, n) for a big n, the same way.
    pub fn below_big(&mut self, n: &BigUint) -> BigUint {
        assert!(!n.is_zero(), "empty range");
        let bits = (n - 1u32).bits() as usize;
        let mut bytes = vec![0u8; bits.div_ceil(8).max(1)];
        let excess = bytes.len() * 8 - bits;
        for _ in 0..MAX_DRAWS {
            self.fill(&mut bytes);
            if let Some(top) = bytes.last_mut() {
                *top &= 0xffu8.checked_shr(excess as u32).unwrap_or(0);
            }
            let x = BigUint::from_bytes_le(&bytes);
            if &x < n {
                bytes.zeroize();
                return x;
            }
        }
        panic!("the OS random source returned {MAX_DRAWS} out-of-range draws in a row");
    }
}

impl Drop for Rng {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_respected_and_covered() {
        let mut rng = Rng::new();
        for n in [1u64, 2, 3, 7, 10, 255, 256, 257, 1000] {
            let mut seen = vec![false; n as usize];
            for _ in 0..(n * 40) {
                let x = rng.below(n);
                assert!(x < n);
                seen[x as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "every value of [0, {n}) drawn");
        }
        assert!(rng.below(u64::MAX) < u64::MAX);
    }

    #[test]
    fn big_ranges_are_respected() {
        let mut rng = Rng::new();
        for n in [1u64, 2, 255, 256, 257, 1 << 40] {
            let big = BigUint::from(n);
            for _ in 0..200 {
                assert!(rng.below_big(&big) < big);
            }
        }
        let huge = BigUint::from(3u32).pow(200);
        for _ in 0..200 {
            assert!(rng.below_big(&huge) < huge);
        }
    }
}
