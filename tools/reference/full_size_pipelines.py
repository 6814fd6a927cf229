#!/usr/bin/env python3
"""The full-size random-weight pipeline folders the whole-run measurements load (never committed):
`pipeline_sd2_inpainting` (SD2-inpainting UNet, SD2 VAE, OpenCLIP-H text encoder) and `pipeline_x4`
(the x4 upscaler's UNet and VAE with the same text encoder), each a diffusers pipeline folder
whose parts link model folders named and configured as full_size.py, full_size_models.py and
full_size_sr.py write them (folders those scripts wrote are used as they are). With --sdxl also
`pipeline_sdxl_inpainting`: the SDXL-inpainting UNet of full_size_sdxl.py, SDXL's VAE and its two
text encoders (CLIP ViT-L and OpenCLIP bigG with its projection), as
diffusers/stable-diffusion-xl-1.0-inpainting-0.1 configures them (14 GB in f32). Writes only what
is missing and times nothing.

    ~/.cache/hd-painter/venv/bin/python tools/reference/full_size_pipelines.py [OUT_DIR] [--sdxl]

OUT_DIR defaults to ~/.cache/hd-painter/full. The schedulers and model_index.json come from the
tiny fixture pipelines, which hold the published folders' files.
"""

import os
import pathlib
import shutil
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from full_size import SD2_INPAINTING
from full_size_models import SD2_TEXT, SD2_VAE, TOKENIZER
from full_size_sdxl import SDXL_INPAINTING
from full_size_sr import X4_UNET, X4_VAE

# The published SDXL folders' text_encoder (CLIP ViT-L/14), text_encoder_2 (OpenCLIP bigG) and vae
# configs.
SDXL_TEXT = dict(SD2_TEXT, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, hidden_act="quick_gelu", projection_dim=768)
SDXL_TEXT_2 = dict(SD2_TEXT, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                   num_attention_heads=20, projection_dim=1280)
SDXL_VAE = dict(SD2_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True)

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "models"


def write(folder, weights, make):
    """Saves `make()` (seeded as the benchmark scripts seed it) unless `folder` has its weights."""
    if not (folder / weights).exists():
        torch.manual_seed(0)
        make().eval().save_pretrained(folder, safe_serialization=True, max_shard_size="100GB")
        print("written", folder)


def text_encoder(folder, config=SD2_TEXT, model=CLIPTextModel):
    write(folder, "model.safetensors", lambda: model(CLIPTextConfig(**config)))


def pipeline(out, name, fixture, parts, tokenizers=(("tokenizer", "!"),)):
    """A pipeline folder: the fixture's schedulers and model_index.json, `parts` linked, and the
    CLIP vocabulary in each of `tokenizers` (folder, padding token)."""
    target = out / name
    target.mkdir(exist_ok=True)
    for entry in (FIXTURES / fixture).iterdir():
        if entry.name.endswith("scheduler"):
            shutil.copytree(entry, target / entry.name, dirs_exist_ok=True)
    shutil.copyfile(FIXTURES / fixture / "model_index.json", target / "model_index.json")
    for folder, pad in tokenizers:
        tokenizer = target / folder
        tokenizer.mkdir(exist_ok=True)
        for f in ["vocab.json", "merges.txt"]:
            shutil.copyfile(TOKENIZER / f, tokenizer / f)
        # The padding token as the published tokenizer folders say (SD 2's and SDXL's second: "!").
        (tokenizer / "tokenizer_config.json").write_text(f'{{"pad_token": "{pad}"}}\n')
    for part, source in parts.items():
        link = target / part
        if link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(out / source, target), link)
    print("pipeline", target)


def main():
    argv = [a for a in sys.argv[1:] if a != "--sdxl"]
    out = pathlib.Path(argv[0] if argv else pathlib.Path.home() / ".cache/hd-painter/full")
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
    if "--sdxl" in sys.argv:
        write(out / "unet_sdxl_inpainting", weights, lambda: UNet2DConditionModel(**SDXL_INPAINTING))
        write(out / "vae_sdxl", weights, lambda: AutoencoderKL(**SDXL_VAE))
        text_encoder(out / "text_sdxl", SDXL_TEXT)
        text_encoder(out / "text_sdxl_2", SDXL_TEXT_2, CLIPTextModelWithProjection)
        parts = {"unet": "unet_sdxl_inpainting", "vae": "vae_sdxl", "text_encoder": "text_sdxl",
                 "text_encoder_2": "text_sdxl_2"}
        pipeline(out, "pipeline_sdxl_inpainting", "pipeline_sdxl_inpaint", parts,
                 (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")))


if __name__ == "__main__":
    main()
