//! Aioli at the edges: one domain, a domain that never improves, constant and zero losses
//! (no NaN where the reference divides 0 by 0), domains without validation data, validations
//! out of turn, and corrupt checkpoints; a refused input leaves the mixer as it was.

use mixlab_mixer_aioli::{AioliConfig, AioliMixer, UpdateRule};
use mixlab_mixing::{DomainSet, Mixer, MixerContext, StepFeedback};

fn mixer(k: usize, config: AioliConfig) -> AioliMixer {
    let domains = DomainSet::new((0..k).map(|i| format!("d{i}"))).expect("distinct");
    AioliMixer::new(config, &MixerContext::new(domains)).expect("valid config")
}

/// Rounds of K + 2 steps: one-step probes in one sweep, two exploit steps.
fn short(k: usize) -> AioliConfig {
    AioliConfig {
        update_steps: k as u64 + 2,
        lp_rounds: 1,
        lp_steps: 1,
        one_hot_factor: if k == 1 { 0.75 } else { 0.9 },
        ..AioliConfig::default()
    }
}

fn feedback(k: usize) -> StepFeedback {
    let mut f = StepFeedback::new(k);
    f.add_loss(0, 3.0, 4, 512);
    f
}

/// Runs `steps` steps with `losses(step)` as every validation; returns the mixtures.
fn drive(
    m: &mut AioliMixer,
    steps: u64,
    losses: impl Fn(u64) -> Vec<Option<f64>>,
) -> Vec<Vec<f64>> {
    let k = m.domains().len();
    if m.wants_validation(0) {
        m.observe_validation(0, &losses(0)).expect("valid");
    }
    let mut out = Vec::new();
    for t in 1..=steps {
        out.push(m.weights().to_vec());
        m.observe(t, &feedback(k)).expect("valid feedback");
        if m.wants_validation(t) {
            m.observe_validation(t, &losses(t)).expect("valid losses");
        }
    }
    out
}

#[test]
fn one_domain_is_always_sampled() {
    // The loss falls 0.1 per step, so each one-step probe measures G = 0.1; a single domain's
    // A is G / factor (W = [[factor]] = [[0.75]]), and normalised A = [1].
    for (config, a) in [
        (short(1), 1.0),
        (
            AioliConfig {
                update: UpdateRule::Multiplicative,
                normalize: false,
                ..short(1)
            },
            0.1 / 0.75,
        ),
    ] {
        let mut m = mixer(1, config);
        let w = drive(&mut m, 20, |t| vec![Some(5.0 - 0.1 * t as f64)]);
        assert!(w.iter().all(|w| w == &[1.0]), "{w:?}");
        assert!(m.rounds_done() >= 6);
        let got = m.interaction().expect("estimated")[0];
        assert!((got - a).abs() < 1e-12, "{got} vs {a}");
    }
}

#[test]
fn constant_and_zero_losses_give_the_uniform_mixture_not_nan() {
    // G = 0: the reference's normalisation divides 0 by 0; here A = 1/K² and p is uniform.
    for loss in [0.0, 2.5] {
        let mut m = mixer(3, short(3));
        let w = drive(&mut m, 25, |_| vec![Some(loss); 3]);
        assert!(m.rounds_done() >= 4);
        assert_eq!(m.interaction().expect("estimated"), &[1.0 / 9.0; 9]);
        let learned = m.learned().expect("learned");
        assert!(
            learned.iter().all(|p| (p - 1.0 / 3.0).abs() < 1e-15),
            "{learned:?}"
        );
        assert!(w.iter().flatten().all(|x| x.is_finite()));
    }
    // Without normalisation, A = 0 and the mixture stays uniform too.
    let mut m = mixer(
        3,
        AioliConfig {
            normalize: false,
            ..short(3)
        },
    );
    drive(&mut m, 25, |_| vec![Some(1.0); 3]);
    assert_eq!(m.learned().expect("learned"), &[1.0 / 3.0; 3]);
}

#[test]
fn a_domain_that_never_improves_and_a_domain_others_teach() {
    // d0's loss falls while d0 is probed, d2's falls while d1 is probed, d2 never falls on its
    // own. One-hot probes (A = G) make the estimate readable: column 0 and column 1 carry the
    // gains, column 2 none, so d2 gets the least of the learned mixture.
    let mut m = mixer(
        3,
        AioliConfig {
            one_hot_factor: 1.0,
            normalize: false,
            ..short(3)
        },
    );
    let mut level = [3.0f64; 3];
    if m.wants_validation(0) {
        m.observe_validation(0, &level.map(Some)).expect("valid");
    }
    for t in 1..=5u64 {
        let probed = m
            .internals()
            .get("probe_domain")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        m.observe(t, &feedback(3)).expect("feedback");
        match probed.as_deref() {
            Some("d0") => level[0] -= 0.2,
            Some("d1") => level[2] -= 0.1,
            _ => {}
        }
        if m.wants_validation(t) {
            m.observe_validation(t, &level.map(Some)).expect("valid");
        }
    }
    assert_eq!(m.rounds_done(), 1);
    let a = m.interaction().expect("estimated");
    let column = |j: usize| a[j] + a[3 + j] + a[6 + j];
    assert!((column(0) - 0.2).abs() < 1e-12 && (column(1) - 0.1).abs() < 1e-12);
    assert_eq!(column(2), 0.0);
    let p = m.learned().expect("learned");
    assert!(p[0] > p[1] && p[1] > p[2], "{p:?}");
}

#[test]
fn a_domain_without_validation_data_adds_nothing_and_all_missing_is_refused() {
    let mut m = mixer(3, short(3));
    let w = drive(&mut m, 15, |t| {
        vec![Some(4.0 - 0.05 * t as f64), Some(3.0), None]
    });
    assert!(w.iter().flatten().all(|x| x.is_finite()));
    let a = m.interaction().expect("estimated");
    // Row 2 (the domain without data) had G = 0; after the solve and normalisation it holds
    // the shift only, so its entries are equal.
    assert!(a[6] == a[7] && a[7] == a[8], "{a:?}");

    let mut m = mixer(3, short(3));
    let err = m
        .observe_validation(0, &[None, None, None])
        .expect_err("nothing to learn from")
        .to_string();
    assert!(err.contains("no domain has validation data"), "{err}");
    assert_eq!(m.weights(), &[1.0 / 3.0; 3]);
}

#[test]
fn validations_out_of_turn_are_refused_and_change_nothing() {
    let mut m = mixer(2, short(2));
    let before = m.state().expect("state");
    // Step 1 before the validation at step 0 that Aioli asked for.
    let err = m.observe(1, &feedback(2)).expect_err("missing").to_string();
    assert!(err.contains("validation losses after step 0"), "{err}");
    // A validation for a step not yet observed, and a negative loss.
    assert!(m.observe_validation(3, &[Some(1.0), Some(1.0)]).is_err());
    assert!(m.observe_validation(0, &[Some(-1.0), Some(1.0)]).is_err());
    assert_eq!(m.state().expect("state"), before);

    m.observe_validation(0, &[Some(3.0), Some(3.0)])
        .expect("asked for");
    let err = m
        .observe_validation(0, &[Some(3.0), Some(3.0)])
        .expect_err("twice")
        .to_string();
    assert!(err.contains("twice"), "{err}");
    m.observe(1, &feedback(2)).expect("probe step");
    m.observe_validation(1, &[Some(2.9), Some(3.0)])
        .expect("after probe 0");
    m.observe(2, &feedback(2)).expect("probe step");
    m.observe_validation(2, &[Some(2.9), Some(2.8)])
        .expect("after probe 1");
    m.observe(3, &feedback(2)).expect("exploit");
    let err = m
        .observe_validation(3, &[Some(2.0), Some(2.0)])
        .expect_err("not asked")
        .to_string();
    assert!(err.contains("did not ask"), "{err}");
    // Skipping past the validation after step 4 (the next round's start).
    let err = m.observe(6, &feedback(2)).expect_err("gap").to_string();
    assert!(err.contains("after step 4"), "{err}");
}

#[test]
fn corrupt_or_foreign_states_are_refused_and_change_nothing() {
    let mut m = mixer(3, short(3));
    drive(&mut m, 7, |t| {
        vec![Some(3.0 - 0.1 * t as f64), Some(3.0), Some(2.0)]
    });
    let good = m.state().expect("state");
    let corrupt = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut s = good.clone();
        edit(&mut s);
        let mut fresh = mixer(3, short(3));
        let before = fresh.state().expect("state");
        let err = fresh.restore_state(&s).expect_err("corrupt").to_string();
        assert_eq!(
            fresh.state().expect("state"),
            before,
            "changed by a refused state"
        );
        err
    };
    assert!(corrupt(&|s| s["rng"] = "x".into()).contains("rng"));
    assert!(corrupt(&|s| s["weights"] = serde_json::json!(["0.5", "0.5", "0.5"])).contains("sum"));
    assert!(corrupt(&|s| s["last_estimate"] = serde_json::json!(["1"])).contains("3 x 3"));
    assert!(corrupt(&|s| s["rounds_done"] = 7.into()).contains("rounds"));
    assert!(corrupt(&|s| s["last_validation"] = 99.into()).contains("past the last step"));
    // A state of another configuration.
    let mut other = mixer(
        3,
        AioliConfig {
            eta: 2.0,
            ..short(3)
        },
    );
    let err = other
        .restore_state(&good)
        .expect_err("other config")
        .to_string();
    assert!(err.contains("config"), "{err}");
}

#[test]
fn configurations_that_cannot_run_name_their_fields() {
    let domains = DomainSet::new((0..22).map(|i| format!("d{i}"))).expect("distinct");
    let err = AioliMixer::new(AioliConfig::default(), &MixerContext::new(domains))
        .expect_err("440 probe steps in 200")
        .to_string();
    assert!(
        err.contains("update_steps (200)") && err.contains("22"),
        "{err}"
    );
}

#[test]
fn the_policy_is_the_learned_mixture_while_probing() {
    // 3 domains, rounds of 5 steps: after step 5 the next round's first probe is sampled, and
    // the policy stays the mixture round 0 learned.
    let mut m = mixer(3, short(3));
    assert_eq!(m.policy(), &[1.0 / 3.0; 3], "the prior before any round");
    drive(&mut m, 5, |t| {
        vec![Some(3.0 - 0.1 * t as f64), Some(3.0), Some(2.5)]
    });
    assert_eq!(m.rounds_done(), 1);
    assert_eq!(m.internals()["phase"], "probe");
    assert_eq!(m.policy(), m.learned().expect("learned"));
    assert_ne!(m.weights(), m.policy());
}
