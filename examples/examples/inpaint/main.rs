//! Fills the masked region of a photo from a text prompt.
//!
//! ```text
//! cargo run --release --example inpaint -- photo.jpg mask.png "a red leather sofa" out.png \
//!     --model stable-diffusion-2-inpainting [--method hd-painter] [--sr --sr-model stable-diffusion-x4-upscaler]
//! ```
//!
//! The mask is white where the image is to be filled. `--help` lists every option. A progress
//! bar covers every stage; Ctrl-C stops after the current step (a second Ctrl-C exits at once).

/// mimalloc keeps freed pages for reuse: the models allocate and free large activations at every
/// layer, and the system allocator hands them back to the kernel and faults them in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::tensor::{FloatDType, Tensor};
use clap::{Parser, ValueEnum};
use hd_painter_core::{
    BackendKind, Image, Mask, MaskChannel, MaskOptions, Quantize, SizeRule, peak_rss_bytes,
};
use hd_painter_models::{
    AutoencoderKl, BrushNetModel, DefaultAttention, ModelSource, StableDiffusionModels,
};
use hd_painter_sampling::{
    BrushNetSettings, CropSettings, HdPainter, InpaintOptions, MaskEdit, Method, NoiseSchedule,
    Painter, PreFill, RepaintSettings, SamplingError, SeedRule, StepView,
    encode_prompts_with_positive,
};
use hd_painter_sr::{SR_POSITIVE_PROMPT, SrError, SrOutput, SrSettings, TwoStage, Upscaler};
use indicatif::{ProgressBar, ProgressStyle};

mod batch;
mod checks;

pub(crate) use batch::Job;

/// The methods, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    /// HD-Painter: PAIntA + RASG with its reference settings.
    HdPainter,
    /// HD-Painter with PAIntA only.
    Painta,
    /// HD-Painter with RASG only.
    Rasg,
    /// Stable Inpainting (9-channel model), diffusers' defaults.
    Stable,
    /// Blended Latent Diffusion (4-channel model).
    Blended,
    /// RePaint (4-channel model).
    Repaint,
    /// BrushNet (4-channel model with `--brushnet`).
    Brushnet,
}

/// The weights' precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DTypeArg {
    /// f32, the reference path.
    F32,
    /// bfloat16 weights: half the memory, about 0.5% from f32 (2% with `--half-activations`).
    Bf16,
    /// float16 weights: half the memory, within 1e-3 of f32 (1e-2 with `--half-activations`).
    F16,
}

impl From<DTypeArg> for FloatDType {
    fn from(d: DTypeArg) -> Self {
        match d {
            DTypeArg::F32 => FloatDType::F32,
            DTypeArg::Bf16 => FloatDType::BF16,
            DTypeArg::F16 => FloatDType::F16,
        }
    }
}

/// The SR stage's output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SrSize {
    /// The input's exact size.
    Input,
    /// The long side given by `--sr-long-side` (the reference: 2048).
    LongSide,
}

/// The mask file's channel that marks the hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MaskChannelArg {
    /// The grey level (Pillow's `convert("L")`).
    Luma,
    /// The blue channel of the RGB conversion: the official HD-Painter code's.
    Blue,
    /// The alpha channel (opaque = hole).
    Alpha,
}

/// What the hole is filled with before encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FillArg {
    /// The known region's mean colour.
    Mean,
    /// Random colours (from `--seed`).
    Noise,
}

/// The long-side rule of the first stage's size with `--sr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SizeRuleArg {
    /// `hd_inpaint.py`'s `src/utils.resize`.
    Script,
    /// The official demo's `IImage.resize`.
    Demo,
}

/// How the seeds of several images follow from `--seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SeedRuleArg {
    /// `seed + 1000 i` (the official `hd_inpaint.py`).
    HdPainter,
    /// `seed + i`.
    Consecutive,
}

/// Text-guided inpainting with HD-Painter, Stable Inpainting, Blended Latent Diffusion, RePaint
/// or BrushNet, optionally followed by HD-Painter's x4 super-resolution stage.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The photo (PNG, JPEG or WebP).
    #[arg(required_unless_present = "batch")]
    image: Option<PathBuf>,
    /// The mask, same size as the photo: white where the photo is to be filled (>= 128; with
    /// the HD-Painter methods any non-zero value, as the official code reads it).
    #[arg(required_unless_present = "batch")]
    mask: Option<PathBuf>,
    /// What to paint into the hole.
    #[arg(required_unless_present = "batch")]
    prompt: Option<String>,
    /// Where to write the result (PNG, JPEG or WebP by extension); with several images,
    /// `-{i}` is added before the extension.
    #[arg(required_unless_present = "batch")]
    output: Option<PathBuf>,
    /// Run a batch instead of IMAGE MASK PROMPT OUTPUT, loading the models once: a CSV of
    /// `image,mask,prompt` rows (paths relative to the CSV), or a folder of `NAME.EXT` photos
    /// with `NAME_mask.EXT` masks (and `--batch-prompt`). Files that fail are reported and
    /// skipped; the exit code is 1 if any failed.
    #[arg(long, value_name = "CSV_OR_DIR", conflicts_with_all = ["image", "mask", "prompt", "output"])]
    batch: Option<PathBuf>,
    /// Where a batch writes `NAME.png` for each photo.
    #[arg(long, value_name = "DIR", requires = "batch")]
    out_dir: Option<PathBuf>,
    /// The prompt of a batch folder's photos, and of CSV rows without one.
    #[arg(long, value_name = "TEXT", requires = "batch")]
    batch_prompt: Option<String>,
    /// The inpainting model: a diffusers pipeline folder, an original-layout single-file
    /// checkpoint (`.safetensors`, with `--config`), or `hub:ORG/NAME` (feature `hub`).
    #[arg(long)]
    model: String,
    /// For a single-file checkpoint: a diffusers folder with the component configs and the
    /// tokenizer (no weights needed).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Load the `{name}.{variant}.safetensors` weights of a folder (e.g. `fp16`).
    #[arg(long)]
    variant: Option<String>,
    /// The weights' precision (whatever the files store, they are cast to it). Every layer
    /// computes in f32 with its weights widened as it runs, unless `--half-activations`.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    dtype: DTypeArg,
    /// Compute in `--dtype` too (fast on GPUs; on the CPU slower and less precise than f32
    /// activations).
    #[arg(long)]
    half_activations: bool,
    /// The method.
    #[arg(long, value_enum, default_value_t = MethodArg::HdPainter)]
    method: MethodArg,
    /// A BrushNet branch folder (`config.json`, `diffusion_pytorch_model.safetensors`) for
    /// `--method brushnet` with a 4-channel `--model`.
    #[arg(long, value_name = "DIR")]
    brushnet: Option<PathBuf>,
    /// BrushNet's conditioning scale.
    #[arg(long, default_value_t = 1.0)]
    brushnet_scale: f64,
    /// Run HD-Painter's x4 super-resolution stage after the first one.
    #[arg(long)]
    sr: bool,
    /// The x4 upscaler (same forms as `--model`); required with `--sr`.
    #[arg(long)]
    sr_model: Option<String>,
    /// The SR stage's output size.
    #[arg(long, value_enum, default_value_t = SrSize::Input)]
    sr_size: SrSize,
    /// The SR stage's working long side (the reference's 2048).
    #[arg(long, default_value_t = 2048)]
    sr_long_side: u32,
    /// The SR stage's steps.
    #[arg(long, default_value_t = 20)]
    sr_steps: usize,
    /// The first image's seed (random when not given); see `--seed-rule` for the others.
    #[arg(long)]
    seed: Option<u64>,
    /// The seeds of several images: `seed + 1000 i` (hd-painter, the default of the HD-Painter
    /// methods, as the official code) or `seed + i` (consecutive, the others' default).
    #[arg(long, value_enum)]
    seed_rule: Option<SeedRuleArg>,
    /// The mask's channel: blue (the official HD-Painter code's, the default of its methods;
    /// the grey level of a grey mask), luma (the others' default) or alpha.
    #[arg(long, value_enum)]
    mask_channel: Option<MaskChannelArg>,
    /// Inpaint only a box around the hole, PAD pixels wider on each side and widened to
    /// `--crop-size`'s aspect, at that size, then stitch it back (diffusers'
    /// `padding_mask_crop`); with `--sr`, a box larger than the first stage goes through both
    /// stages at its own size.
    #[arg(long, value_name = "PAD")]
    crop_to_mask: Option<u32>,
    /// Grow the hole by PX pixels (a square dilation, as `cv2.dilate`) before anything else;
    /// negative shrinks it (`--grow=-4`).
    #[arg(
        long,
        value_name = "PX",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    grow: i32,
    /// Blur the mask with Pillow's Gaussian blur of radius R after growing it (diffusers'
    /// `blur_factor`); the blurred grey levels are read as each method reads soft masks.
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    mask_blur: f32,
    /// Swap hole and known region after reading the mask (e.g. `--mask-channel alpha
    /// --invert-mask`: transparent = hole, for a photo erased in an editor, given as both IMAGE
    /// and MASK).
    #[arg(long)]
    invert_mask: bool,
    /// Fill the hole before encoding: mean (the known region's mean colour) or noise; for the
    /// methods that start from the image, and for erased photos whose RGB there is blank.
    #[arg(long, value_enum)]
    fill: Option<FillArg>,
    /// Read the mask's grey levels as per-pixel strength (Differential Diffusion): grey is
    /// generated part way, white from the start (`--method stable` or `blended`).
    #[arg(long)]
    soft_mask: bool,
    /// With `--crop-to-mask`, one box per hole (boxes that overlap merged) instead of one box
    /// around all of them.
    #[arg(long, requires = "crop_to_mask")]
    crop_each_hole: bool,
    /// The size the `--crop-to-mask` box is inpainted at, `WIDTHxHEIGHT`.
    #[arg(long, value_name = "WxH", default_value = "512x512", value_parser = parse_size)]
    crop_size: (u32, u32),
    /// The first stage's size with `--sr` (the SR long side / 4): the official script's rule
    /// or the demo's, which differ by a pixel for some sizes.
    #[arg(long, value_enum, default_value_t = SizeRuleArg::Script)]
    size_rule: SizeRuleArg,
    /// How many images to make.
    #[arg(long, default_value_t = 1)]
    num_images: usize,
    /// Denoising steps (the method's default when not given: 50; RePaint 250).
    #[arg(long)]
    steps: Option<usize>,
    /// Classifier-free guidance scale (7.5 when not given; 1 turns guidance off).
    #[arg(long)]
    guidance: Option<f64>,
    /// RASG's eta with RASG on (0.1), DDIM's eta otherwise (0).
    #[arg(long)]
    eta: Option<f64>,
    /// The negative prompt (HD-Painter's by default for its methods, empty otherwise).
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Text appended to the prompt (HD-Painter's "Full HD, 4K, ..." by default for its methods).
    #[arg(long)]
    positive_prompt: Option<String>,
    /// The backend: flex (CPU, default), or ndarray / wgpu / cuda when compiled in.
    #[arg(long, default_value_t = BackendKind::Flex)]
    backend: BackendKind,
    /// Write a preview of the predicted image every K steps (`{output}-preview-...png`).
    #[arg(long, value_name = "K")]
    preview_every: Option<usize>,
    /// Allow the output to be one of the inputs (which it then replaces).
    #[arg(long)]
    overwrite: bool,
}

/// What can end a run early.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Core(#[from] hd_painter_core::CoreError),
    #[error(transparent)]
    Models(#[from] hd_painter_models::ModelsError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error(transparent)]
    Sr(#[from] SrError),
    #[error("{0}")]
    Usage(String),
    #[error("{failed} of {total} files failed (reported above)")]
    Batch { failed: usize, total: usize },
}

impl RunError {
    fn cancelled(&self) -> bool {
        matches!(
            self,
            RunError::Sampling(SamplingError::Cancelled { .. })
                | RunError::Sr(SrError::Sampling(SamplingError::Cancelled { .. }))
        )
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let handler = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: stopping after the current step (Ctrl-C again to exit now)");
    });
    if let Err(e) = handler {
        eprintln!("warning: Ctrl-C will not cancel cleanly: {e}");
    }
    match run(&args, &cancel) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.cancelled() => {
            eprintln!("{e}; nothing written");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, cancel: &AtomicBool) -> Result<(), RunError> {
    let jobs = batch::jobs(args)?;
    checks::check_before_loading(args, &jobs)?;
    let models = load(args)?;
    let (mut failed, mut skipped) = (0, 0);
    for job in &jobs {
        // A batch never replaces an earlier result unless asked.
        if args.batch.is_some() && !args.overwrite && job.output.exists() {
            eprintln!(
                "skipped: {} exists (--overwrite replaces it)",
                job.output.display()
            );
            skipped += 1;
            continue;
        }
        match run_job(args, &models, job, cancel) {
            Ok(()) => {}
            // A batch goes on past a file it cannot do, and says so.
            Err(e) if args.batch.is_some() && !e.cancelled() => {
                eprintln!("failed: {}: {e}", job.image.display());
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if args.batch.is_some() {
        println!(
            "batch: {} of {} done, {failed} failed, {skipped} skipped",
            jobs.len() - failed - skipped,
            jobs.len()
        );
    }
    match failed {
        0 => Ok(()),
        failed => Err(RunError::Batch {
            failed,
            total: jobs.len(),
        }),
    }
}

/// The models, loaded once for every job.
struct Models {
    painter: Painter,
    upscaler: Option<StableDiffusionModels>,
    sr_schedule: NoiseSchedule,
}

/// The progress bar of a run.
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<24} [{bar:30}] {pos}/{len} steps, {elapsed} elapsed, ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// Loads the models the command line names.
fn load(args: &Args) -> Result<Models, RunError> {
    let bar = progress_bar();
    let device = args.backend.device()?;
    bar.set_message("loading the model");
    let dtype = FloatDType::from(args.dtype);
    let precision = |models: StableDiffusionModels| match args.half_activations {
        true => models.with_dtype(dtype),
        false => models.with_weight_dtype(dtype),
    };
    let mut painter = Painter::new(precision(StableDiffusionModels::from_source(
        &ModelSource::parse(&args.model, args.config.as_deref())?,
        args.variant.as_deref(),
        &device,
    )?));
    if let Some(dir) = &args.brushnet {
        bar.set_message("loading BrushNet");
        let branch = BrushNetModel::load(dir, args.variant.as_deref(), &device)?;
        painter = painter.with_brushnet(match args.half_activations {
            true => branch.with_dtype(dtype),
            false => branch.with_weight_dtype(dtype),
        });
    }
    let upscaler = match (&args.sr, &args.sr_model) {
        (true, Some(spec)) => {
            bar.set_message("loading the upscaler");
            Some(precision(StableDiffusionModels::from_source(
                &ModelSource::parse(spec, None)?,
                args.variant.as_deref(),
                &device,
            )?))
        }
        _ => None,
    };

    bar.finish_and_clear();
    Ok(Models {
        painter,
        upscaler,
        sr_schedule: NoiseSchedule::x4_upscaler(),
    })
}

/// The photo and mask of a job, the mask read with the channel the method expects.
fn read_inputs(args: &Args, job: &Job) -> Result<(Image, Mask, bool), RunError> {
    let image = Image::open(&job.image)?;
    let hd_painter = matches!(
        args.method,
        MethodArg::HdPainter | MethodArg::Painta | MethodArg::Rasg
    );
    let channel = match (args.mask_channel, hd_painter) {
        (Some(MaskChannelArg::Luma), _) | (None, false) => MaskChannel::Luma,
        (Some(MaskChannelArg::Blue), _) | (None, true) => MaskChannel::Blue,
        (Some(MaskChannelArg::Alpha), _) => MaskChannel::Alpha,
    };
    let mask = Mask::open_with(
        &job.mask,
        MaskOptions {
            channel,
            invert: args.invert_mask,
            ..MaskOptions::default()
        },
    )?;
    mask.ensure_matches(
        &image,
        &format!(
            "mask {} vs image {}",
            job.mask.display(),
            job.image.display()
        ),
    )?;
    let (level, marks) = match hd_painter {
        true => (0, "no non-zero pixel"),
        false => (127, "no pixel >= 128"),
    };
    if mask.threshold(level).is_empty() {
        eprintln!(
            "warning: {} marks no hole ({marks} in its {channel:?} channel); the output is the \
             input unchanged",
            job.mask.display()
        );
    }

    Ok((image, mask, hd_painter))
}

/// One photo: its images written, a summary line.
fn run_job(args: &Args, models: &Models, job: &Job, cancel: &AtomicBool) -> Result<(), RunError> {
    let started = Instant::now();
    let (image, mask, hd_painter) = read_inputs(args, job)?;
    let bar = progress_bar();
    let first_seed = args.seed.unwrap_or_else(random_seed);
    let seed_rule = match (args.seed_rule, hd_painter) {
        (Some(SeedRuleArg::HdPainter), _) | (None, true) => SeedRule::HdPainter,
        (Some(SeedRuleArg::Consecutive), _) | (None, false) => SeedRule::Consecutive,
    };
    let seeds = seed_rule.seeds(first_seed, args.num_images);
    let request = configure(
        models.painter.request(&image, &mask, &job.prompt),
        args,
        &models.painter,
    )
    .seeds(seeds.clone());
    let options = request.settings();
    options.validate()?;
    bar.set_message("encoding the prompt");
    let text = request.encode()?;
    let sr_text = models
        .upscaler
        .as_ref()
        .map(|x4| encode_prompts_with_positive(x4, &job.prompt, SR_POSITIVE_PROMPT, ""))
        .transpose()?;
    let sr_settings = SrSettings {
        steps: args.sr_steps,
        long_side: args.sr_long_side,
        stage_size: match args.size_rule {
            SizeRuleArg::Script => SizeRule::Script,
            SizeRuleArg::Demo => SizeRule::Demo,
        },
        output: match args.sr_size {
            SrSize::Input => SrOutput::InputSize,
            SrSize::LongSide => SrOutput::LongSide,
        },
        ..SrSettings::default()
    };

    // The whole run's steps: the first stage's as the loop reports them, then each image's SR.
    let sr_steps = models
        .upscaler
        .as_ref()
        .map_or(0, |_| args.sr_steps * seeds.len());
    let mut stage = 0usize;
    let mut stage_start = 0u64;
    let vaes: Vec<&AutoencoderKl> = std::iter::once(&models.painter.models.vae)
        .chain(models.upscaler.iter().map(|m| &m.vae))
        .collect();
    let mut on_step = |view: &StepView<'_>| {
        if view.step == 1 {
            stage += 1;
            stage_start = bar.position();
            if stage == 1 {
                bar.set_length(view.total as u64 + sr_steps as u64);
                bar.reset_eta();
            }
            bar.set_message(if stage == 1 {
                "inpainting".to_string()
            } else {
                format!("super-resolution {}/{}", stage - 1, seeds.len())
            });
        }
        bar.set_position(stage_start + view.step as u64);
        if let Some(k) = args.preview_every
            && (view.step.is_multiple_of(k) || view.step == view.total)
        {
            let vae = vaes[(stage - 1).min(vaes.len() - 1)];
            let path = preview_path(&job.output, stage, view.step);
            match write_preview(vae, view.pred_x0, &path) {
                Ok(()) => bar.println(format!("preview: {}", path.display())),
                Err(e) => bar.println(format!("warning: no preview at step {}: {e}", view.step)),
            }
        }
        if cancel.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };

    let mut attention = DefaultAttention::default();
    let images = match (&models.upscaler, &sr_text) {
        (Some(x4), Some(sr_text)) => TwoStage {
            inpainter: models.painter.inpainter(),
            upscaler: Upscaler {
                unet: &x4.unet,
                vae: &x4.vae,
                schedule: &models.sr_schedule,
            },
        }
        .run(
            &image,
            &mask,
            &text,
            &options,
            sr_text,
            &sr_settings,
            &mut attention,
            &mut on_step,
        )?,
        _ => models.painter.inpainter().inpaint(
            &image,
            &mask,
            &text,
            &options,
            &mut attention,
            &mut on_step,
        )?,
    };
    bar.finish_and_clear();

    let mut written = Vec::new();
    for (i, (out, seed)) in images.iter().zip(&seeds).enumerate() {
        let path = numbered(&job.output, i, images.len());
        out.save(&path)?;
        println!("seed {seed}: {}", path.display());
        written.push(path);
    }
    let peak = peak_rss_bytes().map_or("n/a".to_string(), |b| {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    });
    println!(
        "done: {} image(s) in {:.1} s, peak memory {peak}, seed {first_seed}, method {:?}{}",
        written.len(),
        started.elapsed().as_secs_f64(),
        args.method,
        if models.upscaler.is_some() {
            " + SR"
        } else {
            ""
        },
    );
    Ok(())
}

/// The request with the method and the command line's overrides.
fn configure<'a>(
    request: hd_painter_sampling::InpaintRequest<'a>,
    args: &Args,
    painter: &Painter,
) -> hd_painter_sampling::InpaintRequest<'a> {
    let hd = |variant: HdPainter| InpaintOptions {
        method: painter.fitting_method(),
        ..InpaintOptions::hd_painter(variant)
    };
    let plain = |method: Method| InpaintOptions {
        method,
        ..InpaintOptions::default()
    };
    let mut request = request.options(match args.method {
        MethodArg::HdPainter => hd(HdPainter::full()),
        MethodArg::Painta => hd(HdPainter::painta_only()),
        MethodArg::Rasg => hd(HdPainter::rasg_only()),
        MethodArg::Stable => plain(Method::StableInpainting),
        MethodArg::Blended => plain(Method::Blended),
        MethodArg::Repaint => plain(Method::Repaint(RepaintSettings::default())),
        MethodArg::Brushnet => InpaintOptions::brushnet(BrushNetSettings {
            conditioning_scale: args.brushnet_scale,
            ..BrushNetSettings::default()
        }),
    });
    if let Some(steps) = args.steps {
        request = request.steps(steps);
    }
    if let Some(g) = args.guidance {
        request = request.guidance_scale(g);
    }
    if let Some(eta) = args.eta {
        request = request.eta(eta);
    }
    if let Some(n) = &args.negative_prompt {
        request = request.negative_prompt(n);
    }
    if let Some(p) = &args.positive_prompt {
        request = request.positive_prompt(p);
    }
    let fill = args.fill.map(|f| match f {
        FillArg::Mean => PreFill::Mean,
        FillArg::Noise => PreFill::Noise {
            seed: args.seed.unwrap_or(0),
        },
    });
    request = request
        .pre_fill(fill)
        .soft_mask(args.soft_mask)
        .mask_edit(MaskEdit {
            grow: args.grow,
            blur: args.mask_blur,
        });
    if let Some(padding) = args.crop_to_mask {
        request = request.crop_to_mask(CropSettings {
            padding,
            size: args.crop_size,
            each_hole: args.crop_each_hole,
        });
    }
    request
}

/// `WIDTHxHEIGHT`.
fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once('x')
        .ok_or_else(|| format!("{text:?}: expected WIDTHxHEIGHT, e.g. 512x512"))?;
    let side = |v: &str| {
        v.parse::<u32>()
            .map_err(|e| format!("{text:?}: {v:?} is not a size in pixels ({e})"))
    };
    Ok((side(w)?, side(h)?))
}

/// A seed from the clock, for runs that give none (printed, so the run can be repeated).
fn random_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64 % 1_000_000_007)
}

/// `out.png` for one image; `out-0.png`, `out-1.png`, ... for several.
fn numbered(output: &Path, i: usize, n: usize) -> PathBuf {
    if n == 1 {
        return output.to_path_buf();
    }
    with_suffix(output, &format!("-{i}"))
}

/// `out-preview-s{stage}-{step:03}.png` next to the output.
fn preview_path(output: &Path, stage: usize, step: usize) -> PathBuf {
    let mut p = with_suffix(output, &format!("-preview-s{stage}-{step:03}"));
    p.set_extension("png");
    p
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}{suffix}"),
    };
    path.with_file_name(name)
}

/// Decodes the first image of an x0 prediction and writes it.
fn write_preview(vae: &AutoencoderKl, pred_x0: &Tensor<4>, path: &Path) -> Result<(), RunError> {
    let first = pred_x0.clone().slice(0..1);
    let decoded = vae.decode(first / vae.scaling_factor())?;
    Image::from_tensor(decoded, Quantize::Round)?.save(path)?;
    Ok(())
}
