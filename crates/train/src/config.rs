//! The training configuration: one TOML file describes a whole run.

use std::path::{Path, PathBuf};

use mixlab_model::{DeviceSpec, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::plan::Granularity;
use crate::schedule::LrSchedule;

/// A complete run: data, model, mixer, optimisation, evaluation, checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Run name, used in logs and reports.
    pub name: String,
    /// Where the data comes from.
    pub data: DataConfig,
    /// The model.
    pub model: ModelSpec,
    /// The mixer: a table with `kind = "<registered mixer>"` and that mixer's parameters.
    pub mixer: toml::Table,
    /// Batch shape, steps, seed and device.
    pub training: TrainingConfig,
    /// AdamW and gradient clipping.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Periodic validation.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Periodic checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Where the run directory goes.
    pub out_dir: PathBuf,
}

/// The dataset of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A prepared dataset directory (see `prepare-data`).
    pub dataset: PathBuf,
    /// How to prepare `dataset` when it does not exist yet; absent means it must exist.
    #[serde(default)]
    pub prepare: Option<PrepareSpec>,
}

/// How to prepare a dataset on first use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareSpec {
    /// Pile-format corpus: a directory or file.
    pub corpus: PathBuf,
    /// `train:VOCAB` or a tokenizer.json path.
    pub tokenizer: String,
    /// Context length of the prepared sequences.
    pub seq_len: usize,
    /// Generate mixlab's built-in synthetic corpus at `corpus` first when it does not exist.
    #[serde(default)]
    pub synthetic: Option<SyntheticSpec>,
}

/// The built-in synthetic corpus (see docs/default-corpus.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    /// Seed of the corpus generator.
    pub seed: u64,
    /// Size multiplier of every domain (1.0 = the documented defaults).
    pub scale: f64,
}

/// The model: a named preset, optionally with a full config instead.
///
/// `vocab_size` and `max_seq_len` always come from the dataset (its tokenizer and `seq_len`), so a
/// preset fits any prepared dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Preset name (`tiny`, `small`, `pythia-160m`, `pythia-410m`, `paper-1b`).
    #[serde(default)]
    pub preset: Option<String>,
    /// A full model configuration (takes precedence over `preset`).
    #[serde(default)]
    pub config: Option<ModelConfig>,
    /// Initial weights from an HF GPT-NeoX directory (`config.json` + `model.safetensors`: a
    /// mixlab run's `final/`, or a Pythia download) instead of a random initialisation. Its
    /// shape must be the one `preset` or `config` gives (without either, its `config.json`
    /// gives the shape); a `tokenizer.json` beside the weights must be the dataset's. A resumed
    /// run continues from its checkpoint and does not read this directory again.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// SHA-256 (hex) of `init_from`'s `model.safetensors`. Recorded in the run's `config.toml`
    /// when the run starts; when given, the file must have this hash.
    #[serde(default)]
    pub init_sha256: Option<String>,
}

impl ModelSpec {
    /// The model configuration for a dataset with `vocab_size` tokens and sequences of `seq_len`.
    pub fn resolve(&self, vocab_size: usize, seq_len: usize) -> Result<ModelConfig> {
        let base = match (&self.config, &self.preset, &self.init_from) {
            (Some(c), _, _) => c.clone(),
            (None, Some(p), _) => ModelConfig::preset(p)?,
            (None, None, Some(dir)) => {
                ModelConfig::read_hf_config(&dir.join(mixlab_model::checkpoint::CONFIG_FILE))?
            }
            (None, None, None) => {
                return Err(TrainError::config(
                    "model",
                    "give `preset`, `config` or `init_from`",
                ));
            }
        };
        let config = base.with_vocab_size(vocab_size).with_max_seq_len(seq_len);
        config.validate()?;
        Ok(config)
    }
}

/// Batch shape and run length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Sequences per optimizer step (the paper: 480).
    pub batch_size: usize,
    /// Micro-batches per step (gradient accumulation; the paper's G = 8). Must divide `batch_size`.
    pub micro_batches: usize,
    /// `micro-batch` (homogeneous micro-batches, the paper) or `sequence` (mixed).
    #[serde(default)]
    pub granularity: Granularity,
    /// Granularity during the mixer's warm-up; the released code later used `sequence` here.
    /// Absent: the same as `granularity`.
    #[serde(default)]
    pub warmup_granularity: Option<Granularity>,
    /// Steps during which `warmup_granularity` applies (usually the mixer's warm-up).
    #[serde(default)]
    pub warmup_steps: u64,
    /// Optimizer steps in the run.
    pub steps: u64,
    /// The run's seed: model init, data order and batch plans derive from it.
    pub seed: u64,
    /// `cpu`, `tch-cpu` (builds with `--features tch`), `cuda` (device 0, written back as
    /// `cuda:0`) or `cuda:N`; parsed when the config is read, so a misspelling is an error that
    /// names this key.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Data parallelism on one machine: the devices whose workers share each step's
    /// micro-batches (contiguous blocks in plan order, one model replica per worker; the
    /// gradients are summed on the first device, which holds the model, the optimizer and the
    /// checkpoints and must be `device`). Empty (the default): one worker on `device`. All of one
    /// kind; `cpu` may repeat (workers as threads on the CPU: for tests, not speed), a CUDA
    /// index may not; the number of workers must divide `micro_batches`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceSpec>,
    /// Write a metrics line every this many steps.
    #[serde(default = "one")]
    pub log_interval: u64,
}

fn one() -> u64 {
    1
}

impl TrainingConfig {
    /// Sequences per micro-batch.
    pub fn micro_batch_size(&self) -> usize {
        self.batch_size / self.micro_batches
    }

    /// How many workers share a step: `devices`' length, or 1 without them.
    pub fn workers(&self) -> usize {
        self.devices.len().max(1)
    }

    /// The granularity of 1-based `step`.
    pub fn granularity_at(&self, step: u64) -> Granularity {
        match self.warmup_granularity {
            Some(g) if step <= self.warmup_steps => g,
            _ => self.granularity,
        }
    }
}

/// AdamW as in the paper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Adam β1.
    pub beta1: f64,
    /// Adam β2.
    pub beta2: f64,
    /// Adam ε.
    pub epsilon: f64,
    /// Decoupled weight decay on weight matrices and embeddings (not on biases or LayerNorm).
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm; 0 disables clipping.
    pub grad_clip: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            weight_decay: 0.1,
            grad_clip: 1.0,
        }
    }
}

/// Periodic validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate every this many steps (and after the last step); 0 disables periodic evaluation.
    pub interval: u64,
    /// At most this many sequences per domain (the first ones in stored order; the paper: 5,000).
    pub max_sequences_per_domain: u64,
    /// Sequences per evaluation batch.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            interval: 1000,
            max_sequences_per_domain: 5000,
            batch_size: 16,
        }
    }
}

/// Periodic checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Checkpoint every this many steps (and at the end, on `--max-steps`, on SIGINT/SIGTERM);
    /// 0 checkpoints only then.
    pub interval: u64,
    /// Keep the newest this many checkpoints.
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: 1000,
            keep: 2,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML config; relative paths in it are taken relative to the current directory.
    pub fn load(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let config: TrainConfig = toml::from_str(&text).map_err(|e| TrainError::Config {
            field: path.display().to_string(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let t = &self.training;
        if t.micro_batches == 0
            || t.batch_size == 0
            || !t.batch_size.is_multiple_of(t.micro_batches)
        {
            return Err(TrainError::config(
                "training.micro_batches",
                format!(
                    "{} micro-batches must divide the batch of {} sequences",
                    t.micro_batches, t.batch_size
                ),
            ));
        }
        if t.steps == 0 {
            return Err(TrainError::config("training.steps", "must be at least 1"));
        }
        check_devices(t.device, &t.devices, t.micro_batches)?;
        if t.log_interval == 0 {
            return Err(TrainError::config(
                "training.log_interval",
                "must be at least 1",
            ));
        }
        if !(self.schedule.peak_lr > 0.0 && self.schedule.peak_lr.is_finite()) {
            return Err(TrainError::config("schedule.peak_lr", "must be positive"));
        }
        if !(0.0..1.0).contains(&self.schedule.warmup_fraction) {
            return Err(TrainError::config(
                "schedule.warmup_fraction",
                "must be in [0, 1)",
            ));
        }
        if self.checkpoint.keep == 0 {
            return Err(TrainError::config("checkpoint.keep", "must be at least 1"));
        }
        if self.eval.batch_size == 0 {
            return Err(TrainError::config("eval.batch_size", "must be at least 1"));
        }
        if !self.mixer.contains_key("kind") {
            return Err(TrainError::config(
                "mixer.kind",
                "missing (e.g. kind = \"odm\")",
            ));
        }
        Ok(())
    }

    /// The config as TOML, for the run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

#[cfg(test)]
mod shipped_configs {
    use super::TrainConfig;

    /// Every config the repository ships loads and validates, so a field renamed in the code
    /// cannot leave a documented command broken.
    #[test]
    fn every_config_in_configs_loads() {
        // The crate's directory at run time: a test binary reused from a target directory shared
        // with another checkout would carry that checkout's path.
        let crate_dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let dir = std::path::Path::new(&crate_dir).join("../../configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                TrainConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 3, "only {seen} configs in {}", dir.display());
    }
}

/// The rules of `training.devices` (see the field) for a run on `device` with `micro_batches`
/// micro-batches per step; errors name `training.devices`. Checked before anything runs.
pub fn check_devices(
    device: DeviceSpec,
    devices: &[DeviceSpec],
    micro_batches: usize,
) -> Result<()> {
    let Some(first) = devices.first() else {
        return Ok(());
    };
    let refuse = |reason: String| Err(TrainError::config("training.devices", reason));
    if *first != device {
        return refuse(format!(
            "the first device, `{first}`, must be training.device (`{device}`): it holds the model, the optimizer and the checkpoints"
        ));
    }
    let kind = |d: &DeviceSpec| std::mem::discriminant(d);
    if let Some(other) = devices.iter().find(|d| kind(d) != kind(first)) {
        return refuse(format!(
            "`{first}` and `{other}` are different backends; the workers of a run share one"
        ));
    }
    for (i, d) in devices.iter().enumerate() {
        if matches!(d, DeviceSpec::Cuda(_)) && devices[..i].contains(d) {
            return refuse(format!("`{d}` is listed twice; each GPU holds one worker"));
        }
    }
    let workers = devices.len();
    if workers > micro_batches || !micro_batches.is_multiple_of(workers) {
        return refuse(format!(
            "{workers} workers must divide the {micro_batches} micro-batches of a step (each takes an equal block)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_devices(micro_batches: usize, device: &str, devices: &str) -> Result<TrainConfig> {
        let text = format!(
            "name = \"t\"\nout_dir = \"o\"\n[data]\ndataset = \"d\"\n[model]\npreset = \"tiny\"\n\
             [mixer]\nkind = \"static\"\n[training]\nbatch_size = 8\nmicro_batches = {micro_batches}\n\
             steps = 1\nseed = 1\ndevice = \"{device}\"\ndevices = {devices}\n"
        );
        let config: TrainConfig = toml::from_str(&text).map_err(|e| TrainError::Config {
            field: "text".into(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn a_device_list_is_checked_before_training() {
        let ok = with_devices(4, "cuda:0", r#"["cuda:0", "cuda:1"]"#).unwrap();
        assert_eq!(ok.training.workers(), 2);
        assert_eq!(with_devices(4, "cpu", "[]").unwrap().training.workers(), 1);
        with_devices(4, "cpu", r#"["cpu", "cpu", "cpu", "cpu"]"#).unwrap();
        let refused = |mb: usize, device: &str, devices: &str, expected: &str| {
            let e = with_devices(mb, device, devices).unwrap_err().to_string();
            assert!(e.contains(expected), "{devices}: {e}");
        };
        refused(4, "cpu", r#"["cpu", "tpu"]"#, "tpu");
        refused(
            4,
            "cuda:0",
            r#"["cuda:0", "cuda:0"]"#,
            "`cuda:0` is listed twice",
        );
        refused(
            2,
            "cpu",
            r#"["cpu", "cpu", "cpu", "cpu"]"#,
            "4 workers must divide the 2 micro-batches",
        );
        refused(
            4,
            "cpu",
            r#"["cpu", "cpu", "cpu"]"#,
            "3 workers must divide the 4 micro-batches",
        );
        refused(
            4,
            "cpu",
            r#"["cuda:0", "cuda:1"]"#,
            "must be training.device (`cpu`)",
        );
        refused(4, "cuda:0", r#"["cuda:0", "cpu"]"#, "different backends");
        // Written back only when set, so the configs of one-device runs read as before.
        assert!(
            !toml::to_string(&with_devices(4, "cpu", "[]").unwrap())
                .unwrap()
                .contains("devices")
        );
        assert!(
            toml::to_string(&ok)
                .unwrap()
                .contains(r#"devices = ["cuda:0", "cuda:1"]"#)
        );
    }
}
