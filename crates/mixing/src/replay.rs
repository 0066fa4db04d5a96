//! Replaying recorded feedback through a mixer, without training: the engine of
//! `experiments replay-mixer` and of the golden tests.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::mixer::named_values;
use crate::{FeedbackLog, Mixer, MixerContext, MixingError, Result, StepFeedback};

/// The JSON object describing a mixer after it observed `step` (0: before any feedback):
/// `{"step", "weights", "loss_weights"?, "internals"?}`, weights keyed by domain name.
/// `weights` is the distribution the mixer gives for step `step + 1`.
pub fn replay_line(mixer: &dyn Mixer, step: u64) -> Value {
    let domains = mixer.domains();
    let mut line = Map::new();
    line.insert("step".into(), Value::from(step));
    line.insert(
        "weights".into(),
        Value::Object(named_values(domains, mixer.weights())),
    );
    if let Some(lw) = mixer.loss_weights() {
        line.insert(
            "loss_weights".into(),
            Value::Object(named_values(domains, lw)),
        );
    }
    let internals = mixer.internals();
    if !internals.is_empty() {
        line.insert("internals".into(), Value::Object(internals));
    }
    Value::Object(line)
}

/// A context for replaying `log`: its header's domains, token counts and vocabulary size if
/// it has a header, else `fallback` (whose domains must then cover every name in the log).
pub fn replay_context(log: &FeedbackLog, fallback: MixerContext) -> Result<MixerContext> {
    let Some(header) = &log.header else {
        return Ok(fallback);
    };
    let domains = log
        .header_domains()?
        .unwrap_or_else(|| fallback.domains.clone());
    let mut ctx = MixerContext {
        domains,
        token_counts: None,
        vocab_size: header.vocab_size.or(fallback.vocab_size),
        base_dir: fallback.base_dir,
    };
    if let Some(counts) = &header.token_counts {
        let ordered = ctx
            .domains
            .names()
            .iter()
            .map(|n| {
                counts.get(n).copied().ok_or_else(|| MixingError::AtLine {
                    path: log.path.clone(),
                    line: 1,
                    cause: Box::new(MixingError::MissingDomain {
                        origin: "header token_counts".into(),
                        domain: n.clone(),
                    }),
                })
            })
            .collect::<Result<Vec<u64>>>()?;
        ctx = ctx.with_token_counts(ordered)?;
    }
    Ok(ctx)
}

/// Feeds every step of `log` to `mixer`, writing one JSON line per step to `out`: first the
/// initial state (`"step": 0`), then the state after each step. Returns the number of steps.
///
/// An error on a step names the file and line.
pub fn replay(mixer: &mut dyn Mixer, log: &FeedbackLog, out: &mut dyn Write) -> Result<usize> {
    let output_error = |cause| MixingError::Io {
        path: PathBuf::from("<replay output>"),
        cause,
    };
    // The validation a mixer asks for after `step`, from the log's eval lines.
    let validate = |mixer: &mut dyn Mixer, step: u64, line: usize| -> Result<()> {
        if !(mixer.needs_validation() && mixer.wants_validation(step)) {
            return Ok(());
        }
        let at = |line: usize, e: MixingError| MixingError::AtLine {
            path: log.path.clone(),
            line,
            cause: Box::new(e),
        };
        let Some((vline, record)) = log.validation_after(step) else {
            return Err(at(
                line,
                MixingError::Validation {
                    kind: mixer.kind().to_owned(),
                    step,
                    message: "the mixer asks for them and the file has no validation line \
                              (`\"type\": \"eval\"` or `\"mixer-eval\"`) for this step"
                        .into(),
                },
            ));
        };
        let losses = record
            .in_order(mixer.domains())
            .map_err(|e| at(*vline, e))?;
        mixer
            .observe_validation(step, &losses)
            .map_err(|e| at(*vline, e))
    };
    validate(mixer, 0, log.steps.first().map_or(1, |(l, _)| *l))?;
    writeln!(out, "{}", replay_line(mixer, 0)).map_err(output_error)?;
    let mut feedback = StepFeedback::new(mixer.domains().len());
    for (line, record) in &log.steps {
        let at = |e: MixingError| MixingError::AtLine {
            path: log.path.clone(),
            line: *line,
            cause: Box::new(e),
        };
        record
            .to_step_feedback(mixer.domains(), &mut feedback)
            .map_err(at)?;
        mixer.observe(record.step, &feedback).map_err(at)?;
        validate(mixer, record.step, *line)?;
        writeln!(out, "{}", replay_line(mixer, record.step)).map_err(output_error)?;
    }
    Ok(log.steps.len())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{DomainSet, MixerConfig, StaticConfig, WeightSpec};

    #[test]
    fn replays_a_static_mixer_line_by_line() {
        let text = "{\"step\": 1, \"feedback\": {\"a\": {\"loss_sum\": 3.0, \"loss_count\": 1}}}\n\
                    {\"step\": 2, \"feedback\": {\"b\": {\"loss_sum\": 3.0, \"loss_count\": 1}}}\n";
        let log = FeedbackLog::parse(text, Path::new("f.jsonl")).expect("valid");
        let ctx = replay_context(
            &log,
            MixerContext::new(DomainSet::new(["a", "b"]).expect("ok")),
        )
        .expect("fallback");
        let mut mixer = StaticConfig {
            weights: WeightSpec::Uniform,
            renormalize: false,
        }
        .build(&ctx)
        .expect("builds");
        let mut out = Vec::new();
        assert_eq!(replay(mixer.as_mut(), &log, &mut out).expect("replays"), 2);
        let lines: Vec<Value> = String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["step"], 0);
        assert_eq!(lines[2]["step"], 2);
        assert_eq!(lines[2]["weights"]["b"], 0.5);
    }

    #[test]
    fn errors_name_file_and_line() {
        let text = "{\"step\": 2, \"feedback\": {}}\n{\"step\": 2, \"feedback\": {}}\n";
        let log = FeedbackLog::parse(text, Path::new("dup.jsonl")).expect("parses");
        let ctx = MixerContext::new(DomainSet::new(["a"]).expect("ok"));
        let mut mixer = StaticConfig {
            weights: WeightSpec::Uniform,
            renormalize: false,
        }
        .build(&ctx)
        .expect("builds");
        let msg = replay(mixer.as_mut(), &log, &mut Vec::new())
            .expect_err("step repeats")
            .to_string();
        assert!(msg.starts_with("dup.jsonl:2:"), "{msg}");

        let unknown =
            "{\"step\": 1, \"feedback\": {\"zz\": {\"loss_sum\": 1.0, \"loss_count\": 1}}}\n";
        let log = FeedbackLog::parse(unknown, Path::new("u.jsonl")).expect("parses");
        let msg = replay(mixer.as_mut(), &log, &mut Vec::new())
            .expect_err("unknown domain")
            .to_string();
        assert!(msg.starts_with("u.jsonl:1:") && msg.contains("zz"), "{msg}");
    }

    #[test]
    fn header_supplies_domains_and_counts() {
        let text = "{\"domains\": [\"x\", \"y\"], \"token_counts\": {\"x\": 1, \"y\": 3}}\n\
                    {\"step\": 1, \"feedback\": {}}\n";
        let log = FeedbackLog::parse(text, Path::new("h.jsonl")).expect("parses");
        let ctx = replay_context(&log, MixerContext::new(DomainSet::pile())).expect("header");
        assert_eq!(ctx.domains.names(), ["x", "y"]);
        assert_eq!(ctx.token_counts, Some(vec![1, 3]));
        let missing = "{\"domains\": [\"x\", \"y\"], \"token_counts\": {\"x\": 1}}\n{\"step\": 1, \"feedback\": {}}\n";
        let log = FeedbackLog::parse(missing, Path::new("m.jsonl")).expect("parses");
        assert!(replay_context(&log, MixerContext::new(DomainSet::pile())).is_err());
    }
}
