#!/usr/bin/env python3
"""The full-size random-weight pipeline folders the whole-run measurements load (never committed):
`pipeline_sd2_inpainting` (SD2-inpainting UNet, SD2 VAE, OpenCLIP-H text encoder) and `pipeline_x4`
(the x4 upscaler's UNet and VAE with the same text encoder), each a diffusers pipeline folder
whose parts link model folders named and configured as full_size.py, full_size_models.py and
full_size_sr.py write them (folders those scripts wrote are used as they are). Writes only what is
missing and times nothing.

    ~/.cache/hd-painter/venv/bin/python tools/reference/full_size_pipelines.py [OUT_DIR]

OUT_DIR defaults to ~/.cache/hd-painter/full. The schedulers and model_index.json come from the
tiny fixture pipelines, which hold the published folders' files.
"""

import os
import pathlib
import shutil
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from full_size import SD2_INPAINTING
from full_size_models import SD2_TEXT, SD2_VAE, TOKENIZER
from full_size_sr import X4_UNET, X4_VAE

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "models"


def write(folder, weights, make):
    """Saves `make()` (seeded as the benchmark scripts seed it) unless `folder` has its weights."""
    if not (folder / weights).exists():
        torch.manual_seed(0)
        make().eval().save_pretrained(folder, safe_serialization=True)
        print("written", folder)


def text_encoder(folder):
    write(folder, "model.safetensors", lambda: CLIPTextModel(CLIPTextConfig(**SD2_TEXT)))


def pipeline(out, name, fixture, parts):
    """A pipeline folder: the fixture's schedulers and model_index.json, `parts` linked."""
    target = out / name
    target.mkdir(exist_ok=True)
    for entry in (FIXTURES / fixture).iterdir():
        if entry.name.endswith("scheduler"):
            shutil.copytree(entry, target / entry.name, dirs_exist_ok=True)
    shutil.copyfile(FIXTURES / fixture / "model_index.json", target / "model_index.json")
    tokenizer = target / "tokenizer"
    tokenizer.mkdir(exist_ok=True)
    for f in ["vocab.json", "merges.txt"]:
        shutil.copyfile(TOKENIZER / f, tokenizer / f)
    # SD 2 pads with "!", as its published tokenizer folder says.
    (tokenizer / "tokenizer_config.json").write_text('{"pad_token": "!"}\n')
    for part, source in parts.items():
        link = target / part
        if link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(out / source, target), link)
    print("pipeline", target)


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path.home() / ".cache/hd-painter/full")
    out.mkdir(parents=True, exist_ok=True)
    weights = "diffusion_pytorch_model.safetensors"
    write(out / "unet_sd2_inpainting", weights, lambda: UNet2DConditionModel(**SD2_INPAINTING))
    write(out / "vae_sd2", weights, lambda: AutoencoderKL(**SD2_VAE))
    text_encoder(out / "text_sd2")
    write(out / "unet_x4", weights, lambda: UNet2DConditionModel(**X4_UNET))
    write(out / "vae_x4", weights, lambda: AutoencoderKL(**X4_VAE))
    pipeline(out, "pipeline_sd2_inpainting", "pipeline_hd_painter",
             {"unet": "unet_sd2_inpainting", "vae": "vae_sd2", "text_encoder": "text_sd2"})
    pipeline(out, "pipeline_x4", "pipeline_x4", {"unet": "unet_x4", "vae": "vae_x4", "text_encoder": "text_sd2"})


if __name__ == "__main__":
    main()
