//! LoRA: low-rank weight deltas from the files users train and share, merged into the UNet and
//! the text encoder (see [`StableDiffusionModels::fuse_lora`]).
//!
//! | format | keys | alpha |
//! |---|---|---|
//! | kohya-ss / Automatic1111 | `lora_unet_{module}.lora_down.weight`, `.lora_up.weight`, `lora_te_{module}...` (module names with `_` for `.`) | `.alpha` per layer, else the rank |
//! | diffusers / PEFT | `unet.{module}.lora_A.weight`, `.lora_B.weight`, `text_encoder.{module}...`; also `.lora.down` / `.lora.up` and `.lora_linear_layer.down` / `.up` | `lora_adapter_metadata` (`lora_alpha`, `alpha_pattern`, `use_rslora`), else the rank |
//!
//! Linear layers and convolutions (LoCon: 3x3 down factors with 1x1 up factors) of both models
//! are LoRA-able; the module names are diffusers' and transformers' (`text_model.` prefix or
//! not), as kohya-ss' `sd-scripts` writes them for SD 1.x and 2.x.

mod file;
mod fuse;
mod names;

pub use file::{Lora, LoraComponent, LoraFormat};

use crate::error::{ModelsError, Result};
use crate::pipeline::StableDiffusionModels;

impl StableDiffusionModels {
    /// Merges `lora` at `scale` into the weights (diffusers' `load_lora_weights` then
    /// `fuse_lora(lora_scale=scale)`): `W += scale * alpha / rank * up @ down` for every layer,
    /// in f32, stored back in the weights' dtype (f16 / bf16 weights round once). Several LoRAs
    /// fuse one after the other. Every layer must name a weight of these models with the
    /// shapes it has: otherwise [`ModelsError::Weights`] lists the layers that fit nothing
    /// (`unexpected`: a LoRA for another model family, e.g. SDXL's `lora_te2_` or its extra
    /// transformer blocks) and those of the wrong shape (`mismatched`: an SD 1.x LoRA on SD 2),
    /// and no weight has changed.
    pub fn fuse_lora(&mut self, lora: &Lora, scale: f32) -> Result<()> {
        if !scale.is_finite() {
            return Err(ModelsError::Incompatible {
                what: format!("fusing {}", lora.path.display()),
                reason: format!("the scale is {scale}: expected a finite number"),
            });
        }
        let device = self.unet.device();
        let unet_targets = fuse::targets(&self.unet);
        let unet_names = names::LayerNames::new(LoraComponent::Unet, unet_targets.keys());
        let text_targets = fuse::targets(&self.text_encoder);
        let text_names = names::LayerNames::new(LoraComponent::TextEncoder, text_targets.keys());
        let unet = fuse::plan(lora, LoraComponent::Unet, &unet_targets, |m| {
            unet_names.resolve(m)
        });
        let text = fuse::plan(lora, LoraComponent::TextEncoder, &text_targets, |m| {
            text_names.resolve(m)
        });
        let (unet, text) = match (unet, text) {
            (Ok(unet), Ok(text)) => (unet, text),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
            // Both components' misfits in one error.
            (Err(unet), Err(text)) => return Err(merge_errors(unet, text)),
        };
        self.unet = fuse::apply(self.unet.clone(), unet, scale, &device);
        self.text_encoder = fuse::apply(self.text_encoder.clone(), text, scale, &device);
        Ok(())
    }

    /// Takes a fused `lora` back out: [`fuse_lora`](Self::fuse_lora) with `-scale`, as PEFT's
    /// `unmerge` subtracts the delta (exact up to f32 rounding for f32 weights; f16 / bf16
    /// weights round again).
    pub fn unfuse_lora(&mut self, lora: &Lora, scale: f32) -> Result<()> {
        self.fuse_lora(lora, -scale)
    }
}

/// The UNet's and the text encoder's [`ModelsError::Weights`] as one.
fn merge_errors(unet: ModelsError, text: ModelsError) -> ModelsError {
    match (unet, text) {
        (
            ModelsError::Weights {
                path,
                missing,
                mut unexpected,
                mut mismatched,
            },
            ModelsError::Weights {
                unexpected: more,
                mismatched: more_shapes,
                ..
            },
        ) => {
            unexpected.extend(more);
            mismatched.extend(more_shapes);
            ModelsError::Weights {
                path,
                missing,
                unexpected,
                mismatched,
            }
        }
        (first, _) => first,
    }
}
