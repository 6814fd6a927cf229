//! Pillow's `ImageFilter.GaussianBlur(radius)` on 8-bit rasters, which diffusers'
//! `VaeImageProcessor.blur(mask, blur_factor)` applies to masks: three passes of an extended box
//! blur (a box with fractional end weights, Gwosdek et al. 2011) per axis, all horizontal passes
//! first, each rounded to 8 bits in Pillow's 24-bit fixed point, the edges replicated.

use crate::raster::Raster;

/// The extended box's radius whose three passes approximate a Gaussian of `radius`, in `f32`
/// as Pillow computes it (its `double` square root and floor stored back to `float`).
fn box_radius(radius: f32, passes: u32) -> f32 {
    let sigma2 = radius * radius / passes as f32;
    let length = (12.0 * f64::from(sigma2) + 1.0).sqrt() as f32;
    let l = ((f64::from(length) - 1.0) / 2.0).floor() as f32;
    let mut a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

/// One extended-box pass along a line: the `2 r + 1` nearest samples with weight `ww` each and
/// the next one on either side with weight `fw` (`r = floor(radius)`), indices past the ends
/// clamped to them, in 24-bit fixed point rounded half up.
fn box_line(line: &[u8], radius: f32, out: &mut [u8]) {
    let r = radius as i64;
    let ww = (16_777_216.0_f32 / (radius * 2.0 + 1.0)) as u32;
    let fw = (16_777_216 - (2 * r as u32 + 1) * ww) / 2;
    let last = line.len() as i64 - 1;
    let at = |i: i64| u32::from(line[i.clamp(0, last) as usize]);
    let mut acc: u32 = (-r - 1..r).map(at).sum();
    for (x, o) in out.iter_mut().enumerate() {
        let x = x as i64;
        acc = acc + at(x + r) - at(x - r - 1);
        let bulk = acc * ww + (at(x - r - 1) + at(x + r + 1)) * fw;
        *o = ((bulk + (1 << 23)) >> 24) as u8;
    }
}

impl Raster<u8> {
    /// Pillow's `image.filter(ImageFilter.GaussianBlur(radius))` (radius in pixels, Pillow's
    /// "standard deviation"), bit-exact for single-channel rasters. A radius of 0 returns the
    /// raster unchanged.
    pub fn pillow_gaussian_blur(&self, radius: f32) -> Self {
        let r = box_radius(radius.max(0.0), 3);
        if r == 0.0 {
            return self.clone();
        }
        let (w, h, c) = (
            self.width() as usize,
            self.height() as usize,
            self.channels(),
        );
        let mut planes: Vec<Vec<u8>> = (0..c)
            .map(|ch| {
                self.as_slice()
                    .iter()
                    .skip(ch)
                    .step_by(c)
                    .copied()
                    .collect()
            })
            .collect();
        let mut line = vec![0u8; w.max(h)];
        for plane in &mut planes {
            for _ in 0..3 {
                for row in plane.chunks_exact_mut(w) {
                    box_line(row, r, &mut line[..w]);
                    row.copy_from_slice(&line[..w]);
                }
            }
            let mut column = vec![0u8; h];
            for x in 0..w {
                for (y, v) in column.iter_mut().enumerate() {
                    *v = plane[y * w + x];
                }
                for _ in 0..3 {
                    box_line(&column, r, &mut line[..h]);
                    column.copy_from_slice(&line[..h]);
                }
                for (y, &v) in column.iter().enumerate() {
                    plane[y * w + x] = v;
                }
            }
        }
        let data = (0..w * h * c).map(|i| planes[i % c][i / c]).collect();
        Raster::from_vec(w as u32, h as u32, c, data).expect("same size")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_radius_follows_the_extended_box_formula() {
        assert_eq!(box_radius(0.0, 3), 0.0);
        // sigma^2 = 4 / 3: L = sqrt(17) = 4.12, l = 1, a = 3 (2 - 4) / (6 (4/3 - 4)) = 0.375.
        assert!((box_radius(2.0, 3) - 1.375).abs() < 1e-6);
    }

    #[test]
    fn a_constant_raster_stays_constant_and_zero_radius_is_identity() {
        let r = Raster::from_vec(9, 5, 1, vec![77; 45]).unwrap();
        assert_eq!(r.pillow_gaussian_blur(3.0), r);
        let ramp = Raster::from_vec(4, 1, 1, vec![0, 80, 160, 240]).unwrap();
        assert_eq!(ramp.pillow_gaussian_blur(0.0), ramp);
    }
}
