//! Poisson blending against OpenCV 5's `seamlessClone` (NORMAL_CLONE at the mask's bounding-box
//! centre) and HD-Painter's `poisson_blend` wrapper, on textured 128x96 images with a non-convex
//! mask inside the image and one touching the border (`tools/reference/generate.py`): mean
//! |diff| <= 1/255 and max |diff| <= 4/255 of the 8-bit output. Also sizes that do not match.

mod common;

use common::Golden;
use hd_painter_core::{Image, Mask};
use hd_painter_sr::{SrError, mask_centre, poisson_blend, seamless_clone};

/// Mean and max absolute difference, in 8-bit levels.
fn differences(got: &Image, want: &Image) -> (f64, u8) {
    let (a, b) = (got.raster().as_slice(), want.raster().as_slice());
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
    (sum as f64 / a.len() as f64, max)
}

fn check(got: &Image, want: &Image, what: &str) {
    let (mean, max) = differences(got, want);
    eprintln!("{what}: mean |diff| {mean:.4}, max {max} (8-bit levels)");
    assert!(
        mean <= 1.0 && max <= 4,
        "{what}: mean |diff| {mean}, max {max}"
    );
}

#[test]
fn seamless_clone_matches_opencv() {
    let g = Golden::open("poisson");
    let (original, generated) = (g.image("original"), g.image("generated"));
    for name in ["inside", "border"] {
        let mask = g.mask(&format!("mask_{name}"));
        let out =
            seamless_clone(&generated, &original, &mask, mask_centre(&mask).unwrap()).unwrap();
        check(
            &out,
            &g.image(&format!("clone_{name}")),
            &format!("seamlessClone, mask {name}"),
        );
        // The blend changed the image (the test would pass on a copy otherwise).
        assert!(
            differences(&out, &original).0 > 1.0,
            "{name}: nothing cloned"
        );
    }
}

#[test]
fn poisson_blend_matches_hd_painters() {
    let g = Golden::open("poisson");
    let (original, generated) = (g.image("original"), g.image("generated"));
    for name in ["inside", "border"] {
        let out = poisson_blend(&original, &generated, &g.mask(&format!("mask_{name}"))).unwrap();
        check(
            &out,
            &g.image(&format!("blend_{name}")),
            &format!("poisson_blend, mask {name}"),
        );
    }
}

#[test]
fn empty_masks_and_mismatched_sizes() {
    let g = Golden::open("poisson");
    let (original, generated) = (g.image("original"), g.image("generated"));
    let empty = Mask::from_luma8(128, 96, vec![0; 128 * 96]).unwrap();
    assert_eq!(mask_centre(&empty), None);
    let cloned = seamless_clone(&generated, &original, &empty, (64, 48)).unwrap();
    assert!(cloned == original, "an empty mask clones nothing");
    let full = Mask::from_luma8(128, 96, vec![255; 128 * 96]).unwrap();
    let err = seamless_clone(&generated, &original, &full, (10, 10)).unwrap_err();
    assert!(
        matches!(err, SrError::InvalidInput(ref m) if m.contains("leaves")),
        "{err}"
    );
    let small = Mask::from_luma8(64, 96, vec![255; 64 * 96]).unwrap();
    let err = poisson_blend(&original, &generated, &small).unwrap_err();
    assert!(
        err.to_string().contains("expected 128x96, found 64x96"),
        "{err}"
    );
}
