"""Samplers: free functions over one denoiser protocol, `eps = denoiser(x_t, t)`.

The sampler never knows how eps was made (one collaborator, a learned mixture, an edited model);
per-step observation goes through one `callback(StepInfo)`. A denoiser that mixes several
predictions may return a `Prediction` (eps and the weights it used), which reaches the callback as
`StepInfo.weights`. `SAMPLERS` is the one table of samplers by name, all called the same way:
`SAMPLERS[name](denoiser, x_T, schedule, eta=, noise=, callback=)`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from collab.schedule import SamplingSchedule


@dataclass(frozen=True)
class Prediction:
    """A denoiser's output with what an observer may want beside eps."""

    eps: torch.Tensor
    weights: torch.Tensor | None = None  # mixing weights used [M, B, 1, h, w], for callbacks


class Denoiser(Protocol):
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor | Prediction: ...


NoiseFn = Callable[[int, torch.Tensor], torch.Tensor]  # (step index, x_t) -> standard normal like x_t


@dataclass(frozen=True)
class StepInfo:
    index: int  # 0 = first (noisiest) step
    t: int  # DDPM timestep visited
    x_t: torch.Tensor
    eps: torch.Tensor
    pred_x0: torch.Tensor
    x_prev: torch.Tensor
    weights: torch.Tensor | None = None  # what the denoiser's Prediction carried, if any


def gaussian_noise(generator: torch.Generator | None) -> NoiseFn:
    """Fresh N(0, I) per step from `generator` (drawn on its device, then moved)."""

    def draw(index: int, like: torch.Tensor) -> torch.Tensor:
        device = generator.device if generator is not None else like.device
        return torch.randn(like.shape, generator=generator, device=device, dtype=torch.float32).to(like)

    return draw


def _timestep_batch(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.to(x.device).expand(x.shape[0])


def _predict(denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor) -> Prediction:
    out = denoiser(x, _timestep_batch(t, x))
    return out if isinstance(out, Prediction) else Prediction(out)


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, a_t: float, a_prev: float, sigma: float,
              noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update (Song et al. eq. 12); returns (x_prev, pred_x0).

    pred_x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
    x_prev  = sqrt(a_prev) pred_x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z
    """
    pred_x0 = (x_t - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
    x_prev = math.sqrt(a_prev) * pred_x0 + math.sqrt(1.0 - a_prev - sigma**2) * eps
    if sigma > 0:
        x_prev = x_prev + sigma * noise
    return x_prev, pred_x0


def _as_coefficients(values: torch.Tensor) -> list[float]:
    # float32 coefficients, as the official sampler keeps its DDIM buffers in float32
    return [float(v) for v in values.float()]


@torch.no_grad()
def invert_ddim(denoiser: Denoiser, z0: torch.Tensor, schedule: SamplingSchedule) -> torch.Tensor:
    """Deterministic DDIM run backwards, x_0 -> x_T over `schedule`: the start code from which
    `sample_ddim(eta=0)` over the same schedule and denoiser returns (nearly) z0. Each step reuses
    eps at the step's own timestep from the less noisy x (the usual first-order approximation)."""
    a, a_prev = _as_coefficients(schedule.alpha_bar), _as_coefficients(schedule.alpha_bar_prev)
    x = z0
    for k in reversed(range(len(schedule))):
        eps = _predict(denoiser, x, schedule.timesteps[k]).eps
        pred_x0 = (x - math.sqrt(1.0 - a_prev[k]) * eps) / math.sqrt(a_prev[k])
        x = math.sqrt(a[k]) * pred_x0 + math.sqrt(1.0 - a[k]) * eps
    return x


@torch.no_grad()
def sample_ddim(denoiser: Denoiser, x_T: torch.Tensor, schedule: SamplingSchedule, eta: float = 0.0,
                noise: NoiseFn | None = None, callback: Callable[[StepInfo], None] | None = None) -> torch.Tensor:
    """DDIM (eta = 0 deterministic, eta = 1 DDPM-like ancestral) over `schedule`, from x_T to x_0."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    noise = noise or gaussian_noise(None)
    a, a_prev = _as_coefficients(schedule.alpha_bar), _as_coefficients(schedule.alpha_bar_prev)
    sigmas = _as_coefficients(schedule.ddim_sigmas(eta))
    x = x_T
    for k, t in enumerate(schedule.timesteps):
        out = _predict(denoiser, x, t)
        eps = out.eps
        z = noise(k, x) if sigmas[k] > 0 else None
        x_prev, pred_x0 = ddim_step(x, eps, a[k], a_prev[k], sigmas[k], z)
        if callback is not None:
            callback(StepInfo(k, int(t), x, eps, pred_x0, x_prev, out.weights))
        x = x_prev
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoiser, x_T: torch.Tensor, schedule: SamplingSchedule,
                    callback: Callable[[StepInfo], None] | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), deterministic, data-prediction form.

    With alpha = sqrt(a), sigma = sqrt(1 - a), lambda = log(alpha / sigma) and h = lambda_next - lambda:
    x_next = (sigma_next / sigma) x - alpha_next (e^{-h} - 1) D, where D is pred_x0 at the first
    step and the second-order extrapolation (1 + 1/2r) x0_k - (1/2r) x0_{k-1} after it.
    Few-step runs (< 15) take a first-order last step, which is more stable there.
    """
    a = schedule.alpha_bar.tolist()
    a_next = schedule.alpha_bar_prev.tolist()
    lam = [0.5 * math.log(v / (1.0 - v)) for v in a]
    lam_next = [0.5 * math.log(v / (1.0 - v)) for v in a_next]
    x, prev_x0, prev_h = x_T, None, None
    steps = len(schedule)
    for k, t in enumerate(schedule.timesteps):
        out = _predict(denoiser, x, t)
        eps = out.eps
        pred_x0 = (x - math.sqrt(1.0 - a[k]) * eps) / math.sqrt(a[k])
        h = lam_next[k] - lam[k]
        first_order = prev_x0 is None or (steps < 15 and k == steps - 1)
        if first_order:
            d = pred_x0
        else:
            r = prev_h / h
            d = (1.0 + 0.5 / r) * pred_x0 - (0.5 / r) * prev_x0
        ratio = math.sqrt((1.0 - a_next[k]) / (1.0 - a[k]))
        x_prev = ratio * x - math.sqrt(a_next[k]) * math.expm1(-h) * d
        if callback is not None:
            callback(StepInfo(k, int(t), x, eps, pred_x0, x_prev, out.weights))
        x, prev_x0, prev_h = x_prev, pred_x0, h
    return x


StepCallback = Callable[[StepInfo], None]


class SamplerFn(Protocol):
    """The one signature of every sampler in `SAMPLERS`."""

    def __call__(self, denoiser: Denoiser, x_T: torch.Tensor, schedule: SamplingSchedule, *, eta: float,
                 noise: NoiseFn | None, callback: StepCallback | None) -> torch.Tensor: ...


@dataclass(frozen=True)
class Sampler:
    """A sampler by its one signature, and whether eta (and per-step noise) act on it."""

    run: Callable[..., torch.Tensor]
    stochastic: bool

    def __call__(self, denoiser: Denoiser, x_T: torch.Tensor, schedule: SamplingSchedule, *, eta: float = 0.0,
                 noise: NoiseFn | None = None, callback: StepCallback | None = None) -> torch.Tensor:
        if self.stochastic:
            return self.run(denoiser, x_T, schedule, eta, noise, callback)
        return self.run(denoiser, x_T, schedule, callback)

    def recorded_eta(self, eta: float) -> float:
        """The eta a result should report: a deterministic sampler ignores it."""
        return eta if self.stochastic else 0.0


SAMPLERS: dict[str, Sampler] = {
    "ddim": Sampler(sample_ddim, stochastic=True),
    "dpmpp_2m": Sampler(sample_dpmpp_2m, stochastic=False),
}
