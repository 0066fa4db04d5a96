//! The run seed split into named streams, shared by mixlab's trainer and the Python package's
//! data stream, so both draw the same data in the same order from the same seed.

use crate::hash::splitmix64 as mix;

/// Named random streams split from the run's seed, so that changing one consumer (say, the
/// model size, which draws more init numbers) never shifts the data order or the batch plans.
#[derive(Debug, Clone, Copy)]
pub struct SeedStreams {
    /// Model initialisation.
    pub init: u64,
    /// Per-domain data order.
    pub data: u64,
    /// Batch plans (which domain each micro-batch or sequence comes from).
    pub plan: u64,
}

impl SeedStreams {
    /// The streams of `seed`.
    pub fn new(seed: u64) -> Self {
        SeedStreams {
            init: mix(seed ^ 0x1111),
            data: mix(seed ^ 0x2222),
            plan: mix(seed ^ 0x3333),
        }
    }
}
