//! The SR stage's settings and HD-Painter end to end ([`TwoStage`]: the first stage at a quarter
//! of the SR long side, then [`Upscaler::upscale`] on each result).

use hd_painter_core::{Filter, Image, Mask, SizeRule};
use hd_painter_models::VaeTiling;
use hd_painter_sampling::{
    CropSettings, Hooks, InpaintOptions, Inpainter, TextConditioning, crop_regions, stitch,
};

use crate::error::Result;
use crate::upscale::DEFAULT_NOISE_LEVEL;
use crate::upscaler::Upscaler;

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
    /// The SR stage's prompts, encoded with the upscaler's text encoder (e.g. the prompt with
    /// [`SR_POSITIVE_PROMPT`](crate::SR_POSITIVE_PROMPT) and an empty negative prompt).
    pub sr_text: &'a TextConditioning,
    /// The SR stage's settings.
    pub sr: &'a SrSettings,
}

impl TwoStage<'_> {
    /// Inpaints `image` where `mask` is set (255 = hole): `text` and `options` for the first
    /// stage, the SR stage's own for the second. The hooks see both stages' steps.
    ///
    /// With [`InpaintOptions::crop_to_mask`], only a box around the hole is worked on: a box no
    /// larger than the first stage's size (`long_side / 4`) is inpainted by the first stage
    /// alone at the crop settings' size (the SR stage would add nothing), a larger one goes
    /// through both stages at its own size (the SR stage's result resized to the box); either
    /// way the box is stitched back and the original is kept exactly outside it.
    pub fn run(
        &self,
        image: &Image,
        mask: &Mask,
        text: &TextConditioning,
        options: &InpaintOptions,
        mut hooks: Hooks<'_>,
    ) -> Result<Vec<Image>> {
        self.sr.validate()?;
        options.validate()?;
        if options.crop_to_mask.is_some() {
            return self.run_cropped(image, mask, text, options, hooks);
        }
        let (w, h) = (image.width(), image.height());
        let first_size = self.sr.stage_size.size(w, h, self.first_long_side());
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
                .inpaint(&small_image, &small_mask, text, options, hooks.reborrow())?;
        first
            .iter()
            .zip(&options.seeds)
            .map(|(low_res, &seed)| {
                let settings = SrSettings {
                    seed,
                    ..self.sr.clone()
                };
                let sr_text = self.sr_text;
                self.upscaler
                    .upscale(low_res, image, mask, sr_text, &settings, hooks.reborrow())
            })
            .collect()
    }

    /// The first stage's long side: the SR long side over the upscaler's factor.
    fn first_long_side(&self) -> u32 {
        self.sr.long_side / self.upscaler.vae.downscale() as u32
    }

    /// [`TwoStage::run`] on each box of [`crop_regions`] for the options' crop settings,
    /// stitched back one after the other.
    fn run_cropped(
        &self,
        image: &Image,
        mask: &Mask,
        text: &TextConditioning,
        options: &InpaintOptions,
        mut hooks: Hooks<'_>,
    ) -> Result<Vec<Image>> {
        let crop = options.crop_to_mask.unwrap_or_default();
        let one_box = CropSettings {
            each_hole: false,
            ..crop
        };
        let sr = SrSettings {
            output: SrOutput::InputSize,
            ..self.sr.clone()
        };
        let inner_stages = TwoStage { sr: &sr, ..*self };
        let mut out = vec![image.clone(); options.seeds.len()];
        for b in crop_regions(&mask.threshold(0), &crop) {
            let (w, h) = b.size();
            let small = image.crop(b.x1, b.y1, w, h)?;
            let small_mask = mask.crop(b.x1, b.y1, w, h)?;
            // A box the first stage already sees at full resolution needs no SR stage.
            let generated = if w.max(h) <= self.first_long_side() {
                let inner = InpaintOptions {
                    crop_to_mask: Some(one_box),
                    ..options.clone()
                };
                self.inpainter
                    .inpaint(&small, &small_mask, text, &inner, hooks.reborrow())?
            } else {
                let inner = InpaintOptions {
                    crop_to_mask: None,
                    ..options.clone()
                };
                inner_stages.run(&small, &small_mask, text, &inner, hooks.reborrow())?
            };
            for (o, g) in out.iter_mut().zip(&generated) {
                *o = stitch(o, g, b)?;
            }
        }
        Ok(out)
    }
}
