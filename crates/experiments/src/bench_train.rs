//! `bench train`: the whole training loop against the bare model step, to measure the loop's own
//! overhead (data loading, batch planning, mixer, metrics).

use std::path::PathBuf;

use anyhow::Result;
use mixlab_model::{CpuTrainBackend, cpu_device};
use mixlab_model::{TrainBenchConfig, bench_training};
use mixlab_train::{RunOptions, TrainConfig, open_dataset};

/// Arguments of `bench train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run config to measure (its dataset is prepared if missing).
    #[arg(long, default_value = "configs/smoke.toml")]
    pub config: PathBuf,
    /// Steps of each measurement.
    #[arg(long, default_value_t = 30)]
    pub steps: u64,
}

/// Runs `bench train`.
pub fn run(args: Args) -> Result<()> {
    let mut config = TrainConfig::load(&args.config)?;
    let tmp = std::env::temp_dir().join(format!("mixlab-bench-train-{}", std::process::id()));
    config.out_dir = tmp.clone();
    config.training.steps = args.steps;
    // One micro-batch per step, so the bare step below does exactly the same model work.
    config.training.micro_batches = 1;
    config.eval.interval = 0;
    config.checkpoint.interval = 0;
    let store = open_dataset(&config)?;
    let manifest = store.manifest().clone();
    let model_config = config
        .model
        .resolve(manifest.vocab_size, manifest.seq_len)?;
    let options = RunOptions::default();
    let summary = crate::train_cmd::run_config(&config, &options, None)?;
    // The median of the logged step times, like the bare benchmark (the first step allocates).
    let metrics = std::fs::read_to_string(tmp.join("metrics.jsonl"))?;
    let mut steps: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["timing"]["step_s"].as_f64())
        .collect();
    steps.sort_by(f64::total_cmp);
    std::fs::remove_dir_all(&tmp).ok();
    let loop_step = steps[steps.len() / 2];
    let loop_tps = (config.training.batch_size * manifest.seq_len) as f64 / loop_step;

    let bare = bench_training::<CpuTrainBackend>(
        &model_config,
        &TrainBenchConfig {
            batch_size: config.training.batch_size,
            seq_len: Some(manifest.seq_len),
            warmup_steps: 1,
            measured_steps: args.steps as usize,
            seed: config.training.seed,
        },
        &cpu_device(),
    )?;
    println!(
        "| measurement ({}, batch {} x {} tokens, {} steps) | value |",
        config.name, config.training.batch_size, manifest.seq_len, args.steps
    );
    println!("|---|---|");
    println!(
        "| whole loop: median step | {:.1} ms ({:.0} tokens/s, {:.2} steps/s) |",
        loop_step * 1e3,
        loop_tps,
        1.0 / loop_step
    );
    println!(
        "| bare model step (forward + backward + AdamW): median | {:.1} ms ({:.0} tokens/s) |",
        bare.median_step_seconds * 1e3,
        bare.tokens_per_second
    );
    println!(
        "| loop overhead | {:+.1}% |",
        100.0 * (loop_step / bare.median_step_seconds - 1.0)
    );
    println!(
        "| time inside the mixer | {:.5}% of the loop's step time |",
        100.0 * summary.mixer_time.as_secs_f64() / summary.train_time.as_secs_f64()
    );
    Ok(())
}
