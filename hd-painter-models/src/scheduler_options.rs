//! The options of the scheduler classes hd-painter runs, read from a `scheduler_config.json`
//! with the class's constructor defaults for absent keys. A key of the class set to a value the
//! implementation does not follow (x0 clipping, thresholding, exponential sigmas, ...) is a
//! typed error naming it; keys of other classes are ignored, as diffusers ignores them.

use serde_json::{Value, json};

use crate::config::ConfigFile;
use crate::error::{ModelsError, Result};

/// The scheduler classes with an implementation in `hd-painter-sampling`.
pub const RUNNABLE_SCHEDULERS: [&str; 9] = [
    "DDIMScheduler",
    "DDPMScheduler",
    "PNDMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
    "LCMScheduler",
];

/// A runnable class's options, at the class's defaults where the file is silent.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerOptions {
    /// `use_karras_sigmas` (Euler, DPM-Solver, UniPC).
    pub use_karras_sigmas: bool,
    /// `final_sigmas_type`: `zero` or `sigma_min` (Euler, DPM-Solver, UniPC).
    pub final_sigmas_type: String,
    /// `lower_order_final` (DPM-Solver, UniPC).
    pub lower_order_final: bool,
    /// `solver_order`: 1 or 2 (DPM-Solver, UniPC).
    pub solver_order: usize,
    /// `algorithm_type`: `dpmsolver++` or `sde-dpmsolver++` (DPM-Solver).
    pub algorithm_type: String,
    /// `solver_type`: `midpoint` or `heun` (DPM-Solver), `bh1` or `bh2` (UniPC).
    pub solver_type: String,
    /// `set_alpha_to_one` (DDIM, PNDM, LCM).
    pub set_alpha_to_one: bool,
    /// `original_inference_steps` (LCM).
    pub original_inference_steps: usize,
    /// `timestep_scaling` (LCM).
    pub timestep_scaling: f64,
}

/// Keys a class has whose only supported value is its default (absent or null also pass).
fn fixed_keys(class: &str) -> Value {
    let sigma_kinds = json!({"use_exponential_sigmas": false, "use_beta_sigmas": false});
    let mut keys = match class {
        "DDIMScheduler" | "LCMScheduler" => json!({"thresholding": false}),
        "DDPMScheduler" => json!({"thresholding": false, "variance_type": "fixed_small"}),
        "EulerDiscreteScheduler" => json!({
            "interpolation_type": "linear", "timestep_type": "discrete",
            "sigma_min": null, "sigma_max": null
        }),
        "DPMSolverMultistepScheduler" => json!({
            "thresholding": false, "euler_at_final": false, "use_lu_lambdas": false,
            "use_flow_sigmas": false, "variance_type": null, "lambda_min_clipped": null
        }),
        "DEISMultistepScheduler" => json!({
            "thresholding": false, "algorithm_type": "deis", "solver_type": "logrho",
            "use_flow_sigmas": false
        }),
        "UniPCMultistepScheduler" => json!({
            "thresholding": false, "predict_x0": true, "use_flow_sigmas": false,
            "solver_p": null
        }),
        _ => json!({}),
    };
    if matches!(
        class,
        "EulerDiscreteScheduler"
            | "DPMSolverMultistepScheduler"
            | "DEISMultistepScheduler"
            | "UniPCMultistepScheduler"
    ) && let (Some(k), Some(s)) = (keys.as_object_mut(), sigma_kinds.as_object())
    {
        k.extend(s.clone());
    }
    keys
}

/// The class's constructor defaults of `clip_sample`, `set_alpha_to_one` and
/// `skip_prk_steps`, where it has them.
fn class_defaults(class: &str) -> (Option<bool>, bool, Option<bool>) {
    match class {
        "DDIMScheduler" => (Some(true), true, None),
        "DDPMScheduler" => (Some(true), false, None),
        "PNDMScheduler" => (None, false, Some(false)),
        "LCMScheduler" => (Some(false), true, None),
        _ => (None, false, None),
    }
}

/// The option defaults of `class` that another class read from its config inherits.
pub(crate) fn class_option_defaults(class: &str) -> Value {
    let (clip, alpha_to_one, skip_prk) = class_defaults(class);
    let mut defaults = serde_json::Map::new();
    if let Some(clip) = clip {
        defaults.insert("clip_sample".into(), clip.into());
    }
    if matches!(class, "DDIMScheduler" | "PNDMScheduler" | "LCMScheduler") {
        defaults.insert("set_alpha_to_one".into(), alpha_to_one.into());
    }
    if let Some(skip) = skip_prk {
        defaults.insert("skip_prk_steps".into(), skip.into());
    }
    Value::Object(defaults)
}

impl SchedulerOptions {
    /// The options of `class` from `file`; a class without an implementation is an error.
    pub(crate) fn read(file: &ConfigFile, class: &str) -> Result<Self> {
        if !RUNNABLE_SCHEDULERS.contains(&class) {
            let expected = format!("one of {RUNNABLE_SCHEDULERS:?} (or choose another scheduler)");
            return Err(ModelsError::UnsupportedConfig {
                path: file.path().to_path_buf(),
                key: "_class_name".into(),
                value: format!("{class:?}"),
                expected,
            });
        }
        let (clip, alpha_to_one, skip_prk) = class_defaults(class);
        if let Some(default) = clip
            && file.bool_or("clip_sample", default)?
        {
            let expected = "false: x0 clipping is not implemented (absent means true here)";
            return Err(file.unsupported("clip_sample", expected));
        }
        if let Some(default) = skip_prk
            && !file.bool_or("skip_prk_steps", default)?
        {
            let expected =
                "true: PNDM's Runge-Kutta warm-up is not implemented (absent means false)";
            return Err(file.unsupported("skip_prk_steps", expected));
        }
        let fixed = fixed_keys(class);
        for (key, value) in fixed.as_object().into_iter().flatten() {
            file.require_default(key, value)?;
        }
        let solver = |allowed: &[&'static str]| -> Result<String> {
            match file.is_absent("solver_type") {
                true => Ok(allowed[0].to_string()),
                false => Ok(file.one_of("solver_type", allowed)?.to_string()),
            }
        };
        let (solver_type, algorithm_type) = match class {
            "DPMSolverMultistepScheduler" => (
                solver(&["midpoint", "heun"])?,
                match file.is_absent("algorithm_type") {
                    true => "dpmsolver++".to_string(),
                    false => file
                        .one_of("algorithm_type", &["dpmsolver++", "sde-dpmsolver++"])?
                        .to_string(),
                },
            ),
            "UniPCMultistepScheduler" => (solver(&["bh2", "bh1"])?, String::new()),
            _ => (String::new(), String::new()),
        };
        if class == "UniPCMultistepScheduler"
            && !matches!(file.get("disable_corrector"), None | Some(Value::Null))
            && file.get("disable_corrector") != Some(&json!([]))
        {
            return Err(file.unsupported("disable_corrector", "[] (or absent)"));
        }
        let order = file.usize_or("solver_order", 2)?;
        if !(1..=2).contains(&order) {
            return Err(file.unsupported("solver_order", "1 or 2"));
        }
        let final_sigmas_type = match file.is_absent("final_sigmas_type") {
            true => "zero".to_string(),
            false => file
                .one_of("final_sigmas_type", &["zero", "sigma_min"])?
                .to_string(),
        };
        let scaling = file.f64_or("timestep_scaling", 10.0)?;
        if !(scaling.is_finite() && scaling > 0.0) {
            return Err(file.unsupported("timestep_scaling", "a positive number"));
        }
        Ok(Self {
            use_karras_sigmas: file.bool_or("use_karras_sigmas", false)?,
            final_sigmas_type,
            lower_order_final: file.bool_or("lower_order_final", true)?,
            solver_order: order,
            algorithm_type,
            solver_type,
            set_alpha_to_one: file.bool_or("set_alpha_to_one", alpha_to_one)?,
            original_inference_steps: file.usize_or("original_inference_steps", 50)?,
            timestep_scaling: scaling,
        })
    }
}
