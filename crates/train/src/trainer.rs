//! The training loop: mixer → batch plan → samplers → per-token losses → AdamW → feedback.

use std::collections::BTreeMap;
use std::fs::OpenOptions as FileOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use indicatif::{ProgressBar, ProgressStyle};
use mixlab_data::hash::splitmix64 as mix;
use mixlab_data::{DomainSampler, DomainStore, OpenOptions, PrepareConfig, Split, TokenizerSource};
use mixlab_mixing::{DomainSet, Mixer, MixerContext, StepFeedback};
use mixlab_model::TrainBackend;
use mixlab_model::{GptNeoX, ModelConfig, clip_grad_norm};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{Integrity, check_integrity, list_checkpoints, set_aside};
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::metrics::{
    DomainEval, EvalRecord, EvalTag, MetricsLine, StepTiming, TrainRecord, TrainTag,
};
use crate::optimizer::{DecoupledAdamW, TrainOptimizer};
use crate::plan::BatchPlan;
use crate::step;
use crate::summary::{LastEval, SummaryRecord};
use crate::validation::{Validate, ValidationReport};

mod snapshot;

type Optim<B> = TrainOptimizer<GptNeoX<B>, B>;

/// Named random streams split from the run's seed, so that changing one consumer (say, the
/// model size, which draws more init numbers) never shifts the data order or the batch plans.
#[derive(Debug, Clone, Copy)]
pub struct SeedStreams {
    /// Model initialisation.
    pub init: u64,
    /// Per-domain data order.
    pub data: u64,
    /// Batch plans (which domain each micro-batch or sequence comes from).
    pub plan: u64,
}

impl SeedStreams {
    /// The streams of `seed`.
    pub fn new(seed: u64) -> Self {
        SeedStreams {
            init: mix(seed ^ 0x1111),
            data: mix(seed ^ 0x2222),
            plan: mix(seed ^ 0x3333),
        }
    }
}

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

/// Burn backends keep one random generator per process, and `Backend::seed` replaces it: two
/// runs initialising at once in one process would draw from each other's stream. Holding this
/// lock from seeding to the last initial weight keeps every run's weights a function of its seed.
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// Opens the run's dataset, preparing it first when it is missing and the config says how.
pub fn open_dataset(config: &TrainConfig) -> Result<DomainStore> {
    let dir = &config.data.dataset;
    if !dir.join(mixlab_data::manifest::MANIFEST_FILE).is_file() {
        let Some(spec) = &config.data.prepare else {
            return Err(TrainError::config(
                "data.dataset",
                format!(
                    "{} is not a prepared dataset and [data.prepare] is absent",
                    dir.display()
                ),
            ));
        };
        if let Some(synthetic) = &spec.synthetic
            && !spec.corpus.exists()
        {
            tracing::info!(corpus = %spec.corpus.display(), seed = synthetic.seed, scale = synthetic.scale, "generating the built-in synthetic corpus");
            let generator = mixlab_data::synthetic::SyntheticConfig {
                seed: synthetic.seed,
                scale: synthetic.scale,
                ..Default::default()
            };
            mixlab_data::synthetic::generate_corpus(&generator, &spec.corpus, false)?;
        }
        tracing::info!(dataset = %dir.display(), corpus = %spec.corpus.display(), "preparing dataset on first use");
        let tokenizer: TokenizerSource = spec.tokenizer.parse()?;
        let mut prep = PrepareConfig::new(
            vec![spec.corpus.clone()],
            dir.clone(),
            tokenizer,
            spec.seq_len,
        );
        prep.progress = true;
        mixlab_data::prepare_dataset(&prep)?;
    }
    Ok(DomainStore::open(dir, &OpenOptions::default())?)
}

/// The mixer context of a dataset: its domains, training token counts and vocabulary.
pub fn mixer_context(store: &DomainStore) -> Result<MixerContext> {
    let names = store.domain_names();
    let domains = DomainSet::new(names.iter().map(String::as_str))?;
    let tokens = store.manifest().train_tokens();
    let counts = names.iter().map(|n| tokens[n]).collect();
    Ok(MixerContext::new(domains)
        .with_token_counts(counts)?
        .with_vocab_size(store.manifest().vocab_size))
}

/// Per-domain values keyed by domain name, as the run files store them.
fn by_name<T: Copy>(names: &[String], values: &[T]) -> BTreeMap<String, T> {
    names.iter().cloned().zip(values.iter().copied()).collect()
}

struct Loop<B: TrainBackend> {
    config: TrainConfig,
    run_dir: PathBuf,
    device: B::Device,
    store: DomainStore,
    model_config: ModelConfig,
    model: GptNeoX<B>,
    optim: Optim<B>,
    mixer: Box<dyn Mixer>,
    reference: Option<GptNeoX<B::InnerBackend>>,
    samplers: Vec<DomainSampler>,
    /// Held while the loop lives: the run directory's writer lock.
    _lock: mixlab_data::lock::DirLock,
    /// [`RunOptions::fail_checkpoint_at`].
    fail_checkpoint_at: Option<u64>,
    plan_rng: ChaCha8Rng,
    plan_seed: u64,
    step: u64,
    tokens_seen: u64,
    cumulative: Vec<u64>,
    metrics_path: PathBuf,
}

/// Trains `config` with `mixer` on `device`.
///
/// `mixer` must have been built for `store`'s domains (see [`mixer_context`]). When the mixer
/// needs a reference model (DoReMi), `reference` is a directory with its safetensors weights.
/// `validate` measures the model every `[eval] interval` steps and after the last one; a config
/// that asks for validation without one is refused before anything is written.
pub fn train<B: TrainBackend>(
    config: &TrainConfig,
    store: DomainStore,
    mixer: Box<dyn Mixer>,
    reference: Option<&Path>,
    validate: Option<&dyn Validate<B::InnerBackend>>,
    device: &B::Device,
    options: &RunOptions,
) -> Result<RunSummary> {
    config.validate()?;
    if config.eval.interval > 0 && validate.is_none() {
        return Err(TrainError::config(
            "eval.interval",
            format!(
                "is {} but no validation was supplied (set it to 0 for a run without validation)",
                config.eval.interval
            ),
        ));
    }
    let names = store.domain_names();
    if mixer.domains().names() != names.as_slice() {
        return Err(TrainError::config(
            "mixer",
            format!(
                "mixer domains [{}] differ from the dataset's [{}]",
                mixer.domains().names().join(", "),
                names.join(", ")
            ),
        ));
    }
    let manifest = store.manifest().clone();
    let model_config = config
        .model
        .resolve(manifest.vocab_size, manifest.seq_len)?;
    let reference = match (mixer.needs_reference_model(), reference) {
        (true, Some(dir)) => {
            let m = GptNeoX::<B::InnerBackend>::load_pretrained(dir, device)?;
            if m.config().vocab_size != model_config.vocab_size {
                return Err(TrainError::config(
                    "reference_model",
                    format!(
                        "{} has vocabulary {}, the dataset {}",
                        dir.display(),
                        m.config().vocab_size,
                        model_config.vocab_size
                    ),
                ));
            }
            Some(m)
        }
        (true, None) => {
            return Err(TrainError::config(
                "reference_model",
                format!("mixer `{}` needs a reference model directory", mixer.kind()),
            ));
        }
        (false, _) => None,
    };

    let run_dir = config.out_dir.clone();
    // One writer per run directory, for the whole run: a second `train` (even with --resume)
    // or `reproduce` on it is refused before it reads or writes anything.
    let lock = mixlab_data::lock::DirLock::acquire(&run_dir)?;
    let ckpt_root = run_dir.join("checkpoints");
    let metrics_path = run_dir.join("metrics.jsonl");
    let config_toml = config.to_toml();

    let seeds = SeedStreams::new(config.training.seed);
    let model = {
        let _rng = BACKEND_RNG
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        B::seed(device, seeds.init);
        model_config.init::<B>(device)?
    };
    let optim = DecoupledAdamW::new(
        config.optimizer.beta1 as f32,
        config.optimizer.beta2 as f32,
        config.optimizer.epsilon as f32,
        config.optimizer.weight_decay as f32,
    )
    .init::<B, GptNeoX<B>>();
    let samplers = names
        .iter()
        .map(|n| store.sampler(n, Split::Train, seeds.data))
        .collect::<mixlab_data::Result<Vec<_>>>()?;
    let k = names.len();
    let mut state = Loop {
        config: config.clone(),
        run_dir: run_dir.clone(),
        device: device.clone(),
        model_config,
        model,
        optim,
        mixer,
        reference,
        samplers,
        plan_rng: ChaCha8Rng::seed_from_u64(seeds.plan),
        plan_seed: seeds.plan,
        step: 0,
        tokens_seen: 0,
        cumulative: vec![0; k],
        metrics_path: metrics_path.clone(),
        store,
        _lock: lock,
        fail_checkpoint_at: None,
    };

    let existing = list_checkpoints(&ckpt_root)?;
    let mut resume = ResumeReport::default();
    if options.resume {
        if existing.is_empty() {
            return Err(TrainError::checkpoint(
                &ckpt_root,
                "--resume given but there is no complete checkpoint",
            ));
        }
        // The newest checkpoint whose bytes are as written; damaged ones are set aside, named.
        for (step, dir) in existing.iter().rev() {
            match check_integrity(dir) {
                Integrity::Intact => {
                    state.restore(dir, &config_toml)?;
                    resume.resumed_from = Some(*step);
                    break;
                }
                Integrity::Damaged(reason) => {
                    let moved_to = set_aside(dir)?;
                    tracing::warn!(
                        "checkpoint step-{step} is damaged ({reason}); set aside as {}, falling back to the checkpoint before it",
                        moved_to.display()
                    );
                    resume.set_aside.push(DamagedCheckpoint {
                        step: *step,
                        moved_to,
                        reason: reason.to_string(),
                    });
                }
            }
        }
        if resume.resumed_from.is_none() {
            let reasons: Vec<String> = resume
                .set_aside
                .iter()
                .map(|d| format!("step-{}: {}", d.step, d.reason))
                .collect();
            return Err(TrainError::checkpoint(
                &ckpt_root,
                format!(
                    "--resume given but every checkpoint is damaged (set aside as damaged-step-N): {}",
                    reasons.join("; ")
                ),
            ));
        }
    } else {
        if !existing.is_empty() || metrics_path.exists() {
            return Err(TrainError::config(
                "out_dir",
                format!(
                    "{} already holds a run: pass --resume to continue it or choose another --out",
                    run_dir.display()
                ),
            ));
        }
        write_atomic(&run_dir.join("config.toml"), &with_commit(&config_toml))?;
        // The first line is a feedback header, so `replay-mixer` can replay this file.
        let header = mixlab_mixing::FeedbackHeader {
            domains: names.clone(),
            token_counts: Some(state.store.manifest().train_tokens()),
            vocab_size: Some(state.store.manifest().vocab_size),
        };
        write_atomic(&metrics_path, &(header.to_json_line() + "\n"))?;
    }
    let mut summary = state.run(options, validate)?;
    summary.resume = resume;
    Ok(summary)
}

/// The resolved config with the git commit it ran at, as a comment.
fn with_commit(toml: &str) -> String {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    format!("# mixlab git commit: {commit}\n{toml}")
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    Ok(mixlab_atomic::write_file(path, text)?)
}

impl<B: TrainBackend> Loop<B> {
    fn append_metrics(&self, line: &MetricsLine) -> Result<()> {
        let mut f = FileOptions::new()
            .append(true)
            .open(&self.metrics_path)
            .map_err(|e| TrainError::io(&self.metrics_path, e))?;
        writeln!(f, "{}", line.to_json_line()).map_err(|e| TrainError::io(&self.metrics_path, e))
    }

    fn evaluate(&self, validate: &dyn Validate<B::InnerBackend>) -> Result<ValidationReport> {
        validate
            .validate(
                &self.model.valid(),
                &self.device,
                &self.store,
                &self.config.eval,
            )
            .map_err(|source| TrainError::Validation {
                step: self.step,
                source,
            })
    }

    /// Fills `feedback` with the step's per-domain losses (and excess losses) from `losses`;
    /// returns the step's mean loss per token (not finite when any micro-batch's loss is not).
    fn collect_feedback(
        &self,
        feedback: &mut StepFeedback,
        plan: &BatchPlan,
        losses: &step::StepLosses,
        step: u64,
    ) -> f64 {
        let seq = self.store.manifest().seq_len;
        feedback.clear();
        let mut step_nll = 0.0;
        let mut sequences = 0;
        for domains in &plan.domains {
            let mbs = domains.len();
            let range = sequences..sequences + mbs;
            sequences += mbs;
            let mb_sums = &losses.nll[range.clone()];
            let mb_sum: f64 = mb_sums.iter().sum();
            step_nll += mb_sum;
            match self.config.training.granularity_at(step) {
                crate::plan::Granularity::MicroBatch => {
                    feedback.add_loss(
                        domains[0],
                        mb_sum / (mbs * seq) as f64,
                        mbs as u64,
                        (mbs * seq) as u64,
                    );
                }
                crate::plan::Granularity::Sequence => {
                    for (&d, &s) in domains.iter().zip(mb_sums) {
                        feedback.add_loss(d, s / seq as f64, 1, seq as u64);
                    }
                }
            }
            if let Some(excess) = &losses.excess {
                for (&d, &e) in domains.iter().zip(&excess[range]) {
                    feedback.add_excess_loss(d, e, seq as u64);
                }
            }
        }
        step_nll / (sequences * seq) as f64
    }

    /// Stops the run when step `step + 1`'s loss is not finite. Model, optimizer and mixer are
    /// untouched by the step at this point; only the data cursors and the plan stream moved, so
    /// they are saved as they were before it, and the error names the checkpoint.
    fn check_finite(
        &self,
        loss_value: f64,
        plan: &BatchPlan,
        cursors_before: &[mixlab_data::SamplerCursor],
        word_pos_before: u128,
        bar: &ProgressBar,
    ) -> Result<()> {
        if loss_value.is_finite() {
            return Ok(());
        }
        let names = self.store.domain_names();
        let mut drawn: Vec<&str> = plan
            .domains
            .iter()
            .map(|mb| names[mb[0]].as_str())
            .collect();
        drawn.dedup();
        let ckpt = self.save_checkpoint(cursors_before, word_pos_before)?;
        bar.abandon();
        Err(TrainError::NonFiniteLoss {
            step: self.step + 1,
            loss: loss_value,
            domains: drawn.join(", "),
            checkpoint: ckpt.display().to_string(),
        })
    }

    fn run(
        mut self,
        options: &RunOptions,
        validate: Option<&dyn Validate<B::InnerBackend>>,
    ) -> Result<RunSummary> {
        self.fail_checkpoint_at = options.fail_checkpoint_at;
        let total = self.config.training.steps;
        let stop_at = options.max_steps.unwrap_or(total).min(total);
        let names: Vec<String> = self.store.domain_names();
        let k = names.len();
        let mbs = self.config.training.micro_batch_size();
        let micro = self.config.training.micro_batches;
        let seq = self.store.manifest().seq_len;
        let width = seq + 1;
        let bar = if options.progress {
            let bar = ProgressBar::new(total);
            let bar = match &options.progress_group {
                Some(group) => group.add(bar),
                None => bar,
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} [{elapsed_precise}] {wide_bar} step {pos}/{len} ({per_sec}, ETA {eta}) {msg}",
                )
                .expect("valid template"),
            );
            bar.set_prefix(self.config.name.clone());
            bar.set_position(self.step);
            bar
        } else {
            ProgressBar::hidden()
        };
        let mut feedback = StepFeedback::new(k);
        let mut train_time = Duration::ZERO;
        let mut mixer_time = Duration::ZERO;
        let mut last_loss = f64::NAN;
        let mut last_eval = None;
        let start_step = self.step;
        let start_tokens = self.tokens_seen;
        let mut interrupted = false;

        while self.step < stop_at {
            let step = self.step + 1;
            let step_start = Instant::now();
            // The last good state, in case this step's loss is not finite.
            let cursors_before: Vec<_> = self.samplers.iter().map(|s| s.cursor()).collect();
            let word_pos_before = self.plan_rng.get_word_pos();

            let t = Instant::now();
            let weights = self.mixer.weights().to_vec();
            // A mixer with loss weights (DoReMi's proxy) weights step t with what it learns
            // from step t itself: its feedback is measured first, without gradients, and
            // observed before the gradient pass (DoReMi's Algorithm 1 trains θ_t on
            // L(θ_{t−1}, α_t), and the reference code updates α before the weighted loss).
            let feedback_first = self.mixer.loss_weights().is_some();
            let plan = BatchPlan::draw(
                &weights,
                micro,
                mbs,
                self.config.training.granularity_at(step),
                &mut self.plan_rng,
            );
            let mut step_mixer_time = t.elapsed();

            let batches = step::draw_batches(
                &plan,
                &mut self.samplers,
                &mut self.cumulative,
                width,
                &self.device,
            )?;
            let (grads, loss_value, loss_weights) = if feedback_first {
                let losses = step::measure(&self.model, self.reference.as_ref(), &batches, seq);
                let loss_value = self.collect_feedback(&mut feedback, &plan, &losses, step);
                self.check_finite(loss_value, &plan, &cursors_before, word_pos_before, &bar)?;
                let t = Instant::now();
                self.mixer.observe(step, &feedback)?;
                step_mixer_time += t.elapsed();
                let loss_weights = self.mixer.loss_weights().map(<[f64]>::to_vec);
                let grads = step::accumulate_gradients(
                    &self.model,
                    self.reference.as_ref(),
                    &batches,
                    &plan,
                    loss_weights.as_deref(),
                    seq,
                    None,
                );
                (grads, loss_value, loss_weights)
            } else {
                let mut sums = step::DeviceSums::new();
                let grads = step::accumulate_gradients(
                    &self.model,
                    self.reference.as_ref(),
                    &batches,
                    &plan,
                    None,
                    seq,
                    Some(&mut sums),
                );
                let losses = sums.read();
                let loss_value = self.collect_feedback(&mut feedback, &plan, &losses, step);
                self.check_finite(loss_value, &plan, &cursors_before, word_pos_before, &bar)?;
                (grads, loss_value, None)
            };
            drop(batches);
            let (grads, norm) = if self.config.optimizer.grad_clip > 0.0 {
                let (g, n) = clip_grad_norm(&self.model, grads, self.config.optimizer.grad_clip);
                (g, n.norm)
            } else {
                (grads, f64::NAN)
            };
            let lr = self.config.schedule.lr(step, total);
            self.model = self.optim.step(lr, self.model.clone(), grads);

            if !feedback_first {
                let t = Instant::now();
                self.mixer.observe(step, &feedback)?;
                step_mixer_time += t.elapsed();
            }
            mixer_time += step_mixer_time;
            self.step = step;
            self.tokens_seen += (micro * mbs * seq) as u64;
            last_loss = loss_value;
            let step_time = step_start.elapsed();
            train_time += step_time;

            if step.is_multiple_of(self.config.training.log_interval) || step == total {
                let line = TrainRecord {
                    cumulative_sequences: by_name(&names, &self.cumulative),
                    domain_loss: feedback
                        .domains()
                        .iter()
                        .enumerate()
                        .filter_map(|(i, f)| f.loss_mean().map(|m| (names[i].clone(), m)))
                        .collect(),
                    domains_drawn: plan
                        .domains
                        .iter()
                        .map(|mb| mb.iter().map(|&d| names[d].clone()).collect())
                        .collect(),
                    // Sums and counts as the mixer saw them: `replay-mixer` reads these lines.
                    feedback: mixlab_mixing::FeedbackRecord::from_step(
                        step,
                        &feedback,
                        self.mixer.domains(),
                    )
                    .feedback,
                    grad_norm: norm.is_finite().then_some(norm),
                    loss: loss_value,
                    loss_weights: loss_weights.as_deref().map(|lw| by_name(&names, lw)),
                    lr,
                    mixer_internals: self.mixer.internals(),
                    next_weights: by_name(&names, self.mixer.weights()),
                    step,
                    timing: StepTiming {
                        mixer_s: step_mixer_time.as_secs_f64(),
                        step_s: step_time.as_secs_f64(),
                        tokens_per_s: (micro * mbs * seq) as f64
                            / step_time.as_secs_f64().max(1e-12),
                    },
                    tokens: self.tokens_seen,
                    kind: TrainTag::Train,
                    weights: by_name(&names, &weights),
                };
                self.append_metrics(&MetricsLine::Train(Box::new(line)))?;
            }
            let tokens_per_s = (micro * mbs * seq) as f64 / step_time.as_secs_f64().max(1e-12);
            bar.set_position(step);
            bar.set_message(format!("loss {loss_value:.4}, {tokens_per_s:.0} tok/s"));
            if let Some(hook) = &options.on_step {
                (hook.0)(&StepProgress {
                    step,
                    total,
                    loss: loss_value,
                    tokens_per_s,
                    step_seconds: step_time.as_secs_f64(),
                });
            }

            let eval_due = self.config.eval.interval > 0
                && (step.is_multiple_of(self.config.eval.interval) || step == total);
            if let Some(validate) = validate.filter(|_| eval_due) {
                let report = self.evaluate(validate)?;
                let domains = report
                    .domains
                    .iter()
                    .map(|d| {
                        let eval = DomainEval {
                            loss: d.mean_nll,
                            perplexity: d.perplexity,
                            tokens: d.tokens,
                        };
                        (d.domain.clone(), eval)
                    })
                    .collect();
                self.append_metrics(&MetricsLine::Eval(EvalRecord {
                    domains,
                    mean_loss: report.mean_nll,
                    mean_perplexity: report.mean_perplexity,
                    split: "val".to_owned(),
                    step,
                    token_weighted_loss: report.token_weighted_nll,
                    token_weighted_perplexity: report.token_weighted_perplexity,
                    kind: EvalTag::Eval,
                }))?;
                bar.println(format!(
                    "step {step}: val mean perplexity {:.3} (token-weighted {:.3})",
                    report.mean_perplexity, report.token_weighted_perplexity
                ));
                last_eval = Some(report);
            }
            let stop_requested = options
                .stop
                .as_ref()
                .is_some_and(|f| f.load(Ordering::SeqCst));
            let ckpt_due = self.config.checkpoint.interval > 0
                && step.is_multiple_of(self.config.checkpoint.interval);
            if ckpt_due || step == stop_at || stop_requested {
                self.checkpoint_now()?;
            }
            if stop_requested {
                interrupted = true;
                tracing::warn!(step, "stop requested: checkpoint written, exiting");
                break;
            }
        }
        bar.finish_and_clear();
        let finished = self.step >= total && !interrupted;
        if finished {
            let final_dir = self.run_dir.join("final");
            self.model.valid().save_pretrained(&final_dir)?;
            let tok = self.store.tokenizer_path();
            std::fs::copy(&tok, final_dir.join("tokenizer.json"))
                .map_err(|e| TrainError::io(&tok, e))?;
            if let Some(table) = self.mixer.output_table() {
                let path = self.run_dir.join("mixer-output-weights.toml");
                write_atomic(
                    &path,
                    &table
                        .to_toml_string(&format!("weights produced by run `{}`", self.config.name)),
                )?;
            }
            let summary = SummaryRecord {
                cumulative_sequences: by_name(&names, &self.cumulative),
                final_train_loss: last_loss.is_finite().then_some(last_loss),
                final_weights: by_name(&names, self.mixer.weights()),
                last_eval: last_eval.as_ref().map(|r| LastEval {
                    domains: r
                        .domains
                        .iter()
                        .map(|d| (d.domain.clone(), d.perplexity))
                        .collect(),
                    mean_perplexity: r.mean_perplexity,
                    token_weighted_perplexity: r.token_weighted_perplexity,
                }),
                name: self.config.name.clone(),
                steps: self.step,
                tokens: self.tokens_seen,
            };
            write_atomic(
                &self.run_dir.join("summary.json"),
                &summary.to_json_pretty(),
            )?;
        }
        Ok(RunSummary {
            run_dir: self.run_dir.clone(),
            steps: self.step,
            finished,
            last_loss,
            last_eval,
            train_time,
            mixer_time,
            steps_this_run: self.step - start_step,
            tokens_this_run: self.tokens_seen - start_tokens,
            resume: ResumeReport::default(),
        })
    }
}
