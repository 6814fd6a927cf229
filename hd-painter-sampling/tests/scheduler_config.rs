//! A folder's `scheduler_config.json` as the scheduler the plain methods step with: the
//! published SD 1.5 inpainting folder's PNDM, diffusers' `from_config` class swap, every option
//! key read with the class's defaults, and a class or value hd-painter does not run refused with
//! the file and key named.

mod common;

use common::fixtures;
use hd_painter_models::{ModelsError, SchedulerConfig};
use hd_painter_sampling::{
    FinalSigma, NoiseSchedule, Prediction, SamplingError, SchedulerKind, SchedulerSpec, SolverType,
    Spacing,
};

fn parse(json: &str) -> SchedulerConfig {
    let dir = std::env::temp_dir().join(format!("hd-painter-sched-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:x}.json", fxhash(json)));
    std::fs::write(&path, json).unwrap();
    SchedulerConfig::from_file(&path, None).unwrap()
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// The unsupported key a spec from `json` is refused for.
fn refused_key(json: &str) -> String {
    match SchedulerSpec::from_config(&parse(json)) {
        Err(SamplingError::Models(ModelsError::UnsupportedConfig { key, path, .. })) => {
            assert!(path.exists(), "the error names the file");
            key
        }
        other => panic!("{json}: {other:?}"),
    }
}

#[test]
fn the_published_sd15_inpainting_folder_steps_with_plms() {
    let path =
        fixtures().join("models/published/sd15_inpainting_2022/scheduler/scheduler_config.json");
    let config = SchedulerConfig::from_file(path, None).unwrap();
    let spec = SchedulerSpec::from_config(&config).unwrap();
    assert_eq!(spec.kind, SchedulerKind::Pndm);
    assert_eq!(spec.spacing, Spacing::Leading { steps_offset: 1 });
    assert!(!spec.final_alpha_one);
    let schedule = NoiseSchedule::from_config(&config);
    assert_eq!(schedule, NoiseSchedule::stable_diffusion());
    // PLMS visits its second timestep twice: 51 UNet calls for 50 steps.
    let pndm = spec.build(&schedule, 50).unwrap();
    assert_eq!(pndm.timesteps().len(), 51);
    assert_eq!(pndm.timesteps()[..3], [981.0, 961.0, 961.0]);
    // diffusers' `DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True)`.
    let dpm =
        SchedulerSpec::from_config(&config.with_class("DPMSolverMultistepScheduler").unwrap());
    let dpm = dpm.unwrap();
    assert_eq!(
        dpm.kind,
        SchedulerKind::DpmSolver {
            order: 2,
            sde: false,
            solver: SolverType::Midpoint
        }
    );
    assert_eq!(dpm.spacing, Spacing::Leading { steps_offset: 1 });
    assert_eq!(
        (dpm.karras, dpm.final_sigma, dpm.lower_order_final),
        (false, FinalSigma::Zero, true)
    );
}

#[test]
fn every_option_key_is_read_with_the_class_defaults() {
    let spec = SchedulerSpec::from_config(&parse(
        r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++",
            "solver_type": "heun", "solver_order": 1, "use_karras_sigmas": true,
            "final_sigmas_type": "sigma_min", "lower_order_final": false,
            "timestep_spacing": "trailing", "prediction_type": "v_prediction"}"#,
    ))
    .unwrap();
    assert_eq!(
        spec.kind,
        SchedulerKind::DpmSolver {
            order: 1,
            sde: true,
            solver: SolverType::Heun
        }
    );
    assert_eq!(
        (
            spec.karras,
            spec.final_sigma,
            spec.lower_order_final,
            spec.spacing,
            spec.prediction
        ),
        (
            true,
            FinalSigma::SigmaMin,
            false,
            Spacing::Trailing,
            Prediction::VPrediction
        )
    );
    let unipc = SchedulerSpec::from_config(&parse(
        r#"{"_class_name": "UniPCMultistepScheduler", "solver_type": "bh1", "disable_corrector": []}"#,
    ))
    .unwrap();
    assert_eq!(
        unipc.kind,
        SchedulerKind::UniPc {
            order: 2,
            bh2: false
        }
    );
    assert_eq!(unipc.spacing, Spacing::Linspace, "UniPC's default spacing");
    let path =
        fixtures().join("models/published/dreamshaper8_inpainting/scheduler/scheduler_config.json");
    let deis =
        SchedulerSpec::from_config(&SchedulerConfig::from_file(path, None).unwrap()).unwrap();
    assert_eq!(deis.kind, SchedulerKind::Deis { order: 2 });
    assert_eq!(deis.spacing, Spacing::Leading { steps_offset: 1 });
    let lcm = SchedulerSpec::from_config(&parse(
        r#"{"_class_name": "LCMScheduler", "original_inference_steps": 30, "timestep_scaling": 5.0}"#,
    ))
    .unwrap();
    assert_eq!(
        lcm.kind,
        SchedulerKind::Lcm {
            original_steps: 30,
            timestep_scaling: 5.0
        }
    );
    assert!(
        lcm.final_alpha_one,
        "LCM's set_alpha_to_one defaults to true"
    );
    // DDIM's constructor defaults clip_sample to true: a config must say false.
    let ddim =
        r#"{"_class_name": "DDIMScheduler", "clip_sample": false, "set_alpha_to_one": false}"#;
    let spec = SchedulerSpec::from_config(&parse(ddim)).unwrap();
    assert_eq!(
        (spec.kind, spec.final_alpha_one),
        (SchedulerKind::Ddim { eta: 0.0 }, false)
    );
    // A zero-terminal-SNR schedule ends at a_bar = 0.
    let zero = parse(
        r#"{"_class_name": "EulerDiscreteScheduler", "rescale_betas_zero_snr": true,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#,
    );
    let schedule = NoiseSchedule::from_config(&zero);
    assert_eq!(schedule.alpha_cumprod(999), 0.0);
    assert!(
        (schedule.alpha_cumprod(0) - NoiseSchedule::stable_diffusion().alpha_cumprod(0)).abs()
            < 1e-12
    );
}

#[test]
fn classes_and_values_not_implemented_are_refused_naming_the_key() {
    for (json, key) in [
        (r#"{"_class_name": "LMSDiscreteScheduler"}"#, "_class_name"),
        (r#"{"_class_name": "HeunDiscreteScheduler"}"#, "_class_name"),
        (
            r#"{"_class_name": "DEISMultistepScheduler", "solver_type": "bh2"}"#,
            "solver_type",
        ),
        (r#"{"_class_name": "DDIMScheduler"}"#, "clip_sample"),
        (
            r#"{"_class_name": "DDPMScheduler", "clip_sample": true}"#,
            "clip_sample",
        ),
        (
            r#"{"_class_name": "DDIMScheduler", "clip_sample": false, "thresholding": true}"#,
            "thresholding",
        ),
        (r#"{"_class_name": "PNDMScheduler"}"#, "skip_prk_steps"),
        (
            r#"{"_class_name": "EulerDiscreteScheduler", "use_exponential_sigmas": true}"#,
            "use_exponential_sigmas",
        ),
        (
            r#"{"_class_name": "EulerDiscreteScheduler", "interpolation_type": "log_linear"}"#,
            "interpolation_type",
        ),
        (
            r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"}"#,
            "algorithm_type",
        ),
        (
            r#"{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3}"#,
            "solver_order",
        ),
        (
            r#"{"_class_name": "DPMSolverMultistepScheduler", "euler_at_final": true}"#,
            "euler_at_final",
        ),
        (
            r#"{"_class_name": "UniPCMultistepScheduler", "disable_corrector": [0]}"#,
            "disable_corrector",
        ),
        (
            r#"{"_class_name": "UniPCMultistepScheduler", "predict_x0": false}"#,
            "predict_x0",
        ),
        (
            r#"{"_class_name": "EulerDiscreteScheduler", "prediction_type": "sample"}"#,
            "prediction_type",
        ),
        (
            r#"{"_class_name": "LCMScheduler", "timestep_scaling": -1}"#,
            "timestep_scaling",
        ),
    ] {
        assert_eq!(refused_key(json), key, "{json}");
    }
    // Keys of other classes are ignored, as diffusers ignores them: the x4 upscaler's low-res
    // DDPM (only its noise schedule is used) loads whatever its clip_sample says.
    let euler = r#"{"_class_name": "EulerDiscreteScheduler", "clip_sample": true, "skip_prk_steps": false}"#;
    assert!(SchedulerSpec::from_config(&parse(euler)).is_ok());
    let x4 = fixtures().join("models/pipeline_x4/low_res_scheduler/scheduler_config.json");
    let low_res = SchedulerConfig::from_file(x4, None).unwrap();
    assert!(
        low_res.options().is_err(),
        "its clip_sample is true: not a scheduler to step with"
    );
}

#[test]
fn options_that_do_not_fit_the_kind_are_named() {
    let cases = [
        (
            SchedulerSpec {
                karras: true,
                ..SchedulerSpec::default()
            },
            "Karras sigmas",
        ),
        (
            SchedulerSpec {
                spacing: Spacing::HdPainter,
                ..SchedulerSpec::new(SchedulerKind::Euler)
            },
            "HD-Painter's grid",
        ),
        (
            SchedulerSpec::new(SchedulerKind::Ddim { eta: -1.0 }),
            "DDIM eta",
        ),
        (
            SchedulerSpec::new(SchedulerKind::UniPc {
                order: 3,
                bh2: true,
            }),
            "solver_order",
        ),
    ];
    for (spec, name) in cases {
        match spec.validate() {
            Err(SamplingError::Models(ModelsError::Core(
                hd_painter_core::CoreError::InvalidParameter { name: n, .. },
            ))) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
        assert!(spec.build(&NoiseSchedule::stable_diffusion(), 10).is_err());
    }
    let ddim = SchedulerSpec::default();
    assert!(
        ddim.build(&NoiseSchedule::stable_diffusion(), 0).is_err(),
        "0 steps"
    );
    assert!(
        ddim.build(&NoiseSchedule::stable_diffusion(), 1001)
            .is_err(),
        "more than trained"
    );
    let lcm = SchedulerSpec::new(SchedulerKind::named("lcm").unwrap());
    assert!(
        lcm.build(&NoiseSchedule::stable_diffusion(), 51).is_err(),
        "past the distillation grid"
    );
    assert!(SchedulerKind::named("dpm++3m").is_err());
    // Every listed name parses, to a kind of its own (the list is what UIs offer).
    let kinds: Vec<SchedulerKind> = SchedulerKind::names()
        .map(|name| SchedulerKind::named(name).unwrap())
        .collect();
    assert_eq!(kinds.len(), 11);
    for (i, kind) in kinds.iter().enumerate() {
        assert!(!kinds[..i].contains(kind), "{kind:?} listed twice");
    }
    assert_eq!(
        SchedulerKind::named("EulerAncestralDiscreteScheduler").unwrap(),
        SchedulerKind::named("euler-a").unwrap()
    );
}
