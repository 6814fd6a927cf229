//! CLIP text encoder parity with transformers' `CLIPTextModel` on tiny random-weight models
//! built by `tools/reference/generate.py` (3 layers, 4 heads, width 32, batch 2, one prompt padded
//! with the end token and one empty prompt padded with 0): last hidden state, penultimate hidden
//! state and pooled output within 1e-4 * max(1, max|ref|), for quick_gelu (SD 1.x) and gelu
//! (SD 2.x), from f32, f16 and bf16 weight files; `CLIPTextModelWithProjection`'s projected
//! pooled output (SDXL's second encoder).

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{Golden, device, model_dir};
use hd_painter_models::{ClipTextModel, ModelsError};
use safetensors::{Dtype, SafeTensors};

fn check(name: &str, variant: Option<&str>) {
    let device = device();
    let model = ClipTextModel::load(model_dir(name), variant, &device).unwrap();
    let file = match variant {
        Some(v) => format!("outputs.{v}.safetensors"),
        None => "outputs.safetensors".into(),
    };
    let g = Golden::open(name, &file);
    let out = model.forward(g.int_tensor("input_ids", &device)).unwrap();
    let what = format!("{name} {variant:?}");
    g.assert_close(out.last_hidden_state, "last_hidden_state", &what);
    g.assert_close(
        out.penultimate_hidden_state,
        "penultimate_hidden_state",
        &what,
    );
    g.assert_close(out.pooled, "pooler_output", &what);
}

/// `CLIPTextModelWithProjection` (SDXL's second encoder): the hidden states and the projected
/// pooled output (`text_embeds`, pooled at the largest id as its `eos_token_id = 2` says); a
/// plain `CLIPTextModel` folder has no projection.
#[test]
fn projection_encoder_matches_transformers() {
    let device = device();
    let model = ClipTextModel::load(model_dir("clip_projection"), None, &device).unwrap();
    let g = Golden::open("clip_projection", "outputs.safetensors");
    let out = model.forward(g.int_tensor("input_ids", &device)).unwrap();
    g.assert_close(
        out.last_hidden_state,
        "last_hidden_state",
        "clip_projection",
    );
    g.assert_close(
        out.penultimate_hidden_state,
        "penultimate_hidden_state",
        "clip_projection",
    );
    let embeds = out.text_embeds.expect("a projection");
    g.assert_close(embeds, "text_embeds", "clip_projection");
    let plain = ClipTextModel::load(model_dir("clip_gelu"), None, &device).unwrap();
    let ids = g.int_tensor("input_ids", &device);
    assert!(plain.forward(ids).unwrap().text_embeds.is_none());
}

#[test]
fn token_ids_outside_the_vocabulary_are_refused() {
    let device = device();
    let model = ClipTextModel::load(model_dir("clip_gelu"), None, &device).unwrap();
    let ids =
        Tensor::<2, Int>::from_data(TensorData::new(vec![510i64, 49407, 511], [1, 3]), &device);
    let err = model.forward(ids).unwrap_err();
    assert!(err.to_string().contains("49407"), "{err}");
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
    let device = device();
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

fn scratch_copy(tag: &str) -> std::path::PathBuf {
    common::scratch_copy("clip_gelu", tag, &["config.json", "model.safetensors"])
}

#[test]
fn broken_folders_give_typed_errors() {
    let device = device();

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
