#!/usr/bin/env python3
"""Goldens for RePaint as published: diffusers' `UNet2DModel` on tiny random-weight configs, a
whole `RePaintPipeline` run, and the official RePaint sampler (andreas128/RePaint) itself.

Get the official code (never committed to this repository):

    git clone https://github.com/andreas128/RePaint /tmp/repaint-official
    git -C /tmp/repaint-official checkout 8e2a055

and run, with the reference venv (tools/reference/setup.sh):

    ~/.cache/hd-painter/venv/bin/python tools/reference/repaint_pixel.py \
        --official /tmp/repaint-official [--out fixtures]

What it writes:
- `models/unet2d_ddpm/`: a tiny UNet2DModel shaped like google/ddpm-ema-celebahq-256 (DownBlock2D
  and AttnDownBlock2D levels, one head, downsample_padding 0, freq_shift 1, sin before cos) in
  the layout it was published in (diffusers 0.1: only the config keys that version wrote,
  attention `query` / `key` / `value` / `proj_attn`); diffusers itself is shown to load it to
  the same weights.
- `models/unet2d_learned/`: learned variance (6 output channels), `scale_shift` resnets, heads of
  8 channels, a class embedding, a norm-free mid attention, `mid_block_scale_factor` sqrt(2).
- `models/unet2d_fourier/`: Fourier time embedding, `time_embedding_dim`, `center_input_sample`,
  a mid block without attention.
  Each with `outputs.safetensors`: inputs, timesteps, labels and diffusers' output.
- `models/guided_repaint/`, `models/guided_plain/`: tiny guided-diffusion `UNetModel`s built by
  the official `create_model` (learned sigma, scale-shift norm, up/down resnets, fixed head
  width and class labels; plain resamplers, head counts, the new attention order), saved as a
  `.pt` and converted by `tools/convert_guided_diffusion.py`, with the official model's output.
- `sampling/repaint_pixel.safetensors`: `RePaintPipeline` (unet2d_ddpm, `RePaintScheduler` with
  100 training steps, 20 steps, jumps of 3, 2 samples, eta 0.5) and the official
  `p_sample_loop_progressive` (guided_repaint, 1000 linear training steps respaced to 20, jumps
  of 3, 2 samples, a class label) on a 16 x 16 image and hole: every
  standard-normal draw in the order taken, each reverse step's x0 and sample, the output.
"""

import argparse
import json
import pathlib
import sys

import numpy as np

from generate import randomize_norms

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEED = 20220124  # RePaint's arXiv date

LEGACY = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}

# The keys of google/ddpm-ema-celebahq-256's config.json as published.
LEGACY_CONFIG_KEYS = {
    "_class_name", "act_fn", "attention_head_dim", "block_out_channels", "center_input_sample",
    "down_block_types", "downsample_padding", "flip_sin_to_cos", "freq_shift", "in_channels",
    "layers_per_block", "mid_block_scale_factor", "norm_eps", "norm_num_groups", "out_channels",
    "sample_size", "time_embedding_type", "up_block_types",
}

MODELS = {
    "unet2d_ddpm": dict(
        sample_size=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        attention_head_dim=None,
        norm_num_groups=8,
        norm_eps=1e-6,
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
    ),
    "unet2d_learned": dict(
        sample_size=8,
        out_channels=6,
        down_block_types=("AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"),
        block_out_channels=(16, 16, 32),
        layers_per_block=2,
        attention_head_dim=8,
        norm_num_groups=4,
        resnet_time_scale_shift="scale_shift",
        num_class_embeds=5,
        mid_block_scale_factor=2**0.5,
    ),
    "unet2d_fourier": dict(
        sample_size=8,
        time_embedding_type="fourier",
        time_embedding_dim=48,
        center_input_sample=True,
        add_attention=False,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        attention_head_dim=16,
        norm_num_groups=8,
    ),
}


def save(path, tensors):
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))


def randomize(model, torch):
    """Non-trivial norms (generate.py's rule) and Fourier frequencies of a useful spread."""
    randomize_norms(model, torch)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "time_proj" in name:
                p.normal_(0, 4)


def legacy_names(d, torch):
    """Rewrites a saved UNet2DModel into the 2022 attention names, and checks diffusers loads it
    back to the same weights."""
    from diffusers import UNet2DModel
    from safetensors.torch import load_file, save_file

    f = d / "diffusion_pytorch_model.safetensors"
    modern = load_file(str(f))
    old = {}
    for k, v in modern.items():
        for new, legacy in LEGACY.items():
            k = k.replace(f".{new}.", f".{legacy}.")
        old[k] = v
    assert any(".query." in k for k in old), "no attention to rename"
    save_file(old, str(f))
    config = json.loads((d / "config.json").read_text())
    config = {k: v for k, v in config.items() if k in LEGACY_CONFIG_KEYS}
    config["_diffusers_version"] = "0.1.1"
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    # The rest of the flat folder google/ddpm-ema-celebahq-256 was published as.
    (d / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1", "beta_end": 0.02,
        "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": True,
        "num_train_timesteps": 1000, "trained_betas": None, "variance_type": "fixed_small",
    }, indent=2, sort_keys=True) + "\n")
    (d / "model_index.json").write_text(json.dumps({
        "_class_name": "DDPMPipeline", "_diffusers_version": "0.1.1",
        "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"],
    }, indent=2, sort_keys=True) + "\n")
    back = UNet2DModel.from_pretrained(d).state_dict()
    for k, v in modern.items():
        assert torch.equal(back[k], v), k


def gen_models(out, rng):
    import torch
    from diffusers import UNet2DModel

    for name, spec in MODELS.items():
        torch.manual_seed(int(rng.integers(0, 2**31)))
        unet = UNet2DModel(**spec).eval()
        randomize(unet, torch)
        d = out / "models" / name
        unet.save_pretrained(d, safe_serialization=True)
        sample = torch.from_numpy(rng.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32))
        if spec.get("time_embedding_type") == "fourier":
            timesteps = torch.tensor([0.5, 12.0])
        else:
            timesteps = torch.tensor([37.0, 912.0])
        labels = torch.tensor([3, 0]) if spec.get("num_class_embeds") else None
        with torch.no_grad():
            output = unet(sample, timesteps, class_labels=labels).sample
        tensors = {"sample": sample.numpy(), "timesteps": timesteps.numpy(), "output": output.numpy()}
        if labels is not None:
            tensors["labels"] = labels.numpy()
        save(d / "outputs.safetensors", tensors)
        if name == "unet2d_ddpm":
            legacy_names(d, torch)


class Draws:
    """Standard-normal draws from numpy, recorded in the order the reference takes them."""

    def __init__(self, rng, torch):
        self.rng, self.torch, self.taken = rng, torch, []

    def like(self, shape):
        z = self.rng.standard_normal(tuple(shape)).astype(np.float32)
        self.taken.append(z)
        return self.torch.from_numpy(z.copy())


def image_and_keep(rng):
    image = rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    keep = np.ones((1, 1, 8, 8), np.float32)
    keep[:, :, 2:6, 1:5] = 0
    keep[:, :, 6, 4:] = 0
    return image, keep


GUIDED = {
    # RePaint's face / places settings in small: learned sigma, scale-shift norm, up/down
    # resnets, heads of fixed width; and class conditioning as the ImageNet model has.
    "guided_repaint": dict(
        image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,1", learn_sigma=True,
        class_cond=True, attention_resolutions="16,8", num_heads=4, num_head_channels=16,
        num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True,
        use_fp16=False, use_new_attention_order=False,
    ),
    # The other branches: plain resamplers, added time embedding, head counts, the new order.
    "guided_plain": dict(
        image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,1,1", learn_sigma=False,
        class_cond=False, attention_resolutions="4", num_heads=2, num_head_channels=-1,
        num_heads_upsample=4, use_scale_shift_norm=False, dropout=0.0, resblock_updown=False,
        use_fp16=False, use_new_attention_order=True,
    ),
}


def official_conf(official):
    sys.path.insert(0, str(official))
    from conf_mgt.conf_base import Default_Conf

    conf = Default_Conf()
    conf.update({
        "diffusion_steps": 1000,
        "inpa_inj_sched_prev": True, "inpa_inj_sched_prev_cumnoise": False,
        "schedule_jump_params": {"t_T": 20, "n_sample": 1, "jump_length": 3, "jump_n_sample": 2},
    })
    return conf


def guided_model(out, name, official):
    """The official `create_model` of `GUIDED[name]`, its weights as the conversion script left them."""
    import torch
    from guided_diffusion.script_util import create_model
    from safetensors.torch import load_file

    unet = create_model(**GUIDED[name], conf=official_conf(official)).eval()
    unet.load_state_dict(load_file(str(out / "models" / name / "model.safetensors")))
    return unet


def gen_guided(out, rng, official):
    """Tiny guided-diffusion UNets through the conversion script, with the official model's output."""
    import tempfile

    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    import convert_guided_diffusion as converter

    conf = official_conf(official)
    from guided_diffusion.script_util import create_model

    for name, spec in GUIDED.items():
        torch.manual_seed(int(rng.integers(0, 2**31)))
        unet = create_model(**spec, conf=conf).eval()
        with torch.no_grad():  # zero_module() heads and projections would hide mistakes
            for p in unet.parameters():
                if not p.any():
                    p.normal_(0, 0.05)
            randomize(unet, torch)
        with tempfile.TemporaryDirectory() as tmp:
            pt, yml = pathlib.Path(tmp) / "model.pt", pathlib.Path(tmp) / "conf.yml"
            torch.save(unet.state_dict(), pt)
            yml.write_text("".join(
                f"{k}: {json.dumps(v) if isinstance(v, bool) else repr(v) if isinstance(v, str) else v}\n"
                .replace("True", "true").replace("False", "false")
                for k, v in spec.items()
            ))
            converter.convert(pt, converter.read_conf(yml), out / "models" / name)
        unet = guided_model(out, name, official)
        sample = torch.from_numpy(rng.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32))
        timesteps = torch.tensor([37, 912])
        labels = torch.tensor([3, 999]) if spec["class_cond"] else None
        with torch.no_grad():
            output = unet(sample, timesteps, y=labels)
        tensors = {"sample": sample.numpy(), "timesteps": timesteps.numpy().astype(np.float32), "output": output.numpy()}
        if labels is not None:
            tensors["labels"] = labels.numpy()
        save(out / "models" / name / "outputs.safetensors", tensors)


def gen_diffusers_run(out, rng, tensors):
    import torch
    import diffusers.pipelines.deprecated.repaint.pipeline_repaint as pipe_mod
    import diffusers.schedulers.scheduling_repaint as sched_mod
    from diffusers import RePaintPipeline, RePaintScheduler, UNet2DModel

    draws = Draws(rng, torch)
    fake = lambda shape, generator=None, device=None, dtype=None: draws.like(shape)
    pipe_mod.randn_tensor = fake
    sched_mod.randn_tensor = fake
    unet = UNet2DModel.from_pretrained(out / "models" / "unet2d_ddpm").eval()
    scheduler = RePaintScheduler(num_train_timesteps=100)
    x0s, samples = [], []
    step = scheduler.step

    def recording_step(*args, **kwargs):
        result = step(*args, **kwargs)
        x0s.append(result.pred_original_sample.numpy().copy())
        samples.append(result.prev_sample.numpy().copy())
        return result

    scheduler.step = recording_step
    pipe = RePaintPipeline(unet=unet, scheduler=scheduler)
    image, keep = image_and_keep(rng)
    with torch.no_grad():
        result = pipe(
            torch.from_numpy(image), torch.from_numpy(keep), num_inference_steps=20, eta=0.5,
            jump_length=3, jump_n_sample=2, output_type="np",
        ).images
    # The pipeline returns (x / 2 + 0.5).clamp(0, 1) in NHWC.
    tensors.update({
        "diffusers.image": image, "diffusers.keep": keep,
        "diffusers.draws": np.stack(draws.taken), "diffusers.x0": np.stack(x0s),
        "diffusers.samples": np.stack(samples),
        "diffusers.output": result.transpose(0, 3, 1, 2).astype(np.float32),
        "diffusers.timesteps": scheduler.timesteps.numpy().astype(np.int64),
    })


def gen_official_run(out, rng, tensors, official):
    import torch

    conf = official_conf(official)
    from guided_diffusion import gaussian_diffusion
    from guided_diffusion.script_util import create_gaussian_diffusion

    diffusion = create_gaussian_diffusion(
        steps=1000, learn_sigma=True, noise_schedule="linear", timestep_respacing="20", conf=conf,
    )
    model = guided_model(out, "guided_repaint", official)
    draws = Draws(rng, torch)
    gaussian_diffusion.th.randn_like = lambda x, **kw: draws.like(x.shape)
    image = rng.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    keep = np.ones((1, 1, 16, 16), np.float32)
    keep[:, :, 3:12, 2:9] = 0
    keep[:, :, 13, 8:] = 0
    noise = rng.standard_normal(image.shape).astype(np.float32)
    kwargs = {"gt": torch.from_numpy(image), "gt_keep_mask": torch.from_numpy(keep), "y": torch.tensor([7])}
    x0s, samples, final = [], [], None
    with torch.no_grad():
        for out_step in diffusion.p_sample_loop_progressive(
            model, image.shape, noise=torch.from_numpy(noise), model_kwargs=kwargs, conf=conf,
        ):
            x0s.append(out_step["pred_xstart"].numpy().copy())
            samples.append(out_step["sample"].numpy().copy())
            final = out_step["sample"]
    tensors.update({
        "official.image": image, "official.keep": keep, "official.noise": noise,
        "official.labels": np.array([7], np.int64),
        "official.draws": np.stack(draws.taken), "official.x0": np.stack(x0s),
        "official.samples": np.stack(samples),
        "official.output": final.numpy(),
        "official.timestep_map": np.array(diffusion.timestep_map, np.int64),
    })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", type=pathlib.Path, required=True)
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "fixtures")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    gen_models(args.out, rng)
    gen_guided(args.out, rng, args.official)
    tensors = {}
    gen_diffusers_run(args.out, rng, tensors)
    gen_official_run(args.out, rng, tensors, args.official)
    save(args.out / "sampling" / "repaint_pixel.safetensors", tensors)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
