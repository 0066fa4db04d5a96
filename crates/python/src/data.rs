//! A prepared mixlab dataset as the stream of training steps mixlab's trainer draws from it.
//!
//! From the run seed come the same named streams the trainer uses (`SeedStreams`): one
//! resumable sampler per domain seeded with the data stream, and the batch plans drawn from the
//! plan stream with the mixer's weights, micro-batch by micro-batch. Given the weights the
//! trainer used at each step, the stream yields exactly the token rows the trainer trained on
//! (tested against `train --dump-batches`). With `world_size` ranks, every rank draws the whole
//! step (so every sampler advances alike on every rank) and keeps its contiguous block of
//! micro-batches, in plan order.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use mixlab_data::{
    BatchPlan, DataError, DomainSampler, DomainStore, Granularity, OpenOptions, SamplerCursor,
    SeedStreams, Split,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{MixerError, from_json, to_json};

fn data_error(error: DataError) -> PyErr {
    MixerError::new_err(error.to_string())
}

fn granularity(name: &str, argument: &str) -> PyResult<Granularity> {
    match name {
        "micro-batch" => Ok(Granularity::MicroBatch),
        "sequence" => Ok(Granularity::Sequence),
        other => Err(MixerError::new_err(format!(
            "{argument}: `{other}` is not a granularity (`micro-batch` or `sequence`)"
        ))),
    }
}

/// What identifies a stream: a state saved by one stream restores only into an equal one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Identity {
    seed: u64,
    domains: Vec<String>,
    micro_batches: usize,
    micro_batch_size: usize,
    granularity: Granularity,
    warmup_granularity: Option<Granularity>,
    warmup_steps: u64,
}

/// The stream's position: the step, every sampler's cursor and the plan stream's word.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    identity: Identity,
    step: u64,
    cursors: Vec<SamplerCursor>,
    /// The plan generator's position (a u128, as text).
    plan_word_pos: String,
}

/// One step of one rank: the token rows as little-endian u32 bytes, each sequence's domain
/// index, and the rows' shape.
type StepRows<'py> = (Bound<'py, PyBytes>, Vec<usize>, Shape);

/// `[micro-batches of this rank, sequences per micro-batch, seq_len + 1]`.
type Shape = (usize, usize, usize);

struct Stream {
    store: DomainStore,
    identity: Identity,
    samplers: Vec<DomainSampler>,
    plan_rng: ChaCha8Rng,
    step: u64,
    rank: usize,
    world_size: usize,
}

impl Stream {
    /// Draws the next step's plan with `weights` and takes every sequence of it from the
    /// samplers, in plan order as the trainer does (so the samplers stand where they would after
    /// the trainer's step, on every rank); with `materialize`, returns this rank's rows as
    /// little-endian u32 bytes, their domains and shape, otherwise reads no rows.
    fn draw(
        &mut self,
        weights: &[f64],
        materialize: bool,
    ) -> PyResult<(Vec<u8>, Vec<usize>, Shape)> {
        let k = self.identity.domains.len();
        if weights.len() != k {
            return Err(MixerError::new_err(format!(
                "weights: {} values for {k} domains",
                weights.len()
            )));
        }
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f64>() <= 0.0
        {
            return Err(MixerError::new_err(format!(
                "weights: {weights:?} are not a distribution (finite, non-negative, positive sum)"
            )));
        }
        let step = self.step + 1;
        let id = &self.identity;
        let granularity = match id.warmup_granularity {
            Some(g) if step <= id.warmup_steps => g,
            _ => id.granularity,
        };
        let plan = BatchPlan::draw(
            weights,
            id.micro_batches,
            id.micro_batch_size,
            granularity,
            &mut self.plan_rng,
        );
        let per_rank = id.micro_batches / self.world_size;
        let mine = self.rank * per_rank..(self.rank + 1) * per_rank;
        let width = self.store.manifest().seq_len + 1;
        let capacity = if materialize {
            per_rank * id.micro_batch_size
        } else {
            0
        };
        let mut bytes = Vec::with_capacity(capacity * width * 4);
        let mut domains = Vec::with_capacity(capacity);
        for (m, micro_batch) in plan.domains.iter().enumerate() {
            for &d in micro_batch {
                if materialize && mine.contains(&m) {
                    let sequence = self.samplers[d].next_sequence().map_err(data_error)?;
                    bytes.extend(sequence.iter().flat_map(|t| t.to_le_bytes()));
                    domains.push(d);
                } else {
                    self.samplers[d].skip_sequence();
                }
            }
        }
        self.step = step;
        Ok((bytes, domains, (per_rank, id.micro_batch_size, width)))
    }
}

/// The Rust side of `mixlab.DataStream` (which wraps the token rows in NumPy arrays).
#[pyclass(name = "_DataStream", module = "mixlab")]
pub(crate) struct PyDataStream {
    inner: Mutex<Stream>,
}

impl PyDataStream {
    fn stream(&self) -> MutexGuard<'_, Stream> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[pymethods]
impl PyDataStream {
    #[new]
    #[pyo3(signature = (dataset, seed, micro_batches, micro_batch_size, granularity="micro-batch", warmup_granularity=None, warmup_steps=0, rank=0, world_size=1))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        dataset: PathBuf,
        seed: u64,
        micro_batches: usize,
        micro_batch_size: usize,
        granularity: &str,
        warmup_granularity: Option<&str>,
        warmup_steps: u64,
        rank: usize,
        world_size: usize,
    ) -> PyResult<Self> {
        if micro_batches == 0 || micro_batch_size == 0 {
            return Err(MixerError::new_err(
                "micro_batches and micro_batch_size must be at least 1",
            ));
        }
        if world_size == 0 || !micro_batches.is_multiple_of(world_size) || rank >= world_size {
            return Err(MixerError::new_err(format!(
                "world_size {world_size} must divide micro_batches {micro_batches}, and rank {rank} must be below it"
            )));
        }
        let store = DomainStore::open(&dataset, &OpenOptions::default()).map_err(data_error)?;
        let names = store.domain_names();
        let seeds = SeedStreams::new(seed);
        let samplers = names
            .iter()
            .map(|name| store.sampler(name, Split::Train, seeds.data))
            .collect::<Result<Vec<_>, _>>()
            .map_err(data_error)?;
        let identity = Identity {
            seed,
            domains: names,
            micro_batches,
            micro_batch_size,
            granularity: self::granularity(granularity, "granularity")?,
            warmup_granularity: warmup_granularity
                .map(|g| self::granularity(g, "warmup_granularity"))
                .transpose()?,
            warmup_steps,
        };
        Ok(Self {
            inner: Mutex::new(Stream {
                store,
                identity,
                samplers,
                plan_rng: ChaCha8Rng::seed_from_u64(seeds.plan),
                step: 0,
                rank,
                world_size,
            }),
        })
    }

    /// The dataset's domains, in the order of the weights `next_step` takes.
    #[getter]
    fn domains(&self) -> Vec<String> {
        self.stream().identity.domains.clone()
    }

    /// Tokens per sequence (each row holds `seq_len + 1`: inputs and shifted targets).
    #[getter]
    fn seq_len(&self) -> usize {
        self.stream().store.manifest().seq_len
    }

    /// The tokenizer's vocabulary size.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.stream().store.manifest().vocab_size
    }

    /// Training tokens per domain, in domain order (a mixer's `token_counts`).
    #[getter]
    fn token_counts(&self) -> Vec<u64> {
        let stream = self.stream();
        let counts = stream.store.manifest().train_tokens();
        stream
            .identity
            .domains
            .iter()
            .map(|name| counts.get(name).copied().unwrap_or(0))
            .collect()
    }

    /// Steps drawn so far.
    #[getter]
    fn step(&self) -> u64 {
        self.stream().step
    }

    /// Draws the next step with `weights` (one per domain): this rank's token rows as
    /// little-endian u32 bytes, its sequences' domain indices, and the rows' shape
    /// `[micro_batches / world_size, micro_batch_size, seq_len + 1]`.
    fn next_step<'py>(&self, py: Python<'py>, weights: Vec<f64>) -> PyResult<StepRows<'py>> {
        let (bytes, domains, shape) = self.stream().draw(&weights, true)?;
        Ok((PyBytes::new(py, &bytes), domains, shape))
    }

    /// Draws the next step with `weights` exactly as `next_step` does, but reads no rows: the
    /// stream then stands where `next_step` would have left it. For data-loader workers that
    /// follow every step and materialise only their own.
    fn skip_step(&self, weights: Vec<f64>) -> PyResult<()> {
        self.stream().draw(&weights, false).map(|_| ())
    }

    /// The stream's position (step, sampler cursors, plan generator), to checkpoint.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stream = self.stream();
        let state = State {
            identity: stream.identity.clone(),
            step: stream.step,
            cursors: stream.samplers.iter().map(DomainSampler::cursor).collect(),
            plan_word_pos: stream.plan_rng.get_word_pos().to_string(),
        };
        let json =
            serde_json::to_value(&state).map_err(|e| MixerError::new_err(format!("state: {e}")))?;
        from_json(py, &json)
    }

    /// Restores a `state_dict()` of a stream over the same dataset, seed and batch shape.
    fn load_state_dict(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let json = to_json(py, state, "state")?;
        let state: State = serde_json::from_value(json)
            .map_err(|e| MixerError::new_err(format!("state: not a data stream state ({e})")))?;
        let mut stream = self.stream();
        if state.identity != stream.identity {
            return Err(MixerError::new_err(format!(
                "state: saved by a stream of {:?}, this one is {:?}",
                state.identity, stream.identity
            )));
        }
        let word_pos: u128 = state.plan_word_pos.parse().map_err(|_| {
            MixerError::new_err(format!(
                "state: plan_word_pos `{}` is not an integer",
                state.plan_word_pos
            ))
        })?;
        if state.cursors.len() != stream.samplers.len() {
            return Err(MixerError::new_err("state: one cursor per domain expected"));
        }
        // Checked before anything changes, so a refused state leaves the stream as it was.
        for (sampler, cursor) in stream.samplers.iter().zip(&state.cursors) {
            if cursor.position > sampler.len() {
                return Err(MixerError::new_err(format!(
                    "state: cursor {cursor:?} lies beyond the {} sequences of `{}`",
                    sampler.len(),
                    sampler.domain()
                )));
            }
        }
        for (sampler, cursor) in stream.samplers.iter_mut().zip(&state.cursors) {
            sampler.set_cursor(*cursor).map_err(data_error)?;
        }
        stream.plan_rng.set_word_pos(word_pos);
        stream.step = state.step;
        Ok(())
    }
}
