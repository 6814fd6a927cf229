//! Schedules, timestep grids and single steps against diffusers' `DDIMScheduler`,
//! `DDPMScheduler` and `RePaintScheduler` and HD-Painter's float64 schedule (`tools/reference/generate.py`).

mod common;

use burn::tensor::{Tensor, TensorData};
use common::{Golden, assert_close, device};
use hd_painter_sampling::{
    KnownLatents, NoiseSchedule, NoiseTerm, Prediction, SchedulerKind, SchedulerSpec, Spacing,
    ddim_sigma, ddim_step, repaint_step, repaint_walk, timesteps, undo_steps,
};

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Grids exactly as diffusers' DDIMScheduler builds them; HD-Painter's 999 - 20k grid.
#[test]
fn timestep_grids_match_diffusers() {
    let g = Golden::open("schedulers");
    for (name, spacing, steps) in [
        ("leading_50", Spacing::Leading { steps_offset: 1 }, 50),
        ("leading_20", Spacing::Leading { steps_offset: 1 }, 20),
        ("trailing_50", Spacing::Trailing, 50),
        ("trailing_7", Spacing::Trailing, 7),
        ("linspace_50", Spacing::Linspace, 50),
        ("linspace_13", Spacing::Linspace, 13),
    ] {
        assert_eq!(
            timesteps(spacing, 1000, steps),
            g.ints(&format!("timesteps_{name}")),
            "{name}"
        );
    }
    let hd = timesteps(Spacing::HdPainter, 1000, 50);
    assert_eq!(hd, (0..50).map(|k| 999 - 20 * k).collect::<Vec<_>>());
    assert_eq!(timesteps(Spacing::HdPainter, 1000, 20)[19], 49); // the SR stage's 999 - 50k
}

/// HD-Painter's grid is the official `range(999, 0, -(1000 // n))` for every n, with the extra
/// steps of an n that does not divide 1000 (30 gives 31 steps, 7 gives 8).
#[test]
fn hd_painter_grid_is_the_official_range_for_every_step_count() {
    for n in 1..=1000usize {
        let dt = 1000 / n;
        let mut official = Vec::new();
        let mut t = 999i64;
        while t > 0 {
            official.push(t as usize);
            t -= dt as i64;
        }
        assert_eq!(
            timesteps(Spacing::HdPainter, 1000, n),
            official,
            "{n} steps"
        );
    }
    assert_eq!(timesteps(Spacing::HdPainter, 1000, 30).len(), 31);
    assert_eq!(*timesteps(Spacing::HdPainter, 1000, 30).last().unwrap(), 9);
    assert_eq!(timesteps(Spacing::HdPainter, 1000, 7).len(), 8);
    assert_eq!(
        timesteps(Spacing::HdPainter, 1000, 3).len(),
        3,
        "999, 666, 333"
    );
}

/// a_bar to 1e-12: diffusers' f32 arithmetic exactly, HD-Painter's float64 schedule, the x4's.
#[test]
fn alphas_match_diffusers_and_hd_painter() {
    let g = Golden::open("schedulers");
    let diffusers = NoiseSchedule::scaled_linear_diffusers(0.00085, 0.012, 1000);
    assert!(
        max_diff(
            diffusers.alphas_cumprod(),
            &g.get("diffusers_alphas_cumprod").1
        ) <= 1e-12
    );
    let sd = NoiseSchedule::stable_diffusion();
    assert!(max_diff(sd.alphas_cumprod(), &g.get("hd_alphas_cumprod").1) <= 1e-12);
    let linear = NoiseSchedule::linear(0.0001, 0.02, 1000);
    assert!(max_diff(linear.alphas_cumprod(), &g.get("linear_alphas_cumprod").1) <= 1e-12);
    let x4 = NoiseSchedule::x4_upscaler();
    assert!(max_diff(x4.alphas_cumprod(), &g.get("x4_alphas_cumprod").1) <= 1e-12);
}

/// One DDIM step, eta 0 and 0.5 with given noise, the last step, and a v-prediction step: 1e-6.
#[test]
fn ddim_steps_match_diffusers() {
    let (g, device) = (Golden::open("schedulers"), device());
    let schedule = NoiseSchedule::scaled_linear_diffusers(0.00085, 0.012, 1000);
    let (sample, eps, z) = (
        g.tensor("sample", &device),
        g.tensor("model_output", &device),
        g.tensor("variance_noise", &device),
    );
    for (eta, key) in [(0.0, "ddim_eta0"), (0.5, "ddim_eta0.5")] {
        let noise = (eta > 0.0).then(|| (eta * ddim_sigma(&schedule, 501, 481), z.clone()));
        let step = ddim_step(
            &schedule,
            Prediction::Epsilon,
            eps.clone(),
            501,
            481,
            sample.clone(),
            noise,
        );
        assert_close(
            &step.prev_sample,
            &g.f32s(&format!("{key}_prev")).1,
            1e-6,
            &format!("{key}_prev"),
        );
        assert_close(
            &step.pred_x0,
            &g.f32s(&format!("{key}_x0")).1,
            1e-6,
            &format!("{key}_x0"),
        );
    }
    let last = ddim_step(
        &schedule,
        Prediction::Epsilon,
        eps.clone(),
        1,
        -19,
        sample.clone(),
        None,
    );
    assert_close(
        &last.prev_sample,
        &g.f32s("ddim_last_prev").1,
        1e-6,
        "ddim_last_prev",
    );

    let x4 = NoiseSchedule::scaled_linear_diffusers(0.0001, 0.02, 1000);
    let v = ddim_step(&x4, Prediction::VPrediction, eps, 951, 901, sample, None);
    assert_close(&v.prev_sample, &g.f32s("v_prev").1, 1e-6, "v_prev");
    assert_close(&v.pred_x0, &g.f32s("v_x0").1, 1e-6, "v_x0");
}

/// RePaint: the whole 4570-entry timestep list of diffusers' RePaintScheduler (250 steps, jumps
/// of 10, 10 samples), a step with its noise and an undo step with its 4 draws: 1e-6.
#[test]
fn repaint_matches_diffusers() {
    let (g, device) = (Golden::open("schedulers"), device());
    let walk: Vec<usize> = repaint_walk(250, 10, 10)
        .into_iter()
        .map(|t| t * 4)
        .collect();
    assert_eq!(walk, g.ints("repaint_timesteps"));
    // 2410 model calls (the descending entries) and 2160 undo steps.
    let ups = walk.windows(2).filter(|w| w[1] > w[0]).count();
    assert_eq!((walk.len() - ups, ups), (2410, 2160));

    let schedule = NoiseSchedule::scaled_linear_diffusers(0.00085, 0.012, 1000);
    // diffusers' mask is 1 where the original is kept: the hole is its complement.
    let known = KnownLatents {
        latents: g.tensor("repaint_known", &device),
        hole: g.tensor::<4>("repaint_mask", &device).neg() + 1.0,
    };
    let step = repaint_step(
        &schedule,
        g.tensor("model_output", &device),
        500,
        496,
        g.tensor("sample", &device),
        &known,
        (0.0, g.tensor("repaint_step_noise", &device)),
    );
    assert_close(
        &step.prev_sample,
        &g.f32s("repaint_prev").1,
        1e-6,
        "repaint_prev",
    );
    assert_close(&step.pred_x0, &g.f32s("repaint_x0").1, 1e-6, "repaint_x0");

    let (shape, draws) = g.get("undo_noise");
    let per = draws.len() / shape[0];
    let noise = (0..shape[0])
        .map(|i| {
            let v: Vec<f32> = draws[i * per..(i + 1) * per]
                .iter()
                .map(|&x| x as f32)
                .collect();
            Tensor::<4>::from_data(TensorData::new(v, shape[1..].to_vec()), &device)
        })
        .collect();
    assert_close(
        &undo_steps(&schedule, g.tensor("sample", &device), 496, noise),
        &g.f32s("undo").1,
        1e-6,
        "undo",
    );
}

/// DDPM's ancestral step (diffusers' DDPMScheduler, fixed-small variance) at t = 500 and at the
/// last step t = 0 (no noise), through the `Scheduler` trait; DDIM through the trait equals the
/// function: 1e-6.
#[test]
fn ddpm_and_the_scheduler_trait_match_diffusers() {
    let (g, device) = (Golden::open("schedulers"), device());
    let schedule = NoiseSchedule::scaled_linear_diffusers(0.00085, 0.012, 1000);
    let (sample, eps) = (
        g.tensor("sample", &device),
        g.tensor("model_output", &device),
    );
    let spec = SchedulerSpec {
        spacing: Spacing::Leading { steps_offset: 0 },
        ..SchedulerSpec::new(SchedulerKind::Ddpm)
    };
    let mut ddpm = spec.build(&schedule, 50).unwrap();
    assert!(
        ddpm.draws_noise(24) && !ddpm.draws_noise(49),
        "no noise at t = 0"
    );
    for (name, index) in [("ddpm_mid", 24usize), ("ddpm_last", 49)] {
        assert_eq!(ddpm.timesteps()[index], [500.0, 0.0][index / 49]);
        let noise = g.tensor(&format!("{name}_noise"), &device);
        let d = ddpm.denoise(eps.clone(), index, sample.clone());
        assert_close(
            &d.x0,
            &g.f32s(&format!("{name}_x0")).1,
            1e-6,
            &format!("{name}_x0"),
        );
        let prev = ddpm.step(&d, index, sample.clone(), NoiseTerm::Fresh(noise));
        assert_close(
            &prev,
            &g.f32s(&format!("{name}_prev")).1,
            1e-6,
            &format!("{name}_prev"),
        );
    }
    let mut ddim = SchedulerSpec::new(SchedulerKind::Ddim { eta: 0.5 })
        .build(&schedule, 50)
        .unwrap();
    assert_eq!(ddim.timesteps()[24], 501.0);
    let d = ddim.denoise(eps, 24, sample.clone());
    let noise = NoiseTerm::Fresh(g.tensor("variance_noise", &device));
    let via_trait = ddim.step(&d, 24, sample, noise);
    assert_close(
        &via_trait,
        &g.f32s("ddim_eta0.5_prev").1,
        1e-6,
        "ddim_eta0.5_prev",
    );
}
