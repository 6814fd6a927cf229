//! The reverse-step rule as a trait, so that the sampling loop is written once for every
//! scheduler: DDIM (deterministic, or with eta and fresh noise) and DDPM.

use burn::tensor::Tensor;

use crate::ddim::{Prediction, StepOutput, ddim_sigma, ddim_step, ddpm_step};
use crate::guidance::StepTerm;
use crate::schedule::NoiseSchedule;

/// What a step adds to its deterministic update.
#[derive(Clone, Debug)]
pub enum NoiseTerm {
    /// Nothing (deterministic).
    None,
    /// Fresh standard-normal noise, scaled by the scheduler's own sigma.
    Fresh(Tensor<4>),
    /// The guidance's term in place of the random one (RASG's gradient).
    Guided(StepTerm),
}

/// A reverse-diffusion update from the model output at `t` to the sample at `t_prev`, with the
/// x0 prediction exposed.
pub trait Scheduler {
    /// Whether [`step`](Self::step) uses fresh standard-normal noise (the loop then draws it,
    /// seeded per image and step).
    fn is_stochastic(&self) -> bool;

    /// Whether a guidance term can stand in for the random term ([`NoiseTerm::Guided`]); the
    /// sampling run refuses guidance with terms on a scheduler without.
    fn takes_terms(&self) -> bool {
        false
    }

    /// One step; `noise` is [`NoiseTerm::Fresh`] when [`is_stochastic`](Self::is_stochastic)
    /// and the guidance has no term of its own.
    fn step(
        &self,
        schedule: &NoiseSchedule,
        output: Tensor<4>,
        t: usize,
        t_prev: isize,
        sample: Tensor<4>,
        noise: NoiseTerm,
    ) -> StepOutput;
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

    fn takes_terms(&self) -> bool {
        true
    }

    fn step(
        &self,
        schedule: &NoiseSchedule,
        output: Tensor<4>,
        t: usize,
        t_prev: isize,
        sample: Tensor<4>,
        noise: NoiseTerm,
    ) -> StepOutput {
        let noise = match noise {
            NoiseTerm::None => None,
            NoiseTerm::Fresh(z) => Some((self.eta * ddim_sigma(schedule, t, t_prev), z)),
            NoiseTerm::Guided(term) => Some((term.scale, term.direction)),
        };
        ddim_step(schedule, self.prediction, output, t, t_prev, sample, noise)
    }
}

/// DDPM's ancestral sampling ("fixed small" variance). It takes no guidance terms: a
/// [`NoiseTerm::Guided`]'s direction is used as its noise.
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
        noise: NoiseTerm,
    ) -> StepOutput {
        let noise = match noise {
            NoiseTerm::None => None,
            NoiseTerm::Fresh(z) => Some(z),
            NoiseTerm::Guided(term) => Some(term.direction),
        };
        ddpm_step(schedule, self.prediction, output, t, t_prev, sample, noise)
    }
}
