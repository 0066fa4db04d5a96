//! Periodic validation during training, supplied by the caller.
//!
//! The loop decides *when* to validate (`[eval] interval`, and after the last step) and records
//! the result as an eval line of `metrics.jsonl`; *how* the model is measured is the caller's
//! [`Validate`] implementation (mixlab's CLI passes mixlab-eval's per-domain perplexity). So
//! mixlab-train needs no evaluation crate, and an evaluation error reaches the user as itself,
//! not as a string.

use burn::tensor::backend::Backend;
use mixlab_data::DomainStore;
use mixlab_model::GptNeoX;

use crate::config::EvalConfig;

/// An error of a [`Validate`] implementation, kept whole (with its source chain).
pub type ValidationError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One domain's validation result.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainValidation {
    /// The domain.
    pub domain: String,
    /// Mean negative log-likelihood per target token (nats).
    pub mean_nll: f64,
    /// exp of `mean_nll`.
    pub perplexity: f64,
    /// Target tokens evaluated.
    pub tokens: u64,
}

/// The result of one validation: what an eval line of `metrics.jsonl` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationReport {
    /// Domains evaluated, in dataset order (domains without validation data are left out).
    pub domains: Vec<DomainValidation>,
    /// Unweighted mean of the domains' mean NLLs.
    pub mean_nll: f64,
    /// Unweighted mean of the domains' perplexities (the paper's headline metric).
    pub mean_perplexity: f64,
    /// Mean NLL over all tokens of all domains.
    pub token_weighted_nll: f64,
    /// exp of `token_weighted_nll`.
    pub token_weighted_perplexity: f64,
}

/// Measures a model on the validation split of the run's dataset. `Sync`, as a validation may
/// run on another thread (a [`crate::ThreadBudget`]'s pool).
pub trait Validate<B: Backend>: Sync {
    /// Evaluates `model` (on `device`) on `store`'s validation split, with at most
    /// `settings.max_sequences_per_domain` sequences per domain in batches of
    /// `settings.batch_size`. It must not change any state the training depends on (the loop's
    /// results are the same whether or when it validates).
    fn validate(
        &self,
        model: &GptNeoX<B>,
        device: &B::Device,
        store: &DomainStore,
        settings: &EvalConfig,
    ) -> Result<ValidationReport, ValidationError>;
}
