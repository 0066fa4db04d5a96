//! Throughput of multiple-choice evaluation: questions/s and tokens/s.

use std::time::Instant;

use mixlab_model::ModelBackend;
use serde::{Deserialize, Serialize};

use crate::dataset::McDataset;
use crate::error::Result;
use crate::model_scorer::ModelScorer;
use crate::multiple_choice::{McConfig, McReport, evaluate_multiple_choice};

/// Throughput of one multiple-choice run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McBenchReport {
    /// Questions scored.
    pub questions: u64,
    /// Log-likelihood requests scored (four per question).
    pub requests: u64,
    /// Distinct model input rows run (requests with identical inputs share one).
    pub rows: u64,
    /// Input tokens run through the model, without padding.
    pub input_tokens: u64,
    /// Input tokens including padding.
    pub padded_tokens: u64,
    /// Wall-clock seconds of the whole run: prompt building, cropping search, tokenization and
    /// forward passes.
    pub seconds: f64,
    /// `questions / seconds`.
    pub questions_per_second: f64,
    /// `input_tokens / seconds`.
    pub tokens_per_second: f64,
    /// The evaluation's own report (accuracy, cropping).
    pub report: McReport,
}

/// Runs [`evaluate_multiple_choice`] with `scorer` and times it.
pub fn bench_multiple_choice<B: ModelBackend>(
    scorer: &mut ModelScorer<B>,
    dataset: &McDataset,
    config: &McConfig,
) -> Result<McBenchReport> {
    let before = scorer.stats();
    let started = Instant::now();
    let report = evaluate_multiple_choice(scorer, dataset, config, None)?;
    let seconds = started.elapsed().as_secs_f64();
    let after = scorer.stats();
    let input_tokens = after.input_tokens - before.input_tokens;
    Ok(McBenchReport {
        questions: report.overall.questions,
        requests: after.requests - before.requests,
        rows: after.rows - before.rows,
        input_tokens,
        padded_tokens: after.padded_tokens - before.padded_tokens,
        seconds,
        questions_per_second: report.overall.questions as f64 / seconds.max(1e-9),
        tokens_per_second: input_tokens as f64 / seconds.max(1e-9),
        report,
    })
}
