//! The one-call entry point is the composable parts with HD-Painter's reference settings: the
//! same images as `Inpainter::inpaint` with `InpaintOptions::hd_painter(HdPainter::full())` and
//! `encode_hd_painter_prompts`, and each override lands where the method keeps it.

use std::ops::ControlFlow;
use std::path::PathBuf;

use hd_painter::Painter;
use hd_painter_core::{BackendKind, Image, Mask};
use hd_painter_models::{DefaultAttention, StableDiffusionModels};
use hd_painter_sampling::Hooks;
use hd_painter_sampling::{
    HdPainter, InpaintOptions, Method, RepaintSettings, SchedulerKind, encode_hd_painter_prompts,
};

fn painter() -> Painter {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/pipeline_hd_painter");
    Painter::new(
        StableDiffusionModels::load(dir, None, &BackendKind::Flex.device().unwrap()).unwrap(),
    )
}

fn inputs() -> (Image, Mask) {
    let image = Image::from_rgb8(
        24,
        20,
        (0..24 * 20 * 3).map(|i| (i * 7 % 251) as u8).collect(),
    )
    .unwrap();
    let mask = Mask::from_luma8(
        24,
        20,
        (0..24 * 20)
            .map(|i| if (8..16).contains(&(i % 24)) { 255 } else { 0 })
            .collect(),
    )
    .unwrap();
    (image, mask)
}

#[test]
fn the_default_request_is_hd_painters_reference_run() {
    let p = painter();
    let (image, mask) = inputs();
    let request = p.request(&image, &mask, "a red sofa").steps(3);
    let mut expected = InpaintOptions::hd_painter(HdPainter::full());
    expected.sampler.steps = 3;
    assert_eq!(
        format!("{:?}", request.settings().unwrap()),
        format!("{expected:?}")
    );
    let text = encode_hd_painter_prompts(&p.models, "a red sofa").unwrap();
    let direct = p
        .inpainter()
        .inpaint(
            &image,
            &mask,
            &text,
            &expected,
            Hooks::new(&mut DefaultAttention::default(), &mut |_| {
                ControlFlow::Continue(())
            }),
        )
        .unwrap();
    assert_eq!(request.run().unwrap(), direct);
}

#[test]
fn overrides_land_where_the_method_keeps_them() {
    let p = painter();
    let (image, mask) = inputs();
    let base = || {
        p.request(&image, &mask, "x")
            .steps(7)
            .guidance_scale(3.0)
            .eta(0.5)
    };
    // RASG on: eta is RASG's, DDIM's stays 0.
    let s = base().settings().unwrap();
    assert_eq!(
        (
            s.sampler.steps,
            s.sampler.guidance_scale,
            s.sampler.scheduler.kind
        ),
        (7, 3.0, SchedulerKind::Ddim { eta: 0.0 })
    );
    assert_eq!(s.hd_painter.unwrap().rasg.unwrap().eta, 0.5);
    // No RASG: DDIM's eta.
    let s = base()
        .hd_painter(Some(HdPainter::painta_only()))
        .settings()
        .unwrap();
    assert_eq!(s.sampler.scheduler.kind, SchedulerKind::Ddim { eta: 0.5 });
    // RePaint keeps its own steps, guidance and eta, whatever the order of the calls.
    let s = base()
        .method(Method::Repaint(RepaintSettings::default()))
        .hd_painter(None)
        .settings()
        .unwrap();
    match s.method {
        Method::Repaint(r) => assert_eq!((r.steps, r.guidance_scale, r.eta), (7, 3.0, 0.5)),
        other => panic!("{other:?}"),
    }
    // Plain methods encode empty positive and negative prompts unless given.
    let plain = base().hd_painter(None);
    let text = plain.encode().unwrap();
    let empty = p.models.encode_prompt("").unwrap();
    let diff: f32 = (text.negative - empty).abs().max().into_scalar();
    assert_eq!(diff, 0.0);
}

#[test]
fn a_painter_with_a_brushnet_branch_runs_brushnets_reference_settings() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models");
    let device = BackendKind::Flex.device().unwrap();
    let models = StableDiffusionModels::load(fixtures.join("pipeline_sd"), None, &device).unwrap();
    let branch =
        hd_painter_models::BrushNetModel::load(fixtures.join("brushnet"), None, &device).unwrap();
    let p = Painter::new(models).with_brushnet(branch);
    let (image, mask) = inputs();
    let request = p.request(&image, &mask, "a red sofa").steps(2);
    let s = request.settings().unwrap();
    assert!(matches!(s.method, Method::BrushNet(_)), "{:?}", s.method);
    assert_eq!(s.paste_back, Some(hd_painter_sampling::PasteBack::BrushNet));
    assert!(s.hd_painter.is_none());
    let out = request.run().unwrap();
    assert_eq!(
        (out[0].width(), out[0].height()),
        (image.width(), image.height())
    );
}

#[test]
fn a_2022_layout_sd2_inpainting_folder_paints_what_its_modern_twin_paints() {
    let device = BackendKind::Flex.device().unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models");
    let published = Painter::new(
        StableDiffusionModels::load(
            fixtures.join("published/sd2_inpainting_2022"),
            None,
            &device,
        )
        .unwrap(),
    );
    let (image, mask) = inputs();
    let run = |p: &Painter| {
        p.request(&image, &mask, "a red sofa")
            .method(Method::StableInpainting)
            .steps(3)
            .guidance_scale(7.5)
            .seeds(vec![11])
            .run()
            .unwrap()
    };
    assert_eq!(run(&published), run(&painter()));
}
