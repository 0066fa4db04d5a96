//! Natural-language-like text from word-level Markov chains, easy and hard.
//!
//! Both chains draw each next word from a fixed successor list of the previous word with
//! Zipf-like weights, and end a sentence after each word with a fixed probability.
//!
//! - **Easy**: 120 words, 4 successors with weights 8:4:2:1, order 1. A bigram table of 480
//!   entries is all there is to learn; the loss falls fast to its floor.
//! - **Hard**: 4,000 words, 24 successors with weights 1/rank, order 2: which successor gets
//!   which weight is rotated by the class (one of 4) of the word two back. A model gains in
//!   three stages (unigram, bigram, the second-order rotation) over 96,000 list entries, so it
//!   keeps learning long after the easy chain has converged.
//!
//! The entropy rates (the irreducible loss) are exact functions of these weights, see
//! [`MarkovChain::entropy_bits_per_word`].

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::DocumentSource;

/// A word-level chain over a vocabulary, with its successor lists drawn from a seed.
#[derive(Debug, Clone)]
pub(crate) struct MarkovChain {
    vocab: Vec<String>,
    /// Successor word ids (into `vocab`) of each context word; index `vocab.len()` is the
    /// sentence start.
    successors: Vec<Vec<u32>>,
    /// Cumulative weights of successor ranks.
    cumulative: Vec<f64>,
    /// Number of classes of the word two back; 1 makes the chain first-order.
    classes: usize,
    /// Probability that a sentence ends after a word.
    end_probability: f64,
    weights: Vec<f64>,
}

impl MarkovChain {
    /// The easy chain over `vocab` (order 1, 4 successors weighted 8:4:2:1).
    pub fn easy(vocab: &[String], rng: &mut ChaCha8Rng) -> Self {
        Self::new(vocab, vec![8.0, 4.0, 2.0, 1.0], 1, 0.1, rng)
    }

    /// The hard chain over `vocab` (order 2 through 4 rotation classes, 24 successors, 1/rank).
    pub fn hard(vocab: &[String], rng: &mut ChaCha8Rng) -> Self {
        let weights = (1..=24).map(|r| 1.0 / r as f64).collect();
        Self::new(vocab, weights, 4, 1.0 / 14.0, rng)
    }

    fn new(
        vocab: &[String],
        weights: Vec<f64>,
        classes: usize,
        end_probability: f64,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let k = weights.len();
        let n = vocab.len();
        let successors = (0..=n)
            .map(|_| {
                let mut list: Vec<u32> = Vec::with_capacity(k);
                while list.len() < k {
                    let w = rng.random_range(0..n as u32);
                    if !list.contains(&w) {
                        list.push(w);
                    }
                }
                list
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        MarkovChain {
            vocab: vocab.to_vec(),
            successors,
            cumulative,
            classes,
            end_probability,
            weights,
        }
    }

    /// Entropy of the next word given the full context, in bits: the successor weights' entropy
    /// plus the sentence-end coin. This is the loss floor a perfect model reaches (per word, not
    /// per token), leaving aside the sentence-start distribution and document lengths.
    pub fn entropy_bits_per_word(&self) -> f64 {
        let total: f64 = self.weights.iter().sum();
        let h_word: f64 = self
            .weights
            .iter()
            .map(|w| w / total)
            .map(|p| -p * p.log2())
            .sum();
        let e = self.end_probability;
        h_word + (-e * e.log2() - (1.0 - e) * (1.0 - e).log2())
    }

    fn next(&self, two_back: usize, previous: usize, rng: &mut ChaCha8Rng) -> usize {
        let u: f64 = rng.random();
        let rank = self
            .cumulative
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.cumulative.len() - 1);
        let k = self.cumulative.len();
        // The word two back selects a rotation of the weights over the successor list.
        let shift = (two_back % self.classes) * (k / self.classes);
        self.successors[previous][(rank + shift) % k] as usize
    }
}

/// Documents of 150-400 words from a chain, in sentences and paragraphs.
pub(crate) struct MarkovSource<'a> {
    pub chain: &'a MarkovChain,
    pub rng: ChaCha8Rng,
}

impl DocumentSource for MarkovSource<'_> {
    fn next_document(&mut self, out: &mut String) {
        let chain = self.chain;
        let start = chain.vocab.len();
        let words = self.rng.random_range(150..=400);
        let (mut two_back, mut previous) = (start, start);
        let mut sentence_start = true;
        for i in 0..words {
            let w = chain.next(two_back, previous, &mut self.rng);
            let word = &chain.vocab[w];
            if sentence_start {
                let mut c = word.chars();
                if let Some(first) = c.next() {
                    out.extend(first.to_uppercase());
                    out.push_str(c.as_str());
                }
            } else {
                out.push_str(word);
            }
            (two_back, previous) = (previous, w);
            sentence_start = i + 1 == words || self.rng.random_bool(chain.end_probability);
            if sentence_start {
                out.push('.');
                (two_back, previous) = (start, start);
                if i + 1 < words {
                    out.push_str(if self.rng.random_bool(0.2) {
                        "\n\n"
                    } else {
                        " "
                    });
                }
            } else {
                out.push(' ');
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn entropy_rates_order_easy_below_hard() {
        let vocab: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let easy = MarkovChain::easy(&vocab[..120], &mut rng);
        let hard = MarkovChain::hard(&vocab, &mut rng);
        // 8:4:2:1 -> 1.6402 bits, plus H(0.1) = 0.4690.
        assert!(
            (easy.entropy_bits_per_word() - 2.1092).abs() < 1e-3,
            "{}",
            easy.entropy_bits_per_word()
        );
        assert!(hard.entropy_bits_per_word() > easy.entropy_bits_per_word() + 1.5);
    }

    #[test]
    fn first_order_chain_only_emits_listed_successors() {
        let vocab: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let chain = MarkovChain::easy(&vocab, &mut rng);
        for _ in 0..1000 {
            let prev = rng.random_range(0..50);
            let next = chain.next(rng.random_range(0..50), prev, &mut rng);
            assert!(chain.successors[prev].contains(&(next as u32)));
        }
    }
}
