//! Reading the sampling goldens of `tools/reference/generate.py`, shared by the tests.

#![allow(dead_code, missing_docs)] // each test binary uses part of this module

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub fn device() -> Device {
    hd_painter_core::BackendKind::Flex.device().unwrap()
}

/// One golden file, read whole.
pub struct Golden(Vec<u8>);

impl Golden {
    /// `fixtures/sampling/{name}.safetensors`.
    pub fn open(name: &str) -> Self {
        Self::at(&format!("sampling/{name}.safetensors"))
    }

    /// `fixtures/{path}`.
    pub fn at(path: &str) -> Self {
        let path = fixtures().join(path);
        Self(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    /// Shape and values (as f64) of an f32, f64, i64 or u8 tensor.
    pub fn get(&self, key: &str) -> (Vec<usize>, Vec<f64>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let v = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        let values = match v.dtype() {
            Dtype::F32 => v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            Dtype::F64 => v
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::I64 => v
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            Dtype::U8 => v.data().iter().map(|&b| f64::from(b)).collect(),
            other => panic!("{key}: {other:?}"),
        };
        (v.shape().to_vec(), values)
    }

    /// The values of an integer tensor.
    pub fn ints(&self, key: &str) -> Vec<usize> {
        self.get(key).1.into_iter().map(|v| v as usize).collect()
    }

    /// The values of an f32 tensor.
    pub fn f32s(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, v) = self.get(key);
        (shape, v.into_iter().map(|x| x as f32).collect())
    }

    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, v) = self.f32s(key);
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// The values of the `k`-th of a stack of f32 tensors (`[count, ...]`).
    pub fn part(&self, key: &str, k: usize) -> Vec<f32> {
        let (shape, v) = self.f32s(key);
        let per = v.len() / shape[0];
        v[k * per..(k + 1) * per].to_vec()
    }

    /// An `[h, w, 3]` u8 array as an image.
    pub fn image(&self, key: &str) -> hd_painter_core::Image {
        let (shape, v) = self.get(key);
        hd_painter_core::Image::from_rgb8(
            shape[1] as u32,
            shape[0] as u32,
            v.into_iter().map(|x| x as u8).collect(),
        )
        .unwrap()
    }

    /// The `k`-th of a stack of tensors (`[count, ...]`), as a tensor of the rest of the shape.
    pub fn slice<const D: usize>(&self, key: &str, k: usize, device: &Device) -> Tensor<D> {
        let (shape, v) = self.f32s(key);
        let per = v.len() / shape[0];
        Tensor::from_data(
            TensorData::new(v[k * per..(k + 1) * per].to_vec(), shape[1..].to_vec()),
            device,
        )
    }
}

/// Asserts max |got - expected| <= `tolerance` * max(1, max |expected|).
pub fn assert_close(got: &Tensor<4>, expected: &[f32], tolerance: f32, what: &str) {
    let got: Vec<f32> = got.clone().into_data().try_into_vec_as().unwrap();
    assert_eq!(got.len(), expected.len(), "{what}: size");
    let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        err <= tolerance * scale,
        "{what}: max |diff| = {err:e} (scale {scale})"
    );
}

/// The largest difference between two images' 8-bit values.
pub fn worst_level(got: &hd_painter_core::Image, want: &hd_painter_core::Image) -> u8 {
    assert_eq!(
        (got.width(), got.height()),
        (want.width(), want.height()),
        "image size"
    );
    got.raster()
        .as_slice()
        .iter()
        .zip(want.raster().as_slice())
        .map(|(&a, &b)| a.abs_diff(b))
        .max()
        .unwrap()
}

/// PAIntA's scales `s` of every layer at t = 999 (the first step) against the golden's
/// `{name}_scale_sizes` and `{name}_scales`.
pub fn assert_first_scales(
    scales: Vec<hd_painter_sampling::PaintaScale>,
    golden: &Golden,
    name: &str,
    tolerance: f32,
) {
    let first: Vec<Tensor<2>> = scales
        .into_iter()
        .filter(|scale| scale.timestep == 999.0)
        .map(|scale| scale.scale)
        .collect();
    let sizes: Vec<usize> = first.iter().map(|t| t.dims()[1]).collect();
    assert_eq!(
        sizes,
        golden.ints(&format!("{name}_scale_sizes")),
        "{name}: PAIntA layers"
    );
    let got = Tensor::cat(first.into_iter().map(|t| t.reshape([-1])).collect(), 0);
    let (_, want) = golden.f32s(&format!("{name}_scales"));
    assert_close(
        &got.reshape([1, 1, 1, -1]),
        &want,
        tolerance,
        &format!("{name} PAIntA scales"),
    );
}

/// A noisy `width x height` photo.
pub fn photo(width: u32, height: u32) -> hd_painter_core::Image {
    let rgb = (0..width * height * 3)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    hd_painter_core::Image::from_rgb8(width, height, rgb).unwrap()
}

/// A fixture pipeline folder's models.
pub fn pipeline(folder: &str) -> hd_painter_models::StableDiffusionModels {
    let dir = fixtures().join("models").join(folder);
    hd_painter_models::StableDiffusionModels::load(dir, None, &device()).unwrap()
}

/// `options` on `models` with the prompt "x" (no negative prompt), exact attention and no step
/// callback.
pub fn inpaint(
    models: &hd_painter_models::StableDiffusionModels,
    image: &hd_painter_core::Image,
    mask: &hd_painter_core::Mask,
    options: &hd_painter_sampling::InpaintOptions,
) -> hd_painter_sampling::Result<Vec<hd_painter_core::Image>> {
    let text = hd_painter_sampling::encode_prompts(models, "x", "")?;
    let schedule = hd_painter_sampling::NoiseSchedule::stable_diffusion();
    let mut attention = hd_painter_models::DefaultAttention::default();
    hd_painter_sampling::Inpainter::new(&models.unet, &models.vae, &schedule).inpaint(
        image,
        mask,
        &text,
        options,
        hd_painter_sampling::Hooks::new(&mut attention, &mut |_| {
            std::ops::ControlFlow::Continue(())
        }),
    )
}
pub mod golden_run;
