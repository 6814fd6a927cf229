//! Textual inversion against diffusers' `load_textual_inversion` on the tiny 4-channel pipeline
//! (`tools/reference/customise.py`, group `textual_inversion`): a diffusers file with one vector,
//! an Automatic1111 `emb_params` file with three (its token given) and an f16 diffusers file with
//! two. Token ids exactly (plain and weighted syntax), hidden states within 1e-4; a token that
//! is already in the vocabulary or vectors of another width are typed errors.

mod common;

use common::{Golden, device, model_dir};
use hd_painter_models::{
    ModelsError, StableDiffusionModels, TextualInversion, WeightedTokens, parse_weighted,
};

fn embedding(name: &str, token: Option<&str>) -> TextualInversion {
    let path = model_dir("textual_inversion").join(format!("{name}.safetensors"));
    TextualInversion::open(path, token).unwrap()
}

fn loaded() -> StableDiffusionModels {
    let mut models =
        StableDiffusionModels::load(model_dir("pipeline_sd"), None, &device()).unwrap();
    for (name, token) in [
        ("cat_toy", None),
        ("style", Some("<style>")),
        ("multi", None),
    ] {
        models
            .load_textual_inversion(&embedding(name, token))
            .unwrap();
    }
    models
}

#[test]
fn embeddings_load_as_diffusers_loads_them() {
    let g = Golden::open("textual_inversion", "expected.safetensors");
    let models = loaded();
    assert_eq!(models.tokenizer.vocab_size(), 512 + 6);
    assert_eq!(models.text_encoder.vocab_size(), 512 + 6);
    let path = model_dir("textual_inversion").join("prompts.json");
    let prompts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (i, prompt) in prompts.iter().enumerate() {
        let ids: Vec<u32> = g
            .get(&format!("{i}.ids"))
            .1
            .iter()
            .map(|&v| v as u32)
            .collect();
        assert_eq!(models.tokenizer.encode_padded(prompt), ids, "{prompt:?}");
        let hidden = models.encode_prompt(prompt).unwrap();
        g.assert_close(hidden, &format!("{i}.hidden"), prompt);
        let weighted = WeightedTokens::new(&models.tokenizer, &[parse_weighted(prompt).unwrap()]);
        let reference: Vec<u32> = g
            .get(&format!("{i}.weighted_ids"))
            .1
            .iter()
            .map(|&v| v as u32)
            .collect();
        // The tiny tokenizer pads with its own pad id after the first end-of-text.
        let pad = models.tokenizer.pad_id();
        let end = models.tokenizer.eos_id();
        let first_end = reference.iter().position(|&t| t == end).unwrap();
        let reference: Vec<u32> = reference
            .iter()
            .enumerate()
            .map(|(j, &t)| if j > first_end && j < 77 { pad } else { t })
            .collect();
        assert_eq!(weighted.ids, reference, "{prompt:?} weighted");
    }
}

#[test]
fn the_token_defaults_to_the_file_name_for_automatic1111_files() {
    assert_eq!(embedding("style", None).token(), "style");
    assert_eq!(embedding("style", None).vectors(), 3);
    assert_eq!(embedding("cat_toy", None).token(), "<cat-toy>");
}

#[test]
fn a_taken_token_or_another_width_is_refused_and_nothing_changes() {
    let mut models = loaded();
    let before = models.tokenizer.vocab_size();
    let again = models
        .load_textual_inversion(&embedding("cat_toy", None))
        .unwrap_err();
    assert!(matches!(again, ModelsError::Incompatible { .. }), "{again}");
    assert!(again.to_string().contains("<cat-toy>"), "{again}");
    let taken = models
        .load_textual_inversion(&embedding("cat_toy", Some("a</w>")))
        .unwrap_err();
    assert!(matches!(taken, ModelsError::Incompatible { .. }), "{taken}");
    // An embedding for a wider text encoder (SD 1.x's 768 on this 32-wide one).
    let data = vec![0u8; 4 * 48];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![48], &data).unwrap();
    let wide =
        std::env::temp_dir().join(format!("hd-painter-ti-{}.safetensors", std::process::id()));
    std::fs::write(
        &wide,
        safetensors::serialize([("<wide>", view)], None).unwrap(),
    )
    .unwrap();
    let err = models
        .load_textual_inversion(&TextualInversion::open(&wide, None).unwrap())
        .unwrap_err();
    std::fs::remove_file(&wide).ok();
    assert!(matches!(err, ModelsError::Weights { .. }), "{err}");
    assert!(err.to_string().contains("found [1, 48]"), "{err}");
    assert_eq!(models.tokenizer.vocab_size(), before);
    assert_eq!(models.text_encoder.vocab_size(), before);
}

/// diffusers expands a multi-vector token only where the prompt spells it as it was added
/// (`maybe_convert_prompt` replaces the tokenizer's lower-cased token in the raw text), so its
/// `<MV>` gets one vector of two; the tokenizer matches added tokens case-insensitively (as
/// transformers does), and here every spelling stands for all the vectors.
#[test]
fn a_multi_vector_token_expands_whatever_its_case() {
    let models = loaded();
    let lower = models.tokenizer.encode("<mv>");
    assert_eq!(lower, models.tokenizer.encode("<MV>"));
    assert_eq!(lower.len(), 2 + 2);
}
