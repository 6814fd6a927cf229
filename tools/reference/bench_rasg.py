#!/usr/bin/env python3
"""PyTorch's side of benches/benches/rasg_full.rs: the full-size SD2-inpainting UNet (random
weights from full_size.py) at a 64x64 latent, one image with CFG (batch 2): a plain guided step
under no_grad, then a RASG step (the same forward with x_t requiring grad, the latent/4
cross-attention logits recorded, hd_painter_ref.py's BCE score and its gradient with respect
to x_t). Every attention runs with torch's scaled_dot_product_attention, as diffusers' default
processor does; the recording layers compute their logits on the side. Median of 3 each, peak
RSS after each phase.

    ~/.cache/hd-painter/venv/bin/python tools/reference/bench_rasg.py [FULL_DIR]
"""

import pathlib
import resource
import sys

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.torch import load_file

import hd_painter_ref as ref
from full_size import median_time

TOKENS = [1, 2, 3, 4, 17]  # as benches/benches/rasg_full.rs


def rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class SdpaRecorder:
    """diffusers' default attention (SDPA) that also keeps RASG's logits where the reference
    processor would."""

    def __init__(self, state):
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q = ref.heads(attn, attn.to_q(hidden_states))
        k, v = (ref.heads(attn, f(context)) for f in (attn.to_k, attn.to_v))
        level = self.state.level(hidden_states.shape[1])
        if self.state.record and encoder_hidden_states is not None and level and level[0] == 4:
            self.state.logits.append((q[1:] @ k[1:].transpose(-1, -2) * attn.scale).mean(1))
        return ref.merge(attn, F.scaled_dot_product_attention(q, k, v))


def main():
    full = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path.home() / ".cache/hd-painter/full")
    unet = UNet2DConditionModel.from_pretrained(full / "unet_sd2_inpainting").eval()
    unet.requires_grad_(False)
    io = load_file(str(full / "unet_io.safetensors"))
    latents, condition = io["sample"][:1, :4], io["sample"][:1, 4:]
    context = io["context"]
    hole = Image.new("L", (512, 512), 0)
    hole.paste(255, (128, 128, 384, 384))
    state = ref.State((64, 64), hole, TOKENS, guided=True)
    unet.set_attn_processor(SdpaRecorder(state))
    t = torch.tensor([979, 979])
    print(f"loaded, peak RSS {rss_gib():.2f} GiB")

    def plain():
        state.record = False
        with torch.no_grad():
            zin = torch.cat([latents, condition], 1)
            u, c = unet(torch.cat([zin, zin]), t, encoder_hidden_states=context).sample.chunk(2)
            return u + 7.5 * (c - u)

    def rasg():
        state.record, state.logits = True, []
        z = latents.clone().requires_grad_(True)
        zin = torch.cat([z, condition], 1)
        u, c = unet(torch.cat([zin, zin]), t, encoder_hidden_states=context).sample.detach().chunk(2)
        score = ref.rasg_score(state.logits, state.mask_at(16, 16), TOKENS)
        (g,) = torch.autograd.grad(score, z)
        return u + 7.5 * (c - u), g / g.std()

    plain_s = median_time(plain, 3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: plain CFG step (batch 2) {plain_s:.2f} s, peak RSS {rss_gib():.2f} GiB")
    rasg_s = median_time(rasg, 3)
    print(f"RASG step (forward + backward, batch 2) {rasg_s:.2f} s ({rasg_s / plain_s:.2f}x plain), peak RSS {rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
