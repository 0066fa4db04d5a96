//! The operations of [`super::ModelBackend`] on burn's `flex` CPU backend as row kernels.
//!
//! burn's CPU operations each make a full pass over their operand and allocate their result, so
//! a composition of five of them over `[tokens, vocabulary]` logits reads and writes the logits
//! five times. These kernels make one pass per row (a row of logits or of attention scores fits
//! in the L1 or L2 cache) and rows run in parallel on burn's rayon pool. GELU and its gradient
//! run with a branch-free erf and exp that LLVM vectorises. f32 only: other float
//! types take the generic composition of [`super`]. Each equals that composition up to float
//! rounding (tested in `tests/model.rs` against burn's decomposed softmax and log-softmax).

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, TensorData, TensorMetadata};
use rayon::prelude::*;

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
        .for_each(|(out, (ys, gs))| {
            for ((out, y), g) in out
                .chunks_mut(row_len)
                .zip(ys.chunks(row_len))
                .zip(gs.chunks(row_len))
            {
                let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                for ((out, y), g) in out.iter_mut().zip(y).zip(g) {
                    *out = y * (g - dot);
                }
            }
        });
    Some(f32_tensor(out, y.shape()))
}

/// Each row's negative log-probability of its target, `max − z[target] + ln Σ exp(z − max)`, and
/// (when `keep_probs`) the row's softmax for the backward pass. `None` when not f32.
///
/// # Shapes
/// - logits: `[rows, vocab]`, targets: `[rows, 1]` → nll `[rows, 1]`, probs `[rows, vocab]`
pub(super) fn token_nll(
    logits: &FlexTensor,
    targets: &FlexTensor,
    keep_probs: bool,
) -> Option<(FlexTensor, Option<FlexTensor>)> {
    let (logits, vocab) = f32_rows(logits)?;
    let zs = logits.storage::<f32>();
    let rows = zs.len() / vocab;
    let targets = indices(targets);
    assert_eq!(targets.len(), rows, "token loss: one target per row");
    let mut nll = vec![0.0f32; rows];
    let mut probs = if keep_probs {
        vec![0.0f32; zs.len()]
    } else {
        Vec::new()
    };
    let per_task = rows_per_task(vocab);
    let row = |z: &[f32], target: usize, probs: Option<&mut [f32]>| -> f32 {
        assert!(
            target < vocab,
            "token loss: target {target} ≥ vocabulary {vocab}"
        );
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = match probs {
            Some(probs) => {
                let mut sum = 0.0f32;
                for (p, z) in probs.iter_mut().zip(z) {
                    *p = (z - max).exp();
                    sum += *p;
                }
                let inverse = 1.0 / sum;
                probs.iter_mut().for_each(|p| *p *= inverse);
                sum
            }
            None => z.iter().map(|z| (z - max).exp()).sum(),
        };
        // (max − z_t) first: exact enough when the target has nearly all the probability.
        (max - z[target]) + sum.ln()
    };
    if keep_probs {
        nll.par_chunks_mut(per_task)
            .zip(zs.par_chunks(per_task * vocab))
            .zip(probs.par_chunks_mut(per_task * vocab))
            .zip(targets.par_chunks(per_task))
            .for_each(|(((nll, zs), probs), targets)| {
                for (((nll, z), probs), &target) in nll
                    .iter_mut()
                    .zip(zs.chunks(vocab))
                    .zip(probs.chunks_mut(vocab))
                    .zip(targets)
                {
                    *nll = row(z, target, Some(probs));
                }
            });
    } else {
        nll.par_chunks_mut(per_task)
            .zip(zs.par_chunks(per_task * vocab))
            .zip(targets.par_chunks(per_task))
            .for_each(|((nll, zs), targets)| {
                for ((nll, z), &target) in nll.iter_mut().zip(zs.chunks(vocab)).zip(targets) {
                    *nll = row(z, target, None);
                }
            });
    }
    let nll = f32_tensor(nll, Shape::new([rows, 1]));
    let probs = keep_probs.then(|| f32_tensor(probs, logits.shape()));
    Some((nll, probs))
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
        .for_each(|(ps, (gs, targets))| {
            for ((p, &g), &target) in ps.chunks_mut(vocab).zip(gs).zip(targets) {
                p.iter_mut().for_each(|p| *p *= g);
                p[target] -= g;
            }
        });
    Ok(probs)
}

/// `e^x` for the kernels: Cephes' single-precision method (x = n ln 2 + r with ln 2 in two
/// parts, a degree-5 polynomial for e^r on [−ln2/2, ln2/2], 2^n built from its bits), within
/// 2 ulp of libm's `expf`, and branch-free so that LLVM vectorises the loops that call it (libm's
/// `expf` is one call per element). Below −87.3 (under f32's smallest normal), −∞ included, it
/// gives exactly 0; above 88.7 it saturates (the kernels only pass values ≤ 0).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LOWEST: f32 = -87.336_54;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(LOWEST, 88.722_84);
    let n = (clamped * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x < LOWEST { 0.0 } else { e_r * two_n }
}

/// `erf(z)` and `exp(−z²)` (which GELU's gradient needs too), by Abramowitz and Stegun 7.1.26:
/// `erf(|z|) = 1 − (a1 t + … + a5 t⁵) e^(−z²)` with `t = 1 / (1 + p|z|)`, absolute error under
/// 1.5e-7 (PyTorch's vectorised CPU `erf` uses the same formula). Branch-free, so it vectorises.
#[inline(always)]
fn erf_and_gaussian(z: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let gaussian = exp(-z * z);
    let t = 1.0 / (1.0 + P * z.abs());
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    ((1.0 - poly * gaussian).copysign(z), gaussian)
}

/// GELU with the exact (erf) form, `x Φ(x) = x (1 + erf(x/√2)) / 2`, or `None` when not f32.
pub(super) fn gelu(x: &FlexTensor) -> Option<FlexTensor> {
    let (x, _) = f32_rows(x)?;
    let xs = x.storage::<f32>();
    let mut out = vec![0.0f32; xs.len()];
    out.par_chunks_mut(FLOATS_PER_TASK)
        .zip(xs.par_chunks(FLOATS_PER_TASK))
        .for_each(|(out, xs)| {
            for (out, &x) in out.iter_mut().zip(xs) {
                let (erf, _) = erf_and_gaussian(x * std::f32::consts::FRAC_1_SQRT_2);
                *out = 0.5 * x * (1.0 + erf);
            }
        });
    Some(f32_tensor(out, x.shape()))
}

/// GELU's input gradient `g (Φ(x) + x φ(x))`, φ the standard normal density, or `None` when
/// not f32.
pub(super) fn gelu_backward(x: &FlexTensor, g: &FlexTensor) -> Option<FlexTensor> {
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
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
        .for_each(|(out, (xs, gs))| {
            for ((out, &x), &g) in out.iter_mut().zip(xs).zip(gs) {
                // exp(−z²) with z = x/√2 is exp(−x²/2), the density's kernel.
                let (erf, gaussian) = erf_and_gaussian(x * std::f32::consts::FRAC_1_SQRT_2);
                *out = g * (0.5 * (1.0 + erf) + x * FRAC_1_SQRT_2PI * gaussian);
            }
        });
    Some(f32_tensor(out, x.shape()))
}
