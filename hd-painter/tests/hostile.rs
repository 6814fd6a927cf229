//! Odd and hostile input through the one-call entry point (`Painter`) on the tiny pipeline
//! folders: every case either produces an image of the input's exact size with finite pixels,
//! or a typed error that says what is wrong.

mod common;

use std::ops::ControlFlow;

use burn::tensor::Tensor;
use common::{painter, photo};
use hd_painter::Error;
use hd_painter_core::{CoreError, Image, Mask};
use hd_painter_models::{
    AttentionKind, AttentionProcessor, AttentionSite, DefaultAttention, ModelsError,
};
use hd_painter_sampling::{HdPainter, Hooks, Method, SamplingError};

/// A mask from `value(x, y)`.
fn mask(width: u32, height: u32, value: impl Fn(u32, u32) -> u8) -> Mask {
    let v = (0..width * height)
        .map(|i| value(i % width, i / width))
        .collect();
    Mask::from_luma8(width, height, v).unwrap()
}

fn centre_hole(width: u32, height: u32) -> Mask {
    mask(width, height, |x, y| {
        if (width / 4..3 * width / 4 + 1).contains(&x)
            && (height / 4..3 * height / 4 + 1).contains(&y)
        {
            255
        } else {
            0
        }
    })
}

#[test]
fn a_mask_of_another_size_is_a_size_mismatch() {
    let p = painter("pipeline_hd_painter");
    let (image, hole) = (photo(40, 30), centre_hole(41, 30));
    let err = p
        .request(&image, &hole, "a red sofa")
        .steps(2)
        .run()
        .unwrap_err();
    match err {
        Error::Sampling(SamplingError::Models(ModelsError::Core(CoreError::SizeMismatch {
            expected_width: 40,
            found_width: 41,
            ..
        }))) => {}
        other => panic!("{other}"),
    }
}

#[test]
fn a_mask_without_hole_returns_the_input_unchanged() {
    let p = painter("pipeline_hd_painter");
    let image = photo(40, 30);
    let run = |m: &Mask, hd: Option<HdPainter>| {
        p.request(&image, m, "x")
            .hd_painter(hd)
            .seeds(vec![1, 2])
            .run()
            .unwrap()
    };
    let unchanged = vec![image.clone(), image.clone()];
    // Values below 128 are known region for the plain methods: a faint mask is no hole. For
    // HD-Painter, as its official code, any non-zero value is hole; only an empty mask is none.
    let faint = mask(40, 30, |x, _| (x * 3) as u8);
    assert_eq!(run(&faint, None), unchanged, "plain, faint");
    assert_ne!(
        run(&faint, Some(HdPainter::full())),
        unchanged,
        "HD-Painter, faint"
    );
    let empty = mask(40, 30, |_, _| 0);
    for hd in [Some(HdPainter::full()), None] {
        assert_eq!(run(&empty, hd), unchanged, "{hd:?}, empty");
    }
}

/// Sizes from 1x1 to odd and non-square, an all-hole mask and an anti-aliased one, with
/// HD-Painter (PAIntA + RASG) and plain Stable Inpainting: the exact input size back, and for
/// the plain method (paste-back on) the pixels far from the binarised hole untouched.
#[test]
fn tiny_odd_all_hole_and_soft_masks_give_images_of_the_input_size() {
    let p = painter("pipeline_hd_painter");
    let cases: Vec<(&str, Image, Mask)> = vec![
        ("1x1 all hole", photo(1, 1), mask(1, 1, |_, _| 255)),
        ("7x5", photo(7, 5), centre_hole(7, 5)),
        ("45x31 all hole", photo(45, 31), mask(45, 31, |_, _| 255)),
        ("63x17", photo(63, 17), centre_hole(63, 17)),
        // A soft disc: a linear ramp from 255 at the centre to 0 at radius 12.
        (
            "soft 40x40",
            photo(40, 40),
            mask(40, 40, |x, y| {
                let r = ((x as f32 - 20.0).powi(2) + (y as f32 - 20.0).powi(2)).sqrt();
                (255.0 * (1.0 - r / 12.0)).clamp(0.0, 255.0) as u8
            }),
        ),
    ];
    for (name, image, hole) in &cases {
        for hd in [Some(HdPainter::full()), None] {
            let out = p
                .request(image, hole, "a red sofa")
                .hd_painter(hd)
                .steps(3)
                .run()
                .unwrap_or_else(|e| panic!("{name} {hd:?}: {e}"));
            assert_eq!(
                (out[0].width(), out[0].height()),
                (image.width(), image.height()),
                "{name}"
            );
            if hd.is_none() {
                // Paste-back: dilation 4 plus the 9-tap feather's reach of 4.
                let near = hole
                    .threshold(127)
                    .dilate(hd_painter_core::Footprint::square(2 * 8 + 1))
                    .unwrap();
                let (i, o, n) = (
                    image.raster().as_slice(),
                    out[0].raster().as_slice(),
                    near.raster().as_slice(),
                );
                let changed = (0..n.len())
                    .filter(|&q| n[q] == 0 && i[3 * q..3 * q + 3] != o[3 * q..3 * q + 3])
                    .count();
                assert_eq!(changed, 0, "{name}: known pixels changed");
            }
        }
    }
}

#[test]
fn a_4_channel_model_falls_back_to_blended_unless_stable_inpainting_is_asked_for() {
    let p = painter("pipeline_sd");
    let (image, hole) = (photo(40, 30), centre_hole(40, 30));
    let request = p.request(&image, &hole, "a red sofa").steps(2);
    assert_eq!(request.settings().unwrap().method, Method::Blended);
    assert_eq!(request.run().unwrap()[0].width(), 40);
    let err = request.method(Method::StableInpainting).run().unwrap_err();
    assert!(
        matches!(&err, Error::Sampling(SamplingError::InvalidInput(m)) if m.contains("9-channel") && m.contains("Method::Blended")),
        "{err}"
    );
}

/// An attention processor that turns every output non-finite from the third UNet call on.
struct PoisonAfter {
    calls: usize,
    first_bad_call: usize,
}

impl AttentionProcessor for PoisonAfter {
    fn attend(
        &mut self,
        site: &AttentionSite<'_>,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> Tensor<4> {
        // One UNet call = one visit of the first down block's first self-attention.
        if site.kind == AttentionKind::SelfAttention
            && site.path.starts_with("down_blocks.0.attentions.0")
        {
            self.calls += 1;
        }
        let out = DefaultAttention::default().attend(site, q, k, v);
        if self.calls >= self.first_bad_call {
            out * f32::NAN
        } else {
            out
        }
    }
}

#[test]
fn nans_appearing_mid_run_stop_it_with_the_step() {
    let p = painter("pipeline_hd_painter");
    let (image, hole) = (photo(40, 30), centre_hole(40, 30));
    for hd in [None, Some(HdPainter::full())] {
        let mut poison = PoisonAfter {
            calls: 0,
            first_bad_call: 3,
        };
        let err = p
            .request(&image, &hole, "a red sofa")
            .hd_painter(hd)
            .guidance_scale(1.0) // one UNet call per step: call 3 is step 3
            .steps(5)
            .run_with(Hooks::new(&mut poison, &mut |_| ControlFlow::Continue(())))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Sampling(SamplingError::NonFinite { step: 3, .. })
            ),
            "{hd:?}: {err}"
        );
    }
}
