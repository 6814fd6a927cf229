//! HD-Painter end to end ([`TwoStage`]: the first stage at a quarter of the SR long side, then
//! [`Upscaler::upscale`] on each result).

use hd_painter_core::{Filter, Image, Mask};
use hd_painter_sampling::{
    CropSettings, Hooks, InpaintOptions, Inpainter, TextConditioning, crop_regions, stitch,
};

use crate::error::Result;
use crate::settings::{SrOutput, SrSettings};
use crate::upscaler::Upscaler;

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
