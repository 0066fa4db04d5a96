//! Building a plan from a request: the preset and its overrides, the dataset (generated and
//! prepared on first use), the multiple-choice benchmark and the methods.

use std::path::PathBuf;

use mixlab_data::synthetic::DomainKind;
use mixlab_eval::McDataset;
use mixlab_mixing::{DomainSet, MixerRegistry};
use mixlab_model::DeviceSpec;
use mixlab_train::config::{
    CheckpointConfig, DataConfig, EvalConfig, ModelSpec, OptimizerConfig, PrepareSpec,
    SyntheticSpec, TrainingConfig,
};
use mixlab_train::{Granularity, LrSchedule, TrainConfig, open_dataset};

use crate::error::{Context, Result, bail};
use crate::method::{self, Method, PlanWeights, ablation_methods, reproduce_methods};
use crate::plan::{DatasetInfo, McInfo, Plan, PlanKind};
use crate::preset::{Preset, preset};

/// What a plan is built from (the command line's arguments, as plain data).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    /// Which comparison.
    pub kind: PlanKind,
    /// The preset's name (`smoke`, `quick`, `tiny`, `paper-1b`).
    pub preset: String,
    /// Optimizer steps of every run (None: the preset's); warm-ups stay 1% and 2%.
    pub steps: Option<u64>,
    /// The device (None: the preset's).
    pub device: Option<DeviceSpec>,
    /// Data parallelism: one worker per device, the first holding the model (None: the
    /// preset's one device); replaces `device`.
    pub devices: Option<Vec<DeviceSpec>>,
    /// Test questions per subject (None: the preset's; 0: all).
    pub mc_limit: Option<usize>,
    /// Seeds per method (the paper's four, then 1000, 1001, ...).
    pub seeds: usize,
    /// Only these methods (ids; their dependencies are added). Empty: all.
    pub methods: Vec<String>,
    /// Method files of the user's (see [`method`]), added after the built-in methods.
    pub method_files: Vec<PathBuf>,
    /// A Pile-format corpus or a prepared dataset (None: the built-in synthetic corpus).
    pub data: Option<PathBuf>,
    /// A tokenizer.json for preparing `data` (None: the preset's).
    pub tokenizer: Option<String>,
    /// A multiple-choice benchmark in the hendrycks/test layout (None: the synthetic corpus's
    /// own set, or none for `data`).
    pub mmlu: Option<PathBuf>,
    /// Where the synthetic corpus and prepared datasets go.
    pub data_root: PathBuf,
}

impl PlanRequest {
    /// A request for `kind` at its default preset (`tiny` for `reproduce`, `quick` for the
    /// ablation), one seed, every method, the synthetic corpus under `data/`.
    pub fn new(kind: PlanKind) -> Self {
        PlanRequest {
            kind,
            preset: kind.default_preset().into(),
            steps: None,
            device: None,
            devices: None,
            mc_limit: None,
            seeds: 1,
            methods: Vec::new(),
            method_files: Vec::new(),
            data: None,
            tokenizer: None,
            mmlu: None,
            data_root: PathBuf::from("data"),
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
fn dataset_info(args: &PlanRequest, preset: &Preset) -> Result<DatasetInfo> {
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
            init_from: None,
            init_sha256: None,
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
            devices: preset.devices.clone(),
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

/// Builds the plan a request asks for, preparing its dataset when missing. Method files are read
/// and checked against `mixers` (the mixers this program knows) before the dataset, so a
/// mistake in one is reported at once.
pub fn build_plan(args: &PlanRequest, mixers: &MixerRegistry) -> Result<Plan> {
    let kind = args.kind;
    let mut preset = preset(&args.preset)?;
    if let Some(steps) = args.steps {
        preset = preset.with_steps(steps)?;
    }
    if let Some(device) = args.device {
        preset.device = device;
    }
    if let Some(devices) = &args.devices {
        if let Some(first) = devices.first() {
            preset.device = *first;
        }
        preset.devices = devices.clone();
    }
    // Before the dataset, which may take minutes to generate and prepare.
    mixlab_train::config::check_devices(preset.device, &preset.devices, preset.micro_batches)?;
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
        .map(|file| method::load_method_file(file, mixers))
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
        PlanKind::Reproduce => reproduce_methods(&preset, dataset.domains.len()),
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
pub(crate) fn select_methods(
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
