//! What the check measures on one backend and dtype: the parity of one UNet call and one VAE
//! decode against flex f32, the first call's time (kernel compilation and autotune included),
//! the median of the warm UNet calls and the device memory the allocator holds; and the timed
//! whole runs on the fastest pair.

use std::time::Instant;

use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use hd_painter::hd_painter_models::Conditions;
use hd_painter::{
    BackendKind, DefaultAttention, Image, Mask, Painter, SrSettings, StableDiffusionModels, Stages,
};

use crate::models::Seeded;

/// The same inputs for every backend: a CFG-sized UNet batch and a latent to decode.
pub struct Inputs {
    sample: TensorData,
    timesteps: Vec<f32>,
    context: TensorData,
    latents: TensorData,
}

impl Inputs {
    /// Seeded inputs for `unet` at a `latent` x `latent` latent, batch 2 (the CFG pair).
    pub fn new(seeded: &Seeded, latent: usize) -> Self {
        let flex = Device::flex();
        let noise = |seeds: &[u64], c| {
            hd_painter::hd_painter_core::seeded_noise(seeds, [c, latent, latent], &flex)
        };
        let channels = seeded.unet.in_channels();
        let dim = seeded.unet.cross_attention_dim();
        let context = hd_painter::hd_painter_core::seeded_noise(&[7, 8], [1, 77, dim], &flex);
        Self {
            sample: noise(&[1, 2], channels).into_data(),
            timesteps: vec![500.0; 2],
            context: context.reshape([2, 77, dim]).into_data(),
            latents: noise(&[3], seeded.vae.latent_channels()).into_data(),
        }
    }
}

/// The two outputs parity is measured on.
pub struct Outputs {
    unet: Vec<f32>,
    decoded: Vec<f32>,
}

/// One backend and dtype's numbers.
pub struct Measured {
    /// max |out - flex f32| / max |flex f32| of one UNet call.
    pub unet_error: f32,
    /// The same for one VAE decode.
    pub vae_error: f32,
    /// The first UNet call, compilation and autotune included (s).
    pub first_call_s: f64,
    /// The median of the warm UNet calls (s).
    pub step_s: f64,
    /// The VAE decode (s), after the UNet calls.
    pub decode_s: f64,
    /// What the device's allocator holds after the calls (GiB); `None` where the backend does
    /// not report it (flex: see the process's peak RSS).
    pub device_gib: Option<f64>,
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("a float tensor's values read as f32")
}

/// max |got - want| / max |want|, infinite where `got` is not finite.
fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    if got.iter().any(|v| !v.is_finite()) {
        return f32::INFINITY;
    }
    let scale = want.iter().fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    err / scale
}

fn unet_call(
    models: &StableDiffusionModels,
    inputs: &Inputs,
    device: &Device,
) -> hd_painter::Result<Vec<f32>> {
    let out = models.unet.forward(
        Tensor::from_data(inputs.sample.clone(), device),
        &inputs.timesteps,
        &Tensor::from_data(inputs.context.clone(), device),
        Conditions::default(),
        &mut DefaultAttention::default(),
    )?;
    Ok(values(out))
}

fn decode(
    models: &StableDiffusionModels,
    inputs: &Inputs,
    device: &Device,
) -> hd_painter::Result<Vec<f32>> {
    Ok(values(models.vae.decode(Tensor::from_data(
        inputs.latents.clone(),
        device,
    ))?))
}

fn seconds<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

/// The reference outputs, flex f32, and its numbers (`repeats` warm calls).
pub fn reference(
    seeded: &Seeded,
    inputs: &Inputs,
    repeats: usize,
) -> hd_painter::Result<(Outputs, Measured)> {
    let flex = BackendKind::Flex.device()?;
    let models = seeded.on(&flex, FloatDType::F32)?;
    let (unet, first_call_s) = seconds(|| unet_call(&models, inputs, &flex));
    let outputs = Outputs {
        unet: unet?,
        decoded: decode(&models, inputs, &flex)?,
    };
    let measured = timed(&models, inputs, &flex, repeats, first_call_s, &outputs)?;
    Ok((outputs, measured))
}

/// `seeded` on `device` in `dtype` against the reference `outputs`.
pub fn measure(
    seeded: &Seeded,
    inputs: &Inputs,
    device: &Device,
    dtype: FloatDType,
    repeats: usize,
    outputs: &Outputs,
) -> hd_painter::Result<Measured> {
    let models = seeded.on(device, dtype)?;
    let (first, first_call_s) = seconds(|| unet_call(&models, inputs, device));
    first?;
    timed(&models, inputs, device, repeats, first_call_s, outputs)
}

fn timed(
    models: &StableDiffusionModels,
    inputs: &Inputs,
    device: &Device,
    repeats: usize,
    first_call_s: f64,
    reference: &Outputs,
) -> hd_painter::Result<Measured> {
    let mut times = Vec::with_capacity(repeats);
    let mut unet = Vec::new();
    for _ in 0..repeats.max(1) {
        let (out, s) = seconds(|| unet_call(models, inputs, device));
        unet = out?;
        times.push(s);
    }
    times.sort_by(f64::total_cmp);
    let (decoded, decode_s) = seconds(|| decode(models, inputs, device));
    let decoded = decoded?;
    let device_gib = device
        .memory_pool_usage()
        .map(|usage| usage.bytes_reserved as f64 / f64::from(1u32 << 30));
    Ok(Measured {
        unet_error: relative_error(&unet, &reference.unet),
        vae_error: relative_error(&decoded, &reference.decoded),
        first_call_s,
        step_s: times[times.len() / 2],
        decode_s,
        device_gib,
    })
}

/// The whole runs' settings.
pub struct RunPlan {
    /// The first stage's image side (512).
    pub size: u32,
    /// Its steps (50).
    pub steps: usize,
    /// The SR stage's long side (2048).
    pub sr_long_side: u32,
    /// Its steps (20).
    pub sr_steps: usize,
}

/// The timed whole runs.
pub struct RunTimes {
    /// The first stage: HD-Painter's reference run (PAIntA + RASG) at `size` (s).
    pub first_stage_s: f64,
    /// The SR stage on its result (s).
    pub sr_s: f64,
}

/// A noisy photo with a centred square hole of half its side.
fn inputs(size: u32) -> hd_painter::Result<(Image, Mask)> {
    let rgb = (0..size * size * 3)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let image = Image::from_rgb8(size, size, rgb)?;
    let hole = |i: u32| (size / 4..size * 3 / 4).contains(&i);
    let mask = (0..size * size)
        .map(|i| {
            if hole(i / size) && hole(i % size) {
                255
            } else {
                0
            }
        })
        .collect();
    Ok((image, Mask::from_luma8(size, size, mask)?))
}

/// HD-Painter end to end on `device` in `dtype`: the first stage, then the SR stage, each timed.
pub fn whole_runs(
    inpaint: &Seeded,
    x4: &Seeded,
    device: &Device,
    dtype: FloatDType,
    plan: &RunPlan,
) -> hd_painter::Result<RunTimes> {
    let painter = Painter::new(inpaint.on(device, dtype)?).with_upscaler(x4.on(device, dtype)?)?;
    let (image, mask) = inputs(plan.size)?;
    let prompt = "a red leather sofa";
    let first = painter
        .request(&image, &mask, prompt)
        .steps(plan.steps)
        .stages(Stages::First);
    let (result, first_stage_s) = seconds(|| first.run());
    let result = result?;
    let sr = SrSettings {
        steps: plan.sr_steps,
        long_side: plan.sr_long_side,
        ..SrSettings::default()
    };
    let second = painter
        .request(&image, &mask, prompt)
        .sr(sr)
        .stages(Stages::Sr {
            first_stage: &result[0],
        });
    let (upscaled, sr_s) = seconds(|| second.run());
    upscaled?;
    Ok(RunTimes {
        first_stage_s,
        sr_s,
    })
}
