//! Folders and single files in the layouts the Stable Diffusion repositories were published in
//! (`fixtures/models/published`, written by `tools/reference/published_layouts.py` and proven
//! there to load in diffusers / transformers to exactly their modern twins' weights). Each must
//! give its twin's outputs exactly: the same weights, so 0 difference in f32, through every
//! loading entry point.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use common::{device, model_dir};
use hd_painter_core::seeded_noise;
use hd_painter_models::{
    AutoencoderKl, BrushNetConfig, BrushNetModel, ClipTextConfig, ClipTextModel, Conditions,
    DefaultAttention, ModelSource, ModelsError, StableDiffusionModels, Unet2DConditionModel,
    UnetConfig, VaeConfig, inspect,
};

fn published(name: &str) -> PathBuf {
    model_dir("published").join(name)
}

/// The UNet's prediction, the VAE's decode and the text encoder's hidden state on fixed inputs.
fn outputs(
    unet: &Unet2DConditionModel,
    vae: &AutoencoderKl,
    text: &ClipTextModel,
) -> [TensorData; 3] {
    let device = device();
    let sample = seeded_noise(&[1], [unet.in_channels(), 16, 16], &device);
    let context = seeded_noise(&[2], [77, unet.cross_attention_dim(), 1], &device).reshape([
        1,
        77,
        unet.cross_attention_dim(),
    ]);
    // The x4 upscaler's UNet takes the noise level as a class label.
    let labels: &[i64] = &[20];
    let labels = (unet.in_channels() == 7).then_some(labels);
    let eps = unet
        .forward(
            sample,
            &[500.0],
            &context,
            Conditions::labels(labels),
            &mut DefaultAttention::default(),
        )
        .unwrap();
    let decoded = vae
        .decode(seeded_noise(&[3], [vae.latent_channels(), 8, 8], &device))
        .unwrap();
    let ids: Vec<i64> = (0..77).map(|i| (i * 37 + 5) % 512).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 77]), &device);
    let hidden = text.forward(ids).unwrap().last_hidden_state;
    [eps.into_data(), decoded.into_data(), hidden.into_data()]
}

fn of(models: &StableDiffusionModels) -> [TensorData; 3] {
    outputs(&models.unet, &models.vae, &models.text_encoder)
}

/// The modern fixture components, with their weights rounded to `dtype` (stored back in f32,
/// so that the arithmetic is the f32 path's).
fn twin(unet: &str, vae: &str, text: &str, dtype: Option<FloatDType>) -> [TensorData; 3] {
    let device = device();
    let (mut u, mut v, mut c) = (
        Unet2DConditionModel::load(model_dir(unet), None, &device).unwrap(),
        AutoencoderKl::load(model_dir(vae), None, &device).unwrap(),
        ClipTextModel::load(model_dir(text), None, &device).unwrap(),
    );
    if let Some(d) = dtype {
        u = u.with_weight_dtype(d).with_weight_dtype(FloatDType::F32);
        v = v.with_weight_dtype(d).with_weight_dtype(FloatDType::F32);
        c = c.with_weight_dtype(d).with_weight_dtype(FloatDType::F32);
    }
    outputs(&u, &v, &c)
}

fn assert_same(got: [TensorData; 3], want: [TensorData; 3], what: &str) {
    for (part, (g, w)) in ["unet", "vae decode", "text encoder"]
        .iter()
        .zip(got.into_iter().zip(want))
    {
        assert_eq!(g, w, "{what}: {part} differs from its modern twin");
    }
}

/// Every entry point for a folder: the loader, `ModelSource::parse` and `from_source`.
fn load_everywhere(dir: &Path, variant: Option<&str>) -> StableDiffusionModels {
    let device = device();
    let direct = StableDiffusionModels::load(dir, variant, &device).unwrap();
    let source = ModelSource::parse(dir.to_str().unwrap(), None).unwrap();
    assert_eq!(source, ModelSource::Folder(dir.to_path_buf()));
    let via_source = StableDiffusionModels::from_source(&source, variant, &device).unwrap();
    assert_same(of(&direct), of(&via_source), "from_source");
    direct
}

#[test]
fn sd2_inpainting_2022_matches_its_twin_in_both_of_its_layouts() {
    let dir = published("sd2_inpainting_2022");
    let models = load_everywhere(&dir, None);
    assert_eq!(models.pipeline, "StableDiffusionInpaintPipeline");
    assert_eq!(
        models.vae.scaling_factor(),
        0.18215,
        "the 2022 VAE config's default"
    );
    assert_eq!(
        models.tokenizer.pad_id(),
        0,
        "the 2022 tokenizer config (AddedToken objects beside plain strings)"
    );
    let twin_f32 = twin("unet_hd_painter", "vae_sd", "clip_gelu", None);
    assert_same(of(&models), twin_f32, "sd2 f32 (old VAE names)");
    // The fp16 files are in the current names, beside fp32 ones in the old (a mixed layout).
    let fp16 = load_everywhere(&dir, Some("fp16"));
    let twin_f16 = twin(
        "unet_hd_painter",
        "vae_sd",
        "clip_gelu",
        Some(FloatDType::F16),
    );
    assert_same(of(&fp16), twin_f16, "sd2 fp16 variant");

    let (scheduler, config) = &models.schedulers[0];
    assert_eq!(
        (scheduler.as_str(), config.class_name.as_str()),
        ("scheduler", "PNDMScheduler")
    );
    assert_eq!((config.steps_offset, config.beta_end), (1, 0.012));
    assert!(config.keys.iter().any(|k| k == "skip_prk_steps"));
    assert_eq!(
        models.ignored,
        [
            r#"feature_extractor = ["transformers","CLIPFeatureExtractor"]"#,
            "requires_safety_checker = false",
            "safety_checker = [null,null]",
        ]
    );
    assert!(format!("{models:?}").contains("CLIPFeatureExtractor"));
}

#[test]
fn sd15_inpainting_2022_matches_its_twin_also_in_bf16_old_names() {
    let dir = published("sd15_inpainting_2022");
    let models = load_everywhere(&dir, None);
    let twin_f32 = twin("unet_sd15_inpaint", "vae_sd", "clip_quick_gelu", None);
    assert_same(of(&models), twin_f32, "sd15 f32");
    assert!(
        models.ignored[1].starts_with(r#"safety_checker = ["stable_diffusion""#),
        "{:?}",
        models.ignored
    );
    // Only the VAE has a bf16 file (in the old names), as a component folder loads it.
    let device = device();
    let vae = AutoencoderKl::load(dir.join("vae"), Some("bf16"), &device).unwrap();
    let twin = AutoencoderKl::load(model_dir("vae_sd"), None, &device)
        .unwrap()
        .with_weight_dtype(FloatDType::BF16)
        .with_weight_dtype(FloatDType::F32);
    let z = seeded_noise(&[3], [4, 8, 8], &device);
    assert_eq!(
        vae.decode(z.clone()).unwrap().into_data(),
        twin.decode(z).unwrap().into_data()
    );
}

#[test]
fn the_x4_upscaler_2022_matches_its_twin() {
    let dir = published("x4_upscaler_2022");
    let models = load_everywhere(&dir, None);
    assert_eq!(models.pipeline, "StableDiffusionUpscalePipeline");
    assert_eq!(models.vae.scaling_factor(), 0.08333);
    let names: Vec<&str> = models.schedulers.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["low_res_scheduler", "scheduler"]);
    assert_eq!(models.ignored, ["max_noise_level = 350"]);
    assert_same(
        of(&models),
        twin("unet_x4", "vae_x4", "clip_gelu", None),
        "x4",
    );
}

#[test]
fn a_community_fine_tune_in_diffusers_0_21_format_matches_its_twin() {
    let dir = published("dreamshaper8_inpainting");
    let models = load_everywhere(&dir, None);
    assert_eq!(models.schedulers[0].1.class_name, "DEISMultistepScheduler");
    assert_same(
        of(&models),
        twin("unet_sd15_inpaint", "vae_sd", "clip_quick_gelu", None),
        "dreamshaper f32",
    );
    let fp16 = load_everywhere(&dir, Some("fp16"));
    assert_same(
        of(&fp16),
        twin(
            "unet_sd15_inpaint",
            "vae_sd",
            "clip_quick_gelu",
            Some(FloatDType::F16),
        ),
        "dreamshaper fp16",
    );
}

#[test]
fn brushnets_released_folder_matches_its_twin() {
    let device = device();
    let release = published("brushnet_release/segmentation_mask_brushnet_ckpt");
    let config = BrushNetConfig::from_file(release.join("config.json")).unwrap();
    assert_eq!(
        config,
        BrushNetConfig::from_file(model_dir("brushnet").join("config.json")).unwrap()
    );
    let ours = BrushNetModel::load(&release, None, &device).unwrap();
    let twin = BrushNetModel::load(model_dir("brushnet"), None, &device).unwrap();
    let sample = seeded_noise(&[1], [4, 16, 16], &device);
    let condition = seeded_noise(&[2], [5, 16, 16], &device);
    let context = seeded_noise(&[3], [77, 32, 1], &device).reshape([1, 77, 32]);
    let run = |m: &BrushNetModel| {
        m.forward(sample.clone(), &[300.0], &context, condition.clone(), 1.0)
            .unwrap()
            .mid
            .into_data()
    };
    assert_eq!(run(&ours), run(&twin));
}

#[test]
fn sd15_inpaintings_original_single_file_matches_its_twin() {
    let device = device();
    let file = published("single/sd15_inpainting_2022.safetensors");
    let config = published("sd15_inpainting_2022");
    let direct = StableDiffusionModels::load_single_file(&file, &config, &device).unwrap();
    let source = ModelSource::parse(file.to_str().unwrap(), Some(&config)).unwrap();
    let via_source = StableDiffusionModels::from_source(&source, None, &device).unwrap();
    let twin = twin(
        "unet_sd15_inpaint",
        "vae_sd",
        "clip_quick_gelu",
        Some(FloatDType::F16),
    );
    assert_same(of(&via_source), twin.clone(), "single file via ModelSource");
    assert_same(of(&direct), twin, "single file");
}

#[test]
fn the_x4_upscalers_original_single_file_matches_its_twin() {
    let device = device();
    let models = StableDiffusionModels::load_single_file(
        published("single/x4_upscaler.safetensors"),
        published("x4_upscaler_2022"),
        &device,
    )
    .unwrap();
    assert_eq!(models.unet.in_channels(), 7);
    assert_same(
        of(&models),
        twin("unet_x4", "vae_x4", "clip_gelu", Some(FloatDType::F16)),
        "x4 single file",
    );
}

#[test]
fn single_file_vaes_and_unets_load_alone_and_match_their_twins() {
    let device = device();
    let config = model_dir("vae_sd");
    let twin = AutoencoderKl::load(&config, None, &device)
        .unwrap()
        .with_weight_dtype(FloatDType::F16)
        .with_weight_dtype(FloatDType::F32);
    let z = seeded_noise(&[3], [4, 8, 8], &device);
    let want = twin.decode(z.clone()).unwrap().into_data();
    for file in [
        "single/vae_ft_mse.safetensors",
        "single/sd15_inpainting_2022.safetensors",
    ] {
        let vae = AutoencoderKl::load_single_file(published(file), &config, &device).unwrap();
        assert_eq!(vae.decode(z.clone()).unwrap().into_data(), want, "{file}");
    }
    // The UNet alone, as `UNet2DConditionModel.from_single_file` reads it.
    let unet = Unet2DConditionModel::load_single_file(
        published("single/sd15_inpainting_2022.safetensors"),
        published("sd15_inpainting_2022/unet"),
        &device,
    )
    .unwrap();
    let twin_unet = Unet2DConditionModel::load(model_dir("unet_sd15_inpaint"), None, &device)
        .unwrap()
        .with_weight_dtype(FloatDType::F16)
        .with_weight_dtype(FloatDType::F32);
    let text = ClipTextModel::load(model_dir("clip_quick_gelu"), None, &device).unwrap();
    assert_eq!(
        outputs(&unet, &twin, &text)[0],
        outputs(&twin_unet, &twin, &text)[0],
        "the UNet of a single file"
    );
    // A UNet-only file has no VAE: every tensor is named as unexpected.
    let err = AutoencoderKl::load_single_file(
        model_dir("unet_sd2/diffusion_pytorch_model.safetensors"),
        &config,
        &device,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ModelsError::Weights { unexpected, .. } if !unexpected.is_empty()),
        "{err}"
    );
}

#[test]
fn sharded_checkpoints_load_whole_and_a_missing_shard_is_named() {
    let device = device();
    let dir = published("sharded");
    let (unet, text) = (
        Unet2DConditionModel::load(dir.join("unet"), Some("fp16"), &device).unwrap(),
        ClipTextModel::load(dir.join("text_encoder"), None, &device).unwrap(),
    );
    let vae = AutoencoderKl::load(model_dir("vae_sd"), None, &device).unwrap();
    let [eps, _, _] = outputs(&unet, &vae, &text);
    let [want, _, _] = twin(
        "unet_hd_painter",
        "vae_sd",
        "clip_gelu",
        Some(FloatDType::F16),
    );
    assert_eq!(eps, want, "sharded fp16 UNet");
    let [_, _, hidden] = outputs(&unet, &vae, &text);
    let [_, _, want] = twin("unet_hd_painter", "vae_sd", "clip_gelu", None);
    assert_eq!(hidden, want, "sharded text encoder");

    // One shard gone: the loader names it; a weight map pointing outside the folder is refused.
    let broken = std::env::temp_dir().join(format!("hd-painter-shards-{}", std::process::id()));
    std::fs::create_dir_all(&broken).unwrap();
    for f in [
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00003.safetensors",
    ] {
        std::fs::copy(dir.join("text_encoder").join(f), broken.join(f)).unwrap();
    }
    let err = ClipTextModel::load(&broken, None, &device).unwrap_err();
    assert!(
        matches!(&err, ModelsError::Io { path, .. } if path.ends_with("model-00002-of-00003.safetensors")),
        "{err}"
    );
    let index = broken.join("model.safetensors.index.json");
    std::fs::write(&index, r#"{"weight_map": {"a": "../../etc/passwd"}}"#).unwrap();
    let err = ClipTextModel::load(&broken, None, &device).unwrap_err();
    assert!(
        matches!(&err, ModelsError::Malformed { path, .. } if *path == index),
        "{err}"
    );
}

#[test]
fn early_configs_take_the_classes_defaults_and_present_keys_stay_strict() {
    let dir = std::env::temp_dir().join(format!("hd-painter-early-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, json: &str| {
        let path = dir.join(name);
        std::fs::write(&path, json).unwrap();
        path
    };
    // A config with no keys at all is SD 1.x's UNet, as diffusers builds it.
    let unet = UnetConfig::from_file(write("unet.json", "{}")).unwrap();
    assert_eq!(unet.block_out_channels(), [320, 640, 1280, 1280]);
    assert_eq!((unet.in_channels, unet.cross_attention_dim), (4, 1280));
    assert!(unet.levels.iter().all(|l| l.heads == 8));
    let attention: Vec<bool> = unet.levels.iter().map(|l| l.down_attention).collect();
    assert_eq!(attention, [true, true, true, false]);
    assert_eq!(
        unet,
        UnetConfig::default(),
        "diffusers' constructor defaults"
    );
    let vae = VaeConfig::from_file(write("vae.json", "{}")).unwrap();
    assert_eq!(
        (vae.block_out_channels.clone(), vae.scaling_factor),
        (vec![64], 0.18215)
    );
    let clip = ClipTextConfig::from_file(write("clip.json", "{}")).unwrap();
    assert_eq!((clip.hidden_size, clip.eos_token_id), (512, 49407));
    // A whole CLIPConfig: transformers reads its `text_config`.
    let nested = write(
        "clipconfig.json",
        r#"{"model_type": "clip", "text_config": {"hidden_size": 64, "num_attention_heads": 4}}"#,
    );
    assert_eq!(ClipTextConfig::from_file(nested).unwrap().hidden_size, 64);
    // Present keys are checked as before.
    for (name, json, key) in [
        ("bad-unet.json", r#"{"in_channels": "nine"}"#, "in_channels"),
        (
            "bad-mid.json",
            r#"{"mid_block_type": null}"#,
            "mid_block_type",
        ),
        ("bad-vae.json", r#"{"act_fn": "gelu"}"#, "act_fn"),
    ] {
        let path = write(name, json);
        let err = match name {
            "bad-vae.json" => VaeConfig::from_file(&path).unwrap_err(),
            _ => UnetConfig::from_file(&path).unwrap_err(),
        };
        assert!(
            matches!(&err, ModelsError::UnsupportedConfig { key: k, path: p, .. } if k == key && *p == path),
            "{name}: {err}"
        );
    }
    // BrushNet's fork defaults to a mid block with attention, which its releases do not use.
    let err = BrushNetConfig::from_file(write("brushnet.json", "{}")).unwrap_err();
    assert!(err.to_string().contains("UNetMidBlock2D"), "{err}");
}

#[test]
fn pickled_weights_and_unused_components_are_reported_not_read() {
    let device = device();
    let dir = std::env::temp_dir().join(format!("hd-painter-pickle-{}", std::process::id()));
    let unet = dir.join("unet");
    std::fs::create_dir_all(&unet).unwrap();
    std::fs::copy(model_dir("unet_sd2/config.json"), unet.join("config.json")).unwrap();
    // Never opened: its extension is enough.
    std::fs::write(unet.join("diffusion_pytorch_model.bin"), b"PK\x03\x04").unwrap();
    let err = Unet2DConditionModel::load(&unet, None, &device).unwrap_err();
    assert!(
        matches!(&err, ModelsError::Pickle { path } if *path == unet.join("diffusion_pytorch_model.bin")),
        "{err}"
    );
    assert!(
        err.to_string().contains("tools/convert_to_safetensors.py"),
        "{err}"
    );
    std::fs::write(unet.join("diffusion_pytorch_model.fp16.bin"), b"PK").unwrap();
    let err = Unet2DConditionModel::load(&unet, Some("fp16"), &device).unwrap_err();
    assert!(
        matches!(&err, ModelsError::Pickle { path } if path.ends_with("diffusion_pytorch_model.fp16.bin")),
        "{err}"
    );
}

#[test]
fn inspect_reports_the_layouts_schedulers_and_fits() {
    let device = device();
    let dir = published("sd2_inpainting_2022");
    let report = inspect(&ModelSource::Folder(dir.clone()), None, &device).unwrap();
    let text = report.to_string();
    for expected in [
        "StableDiffusionInpaintPipeline",
        "layout: pre-0.17 VAE attention names",
        "layout: transformers 4 layout (`text_model.` prefix)",
        "config defaults used: scaling_factor",
        "scheduler: PNDMScheduler (scaled_linear",
        "ignored: safety_checker = [null,null]",
        "UNet input channels: 9",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let vae = report.components.iter().find(|c| c.name == "vae").unwrap();
    assert_eq!(vae.dtypes.keys().collect::<Vec<_>>(), ["F32"]);
    let fp16 = inspect(&ModelSource::Folder(dir.clone()), Some("fp16"), &device).unwrap();
    let vae = fp16.components.iter().find(|c| c.name == "vae").unwrap();
    assert!(
        vae.conversions.is_empty(),
        "the fp16 VAE is in the current names"
    );
    assert!(vae.dtypes.contains_key("F16"));

    let single = ModelSource::SingleFile {
        checkpoint: published("single/sd15_inpainting_2022.safetensors"),
        config: published("sd15_inpainting_2022"),
    };
    let text = inspect(&single, None, &device).unwrap().to_string();
    assert!(text.contains("original single-file layout"), "{text}");

    // A broken folder: the loader's own error.
    let err = inspect(&ModelSource::Folder(dir.join("missing")), None, &device).unwrap_err();
    assert!(matches!(err, ModelsError::Io { .. }), "{err}");
}
