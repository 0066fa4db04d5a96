//! mixlab-mixer-odm: Online Data Mixing (Albalak, Pan, Raffel, Wang 2023) as a [`Mixer`].
//!
//! Each domain is an arm of an adversarial multi-armed bandit (EXP3 with the decaying
//! exploration rate ε_t = min(1/K, sqrt(ln K / (K t))) of Seldin et al. 2013), rewarded by the
//! training loss of the micro-batches drawn from it. The paper's Algorithm 1 and the released
//! code differ (odm-facts.md §1.1–§1.2), so [`OdmRule`] offers both, plus the code's classic
//! EXP3:
//!
//! | rule | reward update (drawn domains) | policy |
//! |---|---|---|
//! | `paper` | R ← αR + (1−α) L/π | (1 − Kε_t) softmax(ε_{t−1} R) + ε_t |
//! | `reference-code` | R ← αR + (1−α) exp(mean loss) | (1 − Kε_t) R/ΣR + ε_t, renormalised |
//! | `exp3` | R ← R + (loss/10)/π | (1 − Kε_t) softmax(ε_prev R) + ε_t, renormalised |
//!
//! α defaults to 0.9: the paper gives no value and 0.9 is the code's default. Softmaxes are
//! computed with the maximum subtracted and the reference-code reward is kept in log space, so
//! no finite loss overflows. One `observe` costs O(K) and allocates nothing.
//!
//! [`Mixer`]: mixlab_mixing::Mixer

mod config;
mod error;
mod mixer;

pub use config::{DEFAULT_ALPHA, DEFAULT_REWARD_SCALE, LossAggregation, OdmConfig, OdmRule};
pub use error::{OdmError, Result};
pub use mixer::{OdmMixer, exploration_rate};
