#!/usr/bin/env python3
"""A whole 512 px Stable Inpainting run on the full-size random-weight SD2-inpainting pipeline
(tools/reference/full_size.py and full_size_pipelines.py) with diffusers'
StableDiffusionInpaintPipeline: DDIM 50 steps (the folder's scheduler) and DPM++ 2M Karras 20
steps (`DPMSolverMultistepScheduler.from_config(..., use_karras_sigmas=True)`), CFG 7.5, the
prompt encoded by the folder's text encoder. Loading, encoding, sampling and decoding are timed
together, as the example's summary line times them. Writes the photo and mask it uses to
/tmp/photo512.png and /tmp/mask512.png, for the side-by-side run of

    cargo run --release --example inpaint -- /tmp/photo512.png /tmp/mask512.png "a red sofa" out.png \\
        --model ~/.cache/hd-painter/full/pipeline_sd2_inpainting --method stable --seed 1 --steps 50
    cargo run --release --example inpaint -- /tmp/photo512.png /tmp/mask512.png "a red sofa" out.png \\
        --model ~/.cache/hd-painter/full/pipeline_sd2_inpainting --method stable --seed 1 --steps 20 \\
        --scheduler dpm++2m --karras

    ~/.cache/hd-painter/venv/bin/python tools/reference/bench_scheduler_run.py [ddim|dpm|both] [FULL_DIR]
"""

import pathlib
import resource
import sys
import time

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionInpaintPipeline
from PIL import Image, ImageDraw


def inputs():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))
    mask = Image.new("L", (512, 512), 0)
    ImageDraw.Draw(mask).ellipse([150, 180, 380, 400], fill=255)
    photo.save("/tmp/photo512.png")
    mask.save("/tmp/mask512.png")
    return photo, mask


def run(full, which):
    photo, mask = inputs()
    start = time.perf_counter()
    pipe = StableDiffusionInpaintPipeline.from_pretrained(full / "pipeline_sd2_inpainting", safety_checker=None)
    # The full-size folder's tokenizer config leaves the length to CLIP's 77 (as we read it).
    pipe.tokenizer.model_max_length = 77
    steps = 50
    if which == "dpm":
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
        steps = 20
    with torch.no_grad():
        pipe("a red sofa", image=photo, mask_image=mask, height=512, width=512, num_inference_steps=steps,
             guidance_scale=7.5, generator=torch.Generator().manual_seed(1))
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    name = {"ddim": "DDIM 50 steps", "dpm": "DPM++ 2M Karras 20 steps"}[which]
    print(f"torch {torch.__version__} {torch.get_num_threads()} threads: Stable Inpainting 512 px, {name}, "
          f"load + encode + sample + decode: {seconds:.0f} s, peak RSS {rss:.2f} GiB", flush=True)


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "both"
    full = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else pathlib.Path.home() / ".cache/hd-painter/full")
    for w in (["ddim", "dpm"] if which == "both" else [which]):
        run(full, w)


if __name__ == "__main__":
    main()
