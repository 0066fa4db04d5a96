//! The mixers this binary knows: mixlab-mixers' built-in registry (one line per mixer there).

/// Every built-in mixer, in the order `list-mixers` prints them.
pub fn registry() -> mixlab_mixing::MixerRegistry {
    mixlab_mixers::registry()
}
