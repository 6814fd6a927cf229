//! `PixelPainter`: RePaint as published on the tiny pixel-space fixtures (the DDPM folder as
//! google/ddpm-ema-celebahq-256 was published, flat, and a converted guided-diffusion folder):
//! folder detection, the square around the hole inpainted at the model's side and only the
//! hole's pixels written back, seeds reproducible, and every bad request a typed error. The
//! sampler itself is checked against diffusers and the official code in hd-painter-sampling.

use std::ops::ControlFlow;
use std::path::PathBuf;

use hd_painter::{
    BackendKind, Image, Mask, PixelModel, PixelPainter, PixelRepaintMode, PixelRepaintSettings,
    PixelRequest,
};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/models")
        .join(name)
}

fn painter(name: &str) -> PixelPainter {
    PixelPainter::load(dir(name), &BackendKind::Flex.device().unwrap()).unwrap()
}

fn inputs() -> (Image, Mask) {
    let (w, h) = (40u32, 30u32);
    let image =
        Image::from_rgb8(w, h, (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect()).unwrap();
    let hole = (0..w * h)
        .map(|i| match ((i % w), (i / w)) {
            (10..18, 8..14) => 255,
            (20, 8..14) => 100, // below 128: kept
            _ => 0,
        })
        .collect();
    (image, Mask::from_luma8(w, h, hole).unwrap())
}

fn request(
    settings: PixelRepaintSettings,
    seeds: Vec<u64>,
    class_label: Option<i64>,
) -> PixelRequest {
    PixelRequest {
        settings,
        seeds,
        class_label,
        padding: 2,
    }
}

fn short(mode: PixelRepaintMode) -> PixelRepaintSettings {
    PixelRepaintSettings {
        steps: 10,
        jump_length: 3,
        jump_n_sample: 2,
        mode,
        clip_denoised: true,
    }
}

fn changed(a: &Image, b: &Image) -> Vec<(usize, usize)> {
    let w = a.width() as usize;
    a.raster()
        .as_slice()
        .chunks_exact(3)
        .zip(b.raster().as_slice().chunks_exact(3))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| (i % w, i / w))
        .collect()
}

#[test]
fn folders_are_detected() {
    assert!(PixelPainter::is_pixel_folder(dir("unet2d_ddpm")));
    assert!(PixelPainter::is_pixel_folder(dir("guided_repaint")));
    assert!(!PixelPainter::is_pixel_folder(dir("pipeline_hd_painter")));
    assert!(!PixelPainter::is_pixel_folder(dir("no-such-folder")));
}

#[test]
fn only_the_hole_changes_and_seeds_reproduce() {
    let (image, mask) = inputs();
    for (name, label) in [("unet2d_ddpm", None), ("guided_repaint", Some(7))] {
        let painter = painter(name);
        assert_eq!(painter.side(), if label.is_some() { 16 } else { 8 });
        let settings = PixelRepaintSettings {
            steps: 10,
            jump_length: 3,
            jump_n_sample: 2,
            ..painter.default_settings()
        };
        let mut steps = vec![];
        let out = painter
            .inpaint(
                &image,
                &mask,
                &request(settings, vec![1, 2], label),
                &mut |s| {
                    steps.push((s.step, s.total));
                    ControlFlow::Continue(())
                },
            )
            .unwrap();
        assert_eq!(out.len(), 2);
        // 10 steps and, with jumps of 3 visited twice, 9 more.
        assert_eq!(steps.len(), 19, "{name}");
        assert_eq!(steps.last(), Some(&(19, 19)));
        for img in &out {
            assert_eq!((img.width(), img.height()), (40, 30));
            let diff = changed(&image, img);
            assert!(!diff.is_empty(), "{name}: the hole is filled");
            assert!(
                diff.iter()
                    .all(|&(x, y)| (10..18).contains(&x) && (8..14).contains(&y)),
                "{name}: {diff:?}"
            );
        }
        assert_ne!(out[0], out[1], "{name}: seeds differ");
        let again = painter
            .inpaint(
                &image,
                &mask,
                &request(settings, vec![2], label),
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap();
        assert_eq!(
            again[0], out[1],
            "{name}: seed 2 alone gives the same image"
        );
    }
    assert!(matches!(
        painter("guided_repaint").model(),
        PixelModel::Guided(_)
    ));
}

#[test]
fn bad_requests_are_typed_errors() {
    let (image, mask) = inputs();
    let ddpm = painter("unet2d_ddpm");
    let guided = painter("guided_repaint");
    let go = |p: &PixelPainter, r: PixelRequest, m: &Mask| {
        p.inpaint(&image, m, &r, &mut |_| ControlFlow::Continue(()))
            .unwrap_err()
            .to_string()
    };
    let diffusers = short(PixelRepaintMode::Diffusers { eta: 0.0 });
    let official = short(PixelRepaintMode::Official);
    assert!(go(&guided, request(official, vec![1], None), &mask).contains("class-conditional"));
    assert!(go(&guided, request(official, vec![1], Some(1000)), &mask).contains("0..1000"));
    assert!(
        go(&ddpm, request(diffusers, vec![1], Some(3)), &mask).contains("not class-conditional")
    );
    assert!(go(&ddpm, request(official, vec![1], None), &mask).contains("learned variance"));
    assert!(go(&ddpm, request(diffusers, vec![], None), &mask).contains("no seeds"));
    let empty = Mask::from_luma8(40, 30, vec![100; 40 * 30]).unwrap();
    assert!(go(&ddpm, request(diffusers, vec![1], None), &empty).contains("no pixel"));
    let small = Mask::from_luma8(20, 30, vec![255; 20 * 30]).unwrap();
    assert!(go(&ddpm, request(diffusers, vec![1], None), &small).contains("RePaint mask"));
    // Cancelled after the third step.
    let e = ddpm
        .inpaint(
            &image,
            &mask,
            &request(diffusers, vec![1], None),
            &mut |s| match s.step {
                3 => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            },
        )
        .unwrap_err();
    assert!(e.is_cancelled(), "{e}");
    // A folder without its scheduler config.
    let tmp = std::env::temp_dir().join(format!("hd-painter-pixel-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(dir("unet2d_ddpm").join(f), tmp.join(f)).unwrap();
    }
    let e = PixelPainter::load(&tmp, &BackendKind::Flex.device().unwrap()).unwrap_err();
    assert!(e.to_string().contains("scheduler"), "{e}");
    std::fs::remove_dir_all(tmp).unwrap();
}
