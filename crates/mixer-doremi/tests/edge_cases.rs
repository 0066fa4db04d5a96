//! Edge cases of the DoReMi mixer: K = 1, a domain never present, excess losses of 0 and 50,
//! 10^6 steps, rejected feedback, the exported table, config and checkpoint errors.

use mixlab_mixer_doremi::{DoremiConfig, DoremiMixer};
use mixlab_mixing::{
    DomainSet, Mixer, MixerConfig, MixerContext, MixerEntry, MixerRegistry, StaticConfig,
    StepFeedback, WeightSpec, WeightTable, parse_config,
};

fn domains(k: usize) -> DomainSet {
    DomainSet::new((0..k).map(|i| format!("d{i}"))).expect("distinct")
}

fn mixer(k: usize) -> DoremiMixer {
    DoremiMixer::new(
        DoremiConfig::default(),
        &MixerContext::new(domains(k)).with_vocab_size(50277),
    )
    .expect("valid")
}

fn step(k: usize, present: &[(usize, f64)]) -> StepFeedback {
    let mut fb = StepFeedback::new(k);
    for &(i, mean) in present {
        fb.add_loss(i, 3.0, 1, 100);
        fb.add_excess_loss(i, mean * 100.0, 100);
    }
    fb
}

fn assert_simplex(v: &[f64], floor: f64) {
    assert!(v.iter().all(|x| x.is_finite() && *x >= floor), "{v:?}");
    assert!((v.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{v:?}");
}

#[test]
fn a_single_domain() {
    let mut m = mixer(1);
    for t in 1..=20 {
        m.observe(t, &step(1, &[(0, 0.5)])).expect("valid");
        assert_eq!(m.domain_weights(), &[1.0]);
        assert_eq!(m.loss_weights(), Some(&[1.0][..]));
        assert_eq!(m.weights(), &[1.0]);
    }
}

#[test]
fn a_domain_never_present_keeps_ln_vocab_and_dominates() {
    let mut m = mixer(3);
    for t in 1..=100 {
        m.observe(t, &step(3, &[(0, 0.5), (1, 0.4)]))
            .expect("valid");
        assert_simplex(m.domain_weights(), 1e-3 / 3.0);
    }
    assert_eq!(m.excess_losses()[2], 50277f64.ln());
    // ln V ≈ 10.8 per step in the exponent: the absent domain takes all but the floor.
    assert!(m.domain_weights()[2] > 0.99);
    assert!((m.domain_weights()[0] - 1e-3 / 3.0).abs() < 1e-6);
}

#[test]
fn excess_losses_of_zero_and_fifty() {
    let mut m = mixer(2);
    for t in 1..=10_000 {
        m.observe(t, &step(2, &[(0, 0.0), (1, 50.0)]))
            .expect("valid");
        assert_simplex(m.domain_weights(), 1e-3 / 2.0);
    }
    // The floor c/K is exactly where the zero-excess domain ends up.
    assert!((m.domain_weights()[0] - 1e-3 / 2.0).abs() < 1e-15);
    // The running mean of values ≥ c/K is ≥ c/K up to its own rounding over 10^4 steps.
    assert_simplex(m.average_domain_weights(), 1e-3 / 2.0 * (1.0 - 1e-9));
}

#[test]
fn a_million_steps() {
    let k = 22;
    let mut m = DoremiMixer::new(
        DoremiConfig::default(),
        &MixerContext::new(DomainSet::pile()).with_vocab_size(50277),
    )
    .expect("valid");
    let mut fb = StepFeedback::new(k);
    for t in 1..=1_000_000u64 {
        fb.clear();
        for g in 0..8u64 {
            let d = ((t * 5 + g * 3) % k as u64) as usize;
            let tokens = 61_440;
            fb.add_loss(d, 3.0, 60, tokens);
            fb.add_excess_loss(d, ((t + g) % 50) as f64 * 0.01 * tokens as f64, tokens);
        }
        m.observe(t, &fb).expect("valid");
    }
    assert_eq!(m.updates(), 1_000_000);
    assert_simplex(m.domain_weights(), 1e-3 / 22.0);
    assert_simplex(m.average_domain_weights(), 1e-3 / 22.0 * (1.0 - 1e-9));
    assert_simplex(m.loss_weights().expect("loss weights"), 0.0);
}

#[test]
fn invalid_feedback_is_rejected_and_changes_nothing() {
    let mut m = mixer(2);
    m.observe(1, &step(2, &[(0, 0.5)])).expect("valid");
    let before = m.state().expect("state");
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        let mut fb = StepFeedback::new(2);
        fb.add_excess_loss(1, bad, 10);
        let err = m.observe(2, &fb).expect_err("rejected");
        assert!(err.to_string().contains("\"d1\""), "{err}");
        assert_eq!(m.state().expect("state"), before);
    }
    assert!(m.observe(1, &step(2, &[])).is_err(), "step order");
    m.observe(2, &step(2, &[]))
        .expect("a step without reference feedback still updates");
    assert_eq!(m.updates(), 2);
}

#[test]
fn the_average_exports_as_a_static_table() {
    let mut m = mixer(3);
    for t in 1..=50 {
        m.observe(t, &step(3, &[(0, 0.5), (1, 0.2), (2, 0.9)]))
            .expect("valid");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("doremi_avg.toml");
    let table = m.output_table().expect("DoReMi outputs a table");
    table
        .write_toml(&path, "DoReMi averaged weights")
        .expect("write");
    let back = WeightTable::load(&path).expect("load");
    for (i, name) in domains(3).names().iter().enumerate() {
        assert_eq!(
            back.get(name),
            Some(m.average_domain_weights()[i]),
            "exact round trip"
        );
    }
    // The static mixer loads it, and samples the averaged weights.
    let mut registry = MixerRegistry::new();
    registry
        .register(MixerEntry::of::<StaticConfig>())
        .expect("register");
    let config: toml::Table =
        toml::from_str("kind = \"static\"\nweights = { file = \"doremi_avg.toml\" }")
            .expect("toml");
    let ctx = MixerContext::new(domains(3)).with_base_dir(dir.path());
    let fixed = registry
        .build(&config, &ctx)
        .expect("static from the export");
    for (a, b) in fixed.weights().iter().zip(m.average_domain_weights()) {
        assert!((a - b).abs() < 1e-15);
    }
}

#[test]
fn config_errors() {
    let parse = |text: &str| parse_config::<DoremiConfig>(&toml::from_str(text).expect("TOML"));
    assert_eq!(
        parse("kind = \"doremi\"").expect("defaults"),
        DoremiConfig::default()
    );
    assert!(parse("eta = 0.0").is_err());
    assert!(parse("eta = -1.0").is_err());
    assert!(parse("smoothing = 1.5").is_err());
    assert!(parse("initial_excess_loss = -1.0").is_err());
    assert!(parse("reweight_eta = 1.0").is_err(), "unknown field");
    let no_vocab = DoremiMixer::new(DoremiConfig::default(), &MixerContext::new(domains(2)));
    assert!(
        no_vocab
            .expect_err("needs ln V")
            .to_string()
            .contains("initial_excess_loss")
    );
    let explicit = DoremiConfig {
        initial_excess_loss: Some(2.0),
        ..DoremiConfig::default()
    };
    let m = DoremiMixer::new(explicit, &MixerContext::new(domains(2))).expect("explicit λ0");
    assert_eq!(m.excess_losses(), &[2.0, 2.0]);
    let zero = DoremiConfig {
        sampling_weights: WeightSpec::Inline(
            [("d0".to_owned(), 1.0), ("d1".to_owned(), 0.0)].into(),
        ),
        ..DoremiConfig::default()
    };
    let err = DoremiMixer::new(zero, &MixerContext::new(domains(2)).with_vocab_size(10))
        .expect_err("0 weight");
    assert!(err.to_string().contains("\"d1\""), "{err}");
    assert!(mixer(2).needs_reference_model());
}

#[test]
fn every_param_is_documented() {
    let config = DoremiConfig {
        initial_excess_loss: Some(1.0),
        ..DoremiConfig::default()
    };
    let table = toml::Table::try_from(&config).expect("serialises");
    let keys: Vec<&str> = table.keys().map(String::as_str).collect();
    let mut documented: Vec<&str> = DoremiConfig::PARAMS.iter().map(|p| p.name).collect();
    documented.sort_unstable();
    assert_eq!(keys, documented);
}

#[test]
fn restore_rejects_another_config_or_domains() {
    let mut m = mixer(2);
    m.observe(1, &step(2, &[(0, 0.5)])).expect("valid");
    let state = m.state().expect("state");
    assert!(mixer(3).restore_state(&state).is_err());
    let other = DoremiMixer::new(
        DoremiConfig {
            eta: 2.0,
            ..DoremiConfig::default()
        },
        &MixerContext::new(domains(2)).with_vocab_size(50277),
    )
    .expect("valid");
    assert!(other.clone().restore_state(&state).is_err());
    let mut fresh = mixer(2);
    fresh.restore_state(&state).expect("same config");
    assert_eq!(fresh.loss_weights(), m.loss_weights());
}

#[test]
fn a_checkpoint_from_before_the_average_option_is_refused_saying_why() {
    let mut m = mixer(3);
    m.observe(1, &step(3, &[(0, 0.5), (1, 0.2)]))
        .expect("valid");
    let mut state = m.state().expect("state");
    // The same state as a mixer written before `average` existed: its config has no such key.
    let mut config: serde_json::Value =
        serde_json::from_str(state["config"].as_str().expect("config text")).expect("json");
    config.as_object_mut().expect("object").remove("average");
    state["config"] = serde_json::Value::String(config.to_string());
    let e = mixer(3)
        .restore_state(&state)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("predates") && e.contains("average"), "{e}");
    // The state as written today restores.
    let fresh = m.state().expect("state");
    mixer(3).restore_state(&fresh).expect("restores");
}
