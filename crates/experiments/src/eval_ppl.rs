//! `eval`: per-domain perplexity of a trained model on a prepared dataset's val or test split.

use std::path::PathBuf;

use anyhow::{Result, bail};
use mixlab_data::atomic::write_file_atomically;
use mixlab_data::{DomainStore, OpenOptions, Split, sha256_file};
use mixlab_eval::perplexity::{PerplexityConfig, evaluate_perplexity};
use mixlab_model::ModelBackend;
use mixlab_model::{CpuBackend, CudaBackend, DeviceSpec, Precision, cpu_device, cuda_device};

use crate::model_source::{Located, Source, locate};

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run directory (uses its `final/`), a `final/` directory (HF safetensors + config.json), or
    /// a `checkpoints/step-N/` directory.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The prepared dataset (default: the one in the run's config.toml).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `val` or `test`.
    #[arg(long, default_value = "val")]
    pub split: Split,
    /// At most this many sequences per domain, the first in stored order (the paper: 5,000).
    #[arg(long, default_value_t = 5000)]
    pub max_sequences: u64,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// `cpu`, `tch-cpu` (builds with `--features tch`), `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn run_on<B: ModelBackend>(
    args: &Args,
    located: &Located,
    store: &DomainStore,
    device: &B::Device,
) -> Result<()> {
    let model = located.load::<B>(device)?;
    if model.config().vocab_size != store.manifest().vocab_size {
        bail!(
            "the model has vocabulary {}, the dataset {}: they were not made with the same tokenizer",
            model.config().vocab_size,
            store.manifest().vocab_size
        );
    }
    let config = PerplexityConfig {
        max_sequences_per_domain: Some(args.max_sequences),
        batch_size: args.batch_size,
        domains: Vec::new(),
        progress: true,
    };
    let report = evaluate_perplexity(&model, device, store, args.split, &config)?;
    println!("{}", report.to_markdown());
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&report)?;
        write_file_atomically(out, &text)?;
    }
    Ok(())
}

/// Runs `eval`.
pub fn run(args: Args) -> Result<()> {
    let located = locate(&args.checkpoint)?;
    let dataset = match (&args.data, located.run_dataset()?) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => d,
        (None, None) => bail!(
            "no --data given and no run config.toml next to {}",
            args.checkpoint.display()
        ),
    };
    // A final/ directory carries the tokenizer it was trained with: the dataset must match it.
    let expected = match &located.source {
        Source::Pretrained(dir) if dir.join("tokenizer.json").is_file() => {
            Some(sha256_file(&dir.join("tokenizer.json"))?)
        }
        _ => None,
    };
    let store = DomainStore::open(
        &dataset,
        &OpenOptions {
            expected_tokenizer_sha256: expected,
            expected_seq_len: None,
        },
    )?;
    match args.device {
        DeviceSpec::Cpu => run_on::<CpuBackend>(&args, &located, &store, &cpu_device()),
        #[cfg(feature = "tch")]
        DeviceSpec::TchCpu => run_on::<mixlab_model::TchBackend>(
            &args,
            &located,
            &store,
            &mixlab_model::tch_cpu_device(),
        ),
        #[cfg(not(feature = "tch"))]
        DeviceSpec::TchCpu => Err(mixlab_model::ModelError::TchNotBuilt.into()),
        DeviceSpec::Cuda(i) => {
            run_on::<CudaBackend>(&args, &located, &store, &cuda_device(i, Precision::F32)?)
        }
    }
}
