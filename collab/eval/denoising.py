"""The denoising study: per-timestep noise-prediction error of each collaborator and of the mix."""
from __future__ import annotations

import numpy as np

from collab.eval.heldout import HeldOut, conditions_for
from collab.model import CollaborativeModel


DENOISING_TIMESTEPS = (25, 100, 250, 400, 550, 700, 850, 980)


def denoising_errors(model: CollaborativeModel, modalities: tuple[str, ...], data: HeldOut, n: int,
                     timesteps=DENOISING_TIMESTEPS, seed: int = 0) -> dict:
    """Why the dynamic diffusers weigh the collaborators as they do: at fixed timesteps, the
    noise-prediction MSE (Algorithm 1's loss) of each collaborator alone, of the learned per-pixel
    mix, and of the best fixed convex weight (one scalar per timestep, searched on the same batch,
    so it is an optimistic reference), on the held-out renders (VAE posterior means)."""
    import torch

    from collab.combination import combine, softmax_influence
    from collab.schedule import DiffusionSchedule

    cfg = model.config
    sched = DiffusionSchedule.linear(cfg.timesteps, cfg.linear_start, cfg.linear_end)
    idx = np.arange(min(n, len(data.captions)))
    images = torch.from_numpy(data.images[idx]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    z0 = model.encode(images)
    raws = conditions_for(model, modalities, data, idx, False)
    ctx = {k: model.encode_condition(k, raws[k]) for k in modalities}
    g = torch.Generator().manual_seed(seed)
    grid = torch.linspace(0, 1, 21)
    rows = []
    with torch.no_grad():
        for t in timesteps:
            tt = torch.full((len(idx),), int(t), device=z0.device)
            noise = torch.randn(z0.shape, generator=g).to(z0.device)
            x_t = sched.q_sample(z0, tt, noise)
            eps = torch.stack([model.run("collaborators", k, x_t, tt, ctx[k]) for k in modalities]).float()
            w = softmax_influence(torch.stack([model.run("diffusers", k, x_t, tt, ctx[k]) for k in modalities]))
            row = {"t": int(t), **{k: float((eps[i] - noise).pow(2).mean()) for i, k in enumerate(modalities)},
                   "learned mix": float((combine(eps, w) - noise).pow(2).mean()),
                   "learned weight": {k: float(w[i].mean()) for i, k in enumerate(modalities)}}
            if len(modalities) == 2:  # best fixed convex weight of the first modality
                errs = torch.stack([(a * eps[0] + (1 - a) * eps[1] - noise).pow(2).mean() for a in grid])
                row["best fixed mix"] = float(errs.min())
                row["best fixed weight"] = {modalities[0]: float(grid[int(errs.argmin())])}
            rows.append(row)
    return {"modalities": list(modalities), "n": len(idx), "rows": rows}
