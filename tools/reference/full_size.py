#!/usr/bin/env python3
"""Full-size SD2-inpainting UNet with random weights, for the benchmark (never committed):
writes the model in the diffusers layout plus inputs and PyTorch's output, and times PyTorch
fp32 on this machine the way benches/benches/unet_full.rs times ours.

    ~/.cache/hd-painter/venv/bin/python tools/reference/full_size.py [OUT_DIR] [--half] [--f16]

OUT_DIR defaults to ~/.cache/hd-painter/full; the benchmark reads HD_PAINTER_FULL_DIR. With
--half it also times batch 1 with the model in bfloat16 (median of 3 after a first call), with
--f16 in float16 (one run: on this CPU PyTorch's float16 step did not finish in 10 minutes), and
prints their distance to the f32 output, as the benchmark does for its reduced-precision paths;
bfloat16 is also timed at batch 2 (the CFG step).
"""

import copy
import pathlib
import resource
import sys
import time

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from safetensors.numpy import save_file

# stabilityai/stable-diffusion-2-inpainting's unet/config.json, as published.
SD2_INPAINTING = dict(
    sample_size=64,
    in_channels=9,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    norm_num_groups=32,
    norm_eps=1e-5,
    flip_sin_to_cos=True,
    freq_shift=0,
)


def median_time(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    argv = [a for a in sys.argv[1:] if a not in ("--half", "--f16")]
    out = pathlib.Path(argv[0] if argv else pathlib.Path.home() / ".cache/hd-painter/full")
    unet_dir = out / "unet_sd2_inpainting"
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD2_INPAINTING).eval()
    if not (unet_dir / "diffusion_pytorch_model.safetensors").exists():
        unet.save_pretrained(unet_dir, safe_serialization=True)
    rng = np.random.default_rng(0)
    sample = rng.standard_normal((2, 9, 64, 64)).astype(np.float32)
    context = rng.standard_normal((2, 77, 1024)).astype(np.float32)
    timesteps = np.array([999.0, 999.0], dtype=np.float32)
    args = (torch.from_numpy(sample), torch.from_numpy(timesteps))
    ctx = torch.from_numpy(context)
    one = (args[0][:1], args[1][:1])
    with torch.no_grad():
        output = unet(*args, encoder_hidden_states=ctx).sample.numpy()
        seconds = median_time(lambda: unet(*args, encoder_hidden_states=ctx), 3)
        seconds1 = median_time(lambda: unet(*one, encoder_hidden_states=ctx[:1]), 3)
    save_file({"sample": sample, "context": context, "timesteps": timesteps, "output": output}, str(out / "unet_io.safetensors"))
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"torch {torch.__version__} {torch.get_num_threads()} threads: UNet SD2-inpainting 64x64 batch 2: "
          f"{seconds:.2f} s, batch 1: {seconds1:.2f} s (medians of 3), peak RSS {rss_gib:.2f} GiB (model creation included)")
    dtypes = [torch.bfloat16] if "--half" in sys.argv[1:] else []
    dtypes += [torch.float16] if "--f16" in sys.argv[1:] else []
    scale = np.abs(output[:1]).max()
    for dtype in dtypes:
        half = copy.deepcopy(unet).to(dtype)
        call = lambda: half(one[0].to(dtype), one[1], encoder_hidden_states=ctx[:1].to(dtype)).sample
        with torch.no_grad():
            start = time.perf_counter()
            got = call()
            first = time.perf_counter() - start
            # float16 takes over 10 minutes a call on this CPU: its first call is all there is.
            if dtype == torch.bfloat16:
                timing = f"{median_time(call, 3):.2f} s (median of 3; first call {first:.2f} s)"
            else:
                timing = f"{first:.2f} s (one run)"
        err = np.abs(got.float().numpy() - output[:1]).max()
        print(f"  {dtype}: batch 1 {timing}, max |diff| to f32 {err:.3e} (relative {err / max(scale, 1.0):.3e})")
        if dtype == torch.bfloat16:
            both = (args[0].to(dtype), args[1])
            with torch.no_grad():
                seconds2 = median_time(lambda: half(*both, encoder_hidden_states=ctx.to(dtype)), 3)
            print(f"  {dtype}: batch 2 {seconds2:.2f} s (median of 3)")


if __name__ == "__main__":
    main()
