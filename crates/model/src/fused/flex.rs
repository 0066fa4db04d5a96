//! The operations of [`super::ModelBackend`] on burn's `flex` CPU backend as row kernels.
//!
//! burn's CPU operations each make a full pass over their operand and allocate their result, so
//! a composition of five of them over `[tokens, vocabulary]` logits reads and writes the logits
//! five times. These kernels make one pass per row (a row of logits or of attention scores fits
//! in the L1 or L2 cache) and rows run in parallel on burn's rayon pool. The row arithmetic is
//! [`super::rows`]: vectorised, compiled for the widest instructions the CPU has, and the same
//! bits on every CPU. f32 only: other float types take the generic composition of [`super`]. Each equals that composition up to float
//! rounding (tested in `tests/model.rs` against burn's decomposed softmax and log-softmax).

use std::mem::MaybeUninit;

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, TensorData, TensorMetadata};
use rayon::prelude::*;

pub(super) mod attention;

use super::AdamWUpdate;

use super::rows::{
    AdamWScalars, adamw_values, gelu_gradients, gelu_values, layer_norm_backward_rows,
    layer_norm_rows, softmax_backward_rows, softmax_rows, token_nll_backward_rows,
    token_nll_probs_rows, token_nll_rows,
};

/// About this many floats per rayon task, so that scheduling costs nothing next to the work.
const FLOATS_PER_TASK: usize = 1 << 15;

/// Whole rows per task for rows of `row_len` floats.
fn rows_per_task(row_len: usize) -> usize {
    (FLOATS_PER_TASK / row_len.max(1)).max(1)
}

/// `tensor` as a contiguous f32 buffer and its last dimension, or `None` for other float types.
fn f32_rows(tensor: &FlexTensor) -> Option<(FlexTensor, usize)> {
    if tensor.dtype() != DType::F32 {
        return None;
    }
    let row_len = *tensor.shape().as_slice().last()?;
    (row_len > 0).then(|| (tensor.to_contiguous(), row_len))
}

fn f32_tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Row indices of an int tensor of any of flex's int types, as `usize`.
fn indices(targets: &FlexTensor) -> Vec<usize> {
    let targets = targets.to_contiguous();
    match targets.dtype() {
        DType::I64 => targets
            .storage::<i64>()
            .iter()
            .map(|&t| t as usize)
            .collect(),
        DType::I32 => targets
            .storage::<i32>()
            .iter()
            .map(|&t| t as usize)
            .collect(),
        DType::U32 => targets
            .storage::<u32>()
            .iter()
            .map(|&t| t as usize)
            .collect(),
        DType::U64 => targets
            .storage::<u64>()
            .iter()
            .map(|&t| t as usize)
            .collect(),
        other => panic!("token loss: targets of type {other:?} are not indices"),
    }
}

/// Softmax along the last dimension, one pass per row kept in cache: the row's maximum, then
/// `e^(x − max)` and its sum, then the division; `None` when not f32. (burn's own fused softmax
/// makes the same passes with libm's `expf`, one call per element.)
pub(super) fn softmax(x: &FlexTensor) -> Option<FlexTensor> {
    let (x, row_len) = f32_rows(x)?;
    let xs = x.storage::<f32>();
    let mut out = vec![0.0f32; xs.len()];
    let chunk = rows_per_task(row_len) * row_len;
    out.par_chunks_mut(chunk)
        .zip(xs.par_chunks(chunk))
        .for_each(|(out, xs)| softmax_rows(xs, out, row_len));
    Some(f32_tensor(out, x.shape()))
}

/// Softmax's input gradient `y ⊙ (g − Σ g ⊙ y)` along the last dimension, or `None` when the
/// operands are not f32.
pub(super) fn softmax_backward(y: &FlexTensor, g: &FlexTensor) -> Option<FlexTensor> {
    let (y, row_len) = f32_rows(y)?;
    let (g, _) = f32_rows(g)?;
    let (ys, gs) = (y.storage::<f32>(), g.storage::<f32>());
    assert_eq!(
        ys.len(),
        gs.len(),
        "softmax gradient: output and gradient shapes differ"
    );
    let mut out = vec![0.0f32; ys.len()];
    let chunk = rows_per_task(row_len) * row_len;
    out.par_chunks_mut(chunk)
        .zip(ys.par_chunks(chunk).zip(gs.par_chunks(chunk)))
        .for_each(|(out, (ys, gs))| softmax_backward_rows(ys, gs, out, row_len));
    Some(f32_tensor(out, y.shape()))
}

/// Each row's negative log-probability of its target, `max − z[target] + ln Σ exp(z − max)`, and
/// (when `keep_probs`) the row's softmax for the backward pass, written over the logits' buffer
/// when nothing else holds it (the loss is the logits' only reader; a copy is made otherwise).
/// `Err(logits)` back when not f32.
///
/// # Shapes
/// - logits: `[rows, vocab]`, targets: `[rows, 1]` → nll `[rows, 1]`, probs `[rows, vocab]`
pub(super) fn token_nll(
    logits: FlexTensor,
    targets: &FlexTensor,
    keep_probs: bool,
) -> Result<(FlexTensor, Option<FlexTensor>), FlexTensor> {
    let Some((contiguous, vocab)) = f32_rows(&logits) else {
        return Err(logits);
    };
    // Drop the caller's handle, so that the buffer has one owner and is written in place.
    drop(logits);
    let mut logits = contiguous;
    let rows = logits.shape().num_elements() / vocab;
    let targets = indices(targets);
    assert_eq!(targets.len(), rows, "token loss: one target per row");
    if let Some(&target) = targets.iter().find(|&&target| target >= vocab) {
        panic!("token loss: target {target} ≥ vocabulary {vocab}");
    }
    let mut nll = vec![0.0f32; rows];
    let per_task = rows_per_task(vocab);
    if keep_probs {
        let zs = logits.storage_mut::<f32>();
        nll.par_chunks_mut(per_task)
            .zip(zs.par_chunks_mut(per_task * vocab))
            .zip(targets.par_chunks(per_task))
            .for_each(|((nll, zs), targets)| token_nll_probs_rows(zs, targets, nll, vocab));
    } else {
        let zs = logits.storage::<f32>();
        nll.par_chunks_mut(per_task)
            .zip(zs.par_chunks(per_task * vocab))
            .zip(targets.par_chunks(per_task))
            .for_each(|((nll, zs), targets)| token_nll_rows(zs, targets, nll, vocab));
    }
    let nll = f32_tensor(nll, Shape::new([rows, 1]));
    Ok((nll, keep_probs.then_some(logits)))
}

/// The logits' gradient `probs · g − g · onehot(target)`, written over `probs` when nothing else
/// holds it. `Err(probs)` back when the operands are not f32.
///
/// # Shapes
/// - probs: `[rows, vocab]`, targets and g: `[rows, 1]` → `[rows, vocab]`
pub(super) fn token_nll_backward(
    probs: FlexTensor,
    targets: &FlexTensor,
    g: &FlexTensor,
) -> Result<FlexTensor, FlexTensor> {
    let (Some((contiguous, vocab)), Some((g, _))) = (f32_rows(&probs), f32_rows(g)) else {
        return Err(probs);
    };
    // Drop the caller's handle, so that the buffer has one owner and is written in place.
    drop(probs);
    let mut probs = contiguous;
    let gs = g.storage::<f32>();
    let targets = indices(targets);
    let per_task = rows_per_task(vocab);
    // The forward pass's probabilities are used once, so their buffer takes the gradient (a
    // copy is made only if something else still holds them).
    let ps = probs.storage_mut::<f32>();
    ps.par_chunks_mut(per_task * vocab)
        .zip(gs.par_chunks(per_task).zip(targets.par_chunks(per_task)))
        .for_each(|(ps, (gs, targets))| token_nll_backward_rows(ps, gs, targets, vocab));
    Ok(probs)
}

/// GELU with the exact (erf) form, `x Φ(x) = x (1 + erf(x/√2)) / 2`, or `None` when not f32.
pub(super) fn gelu(x: &FlexTensor) -> Option<FlexTensor> {
    let (x, _) = f32_rows(x)?;
    let xs = x.storage::<f32>();
    let mut out = vec![0.0f32; xs.len()];
    out.par_chunks_mut(FLOATS_PER_TASK)
        .zip(xs.par_chunks(FLOATS_PER_TASK))
        .for_each(|(out, xs)| gelu_values(xs, out));
    Some(f32_tensor(out, x.shape()))
}

/// GELU's input gradient `g (Φ(x) + x φ(x))`, φ the standard normal density, or `None` when
/// not f32.
pub(super) fn gelu_backward(x: &FlexTensor, g: &FlexTensor) -> Option<FlexTensor> {
    let (x, _) = f32_rows(x)?;
    let (g, _) = f32_rows(g)?;
    let (xs, gs) = (x.storage::<f32>(), g.storage::<f32>());
    assert_eq!(
        xs.len(),
        gs.len(),
        "GELU gradient: input and gradient shapes differ"
    );
    let mut out = vec![0.0f32; xs.len()];
    out.par_chunks_mut(FLOATS_PER_TASK)
        .zip(
            xs.par_chunks(FLOATS_PER_TASK)
                .zip(gs.par_chunks(FLOATS_PER_TASK)),
        )
        .for_each(|(out, (xs, gs))| gelu_gradients(xs, gs, out));
    Some(f32_tensor(out, x.shape()))
}

/// Below this many multiply-adds a product runs on one thread: burn's CPU matmul's threshold
/// (192³), so that the two split the work, and so round, alike.
const PARALLEL_PRODUCT: usize = 192 * 192 * 192;

/// From this many multiply-adds in all, a batch of at least four products runs one product per
/// rayon task: burn's CPU matmul's batch threshold (128³).
const PARALLEL_BATCH: usize = 128 * 128 * 128;

/// `lhs · rhs` for two f32 tensors of matrices (`[.., m, k] · [.., k, n] → [.., m, n]`, the same
/// leading dimensions on both sides), read through their strides (a transposed or head-split
/// view is not copied), by the gemm calls burn's own matmul makes, with the same threading
/// thresholds, so the values are the same bits. burn's matmul first zero-fills a byte vector and
/// then copies it into an aligned one (the copy and the fill were about 10% of the `tiny` step,
/// mostly for products); mixlab hands burn an f32 vector, which it keeps as it is. `None` unless
/// both operands are f32 with equal leading dimensions (burn's matmul also broadcasts them).
pub(super) fn matmul(lhs: &FlexTensor, rhs: &FlexTensor) -> Option<FlexTensor> {
    if lhs.dtype() != DType::F32 || rhs.dtype() != DType::F32 {
        return None;
    }
    let (lhs_shape, rhs_shape) = (lhs.shape(), rhs.shape());
    let (lhs_shape, rhs_shape) = (lhs_shape.as_slice(), rhs_shape.as_slice());
    let rank = lhs_shape.len();
    if rank < 2 || rhs_shape.len() != rank || lhs_shape[..rank - 2] != rhs_shape[..rank - 2] {
        return None;
    }
    let outer = &lhs_shape[..rank - 2];
    let (m, k, k_rhs, n) = (
        lhs_shape[rank - 2],
        lhs_shape[rank - 1],
        rhs_shape[rank - 2],
        rhs_shape[rank - 1],
    );
    assert_eq!(k, k_rhs, "matmul: inner dimensions {k} and {k_rhs} differ");
    let (lhs_strides, rhs_strides) = (lhs.layout().strides(), rhs.layout().strides());
    assert!(
        lhs_strides
            .iter()
            .chain(rhs_strides)
            .all(|&stride| stride >= 0),
        "matmul: negative strides"
    );
    let (lhs_rows, lhs_cols) = (lhs_strides[rank - 2], lhs_strides[rank - 1]);
    let (rhs_rows, rhs_cols) = (rhs_strides[rank - 2], rhs_strides[rank - 1]);
    let lhs_values = &lhs.storage::<f32>()[lhs.layout().start_offset()..];
    let rhs_values = &rhs.storage::<f32>()[rhs.layout().start_offset()..];
    // Where the `b`-th matrix (row-major over the leading dimensions) starts in a buffer.
    let start = |strides: &[isize], b: usize| -> usize {
        let mut rest = b;
        let mut offset = 0;
        for (&size, &stride) in outer.iter().zip(strides).rev() {
            offset += (rest % size) * stride as usize;
            rest /= size;
        }
        offset
    };
    let matrices: usize = outer.iter().product();
    let (matrix, out_len) = (m * n, matrices * m * n);
    let mut dims = outer.to_vec();
    dims.extend([m, n]);
    if out_len == 0 {
        return Some(f32_tensor(Vec::new(), Shape::from(dims)));
    }
    // Not zero-filled: gemm writes every element of its destination without reading it
    // (`read_dst` false), so a fill would be one more pass over the product for nothing (the
    // fill was about 1% of the `tiny` training step).
    let mut out = Vec::<f32>::with_capacity(out_len);
    // Every element the strides reach lies inside its buffer (gemm reads through raw pointers):
    // the last matrix starts furthest in, strides being non-negative.
    let reach = |rows: usize, cols: usize, row_stride: isize, col_stride: isize| {
        if rows == 0 || cols == 0 {
            return 0;
        }
        (rows - 1) * row_stride as usize + (cols - 1) * col_stride as usize + 1
    };
    assert!(start(lhs_strides, matrices - 1) + reach(m, k, lhs_rows, lhs_cols) <= lhs_values.len());
    assert!(start(rhs_strides, matrices - 1) + reach(k, n, rhs_rows, rhs_cols) <= rhs_values.len());
    let product = |out: &mut [MaybeUninit<f32>], b: usize, parallelism: gemm::Parallelism| {
        debug_assert_eq!(out.len(), matrix);
        let lhs = &lhs_values[start(lhs_strides, b)..];
        let rhs = &rhs_values[start(rhs_strides, b)..];
        // SAFETY: `out` holds m × n values, written row-major (column stride 1, row stride n),
        // none of them read (`read_dst` false: gemm then writes `beta · lhs · rhs` and, for
        // k = 0, zeros); both operands' m × k and k × n elements lie inside their buffers
        // (asserted above for the last matrix, the furthest in), and neither overlaps `out`, a
        // fresh vector's spare capacity.
        #[allow(unsafe_code)]
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr().cast::<f32>(),
                1,
                n as isize,
                false,
                lhs.as_ptr(),
                lhs_cols,
                lhs_rows,
                rhs.as_ptr(),
                rhs_cols,
                rhs_rows,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    };
    // burn's strategy: a large product threads inside gemm, a large batch of small ones threads
    // over the batch, anything smaller runs on this thread.
    let per_product = m.saturating_mul(n).saturating_mul(k);
    let total = matrices.saturating_mul(per_product);
    let over_the_batch = matrices >= 4 && total >= PARALLEL_BATCH;
    let spare = &mut out.spare_capacity_mut()[..out_len];
    if per_product >= PARALLEL_PRODUCT && !over_the_batch {
        for (b, out) in spare.chunks_mut(matrix).enumerate() {
            product(out, b, gemm::Parallelism::Rayon(0));
        }
    } else if total >= PARALLEL_BATCH && matrices > 1 {
        spare
            .par_chunks_mut(matrix)
            .enumerate()
            .for_each(|(b, out)| product(out, b, gemm::Parallelism::None));
    } else {
        for (b, out) in spare.chunks_mut(matrix).enumerate() {
            product(out, b, gemm::Parallelism::None);
        }
    }
    // SAFETY: the `matrices` products above wrote all `out_len` values (m × n each, m and n
    // non-zero here), and the capacity is `out_len`.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(out_len);
    }
    Some(f32_tensor(out, Shape::from(dims)))
}

/// `[batch, heads, seq, head_dim]` f32 values (any strides) as contiguous `[batch · seq · heads,
/// head_dim]` rows: each head's `head_dim` values are one slice copy when they are contiguous
/// (burn's reshape of a swapped view copies element by element). The values are copied, not
/// computed. `None` unless f32 and 4-D.
pub(super) fn merge_heads(x: &FlexTensor) -> Option<FlexTensor> {
    if x.dtype() != DType::F32 {
        return None;
    }
    let [batch, heads, seq, head_dim] = <[usize; 4]>::try_from(x.shape().as_slice()).ok()?;
    let strides = <[isize; 4]>::try_from(x.layout().strides()).ok()?;
    if strides.iter().any(|&stride| stride < 0) {
        return None;
    }
    let [batch_stride, head_stride, position_stride, value_stride] = strides.map(|s| s as usize);
    let values = &x.storage::<f32>()[x.layout().start_offset()..];
    let row_len = heads * head_dim;
    let mut out = vec![0.0f32; batch * seq * row_len];
    if out.is_empty() {
        return Some(f32_tensor(out, Shape::new([batch * seq * heads, head_dim])));
    }
    // One output row of `heads · head_dim` values per (sequence, position), in parallel.
    out.par_chunks_mut(row_len)
        .with_min_len(rows_per_task(row_len))
        .enumerate()
        .for_each(|(row, out)| {
            let (b, t) = (row / seq, row % seq);
            for (h, out) in out.chunks_mut(head_dim).enumerate() {
                let start = b * batch_stride + h * head_stride + t * position_stride;
                if value_stride == 1 {
                    out.copy_from_slice(&values[start..start + head_dim]);
                } else {
                    for (j, out) in out.iter_mut().enumerate() {
                        *out = values[start + j * value_stride];
                    }
                }
            }
        });
    Some(f32_tensor(out, Shape::new([batch * seq * heads, head_dim])))
}

/// One AdamW update as burn's `AdamW` computes it, element by element with the same roundings
/// (burn makes each step a pass of its own: about fifteen over every parameter), in one pass
/// over chunks in parallel, written over the parameter and moments where nothing else holds
/// them (copied first otherwise). Everything back, untouched, unless every operand is f32 with
/// the parameter's shape.
// The error gives the caller's own tensors back (moved, not copied), on the path taken only
// where there is no kernel: boxing them would cost an allocation for nothing.
#[allow(clippy::type_complexity, clippy::result_large_err)]
pub(super) fn adamw_update(
    param: FlexTensor,
    grad: &FlexTensor,
    moments: Option<[FlexTensor; 2]>,
    update: AdamWUpdate,
) -> Result<[FlexTensor; 3], (FlexTensor, Option<[FlexTensor; 2]>)> {
    let shape = param.shape();
    let all_f32 = [&param, grad]
        .into_iter()
        .chain(moments.iter().flatten())
        .all(|t| t.dtype() == DType::F32 && t.shape() == shape);
    if !all_f32 {
        return Err((param, moments));
    }
    let AdamWUpdate {
        beta_1,
        beta_2,
        epsilon,
        weight_decay,
        lr,
        time,
    } = update;
    // burn's scalars: the moments' factors and bias corrections in f32, the decay factor and
    // the learning rate in f64, each rounded to f32 where it meets the tensor.
    let decay_rate = lr * weight_decay as f64;
    let scalars = AdamWScalars {
        betas: [beta_1, beta_2],
        factors: [1.0 - beta_1, 1.0 - beta_2],
        corrections: [1f32 - beta_1.powi(time), 1f32 - beta_2.powi(time)],
        epsilon,
        keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
        lr: lr as f32,
    };
    let first = moments.is_none();
    // `to_contiguous` hands back the same buffer when it already is; `storage_mut` writes in
    // place when this is its only holder.
    let mut param = param.to_contiguous();
    let grad = grad.to_contiguous();
    let [mut m, mut v] = match moments {
        Some(moments) => moments.map(|t| t.to_contiguous()),
        None => [(); 2].map(|_| f32_tensor(vec![0.0f32; shape.num_elements()], shape.clone())),
    };
    let (ws, gs) = (param.storage_mut::<f32>(), grad.storage::<f32>());
    let (ms, vs) = (m.storage_mut::<f32>(), v.storage_mut::<f32>());
    ws.par_chunks_mut(FLOATS_PER_TASK)
        .zip(gs.par_chunks(FLOATS_PER_TASK))
        .zip(
            ms.par_chunks_mut(FLOATS_PER_TASK)
                .zip(vs.par_chunks_mut(FLOATS_PER_TASK)),
        )
        .for_each(|((ws, gs), (ms, vs))| adamw_values(ws, gs, ms, vs, first, scalars));
    Ok([param, m, v])
}

/// LayerNorm over the last dimension (`x`: rows of `d` values, `gamma` and `beta`: `[d]`) and
/// each row's mean and 1/√(var + ε), `[rows, 2]`, for the gradient; rows in parallel. `None`
/// unless all three are f32.
pub(super) fn layer_norm(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> Option<(FlexTensor, FlexTensor)> {
    let (x, d) = f32_rows(x)?;
    let (gamma, _) = f32_rows(gamma)?;
    let (beta, _) = f32_rows(beta)?;
    let (gs, bs) = (gamma.storage::<f32>(), beta.storage::<f32>());
    assert!(
        gs.len() == d && bs.len() == d,
        "LayerNorm: rows of {d} values, γ of {} and β of {}",
        gs.len(),
        bs.len()
    );
    let xs = x.storage::<f32>();
    let rows = xs.len() / d;
    let mut out = vec![0.0f32; xs.len()];
    let mut stats = vec![0.0f32; 2 * rows];
    let per_task = rows_per_task(d);
    out.par_chunks_mut(per_task * d)
        .zip(xs.par_chunks(per_task * d))
        .zip(stats.par_chunks_mut(per_task * 2))
        .for_each(|((out, xs), stats)| layer_norm_rows(xs, gs, bs, epsilon as f32, out, stats));
    Some((
        f32_tensor(out, x.shape()),
        f32_tensor(stats, Shape::new([rows, 2])),
    ))
}

/// LayerNorm's gradients `[dx, dγ, dβ]` from the input, γ, the forward pass's statistics and the
/// output's gradient `g`. γ's and β's are summed over rows per task, then over tasks in order,
/// so the result does not depend on the number of threads.
pub(super) fn layer_norm_backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    stats: &FlexTensor,
    g: &FlexTensor,
) -> [FlexTensor; 3] {
    let f32_only = "LayerNorm gradient: the kernel's forward pass ran in f32, so must its backward";
    let (x, d) = f32_rows(x).expect(f32_only);
    let (gamma, _) = f32_rows(gamma).expect(f32_only);
    let (stats, _) = f32_rows(stats).expect(f32_only);
    let (g, _) = f32_rows(g).expect(f32_only);
    let (xs, gammas, stats_values, gs) = (
        x.storage::<f32>(),
        gamma.storage::<f32>(),
        stats.storage::<f32>(),
        g.storage::<f32>(),
    );
    assert_eq!(
        xs.len(),
        gs.len(),
        "LayerNorm gradient: input and gradient shapes differ"
    );
    let per_task = rows_per_task(d);
    let mut dx = vec![0.0f32; xs.len()];
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(per_task * d)
        .zip(xs.par_chunks(per_task * d))
        .zip(gs.par_chunks(per_task * d))
        .zip(stats_values.par_chunks(per_task * 2))
        .map(|(((dx, xs), gs), stats)| {
            let (mut d_gamma, mut d_beta) = (vec![0.0f32; d], vec![0.0f32; d]);
            layer_norm_backward_rows(xs, gs, gammas, stats, dx, &mut d_gamma, &mut d_beta);
            (d_gamma, d_beta)
        })
        .collect();
    let (mut d_gamma, mut d_beta) = (vec![0.0f32; d], vec![0.0f32; d]);
    for (task_gamma, task_beta) in &partial {
        d_gamma
            .iter_mut()
            .zip(task_gamma)
            .for_each(|(a, b)| *a += b);
        d_beta.iter_mut().zip(task_beta).for_each(|(a, b)| *a += b);
    }
    [
        f32_tensor(dx, x.shape()),
        f32_tensor(d_gamma, Shape::new([d])),
        f32_tensor(d_beta, Shape::new([d])),
    ]
}
