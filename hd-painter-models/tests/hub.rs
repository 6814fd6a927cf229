//! Hub model ids resolved through a Hugging Face cache folder built here in the standard layout
//! (`models--org--name/refs/main`, `snapshots/<commit>/...` symlinked to `blobs/`), offline: no
//! network in tests. Without the `hub` feature the same call is a typed error. CI runs this file
//! with and without the feature.
#![cfg(unix)] // the cache's symlinks

mod common;

use std::path::{Path, PathBuf};

use common::{device, model_dir};
use hd_painter_models::{HubModel, ModelSource, ModelsError, StableDiffusionModels};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A hub cache holding the tiny inpainting pipeline as `tiny/sd-inpaint`, without `skip`.
fn cache(tag: &str, skip: &[&str]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("hd-painter-hub-{}-{tag}", std::process::id()));
    let repo = root.join("models--tiny--sd-inpaint");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    let pipeline = model_dir("pipeline_inpaint");
    let files = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "tokenizer/tokenizer_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ];
    for (i, file) in files.iter().filter(|f| !skip.contains(f)).enumerate() {
        let blob = repo.join("blobs").join(format!("blob{i}"));
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::copy(pipeline.join(file), &blob).unwrap();
        let link = repo.join("snapshots").join(COMMIT).join(file);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let depth = Path::new(file).components().count();
        let target = Path::new(&"../".repeat(depth + 1))
            .join("blobs")
            .join(format!("blob{i}"));
        std::os::unix::fs::symlink(target, &link).unwrap();
    }
    root
}

fn hub(cache_dir: PathBuf) -> ModelSource {
    ModelSource::Hub(HubModel {
        cache_dir: Some(cache_dir),
        offline: true,
        ..HubModel::new("tiny/sd-inpaint")
    })
}

#[cfg(feature = "hub")]
#[test]
fn a_cached_model_loads_offline() {
    let models =
        StableDiffusionModels::from_source(&hub(cache("ok", &[])), None, &device()).unwrap();
    assert_eq!(models.pipeline, "StableDiffusionInpaintPipeline");
    assert_eq!(models.unet.in_channels(), 9);
}

#[cfg(feature = "hub")]
#[test]
fn a_file_missing_from_the_cache_offline_is_a_typed_error_naming_it() {
    let source = hub(cache(
        "missing",
        &["unet/diffusion_pytorch_model.safetensors"],
    ));
    match StableDiffusionModels::from_source(&source, None, &device()).unwrap_err() {
        ModelsError::Hub { id, reason } => {
            assert_eq!(id, "tiny/sd-inpaint@main");
            assert!(
                reason.contains("unet/diffusion_pytorch_model.safetensors"),
                "{reason}"
            );
            assert!(reason.contains("offline"), "{reason}");
        }
        other => panic!("{other}"),
    }
    // An fp16 variant the cache does not hold.
    let source = hub(cache("variant", &[]));
    let err = StableDiffusionModels::from_source(&source, Some("fp16"), &device()).unwrap_err();
    assert!(err.to_string().contains("model.fp16.safetensors"), "{err}");
}

#[cfg(not(feature = "hub"))]
#[test]
fn without_the_hub_feature_a_hub_id_is_a_typed_error() {
    let err =
        StableDiffusionModels::from_source(&hub(cache("off", &[])), None, &device()).unwrap_err();
    assert!(
        matches!(&err, ModelsError::Hub { reason, .. } if reason.contains("`hub`")),
        "{err}"
    );
}
