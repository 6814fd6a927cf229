//! `LCMScheduler`: latent consistency models' multistep sampling. Each call maps the sample to
//! its consistency-function output (the x0 prediction with the boundary-condition scalings)
//! and, but at the last call, re-noises it with fresh noise to the next timestep.

use burn::tensor::Tensor;

use crate::ddim::Prediction;
use crate::error::{Result, SamplingError};
use crate::schedule::NoiseSchedule;

use super::sigmas::linspace;
use super::{Denoised, NoiseLevel, NoiseTerm, Scheduler, SchedulerKind, SchedulerSpec};

/// LCM over one run's timesteps, taken from the distillation grid.
#[derive(Clone, Debug)]
pub(crate) struct Lcm {
    schedule: NoiseSchedule,
    timesteps: Vec<f64>,
    prediction: Prediction,
    timestep_scaling: f64,
}

impl Lcm {
    pub(crate) fn new(spec: &SchedulerSpec, schedule: NoiseSchedule, steps: usize) -> Result<Self> {
        let SchedulerKind::Lcm {
            original_steps,
            timestep_scaling,
        } = spec.kind
        else {
            unreachable!("built from its own kind")
        };
        let train = schedule.len();
        if original_steps > train || steps > original_steps {
            return Err(SamplingError::InvalidInput(format!(
                "LCMScheduler: {steps} steps of original_inference_steps {original_steps} \
                 (expected steps <= original_inference_steps <= {train})"
            )));
        }
        // The distillation grid k - 1, 2k - 1, ..., descending; `steps` of it, evenly indexed.
        let k = train / original_steps;
        let origin: Vec<usize> = (1..=original_steps).rev().map(|i| i * k - 1).collect();
        let timesteps = linspace(0.0, origin.len() as f64, steps + 1)[..steps]
            .iter()
            .map(|&i| origin[i.floor() as usize] as f64)
            .collect();
        Ok(Self {
            schedule,
            timesteps,
            prediction: spec.prediction,
            timestep_scaling,
        })
    }

    fn alpha(&self, index: usize) -> f64 {
        self.schedule.alpha_cumprod(self.timesteps[index] as isize)
    }
}

impl Scheduler for Lcm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn level(&self, index: usize) -> NoiseLevel {
        match index < self.timesteps.len() {
            true => NoiseLevel::from_alpha_cumprod(self.alpha(index)),
            false => NoiseLevel::clean(),
        }
    }

    fn draws_noise(&self, index: usize) -> bool {
        index + 1 < self.timesteps.len()
    }

    fn step(&mut self, d: &Denoised, index: usize, x: Tensor<4>, noise: NoiseTerm) -> Tensor<4> {
        let scaled = self.timesteps[index] * self.timestep_scaling;
        let sigma_data2 = 0.25;
        let c_skip = sigma_data2 / (scaled * scaled + sigma_data2);
        let c_out = scaled / (scaled * scaled + sigma_data2).sqrt();
        let denoised = d.x0.clone() * c_out + x * c_skip;
        if index + 1 == self.timesteps.len() {
            return denoised;
        }
        let level = self.level(index + 1);
        match noise {
            NoiseTerm::Fresh(z) => level.noised(denoised, z),
            NoiseTerm::Guided(term) => level.noised(denoised, term.direction),
            NoiseTerm::None => denoised * level.signal,
        }
    }
}
