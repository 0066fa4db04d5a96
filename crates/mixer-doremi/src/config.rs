//! The DoReMi configuration.

use mixlab_mixing::{Mixer, MixerConfig, MixerContext, MixingError, ParamDoc, WeightSpec};
use serde::{Deserialize, Serialize};

use crate::{DoremiError, DoremiMixer};

/// η when the config gives none: `--reweight_eta 1.0` of `scripts/runs/run_pile_doremi120M.sh`.
pub const DEFAULT_ETA: f64 = 1.0;
/// c when the config gives none: `--reweight_eps 1e-3` of the same script.
pub const DEFAULT_SMOOTHING: f64 = 1e-3;

/// Config of `kind = "doremi"`.
///
/// ```toml
/// kind = "doremi"
/// eta = 1.0
/// smoothing = 1e-3
/// sampling_weights = "uniform"
/// average = "code"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoremiConfig {
    /// η, the step size of the exponentiated-gradient update (repo run script: 1.0).
    #[serde(default = "default_eta")]
    pub eta: f64,
    /// c, the mixing with uniform in α = (1 − c) softmax(·) + c/K (run script 1e-3; the repo's
    /// `training_args.py` default is 1e-4).
    #[serde(default = "default_smoothing")]
    pub smoothing: f64,
    /// The proxy's fixed sampling weights, also the initial domain weights α_0 (the repo's
    /// 120M run: uniform).
    #[serde(default = "default_sampling")]
    pub sampling_weights: WeightSpec,
    /// Drop `sampling_weights` domains the dataset lacks and renormalise (logged).
    #[serde(default)]
    pub renormalize: bool,
    /// λ of a domain before it first appears; default ln(vocabulary size), as the repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_excess_loss: Option<f64>,
    /// Which running average of α is DoReMi's output: the reference code's (α_0 … α_T) or the
    /// paper's formula (α_1 … α_T).
    #[serde(default)]
    pub average: Average,
}

/// The two definitions of DoReMi's output weights ᾱ after T updates.
///
/// The published domain weights came from the reference code, so it is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Average {
    /// ᾱ = (α_0 + α_1 + … + α_T) / (T + 1): `train.py` registers `avg_domain_weights = α_0`
    /// with `update_counter = 1`, and `DoReMiTrainer.write_weights` increments the counter
    /// before `avg = (avg · (n − 1) + α) / n`, so α_0 stays in the average.
    #[default]
    Code,
    /// ᾱ = (α_1 + … + α_T) / T: Algorithm 1 of the DoReMi paper, which averages the updated
    /// weights only (before the first update ᾱ = α_0).
    Paper,
}

fn default_eta() -> f64 {
    DEFAULT_ETA
}

fn default_smoothing() -> f64 {
    DEFAULT_SMOOTHING
}

fn default_sampling() -> WeightSpec {
    WeightSpec::Uniform
}

impl Default for DoremiConfig {
    fn default() -> Self {
        Self {
            eta: DEFAULT_ETA,
            smoothing: DEFAULT_SMOOTHING,
            sampling_weights: default_sampling(),
            renormalize: false,
            initial_excess_loss: None,
            average: Average::Code,
        }
    }
}

impl DoremiConfig {
    /// Checks the values.
    pub fn validate(self) -> Result<Self, DoremiError> {
        if !(self.eta.is_finite() && self.eta > 0.0) {
            return Err(DoremiError::Eta(self.eta));
        }
        if !(0.0..=1.0).contains(&self.smoothing) {
            return Err(DoremiError::Smoothing(self.smoothing));
        }
        if let Some(l) = self.initial_excess_loss
            && !(l.is_finite() && l >= 0.0)
        {
            return Err(DoremiError::InitialExcessLoss(l));
        }
        Ok(self)
    }
}

impl From<DoremiError> for MixingError {
    fn from(e: DoremiError) -> Self {
        MixingError::Mixer {
            kind: DoremiConfig::KIND,
            cause: Box::new(e),
        }
    }
}

impl MixerConfig for DoremiConfig {
    const KIND: &'static str = "doremi";
    const SUMMARY: &'static str = "DoReMi (Xie et al. 2023) proxy: Group-DRO domain weights from excess loss over a reference model; \
         outputs their average";
    const PARAMS: &'static [ParamDoc] = &[
        ParamDoc {
            name: "eta",
            type_name: "float > 0",
            default: "1.0",
            doc: "Step size η of log α <- log α + η λ (the repository's run script; the README calls 1 the paper's setting).",
        },
        ParamDoc {
            name: "smoothing",
            type_name: "float in [0, 1]",
            default: "0.001",
            doc: "c in α = (1 - c) softmax + c/K, so every domain keeps at least c/K (run script 1e-3; \
                  training_args.py default 1e-4).",
        },
        ParamDoc {
            name: "sampling_weights",
            type_name: "weight source (as in static)",
            default: "\"uniform\"",
            doc: "The proxy's fixed sampling distribution and initial α (the repo's 120M run samples uniformly); \
                  every weight must be > 0.",
        },
        ParamDoc {
            name: "renormalize",
            type_name: "bool",
            default: "false",
            doc: "Drop sampling_weights domains the dataset lacks and renormalise, with a log line.",
        },
        ParamDoc {
            name: "initial_excess_loss",
            type_name: "float >= 0",
            default: "ln(vocabulary size)",
            doc: "Excess loss λ of a domain before it first appears in a step, as the repo initialises it.",
        },
        ParamDoc {
            name: "average",
            type_name: "\"code\" or \"paper\"",
            default: "\"code\"",
            doc: "The output weights: \"code\" averages α_0 … α_T as the reference code (train.py + write_weights), \
                  which produced the published tables; \"paper\" averages α_1 … α_T as Algorithm 1 of the paper.",
        },
    ];

    fn resolved(self) -> mixlab_mixing::Result<Self> {
        Ok(self.validate()?)
    }

    fn build(&self, ctx: &MixerContext) -> mixlab_mixing::Result<Box<dyn Mixer>> {
        Ok(Box::new(DoremiMixer::new(self.clone(), ctx)?))
    }
}
