//! The study's error: what failed, with what the study was doing when it failed.
//!
//! Most failures come from the crates below (data, training, evaluation, mixers) or from files
//! (a plan, a run's metrics); the study adds what it was doing ("reading runs/tpw/seed-42/
//! metrics.jsonl", "method odm-alpha: its `[mixer]` table") through [`Context`], as `anyhow` does
//! in the command line, so a message names the file, field or method. The chain is kept as
//! [`std::error::Error::source`]s, which the command line prints.

use std::fmt::Display;

/// A failure of a study.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// A request, method or saved file that cannot be used; the message names the field, file
    /// or method.
    #[error("{0}")]
    Invalid(String),
    /// What the study was doing when `source` failed.
    #[error("{context}")]
    Context {
        /// What was being done, naming the file, run or method.
        context: String,
        /// The failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A JSON file could not be parsed or written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A plan could not be written as TOML.
    #[error(transparent)]
    TomlWrite(#[from] toml::ser::Error),
    /// A TOML file could not be parsed.
    #[error(transparent)]
    TomlRead(#[from] toml::de::Error),
    /// From the whole-or-nothing writer.
    #[error(transparent)]
    Atomic(#[from] mixlab_atomic::WriteError),
    /// From the data crate.
    #[error(transparent)]
    Data(#[from] mixlab_data::DataError),
    /// From a mixer or the mixer registry.
    #[error(transparent)]
    Mixing(#[from] mixlab_mixing::MixingError),
    /// From the training loop.
    #[error(transparent)]
    Train(#[from] mixlab_train::TrainError),
    /// A run's `summary.json` could not be read.
    #[error(transparent)]
    Summary(#[from] mixlab_train::summary::SummaryError),
    /// From an evaluation.
    #[error(transparent)]
    Eval(#[from] mixlab_eval::EvalError),
    /// From the model (a device that cannot be opened, weights that do not load).
    #[error(transparent)]
    Model(#[from] mixlab_model::ModelError),
    /// A signal stopped the plan: a normal, resumable end, not a failure.
    #[error(transparent)]
    Stopped(#[from] crate::stop::Stopped),
    /// A run failed in a way described by its message (a panic, a child process's exit).
    #[error("{0}")]
    Failed(String),
}

impl StudyError {
    /// The stop this error is, possibly under context.
    pub fn stopped(&self) -> Option<&crate::stop::Stopped> {
        match self {
            StudyError::Stopped(stopped) => Some(stopped),
            StudyError::Context { source, .. } => source
                .downcast_ref::<StudyError>()
                .and_then(StudyError::stopped)
                .or_else(|| source.downcast_ref::<crate::stop::Stopped>()),
            _ => None,
        }
    }
}

/// The study's result.
pub type Result<T, E = StudyError> = std::result::Result<T, E>;

/// Adds what the study was doing to a failure (as `anyhow::Context`).
pub trait Context<T> {
    /// With `context`.
    fn context(self, context: impl Display) -> Result<T>;
    /// With the context `f` makes, only on failure.
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| StudyError::Context {
            context: context.to_string(),
            source: Box::new(e),
        })
    }

    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| StudyError::Context {
            context: f().to_string(),
            source: Box::new(e),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| StudyError::Invalid(context.to_string()))
    }

    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| StudyError::Invalid(f().to_string()))
    }
}

/// The error and its causes as one line, `a: b: c` (as `anyhow` prints `{:#}`).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    parts.join(": ")
}

/// Returns a [`StudyError::Invalid`] with a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::StudyError::Invalid(format!($($arg)*)))
    };
}
pub(crate) use bail;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_chains_keep_every_cause() {
        let io: std::result::Result<(), _> = Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ));
        let e = io
            .context("reading plan.json")
            .context("loading the plan")
            .expect_err("failed");
        assert_eq!(e.to_string(), "loading the plan");
        assert_eq!(
            chain(&e),
            "loading the plan: reading plan.json: no such file"
        );
        let none: Option<u8> = None;
        assert_eq!(
            none.context("no method `x`").expect_err("none").to_string(),
            "no method `x`"
        );
    }
}
