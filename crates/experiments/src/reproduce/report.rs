//! The report of a `reproduce` or `ablate-exploration` results directory, computed from the run
//! files alone: `report.md`, `report.json` (every number in the report) and SVG figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mixlab_eval::perplexity::PerplexityReport;
use mixlab_eval::{McReport, Protocol};
use mixlab_plot::{BarGroup, GroupedBarChart, LineChart, Marker, Series, write_svg};
use mixlab_train::{MetricsLine, SummaryRecord};
use serde::Serialize;

use super::{MethodKind, Plan, PlanKind, RunTiming, write_atomic};

/// One train line of metrics.jsonl, reduced to what the report uses.
#[derive(Debug, Clone)]
struct TrainPoint {
    step: u64,
    step_s: f64,
    mixer_s: f64,
    /// The policy's sampling distribution this step, in dataset domain order.
    weights: Vec<f64>,
    /// Sequences drawn per domain so far, in dataset domain order.
    cumulative: Vec<f64>,
}

/// Everything read from one run directory.
#[derive(Debug, Clone)]
struct RunData {
    /// (step, unweighted mean validation perplexity over domains).
    val: Vec<(u64, f64)>,
    train: Vec<TrainPoint>,
    final_weights: Vec<f64>,
    test: Option<PerplexityReport>,
    mc: BTreeMap<String, McReport>,
    timing: RunTiming,
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

fn read_run(dir: &Path, domains: &[String]) -> Result<RunData> {
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
        let parsed = MetricsLine::parse(line)
            .map_err(|reason| anyhow::anyhow!("{} line {n}: {reason}", metrics.display()))?;
        match parsed {
            MetricsLine::Eval(eval) if eval.split == "val" => {
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
    fn show(&self, decimals: usize) -> String {
        match self.std {
            Some(s) => format!("{:.*} ± {:.*}", decimals, self.mean, decimals, s),
            None => format!("{:.*}", decimals, self.mean),
        }
    }

    /// As a percentage.
    fn show_pct(&self, decimals: usize) -> String {
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
fn t_critical_95(df: usize) -> f64 {
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

/// Multiple-choice numbers of one method and protocol.
#[derive(Debug, Clone, Serialize)]
pub struct McNumbers {
    /// Micro-averaged accuracy over all questions.
    pub acc: Stat,
    /// Length-normalised accuracy (the paper protocol only).
    pub acc_norm: Option<Stat>,
    /// Accuracy per subject (mean over seeds).
    pub subjects: BTreeMap<String, f64>,
    /// Questions scored per seed.
    pub questions: u64,
    /// All questions pooled over seeds: correct answers and questions, and the chance test.
    pub pooled: ChanceTest,
    /// The same per subject.
    pub pooled_subjects: BTreeMap<String, ChanceTest>,
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
    fn of(correct: u64, questions: u64) -> ChanceTest {
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
    fn marker(&self) -> &'static str {
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

/// The numbers of one method.
#[derive(Debug, Clone, Serialize)]
pub struct MethodNumbers {
    /// Method id.
    pub id: String,
    /// Method label.
    pub label: String,
    /// Final unweighted mean validation perplexity.
    pub final_val_ppl: Stat,
    /// Validation curve: (step, mean over seeds).
    pub val_curve: Vec<(u64, f64)>,
    /// Unweighted mean test perplexity over domains.
    pub test_avg_ppl: Option<Stat>,
    /// Test perplexity per domain (mean over seeds).
    pub test_domain_ppl: BTreeMap<String, f64>,
    /// Multiple choice by protocol.
    pub mc: BTreeMap<String, McNumbers>,
    /// Final sampling weights per domain (seed mean).
    pub final_weights: BTreeMap<String, f64>,
    /// Entropy (nats) of each seed's final sampling weights: ln K for uniform, lower the more
    /// the mixture concentrates.
    pub final_entropy: Stat,
    /// Share of sequences drawn per domain over the whole run (seed mean).
    pub cumulative_share: BTreeMap<String, f64>,
    /// Wall-clock seconds by phase (sum over seeds).
    pub seconds: BTreeMap<String, f64>,
    /// Time in the mixer over time in training steps, from the per-step timings.
    pub mixer_overhead: f64,
    /// Test-perplexity ranks among the reported methods: best, middle, worst domain counts.
    pub buckets: Option<[usize; 3]>,
    /// The same among the paper's four methods (when all four ran).
    pub paper_buckets: Option<[usize; 3]>,
    /// Entropy (nats) of the sampling distribution at each logged step (seed 1).
    #[serde(skip)]
    pub entropy: Vec<(u64, f64)>,
    /// Cumulative share per domain over steps (seed 1), for Fig. 4.
    #[serde(skip)]
    pub cumulative_curve: Vec<(u64, Vec<f64>)>,
}

/// "ODM reaches a baseline's final validation perplexity at step s" (Fig. 1's arrows).
#[derive(Debug, Clone, Serialize)]
pub struct FewerIterations {
    /// The ODM method.
    pub odm: String,
    /// The baseline.
    pub baseline: String,
    /// The baseline's final mean validation perplexity (seed mean).
    pub target: f64,
    /// First evaluated step where ODM's seed-mean curve is at or below the target.
    pub step: Option<u64>,
    /// 1 − step / steps: the share of iterations saved.
    pub fewer: Option<f64>,
    /// ODM's final over the baseline's final, minus 1 (negative: ODM lower).
    pub final_gap: f64,
}

/// Every number of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportNumbers {
    /// Per method, in report order.
    pub methods: Vec<MethodNumbers>,
    /// Fig. 1's "fewer iterations", per ODM method and baseline.
    pub fewer_iterations: Vec<FewerIterations>,
    /// Domains, in dataset order.
    pub domains: Vec<String>,
    /// The seeds every reported method has finished (training and evaluations); the report
    /// uses these only, so that methods are compared over the same seeds.
    pub seeds: Vec<u64>,
    /// Runs of the plan that have not finished (`method seed N (progress)`), left out of the
    /// report.
    pub unfinished: Vec<String>,
    /// Reported methods missing from every table because no seed the report uses has them
    /// finished (a plan stopped half-way); empty for a complete plan.
    pub left_out: Vec<String>,
    /// The paper's claims checked against these numbers (a reproduction plan only).
    pub claims: Vec<super::claims::Claim>,
    /// The same methods in the committed reference of this preset, when one is compared.
    pub reference: Option<super::reference::ReferenceComparison>,
}

/// Whether a run has finished training and the evaluations the paper's comparison needs. The
/// `continuation` protocol is not required: results made before it existed still report, with
/// "—" in its columns (a rerun of `reproduce` adds it).
fn run_finished(plan: &Plan, dir: &Path) -> bool {
    let mc_done = plan.mc.is_none()
        || (dir.join("mc-harness.json").is_file() && dir.join("mc-paper.json").is_file());
    dir.join("summary.json").is_file() && dir.join("test-ppl.json").is_file() && mc_done
}

fn named(domains: &[String], values: &[f64]) -> BTreeMap<String, f64> {
    domains
        .iter()
        .cloned()
        .zip(values.iter().copied())
        .collect()
}

fn mean_vec(rows: &[Vec<f64>]) -> Vec<f64> {
    let n = rows.len() as f64;
    let mut out = vec![0.0; rows.first().map_or(0, Vec::len)];
    for r in rows {
        for (o, v) in out.iter_mut().zip(r) {
            *o += v / n;
        }
    }
    out
}

fn share(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| if total > 0.0 { c / total } else { 0.0 })
        .collect()
}

fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&x| x > 0.0)
        .map(|x| x * x.ln())
        .sum::<f64>()
}

/// The seed-mean curve over the steps every seed evaluated.
fn mean_curve(runs: &[RunData]) -> Vec<(u64, f64)> {
    let first = &runs[0].val;
    first
        .iter()
        .filter_map(|&(step, _)| {
            let vals: Option<Vec<f64>> = runs
                .iter()
                .map(|r| r.val.iter().find(|(s, _)| *s == step).map(|(_, v)| *v))
                .collect();
            vals.map(|v| (step, v.iter().sum::<f64>() / v.len() as f64))
        })
        .collect()
}

fn method_numbers(plan: &Plan, id: &str, label: &str, runs: &[RunData]) -> MethodNumbers {
    let domains = &plan.dataset.domains;
    let final_val = Stat::of(
        runs.iter()
            .map(|r| r.val.last().expect("checked").1)
            .collect(),
    );
    let tests: Vec<&PerplexityReport> = runs.iter().filter_map(|r| r.test.as_ref()).collect();
    let (test_avg, test_domain) = if tests.len() == runs.len() {
        let avg = Stat::of(tests.iter().map(|t| t.mean_perplexity).collect());
        let mut per = BTreeMap::new();
        for d in &tests[0].domains {
            let vals: Vec<f64> = tests
                .iter()
                .filter_map(|t| t.domain(&d.domain).map(|x| x.perplexity))
                .collect();
            per.insert(
                d.domain.clone(),
                vals.iter().sum::<f64>() / vals.len() as f64,
            );
        }
        (Some(avg), per)
    } else {
        (None, BTreeMap::new())
    };
    let mut mc = BTreeMap::new();
    for protocol in Protocol::ALL.map(Protocol::as_str) {
        let reports: Vec<&McReport> = runs.iter().filter_map(|r| r.mc.get(protocol)).collect();
        if reports.len() != runs.len() || reports.is_empty() {
            continue;
        }
        let acc = Stat::of(reports.iter().map(|r| r.overall.acc).collect());
        let norms: Option<Vec<f64>> = reports.iter().map(|r| r.overall.acc_norm).collect();
        let mut subjects = BTreeMap::new();
        let mut pooled_subjects = BTreeMap::new();
        for s in &reports[0].subjects {
            let vals: Vec<f64> = reports
                .iter()
                .filter_map(|r| r.subjects.iter().find(|x| x.subject == s.subject))
                .map(|x| x.accuracy.acc)
                .collect();
            subjects.insert(
                s.subject.clone(),
                vals.iter().sum::<f64>() / vals.len() as f64,
            );
            let (correct, questions) = reports
                .iter()
                .filter_map(|r| r.subjects.iter().find(|x| x.subject == s.subject))
                .fold((0, 0), |(c, q), x| {
                    (c + x.accuracy.correct, q + x.accuracy.questions)
                });
            pooled_subjects.insert(s.subject.clone(), ChanceTest::of(correct, questions));
        }
        let pooled = ChanceTest::of(
            reports.iter().map(|r| r.overall.correct).sum(),
            reports.iter().map(|r| r.overall.questions).sum(),
        );
        mc.insert(
            protocol.to_string(),
            McNumbers {
                acc,
                acc_norm: norms.map(Stat::of),
                subjects,
                questions: reports[0].overall.questions,
                pooled,
                pooled_subjects,
            },
        );
    }
    let finals: Vec<Vec<f64>> = runs.iter().map(|r| r.final_weights.clone()).collect();
    let shares: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| {
            share(
                &r.train
                    .last()
                    .map(|t| t.cumulative.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let mut seconds = BTreeMap::new();
    for r in runs {
        for (phase, s) in &r.timing.seconds {
            *seconds.entry(phase.clone()).or_insert(0.0) += s;
        }
    }
    let step_s: f64 = runs.iter().flat_map(|r| &r.train).map(|t| t.step_s).sum();
    let mixer_s: f64 = runs.iter().flat_map(|r| &r.train).map(|t| t.mixer_s).sum();
    let first = &runs[0];
    MethodNumbers {
        id: id.into(),
        label: label.into(),
        final_val_ppl: final_val,
        val_curve: mean_curve(runs),
        test_avg_ppl: test_avg,
        test_domain_ppl: test_domain,
        mc,
        final_entropy: Stat::of(finals.iter().map(|w| entropy(w)).collect()),
        final_weights: named(domains, &mean_vec(&finals)),
        cumulative_share: named(domains, &mean_vec(&shares)),
        seconds,
        mixer_overhead: if step_s > 0.0 { mixer_s / step_s } else { 0.0 },
        buckets: None,
        paper_buckets: None,
        entropy: first
            .train
            .iter()
            .map(|t| (t.step, entropy(&t.weights)))
            .collect(),
        cumulative_curve: first
            .train
            .iter()
            .map(|t| (t.step, share(&t.cumulative)))
            .collect(),
    }
}

/// Best / middle / worst counts of test perplexity per domain among `methods` (indices).
fn buckets(methods: &[&MethodNumbers], domains: &[String]) -> Option<Vec<[usize; 3]>> {
    if methods.len() < 2 || methods.iter().any(|m| m.test_domain_ppl.is_empty()) {
        return None;
    }
    let mut counts = vec![[0usize; 3]; methods.len()];
    for d in domains {
        let vals: Option<Vec<f64>> = methods
            .iter()
            .map(|m| m.test_domain_ppl.get(d).copied())
            .collect();
        let Some(vals) = vals else { continue };
        let best = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let worst = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for (i, v) in vals.iter().enumerate() {
            let bucket = if *v == best {
                0
            } else if *v == worst {
                2
            } else {
                1
            };
            counts[i][bucket] += 1;
        }
    }
    Some(counts)
}

/// The first step where `curve` is at or below `target`.
fn first_reach(curve: &[(u64, f64)], target: f64) -> Option<u64> {
    curve.iter().find(|(_, v)| *v <= target).map(|(s, _)| *s)
}

/// Where an unfinished run stands, for the report's list of what it leaves out.
fn run_progress(plan: &Plan, dir: &Path) -> String {
    if dir.join("summary.json").is_file() {
        return "trained, evaluations missing".into();
    }
    let steps = plan.preset.steps;
    match mixlab_train::checkpoint::list_checkpoints(&dir.join("checkpoints")) {
        Ok(list) => match list.iter().map(|(step, _)| *step).max() {
            Some(step) => format!("checkpoint at step {step} of {steps}"),
            None if dir.exists() => format!("started, no checkpoint yet (of {steps} steps)"),
            None => "not started".into(),
        },
        Err(e) => format!("checkpoints unreadable: {e}"),
    }
}

/// The runs a report covers: the seeds it averages over and the methods it shows.
#[derive(Debug, PartialEq)]
struct Coverage {
    /// Seeds, in plan order.
    seeds: Vec<u64>,
    /// Reported method ids, in plan order.
    methods: Vec<String>,
}

/// Chooses what to report from `finished[s][m]` (seed `s` in plan order, reported method `m`).
///
/// The seeds where every method finished, when there are any, so that every method is compared
/// over the same seeds. Otherwise (a plan stopped half-way) the methods that finished the seed
/// with the most finished methods (the first such seed), over every seed where all of those
/// finished: a partial comparison, still over equal seeds. `None` when nothing has finished.
fn coverage(seeds: &[u64], methods: &[&str], finished: &[Vec<bool>]) -> Option<Coverage> {
    let complete: Vec<u64> = seeds
        .iter()
        .zip(finished)
        .filter(|(_, f)| f.iter().all(|&done| done))
        .map(|(&s, _)| s)
        .collect();
    if !complete.is_empty() {
        return Some(Coverage {
            seeds: complete,
            methods: methods.iter().map(|m| m.to_string()).collect(),
        });
    }
    let count = |f: &Vec<bool>| f.iter().filter(|&&done| done).count();
    let best = finished
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| count(a).cmp(&count(b)).then(j.cmp(i)))?;
    if count(best.1) == 0 {
        return None;
    }
    let chosen: Vec<usize> = (0..methods.len()).filter(|&m| best.1[m]).collect();
    Some(Coverage {
        seeds: seeds
            .iter()
            .zip(finished)
            .filter(|(_, f)| chosen.iter().all(|&m| f[m]))
            .map(|(&s, _)| s)
            .collect(),
        methods: chosen.iter().map(|&m| methods[m].to_string()).collect(),
    })
}

/// Reads every run of the plan and computes the report's numbers.
pub fn compute(out: &Path, plan: &Plan) -> Result<ReportNumbers> {
    let reported = plan.reported();
    let ids: Vec<&str> = reported.iter().map(|m| m.id.as_str()).collect();
    let finished: Vec<Vec<bool>> = plan
        .seeds
        .iter()
        .map(|&seed| {
            reported
                .iter()
                .map(|m| run_finished(plan, &Plan::run_dir(out, &m.id, seed)))
                .collect()
        })
        .collect();
    let mut unfinished = Vec::new();
    for (&seed, done) in plan.seeds.iter().zip(&finished) {
        for (m, _) in reported.iter().zip(done).filter(|(_, d)| !**d) {
            let progress = run_progress(plan, &Plan::run_dir(out, &m.id, seed));
            unfinished.push(format!("{} seed {seed} ({progress})", m.id));
        }
    }
    let Some(cover) = coverage(&plan.seeds, &ids, &finished) else {
        bail!(
            "no run of {} has finished yet (unfinished: {}); run the plan's command again to continue it",
            out.display(),
            unfinished.join(", ")
        );
    };
    let seeds = cover.seeds;
    let left_out: Vec<String> = ids
        .iter()
        .filter(|id| !cover.methods.iter().any(|m| m == *id))
        .map(|id| id.to_string())
        .collect();
    let mut methods = Vec::new();
    for m in reported.iter().filter(|m| cover.methods.contains(&m.id)) {
        let runs: Vec<RunData> = seeds
            .iter()
            .map(|&seed| read_run(&Plan::run_dir(out, &m.id, seed), &plan.dataset.domains))
            .collect::<Result<_>>()
            .with_context(|| format!("reading the runs of {}", m.id))?;
        methods.push(method_numbers(plan, &m.id, &m.label, &runs));
    }
    let refs: Vec<&MethodNumbers> = methods.iter().collect();
    if let Some(counts) = buckets(&refs, &plan.dataset.domains) {
        for (m, c) in methods.iter_mut().zip(counts) {
            m.buckets = Some(c);
        }
    }
    let paper_ids = ["tpw", "doremi-256k", "doremi-50k", "odm-paper"];
    let paper: Vec<&MethodNumbers> = paper_ids
        .iter()
        .filter_map(|id| methods.iter().find(|m| m.id == *id))
        .collect();
    if paper.len() == 4
        && let Some(counts) = buckets(&paper, &plan.dataset.domains)
    {
        let counts: Vec<(String, [usize; 3])> =
            paper.iter().map(|m| m.id.clone()).zip(counts).collect();
        for (id, c) in counts {
            if let Some(m) = methods.iter_mut().find(|m| m.id == id) {
                m.paper_buckets = Some(c);
            }
        }
    }
    let mut fewer = Vec::new();
    if plan.kind == PlanKind::Reproduce {
        for odm in methods.iter().filter(|m| is_odm(plan, &m.id)) {
            for base in methods.iter().filter(|m| !is_odm(plan, &m.id)) {
                let target = base.final_val_ppl.mean;
                let step = first_reach(&odm.val_curve, target);
                fewer.push(FewerIterations {
                    odm: odm.id.clone(),
                    baseline: base.id.clone(),
                    target,
                    step,
                    fewer: step.map(|s| 1.0 - s as f64 / plan.preset.steps as f64),
                    final_gap: odm.final_val_ppl.mean / target - 1.0,
                });
            }
        }
    }
    let mut numbers = ReportNumbers {
        methods,
        fewer_iterations: fewer,
        domains: plan.dataset.domains.clone(),
        seeds,
        unfinished,
        left_out,
        claims: Vec::new(),
        reference: None,
    };
    if plan.kind == PlanKind::Reproduce {
        numbers.claims = super::claims::claims(&numbers, plan.preset.steps);
    }
    Ok(numbers)
}

fn is_odm(plan: &Plan, id: &str) -> bool {
    plan.method(id)
        .is_some_and(|m| matches!(m.kind, MethodKind::Odm { .. }))
}

/// Renders the report of `out` and returns the files written. With a `reference` directory
/// (a committed results directory of the same preset), the report ends with this directory's
/// numbers beside the reference's.
pub fn write_report(out: &Path, reference: Option<&Path>) -> Result<Vec<PathBuf>> {
    let plan = Plan::load(out)?;
    let mut numbers = compute(out, &plan)?;
    if let Some(dir) = reference {
        numbers.reference = Some(
            super::reference::compare(out, &numbers, dir)
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
        md.push_str(&super::reference::markdown(comparison));
    }
    let json = out.join("report.json");
    write_atomic(&json, &serde_json::to_string_pretty(&numbers)?)?;
    written.push(json);
    let path = out.join("report.md");
    write_atomic(&path, &md)?;
    written.push(path);
    Ok(written)
}

fn svg(out: &Path, name: &str, svg: &str, written: &mut Vec<PathBuf>) -> Result<()> {
    let path = out.join(name);
    write_svg(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    Ok(())
}

/// The header every report starts with: what ran, on what, and how to rerun it.
fn header(out: &Path, plan: &Plan, n: &ReportNumbers, title: &str, md: &mut String) {
    let p = &plan.preset;
    let commands = std::fs::read_to_string(out.join("commands.txt")).unwrap_or_default();
    let _ = writeln!(md, "# {title}\n");
    // `--steps` changes a preset's length, not its description.
    let resized = super::preset::preset(&p.name)
        .ok()
        .filter(|named| named.steps != p.steps)
        .map(|named| {
            format!(
                " Here run for {} steps instead of its {} (`--steps`).",
                p.steps, named.steps
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "Preset `{}`: {}.{resized}\n\n- Model `{}`; {} steps of {} sequences ({} micro-batches) x {} tokens; peak learning rate {}, {}% warm-up, cosine to {}x.\n- Data: `{}` ({} domains, {}).\n- Validation every {} steps on at most {} sequences per domain; test perplexity on at most {} sequences per domain.\n- Seeds: {}.\n- Device: {}.\n",
        p.name,
        p.about,
        p.model,
        p.steps,
        p.batch_size,
        p.micro_batches,
        p.seq_len,
        p.peak_lr,
        100.0 * p.warmup_fraction,
        p.min_lr_ratio,
        plan.dataset.path.display(),
        plan.dataset.domains.len(),
        plan.dataset.kind,
        p.eval_interval,
        p.eval_max_sequences,
        p.test_max_sequences,
        n.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        p.device,
    );
    let _ = writeln!(md, "{}\n", plan.dataset.note);
    if !n.unfinished.is_empty() {
        let seeds = n
            .seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let methods = if n.left_out.is_empty() {
            String::new()
        } else {
            format!(
                " Methods in no table, as none of them has finished on these seeds: {}.",
                n.left_out.join(", ")
            )
        };
        let _ = writeln!(
            md,
            "**Partial results.** The plan has {} seed(s) and {} reported method(s); this report uses seed(s) {seeds} and the {} method(s) finished on them.{methods} Not finished, and left out: {}. Running the plan's command again continues them.\n",
            plan.seeds.len(),
            plan.reported().len(),
            n.methods.len(),
            n.unfinished.join(", ")
        );
    }
    if !commands.is_empty() {
        let _ = writeln!(
            md,
            "Produced by (each invocation; a later one resumes the plan in `plan.json`):\n\n```sh\n{}```\n\nEvery run's exact config is `runs/<method>/seed-<seed>/config.toml`; `experiments report {}` re-renders this file from the run files.\n",
            commands,
            out.display()
        );
    }
}

/// A Markdown table header: a left-aligned first column, then right-aligned number columns.
fn table_header<S: AsRef<str>>(md: &mut String, first: &str, columns: &[S]) {
    let _ = write!(md, "| {first} |");
    for c in columns {
        let _ = write!(md, " {} |", c.as_ref());
    }
    let _ = write!(md, "\n|---|");
    for _ in columns {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md);
}

fn reproduce_report(
    out: &Path,
    plan: &Plan,
    n: &ReportNumbers,
    md: &mut String,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    header(
        out,
        plan,
        n,
        "Reproduction: ODM vs DoReMi vs The Pile weights vs uniform",
        md,
    );
    let _ = writeln!(md, "## Methods\n\n| method | what |\n|---|---|");
    for m in plan.reported() {
        let _ = writeln!(md, "| {} | {} |", m.label, m.about);
    }
    let _ = writeln!(md);

    // The mixtures themselves: static weights, and ODM's average policy.
    let _ = writeln!(
        md,
        "## The mixtures\n\nSampling weights per domain: the fixed weights of the static methods (DoReMi (mixlab): the proxy's averaged weights) and, for ODM, the share of sequences it drew over the whole run (its mean policy).\n"
    );
    let labels: Vec<&str> = n.methods.iter().map(|m| m.label.as_str()).collect();
    table_header(md, "domain", &labels);
    for d in &n.domains {
        let _ = write!(md, "| {d} |");
        for m in &n.methods {
            let w = if is_odm(plan, &m.id) {
                m.cumulative_share.get(d)
            } else {
                m.final_weights.get(d)
            };
            let _ = write!(md, " {:.4} |", w.copied().unwrap_or(f64::NAN));
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md);

    // Figure 1 and the fewer-iterations numbers.
    let mut fig1 = LineChart::new(
        "Average validation perplexity (unweighted over domains)",
        "step",
        "perplexity",
    );
    fig1.log_y = true;
    for m in &n.methods {
        fig1.series.push(Series {
            label: m.label.clone(),
            points: m.val_curve.iter().map(|&(s, v)| (s as f64, v)).collect(),
            dashed: !is_odm(plan, &m.id),
        });
    }
    for f in n
        .fewer_iterations
        .iter()
        .filter(|f| f.odm == "odm-paper" && f.baseline == "tpw")
    {
        if let Some(step) = f.step {
            fig1.markers.push(Marker {
                x: step as f64,
                label: "ODM reaches TPW's final".into(),
            });
        }
    }
    svg(out, "fig1-val-perplexity.svg", &fig1.to_svg(), written)?;
    let _ = writeln!(
        md,
        "## Figure 1: validation perplexity\n\n![Figure 1](fig1-val-perplexity.svg)\n"
    );
    let _ = writeln!(md, "| method | final validation perplexity |\n|---|---:|");
    for m in &n.methods {
        let _ = writeln!(md, "| {} | {} |", m.label, m.final_val_ppl.show(3));
    }
    let _ = writeln!(
        md,
        "\nFewer iterations (odm-facts.md §3.1): the first evaluated step where the ODM curve reaches a baseline's final value, as 1 − step/{} (evaluations every {} steps bound the resolution).\n",
        plan.preset.steps, plan.preset.eval_interval
    );
    let _ = writeln!(
        md,
        "| ODM | baseline | baseline final | ODM reaches it at | fewer iterations | final gap |\n|---|---|---:|---:|---:|---:|"
    );
    let label = |id: &str| {
        n.methods
            .iter()
            .find(|m| m.id == id)
            .map_or(id.to_string(), |m| m.label.clone())
    };
    for f in &n.fewer_iterations {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {} | {} | {:+.1}% |",
            label(&f.odm),
            label(&f.baseline),
            f.target,
            f.step.map_or("not reached".into(), |s| format!("step {s}")),
            f.fewer.map_or("—".into(), |x| format!("{:.1}%", 100.0 * x)),
            100.0 * f.final_gap
        );
    }
    let _ = writeln!(md);

    // Figure 3.
    let have_test = n.methods.iter().all(|m| m.test_avg_ppl.is_some());
    if have_test {
        let mut fig3 = GroupedBarChart::new(
            "Test perplexity per domain",
            "perplexity",
            labels.iter().copied(),
        );
        fig3.log_y = true;
        let mut groups = vec![BarGroup {
            label: "Average".into(),
            values: n
                .methods
                .iter()
                .map(|m| m.test_avg_ppl.as_ref().map(|s| s.mean))
                .collect(),
            errors: n
                .methods
                .iter()
                .map(|m| m.test_avg_ppl.as_ref().and_then(|s| s.std))
                .collect(),
        }];
        for d in &n.domains {
            groups.push(BarGroup {
                label: d.clone(),
                values: n
                    .methods
                    .iter()
                    .map(|m| m.test_domain_ppl.get(d).copied())
                    .collect(),
                errors: Vec::new(),
            });
        }
        fig3.groups = groups;
        svg(out, "fig3-test-perplexity.svg", &fig3.to_svg(), written)?;
        let _ = writeln!(
            md,
            "## Figure 3: test perplexity per domain\n\n![Figure 3](fig3-test-perplexity.svg)\n"
        );
        table_header(md, "domain", &labels);
        let _ = write!(md, "| **Average** |");
        for m in &n.methods {
            let _ = write!(
                md,
                " **{}** |",
                m.test_avg_ppl.as_ref().map_or("—".into(), |s| s.show(3))
            );
        }
        let _ = writeln!(md);
        for d in &n.domains {
            let _ = write!(md, "| {d} |");
            for m in &n.methods {
                let _ = write!(
                    md,
                    " {} |",
                    m.test_domain_ppl
                        .get(d)
                        .map_or("—".into(), |v| format!("{v:.3}"))
                );
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(
            md,
            "\nBest / middle / worst test perplexity, counted over domains (ties share the rank):\n\n| method | best | middle | worst | among the paper's four (TPW, DoReMi-256k, DoReMi-50k, ODM) |\n|---|---:|---:|---:|---|"
        );
        for m in &n.methods {
            if let Some([b, mid, w]) = m.buckets {
                let paper = m
                    .paper_buckets
                    .map_or("—".into(), |[b, m, w]| format!("{b} / {m} / {w}"));
                let _ = writeln!(md, "| {} | {b} | {mid} | {w} | {paper} |", m.label);
            }
        }
        let _ = writeln!(
            md,
            "\nThe paper (Fig. 3, 22 domains, four methods): TPW 7/8/7, DoReMi-50k 3/17/2, ODM 9/9/4.\n"
        );
    }

    // Figure 4, for each ODM method.
    let k = n.domains.len();
    if k > 1 && n.methods.iter().any(|m| is_odm(plan, &m.id)) {
        // ε_t = min(1/K, sqrt(ln K / (K t))) stays at 1/K (a uniform policy) while t ≤ K ln K.
        let uniform_until = (k as f64 * (k as f64).ln()).floor() as u64;
        let last = mixlab_mixer_odm::exploration_rate(k, plan.preset.steps);
        let _ = writeln!(
            md,
            "ODM's exploration with K = {k} domains: ε_t = 1/K, which makes the policy exactly uniform, until step {uniform_until} (K ln K); at the last step, {} of the probability mass is still uniform exploration (K·ε_t = {:.3}; the paper, K = 22 at step 100,000: 0.026). Short runs therefore keep ODM close to uniform by construction.\n",
            format_args!("{:.1}%", 100.0 * k as f64 * last),
            k as f64 * last
        );
    }
    let tpw = n.methods.iter().find(|m| m.id == "tpw");
    for m in n.methods.iter().filter(|m| is_odm(plan, &m.id)) {
        let mut fig4 = LineChart::new(
            format!("{}: cumulative sampling distribution", m.label),
            "step",
            "share of sequences drawn so far",
        );
        for (i, d) in n.domains.iter().enumerate() {
            fig4.series.push(Series {
                label: d.clone(),
                points: m
                    .cumulative_curve
                    .iter()
                    .map(|(s, v)| (*s as f64, v[i]))
                    .collect(),
                dashed: false,
            });
        }
        let name = format!("fig4-{}-cumulative.svg", m.id);
        svg(out, &name, &fig4.to_svg(), written)?;
        let mut series = Vec::new();
        let mut cols: Vec<&BTreeMap<String, f64>> = Vec::new();
        if let Some(t) = tpw {
            series.push("TPW (initial policy)".to_string());
            cols.push(&t.final_weights);
        }
        series.push(format!("{} final π", m.label));
        cols.push(&m.final_weights);
        series.push(format!("{} mean π (cumulative share)", m.label));
        cols.push(&m.cumulative_share);
        let mut bars = GroupedBarChart::new(
            format!("{}: final weights vs TPW", m.label),
            "weight",
            series.clone(),
        );
        bars.groups = n
            .domains
            .iter()
            .map(|d| BarGroup {
                label: d.clone(),
                values: cols.iter().map(|c| c.get(d).copied()).collect(),
                errors: Vec::new(),
            })
            .collect();
        let bars_name = format!("fig4-{}-weights.svg", m.id);
        svg(out, &bars_name, &bars.to_svg(), written)?;
        let _ = writeln!(
            md,
            "## Figure 4: {} sampling distribution\n\n![Figure 4: cumulative distribution]({name})\n\n![Figure 4: final weights]({bars_name})\n",
            m.label
        );
        let mut columns = series.clone();
        columns.push("change vs TPW".into());
        table_header(md, "domain", &columns);
        for d in &n.domains {
            let _ = write!(md, "| {d} |");
            for c in &cols {
                let _ = write!(md, " {:.4} |", c.get(d).copied().unwrap_or(f64::NAN));
            }
            let change = tpw
                .and_then(|t| Some(m.cumulative_share.get(d)? - t.final_weights.get(d)?))
                .map_or("—".into(), |x| format!("{x:+.4}"));
            let _ = writeln!(md, " {change} |");
        }
        let _ = writeln!(md);
    }

    // Table 1.
    if let Some(mc) = &plan.mc {
        let source = if mc.source == "mmlu" {
            format!("MMLU from `{}`", mc.data.display())
        } else {
            format!(
                "the synthetic corpus's own multiple-choice set (`{}`; its subjects are learnable only from specific domains, docs/default-corpus.md)",
                mc.data.display()
            )
        };
        let limit = mc
            .limit_per_subject
            .map_or("all test questions".into(), |l| {
                format!("at most {l} test questions per subject")
            });
        let _ = writeln!(
            md,
            "## Table 1: 5-shot multiple choice\n\nOn {source}, {limit}. `harness`: today's lm-evaluation-harness prompt, letters scored; `paper`: lm-evaluation-harness 0.3.0 as the paper ran it, answer texts scored (acc and length-normalised acc_norm); `continuation`: today's harness `mmlu_continuation`, the question without its options and answer texts scored (the cloze form small models are measured with). Chance is 25%.\n"
        );
        let subjects: Vec<String> = n
            .methods
            .iter()
            .find_map(|m| {
                m.mc.get("harness")
                    .map(|x| x.subjects.keys().cloned().collect())
            })
            .unwrap_or_default();
        let per_subject = subjects.len() <= 8;
        // A cell's accuracy with the above-chance marker of its pooled counts.
        let cell = |x: Option<&McNumbers>| {
            x.map_or("—".into(), |x| {
                format!("{}{}", x.acc.show_pct(2), x.pooled.marker())
            })
        };
        let _ = writeln!(
            md,
            "| method | harness acc | paper acc | paper acc_norm | continuation acc | continuation acc_norm |\n|---|---:|---:|---:|---:|---:|"
        );
        let norm = |x: Option<&McNumbers>| {
            x.and_then(|x| x.acc_norm.as_ref())
                .map_or("—".into(), |x| x.show_pct(2))
        };
        for m in &n.methods {
            let (p, c) = (m.mc.get("paper"), m.mc.get("continuation"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                m.label,
                cell(m.mc.get("harness")),
                cell(p),
                norm(p),
                cell(c),
                norm(c),
            );
        }
        if per_subject {
            let _ = write!(md, "\nPer subject (acc):\n\n| method |");
            for s in &subjects {
                for protocol in Protocol::ALL {
                    let _ = write!(md, " {s} ({protocol}) |");
                }
            }
            let _ = write!(md, "\n|---|");
            for _ in &subjects {
                let _ = write!(md, "---:|---:|---:|");
            }
            let _ = writeln!(md);
            for m in &n.methods {
                let _ = write!(md, "| {} |", m.label);
                for s in &subjects {
                    for protocol in Protocol::ALL.map(Protocol::as_str) {
                        let x = m.mc.get(protocol);
                        let v = x.and_then(|x| x.subjects.get(s));
                        let mark = x
                            .and_then(|x| x.pooled_subjects.get(s))
                            .map_or("", |t| t.marker());
                        let _ = write!(
                            md,
                            " {} |",
                            v.map_or("—".into(), |v| format!("{:.2}%{mark}", 100.0 * v))
                        );
                    }
                }
                let _ = writeln!(md);
            }
        }
        let _ = writeln!(
            md,
            "\n`*`: above chance (25%) at p < {CHANCE_ALPHA}, by an exact one-sided binomial test on the correct answers pooled over the seeds; a cell without it cannot be told from guessing."
        );
        if let Some(q) = n
            .methods
            .first()
            .and_then(|m| m.mc.get("harness"))
            .map(|x| x.questions)
        {
            let se = (0.25f64 * 0.75 / q as f64).sqrt();
            let _ = writeln!(
                md,
                "\n{q} questions per method and seed: one standard error of an accuracy near chance is {:.1} points.\n",
                100.0 * se
            );
        }
    } else {
        let _ = writeln!(
            md,
            "## Table 1: 5-shot multiple choice\n\nNot run: no multiple-choice set for this dataset (pass `--mmlu DIR`).\n"
        );
    }

    paper_comparison(plan, n, md);
    super::claims::markdown(n, md);
    timing_table(n, md);
    seed_spread(n, md);
    Ok(())
}

/// The paper's numbers (odm-facts.md §3) beside this run's.
fn paper_comparison(plan: &Plan, n: &ReportNumbers, md: &mut String) {
    // (row, Table 1 MMLU, Fig. 1 final validation perplexity [fig-decoded], Fig. 3 average test
    // perplexity [fig-decoded]).
    const PAPER: [(&str, &str, f64, f64, f64); 4] = [
        ("The Pile Weights", "tpw", 0.27469, 13.35, 13.77),
        ("DoReMi-256k", "doremi-256k", 0.27596, 13.48, 13.88),
        ("DoReMi-50k", "doremi-50k", 0.27887, 12.99, 13.41),
        ("ODM", "odm-paper", 0.28416, 12.68, 13.17),
    ];
    let p = &plan.preset;
    let tokens = p.steps * (p.batch_size * p.seq_len) as u64;
    let _ = writeln!(
        md,
        "## The paper's numbers beside this run's\n\nThe paper trains a 1B-parameter model for 100,000 steps of 480 x 1024 tokens (49.2B tokens) on all 22 Pile domains and scores MMLU. This run: model `{}`, {} steps, {} tokens per run, {} domains of `{}`. Perplexities of different tokenizers, data and scales are not comparable in value; compare the orderings and the relative gaps.\n",
        p.model,
        p.steps,
        tokens,
        plan.dataset.domains.len(),
        plan.dataset.kind
    );
    let _ = writeln!(
        md,
        "| method | paper: MMLU (lm-eval 0.3.0) | this run: MC, paper protocol | this run: MC, harness | paper: final val ppl | this run | paper: test ppl | this run |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (row, id, mmlu, val, test) in PAPER {
        let m = n.methods.iter().find(|m| m.id == id);
        let _ = writeln!(
            md,
            "| {row} | {:.2}% | {} | {} | {val:.2} | {} | {test:.2} | {} |",
            100.0 * mmlu,
            m.and_then(|m| m.mc.get("paper"))
                .map_or("—".into(), |x| x.acc.show_pct(2)),
            m.and_then(|m| m.mc.get("harness"))
                .map_or("—".into(), |x| x.acc.show_pct(2)),
            m.map_or("—".into(), |m| m.final_val_ppl.show(3)),
            m.and_then(|m| m.test_avg_ppl.as_ref())
                .map_or("—".into(), |s| s.show(3)),
        );
    }
    let find = |base: &str| {
        n.fewer_iterations
            .iter()
            .find(|f| f.odm == "odm-paper" && f.baseline == base)
    };
    let show = |f: Option<&FewerIterations>| {
        f.map_or("—".into(), |f| {
            let fewer = f.fewer.map_or("baseline's final not reached".into(), |x| {
                format!("{:.1}% fewer iterations", 100.0 * x)
            });
            format!("{fewer}, final {:+.1}%", 100.0 * f.final_gap)
        })
    };
    let _ = writeln!(
        md,
        "\n| ODM vs | paper | this run |\n|---|---|---|\n| TPW | 30% fewer iterations, final val −4.8% | {} |\n| DoReMi-50k | 19% fewer iterations, final val −2.4% | {} |\n| DoReMi-256k | (≈30% decoded), final val −4.9% (decoded −5.9%) | {} |\n",
        show(find("tpw")),
        show(find("doremi-50k")),
        show(find("doremi-256k")),
    );
}

fn timing_table(n: &ReportNumbers, md: &mut String) {
    let _ = writeln!(
        md,
        "## Wall time and mixer overhead\n\nSeconds summed over {} seed(s). `train` includes the periodic validation; the overhead is the time in the mixer (`observe` and the policy) over the time of the training steps, from each step's timing in metrics.jsonl (the paper: 0.000007%).\n\n| method | train s | test ppl s | MC s | total s | mixer overhead |\n|---|---:|---:|---:|---:|---:|",
        n.seeds.len()
    );
    let mut total = 0.0;
    for m in &n.methods {
        let get = |k: &str| m.seconds.get(k).copied().unwrap_or(0.0);
        let mc: f64 = Protocol::ALL.iter().map(|p| get(&format!("mc-{p}"))).sum();
        let sum = get("train") + get("test") + mc;
        total += sum;
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.5}% |",
            m.label,
            get("train"),
            get("test"),
            mc,
            sum,
            100.0 * m.mixer_overhead
        );
    }
    let _ = writeln!(
        md,
        "\nAll reported methods together: {:.1} minutes of run time, summed over runs (plus any unreported runs, such as the DoReMi proxy); runs that went in parallel (`--jobs`) overlap, so the wall time of such a plan is shorter.\n",
        total / 60.0
    );
}

fn seed_spread(n: &ReportNumbers, md: &mut String) {
    if n.seeds.len() < 2 {
        let _ = writeln!(
            md,
            "## Seeds\n\nOne seed: no estimate of the seed-to-seed spread, so no difference above can be called significant. Rerun with `--seeds 3` (or more) for mean ± std.\n"
        );
        return;
    }
    let _ = writeln!(
        md,
        "## Seeds\n\nMean ± sample std over {} seeds. A difference \"exceeds the spread\" when a two-sided two-sample t-test (pooled variance) rejects equal means at the 5% level; with two seeds per method that needs a gap of 4.3 standard errors of the difference.\n",
        n.seeds.len()
    );
    let yes = |x: Option<bool>| match x {
        Some(true) => "yes",
        Some(false) => "no",
        None => "—",
    };
    // Every method against TPW (the paper's reference point), then ODM against the others.
    for base_id in ["tpw", "odm-paper"] {
        let Some(base) = n.methods.iter().find(|m| m.id == base_id) else {
            continue;
        };
        let _ = writeln!(
            md,
            "| method − {} | final val ppl | exceeds the spread | test ppl | exceeds the spread |\n|---|---:|---|---:|---|",
            base.label
        );
        for m in n
            .methods
            .iter()
            .filter(|m| m.id != base_id && !(base_id == "odm-paper" && m.id == "tpw"))
        {
            let test = match (&m.test_avg_ppl, &base.test_avg_ppl) {
                (Some(a), Some(b)) => (format!("{:+.3}", a.mean - b.mean), a.differs_from(b)),
                _ => ("—".into(), None),
            };
            let _ = writeln!(
                md,
                "| {} | {:+.3} | {} | {} | {} |",
                m.label,
                m.final_val_ppl.mean - base.final_val_ppl.mean,
                yes(m.final_val_ppl.differs_from(&base.final_val_ppl)),
                test.0,
                yes(test.1)
            );
        }
        let _ = writeln!(md);
    }
}

fn ablation_report(
    out: &Path,
    plan: &Plan,
    n: &ReportNumbers,
    md: &mut String,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    header(
        out,
        plan,
        n,
        "Ablation: ODM's exploration, smoothing and sampling granularity",
        md,
    );
    let k = plan.dataset.domains.len();
    let target = n
        .methods
        .iter()
        .find(|m| m.id == "default")
        .map(|m| m.final_val_ppl.mean);
    let _ = writeln!(
        md,
        "All variants use the paper's rule (Algorithm 1) with a {}-step TPW warm-up; each changes one thing. A fixed ε replaces only the uniform share K·ε; the softmax temperature keeps the decaying ε_(t−1), so ε = 0 still learns and ε = 1/K is exactly uniform.\n",
        plan.preset.odm_paper_warmup
    );
    let _ = writeln!(
        md,
        "| variant | what | final val ppl | steps to the default's final | final weight entropy (max ln K = {:.3}) |\n|---|---|---:|---:|---:|",
        (k as f64).ln()
    );
    for m in &n.methods {
        let about = plan.method(&m.id).map_or("", |x| x.about.as_str());
        let reach = target
            .and_then(|t| first_reach(&m.val_curve, t))
            .map_or("not reached".into(), |s| format!("{s}"));
        let h = m.entropy.last().map_or(f64::NAN, |x| x.1);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.3} |",
            m.label,
            about,
            m.final_val_ppl.show(3),
            reach,
            h
        );
    }
    let _ = writeln!(
        md,
        "\nSteps to target: the first evaluated step (every {} steps) where the variant's average validation perplexity is at or below the default variant's final value.\n",
        plan.preset.eval_interval
    );
    let mut fig = LineChart::new("Average validation perplexity", "step", "perplexity");
    fig.log_y = true;
    let mut ent = LineChart::new(
        "Entropy of the sampling distribution",
        "step",
        "entropy (nats)",
    );
    for m in &n.methods {
        fig.series.push(Series {
            label: m.label.clone(),
            points: m.val_curve.iter().map(|&(s, v)| (s as f64, v)).collect(),
            dashed: false,
        });
        ent.series.push(Series {
            label: m.label.clone(),
            points: m.entropy.iter().map(|&(s, v)| (s as f64, v)).collect(),
            dashed: false,
        });
    }
    svg(out, "ablation-val-perplexity.svg", &fig.to_svg(), written)?;
    svg(out, "ablation-weight-entropy.svg", &ent.to_svg(), written)?;
    let _ = writeln!(
        md,
        "![validation perplexity](ablation-val-perplexity.svg)\n\n![weight entropy](ablation-weight-entropy.svg)\n"
    );
    timing_table(n, md);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_prefers_complete_seeds_then_the_most_finished_methods() {
        let methods = ["a", "b", "c"];
        let cover = |seeds: &[u64], finished: &[Vec<bool>]| coverage(seeds, &methods, finished);
        let all = |seeds: &[u64]| Coverage {
            seeds: seeds.to_vec(),
            methods: vec!["a".into(), "b".into(), "c".into()],
        };
        // Complete seeds win: seed 2 is left out, every method shown.
        assert_eq!(
            cover(
                &[1, 2, 3],
                &[vec![true; 3], vec![true, false, true], vec![true; 3]]
            ),
            Some(all(&[1, 3]))
        );
        // Stopped half-way with one seed: the finished methods only.
        assert_eq!(
            cover(&[42], &[vec![true, false, true]]),
            Some(Coverage {
                seeds: vec![42],
                methods: vec!["a".into(), "c".into()],
            })
        );
        // No complete seed: seed 2 has the most finished (a, b); seed 3 has both too and is
        // kept, seed 1 (only a) is not.
        assert_eq!(
            cover(
                &[1, 2, 3],
                &[
                    vec![true, false, false],
                    vec![true, true, false],
                    vec![true, true, false]
                ]
            ),
            Some(Coverage {
                seeds: vec![2, 3],
                methods: vec!["a".into(), "b".into()],
            })
        );
        // Nothing finished: nothing to report.
        assert_eq!(cover(&[1], &[vec![false; 3]]), None);
    }

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

    fn method(id: &str, test: &[(&str, f64)]) -> MethodNumbers {
        MethodNumbers {
            id: id.into(),
            label: id.into(),
            final_val_ppl: Stat::of(vec![1.0]),
            val_curve: Vec::new(),
            test_avg_ppl: None,
            test_domain_ppl: test.iter().map(|(d, v)| (d.to_string(), *v)).collect(),
            mc: BTreeMap::new(),
            final_weights: BTreeMap::new(),
            final_entropy: Stat::of(vec![1.0]),
            cumulative_share: BTreeMap::new(),
            seconds: BTreeMap::new(),
            mixer_overhead: 0.0,
            buckets: None,
            paper_buckets: None,
            entropy: Vec::new(),
            cumulative_curve: Vec::new(),
        }
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

    #[test]
    fn buckets_count_best_middle_and_worst_per_domain() {
        let domains: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let x = method("x", &[("a", 1.0), ("b", 5.0), ("c", 2.0)]);
        let y = method("y", &[("a", 2.0), ("b", 4.0), ("c", 2.0)]);
        let z = method("z", &[("a", 3.0), ("b", 3.0), ("c", 9.0)]);
        let counts = buckets(&[&x, &y, &z], &domains).expect("all have test numbers");
        // a: x best, y middle, z worst. b: z best, y middle, x worst. c: x and y tie for best.
        assert_eq!(counts, vec![[2, 0, 1], [1, 2, 0], [1, 0, 2]]);
        let no_test = method("w", &[]);
        assert!(buckets(&[&x, &no_test], &domains).is_none());
    }

    #[test]
    fn fewer_iterations_uses_the_first_step_at_or_below_the_target() {
        let curve = [(10, 9.0), (20, 7.0), (30, 5.0), (40, 4.0)];
        assert_eq!(first_reach(&curve, 7.0), Some(20));
        assert_eq!(first_reach(&curve, 6.0), Some(30));
        assert_eq!(first_reach(&curve, 3.0), None);
    }

    #[test]
    fn shares_and_entropy() {
        assert_eq!(share(&[1.0, 3.0]), vec![0.25, 0.75]);
        assert_eq!(share(&[0.0, 0.0]), vec![0.0, 0.0]);
        assert!((entropy(&[0.25; 4]) - 4f64.ln()).abs() < 1e-15);
        assert_eq!(entropy(&[1.0, 0.0]), 0.0);
        assert_eq!(mean_vec(&[vec![1.0, 2.0], vec![3.0, 6.0]]), vec![2.0, 4.0]);
    }

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
