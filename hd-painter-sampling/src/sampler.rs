//! The sampling run shared by every method ([`Sampler`]): the method's latent strategy (what the
//! UNet sees, what happens after each step), its guidance ([`Guidance`]: classifier-free or
//! RASG), the scheduler's steps, per-step callbacks that see the x0 prediction and can cancel,
//! and seeded per-step noise.

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use hd_painter_core::{NoiseStream, seeded_noise, sub_seed};
use hd_painter_models::{AttentionProcessor, Unet2DConditionModel};

use crate::conditioning::TextConditioning;
use crate::ddim::StepOutput;
use crate::error::{Result, SamplingError};
use crate::guidance::{Guidance, ModelCall};
use crate::repaint::NoiseDraws;
use crate::schedule::NoiseSchedule;
use crate::schedulers::{NoiseTerm, Scheduler, SchedulerSpec};
use crate::strategy::{LatentStrategy, StepPosition};

/// The settings of a sampling run ([`Sampler::run`]): the steps, the guidance scale and the
/// scheduler.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerSettings {
    /// Inference steps (the scheduler's grid may call the UNet once more: PNDM).
    pub steps: usize,
    /// Classifier-free guidance scale; 1.0 skips the unconditional pass.
    pub guidance_scale: f64,
    /// The scheduler and its options.
    pub scheduler: SchedulerSpec,
    /// Grid steps skipped at the start (`strength < 1`; Blended Latent Diffusion's optional
    /// 25%: `steps / 4`).
    pub first_step: usize,
    /// The grid step the run stops before (`None`: the grid's end); diffusers' `denoising_end`
    /// through [`with_denoising_end`](Self::with_denoising_end).
    pub end_step: Option<usize>,
}

impl Default for SamplerSettings {
    /// diffusers' Stable Diffusion defaults: 50 DDIM steps (leading, offset 1), CFG 7.5, eta 0.
    fn default() -> Self {
        Self {
            steps: 50,
            guidance_scale: 7.5,
            scheduler: SchedulerSpec::default(),
            first_step: 0,
            end_step: None,
        }
    }
}

impl SamplerSettings {
    /// The settings' scheduler for `schedule`.
    pub fn build(&self, schedule: &NoiseSchedule) -> Result<Box<dyn Scheduler>> {
        self.scheduler.build(schedule, self.steps)
    }

    /// The same settings stopping where diffusers' `denoising_end` stops (SDXL's base + refiner
    /// hand-over): of the steps from `first_step` on, those whose timestep is at least
    /// `round(T (1 - fraction))` for `T` training timesteps, the rest left to another run. The
    /// fraction must lie in (0, 1) and keep a step.
    pub fn with_denoising_end(mut self, fraction: f64, schedule: &NoiseSchedule) -> Result<Self> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(SamplingError::InvalidInput(format!(
                "denoising_end {fraction} (expected 0 < denoising_end < 1)"
            )));
        }
        let scheduler = self.build(schedule)?;
        let train = schedule.len() as f64;
        let cutoff = (train - fraction * train).round();
        let grid = scheduler.timesteps();
        let kept = grid
            .iter()
            .skip(self.first_step)
            .filter(|&&t| t >= cutoff)
            .count();
        if kept == 0 {
            return Err(SamplingError::InvalidInput(format!(
                "denoising_end {fraction} keeps no step: the run's first timestep is {:?}, below \
                 the cut-off {cutoff}",
                grid.get(self.first_step)
            )));
        }
        self.end_step = Some(self.first_step + kept);
        Ok(self)
    }

    /// The grid step the run stops before, for a grid of `len` steps.
    pub(crate) fn end(&self, len: usize) -> usize {
        self.end_step.unwrap_or(len)
    }
}

/// Which stage of a method a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Stage {
    /// The inpainting run at the model's resolution (HD-Painter's first stage).
    #[default]
    Inpaint,
    /// HD-Painter's x4 super-resolution stage, one run per image.
    SuperResolution,
}

/// What a step callback sees.
#[derive(Debug)]
pub struct StepView<'a> {
    /// The stage the step belongs to.
    pub stage: Stage,
    /// The seeds of the images this run makes (the SR stage runs once per image).
    pub seeds: &'a [u64],
    /// Steps completed, from 1.
    pub step: usize,
    /// Steps planned.
    pub total: usize,
    /// The timestep just denoised.
    pub timestep: f64,
    /// The x0 prediction at that timestep (decode it for a preview).
    pub pred_x0: &'a Tensor<4>,
    /// The latents after the step.
    pub latents: &'a Tensor<4>,
    /// RASG's normalised gradient added at this step, when RASG guided it.
    pub guidance: Option<&'a Tensor<4>>,
}

/// A step callback: it sees every finished step; breaking ends the run with
/// [`SamplingError::Cancelled`].
pub type OnStep<'a> = &'a mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>;

/// The caller's hooks into a run: every attention call goes through `processor`, every finished
/// step through `on_step`; the stochastic steps' noise comes from `noise` where given.
pub struct Hooks<'a> {
    /// The attention processor (e.g. [`DefaultAttention`](hd_painter_models::DefaultAttention)).
    pub processor: &'a mut dyn AttentionProcessor,
    /// The step callback.
    pub on_step: OnStep<'a>,
    /// The source of the stochastic steps' standard-normal noise (`None`: drawn from each
    /// image's seed); a reference's draws, for parity.
    pub noise: Option<NoiseDraws<'a>>,
}

impl<'a> Hooks<'a> {
    /// Hooks of a processor and a step callback, the noise drawn from the seeds.
    pub fn new(processor: &'a mut dyn AttentionProcessor, on_step: OnStep<'a>) -> Self {
        Self {
            processor,
            on_step,
            noise: None,
        }
    }

    /// The same with the stochastic steps' noise from `draws` (one call per step that uses
    /// noise, shaped like the latents).
    pub fn with_noise(self, draws: NoiseDraws<'a>) -> Self {
        Self {
            noise: Some(draws),
            ..self
        }
    }

    /// The same hooks for a nested run (the caller keeps them afterwards).
    pub fn reborrow(&mut self) -> Hooks<'_> {
        Hooks {
            processor: &mut *self.processor,
            on_step: &mut *self.on_step,
            noise: self.noise.as_mut().map(|n| &mut **n as NoiseDraws<'_>),
        }
    }
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
pub(crate) fn finish_step(view: &StepView<'_>, on_step: &mut OnStep<'_>) -> Result<()> {
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

/// One denoising run's parts: the UNet, its schedule, the text, one seed per image, the stage it
/// reports and the caller's hooks. [`Sampler::run`] walks a grid of scheduler steps against a
/// [`LatentStrategy`] and a [`Guidance`]; [`Sampler::resample`] walks RePaint's jumps.
pub struct Sampler<'a> {
    /// The UNet.
    pub unet: &'a Unet2DConditionModel,
    /// The noise schedule.
    pub schedule: &'a NoiseSchedule,
    /// The prompt and negative prompt embeddings.
    pub text: &'a TextConditioning,
    /// One seed per image: the per-step noise of stochastic steps is drawn from them.
    pub seeds: &'a [u64],
    /// The stage every step view names.
    pub stage: Stage,
    /// The attention processor and the step callback.
    pub hooks: Hooks<'a>,
}

impl Sampler<'_> {
    /// Runs `settings`' steps from `latents`: the scheduler's start (standard-normal noise
    /// times its [`init_noise_sigma`](Scheduler::init_noise_sigma)), or with `first_step > 0`
    /// the image noised to that step's [`level`](Scheduler::level); one image per seed.
    /// Guidance with step terms (RASG) needs DDIM; its steps then add the term and never fresh
    /// noise.
    pub fn run(
        &mut self,
        settings: &SamplerSettings,
        strategy: &mut dyn LatentStrategy,
        guidance: &dyn Guidance,
        mut latents: Tensor<4>,
    ) -> Result<Sampled> {
        let [n, c, h, w] = latents.dims();
        let mut scheduler = settings.build(self.schedule)?;
        let grid = scheduler.timesteps().to_vec();
        self.check_run(settings, &*scheduler, strategy, guidance)?;
        self.check_seeds(n)?;
        let device = latents.device();
        let mut last_x0 = latents.clone();
        let end = settings.end(grid.len());
        let total = end - settings.first_step;
        for (index, &timestep) in grid.iter().enumerate().take(end).skip(settings.first_step) {
            let at = StepPosition {
                timestep,
                level: scheduler.level(index),
                next: scheduler.level(index + 1),
                index,
                step: index - settings.first_step,
                total,
            };
            let residuals = strategy.unet_residuals(&latents, &at, self.text)?;
            let call = ModelCall {
                unet: self.unet,
                schedule: self.schedule,
                text: self.text,
                timestep,
                input_scale: at.level.input_scale,
                ddim: scheduler.ddim_timesteps(index),
                guidance_scale: settings.guidance_scale,
                residuals: residuals.as_ref(),
            };
            let guided =
                guidance.predict(&call, &*strategy, latents.clone(), self.hooks.processor)?;
            let direction = guided.term.as_ref().map(|term| term.direction.clone());
            let noise = match guided.term {
                Some(term) => NoiseTerm::Guided(term),
                None if scheduler.draws_noise(index) && !guidance.has_terms() => {
                    NoiseTerm::Fresh(match self.hooks.noise.as_mut() {
                        Some(draw) => draw(&latents),
                        None => self.step_noise(index, [c, h, w], &device),
                    })
                }
                None => NoiseTerm::None,
            };
            let denoised = scheduler.denoise(guided.output, index, latents.clone());
            let denoised = strategy.denoised(denoised, &at);
            let prev = scheduler.step(&denoised, index, latents, noise);
            let next = strategy.after_step(StepOutput::new(prev, denoised), &at);
            latents = next.prev_sample;
            last_x0 = next.pred_x0;
            self.finish(&at, &last_x0, &latents, direction.as_ref())?;
        }
        Ok(Sampled { latents, last_x0 })
    }

    /// Refuses a run whose parts do not fit: a first step past the grid or past its end step,
    /// guidance terms without DDIM, a strategy steering x0 with a scheduler that does not step
    /// on it.
    fn check_run(
        &self,
        settings: &SamplerSettings,
        scheduler: &dyn Scheduler,
        strategy: &dyn LatentStrategy,
        guidance: &dyn Guidance,
    ) -> Result<()> {
        let kind = settings.scheduler.kind;
        let len = scheduler.timesteps().len();
        let end = settings.end(len);
        let problem = if settings.first_step >= len {
            format!("first step {} of {len} steps", settings.first_step)
        } else if end > len || end <= settings.first_step {
            format!(
                "end step {end} for a run from step {} of {len} steps",
                settings.first_step
            )
        } else if guidance.has_terms() && scheduler.ddim_timesteps(0).is_none() {
            format!("RASG guides DDIM's update; the settings ask for {kind}")
        } else if strategy.steers_x0() && !scheduler.steps_on_x0() {
            format!(
                "{kind} steps on the noise prediction, which this method's x0 blend cannot steer"
            )
        } else {
            return Ok(());
        };
        Err(SamplingError::InvalidInput(problem))
    }

    /// Refuses a batch of another size than the seeds.
    pub(crate) fn check_seeds(&self, images: usize) -> Result<()> {
        match self.seeds.len() == images {
            true => Ok(()),
            false => Err(SamplingError::InvalidInput(format!(
                "{} seeds for {images} images",
                self.seeds.len()
            ))),
        }
    }

    /// Standard-normal noise `[images, c, h, w]` for grid step `step`, each image's from its seed.
    fn step_noise(
        &self,
        step: usize,
        shape: [usize; 3],
        device: &burn::tensor::Device,
    ) -> Tensor<4> {
        let seeds: Vec<u64> = self
            .seeds
            .iter()
            .map(|&s| sub_seed(s, NoiseStream::Step, step))
            .collect();
        seeded_noise(&seeds, shape, device)
    }

    /// Hands finished step `at` to the callback ([`finish_step`]).
    pub(crate) fn finish(
        &mut self,
        at: &StepPosition,
        pred_x0: &Tensor<4>,
        latents: &Tensor<4>,
        guidance: Option<&Tensor<4>>,
    ) -> Result<()> {
        let view = StepView {
            stage: self.stage,
            seeds: self.seeds,
            step: at.step + 1,
            total: at.total,
            timestep: at.timestep,
            pred_x0,
            latents,
            guidance,
        };
        finish_step(&view, &mut self.hooks.on_step)
    }
}
