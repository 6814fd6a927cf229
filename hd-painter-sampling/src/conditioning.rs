//! What the denoiser is conditioned on besides the latents: the text embeddings of a run, and
//! SDXL's added conditions (the pooled text embedding and the micro-conditioning time ids).

use burn::tensor::Tensor;

/// Text embeddings: the prompt and, for classifier-free guidance, the negative prompt; each
/// `[1 or batch, tokens, dim]`; which embedding positions are the prompt's own words; and, for
/// SDXL's UNets, the added conditions of both halves.
#[derive(Clone, Debug)]
pub struct TextConditioning {
    /// The (positive) prompt's embedding.
    pub positive: Tensor<3>,
    /// The negative prompt's embedding (the empty prompt's for plain guidance).
    pub negative: Tensor<3>,
    /// The positions PAIntA and RASG attend to: the user prompt's tokens and the end-of-text
    /// token of the encoded prompt ([`crate::prompt_token_indices`]).
    pub prompt_tokens: Vec<usize>,
    /// SDXL's added conditions (`None` for SD 1.x / 2.x UNets).
    pub text_time: Option<TextTimeConditioning>,
}

/// SDXL's added conditions of both guidance halves (diffusers' `add_text_embeds` and
/// `add_time_ids`), for a UNet with `addition_embed_type: "text_time"`.
#[derive(Clone, Debug)]
pub struct TextTimeConditioning {
    /// The prompt's pooled embedding `[1 or batch, width]`.
    pub positive: Tensor<2>,
    /// The negative prompt's (zeros where the negative half is zeros).
    pub negative: Tensor<2>,
    /// The pipeline's `requires_aesthetics_score`: five time ids ending in an aesthetic score
    /// (the refiner) rather than six ending in the target size.
    pub aesthetics: bool,
    /// Both halves' time ids for one image; `None` until set for the run's image size
    /// ([`TextConditioning::with_micro_conditioning`]).
    pub time_ids: Option<TimeIds>,
}

/// SDXL's time ids of one image, for each guidance half.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeIds {
    /// The prompt half's.
    pub positive: Vec<f32>,
    /// The negative half's.
    pub negative: Vec<f32>,
}

impl TextConditioning {
    /// This conditioning with SDXL's time ids for images of `size` (`[height, width]` in
    /// pixels) from `micro`; unchanged for the other models.
    pub fn with_micro_conditioning(mut self, micro: &MicroConditioning, size: [u32; 2]) -> Self {
        if let Some(added) = &mut self.text_time {
            added.time_ids = Some(micro.time_ids(size, added.aesthetics));
        }
        self
    }
}

/// SDXL's micro-conditioning, as diffusers' SDXL pipelines take it: sizes are `[height, width]`
/// in pixels, `None` meaning the size of the image the run makes (diffusers' default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MicroConditioning {
    /// `original_size`: the size the model is told the training image had.
    pub original_size: Option<[u32; 2]>,
    /// `crops_coords_top_left`: the crop it is told was taken (`[0, 0]`: centred, uncropped).
    pub crops_coords_top_left: [u32; 2],
    /// `target_size`.
    pub target_size: Option<[u32; 2]>,
    /// `aesthetic_score` (models with `requires_aesthetics_score`, the refiner): 6.0.
    pub aesthetic_score: f64,
    /// `negative_aesthetic_score`: 2.5.
    pub negative_aesthetic_score: f64,
    /// `negative_original_size` (`None`: the original size).
    pub negative_original_size: Option<[u32; 2]>,
    /// `negative_crops_coords_top_left`, which diffusers reads only with aesthetic scores (the
    /// negative half of the other models takes `crops_coords_top_left`).
    pub negative_crops_coords_top_left: [u32; 2],
    /// `negative_target_size` (`None`: the target size).
    pub negative_target_size: Option<[u32; 2]>,
}

impl Default for MicroConditioning {
    /// diffusers' defaults.
    fn default() -> Self {
        Self {
            original_size: None,
            crops_coords_top_left: [0, 0],
            target_size: None,
            aesthetic_score: 6.0,
            negative_aesthetic_score: 2.5,
            negative_original_size: None,
            negative_crops_coords_top_left: [0, 0],
            negative_target_size: None,
        }
    }
}

impl MicroConditioning {
    /// The time ids of the prompt half and the negative half for an image of `size`
    /// (`[height, width]` in pixels), as diffusers' `_get_add_time_ids` lays them out: original
    /// size, crop, then the target size (six ids), or the aesthetic score with `aesthetics`
    /// (five).
    pub fn time_ids(&self, size: [u32; 2], aesthetics: bool) -> TimeIds {
        let original = self.original_size.unwrap_or(size);
        let target = self.target_size.unwrap_or(size);
        let negative_original = self.negative_original_size.unwrap_or(original);
        let negative_target = self.negative_target_size.unwrap_or(target);
        let ids = |sizes: [[u32; 2]; 2], last: &[f32]| -> Vec<f32> {
            let mut ids: Vec<f32> = sizes.iter().flatten().map(|&v| v as f32).collect();
            ids.extend_from_slice(last);
            ids
        };
        let pair = |[h, w]: [u32; 2]| [h as f32, w as f32];
        match aesthetics {
            true => TimeIds {
                positive: ids(
                    [original, self.crops_coords_top_left],
                    &[self.aesthetic_score as f32],
                ),
                negative: ids(
                    [negative_original, self.negative_crops_coords_top_left],
                    &[self.negative_aesthetic_score as f32],
                ),
            },
            false => TimeIds {
                positive: ids([original, self.crops_coords_top_left], &pair(target)),
                negative: ids(
                    [negative_original, self.crops_coords_top_left],
                    &pair(negative_target),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ids_follow_diffusers_layout() {
        let micro = MicroConditioning {
            original_size: Some([40, 56]),
            crops_coords_top_left: [2, 6],
            negative_crops_coords_top_left: [9, 9],
            ..MicroConditioning::default()
        };
        let ids = micro.time_ids([32, 48], false);
        assert_eq!(ids.positive, [40.0, 56.0, 2.0, 6.0, 32.0, 48.0]);
        // Without aesthetic scores the negative half takes the prompt half's crop.
        assert_eq!(ids.negative, [40.0, 56.0, 2.0, 6.0, 32.0, 48.0]);
        let ids = micro.time_ids([32, 48], true);
        assert_eq!(ids.positive, [40.0, 56.0, 2.0, 6.0, 6.0]);
        assert_eq!(ids.negative, [40.0, 56.0, 9.0, 9.0, 2.5]);
        let negative = MicroConditioning {
            negative_original_size: Some([8, 8]),
            negative_target_size: Some([16, 16]),
            ..MicroConditioning::default()
        };
        let ids = negative.time_ids([32, 48], false);
        assert_eq!(ids.positive, [32.0, 48.0, 0.0, 0.0, 32.0, 48.0]);
        assert_eq!(ids.negative, [8.0, 8.0, 0.0, 0.0, 16.0, 16.0]);
    }
}
