"""Training objectives, as pure functions of networks and tensors."""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from collab.combination import combine, softmax_influence
from collab.schedule import DiffusionSchedule
from collab.vae import AutoencoderKL


def vae_loss(vae: AutoencoderKL, x: torch.Tensor, g: torch.Generator, kl_weight: float = 1e-6,
             perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, dict]:
    """L1 reconstruction + kl_weight * KL, as the official LPIPSWithDiscriminator (without its
    discriminator). The official loss sums |x - x_rec| over pixels per image and adds
    kl_weight * KL summed over the latent; we divide both by the pixel count, the same objective
    at a scale where learning rates do not depend on the image size."""
    post = vae.encode(x)
    z = post.mean + post.std * randn(post.mean.shape, g, post.mean)
    rec = vae.decode(z)
    l1 = (rec - x).abs().sum(dim=(1, 2, 3))
    kl = post.kl()
    loss = (l1 + kl_weight * kl).mean() / x[0].numel()
    if perceptual is not None:
        loss = loss + perceptual(rec, x).mean()
    return loss, {"l1": float(l1.detach().mean() / x[0].numel()), "kl": float(kl.detach().mean())}


def randn(shape, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """N(0, I) from the CPU generator `g`, placed like `like`: the same numbers on every device, and
    one generator state per rank to checkpoint."""
    return torch.randn(shape, generator=g).to(like.device, like.dtype)


def sample_xt(schedule: DiffusionSchedule, z0: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """t ~ U{0..T-1}, eps ~ N(0, I), x_t = q(x_t | z0)."""
    t = torch.randint(0, schedule.num_timesteps, (z0.shape[0],), generator=g).to(z0.device)
    noise = randn(z0.shape, g, z0)
    return schedule.q_sample(z0, t, noise), t, noise


def p2_weight(schedule: DiffusionSchedule, t: torch.Tensor, gamma: float, k: float = 1.0) -> torch.Tensor:
    """P2 weighting 1 / (k + SNR(t))^gamma (Choi et al. 2022); gamma = 0 is the plain loss."""
    if gamma == 0:
        return torch.ones(t.shape[0], device=t.device)
    return (1.0 / (k + schedule.snr(t)) ** gamma).float().to(t.device)


def ldm_loss(unet, encoder, cond: torch.Tensor, z0: torch.Tensor, schedule: DiffusionSchedule, g: torch.Generator,
             p2_gamma: float = 0.0) -> torch.Tensor:
    """eps-prediction loss of one collaborator; the condition encoder trains with it."""
    x_t, t, noise = sample_xt(schedule, z0, g)
    eps = unet(x_t, t, encoder(cond))
    per_sample = F.mse_loss(eps, noise, reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * p2_weight(schedule, t, p2_gamma)).mean()


def diffuser_loss(collaborators: Mapping[str, torch.nn.Module], diffusers: Mapping[str, torch.nn.Module],
                  contexts: Mapping[str, torch.Tensor], z0: torch.Tensor, schedule: DiffusionSchedule,
                  g: torch.Generator, p2_gamma: float = 0.0) -> torch.Tensor:
    """Algorithm 1: frozen collaborators' eps mixed by the diffusers' per-pixel softmax, against the noise."""
    x_t, t, noise = sample_xt(schedule, z0, g)
    names = list(contexts)
    with torch.no_grad():
        eps = torch.stack([collaborators[n](x_t, t, contexts[n]) for n in names])
    logits = torch.stack([diffusers[n](x_t, t, contexts[n]) for n in names])
    mixed = combine(eps, softmax_influence(logits))
    per_sample = F.mse_loss(mixed, noise, reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * p2_weight(schedule, t, p2_gamma)).mean()


@torch.no_grad()
def estimate_scale_factor(vae: AutoencoderKL, images: torch.Tensor, batch: int = 64) -> float:
    """1 / std of the posterior means, the LDM convention for unit-variance latents."""
    zs = [vae.encode(images[i:i + batch]).mean for i in range(0, len(images), batch)]
    return float(1.0 / torch.cat(zs).std())
