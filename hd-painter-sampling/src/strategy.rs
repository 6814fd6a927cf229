//! What a method does around the UNet at each step ([`LatentStrategy`]) and where a step stands
//! ([`StepPosition`]).

use burn::tensor::Tensor;
use hd_painter_models::UnetResiduals;

use crate::conditioning::TextConditioning;
use crate::ddim::StepOutput;
use crate::error::Result;
use crate::schedulers::{Denoised, NoiseLevel};

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

    /// The predictions the scheduler updates from at step `at` (e.g. with the known region
    /// blended into the x0 prediction); the schedulers that step on x0 follow it
    /// ([`crate::Scheduler::steps_on_x0`]).
    fn denoised(&mut self, denoised: Denoised, _at: &StepPosition) -> Denoised {
        denoised
    }

    /// Whether [`denoised`](Self::denoised) changes the predictions (the run then refuses a
    /// scheduler that does not step on x0).
    fn steers_x0(&self) -> bool {
        false
    }

    /// The step to continue from after the update of step `at` (e.g. with the known region
    /// blended back into the latents).
    fn after_step(&mut self, step: StepOutput, _at: &StepPosition) -> StepOutput {
        step
    }
}

/// Where a step of a run stands: its timestep, its noise levels and its place in the grid and
/// in the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepPosition {
    /// The timestep the UNet sees.
    pub timestep: f64,
    /// The noise level of the latents the step starts from.
    pub level: NoiseLevel,
    /// The noise level of the latents it goes to (clean, or the scheduler's last, after the
    /// last step).
    pub next: NoiseLevel,
    /// The step's index in the whole grid, from 0 (the steps a `first_step` skips count).
    pub index: usize,
    /// The step's index in this run, from 0.
    pub step: usize,
    /// The steps this run makes.
    pub total: usize,
}
