//! HD-Painter's SR stage against a golden of the official code itself: `src/methods/sr.run`
//! (Picsart-AI-Research/HD-Painter at d452186, run by `tools/reference/hd_painter_official.py`
//! on CPU with a tiny random-weight x4 UNet and f=4 VAE in its own LDM modules, loaded here from
//! the original single-file layout; its hard-coded 2048 px long side scaled to 256). A 320 x 200
//! photo, a soft grey mask and a 64 x 40 first-stage result; with the official noise:
//! - [`Upscaler::prepare`]: the blurred latent mask within 1e-5, the original's latents within
//!   1e-4, and the noised low-res condition within 1e-5;
//! - [`Upscaler::generate`]: the latents and the blended x0 after each of 10 steps (`dt` 100;
//!   on random weights the f32 rounding differences double every step) within
//!   1e-3 * max(1, max|ref|) (the last latents excepted: the official code indexes `a_bar[-1]`
//!   there, and only that step's x0 is used), and the 8-bit result within one level;
//! - [`Upscaler::blend`]: the Poisson blend of the official result within one level of the
//!   official output, and of ours within two (our result's one level, plus the blend's).

mod common;

use std::ops::ControlFlow;

use common::{Golden, assert_close, device, fixtures};
use hd_painter_core::{Image, Mask};
use hd_painter_models::{AutoencoderKl, DefaultAttention, Unet2DConditionModel};
use hd_painter_sampling::{Hooks, NoiseSchedule, StepView, TextConditioning};
use hd_painter_sr::{SrNoise, SrOutput, SrSettings, Upscaler, noise_low_res};

fn worst_level(got: &Image, want: &Image) -> u8 {
    assert_eq!((got.width(), got.height()), (want.width(), want.height()));
    got.raster()
        .as_slice()
        .iter()
        .zip(want.raster().as_slice())
        .map(|(&a, &b)| a.abs_diff(b))
        .max()
        .unwrap()
}

#[test]
fn the_sr_stage_matches_the_official_code() {
    let device = device();
    let dir = fixtures().join("models/hd_painter_official");
    let file = dir.join("x4.safetensors");
    let unet = Unet2DConditionModel::load_single_file(&file, dir.join("x4_unet"), &device).unwrap();
    let vae = AutoencoderKl::load_single_file(&file, dir.join("x4_vae"), &device).unwrap();
    let schedule = NoiseSchedule::x4_upscaler();
    let up = Upscaler {
        unet: &unet,
        vae: &vae,
        schedule: &schedule,
    };
    let g = Golden::open("sr_official");
    let photo = g.image("photo");
    let (shape, grey) = g.bytes("mask");
    let mask = Mask::from_luma8(
        shape[1] as u32,
        shape[0] as u32,
        grey.chunks_exact(3).map(|p| p[2]).collect(),
    )
    .unwrap();
    let settings = SrSettings {
        long_side: 256,
        output: SrOutput::LongSide,
        seed: 1,
        steps: 10,
        ..SrSettings::default()
    };

    let inputs = up
        .prepare(&g.image("first_stage"), &photo, &mask, &settings)
        .unwrap();
    assert_close(
        &inputs.latent_mask,
        &g.values("lr_mask").1,
        1e-5,
        "latent mask",
    );
    let known = inputs.known.clone().unwrap();
    assert_close(&known, &g.values("hr_z0").1, 1e-4, "original's latents");
    let lr_noise = g.tensor::<4>("lr_noise", &device);
    let noised = noise_low_res(inputs.low_res.clone(), lr_noise.clone(), 20, &schedule);
    assert_close(&noised, &g.values("condition").1, 1e-5, "noised low-res");

    let context = g.tensor::<3>("context", &device);
    let text = TextConditioning {
        negative: context.clone().slice(0..1),
        positive: context.slice(1..2),
        prompt_tokens: vec![1],
        text_time: None,
    };
    let noise = SrNoise {
        latents: g.tensor("noise", &device),
        low_res: lr_noise,
    };
    let steps = g.values("x0").0[0];
    let mut seen = 0;
    let generated = up
        .generate(
            &inputs,
            noise,
            &text,
            &settings,
            Hooks::new(&mut DefaultAttention::default(), &mut |view: &StepView<
                '_,
            >| {
                let k = view.step - 1;
                let what = format!("blended x0, step {}", view.step);
                assert_close(view.pred_x0, &g.part("x0", k), 1e-3, &what);
                if view.step < steps {
                    let what = format!("latents, step {}", view.step);
                    assert_close(view.latents, &g.part("latents", k), 1e-3, &what);
                }
                seen += 1;
                ControlFlow::Continue(())
            }),
        )
        .unwrap();
    assert_eq!(seen, steps, "the official grid's steps");
    let worst = worst_level(&generated, &g.image("generated"));
    assert!(
        worst <= 1,
        "SR result: {worst} levels from the official one"
    );
    let official = up.blend(&inputs, &g.image("generated"), &settings).unwrap();
    let worst = worst_level(&official, &g.image("result"));
    assert!(
        worst <= 1,
        "Poisson blend: {worst} levels from the official one"
    );
    let blended = up.blend(&inputs, &generated, &settings).unwrap();
    let worst = worst_level(&blended, &g.image("result"));
    assert!(worst <= 2, "output: {worst} levels from the official one");
}
