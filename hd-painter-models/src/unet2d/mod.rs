//! diffusers' `UNet2DModel`: the unconditional pixel-space UNet of the published DDPM models
//! (`google/ddpm-ema-celebahq-256` and its siblings, which `RePaintPipeline` inpaints with),
//! built from its `config.json`.

mod config;

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, FloatDType, Tensor};

pub use config::{TimeProjection, Unet2DConfig, Unet2DLevel};

use crate::blocks::{
    AttentionSpec, Downsample, ResnetBlock, ResnetSpec, SpatialSelfAttention, Upsample, conv,
    group_norm, sinusoidal_features,
};
use crate::error::Result;
use crate::layout;
use crate::native;
use crate::pixel::{PixelDenoiser, add_class_embedding, check_pixel_input};
use crate::weights::{load_safetensors, weights_file};

/// `GaussianFourierProjection`'s frequencies (`time_proj.weight`).
#[derive(Module, Debug)]
struct FourierProjection {
    weight: Param<Tensor<1>>,
}

/// The timestep MLP: `linear_2(silu(linear_1(features)))`.
#[derive(Module, Debug)]
struct TimeMlp {
    linear_1: Linear,
    linear_2: Linear,
}

/// A down level (`DownBlock2D` / `AttnDownBlock2D`) or an up level (`UpBlock2D` /
/// `AttnUpBlock2D`): resnets, each followed by its attention in attention levels, then the
/// resampler of a level that is not the last.
#[derive(Module, Debug)]
struct Level {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialSelfAttention>,
    downsamplers: Vec<Downsample>,
    upsamplers: Vec<Upsample>,
}

/// `UNetMidBlock2D`: resnet, optional attention, resnet.
#[derive(Module, Debug)]
struct MidBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialSelfAttention>,
}

/// diffusers' `UNet2DModel`.
#[derive(Module, Debug)]
pub struct Unet2DModel {
    conv_in: Conv2d,
    time_proj: Option<FourierProjection>,
    time_embedding: TimeMlp,
    class_embedding: Option<Embedding>,
    down_blocks: Vec<Level>,
    mid_block: Option<MidBlock>,
    up_blocks: Vec<Level>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    #[module(skip)]
    config: Unet2DConfig,
}

impl Unet2DModel {
    /// A model with the given architecture and untrained weights.
    pub fn new(cfg: &Unet2DConfig, device: &Device) -> Self {
        let ch: Vec<usize> = cfg.levels.iter().map(|l| l.channels).collect();
        let n = ch.len();
        let resnet = |cin, cout, output_scale| {
            let spec = ResnetSpec {
                scale_shift: cfg.scale_shift,
                output_scale,
                ..ResnetSpec::plain(
                    cin,
                    cout,
                    Some(cfg.time_embedding_dim),
                    cfg.norm_num_groups,
                    cfg.norm_eps,
                )
            };
            ResnetBlock::new(&spec, device)
        };
        let attention = |channels, groups, rescale| {
            let spec = AttentionSpec {
                channels,
                heads: cfg.heads(channels),
                groups,
                eps: cfg.norm_eps,
                rescale,
            };
            SpatialSelfAttention::with_spec(&spec, device)
        };
        let attentions = |with: bool, count: usize, c: usize| match with {
            true => (0..count)
                .map(|_| attention(c, Some(cfg.norm_num_groups), 1.0))
                .collect(),
            false => vec![],
        };
        let down_blocks = (0..n)
            .map(|i| Level {
                resnets: (0..cfg.layers_per_block)
                    .map(|j| {
                        resnet(
                            if j == 0 {
                                ch[i.saturating_sub(1)]
                            } else {
                                ch[i]
                            },
                            ch[i],
                            1.0,
                        )
                    })
                    .collect(),
                attentions: attentions(cfg.levels[i].down_attention, cfg.layers_per_block, ch[i]),
                downsamplers: match i + 1 < n {
                    true => vec![Downsample::new(ch[i], cfg.downsample_padding == 1, device)],
                    false => vec![],
                },
                upsamplers: vec![],
            })
            .collect();
        let up_blocks = (0..n)
            .map(|i| {
                let (level, below) = (n - 1 - i, (n - 1 - i).saturating_sub(1));
                let prev = ch[(level + 1).min(n - 1)];
                Level {
                    resnets: (0..=cfg.layers_per_block)
                        .map(|j| {
                            let skip = if j == cfg.layers_per_block {
                                ch[below]
                            } else {
                                ch[level]
                            };
                            let cin = if j == 0 { prev } else { ch[level] };
                            resnet(cin + skip, ch[level], 1.0)
                        })
                        .collect(),
                    attentions: attentions(
                        cfg.levels[level].up_attention,
                        cfg.layers_per_block + 1,
                        ch[level],
                    ),
                    downsamplers: vec![],
                    upsamplers: match level > 0 {
                        true => vec![Upsample::new(ch[level], device)],
                        false => vec![],
                    },
                }
            })
            .collect();
        let scale = cfg.mid_block_scale_factor;
        let mid_block = cfg.mid_block.map(|with_attention| MidBlock {
            resnets: vec![
                resnet(ch[n - 1], ch[n - 1], scale),
                resnet(ch[n - 1], ch[n - 1], scale),
            ],
            attentions: match with_attention {
                true => vec![attention(ch[n - 1], cfg.mid_attention_groups, scale)],
                false => vec![],
            },
        });
        let time_input = match cfg.time_projection {
            TimeProjection::Positional { .. } => ch[0],
            TimeProjection::Fourier => 2 * ch[0],
        };
        Self {
            conv_in: conv(cfg.in_channels, ch[0], 3, device),
            time_proj: matches!(cfg.time_projection, TimeProjection::Fourier).then(|| {
                FourierProjection {
                    weight: Param::from_tensor(Tensor::zeros([ch[0]], device)),
                }
            }),
            time_embedding: TimeMlp {
                linear_1: LinearConfig::new(time_input, cfg.time_embedding_dim).init(device),
                linear_2: LinearConfig::new(cfg.time_embedding_dim, cfg.time_embedding_dim)
                    .init(device),
            },
            class_embedding: cfg
                .num_class_embeds
                .map(|c| EmbeddingConfig::new(c, cfg.time_embedding_dim).init(device)),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(cfg.norm_num_groups, ch[0], cfg.norm_eps, device),
            conv_out: conv(ch[0], cfg.out_channels, 3, device),
            config: cfg.clone(),
        }
    }

    /// Loads a diffusers `unet/` folder of class `UNet2DModel`: `config.json` and
    /// `diffusion_pytorch_model.safetensors` (or its `variant`), any float type. The 2022 DDPM
    /// files' attention names (`query`, `key`, `value`, `proj_attn`) load as diffusers renames
    /// them.
    pub fn load(dir: impl AsRef<Path>, variant: Option<&str>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = Unet2DConfig::from_file(dir.join("config.json"))?;
        let weights = weights_file(dir, &["diffusion_pytorch_model"], variant)?;
        let mut remaps = vec![(r"\.to_out\.0\.", ".to_out.")];
        remaps.extend(layout::remaps(&layout::UNET_2D));
        load_safetensors(
            Self::new(&config, device),
            weights,
            &remaps,
            &[],
            FloatDType::F32,
        )
    }

    /// The architecture.
    pub fn config(&self) -> &Unet2DConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.conv_in.weight.device()
    }

    /// Predicts the noise (and, for `out_channels = 2 x in_channels`, the variance values) for
    /// `sample` at `timesteps` (one per batch item), with `class_labels` for models with a
    /// class embedding.
    ///
    /// # Shapes
    /// - `sample`: `[batch, in_channels, h, w]`, `h` and `w` multiples of
    ///   [`downscale`](Unet2DConfig::downscale)
    /// - output: `[batch, out_channels, h, w]`
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        class_labels: Option<&[i64]>,
    ) -> Result<Tensor<4>> {
        let cfg = &self.config;
        check_pixel_input(
            &sample,
            timesteps,
            cfg.in_channels,
            cfg.downscale(),
            "UNet2DModel",
        )?;
        let sample = match cfg.center_input_sample {
            true => sample * 2.0 - 1.0,
            false => sample,
        };
        let emb = self.embedding(timesteps, class_labels, &sample.device())?;
        let mut x = native::conv(&self.conv_in, sample);
        let mut skips = vec![x.clone()];
        for level in &self.down_blocks {
            for (i, resnet) in level.resnets.iter().enumerate() {
                x = resnet.forward(x, Some(&emb));
                if let Some(attention) = level.attentions.get(i) {
                    x = attention.forward(x);
                }
                skips.push(x.clone());
            }
            for down in &level.downsamplers {
                x = down.forward(x);
                skips.push(x.clone());
            }
        }
        if let Some(mid) = &self.mid_block {
            x = mid.resnets[0].forward(x, Some(&emb));
            if let Some(attention) = mid.attentions.first() {
                x = attention.forward(x);
            }
            x = mid.resnets[1].forward(x, Some(&emb));
        }
        for level in &self.up_blocks {
            for (i, resnet) in level.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up resnet");
                x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(&emb));
                if let Some(attention) = level.attentions.get(i) {
                    x = attention.forward(x);
                }
            }
            for up in &level.upsamplers {
                x = up.forward(x);
            }
        }
        let out = native::conv(
            &self.conv_out,
            native::group_norm_silu(&self.conv_norm_out, x),
        );
        Ok(match cfg.time_projection {
            TimeProjection::Fourier => {
                let b = timesteps.len();
                let sigma = Tensor::<1>::from_floats(timesteps, &out.device());
                out / sigma.reshape([b, 1, 1, 1])
            }
            TimeProjection::Positional { .. } => out,
        })
    }

    /// The time embedding of `timesteps` plus the class embedding of `class_labels`.
    fn embedding(
        &self,
        timesteps: &[f32],
        class_labels: Option<&[i64]>,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let ch0 = self.config.levels[0].channels;
        let b = timesteps.len();
        let features = match (&self.config.time_projection, &self.time_proj) {
            (
                TimeProjection::Positional {
                    flip_sin_to_cos,
                    freq_shift,
                },
                _,
            ) => sinusoidal_features(timesteps, ch0, *flip_sin_to_cos, *freq_shift, device),
            (TimeProjection::Fourier, Some(proj)) => {
                let log_t: Vec<f32> = timesteps.iter().map(|t| t.ln()).collect();
                let t = Tensor::<1>::from_floats(log_t.as_slice(), device).reshape([b, 1]);
                let w = proj.weight.val().reshape([1, ch0]);
                let x = t * w * (2.0 * std::f64::consts::PI);
                Tensor::cat(vec![x.clone().sin(), x.cos()], 1)
            }
            (TimeProjection::Fourier, None) => unreachable!("built with its projection"),
        };
        let mlp = &self.time_embedding;
        let emb = mlp.linear_2.forward(silu(mlp.linear_1.forward(features)));
        let embedding = self.class_embedding.as_ref();
        add_class_embedding(emb, embedding, class_labels, "UNet2DModel")
    }
}

impl PixelDenoiser for Unet2DModel {
    fn predict(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        class_labels: Option<&[i64]>,
    ) -> Result<Tensor<4>> {
        self.forward(sample, timesteps, class_labels)
    }

    fn image_channels(&self) -> usize {
        self.config.in_channels
    }

    fn output_channels(&self) -> usize {
        self.config.out_channels
    }

    fn sample_size(&self) -> Option<usize> {
        self.config.sample_size
    }
}
