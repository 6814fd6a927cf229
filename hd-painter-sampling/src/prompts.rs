//! The prompts a run is given, encoded as the guidance pair ([`TextConditioning`]): in the
//! plain syntax (diffusers': one 77-token window, truncated) or Automatic1111's weighted and
//! chunked syntax ([`PromptSyntax::Weighted`]).

use burn::tensor::Tensor;
use hd_painter_models::{StableDiffusionModels, WeightedTokens, parse_weighted};

use crate::conditioning::{TextConditioning, TextTimeConditioning};
use crate::error::Result;
use crate::focus::{
    HD_PAINTER_NEGATIVE_PROMPT, HD_PAINTER_POSITIVE_PROMPT, full_prompt, prompt_token_indices,
};

/// How prompt text becomes text embeddings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PromptSyntax {
    /// As diffusers' pipelines: the text as written, one 77-token window (truncated); with
    /// SDXL's two encoders, their pooled embedding too, and the empty negative prompt as zeros
    /// where the folder says `force_zeros_for_empty_prompt`.
    #[default]
    Plain,
    /// Automatic1111's: `(word:1.3)`, `(word)`, `[word]`, escapes and `BREAK`, prompts of any
    /// length in 77-token chunks ([`StableDiffusionModels::encode_weighted`]); the shorter of
    /// the prompt and the negative prompt is padded with chunks of the empty prompt (A1111's
    /// `pad_cond_uncond`, compel's padding) so that both guidance halves run in one batch.
    Weighted,
}

impl PromptSyntax {
    /// The guidance pair: `"{prompt}, {positive}"` (the prompt alone when `positive` is empty)
    /// and `negative`. The prompt tokens PAIntA and RASG use are the user prompt's own plus
    /// the end-of-text token after the full prompt: in the weighted syntax, the positions the
    /// prompt's tokens take in the chunks (so they follow its weights and chunking; the
    /// positive prompt is parsed on its own, so an unclosed bracket of the prompt does not
    /// weight it) and the end-of-text that closes the positive prompt's last chunk.
    pub fn encode(
        self,
        models: &StableDiffusionModels,
        prompt: &str,
        positive: &str,
        negative: &str,
    ) -> Result<TextConditioning> {
        if self == Self::Plain {
            let full = full_prompt(prompt, positive);
            let (embeds, negative) = (
                models.encode_text(&full)?,
                models.encode_negative(negative)?,
            );
            let aesthetics = models
                .sdxl
                .as_ref()
                .map(|s| s.flags.requires_aesthetics_score);
            let pooled = embeds.pooled.zip(negative.pooled).zip(aesthetics);
            return Ok(TextConditioning {
                positive: embeds.context,
                negative: negative.context,
                prompt_tokens: prompt_token_indices(&models.tokenizer, prompt, &full),
                text_time: pooled.map(|((positive, negative), aesthetics)| TextTimeConditioning {
                    positive,
                    negative,
                    aesthetics,
                    time_ids: None,
                }),
            });
        }
        let mut parts = vec![parse_weighted(prompt)?];
        if !positive.is_empty() {
            parts.push(parse_weighted(&format!(", {positive}"))?);
        }
        let tokens = WeightedTokens::new(&models.tokenizer, &parts);
        let unconditional = WeightedTokens::new(&models.tokenizer, &[parse_weighted(negative)?]);
        // A1111's empty chunk: the weighted layout of "" (77 ids whatever the tokenizer's length).
        let empty = WeightedTokens::new(&models.tokenizer, &[parse_weighted("")?]);
        let empty = models.encode_weighted(&empty)?;
        let pad = |z: Tensor<3>, chunks: usize| {
            let missing = chunks - z.dims()[1] / empty.dims()[1];
            let mut all = vec![z];
            all.extend(std::iter::repeat_n(empty.clone(), missing));
            Tensor::cat(all, 1)
        };
        let chunks = tokens.chunks().max(unconditional.chunks());
        let mut prompt_tokens = tokens.positions_of(0);
        prompt_tokens.push(tokens.end_of_text());
        Ok(TextConditioning {
            positive: pad(models.encode_weighted(&tokens)?, chunks),
            negative: pad(models.encode_weighted(&unconditional)?, chunks),
            prompt_tokens,
            text_time: None,
        })
    }
}

/// The guidance pair for `prompt` and `negative`, encoded with the folder's tokenizer and text
/// encoder.
pub fn encode_prompts(
    models: &StableDiffusionModels,
    prompt: &str,
    negative: &str,
) -> Result<TextConditioning> {
    encode_prompts_with_positive(models, prompt, "", negative)
}

/// The guidance pair with a positive prompt appended to the prompt as HD-Painter does
/// (`"{prompt}, {positive}"`, [`full_prompt`]); the prompt tokens PAIntA and RASG use are the
/// user prompt's own plus the end-of-text token of the full prompt.
pub fn encode_prompts_with_positive(
    models: &StableDiffusionModels,
    prompt: &str,
    positive: &str,
    negative: &str,
) -> Result<TextConditioning> {
    PromptSyntax::Plain.encode(models, prompt, positive, negative)
}

/// HD-Painter's prompts: its positive prompt appended, its negative prompt.
pub fn encode_hd_painter_prompts(
    models: &StableDiffusionModels,
    prompt: &str,
) -> Result<TextConditioning> {
    encode_prompts_with_positive(
        models,
        prompt,
        HD_PAINTER_POSITIVE_PROMPT,
        HD_PAINTER_NEGATIVE_PROMPT,
    )
}
