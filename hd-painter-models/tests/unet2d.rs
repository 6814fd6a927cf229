//! `UNet2DModel` parity with diffusers on tiny random-weight configs (`tools/reference/
//! repaint_pixel.py`): a DDPM-like one in the 2022 layout it was published in (one head,
//! `downsample_padding` 0, legacy attention names), one with learned variance, scale-shift
//! resnets, several heads, a class embedding and a norm-free mid attention, and one with the
//! Fourier time embedding. Outputs within 1e-4 * max(1, max|ref|).

mod common;

use burn::tensor::Tensor;
use common::{check_pixel_model, device, model_dir, scratch_copy};
use hd_painter_models::{ModelsError, PixelDenoiser, TimeProjection, Unet2DConfig, Unet2DModel};

fn check(name: &str) -> Unet2DModel {
    let device = device();
    let unet = Unet2DModel::load(model_dir(name), None, &device).unwrap();
    check_pixel_model(&unet, name, unet.config().num_class_embeds.is_some());
    unet
}

#[test]
fn ddpm_layout_of_2022_matches_diffusers() {
    let unet = check("unet2d_ddpm");
    let cfg = unet.config();
    assert_eq!(cfg.downsample_padding, 0);
    assert_eq!(cfg.attention_head_dim, None);
    assert_eq!(
        cfg.time_projection,
        TimeProjection::Positional {
            flip_sin_to_cos: false,
            freq_shift: 1.0
        }
    );
    assert!(!unet.learned_variance());
    assert_eq!(unet.sample_size(), Some(8));
}

#[test]
fn learned_variance_scale_shift_and_classes_match_diffusers() {
    let unet = check("unet2d_learned");
    assert!(unet.learned_variance());
    assert!(unet.config().scale_shift);
    assert_eq!(unet.config().mid_attention_groups, None);
    assert_eq!(unet.config().heads(32), 4);
}

#[test]
fn fourier_time_embedding_matches_diffusers() {
    let unet = check("unet2d_fourier");
    assert_eq!(unet.config().time_projection, TimeProjection::Fourier);
    assert_eq!(unet.config().mid_block, Some(false));
}

#[test]
fn wrong_inputs_are_typed_errors() {
    let device = device();
    let unet = Unet2DModel::load(model_dir("unet2d_learned"), None, &device).unwrap();
    let ok = Tensor::<4>::zeros([1, 3, 8, 8], &device);
    let err = |r: hd_painter_models::Result<Tensor<4>>| r.unwrap_err().to_string();
    // No labels for a class-conditional model, a wrong count, a grey image, odd sides.
    assert!(err(unet.forward(ok.clone(), &[3.0], None)).contains("class labels"));
    assert!(err(unet.forward(ok.clone(), &[3.0], Some(&[1, 2]))).contains("class labels"));
    assert!(err(unet.forward(ok.clone(), &[3.0, 4.0], Some(&[1]))).contains("timesteps"));
    let grey = Tensor::<4>::zeros([1, 1, 8, 8], &device);
    assert!(err(unet.forward(grey, &[3.0], Some(&[1]))).contains("UNet2DModel input"));
    let odd = Tensor::<4>::zeros([1, 3, 9, 8], &device);
    assert!(err(unet.forward(odd, &[3.0], Some(&[1]))).contains("multiples of 4"));
    let plain = Unet2DModel::load(model_dir("unet2d_ddpm"), None, &device).unwrap();
    assert!(err(plain.forward(ok, &[3.0], Some(&[1]))).contains("not class-conditional"));
}

#[test]
fn unsupported_configs_are_typed_errors() {
    let files = ["config.json", "diffusion_pytorch_model.safetensors"];
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir("unet2d_ddpm").join("config.json")).unwrap(),
    )
    .unwrap();
    let down = serde_json::json!(["SkipDownBlock2D", "AttnDownBlock2D", "DownBlock2D"]);
    let up = serde_json::json!(["UpBlock2D", "AttnSkipUpBlock2D", "UpBlock2D"]);
    for (i, (key, value)) in [
        ("down_block_types", down),
        ("up_block_types", up),
        ("downsample_padding", 2.into()),
        ("act_fn", "gelu".into()),
        ("norm_num_groups", 7.into()),
        ("time_embedding_type", "learned".into()),
        ("resnet_time_scale_shift", "spatial".into()),
        ("downsample_type", "resnet".into()),
        ("upsample_type", "resnet".into()),
        ("class_embed_type", "timestep".into()),
        ("mid_block_type", "UNetMidBlock2DCrossAttn".into()),
        ("attention_head_dim", 5.into()),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = scratch_copy("unet2d_ddpm", &format!("cfg{i}"), &files);
        let mut changed = config.clone();
        changed[key] = value;
        std::fs::write(dir.join("config.json"), changed.to_string()).unwrap();
        let e = Unet2DModel::load(&dir, None, &device()).unwrap_err();
        match &e {
            ModelsError::UnsupportedConfig { key: k, path, .. } => {
                assert_eq!(k, key, "{e}");
                assert!(path.ends_with("config.json"));
            }
            other => panic!("{key}: {other}"),
        }
        assert!(Unet2DConfig::from_file(dir.join("config.json")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn weights_of_another_architecture_are_typed_errors() {
    let dir = scratch_copy("unet2d_ddpm", "weights", &["config.json"]);
    std::fs::copy(
        model_dir("unet2d_fourier").join("diffusion_pytorch_model.safetensors"),
        dir.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let e = Unet2DModel::load(&dir, None, &device()).unwrap_err();
    assert!(matches!(e, ModelsError::Weights { .. }), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}
