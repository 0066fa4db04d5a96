//! Ctrl-C and SIGTERM as normal, resumable events.
//!
//! A signal sets a flag that the training loop reads between steps: the run writes a checkpoint
//! and returns. The command then ends with [`Stopped`], which `main` prints as a plain message
//! (which runs stopped at which step, and the exact command that resumes) and turns into the
//! shell's exit status for the signal, 130 for SIGINT and 143 for SIGTERM, with no error text or
//! stack trace: stopping is not a failure.

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};

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

/// Where one run stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoppedRun {
    /// What the run is (`odm-code (seed 42)`, or a run directory).
    pub label: String,
    /// Steps done, all saved in its last checkpoint.
    pub step: u64,
    /// Steps of the whole run.
    pub total: u64,
}

/// A command stopped by a signal. Every run it lists checkpointed as it stopped, unless the
/// signal came before the run could install its handler (then it continues from its last
/// checkpoint, or starts again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The runs that were under way.
    pub runs: Vec<StoppedRun>,
    /// The command that continues them.
    pub resume: String,
}

impl Stopped {
    /// A stop of this command with `runs`: resumed by running the same command again.
    pub fn same_command(runs: Vec<StoppedRun>) -> Self {
        Stopped {
            runs,
            resume: command_line(std::env::args(), None),
        }
    }
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.runs.is_empty() {
            writeln!(f, "stopped between runs; none was under way")?;
        } else {
            writeln!(
                f,
                "stopped; the runs under way continue from their last checkpoint:"
            )?;
            for run in &self.runs {
                writeln!(f, "  {}: step {} of {}", run.label, run.step, run.total)?;
            }
        }
        write!(f, "resume with:\n  {}", self.resume)
    }
}

impl std::error::Error for Stopped {}

/// `args` as one shell command line (arguments with spaces or quotes are single-quoted), with
/// `extra` appended when it is not already there.
pub fn command_line(args: impl IntoIterator<Item = String>, extra: Option<&str>) -> String {
    let mut args: Vec<String> = args.into_iter().collect();
    if let Some(extra) = extra
        && !args.iter().any(|a| a == extra)
    {
        args.push(extra.to_string());
    }
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The [`Stopped`] inside `error`, if it is a stop (possibly with context added).
pub fn as_stopped(error: &anyhow::Error) -> Option<&Stopped> {
    error.chain().find_map(|e| e.downcast_ref::<Stopped>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let args = [
            "experiments",
            "train",
            "--out",
            "my runs/a",
            "--name",
            "it's",
        ];
        assert_eq!(
            command_line(args.iter().map(|s| s.to_string()), Some("--resume")),
            r"experiments train --out 'my runs/a' --name 'it'\''s' --resume"
        );
        // Already there: not added twice.
        assert_eq!(
            command_line(
                ["train", "--resume"].iter().map(|s| s.to_string()),
                Some("--resume")
            ),
            "train --resume"
        );
    }

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
    }
}
