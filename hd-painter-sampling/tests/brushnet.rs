//! BrushNet's sampling against `tools/reference/brushnet_ref.py` with diffusers' DDIMScheduler
//! (the tiny 4-channel UNet and a branch in the published layout): 3 steps with CFG 7.5, the
//! branch on both guidance halves and the control window 0.3 - 1 (the first step without the
//! branch), latents within 1e-3 at every step; the official output blend within one level; and
//! the image-level pipeline with `Method::BrushNet`.

mod common;

use std::ops::ControlFlow;

use common::{Golden, assert_close, device, fixtures};
use hd_painter_core::{Image, Mask, Raster};
use hd_painter_models::{AutoencoderKl, BrushNetModel, DefaultAttention, Unet2DConditionModel};
use hd_painter_sampling::{
    BrushNetLatents, BrushNetSettings, ClassifierFree, HdPainter, InpaintOptions, Inpainter,
    Method, NoiseSchedule, PasteBack, Sampler, SamplerSettings, SamplingError, TextConditioning,
    brushnet_blend,
};
use hd_painter_sampling::{Hooks, Stage};

fn models() -> (Unet2DConditionModel, BrushNetModel) {
    let device = device();
    (
        Unet2DConditionModel::load(fixtures().join("models/unet_sd2"), None, &device).unwrap(),
        BrushNetModel::load(fixtures().join("models/brushnet"), None, &device).unwrap(),
    )
}

#[test]
fn the_control_window_follows_the_official_rule() {
    let s = BrushNetSettings {
        control_start: 0.0,
        control_end: 0.7,
        ..BrushNetSettings::default()
    };
    assert_eq!(
        (0..3).map(|i| s.active(i, 3)).collect::<Vec<_>>(),
        [true, true, false]
    );
    let s = BrushNetSettings {
        control_start: 0.5,
        control_end: 1.0,
        ..BrushNetSettings::default()
    };
    assert_eq!(
        (0..4).map(|i| s.active(i, 4)).collect::<Vec<_>>(),
        [false, false, true, true]
    );
    assert!((0..50).all(|i| BrushNetSettings::default().active(i, 50)));
}

#[test]
fn three_guided_steps_match_the_reference_loop() {
    let device = device();
    let (unet, branch) = models();
    let g = Golden::at("models/brushnet/brushnet.safetensors");
    let text = TextConditioning {
        positive: g.tensor("encoder_hidden_states", &device),
        negative: g.tensor("negative", &device),
        prompt_tokens: vec![],
        text_time: None,
    };
    let settings = BrushNetSettings {
        control_start: 0.3,
        ..BrushNetSettings::default()
    };
    let mut strategy =
        BrushNetLatents::new(&branch, g.tensor("condition", &device), settings).unwrap();
    let ddim = SamplerSettings {
        steps: 3,
        ..SamplerSettings::default()
    };
    let mut seen = 0;
    Sampler {
        unet: &unet,
        schedule: &NoiseSchedule::stable_diffusion(),
        text: &text,
        seeds: &[0],
        stage: Stage::Inpaint,
        hooks: Hooks::new(&mut DefaultAttention::default(), &mut |view| {
            let (_, expected) = g.f32s(&format!("loop.latents.{seen}"));
            assert_close(view.latents, &expected, 1e-3, &format!("step {seen}"));
            seen += 1;
            ControlFlow::Continue(())
        }),
    }
    .run(
        &ddim,
        &mut strategy,
        &ClassifierFree,
        g.tensor("loop.initial", &device),
    )
    .unwrap();
    assert_eq!(seen, 3);
}

#[test]
fn the_output_blend_matches_the_official_one() {
    let g = Golden::at("models/brushnet/brushnet.safetensors");
    let image = |key: &str| {
        let (shape, v) = g.get(key);
        let raster = Raster::from_vec(
            shape[1] as u32,
            shape[0] as u32,
            3,
            v.iter().map(|&x| x as u8).collect(),
        )
        .unwrap();
        Image::from_raster(raster).unwrap()
    };
    let (shape, hole) = g.get("blend.hole");
    let hole = Mask::from_luma8(
        shape[1] as u32,
        shape[0] as u32,
        hole.iter().map(|&x| x as u8).collect(),
    )
    .unwrap();
    let out = brushnet_blend(&image("blend.init"), &image("blend.generated"), &hole).unwrap();
    let expected = image("blend.out");
    let diffs: Vec<i32> = out
        .raster()
        .as_slice()
        .iter()
        .zip(expected.raster().as_slice())
        .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
        .collect();
    assert!(
        diffs.iter().all(|&d| d <= 1),
        "max {}",
        diffs.iter().max().unwrap()
    );
    // Truncation after a float blur: a level off only where the product lands on an integer.
    assert!(
        diffs.iter().filter(|&&d| d > 0).count() * 100 <= diffs.len(),
        "too many off by one"
    );
}

#[test]
fn the_image_pipeline_runs_brushnet_and_reports_misuse() {
    let device = device();
    let (unet, branch) = models();
    let vae = AutoencoderKl::load(fixtures().join("models/vae_sd"), None, &device).unwrap();
    let schedule = NoiseSchedule::stable_diffusion();
    let (w, h) = (60, 21);
    let image =
        Image::from_rgb8(w, h, (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect()).unwrap();
    let mask = Mask::from_luma8(
        w,
        h,
        (0..w * h)
            .map(|i| if (20..30).contains(&(i % w)) { 255 } else { 0 })
            .collect(),
    )
    .unwrap();
    let text = TextConditioning {
        positive: burn::tensor::Tensor::zeros([1, 77, 32], &device),
        negative: burn::tensor::Tensor::zeros([1, 77, 32], &device),
        prompt_tokens: vec![1],
        text_time: None,
    };
    let options = InpaintOptions {
        method: Method::BrushNet(BrushNetSettings::default()),
        sampler: SamplerSettings {
            steps: 2,
            ..SamplerSettings::default()
        },
        paste_back: Some(PasteBack::BrushNet),
        ..InpaintOptions::default()
    };
    let run = |inpainter: Inpainter<'_>, options: &InpaintOptions| {
        inpainter.inpaint(
            &image,
            &mask,
            &text,
            options,
            Hooks::new(&mut DefaultAttention::default(), &mut |_| {
                ControlFlow::Continue(())
            }),
        )
    };
    let with_branch = Inpainter::new(&unet, &vae, &schedule).with_brushnet(&branch);
    let out = run(with_branch, &options).unwrap();
    assert_eq!((out[0].width(), out[0].height()), (w, h));
    // Far from the hole (beyond the 21x21 blur), the original exactly.
    let (o, i) = (out[0].raster(), image.raster());
    for y in 0..h as usize {
        for x in [0usize, 8, 59] {
            for c in 0..3 {
                assert_eq!(o.get(x, y, c), i.get(x, y, c));
            }
        }
    }
    let err = run(Inpainter::new(&unet, &vae, &schedule), &options).unwrap_err();
    assert!(
        matches!(&err, SamplingError::InvalidInput(m) if m.contains("with_brushnet")),
        "{err}"
    );
    let rasg = InpaintOptions {
        hd_painter: Some(HdPainter::rasg_only()),
        ..options.clone()
    };
    let err = run(with_branch, &rasg).unwrap_err().to_string();
    assert!(err.contains("RASG") && err.contains("BrushNet"), "{err}");
    // The branch's condition must have its channel count.
    assert!(
        BrushNetLatents::new(
            &branch,
            burn::tensor::Tensor::zeros([1, 4, 2, 2], &device),
            BrushNetSettings::default()
        )
        .is_err()
    );
}
