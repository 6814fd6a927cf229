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
    cache_with(tag, skip, &[])
}

/// [`cache`] with `extra` files (repository path, source file) added.
fn cache_with(tag: &str, skip: &[&str], extra: &[(String, PathBuf)]) -> PathBuf {
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
    let files = files
        .iter()
        .filter(|f| !skip.contains(f))
        .map(|f| (f.to_string(), pipeline.join(f)))
        .chain(extra.iter().cloned());
    for (i, (file, source)) in files.enumerate() {
        let blob = repo.join("blobs").join(format!("blob{i}"));
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::copy(source, &blob).unwrap();
        let link = repo.join("snapshots").join(COMMIT).join(&file);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let depth = Path::new(&file).components().count();
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

#[cfg(feature = "hub")]
#[test]
fn sharded_weights_resolve_and_pickled_ones_are_refused_by_the_loader() {
    let sharded = model_dir("published/sharded/text_encoder");
    let extra: Vec<(String, PathBuf)> = [
        "model.safetensors.index.json",
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
    ]
    .iter()
    .map(|f| (format!("text_encoder/{f}"), sharded.join(f)))
    .collect();
    let skip = ["text_encoder/model.safetensors"];
    let models = StableDiffusionModels::from_source(
        &hub(cache_with("sharded", &skip, &extra)),
        None,
        &device(),
    )
    .unwrap();
    assert_eq!(models.text_encoder.hidden_size(), 32);

    // One shard missing from the cache: named.
    let err = StableDiffusionModels::from_source(
        &hub(cache_with("shard-gone", &skip, &extra[..3])),
        None,
        &device(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("model-00003-of-00003.safetensors"),
        "{err}"
    );

    // A repository with a pickled UNet only: resolved, then refused unread.
    let pickle = std::env::temp_dir().join(format!("hd-painter-hub-pickle-{}", std::process::id()));
    std::fs::write(&pickle, b"PK").unwrap();
    let skip = ["unet/diffusion_pytorch_model.safetensors"];
    let extra = [("unet/diffusion_pytorch_model.bin".to_string(), pickle)];
    let err = StableDiffusionModels::from_source(
        &hub(cache_with("pickle", &skip, &extra)),
        None,
        &device(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelsError::Pickle { .. }), "{err}");
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
