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

use burn::tensor::FloatDType;
use clap::Parser;
use hd_painter::hd_painter_core::peak_rss_bytes;
use hd_painter::{
    BlendedVariant, BrushNetModel, BrushNetSettings, CropSettings, DefaultAttention, Hooks, Image,
    InpaintRequest, Lora, Mask, MaskChannel, MaskEdit, MaskOptions, MicroConditioning, ModelSource,
    Painter, PreFill, PromptSyntax, SeedRule, SizeRule, SrOutput, SrSettings,
    StableDiffusionModels, Stage, StepView, TextualInversion,
};
use hd_painter_examples::{dtype_name, random_seed};
use indicatif::{ProgressBar, ProgressStyle};

mod args;
mod batch;
mod checks;
mod pixel;

pub(crate) use args::{
    Args, BlendedArg, FillArg, MaskChannelArg, MethodName, SeedRuleArg, SizeRuleArg, SrSize,
};
pub(crate) use batch::Job;

/// What can end a run early.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Run(#[from] hd_painter::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{failed} of {total} files failed (reported above)")]
    Batch { failed: usize, total: usize },
}

impl RunError {
    fn cancelled(&self) -> bool {
        matches!(self, RunError::Run(e) if e.is_cancelled())
    }
}

impl From<hd_painter::hd_painter_core::CoreError> for RunError {
    fn from(e: hd_painter::hd_painter_core::CoreError) -> Self {
        RunError::Run(e.into())
    }
}

impl From<hd_painter::hd_painter_models::ModelsError> for RunError {
    fn from(e: hd_painter::hd_painter_models::ModelsError) -> Self {
        RunError::Run(e.into())
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

/// The models of a run: Stable Diffusion's, or a pixel-space RePaint model.
enum Loaded {
    Latent(Box<Painter>),
    Pixel(hd_painter::PixelPainter),
}

fn run(args: &Args, cancel: &AtomicBool) -> Result<(), RunError> {
    let jobs = batch::jobs(args)?;
    checks::check_before_loading(args, &jobs)?;
    let painter = match pixel::wanted(args) {
        true => {
            pixel::check(args)?;
            Loaded::Pixel(pixel::load(args)?)
        }
        false => Loaded::Latent(Box::new(load(args)?)),
    };
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
        let result = match &painter {
            Loaded::Latent(painter) => run_job(args, painter, job, cancel),
            Loaded::Pixel(painter) => pixel::run_job(args, painter, job, cancel),
        };
        match result {
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

/// Loads the models the command line names, once for every job.
fn load(args: &Args) -> Result<Painter, RunError> {
    let bar = progress_bar();
    let device = args.backend.device()?;
    bar.set_message("loading the model");
    let variant = args.variant.as_deref();
    let main = ModelSource::parse(&args.model, args.config.as_deref())?;
    let dtype = args.dtype.resolve(&main, variant, args.backend)?;
    // Weights stored in half precision are converted as they are read, unless something is
    // fused into them first (LoRAs and embeddings go into the f32 weights, so that they round
    // once).
    let direct = !args.half_activations && args.lora.is_empty() && args.embedding.is_empty();
    let precision = |models: StableDiffusionModels, dtype| match (args.half_activations, direct) {
        (true, _) => models.with_dtype(dtype),
        (false, true) => models,
        (false, false) => models.with_weight_dtype(dtype),
    };
    let load = |source: &ModelSource, dtype| {
        let stored = if direct { dtype } else { FloatDType::F32 };
        StableDiffusionModels::from_source_with_weight_dtype(source, variant, stored, &device)
            .map_err(RunError::from)
    };
    let mut models = load(&main, dtype)?;
    // Fused while the weights are f32, so that half-precision weights round once.
    for (file, scale) in &args.lora {
        bar.set_message(format!("fusing {}", file.display()));
        let started = Instant::now();
        let lora = Lora::open(file)?;
        models.fuse_lora(&lora, *scale)?;
        let layers: usize = lora.layers().values().sum();
        let seconds = started.elapsed().as_secs_f64();
        // Printed past the bar, which is hidden when the output is not a terminal.
        bar.suspend(|| {
            println!(
                "fused {} at {scale}: {layers} layers in {seconds:.1} s",
                file.display()
            )
        });
    }
    for file in &args.embedding {
        models.load_textual_inversion(&TextualInversion::open(file, None)?)?;
    }
    let mut painter = Painter::new(precision(models, dtype));
    let mut dtypes = format!("weights: {} (first stage)", dtype_name(dtype));
    if let Some(dir) = &args.brushnet {
        bar.set_message("loading BrushNet");
        let branch = BrushNetModel::load(dir, args.variant.as_deref(), &device)?;
        painter = painter.with_brushnet(match args.half_activations {
            true => branch.with_dtype(dtype),
            false => branch.with_weight_dtype(dtype),
        });
    }
    if let (true, Some(spec)) = (args.sr, &args.sr_model) {
        bar.set_message("loading the upscaler");
        let source = ModelSource::parse(spec, None)?;
        // `auto` decides for each model: the x4 upscaler is an SD 2 model, f32 on the CPU even
        // after an SDXL first stage.
        let sr_dtype = args.dtype.resolve(&source, None, args.backend)?;
        dtypes += &format!(", {} (SR stage)", dtype_name(sr_dtype));
        painter = painter.with_upscaler(precision(load(&source, sr_dtype)?, sr_dtype))?;
    }
    bar.finish_and_clear();
    println!("{dtypes}");
    Ok(painter)
}

/// The photo and mask of a job, the mask read with the channel the method expects.
fn read_inputs(args: &Args, job: &Job) -> Result<(Image, Mask, bool), RunError> {
    let image = Image::open(&job.image)?;
    let hd_painter = args.method.hd_painter();
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
fn run_job(args: &Args, painter: &Painter, job: &Job, cancel: &AtomicBool) -> Result<(), RunError> {
    let started = Instant::now();
    let (image, mask, hd_painter) = read_inputs(args, job)?;
    let bar = progress_bar();
    let first_seed = args.seed.unwrap_or_else(random_seed);
    let seed_rule = match (args.seed_rule, hd_painter) {
        (Some(SeedRuleArg::HdPainter), _) | (None, true) => SeedRule::HdPainter,
        (Some(SeedRuleArg::Consecutive), _) | (None, false) => SeedRule::Consecutive,
    };
    let seeds = seed_rule.seeds(first_seed, args.num_images);
    let request = configure(painter.request(&image, &mask, &job.prompt), args, painter)
        .seeds(seeds.clone())
        .sr(sr_settings(args));
    print_memory_estimate(args, painter, &image, seeds.len(), &bar)?;
    bar.set_message("encoding the prompt");
    // The whole run's steps: the first stage's as its first step reports them, then each
    // image's SR run.
    let sr_steps = match painter.upscaler {
        Some(_) => (args.sr_steps * seeds.len()) as u64,
        None => 0,
    };
    let mut run_start = 0u64;
    let mut on_step = |view: &StepView<'_>| {
        let stage = stage_number(view, &seeds);
        if view.step == 1 {
            run_start = bar.position();
            if view.stage == Stage::Inpaint {
                bar.set_length(run_start + view.total as u64 + sr_steps);
                bar.reset_eta();
            }
            bar.set_message(match view.stage {
                Stage::Inpaint => "inpainting".to_string(),
                Stage::SuperResolution => format!("super-resolution {}/{}", stage - 1, seeds.len()),
            });
        }
        bar.set_position(run_start + view.step as u64);
        if let Some(k) = args.preview_every
            && (view.step.is_multiple_of(k) || view.step == view.total)
        {
            let path = preview_path(&job.output, stage, view.step);
            match painter.preview(view).and_then(|p| Ok(p.save(&path)?)) {
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
    let images = request.run_with(Hooks::new(&mut attention, &mut on_step))?;
    bar.finish_and_clear();

    let mut written = Vec::new();
    for (i, (out, seed)) in images.iter().zip(&seeds).enumerate() {
        let path = numbered(&job.output, i, images.len());
        out.save(&path)?;
        println!("seed {seed}: {}", path.display());
        written.push(path);
    }
    let peak = peak_memory();
    println!(
        "done: {} image(s) in {:.1} s, peak memory {peak}, seed {first_seed}, method {:?}{}",
        written.len(),
        started.elapsed().as_secs_f64(),
        args.method,
        if painter.upscaler.is_some() {
            " + SR"
        } else {
            ""
        },
    );
    Ok(())
}

/// The models' [`MemoryEstimate`](hd_painter::hd_painter_models::MemoryEstimate) for the run,
/// before it starts: the first stage at the size it inpaints at (the crop's with
/// `--crop-to-mask`), or with `--sr` the SR stage at the output's size (the first stage runs
/// smaller), whose x4 models are held beside the first stage's.
fn print_memory_estimate(
    args: &Args,
    painter: &Painter,
    image: &Image,
    images: usize,
    bar: &ProgressBar,
) -> Result<(), RunError> {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let (width, height) = match args.crop_to_mask {
        Some(_) => args.crop_size,
        None => (image.width(), image.height()),
    };
    let guided = args.guidance.map_or(!args.lcm, |g| g != 1.0);
    let first = painter
        .models
        .memory_estimate([height as usize, width as usize], images, guided);
    let branch = painter.brushnet.as_ref().map_or(0, |b| b.weight_bytes());
    let line = match painter.upscaler.is_some() {
        true => {
            let size = (image.width(), image.height());
            let sr = painter
                .upscaler()?
                .memory_estimate(size, &sr_settings(args));
            let held = first.weights + branch;
            format!(
                "memory estimate of the SR stage for {}x{}: {sr}, and {:.2} GiB of first-stage \
                 weights",
                size.0,
                size.1,
                gib(held)
            )
        }
        false if branch > 0 => format!(
            "memory estimate at {width}x{height}: {first} and {:.2} GiB of BrushNet weights",
            gib(branch)
        ),
        false => format!("memory estimate at {width}x{height}: {first}"),
    };
    // Printed past the bar, which is hidden when the output is not a terminal.
    bar.suspend(|| println!("{line}"));
    Ok(())
}

/// The process's peak resident memory so far, for the summary line.
fn peak_memory() -> String {
    peak_rss_bytes().map_or("n/a".to_string(), |b| {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    })
}

/// The SR stage's settings from the command line.
fn sr_settings(args: &Args) -> SrSettings {
    SrSettings {
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
    }
}

/// A step's stage as the preview files number it: 1 for the first stage, `1 + k` for image k's
/// SR run.
fn stage_number(view: &StepView<'_>, seeds: &[u64]) -> usize {
    match view.stage {
        Stage::Inpaint => 1,
        Stage::SuperResolution => {
            let image = view
                .seeds
                .first()
                .and_then(|s| seeds.iter().position(|x| x == s));
            2 + image.unwrap_or(0)
        }
    }
}

/// The request with the method and the command line's overrides.
fn configure<'a>(
    request: InpaintRequest<'a>,
    args: &Args,
    painter: &Painter,
) -> InpaintRequest<'a> {
    let brushnet = BrushNetSettings {
        conditioning_scale: args.brushnet_scale,
        ..BrushNetSettings::default()
    };
    let mut request = request.options(args.method.options(painter, brushnet));
    if let Some(steps) = args.steps {
        request = request.steps(steps);
    }
    if let Some(g) = args.guidance {
        request = request.guidance_scale(g);
    }
    if let Some(eta) = args.eta {
        request = request.eta(eta);
    }
    if let Some(kind) = args.scheduler {
        request = request.scheduler(kind);
    }
    if args.karras {
        request = request.karras(true);
    }
    if args.lcm {
        request = request.lcm();
    }
    if args.prompt_weighting {
        request = request.prompt_syntax(PromptSyntax::Weighted);
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
        FillArg::Telea => PreFill::Telea {
            radius: args.fill_radius,
        },
        FillArg::Ns => PreFill::NavierStokes {
            radius: args.fill_radius,
        },
    });
    request = request
        .pre_fill(fill)
        .soft_mask(args.soft_mask)
        .mask_edit(MaskEdit {
            grow: args.grow,
            blur: args.mask_blur,
        });
    request = request
        .micro_conditioning(micro_conditioning(args))
        .strength(args.strength)
        .denoising_end(args.denoising_end)
        .blended_variant(match args.blended {
            BlendedArg::Paper => BlendedVariant::Paper,
            BlendedArg::Diffusers => BlendedVariant::Diffusers,
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

/// SDXL's micro-conditioning from the `--original-size`, `--target-size`,
/// `--crops-coords-top-left` and `--aesthetic-scores` flags (`WxH` on the command line,
/// `[height, width]` in the library, as diffusers orders them).
fn micro_conditioning(args: &Args) -> MicroConditioning {
    let hw = |size: Option<(u32, u32)>| size.map(|(w, h)| [h, w]);
    let defaults = MicroConditioning::default();
    let (aesthetic_score, negative_aesthetic_score) = args
        .aesthetic_scores
        .unwrap_or((defaults.aesthetic_score, defaults.negative_aesthetic_score));
    MicroConditioning {
        original_size: hw(args.original_size),
        target_size: hw(args.target_size),
        crops_coords_top_left: args.crops_coords_top_left.map_or([0, 0], |(t, l)| [t, l]),
        aesthetic_score,
        negative_aesthetic_score,
        ..defaults
    }
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
