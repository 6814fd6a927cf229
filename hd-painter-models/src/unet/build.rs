//! Building a [`Unet2DConditionModel`]: from its config with untrained weights, and loaded from
//! a diffusers folder, an original single-file checkpoint or weights already read.

use std::path::Path;

use burn::nn::EmbeddingConfig;
use burn::tensor::{Device, FloatDType};

use super::levels::{DownLevel, MidBlock, TimeEmbedding, UpLevel};
use super::{Unet2DConditionModel, UnetConfig};
use crate::blocks::{conv, group_norm};
use crate::error::Result;
use crate::native::Precision;
use crate::single_file::{Checkpoint, UNET_PREFIX};
use crate::weights::{WeightSource, load_safetensors, weights_file};

impl Unet2DConditionModel {
    /// A UNet with the given architecture and untrained weights.
    pub fn new(cfg: &UnetConfig, device: &Device) -> Self {
        let ch = &cfg.block_out_channels();
        let temb = 4 * ch[0];
        let down_blocks = (0..ch.len())
            .map(|i| DownLevel::new(cfg, i, ch[i.saturating_sub(1)], device))
            .collect();
        let up_blocks = (0..ch.len())
            .map(|i| UpLevel::new(cfg, i, ch[(ch.len() - i).min(ch.len() - 1)], device))
            .collect();
        Self {
            conv_in: conv(cfg.in_channels, ch[0], 3, device),
            time_embedding: TimeEmbedding::new(cfg, device),
            class_embedding: cfg
                .num_class_embeds
                .map(|n| EmbeddingConfig::new(n, temb).init(device)),
            add_embedding: cfg
                .text_time
                .map(|t| TimeEmbedding::with_input(t.input_dim, temb, device)),
            text_time: cfg.text_time,
            down_blocks,
            mid_block: MidBlock::new(cfg, device),
            up_blocks,
            conv_norm_out: Some(group_norm(cfg.norm_num_groups, ch[0], cfg.norm_eps, device)),
            conv_out: Some(conv(ch[0], cfg.out_channels, 3, device)),
            in_channels: cfg.in_channels,
            cross_attention_dim: cfg.cross_attention_dim,
            block_out_channels: ch.clone(),
            time_channels: ch[0],
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            freq_shift: cfg.freq_shift,
            compute_dtype: FloatDType::F32,
        }
    }

    /// Loads a diffusers `unet/` folder: `config.json` and `diffusion_pytorch_model.safetensors`
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
        let config = UnetConfig::from_file(dir.join("config.json"))?;
        let weights = weights_file(dir, &["diffusion_pytorch_model"], variant)?;
        Self::from_weights(&config, weights, dtype, device).map(|m| m.stored_as(dtype))
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
        let weights = ckpt.unet(config.layers_per_block, config.text_time.is_some())?;
        Self::from_weights(&config, weights, FloatDType::F32, device)
    }

    /// Builds the model for `config` and loads diffusers-layout weights into it.
    pub(crate) fn from_weights(
        config: &UnetConfig,
        weights: WeightSource,
        stored: FloatDType,
        device: &Device,
    ) -> Result<Self> {
        // The transformer's projections are an enum (conv or linear) in our model: the variant
        // goes into the path.
        let projection = match config.use_linear_projection {
            true => "$1.proj_$2.Linear.$3",
            false => "$1.proj_$2.Conv.$3",
        };
        let remaps = [
            (r"\.to_out\.0\.", ".to_out."),
            (r"\.ff\.net\.0\.proj\.", ".ff.proj."),
            (r"\.ff\.net\.2\.", ".ff.out."),
            (
                r"(attentions\.\d+)\.proj_(in|out)\.(weight|bias)$",
                projection,
            ),
        ];
        let model = Self::new(config, device);
        load_safetensors(model, weights, &remaps, &[], stored)
    }
}
