//! Causal self-attention on the fused QKV projection's rows: rotary embedding, scaled scores, the
//! causal mask, softmax, the weighted values, and the heads merged back into rows.
//!
//! [`causal_attention`] runs it as one backend operation where the backend has a kernel for it
//! ([`ModelBackend::causal_attention`]: burn's `flex` CPU backend in f32, one autodiff node whose
//! backward writes the q, k and v gradients into one buffer), and otherwise as the composition of
//! [`causal_attention_composed`] (CUDA, libtorch, other float types). The two give the same bits
//! on the CPU (tested in `tests/model.rs`), so the kernel changes speed, not results.

use std::cell::OnceCell;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use crate::config::ModelConfig;
use crate::fused::{ModelBackend, matmul, merge_heads, softmax_last, split_heads};

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Sequences in the batch.
    pub batch: usize,
    /// Positions per sequence.
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Leading values of each head that rotary embedding rotates (even; 0 for none).
    pub rotary_dims: usize,
}

impl AttentionShape {
    /// The score scale `1 / √head_dim`, applied to q (seq · head_dim values rather than seq²
    /// scores).
    pub fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }
}

/// The constants of one sequence length, shared by every layer of a forward pass.
#[derive(Debug)]
pub struct AttentionTables<B: Backend> {
    /// cos and sin of the rotary angles, duplicated over both halves as in HF, repeated for
    /// every head and flattened, `[1, seq · heads · rotary_dims]` each (position-major, as the
    /// projection's rows); `None` without rotary dims.
    rotary: Option<[Tensor<B, 2>; 2]>,
    /// The causal mask of the composed path, made on first use (an attention kernel needs none).
    mask: OnceCell<Tensor<B, 2>>,
    rotary_dims: usize,
    seq: usize,
    device: B::Device,
    dtype: DType,
}

impl<B: Backend> AttentionTables<B> {
    /// The tables of `config` for sequences of `seq` positions.
    pub fn new(config: &ModelConfig, seq: usize, device: &B::Device, dtype: DType) -> Self {
        let rotary_dims = config.rotary_dims();
        let rotary = (rotary_dims > 0).then(|| {
            let half = rotary_dims / 2;
            // HF: inv_freq = 1 / base^(2i / rotary_dims), angle = position * inv_freq, and the
            // table is cat(angles, angles) so that it lines up with rotate_half's two halves.
            let inv_freq: Vec<f64> = (0..half)
                .map(|i| 1.0 / config.rotary_base.powf((2 * i) as f64 / rotary_dims as f64))
                .collect();
            let heads = config.n_heads;
            let mut cos = Vec::with_capacity(seq * heads * rotary_dims);
            let mut sin = Vec::with_capacity(seq * heads * rotary_dims);
            for position in 0..seq {
                for _ in 0..heads {
                    for _ in 0..2 {
                        for frequency in &inv_freq {
                            let angle = position as f64 * frequency;
                            cos.push(angle.cos());
                            sin.push(angle.sin());
                        }
                    }
                }
            }
            [cos, sin].map(|values| {
                Tensor::<B, 2>::from_data(
                    TensorData::new(values, [1, seq * heads * rotary_dims]),
                    (device, dtype),
                )
            })
        });
        Self {
            rotary,
            mask: OnceCell::new(),
            rotary_dims,
            seq,
            device: device.clone(),
            dtype,
        }
    }

    /// The leading values of each head that rotary embedding rotates (0 for none).
    pub fn rotary_dims(&self) -> usize {
        self.rotary_dims
    }

    /// 0 on and below the diagonal, −∞ above, flattened: `[1, seq · seq]`. Flat, because burn's
    /// CPU backend adds a row shared by all outer positions with SIMD, while a `[1, 1, seq, seq]`
    /// broadcast over `[batch, heads, seq, seq]` takes its element-by-element strided path.
    fn causal_mask(&self) -> Tensor<B, 2> {
        self.mask
            .get_or_init(|| {
                let seq = self.seq;
                let mask: Vec<f32> = (0..seq)
                    .flat_map(|row| {
                        (0..seq).map(move |col| if col > row { f32::NEG_INFINITY } else { 0.0 })
                    })
                    .collect();
                Tensor::from_data(
                    TensorData::new(mask, [1, seq * seq]),
                    (&self.device, self.dtype),
                )
            })
            .clone()
    }
}

/// Causal multi-head self-attention of the fused QKV projection's rows.
///
/// Row `(b · seq + t) · heads + h` of `qkv` holds q, k and v of head `h` at position `t` of
/// sequence `b` (HF's per-head interleaved order); the output's row `b · seq + t` holds every
/// head's attention output at that position, heads in order.
///
/// # Shapes
/// - qkv: `[batch · seq · heads, 3 · head_dim]` → `[batch · seq, heads · head_dim]`
pub fn causal_attention<B: ModelBackend>(
    qkv: Tensor<B, 2>,
    tables: &AttentionTables<B>,
    shape: AttentionShape,
) -> Tensor<B, 2> {
    let rotary = tables
        .rotary
        .as_ref()
        .map(|table| table.clone().map(|t| t.into_primitive().tensor()));
    match B::causal_attention(qkv.into_primitive().tensor(), rotary, shape) {
        Ok(out) => Tensor::from_primitive(TensorPrimitive::Float(out)),
        Err(qkv) => causal_attention_composed(
            Tensor::from_primitive(TensorPrimitive::Float(qkv)),
            tables,
            shape,
        ),
    }
}

/// [`causal_attention`] composed from burn's operations and the few of [`crate::fused`]: what
/// every backend without an attention kernel runs, and the reference the kernel is tested
/// against.
///
/// # Shapes
/// - qkv: `[batch · seq · heads, 3 · head_dim]` → `[batch · seq, heads · head_dim]`
pub fn causal_attention_composed<B: ModelBackend>(
    qkv: Tensor<B, 2>,
    tables: &AttentionTables<B>,
    shape: AttentionShape,
) -> Tensor<B, 2> {
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim,
        ..
    } = shape;
    let [q, k, v] = [0, 1, 2].map(|part| qkv.clone().narrow(1, part * head_dim, head_dim));
    let q = split_heads(
        apply_rotary(q, tables, shape).mul_scalar(shape.scale()),
        batch,
        seq,
    );
    let k = split_heads(apply_rotary(k, tables, shape), batch, seq);
    let v = split_heads(v, batch, seq);
    let scores = (matmul(q, k.swap_dims(2, 3)) // [batch, heads, seq, seq]
        .reshape([batch * heads, seq * seq])
        + tables.causal_mask())
    .reshape([batch, heads, seq, seq]);
    let probs = softmax_last(scores);
    merge_heads(matmul(probs, v)).reshape([batch * seq, heads * head_dim])
}

/// Rotates the first `rotary_dims` of every head (HF `apply_rotary_pos_emb`, rotate-half form):
/// `x ⊙ cos + rotate_half(x) ⊙ sin`, `rotate_half(x) = [−x₂, x₁]`.
///
/// Works on the projection's own row layout, one row per (batch, position, head), so that
/// every copy burn's CPU backend makes is two-dimensional (its fast tiled path) and the
/// products with the cos/sin tables are a row shared by the whole batch (its SIMD path).
///
/// # Shapes
/// - x: `[batch * seq * heads, head_dim]` (any strides) → same, contiguous
fn apply_rotary<B: Backend>(
    x: Tensor<B, 2>,
    tables: &AttentionTables<B>,
    shape: AttentionShape,
) -> Tensor<B, 2> {
    let Some([cos, sin]) = &tables.rotary else {
        return x;
    };
    let [rows, head_dim] = x.dims();
    let rotary_dims = shape.rotary_dims;
    let half = rotary_dims / 2;
    let x_rot = x.clone().narrow(1, 0, rotary_dims);
    let x1 = x_rot.clone().narrow(1, 0, half);
    let x2 = x_rot.clone().narrow(1, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 1); // [rows, rotary_dims]
    let batch = shape.batch;
    let per_sequence = rows / batch * rotary_dims;
    let embedded = (x_rot.reshape([batch, per_sequence]) * cos.clone()
        + rotated.reshape([batch, per_sequence]) * sin.clone())
    .reshape([rows, rotary_dims]);
    if rotary_dims == head_dim {
        embedded
    } else {
        Tensor::cat(
            vec![embedded, x.narrow(1, rotary_dims, head_dim - rotary_dims)],
            1,
        )
    }
}
