//! Original-layout single-file checkpoints (`fixtures/models/single_file`, fp16 as published):
//! built by `tools/reference` from the tiny components and proven there by diffusers' own
//! `single_file_utils` converters to map back onto the diffusers weights. The goldens are
//! diffusers models built from those converted weights: UNet, VAE decode and text encoder
//! outputs within 1e-4. One file is SD 2-like (9-channel UNet, OpenCLIP text tower with an
//! extra unused layer), one SD 1.5-like (4-channel UNet, CLIP's transformers layout); both load
//! with the same 9-channel config folder, the channels taken from the checkpoint. One is SDXL
//! inpainting in Stability's layout (`tools/reference/sdxl.py`, group `sdxl_single_file`): the
//! UNet with its added embedding, CLIP and OpenCLIP with its projection under
//! `conditioner.embedders.*`, loaded with the SDXL folder's configs.

mod common;

use std::path::PathBuf;

use burn::tensor::Tensor;
use common::{Golden, device, model_dir};
use hd_painter_models::{
    Conditions, DefaultAttention, ModelSource, ModelsError, StableDiffusionModels,
};

fn checkpoint(name: &str) -> PathBuf {
    model_dir("single_file").join(format!("{name}.safetensors"))
}

fn check(name: &str, channels: usize) {
    let device = device();
    let models = StableDiffusionModels::load_single_file(
        checkpoint(name),
        model_dir("pipeline_inpaint"),
        &device,
    )
    .unwrap();
    assert_eq!(models.unet.in_channels(), channels, "{name}");
    let g = Golden::open("single_file", "outputs.safetensors");
    let sample = g.tensor::<4>(if channels == 9 { "sample9" } else { "sample4" }, &device);
    let context = g.tensor::<3>("encoder_hidden_states", &device);
    let eps = models
        .unet
        .forward(
            sample,
            &[500.0],
            &context,
            Conditions::default(),
            &mut DefaultAttention::default(),
        )
        .unwrap();
    g.assert_close(eps, &format!("{name}.unet"), name);
    let decoded = models.vae.decode(g.tensor("z", &device)).unwrap();
    g.assert_close(decoded, &format!("{name}.decoded"), name);
    let text = models
        .text_encoder
        .forward(g.int_tensor("ids", &device))
        .unwrap();
    g.assert_close(text.last_hidden_state, &format!("{name}.text"), name);
}

#[test]
fn an_sd2_inpainting_checkpoint_matches_diffusers_conversion() {
    check("sd2_inpainting", 9);
}

#[test]
fn a_4_channel_sd15_checkpoint_loads_with_an_inpainting_config() {
    check("sd15_4ch", 4);
}

#[test]
fn an_sdxl_inpainting_checkpoint_matches_diffusers_conversion() {
    let device = device();
    let source = ModelSource::SingleFile {
        checkpoint: checkpoint("sdxl_inpaint"),
        config: model_dir("pipeline_sdxl_inpaint"),
    };
    let models = StableDiffusionModels::from_source(&source, None, &device).unwrap();
    assert_eq!(models.unet.in_channels(), 9);
    let g = Golden::open("single_file", "sdxl_outputs.safetensors");
    let embeds: Tensor<2> = g.tensor("text_embeds", &device);
    let ids: Vec<f32> = g.get("time_ids").1.iter().map(|&v| v as f32).collect();
    let eps = models
        .unet
        .forward(
            g.tensor("sample", &device),
            &[500.0],
            &g.tensor("context", &device),
            Conditions::text_time(&embeds, &ids),
            &mut DefaultAttention::default(),
        )
        .unwrap();
    g.assert_close(eps, "unet", "SDXL UNet");
    let decoded = models.vae.decode(g.tensor("z", &device)).unwrap();
    g.assert_close(decoded, "decoded", "SDXL VAE");
    let text = models
        .text_encoder
        .forward(g.int_tensor("ids", &device))
        .unwrap();
    g.assert_close(text.last_hidden_state, "text", "SDXL CLIP");
    let second = models.sdxl.as_ref().expect("the second encoder");
    let text_2 = second
        .text_encoder_2
        .forward(g.int_tensor("ids", &device))
        .unwrap();
    g.assert_close(text_2.last_hidden_state, "text_2", "SDXL OpenCLIP");
    let projected = text_2.text_embeds.expect("the projection");
    g.assert_close(projected, "text_2.embeds", "SDXL OpenCLIP projection");
}

#[test]
fn sdxl_files_and_sd_folders_do_not_mix() {
    let device = device();
    let cases = [
        (
            "sd2_inpainting",
            "pipeline_sdxl_inpaint",
            "SD 1.x / 2.x's one",
        ),
        ("sdxl_inpaint", "pipeline_inpaint", "SDXL's two"),
    ];
    for (file, config, found) in cases {
        let err =
            StableDiffusionModels::load_single_file(checkpoint(file), model_dir(config), &device)
                .unwrap_err();
        assert!(
            matches!(&err, ModelsError::Incompatible { what, reason }
                if what.contains(file) && reason.contains(found) && reason.contains(config)),
            "{file} with {config}: {err}"
        );
    }
}

#[test]
fn the_source_parser_routes_files_folders_and_hub_ids() {
    let config = model_dir("pipeline_inpaint");
    let file = checkpoint("sd2_inpainting");
    assert_eq!(
        ModelSource::parse(file.to_str().unwrap(), Some(&config)).unwrap(),
        ModelSource::SingleFile {
            checkpoint: file.clone(),
            config: config.clone()
        }
    );
    assert!(matches!(
        ModelSource::parse(file.to_str().unwrap(), None),
        Err(ModelsError::Malformed { .. })
    ));
    assert_eq!(
        ModelSource::parse("some/folder", None).unwrap(),
        ModelSource::Folder("some/folder".into())
    );
    match ModelSource::parse("hub:stabilityai/stable-diffusion-2-inpainting@fp16", None).unwrap() {
        ModelSource::Hub(hub) => {
            assert_eq!(hub.id, "stabilityai/stable-diffusion-2-inpainting");
            assert_eq!(hub.revision, "fp16");
        }
        other => panic!("{other:?}"),
    }
    let models = StableDiffusionModels::from_source(
        &ModelSource::parse(file.to_str().unwrap(), Some(&config)).unwrap(),
        None,
        &device(),
    )
    .unwrap();
    assert_eq!(models.pipeline, "StableDiffusionInpaintPipeline");
}

/// Writes `tensors` (name, shape) as an f16 safetensors file of zeros.
fn write(name: &str, tensors: &[(&str, Vec<usize>)]) -> PathBuf {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, s)| {
            (
                k.to_string(),
                s.clone(),
                vec![0u8; 2 * s.iter().product::<usize>()],
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(k, s, d)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), d)
                .unwrap();
            (k.clone(), view)
        })
        .collect();
    let path =
        std::env::temp_dir().join(format!("hd-painter-single-{}-{name}", std::process::id()));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

#[test]
fn broken_checkpoints_are_typed_errors_naming_the_file() {
    let device = device();
    let config = model_dir("pipeline_inpaint");
    let load = |path: &PathBuf| StableDiffusionModels::load_single_file(path, &config, &device);

    // Pickled checkpoints are refused by extension, before reading.
    let ckpt = std::env::temp_dir().join("model.ckpt");
    let err = load(&ckpt).unwrap_err();
    assert!(err.to_string().contains("convert_to_safetensors"), "{err}");
    assert!(
        matches!(&err, ModelsError::Pickle { path } if *path == ckpt),
        "{err}"
    );
    let other = std::env::temp_dir().join("model.onnx");
    let err = load(&other).unwrap_err();
    assert!(err.to_string().contains(".safetensors only"), "{err}");

    // A missing file.
    let missing = std::env::temp_dir().join("no-such-checkpoint.safetensors");
    assert!(matches!(load(&missing), Err(ModelsError::Io { path, .. }) if path == missing));

    // Not safetensors at all, and a truncated real one.
    let garbage = write("garbage.safetensors", &[]);
    std::fs::write(&garbage, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot json").unwrap();
    assert!(matches!(load(&garbage), Err(ModelsError::Malformed { path, .. }) if path == garbage));
    let bytes = std::fs::read(checkpoint("sd2_inpainting")).unwrap();
    let truncated = write("truncated.safetensors", &[]);
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        load(&truncated),
        Err(ModelsError::Malformed { .. })
    ));

    // A VAE-only file: no UNet.
    let vae_only = write(
        "vae-only.safetensors",
        &[("first_stage_model.quant_conv.weight", vec![8, 8, 1, 1])],
    );
    let err = load(&vae_only).unwrap_err();
    assert!(
        err.to_string()
            .contains("model.diffusion_model.input_blocks.0.0.weight"),
        "{err}"
    );

    // A UNet with one tensor of the wrong shape: the weight error names the key and the shapes.
    let wrong = write(
        "wrong-shape.safetensors",
        &[
            (
                "model.diffusion_model.input_blocks.0.0.weight",
                vec![16, 9, 3, 3],
            ),
            ("model.diffusion_model.input_blocks.0.0.bias", vec![17]),
            ("first_stage_model.quant_conv.weight", vec![8, 8, 1, 1]),
            (
                "cond_stage_model.transformer.text_model.final_layer_norm.weight",
                vec![32],
            ),
        ],
    );
    match load(&wrong).unwrap_err() {
        ModelsError::Weights {
            path,
            mismatched,
            missing,
            ..
        } => {
            assert_eq!(path, wrong);
            assert!(!missing.is_empty());
            let bias = mismatched
                .iter()
                .find(|m| m.key == "conv_in.bias")
                .unwrap_or_else(|| panic!("{mismatched:?}"));
            assert!(
                bias.detail.contains("[16]") && bias.detail.contains("[17]"),
                "{}",
                bias.detail
            );
        }
        other => panic!("{other}"),
    }
}

#[test]
fn training_leftovers_in_a_checkpoint_are_ignored() {
    // EMA weights, schedule buffers and the autoencoder's loss, as training checkpoints carry.
    let bytes = std::fs::read(checkpoint("sd2_inpainting")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let zeros = vec![0u8; 2 * 4];
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    for key in [
        "first_stage_model.loss.logvar",
        "model_ema.num_updates",
        "betas",
    ] {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![4], &zeros).unwrap();
        views.push((key.to_string(), view));
    }
    let path = std::env::temp_dir().join(format!(
        "hd-painter-single-{}-leftovers.safetensors",
        std::process::id()
    ));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let models =
        StableDiffusionModels::load_single_file(&path, model_dir("pipeline_inpaint"), &device())
            .unwrap();
    assert_eq!(models.unet.in_channels(), 9);
}
