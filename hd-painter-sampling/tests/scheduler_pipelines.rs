//! The methods with other schedulers than DDIM, each against its reference on the tiny models
//! (`tools/reference/generate.py`, group `scheduler_pipelines`), the scheduler made from the
//! fixture folder's DDIM config as diffusers' `from_config` makes it: Stable Inpainting against
//! diffusers' `StableDiffusionInpaintPipeline` with DPM++ 2M Karras, Euler a (its per-step noise
//! given) and UniPC; Blended Latent Diffusion's loop with DPM++ 2M; BrushNet's loop with UniPC.
//! LCM-LoRA's preset on Stable Inpainting with a LoRA fused. The latents after every step within
//! 1e-3 * max(1, max|ref|).

mod common;

use std::ops::ControlFlow;

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};
use common::{Golden, assert_close, device, fixtures};
use hd_painter_models::{
    BrushNetModel, DefaultAttention, Lora, SchedulerConfig, StableDiffusionModels,
    Unet2DConditionModel,
};
use hd_painter_sampling::{
    BlendedLatents, BrushNetLatents, BrushNetSettings, ClassifierFree, Hooks, LatentStrategy,
    NoiseSchedule, Sampler, SamplerSettings, SchedulerSpec, StableInpainting, Stage,
    TextConditioning, encode_prompts,
};

/// The fixture folder's scheduler read as `class` (diffusers' `Class.from_config`).
fn folder_scheduler(class: &str) -> (SchedulerSpec, NoiseSchedule) {
    let path = fixtures().join("models/pipeline_inpaint/scheduler/scheduler_config.json");
    let config = SchedulerConfig::from_file(path, None).unwrap();
    let config = config.with_class(class).unwrap();
    (
        SchedulerSpec::from_config(&config).unwrap(),
        NoiseSchedule::from_config(&config),
    )
}

fn unet(name: &str, device: &Device) -> Unet2DConditionModel {
    Unet2DConditionModel::load(fixtures().join("models").join(name), None, device).unwrap()
}

/// One run to check: `steps` steps of the scheduler from `latents` (times its initial sigma),
/// the stochastic steps drawing `noise` in order, every step against `golden`'s stack `key`.
struct Case<'a> {
    unet: &'a Unet2DConditionModel,
    scheduler: (SchedulerSpec, NoiseSchedule),
    steps: usize,
    text: TextConditioning,
    latents: Tensor<4>,
    noise: Vec<Tensor<4>>,
    golden: &'a Golden,
    key: &'a str,
}

fn check_run(case: Case<'_>, strategy: &mut dyn LatentStrategy, guidance_scale: f64) {
    let (spec, schedule) = case.scheduler;
    let (g, key) = (case.golden, case.key);
    let settings = SamplerSettings {
        steps: case.steps,
        scheduler: spec,
        guidance_scale,
        ..SamplerSettings::default()
    };
    let sigma = settings.build(&schedule).unwrap().init_noise_sigma();
    let mut noise = case.noise.into_iter();
    let mut draw = |_: &Tensor<4>| noise.next().expect("a reference draw per stochastic step");
    let mut seen = 0;
    let mut attention = DefaultAttention::default();
    let mut on_step = |view: &hd_painter_sampling::StepView<'_>| {
        let what = format!("{key} step {seen}");
        assert_close(view.latents, &g.part(key, seen), 1e-3, &what);
        seen += 1;
        ControlFlow::Continue(())
    };
    Sampler {
        unet: case.unet,
        schedule: &schedule,
        text: &case.text,
        seeds: &[0],
        stage: Stage::Inpaint,
        hooks: Hooks::new(&mut attention, &mut on_step).with_noise(&mut draw),
    }
    .run(&settings, strategy, &ClassifierFree, case.latents * sigma)
    .unwrap();
    assert_eq!(seen, g.get(key).0[0], "{key}: steps");
}

fn text(g: &Golden, device: &Device) -> TextConditioning {
    TextConditioning {
        positive: g.tensor("positive", device),
        negative: g.tensor("negative", device),
        prompt_tokens: vec![1],
        text_time: None,
    }
}

#[test]
fn stable_inpainting_matches_diffusers_with_dpm_euler_a_and_unipc() {
    let (g, device) = (Golden::open("scheduler_pipelines"), device());
    let unet = unet("unet_sd15_inpaint", &device);
    let mask = g.tensor::<4>("mask", &device);
    let [_, _, h, w] = mask.dims();
    let nearest = InterpolateOptions::new(InterpolateMode::Nearest)
        .with_align_corners(false)
        .with_output_size([h / 2, w / 2]);
    let hole = interpolate(mask, nearest);
    let noises: Vec<Tensor<4>> = (0..6)
        .map(|i| {
            let shape = [1, 4, h / 2, w / 2];
            Tensor::from_data(TensorData::new(g.part("noises", i), shape), &device)
        })
        .collect();
    for (name, class, karras) in [
        ("dpm2m_karras", "DPMSolverMultistepScheduler", true),
        ("euler_a", "EulerAncestralDiscreteScheduler", false),
        ("unipc", "UniPCMultistepScheduler", false),
    ] {
        let (mut spec, schedule) = folder_scheduler(class);
        spec.karras = karras;
        let built = spec.build(&schedule, 6).unwrap();
        let want: Vec<f64> = g.get(&format!("inpaint.{name}.timesteps")).1;
        assert_eq!(built.timesteps(), &want[..], "{name}: timesteps");
        let mut strategy = StableInpainting::new(hole.clone(), g.tensor("masked_latents", &device));
        let key = format!("inpaint.{name}");
        let case = Case {
            unet: &unet,
            scheduler: (spec, schedule),
            steps: 6,
            text: text(&g, &device),
            latents: g.tensor("latents", &device),
            noise: noises.clone(),
            golden: &g,
            key: &key,
        };
        check_run(case, &mut strategy, 7.5);
    }
}

#[test]
fn blended_with_dpm_solver_matches_its_reference_loop() {
    let (g, device) = (Golden::open("scheduler_pipelines"), device());
    let unet = unet("unet_sd2", &device);
    let shape = g.get("blended.source").0;
    let noise: Vec<Vec<f32>> = (0..8).map(|i| g.part("blended.noise", i)).collect();
    let (dev, dims) = (device.clone(), [shape[0], shape[1], shape[2], shape[3]]);
    let step_noise = move |step: usize, _: &Tensor<4>| {
        Tensor::from_data(TensorData::new(noise[step].clone(), dims), &dev)
    };
    let mut strategy = BlendedLatents::with_noise(
        g.tensor("blended.mask", &device),
        g.tensor("blended.source", &device),
        Box::new(step_noise),
    );
    let case = Case {
        unet: &unet,
        scheduler: folder_scheduler("DPMSolverMultistepScheduler"),
        steps: 8,
        text: text(&g, &device),
        latents: g.tensor("blended.latents", &device),
        noise: Vec::new(),
        golden: &g,
        key: "blended.steps",
    };
    check_run(case, &mut strategy, 7.5);
}

#[test]
fn brushnet_with_unipc_matches_its_reference_loop() {
    let (g, device) = (Golden::open("scheduler_pipelines"), device());
    let unet = unet("unet_sd2", &device);
    let branch = BrushNetModel::load(fixtures().join("models/brushnet"), None, &device).unwrap();
    let settings = BrushNetSettings {
        conditioning_scale: 0.8,
        control_start: 0.0,
        control_end: 1.0,
    };
    let condition = g.tensor("brushnet.condition", &device);
    let mut strategy = BrushNetLatents::new(&branch, condition, settings).unwrap();
    let case = Case {
        unet: &unet,
        scheduler: folder_scheduler("UniPCMultistepScheduler"),
        steps: 4,
        text: text(&g, &device),
        latents: g.tensor("brushnet.latents", &device),
        noise: Vec::new(),
        golden: &g,
        key: "brushnet.steps",
    };
    check_run(case, &mut strategy, 7.5);
}

/// LCM-LoRA's preset on Stable Inpainting: the `kohya_inpaint` LoRA fused into the UNet and the
/// text encoder, the LCM scheduler from the folder's config, 4 steps, guidance 1 (the prompt
/// alone), against diffusers' pipeline with the same fused weights (group `lcm_lora`).
#[test]
fn an_lcm_lora_run_matches_diffusers_with_the_lora_fused() {
    let (g, device) = (Golden::open("lcm_lora"), device());
    let dir = fixtures().join("models");
    let mut models =
        StableDiffusionModels::load(dir.join("pipeline_inpaint"), None, &device).unwrap();
    let lora = Lora::open(dir.join("lora/kohya_inpaint.safetensors")).unwrap();
    models.fuse_lora(&lora, 1.0).unwrap();
    let text = encode_prompts(&models, "a red sofa", "").unwrap();
    let (spec, schedule) = folder_scheduler("LCMScheduler");
    let built = spec.build(&schedule, 4).unwrap();
    assert_eq!(
        built.timesteps(),
        &g.get("timesteps").1[..],
        "LCM timesteps"
    );
    let mask = g.tensor::<4>("mask", &device);
    let [_, _, h, w] = mask.dims();
    let nearest = InterpolateOptions::new(InterpolateMode::Nearest)
        .with_align_corners(false)
        .with_output_size([h / 2, w / 2]);
    let mut strategy = StableInpainting::new(
        interpolate(mask, nearest),
        g.tensor("masked_latents", &device),
    );
    let noise = (0..4)
        .map(|i| {
            Tensor::from_data(
                TensorData::new(g.part("noises", i), [1, 4, h / 2, w / 2]),
                &device,
            )
        })
        .collect();
    check_run(
        Case {
            unet: &models.unet,
            scheduler: (spec, schedule),
            steps: 4,
            text,
            latents: g.tensor("latents", &device),
            noise,
            golden: &g,
            key: "steps",
        },
        &mut strategy,
        1.0,
    );
}
