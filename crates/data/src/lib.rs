//! mixlab-data: from Pile-format text to per-domain token shards, and back out as sequences.
//!
//! - [`corpus`] streams `*.jsonl` / `*.jsonl.zst` documents and routes each to its domain.
//! - [`tokenizer`] loads a `tokenizer.json` or trains a byte-level BPE on the training split.
//! - [`prepare`] tokenizes, packs each domain into `seq_len + 1`-token sequences and writes
//!   Parquet shards plus a `manifest.json`, atomically.
//! - [`store`] opens a prepared dataset: per-domain shuffled, epoch-looping, resumable samplers and
//!   in-order evaluation iterators.

pub mod atomic;
pub mod corpus;
pub mod error;
pub mod hash;
pub mod lock;
pub mod manifest;
pub mod plan;
pub mod prepare;
pub mod seeds;
pub mod shard;
pub mod store;
pub mod synthetic;
pub mod tokenizer;

pub use corpus::{BadLinePolicy, CorpusReader, Document, InputLayout, Split};
pub use error::{DataError, Result};
pub use manifest::{DomainManifest, Manifest, SplitStats, TokenDtype, domain_slug};
pub use plan::{BatchPlan, Granularity};
pub use prepare::{PrepareConfig, PrepareReport, prepare_dataset};
pub use seeds::SeedStreams;
pub use store::{DomainSampler, DomainStore, OpenOptions, SamplerCursor};
pub use tokenizer::{TokenizerSource, sha256_file};
