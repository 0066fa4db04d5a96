//! The error type of mixlab-mixer-ado.

/// What can be wrong with an ADO config, a step's feedback or a checkpointed state beyond the
/// shared checks of mixlab-mixing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AdoError {
    /// A parameter outside its range; the message names the field and the range.
    #[error("{field} = {value}: {expected}")]
    OutOfRange {
        /// The config field.
        field: &'static str,
        /// The configured value.
        value: f64,
        /// What the field must be.
        expected: &'static str,
    },

    /// The first refit would have too little history to fit anything.
    #[error(
        "the first scaling-law fit (step {fit_step}, after start_step = {start_step} rounded up to a \
         multiple of update_interval = {update_interval}) has {rows} steps of history: {why}"
    )]
    FirstFitTooEarly {
        /// `start_step`.
        start_step: u64,
        /// `update_interval`.
        update_interval: u64,
        /// The reference code's iteration of the first fit.
        fit_step: u64,
        /// Steps of history at that fit.
        rows: u64,
        /// Which requirement fails, naming the fields involved.
        why: String,
    },

    /// `min_probability` times the number of domains exceeds 1: no distribution has that floor.
    #[error(
        "min_probability = {min_probability} with {domains} domains: the floor must satisfy \
         min_probability x domains <= 1 (the reference's 0.01 suits up to 100 domains)"
    )]
    FloorTooHigh {
        /// The configured floor.
        min_probability: f64,
        /// Number of domains.
        domains: usize,
    },

    /// A step whose feedback draws no domain: ADO needs the step's sequences to update its
    /// history.
    #[error(
        "step {step} drew no domain: ADO records the sequences of every step, and this one has none"
    )]
    EmptyStep {
        /// The step.
        step: u64,
    },

    /// A checkpointed state that is inconsistent with itself.
    #[error("checkpointed ADO state: {0}")]
    BadState(String),
}

/// Result alias of mixlab-mixer-ado.
pub type Result<T, E = AdoError> = std::result::Result<T, E>;
