//! The wgpu backend against flex on the tiny fixtures (flex itself is held to the references by
//! the other tests): the SD 2-like UNet, the SD VAE's encode and decode and the gelu CLIP text
//! encoder within 1e-4 * max(1, max |flex|); one HD-Painter step with PAIntA and RASG (the
//! paper's sigma, eta 1) with the latents and x0 within 1e-4 and RASG's normalised gradient, a
//! derivative through the UNet's down path on the autodiff device, within 1e-3.
//!
//! Built only with the `wgpu` feature. CI runs it on Mesa's lavapipe (a Vulkan driver on the CPU):
//! `CUBECL_AUTOTUNE_LEVEL=minimal cargo test -p hd-painter-sampling --features wgpu --test wgpu`.

#![cfg(feature = "wgpu")]

mod common;

use std::sync::{Mutex, MutexGuard};

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::Golden;
use common::golden_run::Setup;
use hd_painter_core::BackendKind;
use hd_painter_models::{
    AutoencoderKl, ClipTextModel, Conditions, DefaultAttention, Unet2DConditionModel,
};
use hd_painter_sampling::{Painta, Rasg, RasgSettings, RasgSigma};

const TOLERANCE: f32 = 1e-4;
const GRADIENT_TOLERANCE: f32 = 1e-3;

/// One test at a time on the device, as they were timed on lavapipe (331 s for the four one
/// after the other, 504 s side by side); whether the lock helps inside a whole CI run is not
/// established (754 s there at a94b162).
static DEVICE: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    DEVICE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wgpu() -> Device {
    BackendKind::Wgpu
        .device()
        .expect("the wgpu backend is compiled in")
}

/// Asserts max |got - want| <= `tolerance` * max(1, max |want|), `got` computed on wgpu and
/// `want` on flex.
fn assert_same<const D: usize>(got: Tensor<D>, want: Tensor<D>, tolerance: f32, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let got: Vec<f32> = got.into_data().try_into_vec_as().unwrap();
    let want: Vec<f32> = want.into_data().try_into_vec_as().unwrap();
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    println!("{what}: max |wgpu - flex| = {err:.2e} (scale {scale:.3})");
    assert!(
        got.iter().all(|v| v.is_finite()) && err <= tolerance * scale,
        "{what}: max |wgpu - flex| = {err:e} (scale {scale})"
    );
}

#[test]
fn unet_forward_matches_flex() {
    let _device = one_at_a_time();
    let golden = Golden::at("models/unet_sd2/outputs.safetensors");
    let timesteps: Vec<f32> = golden
        .get("timesteps")
        .1
        .iter()
        .map(|&t| t as f32)
        .collect();
    let forward = |device: &Device| {
        let dir = common::fixtures().join("models/unet_sd2");
        let unet = Unet2DConditionModel::load(dir, None, device).unwrap();
        unet.forward(
            golden.tensor("sample", device),
            &timesteps,
            &golden.tensor("context", device),
            Conditions::default(),
            &mut DefaultAttention::default(),
        )
        .unwrap()
    };
    assert_same(
        forward(&wgpu()),
        forward(&common::device()),
        TOLERANCE,
        "UNet",
    );
}

#[test]
fn vae_encode_and_decode_match_flex() {
    let _device = one_at_a_time();
    let golden = Golden::at("models/vae_sd/outputs.safetensors");
    let run = |device: &Device| {
        let vae =
            AutoencoderKl::load(common::fixtures().join("models/vae_sd"), None, device).unwrap();
        let mean = vae.encode(golden.tensor("image", device)).unwrap().mean;
        let decoded = vae.decode(golden.tensor("mean", device)).unwrap();
        (mean, decoded)
    };
    let (mean, decoded) = run(&wgpu());
    let (flex_mean, flex_decoded) = run(&common::device());
    assert_same(mean, flex_mean, TOLERANCE, "VAE posterior mean");
    assert_same(decoded, flex_decoded, TOLERANCE, "VAE decode");
}

#[test]
fn text_encoder_matches_flex() {
    let _device = one_at_a_time();
    let golden = Golden::at("models/clip_gelu/outputs.safetensors");
    let (shape, ids) = golden.get("input_ids");
    let ids: Vec<i64> = ids.into_iter().map(|v| v as i64).collect();
    let run = |device: &Device| {
        let dir = common::fixtures().join("models/clip_gelu");
        let model = ClipTextModel::load(dir, None, device).unwrap();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), shape.clone()), device);
        model.forward(ids).unwrap()
    };
    let (got, want) = (run(&wgpu()), run(&common::device()));
    assert_same(
        got.last_hidden_state,
        want.last_hidden_state,
        TOLERANCE,
        "CLIP last hidden state",
    );
    assert_same(got.pooled, want.pooled, TOLERANCE, "CLIP pooled output");
}

#[test]
fn a_guided_hd_painter_step_matches_flex() {
    let _device = one_at_a_time();
    let steps = 1;
    let trace = |device: Device| {
        let s = Setup::new(device, |unet| unet);
        let mut default = DefaultAttention::default();
        let mut painta = Painta::new(s.focus(&s.pixel_mask), true, &mut default);
        let rasg = Rasg {
            settings: RasgSettings {
                eta: 1.0,
                sigma: RasgSigma::Paper,
            },
            focus: s.focus(&s.pixel_mask),
        };
        s.run(&mut painta, Some(&rasg), steps).1
    };
    let got = trace(wgpu());
    let want = trace(common::device());
    assert_eq!(got.grads.len(), steps, "a RASG gradient");
    for k in 0..steps {
        let step = k + 1;
        assert_same(
            got.latents[k].clone(),
            want.latents[k].clone(),
            TOLERANCE,
            &format!("latents, step {step}"),
        );
        assert_same(
            got.x0[k].clone(),
            want.x0[k].clone(),
            TOLERANCE,
            &format!("x0, step {step}"),
        );
        assert_same(
            got.grads[k].clone(),
            want.grads[k].clone(),
            GRADIENT_TOLERANCE,
            &format!("RASG gradient, step {step}"),
        );
    }
}
