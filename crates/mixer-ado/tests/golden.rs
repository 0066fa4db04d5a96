//! ADO against a transcription of the reference code (`tests/data/ado_golden.py`, which names
//! the upstream file and lines each part follows), run with numpy, scipy, jax and jaxopt.
//!
//! - The closed-form parts match to rounding: scipy's `savgol_filter` (1e-12), the code's
//!   `loss_fn` value and its JAX gradient (1e-12 relative), `clip_min_probability` (1e-15).
//! - The whole mixer, replayed from `tests/data/ado_golden_feedback.jsonl` exactly as
//!   `experiments replay-mixer` does (K = 3: A follows a law, B a slower one, C never improves;
//!   B absent from the first step; 100 steps, fits at steps 41, 61 and 81), in both count
//!   modes: every policy before the first fit is the prior to the bit, and after it the
//!   policies agree with the reference's to 1e-4 (measured: 6.9e-6 with the shared count,
//!   5.7e-5 with the per-domain count). They cannot agree to the last bit: the fit is
//!   an iterative minimisation of a Huber loss that is almost piecewise linear (δ = 10⁻³ in log
//!   loss), and mixlab's L-BFGS takes another path to the minimum than jaxopt's. What is held
//!   equal is what matters: the points each fit sees (1e-12), and the minimum's objective
//!   value, where mixlab's is never worse than the reference's by more than 1e-9 (measured: at
//!   most 1.7e-10 above jaxopt's; in 2 of the 18 fits below it).

use std::path::{Path, PathBuf};

use mixlab_mixer_ado::law::{FitData, LawParams};
use mixlab_mixer_ado::savgol::SavitzkyGolay;
use mixlab_mixer_ado::{AdoConfig, AdoMixer, CountMode, clip_min_probability, fit_law};
use mixlab_mixing::{FeedbackLog, Mixer, MixerContext, WeightSpec, replay, replay_context};
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(data("ado_golden_expected.json")).expect("committed");
    serde_json::from_str(&text).expect("JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn config(count: CountMode) -> AdoConfig {
    AdoConfig {
        prior: WeightSpec::Inline(
            [("A", 0.5), ("B", 0.3), ("C", 0.2)]
                .map(|(n, w)| (n.to_owned(), w))
                .into(),
        ),
        ignore_steps: 10,
        start_step: 40,
        update_interval: 20,
        smoothing_window: 11,
        smoothing_order: 3,
        fit_stride: 2,
        count,
        ..AdoConfig::default()
    }
}

#[test]
fn savgol_matches_scipy() {
    let e = expected();
    let y = floats(&e["pieces"]["savgol_input"]);
    let want = floats(&e["pieces"]["savgol_11_3"]);
    let f = SavitzkyGolay::new(11, 3);
    for (i, w) in want.iter().enumerate() {
        let got = f.smooth_at(&y, i).expect("long enough");
        assert!((got - w).abs() < 1e-12, "index {i}: {got} vs scipy {w}");
    }
}

#[test]
fn the_objective_and_its_gradient_match_jax() {
    let e = expected();
    let p = &e["pieces"];
    let data = FitData::new(
        floats(&p["objective_n"])
            .into_iter()
            .zip(floats(&p["objective_loss"])),
    );
    for case in p["objective"].as_array().expect("cases") {
        let x = floats(&case["p"]);
        let mut g = [0.0; 3];
        let v = data.objective(&[x[0], x[1], x[2]], &mut g);
        let want = case["value"].as_f64().expect("value");
        assert!(
            (v - want).abs() <= 1e-12 * want.abs().max(1e-3),
            "{x:?}: {v} vs {want}"
        );
        for (k, w) in floats(&case["grad"]).iter().enumerate() {
            assert!(
                (g[k] - w).abs() <= 1e-12 * w.abs().max(1e-3),
                "{x:?} d{k}: {} vs {w}",
                g[k]
            );
        }
    }
}

#[test]
fn the_floor_matches_the_code() {
    let e = expected();
    let p = &e["pieces"];
    for (input, want) in p["clip_input"]
        .as_array()
        .expect("inputs")
        .iter()
        .zip(p["clip_0.01"].as_array().expect("outputs"))
    {
        let mut v = floats(input);
        clip_min_probability(&mut v, 0.01);
        for (g, w) in v.iter().zip(floats(want)) {
            assert!((g - w).abs() < 1e-15, "{v:?} vs {want}");
        }
    }
}

/// Replays the golden feedback and returns the replay's lines.
fn replayed(count: CountMode) -> Vec<Value> {
    let log = FeedbackLog::read(&data("ado_golden_feedback.jsonl")).expect("committed log");
    let ctx = replay_context(
        &log,
        MixerContext::new(mixlab_mixing::DomainSet::new(["A"]).expect("one")),
    )
    .expect("header");
    let mut mixer = AdoMixer::new(config(count), &ctx).expect("valid");
    let mut out = Vec::new();
    replay(&mut mixer, &log, &mut out).expect("replays");
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn check_replay(count: CountMode, key: &str) {
    let e = expected();
    let lines = replayed(count);
    let want = e[key]["weights"].as_array().expect("rows");
    assert_eq!(lines.len(), want.len(), "one line per step plus the start");
    let first_fit = 41;
    let mut worst: f64 = 0.0;
    for (line, row) in lines.iter().zip(want) {
        let row = floats(row);
        let step = row[0] as u64;
        assert_eq!(line["step"].as_u64(), Some(step));
        for (name, w) in ["A", "B", "C"].iter().zip(&row[1..]) {
            let got = line["weights"][name].as_f64().expect("weight");
            if step < first_fit {
                assert_eq!(got, *w, "{key} step {step} {name}: the prior, to the bit");
            } else {
                worst = worst.max((got - w).abs());
                assert!(
                    (got - w).abs() < 1e-4,
                    "{key} step {step} {name}: {got} vs {w}"
                );
            }
        }
    }
    eprintln!("{key}: largest policy difference after the first fit {worst:e}");
    // Every fit: the same points, and a minimum at least as low as jaxopt's.
    for fit in e[key]["fits"].as_array().expect("fits") {
        let step = fit["step"].as_u64().expect("step");
        let line = &lines[step as usize];
        for (k, name) in ["A", "B", "C"].iter().enumerate() {
            let n = floats(&fit["points_n"][k]);
            let loss = floats(&fit["points_loss"][k]);
            let points = FitData::new(n.into_iter().zip(loss));
            let law = LawParams {
                a: line["internals"]["law_a"][name].as_f64().expect("a"),
                e: line["internals"]["law_e"][name].as_f64().expect("e"),
                alpha: line["internals"]["law_alpha"][name]
                    .as_f64()
                    .expect("alpha"),
            };
            let mut g = [0.0; 3];
            let ours = points.objective(&law.to_array(), &mut g);
            let theirs = fit["objective"][k].as_f64().expect("objective");
            assert!(
                ours <= theirs + 1e-9,
                "{key} fit at step {step}, {name}: objective {ours} vs jaxopt {theirs}"
            );
            // fit_law on the reference's points finds the mixer's minimum: the mixer fitted the
            // same points (up to the filter's rounding, which moves the minimum by < 1e-9).
            let direct = fit_law(&points).expect("finite");
            let mut g2 = [0.0; 3];
            let again = points.objective(&direct.to_array(), &mut g2);
            assert!(
                (again - ours).abs() < 1e-9,
                "{key} step {step} {name}: {again} on the reference's points, {ours} in the mixer"
            );
        }
    }
}

#[test]
fn the_shared_count_replays_like_the_reference() {
    check_replay(CountMode::Shared, "shared");
}

#[test]
fn the_domain_count_replays_like_the_reference() {
    check_replay(CountMode::Domain, "domain");
}

#[test]
fn the_weights_are_those_the_mixer_reports() {
    // The replay's lines are the mixer's own weights (a check on the harness above).
    let lines = replayed(CountMode::Shared);
    let log = FeedbackLog::read(&data("ado_golden_feedback.jsonl")).expect("committed log");
    let ctx = replay_context(
        &log,
        MixerContext::new(mixlab_mixing::DomainSet::new(["A"]).expect("one")),
    )
    .expect("header");
    let mixer = AdoMixer::new(config(CountMode::Shared), &ctx).expect("valid");
    assert_eq!(lines[0]["weights"]["A"].as_f64(), Some(mixer.weights()[0]));
}
