//! Checkpoint directories: `checkpoints/step-N/`, written to a temporary sibling and renamed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mixlab_data::SamplerCursor;
use mixlab_model::ModelConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Version of the checkpoint layout.
///
/// 2: one optimizer record (`optim.mpk`, see [`crate::optimizer`]). 1 had two
/// (`optim-decay.mpk`, `optim-no-decay.mpk`); its runs resume with mixlab before that change.
pub const CHECKPOINT_VERSION: u32 = 2;

/// The file holding everything but tensors.
pub const STATE_FILE: &str = "state.json";

/// The SHA-256 (hex) of [`STATE_FILE`]'s bytes, written beside it: the state records the tensor
/// files' hashes, and this one covers the state itself, so a flipped byte anywhere in a
/// checkpoint is found. Checkpoints written before it existed have none and are not checked.
pub const STATE_SHA_FILE: &str = "state.json.sha256";

/// Prefix under which a damaged checkpoint is set aside (`checkpoints/damaged-step-N`): kept for
/// inspection, and no longer listed by [`list_checkpoints`] or counted by [`prune`].
pub const DAMAGED_PREFIX: &str = "damaged-";

/// What the dataset of a run looked like, to refuse a checkpoint of another dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetIdentity {
    /// SHA-256 of the dataset's tokenizer.
    pub tokenizer_sha256: String,
    /// Context length of the dataset.
    pub seq_len: usize,
    /// Domain names in order.
    pub domains: Vec<String>,
    /// Training sequences per domain.
    pub train_sequences: Vec<u64>,
}

/// Position of a ChaCha8 stream: its seed and word position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RngState {
    /// Seed the stream was made from.
    pub seed: u64,
    /// Words consumed (ChaCha's `word_pos`), as a decimal string: JSON numbers cannot hold u128.
    pub word_pos: String,
}

/// The non-tensor part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointState {
    /// Layout version.
    pub version: u32,
    /// Optimizer steps completed.
    pub step: u64,
    /// The run's resolved configuration (TOML), compared on resume.
    pub config_toml: String,
    /// The dataset the run trains on.
    pub dataset: DatasetIdentity,
    /// The model's configuration.
    pub model: ModelConfig,
    /// Per-domain sampler positions, by domain name.
    pub samplers: BTreeMap<String, SamplerCursor>,
    /// The batch-plan random stream.
    pub plan_rng: RngState,
    /// The mixer's registry tag.
    pub mixer_kind: String,
    /// The mixer's full state.
    pub mixer_state: serde_json::Value,
    /// Training tokens consumed so far.
    pub tokens_seen: u64,
    /// Sequences drawn per domain so far.
    pub cumulative_sequences: Vec<u64>,
    /// Length of `metrics.jsonl` in bytes when the checkpoint was written; a resume truncates the
    /// file there so it continues exactly as an uninterrupted run would have written it.
    pub metrics_bytes: u64,
    /// SHA-256 (hex) of each tensor file (`model.mpk`, `optim.mpk`) as written: a resume checks
    /// them before loading, so a flipped byte is named instead of trained on.
    pub file_sha256: BTreeMap<String, String>,
}

/// The tensor files of a checkpoint, each verified against [`CheckpointState::file_sha256`].
pub const TENSOR_FILES: [&str; 2] = ["model.mpk", "optim.mpk"];

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks the tensor files of the checkpoint in `dir` against the hashes in its `state`.
pub fn verify_files(dir: &Path, state: &CheckpointState) -> Result<()> {
    for name in TENSOR_FILES {
        let path = dir.join(name);
        let expected = state.file_sha256.get(name).ok_or_else(|| {
            TrainError::checkpoint(
                dir.join(STATE_FILE),
                format!("records no SHA-256 for {name}"),
            )
        })?;
        let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        let found = sha256_hex(&bytes);
        if &found != expected {
            return Err(TrainError::checkpoint(
                &path,
                format!(
                    "is corrupt: its SHA-256 is {found}, {STATE_FILE} recorded {expected} when it was written"
                ),
            ));
        }
    }
    Ok(())
}

/// Whether a checkpoint's bytes are as they were written.
#[derive(Debug)]
pub enum Integrity {
    /// Every file matches its recorded SHA-256 (or the checkpoint predates the hashes; whether it
    /// may be resumed is then for the restore to decide).
    Intact,
    /// A file is missing, unreadable or differs from what was written; the error names it.
    Damaged(TrainError),
}

/// Checks the checkpoint in `dir` byte for byte: `state.json` against `state.json.sha256`
/// (when present), then its tensor files against the hashes `state.json` records. Reads every
/// file once; changes nothing.
pub fn check_integrity(dir: &Path) -> Integrity {
    let state_path = dir.join(STATE_FILE);
    let text = match std::fs::read(&state_path) {
        Ok(text) => text,
        Err(e) => return Integrity::Damaged(TrainError::io(&state_path, e)),
    };
    let sha_path = dir.join(STATE_SHA_FILE);
    match std::fs::read_to_string(&sha_path) {
        Ok(recorded) => {
            let found = sha256_hex(&text);
            if recorded.trim() != found {
                return Integrity::Damaged(TrainError::checkpoint(
                    &state_path,
                    format!(
                        "is corrupt: its SHA-256 is {found}, {STATE_SHA_FILE} recorded {} when it was written",
                        recorded.trim()
                    ),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Integrity::Damaged(TrainError::io(&sha_path, e)),
    }
    let state: CheckpointState = match serde_json::from_slice(&text) {
        Ok(state) => state,
        Err(e) => {
            return Integrity::Damaged(TrainError::checkpoint(
                &state_path,
                format!("corrupt state: {e}"),
            ));
        }
    };
    if TENSOR_FILES
        .iter()
        .any(|name| !state.file_sha256.contains_key(*name))
    {
        // Written before the hashes (or by another layout): the restore refuses it by name.
        return Integrity::Intact;
    }
    match verify_files(dir, &state) {
        Ok(()) => Integrity::Intact,
        Err(e) => Integrity::Damaged(e),
    }
}

/// Moves a damaged checkpoint out of the list (`step-N` → `damaged-step-N`, or
/// `damaged-step-N.2`, ... when that exists) and returns where it went.
pub fn set_aside(dir: &Path) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let mut target = parent.join(format!("{DAMAGED_PREFIX}{name}"));
    let mut n = 2;
    while target.exists() {
        target = parent.join(format!("{DAMAGED_PREFIX}{name}.{n}"));
        n += 1;
    }
    std::fs::rename(dir, &target).map_err(|e| TrainError::io(dir, e))?;
    mixlab_atomic::sync_dir(parent)?;
    Ok(target)
}

/// The checkpoint directory of `step` under `root`.
pub fn step_dir(root: &Path, step: u64) -> PathBuf {
    root.join(format!("step-{step}"))
}

/// Completed checkpoints under `root`, oldest first (temporary directories are ignored).
pub fn list_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    if !root.is_dir() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(root).map_err(|e| TrainError::io(root, e))? {
        let path = entry.map_err(|e| TrainError::io(root, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
            && path.join(STATE_FILE).is_file()
        {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads `state.json` of a checkpoint directory.
pub fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| TrainError::checkpoint(&path, format!("corrupt state: {e}")))?;
    if state.version == 1 {
        return Err(TrainError::checkpoint(
            &path,
            format!(
                "layout version 1 (two optimizer records) predates version {CHECKPOINT_VERSION} (one); resume this run with mixlab at commit f61e47c or earlier, or start it again"
            ),
        ));
    }
    if state.version != CHECKPOINT_VERSION {
        return Err(TrainError::checkpoint(
            &path,
            format!(
                "layout version {} is not {CHECKPOINT_VERSION}",
                state.version
            ),
        ));
    }
    Ok(state)
}

/// Flattens a TOML value into `a.b.c = value` lines, for a readable diff of two configs.
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The fields that differ between two TOML configs (ignoring `out_dir`), as `field: a -> b`.
pub fn config_differences(saved: &str, current: &str) -> Vec<String> {
    let parse = |s: &str| -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Ok(v) = s.parse::<toml::Table>() {
            flatten("", &toml::Value::Table(v), &mut out);
        }
        out.remove("out_dir");
        // One device, several spellings (`cuda` is written back as `cuda:0`): compare what they
        // mean, so a checkpoint of a config that said `cuda` resumes under `cuda:0`.
        if let Some(device) = out.get_mut("training.device")
            && let Ok(spec) = device.trim_matches('"').parse::<mixlab_model::DeviceSpec>()
        {
            *device = format!("\"{spec}\"");
        }
        out
    };
    let (a, b) = (parse(saved), parse(current));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k}: {} -> {}",
                a.get(k).map_or("(absent)", String::as_str),
                b.get(k).map_or("(absent)", String::as_str)
            )
        })
        .collect()
}

/// Removes all but the newest `keep` checkpoints.
pub fn prune(root: &Path, keep: usize) -> Result<()> {
    let all = list_checkpoints(root)?;
    if all.len() > keep {
        for (_, path) in &all[..all.len() - keep] {
            std::fs::remove_dir_all(path).map_err(|e| TrainError::io(path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_diff_names_fields() {
        let a = "out_dir = \"a\"\n[training]\nsteps = 10\nseed = 1\n";
        let b = "out_dir = \"b\"\n[training]\nsteps = 10\nseed = 2\n";
        assert_eq!(config_differences(a, b), vec!["training.seed: 1 -> 2"]);
        assert!(config_differences(a, a).is_empty());
    }

    #[test]
    fn device_spellings_of_one_device_are_the_same_config() {
        // A checkpoint written from a config that said `cuda` resumes under the resolved
        // `cuda:0`; another device is a difference.
        let saved = "[training]\ndevice = \"cuda\"\n";
        assert!(config_differences(saved, "[training]\ndevice = \"cuda:0\"\n").is_empty());
        assert!(config_differences(saved, "[training]\ndevice = \" CUDA \"\n").is_empty());
        assert_eq!(
            config_differences(saved, "[training]\ndevice = \"cuda:1\"\n"),
            vec!["training.device: \"cuda:0\" -> \"cuda:1\""]
        );
    }

    #[test]
    fn the_device_is_parsed_with_the_config() {
        let text = |device: &str| {
            format!(
                "name = \"t\"\nout_dir = \"o\"\n[data]\ndataset = \"d\"\n[model]\npreset = \"tiny\"\n\
                 [mixer]\nkind = \"static\"\n[training]\nbatch_size = 8\nmicro_batches = 1\nsteps = 1\nseed = 1\n{device}"
            )
        };
        let parse = |device: &str| toml::from_str::<crate::config::TrainConfig>(&text(device));
        let config = parse("device = \"cuda\"\n").expect("cuda parses");
        assert_eq!(config.training.device, mixlab_model::DeviceSpec::Cuda(0));
        let written = toml::to_string(&config).expect("serialises");
        assert!(written.contains("device = \"cuda:0\""), "{written}");
        assert_eq!(
            parse("").expect("default").training.device,
            mixlab_model::DeviceSpec::Cpu
        );
        let error = parse("device = \"gpu\"\n").unwrap_err().to_string();
        assert!(error.contains("device") && error.contains("gpu"), "{error}");
    }

    #[test]
    fn lists_only_complete_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        for (name, complete) in [
            ("step-2", true),
            ("step-10", true),
            (".step-12.tmp", true),
            ("step-11", false),
        ] {
            let p = dir.path().join(name);
            std::fs::create_dir_all(&p).unwrap();
            if complete {
                std::fs::write(p.join(STATE_FILE), "{}").unwrap();
            }
        }
        let steps: Vec<u64> = list_checkpoints(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(steps, vec![2, 10]);
        prune(dir.path(), 1).unwrap();
        assert!(!dir.path().join("step-2").exists());
        assert!(dir.path().join("step-10").exists());
    }
}
