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

/// Blended Latent Diffusion (4-channel UNets): after each step from `t`, the known region is
/// replaced by the source latents noised to `t`'s level with fresh noise (the scheduler's
/// `add_noise` at `t`), `z <- z m + (sqrt(a_bar[t]) z_src + sqrt(1 - a_bar[t]) n) (1 - m)` for
/// DDIM, as the paper's code does; `z_src + sigma_t n` on the sigma schedulers' samples.
pub struct BlendedLatents {
    hole: Tensor<4>,
    source: Tensor<4>,
    noise: StepNoise,
}

impl std::fmt::Debug for BlendedLatents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlendedLatents")
            .field("hole", &self.hole.dims())
            .finish_non_exhaustive()
    }
}

impl BlendedLatents {
    /// The `hole` `[1 or n, 1, h, w]` (1 = to fill; nearest-resized to the latent size and
    /// binarised at 0.5) and the source image's scaled latents `[1 or n, 4, h, w]`; the
    /// per-step noise comes from each image's seed.
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

    /// The same with the per-step noise supplied by `noise(step, latents)` (e.g. a reference's).
    pub fn with_noise(hole: Tensor<4>, source: Tensor<4>, noise: StepNoise) -> Self {
        Self {
            hole,
            source,
            noise,
        }
    }
}

impl LatentStrategy for BlendedLatents {
    fn after_step(&mut self, mut step: StepOutput, at: &StepPosition) -> StepOutput {
        let latents = step.prev_sample;
        let n = latents.dims()[0];
        let z = (self.noise)(at.index, &latents);
        let noised = at.level.noised(to_batch(&self.source, n), z);
        let m = to_batch(&self.hole, n);
        let keep = m.clone().neg() + 1.0;
        step.prev_sample = latents * m + noised * keep;
        step
    }
}
