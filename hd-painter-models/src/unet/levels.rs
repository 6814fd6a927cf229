//! The UNet's blocks, each with its own `forward`: the time embedding, the down levels
//! (`CrossAttnDownBlock2D` / `DownBlock2D`), the mid block (`UNetMidBlock2DCrossAttn`, or two
//! resnets for BrushNet's branch) and the up levels (`CrossAttnUpBlock2D` / `UpBlock2D`).

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{FloatDType, Tensor};

use burn::nn::LinearConfig;
use burn::tensor::Device;

use crate::blocks::{Downsample, ResnetBlock, ResnetSpec, conv};
use crate::error::Result;
use crate::native;
use crate::processor::AttentionProcessor;

use super::residuals::Site;
use super::transformer::SpatialTransformer;
use super::{LevelConfig, UnetConfig};

/// A resnet of `cfg`'s UNet from `cin` to `cout` channels, with the time embedding.
fn resnet(cfg: &UnetConfig, cin: usize, cout: usize, device: &Device) -> ResnetBlock {
    let temb = Some(4 * cfg.levels[0].channels);
    let spec = ResnetSpec::plain(cin, cout, temb, cfg.norm_num_groups, cfg.norm_eps);
    ResnetBlock::new(&spec, device)
}

/// Where a level sits: `down_blocks.{index}` or `up_blocks.{index}`, and the config's
/// per-level settings for it (in down order, the up levels mirrored).
#[derive(Clone, Copy)]
struct Place<'a> {
    cfg: &'a UnetConfig,
    up: bool,
    index: usize,
}

impl Place<'_> {
    /// The index into the config's per-level (down-order) lists.
    fn level(&self) -> usize {
        match self.up {
            true => self.cfg.levels.len() - 1 - self.index,
            false => self.index,
        }
    }

    /// The level's `n` transformers, or none in a level without cross-attention.
    fn transformers(&self, n: usize, device: &Device) -> Vec<SpatialTransformer> {
        let (cfg, level) = (self.cfg, self.cfg.levels[self.level()]);
        let (cross, name) = match self.up {
            true => (level.up_attention, "up_blocks"),
            false => (level.down_attention, "down_blocks"),
        };
        if !cross {
            return vec![];
        }
        (0..n)
            .map(|j| {
                let path = format!("{name}.{}.attentions.{j}", self.index);
                SpatialTransformer::new(&level, cfg, &path, device)
            })
            .collect()
    }
}

/// What every block of one UNet call sees besides its input: the time (and class) embedding,
/// the text context, the timesteps (PAIntA and RASG read them through the processor), the
/// attention processor and BrushNet's tap, which gets the activation at each injection point
/// and returns what continues.
pub(super) struct Call<'a> {
    pub(super) emb: &'a Tensor<2>,
    pub(super) context: &'a Tensor<3>,
    pub(super) timesteps: &'a [f32],
    pub(super) processor: &'a mut dyn AttentionProcessor,
    pub(super) tap: &'a mut dyn FnMut(Site, Tensor<4>) -> Result<Tensor<4>>,
}

impl Call<'_> {
    /// A transformer over `x`, if the block has one at this position.
    fn attend(&mut self, t: Option<&SpatialTransformer>, x: Tensor<4>) -> Tensor<4> {
        match t {
            Some(t) => t.forward(x, self.context, self.timesteps, &mut *self.processor),
            None => x,
        }
    }

    /// The hidden state and the pending skip connections without autodiff when the processor
    /// asks to stop recording gradients after `block` (the values are unchanged).
    pub(super) fn stop_gradient_if(
        &mut self,
        block: &str,
        x: Tensor<4>,
        skips: &mut [Tensor<4>],
    ) -> Tensor<4> {
        if !self.processor.stop_gradient_after(block) {
            return x;
        }
        for skip in skips.iter_mut() {
            *skip = skip.clone().inner();
        }
        x.inner()
    }
}

/// The timestep MLP: `linear_2(silu(linear_1(features)))`.
#[derive(Module, Debug)]
pub(super) struct TimeEmbedding {
    pub(super) linear_1: Linear,
    pub(super) linear_2: Linear,
}

impl TimeEmbedding {
    /// `cfg`'s time embedding, untrained.
    pub(super) fn new(cfg: &UnetConfig, device: &Device) -> Self {
        let c = cfg.levels[0].channels;
        Self::with_input(c, 4 * c, device)
    }

    /// An untrained MLP from `input` features to the `temb`-wide embedding (SDXL's
    /// `add_embedding` takes the pooled text and the time ids' sinusoids).
    pub(super) fn with_input(input: usize, temb: usize, device: &Device) -> Self {
        Self {
            linear_1: LinearConfig::new(input, temb).init(device),
            linear_2: LinearConfig::new(temb, temb).init(device),
        }
    }

    /// The embedding of sinusoidal `features` `[b, time_channels]`, computed in `dtype`.
    pub(super) fn forward(&self, features: Tensor<2>, dtype: FloatDType) -> Tensor<2> {
        let time = native::params_in(self, dtype.into());
        time.linear_2
            .forward(silu(time.linear_1.forward(features.cast(dtype))))
    }
}

/// A down level: resnets, each followed by its transformer in cross-attention levels, then an
/// optional downsampler.
#[derive(Module, Debug)]
pub(super) struct DownLevel {
    pub(super) resnets: Vec<ResnetBlock>,
    pub(super) attentions: Vec<SpatialTransformer>,
    pub(super) downsamplers: Vec<Downsample>,
}

impl DownLevel {
    /// Down level `index` of `cfg`'s UNet, untrained; its first resnet takes `cin` channels.
    pub(super) fn new(cfg: &UnetConfig, index: usize, cin: usize, device: &Device) -> Self {
        let out = cfg.levels[index].channels;
        let n = cfg.layers_per_block;
        let place = Place {
            cfg,
            up: false,
            index,
        };
        let last = index + 1 == cfg.levels.len();
        Self {
            resnets: (0..n)
                .map(|j| resnet(cfg, if j == 0 { cin } else { out }, out, device))
                .collect(),
            attentions: place.transformers(n, device),
            downsamplers: match last {
                true => vec![],
                false => vec![Downsample::new(out, true, device)],
            },
        }
    }

    /// The level's output; every resnet's and downsampler's output is tapped and pushed to
    /// `skips`.
    pub(super) fn forward(
        &self,
        mut x: Tensor<4>,
        call: &mut Call<'_>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Result<Tensor<4>> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(call.emb));
            x = call.attend(self.attentions.get(j), x);
            x = (call.tap)(Site::Down, x)?;
            skips.push(x.clone());
        }
        for d in &self.downsamplers {
            x = (call.tap)(Site::Down, d.forward(x))?;
            skips.push(x.clone());
        }
        Ok(x)
    }
}

/// The mid block: resnet, transformer (absent in BrushNet's branch), resnet.
#[derive(Module, Debug)]
pub(super) struct MidBlock {
    pub(super) resnets: Vec<ResnetBlock>,
    pub(super) attentions: Vec<SpatialTransformer>,
}

impl MidBlock {
    /// `cfg`'s mid block, untrained.
    pub(super) fn new(cfg: &UnetConfig, device: &Device) -> Self {
        let coarsest = cfg.levels[cfg.levels.len() - 1];
        let c = coarsest.channels;
        // `UNetMidBlock2DCrossAttn` has no `only_cross_attention`.
        let level = LevelConfig {
            only_cross_attention: false,
            ..coarsest
        };
        let attentions = match cfg.mid_block_attention {
            true => vec![SpatialTransformer::new(
                &level,
                cfg,
                "mid_block.attentions.0",
                device,
            )],
            false => vec![],
        };
        Self {
            resnets: vec![resnet(cfg, c, c, device), resnet(cfg, c, c, device)],
            attentions,
        }
    }

    /// The block's output, tapped.
    pub(super) fn forward(&self, x: Tensor<4>, call: &mut Call<'_>) -> Result<Tensor<4>> {
        let x = self.resnets[0].forward(x, Some(call.emb));
        let x = call.attend(self.attentions.first(), x);
        let x = self.resnets[1].forward(x, Some(call.emb));
        (call.tap)(Site::Mid, x)
    }
}

/// An up level: resnets over the concatenated skip connections, their transformers, and an
/// optional upsampler.
#[derive(Module, Debug)]
pub(super) struct UpLevel {
    pub(super) resnets: Vec<ResnetBlock>,
    pub(super) attentions: Vec<SpatialTransformer>,
    pub(super) upsamplers: Vec<UpsampleConv>,
}

impl UpLevel {
    /// Up level `index` of `cfg`'s UNet, untrained; its first resnet takes `cin` channels plus
    /// its skip connection.
    pub(super) fn new(cfg: &UnetConfig, index: usize, cin: usize, device: &Device) -> Self {
        let place = Place {
            cfg,
            up: true,
            index,
        };
        let ch = &cfg.block_out_channels();
        let out = ch[place.level()];
        // The last resnet's skip comes from the level below (the first down level's output
        // for the last up level).
        let below = ch[place.level().saturating_sub(1)];
        let n = cfg.layers_per_block + 1;
        let resnets = (0..n)
            .map(|j| {
                let skip = if j == n - 1 { below } else { out };
                let cin = if j == 0 { cin } else { out };
                resnet(cfg, cin + skip, out, device)
            })
            .collect();
        Self {
            resnets,
            attentions: place.transformers(n, device),
            upsamplers: match index + 1 == ch.len() {
                true => vec![],
                false => vec![UpsampleConv {
                    conv: conv(out, out, 3, device),
                }],
            },
        }
    }

    /// The level's output, taking one skip connection per resnet from the end of `skips`; every
    /// resnet's and upsampler's output is tapped.
    pub(super) fn forward(
        &self,
        mut x: Tensor<4>,
        call: &mut Call<'_>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Result<Tensor<4>> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip per up resnet");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(call.emb));
            x = call.attend(self.attentions.get(j), x);
            x = (call.tap)(Site::Up, x)?;
        }
        for u in &self.upsamplers {
            let [_, _, th, tw] = skips.last().expect("a skip below every upsampler").dims();
            x = (call.tap)(Site::Up, u.forward(x, [th, tw]))?;
        }
        Ok(x)
    }
}

/// `Upsample2D` that resizes to the skip connection's size (diffusers' `upsample_size`), which
/// is exactly x2 when the input size is divisible by the UNet's total downsampling.
#[derive(Module, Debug)]
pub(super) struct UpsampleConv {
    pub(super) conv: Conv2d,
}

impl UpsampleConv {
    /// Nearest resize of `x` to `size` (`[h, w]`), then the convolution.
    fn forward(&self, x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        let options = InterpolateOptions::new(InterpolateMode::Nearest)
            .with_align_corners(false)
            .with_output_size(size);
        native::conv(&self.conv, interpolate(x, options))
    }
}
