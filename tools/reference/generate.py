#!/usr/bin/env python3
"""Writes hd-painter's golden fixtures from the reference implementations.

    python tools/reference/generate.py            # (re)write fixtures/
    python tools/reference/generate.py --check    # regenerate into a temp dir, compare with fixtures/

Every expected value comes from the library the Rust code must match (Pillow, OpenCV, scipy,
numpy, torchvision, diffusers), never from hd-painter itself. Inputs are synthetic and seeded,
so a re-run reproduces the committed files byte for byte.
"""

import argparse
import copy
import filecmp
import pathlib
import sys
import tempfile

import numpy as np

import customise
import sdxl

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
SEED = 20231222  # HD-Painter's arXiv date


def synthetic_rgb(rng, height, width):
    """A textured RGB image: smooth waves, hard edges and noise, to exercise every rounding path."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for c in range(3):
        wave = 110 * np.sin(xx / (3.0 + c) + c) * np.cos(yy / (4.0 + 2 * c))
        edge = 60.0 * ((xx + 2 * yy + 7 * c) % 17 < 8)
        channels.append(128 + wave + edge - 30 + rng.normal(0, 18, (height, width)))
    return np.clip(np.rint(np.stack(channels, -1)), 0, 255).astype(np.uint8)


def synthetic_mask(height, width, soft):
    """An elliptic hole plus a thin bar touching the right border; soft edges if `soft`."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.sqrt(((xx - 0.4 * width) / (0.25 * width)) ** 2 + ((yy - 0.5 * height) / (0.3 * height)) ** 2)
    hole = np.clip((1.0 - r) * (4.0 if soft else 1e6), 0, 1)
    hole[height // 5 : height // 5 + 3, width // 2 :] = 1.0
    return np.rint(hole * 255).astype(np.uint8)


def save(out, name, tensors, group="core"):
    from safetensors.numpy import save_file

    path = out / group / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))


RESIZE_TARGETS = [(64, 20), (101, 77), (13, 11), (19, 64), (37, 41)]


def gen_resize(out, rng):
    from PIL import Image

    rgb = synthetic_rgb(rng, 41, 37)
    luma = synthetic_mask(45, 31, soft=True)
    plane = rng.uniform(-0.3, 1.3, (29, 23)).astype(np.float32)
    filters = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    t = {"rgb": rgb, "luma": luma, "float": plane}
    for fname, f in filters.items():
        for w, h in RESIZE_TARGETS:
            t[f"rgb_{fname}_{w}x{h}"] = np.asarray(Image.fromarray(rgb).resize((w, h), resample=f))
            t[f"luma_{fname}_{w}x{h}"] = np.asarray(Image.fromarray(luma).resize((w, h), resample=f))
            t[f"float_{fname}_{w}x{h}"] = np.asarray(Image.fromarray(plane, mode="F").resize((w, h), resample=f))
    # The reference's long-side size rule (src/utils/__init__.py `resize`): int() truncation.
    sizes = []
    for w, h in [(1024, 768), (1000, 333), (333, 1000), (700, 700), (4032, 3024), (1365, 2048), (513, 511)]:
        aspect = w / h
        sizes.append([w, h, 512, min(512, int(512 * aspect)), min(512, int(512 / aspect))])
    t["long_side_cases"] = np.array(sizes, dtype=np.int64)
    save(out, "resize", t)


BLUR_OPENCV = [(3, 0.0), (5, 0.0), (7, 0.0), (5, 1.5), (9, 0.0), (19, 3.2), (21, 0.0)]
BLUR_TORCHVISION = [(19, None), (5, 1.1), (21, 2.0)]


def gen_blur(out, rng):
    import cv2
    import torch
    import torchvision.transforms.functional as tvf

    rgb = synthetic_rgb(rng, 33, 47)
    luma = synthetic_mask(40, 52, soft=False)
    plane = (synthetic_mask(36, 44, soft=True) / 255.0).astype(np.float32)
    t = {"rgb": rgb, "luma": luma, "float": plane}
    for k, s in BLUR_OPENCV:
        tag = f"{k}_{s:g}"
        t[f"opencv_rgb_{tag}"] = cv2.GaussianBlur(rgb, (k, k), s)
        t[f"opencv_luma_{tag}"] = cv2.GaussianBlur(luma, (k, k), s)
    for k, s in BLUR_TORCHVISION:
        tag = f"{k}_{'none' if s is None else f'{s:g}'}"
        x = torch.from_numpy(plane)[None, None]
        t[f"torchvision_float_{tag}"] = tvf.gaussian_blur(x, kernel_size=k, sigma=s)[0, 0].numpy()
    save(out, "blur", t)


def gen_dilate(out, rng):
    import cv2
    from scipy.ndimage import binary_dilation

    binary = synthetic_mask(37, 50, soft=False)
    soft = synthetic_mask(30, 41, soft=True)
    t = {"binary": binary, "soft": soft}
    for r in [1, 3, 19]:
        # HD-Painter's IImage.dilate(r): scipy's default 3x3 cross, iterated r times.
        t[f"cross_{r}"] = (binary_dilation(binary > 0, iterations=r) * 255).astype(np.uint8)
    for w, h in [(3, 3), (5, 5), (8, 8), (5, 2)]:
        # cv2.dilate with a rectangle np.ones((h, w)), default anchor: the Poisson blend's box.
        t[f"box_{w}x{h}"] = cv2.dilate(binary, np.ones((h, w), np.uint8))
        t[f"soft_box_{w}x{h}"] = cv2.dilate(soft, np.ones((h, w), np.uint8))
    save(out, "dilate", t)


def gen_pad(out, rng):
    rgb = synthetic_rgb(rng, 41, 37)
    t = {"rgb": rgb}
    for m in [8, 64]:
        for mode, np_mode in [("zero", "constant"), ("reflect", "reflect")]:
            h, w = rgb.shape[:2]
            ph, pw = -h % m, -w % m
            t[f"{mode}_{m}"] = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode=np_mode)
    save(out, "pad", t)


def gen_tensor(out, rng):
    import torch
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    rgb = synthetic_rgb(rng, 24, 40)
    # diffusers' preprocessing: PIL -> float32 numpy in [0, 1] -> [-1, 1].
    to_tensor = VaeImageProcessor.normalize(VaeImageProcessor.pil_to_numpy(Image.fromarray(rgb)))
    decoded = rng.uniform(-1.3, 1.3, (1, 3, 24, 40)).astype(np.float32)
    # Values that land exactly on half-way points after scaling, to pin the tie rule.
    decoded[0, 0, 0, :8] = (np.array([0.5, 1.5, 2.5, 3.5, 126.5, 127.5, 253.5, 254.5]) / 255.0 - 0.5) * 2.0
    # diffusers' post-processing: denormalize, then numpy_to_pil's (x * 255).round().
    unit = VaeImageProcessor.denormalize(torch.from_numpy(decoded)).permute(0, 2, 3, 1).numpy()
    rounded = np.asarray(VaeImageProcessor.numpy_to_pil(unit)[0])
    # HD-Painter's super-resolution post-processing (src/methods/sr.py): truncation.
    truncated = (255 * ((torch.from_numpy(decoded) + 1) / 2).clip(0, 1)).to(torch.uint8)
    t = {
        "rgb": rgb,
        "to_tensor": to_tensor.transpose(0, 3, 1, 2),
        "decoded": decoded,
        "round": rounded,
        "truncate": truncated[0].permute(1, 2, 0).numpy(),
    }
    save(out, "tensor", t)


def gen_files(out, rng):
    """Image files in each supported format, with what Pillow decodes from them."""
    from PIL import Image

    d = out / "core"
    d.mkdir(parents=True, exist_ok=True)
    rgb = synthetic_rgb(rng, 30, 44)
    mask = synthetic_mask(30, 44, soft=True)
    rgba = np.concatenate([rgb, mask[..., None]], -1)
    Image.fromarray(rgb).save(d / "rgb.png", optimize=False)
    Image.fromarray(rgba).save(d / "rgba.png", optimize=False)
    Image.fromarray(mask).save(d / "mask.png", optimize=False)
    Image.fromarray(rgb).save(d / "rgb.webp", lossless=True)
    Image.fromarray(rgb).save(d / "rgb.jpg", quality=90, subsampling=0)
    gray16 = (mask.astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(d / "gray16.png")
    t = {"rgb": rgb, "rgba": rgba, "mask": mask}
    with Image.open(d / "rgb.jpg") as im:
        t["jpg_decoded"] = np.asarray(im.convert("RGB"))
    with Image.open(d / "rgb.png") as im:
        t["rgb_luma"] = np.asarray(im.convert("L"))
    save(out, "files", t)


def gen_odd_files(out, rng):
    """Image files in the less common forms users hand in, with what Pillow decodes from them:
    a CMYK JPEG (as print workflows save), a 16-bit RGB PNG, an 8-bit grey PNG."""
    from PIL import Image

    d = out / "core"
    rgb = synthetic_rgb(rng, 30, 44)
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg", quality=95, subsampling=0)
    with Image.open(d / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
        cmyk_rgb = np.asarray(im.convert("RGB"))
    rgb16 = rgb.astype(np.uint16) * 257 + rng.integers(0, 200, rgb.shape).astype(np.uint16)
    # Pillow cannot write 16-bit RGB; a minimal PNG writer does (colour type 2, bit depth 16).
    write_png16(d / "rgb16.png", rgb16)
    with Image.open(d / "rgb16.png") as im:
        rgb16_rgb = np.asarray(im.convert("RGB"))
    Image.fromarray(rgb[..., 1]).save(d / "gray8.png")
    with Image.open(d / "gray8.png") as im:
        gray8_rgb = np.asarray(im.convert("RGB"))
    save(out, "odd_files", {"cmyk_rgb": cmyk_rgb, "rgb16_rgb": rgb16_rgb, "gray8_rgb": gray8_rgb})


def write_png16(path, rgb16):
    import struct
    import zlib

    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)


# ---------------------------------------------------------------------------------------------
# Tokenizer: the real CLIP BPE vocabulary (open_clip's bpe_simple_vocab_16e6.txt.gz, the file the
# published SD tokenizer folders were made from), written as a diffusers `tokenizer/` folder, and
# transformers' CLIPTokenizer ids for a few hundred varied prompts.

HAND_PROMPTS = [
    "",
    " ",
    "a photo of a cat",
    "A Photo Of A CAT",
    "a red car parked on the street, 4k, high quality",
    "Full HD, 4K, high quality, high resolution",
    "text, bad anatomy, bad proportions, blurry, cropped, deformed, disfigured",
    "a   dog \t\t running\n\nin the   park",
    "   leading and trailing spaces   ",
    "don't you'll we've they're I'm she'd it's",
    "DON'T YOU'LL WE'VE",
    "numbers 1234567890 and 3.14159 and 1,000,000",
    "2048x2048 px, 16:9, f/1.8, 35mm",
    "punctuation!!! ??? ... --- *** ### @@@ $$$ %%%",
    "brackets (a) [b] {c} <d> «e» „f“",
    "emoji 🐱🐶🎨 and ❤️ and 👩‍👩‍👧",
    "café, naïve, résumé, jalapeño, Ångström, Øresund, straße",
    "combining e\u0301 vs \u00e9 normalisation",
    "日本の古い寺院、桜の木",
    "一只可爱的小猫坐在窗台上",
    "한국어 문장 테스트",
    "Привет, мир! Красный автомобиль",
    "Γειά σου κόσμε ΣΟΦΟΣ",
    "مرحبا بالعالم",
    "שלום עולם",
    "हिन्दी पाठ",
    "ไทย ภาษา",
    "mixed日本English中文123",
    "<|startoftext|>a<|endoftext|> b",
    "tabs\tand\u00a0non-breaking\u2003spaces",
    "hyphen-ated under_scored slash/separated back\\slash",
    "email@example.com https://example.com/path?q=1&x=2",
    "a" * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "the " * 100,
    "İstanbul ǅ ß ﬁ Ⅻ ①②③ ½",
    "\u200bzero\u200bwidth\u200bspaces",
    "x" + "!" * 80,
]


def clip_tokenizer_folder(d):
    """A diffusers `tokenizer/` folder (vocab.json, merges.txt) built from open_clip's BPE file."""
    import gzip
    import json

    import open_clip.tokenizer as oct

    merges = gzip.open(oct.default_bpe()).read().decode("utf-8").split("\n")
    merges = merges[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(oct.bytes_to_unicode().values())
    vocab = byte_chars + [v + "</w>" for v in byte_chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "vocab.json", "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False, separators=(",", ":"))
    with open(d / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


def varied_prompts(rng):
    """The hand-written edge cases plus random mixtures of words, digits, punctuation and scripts."""
    words = "a the photo of cat dog tree house red blue painting portrait landscape city night sky".split()
    extras = ["4k", "8K", "HD", "!", "?", ",", ".", "...", "'s", "'ll", "—", "é", "ñ", "ü", "猫", "犬", "🎨", "🔥", "  ", "\t", "\n", "123", "0.5", "(", ")", "[", "]", ":", ";", "-", "_", "/", "&", "%", "#"]
    prompts = list(HAND_PROMPTS)
    while len(prompts) < 320:
        n = int(rng.integers(1, 40))
        pieces = [str(rng.choice(words if rng.random() < 0.6 else extras)) for _ in range(n)]
        glue = [" " if rng.random() < 0.8 else "" for _ in range(n)]
        text = "".join(p + g for p, g in zip(pieces, glue))
        if rng.random() < 0.3:
            text = text.upper()
        elif rng.random() < 0.3:
            text = text.title()
        prompts.append(text)
    return prompts


def gen_tokenizer(out, rng):
    import json

    from transformers import CLIPTokenizer

    d = out / "tokenizer"
    clip_tokenizer_folder(d)
    prompts = varied_prompts(rng)
    with open(d / "prompts.json", "w", encoding="utf-8") as f:
        json.dump(prompts, f, ensure_ascii=False, indent=0)
    t = {}
    # SD 1.x pads with <|endoftext|>; SD 2.x's tokenizer pads with "!" (id 0).
    for name, pad in [("pad_eos", "<|endoftext|>"), ("pad_bang", "!")]:
        tok = CLIPTokenizer(vocab=str(d / "vocab.json"), merges=str(d / "merges.txt"), pad_token=pad)
        ids = tok(prompts, padding="max_length", max_length=77, truncation=True)["input_ids"]
        t[name] = np.array(ids, dtype=np.int64)
    tok = CLIPTokenizer(vocab=str(d / "vocab.json"), merges=str(d / "merges.txt"))
    unpadded = [tok(p)["input_ids"] for p in prompts]
    t["lengths"] = np.array([len(u) for u in unpadded], dtype=np.int64)
    save(out, "ids", t, group="tokenizer")


# ---------------------------------------------------------------------------------------------
# Text encoders: tiny random-weight CLIPTextModels in the diffusers/transformers layout
# (config.json + model.safetensors), SD 1.x style (quick_gelu) and SD 2.x style (gelu), with
# transformers' outputs. A 512-token vocabulary keeps the files small; the ids follow SD's
# layout (start token, text, end token, padding) with the tiny vocabulary's special ids.

TINY_VOCAB, TINY_BOS, TINY_EOS = 512, 510, 511


def tiny_clip_config(act):
    """SD 1.x's published text encoder config says eos_token_id = 2, which makes transformers
    pool at the largest id (the legacy rule); SD 2.x's says 49407 (here the tiny vocabulary's)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=TINY_VOCAB,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=act,
        layer_norm_eps=1e-5,
        bos_token_id=TINY_BOS,
        eos_token_id=2 if act == "quick_gelu" else TINY_EOS,
        pad_token_id=1,
        projection_dim=32,
    )


def clip_ids(rng):
    """Two sequences: a 12-token prompt padded with the end token (SD 1.x), and an empty prompt
    padded with 0 (SD 2.x's "!"), so the pooled output must find the first end token."""
    ids = np.full((2, 77), TINY_EOS, dtype=np.int64)
    ids[:, 0] = TINY_BOS
    ids[0, 1:13] = rng.integers(0, TINY_BOS, 12)
    ids[1, 2:] = 0
    return ids


def gen_clip(out, rng):
    import torch
    from transformers import CLIPTextModel

    torch.manual_seed(int(rng.integers(0, 2**31)))
    ids = torch.from_numpy(clip_ids(rng))
    for act in ["quick_gelu", "gelu"]:
        model = CLIPTextModel(tiny_clip_config(act)).eval()
        # Non-trivial layer norms, so that a gamma/beta mix-up cannot pass.
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.LayerNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        d = out / "models" / f"clip_{act}"
        model.save_pretrained(d, safe_serialization=True)
        variants = [(None, model)]
        if act == "gelu":
            # The same weights published in half precision (the `.fp16` variant files); their
            # goldens come from those rounded weights computed in f32, as we compute them.
            for dtype, name in [(torch.float16, "fp16"), (torch.bfloat16, "bf16")]:
                half = copy.deepcopy(model).to(dtype)
                half.save_pretrained(d, safe_serialization=True, variant=name)
                variants.append((name, half.to(torch.float32)))
        for name, m in variants:
            with torch.no_grad():
                o = m(ids, output_hidden_states=True)
            save(
                out,
                "outputs" if name is None else f"outputs.{name}",
                {
                    "input_ids": ids.numpy(),
                    "last_hidden_state": o.last_hidden_state.numpy(),
                    "penultimate_hidden_state": o.hidden_states[-2].numpy(),
                    "pooler_output": o.pooler_output.numpy(),
                },
                group=f"models/clip_{act}",
            )


def gen_clip_projection(out, rng):
    """SDXL's second text encoder in small: a `CLIPTextModelWithProjection` with gelu and, as
    the published OpenCLIP bigG export says, eos_token_id = 2 (pooling at the largest id), whose
    projection is narrower than its width; the same two kinds of sequence as `gen_clip`."""
    import torch
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(int(rng.integers(0, 2**31)))
    ids = torch.from_numpy(clip_ids(rng))
    config = tiny_clip_config("gelu")
    config.eos_token_id = 2
    config.projection_dim = 24
    model = CLIPTextModelWithProjection(config).eval()
    randomize_norms(model, torch)
    model.save_pretrained(out / "models" / "clip_projection", safe_serialization=True)
    with torch.no_grad():
        o = model(ids, output_hidden_states=True)
    tensors = {
        "input_ids": ids.numpy(),
        "last_hidden_state": o.last_hidden_state.numpy(),
        "penultimate_hidden_state": o.hidden_states[-2].numpy(),
        "text_embeds": o.text_embeds.numpy(),
    }
    save(out, "outputs", tensors, group="models/clip_projection")


# ---------------------------------------------------------------------------------------------
# VAEs: tiny random-weight AutoencoderKLs in the diffusers layout, one shaped like SD's (here two
# levels) and one like the x4 upscaler's (three levels, scaling 0.08333), with diffusers' encode
# (posterior mean, logvar, a sample with given noise) and decode outputs.

VAES = {
    "vae_sd": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, scaling_factor=0.18215, image=(2, 3, 24, 40)),
    "vae_x4": dict(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4, scaling_factor=0.08333, image=(1, 3, 20, 28)),
    # SDXL's scaling factor, and its `force_upcast` (the published SDXL VAE overflows in f16).
    "vae_sdxl": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, scaling_factor=0.13025, force_upcast=True, image=(1, 3, 24, 40)),
}


def randomize_norms(model, torch):
    """Non-trivial norm affines, so that a weight/bias or gamma/beta mix-up cannot pass."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def gen_vae(out, rng):
    import torch
    from diffusers import AutoencoderKL

    for name, spec in VAES.items():
        torch.manual_seed(int(rng.integers(0, 2**31)))
        levels = len(spec["block_out_channels"])
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=spec["block_out_channels"],
            layers_per_block=spec["layers_per_block"],
            latent_channels=4,
            norm_num_groups=spec["norm_num_groups"],
            sample_size=32,
            scaling_factor=spec["scaling_factor"],
            force_upcast=spec.get("force_upcast", True),
        ).eval()
        randomize_norms(vae, torch)
        d = out / "models" / name
        vae.save_pretrained(d, safe_serialization=True)
        image = torch.from_numpy(rng.uniform(-1, 1, spec["image"]).astype(np.float32))
        with torch.no_grad():
            posterior = vae.encode(image).latent_dist
            noise = torch.from_numpy(rng.standard_normal(posterior.mean.shape).astype(np.float32))
            sample = posterior.mean + posterior.std * noise
            decoded = vae.decode(posterior.mean).sample
        save(
            out,
            "outputs",
            {
                "image": image.numpy(),
                "mean": posterior.mean.numpy(),
                "logvar": posterior.logvar.numpy(),
                "noise": noise.numpy(),
                "sample": sample.numpy(),
                "decoded": decoded.numpy(),
            },
            group=f"models/{name}",
        )


# ---------------------------------------------------------------------------------------------
# UNets: tiny random-weight UNet2DConditionModels in the diffusers layout covering the SD
# families' config keys, with diffusers' outputs for batch 2 at two timesteps (999 and 19).

UNETS = {
    # SD 1.5-inpainting-like: 9 channels, conv projections, heads as the legacy attention_head_dim.
    "unet_sd15_inpaint": dict(
        config=dict(
            in_channels=9,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(16, 32),
            layers_per_block=1,
            attention_head_dim=4,
            use_linear_projection=False,
        ),
        latent=(12, 20),
    ),
    # SD 2-like: 4 channels, linear projections, per-level heads, upcast attention, three levels
    # and a latent size not divisible by 4 (upsampling to the skip's size).
    "unet_sd2": dict(
        config=dict(
            in_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(8, 16, 16),
            layers_per_block=2,
            attention_head_dim=(2, 4, 4),
            use_linear_projection=True,
            upcast_attention=True,
        ),
        latent=(13, 19),
    ),
    # x4-upscaler-like: 7 channels, noise-level class embedding, only_cross_attention levels.
    "unet_x4": dict(
        config=dict(
            in_channels=7,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(8, 16, 16),
            layers_per_block=1,
            attention_head_dim=4,
            use_linear_projection=True,
            only_cross_attention=(True, True, False),
            num_class_embeds=1000,
        ),
        latent=(8, 12),
        class_labels=(20, 20),
    ),
    # SDXL-inpainting-like: 9 channels, a first level without attention, 2 and 3 transformer
    # blocks per transformer in the others (SDXL's [1, 2, 10] in small), and the text_time added
    # embedding over a pooled text embedding 24 wide and six time ids. The context is 64 wide:
    # the two tiny text encoders' 32 + 32, as SDXL's 768 + 1280, so the pipeline runs on it.
    "unet_sdxl": dict(
        config=dict(
            in_channels=9,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(8, 16, 16),
            layers_per_block=2,
            attention_head_dim=(2, 2, 4),
            use_linear_projection=True,
            transformer_layers_per_block=(1, 2, 3),
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=24 + 6 * 8,
            cross_attention_dim=64,
        ),
        latent=(12, 16),
        # original size, crop top-left, target size (SDXL's micro-conditioning), per image.
        time_ids=((1024, 1024, 0, 0, 1024, 1024), (768, 1344, 32, 16, 1024, 1024)),
        pooled=24,
    ),
}


def gen_unet(out, rng):
    import torch
    from diffusers import UNet2DConditionModel

    for name, spec in UNETS.items():
        torch.manual_seed(int(rng.integers(0, 2**31)))
        config = dict(sample_size=16, out_channels=4, cross_attention_dim=32, norm_num_groups=4) | spec["config"]
        unet = UNet2DConditionModel(**config).eval()
        randomize_norms(unet, torch)
        d = out / "models" / name
        unet.save_pretrained(d, safe_serialization=True)
        h, w = spec["latent"]
        sample = torch.from_numpy(rng.standard_normal((2, spec["config"]["in_channels"], h, w)).astype(np.float32))
        context = torch.from_numpy(rng.standard_normal((2, 77, config["cross_attention_dim"])).astype(np.float32))
        timesteps = torch.tensor([999.0, 19.0])
        labels = torch.tensor(spec["class_labels"]) if "class_labels" in spec else None
        added = None
        if "time_ids" in spec:
            added = {
                "text_embeds": torch.from_numpy(rng.standard_normal((2, spec["pooled"])).astype(np.float32)),
                "time_ids": torch.tensor(spec["time_ids"], dtype=torch.float32),
            }
        kwargs = dict(encoder_hidden_states=context, class_labels=labels, added_cond_kwargs=added)
        with torch.no_grad():
            eps = unet(sample, timesteps, **kwargs).sample
        t = {"sample": sample.numpy(), "context": context.numpy(), "timesteps": timesteps.numpy(), "output": eps.numpy()}
        if added is not None:
            t.update({k: v.numpy() for k, v in added.items()})
        # RASG differentiates through the UNet with respect to its input: the gradient of a
        # weighted sum of the output, parameters frozen.
        weights = torch.from_numpy(rng.standard_normal(eps.shape).astype(np.float32))
        unet.requires_grad_(False)
        x = sample.clone().requires_grad_(True)
        (unet(x, timesteps, **kwargs).sample * weights).sum().backward()
        t["grad_weights"] = weights.numpy()
        t["grad_sample"] = x.grad.numpy()
        if labels is not None:
            t["class_labels"] = labels.numpy()
        save(out, "outputs", t, group=f"models/{name}")


def gen_pipeline(out, rng):
    """diffusers' `model_index.json` (and the tokenizer's and scheduler's small configs) of an
    inpainting pipeline made of the tiny components above; the test assembles the folder from
    those components' fixture folders, so no weights are stored twice. Plus a tokenizer that fits
    the tiny text encoder's vocabulary, with transformers' ids and embeddings for two prompts."""
    import json
    import shutil
    import tempfile

    import open_clip.tokenizer as oct
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    models = out / "models"
    pipe = StableDiffusionInpaintPipeline(
        vae=AutoencoderKL.from_pretrained(models / "vae_sd"),
        text_encoder=CLIPTextModel.from_pretrained(models / "clip_gelu", dtype=torch.float32),
        tokenizer=CLIPTokenizer(vocab=str(out / "tokenizer" / "vocab.json"), merges=str(out / "tokenizer" / "merges.txt"), pad_token="!"),  # only its config is kept
        unet=UNet2DConditionModel.from_pretrained(models / "unet_sd15_inpaint"),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    dest = models / "pipeline_inpaint"
    # A tokenizer whose vocabulary fits the tiny text encoder (512 ids): GPT-2's 256 byte
    # symbols, 254 of their word-final forms, start and end tokens, no merges.
    byte_chars = list(oct.bytes_to_unicode().values())
    tiny = byte_chars + [c + "</w>" for c in byte_chars[:254]] + ["<|startoftext|>", "<|endoftext|>"]
    tok_dir = dest / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    with open(tok_dir / "vocab.json", "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(tiny)}, f, ensure_ascii=False, separators=(",", ":"))
    with open(tok_dir / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
    tiny_tok = CLIPTokenizer(vocab=str(tok_dir / "vocab.json"), merges=str(tok_dir / "merges.txt"), pad_token="!")
    # The same tokenizer as transformers 5 saves it: tokenizer.json + tokenizer_config.json only.
    tiny_tok.save_pretrained(dest / "tokenizer_json")
    text_encoder = CLIPTextModel.from_pretrained(models / "clip_gelu", dtype=torch.float32)
    ids = tiny_tok(["a red sofa!", ""], padding="max_length", max_length=77, truncation=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = text_encoder(ids).last_hidden_state
    save(out, "prompts", {"input_ids": ids.numpy().astype(np.int64), "last_hidden_state": hidden.numpy()}, group="models/pipeline_inpaint")
    with tempfile.TemporaryDirectory() as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        tmp = pathlib.Path(tmp)
        for rel in ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/tokenizer_config.json"]:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp / rel, dest / rel)


def gen_demo_pipelines(out, rng):
    """Complete pipeline folders over the tiny components, for the `inpaint` example and the
    folder tests: `model_index.json` and the scheduler configs from diffusers' `save_pretrained`,
    the components as relative symlinks to their fixture folders (no weights stored twice).
    `pipeline_inpaint` (9-channel, 2 levels), `pipeline_hd_painter` (9-channel with
    cross-attention at latent/4, so RASG runs), `pipeline_sd` (4-channel, for Blended and
    RePaint) and `pipeline_x4` (the x4 upscaler)."""
    import os
    import shutil
    import tempfile

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline, StableDiffusionUpscalePipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    models = out / "models"
    tok_dir = models / "pipeline_inpaint" / "tokenizer"
    text_encoder = CLIPTextModel.from_pretrained(models / "clip_gelu", dtype=torch.float32)
    tokenizer = CLIPTokenizer(vocab=str(tok_dir / "vocab.json"), merges=str(tok_dir / "merges.txt"), pad_token="!")
    sd_scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    hd = StableDiffusionInpaintPipeline(
        vae=AutoencoderKL.from_pretrained(models / "vae_sd"), text_encoder=text_encoder, tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_pretrained(models / "unet_hd_painter"), scheduler=sd_scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    sd = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(models / "vae_sd"), text_encoder=text_encoder, tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_pretrained(models / "unet_sd2"), scheduler=sd_scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    x4 = StableDiffusionUpscalePipeline(
        vae=AutoencoderKL.from_pretrained(models / "vae_x4"), text_encoder=text_encoder, tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_pretrained(models / "unet_x4"),
        low_res_scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02, prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        max_noise_level=350,
    )
    links = {
        "pipeline_inpaint": {"unet": "unet_sd15_inpaint", "vae": "vae_sd", "text_encoder": "clip_gelu"},
        "pipeline_hd_painter": {"unet": "unet_hd_painter", "vae": "vae_sd", "text_encoder": "clip_gelu", "tokenizer": "pipeline_inpaint/tokenizer"},
        "pipeline_sd": {"unet": "unet_sd2", "vae": "vae_sd", "text_encoder": "clip_gelu", "tokenizer": "pipeline_inpaint/tokenizer"},
        "pipeline_x4": {"unet": "unet_x4", "vae": "vae_x4", "text_encoder": "clip_gelu", "tokenizer": "pipeline_inpaint/tokenizer"},
    }
    for name, pipe in [("pipeline_hd_painter", hd), ("pipeline_sd", sd), ("pipeline_x4", x4)]:
        dest = models / name
        with tempfile.TemporaryDirectory() as tmp:
            pipe.save_pretrained(tmp, safe_serialization=True)
            tmp = pathlib.Path(tmp)
            for rel in ["model_index.json", *(str(p.relative_to(tmp)) for p in tmp.glob("*scheduler/scheduler_config.json"))]:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(tmp / rel, dest / rel)
    for name, components in links.items():
        for component, target in components.items():
            link = models / name / component
            if link.is_symlink():
                link.unlink()
            os.symlink(os.path.relpath(models / target, link.parent), link, target_is_directory=True)


def ldm_unet_state(unet):
    """A diffusers UNet's weights under the original (CompVis) key names."""
    lpb = unet.config.layers_per_block
    per = lpb + 1
    resnet = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
              ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection.")]

    def res(rest):
        for new, old in resnet:
            if rest.startswith(new):
                return old + rest[len(new):]
        return rest

    top = {"conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
           "conv_norm_out.": "out.0.", "conv_out.": "out.2.", "class_embedding.": "label_emb.",
           "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2."}
    has_attn = {i for i, b in enumerate(unet.up_blocks) if hasattr(b, "attentions")}
    out = {}
    for key, v in unet.state_dict().items():
        p = key.split(".")
        new = next((o + key[len(n):] for n, o in top.items() if key.startswith(n)), None)
        if new is None and p[0] == "down_blocks":
            b = int(p[1])
            rest = ".".join(p[4:])
            if p[2] == "resnets":
                new = f"input_blocks.{1 + b * per + int(p[3])}.0.{res(rest)}"
            elif p[2] == "attentions":
                new = f"input_blocks.{1 + b * per + int(p[3])}.1.{rest}"
            else:
                new = f"input_blocks.{1 + b * per + lpb}.0.op.{'.'.join(p[5:])}"
        elif new is None and p[0] == "mid_block":
            rest = ".".join(p[3:])
            new = f"middle_block.1.{rest}" if p[1] == "attentions" else f"middle_block.{2 * int(p[2])}.{res(rest)}"
        elif new is None and p[0] == "up_blocks":
            b = int(p[1])
            rest = ".".join(p[4:])
            if p[2] == "resnets":
                new = f"output_blocks.{b * per + int(p[3])}.0.{res(rest)}"
            elif p[2] == "attentions":
                new = f"output_blocks.{b * per + int(p[3])}.1.{rest}"
            else:
                new = f"output_blocks.{b * per + lpb}.{2 if b in has_attn else 1}.{'.'.join(p[4:])}"
        out["model.diffusion_model." + new] = v
    return out


def ldm_vae_state(vae):
    """A diffusers AutoencoderKL's weights under the original key names (1x1 conv attention)."""
    n = len(vae.config.block_out_channels)
    mid = {"resnets.0.": "block_1.", "resnets.1.": "block_2.", "attentions.0.group_norm.": "attn_1.norm.",
           "attentions.0.to_q.": "attn_1.q.", "attentions.0.to_k.": "attn_1.k.", "attentions.0.to_v.": "attn_1.v.",
           "attentions.0.to_out.0.": "attn_1.proj_out."}
    out = {}
    for key, v in vae.state_dict().items():
        half, rest = key.split(".", 1)
        if rest.startswith("conv_norm_out."):
            rest = "norm_out." + rest[len("conv_norm_out."):]
        elif rest.startswith("mid_block."):
            inner = rest[len("mid_block."):]
            o, nn_ = next((o, nn_) for nn_, o in mid.items() if inner.startswith(nn_))
            rest = "mid." + o + inner[len(nn_):]
            if ".attn_1." in "." + rest and rest.endswith("weight") and v.ndim == 2:
                v = v[:, :, None, None]
        elif rest.startswith(("down_blocks.", "up_blocks.")):
            blocks, i, kind, j, *tail = rest.split(".")
            level = int(i) if blocks == "down_blocks" else n - 1 - int(i)
            name = "down" if blocks == "down_blocks" else "up"
            if kind == "resnets":
                rest = f"{name}.{level}.block.{j}." + ".".join(tail).replace("conv_shortcut.", "nin_shortcut.")
            else:
                rest = f"{name}.{level}.{'downsample' if name == 'down' else 'upsample'}." + ".".join(tail)
        out["first_stage_model." + (f"{half}.{rest}" if half in ("encoder", "decoder") else key)] = v
    return out


def open_clip_state(text_encoder, extra_layer, torch):
    """A CLIPTextModel's weights in OpenCLIP's layout (fused q/k/v), plus the parts SD 2
    checkpoints carry that the pipeline does not use: one more transformer layer, the text
    projection and logit_scale."""
    sd = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items() if "position_ids" not in k}
    out = {"token_embedding.weight": sd["embeddings.token_embedding.weight"],
           "positional_embedding": sd["embeddings.position_embedding.weight"],
           "ln_final.weight": sd["final_layer_norm.weight"], "ln_final.bias": sd["final_layer_norm.bias"]}
    layers = text_encoder.config.num_hidden_layers
    names = [("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("self_attn.out_proj", "attn.out_proj"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]
    for i in range(layers + 1):
        src = {k[len(f"encoder.layers.{i}."):]: v for k, v in sd.items() if k.startswith(f"encoder.layers.{i}.")} if i < layers else {
            k[len("encoder.layers.0."):]: torch.randn_like(v) for k, v in sd.items() if k.startswith("encoder.layers.0.")}
        for new, old in names:
            for w in ("weight", "bias"):
                out[f"transformer.resblocks.{i}.{old}.{w}"] = src[f"{new}.{w}"]
        for w in ("weight", "bias"):
            out[f"transformer.resblocks.{i}.attn.in_proj_{w}"] = torch.cat([src[f"self_attn.{q}_proj.{w}"] for q in "qkv"])
    d = text_encoder.config.hidden_size
    out["text_projection"] = torch.randn(d, d)
    out["logit_scale"] = torch.tensor(4.6)
    return {"cond_stage_model.model." + k: v for k, v in out.items()}


def gen_single_file(out, rng):
    """Original-layout single-file checkpoints built from the tiny components, each proven by
    diffusers' own converters (`single_file_utils`) to map back exactly onto the diffusers
    weights; stored in fp16 as published checkpoints are. `sd2_inpainting`: the 9-channel UNet,
    the VAE and an OpenCLIP text encoder with one extra layer (SD 2's unused last one);
    `sd15_4ch`: a 4-channel UNet of the same config, the VAE, CLIP's transformers layout. Plus
    noise keys real files carry (`alphas_cumprod`, `model_ema.decay`). The goldens are diffusers
    models built from the converted fp16 weights, on fixed inputs."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_open_clip_checkpoint
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    models = out / "models"
    torch.manual_seed(int(rng.integers(0, 2**31)))
    vae = AutoencoderKL.from_pretrained(models / "vae_sd").eval()
    text = CLIPTextModel.from_pretrained(models / "clip_gelu", dtype=torch.float32).eval()
    unet9 = UNet2DConditionModel.from_pretrained(models / "unet_sd15_inpaint").eval()
    unet4 = UNet2DConditionModel(**{**unet9.config, "in_channels": 4}).eval()
    randomize_norms(unet4, torch)
    noise = {"alphas_cumprod": torch.linspace(0.999, 0.01, 1000), "model_ema.decay": torch.tensor(0.9999)}
    half = lambda sd: {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}
    f32 = lambda sd: {k: v.float() for k, v in sd.items()}
    ids = torch.from_numpy(rng.integers(0, 512, (1, 77))).long()
    sample9 = torch.from_numpy(rng.standard_normal((1, 9, 16, 16)).astype(np.float32))
    ehs = torch.from_numpy(rng.standard_normal((1, 77, 32)).astype(np.float32))
    z = torch.from_numpy(rng.standard_normal((1, 4, 8, 8)).astype(np.float32))
    t = {"ids": ids.numpy(), "sample9": sample9.numpy(), "sample4": sample9[:, :4].numpy().copy(), "encoder_hidden_states": ehs.numpy(), "z": z.numpy()}
    for name, unet, text_layout in [("sd2_inpainting", unet9, "open_clip"), ("sd15_4ch", unet4, "clip")]:
        if text_layout == "open_clip":
            text_ldm = open_clip_state(text, True, torch)
        else:
            text_ldm = {"cond_stage_model.transformer." + k: v for k, v in text.state_dict().items()}
        ckpt = half({**ldm_unet_state(unet), **ldm_vae_state(vae), **text_ldm, **noise})
        # diffusers' converters must give back exactly the diffusers weights.
        unet_sd = convert_ldm_unet_checkpoint(ckpt, dict(unet.config))
        vae_sd = convert_ldm_vae_checkpoint(ckpt, dict(vae.config))
        if text_layout == "open_clip":
            text_sd = convert_open_clip_checkpoint(text, ckpt)
            # diffusers drops SD 2's unused last layer by name (resblocks.23); here it is layer 3.
            text_sd = {k: v for k, v in text_sd.items() if not k.startswith(f"text_model.encoder.layers.{text.config.num_hidden_layers}.") and k != "text_projection.weight"}
        else:
            text_sd = convert_ldm_clip_checkpoint(ckpt)
        # transformers 5 names the text model's keys without the `text_model.` prefix.
        text_sd = {k.removeprefix("text_model."): v for k, v in text_sd.items() if "position_ids" not in k}
        for what, got, ref in [("unet", unet_sd, unet.state_dict()), ("vae", vae_sd, vae.state_dict()), ("text", text_sd, text.state_dict())]:
            ref = {k: v for k, v in ref.items() if "position_ids" not in k}
            assert set(got) == set(ref), (name, what, sorted(set(got) ^ set(ref))[:8])
            for k in ref:
                assert torch.equal(got[k].float(), ref[k].to(torch.float16).float()), (name, what, k)
        (models / "single_file").mkdir(parents=True, exist_ok=True)
        save_file(ckpt, str(models / "single_file" / f"{name}.safetensors"))
        u = UNet2DConditionModel(**unet.config).eval()
        u.load_state_dict(f32(unet_sd))
        v = AutoencoderKL(**vae.config).eval()
        v.load_state_dict(f32(vae_sd))
        c = CLIPTextModel(text.config).eval()
        c.load_state_dict(f32(text_sd))
        with torch.no_grad():
            sample = sample9 if unet.config.in_channels == 9 else sample9[:, :4]
            t[f"{name}.unet"] = u(sample, 500, encoder_hidden_states=ehs).sample.numpy()
            t[f"{name}.decoded"] = v.decode(z).sample.numpy()
            t[f"{name}.text"] = c(ids).last_hidden_state.numpy()
    save(out, "outputs", t, group="models/single_file")


# ---------------------------------------------------------------------------------------------
# Schedulers: diffusers' DDIMScheduler (SD's scaled-linear schedule; the x4 upscaler's with
# v-prediction) and RePaintScheduler; HD-Painter's float64 schedule (src/smplfusion/scheduler.py).

SPACINGS = [("leading", 50), ("leading", 20), ("trailing", 50), ("linspace", 50), ("trailing", 7), ("linspace", 13)]


def gen_schedulers(out, rng):
    import torch
    from diffusers import DDIMScheduler, RePaintScheduler

    t = {}
    sd = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    for spacing, steps in SPACINGS:
        sched = DDIMScheduler(**sd, timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0, clip_sample=False, set_alpha_to_one=False)
        sched.set_timesteps(steps)
        t[f"timesteps_{spacing}_{steps}"] = sched.timesteps.numpy().astype(np.int64)
    sched = DDIMScheduler(**sd, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    t["diffusers_alphas_cumprod"] = sched.alphas_cumprod.numpy().astype(np.float64)
    # HD-Painter's schedule, in float64 (the spec's definition).
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    t["hd_alphas_cumprod"] = torch.cumprod(1 - betas, 0).numpy()
    x4_betas = torch.linspace(0.0001**0.5, 0.02**0.5, 1000, dtype=torch.float64) ** 2
    t["x4_alphas_cumprod"] = torch.cumprod(1 - x4_betas, 0).numpy()
    # The "linear" schedule (DDPM's), in float64.
    t["linear_alphas_cumprod"] = np.cumprod(1 - np.linspace(0.0001, 0.02, 1000, dtype=np.float64))

    # One DDIM step, eta 0 and 0.5, epsilon prediction, 50 leading steps, at t = 501 -> 481.
    sched.set_timesteps(50)
    sample = rng.standard_normal((2, 4, 6, 10)).astype(np.float32)
    eps = rng.standard_normal((2, 4, 6, 10)).astype(np.float32)
    noise = rng.standard_normal((2, 4, 6, 10)).astype(np.float32)
    t.update(sample=sample, model_output=eps, variance_noise=noise)
    for eta in [0.0, 0.5]:
        o = sched.step(torch.from_numpy(eps), 501, torch.from_numpy(sample), eta=eta, variance_noise=torch.from_numpy(noise))
        t[f"ddim_eta{eta:g}_prev"] = o.prev_sample.numpy()
        t[f"ddim_eta{eta:g}_x0"] = o.pred_original_sample.numpy()
    # The last step (t = 1 -> -19 uses alphas_cumprod[0] with set_alpha_to_one=False).
    o = sched.step(torch.from_numpy(eps), 1, torch.from_numpy(sample), eta=0.0)
    t["ddim_last_prev"] = o.prev_sample.numpy()
    # v-prediction with the upscaler's schedule (scaled_linear 1e-4..2e-2), 20 steps.
    x4 = DDIMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear", prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    x4.set_timesteps(20)
    o = x4.step(torch.from_numpy(eps), 951, torch.from_numpy(sample), eta=0.0)
    t["v_prev"] = o.prev_sample.numpy()
    t["v_x0"] = o.pred_original_sample.numpy()

    # DDPM (fixed_small variance): a middle step and the last, with the noise the scheduler draws.
    from diffusers import DDPMScheduler

    ddpm = DDPMScheduler(**sd, clip_sample=False)
    ddpm.set_timesteps(50)
    for name, step_t in [("ddpm_mid", 500), ("ddpm_last", 0)]:
        t[f"{name}_noise"] = torch.randn(sample.shape, generator=torch.Generator().manual_seed(3)).numpy()
        o = ddpm.step(torch.from_numpy(eps), step_t, torch.from_numpy(sample), generator=torch.Generator().manual_seed(3))
        t[f"{name}_prev"] = o.prev_sample.numpy()
        t[f"{name}_x0"] = o.pred_original_sample.numpy()

    # RePaint: the jump schedule (250 steps, jump 10 x 10) and one step / undo step with given noise.
    # Latents are not bounded: no x0 clipping (RePaintScheduler clips by default, for pixels).
    rp = RePaintScheduler(**sd, clip_sample=False)
    rp.set_timesteps(250, jump_length=10, jump_n_sample=10)
    t["repaint_timesteps"] = rp.timesteps.numpy().astype(np.int64)
    known = rng.standard_normal((2, 4, 6, 10)).astype(np.float32)
    mask = (rng.random((2, 1, 6, 10)) < 0.5).astype(np.float32)  # diffusers: 1 = keep (known)
    # RePaintScheduler draws its noise from the generator: record the same draws.
    step_noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(0))
    o = rp.step(torch.from_numpy(eps), 500, torch.from_numpy(sample), torch.from_numpy(known), torch.from_numpy(mask), generator=torch.Generator().manual_seed(0))
    t.update(repaint_known=known, repaint_mask=mask, repaint_step_noise=step_noise.numpy())
    t["repaint_prev"] = o.prev_sample.numpy()
    t["repaint_x0"] = o.pred_original_sample.numpy()
    # undo_step walks 1000 // 250 = 4 training steps up from t = 496, one draw each.
    g = torch.Generator().manual_seed(1)
    t["undo_noise"] = torch.stack([torch.randn(sample.shape, generator=g) for _ in range(4)]).numpy()
    t["undo"] = rp.undo_step(torch.from_numpy(sample), 496, generator=torch.Generator().manual_seed(1)).numpy()
    save(out, "schedulers", t, group="sampling")

# Every scheduler over whole runs: the classes and options hd-painter implements, each for 1, 2,
# 7, 20, 25 and 50 steps, on SD's scaled-linear schedule. The model outputs and the noise of the
# stochastic steps are given (one random tensor per call), so that each step is checked alone.
SCHEDULER_STEPS = [1, 2, 7, 20, 25, 50]
SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def scheduler_configs():
    from diffusers import (DDIMScheduler, DDPMScheduler, DEISMultistepScheduler, DPMSolverMultistepScheduler,
                           EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, LCMScheduler, PNDMScheduler,
                           UniPCMultistepScheduler)

    sd = dict(SD_BETAS)
    leading = dict(timestep_spacing="leading", steps_offset=1)
    return {
        "ddim": (DDIMScheduler(**sd, **leading, clip_sample=False, set_alpha_to_one=False), {}),
        "ddim_trailing_v_eta": (DDIMScheduler(**sd, timestep_spacing="trailing", prediction_type="v_prediction", clip_sample=False), {"eta": 0.3}),
        "ddpm": (DDPMScheduler(**sd, **leading, clip_sample=False), {}),
        "pndm": (PNDMScheduler(**sd, **leading, skip_prk_steps=True, set_alpha_to_one=False), {}),
        "pndm_linspace": (PNDMScheduler(**sd, timestep_spacing="linspace", skip_prk_steps=True), {}),
        "euler": (EulerDiscreteScheduler(**sd), {}),
        "euler_karras_leading": (EulerDiscreteScheduler(**sd, **leading, use_karras_sigmas=True), {}),
        "euler_v_sigma_min": (EulerDiscreteScheduler(**sd, timestep_spacing="trailing", prediction_type="v_prediction", final_sigmas_type="sigma_min"), {}),
        "euler_zero_snr": (EulerDiscreteScheduler(**sd, timestep_spacing="trailing", prediction_type="v_prediction", rescale_betas_zero_snr=True), {}),
        "euler_a": (EulerAncestralDiscreteScheduler(**sd), {}),
        "euler_a_leading_v": (EulerAncestralDiscreteScheduler(**sd, **leading, prediction_type="v_prediction"), {}),
        "dpm2m": (DPMSolverMultistepScheduler(**sd), {}),
        "dpm2m_karras": (DPMSolverMultistepScheduler(**sd, use_karras_sigmas=True), {}),
        "dpm2m_sde_karras": (DPMSolverMultistepScheduler(**sd, use_karras_sigmas=True, algorithm_type="sde-dpmsolver++"), {}),
        "dpm2m_heun_sigma_min": (DPMSolverMultistepScheduler(**sd, **leading, solver_type="heun", final_sigmas_type="sigma_min", lower_order_final=False), {}),
        "dpm1_trailing_v": (DPMSolverMultistepScheduler(**sd, timestep_spacing="trailing", solver_order=1, prediction_type="v_prediction"), {}),
        "deis": (DEISMultistepScheduler(**sd), {}),
        "deis_karras_leading": (DEISMultistepScheduler(**sd, **leading, use_karras_sigmas=True), {}),
        "deis_order1_trailing_v": (DEISMultistepScheduler(**sd, timestep_spacing="trailing", solver_order=1, prediction_type="v_prediction"), {}),
        "unipc": (UniPCMultistepScheduler(**sd), {}),
        "unipc_karras_bh1": (UniPCMultistepScheduler(**sd, use_karras_sigmas=True, solver_type="bh1", final_sigmas_type="sigma_min"), {}),
        "unipc_leading_order1": (UniPCMultistepScheduler(**sd, **leading, solver_order=1), {}),
        "lcm": (LCMScheduler(**sd), {}),
        "lcm_v": (LCMScheduler(**sd, prediction_type="v_prediction", timestep_scaling=5.0), {}),
    }


def gen_scheduler_runs(out, rng):
    from diffusers import (DEISMultistepScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           EulerDiscreteScheduler, UniPCMultistepScheduler)
    from diffusers.schedulers import scheduling_ddpm, scheduling_euler_ancestral_discrete, scheduling_lcm

    sigma_classes = (DEISMultistepScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                     EulerDiscreteScheduler, UniPCMultistepScheduler)

    shape = (1, 4, 4, 4)
    calls = max(SCHEDULER_STEPS) + 1
    outputs = rng.standard_normal((calls, *shape)).astype(np.float32)
    noises = rng.standard_normal((calls, *shape)).astype(np.float32)
    x_t = rng.standard_normal(shape).astype(np.float32)
    t = {"outputs": outputs, "noises": noises, "x_t": x_t}
    # The stochastic steps draw with `randn_tensor`: hand them the call's given noise instead
    # (restored afterwards, for the groups that follow).
    current = {"noise": None}
    patched = (scheduling_ddpm, scheduling_euler_ancestral_discrete, scheduling_lcm)
    originals = [m.randn_tensor for m in patched]
    for module in patched:
        module.randn_tensor = lambda *a, **k: current["noise"].clone()
    try:
        scheduler_runs(t, x_t, outputs, noises, current, sigma_classes)
    finally:
        for module, original in zip(patched, originals):
            module.randn_tensor = original
    save(out, "scheduler_runs", t, group="sampling")


def scheduler_runs(t, x_t, outputs, noises, current, sigma_classes):
    """Every configuration's runs into `t`, `current["noise"]` set to each call's given noise."""
    import torch

    for name, (sched, kwargs) in scheduler_configs().items():
        for steps in SCHEDULER_STEPS:
            sched.set_timesteps(steps)
            key = f"{name}_{steps}"
            t[f"{key}_timesteps"] = sched.timesteps.numpy().astype(np.float64)
            if isinstance(sched, sigma_classes):
                t[f"{key}_sigmas"] = np.asarray(sched.sigmas, dtype=np.float64)
            t[f"{key}_init"] = np.array([float(sched.init_noise_sigma)], dtype=np.float64)
            sample = torch.from_numpy(x_t) * sched.init_noise_sigma
            samples, scales = [], []
            for i, ts in enumerate(sched.timesteps):
                scales.append(float(sched.scale_model_input(torch.ones(1), ts)[0]))
                current["noise"] = torch.from_numpy(noises[i])
                extra = dict(kwargs)
                if "eta" in kwargs or getattr(sched.config, "algorithm_type", "") == "sde-dpmsolver++":
                    extra["variance_noise"] = torch.from_numpy(noises[i])
                sample = sched.step(torch.from_numpy(outputs[i]), ts, sample, **extra).prev_sample
                samples.append(sample.numpy().copy())
            t[f"{key}_scales"] = np.array(scales, dtype=np.float64)
            t[f"{key}_samples"] = np.stack(samples).astype(np.float32)


def gen_scheduler_pipelines(out, rng):
    """The methods with other schedulers on the tiny models. diffusers' StableDiffusionInpaintPipeline
    on the 9-channel UNet with DPM++ 2M Karras, Euler a (its per-step noise given) and UniPC, each
    made with `from_config` of the folder's DDIM config, 6 steps, CFG 7.5: latents after every step.
    Blended Latent Diffusion's loop (as `gen_blended`) with DPM++ 2M, and BrushNet's loop (as
    `gen_brushnet`, the committed branch) with UniPC."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           StableDiffusionInpaintPipeline, UNet2DConditionModel, UniPCMultistepScheduler)
    from diffusers.schedulers import scheduling_euler_ancestral_discrete
    from safetensors.torch import load_file

    import brushnet_ref as ref

    models = out / "models"
    folder = DDIMScheduler.from_pretrained(models / "pipeline_inpaint" / "scheduler").config
    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    t = {}
    vae = AutoencoderKL.from_pretrained(models / "vae_sd")
    unet = UNet2DConditionModel.from_pretrained(models / "unet_sd15_inpaint")
    h, w, steps = 32, 48, 6
    image = f(rng.uniform(-1, 1, (1, 3, h, w)))
    mask = torch.zeros(1, 1, h, w)
    mask[:, :, 8:26, 12:40] = 1.0
    with torch.no_grad():
        masked_latents = vae.encode(image * (mask < 0.5)).latent_dist.mean * vae.config.scaling_factor
    latents = f(rng.standard_normal((1, 4, h // 2, w // 2)))
    positive, negative = f(rng.standard_normal((1, 77, 32))), f(rng.standard_normal((1, 77, 32)))
    noises = f(rng.standard_normal((steps, 1, 4, h // 2, w // 2)))
    t.update(image=image.numpy(), mask=mask.numpy(), masked_latents=masked_latents.numpy(), latents=latents.numpy(),
             positive=positive.numpy(), negative=negative.numpy(), noises=noises.numpy())
    drawn = iter(noises)
    original = scheduling_euler_ancestral_discrete.randn_tensor
    scheduling_euler_ancestral_discrete.randn_tensor = lambda *a, **k: next(drawn).clone()
    for name, scheduler in [
        ("dpm2m_karras", DPMSolverMultistepScheduler.from_config(folder, use_karras_sigmas=True)),
        ("euler_a", EulerAncestralDiscreteScheduler.from_config(folder)),
        ("unipc", UniPCMultistepScheduler.from_config(folder)),
    ]:
        pipe = StableDiffusionInpaintPipeline(
            vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        per_step = []
        with torch.no_grad():
            pipe(prompt_embeds=positive, negative_prompt_embeds=negative, image=(image + 1) / 2, mask_image=mask,
                 masked_image_latents=masked_latents, latents=latents, height=h, width=w, num_inference_steps=steps,
                 guidance_scale=7.5, output_type="latent",
                 callback_on_step_end=lambda p, i, ts, kw: per_step.append(kw["latents"].clone()) or kw)
        t[f"inpaint.{name}.timesteps"] = scheduler.timesteps.numpy().astype(np.float64)
        t[f"inpaint.{name}"] = torch.stack(per_step).numpy()
    scheduling_euler_ancestral_discrete.randn_tensor = original

    # Blended with DPM++ 2M: the known region noised to the step's own timestep after each step.
    unet4 = UNet2DConditionModel.from_pretrained(models / "unet_sd2")
    scheduler = DPMSolverMultistepScheduler.from_config(folder)
    scheduler.set_timesteps(8)
    shape = (1, 4, 12, 20)
    source, x = f(rng.standard_normal(shape)), f(rng.standard_normal(shape))
    hole = torch.zeros(1, 1, 12, 20)
    hole[:, :, 3:9, 5:15] = 1.0
    t.update({"blended.source": source.numpy(), "blended.mask": hole.numpy(), "blended.latents": x.numpy()})
    noises, per_step = [], []
    with torch.no_grad():
        for ts in scheduler.timesteps:
            out_ = unet4(torch.cat([x] * 2), ts, encoder_hidden_states=torch.cat([negative, positive])).sample
            u, c = out_.chunk(2)
            x = scheduler.step(u + 7.5 * (c - u), ts, x).prev_sample
            noise = f(rng.standard_normal(shape))
            x = x * hole + scheduler.add_noise(source, noise, ts.reshape(1)) * (1 - hole)
            noises.append(noise)
            per_step.append(x.clone())
    t["blended.noise"] = torch.stack(noises).numpy()
    t["blended.steps"] = torch.stack(per_step).numpy()

    # BrushNet with UniPC, the branch on both guidance halves over the whole run.
    bn = ref.BrushNet.from_unet(unet4).eval()
    bn.load_state_dict(load_file(str(models / "brushnet" / "diffusion_pytorch_model.safetensors")))
    scheduler = UniPCMultistepScheduler.from_config(folder)
    scheduler.set_timesteps(4)
    hh, ww = 8, 12
    cond = torch.cat([f(rng.standard_normal((1, 4, hh, ww))), f((rng.random((1, 1, hh, ww)) > 0.4).astype(np.float32))], 1)
    x = f(rng.standard_normal((1, 4, hh, ww)))
    t.update({"brushnet.condition": cond.numpy(), "brushnet.latents": x.numpy()})
    per_step = []
    with torch.no_grad():
        for ts in scheduler.timesteps:
            x2 = torch.cat([x] * 2)
            down, mid, up = bn(x2, int(ts), torch.cat([cond] * 2), 0.8)
            u, c = ref.unet_forward(unet4, x2, int(ts), torch.cat([negative, positive]), down, mid, up).chunk(2)
            x = scheduler.step(u + 7.5 * (c - u), ts, x).prev_sample
            per_step.append(x.clone())
    t["brushnet.steps"] = torch.stack(per_step).numpy()
    save(out, "scheduler_pipelines", t, group="sampling")


def gen_stable_inpaint(out, rng):
    """diffusers' StableDiffusionInpaintPipeline on the tiny 9-channel UNet, SD 2 style: 5 DDIM
    steps, CFG 7.5, given prompt embeddings, initial noise and masked-image latents (the posterior
    mean, as HD-Painter uses), final and per-step latents."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel

    models = out / "models"
    vae = AutoencoderKL.from_pretrained(models / "vae_sd")
    unet = UNet2DConditionModel.from_pretrained(models / "unet_sd15_inpaint")
    scheduler = DDIMScheduler.from_pretrained(models / "pipeline_inpaint" / "scheduler")
    pipe = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    h, w = 32, 48
    image = torch.from_numpy(rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32))
    mask = torch.zeros(1, 1, h, w)
    mask[:, :, 8:26, 12:40] = 1.0
    masked = image * (mask < 0.5)
    with torch.no_grad():
        masked_latents = vae.encode(masked).latent_dist.mean * vae.config.scaling_factor
    latents = torch.from_numpy(rng.standard_normal((1, 4, h // 2, w // 2)).astype(np.float32))
    positive = torch.from_numpy(rng.standard_normal((1, 77, 32)).astype(np.float32))
    negative = torch.from_numpy(rng.standard_normal((1, 77, 32)).astype(np.float32))
    steps = []

    def record(pipe, i, t, kwargs):
        steps.append(kwargs["latents"].clone())
        return kwargs

    with torch.no_grad():
        final = pipe(
            prompt_embeds=positive, negative_prompt_embeds=negative, image=(image + 1) / 2, mask_image=mask,
            masked_image_latents=masked_latents, latents=latents, height=h, width=w,
            num_inference_steps=5, guidance_scale=7.5, eta=0.0, output_type="latent",
            callback_on_step_end=record,
        ).images
    save(out, "stable_inpaint", {
        "image": image.numpy(), "mask": mask.numpy(), "masked_latents": masked_latents.numpy(),
        "latents": latents.numpy(), "positive": positive.numpy(), "negative": negative.numpy(),
        "timesteps": scheduler.timesteps.numpy().astype(np.int64),
        "step_latents": torch.stack(steps).numpy(), "final": final.numpy(),
    }, group="sampling")


def gen_blended(out, rng):
    """Blended Latent Diffusion's loop (the paper's SD code, as the spec states it) on the tiny
    4-channel UNet with diffusers' DDIMScheduler: after each step the known region is replaced by
    the source latents noised to the step's timestep with fresh noise; the first 25% of the
    steps skipped. Per-step noise and latents recorded."""
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel

    models = out / "models"
    unet = UNet2DConditionModel.from_pretrained(models / "unet_sd2")
    scheduler = DDIMScheduler.from_pretrained(models / "pipeline_inpaint" / "scheduler")
    steps, skip, g = 8, 0.25, 7.5
    scheduler.set_timesteps(steps)
    shape = (1, 4, 12, 20)
    source = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    mask = torch.zeros(1, 1, 12, 20)
    mask[:, :, 3:9, 5:15] = 1.0  # 1 = edit
    latents = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    positive = torch.from_numpy(rng.standard_normal((1, 77, 32)).astype(np.float32))
    negative = torch.from_numpy(rng.standard_normal((1, 77, 32)).astype(np.float32))
    initial = latents.clone()
    noises, per_step = [], []
    with torch.no_grad():
        for t in scheduler.timesteps[int(len(scheduler.timesteps) * skip):]:
            out_ = unet(torch.cat([latents] * 2), t, encoder_hidden_states=torch.cat([negative, positive])).sample
            u, c = out_.chunk(2)
            latents = scheduler.step(u + g * (c - u), t, latents).prev_sample
            noise = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
            noised = scheduler.add_noise(source, noise, t.reshape(1))
            latents = latents * mask + noised * (1 - mask)
            noises.append(noise)
            per_step.append(latents.clone())
    save(out, "blended", {
        "source": source.numpy(), "mask": mask.numpy(), "latents": initial.numpy(),
        "positive": positive.numpy(), "negative": negative.numpy(),
        "noise": torch.stack(noises).numpy(), "step_latents": torch.stack(per_step).numpy(),
    }, group="sampling")


def gen_repaint(out, rng):
    """RePaint on the tiny 4-channel UNet with CFG, following the spec with diffusers'
    RePaintScheduler (10 steps over a 100-step schedule, to keep the recorded noise small; jumps
    of 3, 2 samples): diffusers' known-region mode
    (merge after each step with the step's noise) and the official code's (re-noise the known
    region before each model call, plain DDIM step). Every noise draw is recorded in order."""
    import torch
    from diffusers import RePaintScheduler, UNet2DConditionModel

    models = out / "models"
    unet = UNet2DConditionModel.from_pretrained(models / "unet_sd2")
    g_scale = 7.5
    shape = (1, 4, 12, 20)
    known = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    keep = torch.ones(1, 1, 12, 20)
    keep[:, :, 3:9, 5:15] = 0.0  # 1 = known
    start = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    positive = torch.from_numpy(rng.standard_normal((1, 77, 32)).astype(np.float32))
    negative = torch.from_numpy(rng.standard_normal((1, 77, 32)).astype(np.float32))
    t = {"known": known.numpy(), "keep": keep.numpy(), "latents": start.numpy(), "positive": positive.numpy(), "negative": negative.numpy()}

    def eps(x, step_t):
        o = unet(torch.cat([x, x]), step_t, encoder_hidden_states=torch.cat([negative, positive])).sample
        u, c = o.chunk(2)
        return u + g_scale * (c - u)

    for mode in ["merge_after", "renoise_before"]:
        rp = RePaintScheduler(num_train_timesteps=100, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)
        rp.set_timesteps(10, jump_length=3, jump_n_sample=2)
        gen = torch.Generator().manual_seed(5)
        draws = []

        def peek(count):
            g2 = torch.Generator()
            g2.set_state(gen.get_state())
            draws.extend(torch.randn(shape, generator=g2) for _ in range(count))

        x = start.clone()
        t_last = int(rp.timesteps[0]) + 1
        with torch.no_grad():
            for step_t in rp.timesteps.tolist():
                if step_t < t_last:
                    if mode == "merge_after":
                        peek(1)
                        x = rp.step(eps(x, step_t), step_t, x, known, keep, generator=gen).prev_sample
                    else:
                        peek(1)
                        z = torch.randn(shape, generator=gen)
                        a = rp.alphas_cumprod[step_t]
                        x = keep * (a**0.5 * known + (1 - a) ** 0.5 * z) + (1 - keep) * x
                        e = eps(x, step_t)
                        prev = step_t - 100 // 10
                        a_prev = rp.alphas_cumprod[prev] if prev >= 0 else rp.final_alpha_cumprod
                        x0 = (x - (1 - a) ** 0.5 * e) / a**0.5
                        x = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * e
                else:
                    peek(100 // 10)
                    x = rp.undo_step(x, t_last, generator=gen)
                t_last = step_t
        t[f"{mode}_noise"] = torch.stack(draws).numpy()
        t[f"{mode}_final"] = x.numpy()
    t["timesteps"] = rp.timesteps.numpy().astype(np.int64)
    save(out, "repaint", t, group="sampling")


HD_PAINTER_UNET = dict(
    # SD-like levels, so that PAIntA (latent/2, latent/4) and RASG (latent/4) have layers:
    # 9 channels, linear projections, four levels of which three attend.
    in_channels=9,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(8, 16, 16, 16),
    layers_per_block=1,
    attention_head_dim=(2, 4, 4, 4),
    use_linear_projection=True,
)
HD_PAINTER_POSITIVE = "Full HD, 4K, high quality, high resolution"


def gen_hd_painter(out, rng):
    """HD-Painter's four methods (baseline, PAIntA, RASG, PAIntA + RASG) for 5 steps on the
    999 - 200k grid (crossing PAIntA's t > 500 gate) with CFG 7.5, on a tiny SD-like 9-channel
    UNet, with tools/reference/hd_painter_ref.py: latents and x0 after every step, RASG's
    normalised gradients, PAIntA's scale maps of the first step. Plus the official prompt token
    indices for a few prompts on the real CLIP vocabulary."""
    import json

    import torch
    from diffusers import UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPTokenizer

    import hd_painter_ref as ref

    tok = CLIPTokenizer(vocab=str(out / "tokenizer" / "vocab.json"), merges=str(out / "tokenizer" / "merges.txt"))
    long_prompt = " ".join(["a very detailed photograph of an old wooden boat"] * 12)
    cases = []
    for prompt in ["a red leather sofa", "", "A cat, sitting", long_prompt]:
        full = f"{prompt}, {HD_PAINTER_POSITIVE}"
        cases.append({"prompt": prompt, "full_prompt": full, "indices": ref.prompt_token_indices(tok, prompt, full)})
        cases.append({"prompt": prompt, "full_prompt": prompt, "indices": ref.prompt_token_indices(tok, prompt, prompt)})
    (out / "sampling").mkdir(parents=True, exist_ok=True)
    with open(out / "sampling" / "hd_painter_prompts.json", "w", encoding="utf-8") as f:
        json.dump({"positive": HD_PAINTER_POSITIVE, "cases": cases}, f, indent=0)

    torch.manual_seed(int(rng.integers(0, 2**31)))
    unet = UNet2DConditionModel(sample_size=16, out_channels=4, cross_attention_dim=32, norm_num_groups=4, **HD_PAINTER_UNET).eval()
    randomize_norms(unet, torch)
    unet.requires_grad_(False)
    unet.save_pretrained(out / "models" / "unet_hd_painter", safe_serialization=True)

    lh, lw = 16, 24
    pixel = synthetic_mask(8 * lh, 8 * lw, soft=False)
    latent_mask = torch.from_numpy((np.asarray(Image.fromarray(pixel).resize((lw, lh), Image.BICUBIC)) > 0).astype(np.float32)).reshape(1, 1, lh, lw)
    masked = torch.from_numpy(rng.standard_normal((1, 4, lh, lw)).astype(np.float32))
    latents = torch.from_numpy(rng.standard_normal((1, 4, lh, lw)).astype(np.float32))
    positive = torch.from_numpy(rng.standard_normal((1, 77, 32)).astype(np.float32))
    negative = torch.from_numpy(rng.standard_normal((1, 77, 32)).astype(np.float32))
    tokens = [1, 2, 3, 4, 9]
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    t = {"pixel_mask": pixel, "latent_mask": latent_mask.numpy(), "masked_latents": masked.numpy(), "latents": latents.numpy(),
         "positive": positive.numpy(), "negative": negative.numpy(), "tokens": np.array(tokens, dtype=np.int64)}
    methods = {"baseline": (False, None), "painta": (True, None), "rasg": (False, (0.1, "official")), "painta_rasg": (True, (1.0, "paper"))}
    for name, (painta, rasg) in methods.items():
        state = ref.State((lh, lw), Image.fromarray(pixel), tokens, guided=True)
        state.painta = painta
        ref.install(unet, state)
        per_step, x0s, grads, scales = ref.sample(
            unet, betas, latents, torch.cat([latent_mask, masked], 1), torch.cat([negative, positive]), state, steps=5, guidance=7.5, rasg=rasg)
        t[f"{name}_latents"] = torch.stack(per_step).numpy()
        t[f"{name}_x0"] = torch.stack(x0s).numpy()
        if grads:
            t[f"{name}_grads"] = torch.stack(grads).numpy()
        if scales:
            t[f"{name}_scales"] = torch.cat([s.reshape(-1) for s in scales]).numpy()
            t[f"{name}_scale_sizes"] = np.array([s.numel() for s in scales], dtype=np.int64)
    save(out, "hd_painter", t, group="sampling")


def hd_painter_poisson_blend(orig, fake, mask, pad=32, dilation=48):
    """HD-Painter's src/utils poisson_blend, restated: both images reflect-padded by 32 px, the
    original's padding frame taken from the generated image, the mask zero-padded and dilated
    with a 48 x 48 box, then OpenCV's NORMAL_CLONE at the dilated mask's bounding-box centre."""
    import cv2

    cfg = ((pad, pad), (pad, pad), (0, 0))
    fake_p = np.pad(fake, cfg, mode="reflect")
    orig_p = np.pad(orig, cfg, mode="reflect")
    orig_p[:pad], orig_p[:, :pad], orig_p[-pad:], orig_p[:, -pad:] = fake_p[:pad], fake_p[:, :pad], fake_p[-pad:], fake_p[:, -pad:]
    dmask = cv2.dilate(np.pad(mask, cfg[:2], mode="constant"), np.ones((dilation, dilation), np.uint8), iterations=1)
    x, y, w, h = cv2.boundingRect(dmask)
    out = cv2.seamlessClone(fake_p, orig_p, dmask, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    return out[pad:-pad, pad:-pad]


# OpenCV 5.0's seamlessClone writes into a single-channel mask it is given (it zeroes the border,
# erodes and inverts the mask in place), so every call gets its own copy.


def gen_poisson(out, rng):
    """OpenCV's seamlessClone (NORMAL_CLONE, at the mask's bounding-box centre) of a textured
    generated image into a textured original, with a non-convex mask inside the image and one
    touching the border; and HD-Painter's poisson_blend wrapper on the same inputs."""
    import cv2

    h, w = 96, 128
    orig = synthetic_rgb(rng, h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    fake = np.clip(np.rint(np.stack([
        140 + 80 * np.sin(xx / 5.0 + c) * np.sin(yy / 7.0 - c) + rng.normal(0, 10, (h, w)) for c in range(3)
    ], -1)), 0, 255).astype(np.uint8)
    # A "C": a ring with a bite, away from the border.
    r = np.hypot(xx - 60.0, yy - 48.0)
    inside = ((r > 12) & (r < 30) & ~((xx > 62) & (np.abs(yy - 48) < 9))).astype(np.uint8) * 255
    # Two bars, one of them running into the left and bottom borders.
    border = np.zeros((h, w), np.uint8)
    border[40:58, 0:70] = 255
    border[60:96, 90:104] = 255
    t = {"original": orig, "generated": fake, "mask_inside": inside, "mask_border": border}
    for name, m in [("inside", inside), ("border", border)]:
        x, y, bw, bh = cv2.boundingRect(m)
        t[f"clone_{name}"] = cv2.seamlessClone(fake, orig, m.copy(), (x + bw // 2, y + bh // 2), cv2.NORMAL_CLONE)
        t[f"blend_{name}"] = hd_painter_poisson_blend(orig, fake, m.copy())
    save(out, "poisson", t, group="sr")


def gen_sr(out, rng):
    """HD-Painter's SR loop (METHODS.md section 5) on diffusers' components: the tiny x4 UNet
    (class label = noise level 20) and f=4 VAE; the low-res image noised with the upscaler's
    low-res scheduler (diffusers' DDPMScheduler, scaled_linear 1e-4..0.02) at noise level 20;
    3 v-prediction DDIM steps on the 999 - 333k grid with CFG 7.5; after every step's x0
    prediction, x0 <- x0 m + hr_z0 (1 - m), the next latent from the blended x0 and the unblended
    eps. Per-step latents and (blended) x0 recorded."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    models = out / "models"
    unet = UNet2DConditionModel.from_pretrained(models / "unet_x4")
    vae = AutoencoderKL.from_pretrained(models / "vae_x4")
    h, w, level, g, steps = 16, 20, 20, 7.5, 3
    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    lr = f(rng.uniform(-1, 1, (1, 3, h, w)))
    hr = f(rng.uniform(-1, 1, (1, 3, 4 * h, 4 * w)))
    yy, xx = np.mgrid[0:h, 0:w]
    mask = f(np.clip(1.5 - np.hypot(yy - 7.0, xx - 9.0) / 4.0, 0, 1)[None, None])  # a soft blob
    lr_noise = f(rng.standard_normal((1, 3, h, w)))
    latents = f(rng.standard_normal((1, 4, h, w)))
    positive, negative = f(rng.standard_normal((1, 77, 32))), f(rng.standard_normal((1, 77, 32)))
    with torch.no_grad():
        hr_z0 = vae.encode(hr).latent_dist.mean * vae.config.scaling_factor
        low = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02)
        noisy_lr = low.add_noise(lr, lr_noise, torch.tensor([level]))
        betas = torch.linspace(0.0001**0.5, 0.02**0.5, 1000, dtype=torch.float64) ** 2
        a_bar = torch.cumprod(1 - betas, 0)
        dt = 1000 // steps
        zt, per_step, x0s = latents.clone(), [], []
        for t in range(999, 0, -dt):
            zin = torch.cat([zt, noisy_lr], 1)
            o = unet(torch.cat([zin, zin]), torch.tensor([t, t]), encoder_hidden_states=torch.cat([negative, positive]),
                     class_labels=torch.tensor([level, level])).sample
            u, c = o.chunk(2)
            v = u + g * (c - u)
            a_t, a_p = a_bar[t], a_bar[max(t - dt, 0)]
            eps = a_t.sqrt() * v + (1 - a_t).sqrt() * zt
            z0 = a_t.sqrt() * zt - (1 - a_t).sqrt() * v
            z0 = z0 * mask + hr_z0 * (1 - mask)
            zt = (a_p.sqrt() * z0 + (1 - a_p).sqrt() * eps).float()
            per_step.append(zt.clone())
            x0s.append(z0.float().clone())
    save(out, "sr_loop", {
        "lr": lr.numpy(), "hr": hr.numpy(), "hr_z0": hr_z0.numpy(), "mask": mask.numpy(), "lr_noise": lr_noise.numpy(),
        "noisy_lr": noisy_lr.numpy(), "latents": latents.numpy(), "positive": positive.numpy(), "negative": negative.numpy(),
        "step_latents": torch.stack(per_step).numpy(), "step_x0": torch.stack(x0s).numpy(),
    }, group="sr")


def gen_vae_tiled(out, rng):
    """diffusers' VAE tiling (`enable_tiling()`, overlap 0.25) on the tiny f=4 VAE with 32 px
    tiles: the posterior of a 72x104 image and the decoding of 18x26 latents, both several tiles
    each way with partial tiles at the edges."""
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(out / "models" / "vae_x4")
    vae.enable_tiling()
    vae.tile_sample_min_size, vae.tile_latent_min_size = 32, 8
    image = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 72, 104)).astype(np.float32))
    latents = torch.from_numpy(rng.standard_normal((1, 4, 18, 26)).astype(np.float32))
    with torch.no_grad():
        posterior = vae.encode(image).latent_dist
        decoded = vae.decode(latents).sample
    save(out, "vae_tiled", {
        "image": image.numpy(), "mean": posterior.mean.numpy(), "logvar": posterior.logvar.numpy(),
        "latents": latents.numpy(), "decoded": decoded.numpy(),
    }, group="sr")


def gen_brushnet(out, rng):
    """BrushNet (tools/reference/brushnet_ref.py, following the official fork) on the tiny
    4-channel SD UNet: `from_unet`'s branch features; a branch with trained-like (random) zero
    convolutions and mask channel saved in the published key layout with the official config
    keys; its residuals at conditioning scale 0.8 and the base UNet's noise prediction with them;
    3 DDIM steps with CFG 7.5 (diffusers' DDIMScheduler) and the control window 0.3 - 1 (the first
    step runs without the branch), the branch run on both guidance halves as the official
    pipeline does; the official output blend (OpenCV 21x21 Gaussian of the hole,
    m = 1 - (1 - M)(1 - b), truncated)."""
    import json

    import cv2
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from safetensors.torch import save_file

    import brushnet_ref as ref

    models = out / "models"
    torch.manual_seed(int(rng.integers(0, 2**31)))
    unet = UNet2DConditionModel.from_pretrained(models / "unet_sd2").eval()
    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    h, w = 8, 12
    sample = f(rng.standard_normal((1, 4, h, w)))
    masked = f(rng.standard_normal((1, 4, h, w)))
    known = f((rng.random((1, 1, h, w)) > 0.4).astype(np.float32))
    cond = torch.cat([masked, known], 1)
    ehs = f(rng.standard_normal((1, 77, 32)))
    neg = f(rng.standard_normal((1, 77, 32)))
    t = {"sample": sample.numpy(), "condition": cond.numpy(), "encoder_hidden_states": ehs.numpy(), "negative": neg.numpy()}
    with torch.no_grad():
        # The walk of the base UNet without added samples is diffusers' own forward.
        plain = ref.unet_forward(unet, sample, 500, ehs)
        assert torch.allclose(plain, unet(sample, 500, encoder_hidden_states=ehs).sample, atol=1e-5)
        bn = ref.BrushNet.from_unet(unet).eval()
        down, mid, up = bn.features(sample, 500, cond)
        t.update({f"from_unet.down.{i}": d.numpy() for i, d in enumerate(down)})
        t.update({f"from_unet.up.{i}": u.numpy() for i, u in enumerate(up)})
        t["from_unet.mid"] = mid.numpy()
        # Trained BrushNets have non-zero 1x1 convolutions and a mask channel.
        for m in [bn.brushnet_mid_block, *bn.brushnet_down_blocks, *bn.brushnet_up_blocks]:
            m.weight.normal_(0, 0.3)
            m.bias.normal_(0, 0.1)
        bn.conv_in_condition.weight[:, 8].normal_(0, 0.3)
        d = models / "brushnet"
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in bn.state_dict().items()}, str(d / "diffusion_pytorch_model.safetensors"))
        c = unet.config
        config = {"_class_name": "BrushNetModel", "_diffusers_version": "0.27.0.dev0", "act_fn": "silu", "addition_embed_type": None,
                  "addition_embed_type_num_heads": 64, "addition_time_embed_dim": None, "attention_head_dim": list(c.attention_head_dim),
                  "block_out_channels": list(c.block_out_channels), "brushnet_conditioning_channel_order": "rgb", "class_embed_type": None,
                  "conditioning_channels": 5, "conditioning_embedding_out_channels": [16, 32, 96, 256], "cross_attention_dim": c.cross_attention_dim,
                  "down_block_types": ["DownBlock2D"] * len(c.block_out_channels), "downsample_padding": 1, "encoder_hid_dim": None,
                  "encoder_hid_dim_type": None, "flip_sin_to_cos": c.flip_sin_to_cos, "freq_shift": c.freq_shift, "global_pool_conditions": False,
                  "in_channels": 4, "layers_per_block": c.layers_per_block, "mid_block_scale_factor": 1, "mid_block_type": "MidBlock2D",
                  "norm_eps": c.norm_eps, "norm_num_groups": c.norm_num_groups, "num_attention_heads": None, "num_class_embeds": None,
                  "only_cross_attention": False, "projection_class_embeddings_input_dim": None, "resnet_time_scale_shift": "default",
                  "transformer_layers_per_block": 1, "up_block_types": ["UpBlock2D"] * len(c.block_out_channels), "upcast_attention": False,
                  "use_linear_projection": c.use_linear_projection}
        with open(d / "config.json", "w") as fh:
            json.dump(config, fh, indent=2, sort_keys=True)
        down, mid, up = bn(sample, 500, cond, 0.8)
        t.update({f"residuals.down.{i}": x.numpy() for i, x in enumerate(down)})
        t.update({f"residuals.up.{i}": x.numpy() for i, x in enumerate(up)})
        t["residuals.mid"] = mid.numpy()
        t["eps"] = ref.unet_forward(unet, sample, 500, ehs, down, mid, up).numpy()

        scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
        scheduler.set_timesteps(3)
        steps = len(scheduler.timesteps)
        start, end, scale, g = 0.3, 1.0, 1.0, 7.5
        latents = f(rng.standard_normal((1, 4, h, w)))
        t["loop.initial"] = latents.numpy()
        context = torch.cat([neg, ehs])
        for i, ts in enumerate(scheduler.timesteps):
            keep = 1.0 - float(i / steps < start or (i + 1) / steps > end)
            x2 = torch.cat([latents] * 2)
            down, mid, up = bn(x2, int(ts), torch.cat([cond] * 2), scale * keep)
            eps = ref.unet_forward(unet, x2, int(ts), context, down, mid, up)
            u, cnd = eps.chunk(2)
            latents = scheduler.step(u + g * (cnd - u), ts, latents).prev_sample
            t[f"loop.latents.{i}"] = latents.numpy()

    # The official output blend (BrushNet's examples/brushnet/test_brushnet.py).
    hh, ww = 37, 53
    init = rng.integers(0, 256, (hh, ww, 3)).astype(np.uint8)
    gen = rng.integers(0, 256, (hh, ww, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:hh, 0:ww]
    hole = (((yy - 15) ** 2 + (xx - 30) ** 2) < 120).astype(np.float64)[:, :, None]
    blurred = cv2.GaussianBlur(hole * 255, (21, 21), 0) / 255
    m = 1 - (1 - hole) * (1 - blurred[:, :, None])
    t.update({"blend.init": init, "blend.generated": gen, "blend.hole": (hole[:, :, 0] * 255).astype(np.uint8),
              "blend.out": (init * (1 - m) + gen * m).astype(np.uint8)})
    save(out, "brushnet", t, group="models/brushnet")


def gen_crop(out, rng):
    """diffusers' `VaeImageProcessor.get_crop_region` (the box `padding_mask_crop` inpaints) on
    masks with one small hole, holes touching each border, several holes far apart, thin wide and
    tall holes and faint pixels, for paddings and processing sizes of several aspects."""
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    cases, masks = [], {}
    shapes = [(100, 200), (240, 160), (97, 131), (40, 300)]
    for k in range(24):
        h, w = shapes[k % len(shapes)]
        m = np.zeros((h, w), np.uint8)
        for _ in range(1 + k % 3):
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            dy, dx = int(rng.integers(1, max(2, h // 3))), int(rng.integers(1, max(2, w // 2)))
            m[y:y + dy, x:x + dx] = 255 if k % 5 else int(rng.integers(1, 40))
        if k % 7 == 3:
            m[:, -1] = 200  # touches the right border
        masks[f"mask_{k}"] = m
        for pad in (0, 8, 32, 300):
            for size in ((512, 512), (768, 512), (512, 768), (64, 48)):
                box = VaeImageProcessor.get_crop_region(Image.fromarray(m), size[0], size[1], pad=pad)
                cases.append([k, pad, size[0], size[1], *box])
    save(out, "crop", {"cases": np.array(cases, dtype=np.int64), **masks}, group="sampling")


def gen_mask_ops(out, rng):
    """The mask operations before sampling: Pillow's `ImageFilter.GaussianBlur(radius)` (what
    diffusers' `VaeImageProcessor.blur` applies) on soft, binary, noisy and tiny masks for radii
    from 0.3 to 40 (larger than the image), and OpenCV's `cv2.dilate` / `cv2.erode` with
    `np.ones((2p + 1, 2p + 1))` (grow / shrink by p) on masks touching the border."""
    import cv2
    from PIL import Image, ImageFilter

    masks = {"soft": synthetic_mask(45, 31, soft=True), "binary": synthetic_mask(40, 57, soft=False),
             "noise": rng.integers(0, 256, (23, 29)).astype(np.uint8), "tiny": rng.integers(0, 256, (3, 7)).astype(np.uint8),
             "dot": np.pad(np.full((1, 1), 255, np.uint8), ((4, 5), (6, 2)))}
    t = {f"{name}": m for name, m in masks.items()}
    for name, m in masks.items():
        for r in (0.3, 1.0, 2.5, 4.0, 10.0, 40.0):
            t[f"{name}_blur_{r}"] = np.asarray(Image.fromarray(m).filter(ImageFilter.GaussianBlur(r)))
        for p in (1, 3, 8):
            k = np.ones((2 * p + 1, 2 * p + 1), np.uint8)
            t[f"{name}_grow_{p}"] = cv2.dilate(m, k)
            t[f"{name}_shrink_{p}"] = cv2.erode(m, k)
    save(out, "mask_ops", t)


def gen_fill(out, rng):
    """The hole pre-fills of OpenCV's `cv2.inpaint` (Telea and Navier-Stokes, radii 1 to 12) on
    textured RGB images: an elliptic hole with a bar to the right border, holes in the first and
    last rows and columns and in the corners, several small holes, a one-pixel hole, a one-pixel
    wide line, an empty and a full mask, a 1 x 1 and a 2 x 9 image."""
    import cv2

    def texture(h, w):
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        base = np.stack([120 + 80 * np.sin(xx / 5.0) * np.cos(yy / 7.0), 128 + 60 * np.sin((xx + 2 * yy) / 9.0),
                         100 + 90 * np.cos(xx / 3.0 - yy / 11.0)], axis=-1)
        return np.clip(base + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8)

    corners = np.zeros((33, 41), np.uint8)
    corners[:6, :9] = corners[-4:, -7:] = corners[14:19, :3] = corners[:2, 20:27] = 255
    several = np.zeros((36, 48), np.uint8)
    for y, x, s in [(5, 6, 4), (20, 30, 7), (28, 8, 3), (9, 38, 5)]:
        several[y:y + s, x:x + s] = 255
    line = np.zeros((30, 30), np.uint8)
    line[np.arange(3, 27), np.arange(2, 26)] = 200
    dot = np.zeros((15, 17), np.uint8)
    dot[7, 8] = 1
    cases = {"ellipse": synthetic_mask(40, 57, soft=True), "corners": corners, "several": several, "line": line,
             "dot": dot, "empty": np.zeros((9, 11), np.uint8), "full": np.full((8, 10), 255, np.uint8),
             "one": np.full((1, 1), 255, np.uint8), "strip": np.array([[0] * 4 + [255] * 3 + [0] * 2] * 2, np.uint8)}
    t = {}
    for name, m in cases.items():
        image = texture(*m.shape)
        t[f"{name}_image"], t[f"{name}_mask"] = image, m
        for r in (1, 3, 5, 12):
            t[f"{name}_telea_{r}"] = cv2.inpaint(image, m, r, cv2.INPAINT_TELEA)
            t[f"{name}_ns_{r}"] = cv2.inpaint(image, m, r, cv2.INPAINT_NS)
    save(out, "fill", t)


GROUPS = {"resize": gen_resize, "blur": gen_blur, "dilate": gen_dilate, "pad": gen_pad, "tensor": gen_tensor, "files": gen_files, "odd_files": gen_odd_files, "tokenizer": gen_tokenizer, "clip": gen_clip, "clip_projection": gen_clip_projection, "vae": gen_vae, "unet": gen_unet, "pipeline": gen_pipeline, "demo_pipelines": gen_demo_pipelines, "single_file": gen_single_file, "schedulers": gen_schedulers, "scheduler_runs": gen_scheduler_runs, "scheduler_pipelines": gen_scheduler_pipelines, "stable_inpaint": gen_stable_inpaint, "blended": gen_blended, "repaint": gen_repaint, "hd_painter": gen_hd_painter, "poisson": gen_poisson, "sr": gen_sr, "vae_tiled": gen_vae_tiled, "brushnet": gen_brushnet, "crop": gen_crop, "mask_ops": gen_mask_ops, "fill": gen_fill,
          "lora": customise.gen_lora, "prompt_weighting": customise.gen_prompt_weighting,
          "textual_inversion": customise.gen_textual_inversion, "lcm_lora": customise.gen_lcm_lora,
          "sdxl_pipeline": sdxl.gen_sdxl_pipeline, "sdxl_inpaint": sdxl.gen_sdxl_inpaint,
          "sdxl_hd_painter": sdxl.gen_sdxl_hd_painter, "sdxl_base": sdxl.gen_sdxl_base,
          "sdxl_single_file": sdxl.gen_sdxl_single_file}


def generate(out):
    for name, gen in GROUPS.items():
        # One generator per group, each seeded on its own, so groups can change independently.
        gen(out, np.random.default_rng([SEED, sum(map(ord, name))]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare a fresh run with fixtures/")
    args = ap.parse_args()
    if not args.check:
        generate(FIXTURES)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        generate(tmp)
        fresh = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
        different = [str(p) for p in fresh if not (FIXTURES / p).exists() or not filecmp.cmp(tmp / p, FIXTURES / p, shallow=False)]
        print(f"{len(fresh)} files regenerated, {len(different)} differ: {different}")
        return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
