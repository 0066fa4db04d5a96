//! What one invocation of the training loop is given besides the config ([`RunOptions`]), what
//! it reports after each step ([`StepProgress`]) and what it returns ([`RunSummary`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::validation::ValidationReport;

/// Options of one invocation (not part of the run's identity).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this step with a checkpoint (to split a run, and in tests).
    pub max_steps: Option<u64>,
    /// Continue from the newest complete checkpoint in the run directory.
    pub resume: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Set by a signal handler: checkpoint after the current step and stop.
    pub stop: Option<Arc<AtomicBool>>,
    /// Draw the progress bar in this group, so that several runs of one process (`reproduce
    /// --jobs`) each keep a line of their own instead of overwriting one another.
    pub progress_group: Option<indicatif::MultiProgress>,
    /// Called after every completed step (a parent process draws a child's progress from it).
    pub on_step: Option<StepHook>,
    /// Fault injection for tests: the checkpoint of this step fails as on a full disk (half of
    /// its model file is written, then the write fails with the OS's ENOSPC).
    pub fail_checkpoint_at: Option<u64>,
    /// Write the token ids of every micro-batch of every step to this `.npy` file (see
    /// [`crate::batch_dump`]), so another implementation can replay the run exactly. A fresh
    /// run refuses an existing file; a resumed run continues the file it started.
    pub dump_batches: Option<PathBuf>,
    /// Run each step and validation with this many compute threads, read as each one starts
    /// (a parent process raises it when its other runs are done); `None`: the process's pool.
    pub threads: Option<crate::ThreadBudget>,
}

/// Where a run stands after a step: what [`RunOptions::on_step`] receives.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepProgress {
    /// Steps completed (including before a resume).
    pub step: u64,
    /// Steps of the whole run.
    pub total: u64,
    /// Mean training loss of this step.
    pub loss: f64,
    /// Tokens per second of this step.
    pub tokens_per_s: f64,
    /// Wall time of this step: batch plan, data, forward, backward, optimizer and mixer
    /// (metrics lines, validation and checkpoints excluded).
    pub step_seconds: f64,
}

/// A callback run after each step.
#[derive(Clone)]
pub struct StepHook(pub Arc<dyn Fn(&StepProgress) + Send + Sync>);

impl std::fmt::Debug for StepHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepHook")
    }
}

/// What a finished (or stopped) invocation did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Steps completed in total (including before a resume).
    pub steps: u64,
    /// Whether the run reached `training.steps`.
    pub finished: bool,
    /// Training loss of the last step.
    pub last_loss: f64,
    /// The last validation, if any.
    pub last_eval: Option<ValidationReport>,
    /// Wall time of the training steps of this invocation (evaluation and checkpoints excluded).
    pub train_time: Duration,
    /// Time inside the mixer (weights, plan, observe) during this invocation.
    pub mixer_time: Duration,
    /// Wall time of the validations a mixer asked for that no periodic validation made anyway
    /// (Aioli's probe ends), during this invocation: the cost of learning from validation.
    pub mixer_validation_time: Duration,
    /// Steps run in this invocation.
    pub steps_this_run: u64,
    /// Tokens trained on in this invocation.
    pub tokens_this_run: u64,
    /// Where a `--resume` continued from, and the damaged checkpoints it passed over.
    pub resume: ResumeReport,
}

/// What a `--resume` found in the run's checkpoints.
#[derive(Debug, Clone, Default)]
pub struct ResumeReport {
    /// The step of the checkpoint the run continued from (`None` without `--resume`).
    pub resumed_from: Option<u64>,
    /// Newer checkpoints that were damaged, newest first: set aside and not used.
    pub set_aside: Vec<DamagedCheckpoint>,
}

/// A checkpoint whose bytes were not as written.
#[derive(Debug, Clone)]
pub struct DamagedCheckpoint {
    /// Its step.
    pub step: u64,
    /// Where it was moved (`checkpoints/damaged-step-N`).
    pub moved_to: PathBuf,
    /// What was wrong, naming the file.
    pub reason: String,
}
