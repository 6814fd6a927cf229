//! RePaint as published: inpainting with a pixel-space unconditional (or class-conditional)
//! DDPM at the model's resolution, the region around the hole cut out, resized to the model's
//! side, inpainted and pasted back into the untouched original.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use hd_painter_core::{Filter, Image, Mask, Quantize, seeded_noise};
use hd_painter_models::{GuidedUnet, ModelsError, PixelDenoiser, SchedulerConfig, Unet2DModel};
use hd_painter_sampling::{
    KnownPixels, NoiseSchedule, PixelRepaint, PixelRepaintMode, PixelRepaintSettings, PixelStep,
    SamplingError, crop_region, seeded_draws,
};

use crate::error::Result;

/// The pixel-space model of a [`PixelPainter`].
#[derive(Debug)]
pub enum PixelModel {
    /// diffusers' `UNet2DModel` (`google/ddpm-ema-celebahq-256` and the other DDPM folders).
    Diffusers(Box<Unet2DModel>),
    /// guided-diffusion's `UNetModel` (the official RePaint checkpoints, converted).
    Guided(Box<GuidedUnet>),
}

impl PixelModel {
    /// The model as a denoiser.
    pub fn denoiser(&self) -> &dyn PixelDenoiser {
        match self {
            PixelModel::Diffusers(m) => m.as_ref(),
            PixelModel::Guided(m) => m.as_ref(),
        }
    }

    /// The class labels of a class-conditional model (the guided ImageNet model's 1000).
    pub fn num_classes(&self) -> Option<usize> {
        match self {
            PixelModel::Diffusers(m) => m.config().num_class_embeds,
            PixelModel::Guided(m) => m.config().num_classes,
        }
    }
}

/// What one [`PixelPainter::inpaint`] does.
#[derive(Clone, Debug, PartialEq)]
pub struct PixelRequest {
    /// The walk and whose semantics ([`PixelPainter::default_settings`] fits the model).
    pub settings: PixelRepaintSettings,
    /// One image per seed.
    pub seeds: Vec<u64>,
    /// The class of a class-conditional model (required there, refused elsewhere).
    pub class_label: Option<i64>,
    /// Pixels around the hole's bounding box kept as context in the square that is inpainted.
    pub padding: u32,
}

/// RePaint with a pixel-space model: the published method (CVPR 2022) on its published models.
#[derive(Debug)]
pub struct PixelPainter {
    model: PixelModel,
    schedule: NoiseSchedule,
    side: u32,
    device: Device,
}

impl PixelPainter {
    /// Whether `dir` holds a pixel-space model this loads: a diffusers pipeline folder whose
    /// `unet/config.json` is of class `UNet2DModel`, a flat DDPM folder (its `config.json` of
    /// that class, as the google/ddpm-* folders were published), or a converted
    /// guided-diffusion folder (`GuidedDiffusionUNetModel`).
    pub fn is_pixel_folder(dir: impl AsRef<Path>) -> bool {
        let dir = dir.as_ref();
        let class = |path: PathBuf| -> Option<String> {
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
            Some(json.get("_class_name")?.as_str()?.to_string())
        };
        let unet = class(dir.join("unet").join("config.json"));
        let root = class(dir.join("config.json"));
        matches!(unet.as_deref(), Some("UNet2DModel"))
            || matches!(
                root.as_deref(),
                Some("UNet2DModel" | "GuidedDiffusionUNetModel")
            )
    }

    /// Loads a pixel-space model folder (see [`is_pixel_folder`](Self::is_pixel_folder)). A
    /// diffusers folder's training schedule is its `scheduler/scheduler_config.json` (or the
    /// flat folder's `scheduler_config.json`); a guided-diffusion folder's is the official
    /// 1000 linear steps from 1e-4 to 0.02.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let guided = dir.join("config.json");
        let is_guided = std::fs::read_to_string(&guided)
            .is_ok_and(|s| s.contains("\"GuidedDiffusionUNetModel\""));
        let (model, schedule) = if is_guided {
            let model = GuidedUnet::load(dir, device)?;
            (
                PixelModel::Guided(Box::new(model)),
                NoiseSchedule::linear(1e-4, 0.02, 1000),
            )
        } else {
            let unet_dir = match dir.join("unet").is_dir() {
                true => dir.join("unet"),
                false => dir.to_path_buf(),
            };
            let model = Unet2DModel::load(&unet_dir, None, device)?;
            let scheduler = [
                dir.join("scheduler").join("scheduler_config.json"),
                dir.join("scheduler_config.json"),
            ]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| ModelsError::Io {
                path: dir.join("scheduler").join("scheduler_config.json"),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "a DDPM folder needs its scheduler config (or a flat scheduler_config.json)",
                ),
            })?;
            let config = SchedulerConfig::from_file(&scheduler, None)?;
            if config.prediction_type != "epsilon" {
                return Err(ModelsError::UnsupportedConfig {
                    path: scheduler,
                    key: "prediction_type".into(),
                    value: config.prediction_type.clone(),
                    expected: "epsilon (RePaint's samplers predict the noise)".into(),
                }
                .into());
            }
            (
                PixelModel::Diffusers(Box::new(model)),
                NoiseSchedule::from_config(&config),
            )
        };
        let side = model.denoiser().sample_size().unwrap_or(256) as u32;
        Ok(Self {
            model,
            schedule,
            side,
            device: device.clone(),
        })
    }

    /// The model.
    pub fn model(&self) -> &PixelModel {
        &self.model
    }

    /// The side of the square the model works at (its `sample_size` / `image_size`, 256 for
    /// the published models).
    pub fn side(&self) -> u32 {
        self.side
    }

    /// The paper's walk (250 steps, jumps of 10, 10 resamplings) in the official code's
    /// semantics for a model with learned variance, in diffusers' (eta 0) for one without.
    pub fn default_settings(&self) -> PixelRepaintSettings {
        let mode = match self.model.denoiser().learned_variance() {
            true => PixelRepaintMode::Official,
            false => PixelRepaintMode::Diffusers { eta: 0.0 },
        };
        PixelRepaintSettings {
            mode,
            ..PixelRepaintSettings::default()
        }
    }

    /// Fills `mask`'s hole (white: to fill; values of 128 and up count, as diffusers'
    /// binarisation) in `image`, one image per seed. The square around the hole (plus
    /// `padding`, widened to a square and clipped to the image) is resized to the model's side,
    /// inpainted with the original kept outside the hole, resized back, and only the hole's
    /// pixels are written into a copy of `image`.
    pub fn inpaint(
        &self,
        image: &Image,
        mask: &Mask,
        request: &PixelRequest,
        on_step: &mut dyn FnMut(&PixelStep<'_>) -> ControlFlow<()>,
    ) -> Result<Vec<Image>> {
        mask.ensure_matches(image, "RePaint mask")?;
        let invalid = |m: String| SamplingError::InvalidInput(m);
        if request.seeds.is_empty() {
            return Err(invalid("no seeds: one image is made per seed".into()).into());
        }
        let labels = self.labels(request)?;
        let hole = mask.threshold(127);
        let b = crop_region(&hole, request.padding, (self.side, self.side))
            .ok_or_else(|| invalid("the mask has no pixel of 128 or more to fill".into()))?;
        let (w, h) = b.size();
        let side = self.side;
        let region = image
            .crop(b.x1, b.y1, w, h)?
            .resize(side, side, Filter::Bicubic)?;
        let region_hole = hole
            .crop(b.x1, b.y1, w, h)?
            .resize(side, side, Filter::Nearest)?;
        let keep = region_hole.to_tensor(&self.device).neg() + 1.0;
        let known = KnownPixels {
            image: region.to_tensor(&self.device),
            keep: keep.greater_elem(0.5).float(),
        };
        let shape = [3, side as usize, side as usize];
        let x_t: Tensor<4> = seeded_noise(&request.seeds, shape, &self.device);
        let mut draw = seeded_draws(request.seeds.clone());
        let repaint = PixelRepaint {
            model: self.model.denoiser(),
            schedule: &self.schedule,
            class_labels: labels.as_deref(),
        };
        let out = repaint.run(&request.settings, &known, x_t, &mut draw, on_step)?;
        let generated = Image::batch_from_tensor(out, Quantize::default())?;
        generated
            .iter()
            .map(|g| {
                paste_hole(
                    image,
                    &hole,
                    &g.resize(w, h, Filter::Bicubic)?,
                    (b.x1, b.y1),
                )
            })
            .collect()
    }

    /// The class labels of the run, one per seed.
    fn labels(&self, request: &PixelRequest) -> Result<Option<Vec<i64>>> {
        let n = request.seeds.len();
        match (self.model.num_classes(), request.class_label) {
            (Some(classes), Some(label)) if (0..classes as i64).contains(&label) => {
                Ok(Some(vec![label; n]))
            }
            (None, None) => Ok(None),
            (Some(classes), label) => Err(SamplingError::InvalidInput(format!(
                "the model is class-conditional: a class label in 0..{classes} is needed, got {label:?}"
            ))
            .into()),
            (None, Some(label)) => Err(SamplingError::InvalidInput(format!(
                "class label {label} given, but the model is not class-conditional"
            ))
            .into()),
        }
    }
}

/// `original` with the pixels of `hole` inside the box at `origin` taken from `generated`.
fn paste_hole(
    original: &Image,
    hole: &Mask,
    generated: &Image,
    origin: (u32, u32),
) -> Result<Image> {
    let width = original.width() as usize;
    let mut out = original.raster().as_slice().to_vec();
    let (gw, gh) = (generated.width() as usize, generated.height() as usize);
    let (src, holes) = (generated.raster().as_slice(), hole.raster().as_slice());
    for y in 0..gh {
        for x in 0..gw {
            let (ox, oy) = (origin.0 as usize + x, origin.1 as usize + y);
            if holes[oy * width + ox] != 0 {
                let (o, g) = ((oy * width + ox) * 3, (y * gw + x) * 3);
                out[o..o + 3].copy_from_slice(&src[g..g + 3]);
            }
        }
    }
    let raster = hd_painter_core::Raster::from_vec(original.width(), original.height(), 3, out)?;
    Ok(Image::from_raster(raster)?)
}
