//! A comparison's plan: which runs (methods × seeds) on which dataset and budget, written to
//! `<out>/plan.json` before the first run so that the same request resumes; and the training
//! config of each run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mixlab_data::synthetic::DomainKind;
use mixlab_mixing::{DomainSet, NamedTable};
use mixlab_model::DeviceSpec;
use mixlab_train::config::{
    CheckpointConfig, DataConfig, EvalConfig, ModelSpec, OptimizerConfig, PrepareSpec,
    TrainingConfig,
};
use mixlab_train::{LrSchedule, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, StudyError, bail};
use crate::method::{self, Method, PlanWeights};
use crate::preset::Preset;

/// Which comparison a plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanKind {
    /// The paper's comparison of mixing methods.
    Reproduce,
    /// ODM variants: exploration, smoothing, granularity.
    AblateExploration,
}

impl PlanKind {
    /// The preset when none is asked for: `tiny` for the paper's comparison, `quick` for the
    /// ablation (nine variants, each a full run; `--preset tiny` trains them at the default's length).
    pub fn default_preset(self) -> &'static str {
        match self {
            PlanKind::Reproduce => "tiny",
            PlanKind::AblateExploration => "quick",
        }
    }
}

/// The dataset of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The prepared dataset.
    pub path: PathBuf,
    /// How to prepare it when missing.
    pub prepare: Option<PrepareSpec>,
    /// `synthetic` (the built-in corpus), `pile` (some or all Pile domains) or `other`.
    pub kind: String,
    /// Domains, in dataset order.
    pub domains: Vec<String>,
    /// What the report must say about the weight tables on this dataset.
    pub note: String,
}

/// The multiple-choice benchmark of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McInfo {
    /// Directory in the hendrycks/test layout.
    pub data: PathBuf,
    /// `synthetic` (the corpus's own set) or `mmlu`.
    pub source: String,
    /// Test questions per subject (None: all).
    pub limit_per_subject: Option<usize>,
}

/// Everything a comparison runs, written to `<out>/plan.json` before the first run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Which comparison.
    pub kind: PlanKind,
    /// Sizes and budget.
    pub preset: Preset,
    /// The dataset.
    pub dataset: DatasetInfo,
    /// The multiple-choice benchmark, if any.
    pub mc: Option<McInfo>,
    /// Training seeds; every method runs once per seed.
    pub seeds: Vec<u64>,
    /// Methods, in run order (a method runs after those it depends on).
    #[serde(deserialize_with = "method::deserialize_methods")]
    pub methods: Vec<Method>,
}

impl Plan {
    /// The run directory of `method` with `seed`.
    pub fn run_dir(out: &Path, method: &str, seed: u64) -> PathBuf {
        out.join("runs").join(method).join(format!("seed-{seed}"))
    }

    /// The method called `id`.
    pub fn method(&self, id: &str) -> Option<&Method> {
        self.methods.iter().find(|m| m.id == id)
    }

    /// Methods shown in the comparison, in report order.
    pub fn reported(&self) -> Vec<&Method> {
        self.methods.iter().filter(|m| m.reported).collect()
    }

    /// The plan without its descriptions (labels, one-line explanations), which a newer version
    /// may word differently: two plans with the same semantics run the same runs. A saved plan
    /// is compared after parsing it as a `Plan` (which converts the older form of its methods,
    /// see `legacy.rs`); serde_json parses numbers correctly rounded (its `float_roundtrip`
    /// feature), so a value written and read back is the same to the bit.
    pub fn semantics(&self) -> Result<serde_json::Value> {
        Ok(semantics_of(serde_json::to_value(self)?))
    }

    /// The semantics of a plan saved as `text` (the contents of `path`, named in errors).
    pub fn saved_semantics(text: &str, path: &Path) -> Result<serde_json::Value> {
        let plan: Plan =
            serde_json::from_str(text).with_context(|| format!("parsing {}", path.display()))?;
        plan.semantics()
    }

    /// Reads `<out>/plan.json`.
    pub fn load(out: &Path) -> Result<Plan> {
        let path = out.join("plan.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is {} a results directory?)",
                path.display(),
                out.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The training config of `method` with `seed`, its run directory under `out`.
    pub fn train_config(&self, out: &Path, method: &Method, seed: u64) -> Result<TrainConfig> {
        let p = &self.preset;
        let training = TrainingConfig {
            batch_size: p.batch_size,
            micro_batches: p.micro_batches,
            granularity: method.training.granularity,
            warmup_granularity: method.training.warmup_granularity,
            warmup_steps: method.training.warmup_steps,
            steps: p.steps,
            seed,
            device: p.device,
            devices: p.devices.clone(),
            log_interval: 1,
        };
        let mut mixer = method.mixer.clone();
        if !method.dataset_weights.is_empty() {
            let mut renormalize = false;
            for (key, weights) in &method.dataset_weights {
                let (spec, renorm) = self
                    .weight_spec(out, weights, seed)
                    .with_context(|| format!("method {}: `{key}`", method.id))?;
                mixer.insert(key.clone(), spec);
                renormalize |= renorm;
            }
            mixer.insert("renormalize".into(), renormalize.into());
        }
        let config = TrainConfig {
            name: format!("{}-{}-seed{}", p.name, method.id, seed),
            data: DataConfig {
                dataset: self.dataset.path.clone(),
                prepare: self.dataset.prepare.clone(),
            },
            model: ModelSpec {
                preset: Some(p.model.clone()),
                config: None,
                init_from: None,
                init_sha256: None,
            },
            mixer,
            training,
            optimizer: OptimizerConfig::default(),
            schedule: LrSchedule {
                peak_lr: p.peak_lr,
                warmup_fraction: p.warmup_fraction,
                min_lr_ratio: p.min_lr_ratio,
            },
            eval: EvalConfig {
                interval: p.eval_interval,
                max_sequences_per_domain: p.eval_max_sequences,
                batch_size: p.eval_batch_size,
            },
            checkpoint: CheckpointConfig {
                interval: p.checkpoint_interval,
                keep: 1,
            },
            out_dir: Self::run_dir(out, &method.id, seed),
        };
        config.validate()?;
        Ok(config)
    }

    /// The `weights` value (and `renormalize`) of a static mixer for `weights` on this dataset.
    fn weight_spec(
        &self,
        out: &Path,
        weights: &PlanWeights,
        seed: u64,
    ) -> Result<(toml::Value, bool)> {
        let domains = &self.dataset.domains;
        let inline = |map: BTreeMap<String, f64>| {
            let mut inner = toml::Table::new();
            for (k, v) in map {
                inner.insert(k, v.into());
            }
            let mut t = toml::Table::new();
            t.insert("inline".into(), toml::Value::Table(inner));
            toml::Value::Table(t)
        };
        let table = |name: &str| -> Result<(toml::Value, bool)> {
            let named: NamedTable = name.parse().map_err(StudyError::Invalid)?;
            match self.dataset.kind.as_str() {
                "pile" => Ok((name.into(), domains.len() != DomainSet::pile().len())),
                "synthetic" => Ok((inline(analogue_weights(named, domains)?), false)),
                _ => bail!(
                    "the table {name} is defined for the Pile's domains; the dataset's domains ({}) are neither the Pile's nor the synthetic corpus's",
                    domains.join(", ")
                ),
            }
        };
        match weights {
            PlanWeights::Uniform => Ok(("uniform".into(), false)),
            PlanWeights::Tpw if self.dataset.kind == "pile" => table("tpw"),
            PlanWeights::Tpw => {
                // TPW is the Pile's effective token share; on another dataset its analogue is
                // the token-proportional mixture.
                let mut t = toml::Table::new();
                t.insert("temperature".into(), 1.0.into());
                Ok((toml::Value::Table(t), false))
            }
            PlanWeights::Table(name) => table(name),
            PlanWeights::OutputOf(proxy) => {
                let path = Self::run_dir(out, proxy, seed).join("mixer-output-weights.toml");
                let mut t = toml::Table::new();
                t.insert("file".into(), path.display().to_string().into());
                Ok((toml::Value::Table(t), false))
            }
        }
    }
}

/// A published Pile table carried over to the synthetic corpus through each domain's Pile
/// analogue (docs/default-corpus.md), renormalised to sum to 1.
pub fn analogue_weights(table: NamedTable, domains: &[String]) -> Result<BTreeMap<String, f64>> {
    let t = table.table();
    let mut map = BTreeMap::new();
    for d in domains {
        let kind = DomainKind::from_name(d)
            .with_context(|| format!("domain {d:?} is not a synthetic-corpus domain"))?;
        let w = t
            .get(kind.pile_analogue())
            .with_context(|| format!("table {} has no {:?}", t.origin(), kind.pile_analogue()))?;
        map.insert(d.clone(), w);
    }
    let sum: f64 = map.values().sum();
    for w in map.values_mut() {
        *w /= sum;
    }
    Ok(map)
}

/// Where a plan of `kind` at `preset` goes when `--out` is not given: a directory of the user's
/// under `runs/` (ignored by git), so that a run never rewrites the committed references in
/// `results/` (see [`crate::reference`]).
pub fn default_out(kind: PlanKind, preset: &str) -> PathBuf {
    PathBuf::from("runs").join(match kind {
        PlanKind::Reproduce => format!("reproduce-{preset}"),
        PlanKind::AblateExploration => format!("ablate-exploration-{preset}"),
    })
}

/// A plan's JSON without its descriptions (see [`Plan::semantics`]).
pub fn semantics_of(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(preset) = v.get_mut("preset").and_then(|p| p.as_object_mut()) {
        preset.remove("about");
        // One device, several spellings: a plan saved with `cuda` is the plan of `cuda:0`.
        if let Some(device) = preset.get_mut("device")
            && let Some(spec) = device.as_str().and_then(|d| d.parse::<DeviceSpec>().ok())
        {
            *device = spec.to_string().into();
        }
    }
    if let Some(methods) = v.get_mut("methods").and_then(|m| m.as_array_mut()) {
        for m in methods.iter_mut().filter_map(|m| m.as_object_mut()) {
            m.remove("label");
            m.remove("about");
        }
    }
    if let Some(dataset) = v.get_mut("dataset").and_then(|d| d.as_object_mut()) {
        dataset.remove("note");
    }
    v
}

/// Writes `plan` to `<out>/plan.json`, or compares it with the plan saved there: the same plan
/// resumes; the saved one plus methods is written over it (its finished runs stay valid); any
/// other difference is an error naming the fields that differ. Returns what changed.
pub fn save_plan(out: &Path, plan: &Plan) -> Result<PlanChange> {
    let path = out.join("plan.json");
    let write = || crate::timing::write_atomic(&path, &serde_json::to_string_pretty(plan)?);
    if !path.exists() {
        write()?;
        return Ok(PlanChange::Same);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let change = reconcile_plans(&Plan::saved_semantics(&text, &path)?, plan)?;
    match &change {
        PlanChange::Same => {}
        PlanChange::AddsMethods(_) => write()?,
        PlanChange::Different(fields) => bail!(
            "{} holds a different plan (differs in: {}); rerun with the original arguments to resume, add methods with --methods or --method-file, or choose another --out",
            out.display(),
            fields.join(", ")
        ),
    }
    Ok(change)
}

/// How a requested plan relates to the one saved in a results directory.
#[derive(Debug, PartialEq)]
pub enum PlanChange {
    /// The same runs: resume.
    Same,
    /// Everything saved, unchanged, plus these methods (ids): the runs already made stay valid,
    /// so a comparison can grow (a new mixer beside the paper's methods) without retraining.
    AddsMethods(Vec<String>),
    /// Anything else; the fields that differ.
    Different(Vec<&'static str>),
}

/// Compares the semantics of the `saved` plan ([`Plan::saved_semantics`]) with the `requested`
/// plan's (descriptions ignored).
pub fn reconcile_plans(saved: &serde_json::Value, requested: &Plan) -> Result<PlanChange> {
    let (a, b) = (saved.clone(), requested.semantics()?);
    if a == b {
        return Ok(PlanChange::Same);
    }
    let fields: Vec<&'static str> = ["kind", "preset", "dataset", "mc", "seeds", "methods"]
        .into_iter()
        .filter(|f| a[f] != b[f])
        .collect();
    if fields != ["methods"] {
        return Ok(PlanChange::Different(fields));
    }
    let method = |plan: &serde_json::Value, id: &str| -> Option<serde_json::Value> {
        plan["methods"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
    };
    let ids = |plan: &serde_json::Value| -> Vec<String> {
        plan["methods"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let saved_ids = ids(&a);
    let kept = saved_ids.iter().all(|id| {
        let requested = method(&b, id);
        requested.is_some() && requested == method(&a, id)
    });
    if !kept {
        return Ok(PlanChange::Different(fields));
    }
    Ok(PlanChange::AddsMethods(
        ids(&b)
            .into_iter()
            .filter(|id| !saved_ids.contains(id))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::reproduce_methods;
    use crate::request::select_methods;

    fn synthetic_plan(kind: PlanKind) -> Plan {
        crate::testing::synthetic_plan(kind, "tiny")
    }

    /// The child of `reproduce --jobs N` gets its plan as TOML: every number, the ablation's
    /// ε = 1/11 included, comes back equal to the bit (`f64` equality in `PartialEq`).
    #[test]
    fn a_plan_survives_toml_to_the_bit() {
        for kind in [PlanKind::Reproduce, PlanKind::AblateExploration] {
            let plan = synthetic_plan(kind);
            let text = toml::to_string(&plan).expect("a plan is TOML");
            let back: Plan = toml::from_str(&text).expect("and back");
            assert_eq!(back, plan, "{kind:?}");
        }
    }

    #[test]
    fn published_tables_carry_over_through_the_pile_analogues() {
        let domains: Vec<String> = DomainKind::ALL
            .iter()
            .map(|d| d.name().to_string())
            .collect();
        let w = analogue_weights(NamedTable::Doremi256k, &domains).expect("all analogues exist");
        assert!((w.values().sum::<f64>() - 1.0).abs() < 1e-12);
        // DoReMi-256k's 0.6057 on Pile-CC lands on Markov Hard, its analogue, renormalised by
        // the sum of the eleven analogues' weights.
        let table = NamedTable::Doremi256k.table();
        let sum: f64 = DomainKind::ALL
            .iter()
            .map(|d| table.get(d.pile_analogue()).expect("in table"))
            .sum();
        assert!((w["Markov Hard"] - 0.6057 / sum).abs() < 1e-12);
        assert!(analogue_weights(NamedTable::Tpw, &["Pile-CC".to_string()]).is_err());
    }

    #[test]
    fn every_method_has_a_valid_config_per_seed() {
        for kind in [PlanKind::Reproduce, PlanKind::AblateExploration] {
            let plan = synthetic_plan(kind);
            for m in &plan.methods {
                let c = plan
                    .train_config(Path::new("out"), m, 7)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", m.id));
                assert_eq!(c.training.seed, 7);
                assert_eq!(c.out_dir, Plan::run_dir(Path::new("out"), &m.id, 7));
                let mixer = crate::testing::mixers();
                // The mixer table parses (the proxy's output file need not exist yet).
                if !m
                    .dataset_weights
                    .values()
                    .any(|w| matches!(w, PlanWeights::OutputOf(_)))
                {
                    let k = plan.dataset.domains.len();
                    let ctx = mixlab_mixing::MixerContext::new(
                        DomainSet::new(plan.dataset.domains.clone()).expect("distinct"),
                    )
                    .with_token_counts((1..=k as u64).map(|i| 1000 * i).collect())
                    .expect("one count per domain")
                    .with_vocab_size(4096);
                    mixer
                        .build(&c.mixer, &ctx)
                        .unwrap_or_else(|e| panic!("{}: {e}", m.id));
                }
            }
        }
    }

    #[test]
    fn descriptions_do_not_change_a_plans_semantics() {
        let a = synthetic_plan(PlanKind::Reproduce);
        let mut b = a.clone();
        b.methods[0].about = "reworded".into();
        b.preset.about = "reworded".into();
        assert_eq!(a.semantics().expect("json"), b.semantics().expect("json"));
        b.seeds.push(1234);
        assert_ne!(a.semantics().expect("json"), b.semantics().expect("json"));
    }

    #[test]
    fn a_plan_may_grow_by_methods_but_not_change() {
        let all = synthetic_plan(PlanKind::Reproduce);
        let pick = |ids: &[&str]| {
            let mut p = all.clone();
            let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            p.methods = select_methods(p.methods, &ids, &p.dataset).expect("known");
            p
        };
        // As `run` reads it: the saved plan's JSON text, parsed.
        let text = |plan: &Plan| -> serde_json::Value {
            let text = serde_json::to_string_pretty(plan).expect("json");
            Plan::saved_semantics(&text, Path::new("plan.json")).expect("a plan")
        };
        let plan = pick(&["tpw", "odm-paper"]);
        let saved = text(&plan);
        assert_eq!(
            reconcile_plans(&saved, &plan).expect("json"),
            PlanChange::Same
        );
        // The ablation's eps = 1/11 survives serde_json's (correctly rounded) parser bit for bit:
        // the same plan is the same plan.
        let ablation = synthetic_plan(PlanKind::AblateExploration);
        assert_eq!(
            reconcile_plans(&text(&ablation), &ablation).expect("json"),
            PlanChange::Same
        );
        // More methods: the new ones are named; the DoReMi chain reuses the saved TPW run.
        assert_eq!(
            reconcile_plans(&saved, &pick(&["tpw", "odm-paper", "doremi"])).expect("json"),
            PlanChange::AddsMethods(vec!["doremi-proxy".into(), "doremi".into()])
        );
        // Fewer methods, or a saved method changed, is another plan.
        assert_eq!(
            reconcile_plans(&saved, &pick(&["tpw"])).expect("json"),
            PlanChange::Different(vec!["methods"])
        );
        let mut changed = pick(&["tpw", "odm-paper", "uniform"]);
        let warmup = &mut changed.methods[1].mixer["warmup_steps"];
        *warmup = (warmup.as_integer().expect("odm-paper has a warm-up") + 1).into();
        assert_eq!(
            reconcile_plans(&saved, &changed).expect("json"),
            PlanChange::Different(vec!["methods"])
        );
        // Other fields changed with more methods are still another plan.
        let mut more_seeds = pick(&["tpw", "odm-paper", "uniform"]);
        more_seeds.seeds.push(1234);
        assert_eq!(
            reconcile_plans(&saved, &more_seeds).expect("json"),
            PlanChange::Different(vec!["seeds", "methods"])
        );
        // A plan saved when the device was written `cuda` is the plan of `cuda:0`, not of `cuda:1`.
        let mut on_gpu = plan.clone();
        on_gpu.preset.device = DeviceSpec::Cuda(0);
        let mut json = serde_json::to_value(&on_gpu).expect("json");
        assert_eq!(json["preset"]["device"], "cuda:0");
        json["preset"]["device"] = "cuda".into();
        let saved = Plan::saved_semantics(&json.to_string(), Path::new("plan.json")).expect("plan");
        assert_eq!(
            reconcile_plans(&saved, &on_gpu).expect("json"),
            PlanChange::Same
        );
        on_gpu.preset.device = DeviceSpec::Cuda(1);
        assert_eq!(
            reconcile_plans(&saved, &on_gpu).expect("json"),
            PlanChange::Different(vec!["preset"])
        );
    }

    #[test]
    fn a_device_list_reaches_every_run_and_a_bad_one_is_refused_before_the_dataset() {
        let mut plan = synthetic_plan(PlanKind::Reproduce);
        plan.preset.devices = vec![DeviceSpec::Cpu, DeviceSpec::Cpu];
        for m in &plan.methods {
            let c = plan.train_config(Path::new("out"), m, 7).expect("valid");
            assert_eq!(c.training.devices, plan.preset.devices, "{}", m.id);
        }
        // Plans of one device keep their plan.json as it was (no `devices` key).
        let one = synthetic_plan(PlanKind::Reproduce);
        let json = serde_json::to_value(&one).expect("json");
        assert!(json["preset"].get("devices").is_none());
        // Refused when the request is built, before any data is generated or prepared.
        let mut request = crate::PlanRequest::new(PlanKind::Reproduce);
        request.data_root = PathBuf::from("/nonexistent/data-root");
        request.devices = Some(vec![DeviceSpec::Cpu; 3]);
        let error = crate::build_plan(&request, &crate::testing::mixers())
            .expect_err("3 workers for 4 micro-batches")
            .to_string();
        assert!(
            error.contains("training.devices") && error.contains("3 workers"),
            "{error}"
        );
    }

    #[test]
    fn dependencies_are_added_and_unknown_methods_refused() {
        let plan = synthetic_plan(PlanKind::Reproduce);
        let all = reproduce_methods(&plan.preset, plan.dataset.domains.len());
        let ids = |ms: Vec<Method>| ms.into_iter().map(|m| m.id).collect::<Vec<_>>();
        let picked = select_methods(all.clone(), &["doremi".into()], &plan.dataset).expect("ok");
        assert_eq!(ids(picked), ["tpw", "doremi-proxy", "doremi"]);
        let err = select_methods(all, &["odm".into()], &plan.dataset).expect_err("unknown");
        assert!(err.to_string().contains("odm-paper"), "{err}");
    }
}
