//! The ADO configuration. Every default is the reference code's (yidingjiang/ado at bc3d8d0:
//! `src/data_selectors/ado.py`, `configs/loader/pile_ado.yaml`); the step counts are those of
//! its 60,000-step runs and want scaling for shorter ones (see `reproduce`'s `ado` method).

use mixlab_mixing::{Mixer, MixerConfig, MixerContext, MixingError, ParamDoc, WeightSpec};
use serde::{Deserialize, Serialize};

use crate::{AdoError, AdoMixer};

/// What the scaling law's `n` counts for domain k (the x-axis of its fit and the denominator
/// of its slope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountMode {
    /// Every domain's `n` is the number of sequences the whole run has trained on (the
    /// reference code's default, `use_same_step_size = True`): the law is fitted against
    /// training progress, and `n` cancels from the normalised policy.
    #[default]
    Shared,
    /// `n_k` is the number of sequences drawn from domain k (the paper's L_k(n_k), and the
    /// code's `use_same_step_size = False`). Points of the fit where a domain has not been drawn
    /// yet are left out, and the slope uses at least one sequence, so nothing divides by zero.
    Domain,
}

impl CountMode {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            CountMode::Shared => "shared",
            CountMode::Domain => "domain",
        }
    }
}

/// Config of `kind = "ado"`.
///
/// ```toml
/// kind = "ado"
/// prior = { temperature = 1.0 }   # the "natural" (token-proportional) mixture
/// ignore_steps = 1000
/// start_step = 1000
/// update_interval = 1000
/// count = "shared"                # or "domain" (the paper's per-domain n)
/// ```
///
/// Steps here are the reference code's iterations, which count from 0: mixlab's step t is the
/// code's iteration t − 1, so `start_step = 1000` first changes the policy after mixlab's step
/// 1001, exactly when the code does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoConfig {
    /// The prior μ that multiplies every domain's predicted learning speed, and the policy until
    /// the first fit (the code's `empirical_dist`: token counts with `mode = "empirical"`, its
    /// default, or ones with `mode = "uniform"`).
    #[serde(default = "default_prior")]
    pub prior: WeightSpec,
    /// Drop `prior` domains the dataset lacks and renormalise (logged).
    #[serde(default)]
    pub renormalize: bool,
    /// History rows before this iteration are left out of every fit (the code's `ignore_steps`:
    /// 1000 in `pile_ado.yaml`; the loader's signature says 2400).
    #[serde(default = "default_1000")]
    pub ignore_steps: u64,
    /// The first iteration at which the scaling laws are fitted and the policy adapts
    /// (`start_step`: 1000 in `pile_ado.yaml`, 500 in the 124M experiment).
    #[serde(default = "default_1000")]
    pub start_step: u64,
    /// The laws are refitted at iterations that are multiples of this, from `start_step` on; the
    /// policy is recomputed every step from the latest fit (the code's `update_interval`).
    #[serde(default = "default_1000")]
    pub update_interval: u64,
    /// What `n` counts: `shared` (the code's default) or `domain` (the paper).
    #[serde(default)]
    pub count: CountMode,
    /// γ of the history prior h ← γ h + (1 − γ) (this step's share of sequences) (code: 0.9).
    #[serde(default = "default_0_9")]
    pub history_decay: f64,
    /// s of the policy π = s π̄ + (1 − s) ρ, π̄ the running mean of ρ (code: 0.9).
    #[serde(default = "default_0_9")]
    pub policy_smoothing: f64,
    /// Floor of the instantaneous distribution ρ before smoothing (`clip_min_probability`, code:
    /// 0.01); `min_probability` x domains must be at most 1.
    #[serde(default = "default_min_probability")]
    pub min_probability: f64,
    /// The law's exponent α_k used in the slope is at least this (code: 0.05); the fitted α_k
    /// itself is kept for the predicted loss.
    #[serde(default = "default_exponent_floor")]
    pub exponent_floor: f64,
    /// Window of the Savitzky-Golay filter that smooths each domain's training loss before a
    /// fit (code: 101 steps; odd).
    #[serde(default = "default_window")]
    pub smoothing_window: u64,
    /// Polynomial order of that filter (code: 3; below `smoothing_window`).
    #[serde(default = "default_order")]
    pub smoothing_order: u64,
    /// A fit uses every this-many-th history row from `ignore_steps` on (code: 10).
    #[serde(default = "default_stride")]
    pub fit_stride: u64,
}

fn default_prior() -> WeightSpec {
    WeightSpec::Temperature(1.0)
}
fn default_1000() -> u64 {
    1000
}
fn default_0_9() -> f64 {
    0.9
}
fn default_min_probability() -> f64 {
    0.01
}
fn default_exponent_floor() -> f64 {
    0.05
}
fn default_window() -> u64 {
    101
}
fn default_order() -> u64 {
    3
}
fn default_stride() -> u64 {
    10
}

/// A fit needs at least one point. The reference's own schedule (ignore_steps = start_step =
/// update_interval = 1000) fits its first laws to a single point, an underdetermined fit that
/// mixlab reproduces rather than refuses; only a fit on no data at all is refused.
pub const MIN_FIT_POINTS: u64 = 1;

impl Default for AdoConfig {
    fn default() -> Self {
        Self {
            prior: default_prior(),
            renormalize: false,
            ignore_steps: 1000,
            start_step: 1000,
            update_interval: 1000,
            count: CountMode::Shared,
            history_decay: 0.9,
            policy_smoothing: 0.9,
            min_probability: 0.01,
            exponent_floor: 0.05,
            smoothing_window: 101,
            smoothing_order: 3,
            fit_stride: 10,
        }
    }
}

impl AdoConfig {
    /// The reference code's iteration of the first fit: the first multiple of
    /// `update_interval` at or after `start_step`.
    pub fn first_fit_step(&self) -> u64 {
        self.start_step.div_ceil(self.update_interval) * self.update_interval
    }

    /// Whether the code refits the laws after its iteration `itr`.
    pub fn fits_at(&self, itr: u64) -> bool {
        itr >= self.start_step && itr.is_multiple_of(self.update_interval)
    }

    /// Number of points a fit over `rows` history rows uses.
    pub fn fit_points(&self, rows: u64) -> u64 {
        rows.saturating_sub(self.ignore_steps)
            .div_ceil(self.fit_stride)
    }

    /// Checks every value, naming the field.
    pub fn validate(self) -> Result<Self, AdoError> {
        let range = |field: &'static str, value: f64, ok: bool, expected: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(AdoError::OutOfRange {
                    field,
                    value,
                    expected,
                })
            }
        };
        let unit = |x: f64| (0.0..1.0).contains(&x);
        range(
            "history_decay",
            self.history_decay,
            unit(self.history_decay),
            "must be in [0, 1)",
        )?;
        range(
            "policy_smoothing",
            self.policy_smoothing,
            unit(self.policy_smoothing),
            "must be in [0, 1)",
        )?;
        range(
            "min_probability",
            self.min_probability,
            unit(self.min_probability),
            "must be in [0, 1)",
        )?;
        range(
            "exponent_floor",
            self.exponent_floor,
            self.exponent_floor.is_finite() && self.exponent_floor >= 0.0,
            "must be finite and >= 0",
        )?;
        range(
            "update_interval",
            self.update_interval as f64,
            self.update_interval >= 1,
            "must be at least 1",
        )?;
        range(
            "fit_stride",
            self.fit_stride as f64,
            self.fit_stride >= 1,
            "must be at least 1",
        )?;
        range(
            "smoothing_window",
            self.smoothing_window as f64,
            !self.smoothing_window.is_multiple_of(2),
            "must be odd (the filter is centred)",
        )?;
        range(
            "smoothing_order",
            self.smoothing_order as f64,
            self.smoothing_order < self.smoothing_window,
            "must be below smoothing_window",
        )?;
        // The reference code would smooth a history shorter than the window (scipy refuses) or
        // fit a law to no data at all (jaxopt returns whatever its start points give): refuse
        // such a schedule up front instead.
        let fit_step = self.first_fit_step();
        let rows = fit_step + 1;
        let too_early = |why: String| AdoError::FirstFitTooEarly {
            start_step: self.start_step,
            update_interval: self.update_interval,
            fit_step,
            rows,
            why,
        };
        if rows < self.smoothing_window {
            return Err(too_early(format!(
                "fewer than smoothing_window = {}; raise start_step or lower smoothing_window",
                self.smoothing_window
            )));
        }
        let points = self.fit_points(rows);
        if points < MIN_FIT_POINTS {
            return Err(too_early(format!(
                "after ignore_steps = {} and every fit_stride = {}-th row that leaves {points} \
                 points, nothing to fit",
                self.ignore_steps, self.fit_stride
            )));
        }
        Ok(self)
    }
}

impl MixerConfig for AdoConfig {
    const KIND: &'static str = "ado";
    const SUMMARY: &'static str = "Adaptive Data Optimization (Jiang et al. 2025): per-domain scaling laws of the training loss steer sampling to the domains learning fastest";
    const PARAMS: &'static [ParamDoc] = &[
        ParamDoc {
            name: "prior",
            type_name: "weight source (as in static)",
            default: "{ temperature = 1.0 } (token-proportional)",
            doc: "The prior mu multiplying each domain's predicted learning speed, and the policy until \
                  the first fit (the code's empirical_dist; its mode = \"uniform\" is \"uniform\" here).",
        },
        ParamDoc {
            name: "renormalize",
            type_name: "bool",
            default: "false",
            doc: "Drop prior domains the dataset lacks and renormalise, with a log line.",
        },
        ParamDoc {
            name: "ignore_steps",
            type_name: "integer",
            default: "1000",
            doc: "History rows (code iterations = mixlab step - 1) before this are left out of every fit.",
        },
        ParamDoc {
            name: "start_step",
            type_name: "integer",
            default: "1000",
            doc: "First code iteration at which the laws are fitted and the policy adapts; until then \
                  the policy is the prior.",
        },
        ParamDoc {
            name: "update_interval",
            type_name: "integer >= 1",
            default: "1000",
            doc: "Refit at iterations that are multiples of this (from start_step on); the policy is \
                  recomputed every step from the latest fit.",
        },
        ParamDoc {
            name: "count",
            type_name: "shared | domain",
            default: "shared",
            doc: "What the law's n counts: shared = all sequences trained on (the code's \
                  use_same_step_size = True); domain = the domain's own sequences (the paper).",
        },
        ParamDoc {
            name: "history_decay",
            type_name: "float in [0, 1)",
            default: "0.9",
            doc: "gamma of the history prior h <- gamma h + (1 - gamma) (this step's share of sequences).",
        },
        ParamDoc {
            name: "policy_smoothing",
            type_name: "float in [0, 1)",
            default: "0.9",
            doc: "s of the policy pi = s avg(rho) + (1 - s) rho, avg the running mean of rho.",
        },
        ParamDoc {
            name: "min_probability",
            type_name: "float in [0, 1/K]",
            default: "0.01",
            doc: "Floor of the instantaneous distribution rho (clip, then renormalise).",
        },
        ParamDoc {
            name: "exponent_floor",
            type_name: "float >= 0",
            default: "0.05",
            doc: "The exponent alpha_k in the slope alpha_k (L_k(n) - exp(e_k)) / n is at least this.",
        },
        ParamDoc {
            name: "smoothing_window",
            type_name: "odd integer",
            default: "101",
            doc: "Savitzky-Golay window (steps) smoothing each domain's training loss before a fit.",
        },
        ParamDoc {
            name: "smoothing_order",
            type_name: "integer < smoothing_window",
            default: "3",
            doc: "Polynomial order of the Savitzky-Golay filter.",
        },
        ParamDoc {
            name: "fit_stride",
            type_name: "integer >= 1",
            default: "10",
            doc: "A fit uses every fit_stride-th history row from ignore_steps on.",
        },
    ];

    fn resolved(self) -> mixlab_mixing::Result<Self> {
        Ok(self.validate()?)
    }

    fn build(&self, ctx: &MixerContext) -> mixlab_mixing::Result<Box<dyn Mixer>> {
        Ok(Box::new(AdoMixer::new(self.clone(), ctx)?))
    }
}

impl From<AdoError> for MixingError {
    fn from(e: AdoError) -> Self {
        MixingError::Mixer {
            kind: AdoConfig::KIND,
            cause: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_schedule_is_valid_and_fits_at_multiples() {
        let c = AdoConfig::default().validate().expect("reference defaults");
        assert_eq!(c.first_fit_step(), 1000);
        assert!(!c.fits_at(999) && c.fits_at(1000) && !c.fits_at(1500) && c.fits_at(2000));
        // rows 0..=1000, from row 1000 on every 10th: one row (the reference fits it).
        assert_eq!(c.fit_points(1001), 1);
        assert_eq!(c.fit_points(1011), 2);
        assert_eq!(c.fit_points(999), 0);
    }

    #[test]
    fn bad_values_name_the_field() {
        let bad = |c: AdoConfig| c.validate().expect_err("invalid").to_string();
        let e = bad(AdoConfig {
            history_decay: 1.0,
            ..AdoConfig::default()
        });
        assert!(e.contains("history_decay"), "{e}");
        let e = bad(AdoConfig {
            smoothing_window: 100,
            ..AdoConfig::default()
        });
        assert!(e.contains("smoothing_window") && e.contains("odd"), "{e}");
        let e = bad(AdoConfig {
            start_step: 50,
            update_interval: 50,
            ..AdoConfig::default()
        });
        assert!(
            e.contains("start_step = 50") && e.contains("smoothing_window"),
            "{e}"
        );
        // The 124M experiment's start_step = 500 with ignore_steps = 1000 would fit on no data.
        let e = bad(AdoConfig {
            start_step: 500,
            update_interval: 500,
            ..AdoConfig::default()
        });
        assert!(
            e.contains("ignore_steps = 1000") && e.contains("0 points"),
            "{e}"
        );
    }
}
