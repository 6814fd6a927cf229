"""Goldens for soft masks (Differential Diffusion) from diffusers' community
`pipeline_stable_diffusion_xl_differential_img2img.py`, its Differential Diffusion loop run as
written, on the repository's tiny 4-channel SD UNet.

Get the community file (never committed to this repository): it is in the diffusers repository,
not in the pip release:

    git clone https://github.com/huggingface/diffusers /tmp/diffusers
    git -C /tmp/diffusers checkout 58eb52c080
    ~/.cache/hd-painter/venv/bin/python tools/reference/differential_reference.py \\
        --community /tmp/diffusers/examples/community [--out fixtures]

The pipeline is SDXL's; what Differential Diffusion adds to it is model-agnostic (the original
noised to every timestep with one noise, the change map's thresholds `i / N`, the reset of the
latents where the map is above the step's threshold). Stubs, so that it runs that loop on a
4-channel SD UNet:
- the UNet is wrapped: SDXL's added conditions (`text_embeds`, `time_ids`) are dropped and the
  tiny SD UNet (`models/unet_sd2`) predicts the noise; the wrapper's config answers the
  pipeline's SDXL size checks;
- the image and the original are passed as latents (4 channels: no VAE encode) and the
  pipeline's `vae_scale_factor` is 1, so its map resize targets the latent size;
- prompt embeddings and pooled embeddings are fixed random tensors (no text encoders).

Writes `sampling/differential.safetensors`: the latents of the image, the map (the soft hole:
1 - map is each pixel's change), the map resized as the pipeline resizes it, the noise it drew,
and for 6 DDIM steps (strength 1, CFG 7.5) the latents entering every step and those leaving the
last.
"""

import argparse
import pathlib
import sys
import types

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEED = 20230601  # Differential Diffusion's arXiv month
STEPS = 6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--community", type=pathlib.Path, required=True, help="diffusers' examples/community folder")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "fixtures")
    args = ap.parse_args()
    sys.path.insert(0, str(args.community))
    generate(args.out)


class UnetAdapter:
    """The tiny SD UNet behind the SDXL pipeline's UNet calls (added conditions dropped)."""

    def __init__(self, unet, torch, pooled_dim, time_dim):
        self.unet, self.inputs = unet, []
        config = dict(unet.config)
        config.update(addition_time_embed_dim=time_dim, time_cond_proj_dim=None)
        self.config = types.SimpleNamespace(**config)
        self.add_embedding = types.SimpleNamespace(
            linear_1=types.SimpleNamespace(in_features=time_dim * 6 + pooled_dim))
        self.dtype, self.device = torch.float32, torch.device("cpu")

    def __call__(self, sample, t, encoder_hidden_states=None, added_cond_kwargs=None, return_dict=False, **kwargs):
        self.inputs.append(sample[: sample.shape[0] // 2].clone())
        return (self.unet(sample, t, encoder_hidden_states=encoder_hidden_states).sample,)


def generate(out):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from safetensors.torch import save_file

    import pipeline_stable_diffusion_xl_differential_img2img as community

    torch.set_num_threads(2)
    rng = np.random.default_rng(SEED)
    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    unet = UNet2DConditionModel.from_pretrained(out / "models" / "unet_sd2").eval()
    h, w = 12, 20
    z0 = f(rng.standard_normal((1, 4, h, w)))
    # The soft hole at 4x the latent size: a hard core, a soft ramp, a grey plateau.
    yy, xx = np.mgrid[0 : 4 * h, 0 : 4 * w].astype(np.float64)
    r = np.sqrt(((xx - 2.2 * w) / (1.1 * w)) ** 2 + ((yy - 2 * h) / (1.3 * h)) ** 2)
    hole = np.clip(1.6 - 1.4 * r, 0, 1)
    hole[: h // 2, : w // 2] = 0.37
    hole = np.rint(hole * 255) / 255
    map_ = f(1 - hole)[None]
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    adapter = UnetAdapter(unet, torch, pooled_dim=4, time_dim=1)
    pipe = community.StableDiffusionXLDifferentialImg2ImgPipeline(
        vae=AutoencoderKL.from_pretrained(out / "models" / "vae_sd").eval(),  # never called: latents in and out
        text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None, unet=unet, scheduler=scheduler,
        add_watermarker=False)
    pipe.unet = adapter
    pipe.vae_scale_factor = 1
    pipe.set_progress_bar_config(disable=True)
    drawn = []
    randn = community.randn_tensor

    def traced_randn(*args, **kwargs):
        noise = randn(*args, **kwargs)
        drawn.append(noise.clone())
        return noise

    community.randn_tensor = traced_randn
    resized = []
    resize = community.torchvision.transforms.Resize

    def traced_resize(*args, **kwargs):
        op = resize(*args, **kwargs)
        return lambda x: resized.append(op(x)) or resized[-1]

    community.torchvision.transforms.Resize = traced_resize
    last = []
    context = f(rng.standard_normal((1, 77, 32)))
    negative = f(rng.standard_normal((1, 77, 32)))
    pooled, negative_pooled = f(rng.standard_normal((1, 4))), f(rng.standard_normal((1, 4)))
    with torch.no_grad():
        pipe(prompt_embeds=context, negative_prompt_embeds=negative, pooled_prompt_embeds=pooled,
             negative_pooled_prompt_embeds=negative_pooled, image=z0, original_image=z0, map=map_, strength=1.0,
             num_inference_steps=STEPS, guidance_scale=7.5, output_type="latent",
             generator=torch.Generator().manual_seed(SEED),
             callback_on_step_end=lambda p, i, t, kw: last.append(kw["latents"].clone()) or {})
    t = {"z0": z0.numpy(), "hole": (hole * 255).astype(np.uint8), "map_resized": resized[0].numpy(),
         "noise": drawn[-1].numpy(), "positive": context.numpy(), "negative": negative.numpy(),
         "step_inputs": torch.stack(adapter.inputs).numpy(), "final": last[-1].numpy()}
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items()},
              str(out / "sampling" / "differential.safetensors"))


if __name__ == "__main__":
    main()
