//! What HD-Painter's PAIntA and RASG attend to: the prompt's own tokens and the hole, at every
//! attention resolution of the UNet.

use std::collections::HashMap;

use std::ops::Range;

use burn::tensor::{Device, Int, Tensor, TensorData};
use hd_painter_core::{Filter, Mask};
use hd_painter_models::ClipTokenizer;

use crate::error::{Result, SamplingError};

/// HD-Painter's default positive prompt, appended to the user's prompt after `", "`.
pub const HD_PAINTER_POSITIVE_PROMPT: &str = "Full HD, 4K, high quality, high resolution";

/// HD-Painter's default negative prompt (the official demo's).
pub const HD_PAINTER_NEGATIVE_PROMPT: &str = "text, bad anatomy, bad proportions, blurry, cropped, \
deformed, disfigured, duplicate, error, extra limbs, gross proportions, jpeg artifacts, long neck, \
low quality, lowres, malformed, morbid, mutated, mutilated, out of frame, ugly, worst quality";

/// The prompt as HD-Painter encodes it: `"{prompt}, {positive}"`, or the prompt alone when
/// `positive` is empty.
pub fn full_prompt(prompt: &str, positive: &str) -> String {
    if positive.is_empty() {
        prompt.to_owned()
    } else {
        format!("{prompt}, {positive}")
    }
}

/// The token positions PAIntA and RASG sum over (the official `token_idx`): the user prompt's own
/// tokens `1..n` plus the position of the end-of-text token of `full_prompt`, both tokenized as
/// the text encoder sees them (77 tokens, truncated).
///
/// An empty prompt leaves the end-of-text token alone. A prompt longer than the 75 tokens the
/// text encoder takes is truncated like the encoder input: its first 75 tokens and the
/// end-of-text at position 76 (the positive prompt then falls outside the encoder's window).
pub fn prompt_token_indices(
    tokenizer: &ClipTokenizer,
    prompt: &str,
    full_prompt: &str,
) -> Vec<usize> {
    let end_of_text = |text: &str| {
        tokenizer
            .encode_padded(text)
            .iter()
            .position(|&id| id == tokenizer.eos_id())
            .unwrap_or(tokenizer.max_length() - 1)
    };
    let mut indices: Vec<usize> = (1..end_of_text(prompt)).collect();
    indices.push(end_of_text(full_prompt));
    indices
}

/// The batch rows of the conditional images: the second half of a classifier-free-guidance
/// batch `[negative..., positive...]` when `guided`, else the whole batch.
pub(crate) fn conditional_rows(batch: usize, guided: bool) -> Range<usize> {
    if guided { batch / 2..batch } else { 0..batch }
}

/// The prompt's token positions and the hole at every attention grid of the UNet: what PAIntA
/// and RASG measure the prompt's attention against.
#[derive(Clone, Debug)]
pub struct PromptFocus {
    tokens: Vec<usize>,
    latent: [usize; 2],
    /// The hole (0 / 1 per token) at the latent grid reduced 1, 2, 4 and 8 times, where exact.
    grids: HashMap<[usize; 2], Vec<f32>>,
}

impl PromptFocus {
    /// `tokens`: positions in the text embedding (see [`prompt_token_indices`]); `hole`: the
    /// binary hole mask at the padded image's size (255 = hole); `latent`: the latent grid
    /// `[height, width]` the UNet runs on. The hole at each attention grid is the mask resized
    /// with bicubic resampling (Pillow's), then `> 0.5`, as the official code does.
    pub fn new(tokens: Vec<usize>, hole: &Mask, latent: [usize; 2]) -> Result<Self> {
        if tokens.is_empty() {
            return Err(SamplingError::InvalidInput(
                "a prompt focus needs at least one token position".into(),
            ));
        }
        let [lh, lw] = latent;
        if lh == 0 || lw == 0 {
            return Err(SamplingError::InvalidInput(format!(
                "latent grid {latent:?} for a prompt focus"
            )));
        }
        let mut grids = HashMap::new();
        for r in [1, 2, 4, 8] {
            if lh % r != 0 || lw % r != 0 {
                break;
            }
            let (h, w) = (lh / r, lw / r);
            let small = hole
                .resize(w as u32, h as u32, Filter::Bicubic)?
                .threshold(127);
            let values = small
                .raster()
                .as_slice()
                .iter()
                .map(|&p| f32::from(p) / 255.0)
                .collect();
            grids.insert([h, w], values);
        }
        Ok(Self {
            tokens,
            latent,
            grids,
        })
    }

    /// The token positions.
    pub fn tokens(&self) -> &[usize] {
        &self.tokens
    }

    /// The prompt's columns of text-attention maps: `[images, queries, text tokens]` ->
    /// `[images, queries, prompt tokens]`.
    pub fn prompt_columns(&self, maps: Tensor<3>) -> Tensor<3> {
        let picked = Tensor::<1, Int>::from_data(
            TensorData::new(
                self.tokens.iter().map(|&t| t as i64).collect(),
                [self.tokens.len()],
            ),
            &maps.device(),
        );
        maps.select(2, picked)
    }

    /// The latent grid `[height, width]`.
    pub fn latent(&self) -> [usize; 2] {
        self.latent
    }

    /// How many times smaller than the latent an attention grid is (2 for the grid of SD's
    /// `down_blocks.1` / `up_blocks.2`, 4 for `down_blocks.2` / `up_blocks.1`), when it is an
    /// exact reduction.
    pub fn reduction(&self, height: usize, width: usize) -> Option<usize> {
        self.grids
            .contains_key(&[height, width])
            .then(|| self.latent[0] / height)
    }

    /// The hole at an attention grid `[height, width]`, as `[height * width]` of 0 / 1
    /// (1 = hole); `None` for a grid that is not an exact reduction of the latent.
    pub fn hole_at(&self, grid: [usize; 2], device: &Device) -> Option<Tensor<1>> {
        let values = self.grids.get(&grid)?;
        Some(Tensor::from_data(
            TensorData::new(values.clone(), [values.len()]),
            device,
        ))
    }

    /// How many tokens of an attention grid are hole.
    pub fn hole_tokens(&self, grid: [usize; 2]) -> Option<usize> {
        let values = self.grids.get(&grid)?;
        Some(values.iter().filter(|&&v| v > 0.0).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conditional_rows_are_the_positive_half_when_guided() {
        assert_eq!(conditional_rows(4, true), 2..4);
        assert_eq!(conditional_rows(2, true), 1..2);
        assert_eq!(conditional_rows(3, false), 0..3);
    }
}
