//! SDXL's text side: the second tokenizer and text encoder of its pipeline folders and the flags
//! of their `model_index.json`, and the two-encoder prompt encoding diffusers'
//! `StableDiffusionXL*Pipeline.encode_prompt` performs.

use std::path::Path;

use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};

use crate::clip::ClipTextModel;
use crate::config::ConfigFile;
use crate::error::{ModelsError, Result};
use crate::tokenizer::ClipTokenizer;
use crate::unet::Unet2DConditionModel;

/// The flags of an SDXL `model_index.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdxlFlags {
    /// `force_zeros_for_empty_prompt` (SDXL base and inpainting: true): without a negative
    /// prompt, the negative half is zeros rather than the encoded empty prompt.
    pub force_zeros_for_empty_prompt: bool,
    /// `requires_aesthetics_score` (the refiner: true): the time ids end with an aesthetic score
    /// instead of the target size (five ids, not six).
    pub requires_aesthetics_score: bool,
}

impl SdxlFlags {
    /// The flags of `index`, with diffusers' SDXL inpainting pipeline defaults.
    pub(crate) fn read(index: &ConfigFile) -> Result<Self> {
        Ok(Self {
            force_zeros_for_empty_prompt: index.bool_or("force_zeros_for_empty_prompt", true)?,
            requires_aesthetics_score: index.bool_or("requires_aesthetics_score", false)?,
        })
    }

    /// The number of micro-conditioning time ids per image.
    pub fn time_ids(&self) -> usize {
        match self.requires_aesthetics_score {
            true => 5,
            false => 6,
        }
    }
}

/// SDXL's second text encoder (OpenCLIP ViT-bigG, a `CLIPTextModelWithProjection`) with its
/// tokenizer, and the pipeline's flags.
#[derive(Clone, Debug)]
pub struct SdxlText {
    /// `tokenizer_2/` (pads with "!").
    pub tokenizer_2: ClipTokenizer,
    /// `text_encoder_2/`.
    pub text_encoder_2: ClipTextModel,
    /// The flags of `model_index.json`.
    pub flags: SdxlFlags,
}

impl SdxlText {
    /// Loads `dir/tokenizer_2` and `dir/text_encoder_2` (the `variant` weights where given, stored
    /// in `dtype`); the encoder must have its projection (`CLIPTextModelWithProjection`), whose
    /// output is the pooled embedding the UNet's added embedding takes.
    pub(crate) fn load(
        dir: &Path,
        (variant, dtype): (Option<&str>, FloatDType),
        flags: SdxlFlags,
        device: &Device,
    ) -> Result<Self> {
        let text_encoder_2 = ClipTextModel::load_with_weight_dtype(
            dir.join("text_encoder_2"),
            variant,
            dtype,
            device,
        )?;
        Self::from_parts(dir, text_encoder_2, flags)
    }

    /// The second encoder `text_encoder_2` (loaded from anywhere) with `dir/tokenizer_2`; the
    /// encoder must have its projection, and `dir/text_encoder_2/config.json` is named if not.
    pub(crate) fn from_parts(
        dir: &Path,
        text_encoder_2: ClipTextModel,
        flags: SdxlFlags,
    ) -> Result<Self> {
        if text_encoder_2.projection_dim().is_none() {
            return Err(ModelsError::Malformed {
                path: dir.join("text_encoder_2").join("config.json"),
                reason: "SDXL's second text encoder must be a CLIPTextModelWithProjection \
                         (`architectures`, `projection_dim`)"
                    .to_string(),
            });
        }
        Ok(Self {
            tokenizer_2: ClipTokenizer::from_dir(dir.join("tokenizer_2"))?,
            text_encoder_2,
            flags,
        })
    }

    /// Checks that the second encoder fits the first and the UNet: its tokenizer within its
    /// vocabulary, both encoders' widths adding up to the UNet's `cross_attention_dim`, the
    /// pooled width plus the time ids filling the UNet's `text_time` embedding.
    pub(crate) fn check(
        &self,
        first: &ClipTextModel,
        unet: &Unet2DConditionModel,
        origin: &Path,
    ) -> Result<()> {
        let malformed = |reason: String| ModelsError::Malformed {
            path: origin.to_path_buf(),
            reason,
        };
        let encoder = &self.text_encoder_2;
        let (vocab, embeddings) = (self.tokenizer_2.vocab_size(), encoder.vocab_size());
        if vocab > embeddings {
            return Err(malformed(format!(
                "tokenizer_2 has {vocab} tokens but text_encoder_2 embeds only {embeddings}"
            )));
        }
        let (a, b, cross) = (
            first.hidden_size(),
            encoder.hidden_size(),
            unet.cross_attention_dim(),
        );
        if a + b != cross {
            return Err(malformed(format!(
                "the text encoders' widths {a} + {b} differ from the UNet's cross_attention_dim \
                 {cross}"
            )));
        }
        let pooled = encoder.projection_dim().unwrap_or(0);
        let Some(text_time) = unet.text_time() else {
            return Err(malformed(
                "an SDXL pipeline needs a UNet with `addition_embed_type: \"text_time\"`".into(),
            ));
        };
        let ids = self.flags.time_ids();
        if pooled + ids * text_time.time_embed_dim != text_time.input_dim {
            return Err(malformed(format!(
                "the UNet's projection_class_embeddings_input_dim {} is not the pooled width \
                 {pooled} + {ids} time ids x addition_time_embed_dim {} (requires_aesthetics_score \
                 = {})",
                text_time.input_dim, text_time.time_embed_dim, self.flags.requires_aesthetics_score
            )));
        }
        Ok(())
    }

    /// `prompt`'s penultimate hidden states `[1, 77, width_2]` and pooled projection
    /// `[1, projection]` from the second encoder.
    pub(crate) fn encode(&self, prompt: &str, device: &Device) -> Result<(Tensor<3>, Tensor<2>)> {
        let out = self
            .text_encoder_2
            .forward(token_ids(&self.tokenizer_2, prompt, device))?;
        let pooled = out.text_embeds.ok_or_else(|| ModelsError::Incompatible {
            what: "SDXL prompt encoding".into(),
            reason: "text_encoder_2 has no projection".into(),
        })?;
        Ok((out.penultimate_hidden_state, pooled))
    }

    /// This encoder with its weights and activations in `dtype`.
    pub(crate) fn with_dtype(self, dtype: FloatDType) -> Self {
        Self {
            text_encoder_2: self.text_encoder_2.with_dtype(dtype),
            ..self
        }
    }

    /// This encoder with its weights stored in `dtype`, computing in f32.
    pub(crate) fn with_weight_dtype(self, dtype: FloatDType) -> Self {
        Self {
            text_encoder_2: self.text_encoder_2.with_weight_dtype(dtype),
            ..self
        }
    }
}

/// `prompt`'s ids `[1, length]` as `tokenizer` pads and truncates them.
pub(crate) fn token_ids(
    tokenizer: &ClipTokenizer,
    prompt: &str,
    device: &Device,
) -> Tensor<2, Int> {
    let ids: Vec<i64> = tokenizer
        .encode_padded(prompt)
        .into_iter()
        .map(i64::from)
        .collect();
    let n = ids.len();
    Tensor::from_data(TensorData::new(ids, [1, n]), device)
}

/// A prompt's text embeddings: the UNet's context and, for SDXL, the pooled projection its added
/// embedding takes.
#[derive(Clone, Debug)]
pub struct PromptEmbeds {
    /// `[1, tokens, cross_attention_dim]`: the text encoder's last hidden state (SD 1.x / 2.x),
    /// or both encoders' penultimate hidden states side by side (SDXL).
    pub context: Tensor<3>,
    /// `[1, projection]`: SDXL's pooled embedding (the second encoder's `text_embeds`).
    pub pooled: Option<Tensor<2>>,
}

impl PromptEmbeds {
    /// Zeros shaped as `self` (SDXL's negative half without a negative prompt).
    pub fn zeros_like(&self) -> Self {
        Self {
            context: self.context.zeros_like(),
            pooled: self.pooled.as_ref().map(Tensor::zeros_like),
        }
    }
}
