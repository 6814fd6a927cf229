//! One RASG step on the full-size SD2-inpainting UNet at 512 px (random weights written by
//! `tools/reference/full_size.py`): the guided model output plus RASG's gradient with respect
//! to x_t (forward + backward, CFG batch 2 at a 64x64 latent), against a plain guided step, with
//! the peak RSS. `tools/reference/bench_rasg.py` times PyTorch the same way.
//!
//! ```text
//! ~/.cache/hd-painter/venv/bin/python tools/reference/full_size.py
//! ~/.cache/hd-painter/venv/bin/python tools/reference/bench_rasg.py
//! cargo bench -p hd-painter-benches --bench rasg_full
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use hd_painter_benches::{full_dir, peak_rss_gib, read_f32, settle};
use hd_painter_core::{BackendKind, Mask};
use hd_painter_models::{DefaultAttention, Unet2DConditionModel};
use hd_painter_sampling::{
    LatentStrategy, ModelCall, NoiseSchedule, PromptFocus, Rasg, RasgSettings, StableInpainting,
    TextConditioning,
};

/// The score tokens of a 4-token prompt with the positive prompt appended (its end-of-text at
/// 17), as `prompt_token_indices` gives them.
const TOKENS: [usize; 5] = [1, 2, 3, 4, 17];

fn rasg_step(c: &mut Criterion) {
    let dir = full_dir();
    let Ok(io) = std::fs::read(dir.join("unet_io.safetensors")) else {
        eprintln!(
            "skipping: no {}; run tools/reference/full_size.py first",
            dir.display()
        );
        return;
    };
    let device = BackendKind::Flex.device().expect("flex");
    let unet =
        Unet2DConditionModel::load(dir.join("unet_sd2_inpainting"), None, &device).expect("load");
    let sample = read_f32::<4>(&io, "sample", &device);
    let context = read_f32::<3>(&io, "context", &device);
    let [_, _, h, w] = sample.dims();
    // One image: the first sample's latents and conditioning, the two contexts as the pair.
    let latents = sample.clone().slice([0..1, 0..4, 0..h, 0..w]);
    let strategy = StableInpainting::new(
        sample.clone().slice([0..1, 4..5, 0..h, 0..w]),
        sample.slice([0..1, 5..9, 0..h, 0..w]),
    );
    let text = TextConditioning {
        negative: context.clone().slice([0..1, 0..77, 0..1024]),
        positive: context.slice([1..2, 0..77, 0..1024]),
        prompt_tokens: TOKENS.to_vec(),
        text_time: None,
    };
    // A 512 px square with a 256 px hole in the middle.
    let hole = Mask::from_luma8(
        512,
        512,
        (0..512 * 512)
            .map(|i| {
                let (x, y) = (i % 512, i / 512);
                if (128..384).contains(&x) && (128..384).contains(&y) {
                    255
                } else {
                    0
                }
            })
            .collect(),
    )
    .expect("mask");
    let rasg = Rasg {
        settings: RasgSettings::default(),
        focus: PromptFocus::new(TOKENS.to_vec(), &hole, [h, w]).expect("focus"),
    };
    let schedule = NoiseSchedule::stable_diffusion();
    let call = ModelCall {
        unet: &unet,
        schedule: &schedule,
        text: &text,
        timestep: 979.0,
        input_scale: 1.0,
        ddim: Some((979, 959)),
        guidance_scale: 7.5,
        residuals: None,
    };

    let mut group = c.benchmark_group("sd2_inpainting_512px_step");
    group.sample_size(10);
    group.bench_function("plain_cfg_batch2", |b| {
        b.iter(|| {
            let out = call
                .guided(
                    strategy.model_input(latents.clone()),
                    None,
                    &mut DefaultAttention::default(),
                )
                .expect("step");
            settle(out)
        })
    });
    println!("peak RSS after the plain steps: {:.2} GiB", peak_rss_gib());
    group.bench_function("rasg_cfg_batch2", |b| {
        b.iter(|| {
            let (out, g) = rasg
                .output_and_gradient(
                    &call,
                    &strategy,
                    latents.clone(),
                    &mut DefaultAttention::default(),
                )
                .expect("RASG step");
            settle(out) + settle(g.expect("a gradient"))
        })
    });
    group.finish();
    println!("peak RSS after the RASG steps: {:.2} GiB", peak_rss_gib());
}

criterion_group!(benches, rasg_step);
criterion_main!(benches);
