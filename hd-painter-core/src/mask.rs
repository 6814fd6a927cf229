//! [`Mask`]: the 8-bit single-channel inpainting mask (255 = hole to generate, 0 = known).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{CoreError, Result};
use crate::image::{Image, Source, decode, save_buffer};
use crate::raster::Raster;

/// An 8-bit inpainting mask: 255 marks the hole to be generated, 0 the known region, values in
/// between are partial (anti-aliased or feathered edges). Reference pipelines treat it as a
/// greyscale PIL image, and so do the operations here.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    raster: Raster<u8>,
}

/// Which channel of a mask file marks the hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MaskChannel {
    /// The grey level, Pillow's `convert("L")` of colour files (ITU-R 601-2 luma in Pillow's
    /// fixed point): white = hole. The reference pipelines' convention.
    #[default]
    Luma,
    /// The alpha channel: opaque = hole (combine with `invert` for "transparent = hole", as in
    /// masks painted by erasing). A file without alpha is fully opaque.
    Alpha,
    /// The blue channel of the file converted to RGB (Pillow's `convert("RGB")`, alpha
    /// dropped): the channel the official HD-Painter code reads (`IImage.alpha()`, the last
    /// channel). For a grey file it is the grey level.
    Blue,
    /// 255 where the channel sum of the RGB conversion is above 255, else 0: BrushNet's official
    /// scripts (`cv2.imread(mask).sum(-1) > 255`), which make a pure red, green or blue mask no
    /// hole.
    RgbSum,
}

/// How [`Mask::open_with`] reads a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaskOptions {
    /// The channel that marks the hole.
    pub channel: MaskChannel,
    /// Swap hole and known region after reading (`255 - v`).
    pub invert: bool,
    /// Files wider or taller than this are refused before decoding
    /// ([`DEFAULT_MAX_SIDE`](crate::DEFAULT_MAX_SIDE)).
    pub max_side: u32,
}

impl Default for MaskOptions {
    /// Grey level, white = hole, up to [`DEFAULT_MAX_SIDE`](crate::DEFAULT_MAX_SIDE).
    fn default() -> Self {
        Self {
            channel: MaskChannel::default(),
            invert: false,
            max_side: crate::image::DEFAULT_MAX_SIDE,
        }
    }
}

impl Mask {
    /// Wraps a single-channel raster.
    pub fn from_raster(raster: Raster<u8>) -> Result<Self> {
        Ok(Self {
            raster: raster.require_channels(1, "mask channels", "1")?,
        })
    }

    /// A mask from row-major grey bytes.
    pub fn from_luma8(width: u32, height: u32, luma: Vec<u8>) -> Result<Self> {
        Self::from_raster(Raster::from_vec(width, height, 1, luma)?)
    }

    /// Reads a mask file with the default options (grey level, white = hole).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, MaskOptions::default())
    }

    /// Reads a PNG, JPEG or WebP mask, choosing the channel and the polarity.
    pub fn open_with(path: impl AsRef<Path>, options: MaskOptions) -> Result<Self> {
        Self::from_decoded(
            decode(Source::File(path.as_ref()), options.max_side)?,
            options,
        )
    }

    /// [`Mask::open_with`] on the content of a file held in memory (an upload, say); `name`
    /// stands for it in errors.
    pub fn decode_with(bytes: &[u8], name: &str, options: MaskOptions) -> Result<Self> {
        let decoded = decode(Source::Bytes { name, bytes }, options.max_side)?;
        Self::from_decoded(decoded, options)
    }

    fn from_decoded(decoded: image::DynamicImage, options: MaskOptions) -> Result<Self> {
        let (width, height) = (decoded.width(), decoded.height());
        let values = match options.channel {
            MaskChannel::Luma if decoded.color().has_color() => decoded
                .into_rgb8()
                .pixels()
                .map(|p| pillow_luma(p.0))
                .collect(),
            MaskChannel::Luma => decoded.into_luma8().into_raw(),
            MaskChannel::Alpha => decoded.into_rgba8().pixels().map(|p| p.0[3]).collect(),
            MaskChannel::Blue => decoded.into_rgb8().pixels().map(|p| p.0[2]).collect(),
            MaskChannel::RgbSum => decoded
                .into_rgb8()
                .pixels()
                .map(|p| {
                    let sum: u32 = p.0.iter().map(|&v| u32::from(v)).sum();
                    if sum > 255 { 255 } else { 0 }
                })
                .collect(),
        };
        let mask = Self::from_luma8(width, height, values)?;
        Ok(if options.invert { mask.invert() } else { mask })
    }

    /// Writes the mask as a greyscale file (format by extension).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_buffer(path.as_ref(), &self.raster, image::ExtendedColorType::L8)
    }

    /// The values.
    pub fn raster(&self) -> &Raster<u8> {
        &self.raster
    }

    /// Hole and known region swapped (`255 - v`).
    pub fn invert(&self) -> Self {
        Self {
            raster: self.raster.map(|v| 255 - v),
        }
    }

    /// A binary mask: 255 where the value is strictly above `level`, else 0. `threshold(0)` is
    /// the reference's "any non-zero value is hole".
    pub fn threshold(&self, level: u8) -> Self {
        Self {
            raster: self.raster.map(|v| if v > level { 255 } else { 0 }),
        }
    }

    /// Whether no pixel is hole (all zero): there is nothing to inpaint.
    pub fn is_empty(&self) -> bool {
        self.raster.as_slice().iter().all(|&v| v == 0)
    }

    /// Whether every pixel is fully hole: nothing of the image is kept.
    pub fn is_full(&self) -> bool {
        self.raster.as_slice().iter().all(|&v| v == 255)
    }

    /// Checks that the mask covers `image` exactly; `what` names the two inputs in the error
    /// (e.g. their file names).
    pub fn ensure_matches(&self, image: &Image, what: &str) -> Result<()> {
        if (self.width(), self.height()) == (image.width(), image.height()) {
            Ok(())
        } else {
            Err(CoreError::size_mismatch(
                what,
                (image.width(), image.height()),
                (self.width(), self.height()),
            ))
        }
    }

    /// The `[1, 1, H, W]` tensor in `[0, 1]` (`v / 255`).
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        let (w, h) = (self.width() as usize, self.height() as usize);
        let values: Vec<f32> = self
            .raster
            .as_slice()
            .iter()
            .map(|&v| f32::from(v) / 255.0)
            .collect();
        Tensor::from_data(TensorData::new(values, [1, 1, h, w]), device)
    }
}

/// Pillow's RGB -> L conversion: `(R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16`.
fn pillow_luma([r, g, b]: [u8; 3]) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}
