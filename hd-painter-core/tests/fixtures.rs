//! Reading the golden fixtures that `tools/reference/generate.py` writes from the reference
//! libraries.

#![allow(dead_code, missing_docs)] // each test binary uses part of this module

use std::path::PathBuf;

use hd_painter_core::{Raster, Sample};
use safetensors::{Dtype, SafeTensors};

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/core")
        .join(name)
}

/// One fixture file, read whole.
pub struct Fixture {
    name: String,
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn open(name: &str) -> Self {
        let p = path(&format!("{name}.safetensors"));
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        Self {
            name: name.into(),
            bytes,
        }
    }

    fn tensor(&self, key: &str, dtype: Dtype) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        let view = st
            .tensor(key)
            .unwrap_or_else(|e| panic!("{}: tensor {key}: {e}", self.name));
        assert_eq!(view.dtype(), dtype, "{}: tensor {key}", self.name);
        (view.shape().to_vec(), view.data().to_vec())
    }

    pub fn u8(&self, key: &str) -> (Vec<usize>, Vec<u8>) {
        self.tensor(key, Dtype::U8)
    }

    pub fn f32(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, bytes) = self.tensor(key, Dtype::F32);
        let values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (shape, values)
    }

    pub fn i64(&self, key: &str) -> (Vec<usize>, Vec<i64>) {
        let (shape, bytes) = self.tensor(key, Dtype::I64);
        let values = bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (shape, values)
    }

    /// An `H x W` or `H x W x C` u8 array as a raster.
    pub fn raster_u8(&self, key: &str) -> Raster<u8> {
        let (shape, data) = self.u8(key);
        to_raster(&shape, data)
    }

    /// An `H x W` or `H x W x C` f32 array as a raster.
    pub fn raster_f32(&self, key: &str) -> Raster<f32> {
        let (shape, data) = self.f32(key);
        to_raster(&shape, data)
    }
}

fn to_raster<T: Sample>(shape: &[usize], data: Vec<T>) -> Raster<T> {
    let channels = shape.get(2).copied().unwrap_or(1);
    Raster::from_vec(shape[1] as u32, shape[0] as u32, channels, data).expect("fixture raster")
}

/// The largest absolute difference between two rasters of the same geometry.
pub fn max_abs_diff<T: Sample>(got: &Raster<T>, expected: &Raster<T>) -> f64 {
    assert_eq!(
        (got.width(), got.height(), got.channels()),
        (expected.width(), expected.height(), expected.channels()),
        "geometry"
    );
    got.as_slice()
        .iter()
        .zip(expected.as_slice())
        .map(|(a, b)| (a.to_f64() - b.to_f64()).abs())
        .fold(0.0, f64::max)
}
