//! What the tests share.

use mixlab_mixing::MixerRegistry;

/// The mixers the paper's methods use: the built-in registry the command line uses too.
pub fn mixers() -> MixerRegistry {
    mixlab_mixers::registry()
}
