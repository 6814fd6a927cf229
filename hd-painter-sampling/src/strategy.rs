//! What a method does around the UNet at each step ([`LatentStrategy`]) and where a step stands
//! ([`StepPosition`]).

use burn::tensor::Tensor;
use hd_painter_models::UnetResiduals;

use crate::conditioning::TextConditioning;
use crate::ddim::StepOutput;
use crate::error::Result;
use crate::schedule::NoiseSchedule;

/// What a method does around the UNet at each step.
pub trait LatentStrategy {
    /// The UNet input for latents `x_t` (e.g. with the mask and masked-image latents appended).
    fn model_input(&self, latents: Tensor<4>) -> Tensor<4> {
        latents
    }

    /// The class label the UNet gets for every batch row (the x4 upscaler's noise level), if
    /// its UNet has a class embedding.
    fn class_label(&self) -> Option<i64> {
        None
    }

    /// Features to add inside the UNet at step `at` (BrushNet's branch residuals), one row per
    /// image, for latents `x_t`.
    fn unet_residuals(
        &self,
        _latents: &Tensor<4>,
        _at: &StepPosition,
        _text: &TextConditioning,
    ) -> Result<Option<UnetResiduals>> {
        Ok(None)
    }

    /// The step to continue from after the update of step `at` (e.g. with the known region
    /// blended back into the latents, or into the x0 prediction).
    fn after_step(
        &mut self,
        step: StepOutput,
        _at: &StepPosition,
        _schedule: &NoiseSchedule,
    ) -> StepOutput {
        step
    }
}

/// Where a step of a run stands: its timesteps and its place in the grid and in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepPosition {
    /// The timestep being denoised.
    pub t: usize,
    /// The timestep the step goes to (negative after the last).
    pub t_prev: isize,
    /// The step's index in the whole grid, from 0 (the steps a `first_step` skips count).
    pub index: usize,
    /// The step's index in this run, from 0.
    pub step: usize,
    /// The steps this run makes.
    pub total: usize,
}
