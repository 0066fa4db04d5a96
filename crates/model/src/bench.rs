//! Training-step throughput: forward + backward + global-norm clip + AdamW, as the trainer runs it.
//!
//! Used by `cargo bench -p mixlab-model` and meant for the CLI's `bench model`.

use std::path::PathBuf;
use std::time::Instant;

use burn::optim::{GradientsParams, Optimizer};

use crate::DecoupledAdamW;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::clip::clip_grad_norm;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::fused::TrainBackend;

/// How to run a training-throughput benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainBenchConfig {
    /// Sequences per step.
    pub batch_size: usize,
    /// Tokens per sequence; the model's `max_seq_len` when absent.
    pub seq_len: Option<usize>,
    /// Steps run before timing starts (first-step allocations, kernel selection).
    pub warmup_steps: usize,
    /// Steps timed; the report uses their median.
    pub measured_steps: usize,
    /// Seed of the weights and of the random token batch.
    pub seed: u64,
    /// An HF GPT-NeoX safetensors file whose weights replace the seeded initialisation (any of
    /// f32, f16, bf16, converted to the device's float type): two runs in different precisions
    /// then start from the same weights.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// Where to write the initial weights (HF safetensors, in the device's float type) before
    /// the first step, for another run's `init_from`.
    #[serde(default)]
    pub save_init: Option<PathBuf>,
}

impl Default for TrainBenchConfig {
    /// Batch 8, 2 warm-up and 5 measured steps.
    fn default() -> Self {
        Self {
            batch_size: 8,
            seq_len: None,
            warmup_steps: 2,
            measured_steps: 5,
            seed: 0,
            init_from: None,
            save_init: None,
        }
    }
}

/// What a training-throughput benchmark measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainBenchReport {
    /// Parameters of the model.
    pub params: usize,
    /// Tokens per step (batch × sequence length).
    pub tokens_per_step: usize,
    /// Median wall time of a measured step, in seconds (the loss is read back each step, so
    /// asynchronous backends are included in full).
    pub median_step_seconds: f64,
    /// `tokens_per_step / median_step_seconds`.
    pub tokens_per_second: f64,
    /// Model FLOPs per second: training FLOPs per token (see [`ModelConfig::training_flops_per_token`]) × tokens/s.
    pub model_flops_per_second: f64,
    /// Peak resident memory of the process during the benchmark (Linux `VmHWM`), in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Mean loss of the first step and of the last one (they should differ: the model trains).
    pub loss_first_last: (f64, f64),
    /// Mean loss of every step, warm-up included, in order.
    pub losses: Vec<f64>,
}

/// Trains a freshly initialised model on one fixed random batch and times each step.
pub fn bench_training<B: TrainBackend>(
    model_config: &ModelConfig,
    bench: &TrainBenchConfig,
    device: &B::Device,
) -> Result<TrainBenchReport> {
    let seq = bench.seq_len.unwrap_or(model_config.max_seq_len);
    let batch = bench.batch_size;
    reset_peak_rss();

    let mut model = model_config.init_seeded::<B>(device, bench.seed)?;
    if let Some(path) = &bench.init_from {
        model = model.load_safetensors(path)?;
    }
    if let Some(path) = &bench.save_init {
        model.save_safetensors(path)?;
    }
    let params = model_config.num_params();
    // The trainer's optimizer and its defaults: decay on matrices only, as PyTorch's side has it.
    let mut optimizer = DecoupledAdamW::new(0.9, 0.95, 1e-8, 0.1).init::<B, crate::GptNeoX<B>>();

    let tokens = random_tokens(batch * (seq + 1), model_config.vocab_size, bench.seed);
    let inputs_and_targets =
        Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [batch, seq + 1]), device);
    let inputs = inputs_and_targets.clone().narrow(1, 0, seq);
    let targets = inputs_and_targets.narrow(1, 1, seq);

    let mut step_seconds = Vec::with_capacity(bench.measured_steps);
    let mut losses = Vec::new();
    for step in 0..bench.warmup_steps + bench.measured_steps {
        let started = Instant::now();
        let loss = model
            .per_token_nll(inputs.clone(), targets.clone(), None)
            .mean();
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let (gradients, _) = clip_grad_norm(&model, gradients, 1.0);
        model = optimizer.step(3e-4, model, gradients);
        let loss_value = loss.into_data().iter::<f64>().next().unwrap_or(f64::NAN);
        let elapsed = started.elapsed().as_secs_f64();
        if step >= bench.warmup_steps {
            step_seconds.push(elapsed);
        }
        losses.push(loss_value);
    }

    step_seconds.sort_by(f64::total_cmp);
    let median_step_seconds = step_seconds
        .get(step_seconds.len() / 2)
        .copied()
        .unwrap_or(f64::NAN);
    let tokens_per_step = batch * seq;
    let tokens_per_second = tokens_per_step as f64 / median_step_seconds;
    let flops_per_token = model_config
        .clone()
        .with_max_seq_len(seq)
        .training_flops_per_token();
    Ok(TrainBenchReport {
        params,
        tokens_per_step,
        median_step_seconds,
        tokens_per_second,
        model_flops_per_second: flops_per_token * tokens_per_second,
        peak_rss_bytes: peak_rss_bytes(),
        loss_first_last: (
            losses.first().copied().unwrap_or(f64::NAN),
            losses.last().copied().unwrap_or(f64::NAN),
        ),
        losses,
    })
}

/// Measured rate of a square matrix product on `device` in FLOP/s, the denominator of model-FLOPs
/// utilisation. Uses the device's default float type (set bf16 first to measure bf16).
pub fn matmul_flops_per_second<B: Backend>(device: &B::Device, size: usize, repeats: usize) -> f64 {
    let a = Tensor::<B, 2>::ones([size, size], device).mul_scalar(0.5);
    let b = Tensor::<B, 2>::ones([size, size], device).mul_scalar(0.25);
    // One untimed product so that allocation and kernel selection are not measured.
    let _ = a.clone().matmul(b.clone()).sum().into_data();
    let started = Instant::now();
    let mut total = Tensor::<B, 1>::zeros([1], device);
    for _ in 0..repeats.max(1) {
        total = total + a.clone().matmul(b.clone()).slice([0..1, 0..1]).reshape([1]);
    }
    let _ = total.into_data();
    let seconds = started.elapsed().as_secs_f64();
    2.0 * (size as f64).powi(3) * repeats.max(1) as f64 / seconds
}

/// Uniform token ids in `0..vocab` from a SplitMix64 stream (no RNG dependency needed here).
fn random_tokens(count: usize, vocab: usize, seed: u64) -> Vec<i32> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z % vocab as u64) as i32
        })
        .collect()
}

/// Resets the kernel's peak-RSS counter (`VmHWM`) so that the next reading covers only what
/// follows; Linux ≥ 4.0. Without it the peak of an earlier, larger run would be reported.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size (`VmHWM` of /proc/self/status) in bytes; `None` off Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
