//! The command line: every option, with its help text.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use hd_painter::{BackendKind, SchedulerKind};
pub(crate) use hd_painter_examples::{DTypeArg, MethodName};

/// The SR stage's output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SrSize {
    /// The input's exact size.
    Input,
    /// The long side given by `--sr-long-side` (the reference: 2048).
    LongSide,
}

/// The mask file's channel that marks the hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum MaskChannelArg {
    /// The grey level (Pillow's `convert("L")`).
    Luma,
    /// The blue channel of the RGB conversion: the official HD-Painter code's.
    Blue,
    /// The alpha channel (opaque = hole).
    Alpha,
}

/// What the hole is filled with before encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FillArg {
    /// The known region's mean colour.
    Mean,
    /// Random colours (from `--seed`).
    Noise,
    /// OpenCV's Telea inpainting (`cv2.INPAINT_TELEA`, radius `--fill-radius`).
    Telea,
    /// OpenCV's Navier-Stokes inpainting (`cv2.INPAINT_NS`, radius `--fill-radius`).
    Ns,
}

/// Which Blended Latent Diffusion `--method blended` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum BlendedArg {
    /// The paper's code: the known region noised to the level each step starts from, fresh
    /// noise every step.
    Paper,
    /// diffusers' 4-channel inpainting (SDXL's base in `StableDiffusionXLInpaintPipeline`): to
    /// the level each step reaches with the run's initial noise, clean after the last step.
    Diffusers,
}

/// The long-side rule of the first stage's size with `--sr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SizeRuleArg {
    /// `hd_inpaint.py`'s `src/utils.resize`.
    Script,
    /// The official demo's `IImage.resize`.
    Demo,
}

/// How the seeds of several images follow from `--seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SeedRuleArg {
    /// `seed + 1000 i` (the official `hd_inpaint.py`).
    HdPainter,
    /// `seed + i`.
    Consecutive,
}

/// Text-guided inpainting with HD-Painter, Stable Inpainting, Blended Latent Diffusion, RePaint
/// or BrushNet, optionally followed by HD-Painter's x4 super-resolution stage.
#[derive(Debug, Parser)]
#[command(version)]
pub(crate) struct Args {
    /// The photo (PNG, JPEG or WebP).
    #[arg(required_unless_present = "batch")]
    pub(crate) image: Option<PathBuf>,
    /// The mask, same size as the photo: white where the photo is to be filled (>= 128; with
    /// the HD-Painter methods any non-zero value, as the official code reads it).
    #[arg(required_unless_present = "batch")]
    pub(crate) mask: Option<PathBuf>,
    /// What to paint into the hole.
    #[arg(required_unless_present = "batch")]
    pub(crate) prompt: Option<String>,
    /// Where to write the result (PNG, JPEG or WebP by extension); with several images,
    /// `-{i}` is added before the extension.
    #[arg(required_unless_present = "batch")]
    pub(crate) output: Option<PathBuf>,
    /// Run a batch instead of IMAGE MASK PROMPT OUTPUT, loading the models once: a CSV of
    /// `image,mask,prompt` rows (paths relative to the CSV), or a folder of `NAME.EXT` photos
    /// with `NAME_mask.EXT` masks (and `--batch-prompt`). Files that fail are reported and
    /// skipped; the exit code is 1 if any failed.
    #[arg(long, value_name = "CSV_OR_DIR", conflicts_with_all = ["image", "mask", "prompt", "output"])]
    pub(crate) batch: Option<PathBuf>,
    /// Where a batch writes `NAME.png` for each photo.
    #[arg(long, value_name = "DIR", requires = "batch")]
    pub(crate) out_dir: Option<PathBuf>,
    /// The prompt of a batch folder's photos, and of CSV rows without one.
    #[arg(long, value_name = "TEXT", requires = "batch")]
    pub(crate) batch_prompt: Option<String>,
    /// The inpainting model: a diffusers pipeline folder, an original-layout single-file
    /// checkpoint (`.safetensors`, with `--config`), or `hub:ORG/NAME` (feature `hub`).
    #[arg(long)]
    pub(crate) model: String,
    /// For a single-file checkpoint: a diffusers folder with the component configs and the
    /// tokenizer (no weights needed).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Load the `{name}.{variant}.safetensors` weights of a folder (e.g. `fp16`).
    #[arg(long)]
    pub(crate) variant: Option<String>,
    /// The weights' precision (whatever the files store, they are cast to it; `auto`: bf16 for
    /// SDXL on the CPU, f32 otherwise). The activations stay f32 unless `--half-activations`:
    /// f16 weights are widened as each layer runs, bf16 weights multiply in bf16 (AMX /
    /// AVX512-BF16 where the CPU has them).
    #[arg(long, value_enum, default_value_t = DTypeArg::Auto)]
    pub(crate) dtype: DTypeArg,
    /// Compute in `--dtype` too (fast on GPUs; on the CPU slower and less precise than f32
    /// activations).
    #[arg(long)]
    pub(crate) half_activations: bool,
    /// The method.
    #[arg(long, value_enum, default_value_t = MethodName::HdPainter)]
    pub(crate) method: MethodName,
    /// A BrushNet branch folder (`config.json`, `diffusion_pytorch_model.safetensors`) for
    /// `--method brushnet` with a 4-channel `--model`.
    #[arg(long, value_name = "DIR")]
    pub(crate) brushnet: Option<PathBuf>,
    /// BrushNet's conditioning scale.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) brushnet_scale: f64,
    /// Run HD-Painter's x4 super-resolution stage after the first one.
    #[arg(long)]
    pub(crate) sr: bool,
    /// The x4 upscaler (same forms as `--model`); required with `--sr`.
    #[arg(long)]
    pub(crate) sr_model: Option<String>,
    /// The SR stage's output size.
    #[arg(long, value_enum, default_value_t = SrSize::Input)]
    pub(crate) sr_size: SrSize,
    /// The SR stage's working long side (the reference's 2048).
    #[arg(long, default_value_t = 2048)]
    pub(crate) sr_long_side: u32,
    /// The SR stage's steps.
    #[arg(long, default_value_t = 20)]
    pub(crate) sr_steps: usize,
    /// The first image's seed (random when not given); see `--seed-rule` for the others.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// The seeds of several images: `seed + 1000 i` (hd-painter, the default of the HD-Painter
    /// methods, as the official code) or `seed + i` (consecutive, the others' default).
    #[arg(long, value_enum)]
    pub(crate) seed_rule: Option<SeedRuleArg>,
    /// The mask's channel: blue (the official HD-Painter code's, the default of its methods;
    /// the grey level of a grey mask), luma (the others' default) or alpha.
    #[arg(long, value_enum)]
    pub(crate) mask_channel: Option<MaskChannelArg>,
    /// Inpaint only a box around the hole, PAD pixels wider on each side and widened to
    /// `--crop-size`'s aspect, at that size, then stitch it back (diffusers'
    /// `padding_mask_crop`); with `--sr`, a box larger than the first stage goes through both
    /// stages at its own size.
    #[arg(long, value_name = "PAD")]
    pub(crate) crop_to_mask: Option<u32>,
    /// Grow the hole by PX pixels (a square dilation, as `cv2.dilate`) before anything else;
    /// negative shrinks it (`--grow=-4`).
    #[arg(
        long,
        value_name = "PX",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub(crate) grow: i32,
    /// Blur the mask with Pillow's Gaussian blur of radius R after growing it (diffusers'
    /// `blur_factor`); the blurred grey levels are read as each method reads soft masks.
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    pub(crate) mask_blur: f32,
    /// Swap hole and known region after reading the mask (e.g. `--mask-channel alpha
    /// --invert-mask`: transparent = hole, for a photo erased in an editor, given as both IMAGE
    /// and MASK).
    #[arg(long)]
    pub(crate) invert_mask: bool,
    /// Fill the hole before encoding: OpenCV's Telea or Navier-Stokes inpainting, the known
    /// region's mean colour, or noise; for the methods that start from the image, and for
    /// erased photos whose RGB there is blank.
    #[arg(long, value_enum)]
    pub(crate) fill: Option<FillArg>,
    /// The radius of `--fill telea` and `--fill ns` (OpenCV's `inpaintRadius`, 1 to 100).
    #[arg(long, value_name = "PX", default_value_t = 3)]
    pub(crate) fill_radius: u32,
    /// Read the mask's grey levels as per-pixel strength (Differential Diffusion): grey is
    /// generated part way, white from the start (`--method stable` or `blended`).
    #[arg(long)]
    pub(crate) soft_mask: bool,
    /// With `--crop-to-mask`, one box per hole (boxes that overlap merged) instead of one box
    /// around all of them.
    #[arg(long, requires = "crop_to_mask")]
    pub(crate) crop_each_hole: bool,
    /// The size the `--crop-to-mask` box is inpainted at, `WIDTHxHEIGHT`.
    #[arg(long, value_name = "WxH", default_value = "512x512", value_parser = parse_size)]
    pub(crate) crop_size: (u32, u32),
    /// SDXL's `original_size` micro-condition, `WIDTHxHEIGHT` (default: the size inpainted).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub(crate) original_size: Option<(u32, u32)>,
    /// SDXL's `target_size` micro-condition, `WIDTHxHEIGHT` (default: the size inpainted).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub(crate) target_size: Option<(u32, u32)>,
    /// SDXL's `crops_coords_top_left` micro-condition, `TOP,LEFT` in pixels (default 0,0).
    #[arg(long, value_name = "TOP,LEFT", value_parser = parse_pair)]
    pub(crate) crops_coords_top_left: Option<(u32, u32)>,
    /// SDXL's aesthetic scores (prompt, negative) for models with `requires_aesthetics_score`
    /// (the refiner), `SCORE,SCORE` (default 6,2.5).
    #[arg(long, value_name = "POS,NEG", value_parser = parse_scores)]
    pub(crate) aesthetic_scores: Option<(f64, f64)>,
    /// Start from the image noised to this fraction of the steps (1: pure noise; diffusers'
    /// SDXL default is 0.9999); Stable Inpainting and Blended.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub(crate) strength: f64,
    /// Stop where diffusers' `denoising_end` stops, a fraction in (0, 1) of the denoising: the
    /// output is the partly denoised image.
    #[arg(long, value_name = "F")]
    pub(crate) denoising_end: Option<f64>,
    /// Which Blended Latent Diffusion `--method blended` runs.
    #[arg(long, value_enum, default_value_t = BlendedArg::Paper)]
    pub(crate) blended: BlendedArg,
    /// The first stage's size with `--sr` (the SR long side / 4): the official script's rule
    /// or the demo's, which differ by a pixel for some sizes.
    #[arg(long, value_enum, default_value_t = SizeRuleArg::Script)]
    pub(crate) size_rule: SizeRuleArg,
    /// How many images to make.
    #[arg(long, default_value_t = 1)]
    pub(crate) num_images: usize,
    /// Denoising steps (the method's default when not given: 50; RePaint 250).
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    /// Classifier-free guidance scale (7.5 when not given; 1 turns guidance off).
    #[arg(long)]
    pub(crate) guidance: Option<f64>,
    /// RASG's eta with RASG on (0.1), DDIM's eta otherwise (0).
    #[arg(long)]
    pub(crate) eta: Option<f64>,
    /// The scheduler: ddim, ddpm, pndm, euler, euler-a, dpm++2m, dpm++2m-sde, deis, unipc, lcm (or a
    /// diffusers class name), over the model folder's schedule settings. Default: the folder's
    /// `scheduler_config.json` for the plain methods, DDIM on HD-Painter's grid for HD-Painter's
    /// (RASG needs DDIM; PAIntA takes any).
    #[arg(long, value_name = "NAME", value_parser = parse_scheduler)]
    pub(crate) scheduler: Option<SchedulerKind>,
    /// Karras sigmas for the scheduler (Euler, DPM-Solver, UniPC): "DPM++ 2M Karras".
    #[arg(long)]
    pub(crate) karras: bool,
    /// A LoRA to fuse into the model: kohya-ss / Automatic1111 or diffusers / PEFT
    /// `.safetensors`, at SCALE (1 when not given); repeatable, fused in order.
    #[arg(long, value_name = "FILE[:SCALE]", value_parser = parse_lora)]
    pub(crate) lora: Vec<(PathBuf, f32)>,
    /// A textual-inversion embedding (diffusers' `learned_embeds.safetensors` or an
    /// Automatic1111 `.safetensors`, whose token is its file name); repeatable.
    #[arg(long, value_name = "FILE")]
    pub(crate) embedding: Vec<PathBuf>,
    /// LCM-LoRA's few-step preset (with an LCM-LoRA in `--lora`): the LCM scheduler, 4 steps
    /// and guidance 1 unless `--scheduler`, `--steps` or `--guidance` say otherwise. With
    /// `--method painta`, `stable`, `blended` or `brushnet` (RASG needs DDIM).
    #[arg(long)]
    pub(crate) lcm: bool,
    /// Read the prompts in Automatic1111's syntax: `(word:1.3)`, `(word)`, `[word]`, `\(`,
    /// `BREAK`, and prompts over 75 tokens in 77-token chunks.
    #[arg(long)]
    pub(crate) prompt_weighting: bool,
    /// The negative prompt (HD-Painter's by default for its methods, empty otherwise).
    #[arg(long)]
    pub(crate) negative_prompt: Option<String>,
    /// Text appended to the prompt (HD-Painter's "Full HD, 4K, ..." by default for its methods).
    #[arg(long)]
    pub(crate) positive_prompt: Option<String>,
    /// The backend: flex (CPU, default), or ndarray / wgpu / cuda when compiled in.
    #[arg(long, default_value_t = BackendKind::Flex)]
    pub(crate) backend: BackendKind,
    /// Write a preview of the predicted image every K steps (`{output}-preview-...png`).
    #[arg(long, value_name = "K")]
    pub(crate) preview_every: Option<usize>,
    /// RePaint's jump length: steps walked back up at each jump (the paper's 10).
    #[arg(long, default_value_t = 10)]
    pub(crate) jump_length: usize,
    /// RePaint's resamplings: how many times each jump point is visited (the paper's 10).
    #[arg(long, default_value_t = 10)]
    pub(crate) jump_n_sample: usize,
    /// RePaint on a pixel-space model folder: the official code's sampler (learned variance,
    /// the default for such models) or diffusers' `RePaintScheduler` (with `--eta`, the default
    /// for models without learned variance).
    #[arg(long, value_enum)]
    pub(crate) repaint_mode: Option<RepaintModeArg>,
    /// The class of a class-conditional pixel-space model (the ImageNet RePaint model: 0-999).
    #[arg(long)]
    pub(crate) class_label: Option<i64>,
    /// Allow the output to be one of the inputs (which it then replaces).
    #[arg(long)]
    pub(crate) overwrite: bool,
}

/// Whose RePaint sampler a pixel-space model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RepaintModeArg {
    /// The official code (andreas128/RePaint).
    Official,
    /// diffusers' `RePaintPipeline`.
    Diffusers,
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

/// `TOP,LEFT` in pixels.
fn parse_pair(text: &str) -> Result<(u32, u32), String> {
    let (a, b) = text
        .split_once(',')
        .ok_or_else(|| format!("{text:?}: expected TOP,LEFT, e.g. 0,0"))?;
    let value = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|e| format!("{text:?}: {v:?} is not a pixel offset ({e})"))
    };
    Ok((value(a)?, value(b)?))
}

/// `SCORE,SCORE`: two finite numbers.
fn parse_scores(text: &str) -> Result<(f64, f64), String> {
    let (a, b) = text
        .split_once(',')
        .ok_or_else(|| format!("{text:?}: expected POSITIVE,NEGATIVE, e.g. 6,2.5"))?;
    let value = |v: &str| match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!("{text:?}: {v:?} is not a finite score")),
    };
    Ok((value(a)?, value(b)?))
}

fn parse_scheduler(name: &str) -> Result<SchedulerKind, String> {
    SchedulerKind::named(name).map_err(|e| e.to_string())
}

/// `FILE[:SCALE]`: the scale is what follows the last `:` when it is a finite number (so that
/// paths with colons still read as paths).
fn parse_lora(text: &str) -> Result<(PathBuf, f32), String> {
    if let Some((path, scale)) = text.rsplit_once(':')
        && let Ok(scale) = scale.parse::<f32>()
    {
        return match scale.is_finite() && !path.is_empty() {
            true => Ok((PathBuf::from(path), scale)),
            false => Err(format!(
                "expected FILE[:SCALE] with a finite scale, found {text:?}"
            )),
        };
    }
    Ok((PathBuf::from(text), 1.0))
}
