//! The paper's claims, each with the effect this run measured, its seed spread and a plain
//! verdict: reproduced, not reproduced, or not separable at this scale.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::ReportNumbers;
use crate::report::stats::Stat;

/// What the measurement says about one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The effect has the paper's direction and exceeds the seed spread (two-sided two-sample
    /// t-test at 5%).
    Reproduced,
    /// The effect has the opposite direction and exceeds the seed spread.
    NotReproduced,
    /// The difference does not exceed the seed spread.
    NotSeparable,
    /// One seed: the paper's direction, with no spread to test it against.
    SameDirectionOneSeed,
    /// One seed: the opposite direction, with no spread to test it against.
    OppositeDirectionOneSeed,
    /// A comparison without a direction to expect: the two differ beyond the seed spread.
    Differs,
    /// A comparison without a direction to expect, with one seed.
    OneSeed,
    /// A method the claim needs is not in the report.
    NotMeasured,
}

impl Verdict {
    /// Wording for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Reproduced => "**reproduced**",
            Verdict::NotReproduced => "**not reproduced** (the opposite, beyond the seed spread)",
            Verdict::NotSeparable => "not separable at this scale (within the seed spread)",
            Verdict::SameDirectionOneSeed => {
                "same direction as the paper; one seed, so not tested against the spread"
            }
            Verdict::OppositeDirectionOneSeed => {
                "opposite direction; one seed, so not tested against the spread"
            }
            Verdict::Differs => "**they differ** beyond the seed spread (see the sign)",
            Verdict::OneSeed => "one seed, so not tested against the spread",
            Verdict::NotMeasured => "not measured (a method is missing)",
        }
    }
}

/// One of the paper's claims checked against this run.
#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    /// The claim, in one line.
    pub claim: String,
    /// What the paper reports for it.
    pub paper: String,
    /// What this run measured: the effect (mean over seeds, ± the standard error of the
    /// difference when there are several seeds).
    pub measured: String,
    /// The verdict.
    pub verdict: Verdict,
}

/// The verdict for "`a` − `b` has the sign `expected_sign`" (−1: `a` lower).
fn verdict(a: &Stat, b: &Stat, expected_sign: f64) -> Verdict {
    let difference = a.mean - b.mean;
    let agrees = difference * expected_sign > 0.0;
    match a.differs_from(b) {
        None if agrees => Verdict::SameDirectionOneSeed,
        None => Verdict::OppositeDirectionOneSeed,
        Some(false) => Verdict::NotSeparable,
        Some(true) if agrees => Verdict::Reproduced,
        Some(true) => Verdict::NotReproduced,
    }
}

/// `a − b` as text, `+1.234` or `+1.234 ± 0.567 (standard error)` with several seeds.
fn difference(a: &Stat, b: &Stat, decimals: usize, scale: f64) -> String {
    let d = scale * (a.mean - b.mean);
    match a.standard_error_of_difference(b) {
        Some(se) => format!("{d:+.decimals$} ± {:.decimals$}", scale * se),
        None => format!("{d:+.decimals$}"),
    }
}

/// The claims of the ODM paper that this report's numbers can check, in the paper's order.
pub fn claims(n: &ReportNumbers, steps: u64) -> Vec<Claim> {
    let find = |id: &str| n.methods.iter().find(|m| m.id == id);
    let mut out = Vec::new();
    let missing = |claim: &str, paper: &str| Claim {
        claim: claim.into(),
        paper: paper.into(),
        measured: "—".into(),
        verdict: Verdict::NotMeasured,
    };

    // Fig. 1: ODM reaches TPW's final validation perplexity in fewer iterations.
    let (claim, paper) = (
        "ODM (paper rule) reaches TPW's final validation perplexity in fewer iterations",
        "30% fewer iterations; final validation perplexity 4.8% lower (Fig. 1)",
    );
    out.push(match (find("odm-paper"), find("tpw")) {
        (Some(odm), Some(tpw)) => {
            let reach = n
                .fewer_iterations
                .iter()
                .find(|f| f.odm == "odm-paper" && f.baseline == "tpw")
                .and_then(|f| f.step)
                .map_or("never reaches it".to_owned(), |s| {
                    format!(
                        "reaches it at step {s} of {steps} ({:.0}% fewer iterations)",
                        100.0 * (1.0 - s as f64 / steps as f64)
                    )
                });
            Claim {
                claim: claim.into(),
                paper: paper.into(),
                measured: format!(
                    "{reach}; final validation perplexity ODM − TPW = {}",
                    difference(&odm.final_val_ppl, &tpw.final_val_ppl, 3, 1.0)
                ),
                verdict: verdict(&odm.final_val_ppl, &tpw.final_val_ppl, -1.0),
            }
        }
        _ => missing(claim, paper),
    });

    // Fig. 1 and Fig. 3: ODM beats DoReMi-50k.
    let (claim, paper) = (
        "ODM (paper rule) ends with lower perplexity than DoReMi-50k",
        "final validation perplexity 2.4% lower, 19% fewer iterations (Fig. 1); test perplexity lower (Fig. 3)",
    );
    out.push(match (find("odm-paper"), find("doremi-50k")) {
        (Some(odm), Some(doremi)) => {
            let test = match (&odm.test_avg_ppl, &doremi.test_avg_ppl) {
                (Some(a), Some(b)) => format!("; test perplexity {}", difference(a, b, 3, 1.0)),
                _ => String::new(),
            };
            Claim {
                claim: claim.into(),
                paper: paper.into(),
                measured: format!(
                    "final validation perplexity ODM − DoReMi-50k = {}{test}",
                    difference(&odm.final_val_ppl, &doremi.final_val_ppl, 3, 1.0)
                ),
                verdict: verdict(&odm.final_val_ppl, &doremi.final_val_ppl, -1.0),
            }
        }
        _ => missing(claim, paper),
    });

    // Table 1: ODM's 5-shot MMLU beats TPW's (lm-eval 0.3.0, the paper protocol).
    let (claim, paper) = (
        "ODM (paper rule) answers more 5-shot multiple-choice questions than TPW (paper protocol)",
        "28.42% vs 27.47% on MMLU, 3% relative (Table 1)",
    );
    let mc = |id: &str| find(id).and_then(|m| m.mc.get("paper")).map(|x| &x.acc);
    out.push(match (mc("odm-paper"), mc("tpw")) {
        (Some(odm), Some(tpw)) => Claim {
            claim: claim.into(),
            paper: paper.into(),
            measured: format!(
                "accuracy ODM − TPW = {} percentage points (this corpus's questions, not MMLU)",
                difference(odm, tpw, 2, 100.0)
            ),
            verdict: verdict(odm, tpw, 1.0),
        },
        _ => missing(claim, paper),
    });

    // Fig. 4: ODM's sampling distribution ends more balanced than TPW's.
    let (claim, paper) = (
        "ODM's sampling distribution ends closer to uniform than TPW's",
        "ODM moves weight from the large domains to the small ones (Fig. 4)",
    );
    out.push(match (find("odm-paper"), find("tpw")) {
        (Some(odm), Some(tpw)) => Claim {
            claim: claim.into(),
            paper: paper.into(),
            measured: format!(
                "entropy of the final sampling weights ODM − TPW = {} nats (uniform: ln K)",
                difference(&odm.final_entropy, &tpw.final_entropy, 3, 1.0)
            ),
            verdict: verdict(&odm.final_entropy, &tpw.final_entropy, 1.0),
        },
        _ => missing(claim, paper),
    });

    // The reference code's update rule against the paper's: no direction to expect.
    let (claim, paper) = (
        "Does the reference code's update rule (`odm-code`) end differently from the paper's (`odm-paper`)?",
        "the paper describes one rule; its code runs another (odm-facts.md §3)",
    );
    out.push(match (find("odm-code"), find("odm-paper")) {
        (Some(code), Some(paper_rule)) => Claim {
            claim: claim.into(),
            paper: paper.into(),
            measured: format!(
                "final validation perplexity code − paper rule = {}",
                difference(&code.final_val_ppl, &paper_rule.final_val_ppl, 3, 1.0)
            ),
            verdict: match code.final_val_ppl.differs_from(&paper_rule.final_val_ppl) {
                None => Verdict::OneSeed,
                Some(true) => Verdict::Differs,
                Some(false) => Verdict::NotSeparable,
            },
        },
        _ => missing(claim, paper),
    });
    out
}

/// The claims section of the report.
pub fn markdown(n: &ReportNumbers, md: &mut String) {
    let seeds = n.seeds.len();
    let spread = if seeds < 2 {
        "With one seed there is no estimate of the seed-to-seed spread, so no verdict can be stronger than a direction.".to_owned()
    } else {
        format!(
            "Effects are means over {seeds} seeds ± the standard error of the difference; a verdict needs the two-sided two-sample t-test (pooled variance) to reject equal means at the 5% level."
        )
    };
    let _ = writeln!(
        md,
        "## The paper's claims at this scale\n\n{spread}\n\n| claim | paper | this run | verdict |\n|---|---|---|---|"
    );
    for c in &n.claims {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            c.claim,
            c.paper,
            c.measured,
            c.verdict.describe()
        );
    }
    let _ = writeln!(md);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::numbers::{FewerIterations, MethodNumbers};

    fn stat(values: &[f64]) -> Stat {
        Stat::of(values.to_vec())
    }

    #[test]
    fn verdicts_follow_the_t_test_and_the_expected_sign() {
        // [10, 11, 12] vs [13, 14, 15]: difference −3, both sample std 1, pooled variance 1,
        // standard error sqrt(1/3 + 1/3) = 0.8165, t = 3.674 > t(4 df, 5%) = 2.776.
        let (low, high) = (stat(&[10.0, 11.0, 12.0]), stat(&[13.0, 14.0, 15.0]));
        assert_eq!(verdict(&low, &high, -1.0), Verdict::Reproduced);
        assert_eq!(verdict(&high, &low, -1.0), Verdict::NotReproduced);
        assert_eq!(difference(&low, &high, 3, 1.0), "-3.000 ± 0.816");
        // A shift of 0.5: t = 0.61, within the spread.
        let near = stat(&[10.5, 11.5, 12.5]);
        assert_eq!(verdict(&low, &near, -1.0), Verdict::NotSeparable);
        // One seed: a direction only.
        assert_eq!(
            verdict(&stat(&[10.0]), &stat(&[11.0]), -1.0),
            Verdict::SameDirectionOneSeed
        );
        assert_eq!(
            verdict(&stat(&[12.0]), &stat(&[11.0]), -1.0),
            Verdict::OppositeDirectionOneSeed
        );
        assert_eq!(difference(&stat(&[0.3]), &stat(&[0.25]), 2, 100.0), "+5.00");
    }

    fn method(id: &str, val: &[f64], entropy: &[f64]) -> MethodNumbers {
        MethodNumbers {
            final_val_ppl: stat(val),
            final_entropy: stat(entropy),
            ..MethodNumbers::empty(id)
        }
    }

    #[test]
    fn each_claim_reads_its_methods() {
        let numbers = ReportNumbers {
            methods: vec![
                method("tpw", &[13.0, 14.0, 15.0], &[2.0, 2.0, 2.0]),
                method("odm-paper", &[10.0, 11.0, 12.0], &[2.2, 2.3, 2.4]),
                method("odm-code", &[10.5, 11.5, 12.5], &[2.2, 2.3, 2.4]),
            ],
            fewer_iterations: vec![FewerIterations {
                odm: "odm-paper".into(),
                baseline: "tpw".into(),
                target: 14.0,
                step: Some(60),
                fewer: Some(0.625),
                final_gap: 11.0 / 14.0 - 1.0,
            }],
            domains: Vec::new(),
            seeds: vec![42, 1234, 100],
            unfinished: Vec::new(),
            left_out: Vec::new(),
            claims: Vec::new(),
            reference: None,
        };
        let claims = claims(&numbers, 160);
        let verdicts: Vec<Verdict> = claims.iter().map(|c| c.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Reproduced,  // ODM below TPW by 3 (t = 3.67)
                Verdict::NotMeasured, // no DoReMi-50k
                Verdict::NotMeasured, // no multiple choice
                // Entropy: TPW's std is 0, ODM's 0.1; pooled variance 0.005, standard error
                // 0.0577, difference 0.3: t = 5.2 > 2.776.
                Verdict::Reproduced,
                Verdict::NotSeparable, // code − paper rule = +0.5, t = 0.61
            ]
        );
        assert!(
            claims[0]
                .measured
                .starts_with("reaches it at step 60 of 160 (62% fewer iterations)"),
            "{}",
            claims[0].measured
        );
        let mut md = String::new();
        let numbers = ReportNumbers { claims, ..numbers };
        markdown(&numbers, &mut md);
        assert!(
            md.contains(
                "| ODM (paper rule) reaches TPW's final validation perplexity in fewer iterations |"
            ),
            "{md}"
        );
        assert!(md.contains("means over 3 seeds"), "{md}");
    }
}
