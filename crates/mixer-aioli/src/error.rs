//! The error type of mixlab-mixer-aioli.

/// What can be wrong with an Aioli config, a validation or a checkpointed state beyond the
/// shared checks of mixlab-mixing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AioliError {
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

    /// The probes of a round leave no step to train on the learned mixture.
    #[error(
        "a round's probes take lp_rounds ({lp_rounds}) x domains ({domains}) x lp_steps \
         ({lp_steps}) = {probe_steps} steps, which must be fewer than update_steps \
         ({update_steps}): raise update_steps or lower lp_rounds / lp_steps"
    )]
    ProbesFillTheRound {
        /// `lp_rounds`.
        lp_rounds: u64,
        /// Number of domains.
        domains: usize,
        /// `lp_steps`.
        lp_steps: u64,
        /// Their product.
        probe_steps: u64,
        /// `update_steps`.
        update_steps: u64,
    },

    /// The probe mixtures cannot be told apart: with `one_hot_factor` at or below 1/K the
    /// probed domain gets no more than the others (at exactly 1/K the system is singular).
    #[error(
        "one_hot_factor = {one_hot_factor} with {domains} domains: it must exceed 1/{domains} so \
         that a probe favours its domain and the probe mixtures can be solved for A"
    )]
    FactorTooLow {
        /// The configured factor.
        one_hot_factor: f64,
        /// Number of domains.
        domains: usize,
    },

    /// A validation at the wrong time or without any domain's loss.
    #[error("validation after step {step}: {message}")]
    Validation {
        /// The step after which the model was validated.
        step: u64,
        /// What is wrong.
        message: String,
    },

    /// A step observed while a validation Aioli asked for is still missing.
    #[error(
        "step {step} observed before the validation losses after step {pending}, which Aioli \
         asked for (wants_validation) and needs to set the mixture of step {next}"
    )]
    MissingValidation {
        /// The step observed.
        step: u64,
        /// The step whose validation is missing.
        pending: u64,
        /// `pending + 1`.
        next: u64,
    },

    /// A checkpointed state that is inconsistent with itself.
    #[error("checkpointed Aioli state: {0}")]
    BadState(String),
}

/// Result alias of mixlab-mixer-aioli.
pub type Result<T, E = AioliError> = std::result::Result<T, E>;
