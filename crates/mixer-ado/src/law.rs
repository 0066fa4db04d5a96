//! ADO's per-domain scaling law and the objective its parameters are fitted with
//! (reference: `scaling_law`, `loss_fn`, `huber_loss` in `src/data_selectors/ado.py`).
//!
//! The law is L(n) = exp(e) + exp(a) · n^(−α): an irreducible loss exp(e) plus a power law in
//! the number of sequences n. It is fitted in log space, log L(n) = logsumexp(a − α ln n, e),
//! by a Huber loss (δ = 10⁻³) summed over the points, plus penalties that keep the parameters
//! where the code wants them: α ≤ 0.8, α ≥ 0 (the code writes −min(α, 0.001)), a ≤ 6.5 and
//! e ≥ 0.5.

use serde::{Deserialize, Serialize};

/// The Huber threshold of the fit (the code's `huber_loss(..., delta=1e-3)`).
pub const HUBER_DELTA: f64 = 1e-3;

/// Parameters (a, e, α) of one domain's law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LawParams {
    /// Log of the power law's scale: exp(a) · n^(−α).
    pub a: f64,
    /// Log of the irreducible loss exp(e).
    pub e: f64,
    /// The power law's exponent.
    pub alpha: f64,
}

impl LawParams {
    /// The parameters as the vector the optimiser works on.
    pub fn to_array(self) -> [f64; 3] {
        [self.a, self.e, self.alpha]
    }

    /// The parameters from the optimiser's vector.
    pub fn from_array([a, e, alpha]: [f64; 3]) -> Self {
        Self { a, e, alpha }
    }

    /// The predicted loss after `n` sequences, computed as the code's `scaling_law` does.
    pub fn loss(&self, n: f64) -> f64 {
        self.e.exp() + self.a.exp() / n.powf(self.alpha)
    }

    /// The irreducible loss exp(e).
    pub fn irreducible(&self) -> f64 {
        self.e.exp()
    }

    /// Whether every parameter is finite (the code's `check_valid`).
    pub fn is_finite(&self) -> bool {
        self.a.is_finite() && self.e.is_finite() && self.alpha.is_finite()
    }
}

/// The points of one fit: ln n and ln L per point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FitData {
    log_n: Vec<f64>,
    log_loss: Vec<f64>,
}

impl FitData {
    /// Points (n_i, L_i). A loss at or below 0 (a smoothed loss can dip there) is raised to the
    /// smallest positive f64, so its logarithm stays finite.
    pub fn new(points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let (log_n, log_loss) = points
            .into_iter()
            .map(|(n, loss)| (n.ln(), loss.max(f64::MIN_POSITIVE).ln()))
            .unzip();
        Self { log_n, log_loss }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.log_n.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.log_n.is_empty()
    }

    /// The code's `loss_fn(params, D, L)` at `p` = (a, e, α); its gradient is written to
    /// `grad`. Where a penalty's kink is hit exactly, the gradient takes half of each side, as
    /// JAX differentiates `maximum` and `minimum` at ties.
    pub fn objective(&self, p: &[f64; 3], grad: &mut [f64; 3]) -> f64 {
        let [a, e, alpha] = *p;
        let mut value = 0.0;
        let mut g = [0.0; 3];
        for (&ln_n, &target) in self.log_n.iter().zip(&self.log_loss) {
            let u = a - alpha * ln_n;
            // logsumexp(u, e) and its weight on u, σ(u − e), without overflow.
            let (hi, lo) = if u >= e { (u, e) } else { (e, u) };
            let z = (lo - hi).exp();
            let pred = hi + z.ln_1p();
            let s = if u >= e {
                1.0 / (1.0 + z)
            } else {
                z / (1.0 + z)
            };
            let r = target - pred;
            let (h, psi) = if r.abs() > HUBER_DELTA {
                (
                    HUBER_DELTA * (r.abs() - 0.5 * HUBER_DELTA),
                    HUBER_DELTA * r.signum(),
                )
            } else {
                (0.5 * r * r, r)
            };
            value += h;
            // d h / d pred = −ψ(r); d pred / d(a, e, α) = (s, 1 − s, −s ln n).
            g[0] -= psi * s;
            g[1] -= psi * (1.0 - s);
            g[2] += psi * s * ln_n;
        }
        // max(x, 0) and −min(x, 0): value and derivative (½ at the kink).
        let hinge = |x: f64| -> (f64, f64) {
            if x > 0.0 {
                (x, 1.0)
            } else if x == 0.0 {
                (0.0, 0.5)
            } else {
                (0.0, 0.0)
            }
        };
        let (v, d) = hinge(alpha - 0.8);
        value += v;
        g[2] += d;
        // −min(α, 0.001): −α below 0.001 (slope −1), −0.001 above it.
        let (v, d) = if alpha < 0.001 {
            (-alpha, -1.0)
        } else if alpha == 0.001 {
            (-0.001, -0.5)
        } else {
            (-0.001, 0.0)
        };
        value += v;
        g[2] += d;
        let (v, d) = hinge(a - 6.5);
        value += v;
        g[0] += d;
        // −min(e − 0.5, 0) = max(0.5 − e, 0).
        let (v, d) = hinge(0.5 - e);
        value += v;
        g[1] -= d;
        *grad = g;
        value
    }
}

/// The code's start points for the fit: a ∈ {−2, …, 5}, e ∈ {−2, −1.5, …, 1.5} and
/// α ∈ {0, 0.1, …, 0.7}, in `meshgrid(..., indexing='ij')` order (a slowest, α fastest). The
/// code builds them in float32; these are the f64 values they stand for.
pub fn start_grid() -> impl Iterator<Item = [f64; 3]> {
    (0..8).flat_map(|i| {
        (0..8).flat_map(move |j| {
            (0..8).map(move |k| [-2.0 + i as f64, -2.0 + 0.5 * j as f64, 0.1 * k as f64])
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_matches_central_differences() {
        let law = LawParams {
            a: 1.3,
            e: 0.7,
            alpha: 0.35,
        };
        // Points on and off the law, so both Huber branches are hit.
        let data = FitData::new((1..=30).map(|i| {
            let n = 100.0 * i as f64;
            (n, law.loss(n) * (1.0 + 0.002 * ((i % 5) as f64 - 2.0)))
        }));
        for p in [
            [1.0, 0.9, 0.3],
            [2.0, 0.2, 0.5],
            [7.0, 0.6, 0.9],
            [0.5, 1.0, -0.1],
        ] {
            let mut g = [0.0; 3];
            data.objective(&p, &mut g);
            for k in 0..3 {
                let h = 1e-6;
                let (mut up, mut down) = (p, p);
                up[k] += h;
                down[k] -= h;
                let mut scratch = [0.0; 3];
                let fd = (data.objective(&up, &mut scratch) - data.objective(&down, &mut scratch))
                    / (2.0 * h);
                assert!((fd - g[k]).abs() < 1e-6, "{p:?}, {k}: {fd} vs {}", g[k]);
            }
        }
    }

    #[test]
    fn the_objective_is_zero_on_the_law_inside_the_bounds() {
        let law = LawParams {
            a: 1.0,
            e: 0.6,
            alpha: 0.4,
        };
        let data = FitData::new((1..=10).map(|i| (i as f64 * 50.0, law.loss(i as f64 * 50.0))));
        let mut g = [0.0; 3];
        // Only −min(α, 0.001) = −0.001 remains.
        let v = data.objective(&law.to_array(), &mut g);
        assert!((v + 0.001).abs() < 1e-15, "{v}");
        assert!(g.iter().all(|x| x.abs() < 1e-12), "{g:?}");
    }

    #[test]
    fn the_grid_is_the_codes() {
        let grid: Vec<[f64; 3]> = start_grid().collect();
        assert_eq!(grid.len(), 512);
        assert_eq!(grid[0], [-2.0, -2.0, 0.0]);
        assert_eq!(grid[1], [-2.0, -2.0, 0.1]);
        assert_eq!(grid[8], [-2.0, -1.5, 0.0]);
        assert_eq!(grid[64], [-1.0, -2.0, 0.0]);
        assert_eq!(grid[511], [5.0, 1.5, 0.1 * 7.0]);
    }
}
