//! The SR stage at a 2048 px output on the full-size x4 upscaler UNet and f=4 VAE (random
//! weights written by `tools/reference/full_size_sr.py`, which also times PyTorch's calls): one
//! `Upscaler::upscale` run with 2 steps, timed per phase through the step callback (VAE encode +
//! first step, one step, decode + Poisson blend), the memory estimate against the measured peak
//! RSS, and the projected 20-step wall time.
//!
//! Each call takes minutes (the VAE's mid-block attends over 262,144 tokens at 2048 px: about
//! 140 TFLOP per encode or decode), so this is a plain timed run: criterion's minimum of 10
//! samples would take many hours. `HD_PAINTER_SR_TILE=256` runs the VAE in diffusers' tiles;
//! `HD_PAINTER_SR_PART=unet` times one guided UNet step alone (with its peak RSS), the call
//! `full_size_sr.py` times without `--vae`; `HD_PAINTER_SR_PART=vae` the VAE encode of a 2048 x
//! 2048 image and the decode of its latents alone, the calls `--vae` adds;
//! `HD_PAINTER_SR_PART=attention` the VAE mid-block's attention alone for its first
//! `HD_PAINTER_SR_QUERIES` (default 1024) queries against all 262,144 keys, the call
//! `full_size_sr.py --attention QUERIES` times (no weights needed).
//!
//! ```text
//! ~/.cache/hd-painter/venv/bin/python tools/reference/full_size_sr.py
//! cargo bench -p hd-painter-benches --features ndarray --bench sr_full
//! ```

use std::ops::ControlFlow;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use hd_painter_benches::{full_dir, peak_rss_gib, randn};
use hd_painter_core::{BackendKind, Filter, Image, Mask};
use hd_painter_models::{
    AutoencoderKl, Conditions, DEFAULT_SCORE_BUDGET, DefaultAttention, Unet2DConditionModel,
    VaeTiling, chunked_attention,
};
use hd_painter_sampling::{Hooks, NoiseSchedule, TextConditioning};
use hd_painter_sr::{SrSettings, Upscaler};

const GIB: f64 = (1u64 << 30) as f64;

fn main() {
    if std::env::var("HD_PAINTER_SR_PART").is_ok_and(|p| p == "attention") {
        return attention();
    }
    let dir = full_dir();
    if !dir.join("unet_x4").exists() {
        eprintln!(
            "skipping: no {}/unet_x4; run tools/reference/full_size_sr.py first",
            dir.display()
        );
        return;
    }
    let device = BackendKind::Flex.device().expect("flex");
    let start = Instant::now();
    let unet = Unet2DConditionModel::load(dir.join("unet_x4"), None, &device).expect("UNet");
    if std::env::var("HD_PAINTER_SR_PART").is_ok_and(|p| p == "unet") {
        return unet_step(&unet, &device);
    }
    let vae = AutoencoderKl::load(dir.join("vae_x4"), None, &device).expect("VAE");
    if std::env::var("HD_PAINTER_SR_PART").is_ok_and(|p| p == "vae") {
        return vae_calls(&vae, &device);
    }
    println!(
        "load: {:.1} s, peak RSS {:.2} GiB",
        start.elapsed().as_secs_f64(),
        peak_rss_gib()
    );
    let schedule = NoiseSchedule::x4_upscaler();
    let upscaler = Upscaler {
        unet: &unet,
        vae: &vae,
        schedule: &schedule,
    };

    let n = 2048u32;
    let rgb = (0..n * n * 3)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let original = Image::from_rgb8(n, n, rgb).expect("image");
    let hole = Mask::from_luma8(
        n,
        n,
        (0..n * n)
            .map(|i| {
                let (x, y) = (i % n, i / n);
                if (700..1400).contains(&x) && (600..1500).contains(&y) {
                    255
                } else {
                    0
                }
            })
            .collect(),
    )
    .expect("mask");
    let low = original.resize(512, 512, Filter::Bicubic).expect("low-res");
    let text = TextConditioning {
        positive: randn([1, 77, 1024], &device),
        negative: randn([1, 77, 1024], &device),
        prompt_tokens: vec![1],
        text_time: None,
    };
    let vae_tiling = std::env::var("HD_PAINTER_SR_TILE")
        .ok()
        .and_then(|t| t.parse().ok())
        .map(|tile| VaeTiling { tile });
    println!("VAE tiling: {vae_tiling:?}");
    let settings = SrSettings {
        steps: 2,
        vae_tiling,
        ..SrSettings::default()
    };
    let estimate = upscaler.memory_estimate((n, n), &settings);
    println!(
        "memory estimate: {:.2} GiB peak (weights {:.2}, VAE encode {:.2}, UNet step {:.2}, decode {:.2})",
        estimate.peak() as f64 / GIB,
        estimate.weights as f64 / GIB,
        estimate.vae_encode as f64 / GIB,
        estimate.unet_step as f64 / GIB,
        estimate.vae_decode as f64 / GIB
    );

    let start = Instant::now();
    let mut marks = Vec::new();
    let out = upscaler
        .upscale(
            &low,
            &original,
            &hole,
            &text,
            &settings,
            Hooks::new(&mut DefaultAttention::default(), &mut |_| {
                marks.push(start.elapsed().as_secs_f64());
                println!(
                    "step {} done at {:.1} s",
                    marks.len(),
                    start.elapsed().as_secs_f64()
                );
                ControlFlow::Continue(())
            }),
        )
        .expect("upscale");
    let total = start.elapsed().as_secs_f64();
    let step = marks[1] - marks[0];
    println!(
        "output {}x{}: {total:.1} s for 2 steps; VAE encode + set-up {:.1} s, one guided step (batch 2, 512x512 latent) {step:.1} s, decode + Poisson blend {:.1} s",
        out.width(),
        out.height(),
        marks[0] - step,
        total - marks[1]
    );
    println!("projected 20-step wall time: {:.0} s", total + 18.0 * step);
    println!("peak RSS: {:.2} GiB", peak_rss_gib());
}

/// One guided step of the x4 UNet (batch 2 at the 512x512 latent of a 2048 px output, class
/// label 20), timed alone like `full_size_sr.py`'s.
fn unet_step(unet: &Unet2DConditionModel, device: &burn::tensor::Device) {
    let sample = randn([2, 7, 512, 512], device);
    let context = randn([2, 77, 1024], device);
    let start = Instant::now();
    let out = unet
        .forward(
            sample,
            &[999.0, 999.0],
            &context,
            Conditions::labels(Some(&[20, 20])),
            &mut DefaultAttention::default(),
        )
        .expect("UNet step");
    hd_painter_benches::settle(out);
    println!(
        "UNet step, batch 2 at 512x512: {:.1} s, peak RSS {:.2} GiB",
        start.elapsed().as_secs_f64(),
        peak_rss_gib()
    );
}

/// The whole-image VAE encode of a 2048 x 2048 image and the decode of its latents, timed alone
/// like `full_size_sr.py --vae`'s (the UNet stays loaded, as there).
fn vae_calls(vae: &AutoencoderKl, device: &burn::tensor::Device) {
    let image = Tensor::random([1, 3, 2048, 2048], Distribution::Uniform(-1.0, 1.0), device);
    let start = Instant::now();
    let latents = vae.encode(image).expect("VAE encode").mean;
    hd_painter_benches::settle(latents.clone());
    println!(
        "VAE encode 2048x2048: {:.1} s, peak RSS {:.2} GiB",
        start.elapsed().as_secs_f64(),
        peak_rss_gib()
    );
    let start = Instant::now();
    hd_painter_benches::settle(vae.decode(latents).expect("VAE decode"));
    println!(
        "VAE decode to 2048x2048: {:.1} s, peak RSS {:.2} GiB",
        start.elapsed().as_secs_f64(),
        peak_rss_gib()
    );
}

/// The x4 VAE mid-block's attention at 2048 px (one head, 512 channels, 262,144 keys) for its
/// first `HD_PAINTER_SR_QUERIES` queries, through the VAE's call (`chunked_attention` with the
/// default score budget).
fn attention() {
    let queries: usize = std::env::var("HD_PAINTER_SR_QUERIES")
        .ok()
        .and_then(|q| q.parse().ok())
        .unwrap_or(1024);
    let (tokens, channels) = (512 * 512, 512);
    let device = BackendKind::Flex.device().expect("flex");
    let q = randn([1, 1, queries, channels], &device);
    let k = randn([1, 1, tokens, channels], &device);
    let v = randn([1, 1, tokens, channels], &device);
    let call = |q: Tensor<4>| {
        hd_painter_benches::settle(chunked_attention(
            q,
            k.clone(),
            v.clone(),
            DEFAULT_SCORE_BUDGET,
        ))
    };
    call(q.clone().slice([0..1, 0..1, 0..64.min(queries)]));
    let start = Instant::now();
    call(q);
    let seconds = start.elapsed().as_secs_f64();
    let flops = 4.0 * (queries * tokens * channels) as f64;
    println!(
        "attention, {queries} queries x {tokens} keys x {channels}: {seconds:.2} s, {:.0} GFLOP/s; \
         whole VAE call's attention ({tokens} queries) projected {:.0} s",
        flops / seconds / 1e9,
        seconds * tokens as f64 / queries as f64
    );
}
