//! Inpainting strategies for the shared loop: Stable Inpainting's 9-channel conditioning.

use burn::tensor::Tensor;

use crate::sampler::LatentStrategy;

/// Stable Inpainting (9-channel UNets): the UNet sees `[x_t, mask, masked-image latents]`.
#[derive(Clone, Debug)]
pub struct StableInpainting {
    mask: Tensor<4>,
    masked_latents: Tensor<4>,
}

impl StableInpainting {
    /// `mask` `[1 or n, 1, h, w]` (1 = hole) and `masked_latents` `[1 or n, 4, h, w]` (the scaled
    /// VAE latents of the image with the hole zeroed) at the latent resolution.
    pub fn new(mask: Tensor<4>, masked_latents: Tensor<4>) -> Self {
        Self {
            mask,
            masked_latents,
        }
    }
}

impl LatentStrategy for StableInpainting {
    fn model_input(&self, latents: Tensor<4>) -> Tensor<4> {
        let n = latents.dims()[0];
        let fit = |t: &Tensor<4>| {
            if t.dims()[0] == n {
                t.clone()
            } else {
                t.clone().repeat_dim(0, n)
            }
        };
        Tensor::cat(vec![latents, fit(&self.mask), fit(&self.masked_latents)], 1)
    }
}
