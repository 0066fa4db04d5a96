//! `bench`: throughput tables for the data pipeline (and other parts as they land).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mixlab_data::{
    DomainStore, OpenOptions, PrepareConfig, Split, TokenizerSource, prepare_dataset,
};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure.
    #[command(subcommand)]
    pub target: Target,
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum Target {
    /// Ingest (prepare-data) and sampler throughput, with peak memory.
    Data(DataArgs),
    /// The whole training loop against the bare model step (the loop's own overhead).
    Train(crate::bench_train::Args),
    /// Multiple-choice evaluation throughput (questions/s, tokens/s) of a random model preset.
    Eval(crate::eval_mc::BenchArgs),
}

/// Arguments of `bench data`.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Corpus to ingest (default: the shared mini-pile next to the repository).
    #[arg(long, default_value = "../shared/data/mini-pile")]
    pub input: PathBuf,
    /// Tokenizer: `train:VOCAB` or a tokenizer.json.
    #[arg(long, default_value = "train:8192")]
    pub tokenizer: String,
    /// Context length of the prepared sequences.
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Sequences drawn in the sampler benchmark.
    #[arg(long, default_value_t = 200_000)]
    pub samples: u64,
}

/// Runs `bench`.
pub fn run(args: Args) -> Result<()> {
    match args.target {
        Target::Data(a) => bench_data(a),
        Target::Train(a) => crate::bench_train::run(a),
        Target::Eval(a) => crate::eval_mc::bench(a),
    }
}

/// Peak resident memory of this process in MiB (VmHWM), where /proc is available.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn bench_data(args: DataArgs) -> Result<()> {
    if !args.input.exists() {
        bail!(
            "{} does not exist: pass --input with a Pile-format corpus",
            args.input.display()
        );
    }
    let tmp = tempfile_dir()?;
    let out = tmp.join("dataset");
    let tokenizer: TokenizerSource = args.tokenizer.parse()?;
    let config = PrepareConfig::new(
        vec![args.input.clone()],
        out.clone(),
        tokenizer,
        args.seq_len,
    );
    let report = prepare_dataset(&config).context("ingest benchmark")?;
    let secs = report.ingest_time.as_secs_f64();
    let rss_after_ingest = peak_rss_mib();

    let store = DomainStore::open(&out, &OpenOptions::default())?;
    let mut samplers = store
        .domain_names()
        .iter()
        .map(|d| store.sampler(d, Split::Train, 0))
        .collect::<mixlab_data::Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut checksum = 0u64;
    for i in 0..args.samples {
        let k = (i % samplers.len() as u64) as usize;
        checksum = checksum.wrapping_add(samplers[k].next_sequence()?[0] as u64);
    }
    let sample_secs = start.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    std::fs::remove_dir_all(&tmp).ok();

    println!("| measurement | value |");
    println!("|---|---|");
    println!("| input | {} |", args.input.display());
    println!(
        "| threads (rayon) | {} |",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| tokenizer training | {:.1} s |",
        report.tokenizer_time.as_secs_f64()
    );
    println!("| ingest: documents | {} |", report.documents);
    println!(
        "| ingest: text | {:.1} MB in {:.2} s = {:.2} MB/s |",
        report.input_bytes as f64 / 1e6,
        secs,
        report.input_bytes as f64 / 1e6 / secs
    );
    println!(
        "| ingest: tokens | {} = {:.0} tokens/s |",
        report.tokens,
        report.tokens as f64 / secs
    );
    println!(
        "| sampler: sequences of {} tokens | {} in {:.2} s = {:.0} seq/s ({:.1} M tokens/s) |",
        args.seq_len + 1,
        args.samples,
        sample_secs,
        args.samples as f64 / sample_secs,
        args.samples as f64 * (args.seq_len + 1) as f64 / sample_secs / 1e6
    );
    if let (Some(a), Some(b)) = (rss_after_ingest, rss) {
        println!("| peak RSS after ingest / after sampling | {a:.0} MiB / {b:.0} MiB |");
    }
    tracing::debug!(checksum, "sampler checksum");
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("mixlab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
