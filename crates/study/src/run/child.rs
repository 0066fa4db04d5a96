//! A plan's runs with `jobs` > 1: each a child process ([`super::ChildCommand`]).
//!
//! Runs of one process share burn's global thread pool, its allocator and its backend RNG
//! lock: two runs in one process trained at ~33 steps/min each where two processes trained at
//! 45-50. A child (the command line's hidden `experiments reproduce-run --out DIR --method ID
//! --seed S`, which calls [`run_child`]) reads the parent's plan as TOML on its stdin, trains
//! and evaluates that one run exactly as a one-job run would (same code path, so the same
//! losses), and reports each step as a JSON line on stdout, from which the parent draws the
//! run's progress bar. Its stderr is kept and returned as the error when it fails. Ctrl-C
//! reaches the children through the terminal's process group; a stop the parent sees otherwise
//! (SIGTERM) is passed on with `kill -INT`.
//!
//! The child's stdin: a line with the plan's length in bytes, the plan, then lines
//! `threads N` whenever the parent changes the run's share of the cores (runs started or
//! ended; `core_shares` in `run/mod.rs`); the child applies a new share from its next step or
//! evaluation on ([`ThreadBudget`]). `RAYON_NUM_THREADS` set in the parent's environment fixes
//! every child's count instead.
//!
//! Why TOML on stdin and not `DIR/plan.json`: the plan is the parent's in memory, to the bit,
//! whatever the file says (the toml crate parses with the standard library's correctly rounded
//! parser; serde_json does too since its `float_roundtrip` feature is on, which it was not
//! when this was written: the ablation's ε = 1/11 came back two units in the last place high).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use mixlab_mixing::MixerRegistry;
use mixlab_train::{StepHook, StepProgress, ThreadBudget};
use serde::{Deserialize, Serialize};

use super::progress::PlanProgress;
use super::{ChildCommand, run_method};
use crate::error::{Context, Result, bail};
use crate::method::Method;
use crate::plan::Plan;
use crate::stop::{Stopped, StoppedRun};

/// What a child reports on stdout, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
enum ChildEvent {
    /// A training step finished.
    Step(StepProgress),
    /// Training is done (or was already); the run's evaluations follow.
    Evaluating,
    /// A signal stopped the run after a checkpoint; the child exits with the signal's status.
    Stopped(StoppedRun),
}

fn emit(event: &ChildEvent) {
    // One line per event; a closed pipe (parent gone) only loses progress display.
    println!(
        "{}",
        serde_json::to_string(event).expect("events serialise")
    );
}

/// Runs one job of a plan as a child process does: the plan comes as TOML on stdin, the run is
/// `method` with `seed` under `out`, its steps go to stdout as JSON lines for the parent, and a
/// stop (`stop`, set by the child's signal handler) is reported before the child ends.
pub fn run_child(
    out: &Path,
    method: &str,
    seed: u64,
    stop: &Arc<AtomicBool>,
    mixers: &MixerRegistry,
) -> Result<()> {
    let mut input = BufReader::new(std::io::stdin());
    let text = read_plan(&mut input)?;
    let plan: Plan = toml::from_str(&text).context("parsing the plan (TOML) from stdin")?;
    let Some(method) = plan.methods.iter().find(|m| m.id == method) else {
        bail!("the plan has no method `{method}`");
    };
    if !plan.seeds.contains(&seed) {
        bail!("the plan has no seed {seed}");
    }
    let hook = StepHook(Arc::new(|progress: &StepProgress| {
        emit(&ChildEvent::Step(progress.clone()));
    }));
    let threads = ThreadBudget::new(initial_threads());
    let listener = threads.clone();
    // Detached: it ends with the parent's stdin (EOF) or with this process.
    std::thread::spawn(move || follow_thread_shares(input, &listener));
    let result = run_method(
        &plan,
        out,
        method,
        seed,
        stop,
        mixers,
        JobOutput::Child {
            on_step: hook,
            threads,
        },
    );
    if let Err(error) = &result
        && let Some(stopped) = error.stopped()
    {
        for run in &stopped.runs {
            emit(&ChildEvent::Stopped(run.clone()));
        }
    }
    result
}

/// Reads the plan's text: a line with its length in bytes, then that many bytes.
fn read_plan(input: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the plan's length from stdin")?;
    let length: usize = line.trim().parse().with_context(|| {
        format!(
            "stdin's first line must be the plan's length in bytes, not {:?}",
            line.trim()
        )
    })?;
    let mut bytes = vec![0; length];
    input
        .read_exact(&mut bytes)
        .context("reading the plan (TOML) from stdin")?;
    String::from_utf8(bytes).context("the plan on stdin is not UTF-8")
}

/// The child's threads at start: `RAYON_NUM_THREADS` (which the parent sets), else the cores.
fn initial_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Applies each `threads N` line of `input` to `threads`, until EOF.
fn follow_thread_shares(input: impl BufRead, threads: &ThreadBudget) {
    for line in input.lines() {
        let Ok(line) = line else { break };
        match line
            .strip_prefix("threads ")
            .and_then(|n| n.trim().parse().ok())
        {
            Some(n) => threads.set(n),
            // The parent is this same binary, so this is a bug; it costs only speed.
            None => eprintln!("ignoring an unknown line from the parent: {line:?}"),
        }
    }
}

/// Where a run started by [`super::run_plan`] shows its progress.
pub enum JobOutput {
    /// In this process (`--jobs 1`): the training bar joins the plan's progress group, each
    /// step is reported to `on_step` (the plan's overall line).
    InProcess {
        /// The plan's progress group.
        group: MultiProgress,
        /// Called after each step.
        on_step: StepHook,
    },
    /// A child process: step events on stdout, no bars.
    Child {
        /// Called after each step.
        on_step: StepHook,
        /// The run's share of the cores, which the parent changes as other runs start and end.
        threads: ThreadBudget,
    },
}

impl JobOutput {
    /// Tells the parent (if any) that training is over and evaluation begins.
    pub fn evaluating(&self) {
        if let JobOutput::Child { .. } = self {
            emit(&ChildEvent::Evaluating);
        }
    }

    /// The run's thread budget, for a child process (a run in the parent uses its whole pool).
    pub fn threads(&self) -> Option<&ThreadBudget> {
        match self {
            JobOutput::Child { threads, .. } => Some(threads),
            JobOutput::InProcess { .. } => None,
        }
    }
}

/// Runs one job as a child process and draws its progress as a bar of `group`.
///
/// `threads`: the compute threads the child may use (its share of the cores), given to burn's
/// CPU backends as `RAYON_NUM_THREADS` (flex) and `OMP_NUM_THREADS` (libtorch) unless this
/// process's environment already sets them: N processes with a thread per core each would
/// oversubscribe the machine N times. Later changes of `threads` are sent to the child (burn's
/// CPU backend follows them; libtorch keeps its first count).
pub fn spawn_job(
    plan: &Plan,
    out: &Path,
    method: &Method,
    seed: u64,
    (stop, child_command): (&Arc<AtomicBool>, &ChildCommand),
    progress: (&PlanProgress, usize),
    threads: &ThreadBudget,
) -> Result<()> {
    let (plan_progress, index) = progress;
    let group = plan_progress.group();
    let exe = &child_command.program;
    let mut command = Command::new(exe);
    let mut sent_threads = threads.threads();
    for variable in ["RAYON_NUM_THREADS", "OMP_NUM_THREADS"] {
        if std::env::var_os(variable).is_none() {
            command.env(variable, sent_threads.to_string());
        }
    }
    let follow_shares = std::env::var_os("RAYON_NUM_THREADS").is_none();
    let mut child = command
        .args(&child_command.args)
        .arg("--out")
        .arg(out)
        .args(["--method", &method.id, "--seed", &seed.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} {} for a run",
                exe.display(),
                child_command.args.join(" ")
            )
        })?;
    let pid = child.id();
    let plan_text = toml::to_string(plan).context("writing the plan as TOML")?;
    // Kept open for the shares that follow; closed (dropped) when the child has ended.
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(format!("{}\n{plan_text}", plan_text.len()).as_bytes())
        .and_then(|()| stdin.flush())
        .context("sending the plan to a run's child process")?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let bar = group.add(ProgressBar::new(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} [{elapsed_precise}] {wide_bar} step {pos}/{len} ({per_sec}, ETA {eta}) {msg}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(format!("{} (seed {seed})", method.id));
    bar.set_message("starting");
    bar.enable_steady_tick(Duration::from_millis(500));

    let done = Arc::new(AtomicBool::new(false));
    let mut stopped = None;
    let mut last_step = 0;
    let status = std::thread::scope(|scope| {
        // The child's stderr, kept whole: it is the error message if the child fails.
        let errors = scope.spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        // Passes a stop the parent received on to the child (Ctrl-C reaches it directly), and
        // the run's share of the cores when it changes.
        let watcher = {
            let (done, stop) = (done.clone(), stop.clone());
            scope.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    let share = threads.threads();
                    if follow_shares && share != sent_threads {
                        // A child that has ended cannot read it, and needs it no more.
                        let _ = writeln!(stdin, "threads {share}").and_then(|()| stdin.flush());
                        sent_threads = share;
                    }
                    if stop.load(Ordering::SeqCst) {
                        let _ = Command::new("kill")
                            .args(["-INT", &pid.to_string()])
                            .stderr(Stdio::null())
                            .status();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<ChildEvent>(&line) {
                Ok(ChildEvent::Step(progress)) => {
                    last_step = progress.step;
                    plan_progress.step(index, progress.step);
                    if bar.length() != Some(progress.total) {
                        bar.set_length(progress.total);
                        bar.reset_eta();
                    }
                    bar.set_position(progress.step);
                    bar.set_message(format!(
                        "loss {:.4}, {:.0} tok/s",
                        progress.loss, progress.tokens_per_s
                    ));
                }
                Ok(ChildEvent::Evaluating) => bar.set_message("evaluating"),
                Ok(ChildEvent::Stopped(run)) => stopped = Some(run),
                Err(_) => plan_progress.println(&line),
            }
        }
        let status = child.wait();
        done.store(true, Ordering::SeqCst);
        let _ = watcher.join();
        let errors = errors.join().unwrap_or_default();
        (status, errors)
    });
    bar.finish_and_clear();
    let (status, errors) = status;
    let status = status.context("waiting for a run's child process")?;
    if status.success() {
        return Ok(());
    }
    if let Some(run) = stopped {
        return Err(Stopped::same_command(vec![run]).into());
    }
    if stop.load(Ordering::SeqCst) {
        // A stop that reached the child before its signal handler did (killed while starting):
        // still a stop, resumed from the run's last checkpoint.
        return Err(Stopped::same_command(vec![StoppedRun {
            label: format!("{} (seed {seed})", method.id),
            step: last_step,
            total: plan.preset.steps,
        }])
        .into());
    }
    let tail: Vec<&str> = errors.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(crate::error::StudyError::Failed(format!(
        "the run's process (pid {pid}) exited with {status}:\n{}",
        tail.join("\n")
    )))
}
