//! SDXL inpainting against diffusers' `StableDiffusionXLInpaintPipeline` on the tiny SDXL folder
//! (`tools/reference/sdxl.py`, group `sdxl_inpaint`): the prompts as text through both
//! encoders, the folder's Euler scheduler, 5 steps with CFG 7.5, an original size and crop other
//! than the defaults, the same initial noise and masked-image latents. The UNet's added
//! conditions at the first call, and the latents after every step within 1e-3 * max(1, max|ref|);
//! the same at diffusers' default SDXL strength (0.9999: the image's latents noised to the
//! second of 5 steps). Also the refusals, and the image-level run's micro-conditioning.

mod common;

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use common::{Golden, assert_close, device, fixtures, pipeline};
use hd_painter_models::{DefaultAttention, SchedulerConfig, StableDiffusionModels};
use hd_painter_sampling::{
    ClassifierFree, Hooks, MicroConditioning, NoiseSchedule, Sampler, SamplerSettings,
    SamplingError, SchedulerSpec, StableInpainting, Stage, StepView, TextConditioning,
    encode_prompts,
};

const SIZE: [u32; 2] = [32, 48];

fn micro() -> MicroConditioning {
    MicroConditioning {
        original_size: Some([40, 56]),
        crops_coords_top_left: [2, 6],
        ..MicroConditioning::default()
    }
}

/// How a golden run starts.
#[derive(Clone, Copy)]
enum Start {
    /// Strength 1: the golden's noise times the scheduler's initial sigma.
    Noise,
    /// Strength 0.9999: the first of 5 steps skipped, the image's latents noised to the second.
    Strength,
}

/// The run of the golden: its strategy from the golden's mask and masked latents, the folder's
/// scheduler, every finished step handed to `on_step`.
fn run(
    models: &StableDiffusionModels,
    text: &TextConditioning,
    (g, start): (&Golden, Start),
    on_step: &mut dyn FnMut(&StepView<'_>) -> ControlFlow<()>,
) -> Result<(), SamplingError> {
    let device = device();
    let path = fixtures().join("models/pipeline_sdxl_inpaint/scheduler/scheduler_config.json");
    let config = SchedulerConfig::from_file(path, None).unwrap();
    let (spec, schedule) = (
        SchedulerSpec::from_config(&config).unwrap(),
        NoiseSchedule::from_config(&config),
    );
    let mut settings = SamplerSettings {
        steps: 5,
        scheduler: spec,
        ..SamplerSettings::default()
    };
    let mask = g.tensor::<4>("mask", &device);
    let options = InterpolateOptions::new(InterpolateMode::Nearest)
        .with_align_corners(false)
        .with_output_size([16, 24]);
    let mut strategy = StableInpainting::new(
        interpolate(mask, options),
        g.tensor("masked_latents", &device),
    );
    let scheduler = settings.build(&schedule)?;
    let latents = match start {
        Start::Noise => g.tensor::<4>("latents", &device) * scheduler.init_noise_sigma(),
        Start::Strength => {
            // What the Inpainter does at strength 0.9999: diffusers' `get_timesteps` keeps
            // int(5 x 0.9999) = 4 steps.
            settings.first_step = 1;
            let level = scheduler.level(1);
            level.noised(
                g.tensor("strength.image_latents", &device),
                g.tensor("strength.noise", &device),
            )
        }
    };
    let mut attention = DefaultAttention::default();
    Sampler {
        unet: &models.unet,
        schedule: &schedule,
        text,
        seeds: &[0],
        stage: Stage::Inpaint,
        hooks: Hooks::new(&mut attention, on_step),
    }
    .run(&settings, &mut strategy, &ClassifierFree, latents)
    .map(|_| ())
}

#[test]
fn five_euler_steps_match_diffusers_sdxl_inpaint_pipeline() {
    let (models, g) = (
        pipeline("pipeline_sdxl_inpaint"),
        Golden::open("sdxl_inpaint"),
    );
    let text = encode_prompts(&models, "a red sofa", "blurry")
        .unwrap()
        .with_micro_conditioning(&micro(), SIZE);
    // The added conditions diffusers' UNet saw: rows [negative, positive].
    let added = text.text_time.as_ref().expect("SDXL's added conditions");
    let ids = added.time_ids.as_ref().unwrap();
    let want: Vec<f32> = g.get("time_ids").1.iter().map(|&v| v as f32).collect();
    assert_eq!([ids.negative.clone(), ids.positive.clone()].concat(), want);
    let pooled = Tensor::cat(vec![added.negative.clone(), added.positive.clone()], 0);
    let pooled: Tensor<4> = pooled.reshape([2, 24, 1, 1]);
    assert_close(&pooled, &g.f32s("text_embeds").1, 1e-4, "pooled embeddings");

    check_steps(&models, &text, (&g, Start::Noise), "");
}

/// Every step of `start`'s run against the golden's `{prefix}steps`, at its `{prefix}timesteps`.
fn check_steps(
    models: &StableDiffusionModels,
    text: &TextConditioning,
    (g, start): (&Golden, Start),
    prefix: &str,
) {
    let (shape, steps) = g.f32s(&format!("{prefix}steps"));
    let per = steps.len() / shape[0];
    let mut seen = Vec::new();
    run(models, text, (g, start), &mut |view| {
        let k = view.step - 1;
        let what = format!("SDXL {prefix}step {}", view.step);
        assert_close(view.latents, &steps[k * per..(k + 1) * per], 1e-3, &what);
        seen.push(view.timestep);
        ControlFlow::Continue(())
    })
    .unwrap();
    // The scheduler's whole grid; a run at strength < 1 walks its tail.
    let grid = g.get(&format!("{prefix}timesteps")).1;
    let skipped = match start {
        Start::Noise => 0,
        Start::Strength => 1,
    };
    assert_eq!(seen, grid[skipped..]);
}

/// diffusers' SDXL default strength, 0.9999: 4 of the 5 steps from the noised image latents.
#[test]
fn the_default_sdxl_strength_matches_diffusers() {
    let (models, g) = (
        pipeline("pipeline_sdxl_inpaint"),
        Golden::open("sdxl_inpaint"),
    );
    let text = encode_prompts(&models, "a red sofa", "blurry")
        .unwrap()
        .with_micro_conditioning(&MicroConditioning::default(), SIZE);
    check_steps(&models, &text, (&g, Start::Strength), "strength.");
}

#[test]
fn sdxl_runs_need_their_time_ids_and_pooled_embeddings() {
    let (models, g) = (
        pipeline("pipeline_sdxl_inpaint"),
        Golden::open("sdxl_inpaint"),
    );
    let text = encode_prompts(&models, "a red sofa", "").unwrap();
    // Time ids are set for the run's size; without them the run is refused before any step.
    let mut steps = 0;
    let err = run(&models, &text, (&g, Start::Noise), &mut |_| {
        steps += 1;
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("with_micro_conditioning"), "{err}");
    assert_eq!(steps, 0);
    // The pooled embeddings dropped: the UNet's typed error.
    let plain = TextConditioning {
        text_time: None,
        ..text.with_micro_conditioning(&micro(), SIZE)
    };
    let err = run(&models, &plain, (&g, Start::Noise), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("text_embeds"), "{err}");
    // Micro-conditioning leaves SD 1.x / 2.x conditioning as it is.
    let sd = pipeline("pipeline_inpaint");
    let text = encode_prompts(&sd, "x", "").unwrap();
    assert!(text.text_time.is_none());
    let again = text.clone().with_micro_conditioning(&micro(), SIZE);
    assert!(again.text_time.is_none());
    let data = |t: &Tensor<3>| t.to_data().try_to_vec::<f32>().unwrap();
    assert_eq!(data(&again.positive), data(&text.positive));
}

/// The image-level run sets the time ids for the size it inpaints at, from the options'
/// micro-conditioning: another original size paints another image.
#[test]
fn the_inpainter_conditions_on_the_options_micro_conditioning() {
    let models = pipeline("pipeline_sdxl_inpaint");
    let image = common::photo(48, 32);
    let mut pixels = vec![0u8; 48 * 32];
    pixels[8 * 48 + 10..8 * 48 + 30].fill(255);
    pixels[9 * 48 + 10..9 * 48 + 30].fill(255);
    let mask = hd_painter_core::Mask::from_luma8(48, 32, pixels).unwrap();
    let mut options = hd_painter_sampling::InpaintOptions {
        sampler: SamplerSettings {
            steps: 3,
            ..SamplerSettings::default()
        },
        ..Default::default()
    };
    let plain = common::inpaint(&models, &image, &mask, &options).unwrap();
    assert_eq!((plain[0].width(), plain[0].height()), (48, 32));
    options.micro = micro();
    let other = common::inpaint(&models, &image, &mask, &options).unwrap();
    assert_ne!(plain[0], other[0]);
}
