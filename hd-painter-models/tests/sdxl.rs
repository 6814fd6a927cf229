//! SDXL pipeline folders: the tiny `StableDiffusionXLInpaintPipeline` folder
//! (`tools/reference/sdxl.py`, group `sdxl_pipeline`) loads whole, its two tokenizers and text
//! encoders encode prompts as diffusers' `encode_prompt` does (within 1e-4 * max(1, max|ref|)),
//! and folders whose parts do not fit are typed errors.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::FloatDType;
use common::{Golden, device, model_dir};
use hd_painter_models::{ModelsError, SdxlFlags, StableDiffusionModels};

fn sdxl() -> StableDiffusionModels {
    StableDiffusionModels::load(model_dir("pipeline_sdxl_inpaint"), None, &device()).unwrap()
}

/// A scratch copy of the SDXL folder, `edit` applied to its `model_index.json` and the component
/// folders taken from `components` (`(name, fixture folder)`) where it names them.
fn variant(tag: &str, edit: impl Fn(&str) -> String, components: &[(&str, &str)]) -> PathBuf {
    let src = model_dir("pipeline_sdxl_inpaint");
    let dir = std::env::temp_dir().join(format!("hd-painter-sdxl-{}-{tag}", std::process::id()));
    let index = std::fs::read_to_string(src.join("model_index.json")).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model_index.json"), edit(&index)).unwrap();
    for part in [
        "scheduler",
        "tokenizer",
        "tokenizer_2",
        "text_encoder",
        "text_encoder_2",
        "unet",
        "vae",
    ] {
        let from = match components.iter().find(|(name, _)| *name == part) {
            Some((_, fixture)) => model_dir(fixture),
            None => src.join(part),
        };
        copy_dir(&from, &dir.join(part));
    }
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn an_sdxl_inpainting_folder_loads_whole() {
    let models = sdxl();
    assert_eq!(models.pipeline, "StableDiffusionXLInpaintPipeline");
    let second = models.sdxl.as_ref().expect("SDXL's second encoder");
    let flags = SdxlFlags {
        force_zeros_for_empty_prompt: true,
        requires_aesthetics_score: false,
    };
    assert_eq!(second.flags, flags);
    // OpenAI CLIP's tokenizer pads with the end token, OpenCLIP's with "!".
    assert_eq!(models.tokenizer.pad_id(), models.tokenizer.eos_id());
    assert_eq!(second.tokenizer_2.pad_id(), 0);
    assert_eq!(second.text_encoder_2.projection_dim(), Some(24));
    assert_eq!(models.vae.scaling_factor(), 0.13025);
    assert!(models.vae.force_upcast());
    let used = [
        "text_encoder_2",
        "tokenizer_2",
        "force_zeros",
        "requires_aesthetics",
    ];
    for entry in &models.ignored {
        assert!(!used.iter().any(|u| entry.starts_with(u)), "{entry}");
    }
}

#[test]
fn prompts_match_diffusers_encode_prompt() {
    let (models, g) = (
        sdxl(),
        Golden::open("pipeline_sdxl_inpaint", "prompts.safetensors"),
    );
    let prompt = models.encode_text("a red sofa!").unwrap();
    assert_eq!(prompt.context.dims(), [1, 77, 64]);
    g.assert_close(prompt.context, "negative.prompt_embeds", "SDXL prompt");
    g.assert_close(prompt.pooled.unwrap(), "negative.pooled", "SDXL pooled");
    let negative = models.encode_negative("blurry, low quality").unwrap();
    let what = "SDXL negative prompt";
    g.assert_close(negative.context, "negative.negative_prompt_embeds", what);
    g.assert_close(negative.pooled.unwrap(), "negative.negative_pooled", what);
    // No negative prompt: zeros, as `force_zeros_for_empty_prompt` makes them.
    let zeros = models.encode_negative("").unwrap();
    let what = "SDXL zero negative";
    g.assert_close(zeros.context, "zeros.negative_prompt_embeds", what);
    g.assert_close(zeros.pooled.unwrap(), "zeros.negative_pooled", what);
    // The weighted syntax encodes for one text encoder.
    let tokens = hd_painter_models::WeightedTokens::new(&models.tokenizer, &[]);
    let err = models.encode_weighted(&tokens).unwrap_err();
    assert!(err.to_string().contains("two"), "{err}");
}

#[test]
fn sdxl_folders_whose_parts_do_not_fit_are_refused() {
    let load = |dir: PathBuf| StableDiffusionModels::load(dir, None, &device()).unwrap_err();
    // The second encoder missing from model_index.json.
    let dir = variant(
        "no-encoder-2",
        |i| i.replace("\"text_encoder_2\"", "\"unused\""),
        &[],
    );
    let err = load(dir);
    assert!(
        matches!(&err, ModelsError::UnsupportedConfig { key, .. } if key == "text_encoder_2"),
        "{err}"
    );
    // A second encoder without its projection.
    let err = load(variant(
        "no-projection",
        str::to_string,
        &[("text_encoder_2", "clip_gelu")],
    ));
    assert!(
        err.to_string().contains("CLIPTextModelWithProjection"),
        "{err}"
    );
    // The refiner's five time ids on a UNet made for six.
    let aesthetics = |i: &str| {
        i.replace(
            "\"requires_aesthetics_score\": false",
            "\"requires_aesthetics_score\": true",
        )
    };
    let err = load(variant("aesthetics", aesthetics, &[]));
    assert!(err.to_string().contains("5 time ids"), "{err}");
    // An SD 1.x / 2.x UNet under SDXL's encoders, and SDXL's UNet under one encoder.
    let err = load(variant(
        "sd-unet",
        str::to_string,
        &[("unet", "unet_sd15_inpaint")],
    ));
    assert!(err.to_string().contains("cross_attention_dim"), "{err}");
    let one_encoder = |i: &str| {
        i.replace(
            "StableDiffusionXLInpaintPipeline",
            "StableDiffusionInpaintPipeline",
        )
    };
    let err = load(variant("one-encoder", one_encoder, &[]));
    assert!(err.to_string().contains("text_time"), "{err}");
}

/// diffusers' SDXL pipelines keep a `force_upcast` VAE (SDXL's published one overflows in f16)
/// in f32 beside f16 models; the published fp16-fix VAE (`madebyollin/sdxl-vae-fp16-fix`,
/// `force_upcast: false`) runs in f16 with them.
#[test]
fn the_sdxl_vae_stays_f32_in_f16_unless_it_is_the_fp16_fix() {
    let half = sdxl().with_dtype(FloatDType::F16);
    assert_eq!(half.unet.dtype(), FloatDType::F16);
    assert_eq!(half.vae.dtype(), FloatDType::F32);
    let dir = variant("fp16-fix", str::to_string, &[]);
    let config = dir.join("vae").join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let fixed = text.replace("\"force_upcast\": true", "\"force_upcast\": false");
    assert_ne!(fixed, text);
    std::fs::write(&config, fixed).unwrap();
    let models = StableDiffusionModels::load(&dir, None, &device()).unwrap();
    assert!(!models.vae.force_upcast());
    let half = models.with_dtype(FloatDType::F16);
    assert_eq!(half.vae.dtype(), FloatDType::F16);
}

/// The estimate's weights are the bytes the weight files hold (f32 fixtures: every tensor a
/// parameter), halved for the components stored in bf16; its working sets grow with the pixels
/// (the VAE's at least four times for twice the side) and the images.
#[test]
fn the_memory_estimate_counts_the_weight_files_and_grows_with_the_size() {
    let dir = model_dir("pipeline_sdxl_inpaint");
    let tensor_bytes = |component: &str, file: &str| {
        let bytes = std::fs::read(dir.join(component).join(file)).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        bytes.len() as u64 - 8 - header
    };
    let (unet, vae) = (
        tensor_bytes("unet", "diffusion_pytorch_model.safetensors"),
        tensor_bytes("vae", "diffusion_pytorch_model.safetensors"),
    );
    let text = tensor_bytes("text_encoder", "model.safetensors")
        + tensor_bytes("text_encoder_2", "model.safetensors");
    let models = sdxl();
    let small = models.memory_estimate([32, 48], 1, true);
    assert_eq!(small.weights, unet + vae + text);
    let large = models.memory_estimate([64, 96], 1, true);
    assert_eq!(large.weights, small.weights);
    // The pixels' share four times, the latent attention's scores sixteen.
    assert!(
        large.vae_decode >= 4 * small.vae_decode,
        "{small:?} {large:?}"
    );
    assert!(
        large.vae_encode >= 4 * small.vae_encode,
        "{small:?} {large:?}"
    );
    assert!(large.unet_step > 3 * small.unet_step, "{small:?} {large:?}");
    let phases = [large.vae_encode, large.unet_step, large.vae_decode];
    assert_eq!(
        large.peak(),
        large.weights + phases.into_iter().max().unwrap()
    );
    let two = models.memory_estimate([32, 48], 2, true);
    assert_eq!(two.vae_decode, 2 * small.vae_decode);
    let unguided = models.memory_estimate([32, 48], 1, false);
    assert!(unguided.unet_step < small.unet_step);
    let bf16 = models.with_weight_dtype(FloatDType::BF16);
    let half = bf16.memory_estimate([32, 48], 1, true);
    assert_eq!(half.weights, small.weights / 2);
    assert!(
        half.to_string().starts_with("0.00 GiB (weights 0.00 GiB"),
        "{half}"
    );
}
