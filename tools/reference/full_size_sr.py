#!/usr/bin/env python3
"""Full-size x4 upscaler UNet and f=4 VAE with random weights, for benches/benches/sr_full.rs
(never committed): writes both in the diffusers layout (once), then times PyTorch fp32 on this
machine for the calls the benchmark times: one guided UNet step (batch 2, class label 20) at the
512 x 512 latent of a 2048 px output, the VAE encode of a 2048 x 2048 image and the decode of its
latents. Peak RSS after each.

    ~/.cache/hd-painter/venv/bin/python tools/reference/full_size_sr.py [--vae | --vae-only |
        --attention QUERIES] [OUT_DIR]

OUT_DIR defaults to ~/.cache/hd-painter/full. The VAE calls are timed only with --vae (after the
UNet step) or --vae-only (without it): at 2048 px the VAE's mid-block attends over 262,144 tokens
(about 140 TFLOP per call), tens of minutes on two CPU cores. --attention QUERIES times only that
attention for its first QUERIES queries (against all 262,144 keys and values, 512 channels, one
head: the scaled_dot_product_attention call diffusers' VAE makes), the part of the VAE call that
`HD_PAINTER_SR_PART=attention` times on our side.
"""

import pathlib
import resource
import sys
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

# stabilityai/stable-diffusion-x4-upscaler's unet/config.json and vae/config.json, as published.
X4_UNET = dict(
    sample_size=128, in_channels=7, out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(256, 512, 512, 1024), layers_per_block=2, attention_head_dim=8,
    cross_attention_dim=1024, use_linear_projection=True, only_cross_attention=(True, True, True, False),
    num_class_embeds=1000, norm_num_groups=32, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0,
)
X4_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    norm_num_groups=32, sample_size=256, scaling_factor=0.08333,
)


def rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main():
    args = sys.argv[1:]
    with_unet = "--vae-only" not in args
    with_vae = "--vae" in args or not with_unet
    attention_queries = int(args[args.index("--attention") + 1]) if "--attention" in args else None
    if attention_queries is not None:
        args = args[: args.index("--attention")] + args[args.index("--attention") + 2 :]
    args = [a for a in args if a not in ("--vae", "--vae-only")]
    out = pathlib.Path(args[0] if args else pathlib.Path.home() / ".cache/hd-painter/full")
    torch.manual_seed(0)
    if not (out / "unet_x4" / "diffusion_pytorch_model.safetensors").exists():
        UNet2DConditionModel(**X4_UNET).eval().save_pretrained(out / "unet_x4", safe_serialization=True)
        AutoencoderKL(**X4_VAE).eval().save_pretrained(out / "vae_x4", safe_serialization=True)
        print("written", out)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    g = torch.Generator().manual_seed(0)
    if attention_queries is not None:
        return attention(attention_queries, g)
    unet = UNet2DConditionModel.from_pretrained(out / "unet_x4").eval()
    vae = AutoencoderKL.from_pretrained(out / "vae_x4").eval()
    print(f"loaded, peak RSS {rss_gib():.2f} GiB")
    with torch.no_grad():
        if with_unet:
            sample = torch.randn(2, 7, 512, 512, generator=g)
            context = torch.randn(2, 77, 1024, generator=g)
            _, s = timed(lambda: unet(sample, torch.tensor([999, 999]), encoder_hidden_states=context,
                                      class_labels=torch.tensor([20, 20])).sample)
            print(f"UNet step, batch 2 at 512x512: {s:.1f} s, peak RSS {rss_gib():.2f} GiB")
        if with_vae:
            image = torch.rand(1, 3, 2048, 2048, generator=g) * 2 - 1
            z, s = timed(lambda: vae.encode(image).latent_dist.mean)
            print(f"VAE encode 2048x2048: {s:.1f} s, peak RSS {rss_gib():.2f} GiB")
            _, s = timed(lambda: vae.decode(z).sample)
            print(f"VAE decode to 2048x2048: {s:.1f} s, peak RSS {rss_gib():.2f} GiB")


def attention(queries, g):
    """The VAE mid-block's attention at 2048 px for its first `queries` queries."""
    tokens, channels = 512 * 512, 512
    q = torch.randn(1, 1, queries, channels, generator=g)
    k = torch.randn(1, 1, tokens, channels, generator=g)
    v = torch.randn(1, 1, tokens, channels, generator=g)
    with torch.no_grad():
        torch.nn.functional.scaled_dot_product_attention(q[:, :, :64], k, v)  # warm-up
        _, s = timed(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    flops = 4 * queries * tokens * channels
    print(f"attention, {queries} queries x {tokens} keys x {channels}: {s:.2f} s, "
          f"{flops / s / 1e9:.0f} GFLOP/s; whole VAE call's attention ({tokens} queries) projected "
          f"{s * tokens / queries:.0f} s")


if __name__ == "__main__":
    main()
