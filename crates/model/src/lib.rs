//! `mixlab-model`: the GPT-NeoX/Pythia decoder the ODM paper trains, in burn 0.21.
//!
//! - [`ModelConfig`] with presets from a CPU-sized `tiny` to the paper's `paper-1b`, and the
//!   parameter and FLOP arithmetic that needs no tensors.
//! - [`GptNeoX`]: logits, and per-token negative log-likelihood from one forward pass
//!   ([`GptNeoX::per_token_nll`]), generic over the burn backend ([`ModelBackend`]: burn's backend
//!   plus softmax and the token loss with closed-form gradients, see [`fused`]).
//! - [`clip_grad_norm`]: global-norm gradient clipping (burn's own clips per tensor), and
//!   [`DecoupledAdamW`]: AdamW with weight decay on matrices only, one pass per tensor on the CPU.
//! - [`DeviceSpec`], [`cpu_device`], [`cuda_device`] and backend aliases: the device is chosen at
//!   run time, and one build serves CPU and CUDA.
//! - Safetensors with HF GPT-NeoX names and an HF `config.json` ([`GptNeoX::save_pretrained`],
//!   [`GptNeoX::load_pretrained`]), so checkpoints move to and from HF transformers.
//! - [`bench_training`]: tokens/s and peak memory of a full training step.

pub mod attention;
mod bench;
pub mod checkpoint;
mod clip;
mod config;
mod device;
mod error;
pub mod fused;
mod model;
mod optimizer;

pub use bench::{
    TrainBenchConfig, TrainBenchReport, bench_training, matmul_flops_per_second, peak_rss_bytes,
};
pub use clip::{GradNorm, clip_grad_norm, grad_global_norm};
pub use config::{ModelConfig, PRESET_NAMES, VOCAB_PAD_MULTIPLE};
pub use device::{
    CpuBackend, CpuDevice, CpuTrainBackend, CudaBackend, CudaDevice, CudaTrainBackend, DeviceSpec,
    Precision, TCH_BUILT, cpu_device, cuda_device,
};
#[cfg(feature = "tch")]
pub use device::{TchBackend, TchDevice, TchTrainBackend, tch_cpu_device};
pub use error::{ModelError, Result};
pub use fused::{AdamWUpdate, ModelBackend, TrainBackend};
pub use model::{Attention, Block, GptNeoX, Mlp, per_token_nll_from_logits};
pub use optimizer::{DecoupledAdamW, TrainOptimizer};
