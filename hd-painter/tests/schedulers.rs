//! The scheduler a request steps with: the folder's for the plain methods (as diffusers'
//! pipelines), DDIM on its grid for HD-Painter, another class named on the request over the
//! folder's schedule settings; RASG refused with another scheduler, PAIntA taking any; a
//! folder whose class hd-painter does not run refused unless the request names another; and
//! `strength < 1` starting at diffusers' point of each scheduler's grid.

mod common;

use std::ops::ControlFlow;
use std::path::Path;

use common::{device, fixtures, inputs, painter};
use hd_painter::{Error, Painter};
use hd_painter_models::{DefaultAttention, StableDiffusionModels};
use hd_painter_sampling::{
    HdPainter, Hooks, InpaintOptions, Method, SchedulerKind, SchedulerSpec, SolverType, Spacing,
};

fn dpm(karras: bool) -> SchedulerSpec {
    SchedulerSpec {
        karras,
        ..SchedulerSpec::new(SchedulerKind::DpmSolver {
            order: 2,
            sde: false,
            solver: SolverType::Midpoint,
        })
    }
}

/// The timesteps a request's run visits.
fn visited(request: &hd_painter::InpaintRequest<'_>) -> Result<Vec<f64>, Error> {
    let mut seen = Vec::new();
    let mut attention = DefaultAttention::default();
    request.run_with(Hooks::new(&mut attention, &mut |view| {
        seen.push(view.timestep);
        ControlFlow::Continue(())
    }))?;
    Ok(seen)
}

#[test]
fn plain_methods_step_with_the_folders_scheduler_and_hd_painter_with_ddim() {
    let p = painter("pipeline_hd_painter");
    let (image, mask) = inputs();
    let hd = p.request(&image, &mask, "x").steps(3);
    assert_eq!(hd.planned_scheduler().unwrap(), SchedulerSpec::hd_painter());
    let plain = p.request(&image, &mask, "x").hd_painter(None).steps(3);
    let folder = SchedulerSpec::from_config(p.scheduler_config().unwrap()).unwrap();
    assert_eq!(plain.planned_scheduler().unwrap(), folder);
    assert_eq!(
        folder,
        SchedulerSpec::default(),
        "the fixture folder's is SD's DDIM"
    );
    // Another class over the folder's settings (leading, offset 1), Karras on request.
    let kind = SchedulerKind::named("dpm++2m").unwrap();
    let named = plain.clone().scheduler(kind).karras(true);
    assert_eq!(named.planned_scheduler().unwrap(), dpm(true));
    let seen = visited(&named).unwrap();
    let grid = dpm(true)
        .build(&p.schedule, 3)
        .unwrap()
        .timesteps()
        .to_vec();
    assert_eq!(seen, grid);
    // Exactly a spec, whatever the folder says.
    let exact = plain.clone().scheduler_spec(SchedulerSpec {
        spacing: Spacing::Trailing,
        ..SchedulerSpec::new(SchedulerKind::Euler)
    });
    assert_eq!(visited(&exact).unwrap(), [999.0, 666.0, 332.0]);
}

#[test]
fn rasg_needs_ddim_and_painta_takes_any_scheduler() {
    let p = painter("pipeline_hd_painter");
    let (image, mask) = inputs();
    let euler_a = SchedulerKind::named("euler-a").unwrap();
    let rasg = p.request(&image, &mask, "x").steps(2).scheduler(euler_a);
    let err = rasg.run().unwrap_err();
    assert!(err.to_string().contains("RASG scheduler"), "{err}");
    let painta = rasg.hd_painter(Some(HdPainter::painta_only()));
    let out = painta.run().unwrap();
    assert_eq!((out[0].width(), out[0].height()), (24, 16));
    // eta is DDIM's (or RASG's): refused for another scheduler rather than dropped.
    let eta = painta.eta(0.5);
    assert!(
        eta.settings()
            .unwrap_err()
            .to_string()
            .contains("eta is DDIM's")
    );
}

/// A copy of the fixture folder whose scheduler is `class` (`model_index.json` and the file).
fn folder_with_scheduler(class: &str) -> std::path::PathBuf {
    let from = fixtures().join("models/pipeline_hd_painter");
    let to = std::env::temp_dir().join(format!("hd-painter-{class}-{}", std::process::id()));
    copy_dir(&from, &to);
    let set = |path: &Path, old: &str| {
        let text = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, text.replace(old, class)).unwrap();
    };
    set(&to.join("model_index.json"), "DDIMScheduler");
    set(&to.join("scheduler/scheduler_config.json"), "DDIMScheduler");
    to
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        match entry.path().is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => drop(std::fs::copy(entry.path(), target).unwrap()),
        }
    }
}

#[test]
fn a_folder_scheduler_hd_painter_does_not_run_is_refused_unless_another_is_named() {
    let dir = folder_with_scheduler("LMSDiscreteScheduler");
    let models = StableDiffusionModels::load(&dir, None, &device()).unwrap();
    let p = Painter::new(models);
    let (image, mask) = inputs();
    let plain = p.request(&image, &mask, "x").hd_painter(None).steps(2);
    let err = plain.run().unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("_class_name") && message.contains("LMSDiscreteScheduler"),
        "{message}"
    );
    assert!(
        message.contains("scheduler_config.json"),
        "names the file: {message}"
    );
    // HD-Painter's own DDIM does not read it; naming a class does.
    assert!(p.request(&image, &mask, "x").steps(2).run().is_ok());
    let unipc = plain.scheduler(SchedulerKind::named("unipc").unwrap());
    assert!(unipc.run().is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn strength_starts_at_diffusers_point_of_each_grid() {
    let (image, mask) = inputs();
    // The published SD 1.5 folder's PNDM (skip_prk_steps); the others over SD 2's DDIM config.
    let sd15 = "published/sd15_inpainting_2022";
    for (folder, name) in [
        ("pipeline_hd_painter", "ddim"),
        ("pipeline_hd_painter", "euler"),
        ("pipeline_hd_painter", "dpm++2m"),
        ("pipeline_hd_painter", "unipc"),
        ("pipeline_hd_painter", "lcm"),
        (sd15, "pndm"),
    ] {
        let p = painter(folder);
        let kind = SchedulerKind::named(name).unwrap();
        let options = InpaintOptions {
            method: Method::StableInpainting,
            strength: 0.5,
            ..InpaintOptions::default()
        };
        let request = p
            .request(&image, &mask, "x")
            .options(options)
            .steps(8)
            .scheduler(kind);
        let spec = request.planned_scheduler().unwrap();
        let grid = spec.build(&p.schedule, 8).unwrap().timesteps().to_vec();
        // get_timesteps: the last int(8 * 0.5) = 4 steps of the grid (PNDM's has one more call).
        assert_eq!(visited(&request).unwrap(), grid[4..], "{name}");
    }
}
