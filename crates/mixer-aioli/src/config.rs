//! The Aioli configuration. Defaults are the reference's 7-domain SlimPajama run
//! (HazyResearch/aioli at a236112, `scripts/full/aioli/run.sh`, 40,000 steps); each field's
//! documentation also names `main.py`'s argparse default where the script overrides it.

use mixlab_mixing::{Mixer, MixerConfig, MixerContext, MixingError, ParamDoc, WeightSpec};
use serde::{Deserialize, Serialize};

use crate::{AioliError, AioliMixer};

/// How a round's estimate of A becomes the mixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateRule {
    /// The code with `--ema` (every script of the paper): Ā = A in the first round, then
    /// Ā ← (1 − ema) A + ema Ā, and p ∝ base ⊙ exp(η Σ_i Ā_ij). Not cumulative: each round's
    /// mixture depends on the smoothed estimate only.
    #[default]
    Ema,
    /// The code without `--ema`: p ∝ base ⊙ exp(η Σ_i A_ij) in the first round, then
    /// p ∝ p_prev ⊙ exp(η Σ_i A_ij), a cumulative exponentiated-gradient update.
    Multiplicative,
}

impl UpdateRule {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            UpdateRule::Ema => "ema",
            UpdateRule::Multiplicative => "multiplicative",
        }
    }
}

/// Config of `kind = "aioli"`.
///
/// ```toml
/// kind = "aioli"
/// update_steps = 200      # one round: probes, then the learned mixture
/// lp_rounds = 2           # sweeps over the domains per round
/// lp_steps = 10           # steps per probe
/// one_hot_factor = 0.75   # a probe's weight on its domain
/// eta = 1.0
/// ema = 0.1
/// ```
///
/// Steps count as mixlab's (1-based): round r covers steps `prior_steps + r·update_steps + 1`
/// to `prior_steps + (r + 1)·update_steps`, and Aioli asks for validation losses after step
/// `prior_steps + r·update_steps` (before step 1 when that is 0) and after every probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AioliConfig {
    /// The mixture of the first `prior_steps` steps (the code's `--aioli_prior`; the script's
    /// `1 1 1 1 1 1 1` is uniform). With `start_from_prior` also the base of the update.
    #[serde(default = "default_prior")]
    pub prior: WeightSpec,
    /// Drop `prior` domains the dataset lacks and renormalise (logged).
    #[serde(default)]
    pub renormalize: bool,
    /// Steps trained on `prior` before the first round (the code's `--prior_steps`: 0 in the
    /// script; the paper's restricted setting trains a given mixture first).
    #[serde(default)]
    pub prior_steps: u64,
    /// Steps per round, probes included (the code's `--update_steps`, required there; the
    /// script's 200).
    #[serde(default = "default_update_steps")]
    pub update_steps: u64,
    /// Sweeps over the K domains in a round's probes, each in a fresh random order (the code's
    /// `--lp_rounds`: argparse 1, the script 2).
    #[serde(default = "default_lp_rounds")]
    pub lp_rounds: u64,
    /// Training steps per probe (the code's `--lp_steps`: argparse 5, the script 10).
    #[serde(default = "default_lp_steps")]
    pub lp_steps: u64,
    /// A probe's weight on its domain; the others share the rest equally (the code's
    /// `--one_hot_factor`: argparse 1, a pure one-hot probe; the script 0.75). Must exceed 1/K.
    #[serde(default = "default_one_hot_factor")]
    pub one_hot_factor: f64,
    /// η, the step size of the update (the code's `--eta`, required there; the script's 1).
    #[serde(default = "default_eta")]
    pub eta: f64,
    /// How A becomes the mixture: `ema` (the code with `--ema`, every script) or
    /// `multiplicative` (the code without it).
    #[serde(default)]
    pub update: UpdateRule,
    /// γ of Ā ← (1 − γ) A + γ Ā with `update = "ema"` (the code's `--ema`: the script's 0.1).
    #[serde(default = "default_ema")]
    pub ema: f64,
    /// Shift A by its minimum when negative and divide by its sum before the update (the
    /// code's `--aioli_normalize_A`: argparse off, every script on).
    #[serde(default = "default_true")]
    pub normalize: bool,
    /// Estimate only A's diagonal, A_ii = G_ii / one_hot_factor (the code's `--aioli_diagonal`,
    /// off; used only when one_hot_factor < 1, as in the code).
    #[serde(default)]
    pub diagonal: bool,
    /// Start the update from the prior instead of uniform (the code restarts from uniform
    /// after the prior's steps: off).
    #[serde(default)]
    pub start_from_prior: bool,
    /// Seed of the probe orders (the code draws them from numpy's global generator, seeded
    /// with the run's `--selection_seed`).
    #[serde(default)]
    pub seed: u64,
}

fn default_prior() -> WeightSpec {
    WeightSpec::Uniform
}
fn default_update_steps() -> u64 {
    200
}
fn default_lp_rounds() -> u64 {
    2
}
fn default_lp_steps() -> u64 {
    10
}
fn default_one_hot_factor() -> f64 {
    0.75
}
fn default_eta() -> f64 {
    1.0
}
fn default_ema() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}

impl Default for AioliConfig {
    fn default() -> Self {
        Self {
            prior: default_prior(),
            renormalize: false,
            prior_steps: 0,
            update_steps: default_update_steps(),
            lp_rounds: default_lp_rounds(),
            lp_steps: default_lp_steps(),
            one_hot_factor: default_one_hot_factor(),
            eta: default_eta(),
            update: UpdateRule::Ema,
            ema: default_ema(),
            normalize: true,
            diagonal: false,
            start_from_prior: false,
            seed: 0,
        }
    }
}

impl AioliConfig {
    /// Probe steps in one round with `domains` domains: lp_rounds · K · lp_steps (the code's
    /// `lp_duration`).
    pub fn probe_steps(&self, domains: usize) -> u64 {
        self.lp_rounds
            .saturating_mul(domains as u64)
            .saturating_mul(self.lp_steps)
    }

    /// Checks every value that does not depend on the dataset, naming the field.
    pub fn validate(self) -> Result<Self, AioliError> {
        let range = |field: &'static str, value: f64, ok: bool, expected: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(AioliError::OutOfRange {
                    field,
                    value,
                    expected,
                })
            }
        };
        for (field, v) in [
            ("update_steps", self.update_steps),
            ("lp_rounds", self.lp_rounds),
            ("lp_steps", self.lp_steps),
        ] {
            range(field, v as f64, v >= 1, "must be at least 1")?;
        }
        range(
            "one_hot_factor",
            self.one_hot_factor,
            self.one_hot_factor > 0.0 && self.one_hot_factor <= 1.0,
            "must be in (0, 1]",
        )?;
        range(
            "eta",
            self.eta,
            self.eta.is_finite() && self.eta >= 0.0,
            "must be finite and >= 0",
        )?;
        range(
            "ema",
            self.ema,
            (0.0..1.0).contains(&self.ema),
            "must be in [0, 1)",
        )?;
        Ok(self)
    }

    /// Checks what depends on the number of domains `k` (after [`validate`](Self::validate)).
    pub fn validate_for(&self, k: usize) -> Result<(), AioliError> {
        let probe_steps = self.probe_steps(k);
        if probe_steps >= self.update_steps {
            return Err(AioliError::ProbesFillTheRound {
                lp_rounds: self.lp_rounds,
                domains: k,
                lp_steps: self.lp_steps,
                probe_steps,
                update_steps: self.update_steps,
            });
        }
        if k >= 2 && self.one_hot_factor <= 1.0 / k as f64 {
            return Err(AioliError::FactorTooLow {
                one_hot_factor: self.one_hot_factor,
                domains: k,
            });
        }
        Ok(())
    }
}

impl MixerConfig for AioliConfig {
    const KIND: &'static str = "aioli";
    const SUMMARY: &'static str = "Aioli (Chen et al. 2025): short probe mixtures measure how each domain moves every domain's validation loss; exponentiated gradient on that matrix";
    const PARAMS: &'static [ParamDoc] = &[
        ParamDoc {
            name: "prior",
            type_name: "weight source (as in static)",
            default: "\"uniform\"",
            doc: "The mixture of the first prior_steps steps (the code's --aioli_prior).",
        },
        ParamDoc {
            name: "renormalize",
            type_name: "bool",
            default: "false",
            doc: "Drop prior domains the dataset lacks and renormalise, with a log line.",
        },
        ParamDoc {
            name: "prior_steps",
            type_name: "integer",
            default: "0",
            doc: "Steps trained on the prior before the first round (the restricted setting).",
        },
        ParamDoc {
            name: "update_steps",
            type_name: "integer > probe steps",
            default: "200",
            doc: "Steps per round, probes included; the probes take lp_rounds x K x lp_steps.",
        },
        ParamDoc {
            name: "lp_rounds",
            type_name: "integer >= 1",
            default: "2",
            doc: "Sweeps over the domains per round, each in a fresh random order (argparse: 1).",
        },
        ParamDoc {
            name: "lp_steps",
            type_name: "integer >= 1",
            default: "10",
            doc: "Training steps per probe, followed by a validation (argparse: 5).",
        },
        ParamDoc {
            name: "one_hot_factor",
            type_name: "float in (1/K, 1]",
            default: "0.75",
            doc: "A probe's weight on its domain; the rest share 1 - it equally (argparse: 1).",
        },
        ParamDoc {
            name: "eta",
            type_name: "float >= 0",
            default: "1.0",
            doc: "Step size of the exponentiated-gradient update.",
        },
        ParamDoc {
            name: "update",
            type_name: "ema | multiplicative",
            default: "ema",
            doc: "ema: p ~ exp(eta colsum(EMA of A)) each round (the code with --ema); \
                  multiplicative: p ~ p_prev exp(eta colsum(A)) (the code without it).",
        },
        ParamDoc {
            name: "ema",
            type_name: "float in [0, 1)",
            default: "0.1",
            doc: "gamma of the EMA of A: A_bar <- (1 - gamma) A + gamma A_bar (update = ema).",
        },
        ParamDoc {
            name: "normalize",
            type_name: "bool",
            default: "true",
            doc: "Shift A by its minimum when negative and divide by its sum (the code's \
                  --aioli_normalize_A, set by every script; argparse: off).",
        },
        ParamDoc {
            name: "diagonal",
            type_name: "bool",
            default: "false",
            doc: "Estimate only A's diagonal, G_ii / one_hot_factor (the code's --aioli_diagonal).",
        },
        ParamDoc {
            name: "start_from_prior",
            type_name: "bool",
            default: "false",
            doc: "Start the update from the prior instead of uniform (the code uses uniform).",
        },
        ParamDoc {
            name: "seed",
            type_name: "integer",
            default: "0",
            doc: "Seed of the random probe orders.",
        },
    ];

    fn resolved(self) -> mixlab_mixing::Result<Self> {
        Ok(self.validate()?)
    }

    fn build(&self, ctx: &MixerContext) -> mixlab_mixing::Result<Box<dyn Mixer>> {
        Ok(Box::new(AioliMixer::new(self.clone(), ctx)?))
    }
}

impl From<AioliError> for MixingError {
    fn from(e: AioliError) -> Self {
        MixingError::Mixer {
            kind: AioliConfig::KIND,
            cause: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_defaults_are_valid_for_its_seven_domains() {
        let c = AioliConfig::default().validate().expect("defaults");
        // 2 sweeps x 7 domains x 10 steps = 140 of every 200 steps probe.
        assert_eq!(c.probe_steps(7), 140);
        c.validate_for(7).expect("7 domains");
    }

    #[test]
    fn bad_values_name_the_field() {
        let bad = |c: AioliConfig| c.validate().expect_err("invalid").to_string();
        let e = bad(AioliConfig {
            one_hot_factor: 1.5,
            ..AioliConfig::default()
        });
        assert!(e.contains("one_hot_factor = 1.5"), "{e}");
        let e = bad(AioliConfig {
            lp_steps: 0,
            ..AioliConfig::default()
        });
        assert!(e.contains("lp_steps"), "{e}");
        let e = bad(AioliConfig {
            ema: 1.0,
            ..AioliConfig::default()
        });
        assert!(e.contains("ema"), "{e}");
        let e = bad(AioliConfig {
            eta: f64::NAN,
            ..AioliConfig::default()
        });
        assert!(e.contains("eta"), "{e}");
        // The Pile's 22 domains do not fit the script's probes into 200 steps.
        let e = AioliConfig::default()
            .validate_for(22)
            .expect_err("440 probe steps")
            .to_string();
        assert!(
            e.contains("= 440 steps") && e.contains("update_steps (200)"),
            "{e}"
        );
        let e = AioliConfig {
            one_hot_factor: 0.25,
            update_steps: 1000,
            ..AioliConfig::default()
        }
        .validate_for(4)
        .expect_err("singular")
        .to_string();
        assert!(
            e.contains("one_hot_factor = 0.25") && e.contains("1/4"),
            "{e}"
        );
    }
}
