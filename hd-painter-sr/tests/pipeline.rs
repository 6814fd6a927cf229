//! The SR stage and the two-stage pipeline on the tiny fixture models: sizes (the input's exact
//! size, or the reference's long side), the original kept outside the Poisson-blended region,
//! the memory budget refused before any heavy work, mismatched inputs, and other schedulers.

mod common;

use std::ops::ControlFlow;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use common::{device, model};
use hd_painter_core::{Filter, Footprint, Image, Mask};
use hd_painter_models::{AutoencoderKl, DefaultAttention, Unet2DConditionModel, VaeTiling};
use hd_painter_sampling::{
    CropSettings, HdPainter, InpaintOptions, Inpainter, NoiseSchedule, SchedulerKind,
    SchedulerSpec, Spacing, TextConditioning, crop_region,
};
use hd_painter_sampling::{Hooks, Stage};
use hd_painter_sr::{SrError, SrOutput, SrSettings, TwoStage, Upscaler};

fn text(device: &Device) -> TextConditioning {
    let t = || Tensor::<3>::random([1, 77, 32], Distribution::Normal(0.0, 1.0), device);
    TextConditioning {
        positive: t(),
        negative: t(),
        prompt_tokens: vec![1, 2],
        text_time: None,
    }
}

fn photo(width: u32, height: u32) -> Image {
    let rgb = (0..width * height * 3)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    Image::from_rgb8(width, height, rgb).unwrap()
}

fn hole(width: u32, height: u32) -> Mask {
    let v = (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            if (30..50).contains(&x) && (15..35).contains(&y) {
                255
            } else {
                0
            }
        })
        .collect();
    Mask::from_luma8(width, height, v).unwrap()
}

/// A short run at a small long side, so the tiny models stay fast.
fn settings() -> SrSettings {
    SrSettings {
        steps: 2,
        long_side: 96,
        hole_dilation: 3,
        ..SrSettings::default()
    }
}

struct X4 {
    unet: Unet2DConditionModel,
    vae: AutoencoderKl,
    schedule: NoiseSchedule,
}

impl X4 {
    fn upscaler(&self) -> Upscaler<'_> {
        Upscaler {
            unet: &self.unet,
            vae: &self.vae,
            schedule: &self.schedule,
        }
    }
}

fn x4() -> X4 {
    let device = device();
    X4 {
        unet: Unet2DConditionModel::load(model("unet_x4"), None, &device).unwrap(),
        vae: AutoencoderKl::load(model("vae_x4"), None, &device).unwrap(),
        schedule: NoiseSchedule::x4_upscaler(),
    }
}

fn upscale(
    up: &Upscaler<'_>,
    low: &Image,
    image: &Image,
    mask: &Mask,
    s: &SrSettings,
) -> Result<Image, SrError> {
    up.upscale(
        low,
        image,
        mask,
        &text(&device()),
        s,
        Hooks::new(&mut DefaultAttention::default(), &mut |_| {
            ControlFlow::Continue(())
        }),
    )
}

/// Pixels outside the bounding box of the hole dilated by the blend's 48 x 48 box are the
/// original's, exactly.
fn assert_kept_far_from_the_hole(original: &Image, out: &Image, mask: &Mask) {
    let near = mask
        .dilate(Footprint::Box {
            width: 48,
            height: 48,
        })
        .unwrap();
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let n = near.raster().as_slice();
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if n[y * w + x] != 0 {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    let (a, b) = (original.raster().as_slice(), out.raster().as_slice());
    for y in 0..h {
        for x in 0..w {
            if x < x0 || x > x1 || y < y0 || y > y1 {
                assert_eq!(
                    a[(y * w + x) * 3..][..3],
                    b[(y * w + x) * 3..][..3],
                    "pixel ({x}, {y})"
                );
            }
        }
    }
}

#[test]
fn upscaling_keeps_the_input_size_and_the_far_known_region() {
    let m = x4();
    let up = m.upscaler();
    // 160x120 -> long side 96 (96x72), the low-res stage at 24x18.
    let (image, mask) = (photo(160, 120), hole(160, 120));
    let low = image.resize(24, 18, Filter::Bicubic).unwrap();
    let out = upscale(&up, &low, &image, &mask, &settings()).unwrap();
    assert_eq!((out.width(), out.height()), (160, 120));
    assert_kept_far_from_the_hole(&image, &out, &mask);
    assert!(out != image, "the hole was generated");

    let empty = Mask::from_luma8(160, 120, vec![0; 160 * 120]).unwrap();
    let unchanged = upscale(&up, &low, &image, &empty, &settings()).unwrap();
    assert!(unchanged == image, "no hole, the original back");

    let reference = SrSettings {
        output: SrOutput::LongSide,
        ..settings()
    };
    let out = upscale(&up, &low, &image, &mask, &reference).unwrap();
    assert_eq!((out.width(), out.height()), (96, 72));
}

#[test]
fn a_run_over_the_memory_budget_fails_before_any_work() {
    let m = x4();
    let up = m.upscaler();
    let (image, mask) = (photo(3000, 2000), hole(3000, 2000));
    let s = SrSettings {
        memory_budget: Some(1 << 29),
        ..SrSettings::default()
    };
    let estimate = up.memory_estimate((3000, 2000), &s);
    assert!(estimate.peak() > 1 << 29, "{estimate:?}");
    let low = image.resize(512, 341, Filter::Nearest).unwrap();
    let start = Instant::now();
    let err = upscale(&up, &low, &image, &mask, &s).unwrap_err();
    assert!(
        matches!(err, SrError::MemoryBudget { budget, needed, .. } if budget == 1 << 29 && needed == estimate.peak()),
        "{err}"
    );
    assert!(err.to_string().contains("GiB"), "{err}");
    assert!(start.elapsed().as_secs_f64() < 5.0, "refused early");
}

#[test]
fn mismatched_inputs_are_typed_errors() {
    let m = x4();
    let up = m.upscaler();
    let image = photo(160, 120);
    let low = image.resize(24, 18, Filter::Bicubic).unwrap();
    let err = upscale(&up, &low, &image, &hole(150, 120), &settings()).unwrap_err();
    assert!(
        err.to_string().contains("expected 160x120, found 150x120"),
        "{err}"
    );
    // The official code accepts any low-res size that pads (to 64) to the latents' size, as a
    // first stage sized by the other long-side rule (a pixel off) does; larger is an error.
    let wrong_low = image.resize(70, 18, Filter::Bicubic).unwrap();
    let err = upscale(&up, &wrong_low, &image, &hole(160, 120), &settings()).unwrap_err();
    assert!(
        err.to_string().contains("expected 24x18, found 70x18"),
        "{err}"
    );
    let a_pixel_off = image.resize(24, 17, Filter::Bicubic).unwrap();
    let out = upscale(&up, &a_pixel_off, &image, &hole(160, 120), &settings()).unwrap();
    assert_eq!((out.width(), out.height()), (160, 120));
}

/// The first stage's tiny 9-channel models.
struct FirstStage {
    unet: Unet2DConditionModel,
    vae: AutoencoderKl,
    schedule: NoiseSchedule,
}

impl FirstStage {
    fn load() -> Self {
        let device = device();
        Self {
            unet: Unet2DConditionModel::load(model("unet_hd_painter"), None, &device).unwrap(),
            vae: AutoencoderKl::load(model("vae_sd"), None, &device).unwrap(),
            schedule: NoiseSchedule::stable_diffusion(),
        }
    }

    fn inpainter(&self) -> Inpainter<'_> {
        Inpainter::new(&self.unet, &self.vae, &self.schedule)
    }
}

/// Both stages with the test settings and random prompts: the images and the stage and seeds
/// of every step reported.
fn run_counting_steps(
    first: &FirstStage,
    m: &X4,
    image: &Image,
    mask: &Mask,
    options: &InpaintOptions,
) -> (Vec<Image>, Vec<(Stage, Vec<u64>)>) {
    let device = device();
    let (sr_text, sr) = (text(&device), settings());
    let pipeline = TwoStage {
        inpainter: first.inpainter(),
        upscaler: m.upscaler(),
        sr_text: &sr_text,
        sr: &sr,
    };
    let mut steps = Vec::new();
    let out = pipeline
        .run(
            image,
            mask,
            &text(&device),
            options,
            Hooks::new(&mut DefaultAttention::default(), &mut |view| {
                steps.push((view.stage, view.seeds.to_vec()));
                ControlFlow::Continue(())
            }),
        )
        .unwrap();
    (out, steps)
}

#[test]
fn two_stages_end_to_end() {
    let (m, first) = (x4(), FirstStage::load());
    let (image, mask) = (photo(160, 120), hole(160, 120));
    let mut options = InpaintOptions::hd_painter(HdPainter::full());
    options.sampler.steps = 2;
    options.seeds = vec![3, 4];
    let (out, steps) = run_counting_steps(&first, &m, &image, &mask, &options);
    assert_eq!(out.len(), 2);
    // The first stage runs both seeds as one batch; the SR stage one image at a time.
    let (inpaint, sr) = (Stage::Inpaint, Stage::SuperResolution);
    let expected = [
        (inpaint, vec![3, 4]),
        (inpaint, vec![3, 4]),
        (sr, vec![3]),
        (sr, vec![3]),
        (sr, vec![4]),
        (sr, vec![4]),
    ];
    assert_eq!(steps, expected, "both stages report their steps");
    for img in &out {
        assert_eq!((img.width(), img.height()), (160, 120));
        assert_kept_far_from_the_hole(&image, img, &mask);
    }
    assert!(out[0] != out[1], "one result per seed");
}

/// `crop_to_mask` in the two-stage run: a box larger than the first stage (long side 96 / 4 =
/// 24) goes through both stages at its own size, a smaller one through the first stage alone;
/// the original is kept exactly outside the box, and the output keeps the input's size.
#[test]
fn two_stages_on_the_box_around_the_hole() {
    let (m, first) = (x4(), FirstStage::load());
    let image = photo(160, 120);
    let square = |x0: u32, y0: u32, side: u32| {
        Mask::from_luma8(
            160,
            120,
            (0..160 * 120)
                .map(|i| {
                    let (x, y) = (i % 160, i / 160);
                    let inside = (x0..x0 + side).contains(&x) && (y0..y0 + side).contains(&y);
                    if inside { 255 } else { 0 }
                })
                .collect(),
        )
        .unwrap()
    };
    for (mask, both_stages) in [(square(40, 30, 30), true), (square(100, 60, 6), false)] {
        let mut options = InpaintOptions::hd_painter(HdPainter::full());
        options.sampler.steps = 2;
        options.crop_to_mask = Some(CropSettings {
            padding: 4,
            size: (32, 32),
            each_hole: false,
        });
        let b = crop_region(&mask, 4, (32, 32)).unwrap();
        let (mut out, steps) = run_counting_steps(&first, &m, &image, &mask, &options);
        let out = out.remove(0);
        assert_eq!((out.width(), out.height()), (160, 120));
        let sr_steps = steps
            .iter()
            .filter(|s| s.0 == Stage::SuperResolution)
            .count();
        let expected = if both_stages { (2, 2) } else { (2, 0) };
        assert_eq!(
            (steps.len() - sr_steps, sr_steps),
            expected,
            "box {b:?}: both stages {both_stages}"
        );
        let (o, i) = (out.raster(), image.raster());
        for y in 0..120usize {
            for x in 0..160usize {
                let inside = (b.x1 as usize..b.x2 as usize).contains(&x)
                    && (b.y1 as usize..b.y2 as usize).contains(&y);
                if !inside {
                    assert!(
                        (0..3).all(|c| o.get(x, y, c) == i.get(x, y, c)),
                        "({x}, {y})"
                    );
                }
            }
        }
        assert!(out != image, "the box was inpainted");
    }
}

#[test]
fn vae_tiling_runs_and_lowers_the_estimate() {
    let m = x4();
    let up = m.upscaler();
    let whole = up.memory_estimate((4000, 3000), &SrSettings::default());
    let tiled_settings = SrSettings {
        vae_tiling: Some(VaeTiling { tile: 256 }),
        ..SrSettings::default()
    };
    let tiled = up.memory_estimate((4000, 3000), &tiled_settings);
    assert!(
        tiled.vae_decode < whole.vae_decode / 5,
        "{tiled:?} vs {whole:?}"
    );
    assert_eq!(tiled.unet_step, whole.unet_step);

    let (image, mask) = (photo(160, 120), hole(160, 120));
    let low = image.resize(24, 18, Filter::Bicubic).unwrap();
    let s = SrSettings {
        vae_tiling: Some(VaeTiling { tile: 64 }),
        ..settings()
    };
    let out = upscale(&up, &low, &image, &mask, &s).unwrap();
    assert_eq!((out.width(), out.height()), (160, 120));
    assert_kept_far_from_the_hole(&image, &out, &mask);
}

#[test]
fn sr_settings_out_of_range_are_named_before_any_work() {
    use hd_painter_core::CoreError;

    assert!(SrSettings::default().validate().is_ok());
    let base = SrSettings::default;
    for (settings, name) in [
        (SrSettings { steps: 0, ..base() }, "SR steps"),
        (
            SrSettings {
                guidance_scale: f64::NAN,
                ..base()
            },
            "SR guidance scale",
        ),
        (
            SrSettings {
                noise_level: 1000,
                ..base()
            },
            "SR noise level",
        ),
        (
            SrSettings {
                long_side: 32,
                ..base()
            },
            "SR long side",
        ),
        (
            SrSettings {
                mask_blur: (19, 0.0),
                ..base()
            },
            "SR mask blur sigma",
        ),
    ] {
        match settings.validate() {
            Err(SrError::Sampling(hd_painter_sampling::SamplingError::Models(
                hd_painter_models::ModelsError::Core(CoreError::InvalidParameter {
                    name: n, ..
                }),
            ))) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// The SR stage with other schedulers than its DDIM: any that steps on the x0 prediction carries
/// the known-region blend (the result changes with it), PNDM (which steps on the noise
/// prediction) is refused.
#[test]
fn the_sr_stage_blends_with_any_scheduler_that_steps_on_x0() {
    let m = x4();
    let up = m.upscaler();
    let (image, mask) = (photo(160, 120), hole(160, 120));
    let low = image.resize(24, 18, Filter::Bicubic).unwrap();
    let with = |name: &str, blend_known: bool| SrSettings {
        scheduler: SchedulerSpec {
            spacing: Spacing::Trailing,
            ..SrSettings::default()
                .scheduler
                .with_kind(SchedulerKind::named(name).unwrap())
        },
        blend_known,
        ..settings()
    };
    let ddim = upscale(&up, &low, &image, &mask, &settings()).unwrap();
    for name in ["dpm++2m", "euler-a", "unipc"] {
        let blended = upscale(&up, &low, &image, &mask, &with(name, true)).unwrap();
        assert_kept_far_from_the_hole(&image, &blended, &mask);
        assert!(blended != ddim, "{name}: its own grid");
        let unblended = upscale(&up, &low, &image, &mask, &with(name, false)).unwrap();
        assert!(
            blended != unblended,
            "{name}: the x0 blend steers the steps"
        );
    }
    let err = upscale(&up, &low, &image, &mask, &with("pndm", true)).unwrap_err();
    assert!(err.to_string().contains("noise prediction"), "{err}");
}
