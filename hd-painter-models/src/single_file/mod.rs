//! Original-layout (CompVis / Stability) single-file checkpoints, as published for SD 1.5, SD 2
//! inpainting and SDXL: one `.safetensors` holding the UNet under `model.diffusion_model.`, the
//! VAE under `first_stage_model.` and the text encoder under `cond_stage_model.` (CLIP's
//! transformers layout for SD 1.x, OpenCLIP's for SD 2.x), or SDXL's two under
//! `conditioner.embedders.0.transformer.` (CLIP) and `conditioner.embedders.1.model.`
//! (OpenCLIP with its projection). The keys are renamed to the diffusers layout at load time
//! following diffusers' `single_file_utils` converters; every converted tensor but OpenCLIP's
//! projection is a view of the memory-mapped file (the fused `in_proj` splits along its first
//! dimension, the VAE's 1x1 attention convolutions only change shape; the projection matrix is
//! transposed into a linear weight), serialised once per component for the weight loader.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{ModelsError, Result};
use crate::weights::WeightSource;

mod keys;

use keys::{Part, open_clip_keys, unet_key, vae_key};

/// The UNet's key prefix.
pub(crate) const UNET_PREFIX: &str = "model.diffusion_model.";
/// The VAE's key prefixes in whole checkpoints (diffusers' `LDM_VAE_KEYS`); a VAE-only file
/// has none.
const VAE_PREFIXES: [&str; 2] = ["first_stage_model.", "vae."];
/// SD 1.x's text encoder (transformers' CLIP layout under this prefix).
const CLIP_PREFIX: &str = "cond_stage_model.transformer.";
/// SD 2.x's text encoder (OpenCLIP's layout under this prefix).
const OPEN_CLIP_PREFIX: &str = "cond_stage_model.model.";
/// SDXL's first text encoder (transformers' CLIP layout under this prefix).
const SDXL_CLIP_PREFIX: &str = "conditioner.embedders.0.transformer.";
/// SDXL's second text encoder (OpenCLIP's layout, with its projection, under this prefix).
const SDXL_OPEN_CLIP_PREFIX: &str = "conditioner.embedders.1.model.";

/// A memory-mapped single-file checkpoint.
pub(crate) struct Checkpoint {
    path: std::path::PathBuf,
    map: memmap2::Mmap,
}

/// One converted tensor: its diffusers key, dtype, shape and bytes (in the file, or a
/// transposed copy).
struct Converted<'a> {
    key: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

/// The text encoder layouts of the published checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextLayout {
    /// SD 1.x: transformers' `CLIPTextModel` keys.
    Clip,
    /// SD 2.x: OpenCLIP's `resblocks` with fused q/k/v.
    OpenClip,
    /// SDXL: CLIP's keys for the first encoder, OpenCLIP's with the projection for the second.
    Sdxl,
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
        let has = |prefix: &str| names.iter().any(|k| k.starts_with(prefix));
        if has(CLIP_PREFIX) {
            Ok(TextLayout::Clip)
        } else if has(OPEN_CLIP_PREFIX) {
            Ok(TextLayout::OpenClip)
        } else if has(SDXL_CLIP_PREFIX) && has(SDXL_OPEN_CLIP_PREFIX) {
            Ok(TextLayout::Sdxl)
        } else {
            Err(self.not_found(
                "a text encoder (cond_stage_model.transformer.*, cond_stage_model.model.*, or \
                 SDXL's conditioner.embedders.0.transformer.* and conditioner.embedders.1.model.*)",
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

    /// The UNet's tensors in the diffusers layout (`layers_per_block` from its config;
    /// `text_time`: SDXL's added embedding, stored as `label_emb.0.*`).
    pub(crate) fn unet(&self, layers_per_block: usize, text_time: bool) -> Result<WeightSource> {
        self.convert(UNET_PREFIX, |key, _| {
            vec![Part::renamed(unet_key(key, layers_per_block, text_time))]
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
            vec![match linear {
                true => Part::reshaped(new, vec![shape[0], shape[1]]),
                false => Part::renamed(new),
            }]
        })
    }

    /// The (first) text encoder's tensors in transformers' layout; OpenCLIP layers from
    /// `layers` on (SD 2's last one, which the pipeline never uses) are dropped as diffusers
    /// drops them.
    pub(crate) fn text_encoder(&self, layout: TextLayout, layers: usize) -> Result<WeightSource> {
        let clip = |key: &str, _: &[usize]| vec![Part::renamed(key.to_string())];
        match layout {
            TextLayout::Clip => self.convert(CLIP_PREFIX, clip),
            TextLayout::Sdxl => self.convert(SDXL_CLIP_PREFIX, clip),
            TextLayout::OpenClip => self.convert(OPEN_CLIP_PREFIX, |key, shape| {
                open_clip_keys(key, shape, layers, false)
            }),
        }
    }

    /// SDXL's second text encoder in transformers' `CLIPTextModelWithProjection` layout, its
    /// first `layers` layers (all of them in the published files).
    pub(crate) fn text_encoder_2(&self, layers: usize) -> Result<WeightSource> {
        self.convert(SDXL_OPEN_CLIP_PREFIX, |key, shape| {
            open_clip_keys(key, shape, layers, true)
        })
    }

    /// Every tensor under `prefix`, renamed by `rename(key without prefix, shape)` into zero or
    /// more parts; several parts split the tensor evenly along its first dimension.
    fn convert(
        &self,
        prefix: &str,
        rename: impl Fn(&str, &[usize]) -> Vec<Part>,
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
            for (i, part) in parts.into_iter().enumerate() {
                let bits = view.dtype().bitsize();
                let (shape, data) = match (part.transposed, view.shape()) {
                    (true, &[rows, cols]) if bits % 8 == 0 => (
                        vec![cols, rows],
                        Cow::Owned(transpose(data, [rows, cols], bits / 8)),
                    ),
                    (true, other) => {
                        return Err(ModelsError::Malformed {
                            path: self.path.clone(),
                            reason: format!(
                                "tensor {name}: {:?} of shape {other:?}, expected a matrix of \
                                 whole-byte elements",
                                view.dtype()
                            ),
                        });
                    }
                    (false, shape) => (
                        part.shape.unwrap_or_else(|| shape.to_vec()),
                        Cow::Borrowed(&data[i * chunk..(i + 1) * chunk]),
                    ),
                };
                converted.push(Converted {
                    key: part.key,
                    dtype: view.dtype(),
                    shape,
                    data,
                });
            }
        }
        if converted.is_empty() {
            return Err(self.not_found(&format!("tensors under `{prefix}`")));
        }
        let views: BTreeMap<String, TensorView<'_>> = converted
            .iter()
            .map(|c| {
                let view = TensorView::new(c.dtype, c.shape.clone(), &c.data).map_err(|e| {
                    ModelsError::Malformed {
                        path: self.path.clone(),
                        reason: format!("tensor {prefix}{}: {e}", c.key),
                    }
                })?;
                Ok((c.key.clone(), view))
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

/// A row-major `[rows, cols]` matrix of `size`-byte elements, transposed.
fn transpose(data: &[u8], [rows, cols]: [usize; 2], size: usize) -> Vec<u8> {
    let mut out = vec![0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            let (from, to) = ((r * cols + c) * size, (c * rows + r) * size);
            out[to..to + size].copy_from_slice(&data[from..from + size]);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_whole_elements() {
        // [[1, 2, 3], [4, 5, 6]] of 2-byte elements.
        let data: Vec<u8> = (1..=6u16).flat_map(|v| v.to_le_bytes()).collect();
        let out = transpose(&data, [2, 3], 2);
        let values: Vec<u16> = out
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(values, [1, 4, 2, 5, 3, 6]);
    }
}
