//! [`Raster`]: the pixel grid under [`Image`](crate::Image) and [`Mask`](crate::Mask), with the
//! geometric operations they share (crop, pad). Resampling, blurring and dilation live in their
//! own modules as further `impl` blocks on the same type.

use crate::error::{CoreError, Result};

/// A pixel sample type: 8-bit (`u8`, the PIL/OpenCV image semantics) or `f32` (the float
/// semantics of Pillow's mode "F" and of torch tensors).
pub trait Sample: Copy + Default + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    /// The value as `f64`.
    fn to_f64(self) -> f64;
    /// Converts a filtered value back. `u8` rounds half to even and saturates to `0..=255`
    /// (OpenCV's `saturate_cast`); `f32` narrows.
    fn from_f64(value: f64) -> Self;
    /// One output value of a Pillow resampling pass: the window's samples (`pixel(i)` for
    /// `i < weights.len()`) weighted by the normalised filter weights. 8-bit samples use
    /// Pillow's 22-bit fixed-point arithmetic (`fixed`, rounding bias, clamp), floats use `f64`.
    fn resample(weights: &[f64], fixed: &[i32], pixel: impl Fn(usize) -> Self) -> Self;
}

/// Fractional bits of Pillow's fixed-point resampling coefficients for 8-bit images
/// (`PRECISION_BITS = 32 - 8 - 2` in Pillow's `Resample.c`).
pub(crate) const PILLOW_PRECISION_BITS: u32 = 22;

impl Sample for u8 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }

    fn from_f64(value: f64) -> Self {
        value.round_ties_even().clamp(0.0, 255.0) as u8
    }

    fn resample(_weights: &[f64], fixed: &[i32], pixel: impl Fn(usize) -> Self) -> Self {
        let mut acc: i64 = 1 << (PILLOW_PRECISION_BITS - 1);
        for (i, &k) in fixed.iter().enumerate() {
            acc += i64::from(pixel(i)) * i64::from(k);
        }
        (acc >> PILLOW_PRECISION_BITS).clamp(0, 255) as u8
    }
}

impl Sample for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }

    fn from_f64(value: f64) -> Self {
        value as f32
    }

    fn resample(weights: &[f64], _fixed: &[i32], pixel: impl Fn(usize) -> Self) -> Self {
        let mut acc = 0.0f64;
        for (i, &k) in weights.iter().enumerate() {
            acc += f64::from(pixel(i)) * k;
        }
        acc as f32
    }
}

/// A `width x height` grid of pixels with `channels` interleaved samples each, stored row-major
/// (the `H x W x C` layout of a numpy image).
#[derive(Clone, Debug, PartialEq)]
pub struct Raster<T> {
    width: u32,
    height: u32,
    channels: usize,
    data: Vec<T>,
}

/// How [`Raster::pad_to_multiple`] fills the new pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    /// Zeros (black; "known" in a mask).
    Zero,
    /// Mirror without repeating the edge pixel: numpy's `reflect`, torch's `reflect`, OpenCV's
    /// `BORDER_REFLECT_101`. Pads wider than the image keep reflecting, as numpy does.
    Reflect,
}

impl<T: Sample> Raster<T> {
    /// Wraps a row-major, channel-interleaved buffer, checking its length and that the raster
    /// is not empty.
    pub fn from_vec(width: u32, height: u32, channels: usize, data: Vec<T>) -> Result<Self> {
        if width == 0 || height == 0 || channels == 0 {
            return Err(CoreError::Empty {
                what: format!("raster with {channels} channels"),
                width,
                height,
            });
        }
        let expected = width as usize * height as usize * channels;
        if data.len() != expected {
            return Err(CoreError::BufferLength {
                what: "raster".into(),
                width,
                height,
                channels,
                expected,
                found: data.len(),
            });
        }
        Ok(Self {
            width,
            height,
            channels,
            data,
        })
    }

    /// The raster itself if it has `channels` samples per pixel, else an error naming `name`.
    pub(crate) fn require_channels(
        self,
        channels: usize,
        name: &'static str,
        expected: &'static str,
    ) -> Result<Self> {
        if self.channels == channels {
            Ok(self)
        } else {
            Err(CoreError::InvalidParameter {
                name,
                value: self.channels.to_string(),
                expected,
            })
        }
    }

    /// A raster with every sample produced by `f(x, y, channel)`.
    pub(crate) fn from_fn(
        width: u32,
        height: u32,
        channels: usize,
        f: impl Fn(usize, usize, usize) -> T,
    ) -> Self {
        let mut data = Vec::with_capacity(width as usize * height as usize * channels);
        for y in 0..height as usize {
            for x in 0..width as usize {
                for c in 0..channels {
                    data.push(f(x, y, c));
                }
            }
        }
        Self {
            width,
            height,
            channels,
            data,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Samples per pixel.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The samples, row-major and channel-interleaved.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// Takes the samples out.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// The sample at column `x`, row `y`, channel `c`. Panics when out of bounds, like slice
    /// indexing.
    pub fn get(&self, x: usize, y: usize, c: usize) -> T {
        self.data[(y * self.width as usize + x) * self.channels + c]
    }

    /// Applies `f` to every sample.
    pub fn map<U: Sample>(&self, f: impl Fn(T) -> U) -> Raster<U> {
        Raster {
            width: self.width,
            height: self.height,
            channels: self.channels,
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }

    /// The `width x height` region whose top-left corner is `(x, y)`.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(CoreError::InvalidParameter {
                name: "crop size",
                value: format!("{width}x{height}"),
                expected: "at least 1x1",
            });
        }
        if x as u64 + width as u64 > self.width as u64
            || y as u64 + height as u64 > self.height as u64
        {
            return Err(CoreError::InvalidParameter {
                name: "crop region",
                value: format!("{width}x{height} at ({x}, {y})"),
                expected: "a region inside the raster",
            });
        }
        let (x0, y0) = (x as usize, y as usize);
        Ok(Self::from_fn(width, height, self.channels, |cx, cy, c| {
            self.get(x0 + cx, y0 + cy, c)
        }))
    }

    /// Pads on the right and bottom so that both sides become multiples of `multiple`, as the
    /// reference pipelines' `padx` does before a UNet that needs sides divisible by 64 (or 256).
    /// [`crop`](Self::crop) at `(0, 0)` with the original size undoes it.
    pub fn pad_to_multiple(&self, multiple: u32, mode: PadMode) -> Result<Self> {
        if multiple == 0 {
            return Err(CoreError::InvalidParameter {
                name: "pad multiple",
                value: "0".into(),
                expected: "a positive number of pixels",
            });
        }
        let width = self.width.div_ceil(multiple) * multiple;
        let height = self.height.div_ceil(multiple) * multiple;
        self.pad_right_bottom(width, height, mode)
    }

    /// Pads on the right and bottom to exactly `width x height` (not smaller than now).
    pub fn pad_right_bottom(&self, width: u32, height: u32, mode: PadMode) -> Result<Self> {
        if width < self.width || height < self.height {
            return Err(CoreError::InvalidParameter {
                name: "padded size",
                value: format!("{width}x{height}"),
                expected: "at least the raster's own size",
            });
        }
        let (w, h) = (self.width as usize, self.height as usize);
        Ok(Self::from_fn(
            width,
            height,
            self.channels,
            |x, y, c| match mode {
                PadMode::Zero if x >= w || y >= h => T::default(),
                PadMode::Zero => self.get(x, y, c),
                PadMode::Reflect => {
                    self.get(reflect101(x as isize, w), reflect101(y as isize, h), c)
                }
            },
        ))
    }
}

/// Maps an index outside `0..len` back inside by mirroring without repeating the edge sample
/// (OpenCV's `BORDER_REFLECT_101`, numpy's `reflect`), periodically for any distance.
pub(crate) fn reflect101(i: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as isize - 1);
    let i = i.rem_euclid(period);
    if i >= len as isize {
        (period - i) as usize
    } else {
        i as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect101_mirrors_without_repeating_the_edge() {
        let got: Vec<usize> = (-4..8).map(|i| reflect101(i, 3)).collect();
        // numpy.pad(np.arange(3), 4, 'reflect') -> [0 1 2 1 | 0 1 2 | 1 0 1 2 1]
        assert_eq!(got, [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]);
        assert_eq!(reflect101(5, 1), 0);
    }

    #[test]
    fn from_vec_rejects_empty_and_short_buffers() {
        assert!(matches!(
            Raster::<u8>::from_vec(0, 3, 1, vec![]),
            Err(CoreError::Empty { .. })
        ));
        assert!(matches!(
            Raster::<u8>::from_vec(2, 2, 3, vec![0; 11]),
            Err(CoreError::BufferLength {
                expected: 12,
                found: 11,
                ..
            })
        ));
    }

    #[test]
    fn pad_then_crop_is_identity() {
        let r = Raster::from_fn(5, 3, 2, |x, y, c| (x * 10 + y * 3 + c) as u8);
        for mode in [PadMode::Zero, PadMode::Reflect] {
            let p = r.pad_to_multiple(4, mode).unwrap();
            assert_eq!((p.width(), p.height()), (8, 4));
            assert_eq!(p.crop(0, 0, 5, 3).unwrap(), r);
        }
        assert!(r.pad_to_multiple(0, PadMode::Zero).is_err());
        assert!(r.crop(3, 0, 3, 1).is_err());
    }
}
