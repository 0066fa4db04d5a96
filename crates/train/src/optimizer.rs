//! AdamW with decoupled weight decay on weight matrices and embeddings only, in one pass.
//!
//! GPT-NeoX (and the paper) decay every parameter of two or more dimensions and leave biases
//! and LayerNorm gains/shifts undecayed. burn's `AdamW` decays whatever it is given, so mixlab
//! used to run two `AdamW` instances over a split of the gradients. This optimizer makes the
//! same choice per tensor from its rank, which burn's `SimpleOptimizer` knows at compile time,
//! so one optimizer, one pass over the parameters and one checkpoint record remain. The update of
//! every tensor is burn's `AdamW` update with the same hyper-parameters as before, so losses are
//! bit-identical to the two-instance loop (checked by the train-loop tests' golden runs).

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, AdamWState, LearningRate, SimpleOptimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

/// The training loop's optimizer over a module `M`.
pub type TrainOptimizer<M, B> = OptimizerAdaptor<DecoupledAdamW, M, B>;

/// AdamW that applies weight decay to tensors of rank ≥ 2 and none to vectors.
#[derive(Clone)]
pub struct DecoupledAdamW {
    /// For weight matrices and embeddings.
    decayed: AdamW,
    /// For biases and LayerNorm parameters: the same moments, weight decay 0.
    undecayed: AdamW,
}

impl DecoupledAdamW {
    /// AdamW with `beta1`, `beta2`, `epsilon` and decoupled `weight_decay` (on rank ≥ 2 only).
    pub fn new(beta1: f32, beta2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let config = AdamWConfig::new()
            .with_beta_1(beta1)
            .with_beta_2(beta2)
            .with_epsilon(epsilon);
        Self {
            decayed: config.clone().with_weight_decay(weight_decay).build(),
            undecayed: config.with_weight_decay(0.0).build(),
        }
    }

    /// The optimizer adaptor that steps a whole module.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(self) -> TrainOptimizer<M, B> {
        OptimizerAdaptor::from(self)
    }
}

impl<B: Backend> SimpleOptimizer<B> for DecoupledAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        if D >= 2 {
            self.decayed.step(lr, tensor, grad, state)
        } else {
            self.undecayed.step(lr, tensor, grad, state)
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::{Tensor, TensorData};

    use super::*;

    type B = Autodiff<Flex>;

    /// One step from zero moments, by hand: m = (1-β1) g, v = (1-β2) g², bias-corrected
    /// m̂ = g, v̂ = g², so the Adam direction is g / (|g| + ε) ≈ sign(g) and
    /// w' = w (1 - lr λ) - lr sign(g) for the weight; the bias gets no decay factor.
    #[test]
    fn decays_matrices_and_not_vectors() {
        let device = Default::default();
        let linear: Linear<B> = LinearConfig::new(1, 1).init(&device);
        let linear = linear.load_record(burn::nn::LinearRecord {
            weight: burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![2.0f32], [1, 1]),
                &device,
            )),
            bias: Some(burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![2.0f32], [1]),
                &device,
            ))),
        });
        // loss = w·1 + b, so both gradients are +1.
        let x = Tensor::<B, 2>::from_data(TensorData::new(vec![1.0f32], [1, 1]), &device);
        let grads = GradientsParams::from_grads(linear.forward(x).sum().backward(), &linear);
        let mut optim = DecoupledAdamW::new(0.9, 0.95, 1e-8, 0.1).init::<B, Linear<B>>();
        let (lr, decay) = (0.01f64, 0.1f64);
        let linear = optim.step(lr, linear, grads);
        let w = linear
            .weight
            .val()
            .into_data()
            .iter::<f64>()
            .next()
            .unwrap();
        let b = linear
            .bias
            .unwrap()
            .val()
            .into_data()
            .iter::<f64>()
            .next()
            .unwrap();
        let direction = 1.0 / (1.0 + 1e-8);
        assert!(
            (w - (2.0 * (1.0 - lr * decay) - lr * direction)).abs() < 1e-6,
            "w = {w}"
        );
        assert!((b - (2.0 - lr * direction)).abs() < 1e-6, "b = {b}");
    }
}
