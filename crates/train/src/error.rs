//! The one error type of mixlab-train.

use std::path::PathBuf;

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// File-system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is invalid.
    #[error("config `{field}`: {reason}")]
    Config {
        /// The field (or file) in question.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The data layer failed.
    #[error(transparent)]
    Data(#[from] mixlab_data::DataError),
    /// The model layer failed.
    #[error(transparent)]
    Model(#[from] mixlab_model::ModelError),
    /// The mixer failed or rejected its feedback.
    #[error(transparent)]
    Mixing(#[from] mixlab_mixing::MixingError),
    /// The training loss became NaN or infinite.
    #[error(
        "step {step}: non-finite training loss {loss} (domains in this step: {domains}); the last good state is in checkpoint {checkpoint}"
    )]
    NonFiniteLoss {
        /// The step whose loss was not finite.
        step: u64,
        /// The loss value.
        loss: f64,
        /// The domains drawn in that step.
        domains: String,
        /// The checkpoint written before stopping.
        checkpoint: String,
    },
    /// The caller's validation ([`crate::Validate`]) failed.
    #[error("validation after step {step}: {source}")]
    Validation {
        /// The step after which it ran.
        step: u64,
        /// The validation's own error.
        #[source]
        source: crate::validation::ValidationError,
    },
    /// Writing a checkpoint failed (a full disk, say); its temporary directory was removed.
    #[error(
        "checkpoint step-{step}: {} while writing {path}; the half-written checkpoint was removed and {resume_from}",
        describe_io(source)
    )]
    CheckpointWrite {
        /// The step being checkpointed.
        step: u64,
        /// The file being written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
        /// Which checkpoint a `--resume` continues from.
        resume_from: String,
    },
    /// A checkpoint is corrupt or belongs to another run.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong or differs.
        reason: String,
    },
}

/// An I/O error in words a user acts on: a full disk is named as such.
fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::StorageFull => format!("no space left on device ({error})"),
        std::io::ErrorKind::QuotaExceeded => format!("disk quota exceeded ({error})"),
        _ => error.to_string(),
    }
}

/// Result alias of mixlab-train.
pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    /// A configuration error.
    pub fn config(field: &str, reason: impl Into<String>) -> Self {
        TrainError::Config {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// A checkpoint error.
    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<mixlab_atomic::WriteError> for TrainError {
    fn from(e: mixlab_atomic::WriteError) -> Self {
        TrainError::Io {
            path: e.path,
            source: e.source,
        }
    }
}
