//! Causal self-attention as one operation on burn's `flex` CPU backend, f32.
//!
//! The composition ([`crate::attention::causal_attention_composed`]) is about twenty burn
//! operations per layer, each a pass over its operand into a fresh buffer, and in the backward
//! pass the q, k and v gradients each go into a zero-filled buffer of the whole projection's
//! size before the three are summed (burn's `narrow` gradient). Here each sequence is one rayon
//! task that runs, head by head, rotary embedding, the products, the mask and softmax on buffers
//! of one head's size, and the backward pass writes each gradient once into one buffer.
//!
//! Every value is computed as the composition computes it: the same gemm calls (on one thread
//! per product, the composition's path for attention's batches of products), the same row
//! kernels ([`super::super::rows`]), and the rotary products and sums in the same order, so the
//! results are the same bits (tested in `tests/model.rs`). Where the causal mask leaves whole
//! blocks of a product out, the products run on the other blocks only, and still give the same
//! bits ([`causal_blocks`]).

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, TensorMetadata};
use rayon::prelude::*;

use super::super::rows::{
    softmax_backward_row_prefixes, softmax_backward_rows, softmax_row_prefixes, softmax_rows,
};
use super::f32_tensor;
use crate::attention::AttentionShape;

/// Strides of a matrix operand, in elements.
#[derive(Debug, Clone, Copy)]
struct Strides {
    row: usize,
    col: usize,
}

impl Strides {
    fn new(row: usize, col: usize) -> Self {
        Self { row, col }
    }

    /// One past the furthest element a `rows × cols` matrix with these strides reaches.
    fn reach(self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            return 0;
        }
        (rows - 1) * self.row + (cols - 1) * self.col + 1
    }
}

/// Rows per block of the causal products (see [`causal_blocks`]). Measured on the 2-core
/// development machine (one thread, attention's forward and backward pass alternating with the
/// whole products): `tiny`'s heads (128 positions, 32 values) 0.91x the time with blocks of 32
/// and 0.94x with 64; `small`'s (256, 64) 0.89x and 0.86x. Smaller blocks skip more of the mask
/// but make more, smaller products, each with gemm's fixed costs.
const BLOCK: usize = 32;

/// The depth up to which gemm (0.19) sums every output in one pass, in order: it splits a
/// product's depth `k` into `⌈k / kc⌉` equal parts with `kc ≥ 512`, and adds the parts' sums.
const ONE_PASS_DEPTH: usize = 512;

/// The row blocks `[start, end)` in which the CPU attention kernel runs its causal products for
/// `seq` positions and heads of `head_dim` values, or `None` when it runs the whole products.
///
/// Row `i` attends to keys `0..=i`, so a block of rows needs the keys up to its end only: the
/// scores, softmax and `probabilities · v` of rows `start..end` run over keys `0..end`, and in
/// the backward pass each block of keys takes the rows from its start on. What is skipped is
/// exactly the products' masked part, whose probabilities are exactly 0: in the whole products
/// those terms add exact zeros to sums that have not started (they come first) or have ended
/// (they come last), and gemm sums each output in order over the depth, so the results are the
/// same bits (tested against the composition in `tests/model.rs`). That holds while gemm takes
/// every depth in one pass (up to 512) and runs each product through its
/// general kernels: at least two rows and columns, and more than 16 × 16 outputs (below that it
/// switches to kernels that sum in another order), hence at least two blocks and heads of 16
/// or more values. The last block takes the rows left over, so that every block has at least
/// 32 rows. Saves 3/8 of attention's products and softmax at 128 positions, nearly half
/// at 512.
pub fn causal_blocks(seq: usize, head_dim: usize) -> Option<Vec<(usize, usize)>> {
    if !(2 * BLOCK..=ONE_PASS_DEPTH).contains(&seq) || head_dim < 16 {
        return None;
    }
    let count = seq / BLOCK;
    Some(
        (0..count)
            .map(|b| {
                let end = if b + 1 == count { seq } else { (b + 1) * BLOCK };
                (b * BLOCK, end)
            })
            .collect(),
    )
}

/// `dst = lhs · rhs` (`m × k` times `k × n`) on this thread, each operand read through its
/// strides from the start of its slice: the gemm call [`super::matmul`] makes for one product of
/// a batch. `dst` is overwritten, but must be initialised (gemm's kernels may read the
/// destination tile even when they do not add to it).
#[allow(clippy::too_many_arguments)]
fn product(
    dst: &mut [f32],
    dst_strides: Strides,
    lhs: &[f32],
    lhs_strides: Strides,
    rhs: &[f32],
    rhs_strides: Strides,
    [m, n, k]: [usize; 3],
) {
    assert!(
        dst_strides.reach(m, n) <= dst.len(),
        "attention: product output out of bounds"
    );
    assert!(
        lhs_strides.reach(m, k) <= lhs.len(),
        "attention: left operand out of bounds"
    );
    assert!(
        rhs_strides.reach(k, n) <= rhs.len(),
        "attention: right operand out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: every element the strides reach lies inside its slice (asserted above), and `dst`
    // is borrowed mutably, so it overlaps neither operand.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_strides.col as isize,
            dst_strides.row as isize,
            false,
            lhs.as_ptr(),
            lhs_strides.col as isize,
            lhs_strides.row as isize,
            rhs.as_ptr(),
            rhs_strides.col as isize,
            rhs_strides.row as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The cos and sin tables as f32 slices, checked against the shape.
struct Rotary<'a> {
    cos: &'a [f32],
    sin: &'a [f32],
    dims: usize,
}

impl Rotary<'_> {
    /// `x ⊙ cos + rotate_half(x) ⊙ sin` over the first `dims` values of `x` (then `scale` times
    /// every value, when given), into `out`; the values past `dims` are copied. `at`: the
    /// tables' offset of this row (position-major, then head). Each product and the sum are
    /// rounded as burn's element-wise operations round them: `(x·c) + ((−x₂)·s)`.
    fn embed(&self, x: &[f32], at: usize, scale: Option<f32>, out: &mut [f32]) {
        let half = self.dims / 2;
        let (cos, sin) = (&self.cos[at..at + self.dims], &self.sin[at..at + self.dims]);
        for i in 0..half {
            out[i] = x[i] * cos[i] + (-x[i + half]) * sin[i];
        }
        for i in half..self.dims {
            out[i] = x[i] * cos[i] + x[i - half] * sin[i];
        }
        out[self.dims..].copy_from_slice(&x[self.dims..]);
        if let Some(scale) = scale {
            out.iter_mut().for_each(|v| *v *= scale);
        }
    }

    /// The gradient of [`Rotary::embed`]'s input from its output's gradient `g` (read at
    /// `g[i · stride]`), into `out`: `g' = g·scale` first, then `g'·cos` plus the rotated half's
    /// term (`g'₂·s₂` for the first half, `−(g'₁·s₁)` for the second), the two terms of burn's
    /// gradient sum (the others are zeros), so the same bits in either order.
    fn gradient(&self, g: &[f32], stride: usize, at: usize, scale: Option<f32>, out: &mut [f32]) {
        let scaled = |i: usize| match scale {
            Some(scale) => g[i * stride] * scale,
            None => g[i * stride],
        };
        let half = self.dims / 2;
        let (cos, sin) = (&self.cos[at..at + self.dims], &self.sin[at..at + self.dims]);
        for i in 0..half {
            out[i] = scaled(i) * cos[i] + scaled(i + half) * sin[i + half];
        }
        for i in half..self.dims {
            out[i] = scaled(i) * cos[i] + -(scaled(i - half) * sin[i - half]);
        }
        for (i, out) in out.iter_mut().enumerate().skip(self.dims) {
            *out = scaled(i);
        }
    }
}

/// The tables as contiguous f32 buffers (kept alive by the caller), or `None` when not f32.
fn tables(rotary: Option<&[FlexTensor; 2]>) -> Option<Option<[FlexTensor; 2]>> {
    match rotary {
        None => Some(None),
        Some(tables) => {
            if tables.iter().any(|t| t.dtype() != DType::F32) {
                return None;
            }
            Some(Some(tables.clone().map(|t| t.to_contiguous())))
        }
    }
}

fn rotary_view<'a>(
    tables: &'a Option<[FlexTensor; 2]>,
    shape: &AttentionShape,
) -> Option<Rotary<'a>> {
    let [cos, sin] = tables.as_ref()?;
    let (cos, sin) = (cos.storage::<f32>(), sin.storage::<f32>());
    let expected = shape.seq * shape.heads * shape.rotary_dims;
    assert!(
        cos.len() == expected && sin.len() == expected,
        "attention: rotary tables of {} and {} values, expected seq × heads × rotary dims = {expected}",
        cos.len(),
        sin.len()
    );
    assert!(
        shape.rotary_dims.is_multiple_of(2) && shape.rotary_dims <= shape.head_dim,
        "attention: {} rotary dims for heads of {}",
        shape.rotary_dims,
        shape.head_dim
    );
    Some(Rotary {
        cos,
        sin,
        dims: shape.rotary_dims,
    })
}

/// What the backward pass needs from the forward pass: q (embedded and scaled) and k
/// (embedded), `[batch, heads, seq, head_dim]`, and the probabilities, `[batch, heads, seq,
/// seq]`.
pub(in crate::fused) struct Saved {
    pub q: FlexTensor,
    pub k: FlexTensor,
    pub probs: FlexTensor,
}

/// Adds the causal mask to the scores of rows `start..end` (`scores` holds those rows, `seq`
/// apart) over keys `0..end`, as the composition adds it: −∞ past the diagonal, +0 elsewhere
/// (which turns a −0 score into +0, as the composition's addition does).
fn add_causal_mask(scores: &mut [f32], seq: usize, start: usize, end: usize) {
    for (i, row) in (start..end).zip(scores.chunks_mut(seq)) {
        for (j, score) in row[..end].iter_mut().enumerate() {
            *score += if j > i { f32::NEG_INFINITY } else { 0.0 };
        }
    }
}

/// Causal attention of `qkv`'s rows (`[batch · seq · heads, 3 · head_dim]`) into `[batch · seq,
/// heads · head_dim]`, and, when `keep`, what the backward pass needs. `None` when not f32.
pub(in crate::fused) fn forward(
    qkv: &FlexTensor,
    rotary: Option<&[FlexTensor; 2]>,
    shape: AttentionShape,
    keep: bool,
) -> Option<(FlexTensor, Option<Saved>)> {
    if qkv.dtype() != DType::F32 {
        return None;
    }
    let tables = tables(rotary)?;
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim,
        ..
    } = shape;
    let qkv = qkv.to_contiguous();
    assert_eq!(
        qkv.shape().as_slice(),
        [batch * seq * heads, 3 * head_dim],
        "attention: qkv rows of the wrong shape"
    );
    let rotary = rotary_view(&tables, &shape);
    let scale = shape.scale() as f32;
    let qkv = qkv.storage::<f32>();
    let (sequence, head, scores) = (seq * heads * head_dim, seq * head_dim, seq * seq);
    let blocks = causal_blocks(seq, head_dim);

    let mut out = vec![0.0f32; batch * sequence];
    // Kept for the backward pass, or one sequence's worth of scratch per task.
    let (mut q, mut k, mut probs) = if keep {
        (
            vec![0.0f32; batch * sequence],
            vec![0.0f32; batch * sequence],
            vec![0.0f32; batch * heads * scores],
        )
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let task = |b: usize, out: &mut [f32], q: &mut [f32], k: &mut [f32], probs: &mut [f32]| {
        let qkv = &qkv[b * 3 * sequence..(b + 1) * 3 * sequence];
        let mut masked = vec![0.0f32; scores];
        for h in 0..heads {
            let (q, k) = (&mut q[h * head..][..head], &mut k[h * head..][..head]);
            let probs = &mut probs[h * scores..][..scores];
            for t in 0..seq {
                let row = (t * heads + h) * 3 * head_dim;
                let (q_in, k_in) = (
                    &qkv[row..row + head_dim],
                    &qkv[row + head_dim..row + 2 * head_dim],
                );
                let (q_out, k_out) = (
                    &mut q[t * head_dim..][..head_dim],
                    &mut k[t * head_dim..][..head_dim],
                );
                match &rotary {
                    Some(rotary) => {
                        let at = (t * heads + h) * rotary.dims;
                        rotary.embed(q_in, at, Some(scale), q_out);
                        rotary.embed(k_in, at, None, k_out);
                    }
                    None => {
                        q_out.iter_mut().zip(q_in).for_each(|(o, x)| *o = x * scale);
                        k_out.copy_from_slice(k_in);
                    }
                }
            }
            let v = &qkv[(h * 3 + 2) * head_dim..];
            let Some(blocks) = &blocks else {
                // q · kᵀ, then the mask added as the composition adds it (+0 or −∞).
                product(
                    &mut masked,
                    Strides::new(seq, 1),
                    q,
                    Strides::new(head_dim, 1),
                    k,
                    Strides::new(1, head_dim),
                    [seq, seq, head_dim],
                );
                add_causal_mask(&mut masked, seq, 0, seq);
                softmax_rows(&masked, probs, seq);
                // probabilities · v, written into this head's columns of the output rows.
                product(
                    &mut out[h * head_dim..],
                    Strides::new(heads * head_dim, 1),
                    probs,
                    Strides::new(seq, 1),
                    v,
                    Strides::new(heads * 3 * head_dim, 1),
                    [seq, head_dim, seq],
                );
                continue;
            };
            // The same, block by block of rows, over the keys up to the block's end.
            for &(start, end) in blocks {
                let rows = start * seq..end * seq;
                product(
                    &mut masked[rows.clone()],
                    Strides::new(seq, 1),
                    &q[start * head_dim..],
                    Strides::new(head_dim, 1),
                    k,
                    Strides::new(1, head_dim),
                    [end - start, end, head_dim],
                );
                add_causal_mask(&mut masked[rows.clone()], seq, start, end);
                softmax_row_prefixes(&masked[rows.clone()], &mut probs[rows], seq, end);
                product(
                    &mut out[start * heads * head_dim + h * head_dim..],
                    Strides::new(heads * head_dim, 1),
                    &probs[start * seq..],
                    Strides::new(seq, 1),
                    v,
                    Strides::new(heads * 3 * head_dim, 1),
                    [end - start, head_dim, end],
                );
            }
        }
    };
    if keep {
        out.par_chunks_mut(sequence)
            .zip(q.par_chunks_mut(sequence))
            .zip(k.par_chunks_mut(sequence))
            .zip(probs.par_chunks_mut(heads * scores))
            .enumerate()
            .for_each(|(b, (((out, q), k), probs))| task(b, out, q, k, probs));
    } else {
        out.par_chunks_mut(sequence)
            .enumerate()
            .for_each(|(b, out)| {
                let (mut q, mut k) = (vec![0.0f32; sequence], vec![0.0f32; sequence]);
                let mut probs = vec![0.0f32; heads * scores];
                task(b, out, &mut q, &mut k, &mut probs)
            });
    }
    let out = f32_tensor(out, Shape::new([batch * seq, heads * head_dim]));
    let saved = keep.then(|| Saved {
        q: f32_tensor(q, Shape::new([batch, heads, seq, head_dim])),
        k: f32_tensor(k, Shape::new([batch, heads, seq, head_dim])),
        probs: f32_tensor(probs, Shape::new([batch, heads, seq, seq])),
    });
    Some((out, saved))
}

/// The gradient of `qkv`'s rows from the output's gradient `g` (`[batch · seq, heads ·
/// head_dim]`) and what [`forward`] kept.
pub(in crate::fused) fn backward(
    qkv: &FlexTensor,
    rotary: Option<&[FlexTensor; 2]>,
    saved: &Saved,
    shape: AttentionShape,
    g: &FlexTensor,
) -> FlexTensor {
    let f32_only = "attention gradient: the kernel's forward pass ran in f32, so must its backward";
    assert_eq!(g.dtype(), DType::F32, "{f32_only}");
    let tables = tables(rotary).expect(f32_only);
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim,
        ..
    } = shape;
    let (qkv, g) = (qkv.to_contiguous(), g.to_contiguous());
    assert_eq!(
        g.shape().as_slice(),
        [batch * seq, heads * head_dim],
        "attention gradient: of the wrong shape"
    );
    let rotary = rotary_view(&tables, &shape);
    let scale = shape.scale() as f32;
    let (q, k, probs) = (
        saved.q.to_contiguous(),
        saved.k.to_contiguous(),
        saved.probs.to_contiguous(),
    );
    let (qkv, g) = (qkv.storage::<f32>(), g.storage::<f32>());
    let (q, k, probs) = (
        q.storage::<f32>(),
        k.storage::<f32>(),
        probs.storage::<f32>(),
    );
    let (sequence, head, scores) = (seq * heads * head_dim, seq * head_dim, seq * seq);
    let row_len = heads * 3 * head_dim;
    let blocks = causal_blocks(seq, head_dim);

    let mut grad = vec![0.0f32; batch * 3 * sequence];
    grad.par_chunks_mut(3 * sequence)
        .enumerate()
        .for_each(|(b, grad)| {
            let qkv = &qkv[b * 3 * sequence..][..3 * sequence];
            let g = &g[b * sequence..][..sequence];
            let mut d_probs = vec![0.0f32; scores];
            let mut d_scores = vec![0.0f32; scores];
            let mut d_q = vec![0.0f32; head];
            let mut d_k = vec![0.0f32; head]; // transposed: [head_dim, seq]
            for h in 0..heads {
                let at = (b * heads + h) * head;
                let (q, k) = (&q[at..at + head], &k[at..at + head]);
                let probs = &probs[(b * heads + h) * scores..][..scores];
                let g = &g[h * head_dim..];
                let g_strides = Strides::new(heads * head_dim, 1);
                let v = &qkv[(h * 3 + 2) * head_dim..];
                match &blocks {
                    None => {
                        // d probs = g · vᵀ; d v = probsᵀ · g, straight into v's columns.
                        product(
                            &mut d_probs,
                            Strides::new(seq, 1),
                            g,
                            g_strides,
                            v,
                            Strides::new(1, row_len),
                            [seq, seq, head_dim],
                        );
                        product(
                            &mut grad[(h * 3 + 2) * head_dim..],
                            Strides::new(row_len, 1),
                            probs,
                            Strides::new(1, seq),
                            g,
                            g_strides,
                            [seq, head_dim, seq],
                        );
                        // Softmax's gradient; the mask's is the identity.
                        softmax_backward_rows(probs, &d_probs, &mut d_scores, seq);
                        // d q = d scores · k; d kᵀ = qᵀ · d scores, as the composition's matmul
                        // gradient takes them (k's gradient is the transpose of a product).
                        product(
                            &mut d_q,
                            Strides::new(head_dim, 1),
                            &d_scores,
                            Strides::new(seq, 1),
                            k,
                            Strides::new(head_dim, 1),
                            [seq, head_dim, seq],
                        );
                        product(
                            &mut d_k,
                            Strides::new(seq, 1),
                            q,
                            Strides::new(1, head_dim),
                            &d_scores,
                            Strides::new(seq, 1),
                            [head_dim, seq, seq],
                        );
                    }
                    Some(blocks) => {
                        // The same products over the unmasked blocks (see `causal_blocks`).
                        // By blocks of rows, over the keys up to the block's end: d probs,
                        // softmax's gradient and d q.
                        for &(start, end) in blocks {
                            let rows = start * seq..end * seq;
                            let g_rows = &g[start * heads * head_dim..];
                            product(
                                &mut d_probs[rows.clone()],
                                Strides::new(seq, 1),
                                g_rows,
                                g_strides,
                                v,
                                Strides::new(1, row_len),
                                [end - start, end, head_dim],
                            );
                            softmax_backward_row_prefixes(
                                &probs[rows.clone()],
                                &d_probs[rows.clone()],
                                &mut d_scores[rows],
                                seq,
                                end,
                            );
                            product(
                                &mut d_q[start * head_dim..],
                                Strides::new(head_dim, 1),
                                &d_scores[start * seq..],
                                Strides::new(seq, 1),
                                k,
                                Strides::new(head_dim, 1),
                                [end - start, head_dim, end],
                            );
                        }
                        // By blocks of keys, over the rows from the block's start on (earlier
                        // rows give these keys probability 0): d v and d kᵀ.
                        for &(start, end) in blocks {
                            let depth = seq - start;
                            product(
                                &mut grad[start * row_len + (h * 3 + 2) * head_dim..],
                                Strides::new(row_len, 1),
                                &probs[start * seq + start..],
                                Strides::new(1, seq),
                                &g[start * heads * head_dim..],
                                g_strides,
                                [end - start, head_dim, depth],
                            );
                            product(
                                &mut d_k[start..],
                                Strides::new(seq, 1),
                                &q[start * head_dim..],
                                Strides::new(1, head_dim),
                                &d_scores[start * seq + start..],
                                Strides::new(seq, 1),
                                [head_dim, end - start, depth],
                            );
                        }
                    }
                }
                // Through the rotary embedding (and q's scale) into q's and k's columns.
                for t in 0..seq {
                    let row = (t * heads + h) * 3 * head_dim;
                    let (d_q_in, d_k_in) = (&d_q[t * head_dim..][..head_dim], &d_k[t..]);
                    let out = &mut grad[row..row + 2 * head_dim];
                    let (q_out, k_out) = out.split_at_mut(head_dim);
                    match &rotary {
                        Some(rotary) => {
                            let at = (t * heads + h) * rotary.dims;
                            rotary.gradient(d_q_in, 1, at, Some(scale), q_out);
                            rotary.gradient(d_k_in, seq, at, None, k_out);
                        }
                        None => {
                            q_out
                                .iter_mut()
                                .zip(d_q_in)
                                .for_each(|(o, d)| *o = d * scale);
                            for (i, o) in k_out.iter_mut().enumerate() {
                                *o = d_k_in[i * seq];
                            }
                        }
                    }
                }
            }
        });
    f32_tensor(grad, Shape::new([batch * seq * heads, 3 * head_dim]))
}
