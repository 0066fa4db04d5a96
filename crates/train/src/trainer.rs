//! The training loop: mixer → batch plan → samplers → per-token losses → AdamW → feedback.

use std::collections::BTreeMap;
use std::fs::OpenOptions as FileOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use indicatif::{ProgressBar, ProgressStyle};
use mixlab_data::{DomainSampler, DomainStore, SeedStreams, Split};
use mixlab_mixing::{Mixer, StepFeedback};
use mixlab_model::TrainBackend;
use mixlab_model::{GptNeoX, ModelConfig, clip_grad_norm};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::batch_dump::BatchDump;
use crate::checkpoint::{Integrity, check_integrity, list_checkpoints, set_aside};
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::metrics::{
    DomainEval, EvalRecord, EvalTag, MetricsLine, StepTiming, TrainRecord, TrainTag,
};
use crate::optimizer::{DecoupledAdamW, TrainOptimizer};
use crate::options::{DamagedCheckpoint, ResumeReport, RunOptions, RunSummary, StepProgress};
use crate::plan::BatchPlan;
use crate::step;
use crate::summary::{LastEval, SummaryRecord};
use crate::validation::{Validate, ValidationReport};

mod snapshot;

type Optim<B> = TrainOptimizer<GptNeoX<B>, B>;

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
    /// The workers of a data-parallel step (`training.devices`); empty with one device.
    workers: Vec<step::Worker<B>>,
    samplers: Vec<DomainSampler>,
    /// Held while the loop lives: the run directory's writer lock.
    _lock: mixlab_data::lock::DirLock,
    /// [`RunOptions::fail_checkpoint_at`].
    fail_checkpoint_at: Option<u64>,
    /// [`RunOptions::threads`].
    threads: Option<crate::ThreadBudget>,
    /// [`RunOptions::dump_batches`], open.
    dump: Option<BatchDump>,
    plan_rng: ChaCha8Rng,
    plan_seed: u64,
    step: u64,
    tokens_seen: u64,
    cumulative: Vec<u64>,
    metrics_path: PathBuf,
}

/// Trains `config` with `mixer` on `devices`: one device, or with `training.devices` one per
/// worker in that order (the first holds the model, optimizer and checkpoints).
///
/// `mixer` must have been built for `store`'s domains (see [`crate::dataset::mixer_context`]). When the mixer
/// needs a reference model (DoReMi), `reference` is a directory with its safetensors weights.
/// `validate` measures the model every `[eval] interval` steps and after the last one, and
/// whenever a mixer that learns from validation asks (`Mixer::wants_validation`: before step 1
/// and after the steps it names; logged as `"mixer-eval"` lines unless a periodic validation is
/// due at the same step); a config or mixer that needs validation without one is refused
/// before anything is written.
pub fn train<B: TrainBackend>(
    config: &TrainConfig,
    store: DomainStore,
    mixer: Box<dyn Mixer>,
    reference: Option<&Path>,
    validate: Option<&dyn Validate<B::InnerBackend>>,
    devices: &[B::Device],
    options: &RunOptions,
) -> Result<RunSummary> {
    config.validate()?;
    let Some(device) = devices.first() else {
        return Err(TrainError::config("training.devices", "no device given"));
    };
    if devices.len() != config.training.workers() {
        return Err(TrainError::config(
            "training.devices",
            format!(
                "{} devices given for {} workers",
                devices.len(),
                config.training.workers()
            ),
        ));
    }
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
    if mixer.needs_validation() && validate.is_none() {
        return Err(TrainError::config(
            "mixer",
            format!(
                "mixer `{}` learns from validation losses, but this run has no validation",
                mixer.kind()
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

    let seeds = SeedStreams::new(config.training.seed);
    let mut config = config.clone();
    let model = match &config.model.init_from {
        // A resumed run's weights come from its checkpoint: the directory is not read again.
        Some(dir) if !options.resume => {
            let init = crate::init::load_initial::<B>(
                dir,
                &model_config,
                &manifest.tokenizer_sha256,
                config.model.init_sha256.as_deref(),
                device,
            )?;
            // The resolved config records which weights the run started from.
            config.model.init_sha256 = Some(init.sha256);
            init.model
        }
        // The weights are a function of the seed alone, even with other runs in the process.
        _ => model_config.init_seeded::<B>(device, seeds.init)?,
    };
    let config_toml = config.to_toml();
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
    let dump_tail = [
        config.training.micro_batches,
        config.training.micro_batch_size(),
        manifest.seq_len + 1,
    ];
    let workers = if devices.len() > 1 {
        devices
            .iter()
            .map(|d| step::Worker {
                device: d.clone(),
                reference: reference.clone().map(|r| r.to_device(d)),
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut state = Loop {
        config: config.clone(),
        run_dir: run_dir.clone(),
        device: device.clone(),
        model_config,
        model,
        optim,
        mixer,
        reference,
        workers,
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
        threads: None,
        dump: None,
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
                    state.restore(dir)?;
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
        // Before anything is written: an existing dump file refuses the run, not half of it.
        state.dump = options
            .dump_batches
            .as_deref()
            .map(|path| BatchDump::create(path, dump_tail))
            .transpose()?;
        write_atomic(&run_dir.join("config.toml"), &with_commit(&config_toml))?;
        // The first line is a feedback header, so `replay-mixer` can replay this file.
        let header = mixlab_mixing::FeedbackHeader {
            domains: names.clone(),
            token_counts: Some(state.store.manifest().train_tokens()),
            vocab_size: Some(state.store.manifest().vocab_size),
        };
        write_atomic(&metrics_path, &(header.to_json_line() + "\n"))?;
    }
    if let (true, Some(path)) = (options.resume, options.dump_batches.as_deref()) {
        state.dump = Some(BatchDump::resume(path, dump_tail, state.step)?);
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
        let model = self.model.valid();
        let (device, store, settings) = (&self.device, &self.store, &self.config.eval);
        let measure = || validate.validate(&model, device, store, settings);
        match &self.threads {
            Some(budget) => budget.install(measure),
            None => measure(),
        }
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

    /// The loop: one [`Self::train_step`] after another, each logged, validated when due and
    /// checkpointed when due or stopped; then the final model and summary when finished.
    fn run(
        mut self,
        options: &RunOptions,
        validate: Option<&dyn Validate<B::InnerBackend>>,
    ) -> Result<RunSummary> {
        self.fail_checkpoint_at = options.fail_checkpoint_at;
        self.threads = options.threads.clone();
        let total = self.config.training.steps;
        let stop_at = options.max_steps.unwrap_or(total).min(total);
        let bar = self.progress_bar(options);
        let mut feedback = StepFeedback::new(self.store.domain_names().len());
        let mut train_time = Duration::ZERO;
        let mut mixer_time = Duration::ZERO;
        let mut mixer_validation_time = Duration::ZERO;
        let mut last_loss = f64::NAN;
        let mut last_eval = None;
        let start_step = self.step;
        let start_tokens = self.tokens_seen;
        let mut interrupted = false;

        // A mixer that learns from validation (Aioli) may want the untrained model's losses.
        if let Some(validate) = validate.filter(|_| self.step == 0 && self.wants_validation(0)) {
            let t = Instant::now();
            let report = self.validate_and_log(validate, &bar, EvalTag::Mixer)?;
            mixer_validation_time += t.elapsed();
            let t = Instant::now();
            self.observe_validation(0, &report)?;
            mixer_time += t.elapsed();
        }

        while self.step < stop_at {
            let done = match self.threads.clone() {
                Some(budget) => budget.install(|| self.train_step(&mut feedback, &bar))?,
                None => self.train_step(&mut feedback, &bar)?,
            };
            let step = done.step;
            mixer_time += done.mixer_time;
            train_time += done.step_time;
            last_loss = done.loss;
            let eval_due = self.config.eval.interval > 0
                && (step.is_multiple_of(self.config.eval.interval) || step == total);
            // A mixer that learns from validation sees it before the step's line is logged, so
            // that the line's `next_weights` are the weights of the next step. One measurement
            // serves both when a periodic validation is due too (the line keeps type "eval").
            let mixer_due = self.wants_validation(step);
            if let Some(validate) = validate.filter(|_| mixer_due) {
                let kind = if eval_due {
                    EvalTag::Eval
                } else {
                    EvalTag::Mixer
                };
                let t = Instant::now();
                let report = self.validate_and_log(validate, &bar, kind)?;
                if !eval_due {
                    mixer_validation_time += t.elapsed();
                }
                let t = Instant::now();
                self.observe_validation(step, &report)?;
                mixer_time += t.elapsed();
                if eval_due {
                    last_eval = Some(report);
                }
            }
            if step.is_multiple_of(self.config.training.log_interval) || step == total {
                self.log_step(&done, &feedback)?;
            }
            self.report_progress(&done, &bar, options);
            // A periodic validation otherwise follows the step's line, as it always has.
            if let Some(validate) = validate.filter(|_| eval_due && !mixer_due) {
                last_eval = Some(self.validate_and_log(validate, &bar, EvalTag::Eval)?);
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
            self.finish(last_loss, last_eval.as_ref())?;
        }
        Ok(RunSummary {
            run_dir: self.run_dir.clone(),
            steps: self.step,
            finished,
            last_loss,
            last_eval,
            train_time,
            mixer_time,
            mixer_validation_time,
            steps_this_run: self.step - start_step,
            tokens_this_run: self.tokens_seen - start_tokens,
            resume: ResumeReport::default(),
        })
    }

    /// The run's progress bar (hidden unless asked for), in the caller's group if it has one.
    fn progress_bar(&self, options: &RunOptions) -> ProgressBar {
        if !options.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(self.config.training.steps);
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
    }

    /// One optimizer step: the mixer's weights → a batch plan → the micro-batches' losses and
    /// gradients with their per-domain feedback (in `feedback`) → clipping and AdamW → the
    /// mixer observes the feedback. A non-finite loss stops the run with a checkpoint of the
    /// state before the step ([`Self::check_finite`]).
    fn train_step(&mut self, feedback: &mut StepFeedback, bar: &ProgressBar) -> Result<StepDone> {
        let total = self.config.training.steps;
        let mbs = self.config.training.micro_batch_size();
        let micro = self.config.training.micro_batches;
        let seq = self.store.manifest().seq_len;
        let width = seq + 1;
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
        let mut mixer_time = t.elapsed();

        let mut dumped = self.dump.as_ref().map(|_| Vec::new());
        let batches = step::draw_batches(
            &plan,
            &mut self.samplers,
            &mut self.cumulative,
            width,
            &self.device,
            dumped.as_mut(),
        )?;
        let (grads, loss, loss_weights) = if feedback_first {
            // Where the backend can hold every micro-batch's activations, the training forward
            // is kept and serves the measurement too (step::KeptForward); otherwise a forward
            // pass without gradients measures first.
            let one_forward = self.workers.is_empty() && B::holds_all_micro_batches();
            let reference = self.reference.as_ref();
            let (kept, losses) = if one_forward {
                let (kept, losses) = step::forward_and_keep(&self.model, reference, &batches, seq);
                (Some(kept), losses)
            } else {
                (None, step::measure(&self.model, reference, &batches, seq))
            };
            let loss = self.collect_feedback(feedback, &plan, &losses, step);
            self.check_finite(loss, &plan, &cursors_before, word_pos_before, bar)?;
            let t = Instant::now();
            self.mixer.observe(step, feedback)?;
            mixer_time += t.elapsed();
            let loss_weights = self.mixer.loss_weights().map(<[f64]>::to_vec);
            let weights = loss_weights.as_deref();
            let grads = match kept {
                Some(kept) => step::backward_kept(&self.model, kept, &plan, weights, seq),
                None if self.workers.is_empty() => step::accumulate_gradients(
                    &self.model,
                    reference,
                    &batches,
                    &plan,
                    weights,
                    seq,
                    None,
                ),
                None => {
                    step::accumulate_gradients_parallel(
                        &self.model,
                        &self.workers,
                        &batches,
                        &plan,
                        weights,
                        seq,
                        false,
                    )
                    .0
                }
            };
            (grads, loss, loss_weights)
        } else {
            let (grads, losses) = if self.workers.is_empty() {
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
                (grads, sums.read())
            } else {
                let (grads, losses) = step::accumulate_gradients_parallel(
                    &self.model,
                    &self.workers,
                    &batches,
                    &plan,
                    None,
                    seq,
                    true,
                );
                (grads, losses.expect("asked for the losses"))
            };
            let loss = self.collect_feedback(feedback, &plan, &losses, step);
            self.check_finite(loss, &plan, &cursors_before, word_pos_before, bar)?;
            (grads, loss, None)
        };
        drop(batches);
        let (grads, grad_norm) = if self.config.optimizer.grad_clip > 0.0 {
            let (g, n) = clip_grad_norm(&self.model, grads, self.config.optimizer.grad_clip);
            (g, n.norm)
        } else {
            (grads, f64::NAN)
        };
        let lr = self.config.schedule.lr(step, total);
        self.model = self.optim.step(lr, self.model.clone(), grads);

        if !feedback_first {
            let t = Instant::now();
            self.mixer.observe(step, feedback)?;
            mixer_time += t.elapsed();
        }
        self.step = step;
        self.tokens_seen += (micro * mbs * seq) as u64;
        if let (Some(dump), Some(tokens)) = (self.dump.as_mut(), dumped) {
            dump.append(&tokens)?;
        }
        Ok(StepDone {
            step,
            weights,
            plan,
            loss,
            loss_weights,
            grad_norm,
            lr,
            mixer_time,
            step_time: step_start.elapsed(),
            tokens: (micro * mbs * seq) as u64,
        })
    }

    /// The step's line of `metrics.jsonl`.
    fn log_step(&self, done: &StepDone, feedback: &StepFeedback) -> Result<()> {
        let names = self.store.domain_names();
        let line = TrainRecord {
            cumulative_sequences: by_name(&names, &self.cumulative),
            domain_loss: feedback
                .domains()
                .iter()
                .enumerate()
                .filter_map(|(i, f)| f.loss_mean().map(|m| (names[i].clone(), m)))
                .collect(),
            domains_drawn: done
                .plan
                .domains
                .iter()
                .map(|mb| mb.iter().map(|&d| names[d].clone()).collect())
                .collect(),
            // Sums and counts as the mixer saw them: `replay-mixer` reads these lines.
            feedback: mixlab_mixing::FeedbackRecord::from_step(
                done.step,
                feedback,
                self.mixer.domains(),
            )
            .feedback,
            grad_norm: done.grad_norm.is_finite().then_some(done.grad_norm),
            loss: done.loss,
            loss_weights: done.loss_weights.as_deref().map(|lw| by_name(&names, lw)),
            lr: done.lr,
            mixer_internals: self.mixer.internals(),
            next_weights: by_name(&names, self.mixer.weights()),
            step: done.step,
            timing: StepTiming {
                mixer_s: done.mixer_time.as_secs_f64(),
                step_s: done.step_time.as_secs_f64(),
                tokens_per_s: done.tokens_per_s(),
            },
            tokens: self.tokens_seen,
            kind: TrainTag::Train,
            weights: by_name(&names, &done.weights),
        };
        self.append_metrics(&MetricsLine::Train(Box::new(line)))
    }

    /// The progress bar's position and message, and the caller's step hook.
    fn report_progress(&self, done: &StepDone, bar: &ProgressBar, options: &RunOptions) {
        let tokens_per_s = done.tokens_per_s();
        bar.set_position(done.step);
        bar.set_message(format!("loss {:.4}, {tokens_per_s:.0} tok/s", done.loss));
        if let Some(hook) = &options.on_step {
            (hook.0)(&StepProgress {
                step: done.step,
                total: self.config.training.steps,
                loss: done.loss,
                tokens_per_s,
                step_seconds: done.step_time.as_secs_f64(),
            });
        }
    }

    /// Whether the mixer asks for validation losses after `step` (only a mixer that learns
    /// from them is asked).
    fn wants_validation(&self, step: u64) -> bool {
        self.mixer.needs_validation() && self.mixer.wants_validation(step)
    }

    /// Hands the mixer the per-domain mean validation losses of `report`, in domain order
    /// (`None` for a domain without validation data).
    fn observe_validation(&mut self, step: u64, report: &ValidationReport) -> Result<()> {
        let losses: Vec<Option<f64>> = self
            .store
            .domain_names()
            .iter()
            .map(|name| {
                report
                    .domains
                    .iter()
                    .find(|d| &d.domain == name)
                    .map(|d| d.mean_nll)
            })
            .collect();
        self.mixer.observe_validation(step, &losses)?;
        Ok(())
    }

    /// Validates the model now, logs the result to `metrics.jsonl` (as a line of type `kind`)
    /// and, for a periodic validation, to the progress bar.
    fn validate_and_log(
        &self,
        validate: &dyn Validate<B::InnerBackend>,
        bar: &ProgressBar,
        kind: EvalTag,
    ) -> Result<ValidationReport> {
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
            step: self.step,
            token_weighted_loss: report.token_weighted_nll,
            token_weighted_perplexity: report.token_weighted_perplexity,
            kind,
        }))?;
        if kind == EvalTag::Eval {
            bar.println(format!(
                "step {}: val mean perplexity {:.3} (token-weighted {:.3})",
                self.step, report.mean_perplexity, report.token_weighted_perplexity
            ));
        }
        Ok(report)
    }

    /// A finished run's outputs: `final/` (weights, config, tokenizer), the mixer's output table
    /// if it has one, and `summary.json`.
    fn finish(&self, last_loss: f64, last_eval: Option<&ValidationReport>) -> Result<()> {
        let names = self.store.domain_names();
        let final_dir = self.run_dir.join("final");
        self.model.valid().save_pretrained(&final_dir)?;
        let tok = self.store.tokenizer_path();
        std::fs::copy(&tok, final_dir.join("tokenizer.json"))
            .map_err(|e| TrainError::io(&tok, e))?;
        if let Some(table) = self.mixer.output_table() {
            let path = self.run_dir.join("mixer-output-weights.toml");
            write_atomic(
                &path,
                &table.to_toml_string(&format!("weights produced by run `{}`", self.config.name)),
            )?;
        }
        let summary = SummaryRecord {
            cumulative_sequences: by_name(&names, &self.cumulative),
            final_train_loss: last_loss.is_finite().then_some(last_loss),
            final_weights: by_name(&names, self.mixer.policy()),
            last_eval: last_eval.map(|r| LastEval {
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
        )
    }
}

/// What one optimizer step did, for its metrics line and progress.
struct StepDone {
    /// The step's number (1-based).
    step: u64,
    /// The sampling weights the step was planned with.
    weights: Vec<f64>,
    /// Which domain each micro-batch (or sequence) came from.
    plan: BatchPlan,
    /// Mean training loss per token.
    loss: f64,
    /// The loss weights of a mixer that has them (DoReMi's proxy).
    loss_weights: Option<Vec<f64>>,
    /// Global gradient norm before clipping (NaN without clipping).
    grad_norm: f64,
    /// The learning rate used.
    lr: f64,
    /// Time inside the mixer (weights, plan, observe).
    mixer_time: Duration,
    /// Wall time of the whole step.
    step_time: Duration,
    /// Tokens trained on.
    tokens: u64,
}

impl StepDone {
    fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.step_time.as_secs_f64().max(1e-12)
    }
}
