//! A pipeline folder's `scheduler/scheduler_config.json`, read as diffusers' schedulers read it:
//! the class and the noise-schedule keys checked, keys the file lacks at that class's
//! constructor defaults, keys of other schedulers ignored (diffusers warns and ignores them).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::ConfigFile;
use crate::error::Result;
use crate::scheduler_options::{SchedulerOptions, class_option_defaults};

/// The diffusers schedulers over a discrete beta schedule that Stable Diffusion folders name,
/// with the `timestep_spacing` and betas each defaults to.
const CLASSES: [(&str, &str, f64, f64, &str); 18] = [
    ("DDIMScheduler", "leading", 0.0001, 0.02, "linear"),
    ("DDPMScheduler", "leading", 0.0001, 0.02, "linear"),
    ("PNDMScheduler", "leading", 0.0001, 0.02, "linear"),
    ("LMSDiscreteScheduler", "linspace", 0.0001, 0.02, "linear"),
    ("EulerDiscreteScheduler", "linspace", 0.0001, 0.02, "linear"),
    (
        "EulerAncestralDiscreteScheduler",
        "linspace",
        0.0001,
        0.02,
        "linear",
    ),
    (
        "HeunDiscreteScheduler",
        "linspace",
        0.00085,
        0.012,
        "linear",
    ),
    (
        "DPMSolverMultistepScheduler",
        "linspace",
        0.0001,
        0.02,
        "linear",
    ),
    (
        "DPMSolverSinglestepScheduler",
        "linspace",
        0.0001,
        0.02,
        "linear",
    ),
    (
        "DPMSolverSDEScheduler",
        "linspace",
        0.00085,
        0.012,
        "linear",
    ),
    (
        "KDPM2DiscreteScheduler",
        "linspace",
        0.00085,
        0.012,
        "linear",
    ),
    (
        "KDPM2AncestralDiscreteScheduler",
        "linspace",
        0.00085,
        0.012,
        "linear",
    ),
    ("DEISMultistepScheduler", "linspace", 0.0001, 0.02, "linear"),
    (
        "UniPCMultistepScheduler",
        "linspace",
        0.0001,
        0.02,
        "linear",
    ),
    ("LCMScheduler", "leading", 0.00085, 0.012, "scaled_linear"),
    ("TCDScheduler", "leading", 0.00085, 0.012, "scaled_linear"),
    ("RePaintScheduler", "leading", 0.0001, 0.02, "linear"),
    ("SASolverScheduler", "linspace", 0.0001, 0.02, "linear"),
];

/// A scheduler's configuration as a pipeline folder stores it. Running it is the sampling
/// crate's part; this is what the folder says, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// The diffusers class, e.g. `PNDMScheduler` (from `model_index.json` where the folder
    /// names one, else the file's `_class_name`).
    pub class_name: String,
    /// `num_train_timesteps` (1000).
    pub num_train_timesteps: usize,
    /// `beta_start`.
    pub beta_start: f64,
    /// `beta_end`.
    pub beta_end: f64,
    /// `beta_schedule`: `linear`, `scaled_linear` or `squaredcos_cap_v2`.
    pub beta_schedule: String,
    /// `trained_betas`, one per training step, where the file gives them.
    pub trained_betas: Option<Vec<f64>>,
    /// `prediction_type`: `epsilon`, `v_prediction` or `sample`.
    pub prediction_type: String,
    /// `timestep_spacing`: `leading`, `trailing` or `linspace`.
    pub timestep_spacing: String,
    /// `steps_offset` (SD's published configs: 1).
    pub steps_offset: usize,
    /// `rescale_betas_zero_snr`: the schedule rescaled to a zero terminal SNR.
    pub rescale_betas_zero_snr: bool,
    /// Every key the file sets.
    pub keys: Vec<String>,
    /// The file.
    pub path: PathBuf,
    /// The file's JSON as written (for [`with_class`](Self::with_class)).
    json: Value,
}

impl SchedulerConfig {
    /// Reads `scheduler_config.json`; `class_name` is the class `model_index.json` names, or
    /// `None` to take the file's `_class_name`.
    pub fn from_file(path: impl AsRef<Path>, class_name: Option<&str>) -> Result<Self> {
        Self::parse(ConfigFile::open(path.as_ref())?, class_name)
    }

    /// The same file read as another class (diffusers' `Class.from_config(pipe.scheduler.config)`,
    /// whose config holds every argument of the first class, defaults included): the schedule's
    /// keys carried over at this class's values (e.g. PNDM's leading spacing), as are the options
    /// both classes have; the new class's other options at its defaults.
    pub fn with_class(&self, class_name: &str) -> Result<Self> {
        let mut json = self.json.clone();
        let carried = serde_json::json!({
            "num_train_timesteps": self.num_train_timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "beta_schedule": self.beta_schedule,
            "prediction_type": self.prediction_type,
            "timestep_spacing": self.timestep_spacing,
            "steps_offset": self.steps_offset,
        });
        if let Some(object) = json.as_object_mut() {
            let defaults = class_option_defaults(&self.class_name);
            for (key, value) in carried
                .as_object()
                .into_iter()
                .chain(defaults.as_object())
                .flatten()
            {
                object.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        Self::parse(ConfigFile::from_json(&self.path, json), Some(class_name))
    }

    /// The options of the class as hd-painter runs it, checked: a class without an
    /// implementation, or a key of the class set to a value it does not follow (x0 clipping,
    /// thresholding, exponential sigmas, ...), is [`UnsupportedConfig`](crate::ModelsError::UnsupportedConfig) naming it. Loading
    /// does not check these, so that a folder whose scheduler is only used for its noise
    /// schedule (the x4 upscaler's low-res one) loads.
    pub fn options(&self) -> Result<SchedulerOptions> {
        let file = ConfigFile::from_json(&self.path, self.json.clone());
        SchedulerOptions::read(&file, &self.class_name)
    }

    fn parse(file: ConfigFile, class_name: Option<&str>) -> Result<Self> {
        let keys = file.keys();
        let (path, json) = (file.path().to_path_buf(), file.json().clone());
        let names: Vec<&str> = CLASSES.iter().map(|c| c.0).collect();
        let class = match class_name {
            Some(name) => names
                .iter()
                .find(|n| **n == name)
                .copied()
                .ok_or_else(|| file.unsupported_value("_class_name", name, &names))?,
            None => file.one_of("_class_name", &names)?,
        };
        let (_, spacing, start, end, schedule) = CLASSES
            .iter()
            .find(|c| c.0 == class)
            .copied()
            .expect("listed");
        let file = file.with_defaults(&serde_json::json!({
            "num_train_timesteps": 1000,
            "beta_start": start,
            "beta_end": end,
            "beta_schedule": schedule,
            "prediction_type": "epsilon",
            "timestep_spacing": spacing,
            "steps_offset": 0,
        }));
        let num_train_timesteps = file.usize("num_train_timesteps")?;
        let beta = |key: &str| {
            let v = file.f64_or(key, 0.0)?;
            if v > 0.0 && v < 1.0 {
                Ok(v)
            } else {
                Err(file.unsupported(key, "a number between 0 and 1"))
            }
        };
        let (beta_start, beta_end) = (beta("beta_start")?, beta("beta_end")?);
        let trained_betas = match file.get("trained_betas") {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|v| v.as_f64().filter(|b| *b > 0.0 && *b < 1.0))
                    .collect::<Option<Vec<f64>>>()
                    .filter(|b| b.len() == num_train_timesteps)
                    .ok_or_else(|| {
                        file.unsupported(
                            "trained_betas",
                            "null or num_train_timesteps numbers between 0 and 1",
                        )
                    })?,
            ),
            Some(_) => {
                return Err(file.unsupported("trained_betas", "null or a list of numbers"));
            }
        };
        Ok(Self {
            class_name: class.to_string(),
            num_train_timesteps,
            beta_start,
            beta_end,
            beta_schedule: file
                .one_of(
                    "beta_schedule",
                    &["linear", "scaled_linear", "squaredcos_cap_v2"],
                )?
                .to_string(),
            trained_betas,
            prediction_type: file
                .one_of("prediction_type", &["epsilon", "v_prediction", "sample"])?
                .to_string(),
            timestep_spacing: file
                .one_of("timestep_spacing", &["leading", "trailing", "linspace"])?
                .to_string(),
            steps_offset: file.count("steps_offset")?,
            rescale_betas_zero_snr: file.bool_or("rescale_betas_zero_snr", false)?,
            keys,
            path,
            json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, class: Option<&str>) -> Result<SchedulerConfig> {
        let path = std::env::temp_dir().join(format!(
            "hd-painter-scheduler-{}-{}.json",
            std::process::id(),
            json.len()
        ));
        std::fs::write(&path, json).unwrap();
        SchedulerConfig::from_file(&path, class)
    }

    #[test]
    fn absent_keys_take_the_class_defaults() {
        let c = parse(
            r#"{"_class_name": "PNDMScheduler", "skip_prk_steps": true}"#,
            None,
        )
        .unwrap();
        assert_eq!(c.class_name, "PNDMScheduler");
        assert_eq!((c.beta_start, c.beta_end), (0.0001, 0.02));
        assert_eq!(c.timestep_spacing, "leading");
        assert_eq!(c.keys, ["_class_name", "skip_prk_steps"]);
        let c = parse("{}", Some("EulerDiscreteScheduler")).unwrap();
        assert_eq!(c.timestep_spacing, "linspace");
        let c = parse("{}", Some("LCMScheduler")).unwrap();
        assert_eq!(c.beta_schedule, "scaled_linear");
    }

    #[test]
    fn malformed_values_and_unknown_classes_are_typed_errors() {
        for (json, class, key) in [
            (r#"{"_class_name": "FooScheduler"}"#, None, "_class_name"),
            ("{}", Some("FlowMatchEulerDiscreteScheduler"), "_class_name"),
            (r#"{"beta_start": 2}"#, Some("DDIMScheduler"), "beta_start"),
            (
                r#"{"prediction_type": "x0"}"#,
                Some("DDIMScheduler"),
                "prediction_type",
            ),
            (
                r#"{"steps_offset": -1}"#,
                Some("DDIMScheduler"),
                "steps_offset",
            ),
            (
                r#"{"trained_betas": [0.1]}"#,
                Some("DDIMScheduler"),
                "trained_betas",
            ),
        ] {
            let err = parse(json, class).unwrap_err();
            assert!(
                matches!(&err, crate::ModelsError::UnsupportedConfig { key: k, .. } if k == key),
                "{json}: {err}"
            );
        }
    }
}
