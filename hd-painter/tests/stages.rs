//! One request, three ways to run: both stages are exactly the two-stage run of the parts, the
//! first stage alone and the SR stage alone are exactly their parts, and the SR stage on the
//! first stage's result is the two-stage run; every step names its stage; previews decode with
//! the stage's VAE; misuse is a typed error.

mod common;

use std::ops::ControlFlow;

use common::{device, fixtures, photo};
use hd_painter::{Error, Painter, Stages};
use hd_painter_core::{Filter, Image, Mask};
use hd_painter_models::{DefaultAttention, StableDiffusionModels};
use hd_painter_sampling::{HdPainter, Hooks, Stage};
use hd_painter_sr::{SrError, SrSettings, TwoStage};

fn models(folder: &str) -> StableDiffusionModels {
    StableDiffusionModels::load(fixtures().join("models").join(folder), None, &device()).unwrap()
}

fn painter() -> Painter {
    Painter::new(models("pipeline_hd_painter"))
        .with_upscaler(models("pipeline_x4"))
        .unwrap()
}

fn sr() -> SrSettings {
    SrSettings {
        steps: 2,
        long_side: 96,
        hole_dilation: 3,
        ..SrSettings::default()
    }
}

/// A 160 x 120 photo with a 20 px square hole.
fn inputs() -> (Image, Mask) {
    let hole = (0..160 * 120)
        .map(|i| {
            let (x, y) = (i % 160, i / 160);
            match (30..50).contains(&x) && (15..35).contains(&y) {
                true => 255,
                false => 0,
            }
        })
        .collect();
    (photo(160, 120), Mask::from_luma8(160, 120, hole).unwrap())
}

fn no_hooks(run: impl FnOnce(Hooks<'_>) -> Vec<Image>) -> Vec<Image> {
    let mut attention = DefaultAttention::default();
    run(Hooks::new(&mut attention, &mut |_| {
        ControlFlow::Continue(())
    }))
}

#[test]
fn both_stages_are_the_two_stage_run_and_every_step_names_its_stage() {
    let p = painter();
    let (image, mask) = inputs();
    let request = p
        .request(&image, &mask, "a red sofa")
        .hd_painter(Some(HdPainter::painta_only()))
        .steps(2)
        .seeds(vec![3, 4])
        .sr(sr());
    assert!(matches!(request.planned_stages(), Stages::Both));
    let mut seen = Vec::new();
    let mut previews = Vec::new();
    let mut attention = DefaultAttention::default();
    let out = request
        .run_with(Hooks::new(&mut attention, &mut |view| {
            seen.push((view.stage, view.seeds.to_vec(), view.step));
            let preview = p.preview(view).unwrap();
            let [_, _, h, w] = view.pred_x0.dims();
            previews.push((view.stage, (preview.width(), preview.height()), (w, h)));
            ControlFlow::Continue(())
        }))
        .unwrap();
    let (first, sr_stage) = (Stage::Inpaint, Stage::SuperResolution);
    let expected = [
        (first, vec![3, 4], 1),
        (first, vec![3, 4], 2),
        (sr_stage, vec![3], 1),
        (sr_stage, vec![3], 2),
        (sr_stage, vec![4], 1),
        (sr_stage, vec![4], 2),
    ];
    assert_eq!(seen, expected);
    let x4 = &p.upscaler.as_ref().unwrap().models;
    let (f1, f2) = (p.models.vae.downscale(), x4.vae.downscale());
    assert_ne!(f1, f2, "the fixtures' VAEs tell the stages apart");
    for (stage, (pw, ph), (w, h)) in previews {
        let f = if stage == first { f1 } else { f2 } as u32;
        assert_eq!((pw, ph), (w as u32 * f, h as u32 * f), "{stage:?}");
    }

    let (text, sr_text, settings) = (
        request.encode().unwrap(),
        request.encode_sr().unwrap(),
        sr(),
    );
    let two = TwoStage {
        inpainter: p.inpainter(),
        upscaler: p.upscaler().unwrap(),
        sr_text: &sr_text,
        sr: &settings,
    };
    let options = request.settings().unwrap();
    let direct = no_hooks(|hooks| two.run(&image, &mask, &text, &options, hooks).unwrap());
    assert_eq!(out, direct);
    assert_eq!(out.len(), 2);
    assert_ne!(out[0], out[1]);
}

#[test]
fn the_stages_alone_compose_into_both() {
    let p = painter();
    let (image, mask) = inputs();
    let request = |image, mask| {
        p.request(image, mask, "a red sofa")
            .hd_painter(Some(HdPainter::painta_only()))
            .steps(2)
            .seeds(vec![5])
            .sr(sr())
    };
    let both = request(&image, &mask).run().unwrap();
    // The first stage alone on the original at a quarter of the SR long side, as the two-stage
    // run sizes it, then the SR stage alone on that result.
    let (w, h) = sr().stage_size.size(160, 120, 96 / 4);
    let small = image.resize(w, h, Filter::Bicubic).unwrap();
    let small_mask = mask.resize(w, h, Filter::Bicubic).unwrap();
    let first = request(&small, &small_mask)
        .stages(Stages::First)
        .run()
        .unwrap();
    let direct_first = {
        let r = request(&small, &small_mask);
        let (text, options) = (r.encode().unwrap(), r.settings().unwrap());
        no_hooks(|hooks| {
            p.inpainter()
                .inpaint(&small, &small_mask, &text, &options, hooks)
                .unwrap()
        })
    };
    assert_eq!(first, direct_first);
    let upscaled = request(&image, &mask)
        .stages(Stages::Sr {
            first_stage: &first[0],
        })
        .run()
        .unwrap();
    assert_eq!(upscaled, both);
}

#[test]
fn the_sr_stage_needs_an_x4_upscaler_and_cancels_like_the_first() {
    let (image, mask) = inputs();
    let plain = Painter::new(models("pipeline_hd_painter"));
    let request = plain.request(&image, &mask, "x").steps(1);
    assert!(matches!(request.planned_stages(), Stages::First));
    let err = request.stages(Stages::Both).run().unwrap_err();
    assert!(
        matches!(&err, Error::Sr(SrError::InvalidInput(m)) if m.contains("Painter::with_upscaler")),
        "{err}"
    );
    let err = Painter::new(models("pipeline_hd_painter"))
        .with_upscaler(models("pipeline_sd"))
        .unwrap_err();
    assert!(err.to_string().contains("not an x4 upscaler"), "{err}");

    let p = painter();
    let mut attention = DefaultAttention::default();
    let err = p
        .request(&image, &mask, "x")
        .steps(1)
        .sr(sr())
        .run_with(Hooks::new(&mut attention, &mut |view| match view.stage {
            Stage::Inpaint => ControlFlow::Continue(()),
            Stage::SuperResolution => ControlFlow::Break(()),
        }))
        .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
}
