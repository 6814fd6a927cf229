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
    /// A hub model that cannot be resolved (not cached while offline, download failed, or a
    /// build without the `hub` feature).
    #[error("hub model {id}: {reason}")]
    Hub {
        /// `org/name@revision`.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// Weights stored as a pickle (`.bin`, `.ckpt`, `.pt`), which hd-painter never reads.
    #[error(
        "{path} holds pickled PyTorch weights, which hd-painter never reads (unpickling can run \
         code): convert them to safetensors first, e.g. `python tools/convert_to_safetensors.py \
         {path}` from the hd-painter repository writes the `.safetensors` file beside it"
    )]
    Pickle {
        /// The pickled file.
        path: PathBuf,
    },
    /// A file is readable but its content is not what it should be.
    #[error("malformed {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line or key where it applies.
        reason: String,
    },
    /// Models or inputs in memory that do not fit together (no file involved).
    #[error("{what}: {reason}")]
    Incompatible {
        /// What was asked of which model.
        what: String,
        /// Why it cannot be done.
        reason: String,
    },
    /// A configuration key is missing or has a value this implementation does not support.
    #[error("{path}: config key `{key}` = {value}: expected {expected}")]
    UnsupportedConfig {
        /// The config file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The value found (`missing` when absent).
        value: String,
        /// What is supported.
        expected: String,
    },
    /// A weights file does not fit the model: every missing, unexpected and mis-shaped tensor is
    /// listed at once.
    #[error("{path} does not fit the model: {}", describe_weights(.missing, .unexpected, .mismatched))]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// Tensors the model needs that the file lacks (model paths).
        missing: Vec<String>,
        /// Tensors in the file that the model has no place for.
        unexpected: Vec<String>,
        /// Tensors present in both with different shapes (or that could not be read).
        mismatched: Vec<TensorMismatch>,
    },
    /// An error of the core crate (images, tensors, backends).
    #[error(transparent)]
    Core(#[from] hd_painter_core::CoreError),
}

/// A tensor whose shape in the file differs from the model's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMismatch {
    /// The tensor's key.
    pub key: String,
    /// What went wrong: `expected [..], found [..]`, or the reader's message.
    pub detail: String,
}

fn describe_weights(
    missing: &[String],
    unexpected: &[String],
    mismatched: &[TensorMismatch],
) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("{} missing {:?}", missing.len(), missing));
    }
    if !unexpected.is_empty() {
        parts.push(format!("{} unexpected {:?}", unexpected.len(), unexpected));
    }
    if !mismatched.is_empty() {
        let list: Vec<String> = mismatched
            .iter()
            .map(|m| format!("{}: {}", m.key, m.detail))
            .collect();
        parts.push(format!(
            "{} mis-shaped [{}]",
            mismatched.len(),
            list.join("; ")
        ));
    }
    parts.join(", ")
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
