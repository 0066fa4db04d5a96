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

impl DecoupledAdamW {
    /// The update by the backend's one-pass kernel ([`ModelBackend::adamw_update`]), or the
    /// tensor and state back, untouched, where it has none (or the state holds AMSGrad's extra
    /// moment, which these configs never set).
    #[allow(clippy::type_complexity)]
    fn one_pass<B: ModelBackend, const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: &Tensor<B, D>,
        state: Option<AdamWState<B, D>>,
        weight_decay: f32,
    ) -> Result<(Tensor<B, D>, Option<AdamWState<B, D>>), (Tensor<B, D>, Option<AdamWState<B, D>>)>
    {
        let primitive = |t: Tensor<B, D>| t.into_primitive().tensor();
        let wrap = |t| Tensor::<B, D>::from_primitive(TensorPrimitive::Float(t));
        let (time, moments) = match state {
            Some(state) if state.momentum.max_moment_2.is_none() => {
                let momentum = state.momentum;
                let moments = [primitive(momentum.moment_1), primitive(momentum.moment_2)];
                (momentum.time, Some(moments))
            }
            None => (0, None),
            amsgrad => return Err((tensor, amsgrad)),
        };
        let update = AdamWUpdate {
            lr,
            time: time as i32 + 1,
            weight_decay,
            ..self.update
        };
        match B::adamw_update(primitive(tensor), &primitive(grad.clone()), moments, update) {
            Ok([param, moment_1, moment_2]) => {
                let momentum = AdaptiveMomentumState::new(time + 1, wrap(moment_1), wrap(moment_2));
                Ok((wrap(param), Some(AdamWState { momentum })))
            }
            Err((param, moments)) => {
                let state = moments.map(|[moment_1, moment_2]| AdamWState {
                    momentum: AdaptiveMomentumState::new(time, wrap(moment_1), wrap(moment_2)),
                });
                Err((wrap(param), state))
            }
        }
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
        let decay = if D >= 2 {
            self.update.weight_decay
        } else {
            0.0
        };
        let (tensor, state) = match self.one_pass(lr, tensor, &grad, state, decay) {
            Ok(updated) => return updated,
            Err(untouched) => untouched,
        };
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
