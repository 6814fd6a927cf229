//! Where a pipeline's models come from: a diffusers folder, an original-layout single-file
//! checkpoint, or a model id on the Hugging Face Hub (feature `hub`).

use std::path::{Path, PathBuf};

use crate::error::{ModelsError, Result};

/// A Stable Diffusion pipeline's location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A diffusers pipeline folder (`model_index.json` and one folder per component).
    Folder(PathBuf),
    /// An original-layout single-file `.safetensors` checkpoint, with a diffusers folder holding
    /// the configs and the tokenizer (see
    /// [`StableDiffusionModels::load_single_file`](crate::StableDiffusionModels::load_single_file)).
    SingleFile {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// The folder with `model_index.json`, `tokenizer/` and the components' `config.json`.
        config: PathBuf,
    },
    /// A model on the Hugging Face Hub, resolved through its local cache.
    Hub(HubModel),
}

impl ModelSource {
    /// Reads a command-line style source: `hub:ORG/NAME[@REVISION]` is a hub id, a `.safetensors`
    /// file a single-file checkpoint (which needs `config`), anything else a folder.
    pub fn parse(spec: &str, config: Option<&Path>) -> Result<Self> {
        if let Some(id) = spec.strip_prefix("hub:") {
            let (id, revision) = match id.split_once('@') {
                Some((id, revision)) => (id, revision),
                None => (id, "main"),
            };
            return Ok(ModelSource::Hub(HubModel::new(id).with_revision(revision)));
        }
        let path = PathBuf::from(spec);
        if path
            .extension()
            .is_some_and(|e| e == "safetensors" || e == "ckpt")
        {
            let config = config.ok_or_else(|| ModelsError::Malformed {
                path: path.clone(),
                reason:
                    "a single-file checkpoint needs a diffusers config folder (model_index.json, \
                         tokenizer/, unet/, vae/ and text_encoder/ configs)"
                        .into(),
            })?;
            return Ok(ModelSource::SingleFile {
                checkpoint: path,
                config: config.to_path_buf(),
            });
        }
        Ok(ModelSource::Folder(path))
    }
}

/// A model id on the Hugging Face Hub and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubModel {
    /// `org/name`, e.g. `stabilityai/stable-diffusion-2-inpainting`.
    pub id: String,
    /// Branch, tag or commit (`main`).
    pub revision: String,
    /// The hub cache folder; `None` is the standard one (`$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Use only what the cache holds, never the network (set from `HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

impl HubModel {
    /// `id` at `main` in the standard cache, offline when `HF_HUB_OFFLINE` is `1` / `true`.
    pub fn new(id: &str) -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        Self {
            id: id.to_string(),
            revision: "main".into(),
            cache_dir: None,
            offline,
        }
    }

    /// The same model at another revision.
    pub fn with_revision(mut self, revision: &str) -> Self {
        self.revision = revision.to_string();
        self
    }

    /// The files of a diffusers pipeline folder, relative to the repository root: the index,
    /// the scheduler configs, the tokenizer files, each component's config and `variant`
    /// weights.
    fn pipeline_files(variant: Option<&str>) -> Vec<(String, bool)> {
        let weights = |stem: &str| match variant {
            Some(v) => format!("{stem}.{v}.safetensors"),
            None => format!("{stem}.safetensors"),
        };
        let required = [
            "model_index.json".to_string(),
            "scheduler/scheduler_config.json".into(),
            "tokenizer/vocab.json".into(),
            "tokenizer/merges.txt".into(),
            "text_encoder/config.json".into(),
            format!("text_encoder/{}", weights("model")),
            "unet/config.json".into(),
            format!("unet/{}", weights("diffusion_pytorch_model")),
            "vae/config.json".into(),
            format!("vae/{}", weights("diffusion_pytorch_model")),
        ];
        let optional = [
            "tokenizer/tokenizer_config.json",
            "tokenizer/special_tokens_map.json",
            "low_res_scheduler/scheduler_config.json",
        ];
        required
            .into_iter()
            .map(|f| (f, true))
            .chain(optional.into_iter().map(|f| (f.to_string(), false)))
            .collect()
    }

    /// The local snapshot folder of the pipeline, downloading what the cache lacks unless
    /// offline. Every required file must be there afterwards.
    pub fn resolve(&self, variant: Option<&str>) -> Result<PathBuf> {
        self.resolve_files(&Self::pipeline_files(variant))
    }

    #[cfg(feature = "hub")]
    fn resolve_files(&self, files: &[(String, bool)]) -> Result<PathBuf> {
        use hf_hub::{Cache, Repo, RepoType};

        let cache = match &self.cache_dir {
            Some(dir) => Cache::new(dir.clone()),
            None => Cache::from_env(),
        };
        let repo = Repo::with_revision(self.id.clone(), RepoType::Model, self.revision.clone());
        let api = if self.offline {
            None
        } else {
            Some(
                hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
                    .build()
                    .map_err(|e| self.error(&format!("cannot start the hub client: {e}")))?
                    .repo(repo.clone()),
            )
        };
        let cached = cache.repo(repo);
        let mut snapshot = None;
        for (file, required) in files {
            let path = match (cached.get(file), &api) {
                (Some(path), _) => Some(path),
                (None, Some(api)) => match api.get(file) {
                    Ok(path) => Some(path),
                    Err(e) if *required => {
                        return Err(self.error(&format!("cannot download {file}: {e}")));
                    }
                    Err(_) => None,
                },
                (None, None) if *required => {
                    return Err(self.error(&format!(
                        "{file} is not in the cache {} and offline mode is on",
                        cache.path().display()
                    )));
                }
                (None, None) => None,
            };
            if let (Some(path), None) = (path, &snapshot) {
                // `snapshots/<commit>/<file>`: the folder is the pipeline root.
                let depth = Path::new(file).components().count();
                snapshot = path.ancestors().nth(depth).map(Path::to_path_buf);
            }
        }
        snapshot.ok_or_else(|| self.error("no file resolved"))
    }

    #[cfg(not(feature = "hub"))]
    fn resolve_files(&self, _files: &[(String, bool)]) -> Result<PathBuf> {
        Err(self.error("this build lacks the `hub` cargo feature of hd-painter-models"))
    }

    fn error(&self, reason: &str) -> ModelsError {
        ModelsError::Hub {
            id: format!("{}@{}", self.id, self.revision),
            reason: reason.to_string(),
        }
    }
}
