//! The RePaint loop against the reference in `tools/reference/generate.py` (diffusers'
//! RePaintScheduler walk over a 100-step schedule, 10 steps, jumps of 3, 2 samples, CFG 7.5, the
//! tiny 4-channel UNet), in both known-region modes with the reference's noise draws in order:
//! final latents within 1e-3 * max(1, max|ref|).

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use hd_painter_models::{DefaultAttention, Unet2DConditionModel};
use hd_painter_sampling::{
    KnownRegion, NoiseSchedule, RepaintSettings, TextConditioning, sample_repaint, seeded_draws,
};
use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn get(bytes: &[u8], key: &str) -> (Vec<usize>, Vec<f32>) {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let v = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    (
        v.shape().to_vec(),
        v.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
    )
}

fn tensor<const D: usize>(bytes: &[u8], key: &str, device: &Device) -> Tensor<D> {
    let (shape, v) = get(bytes, key);
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn settings(known_region: KnownRegion) -> RepaintSettings {
    RepaintSettings {
        steps: 10,
        jump_length: 3,
        jump_n_sample: 2,
        known_region,
        ..RepaintSettings::default()
    }
}

#[test]
fn both_known_region_modes_match_the_reference() {
    let device = hd_painter_core::BackendKind::Flex.device().unwrap();
    let unet =
        Unet2DConditionModel::load(fixtures().join("models/unet_sd2"), None, &device).unwrap();
    let g = std::fs::read(fixtures().join("sampling/repaint.safetensors")).unwrap();
    let text = TextConditioning {
        positive: tensor(&g, "positive", &device),
        negative: tensor(&g, "negative", &device),
    };
    let schedule = NoiseSchedule::scaled_linear_diffusers(0.00085, 0.012, 100);
    for (mode, name) in [
        (KnownRegion::MergeAfterStep, "merge_after"),
        (KnownRegion::RenoiseBeforeModel, "renoise_before"),
    ] {
        let (shape, draws) = get(&g, &format!("{name}_noise"));
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
        let out = sample_repaint(
            &unet,
            &schedule,
            &settings(mode),
            &text,
            tensor(&g, "known", &device),
            tensor(&g, "keep", &device),
            tensor(&g, "latents", &device),
            &mut draw,
            &mut DefaultAttention::default(),
            &mut |view| {
                reverse.push(view.timestep);
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert_eq!(k, shape[0], "{name}: every reference draw used once");
        // The reverse steps of the walk 90 80 70 60 (70 80 90) 80 70 60 50 40 30 (40 50 60) ...
        assert_eq!(
            reverse,
            [
                90, 80, 70, 60, 80, 70, 60, 50, 40, 30, 50, 40, 30, 20, 10, 0, 20, 10, 0
            ]
        );
        let got: Vec<f32> = out.latents.into_data().try_into_vec_as().unwrap();
        let (_, want) = get(&g, &format!("{name}_final"));
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err <= 1e-3 * scale, "{name}: max |diff| = {err:e}");
    }
}

#[test]
fn seeded_draws_make_runs_reproducible() {
    let device = hd_painter_core::BackendKind::Flex.device().unwrap();
    let unet =
        Unet2DConditionModel::load(fixtures().join("models/unet_sd2"), None, &device).unwrap();
    let g = std::fs::read(fixtures().join("sampling/repaint.safetensors")).unwrap();
    let text = TextConditioning {
        positive: tensor(&g, "positive", &device),
        negative: tensor(&g, "negative", &device),
    };
    let schedule = NoiseSchedule::stable_diffusion();
    let run = || {
        let mut draw = seeded_draws(vec![3]);
        let s = RepaintSettings {
            steps: 4,
            jump_length: 2,
            jump_n_sample: 2,
            ..RepaintSettings::default()
        };
        sample_repaint(
            &unet,
            &schedule,
            &s,
            &text,
            tensor(&g, "known", &device),
            tensor(&g, "keep", &device),
            tensor(&g, "latents", &device),
            &mut draw,
            &mut DefaultAttention::default(),
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap()
        .latents
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap()
    };
    assert_eq!(run(), run());
}
