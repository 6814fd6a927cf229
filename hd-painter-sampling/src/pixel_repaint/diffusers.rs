//! diffusers' `RePaintPipeline` with its `RePaintScheduler`.

use burn::tensor::Tensor;

use super::{KnownPixels, OnPixelStep, PixelRepaint, PixelRepaintSettings, PixelStep};
use super::{predict_x0, reverse_count};
use crate::error::{Result, SamplingError};
use crate::repaint::{NoiseDraws, undo_steps};
use crate::schedule::strided_repaint_walk;

impl PixelRepaint<'_> {
    /// The pipeline's loop: reverse steps where the walk goes down, `undo_step` where it goes
    /// up.
    pub(super) fn diffusers(
        &self,
        settings: &PixelRepaintSettings,
        eta: f64,
        known: &KnownPixels,
        mut x: Tensor<4>,
        draw: NoiseDraws<'_>,
        on_step: OnPixelStep<'_>,
    ) -> Result<Tensor<4>> {
        let schedule = self.schedule.clone().with_final_alpha_one();
        let n = schedule.len() / settings.steps;
        let (steps, jumps) = (settings.steps, settings.jump_length);
        let walk = strided_repaint_walk(steps, jumps, settings.jump_n_sample, n);
        let mut with_end: Vec<isize> = walk.iter().map(|&t| t as isize).collect();
        with_end.push(-1);
        let total = reverse_count(&with_end);
        let mut t_last = walk[0] + 1;
        let mut step = 0;
        for &t in &walk {
            if t >= t_last {
                let draws = (0..n).map(|_| draw(&x)).collect();
                x = undo_steps(&schedule, x, t_last, draws);
                t_last = t;
                continue;
            }
            let (eps, _) = self.predict(x.clone(), t)?;
            let a = schedule.alpha_cumprod(t as isize);
            let prev = schedule.alpha_cumprod(t as isize - n as isize);
            let x0 = predict_x0(x, eps.clone(), a, settings.clip_denoised);
            let noise = draw(&x0);
            let variance = (1.0 - prev) / (1.0 - a) * (1.0 - a / prev);
            let std = eta * variance.sqrt();
            let mut unknown = x0.clone() * prev.sqrt() + eps * (1.0 - prev - std * std).sqrt();
            if t > 0 && eta > 0.0 {
                unknown = unknown + noise.clone() * std;
            }
            let known_part = known.image.clone() * prev.sqrt() + noise * (1.0 - prev).sqrt();
            x = known.merge(known_part, unknown);
            step += 1;
            let view = PixelStep {
                step,
                total,
                timestep: t,
                pred_x0: &x0,
                sample: &x,
            };
            if on_step(&view).is_break() {
                return Err(SamplingError::Cancelled { step, total });
            }
            t_last = t;
        }
        Ok(x)
    }
}
