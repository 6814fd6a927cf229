//! Loading diffusers / transformers safetensors files into burn modules, with one typed error
//! that lists every missing, unexpected and mis-shaped tensor.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    ApplyError, ChainAdapter, FloatCastAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use burn::tensor::{DType, FloatDType};

use crate::error::{ModelsError, Result, TensorMismatch, read_text};

/// The weights of a component folder: `{stem}.safetensors`, or `{stem}.{variant}.safetensors`
/// for a published variant such as `fp16`, or a sharded checkpoint's index
/// (`{stem}.safetensors.index.json`, `{stem}.safetensors.index.{variant}.json`) and its shards.
/// `stems` are tried in order (`model` for transformers components, `diffusion_pytorch_model`
/// for diffusers ones).
pub(crate) fn weights_file(
    dir: &Path,
    stems: &[&str],
    variant: Option<&str>,
) -> Result<WeightSource> {
    let name = |stem: &str| match variant {
        Some(v) => format!("{stem}.{v}.safetensors"),
        None => format!("{stem}.safetensors"),
    };
    let index = |stem: &str| match variant {
        Some(v) => format!("{stem}.safetensors.index.{v}.json"),
        None => format!("{stem}.safetensors.index.json"),
    };
    for stem in stems {
        let file = dir.join(name(stem));
        if file.is_file() {
            return Ok(WeightSource::File(file));
        }
        let index = dir.join(index(stem));
        if index.is_file() {
            return shards(&index);
        }
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

/// The shards a `*.safetensors.index.json` names in its `weight_map`, each a file beside it.
fn shards(index: &Path) -> Result<WeightSource> {
    let files = shard_names(index)?
        .into_iter()
        .map(|name| index.with_file_name(name))
        .collect();
    Ok(WeightSource::Shards {
        index: index.to_path_buf(),
        files,
    })
}

/// The file names a sharded checkpoint's index lists in its `weight_map`, each once, in order;
/// a name with a folder in it (a shard outside the index's folder) is malformed.
pub(crate) fn shard_names(index: &Path) -> Result<Vec<String>> {
    let malformed = |reason: String| ModelsError::Malformed {
        path: index.to_path_buf(),
        reason,
    };
    let json: serde_json::Value =
        serde_json::from_str(&read_text(index)?).map_err(|e| malformed(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| malformed("no `weight_map` of tensor names to shard files".into()))?;
    let mut names: Vec<String> = Vec::new();
    for (key, shard) in map {
        let name = shard
            .as_str()
            .filter(|n| !n.is_empty() && Path::new(n).file_name() == Some(n.as_ref()))
            .ok_or_else(|| {
                malformed(format!(
                    "`weight_map.{key}` = {shard}: expected a file name beside the index"
                ))
            })?;
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Runs `read` on the safetensors file `path` (memory-mapped): pickles are refused and a file
/// that is not safetensors is [`ModelsError::Malformed`] naming it.
pub(crate) fn read_safetensors<T>(
    path: &Path,
    read: impl FnOnce(&safetensors::SafeTensors<'_>, &[u8]) -> Result<T>,
) -> Result<T> {
    if is_pickle(path) {
        return Err(ModelsError::Pickle {
            path: path.to_path_buf(),
        });
    }
    let map = crate::single_file::map_file(path)?;
    let tensors =
        safetensors::SafeTensors::deserialize(&map).map_err(|e| ModelsError::Malformed {
            path: path.to_path_buf(),
            reason: format!("not a safetensors file: {e}"),
        })?;
    read(&tensors, &map)
}

/// A safetensors tensor's values as f32 (f32, f16 and bf16 files); `None` for other dtypes.
pub(crate) fn float_data(view: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f32>> {
    let bytes = view.data();
    Some(match view.dtype() {
        safetensors::Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        safetensors::Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        safetensors::Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Whether `path` names a pickled PyTorch file by its extension.
pub(crate) fn is_pickle(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["bin", "ckpt", "pt", "pth"].contains(&e))
}

/// Where a component's tensors come from: a diffusers / transformers safetensors file, a
/// sharded checkpoint, or a safetensors image built in memory (a converted single-file
/// checkpoint), named by the file it came from for errors.
#[derive(Debug)]
pub(crate) enum WeightSource {
    /// A file on disk (memory-mapped by the store).
    File(PathBuf),
    /// A sharded checkpoint: its index and the shard files it names.
    Shards {
        /// `*.safetensors.index.json`.
        index: PathBuf,
        /// The shards, in the index's order.
        files: Vec<PathBuf>,
    },
    /// Serialized safetensors bytes and the file they were converted from.
    Converted {
        /// The safetensors image.
        bytes: Vec<u8>,
        /// The original checkpoint.
        origin: PathBuf,
    },
}

impl WeightSource {
    /// The file errors name: the weights file, the shards' index or the original checkpoint.
    pub(crate) fn path(&self) -> &Path {
        match self {
            WeightSource::File(path) => path,
            WeightSource::Shards { index, .. } => index,
            WeightSource::Converted { origin, .. } => origin,
        }
    }

    /// The safetensors files on disk (none for a converted checkpoint).
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        match self {
            WeightSource::File(path) => vec![path.clone()],
            WeightSource::Shards { files, .. } => files.clone(),
            WeightSource::Converted { .. } => Vec::new(),
        }
    }
}

/// A store over one file, named in errors; a missing file is reported as such (the store would
/// report a generic I/O failure).
fn file_store(path: &Path) -> Result<SafetensorsStore> {
    std::fs::metadata(path).map_err(|source| ModelsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(SafetensorsStore::from_file(path))
}

/// Loads `source` into `module`: PyTorch layouts converted (linear weights transposed, norm
/// weight/bias to gamma/beta), every float cast to `stored` as it is read whatever the file
/// stores (f32, f16, bf16; so a bf16 model never holds its f32 weights), `remaps` (regex, replacement) applied to the file's keys, and keys matching `ignored`
/// (buffers such as `position_ids`) tolerated. Anything else that does not fit is an error; for
/// shards, a tensor is missing when no shard holds it.
pub(crate) fn load_safetensors<M: Module + ModuleSnapshot>(
    mut module: M,
    source: WeightSource,
    remaps: &[(&str, &str)],
    ignored: &[&str],
    stored: FloatDType,
) -> Result<M> {
    let path = source.path().to_path_buf();
    let stores = match source {
        WeightSource::Converted { bytes, .. } => {
            vec![(path.clone(), SafetensorsStore::from_bytes(Some(bytes)))]
        }
        files => files
            .files()
            .into_iter()
            .map(|f| Ok((f.clone(), file_store(&f)?)))
            .collect::<Result<Vec<_>>>()?,
    };
    let ignored: Vec<regex::Regex> = ignored
        .iter()
        .map(|p| regex::Regex::new(p).expect("valid ignore pattern"))
        .collect();
    let (mut missing, mut unexpected, mut mismatched) =
        (None::<Vec<String>>, Vec::new(), Vec::new());
    for (file, store) in stores {
        let mut store = store
            .with_from_adapter(ChainAdapter::new(
                PyTorchToBurnAdapter,
                FloatCastAdapter::to(DType::from(stored)),
            ))
            .validate(false)
            .allow_partial(true);
        for (pattern, replacement) in remaps {
            store = store.with_key_remapping(*pattern, *replacement);
        }
        let result = module
            .load_from(&mut store)
            .map_err(|e| ModelsError::Malformed {
                path: file,
                reason: e.to_string(),
            })?;
        let absent: Vec<String> = result.missing.into_iter().map(|(k, _)| k).collect();
        missing = Some(match missing {
            None => absent,
            Some(before) => before.into_iter().filter(|k| absent.contains(k)).collect(),
        });
        unexpected.extend(
            result
                .unused
                .into_iter()
                .filter(|k| !ignored.iter().any(|r| r.is_match(k))),
        );
        mismatched.extend(result.errors.iter().map(mismatch));
    }
    let missing = missing.unwrap_or_default();
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
