//! The reduced-precision weight path: the tiny UNet, VAE and text encoder with their weights cast
//! to f16 and bf16 (`with_dtype`) against diffusers' / transformers' f32 outputs. f16 stays
//! within 1e-2 of the largest reference value; bf16, whose 8-bit mantissa rounds every
//! activation to about 0.4%, within 5e-2 (measured: 1.3% to 1.7%). Each check also proves the
//! weights really changed precision: the result differs from the f32 model's, and the model
//! reports the dtype.

mod common;

use burn::tensor::{FloatDType, Tensor};
use common::{Golden, device, model_dir};
use hd_painter_models::{
    AutoencoderKl, ClipTextModel, DefaultAttention, StableDiffusionModels, Unet2DConditionModel,
};

/// The reduced dtypes and how close each stays to the f32 reference, relative to its largest
/// value.
const DTYPES: [(FloatDType, f64); 2] = [(FloatDType::F16, 1e-2), (FloatDType::BF16, 5e-2)];

/// `reduced` is within `tolerance` relative of the reference, and not bit-identical to `full`
/// (the f32 model's result), so the reduced weights were used.
fn check<const D: usize>(
    g: &Golden,
    key: &str,
    (reduced, full): (Tensor<D>, Tensor<D>),
    tolerance: f64,
    what: &str,
) {
    assert_eq!(reduced.dtype(), full.dtype(), "{what}: outputs are f32");
    let moved: f32 = (reduced.clone() - full).abs().max().into_scalar();
    assert!(moved > 0.0, "{what}: {key} is the f32 result");
    g.assert_within(reduced, key, tolerance, 0.0, what);
}

#[test]
fn unet_with_reduced_weights_matches_diffusers() {
    let device = device();
    let unet = Unet2DConditionModel::load(model_dir("unet_sd2"), None, &device).unwrap();
    assert_eq!(unet.dtype(), FloatDType::F32);
    let g = Golden::open("unet_sd2", "outputs.safetensors");
    let timesteps: Vec<f32> = g.get("timesteps").1.into_iter().map(|t| t as f32).collect();
    let context = g.tensor::<3>("context", &device);
    let run = |unet: &Unet2DConditionModel| {
        unet.forward(
            g.tensor("sample", &device),
            &timesteps,
            &context,
            None,
            &mut DefaultAttention::default(),
        )
        .unwrap()
    };
    let full = run(&unet);
    for (dtype, tolerance) in DTYPES {
        let reduced = unet.clone().with_dtype(dtype);
        assert_eq!(reduced.dtype(), dtype);
        let what = format!("unet {dtype:?}");
        check(
            &g,
            "output",
            (run(&reduced), full.clone()),
            tolerance,
            &what,
        );
    }
}

#[test]
fn vae_with_reduced_weights_matches_diffusers() {
    let device = device();
    let vae = AutoencoderKl::load(model_dir("vae_sd"), None, &device).unwrap();
    let g = Golden::open("vae_sd", "outputs.safetensors");
    let image = g.tensor::<4>("image", &device);
    let mean = g.tensor::<4>("mean", &device);
    let full_mean = vae.encode(image.clone()).unwrap().mean;
    let full_decoded = vae.decode(mean.clone()).unwrap();
    for (dtype, tolerance) in DTYPES {
        let reduced = vae.clone().with_dtype(dtype);
        assert_eq!(reduced.dtype(), dtype);
        let what = format!("vae {dtype:?}");
        let posterior = reduced.encode(image.clone()).unwrap();
        check(
            &g,
            "mean",
            (posterior.mean, full_mean.clone()),
            tolerance,
            &what,
        );
        let decoded = reduced.decode(mean.clone()).unwrap();
        check(
            &g,
            "decoded",
            (decoded, full_decoded.clone()),
            tolerance,
            &what,
        );
    }
}

#[test]
fn text_encoder_with_reduced_weights_matches_transformers() {
    let device = device();
    let model = ClipTextModel::load(model_dir("clip_gelu"), None, &device).unwrap();
    let g = Golden::open("clip_gelu", "outputs.safetensors");
    let ids = g.int_tensor::<2>("input_ids", &device);
    let full = model.forward(ids.clone()).unwrap();
    for (dtype, tolerance) in DTYPES {
        let out = model
            .clone()
            .with_dtype(dtype)
            .forward(ids.clone())
            .unwrap();
        let what = format!("text encoder {dtype:?}");
        let last = (out.last_hidden_state, full.last_hidden_state.clone());
        check(&g, "last_hidden_state", last, tolerance, &what);
        let penultimate = (
            out.penultimate_hidden_state,
            full.penultimate_hidden_state.clone(),
        );
        check(
            &g,
            "penultimate_hidden_state",
            penultimate,
            tolerance,
            &what,
        );
    }
}

#[test]
fn a_pipeline_casts_every_model() {
    let device = device();
    let models = StableDiffusionModels::load(model_dir("pipeline_inpaint"), None, &device)
        .unwrap()
        .with_dtype(FloatDType::BF16);
    assert_eq!(models.unet.dtype(), FloatDType::BF16);
    assert_eq!(models.vae.dtype(), FloatDType::BF16);
    assert_eq!(models.text_encoder.dtype(), FloatDType::BF16);
    let context = models.encode_prompt("a red sofa").unwrap();
    assert_eq!(context.dtype(), burn::tensor::DType::F32);
}
