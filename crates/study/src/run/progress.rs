//! One overall progress line for a plan: runs finished / running / waiting, training steps (and
//! tokens) done of the plan's total, elapsed time, and an ETA from the throughput measured in
//! this invocation. On a terminal it is the top line of the progress group, above each run's
//! bar; elsewhere (CI, a log file) it is printed as a plain line every half minute, and bars are
//! not drawn.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a non-interactive run prints the plan's line.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Where one run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Waiting,
    /// Running; `first` is the step it started from in this invocation, `done` the last step
    /// reported.
    Running {
        first: u64,
        done: u64,
    },
    Finished,
    /// Stopped (Ctrl-C, or failed) after `done` steps; it continues from its checkpoint when the
    /// plan is run again.
    Stopped {
        done: u64,
    },
}

/// The counts and arithmetic behind the line, apart from clocks and drawing.
#[derive(Debug, Clone)]
struct Tally {
    runs: Vec<RunState>,
    /// Steps trained in this invocation by runs that have finished since.
    trained_finished: u64,
    steps_per_run: u64,
    tokens_per_step: u64,
}

impl Tally {
    /// Runs finished, running, waiting and stopped.
    fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for r in &self.runs {
            match r {
                RunState::Finished => c.0 += 1,
                RunState::Running { .. } => c.1 += 1,
                RunState::Waiting => c.2 += 1,
                RunState::Stopped { .. } => c.3 += 1,
            }
        }
        c
    }

    /// Steps done over the whole plan (a waiting run counts none, even with a checkpoint).
    fn steps_done(&self) -> u64 {
        self.runs
            .iter()
            .map(|r| match r {
                RunState::Finished => self.steps_per_run,
                RunState::Running { done, .. } | RunState::Stopped { done } => *done,
                RunState::Waiting => 0,
            })
            .sum()
    }

    /// Steps trained in this invocation (what the measured rate divides).
    fn steps_trained(&self) -> u64 {
        self.trained_finished
            + self
                .runs
                .iter()
                .map(|r| match r {
                    RunState::Running { first, done } => done.saturating_sub(*first),
                    _ => 0,
                })
                .sum::<u64>()
    }

    /// The line, after `elapsed` seconds of this invocation.
    fn line(&self, elapsed: f64) -> String {
        let (finished, running, waiting, stopped) = self.counts();
        // Stopped runs appear only after a stop, so the usual line keeps its three counts.
        let stopped = if stopped > 0 {
            format!(", {stopped} stopped")
        } else {
            String::new()
        };
        let total_steps = self.steps_per_run * self.runs.len() as u64;
        let done = self.steps_done().min(total_steps);
        let trained = self.steps_trained();
        let eta = if trained > 0 && elapsed > 0.0 {
            let seconds = (total_steps - done) as f64 * elapsed / trained as f64;
            format!("ETA {} (training)", clock(seconds))
        } else {
            "ETA after the first steps".into()
        };
        format!(
            "plan: {finished}/{} runs finished, {running} running, {waiting} waiting{stopped} | {} of {} tokens | elapsed {} | {eta}",
            self.runs.len(),
            tokens(done * self.tokens_per_step),
            tokens(total_steps * self.tokens_per_step),
            clock(elapsed),
        )
    }
}

/// `1:02:03` or `2:03`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `4.9M`, `328k`, `512`.
fn tokens(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// The progress of a whole plan, shared by the threads that run its jobs.
pub struct PlanProgress {
    tally: Mutex<(Tally, Instant)>,
    started: Instant,
    group: MultiProgress,
    line: ProgressBar,
    interactive: bool,
}

impl PlanProgress {
    /// `runs` runs of `steps_per_run` steps of `tokens_per_step` tokens; those in `finished`
    /// (indices) are already done.
    pub fn new(runs: usize, finished: &[usize], steps_per_run: u64, tokens_per_step: u64) -> Self {
        let interactive = std::io::stderr().is_terminal();
        let group = if interactive {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        let line = group.add(ProgressBar::new_spinner());
        line.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
        let mut states = vec![RunState::Waiting; runs];
        for &i in finished {
            states[i] = RunState::Finished;
        }
        let tally = Tally {
            runs: states,
            trained_finished: 0,
            steps_per_run,
            tokens_per_step,
        };
        let now = Instant::now();
        let progress = PlanProgress {
            tally: Mutex::new((tally, now)),
            started: now,
            group,
            line,
            interactive,
        };
        progress.refresh(true);
        if interactive {
            progress.line.enable_steady_tick(Duration::from_secs(1));
        }
        progress
    }

    /// The group each run's bar joins (hidden when stderr is not a terminal).
    pub fn group(&self) -> &MultiProgress {
        &self.group
    }

    /// Prints `text` above the bars (or plainly, without a terminal).
    pub fn println(&self, text: &str) {
        if self.interactive {
            let _ = self.group.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    /// Run `i` reported `step` done.
    pub fn step(&self, i: usize, step: u64) {
        self.update(|t| {
            t.runs[i] = match t.runs[i] {
                RunState::Running { first, .. } => RunState::Running { first, done: step },
                // Its first report this invocation: it started from the step before.
                _ => RunState::Running {
                    first: step.saturating_sub(1),
                    done: step,
                },
            };
        });
    }

    /// Run `i` ended: finished (`true`), or stopped or failed.
    pub fn end(&self, i: usize, finished: bool) {
        self.update(|t| {
            if let RunState::Running { first, done } = t.runs[i] {
                t.trained_finished += done.saturating_sub(first);
            }
            t.runs[i] = match (finished, t.runs[i]) {
                (true, _) => RunState::Finished,
                // Its steps stay counted: the final line after a stop says how far it got.
                (false, RunState::Running { done, .. }) => RunState::Stopped { done },
                (false, other) => other,
            };
        });
    }

    /// Draws the final line and leaves it on screen.
    pub fn finish(&self) {
        self.refresh(true);
        self.line.finish();
    }

    fn update(&self, change: impl FnOnce(&mut Tally)) {
        {
            let mut guard = self
                .tally
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            change(&mut guard.0);
        }
        self.refresh(false);
    }

    fn refresh(&self, force_log: bool) {
        let mut guard = self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = guard.0.line(self.started.elapsed().as_secs_f64());
        if self.interactive {
            self.line.set_message(line);
        } else if force_log || guard.1.elapsed() >= LOG_EVERY {
            guard.1 = Instant::now();
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_runs_tokens_and_projects_from_this_invocation() {
        // Four runs of 100 steps of 2,048 tokens; one finished before this invocation.
        let mut t = Tally {
            runs: vec![RunState::Waiting; 4],
            trained_finished: 0,
            steps_per_run: 100,
            tokens_per_step: 2048,
        };
        t.runs[0] = RunState::Finished;
        assert_eq!(
            t.line(0.0),
            "plan: 1/4 runs finished, 0 running, 3 waiting | 204k of 819k tokens | elapsed 0:00 | ETA after the first steps"
        );
        // One run resumed at step 40 and is at 60; another started and is at 20: 40 steps
        // trained in 120 s, 180 of 400 done, 220 to go at 3 s per step: 660 s.
        t.runs[1] = RunState::Running {
            first: 40,
            done: 60,
        };
        t.runs[2] = RunState::Running { first: 0, done: 20 };
        assert_eq!(
            t.line(120.0),
            "plan: 1/4 runs finished, 2 running, 1 waiting | 368k of 819k tokens | elapsed 2:00 | ETA 11:00 (training)"
        );
    }

    #[test]
    fn a_stop_leaves_the_steps_reached_on_the_last_line() {
        // Two of three runs of 100 steps (1,000 tokens each) stopped at steps 30 and 50 (the
        // second resumed at 45): 80 of 300 steps done, 35 trained in this invocation.
        let progress = PlanProgress::new(3, &[], 100, 1000);
        for step in 1..=30 {
            progress.step(0, step);
        }
        progress.step(1, 46);
        progress.step(1, 50);
        progress.end(0, false);
        progress.end(1, false);
        let tally = progress
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone();
        assert_eq!(tally.steps_trained(), 35);
        assert_eq!(
            tally.line(70.0),
            "plan: 0/3 runs finished, 0 running, 1 waiting, 2 stopped | 80k of 300k tokens | elapsed 1:10 | ETA 7:20 (training)"
        );
    }

    #[test]
    fn clocks_and_token_counts_read_naturally() {
        assert_eq!(clock(59.6), "1:00");
        assert_eq!(clock(3723.0), "1:02:03");
        assert_eq!(tokens(4_915_200), "4.9M");
        assert_eq!(tokens(327_680), "327k");
        assert_eq!(tokens(512), "512");
    }
}
