//! Pixel-space RePaint against its two references (`tools/reference/repaint_pixel.py`), every
//! standard-normal draw replayed from the golden in the order the reference took it:
//! diffusers' `RePaintPipeline` (DDPM-like `UNet2DModel`, 100 training steps, 20 steps, jumps
//! of 3, 2 samples, eta 0.5) and the official `p_sample_loop_progressive` (a tiny official
//! guided-diffusion model with learned variance and a class label, 1000 steps respaced to 20).
//! Each reverse step's sample and x0 prediction, and the output, within 1e-5 * max(1, max|ref|)
//! of diffusers' and 1e-4 of the official code's; the official x0 within 1e-5 of the gain
//! sqrt(1 / a_bar - 1) where that is above 10 (the first x0 is the model's noise times 156 at
//! t = 999, which turns the model's 1e-7 float differences into 4e-5).

mod common;

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::Tensor;
use common::{Golden, assert_close, device};
use hd_painter_models::{GuidedUnet, PixelDenoiser, Unet2DModel};
use hd_painter_sampling::{
    KnownPixels, NoiseSchedule, PixelRepaint, PixelRepaintMode, PixelRepaintSettings,
    SamplingError, space_timesteps,
};

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/models")
        .join(name)
}

fn model(name: &str) -> Unet2DModel {
    Unet2DModel::load(model_dir(name), None, &device()).unwrap()
}

/// Replays the golden's draws; panics if the run takes more or fewer than the reference.
struct Replay<'a> {
    golden: &'a Golden,
    key: String,
    next: usize,
}

impl Replay<'_> {
    fn draw(&mut self, like: &Tensor<4>) -> Tensor<4> {
        let z: Tensor<4> = self.golden.slice(&self.key, self.next, &device());
        assert_eq!(z.dims(), like.dims(), "draw {}", self.next);
        self.next += 1;
        z
    }

    fn finished(&self) {
        assert_eq!(self.next, self.golden.get(&self.key).0[0], "draws taken");
    }
}

fn run(
    mode: PixelRepaintMode,
    prefix: &str,
    unet: &dyn PixelDenoiser,
    schedule: &NoiseSchedule,
    labels: Option<&[i64]>,
    first: Tensor<4>,
    replay: &mut Replay<'_>,
) -> (Vec<(usize, Tensor<4>, Tensor<4>)>, Tensor<4>) {
    let g = Golden::open("repaint_pixel");
    let device = device();
    let known = KnownPixels {
        image: g.tensor(&format!("{prefix}.image"), &device),
        keep: g.tensor(&format!("{prefix}.keep"), &device),
    };
    let settings = PixelRepaintSettings {
        steps: 20,
        jump_length: 3,
        jump_n_sample: 2,
        mode,
        clip_denoised: true,
    };
    let repaint = PixelRepaint {
        model: unet,
        schedule,
        class_labels: labels,
    };
    let mut x0s = vec![];
    let out = repaint
        .run(
            &settings,
            &known,
            first,
            &mut |like| replay.draw(like),
            &mut |step| {
                x0s.push((step.timestep, step.pred_x0.clone(), step.sample.clone()));
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    replay.finished();
    (x0s, out)
}

#[test]
fn diffusers_repaint_pipeline_every_step() {
    let g = Golden::open("repaint_pixel");
    let unet = model("unet2d_ddpm");
    let schedule = NoiseSchedule::linear_diffusers(1e-4, 0.02, 100);
    let mut replay = Replay {
        golden: &g,
        key: "diffusers.draws".into(),
        next: 0,
    };
    // The pipeline's first draw is the starting noise.
    let first = replay.draw(&Tensor::zeros([1, 3, 8, 8], &device()));
    let (got, out) = run(
        PixelRepaintMode::Diffusers { eta: 0.5 },
        "diffusers",
        &unet,
        &schedule,
        None,
        first,
        &mut replay,
    );
    assert_eq!(got.len(), g.get("diffusers.x0").0[0]);
    for (k, (_, x0, sample)) in got.iter().enumerate() {
        let what = format!("sample after step {k}");
        assert_close(sample, &g.part("diffusers.samples", k), 1e-5, &what);
        assert_close(
            x0,
            &g.part("diffusers.x0", k),
            1e-5,
            &format!("x0 of step {k}"),
        );
    }
    // The pipeline returns (x / 2 + 0.5) clamped to [0, 1].
    let image = (out / 2.0 + 0.5).clamp(0.0, 1.0);
    assert_close(&image, &g.f32s("diffusers.output").1, 1e-5, "output");
}

#[test]
fn official_repaint_sampler_every_step() {
    let g = Golden::open("repaint_pixel");
    let unet = GuidedUnet::load(model_dir("guided_repaint"), &device()).unwrap();
    let schedule = NoiseSchedule::linear(1e-4, 0.02, 1000);
    let timestep_map: Vec<usize> = g.ints("official.timestep_map");
    assert_eq!(space_timesteps(1000, &[20]).unwrap(), timestep_map);
    let mut replay = Replay {
        golden: &g,
        key: "official.draws".into(),
        next: 0,
    };
    let first = g.tensor("official.noise", &device());
    let (got, out) = run(
        PixelRepaintMode::Official,
        "official",
        &unet,
        &schedule,
        Some(&[7]),
        first,
        &mut replay,
    );
    assert_eq!(got.len(), g.get("official.x0").0[0]);
    for (k, (t, x0, sample)) in got.iter().enumerate() {
        let after = format!("sample after step {k}");
        assert_close(sample, &g.part("official.samples", k), 1e-4, &after);
        // x0 = (x - sqrt(1 - a) eps) / sqrt(a) scales the model's float differences by
        // sqrt(1 / a - 1), 156 at t = 999: 1e-4, or 1e-5 of that gain where it is above 10.
        let a = schedule.alpha_cumprod(*t as isize);
        let gain = (1.0 / a - 1.0).sqrt() as f32;
        let what = format!("x0 of step {k} (t = {t})");
        assert_close(
            x0,
            &g.part("official.x0", k),
            (1e-5 * gain).max(1e-4),
            &what,
        );
    }
    assert_close(&out, &g.f32s("official.output").1, 1e-4, "output");
}

#[test]
fn guided_diffusion_spacing() {
    // Values of guided-diffusion's space_timesteps (e.g. "250" over 1000: strides of 999/249).
    let s = space_timesteps(1000, &[250]).unwrap();
    assert_eq!(s.len(), 250);
    assert_eq!(&s[..4], &[0, 4, 8, 12]);
    assert_eq!(s[249], 999);
    assert_eq!(space_timesteps(10, &[2, 3]).unwrap(), vec![0, 4, 5, 7, 9]);
    assert!(space_timesteps(10, &[6, 1]).is_err());
}

#[test]
fn bad_runs_are_typed_errors() {
    let device = device();
    let unet = model("unet2d_ddpm");
    let schedule = NoiseSchedule::linear(1e-4, 0.02, 100);
    let known = KnownPixels {
        image: Tensor::zeros([1, 3, 8, 8], &device),
        keep: Tensor::ones([1, 1, 8, 8], &device),
    };
    let x = Tensor::<4>::zeros([1, 3, 8, 8], &device);
    let repaint = PixelRepaint {
        model: &unet,
        schedule: &schedule,
        class_labels: None,
    };
    let attempt = |settings: PixelRepaintSettings, known: &KnownPixels, x: Tensor<4>| {
        let mut draw = |like: &Tensor<4>| like.zeros_like();
        repaint
            .run(&settings, known, x, &mut draw, &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap_err()
            .to_string()
    };
    let diffusers = PixelRepaintSettings {
        steps: 10,
        jump_length: 3,
        jump_n_sample: 2,
        mode: PixelRepaintMode::Diffusers { eta: 0.0 },
        clip_denoised: true,
    };
    // The official sampler needs learned variance, as the official code asserts.
    let official = PixelRepaintSettings {
        mode: PixelRepaintMode::Official,
        ..diffusers
    };
    assert!(attempt(official, &known, x.clone()).contains("learned variance"));
    assert!(
        attempt(
            PixelRepaintSettings {
                steps: 101,
                ..diffusers
            },
            &known,
            x.clone()
        )
        .contains("101 RePaint steps")
    );
    assert!(
        attempt(
            PixelRepaintSettings {
                steps: 0,
                ..diffusers
            },
            &known,
            x.clone()
        )
        .contains("0 RePaint steps")
    );
    assert!(
        attempt(
            PixelRepaintSettings {
                jump_length: 10,
                ..diffusers
            },
            &known,
            x.clone()
        )
        .contains("jump length")
    );
    let small = KnownPixels {
        image: Tensor::zeros([1, 3, 4, 8], &device),
        keep: known.keep.clone(),
    };
    assert!(attempt(diffusers, &small, x.clone()).contains("known image"));
    // Cancelling after the second step.
    let mut draw = |like: &Tensor<4>| like.zeros_like();
    let mut seen = 0;
    let e = repaint
        .run(&diffusers, &known, x, &mut draw, &mut |s| {
            seen = s.step;
            if s.step == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap_err();
    assert!(matches!(e, SamplingError::Cancelled { step: 2, .. }), "{e}");
    assert_eq!(seen, 2);
}
