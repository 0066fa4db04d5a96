//! `prepare-data`: corpus → tokenizer → packed per-domain Parquet shards + `manifest.json`.
//!
//! # Packing
//! Per domain and split, documents are tokenized, each followed by the end-of-document token
//! (GPT-NeoX's `--append-eod`), and concatenated in corpus order. The stream is cut into
//! sequences of `seq_len + 1` tokens with a stride of `seq_len`, as GPT-NeoX's GPTDataset does:
//! consecutive sequences share one boundary token, so every token is a training target exactly
//! once. A sequence never mixes domains or splits. Tokens left at the end of a stream that do not
//! fill a last sequence are dropped and counted in the manifest (`dropped_tokens`); padding them
//! would train on padding.
//!
//! # Hold-out
//! A corpus with its own `val`/`test` files (the Pile) keeps them. Otherwise each domain's first
//! `2 * min_documents` documents (in corpus order) alternate between val and test, and every
//! later document goes to val or test when a 64-bit FNV-1a hash of its text falls below
//! `fraction` (resp. in `[fraction, 2 * fraction)`), else to train: deterministic, streaming, and
//! stable when documents are added.
//!
//! # Atomicity
//! Everything is written into a hidden sibling directory `.<name>.<random>.partial` which is renamed
//! to the output path only when the manifest is complete; on error it is removed. An interrupted
//! run therefore never leaves anything at the output path.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::corpus::{
    BadLinePolicy, CorpusReader, Document, FieldPointers, InputLayout, SkippedLine, Split,
};
use crate::error::{DataError, Result};
use crate::hash::fnv1a;
use crate::manifest::{
    DomainManifest, FORMAT_VERSION, HoldoutInfo, Manifest, SkippedLines, SplitStats, TokenDtype,
    domain_slug,
};
use crate::shard::ShardWriter;
use crate::tokenizer::{TokenizerSource, eod_id, load_tokenizer, sha256_file, train_bpe};

/// Everything `prepare-data` needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareConfig {
    /// Corpus files or directories (a Pile-layout directory, a directory of `*.jsonl[.zst]`, or files).
    pub inputs: Vec<PathBuf>,
    /// Output dataset directory; must not exist unless `overwrite` is set.
    pub out: PathBuf,
    /// `train:VOCAB` to train a byte-level BPE, or a path to a `tokenizer.json`.
    #[serde(with = "tokenizer_source_serde")]
    pub tokenizer: TokenizerSource,
    /// The end-of-document token appended after every document.
    pub eod_token: String,
    /// Model context length; sequences are stored with `seq_len + 1` tokens.
    pub seq_len: usize,
    /// Where the text and the domain are in each JSON line.
    pub fields: FieldPointers,
    /// What to do with a malformed line.
    pub on_bad_line: BadLinePolicy,
    /// Fraction of each domain held out for val (and again for test) when the corpus has no own splits.
    pub holdout_fraction: f64,
    /// Documents per domain that go to val and to test at least (when the domain has enough).
    pub holdout_min_documents: u64,
    /// At most this many bytes of training text are used to train a BPE tokenizer.
    pub tokenizer_train_bytes: u64,
    /// Target size of a Parquet row group in bytes (the unit of reading and shuffling).
    pub row_group_bytes: usize,
    /// Row groups per shard file.
    pub row_groups_per_shard: usize,
    /// Documents tokenized together (in parallel) per batch.
    pub batch_documents: usize,
    /// Replace an existing output directory (only once the new one is complete).
    pub overwrite: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

mod tokenizer_source_serde {
    use super::TokenizerSource;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &TokenizerSource, s: S) -> Result<S::Ok, S::Error> {
        match v {
            TokenizerSource::File(p) => s.serialize_str(&p.display().to_string()),
            TokenizerSource::Train { vocab_size } => {
                s.serialize_str(&format!("train:{vocab_size}"))
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TokenizerSource, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl PrepareConfig {
    /// A configuration with mixlab's defaults for the given inputs, output, tokenizer and context.
    pub fn new(
        inputs: Vec<PathBuf>,
        out: PathBuf,
        tokenizer: TokenizerSource,
        seq_len: usize,
    ) -> Self {
        PrepareConfig {
            inputs,
            out,
            tokenizer,
            eod_token: crate::tokenizer::DEFAULT_EOD_TOKEN.to_string(),
            seq_len,
            fields: FieldPointers::default(),
            on_bad_line: BadLinePolicy::Error,
            holdout_fraction: 0.01,
            holdout_min_documents: 5,
            tokenizer_train_bytes: 100_000_000,
            row_group_bytes: 1 << 20,
            row_groups_per_shard: 64,
            batch_documents: 256,
            overwrite: false,
            progress: false,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.seq_len < 1 {
            return Err(DataError::config("seq_len", "must be at least 1"));
        }
        if !(0.0..0.5).contains(&self.holdout_fraction) || self.holdout_fraction.is_nan() {
            return Err(DataError::config(
                "holdout_fraction",
                format!("{} is not in [0, 0.5)", self.holdout_fraction),
            ));
        }
        if self.row_groups_per_shard == 0 {
            return Err(DataError::config(
                "row_groups_per_shard",
                "must be at least 1",
            ));
        }
        if self.batch_documents == 0 {
            return Err(DataError::config("batch_documents", "must be at least 1"));
        }
        Ok(())
    }
}

/// What a finished preparation produced, with timings for benchmarks.
#[derive(Debug, Clone)]
pub struct PrepareReport {
    /// The manifest written.
    pub manifest: Manifest,
    /// Decompressed bytes of input read (all splits).
    pub input_bytes: u64,
    /// Documents read.
    pub documents: u64,
    /// Tokens produced.
    pub tokens: u64,
    /// Wall time of the tokenize-and-pack pass (tokenizer training excluded).
    pub ingest_time: Duration,
    /// Wall time of tokenizer training (zero when a file was given).
    pub tokenizer_time: Duration,
}

/// Counts bytes read from the underlying (compressed) file, for the progress bar's ETA.
struct CountingFile {
    inner: File,
    counter: Arc<AtomicU64>,
}

impl Read for CountingFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// How documents of a group of files are assigned to splits.
#[derive(Debug, Clone, Copy)]
enum Assign {
    Fixed(Split),
    Hash,
}

struct HashHoldout {
    fraction: f64,
    min_documents: u64,
    seen: HashMap<String, u64>,
}

impl HashHoldout {
    fn assign(&mut self, doc: &Document) -> Split {
        let seen = self.seen.entry(doc.domain.clone()).or_insert(0);
        let k = *seen;
        *seen += 1;
        if k < 2 * self.min_documents {
            return if k.is_multiple_of(2) {
                Split::Val
            } else {
                Split::Test
            };
        }
        let x = fnv1a(doc.text.as_bytes()) as f64 / (u64::MAX as f64 + 1.0);
        if x < self.fraction {
            Split::Val
        } else if x < 2.0 * self.fraction {
            Split::Test
        } else {
            Split::Train
        }
    }
}

/// Per (split, domain) packing state.
struct Packer {
    buffer: Vec<u32>,
    writer: ShardWriter,
    stats: SplitStats,
}

struct Message {
    docs: Vec<(Split, Document)>,
}

enum Event {
    Batch(Message),
    Skipped(Split, u64, Vec<SkippedLine>, u64),
    Failed(DataError),
}

/// Prepares a dataset; see the module docs for what is written.
pub fn prepare_dataset(config: &PrepareConfig) -> Result<PrepareReport> {
    config.validate()?;
    let layout = InputLayout::discover(&config.inputs)?;
    crate::atomic::write_dir_atomically(&config.out, config.overwrite, |tmp| {
        prepare_into(config, &layout, tmp)
    })
}

fn obtain_tokenizer(
    config: &PrepareConfig,
    layout: &InputLayout,
    tmp: &Path,
) -> Result<(Tokenizer, Duration)> {
    let dest = tmp.join("tokenizer.json");
    match &config.tokenizer {
        TokenizerSource::File(path) => {
            let tok = load_tokenizer(path)?;
            // Copied byte for byte so the recorded hash is that of the user's file.
            std::fs::copy(path, &dest).map_err(|e| DataError::io(path, e))?;
            Ok((tok, Duration::ZERO))
        }
        TokenizerSource::Train { vocab_size } => {
            let start = Instant::now();
            let files = if layout.has_own_holdout() {
                layout.train.clone()
            } else {
                // Without own splits the hold-out is decided while reading; the tokenizer sees a
                // prefix of the training files that may include held-out documents. Held-out text
                // shaping the vocabulary is harmless for perplexity comparisons between mixers.
                layout.train.clone()
            };
            let reader = CorpusReader::new(files, config.fields.clone(), BadLinePolicy::Skip);
            let cap = config.tokenizer_train_bytes;
            let mut used = 0u64;
            let texts = reader
                .filter_map(|d| d.ok())
                .take_while(move |d| {
                    let keep = used < cap;
                    used += d.text.len() as u64;
                    keep
                })
                .map(|d| d.text);
            let tok = train_bpe(*vocab_size, texts)?;
            tok.save(&dest, false).map_err(|e| DataError::Tokenizer {
                what: dest.display().to_string(),
                reason: e.to_string(),
            })?;
            Ok((tok, start.elapsed()))
        }
    }
}

fn prepare_into(config: &PrepareConfig, layout: &InputLayout, tmp: &Path) -> Result<PrepareReport> {
    let (tokenizer, tokenizer_time) = obtain_tokenizer(config, layout, tmp)?;
    let tokenizer_file = tmp.join("tokenizer.json");
    let what = tokenizer_file.display().to_string();
    let eod = eod_id(&tokenizer, &config.eod_token, &what)?;
    let vocab_size = tokenizer.get_vocab_size(true);
    let dtype = TokenDtype::for_vocab(vocab_size);
    let width = config.seq_len + 1;
    let rows_per_row_group = (config.row_group_bytes / (width * dtype.bytes())).max(1);

    let jobs: Vec<(Vec<PathBuf>, Assign)> = if layout.has_own_holdout() {
        vec![
            (layout.train.clone(), Assign::Fixed(Split::Train)),
            (layout.val.clone(), Assign::Fixed(Split::Val)),
            (layout.test.clone(), Assign::Fixed(Split::Test)),
        ]
    } else {
        vec![(layout.train.clone(), Assign::Hash)]
    };
    let total_bytes: u64 = jobs
        .iter()
        .flat_map(|(files, _)| files.iter())
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let counter = Arc::new(AtomicU64::new(0));
    let bar = if config.progress {
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} prepare [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}",
            )
            .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Event>(4);
    let holdout = HoldoutInfo::Hash {
        fraction: config.holdout_fraction,
        min_documents: config.holdout_min_documents,
    };
    let reader_cfg = config.clone();
    let reader_counter = counter.clone();
    let reader_jobs = jobs.clone();
    let reader = std::thread::spawn(move || {
        read_documents(reader_cfg, reader_jobs, reader_counter, tx);
    });

    let mut packers: BTreeMap<(Split, String), Packer> = BTreeMap::new();
    let mut slugs: HashMap<String, String> = HashMap::new();
    let mut skipped: BTreeMap<Split, SkippedLines> = BTreeMap::new();
    let mut input_bytes = 0u64;
    let mut documents = 0u64;
    let mut tokens = 0u64;
    let mut failure = None;
    for event in rx {
        match event {
            Event::Failed(e) => {
                failure = Some(e);
                break;
            }
            Event::Skipped(split, count, examples, bytes) => {
                let entry = skipped.entry(split).or_default();
                entry.count += count;
                entry.examples.extend(examples);
                input_bytes += bytes;
            }
            Event::Batch(msg) => {
                let texts: Vec<&str> = msg.docs.iter().map(|(_, d)| d.text.as_str()).collect();
                let encodings = tokenizer.encode_batch_fast(texts, false).map_err(|e| {
                    DataError::Tokenizer {
                        what: what.clone(),
                        reason: e.to_string(),
                    }
                })?;
                for ((split, doc), enc) in msg.docs.iter().zip(encodings) {
                    let slug = match slugs.get(&doc.domain) {
                        Some(s) => s.clone(),
                        None => {
                            let s = domain_slug(&doc.domain);
                            if let Some((other, _)) = slugs.iter().find(|(_, v)| **v == s) {
                                return Err(DataError::Domain {
                                    domain: doc.domain.clone(),
                                    reason: format!(
                                        "its directory name `{s}` collides with domain `{other}`"
                                    ),
                                });
                            }
                            slugs.insert(doc.domain.clone(), s.clone());
                            s
                        }
                    };
                    let packer = packers
                        .entry((*split, doc.domain.clone()))
                        .or_insert_with(|| Packer {
                            buffer: Vec::with_capacity(2 * width),
                            writer: ShardWriter::new(
                                tmp,
                                format!("{}/{}", split.as_str(), slug),
                                dtype,
                                width,
                                rows_per_row_group,
                                config.row_groups_per_shard,
                            ),
                            stats: SplitStats::default(),
                        });
                    let ids = enc.get_ids();
                    packer.stats.documents += 1;
                    packer.stats.bytes += doc.text.len() as u64;
                    packer.stats.tokens += ids.len() as u64 + 1;
                    documents += 1;
                    tokens += ids.len() as u64 + 1;
                    packer.buffer.extend_from_slice(ids);
                    packer.buffer.push(eod);
                    while packer.buffer.len() >= width {
                        packer.writer.push(&packer.buffer[..width])?;
                        packer.stats.sequences += 1;
                        packer.buffer.drain(..config.seq_len);
                    }
                }
                bar.set_position(counter.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{documents} docs, {:.0} docs/s",
                    documents as f64 / start.elapsed().as_secs_f64().max(1e-9)
                ));
            }
        }
    }
    reader.join().expect("reader thread does not panic");
    if let Some(e) = failure {
        bar.abandon();
        return Err(e);
    }
    bar.finish_and_clear();

    let mut domains: BTreeMap<String, DomainManifest> = BTreeMap::new();
    for ((split, name), packer) in packers {
        let mut stats = packer.stats;
        stats.dropped_tokens = packer.buffer.len() as u64;
        stats.shards = packer.writer.finish()?;
        let entry = domains
            .entry(name.clone())
            .or_insert_with(|| DomainManifest {
                slug: slugs[&name].clone(),
                name: name.clone(),
                splits: Split::ALL
                    .iter()
                    .map(|s| (*s, SplitStats::default()))
                    .collect(),
            });
        entry.splits.insert(split, stats);
    }
    for d in domains.values() {
        for (split, stats) in &d.splits {
            if stats.sequences == 0 {
                tracing::warn!(
                    domain = %d.name,
                    split = %split,
                    tokens = stats.tokens,
                    "domain has no complete sequence of {width} tokens in this split"
                );
            }
        }
    }
    let inputs = jobs
        .iter()
        .map(|(files, assign)| {
            let split = match assign {
                Assign::Fixed(s) => *s,
                Assign::Hash => Split::Train,
            };
            (
                split,
                files.iter().map(|f| f.display().to_string()).collect(),
            )
        })
        .collect();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        tokenizer_file: "tokenizer.json".into(),
        tokenizer_sha256: sha256_file(&tokenizer_file)?,
        vocab_size,
        eod_id: eod,
        seq_len: config.seq_len,
        token_dtype: dtype,
        rows_per_row_group,
        inputs,
        holdout: if layout.has_own_holdout() {
            HoldoutInfo::CorpusFiles
        } else {
            holdout
        },
        skipped_lines: skipped,
        domains: domains.into_values().collect(),
    };
    // Saved with the dataset so anyone can see how it was made.
    let cfg_path = tmp.join("prepare-config.json");
    std::fs::write(
        &cfg_path,
        serde_json::to_string_pretty(config).expect("config serialises"),
    )
    .map_err(|e| DataError::io(&cfg_path, e))?;
    manifest.save(tmp)?;
    Ok(PrepareReport {
        manifest,
        input_bytes,
        documents,
        tokens,
        ingest_time: start.elapsed(),
        tokenizer_time,
    })
}

fn read_documents(
    config: PrepareConfig,
    jobs: Vec<(Vec<PathBuf>, Assign)>,
    counter: Arc<AtomicU64>,
    tx: std::sync::mpsc::SyncSender<Event>,
) {
    let mut holdout = HashHoldout {
        fraction: config.holdout_fraction,
        min_documents: config.holdout_min_documents,
        seen: HashMap::new(),
    };
    for (files, assign) in jobs {
        let split_of_skips = match assign {
            Assign::Fixed(s) => s,
            Assign::Hash => Split::Train,
        };
        let mut reader = CorpusReader::with_opener(
            files,
            config.fields.clone(),
            config.on_bad_line,
            counting_opener(counter.clone()),
        );
        let mut batch = Vec::with_capacity(config.batch_documents);
        loop {
            match reader.next() {
                None => break,
                Some(Err(e)) => {
                    let _ = tx.send(Event::Failed(e));
                    return;
                }
                Some(Ok(doc)) => {
                    let split = match assign {
                        Assign::Fixed(s) => s,
                        Assign::Hash => holdout.assign(&doc),
                    };
                    batch.push((split, doc));
                    if batch.len() == config.batch_documents {
                        let docs = std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(config.batch_documents),
                        );
                        if tx.send(Event::Batch(Message { docs })).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if !batch.is_empty() && tx.send(Event::Batch(Message { docs: batch })).is_err() {
            return;
        }
        let examples = std::mem::take(&mut reader.skipped_examples);
        if tx
            .send(Event::Skipped(
                split_of_skips,
                reader.skipped,
                examples,
                reader.bytes_read,
            ))
            .is_err()
        {
            return;
        }
    }
}

fn counting_opener(
    counter: Arc<AtomicU64>,
) -> impl Fn(&Path) -> Result<Box<dyn std::io::BufRead + Send>> + Send + 'static {
    move |path: &Path| {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let counting = CountingFile {
            inner: file,
            counter: counter.clone(),
        };
        crate::corpus::wrap_reader(path, Box::new(counting))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_holdout_guarantees_minimum_then_hashes() {
        let mut h = HashHoldout {
            fraction: 0.0,
            min_documents: 2,
            seen: HashMap::new(),
        };
        let doc = |t: &str| Document {
            text: t.into(),
            domain: "A".into(),
        };
        let splits: Vec<_> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|t| h.assign(&doc(t)))
            .collect();
        assert_eq!(
            splits,
            vec![
                Split::Val,
                Split::Test,
                Split::Val,
                Split::Test,
                Split::Train,
                Split::Train
            ]
        );
    }
}
