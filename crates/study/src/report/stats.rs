//! The report's statistics: mean ± sample standard deviation over seeds, the two-sample t-test
//! that says whether two methods differ beyond the seed spread, and the exact binomial test of an
//! accuracy against the 25% of guessing.

use serde::Serialize;

/// Mean, sample standard deviation (None for one value) and the values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stat {
    /// Mean over seeds.
    pub mean: f64,
    /// Sample standard deviation over seeds (absent with one seed).
    pub std: Option<f64>,
    /// One value per seed, in plan seed order.
    pub per_seed: Vec<f64>,
}

impl Stat {
    pub(crate) fn of(values: Vec<f64>) -> Stat {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.len() > 1)
            .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        Stat {
            mean,
            std,
            per_seed: values,
        }
    }

    /// `12.345` or `12.345 ± 0.120` with `decimals`.
    pub(super) fn show(&self, decimals: usize) -> String {
        match self.std {
            Some(s) => format!("{:.*} ± {:.*}", decimals, self.mean, decimals, s),
            None => format!("{:.*}", decimals, self.mean),
        }
    }

    /// As a percentage.
    pub(super) fn show_pct(&self, decimals: usize) -> String {
        match self.std {
            Some(s) => format!(
                "{:.*}% ± {:.*}",
                decimals,
                100.0 * self.mean,
                decimals,
                100.0 * s
            ),
            None => format!("{:.*}%", decimals, 100.0 * self.mean),
        }
    }

    /// The standard error of `self.mean − other.mean` from the pooled variance (None: fewer than
    /// two seeds on a side).
    pub(crate) fn standard_error_of_difference(&self, other: &Stat) -> Option<f64> {
        let (sa, sb) = (self.std?, other.std?);
        let (na, nb) = (self.per_seed.len() as f64, other.per_seed.len() as f64);
        let df = self.per_seed.len() + other.per_seed.len() - 2;
        let pooled = ((na - 1.0) * sa * sa + (nb - 1.0) * sb * sb) / df as f64;
        Some((pooled * (1.0 / na + 1.0 / nb)).sqrt())
    }

    /// Whether the means differ at the 5% level of a two-sided two-sample Student's t-test with
    /// pooled variance (None: fewer than two seeds on a side). With few seeds the critical value
    /// is large (4.30 for two seeds each), which is the honest price of few seeds.
    pub(crate) fn differs_from(&self, other: &Stat) -> Option<bool> {
        let se = self.standard_error_of_difference(other)?;
        let df = self.per_seed.len() + other.per_seed.len() - 2;
        Some((self.mean - other.mean).abs() > t_critical_95(df) * se)
    }
}

/// The two-sided 95% critical value of Student's t with `df` degrees of freedom (a standard
/// table; between its rows the next smaller df is used, which errs on the conservative side).
pub(super) fn t_critical_95(df: usize) -> f64 {
    const TABLE: [(usize, f64); 15] = [
        (1, 12.706),
        (2, 4.303),
        (3, 3.182),
        (4, 2.776),
        (5, 2.571),
        (6, 2.447),
        (7, 2.365),
        (8, 2.306),
        (9, 2.262),
        (10, 2.228),
        (12, 2.179),
        (15, 2.131),
        (20, 2.086),
        (30, 2.042),
        (60, 2.000),
    ];
    if df > 120 {
        return 1.96;
    }
    TABLE
        .iter()
        .rev()
        .find(|(d, _)| *d <= df)
        .map_or(f64::INFINITY, |(_, t)| *t)
}

/// Whether an accuracy is above the 25% of guessing among four options: correct answers pooled
/// over seeds, tested with the exact one-sided binomial test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChanceTest {
    /// Correct answers, summed over seeds.
    pub correct: u64,
    /// Questions scored, summed over seeds.
    pub questions: u64,
    /// P(X >= correct) for X ~ Binomial(questions, 0.25): the chance of doing this well by
    /// guessing.
    pub p_value: f64,
}

/// Significance level of [`ChanceTest::above_chance`]: strict, because a report has many cells.
pub const CHANCE_ALPHA: f64 = 0.01;

impl ChanceTest {
    pub(super) fn of(correct: u64, questions: u64) -> ChanceTest {
        ChanceTest {
            correct,
            questions,
            p_value: binomial_upper_tail(correct, questions, 0.25),
        }
    }

    /// Above chance at [`CHANCE_ALPHA`].
    pub fn above_chance(&self) -> bool {
        self.questions > 0 && self.p_value < CHANCE_ALPHA
    }

    /// `*` when above chance, else nothing (the marker of Table 1).
    pub(super) fn marker(&self) -> &'static str {
        if self.above_chance() { "*" } else { "" }
    }
}

/// P(X >= k) for X ~ Binomial(n, p), summed exactly in log space (n up to the hundreds of
/// thousands of an MMLU run over seeds costs a few milliseconds).
fn binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    // ln(i!) for i = 0..=n.
    let mut ln_fact = Vec::with_capacity(n as usize + 1);
    ln_fact.push(0.0f64);
    for i in 1..=n {
        ln_fact.push(ln_fact[i as usize - 1] + (i as f64).ln());
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let term = |i: u64| {
        ln_fact[n as usize] - ln_fact[i as usize] - ln_fact[(n - i) as usize]
            + i as f64 * lp
            + (n - i) as f64 * lq
    };
    // Sum relative to the largest term so tiny tails do not underflow to zero too early.
    let terms: Vec<f64> = (k..=n).map(term).collect();
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    (max + sum.ln()).exp().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_matches_exact_sums() {
        // Hand: P(X >= 3 | n = 4, p = 1/4) = 4 (1/4)^3 (3/4) + (1/4)^4 = 0.046875 + 0.00390625.
        assert!((binomial_upper_tail(3, 4, 0.25) - 0.05078125).abs() < 1e-12);
        assert!((binomial_upper_tail(4, 4, 0.25) - 0.00390625).abs() < 1e-12);
        assert_eq!(binomial_upper_tail(0, 10, 0.25), 1.0);
        assert_eq!(binomial_upper_tail(11, 10, 0.25), 0.0);
        // The rest against exact rational sums of C(n, i) (1/4)^i (3/4)^(n - i) (Python's
        // fractions): 55 of 150 right is p = 0.0010036, 47 of 150 is 0.047321, all 150 is 4.909e-91.
        for (k, n, want) in [
            (55, 150, 0.0010036477730922114),
            (47, 150, 0.04732087289192179),
            (150, 150, 4.909093465297727e-91),
            (600, 2000, 2.334978407357519e-07),
            (500, 2000, 0.5085832112651493),
        ] {
            let got = binomial_upper_tail(k, n, 0.25);
            assert!((got / want - 1.0).abs() < 1e-9, "{k}/{n}: {got} vs {want}");
        }
        // 55/150 is above chance at 1%, 47/150 is not.
        assert!(ChanceTest::of(55, 150).above_chance());
        assert!(!ChanceTest::of(47, 150).above_chance());
        assert!(!ChanceTest::of(0, 0).above_chance());
    }

    #[test]
    fn stat_is_the_mean_and_the_sample_standard_deviation() {
        // 2, 4, 6: mean 4, squared deviations 4 + 0 + 4 = 8, over n − 1 = 2 → variance 4, std 2.
        let s = Stat::of(vec![2.0, 4.0, 6.0]);
        assert_eq!(s.mean, 4.0);
        assert_eq!(s.std, Some(2.0));
        assert_eq!(s.show(2), "4.00 ± 2.00");
        assert_eq!(Stat::of(vec![0.25]).show_pct(1), "25.0%");
        assert_eq!(Stat::of(vec![3.0]).std, None);
        // Means 4 and 10, each std 2 over 3 seeds: pooled variance 4, standard error of the
        // difference sqrt(4 (1/3 + 1/3)) = 1.633, df = 4, t(0.975, 4) = 2.776, threshold
        // 4.53 < 6: they differ. Means 4 and 8: 4 < 4.53, they do not.
        assert_eq!(s.differs_from(&Stat::of(vec![8.0, 10.0, 12.0])), Some(true));
        assert_eq!(s.differs_from(&Stat::of(vec![6.0, 8.0, 10.0])), Some(false));
        assert_eq!(t_critical_95(2), 4.303);
        assert_eq!(t_critical_95(11), 2.228);
        assert_eq!(t_critical_95(500), 1.96);
        assert_eq!(s.differs_from(&Stat::of(vec![4.0])), None);
    }
}
