//! The GPU check: proves and times every compiled backend without model files.
//!
//! It builds the full-size SD 2-inpainting UNet, VAE and OpenCLIP-H text encoder (and the x4
//! upscaler's) from the configs in `tools/gpu/` with seeded weights, made once on flex and copied
//! to every device. On each backend compiled in (flex, the reference, in f32; wgpu and cuda in
//! each dtype the device supports) it reports the parity of one batch-2 UNet call and one VAE
//! decode against flex f32 (relative to the largest value), the first call's time (kernel
//! compilation and autotune included), the median of the warm calls and the device memory the
//! allocator holds. Then it times HD-Painter's whole first stage (PAIntA + RASG, 50 steps,
//! 512 px) and the SR stage (20 steps to 2048 px) on the fastest pair that passed parity. It
//! prints one table and, with `--json`, writes it as JSON. `--tiny` runs the same on the fixture
//! pipelines' configs (CI runs it on flex).
//!
//! ```text
//! cargo run --release -p hd-painter-examples --features wgpu,cuda --example gpu_check -- --json gpu.json
//! cargo run -p hd-painter-examples --example gpu_check -- --tiny
//! ```

mod measure;
mod models;
mod report;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::tensor::FloatDType;
use clap::Parser;
use hd_painter::BackendKind;

use measure::{Inputs, RunPlan};
use models::Seeded;
use report::{Outcome, Report, Row, Runs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Proves and times every compiled backend on seeded full-size models (no model files).
#[derive(Parser, Debug)]
#[command(name = "gpu_check")]
struct Args {
    /// The fixture pipelines' tiny configs, small sizes and few steps (CI's run).
    #[arg(long)]
    tiny: bool,
    /// The backends to check (default: every compiled one; flex is always the reference).
    #[arg(long, value_delimiter = ',')]
    backends: Vec<BackendKind>,
    /// The dtypes to check on the GPU backends (flex runs f32, the reference).
    #[arg(long, value_delimiter = ',', default_value = "f32,f16,bf16", value_parser = parse_dtype)]
    dtypes: Vec<FloatDType>,
    /// Warm UNet calls timed per backend and dtype (the median is reported).
    #[arg(long)]
    repeats: Option<usize>,
    /// Skip the whole first-stage and SR runs.
    #[arg(long)]
    no_runs: bool,
    /// Write the report as JSON to this file too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The repository root (configs and tokenizer are read from it).
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

fn parse_dtype(s: &str) -> Result<FloatDType, String> {
    match s {
        "f32" => Ok(FloatDType::F32),
        "f16" => Ok(FloatDType::F16),
        "bf16" => Ok(FloatDType::BF16),
        other => Err(format!("{other:?}: expected f32, f16 or bf16")),
    }
}

/// The sizes of a full or a tiny check.
struct Plan {
    inpaint: PathBuf,
    x4: PathBuf,
    latent: usize,
    repeats: usize,
    runs: RunPlan,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let root = &args.root;
        let (inpaint, x4, latent, repeats, runs) = if args.tiny {
            let fixtures = root.join("fixtures/models");
            let runs = RunPlan {
                size: 64,
                steps: 4,
                sr_long_side: 128,
                sr_steps: 2,
            };
            (
                fixtures.join("pipeline_hd_painter"),
                fixtures.join("pipeline_x4"),
                16,
                2,
                runs,
            )
        } else {
            let runs = RunPlan {
                size: 512,
                steps: 50,
                sr_long_side: 2048,
                sr_steps: 20,
            };
            let gpu = root.join("tools/gpu");
            (
                gpu.join("sd2-inpainting"),
                gpu.join("x4-upscaler"),
                64,
                5,
                runs,
            )
        };
        Self {
            inpaint,
            x4,
            latent,
            repeats: args.repeats.unwrap_or(repeats),
            runs,
        }
    }
}

/// Runs `f`, turning an error or a panic (a backend that fails to start) into the message.
fn guarded<T>(f: impl FnOnce() -> hd_painter::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())),
    }
}

fn check(args: &Args) -> Result<Report, String> {
    let plan = Plan::new(args);
    let tokenizer = args.root.join("fixtures/tokenizer");
    let build = |dir: &Path, pipeline, seed| {
        Seeded::build(dir, pipeline, &tokenizer, seed).map_err(|e| e.to_string())
    };
    let inpaint = build(&plan.inpaint, "StableDiffusionInpaintPipeline", 1)?;
    let inputs = Inputs::new(&inpaint, plan.latent);
    let mut report = Report::new(if args.tiny { "tiny" } else { "full" }, plan.latent);
    eprintln!("gpu_check: flex f32 reference ...");
    let (reference, measured) = guarded(|| measure::reference(&inpaint, &inputs, 1))?;
    report.rows.push(Row {
        kind: BackendKind::Flex,
        dtype: FloatDType::F32,
        outcome: Outcome::Measured(measured),
    });
    save(&report, args)?;
    let backends = if args.backends.is_empty() {
        vec![BackendKind::Cuda, BackendKind::Wgpu]
            .into_iter()
            .filter(|k| k.is_compiled())
            .collect()
    } else {
        args.backends.clone()
    };
    let gpus = backends
        .into_iter()
        .filter(|k| !matches!(k, BackendKind::Flex | BackendKind::Ndarray));
    for kind in gpus {
        for &dtype in &args.dtypes {
            eprintln!("gpu_check: {kind} {dtype:?} ...");
            let outcome = guarded(|| {
                let device = kind.device()?;
                if !device.supports_dtype(dtype) {
                    return Ok(None);
                }
                measure::measure(&inpaint, &inputs, &device, dtype, plan.repeats, &reference)
                    .map(Some)
            });
            let outcome = match outcome {
                Ok(Some(measured)) => Outcome::Measured(measured),
                Ok(None) => Outcome::Unsupported,
                Err(e) => Outcome::Failed(e),
            };
            report.rows.push(Row {
                kind,
                dtype,
                outcome,
            });
            save(&report, args)?;
        }
    }
    if !args.no_runs {
        let (kind, dtype) = report.fastest();
        eprintln!("gpu_check: whole runs on {kind} {dtype:?} ...");
        let x4 = build(&plan.x4, "StableDiffusionUpscalePipeline", 2)?;
        let runs =
            guarded(|| measure::whole_runs(&inpaint, &x4, &kind.device()?, dtype, &plan.runs));
        report.runs = Some(Runs {
            kind,
            dtype,
            plan: plan.runs,
            times: runs,
        });
        save(&report, args)?;
    }
    Ok(report)
}

/// Writes the report so far to `--json`, so that a run stopped by a time limit leaves its rows.
fn save(report: &Report, args: &Args) -> Result<(), String> {
    match &args.json {
        Some(path) => std::fs::write(path, report.json())
            .map_err(|e| format!("writing {}: {e}", path.display())),
        None => Ok(()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let report = match check(&args) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("gpu_check: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", report.table());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        eprintln!("gpu_check: a backend failed or missed its parity target (see the table)");
        ExitCode::FAILURE
    }
}
