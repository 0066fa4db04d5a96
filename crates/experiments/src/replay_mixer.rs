//! `experiments replay-mixer`: recorded per-domain feedback through any registered mixer,
//! without training. The parsing and the replay live in mixlab-mixing; this is the CLI.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use mixlab_mixing::{DomainSet, FeedbackLog, MixerContext, MixerRegistry, replay, replay_context};

use crate::mixers;

/// Arguments of `replay-mixer`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Mixer config: a TOML file with `kind = "..."` at the top, or an experiment config with a
    /// `[mixer]` table. Relative paths inside it are relative to the file.
    #[arg(long)]
    mixer: PathBuf,
    /// Recorded feedback, one JSON object a line: `{"step": 1, "feedback": {"<domain>":
    /// {"loss_sum": .., "loss_mean": .., "loss_count": .., ...}}}`; a run's metrics.jsonl works too.
    #[arg(long)]
    feedback: PathBuf,
    /// Domains when the feedback file has no header line: `pile` (the 22 Pile domains) or a
    /// comma-separated list of names.
    #[arg(long, default_value = "pile")]
    domains: String,
    /// Vocabulary size (DoReMi's initial excess loss is its logarithm) when the header gives none.
    #[arg(long)]
    vocab_size: Option<usize>,
    /// At the end, write the mixer's output weight table (DoReMi: its averaged weights) to this
    /// TOML file, ready for `kind = "static"`.
    #[arg(long)]
    export_table: Option<PathBuf>,
    /// Write the JSON lines to this file instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Replays the feedback and prints one JSON line per step: `{"step", "weights",
/// "loss_weights"?, "internals"?}`; line `step = t` holds the weights for step t + 1 and the
/// first line (`step = 0`) the weights before any feedback.
pub fn run(args: Args) -> Result<()> {
    let config = MixerRegistry::load_config(&args.mixer)?;
    let log = FeedbackLog::read(&args.feedback)?;
    let domains = if args.domains == "pile" {
        DomainSet::pile()
    } else {
        DomainSet::new(args.domains.split(',').map(str::trim)).context("--domains")?
    };
    let mut fallback = MixerContext::new(domains);
    if let Some(dir) = args.mixer.parent() {
        fallback = fallback.with_base_dir(dir);
    }
    if let Some(v) = args.vocab_size {
        fallback = fallback.with_vocab_size(v);
    }
    let ctx = replay_context(&log, fallback)?;
    let mut mixer = mixers::registry()
        .build(&config, &ctx)
        .with_context(|| format!("building the mixer of {}", args.mixer.display()))?;

    let steps = match &args.output {
        // The output appears whole or not at all (a replay stopped half-way leaves no file).
        Some(path) => {
            let mut steps = 0;
            mixlab_atomic::write_file_with(path, |tmp| -> Result<()> {
                let file = std::fs::File::create(tmp)
                    .with_context(|| format!("creating {}", path.display()))?;
                let mut out = std::io::BufWriter::new(file);
                steps = replay(mixer.as_mut(), &log, &mut out)?;
                out.flush()
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(())
            })?;
            steps
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let steps = replay(mixer.as_mut(), &log, &mut out)?;
            out.flush().context("writing the replay output")?;
            steps
        }
    };
    tracing::info!(
        steps,
        skipped_lines = log.skipped,
        mixer = mixer.kind(),
        "replayed {}",
        args.feedback.display()
    );

    if let Some(path) = &args.export_table {
        let Some(table) = mixer.output_table() else {
            bail!(
                "mixer `{}` produces no weight table to export",
                mixer.kind()
            );
        };
        let comment = format!(
            "{}\nreplayed by `experiments replay-mixer` from {} with {}",
            table.origin(),
            args.feedback.display(),
            args.mixer.display()
        );
        table.write_toml(path, &comment)?;
        tracing::info!(path = %path.display(), "wrote the output weight table");
    }
    Ok(())
}
