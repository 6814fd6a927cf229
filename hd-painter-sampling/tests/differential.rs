//! Soft masks (Differential Diffusion) against diffusers' community
//! `StableDiffusionXLDifferentialImg2ImgPipeline`, its loop run as written on the tiny 4-channel
//! SD UNet (`tools/reference/differential_reference.py`): the map resized to the latents, the
//! source noised to the first timestep with the pipeline's noise, and the latents entering each
//! of 6 DDIM steps (CFG 7.5) and leaving the last, within 1e-4 * max(1, max|ref|).

mod common;

use std::ops::ControlFlow;

use burn::tensor::{Tensor, TensorData};
use common::{Golden, assert_close, device, fixtures, inpaint, pipeline};
use hd_painter_core::{Image, Mask};
use hd_painter_models::{DefaultAttention, Unet2DConditionModel};
use hd_painter_sampling::{
    ClassifierFree, DifferentialLatents, HdPainter, InpaintOptions, Method, NoiseSchedule,
    RepaintSettings, Sampler, SamplerSettings, TextConditioning,
};
use hd_painter_sampling::{Hooks, Stage};

#[test]
fn differential_diffusion_matches_the_community_pipeline() {
    let device = device();
    let g = Golden::open("differential");
    let unet =
        Unet2DConditionModel::load(fixtures().join("models/unet_sd2"), None, &device).unwrap();
    let schedule = NoiseSchedule::stable_diffusion();
    let (shape, hole) = g.get("hole");
    let change = Tensor::<4>::from_data(
        TensorData::new(
            hole.into_iter()
                .map(|v| (v / 255.0) as f32)
                .collect::<Vec<f32>>(),
            [1, 1, shape[0], shape[1]],
        ),
        &device,
    );
    let steps = g.get("step_inputs").0[0];
    let mut strategy = DifferentialLatents::new(
        change,
        g.tensor("z0", &device),
        g.tensor("noise", &device),
        steps,
    );
    assert_close(
        strategy.map(),
        &g.f32s("map_resized").1,
        1e-6,
        "map at the latent size",
    );
    let settings = SamplerSettings {
        steps,
        guidance_scale: 7.5,
        ..SamplerSettings::default()
    };
    let start = strategy.noised_source(settings.build(&schedule).unwrap().level(0));
    assert_close(
        &start,
        &g.part("step_inputs", 0),
        1e-5,
        "the first step's latents",
    );
    let text = TextConditioning {
        positive: g.tensor("positive", &device),
        negative: g.tensor("negative", &device),
        prompt_tokens: vec![],
        text_time: None,
    };
    let mut seen = 0;
    Sampler {
        unet: &unet,
        schedule: &schedule,
        text: &text,
        seeds: &[0],
        stage: Stage::Inpaint,
        hooks: Hooks::new(&mut DefaultAttention::default(), &mut |view| {
            let (want, what) = match view.step < steps {
                true => (
                    g.part("step_inputs", view.step),
                    format!("latents into step {}", view.step + 1),
                ),
                false => (g.f32s("final").1, "final latents".to_string()),
            };
            assert_close(view.latents, &want, 1e-4, &what);
            seen += 1;
            ControlFlow::Continue(())
        }),
    }
    .run(&settings, &mut strategy, &ClassifierFree, start)
    .unwrap();
    assert_eq!(seen, steps);
}

/// The image pipeline with `soft_mask`: Stable Inpainting (9-channel) and Blended (4-channel)
/// keep the input's size; an all-black mask is no hole; an all-grey mask changes the image;
/// the methods and settings it does not combine with are typed errors.
#[test]
fn soft_masks_run_in_the_pipeline_and_misuse_is_reported() {
    let (w, h) = (40, 24);
    let image =
        Image::from_rgb8(w, h, (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect()).unwrap();
    let ramp = Mask::from_luma8(
        w,
        h,
        (0..w * h)
            .map(|i| ((i % w) * 255 / (w - 1)) as u8)
            .collect(),
    )
    .unwrap();
    let grey = Mask::from_luma8(w, h, vec![128; (w * h) as usize]).unwrap();
    let black = Mask::from_luma8(w, h, vec![0; (w * h) as usize]).unwrap();
    for (folder, method) in [
        ("pipeline_hd_painter", Method::StableInpainting),
        ("pipeline_sd", Method::Blended),
    ] {
        let models = pipeline(folder);
        let options = InpaintOptions {
            method,
            soft_mask: true,
            sampler: SamplerSettings {
                steps: 3,
                ..SamplerSettings::default()
            },
            ..InpaintOptions::default()
        };
        let run = |mask: &Mask| inpaint(&models, &image, mask, &options).unwrap().remove(0);
        let out = run(&ramp);
        assert_eq!((out.width(), out.height()), (w, h), "{method:?}");
        assert_eq!(run(&black), image, "{method:?}: no hole");
        assert_ne!(run(&grey), image, "{method:?}: grey changes");
    }
    let invalid = |options: InpaintOptions| {
        let err = InpaintOptions {
            soft_mask: true,
            ..options
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("soft mask"), "{err}");
    };
    invalid(InpaintOptions {
        method: Method::Repaint(RepaintSettings::default()),
        ..InpaintOptions::default()
    });
    invalid(InpaintOptions::hd_painter(HdPainter::full()));
    invalid(InpaintOptions {
        strength: 0.5,
        ..InpaintOptions::default()
    });
}
