//! A loaded model set ([`Painter`]): the inpainting pipeline, optionally a BrushNet branch and
//! the x4 upscaler of HD-Painter's SR stage.

use hd_painter_core::{Image, Quantize};
use hd_painter_models::{BrushNetModel, SchedulerConfig, StableDiffusionModels};
use hd_painter_sampling::{
    BrushNetSettings, HdPainter, InpaintOptions, Inpainter, Method, NoiseSchedule, Stage, StepView,
};
use hd_painter_sr::{SrError, Upscaler};

use crate::error::Result;

/// The x4 upscaler of the SR stage: its models and noise schedule.
#[derive(Debug)]
pub struct SrModels {
    /// The upscaler's pipeline (`stable-diffusion-x4-upscaler`).
    pub models: StableDiffusionModels,
    /// Its noise schedule ([`NoiseSchedule::x4_upscaler`]).
    pub schedule: NoiseSchedule,
}

/// Inpainting models ready to run: the pipeline and the noise schedule it was trained with,
/// optionally a BrushNet branch ([`Painter::with_brushnet`]) and the x4 upscaler of the SR stage
/// ([`Painter::with_upscaler`]).
#[derive(Debug)]
pub struct Painter {
    /// The pipeline's models.
    pub models: StableDiffusionModels,
    /// Its noise schedule (Stable Diffusion's scaled-linear 0.00085 - 0.012).
    pub schedule: NoiseSchedule,
    /// A BrushNet branch for the 4-channel UNet.
    pub brushnet: Option<BrushNetModel>,
    /// The SR stage's upscaler.
    pub upscaler: Option<SrModels>,
}

impl Painter {
    /// Wraps loaded models (see [`StableDiffusionModels::load`] and
    /// [`StableDiffusionModels::from_source`]) with the noise schedule their folder's
    /// `scheduler_config.json` describes, or Stable Diffusion's without one.
    pub fn new(models: StableDiffusionModels) -> Self {
        let schedule = scheduler_config(&models)
            .map_or_else(NoiseSchedule::stable_diffusion, NoiseSchedule::from_config);
        Self {
            models,
            schedule,
            brushnet: None,
            upscaler: None,
        }
    }

    /// The same with a BrushNet branch: requests then run [`Method::BrushNet`] with BrushNet's
    /// blend as paste-back (the reference's defaults), unless told otherwise.
    pub fn with_brushnet(mut self, branch: BrushNetModel) -> Self {
        self.brushnet = Some(branch);
        self
    }

    /// The same with the x4 upscaler of HD-Painter's SR stage: requests then run both stages
    /// unless told otherwise ([`InpaintRequest::stages`](crate::InpaintRequest::stages)). Refuses, with
    /// [`SrError::InvalidInput`], a pipeline whose UNet does not take its latents plus the
    /// low-res image's three channels (not an x4 upscaler).
    pub fn with_upscaler(mut self, upscaler: StableDiffusionModels) -> Result<Self> {
        let (unet, latents) = (&upscaler.unet, upscaler.vae.latent_channels());
        if unet.in_channels() != latents + 3 {
            return Err(SrError::InvalidInput(format!(
                "the upscaler pipeline {}'s UNet takes {} channels, expected {} (its {latents} \
                 latent channels and the low-res image's 3): not an x4 upscaler",
                upscaler.pipeline,
                unet.in_channels(),
                latents + 3
            ))
            .into());
        }
        self.upscaler = Some(SrModels {
            models: upscaler,
            schedule: NoiseSchedule::x4_upscaler(),
        });
        Ok(self)
    }

    /// The folder's `scheduler/scheduler_config.json`, which the plain methods step with
    /// unless a request names another scheduler.
    pub fn scheduler_config(&self) -> Option<&SchedulerConfig> {
        scheduler_config(&self.models)
    }

    /// The first stage's image-level pipeline over these models.
    pub fn inpainter(&self) -> Inpainter<'_> {
        let inpainter = Inpainter::new(&self.models.unet, &self.models.vae, &self.schedule);
        match &self.brushnet {
            Some(branch) => inpainter.with_brushnet(branch),
            None => inpainter,
        }
    }

    /// The SR stage's models; [`SrError::InvalidInput`] without an upscaler.
    pub fn upscaler(&self) -> Result<Upscaler<'_>> {
        let x4 = self.sr_models()?;
        Ok(Upscaler {
            unet: &x4.models.unet,
            vae: &x4.models.vae,
            schedule: &x4.schedule,
        })
    }

    /// The upscaler's models; [`SrError::InvalidInput`] without them.
    pub(crate) fn sr_models(&self) -> Result<&SrModels> {
        self.upscaler.as_ref().ok_or_else(|| {
            let message = "the SR stage needs the x4 upscaler: Painter::with_upscaler";
            SrError::InvalidInput(message.into()).into()
        })
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

    /// HD-Painter's reference settings with `variant` on the method the models run
    /// ([`Painter::fitting_method`]).
    pub fn hd_painter_options(&self, variant: HdPainter) -> InpaintOptions {
        InpaintOptions {
            method: self.fitting_method(),
            ..InpaintOptions::hd_painter(variant)
        }
    }

    /// The first image of a step's x0 prediction, decoded with the VAE of the step's stage: a
    /// preview for a step callback (a full decode: it costs about what a step does).
    pub fn preview(&self, view: &StepView<'_>) -> Result<Image> {
        let vae = match view.stage {
            Stage::SuperResolution => &self.sr_models()?.models.vae,
            Stage::Inpaint => &self.models.vae,
        };
        let first = view.pred_x0.clone().slice(0..1);
        let decoded = vae.decode(first / vae.scaling_factor())?;
        Ok(Image::from_tensor(decoded, Quantize::Round)?)
    }
}

fn scheduler_config(models: &StableDiffusionModels) -> Option<&SchedulerConfig> {
    models
        .schedulers
        .iter()
        .find(|(name, _)| name == "scheduler")
        .map(|(_, config)| config)
}
