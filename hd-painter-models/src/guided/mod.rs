//! guided-diffusion's `UNetModel` (openai/guided-diffusion, as RePaint ships it): the model of
//! the official RePaint checkpoints, loaded from `.safetensors` converted from the published
//! `.pt` by `tools/convert_guided_diffusion.py` (the library never reads pickles).

mod config;

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, FloatDType, Tensor};

pub use config::GuidedUnetConfig;

use crate::blocks::{
    Resample, ResnetBlock, ResnetSpec, conv, group_norm, nearest_2x, sinusoidal_features,
};
use crate::error::Result;
use crate::native;
use crate::pixel::{PixelDenoiser, add_class_embedding, check_pixel_input};
use crate::weights::{load_safetensors, weights_file};

/// guided-diffusion's `normalization`: `GroupNorm32(32, channels)`.
fn norm(channels: usize, device: &Device) -> GroupNorm {
    group_norm(32, channels, 1e-5, device)
}

/// guided-diffusion's `ResBlock`: diffusers' resnet under other key names (remapped at load),
/// with GroupNorm32, and resampling in the up / down blocks.
fn res_block(
    cfg: &GuidedUnetConfig,
    cin: usize,
    cout: usize,
    resample: Resample,
    device: &Device,
) -> ResnetBlock {
    let spec = ResnetSpec {
        scale_shift: cfg.use_scale_shift_norm,
        resample,
        ..ResnetSpec::plain(cin, cout, Some(4 * cfg.model_channels), 32, 1e-5)
    };
    ResnetBlock::new(&spec, device)
}

/// `AttentionBlock`: a residual multi-head self-attention over the pixels through 1x1 `qkv`
/// and `proj_out` convolutions, the heads split the legacy way (`q, k, v` interleaved per head)
/// or the new one.
#[derive(Module, Debug)]
struct AttentionBlock {
    norm: GroupNorm,
    qkv: Conv1d,
    proj_out: Conv1d,
    heads: usize,
    new_order: bool,
}

impl AttentionBlock {
    fn new(channels: usize, heads: usize, new_order: bool, device: &Device) -> Self {
        let c1 = |cin, cout| Conv1dConfig::new(cin, cout, 1).init(device);
        Self {
            norm: norm(channels, device),
            qkv: c1(channels, 3 * channels),
            proj_out: c1(channels, channels),
            heads,
            new_order,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let (t, heads, ch) = (h * w, self.heads, c / self.heads);
        let normed = native::group_norm(&self.norm, x.clone()).reshape([b, c, t]);
        let qkv = self.qkv.forward(normed);
        // [b * heads, 3, ch, t]: legacy order is per head (q k v), the new one q, k, v of all heads.
        let qkv = match self.new_order {
            false => qkv.reshape([b * heads, 3, ch, t]),
            true => {
                qkv.reshape([b, 3, heads, ch, t])
                    .swap_dims(1, 2)
                    .reshape([b * heads, 3, ch, t])
            }
        };
        let part = |i: usize| qkv.clone().narrow(1, i, 1).reshape([b * heads, ch, t]);
        let (q, k, v) = (part(0), part(1), part(2));
        let scale = 1.0 / (ch as f64).sqrt().sqrt();
        let weight = (q * scale).swap_dims(1, 2).matmul(k * scale);
        let a = v
            .matmul(softmax(weight, 2).swap_dims(1, 2))
            .reshape([b, c, t]);
        (x.reshape([b, c, t]) + self.proj_out.forward(a)).reshape([b, c, h, w])
    }
}

/// One of `input_blocks`: the first convolution, or a resnet with its attention, or a
/// downsampler (a down resnet, or `Downsample`'s `op`).
#[derive(Module, Debug)]
struct InputBlock {
    conv: Option<Conv2d>,
    res: Option<ResnetBlock>,
    attn: Option<AttentionBlock>,
    op: Option<Conv2d>,
}

/// One of `output_blocks`: a resnet, its attention, and the upsampler of a level's last block.
#[derive(Module, Debug)]
struct OutputBlock {
    res: ResnetBlock,
    attn: Option<AttentionBlock>,
    up_res: Option<ResnetBlock>,
    up_conv: Option<Conv2d>,
}

/// `middle_block`: resnet, attention, resnet.
#[derive(Module, Debug)]
struct MiddleBlock {
    res_0: ResnetBlock,
    attn: AttentionBlock,
    res_1: ResnetBlock,
}

/// guided-diffusion's `UNetModel`.
#[derive(Module, Debug)]
pub struct GuidedUnet {
    time_embed_1: Linear,
    time_embed_2: Linear,
    label_emb: Option<Embedding>,
    input_blocks: Vec<InputBlock>,
    middle_block: MiddleBlock,
    output_blocks: Vec<OutputBlock>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    #[module(skip)]
    config: GuidedUnetConfig,
}

/// The checkpoint's `nn.Sequential` indices as this module's field names.
const REMAPS: [(&str, &str); 19] = [
    (r"^time_embed\.0\.", "time_embed_1."),
    (r"^time_embed\.2\.", "time_embed_2."),
    (r"^out\.0\.", "out_norm."),
    (r"^out\.2\.", "out_conv."),
    (r"^input_blocks\.0\.0\.", "input_blocks.0.conv."),
    (r"^(input_blocks\.\d+)\.0\.op\.", "$1.op."),
    (
        r"^((?:input|output)_blocks\.\d+)\.0\.(in_layers|emb_layers|out_layers|skip)",
        "$1.res.$2",
    ),
    (
        r"^((?:input|output)_blocks\.\d+)\.1\.(norm|qkv|proj_out)\.",
        "$1.attn.$2.",
    ),
    (
        r"^(output_blocks\.\d+)\.[12]\.(in_layers|emb_layers|out_layers|skip)",
        "$1.up_res.$2",
    ),
    (r"^(output_blocks\.\d+)\.[12]\.conv\.", "$1.up_conv."),
    (r"^middle_block\.0\.", "middle_block.res_0."),
    (r"^middle_block\.1\.", "middle_block.attn."),
    (r"^middle_block\.2\.", "middle_block.res_1."),
    (r"\.in_layers\.0\.", ".norm1."),
    (r"\.in_layers\.2\.", ".conv1."),
    (r"\.emb_layers\.1\.", ".time_emb_proj."),
    (r"\.out_layers\.0\.", ".norm2."),
    (r"\.out_layers\.3\.", ".conv2."),
    (r"\.skip_connection\.", ".conv_shortcut."),
];

impl GuidedUnet {
    /// A model with the given architecture and untrained weights.
    pub fn new(cfg: &GuidedUnetConfig, device: &Device) -> Self {
        let mc = cfg.model_channels;
        let attn = |ds: usize, c: usize, up: bool| {
            cfg.attention_rates.contains(&ds).then(|| {
                AttentionBlock::new(c, cfg.heads(c, up), cfg.use_new_attention_order, device)
            })
        };
        let mut ch = cfg.channel_mult[0] * mc;
        let mut input_blocks = vec![InputBlock {
            conv: Some(conv(cfg.in_channels, ch, 3, device)),
            res: None,
            attn: None,
            op: None,
        }];
        let mut chans = vec![ch];
        let mut ds = 1;
        let levels = cfg.channel_mult.len();
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let res = res_block(cfg, ch, mult * mc, Resample::None, device);
                ch = mult * mc;
                input_blocks.push(InputBlock {
                    conv: None,
                    res: Some(res),
                    attn: attn(ds, ch, false),
                    op: None,
                });
                chans.push(ch);
            }
            if level + 1 < levels {
                input_blocks.push(match cfg.resblock_updown {
                    true => InputBlock {
                        conv: None,
                        res: Some(res_block(cfg, ch, ch, Resample::Down, device)),
                        attn: None,
                        op: None,
                    },
                    false => InputBlock {
                        conv: None,
                        res: None,
                        attn: None,
                        op: Some(stride_2_conv(ch, device)),
                    },
                });
                chans.push(ch);
                ds *= 2;
            }
        }
        let middle_block = MiddleBlock {
            res_0: res_block(cfg, ch, ch, Resample::None, device),
            attn: AttentionBlock::new(
                ch,
                cfg.heads(ch, false),
                cfg.use_new_attention_order,
                device,
            ),
            res_1: res_block(cfg, ch, ch, Resample::None, device),
        };
        let mut output_blocks = vec![];
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let skip = chans.pop().expect("one skip per output block");
                let res = res_block(cfg, ch + skip, mc * mult, Resample::None, device);
                ch = mc * mult;
                let last = level > 0 && i == cfg.num_res_blocks;
                let block = OutputBlock {
                    res,
                    attn: attn(ds, ch, true),
                    up_res: (last && cfg.resblock_updown)
                        .then(|| res_block(cfg, ch, ch, Resample::Up, device)),
                    up_conv: (last && !cfg.resblock_updown).then(|| conv(ch, ch, 3, device)),
                };
                if last {
                    ds /= 2;
                }
                output_blocks.push(block);
            }
        }
        let temb = 4 * mc;
        Self {
            time_embed_1: LinearConfig::new(mc, temb).init(device),
            time_embed_2: LinearConfig::new(temb, temb).init(device),
            label_emb: cfg
                .num_classes
                .map(|n| EmbeddingConfig::new(n, temb).init(device)),
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: norm(ch, device),
            out_conv: conv(ch, cfg.out_channels, 3, device),
            config: cfg.clone(),
        }
    }

    /// Loads a folder holding `config.json` (the RePaint / guided-diffusion model keys, see
    /// [`GuidedUnetConfig::from_file`]) and `model.safetensors` (converted from the published
    /// `.pt` by `tools/convert_guided_diffusion.py`), f32 or f16.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = GuidedUnetConfig::from_file(dir.join("config.json"))?;
        let weights = weights_file(dir, &["model"], None)?;
        load_safetensors(
            Self::new(&config, device),
            weights,
            &REMAPS,
            &[],
            FloatDType::F32,
        )
    }

    /// The architecture.
    pub fn config(&self) -> &GuidedUnetConfig {
        &self.config
    }

    /// The model output for `sample` at `timesteps`, with `class_labels` (`y`) for a
    /// class-conditional model.
    ///
    /// # Shapes
    /// - `sample`: `[batch, in_channels, h, w]`, sides multiples of `2^(levels - 1)`
    /// - output: `[batch, out_channels, h, w]`
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        class_labels: Option<&[i64]>,
    ) -> Result<Tensor<4>> {
        let cfg = &self.config;
        let multiple = 1 << (cfg.channel_mult.len() - 1);
        check_pixel_input(
            &sample,
            timesteps,
            cfg.in_channels,
            multiple,
            "guided-diffusion UNet",
        )?;
        let device = sample.device();
        let features = sinusoidal_features(timesteps, cfg.model_channels, true, 0.0, &device);
        let emb = self
            .time_embed_2
            .forward(silu(self.time_embed_1.forward(features)));
        let what = "guided-diffusion UNet";
        let emb = add_class_embedding(emb, self.label_emb.as_ref(), class_labels, what)?;
        let mut h = sample;
        let mut skips = vec![];
        for block in &self.input_blocks {
            h = block.forward(h, &emb);
            skips.push(h.clone());
        }
        let mid = &self.middle_block;
        h = mid.res_1.forward(
            mid.attn.forward(mid.res_0.forward(h, Some(&emb))),
            Some(&emb),
        );
        for block in &self.output_blocks {
            let skip = skips.pop().expect("one skip per output block");
            h = block.forward(Tensor::cat(vec![h, skip], 1), &emb);
        }
        Ok(native::conv(
            &self.out_conv,
            native::group_norm_silu(&self.out_norm, h),
        ))
    }
}

/// `Downsample`'s `op`: a 3x3 convolution of stride 2, padded by one.
fn stride_2_conv(channels: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels, channels], [3, 3])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

impl InputBlock {
    fn forward(&self, mut h: Tensor<4>, emb: &Tensor<2>) -> Tensor<4> {
        if let Some(c) = &self.conv {
            h = native::conv(c, h);
        }
        if let Some(r) = &self.res {
            h = r.forward(h, Some(emb));
        }
        if let Some(a) = &self.attn {
            h = a.forward(h);
        }
        if let Some(op) = &self.op {
            h = native::conv(op, h);
        }
        h
    }
}

impl OutputBlock {
    fn forward(&self, h: Tensor<4>, emb: &Tensor<2>) -> Tensor<4> {
        let mut h = self.res.forward(h, Some(emb));
        if let Some(a) = &self.attn {
            h = a.forward(h);
        }
        if let Some(r) = &self.up_res {
            h = r.forward(h, Some(emb));
        }
        if let Some(c) = &self.up_conv {
            h = native::conv(c, nearest_2x(h));
        }
        h
    }
}

impl PixelDenoiser for GuidedUnet {
    fn predict(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        class_labels: Option<&[i64]>,
    ) -> Result<Tensor<4>> {
        self.forward(sample, timesteps, class_labels)
    }

    fn image_channels(&self) -> usize {
        self.config.in_channels
    }

    fn output_channels(&self) -> usize {
        self.config.out_channels
    }

    fn sample_size(&self) -> Option<usize> {
        Some(self.config.image_size)
    }
}
