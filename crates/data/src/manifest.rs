//! `manifest.json`: what a prepared dataset holds and how it was made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::corpus::{SkippedLine, Split};
use crate::error::{DataError, Result};

/// The manifest format this version of mixlab writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The file name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Element type of the stored tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    /// 16-bit unsigned: vocabularies of at most 65,536 ids.
    U16,
    /// 32-bit unsigned: anything larger.
    U32,
}

impl TokenDtype {
    /// The narrowest type that holds every id of a vocabulary of `vocab_size` tokens.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= (u16::MAX as usize) + 1 {
            TokenDtype::U16
        } else {
            TokenDtype::U32
        }
    }

    /// Bytes per token.
    pub fn bytes(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::U32 => 4,
        }
    }
}

/// One Parquet shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    /// Path relative to the dataset directory (`<split>/<slug>/part-NNNNN.parquet`).
    pub file: String,
    /// Number of sequences (rows) in the shard.
    pub rows: u64,
}

/// Statistics and shards of one domain in one split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitStats {
    /// Documents read.
    pub documents: u64,
    /// Bytes of UTF-8 text read.
    pub bytes: u64,
    /// Tokens produced, end-of-document tokens included.
    pub tokens: u64,
    /// Packed sequences of `seq_len + 1` tokens stored.
    pub sequences: u64,
    /// Tokens at the end of the stream that did not fill a last sequence and were dropped.
    pub dropped_tokens: u64,
    /// Shards in reading order.
    pub shards: Vec<ShardInfo>,
}

/// One domain of the dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainManifest {
    /// The domain's name as in the corpus (e.g. `Wikipedia (en)`).
    pub name: String,
    /// File-system-safe name used for shard directories (e.g. `wikipedia-en`).
    pub slug: String,
    /// Per split statistics, keyed by split name.
    pub splits: BTreeMap<Split, SplitStats>,
}

/// Bad lines skipped while reading one split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkippedLines {
    /// How many lines were skipped.
    pub count: u64,
    /// The first few, with file, line and reason.
    pub examples: Vec<SkippedLine>,
}

/// How validation and test data were obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HoldoutInfo {
    /// The corpus's own `val` and `test` files.
    CorpusFiles,
    /// Held out from the training files by a hash of each document's text.
    Hash {
        /// Fraction of each domain's documents that goes to val (and the same to test).
        fraction: f64,
        /// The first `2 * min_documents` documents of each domain alternate between val and test.
        min_documents: u64,
    },
}

/// The manifest of a prepared dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version; readers refuse other versions.
    pub format_version: u32,
    /// The tokenizer file, relative to the dataset directory.
    pub tokenizer_file: String,
    /// SHA-256 of the tokenizer file (hex).
    pub tokenizer_sha256: String,
    /// Vocabulary size of the tokenizer, added tokens included.
    pub vocab_size: usize,
    /// Id of the end-of-document token appended after every document.
    pub eod_id: u32,
    /// Model context length: each stored sequence has `seq_len + 1` tokens.
    pub seq_len: usize,
    /// Element type of the `tokens` column.
    pub token_dtype: TokenDtype,
    /// Rows per Parquet row group (the unit of reading and shuffling).
    pub rows_per_row_group: usize,
    /// The input files, per split.
    pub inputs: BTreeMap<Split, Vec<String>>,
    /// How val and test were made.
    pub holdout: HoldoutInfo,
    /// Bad lines skipped, per split.
    pub skipped_lines: BTreeMap<Split, SkippedLines>,
    /// The domains, sorted by name.
    pub domains: Vec<DomainManifest>,
}

impl Manifest {
    /// Reads and checks `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        // Read the version first so an old or new format gets a precise message rather than a
        // confusing "unknown field".
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| DataError::Manifest {
                path: path.clone(),
                field: "<json>".into(),
                reason: e.to_string(),
            })?;
        let version = raw.get("format_version").and_then(|v| v.as_u64());
        if version != Some(FORMAT_VERSION as u64) {
            return Err(DataError::Manifest {
                path,
                field: "format_version".into(),
                reason: format!(
                    "found {version:?}, this mixlab reads version {FORMAT_VERSION}; prepare the dataset again"
                ),
            });
        }
        let manifest: Manifest = serde_json::from_value(raw).map_err(|e| DataError::Manifest {
            path: path.clone(),
            field: "<structure>".into(),
            reason: e.to_string(),
        })?;
        Ok(manifest)
    }

    /// Writes the manifest to `dir/manifest.json` whole or not at all.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).expect("manifest serialises");
        crate::atomic::write_file_atomically(&path, &text)?;
        Ok(path)
    }

    /// The domain called `name`.
    pub fn domain(&self, name: &str) -> Result<&DomainManifest> {
        self.domains
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| DataError::Domain {
                domain: name.to_string(),
                reason: format!(
                    "not in this dataset (it has: {})",
                    self.domain_names().join(", ")
                ),
            })
    }

    /// Domain names in manifest order.
    pub fn domain_names(&self) -> Vec<String> {
        self.domains.iter().map(|d| d.name.clone()).collect()
    }

    /// Training tokens per domain (for temperature-scaled mixing weights).
    pub fn train_tokens(&self) -> BTreeMap<String, u64> {
        self.domains
            .iter()
            .map(|d| {
                let t = d.splits.get(&Split::Train).map_or(0, |s| s.tokens);
                (d.name.clone(), t)
            })
            .collect()
    }
}

/// A file-system-safe, readable name for a domain: lower case ASCII letters and digits, runs of
/// anything else turned into one `-` (`Gutenberg (PG-19)` → `gutenberg-pg-19`).
pub fn domain_slug(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-').to_string();
    if slug.is_empty() {
        // A name with no ASCII letters at all still needs a stable, distinct directory.
        format!("domain-{:016x}", crate::hash::fnv1a(name.as_bytes()))
    } else {
        slug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_of_pile_names() {
        assert_eq!(domain_slug("Gutenberg (PG-19)"), "gutenberg-pg-19");
        assert_eq!(domain_slug("Wikipedia (en)"), "wikipedia-en");
        assert_eq!(domain_slug("Pile-CC"), "pile-cc");
        assert_eq!(domain_slug("DM Mathematics"), "dm-mathematics");
        assert!(domain_slug("数学").starts_with("domain-"));
        assert_ne!(domain_slug("数学"), domain_slug("物理"));
    }

    #[test]
    fn dtype_choice() {
        assert_eq!(TokenDtype::for_vocab(65_536), TokenDtype::U16);
        assert_eq!(TokenDtype::for_vocab(65_537), TokenDtype::U32);
        assert_eq!(TokenDtype::for_vocab(50_304), TokenDtype::U16);
    }
}
