"""A reference of BrushNet (TencentARC/BrushNet, arXiv 2403.06976) on diffusers' blocks.

BrushNet's code is a fork of diffusers (src/diffusers/models/brushnet.py, the `brushnet`
arguments of its unet_2d_condition.py and unet_2d_blocks.py, pipelines/brushnet/
pipeline_brushnet.py). This file follows it, written for the pip release of diffusers, whose
blocks have no BrushNet arguments: the branch and the base UNet's forward with the added
samples are spelled out here over the blocks' own resnets, attentions and samplers. Nothing of
hd-painter is used.

- `BrushNet`: `BrushNetModel` with its published key layout (`conv_in_condition`,
  `time_embedding`, `down_blocks.*` of DownBlock2D, `brushnet_down_blocks.{i}`, `mid_block`
  (MidBlock2D: two resnets), `brushnet_mid_block`, `up_blocks.*` of UpBlock2D,
  `brushnet_up_blocks.{i}`); `from_unet` as the official classmethod; `features` are the
  activations before the zero convolutions, `forward` the scaled residuals.
- `unet_forward`: the fork's `UNet2DConditionModel.forward` with `down_block_add_samples` (the
  first added to the conv_in output that continues down, not to its skip), `mid_block_add_sample`
  and `up_block_add_samples` (after each resnet or resnet + attention, and after each sampler).
"""

import torch
from torch import nn
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.unets.unet_2d_blocks import get_down_block, get_up_block


class BrushNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch = list(cfg["block_out_channels"])
        lpb = cfg["layers_per_block"]
        groups, eps = cfg["norm_num_groups"], cfg["norm_eps"]
        temb = 4 * ch[0]
        self.cfg = cfg
        zero = lambda c: nn.Conv2d(c, c, 1)
        self.conv_in_condition = nn.Conv2d(cfg["in_channels"] + cfg["conditioning_channels"], ch[0], 3, padding=1)
        self.time_proj = Timesteps(ch[0], cfg["flip_sin_to_cos"], cfg["freq_shift"])
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        self.down_blocks = nn.ModuleList()
        self.brushnet_down_blocks = nn.ModuleList([zero(ch[0])])
        out = ch[0]
        for i in range(len(ch)):
            inp, out = out, ch[i]
            last = i == len(ch) - 1
            self.down_blocks.append(get_down_block("DownBlock2D", num_layers=lpb, in_channels=inp, out_channels=out, temb_channels=temb,
                                                   add_downsample=not last, resnet_eps=eps, resnet_act_fn="silu", resnet_groups=groups,
                                                   downsample_padding=1, num_attention_heads=None, cross_attention_dim=None))
            for _ in range(lpb + (0 if last else 1)):
                self.brushnet_down_blocks.append(zero(out))
        self.brushnet_mid_block = zero(ch[-1])
        self.mid_block = nn.Module()
        self.mid_block.resnets = nn.ModuleList([ResnetBlock2D(in_channels=ch[-1], out_channels=ch[-1], temb_channels=temb, eps=eps, groups=groups) for _ in range(2)])
        rev = list(reversed(ch))
        self.up_blocks = nn.ModuleList()
        self.brushnet_up_blocks = nn.ModuleList()
        out = rev[0]
        for i in range(len(ch)):
            prev, out = out, rev[i]
            inp = rev[min(i + 1, len(ch) - 1)]
            last = i == len(ch) - 1
            self.up_blocks.append(get_up_block("UpBlock2D", num_layers=lpb + 1, in_channels=inp, out_channels=out, prev_output_channel=prev,
                                               temb_channels=temb, add_upsample=not last, resnet_eps=eps, resnet_act_fn="silu",
                                               resnet_groups=groups, resolution_idx=i, num_attention_heads=None, cross_attention_dim=None))
            for _ in range(lpb + 1 + (0 if last else 1)):
                self.brushnet_up_blocks.append(zero(out))

    @classmethod
    def from_unet(cls, unet, conditioning_channels=5):
        c = unet.config
        brushnet = cls(dict(in_channels=c.in_channels, conditioning_channels=conditioning_channels, block_out_channels=c.block_out_channels,
                            layers_per_block=c.layers_per_block, norm_num_groups=c.norm_num_groups, norm_eps=c.norm_eps,
                            flip_sin_to_cos=c.flip_sin_to_cos, freq_shift=c.freq_shift))
        with torch.no_grad():
            w = torch.zeros_like(brushnet.conv_in_condition.weight)
            w[:, :4] = unet.conv_in.weight
            w[:, 4:8] = unet.conv_in.weight
            brushnet.conv_in_condition.weight.copy_(w)
            brushnet.conv_in_condition.bias.copy_(unet.conv_in.bias)
            for m in [brushnet.brushnet_mid_block, *brushnet.brushnet_down_blocks, *brushnet.brushnet_up_blocks]:
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
        brushnet.time_embedding.load_state_dict(unet.time_embedding.state_dict())
        brushnet.down_blocks.load_state_dict(unet.down_blocks.state_dict(), strict=False)
        brushnet.mid_block.load_state_dict(unet.mid_block.state_dict(), strict=False)
        brushnet.up_blocks.load_state_dict(unet.up_blocks.state_dict(), strict=False)
        return brushnet

    def features(self, sample, t, cond):
        """The activations the zero convolutions read: conv_in's output, each down resnet and
        downsampler output; the mid block's; each up resnet and upsampler output."""
        emb = self.time_embedding(self.time_proj(torch.full((sample.shape[0],), float(t))))
        x = self.conv_in_condition(torch.cat([sample, cond], 1))
        down = [x]
        for block in self.down_blocks:
            for resnet in block.resnets:
                x = resnet(x, emb)
                down.append(x)
            for d in block.downsamplers or []:
                x = d(x)
                down.append(x)
        for resnet in self.mid_block.resnets:
            x = resnet(x, emb)
        mid = x
        skips = list(down)
        up = []
        for i, block in enumerate(self.up_blocks):
            res = skips[-len(block.resnets):]
            skips = skips[: -len(block.resnets)]
            size = skips[-1].shape[2:] if i < len(self.up_blocks) - 1 else None
            for resnet in block.resnets:
                x = resnet(torch.cat([x, res.pop()], 1), emb)
                up.append(x)
            for u in block.upsamplers or []:
                x = u(x, size)
                up.append(x)
        return down, mid, up

    def forward(self, sample, t, cond, scale=1.0):
        down, mid, up = self.features(sample, t, cond)
        return ([z(d) * scale for z, d in zip(self.brushnet_down_blocks, down)], self.brushnet_mid_block(mid) * scale,
                [z(u) * scale for z, u in zip(self.brushnet_up_blocks, up)])


def unet_forward(unet, sample, t, ehs, down_add=None, mid_add=None, up_add=None):
    """diffusers' UNet2DConditionModel forward (SD's blocks), with BrushNet's added samples."""
    down_add, up_add = list(down_add or []), list(up_add or [])
    add = lambda h, adds: h + adds.pop(0) if adds else h
    emb = unet.time_embedding(unet.time_proj(torch.full((sample.shape[0],), float(t))))
    x = unet.conv_in(sample)
    skips = [x]
    x = add(x, down_add)
    for block in unet.down_blocks:
        attns = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            x = resnet(x, emb)
            if attns is not None:
                x = attns[j](x, encoder_hidden_states=ehs).sample
            x = add(x, down_add)
            skips.append(x)
        for d in block.downsamplers or []:
            x = d(x)
        if block.downsamplers:
            x = add(x, down_add)
            skips.append(x)
    x = unet.mid_block(x, emb, encoder_hidden_states=ehs)
    if mid_add is not None:
        x = x + mid_add
    for i, block in enumerate(unet.up_blocks):
        res = skips[-len(block.resnets):]
        skips = skips[: -len(block.resnets)]
        size = skips[-1].shape[2:] if i < len(unet.up_blocks) - 1 else None
        attns = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            x = resnet(torch.cat([x, res.pop()], 1), emb)
            if attns is not None:
                x = attns[j](x, encoder_hidden_states=ehs).sample
            x = add(x, up_add)
        for u in block.upsamplers or []:
            x = u(x, size)
        if block.upsamplers:
            x = add(x, up_add)
    x = unet.conv_out(unet.conv_act(unet.conv_norm_out(x)))
    return x
