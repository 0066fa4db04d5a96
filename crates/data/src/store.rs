//! `DomainStore`: a prepared dataset opened for sampling by domain.
//!
//! # Shuffling
//! A domain's sequences live in fixed-size Parquet row groups ("chunks"). Each epoch, the chunk
//! order is shuffled; consecutive groups of `window_chunks` chunks form a window whose rows are
//! shuffled together. Only the current window is decoded and held in memory, so memory is bounded
//! by `window_chunks × row group size` per sampler whatever the domain's size, while every
//! sequence is still seen exactly once per epoch. All permutations derive from (seed, domain
//! name, epoch, window) through a fixed hash and a hand-written Fisher-Yates shuffle, so the order
//! does not depend on library versions or on which other domains exist.
//!
//! # Resume
//! [`SamplerCursor`] (epoch and position within the epoch) is all the state a sampler has beyond
//! its seed: restoring it yields exactly the sequences an uninterrupted sampler would have yielded.

use std::path::{Path, PathBuf};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::corpus::Split;
use crate::error::{DataError, Result};
use crate::hash::splitmix64 as mix;
use crate::manifest::{MANIFEST_FILE, Manifest, SplitStats};
use crate::shard::ShardHandle;
use crate::tokenizer::sha256_file;

/// What the caller expects of a dataset; any mismatch is refused at open time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// SHA-256 of the tokenizer the caller's model was built for.
    pub expected_tokenizer_sha256: Option<String>,
    /// Context length the caller trains or evaluates with.
    pub expected_seq_len: Option<usize>,
}

/// A prepared dataset.
#[derive(Debug, Clone)]
pub struct DomainStore {
    dir: PathBuf,
    manifest: Manifest,
}

impl DomainStore {
    /// Opens `dir`, checking the manifest's format version, the tokenizer file's hash against the
    /// manifest and against `options`, and the sequence length.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<DomainStore> {
        let manifest = Manifest::load(dir)?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let tokenizer_path = dir.join(&manifest.tokenizer_file);
        let actual = sha256_file(&tokenizer_path)?;
        if actual != manifest.tokenizer_sha256 {
            return Err(DataError::Manifest {
                path: manifest_path,
                field: "tokenizer_sha256".into(),
                reason: format!(
                    "{} has SHA-256 {actual}, the manifest records {}: the tokenizer was changed after preparation",
                    tokenizer_path.display(),
                    manifest.tokenizer_sha256
                ),
            });
        }
        if let Some(expected) = &options.expected_tokenizer_sha256
            && *expected != manifest.tokenizer_sha256
        {
            return Err(DataError::Manifest {
                path: manifest_path,
                field: "tokenizer_sha256".into(),
                reason: format!(
                    "dataset was tokenized with {}, but the caller expects tokenizer {expected}",
                    manifest.tokenizer_sha256
                ),
            });
        }
        if let Some(expected) = options.expected_seq_len
            && expected != manifest.seq_len
        {
            return Err(DataError::Manifest {
                path: manifest_path,
                field: "seq_len".into(),
                reason: format!(
                    "dataset has seq_len {}, the caller expects {expected}",
                    manifest.seq_len
                ),
            });
        }
        Ok(DomainStore {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The dataset directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Path of the dataset's tokenizer.json.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.tokenizer_file)
    }

    /// Domain names, in manifest (alphabetical) order.
    pub fn domain_names(&self) -> Vec<String> {
        self.manifest.domain_names()
    }

    fn split_stats(&self, domain: &str, split: Split) -> Result<&SplitStats> {
        let d = self.manifest.domain(domain)?;
        d.splits.get(&split).ok_or_else(|| DataError::Domain {
            domain: domain.to_string(),
            reason: format!("has no {split} split"),
        })
    }

    fn chunks(&self, domain: &str, split: Split) -> Result<(Vec<ShardHandle>, Vec<Chunk>)> {
        let stats = self.split_stats(domain, split)?;
        let width = self.manifest.seq_len + 1;
        let mut handles = Vec::with_capacity(stats.shards.len());
        let mut chunks = Vec::new();
        for (s, shard) in stats.shards.iter().enumerate() {
            let h = ShardHandle::open(
                &self.dir.join(&shard.file),
                self.manifest.token_dtype,
                width,
            )?;
            let mut rows = 0u64;
            for rg in 0..h.num_row_groups() {
                let n = h.row_group_rows(rg);
                rows += n as u64;
                chunks.push(Chunk {
                    shard: s,
                    row_group: rg,
                    rows: n,
                });
            }
            if rows != shard.rows {
                return Err(DataError::parquet(
                    self.dir.join(&shard.file),
                    format!("has {rows} rows, the manifest records {}", shard.rows),
                ));
            }
            handles.push(h);
        }
        Ok((handles, chunks))
    }

    /// A shuffled, epoch-looping sampler over `domain`'s sequences in `split`.
    pub fn sampler(&self, domain: &str, split: Split, seed: u64) -> Result<DomainSampler> {
        self.sampler_with_window(domain, split, seed, DEFAULT_WINDOW_CHUNKS)
    }

    /// Like [`DomainStore::sampler`] with `window_chunks` row groups shuffled together.
    pub fn sampler_with_window(
        &self,
        domain: &str,
        split: Split,
        seed: u64,
        window_chunks: usize,
    ) -> Result<DomainSampler> {
        let (handles, chunks) = self.chunks(domain, split)?;
        let total: u64 = chunks.iter().map(|c| c.rows as u64).sum();
        if total == 0 {
            return Err(DataError::Domain {
                domain: domain.to_string(),
                reason: format!(
                    "has no complete sequence of {} tokens in the {split} split; nothing to sample",
                    self.manifest.seq_len + 1
                ),
            });
        }
        Ok(DomainSampler {
            domain: domain.to_string(),
            width: self.manifest.seq_len + 1,
            seed: stream_seed(seed, domain),
            window_chunks: window_chunks.max(1),
            handles,
            chunks,
            total,
            cursor: SamplerCursor::default(),
            epoch_plan: None,
            window: None,
        })
    }

    /// The sequences of `domain` in `split` in stored order, at most `cap` of them (the paper
    /// evaluates on the first 5,000 per domain).
    pub fn iter_split(&self, domain: &str, split: Split, cap: Option<u64>) -> Result<SplitIter> {
        let (handles, chunks) = self.chunks(domain, split)?;
        Ok(SplitIter {
            width: self.manifest.seq_len + 1,
            handles,
            chunks,
            next_chunk: 0,
            buffer: Vec::new(),
            offset: 0,
            remaining: cap.unwrap_or(u64::MAX),
        })
    }
}

/// Row groups shuffled together by default.
pub const DEFAULT_WINDOW_CHUNKS: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Chunk {
    shard: usize,
    row_group: usize,
    rows: usize,
}

/// Where a sampler is: enough to resume exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerCursor {
    /// Completed passes over the domain.
    pub epoch: u64,
    /// Sequences already served in the current epoch.
    pub position: u64,
}

struct EpochPlan {
    epoch: u64,
    /// Chunk indices in this epoch's order.
    order: Vec<usize>,
    /// Position at which each window starts; one extra entry with the total.
    window_starts: Vec<u64>,
}

struct Window {
    epoch: u64,
    index: usize,
    tokens: Vec<u32>,
    order: Vec<u32>,
}

/// Yields one domain's sequences in a seeded shuffled order, forever, epoch after epoch.
pub struct DomainSampler {
    domain: String,
    width: usize,
    seed: u64,
    window_chunks: usize,
    handles: Vec<ShardHandle>,
    chunks: Vec<Chunk>,
    total: u64,
    cursor: SamplerCursor,
    epoch_plan: Option<EpochPlan>,
    window: Option<Window>,
}

fn stream_seed(seed: u64, domain: &str) -> u64 {
    let mut h = mix(seed);
    for b in domain.bytes() {
        h = mix(h ^ b as u64);
    }
    h
}

/// Fisher-Yates with a ChaCha8 stream: fixed here so orders never change with library updates.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        // Modulo bias is below 2^-40 for any realistic length: irrelevant for data order.
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

impl std::fmt::Debug for DomainSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainSampler")
            .field("domain", &self.domain)
            .field("sequences", &self.total)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl DomainSampler {
    /// The domain sampled.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Sequences per epoch.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Never true: empty domains are refused when the sampler is made.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Tokens per sequence (`seq_len + 1`).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Completed epochs.
    pub fn epoch(&self) -> u64 {
        self.cursor.epoch
    }

    /// The current position, for checkpoints.
    pub fn cursor(&self) -> SamplerCursor {
        self.cursor
    }

    /// Continues from `cursor` (taken from a sampler of the same dataset, domain, split and seed).
    pub fn set_cursor(&mut self, cursor: SamplerCursor) -> Result<()> {
        if cursor.position > self.total {
            return Err(DataError::Domain {
                domain: self.domain.clone(),
                reason: format!(
                    "cursor position {} is beyond the {} sequences of an epoch: the checkpoint belongs to another dataset",
                    cursor.position, self.total
                ),
            });
        }
        self.cursor = cursor;
        Ok(())
    }

    fn plan(&mut self, epoch: u64) -> &EpochPlan {
        if self.epoch_plan.as_ref().is_none_or(|p| p.epoch != epoch) {
            let mut order: Vec<usize> = (0..self.chunks.len()).collect();
            shuffle(&mut order, mix(self.seed ^ mix(epoch)));
            let mut window_starts = vec![0u64];
            let mut acc = 0u64;
            for w in order.chunks(self.window_chunks) {
                acc += w.iter().map(|&c| self.chunks[c].rows as u64).sum::<u64>();
                window_starts.push(acc);
            }
            self.epoch_plan = Some(EpochPlan {
                epoch,
                order,
                window_starts,
            });
        }
        self.epoch_plan.as_ref().expect("set above")
    }

    /// Moves past the next sequence without reading it: the sampler then stands exactly where
    /// `next_sequence` would have left it (a sequence depends only on the epoch and position).
    /// Data-loader workers that draw every step but materialise only their own use it.
    pub fn skip_sequence(&mut self) {
        self.start_epoch_if_done();
        self.cursor.position += 1;
    }

    fn start_epoch_if_done(&mut self) {
        if self.cursor.position >= self.total {
            self.cursor.epoch += 1;
            self.cursor.position = 0;
        }
    }

    /// The next sequence (`seq_len + 1` tokens), starting a new, reshuffled epoch when needed.
    pub fn next_sequence(&mut self) -> Result<Vec<u32>> {
        self.start_epoch_if_done();
        let epoch = self.cursor.epoch;
        let position = self.cursor.position;
        let window_chunks = self.window_chunks;
        let plan = self.plan(epoch);
        // The window containing `position`: the last start not after it.
        let index = plan.window_starts.partition_point(|&s| s <= position) - 1;
        let start = plan.window_starts[index];
        let window_chunk_ids: Vec<usize> = plan.order
            [index * window_chunks..((index + 1) * window_chunks).min(plan.order.len())]
            .to_vec();
        if self
            .window
            .as_ref()
            .is_none_or(|w| w.epoch != epoch || w.index != index)
        {
            let mut tokens = Vec::new();
            for c in window_chunk_ids {
                let chunk = self.chunks[c];
                tokens
                    .extend(self.handles[chunk.shard].read_row_group(chunk.row_group, self.width)?);
            }
            let rows = tokens.len() / self.width;
            let mut order: Vec<u32> = (0..rows as u32).collect();
            shuffle(
                &mut order,
                mix(self.seed ^ mix(epoch) ^ mix(index as u64 + 1) ^ 0x5151),
            );
            self.window = Some(Window {
                epoch,
                index,
                tokens,
                order,
            });
        }
        let w = self.window.as_ref().expect("loaded above");
        let row = w.order[(position - start) as usize] as usize;
        let seq = w.tokens[row * self.width..(row + 1) * self.width].to_vec();
        self.cursor.position += 1;
        Ok(seq)
    }
}

/// In-order iteration over a domain's split, for evaluation.
pub struct SplitIter {
    width: usize,
    handles: Vec<ShardHandle>,
    chunks: Vec<Chunk>,
    next_chunk: usize,
    buffer: Vec<u32>,
    offset: usize,
    remaining: u64,
}

impl Iterator for SplitIter {
    type Item = Result<Vec<u32>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        while self.offset >= self.buffer.len() {
            let chunk = *self.chunks.get(self.next_chunk)?;
            self.next_chunk += 1;
            match self.handles[chunk.shard].read_row_group(chunk.row_group, self.width) {
                Ok(tokens) => {
                    self.buffer = tokens;
                    self.offset = 0;
                }
                Err(e) => {
                    self.remaining = 0;
                    return Some(Err(e));
                }
            }
        }
        let seq = self.buffer[self.offset..self.offset + self.width].to_vec();
        self.offset += self.width;
        self.remaining -= 1;
        Some(Ok(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_fixed_permutation() {
        let mut a: Vec<u32> = (0..10).collect();
        shuffle(&mut a, 7);
        let mut b: Vec<u32> = (0..10).collect();
        shuffle(&mut b, 7);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        let mut c: Vec<u32> = (0..10).collect();
        shuffle(&mut c, 8);
        assert_ne!(a, c);
    }

    #[test]
    fn streams_differ_by_domain() {
        assert_ne!(stream_seed(1, "A"), stream_seed(1, "B"));
        assert_ne!(stream_seed(1, "A"), stream_seed(2, "A"));
    }
}
