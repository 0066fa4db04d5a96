//! ADO against mixlab-mixing's conformance kit (6 domains, 40 steps), with its schedule
//! shortened so that the kit's run fits the laws three times, in both count modes.

use mixlab_mixer_ado::AdoConfig;
use mixlab_mixing::testing::assert_conforms;

#[test]
fn the_shared_count_conforms() {
    assert_conforms::<AdoConfig>(
        "kind = \"ado\"\nignore_steps = 2\nstart_step = 10\nupdate_interval = 10\n\
         smoothing_window = 5\nfit_stride = 1",
    );
}

#[test]
fn the_domain_count_with_the_token_prior_conforms() {
    assert_conforms::<AdoConfig>(
        "count = \"domain\"\nprior = { temperature = 1.0 }\nignore_steps = 0\nstart_step = 6\n\
         update_interval = 3\nsmoothing_window = 3\nsmoothing_order = 1\nfit_stride = 2\n\
         history_decay = 0.5\npolicy_smoothing = 0.0\nmin_probability = 0.1",
    );
}
