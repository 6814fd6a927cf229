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

    /// Whether the pipeline is SDXL (its `model_index.json` names an SDXL pipeline class): the
    /// folder's, a single file's config folder's, or a hub model's (resolved, `variant` files
    /// fetched as loading would). Read before loading, e.g. to pick SDXL's weight dtype.
    pub fn is_sdxl(&self, variant: Option<&str>) -> Result<bool> {
        let dir = match self {
            ModelSource::Folder(dir) => dir.clone(),
            ModelSource::SingleFile { config, .. } => config.clone(),
            ModelSource::Hub(hub) => hub.resolve(variant)?,
        };
        crate::pipeline::is_sdxl_folder(&dir)
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

    /// The files of a diffusers pipeline folder besides the weights, relative to the
    /// repository root, and whether each is required: the index, the scheduler configs, the
    /// tokenizer files and each component's config.
    #[cfg(feature = "hub")]
    fn pipeline_files() -> Vec<(String, bool)> {
        let required = [
            "model_index.json",
            "scheduler/scheduler_config.json",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "text_encoder/config.json",
            "unet/config.json",
            "vae/config.json",
        ];
        let optional = [
            "tokenizer/tokenizer_config.json",
            "tokenizer/special_tokens_map.json",
            "low_res_scheduler/scheduler_config.json",
        ];
        required
            .into_iter()
            .map(|f| (f.to_string(), true))
            .chain(optional.into_iter().map(|f| (f.to_string(), false)))
            .collect()
    }

    /// The local snapshot folder of the pipeline, downloading what the cache lacks unless
    /// offline. Each component's `variant` weights are resolved as the folder loader reads
    /// them: the safetensors file, else a sharded index and every shard it names, else a
    /// pickle (which loading then refuses with [`ModelsError::Pickle`]).
    pub fn resolve(&self, variant: Option<&str>) -> Result<PathBuf> {
        self.resolve_files(variant)
    }

    #[cfg(feature = "hub")]
    fn resolve_files(&self, variant: Option<&str>) -> Result<PathBuf> {
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
        let missing = |file: &str, why: Option<String>| match why {
            Some(e) => self.error(&format!("cannot download {file}: {e}")),
            None => self.error(&format!(
                "{file} is not in the cache {} and offline mode is on",
                cache.path().display()
            )),
        };
        // The cached path of `file`, downloading it when online; `Err` names why it is absent.
        let get = |file: &str| -> std::result::Result<PathBuf, Option<String>> {
            match (cached.get(file), &api) {
                (Some(path), _) => Ok(path),
                (None, Some(api)) => api.get(file).map_err(|e| Some(e.to_string())),
                (None, None) => Err(None),
            }
        };
        let mut snapshot = None;
        for (file, required) in Self::pipeline_files() {
            match get(&file) {
                Ok(path) if snapshot.is_none() => {
                    // `snapshots/<commit>/<file>`: the folder is the pipeline root.
                    let depth = Path::new(&file).components().count();
                    snapshot = path.ancestors().nth(depth).map(Path::to_path_buf);
                }
                Ok(_) => {}
                Err(why) if required => return Err(missing(&file, why)),
                Err(_) => {}
            }
        }
        for (folder, stem) in [
            ("text_encoder", "model"),
            ("unet", "diffusion_pytorch_model"),
            ("vae", "diffusion_pytorch_model"),
        ] {
            let (file, index, pickle) = match variant {
                Some(v) => (
                    format!("{folder}/{stem}.{v}.safetensors"),
                    format!("{folder}/{stem}.safetensors.index.{v}.json"),
                    format!("{folder}/{stem}.{v}.bin"),
                ),
                None => (
                    format!("{folder}/{stem}.safetensors"),
                    format!("{folder}/{stem}.safetensors.index.json"),
                    format!("{folder}/{stem}.bin"),
                ),
            };
            let why = match get(&file) {
                Ok(_) => continue,
                Err(why) => why,
            };
            if let Ok(index) = get(&index) {
                for shard in crate::weights::shard_names(&index)? {
                    let shard = format!("{folder}/{shard}");
                    get(&shard).map_err(|why| missing(&shard, why))?;
                }
                continue;
            }
            if get(&pickle).is_err() {
                return Err(missing(&file, why));
            }
        }
        snapshot.ok_or_else(|| self.error("no file resolved"))
    }

    #[cfg(not(feature = "hub"))]
    fn resolve_files(&self, _variant: Option<&str>) -> Result<PathBuf> {
        Err(self.error("this build lacks the `hub` cargo feature of hd-painter-models"))
    }

    fn error(&self, reason: &str) -> ModelsError {
        ModelsError::Hub {
            id: format!("{}@{}", self.id, self.revision),
            reason: reason.to_string(),
        }
    }
}
