//! `DEISMultistepScheduler` (DEIS, `logrho` solver) of orders 1 and 2: exponential-integrator
//! steps on the noise prediction over the multistep sigma grid, the second order extrapolating
//! the previous call's in `rho = sigma / alpha`.

use burn::tensor::Tensor;

use crate::schedule::NoiseSchedule;

use super::dpm::{Multistep, MultistepRule, RuleCall, SigmaGrid};
use super::sigmas::{alpha_sigma, lambda};
use super::{FinalSigma, NoiseTerm, SchedulerKind, SchedulerSpec};

/// DEIS over one run's sigma grid (ending at the training minimum, or the last Karras sigma).
#[derive(Clone, Debug)]
pub(crate) struct Deis {
    order: usize,
    lower_order_final: bool,
    /// The previous call's noise prediction.
    previous: Option<Tensor<4>>,
}

impl Deis {
    pub(crate) fn build(
        spec: &SchedulerSpec,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Multistep<Self> {
        let SchedulerKind::Deis { order } = spec.kind else {
            unreachable!("built from its own kind")
        };
        let spec = SchedulerSpec {
            final_sigma: FinalSigma::SigmaMin,
            ..*spec
        };
        Multistep {
            grid: SigmaGrid::new(&spec, schedule, steps, true),
            rule: Self {
                order,
                lower_order_final: spec.lower_order_final,
                previous: None,
            },
        }
    }
}

/// DEIS' `ind_fn`: the integral of its Lagrange basis in `log rho`.
fn ind(t: f64, b: f64, c: f64) -> f64 {
    t * (-c.ln() + t.ln() - 1.0) / (b.ln() - c.ln())
}

/// `rho = sigma_t / alpha_t` of a sigma (the sigma itself, up to rounding).
fn rho(sigma: f64) -> f64 {
    let (alpha, sigma) = alpha_sigma(sigma);
    sigma / alpha
}

impl MultistepRule for Deis {
    fn step(&mut self, call: RuleCall<'_>, x: Tensor<4>, _noise: NoiseTerm) -> Tensor<4> {
        let RuleCall { grid, d, index } = call;
        let sigmas = &grid.sigmas;
        let (alpha_t, sigma_t) = alpha_sigma(sigmas[index + 1]);
        let (alpha_s, sigma_s) = alpha_sigma(sigmas[index]);
        // The noise prediction of the x0 the step follows, as DEIS converts it.
        let eps = (x.clone() - d.x0.clone() * alpha_s) / sigma_s;
        let previous = self.previous.replace(eps.clone());
        let n = grid.timesteps.len();
        let final_first_order = index + 1 == n && self.lower_order_final && n < 15;
        match previous {
            Some(m1) if self.order == 2 && !final_first_order => {
                let [rt, r0, r1] = [index + 1, index, index - 1].map(|i| rho(sigmas[i]));
                let c1 = ind(rt, r0, r1) - ind(r0, r0, r1);
                let c2 = ind(rt, r1, r0) - ind(r0, r1, r0);
                (x / alpha_s + eps * c1 + m1 * c2) * alpha_t
            }
            _ => {
                let h = lambda(sigmas[index + 1]) - lambda(sigmas[index]);
                x * (alpha_t / alpha_s) - eps * (sigma_t * h.exp_m1())
            }
        }
    }
}
