//! `model-info`: architecture, parameter counts and FLOPs per token of a model preset, computed
//! from the config alone (nothing is allocated, so `paper-1b` is instant on a laptop).

use anyhow::Result;
use mixlab_model::{ModelConfig, PRESET_NAMES};

/// Arguments of `model-info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model preset: tiny, small, pythia-160m, pythia-410m or paper-1b.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Tokenizer vocabulary size to use instead of the preset's (before padding to 128).
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Print the resolved config and the numbers as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `model-info`.
pub fn run(args: Args) -> Result<()> {
    let mut config = ModelConfig::preset(&args.preset)?;
    if let Some(vocab_size) = args.vocab_size {
        config = config.with_vocab_size(vocab_size);
    }
    config.validate()?;
    if args.json {
        let report = serde_json::json!({
            "preset": args.preset,
            "config": config,
            "padded_vocab_size": config.padded_vocab_size(),
            "params": config.num_params(),
            "non_embedding_params": config.num_non_embedding_params(),
            "forward_flops_per_token": config.forward_flops_per_token(),
            "training_flops_per_token": config.training_flops_per_token(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let embedding = config.embedding_params();
    println!(
        "preset {} (presets: {})",
        args.preset,
        PRESET_NAMES.join(", ")
    );
    println!("{}", config.describe());
    println!(
        "parameters: {} total, {} non-embedding (input embedding {} + output head {}; {} per block)",
        grouped(config.num_params()),
        grouped(config.num_non_embedding_params()),
        grouped(embedding),
        grouped(embedding),
        grouped(config.params_per_layer()),
    );
    println!(
        "FLOPs per token at sequence length {}: forward {}, training (3x forward) {}; 6N = {}",
        config.max_seq_len,
        flops(config.forward_flops_per_token()),
        flops(config.training_flops_per_token()),
        flops(6.0 * config.num_params() as f64),
    );
    Ok(())
}

/// A FLOP count with a unit that keeps three significant digits visible.
fn flops(value: f64) -> String {
    if value >= 1e9 {
        format!("{:.3} GFLOP", value / 1e9)
    } else {
        format!("{:.3} MFLOP", value / 1e6)
    }
}

/// `1011781632` → `1,011,781,632`.
fn grouped(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
