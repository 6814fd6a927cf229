//! The schedulers: the reverse-step rules of diffusers' scheduler classes, as one trait that
//! the sampling run is written against. Each is built for one run ([`SchedulerSpec::build`]):
//! it owns its grid (the UNet's timesteps, and sigmas where it has them) and, for the multistep
//! ones, the state of the steps so far.

mod config;
mod ddim;
mod deis;
mod dpm;
mod euler;
mod lcm;
mod pndm;
mod sigmas;
mod spec;
mod unipc;

use burn::tensor::Tensor;

use crate::ddim::Prediction;
use crate::guidance::StepTerm;

pub use spec::{FinalSigma, SchedulerKind, SchedulerSpec, SolverType};

/// What a step adds to its deterministic update.
#[derive(Clone, Debug)]
pub enum NoiseTerm {
    /// Nothing (deterministic).
    None,
    /// Fresh standard-normal noise, scaled as the scheduler does.
    Fresh(Tensor<4>),
    /// The guidance's term in place of the random one (RASG's gradient).
    Guided(StepTerm),
}

/// How noisy the samples of a step are: `x = signal x0 + noise eps`, and the factor the UNet
/// input is scaled by (diffusers' `scale_model_input`: `1 / sqrt(sigma^2 + 1)` for the
/// sigma-parameterised schedulers, whose samples are `x0 + sigma eps`; 1 for the others).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseLevel {
    /// The factor of the clean sample.
    pub signal: f64,
    /// The factor of the noise.
    pub noise: f64,
    /// The UNet input's scale.
    pub input_scale: f64,
}

impl NoiseLevel {
    /// The level of a variance-preserving sample at `a_bar`: `sqrt(a_bar) x0 + sqrt(1 - a_bar) eps`.
    pub fn from_alpha_cumprod(a: f64) -> Self {
        Self {
            signal: a.sqrt(),
            noise: (1.0 - a).sqrt(),
            input_scale: 1.0,
        }
    }

    /// A clean sample.
    pub fn clean() -> Self {
        Self {
            signal: 1.0,
            noise: 0.0,
            input_scale: 1.0,
        }
    }

    /// `signal x0 + noise eps` (diffusers' `add_noise` at this level).
    pub fn noised(&self, x0: Tensor<4>, eps: Tensor<4>) -> Tensor<4> {
        x0 * self.signal + eps * self.noise
    }
}

/// The model output of a step read as the clean-sample and noise predictions.
#[derive(Clone, Debug)]
pub struct Denoised {
    /// The x0 prediction (a latent strategy may replace it before the update).
    pub x0: Tensor<4>,
    /// The noise prediction.
    pub eps: Tensor<4>,
}

impl Denoised {
    /// The predictions from a model output predicting `prediction`, for samples `x` at
    /// `level`. v-prediction is defined on the variance-preserving sample `x * input_scale`.
    pub fn of(prediction: Prediction, level: NoiseLevel, output: Tensor<4>, x: Tensor<4>) -> Self {
        match prediction {
            Prediction::Epsilon => Self {
                x0: (x - output.clone() * level.noise) / level.signal,
                eps: output,
            },
            Prediction::VPrediction => {
                let c = level.input_scale;
                let (alpha, sigma) = (level.signal * c, level.noise * c);
                let x = x * c;
                Self {
                    x0: x.clone() * alpha - output.clone() * sigma,
                    eps: output * alpha + x * sigma,
                }
            }
        }
    }
}

/// A reverse-diffusion scheduler over one run's grid. Calls are indexed `0..timesteps().len()`
/// in order; [`step`](Self::step) may keep state from one call to the next (multistep solvers).
pub trait Scheduler {
    /// The timesteps the UNet sees, one per call (fractional for Euler over a sigma grid).
    fn timesteps(&self) -> &[f64];

    /// What the UNet predicts.
    fn prediction(&self) -> Prediction;

    /// The noise level of the samples at call `index`; `index == timesteps().len()` is the
    /// level after the last step.
    fn level(&self, index: usize) -> NoiseLevel;

    /// The sigmas of the grid, one per call and the final one, where the scheduler steps over
    /// sigmas (Euler, DPM-Solver, UniPC; diffusers' `scheduler.sigmas`).
    fn sigmas(&self) -> Option<&[f64]> {
        None
    }

    /// The scale of the standard-normal noise a run starts from (diffusers' `init_noise_sigma`).
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// The predictions of call `index`'s model output for sample `x`.
    fn denoise(&self, output: Tensor<4>, index: usize, x: Tensor<4>) -> Denoised {
        Denoised::of(self.prediction(), self.level(index), output, x)
    }

    /// Whether call `index`'s [`step`](Self::step) adds fresh standard-normal noise (the run
    /// then draws it, seeded per image and call), where diffusers' scheduler draws it: DDPM
    /// not at `t = 0`, LCM not at its last call.
    fn draws_noise(&self, _index: usize) -> bool {
        false
    }

    /// The DDIM timesteps `t -> t_prev` of call `index` where this is DDIM's update, whose
    /// random term a guidance term (RASG's) can stand in for; `None` for the others.
    fn ddim_timesteps(&self, _index: usize) -> Option<(usize, isize)> {
        None
    }

    /// Whether the update is computed from [`Denoised::x0`] (so that a strategy replacing it
    /// steers the step); PNDM's is computed from the noise prediction alone.
    fn steps_on_x0(&self) -> bool {
        true
    }

    /// Call `index`'s update of sample `x`: the sample at the next call's level.
    fn step(
        &mut self,
        denoised: &Denoised,
        index: usize,
        x: Tensor<4>,
        noise: NoiseTerm,
    ) -> Tensor<4>;
}
