//! The official RePaint sampler (andreas128/RePaint, `guided_diffusion/gaussian_diffusion.py`
//! and `respace.py`).

use burn::tensor::Tensor;

use super::{KnownPixels, OnPixelStep, PixelRepaint, PixelRepaintSettings, PixelStep};
use super::{predict_x0, reverse_count};
use crate::error::{Result, SamplingError};
use crate::repaint::NoiseDraws;
use crate::schedule::{NoiseSchedule, repaint_walk};

/// guided-diffusion's `space_timesteps(num_timesteps, section_counts)`: the training timesteps
/// kept when the `num_timesteps` are cut into equal sections and `section_counts[i]` steps are
/// taken, evenly strided and rounded, from section `i`. Sorted.
pub fn space_timesteps(num_timesteps: usize, section_counts: &[usize]) -> Result<Vec<usize>> {
    if section_counts.is_empty() || num_timesteps == 0 {
        return Err(SamplingError::InvalidInput(
            "space_timesteps needs timesteps and at least one section".into(),
        ));
    }
    let sections = section_counts.len();
    let (size_per, extra) = (num_timesteps / sections, num_timesteps % sections);
    let mut start = 0;
    let mut steps = Vec::new();
    for (i, &count) in section_counts.iter().enumerate() {
        let size = size_per + usize::from(i < extra);
        if size < count {
            return Err(SamplingError::InvalidInput(format!(
                "cannot divide a section of {size} steps into {count}"
            )));
        }
        let stride = if count <= 1 {
            1.0
        } else {
            (size - 1) as f64 / (count - 1) as f64
        };
        let mut idx = 0.0f64;
        for _ in 0..count {
            // Python's round() rounds half to even.
            steps.push(start + idx.round_ties_even() as usize);
            idx += stride;
        }
        start += size;
    }
    steps.sort_unstable();
    steps.dedup();
    Ok(steps)
}

/// `SpacedDiffusion`'s schedule over the training timesteps `kept` (sorted): betas
/// `1 - a_bar[t_i] / a_bar[t_{i-1}]`, and the map from each respaced index to its training
/// timestep (what the model is called with).
pub fn respaced(schedule: &NoiseSchedule, kept: &[usize]) -> (NoiseSchedule, Vec<usize>) {
    let mut last = 1.0;
    let betas = kept
        .iter()
        .map(|&t| {
            let a = schedule.alpha_cumprod(t as isize);
            let beta = 1.0 - a / last;
            last = a;
            beta
        })
        .collect();
    (NoiseSchedule::from_betas(betas), kept.to_vec())
}

/// The posterior `q(x_{t-1} | x_t, x_0)` coefficients of `GaussianDiffusion`, in f64 as numpy
/// computes them.
struct Posterior {
    coef1: f64,
    coef2: f64,
    /// `log(posterior_variance)`, clipped at `t = 0` to the value at `t = 1`.
    log_variance: f64,
    log_beta: f64,
    a_bar: f64,
}

impl Posterior {
    fn at(s: &NoiseSchedule, t: usize) -> Self {
        let variance = |t: usize| {
            let (a, prev) = (s.alpha_cumprod(t as isize), prev_a_bar(s, t));
            s.beta(t) * (1.0 - prev) / (1.0 - a)
        };
        let (a, prev, beta) = (s.alpha_cumprod(t as isize), prev_a_bar(s, t), s.beta(t));
        let log_variance = match t {
            0 if s.len() > 1 => variance(1).ln(),
            _ => variance(t).ln(),
        };
        Self {
            coef1: beta * prev.sqrt() / (1.0 - a),
            coef2: (1.0 - prev) * (1.0 - beta).sqrt() / (1.0 - a),
            log_variance,
            log_beta: beta.ln(),
            a_bar: a,
        }
    }
}

/// `alphas_cumprod_prev[t]` (1 before the first step).
fn prev_a_bar(s: &NoiseSchedule, t: usize) -> f64 {
    if t == 0 {
        1.0
    } else {
        s.alpha_cumprod(t as isize - 1)
    }
}

impl PixelRepaint<'_> {
    /// The official `p_sample_loop_progressive` over `get_schedule_jump`.
    pub(super) fn official(
        &self,
        settings: &PixelRepaintSettings,
        known: &KnownPixels,
        mut x: Tensor<4>,
        draw: NoiseDraws<'_>,
        on_step: OnPixelStep<'_>,
    ) -> Result<Tensor<4>> {
        let kept = space_timesteps(self.schedule.len(), &[settings.steps])?;
        let (spaced, timestep_map) = respaced(self.schedule, &kept);
        let mut walk: Vec<isize> =
            repaint_walk(settings.steps, settings.jump_length, settings.jump_n_sample)
                .into_iter()
                .map(|t| t as isize)
                .collect();
        walk.push(-1);
        let total = reverse_count(&walk);
        // The official loop injects the known region once it has an x0 (not before the first step).
        let mut started = false;
        let mut step = 0;
        for pair in walk.windows(2) {
            let t = pair[0] as usize;
            if pair[1] > pair[0] {
                let beta = spaced.beta(t + 1);
                let z = draw(&x);
                x = x * (1.0 - beta).sqrt() + z * beta.sqrt();
                continue;
            }
            let post = Posterior::at(&spaced, t);
            let noise = draw(&x);
            if started {
                let z = draw(&x);
                x = known.merge(known.noised(post.a_bar, z), x);
            }
            let (eps, v) = self.predict(x.clone(), timestep_map[t])?;
            let v = v.expect("checked: learned variance");
            let x0 = predict_x0(x.clone(), eps, post.a_bar, settings.clip_denoised);
            let mean = x0.clone() * post.coef1 + x * post.coef2;
            let frac = (v + 1.0) / 2.0;
            let log_variance =
                frac.clone() * post.log_beta + (frac.neg() + 1.0) * post.log_variance;
            x = match t {
                0 => mean,
                _ => mean + (log_variance * 0.5).exp() * noise,
            };
            step += 1;
            let view = PixelStep {
                step,
                total,
                timestep: timestep_map[t],
                pred_x0: &x0,
                sample: &x,
            };
            if on_step(&view).is_break() {
                return Err(SamplingError::Cancelled { step, total });
            }
            started = true;
        }
        Ok(x)
    }
}
