//! The convolutional building blocks diffusers' UNet and VAE share: `ResnetBlock2D`,
//! `Downsample2D`, `Upsample2D` and the spatial self-attention of the VAE's mid-block. Field
//! names follow diffusers' checkpoint keys.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::AvgPool2dConfig;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};

use crate::attention::{DEFAULT_SCORE_BUDGET, chunked_attention};
use crate::native;

/// A `k x k` convolution with "same" padding (k odd).
pub(crate) fn conv(cin: usize, cout: usize, k: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .init(device)
}

/// diffusers' sinusoidal `get_timestep_embedding` of `timesteps` over `channels` features
/// (`[len, channels]`), computed in f32 as torch does.
pub(crate) fn sinusoidal_features(
    timesteps: &[f32],
    channels: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: &Device,
) -> Tensor<2> {
    let half = channels / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f32.ln()) * i as f32 / (half as f32 - freq_shift as f32)).exp())
        .collect();
    let mut data: Vec<f32> = Vec::with_capacity(timesteps.len() * 2 * half);
    for &t in timesteps {
        let args: Vec<f32> = freqs.iter().map(|f| t * f).collect();
        let (sin, cos): (Vec<f32>, Vec<f32>) = args.iter().map(|a| (a.sin(), a.cos())).unzip();
        if flip_sin_to_cos {
            data.extend(cos.iter().chain(&sin));
        } else {
            data.extend(sin.iter().chain(&cos));
        }
    }
    Tensor::from_data(TensorData::new(data, [timesteps.len(), 2 * half]), device)
}

/// GroupNorm as diffusers configures it.
pub(crate) fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels)
        .with_epsilon(eps)
        .init(device)
}

/// diffusers' `ResnetBlock2D`: two norm-SiLU-conv stages, an optional timestep projection
/// between them (added, or as a scale and shift of the second norm's output), and a 1x1
/// shortcut when the channel count changes; the sum is divided by `output_scale`.
#[derive(Module, Debug)]
pub(crate) struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    scale_shift: bool,
    output_scale: f64,
    #[module(skip)]
    resample: Resample,
}

/// How a [`ResnetBlock`] resamples: guided-diffusion's up / down resnets (`resblock_updown`)
/// resize both paths between the first norm and the first convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resample {
    /// No resampling (every diffusers resnet).
    None,
    /// Nearest x2.
    Up,
    /// 2x2 average pooling.
    Down,
}

impl Resample {
    fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Resample::None => x,
            Resample::Up => nearest_2x(x),
            Resample::Down => AvgPool2dConfig::new([2, 2])
                .with_strides([2, 2])
                .init()
                .forward(x),
        }
    }
}

/// Nearest-neighbour upsampling by 2.
pub(crate) fn nearest_2x(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let options = InterpolateOptions::new(InterpolateMode::Nearest)
        .with_align_corners(false)
        .with_output_size([2 * h, 2 * w]);
    interpolate(x, options)
}

/// The shape of a [`ResnetBlock`].
pub(crate) struct ResnetSpec {
    pub cin: usize,
    pub cout: usize,
    pub temb: Option<usize>,
    pub groups: usize,
    pub eps: f64,
    /// `time_embedding_norm = "scale_shift"`: the projection gives a scale and a shift of the
    /// second norm (twice the channels) instead of a term added before it.
    pub scale_shift: bool,
    /// `output_scale_factor`: the output is `(shortcut + h) / output_scale`.
    pub output_scale: f64,
    /// Resampling inside the block.
    pub resample: Resample,
}

impl ResnetSpec {
    /// diffusers' default resnet: the time embedding added, the output not rescaled.
    pub(crate) fn plain(
        cin: usize,
        cout: usize,
        temb: Option<usize>,
        groups: usize,
        eps: f64,
    ) -> Self {
        Self {
            cin,
            cout,
            temb,
            groups,
            eps,
            scale_shift: false,
            output_scale: 1.0,
            resample: Resample::None,
        }
    }
}

impl ResnetBlock {
    pub(crate) fn new(s: &ResnetSpec, device: &Device) -> Self {
        Self {
            norm1: group_norm(s.groups, s.cin, s.eps, device),
            conv1: conv(s.cin, s.cout, 3, device),
            time_emb_proj: s
                .temb
                .map(|t| LinearConfig::new(t, s.cout * (1 + s.scale_shift as usize)).init(device)),
            norm2: group_norm(s.groups, s.cout, s.eps, device),
            conv2: conv(s.cout, s.cout, 3, device),
            conv_shortcut: (s.cin != s.cout).then(|| conv(s.cin, s.cout, 1, device)),
            scale_shift: s.scale_shift,
            output_scale: s.output_scale,
            resample: s.resample,
        }
    }

    /// `temb` is the SiLU-free timestep embedding `[batch, temb]` (or `None` in the VAE).
    pub(crate) fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let h = native::group_norm_silu(&self.norm1, x.clone());
        let (h, x) = (self.resample.apply(h), self.resample.apply(x));
        let mut h = native::conv(&self.conv1, h);
        let t = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(t)) => Some(
                native::params_in(proj, t.dtype())
                    .forward(silu(t.clone()))
                    .unsqueeze_dims::<4>(&[2, 3]),
            ),
            _ => None,
        };
        let h = match (t, self.scale_shift) {
            (Some(t), true) => {
                let [scale, shift] = t.chunk(2, 1).try_into().expect("2 x out channels");
                let h = native::group_norm(&self.norm2, h) * (scale + 1.0) + shift;
                native::conv(&self.conv2, silu(h))
            }
            (t, _) => {
                if let Some(t) = t {
                    h = h + t;
                }
                native::conv(&self.conv2, native::group_norm_silu(&self.norm2, h))
            }
        };
        let shortcut = match &self.conv_shortcut {
            Some(c) => native::conv(c, x),
            None => x,
        };
        let out = shortcut + h;
        if self.output_scale == 1.0 {
            out
        } else {
            out / self.output_scale
        }
    }
}

/// diffusers' `Downsample2D` with a convolution: stride 2, padded by one on every side (UNet)
/// or only right and bottom (the VAE's `padding = 0`).
#[derive(Module, Debug)]
pub(crate) struct Downsample {
    conv: Conv2d,
}

impl Downsample {
    pub(crate) fn new(channels: usize, symmetric_padding: bool, device: &Device) -> Self {
        let padding = if symmetric_padding {
            PaddingConfig2d::Explicit(1, 1, 1, 1)
        } else {
            PaddingConfig2d::Explicit(0, 0, 1, 1)
        };
        Self {
            conv: Conv2dConfig::new([channels, channels], [3, 3])
                .with_stride([2, 2])
                .with_padding(padding)
                .init(device),
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        native::conv(&self.conv, x)
    }
}

/// diffusers' `Upsample2D` with a convolution: nearest x2, then a 3x3 convolution.
#[derive(Module, Debug)]
pub(crate) struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub(crate) fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: conv(channels, channels, 3, device),
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        native::conv(&self.conv, nearest_2x(x))
    }
}

/// The spatial self-attention of the VAE's mid-block and of `UNet2DModel`'s attention blocks
/// (diffusers' `Attention` over the pixels, with an optional `group_norm`, `heads` heads and a
/// residual connection, the sum divided by `rescale`), computed in query chunks.
#[derive(Module, Debug)]
pub(crate) struct SpatialSelfAttention {
    group_norm: Option<GroupNorm>,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    rescale: f64,
    /// Score-matrix elements computed at once (see [`chunked_attention`]).
    pub(crate) score_budget: usize,
}

/// The shape of a [`SpatialSelfAttention`].
pub(crate) struct AttentionSpec {
    pub channels: usize,
    pub heads: usize,
    /// The groups of its norm, or `None` for an attention without one.
    pub groups: Option<usize>,
    pub eps: f64,
    /// `rescale_output_factor`.
    pub rescale: f64,
}

impl SpatialSelfAttention {
    /// The VAE's attention: one head, normed, not rescaled.
    pub(crate) fn new(channels: usize, groups: usize, eps: f64, device: &Device) -> Self {
        let spec = AttentionSpec {
            channels,
            heads: 1,
            groups: Some(groups),
            eps,
            rescale: 1.0,
        };
        Self::with_spec(&spec, device)
    }

    pub(crate) fn with_spec(s: &AttentionSpec, device: &Device) -> Self {
        let linear = || LinearConfig::new(s.channels, s.channels).init(device);
        Self {
            group_norm: s.groups.map(|g| group_norm(g, s.channels, s.eps, device)),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: linear(),
            heads: s.heads,
            rescale: s.rescale,
            score_budget: DEFAULT_SCORE_BUDGET,
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let normed = match &self.group_norm {
            Some(norm) => native::group_norm(norm, x.clone()),
            None => x.clone(),
        };
        let tokens = normed.reshape([b, c, h * w]).swap_dims(1, 2);
        let heads = self.heads;
        let split = |t: Tensor<3>| t.reshape([b, h * w, heads, c / heads]).swap_dims(1, 2);
        let q = split(native::linear(&self.to_q, tokens.clone()));
        let k = split(native::linear(&self.to_k, tokens.clone()));
        let v = split(native::linear(&self.to_v, tokens));
        let o = chunked_attention(q, k, v, self.score_budget)
            .swap_dims(1, 2)
            .reshape([b, h * w, c]);
        let o = native::linear(&self.to_out, o)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        if self.rescale == 1.0 {
            o + x
        } else {
            (o + x) / self.rescale
        }
    }
}

/// diffusers' `UNetMidBlock2D` without timestep (the VAE's): resnet, attention, resnet.
#[derive(Module, Debug)]
pub(crate) struct VaeMidBlock {
    resnets: Vec<ResnetBlock>,
    pub(crate) attentions: Vec<SpatialSelfAttention>,
}

impl VaeMidBlock {
    pub(crate) fn new(
        channels: usize,
        groups: usize,
        eps: f64,
        with_attention: bool,
        device: &Device,
    ) -> Self {
        let spec = ResnetSpec::plain(channels, channels, None, groups, eps);
        Self {
            resnets: vec![
                ResnetBlock::new(&spec, device),
                ResnetBlock::new(&spec, device),
            ],
            attentions: if with_attention {
                vec![SpatialSelfAttention::new(channels, groups, eps, device)]
            } else {
                vec![]
            },
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, None);
        if let Some(attn) = self.attentions.first() {
            x = attn.forward(x);
        }
        self.resnets[1].forward(x, None)
    }
}
