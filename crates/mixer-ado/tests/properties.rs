//! Property tests of the ADO mixer: the policy is always a probability vector, the floor of ρ
//! bounds it from below once it adapts, checkpoints resume bit-exactly, and the mixer is
//! deterministic.

use mixlab_mixer_ado::{AdoConfig, AdoMixer, CountMode};
use mixlab_mixing::{DomainSet, Mixer, MixerContext, StepFeedback, WeightSpec};
use proptest::prelude::*;

/// One step's draws: per domain, `None` (not drawn) or (sequences, mean loss).
type Step = Vec<Option<(u64, f64)>>;

#[derive(Debug, Clone)]
struct Case {
    count: CountMode,
    prior: Vec<f64>,
    steps: Vec<Step>,
    split: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=6).prop_flat_map(|k| {
        (
            prop_oneof![Just(CountMode::Shared), Just(CountMode::Domain)],
            proptest::collection::vec(0.01f64..1.0, k),
            proptest::collection::vec(
                proptest::collection::vec(proptest::option::of((1u64..5, 0.0f64..12.0)), k),
                1..45,
            ),
            0usize..45,
        )
            .prop_map(|(count, prior, steps, split)| Case {
                count,
                prior,
                steps,
                split,
            })
    })
}

/// Fits at iterations 8, 12, 16, ...: the runs above adapt for up to 36 steps.
fn config(case: &Case) -> AdoConfig {
    let inline = (0..case.prior.len())
        .map(|i| (format!("d{i}"), case.prior[i]))
        .collect();
    AdoConfig {
        prior: WeightSpec::Inline(inline),
        count: case.count,
        ignore_steps: 1,
        start_step: 8,
        update_interval: 4,
        smoothing_window: 5,
        smoothing_order: 2,
        fit_stride: 1,
        min_probability: 0.02,
        ..AdoConfig::default()
    }
}

fn build(case: &Case) -> AdoMixer {
    let k = case.prior.len();
    let domains = DomainSet::new((0..k).map(|i| format!("d{i}"))).expect("distinct names");
    AdoMixer::new(config(case), &MixerContext::new(domains)).expect("valid config")
}

fn feedback(step: &Step) -> Option<StepFeedback> {
    let mut fb = StepFeedback::new(step.len());
    for (i, draw) in step.iter().enumerate() {
        if let Some((sequences, loss)) = draw {
            fb.add_loss(i, loss * *sequences as f64, *sequences, 128 * sequences);
        }
    }
    // A step that draws nothing is refused (edge_cases.rs); the trainer never sends one.
    fb.domains().iter().any(|d| d.drawn()).then_some(fb)
}

fn feedbacks(case: &Case) -> Vec<StepFeedback> {
    case.steps.iter().filter_map(feedback).collect()
}

proptest! {
    // Each case refits up to ten times over 512 start points: 16 cases keep this file near 15 s.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn weights_are_a_distribution_above_the_floor(case in case()) {
        let mut mixer = build(&case);
        let k = case.prior.len() as f64;
        // ρ_k ≥ m / (1 + K m) after its floor, and π = s π̄ + (1 − s) ρ ≥ (1 − s) ρ.
        let bound = (1.0 - 0.9) * 0.02 / (1.0 + k * 0.02);
        for (t, fb) in feedbacks(&case).iter().enumerate() {
            let step = t as u64 + 1;
            mixer.observe(step, fb).expect("valid feedback");
            let w = mixer.weights();
            let sum: f64 = w.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-12, "sum {sum}");
            prop_assert!(w.iter().all(|x| x.is_finite() && *x >= 0.0), "{w:?}");
            if mixer.laws().is_some() && step > 8 {
                prop_assert!(w.iter().all(|x| *x >= bound * (1.0 - 1e-12)), "{w:?} below {bound}");
            }
        }
    }

    #[test]
    fn save_restore_continue_equals_uninterrupted(case in case()) {
        let fbs = feedbacks(&case);
        let split = case.split.min(fbs.len());
        let mut straight = build(&case);
        let mut resumed = build(&case);
        for (t, fb) in fbs[..split].iter().enumerate() {
            straight.observe(t as u64 + 1, fb).expect("valid");
            resumed.observe(t as u64 + 1, fb).expect("valid");
        }
        // Through JSON text, as a checkpoint.
        let text = serde_json::to_string(&resumed.state().expect("state")).expect("JSON");
        let mut fresh = build(&case);
        fresh.restore_state(&serde_json::from_str(&text).expect("JSON")).expect("restores");
        for (t, fb) in fbs.iter().enumerate().skip(split) {
            straight.observe(t as u64 + 1, fb).expect("valid");
            fresh.observe(t as u64 + 1, fb).expect("valid");
            prop_assert_eq!(straight.weights(), fresh.weights());
        }
        prop_assert_eq!(straight.internals(), fresh.internals());
    }

    #[test]
    fn the_mixer_is_deterministic(case in case()) {
        let fbs = feedbacks(&case);
        let (mut a, mut b) = (build(&case), build(&case));
        for (t, fb) in fbs.iter().enumerate() {
            a.observe(t as u64 + 1, fb).expect("valid");
            b.observe(t as u64 + 1, fb).expect("valid");
        }
        prop_assert_eq!(a.weights(), b.weights());
        prop_assert_eq!(a.state().expect("state"), b.state().expect("state"));
    }
}
