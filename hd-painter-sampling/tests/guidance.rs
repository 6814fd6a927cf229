//! One test set run against every [`Guidance`] (classifier-free, RASG) on the tiny 9-channel UNet
//! of the HD-Painter fixture: the output has the latents' shape and is finite; at guidance scale
//! 1 it is the positive pass alone; a guidance with step terms gives a term exactly when the
//! hole reaches its score grid, and the run refuses it on a scheduler without terms (DDPM).

mod common;

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor};
use common::{Golden, device, fixtures};
use hd_painter_core::Mask;
use hd_painter_models::{DefaultAttention, Unet2DConditionModel};
use hd_painter_sampling::{
    ClassifierFree, Guidance, ModelCall, NoiseSchedule, PromptFocus, Rasg, RasgSettings, Sampler,
    SamplerSettings, SamplingError, SchedulerKind, SchedulerSpec, StableInpainting,
    TextConditioning,
};
use hd_painter_sampling::{Hooks, Stage};

struct Setup {
    device: Device,
    unet: Unet2DConditionModel,
    golden: Golden,
    text: TextConditioning,
}

fn setup() -> Setup {
    let device = device();
    let unet = Unet2DConditionModel::load(fixtures().join("models/unet_hd_painter"), None, &device)
        .unwrap();
    let golden = Golden::open("hd_painter");
    let text = TextConditioning {
        positive: golden.tensor("positive", &device),
        negative: golden.tensor("negative", &device),
        prompt_tokens: golden.ints("tokens"),
        text_time: None,
    };
    Setup {
        device,
        unet,
        golden,
        text,
    }
}

/// A square hole of `side` latent pixels at the latent's top left, at pixel resolution.
fn rasg(s: &Setup, side: u32) -> Rasg {
    let [_, _, h, w] = s.golden.tensor::<4>("latents", &s.device).dims();
    let (pw, ph) = (w as u32 * 8, h as u32 * 8);
    let hole = (0..pw * ph)
        .map(|i| {
            if i % pw < side * 8 && i / pw < side * 8 {
                255
            } else {
                0
            }
        })
        .collect();
    let mask = Mask::from_luma8(pw, ph, hole).unwrap();
    Rasg {
        settings: RasgSettings::default(),
        focus: PromptFocus::new(s.text.prompt_tokens.clone(), &mask, [h, w]).unwrap(),
    }
}

fn strategy(s: &Setup) -> StableInpainting {
    StableInpainting::new(
        s.golden.tensor("latent_mask", &s.device),
        s.golden.tensor("masked_latents", &s.device),
    )
}

fn call<'a>(s: &'a Setup, schedule: &'a NoiseSchedule, guidance_scale: f64) -> ModelCall<'a> {
    ModelCall {
        unet: &s.unet,
        schedule,
        text: &s.text,
        timestep: 799.0,
        input_scale: 1.0,
        ddim: Some((799, 599)),
        guidance_scale,
        residuals: None,
    }
}

fn max_diff(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
    (a.clone() - b.clone()).abs().max().into_scalar()
}

#[test]
fn every_guidance_gives_a_finite_output_of_the_latents_shape() {
    let s = setup();
    let schedule = NoiseSchedule::stable_diffusion();
    let latents: Tensor<4> = s.golden.tensor("latents", &s.device);
    let strategy = strategy(&s);
    let rasg = rasg(&s, 8);
    let plain_positive = {
        let c = call(&s, &schedule, 1.0);
        let input = hd_painter_sampling::LatentStrategy::model_input(&strategy, latents.clone());
        c.guided(input, None, &mut DefaultAttention::default())
            .unwrap()
    };
    let guidances: [(&str, &dyn Guidance); 2] =
        [("classifier-free", &ClassifierFree), ("RASG", &rasg)];
    for (name, guidance) in guidances {
        for scale in [1.0, 7.5] {
            let out = guidance
                .predict(
                    &call(&s, &schedule, scale),
                    &strategy,
                    latents.clone(),
                    &mut DefaultAttention::default(),
                )
                .unwrap();
            assert_eq!(out.output.dims(), latents.dims(), "{name}, scale {scale}");
            let nan: bool = out.output.clone().is_nan().any().into_scalar();
            assert!(!nan, "{name}, scale {scale}: finite");
            assert_eq!(
                out.term.is_some(),
                guidance.has_terms(),
                "{name}: a term when it has terms"
            );
            if scale == 1.0 {
                let d = max_diff(&out.output, &plain_positive);
                assert!(d < 1e-5, "{name}: scale 1 is the positive pass alone ({d})");
            }
        }
    }
}

#[test]
fn a_hole_below_the_score_grid_gives_no_term_and_plain_guidance() {
    let s = setup();
    let schedule = NoiseSchedule::stable_diffusion();
    let latents: Tensor<4> = s.golden.tensor("latents", &s.device);
    let strategy = strategy(&s);
    let c = call(&s, &schedule, 7.5);
    let mut attention = DefaultAttention::default();
    // One latent pixel: no pixel of the latent/4 score grid is hole.
    let small = rasg(&s, 1)
        .predict(&c, &strategy, latents.clone(), &mut attention)
        .unwrap();
    let plain = ClassifierFree
        .predict(&c, &strategy, latents, &mut attention)
        .unwrap();
    assert!(small.term.is_none());
    assert!(max_diff(&small.output, &plain.output) < 1e-5);
}

#[test]
fn guidance_with_terms_needs_a_scheduler_that_takes_them() {
    let s = setup();
    let schedule = NoiseSchedule::stable_diffusion();
    let rasg = rasg(&s, 8);
    let err = Sampler {
        unet: &s.unet,
        schedule: &schedule,
        text: &s.text,
        seeds: &[0],
        stage: Stage::Inpaint,
        hooks: Hooks::new(&mut DefaultAttention::default(), &mut |_| {
            ControlFlow::Continue(())
        }),
    }
    .run(
        &SamplerSettings {
            steps: 2,
            scheduler: SchedulerSpec::new(SchedulerKind::Ddpm),
            ..SamplerSettings::default()
        },
        &mut strategy(&s),
        &rasg,
        s.golden.tensor("latents", &s.device),
    )
    .unwrap_err();
    assert!(
        matches!(err, SamplingError::InvalidInput(ref m) if m.contains("DDIM")),
        "{err}"
    );
}
