//! CLIP text encoder parity with transformers' `CLIPTextModel` on tiny random-weight models
//! built by `tools/reference/generate.py` (3 layers, 4 heads, width 32, batch 2, one prompt padded
//! with the end token and one empty prompt padded with 0): last hidden state, penultimate hidden
//! state and pooled output within 1e-4 * max(1, max|ref|), for quick_gelu (SD 1.x) and gelu
//! (SD 2.x), from f32, f16 and bf16 weight files.

use std::path::PathBuf;

use burn::tensor::{Int, Tensor, TensorData};
use hd_painter_models::{ClipTextModel, ModelsError};
use safetensors::{Dtype, SafeTensors};

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/models")
        .join(name)
}

struct Golden(Vec<u8>);

impl Golden {
    fn open(path: PathBuf) -> Self {
        Self(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    fn get(&self, key: &str) -> (Vec<usize>, Vec<f64>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let view = st.tensor(key).unwrap();
        let values = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            Dtype::I64 => view
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("{key}: unexpected dtype {other:?}"),
        };
        (view.shape().to_vec(), values)
    }
}

fn assert_close(got: Tensor<3>, expected: (Vec<usize>, Vec<f64>), what: &str) {
    assert_eq!(got.dims().to_vec(), expected.0, "{what}: shape");
    let got: Vec<f32> = got.into_data().try_into_vec_as().unwrap();
    let scale = expected.1.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&expected.1)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(
        err <= 1e-4 * scale,
        "{what}: max |diff| = {err:e} (scale {scale})"
    );
}

fn check(name: &str, variant: Option<&str>) {
    let device = hd_painter_core::BackendKind::Flex.device().unwrap();
    let model = ClipTextModel::load(model_dir(name), variant, &device).unwrap();
    let file = match variant {
        Some(v) => format!("outputs.{v}.safetensors"),
        None => "outputs.safetensors".into(),
    };
    let golden = Golden::open(model_dir(name).join(file));
    let (shape, ids) = golden.get("input_ids");
    let ids: Vec<i64> = ids.into_iter().map(|v| v as i64).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
    let out = model.forward(ids).unwrap();
    let what = format!("{name} {variant:?}");
    assert_close(
        out.last_hidden_state,
        golden.get("last_hidden_state"),
        &format!("{what} last"),
    );
    assert_close(
        out.penultimate_hidden_state,
        golden.get("penultimate_hidden_state"),
        &format!("{what} penultimate"),
    );
    assert_close(
        out.pooled.unsqueeze_dim(1),
        {
            let (s, v) = golden.get("pooler_output");
            (vec![s[0], 1, s[1]], v)
        },
        &format!("{what} pooled"),
    );
}

#[test]
fn quick_gelu_encoder_matches_transformers() {
    check("clip_quick_gelu", None);
}

#[test]
fn gelu_encoder_matches_transformers_from_f32_f16_and_bf16_files() {
    for variant in [None, Some("fp16"), Some("bf16")] {
        check("clip_gelu", variant);
    }
}

/// Published SD checkpoints were saved by transformers 4, with every key under `text_model.`
/// and the `position_ids` buffer: the same weights in that layout give the same outputs.
#[test]
fn transformers_4_key_layout_loads() {
    let dir = scratch_copy("prefixed");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let position_ids: Vec<u8> = (0..77i64).flat_map(|i| i.to_le_bytes()).collect();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (format!("text_model.{k}"), v))
        .collect();
    tensors.push((
        "text_model.embeddings.position_ids".into(),
        safetensors::tensor::TensorView::new(Dtype::I64, vec![1, 77], &position_ids).unwrap(),
    ));
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(tensors, None).unwrap(),
    )
    .unwrap();
    let device = hd_painter_core::BackendKind::Flex.device().unwrap();
    let prefixed = ClipTextModel::load(&dir, None, &device).unwrap();
    let plain = ClipTextModel::load(model_dir("clip_gelu"), None, &device).unwrap();
    let ids =
        Tensor::<2, Int>::from_data(TensorData::new(vec![510i64, 5, 7, 511], [1, 4]), &device);
    let a: Vec<f32> = prefixed
        .forward(ids.clone())
        .unwrap()
        .last_hidden_state
        .into_data()
        .try_into_vec_as()
        .unwrap();
    let b: Vec<f32> = plain
        .forward(ids)
        .unwrap()
        .last_hidden_state
        .into_data()
        .try_into_vec_as()
        .unwrap();
    assert_eq!(a, b);
}

fn scratch_copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hd-painter-clip-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(model_dir("clip_gelu").join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn broken_folders_give_typed_errors() {
    let device = hd_painter_core::BackendKind::Flex.device().unwrap();

    let dir = scratch_copy("missing");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = ClipTextModel::load(&dir, None, &device).unwrap_err();
    assert!(
        matches!(&err, ModelsError::Io { path, .. } if path.ends_with("model.safetensors")),
        "{err}"
    );

    let dir = scratch_copy("truncated");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 3]).unwrap();
    let err = ClipTextModel::load(&dir, None, &device).unwrap_err();
    assert!(
        matches!(&err, ModelsError::Malformed { path, .. } if path.ends_with("model.safetensors")),
        "{err}"
    );

    let dir = scratch_copy("config");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"gelu\"", "\"relu\""),
    )
    .unwrap();
    let err = ClipTextModel::load(&dir, None, &device).unwrap_err();
    assert!(
        matches!(&err, ModelsError::UnsupportedConfig { key, .. } if key == "hidden_act"),
        "{err}"
    );

    // A config that disagrees with the weights: every mis-shaped tensor is named at once.
    let dir = scratch_copy("shape");
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"intermediate_size\": 37", "\"intermediate_size\": 40"),
    )
    .unwrap();
    let err = ClipTextModel::load(&dir, None, &device).unwrap_err();
    let ModelsError::Weights {
        mismatched,
        missing,
        unexpected,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(mismatched.len(), 3 * 3, "{err}"); // fc1 weight and bias, fc2 weight, per layer
    assert!(missing.is_empty() && unexpected.is_empty(), "{err}");
    assert!(err.to_string().contains("fc1.weight"), "{err}");

    // One layer fewer: the third layer's tensors are unexpected; one more: they are missing.
    for (layers, field) in [(2, "unexpected"), (4, "missing")] {
        let dir = scratch_copy(field);
        std::fs::write(
            dir.join("config.json"),
            config.replace(
                "\"num_hidden_layers\": 3",
                &format!("\"num_hidden_layers\": {layers}"),
            ),
        )
        .unwrap();
        let err = ClipTextModel::load(&dir, None, &device).unwrap_err();
        let ModelsError::Weights {
            missing,
            unexpected,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        let list = if field == "missing" {
            missing
        } else {
            unexpected
        };
        assert!(list.iter().any(|k| k.contains("layers.")), "{field}: {err}");
    }
}
