//! Image in, image out ([`Inpainter::inpaint`]): padding to the sizes the models need, the
//! method's conditioning from the image and mask, the sampling run, decoding, cropping back to
//! the input's exact size, and pasting the original back outside the (dilated, feathered) hole;
//! with [`HdPainter`], HD-Painter's mask preparation, PAIntA, RASG and the decoded last x0
//! prediction.

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use hd_painter_core::{
    Footprint, GaussianKernel, Image, Mask, PadMode, Quantize, Raster, seeded_noise,
};
use hd_painter_models::{AttentionProcessor, AutoencoderKl, BrushNetModel, Unet2DConditionModel};

use crate::brushnet::{BrushNetLatents, brushnet_blend, brushnet_condition};
use crate::conditioning::TextConditioning;
use crate::crop::{crop_inputs, crop_regions, stitch};
use crate::differential::DifferentialLatents;
use crate::error::{Result, SamplingError};
use crate::focus::PromptFocus;
use crate::guidance::{ClassifierFree, Guidance};
use crate::inpaint::{BlendedLatents, BlendedVariant, StableInpainting};
use crate::mask_edit::MaskEdit;
use crate::painta::Painta;
use crate::pipeline::{HdPainter, InpaintOptions, Method, PasteBack};
use crate::rasg::Rasg;
use crate::repaint::{KnownLatents, NoiseDraws, seeded_draws};
use crate::sampler::{Hooks, Sampled, Sampler, SamplerSettings, Stage};
use crate::schedule::NoiseSchedule;
use crate::stage::HdPainterInputs;
use crate::strategy::LatentStrategy;

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

/// A run's inputs at the models' sizes.
struct Prepared {
    /// The padded image, `[1, 3, H, W]` in `[-1, 1]`.
    pixels: Tensor<4>,
    /// The padded hole, as a mask and `[1, 1, H, W]` in `[0, 1]`.
    hole: Mask,
    hole_px: Tensor<4>,
    /// The hole at the latent size.
    latent_hole: Tensor<4>,
    /// With a soft mask, the padded mask as given (its grey levels are the strengths).
    soft: Option<Tensor<4>>,
    /// The latents' `[h, w]`.
    latent: [usize; 2],
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
        hooks: Hooks<'_>,
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
            return self.inpaint_cropped(image, mask, text, options, hooks);
        }
        self.check_models(options.method)?;
        let prepared = self.prepare(image, mask, &hole, options)?;
        let sampled = self.sample(&prepared, text, options, hooks)?;
        self.finish(image, &hole, sampled, options)
    }

    /// Refuses a method the models cannot run.
    fn check_models(&self, method: Method) -> Result<()> {
        let needs = match method {
            Method::StableInpainting => 9,
            Method::Blended | Method::Repaint(_) | Method::BrushNet(_) => 4,
        };
        if matches!(method, Method::BrushNet(_)) {
            self.branch()?;
        }
        if self.unet.in_channels() == needs {
            return Ok(());
        }
        Err(SamplingError::InvalidInput(format!(
            "{} needs a {needs}-channel UNet; this one takes {} channels{}",
            method.name(),
            self.unet.in_channels(),
            if needs == 9 {
                " (use Method::Blended or Method::Repaint with a 4-channel model)"
            } else {
                " (use Method::StableInpainting with a 9-channel inpainting model)"
            }
        )))
    }

    /// The image and the hole padded to the models' multiple, the hole at the latent size (as
    /// HD-Painter prepares it with its parts on, nearest-resized otherwise).
    fn prepare(
        &self,
        image: &Image,
        mask: &Mask,
        hole: &Mask,
        options: &InpaintOptions,
    ) -> Result<Prepared> {
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
                let padded = image.pad_to_multiple(multiple, PadMode::Zero)?;
                (padded, padded_hole, latent)
            }
        };
        let pixels = padded.to_tensor(&device);
        let [_, _, ph, pw] = pixels.dims();
        Ok(Prepared {
            pixels,
            hole_px: padded_hole.to_tensor(&device),
            hole: padded_hole,
            latent_hole,
            soft: match options.soft_mask {
                true => Some(
                    mask.pad_to_multiple(multiple, PadMode::Zero)?
                        .to_tensor(&device),
                ),
                false => None,
            },
            latent: [ph / f, pw / f],
        })
    }

    /// The method's sampling run, with PAIntA in the hooks and RASG as the guidance where
    /// HD-Painter's parts ask for them.
    fn sample(
        &self,
        prepared: &Prepared,
        text: &TextConditioning,
        options: &InpaintOptions,
        hooks: Hooks<'_>,
    ) -> Result<Sampled> {
        let focus = match options.hd_painter {
            Some(_) => Some(PromptFocus::new(
                text.prompt_tokens.clone(),
                &prepared.hole,
                prepared.latent,
            )?),
            None => None,
        };
        let guided = options.sampler.guidance_scale != 1.0;
        let Hooks {
            processor,
            on_step,
            noise: mut draws,
        } = hooks;
        let mut painta;
        let processor: &mut dyn AttentionProcessor = match (&focus, options.hd_painter) {
            (Some(focus), Some(h)) if h.painta => {
                painta = Painta::new(focus.clone(), guided, processor);
                &mut painta
            }
            _ => processor,
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
        let [lh, lw] = prepared.latent;
        let f = self.vae.downscale() as u32;
        let text = &text
            .clone()
            .with_micro_conditioning(&options.micro, [lh as u32 * f, lw as u32 * f]);
        let device = self.unet.device();
        let noise = seeded_noise(
            &options.seeds,
            [self.vae.latent_channels(), lh, lw],
            &device,
        );
        let mut sampler = Sampler {
            unet: self.unet,
            schedule: self.schedule,
            text,
            seeds: &options.seeds,
            stage: Stage::Inpaint,
            hooks: Hooks {
                processor,
                on_step,
                noise: draws.as_mut().map(|d| &mut **d as NoiseDraws<'_>),
            },
        };
        if let Method::Repaint(settings) = options.method {
            let known = KnownLatents {
                latents: self.vae.encode(prepared.pixels.clone())?.mean * self.vae.scaling_factor(),
                hole: prepared.latent_hole.clone(),
            };
            let mut draw = seeded_draws(options.seeds.clone());
            return sampler.resample(&settings, &known, noise, &mut draw);
        }
        let (mut strategy, start) = self.strategy(prepared, options, noise)?;
        let guidance: &dyn Guidance = match &rasg {
            Some(rasg) => rasg,
            None => &ClassifierFree,
        };
        let (settings, start) = self.start(prepared.pixels.clone(), start, options)?;
        sampler.run(&settings, strategy.as_mut(), guidance, start)
    }

    /// The method's latent strategy and the latents it starts from (the noise, or a soft mask's
    /// noised source).
    fn strategy(
        &self,
        prepared: &Prepared,
        options: &InpaintOptions,
        noise: Tensor<4>,
    ) -> Result<(Box<dyn LatentStrategy + '_>, Tensor<4>)> {
        let sf = self.vae.scaling_factor();
        let pixels = &prepared.pixels;
        let latent_hole = prepared.latent_hole.clone();
        let masked_latents = |hole: Tensor<4>| -> Result<Tensor<4>> {
            let keep = hole.neg() + 1.0;
            Ok(self.vae.encode(pixels.clone() * keep)?.mean * sf)
        };
        Ok(match (options.method, prepared.soft.clone()) {
            (Method::Blended | Method::StableInpainting, Some(change)) => {
                let scheduler = options.sampler.build(self.schedule)?;
                let steps = scheduler.timesteps().len();
                let source = self.vae.encode(pixels.clone())?.mean * sf;
                let mut soft = DifferentialLatents::new(change, source, noise, steps);
                let start = soft.noised_source(scheduler.level(0));
                if options.method == Method::StableInpainting {
                    // The inpainting UNet's own mask stays binary (at 128), as diffusers'.
                    let binary = |m: Tensor<4>| m.greater_elem(0.5).float();
                    let masked = masked_latents(binary(prepared.hole_px.clone()))?;
                    soft =
                        soft.with_conditioning(StableInpainting::new(binary(latent_hole), masked));
                }
                (Box::new(soft), start)
            }
            (Method::Blended, _) => {
                let source = self.vae.encode(pixels.clone())?.mean * sf;
                let blended = match options.blended {
                    BlendedVariant::Paper => {
                        BlendedLatents::new(latent_hole, source, options.seeds.clone())
                    }
                    BlendedVariant::Diffusers => {
                        BlendedLatents::diffusers(latent_hole, source, noise.clone())
                    }
                };
                (Box::new(blended), noise)
            }
            (Method::BrushNet(settings), _) => {
                let condition =
                    brushnet_condition(self.vae, pixels.clone(), prepared.hole_px.clone())?;
                (
                    Box::new(BrushNetLatents::new(self.branch()?, condition, settings)?),
                    noise,
                )
            }
            (Method::StableInpainting | Method::Repaint(_), _) => {
                let masked = masked_latents(prepared.hole_px.clone())?;
                (Box::new(StableInpainting::new(latent_hole, masked)), noise)
            }
        })
    }

    /// Decodes the run's result (HD-Painter's last x0, or the final latents), crops each image
    /// back to the input's size and pastes the original back as the options ask.
    fn finish(
        &self,
        image: &Image,
        hole: &Mask,
        sampled: Sampled,
        options: &InpaintOptions,
    ) -> Result<Vec<Image>> {
        let result = match options.hd_painter {
            Some(_) => sampled.last_x0,
            None => sampled.latents,
        };
        let decoded = self.vae.decode(result / self.vae.scaling_factor())?;
        // The official HD-Painter code truncates (`IImage` of a tensor); diffusers rounds.
        let quantize = match options.hd_painter {
            Some(_) => Quantize::Truncate,
            None => Quantize::Round,
        };
        let images = Image::batch_from_tensor(decoded, quantize)?;
        debug_assert_eq!(images.len(), options.seeds.len());
        images
            .into_iter()
            .map(|generated| {
                let generated = generated.crop(0, 0, image.width(), image.height())?;
                match options.paste_back {
                    Some(PasteBack::Feathered { dilate, feather }) => {
                        paste_back(image, &generated, hole, dilate, feather)
                    }
                    Some(PasteBack::BrushNet) => brushnet_blend(image, &generated, hole),
                    None => Ok(generated),
                }
            })
            .collect()
    }

    /// The run's settings and first latents: the noise, or with `strength < 1` the image's
    /// latents noised to the first timestep kept (the steps before it skipped); the end step of
    /// `denoising_end`.
    fn start(
        &self,
        pixels: Tensor<4>,
        noise: Tensor<4>,
        options: &InpaintOptions,
    ) -> Result<(SamplerSettings, Tensor<4>)> {
        let mut settings = options.sampler;
        if options.strength.is_nan() || options.strength <= 0.0 || options.strength > 1.0 {
            return Err(SamplingError::InvalidInput(format!(
                "strength {} (expected 0 < strength <= 1)",
                options.strength
            )));
        }
        let scheduler = settings.build(self.schedule)?;
        let start = if options.strength == 1.0 {
            let sigma = scheduler.init_noise_sigma();
            if sigma == 1.0 { noise } else { noise * sigma }
        } else {
            // diffusers' `get_timesteps`: the last `steps * strength` steps.
            let steps = settings.steps;
            let kept = ((steps as f64 * options.strength) as usize).clamp(1, steps);
            settings.first_step = steps - kept;
            let level = scheduler.level(settings.first_step);
            let n = noise.dims()[0];
            let z0 = (self.vae.encode(pixels)?.mean * self.vae.scaling_factor()).repeat_dim(0, n);
            level.noised(z0, noise)
        };
        if let Some(end) = options.denoising_end {
            settings = settings.with_denoising_end(end, self.schedule)?;
        }
        Ok((settings, start))
    }
}

impl Inpainter<'_> {
    /// [`InpaintOptions::crop_to_mask`]: each box around the mask's non-zero pixels
    /// ([`crop_regions`]) cropped and resized to the settings' size, inpainted with the same
    /// options, resized back and stitched into the original (outside the box the original
    /// exactly), then pasted back over the whole image's hole as the options ask; without a
    /// paste-back setting, over the hole itself with a hard edge, as diffusers' `apply_overlay`
    /// after `padding_mask_crop`, so that only the hole changes.
    pub(crate) fn inpaint_cropped(
        &self,
        image: &Image,
        mask: &Mask,
        text: &TextConditioning,
        options: &InpaintOptions,
        mut hooks: Hooks<'_>,
    ) -> Result<Vec<Image>> {
        let crop = options.crop_to_mask.unwrap_or_default();
        let hole = &options.hole(mask);
        // The edits and the fill are done; the crop's run repeats neither.
        let inner = InpaintOptions {
            crop_to_mask: None,
            paste_back: None,
            mask_edit: MaskEdit::default(),
            pre_fill: None,
            ..options.clone()
        };
        let mut stitched = vec![image.clone(); options.seeds.len()];
        for b in crop_regions(&mask.threshold(0), &crop) {
            let (small_image, small_mask) = crop_inputs(image, mask, b, crop.size)?;
            let generated =
                self.inpaint(&small_image, &small_mask, text, &inner, hooks.reborrow())?;
            for (out, g) in stitched.iter_mut().zip(&generated) {
                *out = stitch(out, g, b)?;
            }
        }
        stitched
            .iter()
            .map(|s| match options.paste_back {
                Some(PasteBack::Feathered { dilate, feather }) => {
                    paste_back(image, s, hole, dilate, feather)
                }
                Some(PasteBack::BrushNet) => brushnet_blend(image, s, hole),
                None => paste_back(image, s, hole, 0, 1),
            })
            .collect()
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
