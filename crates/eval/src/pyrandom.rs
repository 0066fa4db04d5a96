//! CPython's `random.Random`, as far as lm-evaluation-harness 0.3.0 uses it.
//!
//! The paper protocol draws its few-shot examples with `rnd = random.Random(); rnd.seed(42)`,
//! `rnd.shuffle(test_docs)` and then `rnd.sample(fewshot_docs, k + 1)` per document. Reproducing
//! those draws bit for bit needs CPython's generator (MT19937 seeded by `init_by_array`) and its
//! exact `_randbelow`, `shuffle` and `sample` algorithms, which have been unchanged from Python 3.2
//! to at least 3.12. Only integer seeds and populations below 2^32 are supported.

/// MT19937 state size in 32-bit words.
const N: usize = 624;
/// MT19937 middle word offset.
const M: usize = 397;

/// CPython's `random.Random` generator (the subset lm-evaluation-harness needs).
#[derive(Clone)]
pub struct PythonRandom {
    state: [u32; N],
    index: usize,
}

impl std::fmt::Debug for PythonRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl PythonRandom {
    /// `random.Random(seed)` for a non-negative integer seed.
    pub fn new(seed: u64) -> Self {
        // CPython seeds an int with init_by_array over its 32-bit words, least significant first;
        // zero becomes the one-word key [0].
        let mut key = vec![seed as u32];
        if seed >> 32 != 0 {
            key.push((seed >> 32) as u32);
        }
        let mut generator = Self {
            state: [0; N],
            index: N,
        };
        generator.init_by_array(&key);
        generator
    }

    fn init_genrand(&mut self, seed: u32) {
        self.state[0] = seed;
        for i in 1..N {
            let previous = self.state[i - 1];
            self.state[i] = 1_812_433_253u32
                .wrapping_mul(previous ^ (previous >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let previous = self.state[i - 1];
            self.state[i] = (self.state[i] ^ (previous ^ (previous >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.state[0] = self.state[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let previous = self.state[i - 1];
            self.state[i] = (self.state[i]
                ^ (previous ^ (previous >> 30)).wrapping_mul(1_566_083_941))
            .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.state[0] = self.state[N - 1];
                i = 1;
            }
        }
        self.state[0] = 0x8000_0000;
    }

    /// The next raw 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        if self.index >= N {
            for k in 0..N {
                let y = (self.state[k] & UPPER) | (self.state[(k + 1) % N] & LOWER);
                let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
                self.state[k] = self.state[(k + M) % N] ^ (y >> 1) ^ mag;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random()`: a float in [0, 1) with 53 random bits.
    pub fn random(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// `getrandbits(bits)` for 1 ≤ bits ≤ 32.
    fn getrandbits(&mut self, bits: u32) -> u32 {
        debug_assert!((1..=32).contains(&bits));
        self.next_u32() >> (32 - bits)
    }

    /// `_randbelow(n)`: uniform in [0, n) by rejection sampling on `n.bit_length()` bits.
    ///
    /// # Panics
    /// If `n` is 0 or does not fit in 32 bits (CPython raises or takes another path there).
    pub fn randbelow(&mut self, n: usize) -> usize {
        assert!(
            n > 0 && n <= u32::MAX as usize,
            "randbelow needs 0 < n < 2^32, got {n}"
        );
        let bits = usize::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(bits) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `shuffle(items)` in place (Fisher-Yates from the end, as CPython).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.randbelow(i + 1);
            items.swap(i, j);
        }
    }

    /// `sample(range(n), k)`: `k` distinct indices below `n`, in selection order.
    ///
    /// CPython switches between a pool algorithm and a set algorithm depending on `n` and `k`;
    /// both are reproduced, since they consume the generator differently.
    ///
    /// # Panics
    /// If `k > n` (CPython raises `ValueError: Sample larger than population`).
    pub fn sample_indices(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "sample of {k} from a population of {n}");
        let mut set_size = 21usize;
        if k > 5 {
            let exponent = ((k as f64 * 3.0).ln() / 4f64.ln()).ceil() as u32;
            set_size += 4usize.pow(exponent);
        }
        let mut result = Vec::with_capacity(k);
        if n <= set_size {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow(n - i);
                result.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n);
                while selected.contains(&j) {
                    j = self.randbelow(n);
                }
                selected.insert(j);
                result.push(j);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden values from CPython 3.11.7:
    //   r = random.Random(42); [r.getrandbits(32) for _ in range(3)]
    //   r = random.Random(7); r.random(), r.random()
    //   random.Random(2**40 + 5).getrandbits(32)
    #[test]
    fn raw_outputs_match_cpython() {
        let mut r = PythonRandom::new(42);
        assert_eq!(
            [r.next_u32(), r.next_u32(), r.next_u32()],
            [2_746_317_213, 478_163_327, 107_420_369]
        );
        let mut r = PythonRandom::new(7);
        assert_eq!(r.random(), 0.323_832_764_833_162_37);
        assert_eq!(r.random(), 0.150_849_173_924_501_92);
        assert_eq!(PythonRandom::new((1 << 40) + 5).next_u32(), 2_166_296_868);
        assert_eq!(PythonRandom::new(42).random(), 0.639_426_798_457_883_7);
    }

    // r = random.Random(42); x = list(range(10)); r.shuffle(x)          -> [7, 3, 2, 8, 5, 6, 9, 4, 0, 1]
    // random.Random(42).sample(range(20), 6)                            -> [3, 0, 8, 7, 16, 2]   (pool)
    // random.Random(42).sample(range(100), 6)                           -> [81, 14, 3, 94, 35, 31] (set)
    // r = random.Random(42); x = list(range(7)); r.shuffle(x); then r.sample(range(5), 5),
    //   r.sample(range(31), 6), r.sample(range(170), 6)
    //   -> [1, 3, 4, 2, 6, 0, 5] [1, 0, 2, 3, 4] [1, 0, 2, 6, 7, 16] [154, 6, 143, 50, 166, 139]
    // Where the two algorithms part ways (n = 40 is drawn from a pool, n = 90 by rejection from a
    // set; the other algorithm would give [3, 5, 23, 10, 19, 16] and [7, 11, 10, 46, 21, 39]):
    // random.Random(2).sample(range(40), 6)                             -> [3, 5, 38, 23, 10, 19]
    // random.Random(2).sample(range(90), 6)                             -> [7, 11, 10, 46, 21, 85]
    #[test]
    fn shuffle_and_sample_match_cpython() {
        let mut r = PythonRandom::new(42);
        let mut x: Vec<usize> = (0..10).collect();
        r.shuffle(&mut x);
        assert_eq!(x, [7, 3, 2, 8, 5, 6, 9, 4, 0, 1]);
        assert_eq!(
            PythonRandom::new(42).sample_indices(20, 6),
            [3, 0, 8, 7, 16, 2]
        );
        assert_eq!(
            PythonRandom::new(42).sample_indices(100, 6),
            [81, 14, 3, 94, 35, 31]
        );

        let mut r = PythonRandom::new(42);
        let mut x: Vec<usize> = (0..7).collect();
        r.shuffle(&mut x);
        assert_eq!(x, [1, 3, 4, 2, 6, 0, 5]);
        assert_eq!(r.sample_indices(5, 5), [1, 0, 2, 3, 4]);
        assert_eq!(r.sample_indices(31, 6), [1, 0, 2, 6, 7, 16]);
        assert_eq!(r.sample_indices(170, 6), [154, 6, 143, 50, 166, 139]);
        assert_eq!(
            PythonRandom::new(2).sample_indices(40, 6),
            [3, 5, 38, 23, 10, 19]
        );
        assert_eq!(
            PythonRandom::new(2).sample_indices(90, 6),
            [7, 11, 10, 46, 21, 85]
        );
    }
}
