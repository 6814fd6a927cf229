//! LoRA files fused into the tiny pipelines against diffusers' `load_lora_weights` +
//! `fuse_lora` (`tools/reference/customise.py`, group `lora`): a kohya-ss file (f16 factors,
//! LoCon on 3x3 convolutions, per-layer alphas) and a PEFT file (metadata alphas, an alpha
//! pattern) on the 4-channel pipeline with linear projections, both at once at two scales, and
//! a kohya file on the 9-channel one with 1x1-convolution projections: the text encoder's and
//! the UNet's outputs within 1e-4. Unfusing gives the base outputs back; files that do not fit
//! are typed errors and change nothing.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::Device;
use common::{Golden, device, model_dir};
use hd_painter_models::{
    Conditions, DefaultAttention, Lora, LoraComponent, LoraFormat, ModelsError,
    StableDiffusionModels,
};
use safetensors::tensor::TensorView;

fn golden() -> Golden {
    Golden::open("lora", "lora.safetensors")
}

fn lora(name: &str) -> Lora {
    Lora::open(model_dir("lora").join(format!("{name}.safetensors"))).unwrap()
}

fn pipeline(name: &str, device: &Device) -> StableDiffusionModels {
    let folder = if name == "sd" {
        "pipeline_sd"
    } else {
        "pipeline_inpaint"
    };
    StableDiffusionModels::load(model_dir(folder), None, device).unwrap()
}

/// The text encoder's and the UNet's outputs for the golden inputs of `case` (`sd` /
/// `inpaint`), against the golden `{case}.{what}.hidden` / `.unet`.
fn check(models: &StableDiffusionModels, g: &Golden, case: &str, what: &str) {
    let device = models.unet.device();
    let ids = g.int_tensor::<2>(&format!("{case}.ids"), &device);
    let hidden = models.text_encoder.forward(ids).unwrap().last_hidden_state;
    g.assert_close(hidden, &format!("{case}.{what}.hidden"), what);
    let sample = g.tensor::<4>(&format!("{case}.sample"), &device);
    let context = g.tensor::<3>(&format!("{case}.context"), &device);
    let t = g.get(&format!("{case}.timestep")).1[0] as f32;
    let out = models
        .unet
        .forward(
            sample,
            &[t, t],
            &context,
            Conditions::default(),
            &mut DefaultAttention::default(),
        )
        .unwrap();
    g.assert_close(out, &format!("{case}.{what}.unet"), what);
}

#[test]
fn kohya_and_peft_files_fuse_as_diffusers_fuses_them() {
    let (g, device) = (golden(), device());
    let kohya = lora("kohya_sd");
    assert_eq!(kohya.format(), LoraFormat::Kohya);
    assert_eq!(kohya.layers()[&LoraComponent::TextEncoder], 5);
    let peft = lora("peft_sd");
    assert_eq!(peft.format(), LoraFormat::Peft);
    let mut models = pipeline("sd", &device);
    check(&models, &g, "sd", "base");
    models.fuse_lora(&kohya, 0.8).unwrap();
    check(&models, &g, "sd", "kohya");
    models.unfuse_lora(&kohya, 0.8).unwrap();
    check(&models, &g, "sd", "base");
    models.fuse_lora(&peft, 1.0).unwrap();
    check(&models, &g, "sd", "peft");
    models.unfuse_lora(&peft, 1.0).unwrap();
    models.fuse_lora(&kohya, 0.6).unwrap();
    models.fuse_lora(&peft, 1.3).unwrap();
    check(&models, &g, "sd", "both");
}

#[test]
fn a_kohya_file_fuses_into_one_by_one_convolution_projections() {
    let (g, device) = (golden(), device());
    let mut models = pipeline("inpaint", &device);
    check(&models, &g, "inpaint", "base");
    models.fuse_lora(&lora("kohya_inpaint"), 0.8).unwrap();
    check(&models, &g, "inpaint", "kohya");
}

#[test]
fn half_precision_weights_take_the_lora_in_f32_and_round_once() {
    let (g, device) = (golden(), device());
    let mut models = pipeline("sd", &device).with_weight_dtype(burn::tensor::FloatDType::BF16);
    models.fuse_lora(&lora("kohya_sd"), 0.8).unwrap();
    let ids = g.int_tensor::<2>("sd.ids", &device);
    let hidden = models.text_encoder.forward(ids).unwrap().last_hidden_state;
    // bf16 keeps 8 bits of mantissa: the fused model within bf16's rounding of the reference.
    g.assert_within(hidden, "sd.kohya.hidden", 5e-2, 1.0, "bf16 fused");
}

/// A layer's down and up keys with their shapes.
fn layer(stem: &str, down: [usize; 2], up: [usize; 2]) -> [(String, Vec<usize>); 2] {
    [
        (format!("{stem}.lora_down.weight"), down.to_vec()),
        (format!("{stem}.lora_up.weight"), up.to_vec()),
    ]
}

/// A LoRA file written from `(key, shape)` pairs of f32 zeros.
fn write_lora(tag: &str, tensors: &[(String, Vec<usize>)]) -> PathBuf {
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()])
        .collect();
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .zip(&data)
        .map(|((k, s), d)| {
            let view = TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap();
            (k.to_string(), view)
        })
        .collect();
    let path = std::env::temp_dir().join(format!(
        "hd-painter-lora-{}-{tag}.safetensors",
        std::process::id()
    ));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

fn weights_error(err: ModelsError) -> (Vec<String>, Vec<String>) {
    match err {
        ModelsError::Weights {
            unexpected,
            mismatched,
            ..
        } => (unexpected, mismatched.into_iter().map(|m| m.key).collect()),
        other => panic!("expected a Weights error, got {other}"),
    }
}

#[test]
fn layers_of_another_model_are_listed_and_nothing_changes() {
    let (g, device) = (golden(), device());
    let mut models = pipeline("sd", &device);
    // SDXL's second text encoder and a transformer block the tiny UNet lacks: no such layers;
    // an attention projection of another width (an SD 1.x LoRA on SD 2): the wrong shape.
    let te2 = layer(
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj",
        [2, 32],
        [32, 2],
    );
    let block = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_7_attn1_to_q";
    let attn = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
    let (block, attn) = (layer(block, [2, 8], [8, 2]), layer(attn, [2, 768], [8, 2]));
    let path = write_lora("foreign", &[te2.as_slice(), &block, &attn].concat());
    // The SDXL text-encoder keys are no layer of SD at all: refused when the file is read.
    let (unexpected, _) = weights_error(Lora::open(&path).unwrap_err());
    assert_eq!(unexpected.len(), 2, "{unexpected:?}");
    assert!(unexpected.iter().all(|k| k.starts_with("lora_te2_")));
    let path = write_lora("other_model", &[block.as_slice(), &attn].concat());
    let err = models
        .fuse_lora(&Lora::open(&path).unwrap(), 1.0)
        .unwrap_err();
    let message = err.to_string();
    let (unexpected, mismatched) = weights_error(err);
    assert_eq!(unexpected, [block[0].0.clone()]);
    assert_eq!(mismatched, [attn[0].0.clone()]);
    assert!(message.contains(&path.display().to_string()), "{message}");
    check(&models, &g, "sd", "base");
    // A file with no LoRA layer at all, and a non-finite scale.
    let empty = write_lora("empty", &[("something_else".into(), vec![3])]);
    assert!(matches!(
        Lora::open(&empty),
        Err(ModelsError::Weights { .. })
    ));
    let kohya = lora("kohya_sd");
    assert!(models.fuse_lora(&kohya, f32::NAN).is_err());
    check(&models, &g, "sd", "base");
    for p in [path, empty] {
        std::fs::remove_file(p).ok();
    }
}

#[test]
fn unmatched_factor_shapes_are_malformed_files() {
    let path = write_lora(
        "pair",
        &[
            (
                "lora_unet_conv_in.lora_down.weight".into(),
                vec![4, 4, 3, 3],
            ),
            ("lora_unet_conv_in.lora_up.weight".into(), vec![8, 2, 1, 1]),
        ],
    );
    let err = Lora::open(&path).unwrap_err();
    assert!(matches!(err, ModelsError::Malformed { .. }), "{err}");
    assert!(
        err.to_string().contains("lora_unet_conv_in.lora_up.weight"),
        "{err}"
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn pickled_files_are_refused() {
    let err = Lora::open("style.pt").unwrap_err();
    assert!(matches!(err, ModelsError::Pickle { .. }), "{err}");
}
