//! Prepares an image and a mask exactly as the official HD-Painter code does before its 512 px
//! inpainting stage (the same [`HdPainterInputs`] the pipeline runs), and writes what the UNet
//! will see:
//!
//! ```text
//! cargo run --example prepare -- photo.jpg mask.png out/
//! ```
//!
//! Long side 512 (Pillow bicubic, `hd_inpaint.py`'s size rule), zero padding to a multiple of
//! 64; the hole is every non-zero pixel of the mask's blue channel (the official channel; the
//! grey level of a grey mask), dilated by a 3x3 cross, then padded; plus the latent-resolution
//! mask (bicubic to H/8, then > 0).

use std::path::PathBuf;
use std::process::ExitCode;

use hd_painter::hd_painter_core::{Filter, Image, Mask, MaskChannel, MaskOptions, SizeRule};
use hd_painter::hd_painter_sampling::{HdPainterInputs, Result};

fn run(image: PathBuf, mask: PathBuf, out: PathBuf) -> Result<()> {
    let photo = Image::open(&image)?;
    let hole = Mask::open_with(
        &mask,
        MaskOptions {
            channel: MaskChannel::Blue,
            ..MaskOptions::default()
        },
    )?;
    hole.ensure_matches(
        &photo,
        &format!("mask {} vs image {}", mask.display(), image.display()),
    )?;
    if hole.is_empty() {
        eprintln!(
            "warning: {} marks no hole; nothing would be inpainted",
            mask.display()
        );
    }

    let stage = |m: &Mask| m.resize_long_side(512, SizeRule::Script, Filter::Bicubic);
    let inputs = HdPainterInputs::prepare(
        &photo.resize_long_side(512, SizeRule::Script, Filter::Bicubic)?,
        &stage(&hole)?,
        64,
        8,
    )?;
    let (photo, hole, latent) = (inputs.image, inputs.hole, inputs.latent_hole);

    std::fs::create_dir_all(&out).map_err(|source| hd_painter::hd_painter_core::CoreError::Io {
        path: out.clone(),
        source,
    })?;
    photo.save(out.join("image_512.png"))?;
    hole.save(out.join("mask_512.png"))?;
    latent.save(out.join("mask_latent.png"))?;
    println!(
        "{}x{} image, {}x{} latent mask written to {}",
        photo.width(),
        photo.height(),
        latent.width(),
        latent.height(),
        out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [image, mask, out] = <[PathBuf; 3]>::try_from(args).unwrap_or_else(|_| {
        eprintln!("usage: prepare IMAGE MASK OUT_DIR");
        std::process::exit(2)
    });
    match run(image, mask, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
