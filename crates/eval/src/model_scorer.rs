//! [`LogLikelihoodScorer`] backed by a mixlab GPT-NeoX model and a HF tokenizer.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData};
use mixlab_model::ModelBackend;
use mixlab_model::{GptNeoX, per_token_nll_from_logits};
use tokenizers::Tokenizer;

use crate::error::{EvalError, Result};
use crate::prompt::is_python_space;
use crate::scorer::{LogLikelihood, LogLikelihoodRequest, LogLikelihoodScorer};

/// End-of-document token that stands in for an empty context (lm-evaluation-harness uses the
/// tokenizer's EOT token there).
const EOD_TOKEN: &str = "<|endoftext|>";

/// Padding id for the right end of shorter rows in a batch; the causal mask keeps it from
/// influencing any position that is read.
const PAD_ID: i32 = 0;

/// Encodings kept between `score` calls at most (callers that only ask `input_tokens`).
const CACHE_LIMIT: usize = 4096;

/// Counters of the work a [`ModelScorer`] did, for throughput figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScorerStats {
    /// Requests scored.
    pub requests: u64,
    /// Model input rows run (requests with identical inputs share one row).
    pub rows: u64,
    /// Forward passes (batches).
    pub batches: u64,
    /// Input tokens in those rows, without padding.
    pub input_tokens: u64,
    /// Input tokens including the padding of shorter rows.
    pub padded_tokens: u64,
    /// Requests whose input lost tokens at the front.
    pub truncated: u64,
}

/// Scores continuations with a [`GptNeoX`] model: one forward pass per distinct input, log-softmax
/// over the vocabulary, the continuation tokens' log-probabilities summed in f64.
///
/// Tokenization follows lm-evaluation-harness (`HFLM._encode_pair`): trailing whitespace of the
/// context moves to the continuation, context + continuation is encoded as one text, and the
/// continuation is whatever follows the context's own encoding. Inputs longer than the window
/// asked for (at most the model's `max_seq_len`) keep their last `window` tokens (a continuation
/// longer than that is scored over consecutive windows). Requests whose inputs are identical (for
/// example the single-token answers " A".." D" after one prompt) share one row.
///
/// Pass a model without autodiff (`model.valid()`): scoring never needs gradients.
pub struct ModelScorer<B: ModelBackend> {
    model: GptNeoX<B>,
    tokenizer: Tokenizer,
    device: B::Device,
    batch_size: usize,
    eod_id: Option<u32>,
    /// Encodings of texts seen since the last `score` call: the cropping search and the scoring
    /// of one chunk of questions encode the same prompts several times.
    cache: HashMap<String, Vec<u32>>,
    stats: ScorerStats,
}

impl<B: ModelBackend> std::fmt::Debug for ModelScorer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelScorer")
            .field("config", self.model.config())
            .field("batch_size", &self.batch_size)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Loads a `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|error| EvalError::Tokenizer {
        what: path.display().to_string(),
        reason: error.to_string(),
    })
}

impl<B: ModelBackend> ModelScorer<B> {
    /// A scorer running `model` on `device` with `tokenizer`, 8 rows per forward pass.
    ///
    /// Fails when the tokenizer can produce ids the model has no embedding for.
    pub fn new(model: GptNeoX<B>, mut tokenizer: Tokenizer, device: B::Device) -> Result<Self> {
        let tokenizer_vocab = tokenizer.get_vocab_size(true);
        let model_vocab = model.config().vocab_size;
        if tokenizer_vocab > model_vocab {
            return Err(EvalError::Tokenizer {
                what: "for scoring".into(),
                reason: format!(
                    "has {tokenizer_vocab} tokens, but the model's vocabulary has {model_vocab}"
                ),
            });
        }
        // A tokenizer.json may carry truncation or padding settings; scoring needs raw encodings.
        tokenizer
            .with_truncation(None)
            .map_err(|error| EvalError::Tokenizer {
                what: "for scoring".into(),
                reason: error.to_string(),
            })?;
        tokenizer.with_padding(None);
        let eod_id = tokenizer.token_to_id(EOD_TOKEN);
        Ok(Self {
            model,
            tokenizer,
            device,
            batch_size: 8,
            eod_id,
            cache: HashMap::new(),
            stats: ScorerStats::default(),
        })
    }

    /// The same scorer with `batch_size` rows per forward pass (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The model.
    pub fn model(&self) -> &GptNeoX<B> {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Work done so far.
    pub fn stats(&self) -> ScorerStats {
        self.stats
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&mut self, text: &str) -> Result<Vec<u32>> {
        if let Some(ids) = self.cache.get(text) {
            return Ok(ids.clone());
        }
        let encoding =
            self.tokenizer
                .encode(text, false)
                .map_err(|error| EvalError::Tokenizer {
                    what: format!("encoding {:?}", text.chars().take(60).collect::<String>()),
                    reason: error.to_string(),
                })?;
        let ids = encoding.get_ids().to_vec();
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(text.to_owned(), ids.clone());
        Ok(ids)
    }

    /// Context and continuation ids of a request, as lm-evaluation-harness splits them.
    pub fn encode_request(
        &mut self,
        request: &LogLikelihoodRequest,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        let context = request.context.trim_end_matches(is_python_space);
        let moved = &request.context[context.len()..];
        let continuation = format!("{moved}{}", request.continuation);
        if context.is_empty() {
            let eod = self.eod_id.ok_or_else(|| EvalError::Tokenizer {
                what: "for scoring".into(),
                reason: format!(
                    "an empty context needs the end-of-document token `{EOD_TOKEN}`, which this \
                     tokenizer lacks"
                ),
            })?;
            return Ok((vec![eod], self.encode(&continuation)?));
        }
        let context_ids = self.encode(context)?;
        let whole = self.encode(&format!("{context}{continuation}"))?;
        let continuation_ids = whole.get(context_ids.len()..).unwrap_or_default().to_vec();
        Ok((context_ids, continuation_ids))
    }

    /// Runs one batch of rows and returns, per requested (row, position, target), the target's
    /// log-probability and whether it was the argmax.
    ///
    /// # Shapes
    /// - rows: `batch` inputs of at most `max_len` tokens, right-padded to `[batch, max_len]`
    /// - picks: `n` (row, position, target) triples → `n` pairs
    fn run_batch(&self, rows: &[&[u32]], picks: &[(usize, usize, u32)]) -> Vec<(f64, bool)> {
        let max_len = rows.iter().map(|row| row.len()).max().unwrap_or(0);
        let batch = rows.len();
        let mut tokens = vec![PAD_ID; batch * max_len];
        for (index, row) in rows.iter().enumerate() {
            for (slot, &token) in tokens[index * max_len..].iter_mut().zip(row.iter()) {
                *slot = token as i32;
            }
        }
        let positions: Vec<i32> = picks
            .iter()
            .map(|&(row, position, _)| (row * max_len + position) as i32)
            .collect();
        let targets: Vec<i32> = picks.iter().map(|&(_, _, target)| target as i32).collect();
        let count = picks.len();

        let inputs =
            Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [batch, max_len]), &self.device);
        let positions =
            Tensor::<B, 1, Int>::from_data(TensorData::new(positions, [count]), &self.device);
        // Only the scored positions go through the vocabulary head and log-softmax (the head is
        // the largest product of the pass): [count, vocab], forward's values at those positions.
        let picked = self.model.forward_at(inputs, positions);
        let [_, vocab] = picked.dims();
        let argmax = picked.clone().argmax(1).into_data(); // [count, 1]
        let targets =
            Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [1, count]), &self.device);
        let nll =
            per_token_nll_from_logits(picked.reshape([1, count, vocab]), targets, None).into_data(); // [1, count]
        nll.iter::<f64>()
            .zip(argmax.iter::<i64>())
            .zip(picks)
            .map(|((nll, best), &(_, _, target))| (-nll, best == i64::from(target)))
            .collect()
    }
}

/// One distinct model input and the continuation tokens read from it.
struct Row {
    input: Vec<u32>,
    /// (request index, position in `input` whose logits predict the token, token).
    picks: Vec<(usize, usize, u32)>,
}

impl<B: ModelBackend> LogLikelihoodScorer for ModelScorer<B> {
    fn max_input_tokens(&self) -> usize {
        self.model.config().max_seq_len
    }

    fn input_tokens(&mut self, request: &LogLikelihoodRequest) -> Result<usize> {
        let (context, continuation) = self.encode_request(request)?;
        Ok((context.len() + continuation.len()).saturating_sub(1))
    }

    fn score(
        &mut self,
        requests: &[LogLikelihoodRequest],
        window: usize,
    ) -> Result<Vec<LogLikelihood>> {
        if !(1..=self.max_input_tokens()).contains(&window) {
            return Err(EvalError::InvalidConfig {
                field: "window",
                reason: format!(
                    "{window} tokens; the model reads 1 to {} tokens per pass",
                    self.max_input_tokens()
                ),
            });
        }
        let mut answers = vec![
            LogLikelihood {
                log_likelihood: 0.0,
                is_greedy: Some(true),
                continuation_tokens: 0,
                truncated: false,
            };
            requests.len()
        ];
        let mut rows: Vec<Row> = Vec::new();
        let mut row_of_input: HashMap<Vec<u32>, usize> = HashMap::new();
        for (index, request) in requests.iter().enumerate() {
            let (context, continuation) = self.encode_request(request)?;
            if continuation.is_empty() {
                return Err(EvalError::Request {
                    index,
                    reason: format!(
                        "continuation {:?} encodes to no tokens",
                        request.continuation
                    ),
                });
            }
            let mut full = context;
            full.extend_from_slice(&continuation);
            let first_target = full.len() - continuation.len();
            answers[index].continuation_tokens = continuation.len();
            answers[index].truncated = full.len() - 1 > window;
            // Each row reads at most `window` tokens, `full[start..end - 1]`, and predicts
            // `full[start + 1..end]`. One row when the request fits; otherwise the front is cut,
            // as lm-evaluation-harness's `(context + continuation)[-(max_length + 1):][:-1]`, and
            // a continuation longer than the window (lm-evaluation-harness refuses those) is
            // covered by further rows of `window` targets each, so every token counts once.
            let mut end = full.len();
            while end > first_target {
                let start = (end - 1).saturating_sub(window);
                let targets = first_target.max(start + 1)..end;
                let input = full[start..end - 1].to_vec();
                let row = *row_of_input.entry(input).or_insert_with_key(|input| {
                    rows.push(Row {
                        input: input.clone(),
                        picks: Vec::new(),
                    });
                    rows.len() - 1
                });
                rows[row].picks.extend(
                    targets
                        .clone()
                        .map(|target| (index, target - 1 - start, full[target])),
                );
                end = targets.start;
            }
        }
        self.cache.clear();

        // Longest first, so that each batch pads little.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&row| std::cmp::Reverse(rows[row].input.len()));
        for batch in order.chunks(self.batch_size) {
            let inputs: Vec<&[u32]> = batch
                .iter()
                .map(|&row| rows[row].input.as_slice())
                .collect();
            let picks: Vec<(usize, usize, u32)> = batch
                .iter()
                .enumerate()
                .flat_map(|(slot, &row)| {
                    rows[row]
                        .picks
                        .iter()
                        .map(move |&(_, position, token)| (slot, position, token))
                })
                .collect();
            let owners: Vec<usize> = batch
                .iter()
                .flat_map(|&row| rows[row].picks.iter().map(|&(request, _, _)| request))
                .collect();
            let scored = self.run_batch(&inputs, &picks);
            for (request, (log_probability, greedy)) in owners.into_iter().zip(scored) {
                let answer = &mut answers[request];
                answer.log_likelihood += log_probability;
                if !greedy {
                    answer.is_greedy = Some(false);
                }
            }
            let max_len = inputs.iter().map(|input| input.len()).max().unwrap_or(0);
            self.stats.batches += 1;
            self.stats.rows += inputs.len() as u64;
            self.stats.input_tokens += inputs.iter().map(|input| input.len() as u64).sum::<u64>();
            self.stats.padded_tokens += (inputs.len() * max_len) as u64;
        }
        self.stats.requests += requests.len() as u64;
        self.stats.truncated += answers.iter().filter(|answer| answer.truncated).count() as u64;
        Ok(answers)
    }
}
