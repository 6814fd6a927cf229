//! `--method repaint` on a pixel-space model folder (RePaint as published: a diffusers DDPM
//! folder such as google/ddpm-ema-celebahq-256, or an official RePaint checkpoint converted by
//! `tools/convert_guided_diffusion.py`): no text, no VAE, the model's own resolution.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hd_painter::{PixelPainter, PixelRepaintMode, PixelRepaintSettings, PixelRequest, SeedRule};
use hd_painter_examples::random_seed;

use crate::args::RepaintModeArg;
use crate::{Args, Job, RunError, numbered, peak_memory, progress_bar, read_inputs};

/// Whether the run is RePaint on a pixel-space model folder.
pub(crate) fn wanted(args: &Args) -> bool {
    args.method == crate::MethodName::Repaint && PixelPainter::is_pixel_folder(&args.model)
}

/// The options that have no meaning for a pixel-space model, refused before loading.
pub(crate) fn check(args: &Args) -> Result<(), RunError> {
    let unused = [
        (args.sr, "--sr"),
        (args.brushnet.is_some(), "--brushnet"),
        (!args.lora.is_empty(), "--lora"),
        (!args.embedding.is_empty(), "--embedding"),
        (args.lcm, "--lcm"),
        (args.scheduler.is_some(), "--scheduler"),
        (args.karras, "--karras"),
        (args.guidance.is_some(), "--guidance"),
        (args.negative_prompt.is_some(), "--negative-prompt"),
        (args.prompt_weighting, "--prompt-weighting"),
        (args.fill.is_some(), "--fill"),
        (args.variant.is_some(), "--variant"),
    ];
    if let Some((_, flag)) = unused.iter().find(|(set, _)| *set) {
        return Err(RunError::Usage(format!(
            "{flag} has no effect on a pixel-space RePaint model ({}: unconditional, no text \
             encoder, VAE or scheduler choice)",
            args.model
        )));
    }
    Ok(())
}

/// Loads the model folder.
pub(crate) fn load(args: &Args) -> Result<PixelPainter, RunError> {
    let bar = progress_bar();
    bar.set_message("loading the model");
    let painter = PixelPainter::load(&args.model, &args.backend.device()?)?;
    bar.finish_and_clear();
    Ok(painter)
}

/// The walk the command line asks for, over the model's default.
fn settings(args: &Args, painter: &PixelPainter) -> PixelRepaintSettings {
    let default = painter.default_settings();
    let eta = args.eta.unwrap_or(0.0);
    let mode = match (args.repaint_mode, default.mode) {
        (Some(RepaintModeArg::Official), _) => PixelRepaintMode::Official,
        (Some(RepaintModeArg::Diffusers), _) | (None, PixelRepaintMode::Diffusers { .. }) => {
            PixelRepaintMode::Diffusers { eta }
        }
        (None, mode) => mode,
    };
    PixelRepaintSettings {
        steps: args.steps.unwrap_or(default.steps),
        jump_length: args.jump_length,
        jump_n_sample: args.jump_n_sample,
        mode,
        ..default
    }
}

/// One image and mask: every seed's result written, as the latent methods do.
pub(crate) fn run_job(
    args: &Args,
    painter: &PixelPainter,
    job: &Job,
    cancel: &AtomicBool,
) -> Result<(), RunError> {
    let started = Instant::now();
    let (image, mask, _) = read_inputs(args, job)?;
    let first_seed = args.seed.unwrap_or_else(random_seed);
    let rule = match args.seed_rule {
        Some(crate::SeedRuleArg::HdPainter) => SeedRule::HdPainter,
        _ => SeedRule::Consecutive,
    };
    let seeds = rule.seeds(first_seed, args.num_images);
    let request = PixelRequest {
        settings: settings(args, painter),
        seeds: seeds.clone(),
        class_label: args.class_label,
        padding: args.crop_to_mask.unwrap_or(32),
    };
    let bar = progress_bar();
    bar.set_message(format!("RePaint at {0}x{0}", painter.side()));
    let images = painter.inpaint(&image, &mask, &request, &mut |step| {
        bar.set_length(step.total as u64);
        bar.set_position(step.step as u64);
        match cancel.load(Ordering::SeqCst) {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    })?;
    bar.finish_and_clear();
    for (i, (out, seed)) in images.iter().zip(&seeds).enumerate() {
        let path = numbered(&job.output, i, images.len());
        out.save(&path)?;
        println!("seed {seed}: {}", path.display());
    }
    let peak = peak_memory();
    println!(
        "done: {} image(s) in {:.1} s, peak memory {peak}, seed {first_seed}, RePaint {:?} at {}x{}",
        images.len(),
        started.elapsed().as_secs_f64(),
        request.settings.mode,
        painter.side(),
        painter.side(),
    );
    Ok(())
}
