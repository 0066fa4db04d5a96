//! mixlab-train: the online-mixing training loop.
//!
//! burn-train's `Learner` is epoch-based and computes metrics on a background thread, so it
//! cannot hand each step's per-domain losses to a sampler before the next step is planned, which
//! is what online mixing needs. This crate therefore runs its own visible loop (the shape of
//! burn's `examples/custom-training-loop`) and uses burn's pieces where they fit: the AdamW
//! optimizer and its records, `GradientsAccumulator`, and the `NamedMpkFileRecorder` for
//! checkpoints. What burn lacks is mixlab's own: global-norm clipping (mixlab-model), no weight
//! decay on biases and LayerNorm (one AdamW pass that decays by tensor rank, [`optimizer`], defined
//! beside the model so that its step benchmark runs it), the
//! warm-up + cosine schedule ([`schedule`]), seeded batch plans ([`plan`]) and exact resume
//! ([`checkpoint`]), initial weights from a pretrained directory ([`init`]) and the batch dump
//! another implementation replays a run from ([`batch_dump`]).

pub mod batch_dump;
pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod error;
pub mod init;
pub mod metrics;
pub mod optimizer;
pub mod options;
pub mod schedule;
mod step;
pub mod summary;
pub mod threads;
pub mod trainer;
pub mod validation;

pub use config::TrainConfig;
pub use dataset::{mixer_context, open_dataset};
pub use error::{Result, TrainError};
pub use metrics::{EvalRecord, EvalTag, MetricsLine, TrainRecord, parse_metrics};
/// Batch plans live in mixlab-data (the Python package draws them too); re-exported here.
pub use mixlab_data::plan;
pub use mixlab_data::{BatchPlan, Granularity, SeedStreams};
pub use options::{
    DamagedCheckpoint, ResumeReport, RunOptions, RunSummary, StepHook, StepProgress,
};
pub use schedule::LrSchedule;
pub use summary::SummaryRecord;
pub use threads::ThreadBudget;
pub use trainer::train;
pub use validation::{DomainValidation, Validate, ValidationError, ValidationReport};
