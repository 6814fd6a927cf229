//! Scaled dot-product attention in query chunks, so that the score matrix held at once stays
//! under a budget whatever the token count (the x4 VAE's mid-block attends over 262,144 tokens
//! at 2048 px: a full score matrix would be 256 GiB).

use burn::tensor::Tensor;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::native::{flex_attention, flex_attention_tracked};

/// Score-matrix elements (batch x heads x queries x keys) computed at once by default: 2^26
/// floats, 256 MiB.
pub const DEFAULT_SCORE_BUDGET: usize = 1 << 26;

/// `softmax(q k^T / sqrt(d)) v` for `q`, `k`, `v` of shape `[batch, heads, tokens, dim]`,
/// splitting the queries so that at most `score_budget` scores exist at a time. Each chunk is
/// exact (every query sees every key), so chunking changes no value. f32 tensors on flex (with
/// or without autodiff) run hd-painter's native kernel, everything else burn's `attention`;
/// without autodiff the native kernel takes all queries in one call and keeps its blocks of
/// queries within the budget itself (so that each head's keys and values are packed once).
pub fn chunked_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    score_budget: usize,
) -> Tensor<4> {
    if !q.device().is_autodiff()
        && let Some(out) = flex_attention(&q, &k, &v, score_budget)
    {
        return out;
    }
    let n_q = q.dims()[2];
    let chunk = query_chunk(q.dims(), k.dims()[2], score_budget);
    if chunk >= n_q {
        return exact_attention(q, k, v);
    }
    let [b, h, _, _] = q.dims();
    let parts = (0..n_q)
        .step_by(chunk)
        .map(|start| {
            let end = (start + chunk).min(n_q);
            exact_attention(
                q.clone().slice([0..b, 0..h, start..end]),
                k.clone(),
                v.clone(),
            )
        })
        .collect();
    Tensor::cat(parts, 2)
}

/// One chunk: the native kernel under autodiff (f32 on flex), burn's attention elsewhere.
fn exact_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    flex_attention_tracked(&q, &k, &v)
        .unwrap_or_else(|| attention(q, k, v, None, None, AttentionModuleOptions::default()))
}

/// How many queries of `q` (`[batch, heads, queries, dim]`) fit the score budget at once against
/// `keys` keys: at least 1, at most all of them.
pub fn query_chunk(q: [usize; 4], keys: usize, score_budget: usize) -> usize {
    let [b, h, n_q, _] = q;
    (score_budget / (b * h * keys).max(1)).clamp(1, n_q.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn chunking_changes_no_value() {
        let device = hd_painter_core::BackendKind::Flex.device().unwrap();
        let t = |n| Tensor::<4>::random([2, 3, n, 8], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (t(37), t(29), t(29));
        let whole = chunked_attention(q.clone(), k.clone(), v.clone(), usize::MAX);
        // 2 * 3 * 29 scores per query: a budget of 1000 gives chunks of 5 queries.
        let chunked = chunked_attention(q, k, v, 1000);
        let diff: f32 = (whole - chunked).abs().max().into_scalar();
        assert!(diff < 1e-6, "{diff}");
    }
}
