//! # hd-painter-models
//!
//! The model stack: UNet2DConditionModel, AutoencoderKL, the CLIP / OpenCLIP text encoders with
//! the CLIP BPE tokenizer, weight loading from diffusers-format safetensors, and pluggable attention
//! processors (PAIntA among them).
//!
//! This crate is being built: it has no public items yet beyond the re-export of
//! [`hd_painter_core`], on which it stands. See the workspace README for what works today.

pub use hd_painter_core;
