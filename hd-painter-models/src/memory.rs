//! What a run holds in memory, estimated before it starts ([`MemoryEstimate`]): the weights
//! exactly, and the working set of each phase, from the models' widths and the run's size.
//!
//! The working sets count the activations alive at a block's peak: at every UNet level the
//! skip connections the up path keeps (3 per level: the level's two resnets or transformers and
//! its downsampler), plus the largest block's: a transformer's feed-forward (the input, its
//! norm, GEGLU's 8 C projection and 4 C gate, the 4 C output: 17 C per token) on the levels
//! with attention, a resnet's 5 C elsewhere. In the VAE's encoder, its first level's resnet
//! input and two convolutions (3 of its channels per pixel); in its decoder, where an upsampler
//! hands a level's channels to the next resolution, its output and the convolution after it
//! (2 of the upper level's channels per pixel) and the next resnet's output (1 of the lower
//! level's). Each attention adds its scores and their softmax (8 heads in the UNet, at most
//! the chunking budget) and its keys and values packed once. Measured against the resident
//! memory of full-size runs in the README (SDXL, and the SR stage at 2048 px). RASG's backward
//! (it keeps the UNet's down path) is not included.

use burn::module::Module;
use burn::tensor::FloatDType;

use crate::attention::DEFAULT_SCORE_BUDGET;
use crate::brushnet::BrushNetModel;
use crate::pipeline::StableDiffusionModels;
use crate::unet::Unet2DConditionModel;
use crate::vae::AutoencoderKl;

/// A run's memory by phase, in bytes ([`StableDiffusionModels::memory_estimate`], and the SR
/// stage's `Upscaler::memory_estimate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Every model's weights as stored.
    pub weights: u64,
    /// Encoding the image (the VAE's encoder).
    pub vae_encode: u64,
    /// One UNet step (both guidance halves of every image).
    pub unet_step: u64,
    /// Decoding the result.
    pub vae_decode: u64,
}

impl MemoryEstimate {
    /// The weights plus the largest phase (the phases are not alive together).
    pub fn peak(&self) -> u64 {
        self.weights + self.largest_phase()
    }

    fn largest_phase(&self) -> u64 {
        self.vae_encode.max(self.unet_step).max(self.vae_decode)
    }
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        write!(
            f,
            "{:.2} GiB (weights {:.2} GiB; at most {:.2} GiB more: VAE encode {:.2} GiB, a UNet \
             step {:.2} GiB, VAE decode {:.2} GiB)",
            gib(self.peak()),
            gib(self.weights),
            gib(self.largest_phase()),
            gib(self.vae_encode),
            gib(self.unet_step),
            gib(self.vae_decode)
        )
    }
}

/// Bytes of one element of `dtype`.
fn bytes(dtype: FloatDType) -> u64 {
    match dtype {
        FloatDType::F64 => 8,
        FloatDType::F32 | FloatDType::Flex32 => 4,
        _ => 2,
    }
}

/// An attention over `tokens` queries and keys of `channels` for `rows_heads` rows x heads, as
/// the chunked attention computes it, in bytes (f32): the scores and their softmax (at most
/// the budget each) and the keys and values packed once.
fn attention(rows_heads: u64, tokens: u64, channels: u64) -> u64 {
    let scores = (rows_heads * tokens * tokens).min(DEFAULT_SCORE_BUDGET as u64);
    4 * (2 * scores + 2 * tokens * channels)
}

/// `module`'s parameters stored as `dtype`, in bytes.
fn params<M: Module>(module: &M, dtype: FloatDType) -> u64 {
    module.num_params() as u64 * bytes(dtype)
}

impl StableDiffusionModels {
    /// The memory a run of `images` images at `[height, width]` pixels holds, with
    /// classifier-free guidance (two UNet rows per image) when `guided`: see [`MemoryEstimate`]
    /// for what it counts.
    pub fn memory_estimate(
        &self,
        [height, width]: [usize; 2],
        images: usize,
        guided: bool,
    ) -> MemoryEstimate {
        let mut weights = self.unet.weight_bytes()
            + self.vae.weight_bytes()
            + params(&self.text_encoder, self.text_encoder.dtype());
        if let Some(sdxl) = &self.sdxl {
            weights += params(&sdxl.text_encoder_2, sdxl.text_encoder_2.dtype());
        }
        let down = self.vae.downscale();
        let latent = [height.div_ceil(down), width.div_ceil(down)];
        let pixels = [latent[0] * down, latent[1] * down];
        let rows = images * if guided { 2 } else { 1 };
        MemoryEstimate {
            weights,
            vae_encode: self.vae.encode_memory(pixels, images),
            unet_step: self.unet.step_memory(latent, rows),
            vae_decode: self.vae.decode_memory(pixels, images),
        }
    }
}

impl Unet2DConditionModel {
    /// The weights as stored, in bytes.
    pub fn weight_bytes(&self) -> u64 {
        params(self, self.dtype())
    }

    /// The working set of one forward pass of `rows` rows at a `[height, width]` latent, in
    /// bytes: every level's skip connections and its largest block, and the attention at the
    /// finest attention grid ([`MemoryEstimate`]).
    pub fn step_memory(&self, [h, w]: [usize; 2], rows: usize) -> u64 {
        let (channels, attention_at) = (self.block_out_channels(), self.attention_levels());
        let at = |level: usize| (h.div_ceil(1 << level) * w.div_ceil(1 << level)) as u64;
        let per_row = unet_row(channels, &attention_at, [h, w]);
        let finest = attention_at.iter().position(|&a| a);
        let scores = finest.map_or(0, |level| {
            attention(8 * rows as u64, at(level), channels[level] as u64)
        });
        rows as u64 * per_row * bytes(self.compute_dtype()) + scores
    }
}

impl AutoencoderKl {
    /// The weights as stored, in bytes.
    pub fn weight_bytes(&self) -> u64 {
        params(self, self.dtype())
    }

    /// The working set of encoding `images` images of `[height, width]` pixels at once, in
    /// bytes: the first level's maps at full resolution and the mid block's attention.
    pub fn encode_memory(&self, [h, w]: [usize; 2], images: usize) -> u64 {
        let first = self.block_out_channels().first().copied().unwrap_or(0) as u64;
        let maps = 3 * first * (h * w) as u64;
        self.working_set(maps, [h, w], images)
    }

    /// The working set of decoding `images` images to `[height, width]` pixels at once, in
    /// bytes: each upsampler's output resolution and the mid block's attention.
    pub fn decode_memory(&self, [h, w]: [usize; 2], images: usize) -> u64 {
        let maps = decoder_peak(self.block_out_channels(), [h, w]);
        self.working_set(maps, [h, w], images)
    }

    /// `maps` elements per image, plus the mid block's attention over the latent of `[h, w]`.
    fn working_set(&self, maps: u64, [h, w]: [usize; 2], images: usize) -> u64 {
        let down = self.downscale();
        let tokens = (h.div_ceil(down) * w.div_ceil(down)) as u64;
        let deepest = self.block_out_channels().last().copied().unwrap_or(0) as u64;
        images as u64 * (maps * bytes(self.compute_dtype()) + attention(1, tokens, deepest))
    }
}

impl BrushNetModel {
    /// The branch's weights as stored, in bytes (held beside the base models'
    /// [`MemoryEstimate::weights`]).
    pub fn weight_bytes(&self) -> u64 {
        params(self, self.dtype())
    }
}

/// Elements alive at a UNet step's peak for one row at a `[h, w]` latent: the skip connections
/// of every level and the largest block (a transformer's feed-forward on the levels with
/// `attention`, a resnet elsewhere).
fn unet_row(channels: &[usize], attention: &[bool], [h, w]: [usize; 2]) -> u64 {
    let per_level = channels.iter().enumerate().map(|(level, &c)| {
        let tokens = (h.div_ceil(1 << level) * w.div_ceil(1 << level)) as u64;
        let block = if attention.get(level) == Some(&true) {
            17
        } else {
            5
        };
        (c as u64 * tokens, block * c as u64 * tokens)
    });
    let (skips, largest) = per_level.fold((0, 0), |(sum, max), (ct, block)| {
        (sum + 3 * ct, max.max(block))
    });
    skips + largest
}

/// Elements alive at the decoder's peak for an output of `[h, w]` pixels: the decoder runs the
/// levels from the coarsest (level `k` has the channels of `channels[n - 1 - k]`), and each
/// upsampler hands them to the next, twice as fine, resolution (2 of the upper level's
/// channels, 1 of the lower one's per pixel).
fn decoder_peak(channels: &[usize], [h, w]: [usize; 2]) -> u64 {
    let n = channels.len();
    (0..n.saturating_sub(1))
        .map(|k| {
            // Upsampler `k` outputs at 2^(n - 2 - k) times below the full resolution.
            let shift = n - 2 - k;
            let at = (h.div_ceil(1 << shift) * w.div_ceil(1 << shift)) as u64;
            let (upper, lower) = (channels[n - 1 - k] as u64, channels[n - 2 - k] as u64);
            (2 * upper + lower) * at
        })
        .max()
        .unwrap_or_else(|| channels.first().copied().unwrap_or(0) as u64 * (h * w) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SD's VAE at 1024 px: the last upsampler hands 256 channels to the full resolution,
    /// where 2 x 256 + 128 = 640 floats per pixel are alive.
    #[test]
    fn the_decoder_peaks_where_the_last_upsampler_reaches_full_resolution() {
        let sd = [128, 256, 512, 512];
        assert_eq!(decoder_peak(&sd, [1024, 1024]), 640 * 1024 * 1024);
        // The x4 upscaler's f = 4 VAE at 2048 px: the same last level.
        let x4 = [128, 256, 512];
        assert_eq!(decoder_peak(&x4, [2048, 2048]), 640 * 2048 * 2048);
        // A single level has no upsampler: its maps at full resolution.
        assert_eq!(decoder_peak(&[64], [16, 16]), 64 * 256);
    }

    /// SD 2's UNet at a 64 x 64 latent: 3 skips per level (320 x 4096 + 640 x 1024 + 1280 x
    /// 256 + 1280 x 64 elements) and the first level's feed-forward, 17 x 320 x 4096.
    #[test]
    fn a_unet_row_holds_every_levels_skips_and_the_largest_block() {
        let channels = [320, 640, 1280, 1280];
        let levels = 320 * 4096 + 640 * 1024 + 1280 * 256 + 1280 * 64;
        let sd2 = [true, true, true, false];
        assert_eq!(
            unet_row(&channels, &sd2, [64, 64]),
            3 * levels + 17 * 320 * 4096
        );
        // SDXL at 128 x 128: no attention at the first level, so the second level's
        // feed-forward (17 x 640 x 4096) outweighs the first's resnets (5 x 320 x 16384).
        let sdxl = [320 * 16384, 640 * 4096, 1280 * 1024];
        assert_eq!(
            unet_row(&[320, 640, 1280], &[false, true, true], [128, 128]),
            3 * sdxl.iter().sum::<u64>() + 17 * 640 * 4096
        );
        // Odd sizes round each level up, as the downsamplers' padding does.
        let odd = unet_row(&[8, 16], &[true, true], [5, 3]);
        assert_eq!(odd, 3 * (8 * 15 + 16 * 6) + 17 * 8 * 15);
    }

    #[test]
    fn the_scores_stop_at_the_chunking_budget() {
        assert_eq!(attention(2, 100, 8), 4 * (2 * 2 * 100 * 100 + 2 * 100 * 8));
        let budget = DEFAULT_SCORE_BUDGET as u64;
        assert_eq!(
            attention(80, 16384, 640),
            4 * (2 * budget + 2 * 16384 * 640)
        );
    }
}
