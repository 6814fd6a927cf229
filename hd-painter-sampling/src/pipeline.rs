//! Image in, image out: padding to the sizes the models need, the method's conditioning from
//! the image and mask, sampling, decoding, cropping back to the input's exact size, and pasting
//! the original back outside the (dilated, feathered) hole; with [`HdPainter`], HD-Painter's
//! mask preparation, PAIntA, RASG and the decoded last x0 prediction.

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use hd_painter_core::{
    Footprint, GaussianKernel, Image, Mask, PadMode, Quantize, Raster, seeded_noise,
};
use hd_painter_models::{
    AttentionProcessor, AutoencoderKl, BrushNetModel, StableDiffusionModels, Unet2DConditionModel,
};

use crate::brushnet::{BrushNetLatents, BrushNetSettings, brushnet_blend, brushnet_condition};
use crate::crop::CropSettings;
use crate::differential::DifferentialLatents;
use crate::error::{Result, SamplingError};
use crate::focus::{
    HD_PAINTER_NEGATIVE_PROMPT, HD_PAINTER_POSITIVE_PROMPT, PromptFocus, full_prompt,
    prompt_token_indices,
};
use crate::guidance::{ClassifierFree, Guidance};
use crate::inpaint::{BlendedLatents, StableInpainting};
use crate::mask_edit::MaskEdit;
use crate::painta::Painta;
use crate::prefill::PreFill;
use crate::rasg::{Rasg, RasgSettings};
use crate::repaint::{RepaintSettings, sample_repaint, seeded_draws};
use crate::sampler::{DdimSettings, LatentStrategy, Sampler, StepView, TextConditioning};
use crate::schedule::{NoiseSchedule, Spacing, timesteps};
use crate::stage::HdPainterInputs;

/// The inpainting method.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Stable Inpainting: a 9-channel inpainting UNet conditioned on the mask and masked image.
    StableInpainting,
    /// Blended Latent Diffusion with any 4-channel UNet.
    Blended,
    /// RePaint with any 4-channel UNet.
    Repaint(RepaintSettings),
    /// BrushNet: a 4-channel UNet with a BrushNet branch ([`Inpainter::with_brushnet`]).
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

/// HD-Painter's parts of a run (METHODS.md sections 2 to 4). With any of them, the run also
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
    /// DDIM settings (steps, grid, guidance, eta) for Stable Inpainting and Blended.
    pub ddim: DdimSettings,
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
    /// [`encode_hd_painter_prompts`] to get its positive and negative prompts. Every field can be
    /// changed afterwards; `method: Method::Blended` runs PAIntA / RASG with a 4-channel model.
    pub fn hd_painter(variant: HdPainter) -> Self {
        Self {
            method: Method::StableInpainting,
            ddim: DdimSettings {
                steps: 50,
                spacing: Spacing::HdPainter,
                guidance_scale: 7.5,
                eta: 0.0,
                ..DdimSettings::default()
            },
            strength: 1.0,
            seeds: vec![1],
            paste_back: None,
            hd_painter: Some(variant),
            crop_to_mask: None,
            mask_edit: MaskEdit::default(),
            soft_mask: false,
            pre_fill: None,
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
            ddim: DdimSettings::default(),
            strength: 1.0,
            seeds: vec![0],
            paste_back: Some(PasteBack::default()),
            hd_painter: None,
            crop_to_mask: None,
            mask_edit: MaskEdit::default(),
            soft_mask: false,
            pre_fill: None,
        }
    }
}

/// The models an inpainting run needs.
#[derive(Clone, Copy, Debug)]
pub struct Inpainter<'a> {
    /// The denoiser.
    pub unet: &'a Unet2DConditionModel,
    /// The autoencoder.
    pub vae: &'a AutoencoderKl,
    /// The noise schedule the UNet was trained with.
    pub schedule: &'a NoiseSchedule,
    /// BrushNet's branch, for [`Method::BrushNet`].
    pub brushnet: Option<&'a BrushNetModel>,
}

impl<'a> Inpainter<'a> {
    /// The models of a run without BrushNet.
    pub fn new(
        unet: &'a Unet2DConditionModel,
        vae: &'a AutoencoderKl,
        schedule: &'a NoiseSchedule,
    ) -> Self {
        Self {
            unet,
            vae,
            schedule,
            brushnet: None,
        }
    }

    /// The same with BrushNet's branch for [`Method::BrushNet`].
    pub fn with_brushnet(mut self, branch: &'a BrushNetModel) -> Self {
        self.brushnet = Some(branch);
        self
    }

    /// The BrushNet branch, which [`Method::BrushNet`] needs.
    fn branch(&self) -> Result<&'a BrushNetModel> {
        self.brushnet.ok_or_else(|| {
            SamplingError::InvalidInput(
                "Method::BrushNet needs a branch: Inpainter::with_brushnet".into(),
            )
        })
    }
}

/// The guidance pair for `prompt` and `negative`, encoded with the folder's tokenizer and text
/// encoder.
pub fn encode_prompts(
    models: &StableDiffusionModels,
    prompt: &str,
    negative: &str,
) -> Result<TextConditioning> {
    encode_prompts_with_positive(models, prompt, "", negative)
}

/// The guidance pair with a positive prompt appended to the prompt as HD-Painter does
/// (`"{prompt}, {positive}"`, [`full_prompt`]); the prompt tokens PAIntA and RASG use are the
/// user prompt's own plus the end-of-text token of the full prompt.
pub fn encode_prompts_with_positive(
    models: &StableDiffusionModels,
    prompt: &str,
    positive: &str,
    negative: &str,
) -> Result<TextConditioning> {
    let full = full_prompt(prompt, positive);
    Ok(TextConditioning {
        positive: models.encode_prompt(&full)?,
        negative: models.encode_prompt(negative)?,
        prompt_tokens: prompt_token_indices(&models.tokenizer, prompt, &full),
    })
}

/// HD-Painter's prompts: its positive prompt appended, its negative prompt.
pub fn encode_hd_painter_prompts(
    models: &StableDiffusionModels,
    prompt: &str,
) -> Result<TextConditioning> {
    encode_prompts_with_positive(
        models,
        prompt,
        HD_PAINTER_POSITIVE_PROMPT,
        HD_PAINTER_NEGATIVE_PROMPT,
    )
}

impl Inpainter<'_> {
    /// Fills the hole of `mask` (white = hole, binarised at 128) in `image`, one output per seed,
    /// each exactly the input's size. A mask without hole returns the input unchanged.
    pub fn inpaint(
        &self,
        image: &Image,
        mask: &Mask,
        text: &TextConditioning,
        options: &InpaintOptions,
        processor: &mut dyn AttentionProcessor,
        on_step: &mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>,
    ) -> Result<Vec<Image>> {
        options.validate()?;
        mask.ensure_matches(image, "inpainting mask vs image")?;
        let edited;
        let mask = match options.mask_edit == MaskEdit::default() {
            true => mask,
            false => {
                edited = options.mask_edit.apply(mask)?;
                &edited
            }
        };
        let hole = options.hole(mask);
        if hole.threshold(0).is_empty() {
            return Ok(vec![image.clone(); options.seeds.len()]);
        }
        let filled;
        let image = match options.pre_fill {
            Some(fill) => {
                filled = fill.apply(image, &hole)?;
                &filled
            }
            None => image,
        };
        if options.crop_to_mask.is_some() {
            return self.inpaint_cropped(image, mask, text, options, processor, on_step);
        }
        let needs = match options.method {
            Method::StableInpainting => 9,
            Method::Blended | Method::Repaint(_) | Method::BrushNet(_) => 4,
        };
        if matches!(options.method, Method::BrushNet(_)) {
            self.branch()?;
        }
        if self.unet.in_channels() != needs {
            return Err(SamplingError::InvalidInput(format!(
                "{} needs a {needs}-channel UNet; this one takes {} channels{}",
                options.method.name(),
                self.unet.in_channels(),
                if needs == 9 {
                    " (use Method::Blended or Method::Repaint with a 4-channel model)"
                } else {
                    " (use Method::StableInpainting with a 9-channel inpainting model)"
                }
            )));
        }
        let (width, height) = (image.width(), image.height());
        let multiple = (self.vae.downscale() * self.unet.downscale()) as u32;
        let device = self.unet.device();
        let f = self.vae.downscale();
        let (padded, padded_hole, latent_hole) = match options.hd_painter {
            Some(_) => {
                let inputs = HdPainterInputs::prepare(image, mask, multiple, f as u32)?;
                let latent = inputs.latent_hole.to_tensor(&device);
                (inputs.image, inputs.hole, latent)
            }
            None => {
                let padded_hole = hole.pad_to_multiple(multiple, PadMode::Zero)?;
                let [_, _, ph, pw] = padded_hole.to_tensor(&device).dims();
                let latent = interpolate(
                    padded_hole.to_tensor(&device),
                    InterpolateOptions::new(InterpolateMode::Nearest)
                        .with_align_corners(false)
                        .with_output_size([ph / f, pw / f]),
                );
                (
                    image.pad_to_multiple(multiple, PadMode::Zero)?,
                    padded_hole,
                    latent,
                )
            }
        };
        let pixels = padded.to_tensor(&device);
        let hole_px = padded_hole.to_tensor(&device);
        let [_, _, ph, pw] = pixels.dims();
        let (lh, lw) = (ph / f, pw / f);
        let focus = match options.hd_painter {
            Some(_) => Some(PromptFocus::new(
                text.prompt_tokens.clone(),
                &padded_hole,
                [lh, lw],
            )?),
            None => None,
        };
        let guided = options.ddim.guidance_scale != 1.0;
        let mut painta = match (&focus, options.hd_painter) {
            (Some(focus), Some(h)) if h.painta => {
                Some(Painta::new(focus.clone(), guided, &mut *processor))
            }
            _ => None,
        };
        let processor: &mut dyn AttentionProcessor = match painta.as_mut() {
            Some(p) => p,
            None => processor,
        };
        let rasg = match (focus, options.hd_painter) {
            (
                Some(focus),
                Some(HdPainter {
                    rasg: Some(settings),
                    ..
                }),
            ) => Some(Rasg { settings, focus }),
            _ => None,
        };
        let sf = self.vae.scaling_factor();
        let n = options.seeds.len();
        let noise = seeded_noise(
            &options.seeds,
            [self.vae.latent_channels(), lh, lw],
            &device,
        );

        let sampled = match options.method {
            Method::Repaint(settings) => {
                let known = self.vae.encode(pixels)?.mean * sf;
                let keep = latent_hole.neg() + 1.0;
                let mut draw = seeded_draws(options.seeds.clone());
                sample_repaint(
                    self.unet,
                    self.schedule,
                    &settings,
                    text,
                    known,
                    keep,
                    noise,
                    &mut draw,
                    processor,
                    on_step,
                )?
            }
            Method::StableInpainting | Method::Blended | Method::BrushNet(_) => {
                let mut start = noise.clone();
                let mut strategy: Box<dyn LatentStrategy> = match options.method {
                    Method::Blended | Method::StableInpainting if options.soft_mask => {
                        let grid = timesteps(
                            options.ddim.spacing,
                            self.schedule.len(),
                            options.ddim.steps,
                        );
                        let change = mask
                            .pad_to_multiple(multiple, PadMode::Zero)?
                            .to_tensor(&device);
                        let source = self.vae.encode(pixels.clone())?.mean * sf;
                        let mut soft =
                            DifferentialLatents::new(change, source, noise.clone(), grid.len());
                        start = soft.noised_source(self.schedule, grid[0] as isize);
                        if options.method == Method::StableInpainting {
                            // The inpainting UNet's own mask stays binary (at 128), as diffusers'.
                            let binary = |m: Tensor<4>| m.greater_elem(0.5).float();
                            let keep = binary(hole_px.clone()).neg() + 1.0;
                            let masked = self.vae.encode(pixels.clone() * keep)?.mean * sf;
                            let condition = StableInpainting::new(binary(latent_hole), masked);
                            soft = soft.with_conditioning(condition);
                        }
                        Box::new(soft)
                    }
                    Method::Blended => {
                        let source = self.vae.encode(pixels.clone())?.mean * sf;
                        Box::new(BlendedLatents::new(
                            latent_hole,
                            source,
                            options.seeds.clone(),
                        ))
                    }
                    Method::BrushNet(settings) => {
                        let condition =
                            brushnet_condition(self.vae, pixels.clone(), hole_px.clone())?;
                        Box::new(BrushNetLatents::new(self.branch()?, condition, settings)?)
                    }
                    _ => {
                        let keep = hole_px.neg() + 1.0;
                        let masked = self.vae.encode(pixels.clone() * keep)?.mean * sf;
                        Box::new(StableInpainting::new(latent_hole, masked))
                    }
                };
                let guidance: &dyn Guidance = match &rasg {
                    Some(rasg) => rasg,
                    None => &ClassifierFree,
                };
                let (settings, start) = self.start(pixels, start, options)?;
                Sampler {
                    unet: self.unet,
                    schedule: self.schedule,
                    settings,
                    text,
                    seeds: &options.seeds,
                    processor,
                    on_step,
                }
                .run(strategy.as_mut(), guidance, start)?
            }
        };

        let result = match options.hd_painter {
            Some(_) => sampled.last_x0,
            None => sampled.latents,
        };
        let decoded = self.vae.decode(result / sf)?;
        // The official HD-Painter code truncates (`IImage` of a tensor); diffusers rounds.
        let quantize = match options.hd_painter {
            Some(_) => Quantize::Truncate,
            None => Quantize::Round,
        };
        let images = Image::batch_from_tensor(decoded, quantize)?;
        debug_assert_eq!(images.len(), n);
        images
            .into_iter()
            .map(|generated| {
                let generated = generated.crop(0, 0, width, height)?;
                match options.paste_back {
                    Some(PasteBack::Feathered { dilate, feather }) => {
                        paste_back(image, &generated, &hole, dilate, feather)
                    }
                    Some(PasteBack::BrushNet) => brushnet_blend(image, &generated, &hole),
                    None => Ok(generated),
                }
            })
            .collect()
    }

    /// The run's settings and first latents: the noise, or with `strength < 1` the image's
    /// latents noised to the first timestep kept (the steps before it skipped).
    fn start(
        &self,
        pixels: Tensor<4>,
        noise: Tensor<4>,
        options: &InpaintOptions,
    ) -> Result<(DdimSettings, Tensor<4>)> {
        let mut settings = options.ddim;
        if options.strength.is_nan() || options.strength <= 0.0 || options.strength > 1.0 {
            return Err(SamplingError::InvalidInput(format!(
                "strength {} (expected 0 < strength <= 1)",
                options.strength
            )));
        }
        if options.strength == 1.0 {
            return Ok((settings, noise));
        }
        let grid = timesteps(settings.spacing, self.schedule.len(), settings.steps);
        let kept = ((grid.len() as f64 * options.strength) as usize).clamp(1, grid.len());
        settings.first_step = grid.len() - kept;
        let t = grid[settings.first_step];
        let a = self.schedule.alpha_cumprod(t as isize);
        let n = noise.dims()[0];
        let z0 = (self.vae.encode(pixels)?.mean * self.vae.scaling_factor()).repeat_dim(0, n);
        Ok((settings, z0 * a.sqrt() + noise * (1.0 - a).sqrt()))
    }
}

/// `orig + alpha (generated - orig)` with alpha the dilated, feathered hole.
pub(crate) fn paste_back(
    original: &Image,
    generated: &Image,
    hole: &Mask,
    dilate: u32,
    feather: usize,
) -> Result<Image> {
    let mut alpha = hole.dilate(Footprint::square(dilate))?;
    if feather > 1 {
        alpha = alpha.gaussian_blur(&GaussianKernel::opencv(feather, 0.0)?)?;
    }
    let (o, g, a) = (original.raster(), generated.raster(), alpha.raster());
    let blended = Raster::from_vec(
        original.width(),
        original.height(),
        3,
        o.as_slice()
            .iter()
            .zip(g.as_slice())
            .enumerate()
            .map(|(i, (&ov, &gv))| {
                let w = f32::from(a.as_slice()[i / 3]) / 255.0;
                (f32::from(ov) + w * (f32::from(gv) - f32::from(ov)))
                    .round()
                    .clamp(0.0, 255.0) as u8
            })
            .collect(),
    )?;
    Ok(Image::from_raster(blended)?)
}
