"""How the collaborators' noise predictions are mixed: pure functions over a stacked modality axis.

Shapes: M modalities stacked on dim 0. eps [M, B, C, H, W]; influence logits and weights
[M, B, 1, H, W]; weights sum to one over M at every pixel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

RULES = ("paper", "official")
MODES = ("collaborative", "composable", "no_spatial", "no_temporal")


def softmax_influence(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel softmax over modalities (the paper's Eq. 4 normalisation)."""
    return torch.softmax(logits.float(), dim=0)


def cosine_decay(t: int, num_timesteps: int = 1000) -> torch.Tensor:
    """(cos((1 - t/T) pi) + 1) / 2: 1 at t = T, 0 at t = 0; computed in float32 like the official code."""
    ratio = torch.tensor(t, dtype=torch.int64) / num_timesteps
    return (torch.cos((1 - ratio) * math.pi) + 1) / 2


@dataclass(frozen=True)
class OfficialReweighting:
    """The hand-set rule of the official sampler, applied after the softmax (not in the paper).

    The layout modalities' weights (the mask; also a sketch in the official 3-way code) are
    multiplied by a cosine decay in t; the other modalities share what is left, 1 - sum(layout),
    in proportion to their softmax weights (for mask + text: w_text = 1 - w_mask exactly); then the
    layout weights are multiplied by `boost` and everything is renormalised to sum to one.
    """

    layout: tuple[bool, ...]  # per modality: decayed and boosted?
    boost: float = 2.0
    num_timesteps: int = 1000

    def __call__(self, weights: torch.Tensor, t: int) -> torch.Tensor:
        is_layout = torch.tensor(self.layout, device=weights.device).view(-1, *([1] * (weights.ndim - 1)))
        decayed = weights * cosine_decay(t, self.num_timesteps).to(weights.device)
        layout_w = torch.where(is_layout, decayed, torch.zeros_like(weights))
        rest_w = torch.where(is_layout, torch.zeros_like(weights), weights)
        remaining = 1 - layout_w.sum(dim=0, keepdim=True)
        rest_total = rest_w.sum(dim=0, keepdim=True)
        # Where only layout modalities exist there is nobody to absorb the remainder.
        rest_share = torch.where(rest_total > 0, rest_w / rest_total.clamp_min(1e-30), rest_w)
        mixed = torch.where(is_layout, layout_w * self.boost, rest_share * remaining)
        return mixed / mixed.sum(dim=0, keepdim=True)


def spatial_mean(weights: torch.Tensor) -> torch.Tensor:
    """'w/o spatial' ablation: one weight per modality per step, the pixel average of the maps."""
    return weights.mean(dim=(-2, -1), keepdim=True).expand_as(weights)


def uniform_weights(num_modalities: int, like: torch.Tensor) -> torch.Tensor:
    """Composable-diffusion baseline: equal fixed weights 1/M at every pixel and step."""
    shape = (num_modalities, like.shape[0], 1, like.shape[-2], like.shape[-1])
    return torch.full(shape, 1.0 / num_modalities, device=like.device, dtype=torch.float32)


def combine(eps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """eps = sum_m w_m * eps_m  (per pixel, broadcast over channels)."""
    return (weights.to(eps.dtype) * eps).sum(dim=0)


def validate_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"unknown combination rule {rule!r}; choose one of {', '.join(RULES)}")
    return rule


def validate_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode
