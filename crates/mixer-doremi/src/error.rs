//! The error type of mixlab-mixer-doremi.

/// What can be wrong with a DoReMi config or its context.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DoremiError {
    /// η must be a positive finite number.
    #[error("eta = {0}: the step size must be finite and > 0")]
    Eta(f64),

    /// c must lie in [0, 1].
    #[error("smoothing = {0}: it must be in [0, 1]")]
    Smoothing(f64),

    /// The initial excess loss must be finite and non-negative.
    #[error("initial_excess_loss = {0}: it must be finite and >= 0")]
    InitialExcessLoss(f64),

    /// Neither `initial_excess_loss` nor the vocabulary size is known.
    #[error(
        "the initial excess loss is ln(vocabulary size), but the vocabulary size is unknown: set initial_excess_loss"
    )]
    NoVocabulary,

    /// The proxy cannot sample a domain of weight 0, and α_i / 0 is undefined.
    #[error("domain {domain:?} has sampling weight 0; DoReMi's proxy must sample every domain")]
    ZeroSamplingWeight {
        /// The domain.
        domain: String,
    },
}

/// Result alias of mixlab-mixer-doremi.
pub type Result<T, E = DoremiError> = std::result::Result<T, E>;
