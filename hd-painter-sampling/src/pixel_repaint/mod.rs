//! RePaint as published: the resampling walk in pixel space over an unconditional (or
//! class-conditional) DDPM, in the official code's semantics (andreas128/RePaint: the known
//! region re-noised into `x_t` before each model call, learned-variance posterior sampling over a
//! respaced schedule) or in diffusers' `RePaintScheduler`'s (a DDIM-like step with `eta`, the
//! known region merged after it).

mod diffusers;
mod official;

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use hd_painter_models::PixelDenoiser;

use crate::error::{Result, SamplingError};
use crate::repaint::NoiseDraws;
use crate::schedule::NoiseSchedule;

pub use official::{respaced, space_timesteps};

/// Which implementation's semantics a run follows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PixelRepaintMode {
    /// The official code (`p_sample_loop_progressive` with `schedule_jump_params`): the
    /// training schedule respaced to `steps` (guided-diffusion's `space_timesteps`), before every
    /// reverse step but the first the known region of `x_t` replaced by the original noised to
    /// `t`, then `x_{t-1}` drawn from the posterior with the model's learned variance
    /// (`LEARNED_RANGE`); undo steps `q(x_{t+1} | x_t)` with the respaced betas. Needs a model
    /// with learned variance (`out_channels = 2 x 3`), as the official code asserts.
    Official,
    /// diffusers' `RePaintPipeline` + `RePaintScheduler`: every `train / steps`-th training
    /// timestep, a DDIM step with `eta` whose noise also noises the original for the known
    /// region, undo steps over every training step in between. A learned-variance output's
    /// second half is ignored.
    Diffusers {
        /// The DDIM eta of the reverse steps (0: deterministic in the hole).
        eta: f64,
    },
}

/// The settings of a pixel-space RePaint run (the paper's: 250 steps, jumps of 10 steps, 10
/// resamplings).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PixelRepaintSettings {
    /// `t_T`: reverse steps.
    pub steps: usize,
    /// Steps walked back up at each jump.
    pub jump_length: usize,
    /// How many times each jump point is visited.
    pub jump_n_sample: usize,
    /// Whose semantics.
    pub mode: PixelRepaintMode,
    /// Clip each x0 prediction to `[-1, 1]` (both implementations' default).
    pub clip_denoised: bool,
}

impl Default for PixelRepaintSettings {
    fn default() -> Self {
        Self {
            steps: 250,
            jump_length: 10,
            jump_n_sample: 10,
            mode: PixelRepaintMode::Official,
            clip_denoised: true,
        }
    }
}

/// The known region: the original `[1 or n, c, h, w]` in `[-1, 1]` and where it is kept
/// `[1 or n, 1, h, w]` (1 = keep, 0 = inpaint: both implementations' `gt_keep_mask` / `mask`).
#[derive(Clone, Debug)]
pub struct KnownPixels {
    /// The original image in `[-1, 1]`.
    pub image: Tensor<4>,
    /// 1 where the original is kept.
    pub keep: Tensor<4>,
}

impl KnownPixels {
    /// `known` where the original is kept, `x` elsewhere.
    fn merge(&self, known: Tensor<4>, x: Tensor<4>) -> Tensor<4> {
        let hole = self.keep.clone().neg() + 1.0;
        known * self.keep.clone() + x * hole
    }

    /// The original noised to `a_bar` with `z`.
    fn noised(&self, a_bar: f64, z: Tensor<4>) -> Tensor<4> {
        self.image.clone() * a_bar.sqrt() + z * (1.0 - a_bar).sqrt()
    }
}

/// What the step callback sees after each reverse step.
pub struct PixelStep<'a> {
    /// Reverse steps done, from 1.
    pub step: usize,
    /// Reverse steps in the whole walk.
    pub total: usize,
    /// The training timestep the model was called at.
    pub timestep: usize,
    /// The step's x0 prediction.
    pub pred_x0: &'a Tensor<4>,
    /// The sample after the step (`x_{t-1}`, the known region merged in diffusers' mode).
    pub sample: &'a Tensor<4>,
}

/// The step callback: `Break` cancels the run ([`SamplingError::Cancelled`]).
pub type OnPixelStep<'a> = &'a mut dyn FnMut(&PixelStep<'_>) -> ControlFlow<()>;

/// One pixel-space RePaint run: a model, its training schedule and the class labels of a
/// class-conditional model.
pub struct PixelRepaint<'a> {
    /// The denoiser.
    pub model: &'a dyn PixelDenoiser,
    /// The training noise schedule (guided-diffusion's and the DDPM folders' 1000 linear
    /// steps from 1e-4 to 0.02).
    pub schedule: &'a NoiseSchedule,
    /// One label per image for a class-conditional model.
    pub class_labels: Option<&'a [i64]>,
}

impl PixelRepaint<'_> {
    /// Runs the walk from `x_t` (standard-normal noise shaped like the images) and returns the
    /// final sample in `[-1, 1]` (unclamped, as both implementations return it). `draw` gives
    /// every later standard-normal draw, in the implementation's order.
    pub fn run(
        &self,
        settings: &PixelRepaintSettings,
        known: &KnownPixels,
        x_t: Tensor<4>,
        draw: NoiseDraws<'_>,
        on_step: OnPixelStep<'_>,
    ) -> Result<Tensor<4>> {
        self.check(settings, known, &x_t)?;
        match settings.mode {
            PixelRepaintMode::Official => self.official(settings, known, x_t, draw, on_step),
            PixelRepaintMode::Diffusers { eta } => {
                self.diffusers(settings, eta, known, x_t, draw, on_step)
            }
        }
    }

    fn check(&self, s: &PixelRepaintSettings, known: &KnownPixels, x: &Tensor<4>) -> Result<()> {
        let invalid = |m: String| Err(SamplingError::InvalidInput(m));
        let train = self.schedule.len();
        if s.steps == 0 || s.steps > train {
            return invalid(format!(
                "{} RePaint steps over {train} training timesteps",
                s.steps
            ));
        }
        if s.jump_length >= s.steps && s.jump_n_sample > 1 {
            return invalid(format!(
                "jump length {} must be below the {} steps",
                s.jump_length, s.steps
            ));
        }
        let [b, c, h, w] = x.dims();
        let [kb, kc, kh, kw] = known.image.dims();
        let [mb, mc, mh, mw] = known.keep.dims();
        let fits = |n: usize| n == 1 || n == b;
        if kc != c || mc != 1 || [kh, kw] != [h, w] || [mh, mw] != [h, w] || !fits(kb) || !fits(mb)
        {
            return invalid(format!(
                "known image {:?} and keep mask {:?} for samples {:?}",
                known.image.dims(),
                known.keep.dims(),
                x.dims()
            ));
        }
        if self.class_labels.is_some_and(|l| l.len() != b) {
            return invalid(format!(
                "{} class labels for {b} images",
                self.class_labels.map_or(0, <[i64]>::len)
            ));
        }
        if matches!(s.mode, PixelRepaintMode::Official) && !self.model.learned_variance() {
            return invalid(format!(
                "the official RePaint sampler needs a model with learned variance ({} output \
                 channels); this one has {}: use the diffusers mode",
                2 * self.model.image_channels(),
                self.model.output_channels()
            ));
        }
        Ok(())
    }

    /// The model's noise prediction and (with learned variance) its variance values at training
    /// timestep `t` for every image.
    fn predict(&self, x: Tensor<4>, t: usize) -> Result<(Tensor<4>, Option<Tensor<4>>)> {
        let [b, c, _, _] = x.dims();
        let out = self
            .model
            .predict(x, &vec![t as f32; b], self.class_labels)?;
        if out.dims()[1] == 2 * c {
            let [eps, v] = out.chunk(2, 1).try_into().expect("two halves");
            Ok((eps, Some(v)))
        } else {
            Ok((out, None))
        }
    }
}

/// `x0 = (x - sqrt(1 - a) eps) / sqrt(a)`, clipped to `[-1, 1]` if asked.
fn predict_x0(x: Tensor<4>, eps: Tensor<4>, a_bar: f64, clip: bool) -> Tensor<4> {
    let x0 = x * (1.0 / a_bar).sqrt() - eps * (1.0 / a_bar - 1.0).sqrt();
    if clip { x0.clamp(-1.0, 1.0) } else { x0 }
}

/// The reverse steps in a walk (the visits of each timestep on the way down).
fn reverse_count(walk: &[isize]) -> usize {
    walk.windows(2).filter(|w| w[1] < w[0]).count()
}
