//! Soft masks as per-pixel strength: Differential Diffusion (arXiv 2306.00950), as diffusers'
//! community `StableDiffusionXLDifferentialImg2ImgPipeline` runs it. The original is noised to
//! every timestep with one noise; before step `i` of `N` the latents are reset to it wherever the
//! map `1 - change` is above `i / N`, so a pixel is generated from the step where its change
//! passes `1 - i / N`: fully white is free from the start, black is reset to the original at
//! every step, grey joins part way.

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::ddim::StepOutput;
use crate::inpaint::{StableInpainting, to_batch};
use crate::schedulers::NoiseLevel;
use crate::strategy::{LatentStrategy, StepPosition};

/// Differential Diffusion's latent strategy.
#[derive(Clone, Debug)]
pub struct DifferentialLatents {
    map: Tensor<4>,
    source: Tensor<4>,
    noise: Tensor<4>,
    steps: usize,
    conditioning: Option<StableInpainting>,
}

impl DifferentialLatents {
    /// `change` `[1 or n, 1, H, W]` in `[0, 1]` (1 = generate; a soft hole, at any size),
    /// resized to the latents as the community pipeline resizes its map (bilinear, no
    /// antialiasing); the source's scaled latents `[1 or n, 4, h, w]`; the one noise that noises
    /// the source to every timestep `[n, 4, h, w]`; the run's step count.
    pub fn new(change: Tensor<4>, source: Tensor<4>, noise: Tensor<4>, steps: usize) -> Self {
        let [_, _, h, w] = source.dims();
        let map = interpolate(
            change.neg() + 1.0,
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_output_size([h, w]),
        );
        Self {
            map,
            source,
            noise,
            steps,
            conditioning: None,
        }
    }

    /// The same for a 9-channel inpainting UNet, which also sees Stable Inpainting's mask and
    /// masked-image latents (as ComfyUI combines its Differential Diffusion node with inpainting
    /// models).
    pub fn with_conditioning(mut self, conditioning: StableInpainting) -> Self {
        self.conditioning = Some(conditioning);
        self
    }

    /// The map `1 - change` at the latent size, `[1 or n, 1, h, w]`.
    pub fn map(&self) -> &Tensor<4> {
        &self.map
    }

    /// The source noised to `level` with the run's noise (at the first step's: the first
    /// latents).
    pub fn noised_source(&self, level: NoiseLevel) -> Tensor<4> {
        let n = self.noise.dims()[0];
        level.noised(to_batch(&self.source, n), self.noise.clone())
    }
}

impl LatentStrategy for DifferentialLatents {
    fn model_input(&self, latents: Tensor<4>) -> Tensor<4> {
        match &self.conditioning {
            Some(c) => c.model_input(latents),
            None => latents,
        }
    }

    /// Before the next step `i + 1` (none after the last): the latents reset to the source
    /// noised to its timestep where the map is above `(i + 1) / N`.
    fn after_step(&mut self, mut step: StepOutput, at: &StepPosition) -> StepOutput {
        let next = at.index + 1;
        if next >= self.steps {
            return step;
        }
        let n = step.prev_sample.dims()[0];
        let threshold = next as f32 / self.steps as f32;
        let reset = to_batch(&self.map, n).greater_elem(threshold).float();
        let keep = reset.clone().neg() + 1.0;
        step.prev_sample = self.noised_source(at.next) * reset + step.prev_sample * keep;
        step
    }
}
