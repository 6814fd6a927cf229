//! The SR stage's settings ([`SrSettings`], HD-Painter's defaults) and the size of its result
//! ([`SrOutput`]).

use hd_painter_core::SizeRule;
use hd_painter_models::VaeTiling;
use hd_painter_sampling::{Prediction, SchedulerSpec};

use crate::error::Result;
use crate::upscale::DEFAULT_NOISE_LEVEL;

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
    /// Steps (20; with the default DDIM on the `999 - (1000 / steps) k` grid).
    pub steps: usize,
    /// The scheduler: DDIM on HD-Painter's grid with v-prediction, as the official SR stage
    /// steps. Any scheduler that steps on the x0 prediction can carry the known-region blend
    /// (every one but PNDM).
    pub scheduler: SchedulerSpec,
    /// Classifier-free guidance scale (7.5).
    pub guidance_scale: f64,
    /// The low-res image's noise level, also the UNet's class label (20).
    pub noise_level: u32,
    /// The long side the original is resized to, the x4 output (2048), by the official
    /// `IImage.resize` rule ([`SizeRule::Demo`]).
    pub long_side: u32,
    /// How [`TwoStage`](crate::TwoStage) sizes its first stage, the original at
    /// `long_side / 4`: the official `hd_inpaint.py`'s rule ([`SizeRule::Script`], the default)
    /// or the demo's. The SR stage takes a first-stage result of either size, reflect-padded as
    /// the official code pads it.
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
    /// [`Upscaler::upscale`](crate::Upscaler::upscale) and [`TwoStage::run`](crate::TwoStage::run)
    /// (before its first stage) call it.
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
            scheduler: SchedulerSpec {
                prediction: Prediction::VPrediction,
                ..SchedulerSpec::hd_painter()
            },
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
