//! Token ids against transformers' `CLIPTokenizer` on the real CLIP BPE vocabulary (built by
//! `tools/reference/generate.py` from open_clip's `bpe_simple_vocab_16e6.txt.gz`), for 320
//! prompts: punctuation, numbers, accents, CJK and other scripts, emoji, repeated whitespace,
//! special tokens in the text, very long prompts and the empty prompt. Tolerance: exact.

use std::path::PathBuf;

use hd_painter_models::{ClipTokenizer, ModelsError};
use safetensors::SafeTensors;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizer")
}

fn golden(key: &str) -> (Vec<usize>, Vec<i64>) {
    let bytes = std::fs::read(dir().join("ids.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor(key).unwrap();
    let values = view
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (view.shape().to_vec(), values)
}

fn prompts() -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(dir().join("prompts.json")).unwrap()).unwrap()
}

#[test]
fn ids_match_transformers_for_every_prompt() {
    let prompts = prompts();
    assert!(prompts.len() >= 300);
    let eos =
        ClipTokenizer::from_files(dir().join("vocab.json"), dir().join("merges.txt")).unwrap();
    let bang = eos.clone().with_pad_token("!").unwrap();
    for (tokenizer, key) in [(eos.clone(), "pad_eos"), (bang, "pad_bang")] {
        let (shape, ids) = golden(key);
        assert_eq!(shape, [prompts.len(), 77]);
        for (prompt, expected) in prompts.iter().zip(ids.chunks_exact(77)) {
            let got: Vec<i64> = tokenizer
                .encode_padded(prompt)
                .into_iter()
                .map(i64::from)
                .collect();
            assert_eq!(got, expected, "{key}: {prompt:?}");
        }
    }
    let (_, lengths) = golden("lengths");
    for (prompt, &n) in prompts.iter().zip(&lengths) {
        assert_eq!(
            eos.encode(prompt).len() as i64,
            n,
            "unpadded length of {prompt:?}"
        );
    }
}

#[test]
fn special_ids_and_folder_settings() {
    let t = ClipTokenizer::from_dir(dir()).unwrap();
    assert_eq!((t.bos_id(), t.eos_id(), t.pad_id()), (49406, 49407, 49407));
    assert_eq!(t.encode(""), [49406, 49407]);
    assert_eq!(t.token(49407), Some("<|endoftext|>"));
    assert_eq!(t.max_length(), 77);
}

#[test]
fn bad_folders_are_typed_errors() {
    let scratch = std::env::temp_dir().join(format!("hd-painter-tok-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let missing = ClipTokenizer::from_dir(&scratch).unwrap_err();
    assert!(
        matches!(&missing, ModelsError::Io { path, .. } if path.ends_with("vocab.json")),
        "{missing}"
    );

    std::fs::write(scratch.join("vocab.json"), "[1, 2]").unwrap();
    std::fs::write(scratch.join("merges.txt"), "#version: 0.2\na b\n").unwrap();
    let err = ClipTokenizer::from_dir(&scratch).unwrap_err();
    assert!(
        matches!(&err, ModelsError::Malformed { path, .. } if path.ends_with("vocab.json")),
        "{err}"
    );

    std::fs::write(
        scratch.join("vocab.json"),
        r#"{"a": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}"#,
    )
    .unwrap();
    std::fs::write(scratch.join("merges.txt"), "#version: 0.2\na b c\n").unwrap();
    let err = ClipTokenizer::from_dir(&scratch).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");

    std::fs::write(scratch.join("merges.txt"), "a b\n").unwrap();
    let t = ClipTokenizer::from_dir(&scratch).unwrap();
    assert!(matches!(
        t.with_pad_token("!"),
        Err(ModelsError::Incompatible { .. })
    ));
}

/// A folder as transformers 5 saves it (tokenizer.json only) reads like the published layout
/// (vocab.json + merges.txt) of the same tokenizer, and gives transformers' ids.
#[test]
fn tokenizer_json_folders_read_like_vocab_and_merges() {
    let pipeline = dir().join("../models/pipeline_inpaint");
    let from_json = ClipTokenizer::from_dir(pipeline.join("tokenizer_json")).unwrap();
    let from_files = ClipTokenizer::from_dir(pipeline.join("tokenizer")).unwrap();
    assert_eq!((from_json.pad_id(), from_json.vocab_size()), (0, 512));
    for prompt in prompts() {
        assert_eq!(
            from_json.encode_padded(&prompt),
            from_files.encode_padded(&prompt),
            "{prompt:?}"
        );
    }
    // And the ids transformers gave for "a red sofa!" with this tokenizer.
    let bytes = std::fs::read(pipeline.join("prompts.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ids: Vec<u32> = st
        .tensor("input_ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .take(77)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    assert_eq!(from_json.encode_padded("a red sofa!"), ids);
}
