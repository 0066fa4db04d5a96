//! Uniformly random words: nothing to learn.
//!
//! Each word is drawn independently and uniformly from a vocabulary of 1,024 pseudo-words, so
//! the entropy is exactly 10 bits per word and no model can do better than the unigram
//! distribution. Its loss stays the highest of all domains for the whole run: the known failure
//! case of a bandit that rewards high loss (ODM keeps sampling it).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::DocumentSource;

/// Documents of 150-400 uniformly random words separated by single spaces.
pub(crate) struct RandomSource<'a> {
    pub vocab: &'a [String],
    pub rng: ChaCha8Rng,
}

impl DocumentSource for RandomSource<'_> {
    fn next_document(&mut self, out: &mut String) {
        let n = self.rng.random_range(150..=400);
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&self.vocab[self.rng.random_range(0..self.vocab.len())]);
        }
        out.push('\n');
    }
}
