//! The ODM configuration: which update rule, its hyper-parameters and the warm-up.

use mixlab_mixing::{
    Mixer, MixerConfig, MixerContext, MixingError, NamedTable, ParamDoc, WeightSpec,
};
use serde::{Deserialize, Serialize};

use crate::{OdmError, OdmMixer};

/// The reward update and policy of ODM. The paper and the released code disagree
/// (odm-facts.md §1.1 vs §1.2), so all three are available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OdmRule {
    /// Algorithm 1 of the paper: R_i ← α R_i + (1 − α) L_i / π_i for drawn domains;
    /// π_t = (1 − K ε_t) softmax(ε_{t−1} R) + ε_t, recomputed every step. "Drawn" means
    /// `loss_count > 0`, so a drawn domain with loss exactly 0 is updated too (Algorithm 1's
    /// test L_i ≠ 0 stands for "was sampled").
    #[default]
    Paper,
    /// The released code's `SmoothedMeanWeightUpdater.group_update`:
    /// R_i ← α R_i + (1 − α) exp(mean loss_i) for drawn domains, no importance weighting,
    /// π = (1 − K ε_t) R_i / Σ_j R_j + ε_t, renormalised; updated at each step t > warm-up.
    ReferenceCode,
    /// The released code's classic `Exp3WeightUpdater`: cumulative R_i += (loss_i / scale) / π_i,
    /// π = (1 − K ε_t) softmax(ε_prev R) + ε_t, renormalised.
    Exp3,
}

impl OdmRule {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            OdmRule::Paper => "paper",
            OdmRule::ReferenceCode => "reference-code",
            OdmRule::Exp3 => "exp3",
        }
    }
}

/// How the losses of a domain's loss terms in one step become its reward input L_i.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossAggregation {
    /// The sum over the domain's micro-batches (Algorithm 1's L_{D_i} += L).
    Sum,
    /// The mean over the domain's micro-batches (the reference code, after its all-reduce).
    Mean,
}

/// Config of `kind = "odm"`.
///
/// ```toml
/// kind = "odm"
/// rule = "paper"            # or "reference-code", "exp3"
/// alpha = 0.9               # paper and reference-code
/// warmup_steps = 1000       # paper: 1% of steps; code scripts: 2000 of 100000
/// initial_weights = "tpw"
/// loss_aggregation = "sum"  # paper default; reference-code and exp3 default to "mean"
/// ```
///
/// Fields that depend on the rule are optional and filled in by [`MixerConfig::resolved`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdmConfig {
    /// The update rule: `paper` (Algorithm 1), `reference-code` (the released code) or `exp3`.
    #[serde(default)]
    pub rule: OdmRule,
    /// Smoothing factor α in [0, 1) of the moving-average reward (paper, reference-code); the
    /// paper gives no value, 0.9 is the reference code's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Steps t ≤ warmup_steps during which the policy stays at `initial_weights` and rewards
    /// are not updated.
    #[serde(default)]
    pub warmup_steps: u64,
    /// The warm-up policy (the paper initialises with The Pile weights, `"tpw"`).
    #[serde(default = "default_initial_weights")]
    pub initial_weights: WeightSpec,
    /// Drop `initial_weights` domains the dataset lacks and renormalise (logged).
    #[serde(default)]
    pub renormalize: bool,
    /// How a domain's micro-batch losses in a step become L_i: `sum` or `mean`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_aggregation: Option<LossAggregation>,
    /// exp3 only: the reward is loss / reward_scale (the code's "/10", which keeps the
    /// cumulative reward from exploding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_scale: Option<f64>,
    /// A fixed exploration rate ε in [0, 1/K] in place of the decaying ε_t (an ablation, see
    /// `ablate-exploration`). Only the uniform share K·ε changes: the softmax temperature of the
    /// paper and exp3 rules keeps the decaying ε_{t−1}, so ε = 0 still learns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<f64>,
}

fn default_initial_weights() -> WeightSpec {
    WeightSpec::Named(NamedTable::Tpw)
}

/// α when the config gives none: the reference code's `data_sampling_smoothing_factor` default.
pub const DEFAULT_ALPHA: f64 = 0.9;
/// exp3's reward scale when the config gives none: the code's `reward = reward/10`.
pub const DEFAULT_REWARD_SCALE: f64 = 10.0;

impl Default for OdmConfig {
    fn default() -> Self {
        Self::new(OdmRule::Paper)
    }
}

impl OdmConfig {
    /// The rule's defaults, resolved: α = 0.9, no warm-up, TPW initial weights, `sum` for the
    /// paper rule and `mean` for the code's rules, reward scale 10 for exp3.
    pub fn new(rule: OdmRule) -> Self {
        let unresolved = Self {
            rule,
            alpha: None,
            warmup_steps: 0,
            initial_weights: default_initial_weights(),
            renormalize: false,
            loss_aggregation: None,
            reward_scale: None,
            exploration: None,
        };
        unresolved.fill_defaults()
    }

    /// The same config with a warm-up of `steps` steps.
    pub fn with_warmup(mut self, steps: u64) -> Self {
        self.warmup_steps = steps;
        self
    }

    /// The same config with other initial weights.
    pub fn with_initial_weights(mut self, weights: WeightSpec) -> Self {
        self.initial_weights = weights;
        self
    }

    fn fill_defaults(mut self) -> Self {
        match self.rule {
            OdmRule::Paper => {
                self.alpha.get_or_insert(DEFAULT_ALPHA);
                self.loss_aggregation.get_or_insert(LossAggregation::Sum);
            }
            OdmRule::ReferenceCode => {
                self.alpha.get_or_insert(DEFAULT_ALPHA);
                self.loss_aggregation.get_or_insert(LossAggregation::Mean);
            }
            OdmRule::Exp3 => {
                self.loss_aggregation.get_or_insert(LossAggregation::Mean);
                self.reward_scale.get_or_insert(DEFAULT_REWARD_SCALE);
            }
        }
        self
    }

    /// Checks the values and fills the rule's defaults.
    pub fn validate(self) -> Result<Self, OdmError> {
        let rule = self.rule.name();
        match self.rule {
            OdmRule::Paper | OdmRule::ReferenceCode if self.reward_scale.is_some() => {
                return Err(OdmError::NotApplicable {
                    field: "reward_scale",
                    rule,
                });
            }
            OdmRule::Exp3 if self.alpha.is_some() => {
                return Err(OdmError::NotApplicable {
                    field: "alpha",
                    rule,
                });
            }
            _ => {}
        }
        if let Some(eps) = self.exploration
            && !(eps.is_finite() && eps >= 0.0)
        {
            return Err(OdmError::Exploration {
                value: eps,
                max: None,
            });
        }
        if let Some(alpha) = self.alpha
            && !(0.0..1.0).contains(&alpha)
        {
            return Err(OdmError::Alpha(alpha));
        }
        if let Some(scale) = self.reward_scale
            && !(scale.is_finite() && scale > 0.0)
        {
            return Err(OdmError::RewardScale(scale));
        }
        Ok(self.fill_defaults())
    }
}

impl MixerConfig for OdmConfig {
    const KIND: &'static str = "odm";
    const SUMMARY: &'static str = "Online Data Mixing (Albalak et al. 2023): EXP3 bandit over domains, rewarded by training loss";
    const PARAMS: &'static [ParamDoc] = &[
        ParamDoc {
            name: "rule",
            type_name: "paper | reference-code | exp3",
            default: "paper",
            doc: "paper: Algorithm 1 (importance-weighted smoothed loss, softmax with temperature ε_{t-1}); \
                  reference-code: the released SmoothedMeanWeightUpdater (smoothed exp(mean loss), linear \
                  normalisation); exp3: the released Exp3WeightUpdater (cumulative reward).",
        },
        ParamDoc {
            name: "alpha",
            type_name: "float in [0, 1)",
            default: "0.9 (paper, reference-code)",
            doc: "Smoothing factor of R_i <- alpha R_i + (1 - alpha) reward. The paper gives no value; 0.9 is \
                  the reference code's default (its scripts also ran 0.5). Not used by exp3.",
        },
        ParamDoc {
            name: "warmup_steps",
            type_name: "integer",
            default: "0",
            doc: "Steps t <= warmup_steps keep the policy at initial_weights without reward updates \
                  (paper: 1% of steps; the code's scripts: 2000 of 100000).",
        },
        ParamDoc {
            name: "initial_weights",
            type_name: "weight source (as in static)",
            default: "\"tpw\"",
            doc: "The warm-up policy; the paper initialises with The Pile weights.",
        },
        ParamDoc {
            name: "renormalize",
            type_name: "bool",
            default: "false",
            doc: "Drop initial_weights domains the dataset lacks and renormalise, with a log line.",
        },
        ParamDoc {
            name: "loss_aggregation",
            type_name: "sum | mean",
            default: "sum (paper), mean (reference-code, exp3)",
            doc: "How a domain's micro-batch losses in one step form L_i: Algorithm 1 sums them, the \
                  released code averages them.",
        },
        ParamDoc {
            name: "reward_scale",
            type_name: "float > 0",
            default: "10 (exp3 only)",
            doc: "exp3's reward is loss / reward_scale (the code's /10 keeps the cumulative reward from exploding).",
        },
        ParamDoc {
            name: "exploration",
            type_name: "float in [0, 1/K]",
            default: "absent: the decaying eps_t = min(1/K, sqrt(ln K / (K t)))",
            doc: "A fixed exploration rate (ablation): only the uniform share K eps changes; the softmax \
                  temperature keeps the decaying eps_{t-1}.",
        },
    ];

    fn resolved(self) -> mixlab_mixing::Result<Self> {
        Ok(self.validate()?)
    }

    fn build(&self, ctx: &MixerContext) -> mixlab_mixing::Result<Box<dyn Mixer>> {
        Ok(Box::new(OdmMixer::new(self.clone(), ctx)?))
    }
}

impl From<OdmError> for MixingError {
    fn from(e: OdmError) -> Self {
        MixingError::Mixer {
            kind: OdmConfig::KIND,
            cause: Box::new(e),
        }
    }
}
