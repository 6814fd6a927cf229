//! The 2K pixel operations of HD-Painter's super-resolution stage, against the libraries the
//! reference calls (`tools/reference/bench_core_ops.py` times those the same way): bicubic
//! resize 2048x1536 -> 512x384, the 19-step cross dilation and the 48x48 box dilation of a
//! 2048x2048 mask, and the 19-tap Gaussian blur of a 512x512 float mask.
//!
//! ```text
//! cargo bench -p hd-painter-benches --features ndarray --bench core_ops
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use hd_painter_benches as _; // the benchmarks' allocator
use hd_painter_core::{Filter, Footprint, GaussianKernel, Raster};

fn pattern(width: u32, height: u32, channels: usize) -> Raster<u8> {
    let data = (0..width as usize * height as usize * channels)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    Raster::from_vec(width, height, channels, data).expect("valid raster")
}

fn disc(size: u32) -> Raster<u8> {
    let c = f64::from(size) / 2.0;
    let data = (0..size as usize * size as usize)
        .map(|i| {
            let (x, y) = ((i % size as usize) as f64, (i / size as usize) as f64);
            if (x - c).hypot(y - c) < c / 2.0 {
                255
            } else {
                0
            }
        })
        .collect();
    Raster::from_vec(size, size, 1, data).expect("valid raster")
}

fn core_ops(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_ops");
    group.sample_size(10);
    let photo = pattern(2048, 1536, 3);
    group.bench_function("resize_bicubic_2048x1536_to_512x384", |b| {
        b.iter(|| photo.resize(512, 384, Filter::Bicubic).expect("resize"))
    });
    let mask = disc(2048);
    group.bench_function("dilate_cross19_2048", |b| {
        b.iter(|| {
            mask.dilate(Footprint::Cross { radius: 19 })
                .expect("dilate")
        })
    });
    group.bench_function("dilate_box48_2048", |b| {
        b.iter(|| {
            mask.dilate(Footprint::Box {
                width: 48,
                height: 48,
            })
            .expect("dilate")
        })
    });
    let soft = disc(512).map(|v| f32::from(v) / 255.0);
    let kernel = GaussianKernel::torchvision(19, None).expect("kernel");
    group.bench_function("gaussian_blur19_512_f32", |b| {
        b.iter(|| soft.gaussian_blur(&kernel))
    });
    group.finish();
}

criterion_group!(benches, core_ops);
criterion_main!(benches);
