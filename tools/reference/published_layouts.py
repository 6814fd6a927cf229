#!/usr/bin/env python3
"""Rewrites the tiny fixture models into the layouts the Stable Diffusion repositories were
published in, under fixtures/models/published/, and proves with diffusers and transformers
themselves that each loads to exactly its modern twin's weights.

    python tools/reference/published_layouts.py            # (re)write fixtures/models/published
    python tools/reference/published_layouts.py --check    # only verify the committed files

Run it after generate.py (it reads the modern fixtures). What each family reproduces:
- sd2_inpainting_2022: stabilityai/stable-diffusion-2-inpainting as of diffusers 0.10 (Dec 2022):
  configs without the keys later versions added, the VAE's mid-block attention in the pre-0.17
  names (query / key / value / proj_attn), the text encoder as transformers 4.25 saved it
  (`text_model.` prefix, `position_ids` buffer, legacy `eos_token_id: 2`), a tokenizer config with
  AddedToken objects, PNDM with skip_prk_steps, a feature extractor, and the later fp16 files in
  the current names beside the fp32 ones in the old (a mixed layout). Twin: pipeline_hd_painter.
- sd15_inpainting_2022: runwayml's SD 1.5 inpainting as of diffusers 0.6: fewer config keys
  still, a safety checker, CLIP ViT-L's quick_gelu text encoder, and a bf16 VAE in the old
  names. Twin: unet_sd15_inpaint, vae_sd, clip_quick_gelu.
- x4_upscaler_2022: stabilityai/stable-diffusion-x4-upscaler: StableDiffusionUpscalePipeline
  with low_res_scheduler, max_noise_level, the old VAE names. Twin: pipeline_x4.
- dreamshaper8_inpainting: a community SD 1.5 inpainting fine-tune in diffusers 0.21's format
  (DEIS scheduler, image_encoder entry, fp16 variant files). Twin as sd15_inpainting_2022.
- brushnet_release/segmentation_mask_brushnet_ckpt: BrushNet's released folder as its diffusers
  fork (0.27.0.dev0) saves it. Twin: brushnet.
- single/sd15_inpainting_2022.safetensors: the original single file of SD 1.5 inpainting
  (CompVis keys, `cond_stage_model.transformer.text_model.*` with its position_ids, EMA and
  schedule buffers), fp16. Twin: unet_sd15_inpaint, vae_sd, clip_quick_gelu.
- single/vae_ft_mse.safetensors: a VAE-only file (CompVis keys without prefix), fp16. Twin: vae_sd.
- single/x4_upscaler.safetensors: the x4 upscaler's original single file (noise-level label_emb,
  OpenCLIP text tower, low_scale_model buffers), fp16. Twin: pipeline_x4.
- sharded: a UNet (fp16 variant) and a text encoder saved in shards by diffusers' and
  transformers' save_pretrained(max_shard_size=...). Twins: unet_hd_painter, clip_gelu.
Weights that a layout leaves unchanged are relative symlinks to the modern files.
"""

import argparse
import json
import os
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "fixtures" / "models"
OUT = MODELS / "published"

LEGACY_VAE = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def link(path, target):
    """A relative symlink at `path` to `target`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink() if not path.is_dir() or path.is_symlink() else shutil.rmtree(path)
    os.symlink(os.path.relpath(target, path.parent), path)


def modern(name, file="config.json"):
    return MODELS / name / file


def early_config(name, version, keep, extra=None):
    """The modern config of fixture `name` cut down to the keys an early version wrote."""
    cfg = json.loads(modern(name).read_text())
    out = {k: cfg[k] for k in keep if k in cfg}
    out.update({"_class_name": cfg["_class_name"], "_diffusers_version": version})
    out.update(extra or {})
    return out


UNET_0_6 = ["act_fn", "attention_head_dim", "block_out_channels", "center_input_sample", "cross_attention_dim", "down_block_types",
            "downsample_padding", "flip_sin_to_cos", "freq_shift", "in_channels", "layers_per_block", "mid_block_scale_factor",
            "norm_eps", "norm_num_groups", "out_channels", "sample_size", "up_block_types"]
UNET_0_10 = UNET_0_6 + ["dual_cross_attention", "only_cross_attention", "use_linear_projection", "upcast_attention", "num_class_embeds"]
VAE_0_6 = ["act_fn", "block_out_channels", "down_block_types", "in_channels", "latent_channels", "layers_per_block", "norm_num_groups",
           "out_channels", "sample_size", "up_block_types"]


def tf4_text_config(name, version):
    """A transformers 4 `CLIPTextConfig` file: the same architecture with the legacy special ids."""
    cfg = json.loads(modern(name).read_text())
    cfg.pop("dtype", None)
    cfg.update({"_name_or_path": "hf-models/text_encoder", "torch_dtype": "float32", "transformers_version": version,
                "bos_token_id": 0, "eos_token_id": 2})
    return cfg


def tokenizer_2022(dest):
    """The tiny vocabulary with a tokenizer config as transformers 4.25 wrote it."""
    src = MODELS / "pipeline_inpaint" / "tokenizer"
    for f in ["vocab.json", "merges.txt"]:
        link(dest / f, src / f)
    added = lambda s: {"__type": "AddedToken", "content": s, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    write_json(dest / "tokenizer_config.json", {
        "add_prefix_space": False, "bos_token": added("<|startoftext|>"), "do_lower_case": True, "eos_token": added("<|endoftext|>"),
        "errors": "replace", "model_max_length": 77, "name_or_path": "hf-models/tokenizer", "pad_token": "!",
        "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer", "unk_token": added("<|endoftext|>")})
    write_json(dest / "special_tokens_map.json", {"bos_token": added("<|startoftext|>"), "eos_token": added("<|endoftext|>"),
                                                  "pad_token": "!", "unk_token": added("<|endoftext|>")})


def state(path):
    from safetensors.torch import load_file
    return load_file(str(path))


def save(path, tensors):
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def legacy_vae(sd):
    out = {}
    for k, v in sd.items():
        for new, old in LEGACY_VAE.items():
            k = k.replace(f"mid_block.attentions.0.{new}.", f"mid_block.attentions.0.{old}.")
        out[k] = v
    return out


def tf4_text(sd, torch, positions=77):
    out = {"text_model." + k: v for k, v in sd.items()}
    out["text_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    return out


def half(sd, dtype):
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}


def write_sd2(torch):
    d = OUT / "sd2_inpainting_2022"
    write_json(d / "model_index.json", {
        "_class_name": "StableDiffusionInpaintPipeline", "_diffusers_version": "0.10.0.dev0",
        "feature_extractor": ["transformers", "CLIPFeatureExtractor"], "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    write_json(d / "feature_extractor" / "preprocessor_config.json", {
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224})
    write_json(d / "scheduler" / "scheduler_config.json", {
        "_class_name": "PNDMScheduler", "_diffusers_version": "0.10.0.dev0", "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
        "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None})
    tokenizer_2022(d / "tokenizer")
    write_json(d / "text_encoder" / "config.json", tf4_text_config("clip_gelu", "4.25.0.dev0"))
    text = state(modern("clip_gelu", "model.safetensors"))
    save(d / "text_encoder" / "model.safetensors", tf4_text(text, torch))
    save(d / "text_encoder" / "model.fp16.safetensors", half(tf4_text(text, torch), torch.float16))
    write_json(d / "unet" / "config.json", early_config("unet_hd_painter", "0.10.0.dev0", UNET_0_10))
    link(d / "unet" / "diffusion_pytorch_model.safetensors", modern("unet_hd_painter", "diffusion_pytorch_model.safetensors"))
    save(d / "unet" / "diffusion_pytorch_model.fp16.safetensors", half(state(modern("unet_hd_painter", "diffusion_pytorch_model.safetensors")), torch.float16))
    write_json(d / "vae" / "config.json", early_config("vae_sd", "0.10.0.dev0", VAE_0_6))
    vae = state(modern("vae_sd", "diffusion_pytorch_model.safetensors"))
    save(d / "vae" / "diffusion_pytorch_model.safetensors", legacy_vae(vae))
    save(d / "vae" / "diffusion_pytorch_model.fp16.safetensors", half(vae, torch.float16))


def write_sd15(torch):
    d = OUT / "sd15_inpainting_2022"
    write_json(d / "model_index.json", {
        "_class_name": "StableDiffusionInpaintPipeline", "_diffusers_version": "0.6.0",
        "feature_extractor": ["transformers", "CLIPFeatureExtractor"], "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    write_json(d / "safety_checker" / "config.json", {"_name_or_path": "CompVis/stable-diffusion-safety-checker", "architectures": ["StableDiffusionSafetyChecker"], "model_type": "clip"})
    write_json(d / "scheduler" / "scheduler_config.json", {
        "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False})
    link(d / "tokenizer", OUT / "sd2_inpainting_2022" / "tokenizer")
    write_json(d / "text_encoder" / "config.json", tf4_text_config("clip_quick_gelu", "4.22.0.dev0"))
    save(d / "text_encoder" / "model.safetensors", tf4_text(state(modern("clip_quick_gelu", "model.safetensors")), torch))
    write_json(d / "unet" / "config.json", early_config("unet_sd15_inpaint", "0.6.0", UNET_0_6))
    link(d / "unet" / "diffusion_pytorch_model.safetensors", modern("unet_sd15_inpaint", "diffusion_pytorch_model.safetensors"))
    write_json(d / "vae" / "config.json", early_config("vae_sd", "0.6.0", VAE_0_6))
    link(d / "vae" / "diffusion_pytorch_model.safetensors", OUT / "sd2_inpainting_2022" / "vae" / "diffusion_pytorch_model.safetensors")
    vae = state(modern("vae_sd", "diffusion_pytorch_model.safetensors"))
    save(d / "vae" / "diffusion_pytorch_model.bf16.safetensors", half(legacy_vae(vae), torch.bfloat16))


def write_x4(torch):
    d = OUT / "x4_upscaler_2022"
    write_json(d / "model_index.json", {
        "_class_name": "StableDiffusionUpscalePipeline", "_diffusers_version": "0.10.0.dev0",
        "low_res_scheduler": ["diffusers", "DDPMScheduler"], "max_noise_level": 350, "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    for sched in ["scheduler", "low_res_scheduler"]:
        cfg = json.loads((MODELS / "pipeline_x4" / sched / "scheduler_config.json").read_text())
        cfg = {k: v for k, v in cfg.items() if k in ["_class_name", "beta_end", "beta_schedule", "beta_start", "clip_sample", "num_train_timesteps", "prediction_type", "set_alpha_to_one", "steps_offset", "trained_betas", "variance_type"]}
        cfg["_diffusers_version"] = "0.10.0.dev0"
        write_json(d / sched / "scheduler_config.json", cfg)
    link(d / "tokenizer", OUT / "sd2_inpainting_2022" / "tokenizer")
    link(d / "text_encoder", OUT / "sd2_inpainting_2022" / "text_encoder")
    write_json(d / "unet" / "config.json", early_config("unet_x4", "0.10.0.dev0", UNET_0_10))
    link(d / "unet" / "diffusion_pytorch_model.safetensors", modern("unet_x4", "diffusion_pytorch_model.safetensors"))
    write_json(d / "vae" / "config.json", early_config("vae_x4", "0.10.0.dev0", VAE_0_6, {"scaling_factor": 0.08333}))
    save(d / "vae" / "diffusion_pytorch_model.safetensors", legacy_vae(state(modern("vae_x4", "diffusion_pytorch_model.safetensors"))))


def write_dreamshaper(torch):
    d = OUT / "dreamshaper8_inpainting"
    write_json(d / "model_index.json", {
        "_class_name": "StableDiffusionInpaintPipeline", "_diffusers_version": "0.21.0.dev0", "_name_or_path": "Lykon/dreamshaper-8-inpainting",
        "feature_extractor": ["transformers", "CLIPImageProcessor"], "image_encoder": [None, None], "requires_safety_checker": True,
        "safety_checker": [None, None], "scheduler": ["diffusers", "DEISMultistepScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    write_json(d / "scheduler" / "scheduler_config.json", {
        "_class_name": "DEISMultistepScheduler", "_diffusers_version": "0.21.0.dev0", "algorithm_type": "deis", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "dynamic_thresholding_ratio": 0.995,
        "lower_order_final": True, "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0,
        "set_alpha_to_one": False, "skip_prk_steps": True, "solver_order": 2, "solver_type": "logrho", "steps_offset": 1,
        "thresholding": False, "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False})
    link(d / "tokenizer", OUT / "sd2_inpainting_2022" / "tokenizer")
    write_json(d / "text_encoder" / "config.json", tf4_text_config("clip_quick_gelu", "4.33.1"))
    link(d / "text_encoder" / "model.safetensors", OUT / "sd15_inpainting_2022" / "text_encoder" / "model.safetensors")
    save(d / "text_encoder" / "model.fp16.safetensors", half(tf4_text(state(modern("clip_quick_gelu", "model.safetensors")), torch), torch.float16))
    unet_cfg = json.loads(modern("unet_sd15_inpaint").read_text())
    for k in ["attention_type", "reverse_transformer_layers_per_block", "dropout"]:
        unet_cfg.pop(k, None)
    unet_cfg["_diffusers_version"] = "0.21.0.dev0"
    write_json(d / "unet" / "config.json", unet_cfg)
    link(d / "unet" / "diffusion_pytorch_model.safetensors", modern("unet_sd15_inpaint", "diffusion_pytorch_model.safetensors"))
    save(d / "unet" / "diffusion_pytorch_model.fp16.safetensors", half(state(modern("unet_sd15_inpaint", "diffusion_pytorch_model.safetensors")), torch.float16))
    vae_cfg = json.loads(modern("vae_sd").read_text())
    for k in ["latents_mean", "latents_std", "shift_factor", "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention"]:
        vae_cfg.pop(k, None)
    vae_cfg["_diffusers_version"] = "0.21.0.dev0"
    write_json(d / "vae" / "config.json", vae_cfg)
    link(d / "vae" / "diffusion_pytorch_model.safetensors", modern("vae_sd", "diffusion_pytorch_model.safetensors"))
    link(d / "vae" / "diffusion_pytorch_model.fp16.safetensors", OUT / "sd2_inpainting_2022" / "vae" / "diffusion_pytorch_model.fp16.safetensors")


def write_brushnet():
    d = OUT / "brushnet_release" / "segmentation_mask_brushnet_ckpt"
    cfg = json.loads(modern("brushnet").read_text())
    cfg["_name_or_path"] = "runs/logs/brushnet_segmentationmask/checkpoint-100000"
    write_json(d / "config.json", cfg)
    link(d / "diffusion_pytorch_model.safetensors", modern("brushnet", "diffusion_pytorch_model.safetensors"))


def write_single(torch):
    """SD 1.5 inpainting's original single file, from the twin components through generate.py's
    CompVis-layout writers (themselves proven against diffusers' converters there)."""
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from generate import ldm_unet_state, ldm_vae_state

    unet = UNet2DConditionModel.from_pretrained(MODELS / "unet_sd15_inpaint")
    vae = AutoencoderKL.from_pretrained(MODELS / "vae_sd")
    text = CLIPTextModel.from_pretrained(MODELS / "clip_quick_gelu", dtype=torch.float32)
    ckpt = {**ldm_unet_state(unet), **ldm_vae_state(vae)}
    ckpt.update({"cond_stage_model.transformer." + k: v for k, v in tf4_text({k: v for k, v in text.state_dict().items() if "position_ids" not in k}, torch).items()})
    # What the published training checkpoint carries besides the weights.
    ckpt.update({"alphas_cumprod": torch.linspace(0.999, 0.01, 1000), "betas": torch.linspace(1e-4, 2e-2, 1000),
                 "model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(1000, dtype=torch.int32),
                 "model_ema.diffusion_modelout2bias": torch.zeros(4)})
    save(OUT / "single" / "sd15_inpainting_2022.safetensors", half({k: v.detach() for k, v in ckpt.items()}, torch.float16))
    # A VAE-only file as the fine-tuned SD VAEs were published (vae-ft-mse-840000-ema-pruned):
    # the CompVis keys without a prefix.
    vae_only = {k.removeprefix("first_stage_model."): v.detach() for k, v in ldm_vae_state(vae).items()}
    save(OUT / "single" / "vae_ft_mse.safetensors", half(vae_only, torch.float16))


def write_single_x4(torch):
    """The x4 upscaler's original single file: its UNet (noise-level `label_emb`), 3-level VAE,
    OpenCLIP text tower with the unused last layer, and the low-res noise schedule buffers."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from generate import ldm_unet_state, ldm_vae_state, open_clip_state

    torch.manual_seed(4)
    unet = UNet2DConditionModel.from_pretrained(MODELS / "unet_x4")
    vae = AutoencoderKL.from_pretrained(MODELS / "vae_x4")
    text = CLIPTextModel.from_pretrained(MODELS / "clip_gelu", dtype=torch.float32)
    ckpt = {**ldm_unet_state(unet), **ldm_vae_state(vae), **open_clip_state(text, True, torch)}
    ckpt.update({"low_scale_model.alphas_cumprod": torch.linspace(0.999, 0.01, 1000), "low_scale_model.betas": torch.linspace(1e-4, 2e-2, 1000),
                 "alphas_cumprod": torch.linspace(0.999, 0.01, 1000)})
    save(OUT / "single" / "x4_upscaler.safetensors", half({k: v.detach() for k, v in ckpt.items()}, torch.float16))


def write_sharded(torch):
    """A UNet and a text encoder saved in shards by diffusers' and transformers' own
    `save_pretrained(max_shard_size=...)`, the UNet as an fp16 variant."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    d = OUT / "sharded"
    if d.exists():
        shutil.rmtree(d)
    unet = UNet2DConditionModel.from_pretrained(MODELS / "unet_hd_painter").to(torch.float16)
    unet.save_pretrained(d / "unet", variant="fp16", max_shard_size="120KB")
    text = CLIPTextModel.from_pretrained(MODELS / "clip_gelu", dtype=torch.float32)
    text.save_pretrained(d / "text_encoder", max_shard_size="60KB")


def verify(torch):
    """diffusers and transformers load every published layout to exactly the twin's weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, DEISMultistepScheduler, PNDMScheduler, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_open_clip_checkpoint
    from safetensors.torch import load_file
    from transformers import CLIPTextModel, CLIPTokenizer

    def same(what, got, ref, dtype=None):
        ref = {k: v for k, v in ref.items() if "position_ids" not in k}
        got = {k: v for k, v in got.items() if "position_ids" not in k}
        assert set(got) == set(ref), (what, sorted(set(got) ^ set(ref))[:6])
        for k, v in ref.items():
            want = v.to(dtype).float() if dtype is not None else v
            assert torch.equal(got[k].float(), want.float()), (what, k)

    twins = {"sd2_inpainting_2022": ("unet_hd_painter", "vae_sd", "clip_gelu", [None, "fp16"]),
             "sd15_inpainting_2022": ("unet_sd15_inpaint", "vae_sd", "clip_quick_gelu", [None]),
             "x4_upscaler_2022": ("unet_x4", "vae_x4", "clip_gelu", [None]),
             "dreamshaper8_inpainting": ("unet_sd15_inpaint", "vae_sd", "clip_quick_gelu", [None, "fp16"])}
    for family, (unet, vae, text, variants) in twins.items():
        d = OUT / family
        for variant in variants:
            dtype = torch.float16 if variant else None
            same(f"{family} unet {variant}", UNet2DConditionModel.from_pretrained(d / "unet", variant=variant).state_dict(),
                 UNet2DConditionModel.from_pretrained(MODELS / unet).state_dict(), dtype)
            same(f"{family} vae {variant}", AutoencoderKL.from_pretrained(d / "vae", variant=variant).state_dict(),
                 AutoencoderKL.from_pretrained(MODELS / vae).state_dict(), dtype)
            text_variant = variant if (d / "text_encoder" / f"model.{variant}.safetensors").exists() else None
            same(f"{family} text {variant}", CLIPTextModel.from_pretrained(d / "text_encoder", variant=text_variant, dtype=torch.float32).state_dict(),
                 CLIPTextModel.from_pretrained(MODELS / text, dtype=torch.float32).state_dict(), dtype if text_variant else None)
        tok = CLIPTokenizer.from_pretrained(d / "tokenizer")
        ref = CLIPTokenizer.from_pretrained(MODELS / "pipeline_inpaint" / "tokenizer")
        for prompt in ["a red sofa!", ""]:
            assert tok(prompt, padding="max_length", max_length=77).input_ids == ref(prompt, padding="max_length", max_length=77).input_ids, family
    same("sd15 vae bf16", AutoencoderKL.from_pretrained(OUT / "sd15_inpainting_2022" / "vae", variant="bf16").state_dict(),
         AutoencoderKL.from_pretrained(MODELS / "vae_sd").state_dict(), torch.bfloat16)
    for cls, path in [(PNDMScheduler, "sd2_inpainting_2022/scheduler"), (PNDMScheduler, "sd15_inpainting_2022/scheduler"),
                      (DDIMScheduler, "x4_upscaler_2022/scheduler"), (DDPMScheduler, "x4_upscaler_2022/low_res_scheduler"),
                      (DEISMultistepScheduler, "dreamshaper8_inpainting/scheduler")]:
        cls.from_pretrained(OUT / path)
    # BrushNet's fork is not installed here: its config must hold only keys its constructor takes.
    fork = {"_class_name", "_diffusers_version", "_name_or_path", "in_channels", "conditioning_channels", "flip_sin_to_cos", "freq_shift",
            "down_block_types", "mid_block_type", "up_block_types", "only_cross_attention", "block_out_channels", "layers_per_block",
            "downsample_padding", "mid_block_scale_factor", "act_fn", "norm_num_groups", "norm_eps", "cross_attention_dim",
            "transformer_layers_per_block", "encoder_hid_dim", "encoder_hid_dim_type", "attention_head_dim", "num_attention_heads",
            "use_linear_projection", "class_embed_type", "addition_embed_type", "addition_time_embed_dim", "num_class_embeds",
            "upcast_attention", "resnet_time_scale_shift", "projection_class_embeddings_input_dim", "brushnet_conditioning_channel_order",
            "conditioning_embedding_out_channels", "global_pool_conditions", "addition_embed_type_num_heads"}
    extra = set(json.loads((OUT / "brushnet_release/segmentation_mask_brushnet_ckpt/config.json").read_text())) - fork
    assert not extra, extra
    ckpt = load_file(str(OUT / "single" / "sd15_inpainting_2022.safetensors"))
    unet = UNet2DConditionModel.from_pretrained(MODELS / "unet_sd15_inpaint")
    vae = AutoencoderKL.from_pretrained(MODELS / "vae_sd")
    same("single unet", convert_ldm_unet_checkpoint(ckpt, dict(unet.config)), unet.state_dict(), torch.float16)
    same("single vae", convert_ldm_vae_checkpoint(ckpt, dict(vae.config)), vae.state_dict(), torch.float16)
    text = convert_ldm_clip_checkpoint(ckpt)
    same("single text", {k.removeprefix("text_model."): v for k, v in text.items()},
         CLIPTextModel.from_pretrained(MODELS / "clip_quick_gelu", dtype=torch.float32).state_dict(), torch.float16)
    vae_only = load_file(str(OUT / "single" / "vae_ft_mse.safetensors"))
    same("vae-only single file", convert_ldm_vae_checkpoint(vae_only, dict(vae.config)), vae.state_dict(), torch.float16)
    x4 = load_file(str(OUT / "single" / "x4_upscaler.safetensors"))
    unet = UNet2DConditionModel.from_pretrained(MODELS / "unet_x4")
    vae = AutoencoderKL.from_pretrained(MODELS / "vae_x4")
    same("x4 single unet", convert_ldm_unet_checkpoint(x4, dict(unet.config)), unet.state_dict(), torch.float16)
    same("x4 single vae", convert_ldm_vae_checkpoint(x4, dict(vae.config)), vae.state_dict(), torch.float16)
    text = CLIPTextModel.from_pretrained(MODELS / "clip_gelu", dtype=torch.float32)
    text_sd = convert_open_clip_checkpoint(text, x4)
    layers = text.config.num_hidden_layers
    text_sd = {k.removeprefix("text_model."): v for k, v in text_sd.items()
               if not k.startswith(f"text_model.encoder.layers.{layers}.") and k != "text_projection.weight"}
    same("x4 single text", text_sd, text.state_dict(), torch.float16)
    same("sharded unet", UNet2DConditionModel.from_pretrained(OUT / "sharded" / "unet", variant="fp16").state_dict(),
         UNet2DConditionModel.from_pretrained(MODELS / "unet_hd_painter").state_dict(), torch.float16)
    same("sharded text", CLIPTextModel.from_pretrained(OUT / "sharded" / "text_encoder", dtype=torch.float32).state_dict(),
         CLIPTextModel.from_pretrained(MODELS / "clip_gelu", dtype=torch.float32).state_dict())
    print("published layouts: every family loads to its twin's weights in diffusers / transformers")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only verify the committed files")
    args = ap.parse_args()
    import torch

    if not args.check:
        write_sd2(torch)
        write_sd15(torch)
        write_x4(torch)
        write_dreamshaper(torch)
        write_brushnet()
        write_single(torch)
        write_single_x4(torch)
        write_sharded(torch)
    verify(torch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
