//! mixlab's study: the comparison of mixing methods as a library.
//!
//! A comparison is a [`Plan`]: methods × seeds on one dataset and budget ([`Preset`]), each a
//! normal training run under `<out>/runs/<method>/seed-<seed>/`, followed by test perplexity and
//! multiple choice of its final model. [`build_plan`] turns a [`PlanRequest`] (plain data; the
//! command line fills it from its arguments) into a plan, preparing the dataset on first use. A
//! [`Method`] is data: a `[mixer]` table, weight tables chosen for the dataset, training
//! overrides and the runs it depends on; the paper's methods are built from the mixers' typed
//! configs ([`reproduce_methods`], [`ablation_methods`]) and a user adds one from a TOML file
//! ([`load_method_file`]). [`report::write_report`] renders `report.md`, `report.json` and the
//! SVG figures from a results directory's files alone, beside a committed [`reference`](mod@reference) when
//! one exists.
//!
//! [`run::run_plan`] runs a plan's runs: `jobs` at a time, each after the runs it depends on,
//! as child processes when more than one ([`run::ChildCommand`]), with one progress line for
//! the whole plan; a stop flag (the command line sets it on Ctrl-C) checkpoints every run under
//! way and ends with [`stop::Stopped`]. The command line parses arguments, registers its
//! mixers and signal handlers, and prints.

pub mod ado;
pub mod aioli;
pub mod claims;
pub mod error;
mod legacy;
pub mod method;
pub mod plan;
pub mod preset;
pub mod reference;
pub mod report;
pub mod request;
pub mod run;
pub mod stop;
pub mod timing;

#[cfg(test)]
mod testing;

pub use error::{Context, Result, StudyError};
pub use method::{
    Method, MethodTraining, PlanWeights, ablation_methods, load_method_file, reproduce_methods,
};
pub use plan::{
    DatasetInfo, McInfo, Plan, PlanChange, PlanKind, analogue_weights, default_out,
    reconcile_plans, save_plan,
};
pub use preset::{Preset, preset};
pub use request::{PlanRequest, build_plan};
pub use run::{ChildCommand, RunSettings, run_plan};
pub use stop::{Stopped, StoppedRun};
pub use timing::{MIXER_VALIDATION, RunTiming, write_atomic};
