//! A web page over the models: upload a photo, paint the mask, watch the previews, download the
//! result.
//!
//! ```text
//! cargo run --release --example serve -- --model stable-diffusion-2-inpainting \
//!     [--sr-model stable-diffusion-x4-upscaler] [--port 7860]
//! ```
//!
//! Then open <http://127.0.0.1:7860>. One run has the models at a time; the others wait in a
//! queue (positions shown). The page and the API are described in the README ("Web demo").
//! Ctrl-C cancels every run and stops the server.

/// mimalloc keeps freed pages for reuse (see the `inpaint` example).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use hd_painter::StableDiffusionModels;
use hd_painter::{BackendKind, BrushNetModel, ModelSource, Painter, SchedulerKind, SrSettings};
use hd_painter_examples::{DTypeArg, dtype_name};

mod api;
mod form;
mod queue;
mod store;
mod worker;

use api::{App, Offer};
use form::Limits;
use queue::Queue;
use store::Store;

/// The server's command line.
#[derive(Debug, Parser)]
#[command(about = "Serves a web page that inpaints with the given models")]
struct Args {
    /// The inpainting pipeline: a diffusers folder, a single-file checkpoint, or a hub id.
    #[arg(long)]
    model: String,
    /// The original config (a `.yaml`) for a single-file checkpoint.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The weights' variant (`fp16`), where the folder has several.
    #[arg(long)]
    variant: Option<String>,
    /// A BrushNet branch folder (for a 4-channel base model).
    #[arg(long)]
    brushnet: Option<PathBuf>,
    /// The x4 upscaler for HD-Painter's SR stage (the page's "SR" switch).
    #[arg(long)]
    sr_model: Option<String>,
    /// The weights' precision (`auto`: bf16 for SDXL on the CPU, f32 otherwise).
    #[arg(long, value_enum, default_value_t = DTypeArg::Auto)]
    dtype: DTypeArg,
    /// The backend: flex (CPU, default), or ndarray / wgpu / cuda when compiled in.
    #[arg(long, default_value_t = BackendKind::Flex)]
    backend: BackendKind,
    /// The address to listen on (127.0.0.1: this machine only; 0.0.0.0 opens it to the network).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// The port (0: any free one, printed).
    #[arg(long, default_value_t = 7860)]
    port: u16,
    /// The largest width or height of an uploaded image.
    #[arg(long, default_value_t = 2048)]
    max_side: u32,
    /// The largest request, in MiB.
    #[arg(long, default_value_t = 32)]
    max_upload_mib: usize,
    /// How many runs may wait for the models.
    #[arg(long, default_value_t = 8)]
    queue_limit: usize,
    /// A preview every this many steps when a run names no interval (0: none).
    #[arg(long, default_value_t = 5)]
    preview_every: usize,
    /// The SR stage's long side (HD-Painter's reference: 2048).
    #[arg(long, default_value_t = SrSettings::default().long_side)]
    sr_long_side: u32,
    /// The SR stage's steps.
    #[arg(long, default_value_t = SrSettings::default().steps)]
    sr_steps: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error(transparent)]
    Models(#[from] hd_painter::Error),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

fn serve(args: &Args) -> Result<(), ServeError> {
    eprintln!("loading {}", args.model);
    let painter = load(args)?;
    let offer = Offer {
        methods: worker::methods(&painter),
        schedulers: SchedulerKind::names().collect(),
        sr: painter.upscaler.is_some(),
        limits: Limits {
            max_side: args.max_side,
            max_upload_bytes: args.max_upload_mib << 20,
        },
        preview_every: args.preview_every,
        model: args.model.clone(),
    };
    let app = App {
        queue: Arc::new(Queue::new(args.queue_limit)),
        store: Arc::new(Store::default()),
        offer: Arc::new(offer),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let address = SocketAddr::new(args.host, args.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(address))
        .map_err(|source| ServeError::Listen { address, source })?;
    let bound = listener.local_addr()?;
    println!("listening on http://{bound}");
    std::io::stdout().flush()?;

    let (queue, store) = (app.queue.clone(), app.store.clone());
    let defaults = worker::Defaults {
        preview_every: args.preview_every,
        sr: SrSettings {
            long_side: args.sr_long_side,
            steps: args.sr_steps,
            ..SrSettings::default()
        },
    };
    std::thread::scope(|scope| {
        scope.spawn(|| worker::work(&painter, &queue, &store, &defaults));
        let stopping = {
            let queue = queue.clone();
            async move {
                match tokio::signal::ctrl_c().await {
                    Ok(()) => eprintln!("stopping: cancelling every run"),
                    Err(e) => {
                        eprintln!(
                            "warning: no Ctrl-C handler ({e}); stop the server by killing it"
                        );
                        std::future::pending::<()>().await;
                    }
                }
                queue.stop();
            }
        };
        let served = runtime.block_on(async {
            axum::serve(listener, api::router(app))
                .with_graceful_shutdown(stopping)
                .await
        });
        // The worker must hear of the stop even when the server failed.
        queue.stop();
        served
    })?;
    Ok(())
}

/// Loads the models the command line names.
fn load(args: &Args) -> Result<Painter, hd_painter::Error> {
    let device = args.backend.device()?;
    let variant = args.variant.as_deref();
    let main = ModelSource::parse(&args.model, args.config.as_deref())?;
    let dtype = args.dtype.resolve(&main, variant, args.backend)?;
    // `auto` decides for each model: the x4 upscaler is an SD 2 model, f32 on the CPU even after
    // an SDXL first stage.
    let pipeline =
        |source: &ModelSource, stage| -> Result<StableDiffusionModels, hd_painter::Error> {
            let dtype = args.dtype.resolve(source, variant, args.backend)?;
            eprintln!("weights: {} ({stage})", dtype_name(dtype));
            let from = StableDiffusionModels::from_source_with_weight_dtype;
            Ok(from(source, variant, dtype, &device)?)
        };
    let mut painter = Painter::new(pipeline(&main, "first stage")?);
    if let Some(dir) = &args.brushnet {
        let branch = BrushNetModel::load(dir, args.variant.as_deref(), &device)?;
        painter = painter.with_brushnet(branch.with_weight_dtype(dtype));
    }
    if let Some(spec) = &args.sr_model {
        painter = painter.with_upscaler(pipeline(&ModelSource::parse(spec, None)?, "SR stage")?)?;
    }
    Ok(painter)
}
