//! Attention processors: the UNet calls one for every self- and cross-attention, so that
//! attention can be replaced or observed per layer without touching the model code (the idea of
//! diffusers' attention processors). The default computes exact attention in query chunks.
//!
//! A self-attention inside a transformer block also sees its block ([`TransformerBlockContext`]:
//! the block input and the block's own projections), which is what prompt-aware attention such
//! as HD-Painter's PAIntA needs, and a processor can tell the UNet to stop recording gradients
//! after a block ([`AttentionProcessor::stop_gradient_after`]), so that guidance that only needs
//! the first part of the network keeps no autodiff graph for the rest.

use std::fmt;

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

/// The transformer block around a self-attention (`attn1`): its input and the layers that follow
/// the self-attention, so that a processor can compute what the block would do next without
/// the UNet code knowing about it.
pub trait TransformerBlockContext {
    /// The block's input `x` (the residual stream before `norm1`), `[batch, tokens, channels]`.
    fn input(&self) -> Tensor<3>;

    /// The self-attention's output projection (`attn1.to_out`) applied to a head output
    /// `[batch, heads, tokens, dim]`: the self-attention's contribution `y`, `[batch, tokens,
    /// channels]`.
    fn project_self_output(&self, heads: Tensor<4>) -> Tensor<3>;

    /// The cross-attention's queries for a residual stream `h` (`attn2.to_q(norm2(h))`), split
    /// into heads: `[batch, heads, tokens, dim]`.
    fn cross_queries(&self, residual: Tensor<3>) -> Tensor<4>;

    /// The cross-attention's keys of the text context (`attn2.to_k(context)`), split into
    /// heads: `[batch, heads, text tokens, dim]`.
    fn cross_keys(&self) -> Tensor<4>;
}

impl fmt::Debug for dyn TransformerBlockContext + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransformerBlockContext")
    }
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
    /// For a self-attention inside a transformer block, the block around it.
    pub block: Option<&'a dyn TransformerBlockContext>,
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

    /// Whether the UNet should stop recording gradients once the block `block` (`down_blocks.i`,
    /// `mid_block` or `up_blocks.i`) has run: later layers then run without autodiff. Only
    /// matters on an autodiff device; the values computed do not change.
    fn stop_gradient_after(&mut self, _block: &str) -> bool {
        false
    }
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
