//! The error type of mixlab-mixer-odm.

/// What can be wrong with an ODM config or a step's feedback beyond the shared checks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OdmError {
    /// α outside [0, 1).
    #[error("alpha = {0}: the smoothing factor must be in [0, 1)")]
    Alpha(f64),

    /// A fixed exploration rate outside [0, 1/K].
    #[error("exploration = {value}: a fixed exploration rate must be in [0, 1/K]{}", max.map(|m| format!(" = [0, {m}]")).unwrap_or_default())]
    Exploration {
        /// The configured rate.
        value: f64,
        /// 1/K, when the domains are known.
        max: Option<f64>,
    },

    /// A reward scale that is not a positive finite number.
    #[error("reward_scale = {0}: it must be finite and > 0")]
    RewardScale(f64),

    /// A parameter given for a rule that does not use it.
    #[error("`{field}` does not apply to rule = \"{rule}\"")]
    NotApplicable {
        /// The parameter.
        field: &'static str,
        /// The rule.
        rule: &'static str,
    },

    /// Feedback for a domain the policy gave probability 0: its importance weight 1/π is infinite.
    #[error("domain {domain:?} has feedback at step {step} but its sampling probability was 0")]
    ZeroProbabilityDraw {
        /// The domain.
        domain: String,
        /// The step.
        step: u64,
    },

    /// A finite loss whose reward is not finite (e.g. 1e308 / π).
    #[error("domain {domain:?} at step {step}: loss {loss} gives a non-finite reward")]
    RewardOverflow {
        /// The domain.
        domain: String,
        /// The step.
        step: u64,
        /// The aggregated loss.
        loss: f64,
    },

    /// A checkpointed reward that this rule cannot hold.
    #[error("checkpointed reward of domain {domain:?} is {value}, not a finite number")]
    BadStateReward {
        /// The domain.
        domain: String,
        /// The value.
        value: f64,
    },
}

/// Result alias of mixlab-mixer-odm.
pub type Result<T, E = OdmError> = std::result::Result<T, E>;
