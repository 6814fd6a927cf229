//! Textual inversion: learned token embeddings added to the tokenizer and the text encoder, as
//! diffusers' `load_textual_inversion` adds them. Files: diffusers' `learned_embeds.safetensors`
//! (one key, the token, holding `[dim]` or `[n, dim]`) and Automatic1111's `.safetensors`
//! embeddings (`emb_params`, or `string_to_param.*` as converted from its `.pt` files), whose
//! token is, as in Automatic1111, the file's name unless one is given.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use safetensors::SafeTensors;

use crate::error::{ModelsError, Result, TensorMismatch};
use crate::pipeline::StableDiffusionModels;
use crate::weights::{float_data, read_safetensors};

/// The keys of Automatic1111's embedding files.
const A1111_KEYS: [&str; 2] = ["emb_params", "string_to_param.*"];

/// A textual-inversion embedding read from a file.
#[derive(Clone, Debug)]
pub struct TextualInversion {
    path: PathBuf,
    token: String,
    /// `[vectors, dim]`, row-major, f32.
    data: Vec<f32>,
    shape: [usize; 2],
}

impl TextualInversion {
    /// Reads `path`; `token` overrides the file's token name (diffusers' `token=`).
    pub fn open(path: impl AsRef<Path>, token: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        read_safetensors(path, |tensors, _| Self::read(path, tensors, token))
    }

    fn read(path: &Path, tensors: &SafeTensors<'_>, token: Option<&str>) -> Result<Self> {
        let malformed = |reason: String| ModelsError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let names = tensors.names();
        let key = match names.as_slice() {
            [key] => key.to_string(),
            _ => {
                return Err(malformed(format!(
                    "expected one embedding tensor (the token's, or {A1111_KEYS:?}), found the \
                     keys {names:?} (SDXL embeddings hold two, `clip_l` and `clip_g`)"
                )));
            }
        };
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let token = match token {
            Some(token) => token.to_string(),
            None if A1111_KEYS.contains(&key.as_str()) => stem.to_string(),
            None => key.clone(),
        };
        let view = tensors.tensor(&key).map_err(|e| malformed(e.to_string()))?;
        let shape = match *view.shape() {
            [dim] => [1, dim],
            [n, dim] if n > 0 => [n, dim],
            ref other => {
                return Err(malformed(format!(
                    "`{key}`: expected [dim] or [vectors, dim], found {other:?}"
                )));
            }
        };
        let data = float_data(&view).ok_or_else(|| {
            malformed(format!(
                "`{key}`: expected f32, f16 or bf16, found {:?}",
                view.dtype()
            ))
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            token,
            data,
            shape,
        })
    }

    /// The token that stands for the embedding in prompts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The number of vectors (token positions) it takes.
    pub fn vectors(&self) -> usize {
        self.shape[0]
    }
}

impl StableDiffusionModels {
    /// Adds `embedding` as diffusers' `load_textual_inversion` does: its token (and, for `n`
    /// vectors, `{token}_1` ... `{token}_{n-1}`) gets new ids after the tokenizer's vocabulary,
    /// the text encoder's embedding table grows by those rows, and the token in a prompt stands
    /// for all `n` ids (diffusers' `maybe_convert_prompt`). A token already in the vocabulary is
    /// [`ModelsError::Incompatible`]; vectors of another width than the text encoder's are
    /// [`ModelsError::Weights`]; either way nothing changes.
    pub fn load_textual_inversion(&mut self, embedding: &TextualInversion) -> Result<()> {
        let [n, dim] = embedding.shape;
        let hidden = self.text_encoder.hidden_size();
        if dim != hidden {
            return Err(ModelsError::Weights {
                path: embedding.path.clone(),
                missing: Vec::new(),
                unexpected: Vec::new(),
                mismatched: vec![TensorMismatch {
                    key: embedding.token.clone(),
                    detail: format!(
                        "expected [{n}, {hidden}] (the text encoder's width), found [{n}, {dim}]"
                    ),
                }],
            });
        }
        let mut tokenizer = self.tokenizer.clone();
        let ids = tokenizer.add_token(&embedding.token, n)?;
        let vectors = Tensor::<2>::from_data(
            TensorData::new(embedding.data.clone(), [n, dim]),
            &self.unet.device(),
        );
        self.text_encoder = self
            .text_encoder
            .clone()
            .with_token_vectors(ids[0] as usize, vectors);
        self.tokenizer = tokenizer;
        Ok(())
    }
}
