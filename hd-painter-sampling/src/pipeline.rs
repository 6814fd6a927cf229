//! What an image-level run is asked to do ([`InpaintOptions`]: the method, HD-Painter's parts,
//! the sampler settings, the seeds, the controls).

use hd_painter_core::Mask;

use crate::brushnet::BrushNetSettings;
use crate::conditioning::MicroConditioning;
use crate::crop::CropSettings;
use crate::inpaint::BlendedVariant;
use crate::mask_edit::MaskEdit;
use crate::prefill::PreFill;
use crate::rasg::RasgSettings;
use crate::repaint::RepaintSettings;
use crate::sampler::SamplerSettings;
use crate::schedulers::SchedulerSpec;

/// The inpainting method.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Stable Inpainting: a 9-channel inpainting UNet conditioned on the mask and masked image.
    StableInpainting,
    /// Blended Latent Diffusion with any 4-channel UNet.
    Blended,
    /// RePaint with any 4-channel UNet.
    Repaint(RepaintSettings),
    /// BrushNet: a 4-channel UNet with a BrushNet branch
    /// ([`Inpainter::with_brushnet`](crate::Inpainter::with_brushnet)).
    BrushNet(BrushNetSettings),
}

impl Method {
    /// The method's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Method::StableInpainting => "Stable Inpainting",
            Method::Blended => "Blended Latent Diffusion",
            Method::Repaint(_) => "RePaint",
            Method::BrushNet(_) => "BrushNet",
        }
    }
}

/// Blending the generated image into the original outside the hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasteBack {
    /// The hole is dilated by `dilate` pixels (square), then blurred with a `feather`-tap
    /// Gaussian (`feather` odd; 1 = hard edge), and the result is
    /// `orig + alpha (generated - orig)`, rounded. Where alpha is 0, the output equals the input
    /// exactly.
    Feathered {
        /// Dilation of the hole, in pixels.
        dilate: u32,
        /// Gaussian kernel size of the feathering.
        feather: usize,
    },
    /// BrushNet's official blend ([`brushnet_blend`](crate::brushnet_blend)): the hole kept
    /// whole, a 21x21 Gaussian fade outside it, truncated.
    BrushNet,
}

impl Default for PasteBack {
    /// Dilation 4 and a 9-tap feather: the hole itself stays fully generated.
    fn default() -> Self {
        PasteBack::Feathered {
            dilate: 4,
            feather: 9,
        }
    }
}

/// HD-Painter's parts of a run (PAIntA and RASG). With any of them, the run also
/// prepares the mask as HD-Painter does (the hole dilated by a 3x3 cross; the latent mask a
/// bicubic resize of it, `> 0`) and decodes the x0 prediction of the last step instead of the
/// final latents. The four variants of the paper's ablation are the constructors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HdPainter {
    /// PAIntA in place of the self-attention at the latent/2 and latent/4 grids while t > 500.
    pub painta: bool,
    /// RASG's gradient term in every DDIM step.
    pub rasg: Option<RasgSettings>,
}

impl HdPainter {
    /// PAIntA + RASG (the official default).
    pub fn full() -> Self {
        Self {
            painta: true,
            rasg: Some(RasgSettings::default()),
        }
    }

    /// PAIntA alone.
    pub fn painta_only() -> Self {
        Self {
            painta: true,
            rasg: None,
        }
    }

    /// RASG alone.
    pub fn rasg_only() -> Self {
        Self {
            painta: false,
            rasg: Some(RasgSettings::default()),
        }
    }

    /// Neither: HD-Painter's baseline (Stable Inpainting with its preprocessing, grid and x0
    /// output).
    pub fn baseline() -> Self {
        Self {
            painta: false,
            rasg: None,
        }
    }
}

/// Everything about a run but the inputs.
#[derive(Clone, Debug)]
pub struct InpaintOptions {
    /// The method.
    pub method: Method,
    /// The sampling run's settings (steps, guidance, the scheduler and its options) for
    /// every method but RePaint, which has its own ([`RepaintSettings`]).
    pub sampler: SamplerSettings,
    /// 1.0 starts from pure noise; below 1 starts from the image noised to that fraction of the
    /// steps (diffusers' `strength`; Stable Inpainting and Blended).
    pub strength: f64,
    /// One seed per output image.
    pub seeds: Vec<u64>,
    /// Paste-back of the original (on by default; `None` returns the decoded image as is).
    pub paste_back: Option<PasteBack>,
    /// HD-Painter's PAIntA / RASG / preprocessing / x0 output (`None`: plain method).
    pub hd_painter: Option<HdPainter>,
    /// Inpaint only a box around the hole, resized to the model's size, and stitch it back
    /// ([`CropSettings`]; `None`, the default: the whole image at its own size).
    pub crop_to_mask: Option<CropSettings>,
    /// Grow / shrink and blur the mask before anything else (none by default).
    pub mask_edit: MaskEdit,
    /// Read the mask's grey levels as per-pixel strength (Differential Diffusion: a pixel is
    /// generated from the step where its value passes `255 (1 - i / N)`), with Blended or Stable
    /// Inpainting at strength 1, without HD-Painter's parts; the paste-back then blends with the
    /// soft mask itself. Off by default (the mask binarised).
    pub soft_mask: bool,
    /// Replace the hole's pixels before encoding ([`PreFill`]: the known region's mean colour or
    /// noise; `None`, the default: the pixels as given). For the methods that start from the
    /// image, and for photos erased to transparency, whose RGB there is blank.
    pub pre_fill: Option<PreFill>,
    /// SDXL's micro-conditioning (sizes default to the size the run makes, as in diffusers);
    /// the other models take none.
    pub micro: MicroConditioning,
    /// Which Blended Latent Diffusion `Method::Blended` runs on a binary mask (the paper's by
    /// default; [`BlendedVariant::Diffusers`] for diffusers' 4-channel inpainting, as SDXL's
    /// base runs in `StableDiffusionXLInpaintPipeline`; a soft mask runs Differential Diffusion
    /// either way).
    pub blended: BlendedVariant,
    /// Stop the run where diffusers' `denoising_end` stops, a fraction in (0, 1) of the
    /// denoising ([`SamplerSettings::with_denoising_end`]); the result is the partly denoised
    /// image (HD-Painter's: the last x0). `None`, the default: the whole run.
    pub denoising_end: Option<f64>,
}

impl InpaintOptions {
    /// The hole these options read from `mask` (its edits applied): with HD-Painter any non-zero
    /// value, as the official dilation reads the mask; a soft mask keeps its grey levels;
    /// otherwise binarised at 128.
    pub(crate) fn hole(&self, mask: &Mask) -> Mask {
        match (self.soft_mask, self.hd_painter) {
            (true, _) => mask.clone(),
            (false, Some(_)) => mask.threshold(0),
            (false, None) => mask.threshold(127),
        }
    }

    /// HD-Painter's reference settings with the given variant: Stable Inpainting, 50 DDIM steps
    /// on the `999 - 20k` grid, CFG 7.5, seed 1, no paste-back (the reference returns the
    /// decoded x0 as is; the SR stage blends). Encode the prompts with
    /// [`encode_hd_painter_prompts`](crate::encode_hd_painter_prompts) to get its positive and
    /// negative prompts. Every field can be changed afterwards; `method: Method::Blended` runs
    /// PAIntA / RASG with a 4-channel model.
    pub fn hd_painter(variant: HdPainter) -> Self {
        Self {
            method: Method::StableInpainting,
            sampler: SamplerSettings {
                steps: 50,
                guidance_scale: 7.5,
                scheduler: SchedulerSpec::hd_painter(),
                first_step: 0,
                end_step: None,
            },
            strength: 1.0,
            seeds: vec![1],
            paste_back: None,
            hd_painter: Some(variant),
            crop_to_mask: None,
            mask_edit: MaskEdit::default(),
            soft_mask: false,
            pre_fill: None,
            micro: MicroConditioning::default(),
            blended: BlendedVariant::Paper,
            denoising_end: None,
        }
    }
}

impl InpaintOptions {
    /// BrushNet's reference settings with `settings`: diffusers' DDIM defaults (50 steps, CFG
    /// 7.5), no HD-Painter parts, BrushNet's blend as paste-back.
    pub fn brushnet(settings: BrushNetSettings) -> Self {
        Self {
            method: Method::BrushNet(settings),
            paste_back: Some(PasteBack::BrushNet),
            ..Self::default()
        }
    }
}

impl Default for InpaintOptions {
    fn default() -> Self {
        Self {
            method: Method::StableInpainting,
            sampler: SamplerSettings::default(),
            strength: 1.0,
            seeds: vec![0],
            paste_back: Some(PasteBack::default()),
            hd_painter: None,
            crop_to_mask: None,
            mask_edit: MaskEdit::default(),
            soft_mask: false,
            pre_fill: None,
            micro: MicroConditioning::default(),
            blended: BlendedVariant::Paper,
            denoising_end: None,
        }
    }
}
