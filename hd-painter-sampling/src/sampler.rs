//! The sampling run shared by every method ([`Sampler`]): the method's latent strategy (what the
//! UNet sees, what happens after each step), its guidance ([`Guidance`]: classifier-free or
//! RASG), the scheduler's steps, per-step callbacks that see the x0 prediction and can cancel,
//! and seeded per-step noise.

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use hd_painter_core::seeded_noise;
use hd_painter_models::{AttentionProcessor, Unet2DConditionModel, UnetResiduals};

use crate::ddim::{DdimStep, Prediction};
use crate::error::{Result, SamplingError};
use crate::guidance::{Guidance, ModelCall};
use crate::schedule::{NoiseSchedule, Spacing, timesteps};
use crate::scheduler::{Ddim, Ddpm, NoiseTerm, Scheduler};

/// Text embeddings: the prompt and, for classifier-free guidance, the negative prompt; each
/// `[1 or batch, tokens, dim]`; and which embedding positions are the prompt's own words.
#[derive(Clone, Debug)]
pub struct TextConditioning {
    /// The (positive) prompt's embedding.
    pub positive: Tensor<3>,
    /// The negative prompt's embedding (the empty prompt's for plain guidance).
    pub negative: Tensor<3>,
    /// The positions PAIntA and RASG attend to: the user prompt's tokens and the end-of-text
    /// token of the encoded prompt ([`crate::prompt_token_indices`]).
    pub prompt_tokens: Vec<usize>,
}

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

    /// Features to add inside the UNet at this step (BrushNet's branch residuals), one row per
    /// image, for latents `x_t` at step `step` of `total` (from 0) and timestep `t`.
    fn unet_residuals(
        &self,
        _latents: &Tensor<4>,
        _step: usize,
        _total: usize,
        _t: usize,
        _text: &TextConditioning,
    ) -> Result<Option<UnetResiduals>> {
        Ok(None)
    }

    /// The step to continue from after the update from `t` to `t_prev` (e.g. with the known
    /// region blended back into the latents, or into the x0 prediction). `index` is the step's
    /// index in the grid.
    fn after_step(
        &mut self,
        step: DdimStep,
        _index: usize,
        _t: usize,
        _t_prev: isize,
        _schedule: &NoiseSchedule,
    ) -> DdimStep {
        step
    }
}

/// The settings of a DDIM run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimSettings {
    /// Inference steps.
    pub steps: usize,
    /// How the steps spread over the training timesteps.
    pub spacing: Spacing,
    /// Classifier-free guidance scale; 1.0 skips the unconditional pass.
    pub guidance_scale: f64,
    /// DDIM's eta (0 = deterministic).
    pub eta: f64,
    /// What the UNet predicts.
    pub prediction: Prediction,
    /// The step rule: DDIM (with `eta`) or DDPM.
    pub rule: StepRule,
    /// Grid steps skipped at the start (Blended Latent Diffusion's optional 25%: `steps / 4`).
    pub first_step: usize,
}

impl Default for DdimSettings {
    /// diffusers' Stable Diffusion defaults: 50 leading steps (offset 1), CFG 7.5, eta 0.
    fn default() -> Self {
        Self {
            steps: 50,
            spacing: Spacing::Leading { steps_offset: 1 },
            guidance_scale: 7.5,
            eta: 0.0,
            prediction: Prediction::Epsilon,
            rule: StepRule::Ddim,
            first_step: 0,
        }
    }
}

/// Which [`Scheduler`] the loop steps with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StepRule {
    /// [`Ddim`] with the settings' `eta`.
    #[default]
    Ddim,
    /// [`Ddpm`].
    Ddpm,
}

impl DdimSettings {
    /// The scheduler these settings describe.
    pub fn scheduler(&self) -> Box<dyn Scheduler> {
        match self.rule {
            StepRule::Ddim => Box::new(Ddim {
                eta: self.eta,
                prediction: self.prediction,
            }),
            StepRule::Ddpm => Box::new(Ddpm {
                prediction: self.prediction,
            }),
        }
    }
}

/// What a step callback sees.
#[derive(Debug)]
pub struct StepView<'a> {
    /// Steps completed, from 1.
    pub step: usize,
    /// Steps planned.
    pub total: usize,
    /// The timestep just denoised.
    pub timestep: usize,
    /// The x0 prediction at that timestep (decode it for a preview).
    pub pred_x0: &'a Tensor<4>,
    /// The latents after the step.
    pub latents: &'a Tensor<4>,
    /// RASG's normalised gradient added at this step, when RASG guided it.
    pub guidance: Option<&'a Tensor<4>>,
}

/// The end of a run.
#[derive(Clone, Debug)]
pub struct Sampled {
    /// The final latents `x_{t_last - dt}`.
    pub latents: Tensor<4>,
    /// The x0 prediction of the last step (what HD-Painter decodes).
    pub last_x0: Tensor<4>,
}

/// Checks a finished step's latents and hands the step to the callback: a non-finite latent or a
/// callback that breaks ends the run.
pub(crate) fn finish_step(
    view: &StepView<'_>,
    on_step: &mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>,
) -> Result<()> {
    let latents = view.latents.clone();
    if latents.clone().is_nan().any().into_scalar() || latents.is_inf().any().into_scalar() {
        return Err(SamplingError::NonFinite {
            step: view.step,
            timestep: view.timestep,
        });
    }
    match on_step(view) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(SamplingError::Cancelled {
            step: view.step,
            total: view.total,
        }),
    }
}

/// The seed of image `seed`'s noise at step `step` (splitmix64 of both), so that per-step noise
/// is reproducible per image and independent of the initial noise.
pub(crate) fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One denoising run: the UNet, its schedule, the step settings, the text, one seed per image
/// and the hooks (the attention processor, the step callback), run against a
/// [`LatentStrategy`] and a [`Guidance`].
pub struct Sampler<'a> {
    /// The UNet.
    pub unet: &'a Unet2DConditionModel,
    /// The noise schedule.
    pub schedule: &'a NoiseSchedule,
    /// Steps, grid, guidance scale and step rule.
    pub settings: DdimSettings,
    /// The prompt and negative prompt embeddings.
    pub text: &'a TextConditioning,
    /// One seed per image: the per-step noise of stochastic steps is drawn from them.
    pub seeds: &'a [u64],
    /// Every attention call goes through it.
    pub processor: &'a mut dyn AttentionProcessor,
    /// Called after every step; breaking ends the run with [`SamplingError::Cancelled`].
    pub on_step: &'a mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>,
}

impl Sampler<'_> {
    /// Runs the settings' steps from `latents` (`x_T`, or the noised image with
    /// `first_step > 0`), one image per seed. Guidance with step terms (RASG) needs a scheduler
    /// that takes them (DDIM); its steps then add the term and never fresh noise.
    pub fn run(
        &mut self,
        strategy: &mut dyn LatentStrategy,
        guidance: &dyn Guidance,
        mut latents: Tensor<4>,
    ) -> Result<Sampled> {
        let [n, c, h, w] = latents.dims();
        let settings = self.settings;
        let scheduler = settings.scheduler();
        if guidance.has_terms() && !scheduler.takes_terms() {
            return Err(SamplingError::InvalidInput(
                "RASG guides DDIM steps; the settings ask for DDPM".into(),
            ));
        }
        if self.seeds.len() != n {
            return Err(SamplingError::InvalidInput(format!(
                "{} seeds for {n} images",
                self.seeds.len()
            )));
        }
        let grid = timesteps(settings.spacing, self.schedule.len(), settings.steps);
        if settings.first_step >= grid.len() {
            return Err(SamplingError::InvalidInput(format!(
                "first step {} of {} steps",
                settings.first_step,
                grid.len()
            )));
        }
        let dt = (self.schedule.len() / settings.steps.max(1)) as isize;
        let device = latents.device();
        let mut last_x0 = latents.clone();
        let total = grid.len() - settings.first_step;
        for (i, &t) in grid.iter().enumerate().skip(settings.first_step) {
            let t_prev = t as isize - dt;
            let step = i - settings.first_step;
            let residuals = strategy.unet_residuals(&latents, step, total, t, self.text)?;
            let call = ModelCall {
                unet: self.unet,
                schedule: self.schedule,
                text: self.text,
                t,
                t_prev,
                guidance_scale: settings.guidance_scale,
                residuals: residuals.as_ref(),
            };
            let guided = guidance.predict(&call, &*strategy, latents.clone(), self.processor)?;
            let direction = guided.term.as_ref().map(|term| term.direction.clone());
            let noise = match guided.term {
                Some(term) => NoiseTerm::Guided(term),
                None if scheduler.is_stochastic() && !guidance.has_terms() => {
                    let seeds: Vec<u64> = self.seeds.iter().map(|&s| step_seed(s, i)).collect();
                    NoiseTerm::Fresh(seeded_noise(&seeds, [c, h, w], &device))
                }
                None => NoiseTerm::None,
            };
            let next = scheduler.step(self.schedule, guided.output, t, t_prev, latents, noise);
            let next = strategy.after_step(next, i, t, t_prev, self.schedule);
            latents = next.prev_sample;
            last_x0 = next.pred_x0;
            let view = StepView {
                step: step + 1,
                total,
                timestep: t,
                pred_x0: &last_x0,
                latents: &latents,
                guidance: direction.as_ref(),
            };
            finish_step(&view, self.on_step)?;
        }
        Ok(Sampled { latents, last_x0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_seeds_differ_per_step_and_per_image_and_repeat() {
        let seeds: Vec<u64> = (0..50)
            .flat_map(|s| (0..50).map(move |i| step_seed(s, i)))
            .collect();
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seeds.len(), "2,500 distinct streams");
        assert_eq!(step_seed(7, 3), step_seed(7, 3));
    }
}
