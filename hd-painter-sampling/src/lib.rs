//! # hd-painter-sampling
//!
//! The diffusion loop as composable parts: noise schedules in `f64` (and in diffusers' exact
//! `f32` arithmetic), the timestep grids of diffusers' schedulers and HD-Painter's, the
//! schedulers ([`Scheduler`], built from a [`SchedulerSpec`] or a folder's config: DDIM with an
//! optional noise or guidance term, DDPM, PNDM, Euler, Euler a, DPM++ 2M (SDE), DEIS, UniPC,
//! LCM),
//! RePaint's resampling walk, merge and undo steps (and RePaint as published in pixel space,
//! [`PixelRepaint`], in the official code's and diffusers' semantics), and one sampling run ([`Sampler`]) against a per-method [`LatentStrategy`] and a
//! [`Guidance`] (classifier-free, [`ClassifierFree`], or HD-Painter's RASG, [`Rasg`], whose
//! gradient term replaces the DDIM step's random one, through burn's autodiff), with
//! cancellable per-step callbacks that see the x0 prediction and seeded per-image noise;
//! HD-Painter's PAIntA ([`Painta`]) is an attention processor. [`HdPainter`] switches PAIntA
//! and RASG together in the image-level [`Inpainter`].
//!
//! ## Use
//!
//! The one entry point for whole runs, the SR stage included, is the `hd-painter` crate's
//! `Painter`. This crate's image-level run is [`Inpainter::inpaint`] with [`InpaintOptions`]
//! and prompts from [`encode_prompts`] / [`encode_hd_painter_prompts`]; its [`Hooks`] are an
//! [`AttentionProcessor`](hd_painter_models::AttentionProcessor) and a step callback that sees
//! each step's x0 prediction and can cancel:
//!
//! ```no_run
//! use std::ops::ControlFlow;
//!
//! use hd_painter_core::{BackendKind, Image, Mask};
//! use hd_painter_models::{DefaultAttention, StableDiffusionModels};
//! use hd_painter_sampling::{Hooks, InpaintOptions, Inpainter, Method, NoiseSchedule, encode_prompts};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let device = BackendKind::default().device()?;
//!     let sd = StableDiffusionModels::load("stable-diffusion-2-inpainting", None, &device)?;
//!     let (image, mask) = (Image::open("photo.jpg")?, Mask::open("mask.png")?);
//!     let text = encode_prompts(&sd, "a red leather sofa", "blurry, low quality")?;
//!     let schedule = NoiseSchedule::stable_diffusion();
//!     let inpainter = Inpainter::new(&sd.unet, &sd.vae, &schedule);
//!     let options = InpaintOptions { method: Method::StableInpainting, seeds: vec![1, 2], ..Default::default() };
//!     let mut attention = DefaultAttention::default();
//!     let images = inpainter.inpaint(&image, &mask, &text, &options, Hooks::new(&mut attention, &mut |step| {
//!         eprintln!("step {}/{} (t = {})", step.step, step.total, step.timestep);
//!         ControlFlow::Continue(()) // Break(()) cancels: Err(SamplingError::Cancelled)
//!     }))?;
//!     for (i, out) in images.iter().enumerate() {
//!         out.save(format!("out-{i}.png"))?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! HD-Painter's reference run is `InpaintOptions::hd_painter(HdPainter::full())` with the prompts
//! of [`encode_hd_painter_prompts`]; its prompt tokens:
//!
//! ```no_run
//! use hd_painter_models::ClipTokenizer;
//! use hd_painter_sampling::{HD_PAINTER_POSITIVE_PROMPT, full_prompt, prompt_token_indices};
//!
//! let tokenizer = ClipTokenizer::from_dir("stable-diffusion-2-inpainting/tokenizer").unwrap();
//! let full = full_prompt("a red sofa", HD_PAINTER_POSITIVE_PROMPT);
//! // "a", "red", "sofa" and the end-of-text token of the full prompt.
//! assert_eq!(prompt_token_indices(&tokenizer, "a red sofa", &full), [1, 2, 3, 16]);
//! ```
//!
//! The grids are diffusers' and HD-Painter's:
//!
//! ```
//! use hd_painter_sampling::{NoiseSchedule, Spacing, timesteps};
//!
//! let schedule = NoiseSchedule::stable_diffusion();
//! let grid = timesteps(Spacing::HdPainter, schedule.len(), 50);
//! assert_eq!((grid[0], grid[1], grid[49]), (999, 979, 19));
//! ```
//!
//! The run on its own, as the image-level entry points call it:
//!
//! ```
//! use std::ops::ControlFlow;
//!
//! use burn::tensor::{Distribution, Tensor};
//! use hd_painter_models::{DefaultAttention, Unet2DConditionModel};
//! use hd_painter_sampling::{
//!     ClassifierFree, SamplerSettings, Hooks, LatentStrategy, NoiseSchedule, Sampler, Stage, TextConditioning,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let unet_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/models/unet_sd2");
//! # let device = hd_painter_core::BackendKind::default().device()?;
//! let unet = Unet2DConditionModel::load(unet_dir, None, &device)?;
//! let dim = unet.cross_attention_dim();
//! let text = TextConditioning {
//!     positive: Tensor::random([1, 77, dim], Distribution::Normal(0.0, 1.0), &device),
//!     negative: Tensor::zeros([1, 77, dim], &device),
//!     prompt_tokens: vec![1, 2],
//!     text_time: None,
//! };
//! struct Plain; // text-to-image: the UNet sees the latents alone
//! impl LatentStrategy for Plain {}
//! let (mut steps, mut attention) = (0, DefaultAttention::default());
//! let settings = SamplerSettings { steps: 2, ..SamplerSettings::default() };
//! let sampled = Sampler {
//!     unet: &unet,
//!     schedule: &NoiseSchedule::stable_diffusion(),
//!     text: &text,
//!     seeds: &[7],
//!     stage: Stage::Inpaint,
//!     hooks: Hooks::new(&mut attention, &mut |_| { steps += 1; ControlFlow::Continue(()) }),
//! }
//! .run(&settings, &mut Plain, &ClassifierFree, hd_painter_core::seeded_noise(&[7], [4, 8, 8], &device))?;
//! assert_eq!((steps, sampled.latents.dims()), (2, [1, 4, 8, 8]));
//! # Ok(())
//! # }
//! ```
//!
//! ## Cargo features
//! | feature | effect |
//! |---|---|
//! | (none) | the burn-flex CPU backend |
//! | `wgpu`, `cuda` | burn's GPU backends, forwarded to `hd-painter-core` |
//! | `hub` | Hugging Face Hub model ids, forwarded to `hd-painter-models` |

mod brushnet;
mod conditioning;
mod crop;
mod ddim;
mod differential;
mod error;
mod focus;
mod guidance;
mod inpaint;
mod inpainter;
mod mask_edit;
mod painta;
mod pipeline;
mod pixel_repaint;
mod prefill;
mod prompts;
mod rasg;
mod repaint;
mod sampler;
mod schedule;
mod schedulers;
mod stage;
mod strategy;
mod validate;

pub use brushnet::{BrushNetLatents, BrushNetSettings, brushnet_blend, brushnet_condition};
pub use conditioning::{MicroConditioning, TextConditioning, TextTimeConditioning, TimeIds};
pub use crop::{CropBox, CropSettings, crop_region, crop_regions, stitch};
pub use ddim::{Prediction, StepOutput, ddim_sigma, ddim_step, ddpm_step, predict};
pub use differential::DifferentialLatents;
pub use error::{Result, SamplingError};
pub use focus::{
    HD_PAINTER_NEGATIVE_PROMPT, HD_PAINTER_POSITIVE_PROMPT, PromptFocus, full_prompt,
    prompt_token_indices,
};
pub use guidance::{ClassifierFree, Guidance, Guided, ModelCall, StepTerm};
pub use inpaint::{BlendedLatents, BlendedVariant, StableInpainting, StepNoise, to_batch};
pub use inpainter::Inpainter;
pub use mask_edit::MaskEdit;
pub use painta::{Painta, PaintaScale};
pub use pipeline::{HdPainter, InpaintOptions, Method, PasteBack};
pub use pixel_repaint::{
    KnownPixels, OnPixelStep, PixelRepaint, PixelRepaintMode, PixelRepaintSettings, PixelStep,
    respaced, space_timesteps,
};
pub use prefill::PreFill;
pub use prompts::{
    PromptSyntax, encode_hd_painter_prompts, encode_prompts, encode_prompts_with_positive,
};
pub use rasg::{Rasg, RasgSettings, RasgSigma};
pub use repaint::{
    KnownLatents, KnownRegion, NoiseDraws, RepaintSettings, repaint_step, seeded_draws, undo_steps,
};
pub use sampler::{Hooks, OnStep, Sampled, Sampler, SamplerSettings, Stage, StepView};
pub use schedule::{NoiseSchedule, Spacing, repaint_walk, strided_repaint_walk, timesteps};
pub use schedulers::{
    Denoised, FinalSigma, NoiseLevel, NoiseTerm, Scheduler, SchedulerKind, SchedulerSpec,
    SolverType,
};
pub use stage::{HdPainterInputs, SeedRule};
pub use strategy::{LatentStrategy, StepPosition};

pub use hd_painter_core;
