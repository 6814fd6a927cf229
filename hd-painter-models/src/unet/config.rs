//! A `UNet2DConditionModel`'s `config.json`, parsed strictly.

use std::path::Path;

use serde_json::Value;

use crate::config::ConfigFile;
use crate::error::Result;

/// The architecture of a `UNet2DConditionModel` (the keys of its `config.json` SD uses). The
/// default is diffusers' constructor default, SD 1.x's UNet.
#[derive(Clone, Debug, PartialEq)]
pub struct UnetConfig {
    /// Input channels: 4 (text-to-image, blended), 9 (inpainting), 7 (x4 upscaler).
    pub in_channels: usize,
    /// Output channels (4).
    pub out_channels: usize,
    /// The resolution levels, from the finest (the first down block, the last up block).
    pub levels: Vec<LevelConfig>,
    /// Resnets per down level (up levels have one more).
    pub layers_per_block: usize,
    /// Width of the text embedding.
    pub cross_attention_dim: usize,
    /// Linear (SD 2) or 1x1-convolution (SD 1) projections around each transformer.
    pub use_linear_projection: bool,
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
    /// Whether the mid block has its transformer (`UNetMidBlock2DCrossAttn`, every SD UNet);
    /// without, it is two resnets (BrushNet's `MidBlock2D`).
    pub mid_block_attention: bool,
    /// SDXL's added embedding (`addition_embed_type: "text_time"`); `None` for SD 1.x / 2.x.
    pub text_time: Option<TextTimeConfig>,
}

/// SDXL's `addition_embed_type: "text_time"`: the pooled text embedding and a sinusoid of each
/// micro-conditioning time id (original size, crop top-left, target size, or the aesthetic
/// score), concatenated and embedded by `add_embedding` into the time embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextTimeConfig {
    /// The sinusoid width of each time id (`addition_time_embed_dim`, 256 in SDXL).
    pub time_embed_dim: usize,
    /// The embedding's input width (`projection_class_embeddings_input_dim`): the pooled text
    /// width plus `time_embed_dim` per time id (SDXL base / inpainting: 1280 + 6 x 256 = 2816).
    pub input_dim: usize,
}

/// One resolution level of a UNet: its entries of the per-level keys of `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelConfig {
    /// Channels (`block_out_channels`).
    pub channels: usize,
    /// Cross-attention transformers in the level's down block (`CrossAttnDownBlock2D`).
    pub down_attention: bool,
    /// Cross-attention transformers in the level's up block (`CrossAttnUpBlock2D`).
    pub up_attention: bool,
    /// Attention heads (`num_attention_heads`, or the legacy `attention_head_dim`).
    pub heads: usize,
    /// Whether `attn1` attends to the text instead of the image (the x4 upscaler's).
    pub only_cross_attention: bool,
    /// Transformer blocks in each of the level's transformers (`transformer_layers_per_block`:
    /// 1 in SD 1.x / 2.x, SDXL's [1, 2, 10]); the mid block takes the coarsest level's.
    pub transformer_layers: usize,
}

impl LevelConfig {
    /// A level of resnets alone (`DownBlock2D` / `UpBlock2D`), as BrushNet's branch has.
    pub fn plain(channels: usize) -> Self {
        Self {
            channels,
            down_attention: false,
            up_attention: false,
            heads: 1,
            only_cross_attention: false,
            transformer_layers: 1,
        }
    }
}

impl Default for UnetConfig {
    fn default() -> Self {
        let level = |channels, attention| LevelConfig {
            down_attention: attention,
            up_attention: attention,
            heads: 8,
            ..LevelConfig::plain(channels)
        };
        Self {
            in_channels: 4,
            out_channels: 4,
            levels: vec![
                level(320, true),
                level(640, true),
                level(1280, true),
                level(1280, false),
            ],
            layers_per_block: 2,
            cross_attention_dim: 1280,
            use_linear_projection: false,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            num_class_embeds: None,
            mid_block_attention: true,
            text_time: None,
        }
    }
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
            "transformer_layers_per_block": 1,
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
            ("encoder_hid_dim", Value::Null),
            ("time_embedding_type", Value::from("positional")),
            ("resnet_time_scale_shift", Value::from("default")),
            ("mid_block_scale_factor", Value::from(1)),
            ("time_cond_proj_dim", Value::Null),
            ("conv_in_kernel", Value::from(3)),
            ("conv_out_kernel", Value::from(3)),
            ("class_embeddings_concat", Value::Bool(false)),
            ("cross_attention_norm", Value::Null),
            ("encoder_hid_dim_type", Value::Null),
            ("mid_block_only_cross_attention", Value::Null),
            ("resnet_out_scale_factor", Value::from(1.0)),
            ("resnet_skip_time_act", Value::Bool(false)),
            ("timestep_post_act", Value::Null),
            ("time_embedding_dim", Value::Null),
            ("time_embedding_act_fn", Value::Null),
            ("attention_type", Value::from("default")),
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
        let transformer_layers = f.usize_or_list("transformer_layers_per_block", levels)?;
        let levels = (0..levels)
            .map(|i| LevelConfig {
                channels: block_out_channels[i],
                down_attention: down[i].starts_with("CrossAttn"),
                // The up blocks are listed from the coarsest level.
                up_attention: up[levels - 1 - i].starts_with("CrossAttn"),
                heads: heads[i],
                only_cross_attention: only_cross_attention[i],
                transformer_layers: transformer_layers[i],
            })
            .collect();
        // Construction pads every downsampling convolution by 1, the only value SD uses.
        if f.usize_or("downsample_padding", 1)? != 1 {
            return Err(f.unsupported("downsample_padding", "1"));
        }
        let config = Self {
            in_channels: f.usize("in_channels")?,
            out_channels: f.usize("out_channels")?,
            levels,
            layers_per_block: f.usize("layers_per_block")?,
            cross_attention_dim: f.usize("cross_attention_dim")?,
            use_linear_projection: f.bool_or("use_linear_projection", false)?,
            norm_num_groups: f.usize("norm_num_groups")?,
            norm_eps: f.f64_or("norm_eps", 1e-5)?,
            flip_sin_to_cos: f.bool_or("flip_sin_to_cos", true)?,
            freq_shift: f.f64_or("freq_shift", 0.0)?,
            num_class_embeds: if f.is_absent("num_class_embeds") {
                None
            } else {
                Some(f.usize("num_class_embeds")?)
            },
            mid_block_attention: true,
            text_time: text_time(&f)?,
        };
        for level in &config.levels {
            if level.channels % config.norm_num_groups != 0 || level.channels % level.heads != 0 {
                return Err(f.unsupported(
                    heads_key,
                    "head counts and norm_num_groups dividing every block_out_channels entry",
                ));
            }
        }
        Ok(config)
    }

    /// The channels of every level (`block_out_channels`).
    pub fn block_out_channels(&self) -> Vec<usize> {
        self.levels.iter().map(|l| l.channels).collect()
    }
}

/// The `text_time` added embedding of `f`, if its `addition_embed_type` asks for one (the only
/// kind SD uses); its two widths are then required.
fn text_time(f: &ConfigFile) -> Result<Option<TextTimeConfig>> {
    let (dim, input) = (
        "addition_time_embed_dim",
        "projection_class_embeddings_input_dim",
    );
    if f.is_absent("addition_embed_type") {
        f.require_default(dim, &Value::Null)?;
        f.require_default(input, &Value::Null)?;
        return Ok(None);
    }
    f.one_of("addition_embed_type", &["text_time"])?;
    let config = TextTimeConfig {
        time_embed_dim: f.usize(dim)?,
        input_dim: f.usize(input)?,
    };
    // Each sinusoid is a cosine and a sine half; the embedding takes the pooled text too.
    if !config.time_embed_dim.is_multiple_of(2) {
        return Err(f.unsupported(dim, "an even width"));
    }
    if config.input_dim <= config.time_embed_dim {
        return Err(f.unsupported(input, &format!("more than {dim}")));
    }
    Ok(Some(config))
}
