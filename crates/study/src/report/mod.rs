//! The report of a `reproduce` or `ablate-exploration` results directory, computed from the run
//! files alone: `report.md`, `report.json` (every number in the report) and SVG figures.
//!
//! `read` reads one run directory, `stats` holds the statistics (mean ± std, the t-test, the
//! binomial test against chance), `numbers` turns the runs of a plan into [`ReportNumbers`],
//! and `markdown` writes them as the report.

mod markdown;
pub(crate) mod numbers;
mod read;
pub(crate) mod stats;

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use mixlab_plot::write_svg;

pub use numbers::ReportNumbers;
use numbers::compute;

use crate::plan::{Plan, PlanKind};
use crate::timing::write_atomic;
use markdown::{ablation_report, reproduce_report};

/// Renders the report of `out` and returns the files written. With a `reference` directory
/// (a committed results directory of the same preset), the report ends with this directory's
/// numbers beside the reference's.
pub fn write_report(out: &Path, reference: Option<&Path>) -> Result<Vec<PathBuf>> {
    let plan = Plan::load(out)?;
    let mut numbers = compute(out, &plan)?;
    if let Some(dir) = reference {
        numbers.reference = Some(
            crate::reference::compare(out, &numbers, dir)
                .with_context(|| format!("comparing with the reference {}", dir.display()))?,
        );
    }
    let mut written = Vec::new();
    let mut md = String::new();
    match plan.kind {
        PlanKind::Reproduce => reproduce_report(out, &plan, &numbers, &mut md, &mut written)?,
        PlanKind::AblateExploration => {
            ablation_report(out, &plan, &numbers, &mut md, &mut written)?
        }
    }
    if let Some(comparison) = &numbers.reference {
        md.push('\n');
        md.push_str(&crate::reference::markdown(comparison));
    }
    let json = out.join("report.json");
    write_atomic(&json, &serde_json::to_string_pretty(&numbers)?)?;
    written.push(json);
    let path = out.join("report.md");
    write_atomic(&path, &md)?;
    written.push(path);
    Ok(written)
}

pub(super) fn svg(out: &Path, name: &str, svg: &str, written: &mut Vec<PathBuf>) -> Result<()> {
    let path = out.join(name);
    write_svg(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    Ok(())
}
