//! The customisations through a request: LoRA and textual inversion on the painter's models,
//! LCM-LoRA's preset (the LCM scheduler, 4 steps, guidance 1 unless set; RASG refused, PAIntA
//! taking it) and Automatic1111's prompt syntax (a long weighted prompt in two chunks through
//! PAIntA and RASG, the negative prompt padded to the same length).

mod common;

use std::ops::ControlFlow;

use common::{fixtures, inputs, painter};
use hd_painter::{Lora, PromptSyntax, TextualInversion};
use hd_painter_models::DefaultAttention;
use hd_painter_sampling::{HdPainter, Hooks, SchedulerKind};

#[test]
fn the_lcm_preset_fills_in_what_the_request_leaves_unset() {
    let p = painter("pipeline_hd_painter");
    let (image, mask) = inputs();
    let request = p
        .request(&image, &mask, "a sofa")
        .hd_painter(Some(HdPainter::painta_only()));
    let settings = request.clone().lcm().settings().unwrap();
    assert!(matches!(
        settings.sampler.scheduler.kind,
        SchedulerKind::Lcm { .. }
    ));
    assert_eq!(
        (settings.sampler.steps, settings.sampler.guidance_scale),
        (4, 1.0)
    );
    let set = request
        .clone()
        .lcm()
        .steps(6)
        .guidance_scale(1.5)
        .settings()
        .unwrap();
    assert_eq!((set.sampler.steps, set.sampler.guidance_scale), (6, 1.5));
    let mut seen = 0;
    let mut attention = DefaultAttention::default();
    let out = request
        .clone()
        .lcm()
        .run_with(Hooks::new(&mut attention, &mut |_| {
            seen += 1;
            ControlFlow::Continue(())
        }))
        .unwrap();
    assert_eq!((out.len(), seen), (1, 4));
    // RASG's guidance is DDIM's: with the preset the settings are refused before any model runs.
    let rasg = p.request(&image, &mask, "a sofa").lcm();
    let err = rasg.run().unwrap_err().to_string();
    assert!(err.contains("RASG"), "{err}");
}

#[test]
fn a_long_weighted_prompt_runs_through_painta_and_rasg() {
    let p = painter("pipeline_hd_painter");
    let (image, mask) = inputs();
    // About 100 tokens with the byte-level tiny tokenizer: two chunks for the prompt.
    let prompt = "a (red leather:1.3) sofa with [plain] cushions, a lamp, ".repeat(2);
    let request = p
        .request(&image, &mask, &prompt)
        .steps(3)
        .prompt_syntax(PromptSyntax::Weighted);
    let text = request.encode().unwrap();
    assert_eq!(
        text.positive.dims()[1],
        3 * 77,
        "prompt + HD-Painter's positive prompt"
    );
    assert_eq!(
        text.negative.dims(),
        text.positive.dims(),
        "the negative padded to match"
    );
    assert!(text.prompt_tokens.iter().all(|&t| t < 3 * 77));
    assert!(
        text.prompt_tokens.iter().any(|&t| t > 77),
        "prompt tokens in the second chunk"
    );
    assert_eq!(request.run().unwrap().len(), 1);
    let plain = p.request(&image, &mask, &prompt).encode().unwrap();
    assert_eq!(
        plain.positive.dims()[1],
        77,
        "the plain syntax is unchanged: one window"
    );
}

#[test]
fn loras_and_embeddings_on_the_painters_models_change_the_run() {
    let dir = fixtures().join("models");
    let (image, mask) = inputs();
    let base = painter("pipeline_sd");
    let mut custom = painter("pipeline_sd");
    let kohya = Lora::open(dir.join("lora/kohya_sd.safetensors")).unwrap();
    custom.models.fuse_lora(&kohya, 0.7).unwrap();
    let embedding =
        TextualInversion::open(dir.join("textual_inversion/cat_toy.safetensors"), None).unwrap();
    custom.models.load_textual_inversion(&embedding).unwrap();
    let run = |p: &hd_painter::Painter, prompt: &str| {
        p.request(&image, &mask, prompt)
            .hd_painter(None)
            .steps(2)
            .run()
            .unwrap()
            .remove(0)
    };
    let (a, b) = (run(&base, "a <cat-toy>"), run(&custom, "a <cat-toy>"));
    assert_ne!(
        a.raster().as_slice(),
        b.raster().as_slice(),
        "the LoRA and the embedding change the result"
    );
}

#[test]
fn the_lcm_preset_refuses_repaint() {
    let p = painter("pipeline_sd");
    let (image, mask) = inputs();
    let request = p
        .request(&image, &mask, "a sofa")
        .method(hd_painter::Method::Repaint(Default::default()))
        .hd_painter(None)
        .lcm();
    let err = request.settings().unwrap_err().to_string();
    assert!(err.contains("RePaint"), "{err}");
}
