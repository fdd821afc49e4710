"""The LDM (openai-style) UNet with spatial transformers, used for collaborators and dynamic diffusers.

Module names follow the official `openaimodel.UNetModel` state_dict key for key
(`input_blocks.N.M`, `in_layers.0`, `transformer_blocks.0.attn1.to_q`, ...), so official
checkpoints load with `strict=True` and no key map.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from collab.layers import Conv2d, GroupNorm32, LayerNorm, Linear, attention, timestep_embedding


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of one UNet; field names are the official YAML `unet_config.params` names."""

    in_channels: int = 3
    out_channels: int = 3
    model_channels: int = 192
    channel_mult: tuple[int, ...] = (1, 2, 3, 5)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (8, 4, 2)  # downsample factors that get a transformer
    context_dim: int = 640
    num_heads: int = -1
    num_head_channels: int = -1
    transformer_depth: int = 1
    legacy: bool = True
    use_scale_shift_norm: bool = False
    image_size: int = 64  # informational: the UNet is fully convolutional
    # Not an official field (official: 32 groups). A 32-channel UNet with 32 groups normalises each
    # channel alone (instance norm), which erases the latents' per-channel means, i.e. colour.
    norm_groups: int = 32
    # Not an official field. Group norm on the output path leaves a small UNet unable to carry its
    # input's spatial mean through, so it predicts almost none of the noise's mean; at high noise
    # x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) multiplies that error by 1 / sqrt(ab) and every sample's
    # mean colour comes out wrong (too dark, too saturated). The mean path adds, per output channel,
    # A(t) @ mean_hw(x_t) + b(t), read from the time embedding and zero at the start.
    mean_path: bool = False

    def __post_init__(self) -> None:
        if (self.num_heads == -1) == (self.num_head_channels == -1):
            raise ValueError("set exactly one of num_heads and num_head_channels")

    def heads(self, ch: int) -> tuple[int, int]:
        """(heads, head width) of a transformer at `ch` channels, by the official rule."""
        if self.num_head_channels == -1:
            heads, dim_head = self.num_heads, ch // self.num_heads
        else:
            heads, dim_head = ch // self.num_head_channels, self.num_head_channels
        if self.legacy:  # legacy spatial transformers always split channels evenly over heads
            dim_head = ch // heads
        return heads, dim_head


def mean_offset(coefficients: torch.Tensor, x: torch.Tensor, out_channels: int) -> torch.Tensor:
    """Per-sample affine map of x's per-channel spatial means: coefficients [B, out * (in + 1)] hold A
    [out, in] and b [out]; returns A @ mean_hw(x) + b as [B, out, 1, 1]."""
    ab = coefficients.view(x.shape[0], out_channels, x.shape[1] + 1)
    means = x.mean(dim=(2, 3))
    return (torch.einsum("boi,bi->bo", ab[..., :-1], means) + ab[..., -1])[..., None, None]


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding added (or scale-shift) in between."""

    def __init__(self, ch: int, emb_ch: int, out_ch: int, scale_shift: bool, groups: int = 32) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(GroupNorm32(groups, ch), nn.SiLU(), Conv2d(ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), Linear(emb_ch, 2 * out_ch if scale_shift else out_ch))
        self.out_layers = nn.Sequential(
            GroupNorm32(groups, out_ch), nn.SiLU(), nn.Dropout(0.0), _zero(Conv2d(out_ch, out_ch, 3, padding=1))
        )
        self.skip_connection = nn.Identity() if out_ch == ch else Conv2d(ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        e = self.emb_layers(emb)[:, :, None, None].to(h.dtype)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None = None) -> None:
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or dim
        self.heads = heads
        self.to_q = Linear(dim, inner, bias=False)
        self.to_k = Linear(context_dim, inner, bias=False)
        self.to_v = Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        out = attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to the condition tokens, and a GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int) -> None:
        super().__init__()
        self.attn1 = CrossAttention(dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, heads, dim_head, context_dim)
        self.norm1 = LayerNorm(dim)
        self.norm2 = LayerNorm(dim)
        self.norm3 = LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    def __init__(self, ch: int, heads: int, dim_head: int, depth: int, context_dim: int, groups: int = 32) -> None:
        super().__init__()
        inner = heads * dim_head
        self.norm = GroupNorm32(groups, ch, eps=1e-6)
        self.proj_in = Conv2d(ch, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)]
        )
        self.proj_out = _zero(Conv2d(inner, ch, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # B, HW, C
        context = context.to(tokens.dtype)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return x + self.proj_out(tokens.transpose(1, 2).reshape(b, -1, h, w))


class Downsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.op = Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    """A sequential block whose ResBlocks take the time embedding and transformers the context."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """eps (or influence logits) = UNet(x_t, t, context): x_t [B, C, H, W], t [B] int, context [B, L, D]."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.config = cfg
        mc, emb_ch = cfg.model_channels, cfg.model_channels * 4
        self.time_embed = nn.Sequential(Linear(mc, emb_ch), nn.SiLU(), Linear(emb_ch, emb_ch))

        def res(ch_in: int, ch_out: int) -> ResBlock:
            return ResBlock(ch_in, emb_ch, ch_out, cfg.use_scale_shift_norm, cfg.norm_groups)

        def transformer(ch: int) -> SpatialTransformer:
            heads, dim_head = cfg.heads(ch)
            return SpatialTransformer(ch, heads, dim_head, cfg.transformer_depth, cfg.context_dim, cfg.norm_groups)

        # 1. encoder: per level, num_res_blocks ResBlocks (+ transformer), then a downsample
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(Conv2d(cfg.in_channels, mc, 3, padding=1))])
        skip_chs, ch, ds = [mc], mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * mc)]
                ch = mult * mc
                if ds in cfg.attention_resolutions:
                    layers.append(transformer(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chs.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skip_chs.append(ch)
                ds *= 2

        # 2. bottleneck
        self.middle_block = TimestepEmbedSequential(res(ch, ch), transformer(ch), res(ch, ch))

        # 3. decoder: per level, num_res_blocks + 1 ResBlocks on [h, skip], then an upsample
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_chs.pop(), mc * mult)]
                ch = mc * mult
                if ds in cfg.attention_resolutions:
                    layers.append(transformer(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(cfg.norm_groups, ch), nn.SiLU(), _zero(Conv2d(mc, cfg.out_channels, 3, padding=1)))
        if cfg.mean_path:
            self.mean_path = nn.Sequential(nn.SiLU(), _zero(Linear(emb_ch, cfg.out_channels * (cfg.in_channels + 1))))

        # None: compute in the weights' dtype; float32 with bfloat16 weights = weight-only precision
        self.compute_dtype: torch.dtype | None = None

    @property
    def dtype(self) -> torch.dtype:
        """The dtype activations are computed in."""
        return self.compute_dtype or self.out[2].weight.dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels).to(self.dtype))
        h = x.to(self.dtype)
        if self.out[2].weight.is_contiguous(memory_format=torch.channels_last):
            h = h.contiguous(memory_format=torch.channels_last)  # follow the weights' layout
        skips = []
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        out = self.out(h)
        if self.config.mean_path:
            out = out + mean_offset(self.mean_path(emb), x.to(out.dtype), self.config.out_channels)
        return out.to(x.dtype)
