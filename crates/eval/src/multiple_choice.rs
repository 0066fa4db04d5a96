//! k-shot multiple-choice evaluation (MMLU) under either protocol, with cropping, prompt dumps
//! and reports.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

mod markdown;

use crate::categories::{Category, category_of};
use crate::dataset::{McDataset, McQuestion, NUM_CHOICES, SubjectData};
use crate::error::{EvalError, Result};
use crate::prompt::{Protocol, build_context, continuations};
use crate::pyrandom::PythonRandom;
use crate::scorer::{LogLikelihoodRequest, LogLikelihoodScorer, argmax};

/// Settings of a multiple-choice run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McConfig {
    /// Prompt format and scoring rule.
    pub protocol: Protocol,
    /// Worked examples per prompt before cropping (5 for MMLU).
    pub num_fewshot: usize,
    /// Seed of the `paper` protocol's Python `random.Random` (lm-evaluation-harness 0.3.0: 42).
    pub seed: u64,
    /// Subjects to evaluate; empty means all subjects of the benchmark.
    pub subjects: Vec<String>,
    /// Score at most this many test questions per subject, the first ones in processing order.
    pub limit_per_subject: Option<usize>,
    /// Questions whose requests go to the scorer in one call (the scorer batches within a call).
    pub questions_per_call: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for McConfig {
    fn default() -> Self {
        Self {
            protocol: Protocol::Harness,
            num_fewshot: 5,
            seed: 42,
            subjects: Vec::new(),
            limit_per_subject: None,
            questions_per_call: 64,
            progress: false,
        }
    }
}

/// Where a subject's worked examples came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FewshotSource {
    /// The first k dev rows in file order (`harness`, and the original evaluate.py).
    DevFirstRows,
    /// Seeded random draws from the val split (`paper`, as lm-evaluation-harness 0.3.0).
    ValSample,
    /// Seeded random draws from dev because the subject has no val split (`paper` fallback).
    DevSampleNoVal,
}

impl FewshotSource {
    /// One line for reports.
    pub fn describe(self) -> &'static str {
        match self {
            FewshotSource::DevFirstRows => "the first dev rows, in file order",
            FewshotSource::ValSample => "seeded random draws from val",
            FewshotSource::DevSampleNoVal => "seeded random draws from dev (no val split)",
        }
    }
}

/// Correct answers over a set of questions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Questions scored.
    pub questions: u64,
    /// Questions whose highest-log-likelihood option is the correct one.
    pub correct: u64,
    /// `correct / questions`.
    pub acc: f64,
    /// Questions whose highest log-likelihood per character is the correct one (`paper` only).
    pub correct_norm: Option<u64>,
    /// `correct_norm / questions` (`paper` only).
    pub acc_norm: Option<f64>,
}

/// Running counts behind an [`Accuracy`].
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    questions: u64,
    correct: u64,
    correct_norm: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.questions += other.questions;
        self.correct += other.correct;
        self.correct_norm += other.correct_norm;
    }

    fn accuracy(self, with_norm: bool) -> Accuracy {
        let fraction = |count: u64| {
            if self.questions == 0 {
                0.0
            } else {
                count as f64 / self.questions as f64
            }
        };
        Accuracy {
            questions: self.questions,
            correct: self.correct,
            acc: fraction(self.correct),
            correct_norm: with_norm.then_some(self.correct_norm),
            acc_norm: with_norm.then(|| fraction(self.correct_norm)),
        }
    }
}

/// Results of one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectResult {
    /// The subject.
    pub subject: String,
    /// Its MMLU category, `None` for a subject outside MMLU's 57.
    pub category: Option<Category>,
    /// Where the worked examples came from.
    pub fewshot_source: FewshotSource,
    /// Accuracy on the subject's scored questions.
    pub accuracy: Accuracy,
    /// Mean number of worked examples in the prompts actually scored.
    pub mean_shots: f64,
    /// Prompts that lost at least one worked example to fit the model's window.
    pub cropped: u64,
    /// Prompts that did not fit even without examples and were cut at the front.
    pub truncated: u64,
    /// Set when the few-shot pool was smaller than the k + 1 draws lm-evaluation-harness 0.3.0
    /// makes (it raises there; mixlab draws the whole pool in seeded order instead).
    pub fewshot_pool_short: bool,
}

/// Results of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryResult {
    /// The category.
    pub category: Category,
    /// Subjects of this category that were evaluated.
    pub subjects: usize,
    /// Accuracy micro-averaged over the category's questions.
    pub accuracy: Accuracy,
}

/// Everything a multiple-choice run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McReport {
    /// The protocol.
    pub protocol: Protocol,
    /// Worked examples asked for per prompt (before cropping).
    pub num_fewshot: usize,
    /// Seed of the example draws (`paper` only).
    pub seed: Option<u64>,
    /// The benchmark directory.
    pub data_dir: PathBuf,
    /// The window in tokens prompts were scored with: the model's context, or for `paper` half
    /// of it (GPT-NeoX's evaluation adapter; see [`Protocol::window`]).
    pub max_input_tokens: usize,
    /// Test questions per subject were limited to this many.
    pub limit_per_subject: Option<usize>,
    /// Accuracy micro-averaged over all scored questions (lm-evaluation-harness's MMLU figure).
    pub overall: Accuracy,
    /// Mean of the per-subject `acc` (the likely form of ODM's Table 1 "average").
    pub subject_mean_acc: f64,
    /// Mean of the per-subject `acc_norm` (`paper` only).
    pub subject_mean_acc_norm: Option<f64>,
    /// Per category, in STEM, humanities, social sciences, other order; categories without
    /// evaluated subjects are left out.
    pub categories: Vec<CategoryResult>,
    /// Per subject, sorted by name.
    pub subjects: Vec<SubjectResult>,
    /// Prompts that lost at least one worked example (never for `paper`).
    pub prompts_cropped: u64,
    /// Worked examples dropped over all prompts.
    pub examples_dropped: u64,
    /// Prompts cut at the front: for `paper` every prompt longer than the window, otherwise
    /// those that did not fit even with zero examples.
    pub prompts_truncated: u64,
    /// Log-likelihood requests scored.
    pub requests: u64,
}

/// A JSON-lines file with the exact prompt, continuations and scores of every question.
///
/// One line per question: `subject`, `doc_index` (0-based row of the test file), `shots`,
/// `context`, `continuations`, `gold`, `log_likelihoods`, `prediction`, `prediction_norm`,
/// `truncated`, so prompts can be diffed against lm-evaluation-harness's logged samples.
pub struct PromptDump {
    path: PathBuf,
    writer: std::io::BufWriter<std::fs::File>,
}

impl std::fmt::Debug for PromptDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptDump")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct DumpLine<'a> {
    subject: &'a str,
    doc_index: usize,
    shots: usize,
    context: &'a str,
    continuations: &'a [String],
    gold: usize,
    log_likelihoods: &'a [f64],
    prediction: usize,
    prediction_norm: Option<usize>,
    truncated: bool,
}

impl PromptDump {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path).map_err(|source| EvalError::io(path, source))?;
        Ok(Self {
            path: path.to_owned(),
            writer: std::io::BufWriter::new(file),
        })
    }

    fn write(&mut self, line: &DumpLine<'_>) -> Result<()> {
        serde_json::to_writer(&mut self.writer, line).map_err(|source| EvalError::Json {
            path: self.path.clone(),
            source,
        })?;
        self.writer
            .write_all(b"\n")
            .map_err(|source| EvalError::io(&self.path, source))
    }

    /// Flushes the file.
    pub fn finish(mut self) -> Result<()> {
        self.writer
            .flush()
            .map_err(|source| EvalError::io(&self.path, source))
    }
}

/// One question about to be scored.
struct Planned {
    doc_index: usize,
    /// Indices into the few-shot pool, in prompt order, before cropping.
    examples: Vec<usize>,
}

/// A question whose prompt has been fixed.
struct Prepared {
    doc_index: usize,
    shots: usize,
    planned_shots: usize,
    truncated: bool,
    context: String,
}

/// Runs the benchmark in `dataset` through `scorer`.
///
/// Per subject: the few-shot pool and the question order follow the protocol (see
/// [`FewshotSource`]), and so does the window ([`Protocol::window`]). Under `harness` and
/// `continuation` each prompt keeps as many worked examples as fit the window, dropping them from
/// the end of the list as the original `evaluate.py` does (`k -= 1` keeps the first k), and a
/// prompt that does not fit even without examples is cut at the front by the scorer. Under
/// `paper` every prompt keeps all its examples and the scorer cuts tokens at the front, as
/// GPT-NeoX's evaluation adapter did for ODM. Accuracy is then micro-averaged per subject, per
/// category and overall.
pub fn evaluate_multiple_choice<S: LogLikelihoodScorer + ?Sized>(
    scorer: &mut S,
    dataset: &McDataset,
    config: &McConfig,
    mut dump: Option<&mut PromptDump>,
) -> Result<McReport> {
    if config.questions_per_call == 0 {
        return Err(EvalError::InvalidConfig {
            field: "questions_per_call",
            reason: "must be at least 1".into(),
        });
    }
    let names = if config.subjects.is_empty() {
        dataset.subjects().to_vec()
    } else {
        dataset.select_subjects(&config.subjects)?
    };
    let subjects = names
        .iter()
        .map(|name| dataset.load_subject(name))
        .collect::<Result<Vec<_>>>()?;
    let total: usize = subjects
        .iter()
        .map(|subject| {
            config
                .limit_per_subject
                .map_or(subject.test.len(), |limit| limit.min(subject.test.len()))
        })
        .sum();
    let progress = if config.progress {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>28} [{bar:30}] {pos}/{len} questions {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let with_norm = config.protocol.scores_option_text();
    let window = config.protocol.window(scorer.max_input_tokens());
    let mut results = Vec::with_capacity(subjects.len());
    let mut requests_scored = 0u64;
    let mut examples_dropped = 0u64;
    for subject in &subjects {
        progress.set_message(subject.name.clone());
        let (result, requests, dropped) = evaluate_subject(
            scorer,
            subject,
            config,
            window,
            dump.as_deref_mut(),
            &progress,
        )?;
        requests_scored += requests;
        examples_dropped += dropped;
        results.push(result);
    }
    progress.finish_and_clear();
    if let Some(dump) = dump {
        dump.writer
            .flush()
            .map_err(|source| EvalError::io(&dump.path, source))?;
    }

    let without_val = results
        .iter()
        .filter(|r| r.fewshot_source == FewshotSource::DevSampleNoVal)
        .count();
    if without_val > 0 {
        tracing::warn!(
            "{without_val} of {} subjects have no val split: the paper protocol drew their worked \
             examples from dev instead",
            results.len()
        );
    }
    let mut overall = Tally::default();
    let mut categories = Vec::new();
    for category in Category::ALL {
        let mut tally = Tally::default();
        let mut count = 0;
        for result in results.iter().filter(|r| r.category == Some(category)) {
            tally.add(tally_of(&result.accuracy));
            count += 1;
        }
        if count > 0 {
            categories.push(CategoryResult {
                category,
                subjects: count,
                accuracy: tally.accuracy(with_norm),
            });
        }
    }
    for result in &results {
        overall.add(tally_of(&result.accuracy));
    }
    let mean = |values: Vec<f64>| {
        if values.is_empty() {
            0.0
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        }
    };
    let scored: Vec<&SubjectResult> = results
        .iter()
        .filter(|r| r.accuracy.questions > 0)
        .collect();
    let subject_mean_acc = mean(scored.iter().map(|r| r.accuracy.acc).collect());
    let subject_mean_acc_norm =
        with_norm.then(|| mean(scored.iter().filter_map(|r| r.accuracy.acc_norm).collect()));
    Ok(McReport {
        protocol: config.protocol,
        num_fewshot: config.num_fewshot,
        seed: (config.protocol == Protocol::Paper).then_some(config.seed),
        data_dir: dataset.root().to_owned(),
        max_input_tokens: window,
        limit_per_subject: config.limit_per_subject,
        overall: overall.accuracy(with_norm),
        subject_mean_acc,
        subject_mean_acc_norm,
        categories,
        prompts_cropped: results.iter().map(|r| r.cropped).sum(),
        examples_dropped,
        prompts_truncated: results.iter().map(|r| r.truncated).sum(),
        subjects: results,
        requests: requests_scored,
    })
}

fn tally_of(accuracy: &Accuracy) -> Tally {
    Tally {
        questions: accuracy.questions,
        correct: accuracy.correct,
        correct_norm: accuracy.correct_norm.unwrap_or(0),
    }
}

/// The few-shot pool, its source, and the planned examples of each scored question, in
/// processing order.
fn plan_subject<'a>(
    subject: &'a SubjectData,
    config: &McConfig,
) -> Result<(&'a [McQuestion], FewshotSource, bool, Vec<Planned>)> {
    let k = config.num_fewshot;
    let limit = config.limit_per_subject.unwrap_or(usize::MAX);
    match config.protocol {
        Protocol::Harness | Protocol::Continuation => {
            if subject.dev.len() < k {
                return Err(EvalError::Subject {
                    subject: subject.name.clone(),
                    reason: format!(
                        "the dev split has {} rows, but {k}-shot prompts take the first {k}",
                        subject.dev.len()
                    ),
                });
            }
            let planned = (0..subject.test.len())
                .take(limit)
                .map(|doc_index| Planned {
                    doc_index,
                    examples: (0..k).collect(),
                })
                .collect();
            Ok((
                subject.dev.as_slice(),
                FewshotSource::DevFirstRows,
                false,
                planned,
            ))
        }
        Protocol::Paper => {
            let (pool, source) = match &subject.val {
                Some(val) if !val.is_empty() => (val.as_slice(), FewshotSource::ValSample),
                _ => (subject.dev.as_slice(), FewshotSource::DevSampleNoVal),
            };
            if pool.is_empty() && k > 0 {
                return Err(EvalError::Subject {
                    subject: subject.name.clone(),
                    reason: "neither val nor dev has rows to draw worked examples from".into(),
                });
            }
            // lm-evaluation-harness 0.3.0, evaluator.evaluate: one Random(42) per task shuffles
            // the test docs, then fewshot_context draws sample(pool, k + 1) per doc from the same
            // generator, drops the doc itself and keeps k.
            let mut rng = PythonRandom::new(config.seed);
            let mut order: Vec<usize> = (0..subject.test.len()).collect();
            rng.shuffle(&mut order);
            let draws = (k + 1).min(pool.len());
            let short = k > 0 && draws < k + 1;
            let planned = order
                .into_iter()
                .take(limit)
                .map(|doc_index| {
                    let examples = if k == 0 {
                        Vec::new()
                    } else {
                        rng.sample_indices(pool.len(), draws)
                            .into_iter()
                            .filter(|&index| pool[index] != subject.test[doc_index])
                            .take(k)
                            .collect()
                    };
                    Planned {
                        doc_index,
                        examples,
                    }
                })
                .collect();
            Ok((pool, source, short, planned))
        }
    }
}

fn requests_for(context: &str, continuations: &[String; NUM_CHOICES]) -> Vec<LogLikelihoodRequest> {
    continuations
        .iter()
        .map(|continuation| LogLikelihoodRequest::new(context, continuation.as_str()))
        .collect()
}

fn fits<S: LogLikelihoodScorer + ?Sized>(
    scorer: &mut S,
    requests: &[LogLikelihoodRequest],
    window: usize,
) -> Result<bool> {
    for request in requests {
        if scorer.input_tokens(request)? > window {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Chooses the number of worked examples for one question: all of them if the prompt fits the
/// window (always, for a protocol that does not drop examples: the scorer cuts its front),
/// otherwise the most that fit (bisection: a prompt only grows with its examples), otherwise none
/// and the prompt is marked as truncated.
fn prepare_question<S: LogLikelihoodScorer + ?Sized>(
    scorer: &mut S,
    config: &McConfig,
    subject: &SubjectData,
    pool: &[McQuestion],
    planned: &Planned,
    window: usize,
) -> Result<Prepared> {
    let question = &subject.test[planned.doc_index];
    let choices = continuations(config.protocol, question);
    let context_with = |shots: usize| {
        let examples: Vec<&McQuestion> = planned.examples[..shots]
            .iter()
            .map(|&i| &pool[i])
            .collect();
        build_context(config.protocol, &subject.name, &examples, question)
    };
    let planned_shots = planned.examples.len();
    let prepared = |shots: usize, truncated: bool, context: String| Prepared {
        doc_index: planned.doc_index,
        shots,
        planned_shots,
        truncated,
        context,
    };
    let full = context_with(planned_shots);
    if !config.protocol.drops_examples() || fits(scorer, &requests_for(&full, &choices), window)? {
        return Ok(prepared(planned_shots, false, full));
    }
    let bare = context_with(0);
    if !fits(scorer, &requests_for(&bare, &choices), window)? {
        return Ok(prepared(0, true, bare));
    }
    // Invariant: `low` examples fit, `high` do not.
    let (mut low, mut high) = (0, planned_shots);
    while high - low > 1 {
        let middle = (low + high) / 2;
        if fits(
            scorer,
            &requests_for(&context_with(middle), &choices),
            window,
        )? {
            low = middle;
        } else {
            high = middle;
        }
    }
    Ok(prepared(low, false, context_with(low)))
}

/// Scores one subject; returns its result, the number of requests and of dropped examples.
fn evaluate_subject<S: LogLikelihoodScorer + ?Sized>(
    scorer: &mut S,
    subject: &SubjectData,
    config: &McConfig,
    window: usize,
    mut dump: Option<&mut PromptDump>,
    progress: &ProgressBar,
) -> Result<(SubjectResult, u64, u64)> {
    let (pool, fewshot_source, pool_short, planned) = plan_subject(subject, config)?;
    let with_norm = config.protocol.scores_option_text();
    let mut tally = Tally::default();
    let (mut shots_total, mut cropped, mut truncated, mut dropped, mut requests_scored) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for chunk in planned.chunks(config.questions_per_call) {
        let prepared = chunk
            .iter()
            .map(|planned| prepare_question(scorer, config, subject, pool, planned, window))
            .collect::<Result<Vec<_>>>()?;
        let question_choices: Vec<[String; NUM_CHOICES]> = prepared
            .iter()
            .map(|p| continuations(config.protocol, &subject.test[p.doc_index]))
            .collect();
        let requests: Vec<LogLikelihoodRequest> = prepared
            .iter()
            .zip(&question_choices)
            .flat_map(|(p, choices)| requests_for(&p.context, choices))
            .collect();
        let scores = scorer.score(&requests, window)?;
        if scores.len() != requests.len() {
            return Err(EvalError::Request {
                index: scores.len().min(requests.len()),
                reason: format!(
                    "the scorer answered {} of {} requests",
                    scores.len(),
                    requests.len()
                ),
            });
        }
        requests_scored += requests.len() as u64;
        for ((p, choices), scores) in prepared
            .iter()
            .zip(&question_choices)
            .zip(scores.chunks(NUM_CHOICES))
        {
            let question = &subject.test[p.doc_index];
            let lls: Vec<f64> = scores.iter().map(|s| s.log_likelihood).collect();
            let prediction = argmax(&lls).unwrap_or(0);
            // lm-evaluation-harness 0.3.0 MultipleChoiceTask, and today's harness for option
            // texts: ll / len(choice), the option text without the leading space, in characters
            // (Python code points).
            let prediction_norm = with_norm.then(|| {
                let per_char: Vec<f64> = lls
                    .iter()
                    .zip(&question.choices)
                    .map(|(ll, choice)| ll / choice.chars().count() as f64)
                    .collect();
                argmax(&per_char).unwrap_or(0)
            });
            tally.questions += 1;
            tally.correct += u64::from(prediction == question.answer);
            tally.correct_norm += u64::from(prediction_norm == Some(question.answer));
            shots_total += p.shots as u64;
            dropped += (p.planned_shots - p.shots) as u64;
            cropped += u64::from(p.shots < p.planned_shots);
            let was_truncated = p.truncated || scores.iter().any(|s| s.truncated);
            truncated += u64::from(was_truncated);
            if let Some(dump) = dump.as_deref_mut() {
                dump.write(&DumpLine {
                    subject: &subject.name,
                    doc_index: p.doc_index,
                    shots: p.shots,
                    context: &p.context,
                    continuations: choices,
                    gold: question.answer,
                    log_likelihoods: &lls,
                    prediction,
                    prediction_norm,
                    truncated: was_truncated,
                })?;
            }
        }
        progress.inc(chunk.len() as u64);
    }
    let questions = tally.questions.max(1) as f64;
    Ok((
        SubjectResult {
            subject: subject.name.clone(),
            category: category_of(&subject.name),
            fewshot_source,
            accuracy: tally.accuracy(with_norm),
            mean_shots: if tally.questions == 0 {
                0.0
            } else {
                shots_total as f64 / questions
            },
            cropped,
            truncated,
            fewshot_pool_short: pool_short,
        },
        requests_scored,
        dropped,
    ))
}
