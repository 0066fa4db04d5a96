//! `reproduce` (the paper's comparison: TPW, DoReMi, ODM, uniform) and `ablate-exploration`
//! (ODM's exploration schedule, smoothing and sampling granularity): the arguments, and running
//! a plan.
//!
//! The plan itself, the methods, the dataset and the report are the `mixlab-study` library's
//! ([`mixlab_study::build_plan`] from the arguments' [`PlanRequest`]). Here the plan is written
//! to `<out>/plan.json` first, so the same command resumes: a finished run is skipped, an
//! interrupted one continues from its newest checkpoint, a missing evaluation is computed. The
//! report (`report.md` and SVG figures) is rendered from the files alone (`experiments report
//! DIR`).

pub mod child;
pub mod progress;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mixlab_data::{DomainStore, OpenOptions, Split};
use mixlab_eval::perplexity::{PerplexityConfig, evaluate_perplexity};
use mixlab_eval::{
    McConfig, McDataset, ModelScorer, Protocol, evaluate_multiple_choice, load_tokenizer,
};
use mixlab_model::ModelBackend;
use mixlab_model::{
    CpuBackend, CudaBackend, DeviceSpec, GptNeoX, Precision, cpu_device, cuda_device,
};
use mixlab_train::RunOptions;

use crate::stop::{Stopped, StoppedRun};
use child::JobOutput;
pub use child::{RunArgs, run_child};

pub use mixlab_study::{Method, Plan, PlanKind, RunTiming, reference, report, write_atomic};
use mixlab_study::{PlanChange, PlanRequest, build_plan, default_out, reconcile_plans};

/// Arguments shared by `reproduce` and `ablate-exploration`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// `smoke` (minutes, a pipeline check), `quick` (~20 min on 2 CPU cores), `tiny` (~4 h on
    /// 2 CPU cores) or `paper-1b` (GPU). Default: `tiny` for `reproduce`; `quick` for
    /// `ablate-exploration` (its nine variants at `tiny` take about 4 hours on 2 CPU cores).
    #[arg(long)]
    pub preset: Option<String>,
    /// A Pile-format corpus (prepared here with the preset's tokenizer) or a prepared dataset
    /// (with manifest.json). Default: the built-in synthetic corpus, generated on first use.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A tokenizer.json for preparing `--data` (default: the preset's, `train:4096`).
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Multiple-choice benchmark in the hendrycks/test layout (e.g. MMLU). Default: the
    /// synthetic corpus's own set; none for `--data` without `--mmlu`.
    #[arg(long)]
    pub mmlu: Option<PathBuf>,
    /// Test questions per subject (default: the preset's; 0 = all).
    #[arg(long)]
    pub mc_limit: Option<usize>,
    /// Seeds per method (42, 1234, 100, 222 as in the paper's scripts, then 1000, 1001, ...).
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Optimizer steps of every run (default: the preset's); warm-ups stay 1% and 2%, and
    /// validation keeps the preset's number of points per run.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Only these methods (comma-separated ids; dependencies are added).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// A method of your own, as data (TOML: id, label, about, [mixer], optional
    /// [dataset_weights] and [training]; see docs/adding-a-mixer.md), added after the built-in
    /// ones. Repeat for several; give it again when resuming.
    #[arg(long = "method-file", value_name = "FILE")]
    pub method_files: Vec<PathBuf>,
    /// `cpu`, `tch-cpu` (builds with `--features tch`), `cuda` or `cuda:N` (default: the preset's).
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Results directory (default: runs/reproduce-<preset> or runs/ablate-exploration-<preset>,
    /// which git ignores; the committed references under results/ change only when named here).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the synthetic corpus and prepared datasets go.
    #[arg(long, default_value = "data")]
    pub data_root: PathBuf,
    /// Runs at a time (default: one per CPU core on a CPU, one on a GPU). With more than one, each
    /// run is a child process with its share of the cores (a small model trains about as fast on
    /// one core as on two); every run's losses are the same as when it runs alone.
    #[arg(long)]
    pub jobs: Option<usize>,
}

impl Args {
    /// The preset asked for, or the default of `kind`.
    pub fn preset_name(&self, kind: PlanKind) -> &str {
        self.preset.as_deref().unwrap_or(kind.default_preset())
    }

    /// The plan request these arguments make for `kind`.
    pub fn request(&self, kind: PlanKind) -> PlanRequest {
        PlanRequest {
            kind,
            preset: self.preset_name(kind).to_string(),
            steps: self.steps,
            device: self.device,
            mc_limit: self.mc_limit,
            seeds: self.seeds,
            methods: self.methods.clone(),
            method_files: self.method_files.clone(),
            data: self.data.clone(),
            tokenizer: self.tokenizer.clone(),
            mmlu: self.mmlu.clone(),
            data_root: self.data_root.clone(),
        }
    }
}

/// Runs `reproduce` or `ablate-exploration`: plan, runs, evaluations, report.
pub fn run(kind: PlanKind, args: Args) -> Result<()> {
    let name = args.preset_name(kind);
    let out = args.out.clone().unwrap_or_else(|| default_out(kind, name));
    // Checked before planning, which may generate and prepare a corpus.
    if args.jobs == Some(0) {
        bail!("--jobs must be at least 1");
    }
    let plan = build_plan(&args.request(kind), &crate::mixers::registry())?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // One `reproduce` per results directory while it runs (each run's directory is locked by
    // its own training as well).
    let _lock = mixlab_data::lock::DirLock::acquire(&out)?;
    let plan_path = out.join("plan.json");
    if plan_path.exists() {
        let text = std::fs::read_to_string(&plan_path)
            .with_context(|| format!("reading {}", plan_path.display()))?;
        let saved = Plan::saved_semantics(&text, &plan_path)?;
        match reconcile_plans(&saved, &plan)? {
            PlanChange::Same => {}
            PlanChange::AddsMethods(added) => {
                eprintln!(
                    "{}: adding {} to the saved plan (its finished runs are kept)",
                    out.display(),
                    added.join(", ")
                );
                write_atomic(&plan_path, &serde_json::to_string_pretty(&plan)?)?;
            }
            PlanChange::Different(fields) => bail!(
                "{} holds a different plan (differs in: {}); rerun with the original arguments to resume, add methods with --methods, or choose another --out",
                out.display(),
                fields.join(", ")
            ),
        }
    } else {
        write_atomic(&plan_path, &serde_json::to_string_pretty(&plan)?)?;
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let history = out.join("commands.txt");
    let mut previous = std::fs::read_to_string(&history).unwrap_or_default();
    previous.push_str(&command);
    previous.push('\n');
    write_atomic(&history, &previous)?;

    let stop = crate::stop::stop_flag()?;
    let jobs = match args.jobs {
        Some(n) => n,
        None => default_jobs(plan.preset.device),
    };
    eprintln!("results directory: {}", out.display());
    let reference = reference::find(&out, kind, name);
    if let Some(dir) = &reference {
        eprintln!(
            "its report will compare with the committed reference {}",
            dir.display()
        );
    }
    run_all(&plan, &out, &stop, jobs)?;
    let written = report::write_report(&out, reference.as_deref())?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs at a time when `--jobs` is not given: every core on a CPU, one run on a GPU.
fn default_jobs(device: DeviceSpec) -> usize {
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
fn run_all(plan: &Plan, out: &Path, stop: &Arc<AtomicBool>, jobs: usize) -> Result<()> {
    let runs: Vec<(u64, &Method)> = plan
        .seeds
        .iter()
        .flat_map(|&seed| plan.methods.iter().map(move |m| (seed, m)))
        .collect();
    let total = runs.len();
    let finished: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, (seed, m))| {
            Plan::run_dir(out, &m.id, *seed)
                .join("summary.json")
                .is_file()
        })
        .map(|(i, _)| i)
        .collect();
    let progress = Arc::new(progress::PlanProgress::new(
        total,
        &finished,
        plan.preset.steps,
        (plan.preset.batch_size * plan.preset.seq_len) as u64,
    ));
    let result = if jobs <= 1 {
        run_in_order(plan, out, stop, &runs, &progress)
    } else {
        run_jobs(plan, out, stop, jobs, &runs, &progress)
    };
    progress.finish();
    result
}

/// The runs one after another in this process (`--jobs 1`).
fn run_in_order(
    plan: &Plan,
    out: &Path,
    stop: &Arc<AtomicBool>,
    runs: &[(u64, &Method)],
    progress: &Arc<progress::PlanProgress>,
) -> Result<()> {
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
        let result = run_method(plan, out, method, seed, stop, output);
        progress.end(i, result.is_ok());
        result?;
    }
    Ok(())
}

/// The runs `jobs` at a time, each a child process, each after the run it depends on.
fn run_jobs(
    plan: &Plan,
    out: &Path,
    stop: &Arc<AtomicBool>,
    jobs: usize,
    runs: &[(u64, &Method)],
    progress: &progress::PlanProgress,
) -> Result<()> {
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
    let threads = (cores / jobs.min(total).max(1)).max(1);
    let work = |i: usize| {
        if stop.load(Ordering::SeqCst) {
            return Err(Stopped::same_command(Vec::new()).into());
        }
        let (seed, method) = runs[i];
        let result = child::spawn_job(plan, out, method, seed, stop, (progress, i), threads);
        progress.end(i, result.is_ok());
        result
    };
    let errors = run_in_parallel(&waits_for, jobs, announce, work);
    // Stops are not failures: when nothing failed, one message lists every stopped run.
    let (stops, mut errors): (Vec<_>, Vec<_>) = errors
        .into_iter()
        .partition(|(_, e)| crate::stop::as_stopped(e).is_some());
    let stopped: Vec<StoppedRun> = stops
        .iter()
        .filter_map(|(_, e)| crate::stop::as_stopped(e))
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
        eprintln!("also failed: {}: {e:#}", label(*i));
    }
    let (i, first) = errors.remove(0);
    Err(first.context(format!("run {} failed", label(i))))
}

/// Where one task of [`run_in_parallel`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Waiting,
    Running,
    Done,
    Failed,
}

/// Runs tasks `0..waits_for.len()` on `jobs` threads, task `i` only after the tasks in
/// `waits_for[i]` succeeded. Of the ready tasks, the one heading the longest chain of tasks waiting on it goes
/// first (then the lowest index): on few cores the DoReMi chain (reference, proxy, main run)
/// would otherwise start its proxy only after every independent run, and finish last alone.
/// `announce(n, i)` as task `i` starts as the `n`-th. After a failure (an error or a panic) no new task starts and those under way finish.
/// Returns the failures in the order they happened, with their task index.
fn run_in_parallel(
    waits_for: &[Vec<usize>],
    jobs: usize,
    announce: impl Fn(usize, usize) + Sync,
    work: impl Fn(usize) -> Result<()> + Sync,
) -> Vec<(usize, anyhow::Error)> {
    struct Board {
        states: Vec<TaskState>,
        errors: Vec<(usize, anyhow::Error)>,
        started: usize,
    }
    let total = waits_for.len();
    let board = std::sync::Mutex::new(Board {
        states: vec![TaskState::Waiting; total],
        errors: Vec::new(),
        started: 0,
    });
    let chain = chain_lengths(waits_for);
    let changed = std::sync::Condvar::new();
    let lock = || {
        board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let next = || -> Option<usize> {
        let mut guard = lock();
        loop {
            if !guard.errors.is_empty() {
                return None;
            }
            let states = &guard.states;
            let ready = (0..total)
                .filter(|&i| {
                    states[i] == TaskState::Waiting
                        && waits_for[i].iter().all(|&d| states[d] == TaskState::Done)
                })
                .max_by_key(|&i| (chain[i], std::cmp::Reverse(i)));
            if let Some(i) = ready {
                guard.states[i] = TaskState::Running;
                guard.started += 1;
                announce(guard.started, i);
                return Some(i);
            }
            if !guard.states.contains(&TaskState::Running) {
                return None;
            }
            guard = changed
                .wait(guard)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, total.max(1)) {
            scope.spawn(|| {
                while let Some(i) = next() {
                    // A panic (burn panics on some device errors) must still end the task, or
                    // the tasks waiting for it would wait forever.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(i)))
                        .unwrap_or_else(|panic| {
                            let what = panic
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "a panic".into());
                            Err(anyhow::anyhow!("panicked: {what}"))
                        });
                    let mut guard = lock();
                    match result {
                        Ok(()) => guard.states[i] = TaskState::Done,
                        Err(e) => {
                            guard.states[i] = TaskState::Failed;
                            guard.errors.push((i, e));
                        }
                    }
                    changed.notify_all();
                }
            });
        }
    });
    board
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .errors
}

/// For each task, the number of tasks in the longest chain that starts with it (itself, a task
/// waiting for it, one waiting for that, ...).
fn chain_lengths(waits_for: &[Vec<usize>]) -> Vec<usize> {
    let mut chain = vec![1; waits_for.len()];
    // Each pass lengthens chains by at least one link; a chain has at most `len` tasks.
    for _ in 0..waits_for.len() {
        let mut changed = false;
        for (i, deps) in waits_for.iter().enumerate() {
            for &d in deps {
                if chain[d] < chain[i] + 1 {
                    chain[d] = chain[i] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    chain
}

/// Trains (or resumes, or skips) one run, then fills in its missing evaluations, showing
/// progress as `output` says.
fn run_method(
    plan: &Plan,
    out: &Path,
    method: &Method,
    seed: u64,
    stop: &Arc<AtomicBool>,
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
                JobOutput::Child(_) => None,
            },
            on_step: match &output {
                JobOutput::InProcess { on_step, .. } | JobOutput::Child(on_step) => {
                    Some(on_step.clone())
                }
            },
            fail_checkpoint_at: None,
        };
        let started = Instant::now();
        let summary = crate::train_cmd::run_config(&config, &options, reference.as_deref())
            .with_context(|| {
                format!("training {} (seed {seed}) in {}", method.id, dir.display())
            })?;
        RunTiming::add(&dir, "train", started.elapsed().as_secs_f64())?;
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
    match spec {
        DeviceSpec::Cpu => evaluate_run::<CpuBackend>(plan, &dir, &cpu_device(), progress),
        #[cfg(feature = "tch")]
        DeviceSpec::TchCpu => evaluate_run::<mixlab_model::TchBackend>(
            plan,
            &dir,
            &mixlab_model::tch_cpu_device(),
            progress,
        ),
        #[cfg(not(feature = "tch"))]
        DeviceSpec::TchCpu => Err(mixlab_model::ModelError::TchNotBuilt.into()),
        DeviceSpec::Cuda(i) => {
            let device = cuda_device(i, Precision::F32)?;
            evaluate_run::<CudaBackend>(plan, &dir, &device, progress)
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

fn evaluate_run<B: ModelBackend>(
    plan: &Plan,
    dir: &Path,
    device: &B::Device,
    progress: bool,
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
        let report = evaluate_perplexity(&model, device, &store, Split::Test, &config)?;
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
            let report = evaluate_multiple_choice(&mut scorer, &dataset, &config, None)?;
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

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A results directory written by `reproduce` or `ablate-exploration` (holds plan.json).
    pub dir: PathBuf,
    /// A results directory to compare with (default: the committed `results/<preset>` of the
    /// same kind, when it exists and is not DIR).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Compare with no reference.
    #[arg(long, conflicts_with = "reference")]
    pub no_reference: bool,
}

/// Runs `report`: re-renders report.md and the figures from the files alone.
pub fn run_report(args: ReportArgs) -> Result<()> {
    let reference = if args.no_reference {
        None
    } else if let Some(dir) = args.reference {
        Some(dir)
    } else {
        let plan = Plan::load(&args.dir)?;
        reference::find(&args.dir, plan.kind, &plan.preset.name)
    };
    for path in report::write_report(&args.dir, reference.as_deref())? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Task events in the order they happened: (task, started?).
    type Events = std::sync::Mutex<Vec<(usize, bool)>>;

    fn position(events: &[(usize, bool)], task: usize, start: bool) -> Option<usize> {
        events.iter().position(|&e| e == (task, start))
    }

    #[test]
    fn parallel_tasks_wait_for_their_dependency_and_all_run() {
        // 0 -> 1 -> 2 is a chain (reference, proxy, main run); 3 and 4 are free.
        let waits_for = [vec![], vec![0], vec![1], vec![], vec![]];
        let events = Events::default();
        let announced = std::sync::Mutex::new(Vec::new());
        let errors = run_in_parallel(
            &waits_for,
            3,
            |n, i| announced.lock().unwrap().push((n, i)),
            |i| {
                events.lock().unwrap().push((i, true));
                std::thread::sleep(std::time::Duration::from_millis(20));
                events.lock().unwrap().push((i, false));
                Ok(())
            },
        );
        assert!(errors.is_empty());
        let events = events.into_inner().unwrap();
        assert_eq!(events.len(), 10, "every task ran once: {events:?}");
        for (task, dep) in [(1, 0), (2, 1)] {
            assert!(
                position(&events, dep, false) < position(&events, task, true),
                "{task} started before {dep} ended: {events:?}"
            );
        }
        let announced = announced.into_inner().unwrap();
        let numbers: Vec<usize> = announced.iter().map(|&(n, _)| n).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
        assert_eq!(
            announced[0],
            (1, 0),
            "the head of the longest chain goes first"
        );
    }

    #[test]
    fn the_longest_chain_starts_first() {
        // The reproduce plan's shape: tpw, two free runs, then the proxy (after tpw) and DoReMi
        // (after the proxy).
        let waits_for = [vec![], vec![], vec![], vec![0], vec![3]];
        assert_eq!(chain_lengths(&waits_for), [3, 1, 1, 2, 1]);
        assert_eq!(chain_lengths(&[vec![], vec![0], vec![0]]), [2, 1, 1]);
        // A run waiting for two: both heads lengthen.
        assert_eq!(chain_lengths(&[vec![], vec![], vec![0, 1]]), [2, 2, 1]);
        // One thread shows the order: the proxy right after its reference, then by index.
        let order = std::sync::Mutex::new(Vec::new());
        let errors = run_in_parallel(
            &waits_for,
            1,
            |_, i| order.lock().unwrap().push(i),
            |_| Ok(()),
        );
        assert!(errors.is_empty());
        assert_eq!(order.into_inner().unwrap(), [0, 3, 1, 2, 4]);
    }

    #[test]
    fn a_failure_or_panic_stops_new_tasks_and_skips_its_dependents() {
        for panics in [false, true] {
            let waits_for = [vec![], vec![0], vec![]];
            let ran = std::sync::Mutex::new(Vec::new());
            let errors = run_in_parallel(
                &waits_for,
                2,
                |_, _| {},
                |i| {
                    ran.lock().unwrap().push(i);
                    if i == 0 {
                        if panics {
                            panic!("device lost");
                        }
                        bail!("bad config");
                    }
                    Ok(())
                },
            );
            let ran = ran.into_inner().unwrap();
            assert!(
                !ran.contains(&1),
                "the dependent of a failed task ran: {ran:?}"
            );
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].0, 0);
            let message = errors[0].1.to_string();
            let expected = if panics {
                "panicked: device lost"
            } else {
                "bad config"
            };
            assert_eq!(message, expected);
        }
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
