//! # hd-painter-sr
//!
//! HD-Painter's inpainting-specialised x4 super-resolution stage (x0 blending with the known
//! region, Poisson blending) up to 2048 px.
//!
//! - [`Upscaler::upscale`]: the official `sr.run` from a first-stage result to a 2K image blended
//!   into the original, at the input's exact size or the reference's long side ([`SrOutput`]);
//!   [`SrSettings`] holds HD-Painter's defaults, an optional VAE tiling and a memory budget
//!   checked against [`Upscaler::memory_estimate`] before any model call.
//! - [`TwoStage`]: the 512 px HD-Painter stage ([`hd_painter_sampling::Inpainter`]) then the SR
//!   stage, one result per seed. The `hd-painter` crate's `Painter` runs either stage or both
//!   from one request.
//! - [`UpscaleLatents`]: the x4 upscaler's latent strategy (noised low-res image, noise-level
//!   class label, x0 blending) for [`hd_painter_sampling::Sampler`].
//!
//! [`poisson_blend`] is HD-Painter's final blend of a generated image into the original, on
//! [`seamless_clone`] (OpenCV's `NORMAL_CLONE` semantics, solved exactly with sine
//! transforms); both work on their own, e.g. on a 512 px result:
//!
//! ```no_run
//! use hd_painter_core::{Image, Mask};
//!
//! let original = Image::open("photo.png").unwrap();
//! let generated = Image::open("inpainted.png").unwrap();
//! let hole = Mask::open("mask.png").unwrap();
//! let blended = hd_painter_sr::poisson_blend(&original, &generated, &hole).unwrap();
//! blended.save("blended.png").unwrap();
//! ```
//!
//! ## Cargo features
//! | feature | effect |
//! |---|---|
//! | (none) | the burn-flex CPU backend |
//! | `wgpu`, `cuda` | burn's GPU backends, forwarded to `hd-painter-core` |
//! | `hub` | Hugging Face Hub model ids, forwarded to `hd-painter-models` |

mod error;
mod pipeline;
mod poisson;
mod settings;
mod upscale;
mod upscaler;

pub use error::{Result, SrError};
pub use hd_painter_models::MemoryEstimate;
pub use pipeline::TwoStage;
pub use poisson::{mask_centre, poisson_blend, seamless_clone};
pub use settings::{SrOutput, SrSettings};
pub use upscale::{DEFAULT_NOISE_LEVEL, SR_POSITIVE_PROMPT, UpscaleLatents, noise_low_res};
pub use upscaler::{SrInputs, SrNoise, Upscaler};

pub use hd_painter_core;
