"""Noise schedules: the LDM "linear" training schedule and the DDIM sub-sequences sampled from it.

Everything is computed in float64 and cast where used, like guided-diffusion; the one exception is
where the official sampler works from float32 buffers, which we mirror so the numbers match.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DiffusionSchedule:
    """The T-step forward process q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)."""

    betas: torch.Tensor  # [T] float64

    @classmethod
    def linear(cls, timesteps: int = 1000, linear_start: float = 0.0015, linear_end: float = 0.0195) -> DiffusionSchedule:
        """LDM "linear": betas evenly spaced in sqrt space (diffusers calls it scaled_linear)."""
        betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64, device="cpu") ** 2
        return cls(betas)

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """alpha_bar_t, float64 [T]."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps  (DDPM eq. 4)."""
        abar = self.alphas_cumprod.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        abar = self.alphas_cumprod.to(t.device)[t]
        return abar / (1.0 - abar)

    def official_buffers(self) -> dict[str, torch.Tensor]:
        """The float32 schedule buffers an official LatentDiffusion state_dict carries (v_posterior = 0)."""
        betas = self.betas
        abar = self.alphas_cumprod
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        buffers = {
            "betas": betas,
            "alphas_cumprod": abar,
            "alphas_cumprod_prev": abar_prev,
            "sqrt_alphas_cumprod": abar.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - abar).sqrt(),
            "log_one_minus_alphas_cumprod": torch.log(1.0 - abar),
            "sqrt_recip_alphas_cumprod": (1.0 / abar).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / abar - 1).sqrt(),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": torch.log(torch.clamp(post_var, min=1e-20)),
            "posterior_mean_coef1": betas * abar_prev.sqrt() / (1.0 - abar),
            "posterior_mean_coef2": (1.0 - abar_prev) * (1.0 - betas).sqrt() / (1.0 - abar),
        }
        return {k: v.float() for k, v in buffers.items()}


def uniform_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """The official "uniform" DDIM discretisation, in sampling order (high to low).

    stride = T // S, timesteps = range(0, T, stride) + 1; so S = 50 visits 981..1, and S = 7 visits
    8 timesteps because 1000 // 7 = 142 does not divide 1000. Where the stride divides T - 1
    (S = 3, 9, 27, 37, 111, 333) the last entry would be T, past the schedule; the official sampler
    fails with an index error there, we drop that step.
    """
    if not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"steps must be in 1..{num_train_timesteps}, got {num_steps}")
    stride = num_train_timesteps // num_steps
    return [t + 1 for t in range(0, num_train_timesteps, stride) if t + 1 < num_train_timesteps][::-1]


@dataclass(frozen=True)
class SamplingSchedule:
    """Per visited step k (sampling order): timestep t_k, alpha_bar at t_k and at the next target.

    The last step targets alpha_bar[0] (0.9985), not 1, as the official sampler does.
    """

    timesteps: torch.Tensor  # [K] int64
    alpha_bar: torch.Tensor  # [K] float64, alpha_bar_{t_k}
    alpha_bar_prev: torch.Tensor  # [K] float64, alpha_bar of the step's target

    @classmethod
    def uniform(cls, schedule: DiffusionSchedule, num_steps: int) -> SamplingSchedule:
        ts = uniform_timesteps(num_steps, schedule.num_timesteps)
        # The official sampler reads alpha_bar from the model's float32 buffer; so do we.
        abar = schedule.alphas_cumprod.float().double()
        t = torch.tensor(ts, dtype=torch.int64)
        return cls(t, abar[t], torch.cat([abar[t[1:]], abar[:1]]))

    def __len__(self) -> int:
        return self.timesteps.shape[0]

    @property
    def alphas(self) -> torch.Tensor:
        """Old name of `alpha_bar` (the official sampler's `ddim_alphas`, which hold alpha-bar)."""
        return self.alpha_bar

    @property
    def alphas_prev(self) -> torch.Tensor:
        """Old name of `alpha_bar_prev`."""
        return self.alpha_bar_prev

    def ddim_sigmas(self, eta: float) -> torch.Tensor:
        """sigma_k = eta * sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))  (DDIM eq. 16)."""
        a, a_prev = self.alpha_bar, self.alpha_bar_prev
        return eta * ((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)).sqrt()
