//! The passes of one optimizer step over its micro-batches: the token batches drawn in plan
//! order, a forward pass without gradients that measures the step's losses (for a mixer whose
//! loss weights must see this step's feedback first, DoReMi's proxy), and the forward +
//! backward pass that accumulates the step's gradient.

use burn::module::{AutodiffModule, Module};
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

/// The denominator of the step's loss: its token count, or with `loss_weights` the sum of every
/// token's domain weight.
fn loss_denominator(plan: &BatchPlan, loss_weights: Option<&[f64]>, seq: usize) -> f64 {
    match loss_weights {
        None => (plan.domains.iter().map(Vec::len).sum::<usize>() * seq) as f64,
        Some(lw) => plan.domains.iter().flatten().map(|&d| lw[d]).sum::<f64>() * seq as f64,
    }
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
    sums: Option<&mut DeviceSums<B::InnerBackend>>,
) -> GradientsParams {
    let denominator = loss_denominator(plan, loss_weights, seq);
    let block = Block {
        batches,
        domains: &plan.domains,
        loss_weights,
        denominator,
        seq,
    };
    block.accumulate(model, reference, sums)
}

/// Consecutive micro-batches of a step and what their share of the step's loss needs.
struct Block<'a, B: TrainBackend> {
    batches: &'a [Tensor<B, 2, Int>],
    domains: &'a [Vec<usize>],
    loss_weights: Option<&'a [f64]>,
    /// The whole step's (not the block's), so that the blocks' gradients add up to the step's.
    denominator: f64,
    seq: usize,
}

impl<B: TrainBackend> Block<'_, B> {
    fn accumulate(
        &self,
        model: &GptNeoX<B>,
        reference: Option<&GptNeoX<B::InnerBackend>>,
        mut sums: Option<&mut DeviceSums<B::InnerBackend>>,
    ) -> GradientsParams {
        let mut accumulator = GradientsAccumulator::<GptNeoX<B>>::new();
        for (batch, domains) in self.batches.iter().zip(self.domains) {
            let device = batch.device();
            let (inputs, targets) = inputs_and_targets(batch.clone(), self.seq);
            let nll = model.per_token_nll(inputs.clone(), targets.clone(), None); // [mbs, seq]
            if let Some(sums) = sums.as_deref_mut() {
                sums.push(
                    nll.clone().inner(),
                    reference,
                    inputs.inner(),
                    targets.inner(),
                );
            }
            let loss = share_of_loss(nll, domains, self.loss_weights, self.denominator, &device);
            let grads = GradientsParams::from_grads(loss.backward(), model);
            accumulator.accumulate(model, grads);
        }
        accumulator.grads()
    }
}

/// A micro-batch's share of the step's loss: its per-token losses `nll` (`[mbs, seq]`, the
/// sequences of `domains`) summed, each weighted by its domain's `loss_weights` entry if any,
/// over the step's `denominator`.
fn share_of_loss<B: TrainBackend>(
    nll: Tensor<B, 2>,
    domains: &[usize],
    loss_weights: Option<&[f64]>,
    denominator: f64,
    device: &B::Device,
) -> Tensor<B, 1> {
    match loss_weights {
        None => nll.sum().div_scalar(denominator),
        Some(lw) => {
            let w: Vec<f32> = domains.iter().map(|&d| lw[d] as f32).collect();
            let w = Tensor::<B, 2>::from_data(TensorData::new(w, [domains.len(), 1]), device);
            (nll * w).sum().div_scalar(denominator)
        }
    }
}

/// A step's training forward passes, kept for [`backward_kept`]: with
/// [`forward_and_keep`] and [`backward_kept`], a step measures its losses and then takes the
/// gradient of a loss weighted by what the mixer learned from them (DoReMi's proxy) in one
/// forward pass instead of [`measure`]'s and [`accumulate_gradients`]' two. The training
/// forward computes the same losses as `measure`'s (same kernels), and each micro-batch's
/// gradient is the same, added in the same order, so the step is the same to the bit; all
/// micro-batches' activations are held at once (for backends where
/// [`mixlab_model::ModelBackend::holds_all_micro_batches`]).
pub(crate) struct KeptForward<B: TrainBackend> {
    /// Each micro-batch's per-token losses `[mbs, seq]`, with their autodiff graphs.
    nll: Vec<Tensor<B, 2>>,
}

/// Every micro-batch's training forward, kept, and the step's losses read once.
pub(crate) fn forward_and_keep<B: TrainBackend>(
    model: &GptNeoX<B>,
    reference: Option<&GptNeoX<B::InnerBackend>>,
    batches: &[Tensor<B, 2, Int>],
    seq: usize,
) -> (KeptForward<B>, StepLosses) {
    let mut sums = DeviceSums::new();
    let nll = batches
        .iter()
        .map(|batch| {
            let (inputs, targets) = inputs_and_targets(batch.clone(), seq);
            let nll = model.per_token_nll(inputs.clone(), targets.clone(), None); // [mbs, seq]
            sums.push(
                nll.clone().inner(),
                reference,
                inputs.inner(),
                targets.inner(),
            );
            nll
        })
        .collect();
    (KeptForward { nll }, sums.read())
}

/// The gradient of the step's loss (weighted by `loss_weights` as [`accumulate_gradients`]
/// weighs it) from the kept forward passes.
pub(crate) fn backward_kept<B: TrainBackend>(
    model: &GptNeoX<B>,
    kept: KeptForward<B>,
    plan: &BatchPlan,
    loss_weights: Option<&[f64]>,
    seq: usize,
) -> GradientsParams {
    let denominator = loss_denominator(plan, loss_weights, seq);
    let mut accumulator = GradientsAccumulator::<GptNeoX<B>>::new();
    for (nll, domains) in kept.nll.into_iter().zip(&plan.domains) {
        let device = nll.device();
        let loss = share_of_loss(nll, domains, loss_weights, denominator, &device);
        let grads = GradientsParams::from_grads(loss.backward(), model);
        accumulator.accumulate(model, grads);
    }
    accumulator.grads()
}

/// One worker of a data-parallel step: its device and, for mixers that need one, a copy of the
/// reference model there.
pub(crate) struct Worker<B: TrainBackend> {
    pub(crate) device: B::Device,
    pub(crate) reference: Option<GptNeoX<B::InnerBackend>>,
}

/// [`accumulate_gradients`] with the step's micro-batches split over `workers`: worker i takes
/// the i-th contiguous block of the plan on its device, with a copy of the model there
/// (`fork`), in a thread of its own. The blocks' gradients are moved to the first worker's
/// device (the model's) and added in worker order, so the sum is the same in every run; it
/// differs from one worker's only in the order of the floating-point additions. With
/// `want_sums`, returns the per-sequence losses too, in plan order.
pub(crate) fn accumulate_gradients_parallel<B: TrainBackend>(
    model: &GptNeoX<B>,
    workers: &[Worker<B>],
    batches: &[Tensor<B, 2, Int>],
    plan: &BatchPlan,
    loss_weights: Option<&[f64]>,
    seq: usize,
    want_sums: bool,
) -> (GradientsParams, Option<StepLosses>) {
    let denominator = loss_denominator(plan, loss_weights, seq);
    let per_worker = plan.domains.len() / workers.len();
    let results: Vec<(GradientsParams, Option<StepLosses>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter()
            .enumerate()
            .map(|(i, worker)| {
                let range = i * per_worker..(i + 1) * per_worker;
                let replica = model.clone().fork(&worker.device);
                let reference = worker.reference.clone();
                let block: Vec<_> = batches[range.clone()]
                    .iter()
                    .map(|b| b.clone().to_device(&worker.device))
                    .collect();
                let domains = &plan.domains[range];
                scope.spawn(move || {
                    let mut sums = want_sums.then(DeviceSums::new);
                    let block = Block {
                        batches: &block,
                        domains,
                        loss_weights,
                        denominator,
                        seq,
                    };
                    let grads = block.accumulate(&replica, reference.as_ref(), sums.as_mut());
                    (grads, sums.map(DeviceSums::read))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let main = &workers[0].device;
    let mut accumulator = GradientsAccumulator::<GptNeoX<B>>::new();
    let mut losses: Option<StepLosses> = None;
    for (grads, block_losses) in results {
        accumulator.accumulate(model, grads.to_device(main, model));
        if let Some(block) = block_losses {
            let all = losses.get_or_insert_with(|| StepLosses {
                nll: Vec::new(),
                excess: block.excess.as_ref().map(|_| Vec::new()),
            });
            all.nll.extend(block.nll);
            if let (Some(all), Some(block)) = (all.excess.as_mut(), block.excess) {
                all.extend(block);
            }
        }
    }
    (accumulator.grads(), losses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{AutodiffModule, ModuleVisitor, Param};
    use burn::tensor::backend::AutodiffBackend;
    use mixlab_model::{CpuTrainBackend, ModelConfig, cpu_device};

    type Ad = CpuTrainBackend;

    /// Every parameter's gradient, in visiting order.
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: Vec<Vec<f32>>,
    }

    impl<Be: AutodiffBackend> ModuleVisitor<Be> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Be, D>>) {
            let grad = self
                .grads
                .get::<Be::InnerBackend, D>(param.id)
                .expect("every parameter gets a gradient");
            self.out.push(grad.into_data().iter::<f32>().collect());
        }
    }

    fn gradients(model: &GptNeoX<Ad>, grads: &GradientsParams) -> Vec<Vec<f32>> {
        let mut collect = Collect {
            grads,
            out: Vec::new(),
        };
        model.visit(&mut collect);
        collect.out
    }

    /// DoReMi's proxy step in one forward pass ([`forward_and_keep`], [`backward_kept`]) must
    /// be the two-pass step ([`measure`], [`accumulate_gradients`]) to the bit: the same
    /// losses and excess losses for the mixer, the same gradient of the weighted loss.
    #[test]
    fn a_kept_forward_measures_and_differentiates_as_two_passes_do() {
        let device = cpu_device();
        Ad::seed(&device, 3);
        let mut config = ModelConfig::tiny();
        (config.vocab_size, config.n_layers, config.d_model) = (300, 2, 32);
        (config.n_heads, config.d_ff, config.max_seq_len) = (2, 128, 16);
        let model = config.init::<Ad>(&device).unwrap();
        let reference = config.init::<Ad>(&device).unwrap().valid();
        let (mbs, seq) = (2, 16);
        let plan = BatchPlan {
            domains: vec![vec![0, 1], vec![2, 2], vec![1, 0]],
        };
        let batches: Vec<Tensor<Ad, 2, Int>> = (0..plan.domains.len())
            .map(|b| {
                let ids: Vec<i32> = (0..mbs * (seq + 1))
                    .map(|i| ((i * 37 + b * 101 + 11) % 300) as i32)
                    .collect();
                Tensor::from_data(TensorData::new(ids, [mbs, seq + 1]), &device)
            })
            .collect();
        let measured = measure(&model, Some(&reference), &batches, seq);
        let (kept, losses) = forward_and_keep(&model, Some(&reference), &batches, seq);
        assert_eq!(losses, measured);
        assert!(measured.excess.as_ref().is_some_and(|e| e.len() == 6));
        let weights = [0.5, 0.3, 0.2];
        let two_passes = accumulate_gradients(
            &model,
            Some(&reference),
            &batches,
            &plan,
            Some(&weights),
            seq,
            None,
        );
        let one_pass = backward_kept(&model, kept, &plan, Some(&weights), seq);
        let (two, one) = (gradients(&model, &two_passes), gradients(&model, &one_pass));
        assert!(two.iter().flatten().any(|&g| g != 0.0));
        assert_eq!(one, two);
    }
}
