#!/usr/bin/env python3
"""PyTorch's side of the GPU check: diffusers' UNet2DConditionModel on the same full-size
SD 2-inpainting config (tools/gpu/sd2-inpainting/unet), random weights, a batch-2 call at a
64x64 latent, timed the way gpu_check times ours: the first call, then the median of warm calls,
each ended by a synchronisation. fp16 and bf16 eager, then bf16 with torch.compile; the peak
device memory of each. Writes one JSON file.

    python3 tools/gpu/torch_unet.py [--json FILE] [--repeats N] [--no-compile]
"""

import argparse
import json
import pathlib
import statistics
import time

import torch
from diffusers import UNet2DConditionModel

CONFIG = pathlib.Path(__file__).resolve().parent / "sd2-inpainting" / "unet"


def timed(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(unet, dtype, repeats, label):
    generator = torch.Generator("cuda").manual_seed(0)
    sample = torch.randn(2, 9, 64, 64, generator=generator, device="cuda", dtype=dtype)
    context = torch.randn(2, 77, 1024, generator=generator, device="cuda", dtype=dtype)
    timesteps = torch.tensor([500, 500], device="cuda")
    torch.cuda.reset_peak_memory_stats()

    @torch.no_grad()
    def call():
        return unet(sample, timesteps, context).sample

    first = timed(call)
    times = sorted(timed(call) for _ in range(repeats))
    row = {
        "label": label,
        "first_call_s": first,
        "unet_call_s": statistics.median(times),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = UNet2DConditionModel.load_config(CONFIG)
    rows = []
    for name, dtype in [("fp16", torch.float16), ("bf16", torch.bfloat16)]:
        unet = UNet2DConditionModel.from_config(config).to("cuda", dtype).eval()
        rows.append(measure(unet, dtype, args.repeats, f"eager {name}"))
        if name == "bf16" and not args.no_compile:
            compiled = torch.compile(unet)
            rows.append(measure(compiled, dtype, args.repeats, "torch.compile bf16"))
        del unet
        torch.cuda.empty_cache()
    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
