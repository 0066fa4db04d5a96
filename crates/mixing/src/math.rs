//! Small, allocation-free numerics shared by the mixers (all in f64).

/// Writes `softmax(scale * logits)` into `out`, computed stably: the maximum is subtracted
/// before `exp`, so no logit is large enough to overflow. Entries of `logits` equal to
/// `-inf` get probability 0; if every entry is `-inf`, `out` is left untouched and `false`
/// is returned (there is no distribution to compute).
///
/// # Panics
/// If `logits` and `out` differ in length.
pub fn softmax_into(logits: &[f64], scale: f64, out: &mut [f64]) -> bool {
    assert_eq!(logits.len(), out.len(), "softmax_into: length mismatch");
    let max = logits
        .iter()
        .map(|&x| scale * x)
        .fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return false;
    }
    let mut sum = 0.0;
    for (o, &x) in out.iter_mut().zip(logits) {
        let e = (scale * x - max).exp();
        *o = e;
        sum += e;
    }
    // sum >= 1 because the maximal entry contributes exp(0) = 1.
    for o in out.iter_mut() {
        *o /= sum;
    }
    true
}

/// `ln(exp(a) + exp(b))` without overflow; `-inf` stands for `ln 0`.
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// Divides `values` by their sum in place and returns the sum (unchanged if the sum is 0).
pub fn normalize_in_place(values: &mut [f64]) -> f64 {
    let sum: f64 = values.iter().sum();
    if sum > 0.0 {
        for v in values.iter_mut() {
            *v /= sum;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_the_definition_and_never_overflows() {
        let mut out = [0.0; 3];
        assert!(softmax_into(&[1.0, 2.0, 3.0], 1.0, &mut out));
        let z: f64 = [1.0f64, 2.0, 3.0].iter().map(|x| x.exp()).sum();
        for (o, x) in out.iter().zip([1.0f64, 2.0, 3.0]) {
            assert!((o - x.exp() / z).abs() < 1e-15);
        }
        assert!(softmax_into(&[1e6, 1e6 - 1.0, -1e6], 0.5, &mut out));
        assert!(out.iter().all(|x| x.is_finite()));
        assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!(softmax_into(&[f64::NEG_INFINITY, 0.0, 0.0], 1.0, &mut out));
        assert_eq!(out, [0.0, 0.5, 0.5]);
        out = [7.0; 3];
        assert!(!softmax_into(&[f64::NEG_INFINITY; 3], 1.0, &mut out));
        assert_eq!(out, [7.0; 3]);
    }

    #[test]
    fn log_add_exp_is_stable() {
        assert!((log_add_exp(0.0, 0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(log_add_exp(f64::NEG_INFINITY, 3.0), 3.0);
        assert_eq!(log_add_exp(3.0, f64::NEG_INFINITY), 3.0);
        assert_eq!(
            log_add_exp(f64::NEG_INFINITY, f64::NEG_INFINITY),
            f64::NEG_INFINITY
        );
        let big = log_add_exp(1000.0, 1000.0);
        assert!((big - (1000.0 + 2f64.ln())).abs() < 1e-12);
    }

    #[test]
    fn normalize() {
        let mut v = [1.0, 3.0];
        assert_eq!(normalize_in_place(&mut v), 4.0);
        assert_eq!(v, [0.25, 0.75]);
        let mut z = [0.0, 0.0];
        assert_eq!(normalize_in_place(&mut z), 0.0);
        assert_eq!(z, [0.0, 0.0]);
    }
}
