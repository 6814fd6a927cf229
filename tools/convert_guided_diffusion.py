#!/usr/bin/env python3
"""Converts a guided-diffusion / RePaint checkpoint (`.pt`, a pickled state dict) into the folder
hd-painter's `GuidedUnet::load` reads: `model.safetensors` and a `config.json` with the model keys
of the RePaint config it was published with. The library never reads pickles; this script is
the one place one is opened, with `torch.load(weights_only=True)`, which refuses code.

    python tools/convert_guided_diffusion.py celeba256_250000.pt \
        --conf RePaint/confs/face_example.yml --out models/repaint-celeba256

The published checkpoints (RePaint's download.sh): celeba256_250000.pt (confs/test_c256_*.yml),
places256_300000.pt (test_p256_*), 256x256_diffusion.pt (ImageNet, class-conditional,
test_inet256_*; its classifier 256x256_classifier.pt is not used by hd-painter).
Needs torch and safetensors (the reference venv has both).
"""

import argparse
import json
import pathlib

# The keys of a RePaint conf that define the model (guided-diffusion's create_model arguments).
MODEL_KEYS = [
    "image_size", "num_channels", "num_res_blocks", "channel_mult", "learn_sigma", "class_cond",
    "attention_resolutions", "num_heads", "num_head_channels", "num_heads_upsample",
    "use_scale_shift_norm", "dropout", "resblock_updown", "use_fp16", "use_new_attention_order",
]


def read_conf(path):
    """The top-level `key: value` lines of a RePaint yml (no YAML library needed)."""
    values = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if not line or line[0] in " #" or ":" not in line:
            continue
        key, _, raw = line.partition(":")
        raw = raw.strip()
        if key not in MODEL_KEYS:
            continue
        if raw in ("true", "false"):
            values[key] = raw == "true"
        elif raw.startswith("'") or raw.startswith('"'):
            values[key] = raw[1:-1]
        else:
            try:
                values[key] = int(raw)
            except ValueError:
                try:
                    values[key] = float(raw)
                except ValueError:
                    values[key] = raw  # e.g. attention_resolutions: 32,16,8
    missing = [k for k in ("image_size", "num_channels", "num_res_blocks", "attention_resolutions") if k not in values]
    if missing:
        raise SystemExit(f"{path}: no {', '.join(missing)}")
    return values


def convert(checkpoint, conf, out):
    import torch
    from safetensors.torch import save_file

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise SystemExit(f"{checkpoint}: not a state dict of tensors")
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    config = {"_class_name": "GuidedDiffusionUNetModel", **conf}
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=pathlib.Path)
    ap.add_argument("--conf", type=pathlib.Path, required=True, help="the RePaint conf .yml of the checkpoint")
    ap.add_argument("--out", type=pathlib.Path, required=True)
    args = ap.parse_args()
    convert(args.checkpoint, read_conf(args.conf), args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
