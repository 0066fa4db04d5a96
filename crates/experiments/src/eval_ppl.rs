//! `eval`: per-domain perplexity of a trained model on a prepared dataset's val or test split.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use mixlab_data::{DomainStore, OpenOptions, Split, sha256_file};
use mixlab_eval::perplexity::{PerplexityConfig, evaluate_perplexity};
use mixlab_model::{
    CpuBackend, CudaBackend, DeviceSpec, GptNeoX, Precision, cpu_device, cuda_device,
};
use mixlab_train::TrainConfig;
use mixlab_train::checkpoint::read_state;

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
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Where the weights are and which run they belong to.
enum Source {
    /// HF-format directory.
    Pretrained(PathBuf),
    /// A training checkpoint (burn records plus state.json).
    Checkpoint(PathBuf),
}

fn locate(dir: &Path) -> Result<(Source, Option<PathBuf>)> {
    let run_config = |run: &Path| Some(run.join("config.toml")).filter(|p| p.is_file());
    if dir.join("state.json").is_file() {
        let run = dir.parent().and_then(Path::parent).map(Path::to_path_buf);
        return Ok((
            Source::Checkpoint(dir.to_path_buf()),
            run.as_deref().and_then(run_config),
        ));
    }
    if dir.join("config.json").is_file() {
        let run = dir.parent().map(Path::to_path_buf);
        return Ok((
            Source::Pretrained(dir.to_path_buf()),
            run.as_deref().and_then(run_config),
        ));
    }
    if dir.join("final/config.json").is_file() {
        return Ok((Source::Pretrained(dir.join("final")), run_config(dir)));
    }
    bail!(
        "{} is neither a run directory with final/, a final/ directory, nor a checkpoints/step-N directory",
        dir.display()
    )
}

fn load<B: Backend>(source: &Source, device: &B::Device) -> Result<GptNeoX<B>> {
    match source {
        Source::Pretrained(dir) => Ok(GptNeoX::<B>::load_pretrained(dir, device)?),
        Source::Checkpoint(dir) => {
            let state = read_state(dir)?;
            let model = state.model.init_lazy::<B>(device)?;
            let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
            model
                .load_file(dir.join("model"), &recorder, device)
                .with_context(|| format!("loading {}", dir.join("model.mpk").display()))
        }
    }
}

fn run_on<B: Backend>(
    args: &Args,
    source: &Source,
    store: &DomainStore,
    device: &B::Device,
) -> Result<()> {
    let model = load::<B>(source, device)?;
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
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// Runs `eval`.
pub fn run(args: Args) -> Result<()> {
    let (source, run_config) = locate(&args.checkpoint)?;
    let dataset = match (&args.data, &run_config) {
        (Some(d), _) => d.clone(),
        (None, Some(cfg)) => TrainConfig::load(cfg)?.data.dataset,
        (None, None) => bail!(
            "no --data given and no run config.toml next to {}",
            args.checkpoint.display()
        ),
    };
    // A final/ directory carries the tokenizer it was trained with: the dataset must match it.
    let expected = match &source {
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
        DeviceSpec::Cpu => run_on::<CpuBackend>(&args, &source, &store, &cpu_device()),
        DeviceSpec::Cuda(i) => {
            run_on::<CudaBackend>(&args, &source, &store, &cuda_device(i, Precision::F32)?)
        }
    }
}
