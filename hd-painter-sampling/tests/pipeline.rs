//! The image-level pipeline on tiny models: exact output size for odd sizes (427x640), the input
//! kept exactly outside the dilated, feathered hole, cancellation, strength, empty masks and the
//! wrong UNet for a method.

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::{Device, Distribution, Tensor};
use hd_painter_core::{Footprint, Image, Mask};
use hd_painter_models::{AutoencoderKl, DefaultAttention, Unet2DConditionModel};
use hd_painter_sampling::Hooks;
use hd_painter_sampling::{
    HdPainter, InpaintOptions, Inpainter, Method, NoiseSchedule, PasteBack, RepaintSettings,
    SamplerSettings, SamplingError, TextConditioning,
};

fn model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/models")
        .join(name)
}

fn device() -> Device {
    hd_painter_core::BackendKind::Flex.device().unwrap()
}

/// A fixture UNet and VAE with SD's schedule.
fn models(unet: &str, vae: &str) -> (Unet2DConditionModel, AutoencoderKl, NoiseSchedule) {
    let device = device();
    (
        Unet2DConditionModel::load(model(unet), None, &device).unwrap(),
        AutoencoderKl::load(model(vae), None, &device).unwrap(),
        NoiseSchedule::stable_diffusion(),
    )
}

fn text(device: &Device) -> TextConditioning {
    let t = || Tensor::<3>::random([1, 77, 32], Distribution::Normal(0.0, 1.0), device);
    TextConditioning {
        positive: t(),
        negative: t(),
        prompt_tokens: vec![1],
        text_time: None,
    }
}

fn photo(width: u32, height: u32) -> Image {
    let rgb = (0..width * height * 3)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    Image::from_rgb8(width, height, rgb).unwrap()
}

fn hole(width: u32, height: u32, x: std::ops::Range<u32>, y: std::ops::Range<u32>) -> Mask {
    let v = (0..width * height)
        .map(|i| {
            if x.contains(&(i % width)) && y.contains(&(i / width)) {
                255
            } else {
                0
            }
        })
        .collect();
    Mask::from_luma8(width, height, v).unwrap()
}

fn options(method: Method, steps: usize) -> InpaintOptions {
    InpaintOptions {
        method,
        sampler: SamplerSettings {
            steps,
            ..SamplerSettings::default()
        },
        ..InpaintOptions::default()
    }
}

fn run(
    inpainter: &Inpainter<'_>,
    image: &Image,
    mask: &Mask,
    o: &InpaintOptions,
) -> Result<Vec<Image>, SamplingError> {
    inpainter.inpaint(
        image,
        mask,
        &text(&device()),
        o,
        Hooks::new(&mut DefaultAttention::default(), &mut |_| {
            ControlFlow::Continue(())
        }),
    )
}

/// Pixels farther than `reach` from the hole (Chebyshev) are the input's, exactly.
fn assert_kept_outside(input: &Image, output: &Image, mask: &Mask, reach: u32) {
    let near = mask.dilate(Footprint::square(reach)).unwrap();
    let (i, o, n) = (
        input.raster().as_slice(),
        output.raster().as_slice(),
        near.raster().as_slice(),
    );
    let changed = (0..n.len())
        .filter(|&p| n[p] == 0 && i[3 * p..3 * p + 3] != o[3 * p..3 * p + 3])
        .count();
    assert_eq!(changed, 0, "pixels changed outside the feathered hole");
    let inside = (0..n.len())
        .filter(|&p| {
            mask.raster().as_slice()[p] == 255 && i[3 * p..3 * p + 3] != o[3 * p..3 * p + 3]
        })
        .count();
    assert!(inside > 0, "the hole was not generated");
}

#[test]
fn blended_keeps_the_exact_odd_size_and_the_known_pixels() {
    let (unet, vae, schedule) = models("unet_sd2", "vae_x4");
    let inpainter = Inpainter::new(&unet, &vae, &schedule);
    let (image, mask) = (photo(427, 640), hole(427, 640, 100..300, 200..420));
    let out = run(&inpainter, &image, &mask, &options(Method::Blended, 2)).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].width(), out[0].height()), (427, 640));
    // Dilation 4 plus a 9-tap feather reach 8 pixels.
    assert_kept_outside(&image, &out[0], &mask, 8);
}

#[test]
fn stable_inpainting_runs_end_to_end_with_seeds_strength_and_cancel() {
    let device = device();
    let (unet, vae, schedule) = models("unet_sd15_inpaint", "vae_sd");
    let inpainter = Inpainter::new(&unet, &vae, &schedule);
    let (image, mask) = (photo(45, 37), hole(45, 37, 10..30, 5..25));
    let mut o = options(Method::StableInpainting, 3);
    o.seeds = vec![1, 2];
    let out = run(&inpainter, &image, &mask, &o).unwrap();
    assert_eq!(out.len(), 2);
    for img in &out {
        assert_eq!((img.width(), img.height()), (45, 37));
        assert_kept_outside(&image, img, &mask, 8);
    }
    assert_ne!(out[0], out[1], "different seeds, different images");

    // strength 0.5 of 4 steps runs 2; a callback that stops after one step cancels the run.
    o.sampler.steps = 4;
    o.strength = 0.5;
    let mut steps = 0;
    inpainter
        .inpaint(
            &image,
            &mask,
            &text(&device),
            &o,
            Hooks::new(&mut DefaultAttention::default(), &mut |_| {
                steps += 1;
                ControlFlow::Continue(())
            }),
        )
        .unwrap();
    assert_eq!(steps, 2);
    let err = inpainter
        .inpaint(
            &image,
            &mask,
            &text(&device),
            &o,
            Hooks::new(&mut DefaultAttention::default(), &mut |_| {
                ControlFlow::Break(())
            }),
        )
        .unwrap_err();
    assert!(
        matches!(err, SamplingError::Cancelled { step: 1, total: 2 }),
        "{err}"
    );

    // Without paste-back the decoded image comes back whole (and differs outside the hole).
    o.paste_back = None;
    o.strength = 1.0;
    let raw = run(&inpainter, &image, &mask, &o).unwrap();
    assert_eq!((raw[0].width(), raw[0].height()), (45, 37));
    let _ = PasteBack::default();
}

#[test]
fn repaint_runs_and_misuse_is_reported() {
    let (unet4, vae, schedule) = models("unet_sd2", "vae_sd");
    let inpainter = Inpainter::new(&unet4, &vae, &schedule);
    let (image, mask) = (photo(33, 20), hole(33, 20, 5..20, 4..12));
    let settings = RepaintSettings {
        steps: 4,
        jump_length: 2,
        jump_n_sample: 2,
        ..RepaintSettings::default()
    };
    let out = run(
        &inpainter,
        &image,
        &mask,
        &options(Method::Repaint(settings), 4),
    )
    .unwrap();
    assert_eq!((out[0].width(), out[0].height()), (33, 20));

    // A 4-channel UNet cannot do Stable Inpainting.
    let err = run(
        &inpainter,
        &image,
        &mask,
        &options(Method::StableInpainting, 2),
    )
    .unwrap_err();
    assert!(
        matches!(err, SamplingError::InvalidInput(ref m) if m.contains("9-channel")),
        "{err}"
    );
    // A mask of another size is a typed error; a mask without hole returns the input.
    assert!(
        run(
            &inpainter,
            &image,
            &hole(32, 20, 0..1, 0..1),
            &options(Method::Blended, 2)
        )
        .is_err()
    );
    let unchanged = run(
        &inpainter,
        &image,
        &hole(33, 20, 0..0, 0..0),
        &options(Method::Blended, 2),
    )
    .unwrap();
    assert_eq!(unchanged[0], image);
}

/// HD-Painter's four variants on a 9-channel UNet with attention at latent/2 and latent/4; PAIntA
/// and RASG composed with Blended Latent Diffusion on a 4-channel UNet (whose mid block is its
/// latent/4 cross-attention); RASG refused where it cannot run.
#[test]
fn hd_painter_variants_run_end_to_end_and_compose_with_blended() {
    let (unet, vae, schedule) = models("unet_hd_painter", "vae_sd");
    let inpainter = Inpainter::new(&unet, &vae, &schedule);
    // Padded to 80x64: a 40x32 latent, 10x8 at the RASG score grid.
    let (image, mask) = (photo(70, 56), hole(70, 56, 20..55, 10..40));
    let variants = [
        HdPainter::baseline(),
        HdPainter::painta_only(),
        HdPainter::rasg_only(),
        HdPainter::full(),
    ];
    let outputs: Vec<Image> = variants
        .iter()
        .map(|&variant| {
            let mut o = InpaintOptions::hd_painter(variant);
            o.sampler.steps = 2; // t = 999 (PAIntA on) and 499 (off)
            let out = run(&inpainter, &image, &mask, &o).unwrap();
            assert_eq!((out[0].width(), out[0].height()), (70, 56));
            out.into_iter().next().unwrap()
        })
        .collect();
    for (i, variant) in variants.iter().enumerate().skip(1) {
        assert!(outputs[i] != outputs[0], "{variant:?} changes the baseline");
    }

    let (unet4, vae4, _) = models("unet_sd2", "vae_sd");
    let inpainter4 = Inpainter::new(&unet4, &vae4, &schedule);
    let blended = |variant| {
        let mut o = InpaintOptions::hd_painter(variant);
        o.method = Method::Blended;
        o.sampler.steps = 2;
        run(&inpainter4, &image, &mask, &o)
    };
    let plain = blended(HdPainter::baseline()).unwrap();
    for variant in [HdPainter::painta_only(), HdPainter::rasg_only()] {
        let guided = blended(variant).unwrap();
        assert!(guided != plain, "{variant:?} acts on the 4-channel UNet");
    }
    // Two levels (a 36x28 latent here): no cross-attention at latent/4. RASG says so instead of
    // guessing.
    let (unet2, vae2, _) = models("unet_sd15_inpaint", "vae_sd");
    let two_levels = Inpainter::new(&unet2, &vae2, &schedule);
    let mut o = InpaintOptions::hd_painter(HdPainter::rasg_only());
    o.sampler.steps = 1;
    let err = run(&two_levels, &image, &mask, &o).unwrap_err();
    assert!(
        matches!(err, SamplingError::InvalidInput(ref m) if m.contains("latent/4")),
        "{err}"
    );
    let mut o = InpaintOptions::hd_painter(HdPainter::full());
    o.method = Method::Repaint(RepaintSettings::default());
    let err = run(&inpainter4, &image, &mask, &o).unwrap_err().to_string();
    assert!(err.contains("RASG") && err.contains("RePaint"), "{err}");
}
