//! # hd-painter-core
//!
//! The ground floor of [hd-painter](https://github.com/hd-painter/hd-painter), text-guided
//! image inpainting with diffusion models on [burn]: images and masks with the exact pixel
//! semantics of the reference pipelines (Pillow resizing, OpenCV/torchvision blurs, scipy and
//! OpenCV dilation, numpy padding), their tensor forms, backend selection, and the error type.
//!
//! ```
//! use hd_painter_core::{BackendKind, Filter, Footprint, Image, Mask, PadMode, SizeRule};
//!
//! # fn main() -> hd_painter_core::Result<()> {
//! // A 640x480 photo with a square hole (normally `Image::open` / `Mask::open`).
//! let image = Image::from_rgb8(640, 480, vec![128; 640 * 480 * 3])?;
//! let hole = (0..640 * 480)
//!     .map(|i| if (200..300).contains(&(i % 640)) && (100..200).contains(&(i / 640)) { 255 } else { 0 })
//!     .collect();
//! let mask = Mask::from_luma8(640, 480, hole)?;
//! mask.ensure_matches(&image, "mask vs photo")?;
//!
//! // HD-Painter's preprocessing (the official `hd_inpaint.py` and `src/methods/sd.py`): long
//! // side 512 (bicubic, `hd_inpaint.py`'s size rule), pad to a multiple of 64; the hole is every
//! // non-zero pixel, dilated by a 3x3 cross, then padded.
//! let image = image
//!     .resize_long_side(512, SizeRule::Script, Filter::Bicubic)?
//!     .pad_to_multiple(64, PadMode::Zero)?;
//! let mask = mask
//!     .resize_long_side(512, SizeRule::Script, Filter::Bicubic)?
//!     .threshold(0)
//!     .dilate(Footprint::Cross { radius: 1 })?
//!     .pad_to_multiple(64, PadMode::Zero)?;
//! assert_eq!((image.width(), image.height()), (512, 384));
//!
//! let device = BackendKind::default().device()?;
//! let pixels = image.to_tensor(&device); // [1, 3, 384, 512] in [-1, 1]
//! let hole = mask.to_tensor(&device); // [1, 1, 384, 512] in [0, 1]
//! assert_eq!(pixels.dims(), [1, 3, 384, 512]);
//! assert_eq!(hole.dims(), [1, 1, 384, 512]);
//! # Ok(())
//! # }
//! ```
//!
//! ## Cargo features
//! | feature | effect |
//! |---|---|
//! | (none) | the burn-flex CPU backend, multithreaded and SIMD |
//! | `wgpu` | burn's wgpu backend (Vulkan / Metal / DirectX), with fusion and autotune |
//! | `cuda` | burn's CUDA backend, with fusion and autotune |
//! | `ndarray` | burn's deprecated ndarray CPU backend, for cross-checks only |

mod blur;
mod device;
mod error;
mod image;
mod infill;
mod mask;
mod memory;
mod morphology;
mod noise;
mod ops;
mod pillow_blur;
mod raster;
mod resize;

pub use blur::GaussianKernel;
pub use device::BackendKind;
pub use error::{CoreError, Result};
pub use image::{DEFAULT_MAX_SIDE, Image, Quantize, check_output_path};
pub use infill::InfillMethod;
pub use mask::{Mask, MaskChannel, MaskOptions};
pub use memory::peak_rss_bytes;
pub use morphology::Footprint;
pub use noise::{NoiseStream, seeded_noise, sub_seed};
pub use raster::{PadMode, Raster, Sample};
pub use resize::{Filter, SizeRule};

/// burn, re-exported so that downstream code uses the exact release hd-painter is built on.
pub use burn;
