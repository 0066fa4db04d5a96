//! Per-domain perplexity over a prepared dataset split, as the paper reports it.

use std::fmt::Write as _;

use burn::tensor::{Bool, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mixlab_data::{DomainStore, Split};
use mixlab_model::GptNeoX;
use mixlab_model::ModelBackend;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// Sequences per domain the paper evaluates on (odm-facts.md §8: "≤ 5000 validation samples per
/// domain").
pub const PAPER_SEQUENCES_PER_DOMAIN: u64 = 5_000;

/// Settings of a perplexity evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerplexityConfig {
    /// Evaluate at most this many sequences per domain, the first ones in stored order, so that
    /// runs are comparable; `None` evaluates them all.
    pub max_sequences_per_domain: Option<u64>,
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// Domains to evaluate; empty means every domain of the dataset.
    pub domains: Vec<String>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for PerplexityConfig {
    fn default() -> Self {
        Self {
            max_sequences_per_domain: Some(PAPER_SEQUENCES_PER_DOMAIN),
            batch_size: 16,
            domains: Vec::new(),
            progress: false,
        }
    }
}

/// Perplexity of one domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainPerplexity {
    /// The domain.
    pub domain: String,
    /// Sequences evaluated.
    pub sequences: u64,
    /// Target tokens evaluated (`seq_len` per sequence).
    pub tokens: u64,
    /// Sum of the per-token negative log-likelihoods (nats).
    pub nll_sum: f64,
    /// `nll_sum / tokens`: the token-weighted mean NLL.
    pub mean_nll: f64,
    /// `exp(mean_nll)`.
    pub perplexity: f64,
}

/// Perplexity of every evaluated domain and their averages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerplexityReport {
    /// The split evaluated.
    pub split: Split,
    /// The per-domain cap that was applied.
    pub max_sequences_per_domain: Option<u64>,
    /// Domains with at least one sequence, in dataset order.
    pub domains: Vec<DomainPerplexity>,
    /// Domains without a complete sequence in this split; left out of every average.
    pub empty_domains: Vec<String>,
    /// Unweighted mean of the domains' perplexities: the paper's headline metric (Fig. 1, Fig. 3).
    pub mean_perplexity: f64,
    /// Unweighted mean of the domains' mean NLLs.
    pub mean_nll: f64,
    /// NLL averaged over all evaluated tokens of all domains.
    pub token_weighted_nll: f64,
    /// `exp(token_weighted_nll)`.
    pub token_weighted_perplexity: f64,
    /// Sequences evaluated over all domains.
    pub sequences: u64,
    /// Target tokens evaluated over all domains.
    pub tokens: u64,
}

impl PerplexityReport {
    /// The domain called `name`, if it was evaluated.
    pub fn domain(&self, name: &str) -> Option<&DomainPerplexity> {
        self.domains.iter().find(|domain| domain.domain == name)
    }

    /// A Markdown table: one row per domain, then both averages.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| domain | sequences | tokens | mean NLL | perplexity |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for domain in &self.domains {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.4} | {:.3} |",
                domain.domain, domain.sequences, domain.tokens, domain.mean_nll, domain.perplexity
            );
        }
        let _ = writeln!(
            out,
            "| **mean over domains** | {} | {} | {:.4} | **{:.3}** |",
            self.sequences, self.tokens, self.mean_nll, self.mean_perplexity
        );
        let _ = writeln!(
            out,
            "| token-weighted | {} | {} | {:.4} | {:.3} |",
            self.sequences, self.tokens, self.token_weighted_nll, self.token_weighted_perplexity
        );
        for domain in &self.empty_domains {
            let _ = writeln!(out, "| {domain} | 0 | 0 | | |");
        }
        out
    }
}

/// Sum of the per-token NLL of each sequence: inputs are a sequence's tokens but the last, targets
/// all but the first, as in training. Sequences may differ in length (shorter ones are padded and
/// masked).
///
/// `model` should be a non-autodiff model (`model.valid()`), since no gradient is needed.
///
/// # Shapes
/// - sequences: `batch` sequences of at least 2 tokens → `batch` sums
pub fn sequence_nll_sums<B: ModelBackend>(
    model: &GptNeoX<B>,
    device: &B::Device,
    sequences: &[Vec<u32>],
) -> Vec<f64> {
    let batch = sequences.len();
    let seq = sequences
        .iter()
        .map(|s| s.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    if batch == 0 || seq == 0 {
        return vec![0.0; batch];
    }
    // A backend that runs faster on fewer positions at a time (the CPU: the logits stay in its
    // caches) gets the batch in parts; a sequence's losses do not depend on its batch.
    if let Some(positions) = B::loss_positions_per_pass() {
        let per_pass = (positions / seq).max(1);
        if batch > per_pass {
            return sequences
                .chunks(per_pass)
                .flat_map(|part| sequence_nll_sums(model, device, part))
                .collect();
        }
    }
    let mut inputs = vec![0i32; batch * seq];
    let mut targets = vec![0i32; batch * seq];
    let mut mask = vec![false; batch * seq];
    for (row, sequence) in sequences.iter().enumerate() {
        for (position, pair) in sequence.windows(2).enumerate() {
            inputs[row * seq + position] = pair[0] as i32;
            targets[row * seq + position] = pair[1] as i32;
            mask[row * seq + position] = true;
        }
    }
    let ragged = sequences.iter().any(|s| s.len() != seq + 1);
    let inputs = Tensor::<B, 2, Int>::from_data(TensorData::new(inputs, [batch, seq]), device);
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [batch, seq]), device);
    let mask = ragged
        .then(|| Tensor::<B, 2, Bool>::from_data(TensorData::new(mask, [batch, seq]), device));
    let nll = model.per_token_nll(inputs, targets, mask).into_data(); // [batch, seq]
    // Summed on the host in f64: 5,000 × 1,024 f32 terms would lose digits on the device.
    let values: Vec<f64> = nll.iter::<f64>().collect();
    values.chunks(seq).map(|row| row.iter().sum()).collect()
}

/// Measures per-domain perplexity of `model` on `split` of `store`.
///
/// Per domain, the first `max_sequences_per_domain` sequences in stored order are scored in
/// batches; every target token counts once (token-weighted within a domain). The report holds the
/// unweighted mean over domains, which the paper plots, and the token-weighted mean.
///
/// `model` should be a non-autodiff model (`model.valid()` of a training model).
pub fn evaluate_perplexity<B: ModelBackend>(
    model: &GptNeoX<B>,
    device: &B::Device,
    store: &DomainStore,
    split: Split,
    config: &PerplexityConfig,
) -> Result<PerplexityReport> {
    if config.batch_size == 0 {
        return Err(EvalError::InvalidConfig {
            field: "batch_size",
            reason: "must be at least 1".into(),
        });
    }
    if config.max_sequences_per_domain == Some(0) {
        return Err(EvalError::InvalidConfig {
            field: "max_sequences_per_domain",
            reason: "must be at least 1 (or absent for all sequences)".into(),
        });
    }
    let manifest = store.manifest();
    let domains = if config.domains.is_empty() {
        store.domain_names()
    } else {
        config.domains.clone()
    };
    let model_config = model.config();
    let domain_error = |domain: &str, reason: String| EvalError::Domain {
        domain: domain.to_owned(),
        split: split.to_string(),
        reason,
    };
    let mut planned = Vec::with_capacity(domains.len());
    for domain in &domains {
        let stored = manifest
            .domain(domain)?
            .splits
            .get(&split)
            .map_or(0, |stats| stats.sequences);
        let count = config
            .max_sequences_per_domain
            .map_or(stored, |cap| cap.min(stored));
        planned.push(count);
    }
    if manifest.seq_len > model_config.max_seq_len {
        return Err(domain_error(
            &domains.join(", "),
            format!(
                "sequences of {} tokens are longer than the model's max_seq_len of {}",
                manifest.seq_len, model_config.max_seq_len
            ),
        ));
    }

    let progress = if config.progress {
        let bar = ProgressBar::with_draw_target(
            Some(planned.iter().sum::<u64>()),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>24} [{bar:30}] {pos}/{len} sequences {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut results = Vec::new();
    let mut empty_domains = Vec::new();
    for (domain, count) in domains.iter().zip(planned) {
        if count == 0 {
            tracing::warn!(domain = %domain, %split, "no complete sequence in this split; left out of the averages");
            empty_domains.push(domain.clone());
            continue;
        }
        progress.set_message(domain.clone());
        let (mut nll_sum, mut tokens, mut sequences) = (0.0f64, 0u64, 0u64);
        let mut batch: Vec<Vec<u32>> = Vec::with_capacity(config.batch_size);
        let mut iterator = store.iter_split(domain, split, Some(count))?;
        loop {
            batch.clear();
            for sequence in iterator.by_ref().take(config.batch_size) {
                let sequence = sequence?;
                if let Some(&token) = sequence
                    .iter()
                    .find(|&&token| token as usize >= model_config.vocab_size)
                {
                    return Err(domain_error(
                        domain,
                        format!(
                            "token id {token} is outside the model's vocabulary of {}: the dataset \
                             was tokenized for another model",
                            model_config.vocab_size
                        ),
                    ));
                }
                batch.push(sequence);
            }
            if batch.is_empty() {
                break;
            }
            for (sequence, sum) in batch.iter().zip(sequence_nll_sums(model, device, &batch)) {
                nll_sum += sum;
                tokens += sequence.len().saturating_sub(1) as u64;
            }
            sequences += batch.len() as u64;
            progress.inc(batch.len() as u64);
        }
        let mean_nll = nll_sum / tokens.max(1) as f64;
        results.push(DomainPerplexity {
            domain: domain.clone(),
            sequences,
            tokens,
            nll_sum,
            mean_nll,
            perplexity: mean_nll.exp(),
        });
    }
    progress.finish_and_clear();

    let evaluated = results.len().max(1) as f64;
    let tokens: u64 = results.iter().map(|d| d.tokens).sum();
    let token_weighted_nll = results.iter().map(|d| d.nll_sum).sum::<f64>() / tokens.max(1) as f64;
    Ok(PerplexityReport {
        split,
        max_sequences_per_domain: config.max_sequences_per_domain,
        mean_perplexity: results.iter().map(|d| d.perplexity).sum::<f64>() / evaluated,
        mean_nll: results.iter().map(|d| d.mean_nll).sum::<f64>() / evaluated,
        token_weighted_nll,
        token_weighted_perplexity: token_weighted_nll.exp(),
        sequences: results.iter().map(|d| d.sequences).sum(),
        tokens,
        domains: results,
        empty_domains,
    })
}
