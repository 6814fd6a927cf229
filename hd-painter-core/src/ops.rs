//! The size and the geometric operations of [`Image`] and [`Mask`], forwarded to their [`Raster`] so that
//! one implementation serves both and each keeps its type.

use crate::blur::GaussianKernel;
use crate::error::Result;
use crate::image::Image;
use crate::mask::Mask;
use crate::morphology::Footprint;
use crate::raster::PadMode;
use crate::resize::{Filter, SizeRule};

macro_rules! forward_geometry {
    ($ty:ident) => {
        impl $ty {
            /// Width in pixels.
            pub fn width(&self) -> u32 {
                self.raster().width()
            }

            /// Height in pixels.
            pub fn height(&self) -> u32 {
                self.raster().height()
            }

            /// Resizes with Pillow's `Image.resize` semantics (see [`Filter`]).
            pub fn resize(&self, width: u32, height: u32, filter: Filter) -> Result<Self> {
                Self::from_raster(self.raster().resize(width, height, filter)?)
            }

            /// Resizes so that the long side is `long_side` pixels, keeping the aspect ratio as
            /// `rule` computes it (the official HD-Painter code's two formulas).
            pub fn resize_long_side(
                &self,
                long_side: u32,
                rule: SizeRule,
                filter: Filter,
            ) -> Result<Self> {
                Self::from_raster(self.raster().resize_long_side(long_side, rule, filter)?)
            }

            /// Pads on the right and bottom to the next multiple of `multiple` on both sides.
            pub fn pad_to_multiple(&self, multiple: u32, mode: PadMode) -> Result<Self> {
                Self::from_raster(self.raster().pad_to_multiple(multiple, mode)?)
            }

            /// The `width x height` region whose top-left corner is `(x, y)`.
            pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Result<Self> {
                Self::from_raster(self.raster().crop(x, y, width, height)?)
            }

            /// Gaussian blur of every channel (see [`GaussianKernel`] for the kernel rules).
            pub fn gaussian_blur(&self, kernel: &GaussianKernel) -> Result<Self> {
                Self::from_raster(self.raster().gaussian_blur(kernel))
            }
        }
    };
}

forward_geometry!(Image);
forward_geometry!(Mask);

impl Mask {
    /// Dilates the hole (a max filter over `footprint`).
    pub fn dilate(&self, footprint: Footprint) -> Result<Self> {
        Self::from_raster(self.raster().dilate(footprint)?)
    }

    /// Erodes the hole (a min filter over `footprint`). Pixels outside the mask never
    /// contribute, so a hole touching the border does not shrink from it: OpenCV's
    /// `cv2.erode(mask, kernel)` with its default border.
    pub fn erode(&self, footprint: Footprint) -> Result<Self> {
        Ok(self.invert().dilate(footprint)?.invert())
    }

    /// The hole grown by `pixels` (dilated with the `2 pixels + 1` square, as
    /// `cv2.dilate(mask, np.ones(..))`), or shrunk by `-pixels` (eroded likewise); 0 leaves it.
    pub fn grow(&self, pixels: i32) -> Result<Self> {
        let square = Footprint::square(pixels.unsigned_abs());
        match pixels {
            0 => Ok(self.clone()),
            p if p > 0 => self.dilate(square),
            _ => self.erode(square),
        }
    }

    /// Pillow's `GaussianBlur(radius)`, which diffusers' `VaeImageProcessor.blur(mask,
    /// blur_factor)` applies (bit-exact; see [`Raster::pillow_gaussian_blur`](crate::Raster::pillow_gaussian_blur)).
    pub fn blur(&self, radius: f32) -> Self {
        Self::from_raster(self.raster().pillow_gaussian_blur(radius)).expect("one channel kept")
    }
}
