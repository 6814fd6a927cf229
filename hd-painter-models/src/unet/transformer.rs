//! The UNet's transformer part: diffusers' `Transformer2DModel` (group norm, projection in,
//! `BasicTransformerBlock`s, projection out) and the attention every block calls through the
//! [`AttentionProcessor`].

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::blocks::group_norm;
use crate::native::{self};
use crate::processor::{AttentionKind, AttentionProcessor, AttentionSite, TransformerBlockContext};

use super::{LevelConfig, UnetConfig};

/// The epsilon of the transformers' group norm, fixed in diffusers.
const TRANSFORMER_NORM_EPS: f64 = 1e-6;

/// diffusers' `Attention` as the transformer blocks use it: bias-free q/k/v projections and a
/// biased output projection around multi-head attention.
#[derive(Module, Debug)]
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    path: String,
    kind_is_cross: bool,
}

impl Attention {
    fn new(
        dim: usize,
        context_dim: Option<usize>,
        heads: usize,
        path: String,
        device: &Device,
    ) -> Self {
        let kv_dim = context_dim.unwrap_or(dim);
        let no_bias = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        Self {
            to_q: no_bias(dim, dim),
            to_k: no_bias(kv_dim, dim),
            to_v: no_bias(kv_dim, dim),
            to_out: LinearConfig::new(dim, dim).init(device),
            heads,
            path,
            kind_is_cross: context_dim.is_some(),
        }
    }

    fn forward(
        &self,
        x: Tensor<3>,
        context: Option<&Tensor<3>>,
        grid: [usize; 2],
        timesteps: &[f32],
        block: Option<&dyn TransformerBlockContext>,
        p: &mut dyn AttentionProcessor,
    ) -> Tensor<3> {
        let source = if self.kind_is_cross {
            context.cloned().expect("cross-attention has a context")
        } else {
            x.clone()
        };
        let q = self.split_heads(native::linear(&self.to_q, x));
        let k = self.split_heads(native::linear(&self.to_k, source.clone()));
        let v = self.split_heads(native::linear(&self.to_v, source));
        let site = AttentionSite {
            path: &self.path,
            kind: if self.kind_is_cross {
                AttentionKind::CrossAttention
            } else {
                AttentionKind::SelfAttention
            },
            height: grid[0],
            width: grid[1],
            timesteps,
            block,
        };
        self.merge_heads(p.attend(&site, q, k, v))
    }

    /// `[batch, tokens, heads * dim]` -> `[batch, heads, tokens, dim]`.
    fn split_heads(&self, t: Tensor<3>) -> Tensor<4> {
        let [b, n, d] = t.dims();
        t.reshape([b, n, self.heads, d / self.heads])
            .swap_dims(1, 2)
    }

    /// The output projection of a head output `[batch, heads, tokens, dim]`.
    fn merge_heads(&self, o: Tensor<4>) -> Tensor<3> {
        let [b, h, n, d] = o.dims();
        native::linear(&self.to_out, o.swap_dims(1, 2).reshape([b, n, h * d]))
    }
}

/// What a self-attention's processor sees of its transformer block.
struct BlockView<'a> {
    block: &'a TransformerBlock,
    input: &'a Tensor<3>,
    context: &'a Tensor<3>,
}

impl TransformerBlockContext for BlockView<'_> {
    fn input(&self) -> Tensor<3> {
        self.input.clone()
    }

    fn project_self_output(&self, heads: Tensor<4>) -> Tensor<3> {
        self.block.attn1.merge_heads(heads)
    }

    fn cross_queries(&self, residual: Tensor<3>) -> Tensor<4> {
        let attn2 = &self.block.attn2;
        attn2.split_heads(native::linear(
            &attn2.to_q,
            native::params_in(&self.block.norm2, residual.dtype()).forward(residual),
        ))
    }

    fn cross_keys(&self) -> Tensor<4> {
        let attn2 = &self.block.attn2;
        attn2.split_heads(native::linear(&attn2.to_k, self.context.clone()))
    }
}

/// diffusers' `BasicTransformerBlock`: self-attention (or text attention), text attention, GEGLU
/// feed-forward, each pre-normed and residual.
#[derive(Module, Debug)]
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

/// `ff.net.0.proj` (GEGLU's projection) and `ff.net.2`, remapped to `ff.proj` / `ff.out`.
#[derive(Module, Debug)]
struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl TransformerBlock {
    /// The block at `path` of `level`'s transformers, untrained.
    fn new(level: &LevelConfig, cfg: &UnetConfig, path: &str, device: &Device) -> Self {
        let (c, heads) = (level.channels, level.heads);
        let norm = || LayerNormConfig::new(c).init(device);
        let text = Some(cfg.cross_attention_dim);
        let attention =
            |context, name| Attention::new(c, context, heads, format!("{path}.{name}"), device);
        Self {
            norm1: norm(),
            attn1: attention(text.filter(|_| level.only_cross_attention), "attn1"),
            norm2: norm(),
            attn2: attention(text, "attn2"),
            norm3: norm(),
            ff: FeedForward {
                proj: LinearConfig::new(c, 8 * c).init(device),
                out: LinearConfig::new(4 * c, c).init(device),
            },
        }
    }

    fn forward(
        &self,
        x: Tensor<3>,
        context: &Tensor<3>,
        grid: [usize; 2],
        timesteps: &[f32],
        p: &mut dyn AttentionProcessor,
    ) -> Tensor<3> {
        // The layer norms in the activations' dtype; the projections (through
        // `native::linear`) cast their weights themselves, or read bf16 weights as stored.
        let block = self;
        let dtype = x.dtype();
        let norm = |n: &LayerNorm, x: Tensor<3>| native::params_in(n, dtype).forward(x);
        let view = BlockView {
            block,
            input: &x,
            context,
        };
        let around = (!block.attn1.kind_is_cross).then_some(&view as &dyn TransformerBlockContext);
        let y = block.attn1.forward(
            norm(&block.norm1, x.clone()),
            Some(context),
            grid,
            timesteps,
            around,
            p,
        );
        let x = y + x;
        let x = block.attn2.forward(
            norm(&block.norm2, x.clone()),
            Some(context),
            grid,
            timesteps,
            None,
            p,
        ) + x;
        let h = native::linear(&block.ff.proj, norm(&block.norm3, x.clone()));
        native::linear(&block.ff.out, native::geglu(h)) + x
    }
}

/// diffusers' `Transformer2DModel`: group norm, input projection, the blocks (one in SD 1.x /
/// 2.x, up to 10 in SDXL), output projection, residual.
#[derive(Module, Debug)]
pub(super) struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Projection,
    transformer_blocks: Vec<TransformerBlock>,
    proj_out: Projection,
}

/// A 1x1 convolution (SD 1) or a linear layer (SD 2) over the channels.
#[derive(Module, Debug)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

impl Projection {
    fn new(c: usize, linear: bool, device: &Device) -> Self {
        if linear {
            Projection::Linear(LinearConfig::new(c, c).init(device))
        } else {
            Projection::Conv(Conv2dConfig::new([c, c], [1, 1]).init(device))
        }
    }

    /// Applies the projection to `[b, c, h, w]` and returns tokens `[b, h*w, c]`, keeping
    /// diffusers' order of projection and reshape (a convolution before, a linear layer after).
    fn tokens_in(&self, x: Tensor<4>) -> Tensor<3> {
        let [b, c, h, w] = x.dims();
        let tokens = |x: Tensor<4>| x.reshape([b, c, h * w]).swap_dims(1, 2);
        match self {
            Projection::Conv(conv) => tokens(native::conv(conv, x)),
            Projection::Linear(l) => native::linear(l, tokens(x)),
        }
    }

    fn tokens_out(&self, t: Tensor<3>, [b, c, h, w]: [usize; 4]) -> Tensor<4> {
        let grid = |t: Tensor<3>| t.swap_dims(1, 2).reshape([b, c, h, w]);
        match self {
            Projection::Conv(conv) => native::conv(conv, grid(t)),
            Projection::Linear(l) => grid(native::linear(l, t)),
        }
    }
}

impl SpatialTransformer {
    /// The transformer at `path` of a level: its channels, heads, text attention in `attn1` and
    /// `transformer_layers` blocks.
    pub(super) fn new(level: &LevelConfig, cfg: &UnetConfig, path: &str, device: &Device) -> Self {
        let c = level.channels;
        let blocks = (0..level.transformer_layers)
            .map(|j| {
                TransformerBlock::new(
                    level,
                    cfg,
                    &format!("{path}.transformer_blocks.{j}"),
                    device,
                )
            })
            .collect();
        Self {
            norm: group_norm(cfg.norm_num_groups, c, TRANSFORMER_NORM_EPS, device),
            proj_in: Projection::new(c, cfg.use_linear_projection, device),
            transformer_blocks: blocks,
            proj_out: Projection::new(c, cfg.use_linear_projection, device),
        }
    }

    pub(super) fn forward(
        &self,
        x: Tensor<4>,
        context: &Tensor<3>,
        timesteps: &[f32],
        p: &mut dyn AttentionProcessor,
    ) -> Tensor<4> {
        let dims = x.dims();
        let mut t = self
            .proj_in
            .tokens_in(native::group_norm(&self.norm, x.clone()));
        for block in &self.transformer_blocks {
            t = block.forward(t, context, [dims[2], dims[3]], timesteps, p);
        }
        self.proj_out.tokens_out(t, dims) + x
    }
}
