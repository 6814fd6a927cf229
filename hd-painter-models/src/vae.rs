//! diffusers' `AutoencoderKL`: the SD VAE (downsampling by 8) and the x4 upscaler's (by 4),
//! built from its `config.json`.

use std::path::Path;

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use serde_json::Value;

use crate::blocks::{Downsample, ResnetBlock, ResnetSpec, Upsample, VaeMidBlock, conv, group_norm};
use crate::config::ConfigFile;
use crate::error::{ModelsError, Result};
use crate::layout;
use crate::native::{self, Precision};
use crate::single_file::Checkpoint;
use crate::weights::{WeightSource, load_safetensors, weights_file};

/// diffusers' fixed epsilon of the VAE's group norms.
const VAE_NORM_EPS: f64 = 1e-6;

/// The architecture of an `AutoencoderKL` (the keys of its `config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct VaeConfig {
    /// Image channels in (3).
    pub in_channels: usize,
    /// Image channels out (3).
    pub out_channels: usize,
    /// Channels of each resolution level; the image is downsampled `2^(levels - 1)` times.
    pub block_out_channels: Vec<usize>,
    /// Resnet blocks per encoder level (the decoder has one more).
    pub layers_per_block: usize,
    /// Latent channels (4).
    pub latent_channels: usize,
    /// Groups of every group norm.
    pub norm_num_groups: usize,
    /// The factor pipelines multiply latents by (0.18215 for SD, 0.08333 for the x4 upscaler).
    pub scaling_factor: f64,
    /// Whether the mid-blocks have their self-attention.
    pub mid_block_add_attention: bool,
    /// `force_upcast`: the VAE overflows in f16 and runs in f32 when the other models do (SDXL's
    /// published VAE; the fp16-fix VAE says `false`). diffusers' SDXL pipelines honour it.
    pub force_upcast: bool,
}

impl VaeConfig {
    /// Reads a diffusers `vae/config.json`; keys the file lacks (SD 1.x's 2022 configs have no
    /// `scaling_factor`) take `AutoencoderKL`'s defaults.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let f = Self::config_file(path.as_ref())?;
        let down = f.str_list("down_block_types", &["DownEncoderBlock2D"])?;
        f.str_list("up_block_types", &["UpDecoderBlock2D"])?;
        f.one_of("act_fn", &["silu"])?;
        // Variants hd-painter does not implement must not load as something else.
        f.require_default("shift_factor", &Value::Null)?;
        f.require_default("latents_mean", &Value::Null)?;
        f.require_default("latents_std", &Value::Null)?;
        f.require_default("use_quant_conv", &Value::Bool(true))?;
        f.require_default("use_post_quant_conv", &Value::Bool(true))?;
        let block_out_channels = f.usize_list("block_out_channels")?;
        if down.len() != block_out_channels.len() {
            return Err(f.unsupported("down_block_types", "one entry per block_out_channels entry"));
        }
        Ok(Self {
            in_channels: f.usize("in_channels")?,
            out_channels: f.usize("out_channels")?,
            norm_num_groups: f.groups_dividing(&block_out_channels)?,
            block_out_channels,
            layers_per_block: f.usize("layers_per_block")?,
            latent_channels: f.usize("latent_channels")?,
            scaling_factor: f.f64_or("scaling_factor", 0.18215)?,
            mid_block_add_attention: f.bool_or("mid_block_add_attention", true)?,
            force_upcast: f.bool_or("force_upcast", true)?,
        })
    }

    /// `config.json` with `AutoencoderKL`'s constructor defaults for the keys it lacks.
    pub(crate) fn config_file(path: &Path) -> Result<ConfigFile> {
        let defaults = serde_json::json!({
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D"],
            "block_out_channels": [64],
            "layers_per_block": 1,
            "act_fn": "silu",
            "latent_channels": 4,
            "norm_num_groups": 32,
            "scaling_factor": 0.18215,
        });
        Ok(ConfigFile::open(path)?.with_defaults(&defaults))
    }

    /// How many times the image is downsampled per side (8 for SD, 4 for the x4 upscaler).
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}

/// The posterior `N(mean, exp(logvar))` that the encoder predicts for each latent.
#[derive(Clone, Debug)]
pub struct DiagonalGaussian {
    /// The mean, `[batch, latent, h, w]` (what the reference pipelines use as the latent).
    pub mean: Tensor<4>,
    /// The log-variance, clamped to `[-30, 20]` as diffusers does.
    pub logvar: Tensor<4>,
}

impl DiagonalGaussian {
    /// `mean + exp(logvar / 2) * noise`, for standard-normal `noise` of the same shape (from a
    /// seeded host generator, for reproducibility across backends).
    pub fn sample(&self, noise: Tensor<4>) -> Tensor<4> {
        self.mean.clone() + (self.logvar.clone() * 0.5).exp() * noise
    }

    /// [`sample`](Self::sample) with host-generated noise, one seed per batch item
    /// ([`seeded_noise`](hd_painter_core::seeded_noise)): the same seeds give the same latents
    /// on every backend.
    pub fn sample_seeded(&self, seeds: &[u64]) -> Result<Tensor<4>> {
        let [b, c, h, w] = self.mean.dims();
        if seeds.len() != b {
            return Err(ModelsError::Core(
                hd_painter_core::CoreError::InvalidParameter {
                    name: "posterior sample seeds",
                    value: seeds.len().to_string(),
                    expected: "one seed per batch item",
                },
            ));
        }
        Ok(self.sample(hd_painter_core::seeded_noise(
            seeds,
            [c, h, w],
            &self.mean.device(),
        )))
    }
}

/// diffusers' `AutoencoderKL`.
#[derive(Module, Debug)]
pub struct AutoencoderKl {
    encoder: Encoder,
    quant_conv: Conv2d,
    post_quant_conv: Conv2d,
    decoder: Decoder,
    scaling_factor: f64,
    #[module(skip)]
    force_upcast: bool,
    downscale: usize,
    block_out_channels: Vec<usize>,
    /// What the activations are computed in (see
    /// [`Unet2DConditionModel::compute_dtype`](crate::Unet2DConditionModel::compute_dtype)).
    #[module(skip)]
    compute_dtype: FloatDType,
}

#[derive(Module, Debug)]
struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<EncoderLevel>,
    mid_block: VaeMidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

#[derive(Module, Debug)]
struct EncoderLevel {
    resnets: Vec<ResnetBlock>,
    downsamplers: Vec<Downsample>,
}

#[derive(Module, Debug)]
struct Decoder {
    conv_in: Conv2d,
    mid_block: VaeMidBlock,
    up_blocks: Vec<DecoderLevel>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

#[derive(Module, Debug)]
struct DecoderLevel {
    resnets: Vec<ResnetBlock>,
    upsamplers: Vec<Upsample>,
}

impl AutoencoderKl {
    /// A VAE with the given architecture and untrained weights.
    pub fn new(c: &VaeConfig, device: &Device) -> Self {
        let (groups, eps) = (c.norm_num_groups, VAE_NORM_EPS);
        let channels = &c.block_out_channels;
        let last = *channels.last().expect("validated non-empty");
        let resnet =
            |cin, cout| ResnetBlock::new(&ResnetSpec::plain(cin, cout, None, groups, eps), device);
        let conv1 = |cin, cout| Conv2dConfig::new([cin, cout], [1, 1]).init(device);

        let mut prev = channels[0];
        let down_blocks = channels
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let resnets = (0..c.layers_per_block)
                    .map(|j| resnet(if j == 0 { prev } else { out }, out))
                    .collect();
                prev = out;
                let downsamplers = if i + 1 < channels.len() {
                    vec![Downsample::new(out, false, device)]
                } else {
                    vec![]
                };
                EncoderLevel {
                    resnets,
                    downsamplers,
                }
            })
            .collect();
        let encoder = Encoder {
            conv_in: conv(c.in_channels, channels[0], 3, device),
            down_blocks,
            mid_block: VaeMidBlock::new(last, groups, eps, c.mid_block_add_attention, device),
            conv_norm_out: group_norm(groups, last, eps, device),
            conv_out: conv(last, 2 * c.latent_channels, 3, device),
        };

        let mut prev = last;
        let up_blocks = channels
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &out)| {
                let resnets = (0..=c.layers_per_block)
                    .map(|j| resnet(if j == 0 { prev } else { out }, out))
                    .collect();
                prev = out;
                let upsamplers = if i + 1 < channels.len() {
                    vec![Upsample::new(out, device)]
                } else {
                    vec![]
                };
                DecoderLevel {
                    resnets,
                    upsamplers,
                }
            })
            .collect();
        let decoder = Decoder {
            conv_in: conv(c.latent_channels, last, 3, device),
            mid_block: VaeMidBlock::new(last, groups, eps, c.mid_block_add_attention, device),
            up_blocks,
            conv_norm_out: group_norm(groups, channels[0], eps, device),
            conv_out: conv(channels[0], c.out_channels, 3, device),
        };
        Self {
            encoder,
            quant_conv: conv1(2 * c.latent_channels, 2 * c.latent_channels),
            post_quant_conv: conv1(c.latent_channels, c.latent_channels),
            decoder,
            scaling_factor: c.scaling_factor,
            force_upcast: c.force_upcast,
            downscale: c.downscale(),
            block_out_channels: c.block_out_channels.clone(),
            compute_dtype: FloatDType::F32,
        }
    }

    /// Loads a diffusers `vae/` folder: `config.json` and `diffusion_pytorch_model.safetensors`
    /// (or its `variant`, e.g. `fp16`), any float type.
    pub fn load(dir: impl AsRef<Path>, variant: Option<&str>, device: &Device) -> Result<Self> {
        Self::load_with_weight_dtype(dir, variant, FloatDType::F32, device)
    }

    /// [`load`](Self::load) then [`with_weight_dtype`](Self::with_weight_dtype)`(dtype)`,
    /// without the f32 weights ever held: each tensor is converted to `dtype` as it is read, so
    /// loading peaks at the stored model (half the f32 size for f16 / bf16).
    pub fn load_with_weight_dtype(
        dir: impl AsRef<Path>,
        variant: Option<&str>,
        dtype: FloatDType,
        device: &Device,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let config = VaeConfig::from_file(dir.join("config.json"))?;
        let weights = weights_file(dir, &["diffusion_pytorch_model"], variant)?;
        Self::from_weights(&config, weights, dtype, device).map(|m| m.stored_as(dtype))
    }

    /// Loads an original-layout VAE from one `.safetensors` file, as diffusers'
    /// `AutoencoderKL.from_single_file` reads it: a VAE-only file (`encoder.*`, `decoder.*`,
    /// `quant_conv.*`, ..., as the published `vae-ft-mse-840000-ema-pruned` is laid out) or the
    /// `first_stage_model.` / `vae.` part of a whole checkpoint. `config_dir` is a diffusers
    /// `vae/` folder holding the `config.json` (no weights needed). Swap it into a pipeline
    /// through [`StableDiffusionModels::vae`](crate::StableDiffusionModels::vae).
    pub fn load_single_file(
        checkpoint: impl AsRef<Path>,
        config_dir: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self> {
        let ckpt = Checkpoint::open(checkpoint.as_ref())?;
        Self::from_checkpoint(&ckpt, config_dir.as_ref(), device)
    }

    /// The VAE of an opened original-layout checkpoint, with the `config.json` of `config_dir`.
    pub(crate) fn from_checkpoint(
        ckpt: &Checkpoint,
        config_dir: &Path,
        device: &Device,
    ) -> Result<Self> {
        let config = VaeConfig::from_file(config_dir.join("config.json"))?;
        let weights = ckpt.vae(config.block_out_channels.len())?;
        Self::from_weights(&config, weights, FloatDType::F32, device)
    }

    /// Builds the model for `config` and loads diffusers-layout weights into it.
    pub(crate) fn from_weights(
        config: &VaeConfig,
        weights: WeightSource,
        stored: FloatDType,
        device: &Device,
    ) -> Result<Self> {
        let mut remaps = vec![(r"\.to_out\.0\.", ".to_out.")];
        remaps.extend(layout::remaps(&layout::VAE));
        load_safetensors(Self::new(config, device), weights, &remaps, &[], stored)
    }

    /// Bounds the attention score matrix of both mid-blocks to `budget` elements at a time
    /// (default [`DEFAULT_SCORE_BUDGET`](crate::DEFAULT_SCORE_BUDGET), 256 MiB); the results
    /// do not change.
    pub fn with_score_budget(mut self, budget: usize) -> Self {
        for mid in [&mut self.encoder.mid_block, &mut self.decoder.mid_block] {
            for attention in &mut mid.attentions {
                attention.score_budget = budget;
            }
        }
        self
    }

    /// This model with its weights and activations in `dtype` (see
    /// [`Unet2DConditionModel::with_dtype`](crate::Unet2DConditionModel::with_dtype)). Images
    /// and latents are cast to it on the way in and the results back to f32.
    pub fn with_dtype(self, dtype: FloatDType) -> Self {
        self.with_precision(dtype, dtype)
    }

    /// This model with its weights stored in `dtype` and computing in f32 (see
    /// [`Unet2DConditionModel::with_weight_dtype`](crate::Unet2DConditionModel::with_weight_dtype)).
    pub fn with_weight_dtype(self, dtype: FloatDType) -> Self {
        self.with_precision(dtype, FloatDType::F32)
    }

    /// The dtype of the weights (f32 unless [`with_dtype`](Self::with_dtype) or
    /// [`with_weight_dtype`](Self::with_weight_dtype) changed it).
    pub fn dtype(&self) -> FloatDType {
        self.post_quant_conv.weight.val().dtype().into()
    }

    /// The dtype the activations are computed in (f32 unless [`with_dtype`](Self::with_dtype)
    /// changed it).
    pub fn compute_dtype(&self) -> FloatDType {
        self.compute_dtype
    }

    /// The factor pipelines multiply latents by.
    pub fn scaling_factor(&self) -> f64 {
        self.scaling_factor
    }

    /// The config's `force_upcast` ([`VaeConfig::force_upcast`]).
    pub fn force_upcast(&self) -> bool {
        self.force_upcast
    }

    /// The number of latent channels (4).
    pub fn latent_channels(&self) -> usize {
        self.post_quant_conv.weight.dims()[0]
    }

    /// The per-side downsampling factor (8 or 4).
    pub fn downscale(&self) -> usize {
        self.downscale
    }

    /// The channels of each level, from full resolution down (the config's
    /// `block_out_channels`): what sizes its activations.
    pub fn block_out_channels(&self) -> &[usize] {
        &self.block_out_channels
    }

    /// The posterior of images `[batch, 3, H, W]` in `[-1, 1]` (H and W multiples of
    /// [`downscale`](Self::downscale)); latents are unscaled.
    pub fn encode(&self, images: Tensor<4>) -> Result<DiagonalGaussian> {
        self.check_images(&images)?;
        Ok(DiagonalGaussian::from_moments(self.moments(images)))
    }

    /// [`encode`](Self::encode) in tiles (see [`VaeTiling`]), as diffusers' `enable_tiling()`
    /// encodes: plain when the images fit in one tile.
    pub fn encode_tiled(&self, images: Tensor<4>, tiling: VaeTiling) -> Result<DiagonalGaussian> {
        self.check_images(&images)?;
        let tile = tiling.checked(self.downscale)?;
        let [_, _, h, w] = images.dims();
        let moments = if h.max(w) > tile {
            tiled(images, tile, tile / self.downscale, |t| self.moments(t))
        } else {
            self.moments(images)
        };
        Ok(DiagonalGaussian::from_moments(moments))
    }

    /// Images `[batch, 3, H, W]` (nominally in `[-1, 1]`) from unscaled latents.
    pub fn decode(&self, latents: Tensor<4>) -> Result<Tensor<4>> {
        self.check_latents(&latents)?;
        Ok(self.decoded(latents))
    }

    /// [`decode`](Self::decode) in tiles (see [`VaeTiling`]), as diffusers' `enable_tiling()`
    /// decodes: plain when the latents fit in one tile.
    pub fn decode_tiled(&self, latents: Tensor<4>, tiling: VaeTiling) -> Result<Tensor<4>> {
        self.check_latents(&latents)?;
        let tile = tiling.checked(self.downscale)? / self.downscale;
        let [_, _, h, w] = latents.dims();
        Ok(if h.max(w) > tile {
            tiled(latents, tile, tile * self.downscale, |t| self.decoded(t))
        } else {
            self.decoded(latents)
        })
    }

    fn check_images(&self, images: &Tensor<4>) -> Result<()> {
        check_input(
            images,
            self.encoder.conv_in.weight.dims()[1],
            self.downscale,
            "VAE encoder images",
        )
    }

    fn check_latents(&self, latents: &Tensor<4>) -> Result<()> {
        check_input(
            latents,
            self.post_quant_conv.weight.dims()[1],
            1,
            "VAE decoder latents",
        )
    }

    /// The encoder and `quant_conv`: mean and log-variance, concatenated on the channels.
    fn moments(&self, images: Tensor<4>) -> Tensor<4> {
        let products = native::products_of(self.dtype(), self.compute_dtype);
        native::with_products(products, || self.run_encoder(images))
    }

    fn run_encoder(&self, images: Tensor<4>) -> Tensor<4> {
        let e = &self.encoder;
        let mut x = native::conv(&e.conv_in, images.cast(self.compute_dtype));
        for level in &e.down_blocks {
            for r in &level.resnets {
                x = r.forward(x, None);
            }
            for d in &level.downsamplers {
                x = d.forward(x);
            }
        }
        x = e.mid_block.forward(x);
        x = native::conv(&e.conv_out, native::group_norm_silu(&e.conv_norm_out, x));
        native::conv(&self.quant_conv, x).cast(FloatDType::F32)
    }

    /// `post_quant_conv` and the decoder.
    fn decoded(&self, latents: Tensor<4>) -> Tensor<4> {
        let products = native::products_of(self.dtype(), self.compute_dtype);
        native::with_products(products, || self.run_decoder(latents))
    }

    fn run_decoder(&self, latents: Tensor<4>) -> Tensor<4> {
        let d = &self.decoder;
        let latents = latents.cast(self.compute_dtype);
        let mut x = native::conv(&d.conv_in, native::conv(&self.post_quant_conv, latents));
        x = d.mid_block.forward(x);
        for level in &d.up_blocks {
            for r in &level.resnets {
                x = r.forward(x, None);
            }
            for u in &level.upsamplers {
                x = u.forward(x);
            }
        }
        native::conv(&d.conv_out, native::group_norm_silu(&d.conv_norm_out, x))
            .cast(FloatDType::F32)
    }
}

impl DiagonalGaussian {
    /// The posterior from the encoder's moments (mean and log-variance on the channels; the
    /// log-variance clamped to [-30, 20] as diffusers does).
    fn from_moments(moments: Tensor<4>) -> Self {
        let [b, c2, h, w] = moments.dims();
        let c = c2 / 2;
        Self {
            mean: moments.clone().slice([0..b, 0..c, 0..h, 0..w]),
            logvar: moments.slice([0..b, c..c2, 0..h, 0..w]).clamp(-30.0, 20.0),
        }
    }
}

/// diffusers' VAE tiling (`enable_tiling()`): the input is cut into square tiles of `tile`
/// pixels (`tile / downscale` latents) that start every 75% of a tile; each tile runs alone (so
/// its mid-block attention sees only the tile), and each output tile is blended linearly with
/// the one above and the one to the left over 25% of a tile. Memory is bounded by the tile size;
/// results differ from the untiled ones near the seams and through the attention's smaller
/// context, exactly as diffusers' do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaeTiling {
    /// Tile side in pixels (diffusers' `tile_sample_min_size`: the VAE config's `sample_size`,
    /// 512 for SD, 256 for the x4 upscaler's VAE).
    pub tile: usize,
}

/// The share of a tile that overlaps its neighbour (diffusers' `tile_overlap_factor`).
const TILE_OVERLAP: f64 = 0.25;

impl VaeTiling {
    /// The tile size, if the tile, its stride and its overlap are whole numbers of latents (a
    /// positive multiple of `4 * downscale`).
    fn checked(self, downscale: usize) -> Result<usize> {
        if self.tile == 0 || !self.tile.is_multiple_of(4 * downscale) {
            return Err(ModelsError::Core(
                hd_painter_core::CoreError::InvalidParameter {
                    name: "VAE tile size (px)",
                    value: self.tile.to_string(),
                    expected: "a positive multiple of 4 x the VAE's downscale (32 for SD, 16 for x4)",
                },
            ));
        }
        Ok(self.tile)
    }
}

/// diffusers' tiling around `run`: `in_tile` input tiles every 75% of a tile, `out_tile` output
/// tiles blended over 25% with the (already blended) tile above and to the left, each cropped to
/// 75% and concatenated.
fn tiled(
    input: Tensor<4>,
    in_tile: usize,
    out_tile: usize,
    run: impl Fn(Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let stride = (in_tile as f64 * (1.0 - TILE_OVERLAP)) as usize;
    let blend = (out_tile as f64 * TILE_OVERLAP) as usize;
    let keep = out_tile - blend;
    let [b, c, h, w] = input.dims();
    let mut rows: Vec<Vec<Tensor<4>>> = (0..h)
        .step_by(stride)
        .map(|i| {
            (0..w)
                .step_by(stride)
                .map(|j| {
                    run(input.clone().slice([
                        0..b,
                        0..c,
                        i..(i + in_tile).min(h),
                        j..(j + in_tile).min(w),
                    ]))
                })
                .collect()
        })
        .collect();
    for i in 0..rows.len() {
        for j in 0..rows[i].len() {
            if i > 0 {
                rows[i][j] = blend_edge(&rows[i - 1][j], rows[i][j].clone(), blend, 2);
            }
            if j > 0 {
                rows[i][j] = blend_edge(&rows[i][j - 1], rows[i][j].clone(), blend, 3);
            }
        }
    }
    let crop = |t: &Tensor<4>| {
        let [b, c, h, w] = t.dims();
        t.clone()
            .slice([0..b, 0..c, 0..h.min(keep), 0..w.min(keep)])
    };
    let strips = rows
        .iter()
        .map(|row| Tensor::cat(row.iter().map(crop).collect(), 3))
        .collect();
    Tensor::cat(strips, 2)
}

/// diffusers' `blend_v` (`dim` 2) / `blend_h` (`dim` 3): the first `extent` rows (columns) of
/// `b` fade in from the last ones of `a`, `a (1 - y / extent) + b (y / extent)`.
fn blend_edge(a: &Tensor<4>, b: Tensor<4>, extent: usize, dim: usize) -> Tensor<4> {
    let extent = extent.min(a.dims()[dim]).min(b.dims()[dim]);
    if extent == 0 {
        return b;
    }
    let (la, lb) = (a.dims()[dim], b.dims()[dim]);
    let ramp: Vec<f32> = (0..extent).map(|y| y as f32 / extent as f32).collect();
    let mut shape = [1, 1, 1, 1];
    shape[dim] = extent;
    let weight =
        Tensor::<1>::from_data(TensorData::new(ramp, [extent]), &b.device()).reshape(shape);
    let from_a = a.clone().narrow(dim, la - extent, extent);
    let head = b.clone().narrow(dim, 0, extent);
    let blended = from_a * (weight.clone().neg() + 1.0) + head * weight;
    if extent == lb {
        return blended;
    }
    Tensor::cat(vec![blended, b.narrow(dim, extent, lb - extent)], dim)
}

/// A typed error unless `x` is `[batch, channels, h, w]` with non-zero sides divisible by
/// `multiple`.
fn check_input(x: &Tensor<4>, channels: usize, multiple: usize, what: &str) -> Result<()> {
    let [b, c, h, w] = x.dims();
    if b == 0 || c != channels || h == 0 || w == 0 || h % multiple != 0 || w % multiple != 0 {
        return Err(ModelsError::Core(hd_painter_core::CoreError::TensorShape {
            what: what.into(),
            expected: format!(
                "[batch, {channels}, h, w] with h and w positive multiples of {multiple}"
            ),
            found: vec![b, c, h, w],
        }));
    }
    Ok(())
}

impl Precision for AutoencoderKl {
    fn compute_dtype_mut(&mut self) -> &mut FloatDType {
        &mut self.compute_dtype
    }
}
