//! `train`: one training run from a TOML config.

use std::path::PathBuf;

use anyhow::Result;
use mixlab_model::DeviceSpec;
use mixlab_train::{RunOptions, RunSummary, TrainConfig};

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run's TOML config (see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Run directory (overrides `out_dir` of the config).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from the newest complete checkpoint of the run directory.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this step with a checkpoint (continue later with --resume).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// `cpu`, `tch-cpu` (a build with `--features tch`), `cuda` or `cuda:N` (overrides
    /// `training.device`).
    #[arg(long, conflicts_with = "devices")]
    pub device: Option<DeviceSpec>,
    /// Data parallelism on one machine: a comma-separated list of devices (`cuda:0,cuda:1`),
    /// one worker each, sharing every step's micro-batches; the first holds the model
    /// (overrides `training.device` and `training.devices`). `cpu,cpu` runs two workers as
    /// threads on the CPU: for tests, not speed.
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<DeviceSpec>>,
    /// Reference model directory (safetensors + config.json) for mixers that need one (DoReMi).
    #[arg(long)]
    pub reference_model: Option<PathBuf>,
    /// Start from the weights of this HF GPT-NeoX directory (a run's `final/`, a Pythia
    /// download) instead of a random initialisation (overrides `model.init_from`).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Write the token ids of every micro-batch of every step to this `.npy` file
    /// ([steps, micro-batches, sequences, seq_len + 1], uint32), so another implementation can
    /// replay the run (`benches/pytorch_reference.py`).
    #[arg(long)]
    pub dump_batches: Option<PathBuf>,
}

/// Runs one config with the built-in mixers, on the device it names.
pub fn run_config(
    config: &TrainConfig,
    options: &RunOptions,
    reference: Option<&std::path::Path>,
) -> Result<RunSummary> {
    Ok(mixlab_study::run::train_run(
        config,
        options,
        reference,
        &crate::mixers::registry(),
    )?)
}

/// Runs `train`.
pub fn run(args: Args) -> Result<()> {
    let mut config = TrainConfig::load(&args.config)?;
    if let Some(out) = args.out {
        config.out_dir = out;
    }
    if let Some(device) = args.device {
        config.training.device = device;
    }
    if let Some(devices) = args.devices {
        if let Some(first) = devices.first() {
            config.training.device = *first;
        }
        config.training.devices = devices;
    }
    if let Some(dir) = args.init_from {
        config.model.init_from = Some(dir);
    }
    config.validate()?;
    let options = RunOptions {
        max_steps: args.max_steps,
        resume: args.resume,
        progress: true,
        stop: Some(crate::stop::stop_flag()?),
        progress_group: None,
        on_step: None,
        fail_checkpoint_at: None,
        dump_batches: args.dump_batches,
        // On burn's CPU backend the steps run inside a pool of the process's thread count, so
        // that the kernels' parallel work starts on a pool thread instead of handing every
        // operation from this thread to the pool and back (two context switches each); the
        // same numbers at any count (tested). A GPU backend keeps this thread (its streams
        // follow the thread that queues the work), as under `reproduce`.
        threads: (config.training.device == DeviceSpec::Cpu && config.training.devices.len() <= 1)
            .then(mixlab_train::ThreadBudget::global),
    };
    let summary = run_config(&config, &options, args.reference_model.as_deref())?;
    if let Some(step) = summary.resume.resumed_from
        && !summary.resume.set_aside.is_empty()
    {
        for damaged in &summary.resume.set_aside {
            eprintln!(
                "checkpoint step-{} was damaged and set aside as {}: {}",
                damaged.step,
                damaged.moved_to.display(),
                damaged.reason
            );
        }
        eprintln!("resumed from checkpoint step-{step}, the newest intact one");
    }
    let secs = summary.train_time.as_secs_f64().max(1e-9);
    println!(
        "{}: step {}/{}{}; last loss {:.4}; {:.0} tokens/s; mixer time {:.6}% of step time",
        summary.run_dir.display(),
        summary.steps,
        config.training.steps,
        if summary.finished {
            " (finished)"
        } else {
            " (stopped; continue with --resume)"
        },
        summary.last_loss,
        summary.tokens_this_run as f64 / secs,
        100.0 * summary.mixer_time.as_secs_f64() / secs
    );
    if !summary.mixer_validation_time.is_zero() {
        println!(
            "validations the mixer asked for: {:.1} s ({:.0}% of the training steps' time)",
            summary.mixer_validation_time.as_secs_f64(),
            100.0 * summary.mixer_validation_time.as_secs_f64() / secs
        );
    }
    if let Some(eval) = &summary.last_eval {
        println!(
            "validation: mean perplexity over domains {:.3}",
            eval.mean_perplexity
        );
    }
    if !summary.finished && summary.steps < config.training.steps && args.max_steps.is_none() {
        let run = crate::stop::StoppedRun {
            label: summary.run_dir.display().to_string(),
            step: summary.steps,
            total: config.training.steps,
        };
        return Err(crate::stop::Stopped {
            runs: vec![run],
            resume: crate::stop::command_line(std::env::args(), Some("--resume")),
        }
        .into());
    }
    Ok(())
}
