//! The full-size SD2-inpainting UNet (random weights written by
//! `tools/reference/full_size.py`, which also times PyTorch the same way): load time, parity with
//! PyTorch's output on the same weights, one guided step (batch 2 at a 64x64 latent), one
//! unguided step (batch 1) and peak RSS; then batch 1 again with the weights and activations in
//! f16 and bf16 (`with_dtype`, `batch1_f16`, `batch1_bf16`) and with the weights stored in them,
//! computing in f32 (`with_weight_dtype`, `batch1_f16_weights`, `batch1_bf16_weights`, and
//! `batch2_bf16_weights`: bf16 weights multiply in bf16), each with its parity against PyTorch's
//! f32 output. `cargo bench ... -- bf16_weights` runs those rows only (the parity lines print for
//! every variant).
//!
//! ```text
//! ~/.cache/hd-painter/venv/bin/python tools/reference/full_size.py
//! cargo bench -p hd-painter-benches --bench unet_full
//! ```
//!
//! The folder is `$HD_PAINTER_FULL_DIR` or `~/.cache/hd-painter/full`; without it the benchmark
//! says so and measures nothing.

use std::time::Instant;

use burn::tensor::{FloatDType, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use hd_painter_benches::{full_inputs, peak_rss_gib, read_f32};
use hd_painter_core::BackendKind;
use hd_painter_models::{Conditions, DefaultAttention, Unet2DConditionModel};

fn unet_step(c: &mut Criterion) {
    let Some((dir, io)) = full_inputs("unet_io.safetensors", "full_size.py") else {
        return;
    };
    let device = BackendKind::Flex.device().expect("flex");
    let start = Instant::now();
    let unet =
        Unet2DConditionModel::load(dir.join("unet_sd2_inpainting"), None, &device).expect("load");
    println!(
        "load: {:.2} s, peak RSS {:.2} GiB",
        start.elapsed().as_secs_f64(),
        peak_rss_gib()
    );

    let sample = read_f32::<4>(&io, "sample", &device);
    let context = read_f32::<3>(&io, "context", &device);
    let expected = read_f32::<4>(&io, "output", &device);
    let timesteps = [999.0f32, 999.0];
    let run_on = |unet: &Unet2DConditionModel, sample: Tensor<4>, context: &Tensor<3>| {
        let n = sample.dims()[0];
        unet.forward(
            sample,
            &timesteps[..n],
            context,
            Conditions::default(),
            &mut DefaultAttention::default(),
        )
        .expect("forward")
    };
    let run = |sample: Tensor<4>, context: &Tensor<3>| run_on(&unet, sample, context);
    let step = || run(sample.clone(), &context);
    let (sample1, context1) = (sample.clone().slice(0..1), context.clone().slice(0..1));
    let scale: f32 = expected.clone().abs().max().into_scalar();
    let parity = |what: &str, out: Tensor<4>| {
        let err: f32 = (out - expected.clone()).abs().max().into_scalar();
        println!(
            "{what} parity with PyTorch f32: max |diff| = {err:.3e} (max |ref| {scale:.3}, \
             relative {:.3e})",
            err / scale.max(1.0)
        );
    };
    parity("f32", step());

    let mut group = c.benchmark_group("unet_sd2_inpainting_64x64");
    group.sample_size(10);
    group.bench_function("batch2", |b| b.iter(|| hd_painter_benches::settle(step())));
    group.bench_function("batch1", |b| {
        b.iter(|| hd_painter_benches::settle(run(sample1.clone(), &context1)))
    });
    println!("peak RSS after the f32 steps: {:.2} GiB", peak_rss_gib());
    for (name, dtype, half_activations) in [
        ("f16", FloatDType::F16, true),
        ("bf16", FloatDType::BF16, true),
        ("f16_weights", FloatDType::F16, false),
        ("bf16_weights", FloatDType::BF16, false),
    ] {
        let reduced = if half_activations {
            unet.clone().with_dtype(dtype)
        } else {
            unet.clone().with_weight_dtype(dtype)
        };
        parity(name, run_on(&reduced, sample.clone(), &context));
        group.bench_function(format!("batch1_{name}"), |b| {
            b.iter(|| hd_painter_benches::settle(run_on(&reduced, sample1.clone(), &context1)))
        });
        // bf16 weights multiply in bf16 (AMX / AVX512-BF16 where the CPU has them): the CFG
        // step too, against PyTorch's bf16 model.
        if name == "bf16_weights" {
            group.bench_function(format!("batch2_{name}"), |b| {
                b.iter(|| hd_painter_benches::settle(run_on(&reduced, sample.clone(), &context)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, unet_step);
criterion_main!(benches);
