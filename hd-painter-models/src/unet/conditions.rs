//! What a UNet is conditioned on besides its timesteps and text context: the x4 upscaler's class
//! labels and SDXL's added conditions (`added_cond_kwargs`).

use burn::tensor::{Device, FloatDType, Tensor};

use super::{TextTimeConfig, Unet2DConditionModel, shape_error};
use crate::blocks::sinusoidal_features;
use crate::error::Result;

/// A UNet call's conditions besides the timesteps and the text context. Each is for the UNets
/// that have its embedding; `Conditions::default()` (none) is what SD 1.x / 2.x take.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conditions<'a> {
    /// One class label per batch item, for a UNet with a class embedding (the x4 upscaler's
    /// noise level); required there, ignored elsewhere, as in diffusers.
    pub class_labels: Option<&'a [i64]>,
    /// SDXL's added conditions, for a UNet with `addition_embed_type: "text_time"`; required
    /// there and refused elsewhere.
    pub text_time: Option<TextTime<'a>>,
}

impl<'a> Conditions<'a> {
    /// The class labels alone (or none).
    pub fn labels(class_labels: Option<&'a [i64]>) -> Self {
        Self {
            class_labels,
            text_time: None,
        }
    }

    /// SDXL's added conditions alone.
    pub fn text_time(text_embeds: &'a Tensor<2>, time_ids: &'a [f32]) -> Self {
        Self {
            class_labels: None,
            text_time: Some(TextTime {
                text_embeds,
                time_ids,
            }),
        }
    }
}

/// SDXL's `added_cond_kwargs`: the pooled text embedding and the micro-conditioning time ids
/// (original height and width, crop top and left, target height and width: six per image; the
/// refiner's five end with the aesthetic score instead of the target size).
#[derive(Clone, Copy, Debug)]
pub struct TextTime<'a> {
    /// `text_embeds` `[batch, width]`: the second text encoder's pooled projection.
    pub text_embeds: &'a Tensor<2>,
    /// `time_ids` `[batch, ids]`, row-major.
    pub time_ids: &'a [f32],
}

impl TextTime<'_> {
    /// The input of `unet`'s `add_embedding` for `batch` images: the pooled text embedding
    /// followed by a sinusoid of each time id (`add_time_proj`, with the time embedding's
    /// `flip_sin_to_cos` and `freq_shift`), `config.input_dim` wide in all.
    pub(super) fn features(
        &self,
        unet: &Unet2DConditionModel,
        config: TextTimeConfig,
        batch: usize,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let (channels, width) = (config.time_embed_dim, config.input_dim);
        let [b, text] = self.text_embeds.dims();
        let ids = width.saturating_sub(text) / channels;
        if b != batch || text + ids * channels != width {
            let expected = format!("[{batch}, {width} - {channels} x time ids]");
            return Err(shape_error("SDXL text_embeds", expected, vec![b, text]));
        }
        if self.time_ids.len() != batch * ids {
            let expected = format!("{ids} time ids for each of {batch} images");
            return Err(shape_error(
                "SDXL time_ids",
                expected,
                vec![self.time_ids.len()],
            ));
        }
        let (flip, shift) = (unet.flip_sin_to_cos, unet.freq_shift);
        let sinusoids = sinusoidal_features(self.time_ids, channels, flip, shift, device)
            .reshape([batch, ids * channels]);
        let text = self
            .text_embeds
            .clone()
            .cast(FloatDType::F32)
            .to_device(device);
        Ok(Tensor::cat(vec![text, sinusoids], 1))
    }
}
