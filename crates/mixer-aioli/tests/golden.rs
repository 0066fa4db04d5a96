//! Aioli against a transcription of the reference code (`tests/data/aioli_golden.py`, which
//! names the upstream file and lines each part follows), run with numpy.
//!
//! The mixer is replayed from `tests/data/aioli_golden_feedback.jsonl` exactly as
//! `experiments replay-mixer` does (K = 4; a validation line after every step, of which Aioli
//! reads the ones it asks for; 120 steps) in three configurations: the 3-domain script's shape
//! (EMA, normalised A, probes with factor 0.625, after a prior phase), the code without `--ema`
//! and normalisation with one-hot probes, and the diagonal estimate. Every step's mixture, every
//! probe order and every round's estimate of A agree with the reference to 1e-12 (measured:
//! within 1e-15; they differ only in rounding: numpy's LU solve against the closed-form
//! inverse, and exp of the raw logits against a softmax).

use std::path::{Path, PathBuf};

use mixlab_mixer_aioli::{AioliConfig, AioliMixer, UpdateRule};
use mixlab_mixing::{FeedbackLog, Mixer, MixerContext, WeightSpec, replay, replay_context};
use serde_json::Value;

const TOLERANCE: f64 = 1e-12;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(data("aioli_golden_expected.json")).expect("committed");
    serde_json::from_str(&text).expect("JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// The mixlab config of a variant of the Python script.
fn config(c: &Value) -> AioliConfig {
    let prior = match c["prior"].as_array() {
        None => WeightSpec::Uniform,
        Some(p) => WeightSpec::Inline(
            ["A", "B", "C", "D"]
                .iter()
                .zip(p)
                .map(|(n, w)| ((*n).to_owned(), w.as_f64().expect("weight")))
                .collect(),
        ),
    };
    let (update, ema) = match c["ema"].as_f64() {
        Some(g) => (UpdateRule::Ema, g),
        None => (UpdateRule::Multiplicative, 0.0),
    };
    AioliConfig {
        prior,
        renormalize: false,
        prior_steps: c["prior_steps"].as_u64().expect("prior_steps"),
        update_steps: c["update_steps"].as_u64().expect("update_steps"),
        lp_rounds: c["lp_rounds"].as_u64().expect("lp_rounds"),
        lp_steps: c["lp_steps"].as_u64().expect("lp_steps"),
        one_hot_factor: c["one_hot_factor"].as_f64().expect("factor"),
        eta: c["eta"].as_f64().expect("eta"),
        update,
        ema,
        normalize: c["normalize"].as_bool().expect("normalize"),
        diagonal: c["diagonal"].as_bool().expect("diagonal"),
        start_from_prior: false,
        seed: c["seed"].as_u64().expect("seed"),
    }
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= TOLERANCE)
}

/// Replays the variant and checks every step's mixture, probe order and estimate.
fn check(variant: &str) {
    let e = &expected()[variant];
    let log = FeedbackLog::read(&data("aioli_golden_feedback.jsonl")).expect("committed log");
    let ctx = replay_context(
        &log,
        MixerContext::new(mixlab_mixing::DomainSet::new(["A"]).expect("one")),
    )
    .expect("header");
    let mut mixer = AioliMixer::new(config(&e["config"]), &ctx).expect("valid config");
    let mut out = Vec::new();
    let steps = replay(&mut mixer, &log, &mut out).expect("replays");
    assert_eq!(steps, 120);
    let lines: Vec<Value> = String::from_utf8(out)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let want = e["weights_after"].as_array().expect("weights");
    for (t, w) in want.iter().enumerate() {
        // The replay's line after step t holds the mixture of step t + 1.
        let line = &lines[t];
        assert_eq!(line["step"].as_u64(), Some(t as u64));
        let got: Vec<f64> = ["A", "B", "C", "D"]
            .iter()
            .map(|n| line["weights"][n].as_f64().expect("weight"))
            .collect();
        let w = floats(w);
        assert!(
            close(&got, &w),
            "{variant}: mixture of step {} is {got:?}, the reference's {w:?}",
            t + 1
        );
    }

    // Orders and estimates, round by round, from a second pass that stops at each round's end.
    let orders = e["orders"].as_array().expect("orders");
    let estimates = e["estimates"].as_array().expect("estimates");
    let mut m = AioliMixer::new(config(&e["config"]), &ctx).expect("valid config");
    let mut round = 0;
    let mut feedback = mixlab_mixing::StepFeedback::new(4);
    let validate = |m: &mut AioliMixer, step: u64| {
        if m.wants_validation(step) {
            let (_, record) = log.validation_after(step).expect("a line per step");
            let losses = record.in_order(m.domains()).expect("domains");
            m.observe_validation(step, &losses).expect("valid losses");
        }
    };
    validate(&mut m, 0);
    for (_, record) in &log.steps {
        if let Some(order) = m.probe_order()
            && m.rounds_done() == round
        {
            let want: Vec<usize> = orders[round as usize]
                .as_array()
                .expect("order")
                .iter()
                .map(|x| x.as_u64().expect("index") as usize)
                .collect();
            assert_eq!(order, want, "{variant}: probe order of round {round}");
        }
        record
            .to_step_feedback(m.domains(), &mut feedback)
            .expect("feedback");
        m.observe(record.step, &feedback).expect("observes");
        validate(&mut m, record.step);
        if m.rounds_done() > round {
            let want: Vec<f64> = estimates[round as usize]
                .as_array()
                .expect("matrix")
                .iter()
                .flat_map(floats)
                .collect();
            let got = m.interaction().expect("estimated");
            assert!(
                close(got, &want),
                "{variant}: A of round {round} is {got:?}, the reference's {want:?}"
            );
            round += 1;
        }
    }
    assert_eq!(round as usize, estimates.len(), "{variant}: rounds");
}

#[test]
fn the_script_configuration_replays_like_the_reference() {
    check("ema");
}

#[test]
fn the_multiplicative_update_with_one_hot_probes_replays_like_the_reference() {
    check("multiplicative");
}

#[test]
fn the_diagonal_estimate_replays_like_the_reference() {
    check("diagonal");
}
