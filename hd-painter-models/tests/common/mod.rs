//! Golden files written by `tools/reference/generate.py`, and the parity check the model tests
//! share: max |ours - ref| <= 1e-4 * max(1, max |ref|).

#![allow(dead_code, missing_docs)] // each test binary uses part of this module

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

pub fn device() -> Device {
    hd_painter_core::BackendKind::Flex.device().unwrap()
}

pub fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/models")
        .join(name)
}

/// A copy of a fixture model folder in a scratch directory, for tests that break it.
pub fn scratch_copy(model: &str, tag: &str, files: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hd-painter-{model}-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in files {
        std::fs::copy(model_dir(model).join(f), dir.join(f)).unwrap();
    }
    dir
}

pub struct Golden(Vec<u8>);

impl Golden {
    pub fn open(model: &str, file: &str) -> Self {
        let path = model_dir(model).join(file);
        Self(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    /// Shape and values (as f64) of a float32, float64 or int64 tensor.
    pub fn get(&self, key: &str) -> (Vec<usize>, Vec<f64>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let view = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        let values = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::I64 => view
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("{key}: unexpected dtype {other:?}"),
        };
        (view.shape().to_vec(), values)
    }

    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = self.get(key);
        let values: Vec<f32> = values.into_iter().map(|v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    pub fn int_tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D, Int> {
        let (shape, values) = self.get(key);
        let values: Vec<i64> = values.into_iter().map(|v| v as i64).collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// Asserts `got` matches the golden `key` within 1e-4 * max(1, max |ref|).
    pub fn assert_close<const D: usize>(&self, got: Tensor<D>, key: &str, what: &str) {
        self.assert_within(got, key, 1e-4, 1.0, what);
    }

    /// Asserts max |got - ref| <= `tolerance` * max(`floor`, max |ref|).
    pub fn assert_within<const D: usize>(
        &self,
        got: Tensor<D>,
        key: &str,
        tolerance: f64,
        floor: f64,
        what: &str,
    ) {
        let (shape, expected) = self.get(key);
        assert_eq!(got.dims().to_vec(), shape, "{what}: shape of {key}");
        let got: Vec<f32> = got.into_data().try_into_vec_as().unwrap();
        let scale = expected.iter().fold(floor, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(
            err <= tolerance * scale,
            "{what} {key}: max |diff| = {err:e} (scale {scale})"
        );
    }
}

/// Asserts a pixel-space model's output on `name`'s golden inputs (`outputs.safetensors`:
/// `sample`, `timesteps`, `labels` where the model is class-conditional) matches `output`.
pub fn check_pixel_model(unet: &dyn hd_painter_models::PixelDenoiser, name: &str, classes: bool) {
    let device = device();
    let g = Golden::open(name, "outputs.safetensors");
    let timesteps: Vec<f32> = g.get("timesteps").1.iter().map(|&t| t as f32).collect();
    let labels: Option<Vec<i64>> =
        classes.then(|| g.get("labels").1.iter().map(|&l| l as i64).collect());
    let out = unet
        .predict(g.tensor("sample", &device), &timesteps, labels.as_deref())
        .unwrap();
    g.assert_close(out, "output", name);
}
