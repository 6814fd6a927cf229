//! `PNDMScheduler` with `skip_prk_steps` (Stable Diffusion 1.x's published scheduler): pseudo
//! linear multistep (PLMS) on the noise predictions. The second timestep is visited twice: the
//! first step is redone from the same sample with the average of the first two predictions.

use burn::tensor::Tensor;

use crate::ddim::Prediction;
use crate::schedule::{NoiseSchedule, Spacing, timesteps};

use super::sigmas::linspace;
use super::{Denoised, NoiseLevel, NoiseTerm, Scheduler, SchedulerSpec};

/// PLMS over one run's timesteps.
#[derive(Clone, Debug)]
pub(crate) struct Pndm {
    schedule: NoiseSchedule,
    timesteps: Vec<f64>,
    ratio: isize,
    prediction: Prediction,
    /// The noise predictions so far, newest last (at most 4).
    ets: Vec<Tensor<4>>,
    /// The sample the first step started from (redone at the second call).
    first_sample: Option<Tensor<4>>,
    calls: usize,
}

/// The ascending base grid of `set_timesteps`.
fn base_grid(spacing: Spacing, train: usize, n: usize) -> Vec<usize> {
    match spacing {
        Spacing::Linspace => linspace(0.0, (train - 1) as f64, n)
            .into_iter()
            .map(|t| t.round_ties_even() as usize)
            .collect(),
        Spacing::Leading { steps_offset } => {
            (0..n).map(|k| k * (train / n) + steps_offset).collect()
        }
        Spacing::Trailing | Spacing::HdPainter => {
            let mut t = timesteps(Spacing::Trailing, train, n);
            t.reverse();
            t
        }
    }
}

impl Pndm {
    pub(crate) fn new(spec: &SchedulerSpec, schedule: NoiseSchedule, steps: usize) -> Self {
        let base = base_grid(spec.spacing, schedule.len(), steps);
        // [base[:-1], base[-2:-1], base[-1:]] reversed: the second-to-last base timestep twice.
        let n = base.len();
        let mut plms: Vec<usize> = base[..n - 1].to_vec();
        plms.extend_from_slice(&base[n.saturating_sub(2)..n - 1]);
        plms.push(base[n - 1]);
        plms.reverse();
        Self {
            ratio: (schedule.len() / steps) as isize,
            schedule,
            timesteps: plms.into_iter().map(|t| t as f64).collect(),
            prediction: spec.prediction,
            ets: Vec::new(),
            first_sample: None,
            calls: 0,
        }
    }

    fn alpha(&self, t: isize) -> f64 {
        self.schedule.alpha_cumprod(t)
    }
}

impl Scheduler for Pndm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn level(&self, index: usize) -> NoiseLevel {
        let t = match self.timesteps.get(index) {
            Some(&t) => t as isize,
            None => self.timesteps[index - 1] as isize - self.ratio,
        };
        NoiseLevel::from_alpha_cumprod(self.alpha(t))
    }

    fn steps_on_x0(&self) -> bool {
        false
    }

    fn step(&mut self, d: &Denoised, index: usize, x: Tensor<4>, _noise: NoiseTerm) -> Tensor<4> {
        let mut t = self.timesteps[index] as isize;
        let mut t_prev = t - self.ratio;
        let eps = d.eps.clone();
        let mut x = x;
        let combined = if self.calls == 1 {
            // The first step again, from its own sample, with the two predictions averaged.
            t_prev = t;
            t += self.ratio;
            x = self.first_sample.take().unwrap_or(x);
            (eps + self.ets[self.ets.len() - 1].clone()) / 2.0
        } else {
            if self.ets.len() == 4 {
                self.ets.remove(0);
            }
            self.ets.push(eps);
            let e = |k: usize| self.ets[self.ets.len() - k].clone();
            match self.ets.len() {
                1 => {
                    self.first_sample = Some(x.clone());
                    e(1)
                }
                2 => (e(1) * 3.0 - e(2)) / 2.0,
                3 => (e(1) * 23.0 - e(2) * 16.0 + e(3) * 5.0) / 12.0,
                _ => (e(1) * 55.0 - e(2) * 59.0 + e(3) * 37.0 - e(4) * 9.0) / 24.0,
            }
        };
        self.calls += 1;
        let (a, a_prev) = (self.alpha(t), self.alpha(t_prev));
        let sample_coeff = (a_prev / a).sqrt();
        let denom = a * (1.0 - a_prev).sqrt() + (a * (1.0 - a) * a_prev).sqrt();
        x * sample_coeff - combined * ((a_prev - a) / denom)
    }
}
