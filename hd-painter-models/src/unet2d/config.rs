//! A `UNet2DModel`'s `config.json`, parsed strictly.

use std::path::Path;

use serde_json::Value;

use crate::config::ConfigFile;
use crate::error::Result;

/// How a `UNet2DModel` embeds its timestep before the MLP.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeProjection {
    /// diffusers' `Timesteps`: sinusoids of the timestep (the DDPM models).
    Positional {
        /// Cosine before sine.
        flip_sin_to_cos: bool,
        /// `freq_shift` (`downscale_freq_shift`).
        freq_shift: f64,
    },
    /// `GaussianFourierProjection` of `log(sigma)` with learned-once frequencies (the score-SDE
    /// models); the output is divided by the noise level.
    Fourier,
}

/// One resolution level of a `UNet2DModel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unet2DLevel {
    /// Channels (`block_out_channels`).
    pub channels: usize,
    /// `AttnDownBlock2D` (self-attention after each resnet) rather than `DownBlock2D`.
    pub down_attention: bool,
    /// `AttnUpBlock2D` rather than `UpBlock2D`.
    pub up_attention: bool,
}

/// The architecture of a `UNet2DModel`, diffusers' unconditional pixel-space UNet (the keys of
/// its `config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct Unet2DConfig {
    /// The image side the model was trained at (`sample_size`), if the config says.
    pub sample_size: Option<usize>,
    /// Image channels in (3).
    pub in_channels: usize,
    /// Channels out: the image's (epsilon), or twice them (epsilon and learned variance).
    pub out_channels: usize,
    /// `center_input_sample`: inputs in `[0, 1]` are mapped to `[-1, 1]` first.
    pub center_input_sample: bool,
    /// The timestep embedding.
    pub time_projection: TimeProjection,
    /// Width of the time embedding (`time_embedding_dim`, default 4x the first level's).
    pub time_embedding_dim: usize,
    /// The levels, from the finest.
    pub levels: Vec<Unet2DLevel>,
    /// Resnets per down level (up levels have one more).
    pub layers_per_block: usize,
    /// Channels per attention head (`attention_head_dim`; `None`: one head).
    pub attention_head_dim: Option<usize>,
    /// Groups of every group norm of the resnets and the output.
    pub norm_num_groups: usize,
    /// Groups of the mid block's attention norm (`None`: no norm there).
    pub mid_attention_groups: Option<usize>,
    /// Epsilon of every group norm.
    pub norm_eps: f64,
    /// `resnet_time_scale_shift = "scale_shift"`.
    pub scale_shift: bool,
    /// `mid_block_scale_factor`.
    pub mid_block_scale_factor: f64,
    /// `downsample_padding`: 1 pads every side, 0 only the right and bottom.
    pub downsample_padding: usize,
    /// Whether there is a mid block (`mid_block_type`), and whether it has its attention.
    pub mid_block: Option<bool>,
    /// Classes of the class embedding (`num_class_embeds`), if any.
    pub num_class_embeds: Option<usize>,
}

impl Unet2DConfig {
    /// `config.json` with `UNet2DModel`'s constructor defaults for the keys it lacks.
    fn config_file(path: &Path) -> Result<ConfigFile> {
        let defaults = serde_json::json!({
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [224, 448, 672, 896],
            "layers_per_block": 2,
            "mid_block_type": "UNetMidBlock2D",
            "time_embedding_type": "positional",
            "resnet_time_scale_shift": "default",
            "attention_head_dim": 8,
            "norm_num_groups": 32,
            "act_fn": "silu",
        });
        Ok(ConfigFile::open(path)?.with_defaults(&defaults))
    }

    /// Reads a diffusers `unet/config.json` of class `UNet2DModel`; block types and options
    /// hd-painter does not implement (the score-SDE skip blocks, resnet up/downsampling, a
    /// learned or timestep class embedding) are typed errors, never something else loaded.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let f = Self::config_file(path.as_ref())?;
        let down = f.str_list("down_block_types", &["DownBlock2D", "AttnDownBlock2D"])?;
        let up = f.str_list("up_block_types", &["UpBlock2D", "AttnUpBlock2D"])?;
        let channels = f.levels(down.len(), up.len())?;
        f.one_of("act_fn", &["silu"])?;
        for (key, default) in [
            ("downsample_type", Value::from("conv")),
            ("upsample_type", Value::from("conv")),
            ("class_embed_type", Value::Null),
        ] {
            f.require_default(key, &default)?;
        }
        let n = channels.len();
        let levels = (0..n)
            .map(|i| Unet2DLevel {
                channels: channels[i],
                down_attention: down[i] == "AttnDownBlock2D",
                up_attention: up[n - 1 - i] == "AttnUpBlock2D",
            })
            .collect();
        let time_projection = match f.one_of("time_embedding_type", &["positional", "fourier"])? {
            "positional" => TimeProjection::Positional {
                flip_sin_to_cos: f.bool_or("flip_sin_to_cos", true)?,
                freq_shift: f.f64_or("freq_shift", 0.0)?,
            },
            _ => TimeProjection::Fourier,
        };
        let norm_num_groups = f.groups_dividing(&channels)?;
        let scale_shift =
            f.one_of("resnet_time_scale_shift", &["default", "scale_shift"])? == "scale_shift";
        let mid_attention_groups = match f.is_absent("attn_norm_num_groups") {
            false => Some(f.usize("attn_norm_num_groups")?),
            true => (!scale_shift).then_some(norm_num_groups),
        };
        let mid_block = match f.get("mid_block_type") {
            Some(Value::Null) => None,
            _ => {
                f.one_of("mid_block_type", &["UNetMidBlock2D"])?;
                Some(f.bool_or("add_attention", true)?)
            }
        };
        let downsample_padding = match f.get("downsample_padding").map(Value::as_u64) {
            None => 1,
            Some(Some(p)) if p <= 1 => p as usize,
            Some(_) => return Err(f.unsupported("downsample_padding", "0 or 1")),
        };
        let attention_head_dim = match f.is_absent("attention_head_dim") {
            true => None,
            false => Some(f.usize("attention_head_dim")?),
        };
        let config = Self {
            sample_size: match f.get("sample_size") {
                Some(Value::Number(_)) => Some(f.usize("sample_size")?),
                _ => None,
            },
            in_channels: f.usize("in_channels")?,
            out_channels: f.usize("out_channels")?,
            center_input_sample: f.bool_or("center_input_sample", false)?,
            time_projection,
            time_embedding_dim: f.usize_or("time_embedding_dim", 4 * channels[0])?,
            levels,
            layers_per_block: f.usize("layers_per_block")?,
            attention_head_dim,
            norm_num_groups,
            mid_attention_groups,
            norm_eps: f.f64_or("norm_eps", 1e-5)?,
            scale_shift,
            mid_block_scale_factor: f.f64_or("mid_block_scale_factor", 1.0)?,
            downsample_padding,
            mid_block,
            num_class_embeds: match f.is_absent("num_class_embeds") {
                true => None,
                false => Some(f.usize("num_class_embeds")?),
            },
        };
        config.check(&f)?;
        Ok(config)
    }

    /// Head widths and norm groups that divide the channels they apply to.
    fn check(&self, f: &ConfigFile) -> Result<()> {
        for level in &self.levels {
            if self.heads(level.channels) == 0
                || !level.channels.is_multiple_of(self.heads(level.channels))
            {
                return Err(f.unsupported(
                    "attention_head_dim",
                    "a divisor of every block_out_channels entry",
                ));
            }
        }
        let last = self.levels.last().map_or(0, |l| l.channels);
        if self
            .mid_attention_groups
            .is_some_and(|g| !last.is_multiple_of(g))
        {
            return Err(f.unsupported(
                "attn_norm_num_groups",
                "a divisor of the last block_out_channels entry",
            ));
        }
        Ok(())
    }

    /// The attention heads at a level of `channels` (`channels / attention_head_dim`).
    pub fn heads(&self, channels: usize) -> usize {
        self.attention_head_dim.map_or(1, |d| channels / d)
    }

    /// How many times the image is halved on the way down.
    pub fn downscale(&self) -> usize {
        1 << (self.levels.len() - 1)
    }
}
