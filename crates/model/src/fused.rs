//! Softmax, the per-token loss, GELU and LayerNorm as single operations with closed-form
//! gradients, and the backend operations the model's CPU kernels run through.
//!
//! burn 0.21 differentiates `softmax` and `log_softmax` through their decomposition (maximum,
//! subtraction, exponential, sum, division or logarithm, subtraction), so a training step pays for
//! the gradient of every piece: a full pass, and a fresh buffer, over every attention score and
//! every `[token, vocabulary]` logit, several times over. The closed forms are short:
//!
//! - softmax `y = softmax(x)` along the last dimension: `dx = y ⊙ (g − Σ g ⊙ y)`;
//! - the loss of a token, `nll = −log_softmax(z)[target]`: `dz = (softmax(z) − onehot(target)) · g`,
//!   with `softmax(z)` saved by the forward pass.
//!
//! A third, GELU, already is one autodiff node in burn; it is here for its CPU kernel, whose erf
//! is vectorised (burn's calls libm's `erff` once per element, forward and again backward).
//!
//! The module also carries operations the CPU backend runs as one kernel where burn composes
//! many: LayerNorm (closed-form gradient: `dx = r (γg − mean(γg) − x̂ mean(γg ⊙ x̂))`), causal
//! attention ([`crate::attention`]), the attention heads' split and merge, matrix products into
//! mixlab's buffers, and the AdamW update; all but LayerNorm compute burn's bits.
//!
//! [`ModelBackend`] carries them as backend operations. By default a backend composes them from
//! its own tensor operations (CUDA, libtorch); burn's `flex` CPU backend runs them as row kernels
//! (`fused/flex.rs`: one pass per row instead of one per operation). [`Autodiff`] over any of them records
//! one node per operation whose backward is the closed form above, computed by the inner backend.
//! The results equal burn's decomposed values and gradients up to float rounding (tested in
//! `tests/model.rs` against burn's own `softmax` and `log_softmax`).

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary, unary};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{ActivationOps, FloatTensor, FloatTensorOps, IntTensor, ModuleOps};
use burn::tensor::{Int, Tensor, TensorMetadata, TensorPrimitive};

use crate::attention::AttentionShape;

pub mod rows;

mod flex;

pub use flex::attention::causal_blocks;

/// A backend the model runs on: burn's [`Backend`] plus the operations of this module.
///
/// Every method has a default built from the backend's own tensor operations, so an inference
/// backend implements it with an empty `impl`; burn's `flex` CPU backend runs row kernels
/// (`fused/flex.rs`), and [`Autodiff`] overrides the forward methods to record their closed-form
/// gradients.
pub trait ModelBackend: Backend {
    /// The most sequence positions one forward pass should hold when only the losses are wanted
    /// (evaluation splits larger batches into passes of this many positions; each sequence's
    /// losses do not depend on its batch, so the numbers are the same). `None`: no limit, as an
    /// accelerator wants the largest batch it is given.
    fn loss_positions_per_pass() -> Option<usize> {
        None
    }

    /// Whether a training step may hold every micro-batch's activations at once, when that
    /// saves a forward pass (DoReMi's proxy needs the step's losses before its gradient pass:
    /// kept, the training forward serves both). `false`: one micro-batch's at a time, as a
    /// GPU's micro-batch is sized to fill its memory.
    fn holds_all_micro_batches() -> bool {
        false
    }

    /// Softmax along the last dimension.
    fn softmax_last_dim(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let dim = x.shape().num_dims() - 1;
        Self::softmax(x, dim)
    }

    /// The input gradient of [`ModelBackend::softmax_last_dim`] from its output `y` and the
    /// output gradient `g`: `y ⊙ (g − Σ_last g ⊙ y)`.
    fn softmax_last_dim_backward(y: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self> {
        generic::softmax_last_dim_backward::<Self>(y, g)
    }

    /// Negative log-probability of each row's target (no gradient).
    ///
    /// # Shapes
    /// - logits: `[rows, vocab]`, targets: `[rows, 1]` → `[rows, 1]`
    fn token_nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        generic::token_nll_with_probs::<Self>(logits, targets, false).0
    }

    /// [`ModelBackend::token_nll`] and each row's softmax, which its gradient needs.
    ///
    /// # Shapes
    /// - logits: `[rows, vocab]`, targets: `[rows, 1]` → `[rows, 1]` and `[rows, vocab]`
    fn token_nll_with_probs(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (nll, probs) = generic::token_nll_with_probs::<Self>(logits, targets, true);
        (nll, probs.expect("asked for the probabilities"))
    }

    /// GELU, exact (erf) form: `x Φ(x)`.
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// The input gradient of [`ModelBackend::gelu_exact`]: `g (Φ(x) + x φ(x))`.
    fn gelu_exact_backward(x: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, g)
    }

    /// The logits' gradient of [`ModelBackend::token_nll`]: `probs · g`, minus `g` at each
    /// row's target.
    ///
    /// # Shapes
    /// - probs: `[rows, vocab]`, targets and g: `[rows, 1]` → `[rows, vocab]`
    fn token_nll_backward(
        probs: FloatTensor<Self>,
        targets: IntTensor<Self>,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        generic::token_nll_backward::<Self>(probs, targets, g)
    }

    /// Rows of attention heads, `[batch · seq · heads, head_dim]` (row `(b · seq + t) · heads + h`
    /// holds head `h` of position `t` of sequence `b`), seen as `[batch, heads, seq, head_dim]`:
    /// a strided view where the backend can express one.
    fn split_heads(rows: FloatTensor<Self>, batch: usize, seq: usize) -> FloatTensor<Self> {
        let [all, head_dim] = rows.shape().dims::<2>();
        let heads = all / (batch * seq);
        let grouped = Self::float_reshape(rows, [batch, seq, heads, head_dim].into());
        Self::float_swap_dims(grouped, 1, 2)
    }

    /// The inverse of [`ModelBackend::split_heads`], and its gradient: `[batch, heads, seq,
    /// head_dim]` (any strides) as contiguous `[batch · seq · heads, head_dim]` rows.
    fn merge_heads(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let [batch, heads, seq, head_dim] = x.shape().dims::<4>();
        let grouped = Self::float_swap_dims(x, 1, 2);
        Self::float_reshape(grouped, [batch * seq * heads, head_dim].into())
    }

    /// The product of two tensors of matrices, `[.., m, k] · [.., k, n] → [.., m, n]` (either
    /// may be a strided view, such as a transposed one); burn's `float_matmul` where the leading
    /// dimensions differ (broadcast).
    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(lhs, rhs)
    }

    /// Causal self-attention of the fused QKV projection's rows as one operation
    /// ([`crate::attention::causal_attention`]; `rotary`: its cos and sin tables), or `Err(qkv)`
    /// back where this backend has no kernel for it: the model then composes it from the
    /// operations above ([`crate::attention::causal_attention_composed`]).
    fn causal_attention(
        qkv: FloatTensor<Self>,
        rotary: Option<[FloatTensor<Self>; 2]>,
        shape: AttentionShape,
    ) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        Self::causal_attention_keep(qkv, rotary, shape, false).map(|(out, _)| out)
    }

    /// [`ModelBackend::causal_attention`] and, when `keep`, what its backward pass needs
    /// (autodiff asks for it; a backend without the kernel gives `qkv` back).
    #[allow(clippy::type_complexity)]
    fn causal_attention_keep(
        qkv: FloatTensor<Self>,
        rotary: Option<[FloatTensor<Self>; 2]>,
        shape: AttentionShape,
        keep: bool,
    ) -> Result<(FloatTensor<Self>, Option<AttentionState<Self>>), FloatTensor<Self>> {
        let _ = (rotary, shape, keep);
        Err(qkv)
    }

    /// The gradient of `qkv` in [`ModelBackend::causal_attention`] from the state its forward
    /// pass kept and the output's gradient `g`. Autodiff calls it only with state this backend's
    /// [`ModelBackend::causal_attention_keep`] returned, which a backend without the kernel never
    /// does.
    fn causal_attention_backward(
        state: AttentionState<Self>,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _ = (state, g);
        unreachable!(
            "attention gradient without an attention kernel: its forward pass kept no state"
        )
    }

    /// LayerNorm over the last dimension, `(x − mean) / √(var + ε) · γ + β` with the biased
    /// variance: burn's composition by default.
    fn layer_norm_last_dim(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// [`ModelBackend::layer_norm_last_dim`] as one operation, with each row's mean and
    /// 1/√(var + ε) (`[rows, 2]`) for its gradient, or `None` where this backend has no kernel
    /// for these tensors (autodiff then records burn's composition).
    fn layer_norm_with_stats(
        x: &FloatTensor<Self>,
        gamma: &FloatTensor<Self>,
        beta: &FloatTensor<Self>,
        epsilon: f64,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let _ = (x, gamma, beta, epsilon);
        None
    }

    /// The gradients `[dx, dγ, dβ]` of [`ModelBackend::layer_norm_with_stats`] from its input,
    /// γ, its statistics and the output's gradient `g`. Autodiff calls it only with statistics
    /// this backend's kernel returned, which a backend without the kernel never does.
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let _ = (x, gamma, stats, g);
        unreachable!(
            "LayerNorm gradient without a LayerNorm kernel: its forward pass kept no statistics"
        )
    }

    /// One AdamW update of a parameter tensor in one pass, element for element the arithmetic
    /// of burn's `AdamW` (so the same bits): the new parameter and moments `[param, m, v]`
    /// (written over the old ones where nothing else holds them), or everything back, untouched,
    /// where this backend has no kernel for these tensors (the optimizer then runs burn's).
    /// `moments`: the first and second moments, `None` at the first update.
    #[allow(clippy::type_complexity)]
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: &FloatTensor<Self>,
        moments: Option<[FloatTensor<Self>; 2]>,
        update: AdamWUpdate,
    ) -> Result<[FloatTensor<Self>; 3], (FloatTensor<Self>, Option<[FloatTensor<Self>; 2]>)> {
        let _ = (grad, update);
        Err((param, moments))
    }
}

/// The scalars of one [`ModelBackend::adamw_update`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWUpdate {
    /// Decay of the first moment.
    pub beta_1: f32,
    /// Decay of the second moment.
    pub beta_2: f32,
    /// Added to the second moment's root.
    pub epsilon: f32,
    /// Decoupled weight decay (0 for none).
    pub weight_decay: f32,
    /// The learning rate of this update.
    pub lr: f64,
    /// The number of this update, from 1 (bias correction).
    pub time: i32,
}

/// What the backward pass of [`ModelBackend::causal_attention`] needs from its forward pass.
#[derive(Debug, Clone)]
pub struct AttentionState<B: Backend> {
    /// The projection's rows, `[batch · seq · heads, 3 · head_dim]` (v is read from them).
    pub qkv: FloatTensor<B>,
    /// The rotary tables, as passed to the forward pass.
    pub rotary: Option<[FloatTensor<B>; 2]>,
    /// q after rotary embedding and scaling, `[batch, heads, seq, head_dim]`.
    pub q: FloatTensor<B>,
    /// k after rotary embedding, `[batch, heads, seq, head_dim]`.
    pub k: FloatTensor<B>,
    /// The softmax of the masked scores, `[batch, heads, seq, seq]`.
    pub probs: FloatTensor<B>,
    /// The sizes of the call.
    pub shape: AttentionShape,
}

/// The operations composed from burn's own: every backend's default, and `flex`'s for float
/// types other than f32.
mod generic {
    use super::*;

    pub(super) fn softmax_last_dim_backward<B: Backend>(
        y: FloatTensor<B>,
        g: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let dim = y.shape().num_dims() - 1;
        let dot = B::float_sum_dim(B::float_mul(g.clone(), y.clone()), dim);
        B::float_mul(B::float_sub(g, dot), y)
    }

    pub(super) fn token_nll_with_probs<B: Backend>(
        logits: FloatTensor<B>,
        targets: IntTensor<B>,
        keep_probs: bool,
    ) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
        let log_probs = B::log_softmax(logits, 1);
        let nll = B::float_neg(B::float_gather(1, log_probs.clone(), targets));
        (nll, keep_probs.then(|| B::float_exp(log_probs)))
    }

    pub(super) fn token_nll_backward<B: Backend>(
        probs: FloatTensor<B>,
        targets: IntTensor<B>,
        g: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let scaled = B::float_mul(probs, g.clone());
        B::float_scatter_add(1, scaled, targets, B::float_neg(g))
    }
}

impl ModelBackend for burn::backend::Flex {
    /// 512 positions: a `tiny` model's logits over its 4,096-token vocabulary are then 8 MB,
    /// which stay in the caches between the product that writes them and the loss that reads
    /// them; 16 x 128 positions at once (32 MB) evaluated about 19% slower on the development
    /// machine (the README's "Performance").
    fn loss_positions_per_pass() -> Option<usize> {
        Some(512)
    }

    /// The models that train on a CPU are small: a `tiny` step's four micro-batches of
    /// activations are tens of MB.
    fn holds_all_micro_batches() -> bool {
        true
    }

    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::matmul(&lhs, &rhs).unwrap_or_else(|| Self::float_matmul(lhs, rhs))
    }

    fn causal_attention_keep(
        qkv: FloatTensor<Self>,
        rotary: Option<[FloatTensor<Self>; 2]>,
        shape: AttentionShape,
        keep: bool,
    ) -> Result<(FloatTensor<Self>, Option<AttentionState<Self>>), FloatTensor<Self>> {
        let Some((out, saved)) = flex::attention::forward(&qkv, rotary.as_ref(), shape, keep)
        else {
            return Err(qkv);
        };
        let state = saved.map(|saved| AttentionState {
            qkv,
            rotary,
            q: saved.q,
            k: saved.k,
            probs: saved.probs,
            shape,
        });
        Ok((out, state))
    }

    fn adamw_update(
        param: FloatTensor<Self>,
        grad: &FloatTensor<Self>,
        moments: Option<[FloatTensor<Self>; 2]>,
        update: AdamWUpdate,
    ) -> Result<[FloatTensor<Self>; 3], (FloatTensor<Self>, Option<[FloatTensor<Self>; 2]>)> {
        flex::adamw_update(param, grad, moments, update)
    }

    fn layer_norm_last_dim(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        match flex::layer_norm(&x, &gamma, &beta, epsilon) {
            Some((out, _)) => out,
            None => Self::layer_norm(x, gamma, Some(beta), epsilon),
        }
    }

    fn layer_norm_with_stats(
        x: &FloatTensor<Self>,
        gamma: &FloatTensor<Self>,
        beta: &FloatTensor<Self>,
        epsilon: f64,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        flex::layer_norm(x, gamma, beta, epsilon)
    }

    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        flex::layer_norm_backward(&x, &gamma, &stats, &g)
    }

    fn causal_attention_backward(
        state: AttentionState<Self>,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let saved = flex::attention::Saved {
            q: state.q,
            k: state.k,
            probs: state.probs,
        };
        flex::attention::backward(&state.qkv, state.rotary.as_ref(), &saved, state.shape, &g)
    }

    fn merge_heads(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::merge_heads(&x).unwrap_or_else(|| {
            let [batch, heads, seq, head_dim] = x.shape().dims::<4>();
            let grouped = Self::float_swap_dims(x, 1, 2);
            Self::float_reshape(grouped, [batch * seq * heads, head_dim].into())
        })
    }

    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::gelu(&x).unwrap_or_else(|| <Self as ActivationOps<Self>>::gelu(x))
    }

    fn gelu_exact_backward(x: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::gelu_backward(&x, &g)
            .unwrap_or_else(|| <Self as ActivationOps<Self>>::gelu_backward(x, g))
    }

    fn softmax_last_dim(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::softmax(&x).unwrap_or_else(|| {
            let dim = x.shape().num_dims() - 1;
            Self::softmax(x, dim)
        })
    }

    fn softmax_last_dim_backward(y: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::softmax_backward(&y, &g)
            .unwrap_or_else(|| generic::softmax_last_dim_backward::<Self>(y, g))
    }

    fn token_nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        match flex::token_nll(logits, &targets, false) {
            Ok((nll, _)) => nll,
            Err(logits) => generic::token_nll_with_probs::<Self>(logits, targets, false).0,
        }
    }

    fn token_nll_with_probs(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (nll, probs) = match flex::token_nll(logits, &targets, true) {
            Ok(computed) => computed,
            Err(logits) => generic::token_nll_with_probs::<Self>(logits, targets, true),
        };
        (nll, probs.expect("asked for the probabilities"))
    }

    fn token_nll_backward(
        probs: FloatTensor<Self>,
        targets: IntTensor<Self>,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        flex::token_nll_backward(probs, &targets, &g)
            .unwrap_or_else(|probs| generic::token_nll_backward::<Self>(probs, targets, g))
    }
}
impl ModelBackend for crate::device::CudaBackend {}
#[cfg(feature = "tch")]
impl ModelBackend for crate::device::TchBackend {}

impl<B: ModelBackend, C: CheckpointStrategy> ModelBackend for Autodiff<B, C> {
    fn loss_positions_per_pass() -> Option<usize> {
        B::loss_positions_per_pass()
    }

    fn holds_all_micro_batches() -> bool {
        B::holds_all_micro_batches()
    }

    fn split_heads(rows: FloatTensor<Self>, batch: usize, seq: usize) -> FloatTensor<Self> {
        /// burn's reshape and swap nodes as one, whose backward is one [`ModelBackend::merge_heads`]
        /// (burn's would reshape a swapped view, an element-by-element copy on its CPU backend).
        #[derive(Debug)]
        struct SplitHeadsBackward;

        impl<B: ModelBackend> Backward<B, 1> for SplitHeadsBackward {
            type State = ();

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                unary::<B, _>(ops.parents, ops.node, grads, B::merge_heads);
            }
        }

        match SplitHeadsBackward
            .prepare::<C>([rows.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((), B::split_heads(rows.primitive, batch, seq)),
            OpsKind::UnTracked(prep) => prep.finish(B::split_heads(rows.primitive, batch, seq)),
        }
    }

    fn merge_heads(x: FloatTensor<Self>) -> FloatTensor<Self> {
        /// One [`ModelBackend::merge_heads`] whose backward is the view
        /// [`ModelBackend::split_heads`] of the gradient.
        #[derive(Debug)]
        struct MergeHeadsBackward;

        impl<B: ModelBackend> Backward<B, 1> for MergeHeadsBackward {
            /// The input's batch and sequence length.
            type State = (usize, usize);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let (batch, seq) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |g| {
                    B::split_heads(g, batch, seq)
                });
            }
        }

        let [batch, _, seq, _] = x.primitive.shape().dims::<4>();
        match MergeHeadsBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((batch, seq), B::merge_heads(x.primitive)),
            OpsKind::UnTracked(prep) => prep.finish(B::merge_heads(x.primitive)),
        }
    }

    fn causal_attention(
        qkv: FloatTensor<Self>,
        rotary: Option<[FloatTensor<Self>; 2]>,
        shape: AttentionShape,
    ) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        /// The inner backend's attention kernel as one node, whose backward writes the q, k and
        /// v gradients into one buffer (burn's narrow gradient pads each part to the whole
        /// projection and sums the three).
        #[derive(Debug)]
        struct CausalAttentionBackward;

        impl<B: ModelBackend> Backward<B, 1> for CausalAttentionBackward {
            type State = AttentionState<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let state = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |g| {
                    B::causal_attention_backward(state, g)
                });
            }
        }

        // The tables are constants (never tracked): only their values are used.
        let rotary = rotary.map(|tables| tables.map(|table| table.primitive));
        // Given back untouched if the inner backend has no kernel for it.
        let untouched = qkv.clone();
        match CausalAttentionBackward
            .prepare::<C>([qkv.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                match B::causal_attention_keep(qkv.primitive, rotary, shape, true) {
                    Ok((out, Some(state))) => Ok(prep.finish(state, out)),
                    Ok((_, None)) => unreachable!("the attention kernel kept no state when asked"),
                    Err(_) => Err(untouched),
                }
            }
            OpsKind::UnTracked(prep) => {
                match B::causal_attention_keep(qkv.primitive, rotary, shape, false) {
                    Ok((out, _)) => Ok(prep.finish(out)),
                    Err(_) => Err(untouched),
                }
            }
        }
    }

    fn layer_norm_last_dim(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        /// The inner backend's LayerNorm kernel as one node with three parents, whose backward
        /// is the closed form (burn's composition records a node per operation).
        #[derive(Debug)]
        struct LayerNormBackward;

        impl<B: ModelBackend> Backward<B, 3> for LayerNormBackward {
            /// The input, γ, and each row's mean and 1/√(var + ε).
            type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let (x, gamma, stats) = ops.state;
                let g = grads.consume::<B>(&ops.node);
                let gradients = B::layer_norm_backward(x, gamma, stats, g);
                for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
                    if let Some(parent) = parent {
                        grads.register::<B>(parent.id, gradient);
                    }
                }
            }
        }

        let Some((out, stats)) =
            B::layer_norm_with_stats(&x.primitive, &gamma.primitive, &beta.primitive, epsilon)
        else {
            // No kernel: burn's composition, recorded operation by operation.
            return <Self as ModuleOps<Self>>::layer_norm(x, gamma, Some(beta), epsilon);
        };
        match LayerNormBackward
            .prepare::<C>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, gamma.primitive, stats), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        unary_node::<B, C>(x, B::gelu_exact, B::gelu_exact_backward, Saved::Input)
    }

    fn softmax_last_dim(x: FloatTensor<Self>) -> FloatTensor<Self> {
        unary_node::<B, C>(
            x,
            B::softmax_last_dim,
            B::softmax_last_dim_backward,
            Saved::Output,
        )
    }

    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        /// burn's matmul node (`float_matmul` of its autodiff backend) for operands with the same
        /// leading dimensions, with both gradients taken by [`ModelBackend::matmul`] on
        /// transposed views: `d lhs = g · rhsᵀ`, `d rhs = lhsᵀ · g`.
        #[derive(Debug)]
        struct MatmulBackward;

        impl<B: ModelBackend> Backward<B, 2> for MatmulBackward {
            /// The operands each gradient needs: `lhs` when `rhs` is tracked, and the reverse.
            type State = (Option<NodeId>, Option<NodeId>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let (lhs, rhs) = ops.state;
                let lhs = lhs.map(|lhs| checkpointer.retrieve_node_output::<FloatTensor<B>>(lhs));
                let rhs = rhs.map(|rhs| checkpointer.retrieve_node_output::<FloatTensor<B>>(rhs));
                binary::<B, _, _>(
                    ops.parents,
                    ops.node,
                    grads,
                    |g| B::matmul(g, B::float_transpose(rhs.expect("kept for lhs's gradient"))),
                    |g| B::matmul(B::float_transpose(lhs.expect("kept for rhs's gradient")), g),
                );
            }
        }

        let (lhs_shape, rhs_shape) = (lhs.shape(), rhs.shape());
        let rank = lhs_shape.num_dims();
        if rhs_shape.num_dims() != rank || lhs_shape[..rank - 2] != rhs_shape[..rank - 2] {
            // Broadcast leading dimensions: burn's node, which sums the gradient over them.
            return <Self as FloatTensorOps<Self>>::float_matmul(lhs, rhs);
        }
        let (lhs_tracked, rhs_tracked) = (lhs.is_tracked(), rhs.is_tracked());
        match MatmulBackward
            .prepare::<C>([lhs.node.clone(), rhs.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let lhs_state = rhs_tracked.then(|| prep.checkpoint(&lhs));
                let rhs_state = lhs_tracked.then(|| prep.checkpoint(&rhs));
                prep.finish(
                    (lhs_state, rhs_state),
                    B::matmul(lhs.primitive, rhs.primitive),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::matmul(lhs.primitive, rhs.primitive)),
        }
    }

    fn token_nll(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct TokenNllBackward;

        impl<B: ModelBackend> Backward<B, 1> for TokenNllBackward {
            /// The forward pass's probabilities and the targets.
            type State = (FloatTensor<B>, IntTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let (probs, targets) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |g| {
                    B::token_nll_backward(probs, targets, g)
                });
            }
        }

        match TokenNllBackward
            .prepare::<C>([logits.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (nll, probs) = B::token_nll_with_probs(logits.primitive, targets.clone());
                prep.finish((probs, targets), nll)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::token_nll(logits.primitive, targets)),
        }
    }
}

/// What a [`unary_node`]'s gradient is computed from.
#[derive(Debug, Clone, Copy)]
enum Saved {
    /// The operation's input (GELU).
    Input,
    /// The operation's output (softmax).
    Output,
}

/// The backward step of a [`unary_node`]: `gradient(saved, g)`.
struct UnaryBackward<B: Backend> {
    gradient: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
}

impl<B: Backend> std::fmt::Debug for UnaryBackward<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnaryBackward")
    }
}

impl<B: Backend> Backward<B, 1> for UnaryBackward<B> {
    /// The input or the output of the forward pass, as [`Saved`] chose.
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let saved = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |g| (self.gradient)(saved, g));
    }
}

/// One autodiff node for an element- or row-wise operation whose input gradient is
/// `gradient(saved, g)`. Compute-bound: the saved tensor is kept for the backward pass rather
/// than recomputed.
fn unary_node<B: Backend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    forward: fn(FloatTensor<B>) -> FloatTensor<B>,
    gradient: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
    saved: Saved,
) -> FloatTensor<Autodiff<B, C>> {
    match (UnaryBackward { gradient })
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => match saved {
            Saved::Input => {
                let y = forward(x.primitive.clone());
                prep.finish(x.primitive, y)
            }
            Saved::Output => {
                let y = forward(x.primitive);
                prep.finish(y.clone(), y)
            }
        },
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive)),
    }
}

/// A backend the training loop runs on: an autodiff backend whose model, and whose inner
/// (validation) backend's model, both run the operations of this module.
pub trait TrainBackend: AutodiffBackend<InnerBackend: ModelBackend> + ModelBackend {}

impl<B> TrainBackend for B
where
    B: AutodiffBackend + ModelBackend,
    B::InnerBackend: ModelBackend,
{
}

/// GELU in its exact (erf) form, as HF's `hidden_act: "gelu"`; on burn's CPU backend with a
/// vectorised erf (absolute error under 1.5e-7, see `fused/flex.rs`).
pub fn gelu<B: ModelBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::gelu_exact(
        x.into_primitive().tensor(),
    )))
}

/// The product of two tensors of matrices, the same bits as burn's `matmul`; on burn's CPU
/// backend into a buffer that is neither filled nor copied first (`fused/flex.rs`), under autodiff with
/// burn's own matmul gradients.
///
/// # Shapes
/// - lhs: `[.., m, k]`, rhs: `[.., k, n]` → `[.., m, n]` (the leading dimensions equal, or
///   broadcast as burn's `matmul` does)
pub fn matmul<B: ModelBackend, const D: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::matmul(
        lhs.into_primitive().tensor(),
        rhs.into_primitive().tensor(),
    )))
}

/// Rows of attention heads as `[batch, heads, seq, head_dim]`, a view on burn's CPU backend; under
/// autodiff its gradient is one [`merge_heads`].
///
/// # Shapes
/// - rows: `[batch * seq * heads, head_dim]`, row `(b * seq + t) * heads + h` the head `h` of
///   position `t` of sequence `b` → `[batch, heads, seq, head_dim]`
pub fn split_heads<B: ModelBackend>(rows: Tensor<B, 2>, batch: usize, seq: usize) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(B::split_heads(
        rows.into_primitive().tensor(),
        batch,
        seq,
    )))
}

/// Attention heads back into rows, the inverse of [`split_heads`]: on burn's CPU backend one
/// copy of each head's contiguous `head_dim` values (burn's reshape of the swapped view copies
/// element by element).
///
/// # Shapes
/// - x: `[batch, heads, seq, head_dim]` (any strides) → `[batch * seq * heads, head_dim]`
pub fn merge_heads<B: ModelBackend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(B::merge_heads(
        x.into_primitive().tensor(),
    )))
}

/// Softmax along the last dimension, with a closed-form gradient under autodiff.
pub fn softmax_last<B: ModelBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::softmax_last_dim(
        x.into_primitive().tensor(),
    )))
}

/// Negative log-likelihood of each row's target, with a closed-form gradient under autodiff.
///
/// # Shapes
/// - logits: `[rows, vocab]`, targets: `[rows]` → `[rows]`
pub fn token_nll<B: ModelBackend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let [rows] = targets.dims();
    let targets = targets.reshape([rows, 1]).into_primitive();
    let nll: Tensor<B, 2> = Tensor::from_primitive(TensorPrimitive::Float(B::token_nll(
        logits.into_primitive().tensor(),
        targets,
    )));
    nll.reshape([rows])
}

/// LayerNorm of `x` over its last dimension with `norm`'s γ and β (GPT-NeoX's always has β) and
/// `epsilon`: on burn's CPU backend in f32 one row kernel, under autodiff one node with a
/// closed-form gradient; burn's composition elsewhere.
pub fn layer_norm<B: ModelBackend, const D: usize>(
    norm: &burn::nn::LayerNorm<B>,
    x: Tensor<B, D>,
    epsilon: f64,
) -> Tensor<B, D> {
    let primitive = |t: Tensor<B, 1>| t.into_primitive().tensor();
    let beta = norm
        .beta
        .as_ref()
        .map_or_else(|| norm.gamma.val().zeros_like(), |beta| beta.val());
    Tensor::from_primitive(TensorPrimitive::Float(B::layer_norm_last_dim(
        x.into_primitive().tensor(),
        primitive(norm.gamma.val()),
        primitive(beta),
        epsilon,
    )))
}
