//! The `inpaint` program's test helpers: where it is, its inputs and scratch outputs.

#![allow(dead_code)] // each test binary uses part of this module

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/<profile>/examples/inpaint`, next to this test's `deps/` folder.
pub fn program() -> PathBuf {
    example("inpaint")
}

/// `target/<profile>/examples/<name>`.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hd-painter-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

pub fn inpaint(output: &PathBuf, extra: &[&str]) -> Command {
    let r = repo();
    let mut cmd = Command::new(program());
    cmd.arg(r.join("fixtures/core/rgb.png"))
        .arg(r.join("fixtures/core/mask.png"))
        .arg("a red sofa")
        .arg(output)
        .arg("--model")
        .arg(r.join("fixtures/models/pipeline_hd_painter"))
        .args(extra);
    cmd
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
