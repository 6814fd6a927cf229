//! The HD-Painter goldens' setup and a traced run, shared by the parity tests on every backend.

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor};
use hd_painter_core::Mask;
use hd_painter_models::{AttentionProcessor, Unet2DConditionModel};
use hd_painter_sampling::{
    ClassifierFree, Guidance, Hooks, NoiseSchedule, PromptFocus, Rasg, Sampled, Sampler,
    SamplerSettings, SchedulerSpec, StableInpainting, Stage, StepView, TextConditioning,
    TextTimeConditioning, TimeIds,
};

use super::{Golden, fixtures};

/// The golden run's steps.
pub const STEPS: usize = 5;

pub struct Setup {
    pub device: Device,
    pub unet: Unet2DConditionModel,
    pub golden: Golden,
    pub text: TextConditioning,
    pub pixel_mask: Mask,
}

impl Setup {
    /// The SD-like fixture on `device`, with the UNet `precision` gives (its weights in another
    /// dtype).
    pub fn new(
        device: Device,
        precision: impl FnOnce(Unet2DConditionModel) -> Unet2DConditionModel,
    ) -> Self {
        Self::open(device, "unet_hd_painter", "hd_painter", precision)
    }

    /// The SDXL-like fixture (`sdxl_hd_painter`: the UNet's added conditions in the golden).
    pub fn sdxl(device: Device) -> Self {
        Self::open(device, "unet_sdxl", "sdxl_hd_painter", |unet| unet)
    }

    fn open(
        device: Device,
        unet: &str,
        name: &str,
        precision: impl FnOnce(Unet2DConditionModel) -> Unet2DConditionModel,
    ) -> Self {
        let dir = fixtures().join("models").join(unet);
        let unet = precision(Unet2DConditionModel::load(dir, None, &device).unwrap());
        let golden = Golden::open(name);
        let text_time = unet.text_time().map(|_| {
            let ids: Vec<f32> = golden.f32s("time_ids").1;
            TextTimeConditioning {
                positive: golden.tensor("pooled", &device),
                negative: golden.tensor("negative_pooled", &device),
                aesthetics: false,
                time_ids: Some(TimeIds {
                    positive: ids.clone(),
                    negative: ids,
                }),
            }
        });
        let text = TextConditioning {
            positive: golden.tensor("positive", &device),
            negative: golden.tensor("negative", &device),
            prompt_tokens: golden.ints("tokens"),
            text_time,
        };
        let (shape, pixels) = golden.get("pixel_mask");
        let pixel_mask = Mask::from_luma8(
            shape[1] as u32,
            shape[0] as u32,
            pixels.into_iter().map(|v| v as u8).collect(),
        )
        .unwrap();
        Self {
            device,
            unet,
            golden,
            text,
            pixel_mask,
        }
    }

    /// PAIntA's and RASG's view of the prompt over `mask`.
    pub fn focus(&self, mask: &Mask) -> PromptFocus {
        PromptFocus::new(self.text.prompt_tokens.clone(), mask, [16, 24]).unwrap()
    }

    /// The golden run's first `steps` steps (of the 5-step grid's, when `steps` is 5).
    pub fn run(
        &self,
        processor: &mut dyn AttentionProcessor,
        rasg: Option<&Rasg>,
        steps: usize,
    ) -> (Sampled, Trace) {
        let strategy_mask = self.golden.tensor::<4>("latent_mask", &self.device);
        let mut strategy = StableInpainting::new(
            strategy_mask,
            self.golden.tensor("masked_latents", &self.device),
        );
        let settings = SamplerSettings {
            steps,
            scheduler: SchedulerSpec::hd_painter(),
            ..SamplerSettings::default()
        };
        let mut trace = Trace::default();
        let sampled = Sampler {
            unet: &self.unet,
            schedule: &NoiseSchedule::stable_diffusion(),
            text: &self.text,
            seeds: &[0],
            stage: Stage::Inpaint,
            hooks: Hooks::new(processor, &mut trace.recorder()),
        }
        .run(
            &settings,
            &mut strategy,
            match rasg {
                Some(r) => r as &dyn Guidance,
                None => &ClassifierFree,
            },
            self.golden.tensor("latents", &self.device),
        )
        .unwrap();
        (sampled, trace)
    }
}

/// The run's x0 predictions, normalised gradients and latents, step by step.
#[derive(Default)]
pub struct Trace {
    pub latents: Vec<Tensor<4>>,
    pub x0: Vec<Tensor<4>>,
    pub grads: Vec<Tensor<4>>,
}

impl Trace {
    /// A step callback that records every step here.
    pub fn recorder(&mut self) -> impl FnMut(&StepView<'_>) -> ControlFlow<()> + '_ {
        |view| {
            self.latents.push(view.latents.clone());
            self.x0.push(view.pred_x0.clone());
            self.grads.extend(view.guidance.cloned());
            ControlFlow::Continue(())
        }
    }
}
