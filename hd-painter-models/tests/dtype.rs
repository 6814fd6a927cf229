//! The reduced-precision paths: the tiny UNet, VAE, text encoder and BrushNet branch with their
//! weights cast to f16 and bf16, computing in it (`with_dtype`) or in f32 (`with_weight_dtype`),
//! against the references' f32 outputs (diffusers, transformers, BrushNet's), relative to the
//! largest reference value. Computing in f16 stays within 1e-2; in bf16, whose 8-bit mantissa
//! rounds every activation to about 0.4%, within 5e-2 (measured: 0.6% to 2.8%). With f32
//! activations only the weights' rounding is left: f16 within 5e-3 (measured 0.03% to 0.16%), bf16
//! within 3e-2 (0.17% to 1.5%, the tiny random VAE's decoder amplifying most). Each check also
//! proves the weights really changed precision: the result differs from the f32 model's, and the
//! model reports both dtypes. And f32 activations on rounded weights are exactly the f32 model on
//! those weights widened.

mod common;

use burn::tensor::FloatDType::{BF16, F16};
use burn::tensor::{FloatDType, Tensor};
use common::{Golden, device, model_dir};
use hd_painter_models::{
    AutoencoderKl, BrushNetModel, ClipTextModel, Conditions, DefaultAttention,
    StableDiffusionModels, Unet2DConditionModel,
};

/// A reduced-precision path: the weights' dtype, and whether the activations are computed in
/// it too (`with_dtype`) or in f32 (`with_weight_dtype`).
#[derive(Clone, Copy, Debug)]
struct Path {
    weights: FloatDType,
    half_activations: bool,
    /// How close it stays to the f32 reference, relative to its largest value.
    tolerance: f64,
}

const PATHS: [Path; 4] = [
    Path {
        weights: FloatDType::F16,
        half_activations: true,
        tolerance: 1e-2,
    },
    Path {
        weights: FloatDType::BF16,
        half_activations: true,
        tolerance: 5e-2,
    },
    Path {
        weights: FloatDType::F16,
        half_activations: false,
        tolerance: 5e-3,
    },
    Path {
        weights: FloatDType::BF16,
        half_activations: false,
        tolerance: 3e-2,
    },
];

/// `$model` on `$path`, checked to report its dtypes.
macro_rules! reduced {
    ($model:expr, $path:expr) => {{
        let path: Path = $path;
        let model = if path.half_activations {
            $model.with_dtype(path.weights)
        } else {
            $model.with_weight_dtype(path.weights)
        };
        let compute = if path.half_activations {
            path.weights
        } else {
            FloatDType::F32
        };
        assert_eq!(model.dtype(), path.weights);
        assert_eq!(model.compute_dtype(), compute);
        model
    }};
}

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
            Conditions::default(),
            &mut DefaultAttention::default(),
        )
        .unwrap()
    };
    let full = run(&unet);
    for path in PATHS {
        let reduced = reduced!(unet.clone(), path);
        let what = format!("unet {path:?}");
        check(
            &g,
            "output",
            (run(&reduced), full.clone()),
            path.tolerance,
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
    for path in PATHS {
        let reduced = reduced!(vae.clone(), path);
        let what = format!("vae {path:?}");
        let posterior = reduced.encode(image.clone()).unwrap();
        check(
            &g,
            "mean",
            (posterior.mean, full_mean.clone()),
            path.tolerance,
            &what,
        );
        let decoded = reduced.decode(mean.clone()).unwrap();
        check(
            &g,
            "decoded",
            (decoded, full_decoded.clone()),
            path.tolerance,
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
    for path in PATHS {
        let out = reduced!(model.clone(), path).forward(ids.clone()).unwrap();
        let what = format!("text encoder {path:?}");
        let last = (out.last_hidden_state, full.last_hidden_state.clone());
        check(&g, "last_hidden_state", last, path.tolerance, &what);
        let penultimate = (
            out.penultimate_hidden_state,
            full.penultimate_hidden_state.clone(),
        );
        check(
            &g,
            "penultimate_hidden_state",
            penultimate,
            path.tolerance,
            &what,
        );
    }
}

/// The BrushNet golden's inputs and the f32 base UNet that takes the branch's residuals.
struct BrushNetCase {
    g: Golden,
    unet: Unet2DConditionModel,
    branch: BrushNetModel,
    sample: Tensor<4>,
    condition: Tensor<4>,
    context: Tensor<3>,
}

impl BrushNetCase {
    fn load() -> Self {
        let device = device();
        let g = Golden::open("brushnet", "brushnet.safetensors");
        Self {
            unet: Unet2DConditionModel::load(model_dir("unet_sd2"), None, &device).unwrap(),
            branch: BrushNetModel::load(model_dir("brushnet"), None, &device).unwrap(),
            sample: g.tensor("sample", &device),
            condition: g.tensor("condition", &device),
            context: g.tensor("encoder_hidden_states", &device),
            g,
        }
    }

    /// `branch`'s mid residual (in f32) and the base UNet's prediction with its residuals, at
    /// the reference's timestep 500 and scale 0.8.
    fn run(&self, branch: &BrushNetModel) -> (Tensor<4>, Tensor<4>) {
        let residuals = branch
            .forward(
                self.sample.clone(),
                &[500.0],
                &self.context,
                self.condition.clone(),
                0.8,
            )
            .unwrap();
        assert_eq!(residuals.mid.dtype(), branch.compute_dtype().into());
        let eps = self
            .unet
            .forward_with_residuals(
                self.sample.clone(),
                &[500.0],
                &self.context,
                Conditions::default(),
                &mut DefaultAttention::default(),
                &residuals,
            )
            .unwrap();
        (residuals.mid.cast(FloatDType::F32), eps)
    }
}

#[test]
fn brushnet_with_reduced_weights_matches_the_reference() {
    let case = BrushNetCase::load();
    assert_eq!(case.branch.dtype(), FloatDType::F32);
    let (full_mid, full_eps) = case.run(&case.branch);
    for path in PATHS {
        let (mid, eps) = case.run(&reduced!(case.branch.clone(), path));
        let what = format!("brushnet {path:?}");
        for (key, got, full) in [("residuals.mid", mid, &full_mid), ("eps", eps, &full_eps)] {
            check(&case.g, key, (got, full.clone()), path.tolerance, &what);
        }
    }
}

/// `model` with its weights rounded to `dtype` and widened back to f32: what
/// `with_weight_dtype(F16)` must compute, exactly.
macro_rules! rounded {
    ($model:expr, $dtype:expr) => {
        $model.with_dtype($dtype).with_dtype(FloatDType::F32)
    };
}

fn assert_identical<const D: usize>(got: Tensor<D>, expected: Tensor<D>, what: &str) {
    let diff: f32 = (got - expected).abs().max().into_scalar();
    assert_eq!(diff, 0.0, "{what}");
}

/// f16 weights widen exactly and multiply in f32: the f32 model on their values, bit for bit.
/// bf16 weights multiply in bf16 (both operands of every product rounded, as PyTorch's bf16
/// model does; `native/bf16` tests the layers): near the rounded-weights model and not identical
/// to it, except the text encoder, whose layers are burn's own.
#[test]
fn weights_stored_in_half_precision_compute_on_their_values() {
    let device = device();
    let unet = Unet2DConditionModel::load(model_dir("unet_sd2"), None, &device).unwrap();
    let g = Golden::open("unet_sd2", "outputs.safetensors");
    let timesteps: Vec<f32> = g.get("timesteps").1.into_iter().map(|t| t as f32).collect();
    let context = g.tensor::<3>("context", &device);
    let run = |unet: Unet2DConditionModel| {
        let attention = &mut DefaultAttention::default();
        let sample = g.tensor("sample", &device);
        unet.forward(
            sample,
            &timesteps,
            &context,
            Conditions::default(),
            attention,
        )
        .unwrap()
    };
    let stored = |dtype| run(unet.clone().with_weight_dtype(dtype));
    assert_identical(stored(F16), run(rounded!(unet.clone(), F16)), "unet");
    assert_bf16_products(stored(BF16), run(rounded!(unet, BF16)), "unet");

    let vae = AutoencoderKl::load(model_dir("vae_sd"), None, &device).unwrap();
    let image = Golden::open("vae_sd", "outputs.safetensors").tensor::<4>("image", &device);
    let run = |vae: AutoencoderKl| {
        let mean = vae.encode(image.clone()).unwrap().mean;
        vae.decode(mean).unwrap()
    };
    let stored = |dtype| run(vae.clone().with_weight_dtype(dtype));
    assert_identical(stored(F16), run(rounded!(vae.clone(), F16)), "vae");
    assert_bf16_products(stored(BF16), run(rounded!(vae, BF16)), "vae");

    let clip = ClipTextModel::load(model_dir("clip_gelu"), None, &device).unwrap();
    let ids =
        Golden::open("clip_gelu", "outputs.safetensors").int_tensor::<2>("input_ids", &device);
    let run = |clip: ClipTextModel| clip.forward(ids.clone()).unwrap().last_hidden_state;
    for dtype in [F16, BF16] {
        let stored = run(clip.clone().with_weight_dtype(dtype));
        assert_identical(stored, run(rounded!(clip.clone(), dtype)), "text encoder");
    }

    let case = BrushNetCase::load();
    let run = |branch: BrushNetModel| case.run(&branch).1;
    let stored = |dtype| run(case.branch.clone().with_weight_dtype(dtype));
    let rounded = |dtype| run(rounded!(case.branch.clone(), dtype));
    assert_identical(stored(F16), rounded(F16), "BrushNet");
    assert_bf16_products(stored(BF16), rounded(BF16), "BrushNet");
}

/// `got` (bf16 weights, bf16 products) against `rounded_weights` (the f32 model on the same
/// weights): apart by the activations' rounding, about bf16's 2^-8 for the UNet and BrushNet
/// (3.1e-3 and 2.1e-3 with the f32 GEMM on rounded operands, on a CPU without AVX-512), more
/// through the VAE's encode and decode, whose group norms rescale the rounding of two dozen
/// chained convolutions (2.1e-2 there), and no more than 3e-2.
fn assert_bf16_products<const D: usize>(got: Tensor<D>, rounded_weights: Tensor<D>, what: &str) {
    let scale: f32 = rounded_weights.clone().abs().max().into_scalar();
    let diff: f32 = (got - rounded_weights).abs().max().into_scalar();
    let relative = diff / scale.max(1.0);
    assert!(relative > 0.0 && relative < 3e-2, "{what}: {relative:e}");
}

#[test]
fn a_pipeline_casts_every_model() {
    let device = device();
    let models = StableDiffusionModels::load(model_dir("pipeline_inpaint"), None, &device).unwrap();
    for half_activations in [true, false] {
        let models = if half_activations {
            models.clone().with_dtype(FloatDType::BF16)
        } else {
            models.clone().with_weight_dtype(FloatDType::BF16)
        };
        let compute = if half_activations {
            FloatDType::BF16
        } else {
            FloatDType::F32
        };
        assert_eq!(models.unet.dtype(), FloatDType::BF16);
        assert_eq!(models.vae.dtype(), FloatDType::BF16);
        assert_eq!(models.text_encoder.dtype(), FloatDType::BF16);
        assert_eq!(models.unet.compute_dtype(), compute);
        assert_eq!(models.vae.compute_dtype(), compute);
        assert_eq!(models.text_encoder.compute_dtype(), compute);
        let context = models.encode_prompt("a red sofa").unwrap();
        assert_eq!(context.dtype(), burn::tensor::DType::F32);
    }
}

/// Weights converted as they are read (`load_with_weight_dtype`) are the loaded f32 model's
/// `with_weight_dtype`, bit for bit, for every component of a pipeline folder (SDXL's, whose
/// second encoder too): the outputs and the dtypes reported.
#[test]
fn weights_converted_while_loading_equal_those_converted_after() {
    let device = device();
    let dir = model_dir("pipeline_sdxl_inpaint");
    for dtype in [F16, BF16] {
        let direct =
            StableDiffusionModels::load_with_weight_dtype(&dir, None, dtype, &device).unwrap();
        let after = StableDiffusionModels::load(&dir, None, &device)
            .unwrap()
            .with_weight_dtype(dtype);
        assert_eq!(direct.unet.dtype(), dtype);
        assert_eq!(direct.unet.compute_dtype(), FloatDType::F32);
        assert_eq!(direct.vae.dtype(), dtype);
        let second = direct.sdxl.as_ref().unwrap();
        assert_eq!(second.text_encoder_2.dtype(), dtype);
        let what = format!("{dtype:?} prompt");
        let (a, b) = (
            direct.encode_text("a red sofa").unwrap(),
            after.encode_text("a red sofa").unwrap(),
        );
        assert_identical(a.context, b.context, &what);
        assert_identical(a.pooled.unwrap(), b.pooled.unwrap(), &what);
        let g = Golden::open("unet_sdxl", "outputs.safetensors");
        let run = |unet: &Unet2DConditionModel| {
            let (embeds, ids) = (g.tensor::<2>("text_embeds", &device), g.get("time_ids").1);
            let ids: Vec<f32> = ids.into_iter().map(|v| v as f32).collect();
            let timesteps: Vec<f32> = g.get("timesteps").1.into_iter().map(|t| t as f32).collect();
            unet.forward(
                g.tensor("sample", &device),
                &timesteps,
                &g.tensor::<3>("context", &device),
                Conditions::text_time(&embeds, &ids),
                &mut DefaultAttention::default(),
            )
            .unwrap()
        };
        assert_identical(
            run(&direct.unet),
            run(&after.unet),
            &format!("{dtype:?} UNet"),
        );
        let image = Tensor::<4>::zeros([1, 3, 16, 16], &device);
        let (x, y) = (
            direct.vae.encode(image.clone()).unwrap(),
            after.vae.encode(image).unwrap(),
        );
        assert_identical(x.mean, y.mean, &format!("{dtype:?} VAE"));
    }
}
