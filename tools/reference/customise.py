"""Golden groups of the customisations: LoRA (kohya-ss and PEFT files fused by diffusers),
textual inversion (diffusers' `load_textual_inversion`), Automatic1111's weighted and chunked
prompts, and an LCM-LoRA run of diffusers' inpainting pipeline. Registered in generate.py's
GROUPS; every expected value comes from diffusers / transformers / PEFT, or, for the prompt
syntax, from Automatic1111's semantics written out below (A1111 is not a package; its
`parse_prompt_attention` docstring examples are checked first, so this parser is the one the
docstring documents)."""

import json
import re

import numpy as np

# ---------------------------------------------------------------------------------------------
# LoRA files: random factors, saved in the layouts users have.

# The layers a full kohya LoRA (with LoCon) touches in the tiny UNets and the text encoder.
UNET_LAYERS = [
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
    "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj",
    "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2",
    "down_blocks.0.attentions.0.proj_in",
    "down_blocks.0.attentions.0.proj_out",
    "down_blocks.0.resnets.0.conv1",
    "down_blocks.0.resnets.0.time_emb_proj",
    "down_blocks.0.downsamplers.0.conv",
    "mid_block.attentions.0.transformer_blocks.0.attn2.to_q",
    "mid_block.resnets.1.conv2",
    "up_blocks.1.resnets.0.conv_shortcut",
    "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_v",
    "up_blocks.0.upsamplers.0.conv",
    "conv_in",
    "time_embedding.linear_1",
]
TEXT_LAYERS = [
    "text_model.encoder.layers.0.self_attn.q_proj",
    "text_model.encoder.layers.0.self_attn.v_proj",
    "text_model.encoder.layers.1.self_attn.out_proj",
    "text_model.encoder.layers.1.mlp.fc1",
    "text_model.encoder.layers.0.mlp.fc2",
]


def submodule(model, name):
    """`model.get_submodule(name)`, the `text_model.` prefix of transformers 4 names dropped where
    the model (transformers 5) has none."""
    if name.startswith("text_model.") and not hasattr(model, "text_model"):
        name = name[len("text_model."):]
    return model.get_submodule(name)


def has_submodule(model, name):
    try:
        submodule(model, name)
        return True
    except AttributeError:
        return False


def factors(rng, module, rank, conv_as_4d):
    """Down and up factors for `module` (a torch layer): LoCon's [r, in, kh, kw] and
    [out, r, 1, 1] for convolutions, [r, in] and [out, r] for linear layers."""
    import torch

    w = module.weight
    if w.ndim == 4:
        down = rng.standard_normal((rank, w.shape[1], w.shape[2], w.shape[3])) * 0.3
        up = rng.standard_normal((w.shape[0], rank, 1, 1)) * 0.3
        if not conv_as_4d and w.shape[2:] == (1, 1):
            down, up = down[:, :, 0, 0], up[:, :, 0, 0]
    else:
        down = rng.standard_normal((rank, w.shape[1])) * 0.3
        up = rng.standard_normal((w.shape[0], rank)) * 0.3
    return torch.from_numpy(down.astype(np.float32)), torch.from_numpy(up.astype(np.float32))


def kohya_file(rng, unet, text_encoder, path, dtype, unet_layers=UNET_LAYERS):
    """A kohya-ss LoRA: `lora_unet_*` / `lora_te_*` names with underscores, per-layer alphas."""
    import torch
    from safetensors.torch import save_file

    t = {}
    for prefix, model, layers in (("lora_unet_", unet, unet_layers), ("lora_te_", text_encoder, TEXT_LAYERS)):
        for i, name in enumerate(n for n in layers if has_submodule(model, n)):
            rank = 2 + i % 3
            down, up = factors(rng, submodule(model, name), rank, conv_as_4d=True)
            key = prefix + name.replace(".", "_")
            t[f"{key}.lora_down.weight"], t[f"{key}.lora_up.weight"] = down.to(dtype), up.to(dtype)
            t[f"{key}.alpha"] = torch.tensor(float(rank) * (0.5 + 0.25 * (i % 4))).to(dtype)
    save_file(t, str(path))


def peft_file(rng, unet, text_encoder, path):
    """A diffusers / PEFT LoRA: `unet.*.lora_A.weight`, `text_encoder.*.lora_B.weight`, one rank
    per model, alphas (one by pattern) in the `lora_adapter_metadata` diffusers writes; text
    encoder names as transformers 5 gives them (no `text_model.` prefix)."""
    from safetensors.torch import save_file

    t, meta = {}, {}
    for prefix, model, layers, rank, alpha in (("unet", unet, UNET_LAYERS[:9] + UNET_LAYERS[12:14], 4, 6.0),
                                               ("text_encoder", text_encoder, [n.removeprefix("text_model.") for n in TEXT_LAYERS], 3, 1.5)):
        for name in layers:
            down, up = factors(rng, submodule(model, name), rank, conv_as_4d=True)
            t[f"{prefix}.{name}.lora_A.weight"], t[f"{prefix}.{name}.lora_B.weight"] = down, up
        meta.update({f"{prefix}.r": rank, f"{prefix}.lora_alpha": alpha, f"{prefix}.target_modules": layers,
                     f"{prefix}.alpha_pattern": {layers[1]: alpha * 3}})
    save_file(t, str(path), metadata={"format": "pt", "lora_adapter_metadata": json.dumps(meta, sort_keys=True)})


def model_outputs(pipe, inputs):
    """The text encoder's hidden states for the prompt ids and the UNet's output for the inputs."""
    import torch

    with torch.no_grad():
        hidden = pipe.text_encoder(inputs["ids"]).last_hidden_state
        sample = pipe.unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["context"]).sample
    return hidden.numpy(), sample.numpy()


def gen_lora(out, rng):
    """kohya (f16 factors, LoCon on 3x3 convolutions, per-layer alphas) and PEFT (metadata
    alphas, an alpha pattern) LoRAs for the 4-channel pipeline with linear projections, a kohya
    LoRA for the 9-channel one with 1x1-convolution projections; diffusers' `load_lora_weights`
    + `fuse_lora` at a scale, and the two 4-channel LoRAs together at two scales
    (`set_adapters`): the text encoder's and the UNet's outputs before and after each."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    restore = fix_kohya_conversion()
    models = out / "models"
    dest = models / "lora"
    dest.mkdir(parents=True, exist_ok=True)
    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    t = {}
    for pipeline, cls, name in (("pipeline_sd", StableDiffusionPipeline, "sd"),
                                ("pipeline_inpaint", StableDiffusionInpaintPipeline, "inpaint")):
        pipe = cls.from_pretrained(models / pipeline, safety_checker=None, requires_safety_checker=False, dtype=torch.float32)
        channels = pipe.unet.config.in_channels
        inputs = {"ids": torch.from_numpy(rng.integers(0, 500, (1, 77))), "timestep": torch.tensor(411.0),
                  "sample": f(rng.standard_normal((2, channels, 8, 12))), "context": f(rng.standard_normal((2, 77, 32)))}
        t.update({f"{name}.{k}": v.numpy() for k, v in inputs.items()})
        t[f"{name}.base.hidden"], t[f"{name}.base.unet"] = model_outputs(pipe, inputs)
        kohya = dest / f"kohya_{name}.safetensors"
        kohya_file(rng, pipe.unet, pipe.text_encoder, kohya, torch.float16 if name == "sd" else torch.float32)
        fused(pipe, [(kohya, "kohya", 0.8)])
        check_fused(cls.from_pretrained(models / pipeline, safety_checker=None, requires_safety_checker=False,
                                        dtype=torch.float32), pipe, kohya, 0.8)
        t[f"{name}.kohya.hidden"], t[f"{name}.kohya.unet"] = model_outputs(pipe, inputs)
        if name != "sd":
            continue
        peft = dest / "peft_sd.safetensors"
        peft_file(rng, pipe.unet, pipe.text_encoder, peft)
        fused(pipe, [(peft, "peft", 1.0)])
        t["sd.peft.hidden"], t["sd.peft.unet"] = model_outputs(pipe, inputs)
        fused(pipe, [(kohya, "kohya", 0.6), (peft, "peft", 1.3)])
        t["sd.both.hidden"], t["sd.both.unet"] = model_outputs(pipe, inputs)
    restore()
    save_golden(out, "lora", t)


def fix_kohya_conversion():
    """Two defects of diffusers 0.42's kohya conversion, undone so that the reference applies the
    format as kohya-ss, Automatic1111 and ComfyUI do (W += alpha / rank * up @ down per layer;
    `check_fused` below verifies every fused weight against that formula):
    - the alphas of attention layers are filed under `...attn1.processor.to_q_lora.down.weight.alpha`
      (`...self_attn.to_q_lora...` in the text encoder), names no module has, so PEFT falls back
      to the most common alpha for them;
    - `lora_te_text_model_*` names become `text_encoder.text_model.*`, and the alphas keep that
      prefix, which transformers 5's CLIPTextModel (no `text_model.` level) lacks.
    Returns the function that restores the original conversion."""
    from diffusers.loaders import lora_pipeline

    convert = lora_pipeline._convert_non_diffusers_lora_to_diffusers
    unet = re.compile(r"\.processor\.to_(q|k|v|out)_lora\.down\.weight\.alpha$")
    text = re.compile(r"\.self_attn\.to_(q|k|v|out)_lora\.down\.weight\.alpha$")

    def fix(key):
        key = key.replace("text_encoder.text_model.", "text_encoder.", 1)
        key = unet.sub(lambda m: f".to_{m.group(1)}{'.0' if m.group(1) == 'out' else ''}.alpha", key)
        # The text encoder's patterns are the name less its last two parts.
        return text.sub(lambda m: f".self_attn.{m.group(1)}_proj.lora.down.weight.alpha", key)

    def converted(state_dict, *args, **kwargs):
        state, alphas = convert(state_dict, *args, **kwargs)
        return {fix(k): v for k, v in state.items()}, {fix(k): v for k, v in alphas.items()}

    lora_pipeline._convert_non_diffusers_lora_to_diffusers = converted
    return lambda: setattr(lora_pipeline, "_convert_non_diffusers_lora_to_diffusers", convert)


def check_fused(base, pipe, kohya, scale):
    """Every weight the kohya file names, fused by diffusers, against W + scale * alpha / rank *
    up @ down computed here."""
    import torch
    from safetensors.torch import load_file

    f = load_file(str(kohya))
    for key in (k for k in f if k.endswith(".lora_down.weight")):
        stem = key[: -len(".lora_down.weight")]
        model, names = (base.unet, pipe.unet) if stem.startswith("lora_unet_") else (base.text_encoder, pipe.text_encoder)
        name = next(n for n, _ in model.named_modules() if n.replace(".", "_") == stem.split("_", 2)[2].removeprefix("model_") or
                    "text_model_" + n.replace(".", "_") == stem.split("_", 2)[2])
        down, up, alpha = f[key].float(), f[f"{stem}.lora_up.weight"].float(), f[f"{stem}.alpha"].float()
        w = model.get_submodule(name).weight
        expected = w + (up.flatten(1) @ down.flatten(1)).reshape(w.shape) * (alpha / down.shape[0] * scale)
        fused = names.get_submodule(name)
        fused = getattr(fused, "base_layer", fused).weight
        err = float((fused - expected).detach().abs().max())
        assert err < 1e-5 * max(1.0, float(expected.abs().max())), f"{stem}: diffusers fused it {err} away"


def fused(pipe, loras):
    """The pipeline with only `loras` ((file, adapter name, scale)) loaded and fused at their
    scales, whatever was loaded before taken out."""
    pipe.unfuse_lora()
    pipe.unload_lora_weights()
    for path, adapter, _ in loras:
        pipe.load_lora_weights(str(path), adapter_name=adapter)
    names = [adapter for _, adapter, _ in loras]
    pipe.set_adapters(names, adapter_weights=[scale for _, _, scale in loras])
    pipe.fuse_lora(adapter_names=names)


def save_golden(out, name, tensors):
    from safetensors.numpy import save_file

    path = out / "models" / "lora" / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))


# ---------------------------------------------------------------------------------------------
# Automatic1111's prompt syntax, written out from its semantics (modules/prompt_parser.py
# `parse_prompt_attention`, modules/sd_hijack_clip.py `tokenize_line` / `process_tokens`, the
# default "Original" emphasis of modules/sd_emphasis.py, `comma_padding_backtrack` = 20).

A1111_ATTENTION = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|]|[^\\()\[\]:]+|:", re.X)
A1111_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)

# The examples of `parse_prompt_attention`'s docstring, with the output it documents.
A1111_DOCSTRING = [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
      [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]]),
]


def a1111_parse(text):
    res, round_brackets, square_brackets = [], [], []

    def multiply_range(start, multiplier):
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in A1111_ATTENTION.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            res.append([token[1:], 1.0])
        elif token == "(":
            round_brackets.append(len(res))
        elif token == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(re.split(A1111_BREAK, token)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for pos in round_brackets:
        multiply_range(pos, 1.1)
    for pos in square_brackets:
        multiply_range(pos, 1 / 1.1)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


def a1111_chunks(tokenizer, prompt, backtrack=20):
    """`tokenize_line`: [(77 ids, 77 multipliers)] for one prompt (no embeddings)."""
    parsed = a1111_parse(prompt)
    tokenized = tokenizer([text for text, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"]
    comma, start, end = tokenizer.get_vocab().get(",</w>"), tokenizer.bos_token_id, tokenizer.eos_token_id
    chunks, state = [], {"tokens": [], "mults": [], "last_comma": -1}

    def next_chunk():
        to_add = 75 - len(state["tokens"])
        tokens = [start] + state["tokens"] + [end] * max(to_add, 0) + [end]
        mults = [1.0] + state["mults"] + [1.0] * max(to_add, 0) + [1.0]
        chunks.append((tokens, mults))
        state.update(tokens=[], mults=[], last_comma=-1)

    for tokens, (text, weight) in zip(tokenized, parsed):
        if text == "BREAK" and weight == -1:
            next_chunk()
            continue
        for token in tokens:
            chunk = state["tokens"]
            if token == comma:
                state["last_comma"] = len(chunk)
            elif backtrack and len(chunk) == 75 and state["last_comma"] != -1 and len(chunk) - state["last_comma"] <= backtrack:
                at = state["last_comma"] + 1
                moved, moved_mults = chunk[at:], state["mults"][at:]
                state["tokens"], state["mults"] = chunk[:at], state["mults"][:at]
                next_chunk()
                state["tokens"], state["mults"] = moved, moved_mults
            if len(state["tokens"]) == 75:
                next_chunk()
            state["tokens"].append(token)
            state["mults"].append(weight)
    if state["tokens"] or not chunks:
        next_chunk()
    return chunks


def a1111_encode(text_encoder, chunks, end, pad):
    """`process_tokens` + the "Original" emphasis, chunk by chunk, concatenated."""
    import torch

    zs = []
    for tokens, mults in chunks:
        ids = torch.tensor([tokens])
        first_end = tokens.index(end)
        ids[0, first_end + 1:] = pad
        with torch.no_grad():
            z = text_encoder(ids).last_hidden_state
        original_mean = z.mean()
        z = z * torch.asarray(mults).reshape(1, -1, 1).expand(z.shape)
        z = z * (original_mean / z.mean())
        zs.append(z)
    return torch.hstack(zs)


WEIGHTED_PROMPTS = [
    "", " ", "a red sofa", "a (red) sofa", "a ((red)) sofa", "a (((red))) sofa", "a [red] sofa", "a [[red]] sofa",
    "a (red:1.3) sofa", "a (red:0.5) sofa", "a (red:-1) sofa", "a (red:+1.5) sofa", "a (red:.5) sofa", "a (red:1.) sofa",
    "(a (big:1.5) red:0.8) sofa", "((a [b] c)) d", "[(a:1.2)] b", "\\(not weighted\\) sofa", "\\[also not\\]",
    "back\\\\slash", "a \\ lone backslash", "(open bracket", "close bracket)", "stray ] square", "[open square",
    "colon: inside", "ratio 16:9", "(x:1.2", "(a:1e2)", "(:1.2)", "(1.5)", "(a)(b)", "(a:1.1)(b)", "a BREAK b",
    "BREAK", "a BREAK BREAK b", "BREAKFAST at noon", "(a BREAK b)", "a, b, c, d, " * 12, "abcdefgh " * 12,
    "(long weighted:1.2) " * 10 + "tail", "sofa, " * 14 + "a BREAK " + "lamp, " * 10, "x" * 74 + ", " + "y" * 30,
    "a red leather sofa, (golden lamp:1.3), [dark] background, (((masterpiece))), best quality",
    "DON'T (SHOUT:1.2)", "café (naïve:1.1) résumé", "<|endoftext|> (a:1.5)",
    # A comma 15 tokens before the chunk's end (moved with what follows), and one 25 before.
    "cat " * 60 + ", (dog:1.2) " + "dog " * 30, "cat " * 50 + ", " + "dog " * 40, "ab " * 30 + ", " + "[cd] " * 20, "ab " * 25 + ", " + "cd " * 30,
]


def gen_prompt_weighting(out, rng):
    """Automatic1111's layout and emphasis for 51 prompts (weights, nesting, escapes, unbalanced
    brackets, BREAK, prompts of several chunks, commas near the chunk end): the ids and
    multipliers with the real CLIP vocabulary, and with the tiny pipeline's tokenizer also the
    text encoder's weighted hidden states."""
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    for text, expected in A1111_DOCSTRING:
        assert a1111_parse(text) == expected, (text, a1111_parse(text))
    models = out / "models"
    full = CLIPTokenizer(vocab=str(out / "tokenizer" / "vocab.json"), merges=str(out / "tokenizer" / "merges.txt"))
    tiny = CLIPTokenizer.from_pretrained(models / "pipeline_sd" / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(models / "pipeline_sd" / "text_encoder", dtype=torch.float32)
    t = {}
    for i, prompt in enumerate(WEIGHTED_PROMPTS):
        for name, tok in (("full", full), ("tiny", tiny)):
            chunks = a1111_chunks(tok, prompt)
            t[f"{name}.{i}.ids"] = np.array([c[0] for c in chunks], dtype=np.int64)
            t[f"{name}.{i}.weights"] = np.array([c[1] for c in chunks], dtype=np.float64)
        t[f"tiny.{i}.hidden"] = a1111_encode(text_encoder, a1111_chunks(tiny, prompt), tiny.eos_token_id, tiny.pad_token_id).numpy()
    dest = models / "prompt_weighting"
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "prompts.json", "w", encoding="utf-8") as f:
        json.dump(WEIGHTED_PROMPTS, f, ensure_ascii=False, indent=0)
    from safetensors.numpy import save_file
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, str(dest / "weighted.safetensors"))


# ---------------------------------------------------------------------------------------------
# Textual inversion.

TI_PROMPTS = ["a <cat-toy> on a sofa", "a sofa in <style>", "<style> and <Cat-Toy>, <mv>", "<mv>_1 alone",
              "a<cat-toy>b", "no learned token", "(<cat-toy>:1.3) in [<style>]"]


def gen_textual_inversion(out, rng):
    """diffusers' `load_textual_inversion` on the tiny 4-channel pipeline: a diffusers file with one
    vector (`[dim]`), an Automatic1111 `emb_params` file with three vectors (its token given) and a
    diffusers file with two; the ids of prompts naming them (`maybe_convert_prompt`, padded to 77),
    the text encoder's hidden states, and for the weighted syntax the chunk ids."""
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    models = out / "models"
    dest = models / "textual_inversion"
    dest.mkdir(parents=True, exist_ok=True)
    f = lambda shape: torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    files = [("cat_toy.safetensors", {"<cat-toy>": f((32,))}, None),
             ("style.safetensors", {"emb_params": f((3, 32))}, "<style>"),
             ("multi.safetensors", {"<mv>": f((2, 32)).to(torch.float16)}, None)]
    pipe = StableDiffusionPipeline.from_pretrained(models / "pipeline_sd", safety_checker=None,
                                                   requires_safety_checker=False, dtype=torch.float32)
    for name, tensors, token in files:
        save_file(tensors, str(dest / name))
        pipe.load_textual_inversion(str(dest / name), token=token)
    t = {}
    for i, prompt in enumerate(TI_PROMPTS):
        converted = pipe.maybe_convert_prompt(prompt, pipe.tokenizer)
        ids = pipe.tokenizer(converted, padding="max_length", max_length=77, truncation=True, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            t[f"{i}.hidden"] = pipe.text_encoder(ids).last_hidden_state.numpy()
        t[f"{i}.ids"] = ids.numpy().astype(np.int64)
        t[f"{i}.weighted_ids"] = np.array([c[0] for c in a1111_chunks(pipe.tokenizer, converted)], dtype=np.int64)
    with open(dest / "prompts.json", "w", encoding="utf-8") as fp:
        json.dump(TI_PROMPTS, fp, ensure_ascii=False, indent=0)
    from safetensors.numpy import save_file as save_np
    save_np({k: np.ascontiguousarray(v) for k, v in t.items()}, str(dest / "expected.safetensors"))


# ---------------------------------------------------------------------------------------------
# LCM-LoRA.

def gen_lcm_lora(out, rng):
    """An LCM-LoRA Stable Inpainting run: diffusers' StableDiffusionInpaintPipeline on the 9-channel
    tiny pipeline with `kohya_inpaint` (group `lora`) fused at 1.0 into its UNet and text encoder,
    `LCMScheduler.from_config` of the folder's config, 4 steps, guidance 1 (LCM-LoRA's preset:
    no negative pass), the prompt encoded by the fused text encoder, LCM's per-step noise given:
    the latents after every step."""
    import torch
    from diffusers import LCMScheduler, StableDiffusionInpaintPipeline
    from diffusers.schedulers import scheduling_lcm

    models = out / "models"
    restore = fix_kohya_conversion()
    pipe = StableDiffusionInpaintPipeline.from_pretrained(models / "pipeline_inpaint", safety_checker=None,
                                                          requires_safety_checker=False, dtype=torch.float32)
    fused(pipe, [(models / "lora" / "kohya_inpaint.safetensors", "lcm", 1.0)])
    restore()
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.tokenizer.model_max_length = 77  # the tiny tokenizer's config says no limit
    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    h, w, steps = 32, 48, 4
    image = f(rng.uniform(-1, 1, (1, 3, h, w)))
    mask = torch.zeros(1, 1, h, w)
    mask[:, :, 6:28, 10:36] = 1.0
    with torch.no_grad():
        masked_latents = pipe.vae.encode(image * (mask < 0.5)).latent_dist.mean * pipe.vae.config.scaling_factor
    latents = f(rng.standard_normal((1, 4, h // 2, w // 2)))
    noises = f(rng.standard_normal((steps, 1, 4, h // 2, w // 2)))
    drawn = iter(noises)
    original = scheduling_lcm.randn_tensor
    scheduling_lcm.randn_tensor = lambda *a, **k: next(drawn).clone()
    per_step = []
    with torch.no_grad():
        pipe(prompt="a red sofa", image=(image + 1) / 2, mask_image=mask, masked_image_latents=masked_latents,
             latents=latents, height=h, width=w, num_inference_steps=steps, guidance_scale=1.0, output_type="latent",
             callback_on_step_end=lambda p, i, ts, kw: per_step.append(kw["latents"].clone()) or kw)
    scheduling_lcm.randn_tensor = original
    save_sampling(out, "lcm_lora", {"image": image.numpy(), "mask": mask.numpy(), "masked_latents": masked_latents.numpy(),
                                    "latents": latents.numpy(), "noises": noises.numpy(),
                                    "timesteps": pipe.scheduler.timesteps.numpy().astype(np.float64),
                                    "steps": torch.stack(per_step).numpy()})


def save_sampling(out, name, tensors):
    from safetensors.numpy import save_file

    path = out / "sampling" / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
