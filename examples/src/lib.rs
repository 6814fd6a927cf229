//! Example programs, and what they share.

use burn::tensor::FloatDType;
use clap::ValueEnum;
use hd_painter::{BrushNetSettings, HdPainter, InpaintOptions, Method, Painter, RepaintSettings};
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
    /// f32, the reference path.
    F32,
    /// bfloat16 weights: half the memory, about 0.5% from f32 (2% with `--half-activations`).
    Bf16,
    /// float16 weights: half the memory, within 1e-3 of f32 (1e-2 with `--half-activations`).
    F16,
}

impl From<DTypeArg> for FloatDType {
    fn from(d: DTypeArg) -> Self {
        match d {
            DTypeArg::F32 => FloatDType::F32,
            DTypeArg::Bf16 => FloatDType::BF16,
            DTypeArg::F16 => FloatDType::F16,
        }
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
