//! A folder's `scheduler_config.json` as a [`SchedulerSpec`] and a [`NoiseSchedule`], as
//! diffusers' pipelines use the folder's scheduler.

use hd_painter_models::{ModelsError, SchedulerConfig};

use crate::ddim::Prediction;
use crate::error::Result;
use crate::schedule::{NoiseSchedule, Spacing};

use super::{FinalSigma, SchedulerKind, SchedulerSpec, SolverType};

fn unsupported(config: &SchedulerConfig, key: &str, value: &str, expected: &str) -> ModelsError {
    ModelsError::UnsupportedConfig {
        path: config.path.clone(),
        key: key.into(),
        value: format!("{value:?}"),
        expected: expected.into(),
    }
}

impl SchedulerSpec {
    /// The scheduler a folder's config describes; a class hd-painter does not run, or a
    /// prediction type it does not follow, is a typed error naming the file and key (pick
    /// another class with [`SchedulerConfig::with_class`], as diffusers' `from_config` does).
    pub fn from_config(config: &SchedulerConfig) -> Result<Self> {
        let class = config.class_name.as_str();
        let o = &config.options()?;
        let prediction = match config.prediction_type.as_str() {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::VPrediction,
            other => {
                let expected = "\"epsilon\" or \"v_prediction\"";
                return Err(unsupported(config, "prediction_type", other, expected).into());
            }
        };
        let spacing = match config.timestep_spacing.as_str() {
            "leading" => Spacing::Leading {
                steps_offset: config.steps_offset,
            },
            "trailing" => Spacing::Trailing,
            _ => Spacing::Linspace,
        };
        let kind = match class {
            "DDIMScheduler" => SchedulerKind::Ddim { eta: 0.0 },
            "DDPMScheduler" => SchedulerKind::Ddpm,
            "PNDMScheduler" => SchedulerKind::Pndm,
            "EulerDiscreteScheduler" => SchedulerKind::Euler,
            "EulerAncestralDiscreteScheduler" => SchedulerKind::EulerAncestral,
            "DPMSolverMultistepScheduler" => SchedulerKind::DpmSolver {
                order: o.solver_order,
                sde: o.algorithm_type == "sde-dpmsolver++",
                solver: match o.solver_type.as_str() {
                    "heun" => SolverType::Heun,
                    _ => SolverType::Midpoint,
                },
            },
            "DEISMultistepScheduler" => SchedulerKind::Deis {
                order: o.solver_order,
            },
            "UniPCMultistepScheduler" => SchedulerKind::UniPc {
                order: o.solver_order,
                bh2: o.solver_type != "bh1",
            },
            _ => SchedulerKind::Lcm {
                original_steps: o.original_inference_steps,
                timestep_scaling: o.timestep_scaling,
            },
        };
        Ok(Self {
            kind,
            prediction,
            spacing,
            karras: o.use_karras_sigmas,
            final_sigma: match o.final_sigmas_type.as_str() {
                "sigma_min" => FinalSigma::SigmaMin,
                _ => FinalSigma::Zero,
            },
            lower_order_final: o.lower_order_final,
            final_alpha_one: o.set_alpha_to_one,
        })
    }
}

impl NoiseSchedule {
    /// The training schedule a folder's config describes (`beta_schedule`, `beta_start`,
    /// `beta_end`, `num_train_timesteps`, `trained_betas`, `rescale_betas_zero_snr`), in `f64`
    /// (within about 1e-8 of diffusers' `f32` tables).
    pub fn from_config(config: &SchedulerConfig) -> Self {
        let n = config.num_train_timesteps;
        let schedule = match (&config.trained_betas, config.beta_schedule.as_str()) {
            (Some(betas), _) => Self::from_betas(betas.clone()),
            (None, "scaled_linear") => Self::scaled_linear(config.beta_start, config.beta_end, n),
            (None, "squaredcos_cap_v2") => Self::squared_cosine(n),
            (None, _) => Self::linear(config.beta_start, config.beta_end, n),
        };
        match config.rescale_betas_zero_snr {
            true => schedule.rescaled_zero_terminal_snr(),
            false => schedule,
        }
    }
}
