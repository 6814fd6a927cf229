//! The SR stage in the official `sr.run`'s three parts, each public so that a caller (or a
//! parity test) can inject its own noise or stop between them: [`Upscaler::prepare`] (the
//! geometry, the resized original, the dilated and blurred hole, the padded low-res image, the
//! original's latents), [`Upscaler::generate`] (the x4 loop with x0 blending from given noise,
//! the decoded last x0) and [`Upscaler::blend`] (the output size and the Poisson blend).
//! [`Upscaler::upscale`] runs them with seeded noise.

use burn::tensor::{Tensor, TensorData};
use hd_painter_core::{
    CoreError, Filter, Footprint, GaussianKernel, Image, Mask, NoiseStream, PadMode, Quantize,
    SizeRule, seeded_noise, sub_seed,
};
use hd_painter_models::{AutoencoderKl, MemoryEstimate, Unet2DConditionModel};
use hd_painter_sampling::{
    ClassifierFree, Hooks, NoiseSchedule, Sampler, SamplerSettings, Stage, TextConditioning,
};

use crate::error::{Result, SrError};
use crate::poisson::poisson_blend;
use crate::settings::{SrOutput, SrSettings};
use crate::upscale::{UpscaleLatents, noise_low_res};

/// The x4 upscaler's models.
#[derive(Clone, Copy, Debug)]
pub struct Upscaler<'a> {
    /// The x4 upscaler UNet (7 input channels, noise-level class embedding, v-prediction).
    pub unet: &'a Unet2DConditionModel,
    /// Its f=4 autoencoder.
    pub vae: &'a AutoencoderKl,
    /// Its noise schedule ([`NoiseSchedule::x4_upscaler`]), also the low-res noise schedule.
    pub schedule: &'a NoiseSchedule,
}

/// The padded sizes of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    /// The original resized to the long side, unpadded.
    hr: (u32, u32),
    /// Padded for the VAE.
    hr_padded: (u32, u32),
    /// The latent (and padded low-res) size.
    latent: (u32, u32),
}

/// What [`Upscaler::prepare`] makes of a run's images, as the official `sr.run` prepares them.
#[derive(Clone, Debug)]
pub struct SrInputs {
    geometry: Geometry,
    /// The original, as given.
    pub original: Image,
    /// The mask at the original's size (255 = generated; soft values kept).
    pub hole: Mask,
    /// The original resized to the long side ([`SizeRule::Demo`], bicubic).
    pub hr_original: Image,
    /// The mask resized likewise (soft values kept: the Poisson blend weighs them).
    pub hr_hole: Mask,
    /// The generated region at the latent size, `[1, 1, h, w]` in `[0, 1]`: the reflect-padded
    /// hole's non-zero pixels, dilated, resized (bicubic), blurred.
    pub latent_mask: Tensor<4>,
    /// The low-res image reflect-padded to the latent size, `[1, 3, h, w]` in `[-1, 1]`.
    pub low_res: Tensor<4>,
    /// The reflect-padded original's scaled latents, with x0 blending on.
    pub known: Option<Tensor<4>>,
}

impl SrInputs {
    /// Whether the hole is empty: [`Upscaler::upscale`] then returns the original at the size
    /// asked for, with nothing generated.
    pub fn is_empty(&self) -> bool {
        self.hole.threshold(0).is_empty()
    }

    /// The latents' `[height, width]`.
    pub fn latent_size(&self) -> [usize; 2] {
        [
            self.geometry.latent.1 as usize,
            self.geometry.latent.0 as usize,
        ]
    }
}

/// The noise of one SR run: the initial latents `[1, c, h, w]` and the low-res image's noise
/// `[1, 3, h, w]`.
#[derive(Clone, Debug)]
pub struct SrNoise {
    /// The initial latents.
    pub latents: Tensor<4>,
    /// The low-res image's noise (noised to the noise level before the loop).
    pub low_res: Tensor<4>,
}

impl Upscaler<'_> {
    /// The multiple the low-res image (and latent) is padded to: 64 as the reference, or the
    /// UNet's own reduction if larger.
    fn latent_multiple(&self) -> u32 {
        64.max(self.unet.downscale() as u32)
    }

    fn geometry(&self, original: (u32, u32), long_side: u32) -> Geometry {
        let f = self.vae.downscale() as u32;
        let hr = SizeRule::Demo.size(original.0, original.1, long_side);
        let m = self.latent_multiple() * f;
        let hr_padded = (hr.0.div_ceil(m) * m, hr.1.div_ceil(m) * m);
        Geometry {
            hr,
            hr_padded,
            latent: (hr_padded.0 / f, hr_padded.1 / f),
        }
    }

    /// The estimated peak memory of upscaling an original of `original` (width, height) size:
    /// the x4 UNet's and VAE's weights, the VAE's encode and decode of the padded result (or of
    /// a tile), and one guided step at its latent.
    pub fn memory_estimate(&self, original: (u32, u32), settings: &SrSettings) -> MemoryEstimate {
        let g = self.geometry(original, settings.long_side);
        // Tiles bound what the VAE sees at once.
        let (w, h) = match settings.vae_tiling {
            Some(t) => (
                g.hr_padded.0.min(t.tile as u32),
                g.hr_padded.1.min(t.tile as u32),
            ),
            None => g.hr_padded,
        };
        let image = [h as usize, w as usize];
        MemoryEstimate {
            weights: self.unet.weight_bytes() + self.vae.weight_bytes(),
            vae_encode: self.vae.encode_memory(image, 1),
            unet_step: self
                .unet
                .step_memory([g.latent.1 as usize, g.latent.0 as usize], 2),
            vae_decode: self.vae.decode_memory(image, 1),
        }
    }

    /// HD-Painter's SR stage: `low_res` is the first stage's result (the original resized to
    /// `long_side / 4`, as inpainted); `original` and `hole` (255 = inpainted) are the full-size
    /// inputs. Returns the upscaled, blended image (see [`SrOutput`]).
    pub fn upscale(
        &self,
        low_res: &Image,
        original: &Image,
        hole: &Mask,
        text: &TextConditioning,
        settings: &SrSettings,
        hooks: Hooks<'_>,
    ) -> Result<Image> {
        let inputs = self.prepare(low_res, original, hole, settings)?;
        if inputs.is_empty() {
            return Ok(match settings.output {
                SrOutput::InputSize => inputs.original,
                SrOutput::LongSide => inputs.hr_original,
            });
        }
        let noise = self.seeded_noise(&inputs, settings.seed);
        let generated = self.generate(&inputs, noise, text, settings, hooks)?;
        self.blend(&inputs, &generated, settings)
    }

    /// The official `sr.run` up to its loop: checks the sizes (and the memory budget), resizes
    /// the original and the mask to the long side, and prepares the latent mask, the padded
    /// low-res image and, with x0 blending, the original's latents.
    pub fn prepare(
        &self,
        low_res: &Image,
        original: &Image,
        hole: &Mask,
        settings: &SrSettings,
    ) -> Result<SrInputs> {
        settings.validate()?;
        let size = (original.width(), original.height());
        hole.ensure_matches(original, "SR hole mask vs original")?;
        let f = self.vae.downscale() as u32;
        let g = self.geometry(size, settings.long_side);
        // The official code pads the low-res image to a multiple of 64 and asserts that it then
        // matches the latents: any first-stage size that pads to the latent size is accepted.
        let m = self.latent_multiple();
        let pads_to = |low: u32, latent: u32| low <= latent && low.div_ceil(m) * m == latent;
        if !(pads_to(low_res.width(), g.latent.0) && pads_to(low_res.height(), g.latent.1)) {
            let what = format!(
                "SR low-res image (the original at long side {})",
                settings.long_side / f
            );
            let (expected, found) = (
                (g.hr.0 / f, g.hr.1 / f),
                (low_res.width(), low_res.height()),
            );
            return Err(CoreError::size_mismatch(what, expected, found).into());
        }
        if let Some(budget) = settings.memory_budget {
            let needed = self.memory_estimate(size, settings).peak();
            if needed > budget {
                return Err(SrError::MemoryBudget {
                    what: format!(
                        "upscaling to {}x{} ({}x{} latent)",
                        g.hr.0, g.hr.1, g.latent.0, g.latent.1
                    ),
                    needed,
                    budget,
                });
            }
        }
        let resized = |s: (u32, u32)| s != size;
        let (hr_original, hr_hole) = match resized(g.hr) {
            true => (
                original.resize(g.hr.0, g.hr.1, Filter::Bicubic)?,
                hole.resize(g.hr.0, g.hr.1, Filter::Bicubic)?,
            ),
            false => (original.clone(), hole.clone()),
        };
        let device = self.unet.device();
        let latent_mask = self.latent_mask(&hr_hole, &g, settings)?;
        let low_res = Image::from_raster(low_res.raster().pad_right_bottom(
            g.latent.0,
            g.latent.1,
            PadMode::Reflect,
        )?)?
        .to_tensor(&device);
        let known = match settings.blend_known {
            true => {
                let hr_padded = Image::from_raster(hr_original.raster().pad_right_bottom(
                    g.hr_padded.0,
                    g.hr_padded.1,
                    PadMode::Reflect,
                )?)?;
                let pixels = hr_padded.to_tensor(&device);
                let posterior = match settings.vae_tiling {
                    Some(tiling) => self.vae.encode_tiled(pixels, tiling)?,
                    None => self.vae.encode(pixels)?,
                };
                Some(posterior.mean * self.vae.scaling_factor())
            }
            false => None,
        };
        Ok(SrInputs {
            geometry: g,
            original: original.clone(),
            hole: hole.clone(),
            hr_original,
            hr_hole,
            latent_mask,
            low_res,
            known,
        })
    }

    /// The generated region at the latent size: the reflect-padded hole's non-zero pixels,
    /// dilated, resized (bicubic), blurred.
    fn latent_mask(
        &self,
        hr_hole: &Mask,
        g: &Geometry,
        settings: &SrSettings,
    ) -> Result<Tensor<4>> {
        let (blur_taps, blur_sigma) = settings.mask_blur;
        let dilated = Mask::from_raster(hr_hole.raster().pad_right_bottom(
            g.hr_padded.0,
            g.hr_padded.1,
            PadMode::Reflect,
        )?)?
        .threshold(0)
        .dilate(Footprint::Cross {
            radius: settings.hole_dilation,
        })?;
        let small = dilated.resize(g.latent.0, g.latent.1, Filter::Bicubic)?;
        let soft = small
            .raster()
            .map(|v| f32::from(v) / 255.0)
            .gaussian_blur(&GaussianKernel::torchvision(blur_taps, Some(blur_sigma))?);
        let [lh, lw] = [g.latent.1 as usize, g.latent.0 as usize];
        Ok(Tensor::<4>::from_data(
            TensorData::new(soft.into_vec(), [1, 1, lh, lw]),
            &self.unet.device(),
        ))
    }

    /// The noise [`Upscaler::upscale`] draws for `seed`: the latents from it, the low-res noise
    /// from its [`NoiseStream::LowRes`] sub-stream.
    pub fn seeded_noise(&self, inputs: &SrInputs, seed: u64) -> SrNoise {
        let [lh, lw] = inputs.latent_size();
        let device = self.unet.device();
        SrNoise {
            latents: seeded_noise(&[seed], [self.vae.latent_channels(), lh, lw], &device),
            low_res: seeded_noise(
                &[sub_seed(seed, NoiseStream::LowRes, 0)],
                [3, lh, lw],
                &device,
            ),
        }
    }

    /// The official loop from `noise`: the low-res image noised to the noise level, the x4
    /// UNet's steps with the x0 blend (v-prediction DDIM on HD-Painter's grid unless
    /// [`SrSettings::scheduler`] says otherwise), the last x0 decoded,
    /// truncated to 8 bits (`(255 * x).to(uint8)`) and cropped to the long-side size.
    pub fn generate(
        &self,
        inputs: &SrInputs,
        noise: SrNoise,
        text: &TextConditioning,
        settings: &SrSettings,
        mut hooks: Hooks<'_>,
    ) -> Result<Image> {
        let noised = noise_low_res(
            inputs.low_res.clone(),
            noise.low_res,
            settings.noise_level,
            self.schedule,
        );
        let mut strategy = UpscaleLatents::new(noised, settings.noise_level);
        if let Some(known) = &inputs.known {
            strategy = strategy.with_known_region(inputs.latent_mask.clone(), known.clone());
        }
        let sampler = SamplerSettings {
            steps: settings.steps,
            guidance_scale: settings.guidance_scale,
            scheduler: settings.scheduler,
            first_step: 0,
            end_step: None,
        };
        let sigma = sampler.build(self.schedule)?.init_noise_sigma();
        let sampled = Sampler {
            unet: self.unet,
            schedule: self.schedule,
            text,
            seeds: &[settings.seed],
            stage: Stage::SuperResolution,
            hooks: hooks.reborrow(),
        }
        .run(
            &sampler,
            &mut strategy,
            &ClassifierFree,
            noise.latents * sigma,
        )?;
        let latents = sampled.last_x0 / self.vae.scaling_factor();
        let decoded = match settings.vae_tiling {
            Some(tiling) => self.vae.decode_tiled(latents, tiling)?,
            None => self.vae.decode(latents)?,
        };
        let hr = inputs.geometry.hr;
        Ok(Image::from_tensor(decoded, Quantize::Truncate)?.crop(0, 0, hr.0, hr.1)?)
    }

    /// The generated long-side image into the original: at the size [`SrOutput`] asks for, with
    /// the Poisson blend (on by default) over the soft mask, as the official `poisson_blend`.
    pub fn blend(
        &self,
        inputs: &SrInputs,
        generated: &Image,
        settings: &SrSettings,
    ) -> Result<Image> {
        let size = (inputs.original.width(), inputs.original.height());
        let (base, base_hole, result) = match settings.output {
            SrOutput::LongSide => (&inputs.hr_original, &inputs.hr_hole, generated.clone()),
            SrOutput::InputSize if inputs.geometry.hr != size => {
                let back = generated.resize(size.0, size.1, Filter::Bicubic)?;
                (&inputs.original, &inputs.hole, back)
            }
            SrOutput::InputSize => (&inputs.original, &inputs.hole, generated.clone()),
        };
        match settings.poisson {
            true => poisson_blend(base, &result, base_hole),
            false => Ok(result),
        }
    }
}
