//! Axis ranges, "nice" tick positions and tick labels, for linear and logarithmic axes.
//!
//! Linear ticks are multiples of 1, 2 or 5 times a power of ten, and the axis range is widened to
//! the ticks just outside the data so that both ends carry a label. Logarithmic ticks depend on
//! how many decades the data spans:
//!
//! - more than two decades (max/min > 100): powers of ten only, thinned to at most
//!   [`MAX_LOG_DECADE_TICKS`] + 1 ticks; the range is whole decades;
//! - one to two decades: 1, 2 and 5 times powers of ten, the range being the nearest such values
//!   around the data;
//! - less than a decade: linear nice ticks placed on the log axis (powers of ten would leave
//!   at most one tick).

/// A resolved axis: the value range it spans, where its ticks go and how they are labelled.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Value at the start (left or bottom) of the axis.
    pub min: f64,
    /// Value at the end (right or top) of the axis; always greater than `min`.
    pub max: f64,
    /// Tick positions in data units, ascending, all within `min..=max`.
    pub ticks: Vec<f64>,
    /// One label per tick, with the same number of decimals across a linear axis.
    pub labels: Vec<String>,
    /// Whether values are placed logarithmically (then `min > 0`).
    pub log: bool,
}

impl Axis {
    /// How far along the axis `v` lies: 0 at `min`, 1 at `max` (outside for values beyond).
    ///
    /// Returns 0 for values the axis cannot place (non-finite, or non-positive on a log axis), so
    /// that a caller that forgot to filter still writes valid coordinates.
    pub fn fraction(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (v - self.min) / (self.max - self.min)
        };
        if f.is_finite() { f } else { 0.0 }
    }
}

/// Relative tolerance for "this float is really that integer" decisions in tick arithmetic.
const EPS: f64 = 1e-9;

/// Values beyond this magnitude are clamped so that `max - min` stays finite.
const MAX_MAGNITUDE: f64 = 1e300;

/// Upper bound on ticks on any axis; guards the tick loops against pathological ranges.
const MAX_TICKS: usize = 50;

/// At most this many decades get their own tick on a wide log axis.
pub const MAX_LOG_DECADE_TICKS: i32 = 8;

/// A tick step written as `mantissa * 10^exponent` with `mantissa` in {1, 2, 5}.
///
/// Kept in this split form so tick values can be computed as `i * mantissa / 10^-exponent`,
/// which rounds once and therefore yields exactly the double nearest to the decimal (0.6, not
/// 0.6000000000000001).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    mantissa: f64,
    exponent: i32,
}

impl Step {
    fn value(self) -> f64 {
        scale10(self.mantissa, self.exponent)
    }

    /// The `i`-th multiple of the step.
    fn multiple(self, i: i64) -> f64 {
        scale10(i as f64 * self.mantissa, self.exponent)
    }
}

/// `m * 10^e` with a single rounding for negative `e`.
fn scale10(m: f64, e: i32) -> f64 {
    if e >= 0 {
        m * 10f64.powi(e)
    } else {
        m / 10f64.powi(-e)
    }
}

/// The 1-2-5 step that cuts `range` into roughly `target` intervals (never fewer).
fn nice_step(range: f64, target: usize) -> Step {
    let raw = range / target.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return Step {
            mantissa: 1.0,
            exponent: 0,
        };
    }
    // Clamped so that 10^exponent stays a normal, finite double.
    let exponent = (raw.log10().floor() as i32).clamp(-300, 300);
    let norm = raw / scale10(1.0, exponent);
    let (mantissa, exponent) = if norm <= 1.0 + EPS {
        (1.0, exponent)
    } else if norm <= 2.0 + EPS {
        (2.0, exponent)
    } else if norm <= 5.0 + EPS {
        (5.0, exponent)
    } else {
        (1.0, exponent + 1)
    };
    Step { mantissa, exponent }
}

/// Orders `lo`/`hi`, replaces non-finite bounds and widens an empty or near-empty range, so that
/// a single point or a constant series still gets an axis with visible extent.
fn sanitize_linear(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let (lo, hi) = (
        lo.min(hi).clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE),
        lo.max(hi).clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE),
    );
    let scale = lo.abs().max(hi.abs());
    if hi - lo <= scale * 1e-12 {
        let centre = 0.5 * (lo + hi);
        // 10% of the value keeps the axis labels close to the value itself; zero has no scale.
        let pad = if centre == 0.0 {
            1.0
        } else {
            centre.abs() * 0.1
        };
        if pad.is_normal() {
            return (centre - pad, centre + pad);
        }
        return (centre - 1.0, centre + 1.0);
    }
    (lo, hi)
}

/// A linear axis covering `lo..=hi` with about `target` intervals between 1-2-5 ticks.
///
/// The range is widened to the enclosing ticks: `[0, 1]` gives ticks 0, 0.2, …, 1.0 and
/// `[3, 47]` gives 0, 10, …, 50 (both with `target = 5`). Non-finite bounds give `[0, 1]`;
/// an empty range is widened by 10% of its value (or ±1 around zero).
pub fn linear_axis(lo: f64, hi: f64, target: usize) -> Axis {
    let (lo, hi) = sanitize_linear(lo, hi);
    let step = nice_step(hi - lo, target);
    let step_value = step.value();
    // The tolerance keeps a bound that sits on a tick (up to rounding) from gaining an extra tick.
    let first = (lo / step_value + EPS).floor();
    let last = (hi / step_value - EPS).ceil();
    if !(first.is_finite() && last.is_finite()) || last - first > MAX_TICKS as f64 || last <= first
    {
        // Only reachable at the edges of f64 resolution: label the data bounds themselves.
        return Axis {
            min: lo,
            max: hi,
            ticks: vec![lo, hi],
            labels: vec![format_general(lo), format_general(hi)],
            log: false,
        };
    }
    let ticks: Vec<f64> = (first as i64..=last as i64)
        .map(|i| step.multiple(i))
        .collect();
    let labels = linear_labels(&ticks, step);
    Axis {
        min: ticks[0],
        max: ticks[ticks.len() - 1],
        ticks,
        labels,
        log: false,
    }
}

/// Labels with as many decimals as the step needs, switching to scientific notation when plain
/// decimals would get long (|value| ≥ 10⁶ or step < 10⁻⁴).
fn linear_labels(ticks: &[f64], step: Step) -> Vec<String> {
    let max_abs = ticks.iter().fold(0.0f64, |m, t| m.max(t.abs()));
    if max_abs >= 1e6 || step.exponent < -4 {
        let leading = if max_abs > 0.0 {
            max_abs.log10().floor() as i32
        } else {
            0
        };
        let digits = (leading - step.exponent).clamp(0, 15) as usize;
        return ticks
            .iter()
            .map(|&t| {
                if t == 0.0 {
                    "0".to_string()
                } else {
                    format!("{t:.digits$e}")
                }
            })
            .collect();
    }
    let decimals = (-step.exponent).max(0) as usize;
    ticks.iter().map(|&t| format_fixed(t, decimals)).collect()
}

/// A logarithmic axis covering the positive range `lo..=hi` (see the module docs for the tick
/// rules). `[2, 900]` gives ticks 1, 10, 100, 1000; `[2, 90]` gives 2, 5, 10, 20, 50, 100.
///
/// Non-positive or non-finite bounds give `[1, 10]`; an empty range is widened by a factor of
/// two either way.
pub fn log_axis(lo: f64, hi: f64, target: usize) -> Axis {
    let ok = |v: f64| v.is_finite() && v > 0.0;
    let (mut lo, mut hi) = if ok(lo) && ok(hi) {
        (lo.min(hi), lo.max(hi))
    } else if ok(lo) || ok(hi) {
        let v = if ok(lo) { lo } else { hi };
        (v, v)
    } else {
        (1.0, 10.0)
    };
    // Keeps hi / lo and the decade exponents finite.
    let floor = f64::MIN_POSITIVE * 1e10;
    lo = lo.clamp(floor, MAX_MAGNITUDE);
    hi = hi.clamp(floor, MAX_MAGNITUDE);
    if hi / lo < 1.0 + 1e-9 {
        lo /= 2.0;
        hi *= 2.0;
    }
    let ratio = hi / lo;
    if ratio < 10.0 {
        log_axis_linear_ticks(lo, hi, target)
    } else if ratio <= 100.0 {
        log_axis_125(lo, hi)
    } else {
        log_axis_decades(lo, hi)
    }
}

/// Less than a decade: linear nice ticks, dropping those at or below zero.
fn log_axis_linear_ticks(lo: f64, hi: f64, target: usize) -> Axis {
    let linear = linear_axis(lo, hi, target);
    if linear.min > 0.0 {
        return Axis {
            log: true,
            ..linear
        };
    }
    // A nice lower bound at or below zero cannot sit on a log axis: start at the 1-2-5 value
    // just below the data instead, and label it.
    let min = floor_125(lo);
    let (mut ticks, mut labels): (Vec<f64>, Vec<String>) = linear
        .ticks
        .iter()
        .zip(&linear.labels)
        .filter(|(t, _)| **t > min * (1.0 + EPS))
        .map(|(t, l)| (*t, l.clone()))
        .unzip();
    ticks.insert(0, min);
    labels.insert(0, log_label(min));
    Axis {
        min,
        max: linear.max.max(hi),
        ticks,
        labels,
        log: true,
    }
}

/// Decade exponent of `v`, tolerant of log10 rounding at exact powers of ten.
fn decade_floor(v: f64) -> i32 {
    (v.log10() + EPS).floor() as i32
}

fn decade_ceil(v: f64) -> i32 {
    (v.log10() - EPS).ceil() as i32
}

/// The largest value of the form {1, 2, 5} × 10^k that is at most `v` (> 0).
fn floor_125(v: f64) -> f64 {
    let e = decade_floor(v);
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| scale10(m, e))
        .find(|c| *c <= v * (1.0 + EPS))
        .unwrap_or_else(|| scale10(1.0, e))
}

/// One to two decades: the 1-2-5 sequence, range trimmed to the values around the data.
fn log_axis_125(lo: f64, hi: f64) -> Axis {
    let mut candidates = Vec::new();
    for e in decade_floor(lo)..=decade_ceil(hi) {
        for m in [1.0, 2.0, 5.0] {
            candidates.push(scale10(m, e));
        }
    }
    let tol = |v: f64| v * EPS;
    let min = candidates
        .iter()
        .copied()
        .filter(|c| *c <= lo + tol(lo))
        .fold(f64::NAN, f64::max);
    let max = candidates
        .iter()
        .copied()
        .find(|c| *c >= hi - tol(hi))
        .unwrap_or(hi);
    let min = if min.is_nan() { lo } else { min };
    let ticks: Vec<f64> = candidates
        .into_iter()
        .filter(|c| *c >= min && *c <= max)
        .collect();
    let labels = ticks.iter().map(|&t| log_label(t)).collect();
    Axis {
        min,
        max,
        ticks,
        labels,
        log: true,
    }
}

/// More than two decades: whole decades, every `stride`-th one ticked.
fn log_axis_decades(lo: f64, hi: f64) -> Axis {
    let e_lo = decade_floor(lo);
    let mut e_hi = decade_ceil(hi).max(e_lo + 1);
    let span = e_hi - e_lo;
    let stride = ((span + MAX_LOG_DECADE_TICKS - 1) / MAX_LOG_DECADE_TICKS).max(1);
    // Round the top up so that both ends of the axis carry a tick.
    e_hi = e_lo + ((span + stride - 1) / stride) * stride;
    let ticks: Vec<f64> = (e_lo..=e_hi)
        .step_by(stride as usize)
        .map(|e| scale10(1.0, e))
        .collect();
    let labels = ticks.iter().map(|&t| log_label(t)).collect();
    Axis {
        min: scale10(1.0, e_lo),
        max: scale10(1.0, e_hi),
        ticks,
        labels,
        log: true,
    }
}

/// A 1-2-5 log tick: plain decimals in `[1e-4, 1e6)`, else `2e-5` style.
fn log_label(v: f64) -> String {
    if (1e-4..1e6).contains(&v) {
        let decimals = (-decade_floor(v)).max(0) as usize;
        format_fixed(v, decimals)
    } else {
        format!("{v:.0e}")
    }
}

/// Fixed decimals without a "-0" artefact.
fn format_fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// Label for a bound that is not on a nice step (fallback only).
fn format_general(v: f64) -> String {
    format!("{v:.3e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_ticks(axis: &Axis, expected: &[f64]) {
        assert_eq!(axis.ticks.len(), expected.len(), "ticks {:?}", axis.ticks);
        for (t, e) in axis.ticks.iter().zip(expected) {
            assert!((t - e).abs() <= e.abs() * 1e-12, "ticks {:?}", axis.ticks);
        }
    }

    #[test]
    fn unit_range_gets_fifths() {
        // range 1 / 5 intervals = 0.2, already a 1-2-5 step, so the bounds stay put.
        let axis = linear_axis(0.0, 1.0, 5);
        assert_eq!(axis.ticks, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(axis.labels, vec!["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!((axis.min, axis.max), (0.0, 1.0));
    }

    #[test]
    fn range_3_to_47_widens_to_tens() {
        // 44 / 5 = 8.8 rounds up to the step 10; floor(3/10)=0, ceil(47/10)=5.
        let axis = linear_axis(3.0, 47.0, 5);
        assert_eq!(axis.ticks, vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(axis.labels, vec!["0", "10", "20", "30", "40", "50"]);
    }

    #[test]
    fn negative_and_fractional_ranges() {
        // 2.4 / 5 = 0.48 -> step 0.5; floor(-1.2/0.5) = -3, ceil(1.2/0.5) = 3.
        let axis = linear_axis(-1.2, 1.2, 5);
        assert_ticks(&axis, &[-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]);
        assert_eq!(axis.labels[3], "0.0");
        // 0.013 / 5 = 0.0026 -> step 0.005.
        let axis = linear_axis(2.001, 2.014, 5);
        assert_ticks(&axis, &[2.0, 2.005, 2.01, 2.015]);
        assert_eq!(axis.labels, vec!["2.000", "2.005", "2.010", "2.015"]);
    }

    #[test]
    fn degenerate_ranges_are_widened() {
        // A constant 5 gets ±0.5, then nice bounds with step 0.2.
        let axis = linear_axis(5.0, 5.0, 5);
        assert!(axis.min < 5.0 && axis.max > 5.0);
        assert_ticks(&axis, &[4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6]);
        let axis = linear_axis(0.0, 0.0, 5);
        assert_ticks(&axis, &[-1.0, -0.5, 0.0, 0.5, 1.0]);
        let axis = linear_axis(f64::NAN, 3.0, 5);
        assert_eq!((axis.min, axis.max), (0.0, 1.0));
    }

    #[test]
    fn extreme_ranges_do_not_panic() {
        for (lo, hi) in [
            (-f64::MAX, f64::MAX),
            (1e-310, 2e-310),
            (1.0, 1.0 + f64::EPSILON),
            (1e300, 1e300),
        ] {
            let axis = linear_axis(lo, hi, 5);
            assert!(axis.min < axis.max, "{lo} {hi} -> {axis:?}");
            assert!(axis.ticks.len() >= 2 && axis.ticks.len() <= MAX_TICKS + 1);
            assert_eq!(axis.ticks.len(), axis.labels.len());
            let axis = log_axis(lo, hi, 5);
            assert!(
                axis.min > 0.0 && axis.min < axis.max,
                "{lo} {hi} -> {axis:?}"
            );
        }
    }

    #[test]
    fn large_values_use_scientific_labels() {
        // 3e6 / 5 = 6e5 -> step 1e6: one significant digit is enough.
        let axis = linear_axis(0.0, 3e6, 5);
        assert_eq!(axis.labels, vec!["0", "1e6", "2e6", "3e6"]);
        // 2.2e6 / 5 = 4.4e5 -> step 5e5: the labels need a digit after the point.
        let axis = linear_axis(0.0, 2.2e6, 5);
        assert_eq!(axis.labels[1], "5.0e5");
        assert_eq!(axis.labels.last().map(String::as_str), Some("2.5e6"));
    }

    #[test]
    fn log_wide_range_uses_decades() {
        // 900 / 2 = 450 > 100: whole decades 10^0 ..= 10^3.
        let axis = log_axis(2.0, 900.0, 5);
        assert_eq!(axis.ticks, vec![1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(axis.labels, vec!["1", "10", "100", "1000"]);
        assert_eq!((axis.min, axis.max), (1.0, 1000.0));
    }

    #[test]
    fn log_exact_powers_do_not_gain_a_decade() {
        let axis = log_axis(0.01, 1000.0, 5);
        assert_eq!(axis.ticks, vec![0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(axis.labels[0], "0.01");
    }

    #[test]
    fn log_very_wide_range_is_thinned() {
        // 10^-10 ..= 10^10 is 20 decades: stride ceil(20/8) = 3, top rounded up to 10^11.
        let axis = log_axis(1e-10, 1e10, 5);
        assert_eq!(axis.ticks.len(), 8);
        assert_eq!(axis.labels[0], "1e-10");
        assert_eq!(axis.max, 1e11);
    }

    #[test]
    fn log_two_decades_uses_125() {
        // 90 / 2 = 45: between one and two decades.
        let axis = log_axis(2.0, 90.0, 5);
        assert_eq!(axis.ticks, vec![2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
        let axis = log_axis(0.03, 0.9, 5);
        assert_eq!(axis.ticks, vec![0.02, 0.05, 0.1, 0.2, 0.5, 1.0]);
        assert_eq!(axis.labels, vec!["0.02", "0.05", "0.1", "0.2", "0.5", "1"]);
    }

    #[test]
    fn log_narrow_range_falls_back_to_linear_ticks() {
        // 3.4 / 2.1 < 10: linear ticks; 1.3 / 5 = 0.26 -> step 0.5.
        let axis = log_axis(2.1, 3.4, 5);
        assert!(axis.log);
        assert_ticks(&axis, &[2.0, 2.5, 3.0, 3.5]);
        // The nice lower bound would be 0, which a log axis cannot show: 0.6 floors to 0.5.
        let axis = log_axis(0.6, 4.0, 5);
        assert_eq!(axis.min, 0.5);
        assert_ticks(&axis, &[0.5, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(axis.labels, vec!["0.5", "1", "2", "3", "4"]);
    }

    #[test]
    fn log_bad_inputs_get_defaults() {
        let axis = log_axis(-1.0, 0.0, 5);
        assert!(axis.min > 0.0 && axis.max > axis.min);
        let axis = log_axis(7.0, 7.0, 5);
        assert!(axis.min < 7.0 && axis.max > 7.0);
    }

    #[test]
    fn floor_125_picks_the_value_below() {
        assert_eq!(floor_125(0.6), 0.5);
        assert_eq!(floor_125(5.0), 5.0);
        assert_eq!(floor_125(4.99), 2.0);
        assert_eq!(floor_125(1.0), 1.0);
        assert_eq!(floor_125(0.019), 0.01);
    }

    #[test]
    fn fraction_maps_ends_and_log_midpoint() {
        let axis = log_axis(1.0, 1000.0, 5);
        assert_eq!(axis.fraction(1.0), 0.0);
        assert!((axis.fraction(1000.0) - 1.0).abs() < 1e-12);
        assert!((axis.fraction(10f64.powf(1.5)) - 0.5).abs() < 1e-12);
        assert_eq!(axis.fraction(-3.0), 0.0);
    }
}
