//! A method of a comparison, as data: a name, a description, the `[mixer]` table its runs use,
//! training overrides and the runs it needs first.
//!
//! The paper's methods are entries built from the mixers' typed configs
//! ([`reproduce_methods`], [`ablation_methods`]); a user adds one from a TOML file
//! (`reproduce --method-file FILE`, [`load_method_file`]) without touching Rust:
//!
//! ```toml
//! id = "odm-alpha-0.5"                  # run directory name: letters, digits, '-', '_', '.'
//! label = "ODM (alpha 0.5)"             # name in the report's tables and legends
//! about = "ODM's paper rule with the released scripts' other smoothing"
//!
//! [mixer]                               # exactly what a `train` config has under [mixer]
//! kind = "odm"
//! rule = "paper"
//! alpha = 0.5
//! warmup_steps = 24
//!
//! [dataset_weights]                     # mixer keys the plan fills in for its dataset
//! initial_weights = "tpw"
//!
//! [training]                            # optional
//! granularity = "micro-batch"           # or "sequence"
//! ```
//!
//! Weight tables depend on the dataset (The Pile's weights exist for the Pile's domains only;
//! on the synthetic corpus they are carried over through each domain's Pile analogue), and a
//! method may use what another run wrote (DoReMi trains on its proxy's averaged weights). So a
//! method names such tables symbolically in `dataset_weights` ([`PlanWeights`]) and the plan
//! resolves them per dataset and seed.

use std::collections::BTreeMap;
use std::path::Path;

use mixlab_mixer_doremi::{Average, DoremiConfig};
use mixlab_mixer_odm::{OdmConfig, OdmRule};
use mixlab_mixing::{MixerRegistry, StaticConfig, WeightSpec, config_table};
use mixlab_train::Granularity;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Context, Result, bail};
use crate::preset::Preset;

/// A weight table chosen for the plan's dataset, set into a key of a method's mixer config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PlanWeights {
    /// The Pile weights on a Pile dataset (renormalised over a subset of its domains); on any
    /// other dataset their analogue, the token-proportional mixture (TPW is the Pile's
    /// effective token share).
    Tpw,
    /// 1/K per domain.
    Uniform,
    /// A published table (`doremi-256k`, `doremi-50k`, ...): as it is on the Pile, carried over
    /// through each domain's Pile analogue on the synthetic corpus, refused on other datasets.
    Table(String),
    /// The output table (`mixer-output-weights.toml`) that the run of this method id with the
    /// same seed wrote (DoReMi's proxy); that run goes first.
    OutputOf(String),
}

/// How a method's runs train, where it differs from the preset's defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodTraining {
    /// How domains are drawn: `micro-batch` (one domain per micro-batch, the paper's) or
    /// `sequence` (one per sequence: mixed micro-batches).
    #[serde(default)]
    pub granularity: Granularity,
    /// The granularity of the first `warmup_steps` steps (none: `granularity` throughout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_granularity: Option<Granularity>,
    /// Steps that use `warmup_granularity` (0 without one).
    #[serde(default)]
    pub warmup_steps: u64,
}

/// One method of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// Identifier: the run directory name.
    pub id: String,
    /// Name in tables and legends.
    pub label: String,
    /// One line on what it is.
    pub about: String,
    /// Whether it appears in the comparison (a proxy run does not).
    #[serde(default = "yes")]
    pub reported: bool,
    /// The row of the paper's results this method corresponds to, if any.
    #[serde(default)]
    pub paper_row: Option<String>,
    /// The `[mixer]` table of its runs (`kind = "..."` and the mixer's parameters), without the
    /// keys in `dataset_weights`.
    pub mixer: toml::Table,
    /// Mixer keys whose weight table the plan chooses for its dataset; each also sets the
    /// mixer's `renormalize` (true only when a Pile table meets a subset of the Pile's domains).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dataset_weights: BTreeMap<String, PlanWeights>,
    /// Training overrides.
    #[serde(default)]
    pub training: MethodTraining,
    /// The method whose final model (same seed) is this one's reference model (DoReMi's proxy
    /// trains against the reference run); that run goes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_model: Option<String>,
}

fn yes() -> bool {
    true
}

impl Method {
    /// The mixer's `kind`.
    pub fn mixer_kind(&self) -> Option<&str> {
        self.mixer.get("kind").and_then(toml::Value::as_str)
    }

    /// The methods whose runs (same seed) must finish first: the reference model's and those
    /// whose output tables it uses, in that order, without repeats.
    pub fn dependencies(&self) -> Vec<&str> {
        let mut deps: Vec<&str> = self.reference_model.iter().map(String::as_str).collect();
        for weights in self.dataset_weights.values() {
            if let PlanWeights::OutputOf(id) = weights
                && !deps.contains(&id.as_str())
            {
                deps.push(id);
            }
        }
        deps
    }

    /// Checks what can be checked without a dataset: the id is a directory name, the mixer is
    /// one of `mixers` and its table (with `dataset_weights` keys filled in by a placeholder)
    /// parses, and the warm-up is consistent.
    pub fn validate(&self, mixers: &MixerRegistry) -> Result<()> {
        let id_ok = !self.id.is_empty()
            && !self.id.starts_with('.')
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !id_ok {
            bail!(
                "method id {:?}: it names the run directory, so use letters, digits, '-', '_' and '.' (not first)",
                self.id
            );
        }
        if self.label.trim().is_empty() {
            bail!("method {}: `label` is empty", self.id);
        }
        for key in self.dataset_weights.keys() {
            if self.mixer.contains_key(key) {
                bail!(
                    "method {}: `{key}` is both in [mixer] and in [dataset_weights]; keep one",
                    self.id
                );
            }
        }
        if self.dependencies().contains(&self.id.as_str()) {
            bail!("method {} depends on itself", self.id);
        }
        let t = &self.training;
        if t.warmup_granularity.is_none() && t.warmup_steps > 0 {
            bail!(
                "method {}: training.warmup_steps = {} without training.warmup_granularity",
                self.id,
                t.warmup_steps
            );
        }
        let mut table = self.mixer.clone();
        for key in self.dataset_weights.keys() {
            table.insert(key.clone(), "uniform".into());
        }
        mixers
            .resolve(&table)
            .with_context(|| format!("method {}: its [mixer] table", self.id))?;
        Ok(())
    }

    /// A fixed mixture, the static mixer with `weights` chosen for the dataset.
    pub fn fixed(
        id: &str,
        label: &str,
        about: &str,
        paper_row: Option<&str>,
        weights: PlanWeights,
    ) -> Method {
        let config = StaticConfig {
            weights: WeightSpec::Uniform,
            renormalize: false,
        };
        Method {
            id: id.into(),
            label: label.into(),
            about: about.into(),
            reported: true,
            paper_row: paper_row.map(Into::into),
            mixer: typed_table(&config, &["weights", "renormalize"]),
            dataset_weights: BTreeMap::from([("weights".to_string(), weights)]),
            training: MethodTraining::default(),
            reference_model: None,
        }
    }

    /// A reported online mixer trained as its reference code loads data: `config` as the
    /// `[mixer]` table, one domain per sequence, no warm-up, no dataset-chosen weights and no
    /// reference model (ADO, Aioli).
    pub fn per_sequence<C: mixlab_mixing::MixerConfig>(
        id: &str,
        label: &str,
        about: String,
        config: &C,
    ) -> Method {
        Method {
            id: id.into(),
            label: label.into(),
            about,
            reported: true,
            paper_row: None,
            mixer: typed_table(config, &[]),
            dataset_weights: BTreeMap::new(),
            training: MethodTraining {
                granularity: Granularity::Sequence,
                warmup_granularity: None,
                warmup_steps: 0,
            },
            reference_model: None,
        }
    }
}

/// The config's table without `dataset_keys` (which the plan fills in).
pub(crate) fn typed_table<C: mixlab_mixing::MixerConfig>(
    config: &C,
    dataset_keys: &[&str],
) -> toml::Table {
    let mut table = config_table(config).expect("the built-in mixer configs serialise to TOML");
    for key in dataset_keys {
        table.remove(*key);
    }
    table
}

/// ODM's settings in a plan (the paper's methods and the exploration ablation).
#[derive(Debug, Clone, PartialEq)]
pub struct OdmSettings {
    /// The update rule.
    pub rule: OdmRule,
    /// Steps of the stationary initial policy (TPW).
    pub warmup_steps: u64,
    /// Smoothing factor (None: the rule's default, 0.9).
    pub alpha: Option<f64>,
    /// Fixed exploration rate (None: the decaying ε_t).
    pub exploration: Option<f64>,
    /// Sampling granularity after the warm-up.
    pub granularity: Granularity,
    /// Sampling granularity during the warm-up (None: the same).
    pub warmup_granularity: Option<Granularity>,
}

impl OdmSettings {
    /// The method: ODM initialised with TPW (chosen for the dataset).
    pub fn method(&self, id: &str, label: &str, about: &str, paper_row: Option<&str>) -> Method {
        // Unset options stay unset (not the rule's resolved defaults), so the table is the one a
        // user writes and the mixer fills in its defaults as for any config.
        let config = OdmConfig {
            rule: self.rule,
            alpha: self.alpha,
            warmup_steps: self.warmup_steps,
            initial_weights: WeightSpec::Uniform,
            renormalize: false,
            loss_aggregation: None,
            reward_scale: None,
            exploration: self.exploration,
        };
        Method {
            id: id.into(),
            label: label.into(),
            about: about.into(),
            reported: true,
            paper_row: paper_row.map(Into::into),
            mixer: typed_table(&config, &["initial_weights", "renormalize"]),
            dataset_weights: BTreeMap::from([("initial_weights".to_string(), PlanWeights::Tpw)]),
            training: MethodTraining {
                granularity: self.granularity,
                warmup_granularity: self.warmup_granularity,
                warmup_steps: if self.warmup_granularity.is_some() {
                    self.warmup_steps
                } else {
                    0
                },
            },
            reference_model: None,
        }
    }
}

/// DoReMi's proxy run as the reference code's 120M run does it: Group DRO (η = 1, c = 1e-3)
/// against the final model of `reference`, uniform sampling weights drawn per sequence, and the
/// code's running average (α_0 included) as its output.
pub fn doremi_proxy(id: &str, label: &str, about: &str, reference: &str) -> Method {
    let config = DoremiConfig {
        eta: 1.0,
        smoothing: 1e-3,
        sampling_weights: WeightSpec::Uniform,
        renormalize: false,
        initial_excess_loss: None,
        average: Average::Code,
    };
    Method {
        id: id.into(),
        label: label.into(),
        about: about.into(),
        reported: false,
        paper_row: None,
        mixer: typed_table(&config, &[]),
        dataset_weights: BTreeMap::new(),
        training: MethodTraining {
            granularity: Granularity::Sequence,
            warmup_granularity: None,
            warmup_steps: 0,
        },
        reference_model: Some(reference.into()),
    }
}

/// The methods of the paper's comparison, in run order.
/// `k` is the number of domains (Aioli sizes its probes by it).
pub fn reproduce_methods(preset: &Preset, k: usize) -> Vec<Method> {
    let odm_paper = OdmSettings {
        rule: OdmRule::Paper,
        warmup_steps: preset.odm_paper_warmup,
        alpha: None,
        exploration: None,
        granularity: Granularity::MicroBatch,
        warmup_granularity: None,
    };
    let odm_code = OdmSettings {
        rule: OdmRule::ReferenceCode,
        warmup_steps: preset.odm_code_warmup,
        warmup_granularity: Some(Granularity::Sequence),
        ..odm_paper.clone()
    };
    vec![
        Method::fixed("tpw", "TPW", "The Pile weights (the Pile's effective token shares; their analogue elsewhere)", Some("The Pile Weights"), PlanWeights::Tpw),
        Method::fixed("doremi-256k", "DoReMi-256k", "DoReMi's published weights (280M proxy, 256k-vocabulary tokenizer)", Some("DoReMi-256k"), PlanWeights::Table("doremi-256k".into())),
        Method::fixed("doremi-50k", "DoReMi-50k", "DoReMi weights recomputed with a 50k NeoX tokenizer (120M proxy)", Some("DoReMi-50k"), PlanWeights::Table("doremi-50k".into())),
        odm_paper.method(
            "odm-paper",
            "ODM",
            &format!("ODM, Algorithm 1 of the paper (importance-weighted smoothed loss, softmax), a {}-step TPW warm-up (1%), homogeneous micro-batches", preset.odm_paper_warmup),
            Some("ODM"),
        ),
        odm_code.method(
            "odm-code",
            "ODM (code rule)",
            &format!("ODM as the released code does it (smoothed exp(mean loss), linear normalisation), a {}-step TPW warm-up (2%) with mixed micro-batches", preset.odm_code_warmup),
            None,
        ),
        crate::ado::ado_method(preset),
        crate::aioli::aioli_method(preset, k),
        Method::fixed("uniform", "Uniform", "1/K per domain (a strong cheap baseline in later work)", None, PlanWeights::Uniform),
        doremi_proxy(
            "doremi-proxy",
            "DoReMi proxy",
            "DoReMi step 2: Group DRO proxy against the TPW run as reference (eta 1, c 1e-3, uniform sampling)",
            "tpw",
        ),
        Method::fixed("doremi", "DoReMi (mixlab)", "DoReMi computed here: the proxy's averaged domain weights (reference = the TPW run)", None, PlanWeights::OutputOf("doremi-proxy".into())),
    ]
}

/// The ODM variants of `ablate-exploration`; `k` is the number of domains (for ε = 1/K).
pub fn ablation_methods(preset: &Preset, k: usize) -> Vec<Method> {
    let variant = |id: &str,
                   label: &str,
                   about: &str,
                   alpha: Option<f64>,
                   exploration: Option<f64>,
                   granularity: Granularity| {
        OdmSettings {
            rule: OdmRule::Paper,
            warmup_steps: preset.odm_paper_warmup,
            alpha,
            exploration,
            granularity,
            warmup_granularity: None,
        }
        .method(id, label, about, None)
    };
    let mb = Granularity::MicroBatch;
    vec![
        variant(
            "default",
            "paper: decaying eps, alpha 0.9, micro-batch",
            "ODM as in Algorithm 1: eps_t = min(1/K, sqrt(ln K/(K t))), alpha = 0.9, one domain per micro-batch",
            None,
            None,
            mb,
        ),
        variant(
            "eps-0",
            "eps = 0",
            "no exploration floor",
            None,
            Some(0.0),
            mb,
        ),
        variant(
            "eps-0.01",
            "eps = 0.01",
            "fixed exploration floor 0.01",
            None,
            Some(0.01),
            mb,
        ),
        variant(
            "eps-0.05",
            "eps = 0.05",
            "fixed exploration floor 0.05",
            None,
            Some(0.05),
            mb,
        ),
        variant(
            "eps-inv-k",
            "eps = 1/K",
            "eps = 1/K: the policy is uniform",
            None,
            Some(1.0 / k as f64),
            mb,
        ),
        variant(
            "alpha-0",
            "alpha = 0",
            "reward = the last importance-weighted loss",
            Some(0.0),
            None,
            mb,
        ),
        variant(
            "alpha-0.5",
            "alpha = 0.5",
            "the released scripts' other smoothing",
            Some(0.5),
            None,
            mb,
        ),
        variant(
            "alpha-0.99",
            "alpha = 0.99",
            "slow smoothing",
            Some(0.99),
            None,
            mb,
        ),
        variant(
            "sequence",
            "sequence granularity",
            "one domain per sequence (mixed micro-batches) instead of per micro-batch",
            None,
            None,
            Granularity::Sequence,
        ),
    ]
}

/// Reads a method from a TOML file (the format in the module docs) and validates it against
/// `mixers`; errors name the file and, for a parse error, the line and key.
pub fn load_method_file(path: &Path, mixers: &MixerRegistry) -> Result<Method> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the method file {}", path.display()))?;
    let method: Method = toml::from_str(&text)
        .with_context(|| format!("parsing the method file {}", path.display()))?;
    method
        .validate(mixers)
        .with_context(|| format!("in the method file {}", path.display()))?;
    Ok(method)
}

/// Reads a plan's methods in the current form or in the form plans were saved in before
/// methods were data (`"kind": {"kind": "static", ...}`), which converts to the same methods.
pub fn deserialize_methods<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Method>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Saved {
        Current(Method),
        Legacy(crate::legacy::LegacyMethod),
    }
    let saved: Vec<Saved> = Vec::deserialize(d)?;
    Ok(saved
        .into_iter()
        .map(|m| match m {
            Saved::Current(m) => m,
            Saved::Legacy(m) => m.into_method(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_file_parses_validates_and_names_its_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("m.toml");
        let good = "id = \"odm-alpha-0.5\"\nlabel = \"ODM (alpha 0.5)\"\nabout = \"x\"\n\n[mixer]\nkind = \"odm\"\nrule = \"paper\"\nalpha = 0.5\nwarmup_steps = 24\n\n[dataset_weights]\ninitial_weights = \"tpw\"\n";
        std::fs::write(&path, good).expect("write");
        let mixers = crate::testing::mixers();
        let m = load_method_file(&path, &mixers).expect("valid");
        assert_eq!(m.mixer_kind(), Some("odm"));
        assert!(m.reported);
        assert_eq!(m.dataset_weights["initial_weights"], PlanWeights::Tpw);
        assert!(m.dependencies().is_empty());

        let error = |text: &str| -> String {
            std::fs::write(&path, text).expect("write");
            crate::error::chain(&load_method_file(&path, &mixers).expect_err("invalid"))
        };
        // A typo in a mixer parameter: the file, the method and the key are named.
        let e = error(&good.replace("alpha = 0.5", "alpah = 0.5"));
        assert!(
            e.contains("m.toml") && e.contains("odm-alpha-0.5") && e.contains("alpah"),
            "{e}"
        );
        // An unknown mixer kind names the known ones.
        let e = error(&good.replace("kind = \"odm\"", "kind = \"odn\""));
        assert!(e.contains("odn") && e.contains("static"), "{e}");
        // An unknown top-level key is a parse error naming it.
        let e = error(&format!("colour = 1\n{good}"));
        assert!(e.contains("colour"), "{e}");
        // A bad symbolic table.
        let e = error(&good.replace("\"tpw\"", "{ outputof = \"x\" }"));
        assert!(e.contains("outputof"), "{e}");
        // An id that cannot be a directory.
        let e = error(&good.replace("odm-alpha-0.5", "../up"));
        assert!(e.contains("../up"), "{e}");
        // A key given twice.
        let e = error(&good.replace(
            "rule = \"paper\"",
            "rule = \"paper\"\ninitial_weights = \"uniform\"",
        ));
        assert!(e.contains("initial_weights"), "{e}");
    }

    #[test]
    fn dependencies_come_from_the_reference_and_output_tables() {
        let m = reproduce_methods(&crate::preset::preset("tiny").expect("known"), 11);
        let deps = |id: &str| -> Vec<String> {
            m.iter()
                .find(|m| m.id == id)
                .expect("present")
                .dependencies()
                .into_iter()
                .map(String::from)
                .collect()
        };
        assert_eq!(deps("doremi-proxy"), ["tpw"]);
        assert_eq!(deps("doremi"), ["doremi-proxy"]);
        assert!(deps("odm-code").is_empty());
        for method in &m {
            method
                .validate(&crate::testing::mixers())
                .unwrap_or_else(|e| panic!("{}: {}", method.id, crate::error::chain(&e)));
        }
    }
}
