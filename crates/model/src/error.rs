//! The one error type of `mixlab-model`.

use std::path::PathBuf;

/// Everything that can go wrong when configuring, placing, saving or loading a model.
///
/// Each variant names the field, tensor, file or device it is about, so that the message alone
/// tells a user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A [`crate::ModelConfig`] field has a value the architecture cannot use.
    #[error("invalid model config: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },

    /// A preset name that [`crate::ModelConfig::preset`] does not know.
    #[error("unknown model preset `{name}`; known presets: {known}")]
    UnknownPreset {
        /// The name that was asked for.
        name: String,
        /// The known preset names, comma-separated.
        known: String,
    },

    /// A device string that is not `cpu`, `tch-cpu`, `cuda` or `cuda:N`.
    #[error("invalid device `{spec}`: expected `cpu`, `tch-cpu`, `cuda` or `cuda:N`")]
    InvalidDevice {
        /// The string that failed to parse.
        spec: String,
    },

    /// `tch-cpu` was asked for by a build without the `tch` cargo feature.
    #[error(
        "device `tch-cpu` needs burn's libtorch backend, which this build lacks: build with `--features tch` and a PyTorch 2.9 installation (README, \"The libtorch CPU path\")"
    )]
    TchNotBuilt,

    /// CUDA was asked for but the first CUDA operation failed (no driver, no GPU, bad index).
    #[error("CUDA device {index} is not usable: {reason}")]
    CudaUnavailable {
        /// The requested device index.
        index: usize,
        /// What the CUDA runtime reported.
        reason: String,
    },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A file is not a readable safetensors file (bad header, truncated data).
    #[error("{}: not a valid safetensors file: {reason}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors parser reported.
        reason: String,
    },

    /// A GPT-NeoX parameter the config requires is absent from the file.
    #[error("{}: missing tensor `{name}`", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The HF parameter name.
        name: String,
    },

    /// A tensor in the file has a different shape from the one the config implies.
    #[error("{}: tensor `{name}` has shape {found:?}, but the model config needs {expected:?}", path.display())]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The HF parameter name.
        name: String,
        /// Shape in the file (HF layout).
        found: Vec<usize>,
        /// Shape the config implies (HF layout).
        expected: Vec<usize>,
    },

    /// A tensor is stored in a dtype this crate cannot read.
    #[error("{}: tensor `{name}` has dtype {dtype}; expected F32, F16, BF16 or F64", path.display())]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The HF parameter name.
        name: String,
        /// The dtype found, as safetensors spells it.
        dtype: String,
    },

    /// The file holds a tensor that is no parameter of this model (wrong architecture or config).
    #[error("{}: unexpected tensor `{name}`: not a GPT-NeoX parameter of this config", path.display())]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The unexpected name.
        name: String,
    },

    /// An HF `config.json` field is missing, of the wrong type, or describes another architecture.
    #[error("{}: config field `{field}`: {reason}", path.display())]
    HfConfig {
        /// The config file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A JSON file could not be parsed or written.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
}

/// `Result` with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;

impl From<mixlab_atomic::WriteError> for ModelError {
    fn from(e: mixlab_atomic::WriteError) -> Self {
        ModelError::Io {
            path: e.path,
            source: e.source,
        }
    }
}
