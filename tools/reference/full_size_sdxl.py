#!/usr/bin/env python3
"""Full-size SDXL-inpainting UNet with random weights, for the benchmark (never committed):
writes the model in the diffusers layout plus inputs (a 128x128 latent, SDXL's 2048-wide context,
pooled text and six time ids) and PyTorch's output, and times PyTorch on this machine the way
benches/benches/sdxl_full.rs times ours: the guided step (batch 2) and the unguided one (batch 1)
in f32, then batch 1 and 2 with the model in bfloat16, each the median of 3, with peak RSS.

    ~/.cache/hd-painter/venv/bin/python tools/reference/full_size_sdxl.py [OUT_DIR] [--half]

OUT_DIR defaults to ~/.cache/hd-painter/full; the benchmark reads HD_PAINTER_FULL_DIR.
"""

import copy
import pathlib
import resource
import sys

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from safetensors.numpy import save_file

from full_size import median_time

# diffusers/stable-diffusion-xl-1.0-inpainting-0.1's unet/config.json, as published.
SDXL_INPAINTING = dict(
    sample_size=128,
    in_channels=9,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    norm_num_groups=32,
    norm_eps=1e-5,
    flip_sin_to_cos=True,
    freq_shift=0,
)


def rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main():
    argv = [a for a in sys.argv[1:] if a != "--half"]
    out = pathlib.Path(argv[0] if argv else pathlib.Path.home() / ".cache/hd-painter/full")
    unet_dir = out / "unet_sdxl_inpainting"
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SDXL_INPAINTING).eval()
    params = sum(p.numel() for p in unet.parameters())
    if not (unet_dir / "diffusion_pytorch_model.safetensors").exists():
        unet.save_pretrained(unet_dir, safe_serialization=True, max_shard_size="100GB")
    rng = np.random.default_rng(0)
    f32 = lambda a: np.asarray(a, dtype=np.float32)
    sample = f32(rng.standard_normal((2, 9, 128, 128)))
    context = f32(rng.standard_normal((2, 77, 2048)))
    text_embeds = f32(rng.standard_normal((2, 1280)))
    time_ids = f32([[1024, 1024, 0, 0, 1024, 1024]] * 2)
    timesteps = f32([999.0, 999.0])
    t = {k: torch.from_numpy(v) for k, v in dict(sample=sample, context=context, text_embeds=text_embeds,
                                                   time_ids=time_ids, timesteps=timesteps).items()}

    def call(model, n, dtype=torch.float32):
        added = {"text_embeds": t["text_embeds"][:n].to(dtype), "time_ids": t["time_ids"][:n].to(dtype)}
        return model(t["sample"][:n].to(dtype), t["timesteps"][:n], encoder_hidden_states=t["context"][:n].to(dtype),
                     added_cond_kwargs=added).sample

    with torch.no_grad():
        output = call(unet, 2).numpy()
        seconds2 = median_time(lambda: call(unet, 2), 3)
        seconds1 = median_time(lambda: call(unet, 1), 3)
    io = dict(sample=sample, context=context, text_embeds=text_embeds, time_ids=time_ids, timesteps=timesteps, output=output)
    save_file(io, str(out / "unet_sdxl_io.safetensors"))
    print(f"torch {torch.__version__} {torch.get_num_threads()} threads: UNet SDXL-inpainting ({params / 1e9:.2f} B parameters) "
          f"128x128 batch 2: {seconds2:.2f} s, batch 1: {seconds1:.2f} s (medians of 3), peak RSS {rss_gib():.2f} GiB")
    if "--half" not in sys.argv[1:]:
        return
    half = copy.deepcopy(unet).to(torch.bfloat16)
    del unet
    scale = np.abs(output[:1]).max()
    with torch.no_grad():
        got = call(half, 1, torch.bfloat16)
        seconds1 = median_time(lambda: call(half, 1, torch.bfloat16), 3)
        seconds2 = median_time(lambda: call(half, 2, torch.bfloat16), 3)
    err = np.abs(got.float().numpy() - output[:1]).max()
    print(f"  bfloat16: batch 2 {seconds2:.2f} s, batch 1 {seconds1:.2f} s (medians of 3), max |diff| to f32 "
          f"{err:.3e} (relative {err / max(scale, 1.0):.3e}), peak RSS {rss_gib():.2f} GiB (the f32 model included)")


if __name__ == "__main__":
    main()
