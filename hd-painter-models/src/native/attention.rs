//! Exact attention as a native burn-flex kernel, reached through burn's backend-extension API
//! (`Tensor::try_into_primitive::<Flex>`). flex's own fused attention tiles the keys by 64 and
//! computes its online softmax one score at a time with libm's `expf`; on the SD UNet that
//! softmax alone was a fifth of a step. Here each block of queries gets its whole score row from
//! one GEMM, a softmax whose exponential the compiler vectorises (with AVX-512 or AVX2 where the
//! CPU has them), and one GEMM against the values. Inputs are read through their strides, so the
//! heads split off the projections are not copied.

use burn::backend::Flex;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::{Operand, Output, exp, flex_f32, product, vectorised};

/// Queries per block: a block's score rows (`64 x keys` floats, 1 MiB at 4096 keys) stay close to
/// the L2 cache, and the blocks of all heads give the threads enough work.
const QUERY_BLOCK: usize = 64;

/// `softmax(q k^T / sqrt(dim)) v` for `q` `[batch, heads, queries, dim]`, `k` `[batch, heads,
/// keys, dim]` and `v` `[batch, heads, keys, value dim]` with the native kernel, when all three
/// are f32 tensors on a flex device without autodiff; `None` elsewhere (the caller then uses
/// burn's attention).
pub(crate) fn flex_attention(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>) -> Option<Tensor<4>> {
    let [q, k, v] = flex_f32([q, k, v])?;
    Some(Tensor::from_primitive::<Flex>(attention_f32(&q, &k, &v)))
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
                            let scores = Output(scores.as_mut_ptr(), keys as isize, false);
                            product([rows, keys, dim], scores, queries, keys_t);
                        }
                        let sums: Vec<f32> = scores
                            .chunks_exact_mut(keys)
                            .map(|row| softmax_numerators(row, scale))
                            .collect();
                        unsafe {
                            let numerators = Operand(scores.as_ptr(), keys as isize, 1);
                            let values = Operand(vv.row(b, h, 0), vv.strides[2], vv.strides[3]);
                            let block_out =
                                Output(block_out.as_mut_ptr(), value_dim as isize, false);
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

/// Replaces the raw scores `row` by `exp(scale * (s - max))` and returns their sum: the
/// numerators of the row's softmax and its denominator.
fn softmax_numerators(row: &mut [f32], scale: f32) -> f32 {
    vectorised(|| {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        for s in row.iter_mut() {
            *s = exp((*s - max) * scale);
        }
        row.iter().sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::activation::softmax;

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
