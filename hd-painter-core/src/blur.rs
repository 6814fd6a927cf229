//! Gaussian blur with the kernel of OpenCV's `getGaussianKernel` and torchvision's
//! `gaussian_blur` (the two agree whenever sigma is given), applied separably with a mirrored
//! border (`BORDER_REFLECT_101`, torch's `reflect`), as both libraries do by default.

use crate::error::{CoreError, Result};
use crate::raster::{Raster, Sample, reflect101};

/// A normalised 1-D Gaussian kernel of odd size.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianKernel {
    taps: Vec<f64>,
}

impl GaussianKernel {
    /// The kernel `cv2.GaussianBlur(src, (size, size), sigma)` uses.
    ///
    /// `size` must be odd. `sigma <= 0` means "derive it from the size", with OpenCV's rule:
    /// `0.3 * ((size - 1) * 0.5 - 1) + 0.8`, except that sizes 1, 3, 5 and 7 then use OpenCV's
    /// fixed binomial-like tables.
    pub fn opencv(size: usize, sigma: f64) -> Result<Self> {
        check_size(size)?;
        if sigma <= 0.0 {
            let table: Option<&[f64]> = match size {
                1 => Some(&[1.0]),
                3 => Some(&[0.25, 0.5, 0.25]),
                5 => Some(&[0.0625, 0.25, 0.375, 0.25, 0.0625]),
                7 => Some(&[
                    0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
                ]),
                _ => None,
            };
            if let Some(taps) = table {
                return Ok(Self {
                    taps: taps.to_vec(),
                });
            }
        }
        let sigma = if sigma > 0.0 {
            sigma
        } else {
            default_sigma(size)
        };
        Ok(Self::sampled(size, sigma))
    }

    /// The kernel `torchvision.transforms.functional.gaussian_blur(img, size, sigma)` uses;
    /// `sigma = None` is torchvision's default, `0.3 * ((size - 1) * 0.5 - 1) + 0.8` (3.2 for the
    /// size-19 blur of HD-Painter's super-resolution mask).
    pub fn torchvision(size: usize, sigma: Option<f64>) -> Result<Self> {
        check_size(size)?;
        let sigma = sigma.unwrap_or_else(|| default_sigma(size));
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(CoreError::InvalidParameter {
                name: "gaussian sigma",
                value: sigma.to_string(),
                expected: "a positive, finite standard deviation",
            });
        }
        Ok(Self::sampled(size, sigma))
    }

    /// The taps, summing to one.
    pub fn taps(&self) -> &[f64] {
        &self.taps
    }

    fn sampled(size: usize, sigma: f64) -> Self {
        let half = (size as f64 - 1.0) / 2.0;
        let mut taps: Vec<f64> = (0..size)
            .map(|i| {
                let x = i as f64 - half;
                (-(x * x) / (2.0 * sigma * sigma)).exp()
            })
            .collect();
        let total: f64 = taps.iter().sum();
        taps.iter_mut().for_each(|t| *t /= total);
        Self { taps }
    }
}

fn check_size(size: usize) -> Result<()> {
    if size % 2 == 1 {
        Ok(())
    } else {
        Err(CoreError::InvalidParameter {
            name: "gaussian kernel size",
            value: size.to_string(),
            expected: "an odd number of taps",
        })
    }
}

fn default_sigma(size: usize) -> f64 {
    0.3 * ((size as f64 - 1.0) * 0.5 - 1.0) + 0.8
}

impl<T: Sample> Raster<T> {
    /// Blurs every channel with `kernel` horizontally and vertically (accumulating in `f64`,
    /// rounding once at the end for 8-bit samples), mirroring at the border.
    pub fn gaussian_blur(&self, kernel: &GaussianKernel) -> Self {
        let taps = kernel.taps();
        let half = (taps.len() / 2) as isize;
        let (w, h, ch) = (
            self.width() as usize,
            self.height() as usize,
            self.channels(),
        );
        let mut horizontal = Vec::with_capacity(w * h * ch);
        for y in 0..h {
            for x in 0..w {
                for c in 0..ch {
                    let tap = |(i, t): (usize, &f64)| {
                        t * self
                            .get(reflect101(x as isize + i as isize - half, w), y, c)
                            .to_f64()
                    };
                    horizontal.push(taps.iter().enumerate().map(tap).sum::<f64>());
                }
            }
        }
        Raster::from_fn(self.width(), self.height(), ch, |x, y, c| {
            let v: f64 = taps
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let yy = reflect101(y as isize + i as isize - half, h);
                    t * horizontal[(yy * w + x) * ch + c]
                })
                .sum();
            T::from_f64(v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_follow_the_library_rules() {
        assert_eq!(
            GaussianKernel::opencv(3, 0.0).unwrap().taps(),
            &[0.25, 0.5, 0.25]
        );
        let k = GaussianKernel::torchvision(19, None).unwrap();
        let expected = GaussianKernel::opencv(19, 3.2).unwrap();
        for (a, b) in k.taps().iter().zip(expected.taps()) {
            assert!((a - b).abs() < 1e-15);
        }
        assert!((k.taps().iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(GaussianKernel::opencv(4, 1.0).is_err());
        assert!(GaussianKernel::torchvision(5, Some(0.0)).is_err());
    }

    #[test]
    fn blur_keeps_a_constant_image() {
        let r = Raster::from_fn(6, 4, 1, |_, _, _| 0.75f32);
        let b = r.gaussian_blur(&GaussianKernel::opencv(5, 1.3).unwrap());
        assert!(b.as_slice().iter().all(|v| (v - 0.75).abs() < 1e-6));
    }
}
