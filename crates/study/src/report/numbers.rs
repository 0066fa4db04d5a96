//! The runs of a plan turned into every number of the report ([`ReportNumbers`]).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Context, Result, bail};
use mixlab_eval::perplexity::PerplexityReport;
use mixlab_eval::{McReport, Protocol};
use serde::Serialize;

use super::read::{RunData, read_run, run_finished};
use super::stats::{ChanceTest, Stat};
use crate::plan::{Plan, PlanKind};

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
    pub claims: Vec<crate::claims::Claim>,
    /// The same methods in the committed reference of this preset, when one is compared.
    pub reference: Option<crate::reference::ReferenceComparison>,
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

pub(super) fn entropy(p: &[f64]) -> f64 {
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
pub(super) fn first_reach(curve: &[(u64, f64)], target: f64) -> Option<u64> {
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
        numbers.claims = crate::claims::claims(&numbers, plan.preset.steps);
    }
    Ok(numbers)
}

/// Whether the method `id` trains with a mixer whose policy changes during training (ODM, ADO,
/// a method file's learning mixer), not a static table: the report shows its policy over time
/// (Figure 4) and the share it drew rather than a fixed weight.
pub(super) fn is_online(plan: &Plan, id: &str) -> bool {
    plan.method(id).is_some_and(|m| {
        m.mixer_kind()
            .is_some_and(|k| k != <mixlab_mixing::StaticConfig as mixlab_mixing::MixerConfig>::KIND)
    })
}

/// Whether the method `id` trains with ODM (a built-in variant or a method file's): the report
/// shows its exploration and compares it with the other methods' final perplexities.
pub(super) fn is_odm(plan: &Plan, id: &str) -> bool {
    plan.method(id).is_some_and(|m| {
        m.mixer_kind() == Some(<mixlab_mixer_odm::OdmConfig as mixlab_mixing::MixerConfig>::KIND)
    })
}

#[cfg(test)]
impl MethodNumbers {
    /// A method with one value of 1 for its statistics and nothing else, for tests to fill in.
    pub(crate) fn empty(id: &str) -> MethodNumbers {
        MethodNumbers {
            id: id.into(),
            label: id.into(),
            final_val_ppl: Stat::of(vec![1.0]),
            val_curve: Vec::new(),
            test_avg_ppl: None,
            test_domain_ppl: BTreeMap::new(),
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

    fn method(id: &str, test: &[(&str, f64)]) -> MethodNumbers {
        MethodNumbers {
            test_domain_ppl: test.iter().map(|(d, v)| (d.to_string(), *v)).collect(),
            ..MethodNumbers::empty(id)
        }
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
}
