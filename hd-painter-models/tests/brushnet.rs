//! BrushNet against `tools/reference/brushnet_ref.py` (the official fork's branch and injection,
//! on diffusers' blocks) with the tiny 4-channel SD UNet (3 levels, 2 resnets each: 9 down, 1
//! mid and 11 up injection points; SD's 4 levels give 12 / 1 / 15): `from_unet`'s branch
//! features, the residuals of a branch loaded from the published key layout, and the base
//! UNet's noise prediction with them, all within 1e-4.

mod common;

use burn::tensor::Tensor;
use common::{Golden, device, model_dir, scratch_copy};
use hd_painter_models::{
    BrushNetConfig, BrushNetModel, Conditions, DefaultAttention, ModelsError, Unet2DConditionModel,
    UnetResiduals,
};

struct Setup {
    g: Golden,
    unet: Unet2DConditionModel,
    sample: Tensor<4>,
    condition: Tensor<4>,
    context: Tensor<3>,
}

fn setup() -> Setup {
    let device = device();
    let g = Golden::open("brushnet", "brushnet.safetensors");
    Setup {
        unet: Unet2DConditionModel::load(model_dir("unet_sd2"), None, &device).unwrap(),
        sample: g.tensor("sample", &device),
        condition: g.tensor("condition", &device),
        context: g.tensor("encoder_hidden_states", &device),
        g,
    }
}

impl Setup {
    /// The branch's residuals for the golden inputs at timestep 500.
    fn residuals(&self, branch: &BrushNetModel, scale: f64) -> UnetResiduals {
        branch
            .forward(
                self.sample.clone(),
                &[500.0],
                &self.context,
                self.condition.clone(),
                scale,
            )
            .unwrap()
    }
}

fn assert_residuals(g: &Golden, r: UnetResiduals, prefix: &str) {
    assert_eq!(
        (r.down.len(), r.up.len()),
        (9, 11),
        "{prefix}: injection points"
    );
    for (i, d) in r.down.into_iter().enumerate() {
        g.assert_close(d, &format!("{prefix}.down.{i}"), prefix);
    }
    g.assert_close(r.mid, &format!("{prefix}.mid"), prefix);
    for (i, u) in r.up.into_iter().enumerate() {
        g.assert_close(u, &format!("{prefix}.up.{i}"), prefix);
    }
}

#[test]
fn from_unet_copies_the_base_levels_and_leaves_its_output_unchanged() {
    let s = setup();
    let branch = BrushNetModel::from_unet(&s.unet).unwrap();
    let features = branch
        .features(s.sample.clone(), &[500.0], &s.context, s.condition.clone())
        .unwrap();
    assert_residuals(&s.g, features, "from_unet");
    // Zero 1x1 convolutions: the base UNet's prediction is exactly its own.
    let residuals = s.residuals(&branch, 1.0);
    let mut p = DefaultAttention::default();
    let with = s
        .unet
        .forward_with_residuals(
            s.sample.clone(),
            &[500.0],
            &s.context,
            Conditions::default(),
            &mut p,
            &residuals,
        )
        .unwrap();
    let plain = s
        .unet
        .forward(
            s.sample,
            &[500.0],
            &s.context,
            Conditions::default(),
            &mut p,
        )
        .unwrap();
    let diff: f32 = (with - plain).abs().max().into_scalar();
    assert_eq!(diff, 0.0);
}

#[test]
fn a_published_layout_branch_matches_the_reference_residuals_and_prediction() {
    let s = setup();
    let branch = BrushNetModel::load(model_dir("brushnet"), None, &device()).unwrap();
    assert_eq!(branch.conditioning_channels(), 5);
    let residuals = s.residuals(&branch, 0.8);
    assert_residuals(&s.g, residuals.clone(), "residuals");
    let eps = s
        .unet
        .forward_with_residuals(
            s.sample,
            &[500.0],
            &s.context,
            Conditions::default(),
            &mut DefaultAttention::default(),
            &residuals,
        )
        .unwrap();
    s.g.assert_close(eps, "eps", "BrushNet + base UNet");
}

#[test]
fn misuse_is_reported() {
    let s = setup();
    let device = device();
    // A 9-channel base.
    let nine = Unet2DConditionModel::load(model_dir("unet_sd15_inpaint"), None, &device).unwrap();
    assert!(matches!(
        BrushNetModel::from_unet(&nine),
        Err(ModelsError::Incompatible { .. })
    ));
    // Residuals of the wrong count or shape.
    let branch = BrushNetModel::load(model_dir("brushnet"), None, &device).unwrap();
    let good = s.residuals(&branch, 1.0);
    let call = |r: &UnetResiduals| {
        let mut p = DefaultAttention::default();
        let conditions = Conditions::default();
        s.unet.forward_with_residuals(
            s.sample.clone(),
            &[500.0],
            &s.context,
            conditions,
            &mut p,
            r,
        )
    };
    let mut short = good.clone();
    short.up.pop();
    let err = call(&short).unwrap_err();
    assert!(err.to_string().contains("Up residual 10"), "{err}");
    let mut long = good.clone();
    long.down.push(long.down[0].clone());
    assert!(call(&long).is_err());
    let mut wrong = good;
    wrong.mid = wrong.mid.repeat_dim(1, 2);
    let err = call(&wrong).unwrap_err();
    assert!(err.to_string().contains("Mid residual 0"), "{err}");

    // Configs the published checkpoints never use.
    let dir = scratch_copy(
        "brushnet",
        "config",
        &["config.json", "diffusion_pytorch_model.safetensors"],
    );
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    for (from, to) in [
        ("\"MidBlock2D\"", "\"UNetMidBlock2D\""),
        ("\"rgb\"", "\"bgr\""),
        (
            "\"global_pool_conditions\": false",
            "\"global_pool_conditions\": true",
        ),
    ] {
        std::fs::write(dir.join("config.json"), text.replace(from, to)).unwrap();
        let err = BrushNetConfig::from_file(dir.join("config.json")).unwrap_err();
        assert!(
            matches!(err, ModelsError::UnsupportedConfig { .. }),
            "{from}: {err}"
        );
    }
    // Weights that do not fit the config name the key.
    std::fs::write(
        dir.join("config.json"),
        text.replace("\"layers_per_block\": 2", "\"layers_per_block\": 1"),
    )
    .unwrap();
    assert!(matches!(
        BrushNetModel::load(&dir, None, &device),
        Err(ModelsError::Weights { .. })
    ));
}
