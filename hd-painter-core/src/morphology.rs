//! Dilation (a max filter over a structuring element), with the two elements the reference
//! pipelines use: scipy's iterated 3x3 cross (`binary_dilation(mask, iterations=r)`, HD-Painter's
//! `IImage.dilate(r)`) and OpenCV's rectangle (`cv2.dilate(mask, np.ones((h, w)))`, the Poisson
//! blend's 48x48 box). Pixels outside the raster never contribute, as in both libraries.

use crate::error::{CoreError, Result};
use std::ops::RangeInclusive;

use crate::raster::{Raster, Sample};

/// The structuring element of a dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Footprint {
    /// The 3x3 cross applied `radius` times: every pixel within city-block (L1) distance
    /// `radius`, a diamond. scipy's `binary_dilation(x, iterations=radius)` and HD-Painter's
    /// `dilate(radius)` (radius 1 on the 512 px mask, 19 on the 2K mask).
    Cross {
        /// The number of 3x3 cross steps (the L1 radius).
        radius: u32,
    },
    /// A `width x height` rectangle anchored at `(width / 2, height / 2)` as OpenCV anchors it
    /// (so an even size reaches one pixel further left/up than right/down).
    Box {
        /// Width of the rectangle.
        width: u32,
        /// Height of the rectangle.
        height: u32,
    },
}

impl Footprint {
    /// The `(2 radius + 1)` square: every pixel within Chebyshev distance `radius`.
    pub fn square(radius: u32) -> Self {
        Footprint::Box {
            width: 2 * radius + 1,
            height: 2 * radius + 1,
        }
    }
}

impl<T: Sample> Raster<T> {
    /// Grey-level dilation: each output sample is the maximum over the footprint. On a binary
    /// mask this is binary dilation.
    pub fn dilate(&self, footprint: Footprint) -> Result<Self> {
        match footprint {
            Footprint::Cross { radius } => {
                if let Some(on) = self.binary_level() {
                    return Ok(self.diamond_by_distance(radius, on));
                }
                let mut out = self.clone();
                for _ in 0..radius {
                    out = out.cross_step();
                }
                Ok(out)
            }
            Footprint::Box { width, height } => {
                if width == 0 || height == 0 {
                    return Err(CoreError::InvalidParameter {
                        name: "dilation box",
                        value: format!("{width}x{height}"),
                        expected: "at least 1x1",
                    });
                }
                let span = |n: u32| -(n as isize / 2)..=(n as isize - 1 - n as isize / 2);
                Ok(self.max_filter(span(width), 0).max_filter(span(height), 1))
            }
        }
    }

    /// Maximum over `x + dx` (`axis` 0) or `y + dy` (`axis` 1) for the offsets in `span`,
    /// clipped to the raster, in time independent of the window length (van Herk / Gil-Werman:
    /// block-wise prefix and suffix maxima).
    fn max_filter(&self, span: RangeInclusive<isize>, axis: usize) -> Self {
        let (w, h, ch) = (
            self.width() as usize,
            self.height() as usize,
            self.channels(),
        );
        let (len, lines, step, line_step) = if axis == 0 {
            (w, h, ch, w * ch)
        } else {
            (h, w, w * ch, ch)
        };
        let (lo, k) = (*span.start(), (span.end() - span.start() + 1) as usize);
        let src = self.as_slice();
        let mut out = src.to_vec();
        let mut ext = vec![T::default(); len + k - 1];
        let (mut prefix, mut suffix) = (ext.clone(), ext.clone());
        for line in 0..lines {
            for c in 0..ch {
                let base = line * line_step + c;
                // Clamping to the edge gives the clipped window's maximum: a window reaching past
                // an edge contains that edge sample already.
                for (j, e) in ext.iter_mut().enumerate() {
                    let i = (j as isize + lo).clamp(0, len as isize - 1) as usize;
                    *e = src[base + i * step];
                }
                for start in (0..ext.len()).step_by(k) {
                    let end = (start + k).min(ext.len());
                    prefix[start] = ext[start];
                    for j in start + 1..end {
                        prefix[j] = max(prefix[j - 1], ext[j]);
                    }
                    suffix[end - 1] = ext[end - 1];
                    for j in (start..end - 1).rev() {
                        suffix[j] = max(suffix[j + 1], ext[j]);
                    }
                }
                for i in 0..len {
                    out[base + i * step] = max(suffix[i], prefix[i + k - 1]);
                }
            }
        }
        Raster::from_vec(self.width(), self.height(), ch, out).expect("same geometry")
    }

    /// The non-zero level of a raster whose samples are all 0 or that one level (a binary mask),
    /// if it is one.
    fn binary_level(&self) -> Option<T> {
        let zero = T::default();
        let mut on = None;
        for &v in self.as_slice() {
            if v != zero {
                match on {
                    None => on = Some(v),
                    Some(level) if level != v => return None,
                    Some(_) => {}
                }
            }
        }
        on.or(Some(zero))
    }

    /// The diamond dilation of a binary raster in two passes: the city-block distance to the
    /// nearest set sample (a two-pass chamfer transform with unit steps is exact for it), then
    /// `on` wherever that distance is at most `radius`. Equal to `radius` cross steps.
    fn diamond_by_distance(&self, radius: u32, on: T) -> Self {
        let (w, h, ch) = (
            self.width() as usize,
            self.height() as usize,
            self.channels(),
        );
        let src = self.as_slice();
        let far = u32::MAX / 2;
        let mut out = src.to_vec();
        let mut d = vec![far; w * h];
        for c in 0..ch {
            for (p, dist) in d.iter_mut().enumerate() {
                *dist = if src[p * ch + c] != T::default() {
                    0
                } else {
                    far
                };
            }
            for y in 0..h {
                for x in 0..w {
                    let p = y * w + x;
                    if x > 0 {
                        d[p] = d[p].min(d[p - 1] + 1);
                    }
                    if y > 0 {
                        d[p] = d[p].min(d[p - w] + 1);
                    }
                }
            }
            for y in (0..h).rev() {
                for x in (0..w).rev() {
                    let p = y * w + x;
                    if x + 1 < w {
                        d[p] = d[p].min(d[p + 1] + 1);
                    }
                    if y + 1 < h {
                        d[p] = d[p].min(d[p + w] + 1);
                    }
                }
            }
            for (p, &dist) in d.iter().enumerate() {
                out[p * ch + c] = if dist <= radius { on } else { T::default() };
            }
        }
        Raster::from_vec(self.width(), self.height(), ch, out).expect("same geometry")
    }

    /// One dilation by the 3x3 cross: each sample becomes the maximum of itself and its four
    /// neighbours.
    fn cross_step(&self) -> Self {
        let (w, h, ch) = (
            self.width() as usize,
            self.height() as usize,
            self.channels(),
        );
        let src = self.as_slice();
        let mut out = src.to_vec();
        for y in 0..h {
            for x in 0..w {
                for c in 0..ch {
                    let at = (y * w + x) * ch + c;
                    let mut best = src[at];
                    if x > 0 {
                        best = max(best, src[at - ch]);
                    }
                    if x + 1 < w {
                        best = max(best, src[at + ch]);
                    }
                    if y > 0 {
                        best = max(best, src[at - w * ch]);
                    }
                    if y + 1 < h {
                        best = max(best, src[at + w * ch]);
                    }
                    out[at] = best;
                }
            }
        }
        Raster::from_vec(self.width(), self.height(), ch, out).expect("same geometry")
    }
}

fn max<T: PartialOrd>(a: T, b: T) -> T {
    if b > a { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(w: u32, h: u32, at: (usize, usize)) -> Raster<u8> {
        Raster::from_fn(w, h, 1, |x, y, _| if (x, y) == at { 255 } else { 0 })
    }

    #[test]
    fn cross_radius_r_is_an_l1_diamond() {
        let d = dot(9, 9, (4, 4))
            .dilate(Footprint::Cross { radius: 2 })
            .unwrap();
        for y in 0..9usize {
            for x in 0..9usize {
                let inside = x.abs_diff(4) + y.abs_diff(4) <= 2;
                assert_eq!(d.get(x, y, 0) == 255, inside, "({x}, {y})");
            }
        }
    }

    /// Grey masks take the iterated-cross path, binary ones the distance transform: both equal
    /// the maximum over the L1 ball, computed here by brute force.
    #[test]
    fn both_cross_paths_equal_the_diamond_maximum() {
        let grey = Raster::from_fn(23, 17, 2, |x, y, c| ((x * 37 + y * 11 + c * 5) % 97) as u8);
        let binary = Raster::from_fn(
            23,
            17,
            1,
            |x, y, _| if (x * 7 + y * 3) % 41 == 0 { 200 } else { 0 },
        );
        for (raster, r) in [(&grey, 3u32), (&binary, 4), (&binary, 0)] {
            let got = raster.dilate(Footprint::Cross { radius: r }).unwrap();
            let (w, h) = (raster.width() as isize, raster.height() as isize);
            for y in 0..h {
                for x in 0..w {
                    for c in 0..raster.channels() {
                        let mut best = 0u8;
                        for yy in (y - r as isize).max(0)..=(y + r as isize).min(h - 1) {
                            for xx in (x - r as isize).max(0)..=(x + r as isize).min(w - 1) {
                                if (xx - x).abs() + (yy - y).abs() <= r as isize {
                                    best = best.max(raster.get(xx as usize, yy as usize, c));
                                }
                            }
                        }
                        assert_eq!(
                            got.get(x as usize, y as usize, c),
                            best,
                            "({x}, {y}, {c}) r = {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn even_box_is_anchored_like_opencv() {
        // 4 wide: offsets -2..=1, so a dot at x = 4 spreads to x in 3..=6.
        let d = dot(9, 1, (4, 0))
            .dilate(Footprint::Box {
                width: 4,
                height: 1,
            })
            .unwrap();
        let on: Vec<usize> = (0..9).filter(|&x| d.get(x, 0, 0) == 255).collect();
        assert_eq!(on, [3, 4, 5, 6]);
    }
}
