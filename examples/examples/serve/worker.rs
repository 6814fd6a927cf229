//! The worker: the one thread that owns the models and runs the queue's runs in turn.

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use hd_painter::{
    BrushNetSettings, CropSettings, DefaultAttention, Hooks, InpaintRequest, MaskEdit, Painter,
    SeedRule, SrSettings, Stage, Stages, StepView,
};

use hd_painter_examples::{MethodName, random_seed};

use crate::form::Submission;
use crate::queue::{Event, Outcome, Queue, Run};
use crate::store::Store;

/// What the server's command line sets for every run.
#[derive(Clone, Debug)]
pub(crate) struct Defaults {
    /// The preview interval of runs that name none (0: none).
    pub(crate) preview_every: usize,
    /// The SR stage's settings (the seed is each image's).
    pub(crate) sr: SrSettings,
}

/// Runs the queue's runs until the server stops.
pub(crate) fn work(painter: &Painter, queue: &Queue, store: &Store, defaults: &Defaults) {
    while let Some((run, submission)) = queue.next() {
        let job = Job {
            painter,
            run: &run,
            submission: &submission,
            store,
            preview_every: submission
                .settings
                .preview_every
                .unwrap_or(defaults.preview_every),
            sr: &defaults.sr,
        };
        // The library reports bad input as errors; a panic would be a bug, which must still
        // end this run only, not the server's worker.
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| job.run())).unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                run.send(Event::Failed {
                    error: format!("internal error (a bug; please report it): {what}"),
                });
                Outcome::Failed
            });
        queue.finish(&run, outcome);
    }
}

/// The methods the loaded models fit, the fitting one first.
pub(crate) fn methods(painter: &Painter) -> Vec<MethodName> {
    let hd = [MethodName::HdPainter, MethodName::Painta, MethodName::Rasg];
    let mut methods = hd.to_vec();
    match (&painter.brushnet, painter.models.unet.in_channels()) {
        (Some(_), _) => {
            methods.insert(0, MethodName::Brushnet);
            methods.extend([MethodName::Blended, MethodName::Repaint]);
        }
        (None, 4) => methods.extend([MethodName::Blended, MethodName::Repaint]),
        (None, _) => methods.push(MethodName::Stable),
    }
    methods
}

/// One run on the models.
struct Job<'a> {
    painter: &'a Painter,
    run: &'a Run,
    submission: &'a Submission,
    store: &'a Store,
    preview_every: usize,
    sr: &'a SrSettings,
}

impl Job<'_> {
    fn run(&self) -> Outcome {
        let started = Instant::now();
        let settings = &self.submission.settings;
        let method = settings.method.unwrap_or(methods(self.painter)[0]);
        let rule = match method.hd_painter() {
            true => SeedRule::HdPainter,
            false => SeedRule::Consecutive,
        };
        let seeds = rule.seeds(
            settings.seed.unwrap_or_else(random_seed),
            settings.num_images,
        );
        self.run.send(Event::Started {
            seeds: seeds.clone(),
        });
        let request = self.request(method).seeds(seeds.clone());
        let mut progress = Progress::new(self, &seeds);
        let mut on_step = |view: &StepView<'_>| progress.step(view);
        let mut attention = DefaultAttention::default();
        let images = match request.run_with(Hooks::new(&mut attention, &mut on_step)) {
            Ok(images) => images,
            Err(e) if e.is_cancelled() => {
                self.run.send(Event::Cancelled);
                return Outcome::Cancelled;
            }
            Err(e) => return self.fail(e.to_string()),
        };
        let pngs = match images
            .iter()
            .map(|i| i.to_png())
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(pngs) => pngs,
            Err(e) => return self.fail(e.to_string()),
        };
        let id = self.run.id;
        let urls = (0..pngs.len())
            .map(|k| format!("/api/runs/{id}/images/{k}.png"))
            .collect();
        self.store.set_images(id, pngs);
        self.run.send(Event::Done {
            images: urls,
            seeds,
            seconds: started.elapsed().as_secs_f64(),
        });
        Outcome::Done
    }

    fn fail(&self, error: String) -> Outcome {
        self.run.send(Event::Failed { error });
        Outcome::Failed
    }

    /// The request with the method and the settings' overrides.
    fn request(&self, method: MethodName) -> InpaintRequest<'_> {
        let (painter, s) = (self.painter, &self.submission.settings);
        let options = method.options(painter, BrushNetSettings::default());
        let (image, mask) = (&self.submission.image, &self.submission.mask);
        let mut request = painter
            .request(image, mask, &s.prompt)
            .options(options)
            .soft_mask(s.soft_mask)
            .mask_edit(MaskEdit {
                grow: s.grow,
                blur: s.mask_blur,
            })
            .stages(match s.sr {
                true => Stages::Both,
                false => Stages::First,
            });
        if s.sr {
            request = request.sr(self.sr.clone());
        }
        if let Some(steps) = s.steps {
            request = request.steps(steps);
        }
        if let Some(g) = s.guidance {
            request = request.guidance_scale(g);
        }
        if let Some(kind) = self.submission.scheduler {
            request = request.scheduler(kind);
        }
        // Only when asked: unticked leaves the folder's own setting.
        if s.karras {
            request = request.karras(true);
        }
        if let Some(negative) = &s.negative_prompt {
            request = request.negative_prompt(negative);
        }
        if let Some(padding) = s.crop_to_mask {
            let default = CropSettings::default();
            request = request.crop_to_mask(CropSettings {
                padding,
                size: s.crop_size.unwrap_or(default.size),
                ..default
            });
        }
        request
    }
}

/// The step callback's state: the steps of every stage counted as one run, the previews, the
/// cancel flag.
struct Progress<'a> {
    job: &'a Job<'a>,
    /// Steps done before the current stage's run started.
    before: usize,
    /// The whole run's steps, known from the first stage's first step.
    total: usize,
    /// The SR stage's steps for every image (0 without SR).
    sr_steps: usize,
}

impl<'a> Progress<'a> {
    fn new(job: &'a Job<'a>, seeds: &[u64]) -> Self {
        let sr_steps = match job.submission.settings.sr {
            true => job.sr.steps * seeds.len(),
            false => 0,
        };
        Self {
            job,
            before: 0,
            total: 0,
            sr_steps,
        }
    }

    fn step(&mut self, view: &StepView<'_>) -> ControlFlow<()> {
        if view.step == 1 {
            if view.stage == Stage::Inpaint && self.total == 0 {
                self.total = view.total + self.sr_steps;
            }
            // Each stage's run (and each cropped hole's) counts from 1 again.
            if self.before + view.total > self.total {
                self.total = self.before + view.total;
            }
        }
        let run = self.job.run;
        run.send(Event::Progress {
            stage: match view.stage {
                Stage::Inpaint => "inpaint",
                Stage::SuperResolution => "super-resolution",
            },
            step: view.step,
            steps: view.total,
            done: self.before + view.step,
            total: self.total,
        });
        if view.step == view.total {
            self.before += view.total;
        }
        let k = self.job.preview_every;
        if k > 0 && view.step.is_multiple_of(k) && view.step < view.total && !run.cancelled() {
            self.preview(view);
        }
        match run.cancelled() {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    }

    /// Decodes and stores a preview, and tells the client; a preview that fails is reported as
    /// a warning event's error and the run goes on.
    fn preview(&self, view: &StepView<'_>) {
        let (run, id) = (self.job.run, self.job.run.id);
        match self.job.painter.preview(view).and_then(|p| Ok(p.to_png()?)) {
            Ok(png) => {
                self.job.store.set_preview(id, png);
                let url = format!(
                    "/api/runs/{id}/preview.png?step={}",
                    self.before + view.step
                );
                run.send(Event::Preview {
                    step: view.step,
                    url,
                });
            }
            Err(e) => run.send(Event::Warning {
                message: format!("no preview at step {}: {e}", view.step),
            }),
        }
    }
}
