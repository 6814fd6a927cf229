//! Which scheduler a run steps with and its options ([`SchedulerSpec`]), as diffusers' classes
//! and their config keys name them, built into a [`Scheduler`] for one run.

use std::fmt;

use hd_painter_core::CoreError;

use crate::ddim::Prediction;
use crate::error::{Result, SamplingError};
use crate::schedule::{NoiseSchedule, Spacing};

use super::Scheduler;
use super::ddim::{Ddim, Ddpm};
use super::deis::Deis;
use super::dpm::DpmSolver;
use super::euler::Euler;
use super::lcm::Lcm;
use super::pndm::Pndm;
use super::unipc::UniPc;

/// The step rule: one per diffusers scheduler class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SchedulerKind {
    /// `DDIMScheduler`; `eta` scales the DDIM paper's sigma (0: deterministic).
    Ddim {
        /// The scale of the random term.
        eta: f64,
    },
    /// `DDPMScheduler` (ancestral, "fixed small" variance).
    Ddpm,
    /// `PNDMScheduler` with `skip_prk_steps` (pseudo linear multistep).
    Pndm,
    /// `EulerDiscreteScheduler`.
    Euler,
    /// `EulerAncestralDiscreteScheduler` ("Euler a").
    EulerAncestral,
    /// `DPMSolverMultistepScheduler` with `algorithm_type` `dpmsolver++` (DPM++ 2M) or, with
    /// `sde`, `sde-dpmsolver++` (DPM++ 2M SDE).
    DpmSolver {
        /// `solver_order`: 1 or 2.
        order: usize,
        /// The stochastic variant.
        sde: bool,
        /// `solver_type`.
        solver: SolverType,
    },
    /// `DEISMultistepScheduler` (`deis`, `logrho`).
    Deis {
        /// `solver_order`: 1 or 2.
        order: usize,
    },
    /// `UniPCMultistepScheduler` (`predict_x0`, bh1 or bh2).
    UniPc {
        /// `solver_order`: 1 or 2.
        order: usize,
        /// `solver_type` `bh2` (the default) rather than `bh1`.
        bh2: bool,
    },
    /// `LCMScheduler` (latent consistency models, e.g. with LCM-LoRA).
    Lcm {
        /// `original_inference_steps`: the distillation grid the steps are taken from.
        original_steps: usize,
        /// `timestep_scaling` of the boundary condition.
        timestep_scaling: f64,
    },
}

/// The second-order rule of DPM-Solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverType {
    /// `midpoint` (the default).
    Midpoint,
    /// `heun`.
    Heun,
}

/// The noise level the sigma-grid schedulers end at (`final_sigmas_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalSigma {
    /// 0: the last step returns the clean prediction.
    Zero,
    /// The training schedule's smallest sigma.
    SigmaMin,
}

/// A scheduler and its options, as a folder's `scheduler_config.json` or the caller names
/// them. Build one scheduler per run with [`build`](Self::build).
///
/// ```
/// use hd_painter_sampling::{NoiseSchedule, SchedulerKind, SchedulerSpec};
///
/// // DPM++ 2M Karras, 20 steps, over Stable Diffusion's schedule.
/// let spec = SchedulerSpec { karras: true, ..SchedulerSpec::new(SchedulerKind::named("dpm++2m")?) };
/// let scheduler = spec.build(&NoiseSchedule::stable_diffusion(), 20)?;
/// assert_eq!(scheduler.timesteps().len(), 20);
/// assert_eq!(scheduler.sigmas().map(|s| s.len()), Some(21)); // the last is 0
/// # Ok::<(), hd_painter_sampling::SamplingError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SchedulerSpec {
    /// The step rule.
    pub kind: SchedulerKind,
    /// What the UNet predicts (`prediction_type`).
    pub prediction: Prediction,
    /// How the steps spread over the training timesteps (`timestep_spacing`, `steps_offset`).
    pub spacing: Spacing,
    /// Karras et al.'s sigmas (`use_karras_sigmas`: Euler, DPM-Solver, DEIS, UniPC).
    pub karras: bool,
    /// `final_sigmas_type` (Euler, DPM-Solver, UniPC).
    pub final_sigma: FinalSigma,
    /// `lower_order_final`: first-order final steps under 15 steps (DPM-Solver, DEIS, UniPC).
    pub lower_order_final: bool,
    /// `set_alpha_to_one`: `a_bar = 1` after the last step (DDIM, PNDM, LCM).
    pub final_alpha_one: bool,
}

impl Default for SchedulerSpec {
    /// Stable Diffusion's published DDIM: leading spacing with offset 1, eta 0, epsilon.
    fn default() -> Self {
        Self::new(SchedulerKind::Ddim { eta: 0.0 })
    }
}

/// The names [`SchedulerSpec::named`] takes: short name, diffusers class.
const NAMES: [(&str, &str); 11] = [
    ("ddim", "DDIMScheduler"),
    ("ddpm", "DDPMScheduler"),
    ("pndm", "PNDMScheduler"),
    ("euler", "EulerDiscreteScheduler"),
    ("euler-a", "EulerAncestralDiscreteScheduler"),
    ("dpm++2m", "DPMSolverMultistepScheduler"),
    ("dpm++2m-sde", "DPMSolverMultistepScheduler"),
    ("unipc", "UniPCMultistepScheduler"),
    ("lcm", "LCMScheduler"),
    ("dpm++1m", "DPMSolverMultistepScheduler"),
    ("deis", "DEISMultistepScheduler"),
];

impl SchedulerKind {
    /// The short names [`SchedulerKind::named`] takes (`ddim`, `dpm++2m`, ...).
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|(short, _)| *short)
    }

    /// The kind a short name (`dpm++2m`, `euler-a`, ...) or diffusers class name stands for,
    /// with the class's defaults.
    pub fn named(name: &str) -> Result<Self> {
        let dpm = |order, sde| Self::DpmSolver {
            order,
            sde,
            solver: SolverType::Midpoint,
        };
        let short = NAMES
            .iter()
            .find(|(short, class)| *short == name || *class == name)
            .map(|(short, _)| *short);
        Ok(match short {
            Some("ddim") => Self::Ddim { eta: 0.0 },
            Some("ddpm") => Self::Ddpm,
            Some("pndm") => Self::Pndm,
            Some("euler") => Self::Euler,
            Some("euler-a") => Self::EulerAncestral,
            Some("dpm++2m") => dpm(2, false),
            Some("dpm++2m-sde") => dpm(2, true),
            Some("dpm++1m") => dpm(1, false),
            Some("deis") => Self::Deis { order: 2 },
            Some("unipc") => Self::UniPc {
                order: 2,
                bh2: true,
            },
            Some("lcm") => Self::Lcm {
                original_steps: 50,
                timestep_scaling: 10.0,
            },
            _ => {
                let known: Vec<&str> = Self::names().collect();
                return Err(SamplingError::InvalidInput(format!(
                    "scheduler {name:?}: expected one of {} or their diffusers class names",
                    known.join(", ")
                )));
            }
        })
    }

    /// The diffusers class this kind is.
    pub fn class_name(&self) -> &'static str {
        match self {
            Self::Ddim { .. } => "DDIMScheduler",
            Self::Ddpm => "DDPMScheduler",
            Self::Pndm => "PNDMScheduler",
            Self::Euler => "EulerDiscreteScheduler",
            Self::EulerAncestral => "EulerAncestralDiscreteScheduler",
            Self::DpmSolver { .. } => "DPMSolverMultistepScheduler",
            Self::Deis { .. } => "DEISMultistepScheduler",
            Self::UniPc { .. } => "UniPCMultistepScheduler",
            Self::Lcm { .. } => "LCMScheduler",
        }
    }

    fn has_sigma_grid(&self) -> bool {
        matches!(
            self,
            Self::Euler | Self::DpmSolver { .. } | Self::Deis { .. } | Self::UniPc { .. }
        )
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.class_name())
    }
}

impl SchedulerSpec {
    /// `kind` with Stable Diffusion's published schedule settings (leading spacing, offset 1,
    /// epsilon) and the class's defaults for the rest.
    pub fn new(kind: SchedulerKind) -> Self {
        Self {
            kind,
            prediction: Prediction::Epsilon,
            spacing: Spacing::Leading { steps_offset: 1 },
            karras: false,
            final_sigma: FinalSigma::Zero,
            lower_order_final: true,
            final_alpha_one: matches!(kind, SchedulerKind::Lcm { .. }),
        }
    }

    /// HD-Painter's: DDIM (eta 0) on the official `999 - (1000 / n) k` grid.
    pub fn hd_painter() -> Self {
        Self {
            spacing: Spacing::HdPainter,
            ..Self::default()
        }
    }

    /// diffusers' `Class.from_config(folder_config)`: another class over the same schedule
    /// settings (prediction, spacing, offset); the class's own options at their defaults.
    /// HD-Painter's grid is DDIM's and DDPM's: another kind takes SD's leading spacing.
    pub fn with_kind(self, kind: SchedulerKind) -> Self {
        let spacing = match (self.spacing, kind) {
            (Spacing::HdPainter, SchedulerKind::Ddim { .. } | SchedulerKind::Ddpm) => self.spacing,
            (Spacing::HdPainter, _) => Spacing::Leading { steps_offset: 1 },
            (spacing, _) => spacing,
        };
        Self {
            kind,
            spacing,
            karras: false,
            final_sigma: FinalSigma::Zero,
            lower_order_final: true,
            final_alpha_one: matches!(kind, SchedulerKind::Lcm { .. }) || self.final_alpha_one,
            ..self
        }
    }

    /// Checks that the options fit the kind: each problem a [`CoreError::InvalidParameter`]
    /// naming the option, its value and what the kind takes.
    pub fn validate(&self) -> Result<()> {
        let refuse = |name, value: String, expected| {
            Err(CoreError::InvalidParameter {
                name,
                value,
                expected,
            }
            .into())
        };
        let class = self.kind.class_name();
        if self.karras && !self.kind.has_sigma_grid() {
            let expected = "a sigma-grid scheduler (Euler, DPM-Solver, UniPC)";
            return refuse("Karras sigmas", class.into(), expected);
        }
        if self.spacing == Spacing::HdPainter
            && !matches!(self.kind, SchedulerKind::Ddim { .. } | SchedulerKind::Ddpm)
        {
            return refuse("HD-Painter's grid", class.into(), "DDIM or DDPM");
        }
        match self.kind {
            SchedulerKind::Ddim { eta } if !(eta.is_finite() && eta >= 0.0) => {
                refuse("DDIM eta", eta.to_string(), "a finite number >= 0")
            }
            SchedulerKind::DpmSolver { order, .. }
            | SchedulerKind::Deis { order }
            | SchedulerKind::UniPc { order, .. }
                if !(1..=2).contains(&order) =>
            {
                refuse("solver_order", order.to_string(), "1 or 2")
            }
            SchedulerKind::Lcm {
                original_steps: 0, ..
            } => refuse("original_inference_steps", "0".into(), "at least 1"),
            SchedulerKind::Lcm {
                timestep_scaling, ..
            } if !(timestep_scaling.is_finite() && timestep_scaling > 0.0) => refuse(
                "timestep_scaling",
                timestep_scaling.to_string(),
                "a finite number > 0",
            ),
            _ => Ok(()),
        }
    }

    /// The scheduler for a run of `steps` steps over `schedule`.
    pub fn build(&self, schedule: &NoiseSchedule, steps: usize) -> Result<Box<dyn Scheduler>> {
        self.validate()?;
        let train = schedule.len();
        if steps == 0 || steps > train {
            return Err(SamplingError::InvalidInput(format!(
                "{} steps (expected 1 to {train})",
                steps
            )));
        }
        let schedule = match self.final_alpha_one {
            true => schedule.clone().with_final_alpha_one(),
            false => schedule.clone(),
        };
        Ok(match self.kind {
            SchedulerKind::Ddim { eta } => Box::new(Ddim::new(self, schedule, steps, eta)),
            SchedulerKind::Ddpm => Box::new(Ddpm::new(self, schedule, steps)),
            SchedulerKind::Pndm => Box::new(Pndm::new(self, schedule, steps)),
            SchedulerKind::Euler => Box::new(Euler::new(self, &schedule, steps, false)),
            SchedulerKind::EulerAncestral => Box::new(Euler::new(self, &schedule, steps, true)),
            SchedulerKind::DpmSolver { .. } => Box::new(DpmSolver::build(self, &schedule, steps)),
            SchedulerKind::Deis { .. } => Box::new(Deis::build(self, &schedule, steps)),
            SchedulerKind::UniPc { .. } => Box::new(UniPc::build(self, &schedule, steps)),
            SchedulerKind::Lcm { .. } => Box::new(Lcm::new(self, schedule, steps)?),
        })
    }
}
