//! The check's models: each pipeline's architecture from its config folder with seeded weights,
//! built once on flex and copied to every device, so that every backend and dtype runs the same
//! weights and needs no weight file.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, FloatDType};
use hd_painter::StableDiffusionModels;
use hd_painter::hd_painter_models::{
    AutoencoderKl, ClipTextConfig, ClipTextModel, ClipTokenizer, Unet2DConditionModel, UnetConfig,
    VaeConfig,
};

/// One pipeline's models on flex in f32: the reference every device's copy is compared with.
pub struct Seeded {
    pipeline: &'static str,
    tokenizer: PathBuf,
    pub text_encoder: ClipTextModel,
    pub unet: Unet2DConditionModel,
    pub vae: AutoencoderKl,
}

impl Seeded {
    /// The models of `dir`'s `unet/`, `vae/` and `text_encoder/` configs with weights drawn
    /// from flex's generator seeded with `seed`; the tokenizer of `dir/tokenizer`, or of
    /// `fallback_tokenizer` where `dir` has none (the full-size configs use the real CLIP
    /// vocabulary of the fixtures).
    pub fn build(
        dir: &Path,
        pipeline: &'static str,
        fallback_tokenizer: &Path,
        seed: u64,
    ) -> hd_painter::Result<Self> {
        let flex = Device::flex();
        flex.seed(seed);
        let unet = UnetConfig::from_file(dir.join("unet/config.json"))?;
        let vae = VaeConfig::from_file(dir.join("vae/config.json"))?;
        let text = ClipTextConfig::from_file(dir.join("text_encoder/config.json"))?;
        let own = dir.join("tokenizer");
        Ok(Self {
            pipeline,
            tokenizer: if own.is_dir() {
                own
            } else {
                fallback_tokenizer.to_path_buf()
            },
            text_encoder: ClipTextModel::new(&text, &flex),
            unet: Unet2DConditionModel::new(&unet, &flex),
            vae: AutoencoderKl::new(&vae, &flex),
        })
    }

    /// A copy of the models on `device`, their weights and activations in `dtype`.
    pub fn on(
        &self,
        device: &Device,
        dtype: FloatDType,
    ) -> hd_painter::Result<StableDiffusionModels> {
        let models = StableDiffusionModels {
            pipeline: self.pipeline.into(),
            tokenizer: ClipTokenizer::from_dir(&self.tokenizer)?,
            text_encoder: self.text_encoder.clone().to_device(device),
            unet: self.unet.clone().to_device(device),
            vae: self.vae.clone().to_device(device),
            sdxl: None,
            schedulers: Vec::new(),
            ignored: Vec::new(),
        };
        Ok(match dtype {
            FloatDType::F32 => models,
            half => models.with_dtype(half),
        })
    }
}
