//! guided-diffusion's `UNetModel` (the official RePaint checkpoints' model) against the official
//! code's own model on tiny random-weight configs built by its `create_model` and converted by
//! `tools/convert_guided_diffusion.py` (`tools/reference/repaint_pixel.py`): learned sigma,
//! scale-shift norm, up/down resnets, fixed head width and class labels; plain resamplers, head
//! counts and the new attention order. Outputs within 1e-4 * max(1, max|ref|).

mod common;

use burn::tensor::Tensor;
use common::{Golden, check_pixel_model, device, model_dir, scratch_copy};
use hd_painter_models::{GuidedUnet, ModelsError, PixelDenoiser};

fn check(name: &str) -> GuidedUnet {
    let device = device();
    let unet = GuidedUnet::load(model_dir(name), &device).unwrap();
    check_pixel_model(&unet, name, unet.config().num_classes.is_some());
    unet
}

#[test]
fn repaint_like_model_matches_the_official_code() {
    let unet = check("guided_repaint");
    let cfg = unet.config();
    assert!(unet.learned_variance());
    assert_eq!(cfg.attention_rates, vec![1, 2]);
    assert_eq!(cfg.num_classes, Some(1000));
    assert_eq!(cfg.heads(32, true), 2);
    assert_eq!(unet.sample_size(), Some(16));
}

#[test]
fn plain_resamplers_and_new_attention_order_match_the_official_code() {
    let unet = check("guided_plain");
    let cfg = unet.config();
    assert!(!unet.learned_variance());
    assert!(cfg.use_new_attention_order && !cfg.resblock_updown);
    assert_eq!((cfg.heads(32, false), cfg.heads(32, true)), (2, 4));
}

#[test]
fn wrong_inputs_and_configs_are_typed_errors() {
    let device = device();
    let unet = GuidedUnet::load(model_dir("guided_repaint"), &device).unwrap();
    let x = Tensor::<4>::zeros([1, 3, 16, 16], &device);
    let err = |r: hd_painter_models::Result<Tensor<4>>| r.unwrap_err().to_string();
    assert!(err(unet.forward(x.clone(), &[3.0], None)).contains("class labels"));
    let odd = Tensor::<4>::zeros([1, 3, 15, 16], &device);
    assert!(err(unet.forward(odd, &[3.0], Some(&[1]))).contains("multiples of 2"));
    let plain = GuidedUnet::load(model_dir("guided_plain"), &device).unwrap();
    assert!(err(plain.forward(x, &[3.0], Some(&[1]))).contains("not class-conditional"));

    let files = ["config.json", "model.safetensors"];
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir("guided_repaint").join("config.json")).unwrap(),
    )
    .unwrap();
    for (i, (key, value)) in [
        ("channel_mult", serde_json::json!("1,x")),
        ("num_channels", 24.into()),
        ("num_head_channels", 12.into()),
        ("attention_resolutions", "".into()),
        ("image_size", serde_json::Value::Null),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = scratch_copy("guided_repaint", &format!("cfg{i}"), &files);
        let mut changed = config.clone();
        changed[key] = value;
        std::fs::write(dir.join("config.json"), changed.to_string()).unwrap();
        match GuidedUnet::load(&dir, &device).unwrap_err() {
            ModelsError::UnsupportedConfig { path, .. } => assert!(path.ends_with("config.json")),
            other => panic!("{key}: {other}"),
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
    // The weights of the other architecture.
    let dir = scratch_copy("guided_repaint", "weights", &["config.json"]);
    std::fs::copy(
        model_dir("guided_plain").join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let e = GuidedUnet::load(&dir, &device).unwrap_err();
    assert!(matches!(e, ModelsError::Weights { .. }), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn fp16_weights_load_and_compute_in_f32() {
    // RePaint's ImageNet config sets `use_fp16`: weights stored in f16 load widened to f32.
    let bytes = std::fs::read(model_dir("guided_repaint").join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let halves: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .flat_map(|b| {
                    let v = f32::from_le_bytes(b.try_into().unwrap());
                    half::f16::from_f32(v).to_le_bytes()
                })
                .collect();
            (name, view.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = halves
        .iter()
        .map(|(n, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, shape.clone(), data);
            (n.clone(), view.unwrap())
        })
        .collect();
    let dir = scratch_copy("guided_repaint", "fp16", &["config.json"]);
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let device = device();
    let unet = GuidedUnet::load(&dir, &device).unwrap();
    let g = Golden::open("guided_repaint", "outputs.safetensors");
    let timesteps: Vec<f32> = g.get("timesteps").1.iter().map(|&t| t as f32).collect();
    let labels: Vec<i64> = g.get("labels").1.iter().map(|&l| l as i64).collect();
    let out = unet
        .forward(g.tensor("sample", &device), &timesteps, Some(&labels))
        .unwrap();
    // Only the weights' rounding (11-bit mantissa) is left.
    g.assert_within(out, "output", 5e-3, 1.0, "fp16 weights");
    std::fs::remove_dir_all(dir).unwrap();
}
