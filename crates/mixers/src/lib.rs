//! mixlab-mixers: the built-in mixer registry, one line per mixer. A new mixer crate adds its
//! line here (see docs/adding-a-mixer.md); configs then name it with `kind = "..."`, in the
//! `experiments` command line and in the Python package alike.

use mixlab_mixer_ado::AdoConfig;
use mixlab_mixer_aioli::AioliConfig;
use mixlab_mixer_doremi::DoremiConfig;
use mixlab_mixer_odm::OdmConfig;
use mixlab_mixing::{MixerEntry, MixerRegistry, StaticConfig};

/// Every built-in mixer, in the order `list-mixers` prints them.
pub fn registry() -> MixerRegistry {
    let mut registry = MixerRegistry::new();
    for entry in [
        MixerEntry::of::<StaticConfig>(),
        MixerEntry::of::<OdmConfig>(),
        MixerEntry::of::<DoremiConfig>(),
        MixerEntry::of::<AdoConfig>(),
        MixerEntry::of::<AioliConfig>(),
    ] {
        // Kinds are distinct by construction, which the test below checks; a clash is a bug
        // in this list, not an input error.
        registry
            .register(entry)
            .expect("built-in mixer kinds are distinct");
    }
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds() {
        assert_eq!(
            registry().kinds(),
            ["static", "odm", "doremi", "ado", "aioli"]
        );
    }
}
