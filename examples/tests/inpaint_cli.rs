//! The `inpaint` example program end to end on the tiny fixture pipelines: a result file, the
//! memory estimate and the summary line, Ctrl-C (SIGINT) stopping after the current step with
//! nothing written, and usage errors. Cargo builds the examples before it runs the tests.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

mod cli;

use cli::{inpaint, program, repo, scratch, text};

#[test]
fn a_run_writes_its_images_and_a_summary() {
    let output = scratch("run.png");
    let out = inpaint(
        &output,
        &["--steps", "3", "--num-images", "2", "--seed", "7"],
    )
    .output()
    .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    // HD-Painter's official seeds for several samples: seed + 1000 i.
    assert!(
        log.contains("seed 7:") && log.contains("seed 1007:"),
        "{log}"
    );
    assert!(
        log.contains("done: 2 image(s) in") && log.contains("peak memory"),
        "{log}"
    );
    // The memory estimate before the run, at the photo's size.
    assert!(
        log.contains("memory estimate at 44x30: ") && log.contains("a UNet step"),
        "{log}"
    );
    for i in 0..2 {
        let image =
            hd_painter::hd_painter_core::Image::open(scratch(&format!("run-{i}.png"))).unwrap();
        assert_eq!((image.width(), image.height()), (44, 30));
    }
    let consecutive = scratch("consecutive.png");
    let out = inpaint(
        &consecutive,
        &[
            "--steps",
            "2",
            "--num-images",
            "2",
            "--seed",
            "7",
            "--seed-rule",
            "consecutive",
        ],
    )
    .output()
    .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("seed 7:") && log.contains("seed 8:"), "{log}");
}

/// `--crop-to-mask`: the box around the hole inpainted at `--crop-size`, the image's own size
/// back; a size that does not parse is a usage error.
#[test]
fn crop_to_mask_runs_the_box_at_the_crop_size() {
    let output = scratch("crop.png");
    let args = [
        "--steps",
        "2",
        "--seed",
        "1",
        "--crop-to-mask",
        "4",
        "--crop-size",
        "32x32",
    ];
    let out = inpaint(&output, &args).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let image = hd_painter::hd_painter_core::Image::open(&output).unwrap();
    assert_eq!((image.width(), image.height()), (44, 30));
    let out = inpaint(&output, &["--crop-to-mask", "4", "--crop-size", "big"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage exit code");
    assert!(
        text(&out).contains("expected WIDTHxHEIGHT"),
        "{}",
        text(&out)
    );
}

/// `--batch`: a CSV (one row with a broken mask, one whose mask has another size) and a folder
/// of photo / `_mask` pairs; the models load once, the good rows are written, the bad ones
/// reported and skipped with exit code 1, an existing result is kept unless `--overwrite`.
#[test]
fn a_batch_runs_every_row_and_reports_the_failures() {
    let r = repo();
    let dir = scratch("batch-in");
    std::fs::create_dir_all(&dir).unwrap();
    let out_dir = scratch("batch-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for name in ["a", "b"] {
        std::fs::copy(
            r.join("fixtures/core/rgb.png"),
            dir.join(format!("{name}.png")),
        )
        .unwrap();
        std::fs::copy(
            r.join("fixtures/core/mask.png"),
            dir.join(format!("{name}_mask.png")),
        )
        .unwrap();
    }
    std::fs::write(dir.join("broken_mask.png"), b"not a png").unwrap();
    std::fs::copy(r.join("fixtures/core/rgb.jpg"), scratch("c.jpg")).unwrap();
    std::fs::rename(scratch("c.jpg"), dir.join("c.jpg")).unwrap();
    hd_painter::hd_painter_core::Mask::from_luma8(5, 5, vec![255; 25])
        .unwrap()
        .save(dir.join("small_mask.png"))
        .unwrap();
    let csv = dir.join("jobs.csv");
    std::fs::write(
        &csv,
        "image,mask,prompt\na.png,a_mask.png,a red sofa, with cushions\nb.png,broken_mask.png,x\n\
         # a comment\nc.jpg,small_mask.png,y\n",
    )
    .unwrap();
    let batch = |source: &std::path::Path, extra: &[&str]| {
        let out = Command::new(program())
            .arg("--batch")
            .arg(source)
            .arg("--out-dir")
            .arg(&out_dir)
            .arg("--model")
            .arg(r.join("fixtures/models/pipeline_hd_painter"))
            .args(["--steps", "2", "--seed", "1"])
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), text(&out))
    };
    let (code, log) = batch(&csv, &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("batch: 1 of 3 done, 2 failed, 0 skipped"),
        "{log}"
    );
    assert!(
        log.contains("failed:") && log.contains("b.png") && log.contains("c.jpg"),
        "{log}"
    );
    let a = hd_painter::hd_painter_core::Image::open(out_dir.join("a.png")).unwrap();
    assert_eq!((a.width(), a.height()), (44, 30));
    assert!(
        !out_dir.join("b.png").exists(),
        "nothing written for failed rows"
    );

    let (code, log) = batch(&dir, &["--batch-prompt", "a red sofa"]);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("batch: 1 of 2 done, 0 failed, 1 skipped"),
        "{log}"
    );
    assert!(
        log.contains("skipped:") && log.contains("a.png exists"),
        "{log}"
    );
    assert!(out_dir.join("b.png").exists());
    let (code, log) = batch(&dir, &["--batch-prompt", "x", "--overwrite"]);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("batch: 2 of 2 done"), "{log}");
    let (code, log) = batch(&dir, &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("needs --batch-prompt"), "{log}");
}

/// A red-only mask: no hole in the blue channel the HD-Painter methods read by default (as the
/// official code), a hole in the grey level `--mask-channel luma` reads.
#[test]
fn hd_painter_methods_read_the_official_blue_channel() {
    let r = repo();
    let photo = hd_painter::hd_painter_core::Image::open(r.join("fixtures/core/rgb.png")).unwrap();
    let (w, h) = (photo.width(), photo.height());
    let red: Vec<u8> = (0..w * h)
        .flat_map(|i| match (i % w > w / 3, i / w > h / 3) {
            (true, true) => [255, 0, 0],
            _ => [0, 0, 0],
        })
        .collect();
    let mask = scratch("red-mask.png");
    hd_painter::hd_painter_core::Image::from_rgb8(w, h, red)
        .unwrap()
        .save(&mask)
        .unwrap();
    let run = |name: &str, extra: &[&str]| {
        let mut cmd = Command::new(program());
        cmd.arg(r.join("fixtures/core/rgb.png"))
            .arg(&mask)
            .arg("a red sofa")
            .arg(scratch(name))
            .arg("--model")
            .arg(r.join("fixtures/models/pipeline_hd_painter"))
            .args(["--steps", "2", "--seed", "1"])
            .args(extra);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        (
            text(&out),
            hd_painter::hd_painter_core::Image::open(scratch(name)).unwrap(),
        )
    };
    let (log, blue) = run("blue.png", &[]);
    assert!(
        log.contains("marks no hole") && log.contains("Blue"),
        "{log}"
    );
    assert_eq!(blue, photo, "no hole: the input unchanged");
    let (log, luma) = run("luma.png", &["--mask-channel", "luma"]);
    assert!(!log.contains("marks no hole"), "{log}");
    assert_ne!(luma, photo, "the red region inpainted");
}

#[cfg(unix)]
#[test]
fn sigint_stops_after_the_current_step_and_writes_nothing() {
    let output = scratch("cancelled.png");
    let child = inpaint(&output, &["--steps", "1000", "--seed", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(130), "{log}");
    assert!(log.contains("cancelled by the caller after step"), "{log}");
    assert!(!output.exists());
}

#[test]
fn unwritable_outputs_and_outputs_that_are_inputs_are_refused_before_loading() {
    // A model path that does not exist: these errors must come before any loading.
    let r = repo();
    let photo = scratch("photo-kept.png");
    std::fs::copy(r.join("fixtures/core/rgb.png"), &photo).unwrap();
    let before = std::fs::read(&photo).unwrap();
    let run = |output: &PathBuf, extra: &[&str]| {
        Command::new(program())
            .arg(&photo)
            .arg(r.join("fixtures/core/mask.png"))
            .arg("a red sofa")
            .arg(output)
            .args(["--model", "/no/such/model", "--steps", "1"])
            .args(extra)
            .output()
            .unwrap()
    };
    for (output, message) in [
        (scratch("out.bmp"), "out.bmp"),
        (PathBuf::from("/no/such/folder/out.png"), "/no/such/folder"),
        (photo.clone(), "is the input"),
    ] {
        let out = run(&output, &[]);
        assert_eq!(out.status.code(), Some(1), "{output:?}");
        let log = text(&out);
        assert!(
            log.contains(message) && !log.contains("/no/such/model"),
            "{log}"
        );
    }
    // With --overwrite the output may be the input: the run goes on (to the missing model).
    let out = run(&photo, &["--overwrite"]);
    assert!(text(&out).contains("/no/such/model"), "{}", text(&out));
    assert_eq!(std::fs::read(&photo).unwrap(), before, "the photo is kept");
}

#[test]
fn usage_errors_are_reported_without_a_run() {
    let output = scratch("usage.png");
    for (args, message) in [
        (&["--sr"][..], "--sr needs --sr-model"),
        (
            &["--method", "brushnet"][..],
            "--method brushnet and --brushnet DIR go together",
        ),
        (
            &["--num-images", "0"][..],
            "--num-images must be at least 1",
        ),
        (&["--steps", "0"][..], "--steps must be at least 1"),
        (
            &["--guidance", "NaN"][..],
            "--guidance must be a finite number, found NaN",
        ),
        (&["--eta=-1"][..], "--eta must be a finite number >= 0"),
        (
            &["--preview-every", "0"][..],
            "--preview-every must be at least 1",
        ),
        (
            &["--crop-to-mask", "8", "--crop-size", "4x512"][..],
            "--crop-size must be at least 8x8, found 4x512",
        ),
        (
            &["--fill", "telea", "--fill-radius", "0"][..],
            "--fill-radius must be 1 to 100, found 0",
        ),
    ] {
        let out = inpaint(&output, args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out).contains(message), "{args:?}: {}", text(&out));
    }
    // A mask of another size than the image.
    let small = scratch("small-mask.png");
    hd_painter::hd_painter_core::Mask::from_luma8(40, 30, vec![255; 40 * 30])
        .unwrap()
        .save(&small)
        .unwrap();
    let r = repo();
    let out = Command::new(program())
        .arg(r.join("fixtures/core/rgb.png"))
        .arg(&small)
        .args(["x", output.to_str().unwrap(), "--model"])
        .arg(r.join("fixtures/models/pipeline_hd_painter"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("expected 44x30, found 40x30"),
        "{}",
        text(&out)
    );

    // A mask without hole: a warning, and the input written unchanged.
    let empty = scratch("empty-mask.png");
    hd_painter::hd_painter_core::Mask::from_luma8(44, 30, vec![0; 44 * 30])
        .unwrap()
        .save(&empty)
        .unwrap();
    let unchanged = scratch("unchanged.png");
    let out = Command::new(program())
        .arg(r.join("fixtures/core/rgb.png"))
        .arg(&empty)
        .args(["x", unchanged.to_str().unwrap(), "--steps", "2", "--model"])
        .arg(r.join("fixtures/models/pipeline_hd_painter"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("marks no hole"), "{}", text(&out));
    assert_eq!(
        hd_painter::hd_painter_core::Image::open(&unchanged).unwrap(),
        hd_painter::hd_painter_core::Image::open(r.join("fixtures/core/rgb.png")).unwrap()
    );
}

/// One short run with `--model` in `fixtures/models` and `extra`; the image's bytes.
fn run_model(model: &str, extra: &[&str], name: &str) -> Vec<u8> {
    run_logged(model, extra, name).0
}

/// [`run_model`] with the program's output.
fn run_logged(model: &str, extra: &[&str], name: &str) -> (Vec<u8>, String) {
    let r = repo();
    let output = scratch(name);
    let out = Command::new(program())
        .arg(r.join("fixtures/core/rgb.png"))
        .arg(r.join("fixtures/core/mask.png"))
        .arg("a red sofa")
        .arg(&output)
        .arg("--model")
        .arg(r.join("fixtures/models").join(model))
        .args(["--steps", "2", "--seed", "3"])
        .current_dir(r.join("fixtures/models"))
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{model} {extra:?}: {}", text(&out));
    (std::fs::read(&output).unwrap(), text(&out))
}

#[test]
fn a_2022_layout_folder_gives_its_modern_twins_images() {
    // One scheduler for both: the folders name their own (PNDM, DDIM).
    let stable = ["--method", "stable", "--scheduler", "ddim"];
    let published = run_model("published/sd2_inpainting_2022", &stable, "published.png");
    assert_eq!(
        published,
        run_model("pipeline_hd_painter", &stable, "modern.png")
    );
}

#[test]
fn every_published_family_runs_through_the_example() {
    // Each with its folder's own scheduler (SD 1.5's PNDM, DreamShaper's DEIS) ...
    let own = ["--method", "stable"];
    let sd15_pndm = run_model("published/sd15_inpainting_2022", &own, "sd15-pndm.png");
    let dreamshaper_deis = run_model("published/dreamshaper8_inpainting", &own, "ds-deis.png");
    assert_ne!(sd15_pndm, dreamshaper_deis, "two schedulers");
    // ... and two families over the same f32 weights paint the same image with one scheduler.
    let stable = ["--method", "stable", "--scheduler", "ddim"];
    let sd15 = run_model("published/sd15_inpainting_2022", &stable, "sd15.png");
    let dreamshaper = run_model("published/dreamshaper8_inpainting", &stable, "ds.png");
    assert_eq!(sd15, dreamshaper);
    run_model(
        "published/dreamshaper8_inpainting",
        &["--method", "stable", "--variant", "fp16"],
        "ds16.png",
    );
    let single = [
        "--method",
        "stable",
        "--config",
        "published/sd15_inpainting_2022",
    ];
    run_model(
        "published/single/sd15_inpainting_2022.safetensors",
        &single,
        "single.png",
    );
    // The x4 upscaler and BrushNet's release, each against its modern twin.
    let sr = |x4: &'static str| {
        [
            "--sr",
            "--sr-model",
            x4,
            "--sr-long-side",
            "64",
            "--sr-steps",
            "1",
        ]
    };
    assert_eq!(
        run_model(
            "pipeline_hd_painter",
            &sr("published/x4_upscaler_2022"),
            "x4-published.png"
        ),
        run_model("pipeline_hd_painter", &sr("pipeline_x4"), "x4-modern.png")
    );
    let brushnet = |dir: &'static str| ["--method", "brushnet", "--brushnet", dir];
    assert_eq!(
        run_model(
            "pipeline_sd",
            &brushnet("published/brushnet_release/segmentation_mask_brushnet_ckpt"),
            "brushnet-published.png"
        ),
        run_model("pipeline_sd", &brushnet("brushnet"), "brushnet-modern.png")
    );
}

#[test]
fn an_sdxl_folder_runs_every_method_that_fits() {
    // The tiny SDXL inpainting folder: Stable Inpainting with its Euler scheduler, and HD-Painter
    // (PAIntA + RASG, DDIM); the micro-conditioning flags reach the run.
    let sdxl = "pipeline_sdxl_inpaint";
    let stable = run_model(sdxl, &["--method", "stable"], "sdxl-stable.png");
    let micro = [
        "--method",
        "stable",
        "--original-size",
        "96x64",
        "--crops-coords-top-left",
        "8,4",
    ];
    assert_ne!(stable, run_model(sdxl, &micro, "sdxl-micro.png"));
    run_model(sdxl, &["--method", "hd-painter"], "sdxl-hd.png");
    // HD-Painter's SR stage after the SDXL first stage (the x4 upscaler is SD's either way).
    let sr = [
        "--method",
        "hd-painter",
        "--sr",
        "--sr-model",
        "pipeline_x4",
        "--sr-long-side",
        "128",
        "--sr-steps",
        "1",
    ];
    let (_, log) = run_logged(sdxl, &sr, "sdxl-hd-sr.png");
    // With the SR stage, its estimate at the output's size, beside the first stage's weights.
    assert!(
        log.contains("memory estimate of the SR stage for 44x30: ")
            && log.contains("GiB of first-stage weights"),
        "{log}"
    );
    // `--dtype auto` decides for each model: SDXL in bf16 on the CPU, the x4 upscaler (SD 2) in
    // f32.
    assert!(
        log.contains("weights: bf16 (first stage), f32 (SR stage)"),
        "{log}"
    );
    // The same model as Stability's single file (fp16 weights) with the folder's configs.
    let single = ["--method", "stable", "--config", sdxl];
    let file = "single_file/sdxl_inpaint.safetensors";
    run_model(file, &single, "sdxl-single.png");
    // The 4-channel SDXL base: Blended in both variants, RePaint, HD-Painter on Blended, and
    // diffusers' strength and denoising_end.
    let base = "pipeline_sdxl_base";
    let blended = ["--method", "blended"];
    let paper = run_model(base, &blended, "sdxl-base-paper.png");
    let diffusers = [&blended[..], &["--blended", "diffusers"]].concat();
    let diffusers_image = run_model(base, &diffusers, "sdxl-base-diffusers.png");
    assert_ne!(paper, diffusers_image);
    // Of the 2 steps (timesteps 501 and 1), strength 0.9999 keeps the second, denoising_end
    // 0.5 the first.
    for (flags, name) in [
        (["--strength", "0.9999"], "sdxl-base-strength.png"),
        (["--denoising-end", "0.5"], "sdxl-base-end.png"),
    ] {
        let run = [&diffusers[..], &flags].concat();
        assert_ne!(diffusers_image, run_model(base, &run, name));
    }
    run_model(base, &["--method", "repaint"], "sdxl-base-repaint.png");
    run_model(base, &["--method", "hd-painter"], "sdxl-base-hd.png");
    let r = repo();
    let out = Command::new(program())
        .arg(r.join("fixtures/core/rgb.png"))
        .arg(r.join("fixtures/core/mask.png"))
        .arg("x")
        .arg(scratch("sdxl-base-bad-end.png"))
        .arg("--model")
        .arg(r.join("fixtures/models").join(base))
        .args(["--method", "blended", "--denoising-end", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("denoising_end"), "{}", text(&out));
    let out = Command::new(inspect_program())
        .arg(repo().join("fixtures/models").join(sdxl))
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for expected in [
        "text_encoder_2",
        "SDXL: text widths 32 + 32",
        "pooled width 24 and 6 time ids",
    ] {
        assert!(log.contains(expected), "{expected:?} missing:\n{log}");
    }
    // Flags that do not parse are usage errors.
    let out = Command::new(program())
        .arg(r.join("fixtures/core/rgb.png"))
        .arg(r.join("fixtures/core/mask.png"))
        .args(["x", "/dev/null", "--crops-coords-top-left", "8"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("TOP,LEFT"), "{}", text(&out));
}

/// `inspect` next to `inpaint`.
fn inspect_program() -> PathBuf {
    program().with_file_name(format!("inspect{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn inspect_prints_a_folders_layouts_and_fails_like_loading() {
    let r = repo();
    let out = Command::new(inspect_program())
        .arg(r.join("fixtures/models/published/x4_upscaler_2022"))
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for expected in [
        "StableDiffusionUpscalePipeline",
        "pre-0.17 VAE attention names",
        "low_res_scheduler: DDPMScheduler",
        "ignored: max_noise_level = 350",
        "UNet input channels: 7",
    ] {
        assert!(log.contains(expected), "{expected:?} missing:\n{log}");
    }
    let out = Command::new(inspect_program())
        .arg(r.join("fixtures/models/unet_sd2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("model_index.json"), "{}", text(&out));
}
