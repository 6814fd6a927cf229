//! The grids of the sigma-parameterised and multistep schedulers, computed as diffusers
//! computes them (numpy in `f64` over the schedule's `f32` sigmas, rounded to `f32` at the end),
//! so that timesteps match exactly and sigmas to the last bit or two.

use crate::schedule::{NoiseSchedule, Spacing, timesteps};

/// `sqrt((1 - a_bar) / a_bar)` per training step, in `f32` as torch computes it; a zero
/// terminal `a_bar` is read as `2^-24`, as diffusers' sigma schedulers do.
pub(crate) fn train_sigmas(schedule: &NoiseSchedule) -> Vec<f64> {
    schedule
        .alphas_cumprod()
        .iter()
        .map(|&a| {
            let a = if a == 0.0 { 2f32.powi(-24) } else { a as f32 };
            f64::from(((1.0 - a) / a).sqrt())
        })
        .collect()
}

/// numpy's `interp(x, arange(len), ys)`.
pub(crate) fn interp(x: f64, ys: &[f64]) -> f64 {
    let last = ys.len() - 1;
    if x <= 0.0 {
        return ys[0];
    }
    if x >= last as f64 {
        return ys[last];
    }
    let j = x.floor() as usize;
    if j as f64 == x {
        return ys[j];
    }
    (ys[j + 1] - ys[j]) * (x - j as f64) + ys[j]
}

/// numpy's `linspace(start, stop, n)` (the last point exactly `stop`).
pub(crate) fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    (0..n)
        .map(|i| match i + 1 == n {
            true => stop,
            false => i as f64 * step + start,
        })
        .collect()
}

/// Karras et al.'s `n` sigmas from `max` down to `min` (rho 7), as diffusers' `_convert_to_karras`.
pub(crate) fn karras(min: f64, max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (min.powf(1.0 / rho), max.powf(1.0 / rho));
    linspace(0.0, 1.0, n)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// The fractional training timestep of `sigma`, interpolating `log(sigma)` between the
/// schedule's (diffusers' `_sigma_to_t`); `log_sigmas` are the `f32` logs.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    // The last index whose log sigma is <= log(sigma), at most n - 2.
    let low = log_sigmas
        .iter()
        .rposition(|&l| log_sigma - l >= 0.0)
        .unwrap_or(0)
        .min(n - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// The `f32` logs of `sigmas`, as numpy takes them of an `f32` array.
pub(crate) fn log_sigmas(sigmas: &[f64]) -> Vec<f64> {
    sigmas.iter().map(|&s| f64::from((s as f32).ln())).collect()
}

/// `f64` rounded to `f32`, as diffusers stores its sigmas.
pub(crate) fn to_f32(v: f64) -> f64 {
    f64::from(v as f32)
}

/// The variance-preserving `(alpha, sigma)` of a sigma: `1 / sqrt(sigma^2 + 1)` and
/// `sigma alpha`.
pub(crate) fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// DPM-Solver's `lambda = log(alpha) - log(sigma)` of a sigma (infinite at sigma 0).
pub(crate) fn lambda(sigma: f64) -> f64 {
    let (alpha, sigma) = alpha_sigma(sigma);
    alpha.ln() - sigma.ln()
}

/// The integer timesteps of the multistep solvers (DPM-Solver, UniPC): `n + 1` points with the
/// last dropped for linspace and leading, as their `set_timesteps` spaces them.
pub(crate) fn multistep_timesteps(spacing: Spacing, train: usize, n: usize) -> Vec<f64> {
    match spacing {
        Spacing::Linspace => {
            let mut t: Vec<f64> = linspace(0.0, (train - 1) as f64, n + 1)
                .into_iter()
                .map(f64::round_ties_even)
                .collect();
            t.reverse();
            t.truncate(n);
            t
        }
        Spacing::Leading { steps_offset } => leading(train, n + 1, 1, steps_offset),
        Spacing::Trailing | Spacing::HdPainter => trailing(train, n),
    }
}

/// diffusers' leading timesteps `k * (T / points) + offset`, descending, for `k` from
/// `points - 1` down to `skip`.
pub(crate) fn leading(train: usize, points: usize, skip: usize, offset: usize) -> Vec<f64> {
    let ratio = train / points;
    (skip..points)
        .rev()
        .map(|k| (k * ratio + offset) as f64)
        .collect()
}

/// diffusers' trailing timesteps, as `f64`.
pub(crate) fn trailing(train: usize, n: usize) -> Vec<f64> {
    timesteps(Spacing::Trailing, train, n)
        .into_iter()
        .map(|t| t as f64)
        .collect()
}

/// The sigma grid of a multistep solver: the training sigmas at `timesteps`, or Karras' over
/// the whole training range with their timesteps rounded; `final_sigma` appended.
pub(crate) fn multistep_sigmas(
    schedule: &NoiseSchedule,
    timesteps: Vec<f64>,
    karras_sigmas: bool,
    final_sigma: f64,
) -> (Vec<f64>, Vec<f64>) {
    let train = train_sigmas(schedule);
    let (mut sigmas, timesteps) = match karras_sigmas {
        false => (
            timesteps.iter().map(|&t| interp(t, &train)).collect(),
            timesteps,
        ),
        true => {
            let logs = log_sigmas(&train);
            let n = timesteps.len();
            let sigmas = karras(train[0], train[train.len() - 1], n);
            let t = sigmas
                .iter()
                .map(|&s| sigma_to_t(s, &logs).round_ties_even())
                .collect();
            (sigmas, t)
        }
    };
    sigmas.push(final_sigma);
    (sigmas.into_iter().map(to_f32).collect(), timesteps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interp_and_linspace_follow_numpy() {
        assert_eq!(interp(1.5, &[0.0, 2.0, 4.0]), 3.0);
        assert_eq!(interp(-1.0, &[1.0, 2.0]), 1.0);
        assert_eq!(interp(7.0, &[1.0, 2.0]), 2.0);
        assert_eq!(linspace(0.0, 1.0, 5), [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(linspace(0.0, 1.0, 1), [0.0]);
    }

    #[test]
    fn sigma_to_t_inverts_the_training_sigmas() {
        let schedule = NoiseSchedule::scaled_linear_diffusers(0.00085, 0.012, 1000);
        let train = train_sigmas(&schedule);
        let logs = log_sigmas(&train);
        for t in [0usize, 1, 250, 998, 999] {
            assert!((sigma_to_t(train[t], &logs) - t as f64).abs() < 1e-4, "{t}");
        }
        let k = karras(train[0], train[999], 10);
        assert!((k[0] / train[999] - 1.0).abs() < 1e-12 && (k[9] / train[0] - 1.0).abs() < 1e-12);
        assert!(k.windows(2).all(|w| w[0] > w[1]));
    }
}
