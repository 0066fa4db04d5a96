//! Property tests of the Aioli mixer over random configurations and validation losses: the
//! mixture is always a probability vector; a probe gives its domain the factor and the others
//! their equal share; with the EMA rule, a normalised A and the uniform base every domain keeps
//! at least 1/(e^η + K − 1) of the learned mixture; checkpoints resume bit-exactly; runs are
//! deterministic.

use mixlab_mixer_aioli::{AioliConfig, AioliMixer, UpdateRule};
use mixlab_mixing::{DomainSet, Mixer, MixerContext, StepFeedback};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    config: AioliConfig,
    k: usize,
    /// Validation losses by step (0..=steps), per domain; `None`: no validation data.
    losses: Vec<Vec<Option<f64>>>,
    split: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=5).prop_flat_map(|k| {
        (
            (1u64..=2, 1u64..=3, 1u64..=6, 0u64..=8),
            (0.0f64..1.0, 0.0f64..3.0, 0.0f64..0.95),
            (
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<u64>(),
            ),
            proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![9 => (0.0f64..9.0).prop_map(Some), 1 => Just(None)],
                    k,
                ),
                61,
            ),
            0usize..60,
        )
            .prop_map(
                move |(
                    (lp_rounds, lp_steps, exploit, prior_steps),
                    (factor, eta, ema),
                    (multiplicative, normalize, diagonal, from_prior, seed),
                    mut losses,
                    split,
                )| {
                    // Aioli refuses a validation without any loss: keep one per line.
                    for l in &mut losses {
                        if l.iter().all(Option::is_none) {
                            l[0] = Some(1.0);
                        }
                    }
                    let probes = lp_rounds * k as u64 * lp_steps;
                    // A factor in (1/K, 1].
                    let low = 1.0 / k as f64;
                    let one_hot_factor = if k == 1 {
                        1.0
                    } else {
                        low + (1.0 - low) * factor.max(1e-3)
                    };
                    Case {
                        config: AioliConfig {
                            prior_steps,
                            update_steps: probes + exploit,
                            lp_rounds,
                            lp_steps,
                            one_hot_factor,
                            eta,
                            update: if multiplicative {
                                UpdateRule::Multiplicative
                            } else {
                                UpdateRule::Ema
                            },
                            ema,
                            normalize,
                            diagonal,
                            start_from_prior: from_prior,
                            seed,
                            ..AioliConfig::default()
                        },
                        k,
                        losses,
                        split,
                    }
                },
            )
    })
}

fn build(case: &Case) -> AioliMixer {
    let domains = DomainSet::new((0..case.k).map(|i| format!("d{i}"))).expect("distinct");
    AioliMixer::new(case.config.clone(), &MixerContext::new(domains)).expect("valid config")
}

fn feedback(k: usize, t: u64) -> StepFeedback {
    let mut f = StepFeedback::new(k);
    f.add_loss(t as usize % k, 3.0, 4, 512);
    f
}

/// Validation before step 1 if asked.
fn start(m: &mut AioliMixer, case: &Case) {
    if m.wants_validation(0) {
        m.observe_validation(0, &case.losses[0]).expect("valid");
    }
}

/// Step t: observe, then the validation Aioli asks for.
fn step(m: &mut AioliMixer, case: &Case, t: u64) {
    m.observe(t, &feedback(case.k, t)).expect("valid feedback");
    if m.wants_validation(t) {
        m.observe_validation(t, &case.losses[t as usize])
            .expect("valid losses");
    }
}

/// The mixtures of steps 1..=60, as the trainer reads them.
fn run(case: &Case) -> Vec<Vec<f64>> {
    let mut m = build(case);
    start(&mut m, case);
    let mut out = Vec::new();
    for t in 1..=60 {
        out.push(m.weights().to_vec());
        step(&mut m, case, t);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mixtures_are_distributions_with_the_expected_shape(case in case()) {
        let mut m = build(&case);
        start(&mut m, &case);
        let k = case.k;
        let floor = 1.0 / (case.config.eta.exp() + k as f64 - 1.0);
        for t in 1..=60u64 {
            let w = m.weights().to_vec();
            let sum: f64 = w.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-12, "step {t}: sum {sum}");
            prop_assert!(w.iter().all(|x| x.is_finite() && *x >= 0.0), "step {t}: {w:?}");
            let phase = m.internals()["phase"].as_str().expect("phase").to_owned();
            match phase.as_str() {
                "prior" => prop_assert_eq!(&w, &vec![1.0 / k as f64; k]),
                "probe" if k > 1 => {
                    let f = case.config.one_hot_factor;
                    let rest = (1.0 - f) / (k - 1) as f64;
                    let top = w.iter().cloned().fold(0.0, f64::max);
                    prop_assert!((top - f).abs() < 1e-12, "step {t}: {w:?}");
                    prop_assert_eq!(w.iter().filter(|&&x| (x - rest).abs() < 1e-12).count() + 1,
                                    k + usize::from(f == rest));
                }
                // Ā is then a convex combination of non-negative matrices summing to 1, so its
                // column sums s lie in [0, 1] and sum to 1: p_j = e^(η s_j) / Σ e^(η s_l) is
                // smallest at s_j = 0 with the other mass on one column.
                "exploit"
                    if case.config.normalize
                        && case.config.update == UpdateRule::Ema
                        && !case.config.start_from_prior =>
                {
                    prop_assert!(w.iter().all(|&x| x >= floor * (1.0 - 1e-12)),
                                 "step {t}: {w:?} below {floor}");
                }
                _ => {}
            }
            step(&mut m, &case, t);
        }
    }

    #[test]
    fn a_restored_checkpoint_continues_bit_for_bit(case in case()) {
        let whole = run(&case);
        let mut first = build(&case);
        start(&mut first, &case);
        for t in 1..=case.split as u64 {
            step(&mut first, &case, t);
        }
        let state = first.state().expect("state");
        // Through JSON text, as a checkpoint file.
        let text = serde_json::to_string(&state).expect("JSON");
        let mut resumed = build(&case);
        resumed
            .restore_state(&serde_json::from_str(&text).expect("JSON"))
            .expect("restores");
        for t in case.split as u64 + 1..=60 {
            prop_assert_eq!(resumed.weights(), &whole[t as usize - 1][..], "step {}", t);
            step(&mut resumed, &case, t);
        }
    }

    #[test]
    fn runs_are_deterministic(case in case()) {
        prop_assert_eq!(run(&case), run(&case));
    }
}
