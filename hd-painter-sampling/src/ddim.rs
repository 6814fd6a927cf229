//! The DDIM update (DDIM paper, eq. 12) in the forms the samplers need: deterministic, with the
//! paper's sigma and fresh noise, or with an externally supplied direction (RASG's gradient);
//! and DDPM's posterior step; the x0 prediction is returned at every step. The schedulers
//! ([`crate::Ddim`], [`crate::Ddpm`]) and RePaint step with these.

use burn::tensor::Tensor;

use crate::schedule::NoiseSchedule;
use crate::schedulers::{Denoised, NoiseLevel};

/// What the UNet predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// The noise `eps` (SD 1.x / 2.x base and inpainting models).
    Epsilon,
    /// `v = sqrt(a_bar) eps - sqrt(1 - a_bar) x0` (the x4 upscaler, SD 2.x 768).
    VPrediction,
}

/// One scheduler step's results.
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// `x_{t'}`.
    pub prev_sample: Tensor<4>,
    /// The x0 prediction at `t`.
    pub pred_x0: Tensor<4>,
    /// The noise prediction at `t`.
    pub pred_eps: Tensor<4>,
}

impl StepOutput {
    /// The next sample and the predictions it was computed from.
    pub fn new(prev_sample: Tensor<4>, d: Denoised) -> Self {
        Self {
            prev_sample,
            pred_x0: d.x0,
            pred_eps: d.eps,
        }
    }
}

/// `x0` and `eps` from the model output at `t`.
pub fn predict(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    model_output: Tensor<4>,
    t: usize,
    sample: Tensor<4>,
) -> Denoised {
    let level = NoiseLevel::from_alpha_cumprod(schedule.alpha_cumprod(t as isize));
    Denoised::of(prediction, level, model_output, sample)
}

/// The DDIM paper's sigma for the step `t -> t_prev` at `eta = 1`:
/// `sqrt((1 - a_bar') / (1 - a_bar) * (1 - a_bar / a_bar'))`.
pub fn ddim_sigma(schedule: &NoiseSchedule, t: usize, t_prev: isize) -> f64 {
    let (a, a_prev) = (
        schedule.alpha_cumprod(t as isize),
        schedule.alpha_cumprod(t_prev),
    );
    ((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)).sqrt()
}

/// The DDIM step `t -> t_prev` (`t_prev < 0` for the last one) of a model output: `x' =
/// sqrt(a_bar') x0 + sqrt(1 - a_bar' - s^2) eps + s z`. `noise` is `(s, z)`: `None` for plain
/// DDIM (s = 0), or the scale and the tensor to add, either `eta * ddim_sigma` with Gaussian
/// noise (diffusers' `eta`) or RASG's scaled gradient.
pub fn ddim_step(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    model_output: Tensor<4>,
    t: usize,
    t_prev: isize,
    sample: Tensor<4>,
    noise: Option<(f64, Tensor<4>)>,
) -> StepOutput {
    let d = predict(schedule, prediction, model_output, t, sample);
    let prev_sample = ddim_update(schedule, &d, t_prev, noise);
    StepOutput::new(prev_sample, d)
}

/// DDIM's update to `t_prev` from the predictions.
pub(crate) fn ddim_update(
    schedule: &NoiseSchedule,
    d: &Denoised,
    t_prev: isize,
    noise: Option<(f64, Tensor<4>)>,
) -> Tensor<4> {
    let a_prev = schedule.alpha_cumprod(t_prev);
    let s = noise.as_ref().map_or(0.0, |(s, _)| *s);
    let direction = (1.0 - a_prev - s * s).max(0.0).sqrt();
    let prev_sample = d.x0.clone() * a_prev.sqrt() + d.eps.clone() * direction;
    match noise {
        Some((s, z)) => prev_sample + z * s,
        None => prev_sample,
    }
}

/// The DDPM ancestral step `t -> t_prev` of a model output (DDPM paper eq. 7, "fixed small"
/// variance): the posterior mean plus `sqrt(var) z` for `t > 0`, as diffusers'
/// `DDPMScheduler` computes it (`a_bar = 1` after the last step).
pub fn ddpm_step(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    model_output: Tensor<4>,
    t: usize,
    t_prev: isize,
    sample: Tensor<4>,
    noise: Option<Tensor<4>>,
) -> StepOutput {
    let d = predict(schedule, prediction, model_output, t, sample.clone());
    let prev_sample = ddpm_update(schedule, &d, t, t_prev, sample, noise);
    StepOutput::new(prev_sample, d)
}

/// DDPM's posterior step from the predictions.
pub(crate) fn ddpm_update(
    schedule: &NoiseSchedule,
    d: &Denoised,
    t: usize,
    t_prev: isize,
    sample: Tensor<4>,
    noise: Option<Tensor<4>>,
) -> Tensor<4> {
    let a = schedule.alpha_cumprod(t as isize);
    let a_prev = if t_prev < 0 {
        1.0
    } else {
        schedule.alpha_cumprod(t_prev)
    };
    let current_alpha = a / a_prev;
    let current_beta = 1.0 - current_alpha;
    let x0_coeff = a_prev.sqrt() * current_beta / (1.0 - a);
    let x_coeff = current_alpha.sqrt() * (1.0 - a_prev) / (1.0 - a);
    let prev_sample = d.x0.clone() * x0_coeff + sample * x_coeff;
    match (t > 0, noise) {
        (true, Some(z)) => {
            let variance = ((1.0 - a_prev) / (1.0 - a) * current_beta).max(1e-20);
            prev_sample + z * variance.sqrt()
        }
        _ => prev_sample,
    }
}
