//! Tokenizers: load any HF `tokenizer.json`, or train a byte-level BPE on the training split.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use crate::error::{DataError, Result};

/// The end-of-document token of GPT-NeoX-20B's tokenizer (id 0 there), and of the tokenizers
/// mixlab trains.
pub const DEFAULT_EOD_TOKEN: &str = "<|endoftext|>";

/// Where the tokenizer of a dataset comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// An existing `tokenizer.json` (e.g. GPT-NeoX-20B's, as the paper uses).
    File(PathBuf),
    /// Train a byte-level BPE with this many tokens on the training split.
    Train {
        /// Target vocabulary size, special tokens included.
        vocab_size: usize,
    },
}

impl std::str::FromStr for TokenizerSource {
    type Err = DataError;
    /// `train:VOCAB` trains a BPE; anything else is a path to a `tokenizer.json`.
    fn from_str(s: &str) -> Result<Self> {
        if let Some(v) = s.strip_prefix("train:") {
            let vocab_size: usize = v.parse().map_err(|_| {
                DataError::config(
                    "tokenizer",
                    format!("`{v}` in `{s}` is not a vocabulary size"),
                )
            })?;
            // 256 byte symbols plus the end-of-document token are the least a byte-level BPE has.
            if vocab_size < 257 {
                return Err(DataError::config(
                    "tokenizer",
                    format!(
                        "vocabulary size {vocab_size} is below 257 (256 bytes + <|endoftext|>)"
                    ),
                ));
            }
            Ok(TokenizerSource::Train { vocab_size })
        } else {
            Ok(TokenizerSource::File(PathBuf::from(s)))
        }
    }
}

fn tok_err(what: impl Into<String>, e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// Loads a `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
        ));
    }
    Tokenizer::from_file(path).map_err(|e| tok_err(path.display().to_string(), e))
}

/// Trains a byte-level BPE (GPT-2/GPT-NeoX style: no normaliser, no prefix space, byte fallback
/// through the 256-symbol byte alphabet) with `<|endoftext|>` as token 0.
pub fn train_bpe<I, S>(vocab_size: usize, texts: I) -> Result<Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let alphabet = ByteLevel::alphabet().into_iter().collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(DEFAULT_EOD_TOKEN, true)])
        .initial_alphabet(alphabet)
        .build();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
        .with_post_processor(Some(ByteLevel::default().trim_offsets(false)))
        .with_decoder(Some(ByteLevel::default()))
        .build()
        .map_err(|e| tok_err("builder", e))?;
    tokenizer
        .train(&mut trainer, texts)
        .map_err(|e| tok_err("training", e))?;
    Ok(Tokenizer::from(tokenizer))
}

/// The id of the end-of-document token, or an error naming the token and the tokenizer.
pub fn eod_id(tokenizer: &Tokenizer, eod_token: &str, what: &str) -> Result<u32> {
    tokenizer
        .token_to_id(eod_token)
        .ok_or_else(|| tok_err(what, format!("has no end-of-document token `{eod_token}`")))
}

/// SHA-256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            "train:512".parse::<TokenizerSource>().unwrap(),
            TokenizerSource::Train { vocab_size: 512 }
        );
        assert!("train:12".parse::<TokenizerSource>().is_err());
        assert!("train:x".parse::<TokenizerSource>().is_err());
        assert_eq!(
            "a/tokenizer.json".parse::<TokenizerSource>().unwrap(),
            TokenizerSource::File("a/tokenizer.json".into())
        );
    }

    #[test]
    fn trained_bpe_has_eod_zero_and_round_trips() {
        let texts: Vec<String> = (0..200)
            .map(|i| format!("the quick brown fox {i} jumps over the lazy dog. ünïcödé"))
            .collect();
        let tok = train_bpe(300, texts.iter()).unwrap();
        assert_eq!(eod_id(&tok, DEFAULT_EOD_TOKEN, "t").unwrap(), 0);
        assert!(tok.get_vocab_size(true) <= 300);
        let enc = tok.encode("the quick brown fox ünïcödé", false).unwrap();
        let dec = tok.decode(enc.get_ids(), false).unwrap();
        assert_eq!(dec, "the quick brown fox ünïcödé");
        assert!(eod_id(&tok, "<missing>", "t").is_err());
    }
}
