//! # hd-painter-sampling
//!
//! The diffusion loop as composable parts: noise schedules, the scheduler and sampler traits, DDIM,
//! RASG guidance, RePaint resampling and Blended Latent Diffusion.
//!
//! This crate is being built: it has no public items yet beyond the re-export of
//! [`hd_painter_core`], on which it stands. See the workspace README for what works today.

pub use hd_painter_core;
