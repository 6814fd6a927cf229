//! Every scheduler against diffusers 0.42 over whole runs of 1, 2, 7, 20, 25 and 50 steps
//! (`tools/reference/generate.py`, group `scheduler_runs`): the timesteps exactly (Euler's
//! fractional Karras ones to 1e-4), the sigmas,
//! `init_noise_sigma` and `scale_model_input` to 1e-6, and every step's sample within 1e-6 of
//! the largest value the run has seen (DEIS: 5e-6), each from the reference's previous sample, with the model outputs
//! and the noise of the stochastic steps given.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::{Golden, device};
use hd_painter_sampling::{
    FinalSigma, NoiseSchedule, NoiseTerm, Prediction, SchedulerKind, SchedulerSpec, SolverType,
    Spacing,
};

const STEPS: [usize; 6] = [1, 2, 7, 20, 25, 50];

/// The configurations of `generate.py`'s `scheduler_configs`, and whether the schedule is
/// rescaled to a zero terminal SNR.
fn configs() -> Vec<(&'static str, SchedulerSpec, bool)> {
    use SchedulerKind::*;
    let leading = Spacing::Leading { steps_offset: 1 };
    let base = |kind| SchedulerSpec {
        spacing: Spacing::Linspace,
        final_alpha_one: false,
        ..SchedulerSpec::new(kind)
    };
    let v = Prediction::VPrediction;
    let dpm = |order, sde, solver| DpmSolver { order, sde, solver };
    let unipc = |order, bh2| UniPc { order, bh2 };
    let lcm = |timestep_scaling| Lcm {
        original_steps: 50,
        timestep_scaling,
    };
    vec![
        ("ddim", SchedulerSpec::default(), false),
        (
            "ddim_trailing_v_eta",
            SchedulerSpec {
                spacing: Spacing::Trailing,
                prediction: v,
                final_alpha_one: true,
                ..base(Ddim { eta: 0.3 })
            },
            false,
        ),
        ("ddpm", SchedulerSpec::new(Ddpm), false),
        ("pndm", SchedulerSpec::new(Pndm), false),
        ("pndm_linspace", base(Pndm), false),
        ("euler", base(Euler), false),
        (
            "euler_karras_leading",
            SchedulerSpec {
                karras: true,
                ..SchedulerSpec::new(Euler)
            },
            false,
        ),
        (
            "euler_v_sigma_min",
            SchedulerSpec {
                spacing: Spacing::Trailing,
                prediction: v,
                final_sigma: FinalSigma::SigmaMin,
                ..base(Euler)
            },
            false,
        ),
        (
            "euler_zero_snr",
            SchedulerSpec {
                spacing: Spacing::Trailing,
                prediction: v,
                ..base(Euler)
            },
            true,
        ),
        ("euler_a", base(EulerAncestral), false),
        (
            "euler_a_leading_v",
            SchedulerSpec {
                prediction: v,
                ..SchedulerSpec::new(EulerAncestral)
            },
            false,
        ),
        ("dpm2m", base(dpm(2, false, SolverType::Midpoint)), false),
        (
            "dpm2m_karras",
            SchedulerSpec {
                karras: true,
                ..base(dpm(2, false, SolverType::Midpoint))
            },
            false,
        ),
        (
            "dpm2m_sde_karras",
            SchedulerSpec {
                karras: true,
                ..base(dpm(2, true, SolverType::Midpoint))
            },
            false,
        ),
        (
            "dpm2m_heun_sigma_min",
            SchedulerSpec {
                spacing: leading,
                final_sigma: FinalSigma::SigmaMin,
                lower_order_final: false,
                ..base(dpm(2, false, SolverType::Heun))
            },
            false,
        ),
        (
            "dpm1_trailing_v",
            SchedulerSpec {
                spacing: Spacing::Trailing,
                prediction: v,
                ..base(dpm(1, false, SolverType::Midpoint))
            },
            false,
        ),
        ("deis", base(Deis { order: 2 }), false),
        (
            "deis_karras_leading",
            SchedulerSpec {
                karras: true,
                ..SchedulerSpec::new(Deis { order: 2 })
            },
            false,
        ),
        (
            "deis_order1_trailing_v",
            SchedulerSpec {
                spacing: Spacing::Trailing,
                prediction: v,
                ..base(Deis { order: 1 })
            },
            false,
        ),
        ("unipc", base(unipc(2, true)), false),
        (
            "unipc_karras_bh1",
            SchedulerSpec {
                karras: true,
                final_sigma: FinalSigma::SigmaMin,
                ..base(unipc(2, false))
            },
            false,
        ),
        (
            "unipc_leading_order1",
            SchedulerSpec {
                spacing: leading,
                ..base(unipc(1, true))
            },
            false,
        ),
        (
            "lcm",
            SchedulerSpec {
                spacing: Spacing::Leading { steps_offset: 0 },
                final_alpha_one: true,
                ..base(lcm(10.0))
            },
            false,
        ),
        (
            "lcm_v",
            SchedulerSpec {
                spacing: Spacing::Leading { steps_offset: 0 },
                prediction: v,
                final_alpha_one: true,
                ..base(lcm(5.0))
            },
            false,
        ),
    ]
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}

fn values(t: &Tensor<4>) -> Vec<f32> {
    t.clone().into_data().try_into_vec_as().unwrap()
}

#[test]
fn every_scheduler_matches_diffusers_step_by_step() {
    let (g, device) = (Golden::open("scheduler_runs"), device());
    let shape = [1, 4, 4, 4];
    let tensor = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, shape), &device);
    let x_t = g.tensor::<4>("x_t", &device);
    let (mut worst, mut worst_deis) = (0.0f64, 0.0f64);
    for (name, spec, zero_snr) in configs() {
        let mut schedule = NoiseSchedule::scaled_linear_diffusers(0.00085, 0.012, 1000);
        if zero_snr {
            schedule = schedule.rescaled_zero_terminal_snr();
        }
        for steps in STEPS {
            let key = format!("{name}_{steps}");
            let mut s = spec.build(&schedule, steps).unwrap();
            let want_t = g.get(&format!("{key}_timesteps")).1;
            // Integer timesteps exactly; Euler's fractional Karras ones (from numpy's f32 logs)
            // to a few f32 ulps.
            assert_eq!(s.timesteps().len(), want_t.len(), "{key}: timesteps");
            for (a, b) in s.timesteps().iter().zip(&want_t) {
                let exact = b.fract() == 0.0 || spec.kind != SchedulerKind::Euler;
                let tolerance = if exact { 0.0 } else { 1e-4 };
                assert!(
                    (a - b).abs() <= tolerance,
                    "{key}: timesteps {:?}",
                    s.timesteps()
                );
            }
            if let Some(sigmas) = s.sigmas() {
                let want = g.get(&format!("{key}_sigmas")).1;
                assert_eq!(sigmas.len(), want.len(), "{key}: sigmas");
                for (i, (a, b)) in sigmas.iter().zip(&want).enumerate() {
                    assert!(relative(*a, *b) <= 1e-6, "{key}: sigma {i}: {a} vs {b}");
                }
            }
            let init = g.get(&format!("{key}_init")).1[0];
            assert!(
                relative(s.init_noise_sigma(), init) <= 1e-6,
                "{key}: init_noise_sigma {} vs {init}",
                s.init_noise_sigma()
            );
            let scales = g.get(&format!("{key}_scales")).1;
            let mut sample = x_t.clone() * s.init_noise_sigma();
            let mut scale_max = 1.0f64;
            for (i, want_scale) in scales.iter().enumerate() {
                let scale = s.level(i).input_scale;
                assert!(
                    relative(scale, *want_scale) <= 1e-6,
                    "{key}: input scale {i}"
                );
                let output = tensor(g.part("outputs", i));
                let noise = match s.draws_noise(i) {
                    true => NoiseTerm::Fresh(tensor(g.part("noises", i))),
                    false => NoiseTerm::None,
                };
                // f32 steps lose digits relative to the largest value they see (their input).
                scale_max = values(&sample)
                    .iter()
                    .fold(scale_max, |m, v| m.max(v.abs() as f64));
                let d = s.denoise(output, i, sample.clone());
                let next = s.step(&d, i, sample, noise);
                let want = g.part(&format!("{key}_samples"), i);
                scale_max = want.iter().fold(scale_max, |m, v| m.max(v.abs() as f64));
                let err = values(&next)
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs() as f64)
                    .fold(0.0, f64::max)
                    / scale_max;
                // diffusers computes DEIS' second-order coefficients in f32, where they nearly
                // cancel (ours are f64): 5e-6 there (3.3e-6 measured).
                let tolerance = match spec.kind {
                    SchedulerKind::Deis { .. } => {
                        worst_deis = worst_deis.max(err);
                        5e-6
                    }
                    _ => {
                        worst = worst.max(err);
                        1e-6
                    }
                };
                assert!(err <= tolerance, "{key}: step {i}: {err:e}");
                // Each step from the reference's sample, so that errors do not compound.
                sample = tensor(want);
            }
        }
    }
    eprintln!("worst relative step error {worst:e}, DEIS {worst_deis:e}");
}
