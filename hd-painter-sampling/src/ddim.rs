//! The DDIM update (DDIM paper, eq. 12) in the forms the samplers need: deterministic, with the
//! paper's sigma and fresh noise, or with an externally supplied direction (RASG's gradient);
//! and DDPM's posterior step; the x0 prediction is returned at every step.

use burn::tensor::Tensor;

use crate::schedule::NoiseSchedule;

/// What the UNet predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// The noise `eps` (SD 1.x / 2.x base and inpainting models).
    Epsilon,
    /// `v = sqrt(a_bar) eps - sqrt(1 - a_bar) x0` (the x4 upscaler, SD 2.x 768).
    VPrediction,
}

/// One scheduler step's results (DDIM's, DDPM's, RePaint's).
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// `x_{t'}`.
    pub prev_sample: Tensor<4>,
    /// The x0 prediction at `t`.
    pub pred_x0: Tensor<4>,
    /// The noise prediction at `t`.
    pub pred_eps: Tensor<4>,
}

/// `x0` and `eps` from the model output at `t`.
pub fn predict(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    model_output: Tensor<4>,
    t: usize,
    sample: Tensor<4>,
) -> (Tensor<4>, Tensor<4>) {
    let a = schedule.alpha_cumprod(t as isize);
    let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
    match prediction {
        Prediction::Epsilon => ((sample - model_output.clone() * sb) / sa, model_output),
        Prediction::VPrediction => (
            sample.clone() * sa - model_output.clone() * sb,
            model_output * sa + sample * sb,
        ),
    }
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

/// The DDIM step `t -> t_prev` (`t_prev < 0` for the last one): `x' = sqrt(a_bar') x0 +
/// sqrt(1 - a_bar' - s^2) eps + s z`. `noise` is `(s, z)`: `None` for plain DDIM (s = 0), or
/// the scale and the tensor to add, either `eta * ddim_sigma` with Gaussian noise (diffusers'
/// `eta`) or RASG's scaled gradient.
pub fn ddim_step(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    model_output: Tensor<4>,
    t: usize,
    t_prev: isize,
    sample: Tensor<4>,
    noise: Option<(f64, Tensor<4>)>,
) -> StepOutput {
    let (pred_x0, pred_eps) = predict(schedule, prediction, model_output, t, sample);
    let a_prev = schedule.alpha_cumprod(t_prev);
    let s = noise.as_ref().map_or(0.0, |(s, _)| *s);
    let direction = (1.0 - a_prev - s * s).max(0.0).sqrt();
    let mut prev_sample = pred_x0.clone() * a_prev.sqrt() + pred_eps.clone() * direction;
    if let Some((s, z)) = noise {
        prev_sample = prev_sample + z * s;
    }
    StepOutput {
        prev_sample,
        pred_x0,
        pred_eps,
    }
}

/// The DDPM ancestral step `t -> t_prev` (DDPM paper eq. 7, "fixed small" variance): the
/// posterior mean plus `sqrt(var) z` for `t > 0`, as diffusers' `DDPMScheduler` computes it
/// (`a_bar = 1` after the last step).
pub fn ddpm_step(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    model_output: Tensor<4>,
    t: usize,
    t_prev: isize,
    sample: Tensor<4>,
    noise: Option<Tensor<4>>,
) -> StepOutput {
    let (pred_x0, pred_eps) = predict(schedule, prediction, model_output, t, sample.clone());
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
    let mut prev_sample = pred_x0.clone() * x0_coeff + sample * x_coeff;
    if let (true, Some(z)) = (t > 0, noise) {
        let variance = ((1.0 - a_prev) / (1.0 - a) * current_beta).max(1e-20);
        prev_sample = prev_sample + z * variance.sqrt();
    }
    StepOutput {
        prev_sample,
        pred_x0,
        pred_eps,
    }
}
