//! BrushNet against a golden of its official code itself: the TencentARC/BrushNet fork of
//! diffusers (`BrushNetModel`, its UNet, `StableDiffusionBrushNetPipeline`), run by
//! `tools/reference/brushnet_official.py` on the repository's tiny base UNet, VAE and branch
//! (the branch in its published layout, which the fork's own class loaded). A 96 x 64 photo and
//! a colour mask, prepared as the official `test_brushnet.py` does (hole where the channel sum
//! is > 255, the masked image black there); the pipeline with DDIM, 4 steps, CFG 7.5, scale 0.8
//! and the control window 0 - 0.8 (the last step without the branch), the latents and prompt
//! embeddings injected. The official pipeline conditions on a posterior sample per guidance half;
//! the golden's run replaces it with the posterior mean, which we use. Checked: the hole, the
//! conditioning latents (1e-4), every step's residuals of both halves and the UNet's noise
//! prediction with them (1e-4), the latents after every step (1e-3), the decoded image and the
//! official blend (one level).

mod common;

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor};
use common::{Golden, assert_close, device, fixtures, worst_level};
use hd_painter_core::{Image, Mask, MaskChannel, MaskOptions, Quantize};
use hd_painter_models::{
    AutoencoderKl, BrushNetModel, Conditions, DefaultAttention, Unet2DConditionModel,
};
use hd_painter_sampling::{
    BrushNetLatents, BrushNetSettings, ClassifierFree, LatentStrategy, NoiseSchedule, Sampler,
    SamplerSettings, TextConditioning, brushnet_blend, brushnet_condition, timesteps,
};
use hd_painter_sampling::{Hooks, NoiseLevel, Stage, StepPosition};

const STEPS: usize = 4;

/// The mask file as the official script reads it, through a file as users give it.
fn official_hole(g: &Golden) -> Mask {
    let path = std::env::temp_dir().join(format!("brushnet-mask-{}.png", std::process::id()));
    g.image("mask_file").save(&path).unwrap();
    let options = MaskOptions {
        channel: MaskChannel::RgbSum,
        ..MaskOptions::default()
    };
    let hole = Mask::open_with(&path, options).unwrap();
    std::fs::remove_file(&path).unwrap();
    hole
}

fn residuals_of(g: &Golden, step: usize, half: usize, device: &Device) -> Vec<Tensor<4>> {
    let count = g.ints("residual_count")[0];
    (0..count)
        .map(|j| {
            g.tensor::<4>(&format!("residuals.{step}.{j}"), device)
                .slice(half..half + 1)
        })
        .collect()
}

#[test]
fn brushnet_matches_the_official_pipeline() {
    let device = device();
    let g = Golden::at("models/brushnet/brushnet_official.safetensors");
    let unet =
        Unet2DConditionModel::load(fixtures().join("models/unet_sd2"), None, &device).unwrap();
    let branch = BrushNetModel::load(fixtures().join("models/brushnet"), None, &device).unwrap();
    let vae = AutoencoderKl::load(fixtures().join("models/vae_sd"), None, &device).unwrap();

    let hole = official_hole(&g);
    let want: Vec<u8> = g.get("hole").1.into_iter().map(|v| v as u8).collect();
    assert_eq!(
        hole.raster().as_slice(),
        &want[..],
        "the script's channel-sum rule"
    );
    let photo = g.image("photo");
    let condition =
        brushnet_condition(&vae, photo.to_tensor(&device), hole.to_tensor(&device)).unwrap();
    assert_close(
        &condition,
        &g.f32s("condition").1,
        1e-4,
        "conditioning latents",
    );

    let text = TextConditioning {
        positive: g.tensor("positive", &device),
        negative: g.tensor("negative", &device),
        prompt_tokens: vec![],
        text_time: None,
    };
    let settings = BrushNetSettings {
        conditioning_scale: 0.8,
        control_start: 0.0,
        control_end: 0.8,
    };
    let mut strategy = BrushNetLatents::new(&branch, condition, settings).unwrap();
    let grid = timesteps(SamplerSettings::default().scheduler.spacing, 1000, STEPS);
    let context = Tensor::cat(vec![text.negative.clone(), text.positive.clone()], 0);
    for (i, &t) in grid.iter().enumerate() {
        // Each step from the official latents before it.
        let latents = match i {
            0 => g.tensor::<4>("latents", &device),
            _ => g.slice::<4>("step_latents", i - 1, &device),
        };
        let level = NoiseLevel::from_alpha_cumprod(0.5); // unused by the branch
        let at = StepPosition {
            timestep: t as f64,
            level,
            next: level,
            index: i,
            step: i,
            total: STEPS,
        };
        let residuals = strategy.unet_residuals(&latents, &at, &text).unwrap();
        let want = [
            residuals_of(&g, i, 0, &device),
            residuals_of(&g, i, 1, &device),
        ];
        let doubled = Tensor::cat(vec![latents.clone(), latents], 0);
        let eps = match &residuals {
            Some(r) => {
                let got: Vec<&Tensor<4>> = r.down.iter().chain([&r.mid]).chain(&r.up).collect();
                assert_eq!(got.len(), want[0].len(), "step {i}: residual count");
                for half in &want {
                    for (j, (a, b)) in got.iter().zip(half).enumerate() {
                        let b: Vec<f32> = b.clone().into_data().try_into_vec_as().unwrap();
                        assert_close(a, &b, 1e-4, &format!("step {i}: residual {j}"));
                    }
                }
                unet.forward_with_residuals(
                    doubled,
                    &[t as f32; 2],
                    &context,
                    Conditions::default(),
                    &mut DefaultAttention::default(),
                    &r.repeat_batch(2),
                )
            }
            None => {
                assert_eq!(i, STEPS - 1, "only the last step is outside the window");
                for r in want.iter().flatten() {
                    let top: f32 = r.clone().abs().max().into_scalar();
                    assert_eq!(top, 0.0, "officially zero residuals outside the window");
                }
                unet.forward(
                    doubled,
                    &[t as f32; 2],
                    &context,
                    Conditions::default(),
                    &mut DefaultAttention::default(),
                )
            }
        }
        .unwrap();
        assert_close(
            &eps,
            &g.part("eps", i),
            1e-4,
            &format!("step {i}: noise prediction"),
        );
    }

    let mut seen = 0;
    let sampled = Sampler {
        unet: &unet,
        schedule: &NoiseSchedule::stable_diffusion(),
        text: &text,
        seeds: &[0],
        stage: Stage::Inpaint,
        hooks: Hooks::new(&mut DefaultAttention::default(), &mut |view| {
            let want = g.part("step_latents", seen);
            assert_close(
                view.latents,
                &want,
                1e-3,
                &format!("latents after step {seen}"),
            );
            seen += 1;
            ControlFlow::Continue(())
        }),
    }
    .run(
        &SamplerSettings {
            steps: STEPS,
            ..SamplerSettings::default()
        },
        &mut strategy,
        &ClassifierFree,
        g.tensor("latents", &device),
    )
    .unwrap();
    assert_eq!(seen, STEPS);
    let decoded = vae.decode(sampled.latents / vae.scaling_factor()).unwrap();
    let generated = Image::from_tensor(decoded, Quantize::Round).unwrap();
    let worst = worst_level(&generated, &g.image("generated"));
    assert!(
        worst <= 1,
        "decoded image: {worst} levels from the official one"
    );
    let blended = brushnet_blend(&photo, &g.image("generated"), &hole).unwrap();
    let worst = worst_level(&blended, &g.image("blended"));
    assert!(worst <= 1, "official blend: {worst} levels");
}
