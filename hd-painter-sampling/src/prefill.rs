//! Filling the hole of the input before it is encoded, for the methods that start from the
//! image (Blended, RePaint, `strength < 1`) and for photos whose RGB under an erased (alpha)
//! hole is blank: Automatic1111's and InvokeAI's "masked content" / infill choices.

use hd_painter_core::{Image, InfillMethod, Mask, NoiseStream, Raster, sub_seed};

use crate::error::Result;

/// What the hole's pixels are replaced with before encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreFill {
    /// The mean colour of the known pixels (rounded; mid-grey when nothing is known).
    Mean,
    /// Uniform random colours from `seed` (the same for every seed of a run).
    Noise {
        /// The noise's seed.
        seed: u64,
    },
    /// OpenCV's `cv2.inpaint(image, hole, radius, cv2.INPAINT_TELEA)` ([`Image::infill`]).
    Telea {
        /// OpenCV's `inpaintRadius`, 1 to 100 (3 is the usual choice).
        radius: u32,
    },
    /// OpenCV's `cv2.inpaint(image, hole, radius, cv2.INPAINT_NS)` ([`Image::infill`]).
    NavierStokes {
        /// OpenCV's `inpaintRadius`, 1 to 100.
        radius: u32,
    },
}

impl PreFill {
    /// `image` with every pixel where `hole` is non-zero replaced.
    ///
    /// ```
    /// use hd_painter_core::{Image, Mask};
    /// use hd_painter_sampling::PreFill;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let image = Image::from_rgb8(2, 1, vec![10, 20, 30, 0, 0, 0])?; // the right pixel erased
    /// let hole = Mask::from_luma8(2, 1, vec![0, 255])?;
    /// let filled = PreFill::Mean.apply(&image, &hole)?;
    /// assert_eq!(filled.raster().as_slice(), &[10, 20, 30, 10, 20, 30]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn apply(&self, image: &Image, hole: &Mask) -> Result<Image> {
        hole.ensure_matches(image, "pre-fill hole vs image")?;
        match *self {
            PreFill::Mean => {
                let (mut sum, mut n) = ([0u64; 3], 0u64);
                let known = image
                    .raster()
                    .as_slice()
                    .chunks_exact(3)
                    .zip(hole.raster().as_slice());
                for (p, _) in known.filter(|(_, m)| **m == 0) {
                    for c in 0..3 {
                        sum[c] += u64::from(p[c]);
                    }
                    n += 1;
                }
                let mean = match n {
                    0 => [128; 3],
                    n => sum.map(|s| ((s as f64 / n as f64).round()) as u8),
                };
                replace(image, hole, |_| mean)
            }
            PreFill::Noise { seed } => replace(image, hole, |i| {
                let x = sub_seed(seed, NoiseStream::PreFill, i);
                [x as u8, (x >> 8) as u8, (x >> 16) as u8]
            }),
            PreFill::Telea { radius } => Ok(image.infill(hole, InfillMethod::Telea, radius)?),
            PreFill::NavierStokes { radius } => {
                Ok(image.infill(hole, InfillMethod::NavierStokes, radius)?)
            }
        }
    }
}

/// `image` with pixel `i` replaced by `fill(i)` wherever `hole` is non-zero.
fn replace(image: &Image, hole: &Mask, fill: impl Fn(usize) -> [u8; 3]) -> Result<Image> {
    let mut out = image.raster().as_slice().to_vec();
    for (i, (p, &m)) in out
        .chunks_exact_mut(3)
        .zip(hole.raster().as_slice())
        .enumerate()
    {
        if m != 0 {
            p.copy_from_slice(&fill(i));
        }
    }
    Ok(Image::from_raster(Raster::from_vec(
        image.width(),
        image.height(),
        3,
        out,
    )?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_changes_only_the_hole_and_follows_its_seed() {
        let image = Image::from_rgb8(4, 1, vec![7; 12]).unwrap();
        let hole = Mask::from_luma8(4, 1, vec![0, 255, 255, 0]).unwrap();
        let a = PreFill::Noise { seed: 1 }.apply(&image, &hole).unwrap();
        let b = PreFill::Noise { seed: 2 }.apply(&image, &hole).unwrap();
        let (ra, rb) = (a.raster().as_slice(), b.raster().as_slice());
        assert_eq!((&ra[..3], &ra[9..]), (&[7u8; 3][..], &[7u8; 3][..]));
        assert_ne!(&ra[3..9], &rb[3..9]);
        assert_eq!(a, PreFill::Noise { seed: 1 }.apply(&image, &hole).unwrap());
        let all = Mask::from_luma8(4, 1, vec![255; 4]).unwrap();
        let grey = PreFill::Mean.apply(&image, &all).unwrap();
        assert!(
            grey.raster().as_slice().iter().all(|&v| v == 128),
            "nothing known: mid-grey"
        );
    }
}
