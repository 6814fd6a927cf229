//! What an SR run will need, estimated from the models' widths and the sizes before any heavy
//! work, so that a run that cannot fit fails early.

use burn::module::Module;
use hd_painter_models::{AutoencoderKl, Unet2DConditionModel};

/// f32 feature maps alive at once at the widest point of a convolution block: the input, the
/// group-norm output, the convolution output and the residual sum (checked against the peak RSS
/// measured at 2048 px, see the README).
const LIVE_MAPS: u64 = 4;
const F32: u64 = 4;

/// Estimated peak memory of an SR run by phase, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The UNet's and VAE's f32 weights.
    pub weights: u64,
    /// Encoding the padded original (with the mid-block's attention chunks).
    pub vae_encode: u64,
    /// One guided UNet step (batch 2).
    pub unet_step: u64,
    /// Decoding the result.
    pub vae_decode: u64,
}

impl MemoryEstimate {
    /// The weights plus the largest phase.
    pub fn peak(&self) -> u64 {
        self.weights + self.vae_encode.max(self.unet_step).max(self.vae_decode)
    }

    /// The estimate for an x4 run whose VAE sees `image` pixels at once (the padded original, or
    /// a tile) at a `latent` size (width, height), with attention scores chunked under
    /// `score_budget` elements.
    pub(crate) fn for_upscale(
        unet: &Unet2DConditionModel,
        vae: &AutoencoderKl,
        image: (u32, u32),
        latent: (u32, u32),
        score_budget: usize,
    ) -> Self {
        let pixels =
            |(w, h): (u32, u32), level: usize| u64::from(w >> level) * u64::from(h >> level);
        // Per level, the widest feature map: a level's own width, or the next level's where the
        // decoder upsamples it to this resolution before narrowing.
        let widest = |channels: &[usize], size: (u32, u32)| {
            (0..channels.len())
                .map(|l| {
                    let c = channels[l].max(*channels.get(l + 1).unwrap_or(&0)) as u64;
                    c * pixels(size, l)
                })
                .max()
                .unwrap_or(0)
        };
        // Scores and their softmax: the whole matrix of the lowest level's tokens, or a chunk;
        // and the keys and values packed once for all blocks of queries.
        let attention = |size: (u32, u32), channels: &[usize]| {
            let levels = channels.len();
            let tokens = pixels(size, levels.saturating_sub(1));
            let packed = 2 * tokens * channels.last().copied().unwrap_or(0) as u64;
            (2 * tokens.saturating_mul(tokens).min(score_budget as u64) + packed) * F32
        };
        let (vae_channels, unet_channels) = (vae.block_out_channels(), unet.block_out_channels());
        let vae_maps =
            LIVE_MAPS * widest(vae_channels, image) * F32 + attention(image, vae_channels);
        let unet_maps =
            2 * LIVE_MAPS * widest(unet_channels, latent) * F32 + attention(latent, unet_channels);
        Self {
            weights: (unet.num_params() + vae.num_params()) as u64 * F32,
            vae_encode: vae_maps,
            unet_step: unet_maps,
            vae_decode: vae_maps,
        }
    }
}
