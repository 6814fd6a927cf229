//! OpenCV's `cv2.inpaint(image, mask, radius, flags)` on 8-bit RGB images, bit-exact with
//! OpenCV 5: the hole is filled pixel by pixel along a fast-marching front that starts at its
//! one-pixel-wide outer band, each new pixel a weighted mean of the known pixels within `radius`.
//! [`InfillMethod::Telea`] weights them by direction, distance and level-set distance and adds
//! the image gradient (Telea 2004); [`InfillMethod::NavierStokes`] weights them by how well the
//! offset follows the isophotes (OpenCV's `INPAINT_NS`).
//!
//! OpenCV's own conventions are kept because they decide the pixels: the front is a queue with
//! ties served first in, first out, seeded in row-major order; a pixel's arrival time is computed
//! once, when the front first reaches it; the image gradients at known pixels in the first and
//! last rows and columns are taken at their inner neighbours (`k - 1 + (k == 1)`); Telea's
//! gradients are scaled by 2 where their difference spans two pixels, and its value is rounded
//! after adding 0.5.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::error::{CoreError, Result};
use crate::image::Image;
use crate::mask::Mask;
use crate::raster::Raster;

const KNOWN: u8 = 0;
const BAND: u8 = 1;
const INSIDE: u8 = 2;

/// The arrival time of pixels that no front has reached.
const FAR: f32 = 1.0e6;

/// How [`Image::infill`] fills a hole: OpenCV's two `cv2.inpaint` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfillMethod {
    /// `cv2.INPAINT_TELEA`.
    Telea,
    /// `cv2.INPAINT_NS`.
    NavierStokes,
}

/// One pixel on the front, ordered by arrival time, then by when it was queued.
struct Queued {
    time: f32,
    order: u64,
    at: usize,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        let time = self
            .time
            .partial_cmp(&other.time)
            .unwrap_or(Ordering::Equal);
        time.then(self.order.cmp(&other.order))
    }
}

/// OpenCV's sorted-list priority queue: smallest time first, equal times first in, first out.
#[derive(Default)]
struct Front {
    heap: BinaryHeap<Reverse<Queued>>,
    pushed: u64,
}

impl Front {
    fn push(&mut self, at: usize, time: f32) {
        self.pushed += 1;
        let order = self.pushed;
        self.heap.push(Reverse(Queued { time, order, at }));
    }

    fn pop(&mut self) -> Option<usize> {
        self.heap.pop().map(|Reverse(q)| q.at)
    }
}

/// The image framed by one pixel on every side (OpenCV's `erows x ecols` matrices): the state
/// of each pixel and its arrival time `t`.
struct Grid {
    width: usize,
    height: usize,
    state: Vec<u8>,
    t: Vec<f32>,
}

impl Grid {
    /// The four neighbours in OpenCV's order: up, left, down, right.
    fn neighbours(&self, at: usize) -> [usize; 4] {
        [at - self.width, at - 1, at + self.width, at + 1]
    }

    /// The first-order upwind solution at the pixel between `a` and `b` (OpenCV's
    /// `FastMarching_solve`, in double precision).
    fn solve(&self, a: usize, b: usize) -> f32 {
        let (ta, tb) = (f64::from(self.t[a]), f64::from(self.t[b]));
        let (known_a, known_b) = (self.state[a] != INSIDE, self.state[b] != INSIDE);
        let sol = match (known_a, known_b) {
            (true, true) if (ta - tb).abs() >= 1.0 => 1.0 + ta.min(tb),
            (true, true) => (ta + tb + (2.0 - (ta - tb) * (ta - tb)).sqrt()) * 0.5,
            (true, false) => 1.0 + ta,
            (false, true) => 1.0 + tb,
            (false, false) => 1.0 + ta.min(tb),
        };
        sol as f32
    }

    /// The arrival time at `at` from its four quadrants.
    fn arrival(&self, at: usize) -> f32 {
        let [up, left, down, right] = self.neighbours(at);
        let a = self.solve(up, left).min(self.solve(down, left));
        a.min(self.solve(up, right).min(self.solve(down, right)))
    }

    /// Marches from `front` into every `INSIDE` pixel it reaches, calling `fill` on each as it
    /// arrives (its time already set), and returns the pixels taken off the front in order.
    fn march(&mut self, mut front: Front, mut fill: impl FnMut(&Grid, usize)) -> Vec<usize> {
        let mut done = Vec::new();
        while let Some(at) = front.pop() {
            self.state[at] = KNOWN;
            done.push(at);
            for next in self.neighbours(at) {
                if self.state[next] == INSIDE {
                    self.t[next] = self.arrival(next);
                    fill(self, next);
                    self.state[next] = BAND;
                    front.push(next, self.t[next]);
                }
            }
        }
        done
    }
}

impl Image {
    /// The hole (every non-zero pixel of `hole`) filled as `cv2.inpaint(image, hole, radius,
    /// method)` fills it, bit-exact with OpenCV 5 (`tools/reference/generate.py`, group
    /// `fill`). `radius` is OpenCV's `inpaintRadius`, 1 to 100 (OpenCV clamps other values;
    /// here they are an error). As in OpenCV, an image that is all hole is returned unchanged.
    /// On an image one pixel wide or high, where OpenCV reads past the image, the reads are
    /// clamped to it.
    ///
    /// ```
    /// use hd_painter_core::{Image, InfillMethod, Mask};
    ///
    /// # fn main() -> hd_painter_core::Result<()> {
    /// let image = Image::from_rgb8(3, 1, vec![10, 20, 30, 0, 0, 0, 10, 20, 30])?;
    /// let hole = Mask::from_luma8(3, 1, vec![0, 255, 0])?;
    /// let filled = image.infill(&hole, InfillMethod::Telea, 3)?;
    /// assert_eq!(&filled.raster().as_slice()[3..6], &[10, 20, 30]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn infill(&self, hole: &Mask, method: InfillMethod, radius: u32) -> Result<Image> {
        hole.ensure_matches(self, "infill hole vs image")?;
        if !(1..=100).contains(&radius) {
            return Err(CoreError::InvalidParameter {
                name: "infill radius",
                value: radius.to_string(),
                expected: "1 to 100 pixels",
            });
        }
        let (w, h) = (self.width() as usize, self.height() as usize);
        let (gw, gh) = (w + 2, h + 2);
        let mut grid = Grid {
            width: gw,
            height: gh,
            state: vec![KNOWN; gw * gh],
            t: vec![FAR; gw * gh],
        };
        for (i, _) in hole
            .raster()
            .as_slice()
            .iter()
            .enumerate()
            .filter(|(_, m)| **m != 0)
        {
            grid.state[(i / w + 1) * gw + i % w + 1] = INSIDE;
        }
        let band = grid.band();
        for &at in &band {
            grid.t[at] = 0.0;
        }
        if method == InfillMethod::Telea {
            grid.time_outside(&band, radius as usize);
        }
        let mut out = self.raster().as_slice().to_vec();
        let pixels = Pixels {
            width: w,
            height: h,
        };
        let r = radius as i64;
        grid.march(seeded(&band), |grid, at| {
            let value = match method {
                InfillMethod::Telea => telea(grid, &out, pixels, at, r),
                InfillMethod::NavierStokes => navier_stokes(grid, &out, pixels, at, r),
            };
            let p = pixels.index(at / gw - 1, at % gw - 1);
            out[p..p + 3].copy_from_slice(&value);
        });
        Image::from_raster(Raster::from_vec(self.width(), self.height(), 3, out)?)
    }
}

/// A front holding `band` at time 0, in its (row-major) order.
fn seeded(band: &[usize]) -> Front {
    let mut front = Front::default();
    for &at in band {
        front.push(at, 0.0);
    }
    front
}

impl Grid {
    /// The known image pixels next to the hole (a 3x3 cross dilation minus the hole), in
    /// row-major order.
    fn band(&self) -> Vec<usize> {
        let w = self.width;
        (w..w * (self.height - 1))
            .filter(|&at| at % w != 0 && at % w != w - 1 && self.state[at] != INSIDE)
            .filter(|&at| self.neighbours(at).iter().any(|&n| self.state[n] == INSIDE))
            .collect()
    }

    /// Telea's distances outside the hole, negative: a march from `band` over the known image
    /// pixels within `radius` (a square) of the hole, as OpenCV's `icvCalcFMM(..., negate)`.
    fn time_outside(&mut self, band: &[usize], radius: usize) {
        let ring = self.near_hole(radius);
        let hole = std::mem::replace(&mut self.state, ring);
        for &at in band {
            self.state[at] = KNOWN;
        }
        for at in self.march(seeded(band), |_, _| {}) {
            self.t[at] = -self.t[at];
        }
        self.state = hole;
    }

    /// `INSIDE` on the image pixels outside the hole within `radius` (Chebyshev) of it: OpenCV's
    /// square dilation of the hole, minus the hole and the frame.
    fn near_hole(&self, radius: usize) -> Vec<u8> {
        let (w, h) = (self.width, self.height);
        let hole: Vec<bool> = self.state.iter().map(|&s| s == INSIDE).collect();
        let rows = sliding_any(
            &hole,
            Line {
                len: w,
                count: h,
                step: 1,
                stride: w,
            },
            radius,
        );
        let near = sliding_any(
            &rows,
            Line {
                len: h,
                count: w,
                step: w,
                stride: 1,
            },
            radius,
        );
        (0..w * h)
            .map(|at| {
                let (x, y) = (at % w, at / w);
                let image = x > 0 && y > 0 && x < w - 1 && y < h - 1;
                match image && near[at] && !hole[at] {
                    true => INSIDE,
                    false => KNOWN,
                }
            })
            .collect()
    }
}

/// A set of parallel lines through a grid: `count` lines of `len` samples, `step` apart along
/// a line, lines starting `stride` apart.
#[derive(Clone, Copy)]
struct Line {
    len: usize,
    count: usize,
    step: usize,
    stride: usize,
}

/// Whether a set sample lies within `radius` along each line (a 1-D max filter).
fn sliding_any(v: &[bool], lines: Line, radius: usize) -> Vec<bool> {
    let mut out = vec![false; v.len()];
    let mut count = vec![0usize; lines.len + 1];
    for line in 0..lines.count {
        let at = |i: usize| line * lines.stride + i * lines.step;
        for i in 0..lines.len {
            count[i + 1] = count[i] + usize::from(v[at(i)]);
        }
        for i in 0..lines.len {
            let (lo, hi) = (i.saturating_sub(radius), (i + radius + 1).min(lines.len));
            out[at(i)] = count[hi] > count[lo];
        }
    }
    out
}

/// The image's size and its reads at OpenCV's indices.
#[derive(Clone, Copy)]
struct Pixels {
    width: usize,
    height: usize,
}

impl Pixels {
    fn index(&self, y: usize, x: usize) -> usize {
        (y * self.width + x) * 3
    }

    /// Channel `c` at image row `y`, column `x`, clamped to the image.
    fn at(&self, out: &[u8], y: i64, x: i64, c: usize) -> i32 {
        let y = y.clamp(0, self.height as i64 - 1) as usize;
        let x = x.clamp(0, self.width as i64 - 1) as usize;
        i32::from(out[self.index(y, x) + c])
    }
}

/// The known pixels that contribute to the one at `at`: framed row and column `(k, l)`, the
/// image rows `(km, kp)` and columns `(lm, lp)` OpenCV reads for them.
struct Neighbour {
    k: i64,
    l: i64,
    km: i64,
    kp: i64,
    lm: i64,
    lp: i64,
}

/// The known image pixels within `radius` (Euclidean) of `at`, in OpenCV's row-major order.
fn neighbourhood(grid: &Grid, at: usize, radius: i64) -> impl Iterator<Item = Neighbour> + '_ {
    let (gw, gh) = (grid.width as i64, grid.height as i64);
    let (i, j) = ((at / grid.width) as i64, (at % grid.width) as i64);
    (i - radius..=i + radius)
        .flat_map(move |k| (j - radius..=j + radius).map(move |l| (k, l)))
        .filter(move |&(k, l)| k > 0 && l > 0 && k < gh - 1 && l < gw - 1)
        .filter(move |&(k, l)| grid.state[(k * gw + l) as usize] != INSIDE)
        .filter(move |&(k, l)| (l - j) * (l - j) + (k - i) * (k - i) <= radius * radius)
        .map(move |(k, l)| Neighbour {
            k,
            l,
            km: k - 1 + i64::from(k == 1),
            kp: k - 1 - i64::from(k == gh - 2),
            lm: l - 1 + i64::from(l == 1),
            lp: l - 1 - i64::from(l == gw - 2),
        })
}

/// Whether the framed pixel `(k, l)` is known.
fn known(grid: &Grid, k: i64, l: i64) -> bool {
    grid.state[(k * grid.width as i64 + l) as usize] != INSIDE
}

/// A one-sided or central difference along one axis: `(ahead, behind)` known decide which of
/// `central`, `forward` and `backward` applies, 0 when neither is known.
fn difference(ahead: bool, behind: bool, central: f32, forward: f32, backward: f32) -> f32 {
    match (ahead, behind) {
        (true, true) => central,
        (true, false) => forward,
        (false, true) => backward,
        (false, false) => 0.0,
    }
}

/// Telea's value at `at` (OpenCV's `icvTeleaInpaintFMM`, 3 channels).
fn telea(grid: &Grid, out: &[u8], px: Pixels, at: usize, radius: i64) -> [u8; 3] {
    let t = |k: i64, l: i64| grid.t[(k * grid.width as i64 + l) as usize];
    let (i, j) = ((at / grid.width) as i64, (at % grid.width) as i64);
    let grad_t = [
        difference(
            known(grid, i, j + 1),
            known(grid, i, j - 1),
            (t(i, j + 1) - t(i, j - 1)) * 0.5,
            t(i, j + 1) - t(i, j),
            t(i, j) - t(i, j - 1),
        ),
        difference(
            known(grid, i + 1, j),
            known(grid, i - 1, j),
            (t(i + 1, j) - t(i - 1, j)) * 0.5,
            t(i + 1, j) - t(i, j),
            t(i, j) - t(i - 1, j),
        ),
    ];
    let (mut ia, mut jx, mut jy, mut s) = ([0f32; 3], [0f32; 3], [0f32; 3], [1.0e-20f32; 3]);
    for n in neighbourhood(grid, at, radius) {
        let r = [(j - n.l) as f32, (i - n.k) as f32];
        let len2 = r[0] * r[0] + r[1] * r[1];
        let dst = (1.0 / (f64::from(len2) * f64::from(len2).sqrt())) as f32;
        let lev = (1.0 / (1.0 + f64::from(t(n.k, n.l) - t(i, j)).abs())) as f32;
        let mut dir = r[0] * grad_t[0] + r[1] * grad_t[1];
        if f64::from(dir).abs() <= 0.01 {
            dir = 1.0e-6;
        }
        let w = (dst * lev * dir).abs();
        let (right, left) = (known(grid, n.k, n.l + 1), known(grid, n.k, n.l - 1));
        let (below, above) = (known(grid, n.k + 1, n.l), known(grid, n.k - 1, n.l));
        for c in 0..3 {
            let o = |y: i64, x: i64| px.at(out, y, x, c);
            let gx = difference(
                right,
                left,
                (o(n.km, n.lp + 1) - o(n.km, n.lm - 1)) as f32 * 2.0,
                (o(n.km, n.lp + 1) - o(n.km, n.lm)) as f32,
                (o(n.km, n.lp) - o(n.km, n.lm - 1)) as f32,
            );
            let gy = difference(
                below,
                above,
                (o(n.kp + 1, n.lm) - o(n.km - 1, n.lm)) as f32 * 2.0,
                (o(n.kp + 1, n.lm) - o(n.km, n.lm)) as f32,
                (o(n.kp, n.lm) - o(n.km - 1, n.lm)) as f32,
            );
            ia[c] += w * o(n.k - 1, n.l - 1) as f32;
            jx[c] -= w * (gx * r[0]);
            jy[c] -= w * (gy * r[1]);
            s[c] += w;
        }
    }
    std::array::from_fn(|c| {
        let norm = (jx[c] * jx[c] + jy[c] * jy[c]).sqrt() + 1.0e-20;
        saturate(f64::from(ia[c] / s[c] + (jx[c] + jy[c]) / norm) + 0.5)
    })
}

/// The Navier-Stokes value at `at` (OpenCV's `icvNSInpaintFMM`, 3 channels).
fn navier_stokes(grid: &Grid, out: &[u8], px: Pixels, at: usize, radius: i64) -> [u8; 3] {
    let (i, j) = ((at / grid.width) as i64, (at % grid.width) as i64);
    let (mut ia, mut s) = ([0f32; 3], [1.0e-20f32; 3]);
    for n in neighbourhood(grid, at, radius) {
        let r = [(n.l - j) as f32, (n.k - i) as f32];
        let len2 = r[0] * r[0] + r[1] * r[1];
        let dst = 1.0 / (len2 * len2 + 1.0);
        let (below, above) = (known(grid, n.k + 1, n.l), known(grid, n.k - 1, n.l));
        let (right, left) = (known(grid, n.k, n.l + 1), known(grid, n.k, n.l - 1));
        for c in 0..3 {
            let o = |y: i64, x: i64| px.at(out, y, x, c);
            let vertical = difference(
                below,
                above,
                ((o(n.kp + 1, n.lm) - o(n.kp, n.lm)).abs()
                    + (o(n.kp, n.lm) - o(n.km - 1, n.lm)).abs()) as f32,
                (o(n.kp + 1, n.lm) - o(n.kp, n.lm)).abs() as f32 * 2.0,
                (o(n.kp, n.lm) - o(n.km - 1, n.lm)).abs() as f32 * 2.0,
            );
            let horizontal = difference(
                right,
                left,
                ((o(n.km, n.lp + 1) - o(n.km, n.lm)).abs()
                    + (o(n.km, n.lm) - o(n.km, n.lm - 1)).abs()) as f32,
                (o(n.km, n.lp + 1) - o(n.km, n.lm)).abs() as f32 * 2.0,
                (o(n.km, n.lm) - o(n.km, n.lm - 1)).abs() as f32 * 2.0,
            );
            let g = [-vertical, horizontal];
            let dot = r[0] * g[0] + r[1] * g[1];
            let dir = match f64::from(dot).abs() <= 0.01 {
                true => 1.0e-6,
                false => (dot / (len2 * (g[0] * g[0] + g[1] * g[1])).sqrt()).abs(),
            };
            let w = dst * dir;
            ia[c] += w * o(n.k - 1, n.l - 1) as f32;
            s[c] += w;
        }
    }
    std::array::from_fn(|c| saturate(f64::from(ia[c]) / f64::from(s[c])))
}

/// OpenCV's `saturate_cast<uchar>`: rounded half to even, clamped.
fn saturate(v: f64) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_times_leave_the_front_first_in_first_out() {
        let mut front = Front::default();
        for (at, time) in [(5, 1.0), (3, 0.0), (9, 1.0), (4, 0.0), (1, 0.5)] {
            front.push(at, time);
        }
        let order: Vec<usize> = std::iter::from_fn(|| front.pop()).collect();
        assert_eq!(order, [3, 4, 1, 5, 9]);
    }

    #[test]
    fn radius_and_size_are_checked() {
        let image = Image::from_rgb8(2, 2, vec![0; 12]).unwrap();
        let hole = Mask::from_luma8(2, 2, vec![0, 255, 0, 0]).unwrap();
        for radius in [0, 101] {
            let e = image
                .infill(&hole, InfillMethod::Telea, radius)
                .unwrap_err();
            assert!(
                matches!(
                    e,
                    CoreError::InvalidParameter {
                        name: "infill radius",
                        ..
                    }
                ),
                "{e}"
            );
        }
        let other = Mask::from_luma8(1, 2, vec![0, 255]).unwrap();
        assert!(image.infill(&other, InfillMethod::NavierStokes, 3).is_err());
    }

    #[test]
    fn a_one_pixel_wide_image_reads_inside_itself() {
        let image = Image::from_rgb8(1, 3, vec![90, 90, 90, 0, 0, 0, 90, 90, 90]).unwrap();
        let hole = Mask::from_luma8(1, 3, vec![0, 255, 0]).unwrap();
        for method in [InfillMethod::Telea, InfillMethod::NavierStokes] {
            let filled = image.infill(&hole, method, 2).unwrap();
            assert_eq!(
                &filled.raster().as_slice()[3..6],
                &[90, 90, 90],
                "{method:?}"
            );
        }
    }
}
