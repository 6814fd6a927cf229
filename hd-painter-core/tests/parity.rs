//! Parity of the core pixel operations with the reference libraries, on the goldens that
//! `tools/reference/generate.py` writes (Pillow 13, OpenCV 5, scipy 1.17, numpy 2.4,
//! torchvision 0.29, diffusers 0.42). Each test states its tolerance.

mod fixtures;

use fixtures::{Fixture, max_abs_diff};
use hd_painter_core::{
    Filter, Footprint, GaussianKernel, Image, Mask, MaskChannel, MaskOptions, PadMode, Quantize,
    SizeRule,
};

const RESIZE_TARGETS: [(u32, u32); 5] = [(64, 20), (101, 77), (13, 11), (19, 64), (37, 41)];
const FILTERS: [(Filter, &str); 3] = [
    (Filter::Nearest, "nearest"),
    (Filter::Bilinear, "bilinear"),
    (Filter::Bicubic, "bicubic"),
];

/// Pillow `Image.resize` on 8-bit RGB and L images: bit-exact (tolerance 0), up and down,
/// non-square, odd sizes, all three filters.
#[test]
fn resize_u8_is_bit_exact_with_pillow() {
    let f = Fixture::open("resize");
    for source in ["rgb", "luma"] {
        let src = f.raster_u8(source);
        for (filter, fname) in FILTERS {
            for (w, h) in RESIZE_TARGETS {
                let key = format!("{source}_{fname}_{w}x{h}");
                let got = src.resize(w, h, filter).unwrap();
                assert_eq!(max_abs_diff(&got, &f.raster_u8(&key)), 0.0, "{key}");
            }
        }
    }
}

/// Pillow `Image.resize` on mode "F" (32-bit float) images: within 1e-5 absolute.
#[test]
fn resize_f32_matches_pillow_float_mode() {
    let f = Fixture::open("resize");
    let src = f.raster_f32("float");
    for (filter, fname) in FILTERS {
        for (w, h) in RESIZE_TARGETS {
            let key = format!("float_{fname}_{w}x{h}");
            let got = src.resize(w, h, filter).unwrap();
            let err = max_abs_diff(&got, &f.raster_f32(&key));
            assert!(err <= 1e-5, "{key}: max |diff| = {err}");
        }
    }
}

/// `hd_inpaint.py`'s long-side rule (`int()` truncation): exact.
#[test]
fn long_side_sizes_match_the_reference_rule() {
    let (shape, cases) = Fixture::open("resize").i64("long_side_cases");
    for case in cases.chunks_exact(shape[1]) {
        let [w, h, side, ew, eh] = [0, 1, 2, 3, 4].map(|i| case[i] as u32);
        assert_eq!(
            SizeRule::Script.size(w, h, side),
            (ew, eh),
            "{w}x{h} -> {side}"
        );
    }
}

/// `cv2.GaussianBlur` on 8-bit images (default border REFLECT_101), including sigma 0 (derived
/// sigma and OpenCV's fixed small kernels). OpenCV blurs 8-bit images in its own fixed point
/// and we round once from f64, so the tolerance is 1/255.
#[test]
fn gaussian_blur_u8_matches_opencv_within_one_level() {
    let f = Fixture::open("blur");
    for (k, sigma) in [
        (3, 0.0),
        (5, 0.0),
        (7, 0.0),
        (5, 1.5),
        (9, 0.0),
        (19, 3.2),
        (21, 0.0),
    ] {
        let kernel = GaussianKernel::opencv(k, sigma).unwrap();
        for source in ["rgb", "luma"] {
            let key = format!("opencv_{source}_{k}_{sigma}");
            let got = f.raster_u8(source).gaussian_blur(&kernel);
            let err = max_abs_diff(&got, &f.raster_u8(&key));
            assert!(err <= 1.0, "{key}: max |diff| = {err}");
        }
    }
}

/// torchvision's `gaussian_blur` on a float mask (HD-Painter's SR mask blur is size 19 with
/// the default sigma 3.2): within 1e-6 absolute.
#[test]
fn gaussian_blur_f32_matches_torchvision() {
    let f = Fixture::open("blur");
    for (k, sigma, tag) in [
        (19, None, "19_none"),
        (5, Some(1.1), "5_1.1"),
        (21, Some(2.0), "21_2"),
    ] {
        let kernel = GaussianKernel::torchvision(k, sigma).unwrap();
        let got = f.raster_f32("float").gaussian_blur(&kernel);
        let key = format!("torchvision_float_{tag}");
        let err = max_abs_diff(&got, &f.raster_f32(&key));
        assert!(err <= 1e-6, "{key}: max |diff| = {err}");
    }
}

/// scipy `binary_dilation(iterations=r)` (HD-Painter's `dilate(r)`) and `cv2.dilate` with
/// rectangles, odd and even: exact.
#[test]
fn dilation_matches_scipy_and_opencv() {
    let f = Fixture::open("dilate");
    let binary = Mask::from_raster(f.raster_u8("binary")).unwrap();
    for r in [1, 3, 19] {
        let got = binary.dilate(Footprint::Cross { radius: r }).unwrap();
        let key = format!("cross_{r}");
        assert_eq!(max_abs_diff(got.raster(), &f.raster_u8(&key)), 0.0, "{key}");
    }
    for (w, h) in [(3, 3), (5, 5), (8, 8), (5, 2)] {
        let footprint = Footprint::Box {
            width: w,
            height: h,
        };
        for source in ["binary", "soft"] {
            let got = f.raster_u8(source).dilate(footprint).unwrap();
            let key = format!("{}box_{w}x{h}", if source == "soft" { "soft_" } else { "" });
            assert_eq!(max_abs_diff(&got, &f.raster_u8(&key)), 0.0, "{key}");
        }
    }
    assert_eq!(
        Footprint::square(2),
        Footprint::Box {
            width: 5,
            height: 5
        }
    );
}

/// numpy `pad` (constant and reflect) on the right and bottom to a multiple, including pads
/// larger than the image: exact; cropping back restores the input exactly.
#[test]
fn padding_matches_numpy_and_crops_back() {
    let f = Fixture::open("pad");
    let rgb = Image::from_raster(f.raster_u8("rgb")).unwrap();
    for m in [8, 64] {
        for (mode, name) in [(PadMode::Zero, "zero"), (PadMode::Reflect, "reflect")] {
            let got = rgb.pad_to_multiple(m, mode).unwrap();
            let key = format!("{name}_{m}");
            assert_eq!(max_abs_diff(got.raster(), &f.raster_u8(&key)), 0.0, "{key}");
            assert_eq!(got.crop(0, 0, rgb.width(), rgb.height()).unwrap(), rgb);
        }
    }
}

/// Image -> tensor as diffusers' `VaeImageProcessor` (`pil_to_numpy` + `normalize`): bit-exact.
/// Tensor -> image as its `denormalize` + `numpy_to_pil` (round half to even) and as
/// HD-Painter's SR output (truncation): exact, including values on exact half-way points.
#[test]
fn tensor_conversions_match_diffusers_and_hd_painter() {
    let f = Fixture::open("tensor");
    let device = hd_painter_core::BackendKind::Flex.device().unwrap();
    let rgb = Image::from_raster(f.raster_u8("rgb")).unwrap();
    let got: Vec<f32> = rgb
        .to_tensor(&device)
        .into_data()
        .try_into_vec_as()
        .unwrap();
    let (shape, expected) = f.f32("to_tensor");
    assert_eq!(shape, [1, 3, 24, 40]);
    assert_eq!(got, expected);

    let (shape, decoded) = f.f32("decoded");
    let shape: [usize; 4] = shape.try_into().unwrap();
    for (quantize, key) in [(Quantize::Round, "round"), (Quantize::Truncate, "truncate")] {
        let tensor = burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(decoded.clone(), shape),
            &device,
        );
        let got = Image::from_tensor(tensor, quantize).unwrap();
        assert_eq!(max_abs_diff(got.raster(), &f.raster_u8(key)), 0.0, "{key}");
    }
    // A batch converts image by image.
    let twice = [decoded.clone(), decoded].concat();
    let batch = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(twice, [2, shape[1], shape[2], shape[3]]),
        &device,
    );
    for got in Image::batch_from_tensor(batch, Quantize::Round).unwrap() {
        assert_eq!(
            max_abs_diff(got.raster(), &f.raster_u8("round")),
            0.0,
            "batch"
        );
    }
}

/// Decoding files as Pillow does: PNG and lossless WebP exact, RGBA alpha and 16-bit grey
/// masks exact, Pillow's RGB -> L luma exact; baseline JPEG within 2/255 (libjpeg-turbo and
/// the pure-Rust decoder round their IDCTs differently).
#[test]
fn file_decoding_matches_pillow() {
    let f = Fixture::open("files");
    let rgb = f.raster_u8("rgb");
    for file in ["rgb.png", "rgb.webp", "rgba.png"] {
        let got = Image::open(fixtures::path(file)).unwrap();
        assert_eq!(max_abs_diff(got.raster(), &rgb), 0.0, "{file}");
    }
    let jpg = Image::open(fixtures::path("rgb.jpg")).unwrap();
    let err = max_abs_diff(jpg.raster(), &f.raster_u8("jpg_decoded"));
    assert!(err <= 2.0, "rgb.jpg: max |diff| = {err}");

    let mask = f.raster_u8("mask");
    for file in ["mask.png", "gray16.png"] {
        let got = Mask::open(fixtures::path(file)).unwrap();
        assert_eq!(max_abs_diff(got.raster(), &mask), 0.0, "{file}");
    }
    let alpha = MaskOptions {
        channel: MaskChannel::Alpha,
        ..MaskOptions::default()
    };
    let got = Mask::open_with(fixtures::path("rgba.png"), alpha).unwrap();
    assert_eq!(max_abs_diff(got.raster(), &mask), 0.0, "rgba.png alpha");
    let inverted = Mask::open_with(
        fixtures::path("rgba.png"),
        MaskOptions {
            invert: true,
            ..alpha
        },
    )
    .unwrap();
    assert_eq!(inverted, got.invert());
    // A file without alpha asked for its alpha reads as fully opaque: all hole, or with
    // `invert` (transparent = hole) no hole, which the pipeline answers with the input.
    for file in ["rgb.png", "rgb.jpg", "mask.png"] {
        let opaque = Mask::open_with(fixtures::path(file), alpha).unwrap();
        assert!(
            opaque.raster().as_slice().iter().all(|&v| v == 255),
            "{file}"
        );
    }
    // The official HD-Painter channel: blue of the RGB conversion (alpha dropped).
    for file in ["rgb.png", "rgba.png", "mask.png"] {
        let blue = MaskOptions {
            channel: MaskChannel::Blue,
            ..MaskOptions::default()
        };
        let got = Mask::open_with(fixtures::path(file), blue).unwrap();
        let rgb = Image::open(fixtures::path(file)).unwrap();
        let want: Vec<u8> = rgb
            .raster()
            .as_slice()
            .chunks_exact(3)
            .map(|p| p[2])
            .collect();
        assert_eq!(got.raster().as_slice(), &want[..], "{file} blue");
    }

    let luma = Mask::open(fixtures::path("rgb.png")).unwrap();
    assert_eq!(
        max_abs_diff(luma.raster(), &f.raster_u8("rgb_luma")),
        0.0,
        "rgb.png as L"
    );
}

/// The less common files users hand in, against what Pillow's `convert("RGB")` makes of them:
/// an 8-bit grey PNG (replicated, exact), a 16-bit RGB PNG (we round to 8 bits, Pillow keeps the
/// high byte: at most one level apart) and a CMYK JPEG (within 2 levels, the JPEG decoders'
/// difference already seen on RGB JPEGs).
#[test]
fn grey_16_bit_and_cmyk_files_decode_as_pillow_does() {
    let f = Fixture::open("odd_files");
    let cases = [
        ("gray8.png", "gray8_rgb", 0.0),
        ("rgb16.png", "rgb16_rgb", 1.0),
        ("cmyk.jpg", "cmyk_rgb", 2.0),
    ];
    for (file, key, tolerance) in cases {
        let got = Image::open(fixtures::path(file)).unwrap();
        let err = max_abs_diff(got.raster(), &f.raster_u8(key));
        assert!(err <= tolerance, "{file}: max |diff| = {err} > {tolerance}");
        // As masks they read as one grey channel of the same size.
        let mask = Mask::open(fixtures::path(file)).unwrap();
        assert_eq!((mask.width(), mask.height()), (got.width(), got.height()));
    }
}
