#!/usr/bin/env python3
"""Writes the full-size configs the GPU check builds its seeded models from (committed under
tools/gpu/): stabilityai/stable-diffusion-2-inpainting's UNet, VAE and OpenCLIP-H text encoder,
and stabilityai/stable-diffusion-x4-upscaler's UNet and VAE (with the same text encoder), as
diffusers and transformers save them. Run from the repository root with the reference venv:

    ~/.cache/hd-painter/venv/bin/python tools/gpu/write_configs.py
"""

import pathlib
import sys

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "reference"))

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig  # noqa: E402

from full_size import SD2_INPAINTING  # noqa: E402
from full_size_models import SD2_TEXT, SD2_VAE  # noqa: E402
from full_size_sr import X4_UNET, X4_VAE  # noqa: E402


def write(folder, unet, vae):
    out = HERE / folder
    with torch.device("meta"):  # the configs only: no weights are made
        UNet2DConditionModel(**unet).save_config(out / "unet")
        AutoencoderKL(**vae).save_config(out / "vae")
    CLIPTextConfig(**SD2_TEXT).save_pretrained(out / "text_encoder")


write("sd2-inpainting", SD2_INPAINTING, SD2_VAE)
write("x4-upscaler", X4_UNET, X4_VAE)
