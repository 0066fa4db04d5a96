//! A small L-BFGS for the three parameters of a scaling law.
//!
//! The reference fits with `jaxopt.LBFGS(loss_fn, tol=1e-5, maxiter=200)`; this follows its
//! settings: a history of 10 pairs with the initial inverse Hessian scaled by γ = sᵀy / yᵀy,
//! a line search for the strong Wolfe conditions (c₁ = 10⁻⁴, c₂ = 0.9) whose first trial step is
//! 1.5 times the previous step and whose steps are at most 1 (jaxopt's `linesearch_init =
//! "increase"`, `max_stepsize = 1`), at most 30 evaluations per line search, and a stop when
//! the gradient's Euclidean norm is at most 10⁻⁵ or after 200 iterations. Two choices differ from
//! jaxopt, for robustness on the objective's kinks: a pair with sᵀy ≤ 0 is not stored, and a
//! line search that finds no acceptable step ends the minimisation at the current point. The
//! minimum found therefore agrees with the reference's to the optimiser's tolerance, not to
//! the last bit (the reference also computes in float32).

/// Pairs of the history.
const HISTORY: usize = 10;
/// Stop when ‖∇f‖₂ ≤ this.
pub const TOLERANCE: f64 = 1e-5;
/// Iterations at most.
pub const MAX_ITERATIONS: u32 = 200;
/// Function evaluations per line search at most.
const MAX_LINE_SEARCH: u32 = 30;
/// Armijo constant.
const C1: f64 = 1e-4;
/// Curvature constant.
const C2: f64 = 0.9;
/// The largest step along the search direction.
const MAX_STEP: f64 = 1.0;
/// The next line search starts at the previous step times this.
const INCREASE: f64 = 1.5;
/// A previous step at or below this restarts the next line search at `MAX_STEP`.
const MIN_STEP: f64 = 1e-6;

/// What a minimisation ended with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minimum {
    /// The final point.
    pub x: [f64; 3],
    /// The objective there (NaN if it is not a number).
    pub value: f64,
    /// Iterations taken.
    pub iterations: u32,
}

type Vec3 = [f64; 3];

fn dot(a: &Vec3, b: &Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn axpy(x: &Vec3, t: f64, d: &Vec3) -> Vec3 {
    [x[0] + t * d[0], x[1] + t * d[1], x[2] + t * d[2]]
}

/// Minimises `f` (value, with the gradient written to its second argument) from `x0`.
pub fn minimize(f: &mut impl FnMut(&Vec3, &mut Vec3) -> f64, x0: Vec3) -> Minimum {
    let mut x = x0;
    let mut g = [0.0; 3];
    let mut value = f(&x, &mut g);
    let mut s_hist = [[0.0; 3]; HISTORY];
    let mut y_hist = [[0.0; 3]; HISTORY];
    let mut rho_hist = [0.0; HISTORY];
    let (mut stored, mut next) = (0usize, 0usize);
    let mut gamma = 1.0;
    let mut step = MAX_STEP;
    let mut iterations = 0;
    while iterations < MAX_ITERATIONS && value.is_finite() && dot(&g, &g).sqrt() > TOLERANCE {
        iterations += 1;
        // Two-loop recursion: d = −H g, newest pair first.
        let mut q = g.map(|v| -v);
        let mut alphas = [0.0; HISTORY];
        for k in 0..stored {
            let i = (next + HISTORY - 1 - k) % HISTORY;
            alphas[i] = rho_hist[i] * dot(&s_hist[i], &q);
            q = axpy(&q, -alphas[i], &y_hist[i]);
        }
        q = q.map(|v| gamma * v);
        for k in (0..stored).rev() {
            let i = (next + HISTORY - 1 - k) % HISTORY;
            let beta = rho_hist[i] * dot(&y_hist[i], &q);
            q = axpy(&q, alphas[i] - beta, &s_hist[i]);
        }
        let mut d = q;
        if dot(&g, &d) >= 0.0 {
            // Not a descent direction (rounding on a kink): restart from steepest descent.
            stored = 0;
            gamma = 1.0;
            d = g.map(|v| -v);
        }
        let init = if step <= MIN_STEP {
            MAX_STEP
        } else {
            (step * INCREASE).min(MAX_STEP)
        };
        let Some((t, new_value, new_g)) = line_search(f, &x, value, &g, &d, init) else {
            break;
        };
        let new_x = axpy(&x, t, &d);
        let s = [new_x[0] - x[0], new_x[1] - x[1], new_x[2] - x[2]];
        let y = [new_g[0] - g[0], new_g[1] - g[1], new_g[2] - g[2]];
        let sy = dot(&s, &y);
        if sy > 0.0 {
            s_hist[next] = s;
            y_hist[next] = y;
            rho_hist[next] = 1.0 / sy;
            next = (next + 1) % HISTORY;
            stored = (stored + 1).min(HISTORY);
            gamma = sy / dot(&y, &y);
        }
        x = new_x;
        value = new_value;
        g = new_g;
        step = t;
    }
    Minimum {
        x,
        value,
        iterations,
    }
}

/// A step t along `d` satisfying the strong Wolfe conditions (Nocedal & Wright, Algorithms 3.5
/// and 3.6), with the objective and gradient there; `None` if none is found.
fn line_search(
    f: &mut impl FnMut(&Vec3, &mut Vec3) -> f64,
    x: &Vec3,
    value0: f64,
    g0: &Vec3,
    d: &Vec3,
    init: f64,
) -> Option<(f64, f64, Vec3)> {
    let slope0 = dot(g0, d);
    let mut evals = 0;
    let mut eval = |t: f64, evals: &mut u32| {
        *evals += 1;
        let mut g = [0.0; 3];
        let v = f(&axpy(x, t, d), &mut g);
        (v, dot(&g, d), g)
    };
    let armijo = |t: f64, v: f64| v <= value0 + C1 * t * slope0;
    let curvature = |slope: f64| slope.abs() <= -C2 * slope0;
    // Bracketing phase: lo is the best step so far satisfying Armijo.
    let (mut lo, mut lo_v, mut lo_slope, mut lo_g) = (0.0, value0, slope0, *g0);
    let mut t = init;
    let (mut hi, mut hi_v, mut hi_slope);
    loop {
        let (v, slope, g) = eval(t, &mut evals);
        if !v.is_finite() || !armijo(t, v) || (lo > 0.0 && v >= lo_v) {
            (hi, hi_v, hi_slope) = (t, v, slope);
            break;
        }
        if curvature(slope) {
            return Some((t, v, g));
        }
        if slope >= 0.0 {
            (hi, hi_v, hi_slope) = (lo, lo_v, lo_slope);
            (lo, lo_v, lo_slope, lo_g) = (t, v, slope, g);
            break;
        }
        (lo, lo_v, lo_slope, lo_g) = (t, v, slope, g);
        if t >= MAX_STEP || evals >= MAX_LINE_SEARCH {
            // The longest step allowed still descends: take it.
            return Some((t, v, g));
        }
        t = (2.0 * t).min(MAX_STEP);
    }
    // Zoom between lo (Armijo holds) and hi.
    while evals < MAX_LINE_SEARCH {
        let t = interpolate(lo, lo_v, lo_slope, hi, hi_v, hi_slope);
        let (v, slope, g) = eval(t, &mut evals);
        if !v.is_finite() || !armijo(t, v) || v >= lo_v {
            (hi, hi_v, hi_slope) = (t, v, slope);
        } else {
            if curvature(slope) {
                return Some((t, v, g));
            }
            if slope * (hi - lo) >= 0.0 {
                (hi, hi_v, hi_slope) = (lo, lo_v, lo_slope);
            }
            (lo, lo_v, lo_slope, lo_g) = (t, v, slope, g);
        }
        if (hi - lo).abs() <= f64::EPSILON * lo.abs().max(1e-300) {
            break;
        }
    }
    // Out of evaluations: a step that decreased the objective is still progress.
    (lo > 0.0).then_some((lo, lo_v, lo_g))
}

/// The minimiser of the cubic through (a, fa, da) and (b, fb, db), kept at least a tenth of the
/// interval away from its ends; the midpoint where the cubic gives nothing usable.
fn interpolate(a: f64, fa: f64, da: f64, b: f64, fb: f64, db: f64) -> f64 {
    let (left, right) = if a < b { (a, b) } else { (b, a) };
    let margin = 0.1 * (right - left);
    let mid = 0.5 * (a + b);
    if !(fb.is_finite() && db.is_finite()) {
        return mid;
    }
    let d1 = da + db - 3.0 * (fa - fb) / (a - b);
    let disc = d1 * d1 - da * db;
    if disc < 0.0 {
        return mid;
    }
    let d2 = (b - a).signum() * disc.sqrt();
    let t = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2);
    if t.is_finite() && t >= left + margin && t <= right - margin {
        t
    } else {
        mid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quadratic_bowl_is_solved() {
        let mut f = |p: &Vec3, g: &mut Vec3| {
            let c = [1.0, -2.0, 0.5];
            let w = [1.0, 10.0, 100.0];
            let mut v = 0.0;
            for k in 0..3 {
                v += 0.5 * w[k] * (p[k] - c[k]).powi(2);
                g[k] = w[k] * (p[k] - c[k]);
            }
            v
        };
        let m = minimize(&mut f, [0.0, 0.0, 0.0]);
        assert!(m.value < 1e-10, "{m:?}");
        assert!(
            (m.x[1] + 2.0).abs() < 1e-5 && (m.x[2] - 0.5).abs() < 1e-6,
            "{m:?}"
        );
    }

    #[test]
    fn rosenbrock_in_two_of_three_dimensions() {
        let mut f = |p: &Vec3, g: &mut Vec3| {
            let (x, y, z) = (p[0], p[1], p[2]);
            g[0] = -2.0 * (1.0 - x) - 400.0 * x * (y - x * x);
            g[1] = 200.0 * (y - x * x);
            g[2] = 2.0 * z;
            (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2) + z * z
        };
        let m = minimize(&mut f, [-1.2, 1.0, 0.3]);
        assert!(
            (m.x[0] - 1.0).abs() < 1e-4 && (m.x[1] - 1.0).abs() < 1e-4,
            "{m:?}"
        );
        assert!(m.iterations < MAX_ITERATIONS, "{m:?}");
    }

    #[test]
    fn a_nan_objective_ends_at_once() {
        let mut f = |_: &Vec3, g: &mut Vec3| {
            *g = [1.0; 3];
            f64::NAN
        };
        let m = minimize(&mut f, [0.0; 3]);
        assert!(m.value.is_nan());
        assert_eq!(m.iterations, 0);
    }
}
