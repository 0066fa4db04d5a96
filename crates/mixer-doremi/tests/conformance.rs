//! DoReMi against mixlab-mixing's conformance kit.

use mixlab_mixer_doremi::DoremiConfig;
use mixlab_mixing::testing::assert_conforms;

#[test]
fn doremi_conforms() {
    assert_conforms::<DoremiConfig>("kind = \"doremi\"");
}

#[test]
fn doremi_with_tpw_sampling_conforms() {
    assert_conforms::<DoremiConfig>(
        "eta = 0.5\nsmoothing = 0.01\nsampling_weights = \"tpw\"\nrenormalize = true\naverage = \"paper\"",
    );
}
