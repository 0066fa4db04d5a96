//! ADO in a comparison: its schedule scaled from the reference's 60,000-step runs to the
//! preset's budget.
//!
//! The reference (`configs/loader/pile_ado.yaml`, `ado.py`) ignores the first 1000 steps,
//! first fits at step 1000, refits every 1000 steps, smooths with a 101-step window and fits
//! every 10th step. For runs of 60,000 steps or more the method uses exactly that. A shorter
//! run keeps the proportions that matter:
//! - ignore steps/60 steps (1000 of 60,000), at least 1, and refit every steps/60 steps but
//!   at most every 10 steps: a refit costs about a second on a 2-core CPU, and below 600 steps
//!   the reference's 60 refits per run would double a short run's time;
//! - fit at most ~200 points (stride = steps/200, at least 1), so a refit costs the same at
//!   every budget (the reference's last fits use up to 6,000 points, on TPU hosts);
//! - a window of ten strides (the reference's 101 = 10 × 10 + 1), odd;
//! - the first fit once a whole window of history exists (start ≥ window − 1) and at least
//!   one point lies after the ignored steps.

use mixlab_mixer_ado::AdoConfig;

use crate::method::Method;
use crate::preset::Preset;

/// The run length of the reference's schedule.
const REFERENCE_STEPS: u64 = 60_000;
/// Short runs refit at most this often.
const MIN_REFIT_INTERVAL: u64 = 10;

/// ADO's config for a run of `steps` optimizer steps (see the module documentation).
pub fn ado_config(steps: u64) -> AdoConfig {
    let reference = AdoConfig::default();
    if steps >= REFERENCE_STEPS {
        return reference;
    }
    let unit = (steps / 60).max(1);
    let stride = (steps / 200).max(1);
    let window = 10 * stride + 1;
    let start = unit.max(window - 1).max(unit + 1);
    AdoConfig {
        ignore_steps: unit,
        start_step: start,
        update_interval: unit.max(MIN_REFIT_INTERVAL),
        smoothing_window: window,
        fit_stride: stride,
        ..reference
    }
}

/// The `ado` method of `reproduce`: the reference code's rules, its natural (token-proportional)
/// prior, one domain per sequence as its loader draws them.
pub fn ado_method(preset: &Preset) -> Method {
    let config = ado_config(preset.steps);
    Method::per_sequence(
        "ado",
        "ADO",
        format!(
            "ADO (Jiang et al. 2025) as the reference code does it: per-domain scaling laws of the smoothed \
             training loss, refitted every {} steps from step {} (a {}-step smoothing window, one point every {} steps), sampling by \
             predicted learning speed x token-proportional prior x history; one domain per sequence",
            config.update_interval, config.start_step, config.smoothing_window, config.fit_stride
        ),
        &config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_gets_a_valid_schedule() {
        for steps in [2, 12, 160, 2400, 59_999, 100_000] {
            let c = ado_config(steps);
            let c = c
                .validate()
                .unwrap_or_else(|e| panic!("{steps} steps: {e}"));
            // Runs of fewer than 11 steps keep the prior throughout: no window of history.
            assert!(
                steps < 11 || c.first_fit_step() < steps,
                "{steps} steps: {c:?}"
            );
        }
        // The reference's own schedule from 60,000 steps on.
        assert_eq!(ado_config(100_000), AdoConfig::default());
        // The default preset's 2,000 steps: ignore 2000/60 = 33 steps, refit every 33, one point
        // every 2000/200 = 10 steps, a window of 10 x 10 + 1, the first fit once it is full.
        let d = ado_config(2000);
        assert_eq!(
            (
                d.ignore_steps,
                d.start_step,
                d.update_interval,
                d.smoothing_window,
                d.fit_stride
            ),
            (33, 100, 33, 101, 10)
        );
        // 2,400 steps: refit every 40 steps, at most 200 points of stride 12.
        let c = ado_config(2400);
        assert_eq!(
            (
                c.ignore_steps,
                c.start_step,
                c.update_interval,
                c.smoothing_window,
                c.fit_stride
            ),
            (40, 120, 40, 121, 12)
        );
        let q = ado_config(160);
        assert_eq!(
            (
                q.ignore_steps,
                q.start_step,
                q.update_interval,
                q.smoothing_window,
                q.fit_stride
            ),
            (2, 10, 10, 11, 1)
        );
    }
}
