//! Inpainting strategies for the shared loop: Stable Inpainting's 9-channel conditioning and
//! Blended Latent Diffusion's per-step blending.

use burn::tensor::Tensor;

use hd_painter_core::{NoiseStream, seeded_noise, sub_seed};

use crate::ddim::StepOutput;
use crate::strategy::{LatentStrategy, StepPosition};

/// Stable Inpainting (9-channel UNets): the UNet sees `[x_t, mask, masked-image latents]`.
#[derive(Clone, Debug)]
pub struct StableInpainting {
    hole: Tensor<4>,
    masked_latents: Tensor<4>,
}

impl StableInpainting {
    /// The `hole` `[1 or n, 1, h, w]` (1 = to fill) and `masked_latents` `[1 or n, 4, h, w]`
    /// (the scaled VAE latents of the image with the hole zeroed) at the latent resolution.
    pub fn new(hole: Tensor<4>, masked_latents: Tensor<4>) -> Self {
        Self {
            hole,
            masked_latents,
        }
    }
}

impl LatentStrategy for StableInpainting {
    fn model_input(&self, latents: Tensor<4>) -> Tensor<4> {
        let n = latents.dims()[0];
        Tensor::cat(
            vec![
                latents,
                to_batch(&self.hole, n),
                to_batch(&self.masked_latents, n),
            ],
            1,
        )
    }
}

/// A strategy's per-image tensor for a batch of `n`: as is when it has `n` rows, its single row
/// repeated otherwise.
pub fn to_batch<const D: usize>(t: &Tensor<D>, n: usize) -> Tensor<D> {
    if t.dims()[0] == n {
        t.clone()
    } else {
        t.clone().repeat_dim(0, n)
    }
}

/// Per-step noise for [`BlendedLatents`]: `noise(step, latents)` is standard-normal noise shaped
/// like `latents` for grid step `step`.
pub type StepNoise = Box<dyn FnMut(usize, &Tensor<4>) -> Tensor<4>>;

/// Blended Latent Diffusion (4-channel UNets): after each step the known region is replaced by
/// the source latents noised to a level of the run, `z <- z m + (sqrt(a_bar) z_src +
/// sqrt(1 - a_bar) n) (1 - m)` for DDIM, `z_src + sigma n` on the sigma schedulers' samples
/// (the scheduler's `add_noise`); [`BlendedVariant`] says which level and which noise.
pub struct BlendedLatents {
    hole: Tensor<4>,
    source: Tensor<4>,
    noise: StepNoise,
    variant: BlendedVariant,
}

/// Which level and noise [`BlendedLatents`] puts the known region back at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BlendedVariant {
    /// The paper's code: after the step from `t`, the source noised to `t`'s level with fresh
    /// noise each step.
    #[default]
    Paper,
    /// diffusers' inpainting pipelines with a 4-channel UNet (`StableDiffusionInpaintPipeline`,
    /// `StableDiffusionXLInpaintPipeline` with SDXL's base): after each step, the source noised
    /// to the level the step reached with the run's initial noise, and after the run's last
    /// step the source itself.
    Diffusers,
}

impl std::fmt::Debug for BlendedLatents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlendedLatents")
            .field("hole", &self.hole.dims())
            .field("variant", &self.variant)
            .finish_non_exhaustive()
    }
}

impl BlendedLatents {
    /// The paper's variant for the `hole` `[1 or n, 1, h, w]` (1 = to fill; nearest-resized to
    /// the latent size and binarised at 0.5) and the source image's scaled latents
    /// `[1 or n, 4, h, w]`; the per-step noise comes from each image's seed.
    pub fn new(hole: Tensor<4>, source: Tensor<4>, seeds: Vec<u64>) -> Self {
        let noise = move |step: usize, like: &Tensor<4>| {
            let [_, c, h, w] = like.dims();
            let s: Vec<u64> = seeds
                .iter()
                .map(|&seed| sub_seed(seed, NoiseStream::Blend, step))
                .collect();
            seeded_noise(&s, [c, h, w], &like.device())
        };
        Self::with_noise(hole, source, Box::new(noise))
    }

    /// The paper's variant with the per-step noise supplied by `noise(step, latents)` (e.g. a
    /// reference's).
    pub fn with_noise(hole: Tensor<4>, source: Tensor<4>, noise: StepNoise) -> Self {
        Self {
            hole,
            source,
            noise,
            variant: BlendedVariant::Paper,
        }
    }

    /// diffusers' variant with the run's initial standard-normal `noise` `[1 or n, 4, h, w]`
    /// (the draw the pure-noise start is scaled from, or the one the strength start noised the
    /// image with).
    pub fn diffusers(hole: Tensor<4>, source: Tensor<4>, noise: Tensor<4>) -> Self {
        Self {
            hole,
            source,
            noise: Box::new(move |_, like| to_batch(&noise, like.dims()[0])),
            variant: BlendedVariant::Diffusers,
        }
    }
}

impl LatentStrategy for BlendedLatents {
    fn after_step(&mut self, mut step: StepOutput, at: &StepPosition) -> StepOutput {
        let latents = step.prev_sample;
        let n = latents.dims()[0];
        let source = to_batch(&self.source, n);
        let known = match self.variant {
            BlendedVariant::Paper => at.level.noised(source, (self.noise)(at.index, &latents)),
            BlendedVariant::Diffusers if at.step + 1 == at.total => source,
            BlendedVariant::Diffusers => at.next.noised(source, (self.noise)(at.index, &latents)),
        };
        let m = to_batch(&self.hole, n);
        let keep = m.clone().neg() + 1.0;
        step.prev_sample = latents * m + known * keep;
        step
    }
}
