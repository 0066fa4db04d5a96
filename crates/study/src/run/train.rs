//! One run: a training config trained on the device it names, with the validation the study's
//! runs use (mixlab-eval's per-domain perplexity on the validation split, handed to
//! mixlab-train's loop through its [`Validate`] trait).

use std::path::Path;

use mixlab_data::{DomainStore, Split};
use mixlab_eval::perplexity::{PerplexityConfig, evaluate_perplexity};
use mixlab_mixing::MixerRegistry;
use mixlab_model::{
    CpuTrainBackend, CudaTrainBackend, DeviceSpec, GptNeoX, ModelBackend, Precision, cpu_device,
    cuda_device,
};
use mixlab_train::config::EvalConfig;
use mixlab_train::{
    DomainValidation, RunOptions, RunSummary, TrainConfig, Validate, ValidationError,
    ValidationReport, mixer_context, open_dataset, train,
};

use crate::error::{Context, Result};

/// Trains (or resumes) one run from its config on the device it names, with a mixer of
/// `mixers` and per-domain validation perplexity; `reference` is the reference model's
/// directory for mixers that need one (DoReMi's proxy).
pub fn train_run(
    config: &TrainConfig,
    options: &RunOptions,
    reference: Option<&Path>,
    mixers: &MixerRegistry,
) -> Result<RunSummary> {
    let store = open_dataset(config).context("opening the dataset")?;
    let ctx = mixer_context(&store)?;
    let mixer = mixers
        .build(&config.mixer, &ctx)
        .context("building the mixer")?;
    // One device per worker (`training.devices`, validated with the config: one backend).
    let workers = config.training.workers();
    let summary = match config.training.device {
        DeviceSpec::Cpu => train::<CpuTrainBackend>(
            config,
            store,
            mixer,
            reference,
            Some(&PerplexityValidation),
            &vec![cpu_device(); workers],
            options,
        )?,
        #[cfg(feature = "tch")]
        DeviceSpec::TchCpu => train::<mixlab_model::TchTrainBackend>(
            config,
            store,
            mixer,
            reference,
            Some(&PerplexityValidation),
            &vec![mixlab_model::tch_cpu_device(); workers],
            options,
        )?,
        #[cfg(not(feature = "tch"))]
        DeviceSpec::TchCpu => return Err(mixlab_model::ModelError::TchNotBuilt.into()),
        DeviceSpec::Cuda(index) => {
            let indices: Vec<usize> = if config.training.devices.is_empty() {
                vec![index]
            } else {
                config
                    .training
                    .devices
                    .iter()
                    .filter_map(|d| match d {
                        DeviceSpec::Cuda(i) => Some(*i),
                        _ => None,
                    })
                    .collect()
            };
            let devices = indices
                .into_iter()
                .map(|i| cuda_device(i, Precision::F32))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            train::<CudaTrainBackend>(
                config,
                store,
                mixer,
                reference,
                Some(&PerplexityValidation),
                &devices,
                options,
            )?
        }
    };
    Ok(summary)
}

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
