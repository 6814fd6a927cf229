//! `Image::infill` against OpenCV's `cv2.inpaint` (`tools/reference/generate.py`, group `fill`):
//! Telea and Navier-Stokes at radii 1, 3, 5 and 12 on textured images whose holes touch every
//! border and corner, several holes, a one-pixel hole and line, an empty and a full mask, a 1 x 1
//! and a 2 x 9 image.

mod fixtures;

use fixtures::Fixture;
use hd_painter_core::{Image, InfillMethod, Mask};

const CASES: [&str; 9] = [
    "ellipse", "corners", "several", "line", "dot", "empty", "full", "one", "strip",
];

#[test]
fn infill_is_opencvs_inpaint() {
    let f = Fixture::open("fill");
    for name in CASES {
        let image = Image::from_raster(f.raster_u8(&format!("{name}_image"))).unwrap();
        let hole = Mask::from_raster(f.raster_u8(&format!("{name}_mask"))).unwrap();
        for (method, key) in [
            (InfillMethod::Telea, "telea"),
            (InfillMethod::NavierStokes, "ns"),
        ] {
            for radius in [1, 3, 5, 12] {
                let want = f.raster_u8(&format!("{name}_{key}_{radius}"));
                let got = image.infill(&hole, method, radius).unwrap();
                let differ = got
                    .raster()
                    .as_slice()
                    .iter()
                    .zip(want.as_slice())
                    .filter(|(a, b)| a != b)
                    .count();
                assert_eq!(
                    differ, 0,
                    "{name}, {key}, radius {radius}: values that differ"
                );
            }
        }
    }
}

#[test]
fn only_the_hole_changes() {
    let f = Fixture::open("fill");
    let image = Image::from_raster(f.raster_u8("several_image")).unwrap();
    let hole = Mask::from_raster(f.raster_u8("several_mask")).unwrap();
    let got = image.infill(&hole, InfillMethod::Telea, 3).unwrap();
    let pixels = got.raster().as_slice().chunks_exact(3);
    for ((g, i), m) in pixels
        .zip(image.raster().as_slice().chunks_exact(3))
        .zip(hole.raster().as_slice())
    {
        if *m == 0 {
            assert_eq!(g, i);
        }
    }
}
