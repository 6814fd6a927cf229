//! Fuzzing the model-side parsers: `config.json` (byte edits and JSON-aware edits: keys removed
//! or given values of every JSON type, zero, negative, huge), safetensors files (edits aimed at
//! the 8-byte length and the JSON header, truncations) through the component loader and the
//! single-file converter, and the tokenizer's `vocab.json` / `merges.txt`. Every input must load
//! or give a typed error, never a panic. CI runs 64 cases per target;
//! `HD_PAINTER_FUZZ_CASES=100000` runs a long campaign (see the README).

mod common;

use std::path::{Path, PathBuf};

use common::{device, model_dir};
use hd_painter_models::{
    ClipTextConfig, ClipTextModel, ClipTokenizer, StableDiffusionModels, UnetConfig, VaeConfig,
};
use proptest::prelude::*;
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("HD_PAINTER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A fresh scratch folder for one case.
fn scratch(tag: &str, case: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hd-painter-fuzz-{}-{tag}-{case}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Byte edits: `(position, bytes)` overwrites, then an optional truncation; positions below
/// `focus` are chosen half of the time (headers are where parsers go wrong).
fn edit_bytes(
    mut bytes: Vec<u8>,
    edits: &[(usize, Vec<u8>)],
    truncate: Option<usize>,
    focus: usize,
) -> Vec<u8> {
    let n = bytes.len().max(1);
    for (at, b) in edits {
        let at = if at % 2 == 0 {
            at % focus.clamp(1, n)
        } else {
            at % n
        };
        for (i, &v) in b.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(at + i) {
                *slot = v;
            }
        }
    }
    if let Some(t) = truncate {
        bytes.truncate(t % n);
    }
    bytes
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(3),
            Just(1 << 20),
            Just((1 << 20) + 1),
            Just(i64::MAX),
            any::<i64>()
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just(0.0f64),
            Just(-0.5),
            Just(1e300),
            Just(f64::MIN_POSITIVE),
            any::<f64>()
        ]
        .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-zA-Z0-9]{0,12}".prop_map(Value::from),
        prop::collection::vec(
            prop_oneof![
                Just(Value::from(0)),
                Just(Value::from(4)),
                Just(Value::from(8)),
                Just(Value::from("CrossAttnDownBlock2D")),
                Just(Value::Null)
            ],
            0..6
        )
        .prop_map(Value::from),
    ]
}

/// A config with `n` keys replaced (or removed when the value is `None`).
fn edit_json(text: &str, edits: &[(usize, Option<Value>)]) -> String {
    let mut json: Value = serde_json::from_str(text).unwrap();
    let map = json.as_object_mut().unwrap();
    for (k, v) in edits {
        let keys: Vec<String> = map.keys().cloned().collect();
        let key = &keys[k % keys.len()];
        match v {
            Some(v) => {
                map.insert(key.clone(), v.clone());
            }
            None => {
                map.remove(key);
            }
        }
    }
    json.to_string()
}

const CONFIGS: [&str; 6] = [
    "unet_sd2",
    "unet_x4",
    "unet_hd_painter",
    "vae_sd",
    "vae_x4",
    "clip_gelu",
];

/// Parses a config with the parser of its kind; any outcome but a panic is fine.
fn parse_config(kind: &str, path: &Path) -> bool {
    if kind.starts_with("unet") {
        UnetConfig::from_file(path).is_ok()
    } else if kind.starts_with("vae") {
        VaeConfig::from_file(path).is_ok()
    } else {
        ClipTextConfig::from_file(path).is_ok()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_json_edits_parse_or_fail_typed(
        which in 0..CONFIGS.len(),
        json_edits in prop::collection::vec((any::<usize>(), prop::option::weighted(0.85, json_value())), 0..5),
        byte_edits in prop::collection::vec((any::<usize>(), prop::collection::vec(any::<u8>(), 1..4)), 0..3),
        case in any::<u64>(),
    ) {
        let kind = CONFIGS[which];
        let text = std::fs::read_to_string(model_dir(kind).join("config.json")).unwrap();
        let edited = edit_bytes(edit_json(&text, &json_edits).into_bytes(), &byte_edits, None, usize::MAX);
        let dir = scratch("config", case);
        let path = dir.join("config.json");
        std::fs::write(&path, edited).unwrap();
        parse_config(kind, &path);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn safetensors_edits_load_or_fail_typed(
        edits in prop::collection::vec((any::<usize>(), prop::collection::vec(any::<u8>(), 1..6)), 1..5),
        truncate in prop::option::weighted(0.2, any::<usize>()),
        case in any::<u64>(),
    ) {
        let src = model_dir("clip_gelu");
        let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let dir = scratch("weights", case);
        std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
        std::fs::write(dir.join("model.safetensors"), edit_bytes(bytes, &edits, truncate, header)).unwrap();
        let _ = ClipTextModel::load(&dir, None, &device());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn single_file_edits_load_or_fail_typed(
        edits in prop::collection::vec((any::<usize>(), prop::collection::vec(any::<u8>(), 1..6)), 1..5),
        truncate in prop::option::weighted(0.2, any::<usize>()),
        case in any::<u64>(),
    ) {
        let bytes = std::fs::read(model_dir("single_file").join("sd2_inpainting.safetensors")).unwrap();
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let dir = scratch("single", case);
        let file = dir.join("model.safetensors");
        std::fs::write(&file, edit_bytes(bytes, &edits, truncate, header)).unwrap();
        let _ = StableDiffusionModels::load_single_file(&file, model_dir("pipeline_inpaint"), &device());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tokenizer_file_edits_load_or_fail_typed(
        vocab_edits in prop::collection::vec((any::<usize>(), prop::collection::vec(any::<u8>(), 1..4)), 0..4),
        merges in prop::collection::vec("[a-z<>/! ]{0,6}", 0..6),
        prompt in "\\PC{0,40}",
        case in any::<u64>(),
    ) {
        let src = model_dir("pipeline_inpaint").join("tokenizer");
        let dir = scratch("tokenizer", case);
        let vocab = std::fs::read(src.join("vocab.json")).unwrap();
        std::fs::write(dir.join("vocab.json"), edit_bytes(vocab, &vocab_edits, None, usize::MAX)).unwrap();
        std::fs::write(dir.join("merges.txt"), format!("#version: 0.2\n{}", merges.join("\n"))).unwrap();
        std::fs::copy(src.join("tokenizer_config.json"), dir.join("tokenizer_config.json")).unwrap();
        if let Ok(tokenizer) = ClipTokenizer::from_dir(&dir) {
            let ids = tokenizer.encode_padded(&prompt);
            prop_assert_eq!(ids.len(), 77);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
