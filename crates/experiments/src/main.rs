//! `experiments`: the mixlab command line.
//!
//! Each subcommand lives in its own module; `main` only parses arguments and dispatches.

mod bench;
mod bench_train;
mod eval_mc;
mod eval_ppl;
mod list_mixers;
mod make_corpus;
mod mixers;
mod model_info;
mod model_source;
mod prepare_data;
mod replay_mixer;
mod reproduce;
mod stop;
mod train_cmd;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// mixlab: data mixing for language-model pre-training.
#[derive(Debug, Parser)]
#[command(name = "experiments", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train one run from a TOML config (resumable; see configs/).
    Train(train_cmd::Args),
    /// Per-domain perplexity of a trained model (run dir, final/ or checkpoint) on val or test.
    Eval(eval_ppl::Args),
    /// Tokenize a Pile-format corpus into per-domain Parquet shards.
    PrepareData(prepare_data::Args),
    /// Write the built-in synthetic corpus (Pile format) and its multiple-choice set.
    MakeCorpus(make_corpus::Args),
    /// Print throughput tables (data pipeline, ...).
    Bench(bench::Args),
    /// Print a model preset's architecture, parameter counts and FLOPs per token.
    ModelInfo(model_info::Args),
    /// 5-shot multiple choice (MMLU) of a saved model, in the `harness` or the `paper` protocol.
    EvalMc(eval_mc::Args),
    /// Print the registered mixers with their parameters, and the named weight tables.
    ListMixers(list_mixers::Args),
    /// Replay recorded per-domain feedback (JSON lines) through a mixer, without training.
    ReplayMixer(replay_mixer::Args),
    /// The paper's comparison end to end: TPW, DoReMi (published and computed), ODM (both
    /// rules), uniform; then report.md with Table 1 and Figures 1, 3 and 4. Resumable.
    Reproduce(reproduce::Args),
    /// ODM's exploration schedule, smoothing and sampling granularity, compared (resumable).
    AblateExploration(reproduce::Args),
    /// Re-render report.md and the figures of a reproduce/ablate-exploration results directory.
    Report(reproduce::ReportArgs),
    /// One run of a results directory's plan (a child process of `reproduce --jobs N`).
    #[command(hide = true)]
    ReproduceRun(reproduce::RunArgs),
}

fn main() -> ExitCode {
    init_logging();
    // Before the first tensor: large temporaries then stay in the heap between training steps.
    match mixlab_malloc::keep_freed_memory() {
        mixlab_malloc::Tuning::Unsupported => {}
        tuning @ mixlab_malloc::Tuning::Refused(_) => tracing::warn!("{tuning}"),
        tuning => tracing::debug!("{tuning}"),
    }
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // A stop (Ctrl-C, SIGTERM) is a normal, resumable end: its message and the signal's
        // exit status, no error or stack trace.
        Err(error) => match stop::as_stopped(&error) {
            Some(stopped) => {
                eprintln!("{stopped}");
                ExitCode::from(stop::exit_status())
            }
            None => {
                eprintln!("Error: {error:?}");
                ExitCode::FAILURE
            }
        },
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::PrepareData(args) => prepare_data::run(args),
        Command::MakeCorpus(args) => make_corpus::run(args),
        Command::Bench(args) => bench::run(args),
        Command::ModelInfo(args) => model_info::run(args),
        Command::EvalMc(args) => eval_mc::run(args),
        Command::ListMixers(args) => list_mixers::run(args),
        Command::ReplayMixer(args) => replay_mixer::run(args),
        Command::Train(args) => train_cmd::run(args),
        Command::Eval(args) => eval_ppl::run(args),
        Command::Reproduce(args) => reproduce::run(reproduce::PlanKind::Reproduce, args),
        Command::AblateExploration(args) => {
            reproduce::run(reproduce::PlanKind::AblateExploration, args)
        }
        Command::Report(args) => reproduce::run_report(args),
        Command::ReproduceRun(args) => reproduce::run_child(args),
    }
}

/// Logs go to stderr through `tracing`; `RUST_LOG` overrides the default `info` level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
