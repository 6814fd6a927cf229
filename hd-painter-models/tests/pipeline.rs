//! Loading a whole diffusers pipeline folder: `model_index.json` written by diffusers'
//! `StableDiffusionInpaintPipeline.save_pretrained` for the tiny components, assembled here from
//! their fixture folders.

mod common;

use std::path::{Path, PathBuf};

use common::{device, model_dir};
use hd_painter_models::{ModelsError, StableDiffusionModels};

fn copy(from: &Path, to: &Path, files: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for f in files {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn assemble(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hd-painter-pipeline-{}-{tag}", std::process::id()));
    let index = model_dir("pipeline_inpaint");
    copy(&index, &dir, &["model_index.json"]);
    copy(
        &index.join("scheduler"),
        &dir.join("scheduler"),
        &["scheduler_config.json"],
    );
    // The tiny tokenizer, whose vocabulary fits the tiny text encoder.
    copy(
        &index.join("tokenizer"),
        &dir.join("tokenizer"),
        &["tokenizer_config.json", "vocab.json", "merges.txt"],
    );
    copy(
        &model_dir("clip_gelu"),
        &dir.join("text_encoder"),
        &["config.json", "model.safetensors", "model.fp16.safetensors"],
    );
    let diffusers = ["config.json", "diffusion_pytorch_model.safetensors"];
    copy(
        &model_dir("unet_sd15_inpaint"),
        &dir.join("unet"),
        &diffusers,
    );
    copy(&model_dir("vae_sd"), &dir.join("vae"), &diffusers);
    dir
}

#[test]
fn an_inpainting_pipeline_folder_loads_whole() {
    let models = StableDiffusionModels::load(assemble("ok"), None, &device()).unwrap();
    assert_eq!(models.pipeline, "StableDiffusionInpaintPipeline");
    assert_eq!(models.unet.in_channels(), 9);
    assert_eq!(
        models.unet.cross_attention_dim(),
        models.text_encoder.hidden_size()
    );
    // The saved tokenizer config pads with "!", as SD 2's does.
    assert_eq!(models.tokenizer.pad_id(), 0);
    assert_eq!(models.vae.scaling_factor(), 0.18215);

    // Prompts through the folder's tokenizer and text encoder, as transformers encodes them.
    let g = common::Golden::open("pipeline_inpaint", "prompts.safetensors");
    let (_, ids) = g.get("input_ids");
    let first: Vec<u32> = ids[..77].iter().map(|&v| v as u32).collect();
    assert_eq!(models.tokenizer.encode_padded("a red sofa!"), first);
    let both = burn::tensor::Tensor::cat(
        vec![
            models.encode_prompt("a red sofa!").unwrap(),
            models.encode_prompt("").unwrap(),
        ],
        0,
    );
    g.assert_close(both, "last_hidden_state", "encoded prompts");
}

#[test]
fn a_tokenizer_larger_than_the_text_encoder_is_refused() {
    let dir = assemble("vocab");
    copy(
        &model_dir("../tokenizer"),
        &dir.join("tokenizer"),
        &["vocab.json", "merges.txt"],
    );
    let err = StableDiffusionModels::load(&dir, None, &device()).unwrap_err();
    assert!(err.to_string().contains("49408 tokens"), "{err}");
}

#[test]
fn missing_components_and_variants_are_typed_errors() {
    let dir = assemble("no-vae");
    std::fs::remove_dir_all(dir.join("vae")).unwrap();
    let err = StableDiffusionModels::load(&dir, None, &device()).unwrap_err();
    assert!(
        matches!(&err, ModelsError::Io { path, .. } if path.starts_with(dir.join("vae"))),
        "{err}"
    );

    // Only the text encoder has an fp16 file: the UNet's is named as missing.
    let dir = assemble("fp16");
    let err = StableDiffusionModels::load(&dir, Some("fp16"), &device()).unwrap_err();
    assert!(
        err.to_string()
            .contains("diffusion_pytorch_model.fp16.safetensors"),
        "{err}"
    );

    let dir = assemble("class");
    let index = std::fs::read_to_string(dir.join("model_index.json")).unwrap();
    std::fs::write(
        dir.join("model_index.json"),
        index.replace("StableDiffusionInpaintPipeline", "FluxPipeline"),
    )
    .unwrap();
    let err = StableDiffusionModels::load(&dir, None, &device()).unwrap_err();
    assert!(
        matches!(&err, ModelsError::UnsupportedConfig { key, .. } if key == "_class_name"),
        "{err}"
    );
}
