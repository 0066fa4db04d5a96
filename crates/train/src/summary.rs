//! The schema of a finished run's `summary.json`, written by the trainer when the last step is
//! done and read by reports.
//!
//! Like the metrics lines ([`crate::metrics`]), it is written through [`serde_json::Value`], so
//! its keys are sorted and its bytes equal those of the untyped writer it replaced.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// `summary.json`. Fields are in alphabetical order, as they are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRecord {
    /// Sequences drawn per domain over the whole run.
    pub cumulative_sequences: BTreeMap<String, u64>,
    /// Training loss of the last step (`null` when no step ran in the finishing process and the
    /// loss was not known).
    pub final_train_loss: Option<f64>,
    /// The mixer's policy at the end (`Mixer::policy`: its sampling distribution, or for a mixer
    /// that probes other mixtures to learn, the mixture it has learned).
    pub final_weights: BTreeMap<String, f64>,
    /// The last periodic validation, if any ran.
    pub last_eval: Option<LastEval>,
    /// The run's name (from its config).
    pub name: String,
    /// Optimizer steps done.
    pub steps: u64,
    /// Training tokens seen.
    pub tokens: u64,
}

/// The last validation of a run, as kept in its summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastEval {
    /// Perplexity per domain.
    pub domains: BTreeMap<String, f64>,
    /// Unweighted mean of the per-domain perplexities.
    pub mean_perplexity: f64,
    /// exp of the mean loss over all tokens.
    pub token_weighted_perplexity: f64,
}

/// `summary.json` that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The file cannot be read (a run that has not finished has none).
    #[error("reading {path} (has this run finished?): {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not follow the schema.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// What serde found.
        source: serde_json::Error,
    },
}

impl SummaryRecord {
    /// The file's text: pretty-printed JSON with sorted keys.
    pub fn to_json_pretty(&self) -> String {
        let value = serde_json::to_value(self).expect("the summary serialises");
        serde_json::to_string_pretty(&value).expect("a JSON value serialises")
    }

    /// Reads and checks a `summary.json`.
    pub fn read(path: &Path) -> Result<SummaryRecord, SummaryError> {
        let text = std::fs::read_to_string(path).map_err(|source| SummaryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| SummaryError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of results/quick/runs/*/seed-42/summary.json, as the untyped writer left it.
    const SUMMARY: &str = r#"{
  "cumulative_sequences": {
    "Arithmetic": 192,
    "Toy Code": 176
  },
  "final_train_loss": 3.1362474411726,
  "final_weights": {
    "Arithmetic": 0.0749734285827035,
    "Toy Code": 0.9250265714172964
  },
  "last_eval": {
    "domains": {
      "Arithmetic": 30.5,
      "Toy Code": 12.25
    },
    "mean_perplexity": 21.375,
    "token_weighted_perplexity": 20.0
  },
  "name": "odm-paper-seed-42",
  "steps": 160,
  "tokens": 327680
}"#;

    #[test]
    fn a_summary_round_trips_to_the_same_bytes() {
        let summary: SummaryRecord = serde_json::from_str(SUMMARY).unwrap();
        assert_eq!(summary.steps, 160);
        assert_eq!(
            summary.last_eval.as_ref().unwrap().domains["Toy Code"],
            12.25
        );
        assert_eq!(summary.to_json_pretty(), SUMMARY);
    }

    #[test]
    fn a_bad_summary_names_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        std::fs::write(&path, SUMMARY.replace("\"steps\": 160", "\"steps\": -1")).unwrap();
        let err = SummaryRecord::read(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("invalid value: integer `-1`"), "{err}");
        let err = SummaryRecord::read(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has this run finished?"), "{err}");
    }
}
