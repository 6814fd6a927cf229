//! DDIM and DDPM over an integer grid of training timesteps, stepping `t -> t - T / n`.

use burn::tensor::Tensor;

use crate::ddim::{Prediction, ddim_sigma};
use crate::schedule::{NoiseSchedule, timesteps};

use super::{Denoised, NoiseLevel, NoiseTerm, Scheduler, SchedulerSpec};

/// The grid both share: the spacing's timesteps and the stride to the previous one.
#[derive(Clone, Debug)]
struct Grid {
    schedule: NoiseSchedule,
    timesteps: Vec<f64>,
    dt: isize,
    prediction: Prediction,
}

impl Grid {
    fn new(spec: &SchedulerSpec, schedule: NoiseSchedule, steps: usize) -> Self {
        let dt = (schedule.len() / steps) as isize;
        let timesteps = timesteps(spec.spacing, schedule.len(), steps)
            .into_iter()
            .map(|t| t as f64)
            .collect();
        Self {
            schedule,
            timesteps,
            dt,
            prediction: spec.prediction,
        }
    }

    fn t(&self, index: usize) -> (usize, isize) {
        let t = self.timesteps[index] as usize;
        (t, t as isize - self.dt)
    }

    fn level(&self, index: usize) -> NoiseLevel {
        let t = match index < self.timesteps.len() {
            true => self.t(index).0 as isize,
            false => self.t(index - 1).1,
        };
        NoiseLevel::from_alpha_cumprod(self.schedule.alpha_cumprod(t))
    }
}

/// `DDIMScheduler`: `x' = sqrt(a_bar') x0 + sqrt(1 - a_bar' - s^2) eps + s z` (DDIM paper,
/// eq. 12) with `s = eta sigma_t`, or a guidance term's scale and direction.
#[derive(Clone, Debug)]
pub(crate) struct Ddim {
    grid: Grid,
    eta: f64,
}

impl Ddim {
    pub(crate) fn new(
        spec: &SchedulerSpec,
        schedule: NoiseSchedule,
        steps: usize,
        eta: f64,
    ) -> Self {
        Self {
            grid: Grid::new(spec, schedule, steps),
            eta,
        }
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.grid.timesteps
    }

    fn prediction(&self) -> Prediction {
        self.grid.prediction
    }

    fn level(&self, index: usize) -> NoiseLevel {
        self.grid.level(index)
    }

    fn draws_noise(&self, _index: usize) -> bool {
        self.eta > 0.0
    }

    fn ddim_timesteps(&self, index: usize) -> Option<(usize, isize)> {
        Some(self.grid.t(index))
    }

    fn step(&mut self, d: &Denoised, index: usize, _x: Tensor<4>, noise: NoiseTerm) -> Tensor<4> {
        let (t, t_prev) = self.grid.t(index);
        let schedule = &self.grid.schedule;
        let noise = match noise {
            NoiseTerm::None => None,
            NoiseTerm::Fresh(z) => Some((self.eta * ddim_sigma(schedule, t, t_prev), z)),
            NoiseTerm::Guided(term) => Some((term.scale, term.direction)),
        };
        crate::ddim::ddim_update(schedule, d, t_prev, noise)
    }
}

/// `DDPMScheduler`'s ancestral step ("fixed small" variance). Its random term is the run's
/// fresh noise.
#[derive(Clone, Debug)]
pub(crate) struct Ddpm {
    grid: Grid,
}

impl Ddpm {
    pub(crate) fn new(spec: &SchedulerSpec, schedule: NoiseSchedule, steps: usize) -> Self {
        Self {
            grid: Grid::new(spec, schedule, steps),
        }
    }
}

impl Scheduler for Ddpm {
    fn timesteps(&self) -> &[f64] {
        &self.grid.timesteps
    }

    fn prediction(&self) -> Prediction {
        self.grid.prediction
    }

    fn level(&self, index: usize) -> NoiseLevel {
        match index < self.grid.timesteps.len() {
            true => self.grid.level(index),
            false => NoiseLevel::clean(),
        }
    }

    fn draws_noise(&self, index: usize) -> bool {
        self.grid.t(index).0 > 0
    }

    fn step(&mut self, d: &Denoised, index: usize, x: Tensor<4>, noise: NoiseTerm) -> Tensor<4> {
        let (t, t_prev) = self.grid.t(index);
        let noise = match noise {
            NoiseTerm::None => None,
            NoiseTerm::Fresh(z) => Some(z),
            NoiseTerm::Guided(term) => Some(term.direction),
        };
        crate::ddim::ddpm_update(&self.grid.schedule, d, t, t_prev, x, noise)
    }
}
