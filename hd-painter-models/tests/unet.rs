//! UNet2DConditionModel parity with diffusers on tiny random-weight UNets (`tools/reference`):
//! SD 1.5-inpainting-like (9 channels, conv projections), SD 2-like (linear projections, per-level
//! heads, upcast attention, three levels, a 13x19 latent) and x4-upscaler-like (7 channels,
//! noise-level class labels, `only_cross_attention`), batch 2 at timesteps 999 and 19:
//! max |ours - ref| <= 1e-4 * max(1, max|ref|).

mod common;

use burn::tensor::{Device, Tensor};
use common::{Golden, device, model_dir, scratch_copy};
use hd_painter_models::{
    AttentionKind, AttentionProcessor, AttentionSite, Conditions, DefaultAttention, ModelsError,
    TextTime, Unet2DConditionModel, UnetConfig,
};

/// A fixture UNet with its golden inputs: timesteps, the x4 UNet's class labels and the SDXL
/// UNet's pooled text embedding and time ids.
struct Fixture {
    unet: Unet2DConditionModel,
    golden: Golden,
    timesteps: Vec<f32>,
    labels: Option<Vec<i64>>,
    text_time: Option<(Tensor<2>, Vec<f32>)>,
}

impl Fixture {
    fn open(name: &str, device: &Device) -> Self {
        let unet = Unet2DConditionModel::load(model_dir(name), None, device).unwrap();
        let golden = Golden::open(name, "outputs.safetensors");
        let values = |key: &str| golden.get(key).1;
        let timesteps = values("timesteps").into_iter().map(|t| t as f32).collect();
        let labels = (name == "unet_x4").then(|| {
            values("class_labels")
                .into_iter()
                .map(|v| v as i64)
                .collect()
        });
        let text_time = (name == "unet_sdxl").then(|| {
            let ids = values("time_ids").into_iter().map(|v| v as f32).collect();
            (golden.tensor("text_embeds", device), ids)
        });
        Self {
            unet,
            golden,
            timesteps,
            labels,
            text_time,
        }
    }

    fn conditions(&self) -> Conditions<'_> {
        Conditions {
            class_labels: self.labels.as_deref(),
            text_time: self
                .text_time
                .as_ref()
                .map(|(text_embeds, time_ids)| TextTime {
                    text_embeds,
                    time_ids,
                }),
        }
    }

    fn forward(
        &self,
        sample: Tensor<4>,
        context: &Tensor<3>,
        p: &mut dyn AttentionProcessor,
    ) -> Tensor<4> {
        self.unet
            .forward(sample, &self.timesteps, context, self.conditions(), p)
            .unwrap()
    }
}

fn run(name: &str, processor: &mut dyn AttentionProcessor) -> (Golden, Tensor<4>) {
    let device = device();
    let f = Fixture::open(name, &device);
    let context = f.golden.tensor("context", &device);
    let out = f.forward(f.golden.tensor("sample", &device), &context, processor);
    (f.golden, out)
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

#[test]
fn sdxl_unet_matches_diffusers() {
    let (g, out) = run("unet_sdxl", &mut DefaultAttention::default());
    g.assert_close(out, "output", "unet_sdxl");
}

/// SDXL's added conditions are required by its UNet, refused by others, and checked against the
/// embedding's width: typed errors.
#[test]
fn sdxl_conditions_are_checked() {
    let device = device();
    let f = Fixture::open("unet_sdxl", &device);
    let (sample, context) = (
        f.golden.tensor::<4>("sample", &device),
        f.golden.tensor::<3>("context", &device),
    );
    let call_with =
        |unet: &Unet2DConditionModel, sample: Tensor<4>, context: &Tensor<3>, conditions| {
            unet.forward(
                sample,
                &f.timesteps,
                context,
                conditions,
                &mut DefaultAttention::default(),
            )
            .unwrap_err()
            .to_string()
        };
    let call = |unet, sample, conditions| call_with(unet, sample, &context, conditions);
    let err = call(&f.unet, sample.clone(), Conditions::default());
    assert!(err.contains("text_embeds and time_ids"), "{err}");
    let (text, ids) = f.text_time.as_ref().unwrap();
    let err = call(
        &f.unet,
        sample.clone(),
        Conditions::text_time(text, &ids[..10]),
    );
    assert!(err.contains("SDXL time_ids"), "{err}");
    // Three columns more: no whole number of time ids fills the rest of the embedding's width.
    let wide = Tensor::cat(vec![text.clone(), text.clone().slice([0..2, 0..3])], 1);
    let err = call(&f.unet, sample.clone(), Conditions::text_time(&wide, ids));
    assert!(err.contains("SDXL text_embeds"), "{err}");
    let sd2 = Unet2DConditionModel::load(model_dir("unet_sd2"), None, &device).unwrap();
    let sd2_sample = Tensor::<4>::zeros([2, 4, 8, 8], &device);
    let sd2_context = context.clone().slice([0..2, 0..77, 0..32]);
    let err = call_with(
        &sd2,
        sd2_sample,
        &sd2_context,
        Conditions::text_time(text, ids),
    );
    assert!(err.contains("no `text_time` added embedding"), "{err}");
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
            "\"transformer_layers_per_block\": [1, 2]",
            "transformer_layers_per_block",
        ),
        (
            "\"addition_embed_type\": null",
            "\"addition_embed_type\": \"text\"",
            "addition_embed_type",
        ),
        (
            "\"addition_time_embed_dim\": null",
            "\"addition_time_embed_dim\": 8",
            "addition_time_embed_dim",
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
            Conditions::default(),
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
            Conditions::default(),
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
            Conditions::default(),
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
    for name in ["unet_sd15_inpaint", "unet_sd2", "unet_x4", "unet_sdxl"] {
        let device = device();
        let autodiff = device.clone().autodiff();
        // The model on the plain device: its parameters untracked, as RASG loads it.
        let f = Fixture::open(name, &device);
        let g = &f.golden;
        let x = g.tensor::<4>("sample", &autodiff).require_grad();
        let out = f.forward(
            x.clone(),
            &g.tensor("context", &autodiff),
            &mut DefaultAttention::default(),
        );
        let grads = (out * g.tensor::<4>("grad_weights", &autodiff))
            .sum()
            .backward();
        let grad = x.grad(&grads).expect("a gradient for the input");
        g.assert_within(grad, "grad_sample", 1e-3, 0.0, name);
    }
}
