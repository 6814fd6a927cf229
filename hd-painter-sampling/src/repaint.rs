//! RePaint's resampling loop for any 4-channel SD UNet: the jump schedule, reverse DDIM steps
//! with classifier-free guidance, undo (forward) steps, and either known-region mode.

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use hd_painter_core::seeded_noise;
use hd_painter_models::{AttentionProcessor, Unet2DConditionModel};

use crate::ddim::{Prediction, ddim_sigma, ddim_step, repaint_step, undo_steps};
use crate::error::{Result, SamplingError};
use crate::guidance::ModelCall;
use crate::sampler::{Sampled, StepView, TextConditioning, finish_step, step_seed};
use crate::schedule::{NoiseSchedule, repaint_walk};

/// How the known region enters the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KnownRegion {
    /// The official RePaint code: before each model call the known region of `x_t` is replaced
    /// by the original noised to `t`; the step itself is plain DDIM. The default.
    #[default]
    RenoiseBeforeModel,
    /// diffusers' `RePaintScheduler`: after each step the known region is the original noised
    /// to `t'` with the step's own noise.
    MergeAfterStep,
}

/// RePaint's settings (the spec's defaults: 250 steps, jumps of 10, 10 resamplings).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RepaintSettings {
    /// `t_T`: reverse steps over the training schedule.
    pub steps: usize,
    /// Steps walked back up at each jump.
    pub jump_length: usize,
    /// How many times each jump point is visited.
    pub jump_n_sample: usize,
    /// Classifier-free guidance scale.
    pub guidance_scale: f64,
    /// DDIM eta of the reverse steps (0 by default).
    pub eta: f64,
    /// The known-region mode.
    pub known_region: KnownRegion,
}

impl Default for RepaintSettings {
    fn default() -> Self {
        Self {
            steps: 250,
            jump_length: 10,
            jump_n_sample: 10,
            guidance_scale: 7.5,
            eta: 0.0,
            known_region: KnownRegion::default(),
        }
    }
}

/// A source of standard-normal draws shaped like the latents, called once per draw in loop order:
/// one per reverse step, one per training step of each undo.
pub type NoiseDraws<'a> = &'a mut dyn FnMut(&Tensor<4>) -> Tensor<4>;

/// Seeded draws for [`sample_repaint`]: draw `k` of image `i` comes from `seeds[i]` and `k`.
pub fn seeded_draws(seeds: Vec<u64>) -> impl FnMut(&Tensor<4>) -> Tensor<4> {
    let mut k = 0usize;
    move |like: &Tensor<4>| {
        let [_, c, h, w] = like.dims();
        let s: Vec<u64> = seeds
            .iter()
            .map(|&seed| step_seed(seed.rotate_left(17), k))
            .collect();
        k += 1;
        seeded_noise(&s, [c, h, w], &like.device())
    }
}

/// Runs RePaint from `latents`, keeping `known` (the scaled latents of the original) where
/// `keep` is 1. The schedule's `a_bar` after the last step is taken as 1, as RePaint's
/// scheduler does. `on_step` sees every reverse step.
#[allow(clippy::too_many_arguments)] // the parts of a run, each independent
pub fn sample_repaint(
    unet: &Unet2DConditionModel,
    schedule: &NoiseSchedule,
    settings: &RepaintSettings,
    text: &TextConditioning,
    known: Tensor<4>,
    keep: Tensor<4>,
    mut latents: Tensor<4>,
    draw: NoiseDraws<'_>,
    processor: &mut dyn AttentionProcessor,
    on_step: &mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>,
) -> Result<Sampled> {
    if settings.steps == 0 || settings.steps > schedule.len() {
        return Err(SamplingError::InvalidInput(format!(
            "{} RePaint steps over {} timesteps",
            settings.steps,
            schedule.len()
        )));
    }
    let schedule = schedule.clone().with_final_alpha_one();
    let n = schedule.len() / settings.steps;
    let walk: Vec<usize> =
        repaint_walk(settings.steps, settings.jump_length, settings.jump_n_sample)
            .into_iter()
            .map(|t| t * n)
            .collect();
    let total = walk.len() - walk.windows(2).filter(|w| w[1] > w[0]).count();
    let unknown = keep.clone().neg() + 1.0;
    let mut last_x0 = latents.clone();
    let mut t_last = walk[0] + 1;
    let mut done = 0;
    for &t in &walk {
        if t < t_last {
            let t_prev = t as isize - n as isize;
            let a = schedule.alpha_cumprod(t as isize);
            let z = draw(&latents);
            if settings.known_region == KnownRegion::RenoiseBeforeModel {
                let noised = known.clone() * a.sqrt() + z.clone() * (1.0 - a).sqrt();
                latents = noised * keep.clone() + latents * unknown.clone();
            }
            let call = ModelCall {
                unet,
                schedule: &schedule,
                text,
                t,
                t_prev,
                guidance_scale: settings.guidance_scale,
                residuals: None,
            };
            let eps = call.guided(latents.clone(), None, processor)?;
            let step = match settings.known_region {
                KnownRegion::RenoiseBeforeModel => {
                    let sigma = settings.eta * ddim_sigma(&schedule, t, t_prev);
                    let noise = (sigma > 0.0).then(|| (sigma, draw(&latents)));
                    ddim_step(
                        &schedule,
                        Prediction::Epsilon,
                        eps,
                        t,
                        t_prev,
                        latents,
                        noise,
                    )
                }
                KnownRegion::MergeAfterStep => repaint_step(
                    &schedule,
                    eps,
                    t,
                    t_prev,
                    latents,
                    known.clone(),
                    keep.clone(),
                    settings.eta,
                    z,
                ),
            };
            latents = step.prev_sample;
            last_x0 = step.pred_x0;
            done += 1;
            finish_step(
                &StepView {
                    step: done,
                    total,
                    timestep: t,
                    pred_x0: &last_x0,
                    latents: &latents,
                    guidance: None,
                },
                on_step,
            )?;
        } else {
            let draws = (0..n).map(|_| draw(&latents)).collect();
            latents = undo_steps(&schedule, latents, t_last, draws);
        }
        t_last = t;
    }
    Ok(Sampled { latents, last_x0 })
}
