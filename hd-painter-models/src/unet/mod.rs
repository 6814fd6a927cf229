//! diffusers' `UNet2DConditionModel` as Stable Diffusion uses it: SD 1.x / 2.x (4- and 9-channel
//! inpainting variants), the x4 upscaler (7 input channels, noise-level class embedding,
//! `only_cross_attention` blocks) and SDXL (several transformer blocks per level, the
//! `text_time` added embedding), built from its `config.json`. Every attention goes through an
//! [`AttentionProcessor`].

mod build;
mod conditions;
mod config;
mod levels;
mod residuals;
mod transformer;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, GroupNorm};
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};

use crate::error::{ModelsError, Result};
use crate::native::{self, Precision};
use crate::processor::AttentionProcessor;

pub use conditions::{Conditions, TextTime};
pub use config::{LevelConfig, TextTimeConfig, UnetConfig};
use levels::{Call, DownLevel, MidBlock, TimeEmbedding, UpLevel};
pub(crate) use residuals::Site;
pub use residuals::UnetResiduals;
use residuals::residual_error;

/// diffusers' `UNet2DConditionModel`.
#[derive(Module, Debug)]
pub struct Unet2DConditionModel {
    conv_in: Conv2d,
    time_embedding: TimeEmbedding,
    class_embedding: Option<Embedding>,
    /// SDXL's `add_embedding`, over the pooled text and the time ids' sinusoids.
    add_embedding: Option<TimeEmbedding>,
    down_blocks: Vec<DownLevel>,
    mid_block: MidBlock,
    up_blocks: Vec<UpLevel>,
    /// The output head; absent in BrushNet's branch, which hands out its features instead.
    conv_norm_out: Option<GroupNorm>,
    conv_out: Option<Conv2d>,
    in_channels: usize,
    cross_attention_dim: usize,
    block_out_channels: Vec<usize>,
    time_channels: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    /// The widths of SDXL's added embedding, where the model has one.
    #[module(skip)]
    text_time: Option<TextTimeConfig>,
    /// What the activations are computed in (the weights' dtype unless
    /// [`with_weight_dtype`](Self::with_weight_dtype) keeps them in f32).
    #[module(skip)]
    pub(crate) compute_dtype: FloatDType,
}

impl Unet2DConditionModel {
    /// The same model without its transformers (BrushNet's attention-free trunk).
    pub(crate) fn without_transformers(mut self) -> Self {
        self.mid_block.attentions.clear();
        for level in &mut self.down_blocks {
            level.attentions.clear();
        }
        for level in &mut self.up_blocks {
            level.attentions.clear();
        }
        self
    }

    /// The `conv_in` weight `[channels, in_channels, k, k]`.
    pub(crate) fn conv_in_weight(&self) -> Tensor<4> {
        self.conv_in.weight.val()
    }

    /// The same model with another `conv_in` weight, whose input channels become the model's.
    pub(crate) fn with_conv_in_weight(mut self, weight: Tensor<4>) -> Self {
        self.in_channels = weight.dims()[1];
        self.conv_in.weight = burn::module::Param::from_tensor(weight);
        self
    }

    /// The channels of the activations `walk` taps, in its order: down (the `conv_in` output,
    /// then every down resnet and downsampler), mid, up (every up resnet and upsampler).
    pub(crate) fn injection_channels(&self) -> (Vec<usize>, usize, Vec<usize>) {
        let ch = &self.block_out_channels;
        let mut down = vec![ch[0]];
        for (level, &c) in self.down_blocks.iter().zip(ch) {
            down.extend(vec![c; level.resnets.len() + level.downsamplers.len()]);
        }
        let mut up = vec![];
        for (level, &c) in self.up_blocks.iter().zip(ch.iter().rev()) {
            up.extend(vec![c; level.resnets.len() + level.upsamplers.len()]);
        }
        (down, ch[ch.len() - 1], up)
    }

    /// The same model without its output head (BrushNet's branch).
    pub(crate) fn without_head(mut self) -> Self {
        self.conv_norm_out = None;
        self.conv_out = None;
        self
    }

    /// The number of input channels (4, 7 or 9).
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.conv_in.weight.device()
    }

    /// This model with its weights and activations in `dtype` (f16 / bf16 halve the memory of
    /// both): inputs are cast to it on the way in and the noise prediction back to f32, so
    /// callers are unchanged. Fast where the device computes in half precision (GPUs); on the
    /// CPU [`with_weight_dtype`](Self::with_weight_dtype) is faster and more precise. The f32
    /// weights of a loaded model are the reference path.
    pub fn with_dtype(self, dtype: FloatDType) -> Self {
        self.with_precision(dtype, dtype)
    }

    /// This model with its weights stored in `dtype` (f16 / bf16 halve their memory) and the
    /// activations computed in f32. f16 weights are widened as each layer runs: the result is
    /// the f32 model's on the rounded weights. bf16 weights multiply in bf16, as PyTorch's bf16
    /// model does: both operands of every matrix product (linear layers, convolutions, the
    /// attention's two products) rounded to bf16 and the sums kept in f32, everything
    /// element-wise (norms, softmax, activations) in f32. On the CPU that product runs on AMX
    /// tiles or AVX512-BF16 where the CPU has them (picked at run time), elsewhere as the f32
    /// GEMM on rounded operands, with the same result up to the order of the f32 sums. This is
    /// the faster half-precision path on the CPU, where half-precision activations would run
    /// through slower generic code.
    pub fn with_weight_dtype(self, dtype: FloatDType) -> Self {
        self.with_precision(dtype, FloatDType::F32)
    }

    /// How this model's layers multiply (see `native::products_of`).
    pub(crate) fn products(&self) -> native::Products {
        native::products_of(self.dtype(), self.compute_dtype)
    }

    /// The dtype of the weights (f32 unless [`with_dtype`](Self::with_dtype) or
    /// [`with_weight_dtype`](Self::with_weight_dtype) changed it).
    pub fn dtype(&self) -> FloatDType {
        self.conv_in.weight.val().dtype().into()
    }

    /// The dtype the activations are computed in (f32 unless [`with_dtype`](Self::with_dtype)
    /// changed it).
    pub fn compute_dtype(&self) -> FloatDType {
        self.compute_dtype
    }

    /// How many times the latent is halved on the way down (`2^(levels - 1)`): latent sides that
    /// are multiples of it need no resizing to the skip connections.
    pub fn downscale(&self) -> usize {
        1 << (self.down_blocks.len() - 1)
    }

    /// Whether each level's down block has transformers (SD's first three levels, SDXL's last
    /// two).
    pub(crate) fn attention_levels(&self) -> Vec<bool> {
        self.down_blocks
            .iter()
            .map(|level| !level.attentions.is_empty())
            .collect()
    }

    /// The channels of each level, from the latent resolution down (the config's
    /// `block_out_channels`): what sizes its activations.
    pub fn block_out_channels(&self) -> &[usize] {
        &self.block_out_channels
    }

    /// The width of the text embedding it attends to.
    pub fn cross_attention_dim(&self) -> usize {
        self.cross_attention_dim
    }

    /// SDXL's added embedding (`addition_embed_type: "text_time"`), if the model has one.
    pub fn text_time(&self) -> Option<TextTimeConfig> {
        self.text_time
    }

    /// Predicts the noise (or `v`) for `sample` `[batch, in_channels, h, w]` at `timesteps`
    /// (one per batch item), conditioned on `context` `[batch, tokens, cross_attention_dim]`
    /// and the `conditions` the model's embeddings need (the x4 upscaler's class labels, SDXL's
    /// pooled text and time ids; none for SD 1.x / 2.x).
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
        conditions: Conditions<'_>,
        processor: &mut dyn AttentionProcessor,
    ) -> Result<Tensor<4>> {
        let x = self.walk(
            sample,
            timesteps,
            context,
            conditions,
            processor,
            &mut |_, x| Ok(x),
        )?;
        self.head(x)
    }

    /// [`forward`](Self::forward) with BrushNet's residuals added inside (its
    /// `down_block_add_samples`, `mid_block_add_sample`, `up_block_add_samples`): the first down
    /// residual to the `conv_in` output that continues down (its skip connection keeps the
    /// output as is), the next ones after every down resnet (with its transformer) and
    /// downsampler, before they become skips; the mid residual after the mid block; the up ones
    /// after every up resnet (with its transformer) and upsampler. Their batch must be the
    /// sample's; a residual of the wrong count or shape is a typed error.
    pub fn forward_with_residuals(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
        conditions: Conditions<'_>,
        processor: &mut dyn AttentionProcessor,
        residuals: &UnetResiduals,
    ) -> Result<Tensor<4>> {
        let mut next = [0usize; 3];
        let mut add = |site: Site, x: Tensor<4>| -> Result<Tensor<4>> {
            let (list, kind): (&[Tensor<4>], usize) = match site {
                Site::Down => (&residuals.down, 0),
                Site::Mid => (std::slice::from_ref(&residuals.mid), 1),
                Site::Up => (&residuals.up, 2),
            };
            let i = next[kind];
            next[kind] += 1;
            let what = || format!("{site:?} residual {i}");
            let r = list
                .get(i)
                .ok_or_else(|| residual_error(what(), x.dims(), None))?;
            if r.dims() != x.dims() {
                return Err(residual_error(what(), x.dims(), Some(r.dims())));
            }
            let dtype = x.dtype();
            Ok(x + r.clone().cast(dtype))
        };
        let x = self.walk(sample, timesteps, context, conditions, processor, &mut add)?;
        let expected = [residuals.down.len(), 1, residuals.up.len()];
        if next != expected {
            return Err(ModelsError::Incompatible {
                what: "BrushNet residuals".into(),
                reason: format!(
                    "{expected:?} (down, mid, up) residuals for a UNet with {next:?} injection points"
                ),
            });
        }
        self.head(x)
    }

    /// The output head: group norm, SiLU, `conv_out`; the prediction in f32.
    fn head(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        match (&self.conv_norm_out, &self.conv_out) {
            (Some(norm), Some(conv)) => Ok(native::with_products(self.products(), || {
                native::conv(conv, native::group_norm_silu(norm, x)).cast(FloatDType::F32)
            })),
            _ => Err(ModelsError::Incompatible {
                what: "UNet output".into(),
                reason: "a branch without output head has no noise prediction".into(),
            }),
        }
    }

    /// Everything up to the output head, handing the activation at each of BrushNet's
    /// injection points to `tap`, which returns what continues (the activation itself, or with
    /// a residual added). The `conv_in` output's skip connection is taken before its tap.
    pub(crate) fn walk(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
        conditions: Conditions<'_>,
        processor: &mut dyn AttentionProcessor,
        tap: &mut dyn FnMut(Site, Tensor<4>) -> Result<Tensor<4>>,
    ) -> Result<Tensor<4>> {
        self.check_inputs(&sample, timesteps, context)?;
        // Everything runs in the compute dtype (a no-op for the f32 model); layers whose
        // weights are stored in another dtype cast them as they run.
        let dtype = self.compute_dtype;
        let sample = sample.cast(dtype);
        let context = &context.clone().cast(dtype);
        let emb = &self.embedding(timesteps, conditions, &sample.device())?;
        let call = Call {
            emb,
            context,
            timesteps,
            processor,
            tap,
        };
        native::with_products(self.products(), || self.levels(sample, call))
    }

    /// The walk's levels (see [`walk`](Self::walk)).
    fn levels(&self, sample: Tensor<4>, mut call: Call<'_>) -> Result<Tensor<4>> {
        let x = native::conv(&self.conv_in, sample);
        let mut skips = vec![x.clone()];
        let mut x = (call.tap)(Site::Down, x)?;
        for (i, level) in self.down_blocks.iter().enumerate() {
            x = level.forward(x, &mut call, &mut skips)?;
            x = call.stop_gradient_if(&format!("down_blocks.{i}"), x, &mut skips);
        }
        x = self.mid_block.forward(x, &mut call)?;
        x = call.stop_gradient_if("mid_block", x, &mut skips);
        for (i, level) in self.up_blocks.iter().enumerate() {
            x = level.forward(x, &mut call, &mut skips)?;
            x = call.stop_gradient_if(&format!("up_blocks.{i}"), x, &mut skips);
        }
        Ok(x)
    }

    /// Refuses a sample, timesteps or text context that do not fit this UNet.
    fn check_inputs(
        &self,
        sample: &Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
    ) -> Result<()> {
        let [b, c, h, w] = sample.dims();
        if c != self.in_channels || h == 0 || w == 0 {
            let expected = format!("[batch, {}, h, w]", self.in_channels);
            return Err(shape_error("UNet sample", expected, vec![b, c, h, w]));
        }
        if timesteps.len() != b {
            let expected = format!("{b} timesteps");
            return Err(shape_error(
                "UNet timesteps",
                expected,
                vec![timesteps.len()],
            ));
        }
        if context.dims()[0] != b || context.dims()[2] != self.cross_attention_dim {
            let expected = format!("[{b}, tokens, {}]", self.cross_attention_dim);
            return Err(shape_error(
                "UNet text context",
                expected,
                context.dims().to_vec(),
            ));
        }
        Ok(())
    }

    /// The time embedding of `timesteps`, plus the class embedding of the class labels for a
    /// UNet with one (the x4 upscaler's noise level) and SDXL's added embedding, in the compute
    /// dtype.
    fn embedding(
        &self,
        timesteps: &[f32],
        conditions: Conditions<'_>,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let emb = self.time_embedding.forward(
            self.timestep_features(timesteps, device),
            self.compute_dtype,
        );
        let emb = self.plus_class(emb, conditions.class_labels, device)?;
        self.plus_text_time(emb, conditions.text_time, device)
    }

    /// `emb` plus the class embedding of `labels` (one per image), for a UNet with one.
    fn plus_class(
        &self,
        emb: Tensor<2>,
        labels: Option<&[i64]>,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let b = emb.dims()[0];
        match (&self.class_embedding, labels) {
            (Some(embedding), Some(labels)) if labels.len() == b => {
                let labels =
                    Tensor::<2, Int>::from_data(TensorData::new(labels.to_vec(), [b, 1]), device);
                let dtype = self.compute_dtype.into();
                let class = native::params_in(embedding, dtype).forward(labels);
                Ok(emb + class.reshape([b, self.time_channels * 4]))
            }
            (Some(_), labels) => Err(shape_error(
                "UNet class labels",
                format!("{b} labels"),
                vec![labels.map_or(0, <[i64]>::len)],
            )),
            (None, _) => Ok(emb),
        }
    }

    /// `emb` plus SDXL's added embedding of `text_time`, which a UNet with one needs and the
    /// others refuse.
    fn plus_text_time(
        &self,
        emb: Tensor<2>,
        text_time: Option<TextTime<'_>>,
        device: &Device,
    ) -> Result<Tensor<2>> {
        let reason = match (self.add_embedding.as_ref().zip(self.text_time), text_time) {
            (Some((add, config)), Some(text_time)) => {
                let features = text_time.features(self, config, emb.dims()[0], device)?;
                return Ok(emb + add.forward(features, self.compute_dtype));
            }
            (None, None) => return Ok(emb),
            (None, Some(_)) => "it has no `text_time` added embedding for SDXL's conditions",
            (Some(_), None) => {
                "an SDXL UNet (`addition_embed_type: \"text_time\"`) needs text_embeds and time_ids"
            }
        };
        Err(ModelsError::Incompatible {
            what: "UNet conditions".into(),
            reason: reason.into(),
        })
    }

    /// The sinusoidal features of `timesteps`.
    fn timestep_features(&self, timesteps: &[f32], device: &Device) -> Tensor<2> {
        let (channels, flip) = (self.time_channels, self.flip_sin_to_cos);
        crate::blocks::sinusoidal_features(timesteps, channels, flip, self.freq_shift, device)
    }
}

impl Precision for Unet2DConditionModel {
    fn compute_dtype_mut(&mut self) -> &mut FloatDType {
        &mut self.compute_dtype
    }
}

fn shape_error(what: &str, expected: String, found: Vec<usize>) -> ModelsError {
    ModelsError::Core(hd_painter_core::CoreError::TensorShape {
        what: what.into(),
        expected,
        found,
    })
}
