//! The `gpu_check` program on the fixture configs (`--tiny`), as CI runs it: the flex reference
//! row, the whole runs on the fastest pair (flex here), the JSON report; a backend the build
//! lacks is a failed row and a non-zero exit, not a panic; a bad dtype is refused by the parser.

mod cli;

use std::process::Command;

use cli::{example, repo, scratch, text};

fn gpu_check(json: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(example("gpu_check"))
        .arg("--tiny")
        .arg("--root")
        .arg(repo())
        .arg("--json")
        .arg(json)
        .args(extra)
        .output()
        .unwrap()
}

fn report(json: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn the_tiny_check_measures_flex_and_times_the_whole_runs() {
    let json = scratch("gpu-check.json");
    let out = gpu_check(&json, &["--backends", "flex"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| flex | f32 |"), "{stdout}");
    let r = report(&json);
    assert_eq!(r["mode"], "tiny");
    assert_eq!(r["passed"], true);
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows[0]["backend"], "flex");
    assert_eq!(rows[0]["unet_error"], 0.0, "the reference against itself");
    assert!(rows[0]["unet_call_s"].as_f64().unwrap() > 0.0);
    let runs = &r["runs"];
    assert_eq!(runs["backend"], "flex");
    assert!(runs["first_stage_s"].as_f64().unwrap() > 0.0, "{runs}");
    assert!(runs["sr_stage_s"].as_f64().unwrap() > 0.0, "{runs}");
}

/// CUDA is absent from CI's builds (and, where compiled in, from machines without an NVIDIA
/// driver): either way a failed row naming why, and a non-zero exit.
#[test]
fn a_backend_that_cannot_start_is_a_failed_row() {
    let json = scratch("gpu-check-missing.json");
    let out = gpu_check(
        &json,
        &["--backends", "cuda", "--dtypes", "f16", "--no-runs"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let r = report(&json);
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{r}");
    assert_eq!(rows[1]["backend"], "cuda");
    assert_eq!(rows[1]["passed"], false);
    let error = rows[1]["error"].as_str().unwrap();
    assert!(
        error.contains("`cuda` cargo feature") || error.contains("no CUDA device"),
        "{r}"
    );
    assert!(r["runs"].is_null());
    assert!(String::from_utf8_lossy(&out.stdout).contains("| cuda | f16 |"));
}

#[test]
fn an_unknown_dtype_is_refused() {
    let out = gpu_check(&scratch("unused.json"), &["--dtypes", "f64"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("expected f32, f16 or bf16"),
        "{}",
        text(&out)
    );
}
