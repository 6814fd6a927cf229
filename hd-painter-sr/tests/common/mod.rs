//! Reading the SR goldens of `tools/reference/generate.py` (`fixtures/sr/`) and the fixture
//! models, shared by the tests.

#![allow(dead_code, missing_docs)] // each test binary uses part of this module

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use hd_painter_core::{Image, Mask};
use safetensors::SafeTensors;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub fn model(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn device() -> Device {
    hd_painter_core::BackendKind::Flex.device().unwrap()
}

/// One golden file, read whole.
pub struct Golden(Vec<u8>);

impl Golden {
    /// `fixtures/sr/{name}.safetensors`.
    pub fn open(name: &str) -> Self {
        let path = fixtures().join("sr").join(format!("{name}.safetensors"));
        Self(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    /// Shape and raw bytes of a tensor.
    pub fn bytes(&self, key: &str) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        (t.shape().to_vec(), t.data().to_vec())
    }

    /// Shape and values of an f32 tensor.
    pub fn values(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, bytes) = self.bytes(key);
        let v = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (shape, v)
    }

    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, v) = self.values(key);
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// The values of the `k`-th of a stack of f32 tensors.
    pub fn part(&self, key: &str, k: usize) -> Vec<f32> {
        let (shape, v) = self.values(key);
        let per = v.len() / shape[0];
        v[k * per..(k + 1) * per].to_vec()
    }

    /// An `[h, w, 3]` u8 tensor as an image.
    pub fn image(&self, key: &str) -> Image {
        let (shape, data) = self.bytes(key);
        Image::from_rgb8(shape[1] as u32, shape[0] as u32, data).unwrap()
    }

    /// An `[h, w]` u8 tensor as a mask.
    pub fn mask(&self, key: &str) -> Mask {
        let (shape, data) = self.bytes(key);
        Mask::from_luma8(shape[1] as u32, shape[0] as u32, data).unwrap()
    }
}

/// Asserts max |got - want| <= `tolerance` * max(1, max |want|).
pub fn assert_close<const D: usize>(got: &Tensor<D>, want: &[f32], tolerance: f32, what: &str) {
    let got: Vec<f32> = got.clone().into_data().try_into_vec_as().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: size");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        err <= tolerance * scale,
        "{what}: max |diff| {err:e} (scale {scale})"
    );
}
