//! The command line checked before any model is loaded, so that a run on a real model (minutes
//! on a CPU, hours with SR) is never thrown away on a setting or an output it could have refused
//! at once.

use std::path::Path;

use crate::{Args, Job, MethodName, RunError, numbered};

/// A usage error when `bad`.
fn refuse(bad: bool, message: impl FnOnce() -> String) -> Result<(), RunError> {
    if bad {
        Err(RunError::Usage(message()))
    } else {
        Ok(())
    }
}

/// The numeric settings and their combinations.
fn check_settings(args: &Args) -> Result<(), RunError> {
    refuse(args.num_images == 0, || {
        "--num-images must be at least 1".into()
    })?;
    refuse(args.sr && args.sr_model.is_none(), || {
        "--sr needs --sr-model".into()
    })?;
    refuse(
        (args.method == MethodName::Brushnet) != args.brushnet.is_some(),
        || "--method brushnet and --brushnet DIR go together".into(),
    )?;
    refuse(args.steps == Some(0), || {
        "--steps must be at least 1".into()
    })?;
    refuse(args.sr && args.sr_steps == 0, || {
        "--sr-steps must be at least 1".into()
    })?;
    refuse(args.sr && args.sr_long_side < 64, || {
        format!(
            "--sr-long-side must be at least 64, found {}",
            args.sr_long_side
        )
    })?;
    refuse(args.crop_size.0 < 8 || args.crop_size.1 < 8, || {
        format!(
            "--crop-size must be at least 8x8, found {}x{}",
            args.crop_size.0, args.crop_size.1
        )
    })?;
    refuse(
        !(args.mask_blur.is_finite() && args.mask_blur >= 0.0),
        || {
            format!(
                "--mask-blur must be a finite radius >= 0, found {}",
                args.mask_blur
            )
        },
    )?;
    refuse(!(1..=100).contains(&args.fill_radius), || {
        format!("--fill-radius must be 1 to 100, found {}", args.fill_radius)
    })?;
    refuse(args.preview_every == Some(0), || {
        "--preview-every must be at least 1".into()
    })?;
    if let Some(g) = args.guidance {
        refuse(!g.is_finite(), || {
            format!("--guidance must be a finite number, found {g}")
        })?;
    }
    if let Some(eta) = args.eta {
        refuse(!(eta.is_finite() && eta >= 0.0), || {
            format!("--eta must be a finite number >= 0, found {eta}")
        })?;
    }
    refuse(
        args.lcm && matches!(args.method, MethodName::HdPainter | MethodName::Rasg),
        || {
            "--lcm steps with the LCM scheduler and RASG needs DDIM: use --method painta \
             (PAIntA alone), stable, blended or brushnet"
                .into()
        },
    )?;
    refuse(args.lcm && args.method == MethodName::Repaint, || {
        "--lcm is for the methods that step with a scheduler; RePaint walks its own DDPM grid"
            .into()
    })?;
    let scale = args.brushnet_scale;
    refuse(!scale.is_finite(), || {
        format!("--brushnet-scale must be a finite number, found {scale}")
    })
}

/// Whether `a` and `b` are the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Everything that can be checked before loading: the settings, and each output path (a
/// format that can be written, an existing folder, not one of the inputs unless
/// `--overwrite`).
pub(crate) fn check_before_loading(args: &Args, jobs: &[Job]) -> Result<(), RunError> {
    check_settings(args)?;
    if let Some(dir) = &args.out_dir {
        refuse(!dir.is_dir(), || {
            format!("--out-dir {} is not a folder", dir.display())
        })?;
    }
    for job in jobs {
        for i in 0..args.num_images {
            let output = numbered(&job.output, i, args.num_images);
            hd_painter::hd_painter_core::check_output_path(&output)?;
            for input in [&job.image, &job.mask] {
                refuse(!args.overwrite && same_file(&output, input), || {
                    format!(
                        "the output {} is the input {}: choose another path, or pass --overwrite",
                        output.display(),
                        input.display()
                    )
                })?;
            }
        }
    }
    Ok(())
}
