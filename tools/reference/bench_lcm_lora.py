#!/usr/bin/env python3
"""LCM-LoRA's 4-step preset on the full-size random-weight SD2-inpainting pipeline
(tools/reference/full_size_pipelines.py). Writes, once, a random kohya-format LoRA of rank 64
over every linear and convolution layer of the UNet (the published LCM-LoRA's layout and rank)
to FULL_DIR/lcm_lora_sd2_inpainting.safetensors, then times diffusers'
StableDiffusionInpaintPipeline with it fused and `LCMScheduler`, 4 steps, guidance 1, on the
photo and mask bench_scheduler_run.py writes. Loading, fusing, encoding, sampling and decoding
are timed together, as the example's summary line times them. The side-by-side runs of ours:

    cargo run --release --example inpaint -- /tmp/photo512.png /tmp/mask512.png "a red sofa" out.png \\
        --model ~/.cache/hd-painter/full/pipeline_sd2_inpainting --method stable --seed 1 \\
        --lora ~/.cache/hd-painter/full/lcm_lora_sd2_inpainting.safetensors --lcm
    cargo run --release --example inpaint -- /tmp/photo512.png /tmp/mask512.png "a red sofa" out.png \\
        --model ~/.cache/hd-painter/full/pipeline_sd2_inpainting --method stable --seed 1 --steps 50

    ~/.cache/hd-painter/venv/bin/python tools/reference/bench_lcm_lora.py [FULL_DIR]
"""

import pathlib
import resource
import sys
import time

import numpy as np
import torch
from diffusers import LCMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
from safetensors.torch import save_file

from bench_scheduler_run import inputs

RANK = 64


def write_lora(full, path):
    """Random rank-64 factors (alpha 64, scale 1 at fuse) for every UNet linear and convolution."""
    unet = UNet2DConditionModel.from_pretrained(full / "pipeline_sd2_inpainting" / "unet")
    rng = np.random.default_rng(0)
    t = {}
    for name, module in unet.named_modules():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        w = module.weight
        down_shape = (RANK, *w.shape[1:]) if w.ndim == 4 else (RANK, w.shape[1])
        up_shape = (w.shape[0], RANK, 1, 1) if w.ndim == 4 else (w.shape[0], RANK)
        key = "lora_unet_" + name.replace(".", "_")
        t[f"{key}.lora_down.weight"] = torch.from_numpy((rng.standard_normal(down_shape) * 1e-3).astype(np.float16))
        t[f"{key}.lora_up.weight"] = torch.from_numpy((rng.standard_normal(up_shape) * 1e-3).astype(np.float16))
        t[f"{key}.alpha"] = torch.tensor(float(RANK), dtype=torch.float16)
    save_file(t, str(path))


def main():
    full = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path.home() / ".cache/hd-painter/full")
    lora = full / "lcm_lora_sd2_inpainting.safetensors"
    if not lora.exists():
        write_lora(full, lora)
    photo, mask = inputs()
    start = time.perf_counter()
    pipe = StableDiffusionInpaintPipeline.from_pretrained(full / "pipeline_sd2_inpainting", safety_checker=None)
    pipe.tokenizer.model_max_length = 77
    pipe.load_lora_weights(str(lora))
    pipe.fuse_lora()
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        pipe("a red sofa", image=photo, mask_image=mask, height=512, width=512, num_inference_steps=4,
             guidance_scale=1.0, generator=torch.Generator().manual_seed(1))
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"torch {torch.__version__} {torch.get_num_threads()} threads: Stable Inpainting 512 px, LCM-LoRA "
          f"4 steps, guidance 1, load + fuse + encode + sample + decode: {seconds:.0f} s, peak RSS {rss:.2f} GiB",
          flush=True)


if __name__ == "__main__":
    main()
