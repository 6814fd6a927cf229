//! The reverse-step rule as a trait, so that the sampling loop is written once for every
//! scheduler: DDIM (deterministic, or with eta and fresh noise) and DDPM.

use burn::tensor::Tensor;

use crate::ddim::{DdimStep, Prediction, ddim_sigma, ddim_step, ddpm_step};
use crate::schedule::NoiseSchedule;

/// A reverse-diffusion update from the model output at `t` to the sample at `t_prev`, with the
/// x0 prediction exposed.
pub trait Scheduler {
    /// Whether [`step`](Self::step) uses fresh standard-normal noise (the loop then draws it,
    /// seeded per image and step).
    fn is_stochastic(&self) -> bool;

    /// One step; `noise` is given when [`is_stochastic`](Self::is_stochastic).
    fn step(
        &self,
        schedule: &NoiseSchedule,
        output: Tensor<4>,
        t: usize,
        t_prev: isize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> DdimStep;
}

/// DDIM with `eta` (0: deterministic; 1: DDPM-like variance).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ddim {
    /// The scale of the DDIM paper's sigma.
    pub eta: f64,
    /// What the model predicts.
    pub prediction: Prediction,
}

impl Scheduler for Ddim {
    fn is_stochastic(&self) -> bool {
        self.eta > 0.0
    }

    fn step(
        &self,
        schedule: &NoiseSchedule,
        output: Tensor<4>,
        t: usize,
        t_prev: isize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> DdimStep {
        let noise = noise.map(|z| (self.eta * ddim_sigma(schedule, t, t_prev), z));
        ddim_step(schedule, self.prediction, output, t, t_prev, sample, noise)
    }
}

/// DDPM's ancestral sampling ("fixed small" variance).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ddpm {
    /// What the model predicts.
    pub prediction: Prediction,
}

impl Scheduler for Ddpm {
    fn is_stochastic(&self) -> bool {
        true
    }

    fn step(
        &self,
        schedule: &NoiseSchedule,
        output: Tensor<4>,
        t: usize,
        t_prev: isize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> DdimStep {
        ddpm_step(schedule, self.prediction, output, t, t_prev, sample, noise)
    }
}
