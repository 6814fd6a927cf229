//! Dilation (a max filter over a structuring element), with the two elements the reference
//! pipelines use: scipy's iterated 3x3 cross (`binary_dilation(mask, iterations=r)`, HD-Painter's
//! `IImage.dilate(r)`) and OpenCV's rectangle (`cv2.dilate(mask, np.ones((h, w)))`, the Poisson
//! blend's 48x48 box). Pixels outside the raster never contribute, as in both libraries.

use crate::error::{CoreError, Result};
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
                Ok(self
                    .max_filter(span(width), 0..=0)
                    .max_filter(0..=0, span(height)))
            }
        }
    }

    /// Maximum over the window `x + dx, y + dy` for the given offset ranges, clipped to the
    /// raster.
    fn max_filter(
        &self,
        dx: std::ops::RangeInclusive<isize>,
        dy: std::ops::RangeInclusive<isize>,
    ) -> Self {
        let (w, h) = (self.width() as isize, self.height() as isize);
        Raster::from_fn(self.width(), self.height(), self.channels(), |x, y, c| {
            let xs = (x as isize + dx.start()).max(0)..=(x as isize + dx.end()).min(w - 1);
            let ys = (y as isize + dy.start()).max(0)..=(y as isize + dy.end()).min(h - 1);
            let mut best = self.get(x, y, c);
            for yy in ys {
                for xx in xs.clone() {
                    let v = self.get(xx as usize, yy as usize, c);
                    if v > best {
                        best = v;
                    }
                }
            }
            best
        })
    }

    /// One dilation by the 3x3 cross: each sample becomes the maximum of itself and its four
    /// neighbours.
    fn cross_step(&self) -> Self {
        let (w, h) = (self.width() as usize, self.height() as usize);
        Raster::from_fn(self.width(), self.height(), self.channels(), |x, y, c| {
            let neighbours = [
                (x > 0).then(|| (x - 1, y)),
                (x + 1 < w).then_some((x + 1, y)),
                (y > 0).then(|| (x, y - 1)),
                (y + 1 < h).then_some((x, y + 1)),
            ];
            neighbours
                .into_iter()
                .flatten()
                .fold(self.get(x, y, c), |best, (nx, ny)| {
                    let v = self.get(nx, ny, c);
                    if v > best { v } else { best }
                })
        })
    }
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
