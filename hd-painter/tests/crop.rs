//! Inpainting only the area around the hole: the box against diffusers'
//! `VaeImageProcessor.get_crop_region` (`tools/reference/generate.py`, group `crop`: single,
//! border-touching, several and faint holes, paddings 0 to 300, four processing aspects), and
//! the pipeline with `crop_to_mask` on the tiny fixture model: the sampling runs at the crop's
//! processing size, the output keeps the input's size, and the original is kept exactly outside
//! the box (and, with the default paste-back, outside the feathered hole).

mod common;

use common::{Golden, painter, photo};
use hd_painter::Painter;
use hd_painter_core::Mask;
use hd_painter_models::DefaultAttention;
use hd_painter_sampling::{
    CropBox, CropSettings, HdPainter, Hooks, InpaintOptions, Method, StepView, crop_region,
    crop_regions,
};
use std::ops::ControlFlow;

#[test]
fn the_box_is_diffusers_get_crop_region() {
    let g = Golden::open("crop");
    let (shape, cases) = g.get("cases");
    assert_eq!(shape[1], 8);
    for case in cases.chunks_exact(8) {
        let [k, pad, w, h, x1, y1, x2, y2] = std::array::from_fn(|i| case[i] as u32);
        let (mshape, values) = g.get(&format!("mask_{k}"));
        let mask = Mask::from_luma8(
            mshape[1] as u32,
            mshape[0] as u32,
            values.into_iter().map(|v| v as u8).collect(),
        )
        .unwrap();
        assert_eq!(
            crop_region(&mask, pad, (w, h)),
            Some(CropBox { x1, y1, x2, y2 }),
            "mask {k}, padding {pad}, size {w}x{h}"
        );
    }
    assert_eq!(cases.len() / 8, 24 * 16);
    let empty = Mask::from_luma8(10, 10, vec![0; 100]).unwrap();
    assert_eq!(crop_region(&empty, 8, (512, 512)), None);
}

/// Two small holes in a 300 x 200 photo: one box holds both.
fn holes(width: u32, height: u32) -> Mask {
    let v = (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            let a = (100..116).contains(&x) && (60..72).contains(&y);
            let b = (130..140).contains(&x) && (90..96).contains(&y);
            if a || b { 255 } else { 0 }
        })
        .collect();
    Mask::from_luma8(width, height, v).unwrap()
}

#[test]
fn a_cropped_run_samples_the_box_at_the_model_size_and_keeps_the_rest() {
    let p = painter("pipeline_hd_painter");
    let (image, mask) = (photo(300, 200), holes(300, 200));
    let crop = CropSettings {
        padding: 8,
        size: (64, 48),
        each_hole: false,
    };
    let b = crop_region(&mask, crop.padding, crop.size).unwrap();
    assert_eq!(b.size(), (69, 52), "the box of both holes, widened to 4:3");
    for (paste_back, hd) in [
        (true, None),
        (false, None),
        (false, Some(HdPainter::full())),
    ] {
        let mut options = match hd {
            Some(variant) => InpaintOptions::hd_painter(variant),
            None => InpaintOptions {
                method: Method::StableInpainting,
                ..InpaintOptions::default()
            },
        };
        options.crop_to_mask = Some(crop);
        options.sampler.steps = 2;
        if !paste_back {
            options.paste_back = None;
        }
        let text = painter_text(&p);
        let mut latent_sizes = Vec::new();
        let out = p
            .inpainter()
            .inpaint(
                &image,
                &mask,
                &text,
                &options,
                Hooks::new(&mut DefaultAttention::default(), &mut |view: &StepView<
                    '_,
                >| {
                    let [_, _, h, w] = view.latents.dims();
                    latent_sizes.push((w, h));
                    ControlFlow::Continue(())
                }),
            )
            .unwrap();
        let f = p.models.vae.downscale();
        assert_eq!(
            latent_sizes,
            vec![(64 / f, 48 / f); 2],
            "sampled at 64 x 48"
        );
        let out = &out[0];
        assert_eq!((out.width(), out.height()), (300, 200));
        let inside = |x: u32, y: u32| (b.x1..b.x2).contains(&x) && (b.y1..b.y2).contains(&y);
        let (o, i) = (out.raster(), image.raster());
        let mut changed = 0;
        for y in 0..200 {
            for x in 0..300 {
                let same = (0..3).all(|c| o.get(x, y, c) == i.get(x, y, c));
                if !inside(x as u32, y as u32) {
                    assert!(same, "({x}, {y}) outside the box changed ({hd:?})");
                } else if !same {
                    changed += 1;
                }
                // Without a paste-back setting the box is overlaid on the hole alone
                // (diffusers' `apply_overlay`); with the default one, only the dilated,
                // feathered hole changes.
                if !paste_back && mask.raster().get(x, y, 0) == 0 {
                    assert!(same, "({x}, {y}) outside the hole changed ({hd:?})");
                }
                if paste_back && mask.raster().get(x, y, 0) == 0 {
                    let near = (x as i64 - 108).abs() < 30 || (x as i64 - 135).abs() < 30;
                    assert!(same || near, "({x}, {y}) far from the holes changed");
                }
            }
        }
        assert!(changed > 0, "the box was inpainted ({hd:?})");
    }
}

fn painter_text(p: &Painter) -> hd_painter_sampling::TextConditioning {
    let image = photo(8, 8);
    let mask = Mask::from_luma8(8, 8, vec![255; 64]).unwrap();
    p.request(&image, &mask, "a red sofa").encode().unwrap()
}

#[test]
fn a_padding_larger_than_the_image_and_border_holes_are_clipped() {
    let v = (0..80 * 50)
        .map(|i| if i % 80 >= 75 { 255 } else { 0 })
        .collect();
    let border = Mask::from_luma8(80, 50, v).unwrap();
    let b = crop_region(&border, 1000, (512, 512)).unwrap();
    assert_eq!(
        b,
        CropBox {
            x1: 0,
            y1: 0,
            x2: 80,
            y2: 50
        },
        "the whole image"
    );
    let b = crop_region(&border, 2, (512, 512)).unwrap();
    assert_eq!(
        (b.x2, b.size().0, b.size().1),
        (80, 50, 50),
        "square, against the right border"
    );
    let grey = Mask::from_luma8(80, 50, vec![128; 80 * 50]).unwrap();
    assert_eq!(crop_region(&grey, 0, (80, 50)).unwrap().size(), (80, 50));
    let invalid = InpaintOptions {
        crop_to_mask: Some(CropSettings {
            padding: 0,
            size: (4, 512),
            each_hole: false,
        }),
        ..InpaintOptions::default()
    };
    let err = invalid.validate().unwrap_err();
    assert!(err.to_string().contains("crop-to-mask size"), "{err}");
}

/// `each_hole`: far-apart holes get a box each, holes whose boxes overlap share one, and the run
/// samples each box on its own, keeping the original exactly outside every box.
#[test]
fn each_hole_gets_its_own_box() {
    let (w, h) = (300u32, 200u32);
    let mask_of = |rects: &[(u32, u32, u32, u32)]| {
        let v = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let inside = rects.iter().any(|&(x0, y0, rw, rh)| {
                    (x0..x0 + rw).contains(&x) && (y0..y0 + rh).contains(&y)
                });
                if inside { 255 } else { 0 }
            })
            .collect();
        Mask::from_luma8(w, h, v).unwrap()
    };
    let settings = CropSettings {
        padding: 4,
        size: (32, 32),
        each_hole: true,
    };
    let far = mask_of(&[(20, 20, 10, 10), (250, 150, 12, 8)]);
    let boxes = crop_regions(&far, &settings);
    assert_eq!(boxes.len(), 2, "{boxes:?}");
    assert_eq!(
        boxes[0],
        crop_region(&mask_of(&[(20, 20, 10, 10)]), 4, (32, 32)).unwrap()
    );
    let near = mask_of(&[(20, 20, 10, 10), (36, 22, 6, 6)]);
    assert_eq!(
        crop_regions(&near, &settings).len(),
        1,
        "overlapping boxes merge"
    );
    let one = CropSettings {
        each_hole: false,
        ..settings
    };
    assert_eq!(crop_regions(&far, &one).len(), 1);

    let p = painter("pipeline_hd_painter");
    let image = photo(w, h);
    let mut options = InpaintOptions {
        method: Method::StableInpainting,
        paste_back: None,
        crop_to_mask: Some(settings),
        ..InpaintOptions::default()
    };
    options.sampler.steps = 2;
    let text = painter_text(&p);
    let mut runs = 0;
    let out = p
        .inpainter()
        .inpaint(
            &image,
            &far,
            &text,
            &options,
            Hooks::new(&mut DefaultAttention::default(), &mut |v: &StepView<'_>| {
                runs += usize::from(v.step == 1);
                ControlFlow::Continue(())
            }),
        )
        .unwrap()
        .remove(0);
    assert_eq!(runs, 2, "one run per box");
    let inside = |x: u32, y: u32| {
        boxes
            .iter()
            .any(|b| (b.x1..b.x2).contains(&x) && (b.y1..b.y2).contains(&y))
    };
    let (o, i) = (out.raster(), image.raster());
    for y in 0..h {
        for x in 0..w {
            if !inside(x, y) {
                let same = (0..3)
                    .all(|c| o.get(x as usize, y as usize, c) == i.get(x as usize, y as usize, c));
                assert!(same, "({x}, {y}) outside both boxes changed");
            }
        }
    }
}
