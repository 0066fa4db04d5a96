//! A user's comparison beside the committed reference of the same preset.
//!
//! `reproduce` trains into a directory of the user's (`runs/...`), never into `results/`; when
//! `results/` holds a reference made with the same plan, the report puts the user's final
//! validation perplexities beside the reference's and says whether they agree. On a CPU the
//! same commit computes exactly the same numbers, so "identical" is the expected answer there;
//! another machine (a GPU) or another commit agrees only within the spread of seeds.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::plan::{Plan, PlanKind};
use crate::report::ReportNumbers;

/// Where a results directory of `kind` at `preset` is committed: `results/<preset>` or
/// `results/ablate-exploration-<preset>` (relative to the repository root, where commands run).
pub fn committed_dir(kind: PlanKind, preset: &str) -> PathBuf {
    PathBuf::from("results").join(match kind {
        PlanKind::Reproduce => preset.to_string(),
        PlanKind::AblateExploration => format!("ablate-exploration-{preset}"),
    })
}

/// The committed reference for a results directory `out` of `kind` at `preset`: its committed
/// directory when that has a report and is not `out` itself.
pub fn find(out: &Path, kind: PlanKind, preset: &str) -> Option<PathBuf> {
    let reference = committed_dir(kind, preset);
    if !reference.join("report.json").is_file() || !reference.join("plan.json").is_file() {
        return None;
    }
    let same = match (reference.canonicalize(), out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    (!same).then_some(reference)
}

/// How one method's final validation perplexity compares with the reference's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Agreement {
    /// Every seed both have is equal (to 1e-12 relative, the JSON round trip's precision).
    Identical,
    /// Different values, but the means are within one standard deviation over seeds (the
    /// larger of the two).
    WithinSpread,
    /// The means are further apart than one standard deviation over seeds.
    OutsideSpread,
    /// Different values and one seed on a side: no spread to judge by.
    Differs,
}

impl Agreement {
    fn describe(self) -> &'static str {
        match self {
            Agreement::Identical => "identical",
            Agreement::WithinSpread => "within the seed spread",
            Agreement::OutsideSpread => "outside the seed spread",
            Agreement::Differs => "differs (one seed: no spread to judge by)",
        }
    }
}

/// One method in both.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceRow {
    /// Method id.
    pub id: String,
    /// Method label.
    pub label: String,
    /// This directory's mean final validation perplexity over its seeds.
    pub this: f64,
    /// The reference's.
    pub reference: f64,
    /// Whether they agree.
    pub agreement: Agreement,
}

/// The comparison with a committed reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceComparison {
    /// The reference directory.
    pub dir: PathBuf,
    /// Plan fields that differ (kind, preset, dataset, multiple choice): when any does, the
    /// runs are not comparable and `rows` is empty.
    pub plan_differs: Vec<String>,
    /// Methods both have with the same definition, in this report's order.
    pub rows: Vec<ReferenceRow>,
}

/// One method's final validation perplexity in a `report.json`: seeds and values.
fn final_ppl(report: &Value, id: &str) -> Option<(Vec<u64>, Vec<f64>, Option<f64>)> {
    let method = report["methods"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)?;
    let stat = &method["final_val_ppl"];
    let values: Vec<f64> = stat["per_seed"]
        .as_array()?
        .iter()
        .map(Value::as_f64)
        .collect::<Option<_>>()?;
    let seeds: Vec<u64> = report["seeds"]
        .as_array()?
        .iter()
        .map(Value::as_u64)
        .collect::<Option<_>>()?;
    (seeds.len() == values.len()).then(|| (seeds, values, stat["std"].as_f64()))
}

/// Whether `a` and `b` are the same number after a JSON round trip.
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

/// Judges a method from both sides' seeds, values and standard deviations.
fn agreement(
    this: (&[u64], &[f64], Option<f64>),
    reference: (&[u64], &[f64], Option<f64>),
) -> Agreement {
    let common: Vec<(f64, f64)> = this
        .0
        .iter()
        .zip(this.1)
        .filter_map(|(s, &v)| {
            let i = reference.0.iter().position(|r| r == s)?;
            Some((v, reference.1[i]))
        })
        .collect();
    if !common.is_empty() && common.iter().all(|&(a, b)| same(a, b)) {
        return Agreement::Identical;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    match (this.2, reference.2) {
        (Some(a), Some(b)) => {
            if (mean(this.1) - mean(reference.1)).abs() <= a.max(b) {
                Agreement::WithinSpread
            } else {
                Agreement::OutsideSpread
            }
        }
        _ => Agreement::Differs,
    }
}

/// Compares the numbers of the results directory `out` with the reference in `reference`.
pub fn compare(
    out: &Path,
    numbers: &ReportNumbers,
    reference: &Path,
) -> Result<ReferenceComparison> {
    let text = |path: &Path| -> Result<String> {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let read = |path: PathBuf| -> Result<Value> {
        serde_json::from_str(&text(&path)?).with_context(|| format!("parsing {}", path.display()))
    };
    let plan_semantics = |dir: &Path| -> Result<Value> {
        let path = dir.join("plan.json");
        Plan::saved_semantics(&text(&path)?, &path)
    };
    let ours = plan_semantics(out)?;
    let theirs = plan_semantics(reference)?;
    let report = read(reference.join("report.json"))?;
    let plan_differs: Vec<String> = ["kind", "preset", "dataset", "mc"]
        .into_iter()
        .filter(|f| ours[f] != theirs[f])
        .map(String::from)
        .collect();
    let mut rows = Vec::new();
    if plan_differs.is_empty() {
        let definition = |plan: &Value, id: &str| -> Option<Value> {
            plan["methods"]
                .as_array()?
                .iter()
                .find(|m| m["id"] == id)
                .cloned()
        };
        for m in &numbers.methods {
            let defined_alike = definition(&ours, &m.id).is_some()
                && definition(&ours, &m.id) == definition(&theirs, &m.id);
            let Some((seeds, values, std)) = final_ppl(&report, &m.id) else {
                continue;
            };
            if !defined_alike || values.is_empty() {
                continue;
            }
            let reference_mean = values.iter().sum::<f64>() / values.len() as f64;
            rows.push(ReferenceRow {
                id: m.id.clone(),
                label: m.label.clone(),
                this: m.final_val_ppl.mean,
                reference: reference_mean,
                agreement: agreement(
                    (
                        &numbers.seeds,
                        &m.final_val_ppl.per_seed,
                        m.final_val_ppl.std,
                    ),
                    (&seeds, &values, std),
                ),
            });
        }
    }
    Ok(ReferenceComparison {
        dir: reference.to_path_buf(),
        plan_differs,
        rows,
    })
}

/// The report's section for `comparison`.
pub fn markdown(comparison: &ReferenceComparison) -> String {
    use std::fmt::Write as _;
    let dir = comparison.dir.display();
    let mut md = format!("## Beside the committed reference (`{dir}`)\n\n");
    if !comparison.plan_differs.is_empty() {
        let _ = writeln!(
            md,
            "`{dir}` ran a different plan (differs in: {}), so its numbers are not comparable with these.",
            comparison.plan_differs.join(", ")
        );
        return md;
    }
    if comparison.rows.is_empty() {
        let _ = writeln!(
            md,
            "No method of this report is in `{dir}` with the same definition."
        );
        return md;
    }
    let _ = writeln!(
        md,
        "Final validation perplexity (unweighted mean over domains) of this directory and of the committed reference made with the same plan. On a CPU the same commit computes identical numbers; another machine or commit agrees within the spread of seeds.\n"
    );
    let _ = writeln!(
        md,
        "| method | this run | reference | agreement |\n|---|---:|---:|---|"
    );
    for row in &comparison.rows {
        let _ = writeln!(
            md,
            "| {} | {:.3} | {:.3} | {} |",
            row.label,
            row.this,
            row.reference,
            row.agreement.describe()
        );
    }
    let identical = comparison
        .rows
        .iter()
        .filter(|r| r.agreement == Agreement::Identical)
        .count();
    let _ = writeln!(
        md,
        "\n{identical} of {} method(s) identical to the reference.",
        comparison.rows.len()
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_is_exact_for_shared_seeds_else_judged_by_the_spread() {
        // The same seed and value: identical, even when other seeds differ in number.
        assert_eq!(
            agreement((&[42], &[5.2], None), (&[42, 7], &[5.2, 6.0], Some(0.57))),
            Agreement::Identical
        );
        // One seed each and different values: nothing to judge by.
        assert_eq!(
            agreement((&[42], &[5.3], None), (&[42], &[5.2], None)),
            Agreement::Differs
        );
        // Means 5.0 and 5.4, larger std 0.5: within; std 0.3: outside.
        assert_eq!(
            agreement(
                (&[1, 2], &[4.9, 5.1], Some(0.5)),
                (&[3, 4], &[5.3, 5.5], Some(0.1))
            ),
            Agreement::WithinSpread
        );
        assert_eq!(
            agreement(
                (&[1, 2], &[4.9, 5.1], Some(0.3)),
                (&[3, 4], &[5.3, 5.5], Some(0.1))
            ),
            Agreement::OutsideSpread
        );
    }

    #[test]
    fn the_committed_directory_is_named_by_kind_and_preset() {
        assert_eq!(
            committed_dir(PlanKind::Reproduce, "tiny"),
            Path::new("results/tiny")
        );
        assert_eq!(
            committed_dir(PlanKind::AblateExploration, "quick"),
            Path::new("results/ablate-exploration-quick")
        );
    }
}
