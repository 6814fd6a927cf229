//! One test set run against every `LatentStrategy` (Stable Inpainting, Blended, Differential
//! with and without the inpainting UNet's conditioning, BrushNet, the x4 SR blend), as
//! diffusers runs one scheduler suite against every scheduler: the UNet input has the batch,
//! the grid and the channels the strategy's UNet reads, one row of conditioning serves a batch,
//! `after_step` keeps the shapes and is the identity where everything is to be generated, and
//! only BrushNet adds residuals, inside its control window.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use common::{device, fixtures};
use hd_painter_models::BrushNetModel;
use hd_painter_sampling::{
    BlendedLatents, BrushNetLatents, BrushNetSettings, DifferentialLatents, LatentStrategy,
    NoiseLevel, NoiseSchedule, StableInpainting, StepOutput, StepPosition, TextConditioning,
};
use hd_painter_sr::UpscaleLatents;

/// The latents: two images of 4 channels on an 8 x 8 grid.
const N: usize = 2;
const C: usize = 4;
const H: usize = 8;
const W: usize = 8;

fn normal(shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Each strategy, with the channels its UNet reads, for a hole that is `hole` everywhere
/// (1 = to generate). The conditioning has one row; the latents have `N`.
fn strategies<'a>(
    branch: &'a BrushNetModel,
    hole: f32,
    device: &Device,
) -> Vec<(&'static str, Box<dyn LatentStrategy + 'a>, usize)> {
    let mask = || Tensor::<4>::ones([1, 1, H, W], device) * hole;
    let source = || normal([1, C, H, W], device);
    let differential =
        || DifferentialLatents::new(mask(), source(), normal([N, C, H, W], device), 4);
    let brushnet_condition = Tensor::cat(vec![source(), mask().neg() + 1.0], 1);
    let settings = BrushNetSettings {
        control_end: 0.5,
        ..BrushNetSettings::default()
    };
    let low_res = normal([1, 3, H, W], device);
    vec![
        (
            "stable inpainting",
            Box::new(StableInpainting::new(mask(), source())),
            9,
        ),
        (
            "blended",
            Box::new(BlendedLatents::new(mask(), source(), vec![1, 2])),
            4,
        ),
        ("differential", Box::new(differential()), 4),
        (
            "differential + inpainting",
            Box::new(differential().with_conditioning(StableInpainting::new(mask(), source()))),
            9,
        ),
        (
            "brushnet",
            Box::new(BrushNetLatents::new(branch, brushnet_condition, settings).unwrap()),
            4,
        ),
        (
            "x4 blend",
            Box::new(UpscaleLatents::new(low_res, 20).with_known_region(mask(), source())),
            7,
        ),
    ]
}

fn branch(device: &Device) -> BrushNetModel {
    BrushNetModel::load(fixtures().join("models/brushnet"), None, device).unwrap()
}

fn step(device: &Device) -> StepOutput {
    StepOutput {
        prev_sample: normal([N, C, H, W], device),
        pred_x0: normal([N, C, H, W], device),
        pred_eps: normal([N, C, H, W], device),
    }
}

fn at(step: usize, total: usize) -> StepPosition {
    let level = |t: isize| {
        NoiseLevel::from_alpha_cumprod(NoiseSchedule::stable_diffusion().alpha_cumprod(t))
    };
    StepPosition {
        timestep: (999 - 250 * step) as f64,
        level: level(999 - 250 * step as isize),
        next: level(749 - 250 * step as isize),
        index: step,
        step,
        total,
    }
}

fn values(t: &Tensor<4>) -> Vec<f32> {
    t.clone().into_data().try_into_vec_as().unwrap()
}

#[test]
fn every_strategy_feeds_its_unet_and_keeps_the_shapes() {
    let device = device();
    let branch = branch(&device);
    for (name, mut strategy, unet_in) in strategies(&branch, 0.5, &device) {
        let input = strategy.model_input(normal([N, C, H, W], &device));
        assert_eq!(input.dims(), [N, unet_in, H, W], "{name}: UNet input");
        assert_eq!(
            strategy.class_label().is_some(),
            name == "x4 blend",
            "{name}"
        );
        let next = strategy.after_step(step(&device), &at(1, 4));
        assert_eq!(next.prev_sample.dims(), [N, C, H, W], "{name}: latents");
        assert_eq!(next.pred_x0.dims(), [N, C, H, W], "{name}: x0");
        assert!(
            values(&next.prev_sample).iter().all(|v| v.is_finite()),
            "{name}"
        );
    }
}

#[test]
fn where_everything_is_generated_after_step_changes_nothing() {
    let device = device();
    let branch = branch(&device);
    for (name, mut strategy, _) in strategies(&branch, 1.0, &device) {
        for k in 0..3 {
            let before = step(&device);
            let (prev, x0) = (values(&before.prev_sample), values(&before.pred_x0));
            let next = strategy.after_step(before, &at(k, 4));
            assert_eq!(values(&next.prev_sample), prev, "{name}, step {k}: latents");
            assert_eq!(values(&next.pred_x0), x0, "{name}, step {k}: x0");
        }
    }
}

#[test]
fn only_brushnet_adds_residuals_and_only_inside_its_window() {
    let device = device();
    let branch = branch(&device);
    let dim = 32; // the fixtures' text width
    let text = TextConditioning {
        positive: Tensor::random([1, 77, dim], Distribution::Normal(0.0, 1.0), &device),
        negative: Tensor::zeros([1, 77, dim], &device),
        prompt_tokens: vec![1],
        text_time: None,
    };
    let latents = normal([N, C, H, W], &device);
    for (name, strategy, _) in strategies(&branch, 0.5, &device) {
        // control_end 0.5 of 4 steps: steps 0 and 1 are inside, 2 and 3 outside.
        let got: Vec<bool> = (0..4)
            .map(|k| {
                let r = strategy.unet_residuals(&latents, &at(k, 4), &text).unwrap();
                r.is_some()
            })
            .collect();
        let expected = match name {
            "brushnet" => [true, true, false, false],
            _ => [false; 4],
        };
        assert_eq!(got, expected, "{name}");
    }
}
