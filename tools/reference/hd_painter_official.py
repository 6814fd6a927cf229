"""Goldens from the official HD-Painter code itself (Picsart-AI-Research/HD-Painter), run on CPU
with tiny random-weight models in its own LDM-layout modules.

Get the official code (never committed to this repository):

    git clone https://github.com/Picsart-AI-Research/HD-Painter /tmp/hd-painter-official
    git -C /tmp/hd-painter-official checkout d452186b59dccb755267fce51203daf459197e2c

and run, with the reference venv (tools/reference/setup.sh):

    ~/.cache/hd-painter/venv/bin/python tools/reference/hd_painter_official.py \
        --official /tmp/hd-painter-official [--out fixtures] [--check]

What it writes:
- `models/hd_painter_official/`: the tiny UNet and VAE in the original single-file layout
  (`model.diffusion_model.*`, `first_stage_model.*`, as `512-inpainting-ema.safetensors` holds
  them) and the diffusers configs of the same architectures (`unet/config.json`,
  `vae/config.json`), which our single-file loader reads.
- `sampling/hd_painter_official.safetensors`: the official `hd_inpaint.py` flow on a 192 x 118
  photo and a colour mask (blue hole, red patch) at first-stage long side 192: `src.utils.resize`, then
  `src.methods.sd.run` / `src.methods.rasg.run` for the four variants (baseline with 7 steps,
  i.e. the official grid's 8, the others with 5), and the crop back to the resized size. Per
  variant: the starting noise, the latents, x0 and RASG's normalised gradient after every step,
  PAIntA's scale `s` of every layer at t = 999, and the 8-bit output. Shared: the text context
  the stub encoder returned, the token indices, the resized image and mask, the prepared hole
  and the UNet condition.
- `models/hd_painter_official/x4.safetensors` (+ `x4_unet/`, `x4_vae/` configs) and
  `sr/sr_official.safetensors`: the official `src/methods/sr.run` (the inpainting-specialised SR
  with its x0 blend and Poisson blend, 10 steps) on a 320 x 200 photo, a soft grey mask and a
  64 x 40 first-stage result: the noise it drew (latents and the low-res noise), the noised
  low-res condition, the blurred latent mask, the original's latents, the latents and blended
  x0 after every step, the 8-bit result before and after the Poisson blend.
- `core/hd_painter_masks.safetensors`: the official mask preparation
  (`IImage(resize(mask, L)).dilate(1).alpha().padx(64)`) of soft, coloured, edge-touching and
  one-pixel masks, `IImage(resize(image, L)).padx(64)`, and both long-side formulas over every
  size from 1x1 to 4096x4096 (`size_sweep`).

Stubs, installed before the official modules are imported (the code needs a GPU, xformers and
Lightning otherwise):
- `xformers.ops.memory_efficient_attention`: plain softmax attention, scale `1/sqrt(d)`.
- `pytorch_lightning`: `seed_everything(s)` is `torch.manual_seed(s)`, `LightningModule` is
  `torch.nn.Module`.
- `segment_anything`: names only (only the SAM mask refinement, not run, uses it).
- `IImage.resize(2048)` inside `src/methods/sr.py` resizes to `SR_LONG_SIDE` (256): the SR
  stage's hard-coded long side, scaled down for the tiny models.
- `.cuda()` on tensors, modules and `IImage` returns the object itself, on the CPU.
- The text encoder: an object whose `encode([negative, prompt])` returns fixed random
  embeddings (written to the golden, so the Rust side gets the same). The official `tokenize`
  runs for real, on open_clip's vocabulary.
- The per-step values are read without touching the official loop: `share.DDIMIterator`'s
  `__next__` reads the locals of the `run` frame that iterates it (`zt`, `z0`, `grad` of the step
  just finished), and a trace on `painta_rescale` reads its `cross_sim` (the paper's `s`) when it
  returns.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile
import types

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMMIT = "d452186b59dccb755267fce51203daf459197e2c"
SEED = 20231222
PROMPT = "a red leather sofa"
CONTEXT_DIM = 32
LONG_SIDE = 192
UNET = dict(image_size=16, in_channels=9, out_channels=4, model_channels=32, attention_resolutions=[4, 2, 1],
            num_res_blocks=2, channel_mult=[1, 1, 1, 1], num_heads=8, use_spatial_transformer=True,
            transformer_depth=1, context_dim=CONTEXT_DIM, use_checkpoint=False, legacy=False)
VAE_DD = dict(double_z=True, z_channels=4, resolution=128, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 1, 1, 1],
              num_res_blocks=1, attn_resolutions=[], dropout=0.0)
UNET_DIFFUSERS = {
    "_class_name": "UNet2DConditionModel", "sample_size": 16, "in_channels": 9, "out_channels": 4,
    "block_out_channels": [32, 32, 32, 32],
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "layers_per_block": 2, "attention_head_dim": 8, "cross_attention_dim": CONTEXT_DIM,
    "norm_num_groups": 32, "norm_eps": 1e-5, "use_linear_projection": False,
}
VAE_DIFFUSERS = {
    "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "block_out_channels": [32, 32, 32, 32], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 1, "norm_num_groups": 32,
    "scaling_factor": 0.18215, "sample_size": 128,
}
SR_UNET = dict(use_checkpoint=False, num_classes=1000, image_size=16, in_channels=7, out_channels=4, model_channels=32,
               attention_resolutions=[2, 4], num_res_blocks=2, channel_mult=[1, 1, 1],
               disable_self_attentions=[True, True, False], disable_middle_self_attn=False, num_heads=8,
               use_spatial_transformer=True, transformer_depth=1, context_dim=CONTEXT_DIM, legacy=False,
               use_linear_in_transformer=True)
SR_VAE_DD = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 1, 1],
                 num_res_blocks=1, attn_resolutions=[], dropout=0.0)
SR_UNET_DIFFUSERS = {
    "_class_name": "UNet2DConditionModel", "sample_size": 16, "in_channels": 7, "out_channels": 4,
    "block_out_channels": [32, 32, 32], "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 2,
    "up_block_types": ["CrossAttnUpBlock2D"] * 2 + ["UpBlock2D"], "layers_per_block": 2,
    "attention_head_dim": 8, "cross_attention_dim": CONTEXT_DIM, "norm_num_groups": 32, "norm_eps": 1e-5,
    "use_linear_projection": True, "only_cross_attention": [True, True, False], "num_class_embeds": 1000,
}
SR_VAE_DIFFUSERS = {
    "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "block_out_channels": [32, 32, 32], "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3, "layers_per_block": 1, "norm_num_groups": 32,
    "scaling_factor": 0.08333, "sample_size": 256,
}
# The SR stage's hard-coded 2048 px long side, scaled down for the tiny models (a stub of the
# official `IImage.resize(2048)` calls in `src/methods/sr.py`); its first stage is a quarter.
SR_LONG_SIDE = 256
# 10 steps (`dt` 100) instead of the official 20: on random weights each step doubles the f32
# rounding differences between two implementations, and 20 steps take them past 1e-3.
SR_DT = 100
# (method, steps, RASG eta): the baseline's 7 steps run the official grid's 8 (999 - 142 k > 0).
VARIANTS = {"baseline": ("baseline", 7, 0.0), "painta": ("painta", 5, 0.0), "rasg": ("rasg", 5, 0.1),
            "painta_rasg": ("painta+rasg", 5, 1.0)}


def install_stubs(torch):
    def attention(q, k, v, attn_bias=None, op=None, scale=None):
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        if q.dim() == 4:  # [B, M, H, K]
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
            return (torch.softmax(q @ k.transpose(-1, -2) * scale, -1) @ v).transpose(1, 2)
        return torch.softmax(q @ k.transpose(-1, -2) * scale, -1) @ v

    xformers = types.ModuleType("xformers")
    xformers.ops = types.ModuleType("xformers.ops")
    xformers.ops.memory_efficient_attention = attention
    lightning = types.ModuleType("pytorch_lightning")
    lightning.seed_everything = lambda seed, *a, **k: torch.manual_seed(seed)
    lightning.LightningModule = torch.nn.Module
    sam = types.ModuleType("segment_anything")  # names only: the SAM refinement is never run
    sam.sam_model_registry, sam.SamPredictor = {}, None
    sys.modules.update({"xformers": xformers, "xformers.ops": xformers.ops, "pytorch_lightning": lightning,
                        "segment_anything": sam})
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self


class FixedEncoder:
    """`encode([negative, prompt])` -> the fixed embeddings [negative; positive]."""

    def __init__(self, context):
        self.context = context

    def encode(self, prompts):
        assert len(prompts) == 2, prompts
        return self.context.clone()


def randomize(model, torch, gen):
    """Every parameter random (the official init zeroes the output convolutions), norms near 1,
    each value an f16 one."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.4 - 0.2)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in**0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
        for p in model.parameters():  # f16 values, stored as f16 (half the file), computed in f32
            p.copy_(p.half().float())


class Recorder:
    """Reads the official loop's locals as `share.DDIMIterator` advances."""

    def __init__(self, share, painta):
        self.reset()
        recorder, next_step = self, share.DDIMIterator.__next__

        def traced_next(it):
            loc = sys._getframe(1).f_locals
            if share.timestep_index == 0:
                recorder.start = {k: loc[k].detach().clone() for k in ("zt", "unet_condition", "context")}
                recorder.start["token_idx"] = list(loc["token_idx"])
            else:
                recorder.latents.append(loc["zt"].detach().clone())
                recorder.x0.append(loc["z0"].detach().clone())
                if "grad" in loc:
                    recorder.grads.append(loc["grad"].detach().clone())
            return next_step(it)

        share.DDIMIterator.__next__ = traced_next
        rescale = painta.painta_rescale

        def traced_rescale(*args):
            seen = {}

            def local(frame, event, arg):
                if event == "return":
                    seen.update(frame.f_locals)
                return local

            def tracer(frame, event, arg):
                return local if frame.f_code is rescale.__code__ else None

            old = sys.gettrace()
            sys.settrace(tracer)
            try:
                out = rescale(*args)
            finally:
                sys.settrace(old)
            if painta.painta_on and seen["res"] in painta.painta_res:
                recorder.scales.append((share.timestep, seen["cross_sim"].detach().clone()))
            return out

        painta.painta_rescale = traced_rescale

    def reset(self):
        self.start, self.latents, self.x0, self.grads, self.scales = None, [], [], [], []


def synthetic_rgb(rng, height, width):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    chans = [128 + 100 * np.sin(xx / (3.0 + c) + c) * np.cos(yy / (4.0 + 2 * c)) + rng.normal(0, 15, (height, width))
             for c in range(3)]
    return np.clip(np.rint(np.stack(chans, -1)), 0, 255).astype(np.uint8)


def masks(height, width):
    """RGB masks: soft grey ellipse, a colour one (blue hole, a green-only and a red-only patch,
    soft edges), one touching the right and bottom borders, and a single pixel."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.sqrt(((xx - 0.4 * width) / (0.25 * width)) ** 2 + ((yy - 0.5 * height) / (0.3 * height)) ** 2)
    soft = np.rint(np.clip((1.0 - r) * 4.0, 0, 1) * 255).astype(np.uint8)
    grey = np.repeat(soft[..., None], 3, -1)
    colour = np.zeros((height, width, 3), np.uint8)
    colour[..., 2] = soft
    colour[height // 8: height // 8 + 9, width // 10: width // 10 + 13, 1] = 200  # green only
    colour[-height // 4:-height // 4 + 7, width // 2: width // 2 + 11, 0] = 255  # red only
    colour[height // 2, :, 1] = 90  # a faint green line across
    edge = np.zeros((height, width, 3), np.uint8)
    edge[height // 3:, (2 * width) // 3:] = 255
    edge[height // 5: height // 5 + 3, width // 2:] = 255
    pixel = np.zeros((height, width, 3), np.uint8)
    pixel[height // 2, width // 3] = 255
    return {"soft": grey, "colour": colour, "edge": edge, "pixel": pixel}


def cli_prompts(official):
    """`hd_inpaint.py`'s negative and positive prompts, read from the file (importing it would
    load SAM and the SR model)."""
    import ast

    values = {}
    for node in ast.parse((official / "hd_inpaint.py").read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            values[node.targets[0].id] = node.value.value
    return values["negative_prompt"], values["positive_prompt"]


def size_sweep(resize, IImage, Image, rng):
    """Both official long-side formulas for every size from 1x1 to 4096x4096, vectorised in f64
    exactly as Python evaluates them (checked against the official functions on a sample): per
    long side and rule a checksum over all sizes, and every size where the two rules differ."""
    n = np.arange(1, 4097, dtype=np.float64)
    w, h = np.meshgrid(n, n, indexing="ij")
    t = {}
    for long_side in (512, 2048):
        lf = float(long_side)
        a = w / h
        script = (np.minimum(long_side, (lf * a).astype(np.int64)), np.minimum(long_side, (lf / a).astype(np.int64)))
        a = h / w
        demo = (np.minimum(long_side, (lf / a).astype(np.int64)), np.minimum(long_side, (lf * a).astype(np.int64)))
        for _ in range(300):
            i, j = rng.integers(0, 4096, 2)
            tiny = Image.new("RGB", (int(w[i, j]), int(h[i, j])))
            if min(script[0][i, j], script[1][i, j]) > 0:
                assert resize(tiny, long_side).size == (script[0][i, j], script[1][i, j])
            if min(demo[0][i, j], demo[1][i, j]) > 0:
                assert IImage(tiny).resize(long_side).size == (demo[0][i, j], demo[1][i, j])
        for name, (nw, nh) in (("script", script), ("demo", demo)):
            # 0 is where the official code fails; ours gives 1 there.
            nw, nh = np.maximum(nw, 1).astype(np.uint64), np.maximum(nh, 1).astype(np.uint64)
            key = w.astype(np.uint64) * np.uint64(4097) + h.astype(np.uint64)
            with np.errstate(over="ignore"):
                t[f"checksum_{name}_{long_side}"] = np.array([np.sum((nw * np.uint64(4099) + nh) * key)], dtype=np.uint64)
        differ = (script[0] != demo[0]) | (script[1] != demo[1])
        t[f"differ_{long_side}"] = np.stack([w[differ], h[differ], script[0][differ], script[1][differ],
                                             demo[0][differ], demo[1][differ]], -1).astype(np.int64)
    return t


def official_commit(path):
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", type=pathlib.Path, required=True, help="checkout of Picsart-AI-Research/HD-Painter")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "fixtures")
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare with --out")
    args = ap.parse_args()
    commit = official_commit(args.official)
    if commit not in (None, COMMIT):
        sys.exit(f"{args.official} is at {commit}; the goldens are pinned to {COMMIT}")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(args.official, pathlib.Path(tmp))
            sys.exit(compare(pathlib.Path(tmp), args.out))
    generate(args.official, args.out)


def compare(fresh, committed):
    from safetensors.numpy import load_file

    bad = 0
    for path in sorted(fresh.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(fresh)
        other = committed / rel
        if path.suffix == ".safetensors":
            a, b = load_file(str(path)), load_file(str(other))
            diff = [k for k in a if k not in b or a[k].shape != b[k].shape or not np.allclose(a[k], b[k], atol=1e-6, rtol=0, equal_nan=True)]
            if diff or a.keys() != b.keys():
                print(f"{rel}: differs in {diff or sorted(set(a) ^ set(b))}")
                bad += 1
        elif path.read_bytes() != other.read_bytes():
            print(f"{rel}: differs")
            bad += 1
    print("fixtures match" if not bad else f"{bad} files differ")
    return 1 if bad else 0


def tiny_models(out, gen, name, unet_spec, vae_spec):
    """A random UNet and VAE in the official modules, saved in the original single-file layout
    (`models/hd_painter_official/{name}.safetensors`) with the diffusers configs of the same
    architectures (`unet/`, `vae/`; `x4_unet/`, `x4_vae/` for the x4)."""
    import json

    import torch
    from safetensors.torch import save_file

    from src.smplfusion.models.unet import UNetModel
    from src.smplfusion.models.vae import AutoencoderKL

    (unet_kwargs, unet_config), (ddconfig, vae_config) = unet_spec, vae_spec
    unet = UNetModel(**unet_kwargs).eval()
    vae = AutoencoderKL(ddconfig=ddconfig, lossconfig={"target": "torch.nn.Identity"}, embed_dim=4).eval()
    for model in (unet, vae):
        randomize(model, torch, gen)
        model.requires_grad_(False)
    models = out / "models" / "hd_painter_official"
    prefix = "x4_" if name == "x4" else ""
    for sub, config in ((f"{prefix}unet", unet_config), (f"{prefix}vae", vae_config)):
        (models / sub).mkdir(parents=True, exist_ok=True)
        (models / sub / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    state.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(models / f"{name}.safetensors"))
    return unet, vae


def trace_frame(code, on_line, on_return):
    """Runs with a trace on frames of `code`: `on_line(frame)` at every line event, `on_return(frame)`
    when it returns. Returns the function that installs it around a call."""

    def local(frame, event, arg):
        if event == "line":
            on_line(frame)
        elif event == "return":
            on_return(frame)
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code is code else None

    def call(fn, *args, **kwargs):
        old = sys.gettrace()
        sys.settrace(tracer)
        try:
            return fn(*args, **kwargs)
        finally:
            sys.settrace(old)

    return call


def generate_sr(official, out, rng, gen):
    import inspect

    import torch
    from omegaconf import OmegaConf
    from PIL import Image
    from safetensors.torch import save_file

    from src.methods import sr
    from src.models.sd2_sr import ImageConcatWithNoiseAugmentation, disabled_train
    from src.smplfusion import DDIM
    from src.utils import resize
    from src.utils.iimage import IImage

    unet, vae = tiny_models(out, gen, "x4", (SR_UNET, SR_UNET_DIFFUSERS), (SR_VAE_DD, SR_VAE_DIFFUSERS))

    context = torch.from_numpy(rng.standard_normal((2, 77, CONTEXT_DIM)).astype(np.float32))
    ddim = DDIM(OmegaConf.load(official / "config" / "ddpm" / "v2-upsample.yaml"), vae, FixedEncoder(context), unet)
    # As src/models/sd2_sr.load_model builds it.
    low_scale = ImageConcatWithNoiseAugmentation(
        noise_schedule_config={"linear_start": 0.0001, "linear_end": 0.02}, max_noise_level=350).eval()
    low_scale.train = disabled_train
    ddim.low_scale_model = low_scale
    rec = {"latents": [], "x0": []}
    q_sample = low_scale.q_sample

    def traced_q_sample(x_start, t, noise=None):
        noise = torch.randn_like(x_start) if noise is None else noise  # as `default(noise, randn_like)`
        rec["lr_noise"] = noise.clone()
        return q_sample(x_start, t, noise)

    low_scale.q_sample = traced_q_sample
    lines, first = inspect.getsourcelines(sr.run)
    line_of = lambda text: first + next(i for i, l in enumerate(lines) if text in l)
    loop, blend = line_of("for index,t in enumerate"), line_of("if blend_output:")

    def on_line(frame):
        loc = frame.f_locals
        if frame.f_lineno == loop:
            if "z0" not in loc:
                for k in ("zt", "unet_condition", "lr_mask", "hr_z0"):
                    rec[k] = loc[k].detach().clone()
            else:
                rec["latents"].append(loc["zt"].detach().clone())
                rec["x0"].append(loc["z0"].detach().clone())
        elif frame.f_lineno == blend:
            rec["generated"] = np.array(loc["hr_result"])

    traced = trace_frame(sr.run.__code__, on_line, lambda frame: None)
    resize_iimage = IImage.resize
    IImage.resize = lambda self, size, *a, **k: resize_iimage(self, SR_LONG_SIDE if size == 2048 else size, *a, **k)
    try:
        photo = Image.fromarray(synthetic_rgb(rng, 200, 320))
        mask = Image.fromarray(masks(200, 320)["soft"])
        first_stage = resize(photo, SR_LONG_SIDE // 4)
        arr = np.asarray(first_stage).astype(np.int16)
        arr = np.clip(arr + rng.integers(-60, 60, arr.shape), 0, 255).astype(np.uint8)  # "inpainted"
        first_stage = Image.fromarray(arr)
        result = traced(sr.run, ddim, None, first_stage, photo, mask, prompt="a red leather sofa, high resolution professional photo",
                        noise_level=20, blend_trick=True, blend_output=True, dt=SR_DT, negative_prompt="", seed=1,
                        use_sam_mask=False)
    finally:
        IImage.resize = resize_iimage
    t = {"photo": np.asarray(photo), "mask": np.asarray(mask), "first_stage": np.asarray(first_stage),
         "context": context.numpy(), "noise": rec["zt"].numpy(), "lr_noise": rec["lr_noise"].numpy(),
         "condition": rec["unet_condition"].numpy(), "lr_mask": rec["lr_mask"].numpy(), "hr_z0": rec["hr_z0"].numpy(),
         "latents": torch.stack(rec["latents"]).numpy(), "x0": torch.stack(rec["x0"]).numpy(),
         "generated": rec["generated"], "result": np.asarray(result)}
    (out / "sr").mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items()}, str(out / "sr" / "sr_official.safetensors"))


def generate(official, out):

    import torch
    from PIL import Image
    from safetensors.torch import save_file

    torch.set_num_threads(2)
    install_stubs(torch)
    sys.path.insert(0, str(official))
    from omegaconf import OmegaConf

    from src.methods import rasg, sd
    from src.smplfusion import DDIM, scheduler, share
    from src.smplfusion.patches.attentionpatch import painta
    from src.utils import resize
    from src.utils.iimage import IImage

    IImage.cuda = lambda self: self
    negative, positive = cli_prompts(official)
    rng = np.random.default_rng(SEED)
    gen = torch.Generator().manual_seed(SEED)

    # The tiny models, in the official modules, saved in the original single-file layout.
    unet, vae = tiny_models(out, gen, "inpainting", (UNET, UNET_DIFFUSERS), (VAE_DD, VAE_DIFFUSERS))

    context = torch.from_numpy(rng.standard_normal((2, 77, CONTEXT_DIM)).astype(np.float32))
    config = OmegaConf.load(official / "config" / "ddpm" / "v1.yaml")
    ddim = DDIM(config, vae, FixedEncoder(context), unet)
    share.schedule = scheduler.linear(config.timesteps, config.linear_start, config.linear_end)
    recorder = Recorder(share, painta)

    # hd_inpaint.py: RGB image and mask, `resize(., 512)` (here LONG_SIDE), one run per variant.
    photo = Image.fromarray(synthetic_rgb(rng, 118, 192))
    # A colour mask (blue hole, a red-only patch) without the green the official 4-D dilation
    # ORs into the blue channel, which a one-channel mask cannot carry (the masks golden has it).
    colour = masks(118, 192)["colour"]
    colour[..., 1] = 0
    mask = Image.fromarray(colour).convert("RGB")
    small_photo, small_mask = resize(photo, LONG_SIDE), resize(mask, LONG_SIDE)
    t = {"photo": np.asarray(photo), "mask": np.asarray(mask), "stage_photo": np.asarray(small_photo),
         "stage_mask": np.asarray(small_mask),
         "hole": IImage(small_mask).dilate(1).alpha().padx(64).data[0, ..., 0],
         "context": context.numpy()}
    for name, (method, steps, eta) in VARIANTS.items():
        recorder.reset()
        runner = rasg if "rasg" in method else sd
        result = runner.run(ddim=ddim, method=method, prompt=PROMPT, image=IImage(small_photo), mask=IImage(small_mask),
                            seed=1, eta=eta, negative_prompt=negative, positive_prompt=positive, num_steps=steps,
                            guidance_scale=7.5).pil()
        w, h = small_photo.size
        t[f"{name}_image"] = np.asarray(result)[:h, :w]
        t[f"{name}_noise"] = recorder.start["zt"].numpy()
        t[f"{name}_latents"] = torch.stack(recorder.latents).numpy()
        t[f"{name}_x0"] = torch.stack(recorder.x0).numpy()
        if recorder.grads:
            t[f"{name}_grads"] = torch.stack(recorder.grads).numpy()
        first = [s for ts, s in recorder.scales if ts == 999][::2]  # the cond call of each pair
        if first:
            t[f"{name}_scales"] = torch.cat([s.reshape(-1) for s in first]).numpy()
            t[f"{name}_scale_sizes"] = np.array([s.numel() for s in first], dtype=np.int64)
        t["condition"] = recorder.start["unet_condition"].numpy()
        t["tokens"] = np.array(recorder.start["token_idx"], dtype=np.int64)
        assert torch.equal(recorder.start["context"], context)
    (out / "sampling").mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items()},
              str(out / "sampling" / "hd_painter_official.safetensors"))

    # The official mask and image preparation on its own, at two stage sizes.
    m = {}
    photo = Image.fromarray(synthetic_rgb(rng, 93, 128))
    m["image_192"] = IImage(resize(photo, 192)).padx(64).data[0]
    for long_side in (192, 512):
        for name, arr in masks(93, 128).items():
            small = resize(Image.fromarray(arr), long_side)
            m[f"{name}_{long_side}"] = IImage(small).dilate(1).alpha().padx(64).data[0, ..., 0]
    for name, arr in masks(93, 128).items():
        m[f"{name}_source"] = arr
    m["photo"] = np.asarray(photo)
    m.update(size_sweep(resize, IImage, Image, rng))
    generate_sr(official, out, rng, gen)
    (out / "core").mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in m.items()},
              str(out / "core" / "hd_painter_masks.safetensors"))


if __name__ == "__main__":
    main()
