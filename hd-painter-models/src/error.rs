//! The error type of `hd-painter-models`.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model: each variant names the file, the
/// key or the value involved and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A file is readable but its content is not what it should be.
    #[error("malformed {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line or key where it applies.
        reason: String,
    },
    /// An error of the core crate (images, tensors, backends).
    #[error(transparent)]
    Core(#[from] hd_painter_core::CoreError),
}

/// `Result` with [`ModelsError`].
pub type Result<T, E = ModelsError> = std::result::Result<T, E>;

/// Reads a whole text file, naming it on failure.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ModelsError::Io {
        path: path.to_path_buf(),
        source,
    })
}
