//! Loading diffusers / transformers safetensors files into burn modules, with one typed error
//! that lists every missing, unexpected and mis-shaped tensor.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    ApplyError, ChainAdapter, FloatCastAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use burn::tensor::DType;

use crate::error::{ModelsError, Result, TensorMismatch};

/// The weights file of a component folder: `{stem}.safetensors`, or `{stem}.{variant}.safetensors`
/// for a published variant such as `fp16`. `stems` are tried in order (`model` for transformers
/// components, `diffusion_pytorch_model` for diffusers ones).
pub(crate) fn weights_file(
    dir: &Path,
    stems: &[&str],
    variant: Option<&str>,
) -> Result<WeightSource> {
    let name = |stem: &str| match variant {
        Some(v) => format!("{stem}.{v}.safetensors"),
        None => format!("{stem}.safetensors"),
    };
    if let Some(file) = stems
        .iter()
        .map(|stem| dir.join(name(stem)))
        .find(|p| p.is_file())
    {
        return Ok(WeightSource::File(file));
    }
    // Folders published before safetensors hold only `{stem}[.variant].bin` pickles.
    let pickle = |stem: &str| dir.join(name(stem).replace(".safetensors", ".bin"));
    if let Some(path) = stems.iter().map(|s| pickle(s)).find(|p| p.is_file()) {
        return Err(ModelsError::Pickle { path });
    }
    Err(ModelsError::Io {
        path: dir.join(name(stems[0])),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no weights file in the folder",
        ),
    })
}

/// Whether `path` names a pickled PyTorch file by its extension.
pub(crate) fn is_pickle(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["bin", "ckpt", "pt", "pth"].contains(&e))
}

/// Where a component's tensors come from: a diffusers / transformers safetensors file, or a
/// safetensors image built in memory (a converted single-file checkpoint), named by the file it
/// came from for errors.
#[derive(Debug)]
pub(crate) enum WeightSource {
    /// A file on disk (memory-mapped by the store).
    File(PathBuf),
    /// Serialized safetensors bytes and the file they were converted from.
    Converted {
        /// The safetensors image.
        bytes: Vec<u8>,
        /// The original checkpoint.
        origin: PathBuf,
    },
}

impl WeightSource {
    fn path(&self) -> &Path {
        match self {
            WeightSource::File(path) => path,
            WeightSource::Converted { origin, .. } => origin,
        }
    }
}

/// Loads `source` into `module`: PyTorch layouts converted (linear weights transposed, norm
/// weight/bias to gamma/beta), every float cast to `f32` whatever the file stores (f32, f16,
/// bf16), `remaps` (regex, replacement) applied to the file's keys, and keys matching `ignored`
/// (buffers such as `position_ids`) tolerated. Anything else that does not fit is an error.
pub(crate) fn load_safetensors<M: Module + ModuleSnapshot>(
    mut module: M,
    source: WeightSource,
    remaps: &[(&str, &str)],
    ignored: &[&str],
) -> Result<M> {
    let path = source.path().to_path_buf();
    let store = match source {
        WeightSource::File(path) => {
            // The store would report a missing file as a generic I/O failure; name it ourselves.
            std::fs::metadata(&path).map_err(|source| ModelsError::Io {
                path: path.clone(),
                source,
            })?;
            SafetensorsStore::from_file(path)
        }
        WeightSource::Converted { bytes, .. } => SafetensorsStore::from_bytes(Some(bytes)),
    };
    let mut store = store
        .with_from_adapter(ChainAdapter::new(
            PyTorchToBurnAdapter,
            FloatCastAdapter::to(DType::F32),
        ))
        .validate(false)
        .allow_partial(true);
    for (pattern, replacement) in remaps {
        store = store.with_key_remapping(*pattern, *replacement);
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| ModelsError::Malformed {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let ignored: Vec<regex::Regex> = ignored
        .iter()
        .map(|p| regex::Regex::new(p).expect("valid ignore pattern"))
        .collect();
    let unexpected: Vec<String> = result
        .unused
        .into_iter()
        .filter(|k| !ignored.iter().any(|r| r.is_match(k)))
        .collect();
    let missing: Vec<String> = result.missing.into_iter().map(|(k, _)| k).collect();
    let mismatched: Vec<TensorMismatch> = result.errors.iter().map(mismatch).collect();
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
        Ok(module)
    } else {
        Err(ModelsError::Weights {
            path,
            missing,
            unexpected,
            mismatched,
        })
    }
}

fn mismatch(e: &ApplyError) -> TensorMismatch {
    let (key, detail) = match e {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => (
            path.clone(),
            format!(
                "expected {:?}, found {:?}",
                expected.as_slice(),
                found.as_slice()
            ),
        ),
        ApplyError::DTypeMismatch {
            path,
            expected,
            found,
        } => (
            path.clone(),
            format!("expected {expected:?}, found {found:?}"),
        ),
        ApplyError::AdapterError { path, message } | ApplyError::LoadError { path, message } => {
            (path.clone(), message.clone())
        }
    };
    TensorMismatch { key, detail }
}
