//! The loop's checkpoints: writing one whole (model, optimizer, mixer state, sampler cursors,
//! plan RNG and step, each file hashed, the directory renamed into place) and restoring the loop
//! from one, after checking that it belongs to this run.

use std::fs::OpenOptions as FileOptions;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, NamedMpkFileRecorder, Recorder};
use mixlab_model::TrainBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Loop;
use crate::checkpoint::{
    CHECKPOINT_VERSION, CheckpointState, DatasetIdentity, RngState, STATE_FILE, STATE_SHA_FILE,
    config_differences, list_checkpoints, prune, read_state, sha256_hex, step_dir, verify_files,
};
use crate::error::{Result, TrainError};

/// The error a write gets from a full disk (for [`RunOptions::fail_checkpoint_at`]).
fn disk_full() -> std::io::Error {
    #[cfg(target_os = "linux")]
    {
        std::io::Error::from_raw_os_error(28) // ENOSPC
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::io::Error::from(std::io::ErrorKind::StorageFull)
    }
}

/// Writes `bytes` to `path` and syncs them to disk; a failure keeps its OS error and the path.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(mixlab_atomic::write_synced(path, bytes)?)
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

impl<B: TrainBackend> Loop<B> {
    pub(super) fn dataset_identity(&self) -> DatasetIdentity {
        let m = self.store.manifest();
        DatasetIdentity {
            tokenizer_sha256: m.tokenizer_sha256.clone(),
            seq_len: m.seq_len,
            domains: m.domain_names(),
            train_sequences: self.samplers.iter().map(|s| s.len()).collect(),
        }
    }

    pub(super) fn restore(&mut self, dir: &Path) -> Result<()> {
        let state = read_state(dir)?;
        // A run started from `init_from` recorded the weights' hash in its config; resuming it
        // need not name the hash (the checkpoint wins over the directory), so it adopts it.
        if self.config.model.init_from.is_some()
            && self.config.model.init_sha256.is_none()
            && let Ok(saved) = toml::from_str::<crate::config::TrainConfig>(&state.config_toml)
        {
            self.config.model.init_sha256 = saved.model.init_sha256;
        }
        let diffs = config_differences(&state.config_toml, &self.config.to_toml());
        if !diffs.is_empty() {
            return Err(TrainError::checkpoint(
                dir,
                format!("was written by a different config: {}", diffs.join("; ")),
            ));
        }
        let identity = self.dataset_identity();
        if state.dataset != identity {
            return Err(TrainError::checkpoint(
                dir,
                format!(
                    "belongs to another dataset (tokenizer {} / seq_len {} / domains [{}]) than {} (tokenizer {} / seq_len {} / domains [{}])",
                    state.dataset.tokenizer_sha256,
                    state.dataset.seq_len,
                    state.dataset.domains.join(", "),
                    self.store.dir().display(),
                    identity.tokenizer_sha256,
                    identity.seq_len,
                    identity.domains.join(", ")
                ),
            ));
        }
        if state.model != self.model_config {
            return Err(TrainError::checkpoint(
                dir,
                format!(
                    "holds a model {:?}, the config builds {:?}",
                    state.model, self.model_config
                ),
            ));
        }
        if state.mixer_kind != self.mixer.kind() {
            return Err(TrainError::checkpoint(
                dir,
                format!(
                    "holds mixer `{}`, the config builds `{}`",
                    state.mixer_kind,
                    self.mixer.kind()
                ),
            ));
        }
        let rec = recorder();
        verify_files(dir, &state)?;
        let load_err = |what: &str, e: burn::record::RecorderError| {
            TrainError::checkpoint(dir.join(what), format!("cannot load: {e:?}"))
        };
        self.model = self
            .model
            .clone()
            .load_file(dir.join("model"), &rec, &self.device)
            .map_err(|e| load_err("model.mpk", e))?;
        let optim = Recorder::<B>::load(&rec, dir.join("optim"), &self.device)
            .map_err(|e| load_err("optim.mpk", e))?;
        self.optim = self.optim.clone().load_record(optim);
        self.mixer.restore_state(&state.mixer_state)?;
        for sampler in &mut self.samplers {
            let cursor = state.samplers.get(sampler.domain()).ok_or_else(|| {
                TrainError::checkpoint(dir, format!("no sampler cursor for `{}`", sampler.domain()))
            })?;
            sampler.set_cursor(*cursor)?;
        }
        let word_pos: u128 = state
            .plan_rng
            .word_pos
            .parse()
            .map_err(|_| TrainError::checkpoint(dir, "plan_rng.word_pos is not a number"))?;
        self.plan_rng = ChaCha8Rng::seed_from_u64(state.plan_rng.seed);
        self.plan_rng.set_word_pos(word_pos);
        self.plan_seed = state.plan_rng.seed;
        self.step = state.step;
        self.tokens_seen = state.tokens_seen;
        self.cumulative = state.cumulative_sequences;
        // Lines written after the checkpoint are written again by the resumed run.
        let f = FileOptions::new()
            .write(true)
            .open(&self.metrics_path)
            .map_err(|e| TrainError::io(&self.metrics_path, e))?;
        f.set_len(state.metrics_bytes)
            .map_err(|e| TrainError::io(&self.metrics_path, e))?;
        tracing::info!(step = self.step, checkpoint = %dir.display(), "resumed");
        Ok(())
    }

    /// Writes `checkpoints/step-N` through a temporary directory, fsync and a rename; returns
    /// its path. When a write fails (a full disk, say), the temporary directory is removed and
    /// the error names the OS cause, the file and the checkpoint a `--resume` continues from.
    pub(super) fn save_checkpoint(
        &self,
        cursors: &[mixlab_data::SamplerCursor],
        plan_word_pos: u128,
    ) -> Result<PathBuf> {
        // The dump's steps reach the disk before the checkpoint that a resume continues from.
        if let Some(dump) = &self.dump {
            dump.sync()?;
        }
        let root = self.run_dir.join("checkpoints");
        let tmp = root.join(format!(".step-{}.tmp", self.step));
        let result = self.write_checkpoint(&root, &tmp, cursors, plan_word_pos);
        if result.is_err() {
            // Nothing half-written stays behind, whatever failed; the complete checkpoints are
            // untouched.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        if let Err(TrainError::Io { path, source }) = result {
            let resume_from = list_checkpoints(&root)
                .ok()
                .and_then(|list| list.last().map(|(step, _)| *step));
            return Err(TrainError::CheckpointWrite {
                step: self.step,
                path,
                source,
                resume_from: match resume_from {
                    Some(step) => format!(
                        "the last complete checkpoint is step-{step}, from which --resume continues"
                    ),
                    None => {
                        "there is no complete checkpoint yet, so the run would start again".into()
                    }
                },
            });
        }
        result
    }

    /// [`Self::save_checkpoint`]'s writes. Tensors are encoded in memory by burn's recorder
    /// (the same bytes its file recorder writes) and written here, so that a failed write keeps
    /// its `std::io::Error` (burn's recorder turns it into an opaque message).
    pub(super) fn write_checkpoint(
        &self,
        root: &Path,
        tmp: &Path,
        cursors: &[mixlab_data::SamplerCursor],
        plan_word_pos: u128,
    ) -> Result<PathBuf> {
        let final_dir = step_dir(root, self.step);
        if tmp.exists() {
            std::fs::remove_dir_all(tmp).map_err(|e| TrainError::io(tmp, e))?;
        }
        std::fs::create_dir_all(tmp).map_err(|e| TrainError::io(tmp, e))?;
        let rec = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let encode_err = |what: &str, e: burn::record::RecorderError| {
            TrainError::checkpoint(tmp.join(what), format!("cannot encode: {e:?}"))
        };
        let model = Recorder::<B>::record(&rec, self.model.clone().into_record(), ())
            .map_err(|e| encode_err("model.mpk", e))?;
        let model_path = tmp.join("model.mpk");
        if self.fail_checkpoint_at == Some(self.step) {
            std::fs::write(&model_path, &model[..model.len() / 2])
                .map_err(|e| TrainError::io(&model_path, e))?;
            return Err(TrainError::io(&model_path, disk_full()));
        }
        write_synced(&model_path, &model)?;
        let optim = Recorder::<B>::record(&rec, self.optim.to_record(), ())
            .map_err(|e| encode_err("optim.mpk", e))?;
        write_synced(&tmp.join("optim.mpk"), &optim)?;
        let metrics_bytes = std::fs::metadata(&self.metrics_path)
            .map_err(|e| TrainError::io(&self.metrics_path, e))?
            .len();
        let state = CheckpointState {
            version: CHECKPOINT_VERSION,
            step: self.step,
            config_toml: self.config.to_toml(),
            dataset: self.dataset_identity(),
            model: self.model_config.clone(),
            samplers: self
                .samplers
                .iter()
                .zip(cursors)
                .map(|(s, c)| (s.domain().to_string(), *c))
                .collect(),
            plan_rng: RngState {
                seed: self.plan_seed,
                word_pos: plan_word_pos.to_string(),
            },
            mixer_kind: self.mixer.kind().to_string(),
            mixer_state: self.mixer.state()?,
            tokens_seen: self.tokens_seen,
            cumulative_sequences: self.cumulative.clone(),
            metrics_bytes,
            file_sha256: [("model.mpk", &model), ("optim.mpk", &optim)]
                .into_iter()
                .map(|(name, bytes)| (name.to_string(), sha256_hex(bytes)))
                .collect(),
        };
        // state.json is written last: a directory without it is never taken for a checkpoint.
        let text = serde_json::to_string_pretty(&state).expect("state serialises");
        write_synced(
            &tmp.join(STATE_SHA_FILE),
            sha256_hex(text.as_bytes()).as_bytes(),
        )?;
        write_synced(&tmp.join(STATE_FILE), text.as_bytes())?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
        }
        std::fs::rename(tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
        // The rename is durable once the directory holding it is synced.
        mixlab_atomic::sync_dir(root)?;
        prune(root, self.config.checkpoint.keep)?;
        Ok(final_dir)
    }

    pub(super) fn checkpoint_now(&self) -> Result<PathBuf> {
        let cursors: Vec<_> = self.samplers.iter().map(|s| s.cursor()).collect();
        self.save_checkpoint(&cursors, self.plan_rng.get_word_pos())
    }
}
