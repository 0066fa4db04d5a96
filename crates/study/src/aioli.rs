//! Aioli in a comparison: its rounds scaled from the reference's 40,000-step, 7-domain run to
//! the preset's budget and the dataset's domains.
//!
//! The reference (`scripts/full/aioli/run.sh`) runs 200 rounds of 200 steps; each round's probes
//! (2 sweeps × 7 domains × 10 steps = 140 steps, 70% of the round) end in 15 validations. A
//! validation of every domain costs mixlab's small presets about four training steps (measured
//! in `results/quick`'s Aioli run: 2.6 s against 0.67 s per step on 2 cores), so the rounds
//! cannot keep the reference's number on a small budget. The method keeps what defines the method:
//! - rounds of at least 200 steps where the budget allows 4 of them (steps/200 rounds, as the
//!   reference); otherwise 4 rounds, or as many as fit rounds of K + 1 steps (one one-step probe
//!   per domain and one step on the learned mixture), at least one;
//! - probes take 70% of a round: two sweeps when 2K probe steps fit in that, else one, with
//!   as many steps per probe as fit (at least 1);
//! - the script's factor 0.75 (above 1/K for every K ≥ 2), η = 1, EMA 0.1, normalised A, the
//!   uniform start.

use mixlab_mixer_aioli::AioliConfig;

use crate::method::Method;
use crate::preset::Preset;

/// Steps per round of the reference's schedule.
const REFERENCE_ROUND: u64 = 200;
/// Rounds a budget too small for 200-step rounds still gets (where K allows).
const MIN_ROUNDS: u64 = 4;
/// The reference's share of a round spent on probes: 140 of 200 steps, 7/10.
const PROBE_SHARE: (u64, u64) = (7, 10);

/// Aioli's config for a run of `steps` optimizer steps over `k` domains (see the module
/// documentation).
pub fn aioli_config(steps: u64, k: usize) -> AioliConfig {
    let reference = AioliConfig::default();
    let k64 = k.max(1) as u64;
    let shortest = k64 + 1;
    let rounds = (steps / REFERENCE_ROUND)
        .max(MIN_ROUNDS)
        .min(steps / shortest)
        .max(1);
    let update_steps = (steps / rounds).max(shortest);
    let budget = update_steps * PROBE_SHARE.0 / PROBE_SHARE.1;
    let lp_rounds = if budget >= 2 * k64 { 2 } else { 1 };
    let lp_steps = (budget / (lp_rounds * k64)).max(1);
    AioliConfig {
        update_steps,
        lp_rounds,
        lp_steps,
        ..reference
    }
}

/// The `aioli` method of `reproduce`: the reference script's rules with rounds scaled to the
/// budget, one domain per sequence as its loader draws them.
pub fn aioli_method(preset: &Preset, k: usize) -> Method {
    let config = aioli_config(preset.steps, k);
    Method::per_sequence(
        "aioli",
        "Aioli",
        format!(
            "Aioli (Chen et al. 2025) as the reference code does it: rounds of {} steps, each starting with {} x K probes of {} steps \
             (factor {}) that measure every domain's validation loss to estimate the interaction matrix A, then the mixture \
             exp({} x column sums of an EMA ({}) of the normalised A); one domain per sequence",
            config.update_steps,
            config.lp_rounds,
            config.lp_steps,
            config.one_hot_factor,
            config.eta,
            config.ema
        ),
        &config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_budget_gets_a_valid_schedule() {
        for k in [1usize, 2, 7, 11, 14, 22] {
            for steps in [1, 12, 160, 2400, 40_000, 100_000] {
                let c = aioli_config(steps, k)
                    .validate()
                    .unwrap_or_else(|e| panic!("{steps} steps, K = {k}: {e}"));
                c.validate_for(k)
                    .unwrap_or_else(|e| panic!("{steps} steps, K = {k}: {e}"));
                // A round completes within the run whenever one of K + 1 steps fits.
                if steps > k as u64 {
                    assert!(c.update_steps <= steps, "{steps} steps, K = {k}: {c:?}");
                }
            }
        }
        // The reference's own shape at its budget and K = 7: 200 rounds of 200 steps, 140 of
        // them probes.
        let r = aioli_config(40_000, 7);
        assert_eq!((r.update_steps, r.lp_rounds, r.lp_steps), (200, 2, 10));
        // 2,400 steps over the 11 synthetic domains: 12 rounds of 200 steps, probes
        // 2 x 11 x 6 = 132 steps; the default preset's 2,000 steps: 10 such rounds.
        let t = aioli_config(2400, 11);
        assert_eq!((t.update_steps, t.lp_rounds, t.lp_steps), (200, 2, 6));
        assert_eq!(aioli_config(2000, 11), t);
        // quick (160 steps): 4 rounds of 40 steps, probes 2 x 11 x 1 = 22 of the 28 allowed.
        let q = aioli_config(160, 11);
        assert_eq!((q.update_steps, q.lp_rounds, q.lp_steps), (40, 2, 1));
        // The paper's 1B budget over the Pile's 22 domains: 500 rounds of 200 steps, where the
        // script's probes (2 x 22 x 10 = 440 steps) would not fit; 140 steps hold 2 x 22 x 3.
        let p = aioli_config(100_000, 22);
        assert_eq!((p.update_steps, p.lp_rounds, p.lp_steps), (200, 2, 3));
    }
}
