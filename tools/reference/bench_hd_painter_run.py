#!/usr/bin/env python3
"""A whole 512 px HD-Painter run (PAIntA + RASG, 50 steps, CFG 7.5) on the full-size random-weight
SD2-inpainting UNet and SD2 VAE (tools/reference/full_size.py and full_size_models.py), with
tools/reference/hd_painter_ref.py's processors: VAE encode of the masked image, the 50 steps,
VAE decode of the last x0. Prints the wall time and the peak RSS, for comparison with

    cargo run --release --example inpaint -- /tmp/photo512.png /tmp/mask512.png "a red sofa" out.png \
        --model ~/.cache/hd-painter/full/pipeline_sd2_inpainting --seed 1

(the pipeline folder links the same weights). The text embeddings are random here (the text
encoder is a few hundred milliseconds of either run).

    ~/.cache/hd-painter/venv/bin/python tools/reference/bench_hd_painter_run.py [FULL_DIR]
"""

import pathlib
import resource
import sys
import time

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image, ImageDraw

import hd_painter_ref as ref


def main():
    full = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path.home() / ".cache/hd-painter/full")
    start = time.perf_counter()
    unet = UNet2DConditionModel.from_pretrained(full / "unet_sd2_inpainting").eval()
    vae = AutoencoderKL.from_pretrained(full / "vae_sd2").eval()
    unet.requires_grad_(False)
    vae.requires_grad_(False)
    rng = np.random.default_rng(0)
    hole = Image.new("L", (512, 512), 0)
    ImageDraw.Draw(hole).ellipse([150, 180, 380, 400], fill=255)
    image = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 512, 512)).astype(np.float32))
    m = torch.from_numpy(np.asarray(hole, dtype=np.float32) / 255)[None, None]
    tokens = [1, 2, 3, 16]
    state = ref.State((64, 64), hole, tokens, guided=True)
    state.painta = True
    ref.install(unet, state)
    context = torch.from_numpy(rng.standard_normal((2, 77, 1024)).astype(np.float32))
    latents = torch.from_numpy(rng.standard_normal((1, 4, 64, 64)).astype(np.float32))
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    with torch.no_grad():
        masked = vae.encode(image * (m < 0.5)).latent_dist.mean * vae.config.scaling_factor
        latent_mask = torch.nn.functional.interpolate(m, size=(64, 64))
    _, x0s, _, _ = ref.sample(unet, betas, latents, torch.cat([latent_mask, masked], 1), context, state,
                              steps=50, guidance=7.5, rasg=(0.1, "official"))
    with torch.no_grad():
        vae.decode(x0s[-1] / vae.config.scaling_factor)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"torch {torch.__version__} {torch.get_num_threads()} threads: HD-Painter 512 px, 50 steps PAIntA + RASG, "
          f"load + encode + sample + decode: {seconds:.0f} s, peak RSS {rss:.2f} GiB")


if __name__ == "__main__":
    main()
