//! The learning-rate schedule of the paper: linear warm-up, then cosine decay to a floor.

use serde::{Deserialize, Serialize};

/// Linear warm-up to `peak_lr`, then cosine decay to `min_lr_ratio * peak_lr` at `total_steps`
/// (GPT-NeoX's `warmup` + `lr-decay-style: cosine`; the paper: 2.5e-4 peak, 1% warm-up, 2.5e-5 floor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrSchedule {
    /// Peak learning rate, reached at the end of warm-up.
    pub peak_lr: f64,
    /// Warm-up length as a fraction of `total_steps` (the paper: 0.01).
    pub warmup_fraction: f64,
    /// Final learning rate as a fraction of the peak (the paper: 0.1).
    pub min_lr_ratio: f64,
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule {
            peak_lr: 2.5e-4,
            warmup_fraction: 0.01,
            min_lr_ratio: 0.1,
        }
    }
}

impl LrSchedule {
    /// Warm-up steps for a run of `total_steps`.
    pub fn warmup_steps(&self, total_steps: u64) -> u64 {
        (self.warmup_fraction * total_steps as f64).round() as u64
    }

    /// The learning rate of 1-based `step` in a run of `total_steps`.
    ///
    /// During warm-up the rate is `peak * step / warmup` (never 0: burn's optimisers and the
    /// first step both need a positive rate).
    pub fn lr(&self, step: u64, total_steps: u64) -> f64 {
        let warmup = self.warmup_steps(total_steps);
        let min_lr = self.peak_lr * self.min_lr_ratio;
        if step <= warmup && warmup > 0 {
            return self.peak_lr * step as f64 / warmup as f64;
        }
        let decay_steps = total_steps.saturating_sub(warmup).max(1);
        let progress = ((step - warmup) as f64 / decay_steps as f64).clamp(0.0, 1.0);
        min_lr + (self.peak_lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_papers_schedule() {
        // Paper: warm-up over 1000 of 100,000 steps to 2.5e-4, cosine to 2.5e-5.
        let s = LrSchedule::default();
        assert_eq!(s.warmup_steps(100_000), 1000);
        assert!((s.lr(1, 100_000) - 2.5e-7).abs() < 1e-18);
        assert!((s.lr(500, 100_000) - 1.25e-4).abs() < 1e-15);
        assert!((s.lr(1000, 100_000) - 2.5e-4).abs() < 1e-15);
        // Half-way through the decay the cosine term is 0.5: 2.5e-5 + 2.25e-4 / 2.
        assert!((s.lr(50_500, 100_000) - 1.375e-4).abs() < 1e-15);
        assert!((s.lr(100_000, 100_000) - 2.5e-5).abs() < 1e-15);
        let mut prev = f64::INFINITY;
        for step in 1000..=100_000 {
            let lr = s.lr(step, 100_000);
            assert!(lr <= prev + 1e-18);
            prev = lr;
        }
    }

    #[test]
    fn no_warmup_starts_at_peak() {
        let s = LrSchedule {
            warmup_fraction: 0.0,
            ..Default::default()
        };
        assert!((s.lr(0, 10) - 2.5e-4).abs() < 1e-15);
        assert!(s.lr(1, 10) < 2.5e-4);
    }
}
