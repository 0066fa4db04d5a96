//! The schema of a run's `metrics.jsonl`: one serde type per line kind, written by the trainer and
//! read back by reports, replays and tests.
//!
//! A file is a header line, then one [`TrainRecord`] per optimizer step and one [`EvalRecord`] per
//! periodic validation, in the order they happened:
//!
//! ```text
//! {"domains":["Arithmetic",...],"token_counts":{...},"vocab_size":4096}
//! {"cumulative_sequences":{...},"domain_loss":{...},...,"step":1,...,"type":"train",...}
//! {"domains":{"Arithmetic":{"loss":..,"perplexity":..,"tokens":..}},...,"type":"eval"}
//! ```
//!
//! The header is [`mixlab_mixing::FeedbackHeader`] (no `type` key, so files written before this
//! schema and `replay-mixer`'s own files read the same), and the `feedback` of a train line is
//! [`mixlab_mixing::DomainFeedbackRecord`]: `replay-mixer` replays a run's metrics file as it is.
//!
//! Lines are written through [`serde_json::Value`], whose maps are sorted, so a line's keys are in
//! alphabetical order and its bytes equal those of the untyped writer this replaced (committed
//! results were written by it). Unknown keys are ignored when reading, so a newer writer's extra
//! fields do not break an older reader.

use std::collections::BTreeMap;
use std::path::Path;

use mixlab_mixing::{DomainFeedbackRecord, FeedbackHeader};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsLine {
    /// The first line: the domain set (and the data it was drawn from).
    Header(FeedbackHeader),
    /// One optimizer step.
    Train(Box<TrainRecord>),
    /// One validation, periodic or asked for by the mixer (see [`EvalRecord::kind`]).
    Eval(EvalRecord),
}

/// The per-step line (`"type": "train"`). Fields are in alphabetical order, as they are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// Sequences drawn per domain since step 1, after this step.
    pub cumulative_sequences: BTreeMap<String, u64>,
    /// Mean training loss per domain drawn this step (the feedback's `loss_mean`).
    pub domain_loss: BTreeMap<String, f64>,
    /// The domain of every sequence slot, per micro-batch: `[micro-batch][slot]`.
    pub domains_drawn: Vec<Vec<String>>,
    /// The feedback handed to the mixer, by domain (domains without feedback are absent).
    pub feedback: BTreeMap<String, DomainFeedbackRecord>,
    /// Global gradient norm before clipping; `null` when it was not finite.
    pub grad_norm: Option<f64>,
    /// Mean training loss over the step's tokens.
    pub loss: f64,
    /// The per-domain loss weights this step's gradient used (a DoReMi proxy's α_t over the
    /// sampling weights, normalised), absent for the plain mean loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_weights: Option<BTreeMap<String, f64>>,
    /// Learning rate of this step.
    pub lr: f64,
    /// The mixer's own diagnostics (its `internals()`; the shape is the mixer's).
    pub mixer_internals: serde_json::Map<String, Value>,
    /// The sampling distribution after the mixer saw this step's feedback.
    pub next_weights: BTreeMap<String, f64>,
    /// The optimizer step (1-based).
    pub step: u64,
    /// Wall time of the step.
    pub timing: StepTiming,
    /// Training tokens seen since step 1, after this step.
    pub tokens: u64,
    /// Always `"train"`.
    #[serde(rename = "type")]
    pub kind: TrainTag,
    /// The sampling distribution this step was drawn from.
    pub weights: BTreeMap<String, f64>,
}

/// Wall time of one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// Seconds spent in the mixer (`observe` and the policy).
    pub mixer_s: f64,
    /// Seconds of the whole step.
    pub step_s: f64,
    /// Training tokens per second of this step.
    pub tokens_per_s: f64,
}

/// The per-validation line (`"type": "eval"`). Fields are in alphabetical order, as they are
/// written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Per-domain results.
    pub domains: BTreeMap<String, DomainEval>,
    /// Unweighted mean over domains of the per-domain mean loss (nats per token).
    pub mean_loss: f64,
    /// Unweighted mean over domains of the per-domain perplexity.
    pub mean_perplexity: f64,
    /// The split evaluated (`val` during training).
    pub split: String,
    /// The optimizer step after which it ran.
    pub step: u64,
    /// Mean loss over all tokens of all domains.
    pub token_weighted_loss: f64,
    /// exp of `token_weighted_loss`.
    pub token_weighted_perplexity: f64,
    /// `"eval"` (periodic) or `"mixer-eval"` (asked for by the mixer).
    #[serde(rename = "type")]
    pub kind: EvalTag,
}

/// One domain's validation result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DomainEval {
    /// Mean loss over the domain's tokens (nats).
    pub loss: f64,
    /// exp of `loss`.
    pub perplexity: f64,
    /// Tokens evaluated.
    pub tokens: u64,
}

/// The `type` value of a train line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrainTag {
    /// `"train"`.
    #[default]
    #[serde(rename = "train")]
    Train,
}

/// The `type` value of an eval line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvalTag {
    /// `"eval"`: a periodic validation (`[eval] interval`, and after the last step).
    #[default]
    #[serde(rename = "eval")]
    Eval,
    /// `"mixer-eval"`: a validation the mixer asked for at a step without a periodic one
    /// (`Mixer::wants_validation`); reports read only `"eval"` lines, so every method's curve
    /// has the same steps.
    #[serde(rename = "mixer-eval")]
    Mixer,
}

/// A metrics line that does not follow the schema.
#[derive(Debug, thiserror::Error)]
#[error("{path} line {line}: {reason}")]
pub struct MetricsError {
    /// The file read (as given to [`parse_metrics`]).
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl MetricsLine {
    /// The line as written to the file (without the newline).
    pub fn to_json_line(&self) -> String {
        match self {
            MetricsLine::Header(header) => header.to_json_line(),
            MetricsLine::Train(record) => sorted_json(record.as_ref()),
            MetricsLine::Eval(record) => sorted_json(record),
        }
    }

    /// Parses one line; `Err` holds the reason.
    pub fn parse(line: &str) -> Result<MetricsLine, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let kind = match value.get("type") {
            None => None,
            Some(Value::String(kind)) => Some(kind.clone()),
            Some(other) => return Err(format!("\"type\" is {other}, not a string")),
        };
        match kind.as_deref() {
            Some("train") => serde_json::from_value(value)
                .map(|r| MetricsLine::Train(Box::new(r)))
                .map_err(|e| format!("train line: {e}")),
            Some("eval" | "mixer-eval") => serde_json::from_value(value)
                .map(MetricsLine::Eval)
                .map_err(|e| format!("eval line: {e}")),
            None if value.get("domains").is_some_and(Value::is_array) => {
                serde_json::from_value(value)
                    .map(MetricsLine::Header)
                    .map_err(|e| format!("header line: {e}"))
            }
            None => Err("neither a header (no \"domains\" list) nor a typed line".to_owned()),
            Some(other) => Err(format!(
                "unknown line type {other:?} (expected train, eval or mixer-eval)"
            )),
        }
    }
}

/// Serialises through `Value`, whose maps are sorted: the same bytes as the untyped writer.
fn sorted_json<T: Serialize>(record: &T) -> String {
    serde_json::to_value(record)
        .expect("metrics records serialise")
        .to_string()
}

/// Parses a whole metrics file's text; `path` only names the file in errors.
pub fn parse_metrics(text: &str, path: &Path) -> Result<Vec<MetricsLine>, MetricsError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            MetricsLine::parse(line).map_err(|reason| MetricsError {
                path: path.display().to_string(),
                line: i + 1,
                reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A train and an eval line as the untyped writer (serde_json's `json!`) wrote them, copied
    // from results/quick/runs/odm-paper/seed-42/metrics.jsonl with fewer domains.
    const TRAIN: &str = r#"{"cumulative_sequences":{"Arithmetic":4,"Toy Code":12},"domain_loss":{"Toy Code":8.178045868873596},"domains_drawn":[["Toy Code","Toy Code"]],"feedback":{"Toy Code":{"excess_tokens":0,"loss_count":2,"loss_mean":8.178045868873596,"loss_sum":16.356091737747192,"sequences":8,"tokens":1024}},"grad_norm":2.660262006318314,"loss":8.5343337059021,"lr":0.0006666666666666666,"mixer_internals":{"exploration":null,"rule":"paper","updates":0},"next_weights":{"Arithmetic":0.4,"Toy Code":0.6},"step":2,"timing":{"mixer_s":7.334e-6,"step_s":0.935640871,"tokens_per_s":2188.874025790607},"tokens":4096,"type":"train","weights":{"Arithmetic":0.5,"Toy Code":0.5}}"#;
    const EVAL: &str = r#"{"domains":{"Arithmetic":{"loss":2.0,"perplexity":7.38905609893065,"tokens":512}},"mean_loss":2.0,"mean_perplexity":7.38905609893065,"split":"val","step":2,"token_weighted_loss":2.0,"token_weighted_perplexity":7.38905609893065,"type":"eval"}"#;
    const HEADER: &str = r#"{"domains":["Arithmetic","Toy Code"],"token_counts":{"Arithmetic":10,"Toy Code":20},"vocab_size":4096}"#;

    #[test]
    fn lines_round_trip_to_the_same_bytes() {
        let mixer_eval = EVAL.replace("\"type\":\"eval\"", "\"type\":\"mixer-eval\"");
        for line in [HEADER, TRAIN, EVAL, &mixer_eval] {
            let parsed = MetricsLine::parse(line).unwrap();
            assert_eq!(parsed.to_json_line(), line);
        }
        assert!(matches!(
            MetricsLine::parse(&mixer_eval).unwrap(),
            MetricsLine::Eval(EvalRecord {
                kind: EvalTag::Mixer,
                ..
            })
        ));
    }

    #[test]
    fn lines_are_typed_by_their_type_key() {
        let MetricsLine::Train(train) = MetricsLine::parse(TRAIN).unwrap() else {
            panic!("not a train line")
        };
        assert_eq!(train.step, 2);
        assert_eq!(train.cumulative_sequences["Toy Code"], 12);
        assert_eq!(train.feedback["Toy Code"].loss_count, 2);
        assert_eq!(train.timing.step_s, 0.935640871);
        let MetricsLine::Eval(eval) = MetricsLine::parse(EVAL).unwrap() else {
            panic!("not an eval line")
        };
        assert_eq!(eval.domains["Arithmetic"].tokens, 512);
        let MetricsLine::Header(header) = MetricsLine::parse(HEADER).unwrap() else {
            panic!("not a header")
        };
        assert_eq!(header.domains, ["Arithmetic", "Toy Code"]);
    }

    #[test]
    fn a_null_grad_norm_is_none() {
        let line = TRAIN.replace("2.660262006318314", "null");
        let MetricsLine::Train(train) = MetricsLine::parse(&line).unwrap() else {
            panic!("not a train line")
        };
        assert_eq!(train.grad_norm, None);
        assert_eq!(MetricsLine::Train(train).to_json_line(), line);
    }

    #[test]
    fn bad_lines_name_the_file_line_and_field() {
        let text = format!(
            "{HEADER}\n{}\n",
            TRAIN.replace("\"step\":2", "\"step\":\"two\"")
        );
        let err = parse_metrics(&text, Path::new("run/metrics.jsonl")).unwrap_err();
        assert_eq!(err.line, 2);
        let message = err.to_string();
        assert!(
            message.starts_with("run/metrics.jsonl line 2: train line:"),
            "{message}"
        );
        assert!(message.contains("invalid type"), "{message}");

        let err = parse_metrics("{\"type\":\"debug\"}", Path::new("m")).unwrap_err();
        assert!(
            err.to_string().contains("unknown line type \"debug\""),
            "{err}"
        );
        let err = parse_metrics("{\"step\":1", Path::new("m")).unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
        let missing = TRAIN.replace("\"loss\":8.5343337059021,", "");
        let err = parse_metrics(&missing, Path::new("m")).unwrap_err();
        assert!(err.to_string().contains("missing field `loss`"), "{err}");
    }
}
