//! The convolutional building blocks diffusers' UNet and VAE share: `ResnetBlock2D`,
//! `Downsample2D`, `Upsample2D` and the spatial self-attention of the VAE's mid-block. Field
//! names follow diffusers' checkpoint keys.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

use crate::attention::{DEFAULT_SCORE_BUDGET, chunked_attention};
use crate::native;

/// A `k x k` convolution with "same" padding (k odd).
pub(crate) fn conv(cin: usize, cout: usize, k: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .init(device)
}

/// GroupNorm as diffusers configures it.
pub(crate) fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels)
        .with_epsilon(eps)
        .init(device)
}

/// diffusers' `ResnetBlock2D`: two norm-SiLU-conv stages, an optional timestep projection added
/// between them, and a 1x1 shortcut when the channel count changes.
#[derive(Module, Debug)]
pub(crate) struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

/// The shape of a [`ResnetBlock`].
pub(crate) struct ResnetSpec {
    pub cin: usize,
    pub cout: usize,
    pub temb: Option<usize>,
    pub groups: usize,
    pub eps: f64,
}

impl ResnetBlock {
    pub(crate) fn new(s: &ResnetSpec, device: &Device) -> Self {
        Self {
            norm1: group_norm(s.groups, s.cin, s.eps, device),
            conv1: conv(s.cin, s.cout, 3, device),
            time_emb_proj: s.temb.map(|t| LinearConfig::new(t, s.cout).init(device)),
            norm2: group_norm(s.groups, s.cout, s.eps, device),
            conv2: conv(s.cout, s.cout, 3, device),
            conv_shortcut: (s.cin != s.cout).then(|| conv(s.cin, s.cout, 1, device)),
        }
    }

    /// `temb` is the SiLU-free timestep embedding `[batch, temb]` (or `None` in the VAE).
    pub(crate) fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = native::conv(&self.conv1, native::group_norm_silu(&self.norm1, x.clone()));
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb) {
            let t = native::params_in(proj, t.dtype()).forward(silu(t.clone()));
            h = h + t.unsqueeze_dims(&[2, 3]);
        }
        let h = native::conv(&self.conv2, native::group_norm_silu(&self.norm2, h));
        let shortcut = match &self.conv_shortcut {
            Some(c) => native::conv(c, x),
            None => x,
        };
        shortcut + h
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
        let [_, _, h, w] = x.dims();
        let options = InterpolateOptions::new(InterpolateMode::Nearest)
            .with_align_corners(false)
            .with_output_size([2 * h, 2 * w]);
        native::conv(&self.conv, interpolate(x, options))
    }
}

/// The single-head spatial self-attention of the VAE's mid-block (diffusers' `Attention` with
/// `group_norm` and a residual connection), computed in query chunks.
#[derive(Module, Debug)]
pub(crate) struct SpatialSelfAttention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    /// Score-matrix elements computed at once (see [`chunked_attention`]).
    pub(crate) score_budget: usize,
}

impl SpatialSelfAttention {
    pub(crate) fn new(channels: usize, groups: usize, eps: f64, device: &Device) -> Self {
        let linear = || LinearConfig::new(channels, channels).init(device);
        Self {
            group_norm: group_norm(groups, channels, eps, device),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: linear(),
            score_budget: DEFAULT_SCORE_BUDGET,
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let tokens = native::group_norm(&self.group_norm, x.clone())
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let heads = |t: Tensor<3>| t.unsqueeze_dim::<4>(1);
        let q = heads(native::linear(&self.to_q, tokens.clone()));
        let k = heads(native::linear(&self.to_k, tokens.clone()));
        let v = heads(native::linear(&self.to_v, tokens));
        let o = chunked_attention(q, k, v, self.score_budget).squeeze_dim::<3>(1);
        let o = native::linear(&self.to_out, o)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        o + x
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
        let spec = ResnetSpec {
            cin: channels,
            cout: channels,
            temb: None,
            groups,
            eps,
        };
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
