"""How well each collaborator predicts its sample's mean colour at high noise (the demo v3 study).

    python benchmarks/probe_mean_colour.py checkpoints/demo [OTHER_MODEL ...] [--n 96]

For n held-out renders (the evaluation's face-world seed): encode, noise to x_t at fixed t (one noise
draw, seed 0), and compare the per-channel spatial mean of the predicted x0,
(mean(x_t) - sqrt(1 - ab) mean(eps)) / sqrt(ab), with the latent's. Prints the root-mean-square
error per collaborator and t, and the latents' own spread of channel means: at t = 999 an error near
that spread is the best any model can do (nothing is left of the image); far above it, the
collaborator cannot carry the mean of its input through (see UNetConfig.mean_path).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from collab.eval.heldout import conditions_for, held_out_pairs
from collab.model import CollaborativeModel

TIMESTEPS = (999, 900, 800, 700, 500)


@torch.no_grad()
def mean_errors(model: CollaborativeModel, name: str, raws: list, z0: torch.Tensor) -> list[float]:
    ctx = model.encode_condition(name, raws)
    g, mu, out = torch.Generator().manual_seed(0), z0.mean(dim=(2, 3)), []
    for t in TIMESTEPS:
        tt = torch.full((z0.shape[0],), t)
        noise = torch.randn(z0.shape, generator=g)
        x_t = model.schedule.q_sample(z0, tt, noise)
        eps = model.collaborators[name](x_t, tt, ctx)
        ab = model.schedule.alphas_cumprod[t]
        x0_mean = (x_t.mean(dim=(2, 3)) - (1 - ab).sqrt() * eps.mean(dim=(2, 3))) / ab.sqrt()
        out.append(float((x0_mean - mu).pow(2).mean().sqrt()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n", type=int, default=96)
    args = ap.parse_args()
    print("| model | collaborator | " + " | ".join(f"t = {t}" for t in TIMESTEPS) + " |")
    print("|---|---|" + "---|" * len(TIMESTEPS))
    floors, renders = {}, {}  # renders once per image size, shared by the models compared
    for path in args.models:
        model = CollaborativeModel.from_pretrained(path)
        size = model.config.image_size
        data = renders[size] = renders.get(size) or held_out_pairs(args.n, size)
        images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            z0 = torch.cat([model.encode(images[i:i + 32]) for i in range(0, len(images), 32)])
        floors[path] = float(z0.mean(dim=(2, 3)).std(0).mean())  # each model's own VAE and scale
        idx = np.arange(args.n)
        for name in model.names:
            raw = conditions_for(model, [name], data, idx, paraphrase=False)[name]
            errs = mean_errors(model, name, list(raw), z0)
            print(f"| {path} | {name} | " + " | ".join(f"{e:.2f}" for e in errs) + " |", flush=True)
    print()
    for path, floor in floors.items():
        print(f"{path}: spread of the latents' channel means (the floor at t = 999) {floor:.2f}")


if __name__ == "__main__":
    main()
