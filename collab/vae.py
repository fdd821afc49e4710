"""AutoencoderKL, the first stage of the LDMs: image [-1, 1] <-> latent (diagonal Gaussian posterior).

Module names follow the official `ldm.models.autoencoder.AutoencoderKL` state_dict.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from collab.layers import GroupNorm32


@dataclass(frozen=True)
class VAEConfig:
    """Field names are the official `ddconfig` names plus `embed_dim`."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 3
    embed_dim: int = 3
    in_channels: int = 3
    out_ch: int = 3
    resolution: int = 256
    attn_resolutions: tuple[int, ...] = ()
    double_z: bool = True
    # Not an official field (official: 32). With 32 groups a 32-channel VAE normalises every channel
    # alone, i.e. instance norm, which wipes out flat colours; small VAEs use fewer groups, and 0
    # means no normalisation at all (nothing re-centres a flat region's colour).
    norm_groups: int = 32
    # Not official either: a parameter-free colour path. The posterior mean's first three channels
    # start as the image's mean colour over each f x f cell and the decoder adds them back,
    # upsampled, so flat colours survive from the first step and the networks learn the rest.
    rgb_shortcut: bool = False

    def __post_init__(self) -> None:
        if self.rgb_shortcut and (self.embed_dim < 3 or self.in_channels != 3 or self.out_ch != 3):
            raise ValueError("rgb_shortcut needs RGB in and out and embed_dim >= 3")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


def _norm(ch: int, groups: int = 32) -> nn.Module:
    return GroupNorm32(groups, ch, eps=1e-6) if groups else nn.Identity()


class ResnetBlock(nn.Module):
    def __init__(self, ch: int, out_ch: int, groups: int = 32) -> None:
        super().__init__()
        self.norm1 = _norm(ch, groups)
        self.conv1 = nn.Conv2d(ch, out_ch, 3, padding=1)
        self.norm2 = _norm(out_ch, groups)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(ch, out_ch, 1) if ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, with 1x1-conv projections."""

    def __init__(self, ch: int, groups: int = 32) -> None:
        super().__init__()
        self.norm = _norm(ch, groups)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        q, k, v = (proj(hn).flatten(2).transpose(1, 2)[:, None] for proj in (self.q, self.k, self.v))  # B,1,HW,C
        out = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric pad, as the official encoder


class Upsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, ch: int, groups: int = 32) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(ch, ch, groups)
        self.attn_1 = AttnBlock(ch, groups)
        self.block_2 = ResnetBlock(ch, ch, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution of the encoder or decoder: ResnetBlocks (+ attention) and a resampler."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module], resample: nn.Module | None, name: str) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)
        if resample is not None:
            self.add_module(name, resample)
        self.resample_name = name if resample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if self.attn:
                x = self.attn[i](x)
        return getattr(self, self.resample_name)(x) if self.resample_name else x


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        in_mult = (1, *cfg.ch_mult)
        res, self.down = cfg.resolution, nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            ch_in, ch_out = cfg.ch * in_mult[i], cfg.ch * mult
            blocks = [ResnetBlock(ch_in if j == 0 else ch_out, ch_out, cfg.norm_groups) for j in range(cfg.num_res_blocks)]
            attns = [AttnBlock(ch_out, cfg.norm_groups) for _ in blocks] if res in cfg.attn_resolutions else []
            last = i == len(cfg.ch_mult) - 1
            self.down.append(_Level(blocks, attns, None if last else Downsample(ch_out), "downsample"))
            res = res if last else res // 2
        ch = cfg.ch * cfg.ch_mult[-1]
        self.mid = _Mid(ch, cfg.norm_groups)
        self.norm_out = _norm(ch, cfg.norm_groups)
        self.conv_out = nn.Conv2d(ch, 2 * cfg.z_channels if cfg.double_z else cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        ch = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // cfg.downsample_factor
        self.conv_in = nn.Conv2d(cfg.z_channels, ch, 3, padding=1)
        self.mid = _Mid(ch, cfg.norm_groups)
        levels: list[_Level] = []
        for i in reversed(range(len(cfg.ch_mult))):
            ch_out = cfg.ch * cfg.ch_mult[i]
            blocks = [ResnetBlock(ch if j == 0 else ch_out, ch_out, cfg.norm_groups) for j in range(cfg.num_res_blocks + 1)]
            attns = [AttnBlock(ch_out, cfg.norm_groups) for _ in blocks] if res in cfg.attn_resolutions else []
            levels.insert(0, _Level(blocks, attns, Upsample(ch_out) if i else None, "upsample"))
            ch, res = ch_out, (res * 2 if i else res)
        self.up = nn.ModuleList(levels)  # indexed by level, as in the official key names
        self.norm_out = _norm(ch, cfg.norm_groups)
        self.conv_out = nn.Conv2d(ch, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class DiagonalGaussian:
    """The encoder's posterior q(z|x) = N(mean, exp(logvar))."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> DiagonalGaussian:
        mean, logvar = moments.chunk(2, dim=1)
        return cls(mean, logvar.clamp(-30.0, 20.0))

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) summed over latent dimensions, per sample."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=(1, 2, 3))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    @property
    def dtype(self) -> torch.dtype:
        return self.quant_conv.weight.dtype

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """x [B, 3, H, W] in [-1, 1] -> posterior over latents [B, embed_dim, H/f, W/f] (unscaled)."""
        moments = self.quant_conv(self.encoder(x.to(self.dtype))).float()
        if self.config.rgb_shortcut:
            colour = F.avg_pool2d(x.float(), self.config.downsample_factor)  # B, 3, H/f, W/f
            moments = torch.cat([moments[:, :3] + colour, moments[:, 3:]], dim=1)
        return DiagonalGaussian.from_moments(moments)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latent -> image in (roughly) [-1, 1], float32."""
        out = self.decoder(self.post_quant_conv(z.to(self.dtype))).float()
        if self.config.rgb_shortcut:
            out = out + F.interpolate(z[:, :3].float(), scale_factor=self.config.downsample_factor, mode="bilinear",
                                      align_corners=False)
        return out
