//! A run's request ([`InpaintRequest`]): the inputs, the method's settings with the overrides
//! the caller set, the stages to run, and the run itself.

use std::ops::ControlFlow;

use hd_painter_core::{Image, Mask};
use hd_painter_models::DefaultAttention;
use hd_painter_sampling::{
    BlendedVariant, CropSettings, HD_PAINTER_NEGATIVE_PROMPT, HD_PAINTER_POSITIVE_PROMPT,
    HdPainter, Hooks, InpaintOptions, MaskEdit, Method, MicroConditioning, PreFill, PromptSyntax,
    SamplingError, SchedulerKind, SchedulerSpec, TextConditioning,
};
use hd_painter_sr::{SR_POSITIVE_PROMPT, SrSettings, TwoStage};

use crate::error::Result;
use crate::painter::Painter;

impl Painter {
    /// A request to fill the hole of `mask` (white = hole) in `image` from `prompt`, with
    /// HD-Painter's reference settings (PAIntA + RASG, 50 steps, CFG 7.5, its positive and
    /// negative prompts, seed 1) and, with an upscaler, its SR stage ([`SrSettings::default`]).
    /// The method follows the UNet: Stable Inpainting for a 9-channel inpainting UNet, Blended
    /// Latent Diffusion for a 4-channel one ([`Painter::fitting_method`], the automatic
    /// fallback; ask for [`Method::StableInpainting`] explicitly to get an error instead). With
    /// a BrushNet branch: BrushNet's pipeline defaults (50 steps, CFG 7.5, its blend) and no
    /// HD-Painter parts.
    pub fn request<'a>(
        &'a self,
        image: &'a Image,
        mask: &'a Mask,
        prompt: &str,
    ) -> InpaintRequest<'a> {
        let options = match self.fitting_method() {
            // BrushNet's reference run: its own pipeline defaults and blend.
            Method::BrushNet(settings) => InpaintOptions::brushnet(settings),
            _ => self.hd_painter_options(HdPainter::full()),
        };
        InpaintRequest::new(self, image, mask, prompt, options)
    }
}

/// The steps of [`InpaintRequest::lcm`] (LCM-LoRA's recipe: 4 to 8).
pub const LCM_STEPS: usize = 4;

/// The guidance scale of [`InpaintRequest::lcm`] (LCM-LoRA's recipe: 1 to 2; 1 runs the prompt
/// alone).
pub const LCM_GUIDANCE: f64 = 1.0;

/// The LCM scheduler with diffusers' `LCMScheduler` defaults.
const LCM: SchedulerKind = SchedulerKind::Lcm {
    original_steps: 50,
    timestep_scaling: 10.0,
};

/// Which stages a request runs.
#[derive(Clone, Copy, Debug)]
pub enum Stages<'a> {
    /// The inpainting run alone, at the image's size (HD-Painter's first stage).
    First,
    /// HD-Painter end to end: the first stage at a quarter of the SR long side, then the SR
    /// stage on each result ([`TwoStage`]); needs [`Painter::with_upscaler`].
    Both,
    /// The SR stage alone on a first-stage result (the original resized to the SR long side's
    /// quarter, as inpainted), one output per seed; needs [`Painter::with_upscaler`]. The
    /// first stage's own settings (method, crop to mask, pre-fill) play no part.
    Sr {
        /// The first stage's result.
        first_stage: &'a Image,
    },
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
    scheduler: Option<SchedulerKind>,
    karras: Option<bool>,
    exact_scheduler: Option<SchedulerSpec>,
    lcm: bool,
    syntax: PromptSyntax,
    options: InpaintOptions,
    sr: SrSettings,
    stages: Option<Stages<'a>>,
}

impl<'a> InpaintRequest<'a> {
    /// A request with the painter's defaults (see [`Painter::request`]).
    fn new(
        painter: &'a Painter,
        image: &'a Image,
        mask: &'a Mask,
        prompt: &str,
        options: InpaintOptions,
    ) -> Self {
        Self {
            painter,
            image,
            mask,
            prompt: prompt.to_string(),
            positive: None,
            negative: None,
            steps: None,
            guidance_scale: None,
            eta: None,
            scheduler: None,
            karras: None,
            exact_scheduler: None,
            lcm: false,
            syntax: PromptSyntax::Plain,
            options,
            sr: SrSettings::default(),
            stages: None,
        }
    }

    /// The stages to run. Default: [`Stages::Both`] with an upscaler, [`Stages::First`]
    /// without.
    pub fn stages(mut self, stages: Stages<'a>) -> Self {
        self.stages = Some(stages);
        self
    }

    /// The SR stage's settings ([`SrSettings::default`], HD-Painter's, unless set); their
    /// `seed` is replaced by each image's seed.
    pub fn sr(mut self, settings: SrSettings) -> Self {
        self.sr = settings;
        self
    }

    /// The stages the request runs.
    pub fn planned_stages(&self) -> Stages<'a> {
        match (self.stages, &self.painter.upscaler) {
            (Some(stages), _) => stages,
            (None, Some(_)) => Stages::Both,
            (None, None) => Stages::First,
        }
    }

    /// Replaces the settings (the method, HD-Painter's parts, the sampler, seeds, paste-back);
    /// the step count, guidance scale, eta and scheduler set on the request still apply, and
    /// the plain methods still step with the folder's scheduler unless the request names one.
    pub fn options(mut self, options: InpaintOptions) -> Self {
        self.options = options;
        self
    }

    /// The scheduler to step with, over the folder's schedule settings (diffusers'
    /// `Class.from_config(pipe.scheduler.config)`: its spacing, offset and prediction type
    /// kept, the class's own options from the file where it names them). Without it the plain
    /// methods step with the folder's scheduler (`scheduler/scheduler_config.json`, as
    /// diffusers' pipelines do) and HD-Painter with DDIM on its own grid.
    pub fn scheduler(mut self, kind: SchedulerKind) -> Self {
        self.scheduler = Some(kind);
        self
    }

    /// Exactly this scheduler, whatever the folder says ([`scheduler`](Self::scheduler) and
    /// [`karras`](Self::karras) no longer apply).
    pub fn scheduler_spec(mut self, spec: SchedulerSpec) -> Self {
        self.exact_scheduler = Some(spec);
        self
    }

    /// LCM-LoRA's few-step preset (for models with an LCM-LoRA fused, see
    /// [`StableDiffusionModels::fuse_lora`](hd_painter_models::StableDiffusionModels::fuse_lora)):
    /// the LCM scheduler, [`LCM_STEPS`] steps and guidance [`LCM_GUIDANCE`] (no negative pass),
    /// each unless set on the request, for the first stage (the SR stage keeps its own
    /// settings). For Stable Inpainting, Blended, BrushNet and PAIntA; RASG needs DDIM and
    /// RePaint walks its own grid (the settings are refused with either).
    pub fn lcm(mut self) -> Self {
        self.lcm = true;
        self
    }

    /// How the prompts are read: [`PromptSyntax::Plain`] (the default) or Automatic1111's
    /// weighted and chunked [`PromptSyntax::Weighted`], for both stages.
    pub fn prompt_syntax(mut self, syntax: PromptSyntax) -> Self {
        self.syntax = syntax;
        self
    }

    /// Karras sigmas on or off (`use_karras_sigmas`; Euler, DPM-Solver, UniPC).
    pub fn karras(mut self, karras: bool) -> Self {
        self.karras = Some(karras);
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

    /// SDXL's micro-conditioning ([`InpaintOptions::micro`]; other models ignore it).
    pub fn micro_conditioning(mut self, micro: MicroConditioning) -> Self {
        self.options.micro = micro;
        self
    }

    /// Start from the image noised to this fraction of the steps ([`InpaintOptions::strength`];
    /// 1, the default, starts from pure noise; diffusers' SDXL default is 0.9999).
    pub fn strength(mut self, strength: f64) -> Self {
        self.options.strength = strength;
        self
    }

    /// Stop where diffusers' `denoising_end` stops ([`InpaintOptions::denoising_end`]).
    pub fn denoising_end(mut self, end: Option<f64>) -> Self {
        self.options.denoising_end = end;
        self
    }

    /// Which Blended Latent Diffusion a 4-channel model runs ([`InpaintOptions::blended`]).
    pub fn blended_variant(mut self, variant: BlendedVariant) -> Self {
        self.options.blended = variant;
        self
    }

    /// One output image per seed.
    pub fn seeds(mut self, seeds: Vec<u64>) -> Self {
        self.options.seeds = seeds;
        self
    }

    /// Inference steps, or RePaint's `t_T` for [`Method::Repaint`].
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = Some(steps);
        self
    }

    /// The classifier-free guidance scale (1.0 turns guidance off).
    pub fn guidance_scale(mut self, scale: f64) -> Self {
        self.guidance_scale = Some(scale);
        self
    }

    /// The eta of the method's stochastic term: RASG's when RASG is on
    /// ([`RasgSettings::eta`](hd_painter_sampling::RasgSettings::eta)), RePaint's for RePaint,
    /// DDIM's otherwise.
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

    /// The scheduler the run steps with (see [`scheduler`](Self::scheduler)).
    pub fn planned_scheduler(&self) -> Result<SchedulerSpec> {
        if let Some(spec) = self.exact_scheduler {
            return Ok(spec);
        }
        let folder = self.painter.scheduler_config();
        let hd = self.options.hd_painter.is_some();
        let kind = match self.lcm {
            true => self.scheduler.or(Some(LCM)),
            false => self.scheduler,
        };
        let mut spec = match (kind, folder) {
            (Some(kind), Some(config)) => SchedulerSpec {
                kind,
                ..SchedulerSpec::from_config(&config.with_class(kind.class_name())?)?
            },
            (Some(kind), None) => self.options.sampler.scheduler.with_kind(kind),
            (None, Some(config)) if !hd => SchedulerSpec::from_config(config)?,
            (None, _) => self.options.sampler.scheduler,
        };
        if let Some(karras) = self.karras {
            spec.karras = karras;
        }
        Ok(spec)
    }

    /// The settings the run will use: the options with the scheduler, step count, guidance
    /// scale and eta applied where the method keeps them; an eta for a scheduler without one
    /// is an error.
    pub fn settings(&self) -> Result<InpaintOptions> {
        let mut options = self.options.clone();
        options.sampler.scheduler = self.planned_scheduler()?;
        let rasg = options.hd_painter.as_mut().and_then(|h| h.rasg.as_mut());
        match (&mut options.method, rasg) {
            (Method::Repaint(_), _) if self.lcm => {
                let message = "the LCM preset is for the methods that step with a scheduler; \
                               RePaint walks its own DDPM grid";
                return Err(SamplingError::InvalidInput(message.into()).into());
            }
            (Method::Repaint(repaint), _) => {
                apply(&mut repaint.steps, self.steps);
                apply(&mut repaint.guidance_scale, self.guidance_scale);
                apply(&mut repaint.eta, self.eta);
            }
            (_, rasg) => {
                let steps = self.steps.or(self.lcm.then_some(LCM_STEPS));
                apply(&mut options.sampler.steps, steps);
                let guidance = self.guidance_scale.or(self.lcm.then_some(LCM_GUIDANCE));
                apply(&mut options.sampler.guidance_scale, guidance);
                match (rasg, &mut options.sampler.scheduler.kind, self.eta) {
                    (Some(rasg), _, eta) => apply(&mut rasg.eta, eta),
                    (None, SchedulerKind::Ddim { eta }, value) => apply(eta, value),
                    (None, _, None) => {}
                    (None, kind, Some(_)) => {
                        let message = format!("eta is DDIM's; the scheduler is {kind}");
                        return Err(SamplingError::InvalidInput(message).into());
                    }
                }
            }
        }
        Ok(options)
    }

    /// The first stage's prompts encoded as the run will see them.
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
        let models = &self.painter.models;
        Ok(self
            .syntax
            .encode(models, &self.prompt, positive, negative)?)
    }

    /// The SR stage's prompts as the official code encodes them: the prompt with
    /// [`SR_POSITIVE_PROMPT`] appended and an empty negative prompt, with the upscaler's text
    /// encoder.
    pub fn encode_sr(&self) -> Result<TextConditioning> {
        let x4 = &self.painter.sr_models()?.models;
        Ok(self
            .syntax
            .encode(x4, &self.prompt, SR_POSITIVE_PROMPT, "")?)
    }

    /// Runs it with exact attention and no step callback.
    pub fn run(&self) -> Result<Vec<Image>> {
        let mut attention = DefaultAttention::default();
        self.run_with(Hooks::new(&mut attention, &mut |_| {
            ControlFlow::Continue(())
        }))
    }

    /// Runs it with the caller's hooks: an attention processor (PAIntA wraps it when on) and a
    /// step callback that sees every step of every stage ([`hd_painter_sampling::StepView::stage`]) and may cancel
    /// ([`Error::is_cancelled`](crate::Error::is_cancelled)). Every setting is checked before
    /// any model runs.
    pub fn run_with(&self, mut hooks: Hooks<'_>) -> Result<Vec<Image>> {
        let settings = self.settings()?;
        settings.validate()?;
        let stages = self.planned_stages();
        if !matches!(stages, Stages::First) {
            self.sr.validate()?;
        }
        let (image, mask) = (self.image, self.mask);
        match stages {
            Stages::First => {
                let text = self.encode()?;
                let inpainter = self.painter.inpainter();
                Ok(inpainter.inpaint(image, mask, &text, &settings, hooks)?)
            }
            Stages::Both => {
                let (text, sr_text) = (self.encode()?, self.encode_sr()?);
                let two = TwoStage {
                    inpainter: self.painter.inpainter(),
                    upscaler: self.painter.upscaler()?,
                    sr_text: &sr_text,
                    sr: &self.sr,
                };
                Ok(two.run(image, mask, &text, &settings, hooks)?)
            }
            Stages::Sr { first_stage } => {
                let (upscaler, sr_text) = (self.painter.upscaler()?, self.encode_sr()?);
                let mut out = Vec::with_capacity(settings.seeds.len());
                for &seed in &settings.seeds {
                    let sr = SrSettings {
                        seed,
                        ..self.sr.clone()
                    };
                    let one = upscaler.upscale(
                        first_stage,
                        image,
                        mask,
                        &sr_text,
                        &sr,
                        hooks.reborrow(),
                    )?;
                    out.push(one);
                }
                Ok(out)
            }
        }
    }
}

fn apply<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}
