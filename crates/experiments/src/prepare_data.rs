//! `prepare-data`: tokenize a Pile-format corpus into a mixlab dataset.

use std::path::PathBuf;

use anyhow::{Context, Result};
use mixlab_data::corpus::{BadLinePolicy, FieldPointers};
use mixlab_data::{PrepareConfig, TokenizerSource, prepare_dataset};

/// Arguments of `prepare-data`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Corpus: a Pile-layout directory (train/*.jsonl.zst, val.jsonl.zst, test.jsonl.zst), a
    /// directory of *.jsonl[.zst] files, or files.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// `train:VOCAB` to train a byte-level BPE on the training split, or a tokenizer.json
    /// (GPT-NeoX-20B's for the paper's setup).
    #[arg(long)]
    pub tokenizer: String,
    /// Model context length; sequences are stored with seq_len + 1 tokens.
    #[arg(long)]
    pub seq_len: usize,
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// `error` stops at the first malformed line; `skip` skips and counts in the manifest.
    #[arg(long, default_value = "error")]
    pub on_bad_line: BadLinePolicy,
    /// JSON pointer of the domain name in each line.
    #[arg(long, default_value = "/meta/pile_set_name")]
    pub domain_field: String,
    /// JSON pointer of the text in each line.
    #[arg(long, default_value = "/text")]
    pub text_field: String,
    /// End-of-document token appended after every document.
    #[arg(long, default_value = "<|endoftext|>")]
    pub eod_token: String,
    /// Fraction held out per domain for val (and again for test) when the corpus has no own splits.
    #[arg(long, default_value_t = 0.01)]
    pub holdout_fraction: f64,
    /// Minimum documents per domain in val and in test for hash-based hold-out.
    #[arg(long, default_value_t = 5)]
    pub holdout_min_documents: u64,
    /// At most this many bytes of text train the BPE tokenizer.
    #[arg(long, default_value_t = 100_000_000)]
    pub tokenizer_train_bytes: u64,
    /// Replace an existing output directory once the new one is complete.
    #[arg(long)]
    pub overwrite: bool,
}

/// Runs `prepare-data`.
pub fn run(args: Args) -> Result<()> {
    let tokenizer: TokenizerSource = args.tokenizer.parse()?;
    let mut config = PrepareConfig::new(args.input, args.out.clone(), tokenizer, args.seq_len);
    config.on_bad_line = args.on_bad_line;
    config.fields = FieldPointers {
        text: args.text_field,
        domain: args.domain_field,
    };
    config.eod_token = args.eod_token;
    config.holdout_fraction = args.holdout_fraction;
    config.holdout_min_documents = args.holdout_min_documents;
    config.tokenizer_train_bytes = args.tokenizer_train_bytes;
    config.overwrite = args.overwrite;
    config.progress = true;
    let report =
        prepare_dataset(&config).with_context(|| format!("preparing {}", args.out.display()))?;
    let m = &report.manifest;
    let secs = report.ingest_time.as_secs_f64().max(1e-9);
    println!(
        "wrote {} ({} domains, vocab {}, {:?} tokens, seq_len {})",
        args.out.display(),
        m.domains.len(),
        m.vocab_size,
        m.token_dtype,
        m.seq_len
    );
    println!(
        "{} documents, {:.1} MB of text, {} tokens in {:.1}s ({:.2} MB/s, {:.0} tokens/s); tokenizer {:.1}s",
        report.documents,
        report.input_bytes as f64 / 1e6,
        report.tokens,
        secs,
        report.input_bytes as f64 / 1e6 / secs,
        report.tokens as f64 / secs,
        report.tokenizer_time.as_secs_f64()
    );
    println!(
        "{:<24} {:>10} {:>10} {:>10}",
        "domain", "train seq", "val seq", "test seq"
    );
    for d in &m.domains {
        let n = |s| d.splits.get(&s).map_or(0, |x| x.sequences);
        use mixlab_data::Split::*;
        println!(
            "{:<24} {:>10} {:>10} {:>10}",
            d.name,
            n(Train),
            n(Val),
            n(Test)
        );
    }
    for (split, skipped) in &m.skipped_lines {
        if skipped.count > 0 {
            println!("skipped {} bad lines in {split}", skipped.count);
        }
    }
    Ok(())
}
