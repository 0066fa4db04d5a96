//! What a training step tells the mixer: per-domain sums and counts.
//!
//! Everything is a sum or a count so that data-parallel ranks can add their feedback together
//! (an all-reduce with `+`) before the mixer sees it; means are derived at the end.

use serde::{Deserialize, Serialize};

use crate::{DomainSet, MixingError, Result};

/// The feedback of one domain in one optimizer step.
///
/// A domain is *drawn* in a step when `loss_count > 0`. How the loss terms are formed is the
/// trainer's choice and is recorded by `loss_count`: with homogeneous micro-batches (the paper's
/// Algorithm 1) each term is one micro-batch's mean token cross-entropy, so `loss_sum` is the
/// paper's L_{D_i} and `loss_sum / loss_count` is the reference code's mean loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainFeedback {
    /// Sum of this domain's training-loss terms (nats), each a mean token cross-entropy.
    pub loss_sum: f64,
    /// Number of loss terms in `loss_sum` (micro-batches, or sequences for mixed batches); 0 if not drawn.
    pub loss_count: u64,
    /// Number of training sequences of this domain in the step.
    pub sequences: u64,
    /// Number of loss-bearing tokens of this domain in the step.
    pub tokens: u64,
    /// DoReMi: sum over this domain's tokens of max(proxy loss − reference loss, 0), clipped per token.
    pub excess_loss_sum: f64,
    /// DoReMi: number of tokens summed in `excess_loss_sum`; 0 if the domain is absent.
    pub excess_tokens: u64,
}

impl DomainFeedback {
    /// Number of `f64` slots one domain takes in [`StepFeedback::write_flat`].
    pub const FLAT_LEN: usize = 6;

    /// Whether the domain was drawn (has at least one loss term) this step.
    pub fn drawn(&self) -> bool {
        self.loss_count > 0
    }

    /// Mean loss term (`loss_sum / loss_count`), if drawn.
    pub fn loss_mean(&self) -> Option<f64> {
        self.drawn().then(|| self.loss_sum / self.loss_count as f64)
    }

    /// Mean per-token excess loss, if the domain has reference-model feedback this step.
    pub fn excess_loss_mean(&self) -> Option<f64> {
        (self.excess_tokens > 0).then(|| self.excess_loss_sum / self.excess_tokens as f64)
    }

    /// Adds another rank's feedback for the same domain.
    pub fn merge(&mut self, other: &DomainFeedback) {
        self.loss_sum += other.loss_sum;
        self.loss_count += other.loss_count;
        self.sequences += other.sequences;
        self.tokens += other.tokens;
        self.excess_loss_sum += other.excess_loss_sum;
        self.excess_tokens += other.excess_tokens;
    }
}

/// The feedback of one optimizer step, one [`DomainFeedback`] per domain in [`DomainSet`] order.
///
/// The trainer keeps one value, [`clear`](Self::clear)s it at the start of a step and fills it
/// with [`add_loss`](Self::add_loss) / [`add_excess_loss`](Self::add_excess_loss), so the hot
/// path allocates nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFeedback {
    domains: Vec<DomainFeedback>,
}

impl StepFeedback {
    /// Empty feedback (nothing drawn) for `num_domains` domains.
    pub fn new(num_domains: usize) -> Self {
        Self {
            domains: vec![DomainFeedback::default(); num_domains],
        }
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    /// Whether there are no domains at all.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Resets every domain to "not drawn", keeping the allocation.
    pub fn clear(&mut self) {
        self.domains.fill(DomainFeedback::default());
    }

    /// Per-domain feedback in domain order.
    pub fn domains(&self) -> &[DomainFeedback] {
        &self.domains
    }

    /// Mutable per-domain feedback in domain order.
    pub fn domains_mut(&mut self) -> &mut [DomainFeedback] {
        &mut self.domains
    }

    /// Records one loss term (e.g. one micro-batch's mean token loss) of domain `domain`.
    ///
    /// # Panics
    /// If `domain` is out of range: indices come from the mixer's [`DomainSet`], never from input.
    pub fn add_loss(&mut self, domain: usize, loss: f64, sequences: u64, tokens: u64) {
        let d = &mut self.domains[domain];
        d.loss_sum += loss;
        d.loss_count += 1;
        d.sequences += sequences;
        d.tokens += tokens;
    }

    /// Records reference-model excess loss of domain `domain`: `excess_sum` is the sum over
    /// `tokens` tokens of max(proxy − reference, 0).
    ///
    /// # Panics
    /// If `domain` is out of range.
    pub fn add_excess_loss(&mut self, domain: usize, excess_sum: f64, tokens: u64) {
        let d = &mut self.domains[domain];
        d.excess_loss_sum += excess_sum;
        d.excess_tokens += tokens;
    }

    /// Adds another rank's feedback of the same step (the all-reduce, done on the host).
    pub fn merge(&mut self, other: &StepFeedback) -> Result<()> {
        if other.len() != self.len() {
            return Err(MixingError::FeedbackShape {
                expected: self.len(),
                got: other.len(),
            });
        }
        for (a, b) in self.domains.iter_mut().zip(&other.domains) {
            a.merge(b);
        }
        Ok(())
    }

    /// Writes the feedback as `len() * DomainFeedback::FLAT_LEN` numbers into `out` (cleared
    /// first), for an all-reduce over a flat device buffer. Counts are exact below 2^53.
    pub fn write_flat(&self, out: &mut Vec<f64>) {
        out.clear();
        for d in &self.domains {
            out.extend_from_slice(&[
                d.loss_sum,
                d.loss_count as f64,
                d.sequences as f64,
                d.tokens as f64,
                d.excess_loss_sum,
                d.excess_tokens as f64,
            ]);
        }
    }

    /// Reads back what [`write_flat`](Self::write_flat) wrote (after summing over ranks).
    pub fn read_flat(&mut self, flat: &[f64]) -> Result<()> {
        if flat.len() != self.len() * DomainFeedback::FLAT_LEN {
            return Err(MixingError::FeedbackShape {
                expected: self.len(),
                got: flat.len() / DomainFeedback::FLAT_LEN,
            });
        }
        for (d, chunk) in self
            .domains
            .iter_mut()
            .zip(flat.chunks_exact(DomainFeedback::FLAT_LEN))
        {
            // Counts travel as f64; rounding absorbs any reduction noise on exact integers.
            let count = |x: f64| if x > 0.0 { x.round() as u64 } else { 0 };
            d.loss_sum = chunk[0];
            d.loss_count = count(chunk[1]);
            d.sequences = count(chunk[2]);
            d.tokens = count(chunk[3]);
            d.excess_loss_sum = chunk[4];
            d.excess_tokens = count(chunk[5]);
        }
        Ok(())
    }

    /// Checks the feedback before a mixer learns from it: the right number of domains, losses
    /// finite and non-negative, and no loss sum without a count. The error names the domain.
    ///
    /// O(K) and allocation-free unless it fails.
    pub fn validate(&self, domains: &DomainSet) -> Result<()> {
        if self.len() != domains.len() {
            return Err(MixingError::FeedbackShape {
                expected: domains.len(),
                got: self.len(),
            });
        }
        for (i, d) in self.domains.iter().enumerate() {
            let bad = |field: &'static str, value: f64, reason: &'static str| {
                Err(MixingError::InvalidFeedback {
                    domain: domains.name(i).unwrap_or("?").to_owned(),
                    field,
                    value,
                    reason,
                })
            };
            if !d.loss_sum.is_finite() {
                return bad("loss_sum", d.loss_sum, "losses must be finite");
            }
            if d.loss_sum < 0.0 {
                return bad(
                    "loss_sum",
                    d.loss_sum,
                    "cross-entropy losses are never negative",
                );
            }
            if d.loss_count == 0 && d.loss_sum != 0.0 {
                return bad("loss_sum", d.loss_sum, "a loss sum needs loss_count > 0");
            }
            if !d.excess_loss_sum.is_finite() {
                return bad(
                    "excess_loss_sum",
                    d.excess_loss_sum,
                    "losses must be finite",
                );
            }
            if d.excess_loss_sum < 0.0 {
                return bad(
                    "excess_loss_sum",
                    d.excess_loss_sum,
                    "excess losses are clipped at 0 per token, so their sum is never negative",
                );
            }
            if d.excess_tokens == 0 && d.excess_loss_sum != 0.0 {
                return bad(
                    "excess_loss_sum",
                    d.excess_loss_sum,
                    "an excess-loss sum needs excess_tokens > 0",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> DomainSet {
        DomainSet::new(["a", "b"]).expect("valid")
    }

    #[test]
    fn add_and_means() {
        let mut fb = StepFeedback::new(2);
        fb.add_loss(0, 3.0, 60, 61_440);
        fb.add_loss(0, 2.0, 60, 61_440);
        assert!(fb.domains()[0].drawn());
        assert!(!fb.domains()[1].drawn());
        assert_eq!(fb.domains()[0].loss_sum, 5.0);
        assert_eq!(fb.domains()[0].loss_mean(), Some(2.5));
        assert_eq!(fb.domains()[0].sequences, 120);
        assert_eq!(fb.domains()[1].loss_mean(), None);
        fb.add_excess_loss(1, 3.0, 4);
        assert_eq!(fb.domains()[1].excess_loss_mean(), Some(0.75));
        fb.clear();
        assert_eq!(fb, StepFeedback::new(2));
    }

    #[test]
    fn merge_and_flat_round_trip_equal_single_rank_sums() {
        let mut rank0 = StepFeedback::new(2);
        rank0.add_loss(0, 3.0, 1, 10);
        let mut rank1 = StepFeedback::new(2);
        rank1.add_loss(0, 1.0, 1, 10);
        rank1.add_loss(1, 2.0, 2, 20);
        rank1.add_excess_loss(1, 0.5, 20);

        let mut merged = rank0.clone();
        merged.merge(&rank1).expect("same shape");

        let (mut f0, mut f1) = (Vec::new(), Vec::new());
        rank0.write_flat(&mut f0);
        rank1.write_flat(&mut f1);
        let summed: Vec<f64> = f0.iter().zip(&f1).map(|(a, b)| a + b).collect();
        let mut reduced = StepFeedback::new(2);
        reduced.read_flat(&summed).expect("right length");
        assert_eq!(reduced, merged);
        assert_eq!(merged.domains()[0].loss_count, 2);
        assert_eq!(merged.domains()[1].excess_tokens, 20);
        assert!(merged.merge(&StepFeedback::new(3)).is_err());
        assert!(reduced.read_flat(&summed[1..]).is_err());
    }

    #[test]
    fn validate_names_the_domain_and_field() {
        let mut fb = StepFeedback::new(2);
        fb.add_loss(1, f64::NAN, 1, 1);
        let err = fb.validate(&set()).expect_err("NaN");
        let msg = err.to_string();
        assert!(msg.contains("\"b\"") && msg.contains("loss_sum"), "{msg}");

        let mut fb = StepFeedback::new(2);
        fb.add_loss(0, -0.1, 1, 1);
        assert!(fb.validate(&set()).is_err());

        let mut fb = StepFeedback::new(2);
        fb.add_loss(0, f64::INFINITY, 1, 1);
        assert!(fb.validate(&set()).is_err());

        let mut fb = StepFeedback::new(2);
        fb.domains_mut()[0].loss_sum = 1.0;
        assert!(fb.validate(&set()).is_err(), "sum without count");

        let mut fb = StepFeedback::new(2);
        fb.add_excess_loss(0, -1.0, 3);
        assert!(fb.validate(&set()).is_err());

        assert!(StepFeedback::new(3).validate(&set()).is_err());

        let mut fb = StepFeedback::new(2);
        fb.add_loss(0, 0.0, 1, 1);
        fb.add_loss(1, 50.0, 1, 1);
        fb.validate(&set()).expect("0 and 50 are valid losses");
    }
}
