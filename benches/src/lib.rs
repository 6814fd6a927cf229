//! Shared set-up of hd-painter's criterion benchmarks, and their allocator.

/// Every benchmark linking this crate runs on mimalloc, as the `inpaint` example does. mimalloc
/// keeps freed pages for reuse: the models allocate and free large activations at every layer,
/// and the system allocator hands them back to the kernel and faults them in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// The process's peak resident set size so far, in GiB (0 where the platform does not report it).
pub fn peak_rss_gib() -> f64 {
    hd_painter_core::peak_rss_bytes().map_or(0.0, |b| b as f64 / (1u64 << 30) as f64)
}

/// The folder of the full-size random-weight models (`tools/reference/full_size.py`):
/// `$HD_PAINTER_FULL_DIR` or `~/.cache/hd-painter/full`.
pub fn full_dir() -> std::path::PathBuf {
    std::env::var_os("HD_PAINTER_FULL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/hd-painter/full")
        })
}

/// The folder of the full-size models and the bytes of its inputs file `io` (written by
/// `tools/reference/{script}`), or `None` after saying what to run first.
pub fn full_inputs(io: &str, script: &str) -> Option<(std::path::PathBuf, Vec<u8>)> {
    let dir = full_dir();
    match std::fs::read(dir.join(io)) {
        Ok(bytes) => Some((dir, bytes)),
        Err(e) => {
            eprintln!(
                "skipping: {} ({e}); run tools/reference/{script} first",
                dir.join(io).display()
            );
            None
        }
    }
}

/// A float32 tensor from a safetensors file.
pub fn read_f32<const D: usize>(bytes: &[u8], key: &str, device: &Device) -> Tensor<D> {
    let st = safetensors::SafeTensors::deserialize(bytes).expect("valid safetensors");
    let view = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    Tensor::from_data(
        burn::tensor::TensorData::new(values, view.shape().to_vec()),
        device,
    )
}
