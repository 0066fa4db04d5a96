//! The one error type of mixlab-data.

use std::path::PathBuf;

/// Everything that can go wrong while reading corpora, preparing datasets or sampling from them.
///
/// Variants carry the file, line, field or domain they are about, so a message alone is enough to
/// find the offending input.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Another process holds the directory's writer lock ([`crate::lock::DirLock`]).
    #[error(
        "{dir} is being written by another process ({holder}); wait for it to finish or stop it first (readers such as report and eval need no lock)"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// Who holds it: PID, command line and start time, from the lock file.
        holder: String,
    },
    /// An I/O operation on a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a JSON-lines corpus is not a valid document.
    #[error("{path}:{line}: {reason}")]
    BadLine {
        /// The corpus file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with it (malformed JSON, missing field, non-string text, ...).
        reason: String,
    },
    /// The input paths do not describe a corpus mixlab can read.
    #[error("input {path}: {reason}")]
    BadInput {
        /// The offending path.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// Loading, training or applying a tokenizer failed.
    #[error("tokenizer {what}: {reason}")]
    Tokenizer {
        /// The tokenizer file or operation.
        what: String,
        /// The tokenizers crate's message.
        reason: String,
    },
    /// A Parquet or Arrow operation failed.
    #[error("{path}: parquet: {reason}")]
    Parquet {
        /// The shard involved.
        path: PathBuf,
        /// The underlying message.
        reason: String,
    },
    /// The manifest is missing, corrupt or does not match what the caller expects.
    #[error("{path}: manifest field `{field}`: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The field in question.
        field: String,
        /// What differs or is wrong.
        reason: String,
    },
    /// A domain name the dataset does not have, or a domain that cannot be sampled.
    #[error("domain `{domain}`: {reason}")]
    Domain {
        /// The domain name.
        domain: String,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("config field `{field}`: {reason}")]
    Config {
        /// The field name.
        field: String,
        /// What is wrong with its value.
        reason: String,
    },
}

/// Result alias of mixlab-data.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parquet(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        DataError::Parquet {
            path: path.into(),
            reason: err.to_string(),
        }
    }

    pub(crate) fn config(field: &str, reason: impl Into<String>) -> Self {
        DataError::Config {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
