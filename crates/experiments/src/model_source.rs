//! Where a saved model's weights are, for the commands that evaluate one (`eval`, `eval-mc`):
//! a run directory, its `final/` (HF form), or a training checkpoint `checkpoints/step-N/`, so a
//! learning curve of any metric can be measured from the checkpoints a run already keeps.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use mixlab_model::GptNeoX;
use mixlab_train::TrainConfig;
use mixlab_train::checkpoint::read_state;

/// The weights to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// HF-format directory (`config.json` + `model.safetensors`), e.g. a run's `final/`.
    Pretrained(PathBuf),
    /// A training checkpoint (burn records plus `state.json`).
    Checkpoint(PathBuf),
}

/// A located model and the run it belongs to, when it belongs to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The weights.
    pub source: Source,
    /// The run's `config.toml`, when the model sits in a run directory.
    pub run_config: Option<PathBuf>,
}

/// Finds the model in `dir`: a `checkpoints/step-N/` directory, an HF-format directory, or a run
/// directory (its `final/`).
pub fn locate(dir: &Path) -> Result<Located> {
    let run_config = |run: &Path| Some(run.join("config.toml")).filter(|p| p.is_file());
    if dir.join("state.json").is_file() {
        let run = dir.parent().and_then(Path::parent).map(Path::to_path_buf);
        return Ok(Located {
            source: Source::Checkpoint(dir.to_path_buf()),
            run_config: run.as_deref().and_then(run_config),
        });
    }
    if dir.join("config.json").is_file() {
        let run = dir.parent().map(Path::to_path_buf);
        return Ok(Located {
            source: Source::Pretrained(dir.to_path_buf()),
            run_config: run.as_deref().and_then(run_config),
        });
    }
    if dir.join("final/config.json").is_file() {
        return Ok(Located {
            source: Source::Pretrained(dir.join("final")),
            run_config: run_config(dir),
        });
    }
    bail!(
        "{} is neither a run directory with final/, a final/ directory (config.json + \
         model.safetensors), nor a checkpoints/step-N directory (state.json + model.mpk)",
        dir.display()
    )
}

impl Located {
    /// The prepared dataset the model was trained on, from its run's `config.toml`.
    pub fn run_dataset(&self) -> Result<Option<PathBuf>> {
        self.run_config
            .as_deref()
            .map(|cfg| Ok(TrainConfig::load(cfg)?.data.dataset))
            .transpose()
    }

    /// The tokenizer the model was trained with: `tokenizer.json` beside HF-format weights, else
    /// the one the run's prepared dataset keeps beside its `manifest.json`.
    pub fn tokenizer(&self) -> Result<Option<PathBuf>> {
        if let Source::Pretrained(dir) = &self.source {
            let beside = dir.join("tokenizer.json");
            if beside.is_file() {
                return Ok(Some(beside));
            }
        }
        Ok(self
            .run_dataset()?
            .map(|dataset| dataset.join("tokenizer.json"))
            .filter(|path| path.is_file()))
    }

    /// Loads the weights onto `device`.
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<GptNeoX<B>> {
        match &self.source {
            Source::Pretrained(dir) => GptNeoX::<B>::load_pretrained(dir, device)
                .with_context(|| format!("loading the model in {}", dir.display())),
            Source::Checkpoint(dir) => {
                let state = read_state(dir)?;
                let model = state.model.init_lazy::<B>(device)?;
                let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
                model
                    .load_file(dir.join("model"), &recorder, device)
                    .with_context(|| format!("loading {}", dir.join("model.mpk").display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn finds_each_layout_and_its_run() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        touch(&run.join("config.toml"));
        touch(&run.join("final/config.json"));
        touch(&run.join("checkpoints/step-40/state.json"));

        let from_run = locate(&run).unwrap();
        assert_eq!(from_run.source, Source::Pretrained(run.join("final")));
        assert_eq!(from_run.run_config, Some(run.join("config.toml")));

        let from_final = locate(&run.join("final")).unwrap();
        assert_eq!(from_final, from_run);

        let step = run.join("checkpoints/step-40");
        let from_step = locate(&step).unwrap();
        assert_eq!(from_step.source, Source::Checkpoint(step));
        assert_eq!(from_step.run_config, Some(run.join("config.toml")));
    }

    #[test]
    fn an_empty_directory_names_what_was_expected() {
        let tmp = tempfile::tempdir().unwrap();
        let err = locate(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
        assert!(err.contains("checkpoints/step-N"), "{err}");
    }

    #[test]
    fn a_checkpoint_outside_a_run_has_no_config() {
        let tmp = tempfile::tempdir().unwrap();
        touch(&tmp.path().join("step-1/state.json"));
        let located = locate(&tmp.path().join("step-1")).unwrap();
        assert_eq!(located.run_config, None);
        assert_eq!(located.tokenizer().unwrap(), None);
    }
}
