//! The DDIM sampling loop shared by every method: classifier-free guidance, the method's latent
//! strategy (what the UNet sees, what happens after each step), per-step callbacks that see the
//! x0 prediction and can cancel, and seeded per-step noise.

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use hd_painter_core::seeded_noise;
use hd_painter_models::{AttentionProcessor, Unet2DConditionModel, UnetResiduals};

use crate::ddim::{DdimStep, Prediction, ddim_step};
use crate::error::{Result, SamplingError};
use crate::rasg::Rasg;
use crate::schedule::{NoiseSchedule, Spacing, timesteps};
use crate::scheduler::{Ddim, Ddpm, Scheduler};

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

/// Text-to-image: the UNet sees the latents alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainLatents;

impl LatentStrategy for PlainLatents {}

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

/// The standard-normal starting latents of a batch, one seed per image (each image can be
/// reproduced alone with its seed).
pub fn initial_latents(
    seeds: &[u64],
    [c, h, w]: [usize; 3],
    device: &burn::tensor::Device,
) -> Tensor<4> {
    seeded_noise(seeds, [c, h, w], device)
}

/// The seed of image `seed`'s noise at step `step` (splitmix64 of both), so that per-step noise
/// is reproducible per image and independent of the initial noise.
pub(crate) fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The model output with classifier-free guidance: `u + g (c - u)` from one batch
/// `[negative, positive]`, or the positive pass alone when `g = 1`; `class_label` goes to every
/// row (UNets with a class embedding); `residuals` (one row per image) are added inside the UNet
/// for both halves, as BrushNet's pipeline does.
#[allow(clippy::too_many_arguments)] // one UNet call's inputs
pub fn guided_output(
    unet: &Unet2DConditionModel,
    input: Tensor<4>,
    t: usize,
    text: &TextConditioning,
    guidance_scale: f64,
    class_label: Option<i64>,
    residuals: Option<&UnetResiduals>,
    processor: &mut dyn AttentionProcessor,
) -> Result<Tensor<4>> {
    let n = input.dims()[0];
    let labels = |rows: usize| class_label.map(|l| vec![l; rows]);
    let expand = |e: &Tensor<3>| -> Result<Tensor<3>> {
        match e.dims()[0] {
            b if b == n => Ok(e.clone()),
            1 => Ok(e.clone().repeat_dim(0, n)),
            b => Err(SamplingError::InvalidInput(format!(
                "text embedding batch {b} for {n} images"
            ))),
        }
    };
    let positive = expand(&text.positive)?;
    let call = |input: Tensor<4>,
                context: &Tensor<3>,
                rows: usize,
                p: &mut dyn AttentionProcessor| {
        let timesteps = vec![t as f32; rows];
        let labels = labels(rows);
        match residuals {
            None => unet.forward(input, &timesteps, context, labels.as_deref(), p),
            Some(r) => {
                let r = r.repeat_batch(rows / n);
                unet.forward_with_residuals(input, &timesteps, context, labels.as_deref(), p, &r)
            }
        }
    };
    if guidance_scale == 1.0 {
        return Ok(call(input, &positive, n, processor)?);
    }
    let context = Tensor::cat(vec![expand(&text.negative)?, positive], 0);
    let out = call(
        Tensor::cat(vec![input.clone(), input], 0),
        &context,
        2 * n,
        processor,
    )?;
    let [_, c, h, w] = out.dims();
    let uncond = out.clone().slice([0..n, 0..c, 0..h, 0..w]);
    let cond = out.slice([n..2 * n, 0..c, 0..h, 0..w]);
    Ok(uncond.clone() + (cond - uncond) * guidance_scale)
}

/// Runs DDIM from `latents` (`x_T`, one image per seed) with `strategy`, calling `on_step`
/// after every step; returns [`SamplingError::Cancelled`] as soon as it breaks.
///
/// With `rasg`, every step is RASG's: the gradient term `eta sigma_t g` replaces DDIM's random
/// noise (the settings' `eta` is not used) and the step rule must be DDIM.
#[allow(clippy::too_many_arguments)] // the parts of a run, each independent
pub fn sample_ddim(
    unet: &Unet2DConditionModel,
    schedule: &NoiseSchedule,
    settings: &DdimSettings,
    text: &TextConditioning,
    strategy: &mut dyn LatentStrategy,
    mut latents: Tensor<4>,
    seeds: &[u64],
    processor: &mut dyn AttentionProcessor,
    rasg: Option<&Rasg>,
    on_step: &mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>,
) -> Result<Sampled> {
    let [n, c, h, w] = latents.dims();
    if rasg.is_some() && settings.rule != StepRule::Ddim {
        return Err(SamplingError::InvalidInput(
            "RASG guides DDIM steps; the settings ask for DDPM".into(),
        ));
    }
    if seeds.len() != n {
        return Err(SamplingError::InvalidInput(format!(
            "{} seeds for {n} images",
            seeds.len()
        )));
    }
    let grid = timesteps(settings.spacing, schedule.len(), settings.steps);
    if settings.first_step >= grid.len() {
        return Err(SamplingError::InvalidInput(format!(
            "first step {} of {} steps",
            settings.first_step,
            grid.len()
        )));
    }
    let dt = (schedule.len() / settings.steps.max(1)) as isize;
    let device = latents.device();
    let mut last_x0 = latents.clone();
    let total = grid.len() - settings.first_step;
    let scheduler = settings.scheduler();
    for (i, &t) in grid.iter().enumerate().skip(settings.first_step) {
        let t_prev = t as isize - dt;
        let residuals =
            strategy.unet_residuals(&latents, i - settings.first_step, total, t, text)?;
        let (step, gradient) = match rasg {
            Some(_) if residuals.is_some() => {
                return Err(SamplingError::InvalidInput(
                    "RASG differentiates the UNet alone; it does not compose with BrushNet".into(),
                ));
            }
            Some(rasg) => {
                let (output, gradient) = rasg.output_and_gradient(
                    unet,
                    strategy,
                    latents.clone(),
                    t,
                    text,
                    settings.guidance_scale,
                    processor,
                )?;
                let term = gradient
                    .clone()
                    .map(|g| (rasg.settings.scale(schedule, t, t_prev), g));
                let step = ddim_step(
                    schedule,
                    settings.prediction,
                    output,
                    t,
                    t_prev,
                    latents,
                    term,
                );
                (step, gradient)
            }
            None => {
                let output = guided_output(
                    unet,
                    strategy.model_input(latents.clone()),
                    t,
                    text,
                    settings.guidance_scale,
                    strategy.class_label(),
                    residuals.as_ref(),
                    processor,
                )?;
                let noise = scheduler.is_stochastic().then(|| {
                    let step_seeds: Vec<u64> = seeds.iter().map(|&s| step_seed(s, i)).collect();
                    seeded_noise(&step_seeds, [c, h, w], &device)
                });
                (
                    scheduler.step(schedule, output, t, t_prev, latents, noise),
                    None,
                )
            }
        };
        let step = strategy.after_step(step, i, t, t_prev, schedule);
        latents = step.prev_sample;
        last_x0 = step.pred_x0;
        let view = StepView {
            step: i + 1 - settings.first_step,
            total,
            timestep: t,
            pred_x0: &last_x0,
            latents: &latents,
            guidance: gradient.as_ref(),
        };
        finish_step(&view, on_step)?;
    }
    Ok(Sampled { latents, last_x0 })
}
