//! The validation the CLI's training runs use: mixlab-eval's per-domain perplexity on the
//! validation split, handed to mixlab-train's loop through its [`Validate`] trait.

use mixlab_data::{DomainStore, Split};
use mixlab_eval::perplexity::{PerplexityConfig, evaluate_perplexity};
use mixlab_model::GptNeoX;
use mixlab_model::ModelBackend;
use mixlab_train::config::EvalConfig;
use mixlab_train::{DomainValidation, Validate, ValidationError, ValidationReport};

/// Per-domain perplexity of the first `max_sequences_per_domain` validation sequences of every
/// domain (the paper's protocol, at the config's cap).
#[derive(Debug, Clone, Copy, Default)]
pub struct PerplexityValidation;

impl<B: ModelBackend> Validate<B> for PerplexityValidation {
    fn validate(
        &self,
        model: &GptNeoX<B>,
        device: &B::Device,
        store: &DomainStore,
        settings: &EvalConfig,
    ) -> Result<ValidationReport, ValidationError> {
        let config = PerplexityConfig {
            max_sequences_per_domain: Some(settings.max_sequences_per_domain),
            batch_size: settings.batch_size,
            domains: Vec::new(),
            progress: false,
        };
        let report = evaluate_perplexity(model, device, store, Split::Val, &config)?;
        Ok(ValidationReport {
            domains: report
                .domains
                .into_iter()
                .map(|d| DomainValidation {
                    domain: d.domain,
                    mean_nll: d.mean_nll,
                    perplexity: d.perplexity,
                    tokens: d.tokens,
                })
                .collect(),
            mean_nll: report.mean_nll,
            mean_perplexity: report.mean_perplexity,
            token_weighted_nll: report.token_weighted_nll,
            token_weighted_perplexity: report.token_weighted_perplexity,
        })
    }
}
