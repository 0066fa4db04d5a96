//! Reading one run directory: its metrics (plain or zstd-compressed), summary, test
//! perplexity, multiple-choice reports and timing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result, StudyError, bail};
use mixlab_eval::perplexity::PerplexityReport;
use mixlab_eval::{McReport, Protocol};
use mixlab_train::{EvalTag, MetricsLine, SummaryRecord};

use crate::plan::Plan;
use crate::timing::RunTiming;

/// One train line of metrics.jsonl, reduced to what the report uses.
#[derive(Debug, Clone)]
pub(super) struct TrainPoint {
    pub(super) step: u64,
    pub(super) step_s: f64,
    pub(super) mixer_s: f64,
    /// The policy's sampling distribution this step, in dataset domain order.
    pub(super) weights: Vec<f64>,
    /// Sequences drawn per domain so far, in dataset domain order.
    pub(super) cumulative: Vec<f64>,
}

/// Everything read from one run directory.
#[derive(Debug, Clone)]
pub(super) struct RunData {
    /// (step, unweighted mean validation perplexity over domains).
    pub(super) val: Vec<(u64, f64)>,
    /// The train lines, in order.
    pub(super) train: Vec<TrainPoint>,
    /// The sampling weights at the end (summary.json), in dataset domain order.
    pub(super) final_weights: Vec<f64>,
    /// test-ppl.json, when evaluated.
    pub(super) test: Option<PerplexityReport>,
    /// mc-<protocol>.json by protocol, those evaluated.
    pub(super) mc: BTreeMap<String, McReport>,
    /// timing.json.
    pub(super) timing: RunTiming,
}

/// A run's `metrics.jsonl`, or its zstd-compressed `metrics.jsonl.zst` when only that is kept
/// (the metrics of a long run are tens of MB as text and a twentieth of it compressed), with the
/// path it was read from.
fn read_metrics(dir: &Path) -> Result<(PathBuf, String)> {
    let plain = dir.join("metrics.jsonl");
    if plain.is_file() {
        let text = std::fs::read_to_string(&plain)
            .with_context(|| format!("reading {}", plain.display()))?;
        return Ok((plain, text));
    }
    let packed = dir.join("metrics.jsonl.zst");
    if !packed.is_file() {
        bail!(
            "neither {} nor {} exists (has this run finished?)",
            plain.display(),
            packed.display()
        );
    }
    let file =
        std::fs::File::open(&packed).with_context(|| format!("opening {}", packed.display()))?;
    let bytes = zstd::decode_all(file)
        .with_context(|| format!("{}: not a complete zstd stream", packed.display()))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{}: decompressed text is not UTF-8", packed.display()))?;
    Ok((packed, text))
}

pub(super) fn read_run(dir: &Path, domains: &[String]) -> Result<RunData> {
    let (metrics, text) = read_metrics(dir)?;
    // `what` names the file, line and field for the error.
    let by_domain =
        |values: &BTreeMap<String, f64>, what: &dyn Fn() -> String| -> Result<Vec<f64>> {
            domains
                .iter()
                .map(|d| {
                    values
                        .get(d)
                        .copied()
                        .with_context(|| format!("{} has no number for domain {d:?}", what()))
                })
                .collect()
        };
    let mut val = Vec::new();
    let mut train = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let parsed = MetricsLine::parse(line).map_err(|reason| {
            StudyError::Invalid(format!("{} line {n}: {reason}", metrics.display()))
        })?;
        match parsed {
            // Only periodic validations: a mixer's own (Aioli's probes) would give its curve
            // other steps than the other methods'.
            MetricsLine::Eval(eval) if eval.split == "val" && eval.kind == EvalTag::Eval => {
                val.push((eval.step, eval.mean_perplexity));
            }
            MetricsLine::Train(record) => {
                let cumulative: BTreeMap<String, f64> = record
                    .cumulative_sequences
                    .iter()
                    .map(|(domain, &count)| (domain.clone(), count as f64))
                    .collect();
                train.push(TrainPoint {
                    step: record.step,
                    step_s: record.timing.step_s,
                    mixer_s: record.timing.mixer_s,
                    weights: by_domain(&record.weights, &|| {
                        format!("{} line {n}: weights", metrics.display())
                    })?,
                    cumulative: by_domain(&cumulative, &|| {
                        format!("{} line {n}: cumulative_sequences", metrics.display())
                    })?,
                });
            }
            _ => {}
        }
    }
    if val.is_empty() {
        bail!("{} has no validation lines", metrics.display());
    }
    let summary_path = dir.join("summary.json");
    let summary = SummaryRecord::read(&summary_path)?;
    let final_weights = by_domain(&summary.final_weights, &|| {
        format!("{}: final_weights", summary_path.display())
    })?;
    let test_path = dir.join("test-ppl.json");
    let test = if test_path.is_file() {
        Some(
            serde_json::from_str(&std::fs::read_to_string(&test_path)?)
                .with_context(|| format!("parsing {}", test_path.display()))?,
        )
    } else {
        None
    };
    let mut mc = BTreeMap::new();
    for protocol in Protocol::ALL {
        let path = dir.join(format!("mc-{protocol}.json"));
        if path.is_file() {
            let report: McReport = serde_json::from_str(&std::fs::read_to_string(&path)?)
                .with_context(|| format!("parsing {}", path.display()))?;
            mc.insert(protocol.to_string(), report);
        }
    }
    Ok(RunData {
        val,
        train,
        final_weights,
        test,
        mc,
        timing: RunTiming::load(dir)?,
    })
}

/// Whether a run has finished training and the evaluations the paper's comparison needs. The
/// `continuation` protocol is not required: results made before it existed still report, with
/// "—" in its columns (a rerun of `reproduce` adds it).
pub(super) fn run_finished(plan: &Plan, dir: &Path) -> bool {
    let mc_done = plan.mc.is_none()
        || (dir.join("mc-harness.json").is_file() && dir.join("mc-paper.json").is_file());
    dir.join("summary.json").is_file() && dir.join("test-ppl.json").is_file() && mc_done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_plain_or_zstd_compressed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let err = read_metrics(dir).unwrap_err().to_string();
        assert!(
            err.contains("metrics.jsonl.zst") && err.contains("finished"),
            "{err}"
        );

        let text = "{\"type\":\"train\",\"step\":1}\n";
        let packed = dir.join("metrics.jsonl.zst");
        std::fs::write(&packed, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        assert_eq!(
            read_metrics(dir).unwrap(),
            (packed.clone(), text.to_owned())
        );

        // The plain file wins when both exist: it is what a run still appending writes.
        let plain = dir.join("metrics.jsonl");
        std::fs::write(&plain, "plain\n").unwrap();
        assert_eq!(
            read_metrics(dir).unwrap(),
            (plain.clone(), "plain\n".to_owned())
        );

        std::fs::remove_file(&plain).unwrap();
        let whole = zstd::encode_all(text.as_bytes(), 3).unwrap();
        std::fs::write(&packed, &whole[..whole.len() / 2]).unwrap();
        let err = format!("{:#}", read_metrics(dir).unwrap_err());
        assert!(
            err.contains("metrics.jsonl.zst: not a complete zstd stream"),
            "{err}"
        );
    }
}
