//! Initial weights from a pretrained GPT-NeoX directory (`[model] init_from`): continued
//! pre-training of a Pythia checkpoint, of a model of one's own in HF form, or of a mixlab
//! run's `final/`.
//!
//! The run's model config (its preset or `config`, with the dataset's vocabulary and sequence
//! length) stays the source of truth; the directory must hold weights of exactly that shape,
//! for the tokenizer the dataset was prepared with.

use std::path::Path;

use mixlab_model::checkpoint::{CONFIG_FILE, WEIGHTS_FILE};
use mixlab_model::{GptNeoX, ModelBackend, ModelConfig};

use crate::error::{Result, TrainError};

/// The tokenizer file HF directories (and mixlab's `final/`) keep beside their weights.
const TOKENIZER_FILE: &str = "tokenizer.json";

/// Where the fields differ between the model a run builds (`run`) and the one a pretrained
/// directory describes (`pretrained`), as `field: run value, directory value`.
///
/// The vocabulary is compared as the embedding rows both allocate (the tokenizer's size
/// padded to a multiple of 128), because an HF `config.json` stores only that; whether the
/// tokenizers are the same is checked on the tokenizer itself. `max_seq_len` is not compared:
/// rotary positions have no weights, so a model trained at 2,048 tokens loads for 256.
pub fn shape_differences(run: &ModelConfig, pretrained: &ModelConfig) -> Vec<String> {
    // Each field as text, so integers and floats compare and print alike.
    let fields = |c: &ModelConfig| {
        [
            (
                "vocab_size (padded; HF vocab_size)",
                c.padded_vocab_size().to_string(),
            ),
            ("n_layers (HF num_hidden_layers)", c.n_layers.to_string()),
            ("d_model (HF hidden_size)", c.d_model.to_string()),
            ("n_heads (HF num_attention_heads)", c.n_heads.to_string()),
            ("d_ff (HF intermediate_size)", c.d_ff.to_string()),
            ("rotary_pct", c.rotary_pct.to_string()),
            (
                "rotary_base (HF rotary_emb_base)",
                c.rotary_base.to_string(),
            ),
            ("layer_norm_eps", c.layer_norm_eps.to_string()),
        ]
    };
    fields(run)
        .into_iter()
        .zip(fields(pretrained))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((field, a), (_, b))| format!("{field}: the run's model has {a}, the directory {b}"))
        .collect()
}

/// Pretrained weights loaded for a run, and the hash that identifies them.
pub(crate) struct InitialWeights<B: ModelBackend> {
    /// The model with every parameter from the directory.
    pub(crate) model: GptNeoX<B>,
    /// Lower-case hex SHA-256 of `model.safetensors`.
    pub(crate) sha256: String,
}

/// Loads `dir`'s weights into the shape `model_config` gives, after checking the directory's
/// `config.json` against it, a `tokenizer.json` beside the weights against the dataset's
/// (`dataset_tokenizer_sha256`), and the weights' hash against `expected_sha256` when given.
pub(crate) fn load_initial<B: ModelBackend>(
    dir: &Path,
    model_config: &ModelConfig,
    dataset_tokenizer_sha256: &str,
    expected_sha256: Option<&str>,
    device: &B::Device,
) -> Result<InitialWeights<B>> {
    let pretrained = ModelConfig::read_hf_config(&dir.join(CONFIG_FILE))?;
    let diffs = shape_differences(model_config, &pretrained);
    if !diffs.is_empty() {
        return Err(TrainError::config(
            "model.init_from",
            format!(
                "{} does not hold the run's model: {}",
                dir.display(),
                diffs.join("; ")
            ),
        ));
    }
    let tokenizer = dir.join(TOKENIZER_FILE);
    if tokenizer.is_file() {
        let bytes = std::fs::read(&tokenizer).map_err(|e| TrainError::io(&tokenizer, e))?;
        let found = crate::checkpoint::sha256_hex(&bytes);
        if found != dataset_tokenizer_sha256 {
            return Err(TrainError::config(
                "model.init_from",
                format!(
                    "{} (SHA-256 {found}) is not the tokenizer the dataset was prepared with \
                     (SHA-256 {dataset_tokenizer_sha256}): the weights would read other tokens \
                     than they were trained on",
                    tokenizer.display()
                ),
            ));
        }
    } else {
        tracing::warn!(
            "{} has no {TOKENIZER_FILE}: the weights' tokenizer cannot be checked against the dataset's",
            dir.display()
        );
    }
    let weights = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).map_err(|e| TrainError::io(&weights, e))?;
    let sha256 = crate::checkpoint::sha256_hex(&bytes);
    if let Some(expected) = expected_sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(TrainError::config(
            "model.init_sha256",
            format!(
                "is {expected}, but {} has SHA-256 {sha256}",
                weights.display()
            ),
        ));
    }
    let model = model_config
        .init_lazy::<B>(device)?
        .load_safetensors_bytes(&bytes, &weights)?;
    Ok(InitialWeights { model, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_differing_field_and_ignores_the_context_length() {
        let run = ModelConfig::tiny();
        let mut other = run.clone();
        other.n_layers += 1;
        other.d_ff *= 2;
        other.max_seq_len *= 4;
        let diffs = shape_differences(&run, &other);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(diffs[0].starts_with("n_layers (HF num_hidden_layers): the run's model has"));
        assert!(diffs[1].starts_with("d_ff (HF intermediate_size)"));
        // Tokenizers of 4,000 and 4,096 ids both pad to 4,096 embedding rows.
        let mut padded = run.clone().with_vocab_size(4000);
        assert!(shape_differences(&run.clone().with_vocab_size(4096), &padded).is_empty());
        padded = padded.with_vocab_size(4097);
        assert_eq!(
            shape_differences(&run.with_vocab_size(4096), &padded).len(),
            1
        );
    }
}
