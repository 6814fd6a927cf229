//! HD-Painter's Poisson blend of a 2048 x 2048 RGB result into the original, with a large
//! non-convex hole; `tools/reference/bench_poisson.py` times OpenCV's seamlessClone through the
//! same wrapper.
//!
//! ```text
//! cargo bench -p hd-painter-benches --features ndarray --bench poisson
//! ~/.cache/hd-painter/venv/bin/python tools/reference/bench_poisson.py
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use hd_painter_benches::peak_rss_gib;
use hd_painter_core::{Image, Mask};

const SIZE: u32 = 2048;

/// The same textures and hole as bench_poisson.py.
fn inputs() -> (Image, Image, Mask) {
    let n = SIZE as usize;
    let texture = |phase: f64| -> Image {
        let mut v = Vec::with_capacity(n * n * 3);
        for y in 0..n {
            for x in 0..n {
                for c in 0..3 {
                    let t = (x as f64 / (7.0 + c as f64) + phase).sin()
                        * (y as f64 / (11.0 + c as f64) - phase).cos();
                    v.push((128.0 + 100.0 * t) as u8);
                }
            }
        }
        Image::from_rgb8(SIZE, SIZE, v).expect("image")
    };
    let hole = (0..n * n)
        .map(|i| {
            let (x, y) = ((i % n) as f64 - 1000.0, (i / n) as f64 - 1100.0);
            let r = x.hypot(y);
            if r < 600.0 && !(x > 100.0 && y.abs() < 150.0) {
                255
            } else {
                0
            }
        })
        .collect();
    (
        texture(0.0),
        texture(1.3),
        Mask::from_luma8(SIZE, SIZE, hole).expect("mask"),
    )
}

fn poisson_2k(c: &mut Criterion) {
    let (original, generated, hole) = inputs();
    let before = peak_rss_gib();
    let mut group = c.benchmark_group("poisson_blend_2048");
    group.sample_size(10);
    group.bench_function("hd_painter_poisson_blend", |b| {
        b.iter(|| hd_painter_sr::poisson_blend(&original, &generated, &hole).expect("blend"))
    });
    group.finish();
    println!(
        "peak RSS: {:.2} GiB ({:.2} GiB before the blends: inputs and set-up)",
        peak_rss_gib(),
        before
    );
}

criterion_group!(benches, poisson_2k);
criterion_main!(benches);
