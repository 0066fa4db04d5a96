//! The conformance kit every mixer is tested with (cargo feature `testing`).
//!
//! A mixer crate adds `mixlab-mixing = { workspace = true, features = ["testing"] }` to its
//! dev-dependencies and calls one function from a test, once per configuration worth checking:
//!
//! ```ignore
//! #[test]
//! fn conforms() {
//!     mixlab_mixing::testing::assert_conforms::<MyConfig>("kind = \"mine\"\nrate = 0.5");
//! }
//! ```
//!
//! [`assert_conforms`] builds the mixer over six Pile domains (with token counts and a vocabulary
//! size, so `tpw` tables and ln(V) initialisations resolve), drives it through a fixed script of
//! 40 steps of varied feedback (DoReMi-style excess losses too when the mixer asks for them), and
//! panics with the property that failed:
//!
//! 1. **documented**: every key of the resolved config is one of `PARAMS`, each with a type, a
//!    default and a sentence; no name twice;
//! 2. **bad configs name the field**: an unknown key, and a value of the wrong type for every key
//!    the config sets, are refused with the key in the message;
//! 3. **a distribution**: `weights()` and `policy()` are finite, non-negative and sum to 1 before the first step
//!    and after every step (`loss_weights()`, when given, finite, non-negative, not all 0);
//! 4. **resumable**: saving the state after step k (through its JSON text, as a checkpoint
//!    does), restoring it into a freshly built mixer and continuing gives bit-identical
//!    weights, loss weights and internals to never having stopped, for k = 1, 20 and 39;
//! 5. **refuses bad feedback unchanged**: a NaN loss is an error and leaves the weights and
//!    state as they were, and the same step then succeeds with valid feedback;
//! 6. **steps in order**: step 0 and a repeated step are errors;
//! 7. **state of one dataset**: a state does not restore into the mixer of other domains.
//!
//! A mixer that learns from validation losses (`needs_validation`) is handed scripted
//! per-domain losses whenever it asks (`wants_validation`), before step 1 and after steps, as
//! the trainer does; the checks above then cover that path too.

use crate::{
    DomainSet, Mixer, MixerConfig, MixerContext, PILE_DOMAINS, StepFeedback, parse_config,
};

/// Domains of the kit's dataset.
const DOMAINS: usize = 6;
/// Steps of the scripted run.
const STEPS: u64 = 40;
/// Steps after which the state is saved and restored.
const SPLITS: [u64; 3] = [1, 20, 39];

/// Runs every check of the module documentation on the mixer configured by `config_toml` (a
/// table as a user writes it under `[mixer]`, with or without `kind`), panicking with the
/// property that failed.
pub fn assert_conforms<C: MixerConfig>(config_toml: &str) {
    let table: toml::Table = toml::from_str(config_toml)
        .unwrap_or_else(|e| panic!("the config under test is not TOML: {e}"));
    let config: C =
        parse_config(&table).unwrap_or_else(|e| panic!("the config under test is refused: {e}"));
    check_documented::<C>(&config);
    check_unknown_key_is_named::<C>(&table);
    check_wrong_types_are_named::<C>(&table);

    let ctx = context(DOMAINS);
    // A freshly built mixer, with the validation before step 1 if it asks for one (as the
    // trainer gives it).
    let build = || {
        let mut mixer = config
            .build(&ctx)
            .unwrap_or_else(|e| panic!("{}: building the mixer failed: {e}", C::KIND));
        validate_if_wanted(mixer.as_mut(), 0)
            .unwrap_or_else(|e| panic!("{}: the validation before step 1 failed: {e}", C::KIND));
        mixer
    };
    let script = feedback_script(build().needs_reference_model());

    // 3: a distribution before the first step and after every step; the trajectory is the
    // reference for the resume checks.
    let mut whole = build();
    let mut trajectory = vec![Snapshot::of(whole.as_ref(), 0)];
    for (i, feedback) in script.iter().enumerate() {
        let step = i as u64 + 1;
        advance(whole.as_mut(), step, feedback)
            .unwrap_or_else(|e| panic!("{}: observe({step}) failed: {e}", C::KIND));
        trajectory.push(Snapshot::of(whole.as_ref(), step));
    }

    // 4: save, restore into a new mixer, continue.
    for split in SPLITS {
        let mut first = build();
        for step in 1..=split {
            advance(first.as_mut(), step, &script[step as usize - 1]).unwrap();
        }
        let text = serde_json::to_string(
            &first
                .state()
                .unwrap_or_else(|e| panic!("{}: state() after step {split} failed: {e}", C::KIND)),
        )
        .expect("a JSON value serialises");
        let state: serde_json::Value = serde_json::from_str(&text).expect("the text parses back");
        let mut resumed = build();
        resumed.restore_state(&state).unwrap_or_else(|e| {
            panic!(
                "{}: restoring its own state of step {split} failed: {e}",
                C::KIND
            )
        });
        assert_eq!(
            Snapshot::of(resumed.as_ref(), split),
            trajectory[split as usize],
            "{}: right after restoring the state of step {split}, the mixer differs from the one that saved it",
            C::KIND
        );
        for step in split + 1..=STEPS {
            advance(resumed.as_mut(), step, &script[step as usize - 1]).unwrap();
            assert_eq!(
                Snapshot::of(resumed.as_ref(), step),
                trajectory[step as usize],
                "{}: resumed after step {split}, step {step} differs from the uninterrupted run",
                C::KIND
            );
        }
    }

    // 5: bad feedback changes nothing.
    let mut mixer = build();
    for step in 1..=3 {
        advance(mixer.as_mut(), step, &script[step as usize - 1]).unwrap();
    }
    let before = mixer.state().unwrap();
    let mut bad = script[3].clone();
    let drawn = (0..DOMAINS)
        .find(|&d| bad.domains()[d].drawn())
        .expect("every scripted step draws a domain");
    bad.domains_mut()[drawn].loss_sum = f64::NAN;
    assert!(
        mixer.observe(4, &bad).is_err(),
        "{}: a NaN loss was accepted",
        C::KIND
    );
    assert_eq!(
        mixer.state().unwrap(),
        before,
        "{}: a refused observe changed the state",
        C::KIND
    );
    assert_eq!(
        Snapshot::of(mixer.as_ref(), 3),
        trajectory[3],
        "{}: a refused observe changed the weights",
        C::KIND
    );
    advance(mixer.as_mut(), 4, &script[3]).unwrap_or_else(|e| {
        panic!(
            "{}: after a refused observe, the same step with valid feedback failed: {e}",
            C::KIND
        )
    });

    // 6: steps count from 1 and strictly increase.
    let mut mixer = build();
    assert!(
        mixer.observe(0, &script[0]).is_err(),
        "{}: step 0 was accepted",
        C::KIND
    );
    mixer.observe(1, &script[0]).unwrap();
    assert!(
        mixer.observe(1, &script[1]).is_err(),
        "{}: step 1 was accepted twice",
        C::KIND
    );

    // 7: a state belongs to its domains.
    let other_ctx = context(DOMAINS - 1);
    let mut other = config
        .build(&other_ctx)
        .unwrap_or_else(|e| panic!("{}: building over 5 domains failed: {e}", C::KIND));
    assert!(
        other.restore_state(&whole.state().unwrap()).is_err(),
        "{}: a state of 6 domains was restored into a mixer of 5",
        C::KIND
    );
}

/// Everything a step's observer can see of a mixer, compared bit for bit.
#[derive(Debug, PartialEq)]
struct Snapshot {
    step: u64,
    weights: Vec<u64>,
    loss_weights: Option<Vec<u64>>,
    internals: String,
}

impl Snapshot {
    fn of(mixer: &dyn Mixer, step: u64) -> Snapshot {
        let kind = mixer.kind();
        let weights = mixer.weights();
        check_simplex(kind, "weights()", weights, step);
        check_simplex(kind, "policy()", mixer.policy(), step);
        let loss_weights = mixer.loss_weights();
        if let Some(lw) = loss_weights {
            // Multipliers, not a distribution: the trainer divides by their sum over a batch.
            assert_eq!(
                lw.len(),
                DOMAINS,
                "{kind}: loss_weights() after step {step}: length"
            );
            assert!(
                lw.iter().all(|w| w.is_finite() && *w >= 0.0) && lw.iter().any(|w| *w > 0.0),
                "{kind}: loss_weights() after step {step} are not finite, non-negative and not all 0: {lw:?}"
            );
        }
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        Snapshot {
            step,
            weights: bits(weights),
            loss_weights: loss_weights.map(bits),
            internals: serde_json::Value::Object(mixer.internals()).to_string(),
        }
    }
}

fn check_simplex(kind: &str, what: &str, values: &[f64], step: u64) {
    assert_eq!(
        values.len(),
        DOMAINS,
        "{kind}: {what} after step {step} has {} entries for {DOMAINS} domains",
        values.len()
    );
    for (i, &v) in values.iter().enumerate() {
        assert!(
            v.is_finite() && v >= 0.0,
            "{kind}: {what} after step {step}: domain {i} has {v}"
        );
    }
    let sum: f64 = values.iter().sum();
    assert!(
        (sum - 1.0).abs() <= 1e-9,
        "{kind}: {what} after step {step} sums to {sum}"
    );
}

fn check_documented<C: MixerConfig>(config: &C) {
    let kind = C::KIND;
    let mut seen = std::collections::BTreeSet::new();
    for param in C::PARAMS {
        assert!(
            seen.insert(param.name),
            "{kind}: parameter `{}` is documented twice",
            param.name
        );
        for (what, text) in [
            ("type", param.type_name),
            ("default", param.default),
            ("doc", param.doc),
        ] {
            assert!(
                !text.trim().is_empty(),
                "{kind}: parameter `{}` has no {what}",
                param.name
            );
        }
    }
    let value = toml::Value::try_from(config)
        .unwrap_or_else(|e| panic!("{kind}: the resolved config does not serialise: {e}"));
    let toml::Value::Table(table) = value else {
        panic!("{kind}: the config serialises to {value}, not a table");
    };
    for key in table.keys() {
        assert!(
            seen.contains(key.as_str()),
            "{kind}: config key `{key}` is missing from PARAMS (list-mixers would not show it)"
        );
    }
}

/// For every key the user's table sets, a value of a type no parameter takes (a nested empty
/// array) is refused with the key in the message.
fn check_wrong_types_are_named<C: MixerConfig>(table: &toml::Table) {
    for key in table.keys().filter(|k| k.as_str() != "kind") {
        let mut bad = table.clone();
        bad.insert(
            key.clone(),
            toml::Value::Array(vec![toml::Value::Array(Vec::new())]),
        );
        match parse_config::<C>(&bad) {
            Ok(_) => panic!("{}: `{key} = [[]]` was accepted", C::KIND),
            Err(e) => assert!(
                e.to_string().contains(&format!("`{key}")),
                "{}: the error for `{key} = [[]]` does not name the key: {e}",
                C::KIND
            ),
        }
    }
}

fn check_unknown_key_is_named<C: MixerConfig>(table: &toml::Table) {
    let mut bad = table.clone();
    bad.insert("not_a_parameter".to_owned(), toml::Value::Float(0.5));
    match parse_config::<C>(&bad) {
        Ok(_) => panic!(
            "{}: an unknown key `not_a_parameter` was accepted (add #[serde(deny_unknown_fields)])",
            C::KIND
        ),
        Err(e) => assert!(
            e.to_string().contains("not_a_parameter"),
            "{}: the error for an unknown key does not name it: {e}",
            C::KIND
        ),
    }
}

/// Observes `step` and, for a mixer that learns from validation, hands it the validation
/// losses it asks for after the step ([`scripted_validation`]).
fn advance(mixer: &mut dyn Mixer, step: u64, feedback: &StepFeedback) -> crate::Result<()> {
    mixer.observe(step, feedback)?;
    validate_if_wanted(mixer, step)
}

/// Hands the mixer the scripted validation losses after `step` if it asks for them.
fn validate_if_wanted(mixer: &mut dyn Mixer, step: u64) -> crate::Result<()> {
    if mixer.needs_validation() && mixer.wants_validation(step) {
        mixer.observe_validation(step, &scripted_validation(step))?;
    }
    Ok(())
}

/// Validation losses that fall over the run and differ by domain; the last domain has no
/// validation data.
fn scripted_validation(step: u64) -> Vec<Option<f64>> {
    (0..DOMAINS)
        .map(|d| (d + 1 < DOMAINS).then(|| 2.0 + 0.5 * d as f64 + 4.0 / (1.0 + step as f64 / 8.0)))
        .collect()
}

/// The kit's dataset: the first `k` Pile domains, with uneven token counts and GPT-NeoX's
/// vocabulary size.
fn context(k: usize) -> MixerContext {
    let domains = DomainSet::new(PILE_DOMAINS[..k].iter().copied()).expect("distinct names");
    let mut ctx = MixerContext::new(domains);
    ctx.token_counts = Some(
        (0..k as u64)
            .map(|i| 1_000_000 * (i + 1) * (i + 2))
            .collect(),
    );
    ctx.vocab_size = Some(50_277);
    ctx
}

/// A fixed script of varied feedback: every step draws two to four micro-batches from a
/// pseudo-random choice of domains, with losses that fall over the run and differ by domain
/// (and excess losses against a reference model, for mixers that need them).
fn feedback_script(with_excess: bool) -> Vec<StepFeedback> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    (1..=STEPS)
        .map(|step| {
            let mut feedback = StepFeedback::new(DOMAINS);
            let micro_batches = 2 + next() % 3;
            for _ in 0..micro_batches {
                let d = (next() % DOMAINS as u64) as usize;
                let jitter = (next() % 1000) as f64 / 1000.0;
                let loss = 1.0 + d as f64 * 0.7 + 6.0 / (1.0 + step as f64 / 10.0) + jitter;
                feedback.add_loss(d, loss, 4, 512);
                if with_excess {
                    // Some domains' proxies are behind the reference (positive excess), one
                    // is ahead (clipped to 0).
                    let excess = if d == 0 {
                        0.0
                    } else {
                        jitter * d as f64 * 512.0
                    };
                    feedback.add_excess_loss(d, excess, 512);
                }
            }
            feedback
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticConfig;

    #[test]
    fn static_mixers_conform() {
        assert_conforms::<StaticConfig>("kind = \"static\"\nweights = \"uniform\"");
        assert_conforms::<StaticConfig>("weights = \"tpw\"\nrenormalize = true");
        assert_conforms::<StaticConfig>("weights = { temperature = 3.0 }");
    }

    #[test]
    fn the_script_is_fixed_and_draws_every_step() {
        let a = feedback_script(true);
        let b = feedback_script(true);
        assert_eq!(a.len(), STEPS as usize);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.domains(), y.domains());
            assert!(x.domains().iter().any(|d| d.drawn()));
        }
        assert!(
            feedback_script(false)[0]
                .domains()
                .iter()
                .all(|d| d.excess_tokens == 0)
        );
    }
}
