//! The two kernels that decide a diffusion UNet's CPU speed, on each compiled CPU backend:
//! a 3x3 convolution with 512 channels at 64x64 (the UNet's widest resolution block) and a
//! 4096 x 4096 matmul (attention-sized GEMM). `tools/reference/bench_backends.py` times numpy
//! and PyTorch on the same shapes the same way, for the ratios in the README.
//!
//! ```text
//! cargo bench -p hd-painter-benches --features ndarray --bench backends
//! ```

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use criterion::{Criterion, criterion_group, criterion_main};
use hd_painter_benches::{cpu_backends, randn, settle};

fn conv3x3(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv3x3_512ch_64x64");
    group.sample_size(10);
    for (kind, device) in cpu_backends() {
        let x = randn([1, 512, 64, 64], &device);
        let w = randn([512, 512, 3, 3], &device);
        let b = randn([512], &device);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        group.bench_function(kind.to_string(), |bench| {
            bench.iter(|| {
                settle(conv2d(
                    x.clone(),
                    w.clone(),
                    Some(b.clone()),
                    options.clone(),
                ))
            })
        });
    }
    group.finish();
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_4096");
    group.sample_size(10);
    for (kind, device) in cpu_backends() {
        let a = randn([4096, 4096], &device);
        let b = randn([4096, 4096], &device);
        group.bench_function(kind.to_string(), |bench| {
            bench.iter(|| settle(a.clone().matmul(b.clone())))
        });
    }
    group.finish();
}

criterion_group!(benches, conv3x3, matmul);
criterion_main!(benches);
