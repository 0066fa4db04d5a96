//! ADO at the edges: one domain, a domain that never improves, constant and zero losses, a
//! domain never drawn, huge losses, and input that must be refused without changing anything.

use mixlab_mixer_ado::{AdoConfig, AdoMixer, CountMode};
use mixlab_mixing::{DomainSet, Mixer, MixerContext, StepFeedback, WeightSpec};

fn mixer(k: usize, count: CountMode) -> AdoMixer {
    let domains = DomainSet::new((0..k).map(|i| format!("d{i}"))).expect("distinct names");
    let config = AdoConfig {
        prior: WeightSpec::Uniform,
        count,
        ignore_steps: 2,
        start_step: 20,
        update_interval: 10,
        smoothing_window: 7,
        fit_stride: 1,
        ..AdoConfig::default()
    };
    AdoMixer::new(config, &MixerContext::new(domains)).expect("valid")
}

/// Runs `steps` steps in which every domain listed by `draws(t)` is drawn with 4 sequences of
/// mean loss `loss(domain, t)`; checks the weights after every step and returns the mixer.
fn run(
    mut m: AdoMixer,
    steps: u64,
    draws: impl Fn(u64) -> Vec<usize>,
    loss: impl Fn(usize, u64) -> f64,
) -> AdoMixer {
    let k = m.domains().len();
    for t in 1..=steps {
        let mut fb = StepFeedback::new(k);
        for d in draws(t) {
            fb.add_loss(d, loss(d, t) * 4.0, 4, 512);
        }
        m.observe(t, &fb).expect("valid feedback");
        let w = m.weights();
        assert!(
            w.iter().all(|x| x.is_finite() && *x >= 0.0),
            "step {t}: {w:?}"
        );
        assert!(
            (w.iter().sum::<f64>() - 1.0).abs() < 1e-12,
            "step {t}: {w:?}"
        );
    }
    m
}

fn law(t: u64, scale: f64) -> f64 {
    2.0 + scale * (t as f64).powf(-0.4)
}

#[test]
fn one_domain_always_gets_everything() {
    for count in [CountMode::Shared, CountMode::Domain] {
        let m = run(mixer(1, count), 60, |_| vec![0], |_, t| law(t, 3.0));
        assert_eq!(m.weights(), [1.0]);
        assert!(m.laws().is_some(), "fitted at 20, 30, 40, 50");
    }
}

#[test]
fn a_domain_that_never_improves_falls_to_the_floor_share() {
    // d0 learns, d1's loss is constant: its law has no reducible part, its slope is ~0, so ρ
    // gives it only the floor, and the smoothed policy moves away from uniform toward d0.
    let m = run(
        mixer(2, CountMode::Shared),
        120,
        |_| vec![0, 1],
        |d, t| {
            if d == 0 { law(t, 3.0) } else { 2.5 }
        },
    );
    let w = m.weights();
    assert!(w[0] > 0.6 && w[1] < 0.4, "{w:?}");
}

#[test]
fn constant_and_zero_losses_stay_finite() {
    for loss in [0.0, 1.0] {
        for count in [CountMode::Shared, CountMode::Domain] {
            let m = run(mixer(3, count), 50, |_| vec![0, 1, 2], |_, _| loss);
            let w = m.weights();
            // Every domain alike: the policy stays uniform.
            for x in w {
                assert!((x - 1.0 / 3.0).abs() < 1e-12, "loss {loss}: {w:?}");
            }
        }
    }
}

#[test]
fn a_domain_never_drawn_keeps_a_share_in_both_modes() {
    // d2 is never drawn: its loss row is carried from the first step's mean, its count is 0
    // (domain mode: n = 1 in the slope, and no fit points before it is drawn, so none at all).
    for count in [CountMode::Shared, CountMode::Domain] {
        let m = run(
            mixer(3, count),
            50,
            |_| vec![0, 1],
            |d, t| law(t, 1.0 + d as f64),
        );
        let w = m.weights();
        assert!(w[2] > 0.0, "{count:?}: {w:?}");
    }
}

#[test]
fn huge_losses_stay_finite() {
    let m = run(
        mixer(2, CountMode::Shared),
        40,
        |t| vec![(t % 2) as usize],
        |d, t| 1e300 * (1.0 + d as f64) / t as f64,
    );
    assert!(m.weights().iter().all(|x| x.is_finite()));
}

#[test]
fn bad_feedback_is_refused_and_changes_nothing() {
    let mut m = run(
        mixer(2, CountMode::Shared),
        25,
        |_| vec![0, 1],
        |d, t| law(t, 1.0 + d as f64),
    );
    let before = (m.weights().to_vec(), m.state().expect("state"));
    let mut nan = StepFeedback::new(2);
    nan.add_loss(0, f64::NAN, 4, 512);
    assert!(m.observe(26, &nan).is_err());
    let empty = StepFeedback::new(2);
    let e = m
        .observe(26, &empty)
        .expect_err("nothing drawn")
        .to_string();
    assert!(e.contains("step 26") && e.contains("drew no domain"), "{e}");
    assert!(m.observe(25, &nan).is_err(), "a repeated step");
    assert_eq!((m.weights().to_vec(), m.state().expect("state")), before);
    let mut ok = StepFeedback::new(2);
    ok.add_loss(0, 8.0, 4, 512);
    m.observe(26, &ok)
        .expect("the same step with valid feedback");
}

#[test]
fn a_floor_too_high_for_the_domains_is_refused() {
    let domains = DomainSet::new((0..200).map(|i| format!("d{i}"))).expect("distinct names");
    let e = AdoMixer::new(
        AdoConfig {
            prior: WeightSpec::Uniform,
            ..AdoConfig::default()
        },
        &MixerContext::new(domains),
    )
    .expect_err("0.01 x 200 > 1")
    .to_string();
    assert!(
        e.contains("min_probability = 0.01") && e.contains("200 domains"),
        "{e}"
    );
}

#[test]
fn a_state_of_another_config_or_corrupt_history_is_refused() {
    let m = run(
        mixer(2, CountMode::Shared),
        25,
        |_| vec![0, 1],
        |d, t| law(t, 1.0 + d as f64),
    );
    let state = m.state().expect("state");
    let mut other = mixer(2, CountMode::Domain);
    let e = other
        .restore_state(&state)
        .expect_err("other count")
        .to_string();
    assert!(e.contains("config"), "{e}");
    let mut corrupt = state.clone();
    corrupt["history"]["losses"][3] = serde_json::json!("NaN");
    let e = mixer(2, CountMode::Shared)
        .restore_state(&corrupt)
        .expect_err("NaN loss")
        .to_string();
    assert!(e.contains("history holds the loss NaN"), "{e}");
    let mut short = state;
    short["history"]["losses"]
        .as_array_mut()
        .expect("array")
        .pop();
    assert!(mixer(2, CountMode::Shared).restore_state(&short).is_err());
}
