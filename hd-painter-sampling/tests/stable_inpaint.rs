//! Stable Inpainting end to end against diffusers' `StableDiffusionInpaintPipeline` on the tiny
//! 9-channel UNet (`tools/reference/generate.py`): the same prompt embeddings, initial noise and
//! masked-image latents, 5 DDIM steps with CFG 7.5; the latents after every step and at the end
//! within 1e-3 * max(1, max|ref|). Also: the masked-image latents from our VAE, cancellation,
//! and a non-finite guard.

mod common;

use std::ops::ControlFlow;

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use common::{Golden, assert_close, fixtures};
use hd_painter_models::{AutoencoderKl, DefaultAttention, Unet2DConditionModel};
use hd_painter_sampling::{
    ClassifierFree, NoiseSchedule, Sampled, Sampler, SamplerSettings, SamplingError,
    StableInpainting, StepView, TextConditioning,
};
use hd_painter_sampling::{Hooks, Stage};

struct Setup {
    device: Device,
    unet: Unet2DConditionModel,
    golden: Golden,
    strategy: StableInpainting,
    text: TextConditioning,
    settings: SamplerSettings,
    schedule: NoiseSchedule,
}

fn setup() -> Setup {
    let device = hd_painter_core::BackendKind::Flex.device().unwrap();
    let unet =
        Unet2DConditionModel::load(fixtures().join("models/unet_sd15_inpaint"), None, &device)
            .unwrap();
    let golden = Golden::open("stable_inpaint");
    // The pipeline's latent mask: torch's nearest interpolation of the binary mask.
    let mask = golden.tensor::<4>("mask", &device);
    let [_, _, h, w] = mask.dims();
    let options = InterpolateOptions::new(InterpolateMode::Nearest)
        .with_align_corners(false)
        .with_output_size([h / 2, w / 2]);
    let strategy = StableInpainting::new(
        interpolate(mask, options),
        golden.tensor("masked_latents", &device),
    );
    let text = TextConditioning {
        positive: golden.tensor("positive", &device),
        negative: golden.tensor("negative", &device),
        prompt_tokens: vec![1],
        text_time: None,
    };
    let settings = SamplerSettings {
        steps: 5,
        ..SamplerSettings::default()
    };
    // diffusers' schedulers compute the schedule in f32.
    let schedule = NoiseSchedule::scaled_linear_diffusers(0.00085, 0.012, 1000);
    Setup {
        device,
        unet,
        golden,
        strategy,
        text,
        settings,
        schedule,
    }
}

impl Setup {
    /// A [`Sampler`] run with this set-up's model, text, settings and strategy.
    fn run(
        &mut self,
        latents: Tensor<4>,
        seeds: &[u64],
        on_step: &mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>,
    ) -> Result<Sampled, SamplingError> {
        Sampler {
            unet: &self.unet,
            schedule: &self.schedule,
            text: &self.text,
            seeds,
            stage: Stage::Inpaint,
            hooks: Hooks::new(&mut DefaultAttention::default(), on_step),
        }
        .run(&self.settings, &mut self.strategy, &ClassifierFree, latents)
    }
}

#[test]
fn five_guided_steps_match_diffusers_pipeline() {
    let mut s = setup();
    let (shape, per_step) = s.golden.f32s("step_latents");
    let per = per_step.len() / shape[0];
    let mut seen = Vec::new();
    let out = s
        .run(s.golden.tensor("latents", &s.device), &[0], &mut |view| {
            assert_close(
                view.latents,
                &per_step[(view.step - 1) * per..view.step * per],
                1e-3,
                &format!("step {}", view.step),
            );
            seen.push(view.timestep);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(seen, [801.0, 601.0, 401.0, 201.0, 1.0]);
    assert_close(
        &out.latents,
        &s.golden.f32s("final").1,
        1e-3,
        "final latents",
    );
}

#[test]
fn masked_image_latents_from_our_vae_match() {
    let s = setup();
    let vae = AutoencoderKl::load(fixtures().join("models/vae_sd"), None, &s.device).unwrap();
    let image = s.golden.tensor::<4>("image", &s.device);
    let keep = s
        .golden
        .tensor::<4>("mask", &s.device)
        .lower_elem(0.5)
        .float();
    let latents = vae.encode(image * keep).unwrap().mean * vae.scaling_factor();
    assert_close(
        &latents,
        &s.golden.f32s("masked_latents").1,
        1e-3,
        "masked-image latents",
    );
}

#[test]
fn a_callback_cancels_after_the_current_step() {
    let mut s = setup();
    let mut calls = 0;
    let err = s
        .run(s.golden.tensor("latents", &s.device), &[0], &mut |view| {
            calls += 1;
            if view.step == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap_err();
    assert!(
        matches!(err, SamplingError::Cancelled { step: 2, total: 5 }),
        "{err}"
    );
    assert_eq!(calls, 2);
}

#[test]
fn non_finite_latents_stop_the_run() {
    let mut s = setup();
    let nan = s.golden.tensor::<4>("latents", &s.device) * f32::NAN;
    let err = s
        .run(nan, &[0], &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(
        matches!(err, SamplingError::NonFinite { step: 1, .. }),
        "{err}"
    );
    let wrong_seeds = s.run(s.golden.tensor("latents", &s.device), &[0, 1], &mut |_| {
        ControlFlow::Continue(())
    });
    assert!(matches!(wrong_seeds, Err(SamplingError::InvalidInput(_))));
}

/// The loop with the DDPM rule: its per-step noise is seeded per image, so a run repeats.
#[test]
fn ddpm_rule_is_reproducible_from_seeds() {
    let mut s = setup();
    s.settings.scheduler.kind = hd_painter_sampling::SchedulerKind::Ddpm;
    let mut run = || {
        let latents = s.golden.tensor("latents", &s.device);
        let out = s
            .run(latents, &[9], &mut |_| ControlFlow::Continue(()))
            .unwrap();
        out.latents.into_data().try_into_vec_as::<f32>().unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert_ne!(
        a,
        s.golden.f32s("final").1,
        "DDPM differs from the deterministic DDIM run"
    );
}
