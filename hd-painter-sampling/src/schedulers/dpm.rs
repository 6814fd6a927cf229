//! `DPMSolverMultistepScheduler` in its data-prediction forms: DPM-Solver++ 1S / 2M
//! (`dpmsolver++`) and the stochastic DPM++ 2M SDE (`sde-dpmsolver++`), over a sigma grid on
//! variance-preserving samples. The second-order step extrapolates from the previous step's x0
//! prediction.

use burn::tensor::Tensor;

use crate::ddim::Prediction;
use crate::schedule::NoiseSchedule;

use super::sigmas::{alpha_sigma, lambda, multistep_sigmas, multistep_timesteps, train_sigmas};
use super::{
    Denoised, FinalSigma, NoiseLevel, NoiseTerm, Scheduler, SchedulerKind, SchedulerSpec,
    SolverType,
};

/// The multistep grid DPM-Solver and UniPC share: integer timesteps, one sigma per call and
/// the final one.
#[derive(Clone, Debug)]
pub(crate) struct SigmaGrid {
    pub(crate) timesteps: Vec<f64>,
    pub(crate) sigmas: Vec<f64>,
    pub(crate) prediction: Prediction,
}

impl SigmaGrid {
    /// `final_sigma`'s training minimum is, with Karras sigmas and `karras_last`, the last
    /// Karras sigma instead (UniPC's reading).
    pub(crate) fn new(
        spec: &SchedulerSpec,
        schedule: &NoiseSchedule,
        steps: usize,
        karras_last: bool,
    ) -> Self {
        let timesteps = multistep_timesteps(spec.spacing, schedule.len(), steps);
        let (mut sigmas, timesteps) = multistep_sigmas(schedule, timesteps, spec.karras, 0.0);
        if spec.final_sigma == FinalSigma::SigmaMin {
            let n = sigmas.len();
            sigmas[n - 1] = match spec.karras && karras_last {
                true => sigmas[n - 2],
                false => train_sigmas(schedule)[0],
            };
        }
        Self {
            timesteps,
            sigmas,
            prediction: spec.prediction,
        }
    }

    pub(crate) fn level(&self, index: usize) -> NoiseLevel {
        let (alpha, sigma) = alpha_sigma(self.sigmas[index]);
        NoiseLevel {
            signal: alpha,
            noise: sigma,
            input_scale: 1.0,
        }
    }
}

/// One step rule of a multistep solver over a [`SigmaGrid`] (DPM-Solver, DEIS, UniPC), with
/// the state it keeps between calls.
pub(crate) trait MultistepRule {
    /// Whether the rule adds fresh noise.
    fn is_stochastic(&self) -> bool {
        false
    }

    /// The update of `x` at `call`.
    fn step(&mut self, call: RuleCall<'_>, x: Tensor<4>, noise: NoiseTerm) -> Tensor<4>;
}

/// Where a rule's step stands: the grid, the call's predictions and its index.
pub(crate) struct RuleCall<'a> {
    pub(crate) grid: &'a SigmaGrid,
    pub(crate) d: &'a Denoised,
    pub(crate) index: usize,
}

/// A multistep solver: its grid and its rule.
#[derive(Clone, Debug)]
pub(crate) struct Multistep<R> {
    pub(crate) grid: SigmaGrid,
    pub(crate) rule: R,
}

impl<R: MultistepRule> Scheduler for Multistep<R> {
    fn timesteps(&self) -> &[f64] {
        &self.grid.timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.grid.sigmas)
    }

    fn prediction(&self) -> Prediction {
        self.grid.prediction
    }

    fn level(&self, index: usize) -> NoiseLevel {
        self.grid.level(index)
    }

    fn draws_noise(&self, _index: usize) -> bool {
        self.rule.is_stochastic()
    }

    fn step(&mut self, d: &Denoised, index: usize, x: Tensor<4>, noise: NoiseTerm) -> Tensor<4> {
        let grid = &self.grid;
        self.rule.step(RuleCall { grid, d, index }, x, noise)
    }
}

/// DPM-Solver++ (2M, or 1S with order 1; SDE with `sde`).
#[derive(Clone, Debug)]
pub(crate) struct DpmSolver {
    order: usize,
    sde: bool,
    solver: SolverType,
    lower_order_final: bool,
    final_zero: bool,
    /// The previous call's x0 prediction.
    previous: Option<Tensor<4>>,
}

impl DpmSolver {
    pub(crate) fn build(
        spec: &SchedulerSpec,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Multistep<Self> {
        let SchedulerKind::DpmSolver { order, sde, solver } = spec.kind else {
            unreachable!("built from its own kind")
        };
        Multistep {
            grid: SigmaGrid::new(spec, schedule, steps, false),
            rule: Self {
                order,
                sde,
                solver,
                lower_order_final: spec.lower_order_final,
                final_zero: spec.final_sigma == FinalSigma::Zero,
                previous: None,
            },
        }
    }
}

impl MultistepRule for DpmSolver {
    fn is_stochastic(&self) -> bool {
        self.sde
    }

    fn step(&mut self, call: RuleCall<'_>, x: Tensor<4>, noise: NoiseTerm) -> Tensor<4> {
        let RuleCall { grid, d, index } = call;
        let n = grid.timesteps.len();
        let final_first_order =
            index + 1 == n && ((self.lower_order_final && n < 15) || self.final_zero);
        let previous = self.previous.replace(d.x0.clone());
        let sigmas = &grid.sigmas;
        let (alpha_t, sigma_t) = alpha_sigma(sigmas[index + 1]);
        let (_, sigma_s) = alpha_sigma(sigmas[index]);
        let h = lambda(sigmas[index + 1]) - lambda(sigmas[index]);
        // The extrapolated derivative D1 of the second-order step, times its coefficient.
        let d1 = match previous {
            Some(m1) if self.order == 2 && !final_first_order => {
                let h0 = lambda(sigmas[index]) - lambda(sigmas[index - 1]);
                Some((d.x0.clone() - m1) * (h / h0))
            }
            _ => None,
        };
        let z = match noise {
            NoiseTerm::Fresh(z) => Some(z),
            NoiseTerm::Guided(term) => Some(term.direction),
            NoiseTerm::None => None,
        };
        if self.sde {
            let e = (-2.0 * h).exp();
            let c = alpha_t * (1.0 - e);
            let mut next = x * (sigma_t / sigma_s * (-h).exp()) + d.x0.clone() * c;
            if let Some(d1) = d1 {
                let c1 = match self.solver {
                    SolverType::Midpoint => 0.5 * c,
                    SolverType::Heun => alpha_t * ((1.0 - e) / (-2.0 * h) + 1.0),
                };
                next = next + d1 * c1;
            }
            return match z {
                Some(z) => next + z * (sigma_t * (1.0 - e).sqrt()),
                None => next,
            };
        }
        let c = alpha_t * ((-h).exp() - 1.0);
        let next = x * (sigma_t / sigma_s) - d.x0.clone() * c;
        match (d1, self.solver) {
            (None, _) => next,
            (Some(d1), SolverType::Midpoint) => next - d1 * (0.5 * c),
            (Some(d1), SolverType::Heun) => next + d1 * (alpha_t * (((-h).exp() - 1.0) / h + 1.0)),
        }
    }
}
