//! mixlab-mixer-doremi: DoReMi's Group-DRO domain weights (Xie et al. 2023) as a [`Mixer`].
//!
//! DoReMi trains a small *proxy* model with Group DRO against a fixed *reference* model. Each
//! step (`DoReMiTrainer.update_domain_weights` of `sangmichaelxie/doremi`):
//!
//! 1. λ_i = mean over the step's domain-i tokens of max(ℓ_proxy − ℓ_ref, 0) (clipped per token;
//!    a domain absent from the step keeps its last λ_i, initially ln(vocabulary size));
//! 2. log α' = log α + η λ;
//! 3. α = (1 − c) softmax(log α') + c/K.
//!
//! The proxy samples from fixed weights and weights its loss by α_i over the sampling weight of
//! domain i ([`Mixer::loss_weights`]); the method's output is the running average of α
//! ([`Mixer::output_table`]), which a static mixer then loads for the real run. The average
//! includes α_0 as the reference code does (`average = "code"`, the default) or leaves it out
//! as the paper's Algorithm 1 does (`average = "paper"`); see [`Average`].
//!
//! Step t's loss is weighted with α_t, the weights *after* observing step t's excess losses
//! (Algorithm 1 trains θ_t on L(θ_{t−1}, α_t); `DoReMiTrainer.training_step` calls
//! `update_domain_weights` before it builds the weighted loss). The trainer does this for every
//! mixer with loss weights: it measures the step's feedback first, observes it, then takes the
//! gradient (see `mixlab_mixing::Mixer::loss_weights`).
//!
//! Defaults η = 1 and c = 1e-3 are the repository's run script (`--reweight_eta 1
//! --reweight_eps 1e-3`; its `training_args.py` default for c is 1e-4).
//!
//! [`Mixer`]: mixlab_mixing::Mixer
//! [`Mixer::loss_weights`]: mixlab_mixing::Mixer::loss_weights
//! [`Mixer::output_table`]: mixlab_mixing::Mixer::output_table

mod config;
mod error;
mod mixer;

pub use config::{Average, DEFAULT_ETA, DEFAULT_SMOOTHING, DoremiConfig};
pub use error::{DoremiError, Result};
pub use mixer::DoremiMixer;
