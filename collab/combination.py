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

    The weights of the modalities that lead early (the mask; also a sketch in the official 3-way
    code; `ModalityConfig.leads_early`) are multiplied by a cosine decay in t; the other modalities
    share what is left, 1 - sum(leading), in proportion to their softmax weights (for mask + text:
    w_text = 1 - w_mask exactly); then the leading weights are multiplied by `boost` and everything
    is renormalised to sum to one.
    """

    leads_early: tuple[bool, ...]  # per modality: decayed and boosted?
    boost: float = 2.0
    num_timesteps: int = 1000

    def __call__(self, weights: torch.Tensor, t: int) -> torch.Tensor:
        is_layout = torch.tensor(self.leads_early, device=weights.device).view(-1, *([1] * (weights.ndim - 1)))
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


# ---------------------------------------------------------------- user handles on top of the learned mix


Window = tuple[float, float]
FULL_WINDOW: Window = (0.0, 1.0)


def step_fraction(index: int, num_steps: int) -> float:
    """Where step `index` lies in the run: 0 = first (noisiest) step, 1 = last."""
    return index / (num_steps - 1) if num_steps > 1 else 0.0


def strength_value(name: str, value) -> float | torch.Tensor:
    """A number, or a 2-D map, checked: finite and >= 0."""
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError(f"strength of {name!r} must be a number >= 0 or an [H, W] map, got {value!r}")
    try:
        t = torch.as_tensor(value, dtype=torch.float32).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"strength of {name!r} must be a number >= 0 or an [H, W] map, got {value!r}") from None
    if t.ndim not in (0, 2) or t.numel() == 0:
        raise ValueError(f"strength of {name!r} must be a number or an [H, W] map (image or latent size), "
                         f"got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all() or (t < 0).any():
        what = f"{float(t):g}" if t.ndim == 0 else f"a map with min {float(t.min()):g}, max {float(t.max()):g}"
        raise ValueError(f"strength of {name!r} must be finite and >= 0, got {what}")
    return float(t) if t.ndim == 0 else t


def window_value(name: str, value) -> Window:
    try:
        start, end = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"window of {name!r} must be a pair (start, end) of run fractions, got {value!r}") from None
    if not (math.isfinite(start) and math.isfinite(end) and 0.0 <= start <= end <= 1.0):
        raise ValueError(f"window of {name!r} must satisfy 0 <= start <= end <= 1 (0 = first step, 1 = last), "
                         f"got ({start:g}, {end:g})")
    return start, end


def _check_names(what: str, given, names: tuple[str, ...]) -> None:
    unknown = [n for n in given if n not in names]
    if unknown:
        raise ValueError(f"{what} given for {', '.join(map(repr, unknown))}, not a modality of this run "
                         f"(it has {', '.join(names)})")


@dataclass(frozen=True)
class Steering:
    """Per-modality strength (a number or a map at latent size) and step window for one run.

    `factors(i)` is what step i multiplies the weights by, [M, 1, 1, h, w]: the strength inside the
    modality's window, 0 outside it; `steer` applies it. Nothing acts (None) where every strength
    is 1 and every window holds the step, so the default run is today's run bit for bit.
    """

    names: tuple[str, ...]
    strength: dict[str, float | torch.Tensor]  # name -> number or [h, w] map (latent size)
    window: dict[str, Window]
    active: torch.Tensor  # [N, M] bool: modality m takes part in step i

    def factors(self, index: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
        on = self.active[index]
        if bool(on.all()) and all(isinstance(s, float) and s == 1.0 for s in self.strength.values()):
            return None
        maps = [torch.as_tensor(self.strength[n], dtype=torch.float32) * float(on[m])
                for m, n in enumerate(self.names)]
        hw = torch.broadcast_shapes(*(s.shape for s in maps)) or torch.Size((1, 1))  # all numbers: one cell
        return torch.stack([s.expand(hw) for s in maps]).view(len(maps), 1, 1, *hw).to(device)

    def record(self) -> tuple[dict[str, float | str], dict[str, Window]]:
        """Strengths (a map as its size and range) and windows, for a result's settings."""
        def say(s):
            if isinstance(s, float):
                return s
            return (f"map {s.shape[0]}x{s.shape[1]} (min {float(s.min()):.3g}, mean {float(s.mean()):.3g}, "
                    f"max {float(s.max()):.3g})")
        return {n: say(self.strength[n]) for n in self.names}, dict(self.window)


def make_steering(names: tuple[str, ...], strength: dict | None, window: dict | None, num_steps: int,
                  latent_size: tuple[int, int]) -> Steering:
    """Validate the handles of a run of `num_steps` steps over modalities `names`.

    A strength map of any [H, W] (image or latent resolution) is area-averaged to the latent grid,
    which keeps a region of constant strength exactly constant. A step in which no modality takes
    part, or a latent cell where every modality taking part has strength 0, is an error.
    """
    strength, window = dict(strength or {}), dict(window or {})
    _check_names("strength", strength, names)
    _check_names("window", window, names)
    values: dict[str, float | torch.Tensor] = {}
    for n in names:
        s = strength_value(n, strength.get(n, 1.0))
        if isinstance(s, torch.Tensor):
            s = torch.nn.functional.adaptive_avg_pool2d(s[None, None], latent_size)[0, 0]
        values[n] = s
    windows = {n: window_value(n, window.get(n, FULL_WINDOW)) for n in names}
    fractions = [step_fraction(i, num_steps) for i in range(num_steps)]
    active = torch.tensor([[windows[n][0] <= f <= windows[n][1] for n in names] for f in fractions], dtype=torch.bool)
    steering = Steering(tuple(names), values, windows, active)
    _check_every_step_has_a_leader(steering, fractions)
    return steering


def _check_every_step_has_a_leader(steering: Steering, fractions: list[float]) -> None:
    said = ", ".join(f"{n} {a:g}:{b:g}" for n, (a, b) in steering.window.items())
    for i, f in enumerate(fractions):
        if not steering.active[i].any():
            raise ValueError(f"no modality takes part in step {i + 1} of {len(fractions)} (run fraction {f:.3g}); "
                             f"windows: {said}. Make the windows cover the whole run together")
        factors = steering.factors(i)
        if factors is not None and bool((factors.sum(0) <= 0).any()):
            raise ValueError(f"in step {i + 1} of {len(fractions)} every modality taking part has strength 0 at "
                             "some pixels; give at least one of them a strength > 0 everywhere")


def steer(weights: torch.Tensor, factors: torch.Tensor | None) -> torch.Tensor:
    """The weights multiplied by the user's factors, renormalised per pixel (one rule for every
    modality, mode and combination rule). Under the paper's rule this adds log(factor) to each
    logit before the softmax. Pixels where every factor is 1 keep their weights bit for bit; where
    the learned weights of all active modalities vanish (the official rule at t = 0) the factors
    alone decide."""
    if factors is None:
        return weights
    factors = factors.to(weights.device, weights.dtype)
    scaled = weights * factors
    total = scaled.sum(dim=0, keepdim=True)
    by_factor = factors.expand_as(scaled) / factors.sum(dim=0, keepdim=True)
    mixed = torch.where(total > 0, scaled / total.clamp_min(torch.finfo(weights.dtype).tiny), by_factor)
    untouched = (factors == 1).all(dim=0, keepdim=True)
    return torch.where(untouched, weights, mixed)
