//! # hd-painter
//!
//! Text-guided image inpainting with diffusion models on [burn](https://burn.dev): HD-Painter
//! (PAIntA, RASG and its inpainting-specialised x4 super-resolution stage), BrushNet, RePaint,
//! Stable Inpainting and Blended Latent Diffusion, on published Stable Diffusion folders and
//! single-file checkpoints.
//!
//! This crate is the entry point: a [`Painter`] holds the loaded models (the inpainting
//! pipeline, optionally a BrushNet branch and the x4 upscaler), [`Painter::request`] builds a
//! run with the method's reference settings, and the same request runs the first stage alone,
//! the SR stage alone or both ([`Stages`]), with one step callback that names the stage
//! ([`StepView::stage`]). The parts it is built from are the sibling crates, re-exported
//! whole: [`hd_painter_core`] (images, masks, errors, backends), [`hd_painter_models`] (UNet,
//! VAE, CLIP, loading, attention processors), [`hd_painter_sampling`] (schedules, the sampling
//! run, the methods) and [`hd_painter_sr`] (the SR stage, Poisson blending).
//!
//! ## Quick start
//!
//! A pipeline folder, an image, a mask (white = hole) and a prompt; HD-Painter's reference
//! settings unless told otherwise. (This example runs on the repository's tiny random-weight
//! fixture models; give it `stable-diffusion-2-inpainting` and `stable-diffusion-x4-upscaler`
//! for real pictures.)
//!
//! ```
//! use std::ops::ControlFlow;
//!
//! use hd_painter::{
//!     BackendKind, DefaultAttention, HdPainter, Hooks, Image, Mask, ModelSource, Painter,
//!     SchedulerKind, SrSettings, Stage, Stages, StableDiffusionModels,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
//! # let model = format!("{fixtures}/models/pipeline_hd_painter");
//! # let x4 = format!("{fixtures}/models/pipeline_x4");
//! # let (photo, hole) = (format!("{fixtures}/core/rgb.png"), format!("{fixtures}/core/mask.png"));
//! let device = BackendKind::default().device()?; // flex CPU; wgpu / cuda with their features
//! // A diffusers folder; `ModelSource::parse` also takes single-file checkpoints and hub ids.
//! let load = |path: &str| StableDiffusionModels::from_source(&ModelSource::parse(path, None)?, None, &device);
//! let painter = Painter::new(load(&model)?).with_upscaler(load(&x4)?)?;
//! let (image, mask) = (Image::open(&photo)?, Mask::open(&hole)?);
//! let request = painter
//!     .request(&image, &mask, "a red leather sofa")
//!     .hd_painter(Some(HdPainter::painta_only())) // default: PAIntA + RASG
//!     .seeds(vec![1, 2])
//!     .steps(4) // default 50
//!     .sr(SrSettings { steps: 2, long_side: 128, ..SrSettings::default() }); // default 20, 2048
//!
//! // Both stages (the default with an upscaler), with a callback that sees every step.
//! let mut sr_steps = 0;
//! let mut attention = DefaultAttention::default();
//! let images = request.run_with(Hooks::new(&mut attention, &mut |view| {
//!     if view.stage == Stage::SuperResolution {
//!         sr_steps += 1; // `painter.preview(view)` decodes the step's x0 prediction
//!     }
//!     ControlFlow::Continue(()) // Break(()) cancels: `Error::is_cancelled`
//! }))?;
//! assert_eq!((images[0].width(), images[0].height()), (image.width(), image.height()));
//! assert_eq!(sr_steps, 2 * 2); // each image's SR run
//!
//! // The first stage alone, then the SR stage alone on its result.
//! let first = request.clone().stages(Stages::First).seeds(vec![1]).run()?;
//! let upscaled = request.clone().stages(Stages::Sr { first_stage: &first[0] }).seeds(vec![1]).run()?;
//! assert_eq!(upscaled.len(), 1);
//!
//! // Plain Stable Inpainting with DPM++ 2M Karras (the folder's scheduler otherwise).
//! let fast = request
//!     .hd_painter(None)
//!     .stages(Stages::First)
//!     .scheduler(SchedulerKind::named("dpm++2m")?)
//!     .karras(true);
//! assert!(fast.planned_scheduler()?.karras);
//! fast.run()?;
//! # Ok(())
//! # }
//! ```
//!
//! LoRA files, textual-inversion embeddings, LCM-LoRA's few-step preset and Automatic1111's
//! prompt syntax:
//!
//! ```
//! use hd_painter::{
//!     BackendKind, Image, Lora, Mask, Method, Painter, PromptSyntax, StableDiffusionModels,
//!     TextualInversion,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
//! # let model = format!("{fixtures}/models/pipeline_inpaint");
//! # let lora = format!("{fixtures}/models/lora/kohya_inpaint.safetensors");
//! # let embedding = format!("{fixtures}/models/textual_inversion/cat_toy.safetensors");
//! # let (photo, hole) = (format!("{fixtures}/core/rgb.png"), format!("{fixtures}/core/mask.png"));
//! let device = BackendKind::default().device()?;
//! let mut models = StableDiffusionModels::load(&model, None, &device)?;
//! models.fuse_lora(&Lora::open(&lora)?, 0.8)?; // kohya-ss / A1111 or diffusers / PEFT files
//! models.load_textual_inversion(&TextualInversion::open(&embedding, None)?)?; // `<cat-toy>`
//! let painter = Painter::new(models);
//! let (image, mask) = (Image::open(&photo)?, Mask::open(&hole)?);
//! let request = painter
//!     .request(&image, &mask, "a (red leather:1.3) sofa BREAK with a <cat-toy>")
//!     .method(Method::StableInpainting)
//!     .hd_painter(None)
//!     .lcm() // the LCM scheduler, 4 steps, guidance 1, unless set
//!     .prompt_syntax(PromptSyntax::Weighted);
//! assert_eq!(request.settings()?.sampler.steps, 4);
//! assert_eq!(request.run()?.len(), 1);
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

mod error;
mod painter;
mod pixel;
mod request;

pub use error::{Error, Result};
pub use painter::{Painter, SrModels};
pub use pixel::{PixelModel, PixelPainter, PixelRequest};
pub use request::{InpaintRequest, LCM_GUIDANCE, LCM_STEPS, Stages};

pub use hd_painter_core::{
    self, BackendKind, Image, Mask, MaskChannel, MaskOptions, Quantize, SizeRule,
};
pub use hd_painter_models::{
    self, AttentionProcessor, BrushNetModel, DefaultAttention, Lora, ModelSource,
    StableDiffusionModels, TextualInversion,
};
pub use hd_painter_sampling::{
    self, BlendedVariant, BrushNetSettings, CropSettings, HdPainter, Hooks, InpaintOptions,
    MaskEdit, Method, MicroConditioning, PasteBack, PixelRepaintMode, PixelRepaintSettings,
    PixelStep, PreFill, PromptSyntax, RasgSettings, RepaintSettings, SamplingError, SchedulerKind,
    SchedulerSpec, SeedRule, Stage, StepView,
};
pub use hd_painter_sr::{self, SrError, SrOutput, SrSettings};
