//! AdamW with decoupled weight decay on weight matrices and embeddings only, in one pass.
//!
//! GPT-NeoX (and the paper) decay every parameter of two or more dimensions and leave biases
//! and LayerNorm gains/shifts undecayed. burn's `AdamW` decays whatever it is given, so mixlab
//! used to run two `AdamW` instances over a split of the gradients. This optimizer makes the
//! same choice per tensor from its rank, which burn's `SimpleOptimizer` knows at compile time,
//! so one optimizer, one pass over the parameters and one checkpoint record remain. The update of
//! every tensor is burn's `AdamW` update with the same hyper-parameters as before, so losses are
//! bit-identical to the two-instance loop (checked by the train-loop tests' golden runs). It lives
//! here, beside the model, so that the training-step benchmark ([`crate::bench_training`]) runs
//! the trainer's optimizer; `mixlab-train` re-exports it.
//!
//! Where the backend has a one-pass kernel for the update ([`ModelBackend::adamw_update`]: burn's
//! CPU backend in f32), the optimizer runs it: burn's update is about fifteen element-wise
//! operations, each a pass over the parameter on one thread, and the kernel computes the same
//! bits (tested below against burn's `AdamW`).

use crate::fused::{AdamWUpdate, ModelBackend};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorPrimitive};

/// The training loop's optimizer over a module `M`.
pub type TrainOptimizer<M, B> = OptimizerAdaptor<DecoupledAdamW, M, B>;

/// AdamW that applies weight decay to tensors of rank ≥ 2 and none to vectors.
#[derive(Clone)]
pub struct DecoupledAdamW {
    /// For weight matrices and embeddings.
    decayed: AdamW,
    /// For biases and LayerNorm parameters: the same moments, weight decay 0.
    undecayed: AdamW,
    /// The hyper-parameters of both, for a backend's one-pass update (weight decay as for
    /// `decayed`).
    update: AdamWUpdate,
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
            update: AdamWUpdate {
                beta_1: beta1,
                beta_2: beta2,
                epsilon,
                weight_decay,
                lr: 0.0,
                time: 0,
            },
        }
    }

    /// The optimizer adaptor that steps a whole module.
    pub fn init<B: AutodiffBackend<InnerBackend: ModelBackend>, M: AutodiffModule<B>>(
        self,
    ) -> TrainOptimizer<M, B> {
        OptimizerAdaptor::from(self)
    }
}

impl<B: ModelBackend> SimpleOptimizer<B> for DecoupledAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let momentum = state.as_ref().map(|state| &state.momentum);
        // AMSGrad's extra moment is never set here (the configs leave it off).
        if momentum.is_none_or(|momentum| momentum.max_moment_2.is_none()) {
            let primitive = |t: &Tensor<B, D>| t.clone().into_primitive().tensor();
            let moments = momentum.map(|m| [primitive(&m.moment_1), primitive(&m.moment_2)]);
            let update = AdamWUpdate {
                lr,
                time: momentum.map_or(1, |m| m.time as i32 + 1),
                weight_decay: if D >= 2 {
                    self.update.weight_decay
                } else {
                    0.0
                },
                ..self.update
            };
            if let Some([param, moment_1, moment_2]) = B::adamw_update(
                &primitive(&tensor),
                &primitive(&grad),
                moments.as_ref().map(|[m, v]| [m, v]),
                update,
            ) {
                let wrap = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
                let momentum = AdaptiveMomentumState::new(
                    update.time as usize,
                    wrap(moment_1),
                    wrap(moment_2),
                );
                return (wrap(param), Some(AdamWState { momentum }));
            }
        }
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

    /// The one-pass update (burn's CPU backend, f32) gives burn's `AdamW` bits over five
    /// updates: the parameter and both moments, for a decayed matrix and an undecayed vector,
    /// with a learning rate that changes every step. The kernel must be the path taken, or this
    /// would compare burn with itself.
    #[test]
    fn the_one_pass_update_equals_burns_adamw_bit_for_bit() {
        use burn::tensor::Distribution;
        fn check<const D: usize>(shape: [usize; D]) {
            let device = Default::default();
            let ours = DecoupledAdamW::new(0.9, 0.95, 1e-8, 0.1);
            let decay = if D >= 2 { 0.1 } else { 0.0 };
            let burns = AdamWConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.95)
                .with_epsilon(1e-8)
                .with_weight_decay(decay)
                .build();
            <Flex as burn::tensor::backend::Backend>::seed(&device, 3);
            let start = Tensor::<Flex, D>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let (mut a, mut b) = (start.clone(), start);
            let (mut state_a, mut state_b) = (None, None);
            let bits = |t: &Tensor<Flex, D>| -> Vec<u32> {
                t.to_data().iter::<f32>().map(f32::to_bits).collect()
            };
            for step in 0..5 {
                let grad =
                    Tensor::<Flex, D>::random(shape, Distribution::Normal(0.0, 1e-2), &device);
                if step == 0 {
                    let kernel = <Flex as ModelBackend>::adamw_update(
                        &a.clone().into_primitive().tensor(),
                        &grad.clone().into_primitive().tensor(),
                        None,
                        ours.update,
                    );
                    assert!(kernel.is_some(), "the CPU backend has the one-pass update");
                }
                let lr = 1e-3 * (1.0 + step as f64 / 3.0);
                (a, state_a) = ours.step(lr, a, grad.clone(), state_a);
                (b, state_b) = burns.step(lr, b, grad, state_b);
                // `assert!`, not `assert_eq!`: a failure would print 37,000 values.
                assert!(
                    bits(&a) == bits(&b),
                    "{shape:?}: parameter after step {step}"
                );
                let (ma, mb) = (
                    &state_a.as_ref().unwrap().momentum,
                    &state_b.as_ref().unwrap().momentum,
                );
                assert_eq!(ma.time, mb.time, "{shape:?}: update count");
                assert!(
                    bits(&ma.moment_1) == bits(&mb.moment_1),
                    "{shape:?}: first moment"
                );
                assert!(
                    bits(&ma.moment_2) == bits(&mb.moment_2),
                    "{shape:?}: second moment"
                );
            }
        }
        check([37, 1000]); // more than one parallel chunk
        check([300]);
    }
}
