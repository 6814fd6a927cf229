//! The `inpaint` program's `--scheduler` and `--karras`: any scheduler for the plain methods and
//! PAIntA, RASG refused with another than DDIM, unknown names and options that do not fit the
//! scheduler refused before any step runs, nothing written.

mod cli;

use cli::{inpaint, scratch, text};

fn run(name: &str, extra: &[&str]) -> (bool, String, Vec<u8>) {
    let output = scratch(name);
    let out = inpaint(&output, extra).output().unwrap();
    let bytes = std::fs::read(&output).unwrap_or_default();
    (out.status.success(), text(&out), bytes)
}

#[test]
fn every_scheduler_runs_the_plain_methods_and_painta() {
    let base = ["--method", "stable", "--steps", "3", "--seed", "3"];
    let (ok, log, ddim) = run("ddim.png", &base);
    assert!(ok, "{log}");
    let mut outputs = vec![ddim];
    for (i, scheduler) in [
        "dpm++2m",
        "euler-a",
        "unipc",
        "lcm",
        "deis",
        "DPMSolverMultistepScheduler",
    ]
    .into_iter()
    .enumerate()
    {
        let mut args = base.to_vec();
        args.extend(["--scheduler", scheduler]);
        let (ok, log, image) = run(&format!("s{i}.png"), &args);
        assert!(ok, "{scheduler}: {log}");
        outputs.push(image);
    }
    // Each scheduler makes its own image (the class-name spelling is the same scheduler).
    assert_eq!(outputs[1], outputs[6]);
    for i in 0..6 {
        for j in i + 1..6 {
            assert_ne!(outputs[i], outputs[j], "{i} and {j}");
        }
    }
    let mut karras = base.to_vec();
    karras.extend(["--scheduler", "dpm++2m", "--karras"]);
    let (ok, log, image) = run("karras.png", &karras);
    assert!(ok, "{log}");
    assert_ne!(image, outputs[1], "Karras sigmas change the grid");
    let painta = ["--method", "painta", "--steps", "2", "--scheduler", "euler"];
    let (ok, log, _) = run("painta.png", &painta);
    assert!(ok, "{log}");
}

#[test]
fn rasg_unknown_names_and_misfit_options_are_refused() {
    let (ok, log, image) = run("rasg.png", &["--steps", "2", "--scheduler", "unipc"]);
    assert!(
        !ok && log.contains("RASG scheduler") && image.is_empty(),
        "{log}"
    );
    let (ok, log, _) = run("nope.png", &["--steps", "2", "--scheduler", "dpm++3m"]);
    assert!(!ok && log.contains("dpm++2m"), "lists the names: {log}");
    let misfit = ["--method", "stable", "--steps", "2", "--karras"];
    let (ok, log, _) = run("ddim-karras.png", &misfit);
    assert!(!ok && log.contains("Karras sigmas"), "{log}");
    let eta = [
        "--method",
        "stable",
        "--steps",
        "2",
        "--scheduler",
        "euler",
        "--eta",
        "0.3",
    ];
    let (ok, log, _) = run("euler-eta.png", &eta);
    assert!(!ok && log.contains("eta is DDIM's"), "{log}");
}
