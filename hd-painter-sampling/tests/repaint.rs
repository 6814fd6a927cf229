//! The RePaint loop against the reference in `tools/reference/generate.py` (diffusers'
//! RePaintScheduler walk over a 100-step schedule, 10 steps, jumps of 3, 2 samples, CFG 7.5, the
//! tiny 4-channel UNet), in both known-region modes with the reference's noise draws in order:
//! final latents within 1e-3 * max(1, max|ref|).

mod common;

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor, TensorData};
use common::{Golden, assert_close, device, fixtures};
use hd_painter_models::{DefaultAttention, Unet2DConditionModel};
use hd_painter_sampling::{
    Hooks, KnownLatents, KnownRegion, NoiseSchedule, RepaintSettings, Sampler, Stage,
    TextConditioning, seeded_draws,
};

fn settings(known_region: KnownRegion) -> RepaintSettings {
    RepaintSettings {
        steps: 10,
        jump_length: 3,
        jump_n_sample: 2,
        known_region,
        ..RepaintSettings::default()
    }
}

/// The 4-channel UNet, the goldens and their prompt embeddings.
fn fixture(device: &Device) -> (Unet2DConditionModel, Golden, TextConditioning) {
    let unet =
        Unet2DConditionModel::load(fixtures().join("models/unet_sd2"), None, device).unwrap();
    let g = Golden::open("repaint");
    let text = TextConditioning {
        positive: g.tensor("positive", device),
        negative: g.tensor("negative", device),
        prompt_tokens: vec![1],
        text_time: None,
    };
    (unet, g, text)
}

/// The reference's known latents; its mask is 1 where the original is kept.
fn known(g: &Golden, device: &Device) -> KnownLatents {
    KnownLatents {
        latents: g.tensor("known", device),
        hole: g.tensor::<4>("keep", device).neg() + 1.0,
    }
}

#[test]
fn both_known_region_modes_match_the_reference() {
    let device = device();
    let (unet, g, text) = fixture(&device);
    let schedule = NoiseSchedule::scaled_linear_diffusers(0.00085, 0.012, 100);
    for (mode, name) in [
        (KnownRegion::MergeAfterStep, "merge_after"),
        (KnownRegion::RenoiseBeforeModel, "renoise_before"),
    ] {
        let (shape, draws) = g.f32s(&format!("{name}_noise"));
        let per = draws.len() / shape[0];
        let mut k = 0;
        let mut draw = |like: &Tensor<4>| {
            let z = Tensor::<4>::from_data(
                TensorData::new(draws[k * per..(k + 1) * per].to_vec(), like.dims()),
                &device,
            );
            k += 1;
            z
        };
        let mut reverse = Vec::new();
        let latents = g.tensor::<4>("latents", &device);
        let seeds = vec![0; latents.dims()[0]];
        let out = Sampler {
            unet: &unet,
            schedule: &schedule,
            text: &text,
            seeds: &seeds,
            stage: Stage::Inpaint,
            hooks: Hooks::new(&mut DefaultAttention::default(), &mut |view| {
                reverse.push(view.timestep as usize);
                ControlFlow::Continue(())
            }),
        }
        .resample(&settings(mode), &known(&g, &device), latents, &mut draw)
        .unwrap();
        assert_eq!(k, shape[0], "{name}: every reference draw used once");
        // The reverse steps of the walk 90 80 70 60 (70 80 90) 80 70 60 50 40 30 (40 50 60) ...
        assert_eq!(
            reverse,
            [
                90, 80, 70, 60, 80, 70, 60, 50, 40, 30, 50, 40, 30, 20, 10, 0, 20, 10, 0
            ]
        );
        assert_close(
            &out.latents,
            &g.f32s(&format!("{name}_final")).1,
            1e-3,
            name,
        );
    }
}

#[test]
fn seeded_draws_make_runs_reproducible() {
    let device = device();
    let (unet, g, text) = fixture(&device);
    let schedule = NoiseSchedule::stable_diffusion();
    let run = || {
        let mut draw = seeded_draws(vec![3]);
        let s = RepaintSettings {
            steps: 4,
            jump_length: 2,
            jump_n_sample: 2,
            ..RepaintSettings::default()
        };
        let latents = g.tensor::<4>("latents", &device);
        Sampler {
            unet: &unet,
            schedule: &schedule,
            text: &text,
            seeds: &vec![3; latents.dims()[0]],
            stage: Stage::Inpaint,
            hooks: Hooks::new(&mut DefaultAttention::default(), &mut |_| {
                ControlFlow::Continue(())
            }),
        }
        .resample(&s, &known(&g, &device), latents, &mut draw)
        .unwrap()
        .latents
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap()
    };
    assert_eq!(run(), run());
}
