//! The one-call entry point: a loaded model folder plus a request builder that picks the
//! reference settings, encodes the prompts the method expects and runs the image-level pipeline.
//! Everything it does is also reachable piece by piece ([`Inpainter`], [`InpaintOptions`],
//! [`encode_prompts_with_positive`]) for code that needs another combination.

use std::ops::ControlFlow;

use hd_painter_core::{Image, Mask};
use hd_painter_models::{
    AttentionProcessor, BrushNetModel, DefaultAttention, StableDiffusionModels,
};

use crate::brushnet::BrushNetSettings;
use crate::crop::CropSettings;
use crate::error::Result;
use crate::focus::{HD_PAINTER_NEGATIVE_PROMPT, HD_PAINTER_POSITIVE_PROMPT};
use crate::mask_edit::MaskEdit;
use crate::pipeline::{HdPainter, InpaintOptions, Inpainter, Method, encode_prompts_with_positive};
use crate::prefill::PreFill;
use crate::sampler::{StepView, TextConditioning};
use crate::schedule::NoiseSchedule;

/// An inpainting model folder ready to run: the models and the noise schedule they were trained
/// with.
#[derive(Debug)]
pub struct Painter {
    /// The pipeline's models.
    pub models: StableDiffusionModels,
    /// Its noise schedule (Stable Diffusion's scaled-linear 0.00085 - 0.012).
    pub schedule: NoiseSchedule,
    /// A BrushNet branch for the 4-channel UNet ([`Painter::with_brushnet`]).
    pub brushnet: Option<BrushNetModel>,
}

impl Painter {
    /// Wraps loaded models (see [`StableDiffusionModels::load`] and
    /// [`StableDiffusionModels::from_source`]) with Stable Diffusion's schedule.
    pub fn new(models: StableDiffusionModels) -> Self {
        Self {
            models,
            schedule: NoiseSchedule::stable_diffusion(),
            brushnet: None,
        }
    }

    /// The same with a BrushNet branch: requests then run [`Method::BrushNet`] with BrushNet's
    /// blend as paste-back (the reference's defaults), unless told otherwise.
    pub fn with_brushnet(mut self, branch: BrushNetModel) -> Self {
        self.brushnet = Some(branch);
        self
    }

    /// The image-level pipeline over these models.
    pub fn inpainter(&self) -> Inpainter<'_> {
        let inpainter = Inpainter::new(&self.models.unet, &self.models.vae, &self.schedule);
        match &self.brushnet {
            Some(branch) => inpainter.with_brushnet(branch),
            None => inpainter,
        }
    }

    /// The DDIM method the models run: BrushNet with a branch, otherwise Stable Inpainting for
    /// a 9-channel inpainting UNet and Blended Latent Diffusion for a 4-channel one.
    pub fn fitting_method(&self) -> Method {
        match (&self.brushnet, self.models.unet.in_channels()) {
            (Some(_), _) => Method::BrushNet(BrushNetSettings::default()),
            (None, 4) => Method::Blended,
            (None, _) => Method::StableInpainting,
        }
    }

    /// A request to fill the hole of `mask` (white = hole) in `image` from `prompt`, with
    /// HD-Painter's reference settings (PAIntA + RASG, 50 steps, CFG 7.5, its positive and
    /// negative prompts, seed 1). The method follows the UNet: Stable Inpainting for a 9-channel
    /// inpainting UNet, Blended Latent Diffusion for a 4-channel one ([`Painter::fitting_method`],
    /// the automatic fallback; ask for [`Method::StableInpainting`] explicitly to get an error
    /// instead). With a BrushNet branch: BrushNet's pipeline defaults (50 steps, CFG 7.5, its
    /// blend) and no HD-Painter parts.
    pub fn request<'a>(
        &'a self,
        image: &'a Image,
        mask: &'a Mask,
        prompt: &str,
    ) -> InpaintRequest<'a> {
        let options = match self.fitting_method() {
            // BrushNet's reference run: its own pipeline defaults and blend.
            Method::BrushNet(settings) => InpaintOptions::brushnet(settings),
            method => InpaintOptions {
                method,
                ..InpaintOptions::hd_painter(HdPainter::full())
            },
        };
        InpaintRequest {
            painter: self,
            image,
            mask,
            prompt: prompt.to_string(),
            positive: None,
            negative: None,
            steps: None,
            guidance_scale: None,
            eta: None,
            options,
        }
    }
}

/// One run's inputs and settings, built up from [`Painter::request`].
#[derive(Clone, Debug)]
pub struct InpaintRequest<'a> {
    painter: &'a Painter,
    image: &'a Image,
    mask: &'a Mask,
    prompt: String,
    positive: Option<String>,
    negative: Option<String>,
    steps: Option<usize>,
    guidance_scale: Option<f64>,
    eta: Option<f64>,
    options: InpaintOptions,
}

impl InpaintRequest<'_> {
    /// Replaces the settings (the method, HD-Painter's parts, DDIM, seeds, paste-back); the
    /// step count, guidance scale and eta set on the request still apply.
    pub fn options(mut self, options: InpaintOptions) -> Self {
        self.options = options;
        self
    }

    /// The method (Stable Inpainting, Blended, RePaint); HD-Painter's parts stay as set.
    pub fn method(mut self, method: Method) -> Self {
        self.options.method = method;
        self
    }

    /// HD-Painter's parts (`None`: the plain method with diffusers' conventions: latents
    /// decoded, empty positive and negative prompts unless set).
    pub fn hd_painter(mut self, hd_painter: Option<HdPainter>) -> Self {
        self.options.hd_painter = hd_painter;
        self
    }

    /// Inpaint only a box around the hole at `crop.size` and stitch it back
    /// ([`InpaintOptions::crop_to_mask`]).
    pub fn crop_to_mask(mut self, crop: CropSettings) -> Self {
        self.options.crop_to_mask = Some(crop);
        self
    }

    /// Grow / shrink and blur the mask first ([`InpaintOptions::mask_edit`]).
    pub fn mask_edit(mut self, edit: MaskEdit) -> Self {
        self.options.mask_edit = edit;
        self
    }

    /// Read the mask's grey levels as per-pixel strength ([`InpaintOptions::soft_mask`]).
    pub fn soft_mask(mut self, soft: bool) -> Self {
        self.options.soft_mask = soft;
        self
    }

    /// Replace the hole's pixels before encoding ([`InpaintOptions::pre_fill`]).
    pub fn pre_fill(mut self, fill: Option<PreFill>) -> Self {
        self.options.pre_fill = fill;
        self
    }

    /// One output image per seed.
    pub fn seeds(mut self, seeds: Vec<u64>) -> Self {
        self.options.seeds = seeds;
        self
    }

    /// DDIM steps, or RePaint's `t_T` for [`Method::Repaint`].
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = Some(steps);
        self
    }

    /// The classifier-free guidance scale (1.0 turns guidance off).
    pub fn guidance_scale(mut self, scale: f64) -> Self {
        self.guidance_scale = Some(scale);
        self
    }

    /// RASG's eta when RASG is on, the DDIM (or RePaint) eta otherwise.
    pub fn eta(mut self, eta: f64) -> Self {
        self.eta = Some(eta);
        self
    }

    /// The text appended to the prompt (`"{prompt}, {positive}"`; empty: none). Defaults to
    /// HD-Painter's with HD-Painter's parts on, none otherwise.
    pub fn positive_prompt(mut self, positive: &str) -> Self {
        self.positive = Some(positive.to_string());
        self
    }

    /// The negative prompt. Defaults to HD-Painter's with HD-Painter's parts on, empty otherwise.
    pub fn negative_prompt(mut self, negative: &str) -> Self {
        self.negative = Some(negative.to_string());
        self
    }

    /// The settings the run will use: the options with the step count, guidance scale and eta
    /// applied where the method keeps them.
    pub fn settings(&self) -> InpaintOptions {
        let mut options = self.options.clone();
        let rasg = options.hd_painter.as_mut().and_then(|h| h.rasg.as_mut());
        match (&mut options.method, rasg) {
            (Method::Repaint(repaint), _) => {
                apply(&mut repaint.steps, self.steps);
                apply(&mut repaint.guidance_scale, self.guidance_scale);
                apply(&mut repaint.eta, self.eta);
            }
            (_, rasg) => {
                apply(&mut options.ddim.steps, self.steps);
                apply(&mut options.ddim.guidance_scale, self.guidance_scale);
                match rasg {
                    Some(rasg) => apply(&mut rasg.eta, self.eta),
                    None => apply(&mut options.ddim.eta, self.eta),
                }
            }
        }
        options
    }

    /// The prompts encoded as the run will see them.
    pub fn encode(&self) -> Result<TextConditioning> {
        let hd = self.options.hd_painter.is_some();
        let positive = match (&self.positive, hd) {
            (Some(p), _) => p.as_str(),
            (None, true) => HD_PAINTER_POSITIVE_PROMPT,
            (None, false) => "",
        };
        let negative = match (&self.negative, hd) {
            (Some(n), _) => n.as_str(),
            (None, true) => HD_PAINTER_NEGATIVE_PROMPT,
            (None, false) => "",
        };
        encode_prompts_with_positive(&self.painter.models, &self.prompt, positive, negative)
    }

    /// Runs it with exact attention and no step callback.
    pub fn run(&self) -> Result<Vec<Image>> {
        self.run_with(&mut DefaultAttention::default(), &mut |_| {
            ControlFlow::Continue(())
        })
    }

    /// Runs it with an attention processor (PAIntA wraps it when on) and a step callback that
    /// sees every step and may cancel ([`crate::SamplingError::Cancelled`]).
    pub fn run_with(
        &self,
        processor: &mut dyn AttentionProcessor,
        on_step: &mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>,
    ) -> Result<Vec<Image>> {
        let text = self.encode()?;
        self.painter.inpainter().inpaint(
            self.image,
            self.mask,
            &text,
            &self.settings(),
            processor,
            on_step,
        )
    }
}

fn apply<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}
