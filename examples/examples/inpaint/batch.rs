//! The jobs of a run: the photo, mask, prompt and output of the command line, or a batch: a
//! CSV of `image,mask,prompt` rows (paths relative to the CSV's folder; the prompt is the rest
//! of the row, commas included) or a folder of `NAME.EXT` photos with `NAME_mask.EXT` masks and
//! the `--batch-prompt`. Batch results go to `--out-dir` as `NAME.png`.

use std::path::{Path, PathBuf};

use crate::{Args, RunError};

/// One photo, its mask, the prompt and where the result goes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Job {
    pub image: PathBuf,
    pub mask: PathBuf,
    pub prompt: String,
    pub output: PathBuf,
}

const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// The run's jobs, in order.
pub(crate) fn jobs(args: &Args) -> Result<Vec<Job>, RunError> {
    let Some(batch) = &args.batch else {
        let missing =
            || RunError::Usage("IMAGE MASK PROMPT OUTPUT are needed without --batch".into());
        return Ok(vec![Job {
            image: args.image.clone().ok_or_else(missing)?,
            mask: args.mask.clone().ok_or_else(missing)?,
            prompt: args.prompt.clone().ok_or_else(missing)?,
            output: args.output.clone().ok_or_else(missing)?,
        }]);
    };
    let out_dir = args
        .out_dir
        .as_ref()
        .ok_or_else(|| RunError::Usage("--batch needs --out-dir DIR".into()))?;
    let output = |image: &Path| {
        let stem = image.file_stem().unwrap_or_default().to_string_lossy();
        out_dir.join(format!("{stem}.png"))
    };
    let jobs = match batch.is_dir() {
        true => folder_jobs(batch, args.batch_prompt.as_deref(), &output)?,
        false => csv_jobs(batch, args.batch_prompt.as_deref(), &output)?,
    };
    if jobs.is_empty() {
        return Err(RunError::Usage(format!(
            "{} holds no jobs",
            batch.display()
        )));
    }
    let mut outputs: Vec<&PathBuf> = jobs.iter().map(|j| &j.output).collect();
    outputs.sort();
    if let Some(w) = outputs.windows(2).find(|w| w[0] == w[1]) {
        return Err(RunError::Usage(format!(
            "two jobs would write {}: give the photos different names",
            w[0].display()
        )));
    }
    Ok(jobs)
}

fn io_error(path: &Path, e: std::io::Error) -> RunError {
    RunError::from(hd_painter::hd_painter_core::CoreError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// `NAME.EXT` photos with a `NAME_mask.*` beside them, sorted by name.
fn folder_jobs(
    dir: &Path,
    prompt: Option<&str>,
    output: &dyn Fn(&Path) -> PathBuf,
) -> Result<Vec<Job>, RunError> {
    let prompt = prompt
        .ok_or_else(|| RunError::Usage("a --batch folder needs --batch-prompt TEXT".into()))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p
                .extension()
                .unwrap_or_default()
                .to_string_lossy()
                .to_lowercase();
            p.is_file() && IMAGE_EXTENSIONS.contains(&ext.as_str())
        })
        .collect();
    files.sort();
    let is_mask = |p: &Path| {
        p.file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .ends_with("_mask")
    };
    let mut jobs = Vec::new();
    for image in files.iter().filter(|p| !is_mask(p)) {
        let stem = image.file_stem().unwrap_or_default().to_string_lossy();
        let mask = files.iter().find(|p| {
            p.file_stem().unwrap_or_default().to_string_lossy() == format!("{stem}_mask")
        });
        match mask {
            Some(mask) => jobs.push(Job {
                image: image.clone(),
                mask: mask.clone(),
                prompt: prompt.to_string(),
                output: output(image),
            }),
            None => eprintln!(
                "skipped: {} has no {stem}_mask.* beside it",
                image.display()
            ),
        }
    }
    Ok(jobs)
}

/// `image,mask,prompt` rows; a first row starting with `image,` is a header, blank lines and
/// lines starting with `#` are skipped; a row without prompt takes `--batch-prompt`.
fn csv_jobs(
    csv: &Path,
    default_prompt: Option<&str>,
    output: &dyn Fn(&Path) -> PathBuf,
) -> Result<Vec<Job>, RunError> {
    let text = std::fs::read_to_string(csv).map_err(|e| io_error(csv, e))?;
    let base = csv.parent().unwrap_or(Path::new("."));
    let mut jobs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("image,")) {
            continue;
        }
        let mut fields = line.splitn(3, ',').map(|f| f.trim().trim_matches('"'));
        let (image, mask) = match (fields.next(), fields.next()) {
            (Some(i), Some(m)) if !i.is_empty() && !m.is_empty() => (base.join(i), base.join(m)),
            _ => {
                return Err(RunError::Usage(format!(
                    "{} line {}: expected image,mask,prompt, found {line:?}",
                    csv.display(),
                    n + 1
                )));
            }
        };
        let prompt = match (fields.next().filter(|p| !p.is_empty()), default_prompt) {
            (Some(p), _) | (None, Some(p)) => p.to_string(),
            (None, None) => {
                return Err(RunError::Usage(format!(
                    "{} line {}: no prompt, and no --batch-prompt",
                    csv.display(),
                    n + 1
                )));
            }
        };
        let output = output(&image);
        jobs.push(Job {
            image,
            mask,
            prompt,
            output,
        });
    }
    Ok(jobs)
}
