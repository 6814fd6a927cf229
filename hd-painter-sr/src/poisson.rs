//! Poisson blending: OpenCV's `seamlessClone` with `NORMAL_CLONE` semantics, solved exactly with
//! discrete sine transforms, and HD-Painter's wrapper around it.

use hd_painter_core::{CoreError, Footprint, Image, Mask, Raster};
use rayon::prelude::*;
use rustdct::{DctPlanner, Dst1};

use crate::error::{Result, SrError};

/// OpenCV's `seamlessClone(source, destination, mask, centre, NORMAL_CLONE)`: the part of
/// `source` under `mask` is cloned into `destination` with its bounding box centred on `centre`
/// (`(x, y)`). Inside that box the result has the source's gradients where the mask, eroded by a
/// 7x7 square, is set, the destination's gradients elsewhere, and the destination's values on the
/// box's outline (Dirichlet boundary); outside the box it is the destination.
///
/// As in OpenCV, the mask's outermost pixels are ignored, a mask value `v` weighs the source's
/// gradient by `v / 255`, and the solution is truncated (not rounded) to 8 bits. `source` and
/// `mask` share a size; `destination` may differ, and the placed box must fit in it.
pub fn seamless_clone(
    source: &Image,
    destination: &Image,
    mask: &Mask,
    centre: (i64, i64),
) -> Result<Image> {
    let (w, h) = (source.width() as usize, source.height() as usize);
    mask.ensure_matches(source, "seamless clone mask vs source")?;
    let (dw, dh) = (destination.width() as usize, destination.height() as usize);
    let m = mask.raster().as_slice();
    // The mask without its outermost pixels, as OpenCV takes it.
    let inner = |x: usize, y: usize| {
        if x == 0 || y == 0 || x + 1 == w || y + 1 == h {
            0
        } else {
            m[y * w + x]
        }
    };
    let Some(roi) = bounding_box(w, h, inner) else {
        return Ok(destination.clone());
    };
    let (left, top) = (centre.0 - (roi.w / 2) as i64, centre.1 - (roi.h / 2) as i64);
    if left < 0 || top < 0 || left as usize + roi.w > dw || top as usize + roi.h > dh {
        return Err(SrError::InvalidInput(format!(
            "seamless clone: a {}x{} region centred at {centre:?} leaves the {dw}x{dh} destination",
            roi.w, roi.h
        )));
    }
    let (left, top) = (left as usize, top as usize);
    let mut out = destination.raster().as_slice().to_vec();
    if roi.w >= 3 && roi.h >= 3 {
        let weights = eroded_weights(&roi, (w, h), inner);
        let src = source.raster().as_slice();
        let dst = destination.raster().as_slice();
        let solver = DstSolver::new(roi.w - 2, roi.h - 2);
        let channels: Vec<Vec<u8>> = (0..3)
            .into_par_iter()
            .map(|c| {
                // The source is cut out by the (uneroded) mask, as OpenCV copies it.
                let patch = |x: usize, y: usize| {
                    let (sx, sy) = (roi.x + x, roi.y + y);
                    if inner(sx, sy) != 0 {
                        f64::from(src[(sy * w + sx) * 3 + c])
                    } else {
                        0.0
                    }
                };
                let dest = |x: usize, y: usize| f64::from(dst[((top + y) * dw + left + x) * 3 + c]);
                solver.clone_channel(&roi, &weights, &patch, &dest)
            })
            .collect();
        for y in 1..roi.h - 1 {
            for x in 1..roi.w - 1 {
                for (c, values) in channels.iter().enumerate() {
                    out[((top + y) * dw + left + x) * 3 + c] =
                        values[(y - 1) * (roi.w - 2) + x - 1];
                }
            }
        }
    }
    Ok(Image::from_raster(Raster::from_vec(
        dw as u32, dh as u32, 3, out,
    )?)?)
}

/// The centre of the mask's bounding box, `(x + w / 2, y + h / 2)`: where HD-Painter places a
/// clone so that it stays in place (`None` for an empty mask).
pub fn mask_centre(mask: &Mask) -> Option<(i64, i64)> {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let m = mask.raster().as_slice();
    bounding_box(w, h, |x, y| m[y * w + x])
        .map(|b| ((b.x + b.w / 2) as i64, (b.y + b.h / 2) as i64))
}

/// HD-Painter's `poisson_blend` (`src/utils`): both images reflect-padded by 32 px, the
/// original's padding frame replaced by the generated image's, the hole zero-padded and dilated
/// with a 48 x 48 box, [`seamless_clone`] of the generated image into the original, and the
/// padding cropped away. `hole`: 255 = generated region.
pub fn poisson_blend(original: &Image, generated: &Image, hole: &Mask) -> Result<Image> {
    const PAD: usize = 32;
    const DILATION: u32 = 48;
    let (w, h) = (original.width() as usize, original.height() as usize);
    for (what, iw, ih) in [
        ("generated image", generated.width(), generated.height()),
        ("hole mask", hole.width(), hole.height()),
    ] {
        if (iw as usize, ih as usize) != (w, h) {
            let what = format!("Poisson blend {what} vs original");
            return Err(CoreError::size_mismatch(what, (w as u32, h as u32), (iw, ih)).into());
        }
    }
    let (pw, ph) = (w + 2 * PAD, h + 2 * PAD);
    let reflect = |i: usize, n: usize| reflect_101(i as isize - PAD as isize, n);
    let padded = |img: &[u8], frame_from: &[u8]| -> Vec<u8> {
        let mut v = Vec::with_capacity(pw * ph * 3);
        for y in 0..ph {
            for x in 0..pw {
                let in_frame = x < PAD || y < PAD || x >= PAD + w || y >= PAD + h;
                let from = if in_frame { frame_from } else { img };
                let i = (reflect(y, h) * w + reflect(x, w)) * 3;
                v.extend_from_slice(&from[i..i + 3]);
            }
        }
        v
    };
    let g = generated.raster().as_slice();
    let fake = padded(g, g);
    let orig = padded(original.raster().as_slice(), g);
    let mut mask = vec![0u8; pw * ph];
    for (y, row) in hole.raster().as_slice().chunks_exact(w).enumerate() {
        mask[(y + PAD) * pw + PAD..(y + PAD) * pw + PAD + w].copy_from_slice(row);
    }
    let to_image = |v: Vec<u8>| -> Result<Image> {
        Ok(Image::from_raster(Raster::from_vec(
            pw as u32, ph as u32, 3, v,
        )?)?)
    };
    let mask = Mask::from_luma8(pw as u32, ph as u32, mask)?.dilate(Footprint::Box {
        width: DILATION,
        height: DILATION,
    })?;
    let Some(centre) = mask_centre(&mask) else {
        return Ok(original.clone());
    };
    let cloned = seamless_clone(&to_image(fake)?, &to_image(orig)?, &mask, centre)?;
    Ok(cloned.crop(PAD as u32, PAD as u32, w as u32, h as u32)?)
}

/// numpy's `reflect` (OpenCV's reflect-101) index for `i` in `0..n`, repeating past the size.
fn reflect_101(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let i = i.rem_euclid(period);
    (if i < n as isize { i } else { period - i }) as usize
}

/// A rectangle of the image.
struct Roi {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

/// The bounding box of the non-zero pixels (OpenCV's `boundingRect`).
fn bounding_box(w: usize, h: usize, value: impl Fn(usize, usize) -> u8) -> Option<Roi> {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if value(x, y) != 0 {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    (x0 != usize::MAX).then(|| Roi {
        x: x0,
        y: y0,
        w: x1 - x0 + 1,
        h: y1 - y0 + 1,
    })
}

/// The mask eroded three times by a 3x3 square (a 7x7 minimum), over the box: OpenCV erodes the
/// box as a view of the whole mask, so the window reaches past the box into the mask (zero
/// there) and only past the image's edge counts as set. As weights in `[0, 1]`.
fn eroded_weights(roi: &Roi, size: (usize, usize), value: impl Fn(usize, usize) -> u8) -> Vec<f64> {
    const REACH: usize = 3;
    let (w, h) = size;
    let span = |start: usize, len: usize, n: usize| {
        start.saturating_sub(REACH)..(start + len + REACH).min(n)
    };
    let ys = span(roi.y, roi.h, h);
    // Row minima over the box's columns, for every row the window can reach.
    let mut rows = vec![255u8; roi.w * ys.len()];
    for (r, y) in ys.clone().enumerate() {
        for i in 0..roi.w {
            let x = roi.x + i;
            rows[r * roi.w + i] = (x.saturating_sub(REACH)..(x + REACH + 1).min(w))
                .map(|xx| value(xx, y))
                .min()
                .unwrap_or(255);
        }
    }
    let mut weights = vec![0.0; roi.w * roi.h];
    for j in 0..roi.h {
        let y = roi.y + j;
        for i in 0..roi.w {
            let min = (y.saturating_sub(REACH)..(y + REACH + 1).min(h))
                .map(|yy| rows[(yy - ys.start) * roi.w + i])
                .min()
                .unwrap_or(255);
            weights[j * roi.w + i] = f64::from(min) / 255.0;
        }
    }
    weights
}

/// The exact solver of the 5-point Poisson equation on an `nx x ny` interior with a Dirichlet
/// boundary: a 2-D DST-I diagonalises the discrete Laplacian.
struct DstSolver {
    nx: usize,
    ny: usize,
    along_x: std::sync::Arc<dyn Dst1<f64>>,
    along_y: std::sync::Arc<dyn Dst1<f64>>,
}

impl DstSolver {
    fn new(nx: usize, ny: usize) -> Self {
        let mut planner = DctPlanner::new();
        Self {
            nx,
            ny,
            along_x: planner.plan_dst1(nx),
            along_y: planner.plan_dst1(ny),
        }
    }

    /// One channel's interior values (truncated to 8 bits), row-major `ny x nx`: the guidance
    /// field is the patch's forward differences weighted by `weights` plus the destination's
    /// weighted by `1 - weights`, its divergence the right-hand side, the destination's values on
    /// the box outline the boundary.
    fn clone_channel(
        &self,
        roi: &Roi,
        weights: &[f64],
        patch: &dyn Fn(usize, usize) -> f64,
        dest: &dyn Fn(usize, usize) -> f64,
    ) -> Vec<u8> {
        let (w, h) = (roi.w, roi.h);
        let wt = |x: usize, y: usize| weights[y * w + x];
        let mix = |x: usize, y: usize, dx: usize, dy: usize| {
            let k = wt(x, y);
            (patch(x + dx, y + dy) - patch(x, y)) * k
                + (dest(x + dx, y + dy) - dest(x, y)) * (1.0 - k)
        };
        let mut rhs = vec![0.0f64; self.nx * self.ny];
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let divergence =
                    mix(x, y, 1, 0) - mix(x - 1, y, 1, 0) + mix(x, y, 0, 1) - mix(x, y - 1, 0, 1);
                // The known boundary values move to the right-hand side.
                let mut boundary = 0.0;
                for (bx, by) in [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)] {
                    if bx == 0 || by == 0 || bx == w - 1 || by == h - 1 {
                        boundary += dest(bx, by);
                    }
                }
                rhs[(y - 1) * self.nx + x - 1] = divergence - boundary;
            }
        }
        self.transform(&mut rhs);
        let eigen = |i: usize, n: usize| {
            2.0 * (std::f64::consts::PI * (i + 1) as f64 / (n + 1) as f64).cos()
        };
        for j in 0..self.ny {
            for i in 0..self.nx {
                rhs[j * self.nx + i] /= eigen(i, self.nx) + eigen(j, self.ny) - 4.0;
            }
        }
        self.transform(&mut rhs);
        // DST-I is its own inverse up to 2 / (n + 1) per axis.
        let scale = 4.0 / ((self.nx + 1) * (self.ny + 1)) as f64;
        rhs.iter()
            .map(|&v| {
                let v = v * scale;
                // OpenCV truncates here rather than rounding.
                if v < 0.0 {
                    0
                } else if v > 255.0 {
                    255
                } else {
                    v as u8
                }
            })
            .collect()
    }

    /// The 2-D DST-I in place (rows, then columns through a transpose).
    fn transform(&self, data: &mut [f64]) {
        let (nx, ny) = (self.nx, self.ny);
        data.par_chunks_mut(nx)
            .for_each(|row| self.along_x.process_dst1(row));
        let mut columns = vec![0.0; nx * ny];
        for j in 0..ny {
            for i in 0..nx {
                columns[i * ny + j] = data[j * nx + i];
            }
        }
        columns
            .par_chunks_mut(ny)
            .for_each(|col| self.along_y.process_dst1(col));
        for i in 0..nx {
            for j in 0..ny {
                data[j * nx + i] = columns[i * ny + j];
            }
        }
    }
}
