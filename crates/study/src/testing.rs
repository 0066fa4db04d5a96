//! What the tests share.

use mixlab_mixer_ado::AdoConfig;
use mixlab_mixer_aioli::AioliConfig;
use mixlab_mixer_doremi::DoremiConfig;
use mixlab_mixer_odm::OdmConfig;
use mixlab_mixing::{MixerEntry, MixerRegistry, StaticConfig};

/// The mixers the paper's methods use (the command line registers the same and any others).
pub fn mixers() -> MixerRegistry {
    let mut registry = MixerRegistry::new();
    for entry in [
        MixerEntry::of::<StaticConfig>(),
        MixerEntry::of::<OdmConfig>(),
        MixerEntry::of::<DoremiConfig>(),
        MixerEntry::of::<AdoConfig>(),
        MixerEntry::of::<AioliConfig>(),
    ] {
        registry.register(entry).expect("distinct kinds");
    }
    registry
}
