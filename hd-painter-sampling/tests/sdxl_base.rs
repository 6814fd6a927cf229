//! SDXL's 4-channel base in diffusers' `StableDiffusionXLInpaintPipeline`
//! (`tools/reference/sdxl.py`, group `sdxl_base`): Blended's diffusers variant, where after every
//! step the image's latents come back noised with the run's initial noise to the level the step
//! reached, clean after the last. Two runs of the folder's Euler scheduler with CFG 7.5: 5 steps
//! at strength 1, and 10 steps at strength 0.6 stopped by `denoising_end` 0.75 after 3 of the 6
//! kept steps. The latents after every step within 1e-3 * max(1, max|ref|) and the timesteps
//! walked equal; then the image-level run's variants and `denoising_end`'s refusals.

mod common;

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use common::{Golden, assert_close, device, fixtures, pipeline};
use hd_painter_models::{DefaultAttention, SchedulerConfig, StableDiffusionModels};
use hd_painter_sampling::{
    BlendedLatents, BlendedVariant, ClassifierFree, Hooks, InpaintOptions, Method,
    MicroConditioning, NoiseSchedule, Sampler, SamplerSettings, SamplingError, SchedulerSpec,
    Stage, encode_prompts,
};

const SIZE: [u32; 2] = [32, 48];

/// The folder's scheduler settings for `steps` steps, and its noise schedule.
fn folder_settings(steps: usize) -> (SamplerSettings, NoiseSchedule) {
    let path = fixtures().join("models/pipeline_sdxl_base/scheduler/scheduler_config.json");
    let config = SchedulerConfig::from_file(path, None).unwrap();
    let settings = SamplerSettings {
        steps,
        scheduler: SchedulerSpec::from_config(&config).unwrap(),
        ..SamplerSettings::default()
    };
    (settings, NoiseSchedule::from_config(&config))
}

/// The golden run `name` (`full` or `end`) with `settings`, every step checked against the
/// golden's; the timesteps it walked.
fn check_run(
    models: &StableDiffusionModels,
    g: &Golden,
    name: &str,
    (settings, schedule): (SamplerSettings, NoiseSchedule),
) -> Vec<f64> {
    let device = device();
    let text = encode_prompts(models, "a red sofa", "blurry")
        .unwrap()
        .with_micro_conditioning(&MicroConditioning::default(), SIZE);
    let options = InterpolateOptions::new(InterpolateMode::Nearest)
        .with_align_corners(false)
        .with_output_size([16, 24]);
    let hole = interpolate(g.tensor::<4>("mask", &device), options);
    let (source, noise): (Tensor<4>, Tensor<4>) = (
        g.tensor("image_latents", &device),
        g.tensor(&format!("{name}.noise"), &device),
    );
    let scheduler = settings.build(&schedule).unwrap();
    let latents = match settings.first_step {
        0 => noise.clone() * scheduler.init_noise_sigma(),
        first => scheduler.level(first).noised(source.clone(), noise.clone()),
    };
    let mut strategy = BlendedLatents::diffusers(hole, source, noise);
    let (shape, steps) = g.f32s(&format!("{name}.steps"));
    let per = steps.len() / shape[0];
    let mut seen = Vec::new();
    let mut attention = DefaultAttention::default();
    let mut on_step = |view: &hd_painter_sampling::StepView<'_>| {
        let k = view.step - 1;
        let what = format!("SDXL base {name} step {}", view.step);
        assert_close(view.latents, &steps[k * per..(k + 1) * per], 1e-3, &what);
        assert_eq!(view.total, shape[0]);
        seen.push(view.timestep);
        ControlFlow::Continue(())
    };
    Sampler {
        unet: &models.unet,
        schedule: &schedule,
        text: &text,
        seeds: &[0],
        stage: Stage::Inpaint,
        hooks: Hooks::new(&mut attention, &mut on_step),
    }
    .run(&settings, &mut strategy, &ClassifierFree, latents)
    .unwrap();
    assert_eq!(seen.len(), shape[0], "{name}: steps run");
    seen
}

#[test]
fn blended_on_the_sdxl_base_matches_diffusers_every_step() {
    let (models, g) = (pipeline("pipeline_sdxl_base"), Golden::open("sdxl_base"));
    assert_eq!(models.unet.in_channels(), 4);
    let seen = check_run(&models, &g, "full", folder_settings(5));
    assert_eq!(seen, g.get("full.timesteps").1);
}

/// diffusers' `get_timesteps` at strength 0.6 keeps the last 6 of 10 steps, and `denoising_end`
/// 0.75 the 3 of those at or above timestep 250.
#[test]
fn denoising_end_stops_where_diffusers_stops() {
    let (models, g) = (pipeline("pipeline_sdxl_base"), Golden::open("sdxl_base"));
    let (mut settings, schedule) = folder_settings(10);
    settings.first_step = 4;
    let settings = settings.with_denoising_end(0.75, &schedule).unwrap();
    assert_eq!(settings.end_step, Some(7));
    let seen = check_run(&models, &g, "end", (settings, schedule));
    assert_eq!(seen, g.get("end.timesteps").1[4..7]);
}

#[test]
fn denoising_end_outside_the_run_is_refused() {
    let (settings, schedule) = folder_settings(10);
    for bad in [0.0, 1.0, -0.5, f64::NAN] {
        let err = settings.with_denoising_end(bad, &schedule).unwrap_err();
        assert!(
            matches!(err, SamplingError::InvalidInput(_)),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains("denoising_end"), "{err}");
    }
    // From timestep 501 on, an end at 0.4 (cut-off 600) keeps no step.
    let late = SamplerSettings {
        first_step: 4,
        ..settings
    };
    let err = late.with_denoising_end(0.4, &schedule).unwrap_err();
    assert!(err.to_string().contains("keeps no step"), "{err}");
    // An end step before the first step or past the grid: the run's own refusal.
    let models = pipeline("pipeline_sdxl_base");
    let text = encode_prompts(&models, "x", "")
        .unwrap()
        .with_micro_conditioning(&MicroConditioning::default(), SIZE);
    let device = device();
    for end in [4, 11] {
        let mut attention = DefaultAttention::default();
        let zeros = Tensor::<4>::zeros([1, 4, 16, 24], &device);
        let mut strategy = BlendedLatents::diffusers(
            Tensor::zeros([1, 1, 16, 24], &device),
            zeros.clone(),
            zeros.clone(),
        );
        let err = Sampler {
            unet: &models.unet,
            schedule: &schedule,
            text: &text,
            seeds: &[0],
            stage: Stage::Inpaint,
            hooks: Hooks::new(&mut attention, &mut |_| ControlFlow::Continue(())),
        }
        .run(
            &SamplerSettings {
                end_step: Some(end),
                ..late
            },
            &mut strategy,
            &ClassifierFree,
            zeros,
        )
        .unwrap_err();
        assert!(err.to_string().contains("end step"), "{end}: {err}");
    }
}

/// The image-level run: each variant of Blended on the base paints its own image and keeps the
/// known region; `denoising_end` runs 3 of the steps and returns the partly denoised image;
/// RePaint refuses it.
#[test]
fn the_inpainter_runs_both_blended_variants_and_denoising_end() {
    let models = pipeline("pipeline_sdxl_base");
    let image = common::photo(48, 32);
    let mut pixels = vec![0u8; 48 * 32];
    for row in 8..24 {
        pixels[row * 48 + 12..row * 48 + 36].fill(255);
    }
    let mask = hd_painter_core::Mask::from_luma8(48, 32, pixels).unwrap();
    let mut options = InpaintOptions {
        method: Method::Blended,
        sampler: SamplerSettings {
            steps: 4,
            ..SamplerSettings::default()
        },
        ..Default::default()
    };
    let paper = common::inpaint(&models, &image, &mask, &options).unwrap();
    options.blended = BlendedVariant::Diffusers;
    let diffusers = common::inpaint(&models, &image, &mask, &options).unwrap();
    assert_ne!(paper[0], diffusers[0]);
    options.denoising_end = Some(0.5);
    let mut steps = Vec::new();
    let text = encode_prompts(&models, "x", "").unwrap();
    let schedule = NoiseSchedule::stable_diffusion();
    let mut attention = DefaultAttention::default();
    let partial = hd_painter_sampling::Inpainter::new(&models.unet, &models.vae, &schedule)
        .inpaint(
            &image,
            &mask,
            &text,
            &options,
            Hooks::new(&mut attention, &mut |view| {
                steps.push((view.step, view.total, view.timestep));
                ControlFlow::Continue(())
            }),
        )
        .unwrap();
    // DDIM's 4 leading steps are 751, 501, 251, 1: the cut-off 500 keeps two.
    assert_eq!(steps, [(1, 2, 751.0), (2, 2, 501.0)]);
    assert_ne!(partial[0], diffusers[0]);
    options.method = Method::Repaint(Default::default());
    let err = common::inpaint(&models, &image, &mask, &options).unwrap_err();
    assert!(err.to_string().contains("denoising_end"), "{err}");
}
