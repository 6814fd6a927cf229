//! # hd-painter-sampling
//!
//! The diffusion loop as composable parts: noise schedules in `f64` (and in diffusers' exact
//! `f32` arithmetic), the timestep grids of diffusers' DDIM scheduler and HD-Painter, the DDIM
//! update with an optional noise or guidance term, and RePaint's resampling walk, merge and undo
//! steps. Samplers (Stable Inpainting, Blended Latent Diffusion, RePaint, RASG) build on these.
//!
//! ```
//! use hd_painter_sampling::{NoiseSchedule, Spacing, timesteps};
//!
//! let schedule = NoiseSchedule::stable_diffusion();
//! let grid = timesteps(Spacing::HdPainter, schedule.len(), 50);
//! assert_eq!((grid[0], grid[1], grid[49]), (999, 979, 19));
//! ```

mod ddim;
mod schedule;

pub use ddim::{DdimStep, Prediction, ddim_sigma, ddim_step, predict, repaint_step, undo_steps};
pub use schedule::{NoiseSchedule, Spacing, repaint_walk, timesteps};

pub use hd_painter_core;
