//! # hd-painter-models
//!
//! The model stack of hd-painter: the CLIP BPE tokenizer and the CLIP / OpenCLIP text encoder
//! loaded from diffusers-format safetensors (f32, f16, bf16 files) today; UNet2DConditionModel,
//! AutoencoderKL and pluggable attention processors (PAIntA among them) as they land.
//!
//! ```no_run
//! use hd_painter_models::ClipTokenizer;
//!
//! # fn main() -> hd_painter_models::Result<()> {
//! let tokenizer = ClipTokenizer::from_dir("stable-diffusion-2-inpainting/tokenizer")?;
//! let ids = tokenizer.encode_padded("a red car, high quality");
//! assert_eq!(ids.len(), 77);
//! assert_eq!(ids[0], tokenizer.bos_id());
//! # Ok(())
//! # }
//! ```

mod attention;
mod blocks;
mod clip;
mod config;
mod error;
mod pipeline;
mod processor;
mod single_file;
mod source;
mod tokenizer;
mod unet;
mod vae;
mod weights;

pub use attention::{DEFAULT_SCORE_BUDGET, chunked_attention, query_chunk};
pub use clip::{ClipActivation, ClipTextConfig, ClipTextModel, ClipTextOutput};
pub use error::{ModelsError, Result, TensorMismatch};
pub use pipeline::StableDiffusionModels;
pub use processor::{
    AttentionKind, AttentionProcessor, AttentionSite, DefaultAttention, TransformerBlockContext,
};
pub use source::{HubModel, ModelSource};
pub use tokenizer::{BOS_TOKEN, ClipTokenizer, EOS_TOKEN, MAX_LENGTH};
pub use unet::{Unet2DConditionModel, UnetConfig};
pub use vae::{AutoencoderKl, DiagonalGaussian, VaeConfig, VaeTiling};

pub use hd_painter_core;
