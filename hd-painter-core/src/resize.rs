//! Resampling with Pillow's semantics (`Image.resize`), because the reference pipelines resize
//! images and masks with Pillow: the same filters, the same antialiasing when shrinking (the
//! filter support grows with the scale factor), the same two passes in Pillow 13's order and, for 8-bit samples, the same 22-bit fixed-point rounding between them. The
//! results are bit-exact with Pillow for `u8` and within float rounding for `f32`.

use crate::error::{CoreError, Result};
use crate::raster::{PILLOW_PRECISION_BITS, Raster, Sample};

/// A resampling filter, as Pillow names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Filter {
    /// `Image.NEAREST`: the source pixel under each output pixel's centre.
    Nearest,
    /// `Image.BILINEAR`: a triangle filter, widened when shrinking (antialiased).
    Bilinear,
    /// `Image.BICUBIC`: Keys' cubic with a = -0.5, widened when shrinking (antialiased).
    /// The reference pipelines' default.
    #[default]
    Bicubic,
}

impl Filter {
    /// Half-width of the filter at scale 1, in source pixels.
    fn support(self) -> f64 {
        match self {
            Filter::Nearest => 0.0,
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Nearest => unreachable!("nearest has no convolution weights"),
            Filter::Bilinear if x < 1.0 => 1.0 - x,
            Filter::Bicubic if x < 1.0 => ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1.0,
            Filter::Bicubic if x < 2.0 => (((x - 5.0) * x + 8.0) * x - 4.0) * BICUBIC_A,
            _ => 0.0,
        }
    }
}

const BICUBIC_A: f64 = -0.5;

/// How the short side is computed when an image is resized to a long side. The official
/// HD-Painter code has two formulas, which differ by a pixel for some sizes (93 x 128 at 512:
/// 372 x 512 by [`SizeRule::Script`], 371 x 512 by [`SizeRule::Demo`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SizeRule {
    /// `src/utils.resize`, which `hd_inpaint.py` applies before the 512 px stage: with
    /// `a = w / h`, `(min(L, int(L * a)), min(L, int(L / a)))`.
    #[default]
    Script,
    /// `IImage.resize(L)`, which the demo applies before the 512 px stage and both apply before
    /// the SR stage: with `a = h / w`, height `min(L, int(L * a))`, width `min(L, int(L / a))`.
    Demo,
}

impl SizeRule {
    /// The `(width, height)` of a `width x height` image resized to long side `long_side`, in
    /// `f64` with `int()` truncation as the official code computes it. A side the formula
    /// truncates to 0 (where the official code fails) is 1.
    pub fn size(self, width: u32, height: u32, long_side: u32) -> (u32, u32) {
        let (w, h, l) = (f64::from(width), f64::from(height), f64::from(long_side));
        let (new_width, new_height) = match self {
            SizeRule::Script => {
                let a = w / h;
                (l * a, l / a)
            }
            SizeRule::Demo => {
                let a = h / w;
                (l / a, l * a)
            }
        };
        let side = |v: f64| long_side.min(v as u32).max(1);
        (side(new_width), side(new_height))
    }
}

/// Per-output-pixel filter windows along one axis (Pillow's `precompute_coeffs`).
struct Windows {
    /// First source index of each output pixel's window.
    start: Vec<usize>,
    /// Window length of each output pixel.
    len: Vec<usize>,
    /// Stride between consecutive windows in `weights` / `fixed`.
    ksize: usize,
    /// Normalised weights.
    weights: Vec<f64>,
    /// The same weights in Pillow's fixed point, for 8-bit samples.
    fixed: Vec<i32>,
}

impl Windows {
    fn new(in_size: usize, out_size: usize, filter: Filter) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        // Pillow multiplies by the reciprocal (not divides): it shows in the last bit.
        let inv_filterscale = 1.0 / filterscale;
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut weights = vec![0.0; out_size * ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            // Pillow rounds the window ends with a C `(int)` cast of `v + 0.5`.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin);
            let row = &mut weights[xx * ksize..xx * ksize + n];
            let mut total = 0.0;
            for (x, w) in row.iter_mut().enumerate() {
                *w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * inv_filterscale);
                total += *w;
            }
            if total != 0.0 {
                row.iter_mut().for_each(|w| *w /= total);
            }
            start.push(xmin);
            len.push(n);
        }
        let one = f64::from(1u32 << PILLOW_PRECISION_BITS);
        let fixed = weights
            .iter()
            .map(|&w| {
                // C's truncating cast after a ±0.5 bias: round half away from zero.
                if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                }
            })
            .collect();
        Self {
            start,
            len,
            ksize,
            weights,
            fixed,
        }
    }

    fn window(&self, i: usize) -> (usize, &[f64], &[i32]) {
        let range = i * self.ksize..i * self.ksize + self.len[i];
        (
            self.start[i],
            &self.weights[range.clone()],
            &self.fixed[range],
        )
    }
}

impl<T: Sample> Raster<T> {
    /// Resizes to `width x height` with Pillow's `Image.resize(size, filter)` semantics.
    pub fn resize(&self, width: u32, height: u32, filter: Filter) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(CoreError::InvalidParameter {
                name: "resize target",
                value: format!("{width}x{height}"),
                expected: "at least 1x1",
            });
        }
        if filter == Filter::Nearest {
            return Ok(self.resize_nearest(width, height));
        }
        let horizontal = |src: Raster<T>| {
            let windows = Windows::new(src.width() as usize, width as usize, filter);
            Raster::from_fn(width, src.height(), src.channels(), |x, y, c| {
                let (x0, w, k) = windows.window(x);
                T::resample(w, k, |i| src.get(x0 + i, y, c))
            })
        };
        let vertical = |src: Raster<T>| {
            let windows = Windows::new(src.height() as usize, height as usize, filter);
            Raster::from_fn(src.width(), height, src.channels(), |x, y, c| {
                let (y0, w, k) = windows.window(y);
                T::resample(w, k, |i| src.get(x, y0 + i, c))
            })
        };
        let (need_h, need_v) = (width != self.width(), height != self.height());
        // Pillow 13 runs the vertical pass first when the height shrinks by more than twice
        // as many pixels as the width does; with 8-bit rounding between the passes the order
        // shows in the result.
        let shrink_h = i64::from(self.height()) - i64::from(height);
        let shrink_w = i64::from(self.width()) - i64::from(width);
        let out = if shrink_h > 0 && shrink_h > 2 * shrink_w {
            let out = if need_v {
                vertical(self.clone())
            } else {
                self.clone()
            };
            if need_h { horizontal(out) } else { out }
        } else {
            let out = if need_h {
                horizontal(self.clone())
            } else {
                self.clone()
            };
            if need_v { vertical(out) } else { out }
        };
        Ok(out)
    }

    /// Resizes so that the long side is `long_side`, keeping the aspect ratio as `rule`
    /// computes it.
    pub fn resize_long_side(&self, long_side: u32, rule: SizeRule, filter: Filter) -> Result<Self> {
        let (w, h) = rule.size(self.width(), self.height(), long_side);
        self.resize(w, h, filter)
    }

    /// Pillow's nearest neighbour: an affine map whose source coordinate is accumulated in
    /// `f64` from the first pixel centre and truncated (`ImagingScaleAffine`).
    fn resize_nearest(&self, width: u32, height: u32) -> Self {
        let index_table = |in_size: u32, out_size: u32| -> Vec<usize> {
            let step = f64::from(in_size) / f64::from(out_size);
            let mut pos = step * 0.5;
            (0..out_size)
                .map(|_| {
                    let i = (pos as usize).min(in_size as usize - 1);
                    pos += step;
                    i
                })
                .collect()
        };
        let xs = index_table(self.width(), width);
        let ys = index_table(self.height(), height);
        Raster::from_fn(width, height, self.channels(), |x, y, c| {
            self.get(xs[x], ys[y], c)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_size_rules_truncate_like_the_official_code() {
        for rule in [SizeRule::Script, SizeRule::Demo] {
            assert_eq!(rule.size(1024, 768, 512), (512, 384));
            assert_eq!(rule.size(1000, 333, 512), (512, 170));
            assert_eq!(rule.size(333, 1000, 512), (170, 512));
            assert_eq!(rule.size(700, 700, 512), (512, 512));
            assert_eq!(
                rule.size(1, 4096, 512),
                (1, 512),
                "a side truncated to 0 is 1"
            );
        }
        assert_eq!(SizeRule::Script.size(93, 128, 512), (372, 512));
        assert_eq!(SizeRule::Demo.size(93, 128, 512), (371, 512));
    }

    #[test]
    fn resizing_to_the_same_size_is_identity() {
        let r = Raster::from_fn(7, 5, 3, |x, y, c| (x * 31 + y * 7 + c) as u8);
        assert_eq!(r.resize(7, 5, Filter::Bicubic).unwrap(), r);
        assert!(r.resize(0, 5, Filter::Bilinear).is_err());
    }
}
