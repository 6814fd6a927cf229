//! The model settings of guided-diffusion's `create_model`, as RePaint's `confs/*.yml` give them
//! and `tools/convert_guided_diffusion.py` writes them to `config.json`.

use std::path::Path;

use serde_json::Value;

use crate::config::ConfigFile;
use crate::error::Result;

/// The architecture of a guided-diffusion `UNetModel` (the official RePaint checkpoints:
/// CelebA-HQ, Places2, ImageNet 256).
#[derive(Clone, Debug, PartialEq)]
pub struct GuidedUnetConfig {
    /// The image side (`image_size`).
    pub image_size: usize,
    /// Image channels (3).
    pub in_channels: usize,
    /// `num_channels` (`model_channels`): the first level's width.
    pub model_channels: usize,
    /// Output channels: 6 with `learn_sigma`, else 3.
    pub out_channels: usize,
    /// Resnets per level on the way down (`num_res_blocks`; one more on the way up).
    pub num_res_blocks: usize,
    /// Downsampling rates with self-attention (from `attention_resolutions`, given as image
    /// sides: `image_size / side`, rounded down).
    pub attention_rates: Vec<usize>,
    /// Width multipliers of the levels (`channel_mult`, or the image size's default).
    pub channel_mult: Vec<usize>,
    /// Classes of the label embedding (`class_cond`: 1000), if any.
    pub num_classes: Option<usize>,
    /// Heads per attention (`num_heads`), unless `num_head_channels` fixes the head width.
    pub num_heads: usize,
    /// Channels per head (`num_head_channels`; `None` for -1).
    pub num_head_channels: Option<usize>,
    /// Heads of the up path's attentions (`num_heads_upsample`, -1: `num_heads`).
    pub num_heads_upsample: usize,
    /// FiLM-like `scale, shift` conditioning of the resnets (`use_scale_shift_norm`).
    pub use_scale_shift_norm: bool,
    /// Resnets with up/downsampling instead of plain resamplers (`resblock_updown`).
    pub resblock_updown: bool,
    /// `QKVAttention` (heads split after q / k / v) rather than `QKVAttentionLegacy`.
    pub use_new_attention_order: bool,
}

impl GuidedUnetConfig {
    /// Reads a `config.json` holding the model keys of a RePaint / guided-diffusion config
    /// (`image_size`, `num_channels`, `num_res_blocks`, `attention_resolutions`, `learn_sigma`,
    /// `class_cond`, `channel_mult`, `num_heads`, `num_head_channels`, `num_heads_upsample`,
    /// `use_scale_shift_norm`, `resblock_updown`, `use_new_attention_order`; `use_fp16` and
    /// `dropout` are accepted and have no effect on inference from converted weights).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let defaults = serde_json::json!({
            "in_channels": 3,
            "channel_mult": "",
            "num_heads": 1,
            "num_head_channels": -1,
            "num_heads_upsample": -1,
            "learn_sigma": false,
            "class_cond": false,
            "use_scale_shift_norm": false,
            "resblock_updown": false,
            "use_new_attention_order": false,
        });
        let f = ConfigFile::open(path.as_ref())?.with_defaults(&defaults);
        let image_size = f.usize("image_size")?;
        let channel_mult = channel_mult(&f, image_size)?;
        // `create_model`'s `image_size // int(res)`.
        let attention_rates = list(&f, "attention_resolutions")?
            .into_iter()
            .map(|side| image_size / side)
            .collect();
        let num_heads = f.usize("num_heads")?;
        let optional = |key: &str| -> Result<Option<usize>> {
            match f.get(key).and_then(Value::as_i64) {
                Some(-1) => Ok(None),
                _ => Ok(Some(f.usize(key)?)),
            }
        };
        let in_channels = f.usize("in_channels")?;
        let config = Self {
            image_size,
            in_channels,
            model_channels: f.usize("num_channels")?,
            out_channels: in_channels * (1 + usize::from(f.bool_or("learn_sigma", false)?)),
            num_res_blocks: f.usize("num_res_blocks")?,
            attention_rates,
            channel_mult,
            num_classes: f.bool_or("class_cond", false)?.then_some(1000),
            num_heads,
            num_head_channels: optional("num_head_channels")?,
            num_heads_upsample: optional("num_heads_upsample")?.unwrap_or(num_heads),
            use_scale_shift_norm: f.bool_or("use_scale_shift_norm", false)?,
            resblock_updown: f.bool_or("resblock_updown", false)?,
            use_new_attention_order: f.bool_or("use_new_attention_order", false)?,
        };
        for (i, &m) in config.channel_mult.iter().enumerate() {
            let c = m * config.model_channels;
            if !c.is_multiple_of(32) {
                return Err(f.unsupported("channel_mult", "widths that 32 norm groups divide"));
            }
            let heads_ok = |heads: usize| heads > 0 && c.is_multiple_of(heads);
            let width_ok = config.num_head_channels.is_none_or(|w| c.is_multiple_of(w));
            if config.attention_rates.contains(&(1 << i))
                && !(width_ok
                    && heads_ok(config.heads(c, false))
                    && heads_ok(config.heads(c, true)))
            {
                return Err(f.unsupported("num_head_channels", "head widths dividing the channels"));
            }
        }
        Ok(config)
    }

    /// The heads of an attention over `channels` (on the up path if `up`).
    pub fn heads(&self, channels: usize, up: bool) -> usize {
        match self.num_head_channels {
            Some(width) => channels / width,
            None if up => self.num_heads_upsample,
            None => self.num_heads,
        }
    }
}

/// A comma-separated list of positive integers (or a JSON list of them).
fn list(f: &ConfigFile, key: &str) -> Result<Vec<usize>> {
    match f.get(key) {
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().parse::<usize>().ok().filter(|v| *v > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| f.unsupported(key, "comma-separated positive integers")),
        _ => f.usize_list(key),
    }
}

/// `channel_mult`, or `create_model`'s default for the image size.
fn channel_mult(f: &ConfigFile, image_size: usize) -> Result<Vec<usize>> {
    if f.get("channel_mult").and_then(Value::as_str) != Some("") {
        return list(f, "channel_mult");
    }
    Ok(match image_size {
        256 => vec![1, 1, 2, 2, 4, 4],
        128 => vec![1, 1, 2, 3, 4],
        64 => vec![1, 2, 3, 4],
        _ => {
            return Err(f.unsupported(
                "channel_mult",
                "a list, or \"\" with image_size 64, 128 or 256 (512's default has 0.5)",
            ));
        }
    })
}
