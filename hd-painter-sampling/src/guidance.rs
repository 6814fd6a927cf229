//! How a step's model output is obtained, as a strategy the sampling run takes: classifier-free
//! guidance ([`ClassifierFree`]) or RASG ([`crate::Rasg`], which also returns a direction that
//! replaces the scheduler's random term). Both see the same [`ModelCall`].

use burn::tensor::Tensor;
use hd_painter_models::{
    AttentionProcessor, Conditions, TextTime, Unet2DConditionModel, UnetResiduals,
};

use crate::conditioning::TextConditioning;
use crate::error::{Result, SamplingError};
use crate::schedule::NoiseSchedule;
use crate::strategy::LatentStrategy;

/// Everything one step's UNet call depends on besides the latents.
pub struct ModelCall<'a> {
    /// The UNet.
    pub unet: &'a Unet2DConditionModel,
    /// The noise schedule (for guidance whose term depends on it).
    pub schedule: &'a NoiseSchedule,
    /// The prompt and negative prompt embeddings.
    pub text: &'a TextConditioning,
    /// The timestep the UNet sees.
    pub timestep: f64,
    /// The factor the latents are scaled by before the UNet sees them (the sigma schedulers'
    /// `scale_model_input`; the masked-image channels are not scaled).
    pub input_scale: f64,
    /// DDIM's `t -> t_prev` where the step is DDIM's (the guidance terms are defined on it).
    pub ddim: Option<(usize, isize)>,
    /// Classifier-free guidance scale; 1 skips the unconditional pass.
    pub guidance_scale: f64,
    /// Features added inside the UNet (BrushNet's branch), one row per image.
    pub residuals: Option<&'a UnetResiduals>,
}

impl ModelCall<'_> {
    /// The UNet input for latents `x_t`: `strategy`'s input for the scaled latents.
    pub fn input(&self, strategy: &dyn LatentStrategy, latents: Tensor<4>) -> Tensor<4> {
        match self.input_scale == 1.0 {
            true => strategy.model_input(latents),
            false => strategy.model_input(latents * self.input_scale),
        }
    }

    /// The UNet's output for `input` with classifier-free guidance: `u + g (c - u)` from one
    /// batch `[negative, positive]`, or the positive pass alone when `g = 1`. `class_label` goes
    /// to every row (UNets with a class embedding), SDXL's added conditions to the rows of their
    /// half; the residuals are added for both halves, as BrushNet's pipeline does.
    pub fn guided(
        &self,
        input: Tensor<4>,
        class_label: Option<i64>,
        processor: &mut dyn AttentionProcessor,
    ) -> Result<Tensor<4>> {
        let n = input.dims()[0];
        let text = self.text;
        let positive = expand(&text.positive, n)?;
        let halves = |negative: bool| -> Result<Option<(Tensor<2>, Vec<f32>)>> {
            let Some(added) = &text.text_time else {
                return Ok(None);
            };
            let ids = added.time_ids.as_ref().ok_or_else(|| {
                SamplingError::InvalidInput(
                    "SDXL's time ids are not set: TextConditioning::with_micro_conditioning".into(),
                )
            })?;
            let (embeds, ids) = match negative {
                true => (&added.negative, &ids.negative),
                false => (&added.positive, &ids.positive),
            };
            Ok(Some((expand(embeds, n)?, ids.repeat(n))))
        };
        let call = |input: Tensor<4>,
                    context: &Tensor<3>,
                    added: Option<(Tensor<2>, Vec<f32>)>,
                    p: &mut dyn AttentionProcessor| {
            let rows = input.dims()[0];
            let timesteps = vec![self.timestep as f32; rows];
            let labels = class_label.map(|l| vec![l; rows]);
            let conditions = Conditions {
                class_labels: labels.as_deref(),
                text_time: added.as_ref().map(|(embeds, ids)| TextTime {
                    text_embeds: embeds,
                    time_ids: ids,
                }),
            };
            let unet = self.unet;
            match self.residuals {
                None => unet.forward(input, &timesteps, context, conditions, p),
                Some(r) => {
                    let r = r.repeat_batch(rows / n);
                    unet.forward_with_residuals(input, &timesteps, context, conditions, p, &r)
                }
            }
        };
        if self.guidance_scale == 1.0 {
            return Ok(call(input, &positive, halves(false)?, processor)?);
        }
        let context = Tensor::cat(vec![expand(&text.negative, n)?, positive], 0);
        let added = halves(true)?
            .zip(halves(false)?)
            .map(|((ne, ni), (pe, pi))| (Tensor::cat(vec![ne, pe], 0), [ni, pi].concat()));
        let both = Tensor::cat(vec![input.clone(), input], 0);
        let out = call(both, &context, added, processor)?;
        let [_, c, h, w] = out.dims();
        let uncond = out.clone().slice([0..n, 0..c, 0..h, 0..w]);
        let cond = out.slice([n..2 * n, 0..c, 0..h, 0..w]);
        Ok(uncond.clone() + (cond - uncond) * self.guidance_scale)
    }
}

/// `e` for `n` images: as it is when it has `n` rows, its one row repeated otherwise.
fn expand<const D: usize>(e: &Tensor<D>, n: usize) -> Result<Tensor<D>> {
    match e.dims()[0] {
        b if b == n => Ok(e.clone()),
        1 => Ok(e.clone().repeat_dim(0, n)),
        b => Err(SamplingError::InvalidInput(format!(
            "text embedding batch {b} for {n} images"
        ))),
    }
}

/// A direction chosen by the guidance that the step adds in place of its random term, and its
/// scale (RASG's `eta sigma_t g`).
#[derive(Clone, Debug)]
pub struct StepTerm {
    /// The term's scale.
    pub scale: f64,
    /// The direction, shaped as the latents.
    pub direction: Tensor<4>,
}

/// A step's model output and the guidance's own step term, if it has one.
#[derive(Clone, Debug)]
pub struct Guided {
    /// The guided model output (noise, v or x0, as the UNet predicts).
    pub output: Tensor<4>,
    /// What the step adds in place of its random term.
    pub term: Option<StepTerm>,
}

/// How the sampling run gets a step's model output from the latents `x_t`.
pub trait Guidance {
    /// The model output at `call.timestep` for `latents`, the UNet seeing `strategy`'s input
    /// for them ([`ModelCall::input`]).
    fn predict(
        &self,
        call: &ModelCall<'_>,
        strategy: &dyn LatentStrategy,
        latents: Tensor<4>,
        processor: &mut dyn AttentionProcessor,
    ) -> Result<Guided>;

    /// Whether [`predict`](Self::predict) returns step terms, which only DDIM's update takes
    /// ([`crate::Scheduler::ddim_timesteps`]).
    fn has_terms(&self) -> bool {
        false
    }
}

/// Classifier-free guidance at the call's scale (none at scale 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassifierFree;

impl Guidance for ClassifierFree {
    fn predict(
        &self,
        call: &ModelCall<'_>,
        strategy: &dyn LatentStrategy,
        latents: Tensor<4>,
        processor: &mut dyn AttentionProcessor,
    ) -> Result<Guided> {
        let input = call.input(strategy, latents);
        let output = call.guided(input, strategy.class_label(), processor)?;
        Ok(Guided { output, term: None })
    }
}
