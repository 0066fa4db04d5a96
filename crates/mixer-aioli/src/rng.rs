//! The probe order's random source: SplitMix64 (Steele, Lea, Flood 2014) and a Fisher-Yates
//! shuffle. The reference draws each round's order with `np.random.permutation(k)` from
//! numpy's global generator; any uniform permutation is faithful, and this one is small enough
//! to transcribe into the golden test's Python (`tests/data/aioli_golden.py`) bit for bit.

/// SplitMix64: a 64-bit state, one addition and a mix per draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64 {
    /// The whole state (checkpointed as is).
    pub state: u64,
}

impl SplitMix64 {
    /// A generator whose first draw mixes `seed + γ`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n >= 1`), without modulo bias: draws below 2⁶⁴ mod n are
    /// rejected, which leaves a multiple of n equally likely values.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n >= 1, "below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let x = self.next_u64();
            if x >= threshold {
                return x % n;
            }
        }
    }

    /// A uniform permutation of `0..n` (Fisher-Yates, from the last position down).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs for seed 1234567, the sequence commonly used to check SplitMix64
    /// implementations; recomputed here with Python's unbounded integers from Vigna's
    /// `splitmix64.c` (the same arithmetic modulo 2⁶⁴).
    #[test]
    fn matches_the_published_sequence() {
        let mut r = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
    }

    #[test]
    fn permutations_are_permutations_and_cover_every_position() {
        let mut r = SplitMix64::new(7);
        let mut first = [0u32; 5];
        for _ in 0..5000 {
            let p = r.permutation(5);
            let mut s = p.clone();
            s.sort_unstable();
            assert_eq!(s, [0, 1, 2, 3, 4]);
            first[p[0]] += 1;
        }
        // Each domain comes first about 1000 times (binomial sd ≈ 28).
        assert!(first.iter().all(|&c| (850..1150).contains(&c)), "{first:?}");
        assert_eq!(SplitMix64::new(3).permutation(1), [0]);
        assert!(SplitMix64::new(3).permutation(0).is_empty());
    }

    #[test]
    fn below_is_in_range_and_unbiased_at_the_edge() {
        let mut r = SplitMix64::new(11);
        assert!((0..1000).all(|_| r.below(3) < 3));
        assert_eq!(r.below(1), 0);
        // 2^63 + 1: about half of all draws are rejected, the rest land in range.
        let n = (1u64 << 63) + 1;
        assert!((0..100).all(|_| r.below(n) < n));
    }
}
