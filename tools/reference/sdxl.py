"""Golden groups of SDXL: a tiny `StableDiffusionXLInpaintPipeline` folder over the tiny SDXL
parts, diffusers' two-encoder prompt encoding on it and an SDXL inpainting run. Registered in
generate.py's GROUPS; every expected value comes from diffusers / transformers."""

import os
import pathlib
import shutil
import tempfile

import numpy as np

# The folder's components that are links to the tiny models' own fixture folders.
SDXL_LINKS = {"unet": "unet_sdxl", "vae": "vae_sdxl", "text_encoder": "clip_quick_gelu", "text_encoder_2": "clip_projection"}


def save(out, name, tensors, group):
    from safetensors.numpy import save_file

    path = out / group / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))


def tiny_tokenizers(models):
    """SDXL's two tokenizers over the tiny vocabulary: the same BPE files, the first padding with
    the end token (OpenAI CLIP's), the second with "!" (OpenCLIP's), both 77 tokens long."""
    from transformers import CLIPTokenizer

    tok_dir = models / "pipeline_inpaint" / "tokenizer"
    vocab, merges = str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt")
    return [CLIPTokenizer(vocab=vocab, merges=merges, pad_token=pad, model_max_length=77) for pad in ["<|endoftext|>", "!"]]


def sdxl_pipeline(models):
    """The tiny SDXL inpainting pipeline, with SDXL's published scheduler settings and flags."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, tokenizer_2 = tiny_tokenizers(models)
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLInpaintPipeline(
        vae=AutoencoderKL.from_pretrained(models / "vae_sdxl"),
        text_encoder=CLIPTextModel.from_pretrained(models / "clip_quick_gelu", dtype=torch.float32),
        text_encoder_2=CLIPTextModelWithProjection.from_pretrained(models / "clip_projection", dtype=torch.float32),
        tokenizer=tokenizer, tokenizer_2=tokenizer_2,
        unet=UNet2DConditionModel.from_pretrained(models / "unet_sdxl"),
        scheduler=scheduler, requires_aesthetics_score=False, force_zeros_for_empty_prompt=True,
    )


def write_folder(pipe, models, name, links):
    """The pipeline folder `models/name`: `model_index.json`, the scheduler config and both
    tokenizers as diffusers' `save_pretrained` writes them, the models as relative links to the
    fixture folders `links` names."""
    dest = models / name
    with tempfile.TemporaryDirectory() as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        tmp = pathlib.Path(tmp)
        keep = ["model_index.json", "scheduler/scheduler_config.json"]
        keep += [str(p.relative_to(tmp)) for p in tmp.glob("tokenizer*/*")]
        for rel in keep:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp / rel, dest / rel)
    for component, target in links.items():
        link = dest / component
        if link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(models / target, link.parent), link, target_is_directory=True)


def gen_sdxl_pipeline(out, rng):
    """The folder `pipeline_sdxl_inpaint`: `model_index.json`, the scheduler config and both
    tokenizers as diffusers' `save_pretrained` writes them, the models as relative links. With
    `encode_prompt`'s four outputs for a prompt and a negative prompt, and for the prompt alone
    (`force_zeros_for_empty_prompt`: zeros for the negative half)."""
    import torch

    models = out / "models"
    pipe = sdxl_pipeline(models)
    write_folder(pipe, models, "pipeline_sdxl_inpaint", SDXL_LINKS)
    t = {}
    for key, negative in [("negative", "blurry, low quality"), ("zeros", None)]:
        with torch.no_grad():
            embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
                "a red sofa!", device="cpu", do_classifier_free_guidance=True, negative_prompt=negative)
        t.update({f"{key}.prompt_embeds": embeds.numpy(), f"{key}.negative_prompt_embeds": negative_embeds.numpy(),
                  f"{key}.pooled": pooled.numpy(), f"{key}.negative_pooled": negative_pooled.numpy()})
    save(out, "prompts", t, group="models/pipeline_sdxl_inpaint")


def gen_sdxl_inpaint(out, rng):
    """diffusers' StableDiffusionXLInpaintPipeline on the tiny folder: the prompts as text, the
    folder's Euler scheduler, 5 steps, CFG 7.5, strength 1, an original size and crop other than
    the defaults (the target size the image's), the masked-image latents given (the posterior
    mean, as our runs use), initial noise given: the UNet's added conditions at the first call
    and the latents after every step. Then the pipeline's default strength
    (`sdxl_strength_run`)."""
    import torch

    models = out / "models"
    pipe = sdxl_pipeline(models)
    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    h, w, steps = 32, 48, 5
    image = f(rng.uniform(-1, 1, (1, 3, h, w)))
    mask = torch.zeros(1, 1, h, w)
    mask[:, :, 6:28, 10:36] = 1.0
    with torch.no_grad():
        masked_latents = pipe.vae.encode(image * (mask < 0.5)).latent_dist.mean * pipe.vae.config.scaling_factor
    latents = f(rng.standard_normal((1, 4, h // 2, w // 2)))
    added = []
    forward = pipe.unet.forward

    def spy(*args, **kwargs):
        added.append({k: v.clone() for k, v in kwargs["added_cond_kwargs"].items()})
        return forward(*args, **kwargs)

    pipe.unet.forward = spy
    per_step = []
    with torch.no_grad():
        pipe(prompt="a red sofa", negative_prompt="blurry", image=(image + 1) / 2, mask_image=mask,
             masked_image_latents=masked_latents, latents=latents, height=h, width=w, strength=1.0,
             original_size=(40, 56), crops_coords_top_left=(2, 6), num_inference_steps=steps, guidance_scale=7.5,
             output_type="latent", callback_on_step_end=lambda p, i, ts, kw: per_step.append(kw["latents"].clone()) or kw)
    t = {
        "image": image.numpy(), "mask": mask.numpy(), "masked_latents": masked_latents.numpy(), "latents": latents.numpy(),
        "timesteps": pipe.scheduler.timesteps.numpy().astype(np.float64),
        "time_ids": added[0]["time_ids"].numpy(), "text_embeds": added[0]["text_embeds"].numpy(),
        "steps": torch.stack(per_step).numpy(),
    }
    t.update(sdxl_strength_run(pipe, image, mask, masked_latents, f(rng.standard_normal((1, 4, h // 2, w // 2)))))
    save(out, "sdxl_inpaint", t, group="sampling")


def sdxl_strength_run(pipe, image, mask, masked_latents, noise):
    """The same pipeline at its default strength, 0.9999 (5 steps keep 4): the start is the
    image's latents (the posterior mean, as our runs encode: diffusers' `retrieve_latents`
    patched to the mode) noised to the first kept timestep with `noise` (diffusers' draw
    patched to it), no latents passed. The image latents, the noise, the timesteps and the
    latents after every step, under `strength.`."""
    import torch
    from diffusers.pipelines.stable_diffusion_xl import pipeline_stable_diffusion_xl_inpaint as module

    original = module.retrieve_latents, module.randn_tensor
    module.retrieve_latents = lambda encoded, generator=None, sample_mode="sample": encoded.latent_dist.mode()
    module.randn_tensor = lambda *a, **k: noise.clone()
    per_step = []
    with torch.no_grad():
        image_latents = pipe.vae.encode(image).latent_dist.mode() * pipe.vae.config.scaling_factor
        pipe(prompt="a red sofa", negative_prompt="blurry", image=(image + 1) / 2, mask_image=mask,
             masked_image_latents=masked_latents, height=image.shape[2], width=image.shape[3], num_inference_steps=5,
             guidance_scale=7.5, output_type="latent",
             callback_on_step_end=lambda p, i, ts, kw: per_step.append(kw["latents"].clone()) or kw)
    module.retrieve_latents, module.randn_tensor = original
    return {"strength.image_latents": image_latents.numpy(), "strength.noise": noise.numpy(),
            "strength.timesteps": pipe.scheduler.timesteps.numpy().astype(np.float64),
            "strength.steps": torch.stack(per_step).numpy()}


def gen_sdxl_hd_painter(out, rng):
    """HD-Painter on SDXL: tools/reference/hd_painter_ref.py's PAIntA and RASG, which select
    layers by grid as on SD 2 (PAIntA: the self-attention of every transformer block at the
    latent/2 and latent/4 grids while t > 500; RASG: every cross-attention at latent/4, which on
    SDXL includes the mid block's), on the tiny SDXL-like 9-channel UNet with its added
    conditions: 5 steps on the 999 - 200k grid with CFG 7.5, PAIntA alone and PAIntA + RASG. The
    latents and x0 after every step, RASG's normalised gradients, PAIntA's first-step scales."""
    import torch
    from diffusers import UNet2DConditionModel
    from PIL import Image

    import hd_painter_ref as ref

    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    unet = UNet2DConditionModel.from_pretrained(out / "models" / "unet_sdxl").eval()
    unet.requires_grad_(False)
    lh, lw = 16, 24
    yy, xx = np.mgrid[0 : 8 * lh, 0 : 8 * lw]
    pixel = ((((yy - 60) / 38.0) ** 2 + ((xx - 80) / 52.0) ** 2) < 1.0).astype(np.uint8) * 255
    latent_mask = f(np.asarray(Image.fromarray(pixel).resize((lw, lh), Image.BICUBIC)) > 0).reshape(1, 1, lh, lw)
    masked, latents = f(rng.standard_normal((1, 4, lh, lw))), f(rng.standard_normal((1, 4, lh, lw)))
    positive, negative = f(rng.standard_normal((1, 77, 64))), f(rng.standard_normal((1, 77, 64)))
    pooled, negative_pooled = f(rng.standard_normal((1, 24))), f(rng.standard_normal((1, 24)))
    time_ids = f([[40, 56, 2, 6, 128, 192], [40, 56, 2, 6, 128, 192]])
    added = {"text_embeds": torch.cat([negative_pooled, pooled]), "time_ids": time_ids}
    tokens = [1, 2, 3, 7]
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    t = {"pixel_mask": pixel, "latent_mask": latent_mask.numpy(), "masked_latents": masked.numpy(), "latents": latents.numpy(),
         "positive": positive.numpy(), "negative": negative.numpy(), "pooled": pooled.numpy(),
         "negative_pooled": negative_pooled.numpy(), "time_ids": time_ids[1].numpy(), "tokens": np.array(tokens, dtype=np.int64)}
    for name, rasg in [("painta", None), ("painta_rasg", (1.0, "paper"))]:
        state = ref.State((lh, lw), Image.fromarray(pixel), tokens, guided=True)
        state.painta = True
        ref.install(unet, state)
        per_step, x0s, grads, scales = ref.sample(unet, betas, latents, torch.cat([latent_mask, masked], 1),
                                                  torch.cat([negative, positive]), state, steps=5, guidance=7.5,
                                                  rasg=rasg, added=added)
        t[f"{name}_latents"] = torch.stack(per_step).numpy()
        t[f"{name}_x0"] = torch.stack(x0s).numpy()
        if grads:
            t[f"{name}_grads"] = torch.stack(grads).numpy()
        t[f"{name}_scales"] = torch.cat([s.reshape(-1) for s in scales]).numpy()
        t[f"{name}_scale_sizes"] = np.array([s.numel() for s in scales], dtype=np.int64)
    save(out, "sdxl_hd_painter", t, group="sampling")


def gen_sdxl_base(out, rng):
    """SDXL's 4-channel base in `StableDiffusionXLInpaintPipeline`: `unet_sdxl_base` (the tiny
    SDXL UNet's config with 4 input channels, its own random weights) and the folder
    `pipeline_sdxl_base` (a `StableDiffusionXLPipeline`, as the published base). Two inpainting
    runs of 5 and 10 Euler steps with CFG 7.5, where after every step the pipeline puts back the
    image's latents (the posterior mean, as our runs encode) noised with the run's initial noise
    to the next timestep, clean after the last: at strength 1 with the noise given, and at
    strength 0.6 with `denoising_end` 0.75 (3 of the 6 kept steps), the noise patched in. The
    image, mask, image latents, noise, timesteps and the latents after every step, under `full.`
    and `end.`."""
    import json

    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion_xl import pipeline_stable_diffusion_xl_inpaint as module

    from generate import randomize_norms

    models = out / "models"
    torch.manual_seed(int(rng.integers(0, 2**31)))
    config = json.loads((models / "unet_sdxl" / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")} | {"in_channels": 4}
    unet = UNet2DConditionModel(**config).eval()
    randomize_norms(unet, torch)
    unet.save_pretrained(models / "unet_sdxl_base", safe_serialization=True)
    pipe = sdxl_pipeline(models)
    pipe.unet = UNet2DConditionModel.from_pretrained(models / "unet_sdxl_base")
    base = StableDiffusionXLPipeline(**{k: getattr(pipe, k) for k in StableDiffusionXLPipeline._optional_components + [
        "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler"]
        if hasattr(pipe, k)})
    write_folder(base, models, "pipeline_sdxl_base", SDXL_LINKS | {"unet": "unet_sdxl_base"})

    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    h, w = 32, 48
    image = f(rng.uniform(-1, 1, (1, 3, h, w)))
    mask = torch.zeros(1, 1, h, w)
    mask[:, :, 4:26, 14:40] = 1.0
    with torch.no_grad():
        image_latents = pipe.vae.encode(image).latent_dist.mode() * pipe.vae.config.scaling_factor
    t = {"image": image.numpy(), "mask": mask.numpy(), "image_latents": image_latents.numpy()}
    original = module.retrieve_latents, module.randn_tensor
    module.retrieve_latents = lambda encoded, generator=None, sample_mode="sample": encoded.latent_dist.mode()
    runs = [("full", dict(strength=1.0, num_inference_steps=5)),
            ("end", dict(strength=0.6, num_inference_steps=10, denoising_end=0.75))]
    for name, kwargs in runs:
        noise = f(rng.standard_normal((1, 4, h // 2, w // 2)))
        module.randn_tensor = lambda *a, **k: noise.clone()
        per_step = []
        with torch.no_grad():
            pipe(prompt="a red sofa", negative_prompt="blurry", image=(image + 1) / 2, mask_image=mask, height=h,
                 width=w, guidance_scale=7.5, output_type="latent", **kwargs,
                 latents=noise.clone() if kwargs["strength"] == 1.0 else None,
                 callback_on_step_end=lambda p, i, ts, kw: per_step.append(kw["latents"].clone()) or kw)
        t[f"{name}.noise"] = noise.numpy()
        t[f"{name}.timesteps"] = pipe.scheduler.timesteps.numpy().astype(np.float64)
        t[f"{name}.steps"] = torch.stack(per_step).numpy()
    module.retrieve_latents, module.randn_tensor = original
    save(out, "sdxl_base", t, group="sampling")


def sdxl_open_clip_state(text_encoder_2, torch):
    """A CLIPTextModelWithProjection's weights as SDXL's single files hold OpenCLIP bigG, under
    `conditioner.embedders.1.model.`: fused q/k/v, every layer, the projection as the matrix
    `x @ P` multiplies by (the transpose of transformers' linear weight) and `logit_scale`."""
    from generate import open_clip_state

    layers = text_encoder_2.config.num_hidden_layers
    state = {k.removeprefix("cond_stage_model.model."): v for k, v in open_clip_state(text_encoder_2.text_model, False, torch).items()}
    state = {k: v for k, v in state.items() if not k.startswith(f"transformer.resblocks.{layers}.")}
    state["text_projection"] = text_encoder_2.text_projection.weight.detach().T.contiguous()
    return {"conditioner.embedders.1.model." + k: v for k, v in state.items()}


def gen_sdxl_single_file(out, rng):
    """An SDXL single-file checkpoint in the layout Stability published (SGM: the UNet under
    `model.diffusion_model.` with the added embedding as `label_emb.0.*`, the VAE under
    `first_stage_model.`, CLIP ViT-L in transformers 4's layout under
    `conditioner.embedders.0.transformer.` with its `position_ids` buffer, OpenCLIP under
    `conditioner.embedders.1.model.`), built from the tiny SDXL inpainting parts in fp16 as
    published, and proven by diffusers' own converters (`single_file_utils`) to map back exactly
    onto the fp16-rounded diffusers weights. The goldens are diffusers / transformers models
    built from the converted weights on fixed inputs: the UNet's output with its added
    conditions, both encoders' last hidden states and the second's projected embedding, a VAE
    decode."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint, convert_open_clip_checkpoint)
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from generate import ldm_unet_state, ldm_vae_state, randomize_norms

    models = out / "models"
    torch.manual_seed(int(rng.integers(0, 2**31)))
    unet = UNet2DConditionModel.from_pretrained(models / "unet_sdxl").eval()
    vae = AutoencoderKL.from_pretrained(models / "vae_sdxl").eval()
    text = CLIPTextModel.from_pretrained(models / "clip_quick_gelu", dtype=torch.float32).eval()
    text_2 = CLIPTextModelWithProjection.from_pretrained(models / "clip_projection", dtype=torch.float32).eval()
    half = lambda sd: {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v for k, v in sd.items()}
    clip_ldm = {"conditioner.embedders.0.transformer.text_model." + k: v for k, v in text.state_dict().items()}
    clip_ldm["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = torch.arange(77).reshape(1, 77)
    ckpt = half({**ldm_unet_state(unet), **ldm_vae_state(vae), **clip_ldm, **sdxl_open_clip_state(text_2, torch),
                 "conditioner.embedders.1.model.logit_scale": torch.tensor(4.6)})
    converted = {
        "unet": (convert_ldm_unet_checkpoint(ckpt, dict(unet.config)), unet),
        "vae": (convert_ldm_vae_checkpoint(ckpt, dict(vae.config)), vae),
        "text": ({k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(ckpt).items()}, text),
        "text_2": (convert_open_clip_checkpoint(text_2, ckpt, prefix="conditioner.embedders.1.model."), text_2),
    }
    for what, (got, model) in converted.items():
        ref = {k: v for k, v in model.state_dict().items() if "position_ids" not in k}
        got = {k: v for k, v in got.items() if "position_ids" not in k}
        assert set(got) == set(ref), (what, sorted(set(got) ^ set(ref))[:8])
        for k in ref:
            assert torch.equal(got[k].float(), ref[k].to(torch.float16).float()), (what, k)
    (models / "single_file").mkdir(parents=True, exist_ok=True)
    save_file(ckpt, str(models / "single_file" / "sdxl_inpaint.safetensors"))

    f32 = lambda sd: {k: v.float() for k, v in sd.items() if "position_ids" not in k}
    u = UNet2DConditionModel(**unet.config).eval()
    u.load_state_dict(f32(converted["unet"][0]))
    v = AutoencoderKL(**vae.config).eval()
    v.load_state_dict(f32(converted["vae"][0]))
    c = CLIPTextModel(text.config).eval()
    c.load_state_dict(f32(converted["text"][0]), strict=False)
    c2 = CLIPTextModelWithProjection(text_2.config).eval()
    c2.load_state_dict(f32(converted["text_2"][0]), strict=False)
    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    ids = torch.from_numpy(rng.integers(0, 500, (1, 77))).long()
    sample, context = f(rng.standard_normal((1, 9, 16, 24))), f(rng.standard_normal((1, 77, 64)))
    added = {"text_embeds": f(rng.standard_normal((1, 24))), "time_ids": f([[40, 56, 2, 6, 32, 48]])}
    z = f(rng.standard_normal((1, 4, 8, 8)))
    with torch.no_grad():
        second = c2(ids)
        t = {"ids": ids.numpy(), "sample": sample.numpy(), "context": context.numpy(),
             "text_embeds": added["text_embeds"].numpy(), "time_ids": added["time_ids"].numpy(), "z": z.numpy(),
             "unet": u(sample, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample.numpy(),
             "decoded": v.decode(z).sample.numpy(), "text": c(ids).last_hidden_state.numpy(),
             "text_2": second.last_hidden_state.numpy(), "text_2.embeds": second.text_embeds.numpy()}
    save(out, "sdxl_outputs", t, group="models/single_file")
