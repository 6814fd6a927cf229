//! Exact attention as a native burn-flex kernel, reached through burn's backend-extension API
//! (`Tensor::try_into_primitive::<Flex>`). flex's own fused attention tiles the keys by 64 and
//! computes its online softmax one score at a time with libm's `expf`; on the SD UNet that
//! softmax alone was a fifth of a step. Here each block of queries gets its whole score row from
//! one GEMM, a softmax whose exponential the compiler vectorises (with AVX-512 or AVX2 where the
//! CPU has them), and one GEMM against the values. Inputs are read through their strides, so the
//! heads split off the projections are not copied.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{DispatchDevice, Flex};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

/// Queries per block: a block's score rows (`64 x keys` floats, 1 MiB at 4096 keys) stay close to
/// the L2 cache, and the blocks of all heads give the threads enough work.
const QUERY_BLOCK: usize = 64;

/// `softmax(q k^T / sqrt(dim)) v` for `q` `[batch, heads, queries, dim]`, `k` `[batch, heads,
/// keys, dim]` and `v` `[batch, heads, keys, value dim]` with the native kernel, when all three
/// are f32 tensors on a flex device without autodiff; `None` elsewhere (the caller then uses
/// burn's attention).
pub(crate) fn flex_attention(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>) -> Option<Tensor<4>> {
    let device = q.device();
    let native = !device.is_autodiff()
        && matches!(device.as_dispatch(), DispatchDevice::Flex(_))
        && [q, k, v].iter().all(|t| t.dtype() == DType::F32);
    if !native {
        return None;
    }
    let primitive = |t: &Tensor<4>| t.clone().try_into_primitive::<Flex>().ok();
    let out = attention_f32(&primitive(q)?, &primitive(k)?, &primitive(v)?);
    Some(Tensor::from_primitive::<Flex>(out))
}

/// A 4-d strided view of a flex tensor's f32 storage.
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    strides: [isize; 4],
}

impl<'a> View<'a> {
    fn new(t: &'a FlexTensor) -> Self {
        let layout: &Layout = t.layout();
        let s = layout.strides();
        Self {
            data: t.storage::<f32>(),
            offset: layout.start_offset(),
            strides: [s[0], s[1], s[2], s[3]],
        }
    }

    /// The address of row `row` of head `(batch, head)`.
    fn row(&self, batch: usize, head: usize, row: usize) -> *const f32 {
        let [s0, s1, s2, _] = self.strides;
        let at =
            self.offset as isize + batch as isize * s0 + head as isize * s1 + row as isize * s2;
        debug_assert!(at >= 0 && (at as usize) < self.data.len().max(1));
        // SAFETY: `at` addresses an element of the tensor, which lies inside its storage.
        unsafe { self.data.as_ptr().offset(at) }
    }
}

fn attention_f32(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> FlexTensor {
    let dims = |t: &FlexTensor| -> [usize; 4] {
        let s = t.layout().shape();
        [s[0], s[1], s[2], s[3]]
    };
    let ([batch, heads, queries, dim], keys, value_dim) = (dims(q), dims(k)[2], dims(v)[3]);
    let (qv, kv, vv) = (View::new(q), View::new(k), View::new(v));
    let scale = 1.0 / (dim as f32).sqrt();
    let mut out = vec![0f32; batch * heads * queries * value_dim];
    if !out.is_empty() && keys > 0 {
        out.par_chunks_mut(queries * value_dim)
            .enumerate()
            .for_each(|(bh, head_out)| {
                let (b, h) = (bh / heads, bh % heads);
                head_out
                    .par_chunks_mut(QUERY_BLOCK * value_dim)
                    .enumerate()
                    .for_each(|(block, block_out)| {
                        let rows = block_out.len() / value_dim;
                        let first = block * QUERY_BLOCK;
                        let mut scores = vec![0f32; rows * keys];
                        // SAFETY (both products): the operands address the tensors' own
                        // elements (rows `first..first + rows` of the queries, all keys and
                        // values of the head) and the outputs the two buffers of the sizes given.
                        unsafe {
                            // keys^T: element (i, j) is dimension i of key j.
                            let keys_t = Operand(kv.row(b, h, 0), kv.strides[3], kv.strides[2]);
                            let queries =
                                Operand(qv.row(b, h, first), qv.strides[2], qv.strides[3]);
                            product([rows, keys, dim], &mut scores, queries, keys_t);
                        }
                        let sums: Vec<f32> = scores
                            .chunks_exact_mut(keys)
                            .map(|row| softmax_numerators(row, scale))
                            .collect();
                        unsafe {
                            let numerators = Operand(scores.as_ptr(), keys as isize, 1);
                            let values = Operand(vv.row(b, h, 0), vv.strides[2], vv.strides[3]);
                            product([rows, value_dim, keys], block_out, numerators, values);
                        }
                        for (row, sum) in block_out.chunks_exact_mut(value_dim).zip(sums) {
                            let inverse = 1.0 / sum;
                            row.iter_mut().for_each(|o| *o *= inverse);
                        }
                    });
            });
    }
    FlexTensor::from_data(TensorData::new(out, [batch, heads, queries, value_dim]))
}

/// A matrix operand: its first element, row stride and column stride (in elements).
#[derive(Clone, Copy)]
struct Operand(*const f32, isize, isize);

/// `dst = lhs rhs` for `[m, n, k]`: `dst` row-major `m x n`, `lhs` `m x k`, `rhs` `k x n`, on the
/// calling thread (the callers already run in parallel).
///
/// # Safety
/// `dst` holds `m * n` elements; `lhs` and `rhs` address `m x k` and `k x n` valid elements.
unsafe fn product([m, n, k]: [usize; 3], dst: &mut [f32], lhs: Operand, rhs: Operand) {
    debug_assert_eq!(dst.len(), m * n);
    // SAFETY: the caller's promise; gemm reads `lhs` and `rhs` and writes `dst` only.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.0,
            lhs.2,
            lhs.1,
            rhs.0,
            rhs.2,
            rhs.1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Replaces the raw scores `row` by `exp(scale * (s - max))` and returns their sum: the
/// numerators of the row's softmax and its denominator.
fn softmax_numerators(row: &mut [f32], scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { softmax_numerators_avx512(row, scale) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { softmax_numerators_avx2(row, scale) };
        }
    }
    softmax_numerators_portable(row, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn softmax_numerators_avx512(row: &mut [f32], scale: f32) -> f32 {
    softmax_numerators_portable(row, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_numerators_avx2(row: &mut [f32], scale: f32) -> f32 {
    softmax_numerators_portable(row, scale)
}

/// Written as branch-free loops over the row so that each compiles to vector code for the
/// target features of the function it is inlined into.
#[inline(always)]
fn softmax_numerators_portable(row: &mut [f32], scale: f32) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    for s in row.iter_mut() {
        *s = exp((*s - max) * scale);
    }
    row.iter().sum()
}

/// `e^x` for `x <= 0` (softmax arguments) within 2 ulp of libm's `expf`, branch-free so that it
/// vectorises: `x = n ln 2 + r` with `|r| <= ln 2 / 2` (Cody-Waite, two-part `ln 2`), `e^r` by
/// its degree-7 Taylor polynomial, times `2^n` put together in the exponent bits. Arguments
/// below -87 give `e^-87` (1.6e-38), which is 0 for a softmax next to its maximum's `e^0 = 1`;
/// NaN stays NaN, so a poisoned score still poisons the output.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in the FPU.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.max(-87.0);
    let n = (clamped * LOG2_E + ROUND) - ROUND;
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x.is_nan() { x } else { p * two_n }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::softmax;

    #[test]
    fn exp_is_within_2_ulp_of_libm_on_the_softmax_range() {
        let mut worst = 0u32;
        for i in 0..=1_000_000 {
            let x = -87.0 * i as f32 / 1_000_000.0;
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(got.to_bits().abs_diff(want.to_bits()));
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.0));
        assert!(exp(-87.0) < 2e-38);
        assert!(exp(f32::NAN).is_nan());
    }

    /// Against softmax and matmuls composed from burn's ops, on strided heads (as the UNet
    /// splits them), a query count that is not a multiple of the block, and 77 keys.
    #[test]
    fn matches_the_composed_attention() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let heads = |n: usize, d: usize| {
            Tensor::<4>::random([2, n, 3, d], Distribution::Normal(0.0, 2.0), &device)
                .swap_dims(1, 2)
        };
        for (queries, keys) in [(150, 77), (64, 200), (1, 1)] {
            let (q, k, v) = (heads(queries, 16), heads(keys, 16), heads(keys, 24));
            let got = flex_attention(&q, &k, &v).expect("f32 on flex");
            let scores = q.matmul(k.swap_dims(2, 3)) / 4.0;
            let want = softmax(scores, 3).matmul(v);
            let diff: f32 = (got - want).abs().max().into_scalar();
            assert!(diff < 1e-5, "{queries} x {keys}: {diff}");
        }
    }

    #[test]
    fn autodiff_and_other_dtypes_are_left_to_burn() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let t = Tensor::<4>::zeros([1, 1, 4, 8], &device);
        let ad = Tensor::<4>::zeros([1, 1, 4, 8], &device.clone().autodiff());
        assert!(flex_attention(&ad, &ad, &ad).is_none());
        let half = t.cast(burn::tensor::FloatDType::F16);
        assert!(flex_attention(&half, &half, &half).is_none());
    }
}
