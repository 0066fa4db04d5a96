//! `reproduce` (the paper's comparison: TPW, DoReMi, ODM, uniform) and `ablate-exploration`
//! (ODM's exploration schedule, smoothing and sampling granularity).
//!
//! Both build a [`Plan`]: methods × seeds, each a normal training run under
//! `<out>/runs/<method>/seed-<seed>/`, followed by test perplexity and multiple choice of its
//! final model. The plan is written to `<out>/plan.json` first, so the same command resumes: a
//! finished run is skipped, an interrupted one continues from its newest checkpoint, a missing
//! evaluation is computed. The report (`report.md` and SVG figures) is rendered from the files
//! alone (`experiments report DIR`).

pub mod child;
pub mod claims;
mod legacy;
pub mod method;
pub mod preset;
pub mod progress;
pub mod reference;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mixlab_data::synthetic::DomainKind;
use mixlab_data::{DomainStore, OpenOptions, Split};
use mixlab_eval::perplexity::{PerplexityConfig, evaluate_perplexity};
use mixlab_eval::{
    McConfig, McDataset, ModelScorer, Protocol, evaluate_multiple_choice, load_tokenizer,
};
use mixlab_mixing::{DomainSet, NamedTable};
use mixlab_model::ModelBackend;
use mixlab_model::{
    CpuBackend, CudaBackend, DeviceSpec, GptNeoX, Precision, cpu_device, cuda_device,
};
use mixlab_train::config::{
    CheckpointConfig, DataConfig, EvalConfig, ModelSpec, OptimizerConfig, PrepareSpec,
    SyntheticSpec, TrainingConfig,
};
use mixlab_train::{Granularity, LrSchedule, RunOptions, TrainConfig, open_dataset};
use serde::{Deserialize, Serialize};

use crate::stop::{Stopped, StoppedRun};
use child::JobOutput;
pub use child::{RunArgs, run_child};

pub use method::{Method, PlanWeights, ablation_methods, reproduce_methods};
pub use preset::{Preset, preset};

/// Which comparison a plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanKind {
    /// The paper's comparison of mixing methods.
    Reproduce,
    /// ODM variants: exploration, smoothing, granularity.
    AblateExploration,
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
    /// see [`legacy`]); serde_json parses numbers correctly rounded (its `float_roundtrip`
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
            let named: NamedTable = name.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
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

/// Arguments shared by `reproduce` and `ablate-exploration`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// `smoke` (minutes, a pipeline check), `quick` (~20 min on 2 CPU cores), `tiny` (~4 h on
    /// 2 CPU cores) or `paper-1b` (GPU). Default: `tiny` for `reproduce`; `quick` for
    /// `ablate-exploration` (its nine variants at `tiny` take about 4 hours on 2 CPU cores).
    #[arg(long)]
    pub preset: Option<String>,
    /// A Pile-format corpus (prepared here with the preset's tokenizer) or a prepared dataset
    /// (with manifest.json). Default: the built-in synthetic corpus, generated on first use.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A tokenizer.json for preparing `--data` (default: the preset's, `train:4096`).
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Multiple-choice benchmark in the hendrycks/test layout (e.g. MMLU). Default: the
    /// synthetic corpus's own set; none for `--data` without `--mmlu`.
    #[arg(long)]
    pub mmlu: Option<PathBuf>,
    /// Test questions per subject (default: the preset's; 0 = all).
    #[arg(long)]
    pub mc_limit: Option<usize>,
    /// Seeds per method (42, 1234, 100, 222 as in the paper's scripts, then 1000, 1001, ...).
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Optimizer steps of every run (default: the preset's); warm-ups stay 1% and 2%, and
    /// validation keeps the preset's number of points per run.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Only these methods (comma-separated ids; dependencies are added).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// A method of your own, as data (TOML: id, label, about, [mixer], optional
    /// [dataset_weights] and [training]; see docs/adding-a-mixer.md), added after the built-in
    /// ones. Repeat for several; give it again when resuming.
    #[arg(long = "method-file", value_name = "FILE")]
    pub method_files: Vec<PathBuf>,
    /// `cpu`, `tch-cpu` (builds with `--features tch`), `cuda` or `cuda:N` (default: the preset's).
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Results directory (default: runs/reproduce-<preset> or runs/ablate-exploration-<preset>,
    /// which git ignores; the committed references under results/ change only when named here).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the synthetic corpus and prepared datasets go.
    #[arg(long, default_value = "data")]
    pub data_root: PathBuf,
    /// Runs at a time (default: one per CPU core on a CPU, one on a GPU). With more than one, each
    /// run is a child process with its share of the cores (a small model trains about as fast on
    /// one core as on two); every run's losses are the same as when it runs alone.
    #[arg(long)]
    pub jobs: Option<usize>,
}

impl Args {
    /// The preset asked for, or the default of `kind`.
    pub fn preset_name(&self, kind: PlanKind) -> &str {
        match (&self.preset, kind) {
            (Some(name), _) => name,
            (None, PlanKind::Reproduce) => "tiny",
            (None, PlanKind::AblateExploration) => "quick",
        }
    }
}

/// The paper's training seeds, then more.
fn seed_list(n: usize) -> Vec<u64> {
    const PAPER: [u64; 4] = [42, 1234, 100, 222];
    (0..n)
        .map(|i| PAPER.get(i).copied().unwrap_or(1000 + i as u64 - 4))
        .collect()
}

/// Resolves the dataset: prepares it if needed and reads its domains.
fn dataset_info(args: &Args, preset: &Preset) -> Result<DatasetInfo> {
    let (path, prepare) = match &args.data {
        None => {
            if !preset.synthetic_ok {
                bail!(
                    "preset {} needs --data: the Pile prepared with the GPT-NeoX-20B tokenizer (see docs/reproducing-at-scale.md)",
                    preset.name
                );
            }
            let root = args
                .data_root
                .join(format!("synthetic-s0-x{}", preset.synthetic_scale));
            let vocab = preset.tokenizer.trim_start_matches("train:");
            (
                root.join(format!("prepared-v{vocab}-s{}", preset.seq_len)),
                Some(PrepareSpec {
                    corpus: root.join("corpus"),
                    tokenizer: preset.tokenizer.clone(),
                    seq_len: preset.seq_len,
                    synthetic: Some(SyntheticSpec {
                        seed: 0,
                        scale: preset.synthetic_scale,
                    }),
                }),
            )
        }
        Some(dir) if dir.join("manifest.json").is_file() => (dir.clone(), None),
        Some(corpus) => {
            let tokenizer = match &args.tokenizer {
                Some(t) => t.clone(),
                None if preset.tokenizer.starts_with("train:") => preset.tokenizer.clone(),
                None => bail!(
                    "{} is a corpus, not a prepared dataset: preset {} needs --tokenizer (GPT-NeoX-20B's tokenizer.json) to prepare it, or prepare it first with prepare-data",
                    corpus.display(),
                    preset.name
                ),
            };
            let name = corpus
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "corpus".into());
            let tok_slug: String = tokenizer
                .rsplit('/')
                .next()
                .unwrap_or("tok")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            (
                args.data_root
                    .join("prepared")
                    .join(format!("{name}-{tok_slug}-s{}", preset.seq_len)),
                Some(PrepareSpec {
                    corpus: corpus.clone(),
                    tokenizer,
                    seq_len: preset.seq_len,
                    synthetic: None,
                }),
            )
        }
    };
    // Preparing goes through the trainer's own path, so runs see exactly this dataset.
    let probe = TrainConfig {
        name: "probe".into(),
        data: DataConfig {
            dataset: path.clone(),
            prepare: prepare.clone(),
        },
        model: ModelSpec {
            preset: Some(preset.model.clone()),
            config: None,
        },
        mixer: toml::Table::new(),
        training: TrainingConfig {
            batch_size: preset.batch_size,
            micro_batches: preset.micro_batches,
            granularity: Granularity::MicroBatch,
            warmup_granularity: None,
            warmup_steps: 0,
            steps: preset.steps,
            seed: 0,
            device: preset.device,
            log_interval: 1,
        },
        optimizer: OptimizerConfig::default(),
        schedule: LrSchedule::default(),
        eval: EvalConfig::default(),
        checkpoint: CheckpointConfig::default(),
        out_dir: PathBuf::from("unused"),
    };
    let store = open_dataset(&probe).context("preparing or opening the dataset")?;
    let domains = store.domain_names();
    let pile = DomainSet::pile();
    let synthetic = domains.iter().all(|d| DomainKind::from_name(d).is_some());
    let in_pile = domains
        .iter()
        .filter(|d| pile.index_of(d).is_some())
        .count();
    let (kind, note) = if synthetic {
        (
            "synthetic",
            "The built-in synthetic corpus has none of the Pile's domains. TPW is replaced by its analogue, the token-proportional mixture (TPW is the Pile's effective token share). The published DoReMi tables are carried over through each synthetic domain's Pile analogue (docs/default-corpus.md) and renormalised.".to_string(),
        )
    } else if in_pile == domains.len() {
        let note = if domains.len() == pile.len() {
            "The dataset has all 22 Pile domains: the published tables apply as they are."
                .to_string()
        } else {
            let missing: Vec<&str> = pile
                .names()
                .iter()
                .map(String::as_str)
                .filter(|n| !domains.iter().any(|d| d == n))
                .collect();
            format!(
                "The dataset has {} of the Pile's 22 domains: every weight table (TPW, DoReMi-256k, DoReMi-50k) is renormalised over them. Missing: {}.",
                domains.len(),
                missing.join(", ")
            )
        };
        ("pile", note)
    } else {
        (
            "other",
            "The dataset's domains are not the Pile's: TPW is replaced by the token-proportional mixture and the published DoReMi tables do not apply.".to_string(),
        )
    };
    Ok(DatasetInfo {
        path,
        prepare,
        kind: kind.into(),
        domains,
        note,
    })
}

/// Builds the plan of `kind` from the arguments.
fn build_plan(kind: PlanKind, args: &Args) -> Result<Plan> {
    let mut preset = preset(args.preset_name(kind))?;
    if let Some(steps) = args.steps {
        preset = preset.with_steps(steps)?;
    }
    if let Some(device) = args.device {
        preset.device = device;
    }
    if let Some(limit) = args.mc_limit {
        preset.mc_limit_per_subject = (limit > 0).then_some(limit);
    }
    if args.seeds == 0 {
        bail!("--seeds 0: at least one seed");
    }
    // Read before the dataset, which may take minutes to generate and prepare.
    let own_methods = args
        .method_files
        .iter()
        .map(|file| method::load_method_file(file))
        .collect::<Result<Vec<_>>>()?;
    let dataset = dataset_info(args, &preset)?;
    // The ablation compares perplexity and the policy only.
    let mc = match (&args.mmlu, &dataset.prepare) {
        _ if kind == PlanKind::AblateExploration => None,
        (Some(dir), _) => Some(McInfo {
            data: dir.clone(),
            source: "mmlu".into(),
            limit_per_subject: preset.mc_limit_per_subject,
        }),
        (
            None,
            Some(PrepareSpec {
                corpus,
                synthetic: Some(_),
                ..
            }),
        ) => Some(McInfo {
            data: corpus.join("mc"),
            source: "synthetic".into(),
            limit_per_subject: preset.mc_limit_per_subject,
        }),
        _ => None,
    };
    if let (Some(mc), Some(PrepareSpec { corpus, .. })) = (&mc, &dataset.prepare)
        && mc.source == "synthetic"
        && corpus.join("corpus-info.json").is_file()
    {
        mixlab_data::synthetic::check_multiple_choice_version(corpus)?;
    }
    if let Some(mc) = &mc {
        McDataset::open(&mc.data)
            .with_context(|| format!("opening the multiple-choice set {}", mc.data.display()))?;
    }
    let mut all = match kind {
        PlanKind::Reproduce => reproduce_methods(&preset),
        PlanKind::AblateExploration => ablation_methods(&preset, dataset.domains.len()),
    };
    all.extend(own_methods);
    let methods = select_methods(all, &args.methods, &dataset)?;
    Ok(Plan {
        kind,
        preset,
        dataset,
        mc,
        seeds: seed_list(args.seeds),
        methods,
    })
}

/// The requested methods plus what they depend on, in run order; tables that do not apply to
/// the dataset are refused by name. `all` is the catalogue followed by the user's method files;
/// a method must come after the methods it depends on.
fn select_methods(
    all: Vec<Method>,
    wanted: &[String],
    dataset: &DatasetInfo,
) -> Result<Vec<Method>> {
    for (i, m) in all.iter().enumerate() {
        if all[..i].iter().any(|earlier| earlier.id == m.id) {
            bail!(
                "two methods are called {:?}: give a method file's method another id",
                m.id
            );
        }
        for dep in m.dependencies() {
            match all.iter().position(|d| d.id == dep) {
                Some(j) if j < i => {}
                Some(_) => bail!(
                    "method {} depends on {dep}, which comes after it: give {dep}'s method file first",
                    m.id
                ),
                None => bail!("method {} depends on {dep:?}, which is not a method", m.id),
            }
        }
    }
    let known: Vec<String> = all.iter().map(|m| m.id.clone()).collect();
    for w in wanted {
        if !known.contains(w) {
            bail!("unknown method {w:?}: expected one of {}", known.join(", "));
        }
    }
    let mut keep: Vec<String> = if wanted.is_empty() {
        known.clone()
    } else {
        wanted.to_vec()
    };
    if dataset.kind == "other" && wanted.is_empty() {
        // The published tables are defined for the Pile's domains only.
        keep.retain(|id| {
            let method = all.iter().find(|m| &m.id == id);
            !method.is_some_and(|m| {
                m.dataset_weights
                    .values()
                    .any(|w| matches!(w, PlanWeights::Table(_)))
            })
        });
    }
    // Dependencies: doremi needs its proxy, the proxy needs its reference.
    loop {
        let mut added = false;
        for m in &all {
            if !keep.contains(&m.id) {
                continue;
            }
            for dep in m.dependencies() {
                if !keep.iter().any(|k| k == dep) {
                    keep.push(dep.to_string());
                    added = true;
                }
            }
        }
        if !added {
            break;
        }
    }
    Ok(all.into_iter().filter(|m| keep.contains(&m.id)).collect())
}

/// Per-run wall-clock seconds by phase, summed over invocations (so resumed runs add up).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTiming {
    /// Seconds by phase: `train` (steps and periodic validation), `test`, `mc-harness`, `mc-paper`.
    pub seconds: BTreeMap<String, f64>,
}

impl RunTiming {
    /// Reads `timing.json` of a run directory (empty when absent).
    pub fn load(dir: &Path) -> Result<RunTiming> {
        let path = dir.join("timing.json");
        if !path.exists() {
            return Ok(RunTiming::default());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Adds to a phase that resumes (training after an interruption sums its sessions).
    fn add(dir: &Path, phase: &str, seconds: f64) -> Result<()> {
        let mut t = RunTiming::load(dir)?;
        *t.seconds.entry(phase.into()).or_default() += seconds;
        write_atomic(&dir.join("timing.json"), &serde_json::to_string_pretty(&t)?)
    }

    /// Sets the time of an evaluation: one that is computed again (its output was deleted)
    /// replaces the time of the output it replaces.
    fn set(dir: &Path, phase: &str, seconds: f64) -> Result<()> {
        let mut t = RunTiming::load(dir)?;
        t.seconds.insert(phase.into(), seconds);
        write_atomic(&dir.join("timing.json"), &serde_json::to_string_pretty(&t)?)
    }
}

/// Writes `text` to `path` whole or not at all (mixlab-atomic: a unique synced temporary, a
/// rename and a sync of the directory; safe across the threads of `--jobs`).
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    Ok(mixlab_atomic::write_file(path, text)?)
}

/// Where a plan of `kind` at `preset` goes when `--out` is not given: a directory of the user's
/// under `runs/` (ignored by git), so that a run never rewrites the committed references in
/// `results/` (see [`reference`]).
pub fn default_out(kind: PlanKind, preset: &str) -> PathBuf {
    PathBuf::from("runs").join(match kind {
        PlanKind::Reproduce => format!("reproduce-{preset}"),
        PlanKind::AblateExploration => format!("ablate-exploration-{preset}"),
    })
}

/// Runs `reproduce` or `ablate-exploration`: plan, runs, evaluations, report.
pub fn run(kind: PlanKind, args: Args) -> Result<()> {
    let name = args.preset_name(kind);
    let out = args.out.clone().unwrap_or_else(|| default_out(kind, name));
    // Checked before planning, which may generate and prepare a corpus.
    if args.jobs == Some(0) {
        bail!("--jobs must be at least 1");
    }
    let plan = build_plan(kind, &args)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // One `reproduce` per results directory while it runs (each run's directory is locked by
    // its own training as well).
    let _lock = mixlab_data::lock::DirLock::acquire(&out)?;
    let plan_path = out.join("plan.json");
    if plan_path.exists() {
        let text = std::fs::read_to_string(&plan_path)
            .with_context(|| format!("reading {}", plan_path.display()))?;
        let saved = Plan::saved_semantics(&text, &plan_path)?;
        match reconcile_plans(&saved, &plan)? {
            PlanChange::Same => {}
            PlanChange::AddsMethods(added) => {
                eprintln!(
                    "{}: adding {} to the saved plan (its finished runs are kept)",
                    out.display(),
                    added.join(", ")
                );
                write_atomic(&plan_path, &serde_json::to_string_pretty(&plan)?)?;
            }
            PlanChange::Different(fields) => bail!(
                "{} holds a different plan (differs in: {}); rerun with the original arguments to resume, add methods with --methods, or choose another --out",
                out.display(),
                fields.join(", ")
            ),
        }
    } else {
        write_atomic(&plan_path, &serde_json::to_string_pretty(&plan)?)?;
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let history = out.join("commands.txt");
    let mut previous = std::fs::read_to_string(&history).unwrap_or_default();
    previous.push_str(&command);
    previous.push('\n');
    write_atomic(&history, &previous)?;

    let stop = crate::stop::stop_flag()?;
    let jobs = match args.jobs {
        Some(n) => n,
        None => default_jobs(plan.preset.device),
    };
    eprintln!("results directory: {}", out.display());
    let reference = reference::find(&out, kind, name);
    if let Some(dir) = &reference {
        eprintln!(
            "its report will compare with the committed reference {}",
            dir.display()
        );
    }
    run_all(&plan, &out, &stop, jobs)?;
    let written = report::write_report(&out, reference.as_deref())?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
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

/// How a requested plan relates to the one saved in a results directory.
#[derive(Debug, PartialEq)]
enum PlanChange {
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
fn reconcile_plans(saved: &serde_json::Value, requested: &Plan) -> Result<PlanChange> {
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

/// Runs at a time when `--jobs` is not given: every core on a CPU, one run on a GPU.
fn default_jobs(device: DeviceSpec) -> usize {
    match device {
        DeviceSpec::Cpu | DeviceSpec::TchCpu => {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
        DeviceSpec::Cuda(_) => 1,
    }
}

/// Every run of the plan, `jobs` at a time, each after the run it depends on. With one job the
/// runs go in plan order in this process with their own progress bars; with more, each run is a
/// child process ([`child`]) whose progress is a line of its own here. After a failure no new run
/// starts; the ones under way finish (or checkpoint), and the first error is returned.
fn run_all(plan: &Plan, out: &Path, stop: &Arc<AtomicBool>, jobs: usize) -> Result<()> {
    let runs: Vec<(u64, &Method)> = plan
        .seeds
        .iter()
        .flat_map(|&seed| plan.methods.iter().map(move |m| (seed, m)))
        .collect();
    let total = runs.len();
    let finished: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, (seed, m))| {
            Plan::run_dir(out, &m.id, *seed)
                .join("summary.json")
                .is_file()
        })
        .map(|(i, _)| i)
        .collect();
    let progress = Arc::new(progress::PlanProgress::new(
        total,
        &finished,
        plan.preset.steps,
        (plan.preset.batch_size * plan.preset.seq_len) as u64,
    ));
    let result = if jobs <= 1 {
        run_in_order(plan, out, stop, &runs, &progress)
    } else {
        run_jobs(plan, out, stop, jobs, &runs, &progress)
    };
    progress.finish();
    result
}

/// The runs one after another in this process (`--jobs 1`).
fn run_in_order(
    plan: &Plan,
    out: &Path,
    stop: &Arc<AtomicBool>,
    runs: &[(u64, &Method)],
    progress: &Arc<progress::PlanProgress>,
) -> Result<()> {
    for (i, &(seed, method)) in runs.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            return Err(Stopped::same_command(Vec::new()).into());
        }
        progress.println(&format!(
            "[{}/{}] {} (seed {seed})",
            i + 1,
            runs.len(),
            method.id
        ));
        let sink = progress.clone();
        let output = JobOutput::InProcess {
            group: progress.group().clone(),
            on_step: mixlab_train::StepHook(Arc::new(move |p| sink.step(i, p.step))),
        };
        let result = run_method(plan, out, method, seed, stop, output);
        progress.end(i, result.is_ok());
        result?;
    }
    Ok(())
}

/// The runs `jobs` at a time, each a child process, each after the run it depends on.
fn run_jobs(
    plan: &Plan,
    out: &Path,
    stop: &Arc<AtomicBool>,
    jobs: usize,
    runs: &[(u64, &Method)],
    progress: &progress::PlanProgress,
) -> Result<()> {
    let total = runs.len();
    // The runs each one waits for (same seed), by index.
    let waits_for: Vec<Vec<usize>> = runs
        .iter()
        .map(|&(seed, m)| {
            m.dependencies()
                .into_iter()
                .filter_map(|dep| runs.iter().position(|&(s, d)| s == seed && d.id == dep))
                .collect()
        })
        .collect();
    let announce = |started: usize, i: usize| {
        let (seed, method) = runs[i];
        progress.println(&format!("[{started}/{total}] {} (seed {seed})", method.id));
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs.min(total).max(1)).max(1);
    let work = |i: usize| {
        if stop.load(Ordering::SeqCst) {
            return Err(Stopped::same_command(Vec::new()).into());
        }
        let (seed, method) = runs[i];
        let result = child::spawn_job(plan, out, method, seed, stop, (progress, i), threads);
        progress.end(i, result.is_ok());
        result
    };
    let errors = run_in_parallel(&waits_for, jobs, announce, work);
    // Stops are not failures: when nothing failed, one message lists every stopped run.
    let (stops, mut errors): (Vec<_>, Vec<_>) = errors
        .into_iter()
        .partition(|(_, e)| crate::stop::as_stopped(e).is_some());
    let stopped: Vec<StoppedRun> = stops
        .iter()
        .filter_map(|(_, e)| crate::stop::as_stopped(e))
        .flat_map(|s| s.runs.clone())
        .collect();
    if errors.is_empty() {
        if stops.is_empty() {
            return Ok(());
        }
        return Err(Stopped::same_command(stopped).into());
    }
    for run in &stopped {
        eprintln!(
            "also stopped: {}: step {} of {}",
            run.label, run.step, run.total
        );
    }
    let label = |i: usize| format!("{} (seed {})", runs[i].1.id, runs[i].0);
    for (i, e) in errors.iter().skip(1) {
        eprintln!("also failed: {}: {e:#}", label(*i));
    }
    let (i, first) = errors.remove(0);
    Err(first.context(format!("run {} failed", label(i))))
}

/// Where one task of [`run_in_parallel`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Waiting,
    Running,
    Done,
    Failed,
}

/// Runs tasks `0..waits_for.len()` on `jobs` threads, task `i` only after the tasks in
/// `waits_for[i]` succeeded. Of the ready tasks, the one heading the longest chain of tasks waiting on it goes
/// first (then the lowest index): on few cores the DoReMi chain (reference, proxy, main run)
/// would otherwise start its proxy only after every independent run, and finish last alone.
/// `announce(n, i)` as task `i` starts as the `n`-th. After a failure (an error or a panic) no new task starts and those under way finish.
/// Returns the failures in the order they happened, with their task index.
fn run_in_parallel(
    waits_for: &[Vec<usize>],
    jobs: usize,
    announce: impl Fn(usize, usize) + Sync,
    work: impl Fn(usize) -> Result<()> + Sync,
) -> Vec<(usize, anyhow::Error)> {
    struct Board {
        states: Vec<TaskState>,
        errors: Vec<(usize, anyhow::Error)>,
        started: usize,
    }
    let total = waits_for.len();
    let board = std::sync::Mutex::new(Board {
        states: vec![TaskState::Waiting; total],
        errors: Vec::new(),
        started: 0,
    });
    let chain = chain_lengths(waits_for);
    let changed = std::sync::Condvar::new();
    let lock = || {
        board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let next = || -> Option<usize> {
        let mut guard = lock();
        loop {
            if !guard.errors.is_empty() {
                return None;
            }
            let states = &guard.states;
            let ready = (0..total)
                .filter(|&i| {
                    states[i] == TaskState::Waiting
                        && waits_for[i].iter().all(|&d| states[d] == TaskState::Done)
                })
                .max_by_key(|&i| (chain[i], std::cmp::Reverse(i)));
            if let Some(i) = ready {
                guard.states[i] = TaskState::Running;
                guard.started += 1;
                announce(guard.started, i);
                return Some(i);
            }
            if !guard.states.contains(&TaskState::Running) {
                return None;
            }
            guard = changed
                .wait(guard)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, total.max(1)) {
            scope.spawn(|| {
                while let Some(i) = next() {
                    // A panic (burn panics on some device errors) must still end the task, or
                    // the tasks waiting for it would wait forever.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(i)))
                        .unwrap_or_else(|panic| {
                            let what = panic
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "a panic".into());
                            Err(anyhow::anyhow!("panicked: {what}"))
                        });
                    let mut guard = lock();
                    match result {
                        Ok(()) => guard.states[i] = TaskState::Done,
                        Err(e) => {
                            guard.states[i] = TaskState::Failed;
                            guard.errors.push((i, e));
                        }
                    }
                    changed.notify_all();
                }
            });
        }
    });
    board
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .errors
}

/// For each task, the number of tasks in the longest chain that starts with it (itself, a task
/// waiting for it, one waiting for that, ...).
fn chain_lengths(waits_for: &[Vec<usize>]) -> Vec<usize> {
    let mut chain = vec![1; waits_for.len()];
    // Each pass lengthens chains by at least one link; a chain has at most `len` tasks.
    for _ in 0..waits_for.len() {
        let mut changed = false;
        for (i, deps) in waits_for.iter().enumerate() {
            for &d in deps {
                if chain[d] < chain[i] + 1 {
                    chain[d] = chain[i] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    chain
}

/// Trains (or resumes, or skips) one run, then fills in its missing evaluations, showing
/// progress as `output` says.
fn run_method(
    plan: &Plan,
    out: &Path,
    method: &Method,
    seed: u64,
    stop: &Arc<AtomicBool>,
    output: JobOutput,
) -> Result<()> {
    let config = plan.train_config(out, method, seed)?;
    let dir = config.out_dir.clone();
    if !dir.join("summary.json").is_file() {
        let checkpoints = mixlab_train::checkpoint::list_checkpoints(&dir.join("checkpoints"))?;
        if checkpoints.is_empty() && dir.exists() {
            // Stopped before its first checkpoint: nothing to resume, start it again.
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let reference = method
            .reference_model
            .as_ref()
            .map(|reference| Plan::run_dir(out, reference, seed).join("final"));
        let options = RunOptions {
            max_steps: None,
            resume: !checkpoints.is_empty(),
            progress: matches!(output, JobOutput::InProcess { .. }),
            stop: Some(stop.clone()),
            progress_group: match &output {
                JobOutput::InProcess { group, .. } => Some(group.clone()),
                JobOutput::Child(_) => None,
            },
            on_step: match &output {
                JobOutput::InProcess { on_step, .. } | JobOutput::Child(on_step) => {
                    Some(on_step.clone())
                }
            },
            fail_checkpoint_at: None,
        };
        let started = Instant::now();
        let summary = crate::train_cmd::run_config(&config, &options, reference.as_deref())
            .with_context(|| {
                format!("training {} (seed {seed}) in {}", method.id, dir.display())
            })?;
        RunTiming::add(&dir, "train", started.elapsed().as_secs_f64())?;
        if !summary.finished {
            return Err(Stopped::same_command(vec![StoppedRun {
                label: format!("{} (seed {seed})", method.id),
                step: summary.steps,
                total: config.training.steps,
            }])
            .into());
        }
    }
    if !method.reported {
        return Ok(());
    }
    output.evaluating();
    let spec = plan.preset.device;
    // Evaluation bars of their own would be drawn outside the plan's group and garble it.
    let progress = false;
    match spec {
        DeviceSpec::Cpu => evaluate_run::<CpuBackend>(plan, &dir, &cpu_device(), progress),
        #[cfg(feature = "tch")]
        DeviceSpec::TchCpu => evaluate_run::<mixlab_model::TchBackend>(
            plan,
            &dir,
            &mixlab_model::tch_cpu_device(),
            progress,
        ),
        #[cfg(not(feature = "tch"))]
        DeviceSpec::TchCpu => Err(mixlab_model::ModelError::TchNotBuilt.into()),
        DeviceSpec::Cuda(i) => {
            let device = cuda_device(i, Precision::F32)?;
            evaluate_run::<CudaBackend>(plan, &dir, &device, progress)
        }
    }
}

/// The run's test perplexity and multiple choice, whichever are missing (`progress`: with bars).
/// A finished run whose evaluations are missing needs its final weights; committed results
/// keep no weights, so say what happened and what to do instead of naming a missing file.
fn require_weights(dir: &Path) -> Result<()> {
    let final_dir = dir.join("final");
    if final_dir.join("config.json").is_file() && final_dir.join("model.safetensors").is_file() {
        return Ok(());
    }
    bail!(
        "{} finished training but an evaluation is missing, and its final weights ({}) are gone \
         (committed results keep none), so it cannot be evaluated again; move the run directory \
         away to train it again, or restore the evaluation file",
        dir.display(),
        final_dir.display()
    )
}

fn evaluate_run<B: ModelBackend>(
    plan: &Plan,
    dir: &Path,
    device: &B::Device,
    progress: bool,
) -> Result<()> {
    let final_dir = dir.join("final");
    let test_path = dir.join("test-ppl.json");
    let protocols: Vec<Protocol> = if plan.mc.is_some() {
        Protocol::ALL.to_vec()
    } else {
        Vec::new()
    };
    let missing_mc = protocols
        .iter()
        .any(|p| !dir.join(format!("mc-{p}.json")).is_file());
    if test_path.is_file() && !missing_mc {
        return Ok(());
    }
    require_weights(dir)?;
    let model = GptNeoX::<B>::load_pretrained(&final_dir, device)
        .with_context(|| format!("loading {}", final_dir.display()))?;
    if !test_path.is_file() {
        let started = Instant::now();
        let store = DomainStore::open(&plan.dataset.path, &OpenOptions::default())?;
        let config = PerplexityConfig {
            max_sequences_per_domain: Some(plan.preset.test_max_sequences),
            batch_size: plan.preset.eval_batch_size,
            domains: Vec::new(),
            progress,
        };
        let report = evaluate_perplexity(&model, device, &store, Split::Test, &config)?;
        write_atomic(&test_path, &serde_json::to_string_pretty(&report)?)?;
        RunTiming::set(dir, "test", started.elapsed().as_secs_f64())?;
    }
    if let Some(mc) = &plan.mc {
        let dataset = McDataset::open(&mc.data)?;
        let tokenizer = load_tokenizer(&final_dir.join("tokenizer.json"))?;
        let mut scorer = ModelScorer::new(model, tokenizer, device.clone())?
            .with_batch_size(plan.preset.eval_batch_size);
        for protocol in protocols {
            let path = dir.join(format!("mc-{protocol}.json"));
            if path.is_file() {
                continue;
            }
            let started = Instant::now();
            let config = McConfig {
                protocol,
                limit_per_subject: mc.limit_per_subject,
                progress,
                ..McConfig::default()
            };
            let report = evaluate_multiple_choice(&mut scorer, &dataset, &config, None)?;
            write_atomic(&path, &(serde_json::to_string_pretty(&report)? + "\n"))?;
            RunTiming::set(
                dir,
                &format!("mc-{protocol}"),
                started.elapsed().as_secs_f64(),
            )?;
        }
    }
    Ok(())
}

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A results directory written by `reproduce` or `ablate-exploration` (holds plan.json).
    pub dir: PathBuf,
    /// A results directory to compare with (default: the committed `results/<preset>` of the
    /// same kind, when it exists and is not DIR).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Compare with no reference.
    #[arg(long, conflicts_with = "reference")]
    pub no_reference: bool,
}

/// Runs `report`: re-renders report.md and the figures from the files alone.
pub fn run_report(args: ReportArgs) -> Result<()> {
    let reference = if args.no_reference {
        None
    } else if let Some(dir) = args.reference {
        Some(dir)
    } else {
        let plan = Plan::load(&args.dir)?;
        reference::find(&args.dir, plan.kind, &plan.preset.name)
    };
    for path in report::write_report(&args.dir, reference.as_deref())? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic_plan(kind: PlanKind) -> Plan {
        let preset = preset("tiny").expect("known");
        let domains: Vec<String> = DomainKind::ALL
            .iter()
            .map(|d| d.name().to_string())
            .collect();
        let methods = match kind {
            PlanKind::Reproduce => reproduce_methods(&preset),
            PlanKind::AblateExploration => ablation_methods(&preset, domains.len()),
        };
        Plan {
            kind,
            preset,
            dataset: DatasetInfo {
                path: "data/x".into(),
                prepare: None,
                kind: "synthetic".into(),
                domains,
                note: String::new(),
            },
            mc: None,
            seeds: vec![42],
            methods,
        }
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
                let mixer = crate::mixers::registry();
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

    /// Task events in the order they happened: (task, started?).
    type Events = std::sync::Mutex<Vec<(usize, bool)>>;

    fn position(events: &[(usize, bool)], task: usize, start: bool) -> Option<usize> {
        events.iter().position(|&e| e == (task, start))
    }

    #[test]
    fn parallel_tasks_wait_for_their_dependency_and_all_run() {
        // 0 -> 1 -> 2 is a chain (reference, proxy, main run); 3 and 4 are free.
        let waits_for = [vec![], vec![0], vec![1], vec![], vec![]];
        let events = Events::default();
        let announced = std::sync::Mutex::new(Vec::new());
        let errors = run_in_parallel(
            &waits_for,
            3,
            |n, i| announced.lock().unwrap().push((n, i)),
            |i| {
                events.lock().unwrap().push((i, true));
                std::thread::sleep(std::time::Duration::from_millis(20));
                events.lock().unwrap().push((i, false));
                Ok(())
            },
        );
        assert!(errors.is_empty());
        let events = events.into_inner().unwrap();
        assert_eq!(events.len(), 10, "every task ran once: {events:?}");
        for (task, dep) in [(1, 0), (2, 1)] {
            assert!(
                position(&events, dep, false) < position(&events, task, true),
                "{task} started before {dep} ended: {events:?}"
            );
        }
        let announced = announced.into_inner().unwrap();
        let numbers: Vec<usize> = announced.iter().map(|&(n, _)| n).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
        assert_eq!(
            announced[0],
            (1, 0),
            "the head of the longest chain goes first"
        );
    }

    #[test]
    fn the_longest_chain_starts_first() {
        // The reproduce plan's shape: tpw, two free runs, then the proxy (after tpw) and DoReMi
        // (after the proxy).
        let waits_for = [vec![], vec![], vec![], vec![0], vec![3]];
        assert_eq!(chain_lengths(&waits_for), [3, 1, 1, 2, 1]);
        assert_eq!(chain_lengths(&[vec![], vec![0], vec![0]]), [2, 1, 1]);
        // A run waiting for two: both heads lengthen.
        assert_eq!(chain_lengths(&[vec![], vec![], vec![0, 1]]), [2, 2, 1]);
        // One thread shows the order: the proxy right after its reference, then by index.
        let order = std::sync::Mutex::new(Vec::new());
        let errors = run_in_parallel(
            &waits_for,
            1,
            |_, i| order.lock().unwrap().push(i),
            |_| Ok(()),
        );
        assert!(errors.is_empty());
        assert_eq!(order.into_inner().unwrap(), [0, 3, 1, 2, 4]);
    }

    #[test]
    fn a_failure_or_panic_stops_new_tasks_and_skips_its_dependents() {
        for panics in [false, true] {
            let waits_for = [vec![], vec![0], vec![]];
            let ran = std::sync::Mutex::new(Vec::new());
            let errors = run_in_parallel(
                &waits_for,
                2,
                |_, _| {},
                |i| {
                    ran.lock().unwrap().push(i);
                    if i == 0 {
                        if panics {
                            panic!("device lost");
                        }
                        bail!("bad config");
                    }
                    Ok(())
                },
            );
            let ran = ran.into_inner().unwrap();
            assert!(
                !ran.contains(&1),
                "the dependent of a failed task ran: {ran:?}"
            );
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].0, 0);
            let message = errors[0].1.to_string();
            let expected = if panics {
                "panicked: device lost"
            } else {
                "bad config"
            };
            assert_eq!(message, expected);
        }
    }

    #[test]
    fn dependencies_are_added_and_unknown_methods_refused() {
        let plan = synthetic_plan(PlanKind::Reproduce);
        let all = reproduce_methods(&plan.preset);
        let ids = |ms: Vec<Method>| ms.into_iter().map(|m| m.id).collect::<Vec<_>>();
        let picked = select_methods(all.clone(), &["doremi".into()], &plan.dataset).expect("ok");
        assert_eq!(ids(picked), ["tpw", "doremi-proxy", "doremi"]);
        let err = select_methods(all, &["odm".into()], &plan.dataset).expect_err("unknown");
        assert!(err.to_string().contains("odm-paper"), "{err}");
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
    fn evaluating_a_run_without_weights_says_why_it_cannot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("runs/tpw/seed-42");
        std::fs::create_dir_all(run.join("final")).expect("mkdir");
        let e = require_weights(&run).expect_err("no weights").to_string();
        assert!(
            e.contains("finished training") && e.contains("final weights") && e.contains("seed-42"),
            "{e}"
        );
        std::fs::write(run.join("final/config.json"), "{}").expect("write");
        std::fs::write(run.join("final/model.safetensors"), "").expect("write");
        require_weights(&run).expect("weights present");
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
}
