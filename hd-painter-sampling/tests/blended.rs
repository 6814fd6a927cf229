//! Blended Latent Diffusion against the reference loop in `tools/reference/generate.py` (the
//! paper's SD code as the spec states it, on diffusers' DDIMScheduler and the tiny 4-channel
//! UNet): 8 steps with the first 25% skipped, CFG 7.5, the same per-step noise; latents after
//! every step within 1e-3 * max(1, max|ref|).

mod common;

use std::ops::ControlFlow;

use burn::tensor::{Tensor, TensorData};
use common::{Golden, assert_close, device, fixtures};
use hd_painter_models::{DefaultAttention, Unet2DConditionModel};
use hd_painter_sampling::{
    BlendedLatents, ClassifierFree, NoiseSchedule, Sampler, SamplerSettings, SchedulerKind,
    SchedulerSpec, TextConditioning,
};
use hd_painter_sampling::{Hooks, Stage};

#[test]
fn blended_steps_match_the_reference_loop() {
    let device = device();
    let unet =
        Unet2DConditionModel::load(fixtures().join("models/unet_sd2"), None, &device).unwrap();
    let golden = Golden::open("blended");
    let (noise_shape, noise) = golden.f32s("noise");
    let per = noise.len() / noise_shape[0];
    let settings = SamplerSettings {
        steps: 8,
        first_step: 2,
        ..SamplerSettings::default()
    };
    // The reference's noise, in the order of the steps actually run.
    let noise_device = device.clone();
    let supplied = move |step: usize, like: &Tensor<4>| {
        let k = step - settings.first_step;
        Tensor::<4>::from_data(
            TensorData::new(noise[k * per..(k + 1) * per].to_vec(), like.dims()),
            &noise_device,
        )
    };
    let mut strategy = BlendedLatents::with_noise(
        golden.tensor("mask", &device),
        golden.tensor("source", &device),
        Box::new(supplied),
    );
    let text = TextConditioning {
        positive: golden.tensor("positive", &device),
        negative: golden.tensor("negative", &device),
        prompt_tokens: vec![1],
        text_time: None,
    };
    let schedule = NoiseSchedule::scaled_linear_diffusers(0.00085, 0.012, 1000);
    let (_, expected) = golden.f32s("step_latents");
    let mut steps = 0;
    Sampler {
        unet: &unet,
        schedule: &schedule,
        text: &text,
        seeds: &[0],
        stage: Stage::Inpaint,
        hooks: Hooks::new(&mut DefaultAttention::default(), &mut |view| {
            let want = &expected[(view.step - 1) * per..view.step * per];
            assert_close(view.latents, want, 1e-3, &format!("step {}", view.step));
            steps += 1;
            ControlFlow::Continue(())
        }),
    }
    .run(
        &settings,
        &mut strategy,
        &ClassifierFree,
        golden.tensor("latents", &device),
    )
    .unwrap();
    assert_eq!(steps, 6);
}

#[test]
fn seeded_blending_is_reproducible_per_image() {
    let device = device();
    let unet =
        Unet2DConditionModel::load(fixtures().join("models/unet_sd2"), None, &device).unwrap();
    let golden = Golden::open("blended");
    let text = TextConditioning {
        positive: golden.tensor("positive", &device),
        negative: golden.tensor("negative", &device),
        prompt_tokens: vec![1],
        text_time: None,
    };
    let schedule = NoiseSchedule::stable_diffusion();
    let settings = SamplerSettings {
        steps: 4,
        scheduler: SchedulerSpec::new(SchedulerKind::Ddim { eta: 0.3 }),
        ..SamplerSettings::default()
    };
    let run = |seeds: Vec<u64>| {
        let mut strategy = BlendedLatents::new(
            golden.tensor("mask", &device),
            golden.tensor("source", &device),
            seeds.clone(),
        );
        let start = hd_painter_core::seeded_noise(&seeds, [4, 12, 20], &device);
        Sampler {
            unet: &unet,
            schedule: &schedule,
            text: &text,
            seeds: &seeds,
            stage: Stage::Inpaint,
            hooks: Hooks::new(&mut DefaultAttention::default(), &mut |_| {
                ControlFlow::Continue(())
            }),
        }
        .run(&settings, &mut strategy, &ClassifierFree, start)
        .unwrap()
        .latents
    };
    let pair: Vec<f32> = run(vec![11, 12]).into_data().try_into_vec_as().unwrap();
    let second: Vec<f32> = run(vec![12]).into_data().try_into_vec_as().unwrap();
    let half = pair.len() / 2;
    let err = pair[half..]
        .iter()
        .zip(&second)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < 1e-5, "image 2 of a batch vs alone: {err:e}");
}
