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
