//! What a model folder or single-file checkpoint holds, read as loading reads it: the same
//! checks (so a broken folder gets the same typed errors as [`StableDiffusionModels::load`]),
//! plus what each weights file stores and which published-layout rules it needed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::clip::ClipTextConfig;
use crate::config::ConfigFile;
use crate::error::{ModelsError, Result};
use crate::layout::{self, KeyRule};
use crate::pipeline::StableDiffusionModels;
use crate::scheduler_config::SchedulerConfig;
use crate::source::ModelSource;
use crate::unet::UnetConfig;
use crate::vae::VaeConfig;
use crate::weights::weights_file;

/// One component's weights as a file stores them.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentReport {
    /// `unet`, `vae`, `text_encoder`.
    pub name: String,
    /// The weights file (a sharded checkpoint's index; the single file for a checkpoint).
    pub file: PathBuf,
    /// Tensors per stored dtype (`F16: 686`).
    pub dtypes: BTreeMap<String, usize>,
    /// Parameters stored (buffers included).
    pub parameters: usize,
    /// The published-layout rules the file needed, as loading applies them.
    pub conversions: Vec<&'static str>,
    /// `config.json` keys absent from the file, taken at the class's defaults.
    pub defaulted: Vec<String>,
}

/// The report of [`inspect`]; its `Display` is what `inpaint --inspect` prints.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The source, as given.
    pub source: String,
    /// The pipeline class.
    pub pipeline: String,
    /// The tokenizer's vocabulary size.
    pub tokenizer_vocab: usize,
    /// Each weighted component.
    pub components: Vec<ComponentReport>,
    /// The scheduler components and their configs.
    pub schedulers: Vec<(String, SchedulerConfig)>,
    /// `model_index.json` entries that are not used.
    pub ignored: Vec<String>,
    /// How the components fit together, one line each (every line is a check that passed).
    pub fits: Vec<String>,
}

/// Loads `source` as [`StableDiffusionModels::from_source`] does (the same errors) and reports
/// what it holds. The models are built on `device` and dropped.
pub fn inspect(source: &ModelSource, variant: Option<&str>, device: &Device) -> Result<Inspection> {
    let models = StableDiffusionModels::from_source(source, variant, device)?;
    let components = match source {
        ModelSource::Folder(dir) => folder_reports(dir, variant, models.sdxl.is_some())?,
        ModelSource::SingleFile { checkpoint, config } => single_file_reports(checkpoint, config)?,
        ModelSource::Hub(hub) => {
            folder_reports(&hub.resolve(variant)?, variant, models.sdxl.is_some())?
        }
    };
    let unet_role = match models.unet.in_channels() {
        4 => "4 (text-to-image: Blended, RePaint, a BrushNet base)",
        9 => "9 (inpainting: Stable Inpainting, HD-Painter)",
        7 => "7 (the x4 upscaler)",
        _ => "not one the methods use",
    };
    let fits = vec![
        format!(
            "tokenizer: {} tokens, within the text encoder's {} embeddings",
            models.tokenizer.vocab_size(),
            models.text_encoder.vocab_size()
        ),
        match &models.sdxl {
            None => format!(
                "text width {} = the UNet's cross_attention_dim",
                models.text_encoder.hidden_size()
            ),
            Some(sdxl) => format!(
                "SDXL: text widths {} + {} = the UNet's cross_attention_dim, pooled width {} \
                 and {} time ids fill its text_time embedding",
                models.text_encoder.hidden_size(),
                sdxl.text_encoder_2.hidden_size(),
                sdxl.text_encoder_2.projection_dim().unwrap_or(0),
                sdxl.flags.time_ids()
            ),
        },
        format!("UNet input channels: {unet_role}"),
        format!(
            "VAE: {} latent channels, downscale {}, scaling factor {}",
            models.vae.latent_channels(),
            models.vae.downscale(),
            models.vae.scaling_factor()
        ),
    ];
    Ok(Inspection {
        source: format!("{source:?}"),
        pipeline: models.pipeline.clone(),
        tokenizer_vocab: models.tokenizer.vocab_size(),
        components,
        schedulers: models.schedulers.clone(),
        ignored: models.ignored.clone(),
        fits,
    })
}

/// The components of a diffusers folder, with the rules and config defaults of each (SDXL's
/// second text encoder too, with `sdxl`).
fn folder_reports(dir: &Path, variant: Option<&str>, sdxl: bool) -> Result<Vec<ComponentReport>> {
    type Config = fn(&Path) -> Result<ConfigFile>;
    let mut parts: Vec<(&str, &[&str], &[KeyRule], Config)> = vec![
        (
            "text_encoder",
            &["model"],
            &layout::CLIP,
            ClipTextConfig::config_file,
        ),
        (
            "unet",
            &["diffusion_pytorch_model"],
            &[],
            UnetConfig::config_file,
        ),
        (
            "vae",
            &["diffusion_pytorch_model"],
            &layout::VAE,
            VaeConfig::config_file,
        ),
    ];
    if sdxl {
        let second = ("text_encoder_2", &["model"][..], &layout::CLIP[..]);
        parts.push((second.0, second.1, second.2, ClipTextConfig::config_file));
    }
    parts
        .iter()
        .map(|(name, stems, rules, config)| {
            let folder = dir.join(name);
            let weights = weights_file(&folder, stems, variant)?;
            let entries = weights
                .files()
                .iter()
                .map(|f| Header::read(f).map(|h| h.entries))
                .collect::<Result<Vec<_>>>()?;
            let header = Header::from_entries(entries.concat());
            let file = weights.path().to_path_buf();
            Ok(ComponentReport {
                name: name.to_string(),
                conversions: layout::applied(rules, header.entries.iter().map(|e| e.0.as_str())),
                defaulted: config(&folder.join("config.json"))?.defaulted().to_vec(),
                dtypes: header.dtypes,
                parameters: header.parameters,
                file,
            })
        })
        .collect()
}

/// The components of an original-layout checkpoint, by key prefix.
fn single_file_reports(checkpoint: &Path, config: &Path) -> Result<Vec<ComponentReport>> {
    let header = Header::read(checkpoint)?;
    let vae = match header
        .entries
        .iter()
        .any(|e| e.0.starts_with("first_stage_model."))
    {
        true => "first_stage_model.",
        false => "vae.",
    };
    let parts = [
        ("text_encoder", "cond_stage_model.", "text_encoder"),
        ("unet", "model.diffusion_model.", "unet"),
        ("vae", vae, "vae"),
    ];
    parts
        .iter()
        .map(|(name, prefix, folder)| {
            let part = header.under(prefix);
            let config_path = config.join(folder).join("config.json");
            let defaulted = match *name {
                "text_encoder" => ClipTextConfig::config_file(&config_path)?,
                "unet" => UnetConfig::config_file(&config_path)?,
                _ => VaeConfig::config_file(&config_path)?,
            }
            .defaulted()
            .to_vec();
            Ok(ComponentReport {
                name: name.to_string(),
                file: checkpoint.to_path_buf(),
                conversions: vec!["original single-file layout (renamed to diffusers' keys)"],
                defaulted,
                dtypes: part.dtypes,
                parameters: part.parameters,
            })
        })
        .collect()
}

/// A safetensors file's tensors (name, dtype, elements) and their totals; only the header is
/// parsed.
struct Header {
    dtypes: BTreeMap<String, usize>,
    parameters: usize,
    entries: Vec<(String, String, usize)>,
}

impl Header {
    fn read(path: &Path) -> Result<Self> {
        let map = crate::single_file::map_file(path)?;
        let (_, metadata) =
            safetensors::SafeTensors::read_metadata(&map).map_err(|e| ModelsError::Malformed {
                path: path.to_path_buf(),
                reason: format!("not a safetensors file: {e}"),
            })?;
        let entries = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let count = info.shape.iter().product::<usize>();
                (name, format!("{:?}", info.dtype), count)
            })
            .collect();
        Ok(Self::from_entries(entries))
    }

    fn from_entries(entries: Vec<(String, String, usize)>) -> Self {
        let mut dtypes = BTreeMap::new();
        for (_, dtype, _) in &entries {
            *dtypes.entry(dtype.clone()).or_insert(0) += 1;
        }
        Self {
            parameters: entries.iter().map(|e| e.2).sum(),
            dtypes,
            entries,
        }
    }

    fn under(&self, prefix: &str) -> Self {
        Self::from_entries(
            self.entries
                .iter()
                .filter(|e| e.0.starts_with(prefix))
                .cloned()
                .collect(),
        )
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.source, self.pipeline)?;
        writeln!(f, "  tokenizer: {} tokens", self.tokenizer_vocab)?;
        for c in &self.components {
            let dtypes: Vec<String> = c.dtypes.iter().map(|(d, n)| format!("{d} x{n}")).collect();
            writeln!(
                f,
                "  {}: {} ({} parameters; {})",
                c.name,
                c.file.display(),
                c.parameters,
                dtypes.join(", ")
            )?;
            for what in &c.conversions {
                writeln!(f, "    layout: {what}")?;
            }
            if !c.defaulted.is_empty() {
                writeln!(f, "    config defaults used: {}", c.defaulted.join(", "))?;
            }
        }
        for (name, s) in &self.schedulers {
            writeln!(
                f,
                "  {name}: {} ({}, {} .. {}, {}, {} spacing, offset {}); keys: {}",
                s.class_name,
                s.beta_schedule,
                s.beta_start,
                s.beta_end,
                s.prediction_type,
                s.timestep_spacing,
                s.steps_offset,
                s.keys.join(", ")
            )?;
        }
        for entry in &self.ignored {
            writeln!(f, "  ignored: {entry}")?;
        }
        for fit in &self.fits {
            writeln!(f, "  fits: {fit}")?;
        }
        Ok(())
    }
}
