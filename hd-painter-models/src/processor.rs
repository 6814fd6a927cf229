//! Attention processors: the UNet calls one for every self- and cross-attention, so that
//! attention can be replaced or observed per layer without touching the model code (the idea of
//! diffusers' attention processors). The default computes exact attention in query chunks.

use burn::tensor::Tensor;

use crate::attention::{DEFAULT_SCORE_BUDGET, chunked_attention};

/// Whether an attention's keys come from the image itself or from the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKind {
    /// Queries, keys and values from the image tokens (`attn1`).
    SelfAttention,
    /// Keys and values from the text embedding (`attn2`, and `attn1` of `only_cross_attention`
    /// blocks).
    CrossAttention,
}

/// Where an attention call happens and when.
#[derive(Clone, Copy, Debug)]
pub struct AttentionSite<'a> {
    /// The layer's checkpoint path, e.g.
    /// `down_blocks.1.attentions.0.transformer_blocks.0.attn1`.
    pub path: &'a str,
    /// Self- or cross-attention.
    pub kind: AttentionKind,
    /// Height of the query token grid.
    pub height: usize,
    /// Width of the query token grid.
    pub width: usize,
    /// The diffusion timesteps of the batch, as given to the UNet.
    pub timesteps: &'a [f32],
}

/// Computes (or observes) one attention: `q` is `[batch, heads, queries, dim]`, `k` and `v`
/// `[batch, heads, keys, dim]`; the result is `[batch, heads, queries, dim]`, before the output
/// projection.
pub trait AttentionProcessor {
    /// The attention output for this call.
    fn attend(
        &mut self,
        site: &AttentionSite<'_>,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> Tensor<4>;
}

/// Exact scaled dot-product attention, `softmax(q k^T / sqrt(dim)) v`, in query chunks holding at
/// most `score_budget` scores at a time.
#[derive(Clone, Copy, Debug)]
pub struct DefaultAttention {
    /// Score-matrix elements computed at once.
    pub score_budget: usize,
}

impl Default for DefaultAttention {
    fn default() -> Self {
        Self {
            score_budget: DEFAULT_SCORE_BUDGET,
        }
    }
}

impl AttentionProcessor for DefaultAttention {
    fn attend(
        &mut self,
        _site: &AttentionSite<'_>,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> Tensor<4> {
        chunked_attention(q, k, v, self.score_budget)
    }
}
