//! The error type of mixlab-mixing, shared by every mixer through the [`crate::Mixer`] trait.

use std::path::PathBuf;

/// Everything that can go wrong while building, feeding or restoring a mixer.
///
/// Variants name the domain, field, file or line they are about, so that a message read in a
/// log is enough to find the cause. Wrapped errors are part of the message rather than a
/// `source()`, so that error reporters do not print them twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MixingError {
    /// A domain set must name at least one domain.
    #[error("the domain set is empty: a mixer needs at least one domain")]
    EmptyDomainSet,

    /// A domain name is the empty string.
    #[error("domain number {index} has an empty name")]
    EmptyDomainName {
        /// Position of the empty name in the list.
        index: usize,
    },

    /// The same domain name appears twice (in a domain set or in one weight table).
    #[error("{origin}: domain {domain:?} is listed twice")]
    DuplicateDomain {
        /// Where the list came from (a file, a table name, "domain set").
        origin: String,
        /// The repeated name.
        domain: String,
    },

    /// A name that is not a domain of the dataset.
    #[error("{origin}: {domain:?} is not a domain of the dataset (its domains: {known})")]
    UnknownDomain {
        /// Where the name came from (a weight table, a feedback line).
        origin: String,
        /// The unknown name.
        domain: String,
        /// The dataset's domains, comma-separated, to spot a typo.
        known: String,
    },

    /// A weight table gives no weight for one of the dataset's domains.
    #[error("{origin}: no weight for domain {domain:?} of the dataset")]
    MissingDomain {
        /// The weight table.
        origin: String,
        /// The domain without a weight.
        domain: String,
    },

    /// A weight that is negative, NaN or infinite.
    #[error(
        "{origin}: the weight of domain {domain:?} is {value}; weights must be finite and non-negative"
    )]
    InvalidWeight {
        /// The weight table.
        origin: String,
        /// The domain whose weight is invalid.
        domain: String,
        /// The offending value.
        value: f64,
    },

    /// Every weight of a table (over the dataset's domains) is zero.
    #[error("{origin}: all weights are zero, so they cannot be normalised into a distribution")]
    AllZeroWeights {
        /// The weight table.
        origin: String,
    },

    /// A feedback value a mixer must not learn from (negative, NaN, infinite, or inconsistent).
    #[error("feedback for domain {domain:?}: {field} = {value}: {reason}")]
    InvalidFeedback {
        /// The domain the value belongs to.
        domain: String,
        /// The feedback field (`loss_sum`, `excess_loss_sum`, ...).
        field: &'static str,
        /// The offending value.
        value: f64,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// The feedback has a different number of domains than the mixer.
    #[error("the step feedback covers {got} domains but the mixer has {expected}")]
    FeedbackShape {
        /// Number of domains of the mixer.
        expected: usize,
        /// Number of domains in the feedback.
        got: usize,
    },

    /// Steps must be observed in increasing order, starting at 1.
    #[error("step {step} observed after step {last}: steps must strictly increase")]
    StepOrder {
        /// The step just passed to `observe`.
        step: u64,
        /// The last step observed before it.
        last: u64,
    },

    /// Step 0 was passed to `observe`; training steps count from 1 (the paper's t = 1..N).
    #[error("step 0 is not a training step: steps count from 1")]
    StepZero,

    /// A file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (already part of the message, so not a `source()`).
        cause: std::io::Error,
    },

    /// A file or string could not be parsed; `location` is `file` or `file:line`.
    #[error("{location}: {message}")]
    Parse {
        /// Where: a path, optionally followed by `:line`.
        location: String,
        /// What is wrong.
        message: String,
    },

    /// Any error raised while processing one line of a file.
    #[error("{}:{line}: {cause}", path.display())]
    AtLine {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The error on that line (already part of the message).
        cause: Box<MixingError>,
    },

    /// A mixer configuration is invalid (unknown field, bad value, missing context).
    #[error("mixer `{kind}`: {message}")]
    Config {
        /// The mixer kind.
        kind: String,
        /// What is wrong.
        message: String,
    },

    /// A configuration names a mixer kind that is not registered.
    #[error("unknown mixer kind {kind:?}; registered kinds: {known}")]
    UnknownKind {
        /// The requested kind.
        kind: String,
        /// The registered kinds, comma-separated.
        known: String,
    },

    /// Two registry entries use the same kind.
    #[error("mixer kind {kind:?} is registered twice")]
    DuplicateKind {
        /// The repeated kind.
        kind: String,
    },

    /// Validation losses handed to a mixer that did not ask for them, or that do not fit it.
    #[error("mixer `{kind}`: validation losses after step {step}: {message}")]
    Validation {
        /// The mixer kind.
        kind: String,
        /// The step after which the model was validated.
        step: u64,
        /// What is wrong.
        message: String,
    },

    /// A checkpointed mixer state does not fit this mixer.
    #[error("mixer `{kind}`: cannot restore state: {message}")]
    State {
        /// The mixer kind.
        kind: String,
        /// What does not fit.
        message: String,
    },

    /// An error from a mixer crate's own error type.
    #[error("mixer `{kind}`: {cause}")]
    Mixer {
        /// The mixer kind.
        kind: &'static str,
        /// The mixer crate's error (already part of the message).
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result alias of mixlab-mixing.
pub type Result<T, E = MixingError> = std::result::Result<T, E>;

impl MixingError {
    /// A parse error at `location` (a path, or `path:line`).
    pub fn parse(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Parse {
            location: location.into(),
            message: message.into(),
        }
    }

    /// A configuration error of mixer `kind`.
    pub fn config(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// A state-restore error of mixer `kind`.
    pub fn state(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self::State {
            kind: kind.into(),
            message: message.into(),
        }
    }
}
