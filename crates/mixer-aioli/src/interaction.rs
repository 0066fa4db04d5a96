//! The interaction matrix: probe mixtures, the estimate of A from a round's loss changes, its
//! normalisation. Matrices are K × K, row-major: entry (i, j) at `i * k + j`, row i a domain
//! whose loss is measured, column j a domain trained on.

/// The mixture of a probe of domain `j` among `k`: `one_hot_factor` on j, the rest shared
/// equally, divided by its sum as the code's `set_proportions` does. With one domain it is \[1\].
pub fn probe_weights(k: usize, one_hot_factor: f64, j: usize, out: &mut [f64]) {
    assert_eq!(out.len(), k, "probe_weights: length");
    if k == 1 {
        out[0] = 1.0;
        return;
    }
    let rest = (1.0 - one_hot_factor) / (k - 1) as f64;
    out.fill(rest);
    out[j] = one_hot_factor;
    let sum: f64 = out.iter().sum();
    for w in out.iter_mut() {
        *w /= sum;
    }
}

/// Turns a round's summed loss changes `gain` (G\[i\]\[j\]: the drop of domain i's validation loss
/// over the probes of domain j, summed over `lp_rounds` sweeps) into the estimate of A, in
/// place: G /= lp_rounds, then (the code's `learn_params_subroutine`, with W the matrix whose
/// row j is probe j's mixture before normalisation)
/// - `one_hot_factor` < 1, not `diagonal`: A\[i\] = W⁻¹ G\[i\] (the code's `np.linalg.solve`);
/// - `one_hot_factor` < 1, `diagonal`: A_ii = G_ii / one_hot_factor, 0 elsewhere;
/// - `one_hot_factor` = 1: A = G.
///
/// W = (f − c) I + c 11ᵀ with f the factor and c = (1 − f)/(K − 1) has the closed-form inverse
/// W⁻¹ g = (g − c Σg) / (f − c): W's rows sum to 1, so Σ(W⁻¹ g) = Σg. It costs O(K²) where
/// a general solve costs O(K³), and agrees with numpy's LU solve to rounding (tests/golden.rs).
pub fn estimate(gain: &mut [f64], k: usize, lp_rounds: u64, one_hot_factor: f64, diagonal: bool) {
    assert_eq!(gain.len(), k * k, "estimate: G is not K x K");
    let rounds = lp_rounds as f64;
    for g in gain.iter_mut() {
        *g /= rounds;
    }
    if one_hot_factor == 1.0 {
        return;
    }
    if diagonal {
        for i in 0..k {
            for j in 0..k {
                let v = &mut gain[i * k + j];
                *v = if i == j { *v / one_hot_factor } else { 0.0 };
            }
        }
        return;
    }
    if k == 1 {
        // W = [[f]]: the code's weights are (1 − f)/0 for the (absent) others, then f.
        gain[0] /= one_hot_factor;
        return;
    }
    let c = (1.0 - one_hot_factor) / (k - 1) as f64;
    let scale = one_hot_factor - c;
    for row in gain.chunks_exact_mut(k) {
        let shift = c * row.iter().sum::<f64>();
        for v in row.iter_mut() {
            *v = (*v - shift) / scale;
        }
    }
}

/// The code's `--aioli_normalize_A`: if A's smallest entry is negative, subtract it from every
/// entry; then divide by the sum. A constant matrix (sum 0 after the shift), 0/0 = NaN in the
/// code, becomes 1/K² everywhere: the value every other constant matrix normalises to.
pub fn normalize(a: &mut [f64]) {
    let min = a.iter().copied().fold(f64::INFINITY, f64::min);
    if min < 0.0 {
        for v in a.iter_mut() {
            *v -= min;
        }
    }
    let sum: f64 = a.iter().sum();
    if sum > 0.0 {
        for v in a.iter_mut() {
            *v /= sum;
        }
    } else {
        let uniform = 1.0 / a.len() as f64;
        a.fill(uniform);
    }
}

/// Column sums Σ_i A_ij: the total loss drop per unit of domain j in the mixture.
pub fn column_sums(a: &[f64], k: usize, out: &mut [f64]) {
    assert_eq!(out.len(), k, "column_sums: length");
    out.fill(0.0);
    for row in a.chunks_exact(k) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// W as the code builds it: row j = probe j's weights before normalisation.
    fn w_matrix(k: usize, f: f64) -> Vec<f64> {
        let c = (1.0 - f) / (k - 1) as f64;
        (0..k * k)
            .map(|e| if e / k == e % k { f } else { c })
            .collect()
    }

    #[test]
    fn the_closed_form_solves_w() {
        // Any G: multiplying the estimate back by W must give G / lp_rounds.
        let k = 4;
        let f = 0.625;
        let g: Vec<f64> = (0..k * k)
            .map(|e| ((e * 7 % 11) as f64 - 5.0) * 0.013)
            .collect();
        let mut a = g.clone();
        estimate(&mut a, k, 2, f, false);
        let w = w_matrix(k, f);
        for i in 0..k {
            for j in 0..k {
                // (W a_i)_j = Σ_l W[j][l] a_i[l]
                let back: f64 = (0..k).map(|l| w[j * k + l] * a[i * k + l]).sum();
                assert!((back - g[i * k + j] / 2.0).abs() < 1e-15, "({i},{j})");
            }
        }
    }

    #[test]
    fn one_hot_probes_and_the_diagonal_follow_the_code() {
        let g = vec![0.4, -0.2, 0.1, 0.6];
        let mut a = g.clone();
        estimate(&mut a, 2, 2, 1.0, false);
        assert_eq!(a, [0.2, -0.1, 0.05, 0.3]);
        let mut d = g.clone();
        estimate(&mut d, 2, 1, 0.8, true);
        assert_eq!(d, [0.4 / 0.8, 0.0, 0.0, 0.6 / 0.8]);
        let mut one = vec![0.3];
        estimate(&mut one, 1, 3, 0.5, false);
        assert!((one[0] - 0.2).abs() < 1e-16);
    }

    #[test]
    fn probe_mixtures_put_the_factor_on_their_domain() {
        let mut w = vec![0.0; 3];
        probe_weights(3, 0.5, 1, &mut w);
        assert_eq!(w, [0.25, 0.5, 0.25]);
        let mut one = vec![0.0];
        probe_weights(1, 0.7, 0, &mut one);
        assert_eq!(one, [1.0]);
    }

    #[test]
    fn normalisation_shifts_negative_matrices_and_never_divides_by_zero() {
        let mut a = vec![-1.0, 1.0, 0.0, 2.0];
        normalize(&mut a);
        // + 1 → [0, 2, 1, 3], / 6.
        assert_eq!(a, [0.0, 2.0 / 6.0, 1.0 / 6.0, 3.0 / 6.0]);
        let mut zero = vec![0.0; 4];
        normalize(&mut zero);
        assert_eq!(zero, [0.25; 4]);
        let mut negative_constant = vec![-0.3; 9];
        normalize(&mut negative_constant);
        assert!(negative_constant.iter().all(|&v| v == 1.0 / 9.0));
        let mut c = vec![0.0; 2];
        column_sums(&[1.0, 2.0, 3.0, 4.0], 2, &mut c);
        assert_eq!(c, [4.0, 6.0]);
    }
}
