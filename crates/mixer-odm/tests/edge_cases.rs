//! Edge cases of the ODM mixer: K = 1, a domain never drawn, losses of 0 and 50 (and far
//! larger), 10^6 steps, rejected feedback, config and checkpoint errors.

use mixlab_mixer_odm::{OdmConfig, OdmMixer, OdmRule, exploration_rate};
use mixlab_mixing::{
    DomainSet, Mixer, MixerConfig, MixerContext, MixingError, NamedTable, StepFeedback, WeightSpec,
    parse_config,
};

const RULES: [OdmRule; 3] = [OdmRule::Paper, OdmRule::ReferenceCode, OdmRule::Exp3];

fn domains(k: usize) -> DomainSet {
    DomainSet::new((0..k).map(|i| format!("d{i}"))).expect("distinct")
}

fn mixer(rule: OdmRule, k: usize, warmup: u64) -> OdmMixer {
    let config = OdmConfig::new(rule)
        .with_warmup(warmup)
        .with_initial_weights(WeightSpec::Uniform);
    OdmMixer::new(config, &MixerContext::new(domains(k))).expect("valid")
}

fn assert_distribution(m: &OdmMixer) {
    let w = m.weights();
    assert!(w.iter().all(|x| x.is_finite() && *x >= 0.0), "{w:?}");
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
    if let Some(eps) = m.exploration() {
        assert!(
            w.iter().all(|&x| x >= eps * (1.0 - 1e-12)),
            "{w:?} below {eps}"
        );
    }
}

#[test]
fn a_single_domain_always_has_weight_one() {
    for rule in RULES {
        let mut m = mixer(rule, 1, 2);
        assert_eq!(m.weights(), &[1.0]);
        for t in 1..=50 {
            let mut fb = StepFeedback::new(1);
            fb.add_loss(0, 3.0 + (t % 7) as f64, 1, 1);
            m.observe(t, &fb).expect("valid");
            assert_eq!(m.weights(), &[1.0], "{rule:?} at step {t}");
        }
    }
}

#[test]
fn a_never_drawn_domain_keeps_the_floor_and_no_reward() {
    let k = 4;
    for rule in RULES {
        let mut m = mixer(rule, k, 10);
        for t in 1..=500 {
            let mut fb = StepFeedback::new(k);
            fb.add_loss((t % 3) as usize, 3.0, 1, 1);
            m.observe(t, &fb).expect("valid");
            assert_distribution(&m);
        }
        let r = m.rewards()[3];
        assert_eq!(r, 0.0, "{rule:?}: R of the never-drawn domain");
        let eps = m.exploration().expect("after warm-up");
        assert!(m.weights()[3] >= eps * (1.0 - 1e-12));
        if rule == OdmRule::ReferenceCode {
            // Linear normalisation gives the undrawn domain exactly the floor ε_500.
            assert!((m.weights()[3] - exploration_rate(k, 500)).abs() < 1e-15);
        }
    }
}

#[test]
fn losses_of_zero_and_fifty() {
    for rule in RULES {
        let mut m = mixer(rule, 3, 0);
        for t in 1..=2_000 {
            let mut fb = StepFeedback::new(3);
            fb.add_loss(0, 0.0, 1, 1);
            fb.add_loss(1, 50.0, 1, 1);
            if t % 5 == 0 {
                fb.add_loss(2, 3.0, 1, 1);
            }
            m.observe(t, &fb).expect("0 and 50 are valid losses");
            assert_distribution(&m);
        }
        // The high-loss domain is the most rewarded, the zero-loss one the least (under the
        // reference code's linear normalisation e^50 dwarfs both others, which sit at ε).
        let w = m.weights();
        assert!(w[1] > w[2] && w[2] >= w[0], "{rule:?}: {w:?}");
        assert!(w[1] > 0.5, "{rule:?}: {w:?}");
    }
}

#[test]
fn huge_finite_losses_do_not_overflow() {
    // exp(1000) overflows f64, so the reference-code rule must stay in log space.
    for rule in RULES {
        let mut m = mixer(rule, 3, 0);
        for t in 1..=1_000 {
            let mut fb = StepFeedback::new(3);
            fb.add_loss((t % 3) as usize, 1_000.0, 1, 1);
            fb.add_loss(((t + 1) % 3) as usize, 900.0, 1, 1);
            m.observe(t, &fb).expect("finite losses");
            assert_distribution(&m);
        }
    }
}

#[test]
fn a_million_steps_stay_finite_and_on_the_simplex() {
    let k = 22;
    for rule in RULES {
        let mut m = OdmMixer::new(
            OdmConfig::new(rule).with_warmup(2_000),
            &MixerContext::new(DomainSet::pile()),
        )
        .expect("TPW over the Pile");
        let mut fb = StepFeedback::new(k);
        for t in 1..=1_000_000u64 {
            fb.clear();
            // Eight micro-batches a step from rotating domains, losses between 2 and 50.
            for g in 0..8u64 {
                let d = ((t * 7 + g * 3) % k as u64) as usize;
                fb.add_loss(d, 2.0 + ((t + g) % 49) as f64, 60, 61_440);
            }
            m.observe(t, &fb).expect("valid");
        }
        assert_distribution(&m);
        let eps = m.exploration().expect("after warm-up");
        assert!((eps - exploration_rate(k, 1_000_000)).abs() < 1e-18 || rule == OdmRule::Paper);
        assert_eq!(m.updates(), 1_000_000 - 2_000);
        assert!(m.rewards().iter().all(|r| r.is_finite()), "{rule:?}");
    }
}

#[test]
fn invalid_losses_are_rejected_and_change_nothing() {
    for rule in RULES {
        let mut m = mixer(rule, 3, 0);
        let mut ok = StepFeedback::new(3);
        ok.add_loss(0, 3.0, 1, 1);
        m.observe(1, &ok).expect("valid");
        let before = m.state().expect("state");
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            let mut fb = StepFeedback::new(3);
            fb.add_loss(1, 2.0, 1, 1);
            fb.add_loss(2, bad, 1, 1);
            let err = m.observe(2, &fb).expect_err("rejected");
            assert!(err.to_string().contains("\"d2\""), "{err}");
            assert_eq!(
                m.state().expect("state"),
                before,
                "{rule:?}: state untouched"
            );
        }
        assert!(matches!(
            m.observe(1, &ok),
            Err(MixingError::StepOrder { .. })
        ));
        assert!(matches!(m.observe(0, &ok), Err(MixingError::StepZero)));
        assert!(m.observe(2, &StepFeedback::new(4)).is_err(), "wrong K");
        m.observe(2, &ok).expect("the mixer still works");
    }
}

#[test]
fn a_finite_loss_whose_reward_overflows_is_rejected_whole() {
    // With K = 22 the importance weight 1/π ≈ 22 pushes f64::MAX past the largest f64.
    for rule in [OdmRule::Paper, OdmRule::Exp3] {
        let mut m = mixer(rule, 22, 0);
        let before = m.state().expect("state");
        let mut fb = StepFeedback::new(22);
        fb.add_loss(0, 1.0, 1, 1);
        fb.add_loss(1, f64::MAX, 1, 1);
        let err = m.observe(1, &fb).expect_err("non-finite reward");
        assert!(err.to_string().contains("\"d1\""), "{err}");
        assert_eq!(
            m.state().expect("state"),
            before,
            "{rule:?}: nothing written"
        );
    }
}

#[test]
fn a_draw_with_probability_zero_is_an_error_for_importance_weighting() {
    let config = OdmConfig::new(OdmRule::Exp3).with_initial_weights(WeightSpec::Inline(
        [("d0".to_owned(), 1.0), ("d1".to_owned(), 0.0)].into(),
    ));
    let mut m = OdmMixer::new(config, &MixerContext::new(domains(2))).expect("valid");
    let mut fb = StepFeedback::new(2);
    fb.add_loss(1, 3.0, 1, 1);
    let err = m.observe(1, &fb).expect_err("1/0");
    assert!(err.to_string().contains("\"d1\""), "{err}");
}

#[test]
fn the_paper_policy_is_uniform_right_after_the_warm_up() {
    let config = OdmConfig::new(OdmRule::Paper).with_warmup(3);
    let mut m = OdmMixer::new(config, &MixerContext::new(DomainSet::pile())).expect("TPW");
    let tpw = NamedTable::Tpw
        .table()
        .resolve(&DomainSet::pile(), false)
        .expect("valid");
    assert_eq!(m.weights(), &tpw[..]);
    let mut fb = StepFeedback::new(22);
    fb.add_loss(0, 3.0, 1, 1);
    for t in 1..=2 {
        m.observe(t, &fb).expect("valid");
        assert_eq!(m.weights(), &tpw[..], "warm-up");
    }
    m.observe(3, &fb).expect("valid");
    // Step 4 is the first after the warm-up; R = 0 gives (1 − Kε)/K + ε = 1/K.
    assert!(m.weights().iter().all(|w| (w - 1.0 / 22.0).abs() < 1e-15));
}

#[test]
fn config_validation_and_defaults() {
    let parse = |text: &str| parse_config::<OdmConfig>(&toml::from_str(text).expect("TOML"));
    let paper = parse("kind = \"odm\"").expect("all defaults");
    assert_eq!(paper, OdmConfig::new(OdmRule::Paper));
    assert_eq!(paper.alpha, Some(0.9));
    let exp3 = parse("rule = \"exp3\"").expect("exp3");
    assert_eq!(exp3.reward_scale, Some(10.0));
    assert_eq!(exp3.alpha, None);
    assert!(parse("alpha = 1.0").is_err());
    assert!(parse("alpha = -0.1").is_err());
    assert!(parse("rule = \"exp3\"\nalpha = 0.5").is_err());
    assert!(parse("reward_scale = 5.0").is_err());
    assert!(parse("rule = \"exp3\"\nreward_scale = 0.0").is_err());
    assert!(parse("rule = \"papers\"").is_err());
    let typo = parse("warmup = 10").expect_err("unknown field");
    assert!(typo.to_string().contains("warmup"), "{typo}");
    assert_eq!(parse("alpha = 0.5").expect("valid").alpha, Some(0.5));
    assert!(
        parse("alpha = 0.0").is_ok(),
        "α = 0: reward = last loss only"
    );
}

#[test]
fn every_param_is_documented() {
    let mut keys: Vec<String> = Vec::new();
    for rule in RULES {
        // `exploration` is only written when set.
        let mut config = OdmConfig::new(rule);
        config.exploration = Some(0.01);
        let table = toml::Table::try_from(config).expect("serialises");
        keys.extend(table.keys().cloned());
    }
    keys.sort();
    keys.dedup();
    let mut documented: Vec<&str> = OdmConfig::PARAMS.iter().map(|p| p.name).collect();
    documented.sort_unstable();
    assert_eq!(keys, documented);
}

#[test]
fn restore_rejects_another_config_or_domains() {
    let mut m = mixer(OdmRule::Paper, 3, 0);
    let mut fb = StepFeedback::new(3);
    fb.add_loss(0, 3.0, 1, 1);
    m.observe(1, &fb).expect("valid");
    let state = m.state().expect("state");
    assert!(mixer(OdmRule::Exp3, 3, 0).restore_state(&state).is_err());
    assert!(mixer(OdmRule::Paper, 3, 5).restore_state(&state).is_err());
    assert!(mixer(OdmRule::Paper, 4, 0).restore_state(&state).is_err());
    let mut tampered = state.clone();
    tampered["rewards"][0] = serde_json::Value::from("NaN");
    assert!(
        mixer(OdmRule::Paper, 3, 0)
            .restore_state(&tampered)
            .is_err()
    );
    let mut fresh = mixer(OdmRule::Paper, 3, 0);
    fresh.restore_state(&state).expect("same config");
    assert_eq!(fresh.weights(), m.weights());
}

#[test]
fn initial_tpw_on_a_subset_of_the_pile() {
    let mini = DomainSet::new(["Pile-CC", "ArXiv", "Github", "Enron Emails"]).expect("valid");
    let ctx = MixerContext::new(mini);
    assert!(OdmMixer::new(OdmConfig::new(OdmRule::Paper).with_warmup(1), &ctx).is_err());
    let mut config = OdmConfig::new(OdmRule::Paper).with_warmup(1);
    config.renormalize = true;
    let m = OdmMixer::new(config, &ctx).expect("renormalised TPW");
    let total = 0.1811 + 0.0896 + 0.0759 + 0.0014;
    assert!((m.weights()[0] - 0.1811 / total).abs() < 1e-15);
}

#[test]
fn a_fixed_exploration_rate_replaces_only_the_uniform_share() {
    let k = 4;
    let fixed = |rule: OdmRule, eps: f64| {
        let mut config = OdmConfig::new(rule).with_initial_weights(WeightSpec::Uniform);
        config.exploration = Some(eps);
        OdmMixer::new(config, &MixerContext::new(domains(k)))
    };
    for rule in RULES {
        for eps in [0.0, 0.01, 0.05, 0.25] {
            let mut m = fixed(rule, eps).expect("valid");
            let mut decaying = mixer(rule, k, 0);
            for t in 1..=200 {
                let mut fb = StepFeedback::new(k);
                fb.add_loss((t % 4) as usize, 1.0 + (t % 4) as f64, 1, 1);
                m.observe(t, &fb).expect("valid");
                decaying.observe(t, &fb).expect("valid");
                assert_distribution(&m);
                assert_eq!(m.exploration(), Some(eps), "{rule:?} step {t}");
            }
            // The rewards do not depend on ε (paper and reference-code importance weights use
            // π, so compare only the rule without them) ...
            if rule == OdmRule::ReferenceCode {
                assert_eq!(m.rewards(), decaying.rewards());
                // ... and the policy is (1 − Kε) R_i / Σ R + ε: recompute it by hand.
                let r = m.rewards();
                let sum: f64 = r.iter().sum();
                for (w, ri) in m.weights().iter().zip(&r) {
                    let expected = (1.0 - k as f64 * eps) * ri / sum + eps;
                    assert!((w - expected).abs() < 1e-12, "{w} vs {expected}");
                }
            }
            if eps == 0.25 {
                // ε = 1/K is all exploration: uniform whatever the rewards.
                assert!(m.weights().iter().all(|w| (w - 0.25).abs() < 1e-15));
            }
        }
        // ε = 0 still learns (the temperature keeps decaying): the policy is not uniform.
        let mut m = fixed(rule, 0.0).expect("valid");
        for t in 1..=50 {
            let mut fb = StepFeedback::new(k);
            fb.add_loss((t % 4) as usize, 1.0 + 3.0 * (t % 4) as f64, 1, 1);
            m.observe(t, &fb).expect("valid");
        }
        let w = m.weights();
        assert!(w[3] > w[0] + 0.01, "{rule:?} learned nothing: {w:?}");
    }
    let too_big = fixed(OdmRule::Paper, 0.3).expect_err("above 1/K");
    assert!(
        too_big.to_string().contains("exploration = 0.3"),
        "{too_big}"
    );
    let parse = |text: &str| parse_config::<OdmConfig>(&toml::from_str(text).expect("TOML"));
    assert!(parse("exploration = -0.1").is_err());
    assert_eq!(
        parse("exploration = 0.05").expect("valid").exploration,
        Some(0.05)
    );
}
