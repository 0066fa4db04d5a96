//! Property tests of the ODM mixer: the policy is always a probability vector above the
//! exploration floor, checkpoints resume bit-exactly, and the mixer is deterministic.

use mixlab_mixer_odm::{LossAggregation, OdmConfig, OdmMixer, OdmRule};
use mixlab_mixing::{DomainSet, Mixer, MixerContext, StepFeedback, WeightSpec};
use proptest::prelude::*;

/// One step's draws: per domain, `None` (not drawn) or (micro-batches, loss per micro-batch).
type Step = Vec<Option<(u64, f64)>>;

#[derive(Debug, Clone)]
struct Case {
    rule: OdmRule,
    aggregation: Option<LossAggregation>,
    warmup: u64,
    first_step: u64,
    initial: Vec<f64>,
    steps: Vec<Step>,
}

fn rule() -> impl Strategy<Value = OdmRule> {
    prop_oneof![
        Just(OdmRule::Paper),
        Just(OdmRule::ReferenceCode),
        Just(OdmRule::Exp3)
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=10).prop_flat_map(|k| {
        (
            rule(),
            proptest::option::of(prop_oneof![
                Just(LossAggregation::Sum),
                Just(LossAggregation::Mean)
            ]),
            0u64..6,
            1u64..150,
            proptest::collection::vec(0.01f64..1.0, k),
            proptest::collection::vec(
                proptest::collection::vec(proptest::option::of((1u64..4, 0.0f64..50.0)), k),
                1..40,
            ),
        )
            .prop_map(
                |(rule, aggregation, warmup, first_step, initial, steps)| Case {
                    rule,
                    aggregation,
                    warmup,
                    first_step,
                    initial,
                    steps,
                },
            )
    })
}

fn build(case: &Case) -> OdmMixer {
    let k = case.initial.len();
    let domains = DomainSet::new((0..k).map(|i| format!("d{i}"))).expect("distinct names");
    let inline = (0..k).map(|i| (format!("d{i}"), case.initial[i])).collect();
    let mut config = OdmConfig::new(case.rule)
        .with_warmup(case.warmup)
        .with_initial_weights(WeightSpec::Inline(inline));
    if case.aggregation.is_some() {
        config.loss_aggregation = case.aggregation;
    }
    OdmMixer::new(config, &MixerContext::new(domains)).expect("valid config")
}

fn feedback(step: &Step) -> StepFeedback {
    let mut fb = StepFeedback::new(step.len());
    for (i, draw) in step.iter().enumerate() {
        if let Some((count, loss)) = draw {
            for _ in 0..*count {
                fb.add_loss(i, *loss, 4, 4096);
            }
        }
    }
    fb
}

fn assert_policy(m: &OdmMixer) -> Result<(), TestCaseError> {
    let w = m.weights();
    prop_assert!(w.iter().all(|x| x.is_finite() && *x >= 0.0), "{w:?}");
    prop_assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
    if let Some(eps) = m.exploration() {
        // Every domain keeps at least ε_t (up to the renormalisation's last bit).
        prop_assert!(
            w.iter().all(|&x| x >= eps * (1.0 - 1e-12)),
            "{w:?} below ε = {eps}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn policy_is_a_distribution_above_the_floor(case in case()) {
        let mut m = build(&case);
        assert_policy(&m)?;
        for (j, step) in case.steps.iter().enumerate() {
            m.observe(case.first_step + j as u64, &feedback(step)).expect("valid feedback");
            assert_policy(&m)?;
        }
    }

    #[test]
    fn save_restore_continue_equals_continue(case in case(), split in 0usize..40) {
        let split = split.min(case.steps.len());
        let mut straight = build(&case);
        let mut first = build(&case);
        for (j, step) in case.steps.iter().enumerate() {
            let t = case.first_step + j as u64;
            straight.observe(t, &feedback(step)).expect("valid");
            if j < split {
                first.observe(t, &feedback(step)).expect("valid");
            }
        }
        // Through text, as a checkpoint file would carry it.
        let text = serde_json::to_string(&first.state().expect("state")).expect("json");
        let mut resumed = build(&case);
        resumed
            .restore_state(&serde_json::from_str(&text).expect("parses"))
            .expect("same config");
        for (j, step) in case.steps.iter().enumerate().skip(split) {
            resumed.observe(case.first_step + j as u64, &feedback(step)).expect("valid");
        }
        prop_assert_eq!(resumed.weights(), straight.weights());
        prop_assert_eq!(resumed.state().expect("state"), straight.state().expect("state"));
    }

    #[test]
    fn same_inputs_same_outputs(case in case()) {
        let mut a = build(&case);
        let mut b = build(&case);
        for (j, step) in case.steps.iter().enumerate() {
            let t = case.first_step + j as u64;
            a.observe(t, &feedback(step)).expect("valid");
            b.observe(t, &feedback(step)).expect("valid");
            prop_assert_eq!(a.weights(), b.weights());
        }
        prop_assert_eq!(a.internals(), b.internals());
    }
}
