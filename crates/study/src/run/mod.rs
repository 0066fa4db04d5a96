//! Running a plan: every run of it, `jobs` at a time, each after the runs it depends on, then its
//! missing evaluations (test perplexity, multiple choice). A finished run is skipped, an
//! interrupted one continues from its newest checkpoint, a missing evaluation is computed, so
//! running the same plan again resumes it. A stop (the settings' flag, set by a signal) makes
//! every run under way checkpoint and the plan end with [`Stopped`].

pub mod child;
mod cost;
pub mod progress;
mod schedule;
mod train;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mixlab_data::{DomainStore, OpenOptions, Split};
use mixlab_eval::perplexity::{PerplexityConfig, evaluate_perplexity};
use mixlab_eval::{
    McConfig, McDataset, ModelScorer, Protocol, evaluate_multiple_choice, load_tokenizer,
};
use mixlab_mixing::MixerRegistry;
use mixlab_model::{
    CpuBackend, CudaBackend, DeviceSpec, GptNeoX, ModelBackend, Precision, cpu_device, cuda_device,
};
use mixlab_train::{RunOptions, ThreadBudget};

use crate::error::{Context, Result, bail};
use crate::method::Method;
use crate::plan::Plan;
use crate::stop::{Stopped, StoppedRun};
use crate::timing::{MIXER_VALIDATION, RunTiming, write_atomic};
use child::JobOutput;
use schedule::run_in_parallel;
pub use train::{PerplexityValidation, train_run};

/// How a plan's runs are run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Runs at a time: with one they go in plan order in this process; with more, each is a
    /// child process ([`ChildCommand`]) with its share of the cores.
    pub jobs: usize,
    /// Set by a signal: every run under way checkpoints and stops.
    pub stop: Arc<AtomicBool>,
    /// The mixers the runs' `[mixer]` tables may name.
    pub mixers: MixerRegistry,
    /// How to start one run as a child process.
    pub child: ChildCommand,
}

/// The command that runs one job of a plan as a child process: `program`, then `args`, then
/// `--out DIR --method ID --seed S`, with the plan as TOML on its stdin. It must call
/// [`child::run_child`] (the command line's hidden `reproduce-run` does), whose mixers must
/// include the plan's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the job's own.
    pub args: Vec<String>,
}

impl ChildCommand {
    /// This executable with the subcommand `subcommand`.
    pub fn this_executable(subcommand: &str) -> Result<Self> {
        Ok(ChildCommand {
            program: std::env::current_exe().context("locating this executable")?,
            args: vec![subcommand.to_string()],
        })
    }
}

/// Runs at a time when `--jobs` is not given: every core on a CPU, one run on a GPU.
pub fn default_jobs(device: DeviceSpec) -> usize {
    match device {
        DeviceSpec::Cpu | DeviceSpec::TchCpu => {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
        DeviceSpec::Cuda(_) => 1,
    }
}

/// Every run of the plan, `jobs` at a time, each after the run it depends on. With one job the
/// runs go in plan order in this process with their own progress bars; with more, each run is a
/// child process ([`child`]) whose progress is a line of its own here. After a failure no new run
/// starts; the ones under way finish (or checkpoint), and the first error is returned.
pub fn run_plan(plan: &Plan, out: &Path, settings: &RunSettings) -> Result<()> {
    let runs: Vec<(u64, &Method)> = plan
        .seeds
        .iter()
        .flat_map(|&seed| plan.methods.iter().map(move |m| (seed, m)))
        .collect();
    let total = runs.len();
    let finished: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, (seed, m))| trained(out, m, *seed))
        .map(|(i, _)| i)
        .collect();
    let progress = Arc::new(progress::PlanProgress::new(
        total,
        &finished,
        plan.preset.steps,
        (plan.preset.batch_size * plan.preset.seq_len) as u64,
    ));
    let result = if settings.jobs <= 1 {
        run_in_order(plan, out, settings, &runs, &progress)
    } else {
        run_jobs(plan, out, settings, &runs, &progress)
    };
    progress.finish();
    result
}

/// Whether the run of `method` with `seed` has finished training (its `summary.json` exists);
/// its missing evaluations may still be due.
fn trained(out: &Path, method: &Method, seed: u64) -> bool {
    Plan::run_dir(out, &method.id, seed)
        .join("summary.json")
        .is_file()
}

/// The runs one after another in this process (`--jobs 1`).
fn run_in_order(
    plan: &Plan,
    out: &Path,
    settings: &RunSettings,
    runs: &[(u64, &Method)],
    progress: &Arc<progress::PlanProgress>,
) -> Result<()> {
    let stop = &settings.stop;
    for (i, &(seed, method)) in runs.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            return Err(Stopped::same_command(Vec::new()).into());
        }
        progress.println(&format!(
            "[{}/{}] {} (seed {seed})",
            i + 1,
            runs.len(),
            method.id
        ));
        let sink = progress.clone();
        let output = JobOutput::InProcess {
            group: progress.group().clone(),
            on_step: mixlab_train::StepHook(Arc::new(move |p| sink.step(i, p.step))),
        };
        let result = run_method(plan, out, method, seed, stop, &settings.mixers, output);
        progress.end(i, result.is_ok());
        result?;
    }
    Ok(())
}

/// The runs `jobs` at a time, each a child process, each after the run it depends on.
fn run_jobs(
    plan: &Plan,
    out: &Path,
    settings: &RunSettings,
    runs: &[(u64, &Method)],
    progress: &progress::PlanProgress,
) -> Result<()> {
    let (stop, jobs) = (&settings.stop, settings.jobs);
    let total = runs.len();
    // The runs each one waits for (same seed), by index.
    let waits_for: Vec<Vec<usize>> = runs
        .iter()
        .map(|&(seed, m)| {
            m.dependencies()
                .into_iter()
                .filter_map(|dep| runs.iter().position(|&(s, d)| s == seed && d.id == dep))
                .collect()
        })
        .collect();
    let announce = |started: usize, i: usize| {
        let (seed, method) = runs[i];
        progress.println(&format!("[{started}/{total}] {} (seed {seed})", method.id));
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Each run's share of the cores, changed as runs start and end: a run left alone when
    // nothing else can start (the end of a plan, or DoReMi's chain waiting on its proxy) takes
    // the cores the finished runs left. The numbers do not depend on it (mixlab-train's
    // `ThreadBudget`).
    let budgets: Vec<ThreadBudget> = (0..total)
        .map(|_| ThreadBudget::new((cores / jobs.min(total).max(1)).max(1)))
        .collect();
    let share = |running: &[usize]| {
        for (&i, threads) in running.iter().zip(core_shares(cores, running.len())) {
            budgets[i].set(threads);
        }
    };
    let work = |i: usize| {
        if stop.load(Ordering::SeqCst) {
            return Err(Stopped::same_command(Vec::new()).into());
        }
        let (seed, method) = runs[i];
        let result = child::spawn_job(
            plan,
            out,
            method,
            seed,
            (stop, &settings.child),
            (progress, i),
            &budgets[i],
        );
        progress.end(i, result.is_ok());
        result
    };
    // A finished run is skipped at once: only its dependents' work counts.
    let costs: Vec<u64> = runs
        .iter()
        .map(|&(seed, method)| {
            if trained(out, method, seed) {
                0
            } else {
                cost::expected_work(plan, method, &settings.mixers)
            }
        })
        .collect();
    let errors = run_in_parallel(&waits_for, &costs, jobs, announce, share, work);
    // Stops are not failures: when nothing failed, one message lists every stopped run.
    let (stops, mut errors): (Vec<_>, Vec<_>) =
        errors.into_iter().partition(|(_, e)| e.stopped().is_some());
    let stopped: Vec<StoppedRun> = stops
        .iter()
        .filter_map(|(_, e)| e.stopped())
        .flat_map(|s| s.runs.clone())
        .collect();
    if errors.is_empty() {
        if stops.is_empty() {
            return Ok(());
        }
        return Err(Stopped::same_command(stopped).into());
    }
    for run in &stopped {
        eprintln!(
            "also stopped: {}: step {} of {}",
            run.label, run.step, run.total
        );
    }
    let label = |i: usize| format!("{} (seed {})", runs[i].1.id, runs[i].0);
    for (i, e) in errors.iter().skip(1) {
        eprintln!("also failed: {}: {}", label(*i), crate::error::chain(e));
    }
    let (i, first) = errors.remove(0);
    Err(first).context(format!("run {} failed", label(i)))
}

/// `cores` shared among `running` runs: equal shares, the first runs (the ones that started
/// first) one more each while cores remain, and at least one each.
fn core_shares(cores: usize, running: usize) -> Vec<usize> {
    let running = running.max(1);
    (0..running)
        .map(|k| (cores / running + usize::from(k < cores % running)).max(1))
        .collect()
}

/// Trains (or resumes, or skips) one run, then fills in its missing evaluations, showing
/// progress as `output` says.
fn run_method(
    plan: &Plan,
    out: &Path,
    method: &Method,
    seed: u64,
    stop: &Arc<AtomicBool>,
    mixers: &MixerRegistry,
    output: JobOutput,
) -> Result<()> {
    let config = plan.train_config(out, method, seed)?;
    let dir = config.out_dir.clone();
    if !dir.join("summary.json").is_file() {
        let checkpoints = mixlab_train::checkpoint::list_checkpoints(&dir.join("checkpoints"))?;
        if checkpoints.is_empty() && dir.exists() {
            // Stopped before its first checkpoint: nothing to resume, start it again.
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let reference = method
            .reference_model
            .as_ref()
            .map(|reference| Plan::run_dir(out, reference, seed).join("final"));
        let options = RunOptions {
            max_steps: None,
            resume: !checkpoints.is_empty(),
            progress: matches!(output, JobOutput::InProcess { .. }),
            stop: Some(stop.clone()),
            progress_group: match &output {
                JobOutput::InProcess { group, .. } => Some(group.clone()),
                JobOutput::Child { .. } => None,
            },
            on_step: match &output {
                JobOutput::InProcess { on_step, .. } | JobOutput::Child { on_step, .. } => {
                    Some(on_step.clone())
                }
            },
            // Only burn's CPU backend computes on rayon's pools; a GPU backend's streams are
            // tied to the host thread that queues the work, which must not change per step.
            threads: output
                .threads()
                .filter(|_| plan.preset.device == DeviceSpec::Cpu)
                .cloned(),
            fail_checkpoint_at: None,
            dump_batches: None,
        };
        let started = Instant::now();
        let summary =
            train_run(&config, &options, reference.as_deref(), mixers).with_context(|| {
                format!("training {} (seed {seed}) in {}", method.id, dir.display())
            })?;
        RunTiming::add(&dir, "train", started.elapsed().as_secs_f64())?;
        // Only a mixer that learns from validation (Aioli) has any; other runs' timing.json
        // keeps its form.
        if !summary.mixer_validation_time.is_zero() {
            RunTiming::add(
                &dir,
                MIXER_VALIDATION,
                summary.mixer_validation_time.as_secs_f64(),
            )?;
        }
        if !summary.finished {
            return Err(Stopped::same_command(vec![StoppedRun {
                label: format!("{} (seed {seed})", method.id),
                step: summary.steps,
                total: config.training.steps,
            }])
            .into());
        }
    }
    if !method.reported {
        return Ok(());
    }
    output.evaluating();
    let spec = plan.preset.device;
    // Evaluation bars of their own would be drawn outside the plan's group and garble it.
    let progress = false;
    let threads = output.threads();
    match spec {
        DeviceSpec::Cpu => evaluate_run::<CpuBackend>(plan, &dir, &cpu_device(), progress, threads),
        #[cfg(feature = "tch")]
        DeviceSpec::TchCpu => evaluate_run::<mixlab_model::TchBackend>(
            plan,
            &dir,
            &mixlab_model::tch_cpu_device(),
            progress,
            None,
        ),
        #[cfg(not(feature = "tch"))]
        DeviceSpec::TchCpu => Err(crate::error::StudyError::Model(
            mixlab_model::ModelError::TchNotBuilt,
        )),
        DeviceSpec::Cuda(i) => {
            let device = cuda_device(i, Precision::F32)?;
            evaluate_run::<CudaBackend>(plan, &dir, &device, progress, None)
        }
    }
}

/// The run's test perplexity and multiple choice, whichever are missing (`progress`: with bars).
/// A finished run whose evaluations are missing needs its final weights; committed results
/// keep no weights, so say what happened and what to do instead of naming a missing file.
fn require_weights(dir: &Path) -> Result<()> {
    let final_dir = dir.join("final");
    if final_dir.join("config.json").is_file() && final_dir.join("model.safetensors").is_file() {
        return Ok(());
    }
    bail!(
        "{} finished training but an evaluation is missing, and its final weights ({}) are gone \
         (committed results keep none), so it cannot be evaluated again; move the run directory \
         away to train it again, or restore the evaluation file",
        dir.display(),
        final_dir.display()
    )
}

/// Runs `f` with `threads`' current share of the cores, if the run has a budget.
fn with_threads<R: Send>(threads: Option<&ThreadBudget>, f: impl FnOnce() -> R + Send) -> R {
    match threads {
        Some(budget) => budget.install(f),
        None => f(),
    }
}

/// Each evaluation (test perplexity, each multiple-choice protocol) runs with the share of the
/// cores `threads` gives when it starts.
fn evaluate_run<B: ModelBackend>(
    plan: &Plan,
    dir: &Path,
    device: &B::Device,
    progress: bool,
    threads: Option<&ThreadBudget>,
) -> Result<()> {
    let final_dir = dir.join("final");
    let test_path = dir.join("test-ppl.json");
    let protocols: Vec<Protocol> = if plan.mc.is_some() {
        Protocol::ALL.to_vec()
    } else {
        Vec::new()
    };
    let missing_mc = protocols
        .iter()
        .any(|p| !dir.join(format!("mc-{p}.json")).is_file());
    if test_path.is_file() && !missing_mc {
        return Ok(());
    }
    require_weights(dir)?;
    let model = GptNeoX::<B>::load_pretrained(&final_dir, device)
        .with_context(|| format!("loading {}", final_dir.display()))?;
    if !test_path.is_file() {
        let started = Instant::now();
        let store = DomainStore::open(&plan.dataset.path, &OpenOptions::default())?;
        let config = PerplexityConfig {
            max_sequences_per_domain: Some(plan.preset.test_max_sequences),
            batch_size: plan.preset.eval_batch_size,
            domains: Vec::new(),
            progress,
        };
        let report = with_threads(threads, || {
            evaluate_perplexity(&model, device, &store, Split::Test, &config)
        })?;
        write_atomic(&test_path, &serde_json::to_string_pretty(&report)?)?;
        RunTiming::set(dir, "test", started.elapsed().as_secs_f64())?;
    }
    if let Some(mc) = &plan.mc {
        let dataset = McDataset::open(&mc.data)?;
        let tokenizer = load_tokenizer(&final_dir.join("tokenizer.json"))?;
        let mut scorer = ModelScorer::new(model, tokenizer, device.clone())?
            .with_batch_size(plan.preset.eval_batch_size);
        for protocol in protocols {
            let path = dir.join(format!("mc-{protocol}.json"));
            if path.is_file() {
                continue;
            }
            let started = Instant::now();
            let config = McConfig {
                protocol,
                limit_per_subject: mc.limit_per_subject,
                progress,
                ..McConfig::default()
            };
            let report = with_threads(threads, || {
                evaluate_multiple_choice(&mut scorer, &dataset, &config, None)
            })?;
            write_atomic(&path, &(serde_json::to_string_pretty(&report)? + "\n"))?;
            RunTiming::set(
                dir,
                &format!("mc-{protocol}"),
                started.elapsed().as_secs_f64(),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_are_shared_among_the_running_runs() {
        assert_eq!(core_shares(2, 2), [1, 1]);
        assert_eq!(core_shares(2, 1), [2], "a run left alone takes both cores");
        assert_eq!(core_shares(8, 3), [3, 3, 2]);
        assert_eq!(core_shares(2, 3), [1, 1, 1], "at least one thread each");
        assert_eq!(core_shares(1, 0), [1]);
    }

    #[test]
    fn evaluating_a_run_without_weights_says_why_it_cannot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("runs/tpw/seed-42");
        std::fs::create_dir_all(run.join("final")).expect("mkdir");
        let e = require_weights(&run).expect_err("no weights").to_string();
        assert!(
            e.contains("finished training") && e.contains("final weights") && e.contains("seed-42"),
            "{e}"
        );
        std::fs::write(run.join("final/config.json"), "{}").expect("write");
        std::fs::write(run.join("final/model.safetensors"), "").expect("write");
        require_weights(&run).expect("weights present");
    }
}
