//! Reading a LoRA file: kohya-ss / Automatic1111 (`lora_unet_*`, `lora_te_*`, `lora_down`,
//! `lora_up`, `alpha`) or diffusers / PEFT (`unet.*.lora_A.weight`, `lora_B`, and the older
//! `lora.down` / `lora_linear_layer.down` names; `alpha` from the file's
//! `lora_adapter_metadata` as diffusers saves it, else 1 per rank).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use serde_json::Value;

use crate::error::{ModelsError, Result};
use crate::weights::{float_data, read_safetensors};

/// The model a LoRA layer changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraComponent {
    /// The UNet.
    Unet,
    /// The (first) text encoder.
    TextEncoder,
}

/// The layout of a LoRA file's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraFormat {
    /// kohya-ss `sd-scripts` / Automatic1111: `lora_unet_{module_with_underscores}.lora_down.weight`.
    Kohya,
    /// diffusers / PEFT: `unet.{module}.lora_A.weight` (or the older `.lora.down.weight`).
    Peft,
}

/// A factor of a LoRA layer: `[rank, in(, kh, kw)]` down, `[out, rank(, 1, 1)]` up, as f32.
#[derive(Clone, Debug)]
pub(crate) struct Factor {
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<f32>,
}

/// One LoRA layer as the file holds it.
#[derive(Clone, Debug)]
pub(crate) struct LoraLayer {
    pub(crate) component: LoraComponent,
    /// The module's name: underscored for kohya files, dotted for PEFT ones, without the
    /// component prefix.
    pub(crate) module: String,
    /// The file's key of the down factor, for errors.
    pub(crate) key: String,
    pub(crate) down: Factor,
    pub(crate) up: Factor,
    /// `alpha`; the delta is `up @ down * alpha / rank`.
    pub(crate) alpha: f32,
}

impl LoraLayer {
    /// The layer's rank (the down factor's rows).
    pub(crate) fn rank(&self) -> usize {
        self.down.shape[0]
    }
}

/// A LoRA file, read and checked: [`StableDiffusionModels::fuse_lora`](crate::StableDiffusionModels::fuse_lora)
/// merges it into the weights.
#[derive(Clone, Debug)]
pub struct Lora {
    pub(crate) path: PathBuf,
    pub(crate) format: LoraFormat,
    pub(crate) layers: Vec<LoraLayer>,
}

/// The suffixes of a layer's tensors in each layout: (down, up, alpha) after the module name.
const KOHYA: (&str, &str, &str) = (".lora_down.weight", ".lora_up.weight", ".alpha");
const PEFT: [(&str, &str); 3] = [
    (".lora_A.weight", ".lora_B.weight"),
    (".lora.down.weight", ".lora.up.weight"),
    (
        ".lora_linear_layer.down.weight",
        ".lora_linear_layer.up.weight",
    ),
];

impl Lora {
    /// Reads a `.safetensors` LoRA. Keys that belong to no LoRA layer (LyCORIS' LoHa / LoKr
    /// factors, DoRA scales, a second text encoder's `lora_te2_` of SDXL) are an error listing
    /// them, as are factors whose shapes do not pair up.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        read_safetensors(path, |tensors, map| Self::read(path, tensors, map))
    }

    fn read(path: &Path, tensors: &SafeTensors<'_>, map: &[u8]) -> Result<Self> {
        let malformed = |reason: String| ModelsError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let metadata = SafeTensors::read_metadata(map)
            .map_err(|e| malformed(e.to_string()))?
            .1
            .metadata()
            .clone()
            .and_then(|m| m.get("lora_adapter_metadata").cloned())
            .map(|json| serde_json::from_str::<Value>(&json))
            .transpose()
            .map_err(|e| malformed(format!("`lora_adapter_metadata`: {e}")))?;
        let keys: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
        let format = if keys.iter().all(|k| k.starts_with("lora_")) {
            LoraFormat::Kohya
        } else {
            LoraFormat::Peft
        };
        let reader = Reader { path, tensors };
        let mut used = HashSet::new();
        let mut layers = Vec::new();
        for key in &keys {
            let Some((module, component, (down, up))) = layer_of(format, key) else {
                continue;
            };
            let stem = &key[..key.len() - down.len()];
            let (up_key, alpha_key) = (format!("{stem}{up}"), format!("{stem}{}", KOHYA.2));
            let (down, up) = (reader.factor(key)?, reader.factor(&up_key)?);
            let rank = reader.check_pair((key, &down), (&up_key, &up))?;
            let alpha = match tensors.tensor(&alpha_key) {
                Ok(_) => reader.scalar(&alpha_key)?,
                Err(_) => peft_alpha(metadata.as_ref(), component, module, rank),
            };
            layers.push(LoraLayer {
                component,
                module: module.to_string(),
                key: key.clone(),
                down,
                up,
                alpha,
            });
            used.extend([key.clone(), up_key, alpha_key]);
        }
        let unused: Vec<String> = keys.into_iter().filter(|k| !used.contains(k)).collect();
        if !unused.is_empty() || layers.is_empty() {
            return Err(ModelsError::Weights {
                path: path.to_path_buf(),
                missing: match layers.is_empty() {
                    true => vec!["a LoRA layer (`*.lora_down.weight` or `*.lora_A.weight`)".into()],
                    false => Vec::new(),
                },
                unexpected: unused,
                mismatched: Vec::new(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            format,
            layers,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout of its keys.
    pub fn format(&self) -> LoraFormat {
        self.format
    }

    /// The number of layers it changes in each component.
    pub fn layers(&self) -> BTreeMap<LoraComponent, usize> {
        let mut counts = BTreeMap::new();
        for layer in &self.layers {
            *counts.entry(layer.component).or_insert(0) += 1;
        }
        counts
    }
}

/// The module name, component and (down, up) suffixes of a down factor's key; `None` for any
/// other key.
fn layer_of(
    format: LoraFormat,
    key: &str,
) -> Option<(&str, LoraComponent, (&'static str, &'static str))> {
    match format {
        LoraFormat::Kohya => {
            let stem = key.strip_suffix(KOHYA.0)?;
            let (module, component) = match stem.strip_prefix("lora_unet_") {
                Some(module) => (module, LoraComponent::Unet),
                None => (stem.strip_prefix("lora_te_")?, LoraComponent::TextEncoder),
            };
            Some((module, component, (KOHYA.0, KOHYA.1)))
        }
        LoraFormat::Peft => PEFT.iter().find_map(|&(down, up)| {
            let stem = key.strip_suffix(down)?;
            let (component, module) = match stem.split_once('.')? {
                ("unet", module) => (LoraComponent::Unet, module),
                ("text_encoder", module) => (LoraComponent::TextEncoder, module),
                _ => return None,
            };
            Some((module, component, (down, up)))
        }),
    }
}

/// PEFT's `alpha / rank` inputs from diffusers' `lora_adapter_metadata` (`unet.lora_alpha`,
/// `unet.alpha_pattern`, `unet.use_rslora`, ...); without metadata, alpha = rank (scale 1), as
/// diffusers builds the config then.
fn peft_alpha(
    metadata: Option<&Value>,
    component: LoraComponent,
    module: &str,
    rank: usize,
) -> f32 {
    let prefix = match component {
        LoraComponent::Unet => "unet",
        LoraComponent::TextEncoder => "text_encoder",
    };
    let get = |name: &str| metadata.and_then(|m| m.get(format!("{prefix}.{name}")));
    let pattern = get("alpha_pattern")
        .and_then(Value::as_object)
        .and_then(|patterns| {
            patterns
                .iter()
                .find(|(p, _)| module == p.as_str() || module.ends_with(&format!(".{p}")))
                .and_then(|(_, a)| a.as_f64())
        });
    let alpha = pattern
        .or_else(|| get("lora_alpha").and_then(Value::as_f64))
        .unwrap_or(rank as f64);
    // rsLoRA scales by alpha / sqrt(rank): expressed as the alpha that gives it over `rank`.
    match get("use_rslora").and_then(Value::as_bool) {
        Some(true) => (alpha * (rank as f64).sqrt()) as f32,
        _ => alpha as f32,
    }
}

/// Tensors of the file, read as f32 with errors naming the key.
struct Reader<'a> {
    path: &'a Path,
    tensors: &'a SafeTensors<'a>,
}

impl Reader<'_> {
    fn malformed(&self, reason: String) -> ModelsError {
        ModelsError::Malformed {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    fn factor(&self, key: &str) -> Result<Factor> {
        let view = self.tensors.tensor(key).map_err(|_| {
            self.malformed(format!(
                "`{key}` is missing (its layer's other factor is there)"
            ))
        })?;
        let data = float_data(&view).ok_or_else(|| {
            self.malformed(format!(
                "`{key}`: expected f32, f16 or bf16, found {:?}",
                view.dtype()
            ))
        })?;
        Ok(Factor {
            shape: view.shape().to_vec(),
            data,
        })
    }

    fn scalar(&self, key: &str) -> Result<f32> {
        let factor = self.factor(key)?;
        match factor.data.as_slice() {
            [alpha] => Ok(*alpha),
            _ => Err(self.malformed(format!(
                "`{key}`: expected one value, found shape {:?}",
                factor.shape
            ))),
        }
    }

    /// The rank shared by the two factors: down `[r, in, ...]` and up `[out, r, 1, 1]` or
    /// `[out, r]`.
    fn check_pair(&self, down: (&str, &Factor), up: (&str, &Factor)) -> Result<usize> {
        let ((down_key, down), (up_key, up)) = ((down.0, &down.1.shape), (up.0, &up.1.shape));
        let rank = down.first().copied().unwrap_or(0);
        let up_fits = match up.as_slice() {
            [_, r] | [_, r, 1, 1] => *r == rank,
            _ => false,
        };
        if ![2, 4].contains(&down.len()) || rank == 0 || !up_fits {
            return Err(self.malformed(format!(
                "`{down_key}` {down:?} and `{up_key}` {up:?}: expected [rank, in(, kh, kw)] and \
                 [out, rank(, 1, 1)]"
            )));
        }
        Ok(rank)
    }
}
