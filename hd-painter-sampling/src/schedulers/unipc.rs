//! `UniPCMultistepScheduler` with `predict_x0` (UniPC's data-prediction form, bh1 or bh2) of
//! orders 1 and 2: each call first corrects the sample the previous call predicted (UniC, with
//! this call's x0 prediction), then predicts the next (UniP).

use burn::tensor::Tensor;

use crate::schedule::NoiseSchedule;

use super::dpm::{Multistep, MultistepRule, RuleCall, SigmaGrid};
use super::sigmas::{alpha_sigma, lambda};
use super::{NoiseTerm, SchedulerKind, SchedulerSpec};

/// UniPC over one run's sigma grid.
#[derive(Clone, Debug)]
pub(crate) struct UniPc {
    order: usize,
    bh2: bool,
    lower_order_final: bool,
    /// The x0 predictions of the calls so far, newest last (at most `order`).
    outputs: Vec<Tensor<4>>,
    /// The sample the last prediction started from, and that prediction's order.
    last: Option<(Tensor<4>, usize)>,
}

/// The coefficients of one UniPC update from `s0` to `t` (sigma indices), with
/// `hh = -h` in the data-prediction form.
struct Update {
    alpha_t: f64,
    ratio: f64,
    h_phi_1: f64,
    b_h: f64,
    h: f64,
    lambda_s0: f64,
}

impl UniPc {
    pub(crate) fn build(
        spec: &SchedulerSpec,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Multistep<Self> {
        let SchedulerKind::UniPc { order, bh2 } = spec.kind else {
            unreachable!("built from its own kind")
        };
        Multistep {
            grid: SigmaGrid::new(spec, schedule, steps, true),
            rule: Self {
                order,
                bh2,
                lower_order_final: spec.lower_order_final,
                outputs: Vec::new(),
                last: None,
            },
        }
    }

    fn update(&self, sigmas: &[f64], s0: usize, t: usize) -> Update {
        let (alpha_t, sigma_t) = alpha_sigma(sigmas[t]);
        let (_, sigma_s0) = alpha_sigma(sigmas[s0]);
        let lambda_s0 = lambda(sigmas[s0]);
        let h = lambda(sigmas[t]) - lambda_s0;
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        Update {
            alpha_t,
            ratio: sigma_t / sigma_s0,
            h_phi_1,
            b_h: if self.bh2 { h_phi_1 } else { hh },
            h,
            lambda_s0,
        }
    }

    /// The `b` vector of the order-2 system: `h phi_k(hh) k! / B(h)` for k = 1, 2.
    fn b2(u: &Update) -> [f64; 2] {
        let hh = -u.h;
        let k1 = u.h_phi_1 / hh - 1.0;
        let k2 = k1 / hh - 0.5;
        [k1 / u.b_h, k2 * 2.0 / u.b_h]
    }

    /// UniC: the sample predicted by the last call, corrected with this call's x0 `model_t`.
    fn correct(
        &self,
        sigmas: &[f64],
        index: usize,
        x: Tensor<4>,
        model_t: &Tensor<4>,
    ) -> Tensor<4> {
        let Some((last, order)) = &self.last else {
            return x;
        };
        let u = self.update(sigmas, index - 1, index);
        let m0 = self.outputs.last().expect("the last call's output").clone();
        let base = last.clone() * u.ratio - m0.clone() * (u.alpha_t * u.h_phi_1);
        let d1_t = model_t.clone() - m0.clone();
        let c = u.alpha_t * u.b_h;
        if *order == 1 {
            return base - d1_t * (c * 0.5);
        }
        let m1 = self.outputs[self.outputs.len() - 2].clone();
        let rk = (lambda(sigmas[index - 2]) - u.lambda_s0) / u.h;
        let d1 = (m1 - m0) / rk;
        // Solve [[1, 1], [rk, 1]] rho = b.
        let b = Self::b2(&u);
        let det = 1.0 - rk;
        let rho0 = (b[0] - b[1]) / det;
        let rho1 = (b[1] - rk * b[0]) / det;
        base - (d1 * rho0 + d1_t * rho1) * c
    }

    /// UniP: the next sample from `x` with the x0 predictions so far.
    fn predict(&self, sigmas: &[f64], index: usize, x: Tensor<4>, order: usize) -> Tensor<4> {
        let u = self.update(sigmas, index, index + 1);
        let m0 = self.outputs.last().expect("this call's output").clone();
        let next = x * u.ratio - m0.clone() * (u.alpha_t * u.h_phi_1);
        if order == 1 {
            return next;
        }
        let m1 = self.outputs[self.outputs.len() - 2].clone();
        let rk = (lambda(sigmas[index - 1]) - u.lambda_s0) / u.h;
        let d1 = (m1 - m0) / rk;
        next - d1 * (u.alpha_t * u.b_h * 0.5)
    }
}

impl MultistepRule for UniPc {
    fn step(&mut self, call: RuleCall<'_>, x: Tensor<4>, _noise: NoiseTerm) -> Tensor<4> {
        let RuleCall { grid, d, index } = call;
        let x = self.correct(&grid.sigmas, index, x, &d.x0);
        if self.outputs.len() == self.order {
            self.outputs.remove(0);
        }
        self.outputs.push(d.x0.clone());
        let n = grid.timesteps.len();
        let order = match self.lower_order_final {
            true => self.order.min(n - index),
            false => self.order,
        }
        .min(self.outputs.len());
        let next = self.predict(&grid.sigmas, index, x.clone(), order);
        self.last = Some((x, order));
        next
    }
}
