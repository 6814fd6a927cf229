//! CLIP's text transformer (transformers' `CLIPTextModel`), the text encoder of SD 1.x (ViT-L/14,
//! `quick_gelu`) and SD 2.x (OpenCLIP ViT-H/14 exported with 23 layers, `gelu`), and with its
//! projection (`CLIPTextModelWithProjection`: SDXL's second encoder, OpenCLIP bigG). Field names
//! follow the checkpoint keys (`encoder.layers.N.self_attn.q_proj`, ..., with or without the
//! `text_model.` prefix of transformers 4 exports) so that published files load as they are.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, FloatDType, Int, Tensor};

use crate::config::ConfigFile;
use crate::error::{ModelsError, Result};
use crate::layout;
use crate::native::{self, Precision};
use crate::weights::{WeightSource, load_safetensors, weights_file};

/// The activation of the feed-forward layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipActivation {
    /// `x * sigmoid(1.702 x)`: OpenAI CLIP (SD 1.x).
    QuickGelu,
    /// Exact (erf) GELU: OpenCLIP (SD 2.x).
    Gelu,
}

/// The architecture of a CLIP text encoder (the keys of its `config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the feed-forward layers.
    pub intermediate_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Context length (77).
    pub max_position_embeddings: usize,
    /// Feed-forward activation.
    pub hidden_act: ClipActivation,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// The end-of-text id, whose first position gives the pooled output.
    pub eos_token_id: u32,
    /// The width of `text_projection` for a `CLIPTextModelWithProjection` (its `architectures`
    /// entry; `projection_dim`), `None` for a plain `CLIPTextModel`.
    pub projection_dim: Option<usize>,
}

impl ClipTextConfig {
    /// Reads a transformers `config.json`: a `CLIPTextConfig`, or a whole `CLIPConfig` whose
    /// `text_config` it takes as transformers does; keys the file lacks take
    /// `CLIPTextConfig`'s defaults.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let file = Self::config_file(path.as_ref())?;
        let config = Self {
            vocab_size: file.usize("vocab_size")?,
            hidden_size: file.usize("hidden_size")?,
            intermediate_size: file.usize("intermediate_size")?,
            num_hidden_layers: file.usize("num_hidden_layers")?,
            num_attention_heads: file.usize("num_attention_heads")?,
            max_position_embeddings: file.usize("max_position_embeddings")?,
            hidden_act: match file.one_of("hidden_act", &["quick_gelu", "gelu"])? {
                "quick_gelu" => ClipActivation::QuickGelu,
                _ => ClipActivation::Gelu,
            },
            layer_norm_eps: file.f64_or("layer_norm_eps", 1e-5)?,
            eos_token_id: file.usize("eos_token_id")? as u32,
            projection_dim: match with_projection(&file) {
                true => Some(file.usize("projection_dim")?),
                false => None,
            },
        };
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            return Err(file.unsupported("num_attention_heads", "a divisor of hidden_size"));
        }
        Ok(config)
    }

    /// `config.json` (its `text_config` for a `CLIPConfig`) with transformers'
    /// `CLIPTextConfig` defaults for the keys it lacks.
    pub(crate) fn config_file(path: &Path) -> Result<ConfigFile> {
        let file = ConfigFile::open(path)?;
        let file = match file.get("model_type").and_then(|v| v.as_str()) {
            Some("clip") => file
                .section("text_config")
                .ok_or_else(|| file.unsupported("text_config", "the text model's config"))?,
            _ => file,
        };
        let defaults = serde_json::json!({
            "vocab_size": 49408,
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "eos_token_id": 49407,
            "projection_dim": 512,
        });
        Ok(file.with_defaults(&defaults))
    }
}

/// Whether the config's `architectures` name the model with the projection.
fn with_projection(file: &ConfigFile) -> bool {
    let names = file.get("architectures").and_then(|v| v.as_array());
    names.is_some_and(|names| {
        names
            .iter()
            .any(|n| n.as_str() == Some("CLIPTextModelWithProjection"))
    })
}

/// The outputs of [`ClipTextModel::forward`].
#[derive(Clone, Debug)]
pub struct ClipTextOutput {
    /// The last layer's output after the final layer norm, `[batch, 77, hidden]`: what SD
    /// 1.x and the diffusers export of SD 2.x condition the UNet on.
    pub last_hidden_state: Tensor<3>,
    /// The second-to-last layer's output, without the final layer norm (transformers'
    /// `hidden_states[-2]`, "clip skip").
    pub penultimate_hidden_state: Tensor<3>,
    /// `last_hidden_state` at each sequence's first end-of-text token, `[batch, hidden]`.
    pub pooled: Tensor<2>,
    /// `pooled` through `text_projection`, `[batch, projection_dim]`, for a model with one
    /// (`CLIPTextModelWithProjection`'s `text_embeds`: SDXL's pooled prompt embedding).
    pub text_embeds: Option<Tensor<2>>,
}

/// CLIP's text encoder, `CLIPTextModel`.
#[derive(Module, Debug)]
pub struct ClipTextModel {
    embeddings: TextEmbeddings,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    /// `CLIPTextModelWithProjection`'s bias-free projection of the pooled output.
    text_projection: Option<Linear>,
    eos_token_id: u32,
    /// What the hidden states are computed in (see [`crate::Unet2DConditionModel::compute_dtype`]).
    #[module(skip)]
    compute_dtype: FloatDType,
}

#[derive(Module, Debug)]
struct TextEmbeddings {
    token_embedding: Embedding,
    position_embedding: Embedding,
}

#[derive(Module, Debug)]
struct Encoder {
    layers: Vec<EncoderLayer>,
}

#[derive(Module, Debug)]
struct EncoderLayer {
    self_attn: SelfAttention,
    layer_norm1: LayerNorm,
    mlp: Mlp,
    layer_norm2: LayerNorm,
}

#[derive(Module, Debug)]
struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    quick_gelu: bool,
}

impl ClipTextModel {
    /// A model with the given architecture and untrained weights.
    pub fn new(config: &ClipTextConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let layers = (0..config.num_hidden_layers)
            .map(|_| EncoderLayer {
                self_attn: SelfAttention {
                    q_proj: linear(d, d),
                    k_proj: linear(d, d),
                    v_proj: linear(d, d),
                    out_proj: linear(d, d),
                    heads: config.num_attention_heads,
                },
                layer_norm1: norm(),
                mlp: Mlp {
                    fc1: linear(d, config.intermediate_size),
                    fc2: linear(config.intermediate_size, d),
                    quick_gelu: config.hidden_act == ClipActivation::QuickGelu,
                },
                layer_norm2: norm(),
            })
            .collect();
        Self {
            embeddings: TextEmbeddings {
                token_embedding: EmbeddingConfig::new(config.vocab_size, d).init(device),
                position_embedding: EmbeddingConfig::new(config.max_position_embeddings, d)
                    .init(device),
            },
            encoder: Encoder { layers },
            final_layer_norm: norm(),
            text_projection: config
                .projection_dim
                .map(|p| LinearConfig::new(d, p).with_bias(false).init(device)),
            eos_token_id: config.eos_token_id,
            compute_dtype: FloatDType::F32,
        }
    }

    /// Loads a transformers / diffusers `text_encoder/` folder: `config.json` and
    /// `model.safetensors` (or `model.{variant}.safetensors`, e.g. `fp16`), any float type.
    pub fn load(dir: impl AsRef<Path>, variant: Option<&str>, device: &Device) -> Result<Self> {
        Self::load_with_weight_dtype(dir, variant, FloatDType::F32, device)
    }

    /// [`load`](Self::load) then [`with_weight_dtype`](Self::with_weight_dtype)`(dtype)`,
    /// without the f32 weights ever held: each tensor is converted to `dtype` as it is read, so
    /// loading peaks at the stored model (half the f32 size for f16 / bf16).
    pub fn load_with_weight_dtype(
        dir: impl AsRef<Path>,
        variant: Option<&str>,
        dtype: FloatDType,
        device: &Device,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let config = ClipTextConfig::from_file(dir.join("config.json"))?;
        let weights = weights_file(dir, &["model"], variant)?;
        Self::from_weights(&config, weights, dtype, device).map(|m| m.stored_as(dtype))
    }

    /// Builds the model for `config` and loads transformers-layout weights into it.
    pub(crate) fn from_weights(
        config: &ClipTextConfig,
        weights: WeightSource,
        stored: FloatDType,
        device: &Device,
    ) -> Result<Self> {
        let remaps = layout::remaps(&layout::CLIP);
        // A model with the projection loads it.
        let ignored: Vec<_> = layout::ignored(&layout::CLIP)
            .into_iter()
            .filter(|&p| config.projection_dim.is_none() || p != layout::TEXT_PROJECTION)
            .collect();
        load_safetensors(
            Self::new(config, device),
            weights,
            &remaps,
            &ignored,
            stored,
        )
    }

    /// This model with its weights and activations in `dtype` (see
    /// [`Unet2DConditionModel::with_dtype`](crate::Unet2DConditionModel::with_dtype)); the
    /// hidden states come out in f32.
    pub fn with_dtype(self, dtype: FloatDType) -> Self {
        self.with_precision(dtype, dtype)
    }

    /// This model with its weights stored in `dtype` and computing in f32 (see
    /// [`Unet2DConditionModel::with_weight_dtype`](crate::Unet2DConditionModel::with_weight_dtype)),
    /// its weights widened as each layer runs also for bf16: the text encoder's layers are
    /// burn's own, which multiply in f32 (it runs once per prompt).
    pub fn with_weight_dtype(self, dtype: FloatDType) -> Self {
        self.with_precision(dtype, FloatDType::F32)
    }

    /// The dtype of the weights (f32 unless [`with_dtype`](Self::with_dtype) or
    /// [`with_weight_dtype`](Self::with_weight_dtype) changed it).
    pub fn dtype(&self) -> FloatDType {
        self.final_layer_norm.gamma.val().dtype().into()
    }

    /// The dtype the hidden states are computed in (f32 unless
    /// [`with_dtype`](Self::with_dtype) changed it).
    pub fn compute_dtype(&self) -> FloatDType {
        self.compute_dtype
    }

    /// This model with `vectors` `[n, hidden]` as the embeddings of ids `first..first + n`
    /// (the table grown with zero rows where it is shorter), in the table's dtype: new tokens,
    /// as transformers' `resize_token_embeddings` then the assignment of the rows.
    pub(crate) fn with_token_vectors(mut self, first: usize, vectors: Tensor<2>) -> Self {
        let table = self.embeddings.token_embedding.weight.val();
        let ([rows, dim], n) = (table.dims(), vectors.dims()[0]);
        let dtype: FloatDType = table.dtype().into();
        let needed = rows.max(first + n);
        let table = match needed > rows {
            true => {
                let zeros = Tensor::<2>::zeros([needed - rows, dim], &table.device()).cast(dtype);
                Tensor::cat(vec![table, zeros], 0)
            }
            false => table,
        };
        let table = table.slice_assign([first..first + n, 0..dim], vectors.cast(dtype));
        self.embeddings.token_embedding.weight = burn::module::Param::from_tensor(table);
        self
    }

    /// The number of token ids it embeds.
    pub fn vocab_size(&self) -> usize {
        self.embeddings.token_embedding.weight.dims()[0]
    }

    /// The width of the hidden states (what the UNet's cross-attention takes).
    pub fn hidden_size(&self) -> usize {
        self.final_layer_norm.gamma.dims()[0]
    }

    /// The width of the pooled projection (`CLIPTextModelWithProjection`'s `projection_dim`), if
    /// the model has one.
    pub fn projection_dim(&self) -> Option<usize> {
        // burn's Linear weight is [in, out].
        self.text_projection.as_ref().map(|p| p.weight.dims()[1])
    }

    /// Encodes token ids `[batch, seq]` (seq at most the context length).
    pub fn forward(&self, ids: Tensor<2, Int>) -> Result<ClipTextOutput> {
        let [batch, seq] = ids.dims();
        let t = self;
        let max = t.embeddings.position_embedding.weight.dims()[0];
        if seq == 0 || seq > max {
            return Err(ModelsError::Core(hd_painter_core::CoreError::TensorShape {
                what: "CLIP token ids".into(),
                expected: format!("[batch, 1..={max}]"),
                found: vec![batch, seq],
            }));
        }
        let device = ids.device();
        let host_ids: Vec<i64> = ids
            .clone()
            .into_data()
            .try_into_vec_as::<i64>()
            .map_err(|e| hd_painter_core::CoreError::TensorData {
                what: "CLIP token ids".into(),
                reason: format!("{e:?}"),
            })?;
        let vocab = self.vocab_size() as i64;
        if let Some(&bad) = host_ids.iter().find(|&&id| id < 0 || id >= vocab) {
            return Err(ModelsError::Core(
                hd_painter_core::CoreError::InvalidParameter {
                    name: "CLIP token id",
                    value: bad.to_string(),
                    expected: "an id below the text encoder's vocabulary size",
                },
            ));
        }
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device).reshape([1, seq]);
        // The looked-up rows are cast rather than the tables (the same values, without
        // converting the whole vocabulary at every call).
        let dtype = self.compute_dtype;
        let mut x = native::cast(t.embeddings.token_embedding.forward(ids), dtype)
            + native::cast(t.embeddings.position_embedding.forward(positions), dtype);
        let mut penultimate = x.clone();
        for layer in &t.encoder.layers {
            penultimate = x.clone();
            x = native::params_in(layer, dtype.into()).forward(x);
        }
        let f32 = |x: Tensor<3>| x.cast(FloatDType::F32);
        let last = f32(native::params_in(&t.final_layer_norm, dtype.into()).forward(x));
        let penultimate = f32(penultimate);
        // transformers pools at the first end-of-text token of each sequence, or, for configs
        // that still say `eos_token_id = 2` (SD 1.x), at the first largest id.
        let pooled = (0..batch)
            .map(|b| {
                let row = &host_ids[b * seq..(b + 1) * seq];
                let at = if self.eos_token_id == LEGACY_EOS_ID {
                    first_max_position(row)
                } else {
                    row.iter()
                        .position(|&id| id == i64::from(self.eos_token_id))
                        .unwrap_or(0)
                };
                last.clone()
                    .slice([b..b + 1, at..at + 1])
                    .reshape([1, last.dims()[2]])
            })
            .collect();
        let pooled = Tensor::cat(pooled, 0);
        let text_embeds = self.text_projection.as_ref().map(|projection| {
            let projection = native::params_in(projection, dtype.into());
            let embeds = projection.forward(pooled.clone().cast(dtype));
            embeds.cast(FloatDType::F32)
        });
        Ok(ClipTextOutput {
            pooled,
            last_hidden_state: last,
            penultimate_hidden_state: penultimate,
            text_embeds,
        })
    }
}

/// The `eos_token_id` of configs written before transformers fixed it (SD 1.x's).
const LEGACY_EOS_ID: u32 = 2;

/// The position of the first largest id (`torch.argmax` semantics).
fn first_max_position(row: &[i64]) -> usize {
    let max = row.iter().copied().max().unwrap_or(0);
    row.iter().position(|&id| id == max).unwrap_or(0)
}

impl EncoderLayer {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

impl SelfAttention {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let heads = |t: Tensor<3>| {
            t.reshape([b, l, self.heads, d / self.heads])
                .swap_dims(1, 2)
        };
        let q = heads(self.q_proj.forward(x.clone()));
        let k = heads(self.k_proj.forward(x.clone()));
        let v = heads(self.v_proj.forward(x));
        let options = AttentionModuleOptions {
            is_causal: true,
            ..Default::default()
        };
        let o = attention(q, k, v, None, None, options);
        self.out_proj.forward(o.swap_dims(1, 2).reshape([b, l, d]))
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.fc1.forward(x);
        let h = if self.quick_gelu {
            h.clone() * sigmoid(h * 1.702)
        } else {
            gelu(h)
        };
        self.fc2.forward(h)
    }
}

impl Precision for ClipTextModel {
    fn compute_dtype_mut(&mut self) -> &mut FloatDType {
        &mut self.compute_dtype
    }
}
