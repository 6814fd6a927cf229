//! The sampling tests' helpers, and the painter of a fixture pipeline.

#![allow(dead_code, missing_docs)] // each test binary uses part of this module

#[path = "../../../hd-painter-sampling/tests/common/mod.rs"]
mod sampling;

pub use sampling::*;

/// The [`Painter`](hd_painter::Painter) of a fixture pipeline folder.
pub fn painter(folder: &str) -> hd_painter::Painter {
    let dir = fixtures().join("models").join(folder);
    let models = hd_painter_models::StableDiffusionModels::load(dir, None, &device()).unwrap();
    hd_painter::Painter::new(models)
}

/// A 24x16 photo with its left half a hole, for the request tests.
pub fn inputs() -> (hd_painter_core::Image, hd_painter_core::Mask) {
    let rgb = (0..24 * 16 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let hole = (0..24 * 16)
        .map(|i| if i % 24 < 12 { 255 } else { 0 })
        .collect();
    (
        hd_painter_core::Image::from_rgb8(24, 16, rgb).unwrap(),
        hd_painter_core::Mask::from_luma8(24, 16, hole).unwrap(),
    )
}
