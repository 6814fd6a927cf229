//! Exact attention as a native burn-flex kernel, reached through burn's backend-extension API
//! (`Tensor::try_into_primitive::<Flex>`). flex's own fused attention tiles the keys by 64 and
//! computes its online softmax one score at a time with libm's `expf`; on the SD UNet that
//! softmax alone was a fifth of a step. Here each block of queries gets its whole score row from
//! one GEMM, a softmax whose exponential the compiler vectorises (with AVX-512 or AVX2 where the
//! CPU has them), and one GEMM against the values. Inputs are read through their strides, so the
//! heads split off the projections are not copied.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::bf16::products;
use super::{
    Operand, Output, Products, SharedRhs, dims, exp, flex_f32, lane_fold, product, record,
    vectorised,
};

/// Queries per block: a block's score rows (`64 x keys` floats, 1 MiB at 4096 keys) stay close to
/// the L2 cache, and the blocks of all heads give the threads enough work.
const QUERY_BLOCK: usize = 64;

/// `softmax(q k^T / sqrt(dim)) v` for `q` `[batch, heads, queries, dim]`, `k` `[batch, heads,
/// keys, dim]` and `v` `[batch, heads, keys, value dim]` with the native kernel, when all three
/// are f32 tensors on a flex device without autodiff; `None` elsewhere (the caller then uses
/// burn's attention). The two products are in the arithmetic [`with_products`] set on this
/// thread (f32 by default). The queries run in blocks, as many at once as there are threads,
/// and the blocks are made smaller where their scores would pass `score_budget` floats, so all
/// queries go in one call whatever the token count: each head's keys and values are then packed
/// once for all of them.
///
/// [`with_products`]: super::with_products
pub(crate) fn flex_attention(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    score_budget: usize,
) -> Option<Tensor<4>> {
    let [q, k, v] = flex_f32([q, k, v])?;
    let keys = dims(&k)[2];
    let threads = rayon::current_num_threads();
    let block = (score_budget / (threads * keys).max(1)).clamp(1, QUERY_BLOCK);
    Some(Tensor::from_primitive::<Flex>(attention_f32(
        &q,
        &k,
        &v,
        products(),
        block,
    )))
}

/// The same on an autodiff device, recording a backward that recomputes each block's
/// probabilities from the inputs (as flash attention does) instead of keeping the score matrix
/// that burn's attention keeps under autodiff: at 4096 tokens that matrix is 64 MiB per head.
/// `None` unless all three are f32 on `Autodiff<Flex>`.
pub(crate) fn flex_attention_tracked(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
) -> Option<Tensor<4>> {
    let tracked = |t: &Tensor<4>| t.clone().try_into_primitive::<Autodiff<Flex>>().ok();
    let (q, k, v) = (tracked(q)?, tracked(k)?, tracked(v)?);
    if [&q, &k, &v]
        .iter()
        .any(|t| t.primitive().dtype() != DType::F32)
    {
        return None;
    }
    let (q_, k_, v_) = (q.primitive(), k.primitive(), v.primitive());
    let out = attention_f32(q_, k_, v_, products(), QUERY_BLOCK);
    let inputs = [q.node(), k.node(), v.node()];
    Some(record(Gradient, inputs, out, |out| {
        [q.primitive(), k.primitive(), v.primitive(), out].map(Clone::clone)
    }))
}

/// The backward of [`flex_attention_tracked`].
#[derive(Debug)]
struct Gradient;

impl Backward<Flex, 3> for Gradient {
    /// q, k, v and the output.
    type State = [FlexTensor; 4];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let upstream = grads.consume::<Flex>(&ops.node).to_contiguous();
        if ops.parents.iter().all(Option::is_none) {
            return;
        }
        let [q, k, v, out] = &ops.state;
        let gradients = attention_gradients(q, k, v, &out.to_contiguous(), &upstream);
        for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, gradient);
            }
        }
    }
}

/// `[dq, dk, dv]` for the output gradient `d_out` (contiguous, as `out`). Per head, block by
/// block of queries: `p = softmax(scale q k^T)` again, `dv += p^T d_out`, `dp = d_out v^T`,
/// `ds = p (dp - rowsum(d_out * out))`, `dq = scale ds k`, `dk += scale ds^T q`. The heads run
/// in parallel; a head's blocks run in turn, since they all add to its `dk` and `dv`.
fn attention_gradients(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    out: &FlexTensor,
    d_out: &FlexTensor,
) -> [FlexTensor; 3] {
    let ([batch, heads, queries, dim], keys, value_dim) = (dims(q), dims(k)[2], dims(v)[3]);
    let (qv, kv, vv) = (View::new(q), View::new(k), View::new(v));
    let (out, d_out) = (super::elements(out), super::elements(d_out));
    let scale = 1.0 / (dim as f32).sqrt();
    let mut dq = vec![0f32; batch * heads * queries * dim];
    let mut dk = vec![0f32; batch * heads * keys * dim];
    let mut dv = vec![0f32; batch * heads * keys * value_dim];
    if queries > 0 && keys > 0 && dim > 0 && value_dim > 0 {
        dq.par_chunks_mut(queries * dim)
            .zip(dk.par_chunks_mut(keys * dim))
            .zip(dv.par_chunks_mut(keys * value_dim))
            .enumerate()
            .for_each(|(bh, ((dq, dk), dv))| {
                let (b, h) = (bh / heads, bh % heads);
                let head_out = &out[bh * queries * value_dim..][..queries * value_dim];
                let head_d_out = &d_out[bh * queries * value_dim..][..queries * value_dim];
                for first in (0..queries).step_by(QUERY_BLOCK) {
                    let rows = QUERY_BLOCK.min(queries - first);
                    let d_out_block = &head_d_out[first * value_dim..][..rows * value_dim];
                    let out_block = &head_out[first * value_dim..][..rows * value_dim];
                    let mut p = vec![0f32; rows * keys];
                    let mut dp = vec![0f32; rows * keys];
                    // SAFETY (all products here): the operands address rows `first..first +
                    // rows` of this head's queries and output gradient, all of its keys and
                    // values, and the block's own buffers `p` and `dp`; the outputs are `p`,
                    // `dp` and this head's `dq`, `dk`, `dv`, of the sizes given.
                    unsafe {
                        let keys_t = Operand(kv.row(b, h, 0), kv.strides[3], kv.strides[2]);
                        let q_block = Operand(qv.row(b, h, first), qv.strides[2], qv.strides[3]);
                        let p_out = Output(p.as_mut_ptr(), keys as isize, false);
                        product([rows, keys, dim], p_out, q_block, keys_t);
                    }
                    for row in p.chunks_exact_mut(keys) {
                        let sum = softmax_numerators(row, scale);
                        let inverse = 1.0 / sum;
                        row.iter_mut().for_each(|x| *x *= inverse);
                    }
                    unsafe {
                        let d_out_op = Operand(d_out_block.as_ptr(), value_dim as isize, 1);
                        // dv += p^T d_out
                        let p_t = Operand(p.as_ptr(), 1, keys as isize);
                        let dv_out = Output(dv.as_mut_ptr(), value_dim as isize, true);
                        product([keys, value_dim, rows], dv_out, p_t, d_out_op);
                        // dp = d_out v^T
                        let values_t = Operand(vv.row(b, h, 0), vv.strides[3], vv.strides[2]);
                        let dp_out = Output(dp.as_mut_ptr(), keys as isize, false);
                        product([rows, keys, value_dim], dp_out, d_out_op, values_t);
                    }
                    let ds = &mut dp;
                    let row_pairs = d_out_block
                        .chunks_exact(value_dim)
                        .zip(out_block.chunks_exact(value_dim));
                    for ((ds_row, p_row), (d_out_row, out_row)) in ds
                        .chunks_exact_mut(keys)
                        .zip(p.chunks_exact(keys))
                        .zip(row_pairs)
                    {
                        let centre: f32 = d_out_row.iter().zip(out_row).map(|(a, b)| a * b).sum();
                        for (d, &p) in ds_row.iter_mut().zip(p_row) {
                            *d = p * (*d - centre) * scale;
                        }
                    }
                    unsafe {
                        let ds_op = Operand(ds.as_ptr(), keys as isize, 1);
                        // dq = ds k
                        let keys_op = Operand(kv.row(b, h, 0), kv.strides[2], kv.strides[3]);
                        let dq_out = Output(dq[first * dim..].as_mut_ptr(), dim as isize, false);
                        product([rows, dim, keys], dq_out, ds_op, keys_op);
                        // dk += ds^T q
                        let ds_t = Operand(ds.as_ptr(), 1, keys as isize);
                        let q_block = Operand(qv.row(b, h, first), qv.strides[2], qv.strides[3]);
                        let dk_out = Output(dk.as_mut_ptr(), dim as isize, true);
                        product([keys, dim, rows], dk_out, ds_t, q_block);
                    }
                }
            });
    }
    let tensor = |data: Vec<f32>, rows: usize, width: usize| {
        FlexTensor::from_data(TensorData::new(data, [batch, heads, rows, width]))
    };
    [
        tensor(dq, queries, dim),
        tensor(dk, keys, dim),
        tensor(dv, keys, value_dim),
    ]
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

/// The attention of [`flex_attention`], with its two products in `products`' arithmetic, in
/// blocks of `block` queries.
fn attention_f32(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    products: Products,
    block: usize,
) -> FlexTensor {
    let ([batch, heads, queries, dim], keys, value_dim) = (dims(q), dims(k)[2], dims(v)[3]);
    let (qv, kv, vv) = (View::new(q), View::new(k), View::new(v));
    let scale = 1.0 / (dim as f32).sqrt();
    let mut out = vec![0f32; batch * heads * queries * value_dim];
    // With fewer heads than threads, the threads share the packing of each head.
    let parallel_packing = batch * heads < rayon::current_num_threads();
    if !out.is_empty() && keys > 0 {
        out.par_chunks_mut(queries * value_dim)
            .enumerate()
            .for_each(|(bh, head_out)| {
                let (b, h) = (bh / heads, bh % heads);
                // keys^T: element (i, j) is dimension i of key j.
                let keys_t = Operand(kv.row(b, h, 0), kv.strides[3], kv.strides[2]);
                let values = Operand(vv.row(b, h, 0), vv.strides[2], vv.strides[3]);
                // Packed once per head: every block of queries multiplies them.
                let pack = |op: Operand, size| {
                    SharedRhs::packed_once(products, op.into(), size, parallel_packing)
                };
                let (keys_t, values) = (pack(keys_t, [dim, keys]), pack(values, [keys, value_dim]));
                head_out
                    .par_chunks_mut(block * value_dim)
                    .enumerate()
                    // One score buffer per task of the pool's split, reused by its blocks: at
                    // long sequences a fresh one per block (64 MiB at 262,144 keys) costs its
                    // page faults every time.
                    .for_each_init(Vec::new, |scores, (index, block_out)| {
                        let rows = block_out.len() / value_dim;
                        let first = index * block;
                        // Every score is written by the product below before it is read.
                        scores.resize(rows * keys, 0.0);
                        let queries = Operand(qv.row(b, h, first), qv.strides[2], qv.strides[3]);
                        let scores_out = Output(scores.as_mut_ptr(), keys as isize, false);
                        // SAFETY: the queries address rows `first..first + rows` of the head's
                        // queries, `keys_t` the head's keys (valid while `k` lives), the output
                        // the `rows x keys` buffer.
                        unsafe { keys_t.multiply(rows, scores_out, queries) };
                        let sums: Vec<f32> = scores
                            .chunks_exact_mut(keys)
                            .map(|row| softmax_numerators(row, scale))
                            .collect();
                        let numerators = Operand(scores.as_ptr(), keys as isize, 1);
                        let block_out_op =
                            Output(block_out.as_mut_ptr(), value_dim as isize, false);
                        // SAFETY: the numerators are the `rows x keys` buffer, the output this
                        // block's `rows x value_dim` elements.
                        unsafe { values.multiply(rows, block_out_op, numerators) };
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
    vectorised(
        #[inline(always)]
        || {
            let max = lane_fold(row, f32::NEG_INFINITY, f32::max);
            for s in row.iter_mut() {
                *s = exp((*s - max) * scale);
            }
            lane_fold(row, 0.0, |a, b| a + b)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::max_difference;
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
        // Budgets of whole blocks, and one that leaves a single query per block.
        for ((queries, keys), budget) in [(150, 77), (64, 200), (1, 1)]
            .into_iter()
            .flat_map(|shape| [(shape, usize::MAX), (shape, 1)])
        {
            let (q, k, v) = (heads(queries, 16), heads(keys, 16), heads(keys, 24));
            let got = flex_attention(&q, &k, &v, budget).expect("f32 on flex");
            let scores = q.matmul(k.swap_dims(2, 3)) / 4.0;
            let want = softmax(scores, 3).matmul(v);
            // Relative to the outputs' size: the two sum in different orders, and random
            // values of N(0, 2) reach |v| > 8.
            let scale: f32 = want.clone().abs().max().into_scalar();
            let scale = scale.max(1.0);
            let diff = max_difference(got, want);
            assert!(
                diff < 1e-5 * scale,
                "{queries} x {keys}, budget {budget}: {diff} (scale {scale})"
            );
        }
    }

    /// Keys and values past the size that is packed once (into f32 panels, where the CPU has
    /// AVX-512F) against the composed attention: one head, the keys strided as a model splits
    /// them, whole blocks and blocks cut down by a small budget.
    #[test]
    fn long_sequences_match_the_composed_attention() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let (queries, dim) = (70, 64);
        let keys = super::super::products::PACK_ONCE_BYTES / (4 * dim) + 100;
        let normal = Distribution::Normal(0.0, 1.0);
        let q = Tensor::<4>::random([1, 1, queries, dim], normal, &device);
        let k = Tensor::<4>::random([1, keys, 1, dim], normal, &device).swap_dims(1, 2);
        let v = Tensor::<4>::random([1, 1, keys, dim], normal, &device);
        let scores = q.clone().matmul(k.clone().swap_dims(2, 3)) / 8.0;
        let want = softmax(scores, 3).matmul(v.clone());
        for budget in [usize::MAX, 20 * keys] {
            let got = flex_attention(&q, &k, &v, budget).expect("f32 on flex");
            let diff = max_difference(got, want.clone());
            assert!(diff < 1e-5, "budget {budget}: {diff}");
        }
    }

    /// The recorded backward against softmax and matmuls composed from burn's ops on the
    /// autodiff device, for q, k and v tracked at once, on strided heads, with more queries than
    /// a block and fewer keys than queries (cross-attention's shape) and the reverse.
    #[test]
    fn gradients_match_the_composed_attention() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let ad = device.autodiff();
        let heads = |n: usize, d: usize| {
            Tensor::<4>::random([2, n, 3, d], Distribution::Normal(0.0, 1.0), &ad).swap_dims(1, 2)
        };
        for (queries, keys) in [(150, 77), (20, 90)] {
            let (q, k, v) = (heads(queries, 16), heads(keys, 16), heads(keys, 8));
            let upstream = heads(queries, 8);
            let gradient = |native: bool| {
                let [q, k, v] = [&q, &k, &v].map(|t| t.clone().require_grad());
                let out = if native {
                    flex_attention_tracked(&q, &k, &v).expect("f32 on autodiff flex")
                } else {
                    softmax(q.clone().matmul(k.clone().swap_dims(2, 3)) / 4.0, 3).matmul(v.clone())
                };
                let grads = (out.clone() * upstream.clone()).sum().backward();
                let grad = |t: &Tensor<4>| t.grad(&grads).expect("a gradient");
                [out.inner(), grad(&q), grad(&k), grad(&v)]
            };
            let (got, want) = (gradient(true), gradient(false));
            for (name, (got, want)) in ["out", "dq", "dk", "dv"]
                .iter()
                .zip(got.into_iter().zip(want))
            {
                let diff = max_difference(got, want);
                assert!(diff < 1e-5, "{queries} x {keys} {name}: {diff}");
            }
        }
    }

    #[test]
    fn autodiff_and_other_dtypes_are_left_to_burn() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let t = Tensor::<4>::zeros([1, 1, 4, 8], &device);
        let ad = Tensor::<4>::zeros([1, 1, 4, 8], &device.clone().autodiff());
        assert!(flex_attention(&ad, &ad, &ad, usize::MAX).is_none());
        let half = t.cast(burn::tensor::FloatDType::F16);
        assert!(flex_attention(&half, &half, &half, usize::MAX).is_none());
    }
}
