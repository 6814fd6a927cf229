//! Prints what a model folder, single-file checkpoint or hub id holds, read exactly as loading
//! reads it (a broken one gets the loader's typed error):
//!
//! ```text
//! cargo run --example inspect -- stable-diffusion-2-inpainting [--variant fp16]
//! cargo run --example inspect -- 512-inpainting-ema.safetensors --config stable-diffusion-2-inpainting
//! ```
//!
//! Components and their files, stored dtypes and parameter counts, the published-layout
//! conversions each file needed, config keys taken at their defaults, the schedulers read,
//! the `model_index.json` entries ignored, and whether tokenizer, text width and UNet fit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hd_painter::hd_painter_models::{ModelSource, inspect};

/// Reports what a Stable Diffusion model holds, as hd-painter loads it.
#[derive(Debug, Parser)]
struct Args {
    /// A diffusers pipeline folder, an original-layout `.safetensors` (with `--config`), or
    /// `hub:ORG/NAME` (feature `hub`).
    model: String,
    /// For a single-file checkpoint: the diffusers folder with the configs and tokenizer.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The `{name}.{variant}.safetensors` weights of a folder (e.g. `fp16`).
    #[arg(long)]
    variant: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let report = hd_painter::BackendKind::default()
        .device()
        .map_err(hd_painter::hd_painter_models::ModelsError::from)
        .and_then(|device| {
            let source = ModelSource::parse(&args.model, args.config.as_deref())?;
            inspect(&source, args.variant.as_deref(), &device)
        });
    match report {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
