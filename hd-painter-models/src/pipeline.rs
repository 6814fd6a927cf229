//! A diffusers Stable Diffusion pipeline folder (`model_index.json` and one folder per
//! component), loaded as a whole.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;

use crate::clip::ClipTextModel;
use crate::config::ConfigFile;
use crate::error::{ModelsError, Result};
use crate::tokenizer::ClipTokenizer;
use crate::unet::Unet2DConditionModel;
use crate::vae::AutoencoderKl;

/// The pipelines whose folders hold the components below.
const PIPELINES: [&str; 3] = [
    "StableDiffusionPipeline",
    "StableDiffusionInpaintPipeline",
    "StableDiffusionUpscalePipeline",
];

/// The model components of a Stable Diffusion pipeline folder.
#[derive(Debug)]
pub struct StableDiffusionModels {
    /// `model_index.json`'s `_class_name`, e.g. `StableDiffusionInpaintPipeline`.
    pub pipeline: String,
    /// `tokenizer/`.
    pub tokenizer: ClipTokenizer,
    /// `text_encoder/`.
    pub text_encoder: ClipTextModel,
    /// `unet/`.
    pub unet: Unet2DConditionModel,
    /// `vae/`.
    pub vae: AutoencoderKl,
}

impl StableDiffusionModels {
    /// Loads every component of `dir`, from the `variant` weight files (e.g. `fp16`) where
    /// given, checking that `model_index.json` names the classes hd-painter implements and that
    /// the components fit together.
    pub fn load(dir: impl AsRef<Path>, variant: Option<&str>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let index = ConfigFile::open(&dir.join("model_index.json"))?;
        let pipeline = index.one_of("_class_name", &PIPELINES)?.to_string();
        for (key, library, class) in [
            ("tokenizer", "transformers", "CLIPTokenizer"),
            ("text_encoder", "transformers", "CLIPTextModel"),
            ("unet", "diffusers", "UNet2DConditionModel"),
            ("vae", "diffusers", "AutoencoderKL"),
        ] {
            let expected = Value::from(vec![library, class]);
            if index.get(key) != Some(&expected) {
                return Err(index.unsupported(key, &expected.to_string()));
            }
        }
        let models = Self {
            tokenizer: ClipTokenizer::from_dir(dir.join("tokenizer"))?,
            text_encoder: ClipTextModel::load(dir.join("text_encoder"), variant, device)?,
            unet: Unet2DConditionModel::load(dir.join("unet"), variant, device)?,
            vae: AutoencoderKl::load(dir.join("vae"), variant, device)?,
            pipeline,
        };
        let (vocab, embeddings) = (
            models.tokenizer.vocab_size(),
            models.text_encoder.vocab_size(),
        );
        if vocab > embeddings {
            return Err(ModelsError::Malformed {
                path: dir.join("model_index.json"),
                reason: format!(
                    "the tokenizer has {vocab} tokens but the text encoder embeds only {embeddings}"
                ),
            });
        }
        let (text, cross) = (
            models.text_encoder.hidden_size(),
            models.unet.cross_attention_dim(),
        );
        if text != cross {
            return Err(ModelsError::Malformed {
                path: dir.join("model_index.json"),
                reason: format!(
                    "the text encoder's width {text} differs from the UNet's cross_attention_dim {cross}"
                ),
            });
        }
        Ok(models)
    }
}

impl StableDiffusionModels {
    /// The text encoder's last hidden state `[1, 77, dim]` for `prompt`, tokenized as the UNet
    /// expects (padded and truncated to the context length).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Tensor<3>> {
        let ids: Vec<i64> = self
            .tokenizer
            .encode_padded(prompt)
            .into_iter()
            .map(i64::from)
            .collect();
        let n = ids.len();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &self.unet.device());
        Ok(self.text_encoder.forward(ids)?.last_hidden_state)
    }
}
