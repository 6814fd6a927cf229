"""Goldens from BrushNet's official code itself (TencentARC/BrushNet): its fork of diffusers
(0.27.0.dev0: `BrushNetModel`, the `brushnet` arguments of its UNet, and
`StableDiffusionBrushNetPipeline`), run on CPU with the repository's tiny models.

Get the official code (never committed to this repository):

    git clone https://github.com/TencentARC/BrushNet /tmp/brushnet-official
    git -C /tmp/brushnet-official checkout 0f9d9e54ca85c40a11a8f0504b4b5b2e7e8fd14d

The fork needs the transformers and huggingface_hub of its time, so it runs from its own small
venv beside the pinned one, which lends it torch and the rest through a `.pth` file:

    python3 -m venv ~/.cache/hd-painter/brushnet-venv
    ~/.cache/hd-painter/brushnet-venv/bin/pip install transformers==4.39.3 huggingface_hub==0.23.5 tokenizers==0.15.2
    echo ~/.cache/hd-painter/venv/lib/python3.11/site-packages \\
        > ~/.cache/hd-painter/brushnet-venv/lib/python3.11/site-packages/zz_pinned.pth
    ~/.cache/hd-painter/brushnet-venv/bin/python tools/reference/brushnet_official.py \\
        --official /tmp/brushnet-official [--out fixtures]

The fork's `src/` goes first on `sys.path`, so `import diffusers` is the fork. Nothing is stubbed.

It loads, with the fork's own classes, the tiny base UNet (`models/unet_sd2`), the VAE
(`models/vae_sd`) and the branch in its published layout (`models/brushnet`, which our loader
reads), and writes `models/brushnet/brushnet_official.safetensors`:
- the official `examples/brushnet/test_brushnet.py` input preparation on a 96 x 64 photo and a
  colour mask: the hole where the mask's channel sum is > 255, the masked image, the mask image;
- the pipeline run (`StableDiffusionBrushNetPipeline.__call__`, DDIM, 4 steps, CFG 7.5,
  conditioning scale 0.8, control window 0 - 0.8 so that the last step runs without the branch)
  with injected latents and prompt embeddings. As published it conditions the branch on a VAE
  posterior *sample* drawn from the global RNG, a different one for each guidance half
  (`condition_sampled`); hd-painter uses the posterior mean, so the run is repeated with
  `DiagonalGaussianDistribution.sample` returning the mean (the only stub): its conditioning
  latents, per step the branch's residuals (both guidance halves), the UNet's noise prediction
  and the latents after the step, the decoded 8-bit image;
- the official blend (`blended = True` in the test script) of that image into the photo.
"""

import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMMIT = "0f9d9e54ca85c40a11a8f0504b4b5b2e7e8fd14d"
SEED = 20240306  # BrushNet's arXiv date


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", type=pathlib.Path, required=True, help="checkout of TencentARC/BrushNet")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "fixtures")
    args = ap.parse_args()
    sys.path.insert(0, str(args.official / "src"))
    generate(args.out)


def colour_mask(height, width):
    """An RGB mask whose channel sums straddle 255: a white ellipse, a red patch (sum 255: not
    hole), a yellow one (510: hole), soft grey edges."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.sqrt(((xx - 0.4 * width) / (0.25 * width)) ** 2 + ((yy - 0.5 * height) / (0.3 * height)) ** 2)
    grey = np.rint(np.clip((1.0 - r) * 3.0, 0, 1) * 255).astype(np.uint8)
    m = np.repeat(grey[..., None], 3, -1)
    m[4:12, 60:72] = (255, 0, 0)
    m[40:52, 70:90] = (255, 255, 0)
    return m


def generate(out):
    import cv2
    import diffusers
    import torch
    from diffusers import AutoencoderKL, BrushNetModel, DDIMScheduler, StableDiffusionBrushNetPipeline, UNet2DConditionModel
    from PIL import Image
    from safetensors.torch import save_file

    from hd_painter_official import synthetic_rgb  # the same synthetic photo

    assert diffusers.__version__ == "0.27.0.dev0", f"not the fork: diffusers {diffusers.__version__}"
    torch.set_num_threads(2)
    rng = np.random.default_rng(SEED)
    models = out / "models"
    unet = UNet2DConditionModel.from_pretrained(models / "unet_sd2").eval()
    vae = AutoencoderKL.from_pretrained(models / "vae_sd").eval()
    brushnet = BrushNetModel.from_pretrained(models / "brushnet").eval()
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionBrushNetPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, brushnet=brushnet,
                                           scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    # examples/brushnet/test_brushnet.py's preparation (cv2.imread gives BGR; the sum is the same).
    photo = synthetic_rgb(rng, 64, 96)
    mask_file = colour_mask(64, 96)
    mask_image = 1.0 * (mask_file[:, :, ::-1].sum(-1) > 255)[:, :, np.newaxis]
    init_image = Image.fromarray((photo * (1 - mask_image)).astype(np.uint8)).convert("RGB")
    mask_pil = Image.fromarray(mask_image.astype(np.uint8).repeat(3, -1) * 255).convert("RGB")

    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    positive, negative = f(rng.standard_normal((1, 77, 32))), f(rng.standard_normal((1, 77, 32)))
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latents = f(rng.standard_normal((1, 4, 64 // vae_factor, 96 // vae_factor)))
    rec = {}

    def on_brushnet(module, args, kwargs, output):
        rec["cond"] = kwargs["brushnet_cond"].detach().clone()
        rec["residuals"].append([r.detach().clone() for r in output[0]] + [output[1].detach().clone()]
                                + [r.detach().clone() for r in output[2]])

    def on_unet(module, args, output):
        rec["eps"].append(output[0].detach().clone())

    def on_step(pipeline, i, t, kwargs):
        rec["latents"].append(kwargs["latents"].detach().clone())
        return {}

    brushnet.register_forward_hook(on_brushnet, with_kwargs=True)
    unet.register_forward_hook(on_unet)

    def run():
        rec.update({"cond": None, "residuals": [], "eps": [], "latents": []})
        torch.manual_seed(SEED)  # the posterior sample is drawn from the global RNG
        with torch.no_grad():
            return pipe(prompt_embeds=positive, negative_prompt_embeds=negative, image=init_image, mask=mask_pil,
                        num_inference_steps=4, guidance_scale=7.5, latents=latents.clone(),
                        brushnet_conditioning_scale=0.8, control_guidance_start=0.0, control_guidance_end=0.8,
                        output_type="pil", callback_on_step_end=on_step).images[0]

    # As published: the condition is a posterior sample, drawn separately for each guidance half.
    run()
    sampled = rec["cond"].clone()
    # With the sample replaced by the posterior mean (the one stub), what hd-painter computes.
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    sample = DiagonalGaussianDistribution.sample
    DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mean
    try:
        image = run()
    finally:
        DiagonalGaussianDistribution.sample = sample
    generated = np.asarray(image)

    # The test script's blend (`blended = True`).
    mask_np = 1.0 * (mask_file[:, :, ::-1].sum(-1) > 255)[:, :, np.newaxis]
    mask_blurred = cv2.GaussianBlur(mask_np * 255, (21, 21), 0) / 255
    mask_np = 1 - (1 - mask_np) * (1 - mask_blurred[:, :, np.newaxis])
    pasted = (photo * (1 - mask_np) + generated * mask_np).astype(generated.dtype)

    t = {"photo": photo, "mask_file": mask_file, "hole": (mask_image[:, :, 0] * 255).astype(np.uint8),
         "masked_image": np.asarray(init_image), "positive": positive.numpy(), "negative": negative.numpy(),
         "latents": latents.numpy(), "condition": rec["cond"][:1].numpy(), "condition_sampled": sampled.numpy(),
         "eps": torch.stack(rec["eps"]).numpy(), "step_latents": torch.stack(rec["latents"]).numpy(),
         "generated": generated, "blended": pasted}
    assert torch.equal(rec["cond"][0], rec["cond"][1]), "the same condition for both guidance halves"
    for i, residuals in enumerate(rec["residuals"]):
        for j, r in enumerate(residuals):
            t[f"residuals.{i}.{j}"] = r.numpy()
    t["residual_count"] = np.array([len(rec["residuals"][0])], dtype=np.int64)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items()},
              str(models / "brushnet" / "brushnet_official.safetensors"))


if __name__ == "__main__":
    main()
