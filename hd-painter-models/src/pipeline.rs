//! A diffusers Stable Diffusion pipeline folder (`model_index.json` and one folder per
//! component), loaded as a whole.

use std::path::Path;

use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use serde_json::Value;

use crate::clip::{ClipTextConfig, ClipTextModel};
use crate::config::ConfigFile;
use crate::error::{ModelsError, Result};
use crate::prompt::{CHUNK_TOKENS, WeightedTokens};
use crate::scheduler_config::SchedulerConfig;
use crate::sdxl::{PromptEmbeds, SdxlFlags, SdxlText, token_ids};
use crate::single_file::{Checkpoint, TextLayout};
use crate::source::ModelSource;
use crate::tokenizer::ClipTokenizer;
use crate::unet::Unet2DConditionModel;
use crate::vae::AutoencoderKl;
use crate::weights::WeightSource;

/// The pipelines whose folders hold the components below.
const PIPELINES: [&str; 5] = [
    "StableDiffusionPipeline",
    "StableDiffusionInpaintPipeline",
    "StableDiffusionUpscalePipeline",
    "StableDiffusionXLPipeline",
    "StableDiffusionXLInpaintPipeline",
];

/// The pipelines of the list above that are SDXL's (two text encoders, added conditions).
const SDXL_PIPELINES: [&str; 2] = [
    "StableDiffusionXLPipeline",
    "StableDiffusionXLInpaintPipeline",
];

/// The model components of a Stable Diffusion pipeline folder.
#[derive(Clone, Debug)]
pub struct StableDiffusionModels {
    /// `model_index.json`'s `_class_name`, e.g. `StableDiffusionInpaintPipeline`.
    pub pipeline: String,
    /// `tokenizer/`.
    pub tokenizer: ClipTokenizer,
    /// `text_encoder/`.
    pub text_encoder: ClipTextModel,
    /// `unet/`.
    pub unet: Unet2DConditionModel,
    /// `vae/`.
    pub vae: AutoencoderKl,
    /// SDXL's second tokenizer and text encoder and its pipeline flags (SDXL folders only).
    pub sdxl: Option<SdxlText>,
    /// The scheduler components `model_index.json` names (`scheduler`, and the x4 upscaler's
    /// `low_res_scheduler`), each with its checked `scheduler_config.json`.
    pub schedulers: Vec<(String, SchedulerConfig)>,
    /// The entries of `model_index.json` hd-painter does not use (`safety_checker`,
    /// `feature_extractor`, `requires_safety_checker`, ...), as `name = value`.
    pub ignored: Vec<String>,
}

impl StableDiffusionModels {
    /// Loads every component of `dir`, from the `variant` weight files (e.g. `fp16`) where
    /// given, checking that `model_index.json` names the classes hd-painter implements and that
    /// the components fit together.
    pub fn load(dir: impl AsRef<Path>, variant: Option<&str>, device: &Device) -> Result<Self> {
        Self::load_with_weight_dtype(dir, variant, FloatDType::F32, device)
    }

    /// [`load`](Self::load) then [`with_weight_dtype`](Self::with_weight_dtype)`(dtype)`,
    /// each component's tensors converted to `dtype` as they are read, so that the f32 weights
    /// are never held (SDXL's UNet: 5.1 GB in bf16 rather than 10.3 GB). Fuse LoRAs into f32
    /// weights instead ([`load`](Self::load), fuse, then `with_weight_dtype`) to round once.
    pub fn load_with_weight_dtype(
        dir: impl AsRef<Path>,
        variant: Option<&str>,
        dtype: FloatDType,
        device: &Device,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let index = read_index(dir)?;
        let text_dir = dir.join("text_encoder");
        Self {
            tokenizer: ClipTokenizer::from_dir(dir.join("tokenizer"))?,
            text_encoder: ClipTextModel::load_with_weight_dtype(text_dir, variant, dtype, device)?,
            unet: Unet2DConditionModel::load_with_weight_dtype(
                dir.join("unet"),
                variant,
                dtype,
                device,
            )?,
            vae: AutoencoderKl::load_with_weight_dtype(dir.join("vae"), variant, dtype, device)?,
            sdxl: match index.sdxl {
                Some(flags) => Some(SdxlText::load(dir, (variant, dtype), flags, device)?),
                None => None,
            },
            pipeline: index.pipeline,
            schedulers: index.schedulers,
            ignored: index.ignored,
        }
        .checked(dir)
    }

    /// Loads an original-layout single-file checkpoint (`.safetensors` as published for SD 1.5,
    /// SD 2 inpainting and SDXL: `model.diffusion_model.*`, `first_stage_model.*`, and
    /// `cond_stage_model.*` or SDXL's `conditioner.embedders.{0,1}.*`), renaming its keys to the
    /// diffusers layout as diffusers' `from_single_file` does. `config` is a diffusers folder of
    /// the same family holding `model_index.json`, the tokenizer(s) and each component's
    /// `config.json` (no weights needed), as diffusers' `from_single_file(..., config=...)`
    /// takes offline. The UNet's input channels come from the checkpoint (4 or 9), so a
    /// text-to-image config serves an inpainting file and the reverse; an SDXL file needs an
    /// SDXL folder and the reverse.
    pub fn load_single_file(
        checkpoint: impl AsRef<Path>,
        config: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self> {
        let (file, config) = (checkpoint.as_ref(), config.as_ref());
        let index = read_index(config)?;
        let ckpt = Checkpoint::open(file)?;
        // A file without text encoders is reported by what it lacks first, the UNet.
        let layout = ckpt.text_layout();
        if let Ok(text_layout) = layout
            && (text_layout == TextLayout::Sdxl) != index.sdxl.is_some()
        {
            return Err(ModelsError::Incompatible {
                what: format!("{}", file.display()),
                reason: format!(
                    "its text encoders are {} but the config folder {} is an {} folder",
                    match text_layout {
                        TextLayout::Sdxl => "SDXL's two",
                        _ => "SD 1.x / 2.x's one",
                    },
                    config.display(),
                    index.pipeline
                ),
            });
        }
        // One component converted at a time: at most one re-serialised copy in memory.
        let unet = Unet2DConditionModel::from_checkpoint(&ckpt, &config.join("unet"), device)?;
        let vae = AutoencoderKl::from_checkpoint(&ckpt, &config.join("vae"), device)?;
        let text_layout = layout?;
        let first = |layers| ckpt.text_encoder(text_layout, layers);
        let text_encoder = text_from_checkpoint(config, "text_encoder", first, device)?;
        let sdxl = match index.sdxl {
            Some(flags) => {
                let second = |layers| ckpt.text_encoder_2(layers);
                let second = text_from_checkpoint(config, "text_encoder_2", second, device)?;
                Some(SdxlText::from_parts(config, second, flags)?)
            }
            None => None,
        };
        Self {
            tokenizer: ClipTokenizer::from_dir(config.join("tokenizer"))?,
            text_encoder,
            unet,
            vae,
            sdxl,
            pipeline: index.pipeline,
            schedulers: index.schedulers,
            ignored: index.ignored,
        }
        .checked(ckpt.path())
    }

    /// Loads the models from any [`ModelSource`] (`variant` applies to folders and the hub).
    pub fn from_source(
        source: &ModelSource,
        variant: Option<&str>,
        device: &Device,
    ) -> Result<Self> {
        Self::from_source_with_weight_dtype(source, variant, FloatDType::F32, device)
    }

    /// [`from_source`](Self::from_source) with the weights stored in `dtype`: folders and the
    /// hub convert as they read ([`load_with_weight_dtype`](Self::load_with_weight_dtype)); a
    /// single file is converted to the diffusers layout in f32 first.
    pub fn from_source_with_weight_dtype(
        source: &ModelSource,
        variant: Option<&str>,
        dtype: FloatDType,
        device: &Device,
    ) -> Result<Self> {
        match source {
            ModelSource::Folder(dir) => Self::load_with_weight_dtype(dir, variant, dtype, device),
            ModelSource::SingleFile { checkpoint, config } => {
                let models = Self::load_single_file(checkpoint, config, device)?;
                Ok(match dtype {
                    FloatDType::F32 => models,
                    half => models.with_weight_dtype(half),
                })
            }
            ModelSource::Hub(hub) => {
                Self::load_with_weight_dtype(hub.resolve(variant)?, variant, dtype, device)
            }
        }
    }

    /// Checks that the components fit together; `origin` names the source in errors.
    fn checked(self, origin: &Path) -> Result<Self> {
        let (vocab, embeddings) = (self.tokenizer.vocab_size(), self.text_encoder.vocab_size());
        if vocab > embeddings {
            return Err(ModelsError::Malformed {
                path: origin.to_path_buf(),
                reason: format!(
                    "the tokenizer has {vocab} tokens but the text encoder embeds only {embeddings}"
                ),
            });
        }
        if let Some(sdxl) = &self.sdxl {
            sdxl.check(&self.text_encoder, &self.unet, origin)?;
            return Ok(self);
        }
        if self.unet.text_time().is_some() {
            return Err(ModelsError::Malformed {
                path: origin.to_path_buf(),
                reason: format!(
                    "the UNet has SDXL's `text_time` added embedding but {} has one text encoder",
                    self.pipeline
                ),
            });
        }
        let (text, cross) = (
            self.text_encoder.hidden_size(),
            self.unet.cross_attention_dim(),
        );
        if text != cross {
            return Err(ModelsError::Malformed {
                path: origin.to_path_buf(),
                reason: format!(
                    "the text encoder's width {text} differs from the UNet's cross_attention_dim {cross}"
                ),
            });
        }
        Ok(self)
    }
}

/// What `model_index.json` says, checked: the pipeline class, the schedulers, and the entries
/// that are not used.
struct PipelineIndex {
    pipeline: String,
    sdxl: Option<SdxlFlags>,
    schedulers: Vec<(String, SchedulerConfig)>,
    ignored: Vec<String>,
}

/// The components hd-painter loads, with the classes it accepts for each.
const COMPONENTS: [(&str, &str, &[&str]); 4] = [
    (
        "tokenizer",
        "transformers",
        &["CLIPTokenizer", "CLIPTokenizerFast"],
    ),
    ("text_encoder", "transformers", &["CLIPTextModel"]),
    ("unet", "diffusers", &["UNet2DConditionModel"]),
    ("vae", "diffusers", &["AutoencoderKL"]),
];

/// SDXL's further components, with the classes it accepts for each.
const SDXL_COMPONENTS: [(&str, &str, &[&str]); 2] = [
    (
        "tokenizer_2",
        "transformers",
        &["CLIPTokenizer", "CLIPTokenizerFast"],
    ),
    (
        "text_encoder_2",
        "transformers",
        &["CLIPTextModelWithProjection"],
    ),
];

/// SDXL's flags in `model_index.json` ([`SdxlFlags`]).
const SDXL_FLAGS: [&str; 2] = ["force_zeros_for_empty_prompt", "requires_aesthetics_score"];

/// The scheduler components of the pipelines above.
const SCHEDULERS: [&str; 2] = ["scheduler", "low_res_scheduler"];

/// Whether `dir`'s `model_index.json` names an SDXL pipeline (read and checked as loading does).
pub(crate) fn is_sdxl_folder(dir: &Path) -> Result<bool> {
    Ok(read_index(dir)?.sdxl.is_some())
}

/// Reads `dir/model_index.json`: the pipeline class must be one hd-painter runs and each loaded
/// component of a class it implements; each scheduler's config is read and checked; anything
/// else (safety checker, feature extractor, watermarker, flags) is listed as ignored.
fn read_index(dir: &Path) -> Result<PipelineIndex> {
    let index = ConfigFile::open(&dir.join("model_index.json"))?;
    let pipeline = index.one_of("_class_name", &PIPELINES)?.to_string();
    let sdxl = SDXL_PIPELINES.contains(&pipeline.as_str());
    let extra: &[_] = if sdxl { &SDXL_COMPONENTS } else { &[] };
    for &(key, library, classes) in COMPONENTS.iter().chain(extra) {
        let class = component(&index, key).filter(|(l, _)| *l == library);
        if !class.is_some_and(|(_, c)| classes.contains(&c)) {
            let expected: Vec<String> = classes
                .iter()
                .map(|c| format!("[\"{library}\", \"{c}\"]"))
                .collect();
            return Err(index.unsupported(key, &expected.join(" or ")));
        }
    }
    let mut schedulers = Vec::new();
    let mut ignored = Vec::new();
    for key in index.keys() {
        let sdxl_key = SDXL_FLAGS.contains(&key.as_str()) || extra.iter().any(|c| c.0 == key);
        if key.starts_with('_') || COMPONENTS.iter().any(|c| c.0 == key) || (sdxl && sdxl_key) {
            continue;
        }
        let value = index.get(&key).map(Value::to_string).unwrap_or_default();
        match (SCHEDULERS.contains(&key.as_str()), component(&index, &key)) {
            (true, Some(("diffusers", class))) => {
                let path = dir.join(&key).join("scheduler_config.json");
                schedulers.push((key.clone(), SchedulerConfig::from_file(path, Some(class))?));
            }
            // A pipeline saved without that component, as diffusers loads it.
            (true, _) if value == "[null,null]" => ignored.push(format!("{key} = {value}")),
            (true, _) => {
                return Err(index.unsupported(&key, "a diffusers scheduler class"));
            }
            (false, _) => ignored.push(format!("{key} = {value}")),
        }
    }
    Ok(PipelineIndex {
        sdxl: match sdxl {
            true => Some(SdxlFlags::read(&index)?),
            false => None,
        },
        pipeline,
        schedulers,
        ignored,
    })
}

/// A `[library, class]` entry of `model_index.json`.
fn component<'a>(index: &'a ConfigFile, key: &str) -> Option<(&'a str, &'a str)> {
    match index.get(key)?.as_array()?.as_slice() {
        [library, class] => Some((library.as_str()?, class.as_str()?)),
        _ => None,
    }
}

impl StableDiffusionModels {
    /// These models with the weights and activations of the text encoder, UNet and VAE in
    /// `dtype`: f16 or bf16 halve their memory, inputs and outputs stay f32 (see
    /// [`Unet2DConditionModel::with_dtype`]). The loaded f32 weights are the reference path.
    pub fn with_dtype(self, dtype: FloatDType) -> Self {
        // diffusers' SDXL pipelines keep a `force_upcast` VAE in f32 beside f16 models.
        let upcast = self.sdxl.is_some() && self.vae.force_upcast() && dtype == FloatDType::F16;
        Self {
            text_encoder: self.text_encoder.with_dtype(dtype),
            unet: self.unet.with_dtype(dtype),
            vae: match upcast {
                true => self.vae,
                false => self.vae.with_dtype(dtype),
            },
            sdxl: self.sdxl.map(|s| s.with_dtype(dtype)),
            ..self
        }
    }

    /// These models with their weights stored in `dtype` and computing in f32 (see
    /// [`Unet2DConditionModel::with_weight_dtype`]): the half-precision path for the CPU.
    pub fn with_weight_dtype(self, dtype: FloatDType) -> Self {
        Self {
            text_encoder: self.text_encoder.with_weight_dtype(dtype),
            unet: self.unet.with_weight_dtype(dtype),
            vae: self.vae.with_weight_dtype(dtype),
            sdxl: self.sdxl.map(|s| s.with_weight_dtype(dtype)),
            ..self
        }
    }

    /// The UNet's context `[1, 77, dim]` for `prompt`, tokenized as the UNet expects (padded
    /// and truncated to the context length): the text encoder's last hidden state, or for SDXL
    /// both encoders' penultimate hidden states side by side ([`encode_text`](Self::encode_text)).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Tensor<3>> {
        Ok(self.encode_text(prompt)?.context)
    }

    /// `prompt`'s embeddings as diffusers' pipelines encode it: SD 1.x / 2.x, the text encoder's
    /// last hidden state; SDXL (`encode_prompt`), each encoder's penultimate hidden state, side
    /// by side, and the second encoder's pooled projection.
    pub fn encode_text(&self, prompt: &str) -> Result<PromptEmbeds> {
        let device = self.unet.device();
        let out = self
            .text_encoder
            .forward(token_ids(&self.tokenizer, prompt, &device))?;
        let Some(sdxl) = &self.sdxl else {
            return Ok(PromptEmbeds {
                context: out.last_hidden_state,
                pooled: None,
            });
        };
        let (second, pooled) = sdxl.encode(prompt, &device)?;
        Ok(PromptEmbeds {
            context: Tensor::cat(vec![out.penultimate_hidden_state, second], 2),
            pooled: Some(pooled),
        })
    }

    /// The negative half's embeddings for `negative`: as [`encode_text`](Self::encode_text),
    /// except that an SDXL folder with `force_zeros_for_empty_prompt` gives zeros for the empty
    /// negative prompt, as diffusers does when no negative prompt is passed.
    pub fn encode_negative(&self, negative: &str) -> Result<PromptEmbeds> {
        let zeros = self
            .sdxl
            .as_ref()
            .is_some_and(|s| s.flags.force_zeros_for_empty_prompt);
        let embeds = self.encode_text(negative)?;
        Ok(match zeros && negative.is_empty() {
            true => embeds.zeros_like(),
            false => embeds,
        })
    }
}

impl StableDiffusionModels {
    /// The text encoder's last hidden states for a prompt laid out in weighted chunks
    /// ([`WeightedTokens`]), `[1, 77 * chunks, dim]`: each chunk encoded on its own, its hidden
    /// states multiplied token by token by the weights, then scaled back to the chunk's
    /// unweighted mean (Automatic1111's default "Original" emphasis), the chunks concatenated.
    pub fn encode_weighted(&self, tokens: &WeightedTokens) -> Result<Tensor<3>> {
        if self.sdxl.is_some() {
            return Err(ModelsError::Incompatible {
                what: "weighted prompt encoding".into(),
                reason: format!(
                    "Automatic1111's weighted prompts are encoded for one text encoder; {} has \
                     SDXL's two: use the plain syntax",
                    self.pipeline
                ),
            });
        }
        let (chunks, length) = (tokens.chunks(), CHUNK_TOKENS + 2);
        let device = self.unet.device();
        let ids: Vec<i64> = tokens.ids.iter().map(|&id| i64::from(id)).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [chunks, length]), &device);
        let z = self.text_encoder.forward(ids)?.last_hidden_state;
        let dim = z.dims()[2];
        // The reference multiplies by its f64 weights made f32 tensors.
        let weights: Vec<f32> = tokens.weights.iter().map(|&w| w as f32).collect();
        let weights =
            Tensor::<3>::from_data(TensorData::new(weights, [chunks, length, 1]), &device);
        let mean = |z: &Tensor<3>| z.clone().mean_dim(2).mean_dim(1);
        let before = mean(&z);
        let weighted = z * weights;
        let after = mean(&weighted);
        Ok((weighted * (before / after)).reshape([1, chunks * length, dim]))
    }
}

/// A text encoder of a single-file checkpoint: `config/folder/config.json` and the tensors
/// `weights(num_hidden_layers)` converts.
fn text_from_checkpoint(
    config: &Path,
    folder: &str,
    weights: impl FnOnce(usize) -> Result<WeightSource>,
    device: &Device,
) -> Result<ClipTextModel> {
    let text_config = ClipTextConfig::from_file(config.join(folder).join("config.json"))?;
    let weights = weights(text_config.num_hidden_layers)?;
    ClipTextModel::from_weights(&text_config, weights, FloatDType::F32, device)
}
