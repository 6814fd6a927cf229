#!/usr/bin/env python3
"""Full-size SD2 VAE and OpenCLIP-H text encoder with random weights, for the benchmark (never
committed): writes the models in the diffusers / transformers layout plus inputs and PyTorch's
outputs, and times PyTorch fp32 on this machine the way benches/benches/models_full.rs times ours:
VAE encode of a 512x512 image, VAE decode of a 64x64 latent, and tokenizer + text encoder for
one prompt (the real CLIP vocabulary from fixtures/tokenizer).

    ~/.cache/hd-painter/venv/bin/python tools/reference/full_size_models.py [OUT_DIR] [--only vae|text]

OUT_DIR defaults to ~/.cache/hd-painter/full; the benchmark reads HD_PAINTER_FULL_DIR. Each part
is best run in its own process (`--only`), so that the peak RSS is that part's.
"""

import pathlib
import resource
import shutil
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL
from safetensors.numpy import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from full_size import median_time

# stabilityai/stable-diffusion-2-inpainting's vae/config.json and text_encoder/config.json.
SD2_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=768,
    scaling_factor=0.18215,
)
SD2_TEXT = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    projection_dim=512,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)
PROMPT = "a red leather sofa in a sunlit living room, Full HD, 4K, high quality, high resolution"
TOKENIZER = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "tokenizer"


def rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def vae(out, rng):
    torch.manual_seed(0)
    model = AutoencoderKL(**SD2_VAE).eval()
    d = out / "vae_sd2"
    if not (d / "diffusion_pytorch_model.safetensors").exists():
        model.save_pretrained(d, safe_serialization=True)
    image = rng.uniform(-1, 1, (1, 3, 512, 512)).astype(np.float32)
    latent = rng.standard_normal((1, 4, 64, 64)).astype(np.float32)
    x, z = torch.from_numpy(image), torch.from_numpy(latent)
    with torch.no_grad():
        mean = model.encode(x).latent_dist.mean.numpy()
        decoded = model.decode(z).sample.numpy()
        encode = median_time(lambda: model.encode(x), 3)
        decode = median_time(lambda: model.decode(z), 3)
    save_file({"image": image, "latent": latent, "mean": mean, "decoded": decoded}, str(out / "vae_io.safetensors"))
    print(f"torch {torch.__version__} {torch.get_num_threads()} threads: VAE SD2 encode 512x512: {encode:.2f} s, "
          f"decode 64x64 -> 512: {decode:.2f} s (medians of 3); peak RSS {rss_gib():.2f} GiB")


def text(out, rng):
    torch.manual_seed(0)
    model = CLIPTextModel(CLIPTextConfig(**SD2_TEXT)).eval()
    d = out / "text_sd2"
    if not (d / "model.safetensors").exists():
        model.save_pretrained(d, safe_serialization=True)
        for f in ["vocab.json", "merges.txt"]:
            shutil.copyfile(TOKENIZER / f, d / f)
        # SD 2 pads with "!", as its tokenizer folder says.
        (d / "tokenizer_config.json").write_text('{"pad_token": "!"}\n')
    tokenizer = CLIPTokenizer(vocab=str(TOKENIZER / "vocab.json"), merges=str(TOKENIZER / "merges.txt"), pad_token="!")

    def encode():
        ids = tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        return ids, model(ids).last_hidden_state

    with torch.no_grad():
        ids, hidden = encode()
        seconds = median_time(encode, 5)
        tok = median_time(lambda: tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True), 5)
    save_file({"ids": ids.numpy().astype(np.int64), "hidden": hidden.numpy()}, str(out / "text_io.safetensors"))
    print(f"torch {torch.__version__} {torch.get_num_threads()} threads: tokenizer + text encoder (OpenCLIP-H, 23 layers): "
          f"{seconds * 1e3:.1f} ms (tokenizer alone {tok * 1e3:.2f} ms), medians of 5; peak RSS {rss_gib():.2f} GiB")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    args = [a for a in args if a != only]
    out = pathlib.Path(args[0] if args else pathlib.Path.home() / ".cache/hd-painter/full")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, part in [("vae", vae), ("text", text)]:
        if only in (None, name):
            part(out, rng)


if __name__ == "__main__":
    main()
