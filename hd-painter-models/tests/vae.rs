//! AutoencoderKL parity with diffusers on tiny random-weight VAEs (`tools/reference`): an SD-like
//! one (batch 2, non-square 24x40 images) and an x4-upscaler-like one (three levels, scaling
//! 0.08333). Posterior mean, logvar, a sample with given noise, and the decode of the mean, all
//! within 1e-4 * max(1, max|ref|); the decode again with the attention split into query chunks.

mod common;

use common::{Golden, device, model_dir, scratch_copy};
use hd_painter_models::{AutoencoderKl, ModelsError, VaeConfig};

fn check(name: &str, scaling: f64, downscale: usize) {
    let device = device();
    let vae = AutoencoderKl::load(model_dir(name), None, &device).unwrap();
    assert_eq!(vae.scaling_factor(), scaling);
    assert_eq!(vae.downscale(), downscale);
    let g = Golden::open(name, "outputs.safetensors");
    let posterior = vae.encode(g.tensor::<4>("image", &device)).unwrap();
    g.assert_close(posterior.mean.clone(), "mean", name);
    g.assert_close(posterior.logvar.clone(), "logvar", name);
    g.assert_close(posterior.sample(g.tensor("noise", &device)), "sample", name);
    // Seeded sampling: item by item reproducible, and mean + std * noise of that noise.
    let [b, c, h, w] = posterior.mean.dims();
    let seeds: Vec<u64> = (0..b as u64).map(|i| 100 + i).collect();
    let seeded = posterior.sample_seeded(&seeds).unwrap();
    let expected = posterior.sample(hd_painter_core::seeded_noise(&seeds, [c, h, w], &device));
    let diff: f32 = (seeded - expected).abs().max().into_scalar();
    assert_eq!(diff, 0.0);
    assert!(posterior.sample_seeded(&[1; 5]).is_err());
    g.assert_close(
        vae.decode(g.tensor("mean", &device)).unwrap(),
        "decoded",
        name,
    );

    // A budget of 64 scores splits every mid-block attention into many query chunks.
    let chunked = vae.with_score_budget(64);
    g.assert_close(
        chunked.decode(g.tensor("mean", &device)).unwrap(),
        "decoded",
        &format!("{name} chunked"),
    );
}

#[test]
fn sd_vae_matches_diffusers() {
    check("vae_sd", 0.18215, 2);
}

#[test]
fn x4_upscaler_vae_matches_diffusers() {
    check("vae_x4", 0.08333, 4);
}

#[test]
fn wrong_inputs_are_typed_errors() {
    let device = device();
    let vae = AutoencoderKl::load(model_dir("vae_sd"), None, &device).unwrap();
    let gray = burn::tensor::Tensor::<4>::zeros([1, 1, 8, 8], &device);
    assert!(
        vae.encode(gray)
            .unwrap_err()
            .to_string()
            .contains("VAE encoder")
    );
    let odd = burn::tensor::Tensor::<4>::zeros([1, 3, 9, 8], &device);
    assert!(vae.encode(odd).is_err());
    let wide = burn::tensor::Tensor::<4>::zeros([1, 8, 4, 4], &device);
    assert!(
        vae.decode(wide)
            .unwrap_err()
            .to_string()
            .contains("VAE decoder")
    );
}

#[test]
fn unsupported_vae_configs_are_typed_errors() {
    let files = ["config.json", "diffusion_pytorch_model.safetensors"];
    let config = std::fs::read_to_string(model_dir("vae_sd").join("config.json")).unwrap();
    for (from, to, key) in [
        (
            "\"DownEncoderBlock2D\"",
            "\"DownBlock2D\"",
            "down_block_types",
        ),
        ("\"act_fn\": \"silu\"", "\"act_fn\": \"gelu\"", "act_fn"),
        (
            "\"shift_factor\": null",
            "\"shift_factor\": 0.1",
            "shift_factor",
        ),
        (
            "\"norm_num_groups\": 8",
            "\"norm_num_groups\": 7",
            "norm_num_groups",
        ),
    ] {
        assert!(config.contains(from), "{from}");
        let dir = scratch_copy("vae_sd", key, &files);
        std::fs::write(dir.join("config.json"), config.replace(from, to)).unwrap();
        let err = VaeConfig::from_file(dir.join("config.json")).unwrap_err();
        assert!(
            matches!(&err, ModelsError::UnsupportedConfig { key: k, .. } if k == key),
            "{err}"
        );
        assert!(AutoencoderKl::load(&dir, None, &device()).is_err());
    }
}
