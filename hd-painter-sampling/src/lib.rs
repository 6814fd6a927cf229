//! # hd-painter-sampling
//!
//! The diffusion loop as composable parts: noise schedules in `f64` (and in diffusers' exact
//! `f32` arithmetic), the timestep grids of diffusers' DDIM scheduler and HD-Painter, the DDIM
//! update with an optional noise or guidance term, RePaint's resampling walk, merge and undo
//! steps, and the DDIM sampling loop (classifier-free guidance, per-method latent strategies,
//! cancellable per-step callbacks with the x0 prediction, seeded per-image noise) with the
//! Stable Inpainting strategy.
//!
//! ```
//! use hd_painter_sampling::{NoiseSchedule, Spacing, timesteps};
//!
//! let schedule = NoiseSchedule::stable_diffusion();
//! let grid = timesteps(Spacing::HdPainter, schedule.len(), 50);
//! assert_eq!((grid[0], grid[1], grid[49]), (999, 979, 19));
//! ```

mod ddim;
mod error;
mod inpaint;
mod pipeline;
mod repaint;
mod sampler;
mod schedule;
mod scheduler;

pub use ddim::{
    DdimStep, Prediction, ddim_sigma, ddim_step, ddpm_step, predict, repaint_step, undo_steps,
};
pub use error::{Result, SamplingError};
pub use inpaint::{BlendedLatents, StableInpainting, StepNoise};
pub use pipeline::{InpaintOptions, Inpainter, Method, PasteBack, encode_prompts};
pub use repaint::{KnownRegion, NoiseDraws, RepaintSettings, sample_repaint, seeded_draws};
pub use sampler::{
    DdimSettings, LatentStrategy, PlainLatents, Sampled, StepRule, StepView, TextConditioning,
    guided_output, initial_latents, sample_ddim,
};
pub use schedule::{NoiseSchedule, Spacing, repaint_walk, timesteps};
pub use scheduler::{Ddim, Ddpm, Scheduler};

pub use hd_painter_core;
