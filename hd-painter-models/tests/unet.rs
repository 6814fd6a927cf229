//! UNet2DConditionModel parity with diffusers on tiny random-weight UNets (`tools/reference`):
//! SD 1.5-inpainting-like (9 channels, conv projections), SD 2-like (linear projections, per-level
//! heads, upcast attention, three levels, a 13x19 latent) and x4-upscaler-like (7 channels,
//! noise-level class labels, `only_cross_attention`), batch 2 at timesteps 999 and 19:
//! max |ours - ref| <= 1e-4 * max(1, max|ref|).

mod common;

use common::{Golden, device, model_dir, scratch_copy};
use hd_painter_models::{
    AttentionKind, AttentionProcessor, AttentionSite, DefaultAttention, ModelsError,
    Unet2DConditionModel, UnetConfig,
};

/// A fixture UNet with its golden inputs: timesteps and (for the x4 UNet) class labels.
fn fixture(
    name: &str,
    device: &burn::tensor::Device,
) -> (Unet2DConditionModel, Golden, Vec<f32>, Option<Vec<i64>>) {
    let unet = Unet2DConditionModel::load(model_dir(name), None, device).unwrap();
    let g = Golden::open(name, "outputs.safetensors");
    let timesteps = g.get("timesteps").1.into_iter().map(|t| t as f32).collect();
    let labels = (name == "unet_x4").then(|| {
        g.get("class_labels")
            .1
            .into_iter()
            .map(|v| v as i64)
            .collect()
    });
    (unet, g, timesteps, labels)
}

fn run(name: &str, processor: &mut dyn AttentionProcessor) -> (Golden, burn::tensor::Tensor<4>) {
    let device = device();
    let (unet, g, timesteps, labels) = fixture(name, &device);
    let out = unet
        .forward(
            g.tensor("sample", &device),
            &timesteps,
            &g.tensor("context", &device),
            labels.as_deref(),
            processor,
        )
        .unwrap();
    (g, out)
}

#[test]
fn sd15_inpainting_unet_matches_diffusers() {
    let (g, out) = run("unet_sd15_inpaint", &mut DefaultAttention::default());
    g.assert_close(out, "output", "unet_sd15_inpaint");
}

#[test]
fn sd2_unet_matches_diffusers() {
    let (g, out) = run("unet_sd2", &mut DefaultAttention::default());
    g.assert_close(out, "output", "unet_sd2");
}

#[test]
fn x4_upscaler_unet_matches_diffusers() {
    let (g, out) = run("unet_x4", &mut DefaultAttention::default());
    g.assert_close(out, "output", "unet_x4");
}

/// An observing processor sees every attention with its path, kind and grid, and a chunked
/// default gives the same result.
#[test]
fn processors_see_every_attention() {
    struct Recorder(Vec<(String, AttentionKind, usize, usize)>, DefaultAttention);
    impl AttentionProcessor for Recorder {
        fn attend(
            &mut self,
            site: &AttentionSite<'_>,
            q: burn::tensor::Tensor<4>,
            k: burn::tensor::Tensor<4>,
            v: burn::tensor::Tensor<4>,
        ) -> burn::tensor::Tensor<4> {
            assert_eq!(site.timesteps, [999.0, 19.0]);
            self.0
                .push((site.path.to_string(), site.kind, site.height, site.width));
            self.1.attend(site, q, k, v)
        }
    }
    let mut recorder = Recorder(vec![], DefaultAttention { score_budget: 100 });
    let (g, out) = run("unet_x4", &mut recorder);
    g.assert_close(out, "output", "unet_x4 chunked");
    let calls = &recorder.0;
    // x4: down 1 and 2 (1 transformer each), mid, up 0 and 1 (2 each): 7 transformers x 2.
    assert_eq!(calls.len(), 14);
    let first = &calls[0];
    assert_eq!(
        first.0,
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1"
    );
    // only_cross_attention: attn1 of level 1 attends to the text.
    assert_eq!(first.1, AttentionKind::CrossAttention);
    assert_eq!((first.2, first.3), (4, 6));
    let mid_self = calls
        .iter()
        .find(|c| c.0 == "mid_block.attentions.0.transformer_blocks.0.attn1")
        .unwrap();
    assert_eq!(
        (mid_self.1, mid_self.2, mid_self.3),
        (AttentionKind::SelfAttention, 2, 3)
    );
}

#[test]
fn bad_configs_weights_and_inputs_are_typed_errors() {
    let files = ["config.json", "diffusion_pytorch_model.safetensors"];
    let config = std::fs::read_to_string(model_dir("unet_sd2").join("config.json")).unwrap();
    for (from, to, key) in [
        ("\"DownBlock2D\"", "\"KDownBlock2D\"", "down_block_types"),
        (
            "\"time_embedding_type\": \"positional\"",
            "\"time_embedding_type\": \"fourier\"",
            "time_embedding_type",
        ),
        (
            "\"transformer_layers_per_block\": 1",
            "\"transformer_layers_per_block\": 2",
            "transformer_layers_per_block",
        ),
    ] {
        assert!(config.contains(from), "{from}");
        let dir = scratch_copy("unet_sd2", key, &files);
        std::fs::write(dir.join("config.json"), config.replace(from, to)).unwrap();
        let err = UnetConfig::from_file(dir.join("config.json")).unwrap_err();
        assert!(
            matches!(&err, ModelsError::UnsupportedConfig { key: k, .. } if k == key),
            "{err}"
        );
    }

    // Weights of a conv-projection UNet under a linear-projection config: mis-shaped tensors.
    let dir = scratch_copy("unet_sd2", "projection", &files);
    std::fs::write(
        dir.join("config.json"),
        config.replace(
            "\"use_linear_projection\": true",
            "\"use_linear_projection\": false",
        ),
    )
    .unwrap();
    let err = Unet2DConditionModel::load(&dir, None, &device()).unwrap_err();
    assert!(matches!(err, ModelsError::Weights { .. }), "{err}");

    let device = device();
    let unet = Unet2DConditionModel::load(model_dir("unet_sd2"), None, &device).unwrap();
    let context = burn::tensor::Tensor::<3>::zeros([2, 77, 24], &device);
    let wrong_channels = burn::tensor::Tensor::<4>::zeros([2, 9, 8, 8], &device);
    let err = unet
        .forward(
            wrong_channels,
            &[1.0, 1.0],
            &context,
            None,
            &mut DefaultAttention::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("UNet sample"), "{err}");
    let sample = burn::tensor::Tensor::<4>::zeros([2, 4, 8, 8], &device);
    let err = unet
        .forward(
            sample,
            &[1.0],
            &context,
            None,
            &mut DefaultAttention::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("timesteps"), "{err}");
    // A text embedding of another width than cross_attention_dim.
    let narrow = burn::tensor::Tensor::<3>::zeros([2, 77, 24], &device);
    let sample = burn::tensor::Tensor::<4>::zeros([2, 4, 8, 8], &device);
    let err = unet
        .forward(
            sample,
            &[1.0, 1.0],
            &narrow,
            None,
            &mut DefaultAttention::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("text context"), "{err}");
}

/// RASG's gradient: d(sum(w * unet(x))) / dx through burn's autodiff, with the weights loaded on
/// the plain device (no parameter gradients), against torch.autograd: max |ours - ref| <= 1e-3 *
/// max |ref|, for all three UNet families.
#[test]
fn input_gradient_matches_torch_autograd() {
    for name in ["unet_sd15_inpaint", "unet_sd2", "unet_x4"] {
        let device = device();
        let autodiff = device.clone().autodiff();
        let (unet, g, timesteps, labels) = fixture(name, &device);
        let x = g.tensor::<4>("sample", &autodiff).require_grad();
        let context = g.tensor("context", &autodiff);
        let out = unet
            .forward(
                x.clone(),
                &timesteps,
                &context,
                labels.as_deref(),
                &mut DefaultAttention::default(),
            )
            .unwrap();
        let grads = (out * g.tensor::<4>("grad_weights", &autodiff))
            .sum()
            .backward();
        let grad = x.grad(&grads).expect("a gradient for the input");
        g.assert_within(grad, "grad_sample", 1e-3, 0.0, name);
    }
}
