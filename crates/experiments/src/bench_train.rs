//! `bench train`: the whole training loop against the bare model step, to measure the loop's own
//! overhead (data loading, batch planning, mixer, host reads, the optimizer's decay split).
//!
//! These machines are noisy: two measurements taken minutes apart differed by more than the
//! overhead itself (+10.4% once, -7.5% another time). So the loop and the bare step alternate in
//! rounds (loop, bare, loop, bare, ...), each round gives one ratio of medians, and the table
//! prints every round's ratio with their median and range: drift of the machine hits both sides
//! of a round alike, and the spread says how far to trust the median.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use mixlab_model::TrainBackend;
use mixlab_model::{DeviceSpec, ModelConfig, TrainBenchConfig, bench_training, cpu_device};
use mixlab_train::{RunOptions, StepHook, StepProgress, TrainConfig, open_dataset};

/// Arguments of `bench train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run config to measure (its dataset is prepared if missing).
    #[arg(long, default_value = "configs/smoke.toml")]
    pub config: PathBuf,
    /// Steps of each loop and each bare measurement in a round (the first step of each is a
    /// warm-up and not timed).
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    /// Rounds of (loop, bare step).
    #[arg(long, default_value_t = 5)]
    pub rounds: u64,
    /// `cpu` or `tch-cpu` (a build with `--features tch`); default: the config's device.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
}

/// The median of `values` (which must not be empty).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `bench train`.
pub fn run(args: Args) -> Result<()> {
    if args.steps < 2 || args.rounds == 0 {
        bail!("--steps must be at least 2 and --rounds at least 1");
    }
    let mut config = TrainConfig::load(&args.config)?;
    if let Some(device) = args.device {
        config.training.device = device;
    }
    let tmp = std::env::temp_dir().join(format!("mixlab-bench-train-{}", std::process::id()));
    config.out_dir = tmp.clone();
    config.training.steps = args.steps * args.rounds;
    // One micro-batch per step, so the bare step below does exactly the same model work.
    config.training.micro_batches = 1;
    config.eval.interval = 0;
    config.checkpoint.interval = 0;
    config.validate()?;
    let store = open_dataset(&config)?;
    let manifest = store.manifest().clone();
    let model_config = config
        .model
        .resolve(manifest.vocab_size, manifest.seq_len)?;
    let spec = config.training.device;
    if !spec.is_cpu() {
        bail!("bench train measures the CPU backends (cpu, tch-cpu), not {spec}");
    }
    let bench = TrainBenchConfig {
        batch_size: config.training.batch_size,
        seq_len: Some(manifest.seq_len),
        warmup_steps: 1,
        measured_steps: (args.steps - 1) as usize,
        seed: config.training.seed,
        ..TrainBenchConfig::default()
    };

    let result = rounds(&args, &config, &model_config, &bench, spec);
    std::fs::remove_dir_all(&tmp).ok();
    let rounds = result?;

    let tokens = (config.training.batch_size * manifest.seq_len) as f64;
    // The allocator setting changes step times by ~10% on CPU, so every table says which it ran with.
    println!("{}\n", mixlab_malloc::keep_freed_memory());
    println!(
        "| `bench train` ({}, {}, batch {} x {} tokens, {} rounds of {} loop steps and {} bare steps) | loop median step | bare median step | loop overhead |",
        config.name,
        spec,
        config.training.batch_size,
        manifest.seq_len,
        args.rounds,
        args.steps,
        args.steps
    );
    println!("|---|---:|---:|---:|");
    let mut overheads = Vec::new();
    for (i, round) in rounds.iter().enumerate() {
        let overhead = 100.0 * (round.loop_step / round.bare_step - 1.0);
        overheads.push(overhead);
        println!(
            "| round {} | {:.1} ms ({:.0} tokens/s) | {:.1} ms ({:.0} tokens/s) | {overhead:+.1}% |",
            i + 1,
            round.loop_step * 1e3,
            tokens / round.loop_step,
            round.bare_step * 1e3,
            tokens / round.bare_step,
        );
    }
    let (low, high) = overheads
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &o| {
            (l.min(o), h.max(o))
        });
    let mixer: f64 = rounds.iter().map(|r| r.mixer_share).sum::<f64>() / rounds.len() as f64;
    println!(
        "| **median of rounds** | | | **{:+.1}%** (range {low:+.1}% to {high:+.1}%) |",
        median(&mut overheads)
    );
    println!("\ntime inside the mixer: {mixer:.5}% of the loop's step time");
    Ok(())
}

/// What one round measured.
struct Round {
    /// Median step of the loop segment, seconds.
    loop_step: f64,
    /// Median bare step, seconds.
    bare_step: f64,
    /// Mixer time as a percentage of the segment's training time.
    mixer_share: f64,
}

fn rounds(
    args: &Args,
    config: &TrainConfig,
    model_config: &ModelConfig,
    bench: &TrainBenchConfig,
    spec: DeviceSpec,
) -> Result<Vec<Round>> {
    let mut out = Vec::new();
    for round in 0..args.rounds {
        let steps: Arc<Mutex<Vec<f64>>> = Arc::default();
        let sink = steps.clone();
        let options = RunOptions {
            max_steps: Some((round + 1) * args.steps),
            resume: round > 0,
            on_step: Some(StepHook(Arc::new(move |p: &StepProgress| {
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(p.step_seconds);
            }))),
            ..RunOptions::default()
        };
        let summary = crate::train_cmd::run_config(config, &options, None)?;
        let mut loop_steps = steps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .split_off(1); // the first step after (re)loading allocates
        let bare = match spec {
            DeviceSpec::Cpu => {
                bare::<mixlab_model::CpuTrainBackend>(model_config, bench, &cpu_device())?
            }
            #[cfg(feature = "tch")]
            DeviceSpec::TchCpu => bare::<mixlab_model::TchTrainBackend>(
                model_config,
                bench,
                &mixlab_model::tch_cpu_device(),
            )?,
            #[cfg(not(feature = "tch"))]
            DeviceSpec::TchCpu => return Err(mixlab_model::ModelError::TchNotBuilt.into()),
            DeviceSpec::Cuda(_) => unreachable!("refused before the first round"),
        };
        out.push(Round {
            loop_step: median(&mut loop_steps),
            bare_step: bare,
            mixer_share: 100.0 * summary.mixer_time.as_secs_f64()
                / summary.train_time.as_secs_f64(),
        });
    }
    Ok(out)
}

/// The bare model step's median seconds.
fn bare<B: TrainBackend>(
    model_config: &ModelConfig,
    bench: &TrainBenchConfig,
    device: &B::Device,
) -> Result<f64> {
    Ok(bench_training::<B>(model_config, bench, device)?.median_step_seconds)
}
