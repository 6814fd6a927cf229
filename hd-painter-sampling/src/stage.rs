//! HD-Painter's first-stage inputs, prepared as the official `src/methods/{sd,rasg}.py` prepare
//! them: `image.padx(64)` and `mask.dilate(1).alpha().padx(64)`, then the latent-size mask of
//! `get_inpainting_condition`.

use hd_painter_core::{Filter, Footprint, Image, Mask, PadMode};

use crate::error::Result;

/// The padded image, the hole and its latent-size form of an HD-Painter run.
#[derive(Clone, Debug, PartialEq)]
pub struct HdPainterInputs {
    /// The image, zero-padded on the right and bottom to the multiple.
    pub image: Image,
    /// The hole: every non-zero mask pixel (soft edges included), dilated by a 3x3 cross, then
    /// zero-padded (so a hole touching the right or bottom border does not grow into the
    /// padding). 255 = hole.
    pub hole: Mask,
    /// The hole resized (bicubic) to the latent size, any non-zero value hole.
    pub latent_hole: Mask,
}

impl HdPainterInputs {
    /// Prepares `image` and `mask` (same size; any non-zero value is hole) for a model that needs
    /// sizes in multiples of `multiple` and whose latents are `latent_factor` times smaller.
    ///
    /// The official mask is `IImage(mask).dilate(1).alpha()`: scipy's dilation of the whole
    /// `(1, H, W, C)` array, whose cross also links neighbouring channels, then the last channel.
    /// A [`Mask`] is one channel, so this is the official result for grey masks; for the
    /// official channel of a colour file read it with
    /// [`MaskChannel::Blue`](hd_painter_core::MaskChannel::Blue).
    ///
    /// # Examples
    ///
    /// ```
    /// use hd_painter_core::{Image, Mask};
    /// use hd_painter_sampling::HdPainterInputs;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let image = Image::from_rgb8(100, 70, vec![200; 100 * 70 * 3])?;
    /// let mut hole = vec![0u8; 100 * 70];
    /// hole[35 * 100 + 50] = 1; // one faint pixel is hole too
    /// let inputs = HdPainterInputs::prepare(&image, &Mask::from_luma8(100, 70, hole)?, 64, 8)?;
    /// assert_eq!((inputs.image.width(), inputs.image.height()), (128, 128));
    /// assert_eq!(inputs.hole.raster().as_slice().iter().filter(|&&v| v == 255).count(), 5);
    /// assert_eq!((inputs.latent_hole.width(), inputs.latent_hole.height()), (16, 16));
    /// # Ok(())
    /// # }
    /// ```
    pub fn prepare(image: &Image, mask: &Mask, multiple: u32, latent_factor: u32) -> Result<Self> {
        mask.ensure_matches(image, "HD-Painter mask vs image")?;
        let image = image.pad_to_multiple(multiple, PadMode::Zero)?;
        let hole = mask
            .threshold(0)
            .dilate(Footprint::Cross { radius: 1 })?
            .pad_to_multiple(multiple, PadMode::Zero)?;
        let latent_hole = hole
            .resize(
                hole.width() / latent_factor,
                hole.height() / latent_factor,
                Filter::Bicubic,
            )?
            .threshold(0);
        Ok(Self {
            image,
            hole,
            latent_hole,
        })
    }
}

/// How the seeds of several images follow from the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SeedRule {
    /// `seed, seed + 1, seed + 2, ...` (diffusers' and ComfyUI's batch convention).
    #[default]
    Consecutive,
    /// The official `hd_inpaint.py`: sample `i` (from 1) uses `seed + 1000 (i - 1)`.
    HdPainter,
}

impl SeedRule {
    /// The seeds of `count` images starting from `first` (wrapping at `u64::MAX`).
    ///
    /// ```
    /// use hd_painter_sampling::SeedRule;
    ///
    /// assert_eq!(SeedRule::HdPainter.seeds(1, 3), vec![1, 1001, 2001]);
    /// assert_eq!(SeedRule::Consecutive.seeds(1, 3), vec![1, 2, 3]);
    /// ```
    pub fn seeds(self, first: u64, count: usize) -> Vec<u64> {
        let stride = match self {
            SeedRule::Consecutive => 1,
            SeedRule::HdPainter => 1000,
        };
        (0..count as u64)
            .map(|i| first.wrapping_add(i.wrapping_mul(stride)))
            .collect()
    }
}
