//! Where a run's wall-clock time went, by phase (`timing.json` of a run directory).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};

/// The phase of `timing.json` holding the validations a mixer asked for beyond the periodic
/// ones (part of `train`).
pub const MIXER_VALIDATION: &str = "mixer-validation";

/// Per-run wall-clock seconds by phase, summed over invocations (so resumed runs add up).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTiming {
    /// Seconds by phase: `train` (steps and periodic validation), `test`, `mc-harness`, `mc-paper`,
    /// and for a mixer that learns from validation `mixer-validation` (the part of `train` spent
    /// on the validations it asked for).
    pub seconds: BTreeMap<String, f64>,
}

impl RunTiming {
    /// Reads `timing.json` of a run directory (empty when absent).
    pub fn load(dir: &Path) -> Result<RunTiming> {
        let path = dir.join("timing.json");
        if !path.exists() {
            return Ok(RunTiming::default());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Adds to a phase that resumes (training after an interruption sums its sessions).
    pub fn add(dir: &Path, phase: &str, seconds: f64) -> Result<()> {
        let mut t = RunTiming::load(dir)?;
        *t.seconds.entry(phase.into()).or_default() += seconds;
        write_atomic(&dir.join("timing.json"), &serde_json::to_string_pretty(&t)?)
    }

    /// Sets the time of an evaluation: one that is computed again (its output was deleted)
    /// replaces the time of the output it replaces.
    pub fn set(dir: &Path, phase: &str, seconds: f64) -> Result<()> {
        let mut t = RunTiming::load(dir)?;
        t.seconds.insert(phase.into(), seconds);
        write_atomic(&dir.join("timing.json"), &serde_json::to_string_pretty(&t)?)
    }
}

/// Writes `text` to `path` whole or not at all (mixlab-atomic: a unique synced temporary, a
/// rename and a sync of the directory; safe across the threads of `--jobs`).
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    Ok(mixlab_atomic::write_file(path, text)?)
}
