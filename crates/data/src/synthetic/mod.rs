//! The built-in synthetic corpus: a deterministic multi-domain corpus in the Pile's format, with
//! domains whose properties a data-mixing method should discover, and a multiple-choice set in
//! the MMLU (hendrycks) layout whose subjects can each be learned from one domain only.
//!
//! A fresh clone has no Pile and mixlab ships no third-party text, so this corpus is what
//! `just reproduce` mixes by default. `docs/default-corpus.md` describes every domain and what
//! each mixer is expected to do with it.
//!
//! # Files written
//! ```text
//! OUT/train/00.jsonl.zst               {"text": ..., "meta": {"pile_set_name": <domain>}} per line
//! OUT/val.jsonl.zst
//! OUT/test.jsonl.zst
//! OUT/mc/data/dev/<subject>_dev.csv    question,A,B,C,D,answer (no header), few-shot rows
//! OUT/mc/data/val/<subject>_val.csv    few-shot pool of the paper protocol
//! OUT/mc/data/test/<subject>_test.csv  scored rows
//! OUT/synthetic-config.json            the resolved configuration
//! OUT/corpus-info.json                 documents and bytes per domain and split, MC rows
//! ```
//! The domains' documents are interleaved in proportion to their sizes, as in the Pile, so any
//! prefix of a split (e.g. what a tokenizer trainer reads) has every domain in it.
//!
//! # Determinism
//! Every random choice comes from a ChaCha8 stream keyed by SHA-256 of (seed, stream name): the
//! lexicon, the knowledge base, each domain's model, each (domain, split) and each subject has
//! its own. The same config gives byte-identical files (with the same `Cargo.lock`), and a
//! domain's documents do not change when another domain is resized, added or dropped.
//!
//! # Atomicity
//! Everything is written into a hidden sibling directory `.<name>.<random>.partial` that is renamed
//! to the output path only once complete; on error it is removed.

pub mod arithmetic;
mod chat;
pub mod code;
mod duplicates;
mod email;
pub mod knowledge;
mod legal;
mod markov;
pub mod multiple_choice;
mod noise;
mod recipes;
mod report;
mod words;

pub use report::{
    DomainSummary, MULTIPLE_CHOICE_VERSION, SplitSummary, SubjectSummary, SyntheticReport,
    check_multiple_choice_version,
};

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, sync_channel};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::corpus::Split;
use crate::error::{DataError, Result};
pub use knowledge::KnowledgeBase;
pub use multiple_choice::{McQuestion, McSubject, Truth};

/// A generator of one domain's documents for one split.
pub(crate) trait DocumentSource {
    /// Appends the next document's text to `out`.
    fn next_document(&mut self, out: &mut String);
    /// True while the source must go on regardless of size (e.g. until every fact is stated).
    fn needs_more(&self) -> bool {
        false
    }
}

/// The independent random stream `name` of `seed`.
pub(crate) fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    let digest = Sha256::new()
        .chain_update(b"mixlab-synthetic/v1\0")
        .chain_update(seed.to_le_bytes())
        .chain_update(name.as_bytes())
        .finalize();
    ChaCha8Rng::from_seed(digest.into())
}

/// The domains of the synthetic corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DomainKind {
    /// Arithmetic question/answer pairs at four difficulty levels.
    Arithmetic,
    /// Programs of a small language with their printed output.
    ToyCode,
    /// Templated articles over a synthetic knowledge base.
    Encyclopedia,
    /// IRC-style support-channel logs.
    ChatLogs,
    /// Corporate e-mail with headers and quoted replies.
    Emails,
    /// Contracts of long, repetitive clauses.
    LegalClauses,
    /// A first-order word Markov chain over 120 words.
    MarkovEasy,
    /// A second-order word Markov chain over 4,000 words.
    MarkovHard,
    /// Uniformly random words.
    RandomTokens,
    /// A few pages repeated with small edits.
    NearDuplicates,
    /// A few dozen recipes.
    TinyRecipes,
}

impl DomainKind {
    /// All domains, in the order they are listed and written.
    pub const ALL: [DomainKind; 11] = [
        DomainKind::Arithmetic,
        DomainKind::ToyCode,
        DomainKind::Encyclopedia,
        DomainKind::ChatLogs,
        DomainKind::Emails,
        DomainKind::LegalClauses,
        DomainKind::MarkovEasy,
        DomainKind::MarkovHard,
        DomainKind::RandomTokens,
        DomainKind::NearDuplicates,
        DomainKind::TinyRecipes,
    ];

    /// The domain name written as `meta.pile_set_name`.
    pub fn name(self) -> &'static str {
        match self {
            DomainKind::Arithmetic => "Arithmetic",
            DomainKind::ToyCode => "Toy Code",
            DomainKind::Encyclopedia => "Encyclopedia",
            DomainKind::ChatLogs => "Chat Logs",
            DomainKind::Emails => "Emails",
            DomainKind::LegalClauses => "Legal Clauses",
            DomainKind::MarkovEasy => "Markov Easy",
            DomainKind::MarkovHard => "Markov Hard",
            DomainKind::RandomTokens => "Random Tokens",
            DomainKind::NearDuplicates => "Near Duplicates",
            DomainKind::TinyRecipes => "Tiny Recipes",
        }
    }

    /// The stable identifier used in configs and stream names (`toy-code`).
    pub fn id(self) -> &'static str {
        match self {
            DomainKind::Arithmetic => "arithmetic",
            DomainKind::ToyCode => "toy-code",
            DomainKind::Encyclopedia => "encyclopedia",
            DomainKind::ChatLogs => "chat-logs",
            DomainKind::Emails => "emails",
            DomainKind::LegalClauses => "legal-clauses",
            DomainKind::MarkovEasy => "markov-easy",
            DomainKind::MarkovHard => "markov-hard",
            DomainKind::RandomTokens => "random-tokens",
            DomainKind::NearDuplicates => "near-duplicates",
            DomainKind::TinyRecipes => "tiny-recipes",
        }
    }

    /// The Pile domain this one stands in for, by kind of text and role in the mixture. The
    /// published weight tables (DoReMi's, ODM's) only exist for Pile domains; `reproduce` applies
    /// them to the synthetic corpus through this correspondence (renormalised).
    pub fn pile_analogue(self) -> &'static str {
        match self {
            DomainKind::Arithmetic => "DM Mathematics",
            DomainKind::ToyCode => "Github",
            DomainKind::Encyclopedia => "Wikipedia (en)",
            DomainKind::ChatLogs => "Ubuntu IRC",
            DomainKind::Emails => "Enron Emails",
            DomainKind::LegalClauses => "FreeLaw",
            DomainKind::MarkovEasy => "BookCorpus2",
            DomainKind::MarkovHard => "Pile-CC",
            DomainKind::RandomTokens => "YoutubeSubtitles",
            DomainKind::NearDuplicates => "USPTO Backgrounds",
            DomainKind::TinyRecipes => "NIH ExPorter",
        }
    }

    /// The domain whose `pile_set_name` is `name`.
    pub fn from_name(name: &str) -> Option<DomainKind> {
        DomainKind::ALL.into_iter().find(|d| d.name() == name)
    }

    /// One line on what makes the domain interesting for mixing.
    pub fn property(self) -> &'static str {
        match self {
            DomainKind::Arithmetic => {
                "learnable, skill-like: exact answers; feeds the `arithmetic` subject"
            }
            DomainKind::ToyCode => {
                "learnable, needs execution: `// output:` lines; feeds `code_output`"
            }
            DomainKind::Encyclopedia => {
                "learnable, memorisation: facts stated in varied templates; feeds `encyclopedia_facts`"
            }
            DomainKind::ChatLogs => {
                "learnable structure: turns, nicknames copied from context, timestamps"
            }
            DomainKind::Emails => {
                "learnable structure: headers, greeting/signature consistent, quoted replies"
            }
            DomainKind::LegalClauses => "easy: long, repetitive boilerplate; low loss early",
            DomainKind::MarkovEasy => "easy: 120-word bigram chain, entropy floor 2.1 bits/word",
            DomainKind::MarkovHard => "hard: 4,000-word second-order chain, keeps improving slowly",
            DomainKind::RandomTokens => {
                "unlearnable: uniform over 1,024 words, 10 bits/word forever"
            }
            DomainKind::NearDuplicates => {
                "redundant: 16 pages repeated with small edits; learned at once"
            }
            DomainKind::TinyRecipes => {
                "tiny: a few dozen documents, repeats many epochs and over-fits"
            }
        }
    }

    /// Training bytes at scale 1.0: enough tokens of every domain for the `tiny` model preset
    /// (≈200k+ tokens each at a 4,096-token BPE), small enough that `prepare-data` of the whole
    /// corpus takes seconds. The sizes differ on purpose, so that token-proportional weights are
    /// not uniform.
    pub fn default_train_bytes(self) -> u64 {
        match self {
            DomainKind::Arithmetic => 1_000_000,
            DomainKind::ToyCode => 1_000_000,
            DomainKind::Encyclopedia => 1_500_000,
            DomainKind::ChatLogs => 1_000_000,
            DomainKind::Emails => 1_000_000,
            DomainKind::LegalClauses => 1_500_000,
            DomainKind::MarkovEasy => 1_250_000,
            DomainKind::MarkovHard => 2_000_000,
            DomainKind::RandomTokens => 1_000_000,
            DomainKind::NearDuplicates => 1_000_000,
            DomainKind::TinyRecipes => 24_000,
        }
    }
}

impl std::fmt::Display for DomainKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One domain of the corpus and its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// Which generator.
    pub kind: DomainKind,
    /// Training bytes at scale 1.0 (generation stops at the first document past it).
    pub train_bytes: u64,
}

/// Size of the multiple-choice set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultipleChoiceConfig {
    /// Few-shot rows per subject (`data/dev`); MMLU has 5.
    pub dev_rows: usize,
    /// Rows per subject of the pool the paper protocol draws few-shot examples from (`data/val`).
    pub val_rows: usize,
    /// Test rows per subject (`data/test`); fewer when a subject's pool is smaller.
    pub test_rows: usize,
}

/// Everything that determines the synthetic corpus's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Master seed; all streams derive from it.
    pub seed: u64,
    /// Multiplies every domain's size (1.0 = the documented defaults).
    pub scale: f64,
    /// The domains, in the order they are listed.
    pub domains: Vec<DomainSpec>,
    /// Validation bytes of each domain as a fraction of its training bytes (the same for test).
    pub holdout_fraction: f64,
    /// Documents per domain at least, in every split.
    pub min_documents: u64,
    /// Size of the multiple-choice set.
    pub multiple_choice: MultipleChoiceConfig,
    /// zstd compression level of the `.jsonl.zst` files.
    pub zstd_level: i32,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            seed: 0,
            scale: 1.0,
            domains: DomainKind::ALL
                .iter()
                .map(|&kind| DomainSpec {
                    kind,
                    train_bytes: kind.default_train_bytes(),
                })
                .collect(),
            holdout_fraction: 0.05,
            min_documents: 8,
            multiple_choice: MultipleChoiceConfig {
                dev_rows: 5,
                val_rows: 20,
                test_rows: 150,
            },
            zstd_level: 3,
        }
    }
}

impl SyntheticConfig {
    /// The defaults with another seed and scale.
    pub fn with_seed_and_scale(seed: u64, scale: f64) -> Self {
        SyntheticConfig {
            seed,
            scale,
            ..SyntheticConfig::default()
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(DataError::config(
                "scale",
                format!("{} is not a positive number", self.scale),
            ));
        }
        if !(0.0..0.5).contains(&self.holdout_fraction) {
            return Err(DataError::config(
                "holdout_fraction",
                format!("{} is not in [0, 0.5)", self.holdout_fraction),
            ));
        }
        if self.domains.is_empty() {
            return Err(DataError::config("domains", "is empty"));
        }
        for (i, d) in self.domains.iter().enumerate() {
            if self.domains[..i].iter().any(|e| e.kind == d.kind) {
                return Err(DataError::config(
                    "domains",
                    format!("`{}` is listed twice", d.kind.id()),
                ));
            }
            if d.train_bytes == 0 {
                return Err(DataError::config(
                    "domains",
                    format!("`{}` has train_bytes 0", d.kind.id()),
                ));
            }
        }
        if self.min_documents == 0 {
            return Err(DataError::config("min_documents", "must be at least 1"));
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(DataError::config(
                "zstd_level",
                format!("{} is not in 1..=22", self.zstd_level),
            ));
        }
        Ok(())
    }

    /// Target bytes of `kind` in `split` after scaling, or `None` when the domain is not listed.
    pub fn target_bytes(&self, kind: DomainKind, split: Split) -> Option<u64> {
        let spec = self.domains.iter().find(|d| d.kind == kind)?;
        let train = (spec.train_bytes as f64 * self.scale).round().max(1.0);
        Some(match split {
            Split::Train => train as u64,
            Split::Val | Split::Test => (train * self.holdout_fraction).round().max(1.0) as u64,
        })
    }
}

/// Encyclopedia training bytes per knowledge-base person. Person articles average about 250
/// bytes and make up 80% of the domain, so each person gets about ten articles, each in
/// different wording: repetition with paraphrase is what lets a small model store a fact
/// (single mentions are rarely learned).
const ENCYCLOPEDIA_BYTES_PER_PERSON: u64 = 3_000;
/// The fewest people, so that a tiny test corpus still has held-out facts to ask about.
const MIN_PEOPLE: u64 = 24;

/// A synthetic corpus ready to be written: the world (lexicon, knowledge base, Markov chains,
/// duplicate pool) drawn from the seed.
pub struct SyntheticCorpus {
    config: SyntheticConfig,
    lexicon: words::Lexicon,
    kb: KnowledgeBase,
    easy: markov::MarkovChain,
    hard: markov::MarkovChain,
    pool: Vec<duplicates::Page>,
}

impl SyntheticCorpus {
    /// Validates `config` and draws the world.
    pub fn new(config: &SyntheticConfig) -> Result<Self> {
        config.validate()?;
        let seed = config.seed;
        let lexicon = words::Lexicon::new(&mut stream(seed, "lexicon"));
        let encyclopedia_bytes = config
            .target_bytes(DomainKind::Encyclopedia, Split::Train)
            .unwrap_or(DomainKind::Encyclopedia.default_train_bytes());
        let people = (encyclopedia_bytes / ENCYCLOPEDIA_BYTES_PER_PERSON).max(MIN_PEOPLE) as usize;
        let kb = KnowledgeBase::new(&lexicon, &mut stream(seed, "knowledge-base"), people);
        let easy = markov::MarkovChain::easy(
            &lexicon.markov_easy,
            &mut stream(seed, "domain/markov-easy/model"),
        );
        let hard = markov::MarkovChain::hard(
            &lexicon.markov_hard,
            &mut stream(seed, "domain/markov-hard/model"),
        );
        let pool = duplicates::pool(&lexicon, &mut stream(seed, "domain/near-duplicates/model"));
        Ok(SyntheticCorpus {
            config: config.clone(),
            lexicon,
            kb,
            easy,
            hard,
            pool,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    /// The knowledge base behind the encyclopedic domain.
    pub fn knowledge_base(&self) -> &KnowledgeBase {
        &self.kb
    }

    /// Entropy of the next word given the full context, in bits, of the Markov domains
    /// (`MarkovEasy`, `MarkovHard`) and the random domain; `None` for the others.
    pub fn entropy_bits_per_word(&self, kind: DomainKind) -> Option<f64> {
        match kind {
            DomainKind::MarkovEasy => Some(self.easy.entropy_bits_per_word()),
            DomainKind::MarkovHard => Some(self.hard.entropy_bits_per_word()),
            DomainKind::RandomTokens => Some((self.lexicon.random.len() as f64).log2()),
            _ => None,
        }
    }

    /// Vocabulary size of the random domain's words.
    pub fn random_vocab_size(&self) -> usize {
        self.lexicon.random.len()
    }

    /// The multiple-choice subjects whose source domain is in the corpus, with ground truth.
    pub fn multiple_choice(&self) -> Vec<McSubject> {
        let mc = &self.config.multiple_choice;
        let has = |k| self.config.domains.iter().any(|d| d.kind == k);
        let seed = self.config.seed;
        let mut subjects = Vec::new();
        if has(DomainKind::Arithmetic) {
            subjects.push(multiple_choice::arithmetic_subject(seed, mc));
        }
        if has(DomainKind::Encyclopedia) {
            subjects.push(multiple_choice::fact_subject(&self.kb, seed, mc));
        }
        if has(DomainKind::ToyCode) {
            subjects.push(multiple_choice::code_subject(seed, mc));
        }
        subjects
    }

    /// The first `n` documents of `kind` in `split`, exactly as [`SyntheticCorpus::write`]
    /// writes them.
    pub fn documents(&self, kind: DomainKind, split: Split, n: usize) -> Vec<String> {
        let mut source = self.source(kind, split);
        (0..n)
            .map(|_| {
                let mut s = String::new();
                source.next_document(&mut s);
                s
            })
            .collect()
    }

    fn source(&self, kind: DomainKind, split: Split) -> Box<dyn DocumentSource + Send + '_> {
        let rng = stream(
            self.config.seed,
            &format!("domain/{}/{}", kind.id(), split.as_str()),
        );
        let lex = &self.lexicon;
        match kind {
            DomainKind::Arithmetic => Box::new(arithmetic::ArithmeticSource { rng }),
            DomainKind::ToyCode => Box::new(code::CodeSource { rng }),
            DomainKind::Encyclopedia => Box::new(knowledge::EncyclopediaSource::new(
                &self.kb,
                rng,
                split == Split::Train,
            )),
            DomainKind::ChatLogs => Box::new(chat::ChatSource { lexicon: lex, rng }),
            DomainKind::Emails => Box::new(email::EmailSource { lexicon: lex, rng }),
            DomainKind::LegalClauses => Box::new(legal::LegalSource { lexicon: lex, rng }),
            DomainKind::MarkovEasy => Box::new(markov::MarkovSource {
                chain: &self.easy,
                rng,
            }),
            DomainKind::MarkovHard => Box::new(markov::MarkovSource {
                chain: &self.hard,
                rng,
            }),
            DomainKind::RandomTokens => Box::new(noise::RandomSource {
                vocab: &lex.random,
                rng,
            }),
            DomainKind::NearDuplicates => Box::new(duplicates::DuplicateSource {
                pool: &self.pool,
                vocab: &lex.boilerplate,
                rng,
            }),
            DomainKind::TinyRecipes => Box::new(recipes::RecipeSource {
                dishes: &lex.dishes,
                rng,
            }),
        }
    }

    /// Writes the corpus and the multiple-choice set to `out`, atomically. `out` must not exist
    /// unless `overwrite` is set; an existing `out` is replaced only once the new one is complete.
    pub fn write(&self, out: &Path, overwrite: bool) -> Result<SyntheticReport> {
        crate::atomic::write_dir_atomically(out, overwrite, |tmp| self.write_into(tmp))
    }

    fn write_into(&self, dir: &Path) -> Result<SyntheticReport> {
        let mut domains: Vec<DomainSummary> = self
            .config
            .domains
            .iter()
            .map(|d| DomainSummary {
                kind: d.kind,
                name: d.kind.name().to_string(),
                property: d.kind.property().to_string(),
                splits: BTreeMap::new(),
            })
            .collect();
        let train_dir = dir.join("train");
        std::fs::create_dir_all(&train_dir).map_err(|e| DataError::io(&train_dir, e))?;
        for split in Split::ALL {
            let path = match split {
                Split::Train => train_dir.join("00.jsonl.zst"),
                Split::Val => dir.join("val.jsonl.zst"),
                Split::Test => dir.join("test.jsonl.zst"),
            };
            let counts = self.write_split(split, &path)?;
            for (summary, count) in domains.iter_mut().zip(counts) {
                summary.splits.insert(split, count);
            }
        }

        let mut subjects = Vec::new();
        for sub in ["dev", "val", "test"] {
            let d = dir.join("mc/data").join(sub);
            std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
        }
        for subject in self.multiple_choice() {
            for (sub, rows) in [
                ("dev", &subject.dev),
                ("val", &subject.val),
                ("test", &subject.test),
            ] {
                let path = dir.join(format!("mc/data/{sub}/{}_{sub}.csv", subject.name));
                multiple_choice::write_csv(&path, rows)?;
            }
            subjects.push(SubjectSummary {
                name: subject.name.clone(),
                domain: subject.domain.name().to_string(),
                dev_rows: subject.dev.len(),
                val_rows: subject.val.len(),
                test_rows: subject.test.len(),
            });
        }

        let report = SyntheticReport {
            domains,
            subjects,
            knowledge_base_people: self.kb.people.len(),
            multiple_choice_version: MULTIPLE_CHOICE_VERSION,
        };
        let config_path = dir.join("synthetic-config.json");
        let json = serde_json::to_string_pretty(&self.config).expect("config serialises");
        std::fs::write(&config_path, json + "\n").map_err(|e| DataError::io(&config_path, e))?;
        let info_path = dir.join("corpus-info.json");
        let json = serde_json::to_string_pretty(&report).expect("report serialises");
        std::fs::write(&info_path, json + "\n").map_err(|e| DataError::io(&info_path, e))?;
        Ok(report)
    }

    /// Writes one split, interleaving domains so that each has written about the same fraction
    /// of its target at any point; returns the counts in config order.
    ///
    /// Each domain's documents are generated and JSON-encoded by its own thread, ahead of time
    /// in batches through a bounded channel; this thread only interleaves and compresses. The output does
    /// not depend on thread timing: each domain's documents come in their stream's order, and
    /// which domain goes next depends only on the counts written so far.
    fn write_split(&self, split: Split, path: &Path) -> Result<Vec<SplitSummary>> {
        struct Slot {
            target: u64,
            batches: Receiver<Vec<EncodedDocument>>,
            pending: std::vec::IntoIter<EncodedDocument>,
            needs_more: bool,
            count: SplitSummary,
        }
        let file = File::create(path).map_err(|e| DataError::io(path, e))?;
        let mut encoder = zstd::stream::write::Encoder::new(
            BufWriter::with_capacity(1 << 20, file),
            self.config.zstd_level,
        )
        .map_err(|e| DataError::io(path, e))?;
        let min_docs = self.config.min_documents;
        let counts = std::thread::scope(|scope| -> Result<Vec<SplitSummary>> {
            let mut slots: Vec<Slot> = Vec::with_capacity(self.config.domains.len());
            for d in &self.config.domains {
                let mut source = self.source(d.kind, split);
                let needs_more = source.needs_more();
                let (tx, rx) = sync_channel::<Vec<EncodedDocument>>(BATCHES_AHEAD);
                let name = d.kind.name();
                scope.spawn(move || {
                    let mut text = String::new();
                    loop {
                        // Documents travel in batches: one channel hand-off per document would
                        // cost more in thread wake-ups than generating it.
                        let mut batch = Vec::new();
                        let mut batch_bytes = 0;
                        while batch_bytes < BATCH_BYTES {
                            text.clear();
                            source.next_document(&mut text);
                            let doc = PileLine {
                                text: &text,
                                meta: PileMeta {
                                    pile_set_name: name,
                                },
                            };
                            let mut line = serde_json::to_vec(&doc).expect("strings serialise");
                            line.push(b'\n');
                            batch_bytes += line.len();
                            batch.push(EncodedDocument {
                                line,
                                text_bytes: text.len() as u64,
                                needs_more: source.needs_more(),
                            });
                        }
                        // The writer hangs up once it has enough of this domain.
                        if tx.send(batch).is_err() {
                            return;
                        }
                    }
                });
                slots.push(Slot {
                    target: self
                        .config
                        .target_bytes(d.kind, split)
                        .expect("listed domain"),
                    batches: rx,
                    pending: Vec::new().into_iter(),
                    needs_more,
                    count: SplitSummary::default(),
                });
            }
            loop {
                // The unfinished domain furthest behind (the lesser of its byte and document
                // fractions) goes next, ties to the earlier domain, so every prefix of the file
                // is a proportional sample of the domains.
                let progress = |s: &Slot| {
                    let bytes = s.count.bytes as f64 / s.target as f64;
                    bytes.min(s.count.documents as f64 / min_docs as f64)
                };
                let next = slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| {
                        s.count.bytes < s.target || s.count.documents < min_docs || s.needs_more
                    })
                    .min_by(|(i, a), (j, b)| progress(a).total_cmp(&progress(b)).then(i.cmp(j)))
                    .map(|(i, _)| i);
                let Some(i) = next else { break };
                let slot = &mut slots[i];
                let doc = match slot.pending.next() {
                    Some(doc) => doc,
                    None => {
                        let batch = slot.batches.recv().expect("generators run until hung up");
                        slot.pending = batch.into_iter();
                        slot.pending.next().expect("batches are not empty")
                    }
                };
                slot.count.documents += 1;
                slot.count.bytes += doc.text_bytes;
                slot.needs_more = doc.needs_more;
                encoder
                    .write_all(&doc.line)
                    .map_err(|e| DataError::io(path, e))?;
            }
            // Dropping the receivers stops the generator threads before the scope joins them.
            Ok(slots.into_iter().map(|s| s.count).collect())
        })?;
        let mut inner = encoder.finish().map_err(|e| DataError::io(path, e))?;
        inner.flush().map_err(|e| DataError::io(path, e))?;
        Ok(counts)
    }
}

/// Bytes of JSON lines per batch a generator thread hands to the writer.
const BATCH_BYTES: usize = 64 << 10;
/// Batches a generator thread may run ahead of the writer.
const BATCHES_AHEAD: usize = 2;

/// A document as its generator thread hands it to the writer.
struct EncodedDocument {
    /// The JSON line, `\n` included.
    line: Vec<u8>,
    /// Bytes of the document's text.
    text_bytes: u64,
    /// The source's [`DocumentSource::needs_more`] after this document.
    needs_more: bool,
}

/// One line of a Pile file; fields in the Pile's order.
#[derive(Serialize)]
struct PileLine<'a> {
    text: &'a str,
    meta: PileMeta<'a>,
}

#[derive(Serialize)]
struct PileMeta<'a> {
    pile_set_name: &'a str,
}

/// Generates the synthetic corpus of `config` into `out` (see the module docs for the layout).
pub fn generate_corpus(
    config: &SyntheticConfig,
    out: &Path,
    overwrite: bool,
) -> Result<SyntheticReport> {
    SyntheticCorpus::new(config)?.write(out, overwrite)
}
