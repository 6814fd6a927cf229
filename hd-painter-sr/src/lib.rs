//! # hd-painter-sr
//!
//! HD-Painter's inpainting-specialised x4 super-resolution stage (x0 blending with the known
//! region, Poisson blending) up to 2048 px.
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

mod error;
mod memory;
mod pipeline;
mod poisson;
mod upscale;

pub use error::{Result, SrError};
pub use memory::MemoryEstimate;
pub use pipeline::{SrOutput, SrSettings, TwoStage, Upscaler};
pub use poisson::{mask_centre, poisson_blend, seamless_clone};
pub use upscale::{DEFAULT_NOISE_LEVEL, SR_POSITIVE_PROMPT, UpscaleLatents, noise_low_res};

pub use hd_painter_core;
