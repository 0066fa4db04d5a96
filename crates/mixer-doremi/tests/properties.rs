//! Property tests of the DoReMi mixer: α and its average stay probability vectors with every
//! α_i ≥ c/K, checkpoints resume bit-exactly, and the mixer is deterministic.

use mixlab_mixer_doremi::{DoremiConfig, DoremiMixer};
use mixlab_mixing::{DomainSet, Mixer, MixerContext, StepFeedback, WeightSpec};
use proptest::prelude::*;

/// One step: per domain, `None` (absent) or (tokens, mean clipped excess loss).
type Step = Vec<Option<(u64, f64)>>;

#[derive(Debug, Clone)]
struct Case {
    eta: f64,
    smoothing: f64,
    sampling: Vec<f64>,
    steps: Vec<Step>,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=10).prop_flat_map(|k| {
        (
            0.05f64..4.0,
            1e-5f64..0.5,
            proptest::collection::vec(0.01f64..1.0, k),
            proptest::collection::vec(
                proptest::collection::vec(proptest::option::of((1u64..5000, 0.0f64..50.0)), k),
                1..40,
            ),
        )
            .prop_map(|(eta, smoothing, sampling, steps)| Case {
                eta,
                smoothing,
                sampling,
                steps,
            })
    })
}

fn build(case: &Case) -> DoremiMixer {
    let k = case.sampling.len();
    let domains = DomainSet::new((0..k).map(|i| format!("d{i}"))).expect("distinct");
    let config = DoremiConfig {
        eta: case.eta,
        smoothing: case.smoothing,
        sampling_weights: WeightSpec::Inline(
            (0..k)
                .map(|i| (format!("d{i}"), case.sampling[i]))
                .collect(),
        ),
        ..DoremiConfig::default()
    };
    DoremiMixer::new(config, &MixerContext::new(domains).with_vocab_size(50277)).expect("valid")
}

fn feedback(step: &Step) -> StepFeedback {
    let mut fb = StepFeedback::new(step.len());
    for (i, d) in step.iter().enumerate() {
        if let Some((tokens, mean)) = d {
            fb.add_loss(i, 3.0, 1, *tokens);
            fb.add_excess_loss(i, mean * *tokens as f64, *tokens);
        }
    }
    fb
}

fn assert_simplex(v: &[f64], floor: f64) -> Result<(), TestCaseError> {
    prop_assert!(
        v.iter().all(|x| x.is_finite() && *x >= floor),
        "{v:?} below {floor}"
    );
    prop_assert!((v.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{v:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn weights_stay_on_the_simplex_above_c_over_k(case in case()) {
        let mut m = build(&case);
        let floor = case.smoothing / case.sampling.len() as f64;
        for (j, step) in case.steps.iter().enumerate() {
            m.observe(j as u64 + 1, &feedback(step)).expect("valid");
            assert_simplex(m.domain_weights(), floor)?;
            // A running mean of α_1 … α_t, each ≥ c/K, and (the default, the reference code's
            // average) of α_0, the sampling weights, which may lie below c/K: so each entry is
            // at least the smaller of the two, up to rounding.
            assert_simplex(m.average_domain_weights(), 0.0)?;
            for (avg, a0) in m.average_domain_weights().iter().zip(m.weights()) {
                let bound = floor.min(*a0) * (1.0 - 1e-9);
                prop_assert!(*avg >= bound, "average {avg} below min(c/K, α_0) = {bound}");
            }
            assert_simplex(m.loss_weights().expect("loss weights"), 0.0)?;
            assert_simplex(m.weights(), 0.0)?;
        }
    }

    #[test]
    fn save_restore_continue_equals_continue(case in case(), split in 0usize..40) {
        let split = split.min(case.steps.len());
        let mut straight = build(&case);
        let mut first = build(&case);
        for (j, step) in case.steps.iter().enumerate() {
            straight.observe(j as u64 + 1, &feedback(step)).expect("valid");
            if j < split {
                first.observe(j as u64 + 1, &feedback(step)).expect("valid");
            }
        }
        let text = serde_json::to_string(&first.state().expect("state")).expect("json");
        let mut resumed = build(&case);
        resumed.restore_state(&serde_json::from_str(&text).expect("parses")).expect("same config");
        for (j, step) in case.steps.iter().enumerate().skip(split) {
            resumed.observe(j as u64 + 1, &feedback(step)).expect("valid");
        }
        prop_assert_eq!(resumed.domain_weights(), straight.domain_weights());
        prop_assert_eq!(resumed.average_domain_weights(), straight.average_domain_weights());
        prop_assert_eq!(resumed.loss_weights(), straight.loss_weights());
        prop_assert_eq!(resumed.state().expect("state"), straight.state().expect("state"));
    }

    #[test]
    fn same_inputs_same_outputs(case in case()) {
        let mut a = build(&case);
        let mut b = build(&case);
        for (j, step) in case.steps.iter().enumerate() {
            a.observe(j as u64 + 1, &feedback(step)).expect("valid");
            b.observe(j as u64 + 1, &feedback(step)).expect("valid");
            prop_assert_eq!(a.domain_weights(), b.domain_weights());
        }
        prop_assert_eq!(a.internals(), b.internals());
    }
}
