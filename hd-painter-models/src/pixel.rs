//! What the pixel-space samplers (RePaint as published) need of a model: a noise prediction,
//! optionally with learned variance values, for images in `[-1, 1]`.

use burn::nn::Embedding;
use burn::tensor::{Int, Tensor, TensorData};
use hd_painter_core::CoreError;

use crate::error::{ModelsError, Result};

/// An unconditional (or class-conditional) pixel-space diffusion model: diffusers'
/// [`Unet2DModel`](crate::Unet2DModel) and guided-diffusion's UNet.
pub trait PixelDenoiser {
    /// The model output for `sample` `[batch, image_channels, h, w]` at `timesteps` (training
    /// timesteps, one per batch item): `[batch, output_channels, h, w]`, the noise first and,
    /// where `output_channels` is twice the image's, the variance values after it.
    fn predict(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        class_labels: Option<&[i64]>,
    ) -> Result<Tensor<4>>;

    /// The image channels (3).
    fn image_channels(&self) -> usize;

    /// The output channels: the image's, or twice them with learned variance.
    fn output_channels(&self) -> usize;

    /// The image side the model was trained at, where its config says.
    fn sample_size(&self) -> Option<usize>;

    /// Whether the model predicts its variance (the output's second half).
    fn learned_variance(&self) -> bool {
        self.output_channels() == 2 * self.image_channels()
    }
}

/// A typed error unless `sample` has `channels` channels, sides that are multiples of
/// `multiple`, and one timestep per batch item.
pub(crate) fn check_pixel_input(
    sample: &Tensor<4>,
    timesteps: &[f32],
    channels: usize,
    multiple: usize,
    what: &str,
) -> Result<()> {
    let [b, c, h, w] = sample.dims();
    let shape_error = |what: String, expected: String, found: Vec<usize>| {
        Err(ModelsError::Core(CoreError::TensorShape {
            what,
            expected,
            found,
        }))
    };
    if c != channels
        || !h.is_multiple_of(multiple)
        || !w.is_multiple_of(multiple)
        || h == 0
        || w == 0
    {
        let expected = format!("[batch, {channels}, h, w] with h and w multiples of {multiple}");
        return shape_error(format!("{what} input"), expected, vec![b, c, h, w]);
    }
    if timesteps.len() != b {
        let found = vec![timesteps.len()];
        return shape_error(format!("{what} timesteps"), format!("{b} timesteps"), found);
    }
    Ok(())
}

/// `emb` plus the class embedding of `labels` (one per row of `emb`) for a model with one; a
/// typed error naming `what` for labels missing, of the wrong count, or given to a model
/// without one.
pub(crate) fn add_class_embedding(
    emb: Tensor<2>,
    embedding: Option<&Embedding>,
    labels: Option<&[i64]>,
    what: &str,
) -> Result<Tensor<2>> {
    let [b, width] = emb.dims();
    match (embedding, labels) {
        (Some(embedding), Some(labels)) if labels.len() == b => {
            let labels = TensorData::new(labels.to_vec(), [b, 1]);
            let labels = Tensor::<2, Int>::from_data(labels, &emb.device());
            Ok(emb + embedding.forward(labels).reshape([b, width]))
        }
        (None, None) => Ok(emb),
        (embedding, labels) => Err(ModelsError::Core(CoreError::TensorShape {
            what: format!("{what} class labels"),
            expected: match embedding {
                Some(_) => format!("{b} labels"),
                None => "none (the model is not class-conditional)".into(),
            },
            found: vec![labels.map_or(0, <[i64]>::len)],
        })),
    }
}
