//! # hd-painter-sr
//!
//! HD-Painter's inpainting-specialised x4 super-resolution stage (x0 blending with the known
//! region, Poisson blending) up to 2048 px.
//!
//! This crate is being built: it has no public items yet beyond the re-export of
//! [`hd_painter_core`], on which it stands. See the workspace README for what works today.

pub use hd_painter_core;
