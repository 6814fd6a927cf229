//! BrushNet (arXiv 2403.06976): an attention-free copy of a base UNet that reads the noisy
//! latents with the masked image's latents and the mask, and hands 1x1-convolved features to
//! the frozen base UNet at every resnet and sampler ([`UnetResiduals`]). The branch is our
//! UNet walk without transformers and output head, so its activations are computed by the same
//! code as the base model's.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, FloatDType, Tensor};
use serde_json::Value;

use crate::blocks::conv;
use crate::config::ConfigFile;
use crate::error::{ModelsError, Result};
use crate::native::{self, Precision};
use crate::processor::DefaultAttention;
use crate::unet::{Conditions, LevelConfig, Site, Unet2DConditionModel, UnetConfig, UnetResiduals};
use crate::weights::{load_safetensors, weights_file};

/// The architecture of a `BrushNetModel` (the keys of its `config.json` the published
/// checkpoints use).
#[derive(Clone, Debug, PartialEq)]
pub struct BrushNetConfig {
    /// The branch's UNet levels: `DownBlock2D` / `MidBlock2D` / `UpBlock2D`, no attention.
    pub unet: UnetConfig,
    /// Conditioning channels after the latents: the masked image's latents and the mask (5).
    pub conditioning_channels: usize,
}

impl BrushNetConfig {
    /// Reads a BrushNet `config.json`; settings the published checkpoints do not use must hold
    /// their defaults.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let f = Self::config_file(path.as_ref())?;
        f.one_of("_class_name", &["BrushNetModel"])?;
        let down = f.str_list("down_block_types", &["DownBlock2D"])?;
        let up = f.str_list("up_block_types", &["UpBlock2D"])?;
        f.one_of("mid_block_type", &["MidBlock2D"])?;
        f.one_of("brushnet_conditioning_channel_order", &["rgb"])?;
        f.one_of("act_fn", &["silu"])?;
        for (key, default) in [
            ("global_pool_conditions", Value::Bool(false)),
            ("class_embed_type", Value::Null),
            ("addition_embed_type", Value::Null),
            ("encoder_hid_dim", Value::Null),
            ("num_class_embeds", Value::Null),
            ("resnet_time_scale_shift", Value::from("default")),
            ("mid_block_scale_factor", Value::from(1)),
            ("downsample_padding", Value::from(1)),
        ] {
            f.require_default(key, &default)?;
        }
        let block_out_channels = f.levels(down.len(), up.len())?;
        // The base UNet's levels without transformers, its mid block without attention.
        let unet = UnetConfig {
            in_channels: f.usize("in_channels")?,
            levels: block_out_channels
                .iter()
                .map(|&c| LevelConfig::plain(c))
                .collect(),
            layers_per_block: f.usize("layers_per_block")?,
            cross_attention_dim: f.usize("cross_attention_dim")?,
            norm_num_groups: f.groups_dividing(&block_out_channels)?,
            norm_eps: f.f64_or("norm_eps", 1e-5)?,
            flip_sin_to_cos: f.bool_or("flip_sin_to_cos", true)?,
            freq_shift: f.f64_or("freq_shift", 0.0)?,
            mid_block_attention: false,
            ..UnetConfig::default()
        };
        Ok(Self {
            unet,
            conditioning_channels: f.usize("conditioning_channels")?,
        })
    }

    /// `config.json` with the official fork's `BrushNetModel` defaults for the keys it lacks
    /// (its default mid block, `UNetMidBlock2D`, is not the released checkpoints' and stays an
    /// error).
    pub(crate) fn config_file(path: &Path) -> Result<ConfigFile> {
        let defaults = serde_json::json!({
            "_class_name": "BrushNetModel",
            "in_channels": 4,
            "conditioning_channels": 5,
            "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D"],
            "mid_block_type": "UNetMidBlock2D",
            "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "act_fn": "silu",
            "norm_num_groups": 32,
            "cross_attention_dim": 1280,
            "brushnet_conditioning_channel_order": "rgb",
        });
        Ok(ConfigFile::open(path)?.with_defaults(&defaults))
    }
}

/// The attention-free copy of `unet` that BrushNet's `from_unet` makes, without output head:
/// the time embedding, every resnet and sampler shared, no transformer, and a `conv_in` taking
/// `extra` more channels, whose weights are `unet`'s for the latents, again for the next
/// `in_channels` channels (the masked image's latents), and zero for the rest (the mask).
fn attention_free_trunk(unet: &Unet2DConditionModel, extra: usize) -> Unet2DConditionModel {
    let weight = unet.conv_in_weight();
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
    unet.clone()
        .without_head()
        .without_transformers()
        .with_conv_in_weight(Tensor::cat(parts, 1))
}

/// BrushNet's branch model.
#[derive(Module, Debug)]
pub struct BrushNetModel {
    /// The attention-free UNet levels; its `conv_in` is the published `conv_in_condition`.
    trunk: Unet2DConditionModel,
    brushnet_down_blocks: Vec<Conv2d>,
    brushnet_mid_block: Conv2d,
    brushnet_up_blocks: Vec<Conv2d>,
    conditioning_channels: usize,
}

impl BrushNetModel {
    /// A branch with the given architecture and untrained weights.
    pub fn new(config: &BrushNetConfig, device: &Device) -> Self {
        let mut unet = config.unet.clone();
        unet.in_channels += config.conditioning_channels;
        Self::around(
            Unet2DConditionModel::new(&unet, device).without_head(),
            config.conditioning_channels,
            device,
        )
    }

    /// BrushNet's `from_unet`: the base UNet's levels without their transformers (resnets,
    /// samplers and time embedding copied), a `conv_in` reading the latents and the masked
    /// image's latents with the base `conv_in`'s weights and the mask with zeros, and every 1x1
    /// convolution zero, so that the untrained branch leaves the base UNet's output unchanged.
    /// The base must be a 4-channel (text-to-image) UNet.
    pub fn from_unet(unet: &Unet2DConditionModel) -> Result<Self> {
        if unet.in_channels() != 4 {
            return Err(ModelsError::Incompatible {
                what: "BrushNet from a UNet".into(),
                reason: format!(
                    "BrushNet extends 4-channel text-to-image UNets; this one takes {} channels",
                    unet.in_channels()
                ),
            });
        }
        let device = unet.device();
        let mut branch = Self::around(attention_free_trunk(unet, 5), 5, &device);
        let zero = |c: &Conv2d| zero_conv(c.weight.dims()[0], &device);
        branch.brushnet_down_blocks = branch.brushnet_down_blocks.iter().map(zero).collect();
        branch.brushnet_up_blocks = branch.brushnet_up_blocks.iter().map(zero).collect();
        branch.brushnet_mid_block = zero(&branch.brushnet_mid_block);
        Ok(branch)
    }

    /// The 1x1 convolutions around `trunk`: one per activation it hands out.
    fn around(trunk: Unet2DConditionModel, conditioning_channels: usize, device: &Device) -> Self {
        let (down, mid, up) = trunk.injection_channels();
        let convs = |chs: Vec<usize>| chs.into_iter().map(|c| conv(c, c, 1, device)).collect();
        Self {
            brushnet_down_blocks: convs(down),
            brushnet_mid_block: conv(mid, mid, 1, device),
            brushnet_up_blocks: convs(up),
            trunk,
            conditioning_channels,
        }
    }

    /// Loads a diffusers `brushnet/` folder (`config.json`, `diffusion_pytorch_model.safetensors`
    /// or its `variant`) with the published key layout.
    pub fn load(dir: impl AsRef<Path>, variant: Option<&str>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = BrushNetConfig::from_file(dir.join("config.json"))?;
        let weights = weights_file(dir, &["diffusion_pytorch_model"], variant)?;
        let remaps = [
            (r"^conv_in_condition\.", "trunk.conv_in."),
            (
                r"^(time_embedding|down_blocks|mid_block|up_blocks)\.",
                "trunk.$1.",
            ),
        ];
        load_safetensors(
            Self::new(&config, device),
            weights,
            &remaps,
            &[],
            FloatDType::F32,
        )
    }

    /// This branch with its weights and activations in `dtype` (see
    /// [`Unet2DConditionModel::with_dtype`]); its residuals come out in that dtype and the base
    /// UNet adds them in its own.
    pub fn with_dtype(self, dtype: FloatDType) -> Self {
        self.with_precision(dtype, dtype)
    }

    /// This branch with its weights stored in `dtype` and computing in f32 (see
    /// [`Unet2DConditionModel::with_weight_dtype`]).
    pub fn with_weight_dtype(self, dtype: FloatDType) -> Self {
        self.with_precision(dtype, FloatDType::F32)
    }

    /// The dtype its weights are stored in.
    pub fn dtype(&self) -> FloatDType {
        self.brushnet_mid_block.weight.val().dtype().into()
    }

    /// The dtype the activations are computed in (f32 unless [`with_dtype`](Self::with_dtype)
    /// changed it), and the dtype of the residuals.
    pub fn compute_dtype(&self) -> FloatDType {
        self.trunk.compute_dtype()
    }

    /// Channels of the conditioning after the latents (the masked image's latents and the mask).
    pub fn conditioning_channels(&self) -> usize {
        self.conditioning_channels
    }

    /// The branch's activations before the 1x1 convolutions, for `sample` (the noisy latents
    /// `[b, 4, h, w]`) and `condition` (`[b, 5, h, w]`: the masked image's latents and the mask,
    /// 1 = known) at `timesteps`; `context` is the base UNet's text embedding (the branch has no
    /// attention and does not read it; it only checks its shape).
    pub fn features(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
        condition: Tensor<4>,
    ) -> Result<UnetResiduals> {
        let (mut down, mut mid, mut up) = (vec![], vec![], vec![]);
        let mut record = |site: Site, x: Tensor<4>| -> Result<Tensor<4>> {
            match site {
                Site::Down => down.push(x.clone()),
                Site::Mid => mid.push(x.clone()),
                Site::Up => up.push(x.clone()),
            }
            Ok(x)
        };
        let input = Tensor::cat(vec![sample, condition], 1);
        self.trunk.walk(
            input,
            timesteps,
            context,
            Conditions::default(),
            &mut DefaultAttention::default(),
            &mut record,
        )?;
        Ok(UnetResiduals {
            down,
            mid: mid.pop().expect("the walk passes the mid block once"),
            up,
        })
    }

    /// The residuals for the base UNet ([`Unet2DConditionModel::forward_with_residuals`]): the
    /// features through their 1x1 convolutions, times `conditioning_scale` (1.0 by default in
    /// BrushNet's pipeline).
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
        condition: Tensor<4>,
        conditioning_scale: f64,
    ) -> Result<UnetResiduals> {
        let f = self.features(sample, timesteps, context, condition)?;
        let conv = |c: &Conv2d, x: Tensor<4>| {
            native::with_products(self.trunk.products(), || native::conv(c, x))
        };
        let apply = |convs: &[Conv2d], xs: Vec<Tensor<4>>| -> Vec<Tensor<4>> {
            convs.iter().zip(xs).map(|(c, x)| conv(c, x)).collect()
        };
        Ok(UnetResiduals {
            down: apply(&self.brushnet_down_blocks, f.down),
            mid: conv(&self.brushnet_mid_block, f.mid),
            up: apply(&self.brushnet_up_blocks, f.up),
        }
        .scaled(conditioning_scale))
    }
}

/// A 1x1 convolution with zero weights and bias.
fn zero_conv(c: usize, device: &Device) -> Conv2d {
    let mut z = conv(c, c, 1, device);
    z.weight = burn::module::Param::from_tensor(Tensor::zeros([c, c, 1, 1], device));
    z.bias = Some(burn::module::Param::from_tensor(Tensor::zeros([c], device)));
    z
}

impl Precision for BrushNetModel {
    fn compute_dtype_mut(&mut self) -> &mut FloatDType {
        &mut self.trunk.compute_dtype
    }
}
