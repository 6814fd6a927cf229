//! Original-layout (CompVis / Stability) single-file checkpoints, as published for SD 1.5 and
//! SD 2 inpainting: one `.safetensors` holding the UNet under `model.diffusion_model.`, the VAE
//! under `first_stage_model.` and the text encoder under `cond_stage_model.` (CLIP's
//! transformers layout for SD 1.x, OpenCLIP's for SD 2.x). The keys are renamed to the diffusers
//! layout at load time following diffusers' `single_file_utils` converters; every converted
//! tensor is a view of the memory-mapped file (OpenCLIP's fused `in_proj` splits along its first
//! dimension, the VAE's 1x1 attention convolutions only change shape), serialised once per
//! component for the weight loader.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{ModelsError, Result};
use crate::weights::WeightSource;

/// The UNet's key prefix.
pub(crate) const UNET_PREFIX: &str = "model.diffusion_model.";
/// The VAE's key prefixes in whole checkpoints (diffusers' `LDM_VAE_KEYS`); a VAE-only file
/// has none.
const VAE_PREFIXES: [&str; 2] = ["first_stage_model.", "vae."];
/// SD 1.x's text encoder (transformers' CLIP layout under this prefix).
const CLIP_PREFIX: &str = "cond_stage_model.transformer.";
/// SD 2.x's text encoder (OpenCLIP's layout under this prefix).
const OPEN_CLIP_PREFIX: &str = "cond_stage_model.model.";

/// A memory-mapped single-file checkpoint.
pub(crate) struct Checkpoint {
    path: std::path::PathBuf,
    map: memmap2::Mmap,
}

/// One converted tensor: its diffusers key, dtype, shape and bytes in the file.
struct Converted<'a> {
    key: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: &'a [u8],
}

/// The text encoder layouts of the published checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextLayout {
    /// SD 1.x: transformers' `CLIPTextModel` keys.
    Clip,
    /// SD 2.x: OpenCLIP's `resblocks` with fused q/k/v.
    OpenClip,
}

impl Checkpoint {
    /// Maps `path`; only `.safetensors` files are read (pickled `.ckpt` files can run code).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        if crate::weights::is_pickle(path) {
            return Err(ModelsError::Pickle {
                path: path.to_path_buf(),
            });
        }
        if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            return Err(ModelsError::Malformed {
                path: path.to_path_buf(),
                reason: "single-file checkpoints are read from .safetensors only".into(),
            });
        }
        let checkpoint = Self {
            path: path.to_path_buf(),
            map: map_file(path)?,
        };
        checkpoint.tensors()?;
        Ok(checkpoint)
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn tensors(&self) -> Result<safetensors::SafeTensors<'_>> {
        safetensors::SafeTensors::deserialize(&self.map).map_err(|e| ModelsError::Malformed {
            path: self.path.clone(),
            reason: format!("not a safetensors file: {e}"),
        })
    }

    /// The shape of tensor `key`, if present.
    pub(crate) fn shape(&self, key: &str) -> Result<Option<Vec<usize>>> {
        Ok(self.tensors()?.tensor(key).ok().map(|t| t.shape().to_vec()))
    }

    /// The text encoder's layout, from its keys.
    pub(crate) fn text_layout(&self) -> Result<TextLayout> {
        let tensors = self.tensors()?;
        let names = tensors.names();
        if names.iter().any(|k| k.starts_with(CLIP_PREFIX)) {
            Ok(TextLayout::Clip)
        } else if names.iter().any(|k| k.starts_with(OPEN_CLIP_PREFIX)) {
            Ok(TextLayout::OpenClip)
        } else {
            Err(self.not_found(
                "a text encoder (cond_stage_model.transformer.* or cond_stage_model.model.*)",
            ))
        }
    }

    /// A typed error for a checkpoint that lacks `what`.
    pub(crate) fn not_found(&self, what: &str) -> ModelsError {
        ModelsError::Malformed {
            path: self.path.clone(),
            reason: format!("not a Stable Diffusion checkpoint: no {what}"),
        }
    }

    /// The UNet's tensors in the diffusers layout (`layers_per_block` from its config).
    pub(crate) fn unet(&self, layers_per_block: usize) -> Result<WeightSource> {
        self.convert(UNET_PREFIX, |key, _| {
            vec![(unet_key(key, layers_per_block), None)]
        })
    }

    /// The VAE's tensors in the diffusers layout (`levels` resolution levels): those under the
    /// first of [`VAE_PREFIXES`] the file uses, or every tensor of a VAE-only file, as
    /// diffusers' `convert_ldm_vae_checkpoint` takes them.
    pub(crate) fn vae(&self, levels: usize) -> Result<WeightSource> {
        let names = self
            .tensors()?
            .names()
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        let prefix = VAE_PREFIXES
            .into_iter()
            .find(|p| names.iter().any(|k| k.starts_with(p)))
            .unwrap_or("");
        self.convert(prefix, |key, shape| {
            // Training checkpoints carry the autoencoder's loss (LPIPS, discriminator), which
            // diffusers' converter ignores too.
            if key.starts_with("loss.") {
                return Vec::new();
            }
            let new = vae_key(key, levels);
            // The mid-block attention's 1x1 convolutions (2-d, or 1-d in some exports) are
            // linear layers in diffusers.
            let linear = new.contains(".mid_block.attentions.")
                && new.ends_with(".weight")
                && shape.len() > 2;
            vec![(new, linear.then(|| vec![shape[0], shape[1]]))]
        })
    }

    /// The text encoder's tensors in transformers' layout; OpenCLIP layers from `layers` on
    /// (SD 2's last one, which the pipeline never uses) are dropped as diffusers drops them.
    pub(crate) fn text_encoder(&self, layout: TextLayout, layers: usize) -> Result<WeightSource> {
        match layout {
            TextLayout::Clip => self.convert(CLIP_PREFIX, |key, _| vec![(key.to_string(), None)]),
            TextLayout::OpenClip => self.convert(OPEN_CLIP_PREFIX, |key, shape| {
                open_clip_keys(key, shape, layers)
            }),
        }
    }

    /// Every tensor under `prefix`, renamed by `rename(key without prefix, shape)` into zero or
    /// more `(diffusers key, new shape)` parts; several parts split the tensor evenly along its
    /// first dimension.
    fn convert(
        &self,
        prefix: &str,
        rename: impl Fn(&str, &[usize]) -> Vec<(String, Option<Vec<usize>>)>,
    ) -> Result<WeightSource> {
        let tensors = self.tensors()?;
        let mut converted = Vec::new();
        for (name, view) in tensors.tensors() {
            let Some(key) = name.strip_prefix(prefix) else {
                continue;
            };
            let parts = rename(key, view.shape());
            // Several parts split the tensor evenly along its first dimension (row-major, so
            // each part is a contiguous byte range).
            let data = view.data();
            let chunk = data.len() / parts.len().max(1);
            for (i, (new_key, shape)) in parts.into_iter().enumerate() {
                converted.push(Converted {
                    key: new_key,
                    dtype: view.dtype(),
                    shape: shape.unwrap_or_else(|| view.shape().to_vec()),
                    data: &data[i * chunk..(i + 1) * chunk],
                });
            }
        }
        if converted.is_empty() {
            return Err(self.not_found(&format!("tensors under `{prefix}`")));
        }
        let views: BTreeMap<String, TensorView<'_>> = converted
            .into_iter()
            .map(|c| {
                let view = TensorView::new(c.dtype, c.shape, c.data).map_err(|e| {
                    ModelsError::Malformed {
                        path: self.path.clone(),
                        reason: format!("tensor {prefix}{}: {e}", c.key),
                    }
                })?;
                Ok((c.key, view))
            })
            .collect::<Result<_>>()?;
        let bytes = safetensors::serialize(views, None).map_err(|e| ModelsError::Malformed {
            path: self.path.clone(),
            reason: format!("re-serialising the `{prefix}` tensors: {e}"),
        })?;
        Ok(WeightSource::Converted {
            bytes,
            origin: self.path.clone(),
        })
    }
}

/// `path` memory-mapped read-only, named in errors.
pub(crate) fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|source| ModelsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: the map is read-only and lives as long as its owner; like every memory-mapped
    // loader (burn-store's included), it assumes the file is not truncated while it is read.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ModelsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `input_blocks.4.1.proj_in.weight` -> `down_blocks.1.attentions.0.proj_in.weight`, and so on
/// (diffusers' `convert_ldm_unet_checkpoint`); keys it cannot place are kept as they are, so
/// that the loader reports them as unexpected.
fn unet_key(key: &str, layers_per_block: usize) -> String {
    const TOP: [(&str, &str); 6] = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
        ("label_emb.", "class_embedding."),
    ];
    if let Some(new) = TOP
        .iter()
        .find_map(|(old, new)| key.strip_prefix(old).map(|rest| format!("{new}{rest}")))
    {
        return new;
    }
    let per_level = layers_per_block + 1;
    let Some((block, index, part, rest)) = split_block(key) else {
        return key.to_string();
    };
    match (block, part) {
        ("input_blocks", "0") if rest.starts_with("op.") => format!(
            "down_blocks.{}.downsamplers.0.conv.{}",
            (index - 1) / per_level,
            &rest[3..]
        ),
        ("input_blocks", "0") => format!(
            "down_blocks.{}.resnets.{}.{}",
            (index - 1) / per_level,
            (index - 1) % per_level,
            resnet_rest(rest)
        ),
        ("input_blocks", "1") => format!(
            "down_blocks.{}.attentions.{}.{rest}",
            (index - 1) / per_level,
            (index - 1) % per_level
        ),
        ("middle_block", "") if index % 2 == 0 => {
            format!("mid_block.resnets.{}.{}", index / 2, resnet_rest(rest))
        }
        ("middle_block", "") => format!("mid_block.attentions.0.{rest}"),
        ("output_blocks", "0") => format!(
            "up_blocks.{}.resnets.{}.{}",
            index / per_level,
            index % per_level,
            resnet_rest(rest)
        ),
        ("output_blocks", "1" | "2") if rest.starts_with("conv.") => {
            format!("up_blocks.{}.upsamplers.0.{rest}", index / per_level)
        }
        ("output_blocks", "1") => format!(
            "up_blocks.{}.attentions.{}.{rest}",
            index / per_level,
            index % per_level
        ),
        _ => key.to_string(),
    }
}

/// `input_blocks.4.1.rest` -> `("input_blocks", 4, "1", "rest")`; `middle_block.1.rest` ->
/// `("middle_block", 1, "", "rest")`.
fn split_block(key: &str) -> Option<(&str, usize, &str, &str)> {
    let (block, rest) = key.split_once('.')?;
    let (index, rest) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    match block {
        "middle_block" => Some((block, index, "", rest)),
        "input_blocks" | "output_blocks" => {
            let (part, rest) = rest.split_once('.')?;
            Some((block, index, part, rest))
        }
        _ => None,
    }
}

/// A UNet resnet's parameter names in diffusers' terms.
fn resnet_rest(rest: &str) -> String {
    const NAMES: [(&str, &str); 6] = [
        ("in_layers.0.", "norm1."),
        ("in_layers.2.", "conv1."),
        ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."),
        ("skip_connection.", "conv_shortcut."),
    ];
    NAMES
        .iter()
        .find_map(|(old, new)| rest.strip_prefix(old).map(|r| format!("{new}{r}")))
        .unwrap_or_else(|| rest.to_string())
}

/// `encoder.down.1.block.0.nin_shortcut.weight` ->
/// `encoder.down_blocks.1.resnets.0.conv_shortcut.weight`, and so on (diffusers'
/// `convert_ldm_vae_checkpoint`; the decoder's `up.{i}` counts from the bottom).
fn vae_key(key: &str, levels: usize) -> String {
    let Some((half, rest)) = key.split_once('.') else {
        return key.to_string();
    };
    if half != "encoder" && half != "decoder" {
        return key.to_string();
    }
    let renamed = if let Some(rest) = rest.strip_prefix("norm_out.") {
        format!("conv_norm_out.{rest}")
    } else if let Some(rest) = rest.strip_prefix("mid.") {
        mid_key(rest)
    } else if let Some((level, inner)) = rest
        .strip_prefix("down.")
        .or_else(|| rest.strip_prefix("up."))
        .and_then(|r| r.split_once('.'))
        .and_then(|(l, inner)| Some((l.parse::<usize>().ok()?, inner)))
    {
        let (blocks, level) = if rest.starts_with("down.") {
            ("down_blocks", level)
        } else {
            ("up_blocks", levels.saturating_sub(1 + level))
        };
        let inner = if let Some(r) = inner.strip_prefix("block.") {
            format!("resnets.{}", r.replace("nin_shortcut.", "conv_shortcut."))
        } else if let Some(r) = inner
            .strip_prefix("downsample.")
            .or_else(|| inner.strip_prefix("upsample."))
        {
            let kind = if inner.starts_with("down") {
                "downsamplers"
            } else {
                "upsamplers"
            };
            format!("{kind}.0.{r}")
        } else {
            inner.to_string()
        };
        format!("{blocks}.{level}.{inner}")
    } else {
        rest.to_string()
    };
    format!("{half}.{renamed}")
}

/// The VAE mid-block: `block_1` / `block_2` resnets and `attn_1`'s norm and projections.
fn mid_key(rest: &str) -> String {
    const NAMES: [(&str, &str); 7] = [
        ("block_1.", "mid_block.resnets.0."),
        ("block_2.", "mid_block.resnets.1."),
        ("attn_1.norm.", "mid_block.attentions.0.group_norm."),
        ("attn_1.q.", "mid_block.attentions.0.to_q."),
        ("attn_1.k.", "mid_block.attentions.0.to_k."),
        ("attn_1.v.", "mid_block.attentions.0.to_v."),
        ("attn_1.proj_out.", "mid_block.attentions.0.to_out.0."),
    ];
    NAMES
        .iter()
        .find_map(|(old, new)| rest.strip_prefix(old).map(|r| format!("{new}{r}")))
        .unwrap_or_else(|| format!("mid.{rest}"))
}

/// OpenCLIP's text tower in transformers' `CLIPTextModel` keys (diffusers'
/// `convert_open_clip_checkpoint`): the fused `in_proj` becomes three parts; the projection,
/// `logit_scale`, the attention mask buffer and layers from `layers` on are dropped.
fn open_clip_keys(key: &str, shape: &[usize], layers: usize) -> Vec<(String, Option<Vec<usize>>)> {
    const TOP: [(&str, &str); 3] = [
        (
            "token_embedding.weight",
            "text_model.embeddings.token_embedding.weight",
        ),
        (
            "positional_embedding",
            "text_model.embeddings.position_embedding.weight",
        ),
        ("ln_final.", "text_model.final_layer_norm."),
    ];
    const LAYER: [(&str, &str); 6] = [
        ("ln_1.", "layer_norm1."),
        ("ln_2.", "layer_norm2."),
        ("attn.out_proj.", "self_attn.out_proj."),
        ("mlp.c_fc.", "mlp.fc1."),
        ("mlp.c_proj.", "mlp.fc2."),
        ("attn.in_proj_", ""),
    ];
    if ["text_projection", "logit_scale", "attn_mask"].contains(&key) {
        return Vec::new();
    }
    if let Some(new) = TOP
        .iter()
        .find_map(|(old, new)| key.strip_prefix(old).map(|rest| format!("{new}{rest}")))
    {
        return vec![(new, None)];
    }
    let Some((layer, rest)) = key
        .strip_prefix("transformer.resblocks.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(l, rest)| Some((l.parse::<usize>().ok()?, rest)))
    else {
        return vec![(key.to_string(), None)];
    };
    if layer >= layers {
        return Vec::new();
    }
    let base = format!("text_model.encoder.layers.{layer}.");
    if let Some(kind) = rest.strip_prefix("attn.in_proj_") {
        let mut part = shape.to_vec();
        part[0] /= 3;
        return ["q_proj", "k_proj", "v_proj"]
            .iter()
            .map(|p| (format!("{base}self_attn.{p}.{kind}"), Some(part.clone())))
            .collect();
    }
    let renamed = LAYER
        .iter()
        .find_map(|(old, new)| rest.strip_prefix(old).map(|r| format!("{new}{r}")))
        .unwrap_or_else(|| rest.to_string());
    vec![(format!("{base}{renamed}"), None)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_keys_follow_diffusers_converter() {
        let cases = [
            ("input_blocks.0.0.weight", "conv_in.weight"),
            (
                "input_blocks.1.0.in_layers.2.weight",
                "down_blocks.0.resnets.0.conv1.weight",
            ),
            (
                "input_blocks.2.1.proj_in.weight",
                "down_blocks.0.attentions.1.proj_in.weight",
            ),
            (
                "input_blocks.3.0.op.bias",
                "down_blocks.0.downsamplers.0.conv.bias",
            ),
            (
                "input_blocks.4.0.skip_connection.weight",
                "down_blocks.1.resnets.0.conv_shortcut.weight",
            ),
            (
                "middle_block.0.emb_layers.1.weight",
                "mid_block.resnets.0.time_emb_proj.weight",
            ),
            (
                "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
                "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
            ),
            (
                "middle_block.2.out_layers.3.bias",
                "mid_block.resnets.1.conv2.bias",
            ),
            (
                "output_blocks.2.1.conv.weight",
                "up_blocks.0.upsamplers.0.conv.weight",
            ),
            (
                "output_blocks.5.2.conv.bias",
                "up_blocks.1.upsamplers.0.conv.bias",
            ),
            (
                "output_blocks.5.1.norm.weight",
                "up_blocks.1.attentions.2.norm.weight",
            ),
            (
                "output_blocks.11.0.out_layers.0.weight",
                "up_blocks.3.resnets.2.norm2.weight",
            ),
            ("time_embed.2.bias", "time_embedding.linear_2.bias"),
            ("out.0.weight", "conv_norm_out.weight"),
        ];
        for (ldm, diffusers) in cases {
            assert_eq!(unet_key(ldm, 2), diffusers, "{ldm}");
        }
    }

    #[test]
    fn vae_keys_follow_diffusers_converter() {
        let cases = [
            (
                "encoder.down.1.block.0.nin_shortcut.weight",
                "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
            ),
            (
                "encoder.down.0.downsample.conv.weight",
                "encoder.down_blocks.0.downsamplers.0.conv.weight",
            ),
            (
                "decoder.up.3.block.2.conv1.bias",
                "decoder.up_blocks.0.resnets.2.conv1.bias",
            ),
            (
                "decoder.up.1.upsample.conv.weight",
                "decoder.up_blocks.2.upsamplers.0.conv.weight",
            ),
            (
                "encoder.mid.attn_1.proj_out.weight",
                "encoder.mid_block.attentions.0.to_out.0.weight",
            ),
            (
                "decoder.mid.block_2.norm1.bias",
                "decoder.mid_block.resnets.1.norm1.bias",
            ),
            ("decoder.norm_out.weight", "decoder.conv_norm_out.weight"),
            ("post_quant_conv.weight", "post_quant_conv.weight"),
        ];
        for (ldm, diffusers) in cases {
            assert_eq!(vae_key(ldm, 4), diffusers, "{ldm}");
        }
    }

    #[test]
    fn open_clip_in_proj_splits_in_three_and_the_last_layer_is_dropped() {
        let parts = open_clip_keys("transformer.resblocks.0.attn.in_proj_weight", &[96, 32], 2);
        let keys: Vec<&str> = parts.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "text_model.encoder.layers.0.self_attn.q_proj.weight",
                "text_model.encoder.layers.0.self_attn.k_proj.weight",
                "text_model.encoder.layers.0.self_attn.v_proj.weight",
            ]
        );
        assert!(
            parts
                .iter()
                .all(|(_, s)| s.as_deref() == Some(&[32, 32][..]))
        );
        assert!(open_clip_keys("transformer.resblocks.2.ln_1.weight", &[32], 2).is_empty());
        assert!(open_clip_keys("text_projection", &[32, 32], 2).is_empty());
    }
}
