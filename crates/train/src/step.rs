//! The passes of one optimizer step over its micro-batches: the token batches drawn in plan
//! order, a forward pass without gradients that measures the step's losses (for a mixer whose
//! loss weights must see this step's feedback first, DoReMi's proxy), and the forward +
//! backward pass that accumulates the step's gradient.

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use mixlab_data::DomainSampler;
use mixlab_model::GptNeoX;
use mixlab_model::{ModelBackend, TrainBackend};

use crate::error::Result;
use crate::plan::BatchPlan;

/// Draws the token rows of every micro-batch of `plan`, in plan order (so the data order is
/// the same whichever passes run over them), and counts them in `cumulative`; with `dump`,
/// also appends every token id to it in the same order (for the batch dump).
///
/// Each tensor is `[micro-batch size, width]`, width = sequence length + 1 (inputs and the
/// shifted targets).
pub(crate) fn draw_batches<B: Backend>(
    plan: &BatchPlan,
    samplers: &mut [DomainSampler],
    cumulative: &mut [u64],
    width: usize,
    device: &B::Device,
    mut dump: Option<&mut Vec<u32>>,
) -> Result<Vec<Tensor<B, 2, Int>>> {
    let mut batches = Vec::with_capacity(plan.domains.len());
    for domains in &plan.domains {
        let mut tokens: Vec<i64> = Vec::with_capacity(domains.len() * width);
        for &d in domains {
            let s = samplers[d].next_sequence()?;
            tokens.extend(s.iter().map(|&t| t as i64));
            if let Some(dump) = dump.as_deref_mut() {
                dump.extend_from_slice(&s);
            }
            cumulative[d] += 1;
        }
        batches.push(Tensor::from_data(
            TensorData::new(tokens, [domains.len(), width]),
            device,
        ));
    }
    Ok(batches)
}

/// The losses of a step, one entry per sequence in plan order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepLosses {
    /// Sum of the per-token losses of each sequence.
    pub(crate) nll: Vec<f64>,
    /// Sum over each sequence's tokens of max(ℓ_model − ℓ_reference, 0), when a reference
    /// model is loaded.
    pub(crate) excess: Option<Vec<f64>>,
}

/// Per-sequence sums still on the device: they are read once per step, after the step's last
/// micro-batch has been queued, so an asynchronous backend never waits inside the loop.
pub(crate) struct DeviceSums<B: ModelBackend> {
    nll: Vec<Tensor<B, 2>>,
    excess: Vec<Tensor<B, 2>>,
}

impl<B: ModelBackend> DeviceSums<B> {
    pub(crate) fn new() -> Self {
        Self {
            nll: Vec::new(),
            excess: Vec::new(),
        }
    }

    /// Adds one micro-batch: its per-token losses `[mbs, seq]`, and with a reference model the
    /// clipped excess over the reference's losses on the same tokens.
    fn push(
        &mut self,
        nll: Tensor<B, 2>,
        reference: Option<&GptNeoX<B>>,
        inputs: Tensor<B, 2, Int>,
        targets: Tensor<B, 2, Int>,
    ) {
        self.nll.push(nll.clone().sum_dim(1)); // [mbs, 1]
        if let Some(reference) = reference {
            let ref_nll = reference.per_token_nll(inputs, targets, None);
            self.excess.push((nll - ref_nll).clamp_min(0.0).sum_dim(1)); // [mbs, 1]
        }
    }

    /// Reads the sums to the host (one synchronisation).
    pub(crate) fn read(self) -> StepLosses {
        let read = |t: Tensor<B, 2>| t.into_data().iter::<f64>().collect::<Vec<f64>>();
        let nll = read(Tensor::cat(self.nll, 0));
        let excess = (!self.excess.is_empty()).then(|| read(Tensor::cat(self.excess, 0)));
        StepLosses { nll, excess }
    }
}

/// Splits a `[mbs, seq + 1]` batch into inputs and targets, each `[mbs, seq]`.
fn inputs_and_targets<B: Backend>(
    batch: Tensor<B, 2, Int>,
    seq: usize,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    (batch.clone().narrow(1, 0, seq), batch.narrow(1, 1, seq))
}

/// The step's losses from a forward pass without gradients (no autodiff graph is kept), with
/// the same kernels as the training pass, so the numbers equal those it would measure.
pub(crate) fn measure<B: TrainBackend>(
    model: &GptNeoX<B>,
    reference: Option<&GptNeoX<B::InnerBackend>>,
    batches: &[Tensor<B, 2, Int>],
    seq: usize,
) -> StepLosses {
    let model = model.valid();
    let mut sums = DeviceSums::new();
    for batch in batches {
        let (inputs, targets) = inputs_and_targets(batch.clone().inner(), seq);
        let nll = model.per_token_nll(inputs.clone(), targets.clone(), None);
        sums.push(nll, reference, inputs, targets);
    }
    sums.read()
}

/// Forward and backward over every micro-batch, accumulating the gradient of the step's loss:
/// the mean over all its tokens, or with `loss_weights` the mean weighted by each token's
/// domain weight (each token's loss times its weight, divided by the sum of the weights over
/// the step's tokens). Each micro-batch contributes its share, so the accumulated gradient is
/// exact. With `sums`, the pass also records the per-sequence losses it computed.
pub(crate) fn accumulate_gradients<B: TrainBackend>(
    model: &GptNeoX<B>,
    reference: Option<&GptNeoX<B::InnerBackend>>,
    batches: &[Tensor<B, 2, Int>],
    plan: &BatchPlan,
    loss_weights: Option<&[f64]>,
    seq: usize,
    mut sums: Option<&mut DeviceSums<B::InnerBackend>>,
) -> GradientsParams {
    let sequences: usize = plan.domains.iter().map(Vec::len).sum();
    let denominator: f64 = match loss_weights {
        None => (sequences * seq) as f64,
        Some(lw) => plan.domains.iter().flatten().map(|&d| lw[d]).sum::<f64>() * seq as f64,
    };
    let mut accumulator = GradientsAccumulator::<GptNeoX<B>>::new();
    for (batch, domains) in batches.iter().zip(&plan.domains) {
        let device = batch.device();
        let (inputs, targets) = inputs_and_targets(batch.clone(), seq);
        let nll = model.per_token_nll(inputs.clone(), targets.clone(), None); // [mbs, seq]
        if let Some(sums) = sums.as_deref_mut() {
            sums.push(
                nll.clone().inner(),
                reference,
                inputs.inner(),
                targets.inner(),
            );
        }
        let loss = match loss_weights {
            None => nll.sum().div_scalar(denominator),
            Some(lw) => {
                let w: Vec<f32> = domains.iter().map(|&d| lw[d] as f32).collect();
                let w = Tensor::<B, 2>::from_data(TensorData::new(w, [domains.len(), 1]), &device);
                (nll * w).sum().div_scalar(denominator)
            }
        };
        let grads = GradientsParams::from_grads(loss.backward(), model);
        accumulator.accumulate(model, grads);
    }
    accumulator.grads()
}
