//! The mask operations before sampling against the libraries users know them from
//! (`tools/reference/generate.py`, group `mask_ops`): `Mask::blur` bit-exact with Pillow's
//! `ImageFilter.GaussianBlur(radius)` (diffusers' `VaeImageProcessor.blur`) on soft, binary,
//! noisy, 3x7 and one-pixel masks for radii 0.3 to 40; `Mask::grow` exact with OpenCV's
//! `cv2.dilate` / `cv2.erode` and a `(2p + 1)` square on the same masks (holes touching the
//! border included).

mod fixtures;

use fixtures::Fixture;
use hd_painter_core::{Footprint, Mask};

const MASKS: [&str; 5] = ["soft", "binary", "noise", "tiny", "dot"];

fn mask(f: &Fixture, key: &str) -> Mask {
    Mask::from_raster(f.raster_u8(key)).unwrap()
}

#[test]
fn blur_is_pillows_gaussian_blur() {
    let f = Fixture::open("mask_ops");
    for name in MASKS {
        let m = mask(&f, name);
        for r in [0.3f32, 1.0, 2.5, 4.0, 10.0, 40.0] {
            let want = mask(&f, &format!("{name}_blur_{r:?}"));
            assert_eq!(m.blur(r), want, "{name}, radius {r}");
        }
        assert_eq!(m.blur(0.0), m, "{name}: radius 0");
    }
}

#[test]
fn grow_and_shrink_are_opencvs_dilate_and_erode() {
    let f = Fixture::open("mask_ops");
    for name in MASKS {
        let m = mask(&f, name);
        for p in [1i32, 3, 8] {
            assert_eq!(
                m.grow(p).unwrap(),
                mask(&f, &format!("{name}_grow_{p}")),
                "{name} +{p}"
            );
            assert_eq!(
                m.grow(-p).unwrap(),
                mask(&f, &format!("{name}_shrink_{p}")),
                "{name} -{p}"
            );
        }
        assert_eq!(m.grow(0).unwrap(), m);
        let square = Footprint::square(3);
        assert_eq!(m.erode(square).unwrap(), m.grow(-3).unwrap());
    }
}
