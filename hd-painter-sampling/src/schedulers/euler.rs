//! `EulerDiscreteScheduler` and `EulerAncestralDiscreteScheduler`: Euler steps of the
//! probability-flow ODE over sigmas, on samples `x0 + sigma eps` (the UNet sees them scaled by
//! `1 / sqrt(sigma^2 + 1)`); the ancestral variant steps down to `sigma_down` and adds fresh noise
//! of `sigma_up`.

use burn::tensor::Tensor;

use crate::ddim::Prediction;
use crate::schedule::{NoiseSchedule, Spacing};

use super::sigmas::{
    interp, karras, leading, linspace, log_sigmas, sigma_to_t, to_f32, trailing, train_sigmas,
};
use super::{Denoised, FinalSigma, NoiseLevel, NoiseTerm, Scheduler, SchedulerSpec};

/// Euler (`ancestral: false`) or Euler a over one run's sigma grid.
#[derive(Clone, Debug)]
pub(crate) struct Euler {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction: Prediction,
    ancestral: bool,
}

/// Euler's timesteps: `f32` values, fractional for linspace.
fn euler_timesteps(spacing: Spacing, train: usize, n: usize) -> Vec<f64> {
    match spacing {
        Spacing::Linspace => {
            let mut t: Vec<f64> = linspace(0.0, (train - 1) as f64, n)
                .into_iter()
                .map(to_f32)
                .collect();
            t.reverse();
            t
        }
        Spacing::Leading { steps_offset } => leading(train, n, 0, steps_offset),
        Spacing::Trailing | Spacing::HdPainter => trailing(train, n),
    }
}

impl Euler {
    pub(crate) fn new(
        spec: &SchedulerSpec,
        schedule: &NoiseSchedule,
        steps: usize,
        ancestral: bool,
    ) -> Self {
        let train = train_sigmas(schedule);
        let mut timesteps = euler_timesteps(spec.spacing, schedule.len(), steps);
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
        if spec.karras {
            sigmas = karras(sigmas[sigmas.len() - 1], sigmas[0], steps);
            let logs = log_sigmas(&train);
            timesteps = sigmas
                .iter()
                .map(|&s| to_f32(sigma_to_t(s, &logs)))
                .collect();
        }
        let last = match (ancestral, spec.final_sigma) {
            (false, FinalSigma::SigmaMin) => train[0],
            _ => 0.0,
        };
        sigmas.push(last);
        let sigmas: Vec<f64> = sigmas.into_iter().map(to_f32).collect();
        let max = sigmas.iter().copied().fold(0.0, f64::max);
        let init_noise_sigma = match spec.spacing {
            Spacing::Leading { .. } => to_f32((max * max + 1.0).sqrt()),
            _ => max,
        };
        Self {
            timesteps,
            sigmas,
            init_noise_sigma,
            prediction: spec.prediction,
            ancestral,
        }
    }
}

impl Scheduler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
    }

    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn level(&self, index: usize) -> NoiseLevel {
        let sigma = self.sigmas[index];
        NoiseLevel {
            signal: 1.0,
            noise: sigma,
            input_scale: 1.0 / (sigma * sigma + 1.0).sqrt(),
        }
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn draws_noise(&self, _index: usize) -> bool {
        self.ancestral
    }

    fn step(&mut self, d: &Denoised, index: usize, x: Tensor<4>, noise: NoiseTerm) -> Tensor<4> {
        let (sigma, next) = (self.sigmas[index], self.sigmas[index + 1]);
        let derivative = (x.clone() - d.x0.clone()) / sigma;
        if !self.ancestral {
            return x + derivative * (next - sigma);
        }
        let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
        let down = (next * next - up * up).sqrt();
        let stepped = x + derivative * (down - sigma);
        match noise {
            NoiseTerm::Fresh(z) => stepped + z * up,
            NoiseTerm::Guided(term) => stepped + term.direction * up,
            NoiseTerm::None => stepped,
        }
    }
}
