//! Vectorised, deterministic f32 arithmetic on rows: the pieces of the CPU kernels
//! ([`super::flex`]) that do not touch a tensor.
//!
//! Every function is branch-free in its inner loop, so LLVM vectorises it, and every reduction
//! associates in an order the code fixes (over [`LANES`] accumulators), so the result is the
//! same bits whatever vector width the CPU offers. `multiversion!` compiles a kernel for AVX2
//! and AVX-512 beside the build's baseline and picks one at run time.

/// Independent accumulators of every row reduction: a fixed association order (so the result
/// does not depend on the vector width LLVM picks) that is wide enough to fill an AVX-512
/// register, where one running sum would be a chain of dependent scalar additions.
pub const LANES: usize = 16;

/// Defines `fn $name(args) -> ret` that runs its body compiled for AVX-512 or AVX2 when the CPU
/// has them (checked at run time; the check is a cached load) and for the build's baseline
/// otherwise. The body is the same code in all three, and Rust never contracts `a * b + c` into
/// a fused multiply-add on its own, so the three compute identical results.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
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
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has every feature `avx512` is compiled for.
                    #[allow(unsafe_code)]
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has every feature `avx2` is compiled for.
                    #[allow(unsafe_code)]
                    return unsafe { avx2($($arg),*) };
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
