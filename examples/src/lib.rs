//! Example programs, and what they share.

use burn::tensor::FloatDType;
use clap::ValueEnum;
use hd_painter::hd_painter_models::ModelsError;
use hd_painter::{
    BackendKind, BrushNetSettings, HdPainter, InpaintOptions, Method, ModelSource, Painter,
    RepaintSettings,
};
use serde::{Deserialize, Serialize};

/// A seed from the clock, for runs that give none (reported, so that the run can be repeated).
pub fn random_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64 % 1_000_000_007)
}

/// The weights' precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    /// bf16 weights for SDXL models on the CPU (2.6 B UNet parameters: 5.1 GB rather than
    /// 10.3 GB, and faster where the CPU multiplies bf16), f32 otherwise.
    Auto,
    /// f32, the reference path.
    F32,
    /// bfloat16 weights: half the memory, about 0.5% from f32 (2% with `--half-activations`).
    Bf16,
    /// float16 weights: half the memory, within 1e-3 of f32 (1e-2 with `--half-activations`).
    F16,
}

impl DTypeArg {
    /// The weights' dtype for the models `source` names on `backend` ([`DTypeArg::Auto`] reads
    /// whether they are SDXL).
    pub fn resolve(
        self,
        source: &ModelSource,
        variant: Option<&str>,
        backend: BackendKind,
    ) -> Result<FloatDType, ModelsError> {
        Ok(match self {
            DTypeArg::Auto => {
                let cpu = matches!(backend, BackendKind::Flex | BackendKind::Ndarray);
                match cpu && source.is_sdxl(variant)? {
                    true => FloatDType::BF16,
                    false => FloatDType::F32,
                }
            }
            DTypeArg::F32 => FloatDType::F32,
            DTypeArg::Bf16 => FloatDType::BF16,
            DTypeArg::F16 => FloatDType::F16,
        })
    }
}

/// A dtype as `--dtype` names it (what the programs print after loading).
pub fn dtype_name(dtype: FloatDType) -> &'static str {
    match dtype {
        FloatDType::F64 => "f64",
        FloatDType::F32 | FloatDType::Flex32 => "f32",
        FloatDType::F16 => "f16",
        FloatDType::BF16 => "bf16",
    }
}

/// The methods, as the programs name them (`inpaint --method`, the web page's `method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodName {
    /// HD-Painter: PAIntA + RASG with its reference settings.
    HdPainter,
    /// HD-Painter with PAIntA only.
    Painta,
    /// HD-Painter with RASG only.
    Rasg,
    /// Stable Inpainting (9-channel model), diffusers' defaults.
    Stable,
    /// Blended Latent Diffusion (4-channel model).
    Blended,
    /// RePaint (4-channel model).
    Repaint,
    /// BrushNet (4-channel model with a BrushNet branch).
    Brushnet,
}

impl MethodName {
    /// Its name on the command line and in the web API.
    pub fn name(self) -> &'static str {
        match self {
            Self::HdPainter => "hd-painter",
            Self::Painta => "painta",
            Self::Rasg => "rasg",
            Self::Stable => "stable",
            Self::Blended => "blended",
            Self::Repaint => "repaint",
            Self::Brushnet => "brushnet",
        }
    }

    /// Whether it is one of HD-Painter's (which read any non-zero mask value as hole and number
    /// the seeds of several images as the official code does).
    pub fn hd_painter(self) -> bool {
        matches!(self, Self::HdPainter | Self::Painta | Self::Rasg)
    }

    /// The method's options on `painter`'s models: HD-Painter's parts on the base UNet's own
    /// method (Stable Inpainting on a 9-channel UNet, Blended on a 4-channel one, whether or not
    /// a BrushNet branch is loaded: RASG differentiates the UNet alone), `brushnet` for BrushNet.
    pub fn options(self, painter: &Painter, brushnet: BrushNetSettings) -> InpaintOptions {
        let base = match painter.models.unet.in_channels() {
            4 => Method::Blended,
            _ => Method::StableInpainting,
        };
        let hd = |variant: HdPainter| InpaintOptions {
            method: base,
            ..InpaintOptions::hd_painter(variant)
        };
        let plain = |method: Method| InpaintOptions {
            method,
            ..InpaintOptions::default()
        };
        match self {
            Self::HdPainter => hd(HdPainter::full()),
            Self::Painta => hd(HdPainter::painta_only()),
            Self::Rasg => hd(HdPainter::rasg_only()),
            Self::Stable => plain(Method::StableInpainting),
            Self::Blended => plain(Method::Blended),
            Self::Repaint => plain(Method::Repaint(RepaintSettings::default())),
            Self::Brushnet => InpaintOptions::brushnet(brushnet),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/models")
            .join(name)
    }

    fn folder(name: &str) -> ModelSource {
        ModelSource::Folder(fixture(name))
    }

    #[test]
    fn auto_is_bf16_for_sdxl_on_the_cpu_only() {
        let (sdxl, sd) = (folder("pipeline_sdxl_inpaint"), folder("pipeline_inpaint"));
        let cases = [
            (DTypeArg::Auto, &sdxl, BackendKind::Flex, FloatDType::BF16),
            (DTypeArg::Auto, &sdxl, BackendKind::Wgpu, FloatDType::F32),
            (DTypeArg::Auto, &sd, BackendKind::Flex, FloatDType::F32),
            // The x4 upscaler is an SD 2 model, also after an SDXL first stage.
            (
                DTypeArg::Auto,
                &folder("pipeline_x4"),
                BackendKind::Flex,
                FloatDType::F32,
            ),
            (DTypeArg::F32, &sdxl, BackendKind::Flex, FloatDType::F32),
            (DTypeArg::F16, &sd, BackendKind::Flex, FloatDType::F16),
        ];
        for (arg, source, backend, want) in cases {
            let got = arg.resolve(source, None, backend).unwrap();
            assert_eq!(got, want, "{arg:?} on {source:?} with {backend:?}");
        }
        // A single file reads its config folder's index; a folder without one is an error.
        let single = ModelSource::SingleFile {
            checkpoint: "unused.safetensors".into(),
            config: fixture("pipeline_sdxl_inpaint"),
        };
        let got = DTypeArg::Auto.resolve(&single, None, BackendKind::Flex);
        assert_eq!(got.unwrap(), FloatDType::BF16);
        let err = DTypeArg::Auto
            .resolve(&folder("unet_sd2"), None, BackendKind::Flex)
            .unwrap_err();
        assert!(err.to_string().contains("model_index.json"), "{err}");
    }
}
