//! HD-Painter's second stage, image in and image out: the geometry of the official `sr.run`
//! (long side 2048, reflect padding, the dilated and blurred hole), the x4 upscaler's sampling with
//! x0 blending, the decoded last x0, and the Poisson blend into the original; with a memory
//! estimate checked against a budget before any heavy work.

use std::ops::ControlFlow;

use burn::tensor::{Tensor, TensorData};
use hd_painter_core::{
    Filter, Footprint, GaussianKernel, Image, Mask, PadMode, Quantize, SizeRule, seeded_noise,
};
use hd_painter_models::{
    AttentionProcessor, AutoencoderKl, DEFAULT_SCORE_BUDGET, Unet2DConditionModel, VaeTiling,
};
use hd_painter_sampling::{
    DdimSettings, InpaintOptions, Inpainter, NoiseSchedule, Prediction, Spacing, StepView,
    TextConditioning, initial_latents, sample_ddim,
};

use crate::error::{Result, SrError};
use crate::memory::MemoryEstimate;
use crate::poisson::poisson_blend;
use crate::upscale::{DEFAULT_NOISE_LEVEL, UpscaleLatents, noise_low_res};

/// The size of the SR stage's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SrOutput {
    /// The original's exact size: the upscaled result is resized to it (bicubic) and
    /// Poisson-blended into the untouched original.
    #[default]
    InputSize,
    /// The reference's: the original resized to the long side (2048), the result blended into
    /// that.
    LongSide,
}

/// The SR stage's settings; the defaults are HD-Painter's.
#[derive(Clone, Debug, PartialEq)]
pub struct SrSettings {
    /// DDIM steps on the `999 - (1000 / steps) k` grid (20).
    pub steps: usize,
    /// Classifier-free guidance scale (7.5).
    pub guidance_scale: f64,
    /// The low-res image's noise level, also the UNet's class label (20).
    pub noise_level: u32,
    /// The long side the original is resized to, the x4 output (2048), by the official
    /// `IImage.resize` rule ([`SizeRule::Demo`]).
    pub long_side: u32,
    /// How [`TwoStage`] sizes its first stage, the original at `long_side / 4`: the official
    /// `hd_inpaint.py`'s rule ([`SizeRule::Script`], the default) or the demo's. The SR stage
    /// takes a first-stage result of either size, reflect-padded as the official code pads it.
    pub stage_size: SizeRule,
    /// The hole's dilation (3x3 cross steps) at the long-side size (19).
    pub hole_dilation: u32,
    /// The Gaussian blur of the low-res mask: taps and sigma (19, 3.2).
    pub mask_blur: (usize, f64),
    /// HD-Painter's x0 blending with the original's latents outside the hole (on).
    pub blend_known: bool,
    /// The final Poisson blend into the original (on).
    pub poisson: bool,
    /// The result's size.
    pub output: SrOutput,
    /// The seed of the initial latents and the low-res noise.
    pub seed: u64,
    /// Refuse, before any heavy work, a run whose estimated peak memory exceeds this many bytes.
    pub memory_budget: Option<u64>,
    /// Encode and decode in tiles (diffusers' VAE tiling) to bound the VAE's memory by the tile
    /// size; `None` (the reference) runs the VAE on the whole image, its mid-block attention in
    /// query chunks.
    pub vae_tiling: Option<VaeTiling>,
}

impl SrSettings {
    /// Checks the settings before any work, each a [`CoreError::InvalidParameter`] naming the
    /// setting: steps at least 1, a finite guidance scale, a noise level below the x4 UNet's
    /// 1000 noise-level classes, a long side of at least 64 px, a finite positive blur sigma.
    /// [`Upscaler::upscale`] and [`TwoStage::run`] (before its first stage) call it.
    ///
    /// [`CoreError::InvalidParameter`]: hd_painter_core::CoreError::InvalidParameter
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, value: String, expected| {
            Err(hd_painter_core::CoreError::InvalidParameter {
                name,
                value,
                expected,
            }
            .into())
        };
        if self.steps == 0 {
            return invalid("SR steps", "0".into(), "at least 1");
        }
        if !self.guidance_scale.is_finite() {
            return invalid(
                "SR guidance scale",
                self.guidance_scale.to_string(),
                "a finite number",
            );
        }
        if self.noise_level >= 1000 {
            return invalid(
                "SR noise level",
                self.noise_level.to_string(),
                "below 1000 (the x4 UNet's noise-level classes)",
            );
        }
        if self.long_side < 64 {
            return invalid("SR long side", self.long_side.to_string(), "at least 64 px");
        }
        let sigma = self.mask_blur.1;
        if !(sigma.is_finite() && sigma > 0.0) {
            return invalid(
                "SR mask blur sigma",
                sigma.to_string(),
                "a finite number > 0",
            );
        }
        Ok(())
    }
}

impl Default for SrSettings {
    fn default() -> Self {
        Self {
            steps: 20,
            guidance_scale: 7.5,
            noise_level: DEFAULT_NOISE_LEVEL,
            long_side: 2048,
            stage_size: SizeRule::Script,
            hole_dilation: 19,
            mask_blur: (19, 3.2),
            blend_known: true,
            poisson: true,
            output: SrOutput::InputSize,
            seed: 1,
            memory_budget: None,
            vae_tiling: None,
        }
    }
}

/// The x4 upscaler's models.
#[derive(Clone, Copy, Debug)]
pub struct Upscaler<'a> {
    /// The x4 upscaler UNet (7 input channels, noise-level class embedding, v-prediction).
    pub unet: &'a Unet2DConditionModel,
    /// Its f=4 autoencoder.
    pub vae: &'a AutoencoderKl,
    /// Its noise schedule ([`NoiseSchedule::x4_upscaler`]), also the low-res noise schedule.
    pub schedule: &'a NoiseSchedule,
}

/// The padded sizes of a run.
struct Geometry {
    /// The original resized to the long side, unpadded.
    hr: (u32, u32),
    /// Padded for the VAE.
    hr_padded: (u32, u32),
    /// The latent (and padded low-res) size.
    latent: (u32, u32),
}

impl Upscaler<'_> {
    /// The multiple the low-res image (and latent) is padded to: 64 as the reference, or the
    /// UNet's own reduction if larger.
    fn latent_multiple(&self) -> u32 {
        64.max(self.unet.downscale() as u32)
    }

    fn geometry(&self, original: (u32, u32), long_side: u32) -> Geometry {
        let f = self.vae.downscale() as u32;
        let hr = SizeRule::Demo.size(original.0, original.1, long_side);
        let m = self.latent_multiple() * f;
        let hr_padded = (hr.0.div_ceil(m) * m, hr.1.div_ceil(m) * m);
        Geometry {
            hr,
            hr_padded,
            latent: (hr_padded.0 / f, hr_padded.1 / f),
        }
    }

    /// The estimated peak memory of upscaling an original of `original` (width, height) size.
    pub fn memory_estimate(&self, original: (u32, u32), settings: &SrSettings) -> MemoryEstimate {
        let g = self.geometry(original, settings.long_side);
        // Tiles bound what the VAE sees at once.
        let vae_image = match settings.vae_tiling {
            Some(t) => (
                g.hr_padded.0.min(t.tile as u32),
                g.hr_padded.1.min(t.tile as u32),
            ),
            None => g.hr_padded,
        };
        MemoryEstimate::for_upscale(
            self.unet,
            self.vae,
            vae_image,
            g.latent,
            DEFAULT_SCORE_BUDGET,
        )
    }

    /// HD-Painter's SR stage: `low_res` is the first stage's result (the original resized to
    /// `long_side / 4`, as inpainted); `original` and `hole` (255 = inpainted) are the full-size
    /// inputs. Returns the upscaled, blended image (see [`SrOutput`]).
    #[allow(clippy::too_many_arguments)] // the parts of a run, each independent
    pub fn upscale(
        &self,
        low_res: &Image,
        original: &Image,
        hole: &Mask,
        text: &TextConditioning,
        settings: &SrSettings,
        processor: &mut dyn AttentionProcessor,
        on_step: &mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>,
    ) -> Result<Image> {
        settings.validate()?;
        let size = (original.width(), original.height());
        if (hole.width(), hole.height()) != size {
            return Err(SrError::SizeMismatch {
                what: "SR hole mask vs original".into(),
                expected: size,
                found: (hole.width(), hole.height()),
            });
        }
        let f = self.vae.downscale() as u32;
        let g = self.geometry(size, settings.long_side);
        // The official code pads the low-res image to a multiple of 64 and asserts that it then
        // matches the latents: any first-stage size that pads to the latent size is accepted.
        let pads_to = |low: u32, latent: u32| {
            low <= latent && low.div_ceil(self.latent_multiple()) * self.latent_multiple() == latent
        };
        if !(pads_to(low_res.width(), g.latent.0) && pads_to(low_res.height(), g.latent.1)) {
            return Err(SrError::SizeMismatch {
                what: format!(
                    "SR low-res image (the original at long side {})",
                    settings.long_side / f
                ),
                expected: (g.hr.0 / f, g.hr.1 / f),
                found: (low_res.width(), low_res.height()),
            });
        }
        if let Some(budget) = settings.memory_budget {
            let needed = self.memory_estimate(size, settings).peak();
            if needed > budget {
                return Err(SrError::MemoryBudget {
                    what: format!(
                        "upscaling to {}x{} ({}x{} latent)",
                        g.hr.0, g.hr.1, g.latent.0, g.latent.1
                    ),
                    needed,
                    budget,
                });
            }
        }
        let hole = hole.threshold(127);
        let resized = |s: (u32, u32)| s != size;
        let hr_original = if resized(g.hr) {
            original.resize(g.hr.0, g.hr.1, Filter::Bicubic)?
        } else {
            original.clone()
        };
        // Nothing to upscale into: the original, at the size asked for.
        if hole.is_empty() {
            return Ok(match settings.output {
                SrOutput::InputSize => original.clone(),
                SrOutput::LongSide => hr_original,
            });
        }
        let hr_hole = if resized(g.hr) {
            hole.resize(g.hr.0, g.hr.1, Filter::Bicubic)?
        } else {
            hole.clone()
        };
        let device = self.unet.device();
        let (lw, lh) = (g.latent.0 as usize, g.latent.1 as usize);

        // The generated region at the latent size: the reflect-padded hole, dilated, resized
        // (bicubic), blurred.
        let (blur_taps, blur_sigma) = settings.mask_blur;
        let dilated = Mask::from_raster(hr_hole.raster().pad_right_bottom(
            g.hr_padded.0,
            g.hr_padded.1,
            PadMode::Reflect,
        )?)?
        .threshold(0)
        .dilate(Footprint::Cross {
            radius: settings.hole_dilation,
        })?;
        let small = dilated.resize(g.latent.0, g.latent.1, Filter::Bicubic)?;
        let soft = small
            .raster()
            .map(|v| f32::from(v) / 255.0)
            .gaussian_blur(&GaussianKernel::torchvision(blur_taps, Some(blur_sigma))?);
        let mask =
            Tensor::<4>::from_data(TensorData::new(soft.into_vec(), [1, 1, lh, lw]), &device);

        let low_res = Image::from_raster(low_res.raster().pad_right_bottom(
            g.latent.0,
            g.latent.1,
            PadMode::Reflect,
        )?)?;
        // One seed drives the latents, another stream of it the low-res noise.
        let lr_noise = seeded_noise(&[!settings.seed], [3, lh, lw], &device);
        let noised = noise_low_res(
            low_res.to_tensor(&device),
            lr_noise,
            settings.noise_level,
            self.schedule,
        );
        let mut strategy = UpscaleLatents::new(noised, settings.noise_level);
        if settings.blend_known {
            let hr_padded = Image::from_raster(hr_original.raster().pad_right_bottom(
                g.hr_padded.0,
                g.hr_padded.1,
                PadMode::Reflect,
            )?)?;
            let pixels = hr_padded.to_tensor(&device);
            let posterior = match settings.vae_tiling {
                Some(tiling) => self.vae.encode_tiled(pixels, tiling)?,
                None => self.vae.encode(pixels)?,
            };
            let known = posterior.mean * self.vae.scaling_factor();
            strategy = strategy.with_known_region(mask, known);
        }
        let ddim = DdimSettings {
            steps: settings.steps,
            spacing: Spacing::HdPainter,
            guidance_scale: settings.guidance_scale,
            eta: 0.0,
            prediction: Prediction::VPrediction,
            ..DdimSettings::default()
        };
        let latents = initial_latents(
            &[settings.seed],
            [self.vae.latent_channels(), lh, lw],
            &device,
        );
        let sampled = sample_ddim(
            self.unet,
            self.schedule,
            &ddim,
            text,
            &mut strategy,
            latents,
            &[settings.seed],
            processor,
            None,
            on_step,
        )?;
        let latents = sampled.last_x0 / self.vae.scaling_factor();
        let decoded = match settings.vae_tiling {
            Some(tiling) => self.vae.decode_tiled(latents, tiling)?,
            None => self.vae.decode(latents)?,
        };
        // HD-Painter converts with (255 * x).to(uint8): truncation.
        let upscaled =
            Image::from_tensor(decoded, Quantize::Truncate)?.crop(0, 0, g.hr.0, g.hr.1)?;
        let (base, base_hole, result) = match settings.output {
            SrOutput::LongSide => (hr_original, hr_hole, upscaled),
            SrOutput::InputSize if resized(g.hr) => {
                let back = upscaled.resize(size.0, size.1, Filter::Bicubic)?;
                (original.clone(), hole, back)
            }
            SrOutput::InputSize => (original.clone(), hole, upscaled),
        };
        if settings.poisson {
            poisson_blend(&base, &result, &base_hole)
        } else {
            Ok(result)
        }
    }
}

/// HD-Painter end to end: the first stage (any [`Inpainter`] run, e.g.
/// `InpaintOptions::hd_painter(HdPainter::full())`) on the original resized to
/// `long_side / 4`, then the SR stage on each result, one per seed (the SR stage reuses that
/// image's seed).
#[derive(Clone, Copy, Debug)]
pub struct TwoStage<'a> {
    /// The first stage's models.
    pub inpainter: Inpainter<'a>,
    /// The SR stage's models.
    pub upscaler: Upscaler<'a>,
}

impl TwoStage<'_> {
    /// Inpaints `image` where `mask` is set (255 = hole): `text` and `options` for the first
    /// stage, `sr_text` (e.g. the prompt with [`SR_POSITIVE_PROMPT`](crate::SR_POSITIVE_PROMPT)
    /// and an empty negative prompt, encoded with the upscaler's text encoder) and `sr` for the
    /// second. `on_step` sees both stages' steps.
    #[allow(clippy::too_many_arguments)] // the parts of a two-stage run
    pub fn run(
        &self,
        image: &Image,
        mask: &Mask,
        text: &TextConditioning,
        options: &InpaintOptions,
        sr_text: &TextConditioning,
        sr: &SrSettings,
        processor: &mut dyn AttentionProcessor,
        on_step: &mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>,
    ) -> Result<Vec<Image>> {
        sr.validate()?;
        options.validate()?;
        let f = self.upscaler.vae.downscale() as u32;
        let low = sr.long_side / f;
        let (w, h) = (image.width(), image.height());
        let first_size = sr.stage_size.size(w, h, low);
        let (small_image, small_mask) = if first_size == (w, h) {
            (image.clone(), mask.clone())
        } else {
            (
                image.resize(first_size.0, first_size.1, Filter::Bicubic)?,
                mask.resize(first_size.0, first_size.1, Filter::Bicubic)?,
            )
        };
        let first =
            self.inpainter
                .inpaint(&small_image, &small_mask, text, options, processor, on_step)?;
        first
            .iter()
            .zip(&options.seeds)
            .map(|(low_res, &seed)| {
                let settings = SrSettings { seed, ..sr.clone() };
                self.upscaler
                    .upscale(low_res, image, mask, sr_text, &settings, processor, on_step)
            })
            .collect()
    }
}
