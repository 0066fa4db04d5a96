//! Global-norm gradient clipping, as GPT-NeoX and the paper use (max norm 1.0).
//!
//! burn's `GradientClippingConfig::Norm` clips each parameter tensor by its own norm, which
//! changes the direction of the update; clipping by the norm of all gradients together keeps it.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor};

/// What [`clip_grad_norm`] measured and did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradNorm {
    /// L2 norm of all gradients together, before clipping (NaN or inf if any gradient is).
    pub norm: f64,
    /// Factor every gradient was multiplied by: `max_norm / (norm + 1e-6)` when that is below 1,
    /// else 1 (PyTorch `clip_grad_norm_` and DeepSpeed use the same rule).
    pub scale: f64,
}

impl GradNorm {
    /// Whether the gradients were scaled down.
    pub fn clipped(&self) -> bool {
        self.scale < 1.0
    }
}

/// Sums the squared entries of every gradient of `module` into one scalar tensor per parameter.
struct SquaredNorms<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    squares: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorms<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) else {
            return;
        };
        // Squares of bf16 gradients underflow and their sum loses digits; accumulate in f32.
        let grad = match grad.dtype() {
            DType::F16 | DType::BF16 => grad.cast(DType::F32),
            _ => grad,
        };
        self.squares.push(grad.square().sum());
    }
}

/// Multiplies every gradient of `module` by a constant.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    scale: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, grad.mul_scalar(self.scale));
        }
    }
}

/// L2 norm of all gradients of `module` together; one read-back from the device.
pub fn grad_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut visitor = SquaredNorms::<B> {
        grads,
        squares: Vec::new(),
    };
    module.visit(&mut visitor);
    if visitor.squares.is_empty() {
        return 0.0;
    }
    let total = Tensor::cat(visitor.squares, 0).sum();
    let total: f64 = read_scalar::<B::InnerBackend>(total);
    total.sqrt()
}

/// Reads a one-element tensor as f64 whatever its dtype (`into_scalar` would round through the
/// backend's default element type).
fn read_scalar<B: Backend>(tensor: Tensor<B, 1>) -> f64 {
    tensor.into_data().iter::<f64>().next().unwrap_or(f64::NAN)
}

/// Clips the gradients of `module` to a global L2 norm of at most `max_norm`.
///
/// A non-finite norm leaves the gradients untouched and is reported in [`GradNorm::norm`], so that
/// the training loop can skip the step instead of applying NaNs scaled by NaN.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, GradNorm) {
    let norm = grad_global_norm::<B, M>(module, &grads);
    let scale = if norm.is_finite() {
        (max_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    };
    if scale < 1.0 {
        module.visit(&mut ScaleGrads {
            grads: &mut grads,
            scale,
        });
    }
    (grads, GradNorm { norm, scale })
}
