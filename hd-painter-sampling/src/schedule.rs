//! Noise schedules and timestep grids.

/// The forward-process noise schedule: `beta[t]` and `a_bar[t] = prod_{s <= t} (1 - beta[s])`.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    /// `a_bar` after the last step: 1 for "set_alpha_to_one" schedulers, else `a_bar[0]`.
    final_alpha_one: bool,
}

impl NoiseSchedule {
    /// `beta = linspace(sqrt(start), sqrt(end), n)^2` in `f64` (the spec's and HD-Painter's
    /// definition).
    pub fn scaled_linear(beta_start: f64, beta_end: f64, n: usize) -> Self {
        let (a, b) = (beta_start.sqrt(), beta_end.sqrt());
        let betas = (0..n)
            .map(|i| {
                let x = if n == 1 {
                    a
                } else {
                    a + (b - a) * i as f64 / (n - 1) as f64
                };
                x * x
            })
            .collect();
        Self::from_betas(betas)
    }

    /// `beta = linspace(start, end, n)` in `f64`.
    pub fn linear(beta_start: f64, beta_end: f64, n: usize) -> Self {
        let betas = (0..n)
            .map(|i| {
                if n == 1 {
                    beta_start
                } else {
                    beta_start + (beta_end - beta_start) * i as f64 / (n - 1) as f64
                }
            })
            .collect();
        Self::from_betas(betas)
    }

    /// The scaled-linear schedule exactly as diffusers' schedulers compute it: torch's `f32`
    /// `linspace` of the square roots, squared in `f32`, then [`from_betas_f32`](Self::from_betas_f32).
    /// For bit-level parity with diffusers; the `f64` [`scaled_linear`](Self::scaled_linear)
    /// differs by about 1e-8.
    pub fn scaled_linear_diffusers(beta_start: f64, beta_end: f64, n: usize) -> Self {
        let roots = linspace_f32(beta_start.sqrt() as f32, beta_end.sqrt() as f32, n);
        Self::from_betas_f32(roots.into_iter().map(|x| x * x).collect())
    }

    /// The linear schedule exactly as diffusers' schedulers compute it (`RePaintScheduler`,
    /// `DDPMScheduler` with `beta_schedule = "linear"`): torch's `f32` `linspace`, then
    /// [`from_betas_f32`](Self::from_betas_f32).
    pub fn linear_diffusers(beta_start: f64, beta_end: f64, n: usize) -> Self {
        Self::from_betas_f32(linspace_f32(beta_start as f32, beta_end as f32, n))
    }

    /// A schedule from `f32` betas in torch's arithmetic: `1 - beta` in `f32`, and `cumprod`
    /// accumulated in `f64` and rounded to `f32` at each step (torch's CPU kernel).
    pub fn from_betas_f32(betas32: Vec<f32>) -> Self {
        let mut acc = 1.0f64;
        let alphas_cumprod = betas32
            .iter()
            .map(|&beta| {
                acc *= f64::from(1.0f32 - beta);
                let rounded = acc as f32;
                f64::from(rounded)
            })
            .collect();
        Self {
            betas: betas32.into_iter().map(f64::from).collect(),
            alphas_cumprod,
            final_alpha_one: false,
        }
    }

    /// A schedule from its betas.
    pub fn from_betas(betas: Vec<f64>) -> Self {
        let mut acc = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        Self {
            betas,
            alphas_cumprod,
            final_alpha_one: false,
        }
    }

    /// diffusers' `squaredcos_cap_v2` (the cosine schedule of Nichol and Dhariwal), betas
    /// capped at 0.999.
    pub fn squared_cosine(n: usize) -> Self {
        let alpha_bar = |t: f64| {
            ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        let betas = (0..n)
            .map(|i| {
                let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
            })
            .collect();
        Self::from_betas(betas)
    }

    /// The same schedule rescaled to a zero terminal SNR (Lin et al. 2023, diffusers'
    /// `rescale_betas_zero_snr`): `sqrt(a_bar)` shifted to end at 0 and scaled to start where it
    /// did. The last `a_bar` is then 0; the sigma schedulers read it as `2^-24`, as diffusers.
    pub fn rescaled_zero_terminal_snr(self) -> Self {
        let sqrt: Vec<f64> = self.alphas_cumprod.iter().map(|a| a.sqrt()).collect();
        let (first, last) = (sqrt[0], sqrt[sqrt.len() - 1]);
        let bars: Vec<f64> = sqrt
            .iter()
            .map(|s| ((s - last) * first / (first - last)).powi(2))
            .collect();
        let betas = (0..bars.len())
            .map(|i| match i {
                0 => 1.0 - bars[0],
                _ => 1.0 - bars[i] / bars[i - 1],
            })
            .collect();
        Self {
            final_alpha_one: self.final_alpha_one,
            ..Self::from_betas(betas)
        }
    }

    /// Stable Diffusion 1.x / 2.x: scaled-linear from 0.00085 to 0.012 over 1000 steps.
    pub fn stable_diffusion() -> Self {
        Self::scaled_linear(0.00085, 0.012, 1000)
    }

    /// The x4 upscaler: scaled-linear from 0.0001 to 0.02 over 1000 steps.
    pub fn x4_upscaler() -> Self {
        Self::scaled_linear(0.0001, 0.02, 1000)
    }

    /// The number of training timesteps.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Whether the schedule has no timesteps.
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// `beta[t]`.
    pub fn beta(&self, t: usize) -> f64 {
        self.betas[t]
    }

    /// The same schedule with `a_bar = 1` after the last step (diffusers' `set_alpha_to_one`,
    /// RePaint's scheduler): the last DDIM step then returns the x0 prediction itself.
    pub fn with_final_alpha_one(mut self) -> Self {
        self.final_alpha_one = true;
        self
    }

    /// `a_bar[t]`; for `t < 0` (the step after the last), `a_bar[0]` as diffusers' DDIM does
    /// with `set_alpha_to_one = False` (SD's setting), or 1 after
    /// [`with_final_alpha_one`](Self::with_final_alpha_one).
    pub fn alpha_cumprod(&self, t: isize) -> f64 {
        if t < 0 && self.final_alpha_one {
            1.0
        } else {
            self.alphas_cumprod[t.max(0) as usize]
        }
    }

    /// All `a_bar[t]`.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }
}

/// torch's `f32` `linspace(a, b, n)`: the first half filled from the start and the second from
/// the end, with fused multiply-adds (one rounding).
fn linspace_f32(a: f32, b: f32, n: usize) -> Vec<f32> {
    let step = if n > 1 { (b - a) / (n - 1) as f32 } else { 0.0 };
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                step.mul_add(i as f32, a)
            } else {
                (-step).mul_add((n - i - 1) as f32, b)
            }
        })
        .collect()
}

/// How the inference timesteps are spread over the training timesteps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing {
    /// diffusers' "leading": `k * (T / n) + steps_offset` (SD's default with offset 1).
    Leading {
        /// Added to every timestep.
        steps_offset: usize,
    },
    /// diffusers' "trailing": `round(T - k * T / n) - 1`.
    Trailing,
    /// diffusers' "linspace": `round(linspace(0, T - 1, n))`, descending.
    Linspace,
    /// HD-Painter's grid, `range(T - 1, 0, -(T // n))`: 999, 979, ..., 19 for 50 steps. For an
    /// `n` that does not divide `T` it has more than `n` steps, as the official loop runs them
    /// (30 gives 31: 999, 966, ..., 9; 7 gives 8).
    HdPainter,
}

/// The descending inference timesteps of `spacing` for `steps` steps over `train` training
/// timesteps.
pub fn timesteps(spacing: Spacing, train: usize, steps: usize) -> Vec<usize> {
    let steps = steps.clamp(1, train);
    match spacing {
        Spacing::Leading { steps_offset } => {
            let ratio = train / steps;
            (0..steps).rev().map(|k| k * ratio + steps_offset).collect()
        }
        Spacing::Trailing => {
            let ratio = train as f64 / steps as f64;
            (0..steps)
                .map(|k| (train as f64 - k as f64 * ratio).round_ties_even() as usize - 1)
                .collect()
        }
        Spacing::Linspace => {
            // numpy's linspace: k * step, with the last point set exactly to the end.
            let last = (train - 1) as f64;
            let step = if steps > 1 {
                last / (steps - 1) as f64
            } else {
                0.0
            };
            (0..steps)
                .rev()
                .map(|k| {
                    let v = if k + 1 == steps && steps > 1 {
                        last
                    } else {
                        k as f64 * step
                    };
                    v.round_ties_even() as usize
                })
                .collect()
        }
        Spacing::HdPainter => {
            let dt = train / steps;
            (1..train).rev().step_by(dt).collect()
        }
    }
}

/// RePaint's resampling walk over `t_t` steps (indices `t_t - 1` down to 0, going back up
/// `jump_length` steps `jump_n_sample - 1` times at every `jump_length`-th index), as diffusers'
/// `RePaintScheduler` and the official code build it. Scale by `train / t_t` for timesteps.
pub fn repaint_walk(t_t: usize, jump_length: usize, jump_n_sample: usize) -> Vec<usize> {
    let mut jumps = vec![0usize; t_t];
    if jump_length > 0 {
        for j in (0..t_t.saturating_sub(jump_length)).step_by(jump_length) {
            jumps[j] = jump_n_sample.saturating_sub(1);
        }
    }
    let mut walk = Vec::new();
    let mut t = t_t;
    while t >= 1 {
        t -= 1;
        walk.push(t);
        if jumps[t] > 0 {
            jumps[t] -= 1;
            for _ in 0..jump_length {
                t += 1;
                walk.push(t);
            }
        }
    }
    walk
}

/// [`repaint_walk`] over every `stride`-th training timestep (diffusers' `RePaintScheduler`
/// timesteps: the walk times `train / steps`).
pub fn strided_repaint_walk(
    t_t: usize,
    jump_length: usize,
    jump_n_sample: usize,
    stride: usize,
) -> Vec<usize> {
    repaint_walk(t_t, jump_length, jump_n_sample)
        .into_iter()
        .map(|t| t * stride)
        .collect()
}
