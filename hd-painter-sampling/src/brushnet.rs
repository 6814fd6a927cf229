//! BrushNet's sampling (arXiv 2403.06976; the official `StableDiffusionBrushNetPipeline`): the
//! branch reads the latents with the masked image's latents and the known-region mask, its
//! residuals are added inside the frozen base UNet at every step inside the control window, and
//! the output is blended into the original with a blurred hole.

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use hd_painter_core::{GaussianKernel, Image, Mask, Raster};
use hd_painter_models::{AutoencoderKl, BrushNetModel, UnetResiduals};

use crate::conditioning::TextConditioning;
use crate::error::{Result, SamplingError};
use crate::inpaint::to_batch;
use crate::strategy::{LatentStrategy, StepPosition};

/// BrushNet's pipeline settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BrushNetSettings {
    /// The residuals' scale (`brushnet_conditioning_scale`, 1.0).
    pub conditioning_scale: f64,
    /// The fraction of the steps before which the branch is off (`control_guidance_start`, 0).
    pub control_start: f64,
    /// The fraction of the steps after which the branch is off (`control_guidance_end`, 1).
    pub control_end: f64,
}

impl Default for BrushNetSettings {
    /// The official pipeline's: scale 1, the branch on at every step.
    fn default() -> Self {
        Self {
            conditioning_scale: 1.0,
            control_start: 0.0,
            control_end: 1.0,
        }
    }
}

impl BrushNetSettings {
    /// Whether step `i` of `total` runs the branch: the official
    /// `not (i / total < start or (i + 1) / total > end)`.
    pub fn active(&self, i: usize, total: usize) -> bool {
        let n = total as f64;
        !((i as f64) / n < self.control_start || (i as f64 + 1.0) / n > self.control_end)
    }
}

/// BrushNet's conditioning latents as its official pipeline builds them: `pixels` `[n, 3, H, W]`
/// in `[-1, 1]` with the `hole` `[n, 1, H, W]` (1 = hole) painted black (-1), encoded and scaled,
/// then the known region (1 = known) resized to the latent size (nearest). The official pipeline
/// encodes to a posterior *sample* drawn from the global RNG, a different one for each guidance
/// half; this takes the posterior mean, deterministic and the same for both.
pub fn brushnet_condition(
    vae: &AutoencoderKl,
    pixels: Tensor<4>,
    hole: Tensor<4>,
) -> Result<Tensor<4>> {
    let keep = hole.clone().neg() + 1.0;
    let masked = pixels * keep.clone() - hole;
    let latents = vae.encode(masked)?.mean * vae.scaling_factor();
    let [_, _, h, w] = latents.dims();
    let known = interpolate(
        keep,
        InterpolateOptions::new(InterpolateMode::Nearest)
            .with_align_corners(false)
            .with_output_size([h, w]),
    );
    Ok(Tensor::cat(vec![latents, known], 1))
}

/// BrushNet's latent strategy: the base UNet sees the 4-channel latents; the branch adds its
/// residuals. The reference pipeline runs the branch on both guidance halves with identical
/// inputs (the branch has no attention), so it runs once here and its residuals serve both.
pub struct BrushNetLatents<'a> {
    branch: &'a BrushNetModel,
    condition: Tensor<4>,
    settings: BrushNetSettings,
}

impl std::fmt::Debug for BrushNetLatents<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrushNetLatents")
            .field("condition", &self.condition.dims())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<'a> BrushNetLatents<'a> {
    /// `condition` `[1 or n, 5, h, w]`: the masked image's scaled latents (holes black before
    /// encoding) and the mask with 1 = known, nearest-resized to the latent size.
    pub fn new(
        branch: &'a BrushNetModel,
        condition: Tensor<4>,
        settings: BrushNetSettings,
    ) -> Result<Self> {
        let c = condition.dims()[1];
        if c != branch.conditioning_channels() {
            return Err(SamplingError::InvalidInput(format!(
                "BrushNet condition with {c} channels; the branch reads {}",
                branch.conditioning_channels()
            )));
        }
        Ok(Self {
            branch,
            condition,
            settings,
        })
    }
}

impl LatentStrategy for BrushNetLatents<'_> {
    fn unet_residuals(
        &self,
        latents: &Tensor<4>,
        at: &StepPosition,
        text: &TextConditioning,
    ) -> Result<Option<UnetResiduals>> {
        if !self.settings.active(at.step, at.total) {
            return Ok(None);
        }
        let n = latents.dims()[0];
        let residuals = self.branch.forward(
            latents.clone(),
            &vec![at.timestep as f32; n],
            &to_batch(&text.positive, n),
            to_batch(&self.condition, n),
            self.settings.conditioning_scale,
        )?;
        Ok(Some(residuals))
    }
}

/// BrushNet's output blend (its `test_brushnet.py`): with `M` the binary hole and `b` its
/// 21x21 OpenCV Gaussian blur (sigma from the size, in floating point), `m = 1 - (1 - M)(1 - b)`
/// and `out = original (1 - m) + generated m`, truncated to 8 bits. The hole is generated
/// throughout and the blend fades outside it.
pub fn brushnet_blend(original: &Image, generated: &Image, hole: &Mask) -> Result<Image> {
    hole.ensure_matches(original, "BrushNet blend mask vs original")?;
    let (w, h) = (original.width(), original.height());
    if (generated.width(), generated.height()) != (w, h) {
        let found = (generated.width(), generated.height());
        let what = "BrushNet blend generated vs original";
        return Err(hd_painter_core::CoreError::size_mismatch(what, (w, h), found).into());
    }
    let binary = hole.threshold(127).raster().map(f32::from);
    let blurred = binary.gaussian_blur(&GaussianKernel::opencv(21, 0.0)?);
    let (o, g) = (original.raster().as_slice(), generated.raster().as_slice());
    let (m0, b) = (binary.as_slice(), blurred.as_slice());
    let out = (0..o.len())
        .map(|i| {
            let p = i / 3;
            let (hole, blur) = (f64::from(m0[p]) / 255.0, f64::from(b[p]) / 255.0);
            let m = 1.0 - (1.0 - hole) * (1.0 - blur);
            (f64::from(o[i]) * (1.0 - m) + f64::from(g[i]) * m) as u8
        })
        .collect();
    Ok(Image::from_raster(Raster::from_vec(w, h, 3, out)?)?)
}
