"""A reference of HD-Painter's PAIntA and RASG on diffusers' attention-processor API.

It follows ../shared/spec/METHODS.md sections 3 and 4 and, where the spec is silent, the official
code (Picsart-AI-Research/HD-Painter: src/methods/rasg.py, src/methods/sd.py,
src/smplfusion/patches/{attentionpatch,transformerpatch}/painta.py, src/utils/scores.py,
src/smplfusion/scheduler.py). It is written from those descriptions for diffusers'
`UNet2DConditionModel`; nothing of hd-painter is used.

- PAIntA replaces the self-attention (attn1) of the transformer blocks at the latent/2 and
  latent/4 grids while t > 500. A forward pre-hook on each `BasicTransformerBlock` hands the
  block input x and the text context to the block's attn1 processor, which computes the
  unmodified output y, the conditional half's cross-attention probabilities with the block's own
  attn2.to_q(norm2(x + y)) and attn2.to_k(context), the prompt similarity s, and the rescaled
  self-attention for both guidance halves.
- RASG records the pre-softmax cross-attention logits (conditional half, mean over heads) of
  every attn2 at the latent/4 grid, takes the loss of `scores.bce` (the negated sum over the
  prompt tokens of the mean BCE-with-logits of logits - 1 against the mask), its gradient with
  respect to x_t through the same forward pass, normalises it by its unbiased std and adds
  eta * sigma_t * g to the deterministic DDIM step.
"""

import numpy as np
import torch
import torch.nn.functional as F

SMOOTHING_SIGMA = 0.5


def smoothing_kernel():
    """The official 3x3 GaussianSmoothing kernel (Attend-and-Excite's, with its
    exp(-((x - mean) / (2 std))^2) form): the outer product of [0.211942, 0.576117, 0.211942]."""
    x = torch.arange(3, dtype=torch.float32)
    k = torch.exp(-(((x - 1.0) / (2 * SMOOTHING_SIGMA)) ** 2))
    k2 = k[:, None] * k[None, :]
    return (k2 / k2.sum()).reshape(1, 1, 3, 3)


def prompt_token_indices(tokenizer, prompt, full_prompt):
    """The official token_idx: the user prompt's own tokens (1..n) plus the end-of-text index of
    the full prompt (prompt + ", " + positive prompt)."""
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")

    def ids(text):
        return tokenizer(text, padding="max_length", max_length=77, truncation=True)["input_ids"]

    return list(range(1, ids(prompt).index(eot))) + [ids(full_prompt).index(eot)]


class State:
    """What the processors share during one UNet call."""

    def __init__(self, latent_hw, pixel_mask, tokens, guided):
        self.latent_hw = latent_hw
        self.tokens = tokens
        self.guided = guided
        self.pixel_mask = pixel_mask  # PIL "L" image, 255 = hole
        self.painta = False
        self.painta_on = False  # PAIntA active for this call (t > 500)
        self.record = False
        self.logits = []
        self.scales = []

    def mask_at(self, h, w):
        """The attention-resolution mask: bicubic resize of the pixel mask, > 0.5."""
        from PIL import Image

        small = np.asarray(self.pixel_mask.resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0
        return torch.from_numpy((small > 0.5).astype(np.float32)).reshape(-1)

    def level(self, n):
        """2 or 4 when n tokens are the latent/2 or latent/4 grid, else None."""
        lh, lw = self.latent_hw
        for f in (2, 4):
            if n == (lh // f) * (lw // f):
                return f, lh // f, lw // f
        return None


def heads(attn, t):
    b, n, _ = t.shape
    return t.reshape(b, n, attn.heads, -1).transpose(1, 2)


def merge(attn, o):
    b, h, n, d = o.shape
    return attn.to_out[0](o.transpose(1, 2).reshape(b, n, h * d))


class SelfProcessor:
    """attn1 of a transformer block: plain attention, or PAIntA at the latent/2 and /4 grids."""

    def __init__(self, state, block):
        self.state = state
        self.block = block
        self.x = None
        self.context = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        q, k, v = (heads(attn, f(hidden_states)) for f in (attn.to_q, attn.to_k, attn.to_v))
        logits = q @ k.transpose(-1, -2) * attn.scale
        y = merge(attn, logits.softmax(-1) @ v)
        level = self.state.level(hidden_states.shape[1])
        if not (self.state.painta and self.state.painta_on and level):
            return y
        _, h, w = level
        s = self.prompt_similarity(y, h, w)  # [1, n]
        m = self.state.mask_at(h, w)  # [n], 1 = hole
        # c_ij = s_j for a hole query i and a known key j, 1 elsewhere.
        c = 1.0 - m[:, None] * (1.0 - m[None, :]) * (1.0 - s[0][None, :])
        scaled = (logits * c).softmax(-1) @ v
        return merge(attn, scaled)

    def prompt_similarity(self, y, h, w):
        block, st = self.block, self.state
        n_img = y.shape[0] // 2 if st.guided else y.shape[0]
        x_c, y_c, ctx_c = self.x[-n_img:], y[-n_img:], self.context[-n_img:]
        attn2 = block.attn2
        q2 = heads(attn2, attn2.to_q(block.norm2(x_c + y_c)))
        k2 = heads(attn2, attn2.to_k(ctx_c))
        p = (q2.float() @ k2.float().transpose(-1, -2) * attn2.scale).softmax(-1).mean(1)  # [1, n, 77]
        s = p[..., st.tokens].sum(-1).reshape(1, 1, h, w)
        s = F.conv2d(s, smoothing_kernel(), padding=1).reshape(1, -1)
        s = ((s - torch.median(s)) / torch.max(s)).clip(0, 1)
        st.scales.append(s.detach().clone())
        return s


class CrossProcessor:
    """attn2: plain attention, recording RASG's logits at the latent/4 grid."""

    def __init__(self, state):
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        q = heads(attn, attn.to_q(hidden_states))
        k, v = (heads(attn, f(encoder_hidden_states)) for f in (attn.to_k, attn.to_v))
        logits = q @ k.transpose(-1, -2) * attn.scale
        level = self.state.level(hidden_states.shape[1])
        if self.state.record and level and level[0] == 4:
            n_img = q.shape[0] // 2 if self.state.guided else q.shape[0]
            self.state.logits.append(logits[-n_img:].mean(1))  # [1, n, 77]
        return merge(attn, logits.softmax(-1) @ v)


def install(unet, state):
    """Our processors on every transformer block, and the pre-hooks that give attn1 its block."""
    from diffusers.models.attention import BasicTransformerBlock

    for block in unet.modules():
        if isinstance(block, BasicTransformerBlock):
            sp = SelfProcessor(state, block)
            block.attn1.set_processor(sp)
            block.attn2.set_processor(CrossProcessor(state))

            def hook(module, args, kwargs, sp=sp):
                sp.x = args[0] if args else kwargs["hidden_states"]
                sp.context = kwargs.get("encoder_hidden_states")

            block.register_forward_pre_hook(hook, with_kwargs=True)


def rasg_score(logits, mask, tokens):
    """scores.bce: -sum over prompt tokens of mean BCE-with-logits(A_k - 1, M), with A the logits
    averaged over heads (already) and layers."""
    a = torch.stack(logits).mean(0)[0]  # [n, 77]
    return -sum(F.binary_cross_entropy_with_logits(a[:, k] - 1.0, mask) for k in tokens)


def official_sigma(betas, t, t_prev):
    a = 1.0 - betas
    return torch.sqrt((1 - a[t_prev]) / (1 - a[t]) * (1 - a[t] / a[t_prev]))


def ddim_sigma(a_bar, t, t_prev):
    return torch.sqrt((1 - a_bar[t_prev]) / (1 - a_bar[t]) * (1 - a_bar[t] / a_bar[t_prev]))


def sample(unet, betas, latents, condition, context, state, steps, guidance, rasg=None, added=None):
    """HD-Painter's loop (src/methods/sd.py without RASG, rasg.py with it) on the 999 - dt*k grid:
    returns the latents after every step, the x0 of every step, the normalised gradients, and the
    PAIntA scales of the first step. `rasg` = (eta, "official" | "paper") or None; `added`: an
    SDXL UNet's `added_cond_kwargs` for the [negative, positive] batch."""
    a_bar = torch.cumprod(1.0 - betas, 0)
    dt = 1000 // steps
    zt = latents.clone()
    per_step, x0s, grads, first_scales = [], [], [], None
    for i, t in enumerate(range(999, 0, -dt)):
        state.painta_on = t > 500
        state.logits, state.scales = [], []
        state.record = rasg is not None
        zt = zt.detach().requires_grad_(rasg is not None)
        with torch.set_grad_enabled(rasg is not None):
            zin = torch.cat([zt, condition], 1)
            out = unet(torch.cat([zin, zin]), torch.tensor([t, t]), encoder_hidden_states=context,
                       added_cond_kwargs=added).sample
        u, c = out.detach().chunk(2)
        eps = u + guidance * (c - u)
        # After the last step (t - dt < 0) SD's scheduler config (set_alpha_to_one = False) uses
        # a_bar[0]; the official code indexes a_bar[-1] there (Python's wrap-around), but only
        # that step's x0 is used.
        a_t, a_p = a_bar[t], a_bar[max(t - dt, 0)]
        z0 = (zt.detach() - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        if first_scales is None:
            first_scales = [s.clone() for s in state.scales]
        if rasg is None:
            zt = a_p.sqrt() * z0 + (1 - a_p).sqrt() * eps
        else:
            eta, variant = rasg
            score = rasg_score(state.logits, state.mask_at(*[d // 4 for d in state.latent_hw]), state.tokens)
            (g,) = torch.autograd.grad(score, zt)
            g = g / g.std()
            if t - dt < 0:
                sigma = torch.tensor(0.0, dtype=torch.float64)  # the official value is NaN there
            elif variant == "official":
                sigma = official_sigma(betas, t, t - dt)
            else:
                sigma = ddim_sigma(a_bar, t, t - dt)
            s = eta * sigma
            zt = a_p.sqrt() * z0 + (1 - a_p - s**2).sqrt() * eps + s * g
            grads.append(g.detach().clone())
        zt = zt.detach().float()
        per_step.append(zt.clone())
        x0s.append(z0.float().clone())
    return per_step, x0s, grads, first_scales
