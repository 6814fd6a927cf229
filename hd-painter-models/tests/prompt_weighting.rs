//! Automatic1111's prompt syntax against its semantics as the harness writes them out
//! (`tools/reference/customise.py`, group `prompt_weighting`, whose parser reproduces the
//! reference docstring's examples): for 51 prompts with weights, nesting, escapes, unbalanced
//! brackets, `BREAK`, several chunks and commas near a chunk's end, the ids and weights of every
//! chunk exactly (with the real CLIP vocabulary and with the tiny pipeline's tokenizer), and the
//! tiny text encoder's weighted hidden states within 1e-4.

mod common;

use common::{Golden, device, model_dir};
use hd_painter_models::{
    ClipTokenizer, StableDiffusionModels, TokenOrigin, WeightedTokens, parse_weighted,
};

fn prompts() -> Vec<String> {
    let path = model_dir("prompt_weighting").join("prompts.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn layout(tokenizer: &ClipTokenizer, prompt: &str) -> WeightedTokens {
    WeightedTokens::new(tokenizer, &[parse_weighted(prompt).unwrap()])
}

fn check_layout(g: &Golden, name: &str, tokenizer: &ClipTokenizer) {
    for (i, prompt) in prompts().iter().enumerate() {
        let tokens = layout(tokenizer, prompt);
        let (shape, ids) = g.get(&format!("{name}.{i}.ids"));
        let ids: Vec<u32> = ids.into_iter().map(|v| v as u32).collect();
        assert_eq!(tokens.chunks(), shape[0], "{name} {prompt:?}: chunks");
        // The reference pads with end-of-text ids; the pad id follows the first one when the
        // text encoder gets them (its `process_tokens`), as ours lays them out directly.
        let padded: Vec<u32> = ids
            .chunks(77)
            .flat_map(|c| {
                let end = c.iter().position(|&t| t == tokenizer.eos_id()).unwrap();
                let pad = |(j, &t): (usize, &u32)| if j > end { tokenizer.pad_id() } else { t };
                c.iter().enumerate().map(pad).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(tokens.ids, padded, "{name} {prompt:?}: ids");
        let weights = g.get(&format!("{name}.{i}.weights")).1;
        assert_eq!(tokens.weights, weights, "{name} {prompt:?}: weights");
    }
}

#[test]
fn chunks_and_weights_match_automatic1111_with_the_clip_vocabulary() {
    let g = Golden::open("prompt_weighting", "weighted.safetensors");
    let dir = model_dir("../tokenizer");
    let tokenizer =
        ClipTokenizer::from_files(dir.join("vocab.json"), dir.join("merges.txt")).unwrap();
    check_layout(&g, "full", &tokenizer);
}

#[test]
fn weighted_hidden_states_match_automatic1111_on_the_tiny_pipeline() {
    let (g, device) = (
        Golden::open("prompt_weighting", "weighted.safetensors"),
        device(),
    );
    let models = StableDiffusionModels::load(model_dir("pipeline_sd"), None, &device).unwrap();
    check_layout(&g, "tiny", &models.tokenizer);
    for (i, prompt) in prompts().iter().enumerate() {
        let hidden = models
            .encode_weighted(&layout(&models.tokenizer, prompt))
            .unwrap();
        g.assert_close(hidden, &format!("tiny.{i}.hidden"), prompt);
    }
}

#[test]
fn a_plain_prompt_in_one_chunk_encodes_as_the_plain_encoder() {
    let device = device();
    let models = StableDiffusionModels::load(model_dir("pipeline_sd"), None, &device).unwrap();
    let prompt = "a red sofa, high quality";
    let plain = models.encode_prompt(prompt).unwrap();
    let weighted = models
        .encode_weighted(&layout(&models.tokenizer, prompt))
        .unwrap();
    let diff: f32 = (plain - weighted).abs().max().into_scalar();
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn origins_mark_each_part_and_the_end_of_text_follows_the_last_token() {
    let dir = model_dir("../tokenizer");
    let tokenizer =
        ClipTokenizer::from_files(dir.join("vocab.json"), dir.join("merges.txt")).unwrap();
    let parts = [
        parse_weighted("a (red:1.2) sofa").unwrap(),
        parse_weighted(", high quality").unwrap(),
    ];
    let tokens = WeightedTokens::new(&tokenizer, &parts);
    assert_eq!(tokens.positions_of(0), [1, 2, 3]);
    assert_eq!(tokens.positions_of(1), [4, 5, 6]);
    assert_eq!(tokens.end_of_text(), 7);
    assert_eq!(tokens.origins[0], TokenOrigin::Frame);
    assert_eq!(tokens.weights[2], 1.2);
    let empty = WeightedTokens::new(&tokenizer, &[parse_weighted("").unwrap()]);
    assert_eq!((empty.chunks(), empty.end_of_text()), (1, 1));
    // A second chunk: positions continue past the first 77.
    let long = layout(&tokenizer, &"cat ".repeat(80));
    assert_eq!(long.chunks(), 2);
    assert_eq!(long.positions_of(0).len(), 80);
    assert_eq!(long.end_of_text(), 77 + 1 + 5);
}
