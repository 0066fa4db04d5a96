//! `eval-mc`: 5-shot multiple choice (MMLU) of a saved model, and `bench eval`, its throughput.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mixlab_eval::{
    McConfig, McDataset, ModelScorer, PromptDump, Protocol, bench_multiple_choice,
    evaluate_multiple_choice, load_tokenizer,
};
use mixlab_model::ModelBackend;
use mixlab_model::{
    CpuBackend, CudaBackend, DeviceSpec, ModelConfig, Precision, cpu_device, cuda_device,
};

use crate::model_source::{Source, locate};

/// Prompt format and scoring rule, as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    /// Current lm-evaluation-harness: comparable with published MMLU numbers.
    Harness,
    /// lm-evaluation-harness 0.3.0 through GPT-NeoX's evaluation adapter, what the ODM paper's
    /// Table 1 used: half the model's window, long prompts cut at the front.
    Paper,
    /// Today's lm-evaluation-harness mmlu_continuation (cloze): the question without its options,
    /// answer texts scored; what small models are measured with.
    Continuation,
}

impl From<ProtocolArg> for Protocol {
    fn from(protocol: ProtocolArg) -> Self {
        match protocol {
            ProtocolArg::Harness => Protocol::Harness,
            ProtocolArg::Paper => Protocol::Paper,
            ProtocolArg::Continuation => Protocol::Continuation,
        }
    }
}

/// Float type on a CUDA device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// 32-bit floats.
    F32,
    /// bfloat16.
    Bf16,
}

impl From<PrecisionArg> for Precision {
    fn from(precision: PrecisionArg) -> Self {
        match precision {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Bf16 => Precision::Bf16,
        }
    }
}

/// Arguments of `eval-mc`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model: a directory with `config.json` + `model.safetensors` in HF GPT-NeoX form (what
    /// `GptNeoX::save_pretrained` writes, e.g. a run's `final/`; a Pythia download works too), a
    /// run directory (its `final/`), or a training checkpoint `checkpoints/step-N/` (to follow a
    /// score along training).
    #[arg(long)]
    pub model_dir: PathBuf,
    /// The model's `tokenizer.json` (default: the one beside the weights, else the one of the
    /// prepared dataset in the run's `config.toml`).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Benchmark in the hendrycks/test layout (`data/{dev,val,test}/<subject>_<split>.csv`).
    #[arg(long, default_value = "../shared/data/mmlu")]
    pub data: PathBuf,
    /// `harness` (today's lm-evaluation-harness) or `paper` (0.3.0, as ODM ran it).
    #[arg(long, value_enum, default_value = "harness")]
    pub protocol: ProtocolArg,
    /// Worked examples per prompt before cropping.
    #[arg(long, default_value_t = 5)]
    pub num_fewshot: usize,
    /// Seed of the paper protocol's example draws (lm-evaluation-harness 0.3.0 uses 42).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Only these subjects, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub subjects: Vec<String>,
    /// At most this many test questions per subject (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write every prompt, its continuations and their scores here as JSON lines.
    #[arg(long)]
    pub dump_prompts: Option<PathBuf>,
    /// Directory for `mmlu-<protocol>.json` and `.md` (default: the `--model-dir` given; required
    /// for a checkpoint, which its run may prune).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// `cpu`, `tch-cpu` (builds with `--features tch`), `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Float type on CUDA.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Model input rows per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

/// Runs `eval-mc`.
pub fn run(args: Args) -> Result<()> {
    match args.device {
        DeviceSpec::Cpu => run_on::<CpuBackend>(&args, cpu_device()),
        #[cfg(feature = "tch")]
        DeviceSpec::TchCpu => {
            run_on::<mixlab_model::TchBackend>(&args, mixlab_model::tch_cpu_device())
        }
        #[cfg(not(feature = "tch"))]
        DeviceSpec::TchCpu => Err(mixlab_model::ModelError::TchNotBuilt.into()),
        DeviceSpec::Cuda(index) => {
            let device = cuda_device(index, args.precision.into())?;
            run_on::<CudaBackend>(&args, device)
        }
    }
}

fn run_on<B: ModelBackend>(args: &Args, device: B::Device) -> Result<()> {
    let located = locate(&args.model_dir)?;
    if matches!(located.source, Source::Checkpoint(_)) && args.out_dir.is_none() {
        // Its run prunes old checkpoints, and the report would go with the directory.
        bail!(
            "{} is a training checkpoint, which its run may delete: pass --out-dir for the report",
            args.model_dir.display()
        );
    }
    let model = located.load::<B>(&device)?;
    let tokenizer_path = match (&args.tokenizer, located.tokenizer()?) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) => path,
        (None, None) => bail!(
            "no tokenizer.json beside the model in {} and none in its run's prepared dataset: \
             pass --tokenizer with the model's tokenizer.json (a prepared dataset keeps it next \
             to its manifest.json)",
            args.model_dir.display()
        ),
    };
    if !tokenizer_path.is_file() {
        bail!("--tokenizer {} does not exist", tokenizer_path.display());
    }
    let tokenizer = load_tokenizer(&tokenizer_path)?;
    let mut scorer = ModelScorer::new(model, tokenizer, device)?.with_batch_size(args.batch_size);
    let dataset = McDataset::open(&args.data)?;
    let protocol: Protocol = args.protocol.into();
    let config = McConfig {
        protocol,
        num_fewshot: args.num_fewshot,
        seed: args.seed,
        subjects: args.subjects.clone(),
        limit_per_subject: args.limit,
        progress: true,
        ..McConfig::default()
    };
    let mut dump = args
        .dump_prompts
        .as_deref()
        .map(PromptDump::create)
        .transpose()?;
    let started = Instant::now();
    let report = evaluate_multiple_choice(&mut scorer, &dataset, &config, dump.as_mut())?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(dump) = dump {
        dump.finish()?;
    }

    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| args.model_dir.clone());
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let json = out_dir.join(format!("mmlu-{protocol}.json"));
    let markdown = out_dir.join(format!("mmlu-{protocol}.md"));
    report.write_json(&json)?;
    report.write_markdown(&markdown)?;

    let stats = scorer.stats();
    println!(
        "{}-shot {} ({protocol}): acc {:.2}% over {} questions{}; mean over subjects {:.2}%",
        report.num_fewshot,
        dataset.root().display(),
        100.0 * report.overall.acc,
        report.overall.questions,
        report
            .overall
            .acc_norm
            .map(|norm| format!(", acc_norm {:.2}%", 100.0 * norm))
            .unwrap_or_default(),
        100.0 * report.subject_mean_acc,
    );
    for category in &report.categories {
        println!(
            "  {:<16} {:>6.2}%  ({} questions)",
            category.category.label(),
            100.0 * category.accuracy.acc,
            category.accuracy.questions
        );
    }
    println!(
        "cropped {} prompts ({} examples dropped), truncated {}; {:.1} s, {:.1} questions/s, {:.0} tokens/s",
        report.prompts_cropped,
        report.examples_dropped,
        report.prompts_truncated,
        seconds,
        report.overall.questions as f64 / seconds.max(1e-9),
        stats.input_tokens as f64 / seconds.max(1e-9),
    );
    println!("wrote {} and {}", json.display(), markdown.display());
    if let Some(path) = &args.dump_prompts {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Arguments of `bench eval`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Benchmark in the hendrycks/test layout.
    #[arg(long, default_value = "../shared/data/mmlu")]
    pub data: PathBuf,
    /// Model preset, randomly initialised (throughput does not depend on the weights).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Tokenizer; by default a byte-level BPE of the preset's vocabulary size is trained on the
    /// benchmark's dev and test text.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Test questions per subject.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Only these subjects, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub subjects: Vec<String>,
    /// Model input rows per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// `cpu`, `tch-cpu` (builds with `--features tch`), `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `bench eval`: every protocol on the first `--limit` questions of each subject.
pub fn bench(args: BenchArgs) -> Result<()> {
    match args.device {
        DeviceSpec::Cpu => bench_on::<CpuBackend>(&args, cpu_device()),
        #[cfg(feature = "tch")]
        DeviceSpec::TchCpu => {
            bench_on::<mixlab_model::TchBackend>(&args, mixlab_model::tch_cpu_device())
        }
        #[cfg(not(feature = "tch"))]
        DeviceSpec::TchCpu => Err(mixlab_model::ModelError::TchNotBuilt.into()),
        DeviceSpec::Cuda(index) => {
            bench_on::<CudaBackend>(&args, cuda_device(index, Precision::F32)?)
        }
    }
}

/// The question and option texts of the chosen subjects' dev and test splits.
fn benchmark_text(dataset: &McDataset, subjects: &[String]) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for subject in subjects {
        let data = dataset.load_subject(subject)?;
        for question in data.dev.iter().chain(&data.test) {
            texts.push(question.question.clone());
            texts.extend(question.choices.iter().cloned());
        }
    }
    Ok(texts)
}

fn bench_on<B: ModelBackend>(args: &BenchArgs, device: B::Device) -> Result<()> {
    let dataset = McDataset::open(&args.data)?;
    let subjects = if args.subjects.is_empty() {
        dataset.subjects().to_vec()
    } else {
        dataset.select_subjects(&args.subjects)?
    };
    let preset = ModelConfig::preset(&args.preset)?;
    let started = Instant::now();
    let tokenizer = match &args.tokenizer {
        Some(path) => load_tokenizer(path)?,
        None => {
            let texts = benchmark_text(&dataset, &subjects)?;
            mixlab_data::tokenizer::train_bpe(preset.vocab_size, texts.iter())?
        }
    };
    let tokenizer_seconds = started.elapsed().as_secs_f64();
    let config = preset.with_vocab_size(tokenizer.get_vocab_size(true));
    let model = config.init_seeded::<B>(&device, args.seed)?;
    let mut scorer = ModelScorer::new(model, tokenizer, device)?.with_batch_size(args.batch_size);

    println!(
        "eval throughput: preset `{}` ({} params, window {}), {} subjects x {} questions, batch {}, {} ({:.1} s to get the tokenizer)",
        args.preset,
        config.num_params(),
        config.max_seq_len,
        subjects.len(),
        args.limit,
        args.batch_size,
        args.device,
        tokenizer_seconds,
    );
    println!(
        "| protocol | questions | requests | model rows | input tokens | padded tokens | prompts cropped | seconds | questions/s | tokens/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for protocol in Protocol::ALL {
        let mc = McConfig {
            protocol,
            subjects: subjects.clone(),
            limit_per_subject: Some(args.limit),
            ..McConfig::default()
        };
        let result = bench_multiple_choice(&mut scorer, &dataset, &mc)?;
        println!(
            "| {protocol} | {} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.0} |",
            result.questions,
            result.requests,
            result.rows,
            result.input_tokens,
            result.padded_tokens,
            result.report.prompts_cropped,
            result.seconds,
            result.questions_per_second,
            result.tokens_per_second,
        );
    }
    Ok(())
}
