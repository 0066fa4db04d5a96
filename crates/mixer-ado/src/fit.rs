//! Fitting every domain's scaling law to the run's history (the code's
//! `compute_scaling_law_params` and `fit_scaling_law`).

use rayon::prelude::*;

use crate::history::History;
use crate::law::{FitData, LawParams, start_grid};
use crate::lbfgs::minimize;
use crate::savgol::SavitzkyGolay;
use crate::{AdoConfig, CountMode};

/// The best law for `data` over the code's 512 start points: each is minimised by L-BFGS and
/// the lowest final objective wins, the first of equals (`nanargmin`); `None` when every start
/// ends at NaN.
pub fn fit_law(data: &FitData) -> Option<LawParams> {
    let mut objective = |p: &[f64; 3], g: &mut [f64; 3]| data.objective(p, g);
    let mut best: Option<(f64, [f64; 3])> = None;
    for start in start_grid() {
        let m = minimize(&mut objective, start);
        if m.value.is_nan() {
            continue;
        }
        if best.is_none_or(|(v, _)| m.value < v) {
            best = Some((m.value, m.x));
        }
    }
    best.map(|(_, x)| LawParams::from_array(x))
}

/// The points of domain `k`'s fit: every `fit_stride`-th history row from `ignore_steps` on,
/// with the cumulative count n (all sequences, or the domain's own, by `count`) and the
/// Savitzky-Golay-smoothed training loss at that row. In `domain` mode, rows before the domain
/// was first drawn (n = 0) are left out.
pub fn fit_data(
    history: &History,
    k: usize,
    config: &AdoConfig,
    filter: &SavitzkyGolay,
) -> FitData {
    let losses = history.loss_column(k);
    let counts = match config.count {
        CountMode::Shared => history.cumulative_totals(),
        CountMode::Domain => history.cumulative_column(k),
    };
    let stride = config.fit_stride as usize;
    let start = config.ignore_steps as usize;
    FitData::new(
        (start..history.rows())
            .step_by(stride)
            .filter(|&row| counts[row] > 0)
            .filter_map(|row| Some((counts[row] as f64, filter.smooth_at(&losses, row)?))),
    )
}

/// Every domain's law fitted to `history`, or `None` when any parameter is not finite (the
/// code's `check_valid`: the previous laws are then kept). Domains are fitted in parallel on
/// the caller's rayon pool (in a training run, the run's share of the cores, not every core of
/// the machine, which `reproduce --jobs` shares among runs); each fit depends only on its own
/// domain's data, so the result does not depend on the number of threads.
pub fn fit_all(history: &History, config: &AdoConfig) -> Option<Vec<LawParams>> {
    let filter = SavitzkyGolay::new(
        config.smoothing_window as usize,
        config.smoothing_order as usize,
    );
    let laws: Vec<Option<LawParams>> = (0..history.domains())
        .into_par_iter()
        .map(|domain| fit_law(&fit_data(history, domain, config, &filter)))
        .collect();
    laws.into_iter()
        .map(|law| law.filter(LawParams::is_finite))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_law_is_recovered_from_its_own_points() {
        let law = LawParams {
            a: 1.5,
            e: 0.8,
            alpha: 0.3,
        };
        let data = FitData::new((1..=60).map(|i| {
            let n = 256.0 * i as f64;
            (n, law.loss(n))
        }));
        let fit = fit_law(&data).expect("finite");
        // On exact points the objective's only non-zero term is the constant −0.001, so the
        // optimum is the law itself, to the optimiser's gradient tolerance.
        for n in [256.0, 4096.0, 15_360.0] {
            let rel = (fit.loss(n) - law.loss(n)).abs() / law.loss(n);
            assert!(rel < 1e-6, "n = {n}: {fit:?} vs {law:?}");
        }
    }
}
