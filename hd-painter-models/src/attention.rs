//! Scaled dot-product attention whose score memory stays bounded whatever the token count (the
//! x4 VAE's mid-block attends over 262,144 tokens at 2048 px: a full score matrix would be 256
//! GiB): the native kernel's own tiles, or burn's attention in query chunks under a budget.

use burn::tensor::Tensor;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::native::{flex_attention, flex_attention_tracked};

/// Score-matrix elements (batch x heads x queries x keys) computed at once by default: 2^26
/// floats, 256 MiB.
pub const DEFAULT_SCORE_BUDGET: usize = 1 << 26;

/// `softmax(q k^T / sqrt(d)) v` for `q`, `k`, `v` of shape `[batch, heads, tokens, dim]`.
/// f32 tensors on flex (with or without autodiff) run hd-painter's native kernel, which holds
/// the scores of one block of 64 queries against one tile of 4096 keys per thread whatever the
/// budget (1 MiB), so it takes every query at once. Everything else runs burn's `attention` with
/// the queries split so that at most `score_budget` scores exist at a time. Each chunk is exact
/// (every query sees every key), so chunking changes no value.
pub fn chunked_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    score_budget: usize,
) -> Tensor<4> {
    let native = if q.device().is_autodiff() {
        flex_attention_tracked(&q, &k, &v)
    } else {
        flex_attention(&q, &k, &v)
    };
    native.unwrap_or_else(|| burn_attention_in_chunks(q, k, v, score_budget))
}

fn burn_attention_in_chunks(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    score_budget: usize,
) -> Tensor<4> {
    let exact = |q, k, v| attention(q, k, v, None, None, AttentionModuleOptions::default());
    let n_q = q.dims()[2];
    let chunk = query_chunk(q.dims(), k.dims()[2], score_budget);
    if chunk >= n_q {
        return exact(q, k, v);
    }
    let [b, h, _, _] = q.dims();
    let parts = (0..n_q)
        .step_by(chunk)
        .map(|start| {
            let end = (start + chunk).min(n_q);
            exact(
                q.clone().slice([0..b, 0..h, start..end]),
                k.clone(),
                v.clone(),
            )
        })
        .collect();
    Tensor::cat(parts, 2)
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
        let whole = burn_attention_in_chunks(q.clone(), k.clone(), v.clone(), usize::MAX);
        // 2 * 3 * 29 scores per query: a budget of 1000 gives chunks of 5 queries.
        let chunked = burn_attention_in_chunks(q.clone(), k.clone(), v.clone(), 1000);
        let diff: f32 = (whole.clone() - chunked).abs().max().into_scalar();
        assert!(diff < 1e-6, "{diff}");
        // The native kernel, whatever the budget.
        let native = chunked_attention(q, k, v, 1000);
        let diff: f32 = (whole - native).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }
}
