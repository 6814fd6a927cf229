//! The x4 upscaler's loop with HD-Painter's x0 blending against the reference on diffusers'
//! components (`tools/reference/generate.py`, group `sr`): the tiny x4 UNet and f=4 VAE, the
//! low-res image noised at noise level 20 with the low-res schedule, 3 v-prediction DDIM steps on
//! the 999 - 333k grid with CFG 7.5, x0 blended with the original's latents after every step.
//! Per step, latents and blended x0 within 1e-3 * max(1, max|ref|); the original's latents from
//! our VAE within 1e-4; the noised low-res image within 1e-6.

mod common;

use std::ops::ControlFlow;

use common::{Golden, assert_close, device, model};
use hd_painter_models::{AutoencoderKl, DefaultAttention, Unet2DConditionModel, VaeTiling};
use hd_painter_sampling::{
    ClassifierFree, NoiseSchedule, Prediction, Sampler, SamplerSettings, SchedulerSpec, StepView,
    TextConditioning,
};
use hd_painter_sampling::{Hooks, Stage};
use hd_painter_sr::{UpscaleLatents, noise_low_res};

#[test]
fn upscaler_loop_with_x0_blending_matches_the_reference() {
    let device = device();
    let g = Golden::open("sr_loop");
    let unet = Unet2DConditionModel::load(model("unet_x4"), None, &device).unwrap();
    let vae = AutoencoderKl::load(model("vae_x4"), None, &device).unwrap();
    let schedule = NoiseSchedule::x4_upscaler();

    let hr_z0 = vae.encode(g.tensor("hr", &device)).unwrap().mean * vae.scaling_factor();
    assert_close(&hr_z0, &g.values("hr_z0").1, 1e-4, "original's latents");
    let noised = noise_low_res(
        g.tensor("lr", &device),
        g.tensor("lr_noise", &device),
        20,
        &schedule,
    );
    assert_close(
        &noised,
        &g.values("noisy_lr").1,
        1e-6,
        "noised low-res image",
    );

    let mut strategy = UpscaleLatents::new(noised, 20)
        .with_known_region(g.tensor("mask", &device), g.tensor("hr_z0", &device));
    let text = TextConditioning {
        positive: g.tensor("positive", &device),
        negative: g.tensor("negative", &device),
        prompt_tokens: vec![1],
        text_time: None,
    };
    let settings = SamplerSettings {
        steps: 3,
        scheduler: SchedulerSpec {
            prediction: Prediction::VPrediction,
            ..SchedulerSpec::hd_painter()
        },
        ..SamplerSettings::default()
    };
    let mut steps = 0;
    let sampled = Sampler {
        unet: &unet,
        schedule: &schedule,
        text: &text,
        seeds: &[0],
        stage: Stage::Inpaint,
        hooks: Hooks::new(&mut DefaultAttention::default(), &mut |view: &StepView<
            '_,
        >| {
            let k = view.step - 1;
            assert_close(
                view.latents,
                &g.part("step_latents", k),
                1e-3,
                &format!("latents, step {}", view.step),
            );
            assert_close(
                view.pred_x0,
                &g.part("step_x0", k),
                1e-3,
                &format!("blended x0, step {}", view.step),
            );
            steps += 1;
            ControlFlow::Continue(())
        }),
    }
    .run(
        &settings,
        &mut strategy,
        &ClassifierFree,
        g.tensor("latents", &device),
    )
    .unwrap();
    assert_eq!(steps, 3);
    assert_close(&sampled.last_x0, &g.part("step_x0", 2), 1e-3, "last x0");
}

/// diffusers' VAE tiling (overlap 0.25, linear blends in its order) on the tiny f=4 VAE with
/// 32 px tiles, partial tiles at the edges: posterior and decode within 1e-4.
#[test]
fn tiled_vae_matches_diffusers_tiling() {
    let device = device();
    let g = Golden::open("vae_tiled");
    let vae = AutoencoderKl::load(model("vae_x4"), None, &device).unwrap();
    let tiling = VaeTiling { tile: 32 };
    let posterior = vae
        .encode_tiled(g.tensor("image", &device), tiling)
        .unwrap();
    assert_close(
        &posterior.mean,
        &g.values("mean").1,
        1e-4,
        "tiled posterior mean",
    );
    assert_close(
        &posterior.logvar,
        &g.values("logvar").1,
        1e-4,
        "tiled posterior logvar",
    );
    let decoded = vae
        .decode_tiled(g.tensor("latents", &device), tiling)
        .unwrap();
    assert_close(&decoded, &g.values("decoded").1, 1e-4, "tiled decode");
    // Tiling changes the result (otherwise this test could not tell).
    let whole = vae.decode(g.tensor("latents", &device)).unwrap();
    let seam: f32 = (whole - decoded).abs().max().into_scalar();
    assert!(seam > 1e-3, "{seam}");
    let err = vae
        .decode_tiled(g.tensor("latents", &device), VaeTiling { tile: 30 })
        .unwrap_err();
    assert!(err.to_string().contains("VAE tile size"), "{err}");
}
