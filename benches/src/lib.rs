//! Shared set-up of hd-painter's criterion benchmarks.

use burn::tensor::{Device, Distribution, Tensor};
use hd_painter_core::BackendKind;

/// The CPU backends compiled into this build (flex always; ndarray with the `ndarray`
/// feature), with their devices.
pub fn cpu_backends() -> Vec<(BackendKind, Device)> {
    [BackendKind::Flex, BackendKind::Ndarray]
        .into_iter()
        .filter_map(|kind| kind.device().ok().map(|device| (kind, device)))
        .collect()
}

/// A tensor of standard-normal values.
pub fn randn<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Waits for a result by reading one value back, so that lazy backends are timed whole.
pub fn settle<const D: usize>(t: Tensor<D>) -> f32 {
    let first = t.flatten::<1>(0, D - 1).slice(0..1);
    first
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("f32 data")[0]
}
