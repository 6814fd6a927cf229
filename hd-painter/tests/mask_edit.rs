//! `InpaintOptions::mask_edit` runs before anything else: a grown one-pixel hole changes more
//! of the image than the pixel and its paste-back feather; a shrunk hole can vanish (the input
//! back unchanged); a blurred hole's faint tails stay known for the plain methods (binarised at
//! 128) and become hole for HD-Painter (any non-zero value); a negative blur radius is refused.

mod common;

use common::painter;
use hd_painter_core::{Image, Mask};
use hd_painter_sampling::{HdPainter, InpaintOptions, MaskEdit};

fn photo() -> Image {
    Image::from_rgb8(
        48,
        40,
        (0..48 * 40 * 3).map(|i| (i * 37 % 251) as u8).collect(),
    )
    .unwrap()
}

fn changed(a: &Image, b: &Image) -> usize {
    a.raster()
        .as_slice()
        .chunks_exact(3)
        .zip(b.raster().as_slice().chunks_exact(3))
        .filter(|(x, y)| x != y)
        .count()
}

#[test]
fn mask_edits_run_before_sampling() {
    let p = painter("pipeline_hd_painter");
    let image = photo();
    let mut v = vec![0u8; 48 * 40];
    v[20 * 48 + 24] = 255;
    let dot = Mask::from_luma8(48, 40, v).unwrap();
    let run = |mask: &Mask, edit: MaskEdit, hd: Option<HdPainter>| {
        let options = match hd {
            Some(variant) => InpaintOptions::hd_painter(variant),
            None => InpaintOptions::default(), // Stable Inpainting with the paste-back
        };
        p.request(&image, mask, "x")
            .options(options)
            .steps(2)
            .mask_edit(edit)
            .run()
            .unwrap()
            .remove(0)
    };
    let plain = run(&dot, MaskEdit::default(), None);
    let grown = run(&dot, MaskEdit { grow: 8, blur: 0.0 }, None);
    assert!(
        changed(&grown, &image) > changed(&plain, &image),
        "grown hole"
    );
    // The 1-pixel dilation + 9-tap feather of the paste-back reach 5 pixels; 8 + 5 beyond.
    assert!(changed(&grown, &image) > 11 * 11);
    let gone = run(
        &dot,
        MaskEdit {
            grow: -1,
            blur: 0.0,
        },
        None,
    );
    assert_eq!(gone, image, "a shrunk-away hole leaves the input");

    let blurred = dot.grow(3).unwrap().blur(2.0);
    let faint = blurred
        .raster()
        .as_slice()
        .iter()
        .filter(|&&v| v > 0 && v < 128)
        .count();
    assert!(faint > 0, "the blur leaves faint tails");
    let edit = MaskEdit { grow: 3, blur: 2.0 };
    let hd = run(&dot, edit, Some(HdPainter::baseline()));
    assert_eq!((hd.width(), hd.height()), (48, 40));
    let invalid = InpaintOptions {
        mask_edit: MaskEdit {
            grow: 0,
            blur: -1.0,
        },
        ..InpaintOptions::default()
    };
    let err = invalid.validate().unwrap_err();
    assert!(err.to_string().contains("mask blur radius"), "{err}");
}
