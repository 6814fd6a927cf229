//! RePaint's resampling loop for any 4-channel SD UNet: the jump schedule, reverse DDIM steps
//! with classifier-free guidance, undo (forward) steps, and either known-region mode.

use burn::tensor::Tensor;
use hd_painter_core::{NoiseStream, seeded_noise, sub_seed};

use crate::ddim::{Prediction, StepOutput, ddim_sigma, ddim_step};
use crate::error::{Result, SamplingError};
use crate::guidance::ModelCall;
use crate::sampler::{Sampled, Sampler};
use crate::schedule::{NoiseSchedule, strided_repaint_walk};
use crate::schedulers::NoiseLevel;
use crate::strategy::StepPosition;

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

/// Seeded draws for [`Sampler::resample`]: draw `k` of image `i` comes from `seeds[i]` and `k`.
pub fn seeded_draws(seeds: Vec<u64>) -> impl FnMut(&Tensor<4>) -> Tensor<4> {
    let mut k = 0usize;
    move |like: &Tensor<4>| {
        let [_, c, h, w] = like.dims();
        let s: Vec<u64> = seeds
            .iter()
            .map(|&seed| sub_seed(seed, NoiseStream::Resample, k))
            .collect();
        k += 1;
        seeded_noise(&s, [c, h, w], &like.device())
    }
}

/// The known region of a run: the original's scaled latents `[1 or n, c, h, w]` and the latent
/// hole `[1 or n, 1, h, w]` (1 = to fill; the original is kept where it is 0).
#[derive(Clone, Debug)]
pub struct KnownLatents {
    /// The original's scaled latents.
    pub latents: Tensor<4>,
    /// The hole at the latent size.
    pub hole: Tensor<4>,
}

impl KnownLatents {
    /// `noised` where the original is kept, `latents` in the hole.
    pub fn merge(&self, noised: Tensor<4>, latents: Tensor<4>) -> Tensor<4> {
        let keep = self.hole.clone().neg() + 1.0;
        noised * keep + latents * self.hole.clone()
    }

    /// The original noised to `a_bar = a` with `noise`.
    pub fn noised(&self, a: f64, noise: Tensor<4>) -> Tensor<4> {
        self.latents.clone() * a.sqrt() + noise * (1.0 - a).sqrt()
    }
}

impl Sampler<'_> {
    /// Runs RePaint from `latents`, keeping the original outside `known`'s hole. The schedule's
    /// `a_bar` after the last step is taken as 1, as RePaint's scheduler does. Every reverse
    /// step is reported; the undo steps in between are not.
    pub fn resample(
        &mut self,
        settings: &RepaintSettings,
        known: &KnownLatents,
        mut latents: Tensor<4>,
        draw: NoiseDraws<'_>,
    ) -> Result<Sampled> {
        if settings.steps == 0 || settings.steps > self.schedule.len() {
            return Err(SamplingError::InvalidInput(format!(
                "{} RePaint steps over {} timesteps",
                settings.steps,
                self.schedule.len()
            )));
        }
        self.check_seeds(latents.dims()[0])?;
        let schedule = self.schedule.clone().with_final_alpha_one();
        let n = schedule.len() / settings.steps;
        let (steps, jumps) = (settings.steps, settings.jump_length);
        let walk = strided_repaint_walk(steps, jumps, settings.jump_n_sample, n);
        let total = walk.len() - walk.windows(2).filter(|w| w[1] > w[0]).count();
        let mut last_x0 = latents.clone();
        let mut t_last = walk[0] + 1;
        let mut done = 0;
        for (index, &t) in walk.iter().enumerate() {
            if t >= t_last {
                let draws = (0..n).map(|_| draw(&latents)).collect();
                latents = undo_steps(&schedule, latents, t_last, draws);
                t_last = t;
                continue;
            }
            let t_prev = t as isize - n as isize;
            let at = StepPosition {
                timestep: t as f64,
                level: NoiseLevel::from_alpha_cumprod(schedule.alpha_cumprod(t as isize)),
                next: NoiseLevel::from_alpha_cumprod(schedule.alpha_cumprod(t_prev)),
                index,
                step: done,
                total,
            };
            let step = self.reverse_step(&schedule, settings, known, latents, (t, t_prev), draw)?;
            latents = step.prev_sample;
            last_x0 = step.pred_x0;
            self.finish(&at, &last_x0, &latents, None)?;
            done += 1;
            t_last = t;
        }
        Ok(Sampled { latents, last_x0 })
    }

    /// One reverse step of [`Sampler::resample`] in the settings' known-region mode.
    fn reverse_step(
        &mut self,
        schedule: &NoiseSchedule,
        settings: &RepaintSettings,
        known: &KnownLatents,
        mut latents: Tensor<4>,
        (t, t_prev): (usize, isize),
        draw: NoiseDraws<'_>,
    ) -> Result<StepOutput> {
        let z = draw(&latents);
        if settings.known_region == KnownRegion::RenoiseBeforeModel {
            let noised = known.noised(schedule.alpha_cumprod(t as isize), z.clone());
            latents = known.merge(noised, latents);
        }
        let call = ModelCall {
            unet: self.unet,
            schedule,
            text: self.text,
            timestep: t as f64,
            input_scale: 1.0,
            ddim: Some((t, t_prev)),
            guidance_scale: settings.guidance_scale,
            residuals: None,
        };
        let eps = call.guided(latents.clone(), None, self.hooks.processor)?;
        let sigma = settings.eta * ddim_sigma(schedule, t, t_prev);
        Ok(match settings.known_region {
            KnownRegion::RenoiseBeforeModel => {
                let noise = (sigma > 0.0).then(|| (sigma, draw(&latents)));
                ddim_step(
                    schedule,
                    Prediction::Epsilon,
                    eps,
                    t,
                    t_prev,
                    latents,
                    noise,
                )
            }
            KnownRegion::MergeAfterStep => {
                repaint_step(schedule, eps, t, t_prev, latents, known, (sigma, z))
            }
        })
    }
}

/// diffusers' RePaint step: the DDIM step with `noise` `(sigma, z)` (`sigma = eta *
/// ddim_sigma`), then the known region replaced by the original noised to `t_prev` with the same
/// `z`.
pub fn repaint_step(
    schedule: &NoiseSchedule,
    model_output: Tensor<4>,
    t: usize,
    t_prev: isize,
    sample: Tensor<4>,
    known: &KnownLatents,
    noise: (f64, Tensor<4>),
) -> StepOutput {
    let z = noise.1.clone();
    let step = ddim_step(
        schedule,
        Prediction::Epsilon,
        model_output,
        t,
        t_prev,
        sample,
        Some(noise),
    );
    let noised = known.noised(schedule.alpha_cumprod(t_prev), z);
    StepOutput {
        prev_sample: known.merge(noised, step.prev_sample),
        ..step
    }
}

/// RePaint's undo: `x_{s+1} = sqrt(1 - beta[s]) x_s + sqrt(beta[s]) z` for `s = t, t + 1, ...`,
/// one training step per tensor of `noise`.
pub fn undo_steps(
    schedule: &NoiseSchedule,
    mut sample: Tensor<4>,
    t: usize,
    noise: Vec<Tensor<4>>,
) -> Tensor<4> {
    for (i, z) in noise.into_iter().enumerate() {
        let beta = schedule.beta(t + i);
        sample = sample * (1.0 - beta).sqrt() + z * beta.sqrt();
    }
    sample
}
