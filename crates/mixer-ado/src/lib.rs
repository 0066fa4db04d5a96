//! mixlab-mixer-ado: Adaptive Data Optimization (Jiang, Zhou, Robey, Kolter, ICLR 2025) as a
//! [`Mixer`], transcribed from the reference code (yidingjiang/ado at bc3d8d0,
//! `src/data_selectors/ado.py` and `src/dataloader/adaptive_loader.py`).
//!
//! ADO fits, per domain k, a scaling law of the training loss against the sequences trained on,
//! L_k(n) = exp(e_k) + exp(a_k) · n^(−α_k), and samples domains in proportion to the law's
//! predicted learning speed, weighted by a prior and by the domain's recent share:
//!
//! | quantity | update | code default |
//! |---|---|---|
//! | history h | h ← γ h + (1 − γ) · (step's sequences per domain) / (step's sequences) | γ = 0.9 |
//! | laws | refit every `update_interval` iterations from `start_step`: rows from `ignore_steps` on, every 10th, loss smoothed by Savitzky-Golay (101, 3); Huber (δ = 10⁻³) in log space, L-BFGS from a grid of 512 starts | 1000, 1000, 1000 |
//! | ρ (instant) | ρ_k ∝ max(α_k, 0.05) (L_k(n) − exp(e_k)) / n · μ_k · h_k^½, floored at 0.01 | |
//! | policy π | π = 0.9 π̄ + 0.1 ρ; π̄ ← (1 − 1/t) π̄ + ρ / t | |
//!
//! Where the paper and the code differ, the code is the default: the code's `n` is the run's
//! total number of sequences for every domain (`count = "shared"`), the paper's is the domain's
//! own (`count = "domain"`). Until `start_step` the policy is the prior μ (the "natural",
//! token-proportional mixture by default). The fit differs from the code's only in its
//! optimiser's arithmetic (f64 here, float32 in JAX; see [`lbfgs`]).
//!
//! Unlike the bandit mixers, ADO keeps its whole history (two numbers per domain and step) in
//! its state, because each refit smooths and fits all of it; a step between fits costs O(K)
//! plus one history row, a refit O(K · 512 · iterations · points), spread over the cores.
//!
//! [`Mixer`]: mixlab_mixing::Mixer

mod config;
mod error;
mod fit;
mod history;
pub mod law;
pub mod lbfgs;
mod mixer;
mod policy;
pub mod savgol;

pub use config::{AdoConfig, CountMode, MIN_FIT_POINTS};
pub use error::{AdoError, Result};
pub use fit::fit_law;
pub use mixer::AdoMixer;
pub use policy::{clip_min_probability, instant_distribution};
