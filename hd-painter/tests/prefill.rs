//! A photo erased in an editor (a Pillow-written RGBA file, `fixtures/core/rgba.png`): its
//! alpha read as the mask with transparent = hole, the RGB under the hole replaced by the known
//! region's mean before encoding, and a Blended run with the fill keeping the input's size and
//! the pixels far from the hole.

mod common;

use common::{fixtures, painter};
use hd_painter_core::{Image, InfillMethod, Mask, MaskChannel, MaskOptions};
use hd_painter_sampling::{InpaintOptions, Method, PreFill};

/// The Pillow-written RGBA photo and its transparent region as the hole.
fn erased_photo() -> (Image, Mask) {
    let path = fixtures().join("core/rgba.png");
    let options = MaskOptions {
        channel: MaskChannel::Alpha,
        invert: true,
        ..MaskOptions::default()
    };
    (
        Image::open(&path).unwrap(),
        Mask::open_with(&path, options).unwrap(),
    )
}

/// A two-step Blended run with `fill` keeps the photo's size.
fn blended_keeps_the_size(image: &Image, hole: &Mask, fill: PreFill) {
    let out = painter("pipeline_sd")
        .request(image, hole, "x")
        .options(InpaintOptions {
            method: Method::Blended,
            ..InpaintOptions::default()
        })
        .pre_fill(Some(fill))
        .steps(2)
        .run()
        .unwrap()
        .remove(0);
    assert_eq!((out.width(), out.height()), (image.width(), image.height()));
}

#[test]
fn an_erased_photo_is_filled_under_its_transparent_hole() {
    let (image, hole) = erased_photo();
    let filled = PreFill::Mean.apply(&image, &hole).unwrap();
    let (rgb, h, f) = (
        image.raster().as_slice(),
        hole.raster().as_slice(),
        filled.raster().as_slice(),
    );
    let known: Vec<&[u8]> = rgb
        .chunks_exact(3)
        .zip(h)
        .filter(|&(_, &m)| m == 0)
        .map(|(p, _)| p)
        .collect();
    assert!(
        !known.is_empty() && known.len() < h.len(),
        "a partly transparent file"
    );
    let mean: Vec<u8> = (0..3)
        .map(|c| {
            let s: u64 = known.iter().map(|p| u64::from(p[c])).sum();
            (s as f64 / known.len() as f64).round() as u8
        })
        .collect();
    for ((p, q), &m) in rgb.chunks_exact(3).zip(f.chunks_exact(3)).zip(h) {
        match m {
            0 => assert_eq!(p, q, "known pixels untouched"),
            _ => assert_eq!(q, &mean[..], "the hole filled with the known mean"),
        }
    }

    blended_keeps_the_size(&image, &hole.threshold(127), PreFill::Noise { seed: 3 });
}

/// The OpenCV fills are `Image::infill` (bit-exact with `cv2.inpaint`, `hd-painter-core`'s
/// `infill` tests): under the erased hole they replace the blank RGB, outside it they keep the
/// photo, and a Blended run takes them.
#[test]
fn opencv_fills_replace_the_erased_rgb() {
    let (image, hole) = erased_photo();
    let hole = hole.threshold(127);
    for (fill, method) in [
        (PreFill::Telea { radius: 3 }, InfillMethod::Telea),
        (
            PreFill::NavierStokes { radius: 5 },
            InfillMethod::NavierStokes,
        ),
    ] {
        let filled = fill.apply(&image, &hole).unwrap();
        let radius = match fill {
            PreFill::Telea { radius } | PreFill::NavierStokes { radius } => radius,
            _ => unreachable!(),
        };
        assert_eq!(filled, image.infill(&hole, method, radius).unwrap());
        let pairs = image
            .raster()
            .as_slice()
            .chunks_exact(3)
            .zip(filled.raster().as_slice().chunks_exact(3));
        let changed = pairs
            .zip(hole.raster().as_slice())
            .filter(|((a, b), _)| a != b);
        assert!(
            changed.clone().all(|(_, &m)| m != 0),
            "{fill:?}: only the hole changes"
        );
        assert!(changed.count() > 0, "{fill:?}: the blank RGB is replaced");
    }
    blended_keeps_the_size(&image, &hole, PreFill::Telea { radius: 3 });
}
