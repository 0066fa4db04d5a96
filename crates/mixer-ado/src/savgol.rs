//! The Savitzky-Golay filter with scipy's `mode = "interp"`, which ADO applies to each domain's
//! noisy training loss before fitting its scaling law (`savgol_filter(loss, 101, 3)`).
//!
//! For a window of w = 2h + 1 points and order p, the filtered value at a point is the value
//! there of the degree-p least-squares polynomial through the w points around it. At the h
//! points at each end, `interp` instead evaluates the polynomial fitted to the first (last) w
//! points at their positions. Both are rows of the window's hat matrix
//! H = X (XᵀX)⁻¹ Xᵀ (X the w × (p + 1) Vandermonde matrix): the centre row for interior points,
//! the first (last) h rows at the ends. Positions are scaled to [−1, 1] so that XᵀX stays well
//! conditioned; the fitted values do not depend on that choice.

/// A Savitzky-Golay filter of one window and order.
#[derive(Debug, Clone, PartialEq)]
pub struct SavitzkyGolay {
    /// The hat matrix, row-major, w × w: `hat[r * w + j]` weighs point j of the window for
    /// the fitted value at position r.
    hat: Vec<f64>,
    window: usize,
}

impl SavitzkyGolay {
    /// The filter of `window` points (odd) and polynomial `order` (< `window`).
    ///
    /// # Panics
    /// If `window` is even or `order >= window`: the config is validated before this is built.
    pub fn new(window: usize, order: usize) -> Self {
        assert!(
            window % 2 == 1 && order < window,
            "validated: odd window above the order"
        );
        let half = (window / 2) as f64;
        let cols = order + 1;
        // X[j][c] = x_j^c with x_j in [-1, 1].
        let x: Vec<f64> = (0..window)
            .map(|j| {
                if half == 0.0 {
                    0.0
                } else {
                    (j as f64 - half) / half
                }
            })
            .collect();
        let vander = |j: usize, c: usize| x[j].powi(c as i32);
        // G = XᵀX, then G⁻¹ by Gauss-Jordan elimination with partial pivoting.
        let mut g = vec![0.0; cols * cols];
        for r in 0..cols {
            for c in 0..cols {
                g[r * cols + c] = (0..window).map(|j| vander(j, r) * vander(j, c)).sum();
            }
        }
        let g_inv = invert(g, cols);
        // hat[r][j] = Σ_{a,b} X[r][a] G⁻¹[a][b] X[j][b].
        let mut hat = vec![0.0; window * window];
        for r in 0..window {
            let row: Vec<f64> = (0..cols)
                .map(|b| (0..cols).map(|a| vander(r, a) * g_inv[a * cols + b]).sum())
                .collect();
            for j in 0..window {
                hat[r * window + j] = (0..cols).map(|b| row[b] * vander(j, b)).sum();
            }
        }
        Self { hat, window }
    }

    /// The window length.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The filtered value of `data` at index `i`, or `None` if `data` is shorter than the
    /// window (scipy refuses such input in `interp` mode).
    pub fn smooth_at(&self, data: &[f64], i: usize) -> Option<f64> {
        let (n, w) = (data.len(), self.window);
        if n < w || i >= n {
            return None;
        }
        let half = w / 2;
        // The window used and the row of the hat matrix for position i within it.
        let (start, row) = if i < half {
            (0, i)
        } else if i + half >= n {
            (n - w, i - (n - w))
        } else {
            (i - half, half)
        };
        let coefficients = &self.hat[row * w..(row + 1) * w];
        Some(
            coefficients
                .iter()
                .zip(&data[start..start + w])
                .map(|(c, y)| c * y)
                .sum(),
        )
    }
}

/// The inverse of a small symmetric positive definite matrix (n × n, row-major).
fn invert(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        inv[i * n + i] = 1.0;
    }
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&r, &s| a[r * n + col].abs().total_cmp(&a[s * n + col].abs()))
            .expect("non-empty range");
        for c in 0..n {
            a.swap(col * n + c, pivot * n + c);
            inv.swap(col * n + c, pivot * n + c);
        }
        let p = a[col * n + col];
        for c in 0..n {
            a[col * n + c] /= p;
            inv[col * n + c] /= p;
        }
        for r in 0..n {
            if r != col {
                let f = a[r * n + col];
                if f != 0.0 {
                    for c in 0..n {
                        a[r * n + c] -= f * a[col * n + c];
                        inv[r * n + c] -= f * inv[col * n + c];
                    }
                }
            }
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomials_up_to_the_order_pass_unchanged() {
        // A least-squares cubic through a cubic is the cubic itself, ends included.
        let f = SavitzkyGolay::new(7, 3);
        let data: Vec<f64> = (0..20)
            .map(|t| {
                let t = t as f64;
                1.0 - 0.5 * t + 0.02 * t * t - 0.001 * t * t * t
            })
            .collect();
        for (i, &y) in data.iter().enumerate() {
            let s = f.smooth_at(&data, i).expect("long enough");
            assert!((s - y).abs() < 1e-12, "{i}: {s} vs {y}");
        }
    }

    #[test]
    fn the_centre_row_is_the_classic_five_point_quadratic() {
        // Savitzky & Golay's (1964) table: window 5, order 2 (or 3) = (-3, 12, 17, 12, -3) / 35.
        let f = SavitzkyGolay::new(5, 2);
        let expected = [-3.0, 12.0, 17.0, 12.0, -3.0].map(|c| c / 35.0);
        for (j, e) in expected.iter().enumerate() {
            assert!((f.hat[2 * 5 + j] - e).abs() < 1e-15, "{j}");
        }
        let f3 = SavitzkyGolay::new(5, 3);
        for (j, e) in expected.iter().enumerate() {
            assert!((f3.hat[2 * 5 + j] - e).abs() < 1e-14, "{j}");
        }
    }

    #[test]
    fn short_input_is_refused() {
        let f = SavitzkyGolay::new(5, 2);
        assert_eq!(f.smooth_at(&[1.0; 4], 0), None);
        assert!(f.smooth_at(&[1.0; 5], 4).is_some());
        assert_eq!(f.smooth_at(&[1.0; 5], 5), None);
        let one = SavitzkyGolay::new(1, 0);
        assert_eq!(one.smooth_at(&[3.0, 4.0], 1), Some(4.0));
    }
}
