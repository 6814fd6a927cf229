//! The runs' previews and images, kept in memory (nothing is written to disk) for the last
//! few runs, so that the page can show and download them.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::queue::RunId;

/// How many runs' pictures are kept; older ones are forgotten.
pub(crate) const KEPT_RUNS: usize = 8;

/// One run's PNG files.
#[derive(Default)]
struct Pictures {
    preview: Option<Vec<u8>>,
    images: Vec<Vec<u8>>,
}

/// The last [`KEPT_RUNS`] runs' pictures, oldest first.
#[derive(Default)]
pub(crate) struct Store {
    runs: Mutex<VecDeque<(RunId, Pictures)>>,
}

impl Store {
    fn with<T>(&self, id: RunId, f: impl FnOnce(&mut Pictures) -> T) -> T {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, pictures)) = runs.iter_mut().find(|(r, _)| *r == id) {
            return f(pictures);
        }
        if runs.len() == KEPT_RUNS {
            runs.pop_front();
        }
        runs.push_back((id, Pictures::default()));
        f(&mut runs.back_mut().expect("just pushed").1)
    }

    fn read<T>(&self, id: RunId, f: impl FnOnce(&Pictures) -> Option<T>) -> Option<T> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.iter().find(|(r, _)| *r == id).and_then(|(_, p)| f(p))
    }

    /// Replaces a run's preview.
    pub(crate) fn set_preview(&self, id: RunId, png: Vec<u8>) {
        self.with(id, |p| p.preview = Some(png));
    }

    /// Stores a run's images.
    pub(crate) fn set_images(&self, id: RunId, pngs: Vec<Vec<u8>>) {
        self.with(id, |p| p.images = pngs);
    }

    /// A run's latest preview.
    pub(crate) fn preview(&self, id: RunId) -> Option<Vec<u8>> {
        self.read(id, |p| p.preview.clone())
    }

    /// A run's image `k`.
    pub(crate) fn image(&self, id: RunId, k: usize) -> Option<Vec<u8>> {
        self.read(id, |p| p.images.get(k).cloned())
    }
}
