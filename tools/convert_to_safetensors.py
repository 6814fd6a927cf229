#!/usr/bin/env python3
"""Converts pickled PyTorch weights (which hd-painter never reads: unpickling can run code) to
safetensors, writing each file beside its source and overwriting nothing.

    python tools/convert_to_safetensors.py MODEL_DIR           # every *.bin of a diffusers folder
    python tools/convert_to_safetensors.py model.ckpt          # one file: model.safetensors
    python tools/convert_to_safetensors.py unet/diffusion_pytorch_model.fp16.bin

Names follow diffusers / transformers: `pytorch_model[.variant].bin` -> `model[.variant].safetensors`,
`diffusion_pytorch_model[.variant].bin` -> `diffusion_pytorch_model[.variant].safetensors`,
`NAME.ckpt` / `.pt` / `.pth` -> `NAME.safetensors` (a training checkpoint's `state_dict` is
unwrapped). Files are read with `torch.load(weights_only=True)`, which refuses pickles that
hold anything but tensors and plain containers. Needs `torch` and `safetensors`.
"""

import pathlib
import sys


def target(path):
    stem = path.name[: path.name.rindex(".")]
    if stem == "pytorch_model" or stem.startswith("pytorch_model."):
        stem = "model" + stem[len("pytorch_model"):]
    return path.with_name(stem + ".safetensors")


def convert(path):
    import torch
    from safetensors.torch import save_file

    out = target(path)
    if out.exists():
        print(f"skipped {path}: {out} exists")
        return
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    tensors = {k: v.contiguous().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    skipped = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    save_file(tensors, str(out))
    print(f"wrote {out} ({len(tensors)} tensors{'; not tensors, left out: ' + ', '.join(skipped) if skipped else ''})")


def main(args):
    if len(args) != 1:
        print(__doc__)
        return 2
    root = pathlib.Path(args[0])
    files = sorted(p for p in root.rglob("*") if p.suffix == ".bin") if root.is_dir() else [root]
    if not files:
        print(f"no .bin files under {root}")
        return 1
    for f in files:
        convert(f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
