//! HD-Painter against goldens of the official code itself (Picsart-AI-Research/HD-Painter at
//! d452186, run by `tools/reference/hd_painter_official.py` on CPU with tiny random-weight models
//! in its own LDM modules, loaded here from the original single-file layout).
//!
//! The `hd_inpaint.py` flow on a 192 x 118 photo and a colour mask at first-stage long side 192:
//! the size rule, the resize, the mask's channel, order and threshold, the UNet condition, the
//! prompt tokens; then, for the baseline (7 steps, which the official grid runs as 8), PAIntA,
//! RASG and PAIntA + RASG (5 steps), with the official starting noise: the latents, the x0
//! prediction and RASG's normalised gradient after every step, PAIntA's scales `s` at t = 999
//! (all within 1e-3 * max(1, max|ref|)) and the 8-bit output (within one level). The official
//! code's last latents are not compared: it indexes `a_bar[-1]` there (and RASG's sigma is NaN),
//! and only that step's x0 is used. Also the official mask preparation of soft, coloured,
//! edge-touching and one-pixel masks at two sizes.

mod common;

use burn::tensor::{Device, Tensor};
use common::golden_run::Trace;
use common::{Golden, assert_close, assert_first_scales, fixtures, worst_level};
use hd_painter_core::{Filter, Image, Mask, Quantize, SizeRule};
use hd_painter_models::{
    AttentionProcessor, AutoencoderKl, ClipTokenizer, DefaultAttention, Unet2DConditionModel,
};
use hd_painter_sampling::{
    ClassifierFree, Guidance, HD_PAINTER_POSITIVE_PROMPT, HdPainterInputs, NoiseSchedule, Painta,
    PromptFocus, Rasg, RasgSettings, RasgSigma, Sampler, SamplerSettings, SchedulerSpec,
    StableInpainting, TextConditioning, full_prompt, prompt_token_indices,
};
use hd_painter_sampling::{Hooks, Stage};

const TOLERANCE: f32 = 1e-3;
const PROMPT: &str = "a red leather sofa";
const LONG_SIDE: u32 = 192;

struct Setup {
    device: Device,
    unet: Unet2DConditionModel,
    vae: AutoencoderKl,
    golden: Golden,
    inputs: HdPainterInputs,
    stage_size: (u32, u32),
}

fn setup() -> Setup {
    let device = common::device();
    let dir = fixtures().join("models/hd_painter_official");
    let file = dir.join("inpainting.safetensors");
    let unet = Unet2DConditionModel::load_single_file(&file, dir.join("unet"), &device).unwrap();
    let vae = AutoencoderKl::load_single_file(&file, dir.join("vae"), &device).unwrap();
    let golden = Golden::open("hd_painter_official");
    let photo = golden.image("photo");
    let mask = blue(&golden, "mask");
    let stage_size = SizeRule::Script.size(photo.width(), photo.height(), LONG_SIDE);
    let stage = |m: &Mask| m.resize(stage_size.0, stage_size.1, Filter::Bicubic);
    let inputs = HdPainterInputs::prepare(
        &photo
            .resize(stage_size.0, stage_size.1, Filter::Bicubic)
            .unwrap(),
        &stage(&mask).unwrap(),
        64,
        8,
    )
    .unwrap();
    Setup {
        device,
        unet,
        vae,
        golden,
        inputs,
        stage_size,
    }
}

/// The blue channel of an RGB array: what `MaskChannel::Blue` reads from a file.
fn blue(golden: &Golden, key: &str) -> Mask {
    let (shape, v) = golden.get(key);
    let plane = v.chunks_exact(3).map(|p| p[2] as u8).collect();
    Mask::from_luma8(shape[1] as u32, shape[0] as u32, plane).unwrap()
}

fn grey(golden: &Golden, key: &str) -> Vec<u8> {
    golden.get(key).1.into_iter().map(|x| x as u8).collect()
}

#[test]
fn the_first_stage_inputs_are_the_official_ones() {
    let s = setup();
    let g = &s.golden;
    let stage = g.image("stage_photo");
    assert_eq!(s.stage_size, (stage.width(), stage.height()), "size rule");
    assert_eq!(
        s.stage_size,
        (192, 117),
        "the script rule's 117, not the demo's 118"
    );
    let photo = g.image("photo");
    let resized = photo
        .resize(s.stage_size.0, s.stage_size.1, Filter::Bicubic)
        .unwrap();
    assert_eq!(resized, stage, "the resized photo");
    assert_eq!(
        s.inputs.hole.raster().as_slice(),
        &grey(g, "hole")[..],
        "the hole"
    );

    // The UNet condition: the latent mask and the masked image's latents.
    let (latent_hole, masked) = condition(&s);
    let got = Tensor::cat(vec![latent_hole, masked], 1);
    assert_close(&got, &g.f32s("condition").1, 1e-4, "UNet condition");

    let tokenizer = ClipTokenizer::from_dir(fixtures().join("tokenizer")).unwrap();
    let full = full_prompt(PROMPT, HD_PAINTER_POSITIVE_PROMPT);
    assert_eq!(
        prompt_token_indices(&tokenizer, PROMPT, &full),
        g.ints("tokens"),
        "prompt tokens"
    );
}

/// The latent-size hole and `vae.encode(image * (1 - hole)).mean * 0.18215`.
fn condition(s: &Setup) -> (Tensor<4>, Tensor<4>) {
    let pixels = s.inputs.image.to_tensor(&s.device);
    let keep = s.inputs.hole.to_tensor(&s.device).neg() + 1.0;
    let masked = s.vae.encode(pixels * keep).unwrap().mean * s.vae.scaling_factor();
    (s.inputs.latent_hole.to_tensor(&s.device), masked)
}

fn check(name: &str, steps: usize, painta: bool, rasg_eta: Option<f64>) {
    let s = setup();
    let g = &s.golden;
    let context = g.tensor::<3>("context", &s.device);
    let text = TextConditioning {
        negative: context.clone().slice(0..1),
        positive: context.slice(1..2),
        prompt_tokens: g.ints("tokens"),
        text_time: None,
    };
    let [lh, lw] = [
        s.inputs.latent_hole.height() as usize,
        s.inputs.latent_hole.width() as usize,
    ];
    let focus = PromptFocus::new(text.prompt_tokens.clone(), &s.inputs.hole, [lh, lw]).unwrap();
    let (latent_hole, masked) = condition(&s);
    let mut strategy = StableInpainting::new(latent_hole, masked);
    let settings = SamplerSettings {
        steps,
        guidance_scale: 7.5,
        scheduler: SchedulerSpec::hd_painter(),
        first_step: 0,
        end_step: None,
    };
    let rasg = rasg_eta.map(|eta| Rasg {
        settings: RasgSettings {
            eta,
            sigma: RasgSigma::Official,
        },
        focus: focus.clone(),
    });
    let mut default = DefaultAttention::default();
    let mut with_painta = Painta::new(focus, true, &mut default).recording_scales();
    let processor: &mut dyn AttentionProcessor = if painta {
        &mut with_painta
    } else {
        &mut DefaultAttention::default()
    };
    let mut trace = Trace::default();
    let sampled = Sampler {
        unet: &s.unet,
        schedule: &NoiseSchedule::stable_diffusion(),
        text: &text,
        seeds: &[1],
        stage: Stage::Inpaint,
        hooks: Hooks::new(processor, &mut trace.recorder()),
    }
    .run(
        &settings,
        &mut strategy,
        match rasg.as_ref() {
            Some(r) => r as &dyn Guidance,
            None => &ClassifierFree,
        },
        g.tensor(&format!("{name}_noise"), &s.device),
    )
    .unwrap();

    let official_steps = g.get(&format!("{name}_x0")).0[0];
    assert_eq!(trace.x0.len(), official_steps, "{name}: steps");
    for (k, x0) in trace.x0.iter().enumerate() {
        let want = g.part(&format!("{name}_x0"), k);
        assert_close(x0, &want, TOLERANCE, &format!("{name} x0, step {}", k + 1));
    }
    for (k, latents) in trace.latents.iter().enumerate().take(official_steps - 1) {
        let want = g.part(&format!("{name}_latents"), k);
        let what = format!("{name} latents, step {}", k + 1);
        assert_close(latents, &want, TOLERANCE, &what);
    }
    if rasg.is_some() {
        assert_eq!(
            trace.grads.len(),
            official_steps,
            "{name}: a gradient per step"
        );
        for (k, grad) in trace.grads.iter().enumerate() {
            let want = g.part(&format!("{name}_grads"), k);
            let what = format!("{name} RASG gradient, step {}", k + 1);
            assert_close(grad, &want, TOLERANCE, &what);
        }
    } else {
        assert!(trace.grads.is_empty(), "{name}: no RASG, no gradient");
    }
    if painta {
        assert_first_scales(with_painta.take_scales(), g, name, TOLERANCE);
    }

    // The output: the last x0 decoded, truncated to 8 bits, cropped to the stage size.
    let decoded = s
        .vae
        .decode(sampled.last_x0 / s.vae.scaling_factor())
        .unwrap();
    let image = Image::from_tensor(decoded, Quantize::Truncate)
        .unwrap()
        .crop(0, 0, s.stage_size.0, s.stage_size.1)
        .unwrap();
    let worst = worst_level(&image, &g.image(&format!("{name}_image")));
    assert!(
        worst <= 1,
        "{name} image: {worst} levels from the official output"
    );
}

#[test]
fn baseline_matches_the_official_code() {
    check("baseline", 7, false, None);
}

#[test]
fn painta_matches_the_official_code() {
    check("painta", 5, true, None);
}

#[test]
fn rasg_matches_the_official_code() {
    check("rasg", 5, false, Some(0.1));
}

#[test]
fn painta_with_rasg_matches_the_official_code() {
    check("painta_rasg", 5, true, Some(1.0));
}

/// `IImage(resize(mask, L)).dilate(1).alpha().padx(64)` of soft, edge-touching and one-pixel
/// grey masks, exact. The colour mask also has green the official 4-D dilation ORs into the
/// blue channel at a pixel (the cross links neighbouring channels), which a one-channel mask
/// cannot carry: it differs exactly there, and nowhere else.
#[test]
fn mask_preparation_matches_the_official_iimage_code() {
    let g = Golden::at("core/hd_painter_masks.safetensors");
    let photo = g.image("photo");
    for long_side in [192, 512] {
        let size = SizeRule::Script.size(photo.width(), photo.height(), long_side);
        let small = |m: &Mask| m.resize(size.0, size.1, Filter::Bicubic).unwrap();
        let stage_photo = photo.resize(size.0, size.1, Filter::Bicubic).unwrap();
        for name in ["soft", "edge", "pixel", "colour"] {
            let source = blue(&g, &format!("{name}_source"));
            let got = HdPainterInputs::prepare(&stage_photo, &small(&source), 64, 8).unwrap();
            let want = grey(&g, &format!("{name}_{long_side}"));
            let got = got.hole.raster().as_slice();
            assert_eq!(got.len(), want.len(), "{name} at {long_side}: size");
            if name != "colour" {
                assert_eq!(got, &want[..], "{name} at {long_side}");
                continue;
            }
            // Where the official hole has more: the green plane's non-zero pixels only.
            let green = green_plane(&g, &format!("{name}_source"), size);
            let padded_width = (size.0.div_ceil(64) * 64) as usize;
            for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                let (x, y) = (i % padded_width, i / padded_width);
                let in_green = (x as u32) < size.0
                    && (y as u32) < size.1
                    && green[y * size.0 as usize + x] > 0;
                assert!(
                    a == b || (a == 0 && b == 255 && in_green),
                    "colour at {long_side}: ({x}, {y}) is {a}, officially {b}"
                );
            }
            assert!(
                got != &want[..],
                "the colour case exercises the green channel"
            );
        }
    }
}

/// The green plane of an RGB array, resized to `size` (bicubic).
fn green_plane(golden: &Golden, key: &str, size: (u32, u32)) -> Vec<u8> {
    let (shape, v) = golden.get(key);
    let plane = v.chunks_exact(3).map(|p| p[1] as u8).collect();
    let m = Mask::from_luma8(shape[1] as u32, shape[0] as u32, plane).unwrap();
    m.resize(size.0, size.1, Filter::Bicubic)
        .unwrap()
        .raster()
        .as_slice()
        .to_vec()
}
