//! Batch plans: which domain each sequence of a step comes from.

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// How domains are drawn for a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One domain per micro-batch (homogeneous micro-batches), as in the paper.
    #[default]
    MicroBatch,
    /// One domain per sequence: the mixed micro-batches the paper suggests (and the code later
    /// used during warm-up) against the early perplexity bump of homogeneous batches.
    Sequence,
}

/// The domains of one optimizer step: `domains[m][s]` is the domain index of sequence `s` of
/// micro-batch `m`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlan {
    /// Domain index per sequence, grouped by micro-batch.
    pub domains: Vec<Vec<usize>>,
}

/// A uniform draw in [0, 1) from the top 53 bits: fixed here so data order never changes with
/// library versions.
pub fn uniform01(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Draws an index with probability proportional to `weights` (inverse CDF).
pub fn draw(weights: &[f64], rng: &mut impl RngCore) -> usize {
    let total: f64 = weights.iter().sum();
    let u = uniform01(rng) * total;
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if u < acc {
            return i;
        }
    }
    // Rounding can leave u at the very top: give it to the last domain with positive weight.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

impl BatchPlan {
    /// Draws the plan of one step from the sampling distribution `weights`.
    pub fn draw(
        weights: &[f64],
        micro_batches: usize,
        micro_batch_size: usize,
        granularity: Granularity,
        rng: &mut impl RngCore,
    ) -> BatchPlan {
        let domains = (0..micro_batches)
            .map(|_| match granularity {
                Granularity::MicroBatch => vec![draw(weights, rng); micro_batch_size],
                Granularity::Sequence => {
                    (0..micro_batch_size).map(|_| draw(weights, rng)).collect()
                }
            })
            .collect();
        BatchPlan { domains }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn micro_batch_plans_are_homogeneous_and_sequence_plans_mix() {
        let w = [0.25, 0.25, 0.5];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut mixed = false;
        for _ in 0..50 {
            let p = BatchPlan::draw(&w, 4, 8, Granularity::MicroBatch, &mut rng);
            assert!(
                p.domains
                    .iter()
                    .all(|mb| mb.len() == 8 && mb.iter().all(|&d| d == mb[0]))
            );
            let q = BatchPlan::draw(&w, 4, 8, Granularity::Sequence, &mut rng);
            mixed |= q.domains.iter().any(|mb| mb.iter().any(|&d| d != mb[0]));
        }
        assert!(mixed);
    }

    #[test]
    fn draws_follow_weights() {
        // 100k draws: each frequency within 5 standard deviations of its weight.
        let w = [0.1, 0.0, 0.6, 0.3];
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let n = 100_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[draw(&w, &mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        for (c, p) in counts.iter().zip(w) {
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (*c as f64 - n as f64 * p).abs() <= 5.0 * sd + 1e-9,
                "{counts:?}"
            );
        }
    }
}
