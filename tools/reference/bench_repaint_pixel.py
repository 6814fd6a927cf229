#!/usr/bin/env python3
"""RePaint as published at full size with random weights, timed in PyTorch (diffusers'
`RePaintPipeline`) the way the README's row times hd-painter's `inpaint --method repaint`:
google/ddpm-ema-celebahq-256's `UNet2DModel` (113.7 M parameters) at 256 x 256, one UNet call,
and a shortened walk (20 steps, jumps of 5 visited twice: 35 UNet calls, 1000 training steps),
batch 1. Writes the model folder (flat, as published) and a 256 x 256 photo and mask for the
hd-painter side (never committed).

    ~/.cache/hd-painter/venv/bin/python tools/reference/bench_repaint_pixel.py [OUT_DIR]
    target/debug/examples/inpaint OUT_DIR/photo.png OUT_DIR/mask.png "" /tmp/out.png \
        --model OUT_DIR/ddpm-celebahq-256 --method repaint --steps 20 --jump-length 5 \
        --jump-n-sample 2 --seed 1

OUT_DIR defaults to ~/.cache/hd-painter/full. Run each side in its own process, one right after
the other, so that the peak RSS is that run's.
"""

import json
import pathlib
import resource
import sys
import time

import numpy as np
import torch
from diffusers import RePaintPipeline, RePaintScheduler, UNet2DModel
from PIL import Image

# google/ddpm-ema-celebahq-256's config.json.
CELEBAHQ = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    attention_head_dim=None, norm_eps=1e-6, norm_num_groups=32, downsample_padding=0,
    flip_sin_to_cos=False, freq_shift=1, mid_block_scale_factor=1, act_fn="silu",
    center_input_sample=False, time_embedding_type="positional",
)


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path.home() / ".cache/hd-painter/full"
    d = out / "ddpm-celebahq-256"
    torch.manual_seed(0)
    torch.set_num_threads(torch.get_num_threads())
    unet = UNet2DModel(**CELEBAHQ).eval()
    if not (d / "config.json").exists():
        unet.save_pretrained(d, safe_serialization=True)
        (d / "scheduler_config.json").write_text(json.dumps({
            "_class_name": "DDPMScheduler", "beta_end": 0.02, "beta_schedule": "linear",
            "beta_start": 0.0001, "clip_sample": True, "num_train_timesteps": 1000,
            "variance_type": "fixed_small",
        }) + "\n")
    unet = UNet2DModel.from_pretrained(d).eval()
    params = sum(p.numel() for p in unet.parameters())
    rng = np.random.default_rng(0)
    photo = (rng.uniform(0, 255, (256, 256, 3))).astype(np.uint8)
    Image.fromarray(photo).save(out / "photo.png")
    hole = np.zeros((256, 256), np.uint8)
    hole[64:192, 48:160] = 255
    Image.fromarray(hole).save(out / "mask.png")
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        unet(x, 500)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            unet(x, 500)
            times.append(time.perf_counter() - t0)
    image = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 127.5 - 1
    keep = torch.from_numpy(255 - hole)[None, None].float() / 255
    pipe = RePaintPipeline(unet=unet, scheduler=RePaintScheduler())
    pipe.set_progress_bar_config(disable=True)
    t0 = time.perf_counter()
    pipe(image, keep, num_inference_steps=20, jump_length=5, jump_n_sample=2,
         generator=torch.Generator().manual_seed(1), output_type="np")
    run = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"UNet2DModel {params / 1e6:.1f} M parameters, {torch.get_num_threads()} threads")
    print(f"one UNet call at 256x256: median {sorted(times)[1]:.3f} s")
    print(f"RePaintPipeline, 20 steps, jumps of 5 x 2 (35 UNet calls): {run:.1f} s, peak RSS {rss:.2f} GiB")


if __name__ == "__main__":
    main()
