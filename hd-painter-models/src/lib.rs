//! # hd-painter-models
//!
//! The model stack of hd-painter: the CLIP BPE tokenizer, the CLIP / OpenCLIP text encoder,
//! `UNet2DConditionModel` with pluggable attention processors, and `AutoencoderKL`, loaded from
//! diffusers-format safetensors (f32, f16, bf16 files). [`StableDiffusionModels`] loads a whole
//! pipeline from any [`ModelSource`]: a diffusers folder, an original-layout single-file
//! checkpoint (converted at load time), or a Hugging Face Hub id (feature `hub`). Files in the
//! layouts the models were first published in (pre-0.17 VAE attention names, early configs,
//! transformers 4 text encoders, sharded files) load as diffusers and transformers load them;
//! [`inspect`] reports what a model holds and which of those conversions it needs.
//! For RePaint as published, the pixel-space models: diffusers' [`Unet2DModel`] and
//! guided-diffusion's [`GuidedUnet`] (the official RePaint checkpoints), both a [`PixelDenoiser`].
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
//!
//! ```no_run
//! use hd_painter_core::BackendKind;
//! use hd_painter_models::{ModelSource, StableDiffusionModels};
//!
//! # fn main() -> hd_painter_models::Result<()> {
//! let device = BackendKind::default().device()?;
//! let folder = StableDiffusionModels::load("stable-diffusion-2-inpainting", Some("fp16"), &device)?;
//! // The published single file, with a diffusers folder of configs and tokenizer beside it.
//! let single = StableDiffusionModels::load_single_file(
//!     "512-inpainting-ema.safetensors",
//!     "stable-diffusion-2-inpainting",
//!     &device,
//! )?;
//! // `hub:` ids need the `hub` feature; `HF_HUB_OFFLINE=1` uses only the local cache.
//! let hub = ModelSource::parse("hub:stabilityai/stable-diffusion-2-inpainting", None)?;
//! let from_hub = StableDiffusionModels::from_source(&hub, Some("fp16"), &device)?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Cargo features
//! | feature | effect |
//! |---|---|
//! | (none) | the burn-flex CPU backend; folders and single-file checkpoints |
//! | `wgpu`, `cuda` | burn's GPU backends, forwarded to `hd-painter-core` |
//! | `hub` | [`ModelSource::Hub`]: model ids fetched with `hf-hub` into the standard Hugging Face cache (`$HF_HOME/hub`), offline with `HF_HUB_OFFLINE=1` |

mod attention;
mod blocks;
mod brushnet;
mod clip;
mod config;
mod embedding;
mod error;
mod guided;
mod inspect;
mod layout;
mod lora;
mod memory;
mod native;
mod pipeline;
mod pixel;
mod processor;
mod prompt;
mod scheduler_config;
mod scheduler_options;
mod sdxl;
mod single_file;
mod source;
mod tokenizer;
mod unet;
mod unet2d;
mod vae;
mod weights;

pub use attention::{DEFAULT_SCORE_BUDGET, chunked_attention, query_chunk};
pub use brushnet::{BrushNetConfig, BrushNetModel};
pub use clip::{ClipActivation, ClipTextConfig, ClipTextModel, ClipTextOutput};
pub use embedding::TextualInversion;
pub use error::{ModelsError, Result, TensorMismatch};
pub use guided::{GuidedUnet, GuidedUnetConfig};
pub use inspect::{ComponentReport, Inspection, inspect};
pub use lora::{Lora, LoraComponent, LoraFormat};
pub use memory::MemoryEstimate;
pub use pipeline::StableDiffusionModels;
pub use pixel::PixelDenoiser;
pub use processor::{
    AttentionKind, AttentionProcessor, AttentionSite, DefaultAttention, TransformerBlockContext,
};
pub use prompt::{CHUNK_TOKENS, Segment, TokenOrigin, WeightedTokens, parse_weighted};
pub use scheduler_config::SchedulerConfig;
pub use scheduler_options::{RUNNABLE_SCHEDULERS, SchedulerOptions};
pub use sdxl::{PromptEmbeds, SdxlFlags, SdxlText};
pub use source::{HubModel, ModelSource};
pub use tokenizer::{BOS_TOKEN, ClipTokenizer, EOS_TOKEN, MAX_LENGTH};
pub use unet::{
    Conditions, LevelConfig, TextTime, TextTimeConfig, Unet2DConditionModel, UnetConfig,
    UnetResiduals,
};
pub use unet2d::{TimeProjection, Unet2DConfig, Unet2DLevel, Unet2DModel};
pub use vae::{AutoencoderKl, DiagonalGaussian, VaeConfig, VaeTiling};

pub use hd_painter_core;
