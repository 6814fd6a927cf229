//! The `inpaint` program's `--lora FILE[:SCALE]`, `--embedding`, `--lcm` and
//! `--prompt-weighting`: each changes the run; a LoRA for another model, `--lcm` with RASG and a
//! malformed scale are refused, nothing written.

mod cli;

use std::process::Command;

use cli::{inpaint, program, repo, scratch, text};

/// Stable Inpainting on the 9-channel tiny pipeline, 2 steps, with `extra`.
fn run(name: &str, extra: &[&str]) -> (bool, String, Vec<u8>) {
    let output = scratch(name);
    let out = Command::new(program())
        .current_dir(repo())
        .args([
            "fixtures/core/rgb.png",
            "fixtures/core/mask.png",
            "a red sofa",
        ])
        .arg(&output)
        .args([
            "--model",
            "fixtures/models/pipeline_inpaint",
            "--method",
            "stable",
        ])
        .args(["--steps", "2", "--seed", "5"])
        .args(extra)
        .output()
        .unwrap();
    let bytes = std::fs::read(&output).unwrap_or_default();
    (out.status.success(), text(&out), bytes)
}

const LORA: &str = "fixtures/models/lora/kohya_inpaint.safetensors";

#[test]
fn loras_embeddings_lcm_and_weighting_each_change_the_run() {
    let (ok, log, base) = run("base.png", &[]);
    assert!(ok, "{log}");
    let (ok, log, lora) = run("lora.png", &["--lora", LORA]);
    assert!(ok, "{log}");
    let (ok, log, half) = run("half.png", &["--lora", &format!("{LORA}:0.5")]);
    assert!(ok, "{log}");
    let twice = [
        "--lora",
        &format!("{LORA}:0.25"),
        "--lora",
        &format!("{LORA}:0.25"),
    ];
    let (ok, log, twice) = run("twice.png", &twice);
    assert!(ok, "{log}");
    assert_ne!(base, lora);
    assert_ne!(lora, half);
    assert_ne!(twice, base, "repeated --lora fuse one after the other");
    let embedding = "fixtures/models/textual_inversion/cat_toy.safetensors";
    let (ok, log, _) = run("ti.png", &["--embedding", embedding]);
    assert!(ok, "{log}");
    let (ok, log, lcm) = run("lcm.png", &["--lora", LORA, "--lcm"]);
    assert!(ok, "{log}");
    assert_ne!(lcm, lora);
    let (ok, log, weighted) = run("weighted.png", &["--prompt-weighting"]);
    assert!(ok, "{log}");
    assert_eq!(
        weighted, base,
        "a prompt without brackets reads the same in both syntaxes"
    );
}

#[test]
fn misfits_are_refused_and_nothing_is_written() {
    // The 9-channel pipeline's LoRA on the HD-Painter pipeline, whose layers differ.
    let output = scratch("foreign.png");
    let out = inpaint(
        &output,
        &["--lora", LORA, "--method", "painta", "--steps", "2"],
    )
    .current_dir(repo())
    .output()
    .unwrap();
    let log = text(&out);
    assert!(
        !out.status.success() && log.contains("does not fit"),
        "{log}"
    );
    assert!(!output.exists());
    // The default method (HD-Painter, RASG on) with the preset.
    let output = scratch("lcm_rasg.png");
    let out = inpaint(&output, &["--lcm"]).output().unwrap();
    let log = text(&out);
    assert!(
        !out.status.success() && log.contains("RASG needs DDIM") && !output.exists(),
        "{log}"
    );
    let (ok, log, image) = run("nan.png", &["--lora", &format!("{LORA}:nan")]);
    assert!(
        !ok && log.contains("finite scale") && image.is_empty(),
        "{log}"
    );
    let (ok, log, image) = run("missing.png", &["--lora", "no/such/lora.safetensors"]);
    assert!(
        !ok && log.contains("no/such/lora.safetensors") && image.is_empty(),
        "{log}"
    );
}
