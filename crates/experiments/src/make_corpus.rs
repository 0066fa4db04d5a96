//! `make-corpus`: write the built-in synthetic corpus and its multiple-choice set.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use mixlab_data::Split;
use mixlab_data::synthetic::{SyntheticConfig, generate_corpus};

/// Arguments of `make-corpus`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (Pile layout plus `mc/data/{dev,val,test}`); must not exist unless --overwrite.
    #[arg(long)]
    pub out: PathBuf,
    /// Master seed [default: 0, or the config file's].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Multiplies every domain's size; 1.0 is about 11.5 MB of training text [default: 1.0, or
    /// the config file's].
    #[arg(long)]
    pub scale: Option<f64>,
    /// A corpus configuration (domains and their sizes, hold-out, ...) as TOML, or as JSON when
    /// the name ends in `.json` (a corpus's `synthetic-config.json`); --seed and --scale
    /// override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Replace an existing output directory once the new one is complete.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `make-corpus`.
pub fn run(args: Args) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            // A corpus's own `synthetic-config.json` reads back as it was written.
            let parsed = if path.extension().is_some_and(|e| e == "json") {
                serde_json::from_str::<SyntheticConfig>(&text).map_err(anyhow::Error::from)
            } else {
                toml::from_str::<SyntheticConfig>(&text).map_err(anyhow::Error::from)
            };
            parsed.with_context(|| format!("parsing {}", path.display()))?
        }
        None => SyntheticConfig::default(),
    };
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(scale) = args.scale {
        config.scale = scale;
    }
    let start = Instant::now();
    let report = generate_corpus(&config, &args.out, args.overwrite)
        .with_context(|| format!("writing the synthetic corpus to {}", args.out.display()))?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let mb = report.total_bytes() as f64 / 1e6;
    println!(
        "wrote {} (seed {}, scale {}): {mb:.1} MB of text in {secs:.2}s ({:.1} MB/s)",
        args.out.display(),
        config.seed,
        config.scale,
        mb / secs
    );
    println!(
        "{:<16} {:>10} {:>9} {:>8} {:>8}  property",
        "domain", "train docs", "train MB", "val docs", "test docs"
    );
    for d in &report.domains {
        let s = |split| d.splits.get(&split).copied().unwrap_or_default();
        println!(
            "{:<16} {:>10} {:>9.3} {:>8} {:>8}  {}",
            d.name,
            s(Split::Train).documents,
            s(Split::Train).bytes as f64 / 1e6,
            s(Split::Val).documents,
            s(Split::Test).documents,
            d.property
        );
    }
    println!("multiple choice (mc/data, hendrycks layout):");
    for s in &report.subjects {
        println!(
            "  {:<20} {:>3} dev, {:>3} val, {:>4} test rows, learnable from {}",
            s.name, s.dev_rows, s.val_rows, s.test_rows, s.domain
        );
    }
    println!(
        "next: cargo run --release -p experiments -- prepare-data --input {} --tokenizer train:4096 --seq-len 128 --out DATASET",
        args.out.display()
    );
    Ok(())
}
