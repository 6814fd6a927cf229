//! The full-size SD2 VAE and OpenCLIP-H text encoder (random weights written by
//! `tools/reference/full_size_models.py`, which also times PyTorch the same way): parity with
//! PyTorch's outputs on the same weights, VAE encode of a 512x512 image, VAE decode of a 64x64
//! latent, tokenizer + text encoder for one prompt, and peak RSS.
//!
//! ```text
//! ~/.cache/hd-painter/venv/bin/python tools/reference/full_size_models.py --only vae
//! ~/.cache/hd-painter/venv/bin/python tools/reference/full_size_models.py --only text
//! HD_PAINTER_BENCH=vae cargo bench -p hd-painter-benches --bench models_full
//! HD_PAINTER_BENCH=text cargo bench -p hd-painter-benches --bench models_full
//! ```
//!
//! `HD_PAINTER_BENCH` picks one part per process so that the peak RSS is that part's (both run
//! without it). The folder is `$HD_PAINTER_FULL_DIR` or `~/.cache/hd-painter/full`; without the
//! files the benchmark says so and measures nothing.

use criterion::{Criterion, criterion_group, criterion_main};
use hd_painter_benches::{full_dir, peak_rss_gib, read_f32, settle};
use hd_painter_core::BackendKind;
use hd_painter_models::{AutoencoderKl, ClipTextModel, ClipTokenizer};

/// The prompt `full_size_models.py` encodes.
const PROMPT: &str =
    "a red leather sofa in a sunlit living room, Full HD, 4K, high quality, high resolution";

fn wanted(part: &str) -> bool {
    std::env::var("HD_PAINTER_BENCH").map_or(true, |p| p == part)
}

fn report(what: &str, got: burn::tensor::Tensor<4>, expected: burn::tensor::Tensor<4>) {
    let scale: f32 = expected.clone().abs().max().into_scalar();
    let err: f32 = (got - expected).abs().max().into_scalar();
    println!("{what} parity with PyTorch: max |diff| = {err:.3e} (max |ref| {scale:.3})");
}

fn vae(c: &mut Criterion) {
    let dir = full_dir();
    let Ok(io) = std::fs::read(dir.join("vae_io.safetensors")) else {
        eprintln!("skipping the VAE: run tools/reference/full_size_models.py first");
        return;
    };
    let device = BackendKind::Flex.device().expect("flex");
    let vae = AutoencoderKl::load(dir.join("vae_sd2"), None, &device).expect("load");
    let image = read_f32::<4>(&io, "image", &device);
    let latent = read_f32::<4>(&io, "latent", &device);
    let encode = || vae.encode(image.clone()).expect("encode").mean;
    let decode = || vae.decode(latent.clone()).expect("decode");
    report("encode", encode(), read_f32(&io, "mean", &device));
    report("decode", decode(), read_f32(&io, "decoded", &device));
    let mut group = c.benchmark_group("vae_sd2_512");
    group.sample_size(10);
    group.bench_function("encode", |b| b.iter(|| settle(encode())));
    group.bench_function("decode", |b| b.iter(|| settle(decode())));
    group.finish();
    println!("peak RSS (VAE): {:.2} GiB", peak_rss_gib());
}

fn text(c: &mut Criterion) {
    let dir = full_dir();
    let Ok(io) = std::fs::read(dir.join("text_io.safetensors")) else {
        eprintln!("skipping the text encoder: run tools/reference/full_size_models.py first");
        return;
    };
    let device = BackendKind::Flex.device().expect("flex");
    let model = ClipTextModel::load(dir.join("text_sd2"), None, &device).expect("load");
    let tokenizer = ClipTokenizer::from_dir(dir.join("text_sd2")).expect("tokenizer");
    let encode = || {
        let ids: Vec<i64> = tokenizer
            .encode_padded(PROMPT)
            .into_iter()
            .map(i64::from)
            .collect();
        let n = ids.len();
        let ids = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(ids, [1, n]),
            &device,
        );
        model.forward(ids).expect("forward").last_hidden_state
    };
    let hidden = encode();
    report(
        "text encoder",
        hidden.unsqueeze_dim(0),
        read_f32::<3>(&io, "hidden", &device).unsqueeze_dim(0),
    );
    let mut group = c.benchmark_group("text_sd2");
    group.sample_size(20);
    group.bench_function("tokenizer", |b| b.iter(|| tokenizer.encode_padded(PROMPT)));
    group.bench_function("tokenizer_and_encoder", |b| b.iter(|| settle(encode())));
    group.finish();
    println!("peak RSS (text): {:.2} GiB", peak_rss_gib());
}

fn models(c: &mut Criterion) {
    if wanted("vae") {
        vae(c);
    }
    if wanted("text") {
        text(c);
    }
}

criterion_group!(benches, models);
criterion_main!(benches);
