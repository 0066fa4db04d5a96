//! The one error type of `mixlab-eval`.

use std::path::PathBuf;

use mixlab_data::DataError;
use mixlab_model::ModelError;

/// Everything that can go wrong while reading benchmark files, building prompts, scoring or
/// measuring perplexity.
///
/// Each variant names the file and line, subject, domain or field it is about, so that the message
/// alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A row of a multiple-choice CSV file cannot be used.
    #[error("{}:{line}: {reason}", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line on which the offending record starts.
        line: u64,
        /// What is wrong with the record.
        reason: String,
    },

    /// A benchmark directory holds no subject in the expected layout.
    #[error(
        "{}: no subjects found; expected `test/<subject>_test.csv` and `dev/<subject>_dev.csv` \
         (the hendrycks/test `data/` layout), directly or under `data/`",
        path.display()
    )]
    NoSubjects {
        /// The directory that was searched.
        path: PathBuf,
    },

    /// A subject was asked for that the benchmark directory does not hold.
    #[error("unknown subject `{subject}`; available: {available}")]
    UnknownSubject {
        /// The subject asked for.
        subject: String,
        /// The available subjects, comma-separated.
        available: String,
    },

    /// A subject's files cannot serve the chosen protocol (for example too few few-shot rows).
    #[error("subject `{subject}`: {reason}")]
    Subject {
        /// The subject.
        subject: String,
        /// What is missing or inconsistent.
        reason: String,
    },

    /// A tokenizer could not be loaded or failed to encode a text.
    #[error("tokenizer {what}: {reason}")]
    Tokenizer {
        /// The tokenizer file, or the text being encoded.
        what: String,
        /// What the tokenizers library reported.
        reason: String,
    },

    /// A log-likelihood request cannot be scored as given.
    #[error("log-likelihood request {index}: {reason}")]
    Request {
        /// Position of the request in the batch handed to the scorer.
        index: usize,
        /// Why it cannot be scored.
        reason: String,
    },

    /// A domain's sequences do not fit the model being evaluated.
    #[error("domain `{domain}` ({split} split): {reason}")]
    Domain {
        /// The domain.
        domain: String,
        /// The split being evaluated.
        split: String,
        /// What does not fit.
        reason: String,
    },

    /// An evaluation setting has a value that cannot be used.
    #[error("invalid evaluation config: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },

    /// A JSON file could not be written.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },

    /// Opening or reading a prepared dataset failed.
    #[error(transparent)]
    Data(#[from] DataError),

    /// Loading or building a model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl EvalError {
    /// An [`EvalError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`EvalError`].
pub type Result<T> = std::result::Result<T, EvalError>;

impl From<mixlab_atomic::WriteError> for EvalError {
    fn from(e: mixlab_atomic::WriteError) -> Self {
        EvalError::Io {
            path: e.path,
            source: e.source,
        }
    }
}
