//! ADO's policy from the fitted laws (the code's `curr_dist` and `clip_min_probability`).

use crate::law::LawParams;

/// The instantaneous distribution ρ before its floor:
/// ρ_k ∝ max(α_k, floor) · (L_k(n_k) − exp(e_k)) / n_k · μ_k · h_k^½, the predicted learning
/// speed −dL_k/dn_k weighted by the prior μ and the history h. The loss difference is computed
/// as the code computes it (predicted loss minus irreducible loss, not exp(a) n^−α directly).
/// When no domain has a positive finite weight (every slope underflows), ρ is uniform rather
/// than the code's 0/0.
pub fn instant_distribution(
    laws: &[LawParams],
    n: &[f64],
    prior: &[f64],
    history: &[f64],
    exponent_floor: f64,
    out: &mut [f64],
) {
    let mut sum = 0.0;
    for k in 0..out.len() {
        let law = &laws[k];
        let irreducible = law.irreducible();
        let exponent = law.alpha.max(exponent_floor);
        let current = law.loss(n[k]);
        let slope = exponent * (current - irreducible) / n[k];
        out[k] = slope * prior[k] * history[k].sqrt();
        sum += out[k];
    }
    if sum.is_finite() && sum > 0.0 && out.iter().all(|w| w.is_finite() && *w >= 0.0) {
        for w in out.iter_mut() {
            *w /= sum;
        }
    } else {
        out.fill(1.0 / out.len() as f64);
    }
}

/// The code's `clip_min_probability(probs, min_prob)`: scale the distribution down by the total
/// deficit, raise every entry to `min_prob`, renormalise.
pub fn clip_min_probability(probs: &mut [f64], min_prob: f64) {
    let sum: f64 = probs.iter().sum();
    let deficit = (min_prob * probs.len() as f64 - sum).max(0.0);
    let scale = (1.0 - deficit) / sum;
    let mut total = 0.0;
    for p in probs.iter_mut() {
        *p = (*p * scale).max(min_prob);
        total += *p;
    }
    for p in probs.iter_mut() {
        *p /= total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_lifts_small_entries_and_keeps_the_sum() {
        // 0.995 and 0.005 with floor 0.01: (0.995, 0.01) / 1.005.
        let mut p = [0.995, 0.005];
        clip_min_probability(&mut p, 0.01);
        assert!((p[0] - 0.995 / 1.005).abs() < 1e-15, "{p:?}");
        assert!((p[1] - 0.01 / 1.005).abs() < 1e-15, "{p:?}");
        let mut q = [0.5, 0.5];
        clip_min_probability(&mut q, 0.01);
        assert_eq!(q, [0.5, 0.5]);
    }

    #[test]
    fn the_faster_learner_gets_more() {
        // Same law, same n: the domain with the larger exponent has the larger slope.
        let laws = [
            LawParams {
                a: 1.0,
                e: 0.5,
                alpha: 0.2,
            },
            LawParams {
                a: 1.0,
                e: 0.5,
                alpha: 0.02,
            },
        ];
        let mut out = [0.0; 2];
        instant_distribution(&laws, &[100.0; 2], &[0.5; 2], &[0.5; 2], 0.05, &mut out);
        // slope_k = max(α_k, 0.05) e^a n^-α_k / n.
        let s0 = 0.2 * 1f64.exp() * 100f64.powf(-0.2) / 100.0;
        let s1 = 0.05 * 1f64.exp() * 100f64.powf(-0.02) / 100.0;
        assert!((out[0] - s0 / (s0 + s1)).abs() < 1e-12, "{out:?}");
        assert!(out[0] > out[1]);
    }

    #[test]
    fn underflowing_slopes_give_the_uniform_distribution() {
        let law = LawParams {
            a: -800.0,
            e: 0.5,
            alpha: 0.3,
        };
        let mut out = [0.0; 3];
        instant_distribution(
            &[law; 3],
            &[1e6; 3],
            &[1.0 / 3.0; 3],
            &[1.0 / 3.0; 3],
            0.05,
            &mut out,
        );
        assert_eq!(out, [1.0 / 3.0; 3]);
    }
}
