//! The seam between benchmarks and models: log-likelihoods of continuations given contexts.

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Score `continuation` after `context` (lm-evaluation-harness `loglikelihood`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogLikelihoodRequest {
    /// Text the model conditions on.
    pub context: String,
    /// Text whose log-likelihood is summed; must encode to at least one token.
    pub continuation: String,
}

impl LogLikelihoodRequest {
    /// A request for `continuation` after `context`.
    pub fn new(context: impl Into<String>, continuation: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            continuation: continuation.into(),
        }
    }
}

/// The answer to one [`LogLikelihoodRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogLikelihood {
    /// Sum over the continuation's tokens of log p(token | everything before it), natural log.
    pub log_likelihood: f64,
    /// Whether every continuation token is the model's most likely next token; `None` when the
    /// scorer does not compute it.
    pub is_greedy: Option<bool>,
    /// Number of continuation tokens.
    pub continuation_tokens: usize,
    /// Whether the input was longer than the model's window and lost tokens at the front.
    pub truncated: bool,
}

/// Anything that can score continuations: a language model with its tokenizer, or a stub in tests.
pub trait LogLikelihoodScorer {
    /// The longest input, in tokens, the model reads in one pass (its context length,
    /// `max_position_embeddings`).
    fn max_input_tokens(&self) -> usize;

    /// Tokens the model would read to score `request`: context plus continuation, minus the last
    /// continuation token (which is only predicted). The multiple-choice driver compares it with
    /// the window to decide how many worked examples a prompt keeps.
    fn input_tokens(&mut self, request: &LogLikelihoodRequest) -> Result<usize>;

    /// Scores every request, reading at most `window` tokens per input (1 ≤ `window` ≤
    /// [`max_input_tokens`](Self::max_input_tokens), else an error); the answer has one entry
    /// per request, in the same order.
    ///
    /// Inputs longer than `window` are cut at the front, as lm-evaluation-harness does
    /// (`(context + continuation)[-(window + 1):][:-1]`), and marked
    /// [`LogLikelihood::truncated`].
    fn score(
        &mut self,
        requests: &[LogLikelihoodRequest],
        window: usize,
    ) -> Result<Vec<LogLikelihood>>;
}

/// Index of the largest value, first one on ties, as `numpy.argmax`: a NaN counts as the
/// largest value, so the first NaN wins.
pub fn argmax(values: &[f64]) -> Option<usize> {
    if let Some(index) = values.iter().position(|value| value.is_nan()) {
        return Some(index);
    }
    let mut best: Option<usize> = None;
    for (index, value) in values.iter().enumerate() {
        if best.is_none_or(|best| *value > values[best]) {
            best = Some(index);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_follows_numpy() {
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[-3.0, -1.0, -1.0, -2.0]), Some(1));
        assert_eq!(argmax(&[f64::NEG_INFINITY, -5.0]), Some(1));
        // numpy.argmax([-1.0, nan, 0.0, nan]) == 1
        assert_eq!(argmax(&[-1.0, f64::NAN, 0.0, f64::NAN]), Some(1));
    }
}
