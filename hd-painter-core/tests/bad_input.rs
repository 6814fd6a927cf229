//! Bad input to every core loader and conversion gets a typed error that names the file or the
//! parameter, never a panic or garbage.

mod fixtures;

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use hd_painter_core::{
    BackendKind, CoreError, Filter, Image, Mask, MaskChannel, MaskOptions, Quantize, Raster,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hd-painter-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let path = scratch("does-not-exist.png");
    for err in [
        Image::open(&path).unwrap_err(),
        Mask::open(&path).unwrap_err(),
    ] {
        assert!(
            matches!(&err, CoreError::Io { path: p, .. } if *p == path),
            "{err}"
        );
        assert!(err.to_string().contains("does-not-exist.png"));
    }
}

#[test]
fn truncated_png_is_a_decode_error_naming_it() {
    let bytes = std::fs::read(fixtures::path("rgb.png")).unwrap();
    let path = scratch("truncated.png");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    for err in [
        Image::open(&path).unwrap_err(),
        Mask::open(&path).unwrap_err(),
    ] {
        assert!(
            matches!(&err, CoreError::Decode { path: p, .. } if *p == path),
            "{err}"
        );
        assert!(err.to_string().contains("truncated.png"));
    }
    let path = scratch("not-an-image.png");
    std::fs::write(&path, b"hello, this is text").unwrap();
    assert!(matches!(Image::open(&path), Err(CoreError::Decode { .. })));
}

/// A syntactically complete PNG whose header declares `width` x `height` RGB pixels and whose
/// pixel data is empty.
fn header_only_png(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    // width, height, bit depth 8, colour type 2 (RGB), compression, filter, interlace.
    let mut ihdr = [width.to_be_bytes(), height.to_be_bytes()].concat();
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // An empty zlib stream: the pixel data stops at once.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn zero_size_image_is_rejected() {
    let path = scratch("empty.png");
    std::fs::write(&path, header_only_png(0, 0)).unwrap();
    let err = Image::open(&path).unwrap_err();
    assert!(
        matches!(err, CoreError::Decode { .. } | CoreError::Empty { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("empty.png"), "{err}");
    assert!(matches!(
        Image::from_rgb8(0, 0, vec![]),
        Err(CoreError::Empty { .. })
    ));
    assert!(matches!(
        Mask::from_luma8(4, 0, vec![]),
        Err(CoreError::Empty { .. })
    ));
}

#[test]
fn mask_of_another_size_than_the_image_is_a_size_mismatch() {
    let image = Image::from_rgb8(8, 6, vec![0; 8 * 6 * 3]).unwrap();
    let mask = Mask::from_luma8(6, 8, vec![255; 48]).unwrap();
    let err = mask
        .ensure_matches(&image, "mask m.png vs image i.png")
        .unwrap_err();
    assert!(matches!(
        err,
        CoreError::SizeMismatch {
            expected_width: 8,
            expected_height: 6,
            found_width: 6,
            found_height: 8,
            ..
        }
    ));
    assert!(err.to_string().contains("m.png"));
    let same = Mask::from_luma8(8, 6, vec![0; 48]).unwrap();
    assert!(same.ensure_matches(&image, "ok").is_ok());
}

#[test]
fn wrong_buffers_and_parameters_are_typed_errors() {
    assert!(matches!(
        Image::from_rgb8(4, 4, vec![0; 47]),
        Err(CoreError::BufferLength {
            expected: 48,
            found: 47,
            ..
        })
    ));
    let grey = Raster::from_vec(4, 4, 1, vec![0u8; 16]).unwrap();
    assert!(matches!(
        Image::from_raster(grey.clone()),
        Err(CoreError::InvalidParameter { .. })
    ));
    let image = Image::from_rgb8(4, 4, vec![0; 48]).unwrap();
    assert!(matches!(
        image.resize(0, 3, Filter::Bicubic),
        Err(CoreError::InvalidParameter { .. })
    ));
    assert!(matches!(
        image.save(scratch("out.bmpx")),
        Err(CoreError::Encode { .. })
    ));
}

#[test]
fn tensors_of_the_wrong_shape_or_with_nans_are_rejected() {
    let device = BackendKind::Flex.device().unwrap();
    let wrong = Tensor::<4>::zeros([1, 4, 2, 2], &device);
    assert!(matches!(
        Image::from_tensor(wrong, Quantize::Round),
        Err(CoreError::TensorShape { found, .. }) if found == [1, 4, 2, 2]
    ));
    let batch = Tensor::<4>::zeros([2, 3, 2, 2], &device);
    assert!(matches!(
        Image::from_tensor(batch.clone(), Quantize::Round),
        Err(CoreError::TensorShape { .. })
    ));
    assert_eq!(
        Image::batch_from_tensor(batch, Quantize::Round)
            .unwrap()
            .len(),
        2
    );
    let mut values = vec![0.0f32; 12];
    values[5] = f32::NAN;
    values[7] = f32::INFINITY;
    let nan = Tensor::<4>::from_data(TensorData::new(values, [1, 3, 2, 2]), &device);
    assert!(matches!(
        Image::from_tensor(nan, Quantize::Round),
        Err(CoreError::NonFinite { count: 2, .. })
    ));
}

#[test]
fn images_and_masks_survive_a_save_and_load() {
    let f = fixtures::Fixture::open("files");
    let image = Image::from_raster(f.raster_u8("rgb")).unwrap();
    let mask = Mask::from_raster(f.raster_u8("mask")).unwrap();
    for ext in ["png", "webp"] {
        let path = scratch(&format!("round-trip.{ext}"));
        image.save(&path).unwrap();
        assert_eq!(Image::open(&path).unwrap(), image, "{ext}");
        mask.save(&path).unwrap();
        assert_eq!(Mask::open(&path).unwrap(), mask, "{ext}");
    }
    assert!(!mask.is_empty() && !mask.is_full());
    let binary = mask.threshold(127);
    assert!(
        binary
            .raster()
            .as_slice()
            .iter()
            .all(|&v| v == 0 || v == 255)
    );
    assert_eq!(binary.invert().invert(), binary);
}

#[test]
fn images_over_the_maximum_are_refused_from_their_header() {
    // A 100000 x 100000 PNG (30 GB of pixels once decoded) that is 60 bytes on disk.
    let path = scratch("bomb.png");
    std::fs::write(&path, header_only_png(100_000, 100_000)).unwrap();
    for err in [
        Image::open(&path).unwrap_err(),
        Mask::open(&path).unwrap_err(),
    ] {
        assert!(
            matches!(
                &err,
                CoreError::TooLarge {
                    width: 100_000,
                    height: 100_000,
                    max_side: hd_painter_core::DEFAULT_MAX_SIDE,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("bomb.png"), "{err}");
    }
    // A caller's own bound, below a real file's size.
    let err = Image::open_limited(fixtures::path("rgb.png"), 40).unwrap_err();
    assert!(
        matches!(
            err,
            CoreError::TooLarge {
                width: 44,
                height: 30,
                max_side: 40,
                ..
            }
        ),
        "{err}"
    );
    assert!(Image::open_limited(fixtures::path("rgb.png"), 44).is_ok());
}

#[test]
fn a_folder_given_as_an_image_is_an_io_error() {
    let dir = scratch("a-folder.png");
    std::fs::create_dir_all(&dir).unwrap();
    let err = Image::open(&dir).unwrap_err();
    assert!(
        matches!(&err, CoreError::Io { path, .. } | CoreError::Decode { path, .. } if *path == dir),
        "{err}"
    );
}

#[test]
fn output_paths_are_checked_before_any_work() {
    let dir = std::env::temp_dir();
    for ok in ["out.png", "out.jpg", "out.jpeg", "out.webp"] {
        hd_painter_core::check_output_path(dir.join(ok)).unwrap();
    }
    hd_painter_core::check_output_path("relative.png").unwrap();
    for bad in ["out.bmp", "out.tiff", "out", "out.txt"] {
        let path = dir.join(bad);
        let err = hd_painter_core::check_output_path(&path).unwrap_err();
        assert!(
            matches!(&err, hd_painter_core::CoreError::Encode { path: p, .. } if *p == path),
            "{bad}: {err}"
        );
        assert!(!path.exists(), "{bad}: nothing is written");
    }
    let missing = dir.join("no-such-folder-hd-painter").join("out.png");
    let err = hd_painter_core::check_output_path(&missing).unwrap_err();
    assert!(
        matches!(&err, hd_painter_core::CoreError::Io { path, .. } if path.ends_with("no-such-folder-hd-painter")),
        "{err}"
    );
}

#[test]
fn uploads_decode_as_their_files_do_and_errors_name_the_upload() {
    let bytes = std::fs::read(fixtures::path("rgb.png")).unwrap();
    let limit = hd_painter_core::DEFAULT_MAX_SIDE;
    let image = Image::decode(&bytes, "photo.png", limit).unwrap();
    assert_eq!(image, Image::open(fixtures::path("rgb.png")).unwrap());
    let options = MaskOptions {
        channel: MaskChannel::Blue,
        ..MaskOptions::default()
    };
    let mask_bytes = std::fs::read(fixtures::path("rgba.png")).unwrap();
    assert_eq!(
        Mask::decode_with(&mask_bytes, "mask.png", options).unwrap(),
        Mask::open_with(fixtures::path("rgba.png"), options).unwrap()
    );
    // The encoded PNG decodes back to the same pixels.
    let png = image.to_png().unwrap();
    assert_eq!(Image::decode(&png, "round trip", limit).unwrap(), image);

    let bomb = header_only_png(100_000, 100_000);
    for err in [
        Image::decode(&bomb, "bomb upload", limit).unwrap_err(),
        Mask::decode_with(&bomb, "bomb upload", MaskOptions::default()).unwrap_err(),
    ] {
        assert!(
            matches!(&err, CoreError::TooLarge { width: 100_000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("bomb upload"), "{err}");
    }
    let err = Image::decode(b"not an image at all", "notes.txt", limit).unwrap_err();
    assert!(matches!(&err, CoreError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    let err = Image::decode(&bytes[..bytes.len() / 2], "half.png", limit).unwrap_err();
    assert!(matches!(&err, CoreError::Decode { .. }), "{err}");
}
