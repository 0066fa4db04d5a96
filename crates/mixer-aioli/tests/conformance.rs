//! Aioli against mixlab-mixing's conformance kit (6 domains, 40 steps, scripted validation
//! losses whenever the mixer asks, the last domain without validation data), with rounds short
//! enough that the kit's run completes several.

use mixlab_mixer_aioli::AioliConfig;
use mixlab_mixing::testing::assert_conforms;

/// Rounds of 9 steps: 6 one-step probes, then 3 steps on the learned mixture.
#[test]
fn the_script_rules_conform() {
    assert_conforms::<AioliConfig>(
        "kind = \"aioli\"\nupdate_steps = 9\nlp_rounds = 1\nlp_steps = 1\none_hot_factor = 0.5",
    );
}

/// A prior phase, one-hot probes in two sweeps, the cumulative update without normalisation.
#[test]
fn the_multiplicative_rule_after_a_prior_conforms() {
    assert_conforms::<AioliConfig>(
        "prior = { temperature = 1.0 }\nprior_steps = 5\nupdate_steps = 14\nlp_rounds = 2\n\
         lp_steps = 1\none_hot_factor = 1.0\nupdate = \"multiplicative\"\nnormalize = false\n\
         eta = 3.0\nstart_from_prior = true\nseed = 9",
    );
}

/// The diagonal estimate with two-step probes.
#[test]
fn the_diagonal_estimate_conforms() {
    assert_conforms::<AioliConfig>(
        "update_steps = 13\nlp_steps = 2\nlp_rounds = 1\none_hot_factor = 0.6\ndiagonal = true\n\
         ema = 0.5",
    );
}
