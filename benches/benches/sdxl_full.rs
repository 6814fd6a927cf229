//! The full-size SDXL-inpainting UNet (2.6 B parameters, random weights written by
//! `tools/reference/full_size_sdxl.py`, which times PyTorch the same way) at a 128x128 latent
//! with SDXL's added conditions: load time, parity with PyTorch's output on the same weights, the
//! guided step (batch 2) and the unguided one (batch 1) in f32, then with the weights stored in
//! bf16 computing in f32 (`with_weight_dtype`: the CPU default the README recommends for SDXL),
//! each the median of 3 calls as the script times PyTorch, with peak RSS. Criterion then samples
//! the bf16-weight unguided step (10 calls). With `HD_PAINTER_SDXL_DTYPE=bf16` the f32 rows are
//! skipped and the weights load straight into bf16 (`load_with_weight_dtype`): the peak RSS of
//! the bf16 path alone.
//!
//! ```text
//! ~/.cache/hd-painter/venv/bin/python tools/reference/full_size_sdxl.py --half
//! cargo bench -p hd-painter-benches --bench sdxl_full
//! HD_PAINTER_SDXL_DTYPE=bf16 cargo bench -p hd-painter-benches --bench sdxl_full
//! ```
//!
//! The folder is `$HD_PAINTER_FULL_DIR` or `~/.cache/hd-painter/full`; without it the benchmark
//! says so and measures nothing.

use std::time::Instant;

use burn::tensor::{FloatDType, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use hd_painter_benches::{full_inputs, peak_rss_gib, read_f32, settle};
use hd_painter_core::BackendKind;
use hd_painter_models::{Conditions, DefaultAttention, Unet2DConditionModel};

/// The median of three timed calls of `f`, in seconds.
fn median_of_3(mut f: impl FnMut() -> f32) -> f64 {
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[1]
}

fn sdxl_step(c: &mut Criterion) {
    let Some((dir, io)) = full_inputs("unet_sdxl_io.safetensors", "full_size_sdxl.py") else {
        return;
    };
    let device = BackendKind::Flex.device().expect("flex");
    let bf16_only = std::env::var("HD_PAINTER_SDXL_DTYPE").is_ok_and(|d| d == "bf16");
    let stored = match bf16_only {
        true => FloatDType::BF16,
        false => FloatDType::F32,
    };
    let start = Instant::now();
    let unet = Unet2DConditionModel::load_with_weight_dtype(
        dir.join("unet_sdxl_inpainting"),
        None,
        stored,
        &device,
    )
    .expect("load");
    println!(
        "load: {:.2} s, peak RSS {:.2} GiB",
        start.elapsed().as_secs_f64(),
        peak_rss_gib()
    );
    let sample = read_f32::<4>(&io, "sample", &device);
    let context = read_f32::<3>(&io, "context", &device);
    let text_embeds = read_f32::<2>(&io, "text_embeds", &device);
    let time_ids: Vec<f32> = read_f32::<2>(&io, "time_ids", &device)
        .into_data()
        .try_to_vec::<f32>()
        .expect("time ids");
    let expected = read_f32::<4>(&io, "output", &device);
    let timesteps = [999.0f32, 999.0];
    let run = |unet: &Unet2DConditionModel, n: usize| {
        let embeds = text_embeds.clone().slice(0..n);
        unet.forward(
            sample.clone().slice(0..n),
            &timesteps[..n],
            &context.clone().slice(0..n),
            Conditions::text_time(&embeds, &time_ids[..n * 6]),
            &mut DefaultAttention::default(),
        )
        .expect("forward")
    };
    let scale: f32 = expected.clone().abs().max().into_scalar();
    let parity = |what: &str, out: Tensor<4>| {
        let n = out.dims()[0];
        let err: f32 = (out - expected.clone().slice(0..n))
            .abs()
            .max()
            .into_scalar();
        println!(
            "{what} parity with PyTorch f32: max |diff| = {err:.3e} (max |ref| {scale:.3}, \
             relative {:.3e})",
            err / scale.max(1.0)
        );
    };
    let bf16 = match bf16_only {
        true => unet,
        false => {
            parity("f32", run(&unet, 2));
            let batch2 = median_of_3(|| settle(run(&unet, 2)));
            let batch1 = median_of_3(|| settle(run(&unet, 1)));
            println!(
                "f32: batch 2 {batch2:.2} s, batch 1 {batch1:.2} s (medians of 3), peak RSS \
                 {:.2} GiB",
                peak_rss_gib()
            );
            unet.with_weight_dtype(FloatDType::BF16)
        }
    };
    parity("bf16 weights", run(&bf16, 1));
    let batch1 = median_of_3(|| settle(run(&bf16, 1)));
    let batch2 = median_of_3(|| settle(run(&bf16, 2)));
    println!(
        "bf16 weights: batch 2 {batch2:.2} s, batch 1 {batch1:.2} s (medians of 3), peak RSS \
         {:.2} GiB ({})",
        peak_rss_gib(),
        match bf16_only {
            true => "loaded straight into bf16",
            false => "the f32 model included",
        }
    );
    let mut group = c.benchmark_group("unet_sdxl_inpainting_128x128");
    group.sample_size(10);
    group.bench_function("batch1_bf16_weights", |b| b.iter(|| settle(run(&bf16, 1))));
    group.finish();
}

criterion_group!(benches, sdxl_step);
criterion_main!(benches);
