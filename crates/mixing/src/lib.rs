//! mixlab-mixing: the seam between the trainer and data-mixing strategies.
//!
//! - [`Mixer`]: the trait every strategy implements (sampling weights, optional loss weights,
//!   `observe(step, feedback)`, checkpointable state).
//! - [`DomainSet`], [`StepFeedback`]: domains by name; per-step, per-domain sums and counts that
//!   data-parallel ranks can add up before the mixer sees them.
//! - [`WeightTable`], [`WeightSpec`], [`NamedTable`]: weight tables keyed by `pile_set_name`,
//!   with the paper's tables built in, and their validation.
//! - [`StaticMixer`]: fixed weights (uniform, a table, temperature-scaled token counts).
//! - [`MixerRegistry`]: `kind = "..."` → mixer, with parameter docs for `list-mixers`.
//! - [`FeedbackLog`] and [`replay`]: the JSON-lines feedback format and offline replay.
//!
//! All mixer arithmetic is in f64; checkpointed floats go through [`exact_float`] so that a
//! resumed run is bit-identical to an uninterrupted one.

mod domain;
mod error;
pub mod exact_float;
mod feedback;
mod feedback_log;
pub mod math;
mod mixer;
mod named;
mod registry;
mod replay;
mod static_mixer;
mod table;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use domain::{DomainSet, PILE_DOMAINS};
pub use error::{MixingError, Result};
pub use feedback::{DomainFeedback, StepFeedback};
pub use feedback_log::{
    DomainFeedbackRecord, FeedbackHeader, FeedbackLine, FeedbackLog, FeedbackRecord,
    ValidationRecord, parse_feedback_line,
};
pub use mixer::{
    Mixer, check_distribution, check_state_header, check_step, check_validation_losses,
    named_values,
};
pub use named::NamedTable;
pub use registry::{
    MixerConfig, MixerContext, MixerEntry, MixerRegistry, ParamDoc, config_table, parse_config,
};
pub use replay::{replay, replay_context, replay_line};
pub use static_mixer::{StaticConfig, StaticMixer};
pub use table::{WeightSpec, WeightTable};
