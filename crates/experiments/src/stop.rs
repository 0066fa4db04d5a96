//! Ctrl-C and SIGTERM as normal, resumable events.
//!
//! A signal sets a flag that the training loop reads between steps: the run writes a checkpoint
//! and returns. The command then ends with [`Stopped`] (mixlab-study's), which `main` prints as a plain message
//! (which runs stopped at which step, and the exact command that resumes) and turns into the
//! shell's exit status for the signal, 130 for SIGINT and 143 for SIGTERM, with no error text or
//! stack trace: stopping is not a failure.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use mixlab_study::StudyError;
pub use mixlab_study::stop::{Stopped, StoppedRun, command_line};

/// The last stop signal received (0: none), shared by every flag of the process.
static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// A flag set by SIGINT or SIGTERM (checkpoint and stop at the next step).
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let which = SIGNAL.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, flag.clone()).context("installing signal handler")?;
        signal_hook::flag::register_usize(signal, which.clone(), signal as usize)
            .context("installing signal handler")?;
    }
    Ok(flag)
}

/// The exit status for a stop: 128 + the signal's number (130 when no signal was seen, as for
/// a stop passed on from a parent process).
pub fn exit_status() -> u8 {
    let signal = SIGNAL.get().map_or(0, |s| s.load(Ordering::SeqCst));
    match signal {
        0 => 130,
        s => 128u8.saturating_add(s.min(127) as u8),
    }
}

/// The [`Stopped`] inside `error`, if it is a stop (possibly with context added).
pub fn as_stopped(error: &anyhow::Error) -> Option<&Stopped> {
    error.chain().find_map(|e| {
        e.downcast_ref::<Stopped>()
            .or_else(|| e.downcast_ref::<StudyError>().and_then(StudyError::stopped))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_is_found_under_context() {
        let stop = Stopped {
            runs: vec![StoppedRun {
                label: "tpw (seed 42)".into(),
                step: 6,
                total: 12,
            }],
            resume: "experiments reproduce".into(),
        };
        let error = anyhow::Error::new(stop.clone()).context("running the plan");
        assert_eq!(as_stopped(&error), Some(&stop));
        assert_eq!(
            stop.to_string(),
            "stopped; the runs under way continue from their last checkpoint:\n  tpw (seed 42): step 6 of 12\nresume with:\n  experiments reproduce"
        );
        assert!(as_stopped(&anyhow::anyhow!("a failure")).is_none());
        // A stop of the study's, under the study's context and the command's.
        let study: Result<(), StudyError> = Err(StudyError::Stopped(stop.clone()));
        let error = anyhow::Error::new(
            mixlab_study::Context::context(study, "run tpw (seed 42) failed").expect_err("stop"),
        )
        .context("reproduce");
        assert_eq!(as_stopped(&error), Some(&stop));
    }
}
