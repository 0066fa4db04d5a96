//! ODM against mixlab-mixing's conformance kit, under each of its update rules and options.

use mixlab_mixer_odm::OdmConfig;
use mixlab_mixing::testing::assert_conforms;

#[test]
fn the_paper_rule_conforms() {
    assert_conforms::<OdmConfig>(
        "kind = \"odm\"\nrule = \"paper\"\nwarmup_steps = 4\ninitial_weights = \"tpw\"\nrenormalize = true",
    );
}

#[test]
fn the_reference_code_rule_conforms() {
    assert_conforms::<OdmConfig>("rule = \"reference-code\"\nwarmup_steps = 2\nrenormalize = true");
}

#[test]
fn exp3_conforms() {
    assert_conforms::<OdmConfig>("rule = \"exp3\"\ninitial_weights = \"uniform\"");
}

#[test]
fn a_fixed_exploration_rate_and_mean_losses_conform() {
    assert_conforms::<OdmConfig>(
        "rule = \"paper\"\nexploration = 0.05\nloss_aggregation = \"mean\"\nalpha = 0.5\n\
         initial_weights = \"uniform\"",
    );
}
