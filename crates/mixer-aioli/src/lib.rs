//! mixlab-mixer-aioli: Aioli (Chen, Hu, Lourie, Cho, Ré, ICLR 2025) as a [`Mixer`], transcribed
//! from the reference code (HazyResearch/aioli at a236112, `trainer/aioli_trainer.py`).
//!
//! Aioli models the validation loss of each domain i as moving linearly in the mixture trained
//! on, with an interaction matrix A (A_ij: how much training on domain j lowers domain i's
//! loss), re-estimates A online at the start of every round, and moves the mixture toward the
//! domains whose training lowers the total loss most:
//!
//! | phase (one round = `update_steps` steps) | what happens | code default (7-domain script) |
//! |---|---|---|
//! | start | validation losses ℓ⁰ of every domain | |
//! | probes | `lp_rounds` random orders of the K domains; probe j trains `lp_steps` steps on the mixture with `one_hot_factor` on j and the rest shared equally, then validates: G[:, j] += ℓ_before − ℓ_after | 2 × K probes of 10 steps, factor 0.75 |
//! | estimate | G /= `lp_rounds`; A\[i\] = W⁻¹ G\[i\] with W the probe mixtures; A −= min(A) if negative, A /= ΣA | |
//! | update | Ā = A (first round), else Ā = (1 − γ) A + γ Ā; p ∝ exp(η Σ_i Ā_ij) | γ = 0.1, η = 1 |
//! | exploit | the remaining `update_steps` − 2·K·10 steps train on p | 200 steps per round |
//!
//! The probe steps are real training steps of the run (the reference counts them in its budget),
//! so a mixture logged during a probe is the probe's. Before the first round the mixture is the
//! prior (`prior_steps`, the reference's "restricted" setting, which trains a given mixture
//! first); without `ema` the update is cumulative, p ∝ p_prev ⊙ exp(η Σ_i A_ij) (the code
//! without `--ema`).
//!
//! Differences from the reference, all in [`AioliConfig`]'s and [`AioliMixer`]'s documentation:
//! mixlab draws every sequence's domain from the probe mixture, where the reference fills a
//! probe with exactly that mixture's counts; the probe order comes from a seeded SplitMix64
//! (the reference uses numpy's global generator); a normalisation of a constant matrix, 0/0
//! in the reference, gives every entry 1/K²; a domain without validation data adds nothing to G.
//!
//! [`Mixer`]: mixlab_mixing::Mixer

mod config;
mod error;
pub mod interaction;
mod mixer;
pub mod rng;
pub mod schedule;

pub use config::{AioliConfig, UpdateRule};
pub use error::{AioliError, Result};
pub use mixer::AioliMixer;
