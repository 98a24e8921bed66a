//! The one random generator of the analyzer (synthetic traces, bootstrap resampling): SplitMix64, small,
//! fast and the same on every machine, so a seed always gives the same traces and the same verdicts.

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A generator seeded by `bytes` alone: the same text seeds the same sequence in every run and build.
    pub fn from_bytes(bytes: &[u8]) -> Rng {
        let mut rng = Rng(bytes.len() as u64);
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            rng.0 ^= u64::from_le_bytes(word);
            rng.next_u64();
        }
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (`n > 0`), without the bias of a modulo.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }

    /// A log-normal latency with this median (ns) and spread (sigma of the log).
    pub fn latency(&mut self, median_ns: f64, sigma: f64) -> i64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (median_ns * (sigma * normal).exp()).round().max(1.0) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_give_the_same_sequence_and_texts_give_different_seeds() {
        let take = |mut r: Rng| (0..4).map(|_| r.next_u64()).collect::<Vec<_>>();
        assert_eq!(take(Rng(7)), take(Rng(7)));
        assert_ne!(take(Rng::from_bytes(b"worker/noop/claim")), take(Rng::from_bytes(b"worker/noop/claim ")));
        let mut r = Rng(1);
        assert!((0..1000).all(|_| r.below(3) < 3));
    }
}
