//! `inpaint --method repaint` on the pixel-space fixture folders (a DDPM folder in the flat 2022
//! layout, a converted guided-diffusion folder): images written for every seed at the input's
//! size, the mode and side reported, and what does not apply to such a model refused before any
//! run, nothing written.

mod cli;

use std::process::Command;

use cli::{program, repo, scratch, text};

fn run(model: &str, name: &str, extra: &[&str]) -> (bool, String, std::path::PathBuf) {
    let output = scratch(name);
    let out = Command::new(program())
        .current_dir(repo())
        .args(["fixtures/core/rgb.png", "fixtures/core/mask.png", ""])
        .arg(&output)
        .args(["--model", model, "--method", "repaint"])
        .args([
            "--steps",
            "10",
            "--jump-length",
            "3",
            "--jump-n-sample",
            "2",
        ])
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), text(&out), output)
}

#[test]
fn both_folder_kinds_run_and_report_their_mode() {
    let (ok, log, out) = run(
        "fixtures/models/unet2d_ddpm",
        "ddpm.png",
        &["--seed", "4", "--num-images", "2", "--eta", "0.3"],
    );
    assert!(ok, "{log}");
    assert!(
        log.contains("RePaint Diffusers { eta: 0.3 } at 8x8"),
        "{log}"
    );
    assert!(log.contains("seed 5:"), "{log}");
    let input = hd_painter::Image::open(repo().join("fixtures/core/rgb.png")).unwrap();
    for i in 0..2 {
        let path = out.with_file_name(format!("ddpm-{i}.png"));
        let image = hd_painter::Image::open(&path).unwrap();
        assert_eq!(
            (image.width(), image.height()),
            (input.width(), input.height())
        );
        assert_ne!(image, input);
    }
    let guided = "fixtures/models/guided_repaint";
    let (ok, log, out) = run(
        guided,
        "guided.png",
        &["--seed", "4", "--class-label", "12"],
    );
    assert!(ok, "{log}");
    assert!(log.contains("RePaint Official at 16x16"), "{log}");
    assert!(out.exists());
    // The diffusers mode on the learned-variance model, asked for.
    let extra = ["--class-label", "12", "--repaint-mode", "diffusers"];
    let (ok, log, _) = run(guided, "guided-diffusers.png", &extra);
    assert!(ok && log.contains("RePaint Diffusers"), "{log}");
}

#[test]
fn what_does_not_apply_is_refused_and_nothing_is_written() {
    for (model, extra, expected) in [
        (
            "fixtures/models/unet2d_ddpm",
            &["--guidance", "3"][..],
            "--guidance has no effect",
        ),
        (
            "fixtures/models/unet2d_ddpm",
            &["--scheduler", "ddim"][..],
            "--scheduler has no effect",
        ),
        (
            "fixtures/models/unet2d_ddpm",
            &["--repaint-mode", "official"][..],
            "learned variance",
        ),
        (
            "fixtures/models/unet2d_ddpm",
            &["--class-label", "1"][..],
            "not class-conditional",
        ),
        (
            "fixtures/models/guided_repaint",
            &[][..],
            "class-conditional",
        ),
    ] {
        let (ok, log, out) = run(model, "refused.png", extra);
        assert!(!ok && log.contains(expected), "{extra:?}: {log}");
        assert!(!out.exists(), "{extra:?}");
    }
}
