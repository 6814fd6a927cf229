//! The mask's edits before sampling (ComfyUI's `grow_mask_by`, diffusers' `blur_factor`).

use hd_painter_core::Mask;

use crate::error::Result;

/// The mask's edits before sampling: grown (or shrunk) first, then blurred.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct MaskEdit {
    /// Pixels to grow the hole by with a square (`cv2.dilate`); negative shrinks it
    /// (`cv2.erode`). ComfyUI's `grow_mask_by`.
    pub grow: i32,
    /// Pillow's Gaussian blur radius (diffusers' `blur_factor`; 0: none). The blurred mask's
    /// grey levels are then read as each method reads a soft mask (binarised at 128, or any
    /// non-zero value for HD-Painter).
    pub blur: f32,
}

impl MaskEdit {
    /// `mask` with the edits applied.
    pub fn apply(&self, mask: &Mask) -> Result<Mask> {
        let grown = mask.grow(self.grow)?;
        Ok(match self.blur > 0.0 {
            true => grown.blur(self.blur),
            false => grown,
        })
    }
}
