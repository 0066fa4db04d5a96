//! A stop (Ctrl-C, SIGTERM) as a normal, resumable end of a plan.
//!
//! The command line sets a flag when a signal arrives; the training loop reads it between
//! steps, writes a checkpoint and returns. The study then ends with [`Stopped`]: which runs
//! stopped at which step, and the exact command that resumes them. The command line prints it
//! as a plain message with the signal's exit status: stopping is not a failure.

use std::fmt;

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
}
