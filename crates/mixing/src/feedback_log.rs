//! The JSON-lines format of recorded feedback, shared by the trainer's `metrics.jsonl` and
//! `experiments replay-mixer`.
//!
//! A file is a sequence of JSON objects, one per line:
//! - an optional header `{"domains": ["Pile-CC", ...], "token_counts": {...}, "vocab_size": 50277}`
//!   (no `step` key) fixing the domain set;
//! - one line per step: `{"step": 12, "feedback": {"Pile-CC": {"loss_sum": 6.2, "loss_mean": 3.1,
//!   "loss_count": 2, "sequences": 120, "tokens": 122880}, ...}}` listing the domains with
//!   feedback; any other top-level keys (learning rate, timings, ...) are ignored;
//! - any other object (an evaluation record of metrics.jsonl, say) is skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{DomainFeedback, DomainSet, MixingError, Result, StepFeedback};

/// Relative tolerance between a line's `loss_mean` and `loss_sum / loss_count`.
const MEAN_TOLERANCE: f64 = 1e-9;

/// One domain's feedback in a step line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainFeedbackRecord {
    /// Sum of the loss terms (the paper's L_i); optional if `loss_mean` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_sum: Option<f64>,
    /// Mean loss term (the reference code's reward input); optional if `loss_sum` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_mean: Option<f64>,
    /// Number of loss terms (micro-batches or sequences); required with a loss.
    #[serde(default)]
    pub loss_count: u64,
    /// Sequences of the domain in the step.
    #[serde(default)]
    pub sequences: u64,
    /// Loss-bearing tokens of the domain in the step.
    #[serde(default)]
    pub tokens: u64,
    /// DoReMi: sum of per-token clipped excess losses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excess_loss_sum: Option<f64>,
    /// DoReMi: tokens in `excess_loss_sum`.
    #[serde(default)]
    pub excess_tokens: u64,
}

impl DomainFeedbackRecord {
    /// The record of one domain's feedback (both loss sum and mean written, for readers of either).
    pub fn from_feedback(d: &DomainFeedback) -> Self {
        Self {
            loss_sum: d.drawn().then_some(d.loss_sum),
            loss_mean: d.loss_mean(),
            loss_count: d.loss_count,
            sequences: d.sequences,
            tokens: d.tokens,
            excess_loss_sum: (d.excess_tokens > 0).then_some(d.excess_loss_sum),
            excess_tokens: d.excess_tokens,
        }
    }

    /// Converts back, checking that sum, mean and count agree.
    pub fn to_feedback(&self) -> std::result::Result<DomainFeedback, String> {
        let loss_sum = match (self.loss_sum, self.loss_mean) {
            (None, None) if self.loss_count == 0 => 0.0,
            (None, None) => {
                return Err(format!(
                    "loss_count is {} but neither loss_sum nor loss_mean is given",
                    self.loss_count
                ));
            }
            (_, _) if self.loss_count == 0 => {
                return Err("a loss is given but loss_count is 0".to_owned());
            }
            (Some(sum), None) => sum,
            (None, Some(mean)) => mean * self.loss_count as f64,
            (Some(sum), Some(mean)) => {
                let implied = sum / self.loss_count as f64;
                if (implied - mean).abs() > MEAN_TOLERANCE * mean.abs().max(1.0) {
                    return Err(format!(
                        "loss_mean {mean} disagrees with loss_sum / loss_count = {implied}"
                    ));
                }
                sum
            }
        };
        let excess_loss_sum = match self.excess_loss_sum {
            Some(_) if self.excess_tokens == 0 => {
                return Err("excess_loss_sum is given but excess_tokens is 0".to_owned());
            }
            Some(x) => x,
            None if self.excess_tokens > 0 => {
                return Err("excess_tokens is given without excess_loss_sum".to_owned());
            }
            None => 0.0,
        };
        Ok(DomainFeedback {
            loss_sum,
            loss_count: self.loss_count,
            sequences: self.sequences,
            tokens: self.tokens,
            excess_loss_sum,
            excess_tokens: self.excess_tokens,
        })
    }
}

/// One step line: the step and the feedback of the domains that had any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    /// The optimizer step (1-based).
    pub step: u64,
    /// Feedback by domain name; absent domains were not drawn.
    pub feedback: BTreeMap<String, DomainFeedbackRecord>,
}

impl FeedbackRecord {
    /// The record of a step's feedback (domains without any feedback are left out).
    pub fn from_step(step: u64, feedback: &StepFeedback, domains: &DomainSet) -> Self {
        let feedback = domains
            .names()
            .iter()
            .zip(feedback.domains())
            .filter(|(_, d)| d.drawn() || d.excess_tokens > 0)
            .map(|(n, d)| (n.clone(), DomainFeedbackRecord::from_feedback(d)))
            .collect();
        Self { step, feedback }
    }

    /// Fills `out` (cleared first) with this record over `domains`; an unknown domain or an
    /// inconsistent entry is an error naming the domain.
    pub fn to_step_feedback(&self, domains: &DomainSet, out: &mut StepFeedback) -> Result<()> {
        if out.len() != domains.len() {
            *out = StepFeedback::new(domains.len());
        }
        out.clear();
        for (name, record) in &self.feedback {
            let i = domains.require(name, "feedback line")?;
            out.domains_mut()[i] = record.to_feedback().map_err(|message| {
                MixingError::parse("feedback line", format!("domain {name:?}: {message}"))
            })?;
        }
        Ok(())
    }

    /// The record as one JSON line (without the newline).
    pub fn to_json_line(&self) -> String {
        // Serialising plain maps of numbers and strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The optional first line of a feedback file: the domain set and what a mixer may need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackHeader {
    /// The domains in order.
    pub domains: Vec<String>,
    /// Tokens per domain name, for temperature-scaled weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_counts: Option<BTreeMap<String, u64>>,
    /// The tokenizer's vocabulary size, for DoReMi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
}

impl FeedbackHeader {
    /// The header as one JSON line (without the newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The per-domain validation losses of a run's model after one step: an `"eval"` or
/// `"mixer-eval"` line of `metrics.jsonl` with `"split": "val"`, for mixers that learn from
/// validation (`Mixer::wants_validation`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationRecord {
    /// The step after which the model was validated (0: before the first step).
    pub step: u64,
    /// Mean loss per token (nats) by domain name; domains without validation data are absent.
    pub losses: BTreeMap<String, f64>,
}

impl ValidationRecord {
    /// The losses in `domains` order, `None` for a domain the record lacks; a name that is not
    /// a domain is an error.
    pub fn in_order(&self, domains: &DomainSet) -> Result<Vec<Option<f64>>> {
        for name in self.losses.keys() {
            if domains.index_of(name).is_none() {
                return Err(MixingError::UnknownDomain {
                    origin: "validation line".into(),
                    domain: name.clone(),
                    known: domains.names().join(", "),
                });
            }
        }
        Ok(domains
            .names()
            .iter()
            .map(|n| self.losses.get(n).copied())
            .collect())
    }
}

/// What one line of a feedback file is.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedbackLine {
    /// A header line.
    Header(FeedbackHeader),
    /// A step line.
    Step(FeedbackRecord),
    /// A validation line (`metrics.jsonl`'s eval lines).
    Validation(ValidationRecord),
    /// Some other record (skipped).
    Other,
}

/// Classifies and parses one line (a JSON object).
pub fn parse_feedback_line(text: &str) -> std::result::Result<FeedbackLine, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(map) = &value else {
        return Err("a feedback line must be a JSON object".to_owned());
    };
    if let Some(feedback) = map.get("feedback") {
        let step = map
            .get("step")
            .ok_or("a line with `feedback` needs a `step`")?
            .as_u64()
            .filter(|&s| s > 0)
            .ok_or("`step` must be a positive integer")?;
        let feedback: BTreeMap<String, DomainFeedbackRecord> =
            serde_json::from_value(feedback.clone()).map_err(|e| format!("`feedback`: {e}"))?;
        return Ok(FeedbackLine::Step(FeedbackRecord { step, feedback }));
    }
    let typed = map.get("type").and_then(Value::as_str);
    if matches!(typed, Some("eval" | "mixer-eval"))
        && map.get("split").and_then(Value::as_str) == Some("val")
    {
        let step = map
            .get("step")
            .and_then(Value::as_u64)
            .ok_or("a validation line needs a `step` (a non-negative integer)")?;
        let domains = map
            .get("domains")
            .and_then(Value::as_object)
            .ok_or("a validation line needs `domains`: {name: {loss, ...}}")?;
        let losses = domains
            .iter()
            .map(|(name, d)| {
                d.get("loss")
                    .and_then(Value::as_f64)
                    .map(|l| (name.clone(), l))
                    .ok_or_else(|| format!("validation of domain {name:?} has no numeric `loss`"))
            })
            .collect::<std::result::Result<_, _>>()?;
        return Ok(FeedbackLine::Validation(ValidationRecord { step, losses }));
    }
    if map.contains_key("domains") && !map.contains_key("step") {
        let header: FeedbackHeader =
            serde_json::from_value(value.clone()).map_err(|e| format!("header line: {e}"))?;
        return Ok(FeedbackLine::Header(header));
    }
    Ok(FeedbackLine::Other)
}

/// A parsed feedback file.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackLog {
    /// The file it was read from (for error messages).
    pub path: PathBuf,
    /// The header line, if the file has one.
    pub header: Option<FeedbackHeader>,
    /// The step lines with their 1-based line numbers, in file order.
    pub steps: Vec<(usize, FeedbackRecord)>,
    /// The validation lines with their 1-based line numbers, in file order.
    pub validations: Vec<(usize, ValidationRecord)>,
    /// Number of lines that were neither header, step nor validation.
    pub skipped: usize,
}

impl FeedbackLog {
    /// Reads a feedback file. Errors name the file and line.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|cause| MixingError::Io {
            path: path.to_owned(),
            cause,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the text of a feedback file; `path` is used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut log = FeedbackLog {
            path: path.to_owned(),
            header: None,
            steps: Vec::new(),
            validations: Vec::new(),
            skipped: 0,
        };
        let at = |line: usize, message: String| {
            MixingError::parse(format!("{}:{line}", path.display()), message)
        };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            match parse_feedback_line(raw).map_err(|m| at(line, m))? {
                FeedbackLine::Header(h) => {
                    if log.header.is_some() || !log.steps.is_empty() {
                        return Err(at(
                            line,
                            "a header line must come first and only once".into(),
                        ));
                    }
                    log.header = Some(h);
                }
                FeedbackLine::Step(record) => log.steps.push((line, record)),
                FeedbackLine::Validation(record) => log.validations.push((line, record)),
                FeedbackLine::Other => log.skipped += 1,
            }
        }
        if log.steps.is_empty() {
            return Err(MixingError::parse(
                path.display().to_string(),
                "no step line: expected lines like {\"step\": 1, \"feedback\": {...}}",
            ));
        }
        Ok(log)
    }

    /// The validation after `step` (the last one, if the file has several).
    pub fn validation_after(&self, step: u64) -> Option<&(usize, ValidationRecord)> {
        self.validations.iter().rev().find(|(_, v)| v.step == step)
    }

    /// The domain set of the header, if any.
    pub fn header_domains(&self) -> Result<Option<DomainSet>> {
        self.header
            .as_ref()
            .map(|h| DomainSet::new(h.domains.clone()))
            .transpose()
            .map_err(|e| MixingError::AtLine {
                path: self.path.clone(),
                line: 1,
                cause: Box::new(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_lines_are_read_in_domain_order() {
        let text = "{\"domains\": [\"a\", \"b\"]}\n\
                    {\"type\": \"mixer-eval\", \"split\": \"val\", \"step\": 0, \"domains\": {\"b\": {\"loss\": 2.5}}}\n\
                    {\"step\": 1, \"feedback\": {\"a\": {\"loss_sum\": 3.0, \"loss_count\": 1}}}\n\
                    {\"type\": \"eval\", \"split\": \"test\", \"step\": 1, \"domains\": {}}\n";
        let log = FeedbackLog::parse(text, Path::new("f.jsonl")).expect("valid");
        assert_eq!(
            log.validations.len(),
            1,
            "a test-split line is not a validation"
        );
        assert_eq!(log.skipped, 1);
        let (line, record) = log.validation_after(0).expect("step 0");
        assert_eq!(*line, 2);
        let domains = DomainSet::new(["a", "b"]).expect("valid");
        assert_eq!(record.in_order(&domains).expect("known"), [None, Some(2.5)]);
        let other = DomainSet::new(["a", "c"]).expect("valid");
        assert!(record.in_order(&other).is_err());
        let bad = "{\"type\": \"eval\", \"split\": \"val\", \"step\": 2, \"domains\": {\"a\": {}}}";
        assert!(
            parse_feedback_line(bad)
                .expect_err("no loss")
                .contains("\"a\"")
        );
    }
    fn ab() -> DomainSet {
        DomainSet::new(["a", "b"]).expect("valid")
    }

    #[test]
    fn record_round_trips_through_json() {
        let mut fb = StepFeedback::new(2);
        fb.add_loss(1, 3.0, 60, 600);
        fb.add_loss(1, 2.0, 60, 600);
        fb.add_excess_loss(1, 1.5, 1200);
        let record = FeedbackRecord::from_step(7, &fb, &ab());
        let line = record.to_json_line();
        assert!(line.contains("\"loss_mean\":2.5"), "{line}");
        let FeedbackLine::Step(back) = parse_feedback_line(&line).expect("parses") else {
            panic!("a step line");
        };
        assert_eq!(back, record);
        let mut out = StepFeedback::new(2);
        back.to_step_feedback(&ab(), &mut out)
            .expect("known domains");
        assert_eq!(out, fb);
    }

    #[test]
    fn mean_only_sum_only_and_inconsistencies() {
        let ok = |json: &str| {
            let r: DomainFeedbackRecord = serde_json::from_str(json).expect("shape");
            r.to_feedback()
        };
        assert_eq!(
            ok(r#"{"loss_mean": 2.0, "loss_count": 3}"#)
                .expect("mean")
                .loss_sum,
            6.0
        );
        assert_eq!(
            ok(r#"{"loss_sum": 2.0, "loss_count": 1}"#)
                .expect("sum")
                .loss_sum,
            2.0
        );
        assert!(ok(r#"{"loss_sum": 2.0, "loss_mean": 1.5, "loss_count": 1}"#).is_err());
        assert!(ok(r#"{"loss_sum": 2.0}"#).is_err(), "no count");
        assert!(ok(r#"{"loss_count": 2}"#).is_err(), "no loss");
        assert!(
            ok(r#"{"excess_loss_sum": 1.0}"#).is_err(),
            "no excess tokens"
        );
        assert!(ok(r#"{"excess_tokens": 3}"#).is_err(), "no excess sum");
        assert!(serde_json::from_str::<DomainFeedbackRecord>(r#"{"loss": 1.0}"#).is_err());
    }

    #[test]
    fn file_with_header_metrics_and_errors() {
        let text = r#"{"domains": ["a", "b"], "vocab_size": 50277}
{"step": 1, "lr": 0.001, "feedback": {"a": {"loss_sum": 3.0, "loss_count": 1}}}

{"step": 1, "eval": {"a": 2.9}}
{"step": 2, "feedback": {"b": {"loss_mean": 2.0, "loss_count": 2}}}
"#;
        let log = FeedbackLog::parse(text, Path::new("f.jsonl")).expect("valid");
        assert_eq!(log.header_domains().expect("valid").expect("present"), ab());
        assert_eq!(log.header.as_ref().and_then(|h| h.vocab_size), Some(50277));
        assert_eq!(log.steps.len(), 2);
        assert_eq!(log.steps[1].0, 5, "line numbers count blank lines");
        assert_eq!(log.skipped, 1);

        let bad = "{\"step\": 1, \"feedback\": {}}\n{\"step\": 2, \"feedback\": {\"a\": {\"los_sum\": 1}}}\n";
        let msg = FeedbackLog::parse(bad, Path::new("f.jsonl"))
            .expect_err("typo")
            .to_string();
        assert!(
            msg.starts_with("f.jsonl:2:") && msg.contains("los_sum"),
            "{msg}"
        );
        let msg = FeedbackLog::parse("not json\n", Path::new("g.jsonl"))
            .expect_err("x")
            .to_string();
        assert!(msg.starts_with("g.jsonl:1:"), "{msg}");
        assert!(
            FeedbackLog::parse("{\"feedback\": {}}", Path::new("h")).is_err(),
            "no step"
        );
        assert!(FeedbackLog::parse("{\"step\": 0, \"feedback\": {}}", Path::new("h")).is_err());
        assert!(
            FeedbackLog::parse("{\"eval\": 1}", Path::new("h")).is_err(),
            "no step lines"
        );
        let late_header = "{\"step\": 1, \"feedback\": {}}\n{\"domains\": [\"a\"]}\n";
        assert!(FeedbackLog::parse(late_header, Path::new("h")).is_err());

        let unknown = FeedbackRecord {
            step: 1,
            feedback: [("zz".to_owned(), DomainFeedbackRecord::default())].into(),
        };
        let mut out = StepFeedback::new(2);
        assert!(unknown.to_step_feedback(&ab(), &mut out).is_err());
    }
}
