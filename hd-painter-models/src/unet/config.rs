//! A `UNet2DConditionModel`'s `config.json`, parsed strictly.

use std::path::Path;

use serde_json::Value;

use crate::config::ConfigFile;
use crate::error::Result;

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
