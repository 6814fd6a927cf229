//! [`Image`]: an 8-bit RGB picture, its files, and its tensor form.

use std::io::{BufRead, Cursor, Seek};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use image::ImageEncoder;

use crate::error::{CoreError, Result};
use crate::raster::Raster;

/// An 8-bit RGB image (the `H x W x 3` uint8 array of the reference pipelines).
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    raster: Raster<u8>,
}

/// How [`Image::from_tensor`] turns a value in `[0, 1]` times 255 into a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Quantize {
    /// Round to nearest, ties to even: diffusers' `numpy_to_pil` (`(x * 255).round()`).
    #[default]
    Round,
    /// Truncate towards zero: HD-Painter's `IImage` and its super-resolution output
    /// (`(255 * x).to(torch.uint8)`), kept for bit-level parity with that code.
    Truncate,
}

impl Image {
    /// Wraps an RGB raster (3 channels).
    pub fn from_raster(raster: Raster<u8>) -> Result<Self> {
        Ok(Self {
            raster: raster.require_channels(3, "image channels", "3 (RGB)")?,
        })
    }

    /// An image from row-major interleaved RGB bytes.
    pub fn from_rgb8(width: u32, height: u32, rgb: Vec<u8>) -> Result<Self> {
        Self::from_raster(Raster::from_vec(width, height, 3, rgb)?)
    }

    /// Reads a PNG, JPEG or WebP file (the format is sniffed from the content). Grey images are
    /// replicated to RGB, an alpha channel is dropped (as Pillow's `convert("RGB")` does), CMYK
    /// JPEGs are converted, and 16-bit samples are scaled to 8 bits (rounded; Pillow truncates,
    /// so values can differ by one level). Files with a side over [`DEFAULT_MAX_SIDE`] are
    /// refused ([`CoreError::TooLarge`]) before their pixels are decoded.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_limited(path, DEFAULT_MAX_SIDE)
    }

    /// [`Image::open`] with another bound on the width and height.
    pub fn open_limited(path: impl AsRef<Path>, max_side: u32) -> Result<Self> {
        Self::from_decoded(decode(Source::File(path.as_ref()), max_side)?)
    }

    /// [`Image::open_limited`] on the content of a file held in memory (an upload, say);
    /// `name` stands for it in errors.
    pub fn decode(bytes: &[u8], name: &str, max_side: u32) -> Result<Self> {
        Self::from_decoded(decode(Source::Bytes { name, bytes }, max_side)?)
    }

    fn from_decoded(decoded: image::DynamicImage) -> Result<Self> {
        let rgb = decoded.into_rgb8();
        Self::from_rgb8(rgb.width(), rgb.height(), rgb.into_raw())
    }

    /// The image encoded as a PNG file, in memory.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let mut png = Vec::new();
        let (w, h) = (self.width(), self.height());
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(self.raster.as_slice(), w, h, image::ExtendedColorType::Rgb8)
            .map_err(|e| CoreError::Encode {
                path: PathBuf::from("PNG in memory"),
                reason: e.to_string(),
            })?;
        Ok(png)
    }

    /// Writes the image; the format follows the extension (`png`, `jpg`/`jpeg`, `webp`
    /// lossless).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_buffer(path.as_ref(), &self.raster, image::ExtendedColorType::Rgb8)
    }

    /// The pixels.
    pub fn raster(&self) -> &Raster<u8> {
        &self.raster
    }

    /// The `[1, 3, H, W]` tensor in `[-1, 1]` that the VAE encodes, computed as diffusers'
    /// image processor does in `f32`: `(v / 255) * 2 - 1`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        let (w, h) = (self.width() as usize, self.height() as usize);
        let mut planar = vec![0f32; 3 * w * h];
        for (i, px) in self.raster.as_slice().chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                planar[c * w * h + i] = (f32::from(v) / 255.0) * 2.0 - 1.0;
            }
        }
        Tensor::from_data(TensorData::new(planar, [1, 3, h, w]), device)
    }

    /// The image back from a `[1, 3, H, W]` tensor in `[-1, 1]` (a VAE decode); see
    /// [`Image::batch_from_tensor`] for the rules.
    pub fn from_tensor(tensor: Tensor<4>, quantize: Quantize) -> Result<Self> {
        let dims = tensor.dims();
        if dims[0] != 1 {
            return Err(CoreError::TensorShape {
                what: "one RGB image".into(),
                expected: "[1, 3, H, W]".into(),
                found: dims.to_vec(),
            });
        }
        Ok(Self::batch_from_tensor(tensor, quantize)?.remove(0))
    }

    /// The images of an `[N, 3, H, W]` tensor in `[-1, 1]`, as diffusers' post-processing
    /// computes them: `clamp(x / 2 + 0.5, 0, 1) * 255`, then `quantize` (see [`Quantize`] for
    /// the exact expression of each rule). NaN or infinite values are an error, not black
    /// pixels.
    pub fn batch_from_tensor(tensor: Tensor<4>, quantize: Quantize) -> Result<Vec<Self>> {
        let dims = tensor.dims();
        if dims[0] == 0 || dims[1] != 3 || dims[2] == 0 || dims[3] == 0 {
            return Err(CoreError::TensorShape {
                what: "RGB images".into(),
                expected: "[N, 3, H, W] with N, H, W > 0".into(),
                found: dims.to_vec(),
            });
        }
        let values = tensor_values(tensor, "RGB images")?;
        let (h, w) = (dims[2], dims[3]);
        values
            .chunks_exact(3 * h * w)
            .map(|planar| {
                let mut rgb = vec![0u8; 3 * w * h];
                for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
                    for (c, out) in px.iter_mut().enumerate() {
                        *out = quantize.apply(planar[c * w * h + i]);
                    }
                }
                Self::from_rgb8(w as u32, h as u32, rgb)
            })
            .collect()
    }
}

impl Quantize {
    /// The byte for a value `x` in `[-1, 1]`, each rule in its reference's own order of float
    /// operations so that values near a boundary land on the same byte.
    fn apply(self, x: f32) -> u8 {
        match self {
            Quantize::Round => ((x / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even() as u8,
            Quantize::Truncate => (255.0 * ((x + 1.0) / 2.0).clamp(0.0, 1.0)) as u8,
        }
    }
}

/// The largest width or height [`Image::open`] and [`Mask::open`](crate::Mask::open) accept by
/// default: 16384 px, 8x the 2K output, far beyond what the models take, and small enough that a
/// crafted header cannot make the decoder allocate gigabytes.
pub const DEFAULT_MAX_SIDE: u32 = 16384;

/// Where [`decode`] reads an encoded image from: a file, or bytes held in memory (an upload)
/// with the name that stands for them in errors.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source<'a> {
    /// A file.
    File(&'a Path),
    /// Encoded bytes and their name.
    Bytes {
        /// What errors call them (e.g. the uploaded file's name).
        name: &'a str,
        /// The file's content.
        bytes: &'a [u8],
    },
}

impl Source<'_> {
    /// The path errors name.
    fn name(&self) -> PathBuf {
        match self {
            Source::File(path) => path.to_path_buf(),
            Source::Bytes { name, .. } => PathBuf::from(name),
        }
    }
}

/// Reads and decodes an image, mapping every failure to a typed error that names it; images
/// with a side over `max_side` are refused from their header.
pub(crate) fn decode(source: Source<'_>, max_side: u32) -> Result<image::DynamicImage> {
    match source {
        Source::File(path) => {
            decode_from(&source.name(), max_side, || image::ImageReader::open(path))
        }
        Source::Bytes { bytes, .. } => decode_from(&source.name(), max_side, || {
            Ok(image::ImageReader::new(Cursor::new(bytes)))
        }),
    }
}

/// [`decode`] over a reader that `open` makes afresh for the header and for the pixels.
fn decode_from<R: BufRead + Seek>(
    path: &Path,
    max_side: u32,
    open: impl Fn() -> std::io::Result<image::ImageReader<R>>,
) -> Result<image::DynamicImage> {
    let reader = || -> Result<_> {
        let io = |source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        open().map_err(io)?.with_guessed_format().map_err(io)
    };
    let (width, height) = reader()?
        .into_dimensions()
        .map_err(|source| CoreError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
    if width > max_side || height > max_side {
        return Err(CoreError::TooLarge {
            what: path.display().to_string(),
            width,
            height,
            max_side,
        });
    }
    let mut reader = reader()?;
    // The decoder's own allocation cap, sized to the accepted dimensions (RGBA, 16 bits).
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(u64::from(max_side).pow(2) * 8);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|source| CoreError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    if decoded.width() == 0 || decoded.height() == 0 {
        return Err(CoreError::Empty {
            what: path.display().to_string(),
            width: decoded.width(),
            height: decoded.height(),
        });
    }
    Ok(decoded)
}

/// Encodes a raster by the path's extension.
/// Checks, before any work, that an image can be written to `path`: its extension names a
/// format this build encodes (PNG, JPEG, WebP, ...) and its folder exists. Nothing is written.
pub fn check_output_path(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let encode = |reason: String| CoreError::Encode {
        path: path.to_path_buf(),
        reason,
    };
    let format = image::ImageFormat::from_path(path).map_err(|e| encode(e.to_string()))?;
    if !format.writing_enabled() {
        return Err(encode(format!(
            "this build does not encode {format:?}; use .png, .jpg or .webp"
        )));
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(CoreError::Io {
            path: folder.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        });
    }
    Ok(())
}

pub(crate) fn save_buffer(
    path: &Path,
    raster: &Raster<u8>,
    color: image::ExtendedColorType,
) -> Result<()> {
    let format = image::ImageFormat::from_path(path).map_err(|e| CoreError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    image::save_buffer_with_format(
        path,
        raster.as_slice(),
        raster.width(),
        raster.height(),
        color,
        format,
    )
    .map_err(|e| match e {
        image::ImageError::IoError(source) => CoreError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => CoreError::Encode {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}

/// The values of a float tensor, refusing NaN and infinity.
pub(crate) fn tensor_values<const D: usize>(tensor: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    let values: Vec<f32> =
        tensor
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| CoreError::TensorData {
                what: what.into(),
                reason: format!("{e:?}"),
            })?;
    let count = values.iter().filter(|v| !v.is_finite()).count();
    if count > 0 {
        return Err(CoreError::NonFinite {
            what: what.into(),
            count,
        });
    }
    Ok(values)
}
