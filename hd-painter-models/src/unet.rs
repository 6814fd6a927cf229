//! diffusers' `UNet2DConditionModel` as Stable Diffusion uses it: SD 1.x / 2.x (4- and 9-channel
//! inpainting variants) and the x4 upscaler (7 input channels, noise-level class embedding,
//! `only_cross_attention` blocks), built from its `config.json`. Every attention goes through an
//! [`AttentionProcessor`].

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, GroupNorm, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use serde_json::Value;

use crate::blocks::{Downsample, ResnetBlock, ResnetSpec, conv, group_norm};
use crate::config::ConfigFile;
use crate::error::{ModelsError, Result};
use crate::native::{self, Precision};
use crate::processor::{AttentionKind, AttentionProcessor, AttentionSite, TransformerBlockContext};
use crate::single_file::{Checkpoint, UNET_PREFIX};
use crate::weights::{WeightSource, load_safetensors, weights_file};

/// The epsilon of the transformers' group norm, fixed in diffusers.
const TRANSFORMER_NORM_EPS: f64 = 1e-6;

/// The architecture of a `UNet2DConditionModel` (the keys of its `config.json` SD uses).
#[derive(Clone, Debug, PartialEq)]
pub struct UnetConfig {
    /// Input channels: 4 (text-to-image, blended), 9 (inpainting), 7 (x4 upscaler).
    pub in_channels: usize,
    /// Output channels (4).
    pub out_channels: usize,
    /// Channels per resolution level.
    pub block_out_channels: Vec<usize>,
    /// Per level: whether it has cross-attention transformers (`CrossAttn*Block2D`).
    pub down_cross_attention: Vec<bool>,
    /// Per level, in up order: whether it has cross-attention transformers.
    pub up_cross_attention: Vec<bool>,
    /// Resnets per down level (up levels have one more).
    pub layers_per_block: usize,
    /// Attention heads per level (`num_attention_heads`, or the legacy `attention_head_dim`).
    pub heads: Vec<usize>,
    /// Width of the text embedding.
    pub cross_attention_dim: usize,
    /// Linear (SD 2) or 1x1-convolution (SD 1) projections around each transformer.
    pub use_linear_projection: bool,
    /// Per level: whether `attn1` attends to the text instead of the image (x4 upscaler).
    pub only_cross_attention: Vec<bool>,
    /// Groups of every group norm.
    pub norm_num_groups: usize,
    /// Epsilon of the resnets' and the output group norms.
    pub norm_eps: f64,
    /// Cosine before sine in the timestep embedding.
    pub flip_sin_to_cos: bool,
    /// `downscale_freq_shift` of the timestep embedding.
    pub freq_shift: f64,
    /// Classes of the class embedding (the x4 upscaler's noise level: 1000), if any.
    pub num_class_embeds: Option<usize>,
    /// Padding of the downsampling convolutions (1).
    pub downsample_padding: usize,
    /// Whether the mid block has its transformer (`UNetMidBlock2DCrossAttn`, every SD UNet);
    /// without, it is two resnets (BrushNet's `MidBlock2D`).
    pub mid_block_attention: bool,
}

impl UnetConfig {
    /// `config.json` with `UNet2DConditionModel`'s constructor defaults for the keys it lacks.
    pub(crate) fn config_file(path: &Path) -> Result<ConfigFile> {
        let defaults = serde_json::json!({
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": [
                "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"
            ],
            "mid_block_type": "UNetMidBlock2DCrossAttn",
            "up_block_types": [
                "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"
            ],
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "act_fn": "silu",
            "norm_num_groups": 32,
            "cross_attention_dim": 1280,
            "attention_head_dim": 8,
        });
        Ok(ConfigFile::open(path)?.with_defaults(&defaults))
    }

    /// Reads a diffusers `unet/config.json`; keys SD does not use must hold their defaults, and
    /// keys the file lacks (early diffusers wrote few) take `UNet2DConditionModel`'s defaults.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let f = Self::config_file(path.as_ref())?;
        let down = f.str_list("down_block_types", &["CrossAttnDownBlock2D", "DownBlock2D"])?;
        let up = f.str_list("up_block_types", &["CrossAttnUpBlock2D", "UpBlock2D"])?;
        let block_out_channels = f.levels(down.len(), up.len())?;
        let levels = block_out_channels.len();
        f.one_of("act_fn", &["silu"])?;
        // `null` is the mid-block-free variant, which SD never uses.
        f.one_of("mid_block_type", &["UNetMidBlock2DCrossAttn"])?;
        for (key, default) in [
            ("center_input_sample", Value::Bool(false)),
            ("dual_cross_attention", Value::Bool(false)),
            ("class_embed_type", Value::Null),
            ("addition_embed_type", Value::Null),
            ("encoder_hid_dim", Value::Null),
            ("time_embedding_type", Value::from("positional")),
            ("resnet_time_scale_shift", Value::from("default")),
            ("transformer_layers_per_block", Value::from(1)),
            ("mid_block_scale_factor", Value::from(1)),
            ("time_cond_proj_dim", Value::Null),
            ("conv_in_kernel", Value::from(3)),
            ("conv_out_kernel", Value::from(3)),
            ("class_embeddings_concat", Value::Bool(false)),
            ("cross_attention_norm", Value::Null),
            ("encoder_hid_dim_type", Value::Null),
            ("mid_block_only_cross_attention", Value::Null),
            ("projection_class_embeddings_input_dim", Value::Null),
            ("resnet_out_scale_factor", Value::from(1.0)),
            ("resnet_skip_time_act", Value::Bool(false)),
            ("timestep_post_act", Value::Null),
            ("time_embedding_dim", Value::Null),
            ("time_embedding_act_fn", Value::Null),
            ("attention_type", Value::from("default")),
            ("addition_time_embed_dim", Value::Null),
            ("reverse_transformer_layers_per_block", Value::Null),
        ] {
            f.require_default(key, &default)?;
        }
        // `attention_head_dim` historically held the number of heads; `num_attention_heads`,
        // where set, takes precedence.
        let heads_key = if f.is_absent("num_attention_heads") {
            "attention_head_dim"
        } else {
            "num_attention_heads"
        };
        let heads = f.usize_or_list(heads_key, levels)?;
        let only_cross_attention = f.bool_or_list("only_cross_attention", levels, false)?;
        let config = Self {
            in_channels: f.usize("in_channels")?,
            out_channels: f.usize("out_channels")?,
            down_cross_attention: down.iter().map(|t| t.starts_with("CrossAttn")).collect(),
            up_cross_attention: up.iter().map(|t| t.starts_with("CrossAttn")).collect(),
            layers_per_block: f.usize("layers_per_block")?,
            heads,
            cross_attention_dim: f.usize("cross_attention_dim")?,
            use_linear_projection: f.bool_or("use_linear_projection", false)?,
            only_cross_attention,
            norm_num_groups: f.usize("norm_num_groups")?,
            norm_eps: f.f64_or("norm_eps", 1e-5)?,
            flip_sin_to_cos: f.bool_or("flip_sin_to_cos", true)?,
            freq_shift: f.f64_or("freq_shift", 0.0)?,
            num_class_embeds: if f.is_absent("num_class_embeds") {
                None
            } else {
                Some(f.usize("num_class_embeds")?)
            },
            downsample_padding: f.usize_or("downsample_padding", 1)?,
            mid_block_attention: true,
            block_out_channels,
        };
        if config.downsample_padding != 1 {
            return Err(f.unsupported("downsample_padding", "1"));
        }
        for (&c, &h) in config.block_out_channels.iter().zip(&config.heads) {
            if c % config.norm_num_groups != 0 || c % h != 0 {
                return Err(f.unsupported(
                    heads_key,
                    "head counts and norm_num_groups dividing every block_out_channels entry",
                ));
            }
        }
        Ok(config)
    }
}

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
        step: &Step<'_>,
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
            timesteps: step.timesteps,
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

/// The hidden state and the pending skip connections without autodiff when the processor asks
/// to stop recording gradients after `block` (the values are unchanged).
/// The kinds of injection points of BrushNet's residuals, in the order the walk meets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Site {
    /// The `conv_in` output, each down resnet (with its transformer), each downsampler.
    Down,
    /// The mid block's output.
    Mid,
    /// Each up resnet (with its transformer), each upsampler.
    Up,
}

/// Features added inside a UNet at BrushNet's injection points (see
/// [`Unet2DConditionModel::forward_with_residuals`]): for SD's four levels with two resnets,
/// 12 down, 1 mid and 15 up.
#[derive(Clone, Debug)]
pub struct UnetResiduals {
    /// At the `conv_in` output, then after each down resnet and downsampler.
    pub down: Vec<Tensor<4>>,
    /// After the mid block.
    pub mid: Tensor<4>,
    /// After each up resnet and upsampler.
    pub up: Vec<Tensor<4>>,
}

impl UnetResiduals {
    /// Every residual with its batch repeated `times` (for a classifier-free guidance batch).
    pub fn repeat_batch(&self, times: usize) -> Self {
        let rep = |t: &Tensor<4>| t.clone().repeat_dim(0, times);
        Self {
            down: self.down.iter().map(rep).collect(),
            mid: rep(&self.mid),
            up: self.up.iter().map(rep).collect(),
        }
    }

    /// Every residual times `scale`.
    pub fn scaled(self, scale: f64) -> Self {
        Self {
            down: self.down.into_iter().map(|t| t * scale).collect(),
            mid: self.mid * scale,
            up: self.up.into_iter().map(|t| t * scale).collect(),
        }
    }
}

/// A residual missing (`found` None) or of another shape than the activation it is added to.
fn residual_error(what: String, expected: [usize; 4], found: Option<[usize; 4]>) -> ModelsError {
    ModelsError::Core(hd_painter_core::CoreError::TensorShape {
        what,
        expected: format!("{expected:?}"),
        found: found.map_or_else(Vec::new, |f| f.to_vec()),
    })
}

fn stop_gradient_if(
    processor: &mut dyn AttentionProcessor,
    block: &str,
    x: Tensor<4>,
    skips: &mut [Tensor<4>],
) -> Tensor<4> {
    if !processor.stop_gradient_after(block) {
        return x;
    }
    for skip in skips.iter_mut() {
        *skip = skip.clone().inner();
    }
    x.inner()
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
            self.block.norm2.forward(residual),
        ))
    }

    fn cross_keys(&self) -> Tensor<4> {
        let attn2 = &self.block.attn2;
        attn2.split_heads(native::linear(&attn2.to_k, self.context.clone()))
    }
}

/// The per-call state every attention sees.
struct Step<'a> {
    timesteps: &'a [f32],
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
    fn forward(
        &self,
        x: Tensor<3>,
        context: &Tensor<3>,
        grid: [usize; 2],
        step: &Step<'_>,
        p: &mut dyn AttentionProcessor,
    ) -> Tensor<3> {
        // The whole block's weights in the activations' dtype at once: its layer norms and
        // the projections the attention processors call through the block view included.
        let block = &*native::params_in(self, x.dtype());
        let view = BlockView {
            block,
            input: &x,
            context,
        };
        let around = (!block.attn1.kind_is_cross).then_some(&view as &dyn TransformerBlockContext);
        let y = block.attn1.forward(
            block.norm1.forward(x.clone()),
            Some(context),
            grid,
            step,
            around,
            p,
        );
        let x = y + x;
        let x = block.attn2.forward(
            block.norm2.forward(x.clone()),
            Some(context),
            grid,
            step,
            None,
            p,
        ) + x;
        let h = native::linear(&block.ff.proj, block.norm3.forward(x.clone()));
        native::linear(&block.ff.out, native::geglu(h)) + x
    }
}

/// diffusers' `Transformer2DModel` with one block: group norm, input projection, the block,
/// output projection, residual.
#[derive(Module, Debug)]
struct SpatialTransformer {
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

    /// Applies the projection to `[b, c, h, w]` and returns tokens `[b, h*w, c]`, or the
    /// reverse with `to_tokens = false`, keeping diffusers' order of projection and reshape.
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
    fn new(
        c: usize,
        heads: usize,
        cfg: &UnetConfig,
        only_cross: bool,
        path: &str,
        device: &Device,
    ) -> Self {
        let norm = || LayerNormConfig::new(c).init(device);
        let block_path = format!("{path}.transformer_blocks.0");
        let block = TransformerBlock {
            norm1: norm(),
            attn1: Attention::new(
                c,
                only_cross.then_some(cfg.cross_attention_dim),
                heads,
                format!("{block_path}.attn1"),
                device,
            ),
            norm2: norm(),
            attn2: Attention::new(
                c,
                Some(cfg.cross_attention_dim),
                heads,
                format!("{block_path}.attn2"),
                device,
            ),
            norm3: norm(),
            ff: FeedForward {
                proj: LinearConfig::new(c, 8 * c).init(device),
                out: LinearConfig::new(4 * c, c).init(device),
            },
        };
        Self {
            norm: group_norm(cfg.norm_num_groups, c, TRANSFORMER_NORM_EPS, device),
            proj_in: Projection::new(c, cfg.use_linear_projection, device),
            transformer_blocks: vec![block],
            proj_out: Projection::new(c, cfg.use_linear_projection, device),
        }
    }

    fn forward(
        &self,
        x: Tensor<4>,
        context: &Tensor<3>,
        step: &Step<'_>,
        p: &mut dyn AttentionProcessor,
    ) -> Tensor<4> {
        let dims = x.dims();
        let mut t = self
            .proj_in
            .tokens_in(native::group_norm(&self.norm, x.clone()));
        for block in &self.transformer_blocks {
            t = block.forward(t, context, [dims[2], dims[3]], step, p);
        }
        self.proj_out.tokens_out(t, dims) + x
    }
}

/// A down level: resnets, each followed by its transformer in cross-attention levels, then an
/// optional downsampler.
#[derive(Module, Debug)]
struct DownLevel {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    downsamplers: Vec<Downsample>,
}

/// An up level: resnets over the concatenated skip connections, their transformers, and an
/// optional upsampler.
#[derive(Module, Debug)]
struct UpLevel {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    upsamplers: Vec<UpsampleConv>,
}

/// `Upsample2D` that resizes to the skip connection's size (diffusers' `upsample_size`), which
/// is exactly x2 when the input size is divisible by the UNet's total downsampling.
#[derive(Module, Debug)]
struct UpsampleConv {
    conv: Conv2d,
}

#[derive(Module, Debug)]
struct MidBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
}

#[derive(Module, Debug)]
struct TimeEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

/// diffusers' `UNet2DConditionModel`.
#[derive(Module, Debug)]
pub struct Unet2DConditionModel {
    conv_in: Conv2d,
    time_embedding: TimeEmbedding,
    class_embedding: Option<Embedding>,
    down_blocks: Vec<DownLevel>,
    mid_block: MidBlock,
    up_blocks: Vec<UpLevel>,
    /// The output head; absent in BrushNet's branch, which hands out its features instead.
    conv_norm_out: Option<GroupNorm>,
    conv_out: Option<Conv2d>,
    in_channels: usize,
    cross_attention_dim: usize,
    block_out_channels: Vec<usize>,
    time_channels: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    /// What the activations are computed in (the weights' dtype unless
    /// [`with_weight_dtype`](Self::with_weight_dtype) keeps them in f32).
    #[module(skip)]
    pub(crate) compute_dtype: FloatDType,
}

impl Unet2DConditionModel {
    /// A UNet with the given architecture and untrained weights.
    pub fn new(cfg: &UnetConfig, device: &Device) -> Self {
        let ch = &cfg.block_out_channels;
        let levels = ch.len();
        let temb = 4 * ch[0];
        let resnet = |cin, cout| {
            ResnetBlock::new(
                &ResnetSpec {
                    cin,
                    cout,
                    temb: Some(temb),
                    groups: cfg.norm_num_groups,
                    eps: cfg.norm_eps,
                },
                device,
            )
        };

        let mut prev = ch[0];
        let down_blocks = (0..levels)
            .map(|i| {
                let out = ch[i];
                let resnets = (0..cfg.layers_per_block)
                    .map(|j| resnet(if j == 0 { prev } else { out }, out))
                    .collect();
                let attentions = if cfg.down_cross_attention[i] {
                    (0..cfg.layers_per_block)
                        .map(|j| {
                            SpatialTransformer::new(
                                out,
                                cfg.heads[i],
                                cfg,
                                cfg.only_cross_attention[i],
                                &format!("down_blocks.{i}.attentions.{j}"),
                                device,
                            )
                        })
                        .collect()
                } else {
                    vec![]
                };
                prev = out;
                let downsamplers = if i + 1 < levels {
                    vec![Downsample::new(out, true, device)]
                } else {
                    vec![]
                };
                DownLevel {
                    resnets,
                    attentions,
                    downsamplers,
                }
            })
            .collect();

        let last = ch[levels - 1];
        let mid_block = MidBlock {
            resnets: vec![resnet(last, last), resnet(last, last)],
            attentions: if cfg.mid_block_attention {
                vec![SpatialTransformer::new(
                    last,
                    cfg.heads[levels - 1],
                    cfg,
                    false,
                    "mid_block.attentions.0",
                    device,
                )]
            } else {
                vec![]
            },
        };

        let reversed: Vec<usize> = ch.iter().rev().copied().collect();
        let heads_rev: Vec<usize> = cfg.heads.iter().rev().copied().collect();
        let only_cross_rev: Vec<bool> = cfg.only_cross_attention.iter().rev().copied().collect();
        let mut prev_out = reversed[0];
        let up_blocks = (0..levels)
            .map(|i| {
                let out = reversed[i];
                let input = reversed[(i + 1).min(levels - 1)];
                let n = cfg.layers_per_block + 1;
                let resnets = (0..n)
                    .map(|j| {
                        let skip = if j == n - 1 { input } else { out };
                        let cin = if j == 0 { prev_out } else { out };
                        resnet(cin + skip, out)
                    })
                    .collect();
                let attentions = if cfg.up_cross_attention[i] {
                    (0..n)
                        .map(|j| {
                            SpatialTransformer::new(
                                out,
                                heads_rev[i],
                                cfg,
                                only_cross_rev[i],
                                &format!("up_blocks.{i}.attentions.{j}"),
                                device,
                            )
                        })
                        .collect()
                } else {
                    vec![]
                };
                prev_out = out;
                let upsamplers = if i + 1 < levels {
                    vec![UpsampleConv {
                        conv: conv(out, out, 3, device),
                    }]
                } else {
                    vec![]
                };
                UpLevel {
                    resnets,
                    attentions,
                    upsamplers,
                }
            })
            .collect();

        Self {
            conv_in: conv(cfg.in_channels, ch[0], 3, device),
            time_embedding: TimeEmbedding {
                linear_1: LinearConfig::new(ch[0], temb).init(device),
                linear_2: LinearConfig::new(temb, temb).init(device),
            },
            class_embedding: cfg
                .num_class_embeds
                .map(|n| EmbeddingConfig::new(n, temb).init(device)),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: Some(group_norm(cfg.norm_num_groups, ch[0], cfg.norm_eps, device)),
            conv_out: Some(conv(ch[0], cfg.out_channels, 3, device)),
            in_channels: cfg.in_channels,
            cross_attention_dim: cfg.cross_attention_dim,
            block_out_channels: cfg.block_out_channels.clone(),
            time_channels: ch[0],
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            freq_shift: cfg.freq_shift,
            compute_dtype: FloatDType::F32,
        }
    }

    /// Loads a diffusers `unet/` folder: `config.json` and `diffusion_pytorch_model.safetensors`
    /// (or its `variant`, e.g. `fp16`), any float type.
    pub fn load(dir: impl AsRef<Path>, variant: Option<&str>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = UnetConfig::from_file(dir.join("config.json"))?;
        let weights = weights_file(dir, &["diffusion_pytorch_model"], variant)?;
        Self::from_weights(&config, weights, device)
    }

    /// Loads the UNet of an original-layout single-file checkpoint (`model.diffusion_model.*`,
    /// a whole checkpoint or a UNet-only file), as diffusers'
    /// `UNet2DConditionModel.from_single_file` converts it. `config_dir` is a diffusers `unet/`
    /// folder holding the `config.json` (no weights needed); the input channels (4, 7 or 9) are
    /// taken from the checkpoint.
    pub fn load_single_file(
        checkpoint: impl AsRef<Path>,
        config_dir: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self> {
        let ckpt = Checkpoint::open(checkpoint.as_ref())?;
        Self::from_checkpoint(&ckpt, config_dir.as_ref(), device)
    }

    /// The UNet of an opened original-layout checkpoint, with the `config.json` of
    /// `config_dir` and the checkpoint's input channels.
    pub(crate) fn from_checkpoint(
        ckpt: &Checkpoint,
        config_dir: &Path,
        device: &Device,
    ) -> Result<Self> {
        let mut config = UnetConfig::from_file(config_dir.join("config.json"))?;
        let conv_in = format!("{UNET_PREFIX}input_blocks.0.0.weight");
        config.in_channels = match ckpt.shape(&conv_in)?.as_deref() {
            Some([_, channels, _, _]) => *channels,
            _ => return Err(ckpt.not_found(&format!("4-d `{conv_in}`"))),
        };
        let weights = ckpt.unet(config.layers_per_block)?;
        Self::from_weights(&config, weights, device)
    }

    /// Builds the model for `config` and loads diffusers-layout weights into it.
    pub(crate) fn from_weights(
        config: &UnetConfig,
        weights: WeightSource,
        device: &Device,
    ) -> Result<Self> {
        let remaps = [
            (r"\.to_out\.0\.", ".to_out."),
            (r"\.ff\.net\.0\.proj\.", ".ff.proj."),
            (r"\.ff\.net\.2\.", ".ff.out."),
            // The transformer's projections are an enum (conv or linear) in our model.
            (
                r"(attentions\.\d+)\.proj_(in|out)\.(weight|bias)$",
                "$1.proj_$2.PROJ.$3",
            ),
        ];
        let model = Self::new(config, device);
        let projection = if config.use_linear_projection {
            "Linear"
        } else {
            "Conv"
        };
        let remaps: Vec<(&str, String)> = remaps
            .iter()
            .map(|(p, r)| (*p, r.replace("PROJ", projection)))
            .collect();
        let remaps: Vec<(&str, &str)> = remaps.iter().map(|(p, r)| (*p, r.as_str())).collect();
        load_safetensors(model, weights, &remaps, &[])
    }

    /// The attention-free copy of this UNet that BrushNet's `from_unet` makes, without output
    /// head: the time embedding, every resnet and sampler shared, no transformer, and a
    /// `conv_in` taking `extra` more channels, whose weights are this `conv_in`'s for the
    /// latents, again for the next `in_channels` channels (the masked image's latents), and
    /// zero for the rest (the mask).
    pub(crate) fn attention_free_copy(&self, extra: usize) -> Self {
        let weight = self.conv_in.weight.val();
        let [cout, cin, k, _] = weight.dims();
        let mut parts = vec![weight.clone()];
        let mut left = extra;
        while left > 0 {
            let take = left.min(cin);
            parts.push(if take == cin {
                weight.clone()
            } else {
                Tensor::zeros([cout, take, k, k], &weight.device())
            });
            left -= take;
        }
        let mut copy = self.clone().without_head();
        copy.conv_in.weight = burn::module::Param::from_tensor(Tensor::cat(parts, 1));
        copy.in_channels += extra;
        copy.mid_block.attentions.clear();
        for level in &mut copy.down_blocks {
            level.attentions.clear();
        }
        for level in &mut copy.up_blocks {
            level.attentions.clear();
        }
        copy
    }

    /// The channels of the activations at BrushNet's injection points: down (the `conv_in`
    /// output, then every down resnet and downsampler), mid, up (every up resnet and upsampler).
    pub(crate) fn injection_channels(&self) -> (Vec<usize>, usize, Vec<usize>) {
        let ch = &self.block_out_channels;
        let mut down = vec![ch[0]];
        for (level, &c) in self.down_blocks.iter().zip(ch) {
            down.extend(vec![c; level.resnets.len() + level.downsamplers.len()]);
        }
        let mut up = vec![];
        for (level, &c) in self.up_blocks.iter().zip(ch.iter().rev()) {
            up.extend(vec![c; level.resnets.len() + level.upsamplers.len()]);
        }
        (down, ch[ch.len() - 1], up)
    }

    /// The same model without its output head (BrushNet's branch).
    pub(crate) fn without_head(mut self) -> Self {
        self.conv_norm_out = None;
        self.conv_out = None;
        self
    }

    /// The number of input channels (4, 7 or 9).
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.conv_in.weight.device()
    }

    /// This model with its weights and activations in `dtype` (f16 / bf16 halve the memory of
    /// both): inputs are cast to it on the way in and the noise prediction back to f32, so
    /// callers are unchanged. Fast where the device computes in half precision (GPUs); on the
    /// CPU [`with_weight_dtype`](Self::with_weight_dtype) is faster and more precise. The f32
    /// weights of a loaded model are the reference path.
    pub fn with_dtype(self, dtype: FloatDType) -> Self {
        self.with_precision(dtype, dtype)
    }

    /// This model with its weights stored in `dtype` (f16 / bf16 halve their memory) and
    /// everything computed in f32: each layer's weights are widened as it runs. The result
    /// differs from the f32 model's by the weights' rounding only; on the CPU this is the
    /// faster half-precision path (the f32 kernels run, where half-precision arithmetic would
    /// fall back to slower generic code).
    pub fn with_weight_dtype(self, dtype: FloatDType) -> Self {
        self.with_precision(dtype, FloatDType::F32)
    }

    /// The dtype of the weights (f32 unless [`with_dtype`](Self::with_dtype) or
    /// [`with_weight_dtype`](Self::with_weight_dtype) changed it).
    pub fn dtype(&self) -> FloatDType {
        self.conv_in.weight.val().dtype().into()
    }

    /// The dtype the activations are computed in (f32 unless [`with_dtype`](Self::with_dtype)
    /// changed it).
    pub fn compute_dtype(&self) -> FloatDType {
        self.compute_dtype
    }

    /// How many times the latent is halved on the way down (`2^(levels - 1)`): latent sides that
    /// are multiples of it need no resizing to the skip connections.
    pub fn downscale(&self) -> usize {
        1 << (self.down_blocks.len() - 1)
    }

    /// The channels of each level, from the latent resolution down (the config's
    /// `block_out_channels`): what sizes its activations.
    pub fn block_out_channels(&self) -> &[usize] {
        &self.block_out_channels
    }

    /// The width of the text embedding it attends to.
    pub fn cross_attention_dim(&self) -> usize {
        self.cross_attention_dim
    }

    /// Predicts the noise (or `v`) for `sample` `[batch, in_channels, h, w]` at `timesteps`
    /// (one per batch item), conditioned on `context` `[batch, tokens, cross_attention_dim]`,
    /// with `class_labels` for UNets that have a class embedding (the x4 upscaler's noise level).
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
        class_labels: Option<&[i64]>,
        processor: &mut dyn AttentionProcessor,
    ) -> Result<Tensor<4>> {
        let x = self.walk(
            sample,
            timesteps,
            context,
            class_labels,
            processor,
            &mut |_, x| Ok(x),
        )?;
        self.head(x)
    }

    /// [`forward`](Self::forward) with BrushNet's residuals added inside (its
    /// `down_block_add_samples`, `mid_block_add_sample`, `up_block_add_samples`): the first down
    /// residual to the `conv_in` output that continues down (its skip connection keeps the
    /// output as is), the next ones after every down resnet (with its transformer) and
    /// downsampler, before they become skips; the mid residual after the mid block; the up ones
    /// after every up resnet (with its transformer) and upsampler. Their batch must be the
    /// sample's; a residual of the wrong count or shape is a typed error.
    pub fn forward_with_residuals(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
        class_labels: Option<&[i64]>,
        processor: &mut dyn AttentionProcessor,
        residuals: &UnetResiduals,
    ) -> Result<Tensor<4>> {
        let mut next = [0usize; 3];
        let mut add = |site: Site, x: Tensor<4>| -> Result<Tensor<4>> {
            let (list, kind): (&[Tensor<4>], usize) = match site {
                Site::Down => (&residuals.down, 0),
                Site::Mid => (std::slice::from_ref(&residuals.mid), 1),
                Site::Up => (&residuals.up, 2),
            };
            let i = next[kind];
            next[kind] += 1;
            let what = || format!("{site:?} residual {i}");
            let r = list
                .get(i)
                .ok_or_else(|| residual_error(what(), x.dims(), None))?;
            if r.dims() != x.dims() {
                return Err(residual_error(what(), x.dims(), Some(r.dims())));
            }
            let dtype = x.dtype();
            Ok(x + r.clone().cast(dtype))
        };
        let x = self.walk(
            sample,
            timesteps,
            context,
            class_labels,
            processor,
            &mut add,
        )?;
        let expected = [residuals.down.len(), 1, residuals.up.len()];
        if next != expected {
            return Err(ModelsError::Malformed {
                path: "BrushNet residuals".into(),
                reason: format!(
                    "{expected:?} (down, mid, up) residuals for a UNet with {next:?} injection points"
                ),
            });
        }
        self.head(x)
    }

    /// The output head: group norm, SiLU, `conv_out`; the prediction in f32.
    fn head(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        match (&self.conv_norm_out, &self.conv_out) {
            (Some(norm), Some(conv)) => {
                Ok(native::conv(conv, native::group_norm_silu(norm, x)).cast(FloatDType::F32))
            }
            _ => Err(ModelsError::Malformed {
                path: "UNet".into(),
                reason: "a branch without output head has no noise prediction".into(),
            }),
        }
    }

    /// Everything up to the output head, handing the activation at each of BrushNet's
    /// injection points to `tap`, which returns what continues (the activation itself, or with
    /// a residual added). The `conv_in` output's skip connection is taken before its tap.
    pub(crate) fn walk(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
        class_labels: Option<&[i64]>,
        processor: &mut dyn AttentionProcessor,
        tap: &mut dyn FnMut(Site, Tensor<4>) -> Result<Tensor<4>>,
    ) -> Result<Tensor<4>> {
        let [b, c, h, w] = sample.dims();
        let shape_error = |what: &str, expected: String, found: Vec<usize>| {
            ModelsError::Core(hd_painter_core::CoreError::TensorShape {
                what: what.into(),
                expected,
                found,
            })
        };
        if c != self.in_channels || h == 0 || w == 0 {
            return Err(shape_error(
                "UNet sample",
                format!("[batch, {}, h, w]", self.in_channels),
                vec![b, c, h, w],
            ));
        }
        if timesteps.len() != b {
            return Err(shape_error(
                "UNet timesteps",
                format!("{b} timesteps"),
                vec![timesteps.len()],
            ));
        }
        if context.dims()[0] != b || context.dims()[2] != self.cross_attention_dim {
            return Err(shape_error(
                "UNet text context",
                format!("[{b}, tokens, {}]", self.cross_attention_dim),
                context.dims().to_vec(),
            ));
        }
        let device = sample.device();
        let step = Step { timesteps };
        // Everything runs in the compute dtype (a no-op for the f32 model); layers whose
        // weights are stored in another dtype cast them as they run.
        let dtype = self.compute_dtype;
        let sample = sample.cast(dtype);
        let context = &context.clone().cast(dtype);

        let time = native::params_in(&self.time_embedding, dtype.into());
        let mut emb = time.linear_2.forward(silu(
            time.linear_1
                .forward(self.timestep_features(timesteps, &device).cast(dtype)),
        ));
        match (&self.class_embedding, class_labels) {
            (Some(embedding), Some(labels)) if labels.len() == b => {
                let labels =
                    Tensor::<2, Int>::from_data(TensorData::new(labels.to_vec(), [b, 1]), &device);
                emb = emb
                    + native::params_in(embedding, dtype.into())
                        .forward(labels)
                        .reshape([b, self.time_channels * 4]);
            }
            (Some(_), labels) => {
                return Err(shape_error(
                    "UNet class labels",
                    format!("{b} labels"),
                    vec![labels.map_or(0, <[i64]>::len)],
                ));
            }
            (None, _) => {}
        }

        let x = native::conv(&self.conv_in, sample);
        let mut skips = vec![x.clone()];
        let mut x = tap(Site::Down, x)?;
        for (i, level) in self.down_blocks.iter().enumerate() {
            for (j, resnet) in level.resnets.iter().enumerate() {
                x = resnet.forward(x, Some(&emb));
                if let Some(t) = level.attentions.get(j) {
                    x = t.forward(x, context, &step, processor);
                }
                x = tap(Site::Down, x)?;
                skips.push(x.clone());
            }
            for d in &level.downsamplers {
                x = tap(Site::Down, d.forward(x))?;
                skips.push(x.clone());
            }
            x = stop_gradient_if(&mut *processor, &format!("down_blocks.{i}"), x, &mut skips);
        }

        x = self.mid_block.resnets[0].forward(x, Some(&emb));
        if let Some(t) = self.mid_block.attentions.first() {
            x = t.forward(x, context, &step, processor);
        }
        x = self.mid_block.resnets[1].forward(x, Some(&emb));
        x = tap(Site::Mid, x)?;
        x = stop_gradient_if(&mut *processor, "mid_block", x, &mut skips);

        for (i, level) in self.up_blocks.iter().enumerate() {
            for (j, resnet) in level.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up resnet");
                x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(&emb));
                if let Some(t) = level.attentions.get(j) {
                    x = t.forward(x, context, &step, processor);
                }
                x = tap(Site::Up, x)?;
            }
            for u in &level.upsamplers {
                let [_, _, th, tw] = skips.last().expect("a skip below every upsampler").dims();
                let options = InterpolateOptions::new(InterpolateMode::Nearest)
                    .with_align_corners(false)
                    .with_output_size([th, tw]);
                x = tap(Site::Up, native::conv(&u.conv, interpolate(x, options)))?;
            }
            x = stop_gradient_if(&mut *processor, &format!("up_blocks.{i}"), x, &mut skips);
        }
        Ok(x)
    }

    /// diffusers' sinusoidal `get_timestep_embedding`, computed in f32 as torch does.
    fn timestep_features(&self, timesteps: &[f32], device: &Device) -> Tensor<2> {
        let half = self.time_channels / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|i| (-(10000f32.ln()) * i as f32 / (half as f32 - self.freq_shift as f32)).exp())
            .collect();
        let mut data: Vec<f32> = Vec::with_capacity(timesteps.len() * 2 * half);
        for &t in timesteps {
            let args: Vec<f32> = freqs.iter().map(|f| t * f).collect();
            let (sin, cos): (Vec<f32>, Vec<f32>) = args.iter().map(|a| (a.sin(), a.cos())).unzip();
            if self.flip_sin_to_cos {
                data.extend(cos.iter().chain(&sin));
            } else {
                data.extend(sin.iter().chain(&cos));
            }
        }
        Tensor::from_data(TensorData::new(data, [timesteps.len(), 2 * half]), device)
    }
}

impl Precision for Unet2DConditionModel {
    fn compute_dtype_mut(&mut self) -> &mut FloatDType {
        &mut self.compute_dtype
    }
}
