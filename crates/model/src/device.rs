//! Backends and run-time device selection.
//!
//! One build holds the pure-Rust CPU backend (burn's `flex`) and burn-cuda; a build with the
//! `tch` cargo feature adds burn's libtorch backend on the CPU (about 3x flex's training
//! throughput on 2 cores, but it needs a PyTorch installation to build and run, so it is an
//! opt-in). `--device cpu|tch-cpu|cuda[:N]` picks one at run time. Code that trains or
//! evaluates is generic over the backend, so callers dispatch once:
//!
//! ```text
//! match spec {
//!     DeviceSpec::Cpu => run::<CpuTrainBackend>(cpu_device()),
//!     #[cfg(feature = "tch")]
//!     DeviceSpec::TchCpu => run::<TchTrainBackend>(tch_cpu_device()),
//!     #[cfg(not(feature = "tch"))]
//!     DeviceSpec::TchCpu => Err(ModelError::TchNotBuilt)?,
//!     DeviceSpec::Cuda(index) => run::<CudaTrainBackend>(cuda_device(index, precision)?),
//! }
//! ```

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use burn::backend::Autodiff;
use burn::tensor::{FloatDType, IntDType, Tensor, get_device_settings, set_default_dtypes};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The CPU backend: burn `flex` (pure Rust, AVX-512 kernels with the `x86-v4` feature), f32.
pub type CpuBackend = burn::backend::Flex;
/// The CPU backend with automatic differentiation, for training.
pub type CpuTrainBackend = Autodiff<CpuBackend>;
/// The device of [`CpuBackend`] (there is one).
pub type CpuDevice = burn::backend::flex::FlexDevice;

/// burn's libtorch backend on the CPU, f32 (cargo feature `tch`).
#[cfg(feature = "tch")]
pub type TchBackend = burn::backend::LibTorch<f32>;
/// [`TchBackend`] with automatic differentiation (burn's, not libtorch's), for training.
#[cfg(feature = "tch")]
pub type TchTrainBackend = Autodiff<TchBackend>;
/// The device of [`TchBackend`].
#[cfg(feature = "tch")]
pub type TchDevice = burn::backend::libtorch::LibTorchDevice;

/// Whether this build has the libtorch backend (`tch-cpu`).
pub const TCH_BUILT: bool = cfg!(feature = "tch");

/// The libtorch CPU device.
#[cfg(feature = "tch")]
pub fn tch_cpu_device() -> TchDevice {
    TchDevice::Cpu
}

/// The CUDA backend. Its float type is chosen at run time per device (see [`cuda_device`]).
pub type CudaBackend = burn::backend::Cuda;
/// The CUDA backend with automatic differentiation, for training.
pub type CudaTrainBackend = Autodiff<CudaBackend>;
/// A CUDA device, by index.
pub type CudaDevice = burn::backend::cuda::CudaDevice;

/// Where to run: parsed from `cpu`, `tch-cpu`, `cuda` (device 0) or `cuda:N`.
///
/// Every build parses every spelling, so configs stay portable; a build without the `tch`
/// feature refuses `tch-cpu` when it dispatches ([`ModelError::TchNotBuilt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU with burn's pure-Rust `flex` backend.
    #[default]
    Cpu,
    /// The CPU with burn's libtorch backend (cargo feature `tch`).
    TchCpu,
    /// The CUDA device with this index.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = ModelError;

    fn from_str(spec: &str) -> Result<Self> {
        let invalid = || ModelError::InvalidDevice {
            spec: spec.to_owned(),
        };
        match spec.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "tch-cpu" => Ok(Self::TchCpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|index| index.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(invalid),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = ModelError;

    fn try_from(spec: String) -> Result<Self> {
        spec.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(spec: DeviceSpec) -> Self {
        spec.to_string()
    }
}

impl DeviceSpec {
    /// Whether this runs on the CPU (either backend): CPU runs share the machine's cores.
    pub fn is_cpu(self) -> bool {
        matches!(self, Self::Cpu | Self::TchCpu)
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::TchCpu => f.write_str("tch-cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// Float type of weights, activations and optimizer state on a CUDA device.
///
/// burn 0.21 has no autocast and no f32 master weights: `Bf16` stores everything in bf16 (losses
/// and gradient norms are still reduced in f32 by this crate). `F32` is the safe default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere.
    #[default]
    F32,
    /// bfloat16 everywhere (CUDA only).
    Bf16,
}

impl Precision {
    fn float_dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::Bf16 => FloatDType::BF16,
        }
    }
}

/// The CPU device.
pub fn cpu_device() -> CpuDevice {
    CpuDevice::default()
}

/// Opens CUDA device `index` with the given float precision and checks that it works.
///
/// CUDA is loaded dynamically, so a binary built with CUDA starts on any machine; the first CUDA
/// operation is where a missing driver or GPU shows up, and cubecl reports that by panicking,
/// often on its own server thread ("Unable to dynamically load the cuda shared library"), which
/// the calling thread then sees as a closed channel. This function runs a one-element round trip
/// inside `catch_unwind`, with a temporary panic hook that records (instead of printing) the
/// messages of panics on any thread, and returns [`ModelError::CudaUnavailable`] carrying the
/// first of them, i.e. the root cause.
pub fn cuda_device(index: usize, precision: Precision) -> Result<CudaDevice> {
    let device = CudaDevice { index };
    let unavailable = |reason: String| ModelError::CudaUnavailable { index, reason };

    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let previous_hook = std::panic::take_hook();
    let recorder = Arc::clone(&messages);
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut messages) = recorder.lock() {
            messages.push(panic_message(info.payload()));
        }
    }));
    let probe = catch_unwind(AssertUnwindSafe(|| -> std::result::Result<(), String> {
        let wanted = precision.float_dtype();
        if set_default_dtypes::<CudaBackend>(&device, wanted, IntDType::I32).is_err() {
            // Already initialised by an earlier call: fine only if the float type matches.
            let current = get_device_settings::<CudaBackend>(&device).float_dtype;
            if current != wanted {
                return Err(format!(
                    "the device is already in use with {current:?}, not {wanted:?}"
                ));
            }
        }
        let value = Tensor::<CudaBackend, 1>::ones([1], &device)
            .into_data()
            .iter::<f32>()
            .next();
        match value {
            Some(1.0) => Ok(()),
            other => Err(format!("a test tensor of ones read back as {other:?}")),
        }
    }));
    std::panic::set_hook(previous_hook);

    match probe {
        Ok(Ok(())) => Ok(device),
        Ok(Err(reason)) => Err(unavailable(reason)),
        Err(payload) => {
            let first = messages
                .lock()
                .ok()
                .and_then(|messages| messages.first().cloned());
            Err(unavailable(
                first.unwrap_or_else(|| panic_message(payload.as_ref())),
            ))
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or with a formatted message).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
        })
        .unwrap_or_else(|| "the CUDA runtime panicked without a message".to_owned())
}
