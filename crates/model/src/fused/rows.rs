//! Vectorised, deterministic f32 arithmetic on rows: the pieces of the CPU kernels
//! (`fused/flex.rs`) that do not touch a tensor.
//!
//! Every function is branch-free in its inner loop, so LLVM vectorises it, and every reduction
//! associates in an order the code fixes (over [`LANES`] accumulators), so the result is the
//! same bits whatever vector width the CPU offers. The kernels at the end work on whole rows;
//! each is compiled for AVX2 and AVX-512 beside the build's baseline, picks one at run time
//! ([`Vectors`]), and has an `_at` twin that runs a chosen one.

/// Independent accumulators of every row reduction: a fixed association order (so the result
/// does not depend on the vector width LLVM picks) that is wide enough to fill an AVX-512
/// register, where one running sum would be a chain of dependent scalar additions.
pub const LANES: usize = 16;

/// The instruction sets the kernels are compiled for; [`Vectors::detected`] picks the widest
/// the CPU has. Every level computes the same bits: the code is the same, Rust never contracts
/// `a * b + c` into a fused multiply-add on its own, and every reduction's order is fixed by the
/// code (tested: `kernels_compute_the_same_bits_at_every_vector_width` in `tests/model.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vectors {
    /// What the build targets (SSE2 on x86-64; whatever the target is elsewhere).
    Baseline,
    /// AVX2 with FMA (x86-64 from 2013 on).
    Avx2,
    /// AVX-512 F and VL.
    Avx512,
}

impl Vectors {
    /// Whether this CPU runs code compiled for `self`.
    pub fn supported(self) -> bool {
        match self {
            Vectors::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Vectors::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every level this CPU runs, narrowest first.
    pub fn available() -> Vec<Vectors> {
        [Vectors::Baseline, Vectors::Avx2, Vectors::Avx512]
            .into_iter()
            .filter(|vectors| vectors.supported())
            .collect()
    }

    /// The widest level this CPU runs (the standard library caches the CPU's answer).
    pub fn detected() -> Vectors {
        [Vectors::Avx512, Vectors::Avx2]
            .into_iter()
            .find(|vectors| vectors.supported())
            .unwrap_or(Vectors::Baseline)
    }
}

/// Defines `fn $name(args) -> ret`, which runs the body compiled for [`Vectors::detected`], and
/// `fn $at(vectors, args) -> ret`, which runs it compiled for `vectors` (and panics when the CPU
/// lacks them).
macro_rules! multiversion {
    ($(#[$meta:meta])* pub fn $name:ident / $at:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            $at(Vectors::detected(), $($arg),*)
        }

        $(#[$meta])*
        ///
        /// Compiled for `vectors`; panics when this CPU lacks them.
        pub fn $at(vectors: Vectors, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            assert!(vectors.supported(), "this CPU does not run {vectors:?} code");
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                match vectors {
                    // SAFETY: `supported` checked that the CPU has every feature it is compiled for.
                    #[allow(unsafe_code)]
                    Vectors::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    #[allow(unsafe_code)]
                    Vectors::Avx2 => return unsafe { avx2($($arg),*) },
                    Vectors::Baseline => {}
                }
            }
            portable($($arg),*)
        }
    };
}

/// Sum of the [`LANES`] accumulators in a fixed pairwise order.
#[inline(always)]
pub fn reduce_sum(mut lanes: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// The largest value of `row` (−∞ for an empty row).
#[inline(always)]
pub fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(x);
        }
    }
    let tail = chunks.remainder().iter().copied();
    lanes
        .into_iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// `Σ x ⊙ y` with [`LANES`] accumulators.
#[inline(always)]
pub fn row_dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (mut xs, mut ys) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    for (x, y) in (&mut xs).zip(&mut ys) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    for (lane, (x, y)) in lanes
        .iter_mut()
        .zip(xs.remainder().iter().zip(ys.remainder()))
    {
        *lane += x * y;
    }
    reduce_sum(lanes)
}

/// Writes `e^(z − shift)` into `out` and returns the sum of what it wrote, or only returns the
/// sum when `out` is `None`.
#[inline(always)]
pub fn row_exp_sum(z: &[f32], shift: f32, out: Option<&mut [f32]>) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut zs = z.chunks_exact(LANES);
    match out {
        Some(out) => {
            let mut outs = out.chunks_exact_mut(LANES);
            for (z, out) in (&mut zs).zip(&mut outs) {
                for ((lane, z), out) in lanes.iter_mut().zip(z).zip(out) {
                    *out = exp(z - shift);
                    *lane += *out;
                }
            }
            let tail = zs.remainder().iter().zip(outs.into_remainder());
            for (lane, (z, out)) in lanes.iter_mut().zip(tail) {
                *out = exp(z - shift);
                *lane += *out;
            }
        }
        None => {
            for z in &mut zs {
                for (lane, z) in lanes.iter_mut().zip(z) {
                    *lane += exp(z - shift);
                }
            }
            for (lane, z) in lanes.iter_mut().zip(zs.remainder()) {
                *lane += exp(z - shift);
            }
        }
    }
    reduce_sum(lanes)
}

/// [`row_exp_sum`] writing `exp(z − shift)` over `z` (the same bits: the same operations in the
/// same order).
#[inline(always)]
pub fn row_exp_sum_in_place(z: &mut [f32], shift: f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut zs = z.chunks_exact_mut(LANES);
    for z in &mut zs {
        for (lane, z) in lanes.iter_mut().zip(z) {
            *z = exp(*z - shift);
            *lane += *z;
        }
    }
    for (lane, z) in lanes.iter_mut().zip(zs.into_remainder()) {
        *z = exp(*z - shift);
        *lane += *z;
    }
    reduce_sum(lanes)
}

/// Multiplies every value of `row` by `factor`.
#[inline(always)]
pub fn row_scale(row: &mut [f32], factor: f32) {
    row.iter_mut().for_each(|x| *x *= factor);
}

/// `e^x` for the kernels: Cephes' single-precision method (x = n ln 2 + r with ln 2 in two
/// parts, a degree-5 polynomial for e^r on [−ln2/2, ln2/2], 2^n built from its bits), within
/// 2 ulp of libm's `expf`, and branch-free so that LLVM vectorises the loops that call it (libm's
/// `expf` is one call per element). Below −87.3 (under f32's smallest normal), −∞ included, it
/// gives exactly 0; above 88.7 it saturates (the kernels only pass values ≤ 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LOWEST: f32 = -87.336_54;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(LOWEST, 88.722_84);
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // n's integer from the rounded value's low mantissa bits (`shifted` is 1.5 · 2^23 + n, one
    // ulp per unit), the value `n as i32` gives: that cast saturates and maps NaN to 0, which
    // LLVM compiles to one scalar conversion and two branches per lane, and made this function
    // about five times slower than the polynomial (1.35 ns per element in the token loss).
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let two_n = f32::from_bits((n_int.wrapping_add(127) << 23) as u32);
    if x < LOWEST { 0.0 } else { e_r * two_n }
}

/// `erf(z)` and `exp(−z²)` (which GELU's gradient needs too), by Abramowitz and Stegun 7.1.26:
/// `erf(|z|) = 1 − (a1 t + … + a5 t⁵) e^(−z²)` with `t = 1 / (1 + p|z|)`, absolute error under
/// 1.5e-7 (PyTorch's vectorised CPU `erf` uses the same formula). Branch-free, so it vectorises.
#[inline(always)]
pub fn erf_and_gaussian(z: f32) -> (f32, f32) {
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

multiversion! {
    /// Softmax of each row of `xs` (rows of `row_len`) into `out`: the row's maximum, `e^(x − max)`
    /// and its sum, the division.
    pub fn softmax_rows / softmax_rows_at(xs: &[f32], out: &mut [f32], row_len: usize) {
        for (x, out) in xs.chunks(row_len).zip(out.chunks_mut(row_len)) {
            let sum = row_exp_sum(x, row_max(x), Some(&mut *out));
            row_scale(out, 1.0 / sum);
        }
    }
}

multiversion! {
    /// Softmax's input gradient `y ⊙ (g − Σ g ⊙ y)` of each row into `out`.
    pub fn softmax_backward_rows / softmax_backward_rows_at(ys: &[f32], gs: &[f32], out: &mut [f32], row_len: usize) {
        for ((out, y), g) in out
            .chunks_mut(row_len)
            .zip(ys.chunks(row_len))
            .zip(gs.chunks(row_len))
        {
            let dot = row_dot(y, g);
            for ((out, y), g) in out.iter_mut().zip(y).zip(g) {
                *out = y * (g - dot);
            }
        }
    }
}

multiversion! {
    /// [`softmax_rows`] over the first `len` values of rows `stride` apart (a block of causal
    /// attention's rows, whose later keys are masked): the values past `len` are neither read
    /// nor written. When those values are −∞, the result is the whole row's bits: every value
    /// goes to the lane of its position modulo [`LANES`] either way, and a −∞ leaves its lane's
    /// maximum as it was and adds an exact 0 to its lane's sum.
    pub fn softmax_row_prefixes / softmax_row_prefixes_at(xs: &[f32], out: &mut [f32], stride: usize, len: usize) {
        for (x, out) in xs.chunks(stride).zip(out.chunks_mut(stride)) {
            let (x, out) = (&x[..len], &mut out[..len]);
            let sum = row_exp_sum(x, row_max(x), Some(&mut *out));
            row_scale(out, 1.0 / sum);
        }
    }
}

multiversion! {
    /// [`softmax_backward_rows`] over the first `len` values of rows `stride` apart. When the
    /// probabilities past `len` are 0, each row's `Σ g ⊙ y` is the whole row's bits (the lanes
    /// only gain exact zeros, which leave a sum that starts at +0 as it was).
    pub fn softmax_backward_row_prefixes / softmax_backward_row_prefixes_at(ys: &[f32], gs: &[f32], out: &mut [f32], stride: usize, len: usize) {
        for ((out, y), g) in out
            .chunks_mut(stride)
            .zip(ys.chunks(stride))
            .zip(gs.chunks(stride))
        {
            let (out, y, g) = (&mut out[..len], &y[..len], &g[..len]);
            let dot = row_dot(y, g);
            for ((out, y), g) in out.iter_mut().zip(y).zip(g) {
                *out = y * (g - dot);
            }
        }
    }
}

multiversion! {
    /// Each row's negative log-probability of its target into `nll` (rows of `vocab`).
    pub fn token_nll_rows / token_nll_rows_at(
        zs: &[f32],
        targets: &[usize],
        nll: &mut [f32],
        vocab: usize,
    ) {
        for ((nll, z), &target) in nll.iter_mut().zip(zs.chunks(vocab)).zip(targets) {
            let max = row_max(z);
            // (max − z_t) first: exact enough when the target has nearly all the probability.
            *nll = (max - z[target]) + row_exp_sum(z, max, None).ln();
        }
    }
}

multiversion! {
    /// [`token_nll_rows`] (the same bits) that also writes each row's softmax over its logits
    /// in `zs`, which the backward pass needs and the logits' owner no longer does: no second
    /// `[rows, vocab]` buffer to allocate and fill. The softmax has [`softmax_rows`]' bits.
    pub fn token_nll_probs_rows / token_nll_probs_rows_at(
        zs: &mut [f32],
        targets: &[usize],
        nll: &mut [f32],
        vocab: usize,
    ) {
        for ((nll, z), &target) in nll.iter_mut().zip(zs.chunks_mut(vocab)).zip(targets) {
            let max = row_max(z);
            let z_target = z[target];
            let sum = row_exp_sum_in_place(z, max);
            row_scale(z, 1.0 / sum);
            *nll = (max - z_target) + sum.ln();
        }
    }
}

multiversion! {
    /// The token loss's logits gradient `probs · g − g · onehot(target)`, written over `ps`.
    pub fn token_nll_backward_rows / token_nll_backward_rows_at(ps: &mut [f32], gs: &[f32], targets: &[usize], vocab: usize) {
        for ((p, &g), &target) in ps.chunks_mut(vocab).zip(gs).zip(targets) {
            row_scale(p, g);
            p[target] -= g;
        }
    }
}

multiversion! {
    /// GELU (erf form) of every value.
    pub fn gelu_values / gelu_values_at(xs: &[f32], out: &mut [f32]) {
        for (out, &x) in out.iter_mut().zip(xs) {
            let (erf, _) = erf_and_gaussian(x * std::f32::consts::FRAC_1_SQRT_2);
            *out = 0.5 * x * (1.0 + erf);
        }
    }
}

multiversion! {
    /// GELU's input gradient `g (Φ(x) + x φ(x))` of every value.
    pub fn gelu_gradients / gelu_gradients_at(xs: &[f32], gs: &[f32], out: &mut [f32]) {
        const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
        for ((out, &x), &g) in out.iter_mut().zip(xs).zip(gs) {
            // exp(−z²) with z = x/√2 is exp(−x²/2), the density's kernel.
            let (erf, gaussian) = erf_and_gaussian(x * std::f32::consts::FRAC_1_SQRT_2);
            *out = g * (0.5 * (1.0 + erf) + x * FRAC_1_SQRT_2PI * gaussian);
        }
    }
}

/// The scalars of one AdamW update, each as burn's `AdamW` rounds it to f32 where it meets the
/// tensors.
#[derive(Debug, Clone, Copy)]
pub struct AdamWScalars {
    /// β₁ and β₂, the moments' decays.
    pub betas: [f32; 2],
    /// 1 − β₁ and 1 − β₂.
    pub factors: [f32; 2],
    /// The bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ.
    pub corrections: [f32; 2],
    /// Added to the second moment's root.
    pub epsilon: f32,
    /// The weight's decay factor 1 − lr·λ, or `None` without decay (burn then leaves the weight
    /// as it is, which `w · 1` would too except for a NaN's payload).
    pub keep: Option<f32>,
    /// The learning rate.
    pub lr: f32,
}

multiversion! {
    /// One AdamW update of every value, in place, with burn's roundings: `m = m·β₁ + g·(1−β₁)`
    /// and `v = v·β₂ + (g·g)·(1−β₂)` (`g·(1−β₁)` and `(g·g)·(1−β₂)` at the first update, when
    /// `first`: the moments' old values are not read), then `w = w·keep − ((m / c₁) / (√(v / c₂)
    /// + ε))·lr`. The branches are outside the loops, so that each loop vectorises.
    pub fn adamw_values / adamw_values_at(
        ws: &mut [f32],
        gs: &[f32],
        ms: &mut [f32],
        vs: &mut [f32],
        first: bool,
        scalars: AdamWScalars,
    ) {
        let AdamWScalars {
            betas: [beta_1, beta_2],
            factors: [factor_1, factor_2],
            corrections: [c_1, c_2],
            epsilon,
            keep,
            lr,
        } = scalars;
        if first {
            for (m, &g) in ms.iter_mut().zip(gs) {
                *m = g * factor_1;
            }
            for (v, &g) in vs.iter_mut().zip(gs) {
                *v = (g * g) * factor_2;
            }
        } else {
            for (m, &g) in ms.iter_mut().zip(gs) {
                *m = *m * beta_1 + g * factor_1;
            }
            for (v, &g) in vs.iter_mut().zip(gs) {
                *v = *v * beta_2 + (g * g) * factor_2;
            }
        }
        let step = |m: f32, v: f32| ((m / c_1) / ((v / c_2).sqrt() + epsilon)) * lr;
        match keep {
            Some(keep) => {
                for ((w, &m), &v) in ws.iter_mut().zip(&*ms).zip(&*vs) {
                    *w = *w * keep - step(m, v);
                }
            }
            None => {
                for ((w, &m), &v) in ws.iter_mut().zip(&*ms).zip(&*vs) {
                    *w -= step(m, v);
                }
            }
        }
    }
}

/// `Σ x` with [`LANES`] accumulators.
#[inline(always)]
pub fn row_sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut xs = x.chunks_exact(LANES);
    for x in &mut xs {
        for (lane, x) in lanes.iter_mut().zip(x) {
            *lane += x;
        }
    }
    for (lane, x) in lanes.iter_mut().zip(xs.remainder()) {
        *lane += x;
    }
    reduce_sum(lanes)
}

multiversion! {
    /// LayerNorm of each row of `d` values: `x̂ = (x − μ) · r`, `r = 1/√(σ² + ε)` with the row's
    /// mean μ and biased variance σ² (of `x − μ`, two passes), then `x̂ · γ + β` into `out`;
    /// each row's μ and r into `stats` (two values per row), for the gradient.
    pub fn layer_norm_rows / layer_norm_rows_at(
        xs: &[f32],
        gamma: &[f32],
        beta: &[f32],
        epsilon: f32,
        out: &mut [f32],
        stats: &mut [f32],
    ) {
        let d = gamma.len();
        for ((x, out), stats) in xs.chunks(d).zip(out.chunks_mut(d)).zip(stats.chunks_mut(2)) {
            let mean = row_sum(x) / d as f32;
            for (out, &x) in out.iter_mut().zip(x) {
                *out = x - mean;
            }
            let variance = row_dot(out, out) / d as f32;
            let rstd = 1.0 / (variance + epsilon).sqrt();
            for ((out, &g), &b) in out.iter_mut().zip(gamma).zip(beta) {
                *out = *out * rstd * g + b;
            }
            stats[0] = mean;
            stats[1] = rstd;
        }
    }
}

multiversion! {
    /// LayerNorm's gradients for rows of `d` values from the output gradient `gs`: the input's,
    /// `dx = r · (γ g − mean(γ g) − x̂ · mean(γ g ⊙ x̂))`, into `dx`, and γ's and β's, `Σ g ⊙ x̂` and
    /// `Σ g` over these rows, added to `d_gamma` and `d_beta` (row by row, in order).
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm_backward_rows / layer_norm_backward_rows_at(
        xs: &[f32],
        gs: &[f32],
        gamma: &[f32],
        stats: &[f32],
        dx: &mut [f32],
        d_gamma: &mut [f32],
        d_beta: &mut [f32],
    ) {
        let d = gamma.len();
        for (((x, g), stats), dx) in xs
            .chunks(d)
            .zip(gs.chunks(d))
            .zip(stats.chunks(2))
            .zip(dx.chunks_mut(d))
        {
            let (mean, rstd) = (stats[0], stats[1]);
            // dx holds x̂ first, then the gradient.
            for (dx, &x) in dx.iter_mut().zip(x) {
                *dx = (x - mean) * rstd;
            }
            for (((d_gamma, d_beta), &g), &x_hat) in
                d_gamma.iter_mut().zip(d_beta.iter_mut()).zip(g).zip(&*dx)
            {
                *d_gamma += g * x_hat;
                *d_beta += g;
            }
            let mut scaled = [0.0f32; LANES];
            let mut projected = [0.0f32; LANES];
            for (i, ((&g, &gamma), &x_hat)) in g.iter().zip(gamma).zip(&*dx).enumerate() {
                let gg = g * gamma;
                scaled[i % LANES] += gg;
                projected[i % LANES] += gg * x_hat;
            }
            let mean_scaled = reduce_sum(scaled) / d as f32;
            let mean_projected = reduce_sum(projected) / d as f32;
            for ((dx, &g), &gamma) in dx.iter_mut().zip(g).zip(gamma) {
                *dx = rstd * (g * gamma - mean_scaled - *dx * mean_projected);
            }
        }
    }
}
